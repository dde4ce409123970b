//! `cargo xtask bench`: what it costs Envoy to add three constant response
//! headers, by mechanism: nothing, the route config, Lua, the hand-written
//! Wasm floors (`benches/floor.wat`, and `floor3` which also takes the
//! request headers), our filter, and any extra modules; and what the
//! realistic scenario of `scenario.rs` (routes, formatters, a removal, a
//! 5xx rule, a request mix) costs written three ways: Envoy's route table,
//! Lua, our filter (listeners `mix-*`).
//!
//! One Envoy (`--concurrency 1`) holds one front listener per mechanism, all
//! proxying to a `direct` listener in the same Envoy. The primary figure is
//! instructions per request under callgrind (stable on a busy machine);
//! `wrk` throughput and latency, module load time and memory, and `extpack`
//! timings are secondary. Results go to `benches/results/` as JSON, an SVG
//! chart and a Markdown table; the table is also printed.
//!
//! Everything started here (Envoy, valgrind, wrk, the registry) is a child
//! stopped by a drop guard, binds 127.0.0.1 only, and has a time limit.

mod callgrind;
mod chart;
mod client;
mod config;
mod envoy;
mod extpack;
mod footprint;
mod options;
mod profile;
mod report;
mod scenario;
mod stats;
mod trace;
mod verify;
mod wasm;
mod wrk;

use crate::{filter, paths};
use anyhow::{bail, Context, Result};
use config::{Adds, Front, Traffic};
use envoy::{Envoy, Under};
use options::{Options, Variant};
use report::{Measured, Module, Results};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Envoy under valgrind needs minutes to start (V8, a 100 MB binary).
const CALLGRIND_START: Duration = Duration::from_secs(900);
const PLAIN_START: Duration = Duration::from_secs(60);

