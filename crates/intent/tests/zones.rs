//! The Intent of a deployment (zones, subsystems, clusters): one service intent per
//! cluster, well-formed flows in stage order ending in rejects both ways, reasons that
//! name their flow, and sets whose names are unique on each server.

use fleetwall_intent::{build, Direction, Local, Peer, Stage, Traffic};
use fleetwall_ir::Verdict;
use fleetwall_model::{load, Catalog};
use std::collections::BTreeSet;

fn intent() -> fleetwall_intent::Intent {
    let path = format!("{}/../../examples/api-connect.yaml", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap();
    build(&load(&src, &Catalog::builtin()).0.expect("the example is valid"))
}

#[test]
fn every_cluster_is_a_service_intent_with_well_formed_flows() {
    let intent = intent();
    let names: Vec<&str> = intent.services.iter().map(|s| s.qualified.as_str()).collect();
    assert_eq!(names, ["apic-prod/a7s", "apic-prod/gw-a", "apic-prod/gw-b", "apic-prod/mgmt", "apic-prod/portal"]);
    for s in &intent.services {
        let mut ids = BTreeSet::new();
        for f in &s.flows {
            assert!(ids.insert(&f.id), "{} twice in {}", f.id, s.qualified);
            assert!(f.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{}", f.id);
            let needs_family = f.peer != Peer::Any || f.local != Local::Any || matches!(f.traffic, Traffic::Icmp(_));
            assert!(!needs_family || f.family.is_some(), "flow {} needs a family", f.id);
            assert_ne!(f.stage, Stage::Management, "deployment servers have no platform management");
            if f.stage == Stage::Clients {
                assert_eq!(f.verdict, Verdict::Accept);
                assert!(
                    f.reason.starts_with("flow ")
                        || f.reason.starts_with("Table ")
                        || f.reason.starts_with("cluster rule "),
                    "{}: {}",
                    f.id,
                    f.reason
                );
            }
            // A tcp/udp flow always names its ports: an empty list would open every port.
            if f.stage == Stage::Clients {
                assert!(!matches!(&f.traffic, Traffic::Tcp(p) | Traffic::Udp(p) if p.is_empty()), "{}", f.id);
            }
        }
        let keys: Vec<_> = s.flows.iter().map(|f| (f.direction, f.stage)).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{} flows out of order", s.qualified);
        for dir in [Direction::Ingress, Direction::Egress] {
            let last: Vec<_> = s.flows.iter().filter(|f| f.direction == dir).rev().take(3).collect();
            assert!(
                last.iter().all(|f| matches!(f.verdict, Verdict::Reject(_))),
                "{}: {dir:?} ends in rejects",
                s.qualified
            );
        }
    }
}

#[test]
fn flow_numbers_appear_on_the_servers_they_concern() {
    let intent = intent();
    let flows = |q: &str| -> BTreeSet<String> {
        let s = intent.services.iter().find(|s| s.qualified == q).unwrap();
        s.flows.iter().filter_map(|f| f.reason.strip_prefix("flow ")?.split(':').next().map(String::from)).collect()
    };
    let set = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(flows("apic-prod/gw-a"), set(&["1", "2", "6", "7"]));
    assert_eq!(flows("apic-prod/mgmt"), set(&["11", "15", "3", "4", "7", "8", "9"]));
    assert_eq!(flows("apic-prod/portal"), set(&["10", "16", "5", "8", "9"]));
    // Flow 12 has no ports and no offload zone in the example: it opens nothing.
    assert_eq!(flows("apic-prod/a7s"), set(&["13", "14", "15", "16", "6"]));
}

#[test]
fn a_cluster_sees_the_public_zone_without_the_other_clusters_of_its_subsystem() {
    let intent = intent();
    let gw_a = intent.services.iter().find(|s| s.qualified == "apic-prod/gw-a").unwrap();
    let f1 = gw_a.flows.iter().find(|f| f.id == "f1-api-request-in-tcp-v4").unwrap();
    let Peer::Group { group, .. } = f1.peer else { panic!("flow 1 has a group") };
    let g = intent.group(group);
    assert_eq!(g.reason, "Public zone of apic-prod, but the other gateway clusters");
    let gw_b_1: std::net::IpAddr = "10.2.0.21".parse().unwrap();
    assert!(g.members.iter().all(|m| !m.net.contains(&gw_b_1)));
    assert!(g.members.iter().any(|m| m.net.contains(&"10.2.0.12".parse::<std::net::IpAddr>().unwrap())));
}
