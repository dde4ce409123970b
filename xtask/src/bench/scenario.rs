//! The realistic scenario ("mix"): what an operator runs, written three
//! ways. Ten routes (exact paths, prefixes, two header matches, a regex),
//! six header rules with `%REQ()%`, `%START_TIME%` and the client address,
//! a removal and a `5xx` response rule, and a request mix spread over the
//! routes.
//!
//! The filter's configuration is the one source: Envoy's native form is
//! derived from it (the route table takes the routes and the top level as
//! `RouteConfiguration` fields; the `5xx` rule, which a route table cannot
//! express, becomes Envoy's composite filter matching `:status` and running
//! `header_mutation`). The Lua form is hand-written (`benches/mix.lua`);
//! `verify::mix` checks in Envoy that the three produce the same headers.
//!
//! Pure data and text; nothing here starts processes.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// The `host` mix requests carry: the `direct` listener serves them from
/// its own virtual host (503 on [`FAIL`], echoes on [`ECHO`]).
pub const HOST: &str = "mix";
/// A request header that makes `direct` answer 503.
pub const FAIL: &str = "x-bench-fail";
/// A request header that makes `direct` echo [`ECHOED`] request headers as
/// `echo-NAME` response headers (verification only; measured requests do
/// not carry it).
pub const ECHO: &str = "x-bench-echo";
/// The request headers the variants add, echoed back when checking.
pub const ECHOED: [&str; 4] = [
    "x-client-ip",
    "x-request-start",
    "x-tenant-orders",
    "x-forwarded-client",
];
/// Headers whose values hold the time (seconds): compared by shape and
/// closeness to now, not by value.
pub const TIMED: [&str; 1] = ["echo-x-request-start"];
/// Headers whose values hold the client's ephemeral port.
pub const WITH_PORT: [&str; 1] = ["echo-x-forwarded-client"];
/// What `direct` adds to every mix response, which the variants remove.
pub const POWERED_BY: (&str, &str) = ("x-powered-by", "bench");

/// One request of the mix and what it must get.
#[derive(Debug, Clone)]
pub struct MixRequest {
    pub path: &'static str,
    pub headers: &'static [(&'static str, &'static str)],
    /// The route it takes (the variants answer it as `x-route`).
    pub route: &'static str,
    pub status: u16,
}

/// The request mix, sent in this order, round and round.
pub const REQUESTS: &[MixRequest] = &[
    request("/healthz", &[], "health", 200),
    request("/api/v1/users/42", &[("x-canary", "1")], "canary", 200),
    request("/api/v1/users/42?fields=name", &[], "users", 200),
    request(
        "/api/v1/orders?page=2",
        &[("x-tenant", "acme")],
        "orders",
        200,
    ),
    request("/api/v1/orders/7", &[(FAIL, "1")], "orders", 503),
    request("/api/v1/items/12345", &[], "item", 200),
    request("/api/v1/items/abc", &[], "default", 200),
    request(
        "/api/v2/search?q=envoy",
        &[("x-tenant", "globex")],
        "v2",
        200,
    ),
    request("/login", &[], "login", 200),
    request("/static/app.js", &[], "static", 200),
    request("/admin/users", &[("x-tenant", "acme")], "admin", 200),
    request("/admin/users", &[], "default", 200),
];

const fn request(
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    route: &'static str,
    status: u16,
) -> MixRequest {
    MixRequest {
        path,
        headers,
        route,
        status,
    }
}

fn add(key: &str, value: &str) -> Value {
    json!({"header": {"key": key, "value": value}})
}

fn overwrite(key: &str, value: &str) -> Value {
    json!({"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"})
}

