//! docker-compose.yml, checked without a Docker engine: Debian's
//! `docker-compose config` validates it, every file it mounts exists, its
//! ports stay on 127.0.0.1, and its topology runs natively (the same
//! envoy-config/envoy.yaml, only addresses rewritten) with the configured
//! headers seen at the client and the upstream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use e2e::registry::Registry;
use e2e::{http, paths, EchoUpstream, Envoy};
use serde_yaml::Value;

/// The compose file as `docker-compose config` normalizes it.
fn compose_config() -> Value {
    let output = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config"])
        .current_dir(paths::repo_root())
        .output()
        .expect("docker-compose runs (cargo xtask setup installs it)");
    assert!(
        output.status.success(),
        "docker-compose config refused the file:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_yaml::from_slice(&output.stdout).expect("docker-compose config prints YAML")
}

fn service<'a>(config: &'a Value, name: &str) -> &'a Value {
    &config["services"][name]
}

/// Container path -> host path, from a service's `volumes`.
fn mounts(service: &Value) -> BTreeMap<String, PathBuf> {
    service["volumes"]
        .as_sequence()
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|volume| {
            let spec = volume.as_str().expect("volumes in short syntax");
            let mut parts = spec.split(':');
            let host = PathBuf::from(parts.next().unwrap());
            let container = parts.next().expect("host:container").to_string();
            (container, host)
        })
        .collect()
}

#[test]
fn compose_file_is_valid_and_everything_it_mounts_exists() {
    let config = compose_config();
    let services = config["services"].as_mapping().expect("services");
    for name in ["envoy", "upstream", "registry"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let image = service(&config, "envoy")["image"].as_str().unwrap();
    let tag = image
        .strip_prefix("envoyproxy/envoy:v1.3")
        .expect("official envoy 1.3x image");
    assert!(
        tag.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "pinned tag: {image}"
    );
    for (name, service) in services {
        let name = name.as_str().unwrap();
        for (container, host) in mounts(service) {
            assert!(
                host.exists(),
                "{name} mounts {} at {container}: missing",
                host.display()
            );
        }
        for port in service["ports"]
            .as_sequence()
            .map(|v| v.as_slice())
            .unwrap_or_default()
        {
            let port = port.as_str().unwrap();
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name} publishes {port} beyond loopback"
            );
        }
    }
}

#[test]
fn compose_topology_runs_natively() {
    let config = compose_config();
    let envoy_mounts = mounts(service(&config, "envoy"));
    let bootstrap = std::fs::read_to_string(&envoy_mounts["/etc/envoy/envoy.yaml"]).unwrap();
    let module = &envoy_mounts["/etc/envoy/header_filter.wasm"];
    assert_eq!(
        service(&config, "upstream")["environment"]["HTTP_PORT"],
        "8080"
    );

    let upstream = EchoUpstream::start();
    let registry = Registry::start();
    let envoy = Envoy::start(&e2e::template::native_envoy_config(
        &bootstrap,
        upstream.port(),
        module,
    ))
    .unwrap_or_else(|e| panic!("{e}\n{}", e.log()));

    let response = http::get(
        envoy.listener("ingress"),
        "/demo",
        &[
            ("x-debug", "1"),
            ("x-env", "dev"),
            ("x-respond-x-powered-by", "php"),
        ],
    );
    assert_eq!(response.status, 200);
    // At the upstream: the request rules of envoy-config/envoy.yaml.
    assert_eq!(response.echoed("x-env"), ["demo"]);
    assert_eq!(response.echoed("x-client-ip"), ["127.0.0.1"]);
    assert!(response.echoed("x-debug").is_empty());
    // At the client: the response rules.
    assert_eq!(response.header("x-served-by"), Some("header-filter"));
    assert_eq!(response.header("x-request-path"), Some("/demo"));
    assert_eq!(response.header("x-cache"), Some("MISS"));
    assert_eq!(response.header("x-powered-by"), None);

    // The registry service's role: the module goes there as an image.
    let status = Command::new(paths::extpack_bin())
        .arg("publish")
        .arg(module)
        .args([
            "--name",
            "header-filter",
            "--phase",
            "PostAuthZ",
            "--priority",
            "10",
            "--plain-http",
        ])
        .arg("--tag")
        .arg(format!("{}/header-filter:dev", registry.host()))
        .status()
        .unwrap();
    assert!(status.success(), "extpack publish to the registry service");
}
