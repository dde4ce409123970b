//! The route table the filter carries, in Envoy's own JSON: `routes` (first
//! match wins, like a virtual host's), each with Envoy's `RouteMatch` and
//! its own header fields, and `response_rules`, levels that apply when the
//! response's status and headers satisfy their conditions.
//!
//! This module knows what a route *is* and whether a request takes it; the
//! order in which levels write headers is [`crate::plan`]'s business.
//! Path semantics follow Envoy 1.40's router (`source/common/router/
//! config_impl.cc`): `prefix` compares the raw `:path` up to its query or
//! fragment, `path` the whole of it, `path_separated_prefix` wants the
//! prefix followed by `/` or the end, `safe_regex` matches it entirely;
//! `case_sensitive: false` affects the first three only.

use crate::headers::HeaderPairs;
use crate::json::{self, Json};
use crate::jsonpath::{
    expect_bool, expect_object, expect_string, field_path, parse_list, quoted, unknown_field,
    ConfigError,
};
use crate::matcher::{
    equal, starts_with, HeaderMatcher, Pattern, QueryParameterMatcher, StringMatcher,
};
use crate::rules::{parse_level_field, Rules, LEVEL_FIELDS};

/// Envoy's `RouteMatch`, plus `route_name`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// Envoy's default is true.
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatcher>,
    pub query_parameters: Vec<QueryParameterMatcher>,
    /// Beyond Envoy: the name of the Envoy route the request took
    /// (`xds.route_name`).
    pub route_name: Option<StringMatcher>,
}

/// The path specifier of a [`RouteMatch`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PathMatch {
    /// No path field: every path (our extension; Envoy requires one).
    #[default]
    Any,
    Prefix(String),
    Path(String),
    PathSeparatedPrefix(String),
    Regex(Pattern),
}

/// Fields of Envoy's `RouteMatch` this filter does not evaluate: refused by
/// name rather than as unknown.
const UNSUPPORTED_MATCH_FIELDS: &[&str] = &[
    "grpc",
    "tls_context",
    "runtime_fraction",
    "dynamic_metadata",
    "filter_state",
    "cel_expression",
    "connect_matcher",
    "path_match_policy",
    "cookies",
];

const MATCH_FIELDS: &[&str] = &[
    "prefix",
    "path",
    "path_separated_prefix",
    "safe_regex",
    "case_sensitive",
    "headers",
    "query_parameters",
    "route_name",
];

const ROUTE_FIELDS: &[&str] = &[
    "name",
    "match",
    "request_headers_to_add",
    "response_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_remove",
    "response_rules",
];

const RESPONSE_RULE_FIELDS: &[&str] = &[
    "status",
    "headers",
    "response_headers_to_add",
    "response_headers_to_remove",
];

/// What route selection reads of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// `:path` as the client sent it (query string included).
    pub path: &'a [u8],
    /// The request's headers; may be empty when no route has header
    /// matchers ([`crate::plan::Plan`] knows).
    pub headers: HeaderPairs<'a>,
    /// `xds.route_name`, when some route asks for it.
    pub route_name: Option<&'a [u8]>,
    /// `path` without its query and fragment, what path specifiers compare.
    bare: &'a [u8],
}

impl<'a> RequestView<'a> {
    pub fn new(
        path: &'a [u8],
        headers: HeaderPairs<'a>,
        route_name: Option<&'a [u8]>,
    ) -> RequestView<'a> {
        RequestView {
            path,
            headers,
            route_name,
            bare: without_query_and_fragment(path),
        }
    }
}

