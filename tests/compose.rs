//! docker-compose.yml as users run it: Debian's `docker-compose config`
//! validates it and it pins the Envoy the tests run; then Debian's
//! `docker-compose` brings it up against podman's Docker API, with local
//! stand-ins under the exact image names the file uses (no Docker Hub here),
//! and the filter's headers are checked at the client and at the upstream,
//! the registry service takes and gives back the module as an image, and
//! `down` leaves nothing behind.
//!
//! A machine where podman cannot run containers skips the container test
//! with the reason, on the terminal; with `CI=true` it fails instead.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::compose::Project;
use e2e::podman::Podman;
use e2e::{extpack, http, paths, standin};
use serde_json::Value as Json;
use serde_yaml::Value;

/// How long Envoy, the upstream and the registry get to come up.
const STARTUP: Duration = Duration::from_secs(60);

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

fn image(config: &Value, name: &str) -> String {
    service(config, name)["image"]
        .as_str()
        .unwrap_or_else(|| panic!("service {name} has no image"))
        .to_string()
}

fn list(value: &Value) -> &[Value] {
    value
        .as_sequence()
        .map(|v| v.as_slice())
        .unwrap_or_default()
}

/// Container path -> host path, from a service's `volumes`.
fn mounts(service: &Value) -> BTreeMap<String, PathBuf> {
    list(&service["volumes"])
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

/// Container port -> the address it is published on (`docker-compose config`
/// writes `IP:PORT:PORT/tcp`).
fn published(service: &Value) -> BTreeMap<u16, SocketAddr> {
    list(&service["ports"])
        .iter()
        .map(|port| {
            let spec = port.as_str().expect("ports in short syntax");
            let (host, container) = spec.rsplit_once(':').expect("HOST:CONTAINER");
            let container = container.trim_end_matches("/tcp");
            let addr = host.parse().unwrap_or_else(|_| {
                panic!("{spec}: published on {host}, not on an address of 127.0.0.1")
            });
            (container.parse().expect("a container port"), addr)
        })
        .collect()
}

/// The version of the Envoy binary the tests run (`1.40.0`).
fn envoy_version(envoy: &Path) -> String {
    let output = Command::new(envoy)
        .arg("--version")
        .output()
        .unwrap_or_else(|err| panic!("{} --version: {err}", envoy.display()));
    let text = String::from_utf8_lossy(&output.stdout);
    // "<path>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    text.split("version: ")
        .nth(1)
        .and_then(|build| build.split('/').nth(1))
        .filter(|v| v.split('.').all(|n| n.parse::<u32>().is_ok()))
        .unwrap_or_else(|| panic!("no version in `envoy --version`: {text}"))
        .to_string()
}

#[test]
fn compose_file_is_valid_pins_the_tested_envoy_and_mounts_what_exists() {
    let config = compose_config();
    let services = config["services"].as_mapping().expect("services");
    for name in ["envoy", "upstream", "registry"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let envoy = paths::envoy_bin().unwrap_or_else(|err| panic!("{err}"));
    let version = envoy_version(&envoy);
    assert_eq!(
        image(&config, "envoy"),
        format!("envoyproxy/envoy:v{version}"),
        "docker-compose.yml must pin the Envoy the tests run ({})",
        envoy.display()
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
        for addr in published(service).values() {
            assert!(
                addr.ip().is_loopback(),
                "{name} publishes {addr} beyond loopback"
            );
        }
    }
}

/// envoy-config/envoy.yaml as the envoy service mounts it.
fn bootstrap(config: &Value) -> Value {
    let path = &mounts(service(config, "envoy"))["/etc/envoy/envoy.yaml"];
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// (cluster, host, port) of every endpoint of the bootstrap's clusters.
fn cluster_endpoints(bootstrap: &Value) -> Vec<(String, String, u64)> {
    let mut endpoints = Vec::new();
    for cluster in list(&bootstrap["static_resources"]["clusters"]) {
        let name = cluster["name"].as_str().expect("cluster name");
        for group in list(&cluster["load_assignment"]["endpoints"]) {
            for endpoint in list(&group["lb_endpoints"]) {
                let address = &endpoint["endpoint"]["address"]["socket_address"];
                let host = address["address"].as_str().expect("socket address");
                let port = address["port_value"].as_u64().expect("port_value");
                endpoints.push((name.to_string(), host.to_string(), port));
            }
        }
    }
    endpoints
}

fn service_names(config: &Value) -> String {
    let services = config["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(Value::as_str).collect();
    names.join(", ")
}

/// What envoy-config/envoy.yaml names must exist in the compose topology:
/// each cluster address is a service, on a port it exposes, and the module is
/// a file the envoy service mounts.
#[test]
fn envoy_config_names_what_the_compose_file_provides() {
    let config = compose_config();
    let bootstrap = bootstrap(&config);
    let endpoints = cluster_endpoints(&bootstrap);
    assert!(!endpoints.is_empty(), "envoy.yaml has no cluster endpoint");
    for (cluster, host, port) in endpoints {
        let target = service(&config, &host);
        assert!(
            !target.is_null(),
            "envoy.yaml cluster {cluster} sends to {host:?}, which is not a compose service ({})",
            service_names(&config)
        );
        let exposed: Vec<u64> = list(&target["expose"])
            .iter()
            .filter_map(|p| p.as_str()?.parse().ok())
            .collect();
        assert!(
            exposed.contains(&port),
            "envoy.yaml cluster {cluster} sends to {host}:{port}, but service {host} exposes {exposed:?}"
        );
    }

    let module = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"][0]["typed_config"]["config"]["vm_config"]["code"]["local"]
        ["filename"]
        .as_str()
        .expect("the header filter loads a local file");
    let envoy_mounts = mounts(service(&config, "envoy"));
    assert!(
        envoy_mounts.contains_key(module),
        "envoy.yaml loads {module}, which the envoy service does not mount ({:?})",
        envoy_mounts.keys()
    );
}

/// Podman cannot run containers here: fail under CI, else say so on the
/// terminal (past the test harness's capture) and pass.
fn cannot_run_containers(reason: &str) {
    let message = format!("podman cannot run the compose topology here: {reason}");
    if std::env::var("CI").is_ok_and(|ci| ci == "true" || ci == "1") {
        panic!("{message} (CI is set, so this is a failure, not a skip)");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\nSKIPPED compose_topology_runs_in_containers: {message}\n"
    );
}

#[test]
fn compose_topology_runs_in_containers() {
    let started = Instant::now();
    let config = compose_config();
    let envoy_mounts = mounts(service(&config, "envoy"));
    let module = envoy_mounts["/etc/envoy/header_filter.wasm"].clone();
    let envoy_addr = published(service(&config, "envoy"))[&10000];
    let admin_addr = published(service(&config, "envoy"))[&9901];
    let registry_addr = published(service(&config, "registry"))[&5000];

    let podman = match Podman::open() {
        Ok(podman) => podman,
        Err(missing) => return cannot_run_containers(&missing),
    };
    podman
        .remove_leftovers()
        .unwrap_or_else(|err| panic!("{err}"));

    // The stand-ins, under the names the compose file uses.
    let envoy = paths::envoy_bin().unwrap_or_else(|err| panic!("{err}"));
    let envoy_image = image(&config, "envoy");
    assert_eq!(
        envoy_image,
        format!("envoyproxy/envoy:v{}", envoy_version(&envoy)),
        "the stand-in holds the Envoy the tests run, so the compose file must pin that version"
    );
    let recipes = [
        standin::registry(&image(&config, "registry")),
        standin::echo(
            &image(&config, "upstream"),
            Path::new(env!("CARGO_BIN_EXE_http-echo")),
        ),
        standin::envoy(
            &envoy_image,
            &envoy,
            Path::new(env!("CARGO_BIN_EXE_envoy-entrypoint")),
        ),
    ];
    for recipe in &recipes {
        let built = recipe.build(&podman).unwrap_or_else(|err| panic!("{err}"));
        eprintln!("{}: {built:?}", recipe.name());
    }
    eprintln!(
        "images ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Debian's own registry binary in a container: if that cannot run,
    // nothing of ours is at fault.
    if let Err(err) = podman.run(&[
        "run",
        "--rm",
        "--network=none",
        recipes[0].name(),
        "--version",
    ]) {
        return cannot_run_containers(&err);
    }
    // The entrypoint turns a first argument starting with `-` into envoy's.
    let version = podman
        .run(&[
            "run",
            "--rm",
            "--network=none",
            recipes[2].name(),
            "--version",
        ])
        .unwrap_or_else(|err| panic!("the envoy stand-in does not run: {err}"));
    assert!(
        version.contains(&envoy_image["envoyproxy/envoy:v".len()..]),
        "{version}"
    );

    let service = podman.serve().unwrap_or_else(|err| panic!("{err}"));
    let socket = service.socket().to_path_buf();
    // One name for every run: netavark names firewall chains after it.
    let name = "headerfiltercompose";
    let mut project = Project::new(
        &paths::repo_root().join("docker-compose.yml"),
        name,
        &service,
    );
    project.up().unwrap_or_else(|err| panic!("{err}"));
    let network = format!("{name}_default");
    let bridge = podman
        .run(&[
            "network",
            "inspect",
            "--format",
            "{{.NetworkInterface}}",
            &network,
        ])
        .unwrap_or_else(|err| panic!("{err}"))
        .trim()
        .to_string();
    let gateway = podman
        .run(&[
            "network",
            "inspect",
            "--format",
            "{{range .Subnets}}{{.Gateway}}{{end}}",
            &network,
        ])
        .unwrap_or_else(|err| panic!("{err}"))
        .trim()
        .to_string();
    // What `down` must remove is there while the project is up.
    assert!(
        Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge}"
    );
    let forwards = podman
        .firewall_leftovers(&network)
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        !forwards.is_empty(),
        "no port forwarding rules for {network}"
    );

    wait_until_ready(&podman, &project, admin_addr, &module);
    eprintln!("topology up after {:.1} s", started.elapsed().as_secs_f64());

    // Envoy runs as the envoy user (uid 101), as in the official image.
    let envoy_container = project
        .container("envoy")
        .unwrap_or_else(|err| panic!("{err}"));
    let pid = podman
        .run(&["inspect", "--format", "{{.State.Pid}}", &envoy_container])
        .unwrap_or_else(|err| panic!("{err}"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    for id in ["Uid:", "Gid:"] {
        let line = status.lines().find(|l| l.starts_with(id)).unwrap();
        assert!(
            line.split_whitespace().skip(1).all(|n| n == "101"),
            "envoy must run as the envoy user (101): {line}"
        );
    }

    // Through the published port: the request rules of envoy-config/envoy.yaml
    // at the upstream, the response rules at the client.
    let response = http::get(
        envoy_addr,
        "/demo?q=1",
        &[("x-debug", "1"), ("x-env", "dev")],
    );
    if response.status != 200 {
        panic!(
            "envoy answered {} ({}){}",
            response.status,
            response.text(),
            unresolved_clusters(&config, admin_addr)
        );
    }
    let echo: Json = serde_json::from_slice(&response.body)
        .unwrap_or_else(|err| panic!("not the upstream's echo ({err}): {}", response.text()));
    let upstream_saw = &echo["headers"];
    assert_eq!(echo["path"], "/demo", "{echo}");
    assert_eq!(upstream_saw["x-env"], "demo", "{echo}");
    assert_eq!(upstream_saw["x-client-ip"], gateway.as_str(), "{echo}");
    assert!(upstream_saw.get("x-debug").is_none(), "{echo}");
    assert_eq!(response.header("x-served-by"), Some("header-filter"));
    assert_eq!(response.header("x-request-path"), Some("/demo?q=1"));
    assert_eq!(response.header("x-cache"), Some("MISS"));
    // The upstream (like the Express server it stands in for) sends it.
    assert_eq!(response.header("x-powered-by"), None);

    // The registry service takes the module as an image, as the compose
    // file's comment says, and gives it back.
    wait_for_registry(&project, registry_addr);
    let reference = format!("localhost:{}/header-filter:dev", registry_addr.port());
    let manifest = paths::repo_root().join("packager/manifest.yaml");
    extpack::extpack(&[
        "publish",
        &module.to_string_lossy(),
        "--manifest",
        &manifest.to_string_lossy(),
        "--tag",
        &reference,
        "--plain-http",
    ])
    .ok();
    let scratch = paths::temp_dir();
    let pulled = scratch.path().join("pulled.wasm");
    extpack::extpack(&[
        "extract",
        &reference,
        "--plain-http",
        "--output",
        &pulled.to_string_lossy(),
    ])
    .ok();
    assert!(
        std::fs::read(&pulled).unwrap() == std::fs::read(&module).unwrap(),
        "the module pulled back from {reference} differs from {}",
        module.display()
    );

    project.down().unwrap_or_else(|err| panic!("{err}"));
    let leftovers = podman.leftovers().unwrap_or_else(|err| panic!("{err}"));
    assert!(leftovers.is_empty(), "left after down: {leftovers:?}");
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "the network's bridge {bridge} is still there after down"
    );
    let rules = podman
        .firewall_leftovers(&network)
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        rules.is_empty(),
        "firewall rules left after down: {rules:?}"
    );
    drop(project);
    drop(service);
    assert!(!socket.exists(), "{} is still there", socket.display());
    eprintln!("done after {:.1} s", started.elapsed().as_secs_f64());
}

/// Waits until Envoy's admin `/ready` answers 200 through its published
/// port; fails as soon as its container stops, with the end of its log and,
/// when the module is not readable by others, that cause.
fn wait_until_ready(podman: &Podman, project: &Project, admin: SocketAddr, module: &Path) {
    let deadline = Instant::now() + STARTUP;
    let state = loop {
        if let Ok(response) = http::try_get(admin, "/ready", &[]) {
            if response.status == 200 {
                return;
            }
        }
        let state = project
            .container("envoy")
            .and_then(|id| podman.run(&["inspect", "--format", "{{.State.Status}}", &id]))
            .unwrap_or_else(|err| err);
        if state.trim() != "running" {
            break format!("stopped ({}) before it was ready", state.trim());
        }
        if Instant::now() > deadline {
            break format!("was not ready after {} s", STARTUP.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mode = std::fs::metadata(module).map_or(0, |meta| meta.permissions().mode());
    let cause = if mode & 0o004 == 0 {
        format!(
            "{} is mode {:o}: the envoy user (uid 101) in the container cannot read it\n",
            module.display(),
            mode & 0o777
        )
    } else {
        String::new()
    };
    let log = project.logs("envoy");
    let tail: Vec<&str> = log.lines().rev().take(6).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    panic!("envoy {state}\n{cause}end of its log:\n{}", tail.join("\n"));
}

/// Waits until the registry's `/v2/` answers 200 through its published port.
fn wait_for_registry(project: &Project, registry: SocketAddr) {
    let deadline = Instant::now() + STARTUP;
    while Instant::now() < deadline {
        if http::try_get(registry, "/v2/", &[]).is_ok_and(|r| r.status == 200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "the registry did not answer on {registry}; its log:\n{}",
        project.logs("registry")
    );
}

/// For a failed request: the bootstrap's clusters that Envoy holds no host
/// for, with the address it was given (a name the compose network does not
/// resolve, typically).
fn unresolved_clusters(config: &Value, admin: SocketAddr) -> String {
    let clusters = match http::try_get(admin, "/clusters", &[]) {
        Ok(response) => response.text(),
        Err(err) => return format!("; envoy's admin /clusters: {err}"),
    };
    let mut causes = String::new();
    for (cluster, host, port) in cluster_endpoints(&bootstrap(config)) {
        // Each resolved host has `CLUSTER::IP:PORT::...` lines.
        let resolved = clusters.lines().any(|line| {
            line.strip_prefix(&format!("{cluster}::"))
                .and_then(|rest| rest.split("::").next())
                .is_some_and(|addr| addr.parse::<SocketAddr>().is_ok())
        });
        if !resolved {
            causes.push_str(&format!(
                "; cluster {cluster} has no host: {host}:{port} did not resolve \
                 in the compose network (services: {})",
                service_names(config)
            ));
        }
    }
    causes
}
