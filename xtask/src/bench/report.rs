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
/// The target for the filter over `floor3`, the floor that also takes the
/// request headers (three calls into the VM per request, as the filter).
pub const TARGET_FLOOR3: f64 = 1.02;
/// Targets for the realistic scenario: the filter against its floor (a
/// module that makes the same host calls and nothing else,
/// `benches/mix-floor.wat`), and against Lua.
pub const TARGET_MIX_FLOOR: f64 = 1.10;
pub const TARGET_MIX_LUA: f64 = 1.0;
/// The mix listener the other `mix-*` listeners are measured against.
pub const MIX_BASELINE: &str = "mix-none";

/// A Wasm module under test.
#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    /// Where the module came from, for the report.
    pub source: PathBuf,
    pub bytes: u64,
    /// Extra spawn-to-LIVE time with the module's listener, ms.
    pub load_ms: Option<f64>,
    /// Spread of the spawn-to-LIVE samples with the module, %.
    pub load_spread: Option<f64>,
    /// V8's compile of the module (Envoy's wasm log), ms, and its spread.
    pub compile_ms: Option<f64>,
    pub compile_spread: Option<f64>,
    /// Extra resident memory with the module's listener, KiB.
    pub rss_kib: Option<f64>,
    pub rss_spread: Option<f64>,
    /// What one more worker VM of the module adds, KiB.
    pub vm_kib: Option<f64>,
}

impl Module {
    pub fn new(name: &str, path: &Path, source: &Path) -> Result<Module> {
        let bytes = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        Ok(Module {
            name: name.to_string(),
            source: source.to_path_buf(),
            bytes,
            load_ms: None,
            load_spread: None,
            compile_ms: None,
            compile_spread: None,
            rss_kib: None,
            rss_spread: None,
            vm_kib: None,
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

    /// Median instructions per request over the listener's baseline
    /// (`none`, or `mix-none` for the scenario's listeners).
    pub fn added(&self, name: &str) -> Option<f64> {
        let baseline = self.per_listener.get(baseline(name))?.median;
        Some(self.per_listener.get(name)?.median - baseline)
    }

    /// `added(a) / added(b)`.
    pub fn ratio(&self, a: &str, b: &str) -> Option<f64> {
        let below = self.added(b)?;
        (below > 0.0).then(|| self.added(a).unwrap_or(0.0) / below)
    }
}

/// What `name` is measured against: the listener that does no header
/// work under the same requests.
pub fn baseline(name: &str) -> &'static str {
    if is_mix(name) {
        MIX_BASELINE
    } else {
        "none"
    }
}

/// A listener of the realistic scenario.
pub fn is_mix(name: &str) -> bool {
    name.starts_with("mix-")
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
    /// The host calls `mix-filter` makes per request of the mix (Envoy's
    /// wasm trace), and how `mix-floor`'s differ (`None`: they do not).
    pub mix_calls: Option<Vec<Vec<String>>>,
    pub mix_floor_difference: Option<String>,
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
            mix_calls: None,
            mix_floor_difference: None,
        }
    }

