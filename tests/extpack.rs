//! End-to-end tests of the `extpack` binary with real tools on loopback:
//! Debian's `docker-registry`, `skopeo`, `umoci` and `curl`.
//!
//! The modules are made here from WAT (a proxy-wasm-shaped module and broken
//! ones), so these tests do not need the real filter built. Every failure case
//! checks the message, the exit code and that nothing was left behind.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::extpack::{extpack, extpack_with, listed_files, proxy_module, Run, FIELDS};
use e2e::paths::extpack_bin;
use e2e::registry::{Registry, PASSWORD, USER};
use serde_json::Value;
use tempfile::TempDir;

const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const WASM_CONTENT: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";

fn plain_module() -> Vec<u8> {
    wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "run")))"#).unwrap()
}

/// A scratch folder with `filter.wasm`, `docs/` and a valid `config.json`.
struct Work {
    dir: TempDir,
}

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("filter.wasm"), proxy_module()).unwrap();
        fs::create_dir(dir.path().join("docs")).unwrap();
        fs::write(dir.path().join("docs/README.md"), "# header filter\n").unwrap();
        fs::write(
            dir.path().join("config.json"),
            r#"{"response_headers_to_add":[{"header":{"key":"x-env","value":"prod"}}]}"#,
        )
        .unwrap();
        Work { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn s(&self, rel: &str) -> String {
        self.path(rel).to_string_lossy().into_owned()
    }

    /// Names in the scratch folder, for "nothing left behind" checks.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// `extpack build` of filter.wasm with the usual flags plus `extra`.
    fn build(&self, extra: &[&str]) -> Run {
        let module = self.s("filter.wasm");
        let args = ["build", module.as_str(), "--version", "1.0.0"];
        extpack(&[&args[..], &FIELDS, extra].concat())
    }
}

fn tool(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install it with apt-get"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn digest_of(run: &Run) -> String {
    let at = run.stdout.find("sha256:").expect("a digest in the output");
    run.stdout[at..at + 71].to_string()
}

fn inspect_json(source: &str, extra: &[&str]) -> Value {
    let mut args = vec!["inspect", source, "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&extpack(&args).ok().stdout).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`istio_fetch`] loaded: the module, and for a compat image the
/// position and path of the tar entry it came from.
struct IstioFetch {
    module: Vec<u8>,
    entry: Option<(usize, String)>,
}

/// Reads a pushed image the way Istio's `pkg/wasm/imagefetcher.go` does, over
/// plain HTTP with curl: compat first (last layer is OCI tar+gzip, take the
/// first entry, folders included, whose base name is `plugin.wasm`), else the
/// *oci* variant (exactly two layers, take the one with the Wasm content
/// media type).
fn istio_fetch(registry: &Registry, repo: &str, tag: &str) -> IstioFetch {
    let base = format!("http://{}/v2/{repo}", registry.host());
    let manifest = tool(
        "curl",
        &[
            "-sfS",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &format!("{base}/manifests/{tag}"),
        ],
    )
    .stdout;
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let blob = |layer: &Value| {
        let digest = layer["digest"].as_str().unwrap();
        let bytes = tool("curl", &["-sfSL", &format!("{base}/blobs/{digest}")]).stdout;
        assert_eq!(sha256(&bytes), digest, "blob digest");
        bytes
    };
    let last = layers.last().expect("at least one layer");
    if last["mediaType"] == LAYER_GZIP {
        let gz = blob(last);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        for (index, entry) in archive.entries().unwrap().enumerate() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().into_owned();
            if path.file_name().is_some_and(|n| n == "plugin.wasm") {
                let mut module = Vec::new();
                entry.read_to_end(&mut module).unwrap();
                let path = path.to_string_lossy().into_owned();
                return IstioFetch {
                    module,
                    entry: Some((index, path)),
                };
            }
        }
        panic!("plugin.wasm not found in the last layer");
    }
    assert_eq!(layers.len(), 2, "oci variant needs two layers");
    let layer = layers
        .iter()
        .find(|l| l["mediaType"] == WASM_CONTENT)
        .expect("a Wasm content layer");
    IstioFetch {
        module: blob(layer),
        entry: None,
    }
}

#[test]
fn compat_layout_unpacks_with_umoci_to_the_maistra_files() {
    let w = Work::new();
    let layout = w.s("image");
    let docs = w.s("docs");
    w.build(&[
        "--docs",
        &docs,
        "--description",
        "adds headers",
        "--output",
        &layout,
    ])
    .ok();
    let bundle = w.s("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{layout}:1.0.0"),
            &bundle,
        ],
    );
    let rootfs = w.path("bundle/rootfs");
    assert_eq!(
        fs::read(rootfs.join("plugin.wasm")).unwrap(),
        proxy_module()
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("manifest.yaml")).unwrap(),
        "schemaVersion: 1\nname: header-filter\ndescription: adds headers\nversion: 1.0.0\n\
         phase: PostAuthZ\npriority: 10\nmodule: plugin.wasm\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("docs/README.md")).unwrap(),
        "# header filter\n"
    );
    let rc: Value =
        serde_json::from_slice(&fs::read(rootfs.join("runtime-config.json")).unwrap()).unwrap();
    assert_eq!(rc["type"], "envoy_proxy");
    // umoci's runtime config carries the image config's label.
    let config: Value =
        serde_json::from_slice(&fs::read(w.path("bundle/config.json")).unwrap()).unwrap();
    assert_eq!(
        config["annotations"]["type"], "maistra-extension",
        "{config}"
    );
}

