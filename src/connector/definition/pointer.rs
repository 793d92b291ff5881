//! RFC 6901 JSON Pointers, as a definition names its records, keys and cursors:
//! parsed once into reference tokens, followed in a `Value` as `Value::pointer` does
//! (the load tests check both against serde_json on generated pointers).

use serde_json::Value;

/// An RFC 6901 JSON Pointer's reference tokens (`""` has none).
pub fn pointer(text: &str) -> Option<Vec<String>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let rest = text.strip_prefix('/')?;
    rest.split('/')
        .map(|t| {
            let mut out = String::with_capacity(t.len());
            let mut chars = t.chars();
            while let Some(c) = chars.next() {
                match c {
                    '~' => match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return None,
                    },
                    c => out.push(c),
                }
            }
            Some(out)
        })
        .collect()
}

/// The pointer text of `tokens` (RFC 6901's escapes `~0` and `~1`).
pub fn pointer_text(tokens: &[String]) -> String {
    tokens.iter().map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1"))).collect()
}

/// Follows `tokens` in `v` (RFC 6901, as `serde_json::Value::pointer` does).
pub fn follow<'v>(v: &'v Value, tokens: &[String]) -> Option<&'v Value> {
    tokens.iter().try_fold(v, |v, t| match v {
        Value::Object(m) => m.get(t),
        Value::Array(a) => {
            if t.len() > 1 && t.starts_with('0') || t.starts_with('+') {
                return None;
            }
            a.get(t.parse::<usize>().ok()?)
        }
        _ => None,
    })
}
