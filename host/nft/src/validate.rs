//! The check of a libnftables JSON batch against a plugin's tables, before
//! anything runs.
//!
//! Schema (libnftables-json(5)): `{"nftables": [CMD_OBJ, ...]}` where a
//! CMD_OBJ is `{"metainfo": {...}}`, `{COMMAND: {OBJECT_KIND: {...}}}` or a
//! bare `{OBJECT_KIND: {...}}` (an implicit `add`). Every object must name its
//! family and its table by name; the kernel resolves everything else (chains,
//! sets, maps, jump and goto targets, rule and object handles) inside that
//! table, so the table is the unit of ownership. A table itself is only ever
//! addressed by name: the kernel looks a table up by handle in preference to
//! its name, so a `handle` on a table object is refused.

use serde_json::{Map, Value};

use crate::grant::{Family, TableGrants, TableRef};

/// Commands a batch may contain (with an object kind below).
const COMMANDS: [&str; 7] = ["add", "create", "insert", "replace", "delete", "destroy", "flush"];

/// Object kinds a command may act on.
const OBJECT_KINDS: [&str; 15] = [
    "table",
    "chain",
    "rule",
    "set",
    "map",
    "element",
    "flowtable",
    "counter",
    "quota",
    "limit",
    "ct helper",
    "ct timeout",
    "ct expectation",
    "secmark",
    "synproxy",
];

/// Why a batch was refused; `index` is the position of the offending command
/// in the `nftables` array (None: the batch as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub index: Option<usize>,
    /// The table the command tried to touch, when it names one.
    pub table: Option<String>,
    pub reason: String,
}

/// What a valid batch contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Number of commands (metainfo included).
    pub commands: usize,
    /// The tables it touches.
    pub tables: Vec<TableRef>,
}

fn refuse(index: usize, table: Option<String>, reason: impl Into<String>) -> Refusal {
    Refusal { index: Some(index), table, reason: reason.into() }
}

fn keys(map: &Map<String, Value>) -> String {
    map.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

/// The single `(key, value)` of an object that must have exactly one key.
fn single<'a>(
    index: usize,
    value: &'a Value,
    what: &str,
) -> Result<(&'a String, &'a Value), Refusal> {
    let Some(map) = value.as_object() else {
        return Err(refuse(index, None, format!("{what} is not a JSON object")));
    };
    let mut it = map.iter();
    match (it.next(), it.next()) {
        (Some(kv), None) => Ok(kv),
        (None, _) => Err(refuse(index, None, format!("{what} is empty"))),
        _ => Err(refuse(
            index,
            None,
            format!("{what} must have exactly one key, found {}", keys(map)),
        )),
    }
}

/// The table an object of `kind` with `body` belongs to, best effort (for
/// messages about refused commands).
fn table_hint(kind: &str, body: &Value) -> Option<String> {
    let family = body.get("family")?.as_str()?;
    let name = body.get(if kind == "table" { "name" } else { "table" })?.as_str()?;
    Some(format!("{family} {name}"))
}

/// Checks one `kind: body` object of command `command` and returns its table.
fn object(
    index: usize,
    command: &str,
    kind: &str,
    body: &Value,
    plugin: &str,
    grants: &TableGrants,
) -> Result<TableRef, Refusal> {
    if kind == "ruleset" {
        return Err(refuse(
            index,
            None,
            format!("`{command} ruleset` is refused: it acts on every table of the namespace"),
        ));
    }
    if !OBJECT_KINDS.contains(&kind) {
        return Err(refuse(
            index,
            table_hint(kind, body),
            format!("unknown object kind `{kind}` (command `{command}`)"),
        ));
    }
    let hint = table_hint(kind, body);
    let Some(body) = body.as_object() else {
        return Err(refuse(
            index,
            None,
            format!("`{command} {kind}`: the object is not a JSON object"),
        ));
    };
    let family = match body.get("family") {
        Some(Value::String(f)) => {
            f.parse::<Family>().map_err(|e| refuse(index, hint.clone(), e))?
        }
        Some(_) => {
            return Err(refuse(
                index,
                hint,
                format!("`{command} {kind}`: `family` is not a string"),
            ))
        }
        None => {
            return Err(refuse(
                index,
                hint,
                format!(
                "`{command} {kind}` names no family: every object must name its family and table"
            ),
            ))
        }
    };
    let field = if kind == "table" { "name" } else { "table" };
    let name = match body.get(field) {
        Some(Value::String(n)) => n,
        _ => {
            return Err(refuse(
                index,
                hint,
                format!(
                    "`{command} {kind}` names no table (field `{field}`): every object must name \
                     its table explicitly, by name"
                ),
            ))
        }
    };
    let shown = format!("{family} {name}");
    if kind == "table" && body.contains_key("handle") {
        return Err(refuse(
            index,
            Some(shown),
            format!("`{command} table` with a `handle`: a table is addressed by name only"),
        ));
    }
    let table = TableRef { family, name: name.clone() };
    if !grants.allows(plugin, &table) {
        return Err(refuse(
            index,
            Some(shown.clone()),
            format!(
                "`{command} {kind}`: table {shown} is not granted to the plugin (its tables: {})",
                grants.describe(plugin)
            ),
        ));
    }
    Ok(table)
}

