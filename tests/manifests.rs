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

#[test]
fn compat_image_without_module_url_is_one_clear_error() {
    let dir = paths::temp_dir();
    let layout = dir.path().join("compat");
    extpack(&[
        "build",
        arg(&paths::filter_wasm()),
        "--manifest",
        arg(&paths::repo_root().join("packager/manifest.yaml")),
        "--output",
        arg(&layout),
    ])
    .ok();
    let run = extpack(&[
        "manifests",
        REFERENCE,
        "--image",
        arg(&layout),
        "--config",
        arg(&manifests_dir().join("filter-config.json")),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("publish with --format artifact, or host the module and pass --module-url"),
        "{}",
        run.stderr
    );
    // With --module-url the compat image works, and its manifest.yaml gives
    // phase and priority.
    let run = extpack(&[
        "manifests",
        REFERENCE,
        "--image",
        arg(&layout),
        "--config",
        arg(&manifests_dir().join("filter-config.json")),
        "--module-url",
        "https://files.example.com/header_filter.wasm",
    ])
    .ok();
    assert!(run
        .stdout
        .contains("uri: https://files.example.com/header_filter.wasm"));
    assert!(run
        .stdout
        .contains("cluster: outbound|443||files.example.com"));
    assert!(run.stdout.contains("phase: PostAuthZ"));
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
