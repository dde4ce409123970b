//! Where a configuration is wrong, and why: [`ConfigError`] (the JSON path
//! of the offending item and the reason, one printable line), the paths
//! themselves (`routes[2].match.headers[0]`), and the typed reads every
//! parser of the configuration uses to walk the [`Json`] tree.
//!
//! The lowest layer of the configuration's parsing, above the JSON reader
//! only; it knows nothing of headers, routes or the plan.

use std::fmt;

use crate::json::Json;

/// Most entries in one list, as Envoy's route config allows.
pub const MAX_ENTRIES: usize = 1000;

/// A configuration error: the JSON path of the offending item and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// e.g. `response_headers_to_add[0].header.value`; empty for the whole document.
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(path: &str, reason: impl Into<String>) -> ConfigError {
        // A path holds object keys and a reason may hold a formatter's text,
        // both straight from the configuration: control characters are
        // escaped so the error stays one log line.
        ConfigError {
            path: one_line(path),
            reason: one_line(&reason.into()),
        }
    }
}

/// `text` with ASCII control characters written as `\xNN`.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_control() {
            push_hex_escape(&mut out, c as u8);
        } else {
            out.push(c);
        }
    }
    out
}

fn push_hex_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 15)] as char);
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// `text` in double quotes for an error message, with quotes, backslashes
/// and anything outside printable ASCII escaped, so a log line stays one
/// readable line whatever the configuration held. (Not `{:?}`: Debug
/// formatting pulls Unicode tables into the module.)
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for byte in text.bytes() {
        match byte {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(byte as char);
            }
            0x20..=0x7e => out.push(byte as char),
            _ => push_hex_escape(&mut out, byte),
        }
    }
    out.push('"');
    out
}

/// `a, b, c` for an error message (a loop: `[&str]::join` is a kilobyte of
/// generic code in the module).
pub(crate) fn comma_list(items: &[&str]) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(item);
    }
    out
}

/// Parses each item of the array at `path` (a loop, not `collect` into a
/// `Result`: that adapter is kilobytes of code per item type in the module).
pub(crate) fn parse_list<T>(
    path: &str,
    value: &Json,
    parse: fn(&str, &Json) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    let items = expect_array(path, value)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(parse(&item_path(path, i), item)?);
    }
    Ok(out)
}

/// `path[i]`.
pub(crate) fn item_path(path: &str, index: usize) -> String {
    let mut out = String::with_capacity(path.len() + 6);
    out.push_str(path);
    out.push('[');
    out.push_str(&index.to_string());
    out.push(']');
    out
}

/// `path.key` (just `key` at the top).
pub(crate) fn field_path(path: &str, key: &str) -> String {
    let mut out = String::with_capacity(path.len() + key.len() + 1);
    out.push_str(path);
    if !path.is_empty() {
        out.push('.');
    }
    out.push_str(key);
    out
}

pub(crate) fn expect_array<'a>(path: &str, value: &'a Json) -> Result<&'a [Json], ConfigError> {
    match value {
        Json::Array(items) if items.len() > MAX_ENTRIES => Err(too_many(path, items.len())),
        Json::Array(items) => Ok(items),
        other => Err(wrong_type(path, "an array", other)),
    }
}

pub(crate) fn expect_object<'a>(
    path: &str,
    value: &'a Json,
) -> Result<&'a [(String, Json)], ConfigError> {
    match value {
        Json::Object(object) => Ok(object),
        other => Err(wrong_type(path, "an object", other)),
    }
}

pub(crate) fn expect_string<'a>(path: &str, value: &'a Json) -> Result<&'a str, ConfigError> {
    match value {
        Json::String(s) => Ok(s),
        other => Err(wrong_type(path, "a string", other)),
    }
}

pub(crate) fn expect_bool(path: &str, value: &Json) -> Result<bool, ConfigError> {
    match value {
        Json::Bool(b) => Ok(*b),
        other => Err(wrong_type(path, "a boolean", other)),
    }
}

pub(crate) fn wrong_type(path: &str, expected: &str, got: &Json) -> ConfigError {
    ConfigError::new(path, format!("expected {expected}, got {}", got.kind()))
}

pub(crate) fn too_many(path: &str, count: usize) -> ConfigError {
    ConfigError::new(path, format!("{count} entries, the limit is {MAX_ENTRIES}"))
}

pub(crate) fn unknown_field(path: &str, accepted: &[&str]) -> ConfigError {
    ConfigError::new(
        path,
        format!("unknown field (accepted: {})", comma_list(accepted)),
    )
}
