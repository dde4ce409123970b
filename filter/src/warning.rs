//! What a valid configuration runs into in Envoy without any error: the
//! headers Envoy owns around the filter. One list, so `extpack validate`,
//! `extpack render` and anything else print the same text.
//!
//! - `server` on the response side: Envoy's connection manager writes it
//!   after the filter chain (`ConnectionManagerImpl::ActiveStream::
//!   encodeHeaders`, per `server_header_transformation`: OVERWRITE by
//!   default), so a filter's removal or value does not reach the client.
//! - `date` on the response side: written after the filter chain when
//!   absent, so a filter's removal does not reach the client.
//! - `x-forwarded-proto` on the request side: a `remove_on_match` that
//!   matches it leaves it (see [`crate::config::FORWARDED_PROTO`]; explicit
//!   removals are refused instead).
//!
//! Nothing here runs in Envoy: the module never calls it, so it costs the
//! module nothing.

use std::fmt;

use crate::config::{
    Config, ConfigError, Rules, FIELDS, FORWARDED_PROTO, REMOVE_IN_ROUTE, REROUTE,
};
use crate::format::Side;
use crate::json::{self, Json};
use crate::mutation::HeaderMutation;

/// The response header Envoy's connection manager writes after the filters.
pub const SERVER: &str = "server";

/// Why a removal of [`SERVER`] does not reach the client.
pub const SERVER_REMOVED: &str = "Envoy's connection manager writes server after the filters, \
so this removal does not reach the client: with server_header_transformation OVERWRITE (the \
default) or APPEND_IF_ABSENT it writes server_name (\"envoy\" unless set) again; set \
server_header_transformation: PASS_THROUGH on the HTTP connection manager for the removal to hold";

/// Why a value written to [`SERVER`] does not reach the client by default.
pub const SERVER_WRITTEN: &str = "Envoy's connection manager writes server after the filters: \
with server_header_transformation OVERWRITE (the default) it replaces this value with \
server_name (\"envoy\" unless set); set server_header_transformation: APPEND_IF_ABSENT or \
PASS_THROUGH on the HTTP connection manager for it to hold, or set server_name there instead";

/// The response header Envoy's connection manager writes after the
/// filters when it is absent.
pub const DATE: &str = "date";

/// Why a removal of [`DATE`] does not reach the client.
pub const DATE_REMOVED: &str = "Envoy's connection manager writes date after the filters when \
it is absent, so this removal does not reach the client (no setting stops it)";

/// One thing a configuration does that Envoy undoes or that the filter
/// does differently from what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The JSON path of the item, as in [`ConfigError`].
    pub path: String,
    pub message: String,
    /// The header it is about, and on which side (for a tool that shows
    /// headers, such as `extpack render`).
    pub header: &'static str,
    pub side: Side,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Config {
    /// The warnings of this configuration, with paths as the Envoy form
    /// ([`Config::to_json`]) writes them.
    pub fn warnings(&self) -> Vec<Warning> {
        warnings(self, false)
    }

    /// Parses a configuration and gives its warnings, with paths as the
    /// configuration was written (Maistra's flat form names the key).
    pub fn parse_with_warnings(bytes: &[u8]) -> Result<(Config, Vec<Warning>), ConfigError> {
        let config = Config::parse(bytes)?;
        let flat = matches!(
            json::parse(bytes),
            Ok(Json::Object(object)) if !object.is_empty()
                && !object.iter().any(|(k, _)| k == "mutations" || FIELDS.contains(&k.as_str()))
        );
        let warnings = warnings(&config, flat);
        Ok((config, warnings))
    }
}

fn warnings(config: &Config, flat: bool) -> Vec<Warning> {
    let mut out = Vec::new();
    if let Some(mutations) = &config.mutations {
        for (i, mutation) in mutations.request.iter().enumerate() {
            if let HeaderMutation::RemoveOnMatch(matcher) = mutation {
                if matcher.matches(FORWARDED_PROTO.as_bytes()) {
                    out.push(Warning {
                        path: format!("mutations.request_mutations[{i}].remove_on_match"),
                        message: format!(
                            "leaves {FORWARDED_PROTO} on requests although the matcher matches \
                             it: {REROUTE}; {REMOVE_IN_ROUTE}"
                        ),
                        header: FORWARDED_PROTO,
                        side: Side::Request,
                    });
                }
            }
        }
        for (i, mutation) in mutations.response.iter().enumerate() {
            let path = format!("mutations.response_mutations[{i}]");
            match mutation {
                HeaderMutation::Append(rule) if rule.name.as_str() == SERVER => {
                    out.push(written(format!("{path}.append.header.key")))
                }
                HeaderMutation::Remove(name) => {
                    removals(&mut out, &format!("{path}.remove"), |h| name.as_str() == h)
                }
                HeaderMutation::RemoveOnMatch(matcher) => {
                    removals(&mut out, &format!("{path}.remove_on_match"), |h| {
                        matcher.matches(h.as_bytes())
                    })
                }
                _ => {}
            }
        }
        return out;
    }
    if flat {
        for rule in &config.response.add {
            if rule.name.as_str() == SERVER {
                out.push(written(SERVER.to_string()));
            }
        }
        return out;
    }
    response_level(&mut out, "", &config.response);
    for (k, rule) in config.response_rules.iter().enumerate() {
        response_level(&mut out, &format!("response_rules[{k}]."), &rule.response);
    }
    for (i, route) in config.routes.iter().enumerate() {
        response_level(&mut out, &format!("routes[{i}]."), &route.response);
        for (k, rule) in route.response_rules.iter().enumerate() {
            response_level(
                &mut out,
                &format!("routes[{i}].response_rules[{k}]."),
                &rule.response,
            );
        }
    }
    out
}

