//! Campaigns: a few dozen, built whole at start with the real key order (§3e), their
//! emails and stats, and the group snapshots they embed; drafts are sent one per
//! generation.

use serde::Serialize;

use super::draw::Draw;
use super::life::generation_time;
use super::samples::CAMPAIGN_NAMES;
use super::scalar::{Id, IsoStamp, Rate, Stamp};
use super::{MailerLite, CAMPAIGN_BASE, DAY, EMAIL_BASE, ID_STRIDE, T0, TAG_CAMPAIGN, TAG_GROUP, T_GEN1};

#[derive(Serialize, Clone, Debug)]
pub(super) struct Campaign {
    id: Id,
    account_id: Id,
    name: String,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) status: &'static str,
    missing_data: Vec<&'static str>,
    settings: Settings,
    filter: Vec<Vec<FilterRule>>,
    filter_for_humans: Vec<Vec<String>>,
    delivery_schedule: Option<&'static str>,
    language_id: &'static str,
    language: Language,
    created_at: Stamp,
    updated_at: Stamp,
    scheduled_for: Option<Stamp>,
    queued_at: Option<Stamp>,
    started_at: Option<Stamp>,
    finished_at: Option<Stamp>,
    stopped_at: Option<Stamp>,
    default_email_id: Id,
    emails: Vec<Email>,
    used_in_automations: bool,
    type_for_humans: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<Stats>,
    is_stopped: bool,
    has_winner: Option<bool>,
    winner_version_for_human: Option<&'static str>,
    winner_sending_time_for_humans: Option<&'static str>,
    winner_selected_manually_at: Option<Stamp>,
    can: Can,
    uses_ecommerce: bool,
    ecommerce_stats: Option<()>,
    uses_survey: bool,
    can_be_scheduled: bool,
    is_smart_sending_index_option_finished: bool,
    is_applied_for_smart_sending_index_option: bool,
    warnings: Vec<&'static str>,
    next_step: Option<&'static str>,
    initial_created_at: Option<Stamp>,
    is_currently_sending_out: bool,
    can_be_copied: bool,
    has_basic_filter: bool,
    basic_filter_for_humans: BasicFilter,
    is_eligible_for_sending: bool,
    needs_repair: bool,
}

#[derive(Serialize, Clone, Debug)]
struct Settings {
    track_opens: bool,
    use_google_analytics: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ecommerce_tracking: Option<bool>,
}

/// `{"operator": "in_any", "args": ["groups", ["<id>", …]]}`.
#[derive(Serialize, Clone, Debug)]
struct FilterRule {
    operator: &'static str,
    args: (&'static str, Vec<Id>),
}

#[derive(Serialize, Clone, Copy, Debug)]
struct Language {
    id: &'static str,
    shortcode: &'static str,
    iso639: &'static str,
    name: &'static str,
    direction: &'static str,
}

const LANGUAGES: [Language; 3] = [
    Language { id: "4", shortcode: "en", iso639: "en-US", name: "English", direction: "ltr" },
    Language { id: "7", shortcode: "de", iso639: "de-DE", name: "German", direction: "ltr" },
    Language { id: "2", shortcode: "ar", iso639: "ar-SA", name: "Arabic", direction: "rtl" },
];

#[derive(Serialize, Clone, Debug)]
struct Email {
    id: Id,
    account_id: Id,
    emailable_id: Id,
    emailable_type: &'static str,
    #[serde(rename = "type")]
    kind: Option<&'static str>,
    from: &'static str,
    from_name: &'static str,
    reply_to: &'static str,
    name: Option<&'static str>,
    subject: String,
    plain_text: String,
    screenshot_url: String,
    generate_screenshot_timestamp: Option<Stamp>,
    preview_url: String,
    created_at: Stamp,
    updated_at: Stamp,
    is_designed: bool,
    /// A number here, while the campaign's `language_id` is a string.
    language_id: u64,
    language: Language,
    is_winner: bool,
    stats: Stats,
    send_after: Option<Stamp>,
    track_opens: bool,
    uses_survey: bool,
    uses_quiz: bool,
    preheader: Option<&'static str>,
}

/// Email stats; the campaign-level copy lacks the `forward_rate` and social keys.
#[derive(Serialize, Clone, Debug)]
struct Stats {
    sent: u64,
    opens_count: u64,
    unique_opens_count: u64,
    open_rate: Rate,
    clicks_count: u64,
    unique_clicks_count: u64,
    click_rate: Rate,
    unsubscribes_count: u64,
    unsubscribe_rate: Rate,
    spam_count: u64,
    spam_rate: Rate,
    hard_bounces_count: u64,
    hard_bounce_rate: Rate,
    soft_bounces_count: u64,
    soft_bounce_rate: Rate,
    forwards_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    forward_rate: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    social_interactions_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    social_interaction_rate: Option<Rate>,
    click_to_open_rate: Rate,
}

impl Stats {
    /// Stats of an email sent to `sent` recipients (all zero for drafts).
    fn draw(d: &mut Draw, sent: u64) -> Stats {
        let unique_opens = d.below(sent + 1);
        let opens = unique_opens + d.below(unique_opens / 4 + 1);
        let unique_clicks = d.below(unique_opens + 1);
        let clicks = unique_clicks + d.below(unique_clicks / 4 + 1);
        let unsubscribes = d.below(sent / 50 + 1);
        let hard = d.below(sent / 100 + 1);
        let soft = d.below(sent / 100 + 1);
        Stats {
            sent,
            opens_count: opens,
            unique_opens_count: unique_opens,
            open_rate: Rate::of(unique_opens, sent),
            clicks_count: clicks,
            unique_clicks_count: unique_clicks,
            click_rate: Rate::of(unique_clicks, sent),
            unsubscribes_count: unsubscribes,
            unsubscribe_rate: Rate::of(unsubscribes, sent),
            spam_count: 0,
            spam_rate: Rate(0),
            hard_bounces_count: hard,
            hard_bounce_rate: Rate::of(hard, sent),
            soft_bounces_count: soft,
            soft_bounce_rate: Rate::of(soft, sent),
            forwards_count: 0,
            forward_rate: Some(Rate(0)),
            social_interactions_count: Some(0),
            social_interaction_rate: Some(Rate(0)),
            click_to_open_rate: Rate::of(unique_clicks, unique_opens),
        }
    }

