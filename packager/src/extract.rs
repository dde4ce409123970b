//! Hardened reading of tar streams that come from outside (pulled layers,
//! OCI archives): nothing is ever unpacked onto the disk from here, and a
//! stream is refused whole when any entry is suspect.
//!
//! Refused: absolute paths, `..` components, links (symbolic or hard),
//! devices and other special entries, duplicate paths, entries or totals over
//! the size limits (checked on the bytes actually read, not only on the
//! header's claim, so a gzip bomb stops at the limit).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};

/// Size limits for one stream.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single file.
    pub entry: u64,
    /// Largest sum of all files.
    pub total: u64,
}

impl Default for Limits {
    /// Proxy-wasm modules are a few MiB; 256 MiB leaves room for large ones
    /// while bounding memory.
    fn default() -> Limits {
        Limits {
            entry: 256 << 20,
            total: 512 << 20,
        }
    }
}

/// Why a tar stream was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtractError {
    #[error("refusing entry {0:?}: absolute paths are not accepted")]
    Absolute(String),
    #[error("refusing entry {0:?}: paths with '..' are not accepted")]
    ParentDir(String),
    #[error("refusing entry {0:?}: links are not accepted, only regular files and folders")]
    Link(String),
    #[error("refusing entry {0:?}: only regular files and folders are accepted")]
    Special(String),
    #[error("refusing entry {0:?}: it appears more than once")]
    Duplicate(String),
    #[error("refusing entry {path:?}: larger than the {limit}-byte limit")]
    TooLarge { path: String, limit: u64 },
    #[error("refusing archive: its files add up to more than the {0}-byte limit")]
    TotalTooLarge(u64),
    #[error("not a readable tar archive: {0}")]
    Corrupt(String),
}

/// Reads a gzip-compressed tar stream into memory (file path -> content).
pub fn read_tar_gz(gz: &[u8], limits: Limits) -> Result<BTreeMap<String, Vec<u8>>, ExtractError> {
    read_tar(flate2::read::GzDecoder::new(gz), limits)
}

/// Reads a tar stream into memory (file path -> content); folders are checked
/// but not returned. Paths are normalised (`./a` -> `a`).
pub fn read_tar(
    reader: impl Read,
    limits: Limits,
) -> Result<BTreeMap<String, Vec<u8>>, ExtractError> {
    let corrupt = |e: std::io::Error| ExtractError::Corrupt(e.to_string());
    let mut archive = tar::Archive::new(reader);
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(corrupt)? {
        let entry = entry.map_err(corrupt)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalise(&raw)?;
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory => continue,
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(ExtractError::Link(raw));
            }
            _ => return Err(ExtractError::Special(raw)),
        }
        let mut data = Vec::new();
        entry
            .take(limits.entry + 1)
            .read_to_end(&mut data)
            .map_err(corrupt)?;
        if data.len() as u64 > limits.entry {
            return Err(ExtractError::TooLarge {
                path: raw,
                limit: limits.entry,
            });
        }
        total += data.len() as u64;
        if total > limits.total {
            return Err(ExtractError::TotalTooLarge(limits.total));
        }
        if files.insert(path, data).is_some() {
            return Err(ExtractError::Duplicate(raw));
        }
    }
    Ok(files)
}

/// `./a/b` -> `a/b`; refuses absolute paths and `..`.
fn normalise(raw: &str) -> Result<String, ExtractError> {
    let mut parts = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err(ExtractError::ParentDir(raw.to_string())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(ExtractError::Absolute(raw.to_string()))
            }
        }
    }
    if parts.is_empty() {
        return Err(ExtractError::Corrupt(format!(
            "entry with empty path {raw:?}"
        )));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar with one raw entry, its name written straight into the header so
    /// the tar crate's own safety checks on writing do not interfere.
    fn tar_with(name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        if let Some(target) = link {
            header.set_link_name(target).unwrap();
        }
        header.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&header, data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn plain_files_are_read_with_normalised_paths() {
        let tar = tar_with("./plugin.wasm", tar::EntryType::Regular, b"abc", None);
        let files = read_tar(&tar[..], Limits::default()).unwrap();
        assert_eq!(files["plugin.wasm"], b"abc");
    }

    #[test]
    fn hostile_entries_are_refused() {
        use tar::EntryType::*;
        let cases = [
            (
                tar_with("/etc/passwd", Regular, b"x", None),
                "absolute paths are not accepted",
            ),
            (
                tar_with("../../x", Regular, b"x", None),
                "paths with '..' are not accepted",
            ),
            (
                tar_with("a/../../x", Regular, b"x", None),
                "paths with '..'",
            ),
            (
                tar_with("plugin.wasm", Symlink, b"", Some("/etc/passwd")),
                "links are not accepted",
            ),
            (
                tar_with("plugin.wasm", Link, b"", Some("other")),
                "links are not accepted",
            ),
            (
                tar_with("dev", Char, b"", None),
                "only regular files and folders are accepted",
            ),
            (
                tar_with("fifo", Fifo, b"", None),
                "only regular files and folders",
            ),
        ];
        for (tar, want) in cases {
            let err = read_tar(&tar[..], Limits::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn oversized_entries_and_totals_are_refused() {
        let tar = tar_with("big", tar::EntryType::Regular, &[0u8; 100], None);
        let small = Limits {
            entry: 99,
            total: 1000,
        };
        assert_eq!(
            read_tar(&tar[..], small).unwrap_err(),
            ExtractError::TooLarge {
                path: "big".into(),
                limit: 99
            }
        );
        let mut two = crate::layer::Tree::new();
        two.file("a", vec![0; 60]).file("b", vec![0; 60]);
        let tight = Limits {
            entry: 100,
            total: 100,
        };
        assert_eq!(
            read_tar(&two.to_tar(0)[..], tight).unwrap_err(),
            ExtractError::TotalTooLarge(100)
        );
    }

    #[test]
    fn duplicate_paths_are_refused() {
        let mut tar = tar_with("a", tar::EntryType::Regular, b"1", None);
        tar.truncate(tar.len() - 1024); // drop the end-of-archive blocks
        tar.extend(tar_with("./a", tar::EntryType::Regular, b"2", None));
        assert_eq!(
            read_tar(&tar[..], Limits::default()).unwrap_err(),
            ExtractError::Duplicate("./a".into())
        );
    }

    #[test]
    fn garbage_is_a_corrupt_archive_not_a_panic() {
        let gz = crate::layer::gzip(&[7u8; 700]);
        assert!(matches!(
            read_tar_gz(&gz, Limits::default()),
            Err(ExtractError::Corrupt(_))
        ));
        assert!(read_tar_gz(b"not gzip", Limits::default()).is_err());
    }
}
