//! Buffered connection reading and the parts of HTTP/1.1 syntax both sides share.

use std::io::{self, Read, Write};

/// How much one read asks for.
const READ_CHUNK: usize = 16 * 1024;

/// The outcome of reading a message head.
pub(crate) enum Head {
    /// The peer closed the connection before sending any byte of a head.
    Closed,
    /// The head, without the empty line that ends it.
    Bytes(Vec<u8>),
    /// The head is longer than allowed.
    TooLarge,
}

/// A connection with a read buffer: message heads and chunk-size lines are read through the
/// buffer, bodies are read from it first and then straight from the connection.
pub(crate) struct BufConn<S> {
    pub(crate) inner: S,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes received so far (to tell whether a peer closed before answering at all).
    pub(crate) received: u64,
}

impl<S: Read + Write> BufConn<S> {
    pub(crate) fn new(inner: S) -> BufConn<S> {
        BufConn { inner, buf: Vec::new(), pos: 0, received: 0 }
    }

    /// Bytes received but not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads once from the connection into the buffer; `Ok(0)` at end of stream.
    pub(crate) fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= READ_CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let result = loop {
            match self.inner.read(&mut self.buf[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = *result.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        self.received += n as u64;
        result
    }

    /// Reads a message head (up to and without the empty line), at most `max` bytes including
    /// the empty line. Empty lines before the head are skipped when `skip_empty_lines`.
    pub(crate) fn read_head(&mut self, max: usize, skip_empty_lines: bool) -> io::Result<Head> {
        let mut scanned = 0;
        loop {
            if skip_empty_lines {
                while self.pos < self.buf.len() && matches!(self.buf[self.pos], b'\r' | b'\n') {
                    self.pos += 1;
                }
            }
            let data = self.buffered();
            if let Some((head_len, total)) = find_head_end(data, scanned) {
                if total > max {
                    return Ok(Head::TooLarge);
                }
                let head = data[..head_len].to_vec();
                self.pos += total;
                return Ok(Head::Bytes(head));
            }
            if data.len() > max {
                return Ok(Head::TooLarge);
            }
            scanned = data.len().saturating_sub(3);
            if self.fill()? == 0 {
                return if self.buffered().is_empty() {
                    Ok(Head::Closed)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed in the middle of a message head",
                    ))
                };
            }
        }
    }

    /// Reads one line (for chunked framing), without its line ending; at most `max` bytes.
    pub(crate) fn read_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut scanned = 0;
        loop {
            let data = self.buffered();
            if let Some(i) = data[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                let line = data[..end].strip_suffix(b"\r").unwrap_or(&data[..end]).to_vec();
                self.pos += end + 1;
                return Ok(line);
            }
            if data.len() > max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long in chunked body"));
            }
            scanned = data.len();
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed in the middle of a body"));
            }
        }
    }

    /// Appends exactly `n` more bytes to `out` (growing it as data arrives, not up front).
    pub(crate) fn read_exact_into(&mut self, n: usize, out: &mut Vec<u8>) -> io::Result<()> {
        let target = out.len() + n;
        let take = n.min(self.buffered().len());
        out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
        self.pos += take;
        while out.len() < target {
            let old = out.len();
            out.resize(old + (target - old).min(64 * 1024), 0);
            match self.inner.read(&mut out[old..]) {
                Ok(0) => {
                    out.truncate(old);
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed in the middle of a body",
                    ));
                }
                Ok(k) => {
                    out.truncate(old + k);
                    self.received += k as u64;
                }
                Err(e) => {
                    out.truncate(old);
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Appends everything until the end of the stream to `out`, failing beyond `max` bytes.
    pub(crate) fn read_to_close(&mut self, max: usize, out: &mut Vec<u8>) -> io::Result<()> {
        loop {
            out.extend_from_slice(self.buffered());
            self.pos = self.buf.len();
            if out.len() > max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the body is larger than the limit of {max} bytes"),
                ));
            }
            if self.fill()? == 0 {
                return Ok(());
            }
        }
    }

    /// Writes all of `data` and flushes.
    pub(crate) fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(data)?;
        self.inner.flush()
    }
}

