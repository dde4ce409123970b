//! The proxy-wasm glue: adapts the host to [`crate::plan::Host`] and hands
//! each callback to the plan. No decisions are taken here.
//!
//! Each root context (one per filter instance; Envoy runs instances that
//! share a module and VM config in one VM) owns its plan. A rejected
//! configuration makes `on_configure` return false (Envoy then refuses the
//! filter: fail closed) after one error-level log line naming the JSON path
//! and the reason.
//!
//! **Streams without the SDK's context map.** Envoy calls every callback a
//! module exports, and each call into the VM costs about as much as the
//! filter's own work. The SDK keeps a boxed context per stream in a map and
//! needs `proxy_on_delete` to free it. Streams here carry no state of their
//! own, so `cargo xtask build-filter` exports the three `header_filter_on_*`
//! functions below as `proxy_on_context_create`, `proxy_on_request_headers`
//! and `proxy_on_response_headers` in place of the SDK's, and drops
//! `proxy_on_delete`, `proxy_on_done` and `proxy_on_log`: three calls per
//! stream instead of six. They still go through the SDK's [`HttpContext`]
//! trait, and root contexts stay the SDK's. The unpruned cargo output uses
//! the SDK's dispatch and works the same, only slower.
//!
//! **Roots over a VM's life.** Each configuration Envoy delivers gets a new
//! root context in the same VM; [`crate::roots`] keeps which root serves
//! which stream. Envoy retires a root once no stream holds it, and with no
//! `proxy_on_done`/`proxy_on_delete` exported the root context is then
//! simply gone from the host. So on each tick, while several roots live, a
//! root asks the host whether the others still exist
//! (`proxy_set_effective_context` answers `BadArgument` for a deleted
//! context) and forgets those that do not: the hot path pays nothing, and a
//! retired root is freed within a tick period (one second).
//!
//! Header and property reads and header writes call the ABI directly rather
//! than through the SDK's `hostcalls`, which panic on any status they do not
//! expect (a panic kills the VM) and build property paths per call.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::ptr::null_mut;
use std::time::Duration;

use proxy_wasm::types::{Action, LogLevel, MapType, MetricType, Status};

use crate::format::{Reader, Side};
use crate::matcher::HeaderPairs;
use crate::plan::{Host, Outcome, Plan, Scratch};
use crate::roots::{Kept, Roots};

/// Per-VM state.
struct Shared {
    /// The live roots' plans and the records of their streams.
    roots: Roots<Plan>,
    scratch: Scratch,
    /// Counted in memory on the hot path, flushed to Envoy's stats on tick.
    pending: Outcome,
    /// The VM's counters (metric ids are per VM), once defined.
    metrics: Option<Metrics>,
    /// What this VM last added to the `roots_live` and `stream_records`
    /// gauges (Envoy sums them over VMs); brought up to date on tick.
    reported: (i64, i64),
}

/// The VM's one `Shared`. A plain static rather than `thread_local!`: Wasm
/// VMs run a single thread (each Envoy worker has its own VM), and the
/// thread-local machinery costs code size and a lazy-init check per access.
struct VmCell(RefCell<Shared>);

// SAFETY: the module is built without threads or atomics; the VM never
// touches this from two threads.
unsafe impl Sync for VmCell {}

static SHARED: VmCell = VmCell(RefCell::new(Shared {
    roots: Roots::new(),
    scratch: Scratch::new(),
    pending: Outcome {
        written: 0,
        removed: 0,
        refused: 0,
    },
    metrics: None,
    reported: (0, 0),
}));

/// Runs `f` on the shared state. Host calls made inside never re-enter the
/// module's callbacks, so the borrow cannot be taken twice.
fn with_shared<R>(f: impl FnOnce(&mut Shared) -> R) -> R {
    f(&mut SHARED.0.borrow_mut())
}

/// Counters shown in Envoy's `/stats` (as `wasmcustom.header_filter.*`).
#[derive(Default, Clone, Copy)]
struct Metrics {
    written: u32,
    removed: u32,
    refused: u32,
    rejected: u32,
    roots_live: u32,
    stream_records: u32,
}

