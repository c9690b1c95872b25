//! The host's `nft` capability: what stands behind `palisade:backend/nft`.
//!
//! [`NftDataplane`] implements [`palisade_plugin_host::NftProvider`]. It is
//! built with the network namespace to act in (`None`: the process's own, on a
//! real node; `Some(path)`: e.g. a lab's node namespace) and the operator's
//! [`TableGrants`] (for each plugin name, the nftables tables it owns). A
//! plugin's libnftables JSON batch is checked command by command against its
//! tables before anything runs (see [`validate`]); the checked batch is then
//! re-serialized and handed to libnftables in the namespace, so nftables reads
//! exactly what was checked, and applies it as one transaction (all or
//! nothing). By default the dataplane keeps one libnftables context alive on a
//! thread inside the namespace ([`libnft`]); where the library cannot be
//! loaded, or with [`NftDataplane::with_nft_binary`], each batch goes to a new
//! `nft -j -f -` process instead.
//!
//! ```no_run
//! use palisade_nft::{NftDataplane, TableGrants};
//! let grants = TableGrants::new().grant("palisade_nftables", "inet palisade".parse().unwrap());
//! let nft = NftDataplane::new(None, grants);
//! let caps = palisade_plugin_host::Capabilities {
//!     nft: std::sync::Arc::new(nft),
//!     ..Default::default()
//! };
//! # let _ = caps;
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use palisade_plugin_host::NftProvider;
use serde_json::{json, Value};

pub mod grant;
pub mod guard;
pub mod libnft;
pub mod validate;

pub use grant::{Family, TableGrants, TableRef};
pub use guard::{EndpointGuard, GuardConfig};
pub use libnft::LibNft;
pub use validate::{Checked, Refusal};

/// Why a capability call failed. The plugin receives the `Display` text.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft capability: plugin `{plugin}`: batch refused{}{}: {}",
        .refusal.index.map(|i| format!(", command {i}")).unwrap_or_default(),
        .refusal.table.as_ref().map(|t| format!(" (table {t})")).unwrap_or_default(),
        .refusal.reason)]
    Refused { plugin: String, refusal: Refusal },
    #[error("nft capability: plugin `{plugin}`: the batch is not JSON: {reason}")]
    NotJson { plugin: String, reason: String },
    #[error("nft capability: plugin `{plugin}`: table {table} is not granted to the plugin (its tables: {granted})")]
    NotGranted { plugin: String, table: String, granted: String },
    #[error("nft capability: plugin `{plugin}`: {reason}")]
    BadTable { plugin: String, reason: String },
    #[error("nft capability: plugin `{plugin}`: {source}")]
    Netns { plugin: String, source: palisade_netns::NetnsError },
    #[error("nft capability: plugin `{plugin}`: cannot run {nft}: {source}")]
    Spawn { plugin: String, nft: String, source: std::io::Error },
    #[error("nft capability: plugin `{plugin}`: nft failed (nothing applied): {stderr}")]
    Nft { plugin: String, stderr: String },
    #[error("nft capability: plugin `{plugin}`: {source}")]
    Library { plugin: String, source: libnft::LibNftError },
}

/// How batches reach the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// One long-lived libnftables context in the namespace.
    Library,
    /// A new `nft` process per command.
    Process,
}

/// Counters of one dataplane (all plugins together).
#[derive(Debug, Default)]
pub struct NftStats {
    pub batches_applied: AtomicU64,
    pub batches_refused: AtomicU64,
    pub batches_failed: AtomicU64,
    pub commands_applied: AtomicU64,
}

/// The `nft` capability on one network namespace, for the plugins of a grant.
#[derive(Debug)]
pub struct NftDataplane {
    netns: Option<PathBuf>,
    grants: TableGrants,
    nft: PathBuf,
    /// Whether to try the library first.
    prefer_library: bool,
    /// The library context, started at the first command (`None`: it could
    /// not start, and the `nft` binary is used).
    library: OnceLock<Option<LibNft>>,
    stats: NftStats,
}

impl NftDataplane {
    /// Acts in `netns` (`None`: the process's own namespace; `Some(path)`, e.g.
    /// `/run/netns/NAME`: that namespace) for the plugins and tables of
    /// `grants`. A plugin without a table in `grants` can touch nothing.
    pub fn new(netns: Option<PathBuf>, grants: TableGrants) -> NftDataplane {
        NftDataplane {
            netns,
            grants,
            nft: PathBuf::from("nft"),
            prefer_library: true,
            library: OnceLock::new(),
            stats: NftStats::default(),
        }
    }

