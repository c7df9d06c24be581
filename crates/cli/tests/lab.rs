//! The lab, in a real kernel: every example with both renderers, the contract's key
//! properties read off the observed probes, revoke, only-our-table, and cleanup.

mod common;
use common::*;
use fleetwall_lab::probe::{connect_tcp, Observed};
use fleetwall_lab::topo::Role;
use fleetwall_lab::{netns, Backend, Lab, ProbeRow};
use fleetwall_model::{load, Catalog, Fleet, Protocol};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

fn fleet_of(src: &str) -> Fleet {
    let (f, d) = load(src, &Catalog::builtin());
    f.unwrap_or_else(|| panic!("{:#?}", d.items))
}

fn example(name: &str) -> String {
    std::fs::read_to_string(root().join("examples").join(format!("{name}.yaml"))).unwrap()
}

fn probe_all(fleet: &Fleet, backend: Backend) -> Vec<ProbeRow> {
    let lab = Lab::up(fleet, backend).expect("lab up");
    lab.probe(&|_, _| {})
}

fn connected(r: &ProbeRow) -> bool {
    r.observed == Observed::Connected
}

/// Ports of one node's listeners of `route`.
fn ports_of(fleet: &Fleet, node: &str, route: &str) -> Vec<(u16, Protocol)> {
    fleetwall_compile::port_table(fleet)
        .into_iter()
        .filter(|r| r.node == node && r.route.as_str() == route)
        .map(|r| (r.port, r.protocol))
        .collect()
}

#[test]
fn every_example_with_both_renderers_matches_the_contract() {
    if !kernel_available() {
        return;
    }
    for (name, _) in examples() {
        let fleet = fleet_of(&example(&name));
        if !fleet.deployments.is_empty() {
            deployment_in_the_kernel(&name, &fleet);
            continue;
        }
        for backend in [Backend::Nft, Backend::Iptables] {
            let rows = probe_all(&fleet, backend);
            let bad: Vec<_> = rows.iter().filter(|r| !r.ok).collect();
            assert!(
                bad.is_empty(),
                "{name} {backend:?}: {} mismatches, e.g. {:#?}",
                bad.len(),
                &bad[..bad.len().min(5)]
            );
            assert!(rows.iter().any(|r| r.dst.is_ipv6() && connected(r)), "{name}: IPv6 is probed and works");
            assert!(rows.iter().any(|r| r.protocol == Protocol::Udp && connected(r)), "{name}: UDP is probed");

            // Management: the gateways reach 22 and 30287, nobody else does (a BYOC
            // workload: its bastion subnet does, the gateways do not).
            let workloads: Vec<(&str, ipnet::IpNet)> = fleet
                .services()
                .filter(|(_, s)| s.role == fleetwall_model::Role::Workload)
                .flat_map(|(p, s)| {
                    let subnet = p.byoc.as_ref().expect("a workload's project is BYOC").bastion_subnet;
                    s.nodes.iter().map(move |n| (n.name.as_str(), subnet))
                })
                .collect();
            for r in rows.iter().filter(|r| r.protocol == Protocol::Tcp && (r.port == 22 || r.port == 30287)) {
                let gateway = if let Some((_, subnet)) = workloads.iter().find(|(n, _)| *n == r.node) {
                    subnet.contains(&r.src)
                } else {
                    r.source.starts_with("gateway ")
                };
                assert_eq!(connected(r), gateway, "{name} {backend:?}: {r:?}");
                if !gateway {
                    assert_eq!(r.observed, Observed::Reset, "{r:?}");
                }
            }
            let mut outside_probed = 0;
            for (proj, svc, node) in fleet.nodes() {
                let outside_label = format!("outside ip_filter of {}/{}", proj.name, svc.name);
                let node_rows: Vec<&ProbeRow> = rows.iter().filter(|r| r.node == node.name).collect();
                // Cluster listeners: peers in, a node of another service out.
                for (port, proto) in ports_of(&fleet, &node.name, "cluster") {
                    let on_port: Vec<&&ProbeRow> =
                        node_rows.iter().filter(|r| r.port == port && r.protocol == proto).collect();
                    if svc.nodes.len() > 1 {
                        assert!(
                            on_port.iter().any(|r| r.source.starts_with("peer ") && connected(r)),
                            "{name}: peers reach {port}"
                        );
                    }
                    let foreign: Vec<_> = on_port
                        .iter()
                        .filter(|r| r.source == "a node of another service" || r.source.starts_with("node "))
                        .collect();
                    assert!(!foreign.is_empty(), "{name}: a node of another service probes {}:{port}", node.name);
                    assert!(foreign.iter().all(|r| !connected(r)), "{name}: {foreign:#?}");
                }
                // Outside its ip_filter: rejected on every client port.
                for (port, proto) in ports_of(&fleet, &node.name, "dynamic") {
                    let outside: Vec<_> = node_rows
                        .iter()
                        .filter(|r| r.port == port && r.protocol == proto && r.source == outside_label)
                        .collect();
                    assert!(outside.iter().all(|r| r.observed == Observed::Reset), "{name}: {outside:#?}");
                    outside_probed += outside.len();
                }
            }
            assert!(outside_probed > 0, "{name}: some source outside an ip_filter was probed");
        }
    }
}

