//! Deterministic tar and tar+gzip: the same files always give the same bytes,
//! hence the same digest.
//!
//! Entries are sorted by path (after the one file put first, if any: the
//! module, because Istio and Envoy Gateway load the first `plugin.wasm` they
//! meet), parent folders are added, ownership is
//! `0:0` with no user or group names, modes are fixed (0644 files, 0755
//! folders), every mtime is one fixed time (`SOURCE_DATE_EPOCH` or 0), and
//! the gzip header carries no timestamp or file name. Nothing here touches the
//! file system.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

/// `SOURCE_DATE_EPOCH` was set to something that is not a time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("SOURCE_DATE_EPOCH {0:?} is not a time: use whole seconds since 1970-01-01 (e.g. `git log -1 --format=%ct`)")]
pub struct EpochError(pub String);

/// The time stamped on every entry and on the image config:
/// `SOURCE_DATE_EPOCH` (reproducible-builds.org), or 0 when unset.
pub fn source_date_epoch() -> Result<u64, EpochError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| EpochError(v)),
        _ => Ok(0),
    }
}

/// `sha256:<hex>` of some bytes, as OCI descriptors name blobs.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A set of files to be written as one tar stream.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    files: BTreeMap<String, Vec<u8>>,
    /// A root-level file written before every other entry.
    first: Option<String>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Adds a file at a relative `/`-separated path (replacing any before).
    pub fn file(&mut self, path: impl Into<String>, data: Vec<u8>) -> &mut Tree {
        self.files.insert(path.into(), data);
        self
    }

    /// Adds a file at the root that the stream holds before any other entry.
    pub fn first(&mut self, name: impl Into<String>, data: Vec<u8>) -> &mut Tree {
        let name = name.into();
        debug_assert!(!name.contains('/'), "only a root-level file can go first");
        self.files.insert(name.clone(), data);
        self.first = Some(name);
        self
    }

    /// The tar stream: the `first` file, then everything else sorted, with
    /// folders before their contents.
    pub fn to_tar(&self, mtime: u64) -> Vec<u8> {
        let mut entries: BTreeMap<String, Option<&[u8]>> = BTreeMap::new();
        let lead = self
            .first
            .as_ref()
            .map(|name| (name.clone(), Some(self.files[name].as_slice())));
        for (path, data) in &self.files {
            if Some(path) == self.first.as_ref() {
                continue;
            }
            let mut parent = String::new();
            let parts: Vec<&str> = path.split('/').collect();
            for part in &parts[..parts.len() - 1] {
                parent.push_str(part);
                parent.push('/');
                entries.insert(parent.clone(), None);
            }
            entries.insert(path.clone(), Some(data));
        }
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in lead.into_iter().chain(entries) {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(mtime);
            // Names are left empty so nothing of the building machine leaks.
            header.set_username("").expect("empty name fits");
            header.set_groupname("").expect("empty name fits");
            let body: &[u8] = match data {
                Some(bytes) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    header.set_size(bytes.len() as u64);
                    bytes
                }
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    &[]
                }
            };
            builder
                .append_data(&mut header, &path, body)
                .expect("writing tar to memory cannot fail");
        }
        builder
            .into_inner()
            .expect("writing tar to memory cannot fail")
    }
}

/// A gzip-compressed tar layer and the digest of its uncompressed tar (the
/// image config's `diff_id`).
#[derive(Debug, Clone)]
pub struct Layer {
    pub gzip: Vec<u8>,
    pub diff_id: String,
}

impl Layer {
    pub fn from_tree(tree: &Tree, mtime: u64) -> Layer {
        let tar = tree.to_tar(mtime);
        Layer {
            diff_id: sha256_digest(&tar),
            gzip: gzip(&tar),
        }
    }
}

/// gzip with a zero mtime, no file name and a fixed level.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::best());
    encoder
        .write_all(bytes)
        .expect("compressing to memory cannot fail");
    encoder.finish().expect("compressing to memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn tree() -> Tree {
        let mut t = Tree::new();
        t.file("plugin.wasm", b"\0asm".to_vec())
            .file("manifest.yaml", b"name: x\n".to_vec())
            .file("docs/b/c.md", b"c".to_vec())
            .file("docs/a.md", b"a".to_vec());
        t
    }

    #[test]
    fn same_files_give_the_same_bytes_whatever_the_insertion_order() {
        let mut other = Tree::new();
        other
            .file("docs/a.md", b"a".to_vec())
            .file("docs/b/c.md", b"c".to_vec())
            .file("manifest.yaml", b"name: x\n".to_vec())
            .file("plugin.wasm", b"\0asm".to_vec());
        let a = Layer::from_tree(&tree(), 0);
        let b = Layer::from_tree(&other, 0);
        assert_eq!(a.gzip, b.gzip);
        assert_eq!(a.diff_id, b.diff_id);
    }

    #[test]
    fn entries_are_sorted_with_parents_owned_by_root_at_the_epoch() {
        let tar = tree().to_tar(1_700_000_000);
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let e = entry.unwrap();
            let h = e.header();
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.gid().unwrap(), 0);
            assert_eq!(h.mtime().unwrap(), 1_700_000_000);
            assert_eq!(h.username().unwrap(), Some(""));
            seen.push(e.path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            seen,
            [
                "docs/",
                "docs/a.md",
                "docs/b/",
                "docs/b/c.md",
                "manifest.yaml",
                "plugin.wasm"
            ]
        );
    }

    #[test]
    fn the_first_file_precedes_every_other_entry() {
        let mut t = tree();
        t.first("plugin.wasm", b"\0asm".to_vec());
        let tar = t.to_tar(0);
        let mut archive = tar::Archive::new(&tar[..]);
        let seen: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            seen,
            [
                "plugin.wasm",
                "docs/",
                "docs/a.md",
                "docs/b/",
                "docs/b/c.md",
                "manifest.yaml"
            ]
        );
    }

    #[test]
    fn epoch_changes_the_digest() {
        assert_ne!(
            Layer::from_tree(&tree(), 0).diff_id,
            Layer::from_tree(&tree(), 1).diff_id
        );
    }

    #[test]
    fn gzip_header_has_no_timestamp_or_name_and_round_trips() {
        let gz = gzip(b"hello");
        assert_eq!(&gz[0..3], &[0x1f, 0x8b, 8]);
        assert_eq!(gz[3], 0, "no FNAME/FEXTRA/FCOMMENT flags");
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "mtime is zero");
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello");
    }

    #[test]
    fn digest_is_prefixed_sha256() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
