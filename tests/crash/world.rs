//! A MailerLite account the test edits between runs: subscribers in cursor pages and
//! campaigns in page-numbered pages of a few records each, the other listings empty.
//! Unlike the mock's generations, a test can add a key to a record on page 3, or a
//! draft campaign at the front of its listing, exactly between two runs.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::hostile::{serve_with, Reply};

/// Records per page, whatever `limit` asks: the real API caps it too.
pub const PAGE: usize = 2;

#[derive(Default)]
pub struct Account {
    pub subscribers: Vec<Value>,
    pub campaigns: Vec<Value>,
}

impl Account {
    /// `n` subscribers with ids counting down from 9000, newest first as MailerLite lists them.
    pub fn with_subscribers(n: usize) -> Account {
        let subscribers = (0..n).map(|i| subscriber(9000 - i as u64)).collect();
        Account { subscribers, campaigns: Vec::new() }
    }

    /// The records of `table` as the mock's `expected` gives them, for `assert_table`.
    pub fn expected(&self, table: &str) -> Vec<String> {
        let records = match table {
            "subscriber" => &self.subscribers,
            "campaign" => &self.campaigns,
            _ => return Vec::new(),
        };
        records.iter().map(Value::to_string).collect()
    }

    pub fn subscriber_mut(&mut self, id: u64) -> &mut Value {
        let id = id.to_string();
        self.subscribers.iter_mut().find(|s| s["id"] == id.as_str()).expect("a subscriber of the account")
    }
}

pub fn subscriber(id: u64) -> Value {
    json!({"id": id.to_string(), "email": format!("s{id}@example.com"), "status": "active",
           "fields": {"name": format!("N{id}")}})
}

pub fn campaign(id: u64, status: &str) -> Value {
    json!({"id": id.to_string(), "name": format!("C{id}"), "type": "regular", "status": status})
}

/// The account served on loopback until the test ends.
pub struct World {
    pub origin: String,
    pub account: Arc<Mutex<Account>>,
}

impl World {
    pub fn serve(account: Account) -> World {
        let account = Arc::new(Mutex::new(account));
        let shared = Arc::clone(&account);
        let server = serve_with(move |target| {
            let mut reply = Reply::ok(answer(&shared.lock().unwrap(), target).to_string());
            reply.headers.push(("x-account_id".into(), "4711".into()));
            reply
        });
        World { origin: server.origin, account }
    }

    /// A configuration for the account.
    pub fn config(&self) -> String {
        json!({"api_key": "k", "base_url": format!("{}/api", self.origin), "retry_attempts": 2}).to_string()
    }

    pub fn edit(&self, f: impl FnOnce(&mut Account)) {
        f(&mut self.account.lock().unwrap());
    }

    /// The account's records of a table, as it is when asked.
    pub fn truth(&self) -> impl Fn(&str) -> Vec<String> + 'static {
        let account = Arc::clone(&self.account);
        move |table| account.lock().unwrap().expected(table)
    }
}

fn answer(account: &Account, target: &str) -> Value {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |key: &str| {
        query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| decode(k) == key).map(|(_, v)| decode(v))
    };
    let number = |key: &str| param(key).and_then(|v| v.parse::<usize>().ok());
    match path {
        "/api/subscribers" if number("limit") == Some(0) => json!({"total": account.subscribers.len()}),
        "/api/subscribers" => {
            let start = param("cursor").and_then(|c| c.parse::<usize>().ok()).unwrap_or(0);
            let end = (start + PAGE).min(account.subscribers.len());
            let next = (end < account.subscribers.len()).then(|| end.to_string());
            json!({"data": &account.subscribers[start..end], "links": {"next": next.as_ref().map(|_| "x")},
                   "meta": {"next_cursor": next, "prev_cursor": null}})
        }
        "/api/campaigns" => {
            let status = param("filter[status]").unwrap_or_else(|| "ready".into());
            let listed: Vec<&Value> = account.campaigns.iter().filter(|c| c["status"] == status.as_str()).collect();
            page(&listed, number("page").unwrap_or(1))
        }
        _ => page(&[], number("page").unwrap_or(1)),
    }
}

fn page(records: &[&Value], page: usize) -> Value {
    let last = records.len().div_ceil(PAGE).max(1);
    let start = ((page - 1) * PAGE).min(records.len());
    let data = &records[start..(start + PAGE).min(records.len())];
    let next = (page < last).then(|| format!("?page={}", page + 1));
    json!({"data": data, "links": {"next": next}, "meta": {"current_page": page, "last_page": last}})
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}
