//! Export pruning: the post-link step that makes the SDK-built module as
//! cheap as a hand-written one.
//!
//! Envoy calls every `proxy_on_*` callback a module exports (bodies,
//! trailers, log, done…) and skips those it lacks; each call is a trip into
//! the VM. The proxy-wasm SDK exports all of them, whatever the filter
//! implements. This step keeps only the callbacks the filter uses, then
//! removes the code that only the dropped exports reached.
//!
//! Kept: the ABI version, memory, the WASI reactor init, allocation, VM
//! start, configure, tick (metric flush), context create and delete (the
//! SDK frees its per-request context in `proxy_on_delete`) and the two
//! header callbacks. `proxy_on_done` and `proxy_on_log` go: the filter does
//! not implement them, and Envoy treats a missing `proxy_on_done` as "done".

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The `proxy_on_*` exports the filter needs; every other one is dropped.
pub const KEPT_CALLBACKS: &[&str] = &[
    "proxy_on_memory_allocate",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_tick",
    "proxy_on_context_create",
    "proxy_on_request_headers",
    "proxy_on_response_headers",
    "proxy_on_delete",
];

/// The C allocation functions the filter defines (filter/src/alloc.rs) so
/// that wasi-libc's dlmalloc stays out: a cdylib exports them, but the host
/// allocates through `proxy_on_memory_allocate`, so the exports go.
const C_ALLOCATOR: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "free",
    "aligned_alloc",
    "posix_memalign",
    "malloc_usable_size",
];

/// What pruning did, for the build's one line of output.
pub struct Pruned {
    pub dropped: Vec<String>,
    pub size_before: u64,
    pub size_after: u64,
}

/// Rewrites `input` into `output` with only [`KEPT_CALLBACKS`] among the
/// `proxy_on_*` exports, and without the code that becomes unreachable.
pub fn prune(input: &Path, output: &Path) -> Result<Pruned> {
    let size_before = std::fs::metadata(input)
        .with_context(|| format!("reading {}", input.display()))?
        .len();
    let mut module = walrus::Module::from_file(input)
        .with_context(|| format!("parsing {} as WebAssembly", input.display()))?;
    let names: Vec<String> = module.exports.iter().map(|e| e.name.clone()).collect();
    for needed in KEPT_CALLBACKS {
        if !names.iter().any(|n| n == needed) {
            bail!(
                "{} does not export {needed}; is it a proxy-wasm module?",
                input.display()
            );
        }
    }
    let dropped: Vec<(walrus::ExportId, String)> = module
        .exports
        .iter()
        .filter(|e| {
            (e.name.starts_with("proxy_on_") && !KEPT_CALLBACKS.contains(&e.name.as_str()))
                || C_ALLOCATOR.contains(&e.name.as_str())
        })
        .map(|e| (e.id(), e.name.clone()))
        .collect();
    for (id, _) in &dropped {
        module.exports.delete(*id);
    }
    walrus::passes::gc::run(&mut module);
    // Names and producers are not needed at run time.
    module.producers.clear();
    let ids: Vec<_> = module.customs.iter().map(|(id, _)| id).collect();
    for id in ids {
        module.customs.delete(id);
    }
    let bytes = module.emit_wasm();
    let tmp = output.with_extension("wasm.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))?;
    Ok(Pruned {
        dropped: dropped.into_iter().map(|(_, name)| name).collect(),
        size_before,
        size_after: bytes.len() as u64,
    })
}
