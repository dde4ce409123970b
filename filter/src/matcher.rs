//! Envoy's matchers, as the route table and the response rules use them:
//! `StringMatcher`, `HeaderMatcher` and `QueryParameterMatcher`, with the
//! field names of Envoy's JSON and the semantics of Envoy 1.40's source
//! (`source/common/common/matchers.h`, `source/common/http/header_utility.cc`,
//! `source/common/router/config_utility.cc`), checked against Envoy's router
//! by `tests/routes_envoy.rs`.
//!
//! Parsing compiles everything (regexes included) at configure time.
//! Matching allocates nothing: headers are read in place from one
//! [`HeaderPairs`] buffer, case-insensitive comparisons compare in place,
//! and regexes run on the bytes themselves (only a regex over non-ASCII
//! input widens it to Latin-1 characters first).

use std::fmt;

use regex_lite::Regex;

pub use crate::headers::HeaderPairs;
use crate::json::{self, Json};
use crate::jsonpath::{
    expect_bool, expect_object, expect_string, field_path, quoted, unknown_field, ConfigError,
};

/// A regular expression, matched against the whole input as Envoy's
/// `safe_regex` does (RE2 `FullMatch`).
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
    /// Bytes every match starts with (see [`literal_prefix`]): an input
    /// without them is refused before the regex engine runs, which is most
    /// of a route table's regex checks (regex-lite has no prefilter).
    prefix: Box<[u8]>,
    /// The same pattern as a [`Simple`] one, when it is: matched without
    /// regex-lite's Pike VM (most route regexes are a literal path and a
    /// character class or two).
    simple: Option<Simple>,
}

impl Pattern {
    /// Compiles `source` anchored at both ends; the error is the reason.
    /// Like Envoy's RE2, the pattern and the input are read as Latin-1:
    /// one character per byte (`.` matches one byte of `é`'s two, and
    /// `\xC3` matches the byte 0xC3).
    pub fn new(source: &str) -> Result<Pattern, String> {
        let anchored = format!("^(?:{})$", latin1(source.as_bytes()));
        match Regex::new(&anchored) {
            Ok(regex) => Ok(Pattern {
                source: source.to_string(),
                regex,
                prefix: literal_prefix(source).into(),
                simple: Simple::parse(source),
            }),
            Err(error) => Err(format!(
                "regex {} is not supported: {}",
                quoted(source),
                first_line(&error.to_string())
            )),
        }
    }

    /// Parses Envoy's `RegexMatcher` object: `{"regex": "..."}` (a
    /// `google_re2` member, deprecated in Envoy, is accepted and ignored).
    pub(crate) fn parse(path: &str, value: &Json) -> Result<Pattern, ConfigError> {
        let object = expect_object(path, value)?;
        let mut regex = None;
        for (key, value) in object {
            let field = field_path(path, key);
            match key.as_str() {
                "regex" => regex = Some(expect_string(&field, value)?),
                "google_re2" => {
                    expect_object(&field, value)?;
                }
                _ => return Err(unknown_field(&field, &["regex", "google_re2"])),
            }
        }
        let field = field_path(path, "regex");
        let regex = regex.ok_or_else(|| ConfigError::new(&field, "required field is missing"))?;
        Pattern::new(regex).map_err(|reason| ConfigError::new(&field, reason))
    }

