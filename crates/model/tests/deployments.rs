//! BYOC (S7) and ECE (S8) projects: what validates, and every problem located with a hint.

use fleetwall_model::{load, Catalog, DiagCode, Diagnostic, Fleet, Role, Severity, BASTION_SERVICE};

const HEAD: &str = "version: 1\nplatform:\n  management_gateways: [198.51.100.10]\nprojects:\n";

fn loaded(body: &str) -> (Option<Fleet>, Vec<Diagnostic>) {
    let (fleet, diags) = load(&format!("{HEAD}{body}"), &Catalog::builtin());
    (fleet, diags.items)
}

fn errors(body: &str) -> Vec<Diagnostic> {
    loaded(body).1.into_iter().filter(|d| d.severity == Severity::Error).collect()
}

/// The one error of `body`: its code, line, message and hint.
fn error(body: &str, code: DiagCode) -> Diagnostic {
    let e = errors(body);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    assert_eq!(e[0].code, code, "{e:#?}");
    assert!(e[0].span.is_some() && e[0].hint.is_some(), "located, with a hint: {:#?}", e[0]);
    e[0].clone()
}

fn byoc(network: &str, bastion: &str, workload: &str, bastion_addr: &str, node_addr: &str, customer: &str) -> String {
    format!(
        "  b:
    byoc:
      cloud: aws-eu-west-1
      network_cidr: {network}
      bastion_subnet: {bastion}
      workload_subnet: {workload}
      bastions: {{ b-1: {{ private: {bastion_addr}, public: 203.0.113.90 }} }}
      customer_networks: [{customer}]
    services:
      pg:
        type: pg
        cloud: aws-eu-west-1
        byoc: true
        nodes: {{ pg-1: {{ private: {node_addr} }} }}
        user_config: {{ ip_filter: [10.60.0.0/16] }}
"
    )
}

const GOOD: (&str, &str, &str, &str, &str, &str) =
    ("10.50.0.0/16", "10.50.0.0/24", "10.50.16.0/20", "10.50.0.10", "10.50.16.11", "10.60.0.0/16");

fn good_byoc() -> String {
    byoc(GOOD.0, GOOD.1, GOOD.2, GOOD.3, GOOD.4, GOOD.5)
}

#[test]
fn a_byoc_project_has_its_bastions_as_a_service_and_workloads() {
    let (fleet, diags) = loaded(&good_byoc());
    assert!(diags.is_empty(), "{diags:#?}");
    let fleet = fleet.unwrap();
    let p = &fleet.projects[0];
    let b = p.byoc.as_ref().unwrap();
    assert_eq!(b.bastion_subnet.to_string(), "10.50.0.0/24");
    assert_eq!(b.egress.len(), 2, "egress defaults to everything");
    let bastion = p.services.iter().find(|s| s.name == BASTION_SERVICE).unwrap();
    assert_eq!(bastion.role, Role::Bastion);
    assert_eq!(bastion.nodes[0].name, "b-1");
    assert_eq!(p.services.iter().find(|s| s.name == "pg").unwrap().role, Role::Workload);
}

#[test]
fn byoc_nodes_sit_in_their_subnets() {
    let d = error(&byoc(GOOD.0, GOOD.1, GOOD.2, GOOD.3, "10.50.1.11", GOOD.5), DiagCode::Byoc);
    assert!(d.message.contains("outside the project's workload_subnet 10.50.16.0/20"), "{}", d.message);
    let d = error(&byoc(GOOD.0, GOOD.1, GOOD.2, "10.50.3.10", GOOD.4, GOOD.5), DiagCode::Byoc);
    assert!(d.message.contains("bastion_subnet 10.50.0.0/24"), "{}", d.message);
}

#[test]
fn byoc_subnets_are_inside_the_network_and_apart() {
    let d = error(&byoc(GOOD.0, "10.51.0.0/24", GOOD.2, "10.51.0.10", GOOD.4, GOOD.5), DiagCode::Byoc);
    assert!(d.message.contains("not inside the BYOC network 10.50.0.0/16"), "{}", d.message);
    let d = error(&byoc(GOOD.0, "10.50.16.0/24", GOOD.2, "10.50.16.10", GOOD.4, GOOD.5), DiagCode::Byoc);
    assert!(d.message.contains("overlaps bastion_subnet"), "{}", d.message);
}

#[test]
fn customer_networks_are_outside_the_byoc_network() {
    let d = error(&byoc(GOOD.0, GOOD.1, GOOD.2, GOOD.3, GOOD.4, "10.50.128.0/17"), DiagCode::Byoc);
    assert!(d.message.contains("customer network 10.50.128.0/17 overlaps"), "{}", d.message);
    assert_eq!(d.span.unwrap().start.line, 12);
}

#[test]
fn a_byoc_flag_needs_a_byoc_project_and_a_byoc_project_needs_the_flag() {
    let body = "  p:\n    services:\n      pg:\n        type: pg\n        cloud: aws-eu-west-1\n        byoc: true\n        nodes: { pg-1: { private: 10.0.0.1 } }\n";
    let d = error(body, DiagCode::Byoc);
    assert!(d.message.contains("has no `byoc` network"), "{}", d.message);
    let d = error(&good_byoc().replace("        byoc: true\n", ""), DiagCode::Byoc);
    assert!(d.message.contains("not `byoc: true`"), "{}", d.message);
    assert_eq!(
        d.hint.as_deref(),
        Some("every service of a BYOC project runs in the customer's network: add `byoc: true`")
    );
}

