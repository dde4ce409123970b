//! What runs per request: a configuration compiled into an immutable plan,
//! applied to a stream through the [`Host`] trait.
//!
//! A plan is a stack of *levels*, as Envoy's router stacks its
//! `HeaderParser`s: the matched route's level, then the top level (the
//! other way round with `most_specific_header_mutations_wins`), each
//! followed on the response side by its `response_rules` whose conditions
//! hold. The route is chosen once, on the request side ([`Plan::request`]);
//! the response side ([`Plan::response`]) is given that choice back.
//!
//! Each level follows Envoy's `HeaderParser::evaluateHeaders` step for
//! step: removals first; then every value and every condition is evaluated
//! against the headers as they stand; then overwrites are applied, then
//! appends, each in configuration order (the plan stores its rules in that
//! order). Nothing is parsed here and constant values are written from the
//! plan's own bytes. No proxy-wasm here.

use std::borrow::Cow;

use crate::config::Config;
use crate::format::{attribute, Format};
use crate::headers::HeaderPairs;
use crate::host::Side;
pub use crate::host::{Host, Outcome};
use crate::jsonpath::ConfigError;
use crate::mutation::Mutations;
use crate::route::{parse_status, RequestView, ResponseCondition, ResponseRule, RouteMatch};
use crate::rules::{AppendAction, HeaderRule, Rules};

/// The compiled configuration.
#[derive(Debug)]
pub struct Plan {
    top: Level,
    top_rules: Vec<Conditional>,
    routes: Vec<RoutePlan>,
    most_specific_wins: bool,
    request_headers_for_response: Vec<String>,
    /// Some route has header matchers: route selection reads the whole
    /// request header map (else only `:path`).
    routes_read_headers: bool,
    /// Some route matches on `route_name`.
    routes_read_route_name: bool,
    /// Response rules' conditions, or response-side decisions, read response
    /// headers other than `:status`: the response side reads the whole map
    /// once (else `:status` alone).
    response_map: bool,
    /// Attribute paths the top level's reads of a side (request, response)
    /// ask for more than once, when no route matched: a host can keep their
    /// values for the callback (each route has its own).
    repeated_properties: [Vec<Box<[u8]>>; 2],
    /// Envoy's `header_mutation` config: when set, it is the whole plan.
    mutations: Option<Mutations>,
    /// [`Plan::touches`] of each side, decided once.
    touches: [bool; 2],
}

/// One level: Envoy's pair of request and response `HeaderParser`s.
#[derive(Debug)]
struct Level {
    request: SidePlan,
    response: SidePlan,
}

#[derive(Debug)]
struct RoutePlan {
    matcher: RouteMatch,
    level: Level,
    rules: Vec<Conditional>,
    /// As [`Plan::repeated_properties`], for requests that take the route.
    repeated_properties: [Vec<Box<[u8]>>; 2],
}

