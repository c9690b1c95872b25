//! Host-side bindings, one module per supported WIT package version.
//!
//! A released version's WIT folder is frozen; a new version gets its own
//! folder under `wit/` and its own module here, so that plugins built against
//! an older version keep loading.

pub mod v0_1;
