//! The client: one cached keep-alive connection per `Client`.
//!
//! A server is not trusted to be well-behaved: every exchange has one deadline (its timeout)
//! for sending the request and receiving the whole response, however slowly the bytes trickle
//! in, and a response body is refused beyond a size limit (64 MiB unless raised).

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{DnsName, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::wire::{self, BufConn, Head};
use crate::{Error, Response};

/// Largest response head the client accepts.
const MAX_HEAD: usize = 64 << 10;
/// Largest response body the client accepts unless raised ([`Client::with_max_response_body`]).
const DEFAULT_MAX_BODY: usize = 64 << 20;
/// Default connect and read timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP/1.1 client for one server (one base URL).
///
/// It keeps one keep-alive connection; concurrent requests through the same `Client` wait for
/// each other (a long-poll holds the connection). Clone it, or create several, for parallel
/// requests: a clone shares the configuration but has its own connection.
pub struct Client {
    target: Target,
    tls: Option<Arc<ClientConfig>>,
    token: Option<String>,
    timeout: Duration,
    max_body: usize,
    conn: Mutex<Option<Conn>>,
}

/// Where a client connects to.
#[derive(Debug, Clone)]
struct Target {
    https: bool,
    /// Host name or IP literal, without brackets.
    host: String,
    port: u16,
    /// `host:port` (brackets around IPv6), for messages.
    display: String,
    /// The `Host` header value.
    host_header: String,
    /// Path prefix from the base URL, without a trailing slash (usually empty).
    prefix: String,
}

/// A TCP stream whose reads and writes stop at a deadline: before each one the socket's
/// timeout is set to what is left of it, so that a byte now and then does not extend it.
struct DeadlineTcp {
    tcp: TcpStream,
    until: Instant,
}

impl DeadlineTcp {
    /// What is left of the deadline; a timeout error once it has passed.
    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        Ok(left)
    }
}

impl io::Read for DeadlineTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.set_read_timeout(Some(self.left()?))?;
        self.tcp.read(buf)
    }
}

impl Write for DeadlineTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.set_write_timeout(Some(self.left()?))?;
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

type Stream = wire::Stream<DeadlineTcp, StreamOwned<ClientConnection, DeadlineTcp>>;

impl Stream {
    fn tcp(&mut self) -> &mut DeadlineTcp {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &mut s.sock,
        }
    }
}

type Conn = BufConn<Stream>;

/// Why an exchange failed, and whether a retry on a fresh connection is safe: the connection was
/// found closed before any byte of a response arrived.
struct Failure {
    error: Error,
    retry: bool,
}

impl Client {
    /// A client for `base`, `"http://host:port"` or `"https://host:port"` (the host an IPv4
    /// literal, an IPv6 literal in brackets, or a name; the port defaults to 80/443; a path
    /// prefix is allowed). `ca` is the PEM file with the certificate(s) to trust for https
    /// (required: there are no built-in roots; ignored for http): CA certificates, or the
    /// server's own certificate (e.g. a self-signed one), which is then accepted as is while it
    /// is valid and names the host.
    pub fn new(base: &str, ca: Option<&Path>) -> Result<Client, Error> {
        let target = parse_base(base)?;
        let tls = if target.https {
            let ca = ca.ok_or_else(|| {
                Error::Tls(format!(
                    "{base} needs a CA certificate file to verify the server (there are no built-in trusted roots)"
                ))
            })?;
            Some(crate::tls::client_config(ca)?)
        } else {
            None
        };
        Ok(Client {
            target,
            tls,
            token: None,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            conn: Mutex::new(None),
        })
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: &str) -> Client {
        self.token = Some(token.to_string());
        self
    }

    /// Sets the connect timeout, the TLS handshake's, and each request's: the longest time for
    /// sending a request and receiving its whole response (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Sets the largest response body accepted (default 64 MiB); a larger one is an
    /// [`Error::Protocol`] (announced) or [`Error::Io`] (found while reading).
    pub fn with_max_response_body(mut self, bytes: usize) -> Client {
        self.max_body = bytes;
        self
    }

