//! A first sync's duplicate check without memory per key: listings come sorted, so
//! while every key moves on from the last one in some fixed order, no key can
//! repeat. The order is learned from the keys themselves: each candidate ranks the
//! key columns and gives each a direction, and candidates that a key breaks are
//! dropped (memberships, keyed `group_id, subscriber_id`, come sorted by subscriber
//! first). When none is left, the caller switches to a set of keys.

use crate::store::state::{Order, OrderCandidate};

/// True if key `values` moves on from `order.last` in at least one candidate order
/// (learning each column's direction the first time it decides); false if every
/// candidate sees it go back or repeat. Candidates that fail are dropped.
pub fn follows(order: &mut Order, values: &[&[u8]]) -> bool {
    if order.last.is_empty() {
        order.candidates = permutations(values.len())
            .into_iter()
            .map(|columns| OrderCandidate { columns, dirs: vec![0; values.len()] })
            .collect();
        return true;
    }
    if order.last.len() != values.len() {
        return false;
    }
    let last = &order.last;
    order.candidates.retain_mut(|c| moves_on(c, values, last));
    !order.candidates.is_empty()
}

fn moves_on(c: &mut OrderCandidate, values: &[&[u8]], last: &[String]) -> bool {
    for &col in &c.columns {
        let cmp = numeric_cmp(values[col], last[col].as_bytes());
        if cmp == std::cmp::Ordering::Equal {
            continue;
        }
        let dir = if cmp == std::cmp::Ordering::Greater { 1 } else { -1 };
        if c.dirs[col] == 0 {
            c.dirs[col] = dir;
        }
        return c.dirs[col] == dir;
    }
    false
}

/// Every order of `n` key columns (primary keys have one or two).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n <= 1 {
        return vec![(0..n).collect()];
    }
    let mut out = Vec::new();
    for first in 0..n {
        for mut rest in permutations(n - 1) {
            for r in &mut rest {
                if *r >= first {
                    *r += 1;
                }
            }
            rest.insert(0, first);
            out.push(rest);
        }
    }
    out
}

/// Compares ids as numbers when both are digits (without parsing: they may exceed
/// u64), else as bytes.
fn numeric_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if digits(a) && digits(b) {
        let trim = |s: &[u8]| -> usize { s.iter().take_while(|&&d| d == b'0').count().min(s.len() - 1) };
        let (a, b) = (&a[trim(a)..], &b[trim(b)..]);
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(order: &mut Order, seq: &[&[&str]]) -> Vec<bool> {
        seq.iter()
            .map(|k| {
                let values: Vec<&[u8]> = k.iter().map(|v| v.as_bytes()).collect();
                let ok = follows(order, &values);
                if ok {
                    order.last = k.iter().map(|s| s.to_string()).collect();
                }
                ok
            })
            .collect()
    }

    #[test]
    fn sorted_keys_need_no_memory_and_a_step_back_is_seen() {
        let mut o = Order::default();
        assert_eq!(keys(&mut o, &[&["300"], &["299"], &["1000"]]), [true, true, false]);
        let mut o = Order::default();
        assert_eq!(keys(&mut o, &[&["9"], &["10"], &["10"]]), [true, true, false]);
        // Memberships (group_id, subscriber_id): subscribers descending, each one's
        // groups ascending.
        let mut o = Order::default();
        let seq: &[&[&str]] = &[&["1", "5"], &["2", "5"], &["1", "4"], &["3", "4"], &["2", "3"], &["2", "3"]];
        assert_eq!(keys(&mut o, seq), [true, true, true, true, true, false]);
        assert_eq!(permutations(3).len(), 6);
    }

    #[test]
    fn ids_compare_as_numbers() {
        use std::cmp::Ordering::*;
        assert_eq!(numeric_cmp(b"99", b"100"), Less);
        assert_eq!(numeric_cmp(b"1000000000000000000000", b"999"), Greater);
        assert_eq!(numeric_cmp(b"007", b"7"), Equal);
        assert_eq!(numeric_cmp(b"b", b"a"), Greater);
    }
}
