//! Collects a `--docs` folder into the layer as `docs/` (as Suffiks'
//! `extgen wasi publish --docs` does).
//!
//! Only regular files and folders go in, always as plain tar entries, so no
//! link ever reaches the image. A symbolic link is accepted only when it
//! resolves inside the folder (its target's content is copied); one that
//! leaves the folder, dangles or points at a special file is refused.
//!
//! No entry may be named `plugin.wasm`: Istio's and Envoy Gateway's fetchers
//! load the first layer entry with that base name, in any folder (a folder
//! of that name included), so a docs file of that name could decide which
//! module a mesh runs, and the digest pin would not catch it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::manifest::MODULE_FILE;

/// Largest docs folder accepted, in bytes of file content.
pub const MAX_DOCS_BYTES: u64 = 64 << 20;

/// Why a docs folder was refused.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("docs folder {0} is not a folder")]
    NotADir(PathBuf),
    #[error(
        "docs folder: {path} is a link that leaves the folder: only files inside it are accepted"
    )]
    LinkOut { path: PathBuf },
    #[error("docs folder: {path} is not a regular file or folder: only those are accepted")]
    Special { path: PathBuf },
    #[error("docs folder: {path} is named {MODULE_FILE}: Istio and Envoy Gateway load the first {MODULE_FILE} in the image, so docs may not hold one; rename it")]
    ModuleName { path: PathBuf },
    #[error("docs folder: {path} has a name that is not UTF-8")]
    Name { path: PathBuf },
    #[error("docs folder is larger than {MAX_DOCS_BYTES} bytes")]
    TooLarge,
    #[error("docs folder: cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Every file under `dir`, as (`docs/<relative path>`, content), sorted.
pub fn collect(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, DocsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DocsError::Io { path, source }
    };
    if !dir.is_dir() {
        return Err(DocsError::NotADir(dir.to_path_buf()));
    }
    let root = dir.canonicalize().map_err(io(dir))?;
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![(dir.to_path_buf(), String::from("docs"))];
    while let Some((path, rel)) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&path)
            .map_err(io(&path))?
            .collect::<Result<_, _>>()
            .map_err(io(&path))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let child = entry.path();
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| DocsError::Name {
                    path: child.clone(),
                })?;
            if name == MODULE_FILE {
                return Err(DocsError::ModuleName { path: child });
            }
            let child_rel = format!("{rel}/{name}");
            let meta = fs::symlink_metadata(&child).map_err(io(&child))?;
            let meta = if meta.file_type().is_symlink() {
                let target = child.canonicalize().map_err(|_| DocsError::LinkOut {
                    path: child.clone(),
                })?;
                if !target.starts_with(&root) {
                    return Err(DocsError::LinkOut { path: child });
                }
                fs::metadata(&target).map_err(io(&child))?
            } else {
                meta
            };
            if meta.is_dir() {
                if fs::symlink_metadata(&child)
                    .map_err(io(&child))?
                    .file_type()
                    .is_symlink()
                {
                    // A link to a folder inside: its files are reached directly.
                    continue;
                }
                stack.push((child, child_rel));
            } else if meta.is_file() {
                total += meta.len();
                if total > MAX_DOCS_BYTES {
                    return Err(DocsError::TooLarge);
                }
                out.push((child_rel, fs::read(&child).map_err(io(&child))?));
            } else {
                return Err(DocsError::Special { path: child });
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_collected_under_docs_sorted() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("img")).unwrap();
        fs::write(dir.path().join("README.md"), "# hi").unwrap();
        fs::write(dir.path().join("img/a.svg"), "<svg/>").unwrap();
        std::os::unix::fs::symlink("README.md", dir.path().join("index.md")).unwrap();
        let files = collect(dir.path()).unwrap();
        let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["docs/README.md", "docs/img/a.svg", "docs/index.md"]);
        assert_eq!(files[2].1, b"# hi");
    }

    #[test]
    fn links_out_of_the_folder_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("leak")).unwrap();
        let err = collect(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("leak is a link that leaves the folder"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", dir.path().join("up")).unwrap();
        assert!(matches!(
            collect(dir.path()),
            Err(DocsError::LinkOut { .. })
        ));
    }

    #[test]
    fn anything_named_plugin_wasm_is_refused_with_its_path() {
        for (make, rel) in [
            ("file", "sub/plugin.wasm"),
            ("file", "plugin.wasm"),
            ("folder", "a/plugin.wasm"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            if make == "file" {
                fs::write(&path, "\0asm").unwrap();
            } else {
                fs::create_dir(&path).unwrap();
            }
            let err = collect(dir.path()).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!(
                    "docs folder: {} is named plugin.wasm",
                    path.display()
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn a_file_is_not_a_docs_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        assert!(collect(&file)
            .unwrap_err()
            .to_string()
            .ends_with("is not a folder"));
    }
}
