//! Helpers for the build → publish → fetch → load chain tests and the
//! manifest golden tests: running the `extpack` binary, and the LDS file.
//! Envoy configs come from [`crate::envoy_yaml`] (re-exported here).
//!
//! Nothing here mocks anything: `extpack` is the real binary, the configs go
//! to a real Envoy.

use std::path::Path;

pub use crate::extpack::{extpack, Run};

/// The `path` argument as a `&str` for command lines.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

pub use crate::envoy_yaml::{
    bootstrap_yaml, listener_yaml, local_wasm_filter_yaml, static_cluster_yaml,
};

/// A file-based LDS resource file (`DiscoveryResponse` YAML) holding one
/// listener from [`listener_yaml`].
pub fn lds_yaml(listener: &str) -> String {
    format!(
        "resources:\n  - \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n{listener}"
    )
}
