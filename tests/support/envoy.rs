//! A real Envoy process for one test: started from a YAML bootstrap in a
//! temp dir, ready when its admin `/ready` says `LIVE`, killed on drop.
//!
//! Configs bind listeners and admin to port 0; the real addresses come from
//! `--admin-address-path` and admin `/listeners?format=json`, so nothing here
//! picks ports (no races between parallel tests). A failed start returns the
//! full Envoy log so tests can assert on why a config was refused.

use crate::http;
use crate::paths::{self, TempDir};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(50);
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Log lines shown when a test panics while an Envoy is running.
const LOG_TAIL_ON_PANIC: usize = 60;

/// Why [`Envoy::start`] failed. [`StartError::log`] holds Envoy's own output
/// when the process got far enough to write any.
pub enum StartError {
    /// No Envoy binary (see [`paths::envoy_bin`]).
    NoEnvoy(String),
    /// Preparing or spawning failed (temp dir, config file, exec).
    Io { what: String, source: io::Error },
    /// Envoy exited before becoming ready (e.g. it refused the config).
    Exited { status: ExitStatus, log: String },
    /// Envoy did not become ready in time; it has been killed.
    Timeout { waited: Duration, log: String },
}

impl StartError {
    /// Envoy's log (its `--log-path` file plus stderr); empty when Envoy
    /// never ran.
    pub fn log(&self) -> &str {
        match self {
            StartError::Exited { log, .. } | StartError::Timeout { log, .. } => log,
            StartError::NoEnvoy(_) | StartError::Io { .. } => "",
        }
    }

    /// Asserts that the header filter refused its configuration as it
    /// must: exactly one `header-filter: invalid` line in the log, at error
    /// level, saying `invalid configuration: {reason}`.
    ///
    /// # Panics
    /// When it did not, with the log.
    pub fn assert_filter_refused(&self, reason: &str) {
        let log = self.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("header-filter: invalid"))
            .collect();
        let expected = format!("header-filter: invalid configuration: {reason}");
        assert_eq!(lines.len(), 1, "one filter line expected:\n{log}");
        assert!(
            lines[0].contains(&expected),
            "expected {expected:?} in {:?}",
            lines[0]
        );
        assert!(
            lines[0].contains("[error]"),
            "logged at error level: {}",
            lines[0]
        );
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NoEnvoy(message) => f.write_str(message),
            StartError::Io { what, source } => write!(f, "{what}: {source}"),
            StartError::Exited { status, log } => {
                write!(f, "envoy exited during startup ({status}); log:\n{log}")
            }
            StartError::Timeout { waited, log } => {
                write!(f, "envoy was not LIVE after {waited:?}; log:\n{log}")
            }
        }
    }
}

// Debug shows the readable form, so `.unwrap()` in a test prints the log.
impl fmt::Debug for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for StartError {}

/// Options for starting Envoy; [`Envoy::start`] uses the defaults.
#[derive(Debug, Clone)]
pub struct EnvoyBuilder {
    concurrency: u32,
    log_level: String,
    timeout: Duration,
    extra_args: Vec<String>,
}

impl Default for EnvoyBuilder {
    fn default() -> Self {
        EnvoyBuilder {
            concurrency: 1,
            log_level: "info".to_string(),
            timeout: Duration::from_secs(30),
            extra_args: Vec::new(),
        }
    }
}

impl EnvoyBuilder {
    /// Worker threads (`--concurrency`, default 1).
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Log level (`-l`, default `info`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }

    /// How long to wait for `LIVE` (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// An extra command-line argument, appended after the harness's own.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// Writes `config_yaml` to a temp dir, starts Envoy on it and waits until
    /// it is `LIVE` with every listener bound.
    pub fn start(self, config_yaml: &str) -> Result<Envoy, StartError> {
        let binary = paths::envoy_bin().map_err(StartError::NoEnvoy)?;
        let dir = tempfile::Builder::new()
            .prefix("e2e-envoy-")
            .tempdir()
            .map_err(|source| io_error("creating the envoy temp dir", source))?;
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, config_yaml)
            .map_err(|source| io_error("writing envoy.yaml", source))?;
        let stdout = File::create(dir.path().join("stdout.log"))
            .map_err(|source| io_error("creating stdout.log", source))?;
        let stderr = File::create(dir.path().join("stderr.log"))
            .map_err(|source| io_error("creating stderr.log", source))?;

        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--concurrency"])
            .arg(self.concurrency.to_string())
            .arg("-l")
            .arg(&self.log_level)
            .arg("--log-path")
            .arg(dir.path().join("envoy.log"))
            // Flush the log file often, so a test reads what just happened.
            .args(["--file-flush-interval-msec", "50"])
            .arg("--admin-address-path")
            .arg(dir.path().join("admin"))
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| io_error(&format!("spawning {}", binary.display()), source))?;

        let mut envoy = Envoy {
            child,
            dir,
            admin: None,
            stopped: false,
        };
        match envoy.wait_until_ready(self.timeout) {
            Ok(()) => Ok(envoy),
            Err(err) => {
                envoy.stopped = true; // reported in the error; no panic tail
                Err(err)
            }
        }
    }
}

