//! The HTTP server (`fleetwall_server::web`) against untrusted clients on 127.0.0.1: clients
//! that announce large bodies without credentials, trickle heads and bodies, or crowd the
//! connection cap. Each test is named after what used to break (in the hand-written server
//! this one replaced; the same properties hold on hyper).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fleetwall_api::http::Client;
use fleetwall_server::web::{Admission, Admit, Handler, Hooks, Limits, Request, RequestHead, Response, Server};

fn admitting(handler: Handler, admit: Admit) -> Server {
    let hooks = Hooks { handler, admit: Some(admit), wait: None };
    Server::bind_with("127.0.0.1:0", None, hooks, Limits::default()).unwrap()
}

fn with_limits(handler: Handler, limits: Limits) -> Server {
    Server::bind_with("127.0.0.1:0", None, Hooks { handler, admit: None, wait: None }, limits).unwrap()
}

fn handler(f: impl Fn(Request) -> Response + Send + Sync + 'static) -> Handler {
    Arc::new(f)
}

/// Admits only `Bearer good` (with a 1 KiB body limit for `/public`), like the control plane.
fn bearer_admission() -> Admit {
    Arc::new(|head: &RequestHead<'_>| {
        if head.path == "/public" {
            return Admission::Read { max_body: 1024, caller: None };
        }
        match head.bearer() {
            Some("good") => Admission::Read { max_body: usize::MAX, caller: None },
            _ => Admission::Refuse(Response::error(401, "no entry").header("www-authenticate", "Bearer")),
        }
    })
}

