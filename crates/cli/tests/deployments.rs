//! Deployments (zones, subsystems, clusters) at the command line: trace and diff name
//! the flow, tests probe servers, one server's plan, check and ports, and a user's own
//! deployment catalog (a broken one refused with its location).

mod common;
use common::*;

const FLEET: &str = "examples/api-connect.yaml";

#[test]
fn trace_names_the_flow_in_and_out() {
    let out = ok(&["trace", FLEET, "--from", "10.3.0.11", "--to", "gw-b-1", "--port", "3000/tcp"]);
    assert!(out.starts_with("10.3.0.11 -> gw-b-1 (10.2.0.21) 3000/tcp: accept\n"), "{out}");
    assert!(out.contains("rule:     f7-push-configuration-in-tcp-v4 — flow 7: Push configuration"), "{out}");
    assert!(out.contains("because:  server mgmt-1 of cluster mgmt (management)"), "{out}");
    // Outbound from a gateway to a gateway of another cluster: refused at the source.
    let refused = fleetwall(&["trace", FLEET, "--from", "gw-a-1", "--to", "10.2.0.21", "--port", "443"]);
    assert_eq!(refused.status.code(), Some(1));
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(text.contains("gw-a-1 (10.2.0.11) -> 10.2.0.21 443/tcp outbound: reject with tcp-reset"), "{text}");
    // IPv6, by the server's name.
    let v6 = ok(&["trace", FLEET, "--from", "fd00:2::12", "--to", "gw-a-1", "--port", "7000/udp"]);
    assert!(v6.contains("accept") && v6.contains("cluster rule gateway-cluster"), "{v6}");
}

#[test]
fn diff_names_the_flows_a_changed_option_opens_and_closes() {
    let s = Scratch::new("dep-diff");
    let src = std::fs::read_to_string(root().join(FLEET)).unwrap();
    let new = s.0.join("new.yaml");
    std::fs::write(&new, src.replace("gateway_push_port: 3000", "gateway_push_port: 443")).unwrap();
    let out = fleetwall(&["diff", FLEET, new.to_str().unwrap(), "--exit-code"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "something opens: {text}");
    assert!(text.contains("- closes tcp/3000 on 10.2.0.11 to 10.3.0.11/32"), "{text}");
    assert!(text.contains("rule: f7-push-configuration-in-tcp-v4: flow 7: Push configuration"), "{text}");
    assert!(text.contains("+ opens  egress tcp/443 from 10.3.0.11"), "{text}");
}

#[test]
fn one_server_in_plan_check_and_ports() {
    let nft = ok(&["plan", FLEET, "--node", "gw-a-1"]);
    assert!(
        nft.contains("# fleetwall ruleset for node gw-a-1: apic-prod/gw-a (api_connect Gateway Server, zone gateway)")
    );
    assert!(nft.contains("chain output") && nft.contains("reject-tcp-out"), "{nft}");
    let check = ok(&["check", FLEET, "--node", "gw-a-1"]);
    assert!(
        check.contains("1 deployments with 6 servers; management access proven on 0 nodes; 21/21 tests pass"),
        "{check}"
    );
    let ports = fleetwall(&["ports", FLEET, "--node", "gw-a-1"]);
    assert_eq!(ports.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&ports.stderr).contains("gw-a-1 is a server of a deployment"));
    let unknown = fleetwall(&["plan", FLEET, "--node", "gw-a-3"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("did you mean `gw-a-1`?"));
}

#[test]
fn a_users_deployment_catalog_is_used_and_a_broken_one_refused_with_its_line() {
    let s = Scratch::new("dep-cat");
    let cat = s.0.join("kinds.yaml");
    std::fs::write(
        &cat,
        "kinds:\n  shop:\n    zones: { web: { outside: true }, app: {} }\n    subsystems: { api: { zone: app } }\n    flows:\n      https: { number: 1, usage: shoppers, from: { zone: web }, to: { subsystem: api }, ports: [8443] }\n",
    )
    .unwrap();
    let fleet = s.0.join("shop.yaml");
    std::fs::write(&fleet, "version: 1\nplatform: { management_gateways: [198.51.100.10] }\ndeployments:\n  s:\n    kind: shop\n    zones: { web: [0.0.0.0/0], app: [10.9.0.0/24] }\n    clusters: { api: { subsystem: api, servers: { api-1: 10.9.0.5 } } }\n").unwrap();
    let (f, c) = (fleet.to_str().unwrap(), cat.to_str().unwrap());
    let out = ok(&["trace", f, "--deployment-catalog", c, "--from", "203.0.113.9", "--to", "api-1", "--port", "8443"]);
    assert!(out.contains("accept") && out.contains("flow 1: shoppers"), "{out}");
    // Without it, the built-in catalog has no kind `shop`.
    let without = fleetwall(&["check", f]);
    assert_eq!(without.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&without.stdout).contains("unknown deployment kind"));
    std::fs::write(&cat, "kinds:\n  shop:\n    zones: { web: {} }\n    subsystems: { api: { zone: wbe } }\n").unwrap();
    let broken = fleetwall(&["check", f, "--deployment-catalog", c]);
    assert_eq!(broken.status.code(), Some(2), "an unusable catalog is an environment error");
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(err.contains("shop.subsystems.api: unknown zone `wbe`") && err.contains(":4:"), "{err}");
}
