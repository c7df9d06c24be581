//! One server holds a crowd: thousands of idle connections and a thousand waiting long-polls
//! cost no thread each, and the server still answers. (The thread-per-connection server
//! this replaced was capped at 4,096 connections: with 4,500 idle ones `/healthz` failed.)
//!
//! The connections come from this test process, which also holds the server's ends: 2
//! descriptors per connection, well within the 20,000 a process may open here.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod common;

use common::{root, start};

const IDLE: usize = 5_000;
const POLLS: usize = 1_000;

fn threads_of_this_process() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

/// Reads one response with a Content-Length body (or none, for a 304); its status and body.
fn read_response(r: &mut BufReader<TcpStream>) -> (u16, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap_or_else(|| panic!("status line {line:?}")).parse().unwrap();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    (status, body)
}

#[test]
fn five_thousand_idle_connections_and_a_thousand_long_polls_on_one_server() {
    let limit = fleetwall_server::web::raise_open_files_limit().unwrap();
    assert!(limit >= 2 * (IDLE + POLLS) as u64 + 500, "the open files limit {limit} is too low for this test");
    let env = start("crowd", None);
    let server = env.server.as_ref().unwrap();
    let addr = server.local_addr();
    let admin = env.admin();
    let text = std::fs::read_to_string(root().join("examples/kafka-vpc.yaml")).unwrap();
    let text = text.split("\ntests:").next().unwrap();
    let r = admin.request("PUT", "/v1/fleet", Some(("application/yaml", text.as_bytes()))).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let rev = admin.get("/v1/nodes/kafka-events-2/ruleset").unwrap().json_body::<Value>().unwrap()["revision"]
        .as_i64()
        .unwrap();
    let threads_before = threads_of_this_process();

    // Idle connections: connected, never a byte sent.
    let idle: Vec<TcpStream> = (0..IDLE).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Long-polls: a request each, waiting for kafka-events-2 to change.
    let mut polls = Vec::with_capacity(POLLS);
    for _ in 0..POLLS {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /v1/nodes/kafka-events-2/ruleset?after={rev}&wait=50 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            env.admin
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        polls.push(BufReader::new(s));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let watching = |admin: &fleetwall_api::http::Client| -> i64 {
        let metrics = admin.get("/metrics").unwrap().text();
        let line = metrics.lines().find(|l| l.starts_with("fleetwall_watchers ")).unwrap().to_string();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    while server.open_connections() < IDLE + POLLS || watching(&admin) < POLLS as i64 {
        assert!(
            Instant::now() < deadline,
            "the server holds {} connections, {} long-polls waiting",
            server.open_connections(),
            watching(&admin)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every waiting long-poll and idle connection is a task, not a thread.
    let threads = threads_of_this_process();
    assert!(threads < threads_before + 100, "{threads} threads (before the crowd: {threads_before})");

    // The server still answers a newcomer.
    let health = fleetwall_api::http::Client::new(&env.url(), None).unwrap().with_timeout(Duration::from_secs(10));
    assert_eq!(health.get("/healthz").unwrap().status, 200);

    // A change of the node's service wakes every long-poll with the new ruleset.
    let r = admin
        .send_json(
            "POST",
            "/v1/projects/acme-stream/services/kafka-events/nodes",
            &json!({"name": "kafka-events-4", "private": ["10.20.0.14", "fd00:20::14"], "public": "203.0.113.24"}),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    for poll in &mut polls {
        let (status, body) = read_response(poll);
        assert_eq!(status, 200);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert!(body["revision"].as_i64().unwrap() > rev);
        assert!(body["ruleset"].to_string().contains("10.20.0.14"));
    }
    // And the idle connections are still open (nothing evicted them).
    assert!(server.open_connections() >= IDLE, "{} open", server.open_connections());
    drop(idle);
}
