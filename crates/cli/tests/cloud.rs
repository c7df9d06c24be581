//! The cloud layer (`plan --format aws|gcp|azure`) checked against the providers' own
//! published API models, offline, from Python packages in a private virtualenv: botocore's
//! EC2 model and cfn-lint, the Compute discovery document of google-api-python-client,
//! the models of azure-mgmt-network. Plus the limits: what fits is spread over prefix
//! lists and groups, what does not is refused with the limit named and nothing written.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const PACKAGES: &[&str] = &["botocore", "cfn-lint", "google-api-python-client", "azure-mgmt-network"];

/// The venv's python, made once (`pip install` of the validators); a loud failure when
/// it cannot be made, never a skipped check.
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cloud-validators");
        let py = dir.join("bin/python");
        let ready = |p: &Path| {
            Command::new(p)
                .args(["-c", "import botocore, cfnlint, googleapiclient, azure.mgmt.network"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !ready(&py) {
            let venv = Command::new("python3").args(["-m", "venv"]).arg(&dir).output().expect("python3 runs");
            assert!(venv.status.success(), "python3 -m venv failed: {}", String::from_utf8_lossy(&venv.stderr));
            let pip = Command::new(dir.join("bin/pip")).args(["install", "--quiet"]).args(PACKAGES).output().unwrap();
            assert!(
                pip.status.success(),
                "the cloud validators are needed for this test; pip install {PACKAGES:?} failed: {}",
                String::from_utf8_lossy(&pip.stderr)
            );
            assert!(ready(&py), "the validators do not import after pip install");
        }
        py
    })
}

fn validate(cloud: &str, dir: &Path) -> String {
    let script = root().join("crates/cli/tests/cloud_validate.py");
    let out = Command::new(python()).arg(script).arg(cloud).arg(dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cloud} output in {} fails the provider's model:\n{stdout}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn read(dir: &Path, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

#[test]
fn every_example_validates_against_its_cloud() {
    let mut done = Vec::new();
    for (name, path) in examples() {
        let text = std::fs::read_to_string(&path).unwrap();
        for (cloud, prefix) in [("aws", "aws-"), ("gcp", "google-"), ("azure", "azure-")] {
            if !text.contains(&format!("cloud: {prefix}")) {
                continue;
            }
            let scratch = Scratch::new("cloud");
            let out = scratch.0.join("out");
            ok(&["plan", path.to_str().unwrap(), "--format", cloud, "--out", out.to_str().unwrap()]);
            let report = validate(cloud, &out);
            assert!(report.starts_with("ok "), "{name}: {report}");
            done.push(format!("{name}:{cloud}"));
        }
    }
    for cloud in ["aws", "gcp", "azure"] {
        assert!(done.iter().any(|d| d.ends_with(cloud)), "no example covers {cloud}: {done:?}");
    }
}

#[test]
fn aws_groups_hold_exactly_the_intent() {
    let scratch = Scratch::new("cloud-aws");
    let out = scratch.0.join("out");
    ok(&["plan", "examples/public-pg.yaml", "--format", "aws", "--out", out.to_str().unwrap()]);
    let reqs = read(&out, "aws-ec2-requests.json");
    let ingress: Vec<&Value> = reqs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "AuthorizeSecurityGroupIngress")
        .flat_map(|r| r["parameters"]["IpPermissions"].as_array().unwrap())
        .collect();
    let has = |proto: &str, port: u64, cidr: &str| {
        ingress.iter().any(|p| {
            p["IpProtocol"] == proto
                && p["FromPort"].as_u64() == Some(port)
                && (p["IpRanges"][0]["CidrIp"] == cidr || p["Ipv6Ranges"][0]["CidrIpv6"] == cidr)
        })
    };
    // The office (ip_filter) reaches pg; management reaches ssh; nobody else anything.
    assert!(has("tcp", 22, "198.51.100.10/31"), "ssh from the gateways: {ingress:#?}");
    assert!(has("tcp", 22, "2001:db8:ffff::10/128"), "ssh from the v6 gateway");
    assert!(ingress.iter().any(|p| p["IpRanges"][0]["CidrIp"] == "198.51.100.0/24"), "the office");
    assert!(ingress.iter().any(|p| p["IpRanges"][0]["CidrIp"] == "192.0.2.128/25"));
    assert!(!ingress.iter().any(|p| p["IpRanges"][0]["CidrIp"] == "0.0.0.0/0"), "nothing open to all");
    // The cluster is one self-reference, not a list of node addresses.
    assert!(ingress.iter().any(|p| p["UserIdGroupPairs"][0]["GroupId"] == "{ref:fw-acme-prod-pg-main}"));
    // Standard egress is AWS's default: no revoke, no egress rules.
    assert!(!reqs.as_array().unwrap().iter().any(|r| r["action"] == "RevokeSecurityGroupEgress"));
    // Every {ref:…} names an object an earlier request created.
    let mut made = Vec::new();
    for r in reqs.as_array().unwrap() {
        let text = r["parameters"].to_string();
        for part in text.split("{ref:").skip(1) {
            let name = part.split('}').next().unwrap();
            assert!(made.contains(&name.to_string()), "{name} used before it is created");
        }
        if let Some(n) = r["ref"].as_str() {
            made.push(n.to_string());
        }
    }
}

