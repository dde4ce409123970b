//! The filter run without Envoy: a stream held in memory with the header
//! map semantics of Envoy's proxy-wasm host, so that a configuration can be
//! tried offline (`extpack render`) and the core tested, through the same
//! [`Plan`] the module runs.
//!
//! What the module sees in Envoy and this stream gives alike: `addCopy`
//! appends, `setCopy` removes every entry then appends, a read returns the
//! first value, the header map is serialized in order. Request headers read
//! by response rules are the request's as the request rules left them
//! (what the module keeps, since Envoy closes the request map).

use std::borrow::Cow;

use crate::headers::HeaderPairs;
use crate::host::{Host, Outcome, Reader, Side};
use crate::plan::{Plan, Scratch};

/// A request and a response, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStream {
    pub request: Vec<(String, Vec<u8>)>,
    pub response: Vec<(String, Vec<u8>)>,
    /// Attributes (`source.address`, `xds.route_name`...) as the host
    /// serializes them, by path (see [`crate::format::attribute`]).
    pub properties: Vec<(Vec<u8>, Vec<u8>)>,
    /// Attributes that exist once the response is there (`response.code`),
    /// added to `properties` when [`MemoryStream::run`] reaches the response.
    pub response_properties: Vec<(Vec<u8>, Vec<u8>)>,
    /// When set, an attribute command whose attribute is not in
    /// `properties` renders as [`not_computed`] instead of as absent:
    /// `extpack render` cannot know what Envoy would have there. Unset (the
    /// core's tests), a missing attribute is absent, as Envoy renders it.
    pub mark_not_computed: bool,
}

/// What an attribute command the stream cannot know renders as when
/// [`MemoryStream::mark_not_computed`] is set: `<not computed offline:
/// UPSTREAM_HOST>`.
pub fn not_computed(command: &str) -> String {
    format!("<not computed offline: {command}>")
}

/// What [`MemoryStream::run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Index in `routes` of the route the request took.
    pub route: Option<u16>,
    pub request: Outcome,
    /// `None` when there was no response to run.
    pub response: Option<Outcome>,
}

impl MemoryStream {
    /// A stream whose request has these headers (names lower-cased).
    pub fn with_request(headers: &[(&str, &str)]) -> MemoryStream {
        MemoryStream {
            request: entries(headers),
            ..MemoryStream::default()
        }
    }

    /// Sets the response's headers (names lower-cased).
    pub fn respond(&mut self, headers: &[(&str, &str)]) -> &mut MemoryStream {
        self.response = entries(headers);
        self
    }

    /// Sets the attribute at `path` (a string attribute's bytes, or an
    /// integer's 8 little-endian bytes).
    pub fn set_property(&mut self, path: &[u8], value: impl AsRef<[u8]>) -> &mut MemoryStream {
        self.properties.retain(|(p, _)| p != path);
        self.properties
            .push((path.to_vec(), value.as_ref().to_vec()));
        self
    }

    /// Every value of `name` on `side`, in order.
    pub fn values(&self, side: Side, name: &str) -> Vec<String> {
        self.map(side)
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// Runs `plan` over the request and, when `with_response`, the
    /// response, as the module runs in Envoy.
    pub fn run(&mut self, plan: &Plan, with_response: bool) -> Run {
        let mut scratch = Scratch::new();
        let (route, request) = plan.request(self, &mut scratch);
        let response = with_response.then(|| {
            for (path, value) in std::mem::take(&mut self.response_properties) {
                self.set_property(&path, value);
            }
            plan.response(route, self, &mut scratch)
        });
        Run {
            route,
            request,
            response,
        }
    }

    fn map(&self, side: Side) -> &Vec<(String, Vec<u8>)> {
        match side {
            Side::Request => &self.request,
            Side::Response => &self.response,
        }
    }

    fn map_mut(&mut self, side: Side) -> &mut Vec<(String, Vec<u8>)> {
        match side {
            Side::Request => &mut self.request,
            Side::Response => &mut self.response,
        }
    }
}

fn entries(headers: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect()
}

impl Reader for MemoryStream {
    fn header(&self, of: Side, name: &str) -> Option<Vec<u8>> {
        self.map(of)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn property(&self, path: &[u8]) -> Option<Vec<u8>> {
        self.properties
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
    }

    fn not_computed(&self, command: &str, path: &[u8]) -> Option<Vec<u8>> {
        (self.mark_not_computed && !self.properties.iter().any(|(p, _)| p == path))
            .then(|| not_computed(command).into_bytes())
    }
}

impl Host for MemoryStream {
    fn add(&mut self, side: Side, name: &str, value: &[u8]) {
        self.map_mut(side).push((name.to_string(), value.to_vec()));
    }

