//! Every kind of problem `fleetwall check` reports, with its message, location and hint.

use fleetwall_model::{load, Catalog, DiagCode, Diagnostic, Severity};

const HEAD: &str = "version: 1\nplatform:\n  management_gateways: [198.51.100.10]\nprojects:\n";

/// Loads `HEAD` + `body` and returns the diagnostics.
fn diags(body: &str) -> Vec<Diagnostic> {
    let src = format!("{HEAD}{body}");
    load(&src, &Catalog::builtin()).1.items
}

/// The only diagnostic of `body`, which must have `code`.
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

fn pg(ip_filter: &str) -> String {
    format!(
        "  p:\n    services:\n      db:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes:\n          db-1: {{ public: 203.0.113.5 }}\n        user_config:\n          ip_filter: {ip_filter}\n"
    )
}

#[test]
fn valid_file_has_no_diagnostics() {
    assert!(diags(&pg("[198.51.100.0/24]")).is_empty());
}

#[test]
fn malformed_cidr() {
    let d = one(&pg("[198.51.100.0/33]"), DiagCode::InvalidCidr);
    assert_eq!(d.message, "ip_filter: not a valid CIDR");
    assert_eq!(at(&d), (13, 23));
    assert_eq!(d.value.as_deref(), Some("198.51.100.0/33"));
    assert!(d.hint.unwrap().contains("198.51.100.0/24"));
}

#[test]
fn malformed_address() {
    let body = "  p:\n    services:\n      db:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes:\n          db-1: { public: 203.0.113.500 }\n";
    let d = one(body, DiagCode::InvalidAddress);
    assert_eq!(d.message, "public address of db-1: not a valid IP address");
    assert_eq!(at(&d), (11, 27));
    assert_eq!(d.value.as_deref(), Some("203.0.113.500"));
}

#[test]
fn address_with_prefix_gets_a_specific_hint() {
    let body = "  p:\n    services:\n      db:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes:\n          db-1: { public: 203.0.113.5/32 }\n";
    let d = one(body, DiagCode::InvalidAddress);
    assert_eq!(d.hint.as_deref(), Some("write a single address, without a prefix length"));
}

#[test]
fn host_bits_suggest_the_network() {
    let all = diags(&pg("[\"2001:db8:1::5/48\", 10.1.2.3/8]"));
    assert_eq!(all.len(), 2, "both entries are reported");
    let d = &all[0];
    assert_eq!(d.code, DiagCode::HostBits);
    assert_eq!(d.message, "ip_filter: the address has bits set after the prefix length");
    assert_eq!(d.hint.as_deref(), Some("did you mean the network 2001:db8:1::/48?"));
    assert_eq!(at(d), (13, 23));
    assert_eq!(all[1].hint.as_deref(), Some("did you mean the network 10.0.0.0/8?"));
}

#[test]
fn too_many_ip_filter_entries() {
    let entries: Vec<String> = (0..8001u32).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)).collect();
    let d = one(&pg(&format!("[{}]", entries.join(", "))), DiagCode::IpFilterTooLong);
    assert_eq!(d.message, "service db: ip_filter has more than 8000 entries");
    assert_eq!(d.value.as_deref(), Some("8001 entries"));
    assert_eq!(at(&d), (13, 22));
    let ok: Vec<String> = entries[..8000].to_vec();
    assert!(diags(&pg(&format!("[{}]", ok.join(", ")))).is_empty());
}

#[test]
fn network_longer_than_43_characters() {
    let long = "2001:0db8:0000:0000:0000:0000:0000:0000/128";
    assert_eq!(long.len(), 43);
    assert!(diags(&pg(&format!("[\"{long}\"]"))).is_empty());
    let d = one(&pg(&format!("[\" {long}\"]")), DiagCode::FieldTooLong);
    assert_eq!(d.message, "ip_filter network is longer than 43 characters");
    assert_eq!(at(&d), (13, 23));
}

