//! The CLI's integration tests live in `host/cli/tests/commands.rs`, where
//! Cargo provides the path of the built `palisade` binary
//! (`CARGO_BIN_EXE_palisade`); this crate cannot depend on a binary.
