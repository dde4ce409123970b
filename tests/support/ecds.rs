//! The header filter delivered as an Istio sidecar gets it: only through
//! ECDS (`config_discovery` on the HTTP filter), here from a file that
//! Envoy watches instead of Istio's ADS stream. Everything else is what
//! istiod and the pilot-agent put in the resource (see `tests/ecds_envoy.rs`
//! for the Istio sources): the `TypedExtensionConfig` of an
//! `envoy.extensions.filters.http.wasm.v3.Wasm`, the plugin configuration a
//! `google.protobuf.StringValue` of the JSON, `failure_policy` from
//! `failStrategy`, no `vm_id`, the V8 runtime, the module as a local file.
//!
//! An update is written as a new file in the watched directory and renamed
//! over the watched file (`path_config_source.watched_directory` reloads on
//! a move into the directory), so Envoy never reads half a file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::envoy_yaml;
use crate::paths::{self, TempDir};
use crate::{render, Envoy, StartError};

/// The ECDS resource and HTTP filter name Istio gives a `WasmPlugin`
/// `bookinfo/header-filter` (`extensions.istio.io/wasmplugin/` + namespace
/// `.` name), as in `manifests/wasmplugin.yaml`.
pub const RESOURCE_NAME: &str = "extensions.istio.io/wasmplugin/bookinfo.header-filter";
/// `PluginConfig.name`: namespace `.` name.
pub const PLUGIN_NAME: &str = "bookinfo.header-filter";
/// `PluginConfig.root_id`: the WasmPlugin's `pluginName`.
pub const ROOT_ID: &str = "header-filter";
/// The listener carrying the filter.
pub const LISTENER: &str = "ecds";

const WATCHED_FILE: &str = "ecds.json";
const POLL: Duration = Duration::from_millis(5);

/// Istio's `failStrategy`, and the `failure_policy` istiod writes for it
/// (Istio 1.25+; every Envoy from 1.36 on has the field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailStrategy {
    /// `FAIL_CLOSE`, the WasmPlugin default: `FAIL_CLOSED`.
    FailClose,
    /// `FAIL_OPEN`: `FAIL_OPEN`.
    FailOpen,
    /// `FAIL_RELOAD`: `FAIL_RELOAD`.
    FailReload,
}

impl FailStrategy {
    /// Envoy's `PluginConfig.failure_policy` value.
    pub fn failure_policy(self) -> &'static str {
        match self {
            FailStrategy::FailClose => "FAIL_CLOSED",
            FailStrategy::FailOpen => "FAIL_OPEN",
            FailStrategy::FailReload => "FAIL_RELOAD",
        }
    }
}

/// The `envoy.extensions.filters.http.wasm.v3.Wasm` istiod builds for the
/// plugin (after the pilot-agent rewrote the remote image to a local file
/// and stripped its `ISTIO_META_*` environment variables), carrying
/// `config_json` as a `StringValue`.
pub fn wasm_filter_config(config_json: &str, strategy: FailStrategy) -> serde_json::Value {
    wasm_filter_config_of(&paths::filter_wasm(), config_json, strategy)
}

fn wasm_filter_config_of(
    module: &Path,
    config_json: &str,
    strategy: FailStrategy,
) -> serde_json::Value {
    serde_json::json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": PLUGIN_NAME,
            "root_id": ROOT_ID,
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": config_json,
            },
            "vm_config": {
                "runtime": "envoy.wasm.runtime.v8",
                "code": { "local": { "filename": module.display().to_string() } },
            },
            "failure_policy": strategy.failure_policy(),
        }
    })
}

/// The ECDS file: a `DiscoveryResponse` with `version_info` and the one
/// `TypedExtensionConfig`.
pub fn discovery_response(version: &str, typed_config: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "version_info": version,
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": RESOURCE_NAME,
            "typed_config": typed_config,
        }]
    })
}

/// How the Envoy under test is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// Worker threads (Istio's sidecar default is 2).
    pub concurrency: u32,
    pub strategy: FailStrategy,
    /// `config_discovery.default_config`: the filter configuration JSON
    /// Envoy uses until a good ECDS resource arrives (Istio sets none).
    pub default_config: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 2,
            strategy: FailStrategy::FailClose,
            default_config: None,
        }
    }
}

/// An Envoy whose only header filter comes over file-based ECDS.
pub struct EcdsEnvoy {
    // Declared first: dropped (stopped) before the watched dir goes.
    envoy: Envoy,
    dir: TempDir,
    strategy: FailStrategy,
    serial: std::cell::Cell<u64>,
}

impl EcdsEnvoy {
    /// Writes `(version, config_json)` as the first ECDS resource, then
    /// starts Envoy routing everything to `upstream_port`.
    pub fn start(
        upstream_port: u16,
        version: &str,
        config_json: &str,
        options: &Options,
    ) -> Result<EcdsEnvoy, StartError> {
        let dir = paths::temp_dir();
        let watched = dir.path().join(WATCHED_FILE);
        let first = discovery_response(version, &wasm_filter_config(config_json, options.strategy));
        std::fs::write(&watched, first.to_string()).expect("writing the first ECDS file");
        let yaml = bootstrap(dir.path(), &watched, upstream_port, options);
        let envoy = Envoy::builder()
            .concurrency(options.concurrency)
            .start(&yaml)?;
        Ok(EcdsEnvoy {
            envoy,
            dir,
            strategy: options.strategy,
            serial: std::cell::Cell::new(0),
        })
    }

