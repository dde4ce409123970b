//! The proxy-wasm glue: adapts the host to [`crate::plan::Host`] and hands
//! each callback to the plan. No decisions are taken here.
//!
//! The root context owns the configuration; a rejected configuration makes
//! `on_configure` return false (Envoy then refuses the filter: fail closed)
//! after one error-level log line naming the JSON path and the reason.
//!
//! Header and property reads and header writes call the ABI directly rather
//! than through the SDK's `hostcalls`, which panic on any status they do not
//! expect (a panic kills the VM) and build property paths per call.

use std::cell::RefCell;
use std::ptr::null_mut;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType, Status};

use crate::format::{Property, Reader, Side};
use crate::plan::{Host, Outcome, Plan, Scratch};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Per-VM state the per-request contexts share.
struct Shared {
    /// `None` until the first configuration is accepted.
    plan: Option<Plan>,
    scratch: Scratch,
    /// Counted in memory on the hot path, flushed to Envoy's stats on tick.
    pending: Outcome,
}

/// The VM's one `Shared`. A plain static rather than `thread_local!`: Wasm
/// VMs run a single thread (each Envoy worker has its own VM), and the
/// thread-local machinery costs code size and a lazy-init check per access.
struct VmCell(RefCell<Shared>);

// SAFETY: the module is built without threads or atomics; the VM never
// touches this from two threads.
unsafe impl Sync for VmCell {}

static SHARED: VmCell = VmCell(RefCell::new(Shared {
    plan: None,
    scratch: Vec::new(),
    pending: Outcome {
        written: 0,
        removed: 0,
        refused: 0,
    },
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
}

impl Metrics {
    fn define() -> Option<Metrics> {
        let counter = |name| proxy_wasm::hostcalls::define_metric(MetricType::Counter, name).ok();
        Some(Metrics {
            written: counter("header_filter.headers_written")?,
            removed: counter("header_filter.headers_removed")?,
            refused: counter("header_filter.values_refused")?,
            rejected: counter("header_filter.config_rejected")?,
        })
    }
}

const FLUSH_PERIOD: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Root {
    metrics: Option<Metrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        if self.metrics.is_none() {
            self.metrics = Metrics::define();
        }
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Plan::from_json(&bytes) {
            Ok(plan) => {
                with_shared(|shared| shared.plan = Some(plan));
                let _ = proxy_wasm::hostcalls::set_tick_period(FLUSH_PERIOD);
                true
            }
            Err(error) => {
                let _ = proxy_wasm::hostcalls::log(
                    LogLevel::Error,
                    &format!("header-filter: invalid configuration: {error}"),
                );
                if let Some(metrics) = self.metrics {
                    let _ = proxy_wasm::hostcalls::increment_metric(metrics.rejected, 1);
                }
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(metrics) = self.metrics else { return };
        let pending = with_shared(|shared| std::mem::take(&mut shared.pending));
        for (id, count) in [
            (metrics.written, pending.written),
            (metrics.removed, pending.removed),
            (metrics.refused, pending.refused),
        ] {
            if count > 0 {
                let _ = proxy_wasm::hostcalls::increment_metric(id, i64::from(count));
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let keeps = with_shared(|shared| {
            shared
                .plan
                .as_ref()
                .is_some_and(|plan| !plan.request_headers_for_response().is_empty())
        });
        if keeps {
            Some(Box::new(KeepingStream::default()))
        } else {
            // A zero-sized context: boxing it does not allocate.
            Some(Box::new(Stream))
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Applies the plan of `side`; `kept` answers `%REQ(..)%` on the response side.
fn apply(side: Side, kept: &[Option<Vec<u8>>]) {
    with_shared(|shared| {
        let Some(plan) = &shared.plan else { return };
        if !plan.touches(side) {
            return;
        }
        let mut abi = Abi {
            phase: side,
            plan,
            kept,
        };
        let outcome = plan.apply(side, &mut abi, &mut shared.scratch);
        shared.pending.written += outcome.written;
        shared.pending.removed += outcome.removed;
        shared.pending.refused += outcome.refused;
    });
}

/// The stream of a plan whose response rules read no request header.
struct Stream;

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        apply(Side::Request, &[]);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        apply(Side::Response, &[]);
        Action::Continue
    }
}

/// The stream of a plan whose response rules read request headers: Envoy
/// closes the request header map once the request headers are done, so the
/// ones needed are kept here (after the request rules ran).
#[derive(Default)]
struct KeepingStream {
    kept: Vec<Option<Vec<u8>>>,
}

impl Context for KeepingStream {}

impl HttpContext for KeepingStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        apply(Side::Request, &[]);
        self.kept = with_shared(|shared| {
            let names = shared.plan.as_ref().map(Plan::request_headers_for_response);
            names
                .unwrap_or_default()
                .iter()
                .map(|name| read_header(Side::Request, name))
                .collect()
        });
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        apply(Side::Response, &self.kept);
        Action::Continue
    }
}

/// The host's header maps and properties, through the raw ABI, during the
/// callback of `phase`.
struct Abi<'a> {
    phase: Side,
    plan: &'a Plan,
    kept: &'a [Option<Vec<u8>>],
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

impl Reader for Abi<'_> {
    fn header(&self, of: Side, name: &str) -> Option<Vec<u8>> {
        read_header(of, name)
    }

    fn property(&self, property: Property) -> Option<Vec<u8>> {
        let path = property.path();
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: as for headers.
        let status =
            unsafe { abi::proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
        take_buffer(status, data, size)
    }

    fn formatter_header(&self, of: Side, name: &str) -> Option<Vec<u8>> {
        if of == Side::Request && self.phase == Side::Response {
            let names = self.plan.request_headers_for_response();
            let index = names.iter().position(|n| n == name)?;
            self.kept.get(index)?.clone()
        } else {
            read_header(of, name)
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
        // SAFETY: pointer and length of a live slice.
        unsafe {
            abi::proxy_remove_header_map_value(map(side), name.as_ptr(), name.len());
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
        pub fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> Status;
    }
}
