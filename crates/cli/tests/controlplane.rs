//! End to end in the lab: `fleetwall serve` in a management-gateway namespace, one
//! `fleetwall agent` per node namespace reaching the server through the node's own
//! firewall, and the fleet changed through the API and the CLI while real probes watch
//! every node's kernel.

mod common;

use common::{bin, cli_in, kernel_available, spawn_in, Scratch, LAB_SERVER};
use fleetwall_lab::netns;
use fleetwall_lab::probe::{probe, Listeners, Observed};
use fleetwall_lab::topo::{Role, Topology};
use fleetwall_model::Protocol;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const GATEWAY: &str = "198.51.100.10";
const SERVER: &str = LAB_SERVER;
const NODES: [(&str, &str, &str); 4] = [
    ("k1", "10.30.0.1", "203.0.113.31"),
    ("k2", "10.30.0.2", "203.0.113.32"),
    ("k3", "10.30.0.3", "203.0.113.33"),
    ("k4", "10.30.0.4", "203.0.113.34"),
];
const CLIENT_IN: &str = "192.0.2.7";
const CLIENT_NEW: &str = "203.0.113.99";
const KAFKA: u16 = 15072;
const INTER_BROKER: u16 = 15078;

/// Child processes killed on drop (before the namespaces go).
struct Procs(Vec<(String, Child)>);

