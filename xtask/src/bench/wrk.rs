//! Secondary figures from `wrk` against a plain Envoy (no valgrind):
//! requests/s, p50 and p99 latency, and Envoy CPU per request from
//! `/proc/PID/stat` (user + system, all threads) over each run. Listeners
//! are interleaved within each round; figures are medians over rounds.

use super::envoy::Envoy;
use super::stats::median;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::process::Command;

/// Medians over rounds for one listener.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub requests_per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu_us_per_request: f64,
    /// Requests/s of each round, to show the spread.
    pub rounds_rps: Vec<f64>,
}

/// One wrk run's figures.
struct Run {
    requests: u64,
    requests_per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

pub fn measure(
    envoy: &Envoy,
    listeners: &[String],
    rounds: u32,
    seconds: u32,
) -> Result<BTreeMap<String, Figures>> {
    let mut samples: BTreeMap<String, Vec<(Run, f64)>> = BTreeMap::new();
    for round in 0..rounds as usize {
        let mut order = listeners.to_vec();
        order.rotate_left(round % listeners.len().max(1));
        for name in &order {
            let addr = envoy.listener(name)?;
            if !addr.ip().is_loopback() {
                bail!("wrk only runs against loopback, not {addr}");
            }
            let cpu_before = envoy.cpu_micros()?;
            let run = wrk(&format!("http://{addr}/"), seconds)?;
            let cpu = envoy.cpu_micros()?.saturating_sub(cpu_before);
            let cpu_per_request = cpu as f64 / run.requests.max(1) as f64;
            say!(
                "bench: wrk round {}/{rounds} {name}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {:.1} CPU µs/request",
                round + 1,
                run.requests_per_second,
                run.p50_us,
                run.p99_us,
                cpu_per_request
            );
            samples
                .entry(name.clone())
                .or_default()
                .push((run, cpu_per_request));
        }
    }
    Ok(samples
        .into_iter()
        .map(|(name, runs)| {
            let pick =
                |f: &dyn Fn(&(Run, f64)) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
            let figures = Figures {
                requests_per_second: pick(&|(run, _)| run.requests_per_second),
                p50_us: pick(&|(run, _)| run.p50_us),
                p99_us: pick(&|(run, _)| run.p99_us),
                cpu_us_per_request: pick(&|(_, cpu)| *cpu),
                rounds_rps: runs
                    .iter()
                    .map(|(run, _)| run.requests_per_second)
                    .collect(),
            };
            (name, figures)
        })
        .collect())
}

fn wrk(url: &str, seconds: u32) -> Result<Run> {
    let output = Command::new("timeout")
        .arg((seconds + 30).to_string())
        .args(["wrk", "-t1", "-c10", "--latency"])
        .arg(format!("-d{seconds}s"))
        .arg(url)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wrk {url} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

fn parse(text: &str) -> Option<Run> {
    if text.contains("Non-2xx or 3xx responses") || text.contains("Socket errors") {
        return None;
    }
    let requests = text
        .lines()
        .find(|line| line.contains(" requests in "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let requests_per_second = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let percentile = |label: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(label))
            .and_then(|value| duration_us(value.trim()))
    };
    Some(Run {
        requests,
        requests_per_second,
        p50_us: percentile("50%")?,
        p99_us: percentile("99%")?,
    })
}

/// wrk's `123.45us`, `1.20ms`, `2.00s` in µs.
fn duration_us(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_wrk_latency_output() {
        let text = "Running 5s test @ http://127.0.0.1:1/\n  1 threads and 10 connections\n\
  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   312.07us  100.00us   4.20ms   90.00%\n\
  Latency Distribution\n     50%  290.00us\n     75%  330.00us\n     90%  400.00us\n     99%    1.10ms\n\
  160000 requests in 5.00s, 20.00MB read\nRequests/sec:  32000.50\nTransfer/sec:      4.00MB\n";
        let run = super::parse(text).unwrap();
        assert_eq!(run.requests, 160_000);
        assert_eq!(run.requests_per_second, 32000.5);
        assert_eq!((run.p50_us, run.p99_us), (290.0, 1100.0));
    }
}
