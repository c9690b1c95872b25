//! Kubernetes Events about objects that fail validation, so that
//! `kubectl describe networkpolicy NAME` shows why a policy is not enforced.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::Utc;
use kube::api::PostParams;
use kube::{Api, Client};
use palisade_store::ObjectKey;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::health::Health;

/// The reason of the Events Palisade posts.
pub const REASON: &str = "PolicyInvalid";
/// The reporting component.
pub const COMPONENT: &str = "palisade";

/// An object that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub key: ObjectKey,
    pub api_version: String,
    pub uid: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

/// The Event for a rejection (cluster-scoped objects' Events go to
/// `default`, as the API server does).
pub fn event_for(r: &Rejection, node: Option<&str>) -> Event {
    let namespace = r.key.namespace.clone().unwrap_or_else(|| "default".into());
    let now = Time(Utc::now());
    let unique = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{unique:x}", r.key.name)),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(r.api_version.clone()),
            kind: Some(r.key.kind.clone()),
            name: Some(r.key.name.clone()),
            namespace: r.key.namespace.clone(),
            uid: r.uid.clone(),
            field_path: r.field.clone(),
            ..ObjectReference::default()
        },
        reason: Some(REASON.into()),
        // The pipeline's message names the object and the field; the field
        // is also the reference's fieldPath.
        message: Some(r.message.clone()),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: node.map(str::to_string),
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: node.map(|n| format!("{COMPONENT}-{n}")),
        ..Event::default()
    }
}

/// Starts the task that posts Events; send it rejections.
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    client: Client,
    node: Option<String>,
    health: Arc<Health>,
) -> UnboundedSender<Rejection> {
    let (tx, mut rx) = unbounded_channel::<Rejection>();
    runtime.spawn(async move {
        while let Some(rejection) = rx.recv().await {
            let event = event_for(&rejection, node.as_deref());
            let namespace = event.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
            match api.create(&PostParams::default(), &event).await {
                Ok(_) => health.event_posted(),
                Err(e) => tracing::warn!(object = %rejection.key, "cannot post an Event: {e}"),
            }
        }
    });
    tx
}