    /// Whether the whole of `input` matches, its bytes read as Latin-1.
    /// ASCII input (nearly all) is matched in place; other input is widened
    /// to one character per byte first, which allocates.
    pub fn is_match(&self, input: &[u8]) -> bool {
        if !input.starts_with(&self.prefix) {
            return false;
        }
        if let Some(simple) = &self.simple {
            return simple.is_match(input);
        }
        match std::str::from_utf8(input) {
            Ok(text) if text.is_ascii() => self.regex.is_match(text),
            _ => self.regex.is_match(&latin1(input)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// A regex that is a sequence of single characters (literals, `.`, classes,
/// `\d`-style escapes), each with a repetition, where every repeated item's
/// characters differ from those that may come right after it. A full match
/// of such a pattern, if there is one, takes at each item the longest run
/// its characters allow: one pass left to right decides it, with RE2's
/// answer (the input read as Latin-1, one character per byte, as
/// [`Pattern`] reads it). Anything else (groups, alternation, anchors
/// inside, flags, non-ASCII, overlapping neighbours) is left to regex-lite.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Simple {
    items: Box<[Item]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    /// The bytes this item matches, one bit each.
    set: [u64; 4],
    min: u32,
    /// `u32::MAX`: unbounded.
    max: u32,
}

/// A set of bytes, one bit each.
type ByteSet = [u64; 4];

/// The bytes `first..=last`.
fn range(first: u8, last: u8) -> ByteSet {
    let mut set = [0; 4];
    let mut byte = first;
    loop {
        set[usize::from(byte >> 6)] |= 1 << (byte & 63);
        if byte >= last {
            return set;
        }
        byte += 1;
    }
}

fn contains_byte(set: &ByteSet, byte: u8) -> bool {
    set[usize::from(byte >> 6)] & (1 << (byte & 63)) != 0
}

fn complement(set: ByteSet) -> ByteSet {
    set.map(|word| !word)
}

fn union(a: ByteSet, b: ByteSet) -> ByteSet {
    [a[0] | b[0], a[1] | b[1], a[2] | b[2], a[3] | b[3]]
}

fn disjoint(a: &ByteSet, b: &ByteSet) -> bool {
    a.iter().zip(b).all(|(x, y)| x & y == 0)
}

/// RE2's Perl classes (ASCII only), by their letter.
fn perl_class(letter: u8) -> Option<ByteSet> {
    const DIGITS: ByteSet = [0x03ff_0000_0000_0000, 0, 0, 0];
    // Digits, `A`-`Z`, `_`, `a`-`z`.
    const WORD: ByteSet = [0x03ff_0000_0000_0000, 0x07ff_fffe_87ff_fffe, 0, 0];
    // \t \n \f \r and space.
    const SPACE: ByteSet = [0x1_0000_3600, 0, 0, 0];
    let (set, negated) = match letter {
        b'd' => (DIGITS, false),
        b'D' => (DIGITS, true),
        b'w' => (WORD, false),
        b'W' => (WORD, true),
        b's' => (SPACE, false),
        b'S' => (SPACE, true),
        _ => return None,
    };
    Some(if negated { complement(set) } else { set })
}

/// Punctuation RE2 takes escaped as itself (not `<` and `>`: regex-lite,
/// which decides everything else here, reads `\<` and `\>` as word
/// boundaries).
const ESCAPABLE: &[u8] = b"\\.+*?()[]{}^$|-/#&~!%,:;=@_`'\" ";

impl Simple {
    fn parse(source: &str) -> Option<Simple> {
        let mut bytes = source.as_bytes();
        if !bytes.is_ascii() {
            return None;
        }
        // Anchors at the ends change nothing in a full match.
        bytes = bytes.strip_prefix(b"^").unwrap_or(bytes);
        if bytes.ends_with(b"$") && !bytes.ends_with(b"\\$") {
            bytes = &bytes[..bytes.len() - 1];
        }
        let mut items: Vec<Item> = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let set = match bytes[at] {
                b'\\' => {
                    let escaped = *bytes.get(at + 1)?;
                    at += 2;
                    match perl_class(escaped) {
                        Some(set) => set,
                        None if ESCAPABLE.contains(&escaped) => range(escaped, escaped),
                        None => return None,
                    }
                }
                b'.' => {
                    at += 1;
                    complement(range(b'\n', b'\n'))
                }
                b'[' => {
                    let (set, end) = parse_class(bytes, at + 1)?;
                    at = end;
                    set
                }
                b'*' | b'+' | b'?' | b'{' | b'(' | b')' | b'|' | b'^' | b'$' | b']' | b'}' => {
                    return None
                }
                byte if byte.is_ascii_graphic() || byte == b' ' => {
                    at += 1;
                    range(byte, byte)
                }
                _ => return None,
            };
            let (min, max, end) = parse_repetition(bytes, at)?;
            at = end;
            if max > 0 {
                items.push(Item { set, min, max });
            }
        }
        // Every repeated item must end where the next character cannot be
        // one of its own.
        for (index, item) in items.iter().enumerate() {
            if item.min == item.max {
                continue;
            }
            let mut follow = [0; 4];
            for next in &items[index + 1..] {
                follow = union(follow, next.set);
                if next.min > 0 {
                    break;
                }
            }
            if !disjoint(&item.set, &follow) {
                return None;
            }
        }
        Some(Simple {
            items: items.into(),
        })
    }

    fn is_match(&self, input: &[u8]) -> bool {
        let mut at = 0;
        for item in self.items.iter() {
            let mut taken = 0u32;
            while taken < item.max
                && input
                    .get(at)
                    .is_some_and(|&byte| contains_byte(&item.set, byte))
            {
                at += 1;
                taken += 1;
            }
            if taken < item.min {
                return false;
            }
        }
        at == input.len()
    }
}

/// A class `[...]` whose body starts at `at`: its bytes and the index past
/// its `]`. Ranges, negation and Perl escapes; `None` for what RE2 reads
/// differently or this does not know (`[:alpha:]`, a `]` first...).
fn parse_class(bytes: &[u8], mut at: usize) -> Option<(ByteSet, usize)> {
    let negated = bytes.get(at) == Some(&b'^');
    if negated {
        at += 1;
    }
    if bytes.get(at) == Some(&b']') {
        return None;
    }
    let mut set = [0; 4];
    loop {
        let byte = *bytes.get(at)?;
        let single = match byte {
            b']' => break,
            b'[' => return None,
            b'\\' => {
                let escaped = *bytes.get(at + 1)?;
                at += 2;
                if let Some(class) = perl_class(escaped) {
                    set = union(set, class);
                    continue;
                }
                if !ESCAPABLE.contains(&escaped) {
                    return None;
                }
                escaped
            }
            byte if byte.is_ascii_graphic() || byte == b' ' => {
                at += 1;
                byte
            }
            _ => return None,
        };
        if bytes.get(at) == Some(&b'-') && bytes.get(at + 1).is_some_and(|&b| b != b']') {
            let last = *bytes.get(at + 1)?;
            if last == b'\\' || last == b'[' || last < single {
                return None;
            }
            at += 2;
            set = union(set, range(single, last));
        } else {
            set = union(set, range(single, single));
        }
    }
    Some((if negated { complement(set) } else { set }, at + 1))
}

/// The repetition after an item at `at` (`*`, `+`, `?`, `{n}`, `{n,}`,
/// `{n,m}`, each maybe lazy, which a full match does not care about): its
/// bounds and the index past it.
fn parse_repetition(bytes: &[u8], at: usize) -> Option<(u32, u32, usize)> {
    let (min, max, mut end) = match bytes.get(at) {
        Some(b'*') => (0, u32::MAX, at + 1),
        Some(b'+') => (1, u32::MAX, at + 1),
        Some(b'?') => (0, 1, at + 1),
        Some(b'{') => {
            let close = at + bytes[at..].iter().position(|&b| b == b'}')?;
            let body = std::str::from_utf8(&bytes[at + 1..close]).ok()?;
            let number = |text: &str| -> Option<u32> {
                (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| text.parse().ok())
                    .flatten()
                    .filter(|n| *n <= 1000)
            };
            let (min, max) = match body.split_once(',') {
                None => (number(body)?, number(body)?),
                Some((min, "")) => (number(min)?, u32::MAX),
                Some((min, max)) => (number(min)?, number(max)?),
            };
            if max < min {
                return None;
            }
            (min, max, close + 1)
        }
        _ => return Some((1, 1, at)),
    };
    if bytes.get(end) == Some(&b'?') {
        end += 1;
    }
    if matches!(bytes.get(end), Some(b'*' | b'+' | b'?' | b'{')) {
        return None;
    }
    Some((min, max, end))
}

/// The literal bytes a full match of `source` must start with: the
/// pattern's leading ASCII letters, digits and plain punctuation, up to the
/// first character with a meaning in RE2 syntax. Conservative: nothing for
/// a pattern with `|` anywhere (an alternation may be at the top), and a
/// literal followed by a quantifier is not required (`ab?` gives `a`).
/// Byte for byte, as the input is read as Latin-1.
fn literal_prefix(source: &str) -> Vec<u8> {
    const SPECIAL: &[u8] = br"\.+*?()[]{}^$|";
    const QUANTIFIERS: &[u8] = b"*?{+";
    let bytes = source.as_bytes();
    if bytes.contains(&b'|') {
        return Vec::new();
    }
    let bytes = bytes.strip_prefix(b"^").unwrap_or(bytes);
    let mut prefix = Vec::new();
    for (index, &byte) in bytes.iter().enumerate() {
        if !byte.is_ascii_graphic() || SPECIAL.contains(&byte) {
            break;
        }
        if bytes
            .get(index + 1)
            .is_some_and(|next| QUANTIFIERS.contains(next))
        {
            break;
        }
        prefix.push(byte);
    }
    prefix
}

/// `bytes` with each byte as the character of that code point.
fn latin1(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.is_ascii() => std::borrow::Cow::Borrowed(text),
        _ => std::borrow::Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({})", quoted(&self.source))
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

/// Envoy's `StringMatcher`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatcher {
    Exact { value: String, ignore_case: bool },
    Prefix { value: String, ignore_case: bool },
    Suffix { value: String, ignore_case: bool },
    Contains { value: String, ignore_case: bool },
    Regex(Pattern),
}

const STRING_MATCHER_FIELDS: &[&str] = &[
    "exact",
    "prefix",
    "suffix",
    "contains",
    "safe_regex",
    "ignore_case",
];

impl StringMatcher {
    /// Parses a `StringMatcher` object at `path`.
    pub fn parse(path: &str, value: &Json) -> Result<StringMatcher, ConfigError> {
        if let Json::String(text) = value {
            return Err(ConfigError::new(
                path,
                format!(
                    "expected a StringMatcher object such as {{\"exact\": {}}}, got a string",
                    quoted(text)
                ),
            ));
        }
        let object = expect_object(path, value)?;
        let mut ignore_case = false;
        let mut kind: Option<(&str, &Json)> = None;
        for (key, value) in object {
            let field = field_path(path, key);
            match key.as_str() {
                "ignore_case" => ignore_case = expect_bool(&field, value)?,
                "exact" | "prefix" | "suffix" | "contains" | "safe_regex" => {
                    if let Some((other, _)) = kind {
                        return Err(ConfigError::new(
                            &field,
                            format!("only one of exact, prefix, suffix, contains, safe_regex may be set ({other} is set too)"),
                        ));
                    }
                    kind = Some((key.as_str(), value));
                }
                "custom" => return Err(not_supported(&field)),
                _ => return Err(unknown_field(&field, STRING_MATCHER_FIELDS)),
            }
        }
        let Some((key, value)) = kind else {
            return Err(ConfigError::new(
                path,
                "one of exact, prefix, suffix, contains, safe_regex is required",
            ));
        };
        let field = field_path(path, key);
        let text = |value| expect_string(&field, value).map(str::to_string);
        Ok(match key {
            "exact" => StringMatcher::Exact {
                value: text(value)?,
                ignore_case,
            },
            "prefix" => StringMatcher::Prefix {
                value: non_empty(&field, text(value)?)?,
                ignore_case,
            },
            "suffix" => StringMatcher::Suffix {
                value: non_empty(&field, text(value)?)?,
                ignore_case,
            },
            "contains" => StringMatcher::Contains {
                value: non_empty(&field, text(value)?)?,
                ignore_case,
            },
            _ => {
                if ignore_case {
                    // Envoy refuses this too.
                    return Err(ConfigError::new(
                        &field_path(path, "ignore_case"),
                        "ignore_case has no effect for safe_regex (write (?i) in the regex)",
                    ));
                }
                StringMatcher::Regex(Pattern::parse(&field, value)?)
            }
        })
    }

    pub fn matches(&self, input: &[u8]) -> bool {
        match self {
            StringMatcher::Exact { value, ignore_case } => {
                equal(input, value.as_bytes(), *ignore_case)
            }
            StringMatcher::Prefix { value, ignore_case } => {
                starts_with(input, value.as_bytes(), *ignore_case)
            }
            StringMatcher::Suffix { value, ignore_case } => input
                .len()
                .checked_sub(value.len())
                .is_some_and(|start| equal(&input[start..], value.as_bytes(), *ignore_case)),
            StringMatcher::Contains { value, ignore_case } => {
                contains(input, value.as_bytes(), *ignore_case)
            }
            StringMatcher::Regex(pattern) => pattern.is_match(input),
        }
    }

    /// The matcher as Envoy's JSON.
    pub fn write_json(&self, out: &mut String) {
        let (key, value, ignore_case) = match self {
            StringMatcher::Exact { value, ignore_case } => ("exact", value, *ignore_case),
            StringMatcher::Prefix { value, ignore_case } => ("prefix", value, *ignore_case),
            StringMatcher::Suffix { value, ignore_case } => ("suffix", value, *ignore_case),
            StringMatcher::Contains { value, ignore_case } => ("contains", value, *ignore_case),
            StringMatcher::Regex(pattern) => {
                out.push_str("{\"safe_regex\":{\"regex\":");
                json::write_string(out, pattern.as_str());
                out.push_str("}}");
                return;
            }
        };
        out.push_str("{\"");
        out.push_str(key);
        out.push_str("\":");
        json::write_string(out, value);
        if ignore_case {
            out.push_str(",\"ignore_case\":true");
        }
        out.push('}');
    }
}

fn non_empty(path: &str, text: String) -> Result<String, ConfigError> {
    if text.is_empty() {
        // Envoy's validation: prefix, suffix and contains have min_len 1.
        return Err(ConfigError::new(path, "must not be empty"));
    }
    Ok(text)
}

fn not_supported(path: &str) -> ConfigError {
    ConfigError::new(path, "not supported by this filter")
}

/// Byte equality, or ASCII case-insensitive equality (absl's
/// `EqualsIgnoreCase`, which Envoy's matchers use).
pub(crate) fn equal(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

pub(crate) fn starts_with(input: &[u8], prefix: &[u8], ignore_case: bool) -> bool {
    input
        .get(..prefix.len())
        .is_some_and(|head| equal(head, prefix, ignore_case))
}

fn contains(haystack: &[u8], needle: &[u8], ignore_case: bool) -> bool {
    if needle.is_empty() {
        return true;
    }
    haystack
        .windows(needle.len())
        .any(|window| equal(window, needle, ignore_case))
}

/// How a [`HeaderMatcher`] judges a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    /// `present_match` (also what a matcher with no match field means).
    Present(bool),
    String(StringMatcher),
    /// The deprecated `exact_match`: an empty value matches any value.
    LegacyExact(String),
    /// `range_match`: the value as a signed integer in `[start, end)`.
    Range {
        start: i64,
        end: i64,
    },
}

/// Envoy's `HeaderMatcher`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatcher {
    /// Lower-cased, as Envoy stores it; may be a pseudo-header (`:method`).
    pub name: String,
    pub kind: HeaderMatch,
    pub invert: bool,
    pub treat_missing_as_empty: bool,
}

const HEADER_MATCHER_FIELDS: &[&str] = &[
    "name",
    "string_match",
    "present_match",
    "range_match",
    "invert_match",
    "treat_missing_header_as_empty",
    "exact_match",
    "prefix_match",
    "suffix_match",
    "contains_match",
    "safe_regex_match",
];

impl HeaderMatcher {
    pub fn parse(path: &str, value: &Json) -> Result<HeaderMatcher, ConfigError> {
        let object = expect_object(path, value)?;
        let mut name = None;
        let mut kind: Option<(&str, HeaderMatch)> = None;
        let mut invert = false;
        let mut treat_missing_as_empty = false;
        for (key, value) in object {
            let field = field_path(path, key);
            let parsed = match key.as_str() {
                "name" => {
                    name = Some(header_matcher_name(&field, expect_string(&field, value)?)?);
                    continue;
                }
                "invert_match" => {
                    invert = expect_bool(&field, value)?;
                    continue;
                }
                "treat_missing_header_as_empty" => {
                    treat_missing_as_empty = expect_bool(&field, value)?;
                    continue;
                }
                "string_match" => HeaderMatch::String(StringMatcher::parse(&field, value)?),
                "present_match" => HeaderMatch::Present(expect_bool(&field, value)?),
                "range_match" => parse_range(&field, value)?,
                "exact_match" => HeaderMatch::LegacyExact(expect_string(&field, value)?.into()),
                "prefix_match" | "suffix_match" | "contains_match" => {
                    let text = non_empty(&field, expect_string(&field, value)?.to_string())?;
                    HeaderMatch::String(match key.as_str() {
                        "prefix_match" => StringMatcher::Prefix {
                            value: text,
                            ignore_case: false,
                        },
                        "suffix_match" => StringMatcher::Suffix {
                            value: text,
                            ignore_case: false,
                        },
                        _ => StringMatcher::Contains {
                            value: text,
                            ignore_case: false,
                        },
                    })
                }
                "safe_regex_match" => {
                    HeaderMatch::String(StringMatcher::Regex(Pattern::parse(&field, value)?))
                }
                _ => return Err(unknown_field(&field, HEADER_MATCHER_FIELDS)),
            };
            if let Some((other, _)) = kind {
                return Err(ConfigError::new(
                    &field,
                    format!("only one way of matching may be set ({other} is set too)"),
                ));
            }
            kind = Some((key.as_str(), parsed));
        }
        let name = name.ok_or_else(|| {
            ConfigError::new(&field_path(path, "name"), "required field is missing")
        })?;
        Ok(HeaderMatcher {
            name,
            // No match field: Envoy treats the matcher as `present_match: true`.
            kind: kind.map_or(HeaderMatch::Present(true), |(_, kind)| kind),
            invert,
            treat_missing_as_empty,
        })
    }

