//! The echo upstream: a real HTTP/1.1 server on `127.0.0.1:0` that answers
//! every request with the request headers it received, so tests can see what
//! the filter did to the request after Envoy forwarded it.
//!
//! Reply: `200`, `content-type: application/json`, body the JSON array of
//! `[name, value]` pairs of the request headers in order (multiplicity kept,
//! names lower-cased). Each request header `x-respond-<name>: <value>` adds a
//! response header `<name>: <value>` (so tests can make the upstream send,
//! say, `x-powered-by`; `x-respond-content-type` replaces the JSON
//! content type), and `x-upstream: echo` is always added. `x-echo-status:
//! <code>` answers with that status instead of 200 (same body; 200-599
//! except 204 and 304, which may not carry one), so tests can make the
//! upstream fail. `x-echo-delay-ms: <ms>` (at most 10000) holds the reply
//! that long after the request was counted, so tests can keep a stream in
//! flight. Keep-alive is supported; it must not interpret anything else.
//! The request target of each request (path and query, byte for byte) is
//! kept for the test to read: [`EchoUpstream::request_targets`].

use crate::wire::{self, Framing};
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const RESPOND_PREFIX: &str = "x-respond-";
const STATUS_HEADER: &str = "x-echo-status";
const DELAY_HEADER: &str = "x-echo-delay-ms";
const MAX_DELAY_MS: u64 = 10_000;

/// A running echo server; stops (and closes its connections) on drop.
pub struct EchoUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    stopping: AtomicBool,
    requests: AtomicUsize,
    connections: Mutex<Vec<TcpStream>>,
    targets: Mutex<Vec<String>>,
}

impl EchoUpstream {
    /// Binds `127.0.0.1:0` and serves on background threads.
    ///
    /// # Panics
    /// When loopback cannot be bound.
    pub fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the echo upstream");
        let addr = listener.local_addr().expect("echo upstream address");
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            connections: Mutex::new(Vec::new()),
            targets: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("echo-upstream-{}", addr.port()))
                .spawn(move || accept_loop(listener, shared))
                .expect("spawning the echo upstream thread")
        };
        EchoUpstream {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The listening address (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port, for `{{UPSTREAM_PORT}}` in Envoy configs.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many requests have been answered so far.
    pub fn request_count(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The request target of every request answered so far, in order, as
    /// it was on the request line (what a filter made of `:path`).
    pub fn request_targets(&self) -> Vec<String> {
        self.shared
            .targets
            .lock()
            .map(|targets| targets.clone())
            .unwrap_or_default()
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Unblock connection threads parked in read(); they then exit.
        if let Ok(connections) = self.shared.connections.lock() {
            for stream in connections.iter() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if let (Ok(clone), Ok(mut connections)) = (stream.try_clone(), shared.connections.lock()) {
            connections.push(clone);
        }
        let shared = Arc::clone(&shared);
        let _ = std::thread::Builder::new()
            .name("echo-upstream-conn".to_string())
            .spawn(move || {
                // A peer that goes away mid-request is not the test's concern.
                let _ = serve(stream, &shared);
            });
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    // Head and body go out in two writes: without this, Nagle and delayed
    // ACKs stall keep-alive traffic to a few hundred requests per second.
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(&stream);
    let mut writer = &stream;
    while let Some(head) = wire::read_head(&mut reader)? {
        let framing = Framing::of(&head, Framing::Empty)?;
        wire::read_body(&mut reader, framing)?;
        // Counted before answering: a client that has its response must
        // see the count include it.
        if let Ok(mut targets) = shared.targets.lock() {
            targets.push(request_target(&head.start_line).to_string());
        }
        shared.requests.fetch_add(1, Ordering::SeqCst);
        if let Some(ms) = head
            .header(DELAY_HEADER)
            .and_then(|ms| ms.trim().parse::<u64>().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(ms.min(MAX_DELAY_MS)));
        }

        let http10 = head.start_line.ends_with("HTTP/1.0");
        let close = head.has_token("connection", "close")
            || (http10 && !head.has_token("connection", "keep-alive"));

        let received: Vec<(String, String)> = head
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect();
        let body = serde_json::to_vec(&received).map_err(io::Error::other)?;

        let status = head
            .header(STATUS_HEADER)
            .and_then(|code| code.trim().parse::<u16>().ok())
            .filter(|code| (200..=599).contains(code) && !matches!(code, 204 | 304))
            .unwrap_or(200);
        let reason = if status == 200 { "OK" } else { "Echo" };
        let mut response = format!("HTTP/1.1 {status} {reason}\r\n");
        if head.header("x-respond-content-type").is_none() {
            response.push_str("content-type: application/json\r\n");
        }
        response.push_str(&format!("content-length: {}\r\n", body.len()));
        for (name, value) in &received {
            if let Some(respond) = name.strip_prefix(RESPOND_PREFIX) {
                if !respond.is_empty() {
                    response.push_str(&format!("{respond}: {value}\r\n"));
                }
            }
        }
        response.push_str("x-upstream: echo\r\n");
        if close {
            response.push_str("connection: close\r\n");
        }
        response.push_str("\r\n");
        writer.write_all(response.as_bytes())?;
        if !head.start_line.starts_with("HEAD ") {
            writer.write_all(&body)?;
        }
        writer.flush()?;
        if close {
            break;
        }
    }
    Ok(())
}

/// The target of a request line: between the method and the version (it
/// may hold spaces when a proxy wrote a path raw).
fn request_target(start_line: &str) -> &str {
    let after_method = start_line.split_once(' ').map_or("", |(_, rest)| rest);
    after_method
        .rsplit_once(' ')
        .map_or(after_method, |(target, _)| target)
}
