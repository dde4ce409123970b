//! A minimal HTTP/1.1 client over one keep-alive `TcpStream`: sequential
//! `GET`s, each response read completely (headers, `content-length` body)
//! before the next request is written. Only for loopback addresses the
//! bench itself started; not a general client.

use super::config::Traffic;
use super::scenario;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One response: status and headers (names lower-cased), body kept as text.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// Every value of header `name` (lower-case), in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

pub struct Connection {
    stream: TcpStream,
    addr: SocketAddr,
    buffer: Vec<u8>,
    request: Vec<u8>,
}

impl Connection {
    /// Connects with generous timeouts: under valgrind a request takes
    /// milliseconds, a first request (JIT) can take seconds.
    pub fn open(addr: SocketAddr) -> Result<Connection> {
        if !addr.ip().is_loopback() {
            bail!("the bench only talks to loopback, not {addr}");
        }
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        stream.set_write_timeout(Some(Duration::from_secs(120)))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            addr,
            buffer: Vec::with_capacity(4096),
            request: Vec::new(),
        })
    }

    /// `GET path` on this connection; the connection stays open.
    pub fn get(&mut self, path: &str) -> Result<Response> {
        self.send("bench", path, &[])
    }

    /// `GET path` with `host` and extra request `headers`.
    pub fn send(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
        self.request.clear();
        write!(
            self.request,
            "GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: xtask-bench\r\n"
        )?;
        for (name, value) in headers {
            write!(self.request, "{name}: {value}\r\n")?;
        }
        self.request.extend_from_slice(b"\r\n");
        self.stream
            .write_all(&self.request)
            .with_context(|| format!("writing a request to {}", self.addr))?;
        self.read_response()
            .with_context(|| format!("reading a response from {}", self.addr))
    }

    /// Sends `count` requests of `traffic` (`GET /`, or the mix round and
    /// round from its start) and checks each status; the loop the
    /// measurements run (no header copies kept).
    pub fn run(&mut self, traffic: Traffic, count: u32) -> Result<()> {
        for index in 0..count as usize {
            let (response, expected) = match traffic {
                Traffic::Constant => (self.get("/")?, 200),
                Traffic::Mix => {
                    let request = &scenario::REQUESTS[index % scenario::REQUESTS.len()];
                    let response = self.send(scenario::HOST, request.path, request.headers)?;
                    (response, request.status)
                }
            };
            if response.status != expected {
                bail!(
                    "{} answered {} (not {expected}) during the run: {}",
                    self.addr,
                    response.status,
                    response.body.trim()
                );
            }
        }
        Ok(())
    }

    fn read_response(&mut self) -> Result<Response> {
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end;
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buffer[..head_end])
            .context("response head is not UTF-8")?
            .to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("bad status line `{status_line}`"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        self.buffer.drain(..head_end + 4);
        let chunked = headers
            .iter()
            .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
        let body = if chunked {
            self.read_chunked()?
        } else {
            let length = match headers.iter().find(|(name, _)| name == "content-length") {
                Some((_, value)) => value.parse::<usize>().context("bad content-length")?,
                None => 0,
            };
            self.take(length)?
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// The next `length` bytes of the stream.
    fn take(&mut self, length: usize) -> Result<Vec<u8>> {
        while self.buffer.len() < length {
            self.fill()?;
        }
        Ok(self.buffer.drain(..length).collect())
    }

    /// A `transfer-encoding: chunked` body (admin pages stream this way).
    fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(end) = find(&self.buffer, b"\r\n") {
                    break end;
                }
                self.fill()?;
            };
            let line = String::from_utf8_lossy(&self.buffer[..line_end]).into_owned();
            self.buffer.drain(..line_end + 2);
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .with_context(|| format!("bad chunk size `{line}`"))?;
            let chunk = self.take(size + 2)?;
            if size == 0 {
                return Ok(body); // no trailers from Envoy's admin
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let read = self.stream.read(&mut chunk)?;
        if read == 0 {
            bail!("connection closed mid-response");
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

/// One `GET` on a fresh connection (admin calls).
pub fn get(addr: SocketAddr, path: &str) -> Result<Response> {
    Connection::open(addr)?.get(path)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
