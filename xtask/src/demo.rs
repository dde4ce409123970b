//! `cargo xtask demo`: the local demo topology. Not written yet.

/// Placeholder until the demo job is implemented.
pub fn run() -> anyhow::Result<()> {
    say!("demo: not yet");
    Ok(())
}
