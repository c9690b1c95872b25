//! Plugin sandbox tests: real components built from `plugins/` and
//! `tests/fixtures/`, run by the real plugin host.

mod hostile;
mod loading;
mod recovery;
