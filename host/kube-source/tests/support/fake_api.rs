//! A fake Kubernetes API server for tests: plain HTTP/1.1 on 127.0.0.1,
//! speaking the real list and watch wire format.
//!
//! * `GET /api/v1/pods`, `GET /apis/GROUP/VERSION/PLURAL`: a JSON list
//!   (`kind: PodList`, `metadata.resourceVersion`, items without apiVersion
//!   and kind, as the API server sends them);
//! * the same with `watch=true&resourceVersion=RV`: a chunked stream of
//!   `{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK", "object": ...}` lines,
//!   every change after RV then every new one; an RV older than the last
//!   compaction gets an `ERROR` event with a `410 Gone` Status (what the API
//!   server sends for an expired resourceVersion);
//! * `GET /version`; `POST /api/v1/namespaces/NS/events` (recorded);
//! * a resource not served answers `404` with a Status.
//!
//! Tests mutate the state ([`FakeApi::apply`], [`FakeApi::delete`]), drop
//! every open watch ([`FakeApi::drop_watches`]), compact the history
//! ([`FakeApi::compact`]) and stop and restart the server on the same port
//! ([`FakeApi::stop`], [`FakeApi::start_again`]).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

/// One resource the server serves.
#[derive(Debug, Clone)]
struct Resource {
    api_version: String,
    kind: String,
    path: String,
}

#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    path: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// path → (namespace, name) → object
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    history: Vec<Change>,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted_below: u64,
    events: Vec<Value>,
    /// PATCHes of pods' status: (namespace, name, body).
    status_patches: Vec<(String, String, Value)>,
    requests: Vec<String>,
    /// Resource paths answered with 403 Forbidden.
    forbidden: Vec<String>,
}

pub struct FakeApi {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    resources: Arc<Vec<Resource>>,
    state: Arc<Mutex<State>>,
    /// Bumped on every change; watch streams wait on it.
    changed: Arc<watch::Sender<u64>>,
    /// Bumped to drop every open connection.
    drops: watch::Sender<u64>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// The path of the resources of `api_version`, `plural`.
fn base_path(api_version: &str, plural: &str) -> String {
    if api_version.contains('/') {
        format!("/apis/{api_version}/{plural}")
    } else {
        format!("/api/{api_version}/{plural}")
    }
}

fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    match lower.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{lower}s"),
    }
}

