//! Checks that a file is a WebAssembly core module a proxy-wasm host can load,
//! before anything is packaged.
//!
//! "Real WebAssembly" means it passes `wasmparser`'s full validation (types,
//! bodies), not only the magic number. "proxy-wasm" means it exports the
//! functions a host looks for first: a `proxy_abi_version_*` marker, an
//! allocator (`proxy_on_memory_allocate` or `malloc`) and a `memory`. This
//! module only reads bytes; it never writes.

use wasmparser::{ExternalKind, Parser, Payload, Validator, WasmFeatures};

/// What validation learnt about a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Every ABI the module declares, e.g. `0_2_1` for
    /// `proxy_abi_version_0_2_1`, sorted.
    pub abi_versions: Vec<String>,
    /// The allocator export the host will call.
    pub allocator: String,
    /// Number of exports in total.
    pub exports: usize,
}

impl ModuleInfo {
    /// ABI names as the Wasm image spec's runtime config lists them
    /// (`v0-0.2.1` for `proxy_abi_version_0_2_1`).
    pub fn spec_abi_versions(&self) -> Vec<String> {
        self.abi_versions
            .iter()
            .map(|v| format!("v0-{}", v.replace('_', ".")))
            .collect()
    }
}

/// Why a module cannot be packaged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WasmError {
    #[error("not a WebAssembly module: it does not start with the \\0asm magic bytes")]
    NotWasm,
    #[error("not a WebAssembly core module: it is a component; build a core module (e.g. --target wasm32-wasip1)")]
    Component,
    #[error("not valid WebAssembly: {0}")]
    Invalid(String),
    #[error("not a proxy-wasm module: it exports no proxy_abi_version_* function (e.g. proxy_abi_version_0_2_1); build it with a proxy-wasm SDK")]
    NoAbi,
    #[error("not a proxy-wasm module: it exports neither proxy_on_memory_allocate nor malloc, so the host cannot pass it data")]
    NoAllocator,
    #[error("not a proxy-wasm module: it exports no memory named \"memory\"")]
    NoMemory,
}

/// Validates `bytes` as a proxy-wasm module.
pub fn validate(bytes: &[u8]) -> Result<ModuleInfo, WasmError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(WasmError::NotWasm);
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        // Versions other than 1 are components (0x0d layer 1) or unknown.
        return Err(if bytes[6..8] == [1, 0] {
            WasmError::Component
        } else {
            WasmError::Invalid(format!("unsupported binary version {:02x?}", &bytes[4..8]))
        });
    }
    Validator::new_with_features(WasmFeatures::default())
        .validate_all(bytes)
        .map_err(|e| WasmError::Invalid(e.to_string()))?;

    let mut abi = Vec::new();
    let mut allocator = None;
    let mut memory = false;
    let mut exports = 0;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| WasmError::Invalid(e.to_string()))?;
        if let Payload::ExportSection(reader) = payload {
            for export in reader {
                let export = export.map_err(|e| WasmError::Invalid(e.to_string()))?;
                exports += 1;
                match (export.kind, export.name) {
                    (ExternalKind::Func, name) if name.starts_with("proxy_abi_version_") => {
                        abi.push(name["proxy_abi_version_".len()..].to_string());
                    }
                    (ExternalKind::Func, "proxy_on_memory_allocate") => {
                        allocator = Some("proxy_on_memory_allocate".to_string());
                    }
                    (ExternalKind::Func, "malloc") if allocator.is_none() => {
                        allocator = Some("malloc".to_string());
                    }
                    (ExternalKind::Memory, "memory") => memory = true,
                    _ => {}
                }
            }
        }
    }
    if abi.is_empty() {
        return Err(WasmError::NoAbi);
    }
    let allocator = allocator.ok_or(WasmError::NoAllocator)?;
    if !memory {
        return Err(WasmError::NoMemory);
    }
    abi.sort();
    Ok(ModuleInfo {
        abi_versions: abi,
        allocator,
        exports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(exports: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module
                 (memory (export "memory") 1)
                 (func $f (result i32) i32.const 0)
                 (func $g (param i32) (result i32) i32.const 0)
                 {exports})"#
        ))
        .unwrap()
    }

    const PROXY: &str = r#"(export "proxy_abi_version_0_2_1" (func $f))
                           (export "proxy_on_memory_allocate" (func $g))"#;

    #[test]
    fn proxy_wasm_module_is_accepted_with_its_abi() {
        let info = validate(&module(PROXY)).unwrap();
        assert_eq!(info.abi_versions, vec!["0_2_1"]);
        assert_eq!(info.spec_abi_versions(), vec!["v0-0.2.1"]);
        assert_eq!(info.allocator, "proxy_on_memory_allocate");
    }

    #[test]
    fn malloc_is_an_accepted_allocator() {
        let m =
            module(r#"(export "proxy_abi_version_0_1_0" (func $f)) (export "malloc" (func $g))"#);
        assert_eq!(validate(&m).unwrap().allocator, "malloc");
    }

    #[test]
    fn refusals_say_what_is_missing() {
        let cases: Vec<(Vec<u8>, WasmError)> = vec![
            (b"hello world, not wasm".to_vec(), WasmError::NotWasm),
            (Vec::new(), WasmError::NotWasm),
            (module(""), WasmError::NoAbi),
            (
                module(r#"(export "proxy_abi_version_0_2_1" (func $f))"#),
                WasmError::NoAllocator,
            ),
            (
                wat::parse_str(
                    r#"(module (func $f) (func $g (param i32) (result i32) i32.const 0)
                       (export "proxy_abi_version_0_2_1" (func $f))
                       (export "malloc" (func $g)))"#,
                )
                .unwrap(),
                WasmError::NoMemory,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(validate(&bytes).unwrap_err(), want);
        }
    }

    #[test]
    fn truncated_module_is_invalid_with_the_parser_reason() {
        let m = module(PROXY);
        let err = validate(&m[..m.len() - 5]).unwrap_err();
        match err {
            WasmError::Invalid(reason) => assert!(reason.contains("end"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ill_typed_body_is_invalid() {
        // A function claiming to return i32 that returns nothing: parses, but
        // does not validate.
        let good = wat::parse_str("(module (func (result i32) i32.const 0))").unwrap();
        let bad = {
            let mut b = good.clone();
            // Replace `i32.const 0` (0x41 0x00) with `nop nop`.
            let pos = b.windows(2).rposition(|w| w == [0x41, 0x00]).unwrap();
            b[pos] = 0x01;
            b[pos + 1] = 0x01;
            b
        };
        assert!(matches!(validate(&bad), Err(WasmError::Invalid(_))));
    }
}
