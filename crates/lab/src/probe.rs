//! Listeners on the nodes and probes from the sources, with real sockets.
//!
//! A thread enters a namespace (`setns`) and creates its sockets there; they stay in
//! that namespace. Node listeners bind the wildcard address, dual-stack, on every probed
//! port, so a connection that gets through the firewall always succeeds and a reset can
//! only come from the firewall. TCP connections are echoed and held until the lab stops.

use crate::netns;
use fleetwall_model::Protocol;
use serde::Serialize;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a probe waits before calling it a (silent) timeout.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Echo listeners in one node namespace; stopped and closed on drop.
pub struct Listeners {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listeners {
    /// Binds `tcp` and `udp` ports on the wildcard address inside `ns` and serves them.
    pub fn start(ns: &str, tcp: &[u16], udp: &[u16]) -> std::io::Result<Listeners> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (ns, tcp, udp, flag) = (ns.to_string(), tcp.to_vec(), udp.to_vec(), stop.clone());
        let thread = std::thread::spawn(move || {
            let bound = (|| -> std::io::Result<(Vec<TcpListener>, Vec<UdpSocket>)> {
                netns::enter(&ns)?;
                let mut ls = Vec::new();
                for p in &tcp {
                    let l = TcpListener::bind(("::", *p))?;
                    l.set_nonblocking(true)?;
                    ls.push(l);
                }
                let mut us = Vec::new();
                for p in &udp {
                    let u = UdpSocket::bind(("::", *p))?;
                    u.set_nonblocking(true)?;
                    us.push(u);
                }
                Ok((ls, us))
            })();
            let (listeners, udps) = match bound {
                Ok(b) => {
                    let _ = ready_tx.send(Ok(()));
                    b
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            serve(&listeners, &udps, &flag);
        });
        ready_rx.recv().map_err(|_| std::io::Error::other("listener thread died"))??;
        Ok(Listeners { stop, thread: Some(thread) })
    }
}

fn serve(listeners: &[TcpListener], udps: &[UdpSocket], stop: &AtomicBool) {
    let mut conns: Vec<TcpStream> = Vec::new();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        for l in listeners {
            while let Ok((s, _)) = l.accept() {
                let _ = s.set_nonblocking(true);
                conns.push(s);
                busy = true;
            }
        }
        conns.retain_mut(|c| match c.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                busy = true;
                c.write_all(&buf[..n]).is_ok()
            }
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        });
        for u in udps {
            while let Ok((n, from)) = u.recv_from(&mut buf) {
                let _ = u.send_to(&buf[..n], from);
                busy = true;
            }
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a probe saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Observed {
    /// The connection was made (TCP) or the datagram echoed (UDP).
    Connected,
    /// A TCP reset.
    Reset,
    /// ICMP(v6) port unreachable.
    PortUnreachable,
    /// Another ICMP(v6) unreachable (host, admin prohibited, ...).
    Unreachable,
    /// Nothing came back in time: a silent drop.
    Timeout,
    /// The probe itself failed (bind, socket).
    Error(String),
}

fn classify(e: &std::io::Error) -> Observed {
    match (e.kind(), e.raw_os_error()) {
        (ErrorKind::ConnectionRefused, _) => Observed::PortUnreachable,
        (ErrorKind::ConnectionReset, _) => Observed::Reset,
        (ErrorKind::TimedOut | ErrorKind::WouldBlock, _) => Observed::Timeout,
        (_, Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES | libc::EPERM)) => Observed::Unreachable,
        _ => Observed::Error(e.to_string()),
    }
}

/// Opens a TCP connection from `src` to `dst:port` (call from inside the source's namespace).
pub fn connect_tcp(src: IpAddr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(dst), Type::STREAM, None)?;
    sock.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    sock.connect_timeout(&SockAddr::from(dst), PROBE_TIMEOUT)?;
    Ok(sock.into())
}

/// Probes `dst:port/proto` from `src` (call from inside the source's namespace), as a
/// client would: when nothing at all comes back, it tries once more (a datagram or its
/// ICMP answer can be lost on a loaded machine; a silent firewall stays silent twice).
/// Returns what was seen, how long the last attempt took, and the number of attempts.
pub fn probe(src: IpAddr, dst: IpAddr, port: u16, proto: Protocol) -> (Observed, Duration, u8) {
    let (seen, took) = attempt(src, dst, port, proto);
    if seen != Observed::Timeout {
        return (seen, took, 1);
    }
    let (seen, took) = attempt(src, dst, port, proto);
    (seen, took, 2)
}

fn attempt(src: IpAddr, dst: IpAddr, port: u16, proto: Protocol) -> (Observed, Duration) {
    let start = Instant::now();
    let to = SocketAddr::new(dst, port);
    let seen = match proto {
        Protocol::Tcp => match connect_tcp(src, to) {
            Ok(_) => Observed::Connected,
            // A TCP connect refused by a reset surfaces as ECONNREFUSED.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Observed::Reset,
            Err(e) => classify(&e),
        },
        Protocol::Udp => {
            let attempt = || -> std::io::Result<Observed> {
                let u = UdpSocket::bind(SocketAddr::new(src, 0))?;
                u.connect(to)?;
                u.set_read_timeout(Some(PROBE_TIMEOUT))?;
                u.send(b"fleetwall-probe")?;
                let mut buf = [0u8; 64];
                match u.recv(&mut buf) {
                    Ok(n) if &buf[..n] == b"fleetwall-probe" => Ok(Observed::Connected),
                    Ok(_) => Ok(Observed::Error("unexpected reply".into())),
                    Err(e) => Ok(classify(&e)),
                }
            };
            attempt().unwrap_or_else(|e| classify(&e))
        }
    };
    (seen, start.elapsed())
}