/// A running Envoy. Dropping it stops the process (SIGTERM, then SIGKILL).
pub struct Envoy {
    child: Child,
    dir: TempDir,
    admin: Option<SocketAddr>,
    stopped: bool,
}

impl Envoy {
    /// Starts Envoy on `config_yaml` with the default options
    /// (`--concurrency 1`, `-l info`, 30 s to become `LIVE`).
    pub fn start(config_yaml: &str) -> Result<Envoy, StartError> {
        EnvoyBuilder::default().start(config_yaml)
    }

    /// Options: `Envoy::builder().concurrency(2).start(yaml)`.
    pub fn builder() -> EnvoyBuilder {
        EnvoyBuilder::default()
    }

    /// The bound address of listener `name` (a connectable address: a
    /// wildcard bind is mapped to loopback).
    ///
    /// # Panics
    /// When Envoy has no listener of that name; the message lists them.
    pub fn listener(&self, name: &str) -> SocketAddr {
        let listeners = self.listeners();
        match listeners.get(name) {
            Some(addr) => *addr,
            None => panic!(
                "envoy has no listener named {name:?}; it has {:?}",
                listeners.keys().collect::<Vec<_>>()
            ),
        }
    }

    /// Every listener with a socket address, by name.
    pub fn listeners(&self) -> BTreeMap<String, SocketAddr> {
        let json = self.admin_get("/listeners?format=json");
        parse_listeners(&json).unwrap_or_else(|err| panic!("{err}: {json}"))
    }

