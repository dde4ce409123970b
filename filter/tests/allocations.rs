//! The per-request allocation budget of the plan, counted with a counting
//! global allocator: constant values allocate nothing; a value that is one
//! formatter command keeps the buffer the host read into (one allocation,
//! made by the host in the VM); a composite value adds its output buffer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use header_filter::format::{attribute, Reader, Side};
use header_filter::matcher::HeaderPairs;
use header_filter::plan::{Host, Scratch};
use header_filter::Plan;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A host that keeps nothing: every read finds a fixed value (allocated, as
/// the real host allocates in the VM), every write is only counted.
#[derive(Default)]
struct Null {
    writes: Cell<usize>,
}

impl Reader for Null {
    fn header(&self, _of: Side, _name: &str) -> Option<Vec<u8>> {
        Some(b"value".to_vec())
    }
    fn property(&self, path: &[u8]) -> Option<Vec<u8>> {
        Some(match path {
            attribute::SOURCE_ADDRESS | attribute::UPSTREAM_ADDRESS => b"10.0.0.1:80".to_vec(),
            attribute::RESPONSE_CODE_DETAILS => b"via upstream".to_vec(),
            attribute::ROUTE_NAME => b"reviews-v2".to_vec(),
            // Integers, bitmasks and timestamps: 8 bytes little-endian.
            attribute::RESPONSE_CODE => 200i64.to_le_bytes().to_vec(),
            attribute::UPSTREAM_PORT => 8080i64.to_le_bytes().to_vec(),
            attribute::CONNECTION_ID => 7u64.to_le_bytes().to_vec(),
            attribute::RESPONSE_FLAGS => (1i64 << 5).to_le_bytes().to_vec(),
            _ => 1_700_000_000_123_456_789i64.to_le_bytes().to_vec(),
        })
    }
}

impl Host for Null {
    fn add(&mut self, _side: Side, _name: &str, _value: &[u8]) {
        self.writes.set(self.writes.get() + 1);
    }
    fn replace(&mut self, _side: Side, _name: &str, _value: &[u8]) {
        self.writes.set(self.writes.get() + 1);
    }
    fn remove(&mut self, _side: Side, _name: &str) {
        self.writes.set(self.writes.get() + 1);
    }
    fn exists(&self, _side: Side, _name: &str) -> bool {
        false
    }
    fn header_map(&self, _side: Side) -> Cow<'_, [u8]> {
        // As the host: one buffer it allocates in the VM.
        Cow::Owned(HeaderPairs::encode(&[
            (":path", "/api/v1?debug=1"),
            (":method", "GET"),
            ("x-a", "1"),
        ]))
    }
}

/// Allocations and host writes of one application of `side`, after a
/// warm-up run (scratch space is kept across requests).
fn per_request(config: &str, side: Side) -> (usize, usize) {
    let plan = Plan::from_json(config.as_bytes()).unwrap();
    let mut scratch = Scratch::new();
    let mut host = Null::default();
    plan.apply(side, &mut host, &mut scratch);
    host.writes.set(0);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..100 {
        plan.apply(side, &mut host, &mut scratch);
    }
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    (allocations / 100, host.writes.get() / 100)
}

// One test function: the counter is process-wide and tests run in threads.
#[test]
fn allocation_budget_per_request() {
    let constants = r#"{"response_headers_to_add":[
        {"header":{"key":"a","value":"1"}},
        {"header":{"key":"b","value":"2"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header":{"key":"c","value":"3"},"append_action":"ADD_IF_ABSENT"},
        {"header":{"key":"d","value":"4"},"append_action":"OVERWRITE_IF_EXISTS"}],
        "response_headers_to_remove":["x-powered-by"]}"#;
    // Three writes (OVERWRITE_IF_EXISTS finds nothing) and one removal.
    assert_eq!(per_request(constants, Side::Response), (0, 4));

    let single = r#"{"request_headers_to_add":[
        {"header":{"key":"a","value":"%REQ(x)%"}},
        {"header":{"key":"b","value":"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}}]}"#;
    assert_eq!(
        per_request(single, Side::Request),
        (2, 2),
        "one per header written"
    );

    // Decoded in the host's buffer: integers, times, flags, addresses.
    let decoded = r#"{"response_headers_to_add":[
        {"header":{"key":"a","value":"%START_TIME(%Y-%m-%dT%H:%M:%S.%6f %s)%"}},
        {"header":{"key":"b","value":"%RESPONSE_CODE%"}},
        {"header":{"key":"c","value":"%RESPONSE_FLAGS%"}},
        {"header":{"key":"d","value":"%UPSTREAM_REMOTE_PORT%"}},
        {"header":{"key":"e","value":"%UPSTREAM_HOST%"}},
        {"header":{"key":"f","value":"%CONNECTION_ID%"}},
        {"header":{"key":"g","value":"%RESPONSE_CODE_DETAILS%"}}]}"#;
    assert_eq!(
        per_request(decoded, Side::Response),
        (8, 7),
        "one host buffer per header, rewritten in place; the time outgrows its 8 bytes once"
    );

    // Configure-time values are constants: nothing per request.
    let environment = r#"{"response_headers_to_add":[
        {"header":{"key":"a","value":"%ENVIRONMENT(HEADER_FILTER_NO_SUCH_VARIABLE)%"}}]}"#;
    assert_eq!(per_request(environment, Side::Response), (0, 1));

    let composite = r#"{"request_headers_to_add":[
        {"header":{"key":"a","value":"v=%REQ(x)%;p=%PROTOCOL%"}}]}"#;
    assert_eq!(
        per_request(composite, Side::Request),
        (3, 1),
        "the output buffer, plus the host's buffer of each of the two reads"
    );

    // Route selection: the host's header map and route name are the only
    // buffers (one each); matching itself (regex, ignore_case, a query
    // parameter, a header sent once) allocates nothing. The last route
    // matches, so every matcher before it runs.
    let routes = r#"{"routes":[
        {"match":{"safe_regex":{"regex":"/v[0-9]+/.*"}}},
        {"match":{"prefix":"/API","case_sensitive":false,
                  "headers":[{"name":":method","string_match":{"exact":"post","ignore_case":true}}]}},
        {"match":{"prefix":"/api","query_parameters":[{"name":"debug","string_match":{"exact":"0"}}]}},
        {"match":{"route_name":{"prefix":"reviews"},
                  "headers":[{"name":"x-a","string_match":{"contains":"1"}}]},
         "request_headers_to_add":[{"header":{"key":"x-route","value":"reviews"}}]}],
        "request_headers_to_add":[{"header":{"key":"x-top","value":"1"}}]}"#;
    assert_eq!(
        per_request(routes, Side::Request),
        (2, 2),
        "the host's header map and route name; two constant writes"
    );

    // Envoy's header_mutation form: constants allocate nothing either, and
    // `remove_on_match` reads the host's header map, one buffer.
    let mutations = r#"{"mutations":{"response_mutations":[
        {"append":{"header":{"key":"a","value":"1"}}},
        {"append":{"header":{"key":"b","value":"2"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"}},
        {"append":{"header":{"key":"c","value":"3"},"append_action":"ADD_IF_ABSENT"}},
        {"remove":"x-powered-by"}]}}"#;
    assert_eq!(per_request(mutations, Side::Response), (0, 4));
    let on_match = r#"{"mutations":{"request_mutations":[
        {"remove_on_match":{"key_matcher":{"prefix":"x-"}}}]}}"#;
    assert_eq!(
        per_request(on_match, Side::Request),
        (1, 1),
        "the host's header map; x-a removed"
    );
}
