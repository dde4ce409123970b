//! The JSON configuration: its shape, its validation, and its canonical
//! re-serialization.
//!
//! Everything a plugin configuration can get wrong is caught here, at
//! configure time, with the JSON path of the offending item. The types this
//! produces cannot hold a bad value (a [`HeaderName`] is a lower-case token
//! that Envoy lets filters modify; a value has no CR, LF or NUL), so nothing
//! after this module re-checks. No proxy-wasm here.

use std::fmt;

use crate::json::{self, Json};

use crate::format::{Command, Format, Segment, Side};
use crate::mutation::Mutations;
use crate::route::{ResponseRule, Route};

/// Largest configuration accepted, in bytes.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;
/// Most entries in one list, as Envoy's route config allows.
pub const MAX_ENTRIES: usize = 1000;
/// Longest header name or value, as Envoy's `HeaderValue` allows.
pub const MAX_HEADER_BYTES: usize = 16384;

/// The request header Envoy's router needs after this filter ran: every
/// request-header write of a Wasm filter clears Envoy's route cache, and
/// the router's next look-up gives no route (404) to a request whose
/// `x-forwarded-proto` is missing or empty (Envoy's
/// `VirtualHostImpl::getRouteFromEntries`). So explicit removals and empty
/// overwrites of it are refused, and pattern removals leave it alone.
pub const FORWARDED_PROTO: &str = "x-forwarded-proto";
/// Why [`FORWARDED_PROTO`] must stay, for messages.
pub(crate) const REROUTE: &str = "Envoy chooses the route again after a Wasm filter changes \
request headers, and a request whose x-forwarded-proto is missing or empty gets no route (404)";
/// What to do instead of removing [`FORWARDED_PROTO`] here.
pub(crate) const REMOVE_IN_ROUTE: &str = "remove it in the route instead (Envoy's route \
request_headers_to_remove, Istio's VirtualService headers.request.remove), which acts after \
routing";

/// The refusal of an explicit removal of [`FORWARDED_PROTO`] at `path`.
pub(crate) fn forwarded_proto_removed(path: &str) -> ConfigError {
    ConfigError::new(
        path,
        format!("{FORWARDED_PROTO} may not be removed from requests: {REROUTE}; {REMOVE_IN_ROUTE}"),
    )
}

/// The header fields of one level (top, route), as Envoy names them.
pub(crate) const LEVEL_FIELDS: &[&str] = &[
    "request_headers_to_add",
    "response_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_remove",
];
pub(crate) const FIELDS: &[&str] = &[
    "request_headers_to_add",
    "response_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_remove",
    "routes",
    "response_rules",
    "most_specific_header_mutations_wins",
];
const OPTION_FIELDS: &[&str] = &["header", "append_action", "keep_empty_value", "append"];
const HEADER_FIELDS: &[&str] = &["key", "value"];

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

/// Envoy's `HeaderValueOption.append_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AppendAction {
    /// Add a new entry, keeping any existing ones (the default).
    #[default]
    AppendIfExistsOrAdd,
    /// Add only if the header is absent.
    AddIfAbsent,
    /// Replace all existing entries, or add.
    OverwriteIfExistsOrAdd,
    /// Replace all existing entries; do nothing if absent.
    OverwriteIfExists,
}

impl AppendAction {
    pub const ALL: [AppendAction; 4] = [
        AppendAction::AppendIfExistsOrAdd,
        AppendAction::AddIfAbsent,
        AppendAction::OverwriteIfExistsOrAdd,
        AppendAction::OverwriteIfExists,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AppendAction::AppendIfExistsOrAdd => "APPEND_IF_EXISTS_OR_ADD",
            AppendAction::AddIfAbsent => "ADD_IF_ABSENT",
            AppendAction::OverwriteIfExistsOrAdd => "OVERWRITE_IF_EXISTS_OR_ADD",
            AppendAction::OverwriteIfExists => "OVERWRITE_IF_EXISTS",
        }
    }

    fn parse(name: &str) -> Option<AppendAction> {
        AppendAction::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Parses the action named by the string at `path`.
    pub(crate) fn parse_at(path: &str, value: &Json) -> Result<AppendAction, ConfigError> {
        let name = expect_string(path, value)?;
        AppendAction::parse(name).ok_or_else(|| {
            ConfigError::new(
                path,
                format!(
                    "unknown append action {} (accepted: {})",
                    quoted(name),
                    comma_list(&AppendAction::ALL.map(AppendAction::as_str))
                ),
            )
        })
    }
}

