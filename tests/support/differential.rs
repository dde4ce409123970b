//! Comparing what two listeners of one Envoy did to the same request, one
//! with Envoy's own route config and one with the filter: header maps
//! stripped of what legitimately differs between any two requests.

use std::collections::BTreeMap;

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