    /// The server's `host:port`, as used in messages.
    pub fn target(&self) -> &str {
        &self.target.display
    }

    /// Sends a request and reads the response (any status is a successful response).
    ///
    /// `path_and_query` is like `"/v1/status?x=1"` (encode segments with
    /// [`crate::percent_encode`]). `body` is a content type and the bytes. One keep-alive
    /// connection is reused; if a reused connection turns out closed before any byte of the
    /// response arrived, the request is sent once more on a new connection.
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
    /// exchange, including a retry on a fresh connection, ends by then. The connect timeout
    /// stays the client's.
    pub fn request_with_timeout(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<(&str, &[u8])>,
        timeout: Duration,
    ) -> Result<Response, Error> {
        let request = self.encode_request(method, path_and_query, body)?;
        let until = Instant::now() + timeout;
        let head_only = method == "HEAD";
        let mut cached = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let (mut conn, reused) = match cached.take() {
            Some(conn) => (conn, true),
            None => (self.connect()?, false),
        };
        let outcome = match self.exchange(&mut conn, &request, head_only, timeout, until) {
            Err(Failure { retry: true, .. }) if reused => {
                conn = self.connect()?;
                self.exchange(&mut conn, &request, head_only, timeout, until)
            }
            outcome => outcome,
        };
        match outcome {
            Ok((response, keep_alive)) => {
                if keep_alive {
                    *cached = Some(conn);
                }
                Ok(response)
            }
            Err(failure) => Err(failure.error),
        }
    }

