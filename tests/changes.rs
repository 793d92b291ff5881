//! A sync appends only what changed: generation 1 then generation 2 of the mock
//! account, counted against the mock's own list of mutations.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use api2csv::mock::RunningMock;
use api2csv::mock::{self, MockOptions};
use serde_json::Value;

use crate::expected::{assert_table, read_table};
use crate::workdir::{kill_until_done, Workdir};

fn start_mock(connector: &str, addr: &str, opts: &MockOptions) -> api2csv::error::Result<RunningMock> {
    api2csv::mock::start_mock(api2csv::connector::find(connector).unwrap(), addr, opts)
}

/// The mock of `connector` at `generation`, and a config file for it.
fn generation(wd: &Workdir, connector: &str, opts: &MockOptions, generation: u32) -> (RunningMock, String) {
    generation_at(wd, connector, opts, generation, "127.0.0.1:0")
}

/// [`generation`] on `addr`: where the generation before it was served, so that
/// Paligo sees the same instance (another port is another account).
fn generation_at(
    wd: &Workdir,
    connector: &str,
    opts: &MockOptions,
    generation: u32,
    addr: &str,
) -> (RunningMock, String) {
    let opts = MockOptions { generation, ..opts.clone() };
    let mock = start_mock(connector, addr, &opts).unwrap();
    let mut config = mock.config.clone();
    config["retry_attempts"] = Value::from(8);
    let name = format!("{connector}-g{generation}.json");
    wd.write(&name, &config.to_string());
    (mock, name)
}

fn sync(wd: &Workdir, connector: &str, cfg: &str) -> Command {
    let mut cmd = wd.command(&["sync", connector, "--config", cfg, "--out", "out"]);
    cmd.stdout(Stdio::piped());
    if wd.path(KEYS_ON_DISK).exists() {
        cmd.env("API2CSV_TEST_KEYS_IN_MEMORY", "0");
    }
    cmd
}

/// A file in a test's directory that makes its syncs keep every index in its key
/// file on disk, as an account too large for memory does.
const KEYS_ON_DISK: &str = "keys-on-disk";

struct Expected {
    tables: Vec<&'static str>,
    records: Vec<Vec<String>>,
    mutations: Vec<(BTreeSet<String>, BTreeSet<String>)>,
}

/// Per table of generation `g`: the records, and (added ∪ changed, deleted) keys.
fn expected(connector: &str, opts: &MockOptions, g: u32) -> Expected {
    let opts = MockOptions { generation: g, ..opts.clone() };
    let tables: Vec<&'static str> = api2csv::connector::tables(connector).unwrap().iter().map(|t| t.name).collect();
    let (records, muts): (Vec<Vec<String>>, mock::Mutations) = match connector {
        "paligo" => {
            let p = mock::paligo::Paligo::new(&opts);
            (tables.iter().map(|t| p.expected(t)).collect(), p.mutations())
        }
        _ => {
            let ml = mock::mailerlite::MailerLite::new(&opts);
            (tables.iter().map(|t| ml.expected(t)).collect(), ml.mutations())
        }
    };
    let mutations = tables
        .iter()
        .map(|t| match muts.table(t) {
            Some(m) => {
                let written = m.added.iter().chain(&m.changed).cloned().collect();
                (written, m.deleted.iter().cloned().collect())
            }
            None => (BTreeSet::new(), BTreeSet::new()),
        })
        .collect();
    Expected { tables, records, mutations }
}

/// Keys of the rows after the first `skip` rows of a table file: (written, tombstoned).
fn appended(wd: &Workdir, connector: &str, table: &str, skip: usize) -> (Vec<String>, Vec<String>) {
    let spec = api2csv::connector::tables(connector).unwrap().iter().find(|t| t.name == table).unwrap();
    let t = read_table(&wd.path(&format!("out/{table}.csv")));
    let keys: Vec<usize> = spec.primary_key.iter().map(|k| t.header.iter().position(|h| h == k).unwrap()).collect();
    let (mut written, mut deleted) = (Vec::new(), Vec::new());
    for row in &t.rows[skip..] {
        let key = keys.iter().map(|&i| row[i].as_str()).collect::<Vec<_>>().join(",");
        if row.last().unwrap() == "true" {
            deleted.push(key);
        } else {
            written.push(key);
        }
    }
    (written, deleted)
}