impl Procs {
    fn kill(&mut self, name: &str) {
        if let Some(i) = self.0.iter().position(|(n, _)| n == name) {
            let (_, mut c) = self.0.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn probe_from(ns: &str, src: &str, dst: &str, port: u16) -> Observed {
    let (ns, src, dst) = (ns.to_string(), src.parse::<IpAddr>().unwrap(), dst.parse::<IpAddr>().unwrap());
    std::thread::spawn(move || {
        netns::enter(&ns).unwrap();
        probe(src, dst, port, Protocol::Tcp).0
    })
    .join()
    .unwrap()
}

/// Probes until `want` is seen or 10 s pass; returns what was seen last.
fn eventually(ns: &str, src: &str, dst: &str, port: u16, want: &Observed) -> Observed {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = probe_from(ns, src, dst, port);
        if &seen == want || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn has_table(ns: &str) -> bool {
    fleetwall_apply::run(Some(ns), "nft", &["list", "table", "inet", "fleetwall"], None).is_ok()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn agents_follow_the_control_plane_and_hold_their_rules_without_it() {
    if !kernel_available() {
        return;
    }
    let scratch = Scratch::new("cp-e2e");
    let prefix = netns::run_prefix();
    let mut hosts = vec![(Role::Gateway, vec![GATEWAY.parse().unwrap()])];
    for (n, private, public) in NODES {
        hosts.push((Role::Node(n.into()), vec![private.parse().unwrap(), public.parse().unwrap()]));
    }
    hosts.push((Role::Client("inside ip_filter".into()), vec![CLIENT_IN.parse().unwrap()]));
    hosts.push((Role::Client("the new office".into()), vec![CLIENT_NEW.parse().unwrap()]));
    let topo = Topology::build(&prefix, hosts).unwrap();
    let ns_of = |role: &Role| topo.hosts.iter().find(|h| &h.role == role).unwrap().netns.clone();
    let gw = ns_of(&Role::Gateway);
    let node_ns = |n: &str| ns_of(&Role::Node(n.into()));
    let client_in = ns_of(&Role::Client("inside ip_filter".into()));
    let client_new = ns_of(&Role::Client("the new office".into()));
    let mut listeners = Vec::new();
    for (n, _, _) in NODES {
        listeners.push(Listeners::start(&node_ns(n), &[KAFKA, INTER_BROKER, 22], &[]).unwrap());
    }

    let mut procs = Procs(Vec::new());
    let data = scratch.0.join("server");
    let fleet = common::root().join("testdata/controlplane/fleet.yaml");
    procs.0.push((
        "server".into(),
        spawn_in(
            &gw,
            bin(),
            &[
                "serve",
                "--listen",
                &format!("{GATEWAY}:8181"),
                "--data-dir",
                data.to_str().unwrap(),
                "--fleet",
                fleet.to_str().unwrap(),
            ],
            &scratch.0.join("server.log"),
        ),
    ));
    let token_file = data.join("admin.token");
    wait_for("the server's admin token", || std::fs::read_to_string(&token_file).is_ok_and(|t| t.ends_with('\n')));
    let admin = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    // Off loopback the server speaks TLS with a certificate from its own CA.
    let ca = data.join("ca.pem");
    wait_for("the server to answer", || cli_in(&gw, &ca, &admin, &["status"]).0);

    let start_agent = |procs: &mut Procs, n: &str, token: &str| {
        let state = scratch.0.join(format!("state-{n}"));
        let log = scratch.0.join(format!("agent-{n}.log"));
        let child = spawn_in(
            &node_ns(n),
            bin(),
            &[
                "agent",
                "--server",
                SERVER,
                "--ca",
                ca.to_str().unwrap(),
                "--node",
                n,
                "--token",
                token,
                "--state-dir",
                state.to_str().unwrap(),
                "--resync",
                "0.5",
            ],
            &log,
        );
        procs.0.push((format!("agent-{n}"), child));
    };
    let mut tokens = std::collections::HashMap::new();
    for (n, _, _) in NODES {
        let (ok, out, err) = cli_in(&gw, &ca, &admin, &["token", "create", "--node", n]);
        assert!(ok, "{err}");
        tokens.insert(n, out.trim().to_string());
    }
    for (n, _, _) in &NODES[..3] {
        start_agent(&mut procs, n, &tokens[n]);
    }
    let in_sync = |want: usize| {
        let (ok, out, _) = cli_in(&gw, &ca, &admin, &["status", "--json"]);
        let v: serde_json::Value = if ok { serde_json::from_str(&out).unwrap() } else { serde_json::Value::Null };
        let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
        nodes.len() == want && nodes.iter().all(|n| n["state"] == "in-sync")
    };
    wait_for("3 agents in sync", || in_sync(3));
    for (n, _, public) in &NODES[..3] {
        assert!(has_table(&node_ns(n)), "{n} has our table");
        assert_eq!(
            probe_from(&client_in, CLIENT_IN, public, KAFKA),
            Observed::Connected,
            "ip_filter admits {CLIENT_IN} on {n}"
        );
        assert_eq!(
            probe_from(&node_ns("k4"), "203.0.113.34", public, INTER_BROKER),
            Observed::Reset,
            "k4 is no peer of {n} yet"
        );
    }
    assert_eq!(
        probe_from(&node_ns("k2"), "203.0.113.32", "203.0.113.31", INTER_BROKER),
        Observed::Connected,
        "peers reach each other"
    );

    // A fourth node: every peer opens its cluster listeners to it.
    let (ok, out, err) = cli_in(
        &gw,
        &ca,
        &admin,
        &["node", "add", "acme", "kafka-e2e", "k4", "--private", "10.30.0.4", "--public", "203.0.113.34"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("4 node rulesets changed"), "{out}");
    start_agent(&mut procs, "k4", &tokens["k4"]);
    for (n, _, public) in &NODES[..3] {
        assert_eq!(
            eventually(&node_ns("k4"), "203.0.113.34", public, INTER_BROKER, &Observed::Connected),
            Observed::Connected,
            "k4 → {n}"
        );
    }
    assert_eq!(
        eventually(&node_ns("k1"), "203.0.113.31", "203.0.113.34", INTER_BROKER, &Observed::Connected),
        Observed::Connected
    );
    wait_for("4 agents in sync", || in_sync(4));

    // Removing it closes them again.
    let (ok, _, err) = cli_in(&gw, &ca, &admin, &["node", "remove", "acme", "kafka-e2e", "k4"]);
    assert!(ok, "{err}");
    procs.kill("agent-k4");
    for (n, _, public) in &NODES[..3] {
        assert_eq!(
            eventually(&node_ns("k4"), "203.0.113.34", public, INTER_BROKER, &Observed::Reset),
            Observed::Reset,
            "k4 → {n} closed"
        );
    }

    // An ip_filter change made with the CLI reaches the kernel of every node.
    let (ok, out, err) =
        cli_in(&gw, &ca, &admin, &["service", "update", "acme", "kafka-e2e", "-c", "ip_filter=['203.0.113.96/28']"]);
    assert!(ok, "{err}");
    assert!(out.contains("3 node rulesets changed"), "{out}");
    for (n, _, public) in &NODES[..3] {
        assert_eq!(
            eventually(&client_new, CLIENT_NEW, public, KAFKA, &Observed::Connected),
            Observed::Connected,
            "new office → {n}"
        );
        assert_eq!(
            eventually(&client_in, CLIENT_IN, public, KAFKA, &Observed::Reset),
            Observed::Reset,
            "old office → {n}"
        );
    }
    wait_for("3 agents in sync after the update", || in_sync(3));
    let (ok, _, err) =
        cli_in(&gw, &ca, &admin, &["service", "update", "acme", "kafka-e2e", "-c", "ip_filter=['not-a-cidr']"]);
    assert!(!ok);
    assert!(
        err.contains("Invalid 'user_config': Invalid input for ip_filter") && err.contains("(status 400)"),
        "{err}"
    );

    // The server stops: every node keeps its rules.
    procs.kill("server");
    std::thread::sleep(Duration::from_millis(1500));
    for (n, _, public) in &NODES[..3] {
        assert!(has_table(&node_ns(n)), "{n} kept our table");
        assert_eq!(
            probe_from(&client_new, CLIENT_NEW, public, KAFKA),
            Observed::Connected,
            "{n} still admits the new office"
        );
        assert_eq!(
            probe_from(&client_in, CLIENT_IN, public, KAFKA),
            Observed::Reset,
            "{n} still refuses the old office"
        );
    }

    // An agent restarted while the server is down re-applies the last good ruleset.
    procs.kill("agent-k1");
    fleetwall_apply::run(Some(&node_ns("k1")), "nft", &["delete", "table", "inet", "fleetwall"], None).unwrap();
    assert_eq!(
        probe_from(&client_in, CLIENT_IN, "203.0.113.31", KAFKA),
        Observed::Connected,
        "k1 is open without our table"
    );
    start_agent(&mut procs, "k1", &tokens["k1"]);
    wait_for("k1's last good ruleset", || has_table(&node_ns("k1")));
    assert_eq!(probe_from(&client_in, CLIENT_IN, "203.0.113.31", KAFKA), Observed::Reset);
    assert_eq!(probe_from(&client_new, CLIENT_NEW, "203.0.113.31", KAFKA), Observed::Connected);
    let log = std::fs::read_to_string(scratch.0.join("agent-k1.log")).unwrap();
    assert!(log.contains("re-applied the last good ruleset"), "{log}");

    // Drift: someone deletes our table on k2; its agent restores it within the resync interval.
    fleetwall_apply::run(Some(&node_ns("k2")), "nft", &["delete", "table", "inet", "fleetwall"], None).unwrap();
    wait_for("k2's drift repair", || has_table(&node_ns("k2")));
    assert_eq!(eventually(&client_in, CLIENT_IN, "203.0.113.32", KAFKA, &Observed::Reset), Observed::Reset);

    drop(procs);
    drop(listeners);
    drop(topo);
    let _: PathBuf = scratch.0.clone();
}

/// Writes `token` to a file only its owner may read, as an agent's `--token-file`.
fn token_file(dir: &Path, token: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("agent.token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn an_agent_starting_with_nothing_to_enforce_left_the_node_open() {
    if !kernel_available() {
        return;
    }
    let scratch = Scratch::new("cp-baseline");
    let hosts = vec![
        (Role::Node("b1".into()), vec!["10.40.0.1".parse().unwrap()]),
        (Role::Gateway, vec![GATEWAY.parse().unwrap()]),
        (Role::Client("anyone else".into()), vec![CLIENT_IN.parse().unwrap()]),
    ];
    let topo = Topology::build(&netns::run_prefix(), hosts).unwrap();
    let (node, gw, other) = (&topo.hosts[0].netns, &topo.hosts[1].netns, &topo.hosts[2].netns);
    let _listeners = Listeners::start(node, &[22, KAFKA], &[]).unwrap();
    assert!(!has_table(node), "a node just rebooted: no table of ours");
    let state = scratch.0.join("state");
    let token = token_file(&scratch.0, "not-checked-by-anyone");
    let log = scratch.0.join("agent.log");
    // Nothing listens on port 1 of the node's loopback: the server is unreachable.
    let args = ["agent", "--server", "http://127.0.0.1:1", "--node", "b1", "--token-file"];
    let mut args: Vec<&str> = args.to_vec();
    args.extend([token.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
    let gateway = format!("{GATEWAY}/32");
    args.extend(["--gateway", &gateway, "--metrics-listen", "off"]);
    let procs = Procs(vec![("agent".into(), spawn_in(node, bin(), &args, &log))]);
    wait_for("the baseline", || has_table(node));
    let table = fleetwall_apply::run(Some(node), "nft", &["list", "table", "inet", "fleetwall"], None).unwrap();
    assert!(table.contains("baseline-mgmt-v4") && table.contains(GATEWAY), "{table}");
    assert_eq!(probe_from(gw, GATEWAY, "10.40.0.1", 22), Observed::Connected, "management from the gateway");
    assert_eq!(probe_from(gw, GATEWAY, "10.40.0.1", KAFKA), Observed::Reset, "nothing else from the gateway");
    assert_eq!(probe_from(other, CLIENT_IN, "10.40.0.1", 22), Observed::Reset, "no management from elsewhere");
    // The agent logs the baseline once it has also fingerprinted it, which can come after
    // the table is visible: wait for the line before stopping the agent.
    let logged = || std::fs::read_to_string(&log).unwrap_or_default().contains("fail-closed baseline applied");
    wait_for("the baseline in the log", logged);
    drop(procs);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("fail-closed baseline applied") && log.contains(GATEWAY), "{log}");
}

#[test]
fn the_agent_token_was_visible_in_its_command_line() {
    if !kernel_available() {
        return;
    }
    let scratch = Scratch::new("cp-token-file");
    let ns = common::Namespaces::new();
    let ns_name = ns.create("lo");
    fleetwall_apply::run(Some(&ns_name), "ip", &["link", "set", "lo", "up"], None).unwrap();
    // Server and agent share the namespace's loopback; k1's ruleset admits loopback.
    let server = "http://127.0.0.1:8181";
    let data = scratch.0.join("server");
    let fleet = common::root().join("testdata/controlplane/fleet.yaml");
    let serve = ["serve", "--listen", "127.0.0.1:8181", "--data-dir", data.to_str().unwrap()];
    let mut serve: Vec<&str> = serve.to_vec();
    serve.extend(["--fleet", fleet.to_str().unwrap()]);
    let mut procs = Procs(vec![("server".into(), spawn_in(&ns_name, bin(), &serve, &scratch.0.join("server.log")))]);
    let admin_file = data.join("admin.token");
    wait_for("the admin token", || std::fs::read_to_string(&admin_file).is_ok_and(|t| t.ends_with('\n')));
    let admin = std::fs::read_to_string(&admin_file).unwrap().trim().to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns_name, bin()])
            .args(args)
            .env("FLEETWALL_SERVER", server)
            .env("FLEETWALL_TOKEN", &admin)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    wait_for("the server", || cli(&["status"]).0);
    let (ok, out) = cli(&["token", "create", "--node", "k1"]);
    assert!(ok);
    let token = out.trim().to_string();
    let file = token_file(&scratch.0, &token);
    let state = scratch.0.join("state");
    let agent = ["agent", "--server", server, "--node", "k1", "--token-file", file.to_str().unwrap()];
    let mut agent: Vec<&str> = agent.to_vec();
    agent.extend(["--state-dir", state.to_str().unwrap(), "--metrics-listen", "off"]);
    let child = spawn_in(&ns_name, bin(), &agent, &scratch.0.join("agent.log"));
    let pid = child.id();
    procs.0.push(("agent".into(), child));
    wait_for("k1 in sync", || {
        let (ok, out) = cli(&["status", "--json"]);
        let v: serde_json::Value = if ok { serde_json::from_str(&out).unwrap() } else { serde_json::Value::Null };
        v["nodes"].as_array().is_some_and(|n| n.iter().any(|n| n["node"] == "k1" && n["state"] == "in-sync"))
    });
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("agent") && cmdline.contains("--token-file"), "{cmdline}");
    assert!(!cmdline.contains(&token), "the token is not in the command line: {cmdline}");
    // A token file others may read is refused, with a reason.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns_name, bin(), "agent", "--server", server, "--node", "k1", "--token-file"])
        .arg(&file)
        .output();
    let err = String::from_utf8_lossy(&out.unwrap().stderr).into_owned();
    assert!(err.contains("accessible to group or others (mode 644); chmod 600 it"), "{err}");
    drop(procs);
}
