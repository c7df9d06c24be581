//! trace, test, diff and the checks `check` adds, as a user meets them.

mod common;
use common::*;

#[test]
fn trace_names_the_rule_and_the_model_entry() {
    let out =
        ok(&["trace", "examples/public-pg.yaml", "--from", "198.51.100.7", "--to", "pg-main-1", "--port", "12691/tcp"]);
    assert_eq!(
        out,
        "198.51.100.7 -> pg-main-1 (203.0.113.5) 12691/tcp: accept\n  rule:     client-pg-dynamic-v4 — dynamic route of component pg of acme-prod/pg-main, from its ip_filter\n  because:  ip_filter entry 198.51.100.0/24 'office' of acme-prod/pg-main\n"
    );
}

#[test]
fn trace_explains_a_refusal() {
    let refused = fleetwall(&[
        "trace",
        "examples/kafka-vpc.yaml",
        "--from",
        "198.51.100.7",
        "--to",
        "kafka-events-1.dynamic",
        "--port",
        "17072",
    ]);
    assert_eq!(refused.status.code(), Some(1), "a refusal exits 1 (it exited 0)");
    let out = String::from_utf8(refused.stdout).unwrap();
    assert!(out.starts_with("198.51.100.7 -> kafka-events-1 (10.20.0.11) 17072/tcp: reject with tcp-reset\n"), "{out}");
    assert!(out.contains("not by:   client-kafka-dynamic-v4"), "{out}");
    assert!(
        out.contains("the source is not in ip_filter of acme-stream/kafka-events within VPC vpc-eu and its peerings"),
        "{out}"
    );
    // The same source on the public route of kafka_rest is admitted.
    let public = ok(&[
        "trace",
        "examples/kafka-vpc.yaml",
        "--from",
        "198.51.100.7",
        "--to",
        "203.0.113.21",
        "--port",
        "17074/tcp",
    ]);
    assert!(public.contains(": accept") && public.contains("client-kafka_rest-public-v4"), "{public}");
    // Management: the gateway's reason.
    let mgmt = ok(&[
        "trace",
        "examples/kafka-vpc.yaml",
        "--from",
        "198.51.100.12",
        "--to",
        "kafka-events-2",
        "--port",
        "22/tcp",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&mgmt).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "both v4 addresses of the node");
    assert_eq!(v[0]["trace"]["rule"], "mgmt-ssh-v4");
    assert_eq!(v[0]["trace"]["because"][0], "management gateway 198.51.100.12");
}

