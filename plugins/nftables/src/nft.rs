//! libnftables JSON: commands on the plugin's one table, and the few
//! expressions the backend uses. Every command names the table, so the host's
//! validation (objects only in the granted table) holds by construction.

use serde_json::{json, Map, Value};

use crate::names::Fam;

/// An object from key/value pairs, moving the values in. (`json!` embeds a
/// `Value` by serializing it again: a deep copy, which for a batch of tens of
/// thousands of commands costs seconds.)
pub fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}

/// The family of the plugin's table.
pub const FAMILY: &str = "inet";

/// Builds commands on one `inet` table.
#[derive(Clone, Debug)]
pub struct Table {
    pub name: String,
}

impl Table {
    pub fn new(name: impl Into<String>) -> Self {
        Table { name: name.into() }
    }

    fn obj(&self, name: &str) -> Value {
        json!({"family": FAMILY, "table": self.name, "name": name})
    }

    pub fn add_table(&self) -> Value {
        json!({"add": {"table": {"family": FAMILY, "name": self.name}}})
    }

    pub fn delete_table(&self) -> Value {
        json!({"delete": {"table": {"family": FAMILY, "name": self.name}}})
    }

    /// A base chain on `hook` (filter, priority 0, policy accept).
    pub fn add_base_chain(&self, hook: &str) -> Value {
        let mut c = self.obj(hook);
        c["type"] = json!("filter");
        c["hook"] = json!(hook);
        c["prio"] = json!(0);
        c["policy"] = json!("accept");
        object([("add", object([("chain", c)]))])
    }

    pub fn add_chain(&self, name: &str) -> Value {
        object([("add", object([("chain", self.obj(name))]))])
    }

    pub fn flush_chain(&self, name: &str) -> Value {
        object([("flush", object([("chain", self.obj(name))]))])
    }

    /// Deletes a chain with its rules (the kernel drops the rules with it).
    pub fn delete_chain(&self, name: &str) -> Value {
        object([("delete", object([("chain", self.obj(name))]))])
    }

    /// A set of addresses of one family, with its elements (made with
    /// [`addr_elem`]): an interval set keyed `ADDR . inet_proto`, matched
    /// with [`addr_key`], every element covering protocols 0-255.
    ///
    /// Why not a plain `ipv4_addr` interval set: before any element add or
    /// delete, libnftables (1.0.x) reads every element of every plain
    /// (single-field) interval set of the ruleset into its cache, which made
    /// one element change cost tens of milliseconds on a large table. It does
    /// not do that for concatenated interval sets; the protocol field costs
    /// nothing else (every element spans all protocols).
    pub fn add_set(&self, name: &str, fam: Fam, elems: Vec<Value>) -> Value {
        let mut s = self.obj(name);
        s["type"] = json!([fam.addr_type(), "inet_proto"]);
        s["flags"] = json!(["interval"]);
        if !elems.is_empty() {
            s["elem"] = Value::Array(elems);
        }
        object([("add", object([("set", s)]))])
    }

    /// An interval set of type `ty` (a type name, or a list of them for a
    /// concatenation), with its elements.
    pub fn add_typed_set(&self, name: &str, ty: Value, elems: Vec<Value>) -> Value {
        let mut s = self.obj(name);
        s["type"] = ty;
        s["flags"] = json!(["interval"]);
        if !elems.is_empty() {
            s["elem"] = Value::Array(elems);
        }
        object([("add", object([("set", s)]))])
    }

    pub fn delete_set(&self, name: &str) -> Value {
        object([("delete", object([("set", self.obj(name))]))])
    }

    /// A verdict map keyed by address; `elems` are `[key, verdict]` pairs.
    pub fn add_vmap(&self, name: &str, fam: Fam, elems: Vec<Value>) -> Value {
        let mut m = self.obj(name);
        m["type"] = json!(fam.addr_type());
        m["map"] = json!("verdict");
        if !elems.is_empty() {
            m["elem"] = Value::Array(elems);
        }
        object([("add", object([("map", m)]))])
    }

    pub fn add_elements(&self, set: &str, elems: Vec<Value>) -> Value {
        let mut e = self.obj(set);
        e["elem"] = Value::Array(elems);
        object([("add", object([("element", e)]))])
    }

