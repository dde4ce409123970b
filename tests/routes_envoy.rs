//! The filter's route table (`routes`, `route_name`, `response_rules`)
//! against Envoy 1.40's own router.
//!
//! Differential: one Envoy per test, with a pair of listeners per
//! configuration. `native-<tag>` is given the routes as its own route
//! table (each route's `match` verbatim with its header fields, the
//! top-level fields on the virtual host, a final catch-all), `filter-<tag>`
//! runs the filter with the whole configuration behind one catch-all route.
//! For every request of a table, the upstream and the client must see the
//! same headers from both, and the offline core (`MemoryStream`, what
//! `extpack render` runs) must write what the filter wrote in Envoy.
//! Envoy has no response rules and no match on its own route's name: those
//! are asserted directly, and against the offline core.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

use e2e::differential::{comparable, differences};
use e2e::{envoy_yaml, http, paths, EchoUpstream, Envoy, Response};
use header_filter::format::Side;
use header_filter::offline::MemoryStream;
use header_filter::Plan;
use serde_json::{json, Value};

const LEVEL_FIELDS: [&str; 4] = [
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
];

/// A request of a table, as the client sends it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn get(path: &str) -> Request {
        Request {
            method: "GET".to_string(),
            path: path.to_string(),
            headers: Vec::new(),
        }
    }

    fn method(mut self, method: &str) -> Request {
        self.method = method.to_string();
        self
    }

    /// Adds a header line (several calls with one name send it more than
    /// once).
    fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn send(&self, to: SocketAddr) -> Response {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        http::request(to, &self.method, &self.path, &headers, &[])
            .unwrap_or_else(|e| panic!("{self} to {to}: {e}"))
    }

    /// The request as the filter sees it in Envoy: the pseudo-headers, the
    /// client's headers (names lower-cased, values trimmed, as the HTTP/1
    /// codec stores them), and what the connection manager adds before the
    /// filters run.
    fn seen_by_filter(&self, authority: SocketAddr) -> Vec<(String, Vec<u8>)> {
        let mut headers = vec![
            (":authority", authority.to_string()),
            (":path", self.path.clone()),
            (":method", self.method.clone()),
            (":scheme", "http".to_string()),
        ];
        headers.extend(
            self.headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.trim().to_string())),
        );
        headers.push(("x-forwarded-proto", "http".to_string()));
        headers.push(("x-request-id", "offline".to_string()));
        headers
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.into_bytes()))
            .collect()
    }

    /// The response of the echo upstream to this request, as the filter
    /// sees it (see `tests/support/upstream.rs`).
    fn upstream_response(&self, status: u16) -> Vec<(String, Vec<u8>)> {
        let respond: Vec<(String, String)> = self
            .headers
            .iter()
            .filter_map(|(n, v)| {
                let name = n
                    .to_ascii_lowercase()
                    .strip_prefix("x-respond-")?
                    .to_string();
                (!name.is_empty()).then(|| (name, v.trim().to_string()))
            })
            .collect();
        let mut headers = vec![(":status".to_string(), status.to_string())];
        if !respond.iter().any(|(n, _)| n == "content-type") {
            headers.push(("content-type".into(), "application/json".into()));
        }
        headers.extend(respond);
        headers.push(("x-upstream".into(), "echo".into()));
        headers
            .into_iter()
            .map(|(n, v)| (n, v.into_bytes()))
            .collect()
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        for (name, value) in &self.headers {
            write!(f, " [{name}: {value:?}]")?;
        }
        Ok(())
    }
}

/// Envoy's own `RouteConfiguration` for a filter configuration: each
/// route's `match` verbatim with its header fields, the top-level fields
/// on the virtual host, a final catch-all.
fn native_route_config(config: &Value) -> Value {
    let copy_levels = |from: &Value, to: &mut Value| {
        for field in LEVEL_FIELDS {
            if let Some(value) = from.get(field) {
                to[field] = value.clone();
            }
        }
    };
    let mut routes = Vec::new();
    for (i, route) in config["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut native = json!({
            "name": route.get("name").cloned().unwrap_or_else(|| json!(format!("routes[{i}]"))),
            "match": route["match"],
            "route": {"cluster": "echo"},
        });
        copy_levels(route, &mut native);
        routes.push(native);
    }
    routes
        .push(json!({"name": "catch-all", "match": {"prefix": ""}, "route": {"cluster": "echo"}}));
    let mut virtual_host = json!({"name": "all", "domains": ["*"], "routes": routes});
    copy_levels(config, &mut virtual_host);
    json!({
        "most_specific_header_mutations_wins":
            config.get("most_specific_header_mutations_wins").cloned().unwrap_or(json!(false)),
        "virtual_hosts": [virtual_host],
    })
}

