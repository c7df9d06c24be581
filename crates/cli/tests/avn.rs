//! The managed platform's own CLI, `avn` (`aiven-client` from PyPI, in a private virtualenv),
//! unchanged against a `fleetwall serve` on loopback: every command of seed 002's walk
//! through private links, what it prints, and the firewall that results on the nodes.
//! A venv that cannot be made fails the test (no silent pass).

mod common;

use common::{free_port, Scratch, Serve};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The release of `aiven-client` whose requests and shapes `crates/server/src/avn.rs` follows.
const AIVEN_CLIENT: &str = "aiven-client==4.18.0";

/// The venv's `avn`, made once under the target directory (`FLEETWALL_AVN_VENV` to reuse one).
fn avn_bin() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::env::var_os("FLEETWALL_AVN_VENV")
            .map_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("avn-venv"), PathBuf::from);
        let avn = dir.join("bin/avn");
        let works = |p: &Path| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success());
        if works(&avn) {
            return avn;
        }
        let step = |cmd: &mut Command, what: &str| {
            let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
            assert!(
                out.status.success(),
                "the platform's CLI is needed for this test; {what} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        step(
            Command::new("python3").args(["-m", "venv"]).arg(&dir),
            "python3 -m venv (Debian: apt-get install python3-venv)",
        );
        step(Command::new(dir.join("bin/pip")).args(["install", "--quiet", AIVEN_CLIENT]), "pip install aiven-client");
        assert!(works(&avn), "avn does not run from {} after pip install", dir.display());
        avn
    })
}

const FLEET: &str = r#"version: 1
platform:
  management_gateways: [198.51.100.10, 198.51.100.11, 198.51.100.12, 198.51.100.13]
projects:
  acme-stream:
    base_port: 17000
    vpcs:
      vpc-eu:
        cloud: aws-eu-west-1
        network_cidr: 10.20.0.0/20
        privatelink_cidrs: [10.20.15.0/24]
        peerings:
          - { peer_vpc: vpc-0abc, peer_cidrs: [172.31.0.0/16] }
      vpc-az:
        cloud: azure-westeurope
        network_cidr: 10.40.0.0/20
      vpc-gcp:
        cloud: google-europe-west1
        network_cidr: 10.50.0.0/20
    services:
      kafka-events:
        type: kafka
        cloud: aws-eu-west-1
        vpc: vpc-eu
        nodes:
          kafka-events-1: { private: [10.20.0.11], public: 203.0.113.21 }
          kafka-events-2: { private: [10.20.0.12], public: 203.0.113.22 }
          kafka-events-3: { private: [10.20.0.13], public: 203.0.113.23 }
      kafka-az:
        type: kafka
        cloud: azure-westeurope
        vpc: vpc-az
        nodes:
          kafka-az-1: { private: [10.40.0.11], public: 203.0.113.41 }
      kafka-gcp:
        type: kafka
        cloud: google-europe-west1
        vpc: vpc-gcp
        nodes:
          kafka-gcp-1: { private: [10.50.0.11], public: 203.0.113.51 }
  other:
    services:
      pg-other:
        type: pg
        cloud: aws-eu-west-1
        nodes:
          pg-other-1: { private: [10.99.0.11], public: 203.0.113.99 }
"#;

struct Platform {
    server: String,
    home: PathBuf,
    dir: PathBuf,
}

