//! A bounded fuzz of the API's request bodies: valid bodies of every write route, mutated
//! at random (values replaced by hostile strings, numbers at their limits, keys dropped
//! or duplicated, truncated JSON, random bytes, mutated fleet files for `PUT /v1/fleet`),
//! sent through the API handler with an admin token and with a project token. No
//! request may panic or answer 5xx, a refused write must leave the revision as it was,
//! and the process's peak memory must stay bounded.
//!
//! By default it runs for 15 seconds or 3,000 requests; `FLEETWALL_FUZZ_SECS=600` runs
//! longer, `FLEETWALL_FUZZ_SEED=<n>` replays a run (the seed is printed).

mod common;

use common::root;
use fleetwall_server::web::{Request, Response};
use fleetwall_server::{api, ControlPlane};
use fleetwall_synth::Rng;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NASTY: &[&str] = &[
    "",
    " ",
    "\n",
    "\"",
    "'",
    "\0",
    "../../etc/passwd",
    "x\nflush ruleset",
    "10.0.0.1/8",
    " 10.0.0.0/8",
    "010.1.2.3",
    "::ffff:10.0.0.1/128",
    "0.0.0.0/0",
    "::/0",
    "a-b.c_d",
    "ÿ",
    "\u{2028}",
    "%2F",
    "[",
    "{}",
    "1e308",
    "-1",
];

fn nasty(r: &mut Rng) -> Value {
    match r.below(6) {
        0 => json!(i64::MAX),
        1 => json!(-1),
        2 => json!([NASTY[r.below(NASTY.len() as u64) as usize]]),
        3 => json!("x".repeat(r.below(70_000) as usize)),
        4 => Value::Null,
        _ => json!(NASTY[r.below(NASTY.len() as u64) as usize]),
    }
}

fn mutate(r: &mut Rng, v: &mut Value) {
    match v {
        Value::Object(m) if !m.is_empty() && r.below(5) != 0 => {
            let k = m.keys().nth(r.below(m.len() as u64) as usize).unwrap().clone();
            match r.below(4) {
                0 => {
                    m.remove(&k);
                }
                1 => {
                    m.insert(k, nasty(r));
                }
                _ => mutate(r, m.get_mut(&k).unwrap()),
            }
        }
        Value::Array(a) if !a.is_empty() && r.below(5) != 0 => {
            let i = r.below(a.len() as u64) as usize;
            if r.below(3) == 0 {
                let x = a[i].clone();
                a.extend(std::iter::repeat_n(x, r.below(50) as usize));
            } else {
                mutate(r, &mut a[i]);
            }
        }
        _ => *v = nasty(r),
    }
}

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn request(method: &str, path: &str, token: &str, body: Vec<u8>) -> Request {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (
            p.to_string(),
            q.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect(),
        ),
        None => (path.to_string(), Vec::new()),
    };
    Request {
        method: method.into(),
        path,
        query,
        headers: vec![("authorization".into(), format!("Bearer {token}"))],
        body,
        peer: "127.0.0.1:1".parse().unwrap(),
        caller: None,
    }
}

