//! What a module asks of Envoy for each request of the mix, read from
//! Envoy itself: with the `wasm` log component at trace level, the
//! proxy-wasm host's V8 engine (`src/v8/v8.cc` of proxy-wasm-cpp-host) logs
//! every call into the module (`[host->vm] proxy_on_request_headers(2, 8,
//! 1)`) and every host call the module makes (`[vm->host]
//! env.proxy_add_header_map_value(2, 70712, 7, 70736, 6)`), with its
//! status (`[vm<-host] ... return: 0`).
//!
//! A trace is that list for one cycle of the mix, request by request, with
//! what depends on where the module keeps its data taken out (pointers,
//! context ids): host function, map type, key and value lengths, status,
//! and the sizes Envoy asks `proxy_on_memory_allocate` for while it hands
//! back a value. Two modules with equal traces cross the VM boundary the
//! same way: that is how `mix-floor` (`benches/mix-floor.wat`) is checked
//! against the filter before anything is measured.

use super::client::Connection;
use super::config::{self, Front, Traffic};
use super::envoy::{Envoy, Launch, Under};
use super::scenario;
use anyhow::{bail, Result};
use std::time::Duration;

const START: Duration = Duration::from_secs(60);

/// The calls of one request, in order, one line each.
pub type Calls = Vec<String>;

/// The calls of each request of [`scenario::REQUESTS`], from a plain Envoy
/// that runs `front` alone (with the `direct` listener). The mix is sent
/// twice on one connection and the second cycle is kept, so that one-time
/// work (a first allocation, a metric defined on first use) stays out.
pub fn mix(front: &Front) -> Result<Vec<Calls>> {
    let launch = Launch {
        under: Under::Nothing,
        concurrency: 1,
        wasm_log: Some("trace"),
    };
    let fronts = std::slice::from_ref(front);
    let envoy = Envoy::start_with(|port| config::bootstrap(fronts, port), launch, START)?;
    let cycle = scenario::REQUESTS.len() as u32;
    Connection::open(envoy.listener(&front.name)?)?.run(Traffic::Mix, 2 * cycle)?;
    // Let the last stream's teardown reach the log.
    std::thread::sleep(Duration::from_millis(200));
    let log = envoy.stop_for_log();
    let requests = parse(&log);
    if requests.len() < 2 * scenario::REQUESTS.len() {
        bail!(
            "the trace of {} holds {} streams, expected {} (is the `wasm` trace log there?)",
            front.name,
            requests.len(),
            2 * scenario::REQUESTS.len()
        );
    }
    let start = requests.len() - scenario::REQUESTS.len();
    Ok(requests[start..].to_vec())
}

/// The first request whose calls differ between `a` and `b`, described;
/// `None` when every request makes the same calls.
pub fn difference(a: (&str, &[Calls]), b: (&str, &[Calls])) -> Option<String> {
    for (index, request) in scenario::REQUESTS.iter().enumerate() {
        let (x, y) = (a.1.get(index), b.1.get(index));
        if x != y {
            let show = |calls: Option<&Calls>| {
                calls.map_or("(none)".to_string(), |calls| {
                    calls
                        .iter()
                        .map(|call| format!("\n    {call}"))
                        .collect::<String>()
                })
            };
            return Some(format!(
                "request {index} (GET {} {:?}):\n  {}:{}\n  {}:{}",
                request.path,
                request.headers,
                a.0,
                show(x),
                b.0,
                show(y)
            ));
        }
    }
    None
}

/// Streams in the order they began (a stream begins with
/// `proxy_on_context_create` for a non-root context), each as its calls.
/// Timer callbacks and what they call are left out: they are not per
/// request.
fn parse(log: &str) -> Vec<Calls> {
    let mut streams: Vec<Calls> = Vec::new();
    let mut in_tick = false;
    for line in log.lines() {
        let Some(event) = Event::read(line) else {
            continue;
        };
        match event {
            Event::Enter(name, _) if name == "proxy_on_tick" => in_tick = true,
            Event::Exit(name, _) if name == "proxy_on_tick" => in_tick = false,
            _ if in_tick => {}
            Event::Enter(name, args) if name == "proxy_on_context_create" => {
                if args.get(1).is_some_and(|root| root != "0") {
                    streams.push(vec!["proxy_on_context_create".to_string()]);
                }
            }
            event => {
                if let Some(calls) = streams.last_mut() {
                    event.record(calls);
                }
            }
        }
    }
    streams
}

