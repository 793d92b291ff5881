//! Integration tests: the real binary against the embedded mocks over loopback HTTP.

mod changes;
mod crash;
mod definitions;
mod differential;
mod directory;
mod errors;
mod expected;
mod hostile;
mod hostile_ml;
mod hostile_pg;
mod mailerlite;
mod observe;
mod paligo;
mod requests;
mod signals;
mod workdir;
