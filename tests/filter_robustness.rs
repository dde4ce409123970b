//! The filter under load, faults and hostile input, in a real Envoy 1.40
//! (V8) with two workers.
//!
//! - Soak: 300k keep-alive requests (wrk, loopback only) through request and
//!   response rules with formatters: no 5xx, no VM failure or restart,
//!   Envoy's heap and the VMs' linear memory flat between 100k and 300k,
//!   and the filter still writing its headers at the end.
//! - Faults: clients that abort mid-request, an upstream that resets
//!   before and during its response, headers near Envoy's 60 KiB limit and
//!   past it, HTTP/2 downstream, `%REQ(..)%` of a header holding obs-text
//!   and tabs (compared with Envoy's own route formatter), and injection
//!   attempts. After each, Envoy still serves and the filter still writes.
//!
//! Which layer stops an injection matters and is asserted: Envoy's codecs
//! refuse CR, LF and NUL in request header values before any filter runs;
//! the filter's own guard (`values_refused`) is shown with a Lua filter
//! that puts such a value into the header map behind the codec's back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use e2e::{envoy_yaml, http, paths, render, EchoUpstream, Envoy};

/// Listeners: `filter` (the Wasm filter), `native` (the same response
/// formatter as route config, for comparison), `lua` (a Lua filter that
/// writes a CR/LF value into the request before the Wasm filter runs).
/// Routes under `/reset/` go to an upstream that resets its connections.
const ENVOY: &str = r#"
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
static_resources:
  listeners:
  - name: filter
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: filter
          route_config: {{ROUTES}}
          http_filters:
{{WASM_FILTER}}
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  - name: native
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: native
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: raw }
                response_headers_to_add:
                - header: { key: x-odd-copy, value: "%REQ(x-odd)%" }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  - name: lua
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: lua
          route_config: {{ROUTES}}
          http_filters:
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              default_source_code:
                inline_string: |
                  function envoy_on_request(handle)
                    handle:headers():replace("x-evil", "a\r\nx-injected: 1")
                  end
{{WASM_FILTER}}
          # The value must not reach the upstream codec either (not the
          # filter's concern): drop it once the Wasm filter has read it.
          - name: drop-evil
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              default_source_code:
                inline_string: |
                  function envoy_on_request(handle)
                    handle:headers():remove("x-evil")
                  end
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: echo
    type: STATIC
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{UPSTREAM_PORT}} } } }
  - name: raw
    type: STATIC
    load_assignment:
      cluster_name: raw
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{RAW_PORT}} } } }
"#;

const ROUTES: &str = r#"{ virtual_hosts: [ { name: all, domains: ["*"], routes: [
            { match: { prefix: "/reset/" }, route: { cluster: raw, retry_policy: { num_retries: 0 } } },
            { match: { prefix: "/raw/" }, route: { cluster: raw } },
            { match: { prefix: "/" }, route: { cluster: echo } } ] } ] }"#;

