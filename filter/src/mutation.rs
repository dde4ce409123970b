//! Envoy's other header config: the `mutations` of its
//! `envoy.filters.http.header_mutation` filter, taken as is, and applied as
//! that filter applies them (Envoy 1.40,
//! `source/extensions/filters/http/header_mutation/header_mutation.cc` and
//! `source/common/http/header_mutation.cc`).
//!
//! Unlike the route config's `HeaderParser` (see [`crate::plan`]), nothing
//! is staged: each `append`, `remove` and `remove_on_match` is evaluated and
//! applied in turn, so a mutation sees what the ones before it did. Query
//! parameter mutations then rewrite `:path` the way Envoy's
//! `Http::Utility::QueryParamsMulti` does (parameters sorted by name, a
//! bare name written `name=`, an added value URL-encoded as Envoy 1.38+
//! encodes it), with two safe differences, both documented in the README:
//! - parameters the request had keep their bytes (Envoy percent-decodes
//!   them and writes them back raw: `a%26b` becomes two parameters);
//! - `remove_on_match` never removes a pseudo-header or `host` (Envoy's
//!   removes `:path` or `:authority` when the matcher matches them), nor the
//!   request's `x-forwarded-proto` (Envoy's filter does not re-route; after
//!   a Wasm filter's change Envoy does, and finds no route without it).
//!
//! No proxy-wasm here; the stream is reached through [`Host`].

use std::borrow::Cow;

use crate::format::Format;
use crate::headers::{
    check_value, forwarded_proto_removed, HeaderName, HeaderPairs, FORWARDED_PROTO,
};
use crate::host::{Host, Outcome, Side};
use crate::json::{self, Json};
use crate::jsonpath::{
    expect_object, expect_string, field_path, parse_list, unknown_field, ConfigError,
};
use crate::matcher::StringMatcher;
use crate::rules::{parse_rule, write_rule, AppendAction, HeaderRule};

const FIELDS: &[&str] = &[
    "request_mutations",
    "response_mutations",
    "query_parameter_mutations",
];
/// Fields of Envoy's `Mutations` that a filter running only on headers
/// cannot honour.
const UNSUPPORTED_FIELDS: &[&str] = &["request_trailers_mutations", "response_trailers_mutations"];
const HEADER_MUTATION_FIELDS: &[&str] = &["append", "remove", "remove_on_match"];
const QUERY_MUTATION_FIELDS: &[&str] = &["append", "remove"];
const QUERY_APPEND_FIELDS: &[&str] = &["record", "action"];
const RECORD_FIELDS: &[&str] = &["key", "value"];

/// Envoy's `header_mutation.v3.Mutations`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mutations {
    pub request: Vec<HeaderMutation>,
    pub response: Vec<HeaderMutation>,
    /// `query_parameter_mutations`: applied after `request`.
    pub query: Vec<QueryMutation>,
}

/// Envoy's `mutation_rules.v3.HeaderMutation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMutation {
    Append(HeaderRule),
    Remove(HeaderName),
    /// Removes every header whose name matches.
    RemoveOnMatch(StringMatcher),
}

/// Envoy's `core.v3.KeyValueMutation` on the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryMutation {
    Append {
        key: String,
        value: Format,
        action: AppendAction,
    },
    Remove(String),
}

impl Mutations {
    /// Parses a whole plugin configuration of this form: the object holds
    /// `mutations` and nothing else.
    pub(crate) fn parse_config(
        object: &[(String, Json)],
    ) -> Result<Option<Mutations>, ConfigError> {
        let mut mutations = None;
        for (key, value) in object {
            if key != "mutations" {
                return Err(ConfigError::new(
                    key,
                    "cannot be combined with mutations (one form per configuration: \
                     Envoy's header_mutation config alone, or the route-config fields)",
                ));
            }
            mutations = Some(Mutations::parse(key, value)?);
        }
        Ok(mutations)
    }

    fn parse(path: &str, value: &Json) -> Result<Mutations, ConfigError> {
        let mut mutations = Mutations::default();
        for (key, value) in expect_object(path, value)? {
            let field = field_path(path, key);
            match key.as_str() {
                "request_mutations" => {
                    mutations.request = parse_list(&field, value, HeaderMutation::parse_request)?
                }
                "response_mutations" => {
                    mutations.response = parse_list(&field, value, HeaderMutation::parse_response)?
                }
                "query_parameter_mutations" => {
                    mutations.query = parse_list(&field, value, QueryMutation::parse)?
                }
                _ if UNSUPPORTED_FIELDS.contains(&key.as_str()) => {
                    return Err(ConfigError::new(
                        &field,
                        "not supported by this filter (it does not see trailers)",
                    ))
                }
                _ => return Err(unknown_field(&field, FIELDS)),
            }
        }
        Ok(mutations)
    }

    /// The configuration as JSON, every field explicit; parsing it gives
    /// back an equal configuration.
    pub(crate) fn config_json(&self) -> String {
        let mut out = String::from("{\"mutations\":{\"request_mutations\":");
        write_header_mutations(&mut out, &self.request);
        out.push_str(",\"response_mutations\":");
        write_header_mutations(&mut out, &self.response);
        out.push_str(",\"query_parameter_mutations\":[");
        for (i, mutation) in self.query.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            mutation.write_json(&mut out);
        }
        out.push_str("]}}");
        out
    }

    /// Whether anything happens on `side` (the glue can skip a side).
    pub fn touches(&self, side: Side) -> bool {
        match side {
            Side::Request => !self.request.is_empty() || !self.query.is_empty(),
            Side::Response => !self.response.is_empty(),
        }
    }

    /// Request headers that response mutations read (`%REQ(..)%`).
    pub fn request_headers_for_response(&self) -> impl Iterator<Item = &str> {
        self.response
            .iter()
            .filter_map(|mutation| match mutation {
                HeaderMutation::Append(rule) => Some(rule.value.header_names(Side::Request)),
                _ => None,
            })
            .flatten()
    }

    /// The request mutations, one after the other, then the query
    /// parameter mutations.
    pub fn request<H: Host + ?Sized>(&self, host: &mut H) -> Outcome {
        let mut outcome = apply(&self.request, Side::Request, host);
        if !self.query.is_empty() {
            rewrite_query(&self.query, host, &mut outcome);
        }
        outcome
    }

    pub fn response<H: Host + ?Sized>(&self, host: &mut H) -> Outcome {
        apply(&self.response, Side::Response, host)
    }
}

