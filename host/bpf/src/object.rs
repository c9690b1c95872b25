//! A plugin's loaded object: its ELF checked before anything reaches the
//! kernel, its maps (fresh, or found pinned when the same object was loaded
//! before), its programs verified and loaded.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use aya::maps::{Map, MapData};
use aya::programs::{Program, SchedClassifier};
use aya::{Ebpf, EbpfLoader};

/// A map of a loaded object: its kernel-side shape.
pub(crate) struct OwnMap {
    pub kind: &'static str,
    pub key_size: usize,
    pub value_size: usize,
    pub max_entries: u32,
}

impl OwnMap {
    /// LRU maps are caches the program fills itself (connection tracking):
    /// never swept, copied across generations.
    pub fn is_lru(&self) -> bool {
        self.kind == "lru hash"
    }
    /// Entries can be deleted (arrays have every index).
    pub fn deletable(&self) -> bool {
        matches!(self.kind, "hash" | "lpm trie")
    }
}

pub(crate) struct Object {
    pub plugin: String,
    pub ebpf: Ebpf,
    pub maps: HashMap<String, OwnMap>,
    /// Its generation directory, on a pinned dataplane.
    pub generation: Option<PathBuf>,
    /// The maps were found pinned (the same object loaded before): the keys
    /// the plugin has written since, per map, until its full apply ends;
    /// then what it did not write is swept. `None`: fresh maps.
    pub claims: Option<HashMap<String, HashSet<Vec<u8>>>>,
}

pub(crate) fn writable_kind(map: &Map) -> Option<(&'static str, &MapData)> {
    match map {
        Map::HashMap(d) => Some(("hash", d)),
        Map::LruHashMap(d) => Some(("lru hash", d)),
        Map::LpmTrie(d) => Some(("lpm trie", d)),
        Map::Array(d) => Some(("array", d)),
        _ => None,
    }
}

/// The parts of an ELF object the host checks before loading it.
pub(crate) struct Elf {
    /// (section, is a TC classifier)
    pub programs: Vec<(String, bool)>,
    /// name → (key size, value size, max entries)
    pub maps: HashMap<String, (u32, u32, u32)>,
}

pub(crate) fn parse(object: &[u8]) -> Result<Elf, String> {
    let obj = aya_obj::Object::parse(object).map_err(|e| e.to_string())?;
    Ok(Elf {
        programs: obj
            .programs
            .iter()
            .map(|(name, p)| {
                (name.clone(), matches!(p.section, aya_obj::ProgramSection::SchedClassifier))
            })
            .collect(),
        maps: obj
            .maps
            .iter()
            .map(|(name, m)| (name.clone(), (m.key_size(), m.value_size(), m.max_entries())))
            .collect(),
    })
}

/// The pin of map `name` in a generation directory.
pub(crate) fn map_pin(generation: &Path, name: &str) -> PathBuf {
    generation.join(format!("map_{}", crate::pins::pin_name(name)))
}

/// Creates the object's maps (reusing those pinned in `generation`, and
/// pinning the new ones there), then returns it with whether any map was
/// found pinned (see [`check_adopted`]).
pub(crate) fn create(
    object: &[u8],
    elf: &Elf,
    generation: Option<&Path>,
) -> Result<(Ebpf, bool), String> {
    let Some(generation) = generation else {
        return Ebpf::load(object).map(|e| (e, false)).map_err(|e| e.to_string());
    };
    let mut loader = EbpfLoader::new();
    let mut found = false;
    for name in elf.maps.keys() {
        let pin = map_pin(generation, name);
        found |= pin.exists();
        loader.map_pin_path(name.as_str(), pin);
    }
    let ebpf = loader.load(object).map_err(|e| e.to_string())?;
    Ok((ebpf, found))
}

/// Maps found pinned must have the shapes the ELF declares (a pin of
/// something else in the generation's place is refused).
pub(crate) fn check_adopted(
    maps: &HashMap<String, OwnMap>,
    elf: &Elf,
    generation: &Path,
) -> Result<(), String> {
    for (name, map) in maps.iter().filter(|(_, m)| m.kind != "other") {
        let Some(&(key, value, max)) = elf.maps.get(name) else { continue };
        let shape = (map.key_size as u32, map.value_size as u32, map.max_entries);
        if shape != (key, value, max) {
            return Err(format!(
                "map `{name}` pinned at {} is not this object's (key, value, entries) = {:?}, pinned {shape:?}: remove the plugin's pins (`palisade reset`)",
                map_pin(generation, name).display(),
                (key, value, max)
            ));
        }
    }
    Ok(())
}

/// Verifies and loads every program (TC classifiers, checked before).
pub(crate) fn load_programs(ebpf: &mut Ebpf) -> Result<(), (String, String)> {
    for (name, program) in ebpf.programs_mut() {
        let Program::SchedClassifier(tc) = program else {
            return Err((name.to_string(), "not a TC classifier".into()));
        };
        tc.load().map_err(|e| (name.to_string(), verifier_text(&e)))?;
    }
    Ok(())
}

/// Pins every program in `generation` (`prog_<name>`, replacing the pin of
/// an earlier load of the same object).
pub(crate) fn pin_programs(ebpf: &mut Ebpf, generation: &Path) -> Result<(), String> {
    for (name, program) in ebpf.programs_mut() {
        let pin = generation.join(format!("prog_{}", crate::pins::pin_name(name)));
        if pin.exists() {
            std::fs::remove_file(&pin).map_err(|e| format!("{}: {e}", pin.display()))?;
        }
        let tc: &mut SchedClassifier = program.try_into().map_err(|e| format!("{name}: {e}"))?;
        tc.pin(&pin).map_err(|e| format!("{}: {e}", pin.display()))?;
    }
    Ok(())
}

/// The shapes of the object's writable maps.
pub(crate) fn own_maps(ebpf: &Ebpf) -> Result<HashMap<String, OwnMap>, String> {
    let mut maps = HashMap::new();
    for (name, map) in ebpf.maps() {
        let Some((kind, data)) = writable_kind(map) else {
            let other = OwnMap { kind: "other", key_size: 0, value_size: 0, max_entries: 0 };
            maps.insert(name.to_string(), other);
            continue;
        };
        let info = data.info().map_err(|e| format!("map `{name}`: {e}"))?;
        maps.insert(
            name.to_string(),
            OwnMap {
                kind,
                key_size: info.key_size() as usize,
                value_size: info.value_size() as usize,
                max_entries: info.max_entries(),
            },
        );
    }
    Ok(maps)
}

pub(crate) fn verifier_text(e: &aya::programs::ProgramError) -> String {
    match e {
        aya::programs::ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            format!("{io_error}: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "))
        }
        other => other.to_string(),
    }
}
