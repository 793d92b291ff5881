//! The definition a directory was synced with, kept in its `state.json`, so that the
//! commands that take only the directory (`compact`, `repair`) know its tables and
//! primary keys as `sync FILE` did, whether or not the file is still at hand.

use std::sync::OnceLock;

use super::{parse, Def};
use crate::error::{Error, Result};
use crate::store::state::{State, FILE_NAME};

/// The text of the definition loaded in this run, as JSON.
static TEXT: OnceLock<serde_json::Value> = OnceLock::new();

/// Keeps the text of the definition being loaded, checked already by [`parse`].
pub(super) fn keep(text: &[u8]) {
    if let Ok(value) = serde_json::from_slice(text) {
        let _ = TEXT.set(value);
    }
}

/// Records the loaded definition in `state`.
pub(super) fn record(state: &mut State) {
    if let Some(text) = TEXT.get() {
        state.definition_source = Some(text.clone());
    }
}

/// The definition `state` was synced with, installed for this run; `None` when
/// `state` holds none (a built-in connector, or a state from before it was kept).
pub fn from_state(state: &State, dir: &std::path::Path) -> Option<Result<&'static Def>> {
    let text = state.definition_source.as_ref()?;
    if let Some(def) = super::loaded_named(&state.connector) {
        return Some(Ok(def));
    }
    let bytes = serde_json::to_vec(text).expect("a JSON value serializes");
    let unusable = |detail: String| Error::State { path: dir.join(FILE_NAME), detail };
    let def = match parse(&bytes) {
        Ok(d) if d.name == state.connector => d,
        Ok(d) => {
            return Some(Err(unusable(format!("holds definition {:?} for connector {:?}", d.name, state.connector))))
        }
        Err(e) => return Some(Err(unusable(format!("the connector definition kept in it: {e}")))),
    };
    Some(super::install(def))
}
