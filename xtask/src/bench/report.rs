//! The bench's results: the figures gathered by the other modules, written
//! as `latest.json`, `latest.md` and `latest.svg`, and printed as a table.
//! Figures only; the reader draws the conclusions.

use super::callgrind::Counts;
use super::options::Options;
use super::profile::Comparison;
use super::stats::{median, spread_percent};
use super::{chart, extpack, wrk};
use crate::{command, paths};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The target and stretch target for the filter, as multiples of the
/// floor's added instructions per request.
pub const TARGET: f64 = 1.15;
pub const STRETCH: f64 = 1.05;

/// A Wasm module under test.
#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    /// What Envoy loads (a snapshot taken when the run started).
    pub path: PathBuf,
    /// Where the module came from, for the report.
    pub source: PathBuf,
    pub bytes: u64,
    /// Extra spawn-to-LIVE time with the module's listener, ms.
    pub load_ms: Option<f64>,
    /// Extra resident memory with the module's listener, KiB.
    pub rss_kib: Option<f64>,
}

impl Module {
    pub fn new(name: &str, path: &Path, source: &Path) -> Result<Module> {
        let bytes = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        Ok(Module {
            name: name.to_string(),
            path: path.to_path_buf(),
            source: source.to_path_buf(),
            bytes,
            load_ms: None,
            rss_kib: None,
        })
    }
}

/// Instructions per request of one listener, per round.
#[derive(Debug, Clone)]
pub struct Series {
    pub rounds: Vec<f64>,
    pub median: f64,
    pub spread_percent: f64,
}

/// The callgrind figures.
#[derive(Debug, Clone)]
pub struct Measured {
    pub requests: u32,
    pub per_listener: BTreeMap<String, Series>,
}

impl Measured {
    pub fn from_counts(counts: &Counts, requests: u32) -> Measured {
        let per_listener = counts
            .per_round
            .iter()
            .map(|(name, totals)| {
                let rounds: Vec<f64> = totals
                    .iter()
                    .map(|total| *total as f64 / f64::from(requests))
                    .collect();
                let series = Series {
                    median: median(&rounds),
                    spread_percent: spread_percent(&rounds),
                    rounds,
                };
                (name.clone(), series)
            })
            .collect();
        Measured {
            requests,
            per_listener,
        }
    }

    /// Median instructions per request over `none`.
    pub fn added(&self, name: &str) -> Option<f64> {
        Some(self.per_listener.get(name)?.median - self.per_listener.get("none")?.median)
    }

    /// `added(a) / added(b)`.
    pub fn ratio(&self, a: &str, b: &str) -> Option<f64> {
        let below = self.added(b)?;
        (below > 0.0).then(|| self.added(a).unwrap_or(0.0) / below)
    }
}

pub struct Results {
    pub envoy: String,
    pub commit: String,
    pub command: String,
    pub requests: u32,
    pub rounds: u32,
    pub wrk_seconds: u32,
    pub listeners: Vec<String>,
    pub modules: Vec<Module>,
    pub callgrind: Option<Measured>,
    pub wrk: Option<BTreeMap<String, wrk::Figures>>,
    pub extpack: Option<extpack::Figures>,
    pub profile: Vec<Comparison>,
}

impl Results {
    pub fn new(
        options: &Options,
        listeners: &[String],
        modules: Vec<Module>,
        envoy: String,
    ) -> Results {
        let commit = command::stdout(
            std::process::Command::new("git")
                .args(["describe", "--always", "--dirty", "--abbrev=12"])
                .current_dir(paths::repo_root()),
        )
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
        let args: Vec<String> = std::env::args().skip(1).collect();
        Results {
            envoy,
            commit,
            command: format!("cargo xtask {}", args.join(" ")).trim().to_string(),
            requests: options.requests,
            rounds: options.rounds,
            wrk_seconds: options.wrk_seconds,
            listeners: listeners.to_vec(),
            modules,
            callgrind: None,
            wrk: None,
            extpack: None,
            profile: Vec::new(),
        }
    }

