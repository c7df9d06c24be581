//! The agent on iptables hosts: an agent with the iptables driver and one with the nft
//! driver, each fed by a fake control plane and programming a node namespace of its own
//! lab network (namespaces the test creates and removes), reach the same verdicts for
//! real TCP connections; and an ip_filter change reaches both as a set delta.

mod common;

use common::kernel_available;
use fleetwall_agent::{Agent, Config, Dataplane, Iptables, Nft};
use fleetwall_ir::NodeRuleset;
use fleetwall_lab::probe::{probe, Listeners, Observed};
use fleetwall_lab::topo::{Role, Topology};
use fleetwall_model::Protocol;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODE: &str = "pg-main-1";
/// pg, pgbouncer (clients from the ip_filter), replication (peers only), and a port
/// nothing listens for.
const PORTS: [u16; 4] = [12691, 12692, 12694, 80];
const OFFICE: &str = "198.51.100.7";
const OFFICE6: &str = "2001:db8:1::7";
const STRANGER: &str = "192.0.2.7";

/// The node's ruleset from examples/public-pg.yaml, with `extra` appended to its ip_filter.
fn ruleset(extra: &[&str]) -> NodeRuleset {
    let mut yaml = std::fs::read_to_string(common::root().join("examples/public-pg.yaml")).unwrap();
    let anchor = "            - 192.0.2.128/25\n";
    assert!(yaml.contains(anchor), "examples/public-pg.yaml changed its ip_filter");
    let added: String = extra.iter().map(|e| format!("            - {e}\n")).collect();
    yaml = yaml.replace(anchor, &format!("{anchor}{added}"));
    let (fleet, diags) = fleetwall_model::load(&yaml, &fleetwall_model::Catalog::builtin());
    let fleet = fleet.unwrap_or_else(|| panic!("{:?}", diags.items));
    fleetwall_compile::compile(&fleet).into_iter().find(|rs| rs.node == NODE).unwrap()
}

/// A fake control plane serving `current` (revision, ruleset) to the node's agent.
fn control_plane(current: Arc<Mutex<(i64, NodeRuleset)>>, reported: Arc<AtomicI64>) -> fleetwall_server::web::Server {
    let handler: fleetwall_server::web::Handler = Arc::new(move |req| {
        if req.method == "PUT" {
            let v: serde_json::Value = req.json().unwrap();
            reported.store(v["revision"].as_i64().unwrap_or(-1), Ordering::Relaxed);
            return fleetwall_server::web::Response::json(200, &serde_json::json!({}));
        }
        let (rev, rs) = current.lock().unwrap().clone();
        let after: i64 = req.query("after").and_then(|a| a.parse().ok()).unwrap_or(-1);
        if after >= rev {
            // No long-poll here: the agent asks again at once, which is fine for a test.
            std::thread::sleep(Duration::from_millis(20));
            return fleetwall_server::web::Response::new(304, "text/plain", "");
        }
        let body = fleetwall_api::RulesetResponse {
            fleet_revision: rev,
            hash: rs.canonical_hash(),
            node: rs.node.clone(),
            revision: rev,
            ruleset: rs,
        };
        fleetwall_server::web::Response::json(200, &body)
    });
    fleetwall_server::web::Server::bind("127.0.0.1:0", None, handler).unwrap()
}

