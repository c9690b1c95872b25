//! Probes: one new connection (or datagram) from inside a source
//! namespace, classified by what came back.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
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
use socket2::{Domain, Protocol as IpProtocol, SockAddr, Socket, Type};

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
    /// On a kernel without SCTP, also an SCTP INIT answered by ICMP
    /// protocol unreachable: it reached the host, which has no SCTP stack
    /// (the probe's `detail` says so).
    Refused,
    /// Nothing came back before the timeout (dropped on the way).
    TimedOut,
    /// An ICMP error other than port unreachable came back (host or
    /// network unreachable, administratively prohibited): `errno` text.
    Unreachable(String),
    /// The probe could not be made: unknown endpoint, socket error. Not a
    /// verdict.
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
    /// SCTP at the packet level (the kernel has no SCTP sockets): a raw
    /// INIT, answered by the destination kernel's ICMP protocol unreachable.
    pub sctp_raw: bool,
}

/// Runs a probe on the calling thread (already inside the source namespace).
pub(crate) fn run(p: &Resolved, timeout: Duration) -> ProbeOutcome {
    let start = Instant::now();
    let observed = match p.protocol {
        Protocol::Tcp => stream(SockProtocol::Tcp, p.dst, start + timeout),
        Protocol::Sctp if p.sctp_raw => sctp_init(p.dst, start + timeout),
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
            Protocol::Sctp if p.sctp_raw => format!(
                "{port}/{proto} INIT to {}: ICMP protocol unreachable: reached the host, \
                 no SCTP stack",
                p.to
            ),
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

/// IP protocol number of SCTP.
const IPPROTO_SCTP: u8 = 132;
/// A raw socket of this protocol is send-only (`raw(7)`), and we write the
/// IP header ourselves.
const IPPROTO_RAW: i32 = 255;

/// SCTP at the packet level, for kernels without SCTP sockets: one INIT
/// (fresh source port, random initiate tag) over a raw socket, and the
/// answer read from a raw ICMP socket opened before sending. The
/// destination kernel, without SCTP, answers ICMP protocol unreachable:
/// the INIT reached the host (`Refused`). Silence until the deadline is
/// `TimedOut`; other ICMP destination unreachables are `Unreachable`.
///
/// The INIT goes out through an `IPPROTO_RAW` socket with its own IP
/// header rather than a raw socket of protocol 132: a raw socket of
/// protocol 132 also *receives* SCTP, and a namespace holding one delivers
/// incoming INITs to it instead of answering protocol unreachable, so two
/// probes in opposite directions at once would each swallow the other's
/// INIT.
fn sctp_init(dst: SocketAddrV4, deadline: Instant) -> Observed {
    let icmp = match Socket::new(Domain::IPV4, Type::RAW, Some(IpProtocol::ICMPV4)) {
        Ok(s) => s,
        Err(e) => return Observed::Failed(format!("raw ICMP socket: {e}")),
    };
    let raw = match Socket::new(Domain::IPV4, Type::RAW, Some(IpProtocol::from(IPPROTO_RAW))) {
        Ok(s) => s,
        Err(e) => return Observed::Failed(format!("raw IP socket: {e}")),
    };
    let init = SctpInit {
        src_port: next_source_port(),
        dst_port: dst.port(),
        initiate_tag: random_u32().max(1),
        initial_tsn: random_u32(),
    };
    let packet = ipv4_packet(*dst.ip(), IPPROTO_SCTP, &init.encode());
    if let Err(e) = raw.send_to(&packet, &SockAddr::from(SocketAddrV4::new(*dst.ip(), 0))) {
        return classify_io(&e);
    }
    let mut buf = [0u8; 1500];
    loop {
        let left = remaining(deadline);
        if left.is_zero() {
            return Observed::TimedOut;
        }
        // A zero timeval would block forever.
        if let Err(e) = icmp.set_read_timeout(Some(left.max(Duration::from_millis(1)))) {
            return Observed::Failed(format!("SO_RCVTIMEO: {e}"));
        }
        match (&icmp).read(&mut buf) {
            Ok(n) => {
                if let Some(observed) = icmp_answer(&buf[..n], *dst.ip(), &init) {
                    return observed;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => match classify_io(&e) {
                Observed::TimedOut => continue,
                other => return other,
            },
        }
    }
}

/// The SCTP INIT of a packet-level probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SctpInit {
    pub src_port: u16,
    pub dst_port: u16,
    pub initiate_tag: u32,
    pub initial_tsn: u32,
}

impl SctpInit {
    /// The SCTP packet (RFC 9260): common header with verification tag 0
    /// and the CRC32c checksum, one INIT chunk without parameters.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(32);
        p.extend_from_slice(&self.src_port.to_be_bytes());
        p.extend_from_slice(&self.dst_port.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes()); // verification tag: 0 in an INIT
        p.extend_from_slice(&0u32.to_be_bytes()); // checksum, filled below
        p.push(1); // chunk type INIT
        p.push(0); // flags
        p.extend_from_slice(&20u16.to_be_bytes()); // chunk length
        p.extend_from_slice(&self.initiate_tag.to_be_bytes());
        p.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
        p.extend_from_slice(&10u16.to_be_bytes()); // outbound streams
        p.extend_from_slice(&10u16.to_be_bytes()); // max inbound streams
        p.extend_from_slice(&self.initial_tsn.to_be_bytes());
        // The CRC32c goes on the wire least significant byte first.
        let sum = crc32c(&p);
        p[8..12].copy_from_slice(&sum.to_le_bytes());
        p
    }
}

/// An IPv4 packet with `payload`, for an `IPPROTO_RAW` socket: the kernel
/// fills in the source address, the identification, the total length and
/// the header checksum.
fn ipv4_packet(dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    let mut p = Vec::with_capacity(usize::from(total));
    p.push(0x45); // version 4, header length 5 words
    p.push(0); // DSCP / ECN
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes()); // identification: the kernel's
    p.extend_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    p.push(64); // TTL
    p.push(protocol);
    p.extend_from_slice(&0u16.to_be_bytes()); // header checksum: the kernel's
    p.extend_from_slice(&Ipv4Addr::UNSPECIFIED.octets()); // source: the kernel's
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// What an ICMP packet (with its IPv4 header, as a raw socket reads it)
/// says about `init` sent to `dst`: `None` unless it is a destination
/// unreachable (or time exceeded) quoting exactly that INIT (destination,
/// protocol 132, source port, destination port, initiate tag when quoted).
pub(crate) fn icmp_answer(packet: &[u8], dst: Ipv4Addr, init: &SctpInit) -> Option<Observed> {
    let outer = usize::from(packet.first()? & 0x0f) * 4;
    let icmp = packet.get(outer..)?;
    let (kind, code) = (*icmp.first()?, *icmp.get(1)?);
    let quoted = icmp.get(8..)?;
    if quoted.first()? >> 4 != 4 {
        return None;
    }
    let inner = usize::from(quoted[0] & 0x0f) * 4;
    if *quoted.get(9)? != IPPROTO_SCTP || quoted.get(16..20)? != dst.octets() {
        return None;
    }
    let sctp = quoted.get(inner..)?;
    if sctp.get(0..2)? != init.src_port.to_be_bytes()
        || sctp.get(2..4)? != init.dst_port.to_be_bytes()
    {
        return None;
    }
    // The initiate tag is quoted unless the ICMP was cut short (a quote
    // of 8 bytes is enough by RFC 792).
    if let Some(tag) = sctp.get(16..20) {
        if tag != init.initiate_tag.to_be_bytes() {
            return None;
        }
    }
    match (kind, code) {
        (3, 2 | 3) => Some(Observed::Refused),
        (3, code) => Some(Observed::Unreachable(format!(
            "ICMP destination unreachable: {}",
            unreachable_name(code)
        ))),
        (11, _) => Some(Observed::Unreachable("ICMP time exceeded".into())),
        _ => None,
    }
}

fn unreachable_name(code: u8) -> String {
    match code {
        0 => "network unreachable".into(),
        1 => "host unreachable".into(),
        4 => "fragmentation needed".into(),
        9 | 10 | 13 => "administratively prohibited".into(),
        other => format!("code {other}"),
    }
}

/// CRC32c (Castagnoli), as SCTP checksums its packets.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

/// 32 random bits (std's randomly keyed hasher; no cryptographic claim).
fn random_u32() -> u32 {
    static SALT: AtomicU32 = AtomicU32::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(SALT.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

fn identity(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next().unwrap_or("").trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// Whether this kernel can make SCTP sockets (checked in the calling
/// thread's namespace; SCTP support is kernel-wide). Without them, the lab
/// probes SCTP at the packet level (a raw INIT; ICMP protocol unreachable
/// from the destination kernel = reached).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    fn init() -> SctpInit {
        SctpInit { src_port: 40000, dst_port: 80, initiate_tag: 0x1234_5678, initial_tsn: 7 }
    }

    #[test]
    fn an_init_is_one_chunk_with_tag_zero_and_a_valid_checksum() {
        let p = init().encode();
        assert_eq!(p.len(), 32);
        assert_eq!(&p[0..4], &[0x9c, 0x40, 0, 80]);
        assert_eq!(&p[4..8], &[0; 4], "verification tag 0");
        assert_eq!(&p[12..16], &[1, 0, 0, 20], "INIT, 20 bytes");
        assert_eq!(&p[16..20], &0x1234_5678u32.to_be_bytes());
        // Checksum over the packet with a zero checksum field, stored LSB first.
        let mut zeroed = p.clone();
        zeroed[8..12].copy_from_slice(&[0; 4]);
        assert_eq!(u32::from_le_bytes([p[8], p[9], p[10], p[11]]), crc32c(&zeroed));
    }

    /// An ICMP error as a raw socket reads it: outer IP header, ICMP
    /// header, the quoted IP packet (cut to `quote` bytes of SCTP).
    fn icmp(
        kind: u8,
        code: u8,
        dst: Ipv4Addr,
        protocol: u8,
        init: &SctpInit,
        quote: usize,
    ) -> Vec<u8> {
        let mut quoted = ipv4_packet(dst, protocol, &init.encode()[..quote]);
        quoted[12..16].copy_from_slice(&[10, 0, 0, 1]);
        let mut p = ipv4_packet(Ipv4Addr::new(10, 0, 0, 1), 1, &[kind, code, 0, 0, 0, 0, 0, 0]);
        p.append(&mut quoted);
        p
    }

    #[test]
    fn only_the_icmp_quoting_our_init_is_our_answer() {
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let ours = init();
        let unreach = |code, to, proto, i: &SctpInit, quote| {
            icmp_answer(&icmp(3, code, to, proto, i, quote), dst, &ours)
        };
        assert_eq!(unreach(2, dst, 132, &ours, 32), Some(Observed::Refused));
        assert_eq!(unreach(2, dst, 132, &ours, 8), Some(Observed::Refused), "short quote");
        assert!(
            matches!(unreach(13, dst, 132, &ours, 32), Some(Observed::Unreachable(m)) if m.contains("prohibited"))
        );
        assert!(
            matches!(unreach(1, dst, 132, &ours, 32), Some(Observed::Unreachable(m)) if m.contains("host unreachable"))
        );
        // Someone else's probe: another destination, protocol, port or tag.
        assert_eq!(unreach(2, Ipv4Addr::new(10, 0, 0, 3), 132, &ours, 32), None);
        assert_eq!(unreach(3, dst, 17, &ours, 32), None);
        assert_eq!(unreach(2, dst, 132, &SctpInit { src_port: 40001, ..ours }, 32), None);
        assert_eq!(unreach(2, dst, 132, &SctpInit { dst_port: 81, ..ours }, 32), None);
        assert_eq!(unreach(2, dst, 132, &SctpInit { initiate_tag: 1, ..ours }, 32), None);
        // Not an error about a packet: an echo reply, garbage.
        assert_eq!(icmp_answer(&icmp(0, 0, dst, 132, &ours, 32), dst, &ours), None);
        assert_eq!(icmp_answer(&[0x45, 0, 0], dst, &ours), None);
        assert_eq!(icmp_answer(&[], dst, &ours), None);
    }

    #[test]
    fn random_tags_differ() {
        let tags: std::collections::BTreeSet<u32> = (0..64).map(|_| random_u32()).collect();
        assert!(tags.len() > 60, "{tags:?}");
    }
}