    /// Judges the header `name` of `headers`. A header sent more than once
    /// is judged value by value, as Envoy 1.40 does
    /// (`envoy.reloadable_features.match_headers_individually`, on since
    /// 1.39): it matches when any value does (inverted: when none does).
    pub fn matches_in(&self, headers: &HeaderPairs<'_>) -> bool {
        // A loop, not iterator adapters: opt-level z keeps those as calls.
        let mut entries = headers.iter();
        let mut present = false;
        while let Some(value) = entries.next_named(self.name.as_bytes()) {
            present = true;
            if self.value_matches(value) {
                return !self.invert;
            }
        }
        if present {
            self.invert
        } else {
            self.missing_matches()
        }
    }

    /// Envoy: a missing header matches only a presence test that expects
    /// it missing, whatever `invert_match` says of other tests, unless it
    /// is treated as empty.
    fn missing_matches(&self) -> bool {
        if self.treat_missing_as_empty {
            return self.value_matches(b"") != self.invert;
        }
        match self.kind {
            HeaderMatch::Present(present) => present == self.invert,
            _ => false,
        }
    }

    /// Whether one present value satisfies the match (before `invert`).
    fn value_matches(&self, value: &[u8]) -> bool {
        match &self.kind {
            HeaderMatch::Present(present) => *present,
            HeaderMatch::String(matcher) => matcher.matches(value),
            HeaderMatch::LegacyExact(expected) => {
                expected.is_empty() || value == expected.as_bytes()
            }
            HeaderMatch::Range { start, end } => std::str::from_utf8(value)
                .ok()
                .and_then(parse_i64)
                .is_some_and(|n| *start <= n && n < *end),
        }
    }

    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"name\":");
        json::write_string(out, &self.name);
        match &self.kind {
            HeaderMatch::Present(present) => {
                out.push_str(&format!(",\"present_match\":{present}"));
            }
            HeaderMatch::String(matcher) => {
                out.push_str(",\"string_match\":");
                matcher.write_json(out);
            }
            HeaderMatch::LegacyExact(value) => {
                out.push_str(",\"exact_match\":");
                json::write_string(out, value);
            }
            HeaderMatch::Range { start, end } => {
                out.push_str(&format!(
                    ",\"range_match\":{{\"start\":\"{start}\",\"end\":\"{end}\"}}"
                ));
            }
        }
        if self.invert {
            out.push_str(",\"invert_match\":true");
        }
        if self.treat_missing_as_empty {
            out.push_str(",\"treat_missing_header_as_empty\":true");
        }
        out.push('}');
    }
}