impl Metrics {
    fn define() -> Option<Metrics> {
        let counter = |name| proxy_wasm::hostcalls::define_metric(MetricType::Counter, name).ok();
        let gauge = |name| proxy_wasm::hostcalls::define_metric(MetricType::Gauge, name).ok();
        Some(Metrics {
            written: counter("header_filter.headers_written")?,
            removed: counter("header_filter.headers_removed")?,
            refused: counter("header_filter.values_refused")?,
            rejected: counter("header_filter.config_rejected")?,
            roots_live: gauge("header_filter.roots_live")?,
            stream_records: gauge("header_filter.stream_records")?,
        })
    }
}

const FLUSH_PERIOD: Duration = Duration::from_secs(1);

/// The root-context work, shared by the built module's own entry points
/// (`header_filter_on_configure`, `_on_tick`) and the SDK's dispatch that
/// the unpruned cargo output uses.
mod roots {
    use super::*;

    /// Configures root `id`: compiles its plan, or logs the one error
    /// line and refuses (Envoy then fails closed).
    pub fn configure(id: u32) -> bool {
        let metrics = metrics();
        let bytes = proxy_wasm::hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        match Plan::from_json(&bytes) {
            Ok(plan) => {
                with_shared(|shared| shared.roots.configured(id, plan));
                let _ = proxy_wasm::hostcalls::set_tick_period(FLUSH_PERIOD);
                true
            }
            Err(error) => {
                let _ = proxy_wasm::hostcalls::log(
                    LogLevel::Error,
                    &format!("header-filter: invalid configuration: {error}"),
                );
                if let Some(metrics) = metrics {
                    let _ = proxy_wasm::hostcalls::increment_metric(metrics.rejected, 1);
                }
                false
            }
        }
    }

    /// The VM's counters, defined on first use.
    fn metrics() -> Option<Metrics> {
        if let Some(metrics) = with_shared(|shared| shared.metrics) {
            return Some(metrics);
        }
        let metrics = Metrics::define();
        with_shared(|shared| shared.metrics = metrics);
        metrics
    }

    /// Forgets retired roots, ages root `id`'s stream records and flushes
    /// the VM's counters and gauges.
    pub fn tick(id: u32) {
        with_shared(|shared| {
            if shared.roots.len() > 1 {
                shared.roots.retire(|other| other == id || exists(other));
                exists(id);
            }
        });
        let (pending, metrics, gauges) = with_shared(|shared| {
            shared.roots.tick(id);
            let now = (shared.roots.len() as i64, shared.roots.records() as i64);
            let before = std::mem::replace(&mut shared.reported, now);
            let gauges = (now.0 - before.0, now.1 - before.1);
            (std::mem::take(&mut shared.pending), shared.metrics, gauges)
        });
        let Some(metrics) = metrics else { return };
        for (metric, count) in [
            (metrics.written, i64::from(pending.written)),
            (metrics.removed, i64::from(pending.removed)),
            (metrics.refused, i64::from(pending.refused)),
            (metrics.roots_live, gauges.0),
            (metrics.stream_records, gauges.1),
        ] {
            if count != 0 {
                let _ = proxy_wasm::hostcalls::increment_metric(metric, count);
            }
        }
    }

    /// Whether the host still has context `id` (a retired root is deleted).
    /// Leaves `id` the effective context: the caller makes its own id
    /// effective again last.
    fn exists(id: u32) -> bool {
        // SAFETY: a plain call with an integer argument.
        unsafe { abi::proxy_set_effective_context(id) == Status::Ok }
    }
}

/// A stream's request headers: the plan's request side, and what its
/// response side needs kept.
fn on_request_headers(stream: u32) {
    with_shared(|shared| {
        let Some(root) = shared.roots.root_of(stream) else {
            return;
        };
        if let Some((route, kept)) = request(shared, root) {
            shared.roots.keep(stream, root, route, kept);
        }
    });
}

/// A stream's response headers: the plan's response side, with what the
/// request side kept.
fn on_response_headers(stream: u32) {
    with_shared(|shared| {
        let Some(root) = shared.roots.root_of(stream) else {
            return;
        };
        let (route, kept) = shared.roots.take(stream);
        response(shared, root, route, &kept);
    });
}

