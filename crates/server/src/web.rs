//! The HTTP server of the control plane: HTTP/1.1 from hyper on a tokio runtime, TLS from
//! tokio-rustls (ring provider), and a small synchronous interface on top ([`Request`],
//! [`Response`], a blocking [`Handler`]) so that the API's routing stays plain code.
//!
//! Connections cost no thread: an idle keep-alive connection, or a long-poll waiting for a
//! change ([`Wait`], e.g. on a `tokio::sync::watch` channel), is a task on the runtime. Only
//! the admission step and the handler, which touch the store, run on the runtime's bounded
//! pool of blocking threads ([`Limits::blocking_threads`]).
//!
//! Nothing a peer sends is buffered before the peer is admitted: the [`Admit`] callback sees
//! each request's head (and may authenticate it) before a byte of the body is read; a refused
//! request is answered at once and its connection closed (after draining for a moment, so
//! that the peer reads the answer rather than a reset). Heads must arrive within
//! [`Limits::head_deadline`] (hyper's header timeout), bodies within [`Limits::body_deadline`]
//! plus their size at [`Limits::min_body_rate`], and the bodies being read on all connections
//! together share one memory budget ([`Limits::max_inflight_body`]).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use fleetwall_api::http::{percent_decode, Error};

/// A request as a [`Handler`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method as sent, e.g. `"GET"` (methods are case-sensitive).
    pub method: String,
    /// The percent-decoded path, without the query, e.g. `"/v1/nodes/web 1"`.
    pub path: String,
    /// The query pairs in order, percent-decoded with `+` read as a space. A pair without `=`
    /// has an empty value.
    pub query: Vec<(String, String)>,
    /// The header fields in order, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The request body (empty when there is none).
    pub body: Vec<u8>,
    /// The address of the peer; an IPv4-mapped IPv6 address is reported as IPv4.
    pub peer: SocketAddr,
    /// Who the admission step found the caller to be ([`Admission::Read::caller`]), so the
    /// handler need not work it out again; None without an admission step or when it
    /// named nobody. Never taken from the request's bytes.
    pub caller: Option<String>,
}

impl Request {
    /// The value of the first header field called `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The value of the first query pair called `name` (compared exactly, after decoding).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
    pub fn bearer(&self) -> Option<&str> {
        bearer_of(&self.headers)
    }

    /// Parses the body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// A request's head as an [`Admit`] callback sees it: everything but the body, which has not
/// been read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method as sent, e.g. `"PUT"`.
    pub method: &'a str,
    /// The percent-decoded path, without the query.
    pub path: &'a str,
    /// The query pairs in order, percent-decoded (as in [`Request::query`]).
    pub query: &'a [(String, String)],
    /// The header fields in order, names lower-cased, values trimmed.
    pub headers: &'a [(String, String)],
    /// The `Content-Length` the peer announced (0 when there is none).
    pub content_length: u64,
    /// The address of the peer; an IPv4-mapped IPv6 address is reported as IPv4.
    pub peer: SocketAddr,
}

impl RequestHead<'_> {
    /// The value of the first header field called `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(self.headers, name)
    }

    /// The token of an `Authorization: Bearer <token>` header, as [`Request::bearer`].
    pub fn bearer(&self) -> Option<&str> {
        bearer_of(self.headers)
    }
}

/// What an [`Admit`] callback decides about a request from its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Read the body and call the handler, if the body is at most this many bytes (the
    /// server's [`Limits::max_body`] still applies on top); a longer one gets a 413.
    Read {
        /// The largest body accepted for this request.
        max_body: usize,
        /// Who the caller is, as the admission step found out (e.g. by its token), handed
        /// to the handler in [`Request::caller`].
        caller: Option<String>,
    },
    /// Answer with this response without reading the body, then close the connection.
    Refuse(Response),
}

/// A response built by a [`Handler`]: the same type a client receives. The server sets
/// `Content-Length` itself and ignores it (and `Transfer-Encoding`) in `headers`;
/// `Connection: close` closes the connection after it.
pub use fleetwall_api::http::Response;

