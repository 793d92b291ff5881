//! Allocations per page in steady state: a page shaped as MailerLite's
//! `/subscribers?include=groups` answers it, parsed into a reused batch and encoded
//! as CSV rows with reused columns and encoder, counted by a global allocator.

use std::alloc::System;

use api2csv::engine::columns::Columns;
use api2csv::page::parse::{parse, Batch, Spec};
use api2csv::page::timestamp::TimeFormat;
use api2csv::store::encode::Encoder;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const NAMES: [&str; 5] = ["Maria", "Zoë", "美玲", "O'Brien", "Said \\\"call me\\\"\\nlater"];

/// Page `p`: 100 subscribers with their `fields` and 1–3 group objects.
fn page(p: u64) -> String {
    let mut records = Vec::new();
    for k in 0..100u64 {
        let id = 180_000_000_000_000_000 - p * 1000 - k;
        let name = NAMES[(id % 5) as usize];
        let groups: Vec<String> = (0..1 + id % 3)
            .map(|g| {
                format!(
                    r#"{{"id":"{}","name":"Group {g}","active_count":{},"open_rate":{{"float":0.{g}5,"string":"{g}5%"}},"click_rate":{{"float":1E-2,"string":"1%"}},"created_at":"2024-01-0{} 10:00:00"}}"#,
                    151_877_204_465_977_130 + g,
                    id % 977,
                    g + 1
                )
            })
            .collect();
        records.push(format!(
            r#"{{"id":"{id}","email":"s{id}@example.org","status":"active","sent":{},"open_rate":{}.5,"ip_address":null,"subscribed_at":"2025-02-11 09:41:27","unsubscribed_at":null,"created_at":"2025-02-11 09:41:27","fields":{{"name":"{name}","last_name":null,"company":"Acme, Inc.","loyalty_points":"{}","notes":"x"}},"groups":[{}],"tags":[1E22, "a"],"opted_in_at":null}}"#,
            k % 60,
            k % 100,
            id % 50000,
            groups.join(",")
        ));
    }
    format!(
        r#"{{"data":[{}],"links":{{"first":null,"last":null,"prev":null,"next":"http://x/api/subscribers?cursor=c{p}"}},"meta":{{"path":"http://x/api/subscribers","per_page":100,"next_cursor":"c{p}","prev_cursor":null}}}}"#,
        records.join(",")
    )
}

#[test]
fn a_page_allocates_a_few_times_not_per_record() {
    let spec = Spec {
        records: &["data"],
        bare_array: false,
        timestamps: &["subscribed_at", "unsubscribed_at", "created_at", "updated_at", "opted_in_at"],
        time_format: Some(TimeFormat::SpaceSeparatedUtc),
        capture: &["groups"],
    };
    let pages: Vec<String> = (0..24).map(page).collect();
    let mut batch = Batch::default();
    let mut columns = Columns::new(&[]);
    let mut encoder = Encoder::new(false);
    let mut out = Vec::new();
    let mut run = |body: &str| {
        parse(body.as_bytes(), &spec, &mut batch).unwrap();
        assert_eq!(batch.len(), 100);
        let ids = (0..batch.len()).map(|i| batch.captured(i, 0).map_or(0, Iterator::count)).sum::<usize>();
        assert!(ids >= 100);
        columns.begin_page();
        encoder.begin_page("2026-12-05T19:00:00Z");
        // As the sync encodes a page: a buffer of each record's values by column.
        let mut by_column: Vec<&[u8]> = Vec::new();
        for i in 0..batch.len() {
            for c in batch.record(i) {
                columns.register(&batch, c.path);
            }
            by_column.clear();
            by_column.resize(columns.len(), b"");
            for c in batch.record(i) {
                by_column[columns.column_of(&batch, c.path) as usize] = batch.value(c);
            }
            encoder.row(&by_column);
        }
        out = encoder.take(std::mem::take(&mut out));
        assert!(out.len() > 10_000);
    };
    for body in &pages[..4] {
        run(body);
    }
    let region = Region::new(GLOBAL);
    for body in &pages[4..] {
        run(body);
    }
    let change = region.change();
    let per_page = (change.allocations + change.reallocations) as f64 / 20.0;
    println!("allocations per page in steady state: {per_page}");
    // The envelope (`links`, `meta`) is read as a `Value`: a few dozen, not one per record.
    assert!(per_page < 50.0, "{per_page} allocations per page");
}
