//! Compiles the TC classifier (bpf/palisade_tc.c) with clang into OUT_DIR;
//! the plugin embeds the object (`include_bytes!`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "bpf/palisade_tc.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()))
        .join("palisade_tc.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .args(["-I/usr/include/x86_64-linux-gnu", "-c", source, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile {source} ({s})"),
        Err(e) => panic!(
            "cannot run {clang} to compile {source}: {e} (scripts/setup installs clang, llvm and libbpf-dev)"
        ),
    }
}
