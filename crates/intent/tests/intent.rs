//! The Intent of the examples: groups with their reasons, flows in contract order, and
//! the invariants lowering relies on.

use fleetwall_intent::{build, AddressClass, Direction, Intent, Local, Peer, Stage, Traffic};
use fleetwall_model::{load, Catalog};

fn example(name: &str) -> Intent {
    let path = format!("{}/../../examples/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap();
    let fleet = load(&src, &Catalog::builtin()).0.unwrap_or_else(|| panic!("{path} is valid"));
    build(&fleet)
}

const EXAMPLES: [&str; 4] = ["public-pg", "kafka-vpc", "azure", "no-base-port"];

/// What lowering relies on: a flow that names addresses or ICMP types has a family,
/// ids are slugs and unique per service, and the flows are in stage order per direction.
#[test]
fn every_flow_of_every_example_is_well_formed_and_in_contract_order() {
    for ex in EXAMPLES {
        let intent = example(ex);
        assert!(!intent.services.is_empty());
        for s in &intent.services {
            let mut ids = std::collections::BTreeSet::new();
            for f in &s.flows {
                assert!(ids.insert(&f.id), "{ex}: {} twice in {}", f.id, s.qualified);
                assert!(f.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'));
                let needs_family =
                    f.peer != Peer::Any || f.local != Local::Any || matches!(f.traffic, Traffic::Icmp(_));
                assert!(!needs_family || f.family.is_some(), "{ex}: flow {} needs a family", f.id);
                assert!(!f.reason.is_empty());
            }
            let keys: Vec<_> = s.flows.iter().map(|f| (f.direction, f.stage)).collect();
            assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{ex}: {} flows out of order", s.qualified);
            // Point 9: every management flow comes before every flow a user's input shapes.
            let last_mgmt = s.flows.iter().rposition(|f| f.stage == Stage::Management).unwrap();
            let first_client = s.flows.iter().position(|f| f.stage == Stage::Clients).unwrap();
            assert!(last_mgmt < first_client, "{ex}");
            // Standard deployments accept egress (point 8), as the last egress flow.
            let egress: Vec<_> = s.flows.iter().filter(|f| f.direction == Direction::Egress).collect();
            assert_eq!(egress.len(), 1);
            assert_eq!(egress[0].id, "egress-accept");
        }
    }
}

#[test]
fn a_vpc_service_has_its_scoped_ip_filter_and_private_link_groups() {
    let intent = example("kafka-vpc");
    let group = |name: &str| intent.groups.iter().find(|g| g.name == name).unwrap_or_else(|| panic!("{name}"));
    let scoped = group("acme-stream/kafka-events/ip_filter-in-vpc");
    assert_eq!(scoped.set, "vpcf");
    let nets: Vec<String> = scoped.members.iter().map(|m| m.net.to_string()).collect();
    // 10.20.0.0/16 ∩ VPC 10.20.0.0/20, and 172.31.8.0/21 ∩ the peering; the office is outside both.
    assert_eq!(nets, ["10.20.0.0/20", "172.31.8.0/21"]);
    assert_eq!(
        scoped.members[0].reason,
        "ip_filter entry 10.20.0.0/16 'project VPC' of acme-stream/kafka-events ∩ VPC vpc-eu network 10.20.0.0/20"
    );
    let nodes = group("acme-stream/kafka-events/nodes");
    assert_eq!(nodes.members.len(), 6, "three nodes, two private addresses each");
    assert!(nodes.members.iter().all(|m| m.node.is_some()));
    assert_eq!(group("acme-stream/kafka-events/privatelink-cidrs").members[0].net.to_string(), "10.20.15.0/24");
    assert_eq!(group("management-gateways").members.len(), 4);
    // The public route of kafka_rest is a flow from the whole ip_filter to public addresses.
    let s = &intent.services[0];
    let public = s.flows.iter().find(|f| f.id == "client-kafka_rest-public-v4").unwrap();
    assert_eq!(public.local, Local::Addresses(AddressClass::Public));
    let Peer::Group { group: g, except_self: false } = public.peer else { panic!("{:?}", public.peer) };
    assert_eq!(intent.group(g).name, "acme-stream/kafka-events/ip_filter");
}

#[test]
fn azure_services_get_the_platform_address_flows_and_others_do_not() {
    let azure = example("azure");
    for s in &azure.services {
        let ids: Vec<&str> = s.flows.iter().filter(|f| f.stage == Stage::Cloud).map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["azure-dhcp-dns-udp", "azure-dns-tcp", "azure-health-probes"], "{}", s.qualified);
    }
    let platform = azure.groups.iter().find(|g| g.name == "azure-platform").unwrap();
    assert!(platform.inline, "written as a literal address, not a set");
    assert!(example("public-pg").services.iter().all(|s| s.flows.iter().all(|f| f.stage != Stage::Cloud)));
}
