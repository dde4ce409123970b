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
use e2e::extpack::extpack_with;
use e2e::{envoy_yaml, http, paths, EchoUpstream, Envoy, Response};
use header_filter::format::attribute;
use header_filter::format::Side;
use header_filter::offline::MemoryStream;
use header_filter::Plan;
use serde_json::{json, Value};

/// Request headers this table sends twice that Envoy 1.40's codec joins
/// into one entry (its inline headers; seen in the differential).
const CODEC_JOINED: &[&str] = &["accept"];

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

    /// The values this request sends for `name`, in order.
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// This request with the lines of `name` joined into one, with `,`.
    fn joined(&self, name: &str) -> Request {
        let mut joined = Request {
            headers: Vec::new(),
            ..self.clone()
        };
        for (n, v) in &self.headers {
            if !n.eq_ignore_ascii_case(name) {
                joined.headers.push((n.clone(), v.clone()));
            }
        }
        joined
            .headers
            .push((name.to_string(), self.values(name).join(",")));
        joined
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
        let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            // Envoy's codec stores repeats of its inline (O(1)) headers as
            // one entry joined with `,` before any filter runs.
            match seen.iter_mut().find(|(n, _)| *n == name) {
                Some((_, joined)) if CODEC_JOINED.contains(&name.as_str()) => {
                    joined.push(b',');
                    joined.extend_from_slice(value.as_bytes());
                }
                _ => seen.push((name, value.into_bytes())),
            }
        }
        seen
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

impl Table {
    fn new(tag: &str, config: &Value) -> Table {
        let plan = Plan::from_json(config.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{tag}: the core refuses the config: {e}"));
        let mut written = BTreeSet::new();
        written_names(config, &mut written);
        Table {
            tag: tag.to_string(),
            config: config.clone(),
            plan,
            written,
        }
    }

    /// Runs `request` through the offline core as the filter at `filter`
    /// saw it in Envoy (taking Envoy route `route_name`), with the
    /// upstream's answer; `None` when the upstream did not answer.
    fn offline(
        &self,
        request: &Request,
        filter: SocketAddr,
        response: &Response,
        route_name: Option<&str>,
    ) -> Option<(MemoryStream, Option<u16>)> {
        response.header("x-upstream")?;
        let mut stream = MemoryStream {
            request: request.seen_by_filter(filter),
            response: request.upstream_response(response.status),
            ..MemoryStream::default()
        };
        if let Some(name) = route_name {
            stream.set_property(attribute::ROUTE_NAME, name);
        }
        let run = stream.run(&self.plan, true);
        Some((stream, run.route))
    }

    /// The same exchange through `extpack render --json` (the CLI over
    /// the offline core): the headers as they leave the filter, as a
    /// stream [`Table::offline_differences`] can judge.
    fn rendered(
        &self,
        request: &Request,
        filter: SocketAddr,
        response: &Response,
        route_name: Option<&str>,
    ) -> MemoryStream {
        let seen = request.seen_by_filter(filter);
        let upstream = request.upstream_response(response.status);
        let text = |(n, v): &(String, Vec<u8>)| format!("{n}: {}", String::from_utf8_lossy(v));
        let mut args: Vec<String> = vec![
            "render".into(),
            "--config".into(),
            "-".into(),
            "--json".into(),
            "--request".into(),
            format!("{} {}", request.method, request.path),
            "--authority".into(),
            filter.to_string(),
            "--status".into(),
            response.status.to_string(),
        ];
        for header in seen.iter().filter(|(n, _)| !n.starts_with(':')) {
            args.extend(["-H".to_string(), text(header)]);
        }
        for header in upstream.iter().filter(|(n, _)| !n.starts_with(':')) {
            args.extend(["--response-header".to_string(), text(header)]);
        }
        if let Some(name) = route_name {
            args.extend(["--route-name".to_string(), name.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = extpack_with(&args, Some(&self.config.to_string()), &[]).ok();
        let report: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("render --json output ({e}): {}", run.stdout));
        let side = |key: &str| -> Vec<(String, Vec<u8>)> {
            report[key]["headers"]
                .as_array()
                .unwrap_or_else(|| panic!("render --json has no {key}: {report}"))
                .iter()
                .filter(|e| e["change"] != "removed")
                .map(|e| {
                    let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    (field("name"), field("value").into_bytes())
                })
                .collect()
        };
        MemoryStream {
            request: side("request"),
            response: side("response"),
            ..MemoryStream::default()
        }
    }

    /// Where the headers the configuration writes differ between what the
    /// upstream and the client got from the filter and the offline stream.
    fn offline_differences(
        &self,
        request: &Request,
        response: &Response,
        stream: &MemoryStream,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        for name in &self.written {
            if request.method != "HEAD" {
                let envoy = response.echoed(name);
                let offline = stream.values(Side::Request, name);
                if envoy != offline {
                    lines.push(format!(
                        "offline upstream {name}: envoy {envoy:?}, offline {offline:?}"
                    ));
                }
            }
            let envoy = response.header_all(name);
            let offline = stream.values(Side::Response, name);
            if envoy != offline {
                lines.push(format!(
                    "offline client {name}: envoy {envoy:?}, offline {offline:?}"
                ));
            }
        }
        lines
    }
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
            listeners.push(envoy_yaml::route_config_listener_yaml(
                &format!("native-{tag}"),
                "",
                &native_route_config(config),
            ));
            listeners.push(envoy_yaml::listener_yaml(
                &format!("filter-{tag}"),
                &wasm_filter(config),
            ));
            tables.push(Table::new(tag, config));
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
        let offline = table.offline(request, filter_addr, &filter, None);
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
                lines.extend(table.offline_differences(request, filter, stream));
            }
            if !lines.is_empty() {
                found.push(format!("{request}\n    {}", lines.join("\n    ")));
            }
            exchanges.push(exchange);
        }
        (found, exchanges)
    }

