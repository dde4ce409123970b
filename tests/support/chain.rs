//! Helpers for the build → publish → fetch → load chain tests and the
//! manifest golden tests: running the `extpack` binary, and the LDS file.
//! Envoy configs come from [`crate::envoy_yaml`] (re-exported here).
//!
//! Nothing here mocks anything: `extpack` is the real binary, the configs go
//! to a real Envoy.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::paths;

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
