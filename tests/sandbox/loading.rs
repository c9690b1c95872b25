//! Loading, grants, inspection and the precompile cache.

use std::sync::{Arc, Mutex};

use palisade_model::Direction;
use palisade_plugin_host::{
    BpfProvider, Capabilities, Capability, Grants, Limits, NftProvider, PluginEngine, PluginError,
};
use palisade_tests::{engine, plugin_bytes, rule_set};

fn load(stem: &str, grants: &Grants) -> Result<palisade_plugin_host::LoadedPlugin, PluginError> {
    engine().load(stem, &plugin_bytes(stem), grants, Limits::default(), Capabilities::default())
}

/// Accepts every batch and keeps it, for the tests to read.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl NftProvider for Recorder {
    fn apply_batch(&self, _: &str, batch: &str) -> Result<(), String> {
        self.0.lock().unwrap().push(batch.to_string());
        Ok(())
    }
    fn list_table(&self, _: &str, _: &str, _: &str) -> Result<String, String> {
        Ok(String::new())
    }
    fn delete_table(&self, _: &str, family: &str, name: &str) -> Result<(), String> {
        self.0.lock().unwrap().push(format!("delete {family} {name}"));
        Ok(())
    }
}

/// Accepts every bpf call and records it (`load`, `attach ENDPOINT
/// PROGRAM DIRECTION`, `update MAP N`, `delete MAP N`, `unload`).
#[derive(Default)]
struct BpfRecorder(Mutex<Vec<String>>);

impl BpfRecorder {
    fn push(&self, call: String) -> u32 {
        let mut calls = self.0.lock().unwrap();
        calls.push(call);
        calls.len() as u32
    }
}

impl BpfProvider for BpfRecorder {
    fn load(&self, _: &str, object: &[u8]) -> Result<u32, String> {
        assert!(object.starts_with(b"\x7fELF"), "an ELF object");
        Ok(self.push("load".into()))
    }
    fn attach(
        &self,
        _: &str,
        _: u32,
        program: &str,
        endpoint: u32,
        d: Direction,
    ) -> Result<u32, String> {
        Ok(self.push(format!("attach {endpoint} {program} {d:?}")))
    }
    fn detach(&self, _: &str, link: u32) -> Result<(), String> {
        self.push(format!("detach {link}"));
        Ok(())
    }
    fn map_update(
        &self,
        _: &str,
        _: u32,
        map: &str,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), String> {
        self.push(format!("update {map} {}", entries.len()));
        Ok(())
    }
    fn map_delete(&self, _: &str, _: u32, map: &str, keys: &[Vec<u8>]) -> Result<(), String> {
        self.push(format!("delete {map} {}", keys.len()));
        Ok(())
    }
    fn unload(&self, _: &str, _: u32) -> Result<(), String> {
        self.push("unload".into());
        Ok(())
    }
}

#[test]
fn shipped_plugins_load_with_their_grants_answer_info_and_accept_apply() {
    let recorder = Arc::new(Recorder::default());
    let nft_caps = Capabilities { nft: recorder.clone(), ..Capabilities::default() };
    let bpf = Arc::new(BpfRecorder::default());
    let bpf_caps = Capabilities { bpf: bpf.clone(), ..Capabilities::default() };
    for (stem, name, grants, caps) in [
        (
            "palisade_nftables",
            "nftables",
            Grants::of(&[Capability::Log, Capability::Nft]),
            nft_caps,
        ),
        ("palisade_ebpf", "ebpf", Grants::of(&[Capability::Log, Capability::Bpf]), bpf_caps),
        ("palisade_calico_compat", "calico-compat", Grants::none(), Capabilities::default()),
    ] {
        let plugin = engine()
            .load(stem, &plugin_bytes(stem), &grants, Limits::default(), caps)
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        let info = plugin.info().unwrap();
        assert_eq!(info.name, name);
        assert_eq!(info.wit_version, "0.1.0");
        assert_eq!(info.hash.len(), 64);
        let mut inst = plugin.instantiate().unwrap();
        inst.configure(&[]).unwrap();
        inst.apply(&rule_set(1, &["ns/a", "ns/b"])).unwrap_or_else(|e| panic!("{stem}: {e}"));
        inst.reset().unwrap();
    }
    // The nftables plugin programmed its own table, and removed it on reset.
    let batches = recorder.0.lock().unwrap();
    assert!(batches.first().is_some_and(|b| b.contains("\"palisade\"")), "{batches:?}");
    assert_eq!(batches.last().map(String::as_str), Some("delete inet palisade"), "{batches:?}");
    // The eBPF plugin loaded its object, filled its maps (two endpoint
    // addresses; endpoint 1's ingress policy: its fragments 0.0.0.0/0 and
    // 10.0.0.2/32, one port entry for TCP 80), attached both programs to
    // both endpoints, and unloaded on reset.
    let calls = bpf.0.lock().unwrap();
    assert_eq!(
        *calls,
        [
            "load",
            "update pl_endpoints 2",
            "update pl_ports 1",
            "update pl_peers 2",
            "attach 1 pl_ingress Ingress",
            "attach 1 pl_egress Egress",
            "attach 2 pl_ingress Ingress",
            "attach 2 pl_egress Egress",
            "unload",
        ],
    );
}

