//! The control plane over real HTTP, on a real SQLite file (and PostgreSQL when the test
//! environment provides one: FLEETWALL_TEST_PG, set by scripts/test).

use fleetwall_api::http::Client;
use fleetwall_server::{api, ControlPlane};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

mod common;

use common::{catalog, root, start};

fn call(c: &Client, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let r = match body {
        Some(b) => c.send_json(method, path, &b).unwrap(),
        None => c.request(method, path, None).unwrap(),
    };
    let v = r.json_body().unwrap_or(Value::Null);
    (r.status, v)
}

/// Loads an example without its `tests:` (they pin the example's policy, which these
/// tests change on purpose).
fn put_fleet(c: &Client, file: &str) -> (u16, Value) {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let text = text.split("\ntests:").next().unwrap();
    put_text(c, text)
}

fn put_text(c: &Client, text: &str) -> (u16, Value) {
    let r = c.request("PUT", "/v1/fleet", Some(("application/yaml", text.as_bytes()))).unwrap();
    let v = r.json_body().unwrap_or(Value::Null);
    (r.status, v)
}

fn revision(c: &Client) -> i64 {
    call(c, "GET", "/v1/fleet", None).1["revision"].as_i64().unwrap()
}

#[test]
fn the_openapi_document_lists_exactly_the_served_routes() {
    let doc: Value = serde_json::from_str(&api::OPENAPI).unwrap();
    let mut listed: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for m in ops.as_object().unwrap().keys().filter(|k| *k != "parameters") {
            listed.push((m.to_uppercase(), path.clone()));
        }
    }
    listed.sort();
    let mut routes: Vec<(String, String)> = api::ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    routes.sort();
    assert_eq!(listed, routes);
    let env = start("openapi", None);
    let r = Client::new(&env.url(), None).unwrap().get("/openapi.json").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json_body::<Value>().unwrap()["openapi"], "3.1.0");
    assert_eq!(r.text(), api::OPENAPI.as_str(), "the served document is the one built from the types");
}

#[test]
fn a_rejected_write_changes_nothing_and_a_good_one_bumps_the_revision() {
    let env = start("reject", None);
    let a = env.admin();
    assert_eq!(put_fleet(&a, "examples/kafka-vpc.yaml").0, 200);
    let rev = revision(&a);
    let before = call(&a, "GET", "/v1/fleet", None).1;
    let audit_before = call(&a, "GET", "/v1/audit?limit=1000", None).1["entries"].as_array().unwrap().len();

    let svc = "/v1/projects/acme-stream/services/kafka-events";
    let (s, v) =
        call(&a, "PATCH", &format!("{svc}/user_config"), Some(json!({"config": ["ip_filter=['10.0.0.1/8']"]})));
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap().starts_with("Invalid 'user_config': Invalid input for ip_filter:"), "{v}");
    assert!(v["message"].as_str().unwrap().contains("10.0.0.0/8"), "the hint names the network: {v}");
    assert_eq!(v["diagnostics"][0]["path"], "projects.acme-stream.services.kafka-events.user_config.ip_filter[0]");
    // A node whose address is taken, a VPC nobody has, a bad fleet file: all rejected.
    let (s, _) = call(&a, "POST", &format!("{svc}/nodes"), Some(json!({"name": "k4", "private": "10.20.0.11"})));
    assert_eq!(s, 400);
    let (s, v) = call(
        &a,
        "POST",
        "/v1/projects/acme-stream/services",
        Some(
            json!({"name": "x", "type": "pg", "cloud": "aws-eu-west-1", "vpc": "vpc-nope", "nodes": {"x1": {"private": "10.20.0.99"}}}),
        ),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("vpc-nope"), "{v}");
    let r = a.request("PUT", "/v1/fleet", Some(("application/yaml", b"version: 1\nprojects: [\n"))).unwrap();
    assert_eq!(r.status, 400);
    let (s, v) = call(&a, "POST", "/v1/projects", Some(json!({"name": "acme-stream"})));
    assert_eq!((s, v["message"].as_str().unwrap()), (409, "project 'acme-stream' already exists"));

    assert_eq!(call(&a, "GET", "/v1/fleet", None).1, before, "rejected writes left the fleet as it was");
    assert_eq!(call(&a, "GET", "/v1/audit?limit=1000", None).1["entries"].as_array().unwrap().len(), audit_before);

    let (s, v) = call(
        &a,
        "PATCH",
        &format!("{svc}/user_config"),
        Some(
            json!({"config": ["ip_filter=['198.51.100.0/24']", "public_access.kafka=true"], "remove": ["privatelink_access"]}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["revision"].as_i64().unwrap(), rev + 1);
    assert_eq!(v["nodes_changed"], 3);
    assert_eq!(v["after"]["ip_filter"], json!(["198.51.100.0/24"]));
    assert_eq!(v["after"]["public_access"]["kafka"], json!(true));
}

#[test]
fn a_write_that_breaks_the_fleets_own_tests_is_refused() {
    let env = start("fleet-tests", None);
    let a = env.admin();
    let text = std::fs::read_to_string(root().join("examples/kafka-vpc.yaml")).unwrap();
    assert!(text.contains("\ntests:"));
    assert_eq!(put_text(&a, &text).0, 200);
    let rev = revision(&a);
    // The example's tests say 172.31.9.20 (over the peering) reaches kafka: narrowing the
    // ip_filter to the office would break that, as `fleetwall check` would say.
    let svc = "/v1/projects/acme-stream/services/kafka-events";
    let (s, v) =
        call(&a, "PATCH", &format!("{svc}/user_config"), Some(json!({"config": ["ip_filter=['198.51.100.0/24']"]})));
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("test fails: 172.31.9.20 -> kafka-events-1: accept kafka"), "{v}");
    assert_eq!(v["diagnostics"][0]["code"], "test");
    assert!(v["diagnostics"][0]["path"].as_str().unwrap().starts_with("tests[0]"), "{v}");
    assert_eq!(revision(&a), rev, "nothing stored");
    // The same through a whole new fleet (compiled and proven whole, in parts on every core).
    let broken = text.replace("172.31.8.0/21", "192.0.2.0/24");
    assert_ne!(broken, text);
    let (s, v) = put_text(&a, &broken);
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("test fails: 172.31.9.20 -> kafka-events-1"), "{v}");
    assert!(v["diagnostics"][0]["path"].as_str().unwrap().starts_with("tests[0]"), "{v}");
    assert_eq!(revision(&a), rev, "nothing stored");
    // A customer cannot see or change the fleet's tests: told which one and whose it is.
    let cust = env.client(&token(&a, json!({"kind": "project", "project": "acme-stream"})));
    let (s, v) =
        call(&cust, "PATCH", &format!("{svc}/user_config"), Some(json!({"config": ["ip_filter=['198.51.100.0/24']"]})));
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        v["diagnostics"][0]["message"],
        "the change fails the platform's fleet test tests[0], which only the platform operator can change",
        "{v}"
    );
    let (s, v) = call(
        &a,
        "PATCH",
        &format!("{svc}/user_config"),
        Some(json!({"config": ["ip_filter=['172.31.0.0/16','198.51.100.0/24']"]})),
    );
    assert_eq!(s, 200, "{v}");
}

