//! A tiny blocking HTTP/1.1 client for tests: one request per connection
//! (`connection: close`), the whole response read into memory, headers kept
//! in wire order with their multiplicity so tests can assert on both.

use crate::wire::{self, Framing};
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header fields in the order received, names as on the wire.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The request headers as the echo upstream received them: the
    /// `[[name, value], ...]` JSON body of an [`crate::EchoUpstream`] reply.
    ///
    /// # Panics
    /// When the body is not that JSON (e.g. Envoy answered with an error).
    pub fn echoed_request_headers(&self) -> Vec<(String, String)> {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "response (status {}) is not an echo of request headers ({err}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// The values of request header `name` as the echo upstream received it.
    pub fn echoed(&self, name: &str) -> Vec<String> {
        self.echoed_request_headers()
            .into_iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
            .collect()
    }
}

/// `GET path` with extra request headers.
///
/// # Panics
/// On any I/O or protocol error, naming the address and path.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    try_get(addr, path, headers)
        .unwrap_or_else(|err| panic!("GET http://{addr}{path} failed: {err}"))
}

/// `GET path`, returning I/O and protocol errors instead of panicking.
pub fn try_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
    request(addr, "GET", path, headers, &[])
}

/// Any method, with a body sent with `content-length` when non-empty (or when
/// the method is POST, PUT or PATCH). A `host` header is added unless given.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;

    let given = |name: &str| {
        headers
            .iter()
            .any(|(key, _)| key.eq_ignore_ascii_case(name))
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !given("host") {
        head.push_str(&format!("host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !given("connection") {
        head.push_str("connection: close\r\n");
    }
    let sends_body = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
    if sends_body && !given("content-length") && !given("transfer-encoding") {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");

    let mut writer = &stream;
    writer.write_all(head.as_bytes())?;
    writer.write_all(body)?;
    writer.flush()?;

    let mut reader = BufReader::new(&stream);
    loop {
        let head = wire::read_head(&mut reader)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            )
        })?;
        let status = parse_status(&head.start_line)?;
        if (100..200).contains(&status) {
            continue; // interim response; the real one follows
        }
        let framing = if method == "HEAD" || status == 204 || status == 304 {
            Framing::Empty
        } else {
            Framing::of(&head, Framing::UntilClose)?
        };
        let body = wire::read_body(&mut reader, framing)?;
        return Ok(Response {
            status,
            headers: head.headers,
            body,
        });
    }
}

fn parse_status(line: &str) -> io::Result<u16> {
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(version), Some(Ok(status))) if version.starts_with("HTTP/1.") => Ok(status),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad status line: {line:?}"),
        )),
    }
}
