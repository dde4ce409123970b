//! `cargo xtask demo`: the filter in a real Envoy, on this machine.
//!
//! Without arguments, the whole chain: builds the filter, publishes it as an
//! extension image to a local registry with `extpack`, pulls the module back
//! out with `extpack extract`, starts a real Envoy with
//! `envoy-config/envoy.yaml` (addresses and module path rewritten, as the
//! compose test does) in front of an echo upstream, sends one request and
//! prints what the client and the upstream saw.
//!
//! With `--config FILE.json`, the user's configuration in the same Envoy
//! bootstrap instead of the shipped one, and the user's requests
//! (`--request`, `-H`). Each request also goes to a second listener that is
//! the same without the filter, so what the filter changed is told apart from
//! what Envoy and the upstream do anyway. A configuration the filter refuses
//! ends the run with the filter's own error line from Envoy's log.
//!
//! Everything it starts is stopped when it returns (the e2e harness' `Drop`
//! guards), on free loopback ports, in temporary folders.

use crate::{filter, paths, setup, test};
use anyhow::{anyhow, bail, Context, Result};
use e2e::{http, registry::Registry, EchoUpstream, Envoy};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

const REQUEST_HEADERS: &[(&str, &str)] = &[
    ("x-debug", "1"),
    ("x-env", "dev"),
    // Makes the echo upstream answer with `x-powered-by: php`.
    ("x-respond-x-powered-by", "php"),
];

pub const HELP: &str = "\
cargo xtask demo: the header filter in a real Envoy, in front of an echo upstream

Usage:
  cargo xtask demo
  cargo xtask demo --config FILE.json [--request 'METHOD PATH' [-H 'NAME: VALUE']...]...
                   [--envoy X.Y] [--module FILE.wasm]

Without arguments: builds the filter, publishes it to a local docker-registry with
extpack, extracts it back, runs it in Envoy with envoy-config/envoy.yaml and prints
one request as the client and the upstream saw it.

With --config: runs envoy-config/envoy.yaml with FILE.json as the filter's
configuration, sends each request and prints, for each, the response the client got
and the request headers the upstream got. `+` marks a header the filter added (or
the new value it wrote), `-` one it removed (or the value it replaced), found by
sending the same request through a listener without the filter. Then it stops
Envoy and the upstream. A configuration the filter refuses prints the filter's
error line (as Envoy logs it) and exits non-zero.

Options:
  --config FILE.json       the filter configuration (JSON, any form the filter takes)
  --request 'METHOD PATH'  a request to send (repeat for more); PATH may hold a
                           query string. Default: the demo's own GET /demo with
                           x-debug: 1, x-env: dev, x-respond-x-powered-by: php
  -H, --header 'NAME: VALUE'
                           a header of the request given last (before any
                           --request: of a GET /)
  --envoy X.Y              the Envoy to run: 1.40 (default), or 1.36, 1.37, 1.38, 1.39,
                           what Istio 1.28 to 1.31 and Envoy Gateway 1.6 to 1.9 ship
                           (installed by `cargo xtask setup`)
  --module FILE.wasm       run this module instead of building target/header_filter.wasm
  -h, --help               this text

The echo upstream answers 200 with a JSON echo of the request headers. A request
header x-respond-NAME: VALUE makes it answer with NAME: VALUE too, and
x-echo-status: CODE with that status, to try response rules; the filter sees those
request headers as well.

Example:
  cargo xtask demo --config my-config.json --request 'GET /api/v1?debug=1' \\
      -H 'x-user: alice' --request 'POST /login' -H 'x-echo-status: 503'";

/// What `cargo xtask demo ARGS` asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Demo {
    Help,
    /// The whole chain (no arguments).
    Chain,
    /// The user's configuration.
    Try(TryArgs),
}

/// `--config` and what goes with it.
#[derive(Debug, PartialEq, Eq)]
pub struct TryArgs {
    pub config: PathBuf,
    pub requests: Vec<Request>,
    pub module: Option<PathBuf>,
    /// `--envoy`: `None` for the main one.
    pub envoy: Option<setup::Envoy>,
}