    /// (module listener, floor) for every Wasm listener but the floor.
    pub fn profiled_pairs(&self) -> Vec<(String, String)> {
        self.modules
            .iter()
            .filter(|module| module.name != "floor")
            .map(|module| (module.name.clone(), "floor".to_string()))
            .collect()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let callgrind = self.callgrind.as_ref().map(|measured| {
            let listeners: serde_json::Map<String, serde_json::Value> = self
                .listeners
                .iter()
                .filter_map(|name| {
                    let series = measured.per_listener.get(name)?;
                    Some((
                        name.clone(),
                        json!({
                            "instructions_per_request": series.median.round(),
                            "added_over_none": measured.added(name).map(f64::round),
                            "vs_floor": measured.ratio(name, "floor").map(round3),
                            "vs_lua": measured.ratio(name, "lua").map(round3),
                            "rounds": series.rounds.iter().map(|v| v.round()).collect::<Vec<_>>(),
                            "spread_percent": round3(series.spread_percent),
                        }),
                    ))
                })
                .collect();
            json!({
                "requests_per_listener_per_round": measured.requests,
                "listeners": listeners,
                "filter_over_floor": measured.ratio("filter", "floor").map(round3),
                "filter_over_lua": measured.ratio("filter", "lua").map(round3),
                "target_filter_over_floor": TARGET,
                "stretch_filter_over_floor": STRETCH,
            })
        });
        let wrk = self.wrk.as_ref().map(|figures| {
            figures
                .iter()
                .map(|(name, f)| {
                    (
                        name.clone(),
                        json!({
                            "requests_per_second": f.requests_per_second.round(),
                            "p50_us": f.p50_us,
                            "p99_us": f.p99_us,
                            "cpu_us_per_request": round3(f.cpu_us_per_request),
                            "rounds_requests_per_second": f.rounds_rps.iter().map(|v| v.round()).collect::<Vec<_>>(),
                        }),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
        });
        let modules: Vec<serde_json::Value> = self
            .modules
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "source": display_path(&m.source),
                    "bytes": m.bytes,
                    "load_ms": m.load_ms.map(round3),
                    "rss_kib": m.rss_kib.map(f64::round),
                })
            })
            .collect();
        let extpack = self.extpack.as_ref().map(|figures| {
            json!({
                "rows": figures.rows.iter().map(|row| json!({
                    "module": row.module,
                    "bytes": row.bytes,
                    "build_ms": row.build_ms.map(round3),
                    "push_ms": row.push_ms.map(round3),
                })).collect::<Vec<_>>(),
                "notes": figures.notes,
            })
        });
        json!({
            "command": self.command,
            "commit": self.commit,
            "envoy": self.envoy,
            "requests": self.requests,
            "rounds": self.rounds,
            "wrk_seconds": self.wrk_seconds,
            "headers_added": super::config::HEADERS.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>(),
            "callgrind": callgrind,
            "wrk": wrk,
            "modules": modules,
            "extpack": extpack,
            "profile": self.profile.iter().map(Comparison::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Writes `latest.json`, `latest.md` and `latest.svg` into `out`.
pub fn write(results: &Results, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json = serde_json::to_string_pretty(&results.to_json())? + "\n";
    std::fs::write(out.join("latest.json"), json)?;
    std::fs::write(out.join("latest.md"), markdown(results))?;
    if let Some(measured) = &results.callgrind {
        std::fs::write(
            out.join("latest.svg"),
            chart::svg(measured, &results.listeners),
        )?;
    }
    Ok(())
}

/// The printed table (plain text).
pub fn table(results: &Results) -> String {
    let mut text = String::new();
    if let Some(measured) = &results.callgrind {
        let _ = writeln!(
            text,
            "\ninstructions per request (callgrind, {} requests x {} rounds, medians)",
            measured.requests, results.rounds
        );
        let _ = writeln!(
            text,
            "{:<18} {:>12} {:>10} {:>9} {:>9} {:>9}",
            "listener", "instr/req", "added", "x floor", "x lua", "spread"
        );
        for name in &results.listeners {
            let Some(series) = measured.per_listener.get(name) else {
                continue;
            };
            let _ = writeln!(
                text,
                "{:<18} {:>12} {:>10} {:>9} {:>9} {:>8.2}%",
                name,
                thousands(series.median),
                measured.added(name).map_or("-".into(), thousands),
                ratio_text(measured.ratio(name, "floor")),
                ratio_text(measured.ratio(name, "lua")),
                series.spread_percent
            );
        }
        if let Some(ratio) = measured.ratio("filter", "floor") {
            let _ = writeln!(
                text,
                "filter/floor {ratio:.3} (target <= {TARGET}, stretch <= {STRETCH}): {}",
                if ratio <= STRETCH {
                    "meets the stretch target"
                } else if ratio <= TARGET {
                    "meets the target"
                } else {
                    "misses the target"
                }
            );
        }
    }
    if let Some(wrk) = &results.wrk {
        let _ = writeln!(
            text,
            "\nwrk -t1 -c10 -d{}s, medians of {} rounds",
            results.wrk_seconds, results.rounds
        );
        let _ = writeln!(
            text,
            "{:<18} {:>10} {:>10} {:>10} {:>14}",
            "listener", "req/s", "p50 µs", "p99 µs", "CPU µs/req"
        );
        for name in &results.listeners {
            if let Some(f) = wrk.get(name) {
                let _ = writeln!(
                    text,
                    "{:<18} {:>10.0} {:>10.0} {:>10.0} {:>14.2}",
                    name, f.requests_per_second, f.p50_us, f.p99_us, f.cpu_us_per_request
                );
            }
        }
    }
    let _ = writeln!(text, "\nmodules");
    let _ = writeln!(
        text,
        "{:<18} {:>10} {:>12} {:>12}",
        "module", "bytes", "load +ms", "RSS +KiB"
    );
    for m in &results.modules {
        let _ = writeln!(
            text,
            "{:<18} {:>10} {:>12} {:>12}",
            m.name,
            m.bytes,
            m.load_ms.map_or("-".into(), |ms| format!("{ms:.1}")),
            m.rss_kib.map_or("-".into(), |kib| format!("{kib:.0}"))
        );
    }
    if let Some(extpack) = &results.extpack {
        let _ = writeln!(text, "\nextpack (release build, medians)");
        let _ = writeln!(
            text,
            "{:<10} {:>10} {:>10} {:>10}",
            "module", "bytes", "build ms", "push ms"
        );
        for row in &extpack.rows {
            let _ = writeln!(
                text,
                "{:<10} {:>10} {:>10} {:>10}",
                row.module,
                row.bytes,
                row.build_ms.map_or("-".into(), |ms| format!("{ms:.0}")),
                row.push_ms.map_or("-".into(), |ms| format!("{ms:.0}"))
            );
        }
        for note in &extpack.notes {
            let _ = writeln!(text, "note: {note}");
        }
    }
    for comparison in &results.profile {
        text.push('\n');
        text.push_str(&comparison.table());
    }
    text
}

fn markdown(results: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Benchmark: adding three constant response headers in Envoy\n"
    );
    let _ = writeln!(
        md,
        "Reproduce with `{}` (writes this file, `latest.json` and `latest.svg`).\n",
        results.command
    );
    let _ = writeln!(
        md,
        "Envoy `{}` (`--concurrency 1`, V8), commit `{}`. Each listener proxies to a \
         `direct_response` listener in the same Envoy; \"added\" is over the `none` listener.\n",
        results.envoy, results.commit
    );
    let _ = writeln!(md, "```text{}```", table(results));
    let _ = writeln!(md, "\n![added instructions per request](latest.svg)");
    md
}

fn display_path(path: &Path) -> String {
    path.strip_prefix(paths::repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or("-".into(), |r| format!("{r:.3}"))
}

/// `12345.6` as `12,346`.
pub fn thousands(value: f64) -> String {
    let rounded = value.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if rounded < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_digits() {
        assert_eq!(super::thousands(1234567.4), "1,234,567");
        assert_eq!(super::thousands(-999.0), "-999");
        assert_eq!(super::thousands(0.0), "0");
    }
}
