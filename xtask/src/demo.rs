//! `cargo xtask demo`: the whole chain on one machine, then the headers.
//!
//! Builds the filter, publishes it as an extension image to a local
//! registry with `extpack`, pulls the module back out with `extpack
//! extract`, starts a real Envoy with `envoy-config/envoy.yaml` (addresses
//! and module path rewritten, as the compose test does) in front of an echo
//! upstream, sends one request and prints what the client and the upstream
//! saw. Everything it starts is stopped when it returns (the e2e harness'
//! `Drop` guards), on free loopback ports, in temporary folders.

use crate::{filter, paths, setup, test};
use anyhow::{anyhow, bail, Context, Result};
use e2e::{http, registry::Registry, EchoUpstream, Envoy};
use std::path::Path;
use std::process::Command;

const REQUEST_HEADERS: &[(&str, &str)] = &[
    ("x-debug", "1"),
    ("x-env", "dev"),
    // Makes the echo upstream answer with `x-powered-by: php`.
    ("x-respond-x-powered-by", "php"),
];

pub fn run() -> Result<()> {
    setup::run()?;
    let module = filter::build_filter()?;
    let extpack = test::build_extpack()?;
    // The harness reports trouble by panicking (it is test code): turn a
    // panic into this job's one-line error, after its guards stopped
    // whatever was running.
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(|| chain(&module, &extpack));
    let _ = std::panic::take_hook();
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into());
            Err(anyhow!("{}", message.lines().next().unwrap_or_default()))
        }
    }
}

fn chain(module: &Path, extpack: &Path) -> Result<()> {
    let bootstrap_path = paths::repo_root().join("envoy-config").join("envoy.yaml");
    let bootstrap = std::fs::read_to_string(&bootstrap_path)
        .with_context(|| format!("reading {}", bootstrap_path.display()))?;
    let work = tempfile::tempdir().context("creating a temporary folder")?;
    let config_json = work.path().join("filter-config.json");
    let config = filter_config(&bootstrap)?;
    std::fs::write(&config_json, &config).context("writing the filter config")?;

    let registry = Registry::start();
    let reference = format!("{}/header-filter:demo", registry.host());
    extpack_run(
        extpack,
        Command::new(extpack)
            .arg("publish")
            .arg(module)
            .arg("--manifest")
            .arg(paths::repo_root().join("packager").join("manifest.yaml"))
            .arg("--config")
            .arg(&config_json)
            .args(["--tag", &reference, "--plain-http"]),
    )?;
    say!("demo: published {reference} (docker-registry on 127.0.0.1)");
    let pulled = work.path().join("plugin.wasm");
    extpack_run(
        extpack,
        Command::new(extpack)
            .args(["extract", &reference, "--plain-http", "--output"])
            .arg(&pulled),
    )?;
    if std::fs::read(&pulled)? != std::fs::read(module)? {
        bail!("the extracted module differs from {}", module.display());
    }
    say!(
        "demo: extracted it back: {} bytes, identical",
        std::fs::metadata(&pulled)?.len()
    );

    let upstream = EchoUpstream::start();
    let yaml = e2e::template::native_envoy_config(&bootstrap, upstream.port(), &pulled);
    let envoy = Envoy::start(&yaml).map_err(|e| anyhow!("envoy did not start: {e}"))?;
    let listener = envoy.listener("ingress");
    say!(
        "demo: envoy (pid {}) runs envoy-config/envoy.yaml on {listener}",
        envoy.pid()
    );

    let response = http::get(listener, "/demo", REQUEST_HEADERS);
    let config = header_filter::Config::parse(config.as_bytes()).map_err(|e| anyhow!("{e}"))?;
    let names: Vec<&str> = [&config.request, &config.response]
        .into_iter()
        .flat_map(|rules| rules.add.iter().map(|r| r.name.as_str()))
        .collect();
    let mark = |name: &str| {
        if names.contains(&name) {
            "   <- header filter"
        } else {
            ""
        }
    };
    say!("\n$ curl -si http://{listener}/demo {}", curl_flags());
    say!(
        "HTTP/1.1 {}{}",
        response.status,
        if response.status == 200 { " OK" } else { "" }
    );
    for (name, value) in &response.headers {
        say!("{name}: {value}{}", mark(&name.to_ascii_lowercase()));
    }
    say!("\nthe upstream received:");
    for (name, value) in response.echoed_request_headers() {
        say!("  {name}: {value}{}", mark(&name));
    }
    let removed = |rules: &header_filter::config::Rules| {
        rules
            .remove
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    say!(
        "\nremoved by the filter: {} (request), {} (response)",
        removed(&config.request),
        removed(&config.response)
    );
    Ok(())
}

fn curl_flags() -> String {
    REQUEST_HEADERS
        .iter()
        .map(|(name, value)| format!("-H '{name}: {value}'"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn extpack_run(extpack: &Path, command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {}", extpack.display()))?;
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// The filter's configuration string inside the bootstrap.
fn filter_config(bootstrap: &str) -> Result<String> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(bootstrap).context("parsing envoy.yaml")?;
    let http_filters = &yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    http_filters
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|f| f["name"] == "header-filter")
        .and_then(|f| f["typed_config"]["config"]["configuration"]["value"].as_str())
        .map(str::to_string)
        .context("envoy.yaml has no header-filter configuration")
}
