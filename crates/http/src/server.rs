//! The server: an accept thread and one thread per connection.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::wire::{self, BufConn, Head};
use crate::{percent_decode, Error, Handler, Request, Response, TlsFiles};

/// Limits and timeouts of a [`Server`]; build with `Limits { max_body: .., ..Limits::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body in bytes (larger → 413). Default 64 MiB.
    pub max_body: usize,
    /// Largest accepted request line plus header block in bytes (larger → 431). Default 64 KiB.
    pub max_head: usize,
    /// How long a keep-alive connection may sit idle between requests. Default 120 s.
    pub idle_timeout: Duration,
    /// Longest wait for each read once a request has started arriving, and for the TLS
    /// handshake. Default 30 s.
    pub read_timeout: Duration,
    /// Longest wait for each write of a response. Default 30 s.
    pub write_timeout: Duration,
    /// Connections beyond this many open ones are closed right after being accepted.
    /// Default 4096.
    pub max_connections: usize,
    /// Stack size of each connection thread (handlers run on it). Default 1 MiB.
    pub stack_size: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 64 << 20,
            max_head: 64 << 10,
            idle_timeout: Duration::from_secs(120),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 4096,
            stack_size: 1 << 20,
        }
    }
}

/// A running HTTP/1.1 server. Dropping it has the effect of [`Server::shutdown`]; keep it alive
/// (or call [`Server::join`]) for as long as it should serve.
pub struct Server {
    addr: SocketAddr,
    /// The listening socket's descriptor, to wake the accept thread on shutdown.
    listen_fd: std::os::fd::RawFd,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// One open connection, as the server tracks it for shutdown.
struct Slot {
    tcp: Arc<TcpStream>,
    /// Waiting for the next request (nothing buffered, no handler running).
    idle: bool,
}

struct Shared {
    handler: Handler,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
    stopping: AtomicBool,
    open: AtomicUsize,
    conns: Mutex<HashMap<u64, Slot>>,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a connection idle or busy; refuses (false) to mark it idle once stopping.
    fn set_idle(&self, id: u64, idle: bool) -> bool {
        let mut conns = self.conns();
        if idle && self.stopping.load(Ordering::SeqCst) {
            return false;
        }
        if let Some(slot) = conns.get_mut(&id) {
            slot.idle = idle;
        }
        true
    }

    fn unregister(&self, id: u64) {
        self.conns().remove(&id);
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Server {
    /// Binds `addr` (e.g. `"127.0.0.1:0"`, `"[::]:8181"`) and serves in background threads,
    /// over TLS when `tls` is given, with the default [`Limits`].
    pub fn bind(addr: &str, tls: Option<&TlsFiles>, handler: Handler) -> Result<Server, Error> {
        Server::bind_with(addr, tls, handler, Limits::default())
    }

    /// Like [`Server::bind`], with explicit limits and timeouts.
    pub fn bind_with(addr: &str, tls: Option<&TlsFiles>, handler: Handler, limits: Limits) -> Result<Server, Error> {
        let tls = tls.map(crate::tls::server_config).transpose()?;
        let listener =
            TcpListener::bind(addr).map_err(|e| Error::Io(annotate(e, &format!("cannot listen on {addr}"))))?;
        let local = listener.local_addr()?;
        let listen_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let shared = Arc::new(Shared {
            handler,
            tls,
            limits,
            stopping: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            conns: Mutex::new(HashMap::new()),
        });
        let accept_shared = shared.clone();
        let accept = thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || accept_loop(listener, accept_shared))
            .map_err(|e| Error::Io(annotate(e, "cannot start the accept thread")))?;
        Ok(Server { addr: local, listen_fd, shared, accept: Some(accept) })
    }

    /// The address the server listens on (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether this server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// How many connections are open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Stops accepting connections and returns promptly: the listening socket is closed when
    /// this returns, idle keep-alive connections are closed, and requests in progress finish
    /// (their responses say `Connection: close`) on their own threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Blocks the calling thread for as long as the server runs (i.e. forever, unless the
    /// accept thread dies).
    pub fn join(mut self) {
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }

    fn stop(&mut self) {
        let Some(accept) = self.accept.take() else { return };
        self.shared.stopping.store(true, Ordering::SeqCst);
        for slot in self.shared.conns().values().filter(|slot| slot.idle) {
            let _ = slot.tcp.shutdown(Shutdown::Both);
        }
        // Wake the accept thread: on Linux, shutting down a listening socket makes a blocked
        // accept() return (EINVAL); the thread sees the flag and exits, closing the listener.
        // (No connection to ourselves: the listener may live in another network namespace.)
        // SAFETY: the descriptor belongs to the listener the accept thread still owns (it
        // closes it only after this wakes it); shutdown() does not close or reuse it.
        unsafe {
            libc::shutdown(self.listen_fd, libc::SHUT_RDWR);
        }
        let _ = accept.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("tls", &self.shared.tls.is_some())
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

fn annotate(e: io::Error, context: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{context}: {e}"))
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_id: u64 = 0;
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors or similar: back off instead of spinning.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) {
                    thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
        };
        if shared.open.load(Ordering::SeqCst) >= shared.limits.max_connections {
            continue;
        }
        next_id += 1;
        let id = next_id;
        let tcp = Arc::new(tcp);
        shared.open.fetch_add(1, Ordering::SeqCst);
        shared.conns().insert(id, Slot { tcp: tcp.clone(), idle: false });
        let conn_shared = shared.clone();
        let spawned = thread::Builder::new()
            .name("http-conn".into())
            .stack_size(shared.limits.stack_size)
            .spawn(move || serve_connection(&conn_shared, id, tcp, peer));
        if spawned.is_err() {
            // Out of threads: the connection is dropped (closed); back off a little.
            shared.unregister(id);
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A TCP stream shared with the shutdown bookkeeping (reads and writes go through `&TcpStream`).
struct SharedTcp(Arc<TcpStream>);

impl Read for SharedTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for SharedTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&*self.0).flush()
    }
}

type Stream = wire::Stream<SharedTcp, StreamOwned<ServerConnection, SharedTcp>>;

/// Unregisters a connection however its thread ends.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.unregister(self.id);
    }
}

