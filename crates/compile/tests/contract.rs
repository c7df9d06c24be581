//! The firewall contract, checked on compiled rulesets (IR level; the kernel tests in
//! the CLI harness check the rendered output).

use fleetwall_compile::{compile, compile_node, port_table, Route};
use fleetwall_ir::{Addrs, Family, L4Ref, NodeRuleset, Verdict};
use fleetwall_model::{load, Catalog, Fleet};

fn fleet(src: &str) -> Fleet {
    let (f, d) = load(src, &Catalog::builtin());
    f.unwrap_or_else(|| panic!("{:#?}", d.items))
}

const VPC: &str = r#"
version: 1
platform: { management_gateways: [198.51.100.10, "2001:db8:ffff::10"] }
projects:
  p:
    base_port: 12000
    vpcs:
      v:
        cloud: aws-eu-west-1
        network_cidr: 10.10.0.0/20
        peerings: [{ peer_vpc: vpc-1, peer_cidrs: [172.31.0.0/16] }]
    services:
      db:
        type: pg
        cloud: aws-eu-west-1
        vpc: v
        nodes:
          db-1: { private: 10.10.0.5, public: 203.0.113.5 }
          db-2: { private: 10.10.0.6, public: 203.0.113.6 }
        user_config:
          ip_filter: [0.0.0.0/0, 172.31.5.0/24, 198.51.100.0/24]
          public_access: { pg: true }
"#;

const IP_FILTER: &str = "[0.0.0.0/0, 172.31.5.0/24, 198.51.100.0/24]";

fn rule<'a>(rs: &'a NodeRuleset, id: &str) -> &'a fleetwall_ir::Rule {
    rs.input.iter().find(|r| r.id == id).unwrap_or_else(|| panic!("no rule {id} in {:#?}", rs.input))
}

fn src_set<'a>(rs: &'a NodeRuleset, id: &str) -> &'a fleetwall_ir::AddrSet {
    match rule(rs, id).matches.saddr() {
        Some(Addrs::Set(s)) => rs.set(s).unwrap(),
        other => panic!("{id}: {other:?}"),
    }
}

fn host(s: &str) -> Addrs {
    Addrs::List(vec![s.parse().unwrap()])
}

#[test]
fn vpc_dynamic_route_is_ip_filter_within_vpc_and_peerings() {
    let rs = compile_node(&fleet(VPC), "db-1").unwrap();
    let dynamic = src_set(&rs, "client-pg-dynamic-v4");
    let nets: Vec<String> = dynamic.elements.iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["10.10.0.0/20", "172.31.0.0/16"]);
    assert!(dynamic
        .members
        .iter()
        .any(|m| m.reason == "ip_filter entry 0.0.0.0/0 of p/db ∩ VPC v network 10.10.0.0/20"));
    // The public route takes ip_filter as it is, on the public address only.
    assert_eq!(rule(&rs, "client-pg-public-v4").matches.daddr(), Some(&host("203.0.113.5/32")));
    assert_eq!(src_set(&rs, "client-pg-public-v4").elements.len(), 1, "0.0.0.0/0 covers the rest");
    // The dynamic route listens on the private address only.
    assert_eq!(rule(&rs, "client-pg-dynamic-v4").matches.daddr(), Some(&host("10.10.0.5/32")));
}

#[test]
fn peers_are_the_other_nodes_specific_addresses() {
    let rs = compile_node(&fleet(VPC), "db-1").unwrap();
    let peers = src_set(&rs, "cluster-replication-tcp-v4");
    assert_eq!(peers.elements, vec!["10.10.0.6/32".parse().unwrap()]);
    assert_eq!(peers.members[0].reason, "peer node db-2 of p/db");
}

