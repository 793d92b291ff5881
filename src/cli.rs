//! The command line: parsing into a [`Command`], and running it.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use lexopt::prelude::*;

use crate::config::{self, Config};
use crate::connector::{self, NAMES};
use crate::error::{Error, Result};
use crate::mock::MockOptions;
use crate::{compact, demo, sync};

pub const USAGE: &str = "\
api2csv: copy SaaS REST APIs into plain CSV files, incrementally and crash-safely

Usage:
  api2csv sync <connector> [--config FILE] [--out DIR] [--tables T1,T2] [--full-refresh] [--compact]
  api2csv compact <DIR>
  api2csv tables <connector>
  api2csv check <connector> --config FILE
  api2csv mock <connector> [--addr 127.0.0.1:PORT] [--seed N] [--records N] [--fault-rate F]
                           [--rate-limit N/SECS] [--generation N]
  api2csv demo [--out DIR]

Connectors: mailerlite, paligo. `api2csv <command> --help` describes a command.

Exit status: 0 success; 1 the sync failed after committing what it had (run it again
to resume); 2 usage, configuration or credential error, found before anything was written.
";

const SYNC_HELP: &str = "\
api2csv sync <connector> [--config FILE] [--out DIR] [--tables T1,T2] [--full-refresh] [--compact]

Reads every table of the connector and appends what it read to DIR/<table>.csv
(default DIR: the current directory), committing DIR/state.json after every page.
An interrupted sync continues where it stopped when run again.

  --config FILE    JSON configuration (secrets may come from the environment instead:
                   MAILERLITE_API_KEY, PALIGO_USERNAME, PALIGO_API_KEY)
  --out DIR        output directory (created if missing)
  --tables T1,T2   only these tables (see `api2csv tables <connector>`)
  --full-refresh   rebuild each table file from scratch
  --compact        compact the directory after the sync (see `api2csv compact --help`)
";

const COMPACT_HELP: &str = "\
api2csv compact <DIR>

Rewrites each table file in DIR to one row per primary key, the latest one, and drops
keys whose latest row is a tombstone (_deleted=true). Safe to interrupt.
";

const TABLES_HELP: &str = "\
api2csv tables <connector>

Lists the connector's tables, their primary keys and how each is read.
";

const CHECK_HELP: &str = "\
api2csv check <connector> --config FILE

Validates the configuration, then sends one request to prove the credentials.
";

const MOCK_HELP: &str = "\
api2csv mock <connector> [--addr 127.0.0.1:PORT] [--seed N] [--records N] [--fault-rate F]
                         [--rate-limit N/SECS] [--generation N]

Serves an embedded mock of the connector's API until interrupted.

  --addr ADDR        listen address (default 127.0.0.1:8080; port 0 picks a free one)
  --seed N           seed of the generated account (default 1)
  --records N        size of the account: subscribers, or assignments (default 1000)
  --fault-rate F     share of requests that fail: 5xx, 429, dropped or truncated bodies
  --rate-limit N/S   at most N requests per S seconds, then 429 with Retry-After
  --generation N     the account after N-1 rounds of deterministic changes (default 1)
";

const DEMO_HELP: &str = "\
api2csv demo [--out DIR]

Starts the embedded mock APIs on loopback and syncs each connector into DIR/<connector>/
over real HTTP; then the mock account changes and a second sync appends only the
changes; then it compacts and prints where the CSV files are (default DIR: ./api2csv-demo).
";

#[derive(Debug, Clone)]
pub enum Command {
    Sync {
        connector: String,
        config: Option<PathBuf>,
        out: PathBuf,
        tables: Option<Vec<String>>,
        full_refresh: bool,
        compact: bool,
    },
    Compact {
        dir: PathBuf,
    },
    Tables {
        connector: String,
    },
    Check {
        connector: String,
        config: Option<PathBuf>,
    },
    Mock {
        connector: String,
        addr: String,
        options: MockOptions,
    },
    Demo {
        out: PathBuf,
    },
    Help(&'static str),
    Version,
}

fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

fn lex(e: lexopt::Error) -> Error {
    usage(e.to_string())
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    let mut p = lexopt::Parser::from_args(args);
    let cmd = match p.next().map_err(lex)? {
        None => return Err(usage("a command is required (try --help)")),
        Some(Long("help") | Short('h')) => return Ok(Command::Help(USAGE)),
        Some(Long("version") | Short('V')) => return Ok(Command::Version),
        Some(Value(v)) => v.string().map_err(lex)?,
        Some(other) => return Err(lex(other.unexpected())),
    };
    match cmd.as_str() {
        "sync" => parse_sync(&mut p),
        "compact" => parse_compact(&mut p),
        "tables" => parse_tables(&mut p),
        "check" => parse_check(&mut p),
        "mock" => parse_mock(&mut p),
        "demo" => parse_demo(&mut p),
        "help" => Ok(Command::Help(USAGE)),
        other => Err(usage(format!("unknown command {other:?} (try --help)"))),
    }
}

fn connector_arg(p: &mut lexopt::Parser, v: OsString) -> Result<String> {
    let name = v.string().map_err(lex)?;
    let _ = p;
    if NAMES.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(usage(format!("unknown connector {name:?} (connectors: {})", NAMES.join(", "))))
    }
}