/// Counts the requests the handler saw, answering with the body's length.
fn counting(seen: Arc<AtomicUsize>) -> Handler {
    handler(move |req| {
        seen.fetch_add(1, Ordering::SeqCst);
        Response::new(200, "text/plain", req.body.len().to_string())
    })
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Reads the status line of a response (and whatever follows it in the same reads).
fn read_status(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while !data.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&data).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

#[test]
fn a_stranger_announcing_a_huge_body_is_refused_on_its_headers() {
    let seen = Arc::new(AtomicUsize::new(0));
    let server = admitting(counting(seen.clone()), bearer_admission());
    for token in ["", "Authorization: Bearer wrong\r\n"] {
        let mut s = connect(server.local_addr());
        let start = Instant::now();
        write!(s, "PUT /v1/fleet HTTP/1.1\r\nHost: x\r\n{token}Content-Length: 62914560\r\n\r\n").unwrap();
        s.write_all(&[b'x'; 100]).unwrap();
        assert_eq!(read_status(&mut s), "HTTP/1.1 401 Unauthorized");
        assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
        // The connection ends without the server waiting for the body.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(start.elapsed() < Duration::from_secs(5), "held for {:?}", start.elapsed());
    }
    // A public route reads only a small body, and the admitted caller keeps the full limit.
    let c = Client::new(&format!("http://{}", server.local_addr()), None).unwrap();
    let r = c.request("POST", "/public", Some(("text/plain", &[b'y'; 4096]))).unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(c.request("POST", "/public", Some(("text/plain", &[b'y'; 1024]))).unwrap().text(), "1024");
    let big = vec![b'z'; 2 << 20];
    let r = c.clone().with_token("good").request("PUT", "/v1/fleet", Some(("text/plain", &big))).unwrap();
    assert_eq!(r.text(), (2 << 20).to_string());
    assert_eq!(seen.load(Ordering::SeqCst), 2, "refused requests never reach the handler");
}

#[test]
fn an_expect_100_continue_from_a_stranger_gets_401_not_continue() {
    let seen = Arc::new(AtomicUsize::new(0));
    let server = admitting(counting(seen.clone()), bearer_admission());
    let mut s = connect(server.local_addr());
    write!(s, "PUT /v1/fleet HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n").unwrap();
    assert_eq!(read_status(&mut s), "HTTP/1.1 401 Unauthorized");
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

#[test]
fn bodies_beyond_the_inflight_budget_get_503_and_are_not_read() {
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let gate = Mutex::new((entered_tx, release_rx));
    let h = handler(move |req| {
        if req.path == "/hold" {
            let gate = gate.lock().unwrap();
            gate.0.send(()).unwrap();
            let _ = gate.1.recv_timeout(Duration::from_secs(10));
        }
        Response::new(200, "text/plain", req.body.len().to_string())
    });
    let limits = Limits { max_inflight_body: 1 << 20, ..Limits::default() };
    let server = with_limits(h, limits);
    let url = format!("http://{}", server.local_addr());
    let held = {
        let url = url.clone();
        thread::spawn(move || {
            let c = Client::new(&url, None).unwrap();
            c.request("POST", "/hold", Some(("text/plain", &[b'a'; 700 << 10]))).unwrap().text()
        })
    };
    entered.recv_timeout(Duration::from_secs(10)).unwrap();
    // 700 KiB are reserved while the first request is handled: 400 KiB more do not fit.
    let mut s = connect(server.local_addr());
    let start = Instant::now();
    write!(s, "POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 400 << 10).unwrap();
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{response}");
    assert!(response.contains("retry-after: 1\r\n"), "{response}");
    assert!(start.elapsed() < Duration::from_secs(5), "the body was waited for: {:?}", start.elapsed());
    let c = Client::new(&url, None).unwrap();
    assert_eq!(c.request("POST", "/other", Some(("text/plain", &[b'b'; 200 << 10]))).unwrap().text(), "204800");
    release.send(()).unwrap();
    assert_eq!(held.join().unwrap(), (700 << 10).to_string());
    // The reservation was given back when the request was done.
    assert_eq!(c.request("POST", "/other", Some(("text/plain", &[b'c'; 900 << 10]))).unwrap().text(), "921600");
}

fn short_deadlines() -> Limits {
    Limits {
        head_deadline: Duration::from_secs(1),
        body_deadline: Duration::from_secs(1),
        min_body_rate: 1 << 30,
        ..Limits::default()
    }
}

/// Sends `data` on `s` one byte every `every` (60 bytes at most) until the server answers or
/// closes; returns the status line and how long it took.
fn trickle(mut s: TcpStream, data: &[u8], every: Duration) -> (String, Duration) {
    s.set_read_timeout(Some(every)).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    for &b in data.iter().cycle().take(60) {
        if s.write_all(&[b]).is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if got.windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let status = String::from_utf8_lossy(&got).lines().next().unwrap_or_default().to_string();
    (status, start.elapsed())
}

#[test]
fn a_trickled_head_no_longer_holds_a_connection_forever() {
    let server = with_limits(handler(|_| Response::new(200, "", "")), short_deadlines());
    let (status, took) = trickle(
        connect(server.local_addr()),
        b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        Duration::from_millis(200),
    );
    // Dropped: there is no request to answer yet.
    assert_eq!(status, "", "closed without an answer");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_trickled_body_no_longer_holds_a_connection_forever() {
    let server = with_limits(handler(|_| Response::new(200, "", "")), short_deadlines());
    let mut s = connect(server.local_addr());
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n").unwrap();
    let (status, took) = trickle(s, b"x", Duration::from_millis(200));
    assert_eq!(status, "HTTP/1.1 408 Request Timeout");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn beyond_the_connection_cap_a_connection_is_closed_at_once_and_the_others_are_served() {
    let limits = Limits { max_connections: 2, ..Limits::default() };
    let server = with_limits(handler(|_| Response::new(200, "text/plain", "ok")), limits);
    let held: Vec<TcpStream> = (0..2).map(|_| connect(server.local_addr())).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.open_connections() < 2 {
        assert!(Instant::now() < deadline, "{} open", server.open_connections());
        thread::sleep(Duration::from_millis(10));
    }
    let mut third = connect(server.local_addr());
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut got = Vec::new();
    let _ = third.read_to_end(&mut got);
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    let mut first = held.into_iter().next().unwrap();
    first.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_status(&mut first), "HTTP/1.1 200 OK");
}

#[test]
fn chunked_bodies_tls_on_the_plain_port_and_http_1_0_get_plain_answers() {
    let server =
        with_limits(handler(|req| Response::new(200, "text/plain", req.body.len().to_string())), Limits::default());
    let answer = |bytes: &[u8]| {
        let mut s = connect(server.local_addr());
        s.write_all(bytes).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    };
    let chunked = answer(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert!(chunked.starts_with("HTTP/1.1 411 Length Required\r\n"), "{chunked}");
    let tls = answer(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00]);
    assert!(tls.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{tls}");
    assert!(tls.contains("this port speaks plain HTTP, not TLS: use an http:// URL"), "{tls}");
    // HTTP/1.0 without keep-alive: answered, then closed.
    let old = answer(b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc");
    assert!(old.starts_with("HTTP/1.0 200 OK\r\n") && old.ends_with("\r\n\r\n3"), "{old}");
}