fn wait(what: &str, until: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !until() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Probe outcomes: (client, port, connected?).
type Verdicts = Vec<(IpAddr, u16, bool)>;

/// TCP probes from every client to every port of the node.
fn verdicts(topo: &Topology) -> Verdicts {
    let node = topo.node(NODE).unwrap();
    let mut rows = Vec::new();
    for host in topo.hosts.iter().filter(|h| matches!(h.role, Role::Client(_))) {
        let (ns, src) = (host.netns.clone(), host.addrs[0]);
        let dst = *node.addrs.iter().find(|a| a.is_ipv4() == src.is_ipv4()).unwrap();
        let seen = std::thread::spawn(move || {
            fleetwall_lab::netns::enter(&ns).unwrap();
            PORTS.map(|port| (port, probe(src, dst, port, Protocol::Tcp).0))
        })
        .join()
        .unwrap();
        for (port, observed) in seen {
            assert!(
                matches!(observed, Observed::Connected | Observed::Reset),
                "{src} -> {dst}:{port}: {observed:?} (refusals are resets, never silence)"
            );
            rows.push((src, port, observed == Observed::Connected));
        }
    }
    rows
}

/// What the fleet says: clients of the ip_filter reach pg and pgbouncer, nothing else.
fn expected(admitted: &[&str]) -> Verdicts {
    let mut rows = Vec::new();
    for src in [OFFICE, OFFICE6, STRANGER] {
        for port in PORTS {
            rows.push((src.parse().unwrap(), port, admitted.contains(&src) && [12691, 12692].contains(&port)));
        }
    }
    rows
}

/// One agent on `driver` in a lab network of its own: verdicts at revision 1, then at
/// revision 2 (the stranger added to the ip_filter, which must come as a set delta).
fn run_agent(backend: &str, driver: fn(String) -> Box<dyn Dataplane>) -> (Verdicts, Verdicts) {
    let hosts = vec![
        (Role::Node(NODE.into()), vec!["203.0.113.5".parse().unwrap(), "2001:db8:5::5".parse().unwrap()]),
        (Role::Client("office".into()), vec![OFFICE.parse().unwrap()]),
        (Role::Client("office v6".into()), vec![OFFICE6.parse().unwrap()]),
        (Role::Client("stranger".into()), vec![STRANGER.parse().unwrap()]),
    ];
    let topo = Topology::build(&fleetwall_lab::netns::run_prefix(), hosts).unwrap();
    let node_ns = topo.node(NODE).unwrap().netns.clone();
    let _listeners = Listeners::start(&node_ns, &PORTS, &[]).unwrap();

    let current = Arc::new(Mutex::new((1, ruleset(&[]))));
    let reported = Arc::new(AtomicI64::new(-1));
    let server = control_plane(current.clone(), reported.clone());
    let cfg = Config {
        server: format!("http://{}", server.local_addr()),
        node: NODE.into(),
        token: "t".into(),
        ca: None,
        state_dir: None,
        resync: Duration::from_millis(50),
        poll: Duration::from_millis(100),
        gateways: Vec::new(),
    };
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let on_event = Box::new(move |e: &fleetwall_agent::Event| {
        if let fleetwall_agent::Event::Error(m) = e {
            seen.lock().unwrap().push(m.clone());
        }
    });
    let mut agent = Agent::new(cfg, driver(node_ns.clone()), on_event).unwrap();
    assert_eq!(agent.dataplane(), backend);
    let (stats, stop) = (agent.stats.clone(), Arc::new(AtomicBool::new(false)));
    let s2 = stop.clone();
    let t = std::thread::spawn(move || agent.run(&s2));

    wait("revision 1 reported", || reported.load(Ordering::Relaxed) == 1);
    let first = verdicts(&topo);
    let applies = stats.applies.load(Ordering::Relaxed);
    *current.lock().unwrap() = (2, ruleset(&[&format!("{STRANGER}/32")]));
    wait("revision 2 reported", || reported.load(Ordering::Relaxed) == 2);
    let second = verdicts(&topo);
    // Several drift checks (every 50 ms) have passed meanwhile: none found drift.
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    server.shutdown();
    assert_eq!(stats.drift_repairs.load(Ordering::Relaxed), 0, "{backend}: drift seen after its own apply");
    assert_eq!(stats.applies.load(Ordering::Relaxed), applies + 1, "{backend}: one apply for revision 2");
    assert_eq!(stats.delta_applies.load(Ordering::Relaxed), 1, "{backend}: revision 2 was a set delta");
    assert!(errors.lock().unwrap().is_empty(), "{backend}: {:?}", errors.lock().unwrap());
    (first, second)
}

#[test]
fn an_agent_on_iptables_applies_and_reaches_the_same_verdicts_as_on_nft() {
    if !kernel_available() {
        return;
    }
    let nft = run_agent("nft", |ns| Box::new(Nft::new(Some(ns))));
    let iptables = run_agent("iptables", |ns| Box::new(Iptables::new(Some(ns))));
    assert_eq!(nft.0, expected(&[OFFICE, OFFICE6]), "nft, revision 1");
    assert_eq!(nft.1, expected(&[OFFICE, OFFICE6, STRANGER]), "nft, revision 2");
    assert_eq!(iptables, nft, "iptables reaches the verdicts nft reaches");
}

#[test]
fn the_dataplane_benchmark_measures_full_and_delta_and_leaves_no_namespace() {
    if !kernel_available() {
        return;
    }
    let before: Vec<String> = fleetwall_lab::netns::list();
    let out = common::fleetwall(&["bench", "--dataplane", "--runs", "3", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backends: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["backend"].as_str().unwrap()).collect();
    assert_eq!(backends, ["nft", "iptables"]);
    for r in rows.as_array().unwrap() {
        assert_eq!(r["entries"], 8000, "{r}");
        assert!(r["full_ms"].as_f64().unwrap() > 0.0 && r["delta_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
    let left: Vec<String> = fleetwall_lab::netns::list().into_iter().filter(|n| !before.contains(n)).collect();
    assert!(left.iter().all(|n| !n.ends_with("bench")), "left behind: {left:?}");
}