/// `only one of a, b may be set (x is set too)`.
fn only_one(path: &str, fields: &[&str], other: &str) -> ConfigError {
    ConfigError::new(
        path,
        format!(
            "only one of {} may be set ({other} is set too)",
            crate::jsonpath::comma_list(fields)
        ),
    )
}

fn required(path: &str, field: &str) -> ConfigError {
    ConfigError::new(&field_path(path, field), "required field is missing")
}

impl HeaderMutation {
    fn parse_request(path: &str, value: &Json) -> Result<HeaderMutation, ConfigError> {
        HeaderMutation::parse(path, value, Side::Request)
    }

    fn parse_response(path: &str, value: &Json) -> Result<HeaderMutation, ConfigError> {
        HeaderMutation::parse(path, value, Side::Response)
    }

    fn parse(path: &str, value: &Json, side: Side) -> Result<HeaderMutation, ConfigError> {
        let mut found: Option<(&str, HeaderMutation)> = None;
        for (key, value) in expect_object(path, value)? {
            let field = field_path(path, key);
            let mutation = match key.as_str() {
                "append" => HeaderMutation::Append(parse_rule(&field, value, side)?),
                "remove" => {
                    let name = expect_string(&field, value)?;
                    let name = HeaderName::parse(name)
                        .map_err(|reason| ConfigError::new(&field, reason))?;
                    if side == Side::Request && name.as_str() == FORWARDED_PROTO {
                        return Err(forwarded_proto_removed(&field));
                    }
                    HeaderMutation::Remove(name)
                }
                "remove_on_match" => {
                    HeaderMutation::RemoveOnMatch(parse_remove_on_match(&field, value)?)
                }
                _ => return Err(unknown_field(&field, HEADER_MUTATION_FIELDS)),
            };
            if let Some((other, _)) = found {
                return Err(only_one(&field, HEADER_MUTATION_FIELDS, other));
            }
            found = Some((key, mutation));
        }
        match found {
            Some((_, mutation)) => Ok(mutation),
            None => Err(ConfigError::new(
                path,
                "one of append, remove, remove_on_match is required",
            )),
        }
    }

    fn write_json(&self, out: &mut String) {
        match self {
            HeaderMutation::Append(rule) => {
                out.push_str("{\"append\":");
                write_rule(out, rule);
            }
            HeaderMutation::Remove(name) => {
                out.push_str("{\"remove\":");
                json::write_string(out, name.as_str());
            }
            HeaderMutation::RemoveOnMatch(matcher) => {
                out.push_str("{\"remove_on_match\":{\"key_matcher\":");
                matcher.write_json(out);
                out.push('}');
            }
        }
        out.push('}');
    }
}

fn parse_remove_on_match(path: &str, value: &Json) -> Result<StringMatcher, ConfigError> {
    let mut matcher = None;
    for (key, value) in expect_object(path, value)? {
        let field = field_path(path, key);
        match key.as_str() {
            "key_matcher" => matcher = Some(StringMatcher::parse(&field, value)?),
            _ => return Err(unknown_field(&field, &["key_matcher"])),
        }
    }
    matcher.ok_or_else(|| required(path, "key_matcher"))
}

fn write_header_mutations(out: &mut String, mutations: &[HeaderMutation]) {
    out.push('[');
    for (i, mutation) in mutations.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        mutation.write_json(out);
    }
    out.push(']');
}

impl QueryMutation {
    fn parse(path: &str, value: &Json) -> Result<QueryMutation, ConfigError> {
        let mut found: Option<(&str, QueryMutation)> = None;
        for (key, value) in expect_object(path, value)? {
            let field = field_path(path, key);
            let mutation = match key.as_str() {
                "append" => parse_query_append(&field, value)?,
                "remove" => {
                    let key = expect_string(&field, value)?;
                    if key.is_empty() {
                        // Envoy reads an empty `remove` as no mutation at all.
                        return Err(ConfigError::new(&field, "must not be empty"));
                    }
                    check_value(&field, key)?;
                    QueryMutation::Remove(key.to_string())
                }
                _ => return Err(unknown_field(&field, QUERY_MUTATION_FIELDS)),
            };
            if let Some((other, _)) = found {
                return Err(only_one(&field, QUERY_MUTATION_FIELDS, other));
            }
            found = Some((key, mutation));
        }
        match found {
            Some((_, mutation)) => Ok(mutation),
            None => Err(ConfigError::new(path, "one of append, remove is required")),
        }
    }

    fn write_json(&self, out: &mut String) {
        match self {
            QueryMutation::Append { key, value, action } => {
                out.push_str("{\"append\":{\"record\":{\"key\":");
                json::write_string(out, key);
                out.push_str(",\"value\":");
                json::write_string(out, &value.to_string());
                out.push_str("},\"action\":\"");
                out.push_str(action.as_str());
                out.push_str("\"}}");
            }
            QueryMutation::Remove(key) => {
                out.push_str("{\"remove\":");
                json::write_string(out, key);
                out.push('}');
            }
        }
    }
}

