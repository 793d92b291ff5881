//! The connector configuration: one JSON object whose values may be JSON strings (the
//! Fivetran `configuration.json` convention, `"retry_attempts": "3"`) or native JSON.
//!
//! Unlike the seed connectors, an invalid value is an error naming the key, never a
//! silent default. Unknown keys get a warning. Secrets may come from the environment.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::net::http::{check_base_url, Secret};
use crate::term::logging::{self, Verbosity};

/// The page size asked for unless configured: as large as we allow, so the server's
/// cap decides (a server that refuses it with a 422 gets 100 from then on).
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
/// Keys whose values are never repeated in a message.
const SECRETS: &[&str] = &["api_key"];

/// Every key any connector understands.
const KNOWN: &[&str] = &[
    "api_key",
    "username",
    "base_url",
    "instance",
    "max_records_per_page",
    "request_timeout_seconds",
    "retry_attempts",
    "enable_incremental_sync",
    "enable_debug_logging",
    "initial_sync_days",
    "sync_frequency_hours",
    "bom",
    "spreadsheet_safe",
];

/// Whether `key` is one of the common settings (not a credential): a connector
/// definition may not name it as the key of a secret.
pub fn is_setting(key: &str) -> bool {
    KNOWN.contains(&key) && key != "api_key" && key != "username"
}

/// What a connector needs from the configuration beyond the common keys.
#[derive(Debug, Clone, Copy)]
pub struct Requirements {
    /// The configuration key of the secret (`api_key`; a connector definition
    /// names its own), and its environment variable.
    pub api_key_name: &'static str,
    pub api_key_env: &'static str,
    /// The configuration key of the user name (`username`), if one is needed.
    pub username_name: &'static str,
    /// Environment variable for `username`, if the connector needs one.
    pub username_env: Option<&'static str>,
    /// The base URL when neither `base_url` nor `instance` is given.
    pub default_base_url: Option<&'static str>,
    /// `instance` → base URL, for connectors with per-customer hosts.
    pub instance_url: Option<fn(&str) -> String>,
    /// The domain an `instance` is a subdomain of, for the message about a bad one.
    pub instance_domain: &'static str,
    /// The API's documented read limit: requests to it are paced to this many a minute.
    pub requests_per_minute: u32,
    /// The API can list records changed since a time, so `initial_sync_days` applies.
    pub filters_by_time: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub api_key: Secret,
    pub username: Option<String>,
    pub base_url: String,
    pub page_size: u32,
    pub timeout: Duration,
    pub retries: u32,
    pub incremental: bool,
    pub debug_logging: bool,
    pub initial_sync_days: Option<u32>,
    pub sync_frequency_hours: Option<u32>,
    /// `--bom` and `--spreadsheet-safe` from the file.
    pub bom: bool,
    pub spreadsheet_safe: bool,
    /// Keys present in the file that no connector knows.
    pub unknown_keys: Vec<String>,
}

/// Reads and validates the configuration file (if any; `-` is standard input),
/// filling secrets from `env`.
/// Loads and validates a configuration, then sets up logging (at least `-v` when
/// the configuration asks for debug logging).
pub fn load_logged(req: &Requirements, file: Option<&Path>, verbosity: Verbosity) -> Result<Config> {
    let config = load(req, file, &|var| std::env::var(var).ok());
    let debug = config.as_ref().is_ok_and(|c| c.debug_logging) && verbosity != Verbosity::Quiet;
    logging::init(if debug { verbosity.max(Verbosity::Verbose) } else { verbosity });
    config
}

pub fn load(req: &Requirements, file: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
    let map = match file {
        Some(path) => read_file(path)?,
        None => Map::new(),
    };
    from_map(req, &map, env)
}

fn read_file(path: &Path) -> Result<Map<String, Value>> {
    let read = if path == Path::new("-") {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut text).map(|_| text)
    } else {
        std::fs::read(path)
    };
    let text = read.map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    // Editors on Windows like to start files with a byte order mark.
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&text);
    match serde_json::from_slice(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::Config(format!("{} must hold one JSON object", path.display()))),
        Err(e) => Err(Error::Config(format!("{} is not valid JSON: {e}", path.display()))),
    }
}