    /// Runs this `nft` binary for every command (a new process each time)
    /// instead of the long-lived libnftables context.
    pub fn with_nft_binary(mut self, nft: impl Into<PathBuf>) -> NftDataplane {
        self.nft = nft.into();
        self.prefer_library = false;
        self
    }

    /// The engine in use (starts the library context if it is not yet).
    pub fn engine(&self) -> Engine {
        if self.library().is_some() {
            Engine::Library
        } else {
            Engine::Process
        }
    }

    fn library(&self) -> Option<&LibNft> {
        if !self.prefer_library {
            return None;
        }
        self.library
            .get_or_init(|| match LibNft::start(self.netns.as_deref()) {
                Ok(lib) => {
                    tracing::debug!(netns = ?self.netns, "nft: libnftables context started");
                    Some(lib)
                }
                Err(e) => {
                    tracing::info!(netns = ?self.netns, error = %e, "nft: using the nft binary instead of libnftables");
                    None
                }
            })
            .as_ref()
    }

    pub fn grants(&self) -> &TableGrants {
        &self.grants
    }

    pub fn netns(&self) -> Option<&Path> {
        self.netns.as_deref()
    }

    pub fn stats(&self) -> &NftStats {
        &self.stats
    }

    /// Checks `batch_json` against `plugin`'s tables; returns what `nft` will
    /// be given (the checked value, re-serialized) and what was checked.
    pub fn check(&self, plugin: &str, batch_json: &str) -> Result<(String, Checked), NftError> {
        let value: Value = serde_json::from_str(batch_json)
            .map_err(|e| NftError::NotJson { plugin: plugin.into(), reason: e.to_string() })?;
        let checked = validate::check(plugin, &self.grants, &value)
            .map_err(|refusal| NftError::Refused { plugin: plugin.into(), refusal })?;
        Ok((value.to_string(), checked))
    }

    /// Applies a batch for `plugin` (see the crate docs).
    pub fn apply(&self, plugin: &str, batch_json: &str) -> Result<Checked, NftError> {
        let started = Instant::now();
        let (text, checked) = match self.check(plugin, batch_json) {
            Ok(c) => c,
            Err(e) => {
                self.stats.batches_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin, error = %e, "nft batch refused");
                return Err(e);
            }
        };
        let result = self.run(plugin, NftCommand::Batch(text));
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        let tables: Vec<String> = checked.tables.iter().map(ToString::to_string).collect();
        match result {
            Ok(_) => {
                self.stats.batches_applied.fetch_add(1, Ordering::Relaxed);
                self.stats.commands_applied.fetch_add(checked.commands as u64, Ordering::Relaxed);
                tracing::info!(
                    plugin,
                    commands = checked.commands,
                    ?tables,
                    elapsed_ms,
                    "nft batch applied"
                );
                Ok(checked)
            }
            Err(e) => {
                self.stats.batches_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin, commands = checked.commands, ?tables, elapsed_ms, error = %e, "nft batch failed");
                Err(e)
            }
        }
    }

    /// The granted table `family name` of `plugin`.
    fn granted(&self, plugin: &str, family: &str, name: &str) -> Result<TableRef, NftError> {
        let bad = |reason: String| NftError::BadTable { plugin: plugin.into(), reason };
        let table = TableRef::new(family.parse().map_err(bad)?, name).map_err(bad)?;
        if !self.grants.allows(plugin, &table) {
            tracing::warn!(plugin, %table, "nft table not granted");
            return Err(NftError::NotGranted {
                plugin: plugin.into(),
                table: table.to_string(),
                granted: self.grants.describe(plugin),
            });
        }
        Ok(table)
    }

    /// The JSON listing (`nft -j list table`) of a granted table.
    pub fn list(&self, plugin: &str, family: &str, name: &str) -> Result<String, NftError> {
        let t = self.granted(plugin, family, name)?;
        let started = Instant::now();
        let out = self.run(plugin, NftCommand::List(&t))?;
        tracing::debug!(plugin, table = %t, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "nft table listed");
        Ok(out)
    }

    /// Deletes a granted table; no error if it does not exist (one
    /// transaction: add the table, then delete it).
    pub fn delete(&self, plugin: &str, family: &str, name: &str) -> Result<(), NftError> {
        let t = self.granted(plugin, family, name)?;
        let started = Instant::now();
        let obj = json!({"family": t.family.as_str(), "name": t.name});
        let batch = json!({"nftables": [{"add": {"table": obj}}, {"delete": {"table": obj}}]});
        self.run(plugin, NftCommand::Batch(batch.to_string()))?;
        tracing::info!(plugin, table = %t, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "nft table deleted");
        Ok(())
    }

    /// Runs one command in the namespace; its (JSON) output on success.
    fn run(&self, plugin: &str, command: NftCommand<'_>) -> Result<String, NftError> {
        if let Some(lib) = self.library() {
            let text = match &command {
                NftCommand::Batch(batch) => lib.run(batch),
                NftCommand::List(t) => lib.run(
                    &json!({"nftables": [{"list": {"table": {"family": t.family.as_str(), "name": t.name}}}]})
                        .to_string(),
                ),
            };
            return match text {
                Ok(Ok(out)) => Ok(out),
                Ok(Err(stderr)) => Err(NftError::Nft { plugin: plugin.into(), stderr }),
                Err(source) => Err(NftError::Library { plugin: plugin.into(), source }),
            };
        }
        let (args, stdin): (Vec<String>, _) = match command {
            NftCommand::Batch(batch) => {
                (vec!["-j".into(), "-f".into(), "-".into()], Some(batch.into_bytes()))
            }
            NftCommand::List(t) => (
                vec![
                    "-j".into(),
                    "list".into(),
                    "table".into(),
                    t.family.as_str().into(),
                    t.name.clone(),
                ],
                None,
            ),
        };
        let nft = self.nft.clone();
        let owned_plugin = plugin.to_string();
        let work = move || run_nft(&owned_plugin, &nft, &args, stdin);
        match &self.netns {
            None => work(),
            Some(path) => palisade_netns::run_in(path, work)
                .map_err(|source| NftError::Netns { plugin: plugin.into(), source })?,
        }
    }
}

