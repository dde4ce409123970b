//! Maistra's own loading path for a compat image, with real podman against
//! a real `docker-registry`: what the ServiceMeshExtension controller (mec,
//! maistra/istio branch maistra-2.2, `mec/pkg/pullstrategy/ossm/strategy.go`
//! and `mec/pkg/podman/podman.go`) runs, step by step:
//!
//! 1. `podman --storage-driver=vfs pull --tls-verify=false REPO@DIGEST`,
//!    whose output is the image id;
//! 2. `podman create IMAGE_ID .`, `podman cp CID:/manifest.yaml FILE`,
//!    `podman rm CID`, and the manifest read with Go's `yaml.v2` into
//!    `model.Manifest` (no yaml tags, so the keys are the lower-cased field
//!    names: `name`, `phase`, `priority`, `module`);
//! 3. `podman create IMAGE_ID .`, `podman cp CID:/<module> FILE`, `podman rm
//!    CID`.
//!
//! Each test has its own podman storage, run root, temporary and lock
//! folders (file locks, not the shared memory segment), so it never meets
//! another podman on the machine; it is all removed afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::extpack::extpack;
use e2e::paths::filter_wasm;
use e2e::registry::Registry;
use tempfile::TempDir;

/// Podman with private storage in a temporary folder.
struct Podman {
    dir: TempDir,
}

impl Podman {
    fn new() -> Podman {
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            "[engine]\nlock_type = \"file\"\nevents_logger = \"file\"\n\
             cgroup_manager = \"cgroupfs\"\ntmp_dir = \"{0}/libpod\"\n\
             image_copy_tmp_dir = \"{0}/copy\"\n",
            dir.path().display()
        );
        fs::create_dir(dir.path().join("copy")).unwrap();
        fs::write(dir.path().join("containers.conf"), conf).unwrap();
        Podman { dir }
    }

    /// `podman --storage-driver=vfs ARGS` (as mec runs it), on this
    /// storage; the trimmed stdout.
    fn run(&self, args: &[&str]) -> String {
        let root = self.dir.path().join("root");
        let runroot = self.dir.path().join("runroot");
        let out = Command::new("podman")
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .env("TMPDIR", self.dir.path().join("copy"))
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .arg("--storage-driver=vfs")
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run podman ({e}): install it with `apt-get install podman` (or `cargo xtask setup`)")
            });
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// mec's `extractManifest` / `CopyWasmModule`: create a container from
    /// the image, copy one file out, remove the container.
    fn copy_out(&self, image_id: &str, file: &str, to: &Path) {
        let cid = self.run(&["create", image_id, "."]);
        self.run(&["cp", &format!("{cid}:/{file}"), to.to_str().unwrap()]);
        self.run(&["rm", &cid]);
    }
}

/// The fields mec's `model.Manifest` gets from `yaml.Unmarshal`.
#[derive(Debug, PartialEq)]
struct MaistraManifest {
    name: String,
    phase: String,
    priority: i64,
    module: String,
}

fn read_as_mec(text: &str) -> MaistraManifest {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    let field = |key: &str| {
        doc.get(key)
            .unwrap_or_else(|| panic!("manifest.yaml has no {key:?}: {text}"))
            .clone()
    };
    MaistraManifest {
        name: field("name").as_str().unwrap().to_string(),
        phase: field("phase").as_str().unwrap().to_string(),
        priority: field("priority").as_i64().unwrap(),
        module: field("module").as_str().unwrap().to_string(),
    }
}

#[test]
fn maistra_pulls_by_digest_with_podman_and_copies_the_module_out() {
    let registry = Registry::start();
    let scratch = tempfile::tempdir().unwrap();
    fs::create_dir(scratch.path().join("docs")).unwrap();
    fs::write(scratch.path().join("docs/README.md"), "# header filter\n").unwrap();
    let module = filter_wasm();
    let reference = format!("{}/maistra/header-filter:2.2", registry.host());
    let pushed = extpack(&[
        "publish",
        module.to_str().unwrap(),
        "--manifest",
        e2e::paths::repo_root()
            .join("packager/manifest.yaml")
            .to_str()
            .unwrap(),
        "--docs",
        scratch.path().join("docs").to_str().unwrap(),
        "--tag",
        &reference,
        "--plain-http",
    ])
    .ok();
    // `pushed REF@sha256:...`: the ServiceMeshExtension pins this digest.
    let digest = pushed.stdout.trim().rsplit_once('@').unwrap().1.to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    let podman = Podman::new();
    let pinned = format!("{}/maistra/header-filter@{digest}", registry.host());
    let pulled = podman.run(&["pull", "--tls-verify=false", &pinned]);
    let image_id = pulled.lines().last().unwrap().to_string();
    // Podman names the image by the digest it pulled: the one pinned.
    let listed = podman.run(&[
        "image",
        "ls",
        "--digests",
        "--format",
        "{{.Digest}} {{.ID}}",
    ]);
    assert!(
        listed.contains(&format!("{digest} {}", &image_id[..12])),
        "{listed}"
    );

    let manifest_file = podman.path("manifest.yaml");
    podman.copy_out(&image_id, "manifest.yaml", &manifest_file);
    let manifest = read_as_mec(&fs::read_to_string(&manifest_file).unwrap());
    assert_eq!(
        manifest,
        MaistraManifest {
            name: "header-filter".into(),
            phase: "PostAuthZ".into(),
            priority: 10,
            module: "plugin.wasm".into(),
        }
    );

    let copied = podman.path("module.wasm");
    podman.copy_out(&image_id, &manifest.module, &copied);
    assert_eq!(
        fs::read(&copied).unwrap(),
        fs::read(&module).unwrap(),
        "the module Maistra copies out is the one published, byte for byte"
    );
    // No container is left in the storage.
    assert_eq!(podman.run(&["ps", "-a", "-q"]), "");
}
