//! Envoy's `header_mutation` config, side by side: the same `mutations`
//! given to Envoy's own `envoy.filters.http.header_mutation` filter on one
//! listener and to this filter (`{"mutations": ...}`) on another, in one
//! real Envoy 1.40, in front of the echo upstream. The upstream's request
//! headers and request target, and the client's response headers, must be
//! the same; where the filter departs from Envoy on purpose (README, "Envoy's
//! header_mutation config"), the test asserts the difference.

use e2e::differential::{
    as_pairs, assert_same, comparable, formatters_for, APPEND_ACTIONS as ACTIONS,
};
use e2e::{envoy_yaml, http, paths, EchoUpstream, Envoy, Response, StartError};
use serde_json::{json, Value};

/// For each `(name, mutations)`, a listener `native-<name>` running Envoy's
/// filter and a listener `filter-<name>` running this one, in one Envoy.
fn side_by_side(upstream: &EchoUpstream, pairs: &[(&str, &Value)]) -> Result<Envoy, StartError> {
    let mut listeners = Vec::new();
    for (name, mutations) in pairs {
        let native = envoy_yaml::header_mutation_filter_yaml(&mutations.to_string());
        listeners.push(envoy_yaml::listener_yaml(
            &format!("native-{name}"),
            &native,
        ));
        let config = json!({ "mutations": mutations }).to_string();
        let wasm = envoy_yaml::local_wasm_filter_yaml(&paths::filter_wasm(), &config);
        listeners.push(envoy_yaml::listener_yaml(&format!("filter-{name}"), &wasm));
    }
    let listeners: Vec<&str> = listeners.iter().map(String::as_str).collect();
    Envoy::start(&envoy_yaml::bootstrap_yaml(&listeners, upstream.port(), ""))
}

/// What one request looked like at both ends.
struct Seen {
    response: Response,
    /// The request target as the upstream received it (`None` when the
    /// request never reached it).
    target: Option<String>,
}

