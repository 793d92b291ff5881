//! What one sync run works with: the connector, the client and the directory
//! ([`Ctx`], shared), and the state, the committer and the progress line that the
//! walk over a stream and the end of each table change ([`Session`]).

use std::path::Path;

use crate::connector::{Checked, Connector, Def};
use crate::net::http::Client;
use crate::store::commit::Committer;
use crate::store::state::State;
use crate::term::progress::Progress;
use crate::term::signal::Interrupt;

/// Everything a run works with.
pub(crate) struct Ctx<'a> {
    pub def: &'static Def,
    pub connector: &'a dyn Connector,
    pub client: &'a Client,
    pub dir: &'a Path,
    pub interrupt: &'a Interrupt,
    pub checked: Checked,
}

/// One run's working set, handed to each step of a stream's read instead of its
/// four parts one by one.
pub(crate) struct Session<'s, 'a> {
    pub ctx: &'s Ctx<'a>,
    pub state: &'s mut State,
    pub committer: &'s mut Committer,
    pub progress: &'s mut Progress,
}
