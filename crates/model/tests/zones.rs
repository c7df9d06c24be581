//! `deployments:` in a fleet file: what validates, every problem with its message,
//! location and hint, the typed document's round trip, and a user's own catalog.

use fleetwall_model::deployment::{DeploymentCatalog, OptionValue};
use fleetwall_model::{load, Catalog, DiagCode, Diagnostic, Diagnostics, Fleet};

const HEAD: &str =
    "version: 1\nplatform:\n  management_gateways: [198.51.100.10]\ndeployments:\n  apic:\n    kind: api_connect\n";
const ZONES: &str =
    "    zones: { public: [0.0.0.0/0], protected: [10.1.0.0/16], gateway: [10.2.0.0/24], management: [10.3.0.0/24] }\n";

fn src(body: &str) -> String {
    format!("{HEAD}{body}")
}

fn diags(body: &str) -> Vec<Diagnostic> {
    load(&src(body), &Catalog::builtin()).1.items
}

fn one(body: &str, code: DiagCode) -> Diagnostic {
    let d = diags(body);
    assert_eq!(d.len(), 1, "expected one diagnostic, got {d:#?}");
    assert_eq!(d[0].code, code, "{d:#?}");
    d[0].clone()
}

fn at(d: &Diagnostic) -> (u32, u32) {
    let s = d.span.expect("located");
    (s.start.line, s.start.col)
}

fn valid(body: &str) -> Fleet {
    let (f, d) = load(&src(body), &Catalog::builtin());
    f.unwrap_or_else(|| panic!("{:#?}", d.items))
}

const GW: &str = "    clusters:\n      gw-a: { subsystem: gateway, zone: gateway, servers: { gw-a-1: 10.2.0.11 } }\n";

#[test]
fn a_deployment_validates_with_its_options_defaulted_and_set() {
    let f = valid(&format!("{ZONES}{GW}    options: {{ gateway_push_port: 443, analytics_offload_ports: [9092] }}\n"));
    let d = &f.deployments[0];
    assert_eq!(d.name, "apic");
    assert_eq!(d.zones.len(), 4, "the optional offload zone is left out");
    assert_eq!(d.options["gateway_push_port"], OptionValue::Port(443));
    assert_eq!(d.options["xml_management_port"], OptionValue::Port(5550));
    assert_eq!(d.options["analytics_offload_ports"], OptionValue::Ports(vec![9092]));
    assert_eq!(d.clusters[0].servers[0].addresses, ["10.2.0.11".parse::<std::net::IpAddr>().unwrap()]);
}

#[test]
fn a_server_outside_its_zone() {
    let body = format!(
        "{ZONES}    clusters:\n      gw-a: {{ subsystem: gateway, zone: gateway, servers: {{ gw-a-1: 10.3.0.11 }} }}\n"
    );
    let d = one(&body, DiagCode::ServerOutsideZone);
    assert_eq!(d.message, "server gw-a-1 of cluster gw-a is outside its zone gateway");
    assert_eq!(at(&d), (9, 69));
    assert_eq!(d.value.as_deref(), Some("10.3.0.11"));
    assert_eq!(
        d.hint.as_deref(),
        Some("zone gateway is 10.2.0.0/24; move the server or the cluster to the zone it is in")
    );
}

#[test]
fn an_unknown_subsystem_gets_a_did_you_mean() {
    let body = format!(
        "{ZONES}    clusters:\n      gw-a: {{ subsystem: gatway, zone: gateway, servers: {{ gw-a-1: 10.2.0.11 }} }}\n"
    );
    let d = one(&body, DiagCode::UnknownSubsystem);
    assert_eq!(d.message, "api_connect has no subsystem `gatway`");
    assert_eq!(at(&d), (9, 26));
    assert_eq!(d.hint.as_deref(), Some("did you mean `gateway`?"));
}

