//! Integration tests: the real binary against the embedded mocks over loopback HTTP.

mod account;
mod bundle;
mod changes;
mod crash;
mod definition_dirs;
mod definitions;
mod differential;
mod directory;
mod errors;
mod expected;
mod first_hour;
mod hostile;
mod hostile_ml;
mod hostile_pg;
mod keys;
mod limits;
mod listing;
mod mailerlite;
mod observe;
mod paligo;
mod requests;
mod signals;
mod stops;
mod workdir;
