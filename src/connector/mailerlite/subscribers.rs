//! The MailerLite stream that feeds subscribers, groups and memberships together:
//! the subscriber pass (`include=groups`), then `/groups` (its rows, and its
//! counters), then the member listings of each group whose counters disagree with
//! what the pass saw.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    advance, count_group_members, query, reading, restart_listing, shrink, MailerLite, DEF, GROUP_MEMBERS,
    MEMBERS_SEEN, STATUSES,
};
use crate::connector::{Counts, Reading, Request, Rows, Stream, StreamPlan};
use crate::page::paginate::{Next, Position, Steps};
use crate::page::parse::{Batch, Envelope, Spec};
use crate::store::hashing::FxBuild;

/// The subscriber pass (`include=groups` when memberships are wanted), then the
/// groups (their rows, and their counters for the memberships), then the member
/// listings of each group whose counters disagree with what the pass saw.
pub(super) struct Subscribers<'c> {
    ml: &'c MailerLite,
    /// Which table of the plan each is: subscriber, group, group_subscriber.
    subscribers: Option<usize>,
    groups: Option<usize>,
    members: Option<usize>,
    position: Position,
    seen: HashSet<u64>,
    /// Memberships of the page just accepted, as records of their own.
    built: Batch,
    /// The step the page just accepted belonged to.
    last_step: String,
    /// The subscriber pass started over: the memberships it saw are counted afresh.
    recount: bool,
}

const PASS: &str = "subscribers";
const GROUPS: &str = "groups";

impl<'c> Subscribers<'c> {
    pub(super) fn new(ml: &'c MailerLite, plan: &StreamPlan, position: Option<Position>) -> Subscribers<'c> {
        let index = |t: &str| plan.tables.iter().position(|p| *p == t);
        let (subscribers, groups, members) = (index("subscriber"), index("group"), index("group_subscriber"));
        let position = position.unwrap_or_else(|| {
            let mut steps = Vec::new();
            if subscribers.is_some() || members.is_some() {
                steps.push(PASS.to_string());
            }
            if groups.is_some() || members.is_some() {
                steps.push(GROUPS.to_string());
            }
            let first = if steps[0] == PASS { ml.cursor() } else { ml.page() };
            Position::Steps(Steps::start(steps, first))
        });
        Subscribers {
            ml,
            subscribers,
            groups,
            members,
            position,
            seen: HashSet::new(),
            built: Batch::default(),
            last_step: String::new(),
            recount: false,
        }
    }

    fn steps(&self) -> &Steps {
        match &self.position {
            Position::Steps(s) => s,
            _ => unreachable!("the subscriber stream is a sequence of steps"),
        }
    }

    fn steps_mut(&mut self) -> &mut Steps {
        match &mut self.position {
            Position::Steps(s) => s,
            _ => unreachable!("the subscriber stream is a sequence of steps"),
        }
    }

    /// A step is over: start the next, adding member listings once the counters are in.
    fn next_step(&mut self, finished: &str, counts: &Counts) {
        if finished == GROUPS && self.members.is_some() {
            let steps = disagreeing_groups(counts);
            self.steps_mut().steps.extend(steps);
        }
        let next = self.steps().steps.get(self.steps().index + 1).cloned();
        let start = match next.as_deref() {
            Some(GROUPS) => self.ml.page(),
            _ => self.ml.cursor(),
        };
        self.steps_mut().next_step(start);
    }

    /// The request of a member listing of `group` with `status`.
    fn member_request(group: &str, status: &str, pos: &Position) -> Request {
        let group = percent_encoding::utf8_percent_encode(group, percent_encoding::NON_ALPHANUMERIC);
        Request {
            path: format!("/groups/{group}/subscribers"),
            query: query(pos, &[("filter[status]", status.to_string())]),
        }
    }

    /// Memberships from the `groups` of each subscriber of the page. What the groups'
    /// counters are held against is the number of distinct (group, subscriber)
    /// pairs: a group named twice in one subscriber's `groups`, or a subscriber the
    /// page lists twice, counts once, so it cannot make up for a membership missing
    /// elsewhere. (A subscriber listed on two pages counts twice: telling would take
    /// memory per subscriber.)
    fn memberships_of_subscribers(&mut self, batch: &Batch, counts: &mut Counts) {
        self.built.clear();
        let Some(id_path) = batch.path_id(&["id"]) else { return };
        let seen = counts.entry(MEMBERS_SEEN.to_string()).or_default();
        let mut pairs: HashSet<(&[u8], &[u8]), FxBuild> =
            HashSet::with_capacity_and_hasher(batch.captured_len(), FxBuild::default());
        let mut page: HashMap<&[u8], u64, FxBuild> = HashMap::default();
        for i in 0..batch.len() {
            let Some(subscriber) = batch.value_at(i, id_path) else { continue };
            let Some(groups) = batch.captured(i, 0) else { continue };
            for group in groups {
                if !pairs.insert((subscriber, group)) {
                    continue;
                }
                *page.entry(group).or_default() += 1;
                self.built.begin_record();
                self.built.push_leaf(&["group_id"], group);
                self.built.push_leaf(&["subscriber_id"], subscriber);
                self.built.end_record();
            }
        }
        // Counted by group for the page, then added to the run's counts once a group.
        for (group, n) in page {
            // An id is text serde_json read (valid UTF-8): the lossy copy is never made.
            let name = std::str::from_utf8(group).map_or_else(|_| String::from_utf8_lossy(group), Cow::Borrowed);
            match seen.get_mut(name.as_ref()) {
                Some(count) => *count += n,
                None => {
                    seen.insert(name.into_owned(), n);
                }
            }
        }
    }

    /// Memberships from a member listing of `group`.
    fn memberships_of_group(&mut self, group: &str, batch: &Batch) {
        self.built.clear();
        let Some(id_path) = batch.path_id(&["id"]) else { return };
        for i in 0..batch.len() {
            let Some(subscriber) = batch.value_at(i, id_path) else { continue };
            self.built.begin_record();
            self.built.push_leaf(&["group_id"], group.as_bytes());
            self.built.push_leaf(&["subscriber_id"], subscriber);
            self.built.end_record();
        }
    }
}

/// The step reading the members of `group` with `status`: `GROUP:STATUS`, the form
/// older versions committed too. No status holds a `:`, so [`member_step_of`] splits
/// it back at its last `:` into exactly the group id it was made of, whatever bytes
/// that holds (`12:34:active` is group `12:34`).
fn member_step(group: &str, status: &str) -> String {
    format!("{group}:{status}")
}

/// The group and status of a member listing step; none for another step.
fn member_step_of(step: &str) -> Option<(&str, &str)> {
    let (group, status) = step.rsplit_once(':')?;
    STATUSES.contains(&status).then_some((group, status))
}

/// A member listing per status for each group whose counters disagree with the
/// memberships the subscriber pass saw.
fn disagreeing_groups(counts: &Counts) -> Vec<String> {
    let empty = BTreeMap::new();
    let expected = counts.get(GROUP_MEMBERS).unwrap_or(&empty);
    let seen = counts.get(MEMBERS_SEEN).unwrap_or(&empty);
    let mut steps = Vec::new();
    for (group, &want) in expected {
        let got = seen.get(group).copied().unwrap_or(0);
        if got != want {
            log::info!("group {group}: its counters say {want} members, the subscriber pass saw {got}; reading its member listings");
            steps.extend(STATUSES.iter().map(|s| member_step(group, s)));
        }
    }
    steps
}

impl Stream for Subscribers<'_> {
    fn request(&self) -> Option<Request> {
        let s = self.steps();
        match s.current()? {
            PASS => {
                let include = self.members.map(|_| ("include", "groups".to_string()));
                Some(Request {
                    path: "/subscribers".into(),
                    query: query(&s.inner, &include.into_iter().collect::<Vec<_>>()),
                })
            }
            GROUPS => Some(Request { path: "/groups".into(), query: query(&s.inner, &[]) }),
            step => {
                let (group, status) = member_step_of(step)?;
                Some(Self::member_request(group, status, &s.inner))
            }
        }
    }