/// A route that names itself in `x-route`, plus `fields`.
fn route(name: &str, matcher: Value, mut fields: Value) -> Value {
    let adds = fields
        .get_mut("response_headers_to_add")
        .and_then(Value::as_array_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut response = vec![add("x-route", name)];
    response.extend(adds);
    let mut route = json!({"name": name, "match": matcher, "response_headers_to_add": response});
    if let (Some(route), Some(fields)) = (route.as_object_mut(), fields.as_object()) {
        for (key, value) in fields
            .iter()
            .filter(|(key, _)| *key != "response_headers_to_add")
        {
            route.insert(key.clone(), value.clone());
        }
    }
    route
}

/// The filter's configuration: the one statement of the scenario.
pub fn filter_configuration() -> Value {
    json!({
        "request_headers_to_add": [
            overwrite("x-client-ip", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
            add("x-request-start", "t=%START_TIME(%s)%"),
        ],
        "response_headers_to_add": [add("x-tenant", "%REQ(x-tenant)%")],
        "response_headers_to_remove": [POWERED_BY.0],
        "routes": [
            route("health", json!({"path": "/healthz"}),
                json!({"response_headers_to_add": [add("cache-control", "no-cache")]})),
            route("canary",
                json!({"prefix": "/api/",
                       "headers": [{"name": "x-canary", "string_match": {"exact": "1"}}]}),
                json!({})),
            route("users", json!({"prefix": "/api/v1/users"}), json!({})),
            route("orders", json!({"prefix": "/api/v1/orders"}),
                json!({"request_headers_to_add": [add("x-tenant-orders", "orders/%REQ(x-tenant)%")]})),
            route("item", json!({"safe_regex": {"regex": "/api/v1/items/[0-9]+"}}), json!({})),
            route("v2", json!({"prefix": "/api/v2/"}),
                json!({"response_headers_to_add": [add("x-request-path", "%REQ(:path)%")]})),
            route("login", json!({"path": "/login"}), json!({})),
            route("static", json!({"prefix": "/static/"}),
                json!({"response_headers_to_add": [add("cache-control", "public, max-age=3600")]})),
            route("admin",
                json!({"prefix": "/admin", "headers": [{"name": "x-tenant", "present_match": true}]}),
                json!({"request_headers_to_add": [add("x-forwarded-client", "%DOWNSTREAM_REMOTE_ADDRESS%")]})),
            route("default", json!({"prefix": "/"}), json!({})),
        ],
        "response_rules": [
            {"status": ["5xx"], "response_headers_to_add": [overwrite("cache-control", "no-store")]}
        ]
    })
}

/// Header fields a route and a `RouteConfiguration` share with the filter.
const HEADER_FIELDS: [&str; 4] = [
    "request_headers_to_add",
    "response_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_remove",
];

/// Envoy's `RouteConfiguration` for the scenario: every route goes to
/// `cluster`, with the route's header fields; the top level's fields sit on
/// the route configuration (the outermost level, as in the filter).
pub fn native_route_config(config: &Value, cluster: &str) -> Result<Value> {
    let mut routes = Vec::new();
    for route in config["routes"]
        .as_array()
        .context("the mix has no routes")?
    {
        let mut native = json!({
            "name": route["name"],
            "match": route["match"],
            "route": {"cluster": cluster},
        });
        copy_header_fields(route, &mut native);
        routes.push(native);
    }
    let mut native = json!({
        "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}],
    });
    copy_header_fields(config, &mut native);
    Ok(native)
}

fn copy_header_fields(from: &Value, to: &mut Value) {
    for field in HEADER_FIELDS {
        if let Some(value) = from.get(field) {
            to[field] = value.clone();
        }
    }
}

/// The `http_filters` entries (JSON objects) that do what the route table
/// cannot: each top-level response rule on a status class (`5xx`) becomes
/// Envoy's composite filter, matching `:status` on the response and running
/// `header_mutation` with the rule's additions.
pub fn native_filters(config: &Value) -> Result<Vec<Value>> {
    let mut filters = Vec::new();
    let rules = config["response_rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (index, rule) in rules.iter().enumerate() {
        let classes: Vec<&str> = rule["status"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let [class] = classes.as_slice() else {
            bail!("mix response rule {index}: the native form takes one status class");
        };
        let Some(digit) = class.strip_suffix("xx") else {
            bail!("mix response rule {index}: `{class}` is not a status class such as 5xx");
        };
        let appends: Vec<Value> = rule["response_headers_to_add"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|add| json!({"append": add}))
            .collect();
        filters.push(json!({
            "name": format!("status-{class}"),
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher",
                "extension_config": {
                    "name": "composite",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.composite.v3.Composite"}
                },
                "xds_matcher": {"matcher_list": {"matchers": [{
                    "predicate": {"single_predicate": {
                        "input": {"name": "status", "typed_config": {
                            "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpResponseHeaderMatchInput",
                            "header_name": ":status"
                        }},
                        "value_match": {"prefix": digit}
                    }},
                    "on_match": {"action": {"name": format!("on-{class}"), "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.composite.v3.ExecuteFilterAction",
                        "typed_config": {"name": "header-mutation", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                            "mutations": {"response_mutations": appends}
                        }}
                    }}}
                }]}}
            }
        }));
    }
    Ok(filters)
}