    fn encode_request(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<Vec<u8>, Error> {
        if !wire::is_token(method.as_bytes()) {
            return Err(Error::Url(format!("invalid HTTP method {method:?}")));
        }
        if !path_and_query.starts_with('/') || !path_and_query.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Url(format!(
                "invalid request path {path_and_query:?}: it must start with '/' and be percent-encoded"
            )));
        }
        let mut out = Vec::with_capacity(256 + body.map_or(0, |(_, b)| b.len()));
        let _ = write!(
            out,
            "{method} {}{path_and_query} HTTP/1.1\r\nHost: {}\r\n",
            self.target.prefix, self.target.host_header
        );
        if let Some(token) = &self.token {
            if token.bytes().any(|b| b.is_ascii_control()) {
                return Err(Error::Url("the bearer token has control characters".into()));
            }
            let _ = write!(out, "Authorization: Bearer {}\r\n", token.trim());
        }
        match body {
            Some((content_type, bytes)) => {
                if content_type.bytes().any(|b| b.is_ascii_control()) {
                    return Err(Error::Url(format!("invalid content type {content_type:?}")));
                }
                if !content_type.is_empty() {
                    let _ = write!(out, "Content-Type: {content_type}\r\n");
                }
                let _ = write!(out, "Content-Length: {}\r\n\r\n", bytes.len());
                out.extend_from_slice(bytes);
            }
            None if matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS") => out.extend_from_slice(b"\r\n"),
            None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        }
        Ok(out)
    }

    fn connect(&self) -> Result<Conn, Error> {
        let target = &self.target;
        let connect_error = |e| Error::Connect(target.display.clone(), e);
        let addrs: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, target.port)],
            Err(_) => (target.host.as_str(), target.port).to_socket_addrs().map_err(connect_error)?.collect(),
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no addresses");
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or_else(|| connect_error(last))?;
        let _ = tcp.set_nodelay(true);
        // The handshake's deadline; each exchange sets its own.
        let tcp = DeadlineTcp { tcp, until: Instant::now() + self.timeout };
        let Some(config) = &self.tls else { return Ok(BufConn::new(Stream::Plain(tcp))) };
        let name = match target.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::DnsName(
                DnsName::try_from(target.host.clone())
                    .map_err(|_| Error::Url(format!("{:?} is not a valid DNS name", target.host)))?,
            ),
        };
        let conn = ClientConnection::new(config.clone(), name).map_err(|e| Error::Tls(e.to_string()))?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            match tls.conn.complete_io(&mut tls.sock) {
                Ok((0, 0)) => {
                    return Err(Error::Tls(format!(
                        "{} closed the connection during the TLS handshake",
                        target.display
                    )))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(match tls_error(&e) {
                        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
                            Error::Tls(format!(
                                "handshake with {} failed: the server did not answer with TLS (is it a plain http:// server?)",
                                target.display
                            ))
                        }
                        Some(e) => Error::Tls(format!("handshake with {} failed: {e}", target.display)),
                        None if wire::is_closed_error(&e) => Error::Tls(format!(
                            "{} closed the connection during the TLS handshake (is it an https server?)",
                            target.display
                        )),
                        None => self.io_error(e, self.timeout),
                    })
                }
            }
        }
        Ok(BufConn::new(Stream::Tls(Box::new(tls))))
    }

    /// Sends a request and reads the response by `until` (`timeout` is for messages);
    /// `Ok((response, keep the connection))`.
    fn exchange(
        &self,
        conn: &mut Conn,
        request: &[u8],
        head_only: bool,
        timeout: Duration,
        until: Instant,
    ) -> Result<(Response, bool), Failure> {
        conn.inner.tcp().until = until;
        let received_before = conn.received;
        if let Err(e) = conn.send(request) {
            let retry = wire::is_closed_error(&e);
            return Err(Failure { error: self.io_error(e, timeout), retry });
        }
        self.read_response(conn, head_only, timeout)
            .map_err(|(error, closed)| Failure { retry: closed && conn.received == received_before, error })
    }

    /// Reads a response; on failure also says whether the connection was found closed.
    fn read_response(
        &self,
        conn: &mut Conn,
        head_only: bool,
        timeout: Duration,
    ) -> Result<(Response, bool), (Error, bool)> {
        let display = &self.target.display;
        let io_fail = |conn: &Conn, e: io::Error| {
            let closed = wire::is_closed_error(&e);
            if looks_like_tls(conn.buffered()) {
                return (Error::Protocol(format!("{display} answered with TLS; use an https:// URL")), closed);
            }
            (self.io_error(e, timeout), closed)
        };
        let protocol = |m: String| (Error::Protocol(format!("{display}: {m}")), false);
        let (minor, status, headers) = loop {
            let head = match conn.read_head(MAX_HEAD, false) {
                Ok(Head::Bytes(head)) => head,
                Ok(Head::Closed) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "the connection was closed before a response");
                    return Err((Error::Protocol(format!("{display}: {e}")), true));
                }
                Ok(Head::TooLarge) => return Err(protocol("response header block too large".into())),
                Err(e) => return Err(io_fail(conn, e)),
            };
            if looks_like_tls(&head) {
                return Err(io_fail(conn, io::Error::from(io::ErrorKind::InvalidData)));
            }
            let (minor, status, headers) = parse_response_head(&head).map_err(protocol)?;
            match status {
                101 => return Err(protocol("unexpected 101 Switching Protocols".into())),
                100..=199 => continue,
                _ => break (minor, status, headers),
            }
        };
        let mut keep_alive = if minor >= 1 {
            !wire::has_token(&headers, "connection", "close")
        } else {
            wire::has_token(&headers, "connection", "keep-alive")
        };
        let mut body = Vec::new();
        let chunked = headers
            .iter()
            .filter(|(n, _)| n == "transfer-encoding")
            .flat_map(|(_, v)| v.split(','))
            .next_back()
            .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        let max = self.max_body;
        if head_only || status == 204 || status == 304 {
        } else if chunked {
            read_chunked(conn, max, &mut body).map_err(|e| io_fail(conn, e))?;
        } else if headers.iter().any(|(n, _)| n == "transfer-encoding") {
            keep_alive = false;
            conn.read_to_close(max, &mut body).map_err(|e| io_fail(conn, e))?;
        } else if let Some(length) = wire::content_length(&headers).map_err(protocol)? {
            if length > max as u64 {
                return Err(protocol(format!(
                    "the response body of {length} bytes is larger than the client's limit of {max} bytes"
                )));
            }
            conn.read_exact_into(length as usize, &mut body).map_err(|e| io_fail(conn, e))?;
        } else {
            keep_alive = false;
            conn.read_to_close(max, &mut body).map_err(|e| io_fail(conn, e))?;
        }
        Ok((Response { status, headers, body }, keep_alive))
    }

    /// An I/O error with the target (and the timeout) in its message; TLS errors become `Tls`.
    fn io_error(&self, e: io::Error, timeout: Duration) -> Error {
        let display = &self.target.display;
        if let Some(tls) = tls_error(&e) {
            return Error::Tls(format!("{display}: {tls}"));
        }
        if wire::is_timeout(&e) {
            return Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no response from {display} within {:.1} s", timeout.as_secs_f64()),
            ));
        }
        Error::Io(io::Error::new(e.kind(), format!("{display}: {e}")))
    }
}

