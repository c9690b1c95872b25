//! Probes: one new connection (or datagram) from inside a source
//! namespace, classified by what came back.

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, sockopt, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn,
};
use palisade_model::Protocol;

/// The timeout of a probe unless told otherwise.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// One probe: a new connection from endpoint `from` to `to` on `port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeRequest {
    /// The key of a lab endpoint (`ns/name`, `ip:...`, `node:...`).
    pub from: String,
    /// The key of a lab endpoint, or `ip:A.B.C.D` for any address (one
    /// that no endpoint has, too: such a probe is expected to time out).
    pub to: String,
    pub protocol: Protocol,
    pub port: u16,
}

impl ProbeRequest {
    pub fn new(from: &str, to: &str, protocol: Protocol, port: u16) -> ProbeRequest {
        ProbeRequest { from: from.to_string(), to: to.to_string(), protocol, port }
    }
}

/// What came back on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// TCP/SCTP connected, or a UDP datagram came back. `by` is the
    /// identity the answering listener sent (`None` if none was read in
    /// time).
    Answered { by: Option<String> },
    /// TCP RST, SCTP ABORT, or ICMP port unreachable for UDP: the packet
    /// reached the destination host, where nothing listens on the port.
    Refused,
    /// Nothing came back before the timeout (dropped on the way).
    TimedOut,
    /// An ICMP error other than port unreachable came back (host or
    /// network unreachable, administratively prohibited): `errno` text.
    Unreachable(String),
    /// The probe could not be made: unknown endpoint, protocol not
    /// supported by the kernel (SCTP), socket error. Not a verdict.
    Failed(String),
}

/// The result of a probe with the scenario format's semantics: `allowed`
/// iff the packet reached the destination (answered or refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub allowed: bool,
    pub observed: Observed,
    /// One line for people: what happened, and who answered when it was
    /// not the intended endpoint.
    pub detail: String,
    pub elapsed: Duration,
}

impl ProbeOutcome {
    pub(crate) fn failed(message: String) -> ProbeOutcome {
        ProbeOutcome {
            allowed: false,
            detail: message.clone(),
            observed: Observed::Failed(message),
            elapsed: Duration::ZERO,
        }
    }

    /// True when the probe gave no verdict ([`Observed::Failed`]).
    pub fn is_failure(&self) -> bool {
        matches!(self.observed, Observed::Failed(_))
    }
}

/// A probe resolved to addresses, ready to run inside the source namespace.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub dst: SocketAddrV4,
    pub protocol: Protocol,
    /// The identity the intended destination answers with, if it is a lab
    /// endpoint.
    pub expect: Option<String>,
    pub to: String,
}

/// Runs a probe on the calling thread (already inside the source namespace).
pub(crate) fn run(p: &Resolved, timeout: Duration) -> ProbeOutcome {
    let start = Instant::now();
    let observed = match p.protocol {
        Protocol::Tcp => stream(SockProtocol::Tcp, p.dst, start + timeout),
        Protocol::Sctp => stream(SockProtocol::Sctp, p.dst, start + timeout),
        Protocol::Udp => datagram(p.dst, start + timeout),
    };
    let elapsed = start.elapsed();
    let allowed = matches!(observed, Observed::Answered { .. } | Observed::Refused);
    let proto = p.protocol.as_str();
    let port = p.dst.port();
    let detail = match &observed {
        Observed::Answered { by: Some(by) } => match &p.expect {
            Some(want) if want != by => {
                format!("{port}/{proto} answered by `{by}`, not by `{want}`: another host answered")
            }
            _ => format!("{port}/{proto} answered by {by}"),
        },
        Observed::Answered { by: None } => {
            format!("{port}/{proto} connected to {}; no identity came back", p.to)
        }
        Observed::Refused => match p.protocol {
            Protocol::Tcp => {
                format!("{port}/{proto} refused (RST): reached {}, nothing listens", p.to)
            }
            Protocol::Udp => {
                format!("{port}/{proto} ICMP port unreachable: reached {}, nothing listens", p.to)
            }
            Protocol::Sctp => format!("{port}/{proto} aborted: reached {}, nothing listens", p.to),
        },
        Observed::TimedOut => {
            format!("{port}/{proto} to {}: no answer within {} ms", p.to, timeout.as_millis())
        }
        Observed::Unreachable(e) => format!("{port}/{proto} to {}: unreachable ({e})", p.to),
        Observed::Failed(e) => format!("{port}/{proto} to {}: probe failed: {e}", p.to),
    };
    ProbeOutcome { allowed, observed, detail, elapsed }
}

