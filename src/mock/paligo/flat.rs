//! Flat tables (users, assignments): which indices live, and each one's version.
//! Only this is stored; the records themselves are rebuilt from (seed, index,
//! version) on demand.

use super::draw::pick;

/// How many records one generation deletes, changes and adds in a flat table.
pub(super) struct Plan {
    pub(super) deletes: usize,
    pub(super) changes: usize,
    pub(super) adds: usize,
}

pub(super) struct Flat {
    pub(super) versions: Vec<u32>,
    pub(super) alive: Vec<bool>,
}

impl Flat {
    pub(super) fn new(n: usize) -> Flat {
        Flat { versions: vec![0; n], alive: vec![true; n] }
    }

    pub(super) fn live(&self) -> Vec<u32> {
        (0..self.alive.len() as u32).filter(|&i| self.alive[i as usize]).collect()
    }

    pub(super) fn is_live(&self, i: u32) -> bool {
        self.alive.get(i as usize).copied().unwrap_or(false)
    }

    /// Deletes first, then changes among the survivors, so that no change is hidden
    /// by a deletion of the same record; added records come last and stay untouched.
    pub(super) fn mutate(&mut self, seed: u64, tag: u64, gen: u32, plan: &Plan) {
        let live = self.live();
        for p in pick_distinct(seed, tag, gen, 0, plan.deletes.min(live.len() / 2), live.len()) {
            self.alive[live[p] as usize] = false;
        }
        let live = self.live();
        for p in pick_distinct(seed, tag, gen, 1, plan.changes.min(live.len()), live.len()) {
            self.versions[live[p] as usize] += 1;
        }
        self.versions.extend(std::iter::repeat_n(0, plan.adds));
        self.alive.extend(std::iter::repeat_n(true, plan.adds));
    }
}

/// `count` distinct positions in 0..len (count <= len).
fn pick_distinct(seed: u64, tag: u64, gen: u32, salt: u64, count: usize, len: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(count);
    let mut j = 0;
    while out.len() < count {
        let p = pick(seed, tag, u64::from(gen) * 16 + salt, 1000 + j, len);
        if !out.contains(&p) {
            out.push(p);
        }
        j += 1;
    }
    out
}
