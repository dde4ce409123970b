//! The committed `manifests/*.yaml` are exactly what `extpack manifests`
//! generates for the real module, and what it generates is well formed: each
//! file parses, carries the fields its API requires (no Kubernetes here, so a
//! schema-ish check), embeds a configuration the filter accepts, and pins the
//! digests `extpack inspect` reports.
//!
//! Golden files: `UPDATE_MANIFESTS=1 cargo test -p e2e --test manifests`
//! rewrites them (after `cargo xtask build-filter`: the module's bytes are in
//! every digest).

use std::fs;
use std::path::{Path, PathBuf};

use e2e::chain::{arg, extpack};
use e2e::extpack::extpack_with;
use e2e::paths::{self, TempDir};
use serde_json::Value;

/// The public-looking reference the committed files are generated for.
const REFERENCE: &str = "ghcr.io/example/header-filter:0.1.0";
const FILES: [&str; 4] = [
    "servicemeshextension.yaml",
    "wasmplugin.yaml",
    "envoyfilter.yaml",
    "envoyextensionpolicy.yaml",
];

/// Where the EnvoyFilter fetches the raw module: an in-cluster server, since
/// Envoy's remote fetch accepts only a 200 answer and follows no redirect
/// (GitHub release downloads and most registry blob URLs redirect).
const MODULE_URL: &str =
    "http://header-filter-module.bookinfo.svc.cluster.local/header_filter.wasm";
/// The cluster Istio makes for that Kubernetes Service.
const MODULE_CLUSTER: &str = "outbound|80||header-filter-module.bookinfo.svc.cluster.local";

fn manifests_dir() -> PathBuf {
    paths::repo_root().join("manifests")
}

/// The `extpack manifests` command line the committed files come from,
/// reading the image at `layout`.
fn manifests_args(layout: &Path) -> Vec<String> {
    let root = paths::repo_root();
    [
        "manifests",
        REFERENCE,
        "--image",
        arg(layout),
        "--manifest",
        arg(&root.join("packager/manifest.yaml")),
        "--config",
        arg(&manifests_dir().join("filter-config.json")),
        "--namespace",
        "bookinfo",
        "--selector",
        "app=productpage",
        "--module-url",
        MODULE_URL,
        "--target-ref",
        "Gateway/eg",
    ]
    .map(str::to_string)
    .to_vec()
}

/// The compat image of the real module (the one shape Maistra, Istio and
/// Envoy Gateway all load), built reproducibly into a layout, and the files
/// generated from it. The EnvoyFilter fetches the raw module from an
/// in-cluster server (`MODULE_URL`): a compat layer is a tar.gz, not a
/// module.
struct Generated {
    dir: TempDir,
}

