//! The filter's linker: `build-filter` runs cargo with this xtask binary as
//! the wasm32-wasip1 linker, and it runs Rust's own `rust-lld` with the
//! arguments rustc gave, less the SDK's `--export proxy_on_*` (but
//! `proxy_on_memory_allocate`).
//!
//! Why: the module exports its own entry points (see filter/src/proxy.rs
//! and [`crate::prune`]). The SDK's exports are link roots, so `wasm-ld
//! --gc-sections` would keep its whole dispatcher, and with it vtables
//! whose every method lands in the function table, where no later pass can
//! remove them: 21 KB of a module Envoy loads into every worker.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The environment variable that makes xtask act as the linker; its value
/// is the real `rust-lld`.
pub const LINKER_ENV: &str = "XTASK_WASM_LINKER";

/// The SDK export the module keeps (the host allocates in the VM with it).
const KEPT: &str = "proxy_on_memory_allocate";

/// Runs `rust-lld` (at `lld`) with `args`, less the SDK's exports.
pub fn run(lld: &Path, args: Vec<OsString>) -> Result<ExitCode> {
    let args = without_sdk_exports(args);
    let status = Command::new(lld)
        .args(&args)
        .status()
        .with_context(|| format!("could not run {}", lld.display()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => bail!("{} was killed by a signal", lld.display()),
    })
}

fn without_sdk_exports(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        if arg == "--export" {
            if let Some(name) = args.peek().and_then(|n| n.to_str()) {
                if name.starts_with("proxy_on_") && name != KEPT {
                    args.next();
                    continue;
                }
            }
        }
        out.push(arg);
    }
    out
}

/// Rust's own `rust-lld`, as rustup ships it beside the toolchain.
pub fn rust_lld() -> Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = |args: &[&str]| -> Result<String> {
        let out = Command::new(&rustc)
            .args(args)
            .output()
            .context("running rustc to find rust-lld")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let sysroot = output(&["--print", "sysroot"])?;
    let verbose = output(&["-vV"])?;
    let host = verbose
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("rustc -vV names no host")?;
    let lld = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host.trim())
        .join("bin/rust-lld");
    if !lld.is_file() {
        bail!(
            "{} is missing (it comes with the Rust toolchain)",
            lld.display()
        );
    }
    Ok(lld)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sdks_callbacks_lose_their_export() {
        let args: Vec<OsString> = [
            "-flavor",
            "wasm",
            "--export",
            "proxy_on_configure",
            "--export",
            "proxy_on_memory_allocate",
            "--export",
            "header_filter_on_configure",
            "--export",
            "proxy_abi_version_0_2_1",
            "--gc-sections",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let kept: Vec<String> = without_sdk_exports(args)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            kept,
            [
                "-flavor",
                "wasm",
                "--export",
                "proxy_on_memory_allocate",
                "--export",
                "header_filter_on_configure",
                "--export",
                "proxy_abi_version_0_2_1",
                "--gc-sections"
            ]
        );
    }
}