impl Clone for Client {
    /// The same configuration, with a connection of its own.
    fn clone(&self) -> Client {
        Client {
            target: self.target.clone(),
            tls: self.tls.clone(),
            token: self.token.clone(),
            timeout: self.timeout,
            max_body: self.max_body,
            conn: Mutex::new(None),
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target.display)
            .field("https", &self.target.https)
            .field("prefix", &self.target.prefix)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// The rustls error inside an I/O error, if that is what it is.
fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whether bytes look like the start of a TLS record (alert or handshake, TLS 1.x).
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}

/// A response's minor HTTP version, status and header fields.
type ResponseHead = (u8, u16, Vec<(String, String)>);

fn parse_response_head(head: &[u8]) -> Result<ResponseHead, String> {
    let lines = wire::head_lines(head)?;
    let (status_line, header_lines) = lines.split_first().ok_or("empty response")?;
    let malformed = || format!("malformed status line {:?}", String::from_utf8_lossy(status_line));
    let minor = match status_line.get(..9) {
        Some(b"HTTP/1.1 ") => 1,
        Some(b"HTTP/1.0 ") => 0,
        _ => return Err(malformed()),
    };
    let code = status_line.get(9..12).ok_or_else(malformed)?;
    if !code.iter().all(u8::is_ascii_digit) || status_line.get(12).is_some_and(|&b| b != b' ') {
        return Err(malformed());
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if status < 100 {
        return Err(malformed());
    }
    Ok((minor, status, wire::parse_header_lines(header_lines)?))
}

fn read_chunked(conn: &mut Conn, max: usize, body: &mut Vec<u8>) -> io::Result<()> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    loop {
        let line = conn.read_line(4096)?;
        let size = line.split(|&b| b == b';').next().unwrap_or(&[]).trim_ascii();
        let size = std::str::from_utf8(size)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 15)
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| invalid(format!("malformed chunk size {:?}", String::from_utf8_lossy(&line))))?;
        if size == 0 {
            // Trailer fields (ignored) up to the empty line.
            while !conn.read_line(MAX_HEAD)?.is_empty() {}
            return Ok(());
        }
        if body.len() + size > max {
            return Err(invalid(format!("the chunked response body is larger than the client's limit of {max} bytes")));
        }
        conn.read_exact_into(size, body)?;
        if !conn.read_line(2)?.is_empty() {
            return Err(invalid("missing line end after a chunk".into()));
        }
    }
}