/// Finds the empty line that ends a head, searching from `from`: returns the length of the head
/// (up to the line feed ending its last line) and the length including the empty line.
fn find_head_end(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < data.len() {
        if data[i] == b'\n' {
            match data.get(i + 1) {
                Some(b'\n') => return Some((i, i + 2)),
                Some(b'\r') if data.get(i + 2) == Some(&b'\n') => return Some((i, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Splits a head into its lines (without line endings). `Err` on a bare carriage return.
pub(crate) fn head_lines(head: &[u8]) -> Result<Vec<&[u8]>, String> {
    head.split(|&b| b == b'\n')
        .map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.contains(&b'\r') {
                Err("bare carriage return in the message head".to_string())
            } else {
                Ok(line)
            }
        })
        .collect()
}

/// Whether `b` may appear in a token (a method or a header name).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` is a non-empty token.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Parses header lines into (lower-cased name, trimmed value) pairs.
pub(crate) fn parse_header_lines(lines: &[&[u8]]) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::with_capacity(lines.len());
    for line in lines {
        if line.first().is_some_and(|b| matches!(b, b' ' | b'\t')) {
            return Err("folded header lines are not supported".into());
        }
        let colon = line.iter().position(|&b| b == b':').ok_or("header line without a colon")?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if !is_token(name) {
            return Err(format!("invalid header name {:?}", String::from_utf8_lossy(name)));
        }
        if value.contains(&0) {
            return Err("NUL byte in a header value".into());
        }
        let value = String::from_utf8_lossy(value.trim_ascii());
        headers.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value.into_owned()));
    }
    Ok(headers)
}

/// Whether a comma-separated header (like `Connection`) lists `token`, case-insensitively.
pub(crate) fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The value of a `Content-Length`, accepting repeats of the same value. `Ok(None)` if absent.
pub(crate) fn content_length(headers: &[(String, String)]) -> Result<Option<u64>, String> {
    let mut found: Option<u64> = None;
    for (_, value) in headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
        for part in value.split(',') {
            let part = part.trim();
            if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("invalid Content-Length {value:?}"));
            }
            let n: u64 = part.parse().map_err(|_| format!("invalid Content-Length {value:?}"))?;
            if found.is_some_and(|f| f != n) {
                return Err("conflicting Content-Length values".into());
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// The reason phrase for a status code (empty when unknown, which HTTP allows).
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Whether an I/O error means the peer closed (or reset) the connection.
pub(crate) fn is_closed_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

/// Whether an I/O error is a socket timeout.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// A connection in the clear or over TLS (`T` is the rustls stream over `P`).
pub(crate) enum Stream<P, T> {
    /// Plain TCP.
    Plain(P),
    /// TLS.
    Tls(Box<T>),
}

impl<P: Read, T: Read> Read for Stream<P, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl<P: Write, T: Write> Write for Stream<P, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A stream that hands out its input a few bytes per read and swallows writes.
    struct Trickle(Cursor<Vec<u8>>, usize);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1);
            self.0.read(&mut buf[..n])
        }
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn conn(data: &[u8], step: usize) -> BufConn<Trickle> {
        BufConn::new(Trickle(Cursor::new(data.to_vec()), step))
    }

    #[test]
    fn heads_lines_and_bodies() {
        for step in [1, 2, 3, 7, 1000] {
            let mut c = conn(
                b"\r\nGET / HTTP/1.1\r\nA: 1\r\n\r\nbodyPOST / HTTP/1.0\nB:2\n\n5;x=y\r\nhello\r\n0\r\n\r\nrest",
                step,
            );
            let Head::Bytes(h) = c.read_head(1000, true).unwrap() else { panic!() };
            assert_eq!(head_lines(&h).unwrap(), vec![&b"GET / HTTP/1.1"[..], b"A: 1"]);
            let mut body = Vec::new();
            c.read_exact_into(4, &mut body).unwrap();
            assert_eq!(body, b"body");
            let Head::Bytes(h) = c.read_head(1000, false).unwrap() else { panic!() };
            assert_eq!(h, b"POST / HTTP/1.0\nB:2");
            assert_eq!(c.read_line(100).unwrap(), b"5;x=y");
            let mut chunk = Vec::new();
            c.read_exact_into(5, &mut chunk).unwrap();
            assert_eq!(chunk, b"hello");
            assert_eq!(c.read_line(100).unwrap(), b"");
            assert_eq!(c.read_line(100).unwrap(), b"0");
            assert_eq!(c.read_line(100).unwrap(), b"");
            let mut rest = Vec::new();
            c.read_to_close(100, &mut rest).unwrap();
            assert_eq!(rest, b"rest");
            assert!(matches!(c.read_head(1000, true).unwrap(), Head::Closed));
        }
    }

    #[test]
    fn head_limits_and_truncation() {
        assert!(matches!(conn(&[b'a'; 5000], 100).read_head(4096, false).unwrap(), Head::TooLarge));
        assert!(matches!(conn(b"GET / HTTP/1.1\r\nA: 1\r\n\r\n", 3).read_head(10, false).unwrap(), Head::TooLarge));
        let e = conn(b"GET / HTTP/1.1\r\n", 3).read_head(1000, false).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = conn(b"abc", 3).read_exact_into(5, &mut Vec::new()).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn header_parsing() {
        let h = parse_header_lines(&[b"Content-Length:  12 ", b"Connection: Keep-Alive, close"]).unwrap();
        assert_eq!(h[0], ("content-length".to_string(), "12".to_string()));
        assert!(has_token(&h, "connection", "close"));
        assert!(has_token(&h, "Connection", "keep-alive"));
        assert_eq!(content_length(&h).unwrap(), Some(12));
        assert!(parse_header_lines(&[b" folded"]).is_err());
        assert!(parse_header_lines(&[b"No colon"]).is_err());
        assert!(parse_header_lines(&[b"Bad Name: x"]).is_err());
        let two =
            |a: &str, b: &str| vec![("content-length".to_string(), a.to_string()), ("Content-Length".into(), b.into())];
        assert_eq!(content_length(&two("5", "5")).unwrap(), Some(5));
        assert!(content_length(&two("5", "6")).is_err());
        assert!(content_length(&two("-1", "-1")).is_err());
        assert!(content_length(&two("+5", "+5")).is_err());
        assert!(content_length(&two("99999999999999999999", "1")).is_err());
        assert_eq!(content_length(&[]).unwrap(), None);
        assert!(head_lines(b"GET / HTTP/1.1\r\nA: 1\r2").is_err());
    }
}