/// One request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    fn parse(line: &str) -> Result<Request> {
        let bad = || {
            anyhow!("--request {line:?} is not METHOD PATH: e.g. --request 'GET /api/v1?debug=1'")
        };
        let (method, path) = line.trim().split_once(' ').ok_or_else(bad)?;
        let path = path.trim();
        if !is_token(method) || !path.starts_with('/') || path.bytes().any(|b| b <= b' ') {
            return Err(bad());
        }
        Ok(Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
        })
    }

    /// How the request is shown: `GET /x -H 'a: 1'`.
    fn describe(&self) -> String {
        std::iter::once(format!("{} {}", self.method, self.path))
            .chain(
                self.headers
                    .iter()
                    .map(|(name, value)| format!("-H '{name}: {value}'")),
            )
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// An HTTP token (RFC 9110): what a method or a header name may be.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_header(text: &str) -> Result<(String, String)> {
    let bad = || anyhow!("-H {text:?} is not NAME: VALUE: e.g. -H 'x-user: alice'");
    let (name, value) = text.split_once(':').ok_or_else(bad)?;
    let (name, value) = (name.trim(), value.trim());
    if !is_token(name) || value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(bad());
    }
    Ok((name.to_ascii_lowercase(), value.to_string()))
}

impl Demo {
    /// Parses the arguments after `demo` (`--flag value` or `--flag=value`).
    pub fn parse(args: &[String]) -> Result<Demo> {
        if args.is_empty() {
            return Ok(Demo::Chain);
        }
        let mut config = None;
        let mut module = None;
        let mut envoy = None;
        let mut requests: Vec<Request> = Vec::new();
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            if matches!(flag, "-h" | "--help" | "help") {
                return Ok(Demo::Help);
            }
            let mut value = || -> Result<String> {
                match inline.clone() {
                    Some(value) => Ok(value),
                    None => rest.next().cloned().ok_or_else(|| {
                        anyhow!("{flag} needs a value; see `cargo xtask demo --help`")
                    }),
                }
            };
            match flag {
                "--config" => config = Some(PathBuf::from(value()?)),
                "--module" => module = Some(PathBuf::from(value()?)),
                "--envoy" => envoy = Some(setup::Envoy::named(&value()?)?),
                "--request" => requests.push(Request::parse(&value()?)?),
                "-H" | "--header" => {
                    let header = parse_header(&value()?)?;
                    if requests.is_empty() {
                        requests.push(Request::parse("GET /")?);
                    }
                    requests
                        .last_mut()
                        .expect("one request")
                        .headers
                        .push(header);
                }
                other => bail!(
                    "unknown argument `{other}` for demo (accepted: --config, --request, -H, \
                     --envoy, --module, --help)"
                ),
            }
        }
        let config = config.ok_or_else(|| {
            anyhow!(
                "--request, -H, --envoy and --module need --config FILE.json; see `cargo xtask \
                 demo --help`"
            )
        })?;
        Ok(Demo::Try(TryArgs {
            config,
            requests,
            module,
            envoy,
        }))
    }
}

pub fn run(args: &[String]) -> Result<()> {
    match Demo::parse(args)? {
        Demo::Help => {
            say!("{HELP}");
            Ok(())
        }
        Demo::Chain => {
            setup::run()?;
            let module = filter::build_filter()?;
            let extpack = test::build_extpack()?;
            guarded(|| chain(&module, &extpack))
        }
        Demo::Try(args) => {
            let module = match &args.module {
                Some(module) => module.clone(),
                None => {
                    setup::run()?;
                    filter::build_filter()?
                }
            };
            if let Some(envoy) = args.envoy {
                let elf = match envoy.elf() {
                    Some(elf) => elf,
                    None => {
                        setup::run()?;
                        envoy.elf().with_context(|| {
                            format!("Envoy {} is not installed after setup", envoy.version)
                        })?
                    }
                };
                // Read by the harness each time it starts an Envoy; nothing
                // else runs yet.
                std::env::set_var("ENVOY_BIN", elf);
            }
            guarded(|| try_config(&args, &module, &mut std::io::stdout().lock()))
        }
    }
}