#[test]
fn ports_never_move_once_assigned() {
    let env = start("ports", None);
    let a = env.admin();
    assert_eq!(put_fleet(&a, "examples/no-base-port.yaml").0, 200);
    let ports = |c: &Client| -> Vec<(String, String, u64)> {
        let v = call(c, "GET", "/v1/fleet", None).1;
        let mut out = Vec::new();
        for (p, proj) in v["fleet"]["projects"].as_object().unwrap() {
            for (s, svc) in proj["services"].as_object().unwrap() {
                for (k, port) in svc["ports"].as_object().unwrap() {
                    out.push((format!("{p}/{s}"), k.clone(), port.as_u64().unwrap()));
                }
            }
        }
        out
    };
    let first = ports(&a);
    assert!(!first.is_empty(), "allocated ports are persisted as pins");
    let proj =
        call(&a, "GET", "/v1/fleet", None).1["fleet"]["projects"].as_object().unwrap().keys().next().unwrap().clone();
    // A new service and a new component on an existing one: nothing already assigned moves.
    let (s, v) = call(
        &a,
        "POST",
        &format!("/v1/projects/{proj}/services"),
        Some(
            json!({"name": "extra-kafka", "type": "kafka", "cloud": "aws-eu-west-1", "nodes": {"xk1": {"private": "10.99.0.1", "public": "203.0.113.201"}}}),
        ),
    );
    assert_eq!(s, 201, "{v}");
    let after = ports(&a);
    for p in &first {
        assert!(after.contains(p), "{p:?} moved");
    }
    assert!(after.len() > first.len());
}

#[test]
fn tokens_scope_projects_and_nodes_and_the_audit_log_records_every_write() {
    let env = start("auth", None);
    let a = env.admin();
    assert_eq!(put_fleet(&a, "examples/kafka-vpc.yaml").0, 200);
    let (s, v) = call(&a, "POST", "/v1/projects", Some(json!({"name": "other"})));
    assert_eq!(s, 201, "{v}");
    let tok = |body: Value| call(&a, "POST", "/v1/tokens", Some(body)).1["token"].as_str().unwrap().to_string();
    let cust = env.client(&tok(json!({"kind": "project", "project": "acme-stream"})));
    let agent = env.client(&tok(json!({"kind": "agent", "node": "kafka-events-1"})));
    let anon = Client::new(&env.url(), None).unwrap();
    let bogus = env.client("fw_not-a-token");

    assert_eq!(call(&anon, "GET", "/v1/projects", None).0, 401);
    assert_eq!(call(&bogus, "GET", "/v1/projects", None).0, 401);
    let v = call(&cust, "GET", "/v1/projects", None).1;
    let names: Vec<&str> = v["projects"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme-stream"], "a customer sees only their project");
    assert_eq!(call(&cust, "GET", "/v1/projects/other", None).0, 403);
    assert_eq!(call(&cust, "POST", "/v1/projects/other/vpcs", Some(json!({"name": "v"}))).0, 403);
    assert_eq!(call(&cust, "GET", "/v1/audit", None).0, 403);
    assert_eq!(call(&cust, "GET", "/v1/fleet", None).0, 403);
    assert_eq!(call(&cust, "GET", "/v1/nodes/kafka-events-1/ruleset", None).0, 403);
    let (s, _) = call(
        &cust,
        "PATCH",
        "/v1/projects/acme-stream/services/kafka-events/user_config",
        Some(json!({"config": ["ip_filter=['198.51.100.0/24']"]})),
    );
    assert_eq!(s, 200, "a customer writes their own project");

    assert_eq!(call(&agent, "GET", "/v1/nodes/kafka-events-1/ruleset", None).0, 200);
    assert_eq!(call(&agent, "GET", "/v1/nodes/kafka-events-2/ruleset", None).0, 403);
    assert_eq!(call(&agent, "GET", "/v1/projects", None).1["projects"], json!([]));
    assert_eq!(
        call(
            &agent,
            "PUT",
            "/v1/nodes/kafka-events-2/status",
            Some(json!({"revision": 1, "hash": "0".repeat(64), "applied_ms": fleetwall_server::util::now_ms()}))
        )
        .0,
        403
    );
    assert_eq!(
        call(
            &agent,
            "PUT",
            "/v1/nodes/kafka-events-1/status",
            Some(json!({"revision": 1, "hash": "0".repeat(64), "applied_ms": fleetwall_server::util::now_ms()}))
        )
        .0,
        200
    );
    assert_eq!(
        call(
            &agent,
            "PATCH",
            "/v1/projects/acme-stream/services/kafka-events/user_config",
            Some(json!({"config": ["ip_filter=[]"]}))
        )
        .0,
        403
    );

    let entries = call(&a, "GET", "/v1/audit?limit=1000", None).1["entries"].as_array().unwrap().clone();
    let update = entries.iter().find(|e| e["action"] == "service.update").expect("the update is audited");
    assert_eq!(update["actor"], "project:acme-stream");
    assert_eq!(update["after"]["ip_filter"], json!(["198.51.100.0/24"]));
    assert_ne!(update["before"]["ip_filter"], update["after"]["ip_filter"]);
    assert!(update["at"].as_str().unwrap().ends_with('Z'));
    assert!(entries.iter().any(|e| e["action"] == "token.create" && e["after"]["scope"] == "kafka-events-1"));
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "append-only, gapless: {ids:?}");
    // The token itself is never stored or shown.
    assert!(!serde_json::to_string(&entries).unwrap().contains("fw_"));
}