fn row_counts(wd: &Workdir, tables: &[&str]) -> Vec<usize> {
    tables.iter().map(|t| read_table(&wd.path(&format!("out/{t}.csv"))).rows.len()).collect()
}

fn generations(connector: &str, records: usize, kill: bool) {
    generations_with(connector, records, kill, false);
}

fn generations_with(connector: &str, records: usize, kill: bool, keys_on_disk: bool) {
    let wd = Workdir::new(&format!("changes-{connector}-{kill}-{keys_on_disk}"));
    if keys_on_disk {
        wd.write(KEYS_ON_DISK, "");
    }
    let opts = MockOptions { records, seed: 5, ..MockOptions::default() };
    let (m1, cfg1) = generation(&wd, connector, &opts, 1);
    let g1 = expected(connector, &opts, 1);
    let g2 = expected(connector, &opts, 2);

    wd.stdout(&mut sync(&wd, connector, &cfg1));
    let first = row_counts(&wd, &g1.tables);
    let want: Vec<usize> = g1.records.iter().map(Vec::len).collect();
    assert_eq!(first, want, "the first sync writes every record once");

    // Nothing changed: nothing appended.
    wd.stdout(&mut sync(&wd, connector, &cfg1));
    assert_eq!(row_counts(&wd, &g1.tables), first, "a sync with nothing changed appended rows");

    let addr = m1.server.origin().trim_start_matches("http://").to_string();
    drop(m1);
    let (_m2, cfg2) = generation_at(&wd, connector, &opts, 2, &addr);
    if kill {
        let kills = kill_until_done(&wd, &|| sync(&wd, connector, &cfg2), &mut || false, &mut || ());
        assert!(kills >= 2, "only {kills} kills");
    } else {
        wd.stdout(&mut sync(&wd, connector, &cfg2));
    }
    let mut total_mutations = 0;
    for (i, table) in g2.tables.iter().enumerate() {
        let (written, deleted) = appended(&wd, connector, table, first[i]);
        let (want_written, want_deleted) = &g2.mutations[i];
        total_mutations += want_written.len() + want_deleted.len();
        let written_set: BTreeSet<String> = written.iter().cloned().collect();
        assert_eq!(written.len(), written_set.len(), "{table}: a row was appended twice");
        assert_eq!(&written_set, want_written, "{table}: rows appended");
        let deleted_set: BTreeSet<String> = deleted.iter().cloned().collect();
        assert_eq!(deleted.len(), deleted_set.len(), "{table}: a tombstone was appended twice");
        assert_eq!(&deleted_set, want_deleted, "{table}: tombstones");
    }
    assert!(total_mutations > 10, "generation 2 changed too little to test anything");

    wd.stdout(&mut wd.command(&["compact", "out"]));
    for (i, table) in g2.tables.iter().enumerate() {
        assert_table(&wd.path("out"), connector, table, &g2.records[i]);
    }
}

#[test]
fn mailerlite_second_generation_appends_exactly_the_mutations() {
    generations("mailerlite", 3000, false);
}

#[test]
fn mailerlite_killed_second_generation_gives_the_same_result() {
    generations("mailerlite", 3000, true);
}

/// The same with every index looked up in its key file, and the sync killed.
#[test]
fn mailerlite_killed_second_generation_with_keys_on_disk_gives_the_same_result() {
    generations_with("mailerlite", 3000, true, true);
}

#[test]
fn paligo_second_generation_with_keys_on_disk_appends_exactly_the_mutations() {
    generations_with("paligo", 1500, false, true);
}

#[test]
fn paligo_second_generation_appends_exactly_the_mutations() {
    generations("paligo", 1500, false);
}