fn send(
    envoy: &Envoy,
    upstream: &EchoUpstream,
    listener: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Seen {
    let before = upstream.request_targets().len();
    let response = http::get(envoy.listener(listener), path, headers);
    let targets = upstream.request_targets();
    Seen {
        response,
        target: targets.get(before).cloned(),
    }
}

fn append(key: &str, value: &str, action: &str, keep_empty: bool) -> Value {
    json!({"append": {
        "header": {"key": key, "value": value},
        "append_action": action,
        "keep_empty_value": keep_empty,
    }})
}

fn add(key: &str, value: &str) -> Value {
    json!({"append": {"header": {"key": key, "value": value}}})
}

fn remove(name: &str) -> Value {
    json!({ "remove": name })
}

fn remove_on_match(matcher: Value) -> Value {
    json!({"remove_on_match": {"key_matcher": matcher}})
}

fn query_append(key: &str, value: &str, action: Option<&str>) -> Value {
    let mut append = json!({"record": {"key": key, "value": value}});
    if let Some(action) = action {
        append["action"] = json!(action);
    }
    json!({ "append": append })
}

/// Header mutations of one side (`request` or `response`): every append
/// action against present and absent headers, every formatter, empty
/// values, sequences in which a mutation meets an earlier one's work, and
/// `remove_on_match` with every kind of key matcher.
fn header_mutations(side: &str) -> Vec<Value> {
    // A response-side formatter reads the response as it now stands.
    let map = if side == "request" { "REQ" } else { "RESP" };
    let mut list = Vec::new();
    for (i, action) in ACTIONS.iter().enumerate() {
        list.push(append(
            &format!("x-{side}-present-{i}"),
            "new",
            action,
            false,
        ));
        list.push(append(
            &format!("x-{side}-absent-{i}"),
            "new",
            action,
            false,
        ));
        list.push(append(
            &format!("x-{side}-fmt-present-{i}"),
            "f=%REQ(x-src)%",
            action,
            false,
        ));
    }
    for (i, formatter) in formatters_for(side) {
        let action = ACTIONS[0];
        list.push(append(&format!("x-{side}-f{i}"), formatter, action, false));
        list.push(append(&format!("x-{side}-k{i}"), formatter, action, true));
        list.push(add(&format!("x-{side}-m{i}"), &format!("<{formatter}>")));
    }
    list.extend([
        append(&format!("x-{side}-empty"), "", ACTIONS[0], false),
        append(&format!("x-{side}-empty-kept"), "", ACTIONS[0], true),
        append(
            &format!("x-{side}-none-kept"),
            "%REQ(x-missing)%",
            ACTIONS[0],
            true,
        ),
        add(&format!("x-{side}-percent"), "100%% sure, %%REQ(x)%%"),
        // Each mutation sees the ones before it (the route config would
        // add both of these, deciding before it writes).
        append(&format!("x-{side}-twice"), "1", "ADD_IF_ABSENT", false),
        append(&format!("x-{side}-twice"), "2", "ADD_IF_ABSENT", false),
        add(&format!("x-{side}-order"), "a"),
        append(&format!("x-{side}-order"), "b", ACTIONS[2], false),
        add(&format!("x-{side}-order"), "c"),
        add(&format!("x-{side}-seq"), "s1"),
        add(
            &format!("x-{side}-seq-copy"),
            &format!("%{map}(x-{side}-seq)%"),
        ),
        // Append then remove; remove then append.
        add(&format!("x-{side}-gone"), "v"),
        remove(&format!("X-{}-Gone", side.to_uppercase())),
        remove(&format!("x-{side}-doomed")),
        append(&format!("x-{side}-doomed"), "back", "ADD_IF_ABSENT", false),
        // remove_on_match after appends, then an append it must not see.
        add(&format!("x-{side}-tmp-a"), "1"),
        add(&format!("x-{side}-tmp-b"), "2"),
        remove_on_match(json!({ "prefix": format!("x-{side}-tmp-") })),
        add(&format!("x-{side}-tmp-c"), "3"),
        // Every key matcher, on headers the client or the upstream sent.
        remove_on_match(json!({ "exact": format!("x-{side}-rm-exact") })),
        remove_on_match(json!({ "prefix": format!("x-{side}-rm-prefix-") })),
        remove_on_match(json!({ "suffix": format!("-{side}-rm-suffix") })),
        remove_on_match(json!({ "contains": format!("{side}-rm-contains") })),
        remove_on_match(json!({
            "exact": format!("X-{}-RM-CASE", side.to_uppercase()),
            "ignore_case": true,
        })),
        remove_on_match(json!({ "exact": format!("X-{}-RM-NOCASE", side.to_uppercase()) })),
        remove_on_match(json!({
            "prefix": format!("X-{}-RM-IPREFIX-", side.to_uppercase()),
            "ignore_case": true,
        })),
        remove_on_match(json!({"safe_regex": {"regex": format!("x-{side}-rm-re-[0-9]+")}})),
    ]);
    list
}

/// Names the client sends (request side) or makes the upstream send
/// (response side, through `x-respond-<name>`) so that each mutation meets
/// a present header.
fn present_headers(side: &str) -> Vec<String> {
    let mut names: Vec<String> = (0..ACTIONS.len())
        .flat_map(|i| {
            [
                format!("x-{side}-present-{i}"),
                format!("x-{side}-fmt-present-{i}"),
            ]
        })
        .collect();
    names.extend(
        [
            "doomed",
            "rm-exact",
            "rm-prefix-a",
            "rm-prefix-b",
            "rm-prefix-b",
            "rm-contains-z",
            "rm-case",
            "rm-nocase",
            "rm-iprefix-a",
            "rm-re-1",
            "rm-re-22",
            "rm-re-x",
            "rm-keep",
        ]
        .map(|name| format!("x-{side}-{name}")),
    );
    names.push(format!("x-a-{side}-rm-suffix"));
    names
}

fn differential_request() -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = [
        ("x-src", "source-value"),
        ("x-multi", "first"),
        ("x-multi", "second"),
        ("x-respond-x-up-src", "upstream-value"),
        ("x-inject", "1&admin=true#"),
    ]
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .into();
    for name in present_headers("request") {
        headers.push((name, "old".to_string()));
    }
    for name in present_headers("response") {
        headers.push((format!("x-respond-{name}"), "old".to_string()));
    }
    headers
}

