//! `extpack render`: tries a filter configuration offline. Given described
//! requests (and optionally responses), it runs the filter's own core
//! ([`header_filter::offline::MemoryStream`], the same [`Plan`] the module
//! runs in Envoy) and reports which route matched and what the filter
//! wrote, so configurations can be tested in CI without Envoy.
//!
//! It tells the truth or says it cannot: what Envoy adds before the filter
//! runs (`x-forwarded-proto`, `x-request-id`) is in the request; a value
//! whose attribute render was not given (`%UPSTREAM_HOST%` without
//! `--upstream-address`, `%CONNECTION_ID%`, TLS fields, metadata...) renders
//! `<not computed offline: OPERATOR>`; what Envoy does after the filter
//! (`server`) is noted on the header and in the configuration's warnings.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use header_filter::config::{ConfigError, FORWARDED_PROTO};
use header_filter::format::{attribute, Side};
use header_filter::offline::{not_computed, MemoryStream};
use header_filter::warning::{Warning, DATE, SERVER};
use header_filter::{Config, Plan};
use serde::{Deserialize, Serialize};

/// Attributes by path, as the host serializes them.
pub type Properties = Vec<(&'static [u8], Vec<u8>)>;

/// The request and response to run, with every attribute the filter may
/// read that render knows (the rest render as not computed).
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub method: String,
    /// As sent on the request line: path and query string.
    pub path: String,
    /// `:authority` (Host).
    pub authority: String,
    pub scheme: String,
    /// Further request headers, in order. Envoy's own `x-forwarded-proto`
    /// and `x-request-id` are added after them unless given.
    pub headers: Vec<(String, String)>,
    /// `xds.route_name`: the Envoy route the request took (Istio names its
    /// routes), for `route_name` matchers and `%ROUTE_NAME%`.
    pub route_name: Option<String>,
    /// Attributes formatters read, by path (`attribute::SOURCE_ADDRESS`...),
    /// as the host serializes them.
    pub properties: Properties,
    /// The response status; `None` runs the request side only.
    pub status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
}

/// Why a described exchange could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("header {0:?} is not NAME: VALUE")]
    Header(String),
    #[error("request {0:?} is not METHOD PATH (e.g. \"GET /api?x=1\")")]
    Request(String),
    #[error("address {0:?} is not IP:PORT (e.g. 10.0.0.7:45012 or [2001:db8::7]:443)")]
    Address(String),
    #[error(
        "start time {0:?} is neither RFC 3339 (2024-02-29T13:04:05.123Z) nor epoch seconds \
         (1709211845.123)"
    )]
    StartTime(String),
    #[error("response headers need a status (--status, or \"status\" in a JSON line)")]
    NoStatus,
    #[error("line {line}: {reason}")]
    Requests { line: usize, reason: String },
}

/// Parses `"name: value"`; the name is lower-cased as Envoy's codecs do.
pub fn parse_header(text: &str) -> Result<(String, String), RenderError> {
    let (name, value) = text
        .split_once(':')
        .filter(|(name, _)| !name.trim().is_empty())
        .ok_or_else(|| RenderError::Header(text.to_string()))?;
    Ok((name.trim().to_ascii_lowercase(), value.trim().to_string()))
}

/// Parses `"GET /path?query"`.
pub fn parse_request_line(text: &str) -> Result<(String, String), RenderError> {
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(method), Some(path), None) if path.starts_with('/') => {
            Ok((method.to_string(), path.to_string()))
        }
        _ => Err(RenderError::Request(text.to_string())),
    }
}

/// Parses `--start-time`: RFC 3339, or seconds since the epoch (a
/// fraction allowed); nanoseconds since the epoch, as `request.time`.
pub fn parse_start_time(text: &str) -> Result<i64, RenderError> {
    let bad = || RenderError::StartTime(text.to_string());
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
        if seconds.is_empty() || fraction.len() > 9 || fraction.contains('.') {
            return Err(bad());
        }
        let seconds: i64 = seconds.parse().map_err(|_| bad())?;
        let nanos: i64 = format!("{fraction:0<9}").parse().map_err(|_| bad())?;
        return seconds
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(nanos))
            .ok_or_else(bad);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(bad)
}

/// Now, as `request.time`.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The port of `ip:port` or `[ip]:port`.
fn port_of(address: &str) -> Result<u16, RenderError> {
    let bad = || RenderError::Address(address.to_string());
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let v6 = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || (host.contains(':') && !v6) {
        return Err(bad());
    }
    port.parse().map_err(|_| bad())
}

/// What every request of one run shares: the connection, the upstream and
/// the clock. Addresses not given are not computed.
#[derive(Debug, Clone, Default)]
pub struct Surroundings {
    /// `source.address`: the client.
    pub remote_address: Option<String>,
    /// `destination.address`: where the request arrived.
    pub local_address: Option<String>,
    /// `upstream.address`: the upstream host (response side).
    pub upstream_address: Option<String>,
    /// `request.protocol`.
    pub protocol: String,
    /// `request.time`, nanoseconds since the epoch.
    pub start_time: i64,
}

