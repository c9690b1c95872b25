//! Calico's selector language: parsing, with errors that give the position
//! and what was expected, and evaluation over a label view.
//!
//! ```text
//! expr     := and ( "||" and )*
//! and      := unary ( "&&" unary )*
//! unary    := "!" unary | primary
//! primary  := "(" expr ")" | "all()" | "global()" | "has(" key ")"
//!           | key ( "==" | "!=" | "contains" | "starts with" | "ends with" ) string
//!           | key ( "in" | "not in" ) "{" [ string ( "," string )* ] "}"
//! string   := '...' | "..."            (no escapes)
//! key      := [A-Za-z0-9_./-]+
//! ```
//!
//! White space is a blank or a tab, nothing else: a newline (or any other
//! character outside the grammar) is an error. The empty selector is
//! `all()`. `!=` and `not in` are true when the label is absent; every
//! other comparison needs the label. `global()` holds for what has no
//! `projectcalico.org/namespace` label (the non-namespaced network sets).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The label every namespaced Calico endpoint and network set carries.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
/// The label of a pod's orchestrator (`k8s`).
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
/// The label of a pod's service account name.
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";
/// The name label Calico gives namespaces and service accounts (read as
/// `pcns.projectcalico.org/name`, `pcsa.projectcalico.org/name`).
pub const NAME_LABEL: &str = "projectcalico.org/name";

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Selector {
    All,
    Global,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<Selector>),
    /// Every one (two or more).
    And(Vec<Selector>),
    /// Any one (two or more).
    Or(Vec<Selector>),
}

/// How deep parentheses and `!` may nest: deeper selectors are refused, so
/// that no input can exhaust the stack.
pub const MAX_NESTING: usize = 64;

/// The longest selector read, in characters.
pub const MAX_LENGTH: usize = 64 * 1024;

/// What a selector reads labels from.
pub trait LabelView {
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelView for std::collections::BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A parse error: where (a 1-based column, in characters), what was
/// expected there, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: expected {expected}, found {found}")]
pub struct SelectorError {
    pub column: usize,
    pub expected: String,
    pub found: String,
}

impl Selector {
    /// Parses a selector; the empty (or blank) selector is `all()`.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        if text.chars().count() > MAX_LENGTH {
            return Err(SelectorError {
                column: MAX_LENGTH + 1,
                expected: format!("at most {MAX_LENGTH} characters"),
                found: "a longer selector".to_string(),
            });
        }
        let mut p = Parser { chars: text.chars().collect(), at: 0, depth: 0 };
        p.blank();
        if p.at == p.chars.len() {
            return Ok(Selector::All);
        }
        let sel = p.or()?;
        p.blank();
        if p.at < p.chars.len() {
            return Err(p.error("`&&`, `||` or the end of the selector"));
        }
        Ok(sel)
    }

    pub fn matches(&self, labels: &dyn LabelView) -> bool {
        match self {
            Selector::All => true,
            Selector::Global => labels.label(NAMESPACE_LABEL).is_none(),
            Selector::Has(k) => labels.label(k).is_some(),
            Selector::Eq(k, v) => labels.label(k) == Some(v.as_str()),
            Selector::Ne(k, v) => labels.label(k) != Some(v.as_str()),
            Selector::In(k, vs) => labels.label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Selector::NotIn(k, vs) => labels.label(k).is_none_or(|l| !vs.iter().any(|v| v == l)),
            Selector::Contains(k, v) => labels.label(k).is_some_and(|l| l.contains(v.as_str())),
            Selector::StartsWith(k, v) => {
                labels.label(k).is_some_and(|l| l.starts_with(v.as_str()))
            }
            Selector::EndsWith(k, v) => labels.label(k).is_some_and(|l| l.ends_with(v.as_str())),
            Selector::Not(s) => !s.matches(labels),
            Selector::And(all) => all.iter().all(|s| s.matches(labels)),
            Selector::Or(any) => any.iter().any(|s| s.matches(labels)),
        }
    }

    /// `self && other`, without a redundant `all()`.
    pub fn and(self, other: Selector) -> Selector {
        match (self, other) {
            (Selector::All, o) | (o, Selector::All) => o,
            (Selector::And(mut a), Selector::And(b)) => {
                a.extend(b);
                Selector::And(a)
            }
            (Selector::And(mut a), b) => {
                a.push(b);
                Selector::And(a)
            }
            (a, Selector::And(mut b)) => {
                b.insert(0, a);
                Selector::And(b)
            }
            (a, b) => Selector::And(vec![a, b]),
        }
    }

    /// The same selector over labels whose keys carry `prefix` (a
    /// namespace selector read on an endpoint's `pcns.` labels, a service
    /// account selector on its `pcsa.` labels). `global()` is kept.
    pub fn prefixed(&self, prefix: &str) -> Selector {
        let k = |key: &String| format!("{prefix}{key}");
        match self {
            Selector::All => Selector::All,
            Selector::Global => Selector::Global,
            Selector::Has(key) => Selector::Has(k(key)),
            Selector::Eq(key, v) => Selector::Eq(k(key), v.clone()),
            Selector::Ne(key, v) => Selector::Ne(k(key), v.clone()),
            Selector::In(key, v) => Selector::In(k(key), v.clone()),
            Selector::NotIn(key, v) => Selector::NotIn(k(key), v.clone()),
            Selector::Contains(key, v) => Selector::Contains(k(key), v.clone()),
            Selector::StartsWith(key, v) => Selector::StartsWith(k(key), v.clone()),
            Selector::EndsWith(key, v) => Selector::EndsWith(k(key), v.clone()),
            Selector::Not(s) => Selector::Not(Box::new(s.prefixed(prefix))),
            Selector::And(all) => Selector::And(all.iter().map(|s| s.prefixed(prefix)).collect()),
            Selector::Or(any) => Selector::Or(any.iter().map(|s| s.prefixed(prefix)).collect()),
        }
    }
}