#[test]
fn an_unknown_zone_gets_a_did_you_mean() {
    let body = format!(
        "{ZONES}    clusters:\n      gw-a: {{ subsystem: gateway, zone: gatewy, servers: {{ gw-a-1: 10.2.0.11 }} }}\n"
    );
    let d = one(&body, DiagCode::UnknownZone);
    assert_eq!(d.message, "api_connect has no zone `gatewy`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `gateway`?"));
    let body = format!("    zones: {{ public: [0.0.0.0/0], protectd: [10.1.0.0/16] }}\n{GW}");
    let d = diags(&body);
    let unknown = d.iter().find(|d| d.code == DiagCode::UnknownZone).expect("unknown zone");
    assert_eq!(unknown.hint.as_deref(), Some("did you mean `protected`?"));
    assert_eq!(at(unknown), (7, 35));
}

#[test]
fn an_unknown_kind_and_option_get_a_did_you_mean() {
    let s = format!(
        "version: 1\nplatform:\n  management_gateways: [198.51.100.10]\ndeployments:\n  apic:\n    kind: api_conect\n{ZONES}{GW}"
    );
    let d = load(&s, &Catalog::builtin()).1.items;
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].code, DiagCode::UnknownDeploymentKind);
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `api_connect`?"));
    assert_eq!(at(&d[0]), (6, 11));
    let d = one(&format!("{ZONES}{GW}    options: {{ gateway_psh_port: 443 }}\n"), DiagCode::UnknownOption);
    assert_eq!(d.message, "api_connect has no option `gateway_psh_port`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `gateway_push_port`?"));
}

#[test]
fn an_option_of_the_wrong_kind_or_range() {
    let d = one(&format!("{ZONES}{GW}    options: {{ gateway_push_port: [1, 2] }}\n"), DiagCode::Type);
    assert_eq!(d.message, "options.gateway_push_port: expected a port such as 3000");
    let d = one(&format!("{ZONES}{GW}    options: {{ web_gui_port: 70000 }}\n"), DiagCode::PortRange);
    assert_eq!(d.value.as_deref(), Some("70000"));
    let d = one(&format!("{ZONES}{GW}    options: {{ analytics_offload_protocol: sctp }}\n"), DiagCode::Type);
    assert_eq!(d.hint.as_deref(), Some("write tcp, udp or tcp+udp (http, https and kafka are tcp)"));
}

#[test]
fn a_cluster_without_servers() {
    let body = format!("{ZONES}    clusters:\n      gw-a: {{ subsystem: gateway, zone: gateway, servers: {{}} }}\n");
    let d = one(&body, DiagCode::EmptyCluster);
    assert_eq!(d.message, "cluster gw-a has no servers");
    assert_eq!(at(&d), (9, 13));
}

#[test]
fn overlapping_zones_name_both() {
    let body = "    zones: { public: [0.0.0.0/0], protected: [10.0.0.0/8], gateway: [10.2.0.0/24], management: [10.3.0.0/24] }\n"
        .to_string()
        + GW;
    let d = diags(&body);
    let overlaps: Vec<&Diagnostic> = d.iter().filter(|d| d.code == DiagCode::ZoneOverlap).collect();
    assert_eq!(overlaps.len(), 2, "{d:#?}");
    assert_eq!(overlaps[0].message, "zone gateway overlaps zone protected (10.0.0.0/8)");
    assert_eq!(
        overlaps[0].hint.as_deref(),
        Some("a server's zone must be unambiguous; 10.0.0.0/8 of zone protected is written at line 7")
    );
    assert_eq!(overlaps[1].message, "zone management overlaps zone protected (10.0.0.0/8)");
    // The public zone stands for the internet and may hold the others.
    assert!(diags(&format!("{ZONES}{GW}")).is_empty());
}

#[test]
fn a_missing_required_zone() {
    let body = format!("    zones: {{ public: [0.0.0.0/0], gateway: [10.2.0.0/24] }}\n{GW}");
    let d = diags(&body);
    let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "deployment apic: zone `protected` (Protected zone) has no networks",
            "deployment apic: zone `management` (Management zone) has no networks"
        ]
    );
}