/// Runs `job`, turning a panic of the e2e harness (test code reports trouble
/// by panicking) into this job's one-line error, after its guards stopped
/// whatever was running.
fn guarded(job: impl FnOnce() -> Result<()> + std::panic::UnwindSafe) -> Result<()> {
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(job);
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

/// Headers whose value differs between any two requests (or between the two
/// listeners), so only their presence tells what the filter did.
const VOLATILE: &[&str] = &[
    "content-length",
    "date",
    "x-envoy-upstream-service-time",
    "x-request-id",
];

/// The listener without the filter.
const BASELINE: &str = "baseline";

/// `--config`: the user's configuration in `envoy-config/envoy.yaml`, the
/// requests through it and through the same listener without the filter.
pub fn try_config(args: &TryArgs, module: &Path, out: &mut dyn Write) -> Result<()> {
    let shown = args.config.display();
    let config = std::fs::read(&args.config).with_context(|| format!("cannot read {shown}"))?;
    let config = String::from_utf8(config).map_err(|_| anyhow!("{shown} is not UTF-8 text"))?;
    if !module.is_file() {
        bail!(
            "{} is missing: run `cargo xtask build-filter`",
            module.display()
        );
    }
    let upstream = EchoUpstream::start();
    let yaml = bootstrap_with(&config, upstream.port(), module)?;
    let envoy = match Envoy::start(&yaml) {
        Ok(envoy) => envoy,
        Err(error) => bail!("{shown}: {}", refusal(&error)),
    };
    let listener = envoy.listener("ingress");
    let baseline = envoy.listener(BASELINE);
    writeln!(
        out,
        "demo: envoy {} (pid {}) runs envoy-config/envoy.yaml with {shown} on {listener} \
         (the same without the filter on {baseline}), echo upstream on {}",
        {
            let (major, minor) = e2e::envoy::version();
            format!("{major}.{minor}")
        },
        envoy.pid(),
        upstream.addr()
    )?;
    let own = [Request {
        method: "GET".into(),
        path: "/demo".into(),
        headers: REQUEST_HEADERS
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    }];
    let requests = if args.requests.is_empty() {
        &own[..]
    } else {
        &args.requests[..]
    };
    for request in requests {
        writeln!(out, "\n== {}", request.describe())?;
        let before = upstream.request_count();
        let with = send(listener, listener, request)?;
        let reached = upstream.request_count() > before;
        let without = send(baseline, listener, request)?;
        let status = if with.status == without.status {
            String::new()
        } else {
            format!(" (without the filter: {})", without.status)
        };
        writeln!(out, "client received: {}{status}", with.status)?;
        for line in diff(&lowered(&with.headers), &lowered(&without.headers)) {
            writeln!(out, "{line}")?;
        }
        match (reached, echoed(&with), echoed(&without)) {
            (true, Some(seen), Some(plain)) => {
                writeln!(out, "upstream received:")?;
                for line in diff(&seen, &plain) {
                    writeln!(out, "{line}")?;
                }
            }
            _ => writeln!(
                out,
                "upstream received: nothing (Envoy answered itself: {})",
                with.text().lines().next().unwrap_or("no body")
            )?,
        }
    }
    let pid = envoy.pid();
    drop(envoy);
    drop(upstream);
    writeln!(
        out,
        "\ndemo: stopped envoy (pid {pid}) and the echo upstream"
    )?;
    Ok(())
}

/// The request, sent to `addr` with the `host` the filtered listener gets,
/// so both listeners see the same request.
fn send(addr: SocketAddr, host: SocketAddr, request: &Request) -> Result<http::Response> {
    let host = host.to_string();
    let mut headers: Vec<(&str, &str)> = vec![("host", &host)];
    headers.extend(
        request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str())),
    );
    http::request(addr, &request.method, &request.path, &headers, &[])
        .with_context(|| format!("{} {} to {addr}", request.method, request.path))
}

fn lowered(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect()
}

/// The echo upstream's account of the request headers, if the body is one.
fn echoed(response: &http::Response) -> Option<Vec<(String, String)>> {
    serde_json::from_slice(&response.body).ok()
}

/// `with` in order, each line marked against `without`: `    ` kept, `  + `
/// only with the filter; then `  - ` for what only `without` has.
fn diff(with: &[(String, String)], without: &[(String, String)]) -> Vec<String> {
    let mut left: Vec<Option<&(String, String)>> = without.iter().map(Some).collect();
    let mut lines = Vec::new();
    for (name, value) in with {
        let volatile = VOLATILE.contains(&name.as_str());
        let found = left
            .iter_mut()
            .find(|entry| entry.is_some_and(|(n, v)| n == name && (volatile || v == value)));
        let mark = match found {
            Some(entry) => {
                *entry = None;
                "    "
            }
            None => "  + ",
        };
        lines.push(format!("{mark}{name}: {value}"));
    }
    lines.extend(
        left.into_iter()
            .flatten()
            .map(|(n, v)| format!("  - {n}: {v}")),
    );
    lines
}

/// Why Envoy did not start: the filter's own error line when it refused the
/// configuration, else the first error Envoy logged.
fn refusal(error: &e2e::StartError) -> String {
    let log = error.log();
    const FILTER: &str = "header-filter: invalid configuration: ";
    if let Some(line) = log.lines().find(|l| l.contains(FILTER)) {
        let at = line.find(FILTER).expect("found");
        return format!("the filter refused it: {}", &line[at..]);
    }
    match log
        .lines()
        .find(|l| l.contains("[error]") || l.contains("[critical]"))
    {
        Some(line) => format!("envoy did not start: {}", line.trim()),
        None => format!(
            "envoy did not start: {}",
            error.to_string().lines().next().unwrap_or("")
        ),
    }
}