/// Source ports handed out in turn (20000-59999), so that no probe reuses
/// the 5-tuple (and conntrack entry) of a recent one.
fn next_source_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(7919);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    20000 + (base.wrapping_add(n) % 40000) as u16
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn classify(e: Errno) -> Observed {
    match e {
        Errno::ECONNREFUSED => Observed::Refused,
        Errno::ETIMEDOUT => Observed::TimedOut,
        Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::EACCES | Errno::EPERM => {
            Observed::Unreachable(e.desc().to_string())
        }
        _ => Observed::Failed(e.desc().to_string()),
    }
}

fn classify_io(e: &std::io::Error) -> Observed {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Observed::TimedOut,
        _ => match e.raw_os_error() {
            Some(code) => classify(Errno::from_raw(code)),
            None => Observed::Failed(e.to_string()),
        },
    }
}

/// A nonblocking stream socket bound to a fresh source port.
fn bound_stream(protocol: SockProtocol) -> Result<OwnedFd, Observed> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        protocol,
    )
    .map_err(|e| match (protocol, e) {
        (SockProtocol::Sctp, Errno::EPROTONOSUPPORT | Errno::ESOCKTNOSUPPORT) => {
            Observed::Failed(format!("SCTP is not supported by this kernel ({})", e.desc()))
        }
        _ => Observed::Failed(format!("socket: {}", e.desc())),
    })?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)
        .map_err(|e| Observed::Failed(format!("SO_REUSEADDR: {}", e.desc())))?;
    let mut last = Errno::EADDRINUSE;
    for _ in 0..16 {
        let src = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, next_source_port()));
        match socket::bind(fd.as_raw_fd(), &src) {
            Ok(()) => return Ok(fd),
            Err(e @ Errno::EADDRINUSE) => last = e,
            Err(e) => return Err(Observed::Failed(format!("bind: {}", e.desc()))),
        }
    }
    Err(Observed::Failed(format!("bind: no free source port ({})", last.desc())))
}

/// TCP or SCTP: connect (answered or refused), then read the identity.
fn stream(protocol: SockProtocol, dst: SocketAddrV4, deadline: Instant) -> Observed {
    let fd = match bound_stream(protocol) {
        Ok(fd) => fd,
        Err(o) => return o,
    };
    match socket::connect(fd.as_raw_fd(), &SockaddrIn::from(dst)) {
        Ok(()) => {}
        Err(Errno::EINPROGRESS) => loop {
            let left = remaining(deadline);
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) if remaining(deadline).is_zero() => return Observed::TimedOut,
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => break,
                Err(e) => return Observed::Failed(format!("poll: {}", e.desc())),
            }
        },
        Err(e) => return classify(e),
    }
    match socket::getsockopt(&fd, sockopt::SocketError) {
        Ok(0) => {}
        Ok(code) => return classify(Errno::from_raw(code)),
        Err(e) => return Observed::Failed(format!("SO_ERROR: {}", e.desc())),
    }
    // Connected: the destination was reached. Read its identity (the
    // listener writes it and closes), with a little grace past the deadline.
    let mut s = TcpStream::from(fd);
    let read_budget = remaining(deadline).max(Duration::from_millis(100));
    if s.set_nonblocking(false).is_err() || s.set_read_timeout(Some(read_budget)).is_err() {
        return Observed::Answered { by: None };
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < 1024 && !got.contains(&b'\n') {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    Observed::Answered { by: identity(&got) }
}

/// UDP: a datagram; the answer, an ICMP port unreachable, or silence.
fn datagram(dst: SocketAddrV4, deadline: Instant) -> Observed {
    let mut sock = None;
    for _ in 0..16 {
        match UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, next_source_port())) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) if e.kind() == ErrorKind::AddrInUse => continue,
            Err(e) => return Observed::Failed(format!("bind: {e}")),
        }
    }
    let Some(sock) = sock else {
        return Observed::Failed("bind: no free source port".into());
    };
    if let Err(e) = sock.connect(dst) {
        return Observed::Failed(format!("connect: {e}"));
    }
    if let Err(e) = sock.send(b"palisade-lab probe\n") {
        return classify_io(&e);
    }
    let mut buf = [0u8; 1024];
    loop {
        let left = remaining(deadline);
        if left.is_zero() {
            return Observed::TimedOut;
        }
        if let Err(e) = sock.set_read_timeout(Some(left)) {
            return Observed::Failed(format!("SO_RCVTIMEO: {e}"));
        }
        match sock.recv(&mut buf) {
            Ok(n) => return Observed::Answered { by: identity(&buf[..n]) },
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return classify_io(&e),
        }
    }
}

fn identity(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next().unwrap_or("").trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// Whether this kernel can make SCTP sockets (checked in the calling
/// thread's namespace; SCTP support is kernel-wide).
pub fn sctp_supported() -> Result<(), String> {
    socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Sctp,
    )
    .map(drop)
    .map_err(|e| {
        format!(
            "SCTP is not supported by this kernel: \
                 socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) fails with {e}"
        )
    })
}
