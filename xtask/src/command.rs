//! Running child processes with the two behaviours the jobs need: quiet
//! (output captured, shown only in the error when the command fails) and
//! streamed (cargo's own progress is useful, so it goes to the terminal).

use anyhow::{bail, Context, Result};
use std::process::{Command, ExitStatus};

/// Runs `cmd` with captured output; on failure the error names the command,
/// its exit status and the last line it printed.
pub fn quiet(cmd: &mut Command) -> Result<()> {
    let shown = describe(cmd);
    let output = cmd
        .output()
        .with_context(|| format!("could not run `{shown}`"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last_line = last_line(&stderr)
        .or_else(|| last_line(&stdout))
        .unwrap_or("no output");
    bail!("`{shown}` failed ({}): {last_line}", exit(output.status))
}

/// Runs `cmd` with inherited stdio and fails if it does not succeed.
pub fn streamed(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        bail!("`{}` failed ({})", describe(cmd), exit(status));
    }
    Ok(())
}

/// Runs `cmd` with inherited stdio and returns its status, whatever it is.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    cmd.status()
        .with_context(|| format!("could not run `{}`", describe(cmd)))
}

/// Runs `cmd` and returns its stdout, failing on a non-zero exit.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let shown = describe(cmd);
    let output = cmd
        .output()
        .with_context(|| format!("could not run `{shown}`"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "`{shown}` failed ({}): {}",
            exit(output.status),
            last_line(&stderr).unwrap_or("no output")
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The cargo that invoked us (`$CARGO`), so the same toolchain is used.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn describe(cmd: &Command) -> String {
    let program = cmd.get_program().to_string_lossy();
    let program = program.rsplit('/').next().unwrap_or(&program).to_string();
    std::iter::once(program)
        .chain(cmd.get_args().map(|arg| arg.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn exit(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_string(),
    }
}

fn last_line(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .rev()
        .find(|line| !line.is_empty())
}
