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
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
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
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 8];
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
    let lab = Lab::up(&spec)?;
    let client_ns = lab.endpoint("bench/client").ok_or("no client")?.netns_path();
    let server_ns = lab.endpoint("bench/server").ok_or("no server")?.netns_path();
    // The client closes first: its ports sit in TIME_WAIT; reuse them
    // (100,000+ connections over a run, 28,000 ephemeral ports).
    palisade_netns::run_in(&client_ns, || std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "1"))??;
    let server = start_server(&server_ns, &client_ns, 4)?;
    let addr = server.addr;
    let engine = PluginEngine::new(Default::default())?;
    let mut enforcers = BTreeMap::new();
    for b in backends() {
        let (e, recorder, plugin) = enforcer(&engine, lab.node_netns(), &b)?;
        enforcers.insert(b, (e, recorder, plugin));
    }

    // Warm up (ARP, caches) with no table.
    connections(&client_ns, addr, 1_000, clients)?;

    let mut results: BTreeMap<usize, Vec<Measured>> = BTreeMap::new();
    for round in 0..rounds {
        for (c, (backend, config, rules)) in configs.iter().enumerate() {
            for (e, _, _) in enforcers.values_mut() {
                e.reset()?;
            }
            let name = format!("{backend} {config}");
            if let (Config::Raw(batch), Some((_, Some(recorder), plugin))) =
                (rules, enforcers.get(backend))
            {
                recorder.inner.apply(plugin, batch)?;
            }
            if let (Config::Rules(rules), Some((enforcer, recorder, _))) =
                (rules, enforcers.get_mut(backend))
            {
                let t0 = Instant::now();
                enforcer.program(rules, &Delta::default())?;
                if round == 0 {
                    let took = t0.elapsed().as_secs_f64();
                    match recorder {
                        Some(recorder) => println!(
                            "  {name}: programmed in {took:.2} s ({} nft rules in the kernel, batch {:.1} MB)",
                            count_nft_objects(&lab.node_netns())?.rules,
                            recorder.take().iter().map(|b| b.bytes).sum::<usize>() as f64 / 1e6
                        ),
                        None => println!("  {name}: programmed in {took:.2} s"),
                    }
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
    lab.down()?;
    Ok(())
}
