//! The whole chain with real processes: the built module → `extpack publish`
//! to Debian's `docker-registry` → back out (`extpack extract`, or Envoy's
//! own remote fetch of the artifact's module blob, checked by `sha256`) → a
//! real Envoy loads it → the headers appear at the client and the upstream.
//! And a listener reloaded through file-based LDS with a new filter config
//! serves the new headers without a restart.

use std::fs;
use std::time::{Duration, Instant};

use e2e::chain::{
    arg, bootstrap_yaml, extpack, lds_yaml, listener_yaml, local_wasm_filter_yaml,
    static_cluster_yaml,
};
use e2e::registry::Registry;
use e2e::{http, paths, EchoUpstream, Envoy};
use serde_json::Value;

const CONFIG_A: &str = r#"{
  "request_headers_to_add": [{"header": {"key": "x-env", "value": "prod"},
                              "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
  "response_headers_to_add": [{"header": {"key": "x-served-by", "value": "header-filter"}}],
  "response_headers_to_remove": ["x-powered-by"]
}"#;

const CONFIG_B: &str = r#"{
  "request_headers_to_add": [{"header": {"key": "x-env", "value": "staging"},
                              "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
  "response_headers_to_add": [{"header": {"key": "x-config", "value": "b"}}]
}"#;

/// A request that meets every rule of [`CONFIG_A`]: an `x-env` to
/// overwrite and an upstream `x-powered-by` to remove.
fn get_a(envoy: &Envoy, listener: &str) -> http::Response {
    http::get(
        envoy.listener(listener),
        "/chain",
        &[("x-env", "dev"), ("x-respond-x-powered-by", "php")],
    )
}

/// The headers of [`CONFIG_A`], on both sides.
fn assert_config_a(response: &http::Response) {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.echoed("x-env"), ["prod"], "upstream saw x-env");
    assert_eq!(response.header("x-served-by"), Some("header-filter"));
    assert_eq!(response.header("x-powered-by"), None, "removed");
}

fn registry_ref(registry: &Registry, repo: &str) -> String {
    format!("{}/{repo}:1.0.0", registry.host())
}

fn publish(reference: &str, format: &str) {
    let root = paths::repo_root();
    extpack(&[
        "publish",
        arg(&paths::filter_wasm()),
        "--manifest",
        arg(&root.join("packager/manifest.yaml")),
        "--version",
        "1.0.0",
        "--format",
        format,
        "--tag",
        reference,
        "--plain-http",
    ])
    .ok();
}

#[test]
fn published_compat_image_extracts_to_the_module_that_envoy_runs() {
    let registry = Registry::start();
    let reference = registry_ref(&registry, "chain/compat");
    publish(&reference, "compat");

    let dir = paths::temp_dir();
    let extracted = dir.path().join("x.wasm");
    extpack(&[
        "extract",
        &reference,
        "--plain-http",
        "--output",
        arg(&extracted),
    ])
    .ok();
    assert_eq!(
        fs::read(&extracted).unwrap(),
        fs::read(paths::filter_wasm()).unwrap(),
        "the extracted module is the built one, byte for byte"
    );

    let upstream = EchoUpstream::start();
    let listener = listener_yaml("filter", &local_wasm_filter_yaml(&extracted, CONFIG_A));
    let envoy = Envoy::start(&bootstrap_yaml(&[&listener], upstream.port(), "")).unwrap();
    assert_config_a(&get_a(&envoy, "filter"));
}

/// `extpack manifests` against the live registry, and the Wasm filter of
/// its EnvoyFilter (`patch.value`), parsed.
fn envoy_filter_from_manifests(registry: &Registry, reference: &str) -> Value {
    let dir = paths::temp_dir();
    let config = dir.path().join("config.json");
    fs::write(&config, CONFIG_A).unwrap();
    let out = dir.path().join("out");
    extpack(&[
        "manifests",
        reference,
        "--plain-http",
        "--manifest",
        arg(&paths::repo_root().join("packager/manifest.yaml")),
        "--config",
        arg(&config),
        "--output-dir",
        arg(&out),
    ])
    .ok();
    let doc: Value =
        serde_yaml::from_str(&fs::read_to_string(out.join("envoyfilter.yaml")).unwrap()).unwrap();
    let filter = doc["spec"]["configPatches"][0]["patch"]["value"].clone();
    let remote = &filter["typed_config"]["config"]["vm_config"]["code"]["remote"];
    let uri = remote["http_uri"]["uri"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!(
            "http://{}/v2/chain/artifact/blobs/sha256:",
            registry.host()
        )),
        "{uri}"
    );
    assert_eq!(
        remote["http_uri"]["cluster"],
        format!("outbound|{}||127.0.0.1", registry.addr().port())
    );
    filter
}

