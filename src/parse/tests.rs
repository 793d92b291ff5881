//! The page reader against serde_json's own `Value` (with `preserve_order` and
//! `arbitrary_precision`) as the oracle.

use super::*;

const DATA: Spec = Spec::records_in(&["data"]);

/// The leaves the oracle reads from record `v`: (segments, text) in first-seen order.
fn oracle_leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let text = match v {
        Value::Object(m) => {
            for (k, child) in m {
                path.push(k.clone());
                oracle_leaves(child, path, out);
                path.pop();
            }
            return;
        }
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(_) => serde_json::to_string(v).unwrap(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
    };
    out.push((path.clone(), text));
}

/// Per record, its leaves: (key path, text).
type Leaves = Vec<Vec<(Vec<String>, String)>>;

fn oracle(body: &str) -> Option<Leaves> {
    let v: Value = serde_json::from_str(body).ok()?;
    let records = v.get("data")?.as_array()?;
    records
        .iter()
        .map(|r| {
            r.as_object()?;
            let mut out = Vec::new();
            oracle_leaves(r, &mut Vec::new(), &mut out);
            Some(out)
        })
        .collect()
}

fn ours(body: &str) -> Option<Leaves> {
    let mut batch = Batch::default();
    parse(body.as_bytes(), &DATA, &mut batch).ok()?;
    Some(leaves(&batch))
}

fn leaves(batch: &Batch) -> Leaves {
    (0..batch.len())
        .map(|i| {
            batch
                .record(i)
                .map(|c| {
                    let KeyPath::Json(segs) = decode(batch.path(c.path)) else { panic!("derived") };
                    (segs, String::from_utf8(batch.value(c).to_vec()).unwrap())
                })
                .collect()
        })
        .collect()
}

fn same(body: &str) {
    assert_eq!(ours(body), oracle(body), "{body}");
}