    pub fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.envoy.listener(LISTENER)
    }

    /// Pushes `config_json` as `version`: a new file in the watched
    /// directory, renamed over the watched one.
    pub fn push(&self, version: &str, config_json: &str) {
        self.push_typed(version, &wasm_filter_config(config_json, self.strategy));
    }

    /// Pushes any `typed_config` as `version`.
    pub fn push_typed(&self, version: &str, typed_config: &serde_json::Value) {
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        let staged = self.dir.path().join(format!(".staged-{serial}.json"));
        std::fs::write(
            &staged,
            discovery_response(version, typed_config).to_string(),
        )
        .expect("writing a staged ECDS file");
        std::fs::rename(&staged, self.dir.path().join(WATCHED_FILE))
            .expect("renaming the staged ECDS file over the watched one");
    }

    /// An ECDS subscription stat of this filter, by its last name part
    /// (`update_rejected`, `update_success`, `config_reload`...): Envoy's
    /// `extension_config_discovery.http_filter.<resource name>.<stat>`.
    pub fn ecds_stat(&self, stat: &str) -> u64 {
        let name = ecds_stat_name(stat);
        self.envoy
            .stat(&name)
            .unwrap_or_else(|| panic!("envoy has no stat {name}"))
    }

    /// The `version_text` of the applied ECDS resource (a text gauge: not
    /// in [`Envoy::stat`]); empty before the first accepted one.
    pub fn version_text(&self) -> String {
        let name = ecds_stat_name("version_text");
        let text = self.envoy.admin_get(&format!(
            "/stats?filter={}",
            super::envoy::percent_encode(&format!("{}$", name.replace('.', "\\.")))
        ));
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .map(|value| value.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("no {name} in /stats: {text}"))
    }

    /// Polls until `version_text` is `version`; the time it took, or
    /// `None` after `timeout`.
    pub fn wait_version(&self, version: &str, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if self.version_text() == version {
                return Some(start.elapsed());
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls until ECDS stat `stat` reaches `at_least`; its value then, or
    /// the last value seen after `timeout`.
    pub fn wait_stat(&self, stat: &str, at_least: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.ecds_stat(stat);
            if value >= at_least || Instant::now() >= deadline {
                return value;
            }
            std::thread::sleep(POLL);
        }
    }

    /// What admin `/config_dump` shows for the filter:
    /// `(version_info, plugin configuration string)`.
    pub fn dumped(&self) -> (String, String) {
        let json: serde_json::Value =
            serde_json::from_str(&self.envoy.admin_get("/config_dump?resource=ecds_filters"))
                .expect("/config_dump is JSON");
        let configs = json["configs"].as_array().cloned().unwrap_or_default();
        let ours = configs
            .iter()
            .find(|c| c["ecds_filter"]["name"] == RESOURCE_NAME)
            .unwrap_or_else(|| panic!("no ECDS filter {RESOURCE_NAME} in /config_dump: {json}"));
        let version = ours["version_info"].as_str().unwrap_or("").to_string();
        let config = ours["ecds_filter"]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (version, config)
    }
}

/// `extension_config_discovery.http_filter.<resource name>.<stat>`.
pub fn ecds_stat_name(stat: &str) -> String {
    format!("extension_config_discovery.http_filter.{RESOURCE_NAME}.{stat}")
}

/// The bootstrap: a node (ECDS needs one), admin, the `ecds` listener with
/// the filter by `config_discovery` before the router, the `echo` cluster.
fn bootstrap(dir: &Path, watched: &Path, upstream_port: u16, options: &Options) -> String {
    // Istio: `ConfigSource{ads, initial_fetch_timeout: 0s, V3}` and type
    // URLs Wasm and RBAC (the agent's fallback when a module cannot be
    // fetched); the ADS source is the file here.
    let default_config = options
        .default_config
        .as_deref()
        .map(|config| {
            format!(
                "\n              default_config: {}",
                wasm_filter_config(config, options.strategy)
            )
        })
        .unwrap_or_default();
    let filter = render(
        r#"          - name: {{NAME}}
            config_discovery:
              config_source:
                path_config_source:
                  path: "{{WATCHED}}"
                  watched_directory: { path: "{{DIR}}" }
                initial_fetch_timeout: 0s
                resource_api_version: V3
              type_urls:
              - type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              - type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC{{DEFAULT}}"#,
        &[
            ("NAME", &RESOURCE_NAME),
            ("WATCHED", &watched.display()),
            ("DIR", &dir.display()),
            ("DEFAULT", &default_config),
        ],
    );
    let listener = envoy_yaml::listener_yaml(LISTENER, &filter);
    format!(
        "node: {{ id: \"sidecar~127.0.0.1~productpage.bookinfo~bookinfo.svc.cluster.local\", cluster: productpage.bookinfo }}\n{}",
        envoy_yaml::bootstrap_yaml(&[&listener], upstream_port, "")
    )
}