pub fn from_map(req: &Requirements, map: &Map<String, Value>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
    // The file wins over the environment; a key left empty in the file falls back to it.
    let api_key = string_as(map, req.api_key_name, true)?
        .filter(|s| !s.trim().is_empty())
        .or_else(|| env(req.api_key_env))
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| missing(map, req.api_key_name, Some(req.api_key_env)))?;
    let username = match req.username_env {
        Some(var) => Some(
            string(map, req.username_name)?
                .filter(|s| !s.trim().is_empty())
                .or_else(|| env(var))
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| missing(map, req.username_name, Some(var)))?,
        ),
        None => None,
    };
    let base_url = base_url(req, map)?;
    let named = |k: &str| k == req.api_key_name || (req.username_env.is_some() && k == req.username_name);
    let unknown_keys = map.keys().filter(|k| !KNOWN.contains(&k.as_str()) && !named(k)).cloned().collect();
    Ok(Config {
        api_key: Secret::new(api_key.trim()),
        username,
        base_url,
        page_size: integer(map, "max_records_per_page", 1, 1000)?.unwrap_or(DEFAULT_PAGE_SIZE),
        timeout: Duration::from_secs(integer(map, "request_timeout_seconds", 1, 3600)?.unwrap_or(30).into()),
        retries: integer(map, "retry_attempts", 0, 20)?.unwrap_or(5),
        incremental: boolean(map, "enable_incremental_sync")?.unwrap_or(true),
        debug_logging: boolean(map, "enable_debug_logging")?.unwrap_or(false),
        initial_sync_days: integer(map, "initial_sync_days", 0, 36500)?,
        sync_frequency_hours: integer(map, "sync_frequency_hours", 0, 8760)?,
        bom: boolean(map, "bom")?.unwrap_or(false),
        spreadsheet_safe: boolean(map, "spreadsheet_safe")?.unwrap_or(false),
        unknown_keys,
    })
}

fn base_url(req: &Requirements, map: &Map<String, Value>) -> Result<String> {
    let url = match (string(map, "base_url")?, string(map, "instance")?, req.instance_url) {
        (Some(url), _, _) => url,
        (None, Some(instance), Some(to_url)) => {
            let ok = !instance.is_empty() && instance.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(Error::Config(format!(
                    "instance: expected the subdomain of <instance>.{}, got {instance:?}",
                    req.instance_domain
                )));
            }
            to_url(&instance)
        }
        _ => match req.default_base_url {
            Some(url) => url.to_string(),
            None => return Err(missing(map, "base_url (or instance)", None)),
        },
    };
    let checked = check_base_url(&url).map_err(|e| Error::Config(format!("base_url: {e}: {}", shown(&url))))?;
    Ok(checked.url)
}

fn missing(map: &Map<String, Value>, key: &str, env: Option<&str>) -> Error {
    let mut message = match env {
        Some(var) => format!("{key}: required (in the config file or ${var})"),
        None => format!("{key}: required"),
    };
    // A mistyped key is often why: its warning would come only after a valid config.
    let name = key.split(' ').next().unwrap_or(key);
    if let Some(typo) = map.keys().find(|k| !KNOWN.contains(&k.as_str()) && did_you_mean(k) == Some(name)) {
        message.push_str(&format!("; the file has {typo:?}: did you mean {name:?}?"));
    }
    Error::Config(message)
}

fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    string_as(map, key, SECRETS.contains(&key))
}

/// The string at `key`; a `secret`'s value is never repeated in the error.
fn string_as(map: &Map<String, Value>, key: &str, secret: bool) -> Result<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(Error::Config(format!("{key}: expected a string, got {}", describe(secret, v)))),
    }
}

/// A value for a message: a secret's only by its kind, never its content.
fn describe(secret: bool, v: &Value) -> String {
    if !secret {
        return v.to_string();
    }
    match v {
        Value::Object(_) => "an object".into(),
        Value::Array(_) => "an array".into(),
        Value::Number(_) => "a number".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::String(_) => "a string".into(),
        Value::Null => "null".into(),
    }
}

/// A URL for a message, without user info (which may hold a password).
fn shown(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

/// The known key a mistyped `key` probably meant: same letters ignoring case, `_`
/// and `-`, or at most two edits away.
pub fn did_you_mean(key: &str) -> Option<&'static str> {
    let norm = |s: &str| s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect::<String>();
    let k = norm(key);
    KNOWN.iter().copied().find(|known| norm(known) == k).or_else(|| {
        KNOWN.iter().copied().filter(|known| edits(&norm(known), &k) <= 2).min_by_key(|known| edits(&norm(known), &k))
    })
}

/// Levenshtein distance between `a` and `b`.
pub(crate) fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn integer(map: &Map<String, Value>, key: &str, min: u32, max: u32) -> Result<Option<u32>> {
    let bad = |v: &Value| Error::Config(format!("{key}: expected an integer from {min} to {max}, got {v}"));
    let n = match map.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(v @ Value::String(s)) => s.trim().parse::<i64>().map_err(|_| bad(v))?,
        Some(v @ Value::Number(n)) => n.as_i64().ok_or_else(|| bad(v))?,
        Some(v) => return Err(bad(v)),
    };
    if n < min as i64 || n > max as i64 {
        return Err(bad(&map[key]));
    }
    Ok(Some(n as u32))
}

