//! Deployments (zones, subsystems, clusters) compiled to node rulesets, checked packet by
//! packet against a separate reading of the catalog: a chain lets a connection pass when
//! some flow of the kind, in one of its directions, has the source on its `from` side,
//! the destination on its `to` side and the port. The chain's own server is on a side
//! only by its subsystem; the other end by its address (a zone's networks, or a server
//! of the side's subsystems); servers of one subsystem are on a side for the members of
//! their own cluster only. Every server's input and output chain must agree with that,
//! for every peer and port.

use fleetwall_compile::{compile, compile_node};
use fleetwall_eval::{evaluate_in, Packet, Transport};
use fleetwall_ir::{Direction, NodeRuleset, Reject, Verdict};
use fleetwall_model::deployment::{Deployment, Endpoint, FlowDef, FlowProtocol};
use fleetwall_model::{load, Catalog, Fleet};
use std::collections::BTreeSet;
use std::net::IpAddr;

fn example() -> Fleet {
    let path = format!("{}/../../examples/api-connect.yaml", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(path).unwrap();
    // With an offload target (flow 12 takes its ports and protocol from the options) and
    // Table 3's extra Management Service ports filled in.
    let src = src
        .replace("      management: [10.3.0.0/24, \"fd00:3::/64\"]\n", "      management: [10.3.0.0/24, \"fd00:3::/64\"]\n      offload: [192.0.2.0/24]\n")
        .replace(
            "options: { gateway_push_port: 3000 }",
            "options: { gateway_push_port: 3000, analytics_offload_ports: [9092, 9093], analytics_offload_protocol: kafka, management_extra_ports: [8443] }",
        );
    let (f, d) = load(&src, &Catalog::builtin());
    f.unwrap_or_else(|| panic!("{:#?}", d.items))
}

/// What an address is in the deployment: a server (its cluster and subsystem) or not.
fn cluster_of(d: &Deployment, a: IpAddr) -> Option<&fleetwall_model::deployment::Cluster> {
    d.clusters.iter().find(|c| c.servers.iter().any(|s| s.addresses.contains(&a)))
}

/// Whether `a` is on side `e` of a flow, seen from the other side's address `other`.
fn on_side(d: &Deployment, e: &Endpoint, a: IpAddr, other: IpAddr) -> bool {
    match e {
        Endpoint::Anywhere => true,
        Endpoint::Zone(z) => d.zone(z).is_some_and(|z| z.networks.iter().any(|n| n.contains(&a))),
        Endpoint::Subsystems(list) => match cluster_of(d, a) {
            None => false,
            Some(c) if !list.contains(&c.subsystem) => false,
            Some(c) => match cluster_of(d, other) {
                Some(o) if o.subsystem == c.subsystem => o.name == c.name,
                _ => true,
            },
        },
    }
}

fn carries(d: &Deployment, f: &FlowDef, t: Transport) -> bool {
    let ports = d.ports(f);
    match (d.protocol(f), t) {
        (FlowProtocol::Any, _) => true,
        (FlowProtocol::Tcp | FlowProtocol::TcpUdp, Transport::Tcp(p)) => ports.contains(&p),
        (FlowProtocol::Udp | FlowProtocol::TcpUdp, Transport::Udp(p)) => ports.contains(&p),
        _ => false,
    }
}

/// Whether the ruleset's own server `a` is on side `e`: only by its subsystem (a zone or
/// "anywhere" stands for clients, not for the deployment's servers that sit in it).
fn own_side(d: &Deployment, e: &Endpoint, a: IpAddr, other: IpAddr) -> bool {
    matches!(e, Endpoint::Subsystems(_)) && on_side(d, e, a, other)
}

/// The flows the ruleset of `dst` (ingress) or of `src` (egress) lets `src` → `dst` pass with `t`.
fn allowing(d: &Deployment, dir: Direction, src: IpAddr, dst: IpAddr, t: Transport) -> Vec<&FlowDef> {
    if src == dst {
        return Vec::new();
    }
    let side = |e: &Endpoint, a: IpAddr, other: IpAddr, own: bool| {
        if own {
            own_side(d, e, a, other)
        } else {
            on_side(d, e, a, other)
        }
    };
    let src_own = dir == Direction::Egress;
    d.kind
        .flows
        .iter()
        .filter(|f| carries(d, f, t))
        .filter(|f| {
            let fwd = side(&f.from, src, dst, src_own) && side(&f.to, dst, src, !src_own);
            let rev = f.bidirectional && side(&f.to, src, dst, src_own) && side(&f.from, dst, src, !src_own);
            fwd || rev
        })
        .collect()
}

fn ruleset<'r>(rulesets: &'r [NodeRuleset], name: &str) -> &'r NodeRuleset {
    rulesets.iter().find(|r| r.node == name).unwrap()
}

