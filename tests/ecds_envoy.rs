//! The filter delivered only through ECDS, as an Istio sidecar gets it, in
//! a real Envoy with two workers (Istio's sidecar default): live updates,
//! rejected updates, updates under load with streams in flight, memory over
//! 400 updates, and a cold start on a bad configuration.
//!
//! What Istio sends, read from istio/istio (tags 1.28.0 to 1.31.0-rc.0):
//! - `pilot/pkg/networking/core/extension/wasmplugin.go` (`toEnvoyHTTPFilter`;
//!   from 1.30 `extensionfilter.go`, `toEnvoyHTTPTrafficExtension`, after
//!   `pilot/pkg/config/kube/extensions/translate.go` turns a WasmPlugin into
//!   a TrafficExtension): the HTTP filter named
//!   `extensions.istio.io/wasmplugin/<namespace>.<name>` has only
//!   `config_discovery`, with `config_source` ADS, `initial_fetch_timeout: 0s`,
//!   `resource_api_version: V3`, and `type_urls` Wasm and RBAC. No
//!   `default_config`, no `apply_default_config_without_warming`.
//! - `pilot/pkg/model/extensions.go` (`buildPluginConfig` /
//!   `buildWasmConfig`, `buildVMConfig`): `PluginConfig.name`
//!   `<namespace>.<name>`, `root_id` the `pluginName`, `configuration` a
//!   `google.protobuf.StringValue` of the `pluginConfig` as JSON,
//!   `vm_config` with `runtime: envoy.wasm.runtime.v8`, no `vm_id`, the
//!   image as a remote `code`, and `environment_variables.key_values`
//!   holding `ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION` (plus pull secret and
//!   policy) and the user's `vmConfig.env`. `failStrategy` maps to
//!   `failure_policy`: `FAIL_CLOSE` (the default) → `FAIL_CLOSED`,
//!   `FAIL_OPEN` → `FAIL_OPEN`, `FAIL_RELOAD` → `FAIL_RELOAD` (for proxies
//!   1.25+; 1.28 still wrote the deprecated `fail_open` for older proxies,
//!   removed in 1.29).
//! - `pkg/wasm/convert.go` (`rewriteVMConfig`): the pilot-agent, before
//!   Envoy sees the resource, fetches the image, rewrites `code` to a local
//!   file and deletes every `ISTIO_META_*` variable (so `environment_variables`
//!   is absent when the user set no `env`). What Envoy gets is therefore
//!   what `e2e::ecds` writes; the file source stands for the ADS stream.
//!
//! Every Envoy from 1.36 has `failure_policy` with all three values (the
//! same resource loads on 1.36, 1.37, 1.38, 1.39 and 1.40; `fail_open` is the
//! deprecated spelling), so the resource does not depend on the version.
//! The one branch: `wasm.wasm_vm_count` exists from Envoy 1.39.
//!
//! Envoy's side, read in envoyproxy/envoy
//! `source/common/filter/config_discovery_impl.cc`: a refused resource
//! still marks the listener warmed (`onConfigUpdateFailed`: "make progress
//! in case the control plane is temporarily failing"), hence the cold
//! start's 500s; and proxy-wasm-cpp-host `src/wasm.cc`
//! (`WasmHandleBase::canary`): each new plugin configuration is first
//! configured in a throw-away clone of the base VM, hence one refusal line
//! per refused update whatever the number of workers.
//!
//! Configuration versions are recognisable on both sides of a stream:
//! version N adds request header `x-v: N` (which the echo upstream reflects
//! in its body) and response headers `x-v-resp: N` and `x-v-resp2: N`; even
//! versions also add `x-v-echo: %REQ(x-v)%`, so their streams need the
//! per-stream record while odd versions' streams need none. Envoy builds a
//! stream's filter from the configuration current when the stream starts
//! and keeps it for the stream's life, so one stream's request and response
//! headers come from ONE version: a 200 is correct iff the upstream saw
//! exactly one `x-v` (= N), the response has exactly one `x-v-resp` = N and
//! one `x-v-resp2` = N, and `x-v-echo` = N for even N and absent for odd N.
//! Anything else (missing, partial, two versions) is a failure.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use e2e::ecds::{EcdsEnvoy, Options};
use e2e::{envoy, http, paths, EchoUpstream, Response};

const APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the slow upstream holds a stream (`x-echo-delay-ms`).
const HOLD: Duration = Duration::from_secs(2);
/// Envoy's RSS growth allowed per update (see the memory test).
const RSS_BOUND_KIB: f64 = 8.0;

/// The load and memory tests measure; they take turns.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Configuration version `n` (see the module doc).
fn versioned(n: u64) -> String {
    let header = |key: &str, value: &str| {
        serde_json::json!({
            "header": {"key": key, "value": value},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        })
    };
    let v = n.to_string();
    let mut response = vec![header("x-v-resp", &v), header("x-v-resp2", &v)];
    if n % 2 == 0 {
        response.push(header("x-v-echo", "%REQ(x-v)%"));
    }
    serde_json::json!({
        "request_headers_to_add": [header("x-v", &v)],
        "response_headers_to_add": response,
    })
    .to_string()
}

/// The one version that served `response`, or what is wrong with it.
fn served_by(response: &Response) -> Result<u64, String> {
    if response.status != 200 {
        return Err(format!("status {}: {}", response.status, response.text()));
    }
    let request = response.echoed("x-v");
    let one = |values: &[&str]| -> Option<u64> {
        match values {
            [value] => value.parse().ok(),
            _ => None,
        }
    };
    let resp = response.header_all("x-v-resp");
    let resp2 = response.header_all("x-v-resp2");
    let echo = response.header_all("x-v-echo");
    let request_strs: Vec<&str> = request.iter().map(String::as_str).collect();
    let shown = || {
        format!(
            "upstream saw x-v {request:?}; response x-v-resp {resp:?}, x-v-resp2 {resp2:?}, x-v-echo {echo:?}"
        )
    };
    let Some(n) = one(&request_strs) else {
        return Err(format!("request side not one version: {}", shown()));
    };
    let echo_ok = if n % 2 == 0 {
        one(&echo) == Some(n)
    } else {
        echo.is_empty()
    };
    if one(&resp) == Some(n) && one(&resp2) == Some(n) && echo_ok {
        Ok(n)
    } else {
        Err(format!("version {n} on the request side but: {}", shown()))
    }
}

/// `(VMs alive, VMs ever created)`: Envoy's `wasm.envoy.wasm.runtime.v8.active`
/// and `.created`. Envoy 1.39 added `wasm.wasm_vm_count`, which must agree.
fn vm_stats(envoy: &EcdsEnvoy) -> (u64, u64) {
    let stat = |name: &str| {
        envoy
            .envoy()
            .stat(name)
            .unwrap_or_else(|| panic!("envoy has no stat {name}"))
    };
    let active = stat("wasm.envoy.wasm.runtime.v8.active");
    if envoy::version() >= (1, 39) {
        assert_eq!(stat("wasm.wasm_vm_count"), active, "wasm.wasm_vm_count");
    }
    (active, stat("wasm.envoy.wasm.runtime.v8.created"))
}

fn get(addr: SocketAddr, path: &str) -> Response {
    http::get(addr, path, &[])
}

/// Lines of Envoy's log holding the filter's refusal.
fn refusals(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("header-filter: invalid configuration: "))
        .map(str::to_string)
        .collect()
}

fn start(upstream: &EchoUpstream, version: u64, options: &Options) -> EcdsEnvoy {
    EcdsEnvoy::start(
        upstream.port(),
        &version.to_string(),
        &versioned(version),
        options,
    )
    .unwrap_or_else(|err| panic!("envoy {:?}: {err}", envoy::version()))
}

fn push_and_wait(envoy: &EcdsEnvoy, version: u64) -> Duration {
    envoy.push(&version.to_string(), &versioned(version));
    envoy
        .wait_version(&version.to_string(), APPLY_TIMEOUT)
        .unwrap_or_else(|| {
            panic!(
                "version {version} not applied in {APPLY_TIMEOUT:?}: version_text {:?}, update_rejected {}",
                envoy.version_text(),
                envoy.ecds_stat("update_rejected")
            )
        })
}