/// How a connection ends.
enum Close {
    /// Orderly (after a response, or the peer went away): just close.
    Normal,
    /// After an error response to a request we did not read completely: stop writing, then
    /// drain what the peer still sends for a moment so that closing does not reset the
    /// connection before the peer has read the response.
    Linger,
}

fn serve_connection(shared: &Shared, id: u64, tcp: Arc<TcpStream>, peer: SocketAddr) {
    let _registration = Registration { shared, id };
    let limits = &shared.limits;
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(limits.write_timeout));
    let stream = match &shared.tls {
        None => Stream::Plain(SharedTcp(tcp.clone())),
        Some(config) => {
            let Ok(conn) = ServerConnection::new(config.clone()) else { return };
            let mut tls = StreamOwned::new(conn, SharedTcp(tcp.clone()));
            let _ = tcp.set_read_timeout(Some(limits.read_timeout));
            while tls.conn.is_handshaking() {
                match tls.conn.complete_io(&mut tls.sock) {
                    Ok((0, 0)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
            Stream::Tls(Box::new(tls))
        }
    };
    let mut conn = BufConn::new(stream);
    let close = serve_requests(shared, id, &tcp, &mut conn, peer);
    if let Stream::Tls(tls) = &mut conn.inner {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
    if let Close::Linger = close {
        let _ = tcp.shutdown(Shutdown::Write);
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut scratch = [0u8; 8192];
        let mut drained = 0usize;
        while drained < (4 << 20) && Instant::now() < deadline {
            match (&*tcp).read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

/// Serves requests on one connection until it is to be closed.
fn serve_requests(shared: &Shared, id: u64, tcp: &TcpStream, conn: &mut BufConn<Stream>, peer: SocketAddr) -> Close {
    let limits = &shared.limits;
    loop {
        if conn.buffered().is_empty() {
            if !shared.set_idle(id, true) {
                return Close::Normal;
            }
            let _ = tcp.set_read_timeout(Some(limits.idle_timeout));
            let filled = conn.fill();
            shared.set_idle(id, false);
            match filled {
                Ok(0) | Err(_) => return Close::Normal,
                Ok(_) => {}
            }
        }
        let _ = tcp.set_read_timeout(Some(limits.read_timeout));
        if shared.tls.is_none() && matches!(conn.buffered(), [0x16, 0x03, ..]) {
            return refuse(conn, 400, "this port speaks plain HTTP, not TLS: use an http:// URL");
        }
        let head = match conn.read_head(limits.max_head, true) {
            Ok(Head::Bytes(head)) => head,
            Ok(Head::Closed) | Err(_) => return Close::Normal,
            Ok(Head::TooLarge) => {
                return refuse(conn, 431, "the request line and header fields are too large");
            }
        };
        let (method, target, minor, headers) = match parse_request_head(&head) {
            Ok(parsed) => parsed,
            Err((status, message)) => return refuse(conn, status, &message),
        };
        if headers.iter().any(|(n, _)| n == "transfer-encoding") {
            return refuse(
                conn,
                411,
                "request bodies must be sent with Content-Length (Transfer-Encoding is not supported)",
            );
        }
        let length = match wire::content_length(&headers) {
            Ok(length) => length.unwrap_or(0),
            Err(message) => return refuse(conn, 400, &message),
        };
        if length > limits.max_body as u64 {
            return refuse(
                conn,
                413,
                &format!("the request body of {length} bytes is larger than the limit of {} bytes", limits.max_body),
            );
        }
        if let Some(expect) = headers.iter().find(|(n, _)| n == "expect").map(|(_, v)| v) {
            if !expect.eq_ignore_ascii_case("100-continue") {
                return refuse(conn, 417, &format!("unsupported expectation {expect:?}"));
            }
            if minor >= 1
                && length > 0
                && conn.buffered().is_empty()
                && conn.send(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
            {
                return Close::Normal;
            }
        }
        let (path, query) = match parse_target(&method, &target) {
            Ok(parsed) => parsed,
            Err(message) => return refuse(conn, 400, &message),
        };
        let mut body = Vec::new();
        if conn.read_exact_into(length as usize, &mut body).is_err() {
            return Close::Normal;
        }
        let mut keep_alive = if minor >= 1 {
            !wire::has_token(&headers, "connection", "close")
        } else {
            wire::has_token(&headers, "connection", "keep-alive")
        };
        let head_only = method == "HEAD";
        let request = Request { method, path, query, headers, body, peer };
        let handler = &shared.handler;
        let response = catch_unwind(AssertUnwindSafe(|| handler(request)))
            .unwrap_or_else(|_| Response::error(500, "internal error"));
        if shared.stopping.load(Ordering::SeqCst) || wire::has_token(&response.headers, "connection", "close") {
            keep_alive = false;
        }
        let _ = tcp.set_read_timeout(Some(limits.read_timeout));
        if conn.send(&encode_response(&response, head_only, keep_alive)).is_err() || !keep_alive {
            return Close::Normal;
        }
    }
}

/// Answers with an error and closes the connection.
fn refuse(conn: &mut BufConn<Stream>, status: u16, message: &str) -> Close {
    let _ = conn.send(&encode_response(&Response::error(status, message), false, false));
    Close::Linger
}

type RequestHead = (String, String, u8, Vec<(String, String)>);

/// Parses the request line and header fields; `Err((status, message))` when unacceptable.
fn parse_request_head(head: &[u8]) -> Result<RequestHead, (u16, String)> {
    let bad = |m: String| (400, m);
    let lines = wire::head_lines(head).map_err(bad)?;
    let (request_line, header_lines) = lines.split_first().ok_or_else(|| bad("empty request".into()))?;
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!("malformed request line {:?}", String::from_utf8_lossy(request_line))));
    };
    if !wire::is_token(method) {
        return Err(bad(format!("malformed method {:?}", String::from_utf8_lossy(method))));
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(bad(format!("malformed request target {:?}", String::from_utf8_lossy(target))));
    }
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            return Err((505, format!("HTTP version {} is not supported", String::from_utf8_lossy(version))));
        }
        _ => return Err(bad(format!("malformed HTTP version {:?}", String::from_utf8_lossy(version)))),
    };
    let headers = wire::parse_header_lines(header_lines).map_err(bad)?;
    // Both are ASCII, checked above.
    let method = String::from_utf8_lossy(method).into_owned();
    let target = String::from_utf8_lossy(target).into_owned();
    Ok((method, target, minor, headers))
}

/// Splits a request target into the decoded path and query pairs.
fn parse_target(method: &str, target: &str) -> Result<(String, Vec<(String, String)>), String> {
    if target == "*" && method == "OPTIONS" {
        return Ok(("*".into(), Vec::new()));
    }
    let mut origin = target;
    // Absolute form ("http://host/path"): keep the path and query.
    if !origin.starts_with('/') {
        let lower = origin.get(..8).unwrap_or(origin).to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &origin[7..]
        } else if lower.starts_with("https://") {
            &origin[8..]
        } else {
            return Err(format!("malformed request target {target:?}"));
        };
        origin = rest.find(['/', '?']).map_or("/", |i| &rest[i..]);
    }
    let origin = origin.split_once('#').map_or(origin, |(o, _)| o);
    let (raw_path, raw_query) = origin.split_once('?').unwrap_or((origin, ""));
    let path = if raw_path.is_empty() {
        "/".to_string()
    } else {
        percent_decode(raw_path, false).ok_or_else(|| format!("malformed percent-encoding in path {raw_path:?}"))?
    };
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode =
            |s: &str| percent_decode(s, true).ok_or_else(|| format!("malformed percent-encoding in query {pair:?}"));
        query.push((decode(name)?, decode(value)?));
    }
    Ok((path, query))
}