/// Request and response rules, constants and every kind of formatter.
const FILTER_CONFIG: &str = r#"{
  "request_headers_to_add": [
    {"header": {"key": "x-env", "value": "prod"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
    {"header": {"key": "x-client", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}},
    {"header": {"key": "x-copy", "value": "%REQ(x-evil)%"}},
    {"header": {"key": "x-src-copy", "value": "<%REQ(x-src)%>"}, "append_action": "ADD_IF_ABSENT"}
  ],
  "response_headers_to_add": [
    {"header": {"key": "x-served-by", "value": "header-filter"}},
    {"header": {"key": "x-echo", "value": "%REQ(x-evil)%"}},
    {"header": {"key": "x-src-echo", "value": "%REQ(x-src):64%"}},
    {"header": {"key": "x-proto", "value": "%PROTOCOL%"}},
    {"header": {"key": "x-big-copy", "value": "%REQ(x-big)%"}},
    {"header": {"key": "x-odd-copy", "value": "%REQ(x-odd)%"}},
    {"header": {"key": "x-authority", "value": "%REQ(:authority)%"}},
    {"header": {"key": "x-path", "value": "%REQ(:path)%"}},
    {"header": {"key": "x-upstream", "value": "%UPSTREAM_REMOTE_ADDRESS%"}, "append_action": "OVERWRITE_IF_EXISTS"}
  ],
  "request_headers_to_remove": ["x-debug"],
  "response_headers_to_remove": ["x-powered-by"]
}"#;

fn wasm_filter() -> String {
    wasm_filter_with("FAIL_CLOSED", FILTER_CONFIG)
}

fn wasm_filter_with(policy: &str, config: &str) -> String {
    envoy_yaml::wasm_filter_yaml(&paths::filter_wasm(), config, policy)
}

/// Envoy with two workers in front of the echo upstream and the raw_upstream.
fn start(upstream: &EchoUpstream, raw_upstream: &RawUpstream) -> Envoy {
    let yaml = render(
        ENVOY,
        &[
            ("ROUTES", &ROUTES),
            ("WASM_FILTER", &wasm_filter()),
            ("UPSTREAM_PORT", &upstream.port()),
            ("RAW_PORT", &raw_upstream.addr.port()),
        ],
    );
    Envoy::builder()
        .concurrency(2)
        .log_level("warning")
        .start(&yaml)
        .unwrap_or_else(|e| panic!("envoy did not start: {e}"))
}

// ------------------------------------------------------------- the raw_upstream

/// A raw HTTP/1.1 upstream. `/reset/before`: reads the request, then resets
/// the connection (RST, via `SO_LINGER` 0); `/reset/mid`: sends the response
/// headers and part of the body first. Anything else (the soak): a small
/// keep-alive `200` with `x-powered-by: php`, written in one segment with
/// TCP_NODELAY so throughput is Envoy's, not Nagle's.
struct RawUpstream {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawUpstream {
    fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stopping);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                std::thread::spawn(move || reset_after_request(stream));
            }
        });
        RawUpstream {
            addr,
            stopping,
            thread: Some(thread),
        }
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn reset_after_request(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(&stream);
    let mut writer = &stream;
    loop {
        let Some(start_line) = read_head(&mut reader) else {
            return;
        };
        if start_line.starts_with("GET /reset/") {
            if !start_line.starts_with("GET /reset/before") {
                let _ = writer.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\nx-powered-by: php\r\n\r\npartial body",
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            hard_close(stream);
            return;
        }
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-powered-by: php\r\n\r\nok";
        if writer.write_all(reply).is_err() {
            return;
        }
    }
}

/// Reads a request head (no body expected); its start line, `None` at EOF.
/// Bytes, not text: header values may hold obs-text.
fn read_head(reader: &mut impl BufRead) -> Option<String> {
    let mut start_line = Vec::new();
    if reader.read_until(b'\n', &mut start_line).ok()? == 0 {
        return None;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        if line == b"\r\n" {
            return Some(String::from_utf8_lossy(&start_line).into_owned());
        }
    }
}

/// Closes with RST rather than FIN.
fn hard_close(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a valid `linger` of the
    // size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

// ------------------------------------------------------------- raw HTTP/1.1

/// A response read as bytes: header values are not assumed to be UTF-8.
struct RawResponse {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
    fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
}

/// Sends `request` as is (it should say `connection: close`) and reads the
/// whole answer until the connection ends, however it ends.
fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    parse_raw(&bytes)
}

fn parse_raw(bytes: &[u8]) -> RawResponse {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no response head in {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
            )
        });
    let mut lines = bytes[..end].split(|&b| b == b'\n');
    let status_line = String::from_utf8_lossy(lines.next().unwrap()).into_owned();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let value = &line[colon + 1..];
            let start = value
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(value.len());
            Some((
                String::from_utf8_lossy(&line[..colon]).into_owned(),
                value[start..].to_vec(),
            ))
        })
        .collect();
    RawResponse {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    }
}

fn raw_get(addr: SocketAddr, path: &str, extra: &[u8]) -> RawResponse {
    let mut request =
        format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n").into_bytes();
    request.extend_from_slice(extra);
    request.extend_from_slice(b"\r\n");
    raw_exchange(addr, &request)
}

// ------------------------------------------------------------- health checks

/// The filter is alive on this Envoy: a request gets its headers, both ways.
fn assert_filter_serves(envoy: &Envoy, what: &str) {
    let response = http::get(envoy.listener("filter"), "/health", &[("x-src", "alive")]);
    assert_eq!(response.status, 200, "after {what}: {}", response.text());
    assert_eq!(
        response.header("x-served-by"),
        Some("header-filter"),
        "after {what}"
    );
    assert_eq!(response.header("x-src-echo"), Some("alive"), "after {what}");
    assert_eq!(response.echoed("x-src-copy"), ["<alive>"], "after {what}");
    assert_eq!(response.echoed("x-env"), ["prod"], "after {what}");
}

