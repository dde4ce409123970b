//! The `extpack` binary: parse arguments, run, and turn any error into one
//! `error: ...` line on stderr with a non-zero exit (never a backtrace).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = extpack::cli::Cli::parse();
    match extpack::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` joins the context chain on one line.
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}