#[test]
fn base_port_outside_range() {
    let d = one("  p:\n    base_port: 9999\n", DiagCode::BasePortRange);
    assert_eq!(d.message, "base_port is outside 10000–30000");
    assert_eq!(at(&d), (6, 16));
    assert_eq!(d.value.as_deref(), Some("9999"));
    assert!(diags("  p:\n    base_port: 30000\n").is_empty());
    assert_eq!(one("  p:\n    base_port: 30001\n", DiagCode::BasePortRange).value.as_deref(), Some("30001"));
}

#[test]
fn unknown_service_type_suggests_a_type() {
    let body = "  p:\n    services:\n      db:\n        type: kafak\n        cloud: aws-eu-west-1\n        nodes:\n          db-1: { public: 203.0.113.5 }\n";
    let d = one(body, DiagCode::UnknownServiceType);
    assert_eq!(d.message, "unknown service type");
    assert_eq!(at(&d), (8, 15));
    assert_eq!(d.hint.as_deref(), Some("did you mean `kafka`?"));
}

#[test]
fn unknown_component_suggests_a_component() {
    let body = "  p:\n    vpcs:\n      v: { cloud: aws-eu-west-1, network_cidr: 10.0.0.0/16 }\n    services:\n      k:\n        type: kafka\n        cloud: aws-eu-west-1\n        vpc: v\n        nodes:\n          k-1: { private: 10.0.0.5, public: 203.0.113.5 }\n        user_config:\n          public_access: { kafka_rst: true }\n";
    let d = one(body, DiagCode::UnknownComponent);
    assert_eq!(d.message, "kafka has no component kafka_rst");
    assert_eq!(at(&d), (16, 28));
    assert_eq!(d.hint.as_deref(), Some("did you mean `kafka_rest`?"));
}

#[test]
fn privatelink_only_component_cannot_be_public() {
    let body = "  p:\n    vpcs:\n      v: { cloud: aws-eu-west-1, network_cidr: 10.0.0.0/16 }\n    services:\n      k:\n        type: kafka\n        cloud: aws-eu-west-1\n        vpc: v\n        nodes:\n          k-1: { private: 10.0.0.5, public: 203.0.113.5 }\n        user_config:\n          public_access: { jolokia: true }\n";
    let d = one(body, DiagCode::UnknownComponent);
    assert_eq!(d.message, "component jolokia of kafka cannot be opened with public_access");
}

#[test]
fn unknown_vpc_suggests_a_vpc() {
    let body = "  p:\n    vpcs:\n      vpc-eu: { cloud: aws-eu-west-1, network_cidr: 10.0.0.0/16 }\n    services:\n      db:\n        type: pg\n        cloud: aws-eu-west-1\n        vpc: vpc-ue\n        nodes:\n          db-1: { private: 10.0.0.5 }\n";
    let d = one(body, DiagCode::UnknownVpc);
    assert_eq!(d.message, "unknown VPC");
    assert_eq!(at(&d), (12, 14));
    assert_eq!(d.hint.as_deref(), Some("did you mean `vpc-eu`?"));
}

#[test]
fn unknown_cloud_prefix() {
    let body = "  p:\n    services:\n      db:\n        type: pg\n        cloud: asw-eu-west-1\n        nodes:\n          db-1: { public: 203.0.113.5 }\n";
    let d = one(body, DiagCode::UnknownCloud);
    assert_eq!(d.message, "unknown cloud provider");
    assert_eq!(at(&d), (9, 16));
    assert!(d.hint.unwrap().starts_with("did you mean the prefix `aws-`?"));
}

