//! The stream as the core sees it: which side of it ([`Side`]), what the
//! formatters read of it ([`Reader`]), and what the plan and the
//! `header_mutation` form write to it ([`Host`]), with the count of what
//! one application did ([`Outcome`]). The glue (`proxy.rs`) implements
//! these over the proxy-wasm ABI, `offline.rs` over memory.
//!
//! Below the formatters, the mutations and the plan, which all take a
//! stream through these traits.

use std::borrow::Cow;

/// Where a value is written, which decides what some commands can see:
/// response headers and the upstream exist only on the response side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Request,
    Response,
}

/// Read access to the stream, as the formatter needs it.
pub trait Reader {
    /// The first value of a header of the request or the response.
    fn header(&self, of: Side, name: &str) -> Option<Vec<u8>>;
    /// A proxy-wasm attribute, as the host serializes it (see
    /// [`crate::format::attribute`]); `None` when the host has none.
    fn property(&self, path: &[u8]) -> Option<Vec<u8>>;
    /// A header as `%REQ(..)%` / `%RESP(..)%` read it. A host whose header
    /// map of `of` is closed by now (Envoy closes the request map once the
    /// request headers are done) answers from what it kept of it: see
    /// [`crate::plan::Plan::request_headers_for_response`].
    fn formatter_header(&self, of: Side, name: &str) -> Option<Vec<u8>> {
        self.header(of, name)
    }
    /// What the attribute command `command` (as written) renders as when
    /// the reader cannot know attribute `path` at all, rather than knowing
    /// it absent; `None` reads it. Envoy always knows; a stream described
    /// offline says which value it could not compute.
    fn not_computed(&self, _command: &str, _path: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// The stream as the plan sees it: read access plus the three writes.
pub trait Host: Reader {
    /// Adds an entry, keeping existing ones (Envoy's `addCopy`).
    fn add(&mut self, side: Side, name: &str, value: &[u8]);
    /// Replaces every entry of `name` with one (Envoy's `setCopy`).
    fn replace(&mut self, side: Side, name: &str, value: &[u8]);
    fn remove(&mut self, side: Side, name: &str);
    fn exists(&self, side: Side, name: &str) -> bool {
        self.header(side, name).is_some()
    }
    /// The whole header map of `side`, serialized as proxy-wasm's
    /// `get_header_map_pairs` returns it (see [`crate::headers::HeaderPairs`]). Read once
    /// per side, and only by plans whose matchers need it; a host that keeps
    /// the map for later reads lends it rather than copying it.
    fn header_map(&self, side: Side) -> Cow<'_, [u8]>;
    /// The plan chose `route` for this request (before any rule runs); a
    /// host may use it to know which reads repeat
    /// (`Plan::repeated_properties`).
    fn route_chosen(&mut self, _route: Option<u16>) {}
}

/// What one application did, for the filter's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Headers written (added or replaced).
    pub written: u32,
    /// Removals asked of the host.
    pub removed: u32,
    /// Rendered values dropped because they held CR, LF or NUL.
    pub refused: u32,
}

impl Outcome {
    #[inline(always)]
    pub fn add(&mut self, other: Outcome) {
        self.written += other.written;
        self.removed += other.removed;
        self.refused += other.refused;
    }
}
