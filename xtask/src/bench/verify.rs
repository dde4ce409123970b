//! Before anything is measured: every listener answers 200 to several
//! requests on one connection, every adding listener adds exactly the three
//! headers each time, and `none` adds none. A bench of a filter that does
//! nothing, or that fails after its first request or its first timer tick,
//! would be worthless.
//!
//! The mix listeners (`scenario.rs`) must do the same thing three ways, or
//! comparing their costs means nothing: every request of the mix, sent to
//! each, must take its route and get the same response headers and the
//! same request headers upstream (echoed back by `direct`), the baseline
//! none of them.

use super::client::{Connection, Response};
use super::config::{Front, Traffic, HEADERS};
use super::envoy::Envoy;
use super::scenario::{self, MixRequest};
use anyhow::{bail, Context, Result};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const REQUESTS: u32 = 20;
/// Longer than a proxy-wasm tick (filters often set 1 s), so a module whose
/// timer callback traps (and fails closed) is caught before measuring.
const PAST_A_TICK: Duration = Duration::from_millis(1500);

/// Every listener of `fronts`, by its traffic; `baseline` is the mix
/// listener that does no header work.
pub fn headers(envoy: &Envoy, fronts: &[Front], baseline: &str) -> Result<()> {
    check_all(envoy, fronts, baseline)?;
    std::thread::sleep(PAST_A_TICK);
    check_all(envoy, fronts, baseline)
}

fn check_all(envoy: &Envoy, fronts: &[Front], baseline: &str) -> Result<()> {
    let mix: Vec<&str> = fronts
        .iter()
        .filter(|front| front.traffic == Traffic::Mix)
        .map(|front| front.name.as_str())
        .collect();
    if !mix.is_empty() {
        check_mix(envoy, &mix, baseline)
            .with_context(|| format!("the mix check failed; envoy errors:\n{}", errors(envoy)))?;
    }
    for front in fronts.iter().filter(|f| f.traffic == Traffic::Constant) {
        check(envoy, &front.name).with_context(|| {
            format!(
                "listener {} failed the header check; envoy errors:\n{}",
                front.name,
                errors(envoy)
            )
        })?;
    }
    Ok(())
}

/// The last error and warning lines of Envoy's log.
fn errors(envoy: &Envoy) -> String {
    let log: Vec<String> = envoy
        .log()
        .lines()
        .filter(|line| {
            ["[error]", "[critical]", "[warning]"]
                .iter()
                .any(|level| line.contains(level))
        })
        .map(str::to_string)
        .collect();
    log[log.len().saturating_sub(20)..].join("\n")
}

/// Each mix request to every listener of `names`: the baseline gets the
/// upstream's headers untouched, every other listener the request's route
/// and status, and all of them the same headers.
fn check_mix(envoy: &Envoy, names: &[&str], baseline: &str) -> Result<()> {
    let mut connections = names
        .iter()
        .map(|name| Ok((*name, Connection::open(envoy.listener(name)?)?)))
        .collect::<Result<Vec<_>>>()?;
    for request in scenario::REQUESTS {
        let mut headers = request.headers.to_vec();
        headers.push((scenario::ECHO, "1"));
        let mut reference: Option<(&str, Vec<(String, String)>)> = None;
        for (name, connection) in &mut connections {
            let response = connection.send(scenario::HOST, request.path, &headers)?;
            let seen =
                observed(&response).with_context(|| format!("{name} on {}", request.path))?;
            let describe = || format!("{name}: GET {} {:?}", request.path, request.headers);
            if response.status != request.status {
                bail!(
                    "{}: status {}, expected {}",
                    describe(),
                    response.status,
                    request.status
                );
            }
            if *name == baseline {
                if response.values(scenario::POWERED_BY.0) != [scenario::POWERED_BY.1]
                    || !response.values("x-route").is_empty()
                {
                    bail!("{}: the baseline changed headers: {seen:?}", describe());
                }
                continue;
            }
            check_route(request, &response).with_context(describe)?;
            match &reference {
                None => reference = Some((name, seen)),
                Some((first, expected)) if *expected != seen => bail!(
                    "{}: headers differ from {first}'s\n{first}: {expected:?}\n{name}: {seen:?}",
                    describe()
                ),
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn check_route(request: &MixRequest, response: &Response) -> Result<()> {
    if response.values("x-route") != [request.route] {
        bail!(
            "x-route is {:?}, expected {}",
            response.values("x-route"),
            request.route
        );
    }
    if !response.values(scenario::POWERED_BY.0).is_empty() {
        bail!("{} was not removed", scenario::POWERED_BY.0);
    }
    Ok(())
}

/// The response's headers that the header work decides, sorted by name
/// (values of one name keep their order); times and client ports, which
/// differ between requests, checked for shape and replaced by placeholders.
fn observed(response: &Response) -> Result<Vec<(String, String)>> {
    const TRANSPORT: [&str; 4] = [
        "date",
        "server",
        "content-length",
        "x-envoy-upstream-service-time",
    ];
    let mut seen = Vec::new();
    for (name, value) in &response.headers {
        if TRANSPORT.contains(&name.as_str()) {
            continue;
        }
        let value = if scenario::TIMED.contains(&name.as_str()) {
            recent_seconds(value).with_context(|| format!("{name}: {value}"))?
        } else if scenario::WITH_PORT.contains(&name.as_str()) {
            without_port(value).with_context(|| format!("{name}: {value}"))?
        } else {
            value.clone()
        };
        seen.push((name.clone(), value));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(seen)
}

/// `t=SECONDS` within a minute of now, as `t=<now>`.
fn recent_seconds(value: &str) -> Result<String> {
    let seconds: u64 = value
        .strip_prefix("t=")
        .and_then(|s| s.parse().ok())
        .context("expected t=SECONDS")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    if now.abs_diff(seconds) > 60 {
        bail!("{seconds} is not within a minute of now ({now})");
    }
    Ok("t=<now>".to_string())
}

/// `127.0.0.1:PORT` as `127.0.0.1:<port>`.
fn without_port(value: &str) -> Result<String> {
    let (address, port) = value.rsplit_once(':').context("expected ADDRESS:PORT")?;
    port.parse::<u16>().context("expected a port")?;
    Ok(format!("{address}:<port>"))
}

fn check(envoy: &Envoy, name: &str) -> Result<()> {
    let mut connection = Connection::open(envoy.listener(name)?)?;
    for attempt in 1..=REQUESTS {
        let response = connection.get("/")?;
        if response.status != 200 {
            bail!("request {attempt} answered {}, not 200", response.status);
        }
        for (key, value) in HEADERS {
            let values = response.values(key);
            let expected: &[&str] = if name == "none" { &[] } else { &[value] };
            if values != expected {
                bail!(
                    "request {attempt}: response header {key} is {values:?}, expected {expected:?}; \
                     headers: {:?}",
                    response.headers
                );
            }
        }
    }
    Ok(())
}
