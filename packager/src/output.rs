//! Atomic output: everything is written to a temporary sibling of the target
//! and renamed into place, so a failure leaves nothing behind and readers never
//! see a half-written image.
//!
//! An existing target is only replaced when the caller asked to (`--force`).
//! A process killed mid-write (`kill -9`, power loss) leaves its temporary
//! sibling `.NAME.tmp-PID`; the next write to the same target removes those
//! whose process is gone (Linux, where `/proc` tells).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{0} already exists: pass --force to replace it")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A temporary sibling path: same folder (so `rename` is atomic), hidden,
/// unique to this process.
fn sibling(target: &Path, what: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    target.with_file_name(format!(".{name}.{what}-{}", std::process::id()))
}

fn check_target(target: &Path, force: bool) -> Result<(), OutputError> {
    if target.symlink_metadata().is_ok() && !force {
        return Err(OutputError::Exists(target.to_path_buf()));
    }
    Ok(())
}

/// Removes `.NAME.tmp-PID` siblings of `target` whose process no longer
/// runs (a pid equal to ours is stale too: we have not written yet).
/// `.NAME.old-PID` is kept: it may be the only copy of a replaced output.
fn remove_stale_siblings(target: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        let _ = match path.symlink_metadata() {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
    }
}

/// Writes a file atomically.
pub fn write_file(target: &Path, bytes: &[u8], force: bool) -> Result<(), OutputError> {
    check_target(target, force)?;
    remove_stale_siblings(target);
    let tmp = sibling(target, "tmp");
    let result = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, target));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(target))
}

/// Writes a folder of files (relative `/`-separated paths) atomically. An
/// existing folder is moved aside, the new one renamed in, then the old one
/// removed; on failure the old one is put back.
pub fn write_dir<'a>(
    target: &Path,
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    force: bool,
) -> Result<(), OutputError> {
    check_target(target, force)?;
    remove_stale_siblings(target);
    let tmp = sibling(target, "tmp");
    let fill = || -> io::Result<()> {
        fs::create_dir(&tmp)?;
        for (rel, bytes) in files {
            let path = tmp.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(path, bytes)?;
        }
        Ok(())
    };
    if let Err(e) = fill() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(io_err(target)(e));
    }
    let old = sibling(target, "old");
    let had_old = target.symlink_metadata().is_ok();
    if had_old {
        if let Err(e) = fs::rename(target, &old) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io_err(target)(e));
        }
    }
    if let Err(e) = fs::rename(&tmp, target) {
        let _ = fs::remove_dir_all(&tmp);
        if had_old {
            let _ = fs::rename(&old, target);
        }
        return Err(io_err(target)(e));
    }
    if had_old {
        let removed = if old.is_dir() {
            fs::remove_dir_all(&old)
        } else {
            fs::remove_file(&old)
        };
        removed.map_err(io_err(&old))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_output_is_kept_without_force_and_replaced_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.tar");
        write_file(&file, b"one", false).unwrap();
        let err = write_file(&file, b"two", false).unwrap_err();
        assert!(err
            .to_string()
            .ends_with("out.tar already exists: pass --force to replace it"));
        assert_eq!(fs::read(&file).unwrap(), b"one");
        write_file(&file, b"two", true).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");

        let layout = dir.path().join("layout");
        write_dir(&layout, [("a", &b"1"[..]), ("b/c", &b"2"[..])], false).unwrap();
        assert!(write_dir(&layout, [("x", &b"1"[..])], false).is_err());
        write_dir(&layout, [("x", &b"9"[..])], true).unwrap();
        assert!(!layout.join("a").exists());
        assert_eq!(fs::read(layout.join("x")).unwrap(), b"9");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary siblings left: {names:?}");
    }

    #[test]
    fn stale_temporary_siblings_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // Above any pid_max: no such process.
        let dead_file = dir.path().join(".out.tar.tmp-999999999");
        let dead_dir = dir.path().join(".image.tmp-999999998");
        let alive = dir.path().join(".out.tar.tmp-1");
        let old = dir.path().join(".image.old-999999997");
        fs::write(&dead_file, b"partial").unwrap();
        fs::create_dir_all(dead_dir.join("blobs")).unwrap();
        fs::write(&alive, b"pid 1 is running").unwrap();
        fs::create_dir(&old).unwrap();
        write_file(&dir.path().join("out.tar"), b"x", false).unwrap();
        write_dir(&dir.path().join("image"), [("a", &b"1"[..])], false).unwrap();
        if cfg!(target_os = "linux") {
            assert!(!dead_file.exists() && !dead_dir.exists());
        }
        assert!(alive.exists(), "a live process's sibling is left alone");
        assert!(old.exists(), "a moved-aside output is kept");
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("missing-parent").join("out.tar");
        assert!(write_file(&target, b"x", false).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