    /// Runs every exchange the upstream answered through `extpack render`
    /// and panics unless it writes what the filter wrote in Envoy.
    fn assert_render_agrees(&self, tag: &str, exchanges: &[Exchange]) {
        let table = self.table(tag);
        let filter = self.envoy.listener(&format!("filter-{tag}"));
        let mut found = Vec::new();
        for exchange in exchanges.iter().filter(|e| e.offline.is_some()) {
            let rendered = table.rendered(&exchange.request, filter, &exchange.filter, None);
            let lines = table.offline_differences(&exchange.request, &exchange.filter, &rendered);
            if !lines.is_empty() {
                found.push(format!(
                    "{}\n    {}",
                    exchange.request,
                    lines.join("\n    ")
                ));
            }
        }
        assert!(
            found.is_empty(),
            "{tag}: extpack render differs from Envoy:\n  {}",
            found.join("\n  ")
        );
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
        "/caf\u{e9}",
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
        // The deprecated forms Envoy 1.40 still takes.
        (
            "legacy-exact-empty",
            json!({"name": "x-m", "exact_match": ""}),
        ),
        ("legacy-exact", json!({"name": "x-m", "exact_match": "abc"})),
        (
            "legacy-prefix",
            json!({"name": "x-m", "prefix_match": "ab"}),
        ),
        (
            "legacy-suffix",
            json!({"name": "x-m", "suffix_match": "bc"}),
        ),
        (
            "legacy-contains",
            json!({"name": "x-m", "contains_match": "b"}),
        ),
        (
            "legacy-regex",
            json!({"name": "x-m", "safe_regex_match": {"regex": "a.c"}}),
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
        vec!["def", "abc"],
        vec!["def", "ghi"],
        vec!["5", "15"],
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
    // `present_match: false` with `treat_missing_header_as_empty`: a
    // missing header is then an empty, present one, so the route is never
    // taken, by Envoy or the filter.
    let never = ["missing-empty-absent"];
    if e2e::envoy::version() >= (1, 39) {
        envoy.assert_agree("headers", &requests, &never);
        return;
    }
    // Envoy 1.38 and earlier match a header sent twice on its joined value
    // and run `safe_regex` over UTF-8 characters (docs/envoy-versions.md);
    // every other request agrees.
    let (agreeing, differing): (Vec<Request>, Vec<Request>) = requests.into_iter().partition(|r| {
        let values = r.values("x-m");
        values.len() < 2 && values.iter().all(|v| v.is_ascii())
    });
    // Only `aéc` takes the byte-wise regex routes (in the filter).
    let never = [never[0], "regex-two-dots", "regex-bytes"];
    envoy.assert_agree("headers", &agreeing, &never);
    assert_header_matching_before_1_39(&envoy, &differing);
}

/// `safe_regex` routes of [`header_matcher_routes`] and whether Envoy 1.38
/// and earlier take them for `x-m: aéc`: RE2 reads the value as UTF-8 there
/// (`.` is `é`, `\xC3` the character U+00C3), where the filter and Envoy
/// 1.39+ read bytes (`.` is one byte).
const UTF8_REGEX_ROUTES: [(&str, bool); 5] = [
    ("regex", true),
    ("regex-flag", true),
    ("legacy-regex", true),
    ("regex-two-dots", false),
    ("regex-bytes", false),
];

/// For Envoy 1.38 and earlier (no `match_headers_individually`): Envoy's
/// router takes, for a request sending `x-m` twice, the route the filter's
/// core takes for the same request with the two lines joined by `,`; for a
/// non-ASCII value, what [`UTF8_REGEX_ROUTES`] says on the regex routes and
/// what the filter takes elsewhere. The filter in Envoy still writes what
/// its core writes. Both kinds must show at least one difference.
fn assert_header_matching_before_1_39(envoy: &Differential, requests: &[Request]) {
    let tag = "headers";
    let table = envoy.table(tag);
    let filter_addr = envoy.envoy.listener(&format!("filter-{tag}"));
    let routes = table.config["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let route_of = |request: &Request, response: &Response| -> Vec<String> {
        let (_, route) = table
            .offline(request, filter_addr, response, None)
            .unwrap_or_else(|| panic!("{request}: no upstream answer"));
        route
            .map(|i| routes[usize::from(i)]["name"].as_str().unwrap().to_string())
            .into_iter()
            .collect()
    };
    let mut found = Vec::new();
    let (mut joined_differ, mut utf8_differ) = (0, 0);
    for request in requests {
        let exchange = envoy.exchange(tag, request);
        let filter_route = route_of(request, &exchange.filter);
        let twice = request.values("x-m").len() > 1;
        let expected = if twice {
            route_of(&request.joined("x-m"), &exchange.filter)
        } else {
            let path_route = request.path.trim_start_matches("/h/");
            match UTF8_REGEX_ROUTES
                .iter()
                .find(|(name, _)| *name == path_route)
            {
                Some((name, true)) => vec![name.to_string()],
                Some((_, false)) => Vec::new(),
                None => filter_route.clone(),
            }
        };
        if expected != filter_route {
            *(if twice {
                &mut joined_differ
            } else {
                &mut utf8_differ
            }) += 1;
        }
        let routes_of = |response: &Response| -> Vec<String> {
            response
                .header_all("x-route")
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        let native_client = routes_of(&exchange.native);
        let native_upstream = exchange.native.echoed("x-route");
        let filter_client = routes_of(&exchange.filter);
        let mut lines = Vec::new();
        if native_client != expected || native_upstream != expected {
            lines.push(format!(
                "envoy took {native_client:?} (upstream saw {native_upstream:?}), expected {expected:?}"
            ));
        }
        if filter_client != filter_route {
            lines.push(format!(
                "filter wrote {filter_client:?}, its core takes {filter_route:?}"
            ));
        }
        if let Some((stream, _)) = &exchange.offline {
            lines.extend(table.offline_differences(request, &exchange.filter, stream));
        }
        if !lines.is_empty() {
            found.push(format!("{request}\n    {}", lines.join("\n    ")));
        }
    }
    assert!(
        found.is_empty(),
        "{tag}: {} of {} requests are not what Envoy before 1.39 does:\n  {}",
        found.len(),
        requests.len(),
        found.join("\n  ")
    );
    assert!(
        joined_differ > 0 && utf8_differ > 0,
        "no difference shown: {joined_differ} joined, {utf8_differ} UTF-8"
    );
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

/// A `HeaderValueOption`.
fn add(key: &str, value: &str, action: &str) -> Value {
    json!({"header": {"key": key, "value": value}, "append_action": action})
}

const APPEND: &str = "APPEND_IF_EXISTS_OR_ADD";
const OVERWRITE: &str = "OVERWRITE_IF_EXISTS_OR_ADD";
const IF_ABSENT: &str = "ADD_IF_ABSENT";

/// Top level and route level writing the same names with OVERWRITE and
/// APPEND, removing what the other level adds, and reading with `%REQ()%`
/// what the other level wrote.
fn levels_config(most_specific_wins: bool) -> Value {
    let top = |side: &str| {
        json!([
            add("x-both-ow", &format!("top-{side}"), OVERWRITE),
            add("x-both-app", &format!("top-{side}"), APPEND),
            add("x-ow-app", &format!("top-{side}"), OVERWRITE),
            add("x-app-ow", &format!("top-{side}"), APPEND),
            add("x-if-absent", &format!("top-{side}"), IF_ABSENT),
            add("x-top-adds", "top", APPEND),
            add("x-top-reads", "t=%REQ(x-both-ow)%", APPEND),
        ])
    };
    let route_level = |side: &str| {
        json!([
            add("x-both-ow", &format!("route-{side}"), OVERWRITE),
            add("x-both-app", &format!("route-{side}"), APPEND),
            add("x-ow-app", &format!("route-{side}"), APPEND),
            add("x-app-ow", &format!("route-{side}"), OVERWRITE),
            add("x-if-absent", &format!("route-{side}"), IF_ABSENT),
            add("x-route-adds", "route", APPEND),
            add(
                "x-route-reads",
                "r=%REQ(x-in)%/%REQ(x-both-ow)%/%REQ(x-top-adds)%",
                OVERWRITE
            ),
        ])
    };
    json!({
        "most_specific_header_mutations_wins": most_specific_wins,
        "request_headers_to_add": top("rq"),
        "request_headers_to_remove": ["x-rm-top", "x-route-adds"],
        "response_headers_to_add": top("rs"),
        "response_headers_to_remove": ["x-rm-top", "x-route-adds"],
        "routes": [
            {
                "name": "full",
                "match": {"prefix": "/lv/full"},
                "request_headers_to_add": route_level("rq"),
                "request_headers_to_remove": ["x-rm-route", "x-top-adds"],
                "response_headers_to_add": route_level("rs"),
                "response_headers_to_remove": ["x-rm-route", "x-top-adds"],
            },
            {
                "name": "remove-only",
                "match": {"path_separated_prefix": "/lv/rm"},
                "request_headers_to_remove": ["x-both-ow", "x-top-adds"],
                "response_headers_to_remove": ["x-both-ow", "x-top-adds"],
            },
        ],
    })
}

/// The level requests: every name present or not, on both sides.
fn levels_requests() -> Vec<Request> {
    const NAMES: [&str; 9] = [
        "x-both-ow",
        "x-both-app",
        "x-ow-app",
        "x-app-ow",
        "x-if-absent",
        "x-rm-top",
        "x-rm-route",
        "x-top-adds",
        "x-route-adds",
    ];
    let mut requests = Vec::new();
    for path in [
        "/lv/full",
        "/lv/full/x?q=1",
        "/lv/rm",
        "/lv/rm/x",
        "/lv/rmx",
        "/other",
    ] {
        requests.push(Request::get(path));
        let mut sent = Request::get(path).header("x-in", "in");
        for name in NAMES {
            sent = sent
                .header(name, "client")
                .header(&format!("x-respond-{name}"), "upstream");
        }
        requests.push(sent.clone().header("x-both-app", "client-2"));
        requests.push(sent.method("HEAD"));
    }
    requests
}

/// Both level orders, OVERWRITE and APPEND on one name at both levels,
/// removals at both levels, `%REQ()%` at route level on both sides.
#[test]
fn levels_stack_as_envoys_header_parsers() {
    let envoy = Differential::start(&[
        ("route-first", levels_config(false)),
        ("top-first", levels_config(true)),
    ]);
    let requests = levels_requests();
    let plain = envoy.assert_agree("route-first", &requests, &[]);
    let reversed = envoy.assert_agree("top-first", &requests, &[]);
    envoy.assert_render_agrees("route-first", &plain);
    envoy.assert_render_agrees("top-first", &reversed);
    // The two orders must have made a difference the comparison saw.
    let both_ow = |exchanges: &[Exchange]| exchanges[1].filter.echoed("x-both-ow");
    assert_eq!(both_ow(&plain), ["top-rq"]);
    assert_eq!(both_ow(&reversed), ["route-rq"]);
}

/// One Envoy with one listener (`filter`) running the filter in front of a
/// route table of the test's own, for what Envoy cannot do natively.
struct FilterEnvoy {
    envoy: Envoy,
    table: Table,
    _upstream: EchoUpstream,
}

impl FilterEnvoy {
    fn start(config: &Value, route_config: &Value) -> FilterEnvoy {
        let upstream = EchoUpstream::start();
        let listener =
            envoy_yaml::route_config_listener_yaml("filter", &wasm_filter(config), route_config);
        let envoy = Envoy::start(&envoy_yaml::bootstrap_yaml(
            &[&listener],
            upstream.port(),
            "",
        ))
        .unwrap_or_else(|e| panic!("envoy did not start: {e}"));
        FilterEnvoy {
            envoy,
            table: Table::new("filter", config),
            _upstream: upstream,
        }
    }

    /// Sends `request`, checks that the offline core (told that the request
    /// took Envoy route `route_name`) wrote what the filter wrote, and
    /// returns the response.
    fn send(&self, request: &Request, route_name: Option<&str>) -> Response {
        let addr = self.envoy.listener("filter");
        let response = request.send(addr);
        let (stream, _) = self
            .table
            .offline(request, addr, &response, route_name)
            .unwrap_or_else(|| panic!("{request}: no upstream answer: {}", response.status));
        let differences = self.table.offline_differences(request, &response, &stream);
        assert!(
            differences.is_empty(),
            "{request}: the offline core differs from Envoy:\n  {}",
            differences.join("\n  ")
        );
        let rendered = self.table.rendered(request, addr, &response, route_name);
        let differences = self
            .table
            .offline_differences(request, &response, &rendered);
        assert!(
            differences.is_empty(),
            "{request}: extpack render differs from Envoy:\n  {}",
            differences.join("\n  ")
        );
        response
    }
}

/// A route table whose every route goes to the echo upstream.
fn route_config(routes: Value) -> Value {
    json!({"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]})
}

/// `route_name` matches the name of the Envoy route the request took
/// (`xds.route_name`), as Istio names its routes.
#[test]
fn route_name_targets_envoys_named_routes() {
    let echo = json!({"cluster": "echo"});
    let envoy_routes = json!([
        {"name": "reviews-v2", "route": echo,
         "match": {"prefix": "/reviews", "headers": [{"name": "x-version", "string_match": {"exact": "v2"}}]}},
        {"name": "reviews-v1", "match": {"prefix": "/reviews"}, "route": echo},
        {"name": "ratings", "match": {"prefix": "/ratings"}, "route": echo},
        {"match": {"prefix": "/"}, "route": echo},
    ]);
    let hit = |name: &str, matcher: Value| route(name, matcher);
    let config = json!({"routes": [
        hit("v2", json!({"route_name": {"exact": "reviews-v2"}})),
        hit("reviews", json!({"route_name": {"prefix": "reviews-"}})),
        hit("ratings-get", json!({"route_name": {"exact": "ratings"},
            "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]})),
        hit("unnamed", json!({"route_name": {"exact": ""}})),
        hit("any-name", json!({"route_name": {"safe_regex": {"regex": ".*"}}})),
    ]});
    let envoy = FilterEnvoy::start(&config, &route_config(envoy_routes));
    // (request, Envoy route it takes, filter route expected)
    let cases = [
        (
            Request::get("/reviews/1").header("x-version", "v2"),
            Some("reviews-v2"),
            "v2",
        ),
        (Request::get("/reviews/1"), Some("reviews-v1"), "reviews"),
        (
            Request::get("/reviews").header("x-version", "v3"),
            Some("reviews-v1"),
            "reviews",
        ),
        (Request::get("/ratings"), Some("ratings"), "ratings-get"),
        (
            Request::get("/ratings").method("POST"),
            Some("ratings"),
            "any-name",
        ),
        (Request::get("/other"), Some(""), "unnamed"),
    ];
    for (request, envoy_route, expected) in cases {
        let response = envoy.send(&request, envoy_route);
        assert_eq!(response.echoed("x-route"), [expected], "{request}");
        assert_eq!(response.header_all("x-route"), [expected], "{request}");
    }
}

/// Headers a response must carry: (name, every value in order).
type Expected = Vec<(&'static str, Vec<&'static str>)>;

/// `response_rules`: status codes, ranges and classes, response header
/// matchers, at the top level and on a route (where they must not fire for
/// other routes), each right after the level it belongs to.
#[test]
fn response_rules_fire_on_status_and_headers() {
    let rule = |conditions: Value, adds: Value| {
        let mut rule = conditions;
        rule["response_headers_to_add"] = adds;
        rule
    };
    let config = json!({
        "response_headers_to_add": [add("x-order", "top", OVERWRITE)],
        "response_rules": [
            rule(json!({"status": ["5xx"]}), json!([add("x-class", "5xx", APPEND), add("x-who", "top-5xx", APPEND)])),
            rule(json!({"status": ["404"]}), json!([add("x-not-found", "1", APPEND)])),
            rule(json!({"status": ["201-299", "418"]}), json!([add("x-range", "%RESP(x-echo)%", APPEND)])),
            rule(
                json!({"status": ["200"], "headers": [{"name": "content-type", "string_match": {"prefix": "text/html"}}]}),
                json!([add("cache-control", "no-store", OVERWRITE)]),
            ),
            // A header the upstream sends twice: as Envoy's HeaderMatcher
            // (1.39 on), each value is matched on its own.
            rule(
                json!({"headers": [{"name": "x-tag", "string_match": {"exact": "b"}}]}),
                json!([add("x-tagged", "1", APPEND)]),
            ),
            {
                "headers": [{"name": "x-up", "present_match": true}],
                "response_headers_to_remove": ["x-up"],
                // Removal comes first in a level, so the value reads nothing.
                "response_headers_to_add": [add("x-up-seen", "1", APPEND), add("x-up-value", "%RESP(x-up)%", APPEND)],
            },
        ],
        "routes": [
            {
                "match": {"prefix": "/api"},
                "response_headers_to_add": [add("x-route", "api", APPEND)],
                "response_rules": [rule(
                    json!({"status": ["5xx"]}),
                    json!([add("x-who", "api-5xx", OVERWRITE), add("x-order", "api-rule", OVERWRITE)]),
                )],
            },
            {"match": {"prefix": "/"}, "response_headers_to_add": [add("x-route", "other", APPEND)]},
        ],
    });
    let envoy = FilterEnvoy::start(
        &config,
        &route_config(json!([{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}])),
    );
    let get = |path: &str, status: u16| {
        Request::get(path)
            .header("x-echo-status", &status.to_string())
            .header("x-respond-x-echo", &format!("e{status}"))
    };
    let html = |request: Request, content_type: &str| {
        request.header("x-respond-content-type", content_type)
    };
    // (request, status, [(header, values)]) for every header a rule writes.
    let cases: Vec<(Request, u16, Expected)> = vec![
        (
            get("/api/a", 503),
            503,
            vec![
                ("x-class", vec!["5xx"]),
                ("x-who", vec!["api-5xx", "top-5xx"]),
                ("x-route", vec!["api"]),
                ("x-order", vec!["top"]),
            ],
        ),
        (
            get("/other", 503),
            503,
            vec![
                ("x-class", vec!["5xx"]),
                ("x-who", vec!["top-5xx"]),
                ("x-route", vec!["other"]),
                ("x-order", vec!["top"]),
            ],
        ),
        (
            get("/api", 599),
            599,
            vec![
                ("x-class", vec!["5xx"]),
                ("x-who", vec!["api-5xx", "top-5xx"]),
            ],
        ),
        (
            get("/api", 404),
            404,
            vec![
                ("x-not-found", vec!["1"]),
                ("x-class", vec![]),
                ("x-who", vec![]),
                ("x-range", vec![]),
            ],
        ),
        (
            get("/api", 400),
            400,
            vec![("x-not-found", vec![]), ("x-class", vec![])],
        ),
        (
            get("/api", 200),
            200,
            vec![
                ("x-range", vec![]),
                ("x-class", vec![]),
                ("cache-control", vec![]),
            ],
        ),
        (get("/api", 201), 201, vec![("x-range", vec!["e201"])]),
        (get("/api", 299), 299, vec![("x-range", vec!["e299"])]),
        (get("/api", 300), 300, vec![("x-range", vec![])]),
        (get("/api", 418), 418, vec![("x-range", vec!["e418"])]),
        (
            html(get("/", 200), "text/html; charset=utf-8"),
            200,
            vec![("cache-control", vec!["no-store"])],
        ),
        (
            html(get("/", 200), "TEXT/HTML"),
            200,
            vec![("cache-control", vec![])],
        ),
        (
            html(get("/", 201), "text/html"),
            201,
            vec![("cache-control", vec![])],
        ),
        (get("/", 200), 200, vec![("cache-control", vec![])]),
        (
            get("/", 200).header("x-respond-x-up", "u1"),
            200,
            vec![
                ("x-up", vec![]),
                ("x-up-seen", vec!["1"]),
                ("x-up-value", vec![]),
            ],
        ),
        (
            get("/", 503).header("x-respond-x-up", ""),
            503,
            vec![
                ("x-up", vec![]),
                ("x-up-seen", vec!["1"]),
                ("x-class", vec!["5xx"]),
            ],
        ),
        (
            get("/", 200).header("x-respond-x-tag", "b"),
            200,
            vec![("x-tagged", vec!["1"])],
        ),
        (
            get("/", 200).header("x-respond-x-tag", "a,b"),
            200,
            vec![("x-tagged", vec![])],
        ),
        (
            get("/", 200)
                .header("x-respond-x-tag", "a")
                .header("x-respond-x-tag", "b"),
            200,
            vec![("x-tag", vec!["a", "b"]), ("x-tagged", vec!["1"])],
        ),
    ];
    for (request, status, expected) in cases {
        let response = envoy.send(&request, None);
        assert_eq!(response.status, status, "{request}");
        for (name, values) in expected {
            assert_eq!(response.header_all(name), values, "{request}: {name}");
        }
    }
}

/// A route table the filter cannot take stops Envoy (fail closed) with the
/// filter's one error line, naming the JSON path and the reason.
#[test]
fn bad_route_tables_stop_envoy_with_one_line() {
    let cases = [
        (
            json!({"routes": [{"match": {"prefix": "/", "grpc": {}}}]}),
            "routes[0].match.grpc: not supported by this filter",
        ),
        (
            json!({"routes": [{"match": {"safe_regex": {"regex": "(a"}}}]}),
            r#"routes[0].match.safe_regex.regex: regex "(a" is not supported:"#,
        ),
        (
            json!({"response_rules": [{"status": ["6xx"]}]}),
            r#"response_rules[0].status[0]: "6xx" is not a status: write a code (404), a range (200-299) or a class (5xx), within 100-599"#,
        ),
        (
            json!({"routes": [{"match": {"prefix": "/"}, "response_rules": [{"status": ["300-200"]}]}]}),
            r#"routes[0].response_rules[0].status[0]: "300-200" is not a status"#,
        ),
        (
            json!({"routes": [{"match": {"prefix": "/", "headers": [{"name": "x", "string_match": {"exact": "a"}, "presentt_match": true}]}}]}),
            "routes[0].match.headers[0].presentt_match: unknown field (accepted: name, string_match",
        ),
    ];
    let upstream = EchoUpstream::start();
    for (config, reason) in cases {
        assert!(
            Plan::from_json(config.to_string().as_bytes()).is_err(),
            "the core takes {config}"
        );
        let listener = envoy_yaml::listener_yaml("filter", &wasm_filter(&config));
        let error = match Envoy::start(&envoy_yaml::bootstrap_yaml(
            &[&listener],
            upstream.port(),
            "",
        )) {
            Ok(_) => panic!("envoy started with a bad filter config: {config}"),
            Err(error) => error,
        };
        error.assert_filter_refused(reason);
    }
}
