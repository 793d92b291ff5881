use api2csv::mock::{MockApi, MockOptions, MockRequest};
use std::time::Instant;
fn main() {
    let ml = api2csv::mock::mailerlite::MailerLite::new(&MockOptions { records: 2000, ..Default::default() });
    let req = MockRequest {
        method: "GET".into(),
        path: "/api/subscribers".into(),
        query: vec![("limit".into(), "100".into())],
        authorization: Some(format!("Bearer {}", api2csv::mock::mailerlite::API_KEY)),
        origin: "http://x".into(),
    };
    let body = ml.handle(&req).body;
    let spec = api2csv::page::parse::Spec {
        records: &["data"],
        bare_array: false,
        timestamps: &["subscribed_at", "unsubscribed_at", "created_at", "updated_at", "opted_in_at"],
        time_format: Some(api2csv::page::timestamp::TimeFormat::SpaceSeparatedUtc),
        capture: &[],
    };
    let mut batch = api2csv::page::parse::Batch::default();
    let mut best = std::time::Duration::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        for _ in 0..500 {
            api2csv::page::parse::parse(&body, &spec, &mut batch).unwrap();
        }
        best = best.min(t.elapsed() / 500);
    }
    println!("parse: {:?}/page ({} bytes, {} records)", best, body.len(), batch.len());
}