impl Surroundings {
    /// The attributes these give, with the ports split out as Envoy's
    /// integer attributes.
    pub fn properties(&self) -> Result<Properties, RenderError> {
        let mut out = vec![
            (
                attribute::REQUEST_PROTOCOL,
                self.protocol.clone().into_bytes(),
            ),
            (
                attribute::REQUEST_TIME,
                self.start_time.to_le_bytes().to_vec(),
            ),
        ];
        for (address, whole, port) in [
            (
                &self.remote_address,
                attribute::SOURCE_ADDRESS,
                attribute::SOURCE_PORT,
            ),
            (
                &self.local_address,
                attribute::DESTINATION_ADDRESS,
                attribute::DESTINATION_PORT,
            ),
            (
                &self.upstream_address,
                attribute::UPSTREAM_ADDRESS,
                attribute::UPSTREAM_PORT,
            ),
        ] {
            if let Some(address) = address {
                let number = i64::from(port_of(address)?);
                out.push((whole, address.clone().into_bytes()));
                out.push((port, number.to_le_bytes().to_vec()));
            }
        }
        Ok(out)
    }
}

/// One described request, as a command line or a line of a requests file
/// gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Parser, Deserialize)]
#[command(
    name = "request",
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
#[serde(deny_unknown_fields)]
pub struct Described {
    /// METHOD PATH.
    #[arg(num_args = 2, value_names = ["METHOD", "PATH"], required = true)]
    #[serde(deserialize_with = "words")]
    pub request: Vec<String>,
    /// `NAME: VALUE`, in order.
    #[arg(short = 'H', long = "header")]
    #[serde(default)]
    pub headers: Vec<String>,
    #[arg(long)]
    pub authority: Option<String>,
    #[arg(long)]
    pub scheme: Option<String>,
    #[arg(long)]
    pub route_name: Option<String>,
    #[arg(long)]
    pub status: Option<u16>,
    #[arg(long = "response-header", requires = "status")]
    #[serde(default)]
    pub response_headers: Vec<String>,
}

/// A JSON `"request": "GET /path"` as the two words a line gives.
fn words<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let text = String::deserialize(d)?;
    Ok(text.split_whitespace().map(str::to_string).collect())
}

impl Described {
    /// The exchange to run, in `surroundings`; `:authority` defaults to
    /// `example.com` and `:scheme` to `http`.
    pub fn exchange(&self, surroundings: &Surroundings) -> Result<Exchange, RenderError> {
        let (method, path) = parse_request_line(&self.request.join(" "))?;
        if self.status.is_none() && !self.response_headers.is_empty() {
            return Err(RenderError::NoStatus);
        }
        let headers = |list: &[String]| -> Result<Vec<(String, String)>, RenderError> {
            list.iter().map(|h| parse_header(h)).collect()
        };
        Ok(Exchange {
            method,
            path,
            authority: self.authority.clone().unwrap_or("example.com".into()),
            scheme: self.scheme.clone().unwrap_or("http".into()),
            headers: headers(&self.headers)?,
            route_name: self.route_name.clone(),
            properties: surroundings.properties()?,
            status: self.status,
            response_headers: headers(&self.response_headers)?,
        })
    }
}

/// One request of a requests file: its line number and text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub line: usize,
    pub text: String,
    pub described: Described,
}

/// Parses a requests file: one request per line, either in the command
/// line's syntax (`GET /api -H 'x-debug: 1' --status 503`, quoted as a
/// shell would) or as a JSON object (`{"request": "GET /api", "headers":
/// ["x-debug: 1"], "status": 503}`). Blank lines and `#` comments are
/// skipped.
pub fn parse_requests(text: &str) -> Result<Vec<Case>, RenderError> {
    let mut cases = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let bad = |reason: String| RenderError::Requests { line, reason };
        let described = if text.starts_with('{') {
            let described: Described =
                serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
            if described.request.len() != 2 {
                return Err(bad(
                    RenderError::Request(described.request.join(" ")).to_string()
                ));
            }
            described
        } else {
            let words = shell_words(text).map_err(bad)?;
            Described::try_parse_from(words).map_err(|e| bad(clap_reason(&e)))?
        };
        // Checked here, so a bad line is named before anything runs.
        described
            .exchange(&Surroundings::default())
            .map_err(|e| bad(e.to_string()))?;
        cases.push(Case {
            line,
            text: text.to_string(),
            described,
        });
    }
    if cases.is_empty() {
        return Err(RenderError::Requests {
            line: 0,
            reason: "no request (one per line: GET /path -H 'name: value' ..., or a JSON object)"
                .into(),
        });
    }
    Ok(cases)
}

/// clap's first line, without its `error: `.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// Splits a line into words as a POSIX shell does for quoting: `'...'`
/// literally, `"..."` with `\"`, `\\` and `\$` escapes, `\x` outside
/// quotes.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("a \\ ends the line".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// One header in a report: its value and whether the filter changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub name: String,
    pub value: String,
    /// `"added"` (written by the filter), `"removed"` (gone after the
    /// filter ran) or `"kept"`.
    pub change: &'static str,
    /// What Envoy does with this header around the filter (see the
    /// report's warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// What the filter did to one side.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// Every header after the filter ran, then those it removed.
    pub headers: Vec<Entry>,
}

