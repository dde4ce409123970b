//! Helpers for the build → publish → fetch → load chain tests and the
//! manifest golden tests: running the `extpack` binary, and an Envoy
//! bootstrap with one HTTP listener whose `http_filters` the test supplies.
//!
//! Nothing here mocks anything: `extpack` is the real binary, the configs go
//! to a real Envoy.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::paths;
use crate::template::render;

/// The outcome of one `extpack` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns the run.
    ///
    /// # Panics
    /// When extpack exited non-zero, showing its output.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "extpack failed: {}{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `extpack` with `SOURCE_DATE_EPOCH=0` (reproducible digests) and no
/// Docker credentials from the machine.
pub fn extpack(args: &[&str]) -> Run {
    let out = Command::new(paths::extpack_bin())
        .args(args)
        .env("SOURCE_DATE_EPOCH", "0")
        .env("DOCKER_CONFIG", "/nonexistent-extpack-test")
        .stdin(Stdio::null())
        .output()
        .expect("running extpack");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `path` argument as a `&str` for command lines.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// One HTTP connection manager listener (`name`) routing everything to the
/// `echo` cluster, with `http_filters` (YAML list items, already indented for
/// their place) before the router. The text is a list item's body indented
/// by four spaces: put it after `  - ` (see [`bootstrap_yaml`], [`lds_yaml`]).
pub fn listener_yaml(name: &str, http_filters: &str) -> String {
    render(
        r#"    name: {{NAME}}
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {{NAME}}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: echo }
          http_filters:
{{FILTERS}}
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
"#,
        &[("NAME", &name), ("FILTERS", &http_filters)],
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
    render(
        r#"          - name: header-filter
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: header-filter
                root_id: header-filter
                failure_policy: FAIL_CLOSED
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: { local: { filename: "{{WASM}}" } }
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {{CONFIG}}"#,
        &[
            ("WASM", &module.display()),
            // A JSON string literal is a valid YAML double-quoted scalar.
            ("CONFIG", &serde_json::to_string(config_json).unwrap()),
        ],
    )
}

/// A whole bootstrap: admin on port 0, the static `listener` (from
/// [`listener_yaml`], or none) and the `echo` cluster plus `extra_clusters`.
pub fn bootstrap_yaml(listener: Option<&str>, upstream_port: u16, extra_clusters: &str) -> String {
    let listeners = listener
        .map(|l| format!("  listeners:\n  - {}", l.trim_start()))
        .unwrap_or_default();
    format!(
        "admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}\n\
         static_resources:\n{listeners}  clusters:\n{}{extra_clusters}",
        static_cluster_yaml("echo", upstream_port)
    )
}

/// A file-based LDS resource file (`DiscoveryResponse` YAML) holding one
/// listener from [`listener_yaml`].
pub fn lds_yaml(listener: &str) -> String {
    format!(
        "resources:\n  - \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n{listener}"
    )
}
