//! Running work inside a Linux network namespace.
//!
//! The network namespace is a property of a thread, and a socket keeps the
//! namespace it was created in. So work that must happen "inside" a
//! namespace (binding listeners, connecting probes, spawning `nft`) runs on
//! a dedicated OS thread that first enters the namespace with `setns`; a
//! process spawned from that thread inherits it. Never do this on an async
//! runtime's worker threads: tasks move between threads.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {path}: cannot open: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("network namespace {path}: cannot enter (setns): {source}")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("network namespace {path}: cannot start a thread: {source}")]
    Thread { path: PathBuf, source: std::io::Error },
    #[error("network namespace {path}: the work panicked")]
    Panicked { path: PathBuf },
}

/// The path of a namespace created by `ip netns add NAME`.
pub fn named(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Enters the namespace at `path` on the calling thread. The thread stays in
/// it: use only on threads made for that purpose.
pub fn enter(path: &Path) -> Result<(), NetnsError> {
    let file =
        File::open(path).map_err(|source| NetnsError::Open { path: path.to_path_buf(), source })?;
    setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|source| NetnsError::Enter { path: path.to_path_buf(), source })
}

/// Runs `work` on a new thread inside the namespace at `path` and returns
/// its result.
pub fn run_in<T, F>(path: &Path, work: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let owned = path.to_path_buf();
    let handle = spawn_in(path, work)?;
    handle.join().map_err(|_| NetnsError::Panicked { path: owned })?
}

/// Starts `work` on a new thread inside the namespace at `path`; the join
/// handle yields an error if the namespace could not be entered.
pub fn spawn_in<T, F>(
    path: &Path,
    work: F,
) -> Result<std::thread::JoinHandle<Result<T, NetnsError>>, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("palisade-netns".into())
        .spawn(move || {
            enter(&owned)?;
            Ok(work())
        })
        .map_err(|source| NetnsError::Thread { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_named_in_the_error() {
        let err = run_in(Path::new("/run/netns/palisade-does-not-exist"), || ()).unwrap_err();
        assert!(err.to_string().contains("palisade-does-not-exist"), "{err}");
    }

    #[test]
    fn work_runs_in_the_current_namespace_when_entering_it() {
        // Entering our own namespace is always allowed for root and changes
        // nothing; for non-root it fails with a clear error.
        let me = Path::new("/proc/self/ns/net");
        match run_in(me, || 41 + 1) {
            Ok(v) => assert_eq!(v, 42),
            Err(e) => assert!(e.to_string().contains("setns"), "{e}"),
        }
    }
}
