//! One kube-rs watcher per kind, on the tokio runtime, feeding a channel.
//!
//! The watcher lists, then watches from the list's resourceVersion; after a
//! dropped connection it watches again from the last resourceVersion seen
//! (bookmarks included), after a `410 Gone` it lists again. Errors are
//! retried with exponential backoff. While the API server is unreachable
//! nothing reaches the pipeline, so the last programmed state stays in force;
//! the change of state is logged once each way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::Value;

use crate::health::Health;
use crate::kinds::WatchedKind;
use crate::strip::strip;

/// What the watchers send to the source.
#[derive(Debug)]
pub enum Message {
    /// An event of the watcher of kind number `kind` (objects already
    /// converted to JSON with their apiVersion and kind, and stripped).
    Event { kind: usize, event: Event<Value> },
    /// The API server answers 404 or 403 for kind number `kind` (an
    /// optional CRD that is not installed, or not readable).
    Absent { kind: usize },
}

/// Retry delays: from `min`, doubling, up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { min: Duration::from_millis(500), max: Duration::from_secs(30) }
    }
}

/// Whether the API server answers, shared by the watchers; logs each change.
pub struct Link {
    reachable: AtomicBool,
    health: Arc<Health>,
}

impl Link {
    pub fn new(health: Arc<Health>) -> Link {
        health.set_reachable(true);
        Link { reachable: AtomicBool::new(true), health }
    }

    fn up(&self) {
        if !self.reachable.swap(true, Ordering::Relaxed) {
            tracing::info!("API server reachable again; resynchronising");
            self.health.set_reachable(true);
        }
    }

    fn down(&self, error: &dyn std::fmt::Display) {
        if self.reachable.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "API server unreachable ({error}); the last programmed state stays in force, retrying with backoff"
            );
            self.health.set_reachable(false);
        }
    }

    pub fn is_up(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }
}

fn to_value(kind: &WatchedKind, object: DynamicObject) -> Option<Value> {
    let mut value = match serde_json::to_value(object) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(kind = %kind.label(), "cannot convert an object: {e}");
            return None;
        }
    };
    let map = value.as_object_mut()?;
    // Items of a list come without apiVersion and kind.
    map.insert("apiVersion".into(), Value::String(kind.api_version()));
    map.insert("kind".into(), Value::String(kind.kind.to_string()));
    strip(kind.group, kind.kind, &mut value);
    Some(value)
}

fn convert(kind: &WatchedKind, event: Event<DynamicObject>) -> Option<Event<Value>> {
    Some(match event {
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
        Event::InitApply(o) => Event::InitApply(to_value(kind, o)?),
        Event::Apply(o) => Event::Apply(to_value(kind, o)?),
        Event::Delete(o) => Event::Delete(to_value(kind, o)?),
    })
}

/// The HTTP status the API server answered with, if it answered.
fn api_status(error: &watcher::Error) -> Option<u16> {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(r))
        | watcher::Error::WatchStartFailed(kube::Error::Api(r))
        | watcher::Error::WatchFailed(kube::Error::Api(r))
        | watcher::Error::WatchError(r) => Some(r.code),
        watcher::Error::NoResourceVersion => Some(200),
        _ => None,
    }
}

/// Watches one kind until the receiver is gone.
async fn watch_kind(
    client: Client,
    index: usize,
    kind: WatchedKind,
    tx: Sender<Message>,
    link: Arc<Link>,
    health: Arc<Health>,
    backoff: Backoff,
) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.api_resource());
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    let mut delay = backoff.min;
    let mut last_error: Option<String> = None;
    while let Some(item) = stream.next().await {
        let message = match item {
            Ok(event) => {
                // `Init` comes before the list request is made, so it does
                // not show that the API server answers.
                if !matches!(event, Event::Init) {
                    delay = backoff.min;
                    last_error = None;
                    link.up();
                }
                if matches!(event, Event::InitDone) {
                    health.count_list(&kind.label());
                }
                match convert(&kind, event) {
                    Some(event) => Message::Event { kind: index, event },
                    None => continue,
                }
            }
            Err(error) => {
                health.count_watch_error(&kind.label());
                let status = api_status(&error);
                match status {
                    Some(410) => {
                        tracing::info!(kind = %kind.label(), "resourceVersion expired (410 Gone); listing again");
                        continue;
                    }
                    // An optional kind that is not served (404: CRD not
                    // installed) or not readable (403: RBAC) does not hold
                    // up the first sync.
                    Some(code @ (404 | 403)) if !kind.required => {
                        link.up();
                        if last_error.is_none() {
                            tracing::info!(kind = %kind.label(), code, "not served or not readable (CRD not installed? RBAC?); counted as empty");
                        }
                        last_error = Some(code.to_string());
                        if tx.send(Message::Absent { kind: index }).is_err() {
                            return;
                        }
                    }
                    Some(_) => {
                        link.up();
                        let text = error.to_string();
                        if last_error.as_deref() != Some(text.as_str()) {
                            tracing::warn!(kind = %kind.label(), "watch failed: {text}");
                        }
                        last_error = Some(text);
                    }
                    // An open stream broke (a load balancer's idle timeout,
                    // a restarting API server): watching again from the
                    // last resourceVersion tells whether it still answers.
                    None if matches!(error, watcher::Error::WatchFailed(_)) => {
                        tracing::debug!(kind = %kind.label(), "watch stream broke: {error}");
                    }
                    None => {
                        link.down(&error);
                        last_error = Some(error.to_string());
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(backoff.max);
                continue;
            }
        };
        if tx.send(message).is_err() {
            return;
        }
    }
}

/// While the link is down, asks the API server for its version after each
/// backoff delay, so that recovery is noticed (and logged) even when no
/// object changes.
async fn probe_link(client: Client, link: Arc<Link>, backoff: Backoff) {
    let mut delay = backoff.min;
    loop {
        tokio::time::sleep(delay).await;
        if link.is_up() {
            delay = backoff.min;
            continue;
        }
        match client.apiserver_version().await {
            Ok(_) => link.up(),
            Err(_) => delay = (delay * 2).min(backoff.max),
        }
    }
}

/// Starts a watcher per kind and the link probe on `runtime`.
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    client: &Client,
    kinds: &[WatchedKind],
    tx: Sender<Message>,
    health: Arc<Health>,
    backoff: Backoff,
) -> Vec<tokio::task::JoinHandle<()>> {
    let link = Arc::new(Link::new(health.clone()));
    let mut tasks: Vec<_> = kinds
        .iter()
        .enumerate()
        .map(|(index, kind)| {
            runtime.spawn(watch_kind(
                client.clone(),
                index,
                kind.clone(),
                tx.clone(),
                link.clone(),
                health.clone(),
                backoff,
            ))
        })
        .collect();
    tasks.push(runtime.spawn(probe_link(client.clone(), link, backoff)));
    tasks
}
