//! iproute2 (`ip -batch`) and sysctls inside namespaces.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::LabError;

/// A started `ip -batch -` run; [`Batch::wait`] reports its failure.
pub(crate) struct Batch {
    child: Child,
    what: String,
}

/// Starts `ip [-n NETNS] [-force] -batch -` with `commands`, one a line.
pub(crate) fn start(
    netns: Option<&str>,
    force: bool,
    commands: &[String],
) -> Result<Batch, LabError> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    if force {
        cmd.arg("-force");
    }
    cmd.args(["-batch", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let what = match netns {
        Some(ns) => format!("ip -n {ns} -batch"),
        None => "ip -batch".to_string(),
    };
    let mut child =
        cmd.spawn().map_err(|source| LabError::Io { what: format!("run `{what}`"), source })?;
    let input = commands.join("\n") + "\n";
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|source| LabError::Io { what: format!("write to `{what}`"), source })?;
    }
    Ok(Batch { child, what: format!("{what}: {}", commands.join("; ")) })
}

impl Batch {
    pub(crate) fn wait(self) -> Result<(), LabError> {
        let out = self
            .child
            .wait_with_output()
            .map_err(|source| LabError::Io { what: format!("wait for `{}`", self.what), source })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(LabError::Command {
                command: self.what,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

/// Runs one batch to completion.
pub(crate) fn run(netns: Option<&str>, commands: &[String]) -> Result<(), LabError> {
    start(netns, false, commands)?.wait()
}

/// Starts batches in parallel and waits for all of them; the first failure
/// is reported (after every batch has finished).
pub(crate) fn run_parallel(batches: Vec<(Option<String>, Vec<String>)>) -> Result<(), LabError> {
    let mut started = Vec::new();
    let mut first_err = None;
    for (ns, commands) in &batches {
        match start(ns.as_deref(), false, commands) {
            Ok(b) => started.push(b),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    for b in started {
        if let Err(e) = b.wait() {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Deletes named namespaces (every one is attempted: `-force`); checks
/// afterwards that none remains.
pub(crate) fn delete_namespaces(names: &[String]) -> Result<(), LabError> {
    if names.is_empty() {
        return Ok(());
    }
    let commands: Vec<String> = names.iter().map(|n| format!("netns del {n}")).collect();
    let result = start(None, true, &commands)?.wait();
    let remaining: Vec<String> =
        names.iter().filter(|n| crate::naming::netns_path(n).exists()).cloned().collect();
    if !remaining.is_empty() {
        tracing::warn!(?remaining, ?result, "lab namespaces survived `ip netns del`");
        return Err(LabError::Teardown { remaining });
    }
    Ok(())
}

/// Writes sysctls (`(path under /proc/sys, value)`) inside the namespace at
/// `netns`, on a thread of its own (a sysctl file under `net/` belongs to the
/// namespace of the thread that opens it).
pub(crate) fn sysctls(netns: &Path, settings: Vec<(String, String)>) -> Result<(), LabError> {
    palisade_netns::run_in(netns, move || -> Result<(), LabError> {
        for (path, value) in settings {
            let full = Path::new("/proc/sys").join(&path);
            std::fs::write(&full, &value).map_err(|source| LabError::Io {
                what: format!("set {} = {value}", full.display()),
                source,
            })?;
        }
        Ok(())
    })?
}