/// `--from NODE` traces outbound, through the output chain.
#[test]
fn trace_explains_egress_from_a_node() {
    let out =
        ok(&["trace", "examples/kafka-vpc.yaml", "--from", "kafka-events-1", "--to", "192.0.2.80", "--port", "443"]);
    assert_eq!(
        out,
        "kafka-events-1 (10.20.0.11) -> 192.0.2.80 443/tcp outbound: accept\n  rule:     egress-accept — egress is accepted in standard deployments\n\
kafka-events-1 (203.0.113.21) -> 192.0.2.80 443/tcp outbound: accept\n  rule:     egress-accept — egress is accepted in standard deployments\n"
    );
    let json = ok(&[
        "trace",
        "examples/kafka-vpc.yaml",
        "--from",
        "kafka-events-1",
        "--to",
        "2001:db8::80",
        "--port",
        "53/udp",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "one IPv6 address: fd00:20::11");
    assert_eq!(v[0]["from"], "fd00:20::11");
    assert_eq!(v[0]["trace"]["direction"], "egress");
    assert_eq!(v[0]["trace"]["rule"], "egress-accept");
    // Outbound needs an address to go to, and a node with an address of its family.
    let (code, err) = trace_error("examples/kafka-vpc.yaml", "kafka-events-1", "kafka-events-2", "443");
    assert_eq!(code, Some(2));
    assert!(err.contains("needs a destination address"), "{err}");
    let (_, err) = trace_error("examples/public-pg.yaml", "pg-main-7", "192.0.2.1", "443");
    assert!(err.contains("did you mean `pg-main-1`?"), "{err}");
}

/// The stderr of a `trace` on `fleet` that is expected to fail.
fn trace_error(fleet: &str, from: &str, to: &str, port: &str) -> (Option<i32>, String) {
    let out = fleetwall(&["trace", fleet, "--from", from, "--to", to, "--port", port]);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn trace_rejects_bad_arguments_clearly() {
    let (code, err) = trace_error("examples/public-pg.yaml", "198.51.100.7", "pg-main-9", "1/tcp");
    assert_eq!(code, Some(2));
    assert!(err.contains("did you mean `pg-main-1`?"));
    let (_, err) = trace_error("examples/public-pg.yaml", "198.51.100.7", "pg-main-1", "1/sctp");
    assert!(err.contains("unknown protocol `sctp`"));
    let (_, err) = trace_error("examples/kafka-vpc.yaml", "2001:db8::1", "kafka-events-1.public", "1");
    assert!(err.contains("has no IPv6 address"));
}

fn with_test(test: &str) -> Scratch {
    let s = Scratch::new("verify");
    let src = std::fs::read_to_string(root().join("examples/public-pg.yaml")).unwrap();
    std::fs::write(s.0.join("fleet.yaml"), format!("{src}  {test}\n")).unwrap();
    s
}

#[test]
fn failing_assertions_fail_test_and_check_with_their_trace() {
    let s = with_test("- { from: 192.0.2.7, to: pg-main-1, accept: [pg] }");
    let f = s.0.join("fleet.yaml");
    let out = fleetwall(&["test", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("FAIL  test 4: 192.0.2.7 -> pg-main-1: accept pg"), "{text}");
    assert!(text.contains("203.0.113.5:12691/tcp reject with tcp-reset by reject-tcp"), "{text}");
    assert!(text.trim_end().ends_with("8 passed, 1 failed"), "{text}");

    let check = fleetwall(&["check", f.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(1));
    let text = String::from_utf8(check.stdout).unwrap();
    assert!(text.contains("error[test]: test fails: 192.0.2.7 -> pg-main-1: accept pg"), "{text}");
    assert!(text.contains("fleet.yaml:25:5"), "located at the test: {text}");
}

#[test]
fn passing_assertions_pass() {
    for (_, path) in examples() {
        let out = fleetwall(&["test", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
    let out = ok(&["check", "examples/public-pg.yaml"]);
    assert!(out.contains("management access proven on 2 nodes; 8/8 tests pass"), "{out}");
}

fn changed(example: &str, from: &str, to: &str) -> (Scratch, String) {
    let s = Scratch::new("diff");
    let src = std::fs::read_to_string(root().join("examples").join(example)).unwrap();
    assert!(src.contains(from), "{from}");
    let p = s.0.join("new.yaml");
    std::fs::write(&p, src.replace(from, to)).unwrap();
    let p = p.to_str().unwrap().to_string();
    (s, p)
}

#[test]
fn diff_reports_exactly_what_narrowing_closes() {
    let (_s, new) = changed(
        "public-pg.yaml",
        "network: 198.51.100.0/24, description: office",
        "network: 198.51.100.0/25, description: office",
    );
    let out = ok(&["diff", "examples/public-pg.yaml", &new]);
    assert!(!out.contains("WARNING"), "{out}");
    assert!(out.contains("pg-main-1 (changed)\n  - closes tcp/12691 on 203.0.113.5 to 198.51.100.128/25\n"), "{out}");
    assert!(out.contains("      from: ip_filter entry 198.51.100.0/24 'office' of acme-prod/pg-main"), "{out}");
    assert!(!out.contains("+ opens"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["diff", "examples/public-pg.yaml", &new, "--format", "json"])).unwrap();
    assert_eq!(json["nodes"][0]["closed"][0]["sources"][0], "198.51.100.128/25");
    assert_eq!(json["nodes"][0]["closed"][0]["port"], 12691);
    assert_eq!(ok(&["diff", "examples/public-pg.yaml", "examples/public-pg.yaml"]), "no flow opens or closes\n");
}

#[test]
fn diff_warns_loudly() {
    let (_a, everyone) = changed("public-pg.yaml", "- 192.0.2.128/25", "- \"::/0\"");
    let out = ok(&["diff", "examples/public-pg.yaml", &everyone]);
    assert!(out.starts_with("!! WARNING: pg-main-1: tcp/12691 on 2001:db8:5::5 is newly open to ::/0"), "{out}");

    let (_b, public) = changed(
        "kafka-vpc.yaml",
        "public_access: { kafka_rest: true }",
        "public_access: { kafka_rest: true, schema_registry: true }",
    );
    let out = ok(&["diff", "examples/kafka-vpc.yaml", &public]);
    assert!(
        out.contains("!! WARNING: kafka-events-1: component schema_registry is newly exposed on its public route"),
        "{out}"
    );

    let (_c, empty) = changed(
        "no-base-port.yaml",
        "ip_filter: [{ network: 198.51.100.0/24, description: app servers }]",
        "ip_filter: []",
    );
    let out = ok(&["diff", "examples/no-base-port.yaml", &empty]);
    assert!(out.contains("!! WARNING: globex/cache: ip_filter is now empty: every client is locked out"), "{out}");
    assert!(out.contains("- closes tcp/"), "{out}");
}

#[test]
fn diff_printed_each_warning_twice_and_exited_0_on_a_new_opening() {
    let (_a, everyone) = changed("public-pg.yaml", "- 192.0.2.128/25", "- \"::/0\"");
    let out = fleetwall(&["diff", "examples/public-pg.yaml", &everyone]);
    assert_eq!(out.status.code(), Some(0), "without --exit-code a diff is only a report");
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let line = "!! WARNING: pg-main-1: tcp/12691 on 2001:db8:5::5 is newly open to ::/0";
    assert_eq!(all.matches("tcp/12691 on 2001:db8:5::5 is newly open to ::/0").count(), 1, "once, not twice: {all}");
    assert!(all.starts_with(line), "{all}");
    let gate = fleetwall(&["diff", "examples/public-pg.yaml", &everyone, "--exit-code"]);
    assert_eq!(gate.status.code(), Some(1), "--exit-code: 1 when anything opens");
    let (_b, narrower) = changed(
        "public-pg.yaml",
        "network: 198.51.100.0/24, description: office",
        "network: 198.51.100.0/25, description: office",
    );
    assert_eq!(fleetwall(&["diff", "examples/public-pg.yaml", &narrower, "--exit-code"]).status.code(), Some(0));
}

/// `--port COMPONENT` traces the component's listeners on the node (each route's port).
#[test]
fn trace_takes_a_component_name_for_the_port() {
    let out = fleetwall(&[
        "trace",
        "examples/kafka-vpc.yaml",
        "--from",
        "172.31.9.20",
        "--to",
        "kafka-events-1",
        "--port",
        "kafka",
    ]);
    assert_eq!(out.status.code(), Some(1), "the private-link route refuses a peering source");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("172.31.9.20 -> kafka-events-1 (10.20.0.11) 17072/tcp: accept"), "{text}");
    assert!(text.contains("172.31.9.20 -> kafka-events-1 (10.20.0.11) 17080/tcp: reject with tcp-reset"), "{text}");
    let only = ok(&[
        "trace",
        "examples/kafka-vpc.yaml",
        "--from",
        "10.20.15.9",
        "--to",
        "kafka-events-1.privatelink",
        "--port",
        "kafka",
    ]);
    assert_eq!(only.lines().next().unwrap(), "10.20.15.9 -> kafka-events-1 (10.20.0.11) 17080/tcp: accept");
    let (code, err) = trace_error("examples/kafka-vpc.yaml", "172.31.9.20", "kafka-events-1", "kafak");
    assert_eq!(code, Some(2));
    assert!(err.contains("has no component `kafak` (did you mean `kafka`?)"), "{err}");
    let (code, err) = trace_error("examples/kafka-vpc.yaml", "kafka-events-1", "192.0.2.1", "kafka");
    assert_eq!(code, Some(2));
    assert!(err.contains("a component name works inbound only"), "{err}");
}
