//! The client against untrusted servers (raw listeners on 127.0.0.1) that trickle a response
//! or never end it. Each test is named after what used to break.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use fleetwall_http::{Client, Error};

/// Serves one connection with `respond` on a raw listener, for client tests.
fn hostile_server(respond: impl FnOnce(TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            respond(s);
        }
    });
    format!("http://{addr}")
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
    assert!(matches!(&r, Err(Error::Io(e)) if e.to_string().contains("limit of 67108864 bytes")), "{r:?}");
    let announced = hostile_server(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n");
    });
    let r = Client::new(&announced, None).unwrap().get("/");
    assert!(matches!(&r, Err(Error::Protocol(m)) if m.contains("larger than the client's limit")), "{r:?}");
    // A caller that expects more can raise the limit.
    let big = hostile_server(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 70000000\r\n\r\n");
        let _ = s.write_all(&vec![b'y'; 70_000_000]);
    });
    let r = Client::new(&big, None).unwrap().with_max_response_body(100 << 20).get("/").unwrap();
    assert_eq!(r.body.len(), 70_000_000);
}