#[test]
fn inspection_reports_the_capabilities_a_component_really_imports() {
    let caps = |stem: &str| load(stem, &Grants::all()).unwrap().imports().capability_set();
    assert_eq!(
        caps("palisade_nftables").into_iter().collect::<Vec<_>>(),
        vec![Capability::Log, Capability::Nft]
    );
    assert!(caps("palisade_calico_compat").is_empty());
    assert_eq!(
        caps("palisade_fixture_hostile").into_iter().collect::<Vec<_>>(),
        vec![Capability::Log, Capability::Nft, Capability::Bpf]
    );
}

#[test]
fn a_plugin_importing_an_ungranted_capability_is_refused_at_load_by_name() {
    let err = load("palisade_fixture_hostile", &Grants::of(&[Capability::Log]))
        .err()
        .expect("hostile plugin must be refused without nft and bpf grants");
    match &err {
        PluginError::UngrantedCapability { plugin, capability, import } => {
            assert_eq!(plugin, "palisade_fixture_hostile");
            assert!(matches!(capability, Capability::Nft | Capability::Bpf));
            assert!(import.starts_with("palisade:backend/"));
        }
        other => panic!("unexpected error: {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("palisade_fixture_hostile") && msg.contains("not granted"), "{msg}");

    // Even the log capability must be granted.
    let err = load("palisade_nftables", &Grants::none()).err().expect("refused");
    assert!(matches!(err, PluginError::UngrantedCapability { capability: Capability::Log, .. }));
}

#[test]
fn garbage_and_precompiled_artifacts_are_refused() {
    let e = engine();
    let err = e
        .load(
            "junk",
            b"\0asm not really",
            &Grants::all(),
            Limits::default(),
            Capabilities::default(),
        )
        .err()
        .expect("garbage must not load");
    assert!(matches!(err, PluginError::Compile { ref plugin, .. } if plugin == "junk"), "{err}");

    let component =
        wasmtime::component::Component::new(e.engine(), plugin_bytes("palisade_nftables")).unwrap();
    let artifact = component.serialize().unwrap();
    let err = e
        .load("vendor", &artifact, &Grants::all(), Limits::default(), Capabilities::default())
        .err()
        .expect("a precompiled artifact must be refused");
    assert!(matches!(err, PluginError::Precompiled { .. }), "{err}");
}

#[test]
fn a_plugin_built_for_another_major_wit_version_is_refused_before_instantiation() {
    let err = load("palisade_fixture_future", &Grants::all()).err().expect("refused");
    match err {
        PluginError::WitVersion { plugin, found, .. } => {
            assert_eq!(plugin, "palisade_fixture_future");
            assert!(found.contains("@0.2.0"), "{found}");
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn the_precompile_cache_serves_memory_then_disk() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || palisade_plugin_host::EngineOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let bytes = plugin_bytes("palisade_calico_compat");
    let first = PluginEngine::new(opts()).unwrap();
    assert_eq!(first.precompiled_outcome(&bytes), Some("compiled"));
    assert_eq!(first.precompiled_outcome(&bytes), Some("memory"));
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one artifact on disk");
    // A new engine (a restarted host) finds the artifact on disk.
    let second = PluginEngine::new(opts()).unwrap();
    assert_eq!(second.precompiled_outcome(&bytes), Some("disk"));
    second
        .load("calico", &bytes, &Grants::none(), Limits::default(), Capabilities::default())
        .unwrap()
        .info()
        .unwrap();
}
