//! `extpack` against a registry that serves TLS with a certificate from a
//! private CA, made with `openssl` at test time: every registry command
//! fails without `--ca-file` (exit 6, the certificate problem named, the
//! flag suggested), works with it, and tells a wrong CA and a file that is
//! not a certificate apart.

use std::fs;

use e2e::extpack::{extpack, Run, FIELDS};
use e2e::paths::filter_wasm;
use e2e::registry::{Registry, TlsFiles};
use serde_json::Value;

fn publish(reference: &str, extra: &[&str]) -> Run {
    let module = filter_wasm();
    let args = [
        &["publish", module.to_str().unwrap()][..],
        &FIELDS,
        &["--tag", reference],
        extra,
    ];
    extpack(&args.concat())
}

#[test]
fn tls_registry_with_a_private_ca_needs_ca_file() {
    let tls = TlsFiles::generate();
    let registry = Registry::start_tls(&tls);
    let host = registry.host();
    let scratch = tempfile::tempdir().unwrap();
    let ca = tls.ca();
    let ca = ca.to_str().unwrap();
    let reference = format!("{host}/filters/header-filter:1.0.0");
    let layout = scratch.path().join("image");
    let layout = layout.to_str().unwrap();
    let module = filter_wasm();
    let build = [
        "build",
        module.to_str().unwrap(),
        "--version",
        "1.0.0",
        "--output",
        layout,
    ];
    extpack(&[&build[..], &FIELDS].concat()).ok();
    let out = scratch.path().join("back.wasm");
    let out = out.to_str().unwrap();
    let config = scratch.path().join("config.json");
    fs::write(
        &config,
        r#"{"response_headers_to_add":[{"header":{"key":"x-a","value":"1"}}]}"#,
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("push", vec!["push", layout, "--tag", &reference]),
        ("inspect", vec!["inspect", &reference]),
        ("extract", vec!["extract", &reference, "-o", out, "--force"]),
        (
            "manifests",
            vec![
                "manifests",
                &reference,
                "--config",
                config,
                "--module-url",
                "http://m.example/f.wasm",
            ],
        ),
    ];

    // Without --ca-file: the certificate problem and both ways out.
    let untrusted = [
        &format!("TLS with registry {host} failed: its certificate is signed by a CA this machine does not trust")[..],
        "UnknownIssuer",
        "pass --ca-file CA.pem",
        "--plain-http",
    ];
    publish(&reference, &[]).exits(6, "publish without --ca-file", &untrusted);
    for (name, args) in &commands[1..] {
        extpack(args).exits(6, &format!("{name} without --ca-file"), &untrusted);
    }

    // With it: publish, push, inspect, extract and manifests all work.
    publish(&reference, &["--ca-file", ca]).ok();
    for (name, args) in &commands {
        let run = extpack(&[&args[..], &["--ca-file", ca]].concat());
        assert_eq!(run.code, 0, "{name} --ca-file: {}", run.stderr);
    }
    assert_eq!(fs::read(out).unwrap(), fs::read(&module).unwrap());
    let info: Value = serde_json::from_str(
        &extpack(&["inspect", &reference, "--json", "--ca-file", ca])
            .ok()
            .stdout,
    )
    .unwrap();
    // The last push was the layout's: the registry serves its digest.
    let local: Value =
        serde_json::from_str(&extpack(&["inspect", layout, "--json"]).ok().stdout).unwrap();
    assert_eq!(info["manifest_digest"], local["manifest_digest"]);

    // Another CA does not vouch for the registry.
    let other = TlsFiles::generate();
    let other_ca = other.ca();
    extpack(&[
        "inspect",
        &reference,
        "--ca-file",
        other_ca.to_str().unwrap(),
    ])
    .exits(
        6,
        "inspect with another CA",
        &[
            "invalid peer certificate",
            "the --ca-file given does not vouch for it",
        ],
    );

    // Plain HTTP to a registry that speaks only HTTPS.
    extpack(&["inspect", &reference, "--plain-http"]).exits(
        6,
        "--plain-http to a TLS registry",
        &[
            "it speaks only HTTPS, and --plain-http was given",
            "drop --plain-http",
        ],
    );

    // Not a certificate, or no file: invalid input, named.
    let not_pem = scratch.path().join("not.pem");
    fs::write(&not_pem, "hello\n").unwrap();
    extpack(&[
        "inspect",
        &reference,
        "--ca-file",
        not_pem.to_str().unwrap(),
    ])
    .exits(
        1,
        "not PEM",
        &[&format!(
            "--ca-file {}: holds no PEM certificate",
            not_pem.display()
        )],
    );
    extpack(&["inspect", &reference, "--ca-file", "/nonexistent/ca.pem"]).exits(
        1,
        "missing CA file",
        &["--ca-file /nonexistent/ca.pem: "],
    );
}
