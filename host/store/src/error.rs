//! Errors of the store: an object that cannot be keyed or stored.

/// Why an object (or a delete reference) was refused by the store.
///
/// `object` describes the object as far as it is known, e.g.
/// `NetworkPolicy.networking.k8s.io default/deny-all`, or
/// `NetworkPolicy default/<unnamed>` when the name itself is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The document is not a JSON/YAML object (a map) at all.
    #[error("document is not an object: found {found}")]
    NotAnObject {
        /// The JSON type found instead (`array`, `string`, ...).
        found: &'static str,
    },
    /// A required field is absent, null or empty.
    #[error("{object}: `{field}` is required")]
    MissingField {
        /// The object, as far as it is known.
        object: String,
        /// The field at fault, e.g. `metadata.name`.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("{object}: `{field}` must be {expected}, found {found}")]
    WrongType {
        /// The object, as far as it is known.
        object: String,
        /// The field at fault, e.g. `metadata.namespace`.
        field: &'static str,
        /// The expected JSON type.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// `apiVersion` is not `version` or `group/version`.
    #[error("{object}: `apiVersion` `{value}` is not of the form `version` or `group/version`")]
    BadApiVersion {
        /// The object, as far as it is known.
        object: String,
        /// The offending value.
        value: String,
    },
}

/// The JSON type name of a value, for error messages.
pub(crate) fn type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "list",
        serde_json::Value::Object(_) => "map",
    }
}
