//! `DYNAMIC_METADATA(ns:key:...)`, `CLUSTER_METADATA(..)`,
//! `UPSTREAM_METADATA(..)`: Envoy hands a Wasm filter these as the
//! serialized `envoy.config.core.v3.Metadata` protobuf (the `metadata` and
//! `xds.*_metadata` attributes are messages, which
//! `source/extensions/common/wasm/context.cc` `serializeValue` writes with
//! `SerializeToString`). The typed bytes are the only form that keeps each
//! value's kind, so they are walked here by hand (a few wire-format rules,
//! no protobuf crate).
//!
//! Rendering follows Envoy's `MetadataFormatter`: a string value as is; an
//! absent path or a null value as nothing; any other value as JSON.

/// One field of a protobuf message.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
}

/// The fields of `message`, in wire order; stops at the first malformed one.
fn fields(message: &[u8]) -> impl Iterator<Item = (u64, Field<'_>)> {
    let mut rest = message;
    std::iter::from_fn(move || {
        let key = varint(&mut rest)?;
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut rest)?),
            1 => Field::Fixed64(u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?)),
            2 => {
                let len = usize::try_from(varint(&mut rest)?).ok()?;
                Field::Bytes(take(&mut rest, len)?)
            }
            5 => {
                take(&mut rest, 4)?;
                Field::Varint(0)
            }
            _ => return None,
        };
        Some((key >> 3, field))
    })
}

fn varint(rest: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        *rest = tail;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn take<'a>(rest: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if rest.len() < len {
        return None;
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Some(head)
}

/// The value of `key` in the map field `number` of `message` (the last
/// entry wins, as in protobuf).
fn map_get<'a>(message: &'a [u8], number: u64, key: &str) -> Option<&'a [u8]> {
    let mut found = None;
    for (n, field) in fields(message) {
        let (true, Field::Bytes(entry)) = (n == number, field) else {
            continue;
        };
        let mut entry_key: &[u8] = b"";
        let mut entry_value: &[u8] = b"";
        for (n, field) in fields(entry) {
            match (n, field) {
                (1, Field::Bytes(k)) => entry_key = k,
                (2, Field::Bytes(v)) => entry_value = v,
                _ => {}
            }
        }
        if entry_key == key.as_bytes() {
            found = Some(entry_value);
        }
    }
    found
}