/// A header name a filter may write: a non-empty lower-case RFC 9110 token,
/// neither a pseudo-header nor `host`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderName(String);

impl HeaderName {
    /// Validates and lower-cases `name`; the error is the reason only.
    pub fn parse(name: &str) -> Result<HeaderName, String> {
        if name.is_empty() {
            return Err("header name must not be empty".into());
        }
        if name.len() > MAX_HEADER_BYTES {
            return Err(format!(
                "header name is {} bytes, the limit is {MAX_HEADER_BYTES}",
                name.len()
            ));
        }
        let lower = name.to_ascii_lowercase();
        if lower.starts_with(':') || lower == "host" {
            return Err(format!(
                "{}: :-prefixed or host headers may not be modified",
                quoted(name)
            ));
        }
        if !is_token(&lower) {
            return Err(format!(
                "{} is not a valid header name (RFC 9110 token characters only)",
                quoted(name)
            ));
        }
        Ok(HeaderName(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

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

/// RFC 9110 `token`: one or more tchar.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// One `request_headers_to_add` / `response_headers_to_add` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderRule {
    pub name: HeaderName,
    pub value: Format,
    pub action: AppendAction,
    pub keep_empty_value: bool,
}

/// The rules of one direction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    pub add: Vec<HeaderRule>,
    pub remove: Vec<HeaderName>,
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// The top level's rules (Envoy's virtual host or route configuration
    /// level: they apply to every request).
    pub request: Rules,
    pub response: Rules,
    /// Levels applied right after the top level when the response meets
    /// their conditions.
    pub response_rules: Vec<ResponseRule>,
    /// First match wins; the matched route's rules are one more level.
    pub routes: Vec<Route>,
    /// Envoy's `RouteConfiguration` flag: when true, the top level runs
    /// first and the route's level last (the route wins).
    pub most_specific_header_mutations_wins: bool,
    /// The other form: Envoy's `header_mutation` filter config (then every
    /// field above is empty).
    pub mutations: Option<Mutations>,
}

impl Config {
    /// Parses a plugin configuration. Empty (or blank) input is an empty
    /// configuration. Two shapes are accepted: Envoy's (the four
    /// `*_headers_to_*` lists) and Maistra's flat `{"name": "value"}`, which
    /// appends literal values to every response.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::new(
                "",
                format!(
                    "configuration is {} bytes, the limit is {MAX_CONFIG_BYTES}",
                    bytes.len()
                ),
            ));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Config::default());
        }
        let value = json::parse(bytes).map_err(|e| invalid_json(bytes, &e))?;
        let Json::Object(object) = value else {
            return Err(ConfigError::new(
                "",
                format!("configuration must be a JSON object, got {}", value.kind()),
            ));
        };
        if object.iter().any(|(k, _)| k == "mutations") {
            Mutations::parse_config(&object)
        } else if object.iter().any(|(k, _)| FIELDS.contains(&k.as_str())) || object.is_empty() {
            parse_envoy_form(&object)
        } else {
            parse_flat_form(&object)
        }
    }

    /// The canonical JSON (Envoy's shape, every field explicit); parsing it
    /// gives back an equal configuration.
    pub fn to_json(&self) -> String {
        if let Some(mutations) = &self.mutations {
            return mutations.config_json();
        }
        let mut out = String::from("{");
        write_rules(&mut out, "request_headers_to_add", &self.request);
        out.push(',');
        write_rules(&mut out, "response_headers_to_add", &self.response);
        out.push_str(",\"request_headers_to_remove\":");
        write_names(&mut out, &self.request.remove);
        out.push_str(",\"response_headers_to_remove\":");
        write_names(&mut out, &self.response.remove);
        if !self.routes.is_empty() {
            out.push_str(",\"routes\":[");
            for (i, route) in self.routes.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                route.write_json(&mut out);
            }
            out.push(']');
        }
        if !self.response_rules.is_empty() {
            out.push_str(",\"response_rules\":[");
            for (i, rule) in self.response_rules.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                rule.write_json(&mut out);
            }
            out.push(']');
        }
        if self.most_specific_header_mutations_wins {
            out.push_str(",\"most_specific_header_mutations_wins\":true");
        }
        out.push('}');
        out
    }

    /// The top level's rules of `side`.
    pub fn rules(&self, side: Side) -> &Rules {
        match side {
            Side::Request => &self.request,
            Side::Response => &self.response,
        }
    }
}

