//! What runs per request: a configuration compiled into an immutable plan,
//! applied to a stream through the [`Host`] trait.
//!
//! The plan follows Envoy's `HeaderParser::evaluateHeaders` step for step:
//! removals first; then every value and every condition is evaluated against
//! the headers as they stand; then overwrites are applied, then appends, each
//! in configuration order (the plan stores its rules in that order). Nothing
//! is parsed here and constant values are
//! written from the plan's own bytes. No proxy-wasm here.

use crate::config::{AppendAction, Config, ConfigError, HeaderRule};
use crate::format::{Format, Reader, Side};

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

/// The compiled configuration.
#[derive(Debug)]
pub struct Plan {
    request: SidePlan,
    response: SidePlan,
    request_headers_for_response: Vec<String>,
}

#[derive(Debug)]
struct SidePlan {
    side: Side,
    remove: Vec<String>,
    rules: Vec<Rule>,
    /// True when some rule's decision or value depends on the headers of
    /// this side, which the plan's own writes change: then every decision is
    /// taken before the first write, as Envoy does.
    staged: bool,
}

#[derive(Debug)]
struct Rule {
    name: String,
    value: Value,
    action: AppendAction,
    keep_empty_value: bool,
}

#[derive(Debug)]
enum Value {
    Constant(Box<[u8]>),
    Format(Format),
}

/// A decision taken before any write: which rule, and its rendered value
/// (`None` for a constant, which is written from the plan).
#[derive(Debug)]
pub struct Staged {
    rule: u16,
    value: Option<Vec<u8>>,
}

/// Reusable space for staged decisions, kept across requests so a staged
/// plan does not allocate once warm.
pub type Scratch = Vec<Staged>;

impl Default for Plan {
    /// The plan of an empty configuration: does nothing.
    fn default() -> Plan {
        Plan::compile(&Config::default())
    }
}

impl Plan {
    /// Parses, validates and compiles a plugin configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Plan, ConfigError> {
        Config::parse(bytes).map(|config| Plan::compile(&config))
    }

    pub fn compile(config: &Config) -> Plan {
        let mut request_headers_for_response: Vec<String> = Vec::new();
        for rule in &config.response.add {
            for name in rule.value.header_names(Side::Request) {
                if !request_headers_for_response.iter().any(|n| n == name) {
                    request_headers_for_response.push(name.to_string());
                }
            }
        }
        Plan {
            request: SidePlan::compile(config, Side::Request),
            response: SidePlan::compile(config, Side::Response),
            request_headers_for_response,
        }
    }

    /// Request headers that response rules read (`%REQ(..)%` in a response
    /// value). A host that cannot read request headers while the response
    /// passes (Envoy) keeps these when the request headers are done, after
    /// the request rules ran, and answers `formatter_header` from them.
    pub fn request_headers_for_response(&self) -> &[String] {
        &self.request_headers_for_response
    }

    /// Whether the plan does anything on `side` (the glue can skip a side).
    pub fn touches(&self, side: Side) -> bool {
        let plan = self.side(side);
        !plan.remove.is_empty() || !plan.rules.is_empty()
    }

    /// Applies the rules of `side` to the stream.
    pub fn apply<H: Host + ?Sized>(
        &self,
        side: Side,
        host: &mut H,
        scratch: &mut Scratch,
    ) -> Outcome {
        self.side(side).apply(host, scratch)
    }

    fn side(&self, side: Side) -> &SidePlan {
        match side {
            Side::Request => &self.request,
            Side::Response => &self.response,
        }
    }
}

impl SidePlan {
    fn compile(config: &Config, side: Side) -> SidePlan {
        let rules_in = config.rules(side);
        // Envoy writes every overwrite before any append, each in
        // configuration order: store them in that order (decisions and
        // renderings only read, so their order does not matter).
        let (mut rules, appends): (Vec<Rule>, Vec<Rule>) = rules_in
            .add
            .iter()
            .filter_map(Rule::compile)
            .partition(Rule::overwrites);
        rules.extend(appends);
        let staged = rules.iter().any(|rule| {
            matches!(
                rule.action,
                AppendAction::AddIfAbsent | AppendAction::OverwriteIfExists
            ) || matches!(&rule.value, Value::Format(f) if f.reads_headers_of(side))
        });
        SidePlan {
            side,
            remove: rules_in
                .remove
                .iter()
                .map(|n| n.as_str().to_string())
                .collect(),
            rules,
            staged,
        }
    }

