//! Typed, path-tracking access to the fields of a JSON object, so that
//! every rejection names the exact field at fault.

use palisade_store::ObjectKey;
use serde_json::{Map, Value};

use crate::error::{DialectError, Problem, Warning};

/// `path.key` (or `key` at the top).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[index]`.
pub(crate) fn index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The JSON type name of a value, for error messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// The object being compiled, and the warnings gathered so far.
pub(crate) struct Ctx<'k> {
    pub(crate) object: &'k ObjectKey,
    pub(crate) warnings: Vec<Warning>,
}

impl<'k> Ctx<'k> {
    pub(crate) fn new(object: &'k ObjectKey) -> Ctx<'k> {
        Ctx { object, warnings: Vec::new() }
    }

    /// A rejection of the field at `path`.
    pub(crate) fn invalid(&self, path: &str, problem: Problem) -> DialectError {
        DialectError::Invalid {
            object: Box::new(self.object.clone()),
            field: path.to_string(),
            problem,
        }
    }

    /// Records a warning about the field at `path`.
    pub(crate) fn warn(&mut self, path: &str, message: impl Into<String>) {
        let warning = Warning {
            object: self.object.clone(),
            field: path.to_string(),
            message: message.into(),
        };
        tracing::debug!(%warning, "dialect warning");
        self.warnings.push(warning);
    }

    fn wrong_type(&self, path: &str, expected: &'static str, found: &Value) -> DialectError {
        self.invalid(path, Problem::WrongType { expected, found: type_name(found) })
    }

    /// `value` as a map.
    pub(crate) fn map<'v>(
        &self,
        value: &'v Value,
        path: &str,
    ) -> Result<&'v Map<String, Value>, DialectError> {
        value.as_object().ok_or_else(|| self.wrong_type(path, "a map", value))
    }

    /// `value` as a list.
    pub(crate) fn list<'v>(
        &self,
        value: &'v Value,
        path: &str,
    ) -> Result<&'v [Value], DialectError> {
        value.as_array().map(Vec::as_slice).ok_or_else(|| self.wrong_type(path, "a list", value))
    }

    /// `value` as a string.
    pub(crate) fn str<'v>(&self, value: &'v Value, path: &str) -> Result<&'v str, DialectError> {
        value.as_str().ok_or_else(|| self.wrong_type(path, "a string", value))
    }

    /// `value` as a boolean.
    pub(crate) fn bool(&self, value: &Value, path: &str) -> Result<bool, DialectError> {
        value.as_bool().ok_or_else(|| self.wrong_type(path, "a boolean", value))
    }

    /// `value` as an integer (any JSON number without a fraction).
    pub(crate) fn int(&self, value: &Value, path: &str) -> Result<i128, DialectError> {
        match value {
            Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .ok_or_else(|| self.wrong_type(path, "an integer", value)),
            _ => Err(self.wrong_type(path, "an integer", value)),
        }
    }
}

/// The field `key` of `map`, treating an explicit `null` as absent.
pub(crate) fn get<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// The field `key` of `map` as a map, if present.
pub(crate) fn opt_map<'v>(
    ctx: &Ctx<'_>,
    map: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'v Map<String, Value>>, DialectError> {
    get(map, key).map(|v| ctx.map(v, &join(path, key))).transpose()
}

/// The field `key` of `map` as a list, if present.
pub(crate) fn opt_list<'v>(
    ctx: &Ctx<'_>,
    map: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'v [Value]>, DialectError> {
    get(map, key).map(|v| ctx.list(v, &join(path, key))).transpose()
}

/// The field `key` of `map` as a string, if present.
pub(crate) fn opt_str<'v>(
    ctx: &Ctx<'_>,
    map: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'v str>, DialectError> {
    get(map, key).map(|v| ctx.str(v, &join(path, key))).transpose()
}