// ------------------------------------------------------------- 1. good update

#[test]
fn a_good_update_applies_without_restart() {
    let upstream = EchoUpstream::start();
    let envoy = start(&upstream, 1, &Options::default());
    let addr = envoy.addr();
    assert_eq!(served_by(&get(addr, "/a")), Ok(1));
    assert_eq!(envoy.version_text(), "1");
    assert_eq!(envoy.dumped(), ("1".to_string(), versioned(1)));
    let vms = vm_stats(&envoy);
    let pid = envoy.envoy().pid();

    let took = push_and_wait(&envoy, 2);
    eprintln!("ecds: update applied in {took:?} (file renamed to version_text changed)");
    assert_eq!(served_by(&get(addr, "/b")), Ok(2));
    assert_eq!(envoy.dumped(), ("2".to_string(), versioned(2)));
    assert_eq!(envoy.ecds_stat("update_success"), 2);
    assert_eq!(envoy.ecds_stat("update_rejected"), 0);
    // Same process, same listener, same VMs: the update made a new root
    // context in each VM Envoy already had (same module and VM config: same
    // VM key). Envoy first configures each new plugin configuration in a
    // throw-away "canary" clone of the base VM (proxy-wasm-cpp-host,
    // `WasmHandleBase::canary`), so `v8.created` counts one more.
    assert_eq!(envoy.envoy().pid(), pid);
    assert_eq!(envoy.addr(), addr);
    let after = vm_stats(&envoy);
    assert_eq!(
        after.0, vms.0,
        "VMs alive (v8.active) changed with an update"
    );
    eprintln!("ecds: v8.created {} -> {} (the canary)", vms.1, after.1);
    assert_eq!(
        envoy.envoy().stat("listener_manager.listener_modified"),
        Some(0)
    );
}

// ------------------------------------------------------------- 2. bad updates

