//! The MailerLite stream that feeds subscribers, groups and memberships together:
//! the subscriber pass (`include=groups`), then `/groups` (its rows, and its
//! counters), then the member listings of each group whose counters disagree with
//! what the pass saw.

use std::collections::{BTreeMap, HashSet};

use super::{
    advance, count_group_members, query, reading, restart_listing, shrink, MailerLite, DEF, GROUP_MEMBERS,
    MEMBERS_SEEN, STATUSES,
};
use crate::connector::{Counts, Reading, Request, Rows, Stream, StreamPlan};
use crate::paginate::{Next, Position, Steps};
use crate::parse::{Batch, Envelope, Spec};

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

    /// The request for member listing step `step` (`group:status`).
    fn member_request(step: &str, pos: &Position) -> Request {
        let (group, status) = step.split_once(':').unwrap_or((step, "active"));
        Request {
            path: format!("/groups/{group}/subscribers"),
            query: query(pos, &[("filter[status]", status.to_string())]),
        }
    }

    /// Memberships from the `groups` of each subscriber of the page.
    fn memberships_of_subscribers(&mut self, batch: &Batch, counts: &mut Counts) {
        self.built.clear();
        let Some(id_path) = batch.path_id(&["id"]) else { return };
        let seen = counts.entry(MEMBERS_SEEN.to_string()).or_default();
        for i in 0..batch.len() {
            let Some(subscriber) = batch.value_at(i, id_path) else { continue };
            let Some(groups) = batch.captured(i, 0) else { continue };
            for group in groups {
                let name = String::from_utf8_lossy(group);
                match seen.get_mut(name.as_ref()) {
                    Some(n) => *n += 1,
                    None => {
                        seen.insert(name.into_owned(), 1);
                    }
                }
                self.built.begin_record();
                self.built.push_leaf(&["group_id"], group);
                self.built.push_leaf(&["subscriber_id"], subscriber);
                self.built.end_record();
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
            steps.extend(STATUSES.iter().map(|s| format!("{group}:{s}")));
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
            step => Some(Self::member_request(step, &s.inner)),
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
        match step.as_str() {
            PASS if self.members.is_some() => self.memberships_of_subscribers(batch, counts),
            PASS => {}
            GROUPS => count_group_members(batch, counts.entry(GROUP_MEMBERS.to_string()).or_default()),
            step => {
                let group = step.split(':').next().unwrap_or("").to_string();
                self.memberships_of_group(&group, batch);
            }
        }
        let Position::Steps(s) = &mut self.position else { unreachable!() };
        let done = advance(&mut s.inner, env, &mut self.seen)? == Next::Done;
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
            log::warn!("group {} no longer exists; its memberships are skipped", step.split(':').next().unwrap_or(""));
            let cursor = self.ml.cursor();
            self.steps_mut().next_step(cursor);
            return true;
        }
        let start = if step == PASS { self.ml.cursor() } else { self.ml.page() };
        restart_listing(&mut self.steps_mut().inner, start)
    }

    fn position(&self) -> Position {
        self.position.clone()
    }

    fn shrink_page_size(&mut self) -> bool {
        shrink(self.ml, &mut self.position)
    }
}
