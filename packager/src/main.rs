//! The `extpack` binary: parse arguments, run, and turn any error into one
//! `error: ...` line on stderr with the exit code of its kind (never a
//! backtrace; see `exit.rs`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = extpack::cli::Cli::parse();
    match extpack::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(extpack::exit::ExitKind::of(&e).code())
        }
    }
}

/// The error chain on one line, each cause after a `: `, skipping causes
/// whose text the line already holds (library errors such as
/// `"{path}: {source}"` print their source themselves).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}