/// Every header name a configuration adds or removes, anywhere in it.
fn written_names(config: &Value, names: &mut BTreeSet<String>) {
    match config {
        Value::Object(object) => {
            for (key, value) in object {
                if key == "header" {
                    if let Some(name) = value.get("key").and_then(Value::as_str) {
                        names.insert(name.to_ascii_lowercase());
                    }
                } else if key.ends_with("_headers_to_remove") {
                    for name in value.as_array().into_iter().flatten() {
                        names.insert(name.as_str().unwrap_or_default().to_ascii_lowercase());
                    }
                }
                written_names(value, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| written_names(item, names)),
        _ => {}
    }
}

/// The Wasm filter's `http_filters` entry with a configuration.
fn wasm_filter(config: &Value) -> String {
    envoy_yaml::local_wasm_filter_yaml(&paths::filter_wasm(), &config.to_string())
}

/// One configuration under test: its listeners and its compiled plan.
struct Table {
    tag: String,
    config: Value,
    plan: Plan,
    written: BTreeSet<String>,
}

/// One Envoy holding a `native-<tag>` and a `filter-<tag>` listener per
/// configuration, in front of one echo upstream.
struct Differential {
    envoy: Envoy,
    tables: Vec<Table>,
    // Dropped after Envoy.
    _upstream: EchoUpstream,
}

/// What one request did on both listeners and offline.
struct Exchange {
    request: Request,
    native: Response,
    filter: Response,
    /// `None` when the upstream did not answer (a local reply).
    offline: Option<(MemoryStream, Option<u16>)>,
}

impl Differential {
    fn start(configs: &[(&str, Value)]) -> Differential {
        let upstream = EchoUpstream::start();
        let mut listeners = Vec::new();
        let mut tables = Vec::new();
        for (tag, config) in configs {
            let plan = Plan::from_json(config.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{tag}: the core refuses the config: {e}"));
            listeners.push(envoy_yaml::route_config_listener_yaml(
                &format!("native-{tag}"),
                "",
                &native_route_config(config),
            ));
            listeners.push(envoy_yaml::listener_yaml(
                &format!("filter-{tag}"),
                &wasm_filter(config),
            ));
            let mut written = BTreeSet::new();
            written_names(config, &mut written);
            tables.push(Table {
                tag: tag.to_string(),
                config: config.clone(),
                plan,
                written,
            });
        }
        let listeners: Vec<&str> = listeners.iter().map(String::as_str).collect();
        let envoy = Envoy::start(&envoy_yaml::bootstrap_yaml(&listeners, upstream.port(), ""))
            .unwrap_or_else(|e| panic!("envoy did not start: {e}"));
        Differential {
            envoy,
            tables,
            _upstream: upstream,
        }
    }

    fn table(&self, tag: &str) -> &Table {
        self.tables
            .iter()
            .find(|t| t.tag == tag)
            .unwrap_or_else(|| panic!("no table {tag}"))
    }

    /// Sends `request` to both listeners of `tag` and runs it offline.
    fn exchange(&self, tag: &str, request: &Request) -> Exchange {
        let table = self.table(tag);
        let filter_addr = self.envoy.listener(&format!("filter-{tag}"));
        let native = request.send(self.envoy.listener(&format!("native-{tag}")));
        let filter = request.send(filter_addr);
        let offline = filter.header("x-upstream").map(|_| {
            let mut stream = MemoryStream {
                request: request.seen_by_filter(filter_addr),
                response: request.upstream_response(filter.status),
                ..MemoryStream::default()
            };
            let run = stream.run(&table.plan, true);
            (stream, run.route)
        });
        Exchange {
            request: request.clone(),
            native,
            filter,
            offline,
        }
    }

    /// Every difference between native and filter, and between the filter
    /// in Envoy and offline, over a table of requests; and the exchanges.
    fn compare(&self, tag: &str, requests: &[Request]) -> (Vec<String>, Vec<Exchange>) {
        let table = self.table(tag);
        let mut found = Vec::new();
        let mut exchanges = Vec::new();
        for request in requests {
            let exchange = self.exchange(tag, request);
            let mut lines = Vec::new();
            let (native, filter) = (&exchange.native, &exchange.filter);
            if native.status != filter.status {
                lines.push(format!(
                    "status: native {}, filter {}",
                    native.status, filter.status
                ));
            }
            let echoed = |r: &Response| {
                (r.header("x-upstream").is_some() && request.method != "HEAD")
                    .then(|| comparable(&r.echoed_request_headers()))
            };
            if let (Some(n), Some(f)) = (echoed(native), echoed(filter)) {
                lines.extend(
                    differences(&n, &f)
                        .into_iter()
                        .map(|d| format!("upstream {d}")),
                );
            }
            lines.extend(
                differences(&comparable(&native.headers), &comparable(&filter.headers))
                    .into_iter()
                    .map(|d| format!("client {d}")),
            );
            if let Some((stream, _)) = &exchange.offline {
                for name in &table.written {
                    if request.method != "HEAD" {
                        let envoy = filter.echoed(name);
                        let offline = stream.values(Side::Request, name);
                        if envoy != offline {
                            lines.push(format!(
                                "offline upstream {name}: envoy {envoy:?}, offline {offline:?}"
                            ));
                        }
                    }
                    let envoy = filter.header_all(name);
                    let offline = stream.values(Side::Response, name);
                    if envoy != offline {
                        lines.push(format!(
                            "offline client {name}: envoy {envoy:?}, offline {offline:?}"
                        ));
                    }
                }
            }
            if !lines.is_empty() {
                found.push(format!("{request}\n    {}", lines.join("\n    ")));
            }
            exchanges.push(exchange);
        }
        (found, exchanges)
    }

    /// [`Differential::compare`] that panics on any difference, and unless
    /// every route (and no route) was taken by some request, but those
    /// named in `never`, which no request may take.
    fn assert_agree(&self, tag: &str, requests: &[Request], never: &[&str]) -> Vec<Exchange> {
        let (found, exchanges) = self.compare(tag, requests);
        if std::env::var_os("ROUTES_ENVOY_TRACE").is_some() {
            for e in &exchanges {
                eprintln!(
                    "{tag}: {} -> {} {:?} route={:?}",
                    e.request,
                    e.native.status,
                    e.native.header_all("x-route"),
                    e.offline.as_ref().map(|o| o.1)
                );
            }
        }
        assert!(
            found.is_empty(),
            "{tag}: {} of {} requests differ:\n  {}",
            found.len(),
            requests.len(),
            found.join("\n  ")
        );
        let taken: BTreeSet<Option<usize>> = exchanges
            .iter()
            .filter_map(|e| e.offline.as_ref().map(|(_, route)| route.map(usize::from)))
            .collect();
        let routes = self.table(tag).config["routes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let name = |i: usize| routes[i]["name"].as_str().unwrap_or("").to_string();
        let wrong: Vec<String> = (0..routes.len())
            .filter(|&i| taken.contains(&Some(i)) == never.contains(&name(i).as_str()))
            .map(|i| format!("routes[{i}] {}", name(i)))
            .chain((!taken.contains(&None)).then(|| "no route".to_string()))
            .collect();
        assert!(
            wrong.is_empty(),
            "{tag}: taken by no request although expected to be, or taken though it may not: {wrong:?}"
        );
        exchanges
    }
}

/// A route writing `x-route: <name>` on both sides.
fn route(name: &str, matcher: Value) -> Value {
    json!({
        "name": name,
        "match": matcher,
        "request_headers_to_add": [{"header": {"key": "x-route", "value": name}}],
        "response_headers_to_add": [{"header": {"key": "x-route", "value": name}}],
    })
}

/// Every path specifier, `case_sensitive: false`, overlapping routes.
#[test]
fn path_specifiers_match_as_envoys_router() {
    let config = json!({
        "request_headers_to_add": [{"header": {"key": "x-top", "value": "top"}}],
        "routes": [
            route("exact", json!({"path": "/exact"})),
            route("exact-ci", json!({"path": "/Exact-CI", "case_sensitive": false})),
            route("sep", json!({"path_separated_prefix": "/sep"})),
            route("sep-ci", json!({"path_separated_prefix": "/SepCI", "case_sensitive": false})),
            route("regex", json!({"safe_regex": {"regex": "/re/[a-z]+/\\d+"}})),
            route("regex-ci", json!({"safe_regex": {"regex": "/reci/[a-z]+"}, "case_sensitive": false})),
            route("html", json!({"safe_regex": {"regex": ".*\\.html"}})),
            route("long", json!({"prefix": "/over/lap"})),
            route("short", json!({"prefix": "/over"})),
            route("prefix-ci", json!({"prefix": "/CI/", "case_sensitive": false})),
            route("api-get", json!({"prefix": "/api", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]})),
            route("api", json!({"prefix": "/api"})),
            route("encoded", json!({"prefix": "/%61"})),
            route("with-query", json!({"prefix": "/wq?x"})),
            route("with-query-path", json!({"path": "/pq?x=1"})),
            route("params", json!({"path": "/params;v=1"})),
            route("root", json!({"path": "/"})),
        ],
    });
    let paths = [
        "/",
        "/?",
        "/?x=1",
        "/exact",
        "/exact?x=1",
        "/exact?",
        "/exact/",
        "/EXACT",
        "/exactx",
        "/exact#frag",
        "/exact;v=1",
        "/Exact-CI",
        "/exact-ci?q",
        "/EXACT-ci/",
        "/sep",
        "/sep/",
        "/sep/x",
        "/sep?x",
        "/sepx",
        "/SEP",
        "/sepci",
        "/SEPCI/a",
        "/SepCIx",
        "/re/abc/12",
        "/re/abc/12?x=1",
        "/re/ABC/12",
        "/re/abc/",
        "/re/abc/12/",
        "/reci/ABC",
        "/reci/abc",
        "/a.html",
        "/a.html?b.css",
        "/a.htm",
        "/over/lap",
        "/over/lap/x",
        "/over/x",
        "/overlap",
        "/OVER",
        "/ci/x",
        "/CI/x",
        "/Ci/",
        "/ci",
        "/api",
        "/apix",
        "/API",
        "/api?x",
        "/api/v1",
        "/a",
        "/%61",
        "/%61pi",
        "/api%2Fx",
        "//api",
        "/wq?x",
        "/wq",
        "/pq?x=1",
        "/pq",
        "/params;v=1",
        "/params",
        "/params;v=1?x",
        "/caf%C3%A9",
    ];
    let mut requests: Vec<Request> = paths.iter().map(|p| Request::get(p)).collect();
    for method in ["POST", "HEAD", "DELETE", "OPTIONS", "PURGE"] {
        requests.push(Request::get("/api/m").method(method));
        requests.push(Request::get("/exact").method(method));
    }
    let envoy = Differential::start(&[("paths", config)]);
    // A path specifier holding `?` never matches: Envoy compares the path
    // without its query.
    let exchanges = envoy.assert_agree("paths", &requests, &["with-query", "with-query-path"]);
    // Envoy 1.40 refuses a fragment in the request line before any route
    // or filter sees it.
    let fragment = exchanges.iter().find(|e| e.request.path.contains('#'));
    assert_eq!(fragment.map(|e| e.native.status), Some(400));
}

/// Each HeaderMatcher on `x-m`, one route per matcher at `/h/<name>`.
fn header_matcher_routes() -> Vec<(&'static str, Value)> {
    let string = |m: Value| json!({"name": "x-m", "string_match": m});
    vec![
        ("exact", string(json!({"exact": "abc"}))),
        (
            "exact-ic",
            string(json!({"exact": "abc", "ignore_case": true})),
        ),
        ("exact-empty", string(json!({"exact": ""}))),
        ("exact-joined", string(json!({"exact": "abc,def"}))),
        ("prefix", string(json!({"prefix": "ab"}))),
        (
            "prefix-ic",
            string(json!({"prefix": "AB", "ignore_case": true})),
        ),
        ("suffix", string(json!({"suffix": "bc"}))),
        (
            "suffix-ic",
            string(json!({"suffix": "BC", "ignore_case": true})),
        ),
        ("contains", string(json!({"contains": "b"}))),
        (
            "contains-ic",
            string(json!({"contains": "B", "ignore_case": true})),
        ),
        ("regex", string(json!({"safe_regex": {"regex": "a.c"}}))),
        (
            "regex-flag",
            string(json!({"safe_regex": {"regex": "(?i)a.c"}})),
        ),
        ("regex-any", string(json!({"safe_regex": {"regex": ".*"}}))),
        // What one character is, for a value that is not ASCII.
        (
            "regex-two-dots",
            string(json!({"safe_regex": {"regex": "a..c"}})),
        ),
        (
            "regex-bytes",
            string(json!({"safe_regex": {"regex": "a\\xC3\\xA9c"}})),
        ),
        ("present", json!({"name": "x-m", "present_match": true})),
        ("absent", json!({"name": "x-m", "present_match": false})),
        ("name-only", json!({"name": "x-m"})),
        (
            "invert-exact",
            json!({"name": "x-m", "string_match": {"exact": "abc"}, "invert_match": true}),
        ),
        (
            "invert-present",
            json!({"name": "x-m", "present_match": true, "invert_match": true}),
        ),
        (
            "invert-absent",
            json!({"name": "x-m", "present_match": false, "invert_match": true}),
        ),
        (
            "missing-empty",
            json!({"name": "x-m", "string_match": {"exact": ""}, "treat_missing_header_as_empty": true}),
        ),
        (
            "missing-empty-invert",
            json!({"name": "x-m", "string_match": {"exact": "abc"}, "treat_missing_header_as_empty": true, "invert_match": true}),
        ),
        (
            "missing-empty-prefix",
            json!({"name": "x-m", "string_match": {"prefix": "a"}, "treat_missing_header_as_empty": true}),
        ),
        (
            "missing-empty-absent",
            json!({"name": "x-m", "present_match": false, "treat_missing_header_as_empty": true}),
        ),
        (
            "range",
            json!({"name": "x-m", "range_match": {"start": 10, "end": 20}}),
        ),
        (
            "range-negative",
            json!({"name": "x-m", "range_match": {"start": "-10", "end": "0"}}),
        ),
        (
            "range-invert",
            json!({"name": "x-m", "range_match": {"start": 10, "end": 20}, "invert_match": true}),
        ),
        (
            "legacy-exact-empty",
            json!({"name": "x-m", "exact_match": ""}),
        ),
        (
            "upper-name",
            json!({"name": "X-M", "string_match": {"exact": "abc"}}),
        ),
        (
            "method",
            json!({"name": ":method", "string_match": {"exact": "POST"}}),
        ),
        (
            "authority",
            json!({"name": ":authority", "string_match": {"prefix": "127.0.0.1:"}}),
        ),
        ("host", json!({"name": "host", "present_match": true})),
        (
            "path",
            json!({"name": ":path", "string_match": {"contains": "?"}}),
        ),
        (
            "scheme",
            json!({"name": ":scheme", "string_match": {"exact": "http"}}),
        ),
        (
            "forwarded-proto",
            json!({"name": "x-forwarded-proto", "present_match": true}),
        ),
        // An inline header: Envoy's codec joins its repeated lines into one.
        (
            "accept",
            json!({"name": "accept", "string_match": {"exact": "b"}}),
        ),
    ]
}

/// Values of `x-m` every header route is tried with: absent, empty, sent
/// twice, letter case, whitespace, numbers.
fn header_variants() -> Vec<Vec<&'static str>> {
    vec![
        vec![],
        vec![""],
        vec!["abc"],
        vec!["ABC"],
        vec!["xabcx"],
        vec!["ab"],
        vec!["  abc  "],
        vec!["abc", "def"],
        vec!["abc", ""],
        vec!["", ""],
        vec!["abc,def"],
        vec!["15"],
        vec!["+15"],
        vec!["-5"],
        vec!["20"],
        vec!["1.5"],
        vec!["99999999999999999999"],
        vec!["a\u{e9}c"],
    ]
}

/// Every HeaderMatcher option, on a plain header and on pseudo-headers.
#[test]
fn header_matchers_match_as_envoys_router() {
    let routes: Vec<Value> = header_matcher_routes()
        .into_iter()
        .map(|(name, matcher)| {
            route(
                name,
                json!({"path": format!("/h/{name}"), "headers": [matcher]}),
            )
        })
        .collect();
    let config = json!({"routes": routes});
    let mut requests = Vec::new();
    for (name, _) in header_matcher_routes() {
        let path = format!("/h/{name}");
        for values in header_variants() {
            let mut request = Request::get(&path);
            for value in values {
                request = request.header("x-m", value);
            }
            requests.push(request);
        }
        requests.push(Request::get(&path).header("X-M", "abc"));
        requests.push(Request::get(&format!("{path}?q=1")).method("POST"));
        requests.push(Request::get(&path).method("post"));
        requests.push(Request::get(&path).header("accept", "b"));
        requests.push(
            Request::get(&path)
                .header("accept", "a")
                .header("accept", "b"),
        );
    }
    let envoy = Differential::start(&[("headers", config)]);
    envoy.assert_agree("headers", &requests, &[]);
}

/// Each QueryParameterMatcher, one route per matcher at `/q/<name>`.
fn query_matcher_routes() -> Vec<(&'static str, Value)> {
    let string = |m: Value| json!([{"name": "debug", "string_match": m}]);
    vec![
        ("name-only", json!([{"name": "debug"}])),
        ("present", json!([{"name": "debug", "present_match": true}])),
        ("absent", json!([{"name": "debug", "present_match": false}])),
        ("exact", string(json!({"exact": "1"}))),
        ("exact-empty", string(json!({"exact": ""}))),
        ("exact-space", string(json!({"exact": "a b"}))),
        ("exact-encoded", string(json!({"exact": "a%20b"}))),
        ("exact-plus", string(json!({"exact": "a+b"}))),
        (
            "prefix-ic",
            string(json!({"prefix": "A", "ignore_case": true})),
        ),
        ("suffix", string(json!({"suffix": "1"}))),
        ("contains", string(json!({"contains": "="}))),
        ("regex", string(json!({"safe_regex": {"regex": "[0-9]+"}}))),
        (
            "upper-name",
            json!([{"name": "DEBUG", "present_match": true}]),
        ),
        (
            "encoded-name",
            json!([{"name": "de%62ug", "present_match": true}]),
        ),
        (
            "two",
            json!([{"name": "debug", "present_match": true}, {"name": "v", "string_match": {"exact": "2"}}]),
        ),
    ]
}

/// Query strings every query route is tried with: missing, bare keys,
/// repeated parameters, letter case, percent-encoding.
const QUERIES: [&str; 22] = [
    "",
    "?",
    "?debug",
    "?debug=",
    "?debug=1",
    "?debug=1&debug=2",
    "?debug=2&debug=1",
    "?x=1&debug=1",
    "?DEBUG=1",
    "?debug=a%20b",
    "?debug=a+b",
    "?debug=a b",
    "?debug=A1",
    "?debug=x=y",
    "?&debug=1",
    "?debug=1&v=2",
    "?v=2",
    "?de%62ug=1",
    "?debug%3D1",
    "?debug=1;v=2",
    "?debug=%",
    "??debug=1",
];

/// `query_parameters`: presence, values, repeated and bare parameters,
/// encoded names and values.
#[test]
fn query_parameters_match_as_envoys_router() {
    let routes: Vec<Value> = query_matcher_routes()
        .into_iter()
        .map(|(name, matchers)| {
            route(
                name,
                json!({"path": format!("/q/{name}"), "query_parameters": matchers}),
            )
        })
        .collect();
    let config = json!({"routes": routes});
    let mut requests = Vec::new();
    for (name, _) in query_matcher_routes() {
        for query in QUERIES {
            requests.push(Request::get(&format!("/q/{name}{query}")));
        }
    }
    let envoy = Differential::start(&[("query", config)]);
    // Nothing is decoded, and a space cannot be sent raw (Envoy answers
    // 400): a matcher on a decoded value never matches.
    envoy.assert_agree("query", &requests, &["exact-space"]);
}
