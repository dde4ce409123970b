//! `extpack`: packages proxy-wasm modules as extension images that load in
//! Maistra's ServiceMeshExtension and Istio's WasmPlugin.
//!
//! The library does the work; `cli.rs` only parses arguments and prints.
//! Code map: [`manifest`] (Maistra `manifest.yaml`), [`wasm`] (module
//! validation), [`package`] (inputs to a checked package), [`docs`]
//! (`--docs` folder), [`layer`] (deterministic tar+gzip), [`image`] (OCI
//! layout/archive, compat and artifact formats), [`output`] (atomic writes),
//! [`extract`] (hardened tar reading), [`registry`] (push/pull), [`credentials`] (registry
//! credentials as Docker and podman keep them), [`mesh`]
//! (ServiceMeshExtension, WasmPlugin, EnvoyFilter and EnvoyExtensionPolicy
//! for an image), [`exit`] (exit codes by kind of failure), [`render`] (a
//! filter configuration tried offline on a described request).

pub mod cli;
pub mod credentials;
pub mod docs;
pub mod exit;
pub mod extract;
pub mod image;
pub mod layer;
pub mod manifest;
pub mod mesh;
pub mod output;
pub mod package;
pub mod registry;
pub mod render;
pub mod wasm;