/// A `google.protobuf.Value`.
enum Kind<'a> {
    Null,
    Number(f64),
    String(&'a [u8]),
    Bool(bool),
    Struct(&'a [u8]),
    List(&'a [u8]),
}

fn kind(value: &[u8]) -> Option<Kind<'_>> {
    let mut kind = None;
    for (n, field) in fields(value) {
        kind = match (n, field) {
            (1, _) => Some(Kind::Null),
            (2, Field::Fixed64(bits)) => Some(Kind::Number(f64::from_bits(bits))),
            (3, Field::Bytes(text)) => Some(Kind::String(text)),
            (4, Field::Varint(b)) => Some(Kind::Bool(b != 0)),
            (5, Field::Bytes(s)) => Some(Kind::Struct(s)),
            (6, Field::Bytes(l)) => Some(Kind::List(l)),
            _ => kind,
        };
    }
    kind
}

/// Appends the value at `namespace` / `path` of the serialized Metadata
/// `metadata`; false (nothing written) when there is none.
pub fn render(metadata: &[u8], namespace: &str, path: &[Box<str>], out: &mut Vec<u8>) -> bool {
    let Some(mut message) = map_get(metadata, 1, namespace) else {
        return false;
    };
    let Some((last, walk)) = path.split_last() else {
        // The whole namespace: a Struct, as JSON.
        json_struct(message, out);
        return true;
    };
    for key in walk {
        match map_get(message, 1, key).and_then(kind) {
            Some(Kind::Struct(inner)) => message = inner,
            _ => return false,
        }
    }
    match map_get(message, 1, last).and_then(kind) {
        None | Some(Kind::Null) => false,
        Some(Kind::String(text)) => {
            out.extend_from_slice(text);
            true
        }
        Some(other) => {
            json_value(&other, out);
            true
        }
    }
}

fn json_value(value_kind: &Kind<'_>, out: &mut Vec<u8>) {
    match value_kind {
        Kind::Null => out.extend_from_slice(b"null"),
        Kind::Number(n) => json_number(*n, out),
        Kind::String(text) => json_string(text, out),
        Kind::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Kind::Struct(s) => json_struct(s, out),
        Kind::List(list) => {
            out.push(b'[');
            let mut first = true;
            for (n, field) in fields(list) {
                if let (1, Field::Bytes(value)) = (n, field) {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    json_value(&kind(value).unwrap_or(Kind::Null), out);
                }
            }
            out.push(b']');
        }
    }
}

fn json_struct(message: &[u8], out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    for (n, field) in fields(message) {
        let (1, Field::Bytes(entry)) = (n, field) else {
            continue;
        };
        let (mut key, mut value): (&[u8], &[u8]) = (b"", b"");
        for (n, field) in fields(entry) {
            match (n, field) {
                (1, Field::Bytes(k)) => key = k,
                (2, Field::Bytes(v)) => value = v,
                _ => {}
            }
        }
        if !first {
            out.push(b',');
        }
        first = false;
        json_string(key, out);
        out.push(b':');
        json_value(&kind(value).unwrap_or(Kind::Null), out);
    }
    out.push(b'}');
}

/// A number as JSON without core's float formatting (it would double the
/// module's size): integers as integers, others with up to 17 significant
/// digits, trailing zeros dropped (`%.17g`-like; see the README).
fn json_number(n: f64, out: &mut Vec<u8>) {
    if !n.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    if n < 0.0 {
        out.push(b'-');
    }
    let n = n.abs();
    let whole = n.trunc();
    super::time::push_uint(out, whole as u64);
    let mut fraction = n - whole;
    if fraction == 0.0 {
        return;
    }
    let mut significant = 0;
    let mut rest = whole as u64;
    while rest > 0 {
        significant += 1;
        rest /= 10;
    }
    out.push(b'.');
    let dot = out.len();
    while fraction > 0.0 && significant < 17 {
        fraction *= 10.0;
        let digit = fraction.trunc();
        fraction -= digit;
        if digit > 0.0 || significant > 0 {
            significant += 1;
        }
        out.push(b'0' + digit as u8);
    }
    while out.len() > dot && out.last() == Some(&b'0') {
        out.pop();
    }
    if out.len() == dot {
        out.pop();
    }
}

fn json_string(text: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in text {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny protobuf writer for building Metadata in tests.
    pub fn bytes_field(number: u64, body: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8];
        let mut len = body.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(body);
        out
    }

    fn entry(key: &str, value: &[u8]) -> Vec<u8> {
        [bytes_field(1, key.as_bytes()), bytes_field(2, value)].concat()
    }

    pub fn string_value(s: &str) -> Vec<u8> {
        bytes_field(3, s.as_bytes())
    }

    fn number_value(n: f64) -> Vec<u8> {
        let mut out = vec![2 << 3 | 1];
        out.extend_from_slice(&n.to_bits().to_le_bytes());
        out
    }

    pub fn structure(fields: &[(&str, Vec<u8>)]) -> Vec<u8> {
        fields
            .iter()
            .flat_map(|(k, v)| bytes_field(1, &entry(k, v)))
            .collect()
    }

    pub fn metadata(namespace: &str, fields: &[(&str, Vec<u8>)]) -> Vec<u8> {
        bytes_field(1, &entry(namespace, &structure(fields)))
    }

    fn render_path(meta: &[u8], ns: &str, path: &[&str]) -> Option<String> {
        let path: Vec<Box<str>> = path.iter().map(|p| (*p).into()).collect();
        let mut out = Vec::new();
        render(meta, ns, &path, &mut out).then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn values_render_as_envoy_renders_them() {
        let inner = structure(&[("deep", string_value("yes"))]);
        let meta = metadata(
            "ns",
            &[
                ("s", string_value("text \"q\"")),
                ("n", number_value(42.0)),
                ("f", number_value(1.5)),
                ("b", vec![4 << 3, 1]),
                ("null", vec![1 << 3, 0]),
                ("obj", bytes_field(5, &inner)),
                (
                    "list",
                    bytes_field(
                        6,
                        &[
                            bytes_field(1, &string_value("a")),
                            bytes_field(1, &number_value(2.0)),
                        ]
                        .concat(),
                    ),
                ),
            ],
        );
        assert_eq!(
            render_path(&meta, "ns", &["s"]).as_deref(),
            Some("text \"q\"")
        );
        assert_eq!(render_path(&meta, "ns", &["n"]).as_deref(), Some("42"));
        assert_eq!(render_path(&meta, "ns", &["f"]).as_deref(), Some("1.5"));
        assert_eq!(render_path(&meta, "ns", &["b"]).as_deref(), Some("true"));
        assert_eq!(render_path(&meta, "ns", &["null"]), None);
        assert_eq!(
            render_path(&meta, "ns", &["obj"]).as_deref(),
            Some(r#"{"deep":"yes"}"#)
        );
        assert_eq!(
            render_path(&meta, "ns", &["obj", "deep"]).as_deref(),
            Some("yes")
        );
        assert_eq!(
            render_path(&meta, "ns", &["list"]).as_deref(),
            Some(r#"["a",2]"#)
        );
    }

    #[test]
    fn missing_paths_render_nothing() {
        let meta = metadata("ns", &[("s", string_value("v"))]);
        assert_eq!(render_path(&meta, "other", &["s"]), None);
        assert_eq!(render_path(&meta, "ns", &["missing"]), None);
        assert_eq!(render_path(&meta, "ns", &["s", "below"]), None);
        assert_eq!(render_path(b"", "ns", &["s"]), None);
        assert_eq!(
            render_path(b"\xff\xff", "ns", &["s"]),
            None,
            "malformed bytes"
        );
    }

    #[test]
    fn a_namespace_alone_is_its_struct_as_json() {
        let meta = metadata("ns", &[("a", string_value("x\ny"))]);
        assert_eq!(
            render_path(&meta, "ns", &[]).as_deref(),
            Some(r#"{"a":"x\ny"}"#)
        );
    }
}
