//! The network stage: everything between a URL and a response body.
//!
//! [`http`] is the client (one ureq agent, one `get`, the base URL and the `Secret`
//! that never reaches a log line); [`retry`] decides whether and when a failed
//! attempt is tried again (backoff, `Retry-After`); [`pace`] keeps a sync under an API's rate limit. Nothing here knows what a page
//! means: bodies go on to [`crate::page`].

pub(crate) mod http;
pub(crate) mod pace;
pub(crate) mod retry;