/// The function a [`Server`] calls for every request, on a blocking thread of its pool. It
/// may block briefly (the store); a panic is caught and answered with a 500. Long waits belong
/// in a [`Wait`], which holds no thread.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// The function a [`Server`] calls with each request's head, before the body is read, on a
/// blocking thread (e.g. to authenticate the caller so that a stranger cannot make the server
/// buffer a large body). A panic is caught and answered with a 500.
pub type Admit = Arc<dyn Fn(&RequestHead<'_>) -> Admission + Send + Sync>;

/// A future the server awaits before handing a request to the [`Handler`].
pub type WaitFuture = Pin<Box<dyn Future<Output = Request> + Send>>;

/// Runs on the runtime, after the body is read and before the [`Handler`]: a long-poll waits
/// here (on a channel, holding no thread) and gives back the request to answer.
pub type Wait = Arc<dyn Fn(Request) -> WaitFuture + Send + Sync>;

/// What a [`Server`] does with requests.
#[derive(Clone)]
pub struct Hooks {
    /// Answers every admitted request.
    pub handler: Handler,
    /// Decides on each request's head; None reads every body up to [`Limits::max_body`].
    pub admit: Option<Admit>,
    /// Waits before the handler (long-polls); None hands requests to the handler at once.
    pub wait: Option<Wait>,
}

/// The PEM files a TLS [`Server`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The private key (PEM; PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

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
    /// How long a keep-alive connection may sit idle, before its first request or between
    /// requests. Default 120 s.
    pub idle_timeout: Duration,
    /// Longest time for a request head, from its first byte (the connection is dropped), and
    /// for a TLS handshake. Default 10 s.
    pub head_deadline: Duration,
    /// Longest time for reading a body, plus its size at `min_body_rate` (→ 408). Default 30 s.
    pub body_deadline: Duration,
    /// The slowest body upload allowed for, in bytes per second (see `body_deadline`).
    /// Default 64 KiB/s.
    pub min_body_rate: u64,
    /// Longest wait for each write of a response (a peer that does not read). Default 30 s.
    pub write_timeout: Duration,
    /// Most connections open at once; a connection beyond it is closed right after being
    /// accepted. Default 60,000 (each is a descriptor: see [`raise_open_files_limit`]).
    pub max_connections: usize,
    /// Threads that run the admission step and the handler (they touch the store). Default 64.
    pub blocking_threads: usize,
    /// Threads that run the connections. Default: the number of CPUs, at most 4.
    pub worker_threads: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Limits {
            max_body: 64 << 20,
            max_inflight_body: 256 << 20,
            max_head: 64 << 10,
            idle_timeout: Duration::from_secs(120),
            head_deadline: Duration::from_secs(10),
            body_deadline: Duration::from_secs(30),
            min_body_rate: 64 << 10,
            write_timeout: Duration::from_secs(30),
            max_connections: 60_000,
            blocking_threads: 64,
            worker_threads: cpus.clamp(1, 4),
        }
    }
}

/// A running server. Dropping it has the effect of [`Server::shutdown`]; keep it alive (or
/// call [`Server::join`]) for as long as it should serve.
pub struct Server {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: Option<tokio::task::JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Shared {
    hooks: Hooks,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    /// Connections open now.
    open: AtomicUsize,
    /// Bytes of request bodies reserved now (see [`Limits::max_inflight_body`]).
    inflight_body: AtomicUsize,
}

impl Shared {
    /// Reserves `bytes` of the in-flight body budget until the reservation is dropped; `None`
    /// when they do not fit now.
    fn reserve_body(self: &Arc<Self>, bytes: u64) -> Option<BodyReservation> {
        let bytes = usize::try_from(bytes).ok()?;
        let budget = self.limits.max_inflight_body;
        self.inflight_body
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| now.checked_add(bytes).filter(|&n| n <= budget))
            .ok()?;
        Some(BodyReservation { shared: self.clone(), bytes })
    }
}

