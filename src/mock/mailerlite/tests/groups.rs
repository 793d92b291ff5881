//! Groups and memberships: the `groups` arrays of `include=groups`, the member
//! listings, the counters, and that all of them agree with `expected`.

use std::collections::BTreeMap;

use super::*;

/// `expected("group_subscriber")` as subscriber id → group ids, ascending.
fn memberships(api: &MailerLite) -> BTreeMap<String, Vec<String>> {
    let mut by_subscriber: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for text in api.expected("group_subscriber") {
        let row: Value = serde_json::from_str(&text).unwrap();
        let subscriber = row["subscriber_id"].as_str().unwrap().to_string();
        by_subscriber.entry(subscriber).or_default().push(row["group_id"].as_str().unwrap().to_string());
    }
    by_subscriber.values_mut().for_each(|groups| groups.sort_by_key(|id| id.parse::<u64>().unwrap()));
    by_subscriber
}

/// `/groups` as group id → the object it lists.
fn listed_groups(api: &MailerLite) -> HashMap<String, Value> {
    let groups = all_numbered_pages(api, "/api/groups?limit=100");
    groups.into_iter().map(|g| (g["id"].as_str().unwrap().to_string(), g)).collect()
}

/// The five member counters of a group object, summed.
fn counted(group: &Value) -> u64 {
    ["active_count", "unsubscribed_count", "unconfirmed_count", "bounced_count", "junk_count"]
        .iter()
        .map(|k| group[k].as_u64().unwrap())
        .sum()
}

#[test]
fn include_groups_adds_group_objects_before_opted_in_at() {
    let api = account(50, 1);
    let page = ok(&api, "/api/subscribers?limit=50&include=groups");
    let with_groups = page["data"].as_array().unwrap().iter().find(|s| s["groups"] != Value::Array(vec![]));
    let subscriber = with_groups.expect("some subscriber is in a group");
    let names = keys(subscriber);
    let at = names.iter().position(|&k| k == "groups").unwrap();
    assert_eq!(names[at - 1..=at + 1], ["fields", "groups", "opted_in_at"]);
    assert_eq!(keys(&subscriber["groups"][0])[..3], ["id", "name", "active_count"]);
    assert_eq!(keys(&subscriber["groups"][0]["open_rate"]), ["float", "string"]);
}