/// A response rule: a response-side level and its condition.
#[derive(Debug)]
struct Conditional {
    condition: ResponseCondition,
    response: SidePlan,
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

/// Reusable space kept across requests, so that a warm plan does not
/// allocate for its own bookkeeping.
#[derive(Debug, Default)]
pub struct Scratch {
    staged: Vec<Staged>,
    /// Which response rules hold, decided before any response write.
    holds: Vec<bool>,
}

impl Scratch {
    pub const fn new() -> Scratch {
        Scratch {
            staged: Vec::new(),
            holds: Vec::new(),
        }
    }
}

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
        // Every list of rules of each side, top level first (loops rather
        // than iterator chains: this runs once, and chains cost module size).
        let mut top_response: Vec<&Rules> = vec![&config.response];
        for rule in &config.response_rules {
            top_response.push(&rule.response);
        }
        let mut response_rules = top_response.clone();
        for route in &config.routes {
            response_rules.push(&route.response);
            for rule in &route.response_rules {
                response_rules.push(&rule.response);
            }
        }
        let mut request_headers_for_response: Vec<String> = Vec::new();
        let mut keep = |name: &str| {
            if !request_headers_for_response.iter().any(|n| n == name) {
                request_headers_for_response.push(name.to_string());
            }
        };
        for rules in &response_rules {
            for rule in &rules.add {
                rule.value.header_names(Side::Request).for_each(&mut keep);
            }
        }
        if let Some(mutations) = &config.mutations {
            mutations.request_headers_for_response().for_each(&mut keep);
        }
        let routes: Vec<RoutePlan> = config
            .routes
            .iter()
            .map(|route| {
                let mut response = top_response.clone();
                response.push(&route.response);
                for rule in &route.response_rules {
                    response.push(&rule.response);
                }
                RoutePlan {
                    matcher: route.matcher.clone(),
                    level: Level::compile(&route.request, &route.response),
                    rules: route
                        .response_rules
                        .iter()
                        .map(Conditional::compile)
                        .collect(),
                    repeated_properties: [
                        repeated(&[&route.request, &config.request]),
                        repeated(&response),
                    ],
                }
            })
            .collect();
        let top = Level::compile(&config.request, &config.response);
        let top_rules: Vec<Conditional> = config
            .response_rules
            .iter()
            .map(Conditional::compile)
            .collect();
        let mut response_map = top.response.staged;
        let mut routes_read_headers = false;
        let mut routes_read_route_name = false;
        for route in &routes {
            response_map |= route.level.response.staged;
            routes_read_headers |= route.matcher.reads_headers();
            routes_read_route_name |= route.matcher.route_name.is_some();
        }
        for rule in top_rules.iter().chain(routes.iter().flat_map(|r| &r.rules)) {
            response_map |= rule.response.staged || !rule.condition.headers.is_empty();
        }
        let mut plan = Plan {
            top,
            top_rules,
            routes_read_headers,
            routes_read_route_name,
            response_map,
            repeated_properties: [repeated(&[&config.request]), repeated(&top_response)],
            routes,
            most_specific_wins: config.most_specific_header_mutations_wins,
            request_headers_for_response,
            mutations: config.mutations.clone(),
            touches: [false; 2],
        };
        plan.touches = [Side::Request, Side::Response].map(|side| plan.decide_touches(side));
        plan
    }

    /// Request headers that response rules read (`%REQ(..)%` in a response
    /// value). A host that cannot read request headers while the response
    /// passes (Envoy) keeps these when the request headers are done, after
    /// the request rules ran, and answers `formatter_header` from them.
    pub fn request_headers_for_response(&self) -> &[String] {
        &self.request_headers_for_response
    }

    /// Attribute paths that more than one formatter of `side` reads for a
    /// request that took `route`: a host whose reads cost (Envoy) keeps
    /// their values for the rest of the callback, and reads every other
    /// path once. (Told the route by [`Host::route_chosen`] on the request
    /// side.)
    pub fn repeated_properties(&self, side: Side, route: Option<u16>) -> &[Box<[u8]>] {
        let lists = match route.and_then(|r| self.routes.get(usize::from(r))) {
            Some(route) => &route.repeated_properties,
            None => &self.repeated_properties,
        };
        &lists[side as usize]
    }

    /// Whether the plan does anything on `side` (the glue can skip a side).
    /// A plan with routes always acts on the request side: that is where
    /// the route is chosen.
    pub fn touches(&self, side: Side) -> bool {
        self.touches[side as usize]
    }

    fn decide_touches(&self, side: Side) -> bool {
        if let Some(mutations) = &self.mutations {
            return mutations.touches(side);
        }
        match side {
            Side::Request => !self.top.request.is_empty() || !self.routes.is_empty(),
            Side::Response => {
                !self.top.response.is_empty()
                    || !self.top_rules.is_empty()
                    || self.routes.iter().any(RoutePlan::affects_response)
            }
        }
    }

    /// Whether the response side needs to know that the request took
    /// `route` (else the glue need not keep the choice per stream).
    pub fn route_affects_response(&self, route: u16) -> bool {
        self.routes
            .get(usize::from(route))
            .is_some_and(RoutePlan::affects_response)
    }

    /// Chooses the route (first match) and applies the request side of
    /// every level. The route is what [`Plan::response`] needs back.
    pub fn request<H: Host + ?Sized>(
        &self,
        host: &mut H,
        scratch: &mut Scratch,
    ) -> (Option<u16>, Outcome) {
        if let Some(mutations) = &self.mutations {
            return (None, mutations.request(host));
        }
        let route = self.select_route(host);
        host.route_chosen(route);
        let top = &self.top.request;
        let mut outcome = Outcome::default();
        // The two levels in the order Envoy evaluates them: the later wins.
        let (first, second) = match route {
            None => (None, top),
            Some(r) => {
                let level = &self.routes[usize::from(r)].level.request;
                if self.most_specific_wins {
                    (Some(top), level)
                } else {
                    (Some(level), top)
                }
            }
        };
        if let Some(first) = first {
            outcome.add(first.apply(host, &mut scratch.staged));
        }
        outcome.add(second.apply(host, &mut scratch.staged));
        (route, outcome)
    }

    /// Applies the response side: the levels of the top and of `route`
    /// (what [`Plan::request`] chose), each followed by its response rules
    /// whose conditions hold for the response as it reached the filter.
    pub fn response<H: Host + ?Sized>(
        &self,
        route: Option<u16>,
        host: &mut H,
        scratch: &mut Scratch,
    ) -> Outcome {
        if let Some(mutations) = &self.mutations {
            return mutations.response(host);
        }
        let route = route.and_then(|r| self.routes.get(usize::from(r)));
        let route_rules: &[Conditional] = route.map_or(&[], |r| &r.rules);
        scratch.holds.clear();
        if !self.top_rules.is_empty() || !route_rules.is_empty() {
            // The whole map only when something reads more than `:status`.
            let (map, status) = if self.response_map {
                let map = host.header_map(Side::Response);
                let status = parse_status(HeaderPairs::new(&map).get(":status"));
                (map, status)
            } else {
                let status = host.header(Side::Response, ":status");
                (Cow::Borrowed(&[][..]), parse_status(status.as_deref()))
            };
            let headers = HeaderPairs::new(&map);
            for rule in self.top_rules.iter().chain(route_rules) {
                let holds = rule.condition.holds(status, &headers);
                scratch.holds.push(holds);
            }
        }
        let (top_holds, route_holds) = scratch.holds.split_at(self.top_rules.len());
        let top = (&self.top.response, &self.top_rules[..], top_holds);
        let mut outcome = Outcome::default();
        let mut run = |(level, rules, holds): (&SidePlan, &[Conditional], &[bool])| {
            outcome.add(level.apply(host, &mut scratch.staged));
            for (index, rule) in rules.iter().enumerate() {
                if holds[index] {
                    outcome.add(rule.response.apply(host, &mut scratch.staged));
                }
            }
        };
        match route {
            None => run(top),
            Some(route) => {
                let mine = (&route.level.response, route_rules, route_holds);
                let (first, second) = if self.most_specific_wins {
                    (top, mine)
                } else {
                    (mine, top)
                };
                run(first);
                run(second);
            }
        }
        outcome
    }

    /// Applies one side as if no route matched: the whole plan for a
    /// configuration without `routes` (the response side of a route table
    /// needs [`Plan::response`] with the request's route).
    pub fn apply<H: Host + ?Sized>(
        &self,
        side: Side,
        host: &mut H,
        scratch: &mut Scratch,
    ) -> Outcome {
        match side {
            Side::Request => self.request(host, scratch).1,
            Side::Response => self.response(None, host, scratch),
        }
    }

    /// The index of the first route the request takes.
    fn select_route<H: Host + ?Sized>(&self, host: &H) -> Option<u16> {
        if self.routes.is_empty() {
            return None;
        }
        let map = if self.routes_read_headers {
            host.header_map(Side::Request)
        } else {
            Cow::Borrowed(&[][..])
        };
        let headers = HeaderPairs::new(&map);
        let path_read;
        let path: &[u8] = if self.routes_read_headers {
            headers.get(":path").unwrap_or_default()
        } else {
            path_read = host.header(Side::Request, ":path").unwrap_or_default();
            &path_read
        };
        let route_name = if self.routes_read_route_name {
            host.property(attribute::ROUTE_NAME)
        } else {
            None
        };
        let view = RequestView::new(path, headers, route_name.as_deref());
        let index = self
            .routes
            .iter()
            .position(|route| route.matcher.matches(&view))?;
        u16::try_from(index).ok()
    }
}