/// The bytes of a response. A response the handler got wrong (status outside 200..=999, or a
/// header that would break the framing) is replaced by a 500.
fn encode_response(response: &Response, head_only: bool, keep_alive: bool) -> Vec<u8> {
    let valid = (200..=999).contains(&response.status)
        && response
            .headers
            .iter()
            .all(|(n, v)| wire::is_token(n.as_bytes()) && !v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)));
    if !valid {
        return encode_response(&Response::error(500, "internal error: invalid response"), head_only, keep_alive);
    }
    let status = response.status;
    let body = if head_only || status == 204 || status == 304 { &[][..] } else { &response.body[..] };
    let mut out = Vec::with_capacity(256 + body.len());
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", wire::reason(status));
    for (name, value) in &response.headers {
        if ["content-length", "connection", "transfer-encoding"].iter().any(|h| name.eq_ignore_ascii_case(h)) {
            continue;
        }
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if status != 204 {
        let _ = write!(out, "Content-Length: {}\r\n", response.body.len());
    }
    let _ = write!(out, "Connection: {}\r\n\r\n", if keep_alive { "keep-alive" } else { "close" });
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        let (m, t, minor, h) = parse_request_head(b"POST /a?b=c HTTP/1.0\r\nX-Y: z").unwrap();
        assert_eq!((m.as_str(), t.as_str(), minor), ("POST", "/a?b=c", 0));
        assert_eq!(h, vec![("x-y".to_string(), "z".to_string())]);
        for bad in
            [&b"garbage"[..], b"GET /", b"GET  / HTTP/1.1", b"GET / HTTP/1.1 x", b"G(T / HTTP/1.1", b"GET / FTP/1.0"]
        {
            assert_eq!(parse_request_head(bad).err().unwrap().0, 400, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_request_head(b"GET / HTTP/2.0").err().unwrap().0, 505);
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\r\nBad Header: x").err().unwrap().0, 400);
    }

    #[test]
    fn targets() {
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert_eq!(
            parse_target("GET", "/a%20b/c?x=1%2B2&y=a+b&&flag&z=").unwrap(),
            ("/a b/c".into(), q(&[("x", "1+2"), ("y", "a b"), ("flag", ""), ("z", "")]))
        );
        assert_eq!(parse_target("GET", "http://h:1/p?q=1").unwrap(), ("/p".into(), q(&[("q", "1")])));
        assert_eq!(parse_target("GET", "HTTPS://h").unwrap(), ("/".into(), vec![]));
        assert_eq!(parse_target("OPTIONS", "*").unwrap().0, "*");
        assert!(parse_target("GET", "*").is_err());
        assert!(parse_target("GET", "/%zz").is_err());
        assert!(parse_target("GET", "/?a=%zz").is_err());
        assert!(parse_target("GET", "ftp://x/").is_err());
    }

    #[test]
    fn responses() {
        let text = |r: &Response, head_only, keep| String::from_utf8(encode_response(r, head_only, keep)).unwrap();
        let r = Response::new(200, "text/plain", "hi").header("Content-Length", "99").header("X-A", "b");
        assert_eq!(
            text(&r, false, true),
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nX-A: b\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi"
        );
        assert!(text(&r, true, false).ends_with("Content-Length: 2\r\nConnection: close\r\n\r\n"));
        assert_eq!(
            text(&Response::new(204, "", "x"), false, true),
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
        assert!(text(&Response::new(200, "", "").header("X", "a\r\nb"), false, true).starts_with("HTTP/1.1 500 "));
        assert!(text(&Response::new(101, "", ""), false, true).starts_with("HTTP/1.1 500 "));
        assert!(text(&Response::new(299, "", ""), false, true).starts_with("HTTP/1.1 299 \r\n"));
    }
}