fn boolean(map: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
    let bad = |v: &Value| Error::Config(format!("{key}: expected true or false, got {v}"));
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v @ Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(bad(v)),
        },
        Some(v) => Err(bad(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// MailerLite's requirements, as its connector declares them.
    const ML: Requirements = Requirements {
        api_key_env: "MAILERLITE_API_KEY",
        username_env: None,
        api_key_name: "api_key",
        username_name: "username",
        default_base_url: Some("https://connect.mailerlite.com/api"),
        instance_url: None,
        instance_domain: "",
        requests_per_minute: 120,
        filters_by_time: false,
    };

    fn parse(v: Value) -> Result<Config> {
        from_map(&ML, v.as_object().unwrap(), &|_| None)
    }

    #[test]
    fn strings_and_native_values_mean_the_same() {
        let a = parse(json!({"api_key": "k", "retry_attempts": "3", "enable_incremental_sync": "false"})).unwrap();
        let b = parse(json!({"api_key": "k", "retry_attempts": 3, "enable_incremental_sync": false})).unwrap();
        assert_eq!((a.retries, a.incremental), (3, false));
        assert_eq!((b.retries, b.incremental), (3, false));
        assert_eq!(a.base_url, "https://connect.mailerlite.com/api");
        assert_eq!(a.page_size, DEFAULT_PAGE_SIZE);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let e = parse(json!({"api_key": "k", "max_records_per_page": "lots"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "configuration: max_records_per_page: expected an integer from 1 to 1000, got \"lots\""
        );
        let e = parse(json!({"api_key": "k", "retry_attempts": 99})).unwrap_err();
        assert!(e.to_string().contains("retry_attempts"), "{e}");
        let e = parse(json!({})).unwrap_err();
        assert_eq!(e.to_string(), "configuration: api_key: required (in the config file or $MAILERLITE_API_KEY)");
        assert_eq!(e.exit_status(), 2);
    }

    #[test]
    fn secrets_come_from_the_environment_and_unknown_keys_are_listed() {
        let c = from_map(&ML, json!({"colour": "red"}).as_object().unwrap(), &|v| {
            (v == "MAILERLITE_API_KEY").then(|| "from-env".to_string())
        })
        .unwrap();
        assert_eq!(c.api_key.expose(), "from-env");
        assert_eq!(c.unknown_keys, ["colour"]);
    }

    #[test]
    fn secrets_are_never_echoed() {
        let e = parse(json!({"api_key": {"value": "SEKRIT-123"}})).unwrap_err();
        assert_eq!(e.to_string(), "configuration: api_key: expected a string, got an object");
        let e = parse(json!({"api_key": "k", "base_url": "http://user:SEKRIT@api.example.com"})).unwrap_err();
        assert!(!e.to_string().contains("SEKRIT"), "{e}");
    }

    #[test]
    fn an_empty_key_in_the_file_falls_back_to_the_environment() {
        let c = from_map(&ML, json!({"api_key": ""}).as_object().unwrap(), &|_| Some("env".into())).unwrap();
        assert_eq!(c.api_key.expose(), "env");
        let c = from_map(&ML, json!({"api_key": "file"}).as_object().unwrap(), &|_| Some("env".into())).unwrap();
        assert_eq!(c.api_key.expose(), "file");
    }

    #[test]
    fn a_required_key_missing_for_a_typo_says_so() {
        let e = parse(json!({"apikey": "SEKRIT"})).unwrap_err().to_string();
        assert_eq!(
            e,
            "configuration: api_key: required (in the config file or $MAILERLITE_API_KEY); \
             the file has \"apikey\": did you mean \"api_key\"?"
        );
    }

    #[test]
    fn typos_get_a_suggestion() {
        assert_eq!(did_you_mean("apikey"), Some("api_key"));
        assert_eq!(did_you_mean("API-KEY"), Some("api_key"));
        assert_eq!(did_you_mean("max_record_per_page"), Some("max_records_per_page"));
        assert_eq!(did_you_mean("basurl"), Some("base_url"));
        assert_eq!(did_you_mean("colour"), None);
        assert_eq!(edits("kitten", "sitting"), 3);
    }

    #[test]
    fn plain_http_is_refused_except_to_loopback() {
        let e = parse(json!({"api_key": "k", "base_url": "http://api.example.com"})).unwrap_err();
        assert!(e.to_string().starts_with("configuration: base_url: credentials are only sent over https"), "{e}");
        assert!(parse(json!({"api_key": "k", "base_url": "http://127.0.0.1:9/api/"})).is_ok());
    }
}