fn value<T: std::str::FromStr>(p: &mut lexopt::Parser, flag: &str) -> Result<T> {
    let v = p.value().map_err(lex)?.string().map_err(lex)?;
    v.parse().map_err(|_| usage(format!("{flag}: invalid value {v:?}")))
}

fn parse_sync(p: &mut lexopt::Parser) -> Result<Command> {
    let (mut connector, mut config, mut out, mut tables) = (None, None, PathBuf::from("."), None);
    let (mut full_refresh, mut compact) = (false, false);
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return Ok(Command::Help(SYNC_HELP)),
            Long("config") => config = Some(PathBuf::from(p.value().map_err(lex)?)),
            Long("out") => out = PathBuf::from(p.value().map_err(lex)?),
            Long("tables") => {
                let list: String = value(p, "--tables")?;
                tables = Some(list.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect());
            }
            Long("full-refresh") => full_refresh = true,
            Long("compact") => compact = true,
            Value(v) if connector.is_none() => connector = Some(connector_arg(p, v)?),
            other => return Err(lex(other.unexpected())),
        }
    }
    let connector = connector.ok_or_else(|| usage("sync: which connector? (mailerlite or paligo)"))?;
    Ok(Command::Sync { connector, config, out, tables, full_refresh, compact })
}

fn parse_compact(p: &mut lexopt::Parser) -> Result<Command> {
    let mut dir = None;
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return Ok(Command::Help(COMPACT_HELP)),
            Value(v) if dir.is_none() => dir = Some(PathBuf::from(v)),
            other => return Err(lex(other.unexpected())),
        }
    }
    Ok(Command::Compact { dir: dir.ok_or_else(|| usage("compact: which directory?"))? })
}

fn parse_tables(p: &mut lexopt::Parser) -> Result<Command> {
    let mut connector = None;
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return Ok(Command::Help(TABLES_HELP)),
            Value(v) if connector.is_none() => connector = Some(connector_arg(p, v)?),
            other => return Err(lex(other.unexpected())),
        }
    }
    Ok(Command::Tables { connector: connector.ok_or_else(|| usage("tables: which connector?"))? })
}

fn parse_check(p: &mut lexopt::Parser) -> Result<Command> {
    let (mut connector, mut config) = (None, None);
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return Ok(Command::Help(CHECK_HELP)),
            Long("config") => config = Some(PathBuf::from(p.value().map_err(lex)?)),
            Value(v) if connector.is_none() => connector = Some(connector_arg(p, v)?),
            other => return Err(lex(other.unexpected())),
        }
    }
    Ok(Command::Check { connector: connector.ok_or_else(|| usage("check: which connector?"))?, config })
}

fn parse_mock(p: &mut lexopt::Parser) -> Result<Command> {
    let (mut connector, mut addr, mut options) = (None, "127.0.0.1:8080".to_string(), MockOptions::default());
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return Ok(Command::Help(MOCK_HELP)),
            Long("addr") => addr = value(p, "--addr")?,
            Long("seed") => options.seed = value(p, "--seed")?,
            Long("records") => options.records = value(p, "--records")?,
            Long("generation") => options.generation = value::<u32>(p, "--generation")?.max(1),
            Long("fault-rate") => {
                let f: f64 = value(p, "--fault-rate")?;
                if !(0.0..=1.0).contains(&f) {
                    return Err(usage("--fault-rate: expected a number from 0 to 1"));
                }
                options.fault_rate = f;
            }
            Long("rate-limit") => options.rate_limit = Some(parse_rate_limit(&value::<String>(p, "--rate-limit")?)?),
            Value(v) if connector.is_none() => connector = Some(connector_arg(p, v)?),
            other => return Err(lex(other.unexpected())),
        }
    }
    Ok(Command::Mock { connector: connector.ok_or_else(|| usage("mock: which connector?"))?, addr, options })
}

fn parse_rate_limit(s: &str) -> Result<(u32, u32)> {
    let bad = || usage(format!("--rate-limit: expected N/SECS such as 120/60, got {s:?}"));
    let (n, secs) = s.split_once('/').ok_or_else(bad)?;
    let (n, secs) = (n.trim().parse().map_err(|_| bad())?, secs.trim().parse().map_err(|_| bad())?);
    if n == 0 || secs == 0 {
        return Err(bad());
    }
    Ok((n, secs))
}

fn parse_demo(p: &mut lexopt::Parser) -> Result<Command> {
    let mut out = PathBuf::from("api2csv-demo");
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return Ok(Command::Help(DEMO_HELP)),
            Long("out") => out = PathBuf::from(p.value().map_err(lex)?),
            other => return Err(lex(other.unexpected())),
        }
    }
    Ok(Command::Demo { out })
}

