use std::collections::BTreeMap;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn m(sel: &str, pairs: &[(&str, &str)]) -> bool {
    Selector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}")).matches(&labels(pairs))
}

fn err(sel: &str) -> SelectorError {
    match Selector::parse(sel) {
        Ok(s) => panic!("{sel:?} parsed as {s:?}"),
        Err(e) => e,
    }
}

#[test]
fn equality_and_inequality() {
    assert!(m("app == 'web'", &[("app", "web")]));
    assert!(m("app == \"web\"", &[("app", "web")]));
    assert!(!m("app == 'web'", &[("app", "db")]));
    assert!(!m("app == 'web'", &[]), "== needs the label");
    assert!(m("app != 'web'", &[("app", "db")]));
    assert!(m("app != 'web'", &[]), "!= holds when the label is absent");
    assert!(!m("app != 'web'", &[("app", "web")]));
    assert!(m("app == ''", &[("app", "")]));
    assert!(!m("app == ''", &[]));
}

#[test]
fn sets() {
    assert!(m("app in {'a', 'b'}", &[("app", "b")]));
    assert!(!m("app in {'a', 'b'}", &[("app", "c")]));
    assert!(!m("app in {'a'}", &[]), "in needs the label");
    assert!(!m("app in {}", &[("app", "a")]));
    assert!(m("app not in {'a', \"b\"}", &[("app", "c")]));
    assert!(m("app not in {'a'}", &[]), "not in holds when absent");
    assert!(!m("app not in {'a'}", &[("app", "a")]));
    assert!(m("app not in {}", &[("app", "a")]));
    assert!(m("app\tnot \t in{'a','b'}", &[("app", "x")]), "blanks and tabs anywhere between");
}

#[test]
fn has_all_global() {
    assert!(m("has(app)", &[("app", "")]));
    assert!(!m("has(app)", &[("other", "x")]));
    assert!(m("!has(app)", &[]));
    assert!(m("all()", &[]));
    assert!(m("", &[]), "the empty selector is all()");
    assert!(m("  \t ", &[("a", "b")]));
    assert!(m("global()", &[("app", "x")]));
    assert!(!m("global()", &[(NAMESPACE_LABEL, "x")]));
    assert!(m("has( app )", &[("app", "")]));
    assert!(m("all ( )", &[]));
}

#[test]
fn string_operators() {
    assert!(m("name contains 'ell'", &[("name", "hello")]));
    assert!(!m("name contains 'x'", &[("name", "hello")]));
    assert!(!m("name contains ''", &[]), "contains needs the label");
    assert!(m("name starts with 'he'", &[("name", "hello")]));
    assert!(!m("name starts with 'lo'", &[("name", "hello")]));
    assert!(m("name ends with 'lo'", &[("name", "hello")]));
    assert!(!m("name ends with 'he'", &[("name", "hello")]));
    assert!(!m("name ends with 'o'", &[]));
}

#[test]
fn precedence_and_grouping() {
    // `!` binds tighter than `&&`, `&&` tighter than `||`.
    let s = Selector::parse("a == 'x' || b == 'y' && c == 'z'").unwrap();
    assert!(s.matches(&labels(&[("a", "x")])));
    assert!(!s.matches(&labels(&[("b", "y")])));
    let s = Selector::parse("(a == 'x' || b == 'y') && c == 'z'").unwrap();
    assert!(!s.matches(&labels(&[("a", "x")])));
    assert!(s.matches(&labels(&[("b", "y"), ("c", "z")])));
    assert!(m("!a == 'x' && has(b)", &[("a", "y"), ("b", "")]));
    assert!(!m("!(a == 'x' || has(b))", &[("b", "")]));
    assert!(m("!!has(a)", &[("a", "")]));
    assert!(m("((has(a)))", &[("a", "")]));
}

#[test]
fn keys_take_dots_slashes_and_dashes() {
    assert!(m("projectcalico.org/namespace == 'x'", &[(NAMESPACE_LABEL, "x")]));
    assert!(m("k8s-app == 'kube-dns'", &[("k8s-app", "kube-dns")]));
    assert!(m("all == 'x'", &[("all", "x")]), "a label may be named all");
    assert!(m("has(has)", &[("has", "")]));
    assert!(m("in in {'a'}", &[("in", "a")]));
    assert!(m("notes == 'x'", &[("notes", "x")]));
}