impl Generated {
    fn new() -> Generated {
        let dir = paths::temp_dir();
        let layout = dir.path().join("layout");
        let out = dir.path().join("out");
        let root = paths::repo_root();
        extpack(&[
            "build",
            arg(&paths::filter_wasm()),
            "--manifest",
            arg(&root.join("packager/manifest.yaml")),
            "--version",
            "0.1.0",
            "--output",
            arg(&layout),
        ])
        .ok();
        let mut args = manifests_args(&layout);
        args.extend(["--output-dir".to_string(), arg(&out).to_string()]);
        extpack(&args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
        Generated { dir }
    }

    fn layout(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    fn text(&self, file: &str) -> String {
        fs::read_to_string(self.dir.path().join("out").join(file)).unwrap()
    }

    fn doc(&self, file: &str) -> Value {
        serde_yaml::from_str(&self.text(file))
            .unwrap_or_else(|e| panic!("{file} does not parse as YAML: {e}"))
    }
}

#[test]
fn committed_manifests_are_the_generated_ones() {
    let generated = Generated::new();
    let update = std::env::var_os("UPDATE_MANIFESTS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for file in FILES {
        let path = manifests_dir().join(file);
        let fresh = generated.text(file);
        if update {
            fs::write(&path, &fresh).unwrap();
            continue;
        }
        let committed = fs::read_to_string(&path).unwrap_or_default();
        if committed != fresh {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "manifests/{stale:?} differ from what `extpack manifests` generates for the current \
         module: if the filter changed, regenerate with \
         `UPDATE_MANIFESTS=1 cargo test -p e2e --test manifests` and commit them"
    );
}

/// Each file is one Kubernetes object of the expected kind.
#[test]
fn each_file_is_one_object_of_its_kind() {
    let generated = Generated::new();
    let kinds = [
        ("maistra.io/v1", "ServiceMeshExtension"),
        ("extensions.istio.io/v1alpha1", "WasmPlugin"),
        ("networking.istio.io/v1alpha3", "EnvoyFilter"),
        ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"),
    ];
    for (file, (api, kind)) in FILES.iter().zip(kinds) {
        let text = generated.text(file);
        assert!(!text.contains("\n---"), "{file} holds one document");
        let doc = generated.doc(file);
        assert_eq!(doc["apiVersion"], api, "{file}");
        assert_eq!(doc["kind"], kind, "{file}");
        assert_eq!(doc["metadata"]["name"], "header-filter", "{file}");
        assert_eq!(doc["metadata"]["namespace"], "bookinfo", "{file}");
    }
}

/// Required fields, allowed enum values and no unknown keys, per the APIs
/// (Maistra `ServiceMeshExtensionSpec`, Istio `WasmPlugin` and
/// `EnvoyFilter`, Envoy's `Wasm` filter).
#[test]
fn every_field_is_one_the_api_defines() {
    let g = Generated::new();
    let hex64 = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };

    let sme = g.doc("servicemeshextension.yaml");
    keys(
        &sme["spec"],
        &[
            "image",
            "imagePullPolicy",
            "workloadSelector",
            "phase",
            "priority",
            "config",
        ],
        "sme.spec",
    );
    let image = sme["spec"]["image"].as_str().unwrap();
    let (repo, digest) = image
        .split_once("@sha256:")
        .expect("image pinned by digest");
    assert_eq!(repo, "ghcr.io/example/header-filter");
    assert!(hex64(&Value::from(digest)));
    assert!([
        "PreAuthN",
        "PostAuthN",
        "PreAuthZ",
        "PostAuthZ",
        "PreStats",
        "PostStats"
    ]
    .contains(&sme["spec"]["phase"].as_str().unwrap()));
    assert!(sme["spec"]["priority"].is_i64());
    assert!(sme["spec"]["config"].is_object());
    assert_eq!(
        sme["spec"]["workloadSelector"]["labels"]["app"],
        "productpage"
    );

    let wp = g.doc("wasmplugin.yaml");
    keys(
        &wp["spec"],
        &[
            "selector",
            "url",
            "sha256",
            "imagePullPolicy",
            "pluginName",
            "phase",
            "priority",
            "pluginConfig",
        ],
        "wasmplugin.spec",
    );
    assert_eq!(wp["spec"]["url"], format!("oci://{REFERENCE}"));
    assert!(hex64(&wp["spec"]["sha256"]));
    assert!(["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"]
        .contains(&wp["spec"]["phase"].as_str().unwrap()));
    assert!(["IfNotPresent", "Always", "UNSPECIFIED_POLICY"]
        .contains(&wp["spec"]["imagePullPolicy"].as_str().unwrap()));
    assert!(wp["spec"]["priority"].is_i64());
    assert!(wp["spec"]["pluginConfig"].is_object());
    assert_eq!(wp["spec"]["selector"]["matchLabels"]["app"], "productpage");

    let ef = g.doc("envoyfilter.yaml");
    keys(
        &ef["spec"],
        &["workloadSelector", "configPatches"],
        "envoyfilter.spec",
    );
    let patch = &ef["spec"]["configPatches"][0];
    keys(patch, &["applyTo", "match", "patch"], "configPatches[0]");
    assert_eq!(patch["applyTo"], "HTTP_FILTER");
    assert_eq!(patch["match"]["context"], "SIDECAR_INBOUND");
    let filter = &patch["match"]["listener"]["filterChain"]["filter"];
    assert_eq!(
        filter["name"],
        "envoy.filters.network.http_connection_manager"
    );
    assert_eq!(filter["subFilter"]["name"], "envoy.filters.http.router");
    assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
    let typed = &patch["patch"]["value"]["typed_config"];
    assert_eq!(
        typed["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    );
    let config = &typed["config"];
    keys(
        config,
        &[
            "name",
            "root_id",
            "vm_config",
            "configuration",
            "failure_policy",
        ],
        "wasm.config",
    );
    assert_eq!(config["failure_policy"], "FAIL_CLOSED");
    assert_eq!(config["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    let remote = &config["vm_config"]["code"]["remote"];
    keys(remote, &["http_uri", "sha256", "retry_policy"], "remote");
    keys(
        &remote["http_uri"],
        &["uri", "cluster", "timeout"],
        "http_uri",
    );
    assert!(hex64(&remote["sha256"]));
    assert_eq!(remote["http_uri"]["uri"], MODULE_URL);
    assert_eq!(remote["http_uri"]["cluster"], MODULE_CLUSTER);
    assert_eq!(
        config["configuration"]["@type"],
        "type.googleapis.com/google.protobuf.StringValue"
    );
    assert!(config["configuration"]["value"].is_string());

    // Envoy Gateway's EnvoyExtensionPolicy (api/v1alpha1: PolicyTargetReferences,
    // Wasm, WasmCodeSource, ImageWasmCodeSource).
    let eep = g.doc("envoyextensionpolicy.yaml");
    keys(&eep["spec"], &["targetRefs", "wasm"], "eep.spec");
    let target = &eep["spec"]["targetRefs"][0];
    keys(target, &["group", "kind", "name"], "targetRefs[0]");
    assert_eq!(target["group"], "gateway.networking.k8s.io");
    assert_eq!(target["kind"], "Gateway");
    assert_eq!(target["name"], "eg");
    let wasm = &eep["spec"]["wasm"][0];
    keys(
        wasm,
        &["name", "rootID", "code", "config", "failOpen"],
        "wasm[0]",
    );
    assert_eq!(wasm["name"], "header-filter");
    assert_eq!(wasm["failOpen"], false);
    assert!(wasm["config"].is_object());
    keys(&wasm["code"], &["type", "image"], "wasm[0].code");
    assert_eq!(wasm["code"]["type"], "Image");
    keys(
        &wasm["code"]["image"],
        &["url", "sha256"],
        "wasm[0].code.image",
    );
    assert_eq!(wasm["code"]["image"]["url"], format!("oci://{REFERENCE}"));
    assert!(hex64(&wasm["code"]["image"]["sha256"]));
}

/// Each file's header says where the resource applies; the
/// ServiceMeshExtension's says it exists only in OSSM 2.1 and 2.2, and
/// nothing offers it for later versions.
#[test]
fn headers_say_where_each_resource_applies() {
    let g = Generated::new();
    let sme = g.text("servicemeshextension.yaml");
    let head: String = sme
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    for want in [
        "2.1 and # 2.2",
        "removed in 2.3",
        "refuses to upgrade",
        "apply wasmplugin.yaml",
    ] {
        assert!(head.contains(want), "{want:?} in {head}");
    }
    let ef = g.text("envoyfilter.yaml");
    assert!(
        ef.contains("accepts only an HTTP 200 answer, following no redirect"),
        "{ef}"
    );
    for file in FILES {
        let text = g.text(file);
        assert!(
            !text.contains("2.2+") && !text.contains("Maistra 2.x"),
            "{file}"
        );
    }
    let readme = fs::read_to_string(manifests_dir().join("README.md")).unwrap();
    assert!(
        !readme.contains("2.2+") && !readme.contains("Maistra 2.x"),
        "manifests/README.md"
    );
}

/// Exactly these keys, all present.
fn keys(value: &Value, expected: &[&str], what: &str) {
    let mut got: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not a mapping: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    got.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "keys of {what}");
}

/// The configuration in each resource passes the filter's own validation
/// (`extpack validate --config`, the code Envoy runs at configure time) and
/// is the committed `filter-config.json`.
#[test]
fn embedded_configs_pass_the_filters_validation() {
    let g = Generated::new();
    let committed: Value =
        serde_json::from_slice(&fs::read(manifests_dir().join("filter-config.json")).unwrap())
            .unwrap();
    let sme = g.doc("servicemeshextension.yaml");
    let wp = g.doc("wasmplugin.yaml");
    let ef = g.doc("envoyfilter.yaml");
    let text = ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
        ["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let embedded = [
        (
            "sme",
            serde_json::to_string(&sme["spec"]["config"]).unwrap(),
        ),
        (
            "wasmplugin",
            serde_json::to_string(&wp["spec"]["pluginConfig"]).unwrap(),
        ),
        ("envoyfilter", text),
    ];
    for (what, json) in embedded {
        let parsed: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, committed, "{what} embeds filter-config.json");
        let file = g.dir.path().join(format!("{what}.json"));
        fs::write(&file, &json).unwrap();
        let run = extpack(&[
            "validate",
            arg(&paths::filter_wasm()),
            "--config",
            arg(&file),
        ])
        .ok();
        assert!(
            run.stdout.contains("valid filter configuration"),
            "{what}: {}",
            run.stdout
        );
    }
}

/// The digests pinned in the resources are the ones `extpack inspect` reports
/// for the image.
#[test]
fn pinned_digests_are_the_images() {
    let g = Generated::new();
    let run = extpack(&["inspect", arg(&g.layout()), "--json"]).ok();
    let inspect: Value = serde_json::from_str(&run.stdout).unwrap();
    let manifest_digest = inspect["manifest_digest"].as_str().unwrap();
    let module_digest = inspect["module"]["digest"].as_str().unwrap();
    assert_eq!(
        inspect["format"], "compat",
        "Maistra loads only compat images"
    );

    let sme = g.doc("servicemeshextension.yaml");
    assert_eq!(
        sme["spec"]["image"],
        format!("ghcr.io/example/header-filter@{manifest_digest}")
    );
    let wp = g.doc("wasmplugin.yaml");
    assert_eq!(
        format!("sha256:{}", wp["spec"]["sha256"].as_str().unwrap()),
        manifest_digest
    );
    let ef = g.doc("envoyfilter.yaml");
    let remote = &ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
        ["vm_config"]["code"]["remote"];
    assert_eq!(
        format!("sha256:{}", remote["sha256"].as_str().unwrap()),
        module_digest
    );
    assert_eq!(remote["http_uri"]["uri"], MODULE_URL);
    let eep = g.doc("envoyextensionpolicy.yaml");
    assert_eq!(
        format!(
            "sha256:{}",
            eep["spec"]["wasm"][0]["code"]["image"]["sha256"]
                .as_str()
                .unwrap()
        ),
        manifest_digest
    );
    // And the module is the one built.
    let module = fs::read(paths::filter_wasm()).unwrap();
    assert_eq!(module_digest, sha256(&module));
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Generated from a pushed image (read from the registry, not a layout), the
/// WasmPlugin's and the EnvoyExtensionPolicy's `sha256` are the manifest
/// digest `extpack inspect` reports for the registry's copy.
#[test]
fn resources_for_a_pushed_image_pin_its_registry_digest() {
    let registry = e2e::registry::Registry::start();
    let reference = format!("{}/filters/header-filter:0.1.0", registry.host());
    let module = paths::filter_wasm();
    let publish = ["publish", arg(&module), "--tag", &reference, "--plain-http"];
    extpack(&[&publish[..], &e2e::extpack::FIELDS].concat()).ok();
    let inspect: Value = serde_json::from_str(
        &extpack(&["inspect", &reference, "--plain-http", "--json"])
            .ok()
            .stdout,
    )
    .unwrap();
    let digest = inspect["manifest_digest"].as_str().unwrap();
    let run = extpack(&[
        "manifests",
        &reference,
        "--plain-http",
        "--config",
        arg(&manifests_dir().join("filter-config.json")),
        "--module-url",
        MODULE_URL,
        "--target-ref",
        "HTTPRoute/backend",
    ])
    .ok();
    let docs: Vec<Value> = run
        .stdout
        .split("\n---\n")
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let eep = docs
        .iter()
        .find(|d| d["kind"] == "EnvoyExtensionPolicy")
        .unwrap();
    let image = &eep["spec"]["wasm"][0]["code"]["image"];
    assert_eq!(
        format!("sha256:{}", image["sha256"].as_str().unwrap()),
        digest
    );
    assert_eq!(image["url"], format!("oci://{reference}"));
    assert_eq!(eep["spec"]["targetRefs"][0]["kind"], "HTTPRoute");
    assert_eq!(eep["spec"]["targetRefs"][0]["name"], "backend");
    let wp = docs.iter().find(|d| d["kind"] == "WasmPlugin").unwrap();
    assert_eq!(
        format!("sha256:{}", wp["spec"]["sha256"].as_str().unwrap()),
        digest
    );
}

#[test]
fn stdout_stream_is_the_files_in_order() {
    let g = Generated::new();
    let args = manifests_args(&g.layout());
    let run = extpack(&args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    let files: Vec<String> = FILES.iter().map(|f| g.text(f)).collect();
    assert_eq!(run.stdout, files.join("---\n"));
}

/// A layout of the real module in `format`, with the fields of
/// `packager/manifest.yaml`.
fn layout(dir: &Path, format: &str) -> PathBuf {
    let layout = dir.join(format);
    extpack(&[
        "build",
        arg(&paths::filter_wasm()),
        "--manifest",
        arg(&paths::repo_root().join("packager/manifest.yaml")),
        "--format",
        format,
        "--output",
        arg(&layout),
    ])
    .ok();
    layout
}

/// `extpack manifests REFERENCE --image LAYOUT --config filter-config.json`
/// plus `extra`.
fn manifests_of(layout: &Path, extra: &[&str]) -> e2e::extpack::Run {
    let config = manifests_dir().join("filter-config.json");
    let base = [
        "manifests",
        REFERENCE,
        "--image",
        arg(layout),
        "--config",
        arg(&config),
    ];
    extpack(&[&base[..], extra].concat())
}

/// The `note: ` lines of a run's stderr.
fn notes(run: &e2e::extpack::Run) -> Vec<&str> {
    run.stderr
        .lines()
        .map(|l| {
            l.strip_prefix("note: ")
                .unwrap_or_else(|| panic!("not a note: {l}"))
        })
        .collect()
}

/// The `kind`s of a YAML stream's documents, in order.
fn kinds(stream: &str) -> Vec<String> {
    stream
        .split("\n---\n")
        .map(|d| {
            let doc: Value = serde_yaml::from_str(d).unwrap();
            doc["kind"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Without `--module-url`, a compat image gets everything but the
/// EnvoyFilter, and stderr says which one was left out and why. (Before:
/// exit 1 and nothing written, so the workaround was an EnvoyFilter with a
/// made-up URL next to the WasmPlugin.)
#[test]
fn compat_image_without_module_url_writes_the_others_and_names_the_one_skipped() {
    let dir = paths::temp_dir();
    let compat = layout(dir.path(), "compat");
    let out = dir.path().join("out");
    let run = manifests_of(&compat, &["--output-dir", arg(&out)]).ok();
    assert_eq!(
        notes(&run),
        [
            "skipped envoyfilter.yaml: the EnvoyFilter needs --module-url, an HTTP URL of the raw \
          module that answers 200 (Envoy's remote fetch follows no redirect; a compat image's \
          layer is a tar+gzip Envoy cannot load); the other resources pull the image themselves"
        ]
    );
    let mut files: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "envoyextensionpolicy.yaml",
            "servicemeshextension.yaml",
            "wasmplugin.yaml"
        ]
    );
    assert!(
        run.stdout.starts_with(
            "wrote servicemeshextension.yaml, wasmplugin.yaml, envoyextensionpolicy.yaml for "
        ),
        "{}",
        run.stdout
    );

    // Asked for explicitly, the EnvoyFilter is a usage error, and nothing is
    // written.
    let out2 = dir.path().join("out2");
    let run = manifests_of(
        &compat,
        &["--kind", "wasmplugin,envoyfilter", "--output-dir", arg(&out2)],
    )
    .fails_with_code(
        2,
        "--kind envoyfilter needs --module-url for ghcr.io/example/header-filter:0.1.0, a compat image",
    );
    assert!(
        run.line()
            .contains("accepts only a 200 answer (no redirects)"),
        "{}",
        run.line()
    );
    assert!(!out2.exists(), "nothing written");

    // With --module-url the compat image gets its EnvoyFilter, and its
    // manifest.yaml gives phase and priority.
    let run = manifests_of(
        &compat,
        &[
            "--module-url",
            "https://files.example.com/header_filter.wasm",
        ],
    )
    .ok();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    assert!(run
        .stdout
        .contains("uri: https://files.example.com/header_filter.wasm"));
    assert!(run
        .stdout
        .contains("cluster: outbound|443||files.example.com"));
    assert!(run.stdout.contains("phase: PostAuthZ"));
}

/// `--kind` writes exactly the kinds asked for (stdout and files); a file
/// of another kind left in the folder by an earlier run is named; an unknown
/// kind is a usage error that lists the accepted ones.
#[test]
fn kind_writes_only_the_resources_asked_for() {
    let dir = paths::temp_dir();
    let compat = layout(dir.path(), "compat");
    let run = manifests_of(&compat, &["--kind", "wasmplugin,envoyextensionpolicy"]).ok();
    assert_eq!(kinds(&run.stdout), ["WasmPlugin", "EnvoyExtensionPolicy"]);
    assert!(run.stderr.is_empty(), "nothing skipped: {}", run.stderr);
    let run = manifests_of(&compat, &["--kind", "wasmplugin", "--kind", "wasmplugin"]).ok();
    assert_eq!(kinds(&run.stdout), ["WasmPlugin"]);

    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("envoyfilter.yaml"), "# from before\n").unwrap();
    let run = manifests_of(
        &compat,
        &["--kind", "wasmplugin", "--output-dir", arg(&out)],
    )
    .ok();
    assert!(out.join("wasmplugin.yaml").is_file());
    assert!(!out.join("envoyextensionpolicy.yaml").exists());
    assert_eq!(
        notes(&run),
        [format!(
            "{} is from an earlier run and was not rewritten: remove it before `kubectl apply -f {}`",
            out.join("envoyfilter.yaml").display(),
            out.display()
        )]
    );
    assert_eq!(
        fs::read_to_string(out.join("envoyfilter.yaml")).unwrap(),
        "# from before\n",
        "left alone"
    );

    let run = manifests_of(&compat, &["--kind", "wasmplugins"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "[possible values: servicemeshextension, wasmplugin, envoyfilter, envoyextensionpolicy]"
        ),
        "{}",
        run.stderr
    );
}

/// An artifact image has no manifest.yaml, which Maistra reads: no
/// ServiceMeshExtension by default (said on stderr), an error when asked for.
/// (Before: one was written, pinned to an image Maistra cannot load.)
#[test]
fn artifact_image_gets_no_service_mesh_extension() {
    let dir = paths::temp_dir();
    let artifact = layout(dir.path(), "artifact");
    let fields = ["--phase", "PostAuthZ", "--priority", "10"];
    let run = manifests_of(&artifact, &fields).ok();
    assert_eq!(
        kinds(&run.stdout),
        ["WasmPlugin", "EnvoyFilter", "EnvoyExtensionPolicy"]
    );
    let notes = notes(&run);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].starts_with(
            "skipped servicemeshextension.yaml: ghcr.io/example/header-filter:0.1.0 is an \
             artifact image, which Maistra's ServiceMeshExtension cannot load"
        ),
        "{}",
        notes[0]
    );
    // The EnvoyFilter fetches the registry's blob: said where that loads.
    assert!(
        notes[1].starts_with(
            "envoyfilter.yaml: Envoy fetches the module from the registry's blob URL \
             https://ghcr.io/v2/example/header-filter/blobs/sha256:"
        ),
        "{}",
        notes[1]
    );
    manifests_of(
        &artifact,
        &[&fields[..], &["--kind", "servicemeshextension"]].concat(),
    )
    .fails_with("--kind servicemeshextension needs a compat image");
}

/// Generated from a registry that needs credentials, with
/// `--image-pull-secret`: the WasmPlugin's `imagePullSecret` and the
/// EnvoyExtensionPolicy's `code.image.pullSecretRef` name the Secret (the
/// field names and shapes of istio/api `wasm.proto` and Envoy Gateway's
/// `ImageWasmCodeSource`), and stderr says the ServiceMeshExtension has no
/// such field.
#[test]
fn image_pull_secret_goes_into_the_resources_that_take_one() {
    let registry = e2e::registry::Registry::start_with_auth();
    let reference = format!("{}/private/header-filter:0.1.0", registry.host());
    let login = [
        "--plain-http",
        "--username",
        e2e::registry::USER,
        "--password-stdin",
    ];
    let password = Some(e2e::registry::PASSWORD);
    let module = paths::filter_wasm();
    let publish = [&["publish", arg(&module), "--tag", &reference][..], &login].concat();
    extpack_with(
        &[&publish[..], &e2e::extpack::FIELDS].concat(),
        password,
        &[],
    )
    .ok();
    let config = manifests_dir().join("filter-config.json");
    let args = [
        &["manifests", &reference, "--config", arg(&config)][..],
        &login,
        &[
            "--namespace",
            "bookinfo",
            "--image-pull-secret",
            "registry-creds",
        ],
    ]
    .concat();
    let run = extpack_with(&args, password, &[]).ok();
    let docs: Vec<Value> = run
        .stdout
        .split("\n---\n")
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let of = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap();
    assert_eq!(
        of("WasmPlugin")["spec"]["imagePullSecret"],
        "registry-creds"
    );
    let image = &of("EnvoyExtensionPolicy")["spec"]["wasm"][0]["code"]["image"];
    keys(&image["pullSecretRef"], &["kind", "name"], "pullSecretRef");
    assert_eq!(image["pullSecretRef"]["kind"], "Secret");
    assert_eq!(image["pullSecretRef"]["name"], "registry-creds");
    let sme = of("ServiceMeshExtension");
    assert!(
        !serde_json::to_string(sme)
            .unwrap()
            .contains("registry-creds"),
        "no such field in maistra.io/v1"
    );
    let notes = notes(&run);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].starts_with("skipped envoyfilter.yaml"),
        "{}",
        notes[0]
    );
    assert!(
        notes[1].starts_with("servicemeshextension.yaml has no pull-secret field"),
        "{}",
        notes[1]
    );
    // Not a Secret name: refused before anything is read.
    extpack(&[
        "manifests",
        &reference,
        "--config",
        arg(&config),
        "--image-pull-secret",
        "Registry_Creds",
    ])
    .fails_with("--image-pull-secret \"Registry_Creds\" is not a Kubernetes Secret name");
}

/// A flat configuration written out of sorted order: stderr says the mesh
/// sorts its keys, and every resource embeds it sorted (the EnvoyFilter's
/// string too), so each appends in the order a mesh would. Written sorted,
/// there is nothing to say.
#[test]
fn flat_config_out_of_sorted_order_is_noted_and_embedded_sorted() {
    let dir = paths::temp_dir();
    let compat = layout(dir.path(), "compat");
    let flat = dir.path().join("flat.json");
    fs::write(
        &flat,
        r#"{"x-zone": "eu", "x-app": "shop", "x-env": "prod"}"#,
    )
    .unwrap();
    let run = extpack(&[
        "manifests",
        REFERENCE,
        "--image",
        arg(&compat),
        "--config",
        arg(&flat),
        "--module-url",
        MODULE_URL,
        "--kind",
        "wasmplugin,envoyfilter",
    ])
    .ok();
    let said = notes(&run);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains(
            "a mesh hands the filter its keys sorted: x-app, x-env, x-zone (written: x-zone, \
             x-app, x-env)"
        ),
        "{}",
        said[0]
    );
    assert!(
        said[0].contains("Istio marshals pluginConfig"),
        "{}",
        said[0]
    );
    let sorted = r#"{"x-app":"shop","x-env":"prod","x-zone":"eu"}"#;
    let docs: Vec<Value> = run
        .stdout
        .split("\n---\n")
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    // The YAML text, not a parsed map (serde_json's map sorts by itself).
    let text = run.stdout.split("\n---\n").next().unwrap();
    let at = |key: &str| text.find(&format!("    {key}: ")).unwrap();
    assert!(
        at("x-app") < at("x-env") && at("x-env") < at("x-zone"),
        "{text}"
    );
    let ef_config = docs[1]["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
        ["configuration"]["value"]
        .as_str()
        .unwrap();
    assert_eq!(ef_config, sorted);

    fs::write(&flat, sorted).unwrap();
    let run = extpack(&[
        "manifests",
        REFERENCE,
        "--image",
        arg(&compat),
        "--config",
        arg(&flat),
        "--kind",
        "wasmplugin",
    ])
    .ok();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

/// The README's fenced block (```LANG) that follows `marker`, the `nth`
/// after it (0 = the first).
fn readme_block(marker: &str, lang: &str, nth: usize) -> String {
    let readme = fs::read_to_string(paths::repo_root().join("README.md")).unwrap();
    let start = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README has no {marker:?}"));
    let fence = format!("```{lang}\n");
    let mut rest = &readme[start..];
    for _ in 0..nth {
        let open = rest.find(&fence).expect("a block");
        rest = &rest[open + fence.len()..];
    }
    let open = rest.find(&fence).expect("a block") + fence.len();
    let close = rest[open..].find("```").expect("a closed block");
    rest[open..open + close].to_string()
}

/// The README's "Two configurations on one workload": `routes.json` and
/// `mutations.json`, generated as two WasmPlugins with the README's
/// commands, then chained as Istio chains one phase (priority, highest
/// first) in a real Envoy. The request passes `header-routes` then
/// `header-mutations`; the response the other way round.
#[test]
fn two_wasmplugins_from_one_image_run_in_priority_order_in_envoy() {
    let dir = paths::temp_dir();
    let compat = layout(dir.path(), "compat");
    let section = "### Two configurations on one workload";
    let mut plugins = Vec::new();
    for (file, nth, name, priority) in [
        ("mutations.json", 1, "header-mutations", "10"),
        ("routes.json", 0, "header-routes", "20"),
    ] {
        let config = dir.path().join(file);
        fs::write(&config, readme_block(section, "json", nth)).unwrap();
        let run = extpack(&[
            "manifests",
            REFERENCE,
            "--image",
            arg(&compat),
            "--config",
            arg(&config),
            "--name",
            name,
            "--priority",
            priority,
            "--namespace",
            "bookinfo",
            "--selector",
            "app=productpage",
            "--kind",
            "wasmplugin",
        ])
        .ok();
        assert!(run.stderr.is_empty(), "{}", run.stderr);
        let doc: Value = serde_yaml::from_str(&run.stdout).unwrap();
        assert_eq!(doc["kind"], "WasmPlugin");
        assert_eq!(doc["metadata"]["name"], name);
        assert_eq!(doc["spec"]["pluginName"], name);
        plugins.push(doc);
    }
    // Istio's order within a phase: priority, highest first.
    assert_eq!(plugins[0]["spec"]["phase"], plugins[1]["spec"]["phase"]);
    plugins.sort_by_key(|p| -p["spec"]["priority"].as_i64().unwrap());
    let filters: String = plugins
        .iter()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap();
            let config = serde_json::to_string(&p["spec"]["pluginConfig"]).unwrap();
            e2e::envoy_yaml::local_wasm_filter_yaml(&paths::filter_wasm(), &config)
                .replace("name: header-filter", &format!("name: {name}"))
                .replace("root_id: header-filter", &format!("root_id: {name}"))
                + "\n"
        })
        .collect();
    let upstream = e2e::EchoUpstream::start();
    let listener = e2e::envoy_yaml::listener_yaml("two", filters.trim_end());
    let envoy = e2e::Envoy::start(&e2e::envoy_yaml::bootstrap_yaml(
        &[&listener],
        upstream.port(),
        "",
    ))
    .unwrap();
    let response = e2e::http::get(
        envoy.listener("two"),
        "/api/reviews",
        &[("x-debug-trace", "1")],
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.echoed("x-seen-by"),
        ["header-routes", "header-mutations"],
        "request: header-routes first"
    );
    assert_eq!(response.echoed("x-api"), ["1"], "routes.json's route");
    assert!(
        response.echoed("x-debug-trace").is_empty(),
        "mutations.json"
    );
    assert_eq!(
        response.header_all("x-seen-by"),
        ["header-mutations", "header-routes"],
        "response: header-mutations first"
    );
}

/// The README's overlapping-routes examples do what it says: written as two
/// routes, a request both want gets only the first one's header; with the
/// overlap first, it gets both (`extpack render`, the filter's own core).
#[test]
fn readme_overlapping_routes_apply_both_only_when_the_overlap_comes_first() {
    let dir = paths::temp_dir();
    let marker = "**Routes are first match wins.**";
    let render = |nth: usize| {
        let config = dir.path().join(format!("routes{nth}.json"));
        fs::write(&config, readme_block(marker, "json", nth)).unwrap();
        extpack(&[
            "render",
            "--config",
            arg(&config),
            "--request",
            "GET /api/reviews",
            "--route-name",
            "reviews-v2",
        ])
        .ok()
        .stdout
    };
    let first_wins = render(0);
    assert!(first_wins.contains("route: routes[0]\n"), "{first_wins}");
    assert!(first_wins.contains("  + x-api: 1\n"), "{first_wins}");
    assert!(!first_wins.contains("x-canary"), "{first_wins}");
    let both = render(1);
    assert!(both.contains("route: routes[0] \"api-on-v2\"\n"), "{both}");
    assert!(both.contains("  + x-api: 1\n"), "{both}");
    assert!(both.contains("  + x-canary: v2\n"), "{both}");
}

/// The README's local registry (Debian's `docker-registry` without auth):
/// its very configuration block, with only the address and the folder
/// changed, serves `extpack publish` and `extpack manifests`.
#[test]
fn readme_registry_config_serves_publish_and_manifests() {
    let block = readme_block("### A local registry without Docker", "yaml", 0);
    let dir = paths::temp_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = dir.path().join("data");
    for line in [
        "    rootdirectory: /var/tmp/registry\n",
        "  addr: 127.0.0.1:5000\n",
    ] {
        assert!(block.contains(line), "the README's block has {line:?}");
    }
    let config = block
        .replace(
            "rootdirectory: /var/tmp/registry",
            &format!("rootdirectory: {}", data.display()),
        )
        .replace("addr: 127.0.0.1:5000", &format!("addr: 127.0.0.1:{port}"));
    let file = dir.path().join("registry.yml");
    fs::write(&file, config).unwrap();
    struct Serve(std::process::Child);
    impl Drop for Serve {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _registry = Serve(
        std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)"),
    );
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while e2e::registry::v2_status(addr) != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "the README's registry did not answer 200 on /v2/ (no auth)"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let reference = format!("127.0.0.1:{port}/header-filter:dev");
    extpack(&[
        "publish",
        "--manifest",
        arg(&paths::repo_root().join("packager/manifest.yaml")),
        "--tag",
        &reference,
        "--plain-http",
    ])
    .ok();
    let run = extpack(&[
        "manifests",
        &reference,
        "--plain-http",
        "--config",
        arg(&manifests_dir().join("filter-config.json")),
        "--kind",
        "wasmplugin",
    ])
    .ok();
    let doc: Value = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(doc["spec"]["url"], format!("oci://{reference}"));
    assert!(data
        .join("docker/registry/v2/repositories/header-filter")
        .is_dir());
}

#[test]
fn invalid_config_is_refused_with_the_filters_message() {
    let g = Generated::new();
    let bad = g.dir.path().join("bad.json");
    fs::write(
        &bad,
        r#"{"request_headers_to_add":[{"header":{"key":"host","value":"x"}}]}"#,
    )
    .unwrap();
    let run = extpack(&[
        "manifests",
        REFERENCE,
        "--image",
        arg(&g.layout()),
        "--config",
        arg(&bad),
        "--phase",
        "PostAuthZ",
        "--priority",
        "1",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("bad.json: filter configuration is not valid"),
        "{}",
        run.stderr
    );
    assert!(!Path::new(&g.dir.path().join("out2")).exists());
}
