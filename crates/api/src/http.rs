//! The HTTP client of the agent and the CLI: [`ureq`] (synchronous, HTTP/1.1) with TLS through
//! rustls and the ring provider, behind a small interface that fits the control plane.
//!
//! A server is not trusted to be well-behaved: every exchange has one deadline (its timeout)
//! for sending the request and receiving the whole response, however slowly the bytes trickle
//! in, a response body is refused beyond a size limit (64 MiB unless raised), redirects are not
//! followed and no proxy is taken from the environment. There are no built-in trust roots: an
//! https client trusts exactly the certificates in the CA file it is given ([`crate::tls`]).

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, TcpConnector, Transport, TransportAdapter,
};

/// Largest response head the client accepts.
const MAX_HEAD: usize = 64 << 10;
/// Largest response body the client accepts unless raised ([`Client::with_max_response_body`]).
const DEFAULT_MAX_BODY: usize = 64 << 20;
/// Default connect and request timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP response: one a [`Client`] received, or one the server built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a `content-type` header (left out when `content_type` is empty) and a body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        let headers = if content_type.is_empty() {
            Vec::new()
        } else {
            vec![("content-type".to_string(), content_type.to_string())]
        };
        Response { status, headers, body: body.into() }
    }

    /// A pretty-printed JSON body with a trailing newline and `content-type: application/json`.
    /// A value that cannot be serialized (e.g. a map with non-string keys) gives a 500
    /// [`Response::error`] instead.
    pub fn json<T: serde::Serialize>(status: u16, value: &T) -> Response {
        match serde_json::to_vec_pretty(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Response::new(status, "application/json", body)
            }
            Err(e) => Response::error(500, &format!("cannot encode the response as JSON: {e}")),
        }
    }

    /// A compact JSON body (for the big bodies machines read: an agent's ruleset).
    pub fn json_compact<T: serde::Serialize>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(status, "application/json", body),
            Err(e) => Response::error(500, &format!("cannot encode the response as JSON: {e}")),
        }
    }

    /// A JSON error body `{"message": message, "status": status}` (the shape the server itself
    /// uses for its own error responses).
    pub fn error(status: u16, message: &str) -> Response {
        let value = serde_json::json!({ "message": message, "status": status });
        // A `Value` always serializes.
        let mut body = serde_json::to_vec_pretty(&value).unwrap_or_default();
        body.push(b'\n');
        Response::new(status, "application/json", body)
    }

    /// Adds a header field (builder style).
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The value of the first header field called `name` (compared case-insensitively).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Parses the body as JSON.
    pub fn json_body<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What can go wrong talking to a server.
