//! `cargo xtask demo --config FILE --envoy X.Y`: the user's configuration in
//! the Envoy their mesh ships, through the real `xtask` binary (the harness
//! behind it starts a real Envoy and the echo upstream).

use std::process::Command;

#[test]
fn a_config_runs_in_the_envoy_asked_for() {
    let dir = e2e::paths::temp_dir();
    let config = dir.path().join("c.json");
    std::fs::write(
        &config,
        r#"{"request_headers_to_add":[{"header":{"key":"x-hello","value":"%REQ(:path)%"}}]}"#,
    )
    .unwrap();
    let run = |envoy: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["demo", "--config"])
            .arg(&config)
            .args(["--envoy", envoy, "--request", "GET /abc", "--module"])
            .arg(e2e::paths::filter_wasm())
            .output()
            .expect("running xtask");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "demo --envoy {envoy}: {stderr}");
        stdout
    };
    for envoy in ["1.36", "1.40"] {
        let stdout = run(envoy);
        assert!(
            stdout.starts_with(&format!("demo: envoy {envoy} (pid ")),
            "{stdout}"
        );
        assert!(stdout.contains("\n  + x-hello: /abc\n"), "{stdout}");
    }
}