    /// The admin interface's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .expect("admin address is known once envoy is ready")
    }

    /// `GET` on the admin interface; returns the body.
    ///
    /// # Panics
    /// When the request fails or the status is not 200.
    pub fn admin_get(&self, path: &str) -> String {
        let response = http::get(self.admin_addr(), path, &[]);
        assert_eq!(
            response.status,
            200,
            "admin GET {path} returned {}: {}",
            response.status,
            response.text()
        );
        response.text()
    }

    /// The value of one counter or gauge (exact name), if Envoy has it.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let filter = percent_encode(&format!("^{}$", escape_regex(name)));
        let text = self.admin_get(&format!("/stats?filter={filter}"));
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
    }

    /// Envoy's log so far: the `--log-path` file, then anything on stderr.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// Polls the log until it contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir holding `envoy.yaml`, `envoy.log` and `admin`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops Envoy now and returns its complete log.
    pub fn stop(mut self) -> String {
        self.terminate();
        self.stopped = true;
        self.log()
    }

    fn wait_until_ready(&mut self, timeout: Duration) -> Result<(), StartError> {
        let deadline = Instant::now() + timeout;
        let admin_file = self.dir.path().join("admin");
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|source| io_error("waiting for envoy", source))?
            {
                return Err(StartError::Exited {
                    status,
                    log: self.log(),
                });
            }
            if self.admin.is_none() {
                self.admin = read_admin_address(&admin_file);
            }
            if let Some(admin) = self.admin {
                if self.is_live(admin) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.terminate();
                return Err(StartError::Timeout {
                    waited: timeout,
                    log: self.log(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// `LIVE` on `/ready` and every listener bound to a real port.
    fn is_live(&self, admin: SocketAddr) -> bool {
        let ready = match http::try_get(admin, "/ready", &[]) {
            Ok(response) => response.status == 200 && response.text().trim() == "LIVE",
            Err(_) => false,
        };
        ready
            && http::try_get(admin, "/listeners?format=json", &[])
                .ok()
                .and_then(|response| parse_listeners(&response.text()).ok())
                .is_some_and(|listeners| listeners.values().all(|addr| addr.port() != 0))
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: kill(2) on our own child's pid; no memory involved.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let deadline = Instant::now() + STOP_GRACE;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.stopped {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_ON_PANIC)..];
            eprintln!(
                "--- envoy (pid {}) log tail, {} ---\n{}\n--- end of envoy log ---",
                self.child.id(),
                self.dir.path().display(),
                tail.join("\n")
            );
        }
        self.terminate();
    }
}

fn io_error(what: &str, source: io::Error) -> StartError {
    StartError::Io {
        what: what.to_string(),
        source,
    }
}

fn read_log(dir: &Path) -> String {
    let mut log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
    for extra in ["stderr.log", "stdout.log"] {
        let text = std::fs::read_to_string(dir.join(extra)).unwrap_or_default();
        if !text.trim().is_empty() {
            if !log.is_empty() && !log.ends_with('\n') {
                log.push('\n');
            }
            log.push_str(&text);
        }
    }
    log
}

fn read_admin_address(file: &PathBuf) -> Option<SocketAddr> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Parses admin `/listeners?format=json` into name -> connectable address.
fn parse_listeners(json: &str) -> Result<BTreeMap<String, SocketAddr>, String> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|err| format!("admin /listeners is not JSON ({err})"))?;
    let statuses = value["listener_statuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut listeners = BTreeMap::new();
    for status in statuses {
        let Some(name) = status["name"].as_str() else {
            continue;
        };
        let socket = &status["local_address"]["socket_address"];
        let (Some(address), Some(port)) =
            (socket["address"].as_str(), socket["port_value"].as_u64())
        else {
            continue; // pipes and internal listeners have no socket address
        };
        let ip: IpAddr = address
            .parse()
            .map_err(|_| format!("listener {name:?} has address {address:?}"))?;
        let ip = match ip {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            other => other,
        };
        let port = u16::try_from(port).map_err(|_| format!("listener {name:?} has port {port}"))?;
        listeners.insert(name.to_string(), SocketAddr::new(ip, port));
    }
    Ok(listeners)
}

fn escape_regex(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// `text` with every byte but RFC 3986's unreserved ones `%XX`-encoded.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The `major.minor` of the Envoy under test (`$ENVOY_BIN --version`), read
/// once per test binary, so a test can state where Envoy versions differ:
/// `if envoy::version() >= (1, 39) { .. }`.
///
/// # Panics
/// When there is no Envoy or its `--version` line cannot be read.
pub fn version() -> (u32, u32) {
    static VERSION: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *VERSION.get_or_init(|| {
        let binary = paths::envoy_bin().unwrap_or_else(|err| panic!("{err}"));
        let output = Command::new(&binary)
            .arg("--version")
            .output()
            .unwrap_or_else(|err| panic!("running {} --version: {err}", binary.display()));
        let text = String::from_utf8_lossy(&output.stdout);
        parse_version(&text)
            .unwrap_or_else(|| panic!("no version in `envoy --version` output: {text}"))
    })
}

/// `major.minor` from Envoy's `--version` line
/// (`/path/to/envoy  version: 5b5b1e2/1.40.0/Clean/RELEASE/BoringSSL`; it
/// starts with the binary's own path, `/`s included).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (_, build) = text.split_once(" version: ")?;
    let version = build.split('/').nth(1)?;
    let mut parts = version.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next()?.trim().parse().ok()?;
    Some((major, minor))
}

/// A Wasm linear memory of each VM in Envoy, in bytes: the `rw-p` mapping
/// right below a guard region of 4 GiB or more (V8's layout).
pub fn wasm_linear_memories(pid: u32) -> Vec<u64> {
    let maps =
        std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("reading /proc/PID/maps");
    let regions: Vec<(u64, u64, String)> = maps
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?.to_string();
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
                perms,
            ))
        })
        .collect();
    regions
        .windows(2)
        .filter(|pair| {
            let (before, guard) = (&pair[0], &pair[1]);
            guard.2 == "---p"
                && guard.1 - guard.0 >= 4 << 30
                && before.2 == "rw-p"
                && before.1 == guard.0
        })
        .map(|pair| pair[0].1 - pair[0].0)
        .collect()
}

/// `VmRSS` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn version_is_read_after_the_binary_path() {
        let line = "\n/work/.venv-envoy-1.36/lib/python3.11/site-packages/envoy/_bin/envoy  \
                    version: dc2d3098ae5641555f15c71d5bb5ce0060a8015c/1.36.2/Clean/RELEASE/BoringSSL\n";
        assert_eq!(parse_version(line), Some((1, 36)));
        assert_eq!(
            parse_version("envoy  version: 5b5b1e2/1.40.0/Clean/RELEASE/BoringSSL"),
            Some((1, 40))
        );
        assert_eq!(parse_version("/usr/bin/envoy: not found"), None);
    }
}