/// Envoy's `KeyValueAppend`: `{"record": {"key", "value"}, "action"}`.
fn parse_query_append(path: &str, value: &Json) -> Result<QueryMutation, ConfigError> {
    let mut record = None;
    let mut action = AppendAction::default();
    for (key, value) in expect_object(path, value)? {
        let field = field_path(path, key);
        match key.as_str() {
            "record" => record = Some(parse_record(&field, value)?),
            "action" => action = AppendAction::parse_at(&field, value)?,
            // Deprecated in Envoy, whose header_mutation refuses an append
            // without `record`.
            "entry" => {
                return Err(ConfigError::new(
                    &field,
                    "not supported by this filter (write record: {\"key\": ..., \"value\": ...})",
                ))
            }
            _ => return Err(unknown_field(&field, QUERY_APPEND_FIELDS)),
        }
    }
    let (key, value) = record.ok_or_else(|| required(path, "record"))?;
    Ok(QueryMutation::Append { key, value, action })
}

/// Envoy's `KeyValuePair` as a query parameter: a key, and a string value
/// in the `%...%` language.
fn parse_record(path: &str, value: &Json) -> Result<(String, Format), ConfigError> {
    let mut key = None;
    let mut text = None;
    for (name, value) in expect_object(path, value)? {
        let field = field_path(path, name);
        match name.as_str() {
            "key" => key = Some(expect_string(&field, value)?),
            "value" => text = Some(expect_string(&field, value)?),
            _ => return Err(unknown_field(&field, RECORD_FIELDS)),
        }
    }
    let key_path = field_path(path, "key");
    let key = key.ok_or_else(|| required(path, "key"))?;
    if key.is_empty() {
        return Err(ConfigError::new(&key_path, "must not be empty"));
    }
    check_value(&key_path, key)?;
    check_query_name(&key_path, key)?;
    let value_path = field_path(path, "value");
    let text = text.ok_or_else(|| required(path, "value"))?;
    check_value(&value_path, text)?;
    let format = Format::parse(text, Side::Request)
        .map_err(|e| ConfigError::new(&value_path, e.to_string()))?;
    Ok((key.to_string(), format))
}

/// Refuses a parameter name that Envoy, which writes names raw into
/// `:path`, would turn into another parameter or a broken request line;
/// written percent-encoded, the name is written the same by both.
fn check_query_name(path: &str, name: &str) -> Result<(), ConfigError> {
    let breaks = |b: u8| matches!(b, 0..=b' ' | 0x7f..=0xff | b'#' | b'&' | b'=');
    match name.bytes().position(breaks) {
        None => Ok(()),
        Some(at) => {
            let mut encoded = String::with_capacity(3);
            push_percent_encoded(&mut encoded, name.as_bytes()[at]);
            Err(ConfigError::new(
                path,
                format!(
                    "byte {at} would be written raw into :path and change the query \
                     (a name cannot hold spaces, controls, non-ASCII, #, & or =): \
                     write it as {encoded}"
                ),
            ))
        }
    }
}

fn push_percent_encoded(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 15)] as char);
}

/// Applies header mutations in order, each seeing what the previous did.
fn apply<H: Host + ?Sized>(mutations: &[HeaderMutation], side: Side, host: &mut H) -> Outcome {
    let mut outcome = Outcome::default();
    for mutation in mutations {
        match mutation {
            HeaderMutation::Append(rule) => append(rule, side, host, &mut outcome),
            HeaderMutation::Remove(name) => {
                host.remove(side, name.as_str());
                outcome.removed += 1;
            }
            HeaderMutation::RemoveOnMatch(matcher) => {
                remove_matching(matcher, side, host, &mut outcome)
            }
        }
    }
    outcome
}

/// Envoy's `AppendMutation::evaluateHeaders`: render, skip an empty value
/// unless kept, then act on the headers as they are now.
fn append<H: Host + ?Sized>(rule: &HeaderRule, side: Side, host: &mut H, outcome: &mut Outcome) {
    let rendered;
    let value: &[u8] = match rule.value.as_constant() {
        Some(text) => text.as_bytes(),
        None => {
            rendered = rule.value.render(side, host);
            if rendered.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
                outcome.refused += 1;
                return;
            }
            &rendered
        }
    };
    if value.is_empty() && !rule.keep_empty_value {
        return;
    }
    let name = rule.name.as_str();
    let overwrite = match rule.action {
        AppendAction::AppendIfExistsOrAdd => false,
        AppendAction::AddIfAbsent if host.exists(side, name) => return,
        AppendAction::AddIfAbsent => false,
        AppendAction::OverwriteIfExists if !host.exists(side, name) => return,
        AppendAction::OverwriteIfExists | AppendAction::OverwriteIfExistsOrAdd => true,
    };
    if overwrite {
        host.replace(side, name, value);
    } else {
        host.add(side, name, value);
    }
    outcome.written += 1;
}

/// Removes every header whose name `matcher` matches, except pseudo-headers
/// and `host`, which no configuration of this filter may change, and the
/// request's `x-forwarded-proto`, without which Envoy routes the request
/// nowhere once this filter changed its headers (see [`FORWARDED_PROTO`]).
fn remove_matching<H: Host + ?Sized>(
    matcher: &StringMatcher,
    side: Side,
    host: &mut H,
    outcome: &mut Outcome,
) {
    // Owned: the loop below writes to the host.
    let map = host.header_map(side).into_owned();
    let headers = HeaderPairs::new(&map);
    for (i, (name, _)) in headers.iter().enumerate() {
        if name.starts_with(b":")
            || name == b"host"
            || (side == Side::Request && name == FORWARDED_PROTO.as_bytes())
            || !matcher.matches(name)
        {
            continue;
        }
        // A header sent more than once goes with its first entry.
        if headers.iter().take(i).any(|(earlier, _)| earlier == name) {
            continue;
        }
        if let Ok(name) = std::str::from_utf8(name) {
            host.remove(side, name);
            outcome.removed += 1;
        }
    }
}

/// One query parameter while the query is rewritten.
struct Param<'a> {
    /// The name as Envoy compares and sorts it: percent-decoded for a
    /// parameter the request had, as configured for an added one.
    key: Cow<'a, [u8]>,
    /// The name and the value as written back.
    raw_key: &'a [u8],
    value: Cow<'a, [u8]>,
}

