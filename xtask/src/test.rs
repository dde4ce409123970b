//! `cargo xtask test`: THE test command (README and CI). Sets up the machine,
//! builds the filter and the packager, then runs `cargo test` with the
//! environment the e2e harness reads, on every Envoy the project supports:
//!
//! - no arguments (CI): the whole workspace on the main Envoy (1.40), then
//!   the differential suites ([`DIFFERENTIAL_SUITES`]) on each older Envoy,
//!   then a summary per version; fails if any run failed;
//! - `--envoy 1.37` (or `1.36,1.38`, or `all`): only those Envoys, each
//!   with its default set (the whole suite on 1.40, the differential suites
//!   on the others), or with the cargo test arguments given;
//! - cargo test arguments without `--envoy` (`--test routes_envoy`): those,
//!   on the main Envoy only.

use crate::setup::{Envoy, MAIN_ENVOY};
use crate::{command, filter, paths, setup};
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The test files (`tests/NAME.rs`) every older Envoy runs: the
/// differential suites, which compare the filter with Envoy's own router,
/// formatters and `header_mutation`, the ECDS test and the header traps
/// (what Envoy rewrites after the filters). A listed file that
/// does not exist in this tree is skipped with a note.
pub const DIFFERENTIAL_SUITES: &[&str] = &[
    "routes_envoy",
    "formatters_envoy",
    "header_mutation_envoy",
    "filter_envoy",
    "ecds_envoy",
    "header_traps_envoy",
];

/// What the arguments of `cargo xtask test` ask for.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    /// The Envoys chosen with `--envoy`; `None` when not given.
    envoys: Option<Vec<Envoy>>,
    /// Everything else, for `cargo test`.
    cargo_args: Vec<String>,
}

/// What one `cargo test` run on one Envoy covers.
#[derive(Debug, PartialEq, Eq)]
enum Selection {
    /// `cargo test --workspace`.
    Whole,
    /// One test file of the e2e crate (`--test NAME`).
    Suite(&'static str),
    /// The caller's own cargo test arguments.
    Args(Vec<String>),
}

/// The runs, in order: each Envoy with what runs on it.
fn plan(options: Options) -> Vec<(Envoy, Vec<Selection>)> {
    let defaults = |envoy: Envoy| -> Vec<Selection> {
        if envoy.is_main() {
            vec![Selection::Whole]
        } else {
            DIFFERENTIAL_SUITES
                .iter()
                .map(|suite| Selection::Suite(suite))
                .collect()
        }
    };
    let Options { envoys, cargo_args } = options;
    match (envoys, cargo_args.is_empty()) {
        (None, true) => Envoy::all().map(|e| (e, defaults(e))).collect(),
        (None, false) => vec![(MAIN_ENVOY, vec![Selection::Args(cargo_args)])],
        (Some(envoys), true) => envoys.into_iter().map(|e| (e, defaults(e))).collect(),
        (Some(envoys), false) => envoys
            .into_iter()
            .map(|e| (e, vec![Selection::Args(cargo_args.clone())]))
            .collect(),
    }
}

/// Runs what the arguments ask for (see the module doc); the exit code is
/// non-zero when any run failed.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let options = parse_args(args)?;
    setup::run()?;
    let module = filter::build_filter()?;
    let extpack = build_extpack()?;

    let plan = plan(options);
    let mut outcomes: Vec<Outcome> = Vec::new();
    for (envoy, selections) in &plan {
        let elf = envoy.elf().with_context(|| {
            format!(
                "envoy {} is missing from {} after setup; run `cargo xtask setup`",
                envoy.version,
                envoy.venv().display()
            )
        })?;
        for selection in selections {
            let outcome = run_one(*envoy, &elf, selection, &module, &extpack)?;
            outcomes.push(outcome);
        }
    }
    let failed = outcomes.iter().any(|o| o.status == Status::Failed);
    say!("\n{}", summary(&outcomes));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Passed,
    Failed,
    Skipped,
}

/// One run's result, for the summary.
struct Outcome {
    envoy: Envoy,
    what: String,
    status: Status,
    counts: Counts,
    took: Duration,
    note: String,
}