#[test]
fn each_bad_update_is_rejected_and_the_previous_config_keeps_serving() {
    let upstream = EchoUpstream::start();
    let envoy = start(&upstream, 1, &Options::default());
    let addr = envoy.addr();
    push_and_wait(&envoy, 2);
    let good = versioned(2);

    // (name, version pushed, configuration, what the one log line says)
    let bad: [(&str, &str, String, String); 3] = [
        (
            "unknown field",
            "bad-unknown-field",
            good.replacen(r#""append_action""#, r#""apend""#, 1),
            "request_headers_to_add[0].apend: unknown field".to_string(),
        ),
        (
            "bad header name",
            "bad-header-name",
            good.replace(r#""x-v-resp2""#, r#""x-v resp2""#),
            r#"response_headers_to_add[1].header.key: "x-v resp2" is not a valid header name"#
                .to_string(),
        ),
        {
            // A trailing comma: the filter names the position.
            let text = good.replacen("}]", "},]", 1);
            let column = text.find(",]").unwrap() + 2;
            (
                "bad JSON",
                "bad-json",
                text,
                format!("invalid JSON: expected value at line 1 column {column}"),
            )
        },
    ];
    for (i, (kind, version, config, reason)) in bad.iter().enumerate() {
        let rejected = i as u64 + 1;
        let lines_before = refusals(&envoy.envoy().log()).len();
        envoy.push(version, config);
        assert_eq!(
            envoy.wait_stat("update_rejected", rejected, APPLY_TIMEOUT),
            rejected,
            "{kind}: update_rejected"
        );
        // The previous version keeps serving and stays the applied one.
        assert_eq!(served_by(&get(addr, "/after-bad")), Ok(2), "{kind}");
        assert_eq!(envoy.version_text(), "2", "{kind}: version_text");
        assert_eq!(envoy.ecds_stat("update_success"), 2, "{kind}");
        // Envoy's /config_dump shows the REJECTED resource and its version,
        // with no error state: only version_text tells what is applied.
        assert_eq!(
            envoy.dumped(),
            (version.to_string(), config.clone()),
            "{kind}: /config_dump"
        );
        // One line (the main thread's VM refuses it before any worker sees
        // it), at error level, naming the JSON path or position.
        assert!(
            envoy.envoy().wait_for_log(reason, APPLY_TIMEOUT),
            "{kind}: no log line with {reason:?}"
        );
        let log = envoy.envoy().log();
        let new: Vec<String> = refusals(&log).split_off(lines_before);
        assert_eq!(new.len(), 1, "{kind}: one refusal line: {new:#?}");
        assert!(
            new[0].contains("[error]") && new[0].contains(reason.as_str()),
            "{kind}: {}",
            new[0]
        );
    }
    assert_eq!(
        envoy
            .envoy()
            .stat("wasmcustom.header_filter.config_rejected"),
        Some(3)
    );

    // The last refused resource sent again unchanged (a control plane
    // resending it, under a new version): Envoy skips it as identical to
    // the last one it received and reports it APPLIED (update_success,
    // version_text), while version 2 still serves and nothing is logged.
    let (_, _, last_refused, _) = &bad[2];
    let lines_before = refusals(&envoy.envoy().log()).len();
    envoy.push("bad-json-again", last_refused);
    assert_eq!(envoy.wait_stat("update_success", 3, APPLY_TIMEOUT), 3);
    assert_eq!(envoy.version_text(), "bad-json-again");
    assert_eq!(envoy.ecds_stat("update_rejected"), 3);
    assert_eq!(served_by(&get(addr, "/resent")), Ok(2));
    std::thread::sleep(Duration::from_millis(200)); // the log is flushed every 50 ms
    assert_eq!(refusals(&envoy.envoy().log()).len(), lines_before);

    // Recovery.
    push_and_wait(&envoy, 3);
    assert_eq!(served_by(&get(addr, "/recovered")), Ok(3));
    assert_eq!(envoy.dumped(), ("3".to_string(), versioned(3)));
    assert_eq!(envoy.ecds_stat("update_rejected"), 3);
    assert_eq!(envoy.ecds_stat("update_success"), 4);
}

// ------------------------------------------------------------- 3. under load

const WRK_SCRIPT: &str = r#"
wrk.method = "GET"
wrk.path = "/load"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  seen = 0; fivexx = 0; other = 0; noreq = 0; noresp = 0; partial = 0; mixed = 0
  versions = ""; known = {}; example = ""
end
local function fail(kind, q, r, r2, e)
  if example == "" then
    example = string.format("%s: x-v=%s x-v-resp=%s x-v-resp2=%s x-v-echo=%s",
      kind, tostring(q), tostring(r), tostring(r2), tostring(e))
  end
end
function response(status, headers, body)
  seen = seen + 1
  if status >= 500 then fivexx = fivexx + 1; return end
  if status ~= 200 then other = other + 1; return end
  local q, n = nil, 0
  for v in string.gmatch(body, '%["x%-v","([^"]*)"%]') do q = v; n = n + 1 end
  local r, r2, e = headers["x-v-resp"], headers["x-v-resp2"], headers["x-v-echo"]
  if n ~= 1 then noreq = noreq + 1; fail("request side", q, r, r2, e); return end
  if not known[q] then known[q] = true; versions = versions .. q .. "," end
  local even = tonumber(q) % 2 == 0
  if r == nil and r2 == nil and e == nil then
    noresp = noresp + 1; fail("no response side", q, r, r2, e)
  elseif r == nil or r2 == nil or (even and e == nil) then
    partial = partial + 1; fail("partial", q, r, r2, e)
  elseif r ~= q or r2 ~= q or (even and e ~= q) or (not even and e ~= nil) then
    mixed = mixed + 1; fail("mixed", q, r, r2, e)
  end
end
function done(summary, latency, requests)
  local t = {seen=0, fivexx=0, other=0, noreq=0, noresp=0, partial=0, mixed=0}
  local versions, example = "", ""
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + th:get(k) end
    versions = versions .. th:get("versions")
    if example == "" then example = th:get("example") end
  end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    "ECDS seen=%d 5xx=%d other=%d noreq=%d noresp=%d partial=%d mixed=%d errors=%d versions=%s example=%s\n",
    t.seen, t.fivexx, t.other, t.noreq, t.noresp, t.partial, t.mixed, errors,
    versions, example))