/// Runs the request side of the plan of the root at index `root`; returns
/// what the response side needs of it, if anything: the route the request
/// took when that route acts on the response, and the request headers
/// response rules read (Envoy closes the request map after this callback).
fn request(shared: &mut Shared, root: usize) -> Option<(Option<u16>, Kept)> {
    let Shared {
        roots,
        scratch,
        pending,
        ..
    } = shared;
    let plan = roots.plan(root);
    let mut abi = Abi::new(Side::Request, plan, &[]);
    let mut route = None;
    if plan.touches(Side::Request) {
        let (taken, outcome) = plan.request(&mut abi, scratch);
        pending.add(outcome);
        route = taken.filter(|&r| plan.route_affects_response(r));
    }
    let names = plan.request_headers_for_response();
    if names.is_empty() && route.is_none() {
        return None;
    }
    let kept = names.iter().map(|n| abi.header(Side::Request, n)).collect();
    Some((route, kept))
}

/// Runs the response side for a request that took `route`; `kept` answers
/// `%REQ(..)%` on the response side.
fn response(shared: &mut Shared, root: usize, route: Option<u16>, kept: &[Option<Vec<u8>>]) {
    let Shared {
        roots,
        scratch,
        pending,
        ..
    } = shared;
    let plan = roots.plan(root);
    if !plan.touches(Side::Response) {
        return;
    }
    let mut abi = Abi::new(Side::Response, plan, kept);
    pending.add(plan.response(route, &mut abi, scratch));
}

/// `proxy_on_context_create` of the built module (see the module docs):
/// nothing for a root (its plan is made at configure); a stream needs a
/// record only when the VM has several roots, to know its plan later.
#[no_mangle]
pub extern "C" fn header_filter_on_context_create(context_id: u32, root_context_id: u32) {
    if root_context_id == 0 {
        return;
    }
    with_shared(|shared| shared.roots.created(context_id, root_context_id));
}

/// `proxy_on_request_headers` of the built module.
#[no_mangle]
pub extern "C" fn header_filter_on_request_headers(
    context_id: u32,
    _num_headers: usize,
    _end_of_stream: bool,
) -> Action {
    on_request_headers(context_id);
    Action::Continue
}

/// `proxy_on_response_headers` of the built module.
#[no_mangle]
pub extern "C" fn header_filter_on_response_headers(
    context_id: u32,
    _num_headers: usize,
    _end_of_stream: bool,
) -> Action {
    on_response_headers(context_id);
    Action::Continue
}

/// `_initialize` of the built module: the C runtime's constructors, and
/// none of the SDK's dispatch (its `_initialize` registers the SDK's root
/// context factory, which the built module does not use).
#[no_mangle]
pub extern "C" fn header_filter_initialize() {
    extern "C" {
        fn __wasm_call_ctors();
    }
    // SAFETY: what every WASI reactor's `_initialize` does first.
    unsafe { __wasm_call_ctors() };
}

/// `proxy_on_vm_start` of the built module: nothing to set up.
#[no_mangle]
pub extern "C" fn header_filter_on_vm_start(_root_context_id: u32, _vm_config_size: usize) -> bool {
    true
}

/// `proxy_on_configure` of the built module.
#[no_mangle]
pub extern "C" fn header_filter_on_configure(root_context_id: u32, _config_size: usize) -> bool {
    roots::configure(root_context_id)
}

/// `proxy_on_tick` of the built module.
#[no_mangle]
pub extern "C" fn header_filter_on_tick(root_context_id: u32) {
    roots::tick(root_context_id);
}

/// The host's header maps and properties, through the raw ABI, during the
/// callback of `phase`.
///
/// Every host read costs a host call and, for a value, a call back into
/// the VM to allocate it. So once the plan has read the whole header map of
/// `phase` (route and response matchers do), reads of that side are
/// answered from it, except for names the plan has written since (kept as
/// hashes; a collision only costs a host read).
struct Abi<'a> {
    phase: Side,
    plan: &'a Plan,
    kept: &'a [Option<Vec<u8>>],
    map: OnceCell<Vec<u8>>,
    written: Vec<u64>,
}