#[test]
fn duplicate_node_names_across_the_fleet() {
    let body = "  p:\n    services:\n      a:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes:\n          n-1: { public: 203.0.113.5 }\n      b:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes:\n          n-1: { public: 203.0.113.6 }\n";
    let d = one(body, DiagCode::DuplicateNode);
    assert_eq!(d.message, "node name used twice in the fleet");
    assert_eq!(at(&d), (16, 11));
    assert_eq!(d.hint.as_deref(), Some("node names are unique across the fleet; it is first declared on line 11"));
}

#[test]
fn duplicate_addresses_across_the_fleet() {
    let body = "  p:\n    services:\n      a:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes:\n          a-1: { public: \"2001:db8::5\" }\n  q:\n    services:\n      b:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes:\n          b-1: { public: \"2001:db8:0::5\" }\n";
    let d = one(body, DiagCode::DuplicateAddress);
    assert_eq!(d.message, "address used twice in the fleet");
    assert_eq!(at(&d), (18, 26));
    assert_eq!(d.hint.as_deref(), Some("already the address of node a-1"));
}

#[test]
fn privatelink_access_without_resource() {
    let body = "  p:\n    vpcs:\n      v: { cloud: aws-eu-west-1, network_cidr: 10.0.0.0/16 }\n    services:\n      k:\n        type: kafka\n        cloud: aws-eu-west-1\n        vpc: v\n        nodes:\n          k-1: { private: 10.0.0.5 }\n        user_config:\n          privatelink_access: { kafka: true }\n";
    let d = one(body, DiagCode::Privatelink);
    assert_eq!(d.message, "service k: privatelink_access without a `privatelink` resource");
    assert_eq!(at(&d), (16, 33));
    assert!(d.hint.unwrap().contains("privatelink: { aws:"));
}

#[test]
fn privatelink_needs_a_vpc() {
    let body = "  p:\n    services:\n      k:\n        type: kafka\n        cloud: aws-eu-west-1\n        nodes:\n          k-1: { public: 203.0.113.5 }\n        privatelink: { aws: { principals: [\"arn:aws:iam::1:root\"] } }\n";
    let d = one(body, DiagCode::Privatelink);
    assert_eq!(d.message, "service k: a private link needs the service in a project VPC");
}

#[test]
fn public_access_without_public_addresses() {
    let body = "  p:\n    vpcs:\n      v: { cloud: aws-eu-west-1, network_cidr: 10.0.0.0/16 }\n    services:\n      k:\n        type: kafka\n        cloud: aws-eu-west-1\n        vpc: v\n        nodes:\n          k-1: { private: 10.0.0.5, public: 203.0.113.5 }\n          k-2: { private: 10.0.0.6 }\n        user_config:\n          public_access: { kafka: true }\n";
    let d = one(body, DiagCode::PublicAccessWithoutPublicAddress);
    assert_eq!(d.message, "public_access is on, but node k-2 has no public address");
    assert_eq!(at(&d), (17, 28));
}

#[test]
fn colliding_pinned_ports() {
    let body = "  p:\n    base_port: 12000\n    services:\n      db:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes:\n          db-1: { public: 203.0.113.5 }\n        ports: { pgbouncer: 12691 }\n";
    let d = one(body, DiagCode::PortCollision);
    assert_eq!(d.message, "pinned port of pgbouncer collides with pg");
    assert_eq!(at(&d), (13, 29));
    assert_eq!(d.value.as_deref(), Some("12691"));
    // Two pins on one port: both are reported.
    let both = "  p:\n    services:\n      db:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes:\n          db-1: { public: 203.0.113.5 }\n        ports: { pg: 15000, replication: 15000 }\n";
    assert_eq!(diags(both).iter().filter(|d| d.code == DiagCode::PortCollision).count(), 2);
}

#[test]
fn pin_of_unknown_listener() {
    let body = "  p:\n    services:\n      db:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes:\n          db-1: { public: 203.0.113.5 }\n        ports: { pgbouncr: 15000 }\n";
    let d = one(body, DiagCode::UnknownListener);
    assert_eq!(d.hint.as_deref(), Some("did you mean `pgbouncer`?"));
}