/// An Envoy whose only HTTP filter before the router is `filter` (the
/// EnvoyFilter's patch value, as JSON, which is YAML), with a STATIC cluster
/// to the registry under the name the EnvoyFilter uses.
fn start_remote(
    filter: &Value,
    registry: &Registry,
    upstream: &EchoUpstream,
) -> Result<Envoy, e2e::StartError> {
    let cluster = filter["typed_config"]["config"]["vm_config"]["code"]["remote"]["http_uri"]
        ["cluster"]
        .as_str()
        .unwrap();
    let entry = format!("          - {}", serde_json::to_string(filter).unwrap());
    let listener = listener_yaml("filter", &entry);
    Envoy::builder()
        .timeout(Duration::from_secs(60))
        .start(&bootstrap_yaml(
            &[&listener],
            upstream.port(),
            &static_cluster_yaml(cluster, registry.addr().port()),
        ))
}

#[test]
fn envoy_fetches_the_artifact_module_blob_itself_and_checks_its_sha256() {
    let registry = Registry::start();
    let reference = registry_ref(&registry, "chain/artifact");
    publish(&reference, "artifact");
    let filter = envoy_filter_from_manifests(&registry, &reference);

    let upstream = EchoUpstream::start();
    let envoy = start_remote(&filter, &registry, &upstream).unwrap();
    assert_config_a(&get_a(&envoy, "filter"));
    drop(envoy);

    // One hex digit off: Envoy must not run the module it fetched.
    let mut wrong = filter.clone();
    let sha = &mut wrong["typed_config"]["config"]["vm_config"]["code"]["remote"]["sha256"];
    let good = sha.as_str().unwrap().to_string();
    let flipped = if good.starts_with('0') { "1" } else { "0" };
    *sha = Value::from(format!("{flipped}{}", &good[1..]));
    // Envoy fetches, finds the digest wrong, retries, gives up, and (fail
    // closed) refuses every request on the listener instead of running
    // without the filter.
    let envoy = start_remote(&wrong, &registry, &upstream).unwrap();
    for line in [
        "Retry limit exceeded for fetching data from remote data source",
        "Plugin header-filter failed to load",
    ] {
        assert!(
            envoy.wait_for_log(line, Duration::from_secs(10)),
            "no {line:?} in the log:\n{}",
            envoy.log()
        );
    }
    let before = upstream.request_count();
    let response = get_a(&envoy, "filter");
    assert_eq!(response.status, 503, "fail closed: {}", response.text());
    assert_eq!(
        upstream.request_count(),
        before,
        "nothing reached the upstream"
    );
    assert_eq!(response.header("x-served-by"), None);
}

#[test]
fn lds_file_reload_serves_the_new_filter_config_without_a_restart() {
    let upstream = EchoUpstream::start();
    let lds_dir = paths::temp_dir();
    let lds_file = lds_dir.path().join("lds.yaml");
    let module = paths::filter_wasm();
    let write_lds = |config: &str| {
        // Envoy's file-based xDS needs an atomic move into the watched dir.
        let tmp = lds_dir.path().join(".lds.yaml.tmp");
        let listener = listener_yaml("filter", &local_wasm_filter_yaml(&module, config));
        fs::write(&tmp, lds_yaml(&listener)).unwrap();
        fs::rename(&tmp, &lds_file).unwrap();
    };
    write_lds(CONFIG_A);
    let bootstrap = format!(
        "node: {{ id: chain-test, cluster: chain-test }}\n{}\
         dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    path_config_source:\n      \
         path: {}\n      watched_directory: {{ path: {} }}\n",
        bootstrap_yaml(&[], upstream.port(), ""),
        lds_file.display(),
        lds_dir.path().display()
    );
    let envoy = Envoy::start(&bootstrap).unwrap();
    let pid = envoy.pid();
    assert_config_a(&get_a(&envoy, "filter"));
    let updates = envoy.stat("listener_manager.lds.update_success").unwrap();

    write_lds(CONFIG_B);
    let deadline = Instant::now() + Duration::from_secs(20);
    let response = loop {
        let r = http::get(envoy.listener("filter"), "/chain", &[("x-env", "dev")]);
        if r.header("x-config") == Some("b") || Instant::now() >= deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        response.header("x-config"),
        Some("b"),
        "config B never served"
    );
    assert_eq!(response.echoed("x-env"), ["staging"]);
    assert_eq!(response.header("x-served-by"), None, "config A is gone");
    assert_eq!(envoy.pid(), pid, "same process");
    assert!(
        envoy.stat("listener_manager.lds.update_success").unwrap() > updates,
        "LDS counted the update"
    );
}