    fn apply<H: Host + ?Sized>(&self, host: &mut H, scratch: &mut Scratch) -> Outcome {
        let side = self.side;
        let mut outcome = Outcome::default();
        for name in &self.remove {
            host.remove(side, name);
            outcome.removed += 1;
        }
        if self.staged {
            self.apply_staged(side, host, scratch, &mut outcome);
        } else {
            // No decision can see a write of this side: write directly.
            for rule in &self.rules {
                match &rule.value {
                    Value::Constant(value) => rule.write(side, host, value, &mut outcome),
                    Value::Format(format) => {
                        let value = format.render(side, host);
                        if rule.wants(&value) {
                            rule.write_rendered(side, host, &value, &mut outcome);
                        }
                    }
                }
            }
        }
        outcome
    }

    fn apply_staged<H: Host + ?Sized>(
        &self,
        side: Side,
        host: &mut H,
        scratch: &mut Scratch,
        outcome: &mut Outcome,
    ) {
        scratch.clear();
        for (index, rule) in self.rules.iter().enumerate() {
            let proceed = match rule.action {
                AppendAction::AddIfAbsent => !host.exists(side, &rule.name),
                AppendAction::OverwriteIfExists => host.exists(side, &rule.name),
                AppendAction::AppendIfExistsOrAdd | AppendAction::OverwriteIfExistsOrAdd => true,
            };
            let value = match &rule.value {
                Value::Constant(_) => None,
                Value::Format(format) => {
                    let value = format.render(side, host);
                    if !rule.wants(&value) {
                        continue;
                    }
                    Some(value)
                }
            };
            if proceed {
                scratch.push(Staged {
                    rule: index as u16,
                    value,
                });
            }
        }
        for staged in scratch.iter() {
            let rule = &self.rules[usize::from(staged.rule)];
            match (&staged.value, &rule.value) {
                (Some(value), _) => rule.write_rendered(side, host, value, outcome),
                (None, Value::Constant(value)) => rule.write(side, host, value, outcome),
                (None, Value::Format(_)) => {}
            }
        }
    }
}

impl Rule {
    /// `None` for a rule that can never write (an empty constant without
    /// `keep_empty_value`, which Envoy skips too).
    fn compile(rule: &HeaderRule) -> Option<Rule> {
        let value = match rule.value.as_constant() {
            Some("") if !rule.keep_empty_value => return None,
            Some(text) => Value::Constant(text.as_bytes().into()),
            None => Value::Format(rule.value.clone()),
        };
        Some(Rule {
            name: rule.name.as_str().to_string(),
            value,
            action: rule.action,
            keep_empty_value: rule.keep_empty_value,
        })
    }

    fn overwrites(&self) -> bool {
        matches!(
            self.action,
            AppendAction::OverwriteIfExistsOrAdd | AppendAction::OverwriteIfExists
        )
    }

    /// Envoy writes an empty rendered value only with `keep_empty_value`.
    fn wants(&self, value: &[u8]) -> bool {
        !value.is_empty() || self.keep_empty_value
    }

