//! The server: an accept thread and one thread per connection.
//!
//! A connection's reads run against deadlines rather than only per-read timeouts: the TLS
//! handshake, each request head (from its first byte) and each body (by its announced size)
//! must arrive in time, so a peer trickling one byte at a time cannot hold a thread forever.
//! A body is read only after the [`Admit`] callback has seen the head and the body's size has
//! been reserved against the budget all connections share.

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
use crate::{percent_decode, Admission, Admit, Error, Handler, Request, RequestHead, Response, TlsFiles};

/// Limits and timeouts of a [`Server`]; build with `Limits { max_body: .., ..Limits::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body in bytes (larger → 413). Default 64 MiB.
    pub max_body: usize,
    /// Most bytes of request bodies being read or handled at once, over all connections: a
    /// request whose announced body does not fit gets a 503 with `Retry-After` and its body is
    /// not read. Default 256 MiB (keep it at least `max_body`, or large bodies never fit).
    pub max_inflight_body: usize,
    /// Largest accepted request line plus header block in bytes (larger → 431). Default 64 KiB.
    pub max_head: usize,
    /// How long a keep-alive connection may sit idle between requests. Default 120 s.
    pub idle_timeout: Duration,
    /// Longest wait for each read once a request has started arriving. Default 30 s.
    pub read_timeout: Duration,
    /// Longest time from the first byte of a request to the end of its head (→ 408), and the
    /// longest TLS handshake. Default 10 s.
    pub head_deadline: Duration,
    /// Longest time for reading a body, plus its size at `min_body_rate` (→ 408). Default 30 s.
    pub body_deadline: Duration,
    /// The slowest body upload allowed for, in bytes per second (see `body_deadline`).
    /// Default 64 KiB/s.
    pub min_body_rate: u64,
    /// Longest wait for each write of a response. Default 30 s.
    pub write_timeout: Duration,
    /// With this many connections open, a new one closes the connection that has been idle
    /// (between keep-alive requests) the longest, or is itself closed right after being
    /// accepted when none is idle. Default 16384 (see [`raise_open_files_limit`]).
    pub max_connections: usize,
    /// Stack size of each connection thread (handlers run on it, and parse and compile whole
    /// fleets). Default 1 MiB, which is address space: only the pages touched take memory.
    pub stack_size: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 64 << 20,
            max_inflight_body: 256 << 20,
            max_head: 64 << 10,
            idle_timeout: Duration::from_secs(120),
            read_timeout: Duration::from_secs(30),
            head_deadline: Duration::from_secs(10),
            body_deadline: Duration::from_secs(30),
            min_body_rate: 64 << 10,
            write_timeout: Duration::from_secs(30),
            max_connections: 16384,
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

/// One open connection, as the server tracks it for shutdown and eviction.
struct Slot {
    tcp: Arc<TcpStream>,
    /// Since when it has been waiting for the next request (nothing buffered, no handler
    /// running); `None` while busy.
    idle_since: Option<Instant>,
}

struct Shared {
    handler: Handler,
    admit: Option<Admit>,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
    stopping: AtomicBool,
    open: AtomicUsize,
    /// Bytes of request bodies reserved now (see [`Limits::max_inflight_body`]).
    inflight_body: AtomicUsize,
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
            slot.idle_since = idle.then(Instant::now);
        }
        true
    }

    /// Closes the connection idle the longest to make room for a new one; false if none is
    /// idle. Its thread sees the closed socket and unregisters it.
    fn evict_oldest_idle(&self) -> bool {
        let mut conns = self.conns();
        let Some(slot) = conns.values_mut().filter(|s| s.idle_since.is_some()).min_by_key(|s| s.idle_since) else {
            return false;
        };
        slot.idle_since = None;
        let _ = slot.tcp.shutdown(Shutdown::Both);
        true
    }

    /// Reserves `bytes` of the in-flight body budget until the reservation is dropped; `None`
    /// when they do not fit now.
    fn reserve_body(&self, bytes: u64) -> Option<BodyReservation<'_>> {
        let bytes = usize::try_from(bytes).ok()?;
        let budget = self.limits.max_inflight_body;
        self.inflight_body
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| now.checked_add(bytes).filter(|&n| n <= budget))
            .ok()?;
        Some(BodyReservation { shared: self, bytes })
    }

    fn unregister(&self, id: u64) {
        self.conns().remove(&id);
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A share of [`Limits::max_inflight_body`], given back when dropped.
struct BodyReservation<'a> {
    shared: &'a Shared,
    bytes: usize,
}

