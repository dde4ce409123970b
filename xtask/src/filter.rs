//! `cargo xtask build-filter`: builds the Wasm module and owns its final path.
//!
//! The build is a pipeline (compile, then post-link steps such as export
//! pruning) whose last output is [`filter_wasm_path`]; everything else (the
//! test job, the e2e tests via `HEADER_FILTER_WASM`) reads that one path.

use crate::{command, paths};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

const TARGET: &str = "wasm32-wasip1";
const PACKAGE: &str = "header-filter";
const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-multivalue",
    "--enable-reference-types",
];

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

/// The built module with the C allocator still exported, for the test
/// that Envoy's preferred `malloc` and the SDK's frees are one allocator.
pub fn with_malloc_path() -> PathBuf {
    paths::target_dir().join("header_filter.with-malloc.wasm")
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
    let xtask = std::env::current_exe().context("finding the xtask binary")?;
    command::streamed(
        command::cargo()
            .args(["build", "--release", "--target", TARGET, "-p", PACKAGE])
            .current_dir(paths::repo_root())
            // This binary links the module (crate::link): rust-lld without
            // the SDK's exports.
            .env("CARGO_TARGET_WASM32_WASIP1_LINKER", xtask)
            .env(crate::link::LINKER_ENV, crate::link::rust_lld()?)
            .env(
                "CARGO_PROFILE_RELEASE_STRIP",
                if keep_names() { "false" } else { "true" },
            ),
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

/// Post-link steps: export pruning, then binaryen's size optimizer over
/// what is left. Takes cargo's output and returns [`filter_wasm_path`].
fn post_link(compiled: PathBuf) -> Result<PathBuf> {
    let final_path = filter_wasm_path();
    let pruned_path = final_path.with_extension("pruned.wasm");
    let pruned = crate::prune::prune(&compiled, &pruned_path, false)?;
    say!(
        "build-filter: dropped {} unused exports ({} -> {} bytes)",
        pruned.dropped.len(),
        pruned.size_before,
        pruned.size_after
    );
    wasm_opt(&pruned_path, &final_path)?;
    std::fs::remove_file(&pruned_path).ok();
    // The test variant that keeps `malloc` exported (see prune::prune).
    crate::prune::prune(&compiled, &with_malloc_path(), true)?;
    Ok(final_path)
}

/// `XTASK_KEEP_NAMES=1`: the module keeps its function names (the `name`
/// section), for profiling it outside Envoy; the code is the same.
fn keep_names() -> bool {
    std::env::var_os("XTASK_KEEP_NAMES").is_some_and(|v| v == "1")
}

/// `wasm-opt -Oz`: after pruning, LLVM's output still has room binaryen
/// finds (about 17 %: merged identical functions, packed data segments).
/// Traps are kept as traps (no `--traps-never-happen`): a bug must stop the
/// VM, not become undefined behaviour.
fn wasm_opt(input: &Path, output: &Path) -> Result<()> {
    let tmp = output.with_extension("wasm.tmp");
    let mut cmd = std::process::Command::new("wasm-opt");
    cmd.arg("-Oz")
        .arg("--converge")
        // What rustc's wasm32-wasip1 target emits (walrus drops the
        // target_features section binaryen would read them from).
        .args(WASM_FEATURES)
        .args(if keep_names() {
            &["--strip-producers", "--debuginfo"][..]
        } else {
            &["--strip-debug", "--strip-producers"][..]
        })
        .arg(input)
        .arg("-o")
        .arg(&tmp);
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => bail!("wasm-opt failed ({status}) on {}", input.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("wasm-opt not found: install binaryen (`cargo xtask setup` does it on Debian)")
        }
        Err(e) => return Err(e).context("running wasm-opt"),
    }
    std::fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))
}