impl FakeApi {
    /// Serves Namespaces, Nodes, Pods, ServiceAccounts,
    /// networking.k8s.io/v1 NetworkPolicies, the experimental.kubernetes.io/v1
    /// CRD, Calico's CRDs, and Events; not
    /// extensions/v1beta1 (a current cluster).
    pub fn start() -> FakeApi {
        let served = [
            ("v1", "Namespace"),
            ("v1", "Node"),
            ("v1", "Pod"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("experimental.kubernetes.io/v1", "NetworkPolicy"),
            ("v1", "Event"),
            ("v1", "ServiceAccount"),
            ("crd.projectcalico.org/v1", "Tier"),
            ("crd.projectcalico.org/v1", "NetworkPolicy"),
            ("crd.projectcalico.org/v1", "GlobalNetworkPolicy"),
            ("crd.projectcalico.org/v1", "NetworkSet"),
            ("crd.projectcalico.org/v1", "GlobalNetworkSet"),
            ("crd.projectcalico.org/v1", "StagedNetworkPolicy"),
            ("crd.projectcalico.org/v1", "StagedGlobalNetworkPolicy"),
            ("crd.projectcalico.org/v1", "StagedKubernetesNetworkPolicy"),
        ];
        let resources = served
            .iter()
            .map(|(api_version, kind)| Resource {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                path: base_path(api_version, &plural(kind)),
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut api = FakeApi {
            runtime,
            addr: "127.0.0.1:0".parse().unwrap(),
            resources: Arc::new(resources),
            state: Arc::new(Mutex::new(State { rv: 100, ..State::default() })),
            changed: Arc::new(watch::channel(0).0),
            drops: watch::channel(0).0,
            server: None,
        };
        api.listen();
        api
    }

    fn listen(&mut self) {
        let addr = self.addr;
        let socket = self.runtime.block_on(async {
            let socket = TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            socket.bind(addr).unwrap();
            socket.listen(64).unwrap()
        });
        self.addr = socket.local_addr().unwrap();
        let server = Server {
            resources: self.resources.clone(),
            state: self.state.clone(),
            notify: self.changed.clone(),
            changed: self.changed.subscribe(),
            drops: self.drops.subscribe(),
        };
        self.server = Some(self.runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = socket.accept().await else { continue };
                let server = server.clone();
                tokio::spawn(async move { server.connection(stream).await });
            }
        }));
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn resource_of(&self, object: &Value) -> Resource {
        let api_version = object["apiVersion"].as_str().unwrap();
        let kind = object["kind"].as_str().unwrap();
        self.resources
            .iter()
            .find(|r| r.api_version == api_version && r.kind == kind)
            .unwrap_or_else(|| panic!("not served: {api_version} {kind}"))
            .clone()
    }

    fn record(&self, object: Value, deleted: bool) {
        let resource = self.resource_of(&object);
        let ns = object["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        {
            let mut s = self.state.lock().unwrap();
            s.rv += 1;
            let rv = s.rv;
            let mut object = object;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            if object["metadata"].get("uid").is_none() {
                object["metadata"]["uid"] = json!(format!("uid-{ns}-{name}"));
            }
            let objects = s.objects.entry(resource.path.clone()).or_default();
            let kind = if deleted {
                let Some(old) = objects.remove(&(ns, name)) else { return };
                object = old;
                object["metadata"]["resourceVersion"] = json!(rv.to_string());
                "DELETED"
            } else if objects.insert((ns, name), object.clone()).is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            };
            s.history.push(Change { rv, path: resource.path, kind, object });
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Creates or replaces an object (its resourceVersion is set).
    pub fn apply(&self, object: Value) {
        self.record(object, false);
    }

    /// Deletes an object named by apiVersion, kind, namespace and name.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) {
        let mut reference = json!({"apiVersion": api_version, "kind": kind,
                                   "metadata": {"name": name}});
        if let Some(ns) = namespace {
            reference["metadata"]["namespace"] = json!(ns);
        }
        self.record(reference, true);
    }

    /// Closes every open connection (watch streams end without their
    /// terminating chunk, as when a load balancer drops them).
    pub fn drop_watches(&self) {
        self.drops.send_modify(|v| *v += 1);
    }

    /// Forgets the history: every watch from an older resourceVersion now
    /// gets 410 Gone; open watches are dropped.
    pub fn compact(&self) {
        {
            let mut s = self.state.lock().unwrap();
            s.compacted_below = s.rv;
            s.history.clear();
        }
        self.drop_watches();
    }

    /// The API server goes away: the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = self.runtime.block_on(server);
        }
        self.drop_watches();
    }

    /// The API server comes back on the same port, with the same state.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none());
        self.listen();
    }

    /// Answers 403 Forbidden (as without RBAC) for the resources of
    /// `api_version`/`kind`, or serves them again.
    pub fn forbid(&self, api_version: &str, kind: &str, forbidden: bool) {
        let path = base_path(api_version, &plural(kind));
        let mut s = self.state.lock().unwrap();
        s.forbidden.retain(|p| *p != path);
        if forbidden {
            s.forbidden.push(path);
        }
    }

    /// The PATCHes of pods' status so far: (namespace, name, body).
    pub fn status_patches(&self) -> Vec<(String, String, Value)> {
        self.state.lock().unwrap().status_patches.clone()
    }

    /// The stored object of a pod.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        let s = self.state.lock().unwrap();
        s.objects.get("/api/v1/pods")?.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    /// Events POSTed so far.
    pub fn events(&self) -> Vec<Value> {
        self.state.lock().unwrap().events.clone()
    }

    /// Request lines received so far (`GET /api/v1/pods?...`).
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Clone)]
struct Server {
    resources: Arc<Vec<Resource>>,
    state: Arc<Mutex<State>>,
    notify: Arc<watch::Sender<u64>>,
    changed: watch::Receiver<u64>,
    drops: watch::Receiver<u64>,
}

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(Request { method, path: path.to_string(), query, body })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn respond(stream: &mut TcpStream, code: u16, text: &str, body: &Value) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {code} {text}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn chunk(stream: &mut TcpStream, line: &Value) -> std::io::Result<()> {
    let data = format!("{line}\n");
    stream.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes()).await
}

/// A list item or watch object as the API server sends it in a list: no
/// apiVersion, no kind.
fn list_item(object: &Value) -> Value {
    let mut item = object.clone();
    if let Some(map) = item.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    item
}

