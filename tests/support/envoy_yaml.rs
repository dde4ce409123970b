//! Envoy configuration pieces the end-to-end tests assemble: a bootstrap
//! with admin on port 0, HTTP listeners routing to the `echo` cluster, static
//! clusters on 127.0.0.1, and the header filter's `http_filters` entry.
//! One place, so every test speaks the same Envoy config.

use std::path::Path;

use crate::render;

/// One HTTP connection manager listener (`name`) routing everything to the
/// `echo` cluster, with `http_filters` (YAML list items, already indented for
/// their place) before the router. The text is a list item's body indented
/// by four spaces: put it after `  - ` (see [`bootstrap_yaml`], [`lds_yaml`]).
pub fn listener_yaml(name: &str, http_filters: &str) -> String {
    route_listener_yaml(name, http_filters, "")
}

/// [`listener_yaml`] with extra fields on its one route (YAML lines, e.g.
/// Envoy's own `response_headers_to_add: [...]`, without indentation).
pub fn route_listener_yaml(name: &str, http_filters: &str, route_fields: &str) -> String {
    let route_fields: String = route_fields
        .lines()
        .map(|line| format!("\n                {line}"))
        .collect();
    let route_config = render(
        r#"
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: echo }{{ROUTE_FIELDS}}"#,
        &[("ROUTE_FIELDS", &route_fields)],
    );
    http_listener_yaml(name, http_filters, &route_config)
}

/// [`listener_yaml`] with a whole route table of the test's own: Envoy's
/// `RouteConfiguration` as JSON (a JSON object is a YAML flow mapping), its
/// routes pointing at `echo` or another cluster of the bootstrap.
pub fn route_config_listener_yaml(
    name: &str,
    http_filters: &str,
    route_config: &serde_json::Value,
) -> String {
    http_listener_yaml(name, http_filters, &format!(" {route_config}"))
}

/// The listener around a `route_config` (the YAML text after the key).
fn http_listener_yaml(name: &str, http_filters: &str, route_config: &str) -> String {
    render(
        r#"    name: {{NAME}}
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {{NAME}}
          route_config:{{ROUTE_CONFIG}}
          http_filters:
{{FILTERS}}
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
"#,
        &[
            ("NAME", &name),
            ("FILTERS", &http_filters),
            ("ROUTE_CONFIG", &route_config),
        ],
    )
}

/// A STATIC cluster `name` with one endpoint on 127.0.0.1.
pub fn static_cluster_yaml(name: &str, port: u16) -> String {
    render(
        r#"  - name: "{{NAME}}"
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: "{{NAME}}"
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{PORT}} } } }
"#,
        &[("NAME", &name), ("PORT", &port)],
    )
}

/// The Wasm filter's `http_filters` entry loading a local module with a
/// configuration string.
pub fn local_wasm_filter_yaml(module: &Path, config_json: &str) -> String {
    wasm_filter_yaml(module, config_json, "FAIL_CLOSED")
}

/// [`local_wasm_filter_yaml`] with another `failure_policy`.
pub fn wasm_filter_yaml(module: &Path, config_json: &str, failure_policy: &str) -> String {
    render(
        r#"          - name: header-filter
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: header-filter
                root_id: header-filter
                failure_policy: {{POLICY}}
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: { local: { filename: "{{WASM}}" } }
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {{CONFIG}}"#,
        &[
            ("POLICY", &failure_policy),
            ("WASM", &module.display()),
            // A JSON string literal is a valid YAML double-quoted scalar.
            ("CONFIG", &serde_json::to_string(config_json).unwrap()),
        ],
    )
}

/// Envoy's own `envoy.filters.http.header_mutation` filter entry, with
/// `mutations` (a JSON object: Envoy's `Mutations`, as this filter's
/// `{"mutations": ...}` form takes it).
pub fn header_mutation_filter_yaml(mutations_json: &str) -> String {
    render(
        r#"          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations: {{MUTATIONS}}"#,
        // JSON is YAML's flow style.
        &[("MUTATIONS", &mutations_json)],
    )
}

/// A whole bootstrap: admin on port 0, the static `listeners` (from
/// [`listener_yaml`]; none for LDS) and the `echo` cluster plus
/// `extra_clusters`.
pub fn bootstrap_yaml(listeners: &[&str], upstream_port: u16, extra_clusters: &str) -> String {
    let listeners = if listeners.is_empty() {
        String::new()
    } else {
        let items: String = listeners
            .iter()
            .map(|l| format!("  - {}", l.trim_start()))
            .collect();
        format!("  listeners:\n{items}")
    };
    format!(
        "admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}\n\
         static_resources:\n{listeners}  clusters:\n{}{extra_clusters}",
        static_cluster_yaml("echo", upstream_port)
    )
}

/// [`local_wasm_filter_yaml`] whose VM sees `host_env_keys` of Envoy's own
/// environment (`vm_config.environment_variables`), for `%ENVIRONMENT(..)%`.
pub fn wasm_filter_with_env_yaml(
    module: &Path,
    config_json: &str,
    host_env_keys: &[&str],
) -> String {
    let base = local_wasm_filter_yaml(module, config_json);
    let keys = serde_json::to_string(host_env_keys).unwrap();
    base.replace(
        "                  runtime: envoy.wasm.runtime.v8\n",
        &format!(
            "                  runtime: envoy.wasm.runtime.v8\n                  environment_variables: {{ host_env_keys: {keys} }}\n"
        ),
    )
}

/// Envoy's own `envoy.filters.http.header_mutation` filter appending each
/// `(name, value)` to the request or the response, `keep_empty_value` set
/// so an empty rendering shows as an empty header.
pub fn header_mutation_yaml(request: &[(String, String)], response: &[(String, String)]) -> String {
    let list = |items: &[(String, String)]| -> String {
        items
            .iter()
            .map(|(name, value)| {
                format!(
                    "\n                - append: {{ header: {{ key: {}, value: {} }}, keep_empty_value: true }}",
                    serde_json::to_string(name).unwrap(),
                    serde_json::to_string(value).unwrap()
                )
            })
            .collect()
    };
    format!(
        r#"          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:{}
                response_mutations:{}
"#,
        if request.is_empty() {
            " []".to_string()
        } else {
            list(request)
        },
        if response.is_empty() {
            " []".to_string()
        } else {
            list(response)
        },
    )
}