/// The refusal of input that is not JSON.
fn invalid_json(bytes: &[u8], error: &json::SyntaxError) -> ConfigError {
    ConfigError::new("", format!("invalid JSON: {error}{}", yaml_hint(bytes)))
}

/// Off the module (in `extpack`), YAML, what Kubernetes resources and
/// Envoy bootstraps are written in, gets a hint; the module leaves it out
/// (about 1 KB of its size budget).
#[cfg(not(target_arch = "wasm32"))]
fn yaml_hint(bytes: &[u8]) -> &'static str {
    if looks_like_yaml(bytes) {
        " (this looks like YAML; the filter takes JSON: convert it, e.g. with yq -o=json)"
    } else {
        ""
    }
}

#[cfg(target_arch = "wasm32")]
fn yaml_hint(_: &[u8]) -> &'static str {
    ""
}

/// Whether the first line that is not blank or a `#` comment opens a YAML
/// document, list item or mapping (`---`, `- `, `key:`). JSON starts with
/// `{`, `[`, `"` or a scalar, and never has a comment.
#[cfg(not(target_arch = "wasm32"))]
fn looks_like_yaml(bytes: &[u8]) -> bool {
    let Some(first) = bytes
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .find(|line| !line.is_empty() && line[0] != b'#')
    else {
        // Nothing but comments: a YAML document.
        return bytes.trim_ascii_start().first() == Some(&b'#');
    };
    if first == b"---" || first == b"-" || first.starts_with(b"- ") {
        return true;
    }
    let Some(colon) = first.iter().position(|&b| b == b':') else {
        return false;
    };
    let key = first[..colon]
        .strip_prefix(b"\"")
        .and_then(|k| k.strip_suffix(b"\""))
        .unwrap_or(&first[..colon]);
    !key.is_empty()
        && key
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && matches!(first.get(colon + 1), None | Some(b' '))
}

fn parse_envoy_form(object: &[(String, Json)]) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    for (key, value) in object {
        let path = key.as_str();
        match path {
            "routes" => config.routes = Route::parse_list(path, value)?,
            "response_rules" => config.response_rules = ResponseRule::parse_list(path, value)?,
            "most_specific_header_mutations_wins" => {
                config.most_specific_header_mutations_wins = expect_bool(path, value)?
            }
            _ if LEVEL_FIELDS.contains(&path) => {
                parse_level_field(path, path, value, &mut config.request, &mut config.response)?
            }
            _ => return Err(unknown_field(path, FIELDS)),
        }
    }
    if config.routes.len() > MAX_ENTRIES {
        return Err(too_many("routes", config.routes.len()));
    }
    Ok(config)
}

/// Parses one of the four [`LEVEL_FIELDS`] (`key`, found at `path`) into
/// the level's rules.
pub(crate) fn parse_level_field(
    key: &str,
    path: &str,
    value: &Json,
    request: &mut Rules,
    response: &mut Rules,
) -> Result<(), ConfigError> {
    match key {
        "request_headers_to_add" => request.add = parse_rules(path, value, Side::Request)?,
        "response_headers_to_add" => response.add = parse_rules(path, value, Side::Response)?,
        "request_headers_to_remove" => {
            request.remove = parse_names(path, value)?;
            if let Some(i) = request
                .remove
                .iter()
                .position(|n| n.as_str() == FORWARDED_PROTO)
            {
                return Err(forwarded_proto_removed(&item_path(path, i)));
            }
        }
        _ => response.remove = parse_names(path, value)?,
    }
    Ok(())
}

/// Writes the four level fields after an opening member (each preceded by
/// a comma); empty lists are left out, except by [`Config::to_json`] which
/// writes the top level's in full.
pub(crate) fn write_level_fields(out: &mut String, request: &Rules, response: &Rules) {
    for (field, rules) in [
        ("request_headers_to_add", request),
        ("response_headers_to_add", response),
    ] {
        if !rules.add.is_empty() {
            out.push(',');
            write_rules(out, field, rules);
        }
    }
    for (field, rules) in [
        ("request_headers_to_remove", request),
        ("response_headers_to_remove", response),
    ] {
        if !rules.remove.is_empty() {
            out.push_str(&format!(",\"{field}\":"));
            write_names(out, &rules.remove);
        }
    }
}

