//! `cargo xtask <job>`: the project's chores in Rust (matklad's xtask pattern).
//!
//! This file only dispatches; each job lives in its own module. Errors are
//! printed as one line on stderr with a non-zero exit, never as a panic.

/// `println!` that ignores a closed stdout (`cargo xtask setup | head`)
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod bench;
mod command;
mod demo;
mod filter;
mod link;
mod paths;
mod prune;
mod setup;
mod test;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <setup | build-filter | \
test [--envoy X.Y[,X.Y..] | --envoy all] [CARGO TEST ARGS...] | \
demo [--config FILE.json [--request 'METHOD PATH' [-H 'NAME: VALUE']...]...] | bench [OPTIONS]>";

fn main() -> ExitCode {
    // Called by rustc as the filter's linker (see link.rs).
    if let Some(lld) = std::env::var_os(link::LINKER_ENV) {
        let args = std::env::args_os().skip(1).collect();
        return link::run(std::path::Path::new(&lld), args).unwrap_or_else(|err| {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "xtask link: error: {err:#}");
            ExitCode::FAILURE
        });
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(err) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let Some((job, rest)) = args.split_first() else {
        anyhow::bail!("no job given; {USAGE}");
    };
    let takes_no_args = |job: &str| -> anyhow::Result<()> {
        match rest.first() {
            Some(extra) => anyhow::bail!("`{job}` takes no arguments, got `{extra}`; {USAGE}"),
            None => Ok(()),
        }
    };
    match job.as_str() {
        "setup" => {
            takes_no_args(job)?;
            setup::run()?;
            Ok(ExitCode::SUCCESS)
        }
        "build-filter" => {
            takes_no_args(job)?;
            filter::build_filter()?;
            Ok(ExitCode::SUCCESS)
        }
        "test" => test::run(rest),
        "bench" => {
            bench::run(rest)?;
            Ok(ExitCode::SUCCESS)
        }
        "demo" => {
            demo::run(rest)?;
            Ok(ExitCode::SUCCESS)
        }
        "-h" | "--help" | "help" => {
            say!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => anyhow::bail!("unknown job `{other}`; {USAGE}"),
    }
}
