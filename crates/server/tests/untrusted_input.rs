//! The control plane over real HTTP against input it must not trust: query values that used
//! to panic the handler, and requests without a valid token that announce a body. Each test is
//! named after what used to break.

use fleetwall_api::http::Client;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod common;

use common::{start, Env};

/// GETs `path` as the admin; the status and the error message.
fn get(env: &Env, path: &str) -> (u16, String) {
    let r = env.admin().get(path).unwrap();
    let message = r.json_body::<Value>().ok().and_then(|v| v["message"].as_str().map(str::to_string));
    (r.status, message.unwrap_or_default())
}

fn assert_bad_wait(value: &str) {
    let env = start(&format!("wait-{}", value.replace(['.', '-', '+'], "_")), None);
    let (status, message) = get(&env, &format!("/v1/nodes/web-1/ruleset?after=0&wait={value}"));
    assert_eq!(status, 400, "wait={value}: {message}");
    assert_eq!(message, format!("query parameter 'wait' must be a number of seconds from 0 to 60, got '{value}'"));
}

#[test]
fn a_negative_wait_is_a_400_not_a_panic() {
    assert_bad_wait("-1");
}

#[test]
fn a_nan_wait_is_a_400_not_a_panic() {
    assert_bad_wait("NaN");
}

#[test]
fn an_infinite_wait_is_a_400_not_a_panic() {
    assert_bad_wait("inf");
}

#[test]
fn a_huge_wait_is_a_400_not_a_panic() {
    assert_bad_wait("1e308");
}

#[test]
fn a_wait_over_the_maximum_is_a_400_not_silently_shortened() {
    assert_bad_wait("61");
}

#[test]
fn bad_after_revision_and_limit_values_are_400s_naming_the_parameter() {
    let env = start("numbers", None);
    for (path, name, range) in [
        ("/v1/nodes/web-1/ruleset?after=x", "after", "-1 to 9223372036854775807"),
        ("/v1/nodes/web-1/ruleset?after=-2", "after", "-1 to 9223372036854775807"),
        ("/v1/fleet?revision=1.5", "revision", "1 to 9223372036854775807"),
        ("/v1/fleet?revision=0", "revision", "1 to 9223372036854775807"),
        ("/v1/audit?limit=abc", "limit", "1 to 10000"),
        ("/v1/audit?limit=0", "limit", "1 to 10000"),
        ("/v1/audit?limit=10001", "limit", "1 to 10000"),
        ("/v1/audit?after=99999999999999999999", "after", "0 to 9223372036854775807"),
    ] {
        let (status, message) = get(&env, path);
        assert_eq!(status, 400, "{path}: {message}");
        assert!(message.starts_with(&format!("query parameter '{name}' must be a whole number from {range}, got '")));
    }
    // Good values still work.
    assert_eq!(get(&env, "/v1/audit?limit=10000&after=0").0, 200);
    assert_eq!(get(&env, "/v1/nodes/web-1/ruleset?after=-1&wait=0").0, 404, "no such node; the query is fine");
    assert_eq!(get(&env, "/v1/nodes/web-1/ruleset?wait=0.25").0, 404);
}

#[test]
fn a_request_without_a_valid_token_gets_401_before_its_body_is_sent() {
    let env = start("admit", None);
    let addr = env.server.as_ref().unwrap().local_addr();
    for auth in ["", "Authorization: Bearer not-a-token\r\n"] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t = Instant::now();
        write!(s, "PUT /v1/fleet HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 62914560\r\n\r\nprojects:").unwrap();
        let mut response = Vec::new();
        let _ = s.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{response}");
        assert!(response.contains("www-authenticate: Bearer\r\n"), "{response}");
        assert!(t.elapsed() < Duration::from_secs(5), "the server waited for the body: {:?}", t.elapsed());
    }
    // The public routes need no token but take no large body; the admin keeps the full limit.
    let c = Client::new(&env.url(), None).unwrap();
    assert_eq!(c.get("/healthz").unwrap().status, 200);
    assert_eq!(c.request("GET", "/metrics", Some(("text/plain", &[b'x'; 8192]))).unwrap().status, 413);
    let r = env.admin().request("PUT", "/v1/fleet", Some(("application/yaml", &vec![b' '; 1 << 20]))).unwrap();
    assert_ne!(r.status, 401);
    assert_ne!(r.status, 413);
    // The refusals are counted like any answer.
    let metrics = env.admin().get("/metrics").unwrap().text();
    assert!(metrics.contains("fleetwall_http_requests_total{method=\"PUT\",status=\"401\"} 2"), "{metrics}");
}