fn write_rules(out: &mut String, field: &str, rules: &Rules) {
    out.push_str(&format!("\"{field}\":["));
    for (j, rule) in rules.add.iter().enumerate() {
        if j > 0 {
            out.push(',');
        }
        write_rule(out, rule);
    }
    out.push(']');
}

/// One `HeaderValueOption`, every field explicit.
pub(crate) fn write_rule(out: &mut String, rule: &HeaderRule) {
    out.push_str("{\"header\":{\"key\":");
    json::write_string(out, rule.name.as_str());
    out.push_str(",\"value\":");
    json::write_string(out, &rule.value.to_string());
    out.push_str(&format!(
        "}},\"append_action\":\"{}\",\"keep_empty_value\":{}}}",
        rule.action.as_str(),
        rule.keep_empty_value
    ));
}

fn write_names(out: &mut String, names: &[HeaderName]) {
    out.push('[');
    for (j, name) in names.iter().enumerate() {
        if j > 0 {
            out.push(',');
        }
        json::write_string(out, name.as_str());
    }
    out.push(']');
}

fn parse_flat_form(object: &[(String, Json)]) -> Result<Config, ConfigError> {
    let mut add = Vec::with_capacity(object.len());
    if object.len() > MAX_ENTRIES {
        return Err(too_many("", object.len()));
    }
    for (key, value) in object {
        let Json::String(text) = value else {
            return Err(ConfigError::new(
                key,
                format!(
                    "unknown field (accepted: {}; or a flat object whose values are all strings)",
                    comma_list(FIELDS)
                ),
            ));
        };
        let name = HeaderName::parse(key).map_err(|reason| ConfigError::new(key, reason))?;
        check_value(key, text)?;
        add.push(HeaderRule {
            name,
            value: Format::literal(text),
            action: AppendAction::AppendIfExistsOrAdd,
            keep_empty_value: false,
        });
    }
    Ok(Config {
        response: Rules {
            add,
            remove: Vec::new(),
        },
        ..Config::default()
    })
}

fn parse_rules(path: &str, value: &Json, side: Side) -> Result<Vec<HeaderRule>, ConfigError> {
    let items = expect_array(path, value)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(parse_rule(&item_path(path, i), item, side)?);
    }
    Ok(out)
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

/// Parses one `HeaderValueOption` whose value is written on `side`.
pub(crate) fn parse_rule(path: &str, value: &Json, side: Side) -> Result<HeaderRule, ConfigError> {
    let object = expect_object(path, value)?;
    let mut header = None;
    let mut action = None;
    let mut append = None;
    let mut keep_empty_value = false;
    for (key, value) in object {
        let field = field_path(path, key);
        match key.as_str() {
            "header" => header = Some(parse_header(&field, value, side)?),
            "append_action" => action = Some(AppendAction::parse_at(&field, value)?),
            "keep_empty_value" => keep_empty_value = expect_bool(&field, value)?,
            "append" => append = Some(expect_bool(&field, value)?),
            _ => return Err(unknown_field(&field, OPTION_FIELDS)),
        }
    }
    let (name, value) = header.ok_or_else(|| {
        ConfigError::new(&field_path(path, "header"), "required field is missing")
    })?;
    let action = match (action, append) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                &field_path(path, "append"),
                "both append and append_action are set; use append_action only",
            ))
        }
        (Some(action), None) => action,
        (None, Some(true)) | (None, None) => AppendAction::AppendIfExistsOrAdd,
        (None, Some(false)) => AppendAction::OverwriteIfExistsOrAdd,
    };
    if side == Side::Request
        && keep_empty_value
        && name.as_str() == FORWARDED_PROTO
        && matches!(
            action,
            AppendAction::OverwriteIfExistsOrAdd | AppendAction::OverwriteIfExists
        )
        && can_render_empty(&value)
    {
        return Err(ConfigError::new(
            &field_path(path, "keep_empty_value"),
            format!(
                "would write {FORWARDED_PROTO} empty: {REROUTE}; drop keep_empty_value \
                 (an empty value is then not written)"
            ),
        ));
    }
    Ok(HeaderRule {
        name,
        value,
        action,
        keep_empty_value,
    })
}

