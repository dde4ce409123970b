//! Packager timings: `extpack build` (OCI layout) and `extpack push` (to a
//! local Debian `docker-registry` on 127.0.0.1, plain HTTP) for our module
//! and a generated 10 MiB module. Each push goes to a fresh repository so
//! every blob is uploaded. A missing `extpack` or subcommand becomes a note
//! in the results, not a failed bench.

use super::stats::median;
use super::wasm;
use crate::{command, paths};
use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LARGE: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Row {
    pub module: String,
    pub bytes: u64,
    pub build_ms: Option<f64>,
    pub push_ms: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// Never fails: what could not be measured is said in `notes`.
pub fn measure(module: &Path, work: &Path, repeats: u32) -> Figures {
    let mut figures = Figures::default();
    if let Err(err) = try_measure(module, work, repeats, &mut figures) {
        figures.notes.push(format!("{err:#}"));
    }
    for note in &figures.notes {
        say!("bench: extpack: {note}");
    }
    figures
}

fn try_measure(module: &Path, work: &Path, repeats: u32, figures: &mut Figures) -> Result<()> {
    let extpack = build_extpack()?;
    let large = work.join("large-10MiB.wasm");
    wasm::write_large_module(&large, LARGE)?;
    let registry = match Registry::start(work) {
        Ok(registry) => Some(registry),
        Err(err) => {
            figures.notes.push(format!("push not measured: {err:#}"));
            None
        }
    };
    for (label, path) in [("filter", module.to_path_buf()), ("10mib", large)] {
        let bytes = std::fs::metadata(&path)?.len();
        let mut builds = Vec::new();
        let mut pushes = Vec::new();
        for attempt in 0..repeats {
            let layout = work.join(format!("image-{label}-{attempt}"));
            let started = Instant::now();
            let built = command::quiet(
                Command::new(&extpack)
                    .arg("build")
                    .arg(&path)
                    .args([
                        "--name",
                        "bench",
                        "--phase",
                        "PostAuthZ",
                        "--priority",
                        "10",
                    ])
                    .args(["--version", "1.0.0"])
                    .arg("--output")
                    .arg(&layout),
            );
            if let Err(err) = built {
                figures.notes.push(format!("build not measured: {err:#}"));
                break;
            }
            builds.push(started.elapsed().as_secs_f64() * 1e3);
            if let Some(registry) = &registry {
                let tag = format!("{}/bench/{label}-{attempt}:1.0.0", registry.addr);
                let started = Instant::now();
                let pushed =
                    command::quiet(Command::new(&extpack).arg("push").arg(&layout).args([
                        "--tag",
                        &tag,
                        "--plain-http",
                    ]));
                match pushed {
                    Ok(()) => pushes.push(started.elapsed().as_secs_f64() * 1e3),
                    Err(err) => {
                        figures.notes.push(format!("push not measured: {err:#}"));
                        break;
                    }
                }
            }
            let _ = std::fs::remove_dir_all(&layout);
        }
        let row = Row {
            module: label.to_string(),
            bytes,
            build_ms: (!builds.is_empty()).then(|| median(&builds)),
            push_ms: (!pushes.is_empty()).then(|| median(&pushes)),
        };
        say!(
            "bench: extpack {label} ({bytes} bytes): build {} ms, push {} ms",
            row.build_ms.map_or("-".into(), |ms| format!("{ms:.0}")),
            row.push_ms.map_or("-".into(), |ms| format!("{ms:.0}"))
        );
        figures.rows.push(row);
    }
    Ok(())
}

/// A release build: the timings are the packager's, not a debug build's.
fn build_extpack() -> Result<PathBuf> {
    command::quiet(
        command::cargo()
            .args(["build", "--release", "-p", "extpack"])
            .current_dir(paths::repo_root()),
    )
    .context("building extpack")?;
    let binary = paths::target_dir().join("release").join("extpack");
    if !binary.is_file() {
        bail!("cargo built extpack but {} is missing", binary.display());
    }
    Ok(binary)
}

/// Debian's `docker-registry` on a free 127.0.0.1 port, storage in `work`.
struct Registry {
    child: Child,
    addr: SocketAddr,
}

impl Registry {
    fn start(work: &Path) -> Result<Registry> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = work.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n",
                work.join("registry-data").display()
            ),
        )?;
        let log = std::fs::File::create(work.join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("running docker-registry (Debian package docker-registry)")?;
        let mut registry = Registry { child, addr };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = registry.child.try_wait()? {
                bail!("docker-registry exited ({status})");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(registry);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("docker-registry did not listen on {addr} within 15 s")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