impl<'a> Abi<'a> {
    fn new(phase: Side, plan: &'a Plan, kept: &'a [Option<Vec<u8>>]) -> Abi<'a> {
        Abi {
            phase,
            plan,
            kept,
            map: OnceCell::new(),
            written: Vec::new(),
        }
    }

    /// The map of `side` as read, while it still says what the host has.
    fn cached(&self, side: Side, name: &str) -> Option<HeaderPairs<'_>> {
        let map = self.map.get().filter(|_| side == self.phase)?;
        (!self.written.contains(&name_hash(name))).then(|| HeaderPairs::new(map))
    }

    fn wrote(&mut self, side: Side, name: &str) {
        if side == self.phase && self.map.get().is_some() {
            self.written.push(name_hash(name));
        }
    }
}

/// FNV-1a: enough to tell the few names one callback writes apart.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn map(side: Side) -> MapType {
    match side {
        Side::Request => MapType::HttpRequestHeaders,
        Side::Response => MapType::HttpResponseHeaders,
    }
}

fn read_header(of: Side, name: &str) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: the host writes a buffer it allocated through
    // `proxy_on_memory_allocate` (a boxed slice of `size` bytes).
    let status = unsafe {
        abi::proxy_get_header_map_value(map(of), name.as_ptr(), name.len(), &mut data, &mut size)
    };
    take_buffer(status, data, size)
}

fn read_property(path: &[u8]) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: as for headers.
    let status =
        unsafe { abi::proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    take_buffer(status, data, size)
}

impl Reader for Abi<'_> {
    fn header(&self, of: Side, name: &str) -> Option<Vec<u8>> {
        match self.cached(of, name) {
            Some(map) => map.get(name).map(<[u8]>::to_vec),
            None => read_header(of, name),
        }
    }

    fn property(&self, path: &[u8]) -> Option<Vec<u8>> {
        read_property(path)
    }

    fn formatter_header(&self, of: Side, name: &str) -> Option<Vec<u8>> {
        if of == Side::Request && self.phase == Side::Response {
            let names = self.plan.request_headers_for_response();
            let index = names.iter().position(|n| n == name)?;
            self.kept.get(index)?.clone()
        } else {
            self.header(of, name)
        }
    }
}

fn take_buffer(status: Status, data: *mut u8, size: usize) -> Option<Vec<u8>> {
    match status {
        Status::Ok if data.is_null() => Some(Vec::new()),
        // SAFETY: see the callers: a host allocation of exactly `size` bytes.
        Status::Ok => Some(unsafe { Vec::from_raw_parts(data, size, size) }),
        _ => None,
    }
}

impl Host for Abi<'_> {
    fn add(&mut self, side: Side, name: &str, value: &[u8]) {
        self.wrote(side, name);
        // SAFETY: pointers and lengths of live slices.
        unsafe {
            abi::proxy_add_header_map_value(
                map(side),
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            );
        }
    }

    fn replace(&mut self, side: Side, name: &str, value: &[u8]) {
        self.wrote(side, name);
        // SAFETY: pointers and lengths of live slices.
        unsafe {
            abi::proxy_replace_header_map_value(
                map(side),
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            );
        }
    }

    fn remove(&mut self, side: Side, name: &str) {
        self.wrote(side, name);
        // SAFETY: pointer and length of a live slice.
        unsafe {
            abi::proxy_remove_header_map_value(map(side), name.as_ptr(), name.len());
        }
    }

    fn header_map(&self, side: Side) -> Cow<'_, [u8]> {
        let read = || {
            let (mut data, mut size) = (null_mut(), 0);
            // SAFETY: as for a header value: one host allocation of `size`.
            let status =
                unsafe { abi::proxy_get_header_map_pairs(map(side), &mut data, &mut size) };
            take_buffer(status, data, size).unwrap_or_default()
        };
        // The map of this callback's side, before any write, is kept and
        // lent: later reads of it (see `cached`) need no host call, and
        // nothing is copied.
        if side == self.phase && self.written.is_empty() {
            Cow::Borrowed(self.map.get_or_init(read))
        } else {
            Cow::Owned(read())
        }
    }
}

/// The few ABI imports called directly (same signatures as the SDK's).
mod abi {
    use proxy_wasm::types::{MapType, Status};

    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_get_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> Status;
        pub fn proxy_add_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> Status;
        pub fn proxy_replace_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> Status;
        pub fn proxy_remove_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
        ) -> Status;
        pub fn proxy_get_header_map_pairs(
            map_type: MapType,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> Status;
        pub fn proxy_set_effective_context(context_id: u32) -> Status;
        pub fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> Status;
    }
}