#[test]
fn a_byoc_workload_has_no_public_access_and_no_vpc() {
    let body = good_byoc().replace("[10.60.0.0/16] }", "[10.60.0.0/16], public_access: { pg: true } }");
    let e = errors(&body);
    assert!(e.iter().any(|d| d.code == DiagCode::Byoc && d.message.contains("customer's networks only")), "{e:#?}");
}

#[test]
fn a_service_cannot_take_the_bastions_name() {
    let body = good_byoc().replace("      pg:\n", "      bastion:\n");
    let e = errors(&body);
    assert!(e.iter().any(|d| d.code == DiagCode::Byoc && d.message.contains("its service `bastion`")), "{e:#?}");
}

fn ece(extra_service: &str, allow: &str, proxy: &str) -> String {
    format!(
        "  gov:
    compliance: ece
    socks5_proxy: {{ address: {proxy}, port: 1080, allow: [{allow}] }}
    vpcs:
      v: {{ cloud: aws-eu-west-1, network_cidr: 10.70.0.0/20, peerings: [{{ peer_vpc: vpc-1, peer_cidrs: [172.16.0.0/16] }}] }}
    services:
      pg:
        type: pg
        cloud: aws-eu-west-1
        vpc: v
        nodes: {{ pg-1: {{ private: 10.70.0.11, public: 203.0.113.71 }} }}
{extra_service}"
    )
}

#[test]
fn an_ece_project_validates_with_its_proxy() {
    let (fleet, diags) =
        loaded(&ece("", "198.51.100.0/24, \"pkg.example.org:443\", \"[2001:db8::/32]:443\"", "10.70.0.5"));
    assert!(diags.is_empty(), "{diags:#?}");
    let fleet = fleet.unwrap();
    let proxy = fleet.projects[0].ece.as_ref().unwrap();
    let allow: Vec<String> = proxy.allow.iter().map(|a| a.to_string()).collect();
    assert_eq!(allow, ["198.51.100.0/24", "pkg.example.org:443", "2001:db8::/32:443"]);
}

#[test]
fn ece_refuses_public_access_and_ip_filter_beyond_the_vpc() {
    let ip = "        user_config: { ip_filter: [10.70.0.0/20, 172.16.4.0/24, 198.51.100.0/24] }\n";
    let d = error(&ece(ip, "198.51.100.0/24", "10.70.0.5"), DiagCode::Ece);
    assert!(d.message.contains("198.51.100.0/24 is outside the VPC and its peerings"), "{}", d.message);
    assert_eq!(d.severity, Severity::Error);
    let pa = "        user_config: { public_access: { pg: true } }\n";
    let e = errors(&ece(pa, "198.51.100.0/24", "10.70.0.5"));
    assert!(e.iter().any(|d| d.code == DiagCode::Ece && d.message.contains("public access is not allowed")), "{e:#?}");
}

#[test]
fn an_ece_service_sits_in_a_vpc() {
    let body = ece("", "198.51.100.0/24", "10.70.0.5").replace("        vpc: v\n", "");
    let e = errors(&body);
    assert!(e.iter().any(|d| d.code == DiagCode::Ece && d.message.contains("sits in a VPC")), "{e:#?}");
}

#[test]
fn the_proxy_is_checked() {
    let d = error(&ece("", "198.51.100.0/24", "10.99.0.5"), DiagCode::Ece);
    assert!(d.message.contains("outside the project's VPCs"), "{}", d.message);
    let d = error(&ece("", "\"pkg.example.org\"", "10.70.0.5"), DiagCode::Ece);
    assert!(d.message.contains("no `:port`"), "{}", d.message);
    let d = error(&ece("", "\"pkg.example.org:0\"", "10.70.0.5"), DiagCode::Ece);
    assert!(d.message.contains("not a port"), "{}", d.message);
    let body = ece("", "198.51.100.0/24", "10.70.0.5").replace("    compliance: ece\n", "");
    let d = error(&body, DiagCode::Ece);
    assert!(d.message.contains("only applies to an ECE project"), "{}", d.message);
    let body = ece("", "198.51.100.0/24", "10.70.0.5").replace("compliance: ece", "compliance: strict");
    let e = errors(&body);
    assert!(e.iter().any(|d| d.message.contains("unknown compliance level")), "{e:#?}");
}

#[test]
fn egress_tests_go_from_a_node_to_an_address_by_port() {
    let base = ece("", "198.51.100.0/24", "10.70.0.5");
    let with = |t: &str| format!("{base}tests:\n  - {t}\n");
    let (fleet, diags) = loaded(&with("{ direction: egress, from: pg-1, to: 198.51.100.7, accept: [443/tcp] }"));
    assert!(diags.is_empty(), "{diags:#?}");
    let t = &fleet.unwrap().tests[0];
    assert!(t.egress && t.to == "pg-1" && t.from.to_string() == "198.51.100.7");
    let d = error(&with("{ direction: egress, from: pg-1, to: 198.51.100.7, accept: [pg] }"), DiagCode::Test);
    assert!(d.message.contains("takes `port/protocol`"), "{}", d.message);
    let d = error(&with("{ direction: egress, from: pg-2, to: 198.51.100.7, accept: [443/tcp] }"), DiagCode::Test);
    assert_eq!(d.hint.as_deref(), Some("did you mean `pg-1`?"));
    let d = error(&with("{ direction: outbound, from: pg-1, to: 198.51.100.7, accept: [443/tcp] }"), DiagCode::Test);
    assert!(d.message.contains("unknown test direction"), "{}", d.message);
}