pub fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        say!("{}\n\n{}", options::USAGE, options::HELP);
        return Ok(());
    }
    let options = Options::parse(args)?;
    require_tools(&options)?;
    let work = tempfile::Builder::new()
        .prefix("xtask-bench-")
        .tempdir()
        .context("creating the bench temp dir")?;

    let (filter, variants, mix_only) = modules(&options, work.path())?;
    let floor = wasm::compile_floor(work.path())?;
    let floor3 = wasm::compile_floor3(work.path())?;
    let mix_floor = wasm::compile_mix_floor(work.path())?;
    let read = |file: &str| {
        std::fs::read_to_string(paths::repo_root().join("benches").join(file))
            .with_context(|| format!("reading benches/{file}"))
    };
    let configuration = config::filter_configuration();
    let mix_configuration = scenario::filter_configuration();

    let mut fronts = vec![
        front("none", Adds::Nothing),
        front("route", Adds::Route),
        front("lua", Adds::Lua(read("lua.lua")?)),
    ];
    let mut modules = Vec::new();
    for (name, module) in [("floor", &floor), ("floor3", &floor3)] {
        fronts.push(front(
            name,
            Adds::Wasm {
                module: module.clone(),
                configuration: None,
            },
        ));
        modules.push(Module::new(name, module, &wasm::floor_source())?);
    }
    let mut mix = vec![
        mix_front("none", Adds::Nothing),
        mix_front(
            "native",
            Adds::Table {
                route_config: scenario::native_route_config(&mix_configuration, "direct")?,
                filters: scenario::native_filters(&mix_configuration)?,
            },
        ),
        mix_front("lua", Adds::Lua(read("mix.lua")?)),
        mix_front(
            "floor",
            Adds::Wasm {
                module: mix_floor.clone(),
                configuration: None,
            },
        ),
    ];
    for (index, variant) in std::iter::once(&filter).chain(&variants).enumerate() {
        let wasm = |configuration: String| Adds::Wasm {
            module: variant.module.clone(),
            configuration: Some(configuration),
        };
        fronts.push(front(&variant.name, wasm(configuration.clone())));
        if index == 0 || options.mix_variants {
            mix.push(mix_front(
                &variant.name,
                wasm(mix_configuration.to_string()),
            ));
        }
        modules.push(Module::new(
            &variant.name,
            &variant.module,
            &variant.source,
        )?);
    }
    for variant in &mix_only {
        mix.push(mix_front(
            &variant.name,
            Adds::Wasm {
                module: variant.module.clone(),
                configuration: Some(mix_configuration.to_string()),
            },
        ));
    }
    fronts.extend(mix);
    let names: Vec<String> = fronts.iter().map(|front| front.name.clone()).collect();

    // The mix's floor must cross the VM boundary as the filter does, request
    // by request, or filter/floor means nothing: both traced in Envoy.
    let traced = trace_mix_floor(&fronts)?;
    if options.trace {
        for (name, calls) in &traced.lists {
            say!("{name}: host calls per request of the mix");
            for (request, calls) in scenario::REQUESTS.iter().zip(calls) {
                say!("  GET {} {:?}", request.path, request.headers);
                for call in calls {
                    say!("    {call}");
                }
            }
        }
    }
    match (&traced.difference, &options.module) {
        (None, _) => say!(
            "bench: mix-floor makes the host calls mix-filter makes, request by request \
             (Envoy's wasm trace)"
        ),
        (Some(difference), None) => bail!(
            "benches/mix-floor.wat no longer makes the filter's host calls; update it \
             (`cargo xtask bench --trace` lists both). First difference: {difference}"
        ),
        (Some(difference), Some(_)) => say!(
            "bench: WARNING: mix-floor does not make the host calls of the module measured \
             as filter, so filter/mix-floor compares different work. First difference: \
             {difference}"
        ),
    }
    if options.trace {
        return Ok(());
    }

    let mut results = Results::new(&options, &names, modules, envoy_version()?);
    results.mix_calls = traced
        .lists
        .into_iter()
        .find(|(name, _)| name == "mix-filter")
        .map(|(_, calls)| calls);
    results.mix_floor_difference = traced.difference;

    // Every listener checked on a plain Envoy first: a config Envoy refuses,
    // a module that adds nothing, or mix variants that disagree fail here in
    // seconds, not after minutes of valgrind.
    {
        let envoy = Envoy::start(
            |port| config::bootstrap(&fronts, port),
            Under::Nothing,
            PLAIN_START,
        )?;
        verify::headers(&envoy, &fronts, MIX_BASELINE)?;
        say!(
            "bench: {} listeners verified (three headers added, none on `none`; \
             the mix's {} requests: same headers from every mix variant)",
            names.len(),
            scenario::REQUESTS.len()
        );
    }

    if !options.skip_callgrind {
        let mut counts = callgrind::Counts::default();
        for group in callgrind_groups(&fronts) {
            let names: Vec<&str> = group.iter().map(|front| front.name.as_str()).collect();
            say!(
                "bench: starting envoy under callgrind for {}",
                names.join(", ")
            );
            let envoy = Envoy::start(
                |port| config::bootstrap(&group, port),
                Under::Callgrind,
                CALLGRIND_START,
            )?;
            say!(
                "bench: envoy under callgrind LIVE after {:.0?}",
                envoy.ready_after
            );
            verify::headers(&envoy, &group, MIX_BASELINE)?;
            let measured = callgrind::measure(&envoy, &group, options.requests, options.rounds)?;
            // The dumps live with this Envoy: profile its pairs now.
            let pairs: Vec<(String, String)> = results
                .profiled_pairs()
                .into_iter()
                .filter(|(a, b)| {
                    measured.last_dump.contains_key(a) && measured.last_dump.contains_key(b)
                })
                .collect();
            results.profile.extend(
                profile::compare(&measured, options.requests, &pairs).unwrap_or_else(|err| {
                    say!("bench: per-function profile skipped: {err:#}");
                    Vec::new()
                }),
            );
            counts.per_round.extend(measured.per_round);
            counts.last_dump.extend(measured.last_dump);
        }
        results.callgrind = Some(Measured::from_counts(&counts, options.requests));
    }

    if !options.skip_wrk {
        let envoy = Envoy::start(
            |port| config::bootstrap(&fronts, port),
            Under::Nothing,
            PLAIN_START,
        )?;
        verify::headers(&envoy, &fronts, MIX_BASELINE)?;
        // wrk sends one request again and again: the mix is measured by
        // instructions only.
        let constant: Vec<String> = fronts
            .iter()
            .filter(|front| front.traffic == Traffic::Constant)
            .map(|front| front.name.clone())
            .collect();
        results.wrk = Some(wrk::measure(
            &envoy,
            &constant,
            options.rounds,
            options.wrk_seconds,
        )?);
    }

    footprint::measure(&mut results.modules, &fronts, options.rounds.max(5))?;

    if !options.skip_extpack {
        results.extpack = Some(extpack::measure(
            &filter.module,
            work.path(),
            options.rounds,
        ));
    }

    let out = options.out.clone().unwrap_or_else(|| {
        if options.quick {
            paths::target_dir().join("bench")
        } else {
            paths::repo_root().join("benches").join("results")
        }
    });
    report::write(&results, &out)?;
    say!("{}", report::table(&results));
    say!("bench: results in {}", out.display());
    Ok(())
}

/// Most Wasm listeners one Envoy under valgrind runs: V8 reserves address
/// space for each Wasm VM (about three per listener), and valgrind's limit
/// let four Wasm listeners run in one Envoy but not five (the last one's
/// stream VM was missing).
const WASM_PER_ENVOY: usize = 4;

