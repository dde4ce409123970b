//! The core reads top-down: every module of `filter/src` uses only modules
//! of the layers below its own (ARCHITECTURE.md, "Layers"). A module's
//! tests (its `#[cfg(test)] mod tests`, last in the file) may use anything.

use std::path::{Path, PathBuf};

/// Lowest first. Modules of one layer do not use each other.
const LAYERS: &[&[&str]] = &[
    &["json"],
    &["jsonpath"],
    &["headers", "host"],
    &["matcher", "format"],
    &["rules"],
    &["route", "mutation"],
    &["config"],
    &["plan", "warning"],
    &["offline", "roots"],
    &["alloc", "proxy"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src` but `lib.rs`, with the module it belongs to
/// (`format/time.rs` belongs to `format`).
fn module_files() -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let mut dirs = vec![src()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let relative = path.strip_prefix(src()).unwrap();
            if path.extension().is_some_and(|e| e == "rs") && relative != Path::new("lib.rs") {
                let first = relative.components().next().unwrap();
                let module = Path::new(first.as_os_str())
                    .file_stem()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.push((module, path));
            }
        }
    }
    files.sort();
    files
}

/// The crate modules `text` refers to as `crate::NAME` (also inside
/// `crate::{a, b::c}`), outside comments and the test module.
fn uses(text: &str) -> Vec<String> {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        if !trimmed.starts_with("//") {
            code.push_str(line);
            code.push('\n');
        }
    }
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // e.g. `some_crate::`
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start => {
                        item_start = false;
                        found.push(ident(&group[i..]));
                    }
                    _ => {}
                }
            }
        } else {
            found.push(ident(rest));
        }
    }
    found.retain(|name| !name.is_empty());
    found
}

#[test]
fn every_module_uses_only_the_layers_below_its_own() {
    let mut wrong = Vec::new();
    for (module, path) in module_files() {
        let Some(own) = layer_of(&module) else {
            wrong.push(format!("{module} is in no layer of this test's LAYERS"));
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        for used in uses(&text) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(layer) if layer < own => {}
                Some(_) => wrong.push(format!(
                    "{} (layer {own}, {}) uses crate::{used} (layer {}, {})",
                    path.strip_prefix(src()).unwrap().display(),
                    LAYERS[own].join(", "),
                    layer_of(&used).unwrap(),
                    LAYERS[layer_of(&used).unwrap()].join(", ")
                )),
                None => wrong.push(format!(
                    "{} uses crate::{used}, which is in no layer",
                    path.display()
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "lower modules must not use higher ones:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_layers_name_every_module_lib_rs_declares_once() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut declared: Vec<String> = lib
        .lines()
        .filter_map(|line| {
            let line = line
                .trim_start()
                .strip_prefix("pub ")
                .unwrap_or(line.trim_start());
            line.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect();
    declared.sort();
    let mut layered: Vec<String> = LAYERS
        .iter()
        .flat_map(|l| l.iter())
        .map(|m| m.to_string())
        .collect();
    layered.sort();
    assert_eq!(declared, layered);
}

#[test]
fn uses_are_read_from_paths_groups_and_not_comments_or_tests() {
    let text = "\
use crate::json::Json;
pub use crate::{host::Side, headers::{HeaderName, is_token}};
// use crate::plan::Plan;
/// See [`crate::config`].
fn f() { crate::format::attribute::ROUTE_NAME; some_crate::x(); }

#[cfg(test)]
mod tests {
    use crate::offline::MemoryStream;
}
";
    assert_eq!(uses(text), ["json", "host", "headers", "format"]);
}