#[test]
fn mutated_api_bodies_never_panic_or_half_apply() {
    let secs: u64 = std::env::var("FLEETWALL_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let limit = if std::env::var_os("FLEETWALL_FUZZ_SECS").is_some() { usize::MAX } else { 3_000 };
    let seed: u64 = std::env::var("FLEETWALL_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("fuzz_api: seed {seed} (FLEETWALL_FUZZ_SEED={seed} replays it), {secs} s");
    let dir = std::env::temp_dir().join(format!("fw-fuzz-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cp: Arc<ControlPlane> =
        ControlPlane::open(&dir.join("fleet.db").display().to_string(), fleetwall_model::Catalog::builtin()).unwrap();
    let admin = fleetwall_server::util::new_token().unwrap();
    cp.insert_token(None, "admin", "admin", &admin, None).unwrap();
    let call = |method: &str, path: &str, token: &str, body: Vec<u8>| -> Response {
        api::handle(&cp, request(method, path, token, body))
    };
    let fleet = std::fs::read_to_string(root().join("examples/kafka-vpc.yaml")).unwrap();
    let fleet = fleet.split("\ntests:").next().unwrap().to_string();
    assert_eq!(call("PUT", "/v1/fleet", &admin, fleet.clone().into_bytes()).status, 200);
    let made = call("POST", "/v1/tokens", &admin, br#"{"kind":"project","project":"acme-stream"}"#.to_vec());
    let customer = made.json_body::<Value>().unwrap()["token"].as_str().unwrap().to_string();

    let svc = "/v1/projects/acme-stream/services/kafka-events";
    let routes: Vec<(&str, String, Value)> = vec![
        ("POST", "/v1/projects".into(), json!({"name": "fuzzp", "base_port": 20000})),
        (
            "POST",
            "/v1/projects/acme-stream/vpcs".into(),
            json!({"name": "v2", "cloud": "aws-eu-west-1", "network_cidr": "10.99.0.0/16"}),
        ),
        (
            "POST",
            "/v1/projects/acme-stream/vpcs/vpc-eu/peerings".into(),
            json!({"peer_vpc": "vpc-x", "peer_cidrs": ["172.16.0.0/16"]}),
        ),
        (
            "POST",
            "/v1/projects/acme-stream/services".into(),
            json!({"name": "s2", "type": "pg", "cloud": "aws-eu-west-1", "vpc": "vpc-eu", "nodes": {"s2-1": {"private": ["10.20.0.99"]}}}),
        ),
        (
            "PATCH",
            format!("{svc}/user_config"),
            json!({"config": ["ip_filter=['10.20.0.0/16','198.51.100.0/24']"], "remove": ["public_access.kafka_rest"]}),
        ),
        (
            "POST",
            format!("{svc}/nodes"),
            json!({"name": "kafka-events-9", "private": "10.20.0.19", "public": "203.0.113.59"}),
        ),
        ("PUT", format!("{svc}/privatelink/aws"), json!({"principals": ["arn:aws:iam::012345678901:user/x"]})),
        ("PUT", "/v1/platform".into(), json!({"management_gateways": ["198.51.100.10"]})),
        ("POST", "/v1/tokens".into(), json!({"kind": "agent", "node": "kafka-events-1", "expires_in_s": 60})),
        (
            "PUT",
            "/v1/nodes/kafka-events-1/status".into(),
            json!({"revision": 1, "hash": "0".repeat(64), "applied_ms": 1_800_000_000_000i64}),
        ),
    ];
    let base_rss = peak_rss_kb();
    let mut r = Rng::new(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut n, mut accepted) = (0usize, 0usize);
    while Instant::now() < deadline && n < limit {
        n += 1;
        let token = if r.below(3) == 0 { customer.as_str() } else { admin.as_str() };
        let (method, path, body) = if r.below(8) == 0 {
            // A fleet file, mutated as text.
            let mut bytes = fleet.clone().into_bytes();
            for _ in 0..1 + r.below(4) {
                let i = r.below(bytes.len() as u64) as usize;
                match r.below(3) {
                    0 => bytes[i] = r.below(256) as u8,
                    1 => bytes.truncate(i),
                    _ => bytes.splice(i..i, b"&a [*a, *a]\n".iter().copied()).for_each(drop),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            ("PUT", "/v1/fleet".to_string(), bytes)
        } else {
            let (m, p, b) = &routes[r.below(routes.len() as u64) as usize];
            let mut b = b.clone();
            for _ in 0..1 + r.below(3) {
                mutate(&mut r, &mut b);
            }
            let mut text = serde_json::to_vec(&b).unwrap();
            if r.below(10) == 0 {
                text.truncate(r.below(text.len() as u64 + 1) as usize);
            }
            (*m, p.clone(), text)
        };
        let before = cp.snapshot().revision;
        let resp = call(method, &path, token, body.clone());
        assert!(
            resp.status < 500,
            "seed {seed} request {n}: {method} {path} answered {}: {} for body {:?}",
            resp.status,
            resp.text(),
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        );
        if resp.status >= 400 {
            assert_eq!(cp.snapshot().revision, before, "seed {seed} request {n}: a refused write changed the fleet");
        } else {
            accepted += 1;
        }
    }
    let grown_mb = (peak_rss_kb().saturating_sub(base_rss)) / 1024;
    eprintln!("fuzz_api: {n} requests, {accepted} accepted; peak RSS grew {grown_mb} MB");
    assert!(grown_mb < 512, "peak memory grew {grown_mb} MB");
    let _ = std::fs::remove_dir_all(&dir);
}