fn run_one(
    envoy: Envoy,
    elf: &Path,
    selection: &Selection,
    module: &Path,
    extpack: &Path,
) -> Result<Outcome> {
    let what = match selection {
        Selection::Whole => "whole suite".to_string(),
        Selection::Suite(suite) => (*suite).to_string(),
        Selection::Args(args) => args.join(" "),
    };
    if let Selection::Suite(suite) = selection {
        let file = Path::new("tests").join(format!("{suite}.rs"));
        if !paths::repo_root().join(&file).is_file() {
            let note = format!("{} does not exist in this tree", file.display());
            say!(
                "xtask test: envoy {}: {suite}: skipped, {note}",
                envoy.minor
            );
            return Ok(Outcome {
                envoy,
                what,
                status: Status::Skipped,
                counts: Counts::default(),
                took: Duration::ZERO,
                note,
            });
        }
    }

    let mut path = vec![paths::venv_bin_in(&envoy.venv())];
    if let Some(current) = std::env::var_os("PATH") {
        path.extend(std::env::split_paths(&current));
    }
    let path: OsString = std::env::join_paths(path).context("PATH holds an invalid entry")?;

    let mut cargo_test = command::cargo();
    // Every test binary runs even when one fails, so one run reports all.
    cargo_test.args(["test", "--no-fail-fast"]);
    match selection {
        Selection::Whole => {
            cargo_test.arg("--workspace");
        }
        Selection::Suite(suite) => {
            // `--workspace`, as the whole suite builds it: `-p e2e` would
            // unify features differently and rebuild the test binaries.
            cargo_test.args(["--workspace", "--test", suite]);
        }
        Selection::Args(args) => {
            if !selects_packages(args) {
                cargo_test.arg("--workspace");
            }
            cargo_test.args(args);
        }
    }
    cargo_test
        .current_dir(paths::repo_root())
        .env("ENVOY_BIN", elf)
        .env("HEADER_FILTER_WASM", module)
        .env("EXTPACK_BIN", extpack)
        .env("PATH", path)
        .stdout(Stdio::piped());
    say!(
        "xtask test: envoy {} ({}): {what}",
        envoy.version,
        elf.display()
    );
    let started = Instant::now();
    let mut child = cargo_test.spawn().context("could not run `cargo test`")?;
    // Tee cargo test's stdout (libtest's report) and count its results.
    let mut counts = Counts::default();
    if let Some(stdout) = child.stdout.take() {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        let mut out = std::io::stdout();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            let _ = out.write_all(&line);
            if let Some(result) = parse_test_result(&String::from_utf8_lossy(&line)) {
                counts.add(result);
            }
        }
    }
    let status = child.wait().context("waiting for `cargo test`")?;
    let took = started.elapsed();
    let (status, note) = match status.code() {
        Some(0) => (Status::Passed, String::new()),
        Some(code) => (Status::Failed, format!("cargo test exited with {code}")),
        None => (
            Status::Failed,
            "cargo test was killed by a signal".to_string(),
        ),
    };
    Ok(Outcome {
        envoy,
        what,
        status,
        counts,
        took,
        note,
    })
}

/// The per-version summary printed at the end.
fn summary(outcomes: &[Outcome]) -> String {
    let mut text = String::from("xtask test: summary\n");
    for outcome in outcomes {
        let status = match outcome.status {
            Status::Passed => "ok",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
        };
        let mut line = format!(
            "  envoy {:<7} {:<22} {:<8}",
            outcome.envoy.version, outcome.what, status
        );
        if outcome.status != Status::Skipped {
            let c = &outcome.counts;
            line.push_str(&format!(
                " {} passed, {} failed, {} ignored, {:.0} s",
                c.passed,
                c.failed,
                c.ignored,
                outcome.took.as_secs_f64()
            ));
        }
        if !outcome.note.is_empty() {
            line.push_str(&format!(" ({})", outcome.note));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    let total: Duration = outcomes.iter().map(|o| o.took).sum();
    let failed = outcomes
        .iter()
        .filter(|o| o.status == Status::Failed)
        .count();
    text.push_str(&format!(
        "  {} runs, {failed} failed, {:.0} s in cargo test",
        outcomes.len(),
        total.as_secs_f64()
    ));
    text
}

/// Test counts summed over libtest's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

/// The counts of one libtest summary line:
/// `test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 3.21s`.
fn parse_test_result(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut result = Counts::default();
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(number), Some(label)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(number) = number.parse::<u64>() else {
            continue;
        };
        match label {
            "passed" => result.passed = number,
            "failed" => result.failed = number,
            "ignored" => result.ignored = number,
            _ => {}
        }
    }
    Some(result)
}

/// Splits `--envoy VERSIONS` / `--envoy=VERSIONS` (before any `--`) from
/// the cargo test arguments.
fn parse_args(args: &[String]) -> Result<Options> {
    let mut envoys: Option<Vec<Envoy>> = None;
    let mut cargo_args = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            cargo_args.push(arg.clone());
            cargo_args.extend(iter.by_ref().cloned());
            break;
        }
        let value = if arg == "--envoy" {
            Some(
                iter.next()
                    .with_context(|| format!("`--envoy` needs a version: {}", choices()))?
                    .clone(),
            )
        } else {
            arg.strip_prefix("--envoy=").map(str::to_string)
        };
        match value {
            Some(value) => {
                if envoys.is_some() {
                    bail!("`--envoy` given twice; list several as `--envoy 1.36,1.37`");
                }
                envoys = Some(parse_envoys(&value)?);
            }
            None => cargo_args.push(arg.clone()),
        }
    }
    Ok(Options { envoys, cargo_args })
}

