//! The taxonomy tree, stored: a parent per node (None = root level), liveness, and
//! the children lists the `parent=` listing serves. Each generation deletes a leaf,
//! moves a subtree and adds a leaf.

use super::draw::{mix, pick, TAG_TREE};

/// Nodes 0..CHAIN form a chain root → … → level 6 that is never moved or deleted,
/// so the tree is always at least six levels deep.
const CHAIN: u32 = 6;
/// Random nodes attach no deeper than this (moves may go deeper).
const MAX_LEVEL: u32 = 8;

pub(super) struct Tree {
    pub(super) parent: Vec<Option<u32>>,
    alive: Vec<bool>,
    pub(super) roots: Vec<u32>,
    pub(super) children: Vec<Vec<u32>>,
}

impl Tree {
    pub(super) fn new(seed: u64, n: usize) -> Tree {
        let mut parent = Vec::with_capacity(n);
        let mut level: Vec<u32> = Vec::with_capacity(n);
        for i in 0..n as u32 {
            let p = Self::initial_parent(seed, i, &parent, &level);
            level.push(p.map_or(1, |p| level[p as usize] + 1));
            parent.push(p);
        }
        let mut tree = Tree { parent, alive: vec![true; n], roots: Vec::new(), children: Vec::new() };
        tree.reindex();
        tree
    }

    fn initial_parent(seed: u64, i: u32, parent: &[Option<u32>], level: &[u32]) -> Option<u32> {
        if i == 0 || (i >= CHAIN && mix(seed, TAG_TREE, u64::from(i), 0).is_multiple_of(20)) {
            return None;
        }
        if i < CHAIN {
            return Some(i - 1);
        }
        let mut p = pick(seed, TAG_TREE, u64::from(i), 1, i as usize) as u32;
        while level[p as usize] >= MAX_LEVEL {
            p = parent[p as usize].expect("a deep node has a parent");
        }
        Some(p)
    }

    /// Rebuilds the root and children lists, in index order.
    fn reindex(&mut self) {
        self.roots.clear();
        self.children = vec![Vec::new(); self.parent.len()];
        for i in 0..self.parent.len() as u32 {
            if !self.alive[i as usize] {
                continue;
            }
            match self.parent[i as usize] {
                Some(p) => self.children[p as usize].push(i),
                None => self.roots.push(i),
            }
        }
    }

    pub(super) fn is_live(&self, i: u32) -> bool {
        self.alive.get(i as usize).copied().unwrap_or(false)
    }

    /// Whether `node` is `top` or lies below it.
    fn within(&self, mut node: u32, top: u32) -> bool {
        loop {
            if node == top {
                return true;
            }
            match self.parent[node as usize] {
                Some(p) => node = p,
                None => return false,
            }
        }
    }

    /// One generation: a leaf deleted, a subtree moved, a leaf added.
    pub(super) fn mutate(&mut self, seed: u64, gen: u32) {
        let g = u64::from(gen) << 32;
        self.delete_leaf(seed, g);
        self.move_subtree(seed, g);
        self.add_leaf(seed, g);
    }

    fn movable(&self) -> impl Iterator<Item = u32> + '_ {
        (CHAIN..self.parent.len() as u32).filter(|&i| self.alive[i as usize])
    }

    fn delete_leaf(&mut self, seed: u64, g: u64) {
        let leaves: Vec<u32> = self.movable().filter(|&i| self.children[i as usize].is_empty()).collect();
        if !leaves.is_empty() {
            let i = leaves[pick(seed, TAG_TREE, g, 1, leaves.len())];
            self.alive[i as usize] = false;
            self.reindex();
        }
    }

    /// Prefers a node with children, so a whole subtree's paths and levels change.
    fn move_subtree(&mut self, seed: u64, g: u64) {
        let mut candidates: Vec<u32> = self.movable().filter(|&i| !self.children[i as usize].is_empty()).collect();
        if candidates.is_empty() {
            candidates = self.movable().collect();
        }
        if candidates.is_empty() {
            return;
        }
        let node = candidates[pick(seed, TAG_TREE, g, 2, candidates.len())];
        let old = self.parent[node as usize];
        let mut targets: Vec<Option<u32>> = (0..self.parent.len() as u32)
            .filter(|&j| self.alive[j as usize] && !self.within(j, node))
            .map(Some)
            .collect();
        targets.push(None);
        targets.retain(|&t| t != old);
        self.parent[node as usize] = targets[pick(seed, TAG_TREE, g, 3, targets.len())];
        self.reindex();
    }

    fn add_leaf(&mut self, seed: u64, g: u64) {
        let live: Vec<u32> = (0..self.parent.len() as u32).filter(|&i| self.alive[i as usize]).collect();
        let p = live[pick(seed, TAG_TREE, g, 4, live.len())];
        self.parent.push(Some(p));
        self.alive.push(true);
        self.reindex();
    }
}
