//! The headers Envoy owns around a filter, in a real Envoy 1.40 in front of
//! the echo upstream (README, "Headers Envoy owns"):
//!
//! - `x-forwarded-proto`: every request-header write of a Wasm filter
//!   clears Envoy's route cache (`source/extensions/common/wasm/context.cc`),
//!   and the router's next look-up (`VirtualHostImpl::getRouteFromEntries`)
//!   gives no route to a request whose `x-forwarded-proto` is missing or
//!   empty: 404. So the filter refuses explicit removals (and empty
//!   overwrites) at configure time and leaves the header alone in pattern
//!   removals. Envoy's own `header_mutation` does not clear the route
//!   cache, which is why it answers 200 for the same configuration.
//! - `server`: the connection manager writes it after the filter chain
//!   (`server_header_transformation`, OVERWRITE by default), so a filter's
//!   removal holds only with PASS_THROUGH; `extpack validate` says so.
//!   It writes `date` after the filters too, when absent.

use e2e::extpack::extpack;
use e2e::{envoy_yaml, http, paths, EchoUpstream, Envoy, Response, StartError};
use serde_json::{json, Value};

fn wasm(config: &Value) -> String {
    envoy_yaml::local_wasm_filter_yaml(&paths::filter_wasm(), &config.to_string())
}

/// A listener whose connection manager also has `hcm_field` (one YAML
/// line, e.g. `server_header_transformation: PASS_THROUGH`).
fn listener_with(name: &str, http_filters: &str, hcm_field: &str) -> String {
    let listener = envoy_yaml::listener_yaml(name, http_filters);
    let at = format!("stat_prefix: {name}\n");
    assert!(listener.contains(&at), "{listener}");
    listener.replace(&at, &format!("{at}          {hcm_field}\n"))
}

fn start(upstream: &EchoUpstream, listeners: &[String]) -> Result<Envoy, StartError> {
    let listeners: Vec<&str> = listeners.iter().map(String::as_str).collect();
    Envoy::start(&envoy_yaml::bootstrap_yaml(&listeners, upstream.port(), ""))
}

/// `GET /traps` with `x-debug: 1`, the upstream answering `server: upstream`.
fn get(envoy: &Envoy, listener: &str) -> Response {
    http::get(
        envoy.listener(listener),
        "/traps",
        &[("x-debug", "1"), ("x-respond-server", "upstream")],
    )
}