/// `all`, or a comma-separated list of `major.minor` or exact versions.
fn parse_envoys(value: &str) -> Result<Vec<Envoy>> {
    if value == "all" {
        return Ok(Envoy::all().collect());
    }
    let mut chosen: Vec<Envoy> = Vec::new();
    for name in value.split(',').map(str::trim) {
        let envoy = Envoy::named(name).map_err(|e| anyhow!("`--envoy {value}`: {e}"))?;
        if !chosen.contains(&envoy) {
            chosen.push(envoy);
        }
    }
    Ok(chosen)
}

fn choices() -> String {
    format!("one of {}, a list of them, or `all`", Envoy::minors())
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
pub fn build_extpack() -> Result<PathBuf> {
    command::streamed(
        command::cargo()
            .args(["build", "-p", "extpack"])
            .current_dir(paths::repo_root()),
    )?;
    Ok(paths::extpack_bin())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| arg.to_string()).collect()
    }

    fn envoy(minor: &str) -> Envoy {
        Envoy::all().find(|e| e.minor == minor).unwrap()
    }

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
            let args = strings(args);
            assert_eq!(selects_packages(&args), *expected, "{args:?}");
        }
    }

    #[test]
    fn envoy_flag_is_taken_out_of_the_cargo_args() {
        let options = parse_args(&strings(&["--envoy", "1.37", "--test", "routes_envoy"])).unwrap();
        assert_eq!(options.envoys, Some(vec![envoy("1.37")]));
        assert_eq!(options.cargo_args, strings(&["--test", "routes_envoy"]));

        let options = parse_args(&strings(&["--test", "x", "--envoy=1.36,1.39.3"])).unwrap();
        assert_eq!(options.envoys, Some(vec![envoy("1.36"), envoy("1.39")]));
        assert_eq!(options.cargo_args, strings(&["--test", "x"]));

        let options = parse_args(&strings(&["--envoy", "all"])).unwrap();
        assert_eq!(options.envoys, Some(Envoy::all().collect()));
        assert!(options.cargo_args.is_empty());

        // After `--` it belongs to the test binaries.
        let options = parse_args(&strings(&["--", "--envoy", "1.37"])).unwrap();
        assert_eq!(options.envoys, None);
        assert_eq!(options.cargo_args, strings(&["--", "--envoy", "1.37"]));
    }

    #[test]
    fn bad_envoy_flags_are_refused_with_the_choices() {
        for args in [
            &["--envoy"][..],
            &["--envoy", "1.35"],
            &["--envoy", "1.37,2"],
            &["--envoy", ""],
            &["--envoy", "1.37", "--envoy", "1.38"],
        ] {
            let err = parse_args(&strings(args)).unwrap_err().to_string();
            assert!(err.contains("--envoy"), "{args:?}: {err}");
        }
        let err = parse_args(&strings(&["--envoy", "1.35"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("one of 1.40, 1.36, 1.37, 1.38, 1.39"), "{err}");
    }

    #[test]
    fn the_plan_runs_everything_on_1_40_and_the_differentials_on_older_envoys() {
        let plan = plan(parse_args(&[]).unwrap());
        let envoys: Vec<&str> = plan.iter().map(|(e, _)| e.minor).collect();
        assert_eq!(envoys, ["1.40", "1.36", "1.37", "1.38", "1.39"]);
        assert_eq!(plan[0].1, vec![Selection::Whole]);
        for (_, selections) in &plan[1..] {
            let suites: Vec<Selection> = DIFFERENTIAL_SUITES
                .iter()
                .map(|s| Selection::Suite(s))
                .collect();
            assert_eq!(selections, &suites);
        }
    }

    #[test]
    fn the_plan_follows_the_flags() {
        let args = strings(&["--test", "routes_envoy"]);
        assert_eq!(
            plan(parse_args(&args).unwrap()),
            vec![(MAIN_ENVOY, vec![Selection::Args(args.clone())])]
        );
        let plan_for = |args: &[&str]| plan(parse_args(&strings(args)).unwrap());
        assert_eq!(
            plan_for(&["--envoy", "1.37", "--test", "routes_envoy"]),
            vec![(envoy("1.37"), vec![Selection::Args(args.clone())])]
        );
        let plan = plan_for(&["--envoy", "1.40,1.38"]);
        assert_eq!(plan[0], (MAIN_ENVOY, vec![Selection::Whole]));
        assert_eq!(plan[1].0, envoy("1.38"));
        assert_eq!(plan[1].1.len(), DIFFERENTIAL_SUITES.len());
    }

    #[test]
    fn libtest_result_lines_are_counted() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 3.21s\n"
            ),
            Some(Counts { passed: 12, failed: 0, ignored: 1 })
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 5 filtered out; finished in 0.01s"),
            Some(Counts { passed: 3, failed: 2, ignored: 0 })
        );
        assert_eq!(parse_test_result("test routes::x ... ok"), None);
        assert_eq!(parse_test_result("running 3 tests"), None);
    }
}