#[test]
fn paligo_killed_second_generation_gives_the_same_result() {
    generations("paligo", 1500, true);
}

#[test]
fn full_refresh_rebuilds_each_file_from_scratch() {
    let wd = Workdir::new("changes-refresh");
    let opts = MockOptions { records: 1000, seed: 9, ..MockOptions::default() };
    let (_m1, cfg1) = generation(&wd, "mailerlite", &opts, 1);
    let (_m2, cfg2) = generation(&wd, "mailerlite", &opts, 2);
    wd.stdout(&mut sync(&wd, "mailerlite", &cfg1));
    wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", &cfg2, "--out", "out", "--full-refresh"]));
    let g2 = expected("mailerlite", &opts, 2);
    for (i, table) in g2.tables.iter().enumerate() {
        let t = read_table(&wd.path(&format!("out/{table}.csv")));
        assert_eq!(t.rows.len(), g2.records[i].len(), "{table}: one row per record, no history");
        assert_table(&wd.path("out"), "mailerlite", table, &g2.records[i]);
        assert!(!wd.path(&format!("out/{table}.csv.refresh")).exists());
    }
    // enable_incremental_sync false means every sync is a full refresh.
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(wd.path(&cfg1)).unwrap()).unwrap();
    config["enable_incremental_sync"] = Value::from("false");
    wd.write("full.json", &config.to_string());
    wd.stdout(&mut sync(&wd, "mailerlite", "full.json"));
    let g1 = expected("mailerlite", &opts, 1);
    for (i, table) in g1.tables.iter().enumerate() {
        assert_table(&wd.path("out"), "mailerlite", table, &g1.records[i]);
    }
}

/// Changes the key file of table `name`, the `i`th.
type Tamper<'a> = dyn Fn(usize, &str) + 'a;

/// The `.<table>.keys` files beside the tables (the index a sync loaded, so the
/// next reads only the rows after it) are a cache: one from another directory, one
/// with a byte changed, or one left from an earlier sync never costs or adds a row.
#[test]
fn key_files_that_do_not_prove_themselves_cost_nothing() {
    let opts = MockOptions { records: 1000, seed: 5, ..MockOptions::default() };
    let other = Workdir::new("changes-keys-other");
    let (_o, cfg_other) = generation(&other, "mailerlite", &MockOptions { seed: 6, records: 300, ..opts.clone() }, 1);
    // The second sync leaves the key files (the first has no index to load).
    other.stdout(&mut sync(&other, "mailerlite", &cfg_other));
    other.stdout(&mut sync(&other, "mailerlite", &cfg_other));

    let wd = Workdir::new("changes-keys");
    let (m1, cfg1) = generation(&wd, "mailerlite", &opts, 1);
    wd.stdout(&mut sync(&wd, "mailerlite", &cfg1));
    wd.stdout(&mut sync(&wd, "mailerlite", &cfg1));
    let g2 = expected("mailerlite", &opts, 2);
    let key_file = |dir: &Workdir, t: &str| dir.path(&format!("out/.{t}.keys"));
    let first: Vec<Vec<u8>> = g2.tables.iter().map(|t| std::fs::read(key_file(&wd, t)).unwrap_or_default()).collect();
    assert!(first.iter().filter(|k| !k.is_empty()).count() >= 3, "too few key files to test anything");
    let addr = m1.server.origin().trim_start_matches("http://").to_string();
    drop(m1);
    let (_m2, cfg2) = generation_at(&wd, "mailerlite", &opts, 2, &addr);
    wd.stdout(&mut sync(&wd, "mailerlite", &cfg2));
    let settled = row_counts(&wd, &g2.tables);

    let tamper: [&Tamper<'_>; 3] = [
        // Another account's, proven but made from other bytes.
        &|_, t| {
            let copied = std::fs::copy(key_file(&other, t), key_file(&wd, t));
            assert!(copied.is_ok() || t != "subscriber", "{copied:?}");
        },
        // A byte changed in the middle.
        &|_, t| {
            if let Ok(mut b) = std::fs::read(key_file(&wd, t)) {
                let mid = b.len() / 2;
                b[mid] ^= 1;
                std::fs::write(key_file(&wd, t), b).unwrap();
            }
        },
        // The one of the sync before the changes: it covers only the start of the table.
        &|i, t| {
            if !first[i].is_empty() {
                std::fs::write(key_file(&wd, t), &first[i]).unwrap();
            }
        },
    ];
    for (k, tamper) in tamper.iter().enumerate() {
        for (i, t) in g2.tables.iter().enumerate() {
            tamper(i, t);
        }
        wd.stdout(&mut sync(&wd, "mailerlite", &cfg2));
        assert_eq!(row_counts(&wd, &g2.tables), settled, "tampering {k}: a sync with nothing changed appended rows");
    }
    wd.stdout(&mut wd.command(&["compact", "out"]));
    for (i, table) in g2.tables.iter().enumerate() {
        assert_table(&wd.path("out"), "mailerlite", table, &g2.records[i]);
    }
    // `compact` leaves the key files of the files it wrote.
    let made = key_files_match_a_rebuild(&wd, "mailerlite", &cfg2, &g2.tables, "compaction");
    assert!(made >= 3, "too few key files after compact ({made})");
}