/// What `render` found for one request.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The line of the requests file, when the request came from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The request as written there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// The matched route's index in `routes`, or `None`.
    pub route: Option<usize>,
    /// The matched route's `name`, if it has one.
    pub route_label: Option<String>,
    pub request: SideReport,
    pub response: Option<SideReport>,
    /// What render assumed for this request where it was not told.
    pub notes: Vec<String>,
    /// The configuration's warnings ([`Config::parse_with_warnings`]).
    pub warnings: Vec<String>,
}

const SERVER_REMOVED_NOTE: &str =
    "removed by the filter, but Envoy's connection manager writes server after the filters: \
     see the warning";
const SERVER_WRITTEN_NOTE: &str =
    "Envoy's connection manager replaces it after the filters unless \
     server_header_transformation is APPEND_IF_ABSENT or PASS_THROUGH: see the warning";
const DATE_REMOVED_NOTE: &str =
    "removed by the filter, but Envoy's connection manager writes date after the filters when \
     it is absent: see the warning";
const FORWARDED_PROTO_NOTE: &str =
    "left by the filter's remove_on_match: Envoy routes on it after the filter; see the warning";
/// The value of the `x-request-id` Envoy generates, which render cannot.
const REQUEST_ID: &str = "x-request-id";

/// A parsed configuration, ready to run requests.
pub struct Renderer {
    config: Config,
    plan: Plan,
    warnings: Vec<Warning>,
}

impl Renderer {
    pub fn new(config: &[u8]) -> Result<Renderer, RenderError> {
        let (config, warnings) = Config::parse_with_warnings(config)?;
        let plan = Plan::compile(&config);
        Ok(Renderer {
            config,
            plan,
            warnings,
        })
    }

    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Runs `exchange` through the plan and reports.
    pub fn run(&self, exchange: &Exchange) -> Report {
        let mut request = vec![
            (":authority".to_string(), exchange.authority.clone()),
            (":path".to_string(), exchange.path.clone()),
            (":method".to_string(), exchange.method.clone()),
            (":scheme".to_string(), exchange.scheme.clone()),
        ];
        request.extend(exchange.headers.iter().cloned());
        // What Envoy's connection manager adds before any filter runs.
        let given = |name: &str| exchange.headers.iter().any(|(n, _)| n == name);
        if !given(FORWARDED_PROTO) {
            request.push((FORWARDED_PROTO.to_string(), exchange.scheme.clone()));
        }
        if !given(REQUEST_ID) {
            request.push((
                REQUEST_ID.to_string(),
                not_computed("x-request-id, generated by Envoy"),
            ));
        }
        let mut response = Vec::new();
        let mut response_properties = Vec::new();
        if let Some(status) = exchange.status {
            response.push((":status".to_string(), status.to_string()));
            response.extend(exchange.response_headers.iter().cloned());
            response_properties.push((
                attribute::RESPONSE_CODE.to_vec(),
                u64::from(status).to_le_bytes().to_vec(),
            ));
        }
        let mut stream = MemoryStream {
            request: bytes(&request),
            response: bytes(&response),
            properties: exchange
                .properties
                .iter()
                .map(|(p, v)| (p.to_vec(), v.clone()))
                .collect(),
            response_properties,
            mark_not_computed: true,
        };
        if let Some(name) = &exchange.route_name {
            stream.set_property(attribute::ROUTE_NAME, name);
        }
        let before = stream.clone();
        let run = stream.run(&self.plan, exchange.status.is_some());
        let route = run.route.map(usize::from);
        // Routes are tried in order up to the one taken.
        let tried = route.map_or(self.config.routes.len(), |i| i + 1);
        let notes = match exchange.route_name {
            Some(_) => Vec::new(),
            None => self.config.routes[..tried]
                .iter()
                .enumerate()
                .filter(|(_, r)| r.matcher.route_name.is_some())
                .map(|(i, _)| {
                    format!(
                        "routes[{i}] matches on route_name and no route name was given \
                         (--route-name): it did not match"
                    )
                })
                .collect(),
        };
        let mut report = Report {
            line: None,
            case: None,
            route,
            route_label: route.and_then(|i| self.config.routes[i].name.clone()),
            request: compare(&before, &stream, Side::Request),
            response: run
                .response
                .map(|_| compare(&before, &stream, Side::Response)),
            notes,
            warnings: self.warnings.iter().map(ToString::to_string).collect(),
        };
        self.annotate(&mut report);
        report
    }

