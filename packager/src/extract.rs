//! Hardened reading of tar streams that come from outside (pulled layers,
//! OCI archives): nothing is ever unpacked onto the disk from here, and a
//! stream is refused whole when any entry is suspect.
//!
//! Refused: absolute paths, `..` components, links (symbolic or hard),
//! devices and other special entries, duplicate paths, entries or totals over
//! the size limits, and truncated entries. Sizes are checked on each header's
//! claim before anything is read, and every byte the tar reader pulls from the
//! (decompressed) stream is counted against a budget, so a gzip bomb hidden
//! in a file, a folder's data, a GNU long name or a PAX header stops within
//! [`METADATA_BUDGET`] of the limits instead of filling memory.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::{Component, Path};
use std::rc::Rc;

/// Bytes the tar reader may pull for one entry besides its file data: its
/// header blocks, GNU long names, PAX records and padding. Real ones are a
/// few KiB.
pub const METADATA_BUDGET: u64 = 1 << 20;

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
    #[error(
        "refusing entry {path:?}: it is a {kind}; only regular files and folders are accepted"
    )]
    Special { path: String, kind: &'static str },
    #[error("refusing entry {0:?}: it appears more than once")]
    Duplicate(String),
    #[error("refusing entry {path:?}: larger than the {limit}-byte limit")]
    TooLarge { path: String, limit: u64 },
    #[error("refusing entry {path:?}: truncated, {read} of the {size} bytes its header claims")]
    Truncated { path: String, size: u64, read: u64 },
    #[error("refusing archive: an entry's headers, long names or skipped data are over the {0}-byte limit")]
    MetadataTooLarge(u64),
    #[error("refusing archive: its files add up to more than the {0}-byte limit")]
    TotalTooLarge(u64),
    #[error("not a readable tar archive: {0}")]
    Corrupt(String),
}

/// One entry of a tar stream: a regular file with its content, or a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// Normalised path (`./a/` -> `a`).
    pub path: String,
    /// The content; `None` for a folder.
    pub data: Option<Vec<u8>>,
}

/// The entries of a tar stream in stream order, file paths unique.
///
/// The order is kept because the loaders depend on it: Istio's and Envoy
/// Gateway's fetchers take the *first* entry whose base name is
/// `plugin.wasm`, folders included (see [`TarFiles::first_named`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarFiles {
    entries: Vec<TarEntry>,
}

impl TarFiles {
    /// The content of the regular file at `path`.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| e.path == path)
            .and_then(|e| e.data.as_deref())
    }

    /// Every regular file as (path, content), in stream order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries
            .iter()
            .filter_map(|e| e.data.as_deref().map(|d| (e.path.as_str(), d)))
    }

    /// The first entry, file or folder, whose last path component is `name`:
    /// what Istio's `extractWasmPluginBinary` (and Envoy Gateway's copy of
    /// it) returns, since Go's `filepath.Base` also strips a folder's
    /// trailing `/`.
    pub fn first_named(&self, name: &str) -> Option<&TarEntry> {
        self.entries
            .iter()
            .find(|e| e.path.rsplit('/').next() == Some(name))
    }
}

/// Reads a gzip-compressed tar stream into memory.
///
/// Every gzip member is read, as Go's `gzip.Reader` (Istio, containerd)
/// does: a second member cannot smuggle files past this check.
pub fn read_tar_gz(gz: &[u8], limits: Limits) -> Result<TarFiles, ExtractError> {
    read_tar(flate2::read::MultiGzDecoder::new(gz), limits)
}

/// Counts the bytes the tar reader pulls and fails once `left` is spent.
struct Budget<R> {
    inner: R,
    left: Rc<Cell<u64>>,
    spent: Rc<Cell<bool>>,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left.get();
        if left == 0 && !buf.is_empty() {
            self.spent.set(true);
            return Err(io::Error::other("read budget spent"));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left.set(left - n as u64);
        Ok(n)
    }
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    use tar::EntryType::*;
    match kind {
        Char => "character device",
        Block => "block device",
        Fifo => "FIFO",
        GNUSparse => "GNU sparse file",
        XGlobalHeader => "PAX global header",
        _ => "special entry",
    }
}