end
"#;

#[derive(Debug, Default)]
struct WrkRun {
    seen: u64,
    fivexx: u64,
    other: u64,
    noreq: u64,
    noresp: u64,
    partial: u64,
    mixed: u64,
    errors: u64,
    versions: std::collections::BTreeSet<u64>,
    example: String,
}

/// wrk for `seconds` against `addr` (loopback only), in a thread.
fn spawn_wrk(addr: SocketAddr, seconds: u64, script: std::path::PathBuf) -> JoinHandle<WrkRun> {
    assert!(addr.ip().is_loopback());
    std::thread::spawn(move || {
        let output = Command::new("wrk")
            .args([
                "-t2",
                "-c16",
                &format!("-d{seconds}s"),
                "--timeout",
                "10s",
                "-s",
            ])
            .arg(&script)
            .arg(format!("http://{addr}/load"))
            .output()
            .expect("wrk (Debian package `wrk`) must be on PATH");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "wrk failed: {stdout}");
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("ECDS "))
            .unwrap_or_else(|| panic!("no ECDS line in wrk output:\n{stdout}"));
        let (counts, example) = line.split_once(" example=").unwrap_or((line, ""));
        let mut run = WrkRun {
            example: example.to_string(),
            ..WrkRun::default()
        };
        for field in counts.split_whitespace() {
            let (key, value) = field.split_once('=').unwrap();
            if key == "versions" {
                run.versions = value
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(|v| v.parse().unwrap())
                    .collect();
                continue;
            }
            let value: u64 = value.parse().unwrap();
            match key {
                "seen" => run.seen = value,
                "5xx" => run.fivexx = value,
                "other" => run.other = value,
                "noreq" => run.noreq = value,
                "noresp" => run.noresp = value,
                "partial" => run.partial = value,
                "mixed" => run.mixed = value,
                "errors" => run.errors = value,
                _ => panic!("unknown wrk field {key}"),
            }
        }
        run
    })
}

/// A stream the slow upstream holds for [`HOLD`], started before update
/// `to`; its response and when it arrived.
struct Held {
    to: u64,
    thread: JoinHandle<(Response, Instant)>,
}

fn hold(addr: SocketAddr, to: u64, i: usize) -> Held {
    let delay = HOLD.as_millis().to_string();
    let thread = std::thread::spawn(move || {
        let response = http::request(
            addr,
            "GET",
            &format!("/held/{to}/{i}"),
            &[("x-echo-delay-ms", &delay)],
            &[],
        )
        .unwrap_or_else(|err| panic!("held request across update {to}: {err}"));
        (response, Instant::now())
    });
    Held { to, thread }
}

