//! One Envoy process for the bench, plain or under callgrind: started on a
//! bootstrap in its own temp dir, ready when admin `/ready` says `LIVE` and
//! every listener is bound, stopped (SIGTERM, then SIGKILL) on drop.
//!
//! The Envoy ELF runs directly (not the wheel's Python launcher), so the pid
//! we hold is Envoy's own: `/proc/PID/stat` and `callgrind_control PID`
//! measure Envoy and nothing else.

use super::client;
use crate::paths;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(5);
const STOP_GRACE: Duration = Duration::from_secs(30);

/// How Envoy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Under {
    Nothing,
    /// `valgrind --tool=callgrind`, instrumentation off until asked for.
    Callgrind,
}

/// What else a start sets: worker threads, and the level of the `wasm` log
/// component (at debug its timestamps say when V8 compiled a module; at
/// trace it names every call between Envoy and a module, `trace.rs`).
#[derive(Debug, Clone, Copy)]
pub struct Launch {
    pub under: Under,
    pub concurrency: u32,
    pub wasm_log: Option<&'static str>,
}

pub struct Envoy {
    child: Child,
    dir: tempfile::TempDir,
    admin: SocketAddr,
    listeners: BTreeMap<String, SocketAddr>,
    /// Spawn to `LIVE` with every listener bound.
    pub ready_after: Duration,
}

impl Envoy {
    /// Starts Envoy on the bootstrap `render(direct_port)` returns, on a free
    /// `direct_port` (retried: a free port can be taken before Envoy binds it).
    pub fn start(render: impl Fn(u16) -> String, under: Under, timeout: Duration) -> Result<Envoy> {
        let launch = Launch {
            under,
            concurrency: 1,
            wasm_log: None,
        };
        Envoy::start_with(render, launch, timeout)
    }