impl Drop for BodyReservation<'_> {
    fn drop(&mut self) {
        self.shared.inflight_body.fetch_sub(self.bytes, Ordering::SeqCst);
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
        Server::start(addr, tls, handler, None, limits)
    }

    /// Like [`Server::bind_with`], and `admit` decides from each request's head, before its
    /// body is read, whether to read it (and how much of it) or to answer at once.
    pub fn bind_with_admission(
        addr: &str,
        tls: Option<&TlsFiles>,
        handler: Handler,
        admit: Admit,
        limits: Limits,
    ) -> Result<Server, Error> {
        Server::start(addr, tls, handler, Some(admit), limits)
    }

    fn start(
        addr: &str,
        tls: Option<&TlsFiles>,
        handler: Handler,
        admit: Option<Admit>,
        limits: Limits,
    ) -> Result<Server, Error> {
        let tls = tls.map(crate::tls::server_config).transpose()?;
        let listener =
            TcpListener::bind(addr).map_err(|e| Error::Io(annotate(e, &format!("cannot listen on {addr}"))))?;
        let local = listener.local_addr()?;
        let listen_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        // The standard library listens with a backlog of 128: when thousands of agents
        // reconnect at once (a restart), connections beyond it wait a second for a SYN
        // retransmit. Listening again only raises the backlog (the kernel caps it at somaxconn).
        // SAFETY: listen() on the listener's own, open descriptor.
        unsafe {
            libc::listen(listen_fd, 4096);
        }
        let shared = Arc::new(Shared {
            handler,
            admit,
            tls,
            limits,
            stopping: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            inflight_body: AtomicUsize::new(0),
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
        for slot in self.shared.conns().values().filter(|slot| slot.idle_since.is_some()) {
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

/// Raises this process's soft limit on open files (`RLIMIT_NOFILE`) to its hard limit, and
/// returns the soft limit now in force. Every connection is a descriptor, and the usual soft
/// limit of 1024 is far below [`Limits::max_connections`]; call it once at start.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let mut raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            // An unlimited hard limit is more than the kernel allows for descriptors (nr_open,
            // 2^20 by default): fall back to that.
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                raised.rlim_cur = limit.rlim_max.min(1 << 20);
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
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
        if shared.open.load(Ordering::SeqCst) >= shared.limits.max_connections && !shared.evict_oldest_idle() {
            continue;
        }
        next_id += 1;
        let id = next_id;
        let tcp = Arc::new(tcp);
        shared.open.fetch_add(1, Ordering::SeqCst);
        shared.conns().insert(id, Slot { tcp: tcp.clone(), idle_since: None });
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

/// A TCP stream shared with the shutdown bookkeeping (reads and writes go through `&TcpStream`),
/// whose reads stop at a deadline: before each read the socket's timeout is set to what is left
/// of it (at most `per_read`), so that a byte now and then does not extend it.
struct SharedTcp {
    tcp: Arc<TcpStream>,
    until: Instant,
    per_read: Duration,
}

impl Read for SharedTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "read deadline passed"));
        }
        self.tcp.set_read_timeout(Some(left.min(self.per_read)))?;
        (&*self.tcp).read(buf)
    }
}

impl Write for SharedTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.tcp).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&*self.tcp).flush()
    }
}

type Stream = wire::Stream<SharedTcp, StreamOwned<ServerConnection, SharedTcp>>;