    /// Writes a value rendered from stream data: whatever it holds, it
    /// never splits a header.
    fn write_rendered<H: Host + ?Sized>(
        &self,
        side: Side,
        host: &mut H,
        value: &[u8],
        outcome: &mut Outcome,
    ) {
        if value.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
            outcome.refused += 1;
            return;
        }
        self.write(side, host, value, outcome);
    }

    /// Writes a value already known to be safe (constants were checked
    /// when the configuration was parsed).
    fn write<H: Host + ?Sized>(
        &self,
        side: Side,
        host: &mut H,
        value: &[u8],
        outcome: &mut Outcome,
    ) {
        if self.overwrites() {
            host.replace(side, &self.name, value);
        } else {
            host.add(side, &self.name, value);
        }
        outcome.written += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::attribute;

    /// A header map with Envoy's semantics: ordered, multi-valued,
    /// `setCopy` = remove all + add at the end.
    #[derive(Default, Debug, Clone)]
    struct FakeStream {
        request: Vec<(String, Vec<u8>)>,
        response: Vec<(String, Vec<u8>)>,
        remote: Option<&'static str>,
    }

    impl FakeStream {
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
        fn values(&self, side: Side, name: &str) -> Vec<String> {
            self.map(side)
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect()
        }
    }

    impl Reader for FakeStream {
        fn header(&self, of: Side, name: &str) -> Option<Vec<u8>> {
            self.map(of)
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        }
        fn property(&self, path: &[u8]) -> Option<Vec<u8>> {
            match path {
                attribute::SOURCE_ADDRESS => self.remote.map(|r| r.as_bytes().to_vec()),
                _ => None,
            }
        }
    }

    impl Host for FakeStream {
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
    }

    fn stream(request: &[(&str, &str)]) -> FakeStream {
        FakeStream {
            request: request
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            ..FakeStream::default()
        }
    }

    fn run(config: &str, side: Side, s: &mut FakeStream) -> Outcome {
        let plan = Plan::from_json(config.as_bytes()).unwrap();
        plan.apply(side, s, &mut Scratch::new())
    }

    fn one_rule(action: AppendAction, value: &str) -> String {
        format!(
            r#"{{"request_headers_to_add":[{{"header":{{"key":"x-h","value":"{value}"}},"append_action":"{}"}}]}}"#,
            action.as_str()
        )
    }

    /// Every append action, with the header absent and present: Envoy's table.
    #[test]
    fn append_actions_against_present_and_absent_headers() {
        use AppendAction::*;
        let table: &[(AppendAction, &[&str], &[&str])] = &[
            // action, result when absent, result when present ("old")
            (AppendIfExistsOrAdd, &["new"], &["old", "new"]),
            (AddIfAbsent, &["new"], &["old"]),
            (OverwriteIfExistsOrAdd, &["new"], &["new"]),
            (OverwriteIfExists, &[], &["new"]),
        ];
        for (action, absent, present) in table {
            for (initial, expected) in [(&[][..], absent), (&[("x-h", "old")][..], present)] {
                let mut s = stream(initial);
                run(&one_rule(*action, "new"), Side::Request, &mut s);
                assert_eq!(
                    s.values(Side::Request, "x-h"),
                    *expected,
                    "{} with {initial:?}",
                    action.as_str()
                );
            }
        }
    }

    #[test]
    fn append_actions_with_a_formatted_value() {
        use AppendAction::*;
        for action in AppendAction::ALL {
            let mut s = stream(&[("x-h", "old"), ("x-src", "v")]);
            run(&one_rule(action, "f-%REQ(x-src)%"), Side::Request, &mut s);
            let expected: &[&str] = match action {
                AppendIfExistsOrAdd => &["old", "f-v"],
                AddIfAbsent => &["old"],
                OverwriteIfExistsOrAdd | OverwriteIfExists => &["f-v"],
            };
            assert_eq!(
                s.values(Side::Request, "x-h"),
                expected,
                "{}",
                action.as_str()
            );
        }
    }

    #[test]
    fn overwrite_replaces_every_existing_entry() {
        let mut s = stream(&[("x-h", "a"), ("x-h", "b")]);
        run(
            &one_rule(AppendAction::OverwriteIfExistsOrAdd, "c"),
            Side::Request,
            &mut s,
        );
        assert_eq!(s.values(Side::Request, "x-h"), ["c"]);
    }

    #[test]
    fn removals_happen_before_additions() {
        let mut s = stream(&[("x-h", "old")]);
        let config = r#"{"request_headers_to_remove":["x-h"],
            "request_headers_to_add":[{"header":{"key":"x-h","value":"new"},"append_action":"ADD_IF_ABSENT"}]}"#;
        let outcome = run(config, Side::Request, &mut s);
        assert_eq!(s.values(Side::Request, "x-h"), ["new"]);
        assert_eq!(
            outcome,
            Outcome {
                written: 1,
                removed: 1,
                refused: 0
            }
        );
    }

    #[test]
    fn conditions_are_decided_before_any_write() {
        // Envoy evaluates every rule first: both ADD_IF_ABSENT rules see the
        // header absent, and the overwrite lands before the appends.
        let mut s = stream(&[]);
        let config = r#"{"request_headers_to_add":[
            {"header":{"key":"x-h","value":"1"},"append_action":"ADD_IF_ABSENT"},
            {"header":{"key":"x-h","value":"2"},"append_action":"ADD_IF_ABSENT"},
            {"header":{"key":"x-h","value":"3"},"append_action":"OVERWRITE_IF_EXISTS"},
            {"header":{"key":"x-o","value":"a"}},
            {"header":{"key":"x-o","value":"b"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"}]}"#;
        run(config, Side::Request, &mut s);
        assert_eq!(s.values(Side::Request, "x-h"), ["1", "2"]);
        assert_eq!(s.values(Side::Request, "x-o"), ["b", "a"]);
    }

    #[test]
    fn formatters_read_the_headers_as_they_were_before_writes() {
        let mut s = stream(&[("x-a", "1")]);
        let config = r#"{"request_headers_to_add":[
            {"header":{"key":"x-a","value":"2"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"},
            {"header":{"key":"x-copy","value":"%REQ(x-a)%"}}]}"#;
        run(config, Side::Request, &mut s);
        assert_eq!(s.values(Side::Request, "x-copy"), ["1"]);
    }

    #[test]
    fn empty_rendered_value_is_skipped_unless_kept() {
        let mut s = stream(&[]);
        let config = r#"{"request_headers_to_add":[
            {"header":{"key":"x-skip","value":"%REQ(x-missing)%"}},
            {"header":{"key":"x-keep","value":"%REQ(x-missing)%"},"keep_empty_value":true},
            {"header":{"key":"x-const-empty","value":""}},
            {"header":{"key":"x-const-kept","value":""},"keep_empty_value":true}]}"#;
        run(config, Side::Request, &mut s);
        assert!(s.values(Side::Request, "x-skip").is_empty());
        assert_eq!(s.values(Side::Request, "x-keep"), [""]);
        assert!(s.values(Side::Request, "x-const-empty").is_empty());
        assert_eq!(s.values(Side::Request, "x-const-kept"), [""]);
    }

    #[test]
    fn response_rules_can_read_the_request() {
        let mut s = stream(&[("x-id", "42")]);
        s.remote = Some("10.0.0.1:555");
        let config = r#"{"response_headers_to_add":[
            {"header":{"key":"x-echo-id","value":"%REQ(x-id)%"}},
            {"header":{"key":"x-client","value":"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}}],
            "response_headers_to_remove":["x-powered-by"]}"#;
        s.response.push(("x-powered-by".into(), b"php".to_vec()));
        run(config, Side::Response, &mut s);
        assert_eq!(s.values(Side::Response, "x-echo-id"), ["42"]);
        assert_eq!(s.values(Side::Response, "x-client"), ["10.0.0.1"]);
        assert!(s.values(Side::Response, "x-powered-by").is_empty());
        assert!(s.request.len() == 1, "request side untouched");
    }

    #[test]
    fn plan_lists_the_request_headers_response_rules_read() {
        let plan = Plan::from_json(
            br#"{"response_headers_to_add":[
                {"header":{"key":"a","value":"%REQ(x-a)% %REQ(x-b?x-a)% %RESP(x-r)%"}},
                {"header":{"key":"b","value":"%REQ(:path)%"}}],
              "request_headers_to_add":[{"header":{"key":"c","value":"%REQ(x-req-only)%"}}]}"#,
        )
        .unwrap();
        assert_eq!(plan.request_headers_for_response(), ["x-a", "x-b", ":path"]);
    }

    #[test]
    fn request_data_cannot_split_a_header() {
        let mut s = stream(&[("x-evil", "a\r\nx-injected: 1")]);
        let config =
            r#"{"request_headers_to_add":[{"header":{"key":"x-copy","value":"%REQ(x-evil)%"}}]}"#;
        let outcome = run(config, Side::Request, &mut s);
        assert!(s.values(Side::Request, "x-copy").is_empty());
        assert_eq!(outcome.refused, 1);
    }

    #[test]
    fn maistra_flat_form_appends_to_responses_only() {
        let mut s = stream(&[]);
        s.response.push(("x-a".into(), b"0".to_vec()));
        let plan = Plan::from_json(br#"{"x-a":"1","x-b":"2"}"#).unwrap();
        assert!(!plan.touches(Side::Request));
        plan.apply(Side::Request, &mut s, &mut Scratch::new());
        plan.apply(Side::Response, &mut s, &mut Scratch::new());
        assert_eq!(s.values(Side::Response, "x-a"), ["0", "1"]);
        assert_eq!(s.values(Side::Response, "x-b"), ["2"]);
        assert!(s.request.is_empty());
    }

    #[test]
    fn empty_plan_does_nothing() {
        let plan = Plan::from_json(b"").unwrap();
        let mut s = stream(&[("a", "b")]);
        let before = s.clone().request;
        assert_eq!(
            plan.apply(Side::Request, &mut s, &mut Scratch::new()),
            Outcome::default()
        );
        assert_eq!(s.request, before);
        assert!(!plan.touches(Side::Request) && !plan.touches(Side::Response));
    }
}
