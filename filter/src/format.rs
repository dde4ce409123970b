//! The `%...%` value language: the subset of Envoy's substitution formatter
//! that header values support here, parsed once at configure time.
//!
//! Parsing happens only in [`Format::parse`]; the per-request side only walks
//! the parsed segments. Nothing here talks to the host: reads go through
//! [`crate::plan::Host`].

use std::fmt;

/// Where a value is written, which decides what some commands can see:
/// response headers and the upstream address exist only on the response side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Request,
    Response,
}

/// Stream properties a formatter can read, as proxy-wasm property paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Property {
    /// `source.address`: the downstream peer, `ip:port`.
    DownstreamRemoteAddress,
    /// `destination.address`: the local address the request arrived on.
    DownstreamLocalAddress,
    /// `request.protocol`: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`.
    Protocol,
    /// `upstream.address`: the upstream host, `ip:port` (response side only).
    UpstreamRemoteAddress,
}

impl Property {
    /// The property path serialized the way the proxy-wasm ABI takes it
    /// (segments joined by NUL), so the hot path never builds it.
    pub fn path(self) -> &'static [u8] {
        match self {
            Property::DownstreamRemoteAddress => b"source\0address",
            Property::DownstreamLocalAddress => b"destination\0address",
            Property::Protocol => b"request\0protocol",
            Property::UpstreamRemoteAddress => b"upstream\0address",
        }
    }
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
    /// An address or protocol of the stream; `strip_port` drops `:port`.
    Property {
        property: Property,
        strip_port: bool,
    },
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
        reason: &'static str,
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
                "unknown formatter %{command}% at byte {at} (supported: {})",
                crate::config::comma_list(SUPPORTED)
            ),
            FormatError::BadArgument {
                at,
                command,
                reason,
            } => {
                write!(f, "formatter %{command}% at byte {at}: {reason}")
            }
        }
    }
}

/// Commands accepted, for error messages and the README.
pub const SUPPORTED: &[&str] = &[
    "REQ(name)",
    "RESP(name)",
    "DOWNSTREAM_REMOTE_ADDRESS",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_LOCAL_ADDRESS",
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
    "PROTOCOL",
    "UPSTREAM_REMOTE_ADDRESS",
    "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
];

impl Format {
    /// Parses a header value. `%%` is a literal `%`; every other `%` opens a
    /// command that must be closed by the next `%`.
    pub fn parse(input: &str) -> Result<Format, FormatError> {
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
            let command = parse_command(&after[..end], at)?;
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

    /// Renders the value through `read`, which answers header and property
    /// look-ups. Commands that see nothing render as nothing, as in Envoy's
    /// header formatter, so a value made only of such commands is empty.
    pub fn render<R: Reader + ?Sized>(&self, side: Side, read: &R) -> Vec<u8> {
        // A value that is exactly one unbounded command keeps the host's
        // buffer: no second allocation.
        if let [Segment::Command(command)] = self.segments.as_slice() {
            return render_command(command, side, read).unwrap_or_default();
        }
        let mut out = Vec::with_capacity(self.literal_len() + 32);
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.extend_from_slice(text.as_bytes()),
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
            Command::Property {
                property,
                strip_port,
            } => {
                f.write_str(match property {
                    Property::DownstreamRemoteAddress => "DOWNSTREAM_REMOTE_ADDRESS",
                    Property::DownstreamLocalAddress => "DOWNSTREAM_LOCAL_ADDRESS",
                    Property::Protocol => "PROTOCOL",
                    Property::UpstreamRemoteAddress => "UPSTREAM_REMOTE_ADDRESS",
                })?;
                if *strip_port {
                    f.write_str("_WITHOUT_PORT")?;
                }
                Ok(())
            }
        }
    }
}