fn big_fleet(cloud: &str, networks: usize) -> String {
    let filter: Vec<String> = (0..networks).map(|i| format!("\"10.{}.{}.1/32\"", 64 + i / 250, i % 250 + 1)).collect();
    format!(
        "version: 1\nplatform: {{ management_gateways: [198.51.100.10] }}\nprojects:\n  acme:\n    services:\n      pg:\n        type: pg\n        cloud: {cloud}\n        nodes: {{ pg-1: {{ public: 203.0.113.5 }}, pg-2: {{ public: 203.0.113.6 }} }}\n        user_config: {{ ip_filter: [{}] }}\n",
        filter.join(", ")
    )
}

#[test]
fn a_big_ip_filter_becomes_prefix_lists_over_several_groups_within_the_quotas() {
    let scratch = Scratch::new("cloud-big");
    let fleet = scratch.0.join("big.yaml");
    std::fs::write(&fleet, big_fleet("aws-eu-west-1", 60)).unwrap();
    let out = scratch.0.join("out");
    ok(&["plan", fleet.to_str().unwrap(), "--format", "aws", "--out", out.to_str().unwrap()]);
    validate("aws", &out);
    let reqs = read(&out, "aws-ec2-requests.json");
    let reqs = reqs.as_array().unwrap();
    let lists: Vec<&Value> = reqs.iter().filter(|r| r["action"] == "CreateManagedPrefixList").collect();
    let entries: usize = lists.iter().map(|l| l["parameters"]["Entries"].as_array().unwrap().len()).sum();
    assert_eq!(entries, 60, "every network of the ip_filter is in a prefix list, once");
    let size = |name: &str| {
        lists
            .iter()
            .find(|l| format!("{{ref:{}}}", l["ref"].as_str().unwrap()) == name)
            .map(|l| l["parameters"]["MaxEntries"].as_u64().unwrap() as usize)
    };
    let groups: Vec<&Value> = reqs.iter().filter(|r| r["action"] == "CreateSecurityGroup").collect();
    assert!(groups.len() >= 2 && groups.len() <= 5, "{} groups", groups.len());
    for r in reqs.iter().filter(|r| r["action"] == "AuthorizeSecurityGroupIngress") {
        // AWS's count: a network one rule, a prefix list its maximum entries.
        let weight: usize = r["parameters"]["IpPermissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| match p["PrefixListIds"][0]["PrefixListId"].as_str() {
                Some(id) => size(id).expect("a created prefix list"),
                None => 1,
            })
            .sum();
        assert!(weight <= 60, "{} holds {weight} rules", r["parameters"]["GroupId"]);
    }
}