#[test]
fn vpc_routes_admit_exactly_their_sources() {
    if !kernel_available() {
        return;
    }
    let fleet = fleet_of(&example("kafka-vpc"));
    let rows = probe_all(&fleet, Backend::Nft);
    let at = |dst: &str, port: u16| -> Vec<&ProbeRow> {
        let dst: IpAddr = dst.parse().unwrap();
        rows.iter()
            .filter(|r| r.node == "kafka-events-1" && r.dst == dst && r.port == port && r.protocol == Protocol::Tcp)
            .collect()
    };
    let office = |rows: Vec<&'_ ProbeRow>| -> Vec<ProbeRow> {
        let v: Vec<ProbeRow> =
            rows.into_iter().filter(|r| r.source.contains("'office (public REST)'")).cloned().collect();
        assert!(!v.is_empty(), "the office source is probed");
        v
    };
    // In ip_filter but outside the VPC and its peerings: the dynamic route rejects it ...
    let dynamic_kafka = at("10.20.0.11", 17072);
    assert!(office(dynamic_kafka.clone()).iter().all(|r| r.observed == Observed::Reset), "{dynamic_kafka:#?}");
    assert!(dynamic_kafka.iter().any(|r| r.source.contains("over the peering") && connected(r)));
    // ... while the public route of kafka_rest takes it, and public kafka stays closed.
    assert!(office(at("203.0.113.21", 17074)).iter().all(connected));
    assert!(at("203.0.113.21", 17072).iter().all(|r| !connected(r)));
    // The private-link route (its own Kafka port) accepts the private-link CIDRs only.
    let pl = at("10.20.0.11", 17080);
    assert!(pl.len() > 5);
    for r in &pl {
        assert_eq!(connected(r), r.source.starts_with("in private-link CIDR"), "{r:?}");
    }
}

/// Connects from inside `ns` and checks the connection echoes.
fn open_from(ns: &str, src: IpAddr, dst: SocketAddr) -> TcpStream {
    let ns = ns.to_string();
    let s = std::thread::spawn(move || {
        netns::enter(&ns).unwrap();
        connect_tcp(src, dst).unwrap()
    })
    .join()
    .unwrap();
    assert!(echoes(&s), "fresh connection from {src} echoes");
    s
}

fn echoes(mut s: &TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 4];
    s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

fn client<'l>(lab: &'l Lab, label_part: &str) -> &'l fleetwall_lab::topo::Host {
    lab.topo.hosts.iter().find(|h| matches!(&h.role, Role::Client(l) if l.contains(label_part))).expect("client host")
}

