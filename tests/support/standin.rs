//! Local stand-ins for the images docker-compose.yml names, so the file runs
//! unmodified where Docker Hub is out of reach: each is a rootfs tarball
//! written from files of this machine (programs with the shared libraries
//! `ldd` lists for them) and `podman import`ed under the exact name the
//! compose file uses.
//!
//! Building is cached: every image carries a label with a hash of its
//! recipe (paths, modes, the identity of each host file: path, size and
//! modification time), and an image whose label matches is kept as is.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::podman::Podman;

/// The label holding the recipe hash.
const KEY_LABEL: &str = "org.header-filter.standin-key";
/// Bumped when the way recipes become images changes.
const RECIPE_VERSION: &str = "1";

/// What an image should hold, and its configuration.
pub struct Recipe {
    name: String,
    entries: BTreeMap<String, Entry>,
    changes: Vec<String>,
}

struct Entry {
    content: Content,
    mode: u32,
}

enum Content {
    Dir,
    Host(PathBuf),
    Bytes(Vec<u8>),
}

/// How [`Recipe::build`] went.
#[derive(Debug, PartialEq, Eq)]
pub enum Built {
    Cached,
    Imported,
}

impl Recipe {
    /// An empty image to be named `image` as a compose file writes it
    /// (`registry:2` is stored as `docker.io/library/registry:2`, which is
    /// what the Docker API looks up).
    pub fn new(image: &str) -> Recipe {
        Recipe {
            name: docker_hub_name(image),
            entries: BTreeMap::new(),
            changes: Vec::new(),
        }
    }

    /// The full image name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A directory (and its parents).
    pub fn dir(mut self, path: &str, mode: u32) -> Recipe {
        self.add(path, Content::Dir, mode);
        self
    }

    /// A file with the given bytes.
    pub fn text(mut self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Recipe {
        self.add(path, Content::Bytes(bytes.into()), mode);
        self
    }

    /// An executable copied from the host, with every shared library (and
    /// the loader) `ldd` names for it, at the same paths as on the host.
    ///
    /// # Panics
    /// When the program does not exist or `ldd` cannot read it.
    pub fn program(mut self, path: &str, host: &Path) -> Recipe {
        assert!(host.is_file(), "{} is missing", host.display());
        for library in shared_libraries(host) {
            let target = library.to_string_lossy().into_owned();
            self.add(&target, Content::Host(library), 0o755);
        }
        self.add(path, Content::Host(host.to_path_buf()), 0o755);
        self
    }

    /// An image configuration instruction, as for `podman import --change`
    /// (`ENTRYPOINT [...]`, `USER 1000`, `VOLUME /data`, ...).
    pub fn change(mut self, instruction: &str) -> Recipe {
        self.changes.push(instruction.to_string());
        self
    }

    fn add(&mut self, path: &str, content: Content, mode: u32) {
        let path = path.trim_start_matches('/');
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|dir| !dir.as_os_str().is_empty()) {
            self.entries
                .entry(dir.to_string_lossy().into_owned())
                .or_insert(Entry {
                    content: Content::Dir,
                    mode: 0o755,
                });
            parent = dir.parent();
        }
        self.entries
            .insert(path.to_string(), Entry { content, mode });
    }

    /// Imports the image unless one built from the same recipe is there.
    pub fn build(&self, podman: &Podman) -> Result<Built, String> {
        let key = self.key()?;
        let format = format!("{{{{index .Labels {KEY_LABEL:?}}}}}");
        if let Ok(label) = podman.run(&["image", "inspect", "--format", &format, &self.name]) {
            if label.trim() == key {
                return Ok(Built::Cached);
            }
        }
        self.import(podman, &key)?;
        // The image this one replaced, if any, is now untagged.
        podman.run(&["image", "prune", "--force"])?;
        Ok(Built::Imported)
    }

