//! The client verbs against a real `fleetwall serve` on loopback (SQLite, no root needed).

mod common;

use common::{free_port, root, Scratch, Serve};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(dir: &std::path::Path, server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetwall"))
        .args(args)
        .current_dir(dir)
        .env("FLEETWALL_SERVER", server)
        .env_remove("FLEETWALL_TOKEN")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn client_verbs_speak_the_platforms_dialect() {
    let scratch = Scratch::new("client");
    let port = free_port();
    let server = format!("http://127.0.0.1:{port}");
    let fleet = root().join("examples/kafka-vpc.yaml");
    // No flags but where to listen and what to seed: SQLite and the admin token in .fleetwall/.
    let _serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_fleetwall"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--fleet", fleet.to_str().unwrap()])
            .current_dir(&scratch.0)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !run(&scratch.0, &server, &["status"]).status.success() {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(scratch.0.join(".fleetwall/fleet.db").exists(), "SQLite by default");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(scratch.0.join(".fleetwall/admin.token")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the admin token is private");

    let status = text(&run(&scratch.0, &server, &["status"]));
    assert!(status.starts_with("NODE  "), "{status}");
    assert!(status.lines().nth(1).unwrap().starts_with("===="), "{status}");
    assert!(status.contains("kafka-events-1") && status.contains("unknown"), "{status}");

    let out = run(
        &scratch.0,
        &server,
        &[
            "service",
            "update",
            "acme-stream",
            "kafka-events",
            "-c",
            "ip_filter=['172.31.0.0/16','198.51.100.0/24']",
            "-c",
            "public_access.kafka_rest=true",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text(&out).contains("3 node rulesets changed"), "{}", text(&out));
    // The example's own tests say kafka is not public: the server refuses, like `check` would.
    let out = run(
        &scratch.0,
        &server,
        &["service", "update", "acme-stream", "kafka-events", "-c", "public_access.kafka=true"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("test fails: 198.51.100.7 -> kafka-events-1.public: deny kafka") && err.contains("(status 400)"),
        "{err}"
    );

    // Errors: `<message> (status N)`, exit 1.
    let out = run(
        &scratch.0,
        &server,
        &["service", "update", "acme-stream", "kafka-events", "-c", "ip_filter=['300.1.2.3/32']"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("Invalid 'user_config': Invalid input for ip_filter:")
            && err.trim_end().ends_with("(status 400)"),
        "{err}"
    );
    let out = run(&scratch.0, &server, &["service", "get", "acme-stream", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "service 'nope' does not exist in project 'acme-stream' (status 404)"
    );
    let out = run(&scratch.0, "http://127.0.0.1:1", &["status"]);
    assert_eq!(out.status.code(), Some(1), "an unreachable server is an error too");

    // Private links: the resource, its principals replaced whole, its connections.
    let arn = "arn:aws:iam::012345678901:user/mwf";
    let out = run(
        &scratch.0,
        &server,
        &["service", "privatelink", "aws", "create", "--principal", arn, "acme-stream", "kafka-events"],
    );
    assert_eq!(out.status.code(), Some(1), "one endpoint service per service");
    assert!(String::from_utf8_lossy(&out.stderr).contains("(status 409)"));
    let out = run(
        &scratch.0,
        &server,
        &["service", "privatelink", "aws", "update", "--principal", arn, "acme-stream", "kafka-events"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = text(&out);
    assert!(t.starts_with("PROJECT") && t.contains("active") && t.contains("vpce-svc-"), "{t}");
    let out =
        run(&scratch.0, &server, &["service", "privatelink", "aws", "get", "acme-stream", "kafka-events", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["principals"], serde_json::json!([arn]));
    let out = run(
        &scratch.0,
        &server,
        &["service", "privatelink", "aws", "connection", "list", "acme-stream", "kafka-events"],
    );
    assert!(out.status.success());
    assert!(text(&out).starts_with("PRIVATELINK_CONNECTION_ID"), "{}", text(&out));

    // The listener table, the audit log, and the fleet file round trip.
    let get = text(&run(&scratch.0, &server, &["service", "get", "acme-stream", "kafka-events"]));
    assert!(get.contains("NODE") && get.contains("inter_broker"), "{get}");
    let audit = text(&run(&scratch.0, &server, &["audit"]));
    assert!(
        audit.contains("service.update") && audit.contains("privatelink.update") && audit.contains("admin:admin"),
        "{audit}"
    );
    let yaml = run(&scratch.0, &server, &["fleet", "get"]);
    std::fs::write(scratch.0.join("exported.yaml"), &yaml.stdout).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_fleetwall"))
        .args(["check"])
        .arg(scratch.0.join("exported.yaml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "the exported fleet checks: {}", String::from_utf8_lossy(&check.stdout));
    let metrics = fleetwall_api::http::Client::new(&server, None).unwrap().get("/metrics").unwrap().text();
    assert!(metrics.contains("fleetwall_writes_total ") && metrics.contains("fleetwall_fleet_revision "), "{metrics}");

    // A value too long for a command line comes from a file: 7,900 entries, over 128 KiB.
    // The fleet's own tests need the peering subnet and the office.
    let mut nets = vec!["'172.31.8.0/21'".to_string(), "'198.51.100.0/24'".to_string()];
    nets.extend((0..7900).map(|i| format!("'10.{}.{}.0/24'", 100 + i / 256, i % 256)));
    let big = scratch.0.join("ipf.txt");
    std::fs::write(&big, format!("[{}]\n", nets.join(", "))).unwrap();
    assert!(std::fs::metadata(&big).unwrap().len() > 128 << 10);
    let arg = format!("ip_filter=@{}", big.display());
    let out = run(&scratch.0, &server, &["service", "update", "acme-stream", "kafka-events", "-c", &arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ip_filter_len = || {
        let out = run(&scratch.0, &server, &["service", "get", "acme-stream", "kafka-events", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.pointer("/user_config/ip_filter").unwrap().as_array().unwrap().len()
    };
    assert_eq!(ip_filter_len(), 7902);
    let json = scratch.0.join("cfg.json");
    std::fs::write(&json, r#"{"ip_filter": ["172.31.8.0/21", "198.51.100.0/24"]}"#).unwrap();
    let out = run(
        &scratch.0,
        &server,
        &["service", "update", "acme-stream", "kafka-events", "-c", &format!("@{}", json.display())],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ip_filter_len(), 2);

    // The service's backup key: the public one for encrypting, the private one (admin) to restore.
    let public = text(&run(&scratch.0, &server, &["backup", "key", "acme-stream", "kafka-events"]));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    let private = text(&run(&scratch.0, &server, &["backup", "key", "acme-stream", "kafka-events", "--private"]));
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"), "{private}");

    // The listing verbs the platform's CLI has: nodes of a service, peerings of a VPC.
    let nodes = text(&run(&scratch.0, &server, &["node", "list", "acme-stream", "kafka-events"]));
    assert!(nodes.starts_with("NODE") && nodes.contains("kafka-events-1") && nodes.contains("10.20.0.11"), "{nodes}");
    let peerings = text(&run(&scratch.0, &server, &["vpc", "peering-connection", "list", "acme-stream", "vpc-eu"]));
    assert!(peerings.starts_with("PEER_VPC") && peerings.contains("vpc-0abc"), "{peerings}");
    let vpcs = text(&run(&scratch.0, &server, &["vpc", "list", "acme-stream"]));
    assert!(vpcs.contains("vpc-0abc (172.31.0.0/16)") && !vpcs.contains("{"), "peerings read as text: {vpcs}");

    // Tokens: made with a lifetime, listed without their secret, revoked by id.
    let made = run(&scratch.0, &server, &["token", "create", "--project", "acme-stream", "--ttl", "2h"]);
    assert!(made.status.success());
    let secret = text(&made).trim().to_string();
    let list = text(&run(&scratch.0, &server, &["token", "list"]));
    assert!(list.starts_with("ID") && list.contains("STATE") && list.contains("acme-stream"), "{list}");
    assert!(!list.contains(&secret), "the list shows a secret: {list}");
    assert!(!list.contains("null"), "empty cells are blank, as in the platform's CLI: {list}");
    let listed = run(&scratch.0, &server, &["token", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let id = v["tokens"].as_array().unwrap().iter().find(|t| t["kind"] == "project").unwrap()["id"].clone();
    let out = run(&scratch.0, &server, &["token", "revoke", id.as_str().unwrap()]);
    assert_eq!(text(&out).trim(), format!("Revoked token {} (project acme-stream)", id.as_str().unwrap()));
    let refused = Command::new(env!("CARGO_BIN_EXE_fleetwall"))
        .args(["status"])
        .current_dir(&scratch.0)
        .env("FLEETWALL_SERVER", &server)
        .env("FLEETWALL_TOKEN", &secret)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&refused.stderr).trim(), "this token was revoked (status 401)");
    let bad_ttl = run(&scratch.0, &server, &["token", "create", "--admin", "x", "--ttl", "3w"]);
    assert_eq!(bad_ttl.status.code(), Some(2), "a bad --ttl is a usage error");
}

#[test]
fn the_rollout_benchmark_runs() {
    let out = common::fleetwall(&[
        "bench",
        "--rollout",
        "--agents",
        "20",
        "--real-agents",
        "0",
        "--writes",
        "2",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["samples"], 40, "every agent applied every write");
    assert!(v[0]["p99_ms"].as_f64().unwrap() > 0.0);
}
