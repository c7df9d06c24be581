//! Server and client over real sockets on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fleetwall_http::{percent_encode, Client, Error, Handler, Limits, Request, Response, Server, TlsFiles};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

fn handler(f: impl Fn(Request) -> Response + Send + Sync + 'static) -> Handler {
    Arc::new(f)
}

fn serve(f: impl Fn(Request) -> Response + Send + Sync + 'static) -> Server {
    Server::bind("127.0.0.1:0", None, handler(f)).unwrap()
}

fn serve_with(limits: Limits, f: impl Fn(Request) -> Response + Send + Sync + 'static) -> Server {
    Server::bind_with("127.0.0.1:0", None, handler(f), limits).unwrap()
}

fn client(server: &Server) -> Client {
    Client::new(&format!("http://{}", server.local_addr()), None).unwrap().with_timeout(Duration::from_secs(10))
}

/// Echoes the request as JSON.
fn echo(req: Request) -> Response {
    Response::json(
        200,
        &json!({
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "body": String::from_utf8_lossy(&req.body),
            "content_type": req.header("Content-Type"),
            "bearer": req.bearer(),
            "port": req.peer.port(),
        }),
    )
}

/// Sends raw bytes on a new connection and reads until the server closes it.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("the server should close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response with a Content-Length body from a raw stream.
fn read_one(stream: &mut TcpStream) -> String {
    read_one_response(stream, false)
}

/// Reads one response from a raw stream; with `head_only` (a response to HEAD) there is no body.
fn read_one_response(stream: &mut TcpStream, head_only: bool) -> String {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed in a head: {}", String::from_utf8_lossy(&data));
        data.push(byte[0]);
    }
    let head = String::from_utf8(data.clone()).unwrap();
    if head_only {
        return head;
    }
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    head + &String::from_utf8(body).unwrap()
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Node {
    name: String,
    addrs: Vec<String>,
}

#[test]
fn json_get_and_post_round_trip() {
    let server = serve(|req| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v1/status") => Response::json(200, &json!({"ok": true, "bearer": req.bearer()})),
        ("POST", "/v1/nodes") => match req.json::<Node>() {
            Ok(node) if req.header("content-type") == Some("application/json") => Response::json(201, &node),
            Ok(_) => Response::error(415, "expected JSON"),
            Err(e) => Response::error(400, &e.to_string()),
        },
        _ => Response::error(404, "no such route"),
    });
    let c = client(&server).with_token("s3cret");
    let r = c.get("/v1/status").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header_value("Content-Type"), Some("application/json"));
    assert!(r.text().ends_with("}\n"), "{:?}", r.text());
    assert_eq!(r.json_body::<Value>().unwrap(), json!({"ok": true, "bearer": "s3cret"}));

    let node = Node { name: "web-1".into(), addrs: vec!["10.0.0.1".into(), "fd00::1".into()] };
    let r = c.send_json("POST", "/v1/nodes", &node).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json_body::<Node>().unwrap(), node);

    let r = c.request("POST", "/v1/nodes", Some(("application/json", b"{not json"))).unwrap();
    assert_eq!(r.status, 400);
    assert!(!r.is_success());
    assert_eq!(r.json_body::<Value>().unwrap()["status"], 400);
    assert_eq!(c.get("/nope").unwrap().status, 404);
}

#[test]
fn keep_alive_reuses_one_connection() {
    let ports = Arc::new(Mutex::new(Vec::new()));
    let seen = ports.clone();
    let server = serve(move |req| {
        seen.lock().unwrap().push(req.peer.port());
        Response::new(200, "text/plain", "ok")
    });
    let c = client(&server);
    for _ in 0..3 {
        assert_eq!(c.get("/").unwrap().text(), "ok");
    }
    c.send_json("PUT", "/x", &json!([1, 2])).unwrap();
    let ports = ports.lock().unwrap().clone();
    assert_eq!(ports.len(), 4);
    assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
    assert_eq!(server.open_connections(), 1);
}

