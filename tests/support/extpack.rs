//! Running the real `extpack` binary in tests: reproducible
//! (`SOURCE_DATE_EPOCH=0`), no Docker credentials from the machine unless a
//! test gives some, optional standard input, optionally under GNU
//! `/usr/bin/time` for its peak memory; and the assertions every test makes
//! on the outcome.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::paths::extpack_bin;

/// The extension fields most tests build and publish with: `--name
/// header-filter --phase PostAuthZ --priority 10`.
pub const FIELDS: [&str; 6] = [
    "--name",
    "header-filter",
    "--phase",
    "PostAuthZ",
    "--priority",
    "10",
];

/// The least module `extpack` accepts as a proxy-wasm filter: one page of
/// memory, an ABI version export and `proxy_on_memory_allocate`.
pub fn proxy_module() -> Vec<u8> {
    wat::parse_str(
        r#"(module
             (memory (export "memory") 1)
             (func $abi)
             (func $alloc (param i32) (result i32) i32.const 0)
             (export "proxy_abi_version_0_2_1" (func $abi))
             (export "proxy_on_memory_allocate" (func $alloc)))"#,
    )
    .expect("a valid module")
}

/// The layer entries `inspect --json` lists (`files[].path`), in layer
/// order.
pub fn listed_files(inspection: &serde_json::Value) -> Vec<String> {
    inspection["files"]
        .as_array()
        .expect("inspect --json lists files")
        .iter()
        .map(|f| f["path"].as_str().expect("a path").to_string())
        .collect()
}

/// One finished run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set size in KiB, for [`extpack_measured`] runs (else 0).
    pub peak_kib: u64,
    pub secs: f64,
}

impl Run {
    /// Asserts success and returns the run.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "extpack failed: {}{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts exit 1 (invalid input) with exactly one `error: ` line
    /// holding every `want`, and no panic; `case` names the input in failure
    /// messages.
    pub fn refused(&self, case: &str, wants: &[&str]) {
        self.exits(1, case, wants);
    }

    /// [`Run::refused`] for another exit code (extpack's codes by kind: 3 not
    /// found, 4 auth, 5 integrity, 6 unreachable or TLS).
    pub fn exits(&self, code: i32, case: &str, wants: &[&str]) {
        assert_eq!(
            self.code, code,
            "{case}: exit code; stderr: {}",
            self.stderr
        );
        assert!(
            self.stderr.starts_with("error: "),
            "{case}: stderr: {}",
            self.stderr
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "{case}: one line: {}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{case}: {}", self.stderr);
        for want in wants {
            assert!(
                self.stderr.contains(want),
                "{case}: want {want:?} in {}",
                self.stderr
            );
        }
    }

    /// [`Run::refused`] for one expected fragment; returns the run.
    pub fn fails_with(self, want: &str) -> Run {
        self.refused("extpack", &[want]);
        self
    }

    /// [`Run::exits`] for one expected fragment; returns the run.
    pub fn fails_with_code(self, code: i32, want: &str) -> Run {
        self.exits(code, "extpack", &[want]);
        self
    }

    /// The error line, without its newline.
    pub fn line(&self) -> &str {
        self.stderr.trim_end()
    }
}

/// `extpack ARGS`.
pub fn extpack(args: &[&str]) -> Run {
    extpack_with(args, None, &[])
}

/// `extpack ARGS` with standard input and extra environment (e.g.
/// `DOCKER_CONFIG`).
pub fn extpack_with(args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> Run {
    let mut cmd = command(extpack_bin(), args, env);
    finish(spawn(&mut cmd, stdin), Instant::now())
}

/// [`extpack_with`] under `/usr/bin/time -v`, recording the peak memory (the
/// report goes to a file, so extpack's own stderr is untouched).
pub fn extpack_measured(args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> Run {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.is_file(),
        "/usr/bin/time is missing: install GNU time (`apt-get install time`)"
    );
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = command(time, ["-v", "-o"], env);
    cmd.arg(report.path()).arg(extpack_bin()).args(args);
    let started = Instant::now();
    let mut run = finish(spawn(&mut cmd, stdin), started);
    let report = std::fs::read_to_string(report.path()).unwrap_or_default();
    run.peak_kib = report
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in the time report: {report}"));
    run
}

/// A started `extpack ARGS` (for tests that kill it midway); finish it with
/// [`wait`].
pub fn start(args: &[&str]) -> Child {
    spawn(&mut command(extpack_bin(), args, &[]), None)
}

/// Waits for a run started with [`start`].
pub fn wait(child: Child) -> Run {
    finish(child, Instant::now())
}

fn command<I, S>(program: impl AsRef<OsStr>, args: I, env: &[(&str, &Path)]) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("SOURCE_DATE_EPOCH", "0")
        // No credentials from the machine's own Docker config.
        .env("DOCKER_CONFIG", "/nonexistent-extpack-test")
        // Nor from its podman logins (REGISTRY_AUTH_FILE replaces the
        // others) or a DOCKER_AUTH_CONFIG (empty counts as unset).
        .env("REGISTRY_AUTH_FILE", "/nonexistent-extpack-test/auth.json")
        .env("DOCKER_AUTH_CONFIG", "")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd
}

fn spawn(cmd: &mut Command, stdin: Option<&str>) -> Child {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("running extpack");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child
}

fn finish(child: Child, started: Instant) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        peak_kib: 0,
        secs: started.elapsed().as_secs_f64(),
    }
}
