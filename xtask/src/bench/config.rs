//! The bench's Envoy bootstrap: front listeners that differ only in how they
//! do the same header work (three constant response headers, or the
//! realistic scenario of `scenario.rs`), all routing to one `direct`
//! listener (`direct_response`) in the same Envoy.
//!
//! Pure text generation; nothing here starts processes or picks ports.

use super::scenario;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The three response headers every adding listener must produce.
pub const HEADERS: [(&str, &str); 3] = [("x-bench-a", "1"), ("x-bench-b", "2"), ("x-bench-c", "3")];

/// How a front listener adds [`HEADERS`].
#[derive(Debug, Clone)]
pub enum Adds {
    /// Nothing: the baseline every other listener is measured against.
    Nothing,
    /// The route's `response_headers_to_add` (Envoy native).
    Route,
    /// A whole `RouteConfiguration` (JSON) and `http_filters` entries (JSON
    /// objects) before the router: Envoy's native form of a scenario.
    Table {
        route_config: serde_json::Value,
        filters: Vec<serde_json::Value>,
    },
    /// Envoy's Lua filter running this source.
    Lua(String),
    /// A proxy-wasm module (V8), with an optional plugin configuration.
    Wasm {
        module: PathBuf,
        configuration: Option<String>,
    },
}

/// The requests a listener is measured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// `GET /` again and again (the three constant headers).
    Constant,
    /// The realistic scenario's request mix ([`scenario::REQUESTS`]).
    Mix,
}

#[derive(Debug, Clone)]
pub struct Front {
    pub name: String,
    pub adds: Adds,
    pub traffic: Traffic,
}

/// Our filter's configuration for [`HEADERS`] (default append action).
pub fn filter_configuration() -> String {
    let rules: Vec<serde_json::Value> = HEADERS
        .iter()
        .map(|(key, value)| serde_json::json!({"header": {"key": key, "value": value}}))
        .collect();
    serde_json::json!({ "response_headers_to_add": rules }).to_string()
}

/// The whole bootstrap. Front listeners bind port 0 (the real ports come
/// from admin `/listeners`); `direct` binds `direct_port` because the
/// cluster must name it.
pub fn bootstrap(fronts: &[Front], direct_port: u16) -> String {
    let mut yaml = String::from(
        r#"admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
# No stats sinks; a long interval keeps the main thread quiet while counting.
stats_flush_interval: 299s
static_resources:
  listeners:
"#,
    );
    for front in fronts {
        yaml.push_str(&listener(front));
    }
    let _ = write!(
        yaml,
        r#"  - name: direct
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {direct_port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: direct
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200 }}
            - {mix}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: direct
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: direct
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {direct_port} }} }} }}
"#,
        mix = scenario::direct_virtual_host()
    );
    yaml
}

fn listener(front: &Front) -> String {
    let name = &front.name;
    let route_adds = match front.adds {
        Adds::Route => {
            let mut adds = String::from("\n                response_headers_to_add:");
            for (key, value) in HEADERS {
                let _ = write!(
                    adds,
                    "\n                - header: {{ key: {key}, value: \"{value}\" }}\
                     \n                  append_action: APPEND_IF_EXISTS_OR_ADD"
                );
            }
            adds
        }
        _ => String::new(),
    };
    let route_config = match &front.adds {
        Adds::Table { route_config, .. } => format!(" {route_config}"),
        _ => format!(
            r#"
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: direct }}{route_adds}"#
        ),
    };
    let filter = match &front.adds {
        Adds::Nothing | Adds::Route => String::new(),
        Adds::Table { filters, .. } => filters
            .iter()
            .map(|filter| format!("          - {filter}\n"))
            .collect(),
        Adds::Lua(source) => format!(
            r#"          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              default_source_code: {{ inline_string: {} }}
"#,
            quoted(source)
        ),
        Adds::Wasm {
            module,
            configuration,
        } => {
            let configuration = configuration
                .as_ref()
                .map(|json| {
                    format!(
                        "\n                configuration:\
                         \n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\
                         \n                  value: {}",
                        quoted(json)
                    )
                })
                .unwrap_or_default();
            format!(
                r#"          - name: {name}-wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {name}
                root_id: {name}
                failure_policy: FAIL_CLOSED
                vm_config:
                  vm_id: {name}
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: {} }} }}{configuration}
"#,
                quoted(&module.display().to_string())
            )
        }
    };
    format!(
        r#"  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:{route_config}
          http_filters:
{filter}          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
    )
}

/// A YAML double-quoted scalar (a JSON string literal is one).
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_configuration_lists_the_three_headers_with_the_default_action() {
        assert_eq!(
            filter_configuration(),
            r#"{"response_headers_to_add":[{"header":{"key":"x-bench-a","value":"1"}},{"header":{"key":"x-bench-b","value":"2"}},{"header":{"key":"x-bench-c","value":"3"}}]}"#
        );
    }

    #[test]
    fn every_front_routes_to_direct_and_only_route_adds_in_the_route() {
        let fronts = [
            Front {
                name: "none".into(),
                adds: Adds::Nothing,
                traffic: Traffic::Constant,
            },
            Front {
                name: "route".into(),
                adds: Adds::Route,
                traffic: Traffic::Constant,
            },
        ];
        let yaml = bootstrap(&fronts, 4242);
        assert_eq!(yaml.matches("route: { cluster: direct }").count(), 2);
        assert_eq!(yaml.matches("response_headers_to_add:").count(), 1);
        assert_eq!(yaml.matches("port_value: 4242").count(), 2);
        // `direct` serves the mix from its own virtual host.
        assert_eq!(yaml.matches(r#""domains":["mix"]"#).count(), 1);
    }

    #[test]
    fn a_table_front_brings_its_route_configuration_and_filters() {
        let table = Front {
            name: "mix-native".into(),
            adds: Adds::Table {
                route_config: serde_json::json!({"virtual_hosts": []}),
                filters: vec![serde_json::json!({"name": "extra"})],
            },
            traffic: Traffic::Mix,
        };
        let yaml = bootstrap(&[table], 4242);
        assert!(
            yaml.contains(r#"route_config: {"virtual_hosts":[]}"#),
            "{yaml}"
        );
        assert!(yaml.contains(r#"          - {"name":"extra"}"#), "{yaml}");
        assert_eq!(yaml.matches("route: { cluster: direct }").count(), 0);
    }
}
