//! Operator access (S10) proven on real OpenSSH: `fleetwall serve` and the `ssh` client in
//! a management-gateway namespace, a node namespace with `fleetwall agent` (its firewall,
//! and `--ssh-trust-dir` for sshd's `TrustedUserCAKeys` and `RevokedKeys`) and Debian's
//! sshd, and a client namespace elsewhere. Each case runs a real login and checks its
//! outcome: refused before approval; accepted from the gateway after approval, refused
//! from another address (by the firewall) and from an address the firewall admits but the
//! certificate's `source-address` does not; refused on another node of the same service
//! (the certificate names its node, and each node's principals file only its own);
//! refused after the window; refused at once after a revoke; sshd's log names the
//! request id.
//!
//! sshd, ssh and ssh-keygen must be installed (scripts/test installs them): without them
//! this test fails, it never passes without having logged in.

mod common;

use common::{bin, cli_in, kernel_available, spawn_in, Scratch, LAB_SERVER};
use fleetwall_lab::netns;
use fleetwall_lab::topo::{Role, Topology};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GATEWAY: &str = "198.51.100.10";
const SERVER: &str = LAB_SERVER;
const NODE: &str = "203.0.113.41";
const NODE2: &str = "203.0.113.42";
const ELSEWHERE: &str = "192.0.2.7";

/// Child processes stopped by pid on drop (before the namespaces go, also on a failure).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ok(gw: &str, ca: &Path, token: &str, args: &[&str]) -> String {
    let (ok, out, err) = cli_in(gw, ca, token, args);
    assert!(ok, "fleetwall {args:?}: {err}");
    out
}

