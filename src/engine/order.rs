//! A first sync's duplicate check without memory per key: listings come sorted, so
//! while the keys' leading column moves on in some fixed direction, a key can only
//! repeat within the run of keys that share its leading value, and only that run is
//! kept. The leading column is learned from the keys themselves: each candidate
//! leads with one key column and learns its direction, and candidates that a key
//! breaks are dropped (memberships, keyed `group_id, subscriber_id`, come sorted by
//! subscriber, each subscriber's groups in any order). When none is left, the caller
//! switches to a set of keys.

use std::cmp::Ordering;

use crate::store::state::{Order, OrderCandidate};

/// The most keys a run may hold (one subscriber's memberships): a longer run drops
/// the candidate, and the caller falls back to a set.
const RUN_CAP: usize = 256;

/// True if key `values` moves on from `order.last` in at least one candidate order
/// (learning the leading column's direction the first time it changes), or stays in
/// its run without repeating a key of it; false if every candidate sees it go back
/// or repeat. Candidates that fail are dropped.
pub fn follows(order: &mut Order, values: &[&[u8]]) -> bool {
    if order.last.is_empty() {
        order.candidates = (0..values.len())
            .map(|lead| {
                let columns: Vec<usize> =
                    std::iter::once(lead).chain((0..values.len()).filter(|&c| c != lead)).collect();
                let run = vec![rest(values, &columns)];
                OrderCandidate { columns, dirs: vec![0; values.len()], run }
            })
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
    let Some(&lead) = c.columns.first() else { return false };
    let dir = match numeric_cmp(values[lead], last[lead].as_bytes()) {
        Ordering::Equal => {
            // The same run: the other columns must be new in it. An empty run (a
            // state written before runs were kept) or a full one proves nothing.
            // A hash that two keys share (never in practice) takes one for a repeat:
            // the caller then falls back to a set, which costs memory, never a row.
            let rest = rest(values, &c.columns);
            if c.run.is_empty() || c.run.len() >= RUN_CAP || c.run.contains(&rest) {
                return false;
            }
            c.run.push(rest);
            return true;
        }
        Ordering::Greater => 1,
        Ordering::Less => -1,
    };
    if c.dirs[lead] == 0 {
        c.dirs[lead] = dir;
    }
    if c.dirs[lead] != dir {
        return false;
    }
    c.run.clear();
    c.run.push(rest(values, &c.columns));
    true
}

/// The values of a key's columns after the leading one, as a run keeps them: their
/// hash (a stable one: runs are kept in `state.json` for a resumed run).
fn rest(values: &[&[u8]], columns: &[usize]) -> u64 {
    crate::store::hashing::key(columns[1..].iter().map(|&c| values[c]))
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
    }

    #[test]
    fn a_run_of_one_leading_value_may_come_in_any_order_but_never_repeats() {
        // Each subscriber's groups in any order, subscribers descending.
        let mut o = Order::default();
        let seq: &[&[&str]] = &[&["3", "5"], &["1", "5"], &["2", "5"], &["9", "4"], &["1", "4"], &["9", "4"]];
        assert_eq!(keys(&mut o, seq), [true, true, true, true, true, false]);
        // A run that is left never comes back.
        let mut o = Order::default();
        let seq: &[&[&str]] = &[&["3", "5"], &["1", "5"], &["9", "4"], &["2", "5"]];
        assert_eq!(keys(&mut o, seq), [true, true, true, false]);
        // A run longer than the cap is not trusted.
        let mut o = Order::default();
        let ids: Vec<String> = (0..=RUN_CAP).map(|i| ((i * 7919) % 1000).to_string()).collect();
        let seq: Vec<[&str; 2]> = ids.iter().map(|g| [g.as_str(), "5"]).collect();
        let seq: Vec<&[&str]> = seq.iter().map(|k| &k[..]).collect();
        let ok = keys(&mut o, &seq);
        assert!(ok[..RUN_CAP].iter().all(|&b| b) && !ok[RUN_CAP], "{ok:?}");
        // A state from before runs were kept: the run is unknown, so no key stays in it.
        let mut o = Order::default();
        keys(&mut o, &[&["1", "5"]]);
        o.candidates.iter_mut().for_each(|c| c.run.clear());
        // (2, 5) moves on by group but stays in subscriber 5's unknown run.
        assert_eq!(keys(&mut o, &[&["2", "5"]]), [true]);
        assert_eq!(o.candidates.iter().map(|c| c.columns[0]).collect::<Vec<_>>(), [0]);
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
