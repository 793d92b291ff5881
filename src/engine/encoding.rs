//! The columns of a table file and the rows of a page encoded for them: which
//! records of the page are written, their fingerprints over the cells as written,
//! and the scratch buffers reused from page to page.

use crate::engine::columns::{cell_hash, Columns, NONE};
use crate::page::parse::Batch;
use crate::store::encode::{header_of, written, Encoder};

pub(super) struct Encoding {
    pub(super) cols: Columns,
    /// Data columns in the file's header; 0 while the file is empty.
    pub(super) width: usize,
    pub(super) encoder: Encoder,
    /// The records of the page being written that are kept: their indexes in the batch.
    pub(super) kept: Vec<usize>,
    pub(super) scratch: Vec<u8>,
    pub(super) safe: bool,
    pub(super) bom: bool,
}

impl Encoding {
    pub(super) fn new(cols: Columns, width: usize, safe: bool, bom: bool) -> Encoding {
        Encoding { cols, width, encoder: Encoder::new(safe), kept: Vec::new(), scratch: Vec::new(), safe, bom }
    }

    /// The record's fingerprint over its non-empty cells as they would be written,
    /// and whether it has a non-empty value in a column not registered yet.
    pub(super) fn fingerprint(&mut self, batch: &Batch, i: usize) -> (u64, bool) {
        let mut fp = 0u64;
        let mut unregistered = false;
        for cell in batch.record(i) {
            let v = batch.value(cell);
            if v.is_empty() {
                continue;
            }
            let col = self.cols.column_of(batch, cell.path);
            if col == NONE {
                unregistered = true;
                continue;
            }
            fp = fp.wrapping_add(self.cell_hash(col, v));
        }
        (fp, unregistered)
    }

    /// What non-empty value `v` in column `col` adds to its record's fingerprint.
    fn cell_hash(&mut self, col: u32, v: &[u8]) -> u64 {
        let v = written(v, self.safe, &mut self.scratch);
        cell_hash(self.cols.get(col as usize).name_hash, v)
    }

    /// Registers the columns of the kept records; true if the header must widen.
    pub(super) fn register(&mut self, batch: &Batch) -> bool {
        let mut widen = false;
        for k in &self.kept {
            for cell in batch.record(*k) {
                let col = self.cols.register(batch, cell.path) as usize;
                widen |= self.width > 0 && col >= self.width && !batch.value(cell).is_empty();
            }
        }
        widen
    }

    /// Encodes the kept records of `batch` (the header first, in an empty file);
    /// returns how many rows that is. With `fingerprints`, also pushes each one's
    /// fingerprint there (as [`Encoding::fingerprint`] gives it, all columns registered).
    pub(super) fn encode(&mut self, batch: &Batch, synced_at: &str, mut fingerprints: Option<&mut Vec<u64>>) -> u64 {
        if self.kept.is_empty() {
            return 0;
        }
        if self.width == 0 {
            let names: Vec<&str> = self.cols.iter().map(|c| c.name.as_str()).collect();
            self.encoder.raw(&header_of(names.into_iter(), self.bom));
            self.width = self.cols.len();
        }
        self.encoder.begin_page(synced_at);
        // Each record's values by column, in one pass over its cells (which also
        // takes its fingerprint): a buffer a page.
        let mut by_column: Vec<&[u8]> = Vec::with_capacity(self.width);
        for k in 0..self.kept.len() {
            by_column.clear();
            by_column.resize(self.width, b"");
            let mut fp = 0u64;
            for c in batch.record(self.kept[k]) {
                let col = self.cols.column_of(batch, c.path);
                if col == NONE {
                    continue;
                }
                let v = batch.value(c);
                if fingerprints.is_some() && !v.is_empty() {
                    fp = fp.wrapping_add(self.cell_hash(col, v));
                }
                if let Some(slot) = by_column.get_mut(col as usize) {
                    *slot = v;
                }
            }
            if let Some(fps) = fingerprints.as_deref_mut() {
                fps.push(fp);
            }
            self.encoder.row(&by_column);
        }
        self.kept.len() as u64
    }
}