impl RouteMatch {
    fn parse(path: &str, value: &Json) -> Result<RouteMatch, ConfigError> {
        let object = expect_object(path, value)?;
        let mut matcher = RouteMatch {
            case_sensitive: true,
            ..RouteMatch::default()
        };
        let mut specifier: Option<&str> = None;
        for (key, value) in object {
            let field = field_path(path, key);
            let spec = match key.as_str() {
                "prefix" => PathMatch::Prefix(expect_string(&field, value)?.to_string()),
                "path" => PathMatch::Path(expect_string(&field, value)?.to_string()),
                "path_separated_prefix" => {
                    let text = expect_string(&field, value)?;
                    check_separated_prefix(&field, text)?;
                    PathMatch::PathSeparatedPrefix(text.to_string())
                }
                "safe_regex" => PathMatch::Regex(Pattern::parse(&field, value)?),
                "case_sensitive" => {
                    matcher.case_sensitive = expect_bool(&field, value)?;
                    continue;
                }
                "headers" => {
                    matcher.headers = parse_list(&field, value, HeaderMatcher::parse)?;
                    for header in &mut matcher.headers {
                        // Envoy's request header map answers `host` with
                        // `:authority` (HTTP/1's Host is stored there).
                        if header.name == "host" {
                            header.name = ":authority".into();
                        }
                    }
                    continue;
                }
                "query_parameters" => {
                    matcher.query_parameters =
                        parse_list(&field, value, QueryParameterMatcher::parse)?;
                    continue;
                }
                "route_name" => {
                    matcher.route_name = Some(StringMatcher::parse(&field, value)?);
                    continue;
                }
                other if UNSUPPORTED_MATCH_FIELDS.contains(&other) => {
                    return Err(ConfigError::new(&field, "not supported by this filter"));
                }
                _ => return Err(unknown_field(&field, MATCH_FIELDS)),
            };
            if let Some(other) = specifier {
                return Err(ConfigError::new(
                    &field,
                    format!(
                        "only one of prefix, path, path_separated_prefix, safe_regex may be set ({other} is set too)"
                    ),
                ));
            }
            specifier = Some(key.as_str());
            matcher.path = spec;
        }
        Ok(matcher)
    }

    /// Whether the request takes this route.
    pub fn matches(&self, request: &RequestView<'_>) -> bool {
        self.path_matches(request.bare)
            && self.headers.iter().all(|h| h.matches_in(&request.headers))
            && self
                .query_parameters
                .iter()
                .all(|q| q.matches(request.path))
            && self
                .route_name
                .as_ref()
                .is_none_or(|matcher| request.route_name.is_some_and(|name| matcher.matches(name)))
    }

    /// `path`: without query and fragment.
    fn path_matches(&self, path: &[u8]) -> bool {
        let ignore_case = !self.case_sensitive;
        match &self.path {
            PathMatch::Any => true,
            PathMatch::Prefix(prefix) => starts_with(path, prefix.as_bytes(), ignore_case),
            PathMatch::Path(exact) => equal(path, exact.as_bytes(), ignore_case),
            PathMatch::PathSeparatedPrefix(prefix) => {
                starts_with(path, prefix.as_bytes(), ignore_case)
                    && matches!(path.get(prefix.len()), None | Some(b'/'))
            }
            PathMatch::Regex(pattern) => pattern.is_match(path),
        }
    }

    /// Whether evaluating this matcher needs the request's header map.
    pub fn reads_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    fn write_json(&self, out: &mut String) {
        let mut fields: Vec<String> = Vec::new();
        let text = |key: &str, value: &str| {
            let mut field = format!("\"{key}\":");
            json::write_string(&mut field, value);
            field
        };
        match &self.path {
            PathMatch::Any => {}
            PathMatch::Prefix(p) => fields.push(text("prefix", p)),
            PathMatch::Path(p) => fields.push(text("path", p)),
            PathMatch::PathSeparatedPrefix(p) => fields.push(text("path_separated_prefix", p)),
            PathMatch::Regex(pattern) => {
                let mut field = String::from("\"safe_regex\":{\"regex\":");
                json::write_string(&mut field, pattern.as_str());
                field.push('}');
                fields.push(field);
            }
        }
        if !self.case_sensitive {
            fields.push("\"case_sensitive\":false".into());
        }
        if !self.headers.is_empty() {
            let mut field = String::from("\"headers\":");
            write_list(&mut field, &self.headers, HeaderMatcher::write_json);
            fields.push(field);
        }
        if !self.query_parameters.is_empty() {
            let mut field = String::from("\"query_parameters\":");
            write_list(
                &mut field,
                &self.query_parameters,
                QueryParameterMatcher::write_json,
            );
            fields.push(field);
        }
        if let Some(matcher) = &self.route_name {
            let mut field = String::from("\"route_name\":");
            matcher.write_json(&mut field);
            fields.push(field);
        }
        out.push('{');
        out.push_str(&crate::jsonpath::comma_list(
            &fields.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        out.push('}');
    }
}

/// Envoy's constraint on `path_separated_prefix` (`^[^?#]+[^?#/]$`).
fn check_separated_prefix(path: &str, text: &str) -> Result<(), ConfigError> {
    if text.len() < 2 || text.contains(['?', '#']) || text.ends_with('/') {
        return Err(ConfigError::new(
            path,
            format!(
                "{} must be at least 2 characters, hold no ? or #, and not end in / (Envoy's rule)",
                quoted(text)
            ),
        ));
    }
    Ok(())
}

/// Envoy's `Http::PathUtil::removeQueryAndFragment`.
pub fn without_query_and_fragment(path: &[u8]) -> &[u8] {
    match path.iter().position(|&b| b == b'?' || b == b'#') {
        Some(end) => &path[..end],
        None => path,
    }
}

fn write_list<T>(out: &mut String, items: &[T], write: fn(&T, &mut String)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(item, out);
    }
    out.push(']');
}

/// One entry of `routes`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    pub name: Option<String>,
    pub matcher: RouteMatch,
    pub request: Rules,
    pub response: Rules,
    pub response_rules: Vec<ResponseRule>,
}