    fn import(&self, podman: &Podman, key: &str) -> Result<(), String> {
        let mut cmd = podman.cli();
        cmd.arg("import");
        for change in &self.changes {
            cmd.args(["--change", change]);
        }
        cmd.args(["--change", &format!("LABEL {KEY_LABEL}={key}")])
            .args(["-", &self.name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|err| format!("podman import: {err}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let written = std::thread::scope(|scope| {
            let writer = scope.spawn(|| self.write_tar(stdin));
            let output = child.wait_with_output();
            (writer.join(), output)
        });
        let (written, output) = written;
        let output = output.map_err(|err| format!("podman import: {err}"))?;
        if !output.status.success() {
            return Err(format!(
                "podman import of {} failed: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!("writing the rootfs of {}: {err}", self.name)),
            Err(_) => Err(format!("writing the rootfs of {} panicked", self.name)),
        }
    }

    /// The rootfs as a tar stream: every entry owned by root, in path order.
    fn write_tar(&self, out: impl Write) -> std::io::Result<()> {
        let mut tar = tar::Builder::new(out);
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            match &entry.content {
                Content::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                }
                Content::Bytes(bytes) => {
                    header.set_size(bytes.len() as u64);
                    tar.append_data(&mut header, path, bytes.as_slice())?;
                }
                Content::Host(host) => {
                    let file = std::fs::File::open(host)?;
                    header.set_size(file.metadata()?.len());
                    tar.append_data(&mut header, path, file)?;
                }
            }
        }
        tar.into_inner()?.flush()
    }

    /// A hash of everything the image is made from.
    fn key(&self) -> Result<String, String> {
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        field(RECIPE_VERSION.as_bytes());
        field(self.name.as_bytes());
        for change in &self.changes {
            field(change.as_bytes());
        }
        for (path, entry) in &self.entries {
            field(path.as_bytes());
            field(&entry.mode.to_le_bytes());
            match &entry.content {
                Content::Dir => field(b"dir"),
                Content::Bytes(bytes) => field(bytes),
                Content::Host(host) => {
                    let meta = std::fs::metadata(host)
                        .map_err(|err| format!("{}: {err}", host.display()))?;
                    field(host.as_os_str().as_encoded_bytes());
                    field(&meta.len().to_le_bytes());
                    field(&meta.mtime().to_le_bytes());
                    field(&meta.mtime_nsec().to_le_bytes());
                }
            }
        }
        Ok(hash
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect())
    }
}

/// What every stand-in starts from: `/tmp`, the usual `PATH`, and root plus
/// `users` (name and id, each with a group alike) in `/etc/passwd` and
/// `/etc/group`.
fn base(image: &str, users: &[(&str, u32)]) -> Recipe {
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    let mut group = String::from("root:x:0:\n");
    for (name, id) in users {
        passwd.push_str(&format!(
            "{name}:x:{id}:{id}::/home/{name}:/usr/sbin/nologin\n"
        ));
        group.push_str(&format!("{name}:x:{id}:\n"));
    }
    Recipe::new(image)
        .text("/etc/passwd", passwd, 0o644)
        .text("/etc/group", group, 0o644)
        .dir("/tmp", 0o1777)
        .change("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

/// `envoyproxy/envoy`: the given Envoy binary at `/usr/local/bin/envoy`, the
/// `envoy` user (uid and gid 101) and an entrypoint that behaves as the
/// official image's (`tests/compose/envoy_entrypoint.rs`), with the official
/// default command.
pub fn envoy(image: &str, envoy: &Path, entrypoint: &Path) -> Recipe {
    base(image, &[("envoy", 101)])
        .program("/usr/local/bin/envoy", envoy)
        .program("/docker-entrypoint", entrypoint)
        .dir("/etc/envoy", 0o755)
        .change("EXPOSE 10000")
        .change(r#"ENTRYPOINT ["/docker-entrypoint"]"#)
        .change(r#"CMD ["envoy", "-c", "/etc/envoy/envoy.yaml"]"#)
}

/// `mendhak/http-https-echo`: the echo server (`tests/compose/http_echo.rs`)
/// as user 1000 (`node` in the original), listening on `$HTTP_PORT`.
pub fn echo(image: &str, server: &Path) -> Recipe {
    base(image, &[("node", 1000)])
        .program("/app/http-echo", server)
        .change("ENV HTTP_PORT=8080")
        .change("EXPOSE 8080")
        .change("USER 1000")
        .change("WORKDIR /app")
        .change(r#"CMD ["/app/http-echo"]"#)
}

/// `registry:2`: Debian's `docker-registry` (the same distribution v2 server)
/// at `/bin/registry` with the official image's configuration: plain HTTP on
/// :5000, blobs in the volume `/var/lib/registry`.
pub fn registry(image: &str) -> Recipe {
    // The official image runs it as root.
    base(image, &[])
        .program("/bin/registry", Path::new("/usr/bin/docker-registry"))
        .text("/etc/docker/registry/config.yml", REGISTRY_CONFIG, 0o644)
        .dir("/var/lib/registry", 0o755)
        .change("VOLUME /var/lib/registry")
        .change("EXPOSE 5000")
        .change(r#"ENTRYPOINT ["registry"]"#)
        .change(r#"CMD ["serve", "/etc/docker/registry/config.yml"]"#)
}

const REGISTRY_CONFIG: &str = "\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

/// `envoyproxy/envoy:v1` → `docker.io/envoyproxy/envoy:v1`, `registry:2` →
/// `docker.io/library/registry:2`; names with a registry host stay as they
/// are.
pub fn docker_hub_name(image: &str) -> String {
    let first = image.split('/').next().unwrap_or_default();
    let has_host =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_host {
        image.to_string()
    } else if image.contains('/') {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    }
}

/// The shared objects `ldd` lists for `program` (the loader included); none
/// for a static program.
fn shared_libraries(program: &Path) -> Vec<PathBuf> {
    let output = Command::new("ldd")
        .arg(program)
        .output()
        .unwrap_or_else(|err| panic!("ldd {}: {err}", program.display()));
    // `ldd` of a static program says so and exits 1.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let resolved = line.split("=>").nth(1).unwrap_or(line);
            let path = resolved.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::docker_hub_name;

    #[test]
    fn names_are_qualified_as_the_docker_api_looks_them_up() {
        assert_eq!(
            docker_hub_name("envoyproxy/envoy:v1.40.0"),
            "docker.io/envoyproxy/envoy:v1.40.0"
        );
        assert_eq!(
            docker_hub_name("registry:2"),
            "docker.io/library/registry:2"
        );
        assert_eq!(
            docker_hub_name("localhost:5000/header-filter:dev"),
            "localhost:5000/header-filter:dev"
        );
        assert_eq!(docker_hub_name("quay.io/a/b:1"), "quay.io/a/b:1");
    }
}