#[derive(Debug)]
pub enum Error {
    /// Could not connect (or resolve) the target, shown as `host:port`.
    Connect(String, io::Error),
    /// Reading or writing a connection failed, or timed out (kind `TimedOut`).
    Io(io::Error),
    /// TLS configuration or handshake failure.
    Tls(String),
    /// The peer spoke something that is not acceptable HTTP/1.1.
    Protocol(String),
    /// A base URL, path or method that cannot be used.
    Url(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect(target, e) => write!(f, "cannot connect to {target}: {e}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Tls(m) => write!(f, "TLS: {m}"),
            Error::Protocol(m) => write!(f, "HTTP protocol error: {m}"),
            Error::Url(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect(_, e) | Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// An HTTP/1.1 client for one server (one base URL). It keeps a small pool of keep-alive
/// connections; clones share it (and the configuration).
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    https: bool,
    /// `scheme://host:port` plus the base URL's path prefix, without a trailing slash.
    base: String,
    /// `host:port` (brackets around IPv6), for messages.
    display: String,
    token: Option<String>,
    timeout: Duration,
    max_body: usize,
    tls: Option<Arc<ClientConfig>>,
}

impl Client {
    /// A client for `base`, `"http://host:port"` or `"https://host:port"` (the host an IPv4
    /// literal, an IPv6 literal in brackets, or a name; the port defaults to 80/443; a path
    /// prefix is allowed). `ca` is the PEM file with the certificate(s) to trust for https
    /// (required: there are no built-in roots; ignored for http): CA certificates, or the
    /// server's own certificate (e.g. a self-signed one), which is then accepted as is while it
    /// is valid and names the host.
    pub fn new(base: &str, ca: Option<&Path>) -> Result<Client, Error> {
        let (https, display, base_url) = parse_base(base)?;
        let tls = if https {
            let ca = ca.ok_or_else(|| {
                Error::Tls(format!(
                    "{base} needs a CA certificate file to verify the server (there are no built-in trusted roots)"
                ))
            })?;
            Some(Arc::new(crate::tls::client_tls_config(crate::tls::ServerTrust::CaFile(ca), b"http/1.1")?))
        } else {
            None
        };
        let mut client = Client {
            agent: ureq::Agent::new_with_defaults(),
            https,
            base: base_url,
            display,
            token: None,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            tls,
        };
        client.agent = client.build_agent();
        Ok(client)
    }

    fn build_agent(&self) -> ureq::Agent {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .max_response_header_size(MAX_HEAD)
            .timeout_connect(Some(self.timeout))
            .timeout_global(Some(self.timeout))
            .user_agent(concat!("fleetwall/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(4)
            .build();
        let connector =
            TcpConnector::default().chain(PinnedTls { config: self.tls.clone(), display: self.display.clone() });
        ureq::Agent::with_parts(config, connector, LiteralFirst::default())
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: &str) -> Client {
        self.token = Some(token.trim().to_string());
        self
    }

    /// Sets the connect timeout, the TLS handshake's, and each request's: the longest time for
    /// sending a request and receiving its whole response (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self.agent = self.build_agent();
        self
    }

    /// Sets the largest response body accepted (default 64 MiB); a larger one is an
    /// [`Error::Protocol`].
    pub fn with_max_response_body(mut self, bytes: usize) -> Client {
        self.max_body = bytes;
        self
    }

    /// The server's `host:port`, as used in messages.
    pub fn target(&self) -> &str {
        &self.display
    }

    /// Sends a request and reads the response (any status is a successful response).
    ///
    /// `path_and_query` is like `"/v1/status?x=1"` (encode segments with [`percent_encode`]).
    /// `body` is a content type and the bytes.
    pub fn request(&self, method: &str, path_and_query: &str, body: Option<(&str, &[u8])>) -> Result<Response, Error> {
        self.request_with_timeout(method, path_and_query, body, self.timeout)
    }

    /// `GET path_and_query`.
    pub fn get(&self, path_and_query: &str) -> Result<Response, Error> {
        self.request("GET", path_and_query, None)
    }

    /// Sends `body` as JSON (`content-type: application/json`).
    pub fn send_json<T: serde::Serialize>(
        &self,
        method: &str,
        path_and_query: &str,
        body: &T,
    ) -> Result<Response, Error> {
        let bytes =
            serde_json::to_vec(body).map_err(|e| Error::Protocol(format!("cannot encode the request body: {e}")))?;
        self.request(method, path_and_query, Some(("application/json", &bytes)))
    }

    /// Like [`Client::request`], with a timeout for this call only (for long-polls): the whole
    /// exchange ends by then. The connect timeout stays the client's.
    pub fn request_with_timeout(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<(&str, &[u8])>,
        timeout: Duration,
    ) -> Result<Response, Error> {
        let method_ok =
            !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !method_ok {
            return Err(Error::Url(format!("invalid HTTP method {method:?}")));
        }
        if !path_and_query.starts_with('/') || !path_and_query.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Url(format!(
                "invalid request path {path_and_query:?}: it must start with '/' and be percent-encoded"
            )));
        }
        let uri = format!("{}{path_and_query}", self.base);
        let mut builder = ureq::http::Request::builder().method(method).uri(&uri);
        if let Some(token) = &self.token {
            if token.bytes().any(|b| b.is_ascii_control()) {
                return Err(Error::Url("the bearer token has control characters".into()));
            }
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let mut response = match body {
            Some((content_type, bytes)) => {
                if content_type.bytes().any(|b| b.is_ascii_control()) {
                    return Err(Error::Url(format!("invalid content type {content_type:?}")));
                }
                if !content_type.is_empty() {
                    builder = builder.header("content-type", content_type);
                }
                self.run(builder.body(bytes), &uri, timeout)?
            }
            // A POST or PUT without a body still announces it (Content-Length: 0).
            None if !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS") => {
                self.run(builder.body(&[][..]), &uri, timeout)?
            }
            None => self.run(builder.body(()), &uri, timeout)?,
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).trim().to_string()))
            .collect();
        let max = self.max_body;
        if let Some(length) = response.body().content_length() {
            if length > max as u64 {
                return Err(Error::Protocol(format!(
                    "{}: the response body of {length} bytes is larger than the client's limit of {max} bytes",
                    self.display
                )));
            }
        }
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            response.body_mut().with_config().limit(max as u64).read_to_vec().map_err(|e| self.error(e, timeout))?
        };
        Ok(Response { status, headers, body })
    }

    fn run<S: ureq::AsSendBody>(
        &self,
        request: Result<ureq::http::Request<S>, ureq::http::Error>,
        uri: &str,
        timeout: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, Error> {
        let request = request.map_err(|e| Error::Url(format!("invalid request to {uri}: {e}")))?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(timeout))
            .allow_non_standard_methods(true)
            .build();
        self.agent.run(request).map_err(|e| self.error(e, timeout))
    }

    /// An error with the target (and the timeout) in its message.
    fn error(&self, e: ureq::Error, timeout: Duration) -> Error {
        let display = &self.display;
        match e {
            ureq::Error::Timeout(_) => Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no response from {display} within {:.1} s", timeout.as_secs_f64()),
            )),
            ureq::Error::ConnectionFailed => {
                Error::Connect(display.clone(), io::Error::new(io::ErrorKind::ConnectionRefused, "connection failed"))
            }
            ureq::Error::HostNotFound => {
                Error::Connect(display.clone(), io::Error::new(io::ErrorKind::NotFound, "the name has no addresses"))
            }
            ureq::Error::BodyExceedsLimit(limit) => Error::Protocol(format!(
                "{display}: the response body is larger than the client's limit of {limit} bytes"
            )),
            ureq::Error::Io(e) => {
                if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                    return Error::Tls(format!("{display}: {tls}"));
                }
                if let Some(message) = e.get_ref().and_then(|inner| inner.downcast_ref::<TlsFailure>()) {
                    return Error::Tls(message.0.clone());
                }
                match e.kind() {
                    io::ErrorKind::ConnectionRefused => Error::Connect(display.clone(), e),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no response from {display} within {:.1} s", timeout.as_secs_f64()),
                    )),
                    kind => Error::Io(io::Error::new(kind, format!("{display}: {e}"))),
                }
            }
            ureq::Error::Protocol(p) => {
                let text = p.to_string();
                if !self.https && text.contains("status line") {
                    // A TLS server answers a plain request with a TLS alert, not a status line.
                    return Error::Protocol(format!("{display} did not answer with HTTP (is it https?): {text}"));
                }
                Error::Protocol(format!("{display}: {text}"))
            }
            ureq::Error::Http(e) => Error::Url(format!("{display}: {e}")),
            ureq::Error::BadUri(m) => Error::Url(m),
            other => Error::Protocol(format!("{display}: {other}")),
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("https", &self.https)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// `(https, "host:port" for messages, "scheme://host:port/prefix")` of a base URL.
fn parse_base(base: &str) -> Result<(bool, String, String), Error> {
    let bad = |why: &str| Error::Url(format!("invalid server URL {base:?}: {why}"));
    let (https, rest) = if let Some(rest) = base.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = base.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err(bad("it must start with http:// or https://"));
    };
    let (authority, prefix) = rest.find('/').map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
    if authority.is_empty() {
        return Err(bad("it has no host"));
    }
    if authority.contains(['@', '?', '#']) || !authority.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("the host part may carry no user, query or fragment"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("an IPv6 literal needs a closing ']'"))?;
        host.parse::<std::net::Ipv6Addr>().map_err(|_| bad("not an IPv6 address between the brackets"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after the IPv6 literal"))?),
        };
        (format!("[{host}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("it has no host"));
    }
    let port = match port {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| bad("the port must be 1 to 65535"))?,
    };
    if prefix.contains(['?', '#']) || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("the path prefix must be plain and percent-encoded"));
    }
    let display = format!("{host}:{port}");
    let scheme = if https { "https" } else { "http" };
    Ok((https, display.clone(), format!("{scheme}://{display}{}", prefix.trim_end_matches('/'))))
}

