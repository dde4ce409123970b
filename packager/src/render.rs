//! `extpack render`: tries a filter configuration offline. Given a described
//! request (and optionally a response), it runs the filter's own core
//! ([`header_filter::offline::MemoryStream`], the same [`Plan`] the module
//! runs in Envoy) and reports which route matched and what the filter
//! wrote, so configurations can be tested in CI without Envoy.

use header_filter::config::ConfigError;
use header_filter::format::{Property, Side};
use header_filter::offline::MemoryStream;
use header_filter::{Config, Plan};
use serde::Serialize;

/// The request and response to run, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub method: String,
    /// As sent on the request line: path and query string.
    pub path: String,
    /// `:authority` (Host).
    pub authority: String,
    pub scheme: String,
    /// Further request headers, in order.
    pub headers: Vec<(String, String)>,
    /// `xds.route_name`: the Envoy route the request took (Istio names its
    /// routes), for `route_name` matchers.
    pub route_name: Option<String>,
    /// Stream properties formatters read (`source.address`...).
    pub properties: Vec<(Property, String)>,
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

/// One header in a report: its value and whether the filter changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub name: String,
    pub value: String,
    /// `"added"` (written by the filter), `"removed"` (gone after the
    /// filter ran) or `"kept"`.
    pub change: &'static str,
}

/// What the filter did to one side.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// Every header after the filter ran, then those it removed.
    pub headers: Vec<Entry>,
}

/// What `render` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The matched route's index in `routes`, or `None`.
    pub route: Option<usize>,
    /// The matched route's `name`, if it has one.
    pub route_label: Option<String>,
    pub request: SideReport,
    pub response: Option<SideReport>,
}

/// Parses `config`, runs `exchange` through it and reports.
pub fn render(config: &[u8], exchange: &Exchange) -> Result<Report, RenderError> {
    let config = Config::parse(config)?;
    let plan = Plan::compile(&config);
    let mut request = vec![
        (":authority".to_string(), exchange.authority.clone()),
        (":path".to_string(), exchange.path.clone()),
        (":method".to_string(), exchange.method.clone()),
        (":scheme".to_string(), exchange.scheme.clone()),
    ];
    request.extend(exchange.headers.iter().cloned());
    let mut response = Vec::new();
    if let Some(status) = exchange.status {
        response.push((":status".to_string(), status.to_string()));
        response.extend(exchange.response_headers.iter().cloned());
    }
    let mut stream = MemoryStream {
        request: bytes(&request),
        response: bytes(&response),
        properties: exchange
            .properties
            .iter()
            .map(|(p, v)| (*p, v.as_bytes().to_vec()))
            .collect(),
        route_name: exchange.route_name.as_ref().map(|n| n.as_bytes().to_vec()),
    };
    let before = stream.clone();
    let run = stream.run(&plan, exchange.status.is_some());
    let route = run.route.map(usize::from);
    Ok(Report {
        route,
        route_label: route.and_then(|i| config.routes[i].name.clone()),
        request: compare(&before, &stream, Side::Request),
        response: run
            .response
            .map(|_| compare(&before, &stream, Side::Response)),
    })
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
    }
}

impl Report {
    /// The report for people: the route, then each side's headers with
    /// `+` for what the filter added and `-` for what it removed.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        match (self.route, &self.route_label) {
            (Some(i), Some(name)) => out.push_str(&format!("route: routes[{i}] {name:?}\n")),
            (Some(i), None) => out.push_str(&format!("route: routes[{i}]\n")),
            (None, _) => out.push_str("route: none (the top level only)\n"),
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

fn write_side(out: &mut String, side: &SideReport) {
    for e in &side.headers {
        let mark = match e.change {
            "added" => '+',
            "removed" => '-',
            _ => ' ',
        };
        out.push_str(&format!("  {mark} {}: {}\n", e.name, e.value));
    }
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

    #[test]
    fn reports_the_route_and_every_change() {
        let mut e = exchange("GET", "/api/v1?x=1");
        e.headers.push(("x-debug".into(), "1".into()));
        e.status = Some(503);
        let report = render(CONFIG.as_bytes(), &e).unwrap();
        assert_eq!(report.route, Some(0));
        assert_eq!(report.route_label.as_deref(), Some("api"));
        let changed = |side: &SideReport| -> Vec<(String, &'static str)> {
            side.headers
                .iter()
                .filter(|e| e.change != "kept")
                .map(|e| (format!("{}: {}", e.name, e.value), e.change))
                .collect()
        };
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
}