#[test]
fn skopeo_copies_layout_and_archive_to_the_registry_with_the_same_digest() {
    let registry = Registry::start();
    let w = Work::new();
    let layout = w.s("image");
    let archive = w.s("image.tar");
    let digest = digest_of(&w.build(&["--output", &layout]).ok());
    assert_eq!(digest_of(&w.build(&["--archive", &archive]).ok()), digest);
    for (src, repo) in [
        (format!("oci:{layout}:1.0.0"), "from-layout"),
        (format!("oci-archive:{archive}:1.0.0"), "from-archive"),
    ] {
        let dest = format!("docker://{}/filters/{repo}:1.0.0", registry.host());
        tool(
            "skopeo",
            &[
                "copy",
                "--insecure-policy",
                "--dest-tls-verify=false",
                &src,
                &dest,
            ],
        );
        let info: Value = serde_json::from_slice(
            &tool("skopeo", &["inspect", "--tls-verify=false", &dest]).stdout,
        )
        .unwrap();
        assert_eq!(info["Digest"], digest.as_str(), "{repo}");
        assert_eq!(info["Labels"]["type"], "maistra-extension");
        assert_eq!(info["Os"], "linux");
        assert_eq!(info["Architecture"], "amd64");
        assert_eq!(info["Layers"].as_array().unwrap().len(), 1);
        let raw: Value = serde_json::from_slice(
            &tool("skopeo", &["inspect", "--raw", "--tls-verify=false", &dest]).stdout,
        )
        .unwrap();
        assert_eq!(
            raw["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(raw["layers"][0]["mediaType"], LAYER_GZIP);
        assert_eq!(raw["annotations"]["module.wasm.image/variant"], "compat");
    }
}

#[test]
fn push_extract_and_inspect_round_trip_through_the_registry() {
    let registry = Registry::start();
    let w = Work::new();
    let layout = w.s("image");
    let digest = digest_of(&w.build(&["--output", &layout]).ok());
    let reference = format!("{}/filters/header-filter:1.0.0", registry.host());
    let pushed = extpack(&["push", &layout, "--tag", &reference, "--plain-http"]).ok();
    assert!(pushed.stdout.contains(&digest), "{}", pushed.stdout);

    let out = w.s("back.wasm");
    extpack(&["extract", &reference, "--plain-http", "--output", &out]).ok();
    assert_eq!(fs::read(&out).unwrap(), proxy_module());

    let info = inspect_json(&reference, &["--plain-http"]);
    assert_eq!(info["format"], "compat");
    assert_eq!(info["manifest_digest"], digest.as_str());
    assert_eq!(info["manifest_yaml"]["name"], "header-filter");
    assert_eq!(info["manifest_yaml"]["phase"], "PostAuthZ");
    assert_eq!(info["manifest_yaml"]["priority"], 10);
    assert_eq!(info["module"]["digest"], sha256(&proxy_module()).as_str());
    // The same answer from the local layout.
    assert_eq!(
        inspect_json(&layout, &[])["manifest_digest"],
        digest.as_str()
    );

    // Human output names the format and the manifest fields.
    let text = extpack(&["inspect", &reference, "--plain-http"])
        .ok()
        .stdout;
    assert!(text.contains("format:   compat"), "{text}");
    assert!(text.contains("phase: PostAuthZ"), "{text}");
}

#[test]
fn artifact_format_is_built_pushed_and_read_back() {
    let registry = Registry::start();
    let w = Work::new();
    let layout = w.s("artifact");
    w.build(&[
        "--format",
        "artifact",
        "--root-id",
        "header_filter",
        "--output",
        &layout,
    ])
    .ok();
    let local = inspect_json(&layout, &[]);
    assert_eq!(local["format"], "artifact");
    let layers = local["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["media_type"], WASM_CONFIG);
    assert_eq!(layers[0]["title"], "runtime-config.json");
    assert_eq!(layers[1]["media_type"], WASM_CONTENT);
    assert_eq!(local["runtime_config"]["type"], "envoy_proxy");
    assert_eq!(local["runtime_config"]["abiVersions"][0], "v0-0.2.1");
    assert_eq!(
        local["runtime_config"]["config"]["root_ids"][0],
        "header_filter"
    );

    let reference = format!("{}/filters/header-filter-artifact:1.0.0", registry.host());
    extpack(&["push", &layout, "--tag", &reference, "--plain-http"]).ok();
    let remote = inspect_json(&reference, &["--plain-http"]);
    assert_eq!(remote["format"], "artifact");
    assert_eq!(remote["manifest_digest"], local["manifest_digest"]);
    let out = w.s("back.wasm");
    extpack(&["extract", &reference, "--plain-http", "-o", &out]).ok();
    assert_eq!(fs::read(&out).unwrap(), proxy_module());
}

#[test]
fn istio_fetcher_logic_finds_the_module_in_both_formats() {
    let registry = Registry::start();
    let w = Work::new();
    for (format, repo) in [("compat", "istio-compat"), ("artifact", "istio-artifact")] {
        let module = w.s("filter.wasm");
        let reference = format!("{}/filters/{repo}:1.0.0", registry.host());
        extpack(&[
            "publish",
            &module,
            "--name",
            "header-filter",
            "--phase",
            "PreAuthZ",
            "--priority",
            "-3",
            "--format",
            format,
            "--tag",
            &reference,
            "--plain-http",
        ])
        .ok();
        assert_eq!(
            istio_fetch(&registry, &format!("filters/{repo}"), "1.0.0").module,
            proxy_module(),
            "{format}"
        );
    }
}

/// Istio and Envoy Gateway load the first layer entry named `plugin.wasm`:
/// the module is that entry even with a docs folder that sorts before it,
/// and a docs folder holding a `plugin.wasm` anywhere is refused, so nothing
/// is built or pushed.
#[test]
fn docs_cannot_change_the_module_istio_loads() {
    let registry = Registry::start();
    let w = Work::new();
    let module = w.s("filter.wasm");
    // Folders that sort before plugin.wasm, as the old layer order put them.
    fs::create_dir_all(w.path("docs/a")).unwrap();
    fs::write(w.path("docs/a/index.md"), "# a\n").unwrap();
    let reference = format!("{}/filters/with-docs:1.0.0", registry.host());
    let publish = |docs: &str, reference: &str| {
        let args = ["publish", &module, "--docs", docs, "--tag", reference];
        extpack(&[&args[..], &FIELDS, &["--plain-http"]].concat())
    };
    publish(&w.s("docs"), &reference).ok();
    let fetched = istio_fetch(&registry, "filters/with-docs", "1.0.0");
    assert_eq!(fetched.module, proxy_module());
    assert_eq!(
        fetched.entry,
        Some((0, "plugin.wasm".to_string())),
        "the module is the first entry"
    );
    // inspect still lists every entry, in layer order.
    let info = inspect_json(&reference, &["--plain-http"]);
    let files = listed_files(&info);
    assert_eq!(
        files,
        [
            "plugin.wasm",
            "docs/README.md",
            "docs/a/index.md",
            "manifest.yaml",
            "runtime-config.json"
        ]
    );
    assert_eq!(info["module"]["title"], "plugin.wasm");

    // A docs folder with a plugin.wasm (another module) anywhere in it.
    for rel in ["sub/plugin.wasm", "plugin.wasm"] {
        let docs = w.path(&format!("evil-docs-{}", rel.len()));
        fs::create_dir_all(docs.join(rel).parent().unwrap()).unwrap();
        fs::write(docs.join(rel), plain_module()).unwrap();
        let before = w.names();
        let bad = docs.join(rel);
        let want = format!("docs folder: {} is named plugin.wasm", bad.display());
        w.build(&["--docs", docs.to_str().unwrap(), "--output", &w.s("out")])
            .fails_with(&want);
        let evil = format!("{}/filters/evil-docs:1", registry.host());
        publish(docs.to_str().unwrap(), &evil).fails_with(&want);
        assert_eq!(w.names(), before, "{rel}: something was written");
        extpack(&["inspect", &evil, "--plain-http"]).fails_with_code(3, "was not found");
    }
}

#[test]
fn basic_auth_registry_refuses_anonymous_push_and_accepts_credentials() {
    let registry = Registry::start_with_auth();
    let w = Work::new();
    let layout = w.s("image");
    w.build(&["--output", &layout]).ok();
    let reference = format!("{}/filters/private:1.0.0", registry.host());

    extpack(&["push", &layout, "--tag", &reference, "--plain-http"]).fails_with_code(4, &format!(
        "registry {} refused access to {reference} (push): log in with `docker login {}` or pass --username and --password-stdin",
        registry.host(),
        registry.host()
    ));
    extpack_with(
        &[
            "push",
            &layout,
            "--tag",
            &reference,
            "--plain-http",
            "--username",
            USER,
            "--password-stdin",
        ],
        Some("wrong-password\n"),
        &[],
    )
    .fails_with_code(4, "refused access");

    extpack_with(
        &[
            "push",
            &layout,
            "--tag",
            &reference,
            "--plain-http",
            "--username",
            USER,
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
        &[],
    )
    .ok();
    extpack(&["inspect", &reference, "--plain-http"]).fails_with_code(4, "refused access");

    // Docker's config.json is used when no flags are given.
    let docker = w.path("docker");
    fs::create_dir(&docker).unwrap();
    let auth = base64(&format!("{USER}:{PASSWORD}"));
    fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let out = w.s("back.wasm");
    extpack_with(
        &["extract", &reference, "--plain-http", "-o", &out],
        None,
        &[("DOCKER_CONFIG", &docker)],
    )
    .ok();
    assert_eq!(fs::read(&out).unwrap(), proxy_module());
}

fn base64(text: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = text.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | (c as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn two_builds_of_the_same_inputs_have_the_same_digest_and_bytes() {
    let w = Work::new();
    let docs = w.s("docs");
    let (a, b) = (w.s("a"), w.s("b"));
    let da = digest_of(&w.build(&["--docs", &docs, "--output", &a]).ok());
    let db = digest_of(&w.build(&["--docs", &docs, "--output", &b]).ok());
    assert_eq!(da, db);
    let (ta, tb) = (w.s("a.tar"), w.s("b.tar"));
    w.build(&["--docs", &docs, "--archive", &ta]).ok();
    w.build(&["--docs", &docs, "--archive", &tb]).ok();
    assert_eq!(fs::read(&ta).unwrap(), fs::read(&tb).unwrap());
    // Another SOURCE_DATE_EPOCH gives another digest.
    let mut cmd = Command::new(extpack_bin());
    let c = w.s("c");
    let module = w.s("filter.wasm");
    let out = cmd
        .args([
            "build",
            &module,
            "--name",
            "header-filter",
            "--phase",
            "PostAuthZ",
        ])
        .args([
            "--priority",
            "10",
            "--version",
            "1.0.0",
            "--docs",
            &docs,
            "--output",
            &c,
        ])
        .env("SOURCE_DATE_EPOCH", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&da));
}

#[test]
fn manifest_file_supplies_fields_and_flags_win() {
    let w = Work::new();
    fs::write(
        w.path("manifest.yaml"),
        "schemaVersion: 1\nname: from-file\ndescription: d\nversion: 2.0.0\nphase: PreStats\npriority: 7\nmodule: filter.wasm\n",
    )
    .unwrap();
    let layout = w.s("image");
    let manifest = w.s("manifest.yaml");
    extpack(&[
        "build",
        "--manifest",
        &manifest,
        "--priority",
        "99",
        "--output",
        &layout,
    ])
    .ok();
    let info = inspect_json(&layout, &[]);
    assert_eq!(info["manifest_yaml"]["name"], "from-file");
    assert_eq!(info["manifest_yaml"]["phase"], "PreStats");
    assert_eq!(info["manifest_yaml"]["priority"], 99);
    assert_eq!(info["ref_name"], "2.0.0");
}

#[test]
fn validate_reports_the_module_and_the_config() {
    let w = Work::new();
    let module = w.s("filter.wasm");
    let config = w.s("config.json");
    let run = extpack(&["validate", &module, "--config", &config]).ok();
    assert!(
        run.stdout.contains("proxy-wasm module, ABI 0_2_1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("valid filter configuration"),
        "{}",
        run.stdout
    );
}

#[test]
fn validate_warns_of_what_envoy_undoes_and_hints_at_the_shape() {
    let w = Work::new();
    let module = w.s("filter.wasm");
    let validate = |name: &str, config: &str| {
        fs::write(w.path(name), config).unwrap();
        extpack(&["validate", &module, "--config", &w.s(name)])
    };
    let run = validate(
        "server.json",
        r#"{"response_headers_to_remove":["x-powered-by","server"]}"#,
    )
    .ok();
    let warnings: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stdout);
    assert!(
        warnings[0].starts_with(
            "warning: response_headers_to_remove[1]: Envoy's connection manager writes server \
             after the filters"
        ) && warnings[0].contains("server_header_transformation: PASS_THROUGH"),
        "{}",
        warnings[0]
    );

    // Refused, with the JSON path, what is wrong and what to do.
    validate(
        "proto.json",
        r#"{"routes":[{"match":{"prefix":"/"},"request_headers_to_remove":["x-forwarded-proto"]}]}"#,
    )
    .refused(
        "x-forwarded-proto",
        &[
            "routes[0].request_headers_to_remove[0]: x-forwarded-proto may not be removed \
             from requests",
            "gets no route (404)",
            "Istio's VirtualService headers.request.remove",
        ],
    );
    validate(
        "config.yaml",
        "response_headers_to_add:\n- header: {key: x-env, value: prod}\n",
    )
    .refused(
        "yaml",
        &[
            "invalid JSON: ",
            "(this looks like YAML; the filter takes JSON",
        ],
    );
    validate(
        "route-name.json",
        r#"{"routes":[{"match":{"route_name":"reviews-v2"}}]}"#,
    )
    .refused(
        "route_name",
        &[r#"routes[0].match.route_name: expected a StringMatcher object such as {"exact": "reviews-v2"}, got a string"#],
    );
}

const RENDER_CONFIG: &str = r#"{
  "request_headers_to_add": [
    {"header": {"key": "x-client-ip", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}},
    {"header": {"key": "x-start-ms", "value": "%START_TIME(%s%3f)%"}},
    {"header": {"key": "x-conn", "value": "%CONNECTION_ID%"}}],
  "response_headers_to_add": [
    {"header": {"key": "x-up", "value": "%UPSTREAM_HOST%"}}],
  "response_headers_to_remove": ["server"],
  "routes": [{"name": "api", "match": {"prefix": "/api/"},
              "request_headers_to_remove": ["x-debug"]}]}"#;

#[test]
fn render_computes_what_it_is_given_and_says_what_it_cannot() {
    let w = Work::new();
    fs::write(w.path("render.json"), RENDER_CONFIG).unwrap();
    let config = w.s("render.json");
    let run = extpack(&[
        "render",
        "--config",
        &config,
        "--request",
        "GET /api/v1",
        "-H",
        "x-debug: 1",
        "--status",
        "200",
        "--response-header",
        "server: envoy",
        "--remote-address",
        "10.0.0.7:45012",
        "--start-time",
        "2024-02-29T13:04:05.123Z",
    ])
    .ok();
    let out = &run.stdout;
    for line in [
        "route: routes[0] \"api\"\n",
        "    x-forwarded-proto: http\n",
        "    x-request-id: <not computed offline: x-request-id, generated by Envoy>\n",
        "  - x-debug: 1\n",
        "  + x-client-ip: 10.0.0.7\n",
        "  + x-start-ms: 1709211845123\n",
        "  + x-conn: <not computed offline: CONNECTION_ID>\n",
        "  + x-up: <not computed offline: UPSTREAM_HOST>\n",
        "    server: envoy   (removed by the filter, but Envoy's connection manager writes \
         server after the filters: see the warning)\n",
        "warning: response_headers_to_remove[0]: Envoy's connection manager writes server",
    ] {
        assert!(out.contains(line), "want {line:?} in:\n{out}");
    }
    assert!(!out.contains("- server"), "{out}");

    // The same as JSON; the start time defaults to now.
    let run = extpack(&["render", "--config", &config, "--json"]).ok();
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let value = |name: &str| -> String {
        report["request"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {report}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let rendered: u128 = value("x-start-ms").parse().unwrap();
    assert!(now_ms.abs_diff(rendered) < 60_000, "{rendered} vs {now_ms}");
    assert_eq!(
        value("x-client-ip"),
        "<not computed offline: DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT>"
    );
    assert_eq!(report["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn render_checks_a_table_of_requests_against_an_expected_file() {
    let w = Work::new();
    fs::write(w.path("render.json"), RENDER_CONFIG).unwrap();
    fs::write(
        w.path("cases.txt"),
        "# one request per line\n\
         GET /api/v1 -H 'x-debug: 1' --status 503 --response-header 'server: envoy'\n\
         \n\
         {\"request\": \"POST /login\", \"headers\": [\"x-debug: 1\"], \"route_name\": \"login\"}\n",
    )
    .unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "render",
            "--config",
            &w.s("render.json"),
            "--requests",
            &w.s("cases.txt"),
            "--start-time",
            "0",
            "--remote-address",
            "10.0.0.7:45012",
            "--upstream-address",
            "10.0.1.1:8080",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run_with = |extra: &[&str]| {
        let args = args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        extpack(&args)
    };
    let out = run_with(&[]).ok().stdout;
    let cases = w.s("cases.txt");
    assert!(
        out.starts_with(&format!(
            "== {cases}:2: GET /api/v1 -H 'x-debug: 1' --status 503 --response-header 'server: envoy'\nroute: routes[0] \"api\"\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "\n== {cases}:4: {{\"request\": \"POST /login\", \"headers\": [\"x-debug: 1\"], \"route_name\": \"login\"}}\nroute: none (the top level only)\n"
        )),
        "{out}"
    );
    assert!(out.contains("  + x-up: 10.0.1.1:8080\n"), "{out}");
    assert_eq!(out.matches("warning: ").count(), 1, "{out}");

    // The output as the expected file: it matches; a change is a diff and exit 1.
    fs::write(w.path("cases.expected"), &out).unwrap();
    let expected = w.s("cases.expected");
    let run = run_with(&["--expect", &expected]).ok();
    assert_eq!(
        run.stdout,
        format!("render: the output matches {expected}\n")
    );
    let run = run_with(&["--expect", &expected, "--upstream-address", "10.0.1.2:8080"]);
    assert_eq!(run.code, 2, "--upstream-address twice is a usage error");
    fs::write(
        w.path("cases.expected"),
        out.replace("x-up: 10.0.1.1:8080", "x-up: 10.0.1.9:8080"),
    )
    .unwrap();
    let run = run_with(&["--expect", &expected]);
    run.refused(
        "expect",
        &[&format!(
            "the output differs from {expected}: the diff is above"
        )],
    );
    assert!(
        run.stdout.contains(&format!(
            "--- {expected}\n+++ render output\n@@ {expected}:"
        )) && run
            .stdout
            .contains("\n-   + x-up: 10.0.1.9:8080\n+   + x-up: 10.0.1.1:8080\n"),
        "{}",
        run.stdout
    );

    // JSON: one report per request, with its line and text.
    let run = run_with(&["--json"]).ok();
    let reports: Value = serde_json::from_str(&run.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["line"], 2);
    assert_eq!(reports[1]["line"], 4);
    assert_eq!(reports[0]["route"], 0);
    assert!(reports[1]["route"].is_null());

    // A bad line is named; nothing is printed for the others.
    fs::write(w.path("bad.txt"), "GET /a\nGET /b --colour red\n").unwrap();
    let run = extpack(&[
        "render",
        "--config",
        &w.s("render.json"),
        "--requests",
        &w.s("bad.txt"),
    ]);
    run.refused(
        "bad line",
        &[&format!(
            "{}: line 2: unexpected argument '--colour' found",
            w.s("bad.txt")
        )],
    );
    assert_eq!(run.stdout, "");
    let run = extpack(&[
        "render",
        "--config",
        &w.s("render.json"),
        "--requests",
        &w.s("cases.txt"),
        "-H",
        "x-a: 1",
    ]);
    assert_eq!(
        run.code, 2,
        "a per-request flag with --requests: {}",
        run.stderr
    );
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
}

#[test]
fn existing_output_needs_force() {
    let w = Work::new();
    let layout = w.s("image");
    let first = digest_of(&w.build(&["--output", &layout]).ok());
    w.build(&["--output", &layout])
        .fails_with("image already exists: pass --force to replace it");
    let second = digest_of(&w.build(&["--output", &layout, "--force"]).ok());
    assert_eq!(first, second);
    assert_eq!(w.names(), ["config.json", "docs", "filter.wasm", "image"]);
}

#[test]
fn bad_inputs_fail_with_one_clear_line_and_leave_nothing_behind() {
    let registry = Registry::start();
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let w = Work::new();
    let module = proxy_module();
    fs::write(w.path("not.wasm"), b"#!/bin/sh\necho hello\n").unwrap();
    fs::write(w.path("truncated.wasm"), &module[..module.len() - 4]).unwrap();
    fs::write(w.path("plain.wasm"), plain_module()).unwrap();
    fs::write(
        w.path("bad-config.json"),
        r#"{"response_headers_to_add":[{"header":{"key":"x-a","value":"a\r\nb"}}]}"#,
    )
    .unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "x").unwrap();
    fs::create_dir(w.path("leaky-docs")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), w.path("leaky-docs/leak")).unwrap();
    let before = w.names();

    let ok = |name: &str| w.s(name);
    let build = |module: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "build",
            module,
            "--name",
            "header-filter",
            "--phase",
            "PostAuthZ",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        if !extra.contains(&"--priority") {
            v.extend(["--priority".into(), "10".into()]);
        }
        v
    };
    let output = ok("out");
    let archive = ok("out.tar");
    let host = registry.host();
    let cases: Vec<(&str, Vec<String>, String, i32)> = vec![
        (
            "not wasm",
            build(&ok("not.wasm"), &["--output", &output]),
            "not.wasm: not a WebAssembly module: it does not start with the \\0asm magic bytes".into(),
            1,
        ),
        (
            "truncated",
            build(&ok("truncated.wasm"), &["--archive", &archive]),
            "truncated.wasm: not valid WebAssembly: ".into(),
            1,
        ),
        (
            "no ABI exports",
            build(&ok("plain.wasm"), &["--output", &output]),
            "plain.wasm: not a proxy-wasm module: it exports no proxy_abi_version_* function".into(),
            1,
        ),
        (
            "bad phase",
            {
                let mut v = build(&ok("filter.wasm"), &["--output", &output]);
                v[5] = "AUTHN".into();
                v
            },
            "phase \"AUTHN\" is not a Maistra phase: use one of PreAuthN, PostAuthN, PreAuthZ, PostAuthZ, PreStats, PostStats".into(),
            1,
        ),
        (
            "bad priority",
            build(&ok("filter.wasm"), &["--priority", "high", "--output", &output]),
            "priority \"high\" is not an integer".into(),
            1,
        ),
        (
            "bad name",
            {
                let mut v = build(&ok("filter.wasm"), &["--output", &output]);
                v[3] = "Header_Filter".into();
                v
            },
            "name \"Header_Filter\" is not a valid extension name: use 1-63 lower-case letters".into(),
            1,
        ),
        (
            "docs with a link out",
            build(&ok("filter.wasm"), &["--docs", &ok("leaky-docs"), "--output", &output]),
            "leak is a link that leaves the folder".into(),
            1,
        ),
        (
            "bad filter config",
            build(&ok("filter.wasm"), &["--config", &ok("bad-config.json"), "--archive", &archive]),
            "bad-config.json: response_headers_to_add[0].header.value: contains CR/LF".into(),
            1,
        ),
        (
            "bad format",
            build(&ok("filter.wasm"), &["--format", "docker", "--output", &output]),
            "invalid value 'docker' for '--format <FORMAT>'\n  [possible values: compat, artifact]".into(),
            2,
        ),
        (
            "bad flag",
            vec!["inspect".into(), ok("image"), "--frobnicate".into()],
            "unexpected argument '--frobnicate' found".into(),
            2,
        ),
        (
            "registry down",
            build(&ok("filter.wasm"), &["--tag", &format!("{down}/filters/x:1"), "--plain-http"])
                .into_iter()
                .map(|a| if a == "build" { "publish".into() } else { a })
                .collect(),
            format!("cannot reach registry {down}: connection refused"),
            6,
        ),
        (
            "bad tag",
            build(&ok("filter.wasm"), &["--tag", &format!("{host}/filters/x:bad tag"), "--plain-http"])
                .into_iter()
                .map(|a| if a == "build" { "publish".into() } else { a })
                .collect(),
            "is not a valid image reference: use REGISTRY/REPOSITORY:TAG".into(),
            1,
        ),
        (
            "https to a plain-http registry",
            build(&ok("filter.wasm"), &["--tag", &format!("{host}/filters/x:1")])
                .into_iter()
                .map(|a| if a == "build" { "publish".into() } else { a })
                .collect(),
            "for a registry without TLS pass --plain-http".into(),
            6,
        ),
        (
            "missing image",
            vec!["extract".into(), format!("{host}/filters/none:1"), "--plain-http".into(), "-o".into(), ok("x.wasm")],
            format!("{host}/filters/none:1 was not found in registry {host}"),
            3,
        ),
        (
            "validate not wasm",
            vec!["validate".into(), ok("not.wasm")],
            "not a WebAssembly module".into(),
            1,
        ),
        (
            "missing module",
            build(&ok("missing.wasm"), &["--output", &output]),
            "cannot read".into(),
            1,
        ),
    ];
    for (name, args, want, code) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = extpack(&args);
        if code == 2 {
            // clap's own usage errors: exit 2, `error: ` first, then usage.
            assert_eq!(run.code, 2, "{name}: {}", run.stderr);
            assert!(
                run.stderr.starts_with("error: ") && run.stderr.contains(&want),
                "{name}: {}",
                run.stderr
            );
        } else {
            let run = std::panic::catch_unwind(|| run.fails_with_code(code, &want));
            assert!(run.is_ok(), "case {name:?} failed");
        }
        assert_eq!(w.names(), before, "{name}: something was left behind");
    }
}

#[test]
fn tampered_layout_is_refused_on_push_and_extract() {
    let w = Work::new();
    let layout = w.s("image");
    w.build(&["--output", &layout]).ok();
    // Flip a byte of the layer blob (the largest blob).
    let blobs = w.path("image/blobs/sha256");
    let layer = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&layer, bytes).unwrap();
    let out = w.s("x.wasm");
    extpack(&["extract", &layout, "-o", &out]).fails_with_code(5, "does not match its digest");
    assert!(!Path::new(&out).exists());
    extpack(&[
        "push",
        &layout,
        "--tag",
        "127.0.0.1:9/x/y:1",
        "--plain-http",
    ])
    .fails_with_code(5, "does not match its digest");
}

#[test]
fn help_teaches_with_examples() {
    for sub in [
        "build",
        "push",
        "publish",
        "inspect",
        "extract",
        "validate",
        "manifests",
    ] {
        let run = extpack(&[sub, "--help"]).ok();
        assert!(
            run.stdout.contains("Example"),
            "{sub} --help: {}",
            run.stdout
        );
    }
}

/// Every exit code is documented in `--help`, top level and per command,
/// with the same table as the README.
#[test]
fn help_lists_the_exit_codes_the_readme_lists() {
    let readme = fs::read_to_string(e2e::paths::repo_root().join("README.md")).unwrap();
    let rows = [
        (0, "success"),
        (1, "invalid input"),
        (2, "usage"),
        (3, "not found in the registry"),
        (4, "authentication or authorization refused"),
        (5, "integrity"),
        (6, "registry unreachable, or a TLS failure"),
    ];
    for args in [
        vec!["--help"],
        vec!["push", "--help"],
        vec!["manifests", "--help"],
    ] {
        let help = extpack(&args).ok().stdout;
        for (code, words) in rows {
            assert!(
                help.contains(&format!("  {code}  {words}")),
                "{args:?}: {code} {words}: {help}"
            );
        }
    }
    for (code, words) in rows {
        assert!(
            readme.contains(&format!("| {code} | {words}")),
            "README: {code} {words}"
        );
    }
}

/// ServiceMeshExtension exists only in OpenShift Service Mesh 2.1 and 2.2;
/// the help says so and never offers it for later versions.
#[test]
fn help_tells_the_truth_about_service_mesh_extension() {
    for args in [vec!["--help"], vec!["manifests", "--help"]] {
        let help = extpack(&args).ok().stdout.replace('\n', " ");
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(help.contains("2.1 and 2.2"), "{args:?}: {help}");
        assert!(help.contains("removed in 2.3"), "{args:?}: {help}");
        assert!(
            !help.contains("2.2+") && !help.contains("Maistra 2.x"),
            "{args:?}: {help}"
        );
    }
}