#[test]
fn empty_ip_filter_is_a_warning() {
    let d = one(&pg("[]"), DiagCode::EmptyIpFilter);
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(d.message, "service db: ip_filter is empty, so every client is locked out");
    assert_eq!(at(&d), (13, 22));
    let (fleet, _) = load(&format!("{HEAD}{}", pg("[]")), &Catalog::builtin());
    assert!(fleet.is_some(), "a warning does not make the fleet invalid");
}

#[test]
fn misspelt_key_suggests_the_key() {
    let d = one(&pg("[198.51.100.0/24]").replace("ip_filter", "ip_filer"), DiagCode::UnknownKey);
    assert_eq!(d.message, "user_config: unknown key `ip_filer`");
    assert_eq!(at(&d), (13, 11));
    assert_eq!(d.hint.as_deref(), Some("did you mean `ip_filter`?"));
}

#[test]
fn wrong_type_says_what_was_found() {
    let d = one(&pg("198.51.100.0/24"), DiagCode::Type);
    assert_eq!(d.message, "ip_filter: expected a list, found string");
    assert_eq!(at(&d), (13, 22));
}

#[test]
fn missing_version_and_gateways() {
    let (_, d) = load("projects: {}\n", &Catalog::builtin());
    let codes: Vec<DiagCode> = d.items.iter().map(|d| d.code).collect();
    assert_eq!(codes, [DiagCode::Missing, DiagCode::Platform], "both located at 1:1");
}

#[test]
fn every_problem_is_reported_at_once() {
    let body = "  p:\n    base_port: 5\n    services:\n      db:\n        type: pgg\n        cloud: nowhere\n        nodes:\n          db-1: { public: 1.2.3 }\n        user_config:\n          ip_filter: [10.0.0.1/8, nonsense]\n          publc_access: {}\n";
    let codes: Vec<DiagCode> = diags(body).iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        [
            DiagCode::BasePortRange,
            DiagCode::UnknownServiceType,
            DiagCode::UnknownCloud,
            DiagCode::InvalidAddress,
            DiagCode::HostBits,
            DiagCode::InvalidCidr,
            DiagCode::UnknownKey
        ]
    );
}

#[test]
fn vpc_node_needs_private_address_inside_the_vpc() {
    let body = "  p:\n    vpcs:\n      v: { cloud: aws-eu-west-1, network_cidr: 10.0.0.0/16 }\n    services:\n      db:\n        type: pg\n        cloud: aws-eu-west-1\n        vpc: v\n        nodes:\n          db-1: { private: 10.1.0.5 }\n";
    let d = one(body, DiagCode::AddressOutsideVpc);
    assert_eq!(d.message, "private address of db-1 is outside its VPC's network 10.0.0.0/16");
}

#[test]
fn service_cloud_must_match_its_vpc() {
    let body = "  p:\n    vpcs:\n      v: { cloud: aws-eu-west-1, network_cidr: 10.0.0.0/16 }\n    services:\n      db:\n        type: pg\n        cloud: aws-us-east-1\n        vpc: v\n        nodes:\n          db-1: { private: 10.0.0.5 }\n";
    let d = one(body, DiagCode::CloudMismatch);
    assert_eq!(d.hint.as_deref(), Some("a service runs in its VPC's cloud: use `cloud: aws-eu-west-1`"));
}

#[test]
fn the_mission_example_is_valid() {
    let src = include_str!("../../../testdata/mission-example.yaml");
    let (fleet, d) = load(src, &Catalog::builtin());
    assert!(d.items.is_empty(), "{:#?}", d.items);
    let fleet = fleet.unwrap();
    assert_eq!(fleet.tests.len(), 1);
    let pg = &fleet.projects[0].services[0];
    assert_eq!(pg.ports[&fleetwall_model::ListenerKey::Component("pg".into())], 12691);
}

