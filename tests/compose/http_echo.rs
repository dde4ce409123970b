//! Stand-in for `mendhak/http-https-echo` in the compose test (no Docker Hub
//! here): answers every request on `$HTTP_PORT` (default 8080) with a JSON
//! echo of it in that image's shape (`path`, `method`, `headers` as an object
//! of lower-cased names, `body`, `ip`, `protocol`, `os.hostname`) and, like
//! that image's Express server, the response header `x-powered-by: Express`.
//!
//! Runs as PID 1 of its container, where signals without a handler are
//! ignored: SIGTERM and SIGINT exit at once, so `docker-compose down` does not
//! wait out its kill timeout. HTTPS (the image's 8443) is not served.

use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};

use e2e::wire::{self, Framing};
use serde_json::{json, Map, Value};

fn main() {
    let port = std::env::var("HTTP_PORT").unwrap_or_else(|_| "8080".to_string());
    exit_on_termination();
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: cannot listen on 0.0.0.0:{port}: {err}");
            std::process::exit(1);
        }
    };
    println!("Listening on port {port}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            // A client that goes away mid-request is its own business.
            let _ = serve(stream);
        });
    }
}

fn exit_on_termination() {
    extern "C" fn exit_now(_: libc::c_int) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) }
    }
    let handler = exit_now as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installing a handler that only calls an async-signal-safe function.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
}

fn serve(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?.ip().to_string();
    let mut reader = BufReader::new(&stream);
    let mut writer = &stream;
    while let Some(head) = wire::read_head(&mut reader)? {
        let body = wire::read_body(&mut reader, Framing::of(&head, Framing::Empty)?)?;
        let mut parts = head.start_line.split(' ');
        let method = parts.next().unwrap_or_default();
        let target = parts.next().unwrap_or_default();
        let close = head.has_token("connection", "close") || head.start_line.ends_with("HTTP/1.0");

        // Node joins repeated request headers with ", " (except a few).
        let mut headers = Map::new();
        for (name, value) in &head.headers {
            let name = name.to_ascii_lowercase();
            let joined = match headers.get(&name).and_then(Value::as_str) {
                Some(previous) => format!("{previous}, {value}"),
                None => value.clone(),
            };
            headers.insert(name, Value::String(joined));
        }
        let echo = json!({
            "path": target.split('?').next().unwrap_or_default(),
            "headers": headers,
            "method": method,
            "body": String::from_utf8_lossy(&body),
            "ip": peer,
            "protocol": "http",
            "os": { "hostname": hostname() },
        });
        let echo = serde_json::to_vec_pretty(&echo).map_err(io::Error::other)?;
        let mut response = String::from("HTTP/1.1 200 OK\r\nx-powered-by: Express\r\n");
        response.push_str("content-type: application/json; charset=utf-8\r\n");
        response.push_str(&format!("content-length: {}\r\n", echo.len()));
        if close {
            response.push_str("connection: close\r\n");
        }
        response.push_str("\r\n");
        writer.write_all(response.as_bytes())?;
        if method != "HEAD" {
            writer.write_all(&echo)?;
        }
        writer.flush()?;
        if close {
            break;
        }
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}