#[test]
fn management_comes_first_and_ignores_user_input() {
    for ip_filter in ["[]", "[192.0.2.0/24]", "[0.0.0.0/0]"] {
        let rs = compile_node(&fleet(&VPC.replace(IP_FILTER, ip_filter)), "db-2").unwrap();
        let first_client = rs.input.iter().position(|r| r.id.starts_with("client-"));
        let mgmt = rs.input.iter().position(|r| r.id == "mgmt-ssh-v4").expect("management rule always present");
        assert!(first_client.is_none_or(|c| mgmt < c));
        assert_eq!(src_set(&rs, "mgmt-ssh-v4").reason, "management gateways");
        assert_eq!(rule(&rs, "mgmt-ssh-v6").matches.l4(), Some(L4Ref::Tcp(&[22])));
        assert_eq!(rule(&rs, "mgmt-platform-v4").matches.l4(), Some(L4Ref::Tcp(&[30287])));
        assert!(rs.input[..mgmt].iter().all(|r| !matches!(r.verdict, Verdict::Reject(_))), "nothing rejects before it");
    }
}

#[test]
fn empty_ip_filter_opens_no_client_route() {
    let rs = compile_node(&fleet(&VPC.replace(IP_FILTER, "[]")), "db-1").unwrap();
    assert!(rs.input.iter().all(|r| !r.id.starts_with("client-")), "{:#?}", rs.input);
    assert!(rs.input.iter().any(|r| r.id.starts_with("cluster-")));
}

#[test]
fn everything_else_is_rejected_last() {
    for rs in compile(&fleet(VPC)) {
        let ids: Vec<&str> = rs.input.iter().rev().take(3).map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["reject-other", "reject-udp", "reject-tcp"]);
        assert_eq!(rs.input.iter().filter(|r| r.verdict == Verdict::Drop).count(), 1, "invalid is the only drop");
    }
}

#[test]
fn azure_platform_address_only_on_azure() {
    let aws = compile_node(&fleet(VPC), "db-1").unwrap();
    assert!(aws.input.iter().all(|r| !r.id.starts_with("azure-")));
    let rs = compile_node(&fleet(&VPC.replace("aws-eu-west-1", "azure-westeurope")), "db-1").unwrap();
    let health = rule(&rs, "azure-health-probes");
    assert_eq!(health.matches.saddr(), Some(&host("168.63.129.16/32")));
    assert_eq!(health.matches.l4(), Some(L4Ref::Tcp(&[12691, 12692, 12693])));
}

#[test]
fn ports_do_not_move_when_the_fleet_grows() {
    let before = port_table(&fleet(VPC));
    let grown = VPC
        .replace(
            "          db-2: { private: 10.10.0.6, public: 203.0.113.6 }\n",
            "          db-2: { private: 10.10.0.6, public: 203.0.113.6 }\n          db-3: { private: 10.10.0.7, public: 203.0.113.7 }\n",
        )
        .replace(
            "      db:\n",
            "      aaa:\n        type: kafka\n        cloud: aws-eu-west-1\n        vpc: v\n        nodes: { k-1: { private: 10.10.0.9 } }\n      db:\n",
        );
    let f = fleet(&grown);
    let after = port_table(&f);
    for row in &before {
        assert!(after.contains(row), "{row:?} moved or vanished");
    }
    assert!(after.len() > before.len());
    // The listeners of one node never share an address, port and protocol.
    let mut seen = std::collections::HashSet::new();
    for r in &after {
        assert!(seen.insert((r.address, r.port, r.protocol, r.route == Route::Privatelink)), "{r:?}");
    }
}

#[test]
fn ipv6_routes_use_ipv6_sources_and_addresses() {
    let src = "version: 1\nplatform: { management_gateways: [198.51.100.10] }\nprojects:\n  p:\n    services:\n      db:\n        type: pg\n        cloud: do-ams3\n        nodes: { db-1: { public: [203.0.113.5, \"2001:db8::5\"] } }\n        user_config: { ip_filter: [\"2001:db8:1::/48\"] }\n";
    let rs = compile_node(&fleet(src), "db-1").unwrap();
    let r = rule(&rs, "client-pg-dynamic-v6");
    assert_eq!(r.matches.family(), Some(Family::V6));
    assert_eq!(r.matches.daddr(), Some(&host("2001:db8::5/128")));
    assert!(rs.input.iter().all(|r| r.id != "client-pg-dynamic-v4"), "no v4 source, no v4 route");
}
