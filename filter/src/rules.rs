//! Header rules, Envoy's `HeaderValueOption`: a name, a value in the
//! `%...%` language, an append action, and the lists of one direction
//! ([`Rules`]), parsed from and written back to Envoy's JSON. The top
//! level, routes, response rules and `header_mutation` all hold these.
//!
//! Above the formatters and header names; below the route table, the
//! mutations and the configuration, which use it.

use crate::format::{Command, Format, Segment};
use crate::headers::{check_value, forwarded_proto_removed, HeaderName, FORWARDED_PROTO, REROUTE};
use crate::host::Side;
use crate::json::{self, Json};
use crate::jsonpath::{
    comma_list, expect_array, expect_bool, expect_object, expect_string, field_path, item_path,
    parse_list, quoted, unknown_field, ConfigError,
};

/// The header fields of one level (top, route), as Envoy names them.
pub(crate) const LEVEL_FIELDS: &[&str] = &[
    "request_headers_to_add",
    "response_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_remove",
];
const OPTION_FIELDS: &[&str] = &["header", "append_action", "keep_empty_value", "append"];
const HEADER_FIELDS: &[&str] = &["key", "value"];

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

pub(crate) fn write_rules(out: &mut String, field: &str, rules: &Rules) {
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

pub(crate) fn write_names(out: &mut String, names: &[HeaderName]) {
    out.push('[');
    for (j, name) in names.iter().enumerate() {
        if j > 0 {
            out.push(',');
        }
        json::write_string(out, name.as_str());
    }
    out.push(']');
}

fn parse_rules(path: &str, value: &Json, side: Side) -> Result<Vec<HeaderRule>, ConfigError> {
    let items = expect_array(path, value)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(parse_rule(&item_path(path, i), item, side)?);
    }
    Ok(out)
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