    /// [`Envoy::start`] with the rest of [`Launch`].
    pub fn start_with(
        render: impl Fn(u16) -> String,
        launch: Launch,
        timeout: Duration,
    ) -> Result<Envoy> {
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            match Envoy::try_start(&render(port), launch, timeout) {
                Ok(envoy) => return Ok(envoy),
                Err(err) if format!("{err:#}").contains("ddress already in use") => {
                    last = Some(err)
                }
                Err(err) => return Err(err),
            }
        }
        Err(last.expect("three attempts were made"))
    }

    fn try_start(yaml: &str, launch: Launch, timeout: Duration) -> Result<Envoy> {
        let elf =
            paths::envoy_elf().context("envoy is missing from .venv; run `cargo xtask setup`")?;
        let dir = tempfile::Builder::new()
            .prefix("xtask-bench-envoy-")
            .tempdir()
            .context("creating the envoy temp dir")?;
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, yaml).context("writing envoy.yaml")?;
        let mut command = match launch.under {
            Under::Nothing => Command::new(&elf),
            Under::Callgrind => {
                let mut valgrind = Command::new("valgrind");
                valgrind
                    .args([
                        "--tool=callgrind",
                        "--smc-check=all-non-file",
                        "--instr-atstart=no",
                    ])
                    .arg(format!(
                        "--callgrind-out-file={}",
                        dir.path().join("cg.%p").display()
                    ))
                    .arg(format!(
                        "--log-file={}",
                        dir.path().join("valgrind.log").display()
                    ))
                    .arg(&elf);
                valgrind
            }
        };
        if let Some(level) = launch.wasm_log {
            command
                .arg("--component-log-level")
                .arg(format!("wasm:{level}"));
        }
        let started = Instant::now();
        let child = command
            .arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg(launch.concurrency.to_string())
            .args(["--disable-hot-restart", "-l", "warning"])
            .arg("--log-path")
            .arg(dir.path().join("envoy.log"))
            .arg("--admin-address-path")
            .arg(dir.path().join("admin"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log"))?)
            .spawn()
            .with_context(|| format!("spawning {}", elf.display()))?;
        let mut envoy = Envoy {
            child,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listeners: BTreeMap::new(),
            ready_after: Duration::ZERO,
        };
        envoy.wait_until_ready(timeout)?;
        envoy.ready_after = started.elapsed();
        Ok(envoy)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The bound address of listener `name`.
    pub fn listener(&self, name: &str) -> Result<SocketAddr> {
        self.listeners.get(name).copied().with_context(|| {
            format!(
                "envoy has no listener {name}; it has {:?}",
                self.listeners.keys().collect::<Vec<_>>()
            )
        })
    }

    /// `GET` on the admin interface; the body of a 200.
    pub fn admin_get(&self, path: &str) -> Result<String> {
        let response = client::get(self.admin, path)?;
        if response.status != 200 {
            bail!(
                "admin {path} answered {}: {}",
                response.status,
                response.body
            );
        }
        Ok(response.body)
    }

    /// User plus system CPU time of the whole process (all threads), µs.
    pub fn cpu_micros(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the `(comm)`, which may hold spaces: state is field 3,
        // utime 14 and stime 15.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |index: usize| -> Result<u64> {
            fields
                .get(index - 3)
                .and_then(|field| field.parse().ok())
                .context("unexpected /proc/PID/stat layout")
        };
        // SAFETY: sysconf has no memory effects.
        let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
        Ok((ticks(14)? + ticks(15)?) * 1_000_000 / per_second.max(1))
    }

    /// Resident set size, KiB (`VmRSS` in `/proc/PID/status`).
    pub fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }

    /// Milliseconds from Envoy's log line `Base Wasm created` (V8 about to
    /// compile the module, once per Envoy) to the first `Thread-Local Wasm
    /// created` (compiled and the first VM instantiated); needs
    /// [`Launch::wasm_log`] at debug. Log timestamps have millisecond resolution.
    /// Stops Envoy first: it writes its log file in batches.
    pub fn stop_for_wasm_compile_ms(mut self) -> Option<f64> {
        self.stop();
        let log = std::fs::read_to_string(self.dir.path().join("envoy.log")).ok()?;
        let at = |needle: &str, after: f64| {
            log.lines()
                .filter(|line| line.contains(needle))
                .filter_map(log_time_ms)
                .find(|ms| *ms >= after)
        };
        let base = at("Base Wasm created", 0.0)?;
        Some(at("Thread-Local Wasm created", base)? - base)
    }

    /// Stops Envoy and returns its log file (Envoy writes it in batches).
    pub fn stop_for_log(mut self) -> String {
        self.stop();
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Envoy's log file and stderr (valgrind's own log under callgrind).
    pub fn log(&self) -> String {
        ["envoy.log", "stderr.log", "valgrind.log"]
            .iter()
            .map(|file| std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default())
            .filter(|text| !text.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_until_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let admin_file: PathBuf = self.dir.path().join("admin");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "envoy exited during startup ({status}); log:\n{}",
                    tail(&self.log())
                );
            }
            if self.admin.port() == 0 {
                if let Some(addr) = std::fs::read_to_string(&admin_file)
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
                {
                    self.admin = addr;
                }
            }
            if self.admin.port() != 0 && self.is_live() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "envoy was not LIVE after {timeout:?}; log:\n{}",
                    tail(&self.log())
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn is_live(&mut self) -> bool {
        let live = client::get(self.admin, "/ready")
            .map(|response| response.status == 200 && response.body.trim() == "LIVE")
            .unwrap_or(false);
        if !live {
            return false;
        }
        match self
            .admin_get("/listeners?format=json")
            .ok()
            .and_then(|json| parse_listeners(&json).ok())
        {
            Some(listeners) if listeners.values().all(|addr| addr.port() != 0) => {
                self.listeners = listeners;
                true
            }
            _ => false,
        }
    }
}

impl Envoy {
    /// SIGTERM, then SIGKILL after a grace period; reaps the child.
    fn stop(&mut self) {
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
        self.stop();
    }
}

/// The time of day of a log line `[YYYY-MM-DD HH:MM:SS.mmm][...`, in ms.
fn log_time_ms(line: &str) -> Option<f64> {
    let stamp = line.strip_prefix('[')?.split(']').next()?;
    let time = stamp.split(' ').nth(1)?;
    let mut parts = time.split(':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(((hours * 60.0 + minutes) * 60.0 + seconds) * 1e3)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .context("finding a free loopback port")?
        .port())
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Admin `/listeners?format=json` as name -> address.
fn parse_listeners(json: &str) -> Result<BTreeMap<String, SocketAddr>> {
    let value: serde_json::Value = serde_json::from_str(json)?;
    let mut listeners = BTreeMap::new();
    for status in value["listener_statuses"].as_array().into_iter().flatten() {
        let socket = &status["local_address"]["socket_address"];
        if let (Some(name), Some(address), Some(port)) = (
            status["name"].as_str(),
            socket["address"].as_str(),
            socket["port_value"].as_u64(),
        ) {
            let addr = SocketAddr::new(address.parse()?, u16::try_from(port)?);
            listeners.insert(name.to_string(), addr);
        }
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_times_are_read_to_the_millisecond() {
        let line = "[2026-11-24 01:44:03.240][12897][debug][wasm] [wasm.cc:83] Base Wasm created";
        assert_eq!(
            super::log_time_ms(line),
            Some(((60.0 + 44.0) * 60.0 + 3.24) * 1e3)
        );
        assert_eq!(super::log_time_ms("no stamp"), None);
    }
}
