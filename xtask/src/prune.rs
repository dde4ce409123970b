//! The post-link step that makes the SDK-built module as cheap to call as a
//! hand-written one: it decides which callbacks Envoy sees.
//!
//! Envoy calls every `proxy_on_*` callback a module exports (bodies,
//! trailers, log, done, delete…) and skips those it lacks; each call is a
//! trip into the VM. The proxy-wasm SDK exports all of them whatever the
//! filter implements, and keeps a boxed context per stream that only
//! `proxy_on_delete` frees. This step:
//!
//! - exports the filter's own stream entry points (`header_filter_on_*`, see
//!   filter/src/proxy.rs) as `proxy_on_context_create`,
//!   `proxy_on_request_headers` and `proxy_on_response_headers`, in place of
//!   the SDK's: streams then need no per-stream context, and no delete;
//! - exports the filter's own root entry points (`_initialize`, VM start,
//!   configure, tick) in place of the SDK's, so none of the SDK's dispatch
//!   (its context maps, and every default method of its context traits,
//!   reachable through their vtables) stays in the module, and its own
//!   allocation entry point (the host's buffers straight from `malloc`) in
//!   place of the SDK's `proxy_on_memory_allocate`;
//! - drops every other `proxy_on_*` export, and the C allocator exports the
//!   filter defines only to keep wasi-libc's dlmalloc out (Envoy would
//!   otherwise prefer `malloc` to `proxy_on_memory_allocate`);
//! - removes the code only the dropped exports reached.
//!
//! Per stream Envoy then makes three calls into the VM instead of six.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The SDK's `proxy_on_*` exports that stay as they are.
const KEPT_FROM_SDK: &[&str] = &[];

/// The filter's entry points and the export each one becomes (the SDK's
/// export of that name is dropped).
const RENAMED: &[(&str, &str)] = &[
    ("header_filter_initialize", "_initialize"),
    ("header_filter_on_vm_start", "proxy_on_vm_start"),
    ("header_filter_on_configure", "proxy_on_configure"),
    ("header_filter_on_tick", "proxy_on_tick"),
    ("header_filter_on_context_create", "proxy_on_context_create"),
    (
        "header_filter_on_request_headers",
        "proxy_on_request_headers",
    ),
    (
        "header_filter_on_response_headers",
        "proxy_on_response_headers",
    ),
    (
        "header_filter_on_memory_allocate",
        "proxy_on_memory_allocate",
    ),
];

/// C allocation functions the filter defines (filter/src/alloc.rs).
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

/// Rewrites `input` into `output` with the exports described above, and
/// without the code that becomes unreachable. `keep_c_allocator` keeps the
/// `malloc` family exported (Envoy then prefers `malloc` for the buffers
/// it hands the module): a variant for the test that both allocators are
/// one.
pub fn prune(input: &Path, output: &Path, keep_c_allocator: bool) -> Result<Pruned> {
    let size_before = std::fs::metadata(input)
        .with_context(|| format!("reading {}", input.display()))?
        .len();
    let mut module = walrus::Module::from_file(input)
        .with_context(|| format!("parsing {} as WebAssembly", input.display()))?;
    let names: Vec<String> = module.exports.iter().map(|e| e.name.clone()).collect();
    let needed = KEPT_FROM_SDK
        .iter()
        .chain(RENAMED.iter().map(|(ours, _)| ours));
    for name in needed {
        if !names.iter().any(|n| n == name) {
            bail!(
                "{} does not export {name}; is it the header filter?",
                input.display()
            );
        }
    }
    let renamed_to: Vec<&str> = RENAMED.iter().map(|(_, to)| *to).collect();
    let dropped: Vec<(walrus::ExportId, String)> = module
        .exports
        .iter()
        .filter(|e| {
            let name = e.name.as_str();
            (name.starts_with("proxy_on_") && !KEPT_FROM_SDK.contains(&name))
                || renamed_to.contains(&name)
                || (C_ALLOCATOR.contains(&name) && !keep_c_allocator)
        })
        .map(|e| (e.id(), e.name.clone()))
        .collect();
    for (id, _) in &dropped {
        module.exports.delete(*id);
    }
    let ids: Vec<walrus::ExportId> = module.exports.iter().map(|e| e.id()).collect();
    for id in ids {
        let export = module.exports.get_mut(id);
        if let Some((_, to)) = RENAMED.iter().find(|(from, _)| export.name == *from) {
            export.name = (*to).to_string();
        }
    }
    walrus::passes::gc::run(&mut module);
    // Custom sections (names, producers) are not needed at run time.
    module.producers.clear();
    let customs: Vec<_> = module.customs.iter().map(|(id, _)| id).collect();
    for id in customs {
        module.customs.delete(id);
    }
    let bytes = module.emit_wasm();
    let tmp = output.with_extension("wasm.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))?;
    Ok(Pruned {
        dropped: dropped
            .into_iter()
            .map(|(_, name)| name)
            .filter(|name| !renamed_to.contains(&name.as_str()))
            .collect(),
        size_before,
        size_after: bytes.len() as u64,
    })
}