    /// Notes what Envoy does with a header the warnings are about.
    fn annotate(&self, report: &mut Report) {
        let warned = |side: Side, name: &str| {
            self.warnings
                .iter()
                .any(|w| w.side == side && w.header == name)
        };
        for e in &mut report.request.headers {
            if e.name == FORWARDED_PROTO && warned(Side::Request, FORWARDED_PROTO) {
                e.note = Some(FORWARDED_PROTO_NOTE);
            }
        }
        if let Some(response) = &mut report.response {
            for e in &mut response.headers {
                let (removed, written) = match e.name.as_str() {
                    SERVER => (SERVER_REMOVED_NOTE, Some(SERVER_WRITTEN_NOTE)),
                    DATE => (DATE_REMOVED_NOTE, None),
                    _ => continue,
                };
                if !warned(Side::Response, &e.name) {
                    continue;
                }
                match e.change {
                    "removed" => {
                        e.change = "kept";
                        e.note = Some(removed);
                    }
                    "added" => e.note = written,
                    _ => {}
                }
            }
        }
    }
}

/// Parses `config`, runs `exchange` through it and reports.
pub fn render(config: &[u8], exchange: &Exchange) -> Result<Report, RenderError> {
    Ok(Renderer::new(config)?.run(exchange))
}

fn bytes(headers: &[(String, String)]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| (n.clone(), v.as_bytes().to_vec()))
        .collect()
}

/// Marks each entry after the run as kept (it was there before, counted
/// with multiplicity) or added, and lists what is gone as removed.
fn compare(before: &MemoryStream, after: &MemoryStream, side: Side) -> SideReport {
    let (mut old, new) = match side {
        Side::Request => (before.request.clone(), &after.request),
        Side::Response => (before.response.clone(), &after.response),
    };
    let mut headers = Vec::new();
    for (name, value) in new {
        let change = match old.iter().position(|(n, v)| n == name && v == value) {
            Some(i) => {
                old.remove(i);
                "kept"
            }
            None => "added",
        };
        headers.push(entry(name, value, change));
    }
    headers.extend(old.iter().map(|(n, v)| entry(n, v, "removed")));
    SideReport { headers }
}

fn entry(name: &str, value: &[u8], change: &'static str) -> Entry {
    Entry {
        name: name.to_string(),
        value: String::from_utf8_lossy(value).into_owned(),
        change,
        note: None,
    }
}

impl Report {
    /// The report for people: the route, then each side's headers with
    /// `+` for what the filter added and `-` for what it removed, and a
    /// note in parentheses where Envoy acts on the header around the filter.
    /// (The warnings are printed once per run: [`warnings_text`].)
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        match (self.route, &self.route_label) {
            (Some(i), Some(name)) => out.push_str(&format!("route: routes[{i}] {name:?}\n")),
            (Some(i), None) => out.push_str(&format!("route: routes[{i}]\n")),
            (None, _) => out.push_str("route: none (the top level only)\n"),
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out.push_str("request headers (as they leave the filter):\n");
        write_side(&mut out, &self.request);
        if let Some(response) = &self.response {
            out.push_str("response headers (as they leave the filter):\n");
            write_side(&mut out, response);
        }
        out
    }
}

/// `warning: PATH: MESSAGE`, one line each.
pub fn warnings_text(warnings: &[Warning]) -> String {
    warnings.iter().map(|w| format!("warning: {w}\n")).collect()
}

fn write_side(out: &mut String, side: &SideReport) {
    for e in &side.headers {
        let mark = match e.change {
            "added" => '+',
            "removed" => '-',
            _ => ' ',
        };
        out.push_str(&format!("  {mark} {}: {}", e.name, e.value));
        if let Some(note) = e.note {
            out.push_str(&format!("   ({note})"));
        }
        out.push('\n');
    }
}

/// The lines of `got` that differ from `expected`, as a unified diff
/// (`-` expected, `+` got, two lines of context); `None` when equal.
pub fn diff(expected: &str, got: &str, expected_name: &str) -> Option<String> {
    if expected == got {
        return None;
    }
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    let ops = edit_script(&a, &b);
    let mut out = format!("--- {expected_name}\n+++ render output\n");
    const CONTEXT: usize = 2;
    let changed: Vec<usize> = (0..ops.len())
        .filter(|&i| !matches!(ops[i], Op::Same(..)))
        .collect();
    if changed.is_empty() {
        // Only line endings differ.
        out.push_str("(the texts differ only in their final newline)\n");
        return Some(out);
    }
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(CONTEXT);
        let mut end = changed[i];
        while i + 1 < changed.len() && changed[i + 1] <= end + 2 * CONTEXT + 1 {
            i += 1;
            end = changed[i];
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let (line_a, line_b) = ops[start].lines();
        out.push_str(&format!("@@ {expected_name}:{line_a} output:{line_b} @@\n"));
        for op in &ops[start..end] {
            match op {
                Op::Same(_, _, text) => out.push_str(&format!("  {text}\n")),
                Op::Delete(_, _, text) => out.push_str(&format!("- {text}\n")),
                Op::Insert(_, _, text) => out.push_str(&format!("+ {text}\n")),
            }
        }
        i += 1;
    }
    Some(out)
}

