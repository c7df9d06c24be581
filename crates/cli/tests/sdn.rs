//! Two layers in a real kernel: `examples/byoc.yaml` and `ece.yaml` with a router namespace between every
//! host that enforces the cloud layer (`plan --format sdn`, from the same intent as the
//! node firewalls) in front of the node firewalls. The SDN drops silently (a timeout), a
//! node rejects (a reset), so each probe shows which layer refused it; with either layer
//! taken away, the other still refuses.

mod common;
use common::*;
use fleetwall_apply::run;
use fleetwall_lab::netns;
use fleetwall_lab::probe::{self, Listeners, Observed};
use fleetwall_model::{load, Catalog, Protocol};
use std::net::IpAddr;

/// Removes the namespaces of this test, also when it fails.
struct Namespaces(String);

impl Drop for Namespaces {
    fn drop(&mut self) {
        netns::delete_all(&self.0);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layers {
    Both,
    SdnOnly,
    NodesOnly,
}

const GATEWAY: &str = "198.51.100.10";
const CUSTOMER: &str = "10.60.3.4";
const OUTSIDE: &str = "203.0.113.50";
const EGRESS_HOST: &str = "192.0.2.80";

/// One probe: from a host to a host's first address, and what it shows with both layers,
/// with the SDN only and with the node firewalls only; and why.
type Case<'c> = (&'c str, &'c str, u16, [Observed; 3], &'c str);

/// Builds `example` with a router between every host (the fleet's nodes, IPv4 only, and
/// `others`), listeners on `ports` in the `listen` hosts, and runs `cases` under each
/// layer setting; returns every case that did not show what it should.
fn two_layers(
    example: &str,
    others: &[(&str, &str)],
    listen: &[&str],
    ports: &[u16],
    cases: &[Case<'_>],
) -> Vec<String> {
    let src = std::fs::read_to_string(root().join(example)).unwrap();
    let fleet = load(&src, &Catalog::builtin()).0.expect("the example validates");
    let rulesets = fleetwall_compile::compile(&fleet);
    // Hosts: the fleet's nodes (IPv4 only: the SDN is checked on one family) and the
    // parties around them, each on its own link to the router.
    let mut hosts: Vec<(String, Vec<IpAddr>)> = fleet
        .nodes()
        .map(|(_, _, n)| (n.name.clone(), n.private.iter().chain(&n.public).copied().filter(|a| a.is_ipv4()).collect()))
        .collect();
    for (name, a) in others {
        hosts.push((name.to_string(), vec![a.parse().unwrap()]));
    }
    let prefix = netns::run_prefix();
    let _cleanup = Namespaces(prefix.clone());
    let router = format!("{prefix}router");
    let ns = |i: usize| format!("{prefix}h{i}");
    let mut names = vec![router.clone()];
    names.extend((0..hosts.len()).map(ns));
    netns::create(&names).unwrap();
    run(Some(&router), "sysctl", &["-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.proxy_arp=1"], None)
        .unwrap();
    // The router needs an address of its own to ask for its neighbours (ARP); the hosts'
    // on-link default routes get its answers by proxy ARP.
    let mut r = String::from("link set lo up\naddr add 100.64.255.1/32 dev lo\n");
    for (i, (_, addrs)) in hosts.iter().enumerate() {
        r += &format!("link add r{i} type veth peer name e{i}\nlink set e{i} netns {}\nlink set r{i} up\n", ns(i));
        for a in addrs {
            r += &format!("route add {a}/32 dev r{i}\n");
        }
    }
    run(Some(&router), "ip", &["-batch", "-"], Some(&r)).unwrap();
    for (i, (_, addrs)) in hosts.iter().enumerate() {
        let mut b = format!("link set e{i} name eth0\nlink set lo up\nlink set eth0 up\n");
        for a in addrs {
            b += &format!("addr add {a}/32 dev eth0\n");
        }
        b += "route add default dev eth0\n";
        run(Some(&ns(i)), "ip", &["-batch", "-"], Some(&b)).unwrap();
    }
    let host = |name: &str| hosts.iter().position(|(n, _)| n == name).unwrap();
    let addr = |name: &str| hosts[host(name)].1[0];
    let _listeners: Vec<Listeners> =
        listen.iter().map(|h| Listeners::start(&ns(host(h)), ports, &[]).unwrap()).collect();

    let sdn = ok(&["plan", example, "--format", "sdn"]);
    let load_layers = |layers: Layers| {
        if layers != Layers::NodesOnly {
            run(Some(&router), "nft", &["-f", "-"], Some(&sdn)).unwrap();
        } else {
            let _ = run(Some(&router), "nft", &["delete", "table", "inet", fleetwall_render::sdn::TABLE], None);
        }
        for rs in &rulesets {
            let i = host(&rs.node);
            if layers != Layers::SdnOnly {
                let text = fleetwall_render::nft::render(rs);
                run(Some(&ns(i)), "nft", &["-f", "-"], Some(&text)).unwrap();
            } else {
                let _ = run(Some(&ns(i)), "nft", &["delete", "table", "inet", "fleetwall"], None);
            }
        }
    };
    let mut problems = Vec::new();
    for (k, layers) in [Layers::Both, Layers::SdnOnly, Layers::NodesOnly].into_iter().enumerate() {
        load_layers(layers);
        for (from, to, port, want, why) in cases {
            let (src, dst, port) = (addr(from), addr(to), *port);
            let space = ns(host(from));
            let (seen, _, _) = std::thread::spawn(move || {
                netns::enter(&space).unwrap();
                probe::probe(src, dst, port, Protocol::Tcp)
            })
            .join()
            .unwrap();
            if seen != want[k] {
                problems.push(format!("{layers:?}: {from} -> {to}:{port} ({why}): want {:?}, saw {seen:?}", want[k]));
            }
        }
    }
    problems
}

fn port_of(example: &str, node: &str, component: &str) -> u16 {
    let src = std::fs::read_to_string(root().join(example)).unwrap();
    let fleet = load(&src, &Catalog::builtin()).0.expect("the example validates");
    fleetwall_compile::port_table(&fleet).into_iter().find(|r| r.node == node && r.component == component).unwrap().port
}

use Observed::{Connected as C, Reset as R, Timeout as T};

#[test]
fn byoc_the_cloud_layer_and_the_node_firewalls_each_refuse_on_their_own() {
    if !kernel_available() {
        return;
    }
    let ex = "examples/byoc.yaml";
    let pg = port_of(ex, "pg-byoc-1", "pg");
    let replication = port_of(ex, "pg-byoc-2", "replication");
    let others = [("gateway", GATEWAY), ("customer", CUSTOMER), ("outside", OUTSIDE), ("egress-host", EGRESS_HOST)];
    let listen = ["acme-bastion-1", "pg-byoc-1", "pg-byoc-2", "outside", "egress-host"];
    let cases: &[Case<'_>] = &[
        ("gateway", "acme-bastion-1", 22, [C, C, C], "gateways reach the bastion's SSH"),
        ("gateway", "acme-bastion-1", 30287, [C, C, C], "... its platform port"),
        ("gateway", "acme-bastion-1", 443, [C, C, C], "... and its tunnel"),
        ("gateway", "acme-bastion-1", pg, [T, T, R], "and nothing else on the bastion"),
        ("gateway", "pg-byoc-1", 22, [T, T, R], "gateways never reach a workload directly"),
        ("acme-bastion-1", "pg-byoc-1", 22, [C, C, C], "the bastion does"),
        ("acme-bastion-1", "pg-byoc-2", 30287, [C, C, C], "(both management ports)"),
        ("customer", "pg-byoc-1", pg, [C, C, C], "customer applications reach the service"),
        ("customer", "pg-byoc-1", 22, [T, T, R], "but not its management"),
        ("outside", "pg-byoc-1", pg, [T, T, R], "outsiders do not reach the service"),
        ("pg-byoc-1", "pg-byoc-2", replication, [C, C, C], "workloads reach each other's cluster listeners"),
        ("pg-byoc-1", "pg-byoc-2", pg, [T, T, R], "but not as clients (not in the ip_filter)"),
        ("pg-byoc-1", "egress-host", 443, [C, C, C], "workloads reach the `egress` networks"),
        ("pg-byoc-1", "outside", 443, [R, T, R], "and nothing else outside (the node refuses first)"),
        ("acme-bastion-1", "outside", 443, [R, T, R], "nor does the bastion"),
    ];
    let problems = two_layers(ex, &others, &listen, &[22, 30287, 443, pg, replication], cases);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn ece_the_cloud_layer_and_the_node_firewalls_each_refuse_on_their_own() {
    if !kernel_available() {
        return;
    }
    let ex = "examples/ece.yaml";
    let pg = port_of(ex, "pg-gov-1", "pg");
    let others = [
        ("gateway", GATEWAY),
        ("proxy", "10.70.0.5"),
        ("peered-app", "172.16.4.9"),
        ("allow-listed", "198.51.100.130"),
        ("outside", OUTSIDE),
    ];
    let listen = ["pg-gov-1", "proxy", "allow-listed", "outside"];
    let cases: &[Case<'_>] = &[
        ("gateway", "pg-gov-1", 22, [C, C, C], "management from the gateways"),
        ("peered-app", "pg-gov-1", pg, [C, C, C], "clients over the peering"),
        ("allow-listed", "pg-gov-1", pg, [T, T, R], "an internet client, even one the proxy relays to, never gets in"),
        ("pg-gov-1", "proxy", 1080, [C, C, C], "the node reaches its SOCKS5 proxy"),
        ("pg-gov-1", "allow-listed", 443, [R, T, R], "but not the internet directly, not even the proxy's allow list"),
        ("pg-gov-1", "outside", 443, [R, T, R], "nor anywhere else outside"),
    ];
    let problems = two_layers(ex, &others, &listen, &[22, 443, 1080, pg], cases);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