/// A header name in a matcher: a token or a pseudo-header, lower-cased.
fn header_matcher_name(path: &str, name: &str) -> Result<String, ConfigError> {
    let token = name.strip_prefix(':').unwrap_or(name);
    if !crate::headers::is_token(token) {
        return Err(ConfigError::new(
            path,
            format!(
                "{} is not a valid header name (RFC 9110 token, or a :pseudo-header)",
                quoted(name)
            ),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

fn parse_range(path: &str, value: &Json) -> Result<HeaderMatch, ConfigError> {
    let object = expect_object(path, value)?;
    let (mut start, mut end) = (None, None);
    for (key, value) in object {
        let field = field_path(path, key);
        let slot = match key.as_str() {
            "start" => &mut start,
            "end" => &mut end,
            _ => return Err(unknown_field(&field, &["start", "end"])),
        };
        *slot = Some(parse_int_field(&field, value)?);
    }
    Ok(HeaderMatch::Range {
        start: start.unwrap_or(0),
        end: end.unwrap_or(0),
    })
}

/// An int64 as protobuf's JSON writes it: a number or a decimal string.
fn parse_int_field(path: &str, value: &Json) -> Result<i64, ConfigError> {
    let text = match value {
        Json::Number(text) | Json::String(text) => text,
        other => {
            return Err(ConfigError::new(
                path,
                format!("expected an integer, got {}", other.kind()),
            ))
        }
    };
    parse_i64(text)
        .ok_or_else(|| ConfigError::new(path, format!("{} is not a 64-bit integer", quoted(text))))
}

/// `absl::SimpleAtoi`: optional sign, decimal digits, surrounding
/// whitespace allowed.
fn parse_i64(text: &str) -> Option<i64> {
    text.trim_matches(|c: char| c.is_ascii_whitespace())
        .parse()
        .ok()
}

/// Envoy's `QueryParameterMatcher`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryParameterMatcher {
    pub name: String,
    pub kind: QueryMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryMatch {
    /// Neither field set: the parameter must be there.
    Present,
    /// `present_match`: whether the parameter is there must equal this.
    PresentMatch(bool),
    String(StringMatcher),
}

impl QueryParameterMatcher {
    pub fn parse(path: &str, value: &Json) -> Result<QueryParameterMatcher, ConfigError> {
        let object = expect_object(path, value)?;
        let mut name = None;
        let mut kind = QueryMatch::Present;
        let mut set: Option<&str> = None;
        for (key, value) in object {
            let field = field_path(path, key);
            let parsed = match key.as_str() {
                "name" => {
                    let text = expect_string(&field, value)?;
                    if text.is_empty() || text.len() > 1024 {
                        return Err(ConfigError::new(&field, "must be 1 to 1024 bytes long"));
                    }
                    name = Some(text.to_string());
                    continue;
                }
                "string_match" => QueryMatch::String(StringMatcher::parse(&field, value)?),
                "present_match" => QueryMatch::PresentMatch(expect_bool(&field, value)?),
                _ => {
                    return Err(unknown_field(
                        &field,
                        &["name", "string_match", "present_match"],
                    ))
                }
            };
            if let Some(other) = set {
                return Err(ConfigError::new(
                    &field,
                    format!(
                        "only one of string_match, present_match may be set ({other} is set too)"
                    ),
                ));
            }
            set = Some(key.as_str());
            kind = parsed;
        }
        let name = name.ok_or_else(|| {
            ConfigError::new(&field_path(path, "name"), "required field is missing")
        })?;
        Ok(QueryParameterMatcher { name, kind })
    }

    /// Judges the first value of the parameter in `path`'s query string,
    /// which Envoy's router reads without percent-decoding.
    pub fn matches(&self, path: &[u8]) -> bool {
        let value = first_query_value(path, self.name.as_bytes());
        match &self.kind {
            QueryMatch::PresentMatch(present) => value.is_some() == *present,
            QueryMatch::Present => value.is_some(),
            QueryMatch::String(matcher) => value.is_some_and(|v| matcher.matches(v)),
        }
    }

    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"name\":");
        json::write_string(out, &self.name);
        match &self.kind {
            QueryMatch::Present => {}
            QueryMatch::PresentMatch(present) => {
                out.push_str(&format!(",\"present_match\":{present}"))
            }
            QueryMatch::String(matcher) => {
                out.push_str(",\"string_match\":");
                matcher.write_json(out);
            }
        }
        out.push('}');
    }
}

/// Envoy's `QueryParamsMulti::parseQueryString` + `getFirstValue`: the
/// query starts after the first `?`, parameters split on `&`, a name ends
/// at the first `=` (a bare name has the value ""), nothing is decoded.
fn first_query_value<'a>(path: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let start = path.iter().position(|&b| b == b'?')? + 1;
    path[start..].split(|&b| b == b'&').find_map(|param| {
        let (key, value) = match param.iter().position(|&b| b == b'=') {
            Some(eq) => (&param[..eq], &param[eq + 1..]),
            None => (param, &param[param.len()..]),
        };
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Json {
        json::parse(text.as_bytes()).unwrap()
    }

    fn string_matcher(text: &str) -> StringMatcher {
        StringMatcher::parse("m", &json(text)).unwrap()
    }

    fn header_matcher(text: &str) -> HeaderMatcher {
        HeaderMatcher::parse("h", &json(text)).unwrap()
    }

    fn error_of<T: fmt::Debug>(result: Result<T, ConfigError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn regex_literal_prefix_stops_at_the_first_meaningful_character() {
        let cases: &[(&str, &str)] = &[
            ("/api/v1/items/[0-9]+", "/api/v1/items/"),
            ("^/api/.*", "/api/"),
            ("/a/b", "/a/b"),
            ("/ab?", "/a"),
            ("/ab*", "/a"),
            ("/ab+", "/a"),
            ("/ab{2}", "/a"),
            ("/a.c", "/a"),
            (r"/a\.c", "/a"),
            ("(?i)/api", ""),
            ("/api|/v2", ""),
            ("/(a|b)", ""),
            ("/a c", "/a"),
            ("/é", "/"),
            ("", ""),
        ];
        for (source, prefix) in cases {
            assert_eq!(literal_prefix(source), prefix.as_bytes(), "{source}");
        }
    }

    #[test]
    fn the_regex_prefilter_never_refuses_a_match() {
        let patterns = [
            "/api/v1/items/[0-9]+",
            "/ab?c",
            "/ab*",
            "/ab+",
            "/x{0,2}y",
            "/a.c",
            "^/a$",
            "/(a|b)c",
            "/é.*",
        ];
        let inputs: &[&[u8]] = &[
            b"/api/v1/items/42",
            b"/api/v1/items/",
            b"/api/v1/item",
            b"/ac",
            b"/abc",
            b"/a",
            b"/abbb",
            b"/y",
            b"/xxy",
            b"/abc",
            b"/bc",
            b"/\xC3\xA9x",
            b"/\xE9x",
            b"",
        ];
        for source in patterns {
            let pattern = Pattern::new(source).unwrap();
            let unfiltered = Pattern {
                prefix: Box::default(),
                ..pattern.clone()
            };
            for input in inputs {
                assert_eq!(
                    pattern.is_match(input),
                    unfiltered.is_match(input),
                    "{source} on {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
        assert!(Pattern::new("/ab+").unwrap().is_match(b"/abbb"));
        assert!(Pattern::new("/api/v1/items/[0-9]+")
            .unwrap()
            .is_match(b"/api/v1/items/42"));
    }

    #[test]
    fn string_matchers_with_and_without_case() {
        let cases: &[(&str, &str, bool)] = &[
            (r#"{"exact":"GET"}"#, "GET", true),
            (r#"{"exact":"GET"}"#, "get", false),
            (r#"{"exact":"GET","ignore_case":true}"#, "get", true),
            (r#"{"exact":""}"#, "", true),
            (r#"{"exact":""}"#, "x", false),
            (r#"{"prefix":"/api"}"#, "/api/v1", true),
            (r#"{"prefix":"/api"}"#, "/API/v1", false),
            (r#"{"prefix":"/api","ignore_case":true}"#, "/API/v1", true),
            (r#"{"prefix":"/api"}"#, "/ap", false),
            (r#"{"suffix":".html"}"#, "/a.html", true),
            (r#"{"suffix":".HTML","ignore_case":true}"#, "/a.html", true),
            (r#"{"suffix":".html"}"#, "html", false),
            (r#"{"contains":"bot"}"#, "Googlebot/2.1", true),
            (
                r#"{"contains":"BOT","ignore_case":true}"#,
                "Googlebot/2.1",
                true,
            ),
            (r#"{"contains":"BOT"}"#, "Googlebot/2.1", false),
            (r#"{"safe_regex":{"regex":"v[0-9]+"}}"#, "v12", true),
            (r#"{"safe_regex":{"regex":"v[0-9]+"}}"#, "xv12", false),
            (r#"{"safe_regex":{"regex":"a|b"}}"#, "ab", false),
            (r#"{"safe_regex":{"regex":"(?i)abc"}}"#, "ABC", true),
        ];
        for (config, input, expected) in cases {
            assert_eq!(
                string_matcher(config).matches(input.as_bytes()),
                *expected,
                "{config} on {input:?}"
            );
        }
    }

    #[test]
    fn string_matcher_refusals_name_the_path_and_reason() {
        let cases: &[(&str, &str)] = &[
            (r#"{}"#, "m: one of exact, prefix, suffix, contains, safe_regex is required"),
            (
                r#"{"exact":"a","prefix":"b"}"#,
                "m.prefix: only one of exact, prefix, suffix, contains, safe_regex may be set (exact is set too)",
            ),
            (
                r#"{"safe_regex":{"regex":"a"},"ignore_case":true}"#,
                "m.ignore_case: ignore_case has no effect for safe_regex (write (?i) in the regex)",
            ),
            (r#"{"safe_regex":{"regex":"(a"}}"#, r#"m.safe_regex.regex: regex "(a" is not supported:"#),
            (r#"{"safe_regex":{"regex":"\\p{Greek}"}}"#, r#"m.safe_regex.regex: regex "\\p{Greek}" is not supported:"#),
            (r#"{"safe_regex":{}}"#, "m.safe_regex.regex: required field is missing"),
            (r#"{"safe_regex":{"regex":"a","max":1}}"#, "m.safe_regex.max: unknown field (accepted: regex, google_re2)"),
            (r#"{"prefix":""}"#, "m.prefix: must not be empty"),
            (r#"{"exact":1}"#, "m.exact: expected a string, got a number"),
            (r#"{"custom":{}}"#, "m.custom: not supported by this filter"),
            (r#"{"regex":"a"}"#, "m.regex: unknown field (accepted: exact, prefix, suffix, contains, safe_regex, ignore_case)"),
        ];
        for (config, expected) in cases {
            let got = error_of(StringMatcher::parse("m", &json(config)));
            assert!(
                got.starts_with(expected),
                "{config}\n got: {got}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn header_matcher_follows_envoys_table_for_missing_and_inverted() {
        // (matcher, value, expected)
        let cases: &[(&str, Option<&str>, bool)] = &[
            (r#"{"name":"x"}"#, Some("v"), true),
            (r#"{"name":"x"}"#, None, false),
            (r#"{"name":"x","present_match":true}"#, None, false),
            (r#"{"name":"x","present_match":false}"#, None, true),
            (r#"{"name":"x","present_match":false}"#, Some("v"), false),
            (
                r#"{"name":"x","present_match":true,"invert_match":true}"#,
                None,
                true,
            ),
            (
                r#"{"name":"x","present_match":true,"invert_match":true}"#,
                Some("v"),
                false,
            ),
            // A missing header never matches a value test, inverted or not.
            (
                r#"{"name":"x","string_match":{"exact":"v"},"invert_match":true}"#,
                None,
                false,
            ),
            (
                r#"{"name":"x","string_match":{"exact":"v"},"invert_match":true}"#,
                Some("w"),
                true,
            ),
            (
                r#"{"name":"x","string_match":{"exact":"v"},"invert_match":true}"#,
                Some("v"),
                false,
            ),
            (
                r#"{"name":"x","string_match":{"exact":""},"treat_missing_header_as_empty":true}"#,
                None,
                true,
            ),
            (
                r#"{"name":"x","string_match":{"exact":"v"},"treat_missing_header_as_empty":true,"invert_match":true}"#,
                None,
                true,
            ),
            (r#"{"name":"x","exact_match":""}"#, Some("anything"), true),
            (r#"{"name":"x","exact_match":"a"}"#, Some("b"), false),
            (
                r#"{"name":"x","range_match":{"start":"10","end":20}}"#,
                Some("15"),
                true,
            ),
            (
                r#"{"name":"x","range_match":{"start":10,"end":20}}"#,
                Some("20"),
                false,
            ),
            (
                r#"{"name":"x","range_match":{"start":-5,"end":0}}"#,
                Some("-5"),
                true,
            ),
            (
                r#"{"name":"x","range_match":{"start":0,"end":9}}"#,
                Some("1.5"),
                false,
            ),
            (r#"{"name":"x","prefix_match":"a"}"#, Some("abc"), true),
            (
                r#"{"name":"x","safe_regex_match":{"regex":"a.c"}}"#,
                Some("abc"),
                true,
            ),
        ];
        for (config, value, expected) in cases {
            assert_eq!(
                {
                    let map = HeaderPairs::encode(
                        &value.map(|v| ("x", v)).into_iter().collect::<Vec<_>>(),
                    );
                    header_matcher(config).matches_in(&HeaderPairs::new(&map))
                },
                *expected,
                "{config} on {value:?}"
            );
        }
    }

    #[test]
    fn header_matcher_names_are_lower_cased_and_may_be_pseudo_headers() {
        assert_eq!(header_matcher(r#"{"name":"X-A"}"#).name, "x-a");
        assert_eq!(header_matcher(r#"{"name":":Method"}"#).name, ":method");
        let error = error_of(HeaderMatcher::parse("h", &json(r#"{"name":"a b"}"#)));
        assert_eq!(
            error,
            r#"h.name: "a b" is not a valid header name (RFC 9110 token, or a :pseudo-header)"#
        );
        let error = error_of(HeaderMatcher::parse(
            "h",
            &json(r#"{"name":"x","present_match":true,"string_match":{"exact":"a"}}"#),
        ));
        assert_eq!(
            error,
            "h.string_match: only one way of matching may be set (present_match is set too)"
        );
        assert_eq!(
            error_of(HeaderMatcher::parse(
                "h",
                &json(r#"{"present_match":true}"#)
            )),
            "h.name: required field is missing"
        );
        assert!(error_of(HeaderMatcher::parse(
            "h",
            &json(r#"{"name":"x","value":"a"}"#)
        ))
        .starts_with("h.value: unknown field (accepted: name, string_match"));
        assert_eq!(
            error_of(HeaderMatcher::parse(
                "h",
                &json(r#"{"name":"x","range_match":{"start":"ten"}}"#)
            )),
            r#"h.range_match.start: "ten" is not a 64-bit integer"#
        );
    }

    #[test]
    fn repeated_headers_are_matched_value_by_value() {
        let bytes = HeaderPairs::encode(&[("x-a", "abc"), ("x-b", "2"), ("x-a", "def")]);
        let pairs = HeaderPairs::new(&bytes);
        let judge = |config: &str| header_matcher(config).matches_in(&pairs);
        assert!(judge(r#"{"name":"x-a","string_match":{"exact":"abc"}}"#));
        assert!(judge(r#"{"name":"x-a","string_match":{"exact":"def"}}"#));
        assert!(!judge(
            r#"{"name":"x-a","string_match":{"exact":"abc,def"}}"#
        ));
        // Inverted: no value may match.
        assert!(!judge(
            r#"{"name":"x-a","string_match":{"exact":"abc"},"invert_match":true}"#
        ));
        assert!(judge(
            r#"{"name":"x-a","string_match":{"exact":"xyz"},"invert_match":true}"#
        ));
        assert!(!judge(
            r#"{"name":"x-c","string_match":{"exact":"xyz"},"invert_match":true}"#
        ));
        assert_eq!(
            pairs.values("x-a").collect::<Vec<_>>(),
            [&b"abc"[..], b"def"]
        );
    }

    #[test]
    fn regexes_read_bytes_as_latin1_as_envoys_re2() {
        let matcher = |regex: &str| {
            string_matcher(&format!(r#"{{"safe_regex":{{"regex":{}}}}}"#, {
                let mut out = String::new();
                json::write_string(&mut out, regex);
                out
            }))
        };
        let input = "aéc".as_bytes(); // 61 c3 a9 63
        assert!(!matcher("a.c").matches(input));
        assert!(matcher("a..c").matches(input));
        assert!(matcher(r"a\xC3\xA9c").matches(input));
        assert!(
            matcher("aéc").matches(input),
            "a literal é is its two bytes"
        );
        assert!(matcher("a.+").matches(b"a\xff\x80"), "not UTF-8 at all");
    }

    /// The simple-pattern path against regex-lite (what decided every
    /// regex before it), on random patterns of its grammar and random
    /// inputs, ASCII and not.
    #[test]
    fn simple_patterns_match_as_regex_lite_does() {
        let atoms = [
            "a",
            "b",
            "x",
            "0",
            "9",
            "/",
            "-",
            " ",
            r"\.",
            r"\/",
            r"\d",
            r"\w",
            r"\s",
            r"\D",
            r"\W",
            ".",
            "[a-c]",
            "[^a]",
            "[0-9]",
            "[a-z0-9_]",
            "[-x]",
            r"[\d.]",
            "[^/]",
            "[a-]",
            r"[\-a]",
            "[^0-9a]",
        ];
        let repetitions = [
            "", "", "", "*", "+", "?", "{2}", "{1,3}", "{2,}", "{0}", "*?", "+?", "??",
        ];
        let alphabet = b"ab x09/-._\n\xe9A";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let (mut simple, mut compared) = (0, 0);
        for _ in 0..3000 {
            let mut source = String::new();
            if next(4) == 0 {
                source.push('^');
            }
            for _ in 0..1 + next(5) {
                source.push_str(atoms[next(atoms.len())]);
                source.push_str(repetitions[next(repetitions.len())]);
            }
            if next(4) == 0 {
                source.push('$');
            }
            let Ok(pattern) = Pattern::new(&source) else {
                continue;
            };
            let Some(fast) = &pattern.simple else {
                continue;
            };
            simple += 1;
            for _ in 0..30 {
                let input: Vec<u8> = (0..next(9))
                    .map(|_| alphabet[next(alphabet.len())])
                    .collect();
                let expected = match std::str::from_utf8(&input) {
                    Ok(text) if text.is_ascii() => pattern.regex.is_match(text),
                    _ => pattern.regex.is_match(&latin1(&input)),
                };
                assert_eq!(
                    fast.is_match(&input),
                    expected,
                    "{source} on {:?}",
                    String::from_utf8_lossy(&input)
                );
                compared += 1;
            }
        }
        assert!(
            simple > 500 && compared > 15_000,
            "{simple} simple patterns"
        );
    }

    #[test]
    fn simple_patterns_are_only_those_one_pass_decides() {
        for source in [
            r"/api/v1/items/[0-9]+",
            r"\d{3}-\d{4}",
            "a*b",
            ".*",
            "[^/]+/x?",
        ] {
            assert!(Simple::parse(source).is_some(), "{source}");
        }
        for source in [
            "[0-9]+5",
            "a*a",
            ".*x",
            "(ab)+",
            "a|b",
            "a^b",
            "(?i)a",
            r"\bx",
            "é",
            "[[:alpha:]]",
            "a{,3}",
            r"\<a",
        ] {
            assert!(Simple::parse(source).is_none(), "{source}");
        }
    }

    #[test]
    fn header_pairs_survive_malformed_buffers() {
        let good = HeaderPairs::encode(&[("a", "b"), ("c", "d")]);
        for cut in 0..good.len() {
            let pairs = HeaderPairs::new(&good[..cut]);
            assert!(pairs.iter().count() <= 2);
        }
        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderPairs::new(&huge).iter().count(), 0);
    }

    #[test]
    fn query_parameters_as_envoys_router_reads_them() {
        let q = |config: &str| QueryParameterMatcher::parse("q", &json(config)).unwrap();
        let cases: &[(&str, &str, bool)] = &[
            (r#"{"name":"debug"}"#, "/a?debug", true),
            (r#"{"name":"debug"}"#, "/a?x=1", false),
            (
                r#"{"name":"debug","present_match":true}"#,
                "/a?debug=0",
                true,
            ),
            (r#"{"name":"debug","present_match":false}"#, "/a", true),
            (
                r#"{"name":"debug","present_match":false}"#,
                "/a?debug",
                false,
            ),
            (
                r#"{"name":"v","string_match":{"exact":"1"}}"#,
                "/a?v=1&v=2",
                true,
            ),
            (
                r#"{"name":"v","string_match":{"exact":"2"}}"#,
                "/a?v=1&v=2",
                false,
            ),
            (r#"{"name":"v","string_match":{"exact":""}}"#, "/a?v", true),
            (
                r#"{"name":"v","string_match":{"exact":"a b"}}"#,
                "/a?v=a%20b",
                false,
            ),
            (
                r#"{"name":"v","string_match":{"exact":"a%20b"}}"#,
                "/a?v=a%20b",
                true,
            ),
            (
                r#"{"name":"V","string_match":{"exact":"1"}}"#,
                "/a?v=1",
                false,
            ),
            (
                r#"{"name":"v","string_match":{"exact":"x=y"}}"#,
                "/a?v=x=y",
                true,
            ),
            (
                r#"{"name":"v","string_match":{"exact":"1"}}"#,
                "/a?w=0&&v=1",
                true,
            ),
        ];
        for (config, path, expected) in cases {
            assert_eq!(
                q(config).matches(path.as_bytes()),
                *expected,
                "{config} on {path}"
            );
        }
        assert_eq!(
            error_of(QueryParameterMatcher::parse("q", &json(r#"{"name":""}"#))),
            "q.name: must be 1 to 1024 bytes long"
        );
    }

    #[test]
    fn json_round_trips() {
        for config in [
            r#"{"name":"x","string_match":{"safe_regex":{"regex":"a.*"}},"invert_match":true}"#,
            r#"{"name":":method","string_match":{"exact":"GET","ignore_case":true}}"#,
            r#"{"name":"x","present_match":false,"treat_missing_header_as_empty":true}"#,
            r#"{"name":"x","range_match":{"start":"-1","end":"9"}}"#,
            r#"{"name":"x","exact_match":""}"#,
        ] {
            let matcher = header_matcher(config);
            let mut out = String::new();
            matcher.write_json(&mut out);
            assert_eq!(header_matcher(&out), matcher, "{out}");
        }
    }
}
