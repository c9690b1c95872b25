//! Readiness, liveness and Prometheus metrics, served over plain HTTP
//! (`/healthz`, `/readyz`, `/metrics`) by a small HTTP/1.1 server on the
//! tokio runtime.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the programming latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct ByKind {
    objects: BTreeMap<String, u64>,
    lists: BTreeMap<String, u64>,
    watch_errors: BTreeMap<String, u64>,
}

/// The state `/readyz` and `/metrics` report.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    reachable: AtomicBool,
    generation: AtomicU64,
    plugin_failures: AtomicU64,
    plugin_restarts: AtomicU64,
    rejected: AtomicU64,
    events_posted: AtomicU64,
    outages: AtomicU64,
    batches: AtomicU64,
    latency: Mutex<Histogram>,
    kinds: Mutex<ByKind>,
    gates_set: AtomicU64,
    /// The endpoints of the rule set in force: `ns/name` → the generation
    /// that first programmed it.
    endpoints: Mutex<BTreeMap<String, u64>>,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Ready: the first complete sync has been programmed.
    pub fn set_ready(&self) {
        if !self.ready.swap(true, Ordering::Relaxed) {
            tracing::info!("ready: the first full sync is programmed");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_reachable(&self, up: bool) {
        let was = self.reachable.swap(up, Ordering::Relaxed);
        if was && !up {
            self.outages.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    pub fn programmed(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut h = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        for (bound, count) in LATENCY_BUCKETS.iter().zip(h.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn batch(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn plugin_failed(&self) {
        self.plugin_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_plugin_restarts(&self, restarts: u64) {
        self.plugin_restarts.store(restarts, Ordering::Relaxed);
    }

    pub fn rejected(&self, n: usize) {
        self.rejected.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn gate_set(&self) {
        self.gates_set.fetch_add(1, Ordering::Relaxed);
    }

    /// The endpoints of the rule set of `generation`, just programmed.
    pub fn set_endpoints<'a>(&self, generation: u64, names: impl IntoIterator<Item = &'a str>) {
        let mut e = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = BTreeMap::new();
        for n in names {
            next.insert(n.to_string(), e.get(n).copied().unwrap_or(generation));
        }
        *e = next;
    }

    /// The generation that programmed pod `ns/name`, if it is an endpoint
    /// in force.
    pub fn pod_programmed(&self, pod: &str) -> Option<u64> {
        self.endpoints.lock().unwrap_or_else(PoisonError::into_inner).get(pod).copied()
    }

    /// `/status`: readiness, the generation in force, and every endpoint.
    pub fn status_json(&self) -> String {
        let e = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        let pods: Vec<serde_json::Value> = e
            .iter()
            .map(|(pod, g)| serde_json::json!({"pod": pod, "programmed": true, "since_generation": g}))
            .collect();
        serde_json::json!({
            "ready": self.is_ready(),
            "api_reachable": self.reachable.load(Ordering::Relaxed),
            "generation": self.generation.load(Ordering::Relaxed),
            "endpoints": pods,
        })
        .to_string()
    }

    pub fn event_posted(&self) {
        self.events_posted.fetch_add(1, Ordering::Relaxed);
    }

    fn kinds(&self) -> std::sync::MutexGuard<'_, ByKind> {
        self.kinds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_objects(&self, counts: &[(String, usize)]) {
        let mut k = self.kinds();
        for (kind, n) in counts {
            k.objects.insert(kind.clone(), *n as u64);
        }
    }

    pub fn count_list(&self, kind: &str) {
        *self.kinds().lists.entry(kind.to_string()).or_default() += 1;
    }

    pub fn count_watch_error(&self, kind: &str) {
        *self.kinds().watch_errors.entry(kind.to_string()).or_default() += 1;
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let scalars: [(&str, &str, &str, u64); 10] = [
            (
                "palisade_ready",
                "gauge",
                "1 once the first full sync is programmed.",
                u64::from(self.is_ready()),
            ),
            (
                "palisade_api_reachable",
                "gauge",
                "1 while the API server answers.",
                u64::from(self.reachable.load(Ordering::Relaxed)),
            ),
            (
                "palisade_api_outages_total",
                "counter",
                "Times the API server became unreachable (each logged once).",
                load(&self.outages),
            ),
            (
                "palisade_ruleset_generation",
                "gauge",
                "Generation of the rule set last programmed.",
                load(&self.generation),
            ),
            (
                "palisade_plugin_failures_total",
                "counter",
                "Programming calls the backend plugin failed (the last state stayed in force).",
                load(&self.plugin_failures),
            ),
            (
                "palisade_plugin_restarts_total",
                "counter",
                "Fresh plugin instances made after a failure.",
                load(&self.plugin_restarts),
            ),
            (
                "palisade_objects_rejected_total",
                "counter",
                "Objects that failed validation (each also gets a Kubernetes Event).",
                load(&self.rejected),
            ),
            (
                "palisade_events_posted_total",
                "counter",
                "Kubernetes Events posted about invalid objects.",
                load(&self.events_posted),
            ),
            (
                "palisade_readiness_gates_set_total",
                "counter",
                "Pods whose palisade.io/policy-programmed condition was set to True.",
                load(&self.gates_set),
            ),
            (
                "palisade_batches_total",
                "counter",
                "Debounced batches of changes applied.",
                load(&self.batches),
            ),
        ];
        for (name, kind, help, value) in scalars {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        {
            let k = self.kinds();
            let mut labelled = |name: &str, help: &str, kind: &str, map: &BTreeMap<String, u64>| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (label, v) in map {
                    let _ = writeln!(out, "{name}{{kind=\"{label}\"}} {v}");
                }
            };
            labelled("palisade_objects_watched", "Objects known, by kind.", "gauge", &k.objects);
            labelled(
                "palisade_lists_total",
                "Complete lists (at start, and again after 410 Gone), by kind.",
                "counter",
                &k.lists,
            );
            labelled(
                "palisade_watch_errors_total",
                "Failed list or watch requests, by kind.",
                "counter",
                &k.watch_errors,
            );
        }
        let h = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let name = "palisade_programming_seconds";
        let _ = writeln!(out, "# HELP {name} Time from a settled batch of changes to the plugin's answer.\n# TYPE {name} histogram");
        for (bound, count) in LATENCY_BUCKETS.iter().zip(h.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
        out
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The value of `name` in a query string (`%2F` and `%2f` decoded).
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.replace("%2F", "/").replace("%2f", "/"))
    })
}

fn answer(health: &Health, request_line: &str) -> String {
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/readyz" {
        if let Some(pod) = query_value(query, "pod") {
            return match health.pod_programmed(&pod) {
                Some(g) => response(
                    "200 OK",
                    "text/plain",
                    &format!("{pod}: policy programmed (generation {g})\n"),
                ),
                None => response(
                    "503 Service Unavailable",
                    "text/plain",
                    &format!("{pod}: not an endpoint of the programmed rule set (yet)\n"),
                ),
            };
        }
    }
    match path {
        "/status" => response("200 OK", "application/json", &health.status_json()),
        "/healthz" | "/livez" => response("200 OK", "text/plain", "ok\n"),
        "/readyz" if health.is_ready() => response("200 OK", "text/plain", "ready\n"),
        "/readyz" => {
            response("503 Service Unavailable", "text/plain", "first sync not programmed yet\n")
        }
        "/metrics" => response("200 OK", "text/plain; version=0.0.4", &health.render()),
        _ => response(
            "404 Not Found",
            "text/plain",
            "try /healthz, /readyz, /readyz?pod=NS/NAME, /status or /metrics\n",
        ),
    }
}

/// Binds `addr` and serves the health endpoints on `runtime` until the
/// runtime stops. Returns the bound address (useful with port 0).
pub fn serve(
    runtime: &tokio::runtime::Handle,
    addr: SocketAddr,
    health: Arc<Health>,
) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    runtime.spawn(async move {
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("health endpoint: {e}");
                return;
            }
        };
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let health = health.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                // Read until the end of the request head (no body expected).
                while len < buf.len() {
                    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf[len..]))
                        .await
                    {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..len]);
                let line = head.lines().next().unwrap_or_default();
                let _ = stream.write_all(answer(&health, line).as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_and_metrics_text() {
        let h = Health::default();
        assert!(answer(&h, "GET /readyz HTTP/1.1").starts_with("HTTP/1.1 503"));
        h.set_ready();
        assert!(answer(&h, "GET /readyz HTTP/1.1").starts_with("HTTP/1.1 200"));
        h.programmed(Duration::from_millis(30));
        h.programmed(Duration::from_secs(20));
        h.set_objects(&[("Pod".into(), 3)]);
        let text = h.render();
        assert!(text.contains("palisade_programming_seconds_bucket{le=\"0.025\"} 0\n"), "{text}");
        assert!(text.contains("palisade_programming_seconds_bucket{le=\"0.05\"} 1\n"), "{text}");
        assert!(text.contains("palisade_programming_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("palisade_objects_watched{kind=\"Pod\"} 3\n"), "{text}");
        assert!(text.contains("palisade_ready 1\n"), "{text}");
        assert!(answer(&h, "GET /nope HTTP/1.1").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn per_pod_readiness_and_status() {
        let h = Health::default();
        h.set_endpoints(3, ["a/web", "a/db"]);
        h.set_generation(3);
        let web = answer(&h, "GET /readyz?pod=a/web HTTP/1.1");
        assert!(web.starts_with("HTTP/1.1 200") && web.contains("generation 3"), "{web}");
        assert!(answer(&h, "GET /readyz?pod=a%2Fdb HTTP/1.1").starts_with("HTTP/1.1 200"));
        assert!(answer(&h, "GET /readyz?pod=a/new HTTP/1.1").starts_with("HTTP/1.1 503"));
        // A later generation keeps the first one of pods already in force.
        h.set_endpoints(4, ["a/web", "a/new"]);
        assert!(answer(&h, "GET /readyz?pod=a/web HTTP/1.1").contains("generation 3"));
        assert!(answer(&h, "GET /readyz?pod=a/new HTTP/1.1").contains("generation 4"));
        assert!(answer(&h, "GET /readyz?pod=a/db HTTP/1.1").starts_with("HTTP/1.1 503"));
        let status = answer(&h, "GET /status HTTP/1.1");
        let body: serde_json::Value =
            serde_json::from_str(status.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["endpoints"][0]["pod"], "a/new");
        assert_eq!(body["endpoints"][1]["since_generation"], 3);
    }
}
