//! Integration tests: the real binary against the embedded mocks over loopback HTTP.

mod errors;
mod expected;
mod mailerlite;
mod paligo;
mod workdir;
