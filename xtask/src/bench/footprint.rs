//! What a module costs Envoy besides per-request work: the time Envoy takes
//! to load it and the memory its VMs hold.
//!
//! Measured as differences between two plain Envoys started the same way:
//! one with only the `none` listener, one with `none` plus the module's
//! listener. Load time is the difference in spawn-to-`LIVE` time (V8
//! compiles the module and starts one VM per worker plus one on the main
//! thread before Envoy is `LIVE`); memory is the difference in resident
//! set size (`VmRSS`) after the same 100 requests. Medians of `repeats`
//! interleaved starts. RSS includes the V8 isolates, compiled code and
//! touched linear memory; it is what the operator pays, not the module's
//! own heap.

use super::client::Connection;
use super::config::{self, Adds, Front};
use super::envoy::{Envoy, Under};
use super::report::Module;
use super::stats::median;
use anyhow::Result;
use std::time::Duration;

const START: Duration = Duration::from_secs(60);

pub fn measure(modules: &mut [Module], fronts: &[Front], repeats: u32) -> Result<()> {
    let baseline: Vec<Front> = fronts
        .iter()
        .filter(|f| f.name == "none")
        .cloned()
        .collect();
    let mut base_ready = Vec::new();
    let mut base_rss = Vec::new();
    let mut with: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); modules.len()];
    for _ in 0..repeats {
        let (ready, rss) = sample(&baseline, "none")?;
        base_ready.push(ready);
        base_rss.push(rss);
        for (module, samples) in modules.iter().zip(with.iter_mut()) {
            let mut set = baseline.clone();
            set.extend(fronts.iter().filter(|f| f.name == module.name).cloned());
            if !set.iter().any(|f| matches!(f.adds, Adds::Wasm { .. })) {
                continue;
            }
            let (ready, rss) = sample(&set, &module.name)?;
            samples.0.push(ready);
            samples.1.push(rss);
        }
    }
    let base_ready = median(&base_ready);
    let base_rss = median(&base_rss);
    for (module, (ready, rss)) in modules.iter_mut().zip(with) {
        if ready.is_empty() {
            continue;
        }
        module.load_ms = Some(median(&ready) - base_ready);
        module.rss_kib = Some(median(&rss) - base_rss);
        say!(
            "bench: {}: {} bytes, load +{:.1} ms, RSS +{:.0} KiB",
            module.name,
            module.bytes,
            median(&ready) - base_ready,
            median(&rss) - base_rss
        );
    }
    Ok(())
}

/// (ms to LIVE, RSS KiB after 100 requests on `listener`).
fn sample(fronts: &[Front], listener: &str) -> Result<(f64, f64)> {
    let envoy = Envoy::start(
        |port| config::bootstrap(fronts, port),
        Under::Nothing,
        START,
    )?;
    let ready = envoy.ready_after.as_secs_f64() * 1e3;
    Connection::open(envoy.listener(listener)?)?.run(config::Traffic::Constant, 100)?;
    let rss = envoy.rss_kib()? as f64;
    Ok((ready, rss))
}