impl Route {
    fn parse(path: &str, value: &Json) -> Result<Route, ConfigError> {
        let object = expect_object(path, value)?;
        let mut route = Route::default();
        let mut matcher = None;
        for (key, value) in object {
            let field = field_path(path, key);
            match key.as_str() {
                "name" => route.name = Some(expect_string(&field, value)?.to_string()),
                "match" => matcher = Some(RouteMatch::parse(&field, value)?),
                "response_rules" => route.response_rules = ResponseRule::parse_list(&field, value)?,
                key if LEVEL_FIELDS.contains(&key) => {
                    parse_level_field(key, &field, value, &mut route.request, &mut route.response)?
                }
                _ => return Err(unknown_field(&field, ROUTE_FIELDS)),
            }
        }
        route.matcher = matcher.ok_or_else(|| {
            ConfigError::new(
                &field_path(path, "match"),
                "required field is missing ({} matches every request)",
            )
        })?;
        Ok(route)
    }

    /// Parses `routes`.
    pub fn parse_list(path: &str, value: &Json) -> Result<Vec<Route>, ConfigError> {
        parse_list(path, value, Route::parse)
    }

    pub fn write_json(&self, out: &mut String) {
        out.push('{');
        if let Some(name) = &self.name {
            out.push_str("\"name\":");
            json::write_string(out, name);
            out.push(',');
        }
        out.push_str("\"match\":");
        self.matcher.write_json(out);
        crate::rules::write_level_fields(out, &self.request, &self.response);
        if !self.response_rules.is_empty() {
            out.push_str(",\"response_rules\":");
            write_list(out, &self.response_rules, ResponseRule::write_json);
        }
        out.push('}');
    }
}

/// Which statuses a response rule accepts: `low..=high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub low: u16,
    pub high: u16,
}

impl StatusRange {
    /// `404`, `200-299` or `5xx`.
    pub fn parse(path: &str, value: &Json) -> Result<StatusRange, ConfigError> {
        let text = match value {
            Json::String(text) | Json::Number(text) => text.as_str(),
            other => {
                return Err(ConfigError::new(
                    path,
                    format!("expected a string or a number, got {}", other.kind()),
                ))
            }
        };
        let bad = || {
            ConfigError::new(
                path,
                format!(
                    "{} is not a status: write a code (404), a range (200-299) or a class (5xx), within 100-599",
                    quoted(text)
                ),
            )
        };
        let code = |digits: &str| -> Result<u16, ConfigError> {
            match digits.parse::<u16>() {
                Ok(code) if digits.len() == 3 && (100..=599).contains(&code) => Ok(code),
                _ => Err(bad()),
            }
        };
        let range = if let Some(class) = text.strip_suffix("xx") {
            let digit = code(&format!("{class}00"))?;
            StatusRange {
                low: digit,
                high: digit + 99,
            }
        } else if let Some((low, high)) = text.split_once('-') {
            let (low, high) = (code(low)?, code(high)?);
            if low > high {
                return Err(bad());
            }
            StatusRange { low, high }
        } else {
            let code = code(text)?;
            StatusRange {
                low: code,
                high: code,
            }
        };
        Ok(range)
    }

