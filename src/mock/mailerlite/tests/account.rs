//! The account's identity: one number per seed, in the headers and in the records.

use super::*;

#[test]
fn account_id_depends_on_the_seed() {
    let of = |seed| MailerLite::new(&MockOptions { seed, records: 10, ..MockOptions::default() }).account_id();
    assert_ne!(of(1), of(2));
    assert_eq!(of(7), of(7));
    let ids: HashSet<String> = (1..=20).map(of).collect();
    assert_eq!(ids.len(), 20);
    assert!(ids.iter().all(|id| (5..=6).contains(&id.len()) && id.parse::<u64>().is_ok()), "{ids:?}");
}

#[test]
fn every_answer_but_a_401_names_the_account_and_user() {
    let api = account(10, 1);
    let key = Some(format!("Bearer {API_KEY}"));
    let answers = [
        api.handle(&request("/api/subscribers", key.clone())),
        api.handle(&request("/api/groups/1/subscribers", key.clone())),
        api.handle(&request("/api/subscribers?filter[status]=gone", key.clone())),
        api.handle(&request("/api/nowhere", key)),
        api.too_many_requests(3),
    ];
    assert_eq!(answers.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 404, 422, 404, 429]);
    for response in &answers {
        assert_eq!(header(response, "x-account_id"), Some(api.account_id().as_str()));
        let user = header(response, "x-user_id").expect("x-user_id");
        assert!(user.parse::<u64>().is_ok(), "{user}");
    }
    let refused = api.handle(&request("/api/subscribers", Some("Bearer nope".into())));
    assert_eq!((header(&refused, "x-account_id"), header(&refused, "x-user_id")), (None, None));
}

#[test]
fn campaigns_and_their_emails_carry_the_account_id() {
    let api = MailerLite::new(&MockOptions { seed: 9, records: 10, ..MockOptions::default() });
    let id = api.account_id();
    for text in api.expected("campaign") {
        let campaign: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(campaign["account_id"], id.as_str());
        for email in campaign["emails"].as_array().unwrap() {
            assert_eq!(email["account_id"], id.as_str());
            assert!(email["preview_url"].as_str().unwrap().contains(&format!("/preview/{id}/emails/")));
        }
        for group in campaign["basic_filter_for_humans"]["included_groups"].as_array().unwrap() {
            assert_eq!(group["account_id"].to_string(), id);
        }
    }
}