/// `envoy-config/envoy.yaml` made to run here (addresses, module path), with
/// `config` as the filter's configuration, and a second listener,
/// `baseline`, that is the same without the filter.
fn bootstrap_with(config: &str, upstream_port: u16, module: &Path) -> Result<String> {
    let path = paths::repo_root().join("envoy-config").join("envoy.yaml");
    let shipped =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let native = e2e::template::native_envoy_config(&shipped, upstream_port, module);
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&native).context("parsing envoy.yaml")?;
    let shape = || anyhow!("envoy-config/envoy.yaml no longer has one listener with header-filter");
    let listeners = doc
        .get_mut("static_resources")
        .and_then(|r| r.get_mut("listeners"))
        .and_then(serde_yaml::Value::as_sequence_mut)
        .ok_or_else(shape)?;
    let listener = listeners.first_mut().ok_or_else(shape)?;
    let mut baseline = listener.clone();
    fn filters(listener: &mut serde_yaml::Value) -> Option<&mut serde_yaml::Sequence> {
        listener
            .get_mut("filter_chains")?
            .get_mut(0)?
            .get_mut("filters")?
            .get_mut(0)?
            .get_mut("typed_config")?
            .get_mut("http_filters")?
            .as_sequence_mut()
    }
    let ours = filters(listener)
        .and_then(|f| f.iter_mut().find(|f| f["name"] == "header-filter"))
        .and_then(|f| {
            f.get_mut("typed_config")?
                .get_mut("config")?
                .get_mut("configuration")
        })
        .and_then(|c| c.get_mut("value"))
        .ok_or_else(shape)?;
    *ours = serde_yaml::Value::String(config.to_string());
    filters(&mut baseline)
        .ok_or_else(shape)?
        .retain(|f| f["name"] != "header-filter");
    baseline["name"] = BASELINE.into();
    listeners.push(baseline);
    serde_yaml::to_string(&doc).context("writing the Envoy config")
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
    say!("\ntry your own configuration: cargo xtask demo --config FILE.json (see --help)");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Demo> {
        Demo::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn headers_belong_to_the_request_given_before_them() {
        let parsed = parse(&[
            "--config",
            "c.json",
            "--request",
            "GET /a?x=1",
            "-H",
            "X-User: alice",
            "--header=x-b: 2",
            "--request=POST /login",
            "-H",
            "x-echo-status: 503",
        ])
        .unwrap();
        assert_eq!(
            parsed,
            Demo::Try(TryArgs {
                config: "c.json".into(),
                requests: vec![
                    request("GET", "/a?x=1", &[("x-user", "alice"), ("x-b", "2")]),
                    request("POST", "/login", &[("x-echo-status", "503")]),
                ],
                module: None,
                envoy: None,
            })
        );
        // Headers before any --request make a GET /.
        let Demo::Try(args) = parse(&["-H", "x-a: 1", "--config", "c.json"]).unwrap() else {
            panic!("a config run");
        };
        assert_eq!(args.requests, [request("GET", "/", &[("x-a", "1")])]);
        assert_eq!(parse(&[]).unwrap(), Demo::Chain);
        assert_eq!(
            parse(&["--config", "c.json", "--help"]).unwrap(),
            Demo::Help
        );
        let Demo::Try(args) = parse(&["--config=c.json", "--module", "m.wasm"]).unwrap() else {
            panic!("a config run");
        };
        assert!(args.requests.is_empty(), "the demo's own request then");
        assert_eq!(args.module, Some(PathBuf::from("m.wasm")));
        let Demo::Try(args) = parse(&["--config=c.json", "--envoy", "1.37"]).unwrap() else {
            panic!("a config run");
        };
        assert_eq!(args.envoy.map(|e| e.version), Some("1.37.0"));
    }

    #[test]
    fn bad_arguments_say_what_is_expected() {
        let cases: &[(&[&str], &str)] = &[
            (&["--config"], "--config needs a value"),
            (&["--request", "GET /"], "need --config FILE.json"),
            (&["--config", "c", "--request", "/x"], "is not METHOD PATH"),
            (
                &["--config", "c", "--request", "GET x"],
                "is not METHOD PATH",
            ),
            (&["--config", "c", "-H", "novalue"], "is not NAME: VALUE"),
            (
                &["--config", "c", "-H", "bad name: 1"],
                "is not NAME: VALUE",
            ),
            (
                &["--config", "c", "--status", "5"],
                "unknown argument `--status`",
            ),
            (
                &["--config", "c", "--envoy", "1.35"],
                "no Envoy `1.35` here",
            ),
        ];
        for (args, want) in cases {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
            assert!(!err.contains('\n'), "{args:?}: one line: {err}");
        }
    }

    #[test]
    fn diff_marks_what_only_the_filter_has_and_what_it_removed() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        let with = pairs(&[
            ("x-request-id", "aaa"),
            ("x-env", "prod"),
            ("x-same", "1"),
            ("x-new", "n"),
        ]);
        let without = pairs(&[
            ("x-request-id", "bbb"),
            ("x-env", "dev"),
            ("x-same", "1"),
            ("x-debug", "1"),
        ]);
        assert_eq!(
            diff(&with, &without),
            [
                "    x-request-id: aaa",
                "  + x-env: prod",
                "    x-same: 1",
                "  + x-new: n",
                "  - x-env: dev",
                "  - x-debug: 1",
            ]
        );
    }

    /// Processes this test process started that are still alive and named
    /// `envoy` (the harness reaps what it stops, so none may be left).
    fn envoy_children() -> Vec<u32> {
        let me = std::process::id().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // pid (comm) state ppid ...
                let Some((comm, rest)) = stat.split_once(") ") else {
                    return false;
                };
                comm.ends_with("(envoy") && rest.split(' ').nth(1) == Some(me.as_str())
            })
            .collect()
    }

    /// One run in a real Envoy: the filter's changes are marked on both
    /// sides, Envoy's and the upstream's own headers are not, and nothing is
    /// left running; then a configuration the filter refuses ends with the
    /// filter's error line and leaves nothing running either.
    #[test]
    fn a_config_runs_in_envoy_and_a_bad_one_gets_the_filters_error() {
        let module = e2e::paths::filter_wasm();
        // The check below sees a running Envoy of this process.
        let probe = Envoy::start(&e2e::envoy_yaml::bootstrap_yaml(&[], 9, "")).unwrap();
        assert_eq!(envoy_children(), [probe.pid()]);
        drop(probe);
        assert_eq!(envoy_children(), Vec::<u32>::new());
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"request_headers_to_add": [{"header": {"key": "x-env", "value": "prod"},
                                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
                "request_headers_to_remove": ["x-debug"],
                "routes": [{"match": {"prefix": "/api/"},
                            "response_headers_to_add": [{"header": {"key": "x-api", "value": "yes"}}]}],
                "response_headers_to_remove": ["x-powered-by"]}"#,
        )
        .unwrap();
        let args = TryArgs {
            config: config.clone(),
            requests: vec![
                request(
                    "GET",
                    "/api/v1",
                    &[
                        ("x-debug", "1"),
                        ("x-env", "dev"),
                        ("x-respond-x-powered-by", "php"),
                    ],
                ),
                request("GET", "/other", &[]),
            ],
            module: None,
            envoy: None,
        };
        let mut out = Vec::new();
        try_config(&args, &module, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let (first, second) = out.split_once("\n== GET /other").expect("two requests");
        let (client, upstream) = first.split_once("upstream received:").expect(&out);
        assert!(first.contains("== GET /api/v1 -H 'x-debug: 1'"), "{out}");
        assert!(client.contains("client received: 200\n"), "{out}");
        assert!(client.contains("\n  + x-api: yes\n"), "{out}");
        assert!(client.contains("\n  - x-powered-by: php\n"), "{out}");
        assert!(client.contains("\n    x-upstream: echo\n"), "{out}");
        assert!(upstream.contains("\n  + x-env: prod\n"), "{out}");
        assert!(upstream.contains("\n  - x-env: dev\n"), "{out}");
        assert!(upstream.contains("\n  - x-debug: 1\n"), "{out}");
        assert!(upstream.contains("\n    x-request-id: "), "{out}");
        assert!(
            upstream.contains("\n    x-forwarded-proto: http\n"),
            "{out}"
        );
        assert!(!second.contains("x-api"), "/other takes no route: {out}");
        assert!(second.contains("\n  + x-env: prod\n"), "{out}");
        assert!(out.contains("demo: stopped envoy (pid "), "{out}");
        assert_eq!(envoy_children(), Vec::<u32>::new(), "envoy left running");

        std::fs::write(
            &config,
            r#"{"request_headers_to_add": [{"header": {"key": ":path", "value": "/x"}}]}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        let err = try_config(&args, &module, &mut out)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "{}: the filter refused it: header-filter: invalid configuration: \
                 request_headers_to_add[0].header.key: ",
                config.display()
            )),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
        assert!(out.is_empty(), "nothing printed before the error");
        assert_eq!(envoy_children(), Vec::<u32>::new(), "envoy left running");
    }
}
