//! The Wasm modules the bench makes itself: the hand-written floor
//! (`benches/floor.wat`, compiled here), `floor3` (the same plus an empty
//! `proxy_on_request_headers`: the least a module that may act on requests
//! pays, three calls per request as our filter makes), and a 10 MiB module
//! for the packager timings (valid proxy-wasm exports plus a big data
//! segment).

use crate::paths;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub fn floor_source() -> PathBuf {
    paths::repo_root().join("benches").join("floor.wat")
}

/// The realistic scenario's floor: the filter's host calls for each request
/// of the mix and nothing else (checked against Envoy's trace, `trace.rs`).
pub fn mix_floor_source() -> PathBuf {
    paths::repo_root().join("benches").join("mix-floor.wat")
}

/// Compiles `benches/mix-floor.wat` into `dir/mix-floor.wasm`.
pub fn compile_mix_floor(dir: &Path) -> Result<PathBuf> {
    let module = dir.join("mix-floor.wasm");
    compile_wat(&mix_floor_source(), &module)?;
    Ok(module)
}

/// Compiles `benches/floor.wat` into `dir/floor.wasm`.
pub fn compile_floor(dir: &Path) -> Result<PathBuf> {
    let module = dir.join("floor.wasm");
    compile_wat(&floor_source(), &module)?;
    Ok(module)
}

/// Compiles the text module at `source` into `module`.
pub fn compile_wat(source: &Path, module: &Path) -> Result<()> {
    let bytes =
        wat::parse_file(source).with_context(|| format!("compiling {}", source.display()))?;
    std::fs::write(module, bytes).with_context(|| format!("writing {}", module.display()))
}

/// What `floor3` adds to the floor: `proxy_on_request_headers(context_id,
/// num_headers, end_of_stream)` returning Continue, doing nothing.
const EMPTY_REQUEST_HEADERS: &str = r#"
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.const 0))
"#;

/// Compiles `benches/floor.wat` with [`EMPTY_REQUEST_HEADERS`] into
/// `dir/floor3.wasm` (one source, so the two floors cannot drift apart).
pub fn compile_floor3(dir: &Path) -> Result<PathBuf> {
    let source = floor_source();
    let text = std::fs::read_to_string(&source)
        .with_context(|| format!("reading {}", source.display()))?;
    let end = text
        .rfind(')')
        .with_context(|| format!("{} does not end its module", source.display()))?;
    let wat = format!("{}{EMPTY_REQUEST_HEADERS}{}", &text[..end], &text[end..]);
    let bytes = wat::parse_str(&wat).context("compiling the floor3 module")?;
    let module = dir.join("floor3.wasm");
    std::fs::write(&module, bytes).with_context(|| format!("writing {}", module.display()))?;
    Ok(module)
}

/// Writes a module of about `size` bytes to `path`: the two exports
/// `extpack` checks for and a data segment of incompressible bytes, so the
/// gzip layer and the push move the full size.
pub fn write_large_module(path: &Path, size: usize) -> Result<()> {
    let pages = size / 65536 + 2;
    let mut wat = String::with_capacity(size * 3 + 512);
    let _ = write!(
        wat,
        "(module (memory (export \"memory\") {pages})\n\
         (func (export \"proxy_abi_version_0_2_1\"))\n\
         (func (export \"proxy_on_memory_allocate\") (param i32) (result i32) i32.const 0)\n\
         (data (i32.const 0) \""
    );
    // xorshift64: deterministic, so the same run gives the same module.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let _ = write!(wat, "\\{:02x}", state as u8);
    }
    wat.push_str("\"))\n");
    let bytes = wat::parse_str(&wat).context("assembling the large module")?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn floor_exports_exactly_the_six_callbacks_and_memory() {
        let bytes = wat::parse_file(super::floor_source()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for export in [
            "proxy_abi_version_0_2_1",
            "proxy_on_memory_allocate",
            "proxy_on_vm_start",
            "proxy_on_configure",
            "proxy_on_context_create",
            "proxy_on_response_headers",
        ] {
            assert!(text.contains(export), "{export}");
        }
        assert_eq!(text.matches("proxy_on_").count(), 5);
    }

    #[test]
    fn floor3_is_the_floor_plus_request_headers() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(super::compile_floor3(dir.path()).unwrap()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("proxy_on_request_headers"));
        assert!(text.contains("proxy_on_response_headers"));
        assert_eq!(text.matches("proxy_on_").count(), 6);
    }

    #[test]
    fn mix_floor_compiles_and_imports_only_header_and_property_calls() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(super::compile_mix_floor(dir.path()).unwrap()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("proxy_on_request_headers"));
        assert!(text.contains("proxy_on_response_headers"));
        assert!(!text.contains("proxy_on_tick") && !text.contains("proxy_log"));
    }

    #[test]
    fn large_module_has_the_asked_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.wasm");
        super::write_large_module(&path, 100_000).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!((100_000..101_000).contains(&size), "{size}");
    }
}