    fn for_campaign(&self) -> Stats {
        Stats { forward_rate: None, social_interactions_count: None, social_interaction_rate: None, ..self.clone() }
    }
}

#[derive(Serialize, Clone, Debug)]
struct Can {
    update: bool,
    delete: bool,
    send: bool,
    copy: bool,
    resend: bool,
}

#[derive(Serialize, Clone, Debug)]
struct BasicFilter {
    included_groups: Vec<RawGroup>,
    excluded_groups: Vec<RawGroup>,
    included_segments: Vec<RawGroup>,
    excluded_segments: Vec<RawGroup>,
    all_active_subscribers: bool,
}

/// The internal group model embedded in campaigns: numeric ids above 2^53, ISO
/// times with microseconds, rates as strings. A snapshot from when the campaign
/// was made, so later changes to the group do not touch it.
#[derive(Serialize, Clone, Debug)]
struct RawGroup {
    id: u64,
    account_id: u64,
    created_at: IsoStamp,
    updated_at: IsoStamp,
    deleted_at: Option<IsoStamp>,
    name: String,
    active_count: u64,
    open_rate: String,
    click_rate: String,
    serial_no: u64,
    sent_count: u64,
    opens_count: u64,
    clicks_count: u64,
    unsubscribed_count: u64,
    unconfirmed_count: u64,
    bounced_count: u64,
    junk_count: u64,
}

/// Status of campaign `c` (0 = newest) at generation 1: 4 ready, 8 drafts, the rest sent.
fn initial_campaign_status(c: usize) -> &'static str {
    match c {
        0..=3 => "ready",
        4..=11 => "draft",
        _ => "sent",
    }
}

/// The generation (>= 2) that sends draft `c`, one draft per generation.
fn sent_in_generation(c: usize) -> Option<u32> {
    (4..=11).contains(&c).then(|| c as u32 - 2)
}

