//! The `%...%` value language: Envoy's substitution formatter as far as a
//! Wasm filter can compute it, parsed once at configure time.
//!
//! Parsing happens only in [`Format::parse`]; the per-request side only walks
//! the parsed segments. Nothing here talks to the host: reads go through
//! [`Reader`]. Which operators exist and what the filter does with each is
//! the table in [`operators`]; an operator the filter cannot compute, or one
//! that never has a value on the side it is written to, is refused at parse
//! time rather than rendered empty.

mod flags;
mod metadata;
pub mod operators;
mod time;

use std::fmt;

use operators::Support;

pub use crate::host::{Reader, Side};
/// Proxy-wasm attribute paths, serialized the way the ABI takes them
/// (segments joined by NUL), so the hot path never builds them. Names and
/// types: Envoy's `source/extensions/filters/common/expr/context.{h,cc}`.
pub mod attribute {
    pub const SOURCE_ADDRESS: &[u8] = b"source\0address";
    /// int64.
    pub const SOURCE_PORT: &[u8] = b"source\0port";
    pub const DESTINATION_ADDRESS: &[u8] = b"destination\0address";
    /// int64.
    pub const DESTINATION_PORT: &[u8] = b"destination\0port";
    pub const REQUEST_PROTOCOL: &[u8] = b"request\0protocol";
    /// timestamp: int64 nanoseconds since the epoch.
    pub const REQUEST_TIME: &[u8] = b"request\0time";
    /// int64.
    pub const RESPONSE_CODE: &[u8] = b"response\0code";
    pub const RESPONSE_CODE_DETAILS: &[u8] = b"response\0code_details";
    /// int64 bitmask (`legacyResponseFlags`).
    pub const RESPONSE_FLAGS: &[u8] = b"response\0flags";
    pub const UPSTREAM_ADDRESS: &[u8] = b"upstream\0address";
    /// int64.
    pub const UPSTREAM_PORT: &[u8] = b"upstream\0port";
    pub const UPSTREAM_LOCAL_ADDRESS: &[u8] = b"upstream\0local_address";
    pub const UPSTREAM_TRANSPORT_FAILURE_REASON: &[u8] = b"upstream\0transport_failure_reason";
    /// uint64.
    pub const UPSTREAM_REQUEST_ATTEMPT_COUNT: &[u8] = b"upstream\0request_attempt_count";
    /// uint64.
    pub const CONNECTION_ID: &[u8] = b"connection\0id";
    pub const CONNECTION_TERMINATION_DETAILS: &[u8] = b"connection\0termination_details";
    pub const REQUESTED_SERVER_NAME: &[u8] = b"connection\0requested_server_name";
    pub const TLS_VERSION: &[u8] = b"connection\0tls_version";
    pub const SUBJECT_PEER: &[u8] = b"connection\0subject_peer_certificate";
    pub const SUBJECT_LOCAL: &[u8] = b"connection\0subject_local_certificate";
    pub const URI_SAN_PEER: &[u8] = b"connection\0uri_san_peer_certificate";
    pub const URI_SAN_LOCAL: &[u8] = b"connection\0uri_san_local_certificate";
    pub const DNS_SAN_PEER: &[u8] = b"connection\0dns_san_peer_certificate";
    pub const DNS_SAN_LOCAL: &[u8] = b"connection\0dns_san_local_certificate";
    pub const SHA256_PEER_DIGEST: &[u8] = b"connection\0sha256_peer_certificate_digest";
    pub const CLUSTER_NAME: &[u8] = b"xds\0cluster_name";
    pub const ROUTE_NAME: &[u8] = b"xds\0route_name";
    pub const FILTER_CHAIN_NAME: &[u8] = b"xds\0filter_chain_name";
    /// Serialized `envoy.config.core.v3.Metadata`.
    pub const DYNAMIC_METADATA: &[u8] = b"metadata";
    pub const CLUSTER_METADATA: &[u8] = b"xds\0cluster_metadata";
    pub const UPSTREAM_HOST_METADATA: &[u8] = b"xds\0upstream_host_metadata";
    /// Followed by NUL and the key.
    pub const FILTER_STATE: &[u8] = b"filter_state";
}

/// One command of the language.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// `%REQ(name?alt):max%`, `%RESP(name?alt):max%`: a header of the
    /// request or the response, the first value, cut to `max` bytes.
    Header {
        of: Side,
        name: String,
        alternative: Option<String>,
        max_len: Option<usize>,
    },
    /// One attribute read, rendered as the operator renders it. `text` is
    /// the command as written, for re-serialization.
    Attribute {
        text: Box<str>,
        path: Box<[u8]>,
        render: Render,
        max_len: Option<usize>,
    },
    /// Known at configure time (`%ENVIRONMENT(NAME)%`).
    Constant { text: Box<str>, value: Box<str> },
}

/// How an attribute's bytes become the header value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Render {
    /// A string as is.
    Text,
    /// A string with spaces (`all_whitespace`: every whitespace byte)
    /// replaced by `_`, as Envoy does for details and failure reasons.
    Underscored { all_whitespace: bool },
    /// An `ip:port` string, whole or in part.
    Address(AddressPart),
    /// An 8-byte little-endian integer in decimal; `zero`: `0` when absent
    /// (Envoy's `value_or(0)`).
    Int { signed: bool, zero: bool },
    /// A timestamp (int64 nanoseconds) through a time format.
    Time(time::TimeFormat),
    /// The response-flag bitmask as Envoy's short or long names.
    Flags { long: bool },
    /// A value inside serialized Metadata.
    Metadata {
        namespace: Box<str>,
        path: Vec<Box<str>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressPart {
    Whole,
    Host,
    Port,
}

/// A piece of a parsed value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Literal(String),
    Command(Command),
}

