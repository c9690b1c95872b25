//! (a) Programming latency: a changed file in the watched directory to the kernel updated.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Change {
    Policy(usize),
    PodLabel(usize),
}

pub(crate) struct Sample {
    pub(crate) change: Change,
    pub(crate) total: Duration,
    pub(crate) enforce: Duration,
    pub(crate) records: usize,
    pub(crate) full: bool,
    pub(crate) batches: Vec<Batch>,
}

pub(crate) fn latency(policies: usize, changes: usize, backend: &str) -> Result<(), Error> {
    println!(
        "\n== latency ({backend}): {PODS} pods on {} nodes (the lab is node-0), {NAMESPACES} namespaces, {policies} policies ==",
        nodes()
    );
    let tmp = TempDir::new("latency")?;
    let root = tmp.0.join("cluster");
    let staging = tmp.0.join("staging");
    for d in ["namespaces", "pods", "policies"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::create_dir_all(&staging)?;
    for n in 0..NAMESPACES {
        write_json(&root.join(format!("namespaces/ns-{n}.json")), &namespace(n))?;
    }
    for n in 0..nodes() {
        write_json(&root.join(format!("namespaces/node-{n}.json")), &node(n))?;
    }
    for i in 0..PODS {
        write_json(&root.join(format!("pods/pod-{i}.json")), &pod(i, 0))?;
    }
    for k in 0..policies {
        write_json(&root.join(format!("policies/policy-{k:05}.json")), &policy(k, 0))?;
    }

    // The kernel side: a lab node namespace (two pods of node-0 are real).
    let spec = LabSpec {
        pods: [0, nodes()]
            .into_iter()
            .map(|i| LabPod {
                key: format!("ns-{}/pod-{i}", i % NAMESPACES),
                ip: IpAddr::V4(pod_ip(i)),
                ports: vec![(Protocol::Tcp, 9090)],
            })
            .collect(),
        ..LabSpec::default()
    };
    let lab = Lab::up(&spec)?;
    let engine = PluginEngine::new(Default::default())?;
    let (enforcer, recorder, plugin) = enforcer(&engine, lab.node_netns(), backend)?;
    let take = || recorder.as_ref().map(|r| r.take()).unwrap_or_default();
    let config = DaemonConfig {
        source_dir: root.clone(),
        settle: Duration::from_millis(1),
        dialects: Default::default(),
        resolver: palisade_resolver::Settings { node: Some("node-0".into()), ..Default::default() },
    };

    let started = Instant::now();
    let (mut daemon, first) = Daemon::start(&config, enforcer)?;
    let initial = started.elapsed();
    let rs = daemon.pipeline().rule_set();
    println!(
        "rule set: {} endpoints, {} endpoint policies, {} rules, {} address sets",
        rs.endpoints.len(),
        rs.policies.len(),
        rs.rule_count(),
        rs.sets.len()
    );
    let applied = first.load.applied;
    let rejected = first.load.rejected.len();
    match &first.programmed {
        Ok(Programmed::Full { rules, elapsed, .. }) => println!(
            "initial: {applied} objects ({rejected} rejected); Daemon::start {:.3} s, of which plugin apply + nft {:.3} s ({rules} rules)",
            initial.as_secs_f64(),
            elapsed.as_secs_f64()
        ),
        other => return Err(format!("initial programming: {other:?}").into()),
    }
    for b in take() {
        println!(
            "  initial nft batch: {} commands, {:.1} MB JSON, nft {:.3} s{}",
            b.commands,
            b.bytes as f64 / 1e6,
            b.elapsed.as_secs_f64(),
            if b.ok { "" } else { " (FAILED)" }
        );
    }
    if recorder.is_some() {
        let k = count_nft_objects(&lab.node_netns())?;
        println!(
            "  kernel: {} rules, {} chains, {} named sets and maps, {} anonymous sets in table inet {TABLE}",
            k.rules, k.chains, k.sets, k.anonymous
        );
    }

    // The changes, alternately: a port of a policy that selects a pod of
    // this node, and the `app` label of a pod of this node (it changes the
    // policies it is subject to, and the peer sets it is in).
    let mut plan = Vec::new();
    let local_pods: Vec<usize> = (0..PODS).filter(|i| i % nodes() == 0).collect();
    let mut k = 13;
    for j in 0..changes {
        k = (k + 7_919) % policies;
        while !selects_local_pod(k) {
            k = (k + 1) % policies;
        }
        plan.push(Change::Policy(k));
        plan.push(Change::PodLabel(local_pods[(j * 131 + 7) % local_pods.len()]));
    }
    let warmup = 6;
    let mut shifts: BTreeMap<Change, usize> = BTreeMap::new();
    let mut samples = Vec::new();
    for (n, change) in plan.iter().take(warmup).chain(plan.iter()).enumerate() {
        let shift = shifts.entry(*change).or_default();
        *shift += 1;
        let (rel, value) = match *change {
            Change::Policy(k) => {
                (format!("policies/policy-{k:05}.json"), policy(k, (*shift % 2) as u16))
            }
            Change::PodLabel(i) => (format!("pods/pod-{i}.json"), pod(i, *shift % 2)),
        };
        let target = root.join(&rel);
        let text = serde_json::to_vec(&value)?;
        let tmp_file = staging.join("next.json");
        let t0 = Instant::now();
        // Written elsewhere, renamed in: the daemon never sees half a file.
        std::fs::write(&tmp_file, &text)?;
        std::fs::rename(&tmp_file, &target)?;
        let round = loop {
            match daemon.round(Duration::from_secs(10))? {
                Some(r) if r.changed_files.contains(&target) => break r,
                Some(_) => continue,
                None => return Err(format!("no round for {rel} within 10 s").into()),
            }
        };
        let total = t0.elapsed();
        let batches = take();
        let (enforce, records, full) = match round.programmed {
            Ok(Programmed::Delta { elapsed, records, .. }) => (elapsed, records, false),
            Ok(Programmed::Full { elapsed, rules, .. }) => (elapsed, rules, true),
            Ok(Programmed::Unchanged) => (Duration::ZERO, 0, false),
            Err(e) => return Err(format!("programming {rel}: {e}").into()),
        };
        if n >= warmup {
            samples.push(Sample { change: *change, total, enforce, records, full, batches });
        }
    }
    report_latency(&samples);

    // The floor of one nft call: a one-command batch, with this table in
    // force, then in an empty namespace.
    if let Some(recorder) = &recorder {
        let floor_big = nft_floor(recorder, &plugin, 30)?;
        daemon.enforcer_mut().reset()?;
        let floor_empty = nft_floor(recorder, &plugin, 30)?;
        println!(
            "nft floor (one-command batch, p50 of 30): {:.2} ms with this table in force, {:.2} ms with no table",
            floor_big, floor_empty
        );
    }
    daemon.enforcer_mut().reset()?;
    drop(daemon);
    lab.down()?;
    Ok(())
}

pub(crate) fn report_latency(samples: &[Sample]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (label, filter) in [
        ("policy port changed", Some(false)),
        ("pod label changed", Some(true)),
        ("all changes", None),
    ] {
        let chosen: Vec<&Sample> = samples
            .iter()
            .filter(|s| match filter {
                Some(pod) => matches!(s.change, Change::PodLabel(_)) == pod,
                None => true,
            })
            .collect();
        let total = summary(&chosen.iter().map(|s| ms(s.total)).collect::<Vec<_>>());
        let enforce = summary(&chosen.iter().map(|s| ms(s.enforce)).collect::<Vec<_>>());
        let nft = summary(
            &chosen
                .iter()
                .map(|s| s.batches.iter().map(|b| ms(b.elapsed)).sum::<f64>())
                .collect::<Vec<_>>(),
        );
        let rest = summary(&chosen.iter().map(|s| ms(s.total - s.enforce)).collect::<Vec<_>>());
        let records = summary(&chosen.iter().map(|s| s.records as f64).collect::<Vec<_>>());
        let commands = summary(
            &chosen
                .iter()
                .map(|s| s.batches.iter().map(|b| b.commands).sum::<usize>() as f64)
                .collect::<Vec<_>>(),
        );
        let bytes = summary(
            &chosen
                .iter()
                .map(|s| s.batches.iter().map(|b| b.bytes).sum::<usize>() as f64 / 1e3)
                .collect::<Vec<_>>(),
        );
        let fulls = chosen.iter().filter(|s| s.full).count();
        let no_batch = chosen.iter().filter(|s| s.batches.is_empty()).count();
        let multi = chosen.iter().filter(|s| s.batches.len() > 1).count();
        let failed = chosen.iter().filter(|s| s.batches.iter().any(|b| !b.ok)).count();
        println!(
            "{label} (n={}): total p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            chosen.len(),
            total.p50,
            total.p99,
            total.max
        );
        println!(
            "  enforcer (plugin + nft) p50 {:.2} / p99 {:.2} / max {:.2} ms; nft alone p50 {:.2} / p99 {:.2} / max {:.2} ms; watch + read + resolve p50 {:.2} / p99 {:.2} / max {:.2} ms",
            enforce.p50, enforce.p99, enforce.max, nft.p50, nft.p99, nft.max, rest.p50, rest.p99, rest.max
        );
        println!(
            "  delta records p50 {:.0} / max {:.0}; nft commands p50 {:.0} / max {:.0}; batch JSON p50 {:.1} kB / max {:.1} kB; full programmings {fulls}, rounds without a batch {no_batch}, with several batches {multi}, failed batches {failed}",
            records.p50, records.max, commands.p50, commands.max, bytes.p50, bytes.max
        );
    }
}

/// p50 in ms of a one-command nft batch (`add table inet palisade`: a no-op
/// on an existing table, an empty table otherwise) through the same provider
/// as the plugin's batches (a thread in the namespace, then `nft -j -f -`).
pub(crate) fn nft_floor(recorder: &Recorder, plugin: &str, n: usize) -> Result<f64, Error> {
    let batch =
        json!({"nftables": [{"add": {"table": {"family": "inet", "name": TABLE}}}]}).to_string();
    let mut times = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        recorder.inner.apply(plugin, &batch)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(percentile(&sorted(times), 50.0))
}

/// What the table holds in the kernel: every set counts in the cost of an
/// nft call (libnftables reads every set's definition before a command).
pub(crate) struct NftObjects {
    pub(crate) rules: usize,
    pub(crate) chains: usize,
    pub(crate) sets: usize,
    pub(crate) anonymous: usize,
}

pub(crate) fn count_nft_objects(netns: &Path) -> Result<NftObjects, Error> {
    let netns = netns.to_path_buf();
    let out = palisade_netns::run_in(&netns, || {
        std::process::Command::new("nft").args(["-a", "list", "table", "inet", TABLE]).output()
    })??;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines = || text.lines().map(str::trim_start);
    let header =
        |l: &str| l.starts_with("chain ") || l.starts_with("set ") || l.starts_with("map ");
    // Chain and set headers carry a handle too.
    let rules: Vec<&str> = lines().filter(|l| l.contains("# handle") && !header(l)).collect();
    Ok(NftObjects {
        rules: rules.len(),
        chains: lines().filter(|l| l.starts_with("chain ")).count(),
        sets: lines().filter(|l| l.starts_with("set ") || l.starts_with("map ")).count(),
        // An anonymous set is a `{ ... }` literal inside a rule.
        anonymous: rules.iter().filter(|l| l.contains(" { ")).count(),
    })
}