impl MailerLite {
    pub(super) fn build_campaign(&self, c: usize) -> Campaign {
        let mut d = Draw::new(&[self.seed, TAG_CAMPAIGN, c as u64]);
        let id = CAMPAIGN_BASE - c as u64 * ID_STRIDE - d.below(1_000_000);
        let created = T_GEN1 - (c as i64 + 1) * 5 * DAY - d.below(DAY as u64) as i64;
        let sent_generation = sent_in_generation(c).filter(|&g| g <= self.generation);
        let status = if sent_generation.is_some() { "sent" } else { initial_campaign_status(c) };
        let (kind, type_for_humans) = match c {
            14 => ("ab", "A/B split"),
            20 => ("resend", "Auto resend"),
            _ => ("regular", "Regular"),
        };
        let name = match c / CAMPAIGN_NAMES.len() {
            0 => CAMPAIGN_NAMES[c].to_string(),
            round => format!("{} #{round}", CAMPAIGN_NAMES[c % CAMPAIGN_NAMES.len()]),
        };
        let language = match c % 7 {
            3 => LANGUAGES[1],
            4 => LANGUAGES[2],
            _ => LANGUAGES[0],
        };
        let groups = self.campaign_groups(c, &mut d);
        let times = CampaignTimes::new(status, created, sent_generation, c, &mut d);
        let recipients = 50 + d.below(2000);
        let emails = self.campaign_emails(EmailsOf {
            c,
            campaign_id: id,
            name: &name,
            status,
            language,
            times: &times,
            recipients,
        });
        let sent = status == "sent";
        Campaign {
            id: Id(id),
            account_id: Id(self.account),
            name,
            kind,
            status,
            missing_data: if status == "draft" && c == 6 { vec!["content"] } else { Vec::new() },
            settings: Settings {
                track_opens: true,
                use_google_analytics: c.is_multiple_of(3),
                ecommerce_tracking: (c % 9 != 4).then_some(false),
            },
            filter: groups.filter(),
            filter_for_humans: groups.for_humans(),
            delivery_schedule: match status {
                "sent" if c.is_multiple_of(2) => Some("instant"),
                "sent" | "ready" => Some("scheduled"),
                _ => None,
            },
            language_id: language.id,
            language,
            created_at: Stamp(created),
            updated_at: Stamp(times.updated),
            scheduled_for: times.scheduled.map(Stamp),
            queued_at: times.started.map(|t| Stamp(t - 1)),
            started_at: times.started.map(Stamp),
            finished_at: times.finished.map(Stamp),
            stopped_at: None,
            default_email_id: emails[0].id,
            stats: sent.then(|| emails[0].stats.for_campaign()),
            emails,
            used_in_automations: false,
            type_for_humans,
            is_stopped: false,
            has_winner: (kind == "ab").then_some(sent),
            winner_version_for_human: (kind == "ab" && sent).then_some("A"),
            winner_sending_time_for_humans: (kind == "ab").then_some("4 hours"),
            winner_selected_manually_at: None,
            can: Can {
                update: status != "sent",
                delete: status != "ready",
                send: status == "draft",
                copy: true,
                resend: sent,
            },
            uses_ecommerce: false,
            ecommerce_stats: None,
            uses_survey: false,
            can_be_scheduled: status == "draft" && c != 6,
            is_smart_sending_index_option_finished: false,
            is_applied_for_smart_sending_index_option: false,
            warnings: Vec::new(),
            next_step: None,
            initial_created_at: None,
            is_currently_sending_out: false,
            can_be_copied: true,
            has_basic_filter: true,
            basic_filter_for_humans: groups.basic,
            is_eligible_for_sending: status == "ready",
            needs_repair: false,
        }
    }

    /// The groups a campaign is sent to, as a snapshot taken at generation 1.
    fn campaign_groups(&self, c: usize, d: &mut Draw) -> CampaignGroups {
        let wanted = if c % 6 == 5 { 0 } else { 1 + d.below(2) as usize };
        let mut chosen: Vec<usize> = Vec::new();
        while chosen.len() < wanted.min(self.group_count()) {
            let group = d.below(self.group_count() as u64) as usize;
            if !chosen.contains(&group) {
                chosen.push(group);
            }
        }
        let raw = chosen.iter().map(|&g| self.raw_group(g, c)).collect();
        CampaignGroups {
            ids: chosen.iter().map(|&g| Id(self.group_id(g))).collect(),
            names: chosen.iter().map(|&g| self.group_name(g, 1)).collect(),
            basic: BasicFilter {
                included_groups: raw,
                excluded_groups: Vec::new(),
                included_segments: Vec::new(),
                excluded_segments: Vec::new(),
                all_active_subscribers: wanted == 0,
            },
        }
    }

    fn raw_group(&self, group: usize, c: usize) -> RawGroup {
        let mut d = Draw::new(&[self.seed, TAG_GROUP, group as u64, c as u64]);
        let created = T0 + group as i64 * 30 * DAY;
        let opens_count = d.below(5000);
        RawGroup {
            id: self.group_id(group),
            account_id: self.account,
            created_at: IsoStamp(created),
            updated_at: IsoStamp(T_GEN1 - (c as i64 + 1) * 5 * DAY),
            deleted_at: None,
            name: self.group_name(group, 1),
            active_count: d.below(2000),
            open_rate: Rate(d.below(10_001)).fraction_text(),
            click_rate: Rate(d.below(2_001)).fraction_text(),
            serial_no: 1_068_790 + group as u64,
            sent_count: d.below(40),
            opens_count,
            clicks_count: d.below(opens_count + 1),
            unsubscribed_count: d.below(50),
            unconfirmed_count: d.below(10),
            bounced_count: d.below(10),
            junk_count: d.below(3),
        }
    }

