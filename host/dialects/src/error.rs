//! Errors and warnings of the dialect compilers.

use std::fmt;

use palisade_store::{ObjectKey, StoreError};

/// Why an object was rejected. An object that fails to compile changes
/// nothing: no event is emitted and a previous version stays in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialectError {
    /// No compiler reads this apiVersion and kind. Callers report it per
    /// object and carry on.
    #[error("{object}: unsupported kind `{kind}` of apiVersion `{api_version}`")]
    UnsupportedKind {
        /// The object (boxed to keep results small).
        object: Box<ObjectKey>,
        /// Its `apiVersion`.
        api_version: String,
        /// Its `kind`.
        kind: String,
    },
    /// A field of the object is invalid.
    #[error("{object}: `{field}`: {problem}")]
    Invalid {
        /// The object (boxed to keep results small).
        object: Box<ObjectKey>,
        /// The path of the field at fault, e.g.
        /// `spec.ingress[0].from[1].ipBlock.except[0]`.
        field: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// The object has no usable identity (apiVersion, kind, name).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DialectError {
    /// True for [`DialectError::UnsupportedKind`]: the object is not wrong,
    /// just not read by Palisade (callers may report it as a warning).
    pub fn is_unsupported_kind(&self) -> bool {
        matches!(self, DialectError::UnsupportedKind { .. })
    }

    /// The object concerned, when it could be keyed.
    pub fn object(&self) -> Option<&ObjectKey> {
        match self {
            DialectError::UnsupportedKind { object, .. } | DialectError::Invalid { object, .. } => {
                Some(object.as_ref())
            }
            DialectError::Store(_) => None,
        }
    }

    /// The path of the field at fault, for [`DialectError::Invalid`].
    pub fn field(&self) -> Option<&str> {
        match self {
            DialectError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The field has the wrong JSON type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// The expected type.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// A required field is absent.
    #[error("is required")]
    Missing,
    /// Not a CIDR (`address/length`).
    #[error("`{value}` is not a valid CIDR: {reason}")]
    BadCidr {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// An `except` entry that is not a strict subnet of its block's `cidr`.
    #[error("`{except}` is not a strict subnet of cidr `{cidr}`")]
    ExceptOutsideCidr {
        /// The except entry as written.
        except: String,
        /// The block's cidr as written.
        cidr: String,
    },
    /// Not an IP address.
    #[error("`{0}` is not a valid IP address")]
    BadIp(String),
    /// A port number outside 1–65535.
    #[error("port {0} is outside 1-65535")]
    PortOutOfRange(String),
    /// `endPort` below `port`.
    #[error("endPort {end} is below port {port}")]
    EndPortBelowPort {
        /// The start of the range.
        port: u16,
        /// The end of the range.
        end: u16,
    },
    /// `endPort` with a named port.
    #[error("endPort is only allowed with a numeric port, not with named port `{0}`")]
    EndPortWithNamedPort(String),
    /// `endPort` without `port`.
    #[error("endPort is only allowed together with port")]
    EndPortWithoutPort,
    /// A protocol other than TCP, UDP or SCTP (or a spelling the dialect
    /// does not accept).
    #[error("unsupported protocol `{0}` (expected TCP, UDP or SCTP)")]
    Protocol(String),
    /// A named port that breaks the IANA service name rules.
    #[error("invalid port name `{name}`: {reason}")]
    PortName {
        /// The name.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A label selector operator other than In, NotIn, Exists, DoesNotExist.
    #[error("unknown selector operator `{0}` (expected In, NotIn, Exists or DoesNotExist)")]
    Operator(String),
    /// In/NotIn without values.
    #[error("operator {0} needs at least one value")]
    ValuesRequired(&'static str),
    /// Exists/DoesNotExist with values.
    #[error("operator {0} takes no values")]
    ValuesForbidden(&'static str),
    /// A `policyTypes` entry other than Ingress or Egress.
    #[error("unknown policy type `{0}` (expected Ingress or Egress)")]
    PolicyType(String),
    /// A NetworkPolicy peer with none of podSelector, namespaceSelector,
    /// ipBlock.
    #[error("a peer needs podSelector, namespaceSelector or ipBlock")]
    EmptyPeer,
    /// A NetworkPolicy peer with ipBlock and a selector.
    #[error("ipBlock cannot be combined with podSelector or namespaceSelector")]
    PeerConflict,
    /// A Calico selector that does not parse.
    #[error("invalid selector `{text}`: {error}")]
    Selector {
        /// The selector as written.
        text: String,
        /// Where and what.
        error: palisade_model::calico_selector::SelectorError,
    },
    /// A value outside the closed set a field takes.
    #[error("unknown value `{value}` (expected {expected})")]
    UnknownValue {
        /// The value as written.
        value: String,
        /// What the field takes.
        expected: &'static str,
    },
    /// A field Palisade does not know in an object whose unknown fields
    /// would change what it means.
    #[error("unknown field (expected one of: {expected})")]
    UnknownField {
        /// The fields the map takes.
        expected: &'static str,
    },
    /// A Calico port entry that is neither a number, a `lo:hi` range nor a
    /// port name.
    #[error("`{value}` is not a port, a `lo:hi` range or a port name: {reason}")]
    PortSpec {
        /// The entry as written.
        value: String,
        /// Why.
        reason: String,
    },
    /// Valid for its dialect, but not enforceable by Palisade (yet).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A policy in a tier that does not exist, or a tier deleted while
    /// policies use it.
    #[error("{0}")]
    Tier(String),
    /// An `order` that is not a finite number.
    #[error("`{0}` is not a finite number")]
    Order(String),
    /// Two fields that cannot be given together (or one that needs another).
    #[error("{0}")]
    Conflict(String),
}

/// Something accepted but worth telling the user about (a non-canonical
/// spelling, an annotation that could not be read, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The object concerned.
    pub object: ObjectKey,
    /// The path of the field concerned, e.g. `spec.ingress[0].ports[0].protocol`.
    pub field: String,
    /// What was noticed and what was done about it.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.object, self.field, self.message)
    }
}
