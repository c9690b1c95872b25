//! Names of a lab's namespaces and interfaces, the owner marker of a lab,
//! and finding what dead labs left behind.
//!
//! A lab has a prefix `pl` + 4 hex digits (e.g. `pl3f0a`). Its namespaces
//! are `<prefix>-node`, `<prefix>-p<N>` (pods) and `<prefix>-x<N>`
//! (externals); the node-side veth of an endpoint is `<prefix>p<N>` or
//! `<prefix>x<N>` (at most 15 characters up to N = 999 999 999), its pod
//! side is `eth0`. While a lab lives, `/run/palisade-lab/<prefix>.owner`
//! holds the owning process id and start time; namespaces of the naming
//! scheme whose owner is gone (or that have no marker) are leftovers.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::LabError;

/// Where owner markers live.
pub const MARKER_DIR: &str = "/run/palisade-lab";
/// Where `ip netns add` puts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The path of a named namespace.
pub(crate) fn netns_path(name: &str) -> PathBuf {
    palisade_netns::named(name)
}

/// A reserved prefix: its owner marker exists and names this process.
#[derive(Debug)]
pub(crate) struct Reservation {
    pub prefix: String,
    pub marker: PathBuf,
}

/// Reserves a fresh prefix by creating its owner marker (atomically: a
/// prefix whose marker or node namespace exists is skipped).
pub(crate) fn reserve() -> Result<Reservation, LabError> {
    fs::create_dir_all(MARKER_DIR)
        .map_err(|source| LabError::Io { what: format!("create {MARKER_DIR}"), source })?;
    let me = owner_stamp(std::process::id()).ok_or_else(|| LabError::Io {
        what: "read /proc/self/stat".into(),
        source: std::io::Error::other("no start time"),
    })?;
    for _ in 0..64 {
        let prefix = format!("pl{:04x}", random_u16()?);
        if Path::new(NETNS_DIR).join(format!("{prefix}-node")).exists() {
            continue;
        }
        let marker = Path::new(MARKER_DIR).join(format!("{prefix}.owner"));
        match OpenOptions::new().write(true).create_new(true).open(&marker) {
            Ok(mut f) => {
                f.write_all(me.as_bytes()).map_err(|source| LabError::Io {
                    what: format!("write {}", marker.display()),
                    source,
                })?;
                return Ok(Reservation { prefix, marker });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(LabError::Io { what: format!("create {}", marker.display()), source })
            }
        }
    }
    Err(LabError::Io {
        what: "reserve a lab prefix".into(),
        source: std::io::Error::other("64 random prefixes were all taken"),
    })
}

fn random_u16() -> Result<u16, LabError> {
    let mut b = [0u8; 2];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|source| LabError::Io { what: "read /dev/urandom".into(), source })?;
    Ok(u16::from_le_bytes(b))
}

/// `"<pid> <start time>"` of a live process (field 22 of its stat file), so
/// that a recycled pid does not pass for the owner.
fn owner_stamp(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    let start = after.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Is the lab of `prefix` owned by a live process?
fn owner_alive(prefix: &str) -> bool {
    let marker = Path::new(MARKER_DIR).join(format!("{prefix}.owner"));
    let Ok(text) = fs::read_to_string(marker) else {
        return false;
    };
    let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    owner_stamp(pid).is_some_and(|now| now == text.trim())
}

/// The prefix of a namespace name of the lab scheme (`plXXXX-node`,
/// `plXXXX-pN`, `plXXXX-xN`).
pub fn lab_prefix_of(name: &str) -> Option<&str> {
    let (prefix, rest) = name.split_once('-')?;
    let hex = prefix.strip_prefix("pl")?;
    if hex.len() != 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    let numbered = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok = rest == "node"
        || rest.strip_prefix('p').is_some_and(numbered)
        || rest.strip_prefix('x').is_some_and(numbered);
    ok.then_some(prefix)
}

/// Every named network namespace (`ip netns list`, read from /run/netns).
fn named_namespaces() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Namespaces of the lab naming scheme whose lab is not owned by a live
/// process (a lab killed before its teardown ran, or leaked on purpose).
/// Labs of running processes, this one included, are never listed.
pub fn leftovers() -> Vec<String> {
    named_namespaces()
        .into_iter()
        .filter(|n| lab_prefix_of(n).is_some_and(|p| !owner_alive(p)))
        .collect()
}

/// Deletes every namespace [`leftovers`] lists and the stale owner markers;
/// returns the namespaces removed.
pub fn cleanup_leftovers() -> Result<Vec<String>, LabError> {
    let names = leftovers();
    crate::ip::delete_namespaces(&names)?;
    if let Ok(entries) = fs::read_dir(MARKER_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(prefix) = name.strip_suffix(".owner") {
                if !owner_alive(prefix) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
    let still: Vec<String> =
        names.iter().filter(|n| Path::new(NETNS_DIR).join(n).exists()).cloned().collect();
    if !still.is_empty() {
        return Err(LabError::Teardown { remaining: still });
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_naming_scheme_is_recognised_exactly() {
        assert_eq!(lab_prefix_of("pl3f0a-node"), Some("pl3f0a"));
        assert_eq!(lab_prefix_of("pl3f0a-p12"), Some("pl3f0a"));
        assert_eq!(lab_prefix_of("pl3f0a-x0"), Some("pl3f0a"));
        for other in [
            "pl3f0a",
            "pl3f0a-p",
            "pl3F0A-node",
            "pl3f0-node",
            "plxyzw-node",
            "foo-node",
            "pl3f0a-q1",
        ] {
            assert_eq!(lab_prefix_of(other), None, "{other}");
        }
    }

    #[test]
    fn this_process_is_a_live_owner() {
        let me = owner_stamp(std::process::id()).unwrap();
        assert!(me.starts_with(&std::process::id().to_string()));
    }
}
