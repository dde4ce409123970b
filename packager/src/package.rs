//! From build inputs (module path, flags, `--manifest`, `--docs`, `--config`)
//! to a checked [`Package`]: everything is read and validated here, before
//! any output is written.
//!
//! This is the one place that reads input files for `build`, `publish` and
//! `validate`; the image code below it only sees checked values.

use std::fs;
use std::path::{Path, PathBuf};

use crate::image::{Format, Package};
use crate::manifest::{ManifestError, ManifestInput};
use crate::wasm::{self, ModuleInfo, WasmError};

/// What the user asked to package.
#[derive(Debug, Clone, Default)]
pub struct BuildInputs {
    /// The module; may instead come from the manifest file's `module:`.
    pub module: Option<PathBuf>,
    /// Fields from flags (they win over the manifest file).
    pub flags: ManifestInput,
    pub manifest_file: Option<PathBuf>,
    pub docs: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub root_ids: Vec<String>,
    pub format: Option<Format>,
    pub epoch: u64,
}

/// Why inputs were refused.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Wasm { path: PathBuf, source: WasmError },
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
    #[error(transparent)]
    Field(#[from] ManifestError),
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error(transparent)]
    Docs(#[from] crate::docs::DocsError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no module given: pass MODULE.wasm or set `module:` in the manifest file")]
    NoModule,
}

/// Largest module accepted (the extraction limit, so what is built can be
/// read back).
pub const MAX_MODULE_BYTES: u64 = 256 << 20;

fn read(path: &Path) -> Result<Vec<u8>, InputError> {
    let err = |source| InputError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(err)?;
    if meta.len() > MAX_MODULE_BYTES {
        return Err(err(std::io::Error::other(format!(
            "larger than the {MAX_MODULE_BYTES}-byte limit"
        ))));
    }
    fs::read(path).map_err(err)
}

/// Reads and validates a module file.
pub fn check_module(path: &Path) -> Result<(Vec<u8>, ModuleInfo), InputError> {
    let bytes = read(path)?;
    let info = wasm::validate(&bytes).map_err(|source| InputError::Wasm {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((bytes, info))
}

/// Validates a filter configuration offline with the filter's own code,
/// reporting what Envoy would log.
pub fn check_config(path: &Path) -> Result<(), InputError> {
    let bytes = read(path)?;
    header_filter::Plan::from_json(&bytes)
        .map(|_| ())
        .map_err(|e| InputError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Reads, merges and checks everything; nothing is written.
pub fn prepare(inputs: &BuildInputs) -> Result<Package, InputError> {
    let (file_fields, base) = match &inputs.manifest_file {
        Some(path) => {
            let text = fs::read_to_string(path).map_err(|source| InputError::Read {
                path: path.clone(),
                source,
            })?;
            let fields =
                ManifestInput::from_yaml(&text).map_err(|source| InputError::Manifest {
                    path: path.clone(),
                    source,
                })?;
            (fields, path.parent().map(Path::to_path_buf))
        }
        None => (ManifestInput::default(), None),
    };
    let module_path = match (&inputs.module, &file_fields.module) {
        (Some(p), _) => p.clone(),
        (None, Some(m)) => base.unwrap_or_default().join(m),
        (None, None) => return Err(InputError::NoModule),
    };
    let manifest = inputs.flags.clone().or(file_fields).resolve()?;
    let (module, module_info) = check_module(&module_path)?;
    if let Some(config) = &inputs.config {
        check_config(config)?;
    }
    let docs = match &inputs.docs {
        Some(dir) => crate::docs::collect(dir)?,
        None => Vec::new(),
    };
    Ok(Package {
        manifest,
        module,
        module_info,
        docs,
        root_ids: inputs.root_ids.clone(),
        format: inputs.format.unwrap_or(Format::Compat),
        epoch: inputs.epoch,
    })
}
