//! Subscribers, generated one at a time straight into the page buffer: the record
//! with its `fields` object and, on request, its groups, keys in the real order.

use std::borrow::Cow;

use serde::Serialize;

use super::draw::Draw;
use super::group::Group;
use super::life::{Life, Status};
use super::samples::{COMPANIES, EMAIL_NAMES, FIRST_NAMES, LAST_NAMES, LONG, PLACES, PLANS, SOURCES, STATES, TRICKY};
use super::scalar::{percent_hundredths, FieldValues, Hundredths, Id, Stamp};
use super::{MailerLite, TAG_CONTENT, T_GEN1};

/// A subscriber as `/subscribers` sends it, keys in the real order (§3a).
#[derive(Serialize)]
struct Subscriber<'a> {
    id: Id,
    email: String,
    status: &'static str,
    source: &'static str,
    sent: u64,
    opens_count: u64,
    clicks_count: u64,
    open_rate: Hundredths,
    click_rate: Hundredths,
    ip_address: Option<String>,
    subscribed_at: Stamp,
    unsubscribed_at: Option<Stamp>,
    created_at: Stamp,
    updated_at: Stamp,
    fields: FieldValues<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<&'a Group>>,
    opted_in_at: Option<Stamp>,
    optin_ip: Option<String>,
}

impl MailerLite {
    /// Appends the JSON of the subscriber in `slot` to `out`.
    pub(super) fn write_subscriber(&self, out: &mut Vec<u8>, slot: u64, life: &Life, with_groups: bool) {
        let mut d = Draw::new(&[self.seed, TAG_CONTENT, slot]);
        let created = self.created_at(slot, life.born, &mut d);
        let first_update = match life.born {
            1 => created + d.below((T_GEN1 - created) as u64) as i64,
            _ => created,
        };
        let updated = match life.changed {
            0 => first_update,
            g => self.event_time(g, slot),
        };
        let unsubscribed_at = (life.status == Status::Unsubscribed).then(|| match life.unsubscribed {
            0 => Stamp(first_update),
            g => Stamp(self.event_time(g, slot)),
        });
        let email = format!("{}.{slot}@example.org", d.pick(&EMAIL_NAMES));
        let values = self.field_values(slot, life, &mut d);
        let (sent, source) = (d.below(61), d.pick(&SOURCES));
        let opens = d.below(sent + 1);
        let clicks = d.below(opens + 1);
        let ip_address = d.chance(20).then(|| format!("203.0.113.{}", d.below(255)));
        let opted_in_at = d.chance(15).then(|| Stamp(created + 60 + d.below(600) as i64));
        let groups = with_groups.then(|| life.groups.iter().map(|g| &self.groups[g]).collect());
        let subscriber = Subscriber {
            id: Id(self.subscriber_id(slot)),
            email,
            status: life.status.as_str(),
            source,
            sent,
            opens_count: opens,
            clicks_count: clicks,
            open_rate: percent_hundredths(opens, sent),
            click_rate: percent_hundredths(clicks, sent),
            optin_ip: opted_in_at.and(ip_address.clone()),
            ip_address,
            subscribed_at: Stamp(created),
            unsubscribed_at,
            created_at: Stamp(created),
            updated_at: Stamp(updated),
            fields: FieldValues(&values),
            groups,
            opted_in_at,
        };
        serde_json::to_writer(out, &subscriber).expect("writing to a Vec cannot fail");
    }

    /// The `fields` object: the eight defaults, then one key per custom field.
    fn field_values(&self, slot: u64, life: &Life, d: &mut Draw) -> Vec<(&'static str, Option<Cow<'_, str>>)> {
        let name = d.pick(&FIRST_NAMES);
        let last_name = d.pick(&LAST_NAMES);
        let company = self.company(slot, d);
        let (country, city) = d.pick(&PLACES);
        let phone = d.chance(30).then(|| format!("+49 30 {:07}", d.below(10_000_000)));
        let state = d.chance(20).then(|| d.pick(&STATES));
        let zip = d.chance(70).then(|| format!("{:05}", d.below(100_000)));
        let plan = d.below(4) as usize;
        let plan_tier = match life.version {
            0 => PLANS.get(plan).copied(),
            v => Some(PLANS[(plan + v as usize) % PLANS.len()]),
        };
        let score = d.chance(60).then(|| d.below(101).to_string());
        let birthday =
            d.chance(40).then(|| format!("{}-{:02}-{:02}", 1950 + d.below(55), 1 + d.below(12), 1 + d.below(28)));
        let mut values = vec![
            ("name", Some(Cow::Borrowed(name))),
            ("last_name", Some(Cow::Borrowed(last_name))),
            ("company", company),
            ("country", Some(Cow::Borrowed(country))),
            ("city", Some(Cow::Borrowed(city))),
            ("phone", phone.map(Cow::Owned)),
            ("state", state.map(Cow::Borrowed)),
            ("z_i_p", zip.map(Cow::Owned)),
            ("plan_tier", plan_tier.map(Cow::Borrowed)),
            ("score", score.map(Cow::Owned)),
            ("birthday", birthday.map(Cow::Owned)),
        ];
        // Fields added by later generations exist, empty, on every subscriber.
        for field in &self.fields[values.len()..] {
            values.push((field.key, None));
        }
        values
    }

    /// The first generation-1 subscribers get one hard value each, so even a
    /// small account has them all; after that about one in thirty does.
    fn company(&self, slot: u64, d: &mut Draw) -> Option<Cow<'_, str>> {
        let company = d.pick(&COMPANIES);
        let hard = d.below(TRICKY.len() as u64 * 30) as usize;
        match slot.checked_sub(self.first_slot) {
            Some(position) if position < TRICKY.len() as u64 => self.tricky(position as usize),
            _ if hard < TRICKY.len() => self.tricky(hard),
            _ => Some(Cow::Borrowed(company)),
        }
    }

    fn tricky(&self, index: usize) -> Option<Cow<'_, str>> {
        match TRICKY[index] {
            _ if index == LONG => Some(Cow::Borrowed(self.long_text.as_str())),
            value => value.map(Cow::Borrowed),
        }
    }
}

/// A 10 KB text of words and punctuation: long cells must survive unchanged.
pub(super) fn long_text() -> String {
    let mut text = String::with_capacity(10_300);
    while text.len() < 10_240 {
        text.push_str("Lorem ipsum, dolor \"sit\" amet; ");
    }
    text.truncate(10_240);
    text
}
