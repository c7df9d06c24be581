//! Thousands of idle and slow connections on 127.0.0.1 must not lock out long-polls (a test
//! binary of its own: it needs about 10,000 descriptors and 5,000 server threads).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fleetwall_http::{raise_open_files_limit, Client, Limits, Response, Server};

const IDLE: usize = 2500;
const TRICKLING: usize = 2500;

#[test]
fn five_thousand_idle_and_trickling_connections_no_longer_lock_out_long_polls() {
    let fds = raise_open_files_limit().unwrap();
    assert!(fds >= 2 * (IDLE + TRICKLING) as u64 + 100, "need more descriptors than the hard limit of {fds}");
    let handler = Arc::new(|req: fleetwall_http::Request| {
        if req.path == "/poll" {
            thread::sleep(Duration::from_secs(1));
        }
        Response::new(200, "text/plain", req.path)
    });
    let limits = Limits { head_deadline: Duration::from_secs(2), ..Limits::default() };
    let server = Server::bind_with("127.0.0.1:0", None, handler, limits).unwrap();
    let addr = server.local_addr();
    let start = Instant::now();

    let mut slow_connects = 0;
    let mut idle = Vec::with_capacity(IDLE);
    let mut trickling = Vec::with_capacity(TRICKLING);
    for i in 0..IDLE + TRICKLING {
        let t = Instant::now();
        let s = TcpStream::connect(addr).unwrap();
        if t.elapsed() > Duration::from_millis(500) {
            slow_connects += 1;
        }
        if i % 2 == 1 {
            trickling.push(s);
        } else {
            idle.push(s);
        }
    }
    let opened = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.open_connections() < IDLE + TRICKLING && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    // Then half of them start a head and trickle one more byte of it every second (for at
    // most 4 s); their head deadline starts with the first byte.
    let trickle_start = Instant::now();
    let mut slow: Vec<TcpStream> = trickling.iter().map(|s| s.try_clone().unwrap()).collect();
    for s in &mut slow {
        s.write_all(b"G").unwrap();
    }
    let trickler = thread::spawn(move || {
        for _ in 0..4 {
            thread::sleep(Duration::from_secs(1));
            for s in &mut slow {
                let _ = s.write_all(b"E");
            }
        }
    });
    let open = server.open_connections();

    // A long-poll and a health check get through while the crowd is connected.
    let c = Client::new(&format!("http://{addr}"), None).unwrap().with_timeout(Duration::from_secs(5));
    let poll_start = Instant::now();
    let poll = c.get("/poll").map(|r| r.text());
    let poll_took = poll_start.elapsed();
    let health = Client::new(&format!("http://{addr}"), None).unwrap().get("/healthz").map(|r| r.text());

    // Every trickling connection is answered 408 and closed by its head deadline (waiting for
    // all of them together at most 8 s after the first byte).
    let mut timed_out = 0;
    let give_up = trickle_start + Duration::from_secs(8);
    for s in &mut trickling {
        let left = give_up.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
        s.set_read_timeout(Some(left)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        if got.starts_with(b"HTTP/1.1 408 ") {
            timed_out += 1;
        }
    }
    let closed_by = trickle_start.elapsed();
    trickler.join().unwrap();
    // The idle ones are still open (only an idle timeout or the cap closes them).
    let still_open = server.open_connections();
    drop(idle);
    drop(trickling);
    server.shutdown();

    eprintln!("opened in {opened:?} ({slow_connects} connects over 0.5 s); {open} open; long-poll took {poll_took:?}; trickling closed by {closed_by:?}");
    assert_eq!(open, IDLE + TRICKLING, "all connections were accepted and kept");
    assert_eq!(poll.unwrap(), "/poll");
    assert!(poll_took < Duration::from_secs(3), "the long-poll took {poll_took:?}");
    assert_eq!(health.unwrap(), "/healthz");
    assert_eq!(timed_out, TRICKLING, "every trickling connection got a 408");
    assert!(still_open >= IDLE, "idle connections stayed: {still_open}");
    assert!(closed_by < Duration::from_secs(15), "took {closed_by:?}");
}