#[test]
fn lint_covered_and_duplicate_entries() {
    let d = diags(&pg("[10.0.0.0/8, 10.1.0.0/16, \"2001:db8::/32\", 10.0.0.0/8]"));
    let covered: Vec<&Diagnostic> = d.iter().filter(|d| d.code == DiagCode::CoveredEntry).collect();
    assert_eq!(covered.len(), 2, "{d:#?}");
    assert!(covered.iter().all(|d| d.severity == Severity::Warning));
    assert_eq!(covered[0].message, "ip_filter entry 10.1.0.0/16 is covered by 10.0.0.0/8 (line 13)");
    assert_eq!(at(covered[0]), (13, 35));
    assert_eq!(covered[1].message, "ip_filter entry 10.0.0.0/8 is listed twice (also on line 13)");
    assert!(diags(&pg("[10.0.0.0/9, 10.128.0.0/9]")).is_empty(), "adjacent is not covered");
}

#[test]
fn lint_entries_that_never_reach_a_vpc_service() {
    let body = |public: &str| {
        format!("  p:\n    vpcs:\n      v: {{ cloud: aws-eu-west-1, network_cidr: 10.0.0.0/16, peerings: [{{ peer_vpc: x, peer_cidrs: [172.31.0.0/16] }}] }}\n    services:\n      k:\n        type: kafka\n        cloud: aws-eu-west-1\n        vpc: v\n        nodes:\n          k-1: {{ private: 10.0.0.5, public: 203.0.113.5 }}\n        user_config:\n          ip_filter: [10.0.0.0/8, 172.31.4.0/24, 198.51.100.0/24]\n{public}")
    };
    let d = one(&body(""), DiagCode::UnreachableEntry);
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(
        d.message,
        "ip_filter entry 198.51.100.0/24 can never reach the service: it lies outside VPC v and its peerings"
    );
    assert_eq!(at(&d), (16, 50));
    assert!(diags(&body("          public_access: { kafka_rest: true }\n")).is_empty(), "the public route uses it");
}

#[test]
fn nested_aliases_past_the_node_budget() {
    let mut body = "  p:\n    a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_string();
    for (prev, name) in ["a", "b", "c", "d", "e"].iter().zip(["b", "c", "d", "e", "f"]) {
        body.push_str(&format!("    {name}: &{name} [{}]\n", vec![format!("*{prev}"); 10].join(", ")));
    }
    let d = one(&body, DiagCode::AliasExpansion);
    assert_eq!(d.message, "YAML aliases expand this document past 10000 nodes");
    assert_eq!(at(&d), (9, 40), "the 8th copy of c crosses 10,000");
    assert_eq!(d.value.as_deref(), Some("10134 nodes"));
    assert_eq!(d.hint.as_deref(), Some("write the values out, or use fewer nested aliases"));
}

#[test]
fn nesting_past_the_depth_limit() {
    let d = one(&format!("  p:\n    {}x\n", "- ".repeat(100)), DiagCode::NestingDepth);
    assert_eq!(d.message, "the document nests more than 64 levels deep");
    // The file and `projects` mappings are two levels, so the 63rd list is the 65th level.
    assert_eq!(at(&d), (6, 5 + 2 * 62));
    assert_eq!(d.value.as_deref(), Some("65 levels"));
    assert_eq!(d.hint.as_deref(), Some("a fleet file nests about ten levels deep; close the open lists and mappings"));
}

