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