fn parse_header(path: &str, value: &Json, side: Side) -> Result<(HeaderName, Format), ConfigError> {
    let object = expect_object(path, value)?;
    let mut key = None;
    let mut text = "";
    for (field, value) in object {
        let field_path = field_path(path, field);
        match field.as_str() {
            "key" => key = Some(expect_string(&field_path, value)?),
            "value" => text = expect_string(&field_path, value)?,
            _ => return Err(unknown_field(&field_path, HEADER_FIELDS)),
        }
    }
    let key_path = field_path(path, "key");
    let key = key.ok_or_else(|| ConfigError::new(&key_path, "required field is missing"))?;
    let name = HeaderName::parse(key).map_err(|reason| ConfigError::new(&key_path, reason))?;
    let value_path = field_path(path, "value");
    check_value(&value_path, text)?;
    let format =
        Format::parse(text, side).map_err(|e| ConfigError::new(&value_path, e.to_string()))?;
    Ok((name, format))
}

/// Whether `value` may render as nothing: it holds no literal text.
fn can_render_empty(value: &Format) -> bool {
    value.segments().iter().all(|segment| match segment {
        Segment::Literal(text) => text.is_empty(),
        Segment::Command(Command::Constant { value, .. }) => value.is_empty(),
        Segment::Command(_) => true,
    })
}

fn parse_names(path: &str, value: &Json) -> Result<Vec<HeaderName>, ConfigError> {
    parse_list(path, value, |path, item| {
        let name = expect_string(path, item)?;
        HeaderName::parse(name).map_err(|reason| ConfigError::new(path, reason))
    })
}