#[test]
fn whitespace_around_an_ip_filter_network_was_trimmed_silently() {
    let all = diags(&pg(r#"[' 10.0.0.0/8', "1.2.3.4\n"]"#));
    assert_eq!(all.len(), 2, "{all:#?}");
    let d = &all[0];
    assert_eq!(d.code, DiagCode::SurroundingWhitespace);
    assert_eq!(d.message, "ip_filter: the network has leading or trailing whitespace");
    assert_eq!(at(d), (13, 23));
    assert_eq!(d.value.as_deref(), Some(" 10.0.0.0/8"));
    assert_eq!(d.hint.as_deref(), Some("did you mean '10.0.0.0/8'?"));
    assert_eq!(at(&all[1]), (13, 38));
    assert_eq!(all[1].value.as_deref(), Some(r"1.2.3.4\n"), "escaped, so the newline shows");
    assert_eq!(all[1].hint.as_deref(), Some("did you mean '1.2.3.4'?"));
}

#[test]
fn leading_zeros_in_an_ip_filter_octet_were_read_as_decimal() {
    let all = diags(&pg("[010.1.2.0/24, 01.2.3.4/32, 10.0.0.0/08, 0300.1.2.3]"));
    assert_eq!(all.len(), 4, "{all:#?}");
    let d = &all[0];
    assert_eq!(d.code, DiagCode::LeadingZeros);
    assert_eq!(d.message, "ip_filter: the network has leading zeros, which some tools read as octal");
    assert_eq!(at(d), (13, 23));
    assert_eq!(d.value.as_deref(), Some("010.1.2.0/24"));
    assert_eq!(d.hint.as_deref(), Some("did you mean 10.1.2.0/24, its decimal reading?"));
    assert!(all[1].hint.as_deref().unwrap().starts_with("did you mean 1.2.3.4/32,"));
    assert!(all[2].hint.as_deref().unwrap().starts_with("did you mean 10.0.0.0/8,"), "the prefix length too");
    assert_eq!(all[3].hint.as_deref(), Some("write each number in decimal, without leading zeros"));
}

#[test]
fn ipv4_mapped_ip_filter_network_landed_in_an_ipv6_set() {
    let all = diags(&pg(r#"["::ffff:10.0.0.1/128", "::ffff:10.1.0.0/112"]"#));
    assert_eq!(all.len(), 2, "{all:#?}");
    let d = &all[0];
    assert_eq!(d.code, DiagCode::Ipv4Mapped);
    assert_eq!(d.message, "ip_filter: an IPv4-mapped IPv6 network never matches IPv4 traffic");
    assert_eq!(at(d), (13, 23));
    assert_eq!(d.value.as_deref(), Some("::ffff:10.0.0.1/128"));
    assert_eq!(d.hint.as_deref(), Some("write it as the IPv4 network 10.0.0.1/32"));
    assert_eq!(all[1].hint.as_deref(), Some("write it as the IPv4 network 10.1.0.0/16"));
}

#[test]
fn every_address_and_network_field_gets_the_same_hygiene() {
    let src = "version: 1\nplatform:\n  management_gateways: [\"::ffff:198.51.100.10\"]\nprojects:\n  p:\n    vpcs:\n      v: { cloud: aws-eu-west-1, network_cidr: \"10.0.0.0/16 \", privatelink_cidrs: [010.0.0.0/16], peerings: [{ peer_vpc: x, peer_cidrs: [\"::ffff:172.31.0.0/112\"] }] }\n    services:\n      db:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes:\n          db-1: { public: 203.0.113.05 }\n";
    let d = load(src, &Catalog::builtin()).1.items;
    let got: Vec<_> = d.iter().map(|d| (d.code, d.message.as_str(), at(d), d.hint.as_deref())).collect();
    assert_eq!(
        got,
        [
            (
                DiagCode::Ipv4Mapped,
                "management gateway: an IPv4-mapped IPv6 address never matches IPv4 traffic",
                (3, 25),
                Some("write it as the IPv4 address 198.51.100.10")
            ),
            (
                DiagCode::SurroundingWhitespace,
                "network_cidr: the network has leading or trailing whitespace",
                (7, 48),
                Some("did you mean '10.0.0.0/16'?")
            ),
            (
                DiagCode::LeadingZeros,
                "privatelink_cidrs: the network has leading zeros, which some tools read as octal",
                (7, 84),
                Some("did you mean 10.0.0.0/16, its decimal reading?")
            ),
            (
                DiagCode::Ipv4Mapped,
                "peer_cidrs: an IPv4-mapped IPv6 network never matches IPv4 traffic",
                (7, 138),
                Some("write it as the IPv4 network 172.31.0.0/16")
            ),
            (
                DiagCode::LeadingZeros,
                "public address of db-1: the address has leading zeros, which some tools read as octal",
                (13, 27),
                Some("did you mean 203.0.113.5, its decimal reading?")
            ),
        ]
    );
}

#[test]
fn a_line_break_in_an_ip_filter_description_reached_the_rendered_comment() {
    let d =
        one(&pg("[{ network: 192.0.2.0/24, description: \"office\\nflush ruleset\" }]"), DiagCode::ControlCharacter);
    assert_eq!(d.message, "ip_filter description holds a control character (a line break, tab or similar)");
    assert_eq!(at(&d), (13, 61));
    assert_eq!(d.value.as_deref(), Some("\"office\\nflush ruleset\""));
    assert_eq!(d.hint.as_deref(), Some("write the description on one line, without control characters"));
}

#[test]
fn a_peering_inside_the_vpcs_own_range_was_accepted() {
    let body = "  p:\n    vpcs:\n      v: { cloud: aws-eu-west-1, network_cidr: 10.30.0.0/20, peerings: [{ peer_vpc: x, peer_cidrs: [10.30.8.0/24] }] }\n";
    let d = one(body, DiagCode::PeeringOverlap);
    assert_eq!(d.message, "peer_cidrs: 10.30.8.0/24 overlaps the VPC's own network 10.30.0.0/20");
    assert_eq!(at(&d), (7, 101));
    assert_eq!(d.value.as_deref(), Some("10.30.8.0/24"));
    assert_eq!(d.hint.as_deref(), Some("list the customer's networks behind the peering, outside 10.30.0.0/20"));
}

#[test]
fn a_node_with_a_management_gateways_address_was_accepted() {
    let body = "  p:\n    services:\n      db:\n        type: pg\n        cloud: aws-eu-west-1\n        nodes:\n          db-1: { public: 198.51.100.10 }\n";
    let d = one(body, DiagCode::GatewayAddress);
    assert_eq!(d.message, "address of a management gateway");
    assert_eq!(at(&d), (11, 27));
    assert_eq!(d.severity, Severity::Error);
    // A VPC over the gateways: a warning.
    let vpc = "  p:\n    vpcs:\n      v: { cloud: aws-eu-west-1, network_cidr: 198.51.100.0/24 }\n";
    let w = one(vpc, DiagCode::GatewayAddress);
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.message, "network_cidr 198.51.100.0/24 covers management gateway 198.51.100.10");
}

#[test]
fn unknown_region_is_a_warning_with_a_suggestion_from_the_region_list() {
    let body = pg("[198.51.100.0/24]").replace("aws-eu-west-1", "aws-eu-wst-1");
    let d = one(&body, DiagCode::UnknownRegion);
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(d.message, "unknown aws region");
    assert_eq!(at(&d), (9, 16));
    assert_eq!(d.value.as_deref(), Some("aws-eu-wst-1"));
    assert_eq!(d.hint.as_deref(), Some("did you mean `aws-eu-west-1`?"));
    // Nothing close: the provider's regions are listed.
    let d = one(&pg("[198.51.100.0/24]").replace("aws-eu-west-1", "aws-moon-base-7"), DiagCode::UnknownRegion);
    assert!(d.hint.unwrap().starts_with("known aws regions: aws-af-south-1, "));
    // A known region of another provider is not known to this one.
    let d = one(&pg("[198.51.100.0/24]").replace("aws-eu-west-1", "google-eu-west-1"), DiagCode::UnknownRegion);
    assert_eq!(d.message, "unknown google region");
}