/// The warnings of one level's response rules, `prefix` ending in `.` (or
/// empty at the top).
fn response_level(out: &mut Vec<Warning>, prefix: &str, rules: &Rules) {
    for (j, rule) in rules.add.iter().enumerate() {
        if rule.name.as_str() == SERVER {
            out.push(written(format!(
                "{prefix}response_headers_to_add[{j}].header.key"
            )));
        }
    }
    for (j, name) in rules.remove.iter().enumerate() {
        removals(
            out,
            &format!("{prefix}response_headers_to_remove[{j}]"),
            |h| name.as_str() == h,
        );
    }
}

/// The warnings of a response removal at `path` that takes the headers
/// `removes` says yes to.
fn removals(out: &mut Vec<Warning>, path: &str, removes: impl Fn(&str) -> bool) {
    for (header, message) in [(SERVER, SERVER_REMOVED), (DATE, DATE_REMOVED)] {
        if removes(header) {
            out.push(Warning {
                path: path.to_string(),
                message: message.to_string(),
                header,
                side: Side::Response,
            });
        }
    }
}

fn written(path: String) -> Warning {
    Warning {
        path,
        message: SERVER_WRITTEN.to_string(),
        header: SERVER,
        side: Side::Response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(json: &str) -> Vec<String> {
        let (_, warnings) = Config::parse_with_warnings(json.as_bytes()).unwrap();
        warnings.into_iter().map(|w| w.path).collect()
    }

    #[test]
    fn server_writes_and_removals_are_warned_at_every_level() {
        let add = r#"{"header":{"key":"Server","value":"mine"}}"#;
        let other = r#"{"header":{"key":"x-a","value":"1"}}"#;
        let json = format!(
            r#"{{"response_headers_to_add":[{other},{add}],
                "response_headers_to_remove":["x-powered-by","server","Date"],
                "request_headers_to_add":[{add}],
                "response_rules":[{{"response_headers_to_remove":["server"]}}],
                "routes":[{{"match":{{}},"response_headers_to_add":[{add}],
                            "request_headers_to_remove":["server"],
                            "response_rules":[{{"status":["5xx"],"response_headers_to_add":[{add}]}}]}}]}}"#
        );
        assert_eq!(
            paths(&json),
            [
                "response_headers_to_add[1].header.key",
                "response_headers_to_remove[1]",
                "response_headers_to_remove[2]",
                "response_rules[0].response_headers_to_remove[0]",
                "routes[0].response_headers_to_add[0].header.key",
                "routes[0].response_rules[0].response_headers_to_add[0].header.key",
            ]
        );
        let (config, warnings) = Config::parse_with_warnings(json.as_bytes()).unwrap();
        assert_eq!(config.warnings(), warnings);
        assert_eq!(warnings[0].message, SERVER_WRITTEN);
        assert_eq!(warnings[1].message, SERVER_REMOVED);
        assert_eq!(
            warnings[1].to_string(),
            format!("response_headers_to_remove[1]: {SERVER_REMOVED}")
        );
    }

    #[test]
    fn the_flat_form_names_the_key() {
        assert_eq!(paths(r#"{"x-a":"1","server":"mine"}"#), ["server"]);
        let flat = Config::parse(br#"{"server":"mine"}"#).unwrap();
        assert_eq!(
            flat.warnings()[0].path,
            "response_headers_to_add[0].header.key"
        );
        assert!(paths(r#"{"x-a":"1"}"#).is_empty());
        assert!(paths("{}").is_empty());
        assert!(paths("").is_empty());
    }

    #[test]
    fn header_mutation_form() {
        let json = r#"{"mutations":{
            "request_mutations":[
                {"remove_on_match":{"key_matcher":{"prefix":"x-debug-"}}},
                {"remove_on_match":{"key_matcher":{"prefix":"x-"}}},
                {"remove_on_match":{"key_matcher":{"safe_regex":{"regex":".*-proto"}}}},
                {"remove":"server"}],
            "response_mutations":[
                {"remove":"server"},
                {"append":{"header":{"key":"server","value":"x"}}},
                {"remove_on_match":{"key_matcher":{"suffix":"ver"}}},
                {"remove_on_match":{"key_matcher":{"prefix":"x-"}}},
                {"remove":"date"},
                {"remove_on_match":{"key_matcher":{"safe_regex":{"regex":".*"}}}}]}}"#;
        assert_eq!(
            paths(json),
            [
                "mutations.request_mutations[1].remove_on_match",
                "mutations.request_mutations[2].remove_on_match",
                "mutations.response_mutations[0].remove",
                "mutations.response_mutations[1].append.header.key",
                "mutations.response_mutations[2].remove_on_match",
                "mutations.response_mutations[4].remove",
                "mutations.response_mutations[5].remove_on_match",
                "mutations.response_mutations[5].remove_on_match",
            ]
        );
        let (_, warnings) = Config::parse_with_warnings(json.as_bytes()).unwrap();
        assert_eq!(
            warnings[0].message,
            format!(
                "leaves x-forwarded-proto on requests although the matcher matches it: \
                 {REROUTE}; {REMOVE_IN_ROUTE}"
            )
        );
        let last: Vec<(&str, &str)> = warnings[5..]
            .iter()
            .map(|w| (w.header, w.message.as_str()))
            .collect();
        assert_eq!(
            last,
            [
                (DATE, DATE_REMOVED),
                (SERVER, SERVER_REMOVED),
                (DATE, DATE_REMOVED)
            ]
        );
    }
}
