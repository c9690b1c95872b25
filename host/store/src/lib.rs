//! Palisade's object store.
//!
//! Kubernetes objects are kept as plain [`serde_json::Value`]s, keyed by
//! [`ObjectKey`] (API group, kind, namespace, name). The store applies the
//! defaulting the API server would apply ([`defaults`]), so that objects read
//! from files look like objects read from a cluster. The [`source`] module
//! reads manifests (YAML multi-document, JSON, `List` kinds) from files and
//! directories, remembering where each object came from.
//!
//! ```
//! use palisade_store::{ObjectKey, Store};
//! use serde_json::json;
//!
//! let mut store = Store::new();
//! let key = store
//!     .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}))
//!     .map_err(|e| e.to_string())?;
//! assert_eq!(key, ObjectKey::new("", "Namespace", None, "web"));
//! let ns = store.get(&key).ok_or("stored")?;
//! assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "web");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod defaults;
mod error;
mod key;
pub mod source;
mod store;

pub use error::StoreError;
pub use key::{describe, is_cluster_scoped, split_api_version, ObjectKey};
pub use source::{Document, Located, Origin, SourceError};
pub use store::{prepare, Store};