#[test]
fn long_polls_wake_on_a_change_and_time_out_with_304() {
    let env = start("poll", None);
    let a = env.admin();
    assert_eq!(put_fleet(&a, "examples/kafka-vpc.yaml").0, 200);
    let first = call(&a, "GET", "/v1/nodes/kafka-events-2/ruleset", None).1;
    let rev = first["revision"].as_i64().unwrap();
    let t = Instant::now();
    let r = a
        .request_with_timeout(
            "GET",
            &format!("/v1/nodes/kafka-events-2/ruleset?after={rev}&wait=0.3"),
            None,
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(r.status, 304);
    assert!(t.elapsed() >= Duration::from_millis(290));
    let url = env.url();
    let token = env.admin.clone();
    let waiter = std::thread::spawn(move || {
        let c = Client::new(&url, None).unwrap().with_token(&token);
        let t = Instant::now();
        let r = c
            .request_with_timeout(
                "GET",
                &format!("/v1/nodes/kafka-events-2/ruleset?after={rev}&wait=20"),
                None,
                Duration::from_secs(30),
            )
            .unwrap();
        (r.status, r.json_body::<Value>().unwrap(), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    // Another service's change does not wake kafka-events-2; its own service's does.
    let (s, _) = call(
        &a,
        "POST",
        "/v1/projects/acme-stream/services/kafka-events/nodes",
        Some(json!({"name": "kafka-events-4", "private": ["10.20.0.14", "fd00:20::14"], "public": "203.0.113.24"})),
    );
    assert_eq!(s, 201);
    let (status, body, waited) = waiter.join().unwrap();
    assert_eq!(status, 200);
    assert!(body["revision"].as_i64().unwrap() > rev);
    assert!(waited < Duration::from_secs(5), "woken by the write, not the timeout: {waited:?}");
    let peers = serde_json::to_string(&body["ruleset"]).unwrap();
    assert!(peers.contains("10.20.0.14"), "the new peer is in the ruleset");
    // The hash the server sends is the hash of what an agent will load.
    let rs: fleetwall_ir::NodeRuleset = serde_json::from_value(body["ruleset"].clone()).unwrap();
    assert_eq!(fleetwall_agent::ruleset_hash(&rs), body["hash"].as_str().unwrap());
    assert_eq!(call(&a, "GET", "/v1/nodes/nope/ruleset", None).0, 404);
}

#[test]
fn privatelink_resources_move_from_creating_to_active_and_are_deleted() {
    let env = start("pl", None);
    let a = env.admin();
    assert_eq!(put_fleet(&a, "examples/kafka-vpc.yaml").0, 200);
    let svc = "/v1/projects/acme-stream/services/kafka-events";
    // The example has a resource already; privatelink_access needs it, so deleting is refused.
    let (s, v) = call(&a, "DELETE", &format!("{svc}/privatelink/aws"), None);
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        v["message"],
        "the aws private link of service 'kafka-events' is in use: privatelink_access.kafka is on; turn it off first (--remove-option privatelink_access)",
        "not 'create the private link first'"
    );
    let (s, _) = call(&a, "PATCH", &format!("{svc}/user_config"), Some(json!({"remove": ["privatelink_access"]})));
    assert_eq!(s, 200);
    let (s, v) = call(&a, "DELETE", &format!("{svc}/privatelink/aws"), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(call(&a, "GET", &format!("{svc}/privatelink/aws"), None).1["state"], "deleting");

    let (s, v) = call(
        &a,
        "POST",
        &format!("{svc}/privatelink/aws"),
        Some(json!({"principals": ["arn:aws:iam::012345678901:user/a"]})),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state"], "creating");
    assert!(v["aws_service_id"].as_str().unwrap().starts_with("vpce-svc-"));
    assert_eq!(call(&a, "POST", &format!("{svc}/privatelink/aws"), Some(json!({"principals": []}))).0, 409);
    let (s, v) = call(
        &a,
        "PUT",
        &format!("{svc}/privatelink/aws"),
        Some(json!({"principals": ["arn:aws:iam::012345678901:user/b", "arn:aws:iam::012345678901:user/c"]})),
    );
    assert_eq!(s, 200);
    assert_eq!(
        v["principals"],
        json!(["arn:aws:iam::012345678901:user/b", "arn:aws:iam::012345678901:user/c"]),
        "replaced whole"
    );
    assert_eq!(v["state"], "creating", "no node has applied it yet");
    // Every node's agent reports the desired ruleset: the resource is active.
    for n in ["kafka-events-1", "kafka-events-2", "kafka-events-3"] {
        let tok = call(&a, "POST", "/v1/tokens", Some(json!({"kind": "agent", "node": n}))).1["token"]
            .as_str()
            .unwrap()
            .to_string();
        let c = env.client(&tok);
        let d = call(&c, "GET", &format!("/v1/nodes/{n}/ruleset"), None).1;
        let (s, _) = call(
            &c,
            "PUT",
            &format!("/v1/nodes/{n}/status"),
            Some(json!({"revision": d["revision"], "hash": d["hash"], "applied_ms": fleetwall_server::util::now_ms()})),
        );
        assert_eq!(s, 200);
    }
    assert_eq!(call(&a, "GET", &format!("{svc}/privatelink/aws"), None).1["state"], "active");
    assert_eq!(call(&a, "GET", &format!("{svc}/privatelink/aws/connections"), None).1["connections"], json!([]));
    let status = call(&a, "GET", "/v1/status", None).1;
    assert!(status["nodes"].as_array().unwrap().iter().all(|n| n["state"] == "in-sync"), "{status}");
}

#[test]
fn https_with_a_certificate_and_key() {
    let dir = std::env::temp_dir().join(format!("fw-api-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .args(["-days", "2", "-subj", "/CN=fleetwall-test", "-addext", "subjectAltName=IP:127.0.0.1"])
        .output()
        .expect("openssl is needed for the TLS test (scripts/test installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cp = ControlPlane::open(dir.join("fleet.db").to_str().unwrap(), catalog()).unwrap();
    let tls = fleetwall_server::web::TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    let server = api::serve(cp, "127.0.0.1:0", Some(&tls)).unwrap();
    let url = format!("https://{}", server.local_addr());
    let c = Client::new(&url, Some(&dir.join("cert.pem"))).unwrap();
    let r = c.get("/healthz").unwrap();
    assert_eq!(r.status, 200);
    let plain =
        Client::new(&format!("http://{}", server.local_addr()), None).unwrap().with_timeout(Duration::from_secs(2));
    assert!(
        plain.get("/healthz").is_err() || plain.get("/healthz").unwrap().status >= 400,
        "plain http to a TLS port fails"
    );
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

fn pg_url() -> Option<String> {
    match std::env::var("FLEETWALL_TEST_PG") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("CI").is_some() => {
            panic!("POSTGRESQL TESTS CANNOT RUN: FLEETWALL_TEST_PG is not set (scripts/test starts PostgreSQL and sets it)")
        }
        _ => {
            eprintln!("!!!!!!!! PostgreSQL tests skipped: FLEETWALL_TEST_PG is not set; run scripts/test !!!!!!!!");
            None
        }
    }
}

fn pg_fresh_db(url: &str, name: &str) -> String {
    let mut c = postgres_admin(url);
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn postgres_admin(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

#[test]
fn two_replicas_on_one_postgresql_agree_and_both_wake_their_watchers() {
    let Some(url) = pg_url() else { return };
    let db = pg_fresh_db(&url, &format!("fw_replicas_{}", std::process::id()));
    let one = start("pg1", Some(db.clone()));
    // The second replica shares the store, so the first one's admin token works on it.
    let cp2 = ControlPlane::open(&db, catalog()).unwrap();
    let s2 = api::serve(cp2.clone(), "127.0.0.1:0", None).unwrap();
    let c1 = one.admin();
    let c2 = Client::new(&format!("http://{}", s2.local_addr()), None).unwrap().with_token(&one.admin);
    assert_eq!(put_fleet(&c1, "examples/kafka-vpc.yaml").0, 200);
    // Replica 2 answers the same.
    assert_eq!(call(&c1, "GET", "/v1/fleet", None).1, call(&c2, "GET", "/v1/fleet", None).1);
    let rev = call(&c2, "GET", "/v1/nodes/kafka-events-1/ruleset", None).1["revision"].as_i64().unwrap();
    // Watchers on both replicas wake on a write made through replica 1.
    let mut waiters = Vec::new();
    for base in [one.url(), format!("http://{}", s2.local_addr())] {
        let token = one.admin.clone();
        waiters.push(std::thread::spawn(move || {
            let c = Client::new(&base, None).unwrap().with_token(&token);
            let t = Instant::now();
            let r = c
                .request_with_timeout(
                    "GET",
                    &format!("/v1/nodes/kafka-events-1/ruleset?after={rev}&wait=20"),
                    None,
                    Duration::from_secs(30),
                )
                .unwrap();
            (r.status, r.json_body::<Value>().unwrap()["revision"].as_i64(), t.elapsed())
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (s, v) = call(
        &c1,
        "PATCH",
        "/v1/projects/acme-stream/services/kafka-events/user_config",
        Some(json!({"config": ["ip_filter=['198.51.100.0/24']"]})),
    );
    assert_eq!(s, 200, "{v}");
    let new_rev = v["revision"].as_i64().unwrap();
    for w in waiters {
        let (status, got, waited) = w.join().unwrap();
        assert_eq!((status, got), (200, Some(new_rev)));
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
    // Writes through either replica are serialized: revisions stay gapless.
    let (s, v) = call(&c2, "POST", "/v1/projects", Some(json!({"name": "second"})));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["revision"].as_i64().unwrap(), new_rev + 1);
    assert_eq!(call(&c1, "GET", "/v1/projects", None).1, call(&c2, "GET", "/v1/projects", None).1);
    assert_eq!(call(&c1, "GET", "/v1/status", None).1["revision"], json!(new_rev + 1));
    s2.shutdown();
}

/// Two tenants, each with one service of one node.
const TWO_TENANTS: &str = "version: 1
platform:
  management_gateways: [198.51.100.10]
projects:
  tenant-a:
    base_port: 12000
    services:
      db-a:
        type: pg
        cloud: aws-eu-west-1
        nodes:
          x: { public: [203.0.113.5] }
          a-2: { public: [203.0.113.6] }
  tenant-b:
    base_port: 13000
    services:
      db-b:
        type: pg
        cloud: aws-eu-west-1
        nodes:
          b-1: { public: [203.0.113.7] }
";

fn token(a: &Client, body: Value) -> String {
    let (s, v) = call(a, "POST", "/v1/tokens", Some(body));
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

#[test]
fn an_old_agent_token_cannot_read_a_new_node_of_the_same_name_in_another_project() {
    let env = start("reuse-node", None);
    let a = env.admin();
    assert_eq!(put_text(&a, TWO_TENANTS).0, 200);
    let old = env.client(&token(&a, json!({"kind": "agent", "node": "x"})));
    assert_eq!(call(&old, "GET", "/v1/nodes/x/ruleset", None).0, 200);
    // Project A deletes node x, project B creates a node x.
    assert_eq!(call(&a, "DELETE", "/v1/projects/tenant-a/services/db-a/nodes/x", None).0, 200);
    let (s, v) = call(
        &a,
        "POST",
        "/v1/projects/tenant-b/services/db-b/nodes",
        Some(json!({"name": "x", "public": "203.0.113.9"})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(&old, "GET", "/v1/nodes/x/ruleset", None);
    assert_eq!(s, 401, "A's old agent token reads B's ruleset: {v}");
    assert_eq!(v["message"], "this token's node 'x' was deleted");
    let report = json!({"revision": 1, "hash": "0".repeat(64), "applied_ms": 1});
    assert_eq!(call(&old, "PUT", "/v1/nodes/x/status", Some(report.clone())).0, 401, "and forges its status");
    // A token made for B's node works; the list shows the old one as orphaned.
    let new = env.client(&token(&a, json!({"kind": "agent", "node": "x"})));
    assert_eq!(call(&new, "GET", "/v1/nodes/x/ruleset", None).0, 200);
    let list = call(&a, "GET", "/v1/tokens", None).1;
    let states: Vec<&str> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["scope"] == "x")
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 2);
    assert!(states.contains(&"orphaned") && states.contains(&"active"), "{list}");
}

#[test]
fn a_deleted_projects_token_does_not_work_when_the_project_is_recreated() {
    let env = start("reuse-project", None);
    let a = env.admin();
    assert_eq!(put_text(&a, TWO_TENANTS).0, 200);
    assert_eq!(call(&a, "POST", "/v1/projects", Some(json!({"name": "gone"}))).0, 201);
    let cust = env.client(&token(&a, json!({"kind": "project", "project": "gone"})));
    assert_eq!(call(&cust, "GET", "/v1/projects/gone", None).0, 200);
    assert_eq!(call(&a, "DELETE", "/v1/projects/gone", None).0, 200);
    assert_eq!(call(&a, "POST", "/v1/projects", Some(json!({"name": "gone"}))).0, 201);
    let (s, v) = call(&cust, "GET", "/v1/projects/gone", None);
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["message"], "this token's project 'gone' was deleted");
    // A token made before its project exists belongs to the project created next.
    let early = env.client(&token(&a, json!({"kind": "project", "project": "later"})));
    assert_eq!(call(&a, "POST", "/v1/projects", Some(json!({"name": "later"}))).0, 201);
    assert_eq!(call(&early, "GET", "/v1/projects/later", None).0, 200);
}

#[test]
fn tokens_are_listed_revoked_at_once_and_expire() {
    let env = start("revoke", None);
    let a = env.admin();
    assert_eq!(put_text(&a, TWO_TENANTS).0, 200);
    let (s, made) = call(&a, "POST", "/v1/tokens", Some(json!({"kind": "project", "project": "tenant-a"})));
    assert_eq!(s, 201);
    let cust = env.client(made["token"].as_str().unwrap());
    assert_eq!(call(&cust, "GET", "/v1/projects/tenant-a", None).0, 200);
    let id = made["id"].as_str().unwrap();
    let list = call(&a, "GET", "/v1/tokens", None).1;
    let row = list["tokens"].as_array().unwrap().iter().find(|t| t["id"] == id).unwrap().clone();
    assert_eq!(
        (row["kind"].as_str(), row["scope"].as_str(), row["state"].as_str()),
        (Some("project"), Some("tenant-a"), Some("active"))
    );
    assert!(!list.to_string().contains("fw_"), "the list never shows a secret");
    // Revoked: refused on the very next request (nothing is cached).
    let (s, v) = call(&a, "DELETE", &format!("/v1/tokens/{id}"), None);
    assert_eq!((s, v["state"].as_str()), (200, Some("revoked")), "{v}");
    let (s, v) = call(&cust, "GET", "/v1/projects/tenant-a", None);
    assert_eq!((s, v["message"].as_str()), (401, Some("this token was revoked")));
    let audit = call(&a, "GET", "/v1/audit?limit=1000", None).1;
    assert!(
        audit["entries"].as_array().unwrap().iter().any(|e| e["action"] == "token.revoke"),
        "revocation is audited"
    );
    assert_eq!(call(&a, "DELETE", "/v1/tokens/nothex!!", None).0, 400);
    assert_eq!(call(&a, "DELETE", "/v1/tokens/00000000", None).0, 404);
    // The last admin token cannot be revoked (nobody could ever administer again).
    let admin_id = &fleetwall_server::util::sha256_hex(env.admin.as_bytes())[..12];
    assert_eq!(call(&a, "DELETE", &format!("/v1/tokens/{admin_id}"), None).0, 409);
    // Expiry.
    let short = env.client(&token(&a, json!({"kind": "agent", "node": "b-1", "expires_in_s": 1})));
    assert_eq!(call(&short, "GET", "/v1/nodes/b-1/ruleset", None).0, 200);
    std::thread::sleep(Duration::from_millis(1100));
    let (s, v) = call(&short, "GET", "/v1/nodes/b-1/ruleset", None);
    assert_eq!(s, 401);
    assert!(v["message"].as_str().unwrap().starts_with("this token expired at "), "{v}");
    for bad in [json!(0), json!(-5), json!("1d"), json!(1e12)] {
        let (s, _) = call(&a, "POST", "/v1/tokens", Some(json!({"kind": "admin", "name": "x", "expires_in_s": bad})));
        assert_eq!(s, 400, "expires_in_s {bad}");
    }
}

#[test]
fn a_revocation_on_one_replica_holds_on_the_other_at_once() {
    let Some(url) = pg_url() else { return };
    let db = pg_fresh_db(&url, &format!("fw_revoke_{}", std::process::id()));
    let one = start("pg-revoke", Some(db.clone()));
    let cp2 = ControlPlane::open(&db, catalog()).unwrap();
    let s2 = api::serve(cp2.clone(), "127.0.0.1:0", None).unwrap();
    let a = one.admin();
    assert_eq!(put_text(&a, TWO_TENANTS).0, 200);
    let (_, made) = call(&a, "POST", "/v1/tokens", Some(json!({"kind": "project", "project": "tenant-b"})));
    let on2 =
        Client::new(&format!("http://{}", s2.local_addr()), None).unwrap().with_token(made["token"].as_str().unwrap());
    assert_eq!(call(&on2, "GET", "/v1/projects/tenant-b", None).0, 200, "works on replica 2 (and is looked up there)");
    assert_eq!(call(&a, "DELETE", &format!("/v1/tokens/{}", made["id"].as_str().unwrap()), None).0, 200);
    assert_eq!(call(&on2, "GET", "/v1/projects/tenant-b", None).0, 401, "revoked on replica 1, refused on replica 2");
    s2.shutdown();
}

#[test]
fn a_rejected_write_by_one_tenant_names_nothing_of_another() {
    let env = start("disclosure", None);
    let a = env.admin();
    assert_eq!(put_text(&a, TWO_TENANTS).0, 200);
    let ta = env.client(&token(&a, json!({"kind": "project", "project": "tenant-a"})));
    let tb = env.client(&token(&a, json!({"kind": "project", "project": "tenant-b"})));
    let secret_names = ["tenant-b", "db-b", "b-1", "line"];
    // Tenant A takes B's address (the conflict lands on B's node), then B's node name.
    let attempts = [
        (
            &ta,
            "/v1/projects/tenant-a/services/db-a/nodes",
            json!({"name": "a-3", "public": "203.0.113.7"}),
            "address already in use",
        ),
        (
            &ta,
            "/v1/projects/tenant-a/services/db-a/nodes",
            json!({"name": "b-1", "public": "203.0.113.77"}),
            "node name already in use",
        ),
    ];
    for (who, path, body, expected) in attempts {
        let (s, v) = call(who, "POST", path, Some(body.clone()));
        assert_eq!(s, 400, "{body}: {v}");
        let text = v.to_string();
        // What the caller sent may come back; nothing else of the other tenant may.
        for name in secret_names.iter().filter(|n| !body.to_string().contains(*n)) {
            assert!(!text.contains(name), "{body}: the answer names '{name}' of the other tenant: {v}");
        }
        assert!(v["message"].as_str().unwrap().contains(expected), "{body}: {v}");
    }
    // B takes A's address: the conflict is on B's own new node; A is still not named.
    let (s, v) = call(
        &tb,
        "POST",
        "/v1/projects/tenant-b/services/db-b/nodes",
        Some(json!({"name": "b-2", "public": "203.0.113.5"})),
    );
    assert_eq!(s, 400);
    assert!(!v.to_string().contains("tenant-a") && !v.to_string().contains("\"x\""), "{v}");
    assert_eq!(v["diagnostics"][0]["message"], "address already in use");
    assert_eq!(v["diagnostics"][0]["path"], "projects.tenant-b.services.db-b.nodes.b-2.public[0]");
    // The admin still sees everything.
    let (s, v) = call(
        &a,
        "POST",
        "/v1/projects/tenant-a/services/db-a/nodes",
        Some(json!({"name": "a-3", "public": "203.0.113.7"})),
    );
    assert_eq!(s, 400);
    assert!(v.to_string().contains("b-1"), "{v}");
}

#[test]
fn status_reports_with_a_huge_hash_or_an_impossible_time_are_refused() {
    let env = start("report", None);
    let a = env.admin();
    assert_eq!(put_text(&a, TWO_TENANTS).0, 200);
    let agent = env.client(&token(&a, json!({"kind": "agent", "node": "b-1"})));
    let now = fleetwall_server::util::now_ms();
    let good = json!({"revision": 1, "hash": "a".repeat(64), "applied_ms": now, "error": null});
    assert_eq!(call(&agent, "PUT", "/v1/nodes/b-1/status", Some(good.clone())).0, 200);
    let with = |k: &str, v: Value| {
        let mut r = good.clone();
        r[k] = v;
        r
    };
    for (what, bad) in [
        ("a 1 MB hash", with("hash", json!("a".repeat(1 << 20)))),
        ("a hash that is not hex", with("hash", json!("g".repeat(64)))),
        ("applied_ms = i64::MIN", with("applied_ms", json!(i64::MIN))),
        ("applied_ms in a year", with("applied_ms", json!(now + 365 * 86_400_000))),
        ("a revision the store never had", with("revision", json!(99))),
        ("a negative revision", with("revision", json!(-1))),
        ("a 1 MB error", with("error", json!("e".repeat(1 << 20)))),
    ] {
        let (s, v) = call(&agent, "PUT", "/v1/nodes/b-1/status", Some(bad));
        assert_eq!(s, 400, "{what}: {v}");
        assert!(v["message"].as_str().unwrap().starts_with("invalid status report: "), "{what}: {v}");
    }
    let rows = call(&a, "GET", "/v1/status", None).1;
    let b1 = rows["nodes"].as_array().unwrap().iter().find(|n| n["node"] == "b-1").unwrap().clone();
    assert!(!b1.to_string().contains(&"a".repeat(65)), "nothing of the refused reports was stored: {b1}");
}

#[test]
fn reading_a_private_link_writes_nothing() {
    let env = start("pl-read", None);
    let a = env.admin();
    // The example without its private link, so one can be created.
    let text = std::fs::read_to_string(root().join("examples/kafka-vpc.yaml")).unwrap();
    let text: String = text
        .split("\ntests:")
        .next()
        .unwrap()
        .lines()
        .filter(|l| {
            !l.contains("privatelink_access") && !l.contains("privatelink:") && !l.contains("aws: { principals")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(put_text(&a, &text).0, 200);
    let svc = "/v1/projects/acme-stream/services/kafka-events";
    let pl = format!("{svc}/privatelink/aws");
    let (s, v) = call(&a, "POST", &pl, Some(json!({"principals": ["arn:aws:iam::012345678901:user/x"]})));
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(&a, "POST", &pl, Some(json!({"principals": ["arn:aws:iam::012345678901:user/x"]})));
    assert_eq!(s, 409);
    assert_eq!(
        v["message"], "service 'kafka-events' already has an aws private link (one endpoint service per service)",
        "not 'a aws'"
    );
    let db = env.dir.join("fleet.db");
    let sql = || rusqlite::Connection::open(&db).unwrap();
    let state = || sql().query_row("SELECT state FROM privatelinks", [], |r| r.get::<_, String>(0)).unwrap();
    assert_eq!(state(), "creating");
    // Every node in sync (recorded straight into the store, without the report path)...
    let nodes = ["kafka-events-1", "kafka-events-2", "kafka-events-3"];
    let now = fleetwall_server::util::now_ms();
    let mut last = Value::Null;
    for n in nodes {
        let d = call(&a, "GET", &format!("/v1/nodes/{n}/ruleset"), None).1;
        sql()
            .execute(
                "INSERT OR REPLACE INTO node_status (node, revision, hash, applied_at, applied_ms, error, reported_at) VALUES (?1, ?2, ?3, 'x', ?4, NULL, 'x')",
                rusqlite::params![n, d["revision"].as_i64().unwrap(), d["hash"].as_str().unwrap(), now],
            )
            .unwrap();
        last = json!({"revision": d["revision"], "hash": d["hash"], "applied_ms": now});
    }
    // ...a read reports the link active but leaves the row alone...
    assert_eq!(call(&a, "GET", &pl, None).1["state"], "active");
    assert_eq!(call(&a, "GET", svc, None).1["privatelink_state"], "active");
    assert_eq!(state(), "creating", "a GET wrote to the database");
    // ...and an agent's report settles it.
    let agent = env.client(&token(&a, json!({"kind": "agent", "node": "kafka-events-3"})));
    assert_eq!(call(&agent, "PUT", "/v1/nodes/kafka-events-3/status", Some(last)).0, 200);
    assert_eq!(state(), "active");
}

#[test]
fn an_edit_inside_a_project_written_as_null_was_a_500() {
    let env = start("null-project", None);
    let a = env.admin();
    let (s, v) = put_text(&a, "version: 1\nplatform:\n  management_gateways: [198.51.100.10]\nprojects:\n  empty: ~\n");
    assert_eq!(s, 200, "{v}");
    let body =
        json!({"name": "db", "type": "pg", "cloud": "aws-eu-west-1", "nodes": {"db-1": {"public": ["203.0.113.5"]}}});
    let (s, v) = call(&a, "POST", "/v1/projects/empty/services", Some(body));
    assert_eq!(s, 201, "{v}");
}

#[test]
fn backup_keys_are_made_with_the_service_agents_read_the_public_key_and_only_admins_the_private_one() {
    use fleetwall_backup::{Format, PrivateKey, PublicKey};
    let env = start("backup-keys", None);
    let a = env.admin();
    assert_eq!(put_text(&a, TWO_TENANTS).0, 200);
    let body =
        json!({"name": "db-c", "type": "pg", "cloud": "aws-eu-west-1", "nodes": {"c-1": {"public": ["203.0.113.8"]}}});
    assert_eq!(call(&a, "POST", "/v1/projects/tenant-a/services", Some(body)).0, 201);
    let entries = || call(&a, "GET", "/v1/audit?limit=1000", None).1["entries"].as_array().unwrap().clone();
    assert!(
        entries().iter().any(|e| e["action"] == "backup.key.create" && e["target"] == "/projects/tenant-a/services/db-c/backup-key"),
        "the key is made with the service"
    );
    let ta = env.client(&token(&a, json!({"kind": "project", "project": "tenant-a"})));
    let tb = env.client(&token(&a, json!({"kind": "project", "project": "tenant-b"})));
    let key = "/v1/projects/tenant-a/services/db-c/backup-key";
    let (s, public) = call(&ta, "GET", key, None);
    assert_eq!(s, 200, "{public}");
    assert!(public.get("private_key").is_none(), "{public}");
    let pk = PublicKey::from_pem(public["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(pk.bits(), 3072);
    assert_eq!(call(&ta, "GET", &format!("{key}?private=true"), None).0, 403, "a customer never reads the private key");
    assert_eq!(call(&tb, "GET", key, None).0, 403, "nor another tenant the public one");
    let reads_before = entries().iter().filter(|e| e["action"] == "backup.key.read-private").count();
    let (s, private) = call(&a, "GET", &format!("{key}?private=true"), None);
    assert_eq!(s, 200);
    assert_eq!(
        entries().iter().filter(|e| e["action"] == "backup.key.read-private").count(),
        reads_before + 1,
        "audited"
    );
    // The pair works: what the public key encrypts, the private key decrypts.
    let sk = PrivateKey::from_pem(private["private_key"].as_str().unwrap()).unwrap();
    let mut sealed = Vec::new();
    fleetwall_backup::encrypt(Format::Fleetwall, &pk, &b"base backup"[..], &mut sealed).unwrap();
    let mut plain = Vec::new();
    fleetwall_backup::decrypt(&sk, None, std::io::Cursor::new(sealed), &mut plain).unwrap();
    assert_eq!(plain, b"base backup");
    // A node's agent reads its own service's public key (made on first use for a service
    // from a fleet file), and no other node's.
    let agent = env.client(&token(&a, json!({"kind": "agent", "node": "b-1"})));
    let (s, mine) = call(&agent, "GET", "/v1/nodes/b-1/backup-key", None);
    assert_eq!((s, mine["service"].as_str()), (200, Some("db-b")), "{mine}");
    assert_eq!(call(&agent, "GET", "/v1/nodes/x/backup-key", None).0, 403);
    assert_eq!(
        call(&a, "GET", "/v1/projects/tenant-b/services/db-b/backup-key", None).1["public_key"],
        mine["public_key"]
    );
    assert_eq!(call(&a, "GET", &format!("{key}?private=yes"), None).0, 400);
}

#[test]
fn deleting_a_vpc_in_use_said_unknown_vpc() {
    let env = start("vpc-in-use", None);
    let a = env.admin();
    assert_eq!(put_fleet(&a, "examples/kafka-vpc.yaml").0, 200);
    let (s, v) = call(&a, "DELETE", "/v1/projects/acme-stream/vpcs/vpc-eu", None);
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        v["message"],
        "VPC 'vpc-eu' is in use by service(s) kafka-events: delete them or move them out of the VPC first"
    );
}

#[test]
fn the_openapi_user_config_example_was_refused() {
    let env = start("openapi-example", None);
    let a = env.admin();
    assert_eq!(put_fleet(&a, "examples/kafka-vpc.yaml").0, 200);
    let doc: Value = serde_json::from_str(&api::OPENAPI).unwrap();
    let example = doc["components"]["schemas"]["UserConfigEdit"]["example"].clone();
    let (s, v) = call(&a, "PATCH", "/v1/projects/acme-stream/services/kafka-events/user_config", Some(example));
    assert_eq!(s, 200, "the documented example applies to the example fleet: {v}");
}

#[test]
fn the_openapi_write_examples_are_accepted_as_documented() {
    let doc: Value = serde_json::from_str(&api::OPENAPI).unwrap();
    let example = |schema: &str| doc["components"]["schemas"][schema]["example"].clone();
    let env = start("openapi-writes", None);
    let a = env.admin();
    let yaml = doc["paths"]["/v1/fleet"]["put"]["requestBody"]["content"]["application/yaml"]["example"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = put_text(&a, &yaml);
    assert_eq!(s, 200, "the fleet file example: {v}");
    let (s, v) = call(&a, "POST", "/v1/projects", Some(example("ProjectCreate")));
    assert_eq!((s, v["message"].as_str()), (409, Some("project 'acme-prod' already exists")), "{v}");
    let (s, v) = call(&a, "DELETE", "/v1/projects/acme-prod", None);
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(&a, "POST", "/v1/projects", Some(example("ProjectCreate")));
    assert_eq!(s, 201, "the project example: {v}");
    let (s, v) = call(&a, "POST", "/v1/projects/acme-prod/vpcs", Some(example("VpcCreate")));
    assert_eq!(s, 201, "the VPC example: {v}");
    let (s, v) = call(&a, "POST", "/v1/projects/acme-prod/vpcs/vpc-eu/peerings", Some(example("Peering")));
    assert_eq!(s, 201, "the peering example: {v}");
    let (s, v) = call(&a, "POST", "/v1/projects/acme-prod/services", Some(example("ServiceCreate")));
    assert_eq!(s, 201, "the service example: {v}");
    let (s, v) = call(&a, "POST", "/v1/projects/acme-prod/services/pg-main/nodes", Some(example("NodeCreate")));
    assert_eq!(s, 201, "the node example: {v}");
    let link = "/v1/projects/acme-prod/services/pg-main/privatelink/aws";
    let (s, v) = call(&a, "POST", link, Some(example("PrivatelinkPrincipals")));
    assert_eq!(s, 201, "the principals example: {v}");
    let (s, v) = call(&a, "POST", "/v1/tokens", Some(example("TokenCreate")));
    assert_eq!((s, v["scope"].as_str()), (201, Some("pg-main-1")), "the token example: {v}");
}

#[test]
fn a_private_link_connection_is_active_once_every_node_enforces_its_port() {
    let env = start("plc", None);
    let a = env.admin();
    assert_eq!(put_fleet(&a, "examples/kafka-vpc.yaml").0, 200);
    let pl = "/v1/projects/acme-stream/services/kafka-events/privatelink/aws";
    let reg = |id: &str| json!({"privatelink_connection_id": id, "vpc_endpoint_id": "vpce-0123", "dns_name": "e.example", "address": "10.20.15.7"});
    let (s, v) = call(&a, "POST", &format!("{pl}/connections"), Some(reg("Not_An_Id")));
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().starts_with("invalid privatelink_connection_id 'Not_An_Id'"), "{v}");
    let project = env.client(&token(&a, json!({"kind": "project", "project": "acme-stream"})));
    assert_eq!(call(&project, "POST", &format!("{pl}/connections"), Some(reg("plc-1"))).0, 403);
    let rev = revision(&a);
    let (s, v) = call(&a, "POST", &format!("{pl}/connections"), Some(reg("plc-1")));
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v,
        json!({"address": "10.20.15.7", "dns_name": "e.example", "host": "privatelink-1-kafka-events-acme-stream",
            "ports": {"kafka": 10000}, "privatelink_connection_id": "plc-1", "state": "connected", "vpc_endpoint_id": "vpce-0123"})
    );
    assert_eq!(revision(&a), rev + 1, "one write");
    let (s, v) =
        call(&a, "POST", &format!("{pl}/connections/plc-1/approve"), Some(json!({"user_ip_address": "10.0.0.1"})));
    assert_eq!(s, 400, "AWS needs no approval: {v}");
    // Not in force on the nodes yet: refresh leaves it connected.
    let (s, v) = call(&project, "POST", &format!("{pl}/refresh"), None);
    assert_eq!((s, &v["connections"][0]["state"]), (200, &json!("connected")), "{v}");
    for n in ["kafka-events-1", "kafka-events-2", "kafka-events-3"] {
        let c = env.client(&token(&a, json!({"kind": "agent", "node": n})));
        let d = call(&c, "GET", &format!("/v1/nodes/{n}/ruleset"), None).1;
        let rule =
            d["ruleset"]["input"].as_array().unwrap().iter().find(|r| r["id"] == "client-kafka-privatelink-plc-1-v4");
        assert_eq!(rule.unwrap()["match"]["l4"]["ports"], json!([10000]), "{n}");
        let report =
            json!({"revision": d["revision"], "hash": d["hash"], "applied_ms": fleetwall_server::util::now_ms()});
        assert_eq!(call(&c, "PUT", &format!("/v1/nodes/{n}/status"), Some(report)).0, 200);
    }
    let (s, v) = call(&project, "POST", &format!("{pl}/refresh"), None);
    assert_eq!((s, &v["connections"][0]["state"]), (200, &json!("active")), "{v}");
    // It is part of the fleet document, as a fleet file writes it.
    let yaml = a.get("/v1/fleet?format=yaml").unwrap().text();
    assert!(yaml.contains("plc-1") && yaml.contains("privatelink-1-kafka-events-acme-stream"), "{yaml}");
    let (s, v) = put_text(&a, &yaml);
    assert_eq!(s, 200, "the document read back as a fleet file is the same fleet: {v}");
    let (s, v) = call(&a, "DELETE", &format!("{pl}/connections/plc-1"), None);
    assert_eq!((s, v["state"].as_str()), (200, Some("active")), "{v}");
    assert_eq!(call(&a, "GET", &format!("{pl}/connections"), None).1["connections"], json!([]));
    assert_eq!(call(&a, "DELETE", &format!("{pl}/connections/plc-1"), None).0, 404);
}