/// A parsed value: literals and commands in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Format {
    segments: Vec<Segment>,
}

/// Why a value could not be parsed; the position is a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    Unterminated {
        at: usize,
    },
    Unknown {
        at: usize,
        command: String,
    },
    BadArgument {
        at: usize,
        command: String,
        reason: String,
    },
    /// Envoy has the operator, the filter cannot render it (there).
    Refused {
        at: usize,
        command: String,
        reason: String,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Unterminated { at } => write!(
                f,
                "unterminated formatter at byte {at} (write %% for a literal percent)"
            ),
            FormatError::Unknown { at, command } => write!(
                f,
                "unknown formatter %{command}% at byte {at}: Envoy has no such operator (supported: {})",
                operators::supported().collect::<Vec<_>>().join(", ")
            ),
            FormatError::BadArgument {
                at,
                command,
                reason,
            }
            | FormatError::Refused {
                at,
                command,
                reason,
            } => write!(f, "formatter %{command}% at byte {at}: {reason}"),
        }
    }
}

impl Format {
    /// Parses a header value written on `side`. `%%` is a literal `%`;
    /// every other `%` opens a command that must be closed by the next `%`.
    pub fn parse(input: &str, side: Side) -> Result<Format, FormatError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = input;
        let mut offset = 0;
        while let Some(start) = rest.find('%') {
            literal.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            if let Some(stripped) = after.strip_prefix('%') {
                literal.push('%');
                offset += start + 2;
                rest = stripped;
                continue;
            }
            let at = offset + start;
            let end = find_command_end(after).ok_or(FormatError::Unterminated { at })?;
            let command = parse_command(&after[..end], at, side)?;
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Command(command));
            offset += start + 1 + end + 1;
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Format { segments })
    }

    /// A value taken as is, with no commands (Maistra's flat form).
    pub fn literal(text: &str) -> Format {
        let segments = if text.is_empty() {
            Vec::new()
        } else {
            vec![Segment::Literal(text.to_string())]
        };
        Format { segments }
    }

    /// The value when it has no command: it can be written as is.
    pub fn as_constant(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [] => Some(""),
            [Segment::Literal(text)] => Some(text),
            [Segment::Command(Command::Constant { value, .. })] => Some(value),
            _ => None,
        }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether any command reads the header map of `side` (which the
    /// filter's own writes on that side could change).
    pub fn reads_headers_of(&self, side: Side) -> bool {
        self.header_names(side).next().is_some()
    }

    /// The attribute paths the value reads, one per command.
    pub fn attribute_paths(&self) -> impl Iterator<Item = &[u8]> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Command(Command::Attribute { path, .. }) => Some(&path[..]),
            _ => None,
        })
    }

    /// The headers of `side` the value reads, alternatives included.
    pub fn header_names(&self, side: Side) -> impl Iterator<Item = &str> {
        self.segments
            .iter()
            .flat_map(move |segment| match segment {
                Segment::Command(Command::Header {
                    of,
                    name,
                    alternative,
                    ..
                }) if *of == side => [Some(name.as_str()), alternative.as_deref()],
                _ => [None, None],
            })
            .flatten()
    }

    /// Renders the value through `read`, which answers header and attribute
    /// look-ups. Commands that see nothing render as nothing, as in Envoy's
    /// header formatter, so a value made only of such commands is empty.
    pub fn render<R: Reader + ?Sized>(&self, side: Side, read: &R) -> Vec<u8> {
        // A value that is exactly one command keeps the host's buffer,
        // rewritten in place: no second allocation.
        if let [Segment::Command(command)] = self.segments.as_slice() {
            return render_command(command, side, read).unwrap_or_default();
        }
        let mut out = Vec::with_capacity(self.literal_len() + 32);
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Segment::Command(Command::Constant { value, .. }) => {
                    out.extend_from_slice(value.as_bytes())
                }
                Segment::Command(command) => {
                    if let Some(value) = render_command(command, side, read) {
                        out.extend_from_slice(&value);
                    }
                }
            }
        }
        out
    }

    fn literal_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => text.len(),
                Segment::Command(_) => 0,
            })
            .sum()
    }
}

impl fmt::Display for Format {
    /// Writes the value back in the language, so a plan can be re-serialized.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => f.write_str(&text.replace('%', "%%"))?,
                Segment::Command(command) => write!(f, "%{command}%")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Header {
                of,
                name,
                alternative,
                max_len,
            } => {
                f.write_str(match of {
                    Side::Request => "REQ(",
                    Side::Response => "RESP(",
                })?;
                f.write_str(name)?;
                if let Some(alternative) = alternative {
                    write!(f, "?{alternative}")?;
                }
                f.write_str(")")?;
                if let Some(max_len) = max_len {
                    write!(f, ":{max_len}")?;
                }
                Ok(())
            }
            Command::Attribute { text, .. } | Command::Constant { text, .. } => f.write_str(text),
        }
    }
}

