//! Where the tests find their inputs: the repository, the built filter
//! module, the extpack binary and Envoy, plus scratch directories.
//!
//! `cargo xtask test` sets `HEADER_FILTER_WASM`, `EXTPACK_BIN` and
//! `ENVOY_BIN`; without them the conventional build locations are used. A
//! missing input panics with the command that builds it: a test that cannot
//! find what it tests must fail, never skip.

use std::path::{Path, PathBuf};

pub use tempfile::TempDir;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join("target"),
    }
}

/// The filter module: `$HEADER_FILTER_WASM`, else what `cargo xtask
/// build-filter` writes (`target/header_filter.wasm`, pruned).
///
/// # Panics
/// When the file does not exist, saying how to build it.
pub fn filter_wasm() -> PathBuf {
    let path =
        env_path("HEADER_FILTER_WASM").unwrap_or_else(|| target_dir().join("header_filter.wasm"));
    assert!(
        path.is_file(),
        "filter module {} is missing: run `cargo xtask build-filter` (or `cargo xtask test`)",
        path.display()
    );
    path
}

/// The packager CLI: `$EXTPACK_BIN`, else `target/debug/extpack`.
///
/// # Panics
/// When the file does not exist, saying how to build it.
pub fn extpack_bin() -> PathBuf {
    let path =
        env_path("EXTPACK_BIN").unwrap_or_else(|| target_dir().join("debug").join("extpack"));
    assert!(
        path.is_file(),
        "extpack binary {} is missing: run `cargo build -p extpack` (or `cargo xtask test`)",
        path.display()
    );
    path
}

/// The Envoy binary: `$ENVOY_BIN`, else the real ELF inside the project's
/// venv (`.venv/lib/python3.*/site-packages/envoy/_bin/envoy`).
pub fn envoy_bin() -> Result<PathBuf, String> {
    if let Some(path) = env_path("ENVOY_BIN") {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "ENVOY_BIN={} does not exist: run `cargo xtask setup`",
                path.display()
            ))
        };
    }
    let venv_lib = repo_root().join(".venv").join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&venv_lib)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python"))
        .map(|entry| entry.path().join("site-packages/envoy/_bin/envoy"))
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        format!(
            "no envoy binary: ENVOY_BIN is unset and {}/python3.*/site-packages/envoy/_bin/envoy is missing; run `cargo xtask setup`",
            venv_lib.display()
        )
    })
}

/// A fresh scratch directory, deleted when the returned guard drops.
///
/// # Panics
/// When the system temp dir is not writable.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("e2e-")
        .tempdir()
        .expect("creating a temp dir under the system temp dir")
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|value| !value.is_empty())
        .map(|value| repo_root().join(value))
}
