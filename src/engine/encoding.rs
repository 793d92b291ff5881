//! The columns of a table file and the rows of a page encoded for them: which
//! records of the page are written, their fingerprints over the cells as written,
//! and the scratch buffers reused from page to page.

use crate::engine::columns::{cell_hash, Columns, NONE};
use crate::page::parse::{Batch, Cell};
use crate::store::encode::{header_of, written, Encoder};

pub(super) struct Encoding {
    pub(super) cols: Columns,
    /// Data columns in the file's header; 0 while the file is empty.
    pub(super) width: usize,
    pub(super) encoder: Encoder,
    /// The records of the page being written that are kept: their indexes in the batch.
    pub(super) kept: Vec<usize>,
    /// The cells of the record being looked at, and their columns.
    pub(super) cells: Vec<Cell>,
    pub(super) cols_buf: Vec<u32>,
    pub(super) scratch: Vec<u8>,
    pub(super) safe: bool,
    pub(super) bom: bool,
}

impl Encoding {
    pub(super) fn new(cols: Columns, width: usize, safe: bool, bom: bool) -> Encoding {
        Encoding {
            cols,
            width,
            encoder: Encoder::new(safe),
            kept: Vec::new(),
            cells: Vec::new(),
            cols_buf: Vec::new(),
            scratch: Vec::new(),
            safe,
            bom,
        }
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
            let v = written(v, self.safe, &mut self.scratch);
            fp = fp.wrapping_add(cell_hash(self.cols.get(col as usize).name_hash, v));
        }
        (fp, unregistered)
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
    /// returns how many rows that is.
    /// Encodes the kept records; with `fingerprints`, also pushes each one's
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
        for k in 0..self.kept.len() {
            let i = self.kept[k];
            self.cells.clear();
            self.cells.extend(batch.record(i).copied());
            self.cols_buf.clear();
            for c in &self.cells {
                self.cols_buf.push(self.cols.column_of(batch, c.path));
            }
            if let Some(fps) = fingerprints.as_deref_mut() {
                let mut fp = 0u64;
                for (c, &col) in self.cells.iter().zip(&self.cols_buf) {
                    let v = batch.value(c);
                    if !v.is_empty() && col != NONE {
                        let v = written(v, self.safe, &mut self.scratch);
                        fp = fp.wrapping_add(cell_hash(self.cols.get(col as usize).name_hash, v));
                    }
                }
                fps.push(fp);
            }
            self.encoder.row(batch, &self.cells, &self.cols_buf, self.width, synced_at);
        }
        self.kept.len() as u64
    }
}
