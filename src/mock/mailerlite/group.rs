//! Groups: built whole at start, with counts from one pass over the subscribers; one is
//! renamed in generation 2 and the last is deleted from generation 3 on.

use serde::Serialize;

use super::draw::Draw;
use super::life::Status;
use super::samples::GROUP_NAMES;
use super::scalar::{Id, Rate, Stamp};
use super::{MailerLite, DAY, GROUP_BASE, ID_STRIDE, T0, TAG_GROUP, TAG_ID};

/// A group, with counts computed from the members at this generation.
#[derive(Serialize, Clone, Debug)]
pub(super) struct Group {
    pub(super) id: Id,
    pub(super) name: String,
    active_count: u64,
    sent_count: u64,
    opens_count: u64,
    open_rate: Rate,
    clicks_count: u64,
    click_rate: Rate,
    unsubscribed_count: u64,
    unconfirmed_count: u64,
    bounced_count: u64,
    junk_count: u64,
    created_at: Stamp,
    #[serde(skip)]
    pub(super) alive: bool,
}

impl Group {
    fn count(&mut self, status: Status) {
        let counter = match status {
            Status::Active => &mut self.active_count,
            Status::Unsubscribed => &mut self.unsubscribed_count,
            Status::Unconfirmed => &mut self.unconfirmed_count,
            Status::Bounced => &mut self.bounced_count,
            Status::Junk => &mut self.junk_count,
        };
        *counter += 1;
    }
}

impl MailerLite {
    pub(super) fn group_alive(&self, group: usize, generation: u32) -> bool {
        // From generation 3 on, the last group is deleted.
        !(generation >= 3 && group + 1 == self.group_count())
    }

    pub(super) fn group_count(&self) -> usize {
        (self.records / 1000).clamp(3, 50) as usize
    }

    pub(super) fn group_id(&self, group: usize) -> u64 {
        let jitter = Draw::new(&[self.seed, TAG_ID, u64::MAX - group as u64]).below(1_000_000);
        GROUP_BASE + group as u64 * ID_STRIDE + jitter
    }

    /// The name a group was created with; group 0 is renamed in generation 2.
    pub(super) fn group_name(&self, group: usize, generation: u32) -> String {
        let base = GROUP_NAMES[group % GROUP_NAMES.len()];
        match (group, group / GROUP_NAMES.len()) {
            (0, _) if generation >= 2 => format!("{base} (weekly)"),
            (_, 0) => base.to_string(),
            (_, round) => format!("{base} {round}"),
        }
    }

    pub(super) fn build_groups(&self) -> Vec<Group> {
        (0..self.group_count()).map(|g| self.build_group(g)).collect()
    }

    /// A group with its own send statistics; member counts come later.
    fn build_group(&self, group: usize) -> Group {
        let mut d = Draw::new(&[self.seed, TAG_GROUP, group as u64]);
        let sent_count = if group % 5 == 2 { 0 } else { 1 + d.below(40) };
        let opens_count = d.below(5000) * sent_count.min(1);
        let clicks_count = d.below(opens_count + 1);
        let open_rate = match (sent_count, group % 7) {
            (0, _) => Rate(0),
            (_, 3) => Rate(10_000),
            _ => Rate(d.below(10_001)),
        };
        Group {
            id: Id(self.group_id(group)),
            name: self.group_name(group, self.generation),
            active_count: 0,
            sent_count,
            opens_count,
            open_rate,
            clicks_count,
            click_rate: Rate(d.below(open_rate.0 + 1)),
            unsubscribed_count: 0,
            unconfirmed_count: 0,
            bounced_count: 0,
            junk_count: 0,
            created_at: Stamp(T0 + group as i64 * 30 * DAY + d.below(DAY as u64) as i64),
            alive: self.group_alive(group, self.generation),
        }
    }

    /// One pass over every subscriber, for the group counts and `limit=0` totals.
    pub(super) fn count_members(&mut self) {
        for slot in self.slots() {
            let Some(life) = self.life(slot) else {
                continue;
            };
            self.status_totals[life.status as usize] += 1;
            for group in life.groups.iter() {
                self.groups[group].count(life.status);
            }
        }
    }

    /// Makes the first alive group claim one active member it does not have, the
    /// way a real account's cached counters can lag behind its memberships.
    pub(super) fn skew_first_group(&mut self) {
        if let Some(group) = self.groups.iter_mut().find(|g| g.alive) {
            group.active_count += 1;
        }
    }
}