    /// (module listener, floor3) for every Wasm listener but the floors,
    /// and (its mix listener, Envoy's route table) for the scenario.
    pub fn profiled_pairs(&self) -> Vec<(String, String)> {
        let modules = self
            .modules
            .iter()
            .filter(|module| !module.name.starts_with("floor"));
        let mut pairs: Vec<(String, String)> = modules
            .clone()
            .map(|module| (module.name.clone(), "floor3".to_string()))
            .collect();
        pairs.extend(
            modules
                .map(|module| format!("mix-{}", module.name))
                .filter(|name| self.listeners.contains(name))
                .map(|name| (name, "mix-floor".to_string())),
        );
        pairs
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
                            "baseline": baseline(name),
                            "added_over_baseline": measured.added(name).map(f64::round),
                            "vs_floor": (!is_mix(name)).then(|| measured.ratio(name, "floor")).flatten().map(round3),
                            "vs_floor3": (!is_mix(name)).then(|| measured.ratio(name, "floor3")).flatten().map(round3),
                            "vs_lua": measured.ratio(name, if is_mix(name) { "mix-lua" } else { "lua" }).map(round3),
                            "vs_native": is_mix(name).then(|| measured.ratio(name, "mix-native")).flatten().map(round3),
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
                "filter_over_floor3": measured.ratio("filter", "floor3").map(round3),
                "filter_over_lua": measured.ratio("filter", "lua").map(round3),
                "target_filter_over_floor": TARGET,
                "stretch_filter_over_floor": STRETCH,
                "target_filter_over_floor3": TARGET_FLOOR3,
                "mix": {
                    "requests": super::scenario::REQUESTS.iter().map(|r| {
                        let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                        json!({"path": r.path, "headers": headers, "route": r.route, "status": r.status})
                    }).collect::<Vec<_>>(),
                    "filter_configuration": super::scenario::filter_configuration(),
                    "filter_over_floor": measured.ratio("mix-filter", "mix-floor").map(round3),
                    "filter_over_lua": measured.ratio("mix-filter", "mix-lua").map(round3),
                    "filter_over_native": measured.ratio("mix-filter", "mix-native").map(round3),
                    "target_filter_over_floor": TARGET_MIX_FLOOR,
                    "target_filter_over_lua": TARGET_MIX_LUA,
                    "floor_makes_the_filters_host_calls": self.mix_floor_difference.is_none(),
                    "floor_difference": self.mix_floor_difference,
                    "filter_host_calls_per_request": self.mix_calls,
                },
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
                    "load_spread_percent": m.load_spread.map(round3),
                    "v8_compile_ms": m.compile_ms.map(round3),
                    "v8_compile_spread_percent": m.compile_spread.map(round3),
                    "rss_kib": m.rss_kib.map(f64::round),
                    "rss_spread_percent": m.rss_spread.map(round3),
                    "per_worker_vm_kib": m.vm_kib.map(f64::round),
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
            "\ninstructions per request (callgrind, {} requests x {} rounds, medians; \
             spread = (max - min) / median over rounds)",
            measured.requests, results.rounds
        );
        let constant: Vec<&str> = results
            .listeners
            .iter()
            .map(String::as_str)
            .filter(|name| !is_mix(name))
            .collect();
        let against = [
            ("x floor", "floor"),
            ("x floor3", "floor3"),
            ("x lua", "lua"),
        ];
        instruction_rows(&mut text, measured, &constant, &against);
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
        verdict(&mut text, measured, ("filter", "floor3"), TARGET_FLOOR3);
        if measured.per_listener.contains_key(MIX_BASELINE) {
            mix_table(&mut text, measured, &results.listeners);
            let _ = writeln!(
                text,
                "mix-floor makes mix-filter's host calls on every request (Envoy's wasm trace): {}",
                match &results.mix_floor_difference {
                    None => "yes".to_string(),
                    Some(difference) =>
                        format!("NO, the ratio compares different work\n{difference}"),
                }
            );
        }
    }
    if let Some(wrk) = &results.wrk {
        let _ = writeln!(
            text,
            "\nwrk -t1 -c10 -d{}s, medians of {} rounds (wall clock: moved by other load on the machine)",
            results.wrk_seconds, results.rounds
        );
        let _ = writeln!(
            text,
            "{:<18} {:>10} {:>8} {:>10} {:>10} {:>14}",
            "listener", "req/s", "spread", "p50 µs", "p99 µs", "CPU µs/req"
        );
        for name in &results.listeners {
            if let Some(f) = wrk.get(name) {
                let _ = writeln!(
                    text,
                    "{:<18} {:>10.0} {:>7.0}% {:>10.0} {:>10.0} {:>14.2}",
                    name,
                    f.requests_per_second,
                    spread_percent(&f.rounds_rps),
                    f.p50_us,
                    f.p99_us,
                    f.cpu_us_per_request
                );
            }
        }
    }
    let _ = writeln!(
        text,
        "\nmodules (wall clock and memory, medians of several Envoy starts; load and RSS over \
         Envoy without the module; compile from Envoy's wasm log; per VM: one more worker)"
    );
    let _ = writeln!(
        text,
        "{:<12} {:>8} {:>10} {:>7} {:>11} {:>7} {:>10} {:>7} {:>11}",
        "module",
        "bytes",
        "load +ms",
        "spread",
        "compile ms",
        "spread",
        "RSS +KiB",
        "spread",
        "KiB per VM"
    );
    let number =
        |value: Option<f64>, digits: usize| value.map_or("-".into(), |v| format!("{v:.digits$}"));
    let percent = |value: Option<f64>| value.map_or("-".into(), |v| format!("{v:.0}%"));
    for m in &results.modules {
        let _ = writeln!(
            text,
            "{:<12} {:>8} {:>10} {:>7} {:>11} {:>7} {:>10} {:>7} {:>11}",
            m.name,
            m.bytes,
            number(m.load_ms, 1),
            percent(m.load_spread),
            number(m.compile_ms, 0),
            percent(m.compile_spread),
            number(m.rss_kib, 0),
            percent(m.rss_spread),
            number(m.vm_kib, 0)
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

/// Instructions per request of `names`: median, added over the baseline,
/// one ratio column per (title, listener) of `against`, and the spread.
fn instruction_rows(
    text: &mut String,
    measured: &Measured,
    names: &[&str],
    against: &[(&str, &str)],
) {
    let _ = write!(
        text,
        "{:<18} {:>12} {:>10}",
        "listener", "instr/req", "added"
    );
    for (title, _) in against {
        let _ = write!(text, " {title:>9}");
    }
    let _ = writeln!(text, " {:>9}", "spread");
    for name in names {
        let Some(series) = measured.per_listener.get(*name) else {
            continue;
        };
        let added = measured.added(name).map_or("-".into(), thousands);
        let _ = write!(
            text,
            "{name:<18} {:>12} {added:>10}",
            thousands(series.median)
        );
        for (_, other) in against {
            let _ = write!(text, " {:>9}", ratio_text(measured.ratio(name, other)));
        }
        let _ = writeln!(text, " {:>8.2}%", series.spread_percent);
    }
}

/// `a/b <ratio> (target <= t): meets|misses the target`.
fn verdict(text: &mut String, measured: &Measured, (a, b): (&str, &str), target: f64) {
    if let Some(ratio) = measured.ratio(a, b) {
        let _ = writeln!(
            text,
            "{a}/{b} {ratio:.3} (target <= {target}): {}",
            if ratio <= target {
                "meets the target"
            } else {
                "misses the target"
            }
        );
    }
}

/// The realistic scenario: added over `mix-none`, against Envoy's route
/// table and Lua.
fn mix_table(text: &mut String, measured: &Measured, listeners: &[String]) {
    let _ = writeln!(
        text,
        "\nrealistic scenario: {} routes, 6 formatted header rules, a removal, a 5xx rule; \
         {} requests spread over the routes (added over {MIX_BASELINE})",
        super::scenario::filter_configuration()["routes"]
            .as_array()
            .map_or(0, Vec::len),
        super::scenario::REQUESTS.len()
    );
    let mix: Vec<&str> = listeners
        .iter()
        .map(String::as_str)
        .filter(|name| is_mix(name))
        .collect();
    let against = [
        ("x floor", "mix-floor"),
        ("x native", "mix-native"),
        ("x lua", "mix-lua"),
    ];
    instruction_rows(text, measured, &mix, &against);
    verdict(
        text,
        measured,
        ("mix-filter", "mix-floor"),
        TARGET_MIX_FLOOR,
    );
    verdict(text, measured, ("mix-filter", "mix-lua"), TARGET_MIX_LUA);
}

fn markdown(results: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Benchmark: header work in Envoy, three constant headers and a realistic scenario\n"
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
    if let Some(calls) = &results.mix_calls {
        let _ = writeln!(
            md,
            "\n## Host calls of the filter per request of the mix\n\n\
             From Envoy's `wasm` trace log (`trace.rs`): calls into the module \
             (`proxy_on_*`), host calls with pointers shown as `_`, the status after `=`, \
             and the sizes Envoy asked `proxy_on_memory_allocate` for while returning a \
             value. `benches/mix-floor.wat` makes the same list.\n"
        );
        let _ = writeln!(md, "```text");
        for (request, calls) in super::scenario::REQUESTS.iter().zip(calls) {
            let _ = writeln!(md, "GET {} {:?}", request.path, request.headers);
            for call in calls {
                let _ = writeln!(md, "    {call}");
            }
        }
        let _ = writeln!(md, "```");
    }
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
