//! The command line of `cargo xtask bench`: parsed once into [`Options`],
//! nothing else here.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub const USAGE: &str = "usage: cargo xtask bench [--requests N] [--rounds R] [--quick] \
[--skip-callgrind] [--skip-wrk] [--skip-extpack] [--module PATH] [--variant NAME=PATH]... \
[--mix-variants] [--mix-variant NAME=PATH]... [--wrk-seconds S] [--out DIR] [--trace]";

/// `cargo xtask bench --help`.
pub const HELP: &str = "Measures what the filter costs per request in Envoy 1.40 (V8,
--concurrency 1): instructions under callgrind (the primary figure), wrk
figures, module load time and memory, extpack timings. Two workloads: three
constant response headers (against Envoy doing nothing, Lua, hand-written
floor modules) and a realistic scenario (against Envoy's route table, Lua and
the filter's own floor, benches/mix-floor.wat). Writes benches/results/
(latest.md, latest.json, latest.svg); --quick writes target/bench/.

  --requests N          requests per listener per round under callgrind (2000)
  --rounds R            interleaved rounds; medians are quoted (3)
  --quick               200 requests, 1 round, short wrk runs: a smoke run
  --skip-callgrind, --skip-wrk, --skip-extpack
                        leave out a part
  --module PATH         measure this module as the filter
  --variant NAME=PATH   another module beside the filter, on both workloads
  --mix-variants        also run each --variant on the realistic scenario
  --mix-variant NAME=PATH
                        another module (or .wat), on the realistic scenario only
  --wrk-seconds S       seconds per wrk run (5)
  --out DIR             write the results here
  --trace               only print the host calls each request of the scenario
                        makes, for the filter and its floor; measure nothing";

/// A Wasm module measured as its own listener, next to the floor.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Listener name: lower-case letters, digits and `-`.
    pub name: String,
    /// The module Envoy loads (a snapshot of `source` once the run starts).
    pub module: PathBuf,
    /// The path the user gave, for the report.
    pub source: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Keep-alive requests per listener per round under callgrind.
    pub requests: u32,
    /// Interleaved rounds (callgrind and wrk); figures are medians.
    pub rounds: u32,
    pub quick: bool,
    pub skip_callgrind: bool,
    pub skip_wrk: bool,
    pub skip_extpack: bool,
    /// The module measured as `filter`; `None` builds ours.
    pub module: Option<PathBuf>,
    /// Extra modules (`--variant name=path`), with our filter's config.
    pub variants: Vec<Variant>,
    /// Also measure each variant on the realistic scenario (`mix-NAME`,
    /// with the scenario's filter configuration): for filter builds, not
    /// for modules that ignore their configuration. Under valgrind, Envoy
    /// 1.40 ran four Wasm listeners but not five, so the callgrind part
    /// starts as many Envoys as it needs (`callgrind_groups` in `mod.rs`).
    pub mix_variants: bool,
    /// Modules measured on the realistic scenario only (`--mix-variant
    /// name=path`, listener `mix-NAME`, a `.wat` path is compiled first):
    /// a hand-written floor's variants, say.
    pub mix_only: Vec<Variant>,
    pub wrk_seconds: u32,
    /// Only print the host calls each request of the mix makes, for the
    /// filter and the scenario's floor (`trace.rs`), and measure nothing.
    pub trace: bool,
    /// Where results go; `None` is `benches/results` (a quick run:
    /// `target/bench`, so a smoke run never replaces the published figures).
    pub out: Option<PathBuf>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let quick = args.iter().any(|arg| arg == "--quick");
        let mut options = Options {
            requests: if quick { 200 } else { 2000 },
            rounds: if quick { 1 } else { 3 },
            quick,
            skip_callgrind: false,
            skip_wrk: false,
            skip_extpack: false,
            module: None,
            variants: Vec::new(),
            mix_variants: false,
            mix_only: Vec::new(),
            wrk_seconds: if quick { 2 } else { 5 },
            trace: false,
            out: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| {
                args.next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value; {USAGE}"))
            };
            match arg.as_str() {
                "--quick" => {}
                "--skip-callgrind" => options.skip_callgrind = true,
                "--skip-wrk" => options.skip_wrk = true,
                "--skip-extpack" => options.skip_extpack = true,
                "--mix-variants" => options.mix_variants = true,
                "--trace" => options.trace = true,
                "--requests" => options.requests = positive(arg, &value(arg)?)?,
                "--rounds" => options.rounds = positive(arg, &value(arg)?)?,
                "--wrk-seconds" => options.wrk_seconds = positive(arg, &value(arg)?)?,
                "--module" => options.module = Some(PathBuf::from(value(arg)?)),
                "--out" => options.out = Some(PathBuf::from(value(arg)?)),
                "--variant" => options.variants.push(variant(&value(arg)?)?),
                "--mix-variant" => options.mix_only.push(variant(&value(arg)?)?),
                "-h" | "--help" => bail!("{USAGE}"),
                other => bail!("unknown bench option `{other}`; {USAGE}"),
            }
        }
        let mut names: Vec<&str> = options
            .variants
            .iter()
            .chain(&options.mix_only)
            .map(|v| v.name.as_str())
            .collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            bail!("--variant name `{}` is given twice", pair[0]);
        }
        Ok(options)
    }
}

fn positive(flag: &str, text: &str) -> Result<u32> {
    match text.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{flag} takes a positive integer, got `{text}`"),
    }
}

/// Names the fixed listeners use, which a variant cannot take (a variant
/// also gets a `mix-NAME` listener, so `native` is taken too).
pub const RESERVED: &[&str] = &[
    "none", "route", "lua", "floor", "floor3", "filter", "direct", "native",
];

fn variant(text: &str) -> Result<Variant> {
    let Some((name, path)) = text.split_once('=') else {
        bail!("--variant takes NAME=PATH, got `{text}`");
    };
    let valid = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        bail!("--variant name `{name}` must be lower-case letters, digits and `-` (at most 40)");
    }
    if RESERVED.contains(&name) {
        bail!(
            "--variant name `{name}` is taken; the fixed listeners are {}",
            RESERVED.join(", ")
        );
    }
    if name.starts_with("mix-") {
        bail!("--variant name `{name}` may not start with `mix-` (the scenario's listeners do)");
    }
    if path.is_empty() {
        bail!("--variant {name}= needs a module path");
    }
    Ok(Variant {
        name: name.to_string(),
        module: PathBuf::from(path),
        source: PathBuf::from(path),
    })
}

#[cfg(test)]
mod tests {
    use super::Options;

    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        Options::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn quick_lowers_the_defaults_and_flags_still_win() {
        let options = parse(&["--requests", "50", "--quick"]).unwrap();
        assert_eq!((options.requests, options.rounds), (50, 1));
    }

    #[test]
    fn variants_need_a_free_valid_name_and_a_path() {
        assert!(parse(&["--variant", "old=a.wasm", "--variant", "new=b.wasm"]).is_ok());
        for bad in [
            "floor=a.wasm",
            "floor3=a.wasm",
            "native=a.wasm",
            "mix-a=a.wasm",
            "Up=a.wasm",
            "x",
            "x=",
            "=a.wasm",
        ] {
            assert!(parse(&["--variant", bad]).is_err(), "{bad}");
        }
        assert!(parse(&["--variant", "a=1.wasm", "--variant", "a=2.wasm"]).is_err());
    }
}