/// Parses `http://host[:port][/prefix]` or `https://…`.
fn parse_base(base: &str) -> Result<Target, Error> {
    let bad = |why: &str| Error::Url(format!("invalid base URL {base:?}: {why}"));
    let scheme_end = base.find("://").ok_or_else(|| bad("expected http://host:port or https://host:port"))?;
    let https = match base[..scheme_end].to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let rest = &base[scheme_end + 3..];
    if rest.contains(['?', '#']) {
        return Err(bad("a query or fragment is not allowed"));
    }
    let (authority, prefix) = rest.find('/').map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
    if authority.contains('@') {
        return Err(bad("user information is not supported"));
    }
    let (host, port) = if let Some(after) = authority.strip_prefix('[') {
        let (host, port) = after.split_once(']').ok_or_else(|| bad("unclosed '[' in the host"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("brackets must hold an IPv6 address"));
        }
        let port = match port {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("expected ':port' after ']'"))?),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((_, p)) if p.contains(':') => return Err(bad("an IPv6 address must be written in brackets")),
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("the host is missing"));
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':')) {
        return Err(bad("the host has characters that are not allowed"));
    }
    let default_port = if https { 443 } else { 80 };
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| bad("the port must be 1-65535"))?,
    };
    if !prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("the path must be percent-encoded"));
    }
    let bracketed = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    let host_header = if port == default_port { bracketed.clone() } else { format!("{bracketed}:{port}") };
    Ok(Target {
        https,
        host: host.to_string(),
        port,
        display: format!("{bracketed}:{port}"),
        host_header,
        prefix: prefix.trim_end_matches('/').to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let t = parse_base("http://127.0.0.1:8181").unwrap();
        assert_eq!(
            (t.https, t.host.as_str(), t.port, t.display.as_str()),
            (false, "127.0.0.1", 8181, "127.0.0.1:8181")
        );
        assert_eq!(t.host_header, "127.0.0.1:8181");
        let t = parse_base("HTTPS://[::1]:9/api/").unwrap();
        assert_eq!((t.https, t.host.as_str(), t.port, t.display.as_str()), (true, "::1", 9, "[::1]:9"));
        assert_eq!((t.host_header.as_str(), t.prefix.as_str()), ("[::1]:9", "/api"));
        let t = parse_base("https://ctl.example.net").unwrap();
        assert_eq!(
            (t.port, t.host_header.as_str(), t.display.as_str()),
            (443, "ctl.example.net", "ctl.example.net:443")
        );
        let t = parse_base("http://[fe80::1]/").unwrap();
        assert_eq!((t.port, t.host_header.as_str(), t.prefix.as_str()), (80, "[fe80::1]", ""));
        for bad in [
            "127.0.0.1:80",
            "ftp://h",
            "http://",
            "http://:80",
            "http://h:0",
            "http://h:99999",
            "http://h:x",
            "http://::1:80",
            "http://[::1",
            "http://[nothost]:1",
            "http://[::1]x",
            "http://u@h",
            "http://h?x=1",
            "http://h h",
        ] {
            assert!(matches!(parse_base(bad), Err(Error::Url(_))), "{bad}");
        }
    }

    #[test]
    fn response_heads() {
        let (minor, status, headers) = parse_response_head(b"HTTP/1.1 404 Not Found\r\nX-A: b").unwrap();
        assert_eq!((minor, status), (1, 404));
        assert_eq!(headers, vec![("x-a".to_string(), "b".to_string())]);
        assert_eq!(parse_response_head(b"HTTP/1.0 200").unwrap().1, 200);
        for bad in [&b"HTTP/1.1 20 OK"[..], b"HTTP/1.1 2000 OK", b"HTTP/2 200 OK", b"garbage", b"HTTP/1.1 099 x"] {
            assert!(parse_response_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn request_encoding() {
        let c = Client::new("http://[::1]:8181/base", None).unwrap().with_token("t0k");
        let r = c.encode_request("POST", "/v1/x?y=1", Some(("application/json", b"{}"))).unwrap();
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "POST /base/v1/x?y=1 HTTP/1.1\r\nHost: [::1]:8181\r\nAuthorization: Bearer t0k\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        let r = c.encode_request("GET", "/", None).unwrap();
        assert!(String::from_utf8(r).unwrap().ends_with("Bearer t0k\r\n\r\n"));
        let r = c.encode_request("PUT", "/", None).unwrap();
        assert!(String::from_utf8(r).unwrap().ends_with("Content-Length: 0\r\n\r\n"));
        assert!(matches!(c.encode_request("GET", "v1", None), Err(Error::Url(_))));
        assert!(matches!(c.encode_request("GET", "/a b", None), Err(Error::Url(_))));
        assert!(matches!(c.encode_request("G T", "/", None), Err(Error::Url(_))));
    }

    #[test]
    fn client_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Client>();
    }
}