#[test]
fn updates_under_load_never_mix_versions_within_a_stream() {
    const UPDATES: u64 = 5; // versions 2..=6, the first one included
    const PERIOD: Duration = Duration::from_millis(1500);
    const HELD_PER_UPDATE: usize = 4;
    const SETTLE: Duration = Duration::from_millis(300);
    let _turn = heavy();
    let upstream = EchoUpstream::start();
    let envoy = start(&upstream, 1, &Options::default());
    let addr = envoy.addr();
    assert_eq!(served_by(&get(addr, "/")), Ok(1));
    let dir = paths::temp_dir();
    let script = dir.path().join("ecds.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();

    let started = Instant::now();
    let wrk_seconds = (PERIOD * UPDATES as u32 + HOLD + SETTLE * 2).as_secs() + 1;
    let wrk = spawn_wrk(addr, wrk_seconds, script);
    std::thread::sleep(SETTLE); // load on version 1 alone first

    let mut held = Vec::new();
    let mut applied_at = Vec::new();
    for to in 2..=UPDATES + 1 {
        let tick = Instant::now();
        held.extend((0..HELD_PER_UPDATE).map(|i| hold(addr, to, i)));
        // The held streams reach the upstream (their request headers done
        // under version to-1) well within this; their version proves it.
        std::thread::sleep(SETTLE);
        push_and_wait(&envoy, to);
        applied_at.push((to, Instant::now()));
        assert_eq!(
            served_by(&get(addr, "/fresh")),
            Ok(to),
            "a new stream after {to}"
        );
        std::thread::sleep(PERIOD.saturating_sub(tick.elapsed()));
    }
    let run = wrk.join().expect("wrk thread");
    let elapsed = started.elapsed();

    let mut held_failures = Vec::new();
    let held_count = held.len();
    for Held { to, thread } in held {
        let (response, arrived) = thread.join().expect("held request thread");
        let applied = applied_at.iter().find(|(v, _)| *v == to).unwrap().1;
        match served_by(&response) {
            Ok(n) if n == to - 1 && arrived > applied => {}
            Ok(n) if n == to - 1 => held_failures.push(format!(
                "held across {to}: answered before the update was applied (test setup)"
            )),
            Ok(n) => held_failures.push(format!(
                "held across {to}: served by {n}, not {} (not in flight across the update)",
                to - 1
            )),
            Err(why) => held_failures.push(format!("held across update {to}: {why}")),
        }
    }
    let envoy_5xx = envoy.envoy().stat("http.ecds.downstream_rq_5xx");
    eprintln!(
        "ecds load: {} requests in {:.1} s ({:.0}/s) over {UPDATES} updates every {PERIOD:?}: \
         5xx {}, other non-200 {}, request side missing {}, response side missing {}, \
         partial {}, mixed {}, socket errors {}; versions seen {:?}; envoy 5xx {envoy_5xx:?}; \
         held streams {held_count}, failed {}{}",
        run.seen,
        elapsed.as_secs_f64(),
        run.seen as f64 / elapsed.as_secs_f64(),
        run.fivexx,
        run.other,
        run.noreq,
        run.noresp,
        run.partial,
        run.mixed,
        run.errors,
        run.versions,
        held_failures.len(),
        if run.example.is_empty() {
            String::new()
        } else {
            format!("; first wrong response: {}", run.example)
        },
    );
    assert!(
        held_failures.is_empty(),
        "{} of {held_count} streams held across an update:\n{}",
        held_failures.len(),
        held_failures.join("\n")
    );
    assert!(run.seen > 1000, "too little load: {run:?}");
    assert_eq!(
        (run.fivexx, run.other, run.errors),
        (0, 0, 0),
        "5xx, other non-200, socket errors: {run:?}"
    );
    assert_eq!(envoy_5xx, Some(0), "envoy's own 5xx count");
    assert_eq!(
        (run.noreq, run.noresp, run.partial, run.mixed),
        (0, 0, 0, 0),
        "responses whose headers are not exactly one version's: {run:?}"
    );
    let expected: std::collections::BTreeSet<u64> = (1..=UPDATES + 1).collect();
    assert_eq!(run.versions, expected, "every version served under load");
}

/// Without load: streams held across the first update and across two
/// updates in a row (the second before Envoy retires the first's root),
/// each answered by the version it started under.
#[test]
fn streams_held_across_back_to_back_updates_keep_their_version() {
    let upstream = EchoUpstream::start();
    let envoy = start(&upstream, 1, &Options::default());
    let addr = envoy.addr();
    let settle = Duration::from_millis(300);
    // Version 1 alone: its streams carry no record.
    let first: Vec<Held> = (0..3).map(|i| hold(addr, 2, i)).collect();
    std::thread::sleep(settle);
    push_and_wait(&envoy, 2);
    let second: Vec<Held> = (0..3).map(|i| hold(addr, 3, i)).collect();
    std::thread::sleep(settle);
    push_and_wait(&envoy, 3);
    push_and_wait(&envoy, 4);
    assert_eq!(served_by(&get(addr, "/fresh")), Ok(4));
    for (batch, version) in [(first, 1), (second, 2)] {
        for Held { to, thread } in batch {
            let (response, _) = thread.join().expect("held request thread");
            assert_eq!(
                served_by(&response),
                Ok(version),
                "a stream started under {version}, held across update {to} and on"
            );
        }
    }
    assert_eq!(served_by(&get(addr, "/after")), Ok(4));
}

// ------------------------------------------------------------- 4. memory

/// Envoy's RSS and the VMs' linear memory, sampled once the ticks (1 s)
/// that flush the gauges and retire roots have passed.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    linear_kib: u64,
}