/// One line of an edit script, with the 1-based line numbers of both
/// texts at that point.
enum Op<'a> {
    Same(usize, usize, &'a str),
    Delete(usize, usize, &'a str),
    Insert(usize, usize, &'a str),
}

impl Op<'_> {
    fn lines(&self) -> (usize, usize) {
        match self {
            Op::Same(a, b, _) | Op::Delete(a, b, _) | Op::Insert(a, b, _) => (*a, *b),
        }
    }
}

/// A shortest edit script by longest common subsequence (the texts are a
/// table of cases: thousands of lines at most). Past 4 million cells, the
/// common prefix and suffix are kept and the middle is replaced whole.
fn edit_script<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<Op<'a>> = (0..prefix).map(|k| Op::Same(k + 1, k + 1, a[k])).collect();
    let (n, m) = (ma.len(), mb.len());
    let (mut i, mut j) = (0, 0);
    if n.saturating_mul(m) <= 4_000_000 {
        // lcs[i][j]: the longest common subsequence of ma[i..] and mb[j..].
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        for x in (0..n).rev() {
            for y in (0..m).rev() {
                lcs[x * (m + 1) + y] = if ma[x] == mb[y] {
                    lcs[(x + 1) * (m + 1) + y + 1] + 1
                } else {
                    lcs[(x + 1) * (m + 1) + y].max(lcs[x * (m + 1) + y + 1])
                };
            }
        }
        while i < n && j < m {
            let (la, lb) = (prefix + i + 1, prefix + j + 1);
            if ma[i] == mb[j] {
                ops.push(Op::Same(la, lb, ma[i]));
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1] {
                ops.push(Op::Delete(la, lb, ma[i]));
                i += 1;
            } else {
                ops.push(Op::Insert(la, lb, mb[j]));
                j += 1;
            }
        }
    }
    while i < n {
        ops.push(Op::Delete(prefix + i + 1, prefix + j + 1, ma[i]));
        i += 1;
    }
    while j < m {
        ops.push(Op::Insert(prefix + i + 1, prefix + j + 1, mb[j]));
        j += 1;
    }
    for k in 0..suffix {
        let (x, y) = (a.len() - suffix + k, b.len() - suffix + k);
        ops.push(Op::Same(x + 1, y + 1, a[x]));
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(method: &str, path: &str) -> Exchange {
        Exchange {
            method: method.into(),
            path: path.into(),
            authority: "example.com".into(),
            scheme: "http".into(),
            ..Exchange::default()
        }
    }

    const CONFIG: &str = r#"{
        "request_headers_to_remove": ["x-debug"],
        "routes": [
          {"name": "api", "match": {"prefix": "/api", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
           "request_headers_to_add": [{"header": {"key": "x-api", "value": "%REQ(:path)%"}}],
           "response_rules": [{"status": ["5xx"], "response_headers_to_add": [{"header": {"key": "retry-after", "value": "5"}}]}]}
        ]}"#;

    fn changed(side: &SideReport) -> Vec<(String, &'static str)> {
        side.headers
            .iter()
            .filter(|e| e.change != "kept")
            .map(|e| (format!("{}: {}", e.name, e.value), e.change))
            .collect()
    }

    fn value<'a>(side: &'a SideReport, name: &str) -> &'a str {
        &side
            .headers
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {name} in {side:?}"))
            .value
    }

    #[test]
    fn reports_the_route_and_every_change() {
        let mut e = exchange("GET", "/api/v1?x=1");
        e.headers.push(("x-debug".into(), "1".into()));
        e.status = Some(503);
        let report = render(CONFIG.as_bytes(), &e).unwrap();
        assert_eq!(report.route, Some(0));
        assert_eq!(report.route_label.as_deref(), Some("api"));
        assert_eq!(
            changed(&report.request),
            [
                ("x-api: /api/v1?x=1".to_string(), "added"),
                ("x-debug: 1".to_string(), "removed")
            ]
        );
        assert_eq!(
            changed(report.response.as_ref().unwrap()),
            [("retry-after: 5".to_string(), "added")]
        );
        let text = report.to_text();
        assert!(text.starts_with("route: routes[0] \"api\"\n"), "{text}");
        assert!(text.contains("  + x-api: /api/v1?x=1\n"), "{text}");
        assert!(text.contains("  - x-debug: 1\n"), "{text}");
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn envoys_own_request_headers_are_there_unless_given() {
        let report = render(b"{}", &exchange("GET", "/")).unwrap();
        let names: Vec<&str> = report
            .request
            .headers
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                ":authority",
                ":path",
                ":method",
                ":scheme",
                "x-forwarded-proto",
                "x-request-id"
            ]
        );
        assert_eq!(value(&report.request, "x-forwarded-proto"), "http");
        assert_eq!(
            value(&report.request, "x-request-id"),
            "<not computed offline: x-request-id, generated by Envoy>"
        );
        let mut e = exchange("GET", "/");
        e.headers = vec![
            ("x-request-id".into(), "abc".into()),
            ("x-forwarded-proto".into(), "https".into()),
        ];
        let report = render(b"{}", &e).unwrap();
        assert_eq!(report.request.headers.len(), 6);
        assert_eq!(value(&report.request, "x-forwarded-proto"), "https");
        assert_eq!(value(&report.request, "x-request-id"), "abc");
    }

    #[test]
    fn values_render_cannot_know_say_so_and_the_given_ones_render() {
        let config = br#"{
            "request_headers_to_add": [
                {"header": {"key": "x-client", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%:%DOWNSTREAM_REMOTE_PORT%"}},
                {"header": {"key": "x-local", "value": "%DOWNSTREAM_LOCAL_PORT%"}},
                {"header": {"key": "x-ms", "value": "%START_TIME(%s%3f)%"}},
                {"header": {"key": "x-start", "value": "%START_TIME%"}},
                {"header": {"key": "x-conn", "value": "%CONNECTION_ID%"}},
                {"header": {"key": "x-sni", "value": "%REQUESTED_SERVER_NAME%"}},
                {"header": {"key": "x-meta", "value": "%DYNAMIC_METADATA(ns:key)%"}},
                {"header": {"key": "x-route", "value": "%ROUTE_NAME%"}},
                {"header": {"key": "x-cluster", "value": "%UPSTREAM_CLUSTER%"}},
                {"header": {"key": "x-proto", "value": "%PROTOCOL%"}}],
            "response_headers_to_add": [
                {"header": {"key": "x-up", "value": "%UPSTREAM_HOST%"}},
                {"header": {"key": "x-up-port", "value": "%UPSTREAM_REMOTE_PORT%"}},
                {"header": {"key": "x-code", "value": "%RESPONSE_CODE%"}},
                {"header": {"key": "x-details", "value": "%RESPONSE_CODE_DETAILS%"}},
                {"header": {"key": "x-flags", "value": "%RESPONSE_FLAGS%"}}]}"#;
        let surroundings = Surroundings {
            remote_address: Some("10.1.2.3:5555".into()),
            local_address: Some("[::1]:10000".into()),
            upstream_address: None,
            protocol: "HTTP/2".into(),
            start_time: parse_start_time("2024-02-29T13:04:05.123456Z").unwrap(),
        };
        let described = Described {
            request: vec!["GET".into(), "/".into()],
            status: Some(503),
            ..Described::default()
        };
        let report = render(config, &described.exchange(&surroundings).unwrap()).unwrap();
        let request = &report.request;
        assert_eq!(value(request, "x-client"), "10.1.2.3:5555");
        assert_eq!(value(request, "x-local"), "10000");
        assert_eq!(value(request, "x-ms"), "1709211845123");
        assert_eq!(value(request, "x-start"), "2024-02-29T13:04:05.123Z");
        assert_eq!(value(request, "x-proto"), "HTTP/2");
        for (name, op) in [
            ("x-conn", "CONNECTION_ID"),
            ("x-sni", "REQUESTED_SERVER_NAME"),
            ("x-meta", "DYNAMIC_METADATA(ns:key)"),
            ("x-route", "ROUTE_NAME"),
            ("x-cluster", "UPSTREAM_CLUSTER"),
        ] {
            assert_eq!(value(request, name), not_computed(op), "{name}");
        }
        let response = report.response.as_ref().unwrap();
        assert_eq!(value(response, "x-code"), "503");
        for (name, op) in [
            ("x-up", "UPSTREAM_HOST"),
            ("x-up-port", "UPSTREAM_REMOTE_PORT"),
            ("x-details", "RESPONSE_CODE_DETAILS"),
            ("x-flags", "RESPONSE_FLAGS"),
        ] {
            assert_eq!(value(response, name), not_computed(op), "{name}");
        }

        // Given, the upstream and the route name render.
        let surroundings = Surroundings {
            upstream_address: Some("10.9.9.9:8080".into()),
            ..surroundings
        };
        let described = Described {
            route_name: Some("reviews-v2".into()),
            ..described
        };
        let report = render(config, &described.exchange(&surroundings).unwrap()).unwrap();
        assert_eq!(value(&report.request, "x-route"), "reviews-v2");
        let response = report.response.as_ref().unwrap();
        assert_eq!(value(response, "x-up"), "10.9.9.9:8080");
        assert_eq!(value(response, "x-up-port"), "8080");
    }

    #[test]
    fn start_times_and_addresses_parse_or_say_why_not() {
        assert_eq!(parse_start_time("0").unwrap(), 0);
        assert_eq!(
            parse_start_time("1709211845.5").unwrap(),
            1_709_211_845_500_000_000
        );
        assert_eq!(
            parse_start_time("2024-02-29T14:04:05.123+01:00").unwrap(),
            parse_start_time("1709211845.123").unwrap()
        );
        for bad in ["", "yesterday", "1.2.3", ".5", "2024-02-29", "1.1234567891"] {
            assert!(parse_start_time(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_start_time("soon").unwrap_err().to_string(),
            "start time \"soon\" is neither RFC 3339 (2024-02-29T13:04:05.123Z) nor epoch \
             seconds (1709211845.123)"
        );
        assert_eq!(port_of("10.0.0.1:80").unwrap(), 80);
        assert_eq!(port_of("[2001:db8::1]:443").unwrap(), 443);
        for bad in ["10.0.0.1", "::1:80", ":80", "a:b", "1.2.3.4:70000"] {
            assert!(port_of(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn server_removed_or_written_is_shown_as_envoy_leaves_it() {
        let config = br#"{"response_headers_to_remove": ["server", "x-powered-by"],
                          "response_rules": [{"status": ["503"], "response_headers_to_add": [
                              {"header": {"key": "server", "value": "mine"}}]}]}"#;
        let mut e = exchange("GET", "/");
        e.status = Some(200);
        e.response_headers = vec![
            ("server".into(), "envoy".into()),
            ("x-powered-by".into(), "php".into()),
        ];
        let dated = render(
            br#"{"response_headers_to_remove": ["date"]}"#,
            &Exchange {
                response_headers: vec![("date".into(), "Thu, 29 Feb 2024 13:04:05 GMT".into())],
                ..e.clone()
            },
        )
        .unwrap();
        let date = &dated.response.as_ref().unwrap().headers[1];
        assert_eq!(
            (date.name.as_str(), date.change, date.note),
            ("date", "kept", Some(DATE_REMOVED_NOTE))
        );
        let report = render(config, &e).unwrap();
        let response = report.response.as_ref().unwrap();
        let server = response
            .headers
            .iter()
            .find(|h| h.name == "server")
            .unwrap();
        assert_eq!(server.change, "kept");
        assert_eq!(server.note, Some(SERVER_REMOVED_NOTE));
        assert_eq!(
            changed(response),
            [("x-powered-by: php".to_string(), "removed")]
        );
        let text = report.to_text();
        assert!(
            text.contains(&format!("    server: envoy   ({SERVER_REMOVED_NOTE})\n")),
            "{text}"
        );
        assert!(!text.contains("- server"), "{text}");
        assert_eq!(report.warnings.len(), 2);
        assert!(report.warnings[0].starts_with("response_headers_to_remove[0]: "));

        e.status = Some(503);
        let report = render(config, &e).unwrap();
        let response = report.response.as_ref().unwrap();
        let added = response
            .headers
            .iter()
            .find(|h| h.name == "server" && h.change == "added")
            .unwrap();
        assert_eq!(added.value, "mine");
        assert_eq!(added.note, Some(SERVER_WRITTEN_NOTE));
    }

    #[test]
    fn a_pattern_removal_shows_x_forwarded_proto_kept() {
        let config = br#"{"mutations": {"request_mutations": [
            {"remove_on_match": {"key_matcher": {"prefix": "x-"}}}]}}"#;
        let mut e = exchange("GET", "/");
        e.headers.push(("x-debug".into(), "1".into()));
        let report = render(config, &e).unwrap();
        let proto = &report.request.headers[4];
        assert_eq!(
            (proto.name.as_str(), proto.change, proto.note),
            ("x-forwarded-proto", "kept", Some(FORWARDED_PROTO_NOTE))
        );
        assert_eq!(
            changed(&report.request),
            [
                ("x-debug: 1".to_string(), "removed"),
                (
                    "x-request-id: <not computed offline: x-request-id, generated by Envoy>"
                        .to_string(),
                    "removed"
                )
            ]
        );
        assert!(report.warnings[0].starts_with(
            "mutations.request_mutations[0].remove_on_match: leaves x-forwarded-proto"
        ));
    }

    #[test]
    fn a_route_name_matcher_without_a_route_name_is_noted() {
        let config = br#"{"routes": [
            {"match": {"path": "/a"}},
            {"match": {"route_name": {"exact": "r1"}}},
            {"match": {"prefix": "/"}},
            {"match": {"route_name": {"prefix": "r"}}}]}"#;
        let report = render(config, &exchange("GET", "/b")).unwrap();
        assert_eq!(report.route, Some(2));
        assert_eq!(
            report.notes,
            [
                "routes[1] matches on route_name and no route name was given (--route-name): \
              it did not match"
            ]
        );
        assert!(report.to_text().starts_with(
            "route: routes[2]\nnote: routes[1] matches on route_name and no route name"
        ));
        let mut e = exchange("GET", "/b");
        e.route_name = Some("r1".into());
        let report = render(config, &e).unwrap();
        assert_eq!(report.route, Some(1));
        assert!(report.notes.is_empty());
        let report = render(config, &exchange("GET", "/a")).unwrap();
        assert!(report.notes.is_empty());
    }

    #[test]
    fn no_route_and_no_response() {
        let report = render(CONFIG.as_bytes(), &exchange("POST", "/api")).unwrap();
        assert_eq!(report.route, None);
        assert!(report.response.is_none());
        assert!(report.to_text().starts_with("route: none"));
    }

    #[test]
    fn bad_inputs_are_named() {
        let error = render(
            br#"{"routes":[{"match":{"grpc":{}}}]}"#,
            &exchange("GET", "/"),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(error, "routes[0].match.grpc: not supported by this filter");
        assert_eq!(
            parse_header("no colon").unwrap_err().to_string(),
            "header \"no colon\" is not NAME: VALUE"
        );
        assert_eq!(
            parse_header("X-A:  b ").unwrap(),
            ("x-a".to_string(), "b".to_string())
        );
        assert!(parse_request_line("GET").is_err());
        assert!(parse_request_line("GET api").is_err());
        assert_eq!(
            parse_request_line("DELETE /a?b").unwrap(),
            ("DELETE".to_string(), "/a?b".to_string())
        );
    }

    #[test]
    fn a_requests_file_takes_command_lines_and_json_objects() {
        let text = r#"
# the API
GET /api/v1?x=1 -H 'x-debug: 1' -H "x-quote: a \"b\"" --status 503 --response-header 'content-type: text/html'
  {"request": "POST /login", "headers": ["x-a: 1", "x-a: 2"], "route_name": "login", "authority": "shop", "scheme": "https"}
HEAD '/x?a=1' --route-name r1
"#;
        let cases = parse_requests(text).unwrap();
        assert_eq!(cases.iter().map(|c| c.line).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(
            cases[0].described,
            Described {
                request: vec!["GET".into(), "/api/v1?x=1".into()],
                headers: vec!["x-debug: 1".into(), "x-quote: a \"b\"".into()],
                status: Some(503),
                response_headers: vec!["content-type: text/html".into()],
                ..Described::default()
            }
        );
        assert_eq!(
            cases[1].text,
            r#"{"request": "POST /login", "headers": ["x-a: 1", "x-a: 2"], "route_name": "login", "authority": "shop", "scheme": "https"}"#
        );
        let exchange = cases[1]
            .described
            .exchange(&Surroundings::default())
            .unwrap();
        assert_eq!(
            (exchange.method.as_str(), exchange.path.as_str()),
            ("POST", "/login")
        );
        assert_eq!(exchange.headers.len(), 2);
        assert_eq!(
            (exchange.authority.as_str(), exchange.scheme.as_str()),
            ("shop", "https")
        );
        assert_eq!(exchange.route_name.as_deref(), Some("login"));
        assert_eq!(cases[2].described.request, ["HEAD", "/x?a=1"]);
    }

    #[test]
    fn the_readmes_requests_file_parses() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let start = readme
            .find("# cases.txt\n")
            .expect("the README's cases.txt");
        let end = start + readme[start..].find("```").unwrap();
        let cases = parse_requests(&readme[start..end]).unwrap();
        assert_eq!(cases.len(), 3);
        assert_eq!(cases[2].described.route_name.as_deref(), Some("health"));
    }

    #[test]
    fn a_bad_requests_line_is_named_with_its_number() {
        for (text, expected) in [
            (
                "GET /a\nGET /b --colour red",
                "line 2: unexpected argument '--colour' found",
            ),
            (
                "GET",
                "line 1: 2 values required for '<METHOD> <PATH>...' but 1 was provided",
            ),
            ("GET /a 'x", "line 1: unterminated ' quote"),
            ("GET a", "line 1: request \"GET a\" is not METHOD PATH"),
            (
                "GET /a -H nocolon",
                "line 1: header \"nocolon\" is not NAME: VALUE",
            ),
            (
                "GET /a --response-header 'a: b'",
                "line 1: the following required arguments",
            ),
            (
                r#"{"request": "GET /", "colour": 1}"#,
                "line 1: unknown field `colour`",
            ),
            (
                r#"{"request": "GET"}"#,
                "line 1: request \"GET\" is not METHOD PATH",
            ),
            (r#"{"headers": []}"#, "line 1: missing field `request`"),
            (
                r#"{"request": "GET /", "response_headers": ["a: b"]}"#,
                "line 1: response headers need a status",
            ),
            ("# only a comment\n\n", "line 0: no request"),
        ] {
            let got = parse_requests(text).unwrap_err().to_string();
            assert!(got.starts_with(expected), "{text:?}: {got}");
            assert!(!got.contains('\n'), "{got}");
        }
    }

    #[test]
    fn diffs_show_what_changed_with_context() {
        assert_eq!(diff("a\nb\n", "a\nb\n", "x"), None);
        let expected = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n";
        let got = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n12\nthirteen\n";
        assert_eq!(
            diff(expected, got, "cases.expected").unwrap(),
            "--- cases.expected\n+++ render output\n\
             @@ cases.expected:3 output:3 @@\n  3\n  4\n- 5\n+ five\n  6\n  7\n\
             @@ cases.expected:11 output:11 @@\n  11\n  12\n+ thirteen\n"
        );
        // Changes closer than twice the context share a hunk.
        assert_eq!(
            diff("a\nb\nc\nd\ne\nf\n", "A\nb\nc\nd\ne\nF\n", "x").unwrap(),
            "--- x\n+++ render output\n@@ x:1 output:1 @@\n- a\n+ A\n  b\n  c\n  d\n  e\n- f\n+ F\n"
        );
        assert!(diff("a\n", "a", "x").unwrap().contains("final newline"));
    }
}
