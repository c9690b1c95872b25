//! Dataplane benchmarks of the nftables and eBPF backends, side by side in
//! one run (a bench binary, not a timed test). Needs root, `ip` and `nft`,
//! and the plugins built (`scripts/build-plugins`).
//!
//! ```text
//! cargo bench -p palisade-harness --bench dataplane -- latency [POLICIES...]
//! cargo bench -p palisade-harness --bench dataplane -- per-connection
//! ```
//!
//! `latency`: programming latency of the daemon, from a changed file in the
//! watched manifest directory to `Daemon::round` returning with the delta
//! programmed (the nft batch returned: the kernel is updated). A synthetic
//! cluster (2,000 pods over 50 namespaces, POLICIES NetworkPolicies of five
//! shapes; default 1,000 and 10,000), the daemon in-process with a 1 ms
//! settle time, the nftables plugin acting in a lab's node namespace. The
//! pods are spread over `PALISADE_BENCH_NODES` nodes (default 20: 100 pods
//! on the lab's node, the others peers only); 1 makes every pod local.
//!
//! `per-connection`: a client and a server pod in the lab; new TCP
//! connections per second and request/response latency on one established
//! connection, with no table, with an empty table, with a cluster-sized rule
//! set where the server's chain is short, and with the server subject to
//! 10,000 rules (its allowing rule last), alternated to cancel drift. Then
//! round trips alone, finely paired: short runs alternating no table and
//! each configuration but the cluster, the client and its server worker
//! pinned to one CPU, idle states polling (PM QoS) while measuring.
//!
//! Knobs (environment): `PALISADE_BENCH_BACKENDS` (default
//! `nftables,ebpf`), `PALISADE_BENCH_CHANGES` (changes of each kind per
//! size, default 100), `PALISADE_BENCH_CONNECTIONS` (default 20,000),
//! `PALISADE_BENCH_ROUND_TRIPS` (default 20,000), `PALISADE_BENCH_RT_PAIRS`
//! (paired round-trip runs per configuration, default 40; 0: none),
//! `PALISADE_BENCH_RT_PAIR_TRIPS` (round trips per run, default 3,000),
//! `PALISADE_BENCH_IDLE_POLL` (default 1; 0 leaves idle states alone),
//! `PALISADE_BENCH_ROUNDS`
//! (alternations, default 3), `PALISADE_BENCH_CLIENTS` (client threads,
//! default 2), `PALISADE_BENCH_CLUSTER_RULES` (rules in force in the
//! per-connection `cluster` rule set, default 10,000: the fewest policies
//! that reach it), `PALISADE_BENCH_CLUSTER_POLICIES` (or a fixed number of
//! its policies),
//! `PALISADE_BENCH_PLUGIN_MEMORY_MB` (the plugin's memory limit; default:
//! the host's default limits).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_daemon::profile::plugin_name;
use palisade_daemon::{profile, Daemon, DaemonConfig, Enforcer, Programmed, Target};
use palisade_lab::{Lab, LabPod, LabSpec};
use palisade_model::{Delta, Protocol};
use palisade_nft::{NftDataplane, TableGrants, TableRef};
use palisade_pipeline::Pipeline;
use palisade_plugin_host::{Limits, NftProvider, PluginEngine};
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error>;

const NAMESPACES: usize = 50;
const PODS: usize = 2_000;
const APPS: usize = 10;
const TIERS: [&str; 3] = ["web", "api", "db"];
const TABLE: &str = "palisade";
const SERVER_PORT: u16 = 5201;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

mod cluster;
mod latency;
mod per_connection;
mod setup;
mod stats;

use cluster::*;
use latency::*;
use per_connection::*;
use setup::*;
use stats::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let run_latency = args.is_empty() || args.iter().any(|a| a == "latency");
    let run_conn = args.is_empty() || args.iter().any(|a| a == "per-connection");
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1_000, 10_000] } else { sizes };
    if !nix_is_root() {
        eprintln!("dataplane bench: needs root (network namespaces, nft); skipped");
        return;
    }
    let mut failed = false;
    if run_latency {
        let changes = env_usize("PALISADE_BENCH_CHANGES", 100);
        for &p in &sizes {
            for backend in backends() {
                if let Err(e) = latency(p, changes, &backend) {
                    eprintln!("latency ({backend}) with {p} policies: {e}");
                    failed = true;
                }
            }
        }
    }
    if run_conn {
        if let Err(e) = per_connection() {
            eprintln!("per-connection: {e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}