    fn campaign_emails(&self, of: EmailsOf) -> Vec<Email> {
        let EmailsOf { c, campaign_id, name, status, language, times, recipients } = of;
        let count = if c == 14 { 2 } else { 1 };
        (0..count)
            .map(|e| {
                let mut d = Draw::new(&[self.seed, TAG_CAMPAIGN, c as u64, e]);
                let id = EMAIL_BASE - c as u64 * ID_STRIDE - e * 7;
                let sent = if status == "sent" { recipients / count } else { 0 };
                Email {
                    id: Id(id),
                    account_id: Id(self.account),
                    emailable_id: Id(campaign_id),
                    emailable_type: "campaigns",
                    kind: d.pick(&[Some("builder"), Some("builder_html"), None]),
                    from: "news@example.org",
                    from_name: "Example Team",
                    reply_to: "support@example.org",
                    name: None,
                    subject: if e == 0 { name.to_string() } else { format!("{name} (B)") },
                    plain_text: "Hello,\n\nYou have received a newsletter from {$account}.\n\
                                 ...{$unsubscribe}\n"
                        .to_string(),
                    screenshot_url: format!(
                        "https://storage.googleapis.com/mailerlite-screenshots-prod/screenshot/emails/{id}/1284x736.png"
                    ),
                    generate_screenshot_timestamp: None,
                    preview_url: format!("https://preview.mailerlite.io/preview/{}/emails/{id}", self.account),
                    created_at: Stamp(times.created),
                    updated_at: Stamp(times.created + 600 + d.below(3600) as i64),
                    is_designed: d.chance(70),
                    language_id: language.id.parse().unwrap_or(0),
                    language,
                    is_winner: c == 14 && e == 0 && status == "sent",
                    stats: Stats::draw(&mut d, sent),
                    send_after: None,
                    track_opens: true,
                    uses_survey: false,
                    uses_quiz: false,
                    preheader: (c % 4 == 1).then_some("Don't miss this"),
                }
            })
            .collect()
    }
}

/// The campaign's included groups in the three shapes a campaign carries them.
struct CampaignGroups {
    ids: Vec<Id>,
    names: Vec<String>,
    basic: BasicFilter,
}

impl CampaignGroups {
    fn filter(&self) -> Vec<Vec<FilterRule>> {
        if self.ids.is_empty() {
            return Vec::new();
        }
        vec![vec![FilterRule { operator: "in_any", args: ("groups", self.ids.clone()) }]]
    }

    fn for_humans(&self) -> Vec<Vec<String>> {
        if self.names.is_empty() {
            return Vec::new();
        }
        vec![vec![format!("In any group: {}", self.names.join(", "))]]
    }
}

/// What the emails of campaign number `c` are drawn from.
struct EmailsOf<'a> {
    c: usize,
    campaign_id: u64,
    name: &'a str,
    status: &'a str,
    language: Language,
    times: &'a CampaignTimes,
    recipients: u64,
}

/// When a campaign was edited, scheduled and sent, by its status.
struct CampaignTimes {
    created: i64,
    updated: i64,
    scheduled: Option<i64>,
    started: Option<i64>,
    finished: Option<i64>,
}

impl CampaignTimes {
    fn new(status: &str, created: i64, sent_in: Option<u32>, c: usize, d: &mut Draw) -> CampaignTimes {
        let edited = created + d.below(3 * DAY as u64) as i64;
        let send = match sent_in {
            Some(g) => generation_time(g) - DAY / 2 - d.below(3600) as i64,
            None => created + DAY + d.below(DAY as u64) as i64,
        };
        let duration = 60 + d.below(600) as i64;
        match status {
            "sent" => CampaignTimes {
                created,
                updated: send + 3 + duration,
                scheduled: Some(send),
                started: Some(send + 3),
                finished: Some(send + 3 + duration),
            },
            "ready" => CampaignTimes {
                created,
                updated: edited,
                scheduled: Some(T_GEN1 + 30 * DAY + c as i64 * DAY),
                started: None,
                finished: None,
            },
            _ => CampaignTimes { created, updated: edited, scheduled: None, started: None, finished: None },
        }
    }
}
