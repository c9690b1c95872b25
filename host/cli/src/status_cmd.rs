//! `palisade status`: what a running `palisade run --source kube` has
//! programmed, read from its health endpoint.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// Show what the running daemon has programmed, per pod.
///
/// Reads `/status` (or, with --pod, `/readyz?pod=NS/NAME`) from the health
/// address of `palisade run --source kube` on this node. With --pod the
/// exit code says whether that pod's policy is in force (0) or not yet (1),
/// so that scripts and init containers can wait on it.
///
/// Examples:
///   palisade status
///   palisade status --pod shop/web && echo enforced
///   palisade status --addr 127.0.0.1:9464 -o json
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    /// The daemon's health address (its --health-addr).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub addr: SocketAddr,
    /// Only this pod (`namespace/name`): is its policy programmed?
    #[arg(long)]
    pub pod: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// GET `path`: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("connecting to the daemon's health address {addr} (is `palisade run --source kube` running with --health-addr {addr}?)"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{addr}{path}: not an HTTP answer"))?;
    Ok((code, body.to_string()))
}

/// The table of a `/status` document.
pub fn table(status: &Value) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut out = format!(
        "READY  GENERATION  API SERVER\n{:<6} {:<11} {}\n",
        yes(status["ready"].as_bool().unwrap_or(false)),
        status["generation"].as_u64().unwrap_or(0),
        if status["api_reachable"].as_bool().unwrap_or(false) {
            "reachable"
        } else {
            "unreachable"
        },
    );
    let pods = status["endpoints"].as_array().cloned().unwrap_or_default();
    let width =
        pods.iter().filter_map(|p| p["pod"].as_str()).map(str::len).max().unwrap_or(3).max(3);
    out.push_str(&format!("\n{:<width$}  PROGRAMMED  SINCE GENERATION\n", "POD"));
    for p in &pods {
        out.push_str(&format!(
            "{:<width$}  {:<10}  {}\n",
            p["pod"].as_str().unwrap_or_default(),
            yes(p["programmed"].as_bool().unwrap_or(false)),
            p["since_generation"].as_u64().unwrap_or(0)
        ));
    }
    if pods.is_empty() {
        out.push_str("(no endpoint programmed on this node)\n");
    }
    out
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if let Some(pod) = &args.pod {
        if !pod.contains('/') {
            bail!("--pod `{pod}`: expected namespace/name");
        }
        let (code, body) = get(args.addr, &format!("/readyz?pod={pod}"))?;
        let programmed = code == 200;
        match args.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"pod": pod, "programmed": programmed, "detail": body.trim()})
            ),
            Output::Table => print!("{body}"),
        }
        return Ok(if programmed { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let (code, body) = get(args.addr, "/status")?;
    if code != 200 {
        bail!("{}/status answered {code}: {}", args.addr, body.trim());
    }
    let status: Value = serde_json::from_str(&body).context("/status is not JSON")?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Output::Table => print!("{}", table(&status)),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_programmed_pod() {
        let status = serde_json::json!({"ready": true, "api_reachable": true, "generation": 7,
            "endpoints": [{"pod": "shop/web", "programmed": true, "since_generation": 3}]});
        let t = table(&status);
        assert!(
            t.starts_with("READY  GENERATION  API SERVER\nyes    7           reachable\n"),
            "{t}"
        );
        assert!(t.contains("shop/web  yes         3\n"), "{t}");
        let empty = table(&serde_json::json!({"ready": false, "endpoints": []}));
        assert!(empty.contains("(no endpoint programmed on this node)"), "{empty}");
    }
}