/// Envoy's Wasm VM counters: how many VMs exist and were ever created, and
/// reloads (a crashed VM is replaced only under FAIL_RELOAD).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct VmStats {
    active: u64,
    created: u64,
    reloads: u64,
    reload_failures: u64,
}

fn vm_stats(envoy: &Envoy) -> VmStats {
    let get = |name: &str| {
        envoy
            .stat(name)
            .unwrap_or_else(|| panic!("envoy has no stat {name}"))
    };
    VmStats {
        active: get("wasm.envoy.wasm.runtime.v8.active"),
        created: get("wasm.envoy.wasm.runtime.v8.created"),
        reloads: get("wasm.header-filter.vm_reload_success"),
        reload_failures: get("wasm.header-filter.vm_reload_failure"),
    }
}

/// Lines of Envoy's log that would mean a VM failed: a trap, a panic, a
/// failed callback.
fn vm_failures(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            [
                "Uncaught",
                "panicked",
                "Function: proxy_",
                "Plugin configured to fail",
                "wasm fail",
            ]
            .iter()
            .any(|needle| l.contains(needle))
        })
        .map(str::to_string)
        .collect()
}

/// Waits for the filter's once-a-second counter flush.
fn filter_counter(envoy: &Envoy, name: &str, at_least: u64) -> u64 {
    let stat = format!("wasmcustom.header_filter.{name}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let value = envoy.stat(&stat).unwrap_or(0);
        if value >= at_least || Instant::now() >= deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ------------------------------------------------------------- memory

#[derive(Debug, Clone, Copy)]
struct Memory {
    /// tcmalloc's bytes in use (admin `/memory` `allocated`).
    allocated: u64,
    /// Sum of the VMs' linear memories: the accessible head of each of
    /// V8's Wasm memory reservations (a PROT_NONE region of several GiB,
    /// preceded by the read-write pages `memory.grow` has opened).
    wasm_linear: u64,
    wasm_memories: usize,
    rss: u64,
}

fn memory(envoy: &Envoy) -> Memory {
    let json: serde_json::Value = serde_json::from_str(&envoy.admin_get("/memory")).unwrap();
    let number = |key: &str| -> u64 {
        json[key]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("/memory has no {key}: {json}"))
    };
    let memories = e2e::envoy::wasm_linear_memories(envoy.pid());
    Memory {
        allocated: number("allocated"),
        wasm_linear: memories.iter().sum(),
        wasm_memories: memories.len(),
        rss: e2e::envoy::rss_kib(envoy.pid()) * 1024,
    }
}

// ------------------------------------------------------------- soak

const WRK_SCRIPT: &str = r#"
wrk.method = "GET"
wrk.path = "/raw/soak"
wrk.headers["x-src"] = "soak-value"
wrk.headers["x-debug"] = "1"
wrk.headers["x-respond-x-powered-by"] = "php"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) seen = 0; non2xx = 0; fivexx = 0; missing = 0 end
function response(status, headers, body)
  seen = seen + 1
  if status >= 500 then fivexx = fivexx + 1 end
  if status ~= 200 then
    non2xx = non2xx + 1
  elseif headers["x-served-by"] ~= "header-filter" or headers["x-src-echo"] ~= "soak-value"
      or headers["x-proto"] ~= "HTTP/1.1" or headers["x-powered-by"] ~= nil then
    missing = missing + 1
  end
