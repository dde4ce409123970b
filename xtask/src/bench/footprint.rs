//! What a module costs Envoy besides per-request work: the time Envoy takes
//! to load it and the memory its VMs hold.
//!
//! Measured as differences between plain Envoys started the same way: one
//! with only the `none` listener, one with `none` plus the module's
//! listener. Load time is the difference in spawn-to-`LIVE` time (V8
//! compiles the module and starts one VM per worker plus one on the main
//! thread before Envoy is `LIVE`); of that, *compile* is what Envoy's own
//! `wasm` debug log shows between `Base Wasm created` and the first VM
//! (V8 compiling the module; the start and configure callbacks come after).
//! Memory is the difference in resident set size (`VmRSS`) after the same
//! 100 requests; *per VM* is what each further worker thread adds with the
//! module over what it adds without it (`--concurrency 5` against 1, over
//! four workers, so that the figure stands above RSS noise). RSS
//! includes the V8 isolates, compiled code and touched linear memory; it is
//! what the operator pays, not the module's own heap.
//!
//! Medians of `repeats` interleaved starts, with spreads. Wall-clock
//! figures: a busy machine moves them (callgrind counts it does not).

use super::client::Connection;
use super::config::{self, Adds, Front, Traffic};
use super::envoy::{Envoy, Launch, Under};
use super::report::Module;
use super::stats::{median, spread_percent};
use anyhow::{Context, Result};
use std::time::Duration;

const START: Duration = Duration::from_secs(60);
/// Workers of the second start of each sample (see the module docs).
const MORE_WORKERS: u32 = 5;

/// The samples of one Envoy configuration over the repeats.
#[derive(Default)]
struct Samples {
    ready_ms: Vec<f64>,
    compile_ms: Vec<f64>,
    rss_kib: Vec<f64>,
    /// RSS with [`MORE_WORKERS`] workers.
    rss2_kib: Vec<f64>,
}

pub fn measure(modules: &mut [Module], fronts: &[Front], repeats: u32) -> Result<()> {
    let baseline: Vec<Front> = fronts
        .iter()
        .filter(|f| f.name == "none")
        .cloned()
        .collect();
    let mut base = Samples::default();
    let mut with: Vec<Samples> = modules.iter().map(|_| Samples::default()).collect();
    for _ in 0..repeats {
        sample(&baseline, "none", &mut base)?;
        for (module, samples) in modules.iter().zip(with.iter_mut()) {
            let mut set = baseline.clone();
            set.extend(fronts.iter().filter(|f| f.name == module.name).cloned());
            if !set.iter().any(|f| matches!(f.adds, Adds::Wasm { .. })) {
                continue;
            }
            sample(&set, &module.name, samples)
                .with_context(|| format!("measuring the footprint of {}", module.name))?;
        }
    }
    let base_ready = median(&base.ready_ms);
    let base_rss = median(&base.rss_kib);
    let extra = f64::from(MORE_WORKERS - 1);
    let base_workers = median(&base.rss2_kib) - base_rss;
    for (module, samples) in modules.iter_mut().zip(with) {
        if samples.ready_ms.is_empty() {
            continue;
        }
        let rss = median(&samples.rss_kib);
        module.load_ms = Some(median(&samples.ready_ms) - base_ready);
        module.load_spread = Some(spread_percent(&samples.ready_ms));
        module.compile_ms = (!samples.compile_ms.is_empty()).then(|| median(&samples.compile_ms));
        module.compile_spread = Some(spread_percent(&samples.compile_ms));
        module.rss_kib = Some(rss - base_rss);
        module.rss_spread = Some(spread_percent(&samples.rss_kib));
        module.vm_kib = Some((median(&samples.rss2_kib) - rss - base_workers) / extra);
        say!(
            "bench: {}: {} bytes, load +{:.1} ms (V8 compile {:.0} ms), RSS +{:.0} KiB, \
             +{:.0} KiB per worker VM",
            module.name,
            module.bytes,
            module.load_ms.unwrap_or_default(),
            module.compile_ms.unwrap_or_default(),
            module.rss_kib.unwrap_or_default(),
            module.vm_kib.unwrap_or_default()
        );
    }
    Ok(())
}

/// One start with one worker (time to LIVE, compile time, RSS after 100
/// requests on `listener`) and one with [`MORE_WORKERS`] (RSS after the same).
fn sample(fronts: &[Front], listener: &str, into: &mut Samples) -> Result<()> {
    for concurrency in [1, MORE_WORKERS] {
        let launch = Launch {
            under: Under::Nothing,
            concurrency,
            wasm_log: Some("debug"),
        };
        let envoy = Envoy::start_with(|port| config::bootstrap(fronts, port), launch, START)?;
        Connection::open(envoy.listener(listener)?)?.run(Traffic::Constant, 100)?;
        let rss = envoy.rss_kib()? as f64;
        if concurrency == 1 {
            into.ready_ms.push(envoy.ready_after.as_secs_f64() * 1e3);
            into.rss_kib.push(rss);
            into.compile_ms.extend(envoy.stop_for_wasm_compile_ms());
        } else {
            into.rss2_kib.push(rss);
        }
    }
    Ok(())
}