fn render_command<R: Reader + ?Sized>(command: &Command, side: Side, read: &R) -> Option<Vec<u8>> {
    match command {
        Command::Header {
            of,
            name,
            alternative,
            max_len,
        } => {
            // Refused at parse time on the request side; a plan applied to
            // the wrong side still renders nothing.
            if *of == Side::Response && side == Side::Request {
                return None;
            }
            let mut value = read.formatter_header(*of, name).or_else(|| {
                alternative
                    .as_deref()
                    .and_then(|alt| read.formatter_header(*of, alt))
            })?;
            truncate(&mut value, *max_len);
            Some(value)
        }
        Command::Constant { value, .. } => Some(value.as_bytes().to_vec()),
        Command::Attribute {
            text,
            path,
            render,
            max_len,
        } => {
            if let Some(marker) = read.not_computed(text, path) {
                return Some(marker);
            }
            let mut value = match (read.property(path), render) {
                (Some(value), _) => value,
                (None, Render::Int { zero: true, .. }) => Vec::new(),
                (None, Render::Flags { .. }) => Vec::new(),
                (None, _) => return None,
            };
            render_attribute(render, &mut value)?;
            truncate(&mut value, *max_len);
            Some(value)
        }
    }
}

fn truncate(value: &mut Vec<u8>, max_len: Option<usize>) {
    if let Some(max_len) = max_len {
        value.truncate(max_len);
    }
}

/// Rewrites the attribute bytes in `value` into the rendered text; `None`
/// for a value that renders as nothing.
fn render_attribute(render: &Render, value: &mut Vec<u8>) -> Option<()> {
    match render {
        Render::Text => {}
        Render::Underscored { all_whitespace } => {
            for b in value.iter_mut() {
                let space = match all_whitespace {
                    true => matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'),
                    false => *b == b' ',
                };
                if space {
                    *b = b'_';
                }
            }
        }
        Render::Address(part) => {
            let host_len = host_part_len(value);
            match part {
                AddressPart::Whole => {}
                // `[::1]:80` renders as `::1`, as Envoy does.
                AddressPart::Host if value.first() == Some(&b'[') && host_len >= 2 => {
                    value.truncate(host_len - 1);
                    value.remove(0);
                }
                AddressPart::Host => value.truncate(host_len),
                AddressPart::Port => {
                    if host_len == value.len() {
                        return None;
                    }
                    value.drain(..=host_len);
                }
            }
        }
        Render::Int { signed, .. } => {
            let number = match value.as_slice() {
                [] => 0,
                bytes => u64::from_le_bytes(bytes.try_into().ok()?),
            };
            // Digits go through a stack buffer: the host's 8 bytes grow
            // (once) only for numbers longer than that.
            value.clear();
            if *signed {
                time::push_int(value, number as i64);
            } else {
                time::push_uint(value, number);
            }
        }
        Render::Time(format) => {
            let nanos = i64::from_le_bytes(value.as_slice().try_into().ok()?);
            value.clear();
            reserve(value, 64);
            format.render(nanos, value);
        }
        Render::Flags { long } => {
            let mask = match value.as_slice() {
                [] => 0,
                bytes => u64::from_le_bytes(bytes.try_into().ok()?),
            };
            value.clear();
            flags::render(mask, *long, value);
        }
        Render::Metadata { namespace, path } => {
            let mut out = Vec::new();
            if !metadata::render(value, namespace, path, &mut out) {
                return None;
            }
            *value = out;
        }
    }
    // Envoy's string formatters give no value for an empty string.
    (!value.is_empty()).then_some(())
}

/// Makes room for `len` bytes in one allocation when the buffer is short.
fn reserve(value: &mut Vec<u8>, len: usize) {
    if value.capacity() < len {
        value.reserve_exact(len);
    }
}

/// Length of the host in `host:port` or `[v6]:port`; the whole value if it
/// has no port (a pipe path, say).
fn host_part_len(address: &[u8]) -> usize {
    if address.first() == Some(&b'[') {
        if let Some(close) = address.iter().position(|&b| b == b']') {
            return close + 1;
        }
        return address.len();
    }
    match address.iter().rposition(|&b| b == b':') {
        Some(colon) if address[..colon].iter().all(|&b| b != b':') => colon,
        _ => address.len(),
    }
}

/// Finds the `%` that closes a command. An argument list is skipped to its
/// `)` first, since `%` is a token character and may sit in a header name
/// (and is the specifier mark of a time format).
fn find_command_end(after: &str) -> Option<usize> {
    let bytes = after.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => return Some(i),
            b'(' => {
                let close = after[i..].find(')')?;
                i += close + 1;
            }
            b' ' | b'\t' => return None,
            _ => i += 1,
        }
    }
    None
}

/// `NAME`, `NAME(args)`, `NAME:len`, `NAME(args):len`.
struct Parts<'a> {
    name: &'a str,
    args: Option<&'a str>,
    max_len: Option<usize>,
}

fn split_command(text: &str) -> Result<Parts<'_>, &'static str> {
    let (name, args, tail) = match text.find('(') {
        Some(open) => {
            let close = text.rfind(')').ok_or("missing )")?;
            if close < open {
                return Err("missing )");
            }
            (
                &text[..open],
                Some(&text[open + 1..close]),
                &text[close + 1..],
            )
        }
        None => match text.find(':') {
            Some(colon) => (&text[..colon], None, &text[colon..]),
            None => (text, None, ""),
        },
    };
    let max_len = if tail.is_empty() {
        None
    } else {
        let digits = tail
            .strip_prefix(':')
            .ok_or("expected :LENGTH after the arguments")?;
        Some(
            digits
                .parse::<usize>()
                .map_err(|_| "LENGTH must be a non-negative integer")?,
        )
    };
    Ok(Parts {
        name,
        args,
        max_len,
    })
}