    fn replace(&mut self, side: Side, name: &str, value: &[u8]) {
        self.remove(side, name);
        self.add(side, name, value);
    }

    fn remove(&mut self, side: Side, name: &str) {
        self.map_mut(side).retain(|(n, _)| n != name);
    }

    fn header_map(&self, side: Side) -> Cow<'_, [u8]> {
        Cow::Owned(HeaderPairs::encode(self.map(side)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::attribute;

    const CONFIG: &str = r#"{
        "request_headers_to_add": [
            {"header": {"key": "x-client", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}},
            {"header": {"key": "x-conn", "value": "c=%CONNECTION_ID%:%REQ(x-a)%"}},
            {"header": {"key": "x-flags", "value": "%RESPONSE_FLAGS%"}}],
        "response_headers_to_add": [
            {"header": {"key": "x-code", "value": "%RESPONSE_CODE%"}},
            {"header": {"key": "x-up", "value": "%UPSTREAM_HOST%"}}]}"#;

    fn stream(mark: bool) -> MemoryStream {
        let mut s = MemoryStream::with_request(&[(":path", "/"), ("x-a", "1")]);
        s.respond(&[(":status", "503")]);
        s.set_property(attribute::SOURCE_ADDRESS, "10.0.0.1:5000");
        s.response_properties.push((
            attribute::RESPONSE_CODE.to_vec(),
            503u64.to_le_bytes().to_vec(),
        ));
        s.mark_not_computed = mark;
        s
    }

    #[test]
    fn what_the_stream_cannot_know_is_named_when_asked() {
        let plan = Plan::from_json(CONFIG.as_bytes()).unwrap();
        let mut s = stream(true);
        s.run(&plan, true);
        assert_eq!(s.values(Side::Request, "x-client"), ["10.0.0.1"]);
        assert_eq!(
            s.values(Side::Request, "x-conn"),
            ["c=<not computed offline: CONNECTION_ID>:1"]
        );
        assert_eq!(
            s.values(Side::Request, "x-flags"),
            ["<not computed offline: RESPONSE_FLAGS>"]
        );
        assert_eq!(s.values(Side::Response, "x-code"), ["503"]);
        assert_eq!(
            s.values(Side::Response, "x-up"),
            ["<not computed offline: UPSTREAM_HOST>"]
        );

        // Unmarked, a missing attribute is absent, as Envoy renders it.
        let mut s = stream(false);
        s.run(&plan, true);
        assert_eq!(s.values(Side::Request, "x-conn"), ["c=0:1"]);
        assert_eq!(s.values(Side::Request, "x-flags"), ["-"]);
        assert!(s.values(Side::Response, "x-up").is_empty());
    }

    #[test]
    fn response_properties_exist_only_once_the_response_is_there() {
        let plan = Plan::from_json(
            br#"{"request_headers_to_add": [{"header": {"key": "x-flags", "value": "%RESPONSE_FLAGS%"}}],
                 "response_headers_to_add": [{"header": {"key": "x-flags", "value": "%RESPONSE_FLAGS%"}}]}"#,
        )
        .unwrap();
        let mut s = MemoryStream::with_request(&[(":path", "/")]);
        s.respond(&[(":status", "503")]);
        s.response_properties.push((
            attribute::RESPONSE_FLAGS.to_vec(),
            1u64.to_le_bytes().to_vec(),
        ));
        s.mark_not_computed = true;
        s.run(&plan, true);
        assert_eq!(
            s.values(Side::Request, "x-flags"),
            ["<not computed offline: RESPONSE_FLAGS>"]
        );
        assert_eq!(s.values(Side::Response, "x-flags"), ["LH"]);
        assert!(s.response_properties.is_empty());
    }
}