end
function done(summary, latency, requests)
  local s, n, f, m = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("seen"); n = n + t:get("non2xx"); f = f + t:get("fivexx"); m = m + t:get("missing")
  end
  io.write(string.format("SOAK seen=%d non2xx=%d 5xx=%d missing=%d errors=%d\n",
    s, n, f, m, summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
"#;

const WRK_THREADS: u64 = 2;
const WRK_CONNECTIONS: u64 = 16;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct WrkRun {
    seen: u64,
    non2xx: u64,
    fivexx: u64,
    missing: u64,
    errors: u64,
}

/// One wrk run of `seconds` against `addr` (loopback only).
fn wrk(addr: SocketAddr, seconds: u64, script: &std::path::Path) -> WrkRun {
    assert!(addr.ip().is_loopback());
    let output = Command::new("wrk")
        .args([
            &format!("-t{WRK_THREADS}"),
            &format!("-c{WRK_CONNECTIONS}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(script)
        .arg(format!("http://{addr}/raw/soak"))
        .output()
        .expect("wrk (Debian package `wrk`) must be on PATH");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("SOAK "))
        .unwrap_or_else(|| panic!("no SOAK line in wrk output:\n{stdout}"));
    let mut run = WrkRun::default();
    for field in line["SOAK ".len()..].split_whitespace() {
        let (key, value) = field.split_once('=').unwrap();
        let value: u64 = value.parse().unwrap();
        match key {
            "seen" => run.seen = value,
            "non2xx" => run.non2xx = value,
            "5xx" => run.fivexx = value,
            "missing" => run.missing = value,
            "errors" => run.errors = value,
            _ => {}
        }
    }
    run
}

/// wrk runs a fixed time, not a count (its main thread sleeps the whole
/// duration even when the threads stop early), so load comes in short runs
/// until `total` responses were seen (new connections each run: churn too).
fn load(addr: SocketAddr, total: u64, script: &std::path::Path, into: &mut WrkRun) {
    const MAX_RUNS: usize = 60;
    // Runs of 1-5 s, sized from the rate seen so far to land near `total`.
    let mut rate = 0;
    for _ in 0..MAX_RUNS {
        if into.seen >= total {
            return;
        }
        let seconds = (total - into.seen)
            .checked_div(rate)
            .map_or(1, |s| s.clamp(1, 5));
        let run = wrk(addr, seconds, script);
        assert!(run.seen > 0, "wrk saw no response in {seconds} s");
        rate = run.seen / seconds;
        into.seen += run.seen;
        into.non2xx += run.non2xx;
        into.fivexx += run.fivexx;
        into.missing += run.missing;
        into.errors += run.errors;
    }
    panic!("only {} requests after {MAX_RUNS} wrk runs", into.seen);
}

fn within(base: u64, now: u64, percent: u64, slack: u64) -> bool {
    now <= base + base * percent / 100 + slack
}

#[test]
fn soak_300k_requests_without_errors_or_memory_growth() {
    const FIRST: u64 = 100_000;
    const TOTAL: u64 = 300_000;
    let upstream = EchoUpstream::start();
    let raw_upstream = RawUpstream::start();
    let envoy = start(&upstream, &raw_upstream);
    let listener = envoy.listener("filter");
    let dir = paths::temp_dir();
    let script = dir.path().join("soak.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();
    let vms_before = vm_stats(&envoy);

    let started = Instant::now();
    let mut run = WrkRun::default();
    load(listener, FIRST, &script, &mut run);
    let (first, first_time) = (run, started.elapsed());
    let at_first = memory(&envoy);
    load(listener, TOTAL, &script, &mut run);
    let elapsed = started.elapsed();
    let at_total = memory(&envoy);

    eprintln!(
        "soak: {} requests in {:.1} s ({:.0}/s; first {} in {:.1} s), wrk: non-2xx {}, 5xx {}, filter headers missing {}, socket errors {}",
        run.seen,
        elapsed.as_secs_f64(),
        run.seen as f64 / elapsed.as_secs_f64(),
        first.seen,
        first_time.as_secs_f64(),
        run.non2xx,
        run.fivexx,
        run.missing,
        run.errors,
    );
    eprintln!("soak: memory at {}: {at_first:?}", first.seen);
    eprintln!("soak: memory at {}: {at_total:?}", run.seen);

    assert!(run.seen >= TOTAL, "only {} requests", run.seen);
    assert_eq!(
        (run.non2xx, run.fivexx, run.missing, run.errors),
        (0, 0, 0, 0),
        "non-2xx, 5xx, responses without the filter's work, socket errors"
    );
    assert_eq!(envoy.stat("http.filter.downstream_rq_5xx"), Some(0));
    assert!(
        envoy.stat("http.filter.downstream_rq_2xx").unwrap() >= run.seen,
        "envoy counted fewer 2xx than wrk"
    );

    // No VM failed, was replaced or added.
    assert_eq!(vm_stats(&envoy), vms_before);
    let failures = vm_failures(&envoy.log());
    assert!(
        failures.is_empty(),
        "VM failures in the log:\n{failures:#?}"
    );
    // The filter counted its work: per request, 3 request writes (x-env,
    // x-client, x-src-copy) and 5 response writes (x-served-by, x-src-echo,
    // x-proto, x-authority, x-path; the others' sources are absent), and
    // 2 removals. Envoy may have answered a few more than wrk counted.
    let written = filter_counter(&envoy, "headers_written", 8 * run.seen);
    assert!(written >= 8 * run.seen, "headers_written {written}");
    let removed = filter_counter(&envoy, "headers_removed", 2 * run.seen);
    assert!(removed >= 2 * run.seen, "headers_removed {removed}");
    eprintln!("soak: filter counters: {written} headers written, {removed} removed");
    assert_eq!(
        envoy.stat("wasmcustom.header_filter.values_refused"),
        Some(0)
    );

    // Memory: flat between 100k and 300k.
    assert!(at_first.wasm_memories >= 3, "found {at_first:?}");
    assert_eq!(
        at_total.wasm_linear, at_first.wasm_linear,
        "a VM's linear memory grew"
    );
    assert!(
        within(at_first.allocated, at_total.allocated, 3, 1 << 20),
        "envoy heap grew: {} -> {}",
        at_first.allocated,
        at_total.allocated
    );
    assert!(
        within(at_first.rss, at_total.rss, 5, 4 << 20),
        "envoy RSS grew: {} -> {}",
        at_first.rss,
        at_total.rss
    );
    assert_filter_serves(&envoy, "the soak");
}

// ------------------------------------------------------------- faults

#[test]
fn envoy_and_the_filter_survive_faults() {
    let upstream = EchoUpstream::start();
    let raw_upstream = RawUpstream::start();
    let envoy = start(&upstream, &raw_upstream);
    let filter = envoy.listener("filter");
    let vms_before = vm_stats(&envoy);
    assert_filter_serves(&envoy, "start");
    let mut survived = Vec::new();

    // 1. Clients that go away mid-request.
    const ABORTS: usize = 100;
    for i in 0..ABORTS {
        let mut stream = TcpStream::connect(filter).unwrap();
        match i % 3 {
            // Half a body.
            0 => {
                let _ = stream.write_all(
                    b"POST /abort HTTP/1.1\r\nhost: t\r\nx-src: abort\r\ncontent-length: 10000\r\n\r\n",
                );
                let _ = stream.write_all(&[b'b'; 5000]);
                drop(stream);
            }
            // Half a header block.
            1 => {
                let _ = stream.write_all(b"GET /abort HTTP/1.1\r\nhost: t\r\nx-src: ab");
                drop(stream);
            }
            // A whole request, then RST before the response.
            _ => {
                let _ = stream.write_all(b"GET /abort HTTP/1.1\r\nhost: t\r\nx-src: a\r\n\r\n");
                hard_close(stream);
            }
        }
    }
    assert_filter_serves(&envoy, "client aborts");
    survived.push(format!(
        "{ABORTS} client aborts (half body, half head, RST)"
    ));

    // 2. The upstream resets: before its response, and in its body.
    const RESETS: usize = 20;
    for _ in 0..RESETS {
        let before = raw_get(filter, "/reset/before", b"x-src: r\r\n");
        assert_eq!(before.status, 503, "reset before headers");
        // Envoy's local reply passes the filter too.
        assert_eq!(before.header("x-served-by"), Some(&b"header-filter"[..]));
        let mid = raw_get(filter, "/reset/mid", b"x-src: r\r\n");
        assert_eq!(mid.status, 200, "headers came before the reset");
        assert_eq!(mid.header("x-served-by"), Some(&b"header-filter"[..]));
        assert!(
            !mid.has("x-powered-by"),
            "removed from the upstream's headers"
        );
        assert!(
            mid.body.len() < 100_000,
            "the body is cut short: {}",
            mid.body.len()
        );
    }
    assert_filter_serves(&envoy, "upstream resets");
    survived.push(format!(
        "{RESETS} upstream resets before headers (503) and {RESETS} mid-body (truncated)"
    ));

    // 3. Headers near Envoy's limit (60 KiB), copied into a response header
    //    by the filter; and past the limit.
    let big = "b".repeat(58 * 1024);
    let near = raw_get(filter, "/big", format!("x-big: {big}\r\n").as_bytes());
    assert_eq!(near.status, 200);
    assert_eq!(near.header("x-big-copy").map(<[u8]>::len), Some(big.len()));
    let many: String = (0..95).map(|i| format!("x-many-{i}: {i}\r\n")).collect();
    let many = raw_get(filter, "/many", many.as_bytes());
    assert_eq!(many.status, 200, "95 headers are under Envoy's 100");
    assert!(many.has("x-served-by"));
    let over = raw_get(filter, "/big", format!("x-big: {big}{big}\r\n").as_bytes());
    assert_eq!(over.status, 431, "the codec refuses, before the filter");
    assert_filter_serves(&envoy, "large headers");
    survived.push("58 KiB header copied by %REQ% (200), 95 headers (200), 116 KiB (431)".into());

    // 4. HTTP/2 downstream (h2c, prior knowledge).
    let h2 = h2_requests(filter, 50);
    assert_eq!(h2.len(), 50);
    for head in &h2 {
        assert_eq!(head.status_line, "HTTP/2 200");
        for (name, _) in &head.headers {
            assert_eq!(
                name,
                &name.to_ascii_lowercase(),
                "HTTP/2 names are lower-case"
            );
            assert!(!name.starts_with(':'), "no pseudo-header added: {name}");
        }
        assert_eq!(head.get("x-served-by"), Some("header-filter"));
        assert_eq!(head.get("x-proto"), Some("HTTP/2"));
        assert_eq!(head.get("x-src-echo"), Some("h2"));
        assert_eq!(head.get("x-authority"), Some(format!("{filter}").as_str()));
        assert_eq!(head.get("x-path"), Some("/h2?q=1"));
    }
    assert_filter_serves(&envoy, "HTTP/2");
    survived.push("50 HTTP/2 (h2c) requests".into());

    // 5. %REQ()% of a header holding obs-text and a tab: the filter copies
    //    exactly what Envoy's own route formatter copies.
    let odd: &[u8] = b"caf\xe9\tbar \xff\x80end";
    let mut extra = b"x-odd: ".to_vec();
    extra.extend_from_slice(odd);
    extra.extend_from_slice(b"\r\n");
    let by_filter = raw_get(filter, "/raw/odd", &extra);
    let by_envoy = raw_get(envoy.listener("native"), "/raw/odd", &extra);
    assert_eq!(by_filter.status, by_envoy.status);
    assert_eq!(
        by_filter.header("x-odd-copy"),
        by_envoy.header("x-odd-copy")
    );
    eprintln!(
        "faults: obs-text value: status {}, copied as {:?} (route formatter: {:?})",
        by_filter.status,
        by_filter.header("x-odd-copy").map(String::from_utf8_lossy),
        by_envoy.header("x-odd-copy").map(String::from_utf8_lossy)
    );
    assert_filter_serves(&envoy, "obs-text");
    survived.push(format!(
        "obs-text + tab in a %REQ% source (status {}, same bytes as the route formatter)",
        by_filter.status
    ));

    // No VM failed or was replaced along the way.
    assert_eq!(vm_stats(&envoy), vms_before);
    let failures = vm_failures(&envoy.log());
    assert!(
        failures.is_empty(),
        "VM failures in the log:\n{failures:#?}"
    );
    eprintln!("faults survived:\n  {}", survived.join("\n  "));
}

/// A response head from curl's `-D` dump.
struct Head {
    status_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `count` HTTP/2 requests (h2c, prior knowledge) with `x-src: h2`, one
/// connection each: curl 7.88 fails its second request on a reused h2c
/// prior-knowledge connection (with or without the filter, checked against
/// a bare Envoy), so reuse is not what is tested here.
fn h2_requests(addr: SocketAddr, count: usize) -> Vec<Head> {
    let url = format!("http://{addr}/h2?q=1");
    (0..count)
        .map(|_| {
            let output = Command::new("curl")
                .args([
                    "-sS",
                    "--http2-prior-knowledge",
                    "-H",
                    "x-src: h2",
                    "-o",
                    "/dev/null",
                    "-D",
                    "-",
                ])
                .arg(&url)
                .output()
                .expect("curl must be on PATH");
            assert!(
                output.status.success(),
                "curl: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let text = String::from_utf8_lossy(&output.stdout);
            let mut lines = text.lines().take_while(|l| !l.trim().is_empty());
            let status_line = lines.next().unwrap().trim().to_string();
            let headers = lines
                .filter_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    Some((n.to_string(), v.trim().to_string()))
                })
                .collect();
            Head {
                status_line,
                headers,
            }
        })
        .collect()
}

// ------------------------------------------------------------- injection

/// A request header carrying CR, LF or NUL never becomes a header of its
/// own, whatever `%REQ(..)%` copies it. Which layer stops it is part of
/// the assertion: Envoy's HTTP/1 codec, for anything a client sends; the
/// filter's guard, for a value another filter wrote into the map.
#[test]
fn request_data_cannot_inject_a_header() {
    let upstream = EchoUpstream::start();
    let raw_upstream = RawUpstream::start();
    let envoy = start(&upstream, &raw_upstream);
    let filter = envoy.listener("filter");

    // From the client: the codec refuses the request with 400 before any
    // filter sees it (the filter's guard counts nothing).
    let attempts: [(&str, &[u8]); 3] = [
        ("bare CR", b"x-evil: a\rx-injected: 1\r\n"),
        ("NUL", b"x-evil: a\0x-injected: 1\r\n"),
        ("bare LF", b"x-evil: a\nx-injected: 1\r\n"),
    ];
    for (what, extra) in attempts {
        let response = raw_get(filter, "/inject", extra);
        eprintln!(
            "injection, {what} from the client: status {}",
            response.status
        );
        assert!(!response.has("x-injected"), "{what}");
        if response.status == 200 {
            // The codec took the request and normalized the value before
            // any filter ran; whatever the filter copied is one clean value.
            let echo = response.header("x-echo").unwrap_or_default();
            eprintln!("  x-echo: {:?}", String::from_utf8_lossy(echo));
            assert!(
                !echo.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')),
                "{what}"
            );
        } else {
            assert_eq!(response.status, 400, "{what}");
            assert!(!response.has("x-echo"), "{what}");
        }
    }
    assert_eq!(filter_counter(&envoy, "values_refused", 0), 0);

    // Behind the codec's back: a Lua filter sets x-evil to "a\r\nx-injected: 1"
    // before the Wasm filter copies it into a request and a response header.
    let response = raw_get(envoy.listener("lua"), "/inject", b"x-src: lua\r\n");
    assert_eq!(
        response.status,
        200,
        "body: {}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(!response.has("x-injected"));
    assert!(!response.has("x-echo"), "the filter dropped the value");
    assert_eq!(response.header("x-served-by"), Some(&b"header-filter"[..]));
    let echoed: Vec<(String, String)> = serde_json::from_slice(&response.body).unwrap();
    assert!(
        !echoed
            .iter()
            .any(|(n, _)| n == "x-injected" || n == "x-copy"),
        "upstream saw {echoed:?}"
    );
    let refused = filter_counter(&envoy, "values_refused", 2);
    assert_eq!(
        refused, 2,
        "the guard refused the request and the response copy"
    );
    assert_filter_serves(&envoy, "injection attempts");
}

// ------------------------------------------------------------- failure policy

/// A configuration the filter refuses at `on_configure` stops a bootstrap
/// listener from loading whatever `failure_policy` says: FAIL_OPEN and
/// FAIL_RELOAD govern VM failures at request time, not a refused
/// configuration (Envoy 1.40 logs "Plugin configured to fail closed failed
/// to load" for all three). See docs/failure-policy.md.
#[test]
fn a_refused_configuration_fails_closed_under_every_failure_policy() {
    let upstream = EchoUpstream::start();
    let raw_upstream = RawUpstream::start();
    for policy in ["FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD"] {
        let yaml = render(
            ENVOY,
            &[
                ("ROUTES", &ROUTES),
                (
                    "WASM_FILTER",
                    &wasm_filter_with(policy, r#"{"request_headers_to_remove":[":path"]}"#),
                ),
                ("UPSTREAM_PORT", &upstream.port()),
                ("RAW_PORT", &raw_upstream.addr.port()),
            ],
        );
        match Envoy::builder().log_level("warning").start(&yaml) {
            Ok(_) => panic!("envoy started with a refused filter config under {policy}"),
            Err(error) => {
                let log = error.log();
                assert!(
                    log.contains(
                        "header-filter: invalid configuration: request_headers_to_remove[0]"
                    ),
                    "{policy}: {log}"
                );
                assert!(log.contains("failed to load"), "{policy}: {log}");
            }
        }
    }
}