/// Read access to the stream, as the formatter needs it.
pub trait Reader {
    /// The first value of a header of the request or the response.
    fn header(&self, of: Side, name: &str) -> Option<Vec<u8>>;
    fn property(&self, property: Property) -> Option<Vec<u8>>;
    /// A header as `%REQ(..)%` / `%RESP(..)%` read it. A host whose header
    /// map of `of` is closed by now (Envoy closes the request map once the
    /// request headers are done) answers from what it kept of it: see
    /// [`crate::plan::Plan::request_headers_for_response`].
    fn formatter_header(&self, of: Side, name: &str) -> Option<Vec<u8>> {
        self.header(of, name)
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
            // Envoy renders response headers as nothing on the request side.
            if *of == Side::Response && side == Side::Request {
                return None;
            }
            let mut value = read.formatter_header(*of, name).or_else(|| {
                alternative
                    .as_deref()
                    .and_then(|alt| read.formatter_header(*of, alt))
            })?;
            if let Some(max_len) = max_len {
                value.truncate(*max_len);
            }
            Some(value)
        }
        Command::Property {
            property,
            strip_port,
        } => {
            if *property == Property::UpstreamRemoteAddress && side == Side::Request {
                return None;
            }
            let mut value = read.property(*property)?;
            if *strip_port {
                let host_len = host_part_len(&value);
                if value.first() == Some(&b'[') && host_len >= 2 {
                    // `[::1]:80` renders as `::1`, as Envoy does.
                    value.truncate(host_len - 1);
                    value.remove(0);
                } else {
                    value.truncate(host_len);
                }
            }
            Some(value)
        }
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
/// `)` first, since `%` is a token character and may sit in a header name.
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

fn parse_command(text: &str, at: usize) -> Result<Command, FormatError> {
    let unknown = || FormatError::Unknown {
        at,
        command: text.to_string(),
    };
    let bad = |reason| FormatError::BadArgument {
        at,
        command: text.to_string(),
        reason,
    };
    if let Some(open) = text.find('(') {
        let name = &text[..open];
        let of = match name {
            "REQ" => Side::Request,
            "RESP" => Side::Response,
            _ => return Err(unknown()),
        };
        let close = text.rfind(')').ok_or_else(|| bad("missing )"))?;
        let args = &text[open + 1..close];
        let tail = &text[close + 1..];
        let max_len = if tail.is_empty() {
            None
        } else {
            let digits = tail
                .strip_prefix(':')
                .ok_or_else(|| bad("expected :LENGTH after the header name"))?;
            Some(
                digits
                    .parse::<usize>()
                    .map_err(|_| bad("LENGTH must be a non-negative integer"))?,
            )
        };
        let (main, alternative) = match args.split_once('?') {
            Some((main, alt)) => (main, Some(alt)),
            None => (args, None),
        };
        let main = header_argument(main).ok_or_else(|| bad("header name is not a valid token"))?;
        let alternative = match alternative {
            Some(alt) => Some(
                header_argument(alt)
                    .ok_or_else(|| bad("alternative header name is not a valid token"))?,
            ),
            None => None,
        };
        return Ok(Command::Header {
            of,
            name: main,
            alternative,
            max_len,
        });
    }
    let (base, strip_port) = match text.strip_suffix("_WITHOUT_PORT") {
        Some(base) => (base, true),
        None => (text, false),
    };
    let property = match base {
        "DOWNSTREAM_REMOTE_ADDRESS" => Property::DownstreamRemoteAddress,
        "DOWNSTREAM_LOCAL_ADDRESS" => Property::DownstreamLocalAddress,
        "UPSTREAM_REMOTE_ADDRESS" => Property::UpstreamRemoteAddress,
        "PROTOCOL" if !strip_port => Property::Protocol,
        _ => return Err(unknown()),
    };
    Ok(Command::Property {
        property,
        strip_port,
    })
}

/// A header name as a command argument: a token, or a pseudo-header
/// (`:authority`), lower-cased as Envoy does.
fn header_argument(name: &str) -> Option<String> {
    let token = name.strip_prefix(':').unwrap_or(name);
    if crate::config::is_token(token) {
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
        properties: HashMap<Property, &'static str>,
    }

    impl Reader for Fake {
        fn header(&self, of: Side, name: &str) -> Option<Vec<u8>> {
            let map = match of {
                Side::Request => &self.request,
                Side::Response => &self.response,
            };
            map.get(name).map(|v| v.as_bytes().to_vec())
        }
        fn property(&self, property: Property) -> Option<Vec<u8>> {
            self.properties
                .get(&property)
                .map(|v| v.as_bytes().to_vec())
        }
    }

    fn fake() -> Fake {
        let mut f = Fake::default();
        f.request.insert("x-a", "alpha");
        f.request.insert(":authority", "example.com");
        f.response.insert("x-r", "resp");
        f.properties
            .insert(Property::DownstreamRemoteAddress, "10.1.2.3:4567");
        f.properties
            .insert(Property::DownstreamLocalAddress, "[::1]:10000");
        f.properties.insert(Property::Protocol, "HTTP/1.1");
        f.properties
            .insert(Property::UpstreamRemoteAddress, "127.0.0.1:8080");
        f
    }

    fn render(input: &str, side: Side) -> String {
        let format = Format::parse(input).unwrap();
        String::from_utf8(format.render(side, &fake())).unwrap()
    }

    #[test]
    fn literal_without_commands_is_constant() {
        let f = Format::parse("plain value").unwrap();
        assert_eq!(f.as_constant(), Some("plain value"));
    }

    #[test]
    fn double_percent_is_a_literal_percent() {
        let f = Format::parse("100%% sure %%").unwrap();
        assert_eq!(f.as_constant(), Some("100% sure %"));
        assert_eq!(f.to_string(), "100%% sure %%");
    }

    #[test]
    fn req_renders_the_request_header() {
        assert_eq!(render("v=%REQ(X-A)%;", Side::Request), "v=alpha;");
        assert_eq!(render("%REQ(:authority)%", Side::Response), "example.com");
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
    fn resp_renders_only_on_the_response_side() {
        assert_eq!(render("%RESP(x-r)%", Side::Response), "resp");
        assert_eq!(render("%RESP(x-r)%", Side::Request), "");
    }

    #[test]
    fn addresses_and_protocol() {
        let side = Side::Response;
        assert_eq!(render("%DOWNSTREAM_REMOTE_ADDRESS%", side), "10.1.2.3:4567");
        assert_eq!(
            render("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", side),
            "10.1.2.3"
        );
        assert_eq!(render("%DOWNSTREAM_LOCAL_ADDRESS%", side), "[::1]:10000");
        assert_eq!(
            render("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", side),
            "::1"
        );
        assert_eq!(render("%PROTOCOL%", side), "HTTP/1.1");
        assert_eq!(render("%UPSTREAM_REMOTE_ADDRESS%", side), "127.0.0.1:8080");
        assert_eq!(
            render("%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", side),
            "127.0.0.1"
        );
    }

    #[test]
    fn upstream_address_renders_nothing_on_the_request_side() {
        assert_eq!(render("%UPSTREAM_REMOTE_ADDRESS%", Side::Request), "");
    }

    #[test]
    fn unknown_command_is_an_error() {
        let err = Format::parse("x %START_TIME% y").unwrap_err();
        assert_eq!(
            err,
            FormatError::Unknown {
                at: 2,
                command: "START_TIME".into()
            }
        );
        assert!(err
            .to_string()
            .starts_with("unknown formatter %START_TIME% at byte 2"));
    }

    #[test]
    fn unterminated_command_is_an_error() {
        assert_eq!(
            Format::parse("50% off").unwrap_err(),
            FormatError::Unterminated { at: 2 }
        );
        assert_eq!(
            Format::parse("%REQ(x-a)").unwrap_err(),
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
        ] {
            assert!(Format::parse(input).is_err(), "{input} should be refused");
        }
        assert!(Format::parse("%PROTOCOL_WITHOUT_PORT%").is_err());
        assert!(Format::parse("%FOO(x)%").is_err());
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "a%REQ(x-a?x-b):5%b",
            "%%%RESP(x)%%%",
            "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% via %PROTOCOL%",
        ] {
            let parsed = Format::parse(input).unwrap();
            assert_eq!(Format::parse(&parsed.to_string()).unwrap(), parsed);
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