/// Reads a tar stream into memory, in stream order. Paths are normalised
/// (`./a` -> `a`).
pub fn read_tar(reader: impl Read, limits: Limits) -> Result<TarFiles, ExtractError> {
    let left = Rc::new(Cell::new(0));
    let spent = Rc::new(Cell::new(false));
    let budget = Budget {
        inner: reader,
        left: Rc::clone(&left),
        spent: Rc::clone(&spent),
    };
    let corrupt = |e: io::Error| {
        if spent.get() {
            ExtractError::MetadataTooLarge(METADATA_BUDGET)
        } else {
            ExtractError::Corrupt(e.to_string())
        }
    };
    let mut archive = tar::Archive::new(budget);
    let mut entries = archive.entries().map_err(corrupt)?;
    let mut files = TarFiles::default();
    let mut seen = BTreeSet::new();
    let mut total = 0u64;
    loop {
        // Headers, long names, PAX records and whatever the previous entry
        // left unread (padding, a folder's data) come out of this budget.
        left.set(METADATA_BUDGET);
        let entry = match entries.next() {
            None => break,
            Some(entry) => entry.map_err(corrupt)?,
        };
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalise(&raw)?;
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory => {
                files.entries.push(TarEntry { path, data: None });
                continue;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(ExtractError::Link(raw));
            }
            other => {
                return Err(ExtractError::Special {
                    path: raw,
                    kind: kind_name(other),
                })
            }
        }
        // The claim (PAX size included) is checked before reading.
        let size = entry.size();
        if size > limits.entry {
            return Err(ExtractError::TooLarge {
                path: raw,
                limit: limits.entry,
            });
        }
        total += size;
        if total > limits.total {
            return Err(ExtractError::TotalTooLarge(limits.total));
        }
        left.set(left.get() + size);
        let mut data = Vec::with_capacity(size.min(METADATA_BUDGET) as usize);
        entry.take(size).read_to_end(&mut data).map_err(corrupt)?;
        if data.len() as u64 != size {
            return Err(ExtractError::Truncated {
                path: raw,
                size,
                read: data.len() as u64,
            });
        }
        if !seen.insert(path.clone()) {
            return Err(ExtractError::Duplicate(raw));
        }
        files.entries.push(TarEntry {
            path,
            data: Some(data),
        });
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
        assert_eq!(files.get("plugin.wasm"), Some(&b"abc"[..]));
    }

    #[test]
    fn entries_keep_stream_order_and_the_first_plugin_wasm_wins_as_in_istio() {
        let mut tar = tar_with("docs/plugin.wasm", tar::EntryType::Regular, b"docs", None);
        tar.truncate(tar.len() - 1024);
        tar.extend(tar_with(
            "plugin.wasm",
            tar::EntryType::Regular,
            b"root",
            None,
        ));
        let files = read_tar(&tar[..], Limits::default()).unwrap();
        let order: Vec<_> = files.files().map(|(p, _)| p).collect();
        assert_eq!(order, ["docs/plugin.wasm", "plugin.wasm"]);
        let first = files.first_named("plugin.wasm").unwrap();
        assert_eq!(first.path, "docs/plugin.wasm");
        assert_eq!(first.data.as_deref(), Some(&b"docs"[..]));

        // A folder of that name counts too: Istio would read it as 0 bytes.
        let folder = tar_with("x/plugin.wasm/", tar::EntryType::Directory, b"", None);
        let files = read_tar(&folder[..], Limits::default()).unwrap();
        assert_eq!(files.first_named("plugin.wasm").unwrap().data, None);
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
                "it is a character device; only regular files and folders are accepted",
            ),
            (
                tar_with("fifo", Fifo, b"", None),
                "it is a FIFO; only regular files and folders",
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