fn settle_and_sample(envoy: &EcdsEnvoy) -> Sample {
    std::thread::sleep(Duration::from_millis(2500));
    let pid = envoy.envoy().pid();
    Sample {
        rss_kib: envoy::rss_kib(pid),
        linear_kib: envoy::wasm_linear_memories(pid).iter().sum::<u64>() / 1024,
    }
}

/// 400 distinct updates in two rounds of 200, as fast as Envoy applies
/// them. A VM's linear memory never shrinks, so the first round shows the
/// peak (roots awaiting retirement pile up for up to a tick); the second
/// round must then fit in what the first one left, which a leak of one
/// root's plan per update per VM cannot (measured before the fix: the
/// second round grew the VMs by 576 KiB).
#[test]
fn memory_stays_bounded_over_400_updates() {
    const WARMUP: u64 = 20;
    const ROUND: u64 = 200;
    let _turn = heavy();
    let upstream = EchoUpstream::start();
    let envoy = start(&upstream, 1, &Options::default());
    let addr = envoy.addr();
    let traffic = |n: u64| {
        for i in 0..4 {
            assert_eq!(served_by(&get(addr, &format!("/m/{i}"))), Ok(n));
        }
    };
    for n in 2..=WARMUP {
        push_and_wait(&envoy, n);
        traffic(n);
    }
    let before = settle_and_sample(&envoy);
    let mut samples = Vec::new();
    let mut took = Duration::ZERO;
    let mut n = WARMUP;
    for _round in 0..2 {
        let started = Instant::now();
        for _ in 0..ROUND {
            n += 1;
            push_and_wait(&envoy, n);
            if n % 25 == 0 {
                traffic(n);
            }
        }
        took += started.elapsed();
        traffic(n);
        samples.push(settle_and_sample(&envoy));
    }
    let (first, second) = (samples[0], samples[1]);
    let updates = 2 * ROUND;
    let per_update = (second.rss_kib as f64 - before.rss_kib as f64) / updates as f64;
    let per_update_second = (second.rss_kib as f64 - first.rss_kib as f64) / ROUND as f64;
    let (vms, _) = vm_stats(&envoy);
    let roots = envoy.envoy().stat("wasmcustom.header_filter.roots_live");
    let records = envoy
        .envoy()
        .stat("wasmcustom.header_filter.stream_records");
    eprintln!(
        "ecds memory: {updates} updates in {:.1} s ({:.1} ms each); VmRSS {} -> {} -> {} KiB \
         ({per_update:+.1} KiB per update over all {updates}, {per_update_second:+.1} over the second {ROUND}); \
         Wasm linear memory {} -> {} -> {} KiB in {vms} VMs; roots_live {roots:?}, stream_records {records:?}",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / updates as f64,
        before.rss_kib,
        first.rss_kib,
        second.rss_kib,
        before.linear_kib,
        first.linear_kib,
        second.linear_kib,
    );
    assert_eq!(envoy.ecds_stat("update_rejected"), 0);
    assert_eq!(envoy.version_text(), n.to_string());

    // The VMs: the second round reuses the first one's memory; one 64 KiB
    // page per VM is allowed for the allocator's fragmentation.
    assert!(
        second.linear_kib <= first.linear_kib + 64 * vms,
        "the VMs' linear memory grew {} KiB over the second {ROUND} updates",
        second.linear_kib - first.linear_kib
    );
    // Envoy: what matters at its level is a VM or a copy of the 200 KB
    // module per update (a worker VM costs ~420 KiB), at least 25 times
    // this bound. Measured on Envoy 1.40: 1.5-2 KiB per update once the
    // VMs are warm (Envoy's own, e.g. its never-evicted canary cache entry
    // per configuration), 1.9-3 KiB over all 400 with the first round's
    // peak; before the fix 4.1-4.3 over all 400.
    assert!(
        per_update <= RSS_BOUND_KIB,
        "envoy RSS grew {per_update:.1} KiB per update ({} -> {} KiB over {updates})",
        before.rss_kib,
        second.rss_kib
    );
    // The filter's own state, summed over the VMs: one live root per VM
    // that serves the plugin (the base VM serves none) once the retired
    // ones are gone, and no stream record with no stream in flight.
    let roots = roots.expect("the filter's roots_live gauge");
    let records = records.expect("the filter's stream_records gauge");
    assert!(
        roots <= vms,
        "{roots} root contexts live in {vms} VMs after {updates} updates"
    );
    assert_eq!(records, 0, "stream records held with no stream in flight");
}