/// What [`NftDataplane::run`] is asked to do.
enum NftCommand<'a> {
    /// A checked libnftables JSON batch (one transaction).
    Batch(String),
    /// The JSON listing of one table.
    List(&'a TableRef),
}

fn run_nft(
    plugin: &str,
    nft: &Path,
    args: &[String],
    stdin: Option<Vec<u8>>,
) -> Result<String, NftError> {
    let spawn_err =
        |source| NftError::Spawn { plugin: plugin.into(), nft: nft.display().to_string(), source };
    let mut child = Command::new(nft)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // nft reads the whole file before it answers; a write error means it
        // exited early, and its status and stderr say why.
        let _ = pipe.write_all(&input);
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let stderr = if stderr.is_empty() { format!("exit status {}", out.status) } else { stderr };
        Err(NftError::Nft { plugin: plugin.into(), stderr })
    }
}

impl NftProvider for NftDataplane {
    fn apply_batch(&self, plugin: &str, batch_json: &str) -> Result<(), String> {
        self.apply(plugin, batch_json).map(|_| ()).map_err(|e| e.to_string())
    }

    fn list_table(&self, plugin: &str, family: &str, name: &str) -> Result<String, String> {
        self.list(plugin, family, name).map_err(|e| e.to_string())
    }

    fn delete_table(&self, plugin: &str, family: &str, name: &str) -> Result<(), String> {
        self.delete(plugin, family, name).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_refusal_reads_plugin_command_and_table() {
        let grants = TableGrants::new().grant("hostile", "inet hostile".parse().unwrap());
        // Never runs nft: the batch is refused by the check.
        let nft =
            NftDataplane::new(Some("/nonexistent".into()), grants).with_nft_binary("/nonexistent");
        let batch = json!({"nftables": [
            {"add": {"table": {"family": "inet", "name": "hostile"}}},
            {"add": {"chain": {"family": "inet", "table": "hostile", "name": "c"}}},
            {"add": {"table": {"family": "inet", "name": "not-mine"}}}
        ]});
        let err = nft.apply_batch("hostile", &batch.to_string()).unwrap_err();
        assert_eq!(
            err,
            "nft capability: plugin `hostile`: batch refused, command 2 (table inet not-mine): \
             `add table`: table inet not-mine is not granted to the plugin (its tables: inet hostile)"
        );
        assert_eq!(nft.stats().batches_refused.load(Ordering::Relaxed), 1);
    }
}