/// Writes to stdout; a closed pipe (`api2csv tables x | head -1`) is not an error.
pub fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Runs a parsed command.
pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Help(text) => say(text),
        Command::Version => say(concat!("api2csv ", env!("CARGO_PKG_VERSION"), "\n")),
        Command::Tables { connector } => say(&tables_text(&connector)),
        Command::Compact { dir } => say(&compact_text(&compact::run(&dir)?)),
        Command::Check { connector, config } => {
            let config = load_config(&connector, config.as_deref())?;
            let c = connector::build(&connector, &config).expect("known connector");
            let client = connector::client(&connector, &config);
            say(&format!("{}\n", c.check(&client)?));
        }
        Command::Sync { connector, config, out, tables, full_refresh, compact } => {
            let config = load_config(&connector, config.as_deref())?;
            let opts = sync::Options { dir: out.clone(), tables, full_refresh: full_refresh || !config.incremental };
            let summary = sync_with(&connector, &config, &opts)?;
            say(&summary_text(&summary));
            if compact {
                say(&compact_text(&compact::run(&out)?));
            }
        }
        Command::Mock { connector, addr, options } => demo::serve_mock(&connector, &addr, &options)?,
        Command::Demo { out } => demo::run(&out)?,
    }
    Ok(())
}

/// Loads and validates the configuration of `connector`, then sets up logging from it.
pub fn load_config(connector: &str, file: Option<&Path>) -> Result<Config> {
    let req = connector::requirements(connector).expect("known connector");
    let config = config::load(&req, file, &|var| std::env::var(var).ok())?;
    init_logging(config.debug_logging);
    if !config.unknown_keys.is_empty() {
        log::warn!("configuration: unknown keys ignored: {}", config.unknown_keys.join(", "));
    }
    if config.sync_frequency_hours.is_some() {
        log::warn!(
            "configuration: sync_frequency_hours does not apply: api2csv syncs when it is run; schedule it with cron"
        );
    }
    if config.initial_sync_days.is_some() && connector == "mailerlite" {
        log::warn!("configuration: initial_sync_days does not apply to mailerlite: its API cannot filter by time, so every sync reads every record");
    }
    Ok(config)
}

/// Runs a sync of `connector` with a validated configuration.
pub fn sync_with(connector: &str, config: &Config, opts: &sync::Options) -> Result<sync::Summary> {
    let c = connector::build(connector, config).expect("known connector");
    let client = connector::client(connector, config);
    sync::run(c.as_ref(), &client, opts)
}

/// Sets up stderr logging once: warnings by default, debug when the configuration
/// asks for it, `RUST_LOG` over both.
pub fn init_logging(debug: bool) {
    // Our own debug lines only: they are written never to hold a secret.
    let level = if debug { "warn,api2csv=debug" } else { "warn" };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_secs()
        .try_init();
}

fn tables_text(connector: &str) -> String {
    let mut s = String::new();
    for t in connector::tables(connector).expect("known connector") {
        s.push_str(&format!("{:<18} key {:<26} {}\n", t.name, t.primary_key.join(","), t.read_as));
    }
    s
}

pub fn summary_text(summary: &sync::Summary) -> String {
    let mut s = format!(
        "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
        "table", "read", "new", "changed", "unchanged", "deleted", "pages"
    );
    for t in &summary.tables {
        if t.skipped {
            s.push_str(&format!("{:<18} finished by the interrupted run\n", t.table));
        } else {
            s.push_str(&format!(
                "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
                t.table, t.read, t.new, t.changed, t.unchanged, t.deleted, t.pages
            ));
        }
    }
    s.push_str(&format!("{} requests in {:.1}s\n", summary.requests, summary.elapsed.as_secs_f64()));
    s
}

fn compact_text(done: &[compact::Compacted]) -> String {
    done.iter().map(|c| format!("{:<18} compacted {} rows to {}\n", c.table, c.rows_before, c.rows_after)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn parses_sync_with_every_flag() {
        let cmd = parse(args("sync mailerlite --config c.json --out x --tables group,field --full-refresh --compact"))
            .unwrap();
        let Command::Sync { connector, config, out, tables, full_refresh, compact } = cmd else { panic!("{cmd:?}") };
        assert_eq!((connector.as_str(), config, out), ("mailerlite", Some("c.json".into()), "x".into()));
        assert_eq!(tables, Some(vec!["group".to_string(), "field".to_string()]));
        assert!(full_refresh && compact);
    }

    #[test]
    fn rejects_unknown_things_with_usage_errors() {
        for bad in [
            "",
            "frobnicate",
            "sync",
            "sync mailchimp",
            "sync mailerlite --bogus",
            "mock paligo --rate-limit 5",
            "mock paligo --fault-rate 2",
        ] {
            let e = parse(args(bad)).unwrap_err();
            assert_eq!(e.exit_status(), 2, "{bad}: {e}");
        }
    }

    #[test]
    fn parses_mock_options() {
        let cmd = parse(args(
            "mock paligo --addr 127.0.0.1:0 --seed 7 --records 50 --fault-rate 0.15 --rate-limit 50/60 --generation 2",
        ))
        .unwrap();
        let Command::Mock { options, addr, .. } = cmd else { panic!() };
        assert_eq!(addr, "127.0.0.1:0");
        assert_eq!((options.seed, options.records, options.rate_limit, options.generation), (7, 50, Some((50, 60)), 2));
    }
}
