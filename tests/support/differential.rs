//! Native Envoy and the filter, side by side: what the differential tests
//! give both (every append action, every formatter the filter renders) and
//! how they compare what two listeners of one Envoy did to the same request
//! (header maps stripped of what legitimately differs between any two
//! requests, and an assertion that lists every difference at once).

use std::collections::BTreeMap;

/// Envoy's `HeaderValueOption.append_action` values.
pub const APPEND_ACTIONS: [&str; 4] = [
    "APPEND_IF_EXISTS_OR_ADD",
    "ADD_IF_ABSENT",
    "OVERWRITE_IF_EXISTS_OR_ADD",
    "OVERWRITE_IF_EXISTS",
];

/// Formatters the filter renders, as a differential test writes them
/// (given a request with `x-src`, `x-multi` twice, and an upstream that
/// sends `x-up-src`).
pub const FORMATTERS: [&str; 12] = [
    "%REQ(x-src)%",
    "%REQ(x-missing?x-src)%",
    "%REQ(x-src):3%",
    "%REQ(:path)%",
    "%REQ(x-multi)%",
    "%RESP(x-up-src)%",
    "%DOWNSTREAM_REMOTE_ADDRESS%",
    "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "%DOWNSTREAM_LOCAL_ADDRESS%",
    "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%",
    "%PROTOCOL%",
    "%UPSTREAM_REMOTE_ADDRESS%",
];

/// [`FORMATTERS`] a rule on `side` (`"request"` or `"response"`) may use,
/// with their index: the filter refuses response-only formatters in
/// request rules (Envoy renders them empty there; see
/// tests/formatters_envoy.rs).
pub fn formatters_for(side: &str) -> impl Iterator<Item = (usize, &'static str)> + '_ {
    FORMATTERS
        .iter()
        .copied()
        .enumerate()
        .filter(move |(_, f)| {
            let response_only = f.starts_with("%RESP") || f.starts_with("%UPSTREAM");
            side != "request" || !response_only
        })
}

/// Owned header pairs as the borrowed pairs `http::get` takes.
pub fn as_pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// Headers by lower-cased name, values in order, ports erased.
pub type HeaderSet = BTreeMap<String, Vec<String>>;

/// Headers that differ between any two requests, whatever adds the rules.
const VOLATILE: [&str; 5] = [
    "x-request-id",
    "date",
    "x-envoy-upstream-service-time",
    "content-length",
    "x-envoy-expected-rq-timeout-ms",
];

/// `headers` without the volatile ones, ready to compare with another
/// listener's.
pub fn comparable(headers: &[(String, String)]) -> HeaderSet {
    let mut map = HeaderSet::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if VOLATILE.contains(&name.as_str()) {
            continue;
        }
        map.entry(name).or_default().push(erase_ports(value));
    }
    map
}

/// The two listeners (and two client connections) have different ports;
/// everything else about an address must match.
fn erase_ports(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ':' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push_str("PORT");
        }
    }
    out
}

/// One line per header name whose values differ, in name order.
pub fn differences(native: &HeaderSet, filter: &HeaderSet) -> Vec<String> {
    let mut names: Vec<&String> = native.keys().chain(filter.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (n, f) = (native.get(name), filter.get(name));
            (n != f).then(|| format!("{name}: native {n:?}, filter {f:?}"))
        })
        .collect()
}

/// Panics listing every difference.
pub fn assert_same(native: &HeaderSet, filter: &HeaderSet, what: &str) {
    let differences = differences(native, filter);
    assert!(
        differences.is_empty(),
        "{what} differ:\n  {}",
        differences.join("\n  ")
    );
}