fn quote(v: &str) -> String {
    if v.contains('"') {
        format!("'{v}'")
    } else {
        format!("\"{v}\"")
    }
}

fn set(vs: &[String]) -> String {
    vs.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Selector {
    /// Canonical text that parses back to the same selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => write!(f, "all()"),
            Selector::Global => write!(f, "global()"),
            Selector::Has(k) => write!(f, "has({k})"),
            Selector::Eq(k, v) => write!(f, "{k} == {}", quote(v)),
            Selector::Ne(k, v) => write!(f, "{k} != {}", quote(v)),
            Selector::In(k, vs) => write!(f, "{k} in {{{}}}", set(vs)),
            Selector::NotIn(k, vs) => write!(f, "{k} not in {{{}}}", set(vs)),
            Selector::Contains(k, v) => write!(f, "{k} contains {}", quote(v)),
            Selector::StartsWith(k, v) => write!(f, "{k} starts with {}", quote(v)),
            Selector::EndsWith(k, v) => write!(f, "{k} ends with {}", quote(v)),
            Selector::Not(s) => match **s {
                Selector::And(..) | Selector::Or(..) => write!(f, "!({s})"),
                _ => write!(f, "!{s}"),
            },
            Selector::And(all) => {
                let parts: Vec<String> = all
                    .iter()
                    .map(|s| match s {
                        Selector::Or(..) | Selector::And(..) => format!("({s})"),
                        _ => s.to_string(),
                    })
                    .collect();
                write!(f, "{}", parts.join(" && "))
            }
            Selector::Or(any) => {
                let parts: Vec<String> = any
                    .iter()
                    .map(|s| match s {
                        Selector::Or(..) => format!("({s})"),
                        _ => s.to_string(),
                    })
                    .collect();
                write!(f, "{}", parts.join(" || "))
            }
        }
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    /// Parentheses and `!` open around the current position.
    depth: usize,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

impl Parser {
    fn error(&self, expected: &str) -> SelectorError {
        let found = match self.chars.get(self.at) {
            None => "the end of the selector".to_string(),
            Some('\n') => "a newline (only blanks and tabs are white space)".to_string(),
            Some('\r') => "a carriage return (only blanks and tabs are white space)".to_string(),
            Some(_) => {
                let rest: String = self.chars[self.at..].iter().take(12).collect();
                format!("`{rest}`")
            }
        };
        SelectorError { column: self.at + 1, expected: expected.to_string(), found }
    }

    fn blank(&mut self) {
        while matches!(self.chars.get(self.at), Some(' ' | '\t')) {
            self.at += 1;
        }
    }

    /// Consumes `word` (after blanks) if it is next.
    fn eat(&mut self, word: &str) -> bool {
        self.blank();
        let n = word.chars().count();
        let ok = self.chars.len() >= self.at + n
            && self.chars[self.at..self.at + n].iter().copied().eq(word.chars());
        if ok {
            self.at += n;
        }
        ok
    }

    /// Consumes a keyword (`in`, `not`, `contains`...) that is not the start
    /// of a longer key.
    fn keyword(&mut self, word: &str) -> bool {
        let start = self.at;
        if !self.eat(word) {
            return false;
        }
        if self.chars.get(self.at).is_some_and(|&c| is_key_char(c)) {
            self.at = start;
            return false;
        }
        true
    }

    /// `first` then, after at least one blank, `second`.
    fn two_words(&mut self, first: &str, second: &str) -> Result<bool, SelectorError> {
        let start = self.at;
        if !self.keyword(first) {
            return Ok(false);
        }
        if !matches!(self.chars.get(self.at), Some(' ' | '\t')) || !self.keyword(second) {
            self.blank();
            let err = self.error(&format!("`{second}` after `{first}`"));
            self.at = start;
            return Err(err);
        }
        Ok(true)
    }

    fn or(&mut self) -> Result<Selector, SelectorError> {
        let mut any = vec![self.and()?];
        while self.eat("||") {
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 { any.remove(0) } else { Selector::Or(any) })
    }

    fn and(&mut self) -> Result<Selector, SelectorError> {
        let mut all = vec![self.unary()?];
        while self.eat("&&") {
            all.push(self.unary()?);
        }
        Ok(if all.len() == 1 { all.remove(0) } else { Selector::And(all) })
    }

    /// Enters one more level of `(` or `!` (the one at `at`).
    fn nest(&mut self, at: usize) -> Result<(), SelectorError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            self.at = at;
            return Err(self.error(&format!("at most {MAX_NESTING} nested `(` and `!`")));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Selector, SelectorError> {
        self.blank();
        // `!` but not `!=` (which needs a key before it anyway).
        if self.chars.get(self.at) == Some(&'!') && self.chars.get(self.at + 1) != Some(&'=') {
            self.nest(self.at)?;
            self.at += 1;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Selector::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Selector, SelectorError> {
        const OPERAND: &str = "a label, `has(`, `all()`, `global()`, `!` or `(`";
        self.blank();
        let open = self.at;
        if self.eat("(") {
            self.nest(open)?;
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.error("`)`, `&&` or `||`"));
            }
            self.depth -= 1;
            return Ok(inner);
        }
        for (word, sel) in [("all", Selector::All), ("global", Selector::Global)] {
            let start = self.at;
            if self.keyword(word) {
                if self.eat("(") {
                    if self.eat(")") {
                        return Ok(sel);
                    }
                    return Err(self.error(&format!("`)` after `{word}(`")));
                }
                self.at = start;
            }
        }
        let start = self.at;
        if self.keyword("has") {
            if self.eat("(") {
                self.blank();
                let key = self.key("a label key inside `has(...)`")?;
                if !self.eat(")") {
                    return Err(self.error("`)` after the key of `has(`"));
                }
                return Ok(Selector::Has(key));
            }
            self.at = start;
        }
        if self.chars.get(self.at).is_none_or(|&c| !is_key_char(c)) {
            return Err(self.error(OPERAND));
        }
        let key = self.key(OPERAND)?;
        if self.eat("==") {
            return Ok(Selector::Eq(key, self.string()?));
        }
        if self.eat("!=") {
            return Ok(Selector::Ne(key, self.string()?));
        }
        if self.keyword("in") {
            return Ok(Selector::In(key, self.values()?));
        }
        if self.two_words("not", "in")? {
            return Ok(Selector::NotIn(key, self.values()?));
        }
        if self.keyword("contains") {
            return Ok(Selector::Contains(key, self.string()?));
        }
        if self.two_words("starts", "with")? {
            return Ok(Selector::StartsWith(key, self.string()?));
        }
        if self.two_words("ends", "with")? {
            return Ok(Selector::EndsWith(key, self.string()?));
        }
        self.blank();
        Err(self.error(&format!(
            "an operator after the label `{key}` (`==`, `!=`, `in`, `not in`, `contains`, `starts with`, `ends with`)"
        )))
    }

    fn key(&mut self, expected: &str) -> Result<String, SelectorError> {
        let start = self.at;
        while self.chars.get(self.at).is_some_and(|&c| is_key_char(c)) {
            self.at += 1;
        }
        if self.at == start {
            return Err(self.error(expected));
        }
        Ok(self.chars[start..self.at].iter().collect())
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        self.blank();
        let Some(&q) = self.chars.get(self.at).filter(|c| matches!(c, '\'' | '"')) else {
            return Err(self.error("a quoted string ('...' or \"...\")"));
        };
        let open = self.at;
        self.at += 1;
        let start = self.at;
        while self.chars.get(self.at).is_some_and(|&c| c != q) {
            self.at += 1;
        }
        if self.at == self.chars.len() {
            self.at = open;
            return Err(self.error(&format!("a string closed by {q}")));
        }
        let s: String = self.chars[start..self.at].iter().collect();
        self.at += 1;
        Ok(s)
    }

    fn values(&mut self) -> Result<Vec<String>, SelectorError> {
        if !self.eat("{") {
            return Err(self.error("`{` starting a set of strings"));
        }
        let mut out = Vec::new();
        if self.eat("}") {
            return Ok(out);
        }
        loop {
            out.push(self.string()?);
            if self.eat("}") {
                return Ok(out);
            }
            if !self.eat(",") {
                return Err(self.error("`,` or `}` in a set of strings"));
            }
        }
    }
}

#[cfg(test)]
#[path = "calico_selector_tests.rs"]
mod tests;