pub(crate) fn check_value(path: &str, text: &str) -> Result<(), ConfigError> {
    if text.len() > MAX_HEADER_BYTES {
        return Err(ConfigError::new(
            path,
            format!(
                "value is {} bytes, the limit is {MAX_HEADER_BYTES}",
                text.len()
            ),
        ));
    }
    if text.contains(['\r', '\n']) {
        return Err(ConfigError::new(path, "contains CR/LF"));
    }
    if text.contains('\0') {
        return Err(ConfigError::new(path, "contains NUL"));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        Config::parse(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn empty_input_is_an_empty_config() {
        for input in ["", "  \n", "{}"] {
            assert_eq!(Config::parse(input.as_bytes()).unwrap(), Config::default());
        }
    }

    #[test]
    fn full_envoy_form_is_parsed() {
        let config = Config::parse(
            br#"{
              "request_headers_to_add": [
                {"header": {"key": "X-Env", "value": "prod"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
              ],
              "response_headers_to_add": [
                {"header": {"key": "x-client", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}, "keep_empty_value": true}
              ],
              "request_headers_to_remove": ["X-Debug"],
              "response_headers_to_remove": ["x-powered-by"]
            }"#,
        )
        .unwrap();
        let rule = &config.request.add[0];
        assert_eq!(rule.name.as_str(), "x-env");
        assert_eq!(rule.value.as_constant(), Some("prod"));
        assert_eq!(rule.action, AppendAction::OverwriteIfExistsOrAdd);
        let rule = &config.response.add[0];
        assert_eq!(rule.action, AppendAction::AppendIfExistsOrAdd);
        assert!(rule.keep_empty_value);
        assert_eq!(rule.value.as_constant(), None);
        assert_eq!(config.request.remove[0].as_str(), "x-debug");
        assert_eq!(config.response.remove[0].as_str(), "x-powered-by");
    }

    #[test]
    fn every_append_action_name_is_accepted() {
        for action in AppendAction::ALL {
            let json = format!(
                r#"{{"request_headers_to_add":[{{"header":{{"key":"a","value":"b"}},"append_action":"{}"}}]}}"#,
                action.as_str()
            );
            assert_eq!(
                Config::parse(json.as_bytes()).unwrap().request.add[0].action,
                action
            );
        }
    }

    #[test]
    fn deprecated_append_maps_to_actions() {
        let parse = |append: &str| {
            let json = format!(
                r#"{{"request_headers_to_add":[{{"header":{{"key":"a","value":"b"}},"append":{append}}}]}}"#
            );
            Config::parse(json.as_bytes()).unwrap().request.add[0].action
        };
        assert_eq!(parse("true"), AppendAction::AppendIfExistsOrAdd);
        assert_eq!(parse("false"), AppendAction::OverwriteIfExistsOrAdd);
    }

    #[test]
    fn maistra_flat_form_appends_literals_to_responses() {
        let config = Config::parse(br#"{"X-A": "1", "x-b": "50% off"}"#).unwrap();
        assert!(config.request.add.is_empty());
        let names: Vec<_> = config
            .response
            .add
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["x-a", "x-b"]);
        assert_eq!(config.response.add[1].value.as_constant(), Some("50% off"));
        assert!(config
            .response
            .add
            .iter()
            .all(|r| r.action == AppendAction::AppendIfExistsOrAdd));
    }

    #[test]
    fn validation_errors_name_the_path_and_the_reason() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"response_headers_to_add":[{"header":{"key":"x","value":"a\r\nb"}}]}"#,
                "response_headers_to_add[0].header.value: contains CR/LF",
            ),
            (
                r#"{"response_headers_to_add":[{"header":{"key":"x","value":"a\u0000"}}]}"#,
                "response_headers_to_add[0].header.value: contains NUL",
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":"x","value":"1"},"colour":"red"}]}"#,
                "request_headers_to_add[0].colour: unknown field (accepted: header, append_action, keep_empty_value, append)",
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":"x","value":"1","raw_value":"eA=="}}]}"#,
                "request_headers_to_add[0].header.raw_value: unknown field (accepted: key, value)",
            ),
            (
                r#"{"request_headers_to_add":[],"extra":1}"#,
                "extra: unknown field (accepted: request_headers_to_add, response_headers_to_add, request_headers_to_remove, response_headers_to_remove, routes, response_rules, most_specific_header_mutations_wins)",
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":"bad name","value":"1"}}]}"#,
                r#"request_headers_to_add[0].header.key: "bad name" is not a valid header name (RFC 9110 token characters only)"#,
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":"","value":"1"}}]}"#,
                "request_headers_to_add[0].header.key: header name must not be empty",
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":":path","value":"/"}}]}"#,
                r#"request_headers_to_add[0].header.key: ":path": :-prefixed or host headers may not be modified"#,
            ),
            (
                r#"{"request_headers_to_remove":["Host"]}"#,
                r#"request_headers_to_remove[0]: "Host": :-prefixed or host headers may not be modified"#,
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":"x","value":"%FOO%"}}]}"#,
                "request_headers_to_add[0].header.value: unknown formatter %FOO% at byte 0",
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":"x","value":"100%"}}]}"#,
                "request_headers_to_add[0].header.value: unterminated formatter at byte 3 (write %% for a literal percent)",
            ),
            (
                r#"{"request_headers_to_add":{"header":{}}}"#,
                "request_headers_to_add: expected an array, got an object",
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":"x","value":1}}]}"#,
                "request_headers_to_add[0].header.value: expected a string, got a number",
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":"x"},"keep_empty_value":"yes"}]}"#,
                "request_headers_to_add[0].keep_empty_value: expected a boolean, got a string",
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":"x"},"append_action":"APPEND"}]}"#,
                r#"request_headers_to_add[0].append_action: unknown append action "APPEND" (accepted: APPEND_IF_EXISTS_OR_ADD, ADD_IF_ABSENT, OVERWRITE_IF_EXISTS_OR_ADD, OVERWRITE_IF_EXISTS)"#,
            ),
            (
                r#"{"request_headers_to_add":[{"append_action":"ADD_IF_ABSENT"}]}"#,
                "request_headers_to_add[0].header: required field is missing",
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"value":"v"}}]}"#,
                "request_headers_to_add[0].header.key: required field is missing",
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":"x"},"append":true,"append_action":"ADD_IF_ABSENT"}]}"#,
                "request_headers_to_add[0].append: both append and append_action are set; use append_action only",
            ),
            (
                r#"{"response_headers_to_remove":[7]}"#,
                "response_headers_to_remove[0]: expected a string, got a number",
            ),
            (
                r#"{"x-a":"1","x-b":{"nested":true}}"#,
                "x-b: unknown field (accepted: request_headers_to_add, response_headers_to_add, request_headers_to_remove, response_headers_to_remove, routes, response_rules, most_specific_header_mutations_wins; or a flat object whose values are all strings)",
            ),
            (r#"{"x a":"1"}"#, r#"x a: "x a" is not a valid header name (RFC 9110 token characters only)"#),
            (r#"{"x-a":"1\n"}"#, "x-a: contains CR/LF"),
            (r#"["x"]"#, "configuration must be a JSON object, got an array"),
            (r#"{"a":"#, "invalid JSON: EOF while parsing a value at line 1 column 6"),
            (r#"{"x-a":"1","x-a":"2"}"#, "invalid JSON: duplicate key at line 1 column 12"),
        ];
        for (json, expected) in cases {
            let got = error(json);
            assert!(
                got.starts_with(expected),
                "{json}\n  got:      {got}\n  expected: {expected}"
            );
        }
    }

    #[test]
    fn x_forwarded_proto_may_not_be_removed_or_emptied_on_requests() {
        let remove = format!(
            "x-forwarded-proto may not be removed from requests: {REROUTE}; {REMOVE_IN_ROUTE}"
        );
        let empty = format!(
            "would write x-forwarded-proto empty: {REROUTE}; drop keep_empty_value (an empty \
             value is then not written)"
        );
        let overwrite = |value: &str, action: &str| {
            format!(
                r#"{{"header":{{"key":"x-forwarded-proto","value":"{value}"}},"append_action":"{action}","keep_empty_value":true}}"#
            )
        };
        let cases = [
            (
                r#"{"request_headers_to_remove":["x-a","X-Forwarded-Proto"]}"#.to_string(),
                format!("request_headers_to_remove[1]: {remove}"),
            ),
            (
                r#"{"routes":[{"match":{},"request_headers_to_remove":["x-forwarded-proto"]}]}"#
                    .to_string(),
                format!("routes[0].request_headers_to_remove[0]: {remove}"),
            ),
            (
                r#"{"mutations":{"request_mutations":[{"append":{"header":{"key":"a","value":"b"}}},{"remove":"x-forwarded-proto"}]}}"#
                    .to_string(),
                format!("mutations.request_mutations[1].remove: {remove}"),
            ),
            (
                format!(
                    r#"{{"request_headers_to_add":[{}]}}"#,
                    overwrite("", "OVERWRITE_IF_EXISTS_OR_ADD")
                ),
                format!("request_headers_to_add[0].keep_empty_value: {empty}"),
            ),
            (
                format!(
                    r#"{{"routes":[{{"match":{{}},"request_headers_to_add":[{}]}}]}}"#,
                    overwrite("%REQ(x-proto)%", "OVERWRITE_IF_EXISTS")
                ),
                format!("routes[0].request_headers_to_add[0].keep_empty_value: {empty}"),
            ),
            (
                format!(
                    r#"{{"mutations":{{"request_mutations":[{{"append":{}}}]}}}}"#,
                    overwrite("%REQ(a)%%REQ(b)%", "OVERWRITE_IF_EXISTS_OR_ADD")
                ),
                format!("mutations.request_mutations[0].append.keep_empty_value: {empty}"),
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":"x-forwarded-proto","value":""},"append":false,"keep_empty_value":true}]}"#
                    .to_string(),
                format!("request_headers_to_add[0].keep_empty_value: {empty}"),
            ),
        ];
        for (json, expected) in &cases {
            assert_eq!(&error(json), expected, "{json}");
        }
        // What leaves it present and non-empty, or is on the response side,
        // is taken.
        for json in [
            r#"{"response_headers_to_remove":["x-forwarded-proto"]}"#.to_string(),
            r#"{"mutations":{"response_mutations":[{"remove":"x-forwarded-proto"}]}}"#.to_string(),
            format!(
                r#"{{"request_headers_to_add":[{}]}}"#,
                overwrite("https", "OVERWRITE_IF_EXISTS_OR_ADD")
            ),
            format!(
                r#"{{"request_headers_to_add":[{}]}}"#,
                overwrite("p-%REQ(x)%", "OVERWRITE_IF_EXISTS")
            ),
            format!(
                r#"{{"request_headers_to_add":[{}]}}"#,
                overwrite("", "APPEND_IF_EXISTS_OR_ADD")
            ),
            r#"{"request_headers_to_add":[{"header":{"key":"x-forwarded-proto","value":"%REQ(x)%"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"}]}"#.to_string(),
            r#"{"response_headers_to_add":[{"header":{"key":"x-forwarded-proto","value":""},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD","keep_empty_value":true}]}"#.to_string(),
        ] {
            assert!(Config::parse(json.as_bytes()).is_ok(), "{json}");
        }
    }

    #[test]
    fn yaml_given_for_json_gets_a_hint() {
        const HINT: &str =
            "(this looks like YAML; the filter takes JSON: convert it, e.g. with yq -o=json)";
        for yaml in [
            "request_headers_to_add:\n- header: {key: x-a, value: b}\n",
            "# headers\n\nresponse_headers_to_remove: [x-powered-by]\n",
            "---\nx-a: b\n",
            "- a\n",
            "\"x-a\": \"1\"\n",
            "mutations:\n  request_mutations: []\n",
        ] {
            let got = error(yaml);
            assert!(got.starts_with("invalid JSON: "), "{got}");
            assert!(got.ends_with(HINT), "{yaml:?}: {got}");
        }
        for json in [r#"{"a":"#, "{\n  \"x\": 1,\n}", "x-a", "[1,"] {
            let got = error(json);
            assert!(got.starts_with("invalid JSON: "), "{got}");
            assert!(!got.contains("YAML"), "{json:?}: {got}");
        }
    }

    #[test]
    fn a_string_matcher_given_as_a_string_names_the_shape() {
        assert_eq!(
            error(r#"{"routes":[{"match":{"route_name":"reviews-v2"}}]}"#),
            r#"routes[0].match.route_name: expected a StringMatcher object such as {"exact": "reviews-v2"}, got a string"#
        );
        assert_eq!(
            error(
                r#"{"mutations":{"response_mutations":[{"remove_on_match":{"key_matcher":"x-"}}]}}"#
            ),
            r#"mutations.response_mutations[0].remove_on_match.key_matcher: expected a StringMatcher object such as {"exact": "x-"}, got a string"#
        );
    }

    #[test]
    fn quoted_names_stay_on_one_printable_line() {
        assert_eq!(quoted("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quoted("x\ty\u{e9}"), r#""x\x09y\xc3\xa9""#);
    }

    #[test]
    fn errors_stay_one_line_whatever_the_keys_and_values_hold() {
        for (json, expected) in [
            (
                r#"{"a\r\nb":"1"}"#,
                r#"a\x0d\x0ab: "a\x0d\x0ab" is not a valid header name"#,
            ),
            (
                r#"{"request_headers_to_add":[],"x\ny":1}"#,
                "x\\x0ay: unknown field",
            ),
            (
                r#"{"request_headers_to_add":[{"header":{"key":"x","value":"%A\u001bB%"}}]}"#,
                "request_headers_to_add[0].header.value: unknown formatter %A\\x1bB% at byte 0",
            ),
        ] {
            let got = error(json);
            assert!(
                got.starts_with(expected),
                "{json}\n  got:      {got}\n  expected: {expected}"
            );
            assert!(!got.chars().any(|c| c.is_ascii_control()), "{got:?}");
        }
    }

    #[test]
    fn oversized_inputs_are_refused() {
        let big = vec![b' '; MAX_CONFIG_BYTES + 1];
        assert!(Config::parse(&big)
            .unwrap_err()
            .reason
            .contains("the limit is 262144"));
        let long = "v".repeat(MAX_HEADER_BYTES + 1);
        let json = format!(
            r#"{{"request_headers_to_add":[{{"header":{{"key":"x","value":"{long}"}}}}]}}"#
        );
        assert_eq!(
            error(&json),
            "request_headers_to_add[0].header.value: value is 16385 bytes, the limit is 16384"
        );
        let many = format!(
            r#"{{"request_headers_to_remove":[{}]}}"#,
            vec![r#""x""#; MAX_ENTRIES + 1].join(",")
        );
        assert_eq!(
            error(&many),
            "request_headers_to_remove: 1001 entries, the limit is 1000"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(error(&deep).starts_with("invalid JSON: recursion limit exceeded"));
    }

    #[test]
    fn canonical_json_round_trips() {
        let config = Config::parse(
            br#"{"request_headers_to_add":[{"header":{"key":"a","value":"%%%REQ(b?c):3%"},"append_action":"ADD_IF_ABSENT"}],
                "response_headers_to_remove":["z"]}"#,
        )
        .unwrap();
        assert_eq!(Config::parse(config.to_json().as_bytes()).unwrap(), config);
        let flat = Config::parse(br#"{"x-a":"100%"}"#).unwrap();
        assert_eq!(Config::parse(flat.to_json().as_bytes()).unwrap(), flat);
    }
}
