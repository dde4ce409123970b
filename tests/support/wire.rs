//! HTTP/1.1 message framing shared by the test client and the echo upstream:
//! reading a start line + header block, and a body framed by
//! `content-length`, `transfer-encoding: chunked` or connection close.
//! No semantics (methods, status codes, keep-alive) live here.

use std::io::{self, BufRead};

/// Upper bound on a header block, so a confused peer cannot eat memory.
const MAX_HEAD_BYTES: usize = 1 << 20;

/// A start line (request or status line) and the header fields in order,
/// names as they were on the wire.
pub struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether any `name` header lists `token` (comma-separated, any case).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }
}

/// How a message body is delimited.
pub enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

impl Framing {
    /// The framing that `head` announces; `default` applies when it announces
    /// none (empty for requests, until-close for responses).
    pub fn of(head: &Head, default: Framing) -> io::Result<Framing> {
        if head.has_token("transfer-encoding", "chunked") {
            return Ok(Framing::Chunked);
        }
        match head.header("content-length") {
            Some(value) => value
                .trim()
                .parse()
                .map(Framing::Length)
                .map_err(|_| invalid(format!("bad content-length: {value:?}"))),
            None => Ok(default),
        }
    }
}

/// Reads a start line and header block. `Ok(None)` means the peer closed the
/// connection cleanly before sending anything (the end of keep-alive).
pub fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut start_line = String::new();
    let mut total = 0;
    // Tolerate empty lines before the start line (RFC 9112 section 2.2).
    loop {
        start_line.clear();
        let read = reader.read_line(&mut start_line)?;
        if read == 0 {
            return Ok(None);
        }
        total += read;
        if !start_line.trim().is_empty() {
            break;
        }
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the header block",
            ));
        }
        total += read;
        if total > MAX_HEAD_BYTES {
            return Err(invalid("header block larger than 1 MiB".to_string()));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid(format!("header line without a colon: {line:?}")));
        };
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Some(Head {
        start_line: start_line.trim_end_matches(['\r', '\n']).to_string(),
        headers,
    }))
}

/// Reads a body delimited by `framing`.
pub fn read_body(reader: &mut impl BufRead, framing: Framing) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match framing {
        Framing::Empty => {}
        Framing::Length(length) => {
            body.resize(length, 0);
            reader.read_exact(&mut body)?;
        }
        Framing::UntilClose => {
            reader.read_to_end(&mut body)?;
        }
        Framing::Chunked => loop {
            let mut size_line = String::new();
            if reader.read_line(&mut size_line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a chunked body",
                ));
            }
            let size_text = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size line: {size_line:?}")))?;
            if size == 0 {
                // Trailer fields until the empty line; tests do not use them.
                loop {
                    let mut trailer = String::new();
                    let read = reader.read_line(&mut trailer)?;
                    if read == 0 || trailer.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(invalid("chunk not followed by CRLF".to_string()));
            }
        },
    }
    Ok(body)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], default: Framing) -> (Head, Vec<u8>) {
        let mut reader = io::BufReader::new(raw);
        let head = read_head(&mut reader).unwrap().unwrap();
        let framing = Framing::of(&head, default).unwrap();
        let body = read_body(&mut reader, framing).unwrap();
        (head, body)
    }

    #[test]
    fn chunked_body_is_reassembled_and_trailers_skipped() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nx-trailer: t\r\n\r\n";
        let (head, body) = parse(raw, Framing::UntilClose);
        assert_eq!(head.start_line, "HTTP/1.1 200 OK");
        assert_eq!(body, b"Wikipedia");
    }

    #[test]
    fn content_length_body_stops_at_length() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nx-a: 1\r\nx-a:2\r\n\r\nabcNEXT";
        let (head, body) = parse(raw, Framing::Empty);
        assert_eq!(body, b"abc");
        let values: Vec<&str> = head.headers.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["3", "1", "2"]);
    }

    #[test]
    fn response_without_length_reads_until_close() {
        let (_, body) = parse(b"HTTP/1.1 200 OK\r\n\r\nrest of it", Framing::UntilClose);
        assert_eq!(body, b"rest of it");
    }

    #[test]
    fn clean_close_before_a_message_is_not_an_error() {
        let mut reader = io::BufReader::new(&b""[..]);
        assert!(read_head(&mut reader).unwrap().is_none());
    }
}