fn json(gw: &str, ca: &Path, token: &str, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    serde_json::from_str(&ok(gw, ca, token, &a)).unwrap()
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

fn tool(name: &str) -> String {
    let out = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && path.starts_with('/'),
        "{name} is needed for the operator-access lab test (Debian: openssh-server, openssh-client; scripts/test installs them)"
    );
    path
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new(tool("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
}

/// One login attempt: `ssh` in namespace `ns` from `bind` to sshd on `to`, with `key` and
/// its certificate `cert` if given. Ok(stdout) when the remote command ran.
fn login(ns: &str, bind: &str, to: &str, key: &Path, cert: Option<&Path>) -> Result<String, String> {
    let mut args: Vec<String> =
        ["netns", "exec", ns, &tool("ssh"), "-F", "/dev/null", "-b", bind].iter().map(|s| s.to_string()).collect();
    for o in [
        "BatchMode=yes",
        "IdentitiesOnly=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "ConnectTimeout=5",
        "LogLevel=ERROR",
        "PasswordAuthentication=no",
    ] {
        args.extend(["-o".to_string(), o.to_string()]);
    }
    args.extend(["-i".to_string(), key.display().to_string()]);
    if let Some(c) = cert {
        args.extend(["-o".to_string(), format!("CertificateFile={}", c.display())]);
    }
    args.extend([format!("root@{to}"), "echo fleetwall-login-ok".to_string()]);
    let out = Command::new("ip").args(&args).stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() && stdout.contains("fleetwall-login-ok") {
        Ok(stdout)
    } else {
        Err(format!("exit {:?}: {}{}", out.status.code(), stdout, String::from_utf8_lossy(&out.stderr)))
    }
}

fn sshd_config(dir: &Path, listen: &str, trust: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let host_key = dir.join("host_ed25519");
    keygen(&host_key, "fleetwall-lab-host");
    let cfg = dir.join("sshd_config");
    let text = format!(
        "Port 22\nListenAddress {listen}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
         TrustedUserCAKeys {trust}/trusted_user_ca_keys\nRevokedKeys {trust}/revoked_keys\n\
         AuthorizedPrincipalsFile {trust}/principals/%u\n\
         AuthorizedKeysFile none\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
         StrictModes no\nLogLevel VERBOSE\n",
        host = host_key.display(),
        pid = dir.join("sshd.pid").display(),
        trust = trust.display(),
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn operator_access_is_enforced_by_real_sshd_from_approval_to_revoke() {
    // Both must be present: a machine without them fails here, it does not skip.
    let (sshd, _) = (tool("sshd"), tool("ssh"));
    if !kernel_available() {
        return;
    }
    let scratch = Scratch::new("operator-access");
    let hosts = vec![
        (Role::Gateway, vec![GATEWAY.parse().unwrap()]),
        (Role::Node("s1".into()), vec![NODE.parse().unwrap()]),
        (Role::Client("elsewhere".into()), vec![ELSEWHERE.parse().unwrap()]),
        (Role::Node("s2".into()), vec![NODE2.parse().unwrap()]),
    ];
    let topo = Topology::build(&netns::run_prefix(), hosts).unwrap();
    let (gw, node, other) = (topo.hosts[0].netns.clone(), topo.hosts[1].netns.clone(), topo.hosts[2].netns.clone());
    let node2 = topo.hosts[3].netns.clone();
    let mut procs = Procs(Vec::new());

    // The control plane in the gateway namespace.
    let data = scratch.0.join("server");
    let fleet = common::root().join("testdata/access/fleet.yaml");
    let serve = [
        "serve",
        "--listen",
        &format!("{GATEWAY}:8181"),
        "--data-dir",
        data.to_str().unwrap(),
        "--fleet",
        fleet.to_str().unwrap(),
    ];
    procs.0.push(spawn_in(&gw, bin(), &serve, &scratch.0.join("server.log")));
    let token_file = data.join("admin.token");
    wait_for("the admin token", Duration::from_secs(30), || {
        std::fs::read_to_string(&token_file).is_ok_and(|t| t.ends_with('\n'))
    });
    let admin = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    let ca = data.join("ca.pem");
    wait_for("the server", Duration::from_secs(30), || cli_in(&gw, &ca, &admin, &["status"]).0);
    let token = |args: &[&str]| -> String {
        let mut a = vec!["token", "create"];
        a.extend(args);
        ok(&gw, &ca, &admin, &a).trim().to_string()
    };
    let (alice, bob) = (token(&["--operator", "alice"]), token(&["--security", "bob"]));
    ok(&gw, &ca, &admin, &["access", "settings", "--principals", "root"]);

    // Each node: its agent (firewall and trust files) and sshd reading those files.
    std::fs::create_dir_all("/run/sshd").unwrap(); // Debian's sshd wants its privilege-separation directory.
    let mut sshd_logs = Vec::new();
    for (name, ns, addr) in [("s1", &node, NODE), ("s2", &node2, NODE2)] {
        let agent = token(&["--node", name]);
        let trust = scratch.0.join(format!("ssh-trust-{name}"));
        let state = scratch.0.join(format!("state-{name}"));
        let agent_args = [
            "agent",
            "--server",
            SERVER,
            "--ca",
            ca.to_str().unwrap(),
            "--node",
            name,
            "--token",
            &agent,
            "--state-dir",
            state.to_str().unwrap(),
            "--metrics-listen",
            "off",
            "--ssh-trust-dir",
            trust.to_str().unwrap(),
        ];
        procs.0.push(spawn_in(ns, bin(), &agent_args, &scratch.0.join(format!("agent-{name}.log"))));
        wait_for("the agent's trust files", Duration::from_secs(30), || {
            trust.join("trusted_user_ca_keys").exists() && trust.join("principals/root").exists()
        });
        let cfg = sshd_config(&scratch.0.join(format!("sshd-{name}")), addr, &trust);
        let log = scratch.0.join(format!("sshd-{name}.log"));
        procs.0.push(spawn_in(ns, &sshd, &["-D", "-e", "-f", cfg.to_str().unwrap()], &log));
        sshd_logs.push(log);
    }
    let trust = scratch.0.join("ssh-trust-s1");
    let revoked_file = trust.join("revoked_keys");
    let in_sync = || {
        let v: serde_json::Value = serde_json::from_str(&ok(&gw, &ca, &admin, &["status", "--json"])).unwrap();
        v["nodes"].as_array().is_some_and(|n| n.len() == 2 && n.iter().all(|n| n["state"] == "in-sync"))
    };
    wait_for("the nodes' firewalls", Duration::from_secs(30), in_sync);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let log = || read(&sshd_logs[0]);
    let log2 = || read(&sshd_logs[1]);
    let logged = |what: &str, needle: &str| {
        let start = Instant::now();
        while !log().contains(needle) {
            assert!(start.elapsed() < Duration::from_secs(5), "sshd did not log {what} ({needle:?}):\n{}", log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("sshd on s1 to listen", Duration::from_secs(10), || log().contains("Server listening on 127.0.0.1"));
    wait_for("sshd on s2 to listen", Duration::from_secs(10), || log2().contains("Server listening on 127.0.0.1"));

    let key_a = scratch.0.join("alice_a");
    keygen(&key_a, "alice@laptop");
    let cert_a = scratch.0.join("alice_a-cert.pub");
    let request = |key: &Path, window: &str| -> String {
        let pubkey = format!("{}.pub", key.display());
        let args = ["access", "request", "--node", "s1", "--reason", "INC-7: lab", "--for", window, "--key", &pubkey];
        let v = json(&gw, &ca, &alice, &args);
        assert_eq!(v["state"], "pending", "{v}");
        v["id"].as_str().unwrap().to_string()
    };

    // 1. Before approval: no certificate, no login.
    let a = request(&key_a, "10m");
    assert!(!cli_in(&gw, &ca, &alice, &["access", "cert", &a]).0, "no certificate before approval");
    let refused = login(&gw, GATEWAY, NODE, &key_a, None);
    assert!(refused.is_err(), "logged in before approval: {refused:?}");
    // The requester cannot approve, with any token of theirs.
    assert!(!cli_in(&gw, &ca, &alice, &["access", "approve", &a]).0);

    // 2. Approved by someone else: in from the gateway, and sshd names the request.
    let v = json(&gw, &ca, &bob, &["access", "approve", &a]);
    assert_eq!(v["state"], "active", "{v}");
    ok(&gw, &ca, &alice, &["access", "cert", &a, "--out", cert_a.to_str().unwrap()]);
    let out = login(&gw, GATEWAY, NODE, &key_a, Some(&cert_a)).expect("login from the gateway after approval");
    assert!(out.contains("fleetwall-login-ok"));
    let serial = v["serial"].as_i64().unwrap();
    let named = format!("ID {a} (serial {serial})");
    logged("the request id", &named);
    assert!(log().lines().any(|l| l.contains("Accepted publickey for root") && l.contains(&named)), "{}", log());

    // 3. From anywhere else: the firewall refuses another address; from an address the
    //    firewall admits (the node's loopback) the certificate's source-address refuses.
    let e = login(&other, ELSEWHERE, NODE, &key_a, Some(&cert_a)).unwrap_err();
    assert!(e.contains("refused") || e.contains("reset"), "the firewall should reset it: {e}");
    let e = login(&node, "127.0.0.1", "127.0.0.1", &key_a, Some(&cert_a)).unwrap_err();
    assert!(!e.contains("fleetwall-login-ok"), "{e}");
    logged("the refused source address", "not from a permitted source address");
    // On another node of the service: the firewall admits the gateway, sshd trusts the CA,
    // but the certificate names node s1, which s2's principals file does not list.
    let e = login(&gw, GATEWAY, NODE2, &key_a, Some(&cert_a)).unwrap_err();
    assert!(!e.contains("fleetwall-login-ok"), "{e}");
    assert!(log2().contains(&format!("ID {a} (serial {serial})")), "s2 saw the certificate:\n{}", log2());
    assert!(!log2().contains("Accepted publickey"), "s2 let it in:\n{}", log2());
    // `access list --active`: who has access now.
    let active = json(&gw, &ca, &bob, &["access", "list", "--active"]);
    assert_eq!(active["requests"].as_array().unwrap().len(), 1, "{active}");

    // 4. Revoked: the agent rewrites RevokedKeys within a round trip, and the next login fails.
    let before = std::fs::read_to_string(&revoked_file).unwrap();
    let revoked_at = Instant::now();
    let v = json(&gw, &ca, &bob, &["access", "revoke", &a]);
    assert_eq!(v["state"], "revoked");
    wait_for("the revoked key on the node", Duration::from_secs(5), || {
        std::fs::read_to_string(&revoked_file).is_ok_and(|t| t != before && t.contains(&a))
    });
    // From before `fleetwall access revoke` started to RevokedKeys changed on the node.
    let took = revoked_at.elapsed();
    let e = login(&gw, GATEWAY, NODE, &key_a, Some(&cert_a)).unwrap_err();
    assert!(!e.contains("fleetwall-login-ok"), "{e}");
    eprintln!(
        "operator access: revoke command started -> RevokedKeys rewritten on the node within {} ms; the next login refused {} ms after the revoke",
        took.as_millis(),
        revoked_at.elapsed().as_millis()
    );
    logged("the revoked key", "revoked by file");
    // The key is burnt: a new request needs a new key.
    let pubkey = format!("{}.pub", key_a.display());
    let again = ["access", "request", "--node", "s1", "--reason", "again", "--for", "5m", "--key", &pubkey];
    assert!(!cli_in(&gw, &ca, &alice, &again).0, "a revoked key is refused");

    // 5. A short window: in while it lasts, out after it (bounded wait).
    let key_b = scratch.0.join("alice_b");
    keygen(&key_b, "alice@laptop-2");
    let cert_b = scratch.0.join("alice_b-cert.pub");
    let b = request(&key_b, "4s");
    let v = json(&gw, &ca, &bob, &["access", "approve", &b]);
    ok(&gw, &ca, &alice, &["access", "cert", &b, "--out", cert_b.to_str().unwrap()]);
    login(&gw, GATEWAY, NODE, &key_b, Some(&cert_b)).expect("login inside the window");
    let end = v["valid_before"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_secs(5));
    let e = login(&gw, GATEWAY, NODE, &key_b, Some(&cert_b)).unwrap_err();
    assert!(!e.contains("fleetwall-login-ok"), "logged in after the window ended at {end}: {e}");
    let list = json(&gw, &ca, &bob, &["access", "list"]);
    let states: Vec<&str> = list["requests"].as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["revoked", "ended"], "{list}");

    // 6. The audit tells each access's story.
    let story = ok(&gw, &ca, &bob, &["audit", "--access", &a]);
    for step in ["access.request", "access.approve", "access.issue", "access.revoke", &format!("serial {serial}")] {
        assert!(story.contains(step), "{step} missing from:\n{story}");
    }
    let story = ok(&gw, &ca, &bob, &["audit", "--access", &b]);
    assert!(story.contains("access.issue") && story.contains("access.end"), "{story}");

    drop(procs);
}
