//! ECE (S8) in a real kernel with a real SOCKS5 server: `examples/ece.yaml` in the lab,
//! Dante (`danted`) in the proxy's namespace running the configuration fleetwall renders.
//! A node's direct connection out is refused by its own firewall; through the proxy it
//! reaches an `allow` destination and nothing else; an internet client on the allow list
//! still cannot reach the node.

mod common;
use common::*;
use fleetwall_lab::probe::{connect_tcp, Listeners};
use fleetwall_lab::{netns, Backend, Lab};
use fleetwall_model::{load, Catalog, Protocol};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROXY: &str = "10.70.0.5";
/// Inside `allow` (198.51.100.128/25).
const ALLOWED: &str = "198.51.100.130";
/// Not on the list.
const DENIED: &str = "203.0.113.50";
const PORT: u16 = 8443;

/// danted, stopped by PID when dropped (also when the test fails).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A SOCKS5 CONNECT (no authentication) through `proxy` to `dst`: the stream, or the
/// proxy's reply code when it refuses.
fn socks5(src: IpAddr, proxy: SocketAddr, dst: SocketAddr) -> Result<TcpStream, u8> {
    let mut s = connect_tcp(src, proxy).expect("the node reaches its proxy");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut hello = [0; 2];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(hello, [5, 0], "the proxy takes no authentication");
    let IpAddr::V4(ip) = dst.ip() else { panic!("an IPv4 destination") };
    let mut req = vec![5, 1, 0, 1];
    req.extend(ip.octets());
    req.extend(dst.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut head = [0; 4];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 5, "a SOCKS5 reply");
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        other => panic!("address type {other} in the reply"),
    };
    let mut addr = vec![0; rest];
    s.read_exact(&mut addr).unwrap();
    if head[1] != 0 {
        return Err(head[1]);
    }
    Ok(s)
}

fn echoes(mut s: &TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    if s.write_all(b"ping\n").is_err() {
        return false;
    }
    let mut buf = [0; 5];
    s.read_exact(&mut buf).is_ok() && &buf == b"ping\n"
}

/// Runs `f` inside namespace `ns`.
fn inside<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        netns::enter(&ns).unwrap();
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn an_ece_node_reaches_out_only_through_the_proxy_and_only_to_allow() {
    if !kernel_available() {
        return;
    }
    let has_danted = Command::new("sh").args(["-c", "command -v danted"]).output().is_ok_and(|o| o.status.success());
    assert!(has_danted, "danted (Debian's dante-server) is needed; the README's test command installs it");
    let src = std::fs::read_to_string(root().join("examples/ece.yaml")).unwrap();
    let fleet = load(&src, &Catalog::builtin()).0.expect("the example validates");
    let (proxy, allowed, denied): (IpAddr, IpAddr, IpAddr) =
        (PROXY.parse().unwrap(), ALLOWED.parse().unwrap(), DENIED.parse().unwrap());
    let lab = Lab::up_with(&fleet, Backend::Nft, &netns::run_prefix(), &[proxy, allowed, denied]).expect("lab up");
    let ns_of = |a: IpAddr| lab.topo.hosts.iter().find(|h| h.addrs.contains(&a)).unwrap().netns.clone();

    let scratch = Scratch::new("ece-proxy");
    let conf = scratch.0.join("danted.conf");
    std::fs::write(&conf, ok(&["plan", "examples/ece.yaml", "--format", "dante"])).unwrap();
    let log = std::fs::File::create(scratch.0.join("danted.log")).unwrap();
    let _danted = Daemon(
        Command::new("ip")
            .args(["netns", "exec", &ns_of(proxy), "danted", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let _out = [
        Listeners::start(&ns_of(allowed), &[PORT], &[]).unwrap(),
        Listeners::start(&ns_of(denied), &[PORT], &[]).unwrap(),
    ];

    let node = fleet.nodes().find(|(_, _, n)| n.name == "pg-gov-1").unwrap().2;
    let node_ip = node.private[0];
    let proxy_at = SocketAddr::new(proxy, 1080);
    // danted takes a moment to listen: bounded wait, from the node (its egress admits the proxy).
    let ready = inside(&ns_of(node_ip), move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if connect_tcp(node_ip, proxy_at).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    let danted_log = || std::fs::read_to_string(scratch.0.join("danted.log")).unwrap_or_default();
    assert!(ready, "danted listens on {proxy_at}: {}", danted_log());

    let (to_allowed, to_denied) = (SocketAddr::new(allowed, PORT), SocketAddr::new(denied, PORT));
    let results = inside(&ns_of(node_ip), move || {
        let direct = |dst| connect_tcp(node_ip, dst).map(|_| ()).map_err(|e| e.kind());
        (
            direct(to_allowed),
            direct(to_denied),
            socks5(node_ip, proxy_at, to_allowed).map(|s| echoes(&s)),
            socks5(node_ip, proxy_at, to_denied).map(|_| ()),
        )
    });
    // 1. Direct, even to a destination the proxy would relay to: the node's egress resets it.
    assert_eq!(results.0, Err(ErrorKind::ConnectionRefused), "direct to an allow destination");
    assert_eq!(results.1, Err(ErrorKind::ConnectionRefused), "direct elsewhere");
    // 2. Through the proxy to an allow destination: connected, and the bytes come back.
    assert_eq!(results.2, Ok(true), "through the proxy to {ALLOWED}: {}", danted_log());
    // 3. Through the proxy anywhere else: the proxy refuses (2: not allowed by its rules).
    assert_eq!(results.3, Err(2), "through the proxy to {DENIED}");
    assert!(danted_log().contains("block"), "danted logs the refusal: {}", danted_log());

    // 4. An internet client on the proxy's allow list still cannot reach the node.
    let pg = fleetwall_compile::port_table(&fleet)
        .into_iter()
        .find(|r| r.node == "pg-gov-1" && r.component == "pg" && r.protocol == Protocol::Tcp)
        .unwrap()
        .port;
    let public = node.public[0];
    let inbound = inside(&ns_of(allowed), move || {
        [node_ip, public].map(|dst| connect_tcp(allowed, SocketAddr::new(dst, pg)).map(|_| ()).map_err(|e| e.kind()))
    });
    assert_eq!(inbound, [Err(ErrorKind::ConnectionRefused), Err(ErrorKind::ConnectionRefused)]);
}