/// ureq's resolver, except that an IP literal (what agents are mostly given) is used as it
/// is: ureq's own resolves every name, literals too, on a thread it starts per request when
/// a timeout is set (and ours always is).
#[derive(Debug, Default)]
struct LiteralFirst(DefaultResolver);

impl Resolver for LiteralFirst {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port = uri.port_u16().or_else(|| match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        match (literal.parse::<std::net::IpAddr>(), port) {
            (Ok(ip), Some(port)) => {
                let mut addrs = self.empty();
                addrs.push(std::net::SocketAddr::new(ip, port));
                Ok(addrs)
            }
            _ => self.0.resolve(uri, config, timeout),
        }
    }
}

/// A TLS failure explained for people (a plain server on the other end, a closed handshake).
#[derive(Debug)]
struct TlsFailure(String);

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsFailure {}

/// ureq's connector step for https: rustls with the client configuration built from the CA
/// file ([`crate::tls::client_tls_config`], which accepts a pinned self-signed certificate).
#[derive(Debug)]
struct PinnedTls {
    config: Option<Arc<ClientConfig>>,
    display: String,
}

impl<In: Transport> Connector<In> for PinnedTls {
    type Out = Either<In, TlsTransport>;

    fn connect(&self, details: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else { return Ok(None) };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let Some(config) = &self.config else {
            return Err(ureq::Error::Tls("no TLS configuration for an https URL"));
        };
        let host = details.uri.host().unwrap_or_default();
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_string())
                .map_err(|_| ureq::Error::BadUri(format!("{host:?} is not a valid DNS name")))?,
        };
        let display = &self.display;
        let mut conn = ClientConnection::new(config.clone(), name)
            .map_err(|e| ureq::Error::Io(io::Error::other(TlsFailure(format!("{display}: {e}")))))?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        while conn.is_handshaking() {
            match conn.complete_io(&mut sock) {
                Ok((0, 0)) => {
                    return Err(tls_failure(format!("{display} closed the connection during the TLS handshake")));
                }
                Ok(_) => {}
                Err(e) => {
                    let rustls = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
                    let message = match rustls {
                        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => format!(
                            "handshake with {display} failed: the server did not answer with TLS (is it a plain http:// server?)"
                        ),
                        Some(e) => format!("handshake with {display} failed: {e}"),
                        None if matches!(
                            e.kind(),
                            io::ErrorKind::UnexpectedEof
                                | io::ErrorKind::ConnectionReset
                                | io::ErrorKind::ConnectionAborted
                                | io::ErrorKind::BrokenPipe
                        ) =>
                        {
                            format!("{display} closed the connection during the TLS handshake (is it an https server?)")
                        }
                        None => return Err(ureq::Error::Io(e)),
                    };
                    return Err(tls_failure(message));
                }
            }
        }
        let buffers = LazyBuffers::new(details.config.input_buffer_size(), details.config.output_buffer_size());
        Ok(Some(Either::B(TlsTransport { buffers, stream: StreamOwned { conn, sock } })))
    }
}

