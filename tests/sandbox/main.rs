//! Plugin sandbox tests: real components built from `plugins/` and
//! `tests/fixtures/`, run by the real plugin host.

// Integration tests: helpers panic to fail the test that called them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bpf;
mod hostile;
mod loading;
mod recovery;
