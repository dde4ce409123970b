//! `cargo xtask build-filter`: builds the Wasm module and owns its final path.
//!
//! The build is a pipeline (compile, then post-link steps such as export
//! pruning) whose last output is [`filter_wasm_path`]; everything else (the
//! test job, the e2e tests via `HEADER_FILTER_WASM`) reads that one path.

use crate::{command, paths};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

const TARGET: &str = "wasm32-wasip1";
const PACKAGE: &str = "header-filter";

/// The module as `cargo build` writes it.
fn cargo_wasm_path() -> PathBuf {
    paths::target_dir()
        .join(TARGET)
        .join("release")
        .join("header_filter.wasm")
}

/// The final artifact: what tests load and the packager packs (cargo's
/// output after [`crate::prune`]).
pub fn filter_wasm_path() -> PathBuf {
    paths::target_dir().join("header_filter.wasm")
}

/// Builds the module, runs the post-link steps and prints the result.
pub fn build_filter() -> Result<PathBuf> {
    let compiled = compile()?;
    let module = post_link(compiled)?;
    let size = std::fs::metadata(&module)
        .with_context(|| format!("reading {}", module.display()))?
        .len();
    say!("build-filter: {} ({size} bytes)", module.display());
    Ok(module)
}

fn compile() -> Result<PathBuf> {
    command::streamed(
        command::cargo()
            .args(["build", "--release", "--target", TARGET, "-p", PACKAGE])
            .current_dir(paths::repo_root()),
    )?;
    let module = cargo_wasm_path();
    if !module.is_file() {
        bail!(
            "cargo built {PACKAGE} but {} is missing; is the crate a cdylib?",
            module.display()
        );
    }
    Ok(module)
}

/// Post-link steps: export pruning. Takes cargo's output and returns
/// [`filter_wasm_path`].
fn post_link(compiled: PathBuf) -> Result<PathBuf> {
    let final_path = filter_wasm_path();
    let pruned = crate::prune::prune(&compiled, &final_path)?;
    say!(
        "build-filter: pruned {} unused proxy_on_* exports ({} -> {} bytes)",
        pruned.dropped.len(),
        pruned.size_before,
        pruned.size_after
    );
    Ok(final_path)
}