impl Server {
    async fn connection(self, mut stream: TcpStream) {
        let Some(request) = read_request(&mut stream).await else { return };
        let line = format!(
            "{} {}?{}",
            request.method,
            request.path,
            request.query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
        );
        self.state.lock().unwrap().requests.push(line);
        if request.path == "/version" {
            let info = json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake",
                "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"});
            return respond(&mut stream, 200, "OK", &info).await;
        }
        if request.method == "POST" && request.path.ends_with("/events") {
            let event: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            self.state.lock().unwrap().events.push(event.clone());
            return respond(&mut stream, 201, "Created", &event).await;
        }
        if request.method == "PATCH" {
            return self.patch_pod_status(&mut stream, &request).await;
        }
        let Some(resource) = self.resources.iter().find(|r| r.path == request.path).cloned() else {
            let body = status(404, "NotFound", "the server could not find the requested resource");
            return respond(&mut stream, 404, "Not Found", &body).await;
        };
        if self.state.lock().unwrap().forbidden.contains(&resource.path) {
            let body = status(403, "Forbidden", "forbidden: no RBAC rule allows this");
            return respond(&mut stream, 403, "Forbidden", &body).await;
        }
        if request.method != "GET" {
            return respond(&mut stream, 405, "Method Not Allowed", &json!({})).await;
        }
        let watching = matches!(request.query.get("watch").map(String::as_str), Some("true" | "1"));
        if !watching {
            let (rv, items) = {
                let s = self.state.lock().unwrap();
                let items: Vec<Value> = s
                    .objects
                    .get(&resource.path)
                    .map(|m| m.values().map(list_item).collect())
                    .unwrap_or_default();
                (s.rv, items)
            };
            let list = json!({"kind": format!("{}List", resource.kind),
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": rv.to_string()}, "items": items});
            return respond(&mut stream, 200, "OK", &list).await;
        }
        let from: u64 =
            request.query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        let bookmarks = request.query.get("allowWatchBookmarks").is_some_and(|v| v == "true");
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let _ = self.watch(&mut stream, &resource, from, bookmarks).await;
    }

    /// `PATCH /api/v1/namespaces/NS/pods/NAME/status` with a strategic
    /// merge patch of `status.conditions` (merged by `type`, as the API
    /// server does): the pod changes, watchers get a MODIFIED event.
    async fn patch_pod_status(&self, stream: &mut TcpStream, request: &Request) {
        let parts: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        let ["api", "v1", "namespaces", ns, "pods", name, "status"] = parts[..] else {
            let body = status(405, "MethodNotAllowed", "only pods' status is patched here");
            return respond(stream, 405, "Method Not Allowed", &body).await;
        };
        let patch: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let updated: Option<Value> = (|| {
            let mut s = self.state.lock().unwrap();
            s.status_patches.push((ns.to_string(), name.to_string(), patch.clone()));
            s.rv += 1;
            let rv = s.rv;
            let key = (ns.to_string(), name.to_string());
            let object = s.objects.get_mut("/api/v1/pods").and_then(|m| m.get_mut(&key))?;
            let mut merged = object["status"]["conditions"].as_array().cloned().unwrap_or_default();
            for c in patch["status"]["conditions"].as_array().cloned().unwrap_or_default() {
                match merged.iter_mut().find(|m| m["type"] == c["type"]) {
                    Some(m) => *m = c,
                    None => merged.push(c),
                }
            }
            object["status"]["conditions"] = Value::Array(merged);
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            let object = object.clone();
            s.history.push(Change {
                rv,
                path: "/api/v1/pods".into(),
                kind: "MODIFIED",
                object: object.clone(),
            });
            Some(object)
        })();
        let Some(updated) = updated else {
            let body = status(404, "NotFound", &format!("pods \"{name}\" not found"));
            return respond(stream, 404, "Not Found", &body).await;
        };
        self.notify.send_modify(|v| *v += 1);
        respond(stream, 200, "OK", &updated).await
    }

    async fn watch(
        &self,
        stream: &mut TcpStream,
        resource: &Resource,
        mut sent: u64,
        bookmarks: bool,
    ) -> std::io::Result<()> {
        let mut changed = self.changed.clone();
        let mut drops = self.drops.clone();
        drops.borrow_and_update();
        loop {
            changed.borrow_and_update();
            let (changes, rv, expired) = {
                let s = self.state.lock().unwrap();
                // History this stream has not sent was compacted away (also
                // while it was open): the client must list again.
                let expired = (sent < s.compacted_below)
                    .then(|| format!("too old resource version: {sent} ({})", s.rv));
                let changes: Vec<Change> = s
                    .history
                    .iter()
                    .filter(|c| c.rv > sent && c.path == resource.path)
                    .cloned()
                    .collect();
                (changes, s.rv, expired)
            };
            if let Some(message) = expired {
                let gone = status(410, "Expired", &message);
                chunk(stream, &json!({"type": "ERROR", "object": gone})).await?;
                return stream.write_all(b"0\r\n\r\n").await;
            }
            for c in changes {
                chunk(stream, &json!({"type": c.kind, "object": c.object})).await?;
                sent = c.rv;
            }
            if bookmarks && rv > sent {
                let mark = json!({"type": "BOOKMARK", "object": {"kind": resource.kind,
                    "apiVersion": resource.api_version,
                    "metadata": {"resourceVersion": rv.to_string()}}});
                chunk(stream, &mark).await?;
                sent = rv;
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = drops.changed() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
