//! The capability's errors (the plugin receives their text), its bounds and
//! its counters.

/// Why a capability call failed. The plugin receives the `Display` text.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("bpf capability: plugin `{plugin}` is not granted the eBPF dataplane")]
    NotGranted { plugin: String },
    #[error("bpf capability: plugin `{plugin}`: object of {size} bytes refused (limit {limit})")]
    ObjectTooLarge { plugin: String, size: usize, limit: usize },
    #[error("bpf capability: plugin `{plugin}`: object refused: {reason}")]
    BadObject { plugin: String, reason: String },
    #[error(
        "bpf capability: plugin `{plugin}`: program `{program}` refused by the kernel: {reason}"
    )]
    Load { plugin: String, program: String, reason: String },
    #[error("bpf capability: plugin `{plugin}`: no object {handle} of this plugin")]
    UnknownObject { plugin: String, handle: u32 },
    #[error("bpf capability: plugin `{plugin}`: no link {handle} of this plugin")]
    UnknownLink { plugin: String, handle: u32 },
    #[error("bpf capability: plugin `{plugin}`: object {handle} has no TC program `{program}`")]
    UnknownProgram { plugin: String, handle: u32, program: String },
    #[error("bpf capability: plugin `{plugin}`: endpoint {endpoint}: {reason}")]
    Endpoint { plugin: String, endpoint: u32, reason: String },
    #[error("bpf capability: plugin `{plugin}`: attach `{program}` to {interface} ({direction}): {reason}")]
    Attach { plugin: String, program: String, interface: String, direction: String, reason: String },
    #[error("bpf capability: plugin `{plugin}`: map `{map}` is not a map of its object {handle} (its maps: {own})")]
    NotOwnMap { plugin: String, handle: u32, map: String, own: String },
    #[error("bpf capability: plugin `{plugin}`: map `{map}` ({kind}) cannot be written through the capability")]
    MapType { plugin: String, map: String, kind: String },
    #[error("bpf capability: plugin `{plugin}`: map `{map}` entry {index}: {field} of {got} bytes, the map's is {want}")]
    EntrySize {
        plugin: String,
        map: String,
        index: usize,
        field: &'static str,
        got: usize,
        want: usize,
    },
    #[error("bpf capability: plugin `{plugin}`: map `{map}`: batch of {entries} entries refused (limit {limit})")]
    BatchTooLarge { plugin: String, map: String, entries: usize, limit: usize },
    #[error("bpf capability: plugin `{plugin}`: map `{map}` entry {index}: {reason}")]
    MapWrite { plugin: String, map: String, index: usize, reason: String },
    #[error("bpf capability: plugin `{plugin}`: pinned state at {path}: {reason}")]
    Pins { plugin: String, path: String, reason: String },
    #[error("bpf capability: plugin `{plugin}`: {reason}")]
    Internal { plugin: String, reason: String },
}

/// Bounds on what one plugin may ask of the dataplane.
#[derive(Debug, Clone, Copy)]
pub struct BpfLimits {
    /// Size of an object file.
    pub max_object_bytes: usize,
    /// Entries in one `map-update` or `map-delete`.
    pub max_batch: usize,
}

impl Default for BpfLimits {
    fn default() -> Self {
        BpfLimits { max_object_bytes: 4 << 20, max_batch: 65_536 }
    }
}

/// Counters of one dataplane (all plugins together).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BpfStats {
    pub objects_loaded: u64,
    pub links_attached: u64,
    pub entries_written: u64,
    pub entries_deleted: u64,
    pub refused: u64,
    /// Links taken over from a former process or object (program swapped
    /// in place).
    pub links_adopted: u64,
    /// Entries of adopted maps that the plugin's first full apply did not
    /// write, deleted afterwards.
    pub entries_swept: u64,
    /// Connection-tracking entries copied from a retiring generation.
    pub flows_copied: u64,
}
