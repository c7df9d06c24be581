//! A real `fleetwall serve` on loopback against callers without a valid token who announce
//! 60 MiB bodies: the server must answer 401 on the headers and not buffer the bodies (it used
//! to read them whole before authenticating: 16 such connections took it from 0.2 to 1.35 GB).

mod common;

use common::{free_port, root, Scratch, Serve};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 16;
const ANNOUNCED: usize = 62_914_560;

/// Starts `fleetwall serve` with the kafka example on a free loopback port.
fn serve(scratch: &Scratch) -> (Serve, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let fleet = root().join("examples/kafka-vpc.yaml");
    let child = Command::new(env!("CARGO_BIN_EXE_fleetwall"))
        .args(["serve", "--listen", &addr, "--fleet", fleet.to_str().unwrap()])
        .current_dir(&scratch.0)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let serve = Serve(child);
    let health = fleetwall_api::http::Client::new(&format!("http://{addr}"), None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !health.get("/healthz").is_ok_and(|r| r.status == 200) {
        assert!(Instant::now() < deadline, "the server did not come up");
        thread::sleep(Duration::from_millis(100));
    }
    (serve, addr)
}

/// A field of /proc/PID/status in MiB (VmRSS: now, VmHWM: the peak).
fn memory_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// Sends a `PUT /v1/fleet` head announcing a 60 MiB body (with `auth` as the token header),
/// then body bytes: `chunk` bytes every `every` until the server closes, the whole body is
/// sent or 20 s pass. Returns the status line and how long after the head it arrived.
fn stranger(addr: &str, auth: &'static str, chunk: usize, every: Duration) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut reader = s.try_clone().unwrap();
    write!(s, "PUT /v1/fleet HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {ANNOUNCED}\r\n\r\n").unwrap();
    let sent_head = Instant::now();
    let writer = thread::spawn(move || {
        let body = vec![b'#'; chunk];
        let mut sent = 0;
        while sent < ANNOUNCED && sent_head.elapsed() < Duration::from_secs(20) {
            if s.write_all(&body[..chunk.min(ANNOUNCED - sent)]).is_err() {
                return;
            }
            sent += chunk;
            thread::sleep(every);
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut answered = None;
    while !got.windows(2).any(|w| w == b"\r\n") {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        answered.get_or_insert_with(|| sent_head.elapsed());
    }
    writer.join().unwrap();
    let status = String::from_utf8_lossy(&got).lines().next().unwrap_or_default().to_string();
    (status, answered.unwrap_or_else(|| sent_head.elapsed()))
}

/// Runs `CONNECTIONS` strangers at once (alternately without a token and with a wrong one);
/// every one must get a 401 within 3 s of its head. Returns the server's RSS growth in MiB.
fn strangers(chunk: usize, every: Duration) -> (u64, u64) {
    let scratch = Scratch::new(&format!("strangers-{chunk}"));
    let (server, addr) = serve(&scratch);
    let pid = server.0.id();
    let before = memory_mib(pid, "VmRSS:");
    let callers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let addr = addr.clone();
            let auth = if i % 2 == 0 { "" } else { "Authorization: Bearer not-a-token\r\n" };
            thread::spawn(move || stranger(&addr, auth, chunk, every))
        })
        .collect();
    for caller in callers {
        let (status, after) = caller.join().unwrap();
        assert_eq!(status, "HTTP/1.1 401 Unauthorized");
        assert!(after < Duration::from_secs(3), "the 401 came {after:?} after the head");
    }
    let peak = memory_mib(pid, "VmHWM:");
    eprintln!("server RSS before {before} MiB, peak {peak} MiB");
    (before, peak)
}

#[test]
fn strangers_sending_60_mib_bodies_no_longer_grow_the_servers_memory() {
    let (before, peak) = strangers(64 << 10, Duration::ZERO);
    assert!(peak < before + 100, "the server's memory grew from {before} MiB to {peak} MiB");
}

#[test]
fn strangers_trickling_a_60_mib_body_get_401_without_waiting_for_it() {
    let (before, peak) = strangers(1024, Duration::from_millis(100));
    assert!(peak < before + 100, "the server's memory grew from {before} MiB to {peak} MiB");
}
