//! The Kubernetes API source of `palisade run --source kube`.
//!
//! A kube-rs watcher per kind (Namespaces, Nodes, Pods, `networking.k8s.io/v1`
//! NetworkPolicies, and the optional dialects: the 2016
//! `experimental.kubernetes.io/v1` NetworkPolicy CRD and, on clusters that
//! still serve it, `extensions/v1beta1`) lists and watches the API server
//! ([`watchers`]); objects are converted to the JSON the manifest source
//! reads and stripped of the fields no dialect reads ([`strip`]); the
//! [`reflection`] keeps what each watcher has seen, turns relists (410 Gone)
//! into deletions of what disappeared, and collapses bursts per object;
//! [`source`] debounces the changes into batches; [`daemon`] applies each
//! batch to the same pipeline as the manifest source and programs the change
//! through the plugin. [`health`] serves `/healthz`, `/readyz` and
//! `/metrics`; [`events`] posts a Kubernetes Event on each object that fails
//! validation.

pub mod daemon;
pub mod events;
pub mod health;
pub mod kinds;
pub mod readiness;
pub mod reflection;
pub mod source;
pub mod strip;
pub mod watchers;

pub use daemon::{KubeConfig, KubeDaemon, KubeRound, Programmer};
pub use health::Health;
pub use kinds::WatchedKind;
pub use reflection::{Batch, Reflection};
pub use source::{KubeSource, SourceClosed, SourceConfig};
pub use watchers::Backoff;

/// The client could not be configured.
#[derive(Debug, thiserror::Error)]
#[error("cannot configure the Kubernetes client (in-cluster service account, or KUBECONFIG): {0}")]
pub struct ConnectError(#[from] kube::Error);

/// A client configured as kubectl would be: in a pod, from the service
/// account; elsewhere from `KUBECONFIG` or `~/.kube/config`.
pub fn connect(runtime: &tokio::runtime::Handle) -> Result<kube::Client, ConnectError> {
    Ok(runtime.block_on(kube::Client::try_default())?)
}

#[cfg(test)]
mod tests {
    /// A real cluster is reached over https: the client's TLS stack (rustls
    /// with ring) must build. No connection is made.
    #[test]
    fn an_https_client_builds_its_tls_stack() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = runtime.enter();
        let mut config = kube::Config::new("https://10.96.0.1:443".parse().unwrap());
        config.accept_invalid_certs = false;
        let client = kube::Client::try_from(config);
        assert!(client.is_ok(), "{:?}", client.err());
    }
}
