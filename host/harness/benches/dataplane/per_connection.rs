//! (b) Per-connection cost: new connections and round trips with no policy against each configuration.

use super::*;

/// The pods of the per-connection lab, as objects: namespace `bench`, a
/// client and a server.
pub(crate) fn bench_pods() -> Vec<Value> {
    let pod = |name: &str, ip: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "bench", "labels": {"app": name}},
            "spec": {"nodeName": "node-0", "containers": [{"name": "main", "ports": [
                {"name": "bench", "containerPort": SERVER_PORT, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip},
        })
    };
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench",
            "labels": {"kubernetes.io/metadata.name": "bench", "team": "bench"}}}),
        pod("client", CLIENT_IP),
        pod("server", SERVER_IP),
    ]
}

pub(crate) const CLIENT_IP: &str = "10.0.1.1";
pub(crate) const SERVER_IP: &str = "10.0.1.2";

/// `fillers` policies isolating the server, none of which admits the client
/// (ingress from external /24 ranges, 200 different ones, on ports of their
/// own), then `zz-allow-client`: ingress from the client on the server port.
pub(crate) fn server_policies(fillers: usize) -> Vec<Value> {
    let mut out: Vec<Value> = (0..fillers)
        .map(|j| {
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("filler-{j:05}"), "namespace": "bench"},
                "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"ipBlock": {"cidr": format!("198.18.{}.0/24", j % 200)}}],
                                 "ports": [port(10_000 + (j % 20_000) as u16)]}]},
            })
        })
        .collect();
    out.push(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "zz-allow-client", "namespace": "bench"},
        "spec": {"podSelector": {"matchLabels": {"app": "server"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                         "ports": [port(SERVER_PORT)]}]},
    }));
    out
}

/// A rule set of `objects`, and where the rule admitting the client sits in
/// the server's ingress chain (index, rules in the chain).
pub(crate) fn rule_set_of(
    objects: Vec<Value>,
) -> Result<(palisade_model::RuleSet, usize, usize), Error> {
    let mut pipeline = Pipeline::new(Default::default(), Default::default());
    let outcome = pipeline.apply(objects);
    if let Some(r) = outcome.rejected.first() {
        return Err(format!("rejected {}: {}", r.object, r.message).into());
    }
    let rs = pipeline.rule_set().clone();
    let server =
        rs.endpoints.iter().find(|e| e.name == "bench/server").ok_or("no server endpoint")?.id;
    let policy = rs
        .policies
        .iter()
        .find(|p| p.endpoint == server && p.direction == palisade_model::Direction::Ingress)
        .ok_or("the server is not isolated")?;
    let allow_origin =
        rs.origins.iter().find(|o| o.name == "zz-allow-client").ok_or("no allow-client origin")?.id;
    let rules: Vec<_> = policy.tiers.iter().flat_map(|t| t.rules.iter()).collect();
    let at = rules.iter().position(|r| r.origin == allow_origin).ok_or("no allow rule")?;
    let len = rules.len();
    Ok((rs, at, len))
}

pub(crate) struct Server {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) workers: Vec<std::thread::JoinHandle<()>>,
    pub(crate) addr: SocketAddr,
    pub(crate) client_ns: PathBuf,
}

