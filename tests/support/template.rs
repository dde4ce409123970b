//! `{{NAME}}` placeholders in YAML/JSON templates (Envoy configs under test).
//!
//! Deliberately strict: a placeholder left without a value panics, so a test
//! never hands Envoy a config with a literal `{{UPSTREAM_PORT}}` in it.

use std::fmt::Display;

/// Replaces every `{{NAME}}` in `template` with its value from `vars`.
///
/// ```
/// let yaml = e2e::render("port: {{PORT}} path: {{WASM_PATH}}", &[("PORT", &8080), ("WASM_PATH", &"/x.wasm")]);
/// assert_eq!(yaml, "port: 8080 path: /x.wasm");
/// ```
///
/// # Panics
/// When the template holds a `{{NAME}}` that `vars` does not provide.
pub fn render(template: &str, vars: &[(&str, &dyn Display)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            panic!("unterminated `{{{{` in template near: {}", &rest[start..]);
        };
        let name = after[..end].trim();
        let Some((_, value)) = vars.iter().find(|(key, _)| *key == name) else {
            let known: Vec<&str> = vars.iter().map(|(key, _)| *key).collect();
            panic!("template placeholder {{{{{name}}}}} has no value (given: {known:?})");
        };
        out.push_str(&value.to_string());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The shipped `envoy-config/envoy.yaml` (written for docker-compose) made to
/// run natively: only the addresses and the module path change. Listeners and
/// admin go to 127.0.0.1 port 0, the `upstream:8080` host to the given port on
/// 127.0.0.1, `/etc/envoy/header_filter.wasm` to `module`.
///
/// # Panics
/// When the file no longer has the shape this rewrites (so the compose file
/// and the native run cannot silently drift apart).
pub fn native_envoy_config(
    compose_yaml: &str,
    upstream_port: u16,
    module: &std::path::Path,
) -> String {
    let rewrites = [
        (
            "{ address: 0.0.0.0, port_value: 9901 }".to_string(),
            "{ address: 127.0.0.1, port_value: 0 }".to_string(),
        ),
        (
            "{ address: 0.0.0.0, port_value: 10000 }".to_string(),
            "{ address: 127.0.0.1, port_value: 0 }".to_string(),
        ),
        (
            "{ address: upstream, port_value: 8080 }".to_string(),
            format!("{{ address: 127.0.0.1, port_value: {upstream_port} }}"),
        ),
        (
            "/etc/envoy/header_filter.wasm".to_string(),
            module.display().to_string(),
        ),
    ];
    let mut yaml = compose_yaml.to_string();
    for (from, to) in &rewrites {
        assert!(
            yaml.contains(from.as_str()),
            "envoy-config/envoy.yaml no longer contains `{from}`"
        );
        yaml = yaml.replace(from.as_str(), to);
    }
    yaml
}
