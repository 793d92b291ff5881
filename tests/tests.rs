//! Integration tests: the real binary against the embedded mocks over loopback HTTP.

mod changes;
mod crash;
mod errors;
mod expected;
mod hostile;
mod mailerlite;
mod paligo;
mod workdir;