/// `extpack validate` on `config`: its standard output.
fn validate(config: &Value) -> String {
    let dir = paths::temp_dir();
    let file = dir.path().join("config.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let module = paths::filter_wasm();
    extpack(&[
        "validate",
        module.to_str().unwrap(),
        "--config",
        file.to_str().unwrap(),
    ])
    .ok()
    .stdout
}

#[test]
fn a_pattern_removal_leaves_x_forwarded_proto_so_the_request_is_routed() {
    let mutations = json!({"request_mutations": [
        {"remove_on_match": {"key_matcher": {"prefix": "x-"}}}
    ]});
    let upstream = EchoUpstream::start();
    let envoy = start(
        &upstream,
        &[
            envoy_yaml::listener_yaml("filter", &wasm(&json!({ "mutations": mutations }))),
            envoy_yaml::listener_yaml(
                "native",
                &envoy_yaml::header_mutation_filter_yaml(&mutations.to_string()),
            ),
        ],
    )
    .unwrap();

    let filter = get(&envoy, "filter");
    assert_eq!(
        filter.status,
        200,
        "the filter's pattern: {}",
        filter.text()
    );
    assert_eq!(filter.echoed("x-forwarded-proto"), ["http"]);
    assert!(filter.echoed("x-debug").is_empty(), "x-debug removed");

    // Envoy's own filter does not re-route, and removes the header.
    let native = get(&envoy, "native");
    assert_eq!(native.status, 200, "Envoy's header_mutation");
    assert!(native.echoed("x-forwarded-proto").is_empty());
    assert!(native.echoed("x-debug").is_empty());

    let out = validate(&json!({ "mutations": mutations }));
    assert!(
        out.contains(
            "warning: mutations.request_mutations[0].remove_on_match: leaves x-forwarded-proto \
             on requests although the matcher matches it"
        ),
        "{out}"
    );
}

const REROUTE: &str = "Envoy chooses the route again after a Wasm filter changes request \
headers, and a request whose x-forwarded-proto is missing or empty gets no route (404)";

#[test]
fn explicit_removals_of_x_forwarded_proto_are_refused_at_configure_time() {
    let remove = format!(
        "x-forwarded-proto may not be removed from requests: {REROUTE}; remove it in the \
         route instead (Envoy's route request_headers_to_remove, Istio's VirtualService \
         headers.request.remove), which acts after routing"
    );
    let empty = format!(
        "would write x-forwarded-proto empty: {REROUTE}; drop keep_empty_value (an empty \
         value is then not written)"
    );
    let overwrite_empty = json!({"header": {"key": "x-forwarded-proto", "value": ""},
                                 "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                 "keep_empty_value": true});
    let cases = [
        (
            json!({"request_headers_to_remove": ["x-debug", "X-Forwarded-Proto"]}),
            format!("request_headers_to_remove[1]: {remove}"),
        ),
        (
            json!({"routes": [{"match": {"prefix": "/"},
                               "request_headers_to_remove": ["x-forwarded-proto"]}]}),
            format!("routes[0].request_headers_to_remove[0]: {remove}"),
        ),
        (
            json!({"mutations": {"request_mutations": [{"remove": "x-forwarded-proto"}]}}),
            format!("mutations.request_mutations[0].remove: {remove}"),
        ),
        (
            json!({ "request_headers_to_add": [overwrite_empty] }),
            format!("request_headers_to_add[0].keep_empty_value: {empty}"),
        ),
        (
            json!({"mutations": {"request_mutations": [{"append": {
                "header": {"key": "x-forwarded-proto", "value": "%REQ(x-missing)%"},
                "append_action": "OVERWRITE_IF_EXISTS", "keep_empty_value": true}}]}}),
            format!("mutations.request_mutations[0].append.keep_empty_value: {empty}"),
        ),
    ];
    let upstream = EchoUpstream::start();
    for (config, reason) in &cases {
        match start(&upstream, &[envoy_yaml::listener_yaml("f", &wasm(config))]) {
            Ok(envoy) => {
                let status = get(&envoy, "f").status;
                panic!("Envoy took {config} and answered {status}");
            }
            Err(error) => error.assert_filter_refused(reason),
        }
    }

    // What the refusal advises works: the route's own removal acts after
    // routing. And the writes that leave the header non-empty pass.
    let envoy = start(
        &upstream,
        &[
            envoy_yaml::route_listener_yaml(
                "route-removal",
                "",
                "request_headers_to_remove: [x-forwarded-proto]",
            ),
            envoy_yaml::listener_yaml(
                "empty-not-kept",
                &wasm(&json!({"request_headers_to_add": [{
                    "header": {"key": "x-forwarded-proto", "value": "%REQ(x-missing)%"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]})),
            ),
            envoy_yaml::listener_yaml(
                "overwritten",
                &wasm(&json!({"request_headers_to_add": [{
                    "header": {"key": "x-forwarded-proto", "value": "https"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]})),
            ),
        ],
    )
    .unwrap();
    for (listener, proto) in [
        ("route-removal", &[][..]),
        ("empty-not-kept", &["http"][..]),
        ("overwritten", &["https"][..]),
    ] {
        let response = get(&envoy, listener);
        assert_eq!(response.status, 200, "{listener}: {}", response.text());
        assert_eq!(response.echoed("x-forwarded-proto"), proto, "{listener}");
    }
}

#[test]
fn envoy_writes_server_after_the_filter_unless_passed_through() {
    let remove = json!({"response_headers_to_remove": ["server"]});
    let set = json!({"response_headers_to_add": [{
        "header": {"key": "server", "value": "mine"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]});
    let upstream = EchoUpstream::start();
    let default = "server_header_transformation: OVERWRITE";
    let pass = "server_header_transformation: PASS_THROUGH";
    let absent = "server_header_transformation: APPEND_IF_ABSENT";
    let envoy = start(
        &upstream,
        &[
            envoy_yaml::listener_yaml("remove", &wasm(&remove)),
            listener_with("remove-pass-through", &wasm(&remove), pass),
            listener_with("pass-through", "", pass),
            listener_with("remove-append-if-absent", &wasm(&remove), absent),
            listener_with("set", &wasm(&set), default),
            listener_with("set-append-if-absent", &wasm(&set), absent),
            envoy_yaml::listener_yaml(
                "remove-date",
                &wasm(&json!({"response_headers_to_remove": ["date"]})),
            ),
        ],
    )
    .unwrap();
    // `date` too is written after the filters, when absent.
    let response = get(&envoy, "remove-date");
    assert_eq!(
        response.header_all("date").len(),
        1,
        "{:?}",
        response.headers
    );
    for (listener, server) in [
        // The default: the filter's removal is undone.
        ("remove", &["envoy"][..]),
        ("remove-pass-through", &[][..]),
        ("pass-through", &["upstream"][..]),
        ("remove-append-if-absent", &["envoy"][..]),
        ("set", &["envoy"][..]),
        ("set-append-if-absent", &["mine"][..]),
    ] {
        let response = get(&envoy, listener);
        assert_eq!(response.status, 200, "{listener}");
        assert_eq!(response.header_all("server"), server, "{listener}");
    }

    let out = validate(&remove);
    assert!(
        out.contains(
            "warning: response_headers_to_remove[0]: Envoy's connection manager writes server \
             after the filters"
        ) && out.contains("server_header_transformation: PASS_THROUGH"),
        "{out}"
    );
    let out = validate(&json!({"response_headers_to_remove": ["date"]}));
    assert!(
        out.contains(
            "warning: response_headers_to_remove[0]: Envoy's connection manager writes date \
             after the filters when it is absent"
        ),
        "{out}"
    );
    let out = validate(&set);
    assert!(
        out.contains("warning: response_headers_to_add[0].header.key: Envoy's connection manager")
            && out.contains("APPEND_IF_ABSENT"),
        "{out}"
    );
}