fn parse_command(text: &str, at: usize, side: Side) -> Result<Command, FormatError> {
    let bad = |reason: &str| FormatError::BadArgument {
        at,
        command: text.to_string(),
        reason: reason.to_string(),
    };
    let parts = split_command(text).map_err(bad)?;
    let Some(operator) = operators::find(parts.name) else {
        return Err(FormatError::Unknown {
            at,
            command: text.to_string(),
        });
    };
    match (operator.support, side) {
        (Support::Refused(why), _) => {
            return Err(FormatError::Refused {
                at,
                command: text.to_string(),
                reason: format!("not available to a Wasm filter ({why})"),
            })
        }
        (Support::Response(_), Side::Request) => {
            return Err(FormatError::Refused {
                at,
                command: text.to_string(),
                reason: "empty on the request side (Envoy has no value for it before the response; use it in a response header)".to_string(),
            })
        }
        _ => {}
    }
    build_command(text, &parts).map_err(|reason| bad(&reason))
}

fn build_command(text: &str, parts: &Parts<'_>) -> Result<Command, String> {
    use attribute as a;
    let Parts {
        name,
        args,
        max_len,
    } = *parts;
    let takes_length = matches!(
        name,
        "REQ"
            | "RESP"
            | "REQUEST_HEADER"
            | "RESPONSE_HEADER"
            | "DYNAMIC_METADATA"
            | "FILTER_STATE"
            | "ENVIRONMENT"
    );
    if max_len.is_some() && !takes_length {
        return Err(format!("{name} does not take a :LENGTH"));
    }
    let params_optional = matches!(
        name,
        "START_TIME" | "RESPONSE_CODE_DETAILS" | "FILTER_STATE"
    );
    let params_required = matches!(
        name,
        "REQ"
            | "RESP"
            | "REQUEST_HEADER"
            | "RESPONSE_HEADER"
            | "DYNAMIC_METADATA"
            | "CLUSTER_METADATA"
            | "UPSTREAM_METADATA"
            | "ENVIRONMENT"
            | "FILTER_STATE"
    );
    match args {
        None | Some("") if params_required => return Err(format!("{name} needs an argument")),
        Some(_) if !params_required && !params_optional => {
            return Err(format!("{name} takes no argument"))
        }
        _ => {}
    }
    let args = args.unwrap_or("");
    let attribute = |path: &[u8], render: Render| {
        Ok(Command::Attribute {
            text: text.into(),
            path: path.into(),
            render,
            max_len,
        })
    };
    let text_of = |path: &[u8]| attribute(path, Render::Text);
    let address = |path: &[u8], part| attribute(path, Render::Address(part));
    let int = |path: &[u8], signed, zero| attribute(path, Render::Int { signed, zero });
    match name {
        "REQ" | "REQUEST_HEADER" => header_command(Side::Request, args, max_len),
        "RESP" | "RESPONSE_HEADER" => header_command(Side::Response, args, max_len),
        "DOWNSTREAM_REMOTE_ADDRESS" => address(a::SOURCE_ADDRESS, AddressPart::Whole),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => address(a::SOURCE_ADDRESS, AddressPart::Host),
        "DOWNSTREAM_REMOTE_PORT" => int(a::SOURCE_PORT, true, false),
        "DOWNSTREAM_LOCAL_ADDRESS" => address(a::DESTINATION_ADDRESS, AddressPart::Whole),
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
            address(a::DESTINATION_ADDRESS, AddressPart::Host)
        }
        "DOWNSTREAM_LOCAL_PORT" => int(a::DESTINATION_PORT, true, false),
        "PROTOCOL" => text_of(a::REQUEST_PROTOCOL),
        "UPSTREAM_HOST" | "UPSTREAM_REMOTE_ADDRESS" => {
            address(a::UPSTREAM_ADDRESS, AddressPart::Whole)
        }
        "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => address(a::UPSTREAM_ADDRESS, AddressPart::Host),
        "UPSTREAM_REMOTE_PORT" => int(a::UPSTREAM_PORT, true, false),
        "UPSTREAM_LOCAL_ADDRESS" => address(a::UPSTREAM_LOCAL_ADDRESS, AddressPart::Whole),
        "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
            address(a::UPSTREAM_LOCAL_ADDRESS, AddressPart::Host)
        }
        "UPSTREAM_LOCAL_PORT" => address(a::UPSTREAM_LOCAL_ADDRESS, AddressPart::Port),
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => attribute(
            a::UPSTREAM_TRANSPORT_FAILURE_REASON,
            Render::Underscored {
                all_whitespace: false,
            },
        ),
        "UPSTREAM_REQUEST_ATTEMPT_COUNT" => int(a::UPSTREAM_REQUEST_ATTEMPT_COUNT, false, true),
        "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => text_of(a::CLUSTER_NAME),
        "ROUTE_NAME" => text_of(a::ROUTE_NAME),
        "FILTER_CHAIN_NAME" => text_of(a::FILTER_CHAIN_NAME),
        "CONNECTION_ID" => int(a::CONNECTION_ID, false, true),
        "CONNECTION_TERMINATION_DETAILS" => text_of(a::CONNECTION_TERMINATION_DETAILS),
        "REQUESTED_SERVER_NAME" => text_of(a::REQUESTED_SERVER_NAME),
        "DOWNSTREAM_TLS_VERSION" => text_of(a::TLS_VERSION),
        "DOWNSTREAM_PEER_SUBJECT" => text_of(a::SUBJECT_PEER),
        "DOWNSTREAM_LOCAL_SUBJECT" => text_of(a::SUBJECT_LOCAL),
        "DOWNSTREAM_PEER_URI_SAN" => text_of(a::URI_SAN_PEER),
        "DOWNSTREAM_LOCAL_URI_SAN" => text_of(a::URI_SAN_LOCAL),
        "DOWNSTREAM_PEER_DNS_SAN" => text_of(a::DNS_SAN_PEER),
        "DOWNSTREAM_LOCAL_DNS_SAN" => text_of(a::DNS_SAN_LOCAL),
        "DOWNSTREAM_PEER_FINGERPRINT_256" => text_of(a::SHA256_PEER_DIGEST),
        "RESPONSE_CODE" => int(a::RESPONSE_CODE, true, true),
        "RESPONSE_CODE_DETAILS" => match args {
            "" => attribute(
                a::RESPONSE_CODE_DETAILS,
                Render::Underscored {
                    all_whitespace: true,
                },
            ),
            "ALLOW_WHITESPACES" => text_of(a::RESPONSE_CODE_DETAILS),
            // Envoy takes any other argument as "no".
            _ => attribute(
                a::RESPONSE_CODE_DETAILS,
                Render::Underscored {
                    all_whitespace: true,
                },
            ),
        },
        "RESPONSE_FLAGS" => attribute(a::RESPONSE_FLAGS, Render::Flags { long: false }),
        "RESPONSE_FLAGS_LONG" => attribute(a::RESPONSE_FLAGS, Render::Flags { long: true }),
        "START_TIME" => {
            let format = if args.is_empty() { time::DEFAULT } else { args };
            attribute(
                a::REQUEST_TIME,
                Render::Time(time::TimeFormat::parse(format)?),
            )
        }
        "DYNAMIC_METADATA" => metadata_command(a::DYNAMIC_METADATA, args, &attribute),
        "CLUSTER_METADATA" => metadata_command(a::CLUSTER_METADATA, args, &attribute),
        "UPSTREAM_METADATA" => metadata_command(a::UPSTREAM_HOST_METADATA, args, &attribute),
        "FILTER_STATE" => {
            let (key, serialize) = args.split_once(':').unwrap_or((args, ""));
            if key.is_empty() {
                return Err("FILTER_STATE needs a key".into());
            }
            if serialize != "PLAIN" {
                return Err(format!(
                    "only :PLAIN is available to a Wasm filter (FILTER_STATE({key}:PLAIN)); Envoy's TYPED and FIELD forms need the object itself"
                ));
            }
            let path = [a::FILTER_STATE, b"\0", key.as_bytes()].concat();
            attribute(&path, Render::Text)
        }
        "ENVIRONMENT" => {
            // Envoy writes `-` for a variable it does not have.
            let mut value = std::env::var(args).unwrap_or_else(|_| "-".to_string());
            if let Some(max_len) = max_len {
                let mut cut = max_len.min(value.len());
                while !value.is_char_boundary(cut) {
                    cut -= 1;
                }
                value.truncate(cut);
            }
            Ok(Command::Constant {
                text: text.into(),
                value: value.into(),
            })
        }
        _ => Err(format!("{name} is listed as supported but has no renderer")),
    }
}

