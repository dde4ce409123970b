//! Property tests of the pure core: the JSON reader, the configuration
//! parser, the `%...%` formatter and the plan, on generated input.
//!
//! What must hold for every input:
//! - nothing panics (a panic in the VM kills it): arbitrary bytes, arbitrary
//!   JSON documents, arbitrary strings as values and names;
//! - an accepted configuration re-serializes (`Config::to_json`) to JSON that
//!   parses back to an equal configuration, and the two plans do the same
//!   thing to the same stream;
//! - applying a plan matches a direct model of Envoy's
//!   `HeaderParser::evaluateHeaders` (removals, then every decision against
//!   the headers as they stand, then overwrites, then appends);
//! - nothing the plan writes holds CR, LF or NUL, whatever the request
//!   carried into a `%REQ(..)%`: no header can be injected;
//! - every configuration error is one line.
//!
//! Each property runs a fixed number of cases (see `CASES_*`) from a fresh
//! random seed; the generators are built so that most structured
//! configurations are accepted (the interesting half) and the tallies printed
//! with `--nocapture` say how many were. A failure prints the shrunk input.

use std::borrow::Cow;
use std::cell::Cell;

use header_filter::config::{is_token, AppendAction, HeaderName};
use header_filter::format::{attribute, Format, Reader, Side};
use header_filter::json::{self, write_string};
use header_filter::matcher::HeaderPairs;
use header_filter::plan::{Host, Outcome, Scratch};
use header_filter::{Config, Plan};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

const CASES_BYTES: u32 = 3000;
const CASES_JSON: u32 = 1000;
const CASES_STRUCTURED: u32 = 1500;
const CASES_FORMAT: u32 = 3000;
const CASES_NAMES: u32 = 2000;

/// Runs `test` on `cases` values of `strategy`; panics with the shrunk
/// failing input.
fn check<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    if let Err(error) = runner.run(&strategy, test) {
        panic!("{name}: {error}");
    }
    eprintln!("{name}: {cases} cases passed");
}

// ---------------------------------------------------------------- generators

/// Header names: mostly writable tokens from a small pool (so rules meet
/// each other and the stream's headers), some upper-case, some refused.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(vec!["x-a", "x-b", "x-evil", "x-c", "via", "x-%"]).prop_map(String::from),
        3 => "[a-z][a-z0-9-]{0,8}",
        3 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}",
        1 => prop::sample::select(vec![
            "", ":path", ":authority", "host", "Host", "bad name", "x\u{e9}", "a\r\nb", "x\0", "x:y",
            "a\"b", "tab\there",
        ]).prop_map(String::from),
    ]
}

/// A header name as a `%REQ(..)%` argument: the pool the stream holds,
/// pseudo-headers, and some that are not tokens.
fn command_argument() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => prop::sample::select(vec!["x-a", "x-b", "x-evil", "X-A", "x-missing", ":authority", ":path", "%"])
            .prop_map(String::from),
        1 => "[ -~]{0,6}",
    ]
}