fn tls_failure(message: String) -> ureq::Error {
    ureq::Error::Io(io::Error::other(TlsFailure(message)))
}

/// A rustls session over ureq's chained transport.
struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        self.stream.flush()?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = match self.stream.read(input) {
            Ok(n) => n,
            // A server that closes without close_notify ends the response all the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e.into()),
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Percent-encodes everything but the unreserved characters (`A-Z a-z 0-9 - . _ ~`), for use as
/// one path segment or one query name or value.
pub fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for &b in segment.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_as_space`, as in query strings).
/// `None` when an escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str, plus_as_space: bool) -> Option<String> {
    if !s.contains(['%', '+']) {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_round_trips() {
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("web 1/x?y=z&é"), "web%201%2Fx%3Fy%3Dz%26%C3%A9");
        assert_eq!(percent_decode("web%201%2Fx%3fy", false).unwrap(), "web 1/x?y");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode("a+b%2B", true).unwrap(), "a b+");
        assert_eq!(percent_decode("%C3%A9", true).unwrap(), "é");
        assert_eq!(percent_decode("%zz", true), None);
        assert_eq!(percent_decode("%4", true), None);
        assert_eq!(percent_decode("%FF", true), None);
        for s in ["", "plain", "spa ce", "ünï/cödé?&=+%"] {
            assert_eq!(percent_decode(&percent_encode(s), true).unwrap(), s);
        }
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base("http://127.0.0.1:8181").unwrap(),
            (false, "127.0.0.1:8181".into(), "http://127.0.0.1:8181".into())
        );
        assert_eq!(
            parse_base("https://[::1]/api/").unwrap(),
            (true, "[::1]:443".into(), "https://[::1]:443/api".into())
        );
        assert_eq!(parse_base("http://cp.example").unwrap().1, "cp.example:80");
        for bad in ["ftp://x", "http://", "http://h:0", "http://h:x", "http://u@h", "http://[::1", "http://h/?q"] {
            assert!(matches!(parse_base(bad), Err(Error::Url(_))), "{bad}");
        }
        assert!(Client::new("https://127.0.0.1:1", None).unwrap_err().to_string().contains("needs a CA certificate"));
    }

    #[test]
    fn request_paths_and_methods_are_checked_before_connecting() {
        let c = Client::new("http://127.0.0.1:9", None).unwrap();
        assert!(matches!(c.get("no-slash"), Err(Error::Url(_))));
        assert!(matches!(c.get("/a b"), Err(Error::Url(_))));
        assert!(matches!(c.request("G T", "/", None), Err(Error::Url(_))));
        let t = Client::new("http://127.0.0.1:9", None).unwrap().with_token("a\u{1}b");
        assert!(matches!(t.get("/"), Err(Error::Url(_))));
    }

    #[test]
    fn ip_literals_are_not_looked_up() {
        let config = ureq::Agent::config_builder().build();
        let resolve = |uri: &str| {
            let uri: ureq::http::Uri = uri.parse().unwrap();
            LiteralFirst::default().resolve(&uri, &config, NextTimeout::default()).unwrap().to_vec()
        };
        assert_eq!(resolve("http://127.0.0.1:8181/v1"), vec!["127.0.0.1:8181".parse().unwrap()]);
        assert_eq!(resolve("http://[::1]/"), vec!["[::1]:80".parse().unwrap()]);
        assert_eq!(resolve("https://10.0.0.1/"), vec!["10.0.0.1:443".parse().unwrap()]);
        assert!(resolve("http://localhost:9/").iter().all(|a| a.ip().is_loopback() && a.port() == 9));
    }

    #[test]
    fn error_messages() {
        let e = Error::Connect("127.0.0.1:8181".into(), io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(e.to_string().starts_with("cannot connect to 127.0.0.1:8181: "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(Error::Protocol("x".into()).to_string(), "HTTP protocol error: x");
    }
}