#[test]
fn group_members_default_to_active() {
    let api = account(400, 1);
    let groups = all_numbered_pages(&api, "/api/groups?limit=2");
    assert_eq!(texts(&groups), expected(&api, "group"));
    let mut memberships = HashSet::new();
    for group in &groups {
        let id = group["id"].as_str().unwrap();
        let active = all_pages(&api, &format!("/api/groups/{id}/subscribers?limit=30"));
        assert!(active.iter().all(|s| s["status"] == "active"));
        assert_eq!(active.len() as u64, group["active_count"].as_u64().unwrap());
        for status in Status::ALL {
            let target = format!("/api/groups/{id}/subscribers?limit=100&filter[status]={}", status.as_str());
            for member in all_pages(&api, &target) {
                assert_eq!(member["status"], status.as_str());
                let sid = member["id"].as_str().unwrap();
                memberships.insert(format!(r#"{{"group_id":"{id}","subscriber_id":"{sid}"}}"#));
            }
        }
    }
    assert_eq!(memberships, expected(&api, "group_subscriber"));
}

#[test]
fn include_groups_embeds_every_membership_across_pages_and_statuses() {
    let api = account(700, 2);
    let (groups, members) = (listed_groups(&api), memberships(&api));
    let mut seen = BTreeMap::new();
    let filters = Status::ALL.iter().map(|s| format!("&filter[status]={}", s.as_str()));
    for filter in filters.chain([String::new()]) {
        for subscriber in all_pages(&api, &format!("/api/subscribers?limit=7&include=groups{filter}")) {
            let id = subscriber["id"].as_str().unwrap().to_string();
            let embedded = subscriber["groups"].as_array().expect("a groups array, maybe empty");
            let ids: Vec<String> = embedded.iter().map(|g| g["id"].as_str().unwrap().to_string()).collect();
            assert_eq!(ids, members.get(&id).cloned().unwrap_or_default(), "subscriber {id}");
            for group in embedded {
                assert_eq!(*group, groups[group["id"].as_str().unwrap()], "the object /groups lists");
            }
            seen.insert(id, ids);
        }
    }
    seen.retain(|_, ids| !ids.is_empty());
    assert_eq!(seen, members);
    assert!(members.values().any(|ids| ids.len() > 1), "ascending order is tested on several groups");
    let plain = ok(&api, "/api/subscribers?limit=100");
    assert!(plain["data"].as_array().unwrap().iter().all(|s| s.get("groups").is_none()));
}

#[test]
fn group_counters_add_up_to_the_memberships() {
    for seed in [1, 42, 977] {
        for generation in 1..=3 {
            let api = MailerLite::new(&MockOptions { seed, records: 3000, generation, ..MockOptions::default() });
            let mut per_group: HashMap<String, u64> = HashMap::new();
            for ids in memberships(&api).into_values() {
                ids.into_iter().for_each(|id| *per_group.entry(id).or_default() += 1);
            }
            for (id, group) in listed_groups(&api) {
                let members = per_group.get(&id).copied().unwrap_or(0);
                assert_eq!(counted(&group), members, "seed {seed}, generation {generation}, group {id}");
            }
        }
    }
}

#[test]
fn member_listings_per_status_match_the_counters() {
    let api = account(1200, 3);
    for (id, group) in listed_groups(&api) {
        for status in Status::ALL {
            let target = format!("/api/groups/{id}/subscribers?limit=100&filter[status]={}", status.as_str());
            let listed = all_pages(&api, &target).len() as u64;
            let counter = format!("{}_count", status.as_str());
            assert_eq!(listed, group[&counter].as_u64().unwrap(), "group {id}: {counter}");
        }
    }
}

#[test]
fn skewed_counts_disagree_only_in_the_counters() {
    let opts = MockOptions { seed: 42, records: 900, generation: 2, ..MockOptions::default() };
    let (honest, skewed) = (MailerLite::new(&opts), MailerLite::new(&MockOptions { skew_group_counts: true, ..opts }));
    assert_eq!(memberships(&skewed), memberships(&honest));
    assert_eq!(skewed.expected("subscriber"), honest.expected("subscriber"));
    let first = &all_numbered_pages(&skewed, "/api/groups?limit=1")[0];
    let id = first["id"].as_str().unwrap();
    let active = all_pages(&skewed, &format!("/api/groups/{id}/subscribers?limit=100")).len() as u64;
    assert_eq!(first["active_count"].as_u64().unwrap(), active + 1);
    assert_eq!(
        counted(first),
        memberships(&skewed).values().filter(|ids| ids.iter().any(|g| g == id)).count() as u64 + 1
    );
    assert_eq!(listed_groups(&honest)[id]["active_count"].as_u64().unwrap(), active);
    let others = |api: &MailerLite| {
        let mut groups = listed_groups(api);
        groups.remove(id);
        groups
    };
    assert_eq!(others(&skewed), others(&honest), "only the first group is skewed");
    let embedded = all_pages(&skewed, "/api/subscribers?limit=100&include=groups")
        .into_iter()
        .flat_map(|s| s["groups"].as_array().unwrap().clone())
        .find(|g| g["id"] == id)
        .expect("the first group has members");
    assert_eq!(embedded, *first);
    assert_eq!(skewed.mutations(), honest.mutations(), "the skew is no mutation");
}

#[test]
fn generation_two_moves_adds_and_removes_memberships() {
    let (old, new) = (account(2000, 1), account(2000, 2));
    let mutations = new.mutations();
    let m = mutations.table("group_subscriber").unwrap();
    let subscribers = |keys: &[String]| -> HashSet<String> {
        keys.iter().map(|key| key.split_once(',').unwrap().1.to_string()).collect()
    };
    let ids = |api: &MailerLite| -> HashSet<String> {
        let records = api.expected("subscriber");
        records.iter().map(|t| serde_json::from_str::<Value>(t).unwrap()["id"].as_str().unwrap().to_string()).collect()
    };
    let (before, after, left, joined) = (ids(&old), ids(&new), subscribers(&m.deleted), subscribers(&m.added));
    let stayed = |id: &String| before.contains(id) && after.contains(id);
    assert!(left.intersection(&joined).any(stayed), "a subscriber left one group and joined another");
    assert!(left.iter().any(|id| stayed(id) && !joined.contains(id)), "a subscriber left a group");
    assert!(joined.iter().any(|id| stayed(id) && !left.contains(id)), "a subscriber joined a group");
    assert!(joined.iter().any(|id| !before.contains(id)), "a new subscriber joined a group");
    assert!(left.iter().any(|id| !after.contains(id)), "a deleted subscriber's memberships went");
}
