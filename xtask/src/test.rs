//! `cargo xtask test`: THE test command (README and CI). Sets up the machine,
//! builds the filter and the packager, then runs `cargo test --workspace`
//! with the environment the e2e harness reads.

use crate::{command, filter, paths, setup};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::process::ExitCode;

/// Runs the whole suite; extra arguments go to `cargo test` unchanged and the
/// exit code is cargo test's own.
pub fn run(cargo_test_args: &[String]) -> Result<ExitCode> {
    setup::run()?;
    let module = filter::build_filter()?;
    let extpack = build_extpack()?;

    let envoy = paths::envoy_elf()
        .context("envoy is missing from .venv after setup; run `cargo xtask setup`")?;
    let mut path = vec![paths::venv_bin()];
    if let Some(current) = std::env::var_os("PATH") {
        path.extend(std::env::split_paths(&current));
    }
    let path: OsString = std::env::join_paths(path).context("PATH holds an invalid entry")?;

    let mut cargo_test = command::cargo();
    // Every test binary runs even when one fails, so one run reports all.
    cargo_test.args(["test", "--no-fail-fast"]);
    if !selects_packages(cargo_test_args) {
        cargo_test.arg("--workspace");
    }
    cargo_test
        .args(cargo_test_args)
        .current_dir(paths::repo_root())
        .env("ENVOY_BIN", &envoy)
        .env("HEADER_FILTER_WASM", &module)
        .env("PATH", path);
    cargo_test.env("EXTPACK_BIN", extpack);
    let status = command::status(&mut cargo_test)?;
    match status.code() {
        Some(0) => Ok(ExitCode::SUCCESS),
        Some(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(1))),
        None => bail!("cargo test was killed by a signal"),
    }
}

/// Whether the caller chose packages themselves (`-p e2e`, `--package=x`,
/// `--workspace`); cargo would otherwise let `--workspace` override `-p`.
/// Only arguments before a `--` are cargo's.
fn selects_packages(args: &[String]) -> bool {
    args.iter()
        .take_while(|arg| arg.as_str() != "--")
        .any(|arg| {
            matches!(arg.as_str(), "-p" | "--package" | "--workspace" | "--all")
                || arg.starts_with("--package=")
                || (arg.starts_with("-p") && !arg.starts_with("--"))
        })
}

/// Builds `extpack` (debug: it is fast enough and builds quicker); returns
/// its binary.
pub fn build_extpack() -> Result<std::path::PathBuf> {
    command::streamed(
        command::cargo()
            .args(["build", "-p", "extpack"])
            .current_dir(paths::repo_root()),
    )?;
    Ok(paths::extpack_bin())
}

#[cfg(test)]
mod tests {
    use super::selects_packages;

    #[test]
    fn workspace_is_added_only_when_no_package_is_chosen() {
        let cases: &[(&[&str], bool)] = &[
            (&[], false),
            (&["--test", "harness_smoke"], false),
            (&["-p", "e2e"], true),
            (&["-pe2e"], true),
            (&["--package=e2e"], true),
            (&["--workspace"], true),
            (&["--", "-p"], false),
        ];
        for (args, expected) in cases {
            let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
            assert_eq!(selects_packages(&args), *expected, "{args:?}");
        }
    }
}