/// A share of [`Limits::max_inflight_body`], given back when dropped.
struct BodyReservation {
    shared: Arc<Shared>,
    bytes: usize,
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        self.shared.inflight_body.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Server {
    /// Binds `addr` (e.g. `"127.0.0.1:0"`, `"[::]:8181"`) and serves `handler` in the
    /// background, over TLS when `tls` is given, with the default [`Limits`].
    pub fn bind(addr: &str, tls: Option<&TlsFiles>, handler: Handler) -> Result<Server, Error> {
        Server::bind_with(addr, tls, Hooks { handler, admit: None, wait: None }, Limits::default())
    }

    /// Like [`Server::bind`], with an admission step and a wait if given, and explicit limits.
    pub fn bind_with(addr: &str, tls: Option<&TlsFiles>, hooks: Hooks, limits: Limits) -> Result<Server, Error> {
        let tls = tls.map(server_config).transpose()?.map(tokio_rustls::TlsAcceptor::from);
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| Error::Io(io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))))?;
        let local = listener.local_addr().map_err(Error::Io)?;
        listener.set_nonblocking(true).map_err(Error::Io)?;
        // The standard library listens with a backlog of 128: when thousands of agents
        // reconnect at once (a restart), connections beyond it wait a second for a SYN
        // retransmit. Listening again only raises the backlog (the kernel caps it at somaxconn).
        // SAFETY: listen() on the listener's own, open descriptor.
        unsafe {
            libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 4096);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.worker_threads.max(1))
            .max_blocking_threads(limits.blocking_threads.max(1))
            .thread_name("fleetwall-http")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::Io(io::Error::new(e.kind(), format!("cannot start the HTTP runtime: {e}"))))?;
        let listener = {
            let _in_runtime = runtime.enter();
            TcpListener::from_std(listener).map_err(Error::Io)?
        };
        let is_tls = tls.is_some();
        let shared =
            Arc::new(Shared { hooks, tls, limits, open: AtomicUsize::new(0), inflight_body: AtomicUsize::new(0) });
        let (stop, stopped) = watch::channel(false);
        let accept = runtime.spawn(accept_loop(listener, shared.clone(), stopped));
        Ok(Server { addr: local, tls: is_tls, shared, stop, accept: Some(accept), runtime: Some(runtime) })
    }

    /// The address the server listens on (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether this server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// How many connections are open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Stops accepting connections and returns promptly: the listening socket is closed when
    /// this returns, idle keep-alive connections are closed, and requests in progress finish
    /// (their responses close the connection) in the background.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Blocks the calling thread for as long as the server runs (i.e. forever, unless the
    /// accept loop dies).
    pub fn join(mut self) {
        if let (Some(accept), Some(runtime)) = (self.accept.take(), &self.runtime) {
            let _ = runtime.block_on(accept);
        }
    }

    fn stop(&mut self) {
        let Some(runtime) = self.runtime.take() else { return };
        let _ = self.stop.send(true);
        if let Some(accept) = self.accept.take() {
            // The accept loop drops the listener as it returns.
            let _ = runtime.block_on(accept);
        }
        // Requests in progress finish on the runtime, which goes away once they have.
        let shared = self.shared.clone();
        let linger = std::thread::Builder::new().name("http-drain".into()).spawn(move || {
            let until = Instant::now() + Duration::from_secs(70);
            while shared.open.load(Ordering::SeqCst) > 0 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            runtime.shutdown_background();
        });
        if let Err(e) = linger {
            eprintln!("fleetwall: cannot wait for the connections to finish: {e}");
        }
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
            .field("tls", &self.tls)
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

/// The rustls server configuration for a certificate chain and private key (ring provider).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, Error> {
    let certs = fleetwall_api::tls::load_certs(&files.cert, "certificate chain")?;
    let key = fleetwall_api::tls::load_key(&files.key)?;
    let mut config = ServerConfig::builder_with_provider(fleetwall_api::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::Tls(format!("cannot use certificate {} with key {}: {e}", files.cert.display(), files.key.display()))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Raises this process's soft limit on open files (`RLIMIT_NOFILE`) to its hard limit, and
/// returns the soft limit now in force. Every connection is a descriptor, and the usual soft
/// limit of 1024 is far below what a server of thousands of agents needs; call it once at start.
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

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors or similar: back off instead of spinning.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        if shared.open.load(Ordering::SeqCst) >= shared.limits.max_connections {
            continue;
        }
        shared.open.fetch_add(1, Ordering::SeqCst);
        let guard = OpenGuard(shared.clone());
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        tokio::spawn(serve_connection(shared.clone(), tcp, peer, stopped.clone(), guard));
    }
}