#[test]
fn a_server_name_or_address_used_twice_in_the_fleet() {
    let body = format!(
        "{ZONES}    clusters:\n      gw-a: {{ subsystem: gateway, zone: gateway, servers: {{ gw-a-1: 10.2.0.11 }} }}\n      gw-b: {{ subsystem: gateway, zone: gateway, servers: {{ gw-a-1: 10.2.0.11 }} }}\n"
    );
    let d = diags(&body);
    let codes: Vec<DiagCode> = d.iter().map(|d| d.code).collect();
    assert_eq!(codes, [DiagCode::DuplicateNode, DiagCode::DuplicateAddress], "{d:#?}");
    assert_eq!(
        d[0].hint.as_deref(),
        Some("server and node names are unique across the fleet; it is first declared on line 9")
    );
}

#[test]
fn a_test_to_a_server_takes_ports_only() {
    let body = format!("{ZONES}{GW}tests:\n  - {{ from: 203.0.113.7, to: gw-a-1, accept: [gateway] }}\n");
    let d = one(&body, DiagCode::Test);
    assert_eq!(d.hint.as_deref(), Some("a deployment server is probed by port: write e.g. `443/tcp` or `161/udp`"));
    let f = valid(&format!("{ZONES}{GW}tests:\n  - {{ from: 203.0.113.7, to: gw-a-1, accept: [443/tcp] }}\n"));
    assert_eq!(f.tests.len(), 1);
}

#[test]
fn the_document_of_a_deployment_validates_like_the_file() {
    let s = src(&format!("{ZONES}{GW}    options: {{ analytics_offload_ports: [9092], analytics_offload_protocol: udp }}\n    kubernetes: {{ namespace: apic }}\n"));
    let cat = Catalog::builtin();
    let mut diags = Diagnostics::default();
    let raw = fleetwall_model::raw::decode(&fleetwall_model::yaml::parse(&s).unwrap(), &mut diags);
    let doc = fleetwall_model::doc::FleetDoc::from_raw(&raw);
    let back: fleetwall_model::doc::FleetDoc = serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap();
    assert_eq!(back, doc);
    let (a, b) = (load(&s, &cat).0.unwrap(), fleetwall_model::validate_doc(&doc, &cat).0.unwrap());
    assert_eq!(a.deployments, b.deployments);
    // A wrong value in the document is located by its path.
    let mut bad = doc.clone();
    bad.deployments.get_mut("apic").unwrap().clusters.get_mut("gw-a").unwrap().zone = Some("management".into());
    let (f, d) = fleetwall_model::validate_doc(&bad, &cat);
    assert!(f.is_none());
    assert_eq!(d.items[0].code, DiagCode::ServerOutsideZone);
    assert_eq!(d.items[0].path.as_deref(), Some("deployments.apic.clusters.gw-a.servers.gw-a-1[0]"));
}

#[test]
fn a_user_catalog_replaces_the_deployment_kinds() {
    let own = "kinds:\n  shop:\n    zones: { web: { outside: true }, app: {} }\n    subsystems: { api: { zone: app } }\n    flows:\n      https: { number: 1, usage: shoppers, from: { zone: web }, to: { subsystem: api }, ports: [8443] }\n";
    let mut d = Diagnostics::default();
    let cat = Catalog::builtin().with_deployments(own, &mut d).expect("valid");
    assert_eq!(cat.deployments.kinds.keys().collect::<Vec<_>>(), ["shop"]);
    let s = "version: 1\nplatform: { management_gateways: [198.51.100.10] }\ndeployments:\n  s:\n    kind: shop\n    zones: { web: [0.0.0.0/0], app: [10.9.0.0/24] }\n    clusters: { api: { subsystem: api, servers: { api-1: 10.9.0.5 } } }\n";
    let (f, diags) = load(s, &cat);
    assert!(f.is_some(), "{:#?}", diags.items);
    assert_eq!(f.unwrap().deployments[0].clusters[0].zone, "app", "the subsystem's zone by default");
    assert!(DeploymentCatalog::builtin().kinds.contains_key("api_connect"));
}