/// One trace line of V8's host.
#[derive(Debug, PartialEq)]
enum Event {
    /// `[host->vm] NAME(ARGS)`: Envoy calls into the module.
    Enter(String, Vec<String>),
    /// `[host<-vm] NAME return: R`.
    Exit(String, String),
    /// `[vm->host] env.NAME(ARGS)`: the module calls Envoy.
    Call(String, Vec<String>),
    /// `[vm<-host] env.NAME return: R`.
    Return(String, String),
}

impl Event {
    fn read(line: &str) -> Option<Event> {
        for (tag, kind) in [
            ("[host->vm] ", 0),
            ("[host<-vm] ", 1),
            ("[vm->host] ", 2),
            ("[vm<-host] ", 3),
        ] {
            let Some((_, rest)) = line.split_once(tag) else {
                continue;
            };
            let rest = rest.trim();
            if kind % 2 == 0 {
                let (name, args) = rest.split_once('(')?;
                let args = args.strip_suffix(')')?;
                let args: Vec<String> = args
                    .split(',')
                    .map(|arg| arg.trim().to_string())
                    .filter(|arg| !arg.is_empty())
                    .collect();
                let name = name.trim_start_matches("env.").to_string();
                return Some(if kind == 0 {
                    Event::Enter(name, args)
                } else {
                    Event::Call(name, args)
                });
            }
            let (name, value) = rest.split_once(" return: ")?;
            let name = name.trim_start_matches("env.").to_string();
            let value = value.trim().to_string();
            return Some(if kind == 1 {
                Event::Exit(name, value)
            } else {
                Event::Return(name, value)
            });
        }
        None
    }

    /// Adds this event to a stream's calls, without what depends on memory
    /// layout or context ids.
    fn record(self, calls: &mut Calls) {
        match self {
            Event::Call(name, args) => calls.push(format!("{name}({})", shown(&name, &args))),
            Event::Return(_, status) => {
                if let Some(last) = calls.last_mut() {
                    last.push_str(&format!(" = {status}"));
                }
            }
            Event::Enter(name, args) if name == "proxy_on_memory_allocate" => {
                let size = args.first().map_or("?", String::as_str);
                match calls.last_mut() {
                    Some(last) if !last.starts_with("proxy_on_") => {
                        last.push_str(&format!(" [allocate {size}]"));
                    }
                    _ => calls.push(format!("proxy_on_memory_allocate({size})")),
                }
            }
            Event::Enter(name, args) => {
                // proxy_on_{request,response}_headers(context, headers, end):
                // the context id depends on the run, the rest does not.
                let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
                calls.push(format!("{name}({})", rest.join(", ")));
            }
            Event::Exit(name, value) if name != "proxy_on_memory_allocate" => {
                if let Some(last) = calls.iter_mut().rev().find(|c| c.starts_with(&name)) {
                    last.push_str(&format!(" = {value}"));
                }
            }
            Event::Exit(..) => {}
        }
    }
}

