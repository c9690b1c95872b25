//! Where a plugin's kernel state is pinned on bpffs, so that it outlives the
//! host process.
//!
//! ```text
//! <root>/ns<inode of the node's network namespace>/<plugin>/
//!     links/if<ifindex>-tc_ingress | -tc_egress   one TCX link per endpoint interface and hook
//!     wit<version, dots as _>-<sha256 of the object, 16 hex>/
//!         map_<name>                              the object's maps
//!         prog_<name>                             its programs
//!
//! (bpffs refuses names with a dot: every dot of a name becomes `_`.)
//! ```
//!
//! The links sit outside the generations: a restart or an upgrade swaps the
//! program inside a link (`bpf_link_update`, atomic) instead of detaching
//! and attaching. A generation is the object's identity: the same object
//! of the same WIT version finds its maps again (adoption); another one gets
//! fresh maps beside the old ones, which retire once the plugin's full
//! apply has moved every link over (docs/reliability.md).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::programs::tc::TcAttachType;

/// The default root: the node's bpffs.
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/palisade";

/// Pinning of a dataplane: where, and the WIT version its plugins speak.
#[derive(Debug, Clone)]
pub struct Pinning {
    pub root: PathBuf,
    pub wit_version: String,
}

impl Pinning {
    pub fn new(root: impl Into<PathBuf>, wit_version: impl Into<String>) -> Pinning {
        Pinning { root: root.into(), wit_version: wit_version.into() }
    }
}

/// The TC side of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    TcIngress,
    TcEgress,
}

impl Hook {
    pub fn attach_type(self) -> TcAttachType {
        match self {
            Hook::TcIngress => TcAttachType::Ingress,
            Hook::TcEgress => TcAttachType::Egress,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Hook::TcIngress => "tc ingress",
            Hook::TcEgress => "tc egress",
        }
    }
    fn file_suffix(self) -> &'static str {
        match self {
            Hook::TcIngress => "tc_ingress",
            Hook::TcEgress => "tc_egress",
        }
    }
}

/// The identity of a network namespace: its nsfs inode (stable while the
/// namespace lives; bpffs pins do not outlive a reboot either).
pub fn netns_id(netns: Option<&Path>) -> std::io::Result<u64> {
    let path = netns.unwrap_or(Path::new("/proc/self/ns/net"));
    Ok(std::fs::metadata(path)?.ino())
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
        .unwrap_or(false)
}

/// Makes sure `root` exists on a bpffs: mounts one on /sys/fs/bpf when the
/// node has none there (as CNI agents do), refuses any other filesystem.
pub fn ensure_bpffs(root: &Path) -> Result<(), String> {
    let mut existing = root;
    while !existing.exists() {
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    if !is_bpffs(existing) {
        let sys = Path::new("/sys/fs/bpf");
        if root.starts_with(sys) && existing == sys {
            nix::mount::mount(
                Some("bpf"),
                sys,
                Some("bpf"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|e| format!("mounting bpffs on /sys/fs/bpf: {e}"))?;
            tracing::info!("mounted bpffs on /sys/fs/bpf");
        } else {
            return Err(format!(
                "{} is not on a BPF filesystem (mount one: mount -t bpf bpf DIR)",
                existing.display()
            ));
        }
    }
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))
}

/// The pin directory of one plugin in one node namespace.
#[derive(Debug, Clone)]
pub struct PluginPins {
    pub dir: PathBuf,
    /// The WIT version its generations are named with.
    pub wit_version: String,
}

impl PluginPins {
    pub fn new(pinning: &Pinning, netns: u64, plugin: &str) -> PluginPins {
        PluginPins {
            dir: pinning.root.join(format!("ns{netns}")).join(plugin),
            wit_version: pinning.wit_version.clone(),
        }
    }

    pub fn links_dir(&self) -> PathBuf {
        self.dir.join("links")
    }

    pub fn generation(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("wit{}-{digest}", pin_name(&self.wit_version)))
    }

    pub fn link(&self, ifindex: u32, hook: Hook) -> PathBuf {
        self.links_dir().join(format!("if{ifindex}-{}", hook.file_suffix()))
    }

    /// Creates the plugin's directories (on a bpffs the caller checked).
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.links_dir())
    }

    /// The generation directories present, but `keep`.
    pub fn other_generations(&self, keep: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && p.as_path() != keep
                    && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("wit"))
            })
            .collect();
        out.sort();
        out
    }

    /// The pinned links present: (ifindex, hook, path). Files of another
    /// shape are ignored.
    pub fn links(&self) -> Vec<(u32, Hook, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.links_dir()) else { return Vec::new() };
        let mut out: Vec<(u32, Hook, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let rest = name.strip_prefix("if")?;
                let (index, hook) = rest.split_once('-')?;
                let hook = match hook {
                    "tc_ingress" => Hook::TcIngress,
                    "tc_egress" => Hook::TcEgress,
                    _ => return None,
                };
                Some((index.parse().ok()?, hook, e.path()))
            })
            .collect();
        out.sort();
        out
    }
}

/// A name bpffs accepts: it reserves every name with a dot.
pub fn pin_name(name: &str) -> String {
    name.replace('.', "_")
}

/// Removes a pinned directory and everything in it (a pin removed is a
/// reference dropped: the kernel frees the object with its last one).
pub fn remove_tree(dir: &Path) {
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "removing bpf pins");
        }
    }
}

/// The first 16 hex digits of the object's SHA-256.
pub fn digest(object: &[u8]) -> String {
    use sha2::Digest;
    let sum = sha2::Sha256::digest(object);
    hex::encode(&sum[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names_the_namespace_plugin_generation_and_links() {
        let pins = PluginPins::new(&Pinning::new("/sys/fs/bpf/palisade", "0.1.0"), 4026531840, "p");
        assert_eq!(pins.dir, Path::new("/sys/fs/bpf/palisade/ns4026531840/p"));
        assert_eq!(
            pins.generation("00ff"),
            Path::new("/sys/fs/bpf/palisade/ns4026531840/p/wit0_1_0-00ff")
        );
        assert_eq!(
            pins.link(7, Hook::TcEgress),
            Path::new("/sys/fs/bpf/palisade/ns4026531840/p/links/if7-tc_egress")
        );
    }

    #[test]
    fn digest_is_sixteen_hex_digits_of_sha256() {
        // sha256("") = e3b0c44298fc1c14...
        assert_eq!(digest(b""), "e3b0c44298fc1c14");
    }

    #[test]
    fn link_pins_are_read_back_and_strangers_ignored() {
        let dir = std::env::temp_dir().join(format!("palisade-pins-test-{}", std::process::id()));
        let pins = PluginPins { dir: dir.clone(), wit_version: "0.1.0".into() };
        pins.create().unwrap();
        for name in ["if3-tc_ingress", "if3-tc_egress", "if12-tc_ingress", "ifx-tc_egress", "junk"]
        {
            std::fs::write(pins.links_dir().join(name), b"").unwrap();
        }
        std::fs::create_dir_all(pins.generation("aa")).unwrap();
        std::fs::create_dir_all(pins.generation("bb")).unwrap();
        let found: Vec<(u32, Hook)> = pins.links().into_iter().map(|(i, h, _)| (i, h)).collect();
        assert_eq!(found, vec![(3, Hook::TcIngress), (3, Hook::TcEgress), (12, Hook::TcIngress)]);
        assert_eq!(pins.other_generations(&pins.generation("aa")), vec![pins.generation("bb")]);
        remove_tree(&dir);
        assert!(!dir.exists());
    }
}
