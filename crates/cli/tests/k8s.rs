//! `plan --format k8s`: every NetworkPolicy manifest validates with the
//! `kubernetes-validate` package (its bundled schemas, offline, Kubernetes 1.30, strict),
//! and the policies mean what the node firewall means on sample packets: everything the
//! node rulesets accept the policies allow, and what they allow beyond is exactly the
//! DNS/NTP egress `plan` warns about.

mod common;
use common::*;
use fleetwall_eval::{evaluate_in, Packet, Transport};
use fleetwall_ir::{Direction, Verdict};
use fleetwall_model::{load, Catalog};
use ipnet::IpNet;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version the manifests are validated for.
const KUBERNETES: &str = "1.30.0";

/// A private virtualenv with kubernetes-validate, made once under the target directory;
/// a loud failure when it cannot be made.
fn venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubernetes-validate-venv");
    let tool = dir.join("bin/kubernetes-validate");
    if tool.exists() {
        return dir;
    }
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed (needed to validate the manifests): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&dir), "python3 -m venv (Debian: python3-venv)");
    run(
        Command::new(dir.join("bin/pip")).args(["install", "--quiet", "kubernetes-validate"]),
        "pip install kubernetes-validate",
    );
    assert!(tool.exists(), "kubernetes-validate is not installed in {}", dir.display());
    dir
}

fn validate(file: &Path) -> std::process::Output {
    Command::new(venv().join("bin/kubernetes-validate"))
        .args(["-k", KUBERNETES, "--strict"])
        .arg(file)
        .output()
        .expect("run kubernetes-validate")
}