fn differential_mutations() -> Value {
    let query = vec![
        query_append("z", "1", None),
        query_append("a", "%REQ(x-src)%", Some("ADD_IF_ABSENT")),
        query_append("n", "new", Some("ADD_IF_ABSENT")),
        query_append("o", "x y %REQ(x-src)%", Some("OVERWRITE_IF_EXISTS")),
        query_append("nx", "v", Some("OVERWRITE_IF_EXISTS")),
        query_append("dup", "3", Some("OVERWRITE_IF_EXISTS_OR_ADD")),
        json!({"remove": "r"}),
        query_append("e", "", None),
        query_append("m", "%REQ(x-missing)%", None),
        query_append("s", "1", None),
        query_append("s", "2", Some("ADD_IF_ABSENT")),
        json!({"remove": "b"}),
        query_append("b", "after", None),
        query_append("addr", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", None),
        // Envoy URL-encodes every value it adds.
        query_append("p", "100%%25 & more/?", None),
        query_append("i", "%REQ(x-inject)%", None),
        // Query mutations run after the request mutations.
        query_append("seq", "%REQ(x-request-seq)%", None),
    ];
    json!({
        "request_mutations": header_mutations("request"),
        "response_mutations": header_mutations("response"),
        "query_parameter_mutations": query,
    })
}

const DIFFERENTIAL_PATH: &str = "/m?b=2&a=1&r=gone&bare&dup=1&dup=2&o=old&keep=k";

#[test]
fn filter_and_envoys_header_mutation_filter_produce_identical_requests_and_responses() {
    let upstream = EchoUpstream::start();
    let mutations = differential_mutations();
    let envoy = side_by_side(&upstream, &[("all", &mutations)])
        .unwrap_or_else(|e| panic!("envoy did not start: {e}\n{}", e.log()));
    let request = differential_request();
    let request = as_pairs(&request);
    let native = send(&envoy, &upstream, "native-all", DIFFERENTIAL_PATH, &request);
    let filter = send(&envoy, &upstream, "filter-all", DIFFERENTIAL_PATH, &request);
    assert_eq!(native.response.status, 200, "{}", native.response.text());
    assert_eq!(filter.response.status, 200, "{}", filter.response.text());

    // The filter URL-encodes what it adds to the query, as Envoy 1.38 and
    // later do (`header_mutation_url_encode_query_params`). Envoy 1.37 and
    // earlier write added values raw: `%REQ(x-inject)%` then adds a
    // parameter and a fragment to the request line.
    if e2e::envoy::version() >= (1, 38) {
        assert_eq!(filter.target, native.target, "request targets differ");
    } else {
        assert_eq!(
            native.target.as_deref(),
            Some(
                "/m?a=1&addr=127.0.0.1&b=after&bare=&dup=3&e=&i=1&admin=true#&keep=k\
                 &m=&n=new&o=x y source-value&p=100%25 & more/?&s=1&seq=s1&z=1"
            ),
            "Envoy before 1.38 adds query values unencoded"
        );
    }
    let native_up = comparable(&native.response.echoed_request_headers());
    let filter_up = comparable(&filter.response.echoed_request_headers());
    assert_same(&native_up, &filter_up, "upstream request headers");
    let mut native_down = comparable(&native.response.headers);
    let mut filter_down = comparable(&filter.response.headers);
    if e2e::envoy::version() < (1, 38) {
        // Response rules rendering `%REQ(:path)%` show the request line
        // each wrote, and nothing else differs.
        let native_target = native.target.clone().unwrap();
        let filter_target = filter.target.clone().unwrap();
        let differing: Vec<String> = filter_down
            .iter()
            .filter(|(name, values)| native_down.get(*name) != Some(*values))
            .map(|(name, _)| name.clone())
            .collect();
        assert!(!differing.is_empty(), "no response rule shows the path");
        for name in differing {
            let filter_values = filter_down.remove(&name).unwrap();
            let expected: Vec<String> = filter_values
                .iter()
                .map(|v| v.replace(&filter_target, &native_target))
                .collect();
            assert_eq!(native_down.remove(&name), Some(expected), "{name}");
        }
    }
    assert_same(&native_down, &filter_down, "client response headers");

    // The comparison is only worth something if the mutations did things.
    assert_eq!(
        filter.target.as_deref(),
        Some(
            "/m?a=1&addr=127.0.0.1&b=after&bare=&dup=3&e=&i=1%26admin%3Dtrue%23&keep=k\
             &m=&n=new&o=x%20y%20source-value&p=100%2525%20%26%20more%2F%3F&s=1&seq=s1&z=1"
        )
    );
    for (map, side) in [(&filter_up, "request"), (&filter_down, "response")] {
        let get = |name: &str| map.get(&format!("x-{side}-{name}")).cloned();
        assert_eq!(get("present-0").unwrap(), ["old", "new"], "{side}");
        assert_eq!(get("present-1").unwrap(), ["old"], "{side}");
        assert_eq!(get("absent-3"), None, "{side}");
        assert_eq!(get("twice").unwrap(), ["1"], "{side}");
        assert_eq!(get("order").unwrap(), ["b", "c"], "{side}");
        assert_eq!(get("seq-copy").unwrap(), ["s1"], "{side}");
        assert_eq!(get("doomed").unwrap(), ["back"], "{side}");
        assert_eq!(get("gone"), None, "{side}");
        assert_eq!(get("tmp-a"), None, "{side}");
        assert_eq!(get("tmp-c").unwrap(), ["3"], "{side}");
        assert_eq!(get("f0").unwrap(), ["source-value"], "{side}");
        for removed in [
            "rm-exact",
            "rm-prefix-a",
            "rm-prefix-b",
            "rm-contains-z",
            "rm-case",
            "rm-iprefix-a",
            "rm-re-1",
            "rm-re-22",
        ] {
            assert_eq!(get(removed), None, "{side} {removed}");
        }
        for kept in ["rm-nocase", "rm-re-x", "rm-keep"] {
            assert_eq!(get(kept).unwrap(), ["old"], "{side} {kept}");
        }
        assert_eq!(map.get(&format!("x-a-{side}-rm-suffix")), None, "{side}");
    }
    assert_eq!(filter_down["x-response-f5"], ["upstream-value"]);
}

/// Envoy decodes the parameters the request had and writes them back raw;
/// the filter keeps their bytes. Everywhere else the bytes are the same.
#[test]
fn query_parameters_the_request_had_keep_their_bytes() {
    let upstream = EchoUpstream::start();
    let mutations = json!({"query_parameter_mutations": [
        query_append("z", "1", None),
        query_append("v", "%REQ(x-in)%", None),
        query_append("A", "n", Some("OVERWRITE_IF_EXISTS")),
    ]});
    let envoy = side_by_side(&upstream, &[("q", &mutations)])
        .unwrap_or_else(|e| panic!("envoy did not start: {e}\n{}", e.log()));
    let cases = [
        // Envoy decodes what the request had and writes it back raw: a
        // space in the request line, `%26` turned into a separator. Both
        // compare and sort names decoded (`%41` is `A`).
        (
            "/d?a%20b=c%26d&%41=q&x=%zz",
            "ok",
            "/d?A=n&a b=c&d&v=ok&x=%zz&z=1",
            "/d?A=n&a%20b=c%26d&v=ok&x=%zz&z=1",
        ),
        // What the mutations add is URL-encoded by both (by Envoy from
        // 1.38 on; before, Envoy writes it raw).
        (
            "/d",
            "a&admin=1 #b",
            if e2e::envoy::version() >= (1, 38) {
                "/d?v=a%26admin%3D1%20%23b&z=1"
            } else {
                "/d?v=a&admin=1 #b&z=1"
            },
            "/d?v=a%26admin%3D1%20%23b&z=1",
        ),
        // Nothing to decode or to encode: the same bytes.
        (
            "/d?k=1",
            "plain",
            "/d?k=1&v=plain&z=1",
            "/d?k=1&v=plain&z=1",
        ),
    ];
    for (path, value, envoy_target, filter_target) in cases {
        let headers = [("x-in", value)];
        let native = send(&envoy, &upstream, "native-q", path, &headers);
        let filter = send(&envoy, &upstream, "filter-q", path, &headers);
        assert_eq!(native.target.as_deref(), Some(envoy_target), "{path}");
        assert_eq!(filter.target.as_deref(), Some(filter_target), "{path}");
        assert_eq!(filter.response.status, 200);
    }
}

/// Envoy's `remove_on_match` removes pseudo-headers its matcher matches,
/// breaking the request or the response; the filter never does.
#[test]
fn remove_on_match_leaves_pseudo_headers_where_envoy_removes_them() {
    let upstream = EchoUpstream::start();
    let authority = json!({"request_mutations": [remove_on_match(json!({"exact": ":authority"}))]});
    let path = json!({"request_mutations": [remove_on_match(json!({"suffix": "path"}))]});
    let status = json!({"response_mutations": [remove_on_match(json!({"prefix": ":st"}))]});
    let envoy = side_by_side(
        &upstream,
        &[
            ("authority", &authority),
            ("path", &path),
            ("status", &status),
        ],
    )
    .unwrap_or_else(|e| panic!("envoy did not start: {e}\n{}", e.log()));
    let headers = [("x-path", "kept?")];

    // Without :authority, Envoy sends an HTTP/1.1 request with no host.
    let native = send(&envoy, &upstream, "native-authority", "/a", &headers);
    let filter = send(&envoy, &upstream, "filter-authority", "/a", &headers);
    assert_eq!(native.response.status, 200);
    assert!(native.response.echoed("host").is_empty());
    let listener = envoy.listener("filter-authority").to_string();
    assert_eq!(filter.response.echoed("host"), [listener]);

    // Without :path, Envoy's router refuses the request.
    let native = send(&envoy, &upstream, "native-path", "/p?q=1", &headers);
    let filter = send(&envoy, &upstream, "filter-path", "/p?q=1", &headers);
    assert_eq!(native.response.status, 503);
    assert_eq!(native.response.text(), "missing required header: :path");
    assert_eq!(native.target, None);
    assert_eq!(filter.response.status, 200);
    assert_eq!(filter.target.as_deref(), Some("/p?q=1"));
    assert!(
        filter.response.echoed("x-path").is_empty(),
        "x-path removed"
    );

    // Without :status, Envoy answers 502.
    let native = send(&envoy, &upstream, "native-status", "/s", &[]);
    let filter = send(&envoy, &upstream, "filter-status", "/s", &[]);
    assert_eq!(native.response.status, 502);
    assert_eq!(filter.response.status, 200);
}

/// The README's example (the JSON block of "Envoy's header_mutation
/// config"), given to both filters: the same request and response.
#[test]
fn readme_example_does_what_envoys_filter_does() {
    let readme = std::fs::read_to_string(paths::repo_root().join("README.md")).unwrap();
    let section = readme
        .split_once("### Envoy's header_mutation config")
        .expect("README section")
        .1;
    let json = section
        .split_once("```json\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a json block in the README section")
        .0;
    let example: Value = serde_json::from_str(json).unwrap();
    let upstream = EchoUpstream::start();
    let envoy = side_by_side(&upstream, &[("readme", &example["mutations"])])
        .unwrap_or_else(|e| panic!("envoy did not start: {e}\n{}", e.log()));
    let headers = [
        ("x-debug-user", "1"),
        ("x-env", "dev"),
        ("x-respond-x-powered-by", "php"),
        ("x-respond-x-internal-id", "7"),
    ];
    let path = "/r?debug=1&source=client&z";
    let native = send(&envoy, &upstream, "native-readme", path, &headers);
    let filter = send(&envoy, &upstream, "filter-readme", path, &headers);
    assert_eq!(filter.target, native.target);
    assert_eq!(filter.target.as_deref(), Some("/r?source=mesh&z="));
    let filter_up = comparable(&filter.response.echoed_request_headers());
    assert_same(
        &comparable(&native.response.echoed_request_headers()),
        &filter_up,
        "upstream request headers",
    );
    assert_same(
        &comparable(&native.response.headers),
        &comparable(&filter.response.headers),
        "client response headers",
    );
    assert_eq!(filter_up["x-env"], ["dev"]);
    assert_eq!(filter_up["x-client-ip"], ["127.0.0.1"]);
    assert!(!filter_up.contains_key("x-debug-user"));
    assert_eq!(filter.response.header("x-powered-by"), None);
    assert_eq!(filter.response.header("x-internal-id"), None);
}

#[test]
fn bad_mutations_stop_envoy_with_one_filter_log_line() {
    let upstream = EchoUpstream::start();
    let cases = [
        (
            json!({"mutations": {"response_trailers_mutations": []}}),
            "mutations.response_trailers_mutations: not supported by this filter",
        ),
        (
            json!({"mutations": {}, "response_headers_to_remove": ["x-a"]}),
            "response_headers_to_remove: cannot be combined with mutations",
        ),
        (
            json!({"mutations": {"query_parameter_mutations": [query_append("a b", "x", None)]}}),
            "mutations.query_parameter_mutations[0].append.record.key: byte 1 would be written raw into :path",
        ),
        (
            json!({"mutations": {"request_mutations": [remove(":path")]}}),
            r#"mutations.request_mutations[0].remove: ":path": :-prefixed or host headers may not be modified"#,
        ),
    ];
    for (config, reason) in cases {
        let wasm = envoy_yaml::local_wasm_filter_yaml(&paths::filter_wasm(), &config.to_string());
        let yaml = envoy_yaml::bootstrap_yaml(
            &[&envoy_yaml::listener_yaml("filter", &wasm)],
            upstream.port(),
            "",
        );
        let error = match Envoy::start(&yaml) {
            Ok(_) => panic!("envoy started with a bad filter config: {config}"),
            Err(error) => error,
        };
        let lines: Vec<&str> = error
            .log()
            .lines()
            .filter(|l| l.contains("header-filter: invalid"))
            .collect();
        assert_eq!(lines.len(), 1, "{config}:\n{}", error.log());
        let expected = format!("header-filter: invalid configuration: {reason}");
        assert!(
            lines[0].contains(&expected),
            "{expected:?} in {:?}",
            lines[0]
        );
    }
}