#[test]
fn long_polls_are_answered_concurrently() {
    let server = serve(|req| {
        thread::sleep(Duration::from_millis(300));
        Response::json(200, &json!({"id": req.query("id")}))
    });
    let base = client(&server);
    let start = Instant::now();
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let c = base.clone();
            thread::spawn(move || {
                let r =
                    c.request_with_timeout("GET", &format!("/v1/poll?id={i}"), None, Duration::from_secs(20)).unwrap();
                assert_eq!(r.status, 200);
                assert_eq!(r.json_body::<Value>().unwrap()["id"], i.to_string());
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // One after the other they would take 15 s.
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[test]
fn one_client_from_many_threads() {
    let server = serve(echo);
    let c = Arc::new(client(&server));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = c.clone();
            thread::spawn(move || {
                for i in 0..20 {
                    let r = c.get(&format!("/t?i={t}-{i}")).unwrap();
                    assert_eq!(r.json_body::<Value>().unwrap()["query"], json!([["i", format!("{t}-{i}")]]));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn oversized_body_gets_413() {
    let server = serve_with(Limits { max_body: 1024, ..Limits::default() }, echo);
    let c = client(&server);
    let r = c.request("POST", "/upload", Some(("application/octet-stream", &[b'x'; 4096]))).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.header_value("connection"), Some("close"));
    let message = r.json_body::<Value>().unwrap()["message"].as_str().unwrap().to_string();
    assert!(message.contains("4096") && message.contains("1024"), "{message}");
    // The limit itself is fine, and the client recovers from the closed connection.
    let r = c.request("POST", "/upload", Some(("application/octet-stream", &[b'y'; 1024]))).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json_body::<Value>().unwrap()["body"].as_str().unwrap().len(), 1024);
}

#[test]
fn oversized_head_gets_431() {
    let server = serve_with(Limits { max_head: 1024, ..Limits::default() }, echo);
    let c = client(&server);
    assert_eq!(c.get(&format!("/{}", "a".repeat(2000))).unwrap().status, 431);
    assert_eq!(c.get(&format!("/{}", "a".repeat(500))).unwrap().status, 200);
}

#[test]
fn malformed_requests_get_400_and_close() {
    let server = serve(echo);
    let addr = server.local_addr();
    for garbage in [
        &b"garbage\r\n\r\n"[..],
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /%zz HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ] {
        let out = raw(addr, garbage);
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
        assert!(out.contains("\"status\": 400"), "{out}");
    }
    // The server still serves.
    assert_eq!(client(&server).get("/").unwrap().status, 200);
}

#[test]
fn chunked_request_bodies_get_411() {
    let server = serve(echo);
    let out = raw(server.local_addr(), b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 411 Length Required\r\n"), "{out}");
}

#[test]
fn expect_100_continue() {
    let server = serve(echo);
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").unwrap();
    let response = read_one(&mut s);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("\"body\": \"hello\""), "{response}");
}

#[test]
fn http10_and_connection_close_end_the_connection() {
    let server = serve(echo);
    for request in [&b"GET /a HTTP/1.0\r\n\r\n"[..], b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"] {
        let out = raw(server.local_addr(), request);
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
        assert!(out.ends_with("}\n"), "{out}");
    }
    // HTTP/1.0 with keep-alive stays open; pipelined requests are answered in order.
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\n\r\nHEAD /3 HTTP/1.1\r\n\r\n")
        .unwrap();
    let first = read_one(&mut s);
    assert!(first.contains("Connection: keep-alive") && first.contains("\"path\": \"/1\""), "{first}");
    assert!(read_one(&mut s).contains("\"path\": \"/2\""));
    let head = read_one_response(&mut s, true);
    assert!(
        head.contains("Content-Length: ") && head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
}

#[test]
fn head_requests_get_no_body() {
    let server = serve(|_| Response::new(200, "text/plain", "twelve bytes"));
    let c = client(&server);
    let r = c.request("HEAD", "/", None).unwrap();
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header_value("content-length"), Some("12"));
    // The connection is still in step.
    assert_eq!(c.get("/").unwrap().text(), "twelve bytes");
}

#[test]
fn handler_panic_gives_500_and_the_server_keeps_serving() {
    let server = serve(|req| {
        if req.path == "/panic" {
            panic!("handler bug (expected by the test)");
        }
        Response::new(200, "text/plain", "fine")
    });
    let c = client(&server);
    let r = c.get("/panic").unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.json_body::<Value>().unwrap(), json!({"message": "internal error", "status": 500}));
    assert_eq!(c.get("/ok").unwrap().text(), "fine");
    assert_eq!(client(&server).get("/ok").unwrap().text(), "fine");
}

#[test]
fn path_and_query_are_percent_decoded() {
    let server = serve(echo);
    let c = client(&server);
    let path = format!(
        "/v1/nodes/{}?q={}&plus=a+b&flag&&enc%3Dname=%E2%9C%93",
        percent_encode("web 1/é"),
        percent_encode("x&y=z+w")
    );
    let v = c.get(&path).unwrap().json_body::<Value>().unwrap();
    assert_eq!(v["path"], "/v1/nodes/web 1/é");
    assert_eq!(v["query"], json!([["q", "x&y=z+w"], ["plus", "a b"], ["flag", ""], ["enc=name", "✓"]]));
}

#[test]
fn connecting_to_a_closed_port_is_a_connect_error() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
    match c.get("/") {
        Err(e @ Error::Connect(..)) => {
            let Error::Connect(target, _) = &e else { unreachable!() };
            assert_eq!(target, &format!("127.0.0.1:{port}"));
            assert!(e.to_string().starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")), "{e}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[test]
fn bad_urls_and_paths_are_url_errors() {
    assert!(matches!(Client::new("127.0.0.1:8181", None), Err(Error::Url(_))));
    assert!(matches!(Client::new("http://h:99999", None), Err(Error::Url(_))));
    let server = serve(echo);
    let c = client(&server);
    assert!(matches!(c.get("v1/status"), Err(Error::Url(_))));
    assert!(matches!(c.get("/with space"), Err(Error::Url(_))));
}

#[test]
fn per_request_timeout() {
    let server = serve(|req| {
        if req.path == "/slow" {
            thread::sleep(Duration::from_millis(1500));
        }
        Response::new(200, "text/plain", req.path)
    });
    let c = client(&server);
    let start = Instant::now();
    match c.request_with_timeout("GET", "/slow", None, Duration::from_millis(200)) {
        Err(Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
            assert!(e.to_string().contains("no response from"), "{e}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_millis(1400), "waited {:?}", start.elapsed());
    assert_eq!(c.get("/fast").unwrap().text(), "/fast");
}

#[test]
fn a_connection_closed_while_idle_is_replaced() {
    let ports = Arc::new(Mutex::new(Vec::new()));
    let seen = ports.clone();
    let limits = Limits { idle_timeout: Duration::from_millis(200), ..Limits::default() };
    let server = serve_with(limits, move |req| {
        seen.lock().unwrap().push(req.peer.port());
        Response::new(200, "text/plain", "ok")
    });
    let c = client(&server);
    assert_eq!(c.get("/").unwrap().status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.open_connections() > 0 {
        assert!(Instant::now() < deadline, "the idle connection was not closed");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.send_json("POST", "/", &json!({})).unwrap().status, 200);
    let ports = ports.lock().unwrap().clone();
    assert_eq!(ports.len(), 2);
    assert_ne!(ports[0], ports[1]);
}

#[test]
fn shutdown_stops_accepting_and_closes_idle_connections() {
    let (started, slow_started) = std::sync::mpsc::channel();
    let started = Mutex::new(started);
    let limits = Limits { idle_timeout: Duration::from_secs(600), ..Limits::default() };
    let server = serve_with(limits, move |req| {
        if req.path == "/slow" {
            started.lock().unwrap().send(()).unwrap();
            thread::sleep(Duration::from_millis(500));
        }
        Response::new(200, "text/plain", "ok")
    });
    let addr = server.local_addr();
    let idle = client(&server);
    assert_eq!(idle.get("/").unwrap().status, 200);
    let busy = client(&server);
    let in_flight = thread::spawn(move || busy.get("/slow").unwrap());
    slow_started.recv_timeout(Duration::from_secs(10)).unwrap();

    let start = Instant::now();
    server.shutdown();
    assert!(start.elapsed() < Duration::from_secs(2), "shutdown took {:?}", start.elapsed());
    assert!(TcpStream::connect(addr).is_err(), "still accepting");
    // The idle keep-alive connection was closed, so the client has to reconnect, and cannot.
    assert!(matches!(idle.get("/"), Err(Error::Connect(..))));
    // The request in progress finished, and its connection closes.
    let r = in_flight.join().unwrap();
    assert_eq!((r.status, r.header_value("connection")), (200, Some("close")));
}

#[test]
fn client_reads_chunked_and_close_delimited_responses() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n").unwrap();
        let _ = s.read(&mut buf).unwrap();
        s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end").unwrap();
        drop(s);
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.read(&mut buf).unwrap();
        s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    });
    let c = Client::new(&format!("http://{addr}"), None).unwrap().with_timeout(Duration::from_secs(10));
    assert_eq!(c.get("/chunked").unwrap().text(), "hello, world");
    let r = c.get("/close").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "until the end"));
    assert_eq!(c.get("/none").unwrap().status, 204);
    fake.join().unwrap();
}

/// A temporary directory with a self-signed certificate for 127.0.0.1, made by `openssl`.
struct TestCert {
    dir: PathBuf,
}

/// Runs `openssl` in `dir`; a clear failure if it is missing.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("the TLS tests need the `openssl` command-line tool to make test certificates: cannot run it: {e}")
    });
    assert!(output.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

impl TestCert {
    fn empty() -> TestCert {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fleetwall-http-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TestCert { dir }
    }

    /// A self-signed certificate (which openssl marks as a CA) and its key.
    fn new() -> TestCert {
        let cert = TestCert::empty();
        openssl(
            &cert.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-days",
                "2",
                "-subj",
                "/CN=fleetwall-test",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
        );
        cert
    }

    /// A CA (`ca.pem`) and a certificate it signed (`cert.pem`, with `key.pem`).
    fn signed_by_ca() -> TestCert {
        let cert = TestCert::empty();
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        let run = |command: String| openssl(&cert.dir, &command.split_whitespace().collect::<Vec<_>>());
        run(format!("req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=fleetwall-test-ca"));
        run(format!("req {ec} -keyout key.pem -out cert.csr -subj /CN=fleetwall-test-server"));
        std::fs::write(cert.dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n")
            .unwrap();
        run("x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out cert.pem"
            .into());
        cert
    }

    fn files(&self) -> TlsFiles {
        TlsFiles { cert: self.dir.join("cert.pem"), key: self.dir.join("key.pem") }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve_tls(cert: &TestCert) -> Server {
    Server::bind("127.0.0.1:0", Some(&cert.files()), handler(echo)).unwrap()
}

fn https_client(server: &Server, ca: &Path) -> Client {
    Client::new(&format!("https://{}", server.local_addr()), Some(ca)).unwrap().with_timeout(Duration::from_secs(10))
}

#[test]
fn https_round_trip() {
    let cert = TestCert::new();
    let server = serve_tls(&cert);
    assert!(server.is_tls());
    let c = https_client(&server, &cert.cert()).with_token("tok");
    let v = c.send_json("POST", "/v1/x?a=%20", &json!({"k": "v"})).unwrap().json_body::<Value>().unwrap();
    assert_eq!((v["path"].as_str(), v["bearer"].as_str()), (Some("/v1/x"), Some("tok")));
    assert_eq!(v["query"], json!([["a", " "]]));
    assert_eq!(serde_json::from_str::<Value>(v["body"].as_str().unwrap()).unwrap(), json!({"k": "v"}));
    let again = c.get("/again").unwrap().json_body::<Value>().unwrap();
    assert_eq!(again["port"], v["port"], "the TLS connection should be reused");
}

#[test]
fn https_with_a_certificate_signed_by_a_ca() {
    let cert = TestCert::signed_by_ca();
    let server = serve_tls(&cert);
    let c = https_client(&server, &cert.dir.join("ca.pem"));
    assert_eq!(c.get("/ca?x=1").unwrap().json_body::<Value>().unwrap()["path"], "/ca");
    // A CA file holding the server's certificate itself (pinned) is also accepted.
    let pinned = https_client(&server, &cert.cert());
    assert_eq!(pinned.get("/pinned").unwrap().status, 200);
    // A different CA is refused.
    let other = TestCert::new();
    match https_client(&server, &other.cert()).get("/") {
        Err(Error::Tls(m)) => assert!(m.contains("certificate"), "{m}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[test]
fn https_needs_a_ca_file() {
    match Client::new("https://127.0.0.1:8181", None) {
        Err(Error::Tls(m)) => assert!(m.contains("CA certificate"), "{m}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    match Client::new("https://127.0.0.1:8181", Some(Path::new("/nonexistent/ca.pem"))) {
        Err(e @ Error::Tls(_)) => assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[test]
fn tls_server_reports_bad_files() {
    let cert = TestCert::new();
    let missing = TlsFiles { cert: cert.cert(), key: cert.dir.join("missing.pem") };
    let e = Server::bind("127.0.0.1:0", Some(&missing), handler(echo)).unwrap_err();
    assert!(matches!(e, Error::Tls(_)) && e.to_string().contains("missing.pem"), "{e}");
    let swapped = TlsFiles { cert: cert.files().key, key: cert.cert() };
    let e = Server::bind("127.0.0.1:0", Some(&swapped), handler(echo)).unwrap_err();
    assert!(e.to_string().contains("key.pem"), "{e}");
}

#[test]
fn https_with_the_wrong_ca_fails() {
    let cert = TestCert::new();
    let other = TestCert::new();
    let server = serve_tls(&cert);
    match https_client(&server, &other.cert()).get("/") {
        Err(Error::Tls(m)) => assert!(m.contains("certificate"), "{m}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    // The server survives the failed handshake.
    assert_eq!(https_client(&server, &cert.cert()).get("/").unwrap().status, 200);
}

#[test]
fn plain_http_against_tls_and_back_fail_quickly() {
    let cert = TestCert::new();
    let tls_server = serve_tls(&cert);
    let start = Instant::now();
    let plain =
        Client::new(&format!("http://{}", tls_server.local_addr()), None).unwrap().with_timeout(Duration::from_secs(3));
    let e = plain.get("/").unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(8), "took {:?}: {e}", start.elapsed());
    assert!(matches!(&e, Error::Protocol(m) if m.contains("https://")), "{e}");

    let plain_server = serve(echo);
    let start = Instant::now();
    match https_client(&plain_server, &cert.cert()).with_timeout(Duration::from_secs(3)).get("/") {
        Err(Error::Tls(m)) => assert!(m.contains("did not answer with TLS"), "{m}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(8));
}

#[test]
fn a_stalled_tls_handshake_no_longer_holds_a_connection_forever() {
    let cert = TestCert::new();
    let limits = Limits { head_deadline: Duration::from_secs(1), ..Limits::default() };
    let server = Server::bind_with("127.0.0.1:0", Some(&cert.files()), handler(echo), limits).unwrap();
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let start = Instant::now();
    // The first bytes of a TLS record header, then one byte every 200 ms.
    let mut closed = false;
    for &b in [0x16u8, 0x03, 0x01, 0x02].iter().cycle().take(50) {
        if stream.write_all(&[b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(_) => {
                closed = true;
                break;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the handshake was never cut off");
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
}
