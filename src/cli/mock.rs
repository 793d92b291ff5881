//! `api2csv mock`: an embedded mock API served on loopback until interrupted.

use lexopt::prelude::*;

use super::{connector_arg, help, lex, quiet_logging, say, usage, value};
use crate::error::{Failure, Result};
use crate::mock::MockOptions;

pub const USAGE: &str = "\
api2csv mock <connector> [--addr 127.0.0.1:PORT] [--seed N] [--records N] [--fault-rate F]
                         [--rate-limit N/SECS] [--generation N]

Serves an embedded mock of the connector's API until interrupted, and prints the
configuration that reaches it.

  --addr ADDR        listen address (default 127.0.0.1:8080; port 0 picks a free one)
  --seed N           seed of the generated account (default 1); another seed is another account
  --records N        size of the account: subscribers, or assignments (default 1000)
  --fault-rate F     share of requests that fail: 5xx, 429, dropped or truncated bodies
  --rate-limit N/S   at most N requests per S seconds, then 429 with Retry-After
  --generation N     the account after N-1 rounds of deterministic changes (default 1)
";

pub fn run(p: &mut lexopt::Parser) -> std::result::Result<(), Failure> {
    let (mut def, mut addr, mut options) = (None, "127.0.0.1:8080".to_string(), MockOptions::default());
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return help(USAGE),
            Long("addr") => addr = value(p, "--addr")?,
            Long("seed") => options.seed = value(p, "--seed")?,
            Long("records") => options.records = value(p, "--records")?,
            Long("generation") => options.generation = value::<u32>(p, "--generation")?.max(1),
            Long("fault-rate") => {
                let f: f64 = value(p, "--fault-rate")?;
                if !(0.0..=1.0).contains(&f) {
                    return Err(usage("--fault-rate: expected a number from 0 to 1").into());
                }
                options.fault_rate = f;
            }
            Long("rate-limit") => options.rate_limit = Some(parse_rate_limit(&value::<String>(p, "--rate-limit")?)?),
            Value(v) if def.is_none() => def = Some(connector_arg(v)?),
            other => return Err(lex(other.unexpected()).into()),
        }
    }
    let def = def.ok_or_else(|| usage("mock: which connector?"))?;
    quiet_logging();
    let mock = crate::mock::start_mock(def, &addr, &options)?;
    say(&format!("{} mock API listening; configuration for it:\n{}\n", def.name, mock.config));
    mock.server.wait();
    Ok(())
}

/// `N/SECS`, both positive.
pub fn parse_rate_limit(s: &str) -> Result<(u32, u32)> {
    let bad = || usage(format!("--rate-limit: expected N/SECS such as 120/60, got {s:?}"));
    let (n, secs) = s.split_once('/').ok_or_else(bad)?;
    let (n, secs) = (n.trim().parse().map_err(|_| bad())?, secs.trim().parse().map_err(|_| bad())?);
    if n == 0 || secs == 0 {
        return Err(bad());
    }
    Ok((n, secs))
}
