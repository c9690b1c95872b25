//! Watching a manifest directory tree with inotify.
//!
//! Editors and `kubectl`-style tools write files in several steps (truncate
//! and write, or write a temporary file and rename it), so changes are
//! collected until the tree has been quiet for a short settle time and then
//! reported once per file.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {}: {source}", path.display())]
    Watch { path: PathBuf, source: nix::Error },
    #[error("inotify: {0}")]
    Inotify(nix::Error),
    #[error("cannot list {}: {source}", path.display())]
    List { path: PathBuf, source: std::io::Error },
}

/// A recursive watch of a directory.
pub struct DirWatcher {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    settle: Duration,
}

fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MODIFY
}

impl DirWatcher {
    /// Watches `root` and every directory below it (and directories created
    /// later). `settle`: how long the tree must be quiet before changes are
    /// reported.
    pub fn new(root: &Path, settle: Duration) -> Result<DirWatcher, WatchError> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(WatchError::Inotify)?;
        let mut w = DirWatcher { inotify, dirs: HashMap::new(), settle };
        w.add_tree(root)?;
        Ok(w)
    }

    fn add_tree(&mut self, dir: &Path) -> Result<(), WatchError> {
        let wd = self
            .inotify
            .add_watch(dir, mask())
            .map_err(|source| WatchError::Watch { path: dir.to_path_buf(), source })?;
        self.dirs.insert(wd, dir.to_path_buf());
        let entries = std::fs::read_dir(dir)
            .map_err(|source| WatchError::List { path: dir.to_path_buf(), source })?;
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.add_tree(&entry.path())?;
            }
        }
        Ok(())
    }

    fn wait(&self, timeout: Duration) -> Result<bool, WatchError> {
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(n) => Ok(n > 0),
            Err(nix::Error::EINTR) => Ok(false),
            Err(e) => Err(WatchError::Inotify(e)),
        }
    }

    fn drain(&mut self, changed: &mut BTreeSet<PathBuf>) -> Result<(), WatchError> {
        loop {
            let events = match self.inotify.read_events() {
                Ok(events) => events,
                Err(nix::Error::EAGAIN) => return Ok(()),
                Err(e) => return Err(WatchError::Inotify(e)),
            };
            for event in events {
                let (Some(dir), Some(name)) = (self.dirs.get(&event.wd), event.name) else {
                    continue;
                };
                let path = dir.join(name);
                if event.mask.contains(AddWatchFlags::IN_ISDIR) {
                    if event.mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                    {
                        // Files may land in it before the watch exists:
                        // report what is there now.
                        let _ = self.add_tree(&path);
                        collect_files(&path, changed);
                    }
                    continue;
                }
                changed.insert(path);
            }
        }
    }

    /// Waits up to `timeout` for changes; once something changed, waits
    /// until the tree is quiet for the settle time. Returns the files that
    /// changed (created, written, renamed or deleted), possibly none.
    pub fn next_changes(&mut self, timeout: Duration) -> Result<Vec<PathBuf>, WatchError> {
        let mut changed = BTreeSet::new();
        if !self.wait(timeout)? {
            return Ok(Vec::new());
        }
        self.drain(&mut changed)?;
        let mut quiet_since = Instant::now();
        loop {
            let left = self.settle.saturating_sub(quiet_since.elapsed());
            if left.is_zero() || !self.wait(left)? {
                break;
            }
            self.drain(&mut changed)?;
            quiet_since = Instant::now();
        }
        Ok(changed.into_iter().collect())
    }
}

fn collect_files(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.insert(path);
        }
    }
}