fn header_command(of: Side, args: &str, max_len: Option<usize>) -> Result<Command, String> {
    let (main, alternative) = match args.split_once('?') {
        Some((main, alt)) => (main, Some(alt)),
        None => (args, None),
    };
    let name = header_argument(main).ok_or("header name is not a valid token")?;
    let alternative = match alternative {
        Some(alt) => {
            Some(header_argument(alt).ok_or("alternative header name is not a valid token")?)
        }
        None => None,
    };
    Ok(Command::Header {
        of,
        name,
        alternative,
        max_len,
    })
}

/// Builds an attribute command from a path and a rendering.
type MakeAttribute<'a> = dyn Fn(&[u8], Render) -> Result<Command, String> + 'a;

fn metadata_command(
    path: &[u8],
    args: &str,
    attribute: &MakeAttribute<'_>,
) -> Result<Command, String> {
    let mut keys = args.split(':');
    let namespace = keys.next().unwrap_or_default();
    if namespace.is_empty() {
        return Err("the metadata namespace is empty".into());
    }
    attribute(
        path,
        Render::Metadata {
            namespace: namespace.into(),
            path: keys.map(Into::into).collect(),
        },
    )
}

/// A header name as a command argument: a token, or a pseudo-header
/// (`:authority`), lower-cased as Envoy does.
fn header_argument(name: &str) -> Option<String> {
    let token = name.strip_prefix(':').unwrap_or(name);
    if crate::headers::is_token(token) {
        Some(name.to_ascii_lowercase())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Fake {
        request: HashMap<&'static str, &'static str>,
        response: HashMap<&'static str, &'static str>,
        attributes: HashMap<Vec<u8>, Vec<u8>>,
    }

    impl Reader for Fake {
        fn header(&self, of: Side, name: &str) -> Option<Vec<u8>> {
            let map = match of {
                Side::Request => &self.request,
                Side::Response => &self.response,
            };
            map.get(name).map(|v| v.as_bytes().to_vec())
        }
        fn property(&self, path: &[u8]) -> Option<Vec<u8>> {
            self.attributes.get(path).cloned()
        }
    }

    impl Fake {
        fn set(&mut self, path: &[u8], value: impl AsRef<[u8]>) {
            self.attributes
                .insert(path.to_vec(), value.as_ref().to_vec());
        }
        fn set_int(&mut self, path: &[u8], value: i64) {
            self.set(path, value.to_le_bytes());
        }
    }

    fn fake() -> Fake {
        use attribute as a;
        let mut f = Fake::default();
        f.request.insert("x-a", "alpha");
        f.request.insert(":authority", "example.com");
        f.response.insert("x-r", "resp");
        f.set(a::SOURCE_ADDRESS, "10.1.2.3:4567");
        f.set_int(a::SOURCE_PORT, 4567);
        f.set(a::DESTINATION_ADDRESS, "[::1]:10000");
        f.set_int(a::DESTINATION_PORT, 10000);
        f.set(a::REQUEST_PROTOCOL, "HTTP/1.1");
        f.set(a::UPSTREAM_ADDRESS, "127.0.0.1:8080");
        f.set_int(a::UPSTREAM_PORT, 8080);
        f.set(a::UPSTREAM_LOCAL_ADDRESS, "127.0.0.1:39000");
        // 2024-02-29T13:04:05.123456789Z
        f.set_int(a::REQUEST_TIME, 1_709_211_845_123_456_789);
        f.set_int(a::RESPONSE_CODE, 503);
        f.set(
            a::RESPONSE_CODE_DETAILS,
            "upstream_reset_before_response_started{connection failure}",
        );
        f.set_int(a::RESPONSE_FLAGS, 1 << 5 | 1 << 15);
        f.set(a::CONNECTION_ID, 7u64.to_le_bytes());
        f.set(a::UPSTREAM_REQUEST_ATTEMPT_COUNT, 2u64.to_le_bytes());
        f.set(a::CLUSTER_NAME, "echo");
        f.set(a::ROUTE_NAME, "");
        f.set(a::TLS_VERSION, "TLSv1.3");
        f.set(a::URI_SAN_PEER, "spiffe://a/first");
        f.set(
            a::UPSTREAM_TRANSPORT_FAILURE_REASON,
            "delayed connect error: 111",
        );
        f.set(
            &[attribute::FILTER_STATE, b"\0my.key"].concat(),
            "plain value",
        );
        f.set(
            a::DYNAMIC_METADATA,
            metadata::tests::metadata("ns", &[("k", metadata::tests::string_value("meta"))]),
        );
        f
    }

    fn render(input: &str, side: Side) -> String {
        let format = Format::parse(input, side).unwrap();
        String::from_utf8(format.render(side, &fake())).unwrap()
    }

    fn refusal(input: &str, side: Side) -> String {
        Format::parse(input, side).unwrap_err().to_string()
    }

    #[test]
    fn literal_without_commands_is_constant() {
        let f = Format::parse("plain value", Side::Request).unwrap();
        assert_eq!(f.as_constant(), Some("plain value"));
    }

    #[test]
    fn double_percent_is_a_literal_percent() {
        let f = Format::parse("100%% sure %%", Side::Request).unwrap();
        assert_eq!(f.as_constant(), Some("100% sure %"));
        assert_eq!(f.to_string(), "100%% sure %%");
    }

    #[test]
    fn req_renders_the_request_header() {
        assert_eq!(render("v=%REQ(X-A)%;", Side::Request), "v=alpha;");
        assert_eq!(render("%REQ(:authority)%", Side::Response), "example.com");
        assert_eq!(render("%REQUEST_HEADER(x-a):3%", Side::Request), "alp");
    }

    #[test]
    fn req_of_an_absent_header_renders_nothing() {
        assert_eq!(render("%REQ(x-missing)%", Side::Request), "");
        assert_eq!(render("a%REQ(x-missing)%b", Side::Request), "ab");
    }

    #[test]
    fn req_alternative_and_max_length() {
        assert_eq!(render("%REQ(x-missing?x-a)%", Side::Request), "alpha");
        assert_eq!(render("%REQ(x-a):3%", Side::Request), "alp");
        assert_eq!(render("%REQ(x-a?x-b):0%", Side::Request), "");
    }

    #[test]
    fn resp_renders_on_the_response_side_and_is_refused_on_the_request_side() {
        assert_eq!(render("%RESP(x-r)%", Side::Response), "resp");
        assert_eq!(render("%RESPONSE_HEADER(x-r)%", Side::Response), "resp");
        assert!(refusal("%RESP(x-r)%", Side::Request).ends_with(
            "formatter %RESP(x-r)% at byte 0: empty on the request side (Envoy has no value for it before the response; use it in a response header)"
        ));
    }

    #[test]
    fn addresses_ports_and_protocol() {
        let side = Side::Response;
        assert_eq!(render("%DOWNSTREAM_REMOTE_ADDRESS%", side), "10.1.2.3:4567");
        assert_eq!(
            render("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", side),
            "10.1.2.3"
        );
        assert_eq!(render("%DOWNSTREAM_REMOTE_PORT%", side), "4567");
        assert_eq!(render("%DOWNSTREAM_LOCAL_ADDRESS%", side), "[::1]:10000");
        assert_eq!(
            render("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", side),
            "::1"
        );
        assert_eq!(render("%DOWNSTREAM_LOCAL_PORT%", side), "10000");
        assert_eq!(render("%PROTOCOL%", side), "HTTP/1.1");
        assert_eq!(render("%UPSTREAM_REMOTE_ADDRESS%", side), "127.0.0.1:8080");
        assert_eq!(render("%UPSTREAM_HOST%", side), "127.0.0.1:8080");
        assert_eq!(
            render("%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", side),
            "127.0.0.1"
        );
        assert_eq!(render("%UPSTREAM_REMOTE_PORT%", side), "8080");
        assert_eq!(render("%UPSTREAM_LOCAL_ADDRESS%", side), "127.0.0.1:39000");
        assert_eq!(
            render("%UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", side),
            "127.0.0.1"
        );
        assert_eq!(render("%UPSTREAM_LOCAL_PORT%", side), "39000");
    }

    #[test]
    fn upstream_operators_are_refused_on_the_request_side() {
        for op in [
            "UPSTREAM_REMOTE_ADDRESS",
            "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
            "UPSTREAM_HOST",
            "UPSTREAM_LOCAL_ADDRESS",
            "UPSTREAM_LOCAL_PORT",
            "RESPONSE_CODE",
            "RESPONSE_CODE_DETAILS",
        ] {
            assert!(
                refusal(&format!("%{op}%"), Side::Request).contains("empty on the request side"),
                "{op}"
            );
        }
    }

    #[test]
    fn integers_are_decoded_from_eight_little_endian_bytes() {
        assert_eq!(render("%RESPONSE_CODE%", Side::Response), "503");
        assert_eq!(render("%CONNECTION_ID%", Side::Request), "7");
        assert_eq!(
            render("%UPSTREAM_REQUEST_ATTEMPT_COUNT%", Side::Request),
            "2"
        );
        // Envoy's value_or(0): absent renders 0.
        let empty = Fake::default();
        let count = Format::parse("%UPSTREAM_REQUEST_ATTEMPT_COUNT%", Side::Request).unwrap();
        assert_eq!(count.render(Side::Request, &empty), b"0");
        // An absent port renders nothing; a malformed integer too.
        let port = Format::parse("%DOWNSTREAM_REMOTE_PORT%", Side::Request).unwrap();
        assert_eq!(port.render(Side::Request, &empty), b"");
        let mut short = Fake::default();
        short.set(attribute::SOURCE_PORT, [1, 2, 3]);
        assert_eq!(port.render(Side::Request, &short), b"");
    }

    #[test]
    fn start_time_formats() {
        assert_eq!(
            render("%START_TIME%", Side::Request),
            "2024-02-29T13:04:05.123Z"
        );
        assert_eq!(
            render("%START_TIME()%", Side::Request),
            "2024-02-29T13:04:05.123Z"
        );
        assert_eq!(
            render(
                "%START_TIME(%Y/%m/%d %H:%M:%S.%3f|%s|%f|%6f)%",
                Side::Response
            ),
            "2024/02/29 13:04:05.123|1709211845|123456789|123456"
        );
        assert!(refusal("%START_TIME(%c)%", Side::Request)
            .contains("time format \"%c\" is not supported"));
        assert!(refusal("%START_TIME(%s):3%", Side::Request).contains("does not take a :LENGTH"));
    }

    #[test]
    fn response_code_details_replace_whitespace_unless_allowed() {
        assert_eq!(
            render("%RESPONSE_CODE_DETAILS%", Side::Response),
            "upstream_reset_before_response_started{connection_failure}"
        );
        assert_eq!(
            render("%RESPONSE_CODE_DETAILS(ALLOW_WHITESPACES)%", Side::Response),
            "upstream_reset_before_response_started{connection failure}"
        );
        assert_eq!(
            render("%UPSTREAM_TRANSPORT_FAILURE_REASON%", Side::Response),
            "delayed_connect_error:_111"
        );
    }

    #[test]
    fn response_flags_short_and_long() {
        assert_eq!(render("%RESPONSE_FLAGS%", Side::Response), "UF,URX");
        assert_eq!(
            render("%RESPONSE_FLAGS_LONG%", Side::Request),
            "UpstreamConnectionFailure,UpstreamRetryLimitExceeded"
        );
        let none = Format::parse("%RESPONSE_FLAGS%", Side::Request).unwrap();
        assert_eq!(none.render(Side::Request, &Fake::default()), b"-");
    }

    #[test]
    fn strings_of_the_connection_and_xds() {
        assert_eq!(render("%UPSTREAM_CLUSTER%", Side::Request), "echo");
        assert_eq!(render("%UPSTREAM_CLUSTER_RAW%", Side::Request), "echo");
        assert_eq!(render("%DOWNSTREAM_TLS_VERSION%", Side::Request), "TLSv1.3");
        assert_eq!(
            render("%DOWNSTREAM_PEER_URI_SAN%", Side::Request),
            "spiffe://a/first"
        );
        // Empty strings and absent attributes render nothing.
        assert_eq!(render("[%ROUTE_NAME%]", Side::Request), "[]");
        assert_eq!(render("[%DOWNSTREAM_PEER_SUBJECT%]", Side::Request), "[]");
    }

    #[test]
    fn filter_state_plain_and_its_refused_forms() {
        assert_eq!(
            render("%FILTER_STATE(my.key:PLAIN)%", Side::Request),
            "plain value"
        );
        assert_eq!(
            render("%FILTER_STATE(my.key:PLAIN):5%", Side::Request),
            "plain"
        );
        assert_eq!(render("[%FILTER_STATE(other:PLAIN)%]", Side::Request), "[]");
        for typed in [
            "%FILTER_STATE(my.key)%",
            "%FILTER_STATE(my.key:TYPED)%",
            "%FILTER_STATE(k:FIELD:f)%",
        ] {
            assert!(
                refusal(typed, Side::Request).contains("only :PLAIN is available"),
                "{typed}"
            );
        }
    }

    #[test]
    fn dynamic_metadata_and_length() {
        assert_eq!(render("%DYNAMIC_METADATA(ns:k)%", Side::Request), "meta");
        assert_eq!(render("%DYNAMIC_METADATA(ns:k):2%", Side::Request), "me");
        assert_eq!(
            render("%DYNAMIC_METADATA(ns)%", Side::Request),
            r#"{"k":"meta"}"#
        );
        assert_eq!(render("[%DYNAMIC_METADATA(ns:none)%]", Side::Request), "[]");
        assert!(refusal("%DYNAMIC_METADATA()%", Side::Request).contains("needs an argument"));
        assert!(
            refusal("%CLUSTER_METADATA(a:b):3%", Side::Request).contains("does not take a :LENGTH")
        );
    }

    #[test]
    fn environment_is_read_once_at_configure_time() {
        let format = Format::parse("%ENVIRONMENT(CARGO_PKG_NAME)%", Side::Request);
        // The test binary has no such variable at run time unless cargo
        // set it: either way Envoy's rule applies, `-` for absent.
        let expected = std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "-".into());
        assert_eq!(
            format.clone().unwrap().as_constant(),
            Some(expected.as_str())
        );
        let absent =
            Format::parse("%ENVIRONMENT(HEADER_FILTER_UNSET_VARIABLE)%", Side::Request).unwrap();
        assert_eq!(absent.as_constant(), Some("-"));
        assert_eq!(
            absent.to_string(),
            "%ENVIRONMENT(HEADER_FILTER_UNSET_VARIABLE)%"
        );
        let path = Format::parse("%ENVIRONMENT(PATH):1%", Side::Request).unwrap();
        assert_eq!(path.as_constant().map(str::len), Some(1));
    }

    #[test]
    fn operators_a_wasm_filter_cannot_compute_are_refused() {
        for (input, reason) in [
            ("%HOSTNAME%", "the VM cannot read the host name"),
            ("%BYTES_RECEIVED%", "a duration or byte count"),
            (
                "%DOWNSTREAM_TLS_CIPHER%",
                "no proxy-wasm attribute carries this TLS field",
            ),
            ("%START_TIME_LOCAL%", "local time zone"),
            ("%CEL(request.path)%", "no CEL evaluator"),
            ("%TRAILER(x)%", "trailers do not exist yet"),
        ] {
            let message = refusal(&format!("x {input}"), Side::Response);
            assert!(
                message.contains(&format!(
                    "formatter {input} at byte 2: not available to a Wasm filter ("
                )),
                "{message}"
            );
            assert!(message.contains(reason), "{message}");
        }
    }

    #[test]
    fn every_supported_operator_parses_on_its_sides() {
        for op in operators::OPERATORS {
            let sides: &[Side] = match op.support {
                Support::Both(_) => &[Side::Request, Side::Response],
                Support::Response(_) => &[Side::Response],
                Support::Refused(_) => &[],
            };
            let args = match op.name {
                "REQ" | "RESP" | "REQUEST_HEADER" | "RESPONSE_HEADER" => "(x-a)",
                "DYNAMIC_METADATA" | "CLUSTER_METADATA" | "UPSTREAM_METADATA" => "(ns:k)",
                "FILTER_STATE" => "(my.key:PLAIN)",
                "ENVIRONMENT" => "(HOME)",
                _ => "",
            };
            for side in sides {
                let text = format!("%{}{args}%", op.name);
                let format = Format::parse(&text, *side)
                    .unwrap_or_else(|e| panic!("{text} on {side:?}: {e}"));
                let again = Format::parse(&format.to_string(), *side).unwrap();
                assert_eq!(again, format, "{text} re-serializes");
                let _ = format.render(*side, &fake());
            }
        }
    }

    #[test]
    fn unknown_command_is_an_error() {
        let err = Format::parse("x %NOT_AN_OPERATOR% y", Side::Request).unwrap_err();
        assert_eq!(
            err,
            FormatError::Unknown {
                at: 2,
                command: "NOT_AN_OPERATOR".into()
            }
        );
        assert!(err
            .to_string()
            .starts_with("unknown formatter %NOT_AN_OPERATOR% at byte 2: Envoy has no such operator (supported: CLUSTER_METADATA, "));
    }

    #[test]
    fn unterminated_command_is_an_error() {
        assert_eq!(
            Format::parse("50% off", Side::Request).unwrap_err(),
            FormatError::Unterminated { at: 2 }
        );
        assert_eq!(
            Format::parse("%REQ(x-a)", Side::Request).unwrap_err(),
            FormatError::Unterminated { at: 0 }
        );
    }

    #[test]
    fn bad_arguments_are_errors() {
        for input in [
            "%REQ(bad name)%",
            "%REQ()%",
            "%REQ(x):abc%",
            "%REQ(x)abc%",
            "%REQ(a?)%",
            "%PROTOCOL_WITHOUT_PORT%",
            "%FOO(x)%",
            "%PROTOCOL(x)%",
            "%RESPONSE_FLAGS:3%",
        ] {
            assert!(
                Format::parse(input, Side::Response).is_err(),
                "{input} should be refused"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "a%REQ(x-a?x-b):5%b",
            "%%%RESP(x)%%%",
            "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% via %PROTOCOL%",
            "%START_TIME(%s.%3f)% %DYNAMIC_METADATA(a:b:c):4% %FILTER_STATE(k:PLAIN)%",
        ] {
            let parsed = Format::parse(input, Side::Response).unwrap();
            assert_eq!(
                Format::parse(&parsed.to_string(), Side::Response).unwrap(),
                parsed
            );
        }
    }

    #[test]
    fn host_part_of_addresses() {
        assert_eq!(host_part_len(b"1.2.3.4:80"), 7);
        assert_eq!(host_part_len(b"[::1]:80"), 5);
        assert_eq!(host_part_len(b"/tmp/sock"), 9);
        assert_eq!(host_part_len(b"::1"), 3);
    }
}