/// Checks every command of `batch` for `plugin` before anything runs.
pub fn check(plugin: &str, grants: &TableGrants, batch: &Value) -> Result<Checked, Refusal> {
    let whole = |reason: String| Refusal { index: None, table: None, reason };
    let Some(top) = batch.as_object() else {
        return Err(whole("the batch is not a JSON object `{\"nftables\": [...]}`".into()));
    };
    if top.len() != 1 || !top.contains_key("nftables") {
        return Err(whole(format!(
            "the batch must be `{{\"nftables\": [...]}}` and nothing else; found {}",
            keys(top)
        )));
    }
    let Some(commands) = top.get("nftables").and_then(Value::as_array) else {
        return Err(whole("`nftables` is not an array".into()));
    };
    if !grants.has_any(plugin) {
        return Err(whole("no nftables table is granted to the plugin".into()));
    }
    let mut checked = Checked { commands: commands.len(), tables: Vec::new() };
    for (index, cmd) in commands.iter().enumerate() {
        let (key, inner) = single(index, cmd, "the command")?;
        let key = key.as_str();
        let table = if key == "metainfo" {
            None
        } else if COMMANDS.contains(&key) {
            let (kind, body) = single(index, inner, &format!("the object of `{key}`"))?;
            Some(object(index, key, kind, body, plugin, grants)?)
        } else if key == "list" || key == "reset" || key == "rename" || key == "monitor" {
            let hint = inner
                .as_object()
                .and_then(|m| m.iter().next())
                .and_then(|(kind, body)| table_hint(kind, body));
            return Err(refuse(
                index,
                hint,
                format!("the command `{key}` is not allowed in a batch (use list-table to read a table)"),
            ));
        } else if OBJECT_KINDS.contains(&key) || key == "ruleset" {
            // A bare object: an implicit `add`.
            Some(object(index, "add", key, inner, plugin, grants)?)
        } else {
            return Err(refuse(index, None, format!("unknown command `{key}`")));
        };
        if let Some(t) = table {
            if !checked.tables.contains(&t) {
                checked.tables.push(t);
            }
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn grants() -> TableGrants {
        TableGrants::new().grant("p", "inet mine".parse().unwrap())
    }

    #[test]
    fn granted_objects_pass() {
        let batch = json!({"nftables": [
            {"metainfo": {"json_schema_version": 1}},
            {"table": {"family": "inet", "name": "mine"}},
            {"add": {"chain": {"family": "inet", "table": "mine", "name": "c"}}},
            {"insert": {"rule": {"family": "inet", "table": "mine", "chain": "c", "expr": [{"accept": null}]}}},
            {"add": {"set": {"family": "inet", "table": "mine", "name": "s", "type": "ipv4_addr"}}},
            {"add": {"element": {"family": "inet", "table": "mine", "name": "s", "elem": ["10.0.0.1"]}}},
            {"add": {"ct helper": {"family": "inet", "table": "mine", "name": "h"}}},
            {"flush": {"set": {"family": "inet", "table": "mine", "name": "s"}}},
            {"delete": {"table": {"family": "inet", "name": "mine"}}}
        ]});
        let c = check("p", &grants(), &batch).unwrap();
        assert_eq!(c.commands, 9);
        assert_eq!(c.tables, vec!["inet mine".parse().unwrap()]);
    }

    #[test]
    fn refusals_name_the_index_and_table() {
        let batch = json!({"nftables": [
            {"add": {"table": {"family": "inet", "name": "mine"}}},
            {"add": {"chain": {"family": "inet", "table": "other", "name": "c"}}}
        ]});
        let r = check("p", &grants(), &batch).unwrap_err();
        assert_eq!(r.index, Some(1));
        assert_eq!(r.table.as_deref(), Some("inet other"));
        let same_name_other_family =
            json!({"nftables": [{"add": {"table": {"family": "ip", "name": "mine"}}}]});
        let r = check("p", &grants(), &same_name_other_family).unwrap_err();
        assert_eq!(r.table.as_deref(), Some("ip mine"));
        let by_handle = json!({"nftables": [{"delete": {"table": {"family": "inet", "name": "mine", "handle": 3}}}]});
        assert!(check("p", &grants(), &by_handle).unwrap_err().reason.contains("handle"));
        let no_grant = json!({"nftables": []});
        assert!(check("q", &grants(), &no_grant).is_err());
    }
}