/// What a connection's request handling tells its I/O: how busy it is and how to close.
#[derive(Default)]
struct ConnState {
    /// Requests being handled now.
    busy: AtomicUsize,
    /// When the last request ended (or the connection opened).
    last: Mutex<Option<Instant>>,
    /// When the first byte of a request head arrived that hyper has not yet handed on as a
    /// request (None: no head in progress).
    head_started: Mutex<Option<Instant>>,
    /// A request was refused without reading its body: on closing, stop writing and drain
    /// what the peer still sends for a moment, so that the peer reads the answer instead of
    /// a reset.
    linger: AtomicBool,
}

impl ConnState {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }
    /// Bytes arrived: if no request is being handled, a head has started.
    fn bytes_arrived(&self) {
        if self.busy.load(Ordering::SeqCst) == 0 {
            self.head_started.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Instant::now);
        }
    }
    /// How long the head in progress has been arriving.
    fn head_for(&self) -> Option<Duration> {
        self.head_started.lock().unwrap_or_else(|p| p.into_inner()).map(|t| t.elapsed())
    }
    fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.last.lock().unwrap_or_else(|p| p.into_inner()).map(|t| t.elapsed())
    }
}

/// Marks a request in progress for as long as it lives.
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(state: &Arc<ConnState>) -> Busy {
        state.busy.fetch_add(1, Ordering::SeqCst);
        *state.head_started.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Busy(state.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    stopped: watch::Receiver<bool>,
    _open: OpenGuard,
) {
    let _ = tcp.set_nodelay(true);
    let limits = &shared.limits;
    let state = Arc::new(ConnState::default());
    state.touch();
    match &shared.tls {
        None => {
            // Wait for the first bytes (an idle connection holds no thread) and turn away a
            // TLS client at once, with a message, instead of a parse error.
            let mut first = [0u8; 2];
            match tokio::time::timeout(limits.idle_timeout, tcp.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            if first == [0x16, 0x03] {
                let refusal = Response::error(400, "this port speaks plain HTTP, not TLS: use an http:// URL");
                state.linger.store(true, Ordering::SeqCst);
                let mut io = Lingering::new(tcp, state, limits.write_timeout);
                let _ = tokio::time::timeout(limits.write_timeout, io.write_all(&raw_response(&refusal))).await;
                let _ = io.shutdown().await;
                return;
            }
            run_http(shared.clone(), Lingering::new(tcp, state.clone(), limits.write_timeout), peer, stopped, state)
                .await;
        }
        Some(acceptor) => {
            let Ok(Ok(tls)) = tokio::time::timeout(limits.head_deadline, acceptor.accept(tcp)).await else { return };
            run_http(shared.clone(), Lingering::new(tls, state.clone(), limits.write_timeout), peer, stopped, state)
                .await;
        }
    }
}

/// Serves HTTP/1.1 on one connection until it is closed: by the peer, after `idle_timeout`
/// without a request, or (gracefully, after the request in progress) when the server stops.
async fn run_http<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    shared: Arc<Shared>,
    io: Lingering<T>,
    peer: SocketAddr,
    mut stopped: watch::Receiver<bool>,
    state: Arc<ConnState>,
) {
    let limits = shared.limits.clone();
    let service_state = state.clone();
    let service = hyper::service::service_fn(move |req| {
        let (shared, state) = (shared.clone(), service_state.clone());
        async move { Ok::<_, Infallible>(answer(shared, state, peer, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        // The head deadline runs from a head's first byte (below), not from the end of the
        // previous request as hyper's header timeout would: an idle keep-alive connection
        // may wait `idle_timeout`.
        .header_read_timeout(None)
        .max_buf_size(limits.max_head.max(8192))
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let tick =
        (limits.idle_timeout.min(limits.head_deadline) / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stopped.wait_for(|s| *s), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(tick) => {
                if state.head_for().is_some_and(|h| h >= limits.head_deadline) {
                    // A head trickling in: drop the connection (hyper cannot answer a head
                    // it has not got).
                    return;
                }
                if !closing && state.idle_for().is_some_and(|idle| idle >= limits.idle_timeout) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Answers one request (hyper's service).
async fn answer(
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let _busy = Busy::new(&state);
    let refuse = |status: u16, message: &str| {
        state.linger.store(true, Ordering::SeqCst);
        encode(Response::error(status, message), true)
    };
    let method = req.method().as_str().to_string();
    let (path, query) = match parse_target(&method, req.uri()) {
        Ok(parsed) => parsed,
        Err(message) => return refuse(400, &message),
    };
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).trim().to_string()))
        .collect();
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return refuse(411, "request bodies must be sent with Content-Length (Transfer-Encoding is not supported)");
    }
    let length = match headers.iter().find(|(n, _)| n == "content-length") {
        None => 0,
        Some((_, v)) => match v.parse::<u64>() {
            Ok(n) => n,
            Err(_) => return refuse(400, &format!("malformed Content-Length {v:?}")),
        },
    };
    let limits = &shared.limits;
    let (max_body, caller, headers, query, path) = match &shared.hooks.admit {
        None => (limits.max_body, None, headers, query, path),
        Some(admit) => {
            let admit = admit.clone();
            let m = method.clone();
            let decided = tokio::task::spawn_blocking(move || {
                let view = RequestHead {
                    method: &m,
                    path: &path,
                    query: &query,
                    headers: &headers,
                    content_length: length,
                    peer,
                };
                let verdict = catch_unwind(AssertUnwindSafe(|| admit(&view)));
                (verdict, headers, query, path)
            })
            .await;
            match decided {
                Ok((Ok(Admission::Read { max_body, caller }), headers, query, path)) => {
                    (max_body.min(limits.max_body), caller, headers, query, path)
                }
                Ok((Ok(Admission::Refuse(response)), ..)) => {
                    state.linger.store(true, Ordering::SeqCst);
                    return encode(response, true);
                }
                Ok((Err(_), ..)) | Err(_) => return refuse(500, "internal error"),
            }
        }
    };
    if length > max_body as u64 {
        return refuse(
            413,
            &format!("the request body of {length} bytes is larger than the limit of {max_body} bytes"),
        );
    }
    let Some(_reservation) = shared.reserve_body(length) else {
        state.linger.store(true, Ordering::SeqCst);
        let busy = Response::error(503, "too many request bodies are being received right now; retry shortly");
        return encode(busy.header("retry-after", "1"), true);
    };
    if let Some((_, expect)) = headers.iter().find(|(n, _)| n == "expect") {
        if !expect.eq_ignore_ascii_case("100-continue") {
            return refuse(417, &format!("unsupported expectation {expect:?}"));
        }
    }
    let at_min_rate = match limits.min_body_rate {
        0 => Duration::ZERO,
        rate => Duration::from_secs(length / rate),
    };
    let within = limits.body_deadline + at_min_rate;
    let body = if length == 0 {
        Vec::new()
    } else {
        match tokio::time::timeout(within, read_body(req.into_body(), length)).await {
            Ok(Ok(body)) => body,
            Ok(Err(())) => return refuse(400, "the request body ended early or was malformed"),
            Err(_) => {
                let within = within.as_secs_f64();
                return refuse(408, &format!("the request body of {length} bytes did not arrive within {within} s"));
            }
        }
    };
    let mut request = Request { method, path, query, headers, body, peer, caller };
    if let Some(wait) = &shared.hooks.wait {
        request = wait(request).await;
    }
    let handler = shared.hooks.handler.clone();
    let response = tokio::task::spawn_blocking(move || catch_unwind(AssertUnwindSafe(|| handler(request))))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| Response::error(500, "internal error"));
    let close =
        response.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
    encode(response, close)
}

/// Reads exactly `length` bytes of body (the size hyper frames it by).
async fn read_body(mut body: Incoming, length: u64) -> Result<Vec<u8>, ()> {
    let mut out = Vec::with_capacity(usize::try_from(length).map_err(|_| ())?.min(1 << 20));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ())?;
        if let Some(data) = frame.data_ref() {
            if out.len() as u64 + data.len() as u64 > length {
                return Err(());
            }
            out.extend_from_slice(data);
        }
    }
    if out.len() as u64 != length {
        return Err(());
    }
    Ok(out)
}

/// The hyper response for `response`; `close` ends the connection after it. A response the
/// handler got wrong (status outside 200..=999, or a header that would break the framing) is
/// replaced by a 500.
fn encode(response: Response, close: bool) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        if ["content-length", "connection", "transfer-encoding"].iter().any(|h| name.eq_ignore_ascii_case(h)) {
            continue;
        }
        builder = builder.header(name.as_str(), value.as_str());
    }
    if close {
        builder = builder.header("connection", "close");
    }
    let status = response.status;
    let body = if status == 204 || status == 304 { Bytes::new() } else { Bytes::from(response.body) };
    match builder.body(Full::new(body)) {
        Ok(r) if (200..=999).contains(&status) => r,
        _ => {
            let fallback = Response::error(500, "internal error: invalid response");
            let mut r = hyper::Response::new(Full::new(Bytes::from(fallback.body)));
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
            if close {
                r.headers_mut().insert("connection", hyper::header::HeaderValue::from_static("close"));
            }
            r
        }
    }
}

/// The bytes of a response written without hyper (to a TLS client on the plain port).
fn raw_response(response: &Response) -> Vec<u8> {
    let reason = hyper::StatusCode::from_u16(response.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", response.status);
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", response.body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(&response.body);
    out
}

/// Splits a request target into the decoded path and query pairs.
fn parse_target(method: &str, uri: &hyper::Uri) -> Result<(String, Vec<(String, String)>), String> {
    if uri.path() == "*" {
        return if method == "OPTIONS" {
            Ok(("*".into(), Vec::new()))
        } else {
            Err("malformed request target \"*\"".into())
        };
    }
    let raw_path = uri.path();
    let path = if raw_path.is_empty() {
        "/".to_string()
    } else {
        percent_decode(raw_path, false).ok_or_else(|| format!("malformed percent-encoding in path {raw_path:?}"))?
    };
    let mut query = Vec::new();
    for pair in uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode =
            |s: &str| percent_decode(s, true).ok_or_else(|| format!("malformed percent-encoding in query {pair:?}"));
        query.push((decode(name)?, decode(value)?));
    }
    Ok((path, query))
}

fn bearer_of(headers: &[(String, String)]) -> Option<&str> {
    let value = find_header(headers, "authorization")?.trim();
    let split = value.find([' ', '\t'])?;
    let (scheme, token) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A connection's I/O with two duties hyper leaves to it: each write must make progress
/// within `write_timeout` (a peer that stops reading is dropped), and closing after a refused
/// request lingers — stop writing, then read and discard what the peer still sends (at most
/// 4 MiB, for at most 2 s) — so that the peer reads the refusal instead of a reset.
struct Lingering<T> {
    inner: T,
    state: Arc<ConnState>,
    write_timeout: Duration,
    write_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    drain: Option<Drain>,
}

struct Drain {
    until: Pin<Box<tokio::time::Sleep>>,
    drained: usize,
    write_closed: bool,
}

impl<T> Lingering<T> {
    fn new(inner: T, state: Arc<ConnState>, write_timeout: Duration) -> Lingering<T> {
        Lingering { inner, state, write_timeout, write_deadline: None, drain: None }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Lingering<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + AsyncRead + Unpin> AsyncWrite for Lingering<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(r) => {
                this.write_deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = this.write_timeout;
                let deadline = this.write_deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer does not read")))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.state.linger.load(Ordering::SeqCst) {
            return Pin::new(&mut this.inner).poll_shutdown(cx);
        }
        let drain = this.drain.get_or_insert_with(|| Drain {
            until: Box::pin(tokio::time::sleep(Duration::from_secs(2))),
            drained: 0,
            write_closed: false,
        });
        if !drain.write_closed {
            match Pin::new(&mut this.inner).poll_shutdown(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(_) => drain.write_closed = true,
            }
        }
        let mut scratch = [0u8; 8192];
        while drain.drained < (4 << 20) {
            if drain.until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => drain.drained += buf.filled().len(),
                Poll::Ready(_) => return Poll::Ready(Ok(())),
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            caller: None,
        }
    }

    #[test]
    fn request_accessors() {
        let r = request(&[("authorization", "bearer  tok-1 "), ("x-a", "1")]);
        assert_eq!(r.bearer(), Some("tok-1"));
        assert_eq!(r.header("X-A"), Some("1"));
        assert_eq!(r.header("x-b"), None);
        assert_eq!(r.query("a"), Some("1"));
        assert_eq!(request(&[("authorization", "Basic abc")]).bearer(), None);
        assert_eq!(request(&[("authorization", "Bearer")]).bearer(), None);
        assert_eq!(request(&[("authorization", "Bearer   ")]).bearer(), None);
        assert_eq!(request(&[]).bearer(), None);
    }

    #[test]
    fn response_builders() {
        let r = Response::json(201, &serde_json::json!({"b": 1, "a": [true]})).header("X-Id", "7");
        assert_eq!(r.status, 201);
        assert_eq!(r.header_value("Content-Type"), Some("application/json"));
        assert_eq!(r.header_value("x-id"), Some("7"));
        assert!(r.text().ends_with("}\n"));
        assert!(r.text().contains("\n  \"a\""));
        let v: serde_json::Value = r.json_body().unwrap();
        assert_eq!(v["b"], 1);
        let e = Response::error(404, "no such node");
        assert_eq!(
            e.json_body::<serde_json::Value>().unwrap(),
            serde_json::json!({"message": "no such node", "status": 404})
        );
        let mut bad = std::collections::HashMap::new();
        bad.insert((1, 2), 3);
        assert_eq!(Response::json(200, &bad).status, 500);
        assert!(Response::new(204, "", Vec::new()).headers.is_empty());
    }

    #[test]
    fn targets() {
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let uri = |s: &str| s.parse::<hyper::Uri>().unwrap();
        assert_eq!(
            parse_target("GET", &uri("/a%20b/c?x=1%2B2&y=a+b&&flag&z=")).unwrap(),
            ("/a b/c".into(), q(&[("x", "1+2"), ("y", "a b"), ("flag", ""), ("z", "")]))
        );
        assert_eq!(parse_target("GET", &uri("http://h:1/p?q=1")).unwrap(), ("/p".into(), q(&[("q", "1")])));
        assert_eq!(parse_target("OPTIONS", &uri("*")).unwrap().0, "*");
        assert!(parse_target("GET", &uri("*")).is_err());
        assert!(parse_target("GET", &uri("/%zz")).is_err());
        assert!(parse_target("GET", &uri("/?a=%zz")).is_err());
    }

    /// Reads until the peer closes or `within` passes; whether it closed, and what came.
    fn read_until_closed(s: &mut std::net::TcpStream, within: Duration) -> (bool, String) {
        use std::io::Read;
        s.set_read_timeout(Some(within)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return (true, String::from_utf8_lossy(&got).into_owned()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return (true, String::from_utf8_lossy(&got).into_owned())
                }
                Err(_) => return (false, String::from_utf8_lossy(&got).into_owned()),
            }
        }
    }

    #[test]
    fn a_head_must_arrive_in_time_but_a_keep_alive_connection_may_idle_longer() {
        use std::io::Write;
        let limits = Limits {
            head_deadline: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(1500),
            ..Limits::default()
        };
        let handler: Handler = Arc::new(|_| Response::new(200, "text/plain", "ok"));
        let server =
            Server::bind_with("127.0.0.1:0", None, Hooks { handler, admit: None, wait: None }, limits).unwrap();
        let addr = server.local_addr();
        // Idle between requests for longer than the head deadline: still served.
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (closed, text) = read_until_closed(&mut s, Duration::from_millis(200));
        assert!(!closed && text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        std::thread::sleep(Duration::from_millis(700));
        s.write_all(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (closed, text) = read_until_closed(&mut s, Duration::from_millis(200));
        assert!(!closed && text.starts_with("HTTP/1.1 200 OK\r\n"), "after an idle pause: {text}");
        // Idle past the idle timeout: closed.
        let (closed, _) = read_until_closed(&mut s, Duration::from_secs(10));
        assert!(closed, "an idle connection is closed after idle_timeout");
        // A head that trickles: dropped soon after the head deadline, long before the idle timeout.
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n").unwrap();
        let t = Instant::now();
        let (closed, text) = read_until_closed(&mut slow, Duration::from_secs(10));
        assert!(closed && text.is_empty(), "{text}");
        assert!(
            t.elapsed() < Duration::from_millis(1400),
            "closed by the head deadline, not the idle timeout: {:?}",
            t.elapsed()
        );
        server.shutdown();
    }

    #[test]
    fn invalid_responses_become_500s() {
        assert_eq!(encode(Response::new(200, "", "").header("X", "a\r\nb"), false).status(), 500);
        assert_eq!(encode(Response::new(101, "", ""), false).status(), 500);
        assert_eq!(encode(Response::new(299, "", ""), false).status(), 299);
        let r = encode(Response::new(200, "text/plain", "hi").header("Content-Length", "99"), true);
        assert_eq!(r.headers().get("connection").unwrap(), "close");
        assert!(r.headers().get("content-length").is_none(), "hyper frames the body itself");
    }
}