    pub fn contains(&self, status: u16) -> bool {
        (self.low..=self.high).contains(&status)
    }

    fn write_json(&self, out: &mut String) {
        if self.low == self.high {
            out.push_str(&format!("\"{}\"", self.low));
        } else if self.low % 100 == 0 && self.high == self.low + 99 {
            out.push_str(&format!("\"{}xx\"", self.low / 100));
        } else {
            out.push_str(&format!("\"{}-{}\"", self.low, self.high));
        }
    }
}

/// One entry of `response_rules`: a level of response rules that applies
/// when its condition holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseRule {
    pub condition: ResponseCondition,
    pub response: Rules,
}

/// The response's status is one of `status` (any, when empty) and every
/// header matcher holds on the response headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseCondition {
    pub status: Vec<StatusRange>,
    pub headers: Vec<HeaderMatcher>,
}

impl ResponseCondition {
    /// Judges a response with `status` (`None` when it has none that
    /// parses) and `headers`.
    pub fn holds(&self, status: Option<u16>, headers: &HeaderPairs<'_>) -> bool {
        (self.status.is_empty()
            || status.is_some_and(|s| self.status.iter().any(|range| range.contains(s))))
            && self.headers.iter().all(|h| h.matches_in(headers))
    }
}

impl ResponseRule {
    fn parse(path: &str, value: &Json) -> Result<ResponseRule, ConfigError> {
        let object = expect_object(path, value)?;
        let mut rule = ResponseRule::default();
        for (key, value) in object {
            let field = field_path(path, key);
            match key.as_str() {
                "status" => rule.condition.status = parse_list(&field, value, StatusRange::parse)?,
                "headers" => {
                    rule.condition.headers = parse_list(&field, value, HeaderMatcher::parse)?
                }
                "response_headers_to_add" | "response_headers_to_remove" => {
                    let mut request = Rules::default();
                    parse_level_field(key, &field, value, &mut request, &mut rule.response)?;
                }
                "request_headers_to_add" | "request_headers_to_remove" => {
                    return Err(ConfigError::new(
                        &field,
                        "a response rule can only change response headers (the request has gone upstream by then)",
                    ));
                }
                _ => return Err(unknown_field(&field, RESPONSE_RULE_FIELDS)),
            }
        }
        Ok(rule)
    }

    /// Parses `response_rules`.
    pub fn parse_list(path: &str, value: &Json) -> Result<Vec<ResponseRule>, ConfigError> {
        parse_list(path, value, ResponseRule::parse)
    }

    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"status\":");
        write_list(out, &self.condition.status, StatusRange::write_json);
        out.push_str(",\"headers\":");
        write_list(out, &self.condition.headers, HeaderMatcher::write_json);
        crate::rules::write_level_fields(out, &Rules::default(), &self.response);
        out.push('}');
    }
}

