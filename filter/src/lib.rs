//! A proxy-wasm HTTP filter that adds, overwrites and removes request and
//! response headers with Envoy's own semantics (`request_headers_to_add`,
//! `append_action`, `%REQ(..)%`...).
//!
//! The crate is a pure core — [`config`] (the JSON shape and its
//! validation), [`format`] (the `%...%` language) and [`plan`] (what runs per
//! request) — plus, in the Wasm build only, the proxy-wasm glue in `proxy`.
//! The core builds and is tested on the host; the packager uses it to
//! validate configurations offline. Its modules are layered, each using
//! only the layers below it (ARCHITECTURE.md, "Layers";
//! `tests/layers.rs` holds the order).

pub mod config;
pub mod format;
pub mod headers;
pub mod host;
pub mod json;
pub mod jsonpath;
pub mod matcher;
pub mod mutation;
pub mod offline;
pub mod plan;
pub mod roots;
pub mod route;
pub mod rules;
pub mod warning;

#[cfg(target_arch = "wasm32")]
mod alloc;
#[cfg(target_arch = "wasm32")]
mod proxy;

pub use config::{Config, ConfigError};
pub use plan::Plan;
