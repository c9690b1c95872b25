//! Reading a manifest file or directory into a store, the dialect compilers
//! and a resolver (shared by `resolve`, `explain` and `matrix`).

use std::path::Path;

use anyhow::Context;
use palisade_dialects::{BetaRule, Compiler};
use palisade_model::Direction;
use palisade_resolver::Resolver;
use palisade_store::Store;

/// Which rule decides when extensions/v1beta1 policies are in force.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BetaRuleArg {
    /// Only in namespaces with the DefaultDeny annotation (Kubernetes 1.3-1.6).
    #[default]
    Beta,
    /// Always, like networking.k8s.io/v1 (Kubernetes 1.7 on).
    V1,
}

impl BetaRuleArg {
    pub fn dialect_settings(self) -> palisade_dialects::Settings {
        let beta_rule = match self {
            BetaRuleArg::Beta => BetaRule::Beta,
            BetaRuleArg::V1 => BetaRule::V1,
        };
        palisade_dialects::Settings { beta_rule, ..palisade_dialects::Settings::default() }
    }
}

/// The objects of a manifest path, compiled and resolved.
pub struct Loaded {
    pub store: Store,
    pub resolver: Resolver,
    /// Number of objects rejected (reported on stderr).
    pub rejected: usize,
}

/// Reads `path` (a file or a directory of YAML/JSON manifests). Invalid
/// objects are reported on stderr with their file, object and field, and
/// skipped; unsupported kinds are reported as ignored.
pub fn load(
    path: &Path,
    dialects: palisade_dialects::Settings,
    resolver: palisade_resolver::Settings,
) -> anyhow::Result<Loaded> {
    let mut documents = palisade_store::source::load_path(path)
        .with_context(|| format!("cannot read manifests from {}", path.display()))?;
    documents.sort_by_key(|d| palisade_pipeline::rank(&d.object));
    let mut store = Store::new();
    let mut compiler = Compiler::new(dialects);
    let mut events = Vec::new();
    let mut rejected = 0;
    for doc in documents {
        match compiler.apply_stored(&mut store, doc.object) {
            Ok((_, compiled)) => {
                for w in &compiled.warnings {
                    eprintln!("warning: {}: {w}", doc.origin);
                }
                events.extend(compiled.events);
            }
            Err(e) if e.is_unsupported_kind() => {
                eprintln!("warning: {}: {e} (ignored)", doc.origin);
            }
            Err(e) => {
                rejected += 1;
                eprintln!("error: {}: {e} (object skipped)", doc.origin);
            }
        }
    }
    let mut r = Resolver::new(resolver);
    r.handle_all(events);
    Ok(Loaded { store, resolver: r, rejected })
}

impl Loaded {
    /// The policy objects selecting a pod for a direction, for explanations.
    pub fn selecting(&self, pod: &str, direction: Direction) -> Vec<String> {
        self.resolver
            .selecting(pod, direction)
            .into_iter()
            .map(|(_, o)| {
                if o.namespace.is_empty() {
                    format!("{} {}", o.kind, o.name)
                } else {
                    format!("{} {}/{}", o.kind, o.namespace, o.name)
                }
            })
            .collect()
    }

    /// Exit code: 1 if an object was rejected, else 0.
    pub fn exit_code(&self) -> std::process::ExitCode {
        if self.rejected > 0 {
            std::process::ExitCode::from(1)
        } else {
            std::process::ExitCode::SUCCESS
        }
    }
}

/// Parses `N` or `N/PROTO` (protocol TCP, UDP or SCTP in any case).
pub fn parse_port(s: &str) -> Result<(u16, palisade_model::Protocol), String> {
    let (port, protocol) = match s.split_once('/') {
        Some((p, proto)) => (p, Some(proto)),
        None => (s, None),
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("`{port}` is not a port number (1-65535)"))?;
    let protocol = match protocol {
        None => palisade_model::Protocol::Tcp,
        Some(p) => palisade_model::Protocol::parse_any_case(p)
            .ok_or_else(|| format!("`{p}` is not TCP, UDP or SCTP"))?,
    };
    Ok((port, protocol))
}
