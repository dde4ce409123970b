//! Before anything is measured: every listener answers 200 to several
//! requests on one connection, every adding listener adds exactly the three
//! headers each time, and `none` adds none. A bench of a filter that does
//! nothing, or that fails after its first request or its first timer tick,
//! would be worthless.

use super::client::Connection;
use super::config::HEADERS;
use super::envoy::Envoy;
use anyhow::{bail, Context, Result};
use std::time::Duration;

const REQUESTS: u32 = 20;
/// Longer than a proxy-wasm tick (filters often set 1 s), so a module whose
/// timer callback traps (and fails closed) is caught before measuring.
const PAST_A_TICK: Duration = Duration::from_millis(1500);

pub fn headers(envoy: &Envoy, listeners: &[String]) -> Result<()> {
    check_all(envoy, listeners)?;
    std::thread::sleep(PAST_A_TICK);
    check_all(envoy, listeners)
}

fn check_all(envoy: &Envoy, listeners: &[String]) -> Result<()> {
    for name in listeners {
        check(envoy, name).with_context(|| {
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
            format!(
                "listener {name} failed the header check; envoy errors:\n{}",
                log[log.len().saturating_sub(20)..].join("\n")
            )
        })?;
    }
    Ok(())
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