/// A first sync leaves the key files a read of its tables would make, byte for byte:
/// the next sync need not read the tables, and trusts nothing a rebuild would not give.
#[test]
fn a_first_sync_leaves_the_key_files_a_read_of_its_tables_makes() {
    for (connector, records, safe) in [("mailerlite", 2000, false), ("mailerlite", 300, true), ("paligo", 800, false)] {
        let wd = Workdir::new(&format!("changes-first-keys-{connector}-{safe}"));
        let opts = MockOptions { records, seed: 3, ..MockOptions::default() };
        let (_m, cfg) = generation(&wd, connector, &opts, 1);
        if safe {
            let mut c: Value = serde_json::from_str(&std::fs::read_to_string(wd.path(&cfg)).unwrap()).unwrap();
            c["spreadsheet_safe"] = Value::from(true);
            wd.write(&cfg, &c.to_string());
        }
        wd.stdout(&mut sync(&wd, connector, &cfg));
        let tables: Vec<&str> = api2csv::connector::tables(connector).unwrap().iter().map(|t| t.name).collect();
        let made = key_files_match_a_rebuild(&wd, connector, &cfg, &tables, "first sync");
        assert!(made >= 3, "{connector}: too few key files ({made})");
        // A full refresh leaves the key files of the files it rebuilt.
        let mut refresh = sync(&wd, connector, &cfg);
        refresh.arg("--full-refresh");
        wd.stdout(&mut refresh);
        key_files_match_a_rebuild(&wd, connector, &cfg, &tables, "full refresh");
    }
}

/// Holds the key files of `wd`'s tables against those the next sync (nothing
/// changed, none appended) makes from the tables once they are deleted; how many.
fn key_files_match_a_rebuild(wd: &Workdir, connector: &str, cfg: &str, tables: &[&str], after: &str) -> usize {
    let key_file = |t: &str| wd.path(&format!("out/.{t}.keys"));
    let left: Vec<Option<Vec<u8>>> = tables.iter().map(|t| std::fs::read(key_file(t)).ok()).collect();
    for t in tables {
        let _ = std::fs::remove_file(key_file(t));
    }
    let counts = row_counts(wd, tables);
    wd.stdout(&mut sync(wd, connector, cfg));
    assert_eq!(
        row_counts(wd, tables),
        counts,
        "{connector} after the {after}: nothing changed, yet rows were appended"
    );
    for (t, left) in tables.iter().zip(&left) {
        let rebuilt = std::fs::read(key_file(t)).ok();
        assert!(*left == rebuilt, "{connector} {t}: the {after}'s key file differs from a rebuilt one");
    }
    left.iter().filter(|k| k.is_some()).count()
}
