//! The page reader against serde_json's own `Value` (with `preserve_order` and
//! `arbitrary_precision`) as the oracle, its numbers kept as sent (see [`mark_numbers`]).

use super::*;

const DATA: Spec = Spec::records_in(&["data"]);

/// Marks a number turned into a string by [`mark_numbers`].
const MARK: &str = "\u{1}N";

/// `body` with every number outside strings turned into the string [`MARK`] + its
/// token, so that the oracle, which rewrites a number's exponent (`1E22` as
/// `1e+22`), keeps the token as sent; [`unmark`] turns them back.
fn mark_numbers(body: &str) -> String {
    let b = body.as_bytes();
    let mut out = String::new();
    let (mut i, mut in_string) = (0, false);
    while i < b.len() {
        let c = b[i];
        if in_string {
            if c == b'\\' {
                out.push_str(&body[i..i + 2]);
                i += 2;
                continue;
            }
            in_string = c != b'"';
        } else if c == b'"' {
            in_string = true;
        } else if c == b'-' || c.is_ascii_digit() {
            let n = b[i..].iter().take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')).count();
            out.push_str(&format!("\"\\u0001N{}\"", &body[i..i + n]));
            i += n;
            continue;
        }
        let len = body[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&body[i..i + len]);
        i += len;
    }
    out
}

/// A leaf's text from the oracle with its numbers as sent.
fn unmark(text: &str) -> String {
    if let Some(token) = text.strip_prefix(MARK) {
        return token.to_string();
    }
    let quoted = "\"\\u0001N";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(quoted) {
        out.push_str(&rest[..at]);
        let token = &rest[at + quoted.len()..];
        let end = token.find('"').expect("a marked number ends");
        out.push_str(&token[..end]);
        rest = &token[end + 1..];
    }
    out.push_str(rest);
    out
}

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
        Value::String(s) => unmark(s),
        Value::Array(_) => unmark(&serde_json::to_string(v).unwrap()),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
    };
    out.push((path.clone(), text));
}

/// Per record, its leaves: (key path, text).
type Leaves = Vec<Vec<(Vec<String>, String)>>;

fn oracle(body: &str) -> Option<Leaves> {
    let v: Value = serde_json::from_str(&mark_numbers(body)).ok()?;
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
    assert_eq!(batch.captured(0, 0).unwrap().collect::<Vec<_>>(), [b"7"]);
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

#[test]
fn numbers_are_kept_as_sent() {
    let body = r#"{"data":[{"a":1E22,"b":20e1,"c":[1E22, {"x":20e1,"y":[-0.5E-3]}],"d":{"e":-0.5E+3},"f":1e400}]}"#;
    let got = ours(body).unwrap();
    let texts: Vec<&str> = got[0].iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(texts, ["1E22", "20e1", r#"[1E22,{"x":20e1,"y":[-0.5E-3]}]"#, "-0.5E+3", "1e400"]);
    same(body);
}

/// Arrays copied from the body against serde_json writing the `Value` it reads.
#[test]
fn arrays_are_written_as_serde_json_writes_them() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let (mut copied, mut rewritten) = (0, 0);
    let mut scratch = raw::Scratch::default();
    for _ in 0..4000 {
        let items: Vec<String> = (0..1 + rng.below(4)).map(|_| rng.value(1)).collect();
        let text = format!("[ {} ]", items.join(" ,\n"));
        let v: Value = serde_json::from_str(&mark_numbers(&text)).unwrap();
        let want = unmark(&serde_json::to_string(&v).unwrap());
        let mut got = Vec::new();
        raw::array_text(&text, 3, &mut got, &mut scratch).unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), want, "{text}");
        let mut copy = Vec::new();
        match raw::copy_canonical(text.as_bytes(), &mut copy, &mut scratch) {
            Some(_) => copied += 1,
            None => rewritten += 1,
        }
    }
    assert!(copied > 500 && rewritten > 500, "copied {copied}, rewritten {rewritten}");
}

