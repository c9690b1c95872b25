//! The listeners of one endpoint: a thread inside its namespace that binds
//! every declared port and answers each connection or datagram with the
//! endpoint's identity (`KEY\n`).

use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockProtocol, SockType, SockaddrIn,
};
use palisade_model::Protocol;
use palisade_netns::NetnsError;

use crate::LabError;

/// Sysctls every lab endpoint gets: no rate limit on ICMP errors, so that
/// every probe to a closed UDP port gets its port unreachable.
const ENDPOINT_SYSCTLS: &[(&str, &str)] =
    &[("net/ipv4/icmp_ratemask", "0"), ("net/ipv4/icmp_ratelimit", "0")];

/// A running listener thread. Dropping it stops the thread and closes its
/// sockets.
pub(crate) struct Listener {
    /// Write end of the wake pipe: closing it wakes the thread (POLLHUP).
    stop: Option<OwnedFd>,
    handle: Option<JoinHandle<Result<(), NetnsError>>>,
}

enum Sock {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Sock {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Sock::Tcp(l) => l.as_fd(),
            Sock::Udp(u) => u.as_fd(),
        }
    }
}

impl Listener {
    /// Starts the listener of `identity` in the namespace at `netns` and
    /// waits until every port is bound. SCTP ports are bound only when
    /// `sctp` is true (the kernel supports it).
    pub(crate) fn start(
        identity: &str,
        netns: &Path,
        ports: &[(Protocol, u16)],
        sctp: bool,
    ) -> Result<Listener, LabError> {
        // Close-on-exec: a process spawned while the lab runs (a daemon
        // under test) must not hold the write end, or closing ours would
        // never wake the listener and its drop would wait forever.
        let (wake, stop) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| LabError::Io { what: "create a pipe".into(), source: e.into() })?;
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), LabError>>(1);
        let identity = identity.to_string();
        let ports = ports.to_vec();
        let key = identity.clone();
        let handle = palisade_netns::spawn_in(netns, move || {
            let sockets = match setup(&identity, &ports, sctp) {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            drop(ready_tx);
            serve(format!("{identity}\n").as_bytes(), &sockets, &wake);
        })?;
        let mut listener = Listener { stop: Some(stop), handle: Some(handle) };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(listener),
            Ok(Err(e)) => Err(e),
            // The thread ended before reporting: it could not enter the
            // namespace (or panicked).
            Err(_) => match listener.handle.take().map(JoinHandle::join) {
                Some(Ok(Err(e))) => Err(e.into()),
                _ => Err(LabError::Listener {
                    key,
                    message: "the listener thread ended early".into(),
                }),
            },
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn setup(identity: &str, ports: &[(Protocol, u16)], sctp: bool) -> Result<Vec<Sock>, LabError> {
    for (path, value) in ENDPOINT_SYSCTLS {
        std::fs::write(Path::new("/proc/sys").join(path), value).map_err(|source| {
            LabError::Io { what: format!("{identity}: set {path} = {value}"), source }
        })?;
    }
    let mut sockets = Vec::new();
    for &(protocol, port) in ports {
        let bind_err = |source: std::io::Error| LabError::Listener {
            key: identity.to_string(),
            message: format!("cannot listen on {port}/{}: {source}", protocol.as_str()),
        };
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        let sock = match protocol {
            Protocol::Tcp => Sock::Tcp(TcpListener::bind(any).map_err(bind_err)?),
            Protocol::Udp => Sock::Udp(UdpSocket::bind(any).map_err(bind_err)?),
            Protocol::Sctp if !sctp => continue,
            Protocol::Sctp => Sock::Tcp(sctp_listener(any).map_err(|e| bind_err(e.into()))?),
        };
        match &sock {
            Sock::Tcp(l) => l.set_nonblocking(true),
            Sock::Udp(u) => u.set_nonblocking(true),
        }
        .map_err(bind_err)?;
        sockets.push(sock);
    }
    Ok(sockets)
}

/// A one-to-one style SCTP listening socket. Accepting on it works like
/// TCP, so it is driven through `TcpListener`.
fn sctp_listener(addr: SocketAddrV4) -> Result<TcpListener, nix::Error> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Sctp,
    )?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(addr))?;
    socket::listen(&fd, Backlog::MAXCONN)?;
    Ok(TcpListener::from(fd))
}

fn serve(answer: &[u8], sockets: &[Sock], wake: &OwnedFd) {
    let mut buf = [0u8; 2048];
    loop {
        let ready: Vec<bool> = {
            let mut fds = Vec::with_capacity(sockets.len() + 1);
            fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
            fds.extend(sockets.iter().map(|s| PollFd::new(s.fd(), PollFlags::POLLIN)));
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("listener poll failed: {e}");
                    return;
                }
            }
            fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect()
        };
        if ready[0] {
            return;
        }
        for (sock, _) in sockets.iter().zip(&ready[1..]).filter(|(_, r)| **r) {
            match sock {
                Sock::Tcp(l) => loop {
                    match l.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                            let _ = stream.write_all(answer);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        // ECONNABORTED and the like: the next one.
                        Err(_) => break,
                    }
                },
                Sock::Udp(u) => loop {
                    match u.recv_from(&mut buf) {
                        Ok((_, from)) => {
                            let _ = u.send_to(answer, from);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        // e.g. an ICMP error queued from an earlier answer:
                        // poll reports the socket again if data waits.
                        Err(_) => break,
                    }
                },
            }
        }
    }
}