/// The listeners of each Envoy under callgrind: one kind of traffic per
/// Envoy, its listeners that are not Wasm in the first, and at most
/// [`WASM_PER_ENVOY`] Wasm listeners in each (later ones are measured
/// against the first Envoy's baseline: instruction counts do not depend on
/// the process).
fn callgrind_groups(fronts: &[Front]) -> Vec<Vec<Front>> {
    let mut groups = Vec::new();
    for traffic in [Traffic::Constant, Traffic::Mix] {
        let of = |wasm: bool| {
            fronts
                .iter()
                .filter(move |front| {
                    front.traffic == traffic && matches!(front.adds, Adds::Wasm { .. }) == wasm
                })
                .cloned()
        };
        let modules: Vec<Front> = of(true).collect();
        let mut chunks = modules.chunks(WASM_PER_ENVOY);
        let mut first: Vec<Front> = of(false).collect();
        first.extend(chunks.next().unwrap_or_default().iter().cloned());
        groups.push(first);
        groups.extend(chunks.map(<[Front]>::to_vec));
    }
    groups.retain(|group| !group.is_empty());
    groups
}

/// The host calls of `mix-filter` and `mix-floor`, per request of the mix,
/// and the first difference between them.
struct Traced {
    lists: Vec<(String, Vec<trace::Calls>)>,
    difference: Option<String>,
}

fn trace_mix_floor(fronts: &[Front]) -> Result<Traced> {
    let mut lists = Vec::new();
    for name in ["mix-filter", "mix-floor"] {
        let front = fronts
            .iter()
            .find(|front| front.name == name)
            .with_context(|| format!("no {name} listener"))?;
        lists.push((name.to_string(), trace::mix(front)?));
    }
    let difference = trace::difference((&lists[0].0, &lists[0].1), (&lists[1].0, &lists[1].1));
    Ok(Traced { lists, difference })
}

/// The mix listener that does no header work: what the others add to.
const MIX_BASELINE: &str = "mix-none";

fn front(name: &str, adds: Adds) -> Front {
    Front {
        name: name.to_string(),
        adds,
        traffic: Traffic::Constant,
    }
}

/// A listener of the realistic scenario: `mix-NAME`.
fn mix_front(name: &str, adds: Adds) -> Front {
    Front {
        name: format!("mix-{name}"),
        adds,
        traffic: Traffic::Mix,
    }
}

/// The module measured as `filter` (ours, built, unless `--module`) and the
/// `--variant` and `--mix-variant` modules (a `.wat` one compiled). Each is copied into `work` first: a rebuild during
/// the run (other work in the same tree) must not change what is measured
/// halfway.
fn modules(options: &Options, work: &Path) -> Result<(Variant, Vec<Variant>, Vec<Variant>)> {
    let mut variants = options.variants.clone();
    let mut mix_only = options.mix_only.clone();
    let filter_source = match &options.module {
        Some(path) => path.clone(),
        None => filter::build_filter()?,
    };
    let snapshot = |name: &str, path: &Path| -> Result<PathBuf> {
        let copy = work.join(format!("{name}.wasm"));
        if path.extension().is_some_and(|e| e == "wat") {
            wasm::compile_wat(path, &copy)?;
        } else {
            std::fs::copy(path, &copy)
                .with_context(|| format!("wasm module {} not found", path.display()))?;
        }
        Ok(copy)
    };
    let filter = Variant {
        name: "filter".to_string(),
        module: snapshot("filter", &filter_source)?,
        source: filter_source,
    };
    for variant in variants.iter_mut().chain(&mut mix_only) {
        variant.module = snapshot(&variant.name, &variant.source)?;
    }
    Ok((filter, variants, mix_only))
}

fn require_tools(options: &Options) -> Result<()> {
    let mut needed = Vec::new();
    if !options.skip_callgrind {
        needed.extend(["valgrind", "callgrind_control", "callgrind_annotate"]);
    }
    if !options.skip_wrk {
        needed.push("wrk");
    }
    if !options.skip_extpack {
        needed.push("docker-registry");
    }
    let missing: Vec<&str> = needed
        .into_iter()
        .filter(|tool| !paths::on_path(tool))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing {}; run `cargo xtask setup` (Debian packages valgrind, wrk, docker-registry)",
            missing.join(", ")
        );
    }
    if paths::envoy_elf().is_none() {
        bail!("envoy is missing from .venv; run `cargo xtask setup`");
    }
    Ok(())
}

fn envoy_version() -> Result<String> {
    let elf = paths::envoy_elf().context("envoy is missing from .venv")?;
    let text = crate::command::stdout(std::process::Command::new(elf).arg("--version"))?;
    Ok(text
        .split_whitespace()
        .find(|word| {
            word.contains('/') && word.chars().next().is_some_and(|c| c.is_ascii_hexdigit())
        })
        .unwrap_or(text.trim())
        .to_string())
}