/// The attribute paths the values of `rules` read more than once.
fn repeated(rules: &[&Rules]) -> Vec<Box<[u8]>> {
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut repeated: Vec<Box<[u8]>> = Vec::new();
    for rule in rules.iter().flat_map(|rules| &rules.add) {
        for path in rule.value.attribute_paths() {
            if !seen.contains(&path) {
                seen.push(path);
            } else if !repeated.iter().any(|r| **r == *path) {
                repeated.push(path.into());
            }
        }
    }
    repeated
}

impl Level {
    fn compile(request: &Rules, response: &Rules) -> Level {
        Level {
            request: SidePlan::compile(request, Side::Request),
            response: SidePlan::compile(response, Side::Response),
        }
    }
}

impl RoutePlan {
    fn affects_response(&self) -> bool {
        !self.level.response.is_empty() || !self.rules.is_empty()
    }
}

impl Conditional {
    fn compile(rule: &ResponseRule) -> Conditional {
        Conditional {
            condition: rule.condition.clone(),
            response: SidePlan::compile(&rule.response, Side::Response),
        }
    }
}

impl SidePlan {
    fn compile(rules_in: &Rules, side: Side) -> SidePlan {
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

    fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.rules.is_empty()
    }

    fn apply<H: Host + ?Sized>(&self, host: &mut H, scratch: &mut Vec<Staged>) -> Outcome {
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
        scratch: &mut Vec<Staged>,
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
    #[inline(always)]
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
    use crate::offline::MemoryStream;

    fn stream(request: &[(&str, &str)]) -> MemoryStream {
        MemoryStream::with_request(request)
    }

    fn run(config: &str, side: Side, s: &mut MemoryStream) -> Outcome {
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
        s.set_property(attribute::SOURCE_ADDRESS, "10.0.0.1:555");
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
    fn plan_lists_the_attributes_a_route_and_the_top_read_more_than_once() {
        let plan = Plan::from_json(
            br#"{"request_headers_to_add":[
                {"header":{"key":"a","value":"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}},
                {"header":{"key":"b","value":"t=%START_TIME(%s)%"}}],
              "response_headers_to_add":[{"header":{"key":"c","value":"%DOWNSTREAM_REMOTE_ADDRESS%"}}],
              "routes":[{"match":{"prefix":"/"},"request_headers_to_add":[
                {"header":{"key":"d","value":"%DOWNSTREAM_REMOTE_ADDRESS%"}}]}]}"#,
        )
        .unwrap();
        let paths: Vec<&[u8]> = plan
            .repeated_properties(Side::Request, Some(0))
            .iter()
            .map(|p| &p[..])
            .collect();
        assert_eq!(paths, [attribute::SOURCE_ADDRESS]);
        // Without the route, the top level reads it once.
        assert!(plan.repeated_properties(Side::Request, None).is_empty());
        assert!(plan.repeated_properties(Side::Response, Some(0)).is_empty());
    }

    #[test]
    fn response_rules_read_the_whole_map_only_for_more_than_the_status() {
        let status_only = Plan::from_json(
            br#"{"response_rules":[{"status":["5xx"],"response_headers_to_add":[{"header":{"key":"x","value":"1"}}]}]}"#,
        )
        .unwrap();
        assert!(!status_only.response_map);
        let with_headers = Plan::from_json(
            br#"{"response_rules":[{"headers":[{"name":"x-cache","present_match":true}],"response_headers_to_add":[{"header":{"key":"x","value":"1"}}]}]}"#,
        )
        .unwrap();
        assert!(with_headers.response_map);
        let deciding = Plan::from_json(
            br#"{"response_headers_to_add":[{"header":{"key":"x","value":"1"},"append_action":"ADD_IF_ABSENT"}],
                 "response_rules":[{"status":["5xx"],"response_headers_to_add":[{"header":{"key":"y","value":"1"}}]}]}"#,
        )
        .unwrap();
        assert!(deciding.response_map);
        // Either way the rule sees the status.
        for plan in [&status_only, &with_headers] {
            let mut s = stream(&[(":path", "/")]);
            s.respond(&[(":status", "503"), ("x-cache", "HIT")]);
            s.run(plan, true);
            assert_eq!(s.values(Side::Response, "x"), ["1"]);
        }
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

    fn route_table(most_specific: bool) -> Plan {
        let config = format!(
            r#"{{"most_specific_header_mutations_wins":{most_specific},
            "request_headers_to_add":[
                {{"header":{{"key":"x-o","value":"top"}},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"}},
                {{"header":{{"key":"x-a","value":"top"}}}}],
            "request_headers_to_remove":["x-route-only"],
            "response_headers_to_add":[{{"header":{{"key":"x-level","value":"top"}}}}],
            "response_rules":[
                {{"status":["5xx"],"response_headers_to_add":[{{"header":{{"key":"x-level","value":"top-5xx"}}}}]}}],
            "routes":[
                {{"name":"api","match":{{"prefix":"/api"}},
                 "request_headers_to_add":[
                    {{"header":{{"key":"x-o","value":"route"}},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"}},
                    {{"header":{{"key":"x-a","value":"route"}}}},
                    {{"header":{{"key":"x-route-only","value":"%REQ(:path)%"}}}}],
                 "response_headers_to_add":[{{"header":{{"key":"x-level","value":"api"}}}}],
                 "response_rules":[
                    {{"status":["404"],"response_headers_to_add":[{{"header":{{"key":"x-level","value":"api-404"}}}}]}},
                    {{"status":["5xx"],"headers":[{{"name":"x-cache","present_match":true}}],
                     "response_headers_to_add":[{{"header":{{"key":"x-level","value":"api-5xx-cached"}}}}]}}]}},
                {{"match":{{"path":"/health"}}}}]}}"#
        );
        Plan::from_json(config.as_bytes()).unwrap()
    }

    fn exchange(plan: &Plan, path: &str, response: &[(&str, &str)]) -> (MemoryStream, Option<u16>) {
        let mut s = stream(&[(":path", path), (":method", "GET")]);
        s.respond(response);
        let run = s.run(plan, true);
        (s, run.route)
    }

    #[test]
    fn route_level_runs_before_the_top_level_by_default() {
        let plan = route_table(false);
        let (s, route) = exchange(&plan, "/api/x?q=1", &[(":status", "200")]);
        assert_eq!(route, Some(0));
        // The top level runs last: its overwrite wins, its append comes last,
        // and its removal removes what the route added.
        assert_eq!(s.values(Side::Request, "x-o"), ["top"]);
        assert_eq!(s.values(Side::Request, "x-a"), ["route", "top"]);
        assert!(s.values(Side::Request, "x-route-only").is_empty());
        assert_eq!(s.values(Side::Response, "x-level"), ["api", "top"]);
    }

    #[test]
    fn most_specific_wins_reverses_the_levels() {
        let plan = route_table(true);
        let (s, _) = exchange(&plan, "/api/x", &[(":status", "200")]);
        assert_eq!(s.values(Side::Request, "x-o"), ["route"]);
        assert_eq!(s.values(Side::Request, "x-a"), ["top", "route"]);
        assert_eq!(s.values(Side::Request, "x-route-only"), ["/api/x"]);
        assert_eq!(s.values(Side::Response, "x-level"), ["top", "api"]);
    }

    #[test]
    fn no_matching_route_runs_only_the_top_level() {
        let plan = route_table(false);
        let (s, route) = exchange(&plan, "/other", &[(":status", "503")]);
        assert_eq!(route, None);
        assert_eq!(s.values(Side::Request, "x-a"), ["top"]);
        assert_eq!(s.values(Side::Response, "x-level"), ["top", "top-5xx"]);
    }

    #[test]
    fn first_matching_route_wins_even_without_rules() {
        let plan = route_table(false);
        let (s, route) = exchange(&plan, "/health", &[(":status", "200")]);
        assert_eq!(route, Some(1));
        assert_eq!(s.values(Side::Request, "x-a"), ["top"]);
        assert!(!plan.route_affects_response(1));
        assert!(plan.route_affects_response(0));
    }

    #[test]
    fn response_rules_follow_their_level_when_their_conditions_hold() {
        let plan = route_table(false);
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Headers, &[&str])] = &[
            (&[(":status", "404")], &["api", "api-404", "top"]),
            (&[(":status", "503")], &["api", "top", "top-5xx"]),
            (
                &[(":status", "503"), ("x-cache", "HIT")],
                &["api", "api-5xx-cached", "top", "top-5xx"],
            ),
            (&[(":status", "200"), ("x-cache", "HIT")], &["api", "top"]),
            (&[], &["api", "top"]),
        ];
        for (response, expected) in cases {
            let (s, _) = exchange(&plan, "/api", response);
            assert_eq!(
                s.values(Side::Response, "x-level"),
                *expected,
                "{response:?}"
            );
        }
    }

    #[test]
    fn response_conditions_see_the_response_as_it_arrived() {
        // The top level removes x-cache, yet the rule (decided before any
        // write) still sees it.
        let plan = Plan::from_json(
            br#"{"response_headers_to_remove":["x-cache"],
                 "response_rules":[{"headers":[{"name":"x-cache","present_match":true}],
                   "response_headers_to_add":[{"header":{"key":"x-was-cached","value":"1"}}]}]}"#,
        )
        .unwrap();
        let mut s = stream(&[(":path", "/")]);
        s.respond(&[(":status", "200"), ("x-cache", "HIT")]);
        s.run(&plan, true);
        assert_eq!(s.values(Side::Response, "x-was-cached"), ["1"]);
        assert!(s.values(Side::Response, "x-cache").is_empty());
    }

    #[test]
    fn routes_match_on_headers_query_and_route_name() {
        let plan = Plan::from_json(
            br#"{"routes":[
                {"match":{"prefix":"/","headers":[{"name":":method","string_match":{"exact":"POST"}}]},
                 "request_headers_to_add":[{"header":{"key":"x-r","value":"post"}}]},
                {"match":{"prefix":"/","query_parameters":[{"name":"debug","present_match":true}]},
                 "request_headers_to_add":[{"header":{"key":"x-r","value":"debug"}}]},
                {"match":{"route_name":{"exact":"reviews-v2"}},
                 "request_headers_to_add":[{"header":{"key":"x-r","value":"v2"}}]}]}"#,
        )
        .unwrap();
        let run = |method: &str, path: &str, route_name: Option<&str>| {
            let mut s = stream(&[(":method", method), (":path", path)]);
            if let Some(name) = route_name {
                s.set_property(attribute::ROUTE_NAME, name);
            }
            s.run(&plan, false);
            s.values(Side::Request, "x-r")
        };
        assert_eq!(run("POST", "/?debug", None), ["post"]);
        assert_eq!(run("GET", "/?debug", None), ["debug"]);
        assert_eq!(run("GET", "/", Some("reviews-v2")), ["v2"]);
        assert!(run("GET", "/", Some("reviews-v1")).is_empty());
        assert!(run("GET", "/", None).is_empty());
    }

    #[test]
    fn plans_touch_the_sides_they_need() {
        let only_response_route = Plan::from_json(
            br#"{"routes":[{"match":{"prefix":"/a"},"response_headers_to_add":[{"header":{"key":"x","value":"1"}}]}]}"#,
        )
        .unwrap();
        // The request side chooses the route the response side acts on.
        assert!(only_response_route.touches(Side::Request));
        assert!(only_response_route.touches(Side::Response));
        let only_request_route = Plan::from_json(
            br#"{"routes":[{"match":{"prefix":"/a"},"request_headers_to_add":[{"header":{"key":"x","value":"1"}}]}]}"#,
        )
        .unwrap();
        assert!(!only_request_route.touches(Side::Response));
    }
}