#[test]
fn display_parses_back() {
    for text in [
        "a == 'x' || b == 'y' && c == 'z'",
        "(a == 'x' || b == 'y') && !(c in {'1', '2'})",
        "!has(a) && b not in {} && c contains 'q' || d starts with 'e' && f ends with 'g'",
        "global() || all()",
        "a == 'say \"hi\"'",
        "!!a != 'b'",
    ] {
        let s = Selector::parse(text).unwrap();
        let again = Selector::parse(&s.to_string()).unwrap();
        assert_eq!(again, s, "{text} → {s}");
    }
}

#[test]
fn prefixed_reads_the_inherited_labels() {
    let s = Selector::parse("team == 'a' && !has(x)").unwrap().prefixed("pcns.");
    assert!(s.matches(&labels(&[("pcns.team", "a")])));
    assert!(!s.matches(&labels(&[("team", "a")])));
}

#[test]
fn errors_say_where_and_what() {
    let e = err("app == web");
    assert_eq!(e.column, 8);
    assert!(e.expected.contains("quoted string"), "{e}");
    let e = err("app = 'web'");
    assert_eq!(e.column, 5);
    assert!(e.expected.contains("an operator after the label `app`"), "{e}");
    let e = err("app == 'web");
    assert_eq!(e.column, 8, "the opening quote");
    assert!(e.expected.contains("closed by '"), "{e}");
    let e = err("has(app");
    assert_eq!(e.column, 8);
    assert!(e.found.contains("end of the selector"), "{e}");
    let e = err("a == 'x'\n&& b == 'y'");
    assert_eq!(e.column, 9);
    assert!(e.found.contains("newline"), "{e}");
    let e = err("a == 'x' &&");
    assert_eq!(e.column, 12);
    assert!(e.expected.contains("a label"), "{e}");
    let e = err("a == 'x' b == 'y'");
    assert_eq!(e.column, 10);
    assert!(e.expected.contains("`&&`, `||`"), "{e}");
    let e = err("(a == 'x'");
    assert_eq!(e.column, 10);
    assert!(e.expected.contains("`)`"), "{e}");
    let e = err("a in {'x' 'y'}");
    assert_eq!(e.column, 11);
    assert!(e.expected.contains("`,` or `}`"), "{e}");
    let e = err("a in 'x'");
    assert!(e.expected.contains("`{`"), "{e}");
    let e = err("a not 'x'");
    assert_eq!(e.column, 7);
    assert!(e.expected.contains("`in` after `not`"), "{e}");
    let e = err("a starts 'x'");
    assert!(e.expected.contains("`with` after `starts`"), "{e}");
    let e = err("all(");
    assert!(e.expected.contains("`)` after `all(`"), "{e}");
    let e = err("has()");
    assert_eq!(e.column, 5);
    let e = err("a == 'x' && && b == 'y'");
    assert_eq!(e.column, 13);
    let e = err("a == 'é' || ü == 'x'");
    assert_eq!(e.column, 13, "columns count characters");
    let e = err("a == 'x' |");
    assert_eq!(e.column, 10);
    assert!(e.to_string().starts_with("column 10: expected"), "{e}");
}

#[test]
fn nesting_and_length_are_bounded() {
    let deep = format!("{}has(a){}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
    assert!(Selector::parse(&deep).is_ok());
    let deeper = format!("{}has(a){}", "(".repeat(MAX_NESTING + 1), ")".repeat(MAX_NESTING + 1));
    let e = err(&deeper);
    assert_eq!(e.column, MAX_NESTING + 1);
    assert!(e.expected.contains("nested"), "{e}");
    let e = err(&format!("{}has(a)", "!".repeat(MAX_NESTING + 1)));
    assert!(e.expected.contains("nested"), "{e}");
    // A long chain is flat, not deep.
    let chain = vec!["has(a)"; 5000].join(" || ");
    let s = Selector::parse(&chain).unwrap();
    assert!(matches!(&s, Selector::Or(v) if v.len() == 5000));
    assert!(s.matches(&labels(&[("a", "")])));
    let e = err(&"a".repeat(MAX_LENGTH + 1));
    assert!(e.expected.contains("at most"), "{e}");
}

#[test]
fn and_flattens() {
    let s = Selector::parse("has(a) && has(b)")
        .unwrap()
        .and(Selector::parse("has(c) && has(d)").unwrap());
    assert!(matches!(&s, Selector::And(v) if v.len() == 4));
    assert_eq!(Selector::All.and(Selector::Has("x".into())), Selector::Has("x".into()));
}
