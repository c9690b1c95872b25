//! Object identity: API group, kind, namespace and name.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{type_name, StoreError};

/// The identity of a stored object. Objects are created, replaced and
/// deleted by this key: an `extensions/v1beta1` and a `networking.k8s.io/v1`
/// NetworkPolicy of the same name are two different objects, while two
/// versions of the same group are the same object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    /// The API group of `apiVersion`: `""` for the core group (`v1`),
    /// `networking.k8s.io`, `extensions`, `experimental.kubernetes.io`, ...
    pub group: String,
    /// The object's `kind`, e.g. `NetworkPolicy`.
    pub kind: String,
    /// The namespace; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// A key from its parts.
    pub fn new(group: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// The key of an object: `apiVersion`, `kind`, `metadata.name` and
    /// `metadata.namespace` (absent or empty means `default` for namespaced
    /// kinds; ignored for cluster-scoped kinds).
    pub fn of_object(object: &Value) -> Result<ObjectKey, StoreError> {
        let map = object.as_object().ok_or(StoreError::NotAnObject { found: type_name(object) })?;
        let empty = Map::new();
        let metadata = match map.get("metadata") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(other) => {
                let object = describe(object);
                return Err(StoreError::WrongType {
                    object,
                    field: "metadata",
                    expected: "a map",
                    found: type_name(other),
                });
            }
        };
        let names = Fields { name: "metadata.name", namespace: "metadata.namespace" };
        Self::from_parts(object, map, metadata, names)
    }

    /// The key named by a delete reference of the scenario format:
    /// `{apiVersion, kind, namespace, name}`. A reference written like an
    /// object (`metadata: {namespace, name}`) is accepted too. An absent
    /// namespace means `default` for namespaced kinds.
    pub fn of_delete_ref(reference: &Value) -> Result<ObjectKey, StoreError> {
        let map =
            reference.as_object().ok_or(StoreError::NotAnObject { found: type_name(reference) })?;
        match map.get("metadata") {
            Some(Value::Object(_)) => Self::of_object(reference),
            _ => Self::from_parts(
                reference,
                map,
                map,
                Fields { name: "name", namespace: "namespace" },
            ),
        }
    }

    fn from_parts(
        whole: &Value,
        map: &Map<String, Value>,
        meta: &Map<String, Value>,
        fields: Fields,
    ) -> Result<ObjectKey, StoreError> {
        let api_version = required_str(whole, map, "apiVersion")?;
        let kind = required_str(whole, map, "kind")?;
        let name = required_str(whole, meta, fields.name)?;
        let (group, _version) = split_api_version(api_version).ok_or_else(|| {
            StoreError::BadApiVersion { object: describe(whole), value: api_version.to_string() }
        })?;
        let namespace = match meta.get(last_segment(fields.namespace)) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(StoreError::WrongType {
                    object: describe(whole),
                    field: fields.namespace,
                    expected: "a string",
                    found: type_name(other),
                })
            }
        };
        let namespace = if is_cluster_scoped(group, kind) {
            None
        } else {
            Some(namespace.unwrap_or_else(|| "default".to_string()))
        };
        Ok(ObjectKey {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace,
            name: name.to_string(),
        })
    }

    /// `namespace/name`, or `name` for cluster-scoped objects.
    pub fn qualified_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for ObjectKey {
    /// `Kind.group namespace/name`, e.g. `NetworkPolicy.networking.k8s.io
    /// default/deny-all`, `Namespace web`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        write!(f, " {}", self.qualified_name())
    }
}

/// The field names of a key's parts, as they are reported in errors.
struct Fields {
    name: &'static str,
    namespace: &'static str,
}

/// `metadata.name` → `name`.
fn last_segment(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

fn required_str<'a>(
    whole: &Value,
    map: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, StoreError> {
    match map.get(last_segment(field)) {
        None | Some(Value::Null) => {
            Err(StoreError::MissingField { object: describe(whole), field })
        }
        Some(Value::String(s)) if s.is_empty() => {
            Err(StoreError::MissingField { object: describe(whole), field })
        }
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(StoreError::WrongType {
            object: describe(whole),
            field,
            expected: "a string",
            found: type_name(other),
        }),
    }
}

/// Splits an `apiVersion` into (group, version): `v1` → (`""`, `v1`),
/// `networking.k8s.io/v1` → (`networking.k8s.io`, `v1`). `None` if the
/// value has more than one `/` or an empty part.
pub fn split_api_version(api_version: &str) -> Option<(&str, &str)> {
    match api_version.split_once('/') {
        None if !api_version.is_empty() => Some(("", api_version)),
        None => None,
        Some((group, version))
            if !group.is_empty() && !version.is_empty() && !version.contains('/') =>
        {
            Some((group, version))
        }
        Some(_) => None,
    }
}

/// True for the kinds Palisade knows to be cluster-scoped (no namespace):
/// Namespace, Node, the cluster-wide policy kinds of the supported dialects,
/// and a few common core kinds. Every other kind is namespaced.
pub fn is_cluster_scoped(group: &str, kind: &str) -> bool {
    match group {
        "" => matches!(kind, "Namespace" | "Node" | "PersistentVolume"),
        "policy.networking.k8s.io" => {
            matches!(kind, "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy")
        }
        "projectcalico.org" | "crd.projectcalico.org" => {
            matches!(kind, "GlobalNetworkPolicy" | "GlobalNetworkSet" | "HostEndpoint" | "Tier")
        }
        "rbac.authorization.k8s.io" => matches!(kind, "ClusterRole" | "ClusterRoleBinding"),
        "apiextensions.k8s.io" => kind == "CustomResourceDefinition",
        _ => false,
    }
}

/// A best-effort description of an object for error messages, usable even
/// when the object cannot be keyed: `Kind namespace/name`, with `<unnamed>`
/// and `<unknown kind>` standing in for what is missing.
pub fn describe(object: &Value) -> String {
    fn text(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    let kind = text(object.get("kind"));
    let meta = object.get("metadata");
    let name = text(meta.and_then(|m| m.get("name"))).or_else(|| text(object.get("name")));
    let ns = text(meta.and_then(|m| m.get("namespace"))).or_else(|| text(object.get("namespace")));
    let mut out = kind.unwrap_or("<unknown kind>").to_string();
    out.push(' ');
    if let Some(ns) = ns {
        out.push_str(ns);
        out.push('/');
    }
    out.push_str(name.unwrap_or("<unnamed>"));
    out
}
