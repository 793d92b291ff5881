//! Subscriber slots and their lives: which slots hold a subscriber at a generation,
//! and what the generations did to each one (status, content version, memberships),
//! replayed from the seed so 200 000 subscribers cost no memory.

use super::draw::Draw;
use super::{MailerLite, DAY, ID_STRIDE, SUBSCRIBER_BASE, T0, TAG_EVENT, TAG_ID, TAG_LIFE, TAG_TIME, T_GEN1};

/// The five subscriber statuses, in the order `filter[status]` documents them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Status {
    Active,
    Unsubscribed,
    Unconfirmed,
    Bounced,
    Junk,
}

impl Status {
    pub(super) const ALL: [Status; 5] =
        [Status::Active, Status::Unsubscribed, Status::Unconfirmed, Status::Bounced, Status::Junk];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Unsubscribed => "unsubscribed",
            Status::Unconfirmed => "unconfirmed",
            Status::Bounced => "bounced",
            Status::Junk => "junk",
        }
    }

    pub(super) fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Mostly active, as in a real list.
    fn draw(d: &mut Draw) -> Status {
        match d.below(100) {
            0..=79 => Status::Active,
            80..=87 => Status::Unsubscribed,
            88..=92 => Status::Unconfirmed,
            93..=96 => Status::Bounced,
            _ => Status::Junk,
        }
    }
}

/// The groups a subscriber belongs to (at most a handful), kept in ascending group
/// index, which is ascending group id, the order `include=groups` lists them in.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(super) struct Memberships {
    groups: [u16; 6],
    len: u8,
}

impl Memberships {
    pub(super) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.groups[..self.len as usize].iter().map(|&g| g as usize)
    }

    pub(super) fn contains(&self, group: usize) -> bool {
        self.iter().any(|g| g == group)
    }

    /// Leaves `group` if a member, else joins it (unless already in the most groups).
    fn toggle(&mut self, group: usize) {
        let len = self.len as usize;
        match self.groups[..len].binary_search(&(group as u16)) {
            Ok(at) => {
                self.groups.copy_within(at + 1..len, at);
                self.len -= 1;
            }
            Err(at) if len < self.groups.len() => {
                self.groups.copy_within(at..len, at + 1);
                self.groups[at] = group as u16;
                self.len += 1;
            }
            Err(_) => {}
        }
    }

    fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        let mut kept = Memberships::default();
        for g in self.iter().filter(|&g| keep(g)) {
            kept.toggle(g);
        }
        *self = kept;
    }
}

/// What the generations did to one subscriber slot so far: each generation after
/// its birth may delete it, update it, unsubscribe it, or add it to, remove it from
/// or move it between groups.
#[derive(Clone, Copy, Debug)]
pub(super) struct Life {
    pub(super) born: u32,
    pub(super) status: Status,
    /// Number of content updates; each one changes `plan_tier`.
    pub(super) version: u32,
    /// Generation of the last update or status change, 0 when none.
    pub(super) changed: u32,
    /// Generation that unsubscribed this subscriber, 0 when none did.
    pub(super) unsubscribed: u32,
    pub(super) groups: Memberships,
}

/// Time of the events of generation `g` (>= 2): one week apart after generation 1.
pub(super) fn generation_time(g: u32) -> i64 {
    T_GEN1 + i64::from(g - 1) * 7 * DAY
}

impl MailerLite {
    /// Slots that can hold a subscriber at this generation, newest first.
    pub(super) fn slots(&self) -> std::ops::Range<u64> {
        let lowest = self.first_slot - u64::from(self.generation - 1) * self.added_per_generation;
        lowest..self.first_slot + self.records
    }

    /// The generation whose additions include `slot`.
    fn born(&self, slot: u64) -> u32 {
        if slot >= self.first_slot {
            1
        } else {
            ((self.first_slot - 1 - slot) / self.added_per_generation) as u32 + 2
        }
    }

    pub(super) fn subscriber_id(&self, slot: u64) -> u64 {
        let jitter = Draw::new(&[self.seed, TAG_ID, slot]).below(ID_STRIDE);
        SUBSCRIBER_BASE - slot * ID_STRIDE - jitter
    }

    /// Replays the generations on one slot; `None` when it holds no subscriber now.
    pub(super) fn life(&self, slot: u64) -> Option<Life> {
        if !self.slots().contains(&slot) {
            return None;
        }
        let born = self.born(slot);
        let mut d = Draw::new(&[self.seed, TAG_LIFE, slot]);
        let mut life = Life {
            born,
            status: Status::draw(&mut d),
            version: 0,
            changed: 0,
            unsubscribed: 0,
            groups: self.initial_groups(&mut d),
        };
        for g in born + 1..=self.generation {
            if !self.apply_event(&mut life, g, slot) {
                return None;
            }
        }
        let generation = self.generation;
        life.groups.retain(|group| self.group_alive(group, generation));
        Some(life)
    }

    fn initial_groups(&self, d: &mut Draw) -> Memberships {
        let wanted = match d.below(100) {
            0..=24 => 0,
            25..=64 => 1,
            65..=89 => 2,
            _ => 3,
        };
        let mut groups = Memberships::default();
        while (groups.len as usize) < wanted {
            let group = d.below(self.group_count() as u64) as usize;
            if !groups.contains(group) {
                groups.toggle(group);
            }
        }
        groups
    }

    /// What generation `g` does to a subscriber; false when it deletes it.
    fn apply_event(&self, life: &mut Life, g: u32, slot: u64) -> bool {
        let mut e = Draw::new(&[self.seed, TAG_EVENT, u64::from(g), slot]);
        match e.below(1000) {
            0..=4 => return false,
            5..=24 => {
                life.version += 1;
                life.changed = g;
            }
            25..=39 if life.status == Status::Active => {
                life.status = Status::Unsubscribed;
                life.unsubscribed = g;
                life.changed = g;
            }
            40..=59 => {
                let group = e.below(self.group_count() as u64) as usize;
                if self.group_alive(group, g) {
                    life.groups.toggle(group);
                }
            }
            60..=79 => self.move_group(&mut life.groups, g, &mut e),
            _ => {}
        }
        true
    }

    /// Moves a subscriber out of one of its groups into another it is not in, so a
    /// generation deletes and adds a membership of the same subscriber.
    fn move_group(&self, groups: &mut Memberships, g: u32, e: &mut Draw) {
        let count = self.group_count();
        let Some(from) = groups.iter().nth(e.below(u64::from(groups.len)) as usize) else {
            return;
        };
        let to = (from + 1 + e.below(count as u64 - 1) as usize) % count;
        if self.group_alive(from, g) && self.group_alive(to, g) && !groups.contains(to) {
            groups.toggle(from);
            groups.toggle(to);
        }
    }

    pub(super) fn event_time(&self, g: u32, slot: u64) -> i64 {
        generation_time(g) - Draw::new(&[self.seed, TAG_TIME, u64::from(g), slot]).below(DAY as u64) as i64
    }

    pub(super) fn created_at(&self, slot: u64, born: u32, d: &mut Draw) -> i64 {
        if born == 1 {
            let span = (T_GEN1 - DAY - T0) as u64;
            let step = (span / self.records.max(1)).max(1);
            let newest = T_GEN1 - DAY;
            newest - ((slot - self.first_slot) * step + d.below(step)) as i64
        } else {
            let batch_start = self.first_slot - u64::from(born - 1) * self.added_per_generation;
            let offset = (slot - batch_start) as i64;
            generation_time(born) - 3 * DAY - offset * 5 - d.below(5) as i64
        }
    }
}
