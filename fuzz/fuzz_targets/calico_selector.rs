//! Calico's selector parser on any text: it never panics; what parses
//! prints back to text that parses to the same selector, and evaluates on
//! a label map without panicking.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use palisade_model::calico_selector::Selector;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(sel) = Selector::parse(text) else { return };
    let printed = sel.to_string();
    let again = Selector::parse(&printed)
        .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, sel, "{text:?} → {printed:?}");
    let labels: BTreeMap<String, String> =
        [("app", "web"), ("projectcalico.org/namespace", "x"), ("", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let _ = sel.matches(&labels);
    let _ = sel.prefixed("pcns.").matches(&labels);
});
