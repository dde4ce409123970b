//! The primary figure: user-space instructions per request, counted by
//! callgrind in an Envoy that runs under it.
//!
//! Per listener and round: warm the listener, zero the counters
//! (`callgrind_control -z`), send N keep-alive requests on one connection,
//! dump (`callgrind_control -d`) and read the dump's `totals:` line. Rounds
//! visit the listeners in a rotated order so that no listener always comes
//! first. Counts cover every Envoy thread; the idle main thread adds almost
//! nothing, which the spread across rounds shows.

use super::client::Connection;
use super::config::Front;
use super::envoy::Envoy;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Lets Envoy finish deferred work (stream teardown) before counters move.
const SETTLE: Duration = Duration::from_millis(300);

/// Instruction totals per listener, one per round, and the last dump file
/// of each listener (kept for per-function analysis while its Envoy runs).
#[derive(Default)]
pub struct Counts {
    pub per_round: BTreeMap<String, Vec<u64>>,
    pub last_dump: BTreeMap<String, PathBuf>,
}

/// Each listener gets the requests of its [`Front::traffic`].
pub fn measure(envoy: &Envoy, listeners: &[Front], requests: u32, rounds: u32) -> Result<Counts> {
    control(envoy, &["-i", "on"]).context("turning callgrind instrumentation on")?;
    let warmup = (requests / 10).clamp(20, 200);
    for front in listeners {
        Connection::open(envoy.listener(&front.name)?)?.run(front.traffic, warmup)?;
    }
    let mut counts = Counts {
        per_round: BTreeMap::new(),
        last_dump: BTreeMap::new(),
    };
    for round in 0..rounds as usize {
        let mut order = listeners.to_vec();
        order.rotate_left(round % listeners.len().max(1));
        for front in &order {
            let name = &front.name;
            let mut connection = Connection::open(envoy.listener(name)?)?;
            connection.run(front.traffic, warmup.min(20))?;
            std::thread::sleep(SETTLE);
            control(envoy, &["-z"])?;
            connection.run(front.traffic, requests)?;
            std::thread::sleep(SETTLE);
            control(envoy, &["-d"])?;
            drop(connection);
            let dump = newest_dump(envoy.dir(), envoy.pid())?;
            let total = totals(&dump)?;
            say!(
                "bench: callgrind round {}/{rounds} {name}: {} instructions/request",
                round + 1,
                total / u64::from(requests)
            );
            counts
                .per_round
                .entry(name.clone())
                .or_default()
                .push(total);
            counts.last_dump.insert(name.clone(), dump);
        }
    }
    Ok(counts)
}

fn control(envoy: &Envoy, args: &[&str]) -> Result<()> {
    let output = Command::new("callgrind_control")
        .args(args)
        .arg(envoy.pid().to_string())
        .output()
        .context("running callgrind_control (Debian package valgrind)")?;
    if !output.status.success() {
        bail!(
            "callgrind_control {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The highest-numbered dump `cg.PID.N` in `dir`.
fn newest_dump(dir: &Path, pid: u32) -> Result<PathBuf> {
    let prefix = format!("cg.{pid}.");
    std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let number: u64 = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((number, entry.path()))
        })
        .max_by_key(|(number, _)| *number)
        .map(|(_, path)| path)
        .with_context(|| format!("callgrind wrote no dump {prefix}N in {}", dir.display()))
}

/// The `totals:` (or `summary:`) figure of a dump: instructions (Ir).
fn totals(dump: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(dump)?;
    let line = text
        .lines()
        .find(|line| line.starts_with("totals:"))
        .or_else(|| text.lines().find(|line| line.starts_with("summary:")))
        .with_context(|| format!("no totals: line in {}", dump.display()))?;
    line.split_whitespace()
        .nth(1)
        .and_then(|number| number.parse().ok())
        .with_context(|| format!("bad totals line `{line}` in {}", dump.display()))
}
