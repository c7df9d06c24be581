//! The wire types against the running server: every body the CLI and the agent read
//! parses as its `fleetwall_api` type, prints as the API always printed it, and has the
//! fields the OpenAPI document gives it; a simulated agent reports the very hash the
//! server published, and the status view shows the node in sync with it.

use fleetwall_api as wire;
use fleetwall_api::http::Client;
use fleetwall_server::api;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{root, start};

fn load(c: &Client, file: &str) {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let r = c.request("PUT", "/v1/fleet", Some(("application/yaml", text.as_bytes()))).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return resolve(doc, doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("no schema {r}")));
    }
    match s.get("allOf").and_then(Value::as_array) {
        Some(all) if all.len() == 1 => resolve(doc, &all[0]),
        _ => s,
    }
}

/// Where `v` has a field the schema does not name, or lacks one it requires.
fn mismatches(doc: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let s = resolve(doc, schema);
    match v {
        Value::Object(o) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, x) in o {
                    match props.get(k) {
                        Some(p) => mismatches(doc, p, x, &format!("{at}.{k}"), out),
                        None => out.push(format!("{at}.{k}: not in the OpenAPI schema")),
                    }
                }
                for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
                    let r = r.as_str().unwrap();
                    if !o.contains_key(r) {
                        out.push(format!("{at}.{r}: required by the OpenAPI schema, not sent"));
                    }
                }
            } else if let Some(each) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, x) in o {
                    mismatches(doc, each, x, &format!("{at}.{k}"), out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.get("items") {
                for (i, x) in a.iter().enumerate() {
                    mismatches(doc, items, x, &format!("{at}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The 2xx response schema of `method template`.
fn response_schema<'a>(doc: &'a Value, method: &str, template: &str) -> &'a Value {
    let op = &doc["paths"][template][method.to_ascii_lowercase()];
    let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {template} not documented"));
    let ok = responses.iter().find(|(code, _)| code.starts_with('2')).map(|(_, r)| r).unwrap();
    &ok["content"]["application/json"]["schema"]
}

struct Checked {
    problems: Vec<String>,
}

impl Checked {
    /// GETs `path`, checks it against the OpenAPI schema of `template`, decodes it as `T`
    /// (losing no field) and, when `sorted`, checks its text is what printing it as a JSON
    /// value gives: the keys sorted, as the server printed it when it built it with `json!`.
    fn get<T: DeserializeOwned + Serialize>(&mut self, c: &Client, path: &str, template: &str, sorted: bool) -> T {
        let r = c.get(path).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let doc: Value = serde_json::from_str(&api::OPENAPI).unwrap();
        let v: Value = r.json_body().unwrap();
        mismatches(&doc, response_schema(&doc, "GET", template), &v, path, &mut self.problems);
        let text = r.text();
        if sorted {
            let as_value = format!("{}\n", serde_json::to_string_pretty(&v).unwrap());
            assert_eq!(text, as_value, "{path}: not printed with sorted keys");
        }
        let typed: T =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} as {}: {e}", std::any::type_name::<T>()));
        assert_eq!(serde_json::to_value(&typed).unwrap(), v, "{path}: the wire type does not hold all of it");
        typed
    }
}

#[test]
fn every_body_the_cli_reads_is_its_wire_type_byte_for_byte_and_as_documented() {
    let env = start("wire", None);
    let a = env.admin();
    load(&a, "examples/kafka-vpc.yaml");
    let token: wire::TokenCreated = {
        let body = wire::TokenCreate {
            kind: "agent".into(),
            project: None,
            node: Some("kafka-events-1".into()),
            name: None,
            expires_in_s: None,
        };
        let r = a.send_json("POST", "/v1/tokens", &body).unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        r.json_body().unwrap()
    };
    assert_eq!((token.kind.as_str(), token.scope.as_str()), ("agent", "kafka-events-1"));
    let mut c = Checked { problems: Vec::new() };
    let h: wire::Health = c.get(&a, "/healthz", "/healthz", true);
    assert_eq!(h.status, "ok");
    let f: wire::FleetRevision = c.get(&a, "/v1/fleet", "/v1/fleet", true);
    assert_eq!(f.revision, h.revision);
    let p: wire::ProjectList = c.get(&a, "/v1/projects", "/v1/projects", true);
    assert_eq!(p.projects[0].name, "acme-stream");
    assert_eq!((p.projects[0].base_port, p.projects[0].services, p.projects[0].vpcs), (Some(17000), 1, 1));
    let one: wire::Project = c.get(&a, "/v1/projects/acme-stream", "/v1/projects/{project}", true);
    assert_eq!(one, p.projects[0]);
    let v: wire::VpcList = c.get(&a, "/v1/projects/acme-stream/vpcs", "/v1/projects/{project}/vpcs", true);
    let vpc = &v.vpcs[0];
    assert_eq!(
        (vpc.name.as_str(), vpc.cloud(), vpc.network_cidr()),
        ("vpc-eu", "aws-eu-west-1".into(), "10.20.0.0/20".into())
    );
    assert_eq!(
        vpc.peerings(),
        vec![wire::Peering { peer_vpc: "vpc-0abc".into(), peer_cidrs: vec!["172.31.0.0/16".into()] }]
    );
    let one: wire::Vpc = c.get(&a, "/v1/projects/acme-stream/vpcs/vpc-eu", "/v1/projects/{project}/vpcs/{vpc}", true);
    assert_eq!(&one, vpc);
    let s: wire::ServiceList = c.get(&a, "/v1/projects/acme-stream/services", "/v1/projects/{project}/services", true);
    let svc = &s.services[0];
    assert_eq!((svc.service_type(), svc.vpc(), svc.ip_filter_len()), ("kafka".into(), "vpc-eu".into(), Some(3)));
    assert_eq!(svc.nodes().len(), 3);
    assert_eq!(svc.nodes()[0].1.public, vec!["203.0.113.21".to_string()]);
    assert!(svc.listeners.iter().any(|l| l.route == "privatelink" && l.protocol == "tcp"), "{:?}", svc.listeners);
    // The example's link came with the fleet file: in force, as its own resource says.
    assert_eq!(svc.privatelink_state.as_deref(), Some("active"));
    let one: wire::Service =
        c.get(&a, "/v1/projects/acme-stream/services/kafka-events", "/v1/projects/{project}/services/{service}", true);
    assert_eq!(&one, svc);
    let pl: wire::Privatelink = c.get(
        &a,
        "/v1/projects/acme-stream/services/kafka-events/privatelink/aws",
        "/v1/projects/{project}/services/{service}/privatelink/{provider}",
        true,
    );
    assert_eq!(pl.state, "active");
    assert_eq!(pl.principal_list(), vec!["arn:aws:iam::012345678901:user/mwf".to_string()]);
    let _: wire::PrivatelinkConnections = c.get(
        &a,
        "/v1/projects/acme-stream/services/kafka-events/privatelink/aws/connections",
        "/v1/projects/{project}/services/{service}/privatelink/{provider}/connections",
        true,
    );
    let st: wire::StatusView = c.get(&a, "/v1/status", "/v1/status", true);
    assert_eq!(st.nodes.len(), 3);
    assert!(st.nodes.iter().all(|n| n.state == wire::state::UNKNOWN && wire::is_hash(&n.desired_hash)));
    let audit: wire::AuditLog = c.get(&a, "/v1/audit?limit=10", "/v1/audit", true);
    let replace = audit.entries.iter().find(|e| e.action == "fleet.replace").unwrap();
    assert_eq!(replace.revision, Some(f.revision));
    assert_eq!(audit.entries.last().unwrap().action, "token.create");
    assert_eq!(audit.entries.last().unwrap().revision, None);
    let tokens: wire::TokenList = c.get(&a, "/v1/tokens", "/v1/tokens", true);
    assert!(tokens.tokens.iter().any(|t| t.id == token.id && t.state == "active"));
    // The ruleset is printed compact, straight from the IR (every agent fetches one at a
    // platform change), so not key-sorted; its meaning is its hash.
    let rs: wire::RulesetResponse = c.get(&a, "/v1/nodes/kafka-events-1/ruleset", "/v1/nodes/{node}/ruleset", false);
    assert_eq!(rs.hash, rs.ruleset.canonical_hash());
    assert_eq!(rs.revision, st.nodes[0].desired_revision);
    assert!(c.problems.is_empty(), "bodies and the OpenAPI document disagree:\n{}", c.problems.join("\n"));

    // Errors: the body is an ErrorBody, with the diagnostics of a refused write.
    let r = a
        .send_json(
            "PATCH",
            "/v1/projects/acme-stream/services/kafka-events/user_config",
            &serde_json::json!({ "config": ["ip_filter=['10.0.0.0/33']"] }),
        )
        .unwrap();
    let e = fleetwall_api::client::error_body(&r);
    assert_eq!(e.status, 400);
    let d = &e.diagnostics[0];
    assert_eq!(d.path.as_deref(), Some("projects.acme-stream.services.kafka-events.user_config.ip_filter[0]"));
    assert_eq!(d.location(), " at projects.acme-stream.services.kafka-events.user_config.ip_filter[0]");
    let text = r.text();
    assert_eq!(text, format!("{}\n", serde_json::to_string_pretty(&e).unwrap()), "an ErrorBody byte for byte");
    let file = "version: 1\nplatform: { management_gateways: [198.51.100.10] }\nprojects: {a: {base_port: 5}}\n";
    let r = a.request("PUT", "/v1/fleet", Some(("application/yaml", file.as_bytes()))).unwrap();
    let e = fleetwall_api::client::error_body(&r);
    let d = e.diagnostics.iter().find(|d| d.code == "base-port-range").unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!((d.line, d.file.as_deref(), d.severity.as_deref()), (Some(3), Some("fleet"), Some("error")));
    assert_eq!(d.location(), format!(" at line 3 column {}", d.col.unwrap()));
}

#[test]
fn a_simulated_agent_reports_the_hash_the_server_published() {
    let env = start("wire-agent", None);
    let a = env.admin();
    load(&a, "examples/kafka-vpc.yaml");
    let r =
        a.send_json("POST", "/v1/tokens", &serde_json::json!({ "kind": "agent", "node": "kafka-events-2" })).unwrap();
    let token: wire::TokenCreated = r.json_body().unwrap();
    let cfg = fleetwall_agent::Config {
        server: env.url(),
        node: "kafka-events-2".into(),
        token: token.token,
        ca: None,
        state_dir: None,
        resync: Duration::from_secs(60),
        poll: Duration::from_millis(200),
        gateways: Vec::new(),
    };
    let kernel = Box::<fleetwall_agent::Memory>::default();
    let mut agent = fleetwall_agent::Agent::new(cfg, kernel, Box::new(|_| {})).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let t = std::thread::spawn(move || agent.run(&s2));
    let api = wire::client::Api::new(a.clone());
    let published: wire::RulesetResponse = api.get("/v1/nodes/kafka-events-2/ruleset").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let node = loop {
        let st = api.status().unwrap();
        let n = st.nodes.into_iter().find(|n| n.node == "kafka-events-2").unwrap();
        if n.state == wire::state::IN_SYNC {
            break n;
        }
        assert!(Instant::now() < deadline, "never in sync: {n:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert_eq!(node.applied_hash.as_deref(), Some(published.hash.as_str()));
    assert_eq!(node.desired_hash, published.hash);
    assert_eq!(published.hash, published.ruleset.canonical_hash());
    assert_eq!(node.applied_revision, Some(published.revision));
}