/// Envoy's `Mutations::mutateRequestHeaders` after the header mutations:
/// parse the query, apply each mutation in order, write the parameters
/// back sorted by name (stable: a name's values keep their order).
fn rewrite_query<H: Host + ?Sized>(
    mutations: &[QueryMutation],
    host: &mut H,
    outcome: &mut Outcome,
) {
    let Some(path) = host.header(Side::Request, ":path") else {
        return;
    };
    let (base, query) = match path.iter().position(|&b| b == b'?') {
        Some(at) => (&path[..at], &path[at + 1..]),
        None => (&path[..], &path[path.len()..]),
    };
    let mut params = parse_query(query);
    for mutation in mutations {
        match mutation {
            QueryMutation::Remove(key) => params.retain(|p| *p.key != *key.as_bytes()),
            QueryMutation::Append { key, value, action } => {
                let key = key.as_bytes();
                let exists = params.iter().any(|p| *p.key == *key);
                let overwrite = match action {
                    AppendAction::AppendIfExistsOrAdd => false,
                    AppendAction::AddIfAbsent if exists => continue,
                    AppendAction::AddIfAbsent => false,
                    AppendAction::OverwriteIfExists if !exists => continue,
                    AppendAction::OverwriteIfExists | AppendAction::OverwriteIfExistsOrAdd => true,
                };
                if overwrite {
                    params.retain(|p| *p.key != *key);
                }
                let value = match value.as_constant() {
                    Some(text) => url_encoded(text.as_bytes()),
                    None => url_encoded(&value.render(Side::Request, host)),
                };
                params.push(Param {
                    key: Cow::Borrowed(key),
                    raw_key: key,
                    value: Cow::Owned(value),
                });
            }
        }
    }
    let mut new_path = Vec::with_capacity(path.len() + 32);
    new_path.extend_from_slice(base);
    for (i, &at) in sorted_by_key(&params).iter().enumerate() {
        let param = &params[at];
        new_path.push(if i == 0 { b'?' } else { b'&' });
        new_path.extend_from_slice(param.raw_key);
        new_path.push(b'=');
        new_path.extend_from_slice(&param.value);
    }
    if new_path != path {
        host.replace(Side::Request, ":path", &new_path);
        outcome.written += 1;
    }
}

/// The order of `params` sorted by name, stable (a name's values keep
/// their order), as Envoy's `btree_map` of value lists writes them. A
/// bottom-up merge sort by hand: the standard library's stable sort is
/// 4.5 KB of module.
fn sorted_by_key(params: &[Param<'_>]) -> Vec<usize> {
    let len = params.len();
    let mut order: Vec<usize> = (0..len).collect();
    let mut merged = order.clone();
    let mut width = 1;
    while width < len {
        for start in (0..len).step_by(2 * width) {
            let mid = (start + width).min(len);
            let end = (start + 2 * width).min(len);
            let (mut left, mut right) = (start, mid);
            for slot in &mut merged[start..end] {
                // Ties take the left run: that is what keeps it stable.
                let take_left = right == end
                    || (left < mid && params[order[left]].key <= params[order[right]].key);
                if take_left {
                    *slot = order[left];
                    left += 1;
                } else {
                    *slot = order[right];
                    right += 1;
                }
            }
        }
        std::mem::swap(&mut order, &mut merged);
        width *= 2;
    }
    order
}

/// Envoy's `QueryParamsMulti::parseParameters`: split on `&`, a name ends
/// at the first `=` (a bare name has the value ""), an empty parameter is
/// an empty name; names are compared percent-decoded (the bytes are kept).
fn parse_query(query: &[u8]) -> Vec<Param<'_>> {
    let mut params = Vec::new();
    let mut rest = query;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'&').unwrap_or(rest.len());
        let param = &rest[..end];
        let (raw_key, value) = match param.iter().position(|&b| b == b'=') {
            Some(eq) => (&param[..eq], &param[eq + 1..]),
            None => (param, &param[param.len()..]),
        };
        params.push(Param {
            key: percent_decoded(raw_key),
            raw_key,
            value: Cow::Borrowed(value),
        });
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    params
}

/// Envoy's `PercentEncoding::decode`: `%` and two hex digits is a byte;
/// anything else stays as it is.
fn percent_decoded(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'%') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let mut byte = raw[i];
        if byte == b'%' {
            if let (Some(high), Some(low)) = (
                raw.get(i + 1).and_then(|&b| hex_digit(b)),
                raw.get(i + 2).and_then(|&b| hex_digit(b)),
            ) {
                byte = high << 4 | low;
                i += 2;
            }
        }
        out.push(byte);
        i += 1;
    }
    Cow::Owned(out)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Envoy's `PercentEncoding::urlEncodeQueryParameter`, which its