    fn reading(&self) -> Reading {
        let step = self.steps().current();
        let timestamps: &'static [&'static str] = match step {
            Some(PASS) => DEF.timestamps("subscriber"),
            Some(GROUPS) => DEF.timestamps("group"),
            _ => &[],
        };
        let capture: &'static [&'static str] = if step == Some(PASS) { &["groups"] } else { &[] };
        let spec =
            Spec { records: &["data"], bare_array: false, timestamps, time_format: Some(DEF.time_format), capture };
        reading(&self.steps().inner, spec)
    }

    fn accept(&mut self, env: &Envelope, batch: &Batch, counts: &mut Counts) -> std::result::Result<(), String> {
        let step = self.steps().current().unwrap_or("").to_string();
        self.built.clear();
        if std::mem::take(&mut self.recount) && step == PASS {
            counts.remove(MEMBERS_SEEN);
        }
        match step.as_str() {
            PASS if self.members.is_some() => self.memberships_of_subscribers(batch, counts),
            PASS => {}
            GROUPS => count_group_members(batch, counts.entry(GROUP_MEMBERS.to_string()).or_default()),
            step => {
                let group = member_step_of(step).map_or("", |(g, _)| g).to_string();
                self.memberships_of_group(&group, batch);
            }
        }
        let Position::Steps(s) = &mut self.position else { unreachable!() };
        let listing = match step.as_str() {
            PASS => "/subscribers",
            GROUPS => "/groups",
            _ => "/groups/{id}/subscribers",
        };
        let done = advance(&mut s.inner, listing, env, batch.len(), &mut self.seen)? == Next::Done;
        if done {
            self.seen.clear();
            self.next_step(&step, counts);
        }
        self.last_step = step;
        Ok(())
    }

    fn rows<'a>(&'a self, table: usize, batch: &'a Batch) -> Rows<'a> {
        let step = self.last_step.as_str();
        let t = Some(table);
        if t == self.members {
            Rows::All(&self.built)
        } else if (t == self.subscribers && step == PASS) || (t == self.groups && step == GROUPS) {
            Rows::All(batch)
        } else {
            Rows::Some(batch, &[])
        }
    }

    fn not_found(&mut self) -> bool {
        let step = self.steps().current().unwrap_or("").to_string();
        if step != PASS && step != GROUPS {
            let group = member_step_of(&step).map_or("", |(g, _)| g);
            log::warn!("group {group} no longer exists; its memberships are skipped");
            let cursor = self.ml.cursor();
            self.steps_mut().next_step(cursor);
            return true;
        }
        let start = if step == PASS { self.ml.cursor() } else { self.ml.page() };
        // A restart forgets the abandoned pass: its cursors, its membership counts.
        let restarted = restart_listing(&mut self.steps_mut().inner, start);
        self.restarted(restarted, &step)
    }

    fn position(&self) -> Position {
        self.position.clone()
    }

    fn shrink_page_size(&mut self) -> bool {
        let step = self.steps().current().unwrap_or("").to_string();
        let restarted = shrink(self.ml, &mut self.position);
        self.restarted(restarted, &step)
    }
}

impl Subscribers<'_> {
    /// After a restart of `step`'s listing (if `restarted`): its pass starts afresh.
    fn restarted(&mut self, restarted: bool, step: &str) -> bool {
        if restarted {
            self.seen.clear();
            self.recount |= step == PASS;
        }
        restarted
    }
}
