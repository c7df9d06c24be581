//! Two layers in a real kernel: `examples/byoc.yaml` with a router namespace between every
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

#[test]
fn the_cloud_layer_and_the_node_firewalls_each_refuse_on_their_own() {
    if !kernel_available() {
        return;
    }
    let src = std::fs::read_to_string(root().join("examples/byoc.yaml")).unwrap();
    let fleet = load(&src, &Catalog::builtin()).0.expect("the example validates");
    let rulesets = fleetwall_compile::compile(&fleet);
    let pg = fleetwall_compile::port_table(&fleet)
        .into_iter()
        .find(|r| r.node == "pg-byoc-1" && r.component == "pg")
        .unwrap()
        .port;
    let replication = fleetwall_compile::port_table(&fleet)
        .into_iter()
        .find(|r| r.node == "pg-byoc-2" && r.component == "replication")
        .unwrap()
        .port;

    // Hosts: the fleet's nodes (IPv4 only: the SDN is checked on one family) and the
    // parties around them, each on its own link to the router.
    let mut hosts: Vec<(String, Vec<IpAddr>)> = fleet
        .nodes()
        .map(|(_, _, n)| (n.name.clone(), n.private.iter().chain(&n.public).copied().filter(|a| a.is_ipv4()).collect()))
        .collect();
    for (name, a) in [("gateway", GATEWAY), ("customer", CUSTOMER), ("outside", OUTSIDE), ("egress-host", EGRESS_HOST)]
    {
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
    let _listeners: Vec<Listeners> = ["acme-bastion-1", "pg-byoc-1", "pg-byoc-2", "outside", "egress-host"]
        .iter()
        .map(|h| Listeners::start(&ns(host(h)), &[22, 30287, 443, pg, replication], &[]).unwrap())
        .collect();

    let sdn = ok(&["plan", "examples/byoc.yaml", "--format", "sdn"]);
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
    // (from, to, port, what each layer setting shows: both, SDN only, nodes only)
    use Observed::{Connected as C, Reset as R, Timeout as T};
    let cases: &[(&str, &str, u16, [Observed; 3], &str)] = &[
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
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