/// One piece of a header value: literals, `%%`, every command with its
/// options, and broken commands.
fn value_fragment() -> impl Strategy<Value = String> {
    let header_command = (
        prop_oneof![30 => Just("REQ"), 15 => Just("RESP"), 1 => Just("req"), 1 => Just("FOO")],
        command_argument(),
        prop::option::of(command_argument()),
        prop::option::weighted(0.3, 0usize..20),
    )
        .prop_map(|(command, name, alternative, max_len)| {
            let mut text = format!("%{command}({name}");
            if let Some(alternative) = alternative {
                text.push('?');
                text.push_str(&alternative);
            }
            text.push(')');
            if let Some(max_len) = max_len {
                text.push_str(&format!(":{max_len}"));
            }
            text.push('%');
            text
        });
    let property = prop::sample::select(vec![
        "%DOWNSTREAM_REMOTE_ADDRESS%",
        "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        "%DOWNSTREAM_LOCAL_ADDRESS%",
        "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%",
        "%PROTOCOL%",
        "%UPSTREAM_REMOTE_ADDRESS%",
        "%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    ])
    .prop_map(String::from);
    // Rare: one broken fragment refuses the whole configuration.
    let broken = prop::sample::select(vec![
        "%",
        "%FOO%",
        "%REQ()%",
        "%REQ(x):abc%",
        "%REQ(x)y%",
        "%PROTOCOL_WITHOUT_PORT%",
        "%START_TIME%",
        "% %",
        "%REQ(a b)%",
        "\r\n",
        "\0",
        "\n",
        "%REQ(x?)%",
    ])
    .prop_map(String::from);
    prop_oneof![
        8 => "[a-zA-Z0-9 ,;=/\t\u{e9}\u{1f600}-]{0,8}",
        3 => Just("%%".to_string()),
        12 => header_command,
        4 => property,
        1 => broken,
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop::collection::vec(value_fragment(), 0..5).prop_map(|parts| parts.concat())
}

fn append_action() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.7,
        prop_oneof![
            10 => prop::sample::select(AppendAction::ALL.map(AppendAction::as_str).to_vec()),
            1 => Just("APPEND"),
        ]
        .prop_map(String::from),
    )
}

/// One `*_headers_to_add` entry as JSON text.
fn rule_json() -> impl Strategy<Value = String> {
    (
        header_name(),
        header_value(),
        append_action(),
        prop::option::weighted(0.4, any::<bool>()),
        prop::option::weighted(0.05, any::<bool>()),
        prop::bool::weighted(0.02),
    )
        .prop_map(|(name, value, action, keep_empty, append, extra)| {
            let mut out = String::from("{\"header\":{\"key\":");
            write_string(&mut out, &name);
            out.push_str(",\"value\":");
            write_string(&mut out, &value);
            out.push('}');
            if let Some(action) = action {
                out.push_str(",\"append_action\":");
                write_string(&mut out, &action);
            }
            if let Some(keep) = keep_empty {
                out.push_str(&format!(",\"keep_empty_value\":{keep}"));
            }
            if let Some(append) = append {
                out.push_str(&format!(",\"append\":{append}"));
            }
            if extra {
                out.push_str(",\"raw_value\":\"eA==\"");
            }
            out.push('}');
            out
        })
}

fn json_list(items: Vec<String>) -> String {
    format!("[{}]", items.join(","))
}

fn names_json() -> impl Strategy<Value = String> {
    prop::collection::vec(header_name(), 0..4).prop_map(|names| {
        json_list(
            names
                .iter()
                .map(|n| {
                    let mut s = String::new();
                    write_string(&mut s, n);
                    s
                })
                .collect(),
        )
    })
}

/// A whole configuration as JSON text: Envoy's form (most of the time) or
/// Maistra's flat form.
fn config_json() -> impl Strategy<Value = String> {
    let envoy_form = (
        prop::option::weighted(0.8, prop::collection::vec(rule_json(), 1..6)),
        prop::option::weighted(0.8, prop::collection::vec(rule_json(), 1..6)),
        prop::option::weighted(0.5, names_json()),
        prop::option::weighted(0.5, names_json()),
        prop::bool::weighted(0.02),
    )
        .prop_map(
            |(request, response, request_remove, response_remove, extra)| {
                let mut fields = Vec::new();
                if let Some(rules) = request {
                    fields.push(format!("\"request_headers_to_add\":{}", json_list(rules)));
                }
                if let Some(rules) = response {
                    fields.push(format!("\"response_headers_to_add\":{}", json_list(rules)));
                }
                if let Some(names) = request_remove {
                    fields.push(format!("\"request_headers_to_remove\":{names}"));
                }
                if let Some(names) = response_remove {
                    fields.push(format!("\"response_headers_to_remove\":{names}"));
                }
                if extra {
                    fields.push("\"extra\":1".to_string());
                }
                format!("{{{}}}", fields.join(","))
            },
        );
    let flat_form =
        prop::collection::btree_map(header_name(), header_value(), 1..5).prop_map(|members| {
            let fields: Vec<String> = members
                .iter()
                .map(|(name, value)| {
                    let mut s = String::new();
                    write_string(&mut s, name);
                    s.push(':');
                    write_string(&mut s, value);
                    s
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        });
    prop_oneof![5 => envoy_form, 1 => flat_form]
}

/// One `HeaderMutation` of Envoy's `header_mutation` config as JSON text.
fn header_mutation_json() -> impl Strategy<Value = String> {
    let quoted = |text: &str| {
        let mut out = String::new();
        write_string(&mut out, text);
        out
    };
    prop_oneof![
        4 => rule_json().prop_map(|rule| format!("{{\"append\":{rule}}}")),
        1 => header_name().prop_map(move |name| format!("{{\"remove\":{}}}", quoted(&name))),
        2 => (
            prop::sample::select(vec!["exact", "prefix", "suffix", "contains"]),
            "[a-z:-]{0,4}",
            any::<bool>(),
        )
            .prop_map(move |(kind, text, ignore_case)| {
                format!(
                    "{{\"remove_on_match\":{{\"key_matcher\":{{\"{kind}\":{},\"ignore_case\":{ignore_case}}}}}}}",
                    quoted(&text)
                )
            }),
        1 => "[a-z:|-]{0,4}(\\.\\*)?".prop_map(move |regex| format!(
            "{{\"remove_on_match\":{{\"key_matcher\":{{\"safe_regex\":{{\"regex\":{}}}}}}}}}",
            quoted(&regex)
        )),
    ]
}

/// One query parameter mutation as JSON text; names sometimes hold what
/// a name may not.
fn query_mutation_json() -> impl Strategy<Value = String> {
    let quoted = |text: &str| {
        let mut out = String::new();
        write_string(&mut out, text);
        out
    };
    prop_oneof![
        3 => (
            prop_oneof![12 => "[a-c%]{1,3}", 1 => "[a-c=& ]{0,2}"],
            header_value(),
            append_action(),
        )
            .prop_map(
            move |(key, value, action)| {
                let action = action.map_or(String::new(), |a| format!(",\"action\":{}", quoted(&a)));
                format!(
                    "{{\"append\":{{\"record\":{{\"key\":{},\"value\":{}}}{action}}}}}",
                    quoted(&key),
                    quoted(&value)
                )
            }
        ),
        1 => "[a-c%]{0,3}".prop_map(move |key| format!("{{\"remove\":{}}}", quoted(&key))),
    ]
}

/// A whole `{"mutations": ...}` configuration as JSON text.
fn mutations_json() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(header_mutation_json(), 0..4),
        prop::collection::vec(header_mutation_json(), 0..4),
        prop::collection::vec(query_mutation_json(), 0..4),
    )
        .prop_map(|(request, response, query)| {
            format!(
                "{{\"mutations\":{{\"request_mutations\":{},\"response_mutations\":{},\"query_parameter_mutations\":{}}}}}",
                json_list(request),
                json_list(response),
                json_list(query)
            )
        })
}

/// Header values a client can send: arbitrary bytes, with CR, LF and NUL
/// and a ready-made injection attempt well represented.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..24),
        3 => prop::collection::vec(
            prop::sample::select(vec![b'a', b'\r', b'\n', b'\0', b'\t', b' ', 0x80, 0xff, b':']),
            0..12,
        ),
        1 => Just(b"a\r\nx-injected: 1".to_vec()),
        1 => Just(b"ok".to_vec()),
    ]
}