// ------------------------------------------------------------- 5. cold start

/// Whatever `failure_policy` (Istio's `failStrategy`) says: it governs a
/// VM that fails at run time, not a configuration the filter refuses.
#[test]
fn a_cold_start_on_a_bad_config_answers_500_until_a_good_one_arrives() {
    use e2e::ecds::FailStrategy;
    let upstream = EchoUpstream::start();
    let bad = versioned(1).replace(r#""x-v-resp""#, r#""x v""#);
    for strategy in [
        FailStrategy::FailClose,
        FailStrategy::FailOpen,
        FailStrategy::FailReload,
    ] {
        let options = Options {
            strategy,
            ..Options::default()
        };
        let envoy =
            EcdsEnvoy::start(upstream.port(), "bad-1", &bad, &options).unwrap_or_else(|err| {
                panic!("{strategy:?}: envoy should start (LIVE) on a refused first resource: {err}")
            });
        let addr = envoy.addr();
        assert!(
            refusals(&envoy.envoy().log())
                .iter()
                .any(|l| l.contains("response_headers_to_add[0].header.key")),
            "{strategy:?}: the filter's refusal in the log"
        );
        assert_eq!(envoy.ecds_stat("update_rejected"), 1, "{strategy:?}");
        assert_eq!(envoy.version_text(), "", "{strategy:?}");
        // The filter has no configuration: Envoy answers every request
        // itself (response flag NFCF, "no filter config found"), without
        // reaching the upstream.
        let before = upstream.request_count();
        for path in ["/cold/1", "/cold/2"] {
            let response = get(addr, path);
            assert_eq!(
                response.status,
                500,
                "{strategy:?} {path}: {}",
                response.text()
            );
        }
        assert_eq!(upstream.request_count(), before, "{strategy:?}");

        push_and_wait(&envoy, 1);
        assert_eq!(served_by(&get(addr, "/warm")), Ok(1), "{strategy:?}");
        assert_eq!(envoy.ecds_stat("update_rejected"), 1, "{strategy:?}");
    }
}

#[test]
fn default_config_serves_a_cold_start_on_a_bad_config() {
    let upstream = EchoUpstream::start();
    let options = Options {
        default_config: Some(versioned(100)),
        ..Options::default()
    };
    let bad = versioned(1).replace(r#""x-v-resp""#, r#""x v""#);
    let envoy = EcdsEnvoy::start(upstream.port(), "bad-1", &bad, &options).unwrap();
    let addr = envoy.addr();
    assert_eq!(envoy.ecds_stat("update_rejected"), 1);
    assert_eq!(envoy.version_text(), "");
    assert_eq!(
        served_by(&get(addr, "/cold")),
        Ok(100),
        "the default config"
    );

    push_and_wait(&envoy, 1);
    assert_eq!(served_by(&get(addr, "/warm")), Ok(1));
    // A later bad update keeps the last good version, not the default.
    envoy.push("bad-2", &bad);
    assert_eq!(envoy.wait_stat("update_rejected", 2, APPLY_TIMEOUT), 2);
    assert_eq!(served_by(&get(addr, "/after-bad")), Ok(1));
    assert_eq!(envoy.version_text(), "1");
}