/// Strings against serde_json reading them as a `String`: text, and what is refused.
#[test]
fn escaped_strings_read_as_serde_json_reads_them() {
    let pieces = [
        "a",
        "é",
        r"\u00e9",
        r"\n",
        r#"\""#,
        r"\/",
        r"\ud800",
        r"\udc00",
        r"\ud83d\ude00",
        r"\ud83d\u0041",
        r"\ud83d\n",
        r"\ud83dx",
        r"\ud83d",
        r"\udbff\udfff",
        r"\u0000",
        r"\\",
    ];
    let mut rng = Rng(0x0bad_5eed_1234_5678);
    let mut refused = 0;
    for _ in 0..5000 {
        let inner: String = (0..rng.below(5)).map(|_| pieces[rng.below(pieces.len() as u64) as usize]).collect();
        let text = format!("\"{inner}\"");
        let want = serde_json::from_str::<String>(&text).ok();
        let mut got = Vec::new();
        let got = raw::unescape(text.as_bytes(), &mut got).ok().map(|()| String::from_utf8(got).unwrap());
        assert_eq!(got, want, "{text}");
        assert_eq!(raw::check(text.as_bytes(), 0).is_ok(), want.is_some(), "{text}");
        refused += usize::from(want.is_none());
        let body = format!(r#"{{"data":[{{"s":{text},"a":[{text}],"o":{{"k":{text}}}}}]}}"#);
        match want {
            Some(_) => same(&body),
            None => assert!(parse(body.as_bytes(), &DATA, &mut Batch::default()).is_err(), "{body}"),
        }
    }
    assert!(refused > 500, "few refused: {refused}");
}

/// Nesting at serde_json's limit, in every place a value is read: accepted exactly
/// when serde_json accepts it.
#[test]
fn nesting_is_refused_where_serde_json_refuses_it() {
    let spec = Spec { capture: &["groups"], ..DATA };
    let shapes: [fn(usize) -> String; 7] = [
        |n| format!(r#"{{"data":[{{"a":{}1{}}}]}}"#, r#"{"a":"#.repeat(n), "}".repeat(n)),
        |n| format!(r#"{{"data":[{{"a":{}1{}}}]}}"#, "[".repeat(n), "]".repeat(n)),
        |n| format!(r#"{{"data":[{{"a":[{{"k":{}1{}}}, "\u00e9"]}}]}}"#, "[".repeat(n), "]".repeat(n)),
        |n| format!(r#"{{"data":[{{"groups":[{{"id":"1","x":{}1{}}}]}}]}}"#, "[".repeat(n), "]".repeat(n)),
        |n| format!(r#"{{"data":[{{"groups":[{}1{}]}}]}}"#, "[".repeat(n), "]".repeat(n)),
        |n| format!(r#"{{"data":[{{"groups":{{"x":{}1{}}}}}]}}"#, r#"{"a":"#.repeat(n), "}".repeat(n)),
        |n| format!(r#"[{{"a":{}1{}}}]"#, "[".repeat(n), "]".repeat(n)),
    ];
    for (k, shape) in shapes.iter().enumerate() {
        let mut flips = 0;
        for n in 115..130 {
            let body = shape(n);
            let want = serde_json::from_str::<Value>(&body).is_ok();
            let spec = Spec { bare_array: k == 6, ..spec };
            let got = parse(body.as_bytes(), &spec, &mut Batch::default());
            assert_eq!(got.is_ok(), want, "shape {k}, depth {n}: {got:?}");
            flips += usize::from(want);
        }
        assert!(flips > 0 && flips < 15, "shape {k} never crosses the limit");
    }
}

/// The ids of a captured array against the `Value` serde_json reads: of each
/// object, its `id` if a string or a number; a repeated key's last value.
#[test]
fn captured_ids_agree_with_the_value_read() {
    let spec = Spec { capture: &["groups"], ..DATA };
    let ids = [r#""7""#, "12", "1E3", r#""\u0038""#, "null", "true", r#"{"id":"9"}"#, "[1]", r#""""#];
    let mut rng = Rng(0x5eed_0000_1111_2222);
    for _ in 0..3000 {
        let member = |rng: &mut Rng| -> String {
            let mut keys = Vec::new();
            for _ in 0..rng.below(4) {
                match rng.below(5) {
                    0 | 1 => keys.push(format!(r#""id":{}"#, ids[rng.below(ids.len() as u64) as usize])),
                    2 => keys.push(format!(r#""name":{}"#, rng.value(2))),
                    // `"id"` in the text, but not as a key.
                    3 => keys.push(r#""kind" : "id""#.to_string()),
                    _ => keys.push(format!(r#""\u0069d":{}"#, ids[rng.below(ids.len() as u64) as usize])),
                }
            }
            match rng.below(6) {
                0 => rng.value(3),
                _ => format!("{{{}}}", keys.join(",")),
            }
        };
        let groups = |rng: &mut Rng| -> String {
            match rng.below(6) {
                0 => rng.value(2),
                _ => format!("[{}]", (0..rng.below(4)).map(|_| member(rng)).collect::<Vec<_>>().join(", ")),
            }
        };
        let mut record = vec![format!(r#""id":"{}""#, rng.below(100))];
        for _ in 0..1 + rng.below(2) {
            record.push(format!(r#""groups":{}"#, groups(&mut rng)));
        }
        let body = format!(r#"{{"data":[{{{}}}]}}"#, record.join(","));
        let v: Value = serde_json::from_str(&mark_numbers(&body)).unwrap();
        let want = match v["data"][0].get("groups") {
            Some(Value::Array(groups)) => Some(
                groups
                    .iter()
                    .filter_map(|g| match g.get("id") {
                        Some(Value::String(s)) => Some(unmark(s)),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        };
        let mut batch = Batch::default();
        parse(body.as_bytes(), &spec, &mut batch).unwrap();
        let got = batch.captured(0, 0).map(|ids| ids.map(|id| String::from_utf8(id.to_vec()).unwrap()).collect());
        assert_eq!(got, want, "{body}");
        assert_eq!(batch.record(0).count(), 1, "{body}");
    }
}

#[test]
fn a_lone_surrogate_anywhere_in_a_record_refuses_the_body() {
    let spec = Spec { capture: &["groups"], ..DATA };
    for body in [
        r#"{"data":[{"groups":[{"id":"1","name":"\ud800"}]}]}"#,
        r#"{"data":[{"groups":[{"id":"\ud800"}]}]}"#,
        r#"{"data":[{"groups":[{"id":"1","o":{"\udc00":1}}]}]}"#,
        r#"{"data":[{"groups":["\ud800"]}]}"#,
        r#"{"data":[{"groups":{"\ud800":1}}]}"#,
        r#"{"data":[{"groups":"\ud800"}]}"#,
        r#"{"data":[{"a":["\ud800"]}]}"#,
        r#"{"data":[{"a":[{"\ud800":1}]}]}"#,
        r#"{"data":[{"a":{"b":{"\ud800":1}}}]}"#,
        r#"{"data":[{"a":{"b":"x\ud83dy"}}]}"#,
    ] {
        assert!(serde_json::from_str::<Value>(body).is_err(), "the oracle accepts {body}");
        let err = parse(body.as_bytes(), &spec, &mut Batch::default()).unwrap_err();
        assert!(err.0.starts_with("invalid JSON"), "{body}: {err}");
    }
}

/// Number tokens of the generated documents: exponents in every spelling.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "7",
    "-12",
    "18446744073709551616",
    "64.290",
    "1e5",
    "-2.5E-3",
    "123456789012345678901234",
    "1E22",
    "20e1",
    "1e+5",
    "-0.0E+0",
];

/// String tokens of the generated documents: escapes serde_json writes as they are,
/// and others it writes its own way.
const STRINGS: &[&str] = &[
    r#""""#,
    r#""x""#,
    r#""a\"b""#,
    r#""\u00e9\n""#,
    r#""=1+1""#,
    r#""\ud83d\ude00""#,
    r#""a\/b""#,
    r#""\u001f\u0000\b\f\r\t\\""#,
    r#""\u001F""#,
    r#""\u0008""#,
    r#""\u0041 { [ , : ""#,
    r#""é ]}""#,
];

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
        // Whitespace around a colon too: the reader looks past it for the value.
        let colons = [":", ":", " : ", "\n:\t", ": ", "\r\n:\r\n"];
        let members: Vec<String> = (0..self.below(5))
            .map(|_| {
                let colon = colons[self.below(colons.len() as u64) as usize];
                format!(r#""{}"{colon}{}"#, self.key(), self.value(depth + 1))
            })
            .collect();
        format!("{{{}}}", members.join(","))
    }

    pub fn value(&mut self, depth: u32) -> String {
        let pick = if depth > 3 { self.below(6) } else { self.below(9) };
        match pick {
            0 => "null".into(),
            1 => ["true", "false"][self.below(2) as usize].into(),
            2 => NUMBERS[self.below(NUMBERS.len() as u64) as usize].into(),
            3 => STRINGS[self.below(STRINGS.len() as u64) as usize].into(),
            4 | 5 => format!(r#""s{}""#, self.below(1000)),
            6 | 7 => self.object(depth),
            _ => {
                let items: Vec<String> = (0..self.below(4)).map(|_| self.value(depth + 1)).collect();
                let space = [", ", ",", " ,\n\t", ",\r\n  "][self.below(4) as usize];
                format!("[{}]", items.join(space))
            }
        }
    }
}