/// `header_mutation` applies to every value it adds (since 1.38, runtime
/// guard `header_mutation_url_encode_query_params`): every byte but
/// `A-Z a-z 0-9 * - . _` as `%XX`.
fn url_encoded(value: &[u8]) -> Vec<u8> {
    let mut out = String::with_capacity(value.len() + 8);
    for &byte in value {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'*' | b'-' | b'.' | b'_') {
            out.push(byte as char);
        } else {
            push_percent_encoded(&mut out, byte);
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::format::attribute;
    use crate::offline::MemoryStream;
    use crate::plan::{Plan, Scratch};

    fn plan(json: &str) -> Plan {
        Plan::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{json}"))
    }

    /// `{"mutations": {side: [items]}}`.
    fn config(field: &str, items: &str) -> String {
        format!(r#"{{"mutations":{{"{field}":[{items}]}}}}"#)
    }

    fn run_request(json: &str, s: &mut MemoryStream) -> Outcome {
        plan(json).request(s, &mut Scratch::new()).1
    }

    fn run_response(json: &str, s: &mut MemoryStream) -> Outcome {
        plan(json).response(None, s, &mut Scratch::new())
    }

    fn path_after(query_mutations: &str, path: &str) -> String {
        let mut s = MemoryStream::with_request(&[(":path", path), ("x-in", "v")]);
        run_request(
            &config("query_parameter_mutations", query_mutations),
            &mut s,
        );
        s.values(Side::Request, ":path").concat()
    }

    fn error(json: &str) -> String {
        Config::parse(json.as_bytes()).unwrap_err().to_string()
    }

    /// One append alone does what the same rule does in the route-config
    /// form (whose table of actions `plan.rs` tests), constant or not.
    #[test]
    fn one_append_acts_as_the_route_config_rule_does() {
        for action in AppendAction::ALL {
            for value in ["new", "f-%REQ(x-src)%", "%REQ(x-missing)%"] {
                for initial in [&[("x-src", "v")][..], &[("x-src", "v"), ("x-h", "old")]] {
                    let option = format!(
                        r#"{{"header":{{"key":"x-h","value":"{value}"}},"append_action":"{}"}}"#,
                        action.as_str()
                    );
                    let mut mutated = MemoryStream::with_request(initial);
                    run_request(
                        &config("request_mutations", &format!(r#"{{"append":{option}}}"#)),
                        &mut mutated,
                    );
                    let mut routed = MemoryStream::with_request(initial);
                    run_request(
                        &format!(r#"{{"request_headers_to_add":[{option}]}}"#),
                        &mut routed,
                    );
                    assert_eq!(mutated, routed, "{option} on {initial:?}");
                }
            }
        }
    }

    #[test]
    fn each_mutation_sees_what_the_ones_before_it_did() {
        // The route config decides every ADD_IF_ABSENT before writing (both
        // would land); here the second sees the first.
        let mut s = MemoryStream::with_request(&[("x-in", "v")]);
        let items = r#"
            {"append":{"header":{"key":"x-h","value":"1"},"append_action":"ADD_IF_ABSENT"}},
            {"append":{"header":{"key":"x-h","value":"2"},"append_action":"ADD_IF_ABSENT"}},
            {"append":{"header":{"key":"x-copy","value":"%REQ(x-h)%"}}},
            {"append":{"header":{"key":"x-o","value":"a"}}},
            {"append":{"header":{"key":"x-o","value":"b"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"}},
            {"append":{"header":{"key":"x-o","value":"c"}}}"#;
        run_request(&config("request_mutations", items), &mut s);
        assert_eq!(s.values(Side::Request, "x-h"), ["1"]);
        assert_eq!(s.values(Side::Request, "x-copy"), ["1"]);
        assert_eq!(s.values(Side::Request, "x-o"), ["b", "c"]);
    }

    #[test]
    fn append_then_remove_and_remove_then_append() {
        let mut s = MemoryStream::with_request(&[("x-a", "old"), ("x-b", "old")]);
        let items = r#"
            {"append":{"header":{"key":"x-a","value":"new"}}},
            {"remove":"X-A"},
            {"remove":"x-b"},
            {"append":{"header":{"key":"x-b","value":"new"},"append_action":"ADD_IF_ABSENT"}}"#;
        let outcome = run_request(&config("request_mutations", items), &mut s);
        assert!(s.values(Side::Request, "x-a").is_empty());
        assert_eq!(s.values(Side::Request, "x-b"), ["new"]);
        assert_eq!(
            outcome,
            Outcome {
                written: 2,
                removed: 2,
                refused: 0
            }
        );
    }

    #[test]
    fn remove_on_match_removes_every_header_whose_name_matches() {
        let request = [
            (":path", "/"),
            (":authority", "example"),
            ("host", "example"),
            ("x-debug-a", "1"),
            ("x-debug-a", "2"),
            ("X-Debug-B", "3"),
            ("x-keep", "4"),
        ];
        let cases: &[(&str, &[&str])] = &[
            (r#"{"prefix":"x-debug-"}"#, &["x-keep"]),
            (r#"{"exact":"x-debug-a"}"#, &["x-debug-b", "x-keep"]),
            (r#"{"suffix":"-b"}"#, &["x-debug-a", "x-keep"]),
            (r#"{"contains":"DEBUG","ignore_case":true}"#, &["x-keep"]),
            (
                r#"{"contains":"DEBUG"}"#,
                &["x-debug-a", "x-debug-b", "x-keep"],
            ),
            (r#"{"safe_regex":{"regex":"x-(debug-.|k.*)"}}"#, &[]),
            // Pseudo-headers and host always stay.
            (r#"{"safe_regex":{"regex":".*"}}"#, &[]),
            (r#"{"prefix":":"}"#, &["x-debug-a", "x-debug-b", "x-keep"]),
        ];
        for (matcher, left) in cases {
            let mut s = MemoryStream::with_request(&request);
            let item = format!(r#"{{"remove_on_match":{{"key_matcher":{matcher}}}}}"#);
            run_request(&config("request_mutations", &item), &mut s);
            let names: Vec<&str> = s.request.iter().map(|(n, _)| n.as_str()).collect();
            let mut expected = vec![":path", ":authority", "host"];
            for name in *left {
                let count = request
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .count();
                expected.extend(std::iter::repeat_n(*name, count));
            }
            assert_eq!(names, expected, "{matcher}");
        }
    }

    #[test]
    fn remove_on_match_leaves_the_requests_x_forwarded_proto_alone() {
        let headers = [
            (":path", "/"),
            ("x-forwarded-proto", "https"),
            ("x-debug", "1"),
            ("x-keep", "2"),
        ];
        let item = r#"{"remove_on_match":{"key_matcher":{"prefix":"x-"}}}"#;
        let mut s = MemoryStream::with_request(&headers);
        let outcome = run_request(&config("request_mutations", item), &mut s);
        let names: Vec<&str> = s.request.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [":path", "x-forwarded-proto"]);
        assert_eq!(s.values(Side::Request, "x-forwarded-proto"), ["https"]);
        assert_eq!(outcome.removed, 2);
        // The response has no router after it: the header goes there.
        let mut s = MemoryStream::with_request(&[]);
        s.respond(&headers);
        run_response(&config("response_mutations", item), &mut s);
        let names: Vec<&str> = s.response.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [":path"]);
    }

    #[test]
    fn remove_on_match_after_append_removes_the_appended_header() {
        let mut s = MemoryStream::with_request(&[]);
        s.respond(&[(":status", "200"), ("server", "up")]);
        let items = r#"
            {"append":{"header":{"key":"x-tmp-a","value":"1"}}},
            {"append":{"header":{"key":"x-copy","value":"%RESP(x-tmp-a)%"}}},
            {"remove_on_match":{"key_matcher":{"prefix":"x-tmp-"}}},
            {"append":{"header":{"key":"x-tmp-b","value":"2"}}}"#;
        run_response(&config("response_mutations", items), &mut s);
        let names: Vec<&str> = s.response.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [":status", "server", "x-copy", "x-tmp-b"]);
        assert_eq!(s.values(Side::Response, "x-copy"), ["1"]);
    }

    #[test]
    fn values_follow_envoys_empty_and_unsafe_rules() {
        let mut s = MemoryStream::with_request(&[("x-evil", "a\r\nx-injected: 1")]);
        let items = r#"
            {"append":{"header":{"key":"x-skip","value":"%REQ(x-missing)%"}}},
            {"append":{"header":{"key":"x-kept","value":"%REQ(x-missing)%"},"keep_empty_value":true}},
            {"append":{"header":{"key":"x-const-empty","value":""}}},
            {"append":{"header":{"key":"x-copy","value":"%REQ(x-evil)%"}}}"#;
        let outcome = run_request(&config("request_mutations", items), &mut s);
        assert!(s.values(Side::Request, "x-skip").is_empty());
        assert_eq!(s.values(Side::Request, "x-kept"), [""]);
        assert!(s.values(Side::Request, "x-const-empty").is_empty());
        assert!(s.values(Side::Request, "x-copy").is_empty());
        assert_eq!(outcome.refused, 1);
    }

    #[test]
    fn response_mutations_read_the_request_and_the_stream() {
        let mut s = MemoryStream::with_request(&[("x-id", "42")]);
        s.set_property(attribute::SOURCE_ADDRESS, "10.0.0.1:555");
        s.respond(&[(":status", "200")]);
        let json = config(
            "response_mutations",
            r#"{"append":{"header":{"key":"x-echo","value":"%REQ(x-id)%@%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}}}"#,
        );
        assert_eq!(plan(&json).request_headers_for_response(), ["x-id"]);
        assert!(!plan(&json).touches(Side::Request));
        assert!(plan(&json).touches(Side::Response));
        run_response(&json, &mut s);
        assert_eq!(s.values(Side::Response, "x-echo"), ["42@10.0.0.1"]);
        assert_eq!(s.request.len(), 1, "request untouched");
    }

    #[test]
    fn query_mutations_sort_parameters_and_write_a_bare_name_with_equals() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"append":{"record":{"key":"z","value":"1"}}}"#,
                "/p",
                "/p?z=1",
            ),
            (
                r#"{"append":{"record":{"key":"z","value":"1"}}}"#,
                "/p?",
                "/p?z=1",
            ),
            (
                r#"{"append":{"record":{"key":"b","value":"2"}}}"#,
                "/p?c=3&bare&a=1&b=1",
                "/p?a=1&b=1&b=2&bare=&c=3",
            ),
            // An empty parameter is an empty name, first in order.
            (r#"{"remove":"x"}"#, "/p?b&&=v&a", "/p?=&=v&a=&b="),
            (r#"{"remove":"r"}"#, "/p?r=1&r=2", "/p"),
            (r#"{"remove":"r"}"#, "/p", "/p"),
            (
                r#"{"append":{"record":{"key":"a","value":"n"},"action":"ADD_IF_ABSENT"}}"#,
                "/p?a=1",
                "/p?a=1",
            ),
            (
                r#"{"append":{"record":{"key":"a","value":"n"},"action":"ADD_IF_ABSENT"}}"#,
                "/p?b=1",
                "/p?a=n&b=1",
            ),
            (
                r#"{"append":{"record":{"key":"a","value":"n"},"action":"OVERWRITE_IF_EXISTS"}}"#,
                "/p?a=1&a=2&b=1",
                "/p?a=n&b=1",
            ),
            (
                r#"{"append":{"record":{"key":"a","value":"n"},"action":"OVERWRITE_IF_EXISTS"}}"#,
                "/p?b=1",
                "/p?b=1",
            ),
            (
                r#"{"append":{"record":{"key":"a","value":"n"},"action":"OVERWRITE_IF_EXISTS_OR_ADD"}}"#,
                "/p?b=1",
                "/p?a=n&b=1",
            ),
            (
                r#"{"append":{"record":{"key":"e","value":""}}},{"append":{"record":{"key":"m","value":"%REQ(x-missing)%"}}}"#,
                "/p",
                "/p?e=&m=",
            ),
            (
                r#"{"append":{"record":{"key":"f","value":"<%REQ(x-in)%>"}}},{"append":{"record":{"key":"p","value":"%REQ(:path)%"}}}"#,
                "/p?q",
                "/p?f=%3Cv%3E&p=%2Fp%3Fq&q=",
            ),
            // Sequences: a later mutation sees an earlier one's parameter.
            (
                r#"{"append":{"record":{"key":"a","value":"1"}}},{"append":{"record":{"key":"a","value":"2"},"action":"ADD_IF_ABSENT"}},{"remove":"b"},{"append":{"record":{"key":"b","value":"3"}}}"#,
                "/p?b=0",
                "/p?a=1&b=3",
            ),
        ];
        for (items, path, expected) in cases {
            assert_eq!(path_after(items, path), *expected, "{items} on {path}");
        }
    }

    #[test]
    fn query_names_match_decoded_but_parameters_keep_their_bytes() {
        // Envoy writes these back decoded (`a b=c&d`, `A=q`); the filter
        // keeps them as the request had them, in Envoy's (decoded) order.
        assert_eq!(
            path_after(
                r#"{"append":{"record":{"key":"z","value":"1"}}}"#,
                "/p?a%20b=c%26d&%41=q&x=%zz&y=a%2"
            ),
            "/p?%41=q&a%20b=c%26d&x=%zz&y=a%2&z=1"
        );
        assert_eq!(
            path_after(r#"{"remove":"a b"}"#, "/p?a%20b=1&a+b=2"),
            "/p?a+b=2"
        );
        assert_eq!(
            path_after(
                r#"{"append":{"record":{"key":"A","value":"n"},"action":"OVERWRITE_IF_EXISTS"}}"#,
                "/p?%41=1"
            ),
            "/p?A=n"
        );
    }

    #[test]
    fn added_values_are_url_encoded_as_envoy_encodes_them() {
        let mut s = MemoryStream::with_request(&[(":path", "/p"), ("x-in", "a&admin=1 #x\u{e9}~")]);
        run_request(
            &config(
                "query_parameter_mutations",
                r#"{"append":{"record":{"key":"v","value":"%REQ(x-in)%"}}},
                   {"append":{"record":{"key":"c","value":"AZaz09*-._ !%%41/?"}}}"#,
            ),
            &mut s,
        );
        assert_eq!(
            s.values(Side::Request, ":path"),
            ["/p?c=AZaz09*-._%20%21%2541%2F%3F&v=a%26admin%3D1%20%23x%C3%A9%7E"]
        );
    }

    #[test]
    fn query_mutations_run_after_header_mutations_and_skip_a_request_without_path() {
        let mut s = MemoryStream::with_request(&[(":path", "/p")]);
        let json = r#"{"mutations":{
            "query_parameter_mutations":[{"append":{"record":{"key":"h","value":"%REQ(x-h)%"}}}],
            "request_mutations":[{"append":{"header":{"key":"x-h","value":"set"}}}]}}"#;
        let outcome = run_request(json, &mut s);
        assert_eq!(s.values(Side::Request, ":path"), ["/p?h=set"]);
        assert_eq!(outcome.written, 2);
        let mut s = MemoryStream::with_request(&[]);
        let outcome = run_request(json, &mut s);
        assert!(s.values(Side::Request, ":path").is_empty());
        assert_eq!(outcome.written, 1);
    }

    #[test]
    fn refusals_name_the_path_and_the_reason() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"mutations":{},"routes":[]}"#,
                "routes: cannot be combined with mutations (one form per configuration: Envoy's header_mutation config alone, or the route-config fields)",
            ),
            (
                r#"{"request_headers_to_add":[],"mutations":{}}"#,
                "request_headers_to_add: cannot be combined with mutations",
            ),
            (r#"{"mutations":[]}"#, "mutations: expected an object, got an array"),
            (
                r#"{"mutations":{"request_trailers_mutations":[]}}"#,
                "mutations.request_trailers_mutations: not supported by this filter (it does not see trailers)",
            ),
            (
                r#"{"mutations":{"response_trailers_mutations":[]}}"#,
                "mutations.response_trailers_mutations: not supported by this filter",
            ),
            (
                r#"{"mutations":{"parameter_mutations":[]}}"#,
                "mutations.parameter_mutations: unknown field (accepted: request_mutations, response_mutations, query_parameter_mutations)",
            ),
            (
                r#"{"mutations":{"request_mutations":[{}]}}"#,
                "mutations.request_mutations[0]: one of append, remove, remove_on_match is required",
            ),
            (
                r#"{"mutations":{"request_mutations":[{"remove":"a","remove_on_match":{"key_matcher":{"exact":"b"}}}]}}"#,
                "mutations.request_mutations[0].remove_on_match: only one of append, remove, remove_on_match may be set (remove is set too)",
            ),
            (
                r#"{"mutations":{"request_mutations":[{"regex_copy":{}}]}}"#,
                "mutations.request_mutations[0].regex_copy: unknown field (accepted: append, remove, remove_on_match)",
            ),
            (
                r#"{"mutations":{"response_mutations":[{"remove":":status"}]}}"#,
                r#"mutations.response_mutations[0].remove: ":status": :-prefixed or host headers may not be modified"#,
            ),
            (
                r#"{"mutations":{"request_mutations":[{"append":{"header":{"key":"host","value":"x"}}}]}}"#,
                r#"mutations.request_mutations[0].append.header.key: "host": :-prefixed or host headers may not be modified"#,
            ),
            (
                r#"{"mutations":{"request_mutations":[{"append":{"header":{"key":"x","value":"%BAD%"}}}]}}"#,
                "mutations.request_mutations[0].append.header.value: unknown formatter %BAD% at byte 0",
            ),
            (
                r#"{"mutations":{"request_mutations":[{"append":{"header":{"key":"x"},"append_action":"NOPE"}}]}}"#,
                r#"mutations.request_mutations[0].append.append_action: unknown append action "NOPE""#,
            ),
            (
                r#"{"mutations":{"request_mutations":[{"remove_on_match":{}}]}}"#,
                "mutations.request_mutations[0].remove_on_match.key_matcher: required field is missing",
            ),
            (
                r#"{"mutations":{"request_mutations":[{"remove_on_match":{"key_matcher":{"prefix":""}}}]}}"#,
                "mutations.request_mutations[0].remove_on_match.key_matcher.prefix: must not be empty",
            ),
            (
                r#"{"mutations":{"request_mutations":[{"remove_on_match":{"key_matcher":{"exact":"a"},"invert":true}}]}}"#,
                "mutations.request_mutations[0].remove_on_match.invert: unknown field (accepted: key_matcher)",
            ),
            (
                r#"{"mutations":{"query_parameter_mutations":[{}]}}"#,
                "mutations.query_parameter_mutations[0]: one of append, remove is required",
            ),
            (
                r#"{"mutations":{"query_parameter_mutations":[{"remove":"a","append":{"record":{"key":"a","value":"v"}}}]}}"#,
                "mutations.query_parameter_mutations[0].append: only one of append, remove may be set (remove is set too)",
            ),
            (
                r#"{"mutations":{"query_parameter_mutations":[{"remove":""}]}}"#,
                "mutations.query_parameter_mutations[0].remove: must not be empty",
            ),
            (
                r#"{"mutations":{"query_parameter_mutations":[{"append":{"entry":{"key":"a","value":"YQ=="}}}]}}"#,
                r#"mutations.query_parameter_mutations[0].append.entry: not supported by this filter (write record: {"key": ..., "value": ...})"#,
            ),
            (
                r#"{"mutations":{"query_parameter_mutations":[{"append":{"action":"ADD_IF_ABSENT"}}]}}"#,
                "mutations.query_parameter_mutations[0].append.record: required field is missing",
            ),
            (
                r#"{"mutations":{"query_parameter_mutations":[{"append":{"record":{"key":"a","value":5}}}]}}"#,
                "mutations.query_parameter_mutations[0].append.record.value: expected a string, got a number",
            ),
            (
                r#"{"mutations":{"query_parameter_mutations":[{"append":{"record":{"key":"a"}}}]}}"#,
                "mutations.query_parameter_mutations[0].append.record.value: required field is missing",
            ),
            (
                r#"{"mutations":{"query_parameter_mutations":[{"append":{"record":{"key":"","value":"v"}}}]}}"#,
                "mutations.query_parameter_mutations[0].append.record.key: must not be empty",
            ),
            (
                r#"{"mutations":{"query_parameter_mutations":[{"append":{"record":{"key":"a=b","value":"v"}}}]}}"#,
                "mutations.query_parameter_mutations[0].append.record.key: byte 1 would be written raw into :path and change the query (a name cannot hold spaces, controls, non-ASCII, #, & or =): write it as %3D",
            ),
            (
                r#"{"mutations":{"query_parameter_mutations":[{"append":{"record":{"key":"a b","value":"v"}}}]}}"#,
                "mutations.query_parameter_mutations[0].append.record.key: byte 1 would be written raw into :path and change the query (a name cannot hold spaces, controls, non-ASCII, #, & or =): write it as %20",
            ),
            (
                r#"{"mutations":{"query_parameter_mutations":[{"append":{"record":{"key":"a","value":"v"},"action":"APPEND"}}]}}"#,
                r#"mutations.query_parameter_mutations[0].append.action: unknown append action "APPEND""#,
            ),
            (
                r#"{"mutations":{"query_parameter_mutations":[{"append":{"record":{"key":"a","value":"v","extra":1}}}]}}"#,
                "mutations.query_parameter_mutations[0].append.record.extra: unknown field (accepted: key, value)",
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .map(|(json, expected)| (json, expected, error(json)))
            .filter(|(_, expected, got)| !got.starts_with(*expected))
            .map(|(json, expected, got)| {
                format!("{json}\n  got:      {got}\n  expected: {expected}")
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn canonical_json_round_trips() {
        let json = r#"{"mutations":{
            "response_mutations":[{"remove_on_match":{"key_matcher":{"safe_regex":{"regex":"x-.*"}}}},
                                  {"append":{"header":{"key":"x-a","value":"100%% %REQ(x-b)%"},"append":false}}],
            "request_mutations":[{"remove":"X-Debug"},{"remove_on_match":{"key_matcher":{"exact":"A","ignore_case":true}}}],
            "query_parameter_mutations":[{"remove":"a b"},{"append":{"record":{"key":"k","value":"%%41%REQ(x)%"},"action":"ADD_IF_ABSENT"}}]}}"#;
        let config = Config::parse(json.as_bytes()).unwrap();
        assert!(config.mutations.is_some());
        let canonical = config.to_json();
        assert_eq!(Config::parse(canonical.as_bytes()).unwrap(), config);
        assert_eq!(
            Config::parse(canonical.as_bytes()).unwrap().to_json(),
            canonical
        );
        let empty = Config::parse(br#"{"mutations":{}}"#).unwrap();
        assert_eq!(empty.mutations, Some(Mutations::default()));
        assert_eq!(Config::parse(empty.to_json().as_bytes()).unwrap(), empty);
    }

    #[test]
    fn parameters_sort_by_name_and_keep_each_names_order() {
        let query = b"d=1&b=1&a=1&b=2&c=1&a=2&b=3&=0&a=3&e=1&d=2";
        let params = parse_query(query);
        let written: Vec<String> = sorted_by_key(&params)
            .iter()
            .map(|&i| {
                let p = &params[i];
                format!(
                    "{}={}",
                    String::from_utf8_lossy(p.raw_key),
                    String::from_utf8_lossy(&p.value)
                )
            })
            .collect();
        assert_eq!(
            written.join("&"),
            "=0&a=1&a=2&a=3&b=1&b=2&b=3&c=1&d=1&d=2&e=1"
        );
        assert!(sorted_by_key(&[]).is_empty());
    }

    #[test]
    fn percent_decoding_is_envoys() {
        for (raw, decoded) in [
            ("a%20b", "a b"),
            ("%41%6a", "Aj"),
            ("%zz", "%zz"),
            ("a%2", "a%2"),
            ("%", "%"),
            ("%%41", "%A"),
            ("plain", "plain"),
        ] {
            assert_eq!(percent_decoded(raw.as_bytes()), decoded.as_bytes(), "{raw}");
        }
    }
}
