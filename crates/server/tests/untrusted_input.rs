//! The control plane over real HTTP against input it must not trust: requests without a valid
//! token that announce a body. Each test is named after what used to break.

use fleetwall_http::{Client, Server};
use fleetwall_server::{api, ControlPlane};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Env {
    dir: PathBuf,
    server: Option<Server>,
    admin: String,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(tag: &str) -> Env {
    let dir = std::env::temp_dir().join(format!("fw-untrusted-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cp =
        ControlPlane::open(&dir.join("fleet.db").display().to_string(), fleetwall_model::Catalog::builtin()).unwrap();
    let admin = fleetwall_server::util::new_token().unwrap();
    cp.insert_token(None, "admin", "admin", &admin).unwrap();
    let server = api::serve(cp, "127.0.0.1:0", None).unwrap();
    Env { dir, server: Some(server), admin }
}

impl Env {
    fn url(&self) -> String {
        format!("http://{}", self.server.as_ref().unwrap().local_addr())
    }
    fn admin(&self) -> Client {
        Client::new(&self.url(), None).unwrap().with_token(&self.admin)
    }
}

#[test]
fn a_request_without_a_valid_token_gets_401_before_its_body_is_sent() {
    let env = start("admit");
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
