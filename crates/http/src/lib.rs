//! A small, synchronous HTTP/1.1 server and client for the fleetwall control plane.
//!
//! The server runs one thread per connection (std threads), speaks HTTP/1.1 with keep-alive,
//! reads request bodies framed by `Content-Length` only, and answers every request with a
//! `Content-Length` body. It is meant for a JSON API with long-polling: thousands of mostly
//! idle keep-alive connections whose handlers may block for a minute.
//!
//! Its key decision is that nothing a peer sends is buffered before the peer is admitted: an
//! optional [`Admit`] callback sees each request's head (and may authenticate it) before a byte
//! of the body is read, every head and body must arrive within a deadline, and the bodies being
//! read on all connections together share one memory budget ([`Limits`]).
//!
//! The client keeps one keep-alive connection per [`Client`] and retries once on a fresh
//! connection when a reused one turns out to have been closed by the server.
//!
//! Both sides optionally speak TLS through rustls with the ring provider; there are no built-in
//! trust roots, the client trusts exactly the certificates in the CA file it is given.

#![warn(missing_docs)]

mod client;
mod server;
mod tls;
mod wire;

pub use client::Client;
pub use server::{raise_open_files_limit, Limits, Server};
pub use tls::{client_tls_config, ServerTrust};

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A request as seen by a server [`Handler`].
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

/// The function a [`Server`] calls with each request's head, before the body is read, on the
/// connection's thread (e.g. to authenticate the caller so that a stranger cannot make the
/// server buffer a large body). It may block briefly (a database lookup); a panic is caught and
/// answered with a 500.
pub type Admit = Arc<dyn Fn(&RequestHead<'_>) -> Admission + Send + Sync>;

/// A response: built by a server [`Handler`], or received by a [`Client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The header fields in order. The server sets `Content-Length` and `Connection` itself and
    /// ignores those (and `Transfer-Encoding`) here. In a response received by a [`Client`] the
    /// names are lower-cased.
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
        find_header(&self.headers, name)
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

/// The function a [`Server`] calls for every request, on the connection's thread. It may block
/// (e.g. for a long-poll); a panic is caught and answered with a 500.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// The PEM files a TLS [`Server`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The private key (PEM; PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

/// What can go wrong in this crate.
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

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
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
    fn error_messages() {
        let e = Error::Connect("127.0.0.1:8181".into(), io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(e.to_string().starts_with("cannot connect to 127.0.0.1:8181: "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(Error::Protocol("x".into()).to_string(), "HTTP protocol error: x");
    }
}
