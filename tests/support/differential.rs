//! Native Envoy and the filter, side by side: what the differential tests
//! give both (every append action, every formatter the filter renders) and
//! how they compare what each did to the same request (the headers that do
//! not differ between any two requests, grouped by name in order, and an
//! assertion that lists every difference at once).

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

/// Owned header pairs as the borrowed pairs `http::get` takes.
pub fn as_pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// Headers that differ between any two requests, whatever adds the rules.
pub fn comparable(headers: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    const VOLATILE: [&str; 5] = [
        "x-request-id",
        "date",
        "x-envoy-upstream-service-time",
        "content-length",
        "x-envoy-expected-rq-timeout-ms",
    ];
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
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

/// Panics listing every header name whose values differ between the two
/// listeners (`what` says which headers: upstream request, client response).
pub fn assert_same(
    native: &BTreeMap<String, Vec<String>>,
    filter: &BTreeMap<String, Vec<String>>,
    what: &str,
) {
    let mut differences = Vec::new();
    for name in native.keys().chain(filter.keys()) {
        let (n, f) = (native.get(name), filter.get(name));
        if n != f
            && !differences
                .iter()
                .any(|d: &String| d.starts_with(&format!("{name}:")))
        {
            differences.push(format!("{name}: native {n:?}, filter {f:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{what} differ:\n  {}",
        differences.join("\n  ")
    );
}
