//! Private-link connections in the fleet file: their ids, states, hosts and own ports, the
//! checks on those ports, and the allocation of a new connection's ports from the pool.

use fleetwall_model::{load, Catalog, ConnectionState, DiagCode, Diagnostic, Fleet};

/// A 3-node Kafka in a VPC with an AWS private link whose `connections:` are `conns`.
fn fleet(conns: &str) -> String {
    format!(
        r#"version: 1
platform:
  management_gateways: [198.51.100.10]
projects:
  acme:
    base_port: 17000
    vpcs:
      v: {{ cloud: aws-eu-west-1, network_cidr: 10.20.0.0/20, privatelink_cidrs: [10.20.15.0/24] }}
    services:
      k:
        type: kafka
        cloud: aws-eu-west-1
        vpc: v
        nodes:
          k-1: {{ private: 10.20.0.11 }}
          k-2: {{ private: 10.20.0.12 }}
          k-3: {{ private: 10.20.0.13 }}
        user_config: {{ privatelink_access: {{ kafka: true }} }}
        privatelink:
          aws:
            principals: ["arn:aws:iam::012345678901:user/mwf"]
            connections:
{conns}"#
    )
}

const TWO: &str = "              plc-a: { host: privatelink-1-k-acme, state: active, address: 10.20.15.7, ports: { kafka: 10000 } }\n              plc-b: { host: privatelink-2-k-acme, state: pending-user-approval, ports: { kafka: 10001 } }\n";

fn errors(conns: &str) -> Vec<Diagnostic> {
    let (_, d) = load(&fleet(conns), &Catalog::builtin());
    d.items.into_iter().filter(|d| d.severity == fleetwall_model::Severity::Error).collect()
}

fn one(conns: &str, code: DiagCode) -> Diagnostic {
    let d = errors(conns);
    assert_eq!(d.len(), 1, "expected one error, got {d:#?}");
    assert_eq!(d[0].code, code, "{d:#?}");
    d[0].clone()
}

fn loaded(conns: &str) -> Fleet {
    let (f, d) = load(&fleet(conns), &Catalog::builtin());
    f.unwrap_or_else(|| panic!("{d:#?}"))
}

#[test]
fn connections_load_with_their_state_host_and_own_ports() {
    let f = loaded(TWO);
    let svc = &f.projects[0].services[0];
    let link = svc.privatelink.as_ref().unwrap();
    let got: Vec<(&str, &str, ConnectionState, Option<&u16>)> =
        link.connections.iter().map(|c| (c.id.as_str(), c.host.as_str(), c.state, c.ports.get("kafka"))).collect();
    assert_eq!(
        got,
        [
            ("plc-a", "privatelink-1-k-acme", ConnectionState::Active, Some(&10000)),
            ("plc-b", "privatelink-2-k-acme", ConnectionState::PendingUserApproval, Some(&10001)),
        ]
    );
    assert!(ConnectionState::Active.opens() && !ConnectionState::PendingUserApproval.opens());
}

#[test]
fn a_new_connection_gets_the_lowest_free_ports_of_the_pool() {
    let f = loaded(TWO);
    let svc = &f.projects[0].services[0];
    let ports = fleetwall_model::ports::connection_ports(svc, &f.platform).unwrap();
    assert_eq!(ports.into_iter().collect::<Vec<_>>(), [("kafka".to_string(), 10002)]);
    // Nor any port of the service's own listeners.
    let taken = "              plc-a: { host: h-1, state: active, ports: { kafka: 10000 } }\n";
    let f = loaded(taken);
    let svc = &f.projects[0].services[0];
    assert!(svc.ports.values().all(|p| *p != 10001));
    assert_eq!(fleetwall_model::ports::connection_ports(svc, &f.platform).unwrap()["kafka"], 10001);
}

#[test]
fn a_connection_port_taken_by_a_listener_or_the_platform_is_refused() {
    let d =
        one("              plc-a: { host: h-1, state: active, ports: { kafka: 17072 } }\n", DiagCode::PortCollision);
    assert_eq!(d.message, "service k: port of connection plc-a collides with kafka");
    let d =
        one("              plc-a: { host: h-1, state: active, ports: { kafka: 30287 } }\n", DiagCode::PortCollision);
    assert_eq!(d.message, "service k: port of connection plc-a collides with platform.platform_port");
    let d = one(
        "              plc-a: { host: h-1, state: active, ports: { kafka: 10000 } }\n              plc-b: { host: h-2, state: active, ports: { kafka: 10000 } }\n",
        DiagCode::PortCollision,
    );
    assert_eq!(d.message, "service k: port of connection plc-b collides with connection plc-a kafka");
}

#[test]
fn a_connection_port_outside_the_pool_is_refused() {
    let d = one("              plc-a: { host: h-1, state: active, ports: { kafka: 31001 } }\n", DiagCode::PortRange);
    assert_eq!(d.message, "service k: port of connection plc-a is outside 10000–31000");
    // 30001–31000 is the pool's own, beyond the listeners' range.
    assert!(errors("              plc-a: { host: h-1, state: active, ports: { kafka: 31000 } }\n").is_empty());
}

#[test]
fn only_components_with_a_port_of_their_own_get_connection_ports() {
    let d = one(
        "              plc-a: { host: h-1, state: active, ports: { kafka_rest: 10000 } }\n",
        DiagCode::UnknownListener,
    );
    assert_eq!(d.message, "service k: connection plc-a: no component `kafka_rest` with its own port");
    assert_eq!(d.hint.as_deref(), Some("components with ports of their own per connection: kafka"));
}

#[test]
fn state_id_and_host_are_checked() {
    let d = one("              plc-a: { host: h-1, state: actve }\n", DiagCode::Privatelink);
    assert_eq!(d.message, "service k: unknown connection state");
    assert_eq!(d.hint.as_deref(), Some("did you mean `active`?"));
    let d = one("              PLC_A: { host: h-1, state: active }\n", DiagCode::Privatelink);
    assert_eq!(d.message, "service k: invalid private-link connection id");
    let d = one("              plc-a: { state: active }\n", DiagCode::Missing);
    assert_eq!(d.message, "service k: connection plc-a has no `host`");
    let d =
        one("              plc-a: { host: h-1, state: active, address: 10.20.15.0/24 }\n", DiagCode::InvalidAddress);
    assert_eq!(d.message, "service k: connection plc-a: not a valid IP address");
}

#[test]
fn a_google_private_link_needs_no_principals_and_aws_one_does() {
    let google = r#"version: 1
platform:
  management_gateways: [198.51.100.10]
projects:
  acme:
    vpcs:
      v: { cloud: google-europe-west1, network_cidr: 10.30.0.0/20 }
    services:
      k:
        type: kafka
        cloud: google-europe-west1
        vpc: v
        nodes:
          k-1: { private: 10.30.0.11 }
        privatelink:
          PROVIDER: { principals: [] }
"#;
    let (f, d) = load(&google.replace("PROVIDER", "google"), &Catalog::builtin());
    assert!(f.is_some(), "{d:#?}");
    let aws = google.replace("PROVIDER", "aws").replace("google-europe-west1", "aws-eu-west-1");
    let (_, d) = load(&aws, &Catalog::builtin());
    assert!(d.items.iter().any(|d| d.message == "service k: a private link without principals"), "{d:#?}");
}
