//! The JSON configuration: its shape, its validation, and its canonical
//! re-serialization.
//!
//! Everything a plugin configuration can get wrong is caught here, at
//! configure time, with the JSON path of the offending item. The types this
//! produces cannot hold a bad value (a [`HeaderName`] is a lower-case token
//! that Envoy lets filters modify; a value has no CR, LF or NUL), so nothing
//! after this module re-checks. No proxy-wasm here.

use crate::headers::check_value;
pub use crate::headers::{is_token, HeaderName, FORWARDED_PROTO, MAX_HEADER_BYTES};
pub(crate) use crate::headers::{REMOVE_IN_ROUTE, REROUTE};
use crate::json::{self, Json};
use crate::jsonpath::{comma_list, expect_bool, too_many, unknown_field};
pub use crate::jsonpath::{quoted, ConfigError, MAX_ENTRIES};

use crate::format::Format;
use crate::host::Side;
use crate::mutation::Mutations;
use crate::route::{ResponseRule, Route};
use crate::rules::{parse_level_field, write_names, write_rules, LEVEL_FIELDS};
pub use crate::rules::{AppendAction, HeaderRule, Rules};

/// Largest configuration accepted, in bytes.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;
pub(crate) const FIELDS: &[&str] = &[
    "request_headers_to_add",
    "response_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_remove",
    "routes",
    "response_rules",
    "most_specific_header_mutations_wins",
];

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
            Mutations::parse_config(&object).map(|mutations| Config {
                mutations,
                ..Config::default()
            })
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