fn manifests() -> (Scratch, PathBuf, String) {
    let s = Scratch::new("k8s");
    let out = fleetwall(&["plan", "examples/api-connect.yaml", "--format", "k8s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = s.0.join("apic.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    (s, file, String::from_utf8(out.stderr).unwrap())
}

#[test]
fn every_manifest_validates_for_kubernetes_1_30_and_a_broken_one_does_not() {
    let (s, file, stderr) = manifests();
    let out = validate(&file);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    for c in ["a7s", "gw-a", "gw-b", "mgmt", "portal"] {
        assert!(text.contains(&format!("networkpolicy/apic-prod-{c} against version 1.30")), "{c}: {text}");
    }
    // The validator can refuse: a misspelt field under strict validation.
    let broken = s.0.join("broken.yaml");
    std::fs::write(&broken, std::fs::read_to_string(&file).unwrap().replacen("policyTypes", "policyType", 1)).unwrap();
    assert!(!validate(&broken).status.success(), "a misspelt field must fail");
    // What the policies cannot say, and where the node firewall is stricter.
    assert!(stderr.contains("note[k8s]: NetworkPolicy cannot express ICMP types"), "{stderr}");
    assert!(stderr.contains("cannot express a reject (NetworkPolicy drops"), "{stderr}");
    assert!(stderr.contains("warning[k8s]: apic-prod/gw-a: the node firewall is stricter: it rejects the DNS/NTP egress (53/udp, 53/tcp, 123/udp)"), "{stderr}");
    assert!(
        !stderr.contains("apic-prod/a7s: the node firewall is stricter"),
        "analytics has its DNS and NTP flows: {stderr}"
    );
}

/// The manifests as JSON, through the venv's PyYAML (kubernetes-validate's own reader).
fn parsed(file: &Path) -> Vec<Value> {
    let out = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    selector["matchLabels"].as_object().unwrap().iter().all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
}

/// Whether a NetworkPolicy peer list (`from`/`to`) admits `addr` (with pod `labels`).
fn peer_admits(peers: Option<&Value>, addr: IpAddr, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(peers) = peers.and_then(Value::as_array) else { return true };
    peers.iter().any(|p| {
        if let Some(sel) = p.get("podSelector") {
            return labels.is_some_and(|l| selects(sel, l));
        }
        let block = &p["ipBlock"];
        let cidr: IpNet = block["cidr"].as_str().unwrap().parse().unwrap();
        let except: Vec<IpNet> = block["except"]
            .as_array()
            .map(|l| l.iter().map(|e| e.as_str().unwrap().parse().unwrap()).collect())
            .unwrap_or_default();
        cidr.contains(&addr) && !except.iter().any(|e| e.contains(&addr))
    })
}

fn port_admits(ports: Option<&Value>, t: Transport) -> bool {
    let Some(ports) = ports.and_then(Value::as_array) else { return true };
    let (proto, port) = match t {
        Transport::Tcp(p) => ("TCP", p),
        Transport::Udp(p) => ("UDP", p),
        _ => return false,
    };
    ports.iter().any(|p| p["protocol"] == proto && p["port"].as_u64() == Some(u64::from(port)))
}

/// Whether the policy of the pod with `labels` lets the packet pass in `dir`.
fn policy_allows(
    policies: &[Value],
    labels: &BTreeMap<String, String>,
    dir: Direction,
    peer: IpAddr,
    peer_labels: Option<&BTreeMap<String, String>>,
    t: Transport,
) -> bool {
    let (key, peer_key) = match dir {
        Direction::Ingress => ("ingress", "from"),
        Direction::Egress => ("egress", "to"),
    };
    let mine: Vec<&Value> = policies.iter().filter(|p| selects(&p["spec"]["podSelector"], labels)).collect();
    assert_eq!(mine.len(), 1, "one policy selects each pod");
    mine[0]["spec"][key]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| peer_admits(r.get(peer_key), peer, peer_labels) && port_admits(r.get("ports"), t))
}

#[test]
fn the_policies_allow_what_the_node_firewall_accepts_and_only_dns_ntp_beyond() {
    let (_s, file, _) = manifests();
    let policies = parsed(&file);
    assert_eq!(policies.len(), 5);
    let src = std::fs::read_to_string(root().join("examples/api-connect.yaml")).unwrap();
    let fleet = load(&src, &Catalog::builtin()).0.unwrap();
    let d = &fleet.deployments[0];
    let rulesets = fleetwall_compile::compile(&fleet);
    // Each server's pod labels and address.
    let pods: Vec<(String, IpAddr, BTreeMap<String, String>)> = d
        .servers()
        .map(|(c, s)| {
            let mut labels = d.kind.subsystem(&c.subsystem).unwrap().labels.clone();
            labels.insert("fleetwall.io/cluster".into(), c.name.clone());
            (s.name.clone(), s.addresses[0], labels)
        })
        .collect();
    let outsiders: Vec<IpAddr> = ["10.1.2.3", "203.0.113.7"].iter().map(|a| a.parse().unwrap()).collect();
    let mut ports: Vec<u16> = d.kind.flows.iter().flat_map(|f| d.ports(f)).collect();
    ports.extend([53, 123, 7000]);
    ports.sort();
    ports.dedup();
    let (mut beyond, mut agreed) = (Vec::new(), 0);
    for (name, addr, labels) in &pods {
        let rs = rulesets.iter().find(|r| &r.node == name).unwrap();
        let peers: Vec<(IpAddr, Option<&BTreeMap<String, String>>)> = pods
            .iter()
            .filter(|(n, _, _)| n != name)
            .map(|(_, a, l)| (*a, Some(l)))
            .chain(outsiders.iter().map(|a| (*a, None)))
            .collect();
        for (peer, peer_labels) in &peers {
            for t in ports.iter().flat_map(|p| [Transport::Tcp(*p), Transport::Udp(*p)]) {
                for (dir, s, dst) in [(Direction::Ingress, *peer, *addr), (Direction::Egress, *addr, *peer)] {
                    let node = evaluate_in(rs, dir, &Packet::new(s, dst, t)).verdict == Verdict::Accept;
                    let k8s = policy_allows(&policies, labels, dir, *peer, *peer_labels, t);
                    assert!(!node || k8s, "{name} {dir:?} {s} -> {dst} {t:?}: the node accepts, the policy does not");
                    if k8s && !node {
                        beyond.push((name.clone(), dir, t));
                    } else {
                        agreed += 1;
                    }
                }
            }
        }
    }
    assert!(agreed > 1000, "{agreed}");
    // Beyond the node firewall: only DNS and NTP egress, only of the gateways.
    for (name, dir, t) in &beyond {
        assert_eq!(*dir, Direction::Egress, "{name} {t:?}");
        assert!(name.starts_with("gw-"), "{name} {t:?}");
        assert!(matches!(t, Transport::Udp(53) | Transport::Tcp(53) | Transport::Udp(123)), "{name} {t:?}");
    }
    assert!(!beyond.is_empty(), "the gateways' DNS/NTP egress is the known difference");
}