/// The `direct` listener's virtual host for mix requests: 503 on [`FAIL`],
/// the echoed headers on [`ECHO`], and [`POWERED_BY`] on every answer.
pub fn direct_virtual_host() -> Value {
    let echoes: Vec<Value> = ECHOED
        .iter()
        .map(|name| add(&format!("echo-{name}"), &format!("%REQ({name})%")))
        .collect();
    let present = |name: &str| json!({"name": name, "present_match": true});
    let answer = |headers: Vec<Value>, status: u16, echo: bool| {
        let mut route = json!({
            "match": {"prefix": "/", "headers": headers},
            "direct_response": {"status": status},
        });
        if echo {
            route["response_headers_to_add"] = json!(echoes);
        }
        route
    };
    json!({
        "name": "mix",
        "domains": [HOST],
        "response_headers_to_add": [add(POWERED_BY.0, POWERED_BY.1)],
        "routes": [
            answer(vec![present(FAIL), present(ECHO)], 503, true),
            answer(vec![present(FAIL)], 503, false),
            answer(vec![present(ECHO)], 200, true),
            answer(vec![], 200, false),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_ten_routes_six_formatted_rules_a_removal_and_a_5xx_rule() {
        let config = filter_configuration();
        let text = config.to_string();
        assert_eq!(config["routes"].as_array().unwrap().len(), 10);
        let formatted = text.matches("%REQ(").count()
            + text.matches("%START_TIME").count()
            + text.matches("%DOWNSTREAM_REMOTE_ADDRESS").count();
        assert_eq!(formatted, 6);
        assert_eq!(
            config["response_headers_to_remove"],
            json!(["x-powered-by"])
        );
        assert_eq!(config["response_rules"][0]["status"], json!(["5xx"]));
    }

    #[test]
    fn offline_the_filter_sends_each_request_of_the_mix_down_its_route() {
        use header_filter::format::Side;
        use header_filter::offline::MemoryStream;
        let bytes = filter_configuration().to_string().into_bytes();
        let plan = header_filter::Plan::from_json(&bytes).unwrap();
        for request in REQUESTS {
            let mut headers = vec![
                (":path", request.path),
                (":method", "GET"),
                (":authority", HOST),
            ];
            headers.extend(request.headers.iter().copied());
            let mut stream = MemoryStream::with_request(&headers);
            let status = request.status.to_string();
            stream.respond(&[(":status", status.as_str()), POWERED_BY]);
            stream.run(&plan, true);
            assert_eq!(
                stream.values(Side::Response, "x-route"),
                [request.route],
                "{}",
                request.path
            );
            assert!(stream.values(Side::Response, POWERED_BY.0).is_empty());
            let no_store = stream.values(Side::Response, "cache-control") == ["no-store"];
            assert_eq!(no_store, request.status >= 500, "{}", request.path);
        }
    }

    #[test]
    fn every_route_of_the_mix_is_taken_and_every_request_names_a_route() {
        let config = filter_configuration();
        let names: Vec<&str> = config["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for name in &names {
            assert!(
                REQUESTS.iter().any(|r| r.route == *name),
                "{name} is never taken"
            );
        }
        for request in REQUESTS {
            assert!(names.contains(&request.route), "{}", request.route);
        }
    }

    #[test]
    fn native_form_keeps_each_route_and_puts_the_top_level_on_the_route_configuration() {
        let config = filter_configuration();
        let native = native_route_config(&config, "direct").unwrap();
        let routes = native["virtual_hosts"][0]["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 10);
        assert!(routes.iter().all(|r| r["route"]["cluster"] == "direct"));
        assert_eq!(
            routes[3]["request_headers_to_add"],
            config["routes"][3]["request_headers_to_add"]
        );
        assert_eq!(
            native["response_headers_to_remove"],
            json!(["x-powered-by"])
        );
        assert!(native.get("routes").is_none() && native.get("response_rules").is_none());
        let filters = native_filters(&config).unwrap();
        assert_eq!(filters.len(), 1);
        let text = filters[0].to_string();
        assert!(text.contains(r#""value_match":{"prefix":"5"}"#), "{text}");
        assert!(text.contains("no-store"), "{text}");
    }
}