#[test]
fn beyond_the_quotas_nothing_is_written_and_the_limit_is_named() {
    let scratch = Scratch::new("cloud-over");
    for (cloud, format, networks, says) in [
        ("aws-eu-west-1", "aws", 200, "security groups per network interface"),
        ("azure-westeurope", "azure", 2100, "addresses and prefixes per network security group"),
    ] {
        let fleet = scratch.0.join(format!("{format}.yaml"));
        std::fs::write(&fleet, big_fleet(cloud, networks)).unwrap();
        let out = scratch.0.join(format!("out-{format}"));
        let o = fleetwall(&["plan", fleet.to_str().unwrap(), "--format", format, "--out", out.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("error[limit]") && err.contains("acme/pg") && err.contains(says), "{err}");
        assert!(err.contains("nothing rendered"), "{err}");
        assert!(!out.exists(), "{format}: nothing written");
    }
}

#[test]
fn gcp_splits_a_long_list_and_keeps_families_apart() {
    let scratch = Scratch::new("cloud-gcp");
    let fleet = scratch.0.join("gcp.yaml");
    let mut text = big_fleet("google-europe-west1", 5200);
    text = text.replace("ip_filter: [", "ip_filter: [\"2001:db8:1::/48\", ");
    std::fs::write(&fleet, text).unwrap();
    let out = scratch.0.join("out");
    ok(&["plan", fleet.to_str().unwrap(), "--format", "gcp", "--out", out.to_str().unwrap()]);
    validate("gcp", &out);
    let fws = read(&out, "gcp-firewalls.json");
    let pg: Vec<&Value> = fws["firewalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"].as_str().unwrap().contains("client-pg-dynamic-v4"))
        .collect();
    assert_eq!(pg.len(), 2, "5,200 ranges are two rules of at most 5,000");
    let ranges: usize = pg.iter().map(|f| f["sourceRanges"].as_array().unwrap().len()).sum();
    assert_eq!(ranges, 5200);
    assert!(fws["firewalls"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"].as_str().unwrap().contains("client-pg-dynamic-v6")));
}

#[test]
fn a_fleet_without_that_cloud_or_with_node_is_refused_clearly() {
    let o = fleetwall(&["plan", "examples/azure.yaml", "--format", "aws"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no service of this fleet runs on aws") && err.contains("azure-westeurope"), "{err}");
    let o = fleetwall(&["plan", "examples/azure.yaml", "--format", "azure", "--node", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--node does not apply"));
}

#[test]
fn byoc_rules_list_what_the_customer_applies_with_reasons() {
    let json: Value =
        serde_json::from_str(&ok(&["byoc", "rules", "examples/byoc.yaml", "acme-byoc", "--format", "json"])).unwrap();
    let rules = json["rules"].as_array().unwrap();
    let has = |group: &str, dir: &str, ports: &str, peer: &str| {
        rules.iter().any(|r| {
            r["group"].as_str().unwrap().ends_with(group)
                && r["direction"] == dir
                && r["ports"] == ports
                && r["peer"] == peer
                && !r["reason"].as_str().unwrap().is_empty()
        })
    };
    // Gateways reach the bastion's three ports; the workloads take management from the bastion subnet only.
    for port in ["22", "30287", "443"] {
        assert!(has("bastion", "inbound", port, "198.51.100.10/31"), "{port}: {rules:#?}");
    }
    assert!(has("pg-byoc", "inbound", "22", "10.50.0.0/24"));
    assert!(!rules
        .iter()
        .any(|r| r["group"].as_str().unwrap().ends_with("pg-byoc") && r["peer"] == "198.51.100.10/31"));
    assert!(has("bastion", "outbound", "22,30287", "10.50.16.0/20"));
    let table = ok(&["byoc", "rules", "examples/byoc.yaml", "acme-byoc"]);
    assert!(table.starts_with("GROUP") && table.contains("management SSH from the BYOC bastion subnet"), "{table}");
    let o = fleetwall(&["byoc", "rules", "examples/byoc.yaml", "acme"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("BYOC projects: acme-byoc"));
    let o = fleetwall(&["byoc", "rules", "examples/ece.yaml", "gov"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not BYOC"));
}