/// Gives the reads of `conn` from now on `within` in total, and at most `per_read` each.
fn set_deadline(conn: &mut BufConn<Stream>, within: Duration, per_read: Duration) {
    let tcp = match &mut conn.inner {
        Stream::Plain(tcp) => tcp,
        Stream::Tls(tls) => &mut tls.sock,
    };
    tcp.until = Instant::now() + within;
    tcp.per_read = per_read;
}

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
    let reader =
        SharedTcp { tcp: tcp.clone(), until: Instant::now() + limits.head_deadline, per_read: limits.read_timeout };
    let stream = match &shared.tls {
        None => Stream::Plain(reader),
        Some(config) => {
            let Ok(conn) = ServerConnection::new(config.clone()) else { return };
            let mut tls = StreamOwned::new(conn, reader);
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
    let close = serve_requests(shared, id, &mut conn, peer);
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
fn serve_requests(shared: &Shared, id: u64, conn: &mut BufConn<Stream>, peer: SocketAddr) -> Close {
    let limits = &shared.limits;
    loop {
        if conn.buffered().is_empty() {
            if !shared.set_idle(id, true) {
                return Close::Normal;
            }
            set_deadline(conn, limits.idle_timeout, limits.idle_timeout);
            let filled = conn.fill();
            shared.set_idle(id, false);
            match filled {
                Ok(0) | Err(_) => return Close::Normal,
                Ok(_) => {}
            }
        }
        set_deadline(conn, limits.head_deadline, limits.read_timeout);
        if shared.tls.is_none() && matches!(conn.buffered(), [0x16, 0x03, ..]) {
            return refuse(conn, 400, "this port speaks plain HTTP, not TLS: use an http:// URL");
        }
        let head = match conn.read_head(limits.max_head, true) {
            Ok(Head::Bytes(head)) => head,
            Err(e) if wire::is_timeout(&e) => {
                let within = limits.head_deadline.as_secs_f64();
                return refuse(conn, 408, &format!("the request head did not arrive within {within} s"));
            }
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
        let (path, query) = match parse_target(&method, &target) {
            Ok(parsed) => parsed,
            Err(message) => return refuse(conn, 400, &message),
        };
        let head_only = method == "HEAD";
        let (max_body, caller) = match &shared.admit {
            None => (limits.max_body, None),
            Some(admit) => {
                let view = RequestHead {
                    method: &method,
                    path: &path,
                    query: &query,
                    headers: &headers,
                    content_length: length,
                    peer,
                };
                match catch_unwind(AssertUnwindSafe(|| admit(&view))) {
                    Ok(Admission::Read { max_body, caller }) => (max_body.min(limits.max_body), caller),
                    Ok(Admission::Refuse(response)) => return refuse_with(conn, &response, head_only),
                    Err(_) => return refuse(conn, 500, "internal error"),
                }
            }
        };
        if length > max_body as u64 {
            return refuse(
                conn,
                413,
                &format!("the request body of {length} bytes is larger than the limit of {max_body} bytes"),
            );
        }
        let Some(_reservation) = shared.reserve_body(length) else {
            let busy = Response::error(503, "too many request bodies are being received right now; retry shortly");
            return refuse_with(conn, &busy.header("retry-after", "1"), head_only);
        };
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
        let at_min_rate = match limits.min_body_rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs(length / rate),
        };
        set_deadline(conn, limits.body_deadline + at_min_rate, limits.read_timeout);
        let mut body = Vec::new();
        match conn.read_exact_into(length as usize, &mut body) {
            Ok(()) => {}
            Err(e) if wire::is_timeout(&e) => {
                let within = (limits.body_deadline + at_min_rate).as_secs_f64();
                return refuse(
                    conn,
                    408,
                    &format!("the request body of {length} bytes did not arrive within {within} s"),
                );
            }
            Err(_) => return Close::Normal,
        }
        let mut keep_alive = if minor >= 1 {
            !wire::has_token(&headers, "connection", "close")
        } else {
            wire::has_token(&headers, "connection", "keep-alive")
        };
        let request = Request { method, path, query, headers, body, peer, caller };
        let handler = &shared.handler;
        let response = catch_unwind(AssertUnwindSafe(|| handler(request)))
            .unwrap_or_else(|_| Response::error(500, "internal error"));
        if shared.stopping.load(Ordering::SeqCst) || wire::has_token(&response.headers, "connection", "close") {
            keep_alive = false;
        }
        if conn.send(&encode_response(&response, head_only, keep_alive)).is_err() || !keep_alive {
            return Close::Normal;
        }
    }
}

/// Answers with an error and closes the connection.
fn refuse(conn: &mut BufConn<Stream>, status: u16, message: &str) -> Close {
    refuse_with(conn, &Response::error(status, message), false)
}

/// Answers with `response` to a request whose body is not read, and closes the connection.
fn refuse_with(conn: &mut BufConn<Stream>, response: &Response, head_only: bool) -> Close {
    let _ = conn.send(&encode_response(response, head_only, false));
    Close::Linger
}

type ParsedHead = (String, String, u8, Vec<(String, String)>);

/// Parses the request line and header fields; `Err((status, message))` when unacceptable.
fn parse_request_head(head: &[u8]) -> Result<ParsedHead, (u16, String)> {
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
