//! The client against untrusted servers (raw listeners on 127.0.0.1) that trickle a response,
//! never end it, announce too much, or try to send it elsewhere. Each test is named after
//! what it must not allow.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use fleetwall_api::http::{Client, Error};

/// Serves one connection with `respond` on a raw listener, after reading the request (whose
/// first bytes go to `seen`).
fn hostile_server_seeing(
    seen: Option<std::sync::mpsc::Sender<String>>,
    respond: impl FnOnce(TcpStream) + Send + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            if let Some(seen) = seen {
                let _ = seen.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            respond(s);
        }
    });
    format!("http://{addr}")
}

fn hostile_server(respond: impl FnOnce(TcpStream) + Send + 'static) -> String {
    hostile_server_seeing(None, respond)
}

#[test]
fn a_server_trickling_its_response_cannot_hold_the_client_past_its_timeout() {
    let url = hostile_server(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        for _ in 0..100 {
            if s.write_all(b"x").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let c = Client::new(&url, None).unwrap().with_timeout(Duration::from_secs(1));
    let start = Instant::now();
    match c.get("/") {
        Err(Error::Io(e)) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(3), "held for {:?}", start.elapsed());
}

#[test]
fn a_server_trickling_its_head_cannot_hold_the_client_past_its_timeout() {
    let url = hostile_server(|mut s| {
        for &b in b"HTTP/1.1 200 OK\r\nX-Slow: ".iter().chain([b'a'; 100].iter()) {
            if s.write_all(&[b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let c = Client::new(&url, None).unwrap();
    let start = Instant::now();
    let r = c.request_with_timeout("GET", "/", None, Duration::from_secs(1));
    assert!(matches!(&r, Err(Error::Io(e)) if e.kind() == ErrorKind::TimedOut), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(3), "held for {:?}", start.elapsed());
}

#[test]
fn an_endless_response_body_stops_at_the_clients_limit() {
    let endless = |mut s: TcpStream| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let chunk = [b'x'; 64 << 10];
        // Bounded: 2 GiB, far beyond any limit under test.
        for _ in 0..(32 << 10) {
            if s.write_all(&chunk).is_err() {
                return;
            }
        }
    };
    let c = Client::new(&hostile_server(endless), None).unwrap().with_timeout(Duration::from_secs(20));
    let r = c.get("/");
    assert!(matches!(&r, Err(Error::Protocol(m)) if m.contains("limit of 67108864 bytes")), "{r:?}");
    let announced = hostile_server(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n");
    });
    let r = Client::new(&announced, None).unwrap().get("/");
    assert!(matches!(&r, Err(Error::Protocol(m)) if m.contains("larger than the client's limit")), "{r:?}");
    // A smaller limit holds too (the agent's), and a caller that expects more can raise it.
    let small = hostile_server(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        for _ in 0..1000 {
            if s.write_all(b"400\r\n")
                .and_then(|_| s.write_all(&[b'z'; 1024]))
                .and_then(|_| s.write_all(b"\r\n"))
                .is_err()
            {
                return;
            }
        }
    });
    let r = Client::new(&small, None).unwrap().with_max_response_body(100 << 10).get("/");
    assert!(matches!(&r, Err(Error::Protocol(m)) if m.contains("limit of 102400 bytes")), "{r:?}");
    let big = hostile_server(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 70000000\r\n\r\n");
        let _ = s.write_all(&vec![b'y'; 70_000_000]);
    });
    let r = Client::new(&big, None).unwrap().with_max_response_body(100 << 20).get("/").unwrap();
    assert_eq!(r.body.len(), 70_000_000);
}

#[test]
fn a_redirect_is_not_followed_and_the_token_goes_only_where_it_was_meant() {
    let (tx, rx) = std::sync::mpsc::channel();
    let elsewhere = hostile_server_seeing(Some(tx), |mut s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let location = elsewhere.clone();
    let url = hostile_server_seeing(Some(seen_tx), move |mut s| {
        let _ = write!(s, "HTTP/1.1 302 Found\r\nLocation: {location}/steal\r\nContent-Length: 0\r\n\r\n");
    });
    let r = Client::new(&url, None).unwrap().with_token("secret-token").get("/v1/status").unwrap();
    assert_eq!(r.status, 302, "answered as it is, not followed");
    let request = seen.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(request.starts_with("GET /v1/status HTTP/1.1\r\n"), "{request}");
    assert!(request.to_ascii_lowercase().contains("authorization: bearer secret-token\r\n"), "{request}");
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err(), "the redirect target was contacted");
}

#[test]
fn https_without_a_ca_file_or_to_a_plain_server_fails_with_a_reason() {
    let e = Client::new("https://127.0.0.1:1", None).unwrap_err();
    assert!(e.to_string().contains("needs a CA certificate file"), "{e}");
    let dir = std::env::temp_dir().join(format!("fw-api-untrusted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let plain = hostile_server(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let url = plain.replace("http://", "https://");
    let r = Client::new(&url, Some(&ca)).unwrap().with_timeout(Duration::from_secs(5)).get("/");
    assert!(matches!(&r, Err(Error::Tls(m)) if m.contains("did not answer with TLS")), "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