    pub fn delete_elements(&self, set: &str, elems: Vec<Value>) -> Value {
        let mut e = self.obj(set);
        e["elem"] = Value::Array(elems);
        object([("delete", object([("element", e)]))])
    }

    pub fn add_rule(&self, chain: &str, expr: Vec<Value>) -> Value {
        let rule = object([
            ("family", json!(FAMILY)),
            ("table", json!(self.name)),
            ("chain", json!(chain)),
            ("expr", Value::Array(expr)),
        ]);
        object([("add", object([("rule", rule)]))])
    }
}

/// Wraps commands into a batch document.
pub fn batch(cmds: Vec<Value>) -> Value {
    object([("nftables", Value::Array(cmds))])
}

/// A batch document written command by command (the text of
/// [`batch`] without holding every command as a `Value`).
pub struct BatchWriter {
    buf: Vec<u8>,
    empty: bool,
}

impl Default for BatchWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchWriter {
    pub fn new() -> Self {
        BatchWriter { buf: br#"{"nftables":["#.to_vec(), empty: true }
    }

    pub fn push(&mut self, cmd: &Value) {
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        // Writing a `Value` into a Vec cannot fail.
        serde_json::to_writer(&mut self.buf, cmd).expect("serializing a JSON value");
    }

    pub fn finish(mut self) -> String {
        self.buf.extend_from_slice(b"]}");
        // serde_json writes UTF-8 only.
        String::from_utf8(self.buf).expect("serde_json writes UTF-8")
    }
}

/// An address field (`saddr`/`daddr`) of the network header of `fam`.
pub fn addr(fam: Fam, field: &str) -> Value {
    json!({"payload": {"protocol": fam.payload(), "field": field}})
}

/// The key of an address set ([`Table::add_set`]): `ADDR . meta l4proto`.
pub fn addr_key(fam: Fam, field: &str) -> Value {
    object([("concat", Value::Array(vec![addr(fam, field), json!({"meta": {"key": "l4proto"}})]))])
}

/// An element of an address set ([`Table::add_set`]): the address (or
/// prefix) element `addr`, for every protocol.
pub fn addr_elem(addr: Value) -> Value {
    object([("concat", Value::Array(vec![addr, json!({"range": [0, 255]})]))])
}

/// `left == right` (for a set reference `right` is `"@name"`).
pub fn eq(left: Value, right: Value) -> Value {
    object([("match", object([("op", json!("==")), ("left", left), ("right", right)]))])
}

/// `ct state established,related`.
pub fn ct_established() -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}})
}

/// `meta l4proto NAME`.
pub fn l4proto(name: &str) -> Value {
    eq(json!({"meta": {"key": "l4proto"}}), json!(name))
}

/// `th dport N` or `th dport A-B` (a range match, no anonymous set: a table
/// with tens of thousands of anonymous sets makes every transaction slow).
pub fn dport(first: u16, last: u16) -> Value {
    let right = if first == last { json!(first) } else { json!({"range": [first, last]}) };
    eq(json!({"payload": {"protocol": "th", "field": "dport"}}), right)
}

/// `KEY vmap @map`.
pub fn vmap(key: Value, map: &str) -> Value {
    object([("vmap", object([("key", key), ("data", json!(format!("@{map}")))]))])
}

pub fn accept() -> Value {
    json!({"accept": null})
}

pub fn drop() -> Value {
    json!({"drop": null})
}

pub fn ret() -> Value {
    json!({"return": null})
}

pub fn jump(chain: &str) -> Value {
    json!({"jump": {"target": chain}})
}

pub fn goto(chain: &str) -> Value {
    json!({"goto": {"target": chain}})
}

pub fn log(prefix: &str) -> Value {
    json!({"log": {"prefix": prefix}})
}

/// An address element: a single address, or a prefix.
pub fn v4_elem(addr: u32, len: u8) -> Value {
    if len >= 32 {
        json!(crate::names::v4(addr))
    } else {
        json!({"prefix": {"addr": crate::names::v4(addr), "len": len}})
    }
}

pub fn v6_elem(addr: u128, len: u8) -> Value {
    if len >= 128 {
        json!(crate::names::v6(addr))
    } else {
        json!({"prefix": {"addr": crate::names::v6(addr), "len": len}})
    }
}