/// The response's status, from its `:status` header: what
/// `str::parse::<u16>` reads (an optional `+`, then digits), without going
/// through `str` (it runs on every response the plan judges).
pub fn parse_status(value: Option<&[u8]>) -> Option<u16> {
    let value = value?;
    let digits = value.strip_prefix(b"+").unwrap_or(value);
    if digits.is_empty() {
        return None;
    }
    let mut status: u32 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        status = status * 10 + u32::from(byte - b'0');
        if status > u32::from(u16::MAX) {
            return None;
        }
    }
    Some(status as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn route_match(json_text: &str) -> RouteMatch {
        RouteMatch::parse("m", &json::parse(json_text.as_bytes()).unwrap()).unwrap()
    }

    fn takes(matcher: &RouteMatch, path: &str) -> bool {
        let view = RequestView::new(path.as_bytes(), HeaderPairs::new(&[]), None);
        matcher.matches(&view)
    }

    #[test]
    fn status_reads_as_str_parse_does() {
        for text in [
            "200",
            "503",
            "0",
            "099",
            "+200",
            "+",
            "",
            "-1",
            "-0",
            "2 00",
            " 200",
            "200 ",
            "65535",
            "65536",
            "0000000000200",
            "99999999999",
            "2x0",
            "\u{663}00",
        ] {
            assert_eq!(
                parse_status(Some(text.as_bytes())),
                text.parse::<u16>().ok(),
                "{text:?}"
            );
        }
        assert_eq!(parse_status(None), None);
        assert_eq!(parse_status(Some(b"\xff200")), None);
    }

    #[test]
    fn path_specifiers_as_envoys_router() {
        let cases: &[(&str, &str, bool)] = &[
            (r#"{"prefix":"/api"}"#, "/api", true),
            (r#"{"prefix":"/api"}"#, "/apiary", true),
            (r#"{"prefix":"/api"}"#, "/API", false),
            (
                r#"{"prefix":"/api","case_sensitive":false}"#,
                "/API/x",
                true,
            ),
            (r#"{"prefix":"/api?x"}"#, "/api?x=1", false),
            (r#"{"prefix":""}"#, "/anything", true),
            (r#"{"path":"/a"}"#, "/a?b=c", true),
            (r#"{"path":"/a"}"#, "/a#frag", true),
            (r#"{"path":"/a"}"#, "/a/", false),
            (r#"{"path":"/A","case_sensitive":false}"#, "/a", true),
            (r#"{"path_separated_prefix":"/api"}"#, "/api", true),
            (r#"{"path_separated_prefix":"/api"}"#, "/api/v1", true),
            (r#"{"path_separated_prefix":"/api"}"#, "/api?x", true),
            (r#"{"path_separated_prefix":"/api"}"#, "/apiary", false),
            (
                r#"{"path_separated_prefix":"/API","case_sensitive":false}"#,
                "/api/x",
                true,
            ),
            (
                r#"{"safe_regex":{"regex":"/v[0-9]+/.*"}}"#,
                "/v1/users?x=1",
                true,
            ),
            (r#"{"safe_regex":{"regex":"/v[0-9]+"}}"#, "/v1/users", false),
            // case_sensitive does not apply to regexes (Envoy).
            (
                r#"{"safe_regex":{"regex":"/a"},"case_sensitive":false}"#,
                "/A",
                false,
            ),
            (r#"{}"#, "/whatever", true),
        ];
        for (config, path, expected) in cases {
            assert_eq!(
                takes(&route_match(config), path),
                *expected,
                "{config} on {path}"
            );
        }
    }

    #[test]
    fn a_host_matcher_reads_the_authority_as_envoy_does() {
        let matcher =
            route_match(r#"{"headers":[{"name":"Host","string_match":{"exact":"a.example"}}]}"#);
        assert_eq!(matcher.headers[0].name, ":authority");
        let map = HeaderPairs::encode(&[(":authority", "a.example")]);
        let view = RequestView::new(b"/", HeaderPairs::new(&map), None);
        assert!(matcher.matches(&view));
    }

    #[test]
    fn statuses_codes_ranges_and_classes() {
        let parse = |text: &str| StatusRange::parse("s", &json::parse(text.as_bytes()).unwrap());
        assert_eq!(
            parse(r#""404""#).unwrap(),
            StatusRange {
                low: 404,
                high: 404
            }
        );
        assert_eq!(
            parse("404").unwrap(),
            StatusRange {
                low: 404,
                high: 404
            }
        );
        assert_eq!(
            parse(r#""5xx""#).unwrap(),
            StatusRange {
                low: 500,
                high: 599
            }
        );
        assert_eq!(
            parse(r#""200-299""#).unwrap(),
            StatusRange {
                low: 200,
                high: 299
            }
        );
        for bad in [
            r#""6xx""#,
            r#""299-200""#,
            r#""99""#,
            r#""2xx-3xx""#,
            r#""abc""#,
            "600",
            r#""""#,
            "4.04",
        ] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(
                error.contains(
                    "is not a status: write a code (404), a range (200-299) or a class (5xx)"
                ),
                "{bad}: {error}"
            );
        }
        assert_eq!(
            parse("true").unwrap_err().to_string(),
            "s: expected a string or a number, got a boolean"
        );
    }

    #[test]
    fn route_table_refusals_name_the_path_and_the_reason() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"routes":[{"match":{"prefix":"/","grpc":{}}}]}"#,
                "routes[0].match.grpc: not supported by this filter",
            ),
            (
                r#"{"routes":[{"match":{"runtime_fraction":{}}}]}"#,
                "routes[0].match.runtime_fraction: not supported by this filter",
            ),
            (
                r#"{"routes":[{"match":{"prefix":"/","path":"/a"}}]}"#,
                "routes[0].match.path: only one of prefix, path, path_separated_prefix, safe_regex may be set (prefix is set too)",
            ),
            (
                r#"{"routes":[{"match":{"prefx":"/"}}]}"#,
                "routes[0].match.prefx: unknown field (accepted: prefix, path, path_separated_prefix, safe_regex, case_sensitive, headers, query_parameters, route_name)",
            ),
            (
                r#"{"routes":[{"match":{"path_separated_prefix":"/api/"}}]}"#,
                r#"routes[0].match.path_separated_prefix: "/api/" must be at least 2 characters, hold no ? or #, and not end in / (Envoy's rule)"#,
            ),
            (
                r#"{"routes":[{"match":{"safe_regex":{"regex":"a(b"}}}]}"#,
                r#"routes[0].match.safe_regex.regex: regex "a(b" is not supported:"#,
            ),
            (
                r#"{"routes":[{"name":"x"}]}"#,
                "routes[0].match: required field is missing ({} matches every request)",
            ),
            (
                r#"{"routes":[{"match":{},"route":{"cluster":"c"}}]}"#,
                "routes[0].route: unknown field (accepted: name, match, request_headers_to_add",
            ),
            (
                r#"{"routes":[{"match":{"headers":[{"name":"x","string_match":{"exact":"a","ignore_case":"yes"}}]}}]}"#,
                "routes[0].match.headers[0].string_match.ignore_case: expected a boolean, got a string",
            ),
            (
                r#"{"response_rules":[{"status":["7xx"]}]}"#,
                r#"response_rules[0].status[0]: "7xx" is not a status"#,
            ),
            (
                r#"{"response_rules":[{"request_headers_to_add":[]}]}"#,
                "response_rules[0].request_headers_to_add: a response rule can only change response headers",
            ),
            (
                r#"{"routes":[{"match":{},"response_rules":[{"status":["5xx"],"response_headers_to_add":[{"header":{"key":":status","value":"200"}}]}]}]}"#,
                r#"routes[0].response_rules[0].response_headers_to_add[0].header.key: ":status": :-prefixed or host headers may not be modified"#,
            ),
            (
                r#"{"most_specific_header_mutations_wins":"yes"}"#,
                "most_specific_header_mutations_wins: expected a boolean, got a string",
            ),
            (r#"{"routes":{}}"#, "routes: expected an array, got an object"),
        ];
        for (config, expected) in cases {
            let error = Config::parse(config.as_bytes()).unwrap_err().to_string();
            assert!(
                error.starts_with(expected),
                "{config}\n got: {error}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn route_tables_round_trip_through_canonical_json() {
        let config = Config::parse(
            br#"{"most_specific_header_mutations_wins":true,
                "response_rules":[{"status":["5xx","404","200-204"],"headers":[{"name":"content-type","string_match":{"prefix":"text/html"}}],
                  "response_headers_to_add":[{"header":{"key":"cache-control","value":"no-store"}}]}],
                "routes":[{"name":"api","match":{"path_separated_prefix":"/api","case_sensitive":false,
                  "headers":[{"name":":method","string_match":{"exact":"GET"}}],
                  "query_parameters":[{"name":"debug","present_match":true},{"name":"v","string_match":{"safe_regex":{"regex":"[0-9]+"}}}],
                  "route_name":{"prefix":"reviews"}},
                  "request_headers_to_add":[{"header":{"key":"x-a","value":"%REQ(:path)%"}}],
                  "response_headers_to_remove":["server"],
                  "response_rules":[{"response_headers_to_add":[{"header":{"key":"x-b","value":"1"}}]}]},
                  {"match":{"safe_regex":{"regex":"/v[0-9]+"}}}]}"#,
        )
        .unwrap();
        let canonical = config.to_json();
        assert_eq!(
            Config::parse(canonical.as_bytes()).unwrap(),
            config,
            "{canonical}"
        );
    }
}