/// An echo server in the server's namespace: `workers` threads accepting on
/// one listener, each serving a connection to its end.
pub(crate) fn start_server(
    server_ns: &Path,
    client_ns: &Path,
    workers: usize,
) -> Result<Server, Error> {
    let listener = palisade_netns::run_in(server_ns, || {
        TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], SERVER_PORT)))
    })??;
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let listener = listener.try_clone()?;
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else { continue };
                let _ = conn.set_nodelay(true);
                let mut buf = [0u8; 64];
                let mut pinned = false;
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            // The round-trip client asks to share its CPU.
                            if !pinned && &buf[..n] == PIN {
                                pinned = pin_to(Some(RT_CPU));
                            }
                            if conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                if pinned {
                    pin_to(None);
                }
            }
        }));
    }
    Ok(Server {
        stop,
        workers: handles,
        addr: SocketAddr::new(SERVER_IP.parse()?, SERVER_PORT),
        client_ns: client_ns.to_path_buf(),
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake every worker blocked in accept.
        let addr = self.addr;
        let n = self.workers.len();
        let _ = palisade_netns::run_in(&self.client_ns, move || {
            for _ in 0..n {
                let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
            }
        });
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

pub(crate) const REQUEST: &[u8] = b"ping1234";
/// The round-trip client's first message: the server worker moves to the
/// client's CPU for the connection.
pub(crate) const PIN: &[u8] = b"pin-cpu!";
/// The CPU of the round-trip client and its server worker: the whole round
/// trip (both sockets, the veth hops, the node's forwarding) runs on it, so
/// the measurement is the path's CPU cost, not cross-CPU wake-ups.
pub(crate) const RT_CPU: usize = 0;

/// Pins the calling thread to `cpu`, or lets it run anywhere again.
pub(crate) fn pin_to(cpu: Option<usize>) -> bool {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    let ok = match cpu {
        Some(c) => set.set(c).is_ok(),
        None => {
            let all = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
            (0..all).all(|c| set.set(c).is_ok())
        }
    };
    ok && sched_setaffinity(Pid::from_raw(0), &set).is_ok()
}

/// One connection: connect, a request of 8 bytes, its echo, close.
pub(crate) fn one_connection(addr: &SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(addr, Duration::from_secs(2))?;
    s.set_nodelay(true)?;
    s.write_all(REQUEST)?;
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf)?;
    Ok(())
}

/// What the node namespace holds during one per-connection configuration.
pub(crate) enum Config<'a> {
    /// No table.
    None,
    /// A table written directly (libnftables JSON).
    Raw(&'a str),
    /// The plugin's table for a rule set.
    Rules(&'a palisade_model::RuleSet),
}

/// The enforcers of the per-connection bench, by backend.
type Enforcers = BTreeMap<String, (Enforcer, Option<Arc<Recorder>>, String)>;

/// Removes every backend's table or programs, then puts `config` of
/// `backend` in force; returns how long programming a rule set took.
fn put_in_force(
    enforcers: &mut Enforcers,
    backend: &str,
    config: &Config,
) -> Result<Option<Duration>, Error> {
    for (e, _, _) in enforcers.values_mut() {
        e.reset()?;
    }
    match (config, enforcers.get_mut(backend)) {
        (Config::Raw(batch), Some((_, Some(recorder), plugin))) => {
            recorder.inner.apply(plugin, batch)?;
            Ok(None)
        }
        (Config::Rules(rules), Some((enforcer, _, _))) => {
            let t0 = Instant::now();
            enforcer.program(rules, &Delta::default())?;
            Ok(Some(t0.elapsed()))
        }
        _ => Ok(None),
    }
}

/// One configuration's run: connections, and the round trips' (p50, p99).
pub(crate) type Measured = (ConnResult, (f64, f64));

pub(crate) struct ConnResult {
    pub(crate) per_second: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

/// `count` connections from `clients` threads in the client's namespace.
pub(crate) fn connections(
    client_ns: &Path,
    addr: SocketAddr,
    count: usize,
    clients: usize,
) -> Result<ConnResult, Error> {
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let share = count / clients + usize::from(c < count % clients);
        handles.push(palisade_netns::spawn_in(client_ns, move || {
            let mut times = Vec::with_capacity(share);
            for _ in 0..share {
                let t0 = Instant::now();
                one_connection(&addr)?;
                times.push(t0.elapsed().as_secs_f64() * 1e6);
            }
            Ok::<_, std::io::Error>(times)
        })?);
    }
    let mut times = Vec::with_capacity(count);
    for h in handles {
        times.extend(h.join().map_err(|_| "client thread panicked")???);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let times = sorted(times);
    Ok(ConnResult {
        per_second: count as f64 / elapsed,
        p50_us: percentile(&times, 50.0),
        p99_us: percentile(&times, 99.0),
    })
}

/// `trips` round trips of 8 bytes on one established connection: (p50, p99)
/// in µs.
pub(crate) fn round_trips(
    client_ns: &Path,
    addr: SocketAddr,
    trips: usize,
) -> Result<(f64, f64), Error> {
    let times = palisade_netns::run_in(client_ns, move || {
        pin_to(Some(RT_CPU));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 8];
        s.write_all(PIN)?;
        s.read_exact(&mut buf)?;
        let mut times = Vec::with_capacity(trips);
        for _ in 0..trips {
            let t0 = Instant::now();
            s.write_all(REQUEST)?;
            s.read_exact(&mut buf)?;
            times.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        Ok::<_, std::io::Error>(times)
    })??;
    let times = sorted(times);
    Ok((percentile(&times, 50.0), percentile(&times, 99.0)))
}

pub(crate) fn per_connection() -> Result<(), Error> {
    let count = env_usize("PALISADE_BENCH_CONNECTIONS", 20_000);
    let trips = env_usize("PALISADE_BENCH_ROUND_TRIPS", 20_000);
    let rounds = env_usize("PALISADE_BENCH_ROUNDS", 3);
    let clients = env_usize("PALISADE_BENCH_CLIENTS", 2);
    let cluster_rules = env_usize("PALISADE_BENCH_CLUSTER_RULES", 10_000);
    println!(
        "\n== per-connection: {count} connections from {clients} client threads, {trips} round trips, {rounds} rounds =="
    );

    // The rule sets. The cluster: PALISADE_BENCH_CLUSTER_POLICIES policies,
    // or else the fewest (in steps of 5%, from 1,000) that put at least
    // PALISADE_BENCH_CLUSTER_RULES rules (default 10,000) in force.
    let cluster_of = |policies: usize| {
        let mut objects = cluster(policies);
        objects.extend(bench_pods());
        objects.extend(server_policies(100));
        rule_set_of(objects)
    };
    let (short, short_at, short_len) = match std::env::var("PALISADE_BENCH_CLUSTER_POLICIES") {
        Ok(v) => cluster_of(v.parse()?)?,
        Err(_) => {
            let mut policies = 1_000;
            loop {
                let r = cluster_of(policies)?;
                if r.0.rule_count() >= cluster_rules || policies > 1_000_000 {
                    println!("cluster: {policies} policies");
                    break r;
                }
                policies += policies / 20;
            }
        }
    };
    let mut long_objects = bench_pods();
    long_objects.extend(server_policies(9_999));
    let (long, long_at, long_len) = rule_set_of(long_objects)?;
    // The table with no policy at all: its base chains and the conntrack
    // rule, i.e. what every packet pays before any policy rule.
    let empty = palisade_model::RuleSet::default();
    // Two tables written directly (not by the plugin) to split the empty
    // table's cost: a forward base chain with no rule (the hook alone: no
    // conntrack in the namespace), and the same chain with only `ct state
    // established,related accept` (which turns conntrack on).
    let raw = |ct: bool| {
        let mut cmds = vec![
            json!({"add": {"table": {"family": "inet", "name": TABLE}}}),
            json!({"add": {"chain": {"family": "inet", "table": TABLE, "name": "forward",
                "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}}),
        ];
        if ct {
            cmds.push(
                json!({"add": {"rule": {"family": "inet", "table": TABLE, "chain": "forward",
                "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}},
                    "right": ["established", "related"]}}, {"accept": null}]}}}),
            );
        }
        json!({ "nftables": cmds }).to_string()
    };
    let (hook_only, ct_only) = (raw(false), raw(true));
    // (backend, configuration): the baseline once, then each backend's
    // configurations, alternated in every round.
    let mut configs: Vec<(String, &str, Config)> = vec![(String::new(), "no policy", Config::None)];
    for b in backends() {
        if b == "nftables" {
            configs.push((b.clone(), "hook only", Config::Raw(&hook_only)));
            configs.push((b.clone(), "ct only", Config::Raw(&ct_only)));
            configs.push((b.clone(), "empty table", Config::Rules(&empty)));
        }
        configs.push((b.clone(), "cluster", Config::Rules(&short)));
        configs.push((b.clone(), "server-10k", Config::Rules(&long)));
    }
    println!(
        "cluster: {} endpoints, {} rules in force; the server's ingress chain has {short_len} rules, the client's allow at index {short_at}",
        short.endpoints.len(),
        short.rule_count()
    );
    println!(
        "server-10k: {} endpoints, {} rules in force; the server's ingress chain has {long_len} rules, the client's allow at index {long_at}",
        long.endpoints.len(),
        long.rule_count()
    );

    let spec = LabSpec {
        pods: vec![
            LabPod { key: "bench/client".into(), ip: CLIENT_IP.parse()?, ports: vec![] },
            LabPod { key: "bench/server".into(), ip: SERVER_IP.parse()?, ports: vec![] },
        ],
        ..LabSpec::default()
    };
    // Round trips on this VM are dominated by waking halted vCPUs (tens of
    // µs, more than the network path): ask the idle governor to poll
    // instead (PM QoS, held while the file is open), as latency benchmarks
    // do, so the path's own cost shows. PALISADE_BENCH_IDLE_POLL=0: don't.
    let _idle_poll = if env_usize("PALISADE_BENCH_IDLE_POLL", 1) == 1 {
        let held = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/cpu_dma_latency")
            .and_then(|mut f| f.write_all(&0i32.to_ne_bytes()).map(|()| f));
        match &held {
            Ok(_) => {
                println!("idle states: polling only (/dev/cpu_dma_latency = 0 while measuring)")
            }
            Err(e) => println!("idle states: as configured (/dev/cpu_dma_latency: {e})"),
        }
        held.ok()
    } else {
        println!("idle states: as configured (PALISADE_BENCH_IDLE_POLL=0)");
        None
    };
    let lab = Lab::up(&spec)?;
    let client_ns = lab.endpoint("bench/client").ok_or("no client")?.netns_path();
    let server_ns = lab.endpoint("bench/server").ok_or("no server")?.netns_path();
    // The client closes first: its ports sit in TIME_WAIT; reuse them
    // (100,000+ connections over a run, 28,000 ephemeral ports).
    palisade_netns::run_in(&client_ns, || std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "1"))??;
    let server = start_server(&server_ns, &client_ns, 4)?;
    let addr = server.addr;
    let engine = PluginEngine::new(Default::default())?;
    let mut enforcers = Enforcers::new();
    for b in backends() {
        let (e, recorder, plugin) = enforcer(&engine, lab.node_netns(), &b)?;
        enforcers.insert(b, (e, recorder, plugin));
    }

    // Warm up (ARP, caches) with no table.
    connections(&client_ns, addr, 1_000, clients)?;

    let mut results: BTreeMap<usize, Vec<Measured>> = BTreeMap::new();
    for round in 0..rounds {
        for (c, (backend, config, rules)) in configs.iter().enumerate() {
            let name = format!("{backend} {config}");
            let took = put_in_force(&mut enforcers, backend, rules)?;
            if let (0, Some(took)) = (round, took) {
                match enforcers.get(backend).and_then(|e| e.1.as_ref()) {
                    Some(recorder) => println!(
                        "  {name}: programmed in {:.2} s ({} nft rules in the kernel, batch {:.1} MB)",
                        took.as_secs_f64(),
                        count_nft_objects(&lab.node_netns())?.rules,
                        recorder.take().iter().map(|b| b.bytes).sum::<usize>() as f64 / 1e6
                    ),
                    None => println!("  {name}: programmed in {:.2} s", took.as_secs_f64()),
                }
            }
            let conn = connections(&client_ns, addr, count, clients)?;
            let rt = round_trips(&client_ns, addr, trips)?;
            println!(
                "  round {round} {name:>20}: {:>8.0} connections/s (p50 {:.0} µs, p99 {:.0} µs); round trip p50 {:.1} µs, p99 {:.1} µs",
                conn.per_second, conn.p50_us, conn.p99_us, rt.0, rt.1
            );
            results.entry(c).or_default().push((conn, rt));
        }
    }

    // Round trips, finely paired: short runs alternating no table and one
    // configuration (the order flipped every pair), so the machine's drift,
    // larger than the effect, cancels out pair by pair. The cluster is left
    // out (programming it takes seconds).
    let pairs = env_usize("PALISADE_BENCH_RT_PAIRS", 40);
    let pair_trips = env_usize("PALISADE_BENCH_RT_PAIR_TRIPS", 3_000);
    if pairs > 0 {
        println!(
            "round trips paired with no policy: {pairs} pairs of {pair_trips} round trips each (median of the pairs' p50 differences; 95% interval of that median):"
        );
        for (backend, config, rules) in configs.iter().skip(1).filter(|c| c.1 != "cluster") {
            let mut diffs = Vec::with_capacity(pairs);
            for i in 0..pairs {
                let (mut none, mut with) = (0.0, 0.0);
                for policy_first in [i % 2 == 1, i % 2 == 0] {
                    if policy_first {
                        put_in_force(&mut enforcers, backend, rules)?;
                        with = round_trips(&client_ns, addr, pair_trips)?.0;
                    } else {
                        put_in_force(&mut enforcers, backend, &Config::None)?;
                        none = round_trips(&client_ns, addr, pair_trips)?.0;
                    }
                }
                diffs.push((with / none - 1.0) * 100.0);
            }
            let d = sorted(diffs);
            // Order statistics around the median: a distribution-free 95%
            // interval for it (ranks n/2 ± 0.98 √n).
            let n = d.len() as f64;
            let half = 0.98 * n.sqrt();
            let lo = ((n / 2.0 - half).floor().max(1.0)) as usize;
            let hi = ((n / 2.0 + half).ceil().min(n)) as usize;
            println!(
                "  {:>20}: round trip p50 {:+.1}% ({:+.1}..{:+.1}%)",
                format!("{backend} {config}"),
                percentile(&d, 50.0),
                d[lo - 1],
                d[hi - 1]
            );
        }
    }
    for (e, _, _) in enforcers.values_mut() {
        e.reset()?;
    }
    drop(enforcers);
    drop(server);

    println!("mean over {rounds} rounds (median of the per-round p50/p99):");
    let base = &results[&0];
    let base_cps = base.iter().map(|r| r.0.per_second).sum::<f64>() / base.len() as f64;
    let base_rt = percentile(&sorted(base.iter().map(|r| r.1 .0).collect()), 50.0);
    for (c, (backend, config, _)) in configs.iter().enumerate() {
        let name = format!("{backend} {config}");
        let r = &results[&c];
        let cps = r.iter().map(|r| r.0.per_second).sum::<f64>() / r.len() as f64;
        let med =
            |f: &dyn Fn(&Measured) -> f64| percentile(&sorted(r.iter().map(f).collect()), 50.0);
        let rt50 = med(&|r| r.1 .0);
        println!(
            "  {name:>20}: {cps:>8.0} connections/s ({:+.1}%), connection p50 {:.0} µs / p99 {:.0} µs; round trip p50 {rt50:.1} µs ({:+.1}%), p99 {:.1} µs",
            (cps / base_cps - 1.0) * 100.0,
            med(&|r| r.0.p50_us),
            med(&|r| r.0.p99_us),
            (rt50 / base_rt - 1.0) * 100.0,
            med(&|r| r.1 .1),
        );
    }
    // Paired: each round's figure against the same round's no-policy one
    // (the rounds drift together, so this cancels most of the drift).
    println!("paired with the same round's no policy (median of {rounds} rounds, quartiles):");
    for (c, (backend, config, _)) in configs.iter().enumerate().skip(1) {
        let name = format!("{backend} {config}");
        let ratio = |f: &dyn Fn(&Measured) -> f64| {
            let v: Vec<f64> =
                results[&c].iter().zip(base).map(|(r, b)| (f(r) / f(b) - 1.0) * 100.0).collect();
            let v = sorted(v);
            (percentile(&v, 50.0), percentile(&v, 25.0), percentile(&v, 75.0))
        };
        let (c50, c25, c75) = ratio(&|r| r.0.per_second);
        let (t50, t25, t75) = ratio(&|r| r.1 .0);
        println!(
            "  {name:>20}: connections/s {c50:+.1}% ({c25:+.1}..{c75:+.1}); round trip p50 {t50:+.1}% ({t25:+.1}..{t75:+.1})"
        );
    }
    lab.down()?;
    Ok(())
}
