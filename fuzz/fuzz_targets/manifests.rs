//! Any manifest text, as a manifest directory's file is read (YAML, one
//! or more documents), through every dialect's compiler and the resolver:
//! nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dialects::{Compiler, Settings};
use palisade_resolver::Resolver;
use serde::Deserialize;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut compiler = Compiler::new(Settings::default());
    let mut resolver = Resolver::new(Default::default());
    for doc in serde_yaml::Deserializer::from_str(text).take(16) {
        let Ok(value) = serde_json::Value::deserialize(doc) else { return };
        if let Ok(compiled) = compiler.apply(&value) {
            resolver.handle_all(compiled.events);
        }
    }
    let _ = resolver.take_delta();
});