#[test]
fn records_flatten_to_leaves_in_key_order() {
    let body = r#"{"data":[{"id":"1","open_rate":{"float":0.50,"string":"50%"},"n":123456789012345678901234,
        "tags":[ 1, {"a" : "b c"}, 2.50 ],"phone":null,"empty":{},"t":true}],"meta":{"next_cursor":null}}"#;
    same(body);
    let got = ours(body).unwrap();
    let texts: Vec<&str> = got[0].iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(texts, ["1", "0.50", "50%", "123456789012345678901234", r#"[1,{"a":"b c"},2.50]"#, "", "true"]);
}

#[test]
fn invalid_json_is_refused_whole() {
    for body in [
        r#"{"data":[{"a":"\u12"}]}"#,
        r#"{"data":[{"a":"\x41"}]}"#,
        r#"{"data":[{"a":"ok"}],"links":{"x":"\ud800"}}"#,
        r#"{"data":[{"a":007}]}"#,
        r#"{"data":[{"a":-00.5}]}"#,
        r#"{"data":[{"a":"x"}],"data":[{"a":"y"}"#,
        "{\"data\":[{\"a\":\"\\",
        r#"{"data":[{"a":1}]} x"#,
        "<html>502</html>",
    ] {
        let mut batch = Batch::default();
        let err = parse(body.as_bytes(), &DATA, &mut batch).unwrap_err();
        assert!(err.0.starts_with("invalid JSON"), "{body}: {err}");
        assert!(batch.is_empty(), "{body}");
        assert!(serde_json::from_str::<Value>(body).is_err(), "the oracle accepts {body}");
    }
}

#[test]
fn a_repeated_key_keeps_its_last_value_in_its_first_position() {
    for body in [
        r#"{"data":[{"b":1,"a":2,"b":3}]}"#,
        r#"{"data":[{"a":{"x":1},"b":0,"a":{"y":2}}]}"#,
        r#"{"data":[{"a":{},"b":1,"a":{"y":2}}]}"#,
        r#"{"data":[{"a":1,"a":{"y":2}}]}"#,
        r#"{"data":[{"a":{"y":2},"a":1}]}"#,
        r#"{"data":[{"a":{"x":1,"y":2},"a":{"y":3,"x":4}}]}"#,
        r#"{"data":[{"a":{"x":{"p":1},"x":{"q":2}},"z":1}]}"#,
        r#"{"data":[{"a":[{"k":1,"k":2}],"a":[3]}]}"#,
        r#"{"data":[{"id":"1"},{"id":"2","id":"3"}]}"#,
        r#"{"data":[{"a":1.5,"a":2.5}]}"#,
    ] {
        same(body);
    }
    // A repeated records key: only the last array counts.
    let body = r#"{"data":[{"id":"1"}],"data":[{"id":"2"}]}"#;
    same(body);
    assert_eq!(ours(body).unwrap().len(), 1);
}

#[test]
fn keys_that_flatten_alike_stay_apart() {
    let body = r#"{"data":[{"id":"3","":{"id":"999"},"a\u0000b":1,"a":{"b":2},"\ufeffid":4}]}"#;
    same(body);
    let got = ours(body).unwrap();
    let paths: Vec<&Vec<String>> = got[0].iter().map(|(p, _)| p).collect();
    assert_eq!(paths.len(), 5);
}

#[test]
fn the_number_token_as_a_real_key_is_a_string() {
    // The oracle itself misreads this object as a number; we keep what was sent.
    let body =
        r#"{"data":[{"n":{"$serde_json::private::Number":"5"},"m":{"$serde_json::private::Number":"6","k":1}}]}"#;
    let got = ours(body).unwrap();
    let token = "$serde_json::private::Number".to_string();
    assert_eq!(got[0][0], (vec!["n".to_string(), token.clone()], "5".to_string()));
    assert_eq!(got[0][1], (vec!["m".to_string(), token], "6".to_string()));
    assert_eq!(got[0].len(), 3);
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let depth = 60_000;
    let body = format!(r#"{{"data":[{}1{}]}}"#, r#"{"a":"#.repeat(depth), "}".repeat(depth));
    let mut batch = Batch::default();
    let err = parse(body.as_bytes(), &DATA, &mut batch).unwrap_err();
    assert!(err.0.contains("recursion limit"), "{err}");
    let arrays = format!(r#"{{"data":[{{"a":{}{}}}]}}"#, "[".repeat(depth), "]".repeat(depth));
    assert!(parse(arrays.as_bytes(), &DATA, &mut batch).is_err());
}

#[test]
fn envelope_keys_and_records_key_preference() {
    let spec = Spec { records: &["users", "data", "items"], bare_array: true, ..DATA };
    let mut batch = Batch::default();
    let env = parse(br#"{"page":1,"data":[{"id":1}],"users":[{"id":2},{"id":3}],"next_page":""}"#, &spec, &mut batch)
        .unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(env.records_key.as_deref(), Some("users"));
    assert_eq!(env.get("page"), Some(&Value::from(1)));
    assert!(env.get("data").is_none(), "a less preferred records key is not envelope");
    let env = parse(br#"[{"id":1}]"#, &spec, &mut batch).unwrap();
    assert_eq!((batch.len(), env.records_key), (1, None));
    let err = parse(br#"{"page":1}"#, &spec, &mut batch).unwrap_err();
    assert!(err.0.contains("no \"users\""), "{err}");
    assert!(parse(br#"[{"id":1}]"#, &DATA, &mut batch).is_err());
}

#[test]
fn timestamps_convert_or_pass_through_counted() {
    let spec = Spec { timestamps: &["created_at", "t"], time_format: Some(TimeFormat::SpaceSeparatedUtc), ..DATA };
    let mut batch = Batch::default();
    let body = br#"{"data":[{"created_at":"2025-02-11 09:41:27","t":"2025-02-30 00:00:00","n":{"created_at":"2025-02-11 09:41:27"}},{"created_at":null,"t":""}]}"#;
    parse(body, &spec, &mut batch).unwrap();
    let got = leaves(&batch);
    assert_eq!(got[0][0].1, "2025-02-11T09:41:27Z");
    assert_eq!(got[0][1].1, "2025-02-30 00:00:00");
    assert_eq!(got[0][2].1, "2025-02-11 09:41:27", "only top-level keys are timestamps");
    assert_eq!((batch.bad_timestamps, batch.first_bad_timestamp.as_deref()), (1, Some("2025-02-30 00:00:00")));
    let spec = Spec { timestamps: &["created_at"], time_format: Some(TimeFormat::UnixSeconds), ..DATA };
    parse(br#"{"data":[{"created_at":1731400000},{"created_at":1.5},{"created_at":"x"}]}"#, &spec, &mut batch).unwrap();
    let got = leaves(&batch);
    assert_eq!(got[0][0].1, "2024-11-12T08:26:40Z");
    assert_eq!(got[1][0].1, "1.5");
    assert_eq!(batch.bad_timestamps, 1, "a string in a Unix-seconds field is kept without a count");
}

#[test]
fn captured_keys_leave_the_cells() {
    let spec = Spec { capture: &["groups"], ..DATA };
    let mut batch = Batch::default();
    parse(br#"{"data":[{"id":"1","groups":[{"id":"7"}],"x":1},{"id":"2"}]}"#, &spec, &mut batch).unwrap();
    let got = leaves(&batch);
    assert_eq!(got[0].len(), 2);
    assert_eq!(batch.captured(0, 0).unwrap()[0]["id"], "7");
    assert!(batch.captured(1, 0).is_none());
}

#[test]
fn records_built_by_hand_and_derived_columns() {
    let mut batch = Batch::default();
    batch.begin_record();
    batch.push_leaf(&["group_id"], b"7");
    batch.push_derived("level", b"2");
    batch.end_record();
    let id = batch.derived_id("level").unwrap();
    assert_eq!(batch.value_at(0, id), Some(&b"2"[..]));
    assert_eq!(decode(batch.path(id)), KeyPath::Derived("level".into()));
    assert_ne!(batch.path_id(&["level"]), Some(id));
}

/// Generated documents: random keys (empty, `_`, NUL, BOM, repeats), values and
/// nesting, each compared with the oracle.
#[test]
fn generated_documents_agree_with_the_oracle() {
    let n = std::env::var("API2CSV_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..n {
        let records: Vec<String> = (0..rng.below(4)).map(|_| rng.object(0)).collect();
        let body = format!(r#"{{"meta":{},"data":[{}]}}"#, rng.value(2), records.join(","));
        same(&body);
    }
}

/// Every prefix of a page is refused (or, for the whole page, accepted), never panics.
#[test]
fn every_truncation_of_a_page_is_refused() {
    let body = r#"{"data":[{"id":"148203517760325412","email":"a\"b@example.org","fields":{"name":"Maria \u00e9 \ud83d\ude00","n":null},"rate":64.290,"tags":[1,{"x":"]"}],"t":true}],"links":{"next":null},"meta":{"next_cursor":null}}"#;
    let mut batch = Batch::default();
    for cut in 0..body.len() {
        assert!(parse(&body.as_bytes()[..cut], &DATA, &mut batch).is_err(), "prefix of {cut} bytes accepted");
        assert!(batch.is_empty());
    }
    same(body);
}

/// The cursor hint against serde_json: generated bodies (the cursor as a string,
/// null, a number, missing or repeated; `meta` last or not, nested, or inside a key)
/// and every prefix of each. A hint is never a cursor the full parse would not name,
/// unless the body is not JSON at all; and a body that ends in its `meta` gets one
/// (but for a repeated `next_cursor`: no guess).
#[test]
fn the_cursor_hint_agrees_with_serde_json() {
    fn oracle(body: &[u8]) -> Option<Option<String>> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let c = v.as_object()?.get("meta").and_then(|m| m.get("next_cursor")).and_then(Value::as_str);
        Some(c.filter(|c| !c.is_empty()).map(str::to_string))
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut hinted, mut cuts) = (0, 0);
    for _ in 0..400 {
        let cursor = match rng.below(6) {
            0 => "null".to_string(),
            1 => "12".to_string(),
            2 => rng.value(3),
            _ => format!(r#""eyJpZCI6{}\u00e9\/x""#, rng.below(1_000_000)),
        };
        let mut meta = vec![format!(r#""next_cursor":{cursor}"#), r#""per_page":100"#.to_string()];
        let repeated = rng.below(5);
        match repeated {
            0 => meta.push(format!(r#""next_cursor":{}"#, rng.value(3))),
            1 => meta.reverse(),
            2 => meta.remove(0).clear(),
            _ => {}
        }
        let meta = format!("{{{}}}", meta.join(", "));
        let records: Vec<String> = (0..rng.below(3)).map(|_| rng.object(1)).collect();
        let mut top = vec![format!(r#""data":[{}]"#, records.join(",")), format!(r#""links":{}"#, rng.value(2))];
        let last = rng.below(8);
        match last {
            0 => top.insert(0, format!(r#""meta":{meta}"#)),
            1 => top.push(format!(r#""x\"meta":{meta}"#)),
            2 => top.push(format!(r#""links":{{"meta":{meta}}}"#)),
            3 => top.extend([format!(r#""meta":{meta}"#), r#""meta" : {"next_cursor":"again"}"#.into()]),
            _ => top.push(format!("\"meta\" :\n{meta}")),
        }
        let body = format!("{{{}}}{}", top.join(","), [" ", "", "\n"][rng.below(3) as usize]);
        let body = body.as_bytes();
        let whole = oracle(body).expect("a generated body is JSON");
        // A repeated `next_cursor` in `meta` gives no hint (serde's derive refuses it).
        if last >= 3 && repeated != 0 {
            assert_eq!(next_cursor_hint(body), whole, "{}", String::from_utf8_lossy(body));
        }
        for cut in 0..=body.len() {
            let Some(hint) = next_cursor_hint(&body[..cut]) else { continue };
            hinted += 1;
            cuts += usize::from(cut < body.len());
            if let Some(named) = oracle(&body[..cut]) {
                assert_eq!(Some(hint), named, "{}", String::from_utf8_lossy(&body[..cut]));
            }
        }
    }
    assert!(hinted > 100, "the hint was tried on few bodies: {hinted}");
    assert!(cuts > 0, "no prefix got a hint, so the guard against them is untested");
}

pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn key(&mut self) -> String {
        let keys = ["id", "a", "b", "", "_", "a_b", "\\u0000", "a\\u0000b", "\\ufeffid", "é", "x y", "\\\"q"];
        keys[self.below(keys.len() as u64) as usize].to_string()
    }

    pub fn object(&mut self, depth: u32) -> String {
        let members: Vec<String> =
            (0..self.below(5)).map(|_| format!(r#""{}":{}"#, self.key(), self.value(depth + 1))).collect();
        format!("{{{}}}", members.join(","))
    }

    pub fn value(&mut self, depth: u32) -> String {
        let pick = if depth > 3 { self.below(6) } else { self.below(9) };
        match pick {
            0 => "null".into(),
            1 => ["true", "false"][self.below(2) as usize].into(),
            2 => {
                ["0", "-0", "7", "-12", "18446744073709551616", "64.290", "1e5", "-2.5E-3", "123456789012345678901234"]
                    [self.below(9) as usize]
                    .into()
            }
            3 => ["\"\"", "\"x\"", "\"a\\\"b\"", "\"\\u00e9\\n\"", "\"=1+1\"", "\"\\ud83d\\ude00\""]
                [self.below(6) as usize]
                .into(),
            4 | 5 => format!(r#""s{}""#, self.below(1000)),
            6 | 7 => self.object(depth),
            _ => {
                let items: Vec<String> = (0..self.below(4)).map(|_| self.value(depth + 1)).collect();
                format!("[{}]", items.join(", "))
            }
        }
    }
}