#[test]
fn every_server_allows_exactly_its_flows_in_and_out() {
    let fleet = example();
    let d = &fleet.deployments[0];
    let rulesets = compile(&fleet);
    assert_eq!(rulesets.len(), 6, "one ruleset per server");
    let servers: Vec<(String, IpAddr)> =
        d.servers().flat_map(|(_, s)| s.addresses.iter().map(move |a| (s.name.clone(), *a))).collect();
    // Sources and destinations: every server, a client in the protected zone, one on the
    // internet, an offload target.
    let outsiders: Vec<IpAddr> = ["10.1.2.3", "203.0.113.7", "192.0.2.50", "fd00:1::7", "2001:db8::7"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let mut ports: BTreeSet<u16> = d.kind.flows.iter().flat_map(|f| d.ports(f)).collect();
    ports.extend([7000, 8080, 30287]);
    let transports: Vec<Transport> = ports.iter().flat_map(|p| [Transport::Tcp(*p), Transport::Udp(*p)]).collect();
    let (mut accepted, mut checked) = (0, 0);
    for (name, addr) in &servers {
        let rs = ruleset(&rulesets, name);
        // Other servers and the outsiders, of the address's family (a packet has one).
        let peers: Vec<IpAddr> = servers
            .iter()
            .filter(|(n, _)| n != name)
            .map(|(_, a)| *a)
            .chain(outsiders.iter().copied())
            .filter(|a| a.is_ipv4() == addr.is_ipv4())
            .collect();
        for peer in &peers {
            for t in &transports {
                for (dir, src, dst) in [(Direction::Ingress, *peer, *addr), (Direction::Egress, *addr, *peer)] {
                    if src == dst {
                        continue;
                    }
                    let expected = allowing(d, dir, src, dst, *t);
                    let decision = evaluate_in(rs, dir, &Packet::new(src, dst, *t));
                    checked += 1;
                    if expected.is_empty() {
                        assert!(
                            matches!(decision.verdict, Verdict::Reject(_)),
                            "{name} {dir:?} {src} -> {dst} {t:?}: no flow allows it, got {:?} by {:?}",
                            decision.verdict,
                            decision.rule.map(|r| &r.1.id)
                        );
                    } else {
                        accepted += 1;
                        assert_eq!(
                            decision.verdict,
                            Verdict::Accept,
                            "{name} {dir:?} {src} -> {dst} {t:?}: allowed by {}",
                            expected[0].label()
                        );
                        let reason = &decision.rule.expect("a rule accepted it").1.reason;
                        assert!(
                            expected.iter().any(|f| reason.starts_with(&format!("{}: {}", f.label(), f.usage))),
                            "{name}: the reason {reason:?} names none of {:?}",
                            expected.iter().map(|f| f.label()).collect::<Vec<_>>()
                        );
                    }
                }
            }
        }
    }
    assert!(accepted > 300 && checked > 3000, "{accepted} accepted of {checked}");
}

#[test]
fn the_cluster_rule_members_reach_each_other_and_clusters_do_not() {
    let fleet = example();
    let rulesets = compile(&fleet);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (gw_a_1, gw_a_2, gw_b_1, mgmt) = (ip("10.2.0.11"), ip("10.2.0.12"), ip("10.2.0.21"), ip("10.3.0.11"));
    let verdict =
        |node: &str, dir, src, dst, t| evaluate_in(ruleset(&rulesets, node), dir, &Packet::new(src, dst, t)).verdict;
    // gw-a-1 <-> gw-a-2 on any port, both chains.
    for t in [Transport::Tcp(7000), Transport::Udp(7000), Transport::Other(132)] {
        assert_eq!(verdict("gw-a-1", Direction::Ingress, gw_a_2, gw_a_1, t), Verdict::Accept);
        assert_eq!(verdict("gw-a-2", Direction::Egress, gw_a_2, gw_a_1, t), Verdict::Accept);
    }
    // gw-a <-> gw-b: refused both ways, whatever the port (but the public API, flow 1).
    assert_eq!(
        verdict("gw-a-1", Direction::Ingress, gw_b_1, gw_a_1, Transport::Tcp(7000)),
        Verdict::Reject(Reject::TcpReset)
    );
    assert_eq!(
        verdict("gw-b-1", Direction::Egress, gw_b_1, gw_a_1, Transport::Tcp(7000)),
        Verdict::Reject(Reject::TcpReset)
    );
    assert_eq!(
        verdict("gw-b-1", Direction::Ingress, gw_a_1, gw_b_1, Transport::Udp(161)),
        Verdict::Reject(Reject::PortUnreachable)
    );
    // Every gateway reaches the management platform API.
    for (node, src) in [("gw-a-1", gw_a_1), ("gw-a-2", gw_a_2), ("gw-b-1", gw_b_1)] {
        assert_eq!(verdict(node, Direction::Egress, src, mgmt, Transport::Tcp(443)), Verdict::Accept);
        assert_eq!(verdict("mgmt-1", Direction::Ingress, src, mgmt, Transport::Tcp(443)), Verdict::Accept);
    }
}

#[test]
fn flow_12_takes_its_ports_and_protocol_from_the_options() {
    let fleet = example();
    let rs = compile_node(&fleet, "a7s-1").unwrap();
    let offload: Vec<_> = rs.output.iter().filter(|r| r.id.starts_with("f12-")).collect();
    assert_eq!(offload.len(), 1, "{offload:#?}");
    assert!(
        offload[0]
            .reason
            .starts_with("flow 12: Analytics offload (9092, 9093/tcp to Analytics offload targets of apic-prod)"),
        "{}",
        offload[0].reason
    );
    // Without an offload zone or without ports, flow 12 opens nothing (never every port).
    let src =
        std::fs::read_to_string(format!("{}/../../examples/api-connect.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let plain = load(&src, &Catalog::builtin()).0.unwrap();
    let rs = compile_node(&plain, "a7s-1").unwrap();
    assert!(rs.output.iter().all(|r| !r.id.starts_with("f12-")));
}

#[test]
fn deployment_rulesets_are_valid_and_compile_node_agrees_with_compile() {
    let fleet = example();
    for rs in compile(&fleet) {
        rs.validate().unwrap_or_else(|e| panic!("{}: {e}", rs.node));
        assert_eq!(compile_node(&fleet, &rs.node).as_ref(), Some(&rs), "{}", rs.node);
    }
}