/// The arguments of host function `name` that do not depend on where the
/// module keeps its data: pointers become `_`. Unknown functions keep all.
fn shown(name: &str, args: &[String]) -> String {
    let pointers: &[usize] = match name {
        "proxy_get_header_map_pairs" => &[1, 2],
        "proxy_set_header_map_pairs" => &[1],
        "proxy_get_header_map_value" => &[1, 3, 4],
        "proxy_add_header_map_value" | "proxy_replace_header_map_value" => &[1, 3],
        "proxy_remove_header_map_value" => &[1],
        "proxy_get_property" => &[0, 2, 3],
        "proxy_log" => &[1],
        "proxy_get_current_time_nanoseconds" => &[0],
        _ => &[],
    };
    args.iter()
        .enumerate()
        .map(|(index, arg)| {
            if pointers.contains(&index) {
                "_"
            } else {
                arg.as_str()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
[2026-11-24 10:00:00.000][1][trace][wasm] [wasm_vm.cc:1] [host->vm] proxy_on_context_create(1, 0)
[2026-11-24 10:00:00.001][1][trace][wasm] [wasm_vm.cc:1] [host->vm] proxy_on_context_create(2, 1)
[2026-11-24 10:00:00.002][1][trace][wasm] [wasm_vm.cc:1] [host->vm] proxy_on_request_headers(2, 7, 1)
[2026-11-24 10:00:00.003][1][trace][wasm] [wasm_vm.cc:1] [vm->host] env.proxy_get_header_map_pairs(0, 1048000, 1048004)
[2026-11-24 10:00:00.004][1][trace][wasm] [wasm_vm.cc:1] [host->vm] proxy_on_memory_allocate(212)
[2026-11-24 10:00:00.005][1][trace][wasm] [wasm_vm.cc:1] [host<-vm] proxy_on_memory_allocate return: 70000
[2026-11-24 10:00:00.006][1][trace][wasm] [wasm_vm.cc:1] [vm<-host] env.proxy_get_header_map_pairs return: 0
[2026-11-24 10:00:00.007][1][trace][wasm] [wasm_vm.cc:1] [vm->host] env.proxy_add_header_map_value(0, 1024, 9, 1040, 1)
[2026-11-24 10:00:00.008][1][trace][wasm] [wasm_vm.cc:1] [vm<-host] env.proxy_add_header_map_value return: 0
[2026-11-24 10:00:00.009][1][trace][wasm] [wasm_vm.cc:1] [host<-vm] proxy_on_request_headers return: 0
[2026-11-24 10:00:00.010][1][trace][wasm] [wasm_vm.cc:1] [host->vm] proxy_on_tick(1)
[2026-11-24 10:00:00.011][1][trace][wasm] [wasm_vm.cc:1] [vm->host] env.proxy_increment_metric(3, 12)
[2026-11-24 10:00:00.012][1][trace][wasm] [wasm_vm.cc:1] [host<-vm] proxy_on_tick return: void
[2026-11-24 10:00:00.013][1][trace][wasm] [wasm_vm.cc:1] [host->vm] proxy_on_response_headers(2, 3, 0)
[2026-11-24 10:00:00.014][1][trace][wasm] [wasm_vm.cc:1] [host<-vm] proxy_on_response_headers return: 0
[2026-11-24 10:00:00.015][1][trace][wasm] [wasm_vm.cc:1] [host->vm] proxy_on_context_create(3, 1)
";

    #[test]
    fn a_trace_is_per_stream_without_pointers_ids_or_ticks() {
        let streams = parse(LOG);
        assert_eq!(streams.len(), 2);
        assert_eq!(
            streams[0],
            [
                "proxy_on_context_create",
                "proxy_on_request_headers(7, 1) = 0",
                "proxy_get_header_map_pairs(0, _, _) [allocate 212] = 0",
                "proxy_add_header_map_value(0, _, 9, _, 1) = 0",
                "proxy_on_response_headers(3, 0) = 0",
            ]
        );
        assert_eq!(streams[1], ["proxy_on_context_create"]);
    }

    #[test]
    fn a_difference_names_the_request_and_both_lists() {
        let one = vec![vec!["a".to_string()]; scenario::REQUESTS.len()];
        let mut other = one.clone();
        assert_eq!(difference(("x", &one), ("y", &other)), None);
        other[2].push("b".to_string());
        let text = difference(("x", &one), ("y", &other)).unwrap();
        assert!(
            text.starts_with("request 2 (GET /api/v1/users/42?fields=name"),
            "{text}"
        );
        assert!(text.contains("y:\n    a\n    b"), "{text}");
    }
}