impl Platform {
    /// Runs `avn --url SERVER --auth-token TOKEN ARGS` with a HOME of its own (nothing of
    /// the machine's user is read or written).
    fn avn(&self, token: &str, args: &[&str]) -> Output {
        Command::new(avn_bin())
            .args(["--url", &self.server, "--auth-token", token])
            .args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.home)
            .env_remove("AIVEN_AUTH_TOKEN")
            .env_remove("AIVEN_CONFIG_DIR")
            .env_remove("AIVEN_CREDENTIALS_FILE")
            .env_remove("AIVEN_PROJECT")
            .output()
            .unwrap()
    }

    /// `avn ARGS` that must succeed; its stdout.
    fn ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.avn(token, args);
        assert!(
            out.status.success(),
            "avn {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `avn ARGS` that must fail; its stderr.
    fn fails(&self, token: &str, args: &[&str]) -> String {
        let out = self.avn(token, args);
        assert_eq!(out.status.code(), Some(1), "avn {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }

    fn json(&self, token: &str, args: &[&str]) -> Value {
        let text = self.ok(token, args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("avn {args:?} printed no JSON ({e}): {text}"))
    }

    /// The ruleset the server hands node `n`'s agent.
    fn ruleset(&self, admin: &str, n: &str) -> Value {
        let c = fleetwall_api::http::Client::new(&self.server, None).unwrap().with_token(admin);
        let r = c.get(&format!("/v1/nodes/{n}/ruleset")).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json_body::<Value>().unwrap()["ruleset"].clone()
    }
}

impl Platform {
    /// The cloud side registers an endpoint connection with fleetwall's own API.
    fn register(&self, token: &str, service: &str, provider: &str, id: &str, address: &str) -> (u16, Value) {
        let c = fleetwall_api::http::Client::new(&self.server, None).unwrap().with_token(token);
        let body = serde_json::json!({
            "privatelink_connection_id": id,
            "vpc_endpoint_id": format!("vpce-{id}"),
            "dns_name": format!("{id}.endpoint.example"),
            "address": address,
        });
        let path = format!("/v1/projects/acme-stream/services/{service}/privatelink/{provider}/connections");
        let r = c.send_json("POST", &path, &body).unwrap();
        (r.status, serde_json::from_str(&r.text()).unwrap_or(Value::Null))
    }

    fn unregister(&self, token: &str, service: &str, provider: &str, id: &str) -> u16 {
        let c = fleetwall_api::http::Client::new(&self.server, None).unwrap().with_token(token);
        let path = format!("/v1/projects/acme-stream/services/{service}/privatelink/{provider}/connections/{id}");
        c.request("DELETE", &path, None).unwrap().status
    }
}

/// The ports of a ruleset's rule `id` (empty when there is no such rule).
fn rule_ports(ruleset: &Value, id: &str) -> Vec<u64> {
    rule(ruleset, id)
        .map(|r| r["match"]["l4"]["ports"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect())
        .unwrap_or_default()
}

/// The rule called `id` of a ruleset's input chain, if any.
fn rule<'a>(ruleset: &'a Value, id: &str) -> Option<&'a Value> {
    ruleset["input"].as_array().unwrap().iter().find(|r| r["id"] == id)
}

/// The elements of the set called `name`.
fn set_elements(ruleset: &Value, name: &str) -> Vec<String> {
    let sets = ruleset["sets"].as_array().unwrap();
    let set = sets.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no set {name}"));
    set["elements"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect()
}

/// A table row of avn's output whose first cell is `first`, split into cells.
fn row(table: &str, first: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first}:\n{table}"));
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_platforms_own_client_drives_serve_unchanged() {
    let avn = avn_bin().clone();
    let scratch = Scratch::new("avn");
    let fleet = scratch.0.join("fleet.yaml");
    std::fs::write(&fleet, FLEET).unwrap();
    let home = scratch.0.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let _serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_fleetwall"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--fleet", fleet.to_str().unwrap()])
            .current_dir(&scratch.0)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let token_file = scratch.0.join(".fleetwall/admin.token");
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = fleetwall_api::http::Client::new(&server, None).unwrap();
    while !token_file.exists() || !health.get("/healthz").is_ok_and(|r| r.status == 200) {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let admin = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    let pf = Platform { server: server.clone(), home: home.clone(), dir: scratch.0.clone() };
    assert!(avn.exists());

    // A customer's project token, in the platform's `aivenv1` scheme.
    let made = Command::new(env!("CARGO_BIN_EXE_fleetwall"))
        .args(["--server", &server, "--token", &admin, "token", "create", "--project", "acme-stream"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let tok = String::from_utf8(made.stdout).unwrap().trim().to_string();
    let pr = ["--project", "acme-stream"];
    let with = |args: &[&'static str]| -> Vec<&str> { args.iter().copied().chain(pr.iter().copied()).collect() };

    // service list / get: the platform's table, fleetwall's values, null where it has none.
    let list = pf.ok(&tok, &with(&["service", "list"]));
    assert!(list.starts_with("SERVICE_NAME  SERVICE_TYPE  STATE"), "{list}");
    assert_eq!(row(&list, "kafka-events")[..4], ["kafka-events", "kafka", "null", "aws-eu-west-1"], "{list}");
    let got = pf.ok(&tok, &with(&["service", "get", "kafka-events"]));
    assert_eq!(row(&got, "kafka-events")[..2], ["kafka-events", "kafka"], "{got}");
    let svc = pf.json(&tok, &with(&["service", "get", "kafka-events", "--json"]));
    assert_eq!(svc["project_vpc_id"], "vpc-eu");
    assert_eq!(svc["node_count"], 3);
    assert_eq!(svc["plan"], Value::Null, "fleetwall has no plans: null, not made up");
    // Another project's service is not this token's.
    let other = pf.fails(&tok, &["service", "get", "pg-other", "--project", "other"]);
    assert!(other.contains("may not access project 'other'") && other.contains("(status 403)"), "{other}");

    // service update -c ip_filter=[…]: the typed write, its result on every node.
    pf.ok(&tok, &with(&["service", "update", "-c", "ip_filter=['10.20.0.0/16','172.31.8.0/21']", "kafka-events"]));
    let svc = pf.json(&tok, &with(&["service", "get", "kafka-events", "--json"]));
    assert_eq!(svc["user_config"]["ip_filter"], serde_json::json!(["10.20.0.0/16", "172.31.8.0/21"]));
    for n in ["kafka-events-1", "kafka-events-2", "kafka-events-3"] {
        // ip_filter within the VPC and its peering.
        assert_eq!(set_elements(&pf.ruleset(&admin, n), "vpcf4"), ["10.20.0.0/20", "172.31.8.0/21"], "{n}");
    }
    // A refused write reaches the avn user as fleetwall's validation message.
    let bad = pf.fails(&tok, &with(&["service", "update", "-c", "ip_filter=['10.0.0.1/8']", "kafka-events"]));
    assert!(
        bad.contains("Service 'acme-stream/kafka-events' update failed: Invalid 'user_config': Invalid input for ip_filter: the address has bits set after the prefix length")
            && bad.contains("did you mean the network 10.0.0.0/8?"),
        "{bad}"
    );
    let early = pf.fails(&tok, &with(&["service", "update", "-c", "privatelink_access.kafka=true", "kafka-events"]));
    assert!(early.contains("update failed: Invalid 'user_config'") && early.contains("privatelink"), "{early}");
    let unknown = pf.fails(&tok, &with(&["service", "update", "-c", "privatelink_access.kafkaa=true", "kafka-events"]));
    assert!(unknown.contains("Unsupported option 'privatelink_access.kafkaa'"), "the schema's keys: {unknown}");

    // service privatelink aws create | get | update | connection list.
    let arn = "arn:aws:iam::012345678901:user/mwf";
    let created = pf.ok(&tok, &with(&["service", "privatelink", "aws", "create", "--principal", arn, "kafka-events"]));
    assert!(created.starts_with("AWS_SERVICE_ID"), "{created}");
    assert!(created.contains(arn) && created.contains("creating"), "{created}");
    let second = pf.fails(
        &tok,
        &with(&["service", "privatelink", "azure", "create", "--user-subscription-id", "sub-1", "kafka-events"]),
    );
    assert!(second.contains("one endpoint service per service") && second.contains("(status 409)"), "{second}");
    let got = pf.json(&tok, &with(&["service", "privatelink", "aws", "get", "kafka-events", "--json"]));
    assert_eq!(got[0]["principals"], serde_json::json!([arn]));
    assert!(got[0]["aws_service_name"].as_str().unwrap().starts_with("com.amazonaws.vpce.eu-west-1.vpce-svc-"));
    let arn2 = "arn:aws:iam::012345678901:role/app";
    let updated = pf.ok(&tok, &with(&["service", "privatelink", "aws", "update", "--principal", arn2, "kafka-events"]));
    assert!(updated.contains(arn2) && !updated.contains(arn), "{updated}");
    let conns =
        pf.json(&tok, &with(&["service", "privatelink", "aws", "connection", "list", "kafka-events", "--json"]));
    assert_eq!(conns, serde_json::json!([]));

    // service update -c privatelink_access.kafka=true: the privatelink route opens on
    // every node, on the port the service lists for it, to the VPC's private-link CIDRs.
    pf.ok(&tok, &with(&["service", "update", "-c", "privatelink_access.kafka=true", "kafka-events"]));
    let svc = pf.json(&tok, &with(&["service", "get", "kafka-events", "--json"]));
    assert_eq!(svc["user_config"]["privatelink_access"], serde_json::json!({"kafka": true}));
    for (n, addr) in
        [("kafka-events-1", "10.20.0.11"), ("kafka-events-2", "10.20.0.12"), ("kafka-events-3", "10.20.0.13")]
    {
        let listed: Vec<u64> = svc["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["route"] == "privatelink" && c["component"] == "kafka" && c["host"] == addr)
            .map(|c| c["port"].as_u64().unwrap())
            .collect();
        assert_eq!(listed.len(), 1, "{n}: {svc}");
        let rs = pf.ruleset(&admin, n);
        let r = rule(&rs, "client-kafka-privatelink-v4").unwrap_or_else(|| panic!("{n}: no privatelink rule"));
        assert_eq!(r["match"]["l4"]["ports"], serde_json::json!(listed), "{n}");
        assert_eq!(r["match"]["daddr"]["list"], serde_json::json!([format!("{addr}/32")]), "{n}");
        assert_eq!(r["match"]["saddr"]["set"], "pl4");
        assert_eq!(set_elements(&rs, "pl4"), ["10.20.15.0/24"], "{n}");
    }

    // Connections: the cloud side registers two endpoints (admin only); each gets its own
    // host and broker port from the pool, and every node opens exactly those.
    let (st, denied) = pf.register(&tok, "kafka-events", "aws", "plc-a", "10.20.15.7");
    assert_eq!(st, 403, "a customer does not register endpoints: {denied}");
    let (st, a) = pf.register(&admin, "kafka-events", "aws", "plc-a", "10.20.15.7");
    assert_eq!(st, 201, "{a}");
    assert_eq!(a["host"], "privatelink-1-kafka-events-acme-stream");
    assert_eq!(a["ports"], serde_json::json!({"kafka": 10000}));
    assert_eq!(a["state"], "connected", "AWS: the principals approve it");
    let (st, b) = pf.register(&admin, "kafka-events", "aws", "plc-b", "10.20.15.8");
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["host"], "privatelink-2-kafka-events-acme-stream");
    assert_eq!(b["ports"], serde_json::json!({"kafka": 10001}));
    let (st, again) = pf.register(&admin, "kafka-events", "aws", "plc-a", "10.20.15.9");
    assert_eq!(st, 409, "{again}");
    let listed = pf.ok(&tok, &with(&["service", "privatelink", "aws", "connection", "list", "kafka-events"]));
    assert!(listed.starts_with("DNS_NAME"), "{listed}");
    assert_eq!(row(&listed, "plc-a.endpoint.example"), ["plc-a.endpoint.example", "plc-a", "connected", "vpce-plc-a"]);
    assert_eq!(row(&listed, "plc-b.endpoint.example")[1], "plc-b");
    for n in ["kafka-events-1", "kafka-events-2", "kafka-events-3"] {
        let rs = pf.ruleset(&admin, n);
        assert_eq!(rule_ports(&rs, "client-kafka-privatelink-plc-a-v4"), [10000], "{n}");
        assert_eq!(rule_ports(&rs, "client-kafka-privatelink-plc-b-v4"), [10001], "{n}");
        assert_eq!(rule(&rs, "client-kafka-privatelink-plc-a-v4").unwrap()["match"]["saddr"]["set"], "pl4");
    }
    let svc = pf.json(&tok, &with(&["service", "get", "kafka-events", "--json"]));
    let own: Vec<&Value> =
        svc["components"].as_array().unwrap().iter().filter(|c| !c["privatelink_connection_id"].is_null()).collect();
    let conn_a = serde_json::json!({"component": "kafka", "host": "privatelink-1-kafka-events-acme-stream",
        "port": 10000, "privatelink_connection_id": "plc-a", "route": "privatelink"});
    let conn_b = serde_json::json!({"component": "kafka", "host": "privatelink-2-kafka-events-acme-stream",
        "port": 10001, "privatelink_connection_id": "plc-b", "route": "privatelink"});
    assert_eq!(own, [&conn_a, &conn_b]);
    // Without agents the nodes never report the rulesets in force: refresh keeps them connected.
    pf.ok(&tok, &with(&["service", "privatelink", "aws", "refresh", "kafka-events"]));
    let listed = pf.ok(&tok, &with(&["service", "privatelink", "aws", "connection", "list", "kafka-events"]));
    assert_eq!(row(&listed, "plc-a.endpoint.example")[2], "connected");
    // Removing a connection closes its port and leaves the other's where it was.
    assert_eq!(pf.unregister(&tok, "kafka-events", "aws", "plc-a"), 403);
    assert_eq!(pf.unregister(&admin, "kafka-events", "aws", "plc-a"), 200);
    for n in ["kafka-events-1", "kafka-events-2", "kafka-events-3"] {
        let rs = pf.ruleset(&admin, n);
        assert!(rule(&rs, "client-kafka-privatelink-plc-a-v4").is_none(), "{n}: plc-a's port closes");
        assert_eq!(rule_ports(&rs, "client-kafka-privatelink-plc-b-v4"), [10001], "{n}: plc-b's port stays");
    }

    // delete: refused while the route is open, then closed and deleted.
    let busy = pf.fails(&tok, &with(&["service", "privatelink", "aws", "delete", "kafka-events"]));
    assert!(busy.contains("(status 409)") && busy.contains("privatelink_access"), "{busy}");
    pf.ok(&tok, &with(&["service", "update", "--remove-option", "privatelink_access.kafka", "kafka-events"]));
    assert!(rule(&pf.ruleset(&admin, "kafka-events-1"), "client-kafka-privatelink-v4").is_none(), "the route closes");
    let deleted = pf.ok(&tok, &with(&["service", "privatelink", "aws", "delete", "kafka-events"]));
    assert!(deleted.contains("deleting"), "{deleted}");

    // service privatelink azure …: the subscription ids are its principals; only for a
    // service in Azure.
    let wrong = pf.fails(
        &tok,
        &with(&["service", "privatelink", "azure", "create", "--user-subscription-id", "sub-1", "kafka-events"]),
    );
    assert!(wrong.contains("a azure private link on a service in aws-eu-west-1"), "{wrong}");
    let az = pf
        .ok(&tok, &with(&["service", "privatelink", "azure", "create", "--user-subscription-id", "sub-1", "kafka-az"]));
    assert!(az.starts_with("AZURE_SERVICE_ALIAS") && az.contains("sub-1"), "{az}");
    let az = pf.json(
        &tok,
        &with(&["service", "privatelink", "azure", "update", "--user-subscription-id", "sub-2", "kafka-az", "--json"]),
    );
    assert_eq!(az[0]["user_subscription_ids"], serde_json::json!(["sub-2"]));
    assert_eq!(az[0]["azure_service_id"], Value::Null, "fleetwall has no Azure resource ids");
    let az = pf.json(&tok, &with(&["service", "privatelink", "azure", "get", "kafka-az", "--json"]));
    assert_eq!(az[0]["user_subscription_ids"], serde_json::json!(["sub-2"]));
    let conns = pf.ok(&tok, &with(&["service", "privatelink", "azure", "connection", "list", "kafka-az"]));
    assert_eq!(conns, "", "no connections: avn prints nothing");
    // Azure connections wait for the user's approval; their ports open with it.
    pf.ok(&tok, &with(&["service", "update", "-c", "privatelink_access.kafka=true", "kafka-az"]));
    for id in ["plc-az1", "plc-az2"] {
        let (st, c) = pf.register(&admin, "kafka-az", "azure", id, "10.40.15.7");
        assert_eq!((st, c["state"].as_str()), (201, Some("pending-user-approval")), "{c}");
    }
    let opened = |id: &str| {
        !rule_ports(&pf.ruleset(&admin, "kafka-az-1"), &format!("client-kafka-privatelink-{id}-v4")).is_empty()
    };
    assert!(!opened("plc-az1") && !opened("plc-az2"), "not before approval");
    let conns = pf.ok(&tok, &with(&["service", "privatelink", "azure", "connection", "list", "kafka-az"]));
    assert!(conns.starts_with("PRIVATELINK_CONNECTION_ID  PRIVATE_ENDPOINT_ID  STATE"), "{conns}");
    assert_eq!(row(&conns, "plc-az1"), ["plc-az1", "vpce-plc-az1", "pending-user-approval", "null"], "{conns}");
    let approve1 = ["service", "privatelink", "azure", "connection", "approve", "kafka-az", "plc-az1"];
    let early = pf.fails(&tok, &with(&approve1));
    assert!(early.contains("--user-ip-address"), "{early}");
    let update = ["service", "privatelink", "azure", "connection", "update", "--endpoint-ip-address", "10.1.2.3"];
    let mut update = update.to_vec();
    update.extend(["kafka-az", "plc-az1"]);
    pf.ok(&tok, &with(&update));
    let ok = pf.ok(&tok, &with(&approve1));
    assert_eq!(row(&ok, "vpce-plc-az1"), ["vpce-plc-az1", "plc-az1", "user-approved", "10.1.2.3"], "{ok}");
    assert!(opened("plc-az1") && !opened("plc-az2"), "plc-az1 opens with its approval");
    // fleetwall's own verb does the same for the second one.
    let out = Command::new(env!("CARGO_BIN_EXE_fleetwall"))
        .args(["--server", &server, "--token", &tok, "service", "privatelink", "azure", "connection", "approve"])
        .args(["acme-stream", "kafka-az", "plc-az2", "--user-ip-address", "10.1.2.4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("user-approved") && printed.contains("privatelink-2-kafka-az-acme-stream"), "{printed}");
    assert!(opened("plc-az2"));
    let approve2 = ["service", "privatelink", "azure", "connection", "approve", "kafka-az", "plc-az2"];
    let twice = pf.fails(&tok, &with(&approve2));
    assert!(twice.contains("is user-approved, not pending-user-approval") && twice.contains("(status 409)"), "{twice}");
    pf.ok(&tok, &with(&["service", "privatelink", "azure", "refresh", "kafka-az"]));
    let conns = pf.ok(&tok, &with(&["service", "privatelink", "azure", "connection", "list", "kafka-az"]));
    assert_eq!(row(&conns, "plc-az2")[2], "connected", "refresh: user-approved → connected");
    pf.ok(&tok, &with(&["service", "update", "--remove-option", "privatelink_access.kafka", "kafka-az"]));
    let nope =
        pf.fails(&tok, &with(&["service", "privatelink", "azure", "connection", "approve", "kafka-az", "plc-nope"]));
    assert!(nope.contains("has no connection 'plc-nope'") && nope.contains("(status 404)"), "{nope}");
    let gone = pf.ok(&tok, &with(&["service", "privatelink", "azure", "delete", "kafka-az"]));
    assert!(gone.contains("deleting"), "{gone}");

    // service privatelink google …: no principals; each connection is approved with the
    // endpoint's address.
    let g = pf.json(&tok, &with(&["service", "privatelink", "google", "create", "kafka-gcp", "--json"]));
    assert_eq!(g[0], serde_json::json!({"google_service_attachment": null, "state": "creating"}));
    pf.ok(&tok, &with(&["service", "update", "-c", "privatelink_access.kafka=true", "kafka-gcp"]));
    let (st, c) = pf.register(&admin, "kafka-gcp", "google", "psc-1", "10.50.15.9");
    assert_eq!(
        (st, c["state"].as_str(), c["ports"]["kafka"].as_u64()),
        (201, Some("pending-user-approval"), Some(10000))
    );
    let listed = pf.ok(&tok, &with(&["service", "privatelink", "google", "connection", "list", "kafka-gcp"]));
    assert!(listed.contains("PRIVATELINK_CONNECTION_ID  PSC_CONNECTION_ID  STATE"), "{listed}");
    assert_eq!(row(&listed, "psc-1"), ["psc-1", "vpce-psc-1", "pending-user-approval", "null"], "{listed}");
    let gcp_open = || !rule_ports(&pf.ruleset(&admin, "kafka-gcp-1"), "client-kafka-privatelink-psc-1-v4").is_empty();
    assert!(!gcp_open());
    let approve = ["service", "privatelink", "google", "connection", "approve", "kafka-gcp"];
    let mut approve = approve.to_vec();
    approve.extend(["--privatelink-connection-id", "psc-1", "--user-ip-address", "10.9.0.5"]);
    let ok = pf.ok(&tok, &with(&approve));
    assert!(ok.contains("user-approved") && ok.contains("10.9.0.5"), "{ok}");
    assert!(gcp_open(), "the approved connection's port opens");
    pf.ok(&tok, &with(&["service", "update", "--remove-option", "privatelink_access.kafka", "kafka-gcp"]));
    let gone = pf.ok(&tok, &with(&["service", "privatelink", "google", "delete", "kafka-gcp"]));
    assert!(gone.contains("deleting"), "{gone}");
    assert!(!gcp_open(), "deleting the link closes its connections' ports");

    // vpc list | create, vpc peering-connection list | create.
    let vpcs = pf.ok(&tok, &with(&["vpc", "list"]));
    assert!(vpcs.starts_with("PROJECT_VPC_ID  CLOUD_NAME"), "{vpcs}");
    assert_eq!(row(&vpcs, "vpc-eu"), ["vpc-eu", "aws-eu-west-1", "10.20.0.0/20", "ACTIVE"], "{vpcs}");
    let made = pf.ok(&tok, &with(&["vpc", "create", "--cloud", "aws-eu-west-1", "--network-cidr", "10.30.0.0/20"]));
    assert_eq!(row(&made, "vpc-1"), ["vpc-1", "ACTIVE", "aws-eu-west-1", "10.30.0.0/20"], "{made}");
    let bad_vpc = pf.avn(&tok, &with(&["vpc", "create", "--cloud", "aws-eu-west-1", "--network-cidr", "10.30.0.1/20"]));
    assert_eq!(bad_vpc.status.code(), Some(1));
    let said = String::from_utf8_lossy(&bad_vpc.stdout);
    assert!(said.contains("\"errors\"") && said.contains("10.30.0.0/20"), "the error body, with the fix: {said}");
    let peers = pf.ok(&tok, &with(&["vpc", "peering-connection", "list", "--project-vpc-id", "vpc-eu"]));
    assert_eq!(row(&peers, "null"), ["null", "null", "vpc-0abc", "null", "ACTIVE"], "{peers}");
    let peer = [
        "vpc",
        "peering-connection",
        "create",
        "--project-vpc-id",
        "vpc-eu",
        "--peer-cloud-account",
        "012345678901",
        "--peer-vpc",
        "vpc-0def",
    ];
    // Allowed by ip_filter, but outside the VPC and its peerings: not a source yet.
    pf.ok(&tok, &with(&["service", "update", "-c", "ip_filter=['10.20.0.0/16','192.168.0.0/16']", "kafka-events"]));
    let vpc_sources = |pf: &Platform| set_elements(&pf.ruleset(&admin, "kafka-events-2"), "vpcf4");
    assert_eq!(vpc_sources(&pf), ["10.20.0.0/20"]);
    let no_cidrs = pf.fails(&tok, &with(&peer));
    assert!(no_cidrs.contains("--user-peer-network-cidr"), "{no_cidrs}");
    let mut peer_with = peer.to_vec();
    peer_with.extend(["--user-peer-network-cidr", "192.168.0.0/16"]);
    let made = pf.ok(&tok, &with(&peer_with));
    assert!(made.contains("vpc-0def") && made.contains("192.168.0.0/16"), "{made}");
    let peers = pf.ok(&tok, &with(&["vpc", "peering-connection", "list", "--project-vpc-id", "vpc-eu"]));
    assert!(peers.contains("vpc-0abc") && peers.contains("vpc-0def"), "{peers}");
    // The new peering's network is now a source of the VPC's services.
    assert_eq!(vpc_sources(&pf), ["10.20.0.0/20", "192.168.0.0/16"]);

    // A wrong token is refused in the platform's shape.
    let denied = pf.fails("fw_not-a-token", &with(&["service", "list"]));
    assert!(denied.contains("unknown token (status 401)"), "{denied}");
    // avn wrote nothing outside its HOME.
    assert!(!Path::new(&scratch.0).join(".config").exists());
}