fn header_list() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                "x-a",
                "x-b",
                "x-evil",
                "x-c",
                "via",
                ":authority",
                ":path",
                "%",
            ]),
            hostile_bytes(),
        )
            .prop_map(|(n, v)| (n.to_string(), v)),
        2..10,
    )
}

/// A JSON document (as text) of any shape, keys biased towards the
/// configuration's own field names so the parser goes deep.
fn arbitrary_json() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        3 => prop::sample::select(vec![
            "request_headers_to_add", "response_headers_to_add", "request_headers_to_remove",
            "response_headers_to_remove", "header", "key", "value", "append_action",
            "keep_empty_value", "append", "x-a",
        ]).prop_map(String::from),
        1 => any::<String>(),
    ];
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_map(|f| if f.is_finite() {
            f.to_string()
        } else {
            "-0.5e-7".into()
        }),
        any::<i64>().prop_map(|i| i.to_string()),
        prop_oneof![any::<String>(), header_value(), header_name()].prop_map(|s| {
            let mut out = String::new();
            write_string(&mut out, &s);
            out
        }),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(json_list),
            prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|members| {
                let fields: Vec<String> = members
                    .into_iter()
                    .map(|(k, v)| {
                        let mut s = String::new();
                        write_string(&mut s, &k);
                        format!("{s}:{v}")
                    })
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

// ---------------------------------------------------------------- the fake stream

/// Two ordered, multi-valued header maps with Envoy's semantics (`setCopy`
/// = remove all + add at the end), fixed stream properties, and a log of
/// every write the plan asked for.
#[derive(Debug, Clone, Default, PartialEq)]
struct Stream {
    request: Vec<(String, Vec<u8>)>,
    response: Vec<(String, Vec<u8>)>,
    writes: Vec<(Side, String, Vec<u8>)>,
}

impl Stream {
    fn new(request: Vec<(String, Vec<u8>)>, response: Vec<(String, Vec<u8>)>) -> Stream {
        Stream {
            request,
            response,
            writes: Vec::new(),
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

impl Reader for Stream {
    fn header(&self, of: Side, name: &str) -> Option<Vec<u8>> {
        self.map(of)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
    fn property(&self, path: &[u8]) -> Option<Vec<u8>> {
        Some(match path {
            attribute::SOURCE_ADDRESS => b"10.0.0.1:5555".to_vec(),
            attribute::DESTINATION_ADDRESS => b"[::1]:10000".to_vec(),
            attribute::REQUEST_PROTOCOL => b"HTTP/1.1".to_vec(),
            attribute::UPSTREAM_ADDRESS => b"127.0.0.1:8080".to_vec(),
            // Integers and timestamps: 8 bytes little-endian.
            _ => 1_700_000_000_123_456_789i64.to_le_bytes().to_vec(),
        })
    }
}

impl Host for Stream {
    fn add(&mut self, side: Side, name: &str, value: &[u8]) {
        self.writes.push((side, name.to_string(), value.to_vec()));
        self.map_mut(side).push((name.to_string(), value.to_vec()));
    }
    fn replace(&mut self, side: Side, name: &str, value: &[u8]) {
        self.map_mut(side).retain(|(n, _)| n != name);
        self.add(side, name, value);
    }
    fn remove(&mut self, side: Side, name: &str) {
        self.map_mut(side).retain(|(n, _)| n != name);
    }
    fn header_map(&self, side: Side) -> Cow<'_, [u8]> {
        Cow::Owned(HeaderPairs::encode(self.map(side)))
    }
}

/// Request rules, then response rules, as a request passes.
fn run_plan(plan: &Plan, stream: &mut Stream) -> (Outcome, Outcome) {
    let mut scratch = Scratch::new();
    let request = plan.apply(Side::Request, stream, &mut scratch);
    let response = plan.apply(Side::Response, stream, &mut scratch);
    (request, response)
}

/// Envoy's `HeaderParser::evaluateHeaders`, written out directly from its
/// description, over the configuration (not the plan): the reference the
/// plan's two paths (staged and direct) must both agree with.
fn model(config: &Config, side: Side, stream: &mut Stream) -> Outcome {
    let rules = config.rules(side);
    let mut outcome = Outcome::default();
    for name in &rules.remove {
        stream.remove(side, name.as_str());
        outcome.removed += 1;
    }
    let mut decided = Vec::new();
    for rule in &rules.add {
        let value = rule.value.render(side, &*stream);
        if value.is_empty() && !rule.keep_empty_value {
            continue;
        }
        let present = stream.header(side, rule.name.as_str()).is_some();
        let proceed = match rule.action {
            AppendAction::AddIfAbsent => !present,
            AppendAction::OverwriteIfExists => present,
            _ => true,
        };
        if proceed {
            decided.push((rule, value));
        }
    }
    for overwrites in [true, false] {
        for (rule, value) in &decided {
            let is_overwrite = matches!(
                rule.action,
                AppendAction::OverwriteIfExistsOrAdd | AppendAction::OverwriteIfExists
            );
            if is_overwrite != overwrites {
                continue;
            }
            if value.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
                outcome.refused += 1;
                continue;
            }
            if overwrites {
                stream.replace(side, rule.name.as_str(), value);
            } else {
                stream.add(side, rule.name.as_str(), value);
            }
            outcome.written += 1;
        }
    }
    outcome
}

/// A log line of its own: no control character at all (tabs, escapes and
/// form feeds included).
fn is_one_line(text: &str) -> bool {
    !text.chars().any(|c| c.is_ascii_control())
}

// ---------------------------------------------------------------- properties

#[test]
fn arbitrary_bytes_never_panic_and_accepted_ones_round_trip() {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        // Near-JSON: the configuration's own punctuation and words.
        prop::collection::vec(
            prop::sample::select(br#"{}[]:,"\ utnrfale0123456789-+.eE%xREQ()?_"#.to_vec()),
            0..256,
        ),
    ];
    check("arbitrary bytes", CASES_BYTES, bytes, |bytes| {
        let _ = json::parse(&bytes);
        match Config::parse(&bytes) {
            Ok(config) => {
                let again = Config::parse(config.to_json().as_bytes());
                prop_assert_eq!(again, Ok(config));
            }
            Err(error) => prop_assert!(is_one_line(&error.to_string()), "{error}"),
        }
        Ok(())
    });
}

#[test]
fn arbitrary_json_never_panics_and_is_read_as_written() {
    let (documents, accepted) = (Cell::new(0u32), Cell::new(0u32));
    check("arbitrary JSON", CASES_JSON, arbitrary_json(), |text| {
        documents.set(documents.get() + 1);
        // Every generated document is valid JSON without duplicate keys
        // and far from the nesting limit: the reader must take it.
        prop_assert!(json::parse(text.as_bytes()).is_ok(), "{}", text);
        match Config::parse(text.as_bytes()) {
            Ok(config) => {
                accepted.set(accepted.get() + 1);
                let again = Config::parse(config.to_json().as_bytes());
                prop_assert_eq!(again, Ok(config));
            }
            Err(error) => prop_assert!(is_one_line(&error.to_string()), "{error}"),
        }
        Ok(())
    });
    eprintln!(
        "arbitrary JSON: {} documents tried (with shrinking), {} accepted as configurations",
        documents.get(),
        accepted.get()
    );
}

/// Parses `text`. A refused configuration's error must be one line
/// (`None`); an accepted one's canonical JSON must parse back to it and be
/// a fixed point of `to_json` (the configuration and its re-parse).
fn parse_and_round_trip(text: &str) -> Result<Option<(Config, Config)>, TestCaseError> {
    let config = match Config::parse(text.as_bytes()) {
        Ok(config) => config,
        Err(error) => {
            prop_assert!(is_one_line(&error.to_string()), "{error}");
            return Ok(None);
        }
    };
    let canonical = config.to_json();
    let again = Config::parse(canonical.as_bytes());
    prop_assert_eq!(again.as_ref(), Ok(&config), "canonical: {}", canonical);
    let again = again.unwrap();
    prop_assert_eq!(
        again.to_json(),
        canonical.clone(),
        "to_json is a fixed point"
    );
    Ok(Some((config, again)))
}

#[test]
fn accepted_configs_round_trip_to_the_same_plan() {
    let (tried, accepted) = (Cell::new(0u32), Cell::new(0u32));
    let strategy = (config_json(), header_list(), header_list());
    check(
        "round trip",
        CASES_STRUCTURED,
        strategy,
        |(text, request, response)| {
            tried.set(tried.get() + 1);
            let Some((config, again)) = parse_and_round_trip(&text)? else {
                return Ok(());
            };
            accepted.set(accepted.get() + 1);
            let (first, second) = (Plan::compile(&config), Plan::compile(&again));
            let mut a = Stream::new(request.clone(), response.clone());
            let mut b = Stream::new(request, response);
            let outcomes = (run_plan(&first, &mut a), run_plan(&second, &mut b));
            prop_assert_eq!(outcomes.0, outcomes.1);
            prop_assert_eq!(a, b);
            Ok(())
        },
    );
    let (tried, accepted) = (tried.get(), accepted.get());
    eprintln!("round trip: {tried} configurations tried, {accepted} accepted");
    assert!(
        accepted * 5 >= tried,
        "the generator should produce mostly valid configurations: {accepted} of {tried}"
    );
}

#[test]
fn plan_does_what_envoy_evaluate_headers_does() {
    let (staged_or_not, writes) = (Cell::new(0u32), Cell::new(0u32));
    let strategy = (config_json(), header_list(), header_list());
    check(
        "plan vs model",
        CASES_STRUCTURED,
        strategy,
        |(text, request, response)| {
            let Ok(config) = Config::parse(text.as_bytes()) else {
                return Ok(());
            };
            staged_or_not.set(staged_or_not.get() + 1);
            let plan = Plan::compile(&config);
            let mut real = Stream::new(request.clone(), response.clone());
            let mut expected = Stream::new(request, response);
            let mut scratch = Scratch::new();
            for side in [Side::Request, Side::Response] {
                let got = plan.apply(side, &mut real, &mut scratch);
                let want = model(&config, side, &mut expected);
                prop_assert_eq!(got, want, "{:?} outcome of {}", side, text);
                prop_assert_eq!(
                    &real.map(side),
                    &expected.map(side),
                    "{:?} of {}",
                    side,
                    text
                );
            }
            writes.set(writes.get() + real.writes.len() as u32);
            Ok(())
        },
    );
    eprintln!(
        "plan vs model: {} accepted configurations applied, {} header writes compared",
        staged_or_not.get(),
        writes.get()
    );
}

/// A header the plan wrote: a lower-case token name and a value without
/// CR, LF or NUL, whatever the configuration `text` and the stream held.
fn header_write_is_safe(
    side: Side,
    name: &str,
    value: &[u8],
    text: &str,
) -> Result<(), TestCaseError> {
    prop_assert!(
        is_token(name) && name.bytes().all(|b| !b.is_ascii_uppercase()),
        "{:?} header name {:?} from {}",
        side,
        name,
        text
    );
    prop_assert!(
        !value.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')),
        "{:?} {}: {:?} from {}",
        side,
        name,
        value,
        text
    );
    Ok(())
}

#[test]
fn request_data_never_puts_cr_lf_or_nul_into_a_header() {
    let (applied, refused, writes) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
    let strategy = (config_json(), header_list(), header_list());
    check(
        "no injection",
        CASES_STRUCTURED,
        strategy,
        |(text, request, response)| {
            let Ok(config) = Config::parse(text.as_bytes()) else {
                return Ok(());
            };
            applied.set(applied.get() + 1);
            let plan = Plan::compile(&config);
            let mut stream = Stream::new(request, response);
            let (a, b) = run_plan(&plan, &mut stream);
            refused.set(refused.get() + a.refused + b.refused);
            writes.set(writes.get() + stream.writes.len() as u32);
            for (side, name, value) in &stream.writes {
                header_write_is_safe(*side, name, value, &text)?;
            }
            Ok(())
        },
    );
    eprintln!(
        "no injection: {} accepted configurations applied to hostile streams, {} writes checked, {} values refused",
        applied.get(),
        writes.get(),
        refused.get()
    );
    // The property is only worth something if hostile data reached a
    // formatter: the guard must have had work to do.
    assert!(refused.get() > 0, "no hostile value ever reached a rule");
}

/// Envoy's `header_mutation` form: accepted configurations round-trip to
/// the same behaviour, and whatever the request carried, no header write
/// holds CR, LF or NUL and no `:path` rewrite holds a byte that breaks the
/// request line (the request's own path is a clean one here).
#[test]
fn mutations_round_trip_and_never_write_what_breaks_a_request() {
    let (tried, accepted, path_writes) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
    let path = "/[a-c]{0,3}(\\?[a-c%=&]{0,10})?";
    let strategy = (mutations_json(), path, header_list(), header_list());
    check(
        "mutations",
        CASES_STRUCTURED,
        strategy,
        |(text, path, request, response)| {
            tried.set(tried.get() + 1);
            let Some((config, again)) = parse_and_round_trip(&text)? else {
                return Ok(());
            };
            accepted.set(accepted.get() + 1);
            let mut request: Vec<_> = request.into_iter().filter(|(n, _)| n != ":path").collect();
            request.insert(0, (":path".to_string(), path.into_bytes()));
            let (first, second) = (Plan::compile(&config), Plan::compile(&again));
            let mut a = Stream::new(request.clone(), response.clone());
            let mut b = Stream::new(request, response);
            prop_assert_eq!(run_plan(&first, &mut a), run_plan(&second, &mut b));
            prop_assert_eq!(&a, &b);
            for (side, name, value) in &a.writes {
                if name == ":path" {
                    path_writes.set(path_writes.get() + 1);
                    prop_assert!(
                        value.iter().all(|&b| b > b' ' && b < 0x7f && b != b'#'),
                        "{:?} from {}",
                        String::from_utf8_lossy(value),
                        text
                    );
                    continue;
                }
                header_write_is_safe(*side, name, value, &text)?;
            }
            Ok(())
        },
    );
    let (tried, accepted) = (tried.get(), accepted.get());
    eprintln!(
        "mutations: {tried} configurations tried, {accepted} accepted, {} :path rewrites checked",
        path_writes.get()
    );
    assert!(accepted * 5 >= tried, "mostly valid: {accepted} of {tried}");
    assert!(
        path_writes.get() > 0,
        "no query mutation ever rewrote :path"
    );
}

#[test]
fn formatter_never_panics_and_round_trips() {
    let text = prop_oneof![
        3 => header_value(),
        1 => any::<String>(),
        1 => "[%()?:A-Z_a-z0-9 -]{0,24}",
    ];
    check(
        "formatter",
        CASES_FORMAT,
        (text, header_list(), header_list()),
        |(text, request, response)| {
            let stream = Stream::new(request, response);
            for side in [Side::Request, Side::Response] {
                let Ok(format) = Format::parse(&text, side) else {
                    continue;
                };
                let printed = format.to_string();
                let again = Format::parse(&printed, side);
                prop_assert_eq!(again.as_ref(), Ok(&format), "{}", printed);
                let rendered = format.render(side, &stream);
                if let Some(constant) = format.as_constant() {
                    prop_assert_eq!(rendered, constant.as_bytes().to_vec());
                }
            }
            Ok(())
        },
    );
}

#[test]
fn header_names_are_lower_case_writable_tokens_or_refused() {
    let name = prop_oneof![header_name(), any::<String>()];
    check(
        "header names",
        CASES_NAMES,
        name,
        |name| match HeaderName::parse(&name) {
            Ok(parsed) => {
                let s = parsed.as_str();
                prop_assert!(is_token(s) && s == name.to_ascii_lowercase());
                prop_assert!(s != "host" && !s.starts_with(':'));
                prop_assert_eq!(HeaderName::parse(s), Ok(parsed.clone()));
                Ok(())
            }
            Err(reason) => {
                prop_assert!(is_one_line(&reason), "{reason}");
                Ok(())
            }
        },
    );
}
