//! Header names and values: what a name a filter may write is
//! ([`HeaderName`], an RFC 9110 token), what a configured value may hold
//! ([`check_value`]), and a header map as the host serializes it
//! ([`HeaderPairs`], read in place).
//!
//! Below the matchers, the formatters and the configuration, which all use
//! these; above the JSON paths and errors only.

use crate::jsonpath::{quoted, ConfigError};

/// Longest header name or value, as Envoy's `HeaderValue` allows.
pub const MAX_HEADER_BYTES: usize = 16384;

/// The request header Envoy's router needs after this filter ran: every
/// request-header write of a Wasm filter clears Envoy's route cache, and
/// the router's next look-up gives no route (404) to a request whose
/// `x-forwarded-proto` is missing or empty (Envoy's
/// `VirtualHostImpl::getRouteFromEntries`). So explicit removals and empty
/// overwrites of it are refused, and pattern removals leave it alone.
pub const FORWARDED_PROTO: &str = "x-forwarded-proto";
/// Why [`FORWARDED_PROTO`] must stay, for messages.
pub(crate) const REROUTE: &str = "Envoy chooses the route again after a Wasm filter changes \
request headers, and a request whose x-forwarded-proto is missing or empty gets no route (404)";
/// What to do instead of removing [`FORWARDED_PROTO`] here.
pub(crate) const REMOVE_IN_ROUTE: &str = "remove it in the route instead (Envoy's route \
request_headers_to_remove, Istio's VirtualService headers.request.remove), which acts after \
routing";

/// The refusal of an explicit removal of [`FORWARDED_PROTO`] at `path`.
pub(crate) fn forwarded_proto_removed(path: &str) -> ConfigError {
    ConfigError::new(
        path,
        format!("{FORWARDED_PROTO} may not be removed from requests: {REROUTE}; {REMOVE_IN_ROUTE}"),
    )
}

/// A header name a filter may write: a non-empty lower-case RFC 9110 token,
/// neither a pseudo-header nor `host`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderName(String);

impl HeaderName {
    /// Validates and lower-cases `name`; the error is the reason only.
    pub fn parse(name: &str) -> Result<HeaderName, String> {
        if name.is_empty() {
            return Err("header name must not be empty".into());
        }
        if name.len() > MAX_HEADER_BYTES {
            return Err(format!(
                "header name is {} bytes, the limit is {MAX_HEADER_BYTES}",
                name.len()
            ));
        }
        let lower = name.to_ascii_lowercase();
        if lower.starts_with(':') || lower == "host" {
            return Err(format!(
                "{}: :-prefixed or host headers may not be modified",
                quoted(name)
            ));
        }
        if !is_token(&lower) {
            return Err(format!(
                "{} is not a valid header name (RFC 9110 token characters only)",
                quoted(name)
            ));
        }
        Ok(HeaderName(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// RFC 9110 `token`: one or more tchar.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

pub(crate) fn check_value(path: &str, text: &str) -> Result<(), ConfigError> {
    if text.len() > MAX_HEADER_BYTES {
        return Err(ConfigError::new(
            path,
            format!(
                "value is {} bytes, the limit is {MAX_HEADER_BYTES}",
                text.len()
            ),
        ));
    }
    if text.contains(['\r', '\n']) {
        return Err(ConfigError::new(path, "contains CR/LF"));
    }
    if text.contains('\0') {
        return Err(ConfigError::new(path, "contains NUL"));
    }
    Ok(())
}

/// A header map as proxy-wasm serializes it (`proxy_get_header_map_pairs`):
/// a little-endian u32 count, then a (name length, value length) u32 pair
/// per entry, then each name and value followed by a NUL. Read in place.
#[derive(Debug, Clone, Copy)]
pub struct HeaderPairs<'a> {
    bytes: &'a [u8],
}

impl<'a> HeaderPairs<'a> {
    /// Wraps a serialized map. A malformed buffer reads as holding the
    /// entries that fit, never panicking.
    pub fn new(bytes: &'a [u8]) -> HeaderPairs<'a> {
        HeaderPairs { bytes }
    }

    /// Serializes entries (tests, and hosts that are not Envoy).
    pub fn encode<N: AsRef<[u8]>, V: AsRef<[u8]>>(entries: &[(N, V)]) -> Vec<u8> {
        let data: usize = entries
            .iter()
            .map(|(n, v)| n.as_ref().len() + v.as_ref().len() + 2)
            .sum();
        let mut out = Vec::with_capacity(4 + entries.len() * 8 + data);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (name, value) in entries {
            out.extend_from_slice(&(name.as_ref().len() as u32).to_le_bytes());
            out.extend_from_slice(&(value.as_ref().len() as u32).to_le_bytes());
        }
        for (name, value) in entries {
            out.extend_from_slice(name.as_ref());
            out.push(0);
            out.extend_from_slice(value.as_ref());
            out.push(0);
        }
        out
    }

    /// The entries in order.
    pub fn iter(&self) -> Entries<'a> {
        Entries::new(self.bytes)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        Entries::new(self.bytes).next_named(name.as_bytes())
    }

    /// Every value of `name`, in order.
    pub fn values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        let mut entries = Entries::new(self.bytes);
        std::iter::from_fn(move || entries.next_named(name.as_bytes()))
    }
}

/// The entries of a [`HeaderPairs`], in order, up to the first that does
/// not fit in the buffer.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    index: usize,
    count: usize,
    /// Where the next entry's name starts.
    data: usize,
}

impl<'a> Entries<'a> {
    fn new(bytes: &'a [u8]) -> Entries<'a> {
        let count = read_u32(bytes, 0).unwrap_or(0) as usize;
        Entries {
            bytes,
            index: 0,
            count,
            data: 4usize.saturating_add(count.saturating_mul(8)),
        }
    }

    /// The next entry's name start and lengths, moving past it.
    #[inline(always)]
    fn advance(&mut self) -> Option<(usize, usize, usize)> {
        if self.index >= self.count {
            return None;
        }
        let at = 4 + self.index * 8;
        let name_len = read_u32(self.bytes, at)? as usize;
        let value_len = read_u32(self.bytes, at + 4)? as usize;
        let start = self.data;
        self.data = start
            .checked_add(name_len)?
            .checked_add(value_len)?
            .checked_add(2)?;
        self.index += 1;
        Some((start, name_len, value_len))
    }

    /// The value of the next entry named `name`. Lengths are compared
    /// first: most names are not even the length looked for. (An entry that
    /// does not fit ends the map for every later one too: offsets only
    /// grow.)
    pub fn next_named(&mut self, name: &[u8]) -> Option<&'a [u8]> {
        loop {
            let (start, name_len, value_len) = self.advance()?;
            if name_len == name.len() && self.bytes.get(start..start + name_len)? == name {
                let value = start + name_len + 1;
                return self.bytes.get(value..value.checked_add(value_len)?);
            }
        }
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (start, name_len, value_len) = self.advance()?;
        let name = self.bytes.get(start..start.checked_add(name_len)?)?;
        let value = start + name_len + 1;
        let value = self.bytes.get(value..value.checked_add(value_len)?)?;
        Some((name, value))
    }
}

#[inline(always)]
fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
}