#[test]
fn revoking_a_source_cuts_its_established_connections_only() {
    if !kernel_available() {
        return;
    }
    let before = example("public-pg");
    let after = before.replace("            - { network: 198.51.100.0/24, description: office }\n", "");
    assert_ne!(before, after);
    for backend in [Backend::Nft, Backend::Iptables] {
        let fleet = fleet_of(&before);
        let lab = Lab::up(&fleet, backend).unwrap();
        let pg: SocketAddr = "203.0.113.5:12691".parse().unwrap();
        let (revoked, kept) = (client(&lab, "'office'"), client(&lab, "192.0.2.128/25"));
        let a = open_from(&revoked.netns, revoked.addrs[0], pg);
        let b = open_from(&kept.netns, kept.addrs[0], pg);
        let node_ns = lab.netns_of("pg-main-1").unwrap();
        let tracked = |addr: IpAddr| {
            fleetwall_apply::run(Some(node_ns), "conntrack", &["-L", "-s", &addr.to_string()], None)
                .unwrap()
                .lines()
                .count()
        };
        assert_eq!(tracked(revoked.addrs[0]), 1);

        let new = fleetwall_compile::compile_node(&fleet_of(&after), "pg-main-1").unwrap();
        let n = lab.apply(&new).unwrap();
        assert_eq!(n, 1, "{backend:?}: exactly the revoked connection's entry is deleted");
        assert_eq!(tracked(revoked.addrs[0]), 0, "its conntrack entry is gone");
        assert!(!echoes(&a), "{backend:?}: the revoked source's connection is cut");
        assert!(echoes(&b), "{backend:?}: the still-allowed source's connection survives");
        // And a new connection from the revoked source is refused at once.
        let ns = revoked.netns.clone();
        let src = revoked.addrs[0];
        let err = std::thread::spawn(move || {
            netns::enter(&ns).unwrap();
            connect_tcp(src, pg).unwrap_err()
        })
        .join()
        .unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}

#[test]
fn only_our_table_is_touched() {
    if !kernel_available() {
        return;
    }
    let fleet = fleet_of(&example("public-pg"));
    let lab = Lab::up(&fleet, Backend::Nft).unwrap();
    let ns = lab.netns_of("pg-main-1").unwrap();
    let nft = |args: &[&str], stdin: Option<&str>| fleetwall_apply::run(Some(ns), "nft", args, stdin).unwrap();
    // Start from a namespace holding only the foreign table.
    nft(&["delete", "table", "inet", "fleetwall"], None);
    let foreign = "table inet other {\n\tchain input {\n\t\ttype filter hook input priority 10; policy accept;\n\t\ttcp dport 9999 accept comment \"not ours\"\n\t}\n}\ntable ip legacy {\n\tchain c {\n\t\tudp dport 53 accept\n\t}\n}\n";
    nft(&["-f", "-"], Some(foreign));
    let snapshot = || (nft(&["list", "table", "inet", "other"], None), nft(&["list", "table", "ip", "legacy"], None));
    let before = snapshot();
    assert!(before.0.contains("not ours"));
    let rs = fleetwall_compile::compile_node(&fleet, "pg-main-1").unwrap();
    for _ in 0..3 {
        lab.apply(&rs).unwrap();
    }
    let changed = example("public-pg").replace("192.0.2.128/25", "192.0.2.0/25");
    let rs2 = fleetwall_compile::compile_node(&fleet_of(&changed), "pg-main-1").unwrap();
    lab.apply(&rs2).unwrap();
    lab.apply(&rs2).unwrap();
    assert_eq!(snapshot(), before, "the foreign tables are untouched");
    let ours = nft(&["list", "table", "inet", "fleetwall"], None);
    assert!(ours.contains("192.0.2.0/25") && !ours.contains("192.0.2.128/25"), "ours follows the change");
    let tables = nft(&["list", "tables"], None);
    assert_eq!(tables.lines().count(), 3, "{tables}");
}

#[test]
fn cli_lab_runs_and_leaves_nothing_behind() {
    if !kernel_available() {
        return;
    }
    let out = fleetwall(&["lab", "examples/public-pg.yaml", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probes = v["probes"].as_array().unwrap();
    assert!(probes.len() > 300);
    assert!(probes.iter().all(|p| p["ok"] == true));
    assert!(String::from_utf8_lossy(&out.stderr).contains("probing"), "progress is shown");
    assert!(netns::list().iter().all(|n| !n.starts_with(netns::PREFIX) || !is_dead_or_mine(n)), "{:?}", netns::list());
}

/// Namespaces of runs that are over (dead pid) would be leftovers.
fn is_dead_or_mine(name: &str) -> bool {
    let pid = name.trim_start_matches(netns::PREFIX).split('x').next().unwrap_or_default();
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn ctrl_c_removes_the_namespaces() {
    if !kernel_available() {
        return;
    }
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fleetwall"))
        .args(["lab", "examples/kafka-vpc.yaml"])
        .current_dir(root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("{}{}x", netns::PREFIX, child.id());
    let mut seen = false;
    for _ in 0..500 {
        if netns::list().iter().any(|n| n.starts_with(&prefix)) {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(seen, "the lab created its namespaces");
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait_with_output().unwrap().status;
    let left: Vec<String> = netns::list().into_iter().filter(|n| n.starts_with(&prefix)).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(matches!(status.code(), Some(130) | Some(0)), "{status:?}");
}

#[test]
fn a_crashed_runs_namespaces_are_swept() {
    if !kernel_available() {
        return;
    }
    let dead = (4_000_000..4_100_000).find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()).unwrap();
    let name = format!("{}{dead}x0-h0", netns::PREFIX);
    fleetwall_apply::run(None, "ip", &["netns", "add", &name], None).unwrap();
    // Other tests of this binary sweep too (Lab::up does), so one of them may win the race
    // to delete it; what matters is that the dead run's namespace is gone after a sweep.
    netns::sweep_leftovers();
    assert!(!netns::list().contains(&name), "{name} survived a sweep");
}

#[test]
fn revoking_many_flows_spawned_a_conntrack_per_flow() {
    use fleetwall_ir::{Match, NodeRuleset, Proto, Reject, Rule, Verdict};
    if !kernel_available() {
        return;
    }
    let guard = common::Namespaces::new();
    let ns = guard.create("ct");
    // 500 connections from 5 clients (pools of 100) to a refused port, 20 to an allowed one.
    let flow = |src: usize, sport: usize, dport: u16| {
        format!(
            "-I -p tcp -s 198.51.100.{src} -d 203.0.113.5 --sport {sport} --dport {dport} --state ESTABLISHED -t 300\n"
        )
    };
    let mut batch: String = (0..500).map(|i| flow(i % 5 + 1, 20000 + i, 5432)).collect();
    batch += &(0..20).map(|i| flow(7, 30000 + i, 80)).collect::<String>();
    fleetwall_apply::run(Some(&ns), "conntrack", &["-R", "-"], Some(&batch)).unwrap();
    let rule =
        |id: &str, l4: Proto, verdict| Rule { id: id.into(), reason: id.into(), matches: Match::proto(l4), verdict };
    let rs = NodeRuleset {
        node: "n".into(),
        description: "revoke".into(),
        addresses: vec!["203.0.113.5".parse().unwrap()],
        sets: Vec::new(),
        input: vec![
            rule("web", Proto::Tcp(vec![80]), Verdict::Accept),
            rule("reject-tcp", Proto::Tcp(vec![]), Verdict::Reject(Reject::TcpReset)),
        ],
        output: Vec::new(),
    };
    let start = std::time::Instant::now();
    let deleted = fleetwall_apply::revoke(Some(&ns), &rs).unwrap();
    let took = start.elapsed();
    eprintln!("revoked {deleted} flows in {took:?}");
    assert_eq!(deleted, 500);
    let left = fleetwall_apply::run(Some(&ns), "conntrack", &["-L"], None).unwrap();
    assert_eq!(left.lines().count(), 20, "only the allowed connections are left: {left}");
    // One process per flow took seconds (each `conntrack -D` walks the whole table).
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(guard);
}

/// A deployment (zones, subsystems, clusters) with both renderers: every probe as the
/// catalog says (`fleetwall_lab::zones`), IPv4 and IPv6, TCP and UDP, inbound and — from
/// the servers — outbound; the seed's cluster rule read off the observed probes.
fn deployment_in_the_kernel(name: &str, fleet: &Fleet) {
    for backend in [Backend::Nft, Backend::Iptables] {
        let rows = probe_all(fleet, backend);
        let bad: Vec<_> = rows.iter().filter(|r| !r.ok).collect();
        assert!(bad.is_empty(), "{name} {backend:?}: {} mismatches, e.g. {:#?}", bad.len(), &bad[..bad.len().min(5)]);
        assert!(rows.len() > 1000, "{name}: {} probes", rows.len());
        assert!(rows.iter().any(|r| r.dst.is_ipv6() && connected(r)), "{name}: IPv6 is probed and works");
        assert!(rows.iter().any(|r| r.protocol == Protocol::Udp && connected(r)), "{name}: UDP is probed");
        let probe = |source: &str, node: &str, port: u16, proto: Protocol| -> Vec<&ProbeRow> {
            rows.iter()
                .filter(|r| r.source == source && r.node == node && r.port == port && r.protocol == proto)
                .collect()
        };
        // gw-a-1 <-> gw-a-2 on any port; gw-b <-> gw-a on none, not even the public API.
        for (src, dst) in [("server gw-a-2", "gw-a-1"), ("server gw-a-1", "gw-a-2")] {
            let on = probe(src, dst, 7000, Protocol::Tcp);
            assert!(on.len() == 2 && on.iter().all(|r| connected(r)), "{src} -> {dst}: {on:#?}");
        }
        for (src, dst) in [("server gw-b-1", "gw-a-1"), ("server gw-a-1", "gw-b-1")] {
            for port in [7000, 443, 3000] {
                let on = probe(src, dst, port, Protocol::Tcp);
                assert!(
                    on.len() == 2 && on.iter().all(|r| r.observed == Observed::Reset),
                    "{src} -> {dst}:{port}: {on:#?}"
                );
            }
        }
        // Every gateway reaches the management platform API; the internet does not.
        for gw in ["server gw-a-1", "server gw-a-2", "server gw-b-1"] {
            assert!(probe(gw, "mgmt-1", 443, Protocol::Tcp).iter().all(|r| connected(r)), "{gw}");
        }
        let public: Vec<_> =
            rows.iter().filter(|r| r.source.starts_with("zone public") && r.node == "mgmt-1").collect();
        assert!(!public.is_empty() && public.iter().all(|r| !connected(r)), "{public:#?}");
    }
}

/// A 3-node Kafka whose AWS private link has two connections, each with a broker port of
/// its own (10000, 10001).
const TWO_CONNECTIONS: &str = r#"version: 1
platform:
  management_gateways: [198.51.100.10]
projects:
  acme:
    base_port: 17000
    vpcs:
      v: { cloud: aws-eu-west-1, network_cidr: 10.20.0.0/20, privatelink_cidrs: [10.20.15.0/24] }
    services:
      k:
        type: kafka
        cloud: aws-eu-west-1
        vpc: v
        nodes:
          k-1: { private: 10.20.0.11 }
          k-2: { private: 10.20.0.12 }
          k-3: { private: 10.20.0.13 }
        user_config: { ip_filter: [10.20.0.0/20], privatelink_access: { kafka: true } }
        privatelink:
          aws:
            principals: ["arn:aws:iam::012345678901:user/mwf"]
            connections:
              plc-a: { host: privatelink-1-k-acme, state: active, ports: { kafka: 10000 } }
              plc-b: { host: privatelink-2-k-acme, state: connected, ports: { kafka: 10001 } }
"#;

#[test]
fn private_link_connections_open_their_own_ports_and_close_with_their_removal() {
    if !kernel_available() {
        return;
    }
    let plc_a = "              plc-a: { host: privatelink-1-k-acme, state: active, ports: { kafka: 10000 } }\n";
    let after = TWO_CONNECTIONS.replace(plc_a, "");
    assert_ne!(after, TWO_CONNECTIONS);
    let nodes = [("k-1", "10.20.0.11"), ("k-2", "10.20.0.12"), ("k-3", "10.20.0.13")];
    let from_link = |r: &ProbeRow| r.source.starts_with("in private-link CIDR");
    for backend in [Backend::Nft, Backend::Iptables] {
        let fleet = fleet_of(TWO_CONNECTIONS);
        let lab = Lab::up(&fleet, backend).unwrap();
        let rows = lab.probe(&|_, _| {});
        assert!(rows.len() > 300, "{backend:?}: every source × address × port is probed");
        let bad: Vec<_> = rows.iter().filter(|r| !r.ok).collect();
        assert!(bad.is_empty(), "{backend:?}: {} mismatches, e.g. {:#?}", bad.len(), &bad[..bad.len().min(5)]);
        let at = |rows: &[ProbeRow], addr: &str, port: u16| -> Vec<ProbeRow> {
            let dst: IpAddr = addr.parse().unwrap();
            rows.iter().filter(|r| r.dst == dst && r.port == port && r.protocol == Protocol::Tcp).cloned().collect()
        };
        // Every node opens each connection's port to the private-link CIDRs, and only to them.
        for (n, addr) in nodes {
            for port in [10000, 10001] {
                let probed = at(&rows, addr, port);
                assert!(probed.iter().any(|r| from_link(r) && connected(r)), "{backend:?} {n}:{port}: {probed:#?}");
                assert!(probed.iter().any(|r| !from_link(r)), "{backend:?} {n}:{port}: others are probed too");
                for r in &probed {
                    assert_eq!(connected(r), from_link(r), "{backend:?}: {r:?}");
                }
            }
        }
        // Removing plc-a closes its port on every node and cuts what was established over
        // it; plc-b keeps its port and its connections.
        let link = client(&lab, "in private-link CIDR");
        let over_a = open_from(&link.netns, link.addrs[0], "10.20.0.11:10000".parse().unwrap());
        let over_b = open_from(&link.netns, link.addrs[0], "10.20.0.11:10001".parse().unwrap());
        let new_fleet = fleet_of(&after);
        for (n, _) in nodes {
            lab.apply(&fleetwall_compile::compile_node(&new_fleet, n).unwrap()).unwrap();
        }
        assert!(!echoes(&over_a), "{backend:?}: the removed connection's flow is cut");
        assert!(echoes(&over_b), "{backend:?}: the other connection's flow survives");
        let rows = lab.probe(&|_, _| {});
        for (n, addr) in nodes {
            let closed = at(&rows, addr, 10000);
            assert!(closed.iter().any(from_link), "{n}: probed");
            assert!(closed.iter().all(|r| r.observed == Observed::Reset), "{backend:?} {n}: {closed:#?}");
            for r in at(&rows, addr, 10001) {
                assert_eq!(connected(&r), from_link(&r), "{backend:?}: {r:?}");
            }
        }
    }
}
