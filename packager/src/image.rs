//! The extension image: building it in the compat or artifact format, writing
//! and reading it as an OCI image layout folder or OCI archive, and finding
//! the module in it the way Istio's fetcher does.
//!
//! Every OCI structure is an `oci-spec` type; JSON is never written by hand.
//! An [`Image`] is only ever made from content whose digests and sizes have
//! been checked, so later code trusts its blobs. Registry transport lives in
//! `registry.rs`; this module never touches the network.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, Digest, DigestAlgorithm, ImageConfigurationBuilder,
    ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType,
    OciLayoutBuilder, Os, RootFsBuilder,
};
use serde::Serialize;

use crate::extract::{self, ExtractError, Limits, TarFiles};
use crate::layer::{self, Layer, Tree};
use crate::manifest::{Manifest, MODULE_FILE};
use crate::output::{self, OutputError};
use crate::wasm::ModuleInfo;

/// The runtime config media type of the Wasm image spec.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// The raw-module layer media type of the Wasm image spec ("oci" variant).
pub const WASM_CONTENT_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// Manifest annotation naming the Wasm image spec variant.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
/// Image config label that Maistra's extension images carry.
pub const TYPE_LABEL: (&str, &str) = ("type", "maistra-extension");
/// The file name of the runtime config, in the layer and as a title.
pub const RUNTIME_CONFIG_FILE: &str = "runtime-config.json";

const TITLE: &str = "org.opencontainers.image.title";
const VERSION: &str = "org.opencontainers.image.version";
const DESCRIPTION: &str = "org.opencontainers.image.description";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Which shape of image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One tar+gzip layer with `manifest.yaml` and `plugin.wasm` (Maistra,
    /// Istio, Wasm image spec "compat").
    Compat,
    /// Two layers: runtime config and raw module (Wasm image spec "oci").
    Artifact,
}

impl FromStr for Format {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Format, ImageError> {
        match s {
            "compat" => Ok(Format::Compat),
            "artifact" => Ok(Format::Artifact),
            other => Err(ImageError::FormatName(other.to_string())),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Compat => "compat",
            Format::Artifact => "artifact",
        })
    }
}

/// Why an image could not be built, written or read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("format {0:?} is not known: use compat or artifact")]
    FormatName(String),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{0} is neither an OCI image layout folder nor an OCI archive")]
    NotAnImage(PathBuf),
    #[error("blob {digest} does not match its digest (got {actual}): the image is corrupt or was tampered with")]
    DigestMismatch { digest: String, actual: String },
    #[error("blob {digest} is {actual} bytes, but its descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} is missing")]
    MissingBlob(String),
    #[error("digest {0:?} is not accepted: only sha256 digests are")]
    Digest(String),
    #[error("not an extension image: {0}")]
    Shape(String),
    // `reason`, not `source`: the message already holds it, and a `source`
    // would print it twice in the one-line error chain.
    #[error("layer {digest}: {reason}")]
    Layer {
        digest: String,
        reason: ExtractError,
    },
    #[error("invalid OCI {what}: {reason}")]
    Spec { what: &'static str, reason: String },
}

fn spec_err(what: &'static str) -> impl FnOnce(oci_spec::OciSpecError) -> ImageError {
    move |e| ImageError::Spec {
        what,
        reason: e.to_string(),
    }
}

/// Everything that goes into an image.
#[derive(Debug, Clone)]
pub struct Package {
    pub manifest: Manifest,
    pub module: Vec<u8>,
    pub module_info: ModuleInfo,
    /// Extra files as (`docs/...`, content).
    pub docs: Vec<(String, Vec<u8>)>,
    /// Root context ids for the runtime config (may be empty).
    pub root_ids: Vec<String>,
    pub format: Format,
    /// Seconds since 1970 stamped on entries and the config.
    pub epoch: u64,
}

/// The Wasm image spec's runtime config (`runtime-config.json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(rename = "type")]
    pub typ: String,
    pub abi_versions: Vec<String>,
    pub config: RuntimeEnvoyConfig,
}

/// The Envoy part of the runtime config.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RuntimeEnvoyConfig {
    pub root_ids: Vec<String>,
}

impl Package {
    fn runtime_config(&self) -> Vec<u8> {
        let config = RuntimeConfig {
            typ: "envoy_proxy".into(),
            abi_versions: self.module_info.spec_abi_versions(),
            config: RuntimeEnvoyConfig {
                root_ids: self.root_ids.clone(),
            },
        };
        serde_json::to_vec(&config).expect("runtime config serializes")
    }

    fn annotations(&self) -> HashMap<String, String> {
        let m = &self.manifest;
        let mut a = HashMap::from([(TITLE.to_string(), m.name.as_str().to_string())]);
        if let Some(v) = &m.version {
            a.insert(VERSION.into(), v.as_str().into());
        }
        if let Some(d) = &m.description {
            a.insert(DESCRIPTION.into(), d.clone());
        }
        a
    }
}

/// An image in memory: the manifest exactly as stored (its bytes define its
/// digest) and every blob it references, all verified.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: ImageManifest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_digest: String,
    /// Blobs by digest (`sha256:...`).
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// The tag it is named by in a layout (`org.opencontainers.image.ref.name`).
    pub ref_name: Option<String>,
}

fn descriptor(
    media_type: MediaType,
    bytes: &[u8],
    annotations: Option<HashMap<String, String>>,
) -> Result<Descriptor, ImageError> {
    let digest = Digest::from_str(&layer::sha256_digest(bytes)).map_err(spec_err("digest"))?;
    let mut d = Descriptor::new(media_type, bytes.len() as u64, digest);
    d.set_annotations(annotations);
    Ok(d)
}

fn title(name: &str) -> Option<HashMap<String, String>> {
    Some(HashMap::from([(TITLE.to_string(), name.to_string())]))
}

/// JSON with every object's keys sorted: `oci-spec` keeps annotations and
/// labels in `HashMap`s, whose order changes from run to run, and the bytes
/// of a manifest define its digest.
fn canonical_json(value: &impl Serialize) -> Vec<u8> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(
                    entries.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
                )
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sorted).collect())
            }
            other => other,
        }
    }
    let value = serde_json::to_value(value).expect("OCI structures serialize");
    serde_json::to_vec(&sorted(value)).expect("JSON values serialize")
}

fn rfc3339(epoch: u64) -> String {
    chrono::DateTime::from_timestamp(epoch as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Image {
    /// Builds the image for a package, deterministically.
    pub fn build(pkg: &Package) -> Result<Image, ImageError> {
        let mut blobs = BTreeMap::new();
        let runtime_config = pkg.runtime_config();
        let mut annotations = pkg.annotations();
        let (config_desc, layers) = match pkg.format {
            Format::Compat => {
                // The module first: Istio and Envoy Gateway load the first
                // entry named plugin.wasm, whatever folder it is in.
                let mut tree = Tree::new();
                tree.first(MODULE_FILE, pkg.module.clone())
                    .file("manifest.yaml", pkg.manifest.to_yaml().into_bytes())
                    .file(RUNTIME_CONFIG_FILE, runtime_config);
                for (path, data) in &pkg.docs {
                    tree.file(path.clone(), data.clone());
                }
                let layer = Layer::from_tree(&tree, pkg.epoch);
                let config = ImageConfigurationBuilder::default()
                    .created(rfc3339(pkg.epoch))
                    .architecture(Arch::Amd64)
                    .os(Os::Linux)
                    .config(
                        ConfigBuilder::default()
                            .labels(HashMap::from([(
                                TYPE_LABEL.0.to_string(),
                                TYPE_LABEL.1.to_string(),
                            )]))
                            .build()
                            .map_err(spec_err("image config"))?,
                    )
                    .rootfs(
                        RootFsBuilder::default()
                            .typ("layers")
                            .diff_ids(vec![layer.diff_id.clone()])
                            .build()
                            .map_err(spec_err("rootfs"))?,
                    )
                    .build()
                    .map_err(spec_err("image config"))?;
                let config = canonical_json(&config);
                let config_desc = descriptor(MediaType::ImageConfig, &config, None)?;
                let layer_desc = descriptor(MediaType::ImageLayerGzip, &layer.gzip, None)?;
                blobs.insert(config_desc.digest().to_string(), config);
                blobs.insert(layer_desc.digest().to_string(), layer.gzip);
                annotations.insert(VARIANT_ANNOTATION.into(), "compat".into());
                (config_desc, vec![layer_desc])
            }
            Format::Artifact => {
                let config_type = MediaType::Other(WASM_CONFIG_MEDIA_TYPE.into());
                let config_desc = descriptor(config_type.clone(), &runtime_config, None)?;
                let config_layer =
                    descriptor(config_type, &runtime_config, title(RUNTIME_CONFIG_FILE))?;
                let module_layer = descriptor(
                    MediaType::Other(WASM_CONTENT_MEDIA_TYPE.into()),
                    &pkg.module,
                    title(MODULE_FILE),
                )?;
                blobs.insert(config_desc.digest().to_string(), runtime_config);
                blobs.insert(module_layer.digest().to_string(), pkg.module.clone());
                (config_desc, vec![config_layer, module_layer])
            }
        };
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(layers)
            .annotations(annotations)
            .build()
            .map_err(spec_err("manifest"))?;
        let manifest_bytes = canonical_json(&manifest);
        Ok(Image {
            manifest_digest: layer::sha256_digest(&manifest_bytes),
            manifest,
            manifest_bytes,
            blobs,
            ref_name: Some(pkg.manifest.tag().to_string()),
        })
    }

    /// Makes an image from a manifest's bytes and a way to fetch blobs,
    /// checking the manifest against `expected_digest` (when known) and every
    /// blob against its descriptor.
    pub fn from_parts(
        manifest_bytes: Vec<u8>,
        expected_digest: Option<&str>,
        mut fetch: impl FnMut(&Descriptor) -> Result<Vec<u8>, ImageError>,
    ) -> Result<Image, ImageError> {
        let manifest_digest = layer::sha256_digest(&manifest_bytes);
        if let Some(expected) = expected_digest {
            if expected != manifest_digest {
                return Err(ImageError::DigestMismatch {
                    digest: expected.to_string(),
                    actual: manifest_digest,
                });
            }
        }
        let manifest = ImageManifest::from_reader(&manifest_bytes[..]).map_err(|e| {
            ImageError::Shape(format!("its manifest is not an OCI image manifest: {e}"))
        })?;
        let mut blobs = BTreeMap::new();
        for desc in std::iter::once(manifest.config()).chain(manifest.layers()) {
            let key = desc.digest().to_string();
            if blobs.contains_key(&key) {
                continue;
            }
            let bytes = fetch(desc)?;
            verify(desc, &bytes)?;
            blobs.insert(key, bytes);
        }
        Ok(Image {
            manifest,
            manifest_bytes,
            manifest_digest,
            blobs,
            ref_name: None,
        })
    }

    /// The files of an OCI image layout holding this image.
    pub fn layout_files(&self) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
        let layout = OciLayoutBuilder::default()
            .image_layout_version("1.0.0")
            .build()
            .map_err(spec_err("oci-layout"))?;
        let mut desc = descriptor(MediaType::ImageManifest, &self.manifest_bytes, None)?;
        if let Some(tag) = &self.ref_name {
            desc.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), tag.clone())])));
        }
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![desc])
            .build()
            .map_err(spec_err("index"))?;
        let mut files = vec![
            (
                "oci-layout".to_string(),
                serde_json::to_vec(&layout).expect("oci-layout serializes"),
            ),
            ("index.json".to_string(), canonical_json(&index)),
            (
                blob_path(&self.manifest_digest)?,
                self.manifest_bytes.clone(),
            ),
        ];
        for (digest, bytes) in &self.blobs {
            files.push((blob_path(digest)?, bytes.clone()));
        }
        files.sort();
        Ok(files)
    }

    /// Writes an OCI image layout folder, atomically.
    pub fn write_layout(&self, dir: &Path, force: bool) -> Result<(), ImageError> {
        let files = self.layout_files()?;
        output::write_dir(
            dir,
            files.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
            force,
        )?;
        Ok(())
    }

    /// The bytes of an OCI archive (a tar of the layout), deterministic.
    pub fn archive_bytes(&self, mtime: u64) -> Result<Vec<u8>, ImageError> {
        let mut tree = Tree::new();
        for (path, bytes) in self.layout_files()? {
            tree.file(path, bytes);
        }
        Ok(tree.to_tar(mtime))
    }

    /// Writes an OCI archive, atomically.
    pub fn write_archive(&self, file: &Path, mtime: u64, force: bool) -> Result<(), ImageError> {
        let bytes = self.archive_bytes(mtime)?;
        output::write_file(file, &bytes, force)?;
        Ok(())
    }

    /// Reads an OCI image layout folder or an OCI archive, verifying every
    /// digest. When the layout names several images, `tag` picks one.
    pub fn read_path(path: &Path, tag: Option<&str>) -> Result<Image, ImageError> {
        let read_err = |reason: String| ImageError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let source = if path.is_dir() {
            if !path.join("oci-layout").is_file() {
                return Err(ImageError::NotAnImage(path.to_path_buf()));
            }
            Source::Dir(path.to_path_buf())
        } else {
            let file = fs::File::open(path).map_err(|e| read_err(e.to_string()))?;
            let files = extract::read_tar(std::io::BufReader::new(file), Limits::default())
                .map_err(|e| read_err(e.to_string()))?;
            if files.get("oci-layout").is_none() {
                return Err(ImageError::NotAnImage(path.to_path_buf()));
            }
            Source::Files(files)
        };
        let index_bytes = source.read("index.json").map_err(read_err)?;
        let index = ImageIndex::from_reader(&index_bytes[..])
            .map_err(|e| read_err(format!("index.json is not an OCI index: {e}")))?;
        let manifests: Vec<&Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| match tag {
                Some(t) => ref_name(d) == Some(t),
                None => true,
            })
            .collect();
        let desc = match manifests.as_slice() {
            [one] => *one,
            [] => {
                return Err(read_err(match tag {
                    Some(t) => format!("index.json names no image {t:?}"),
                    None => "index.json lists no image".to_string(),
                }))
            }
            many => {
                let names: Vec<&str> = many.iter().filter_map(|d| ref_name(d)).collect();
                return Err(read_err(format!(
                    "index.json lists {} images: pick one with PATH:TAG (tags: {})",
                    many.len(),
                    names.join(", ")
                )));
            }
        };
        let manifest_bytes = source.read(&blob_path(desc.digest().as_ref())?);
        // The reason is kept: "missing" and "a symlink" call for different fixes.
        let manifest_bytes = manifest_bytes.map_err(read_err)?;
        verify(desc, &manifest_bytes)?;
        let mut image = Image::from_parts(manifest_bytes, Some(desc.digest().as_ref()), |d| {
            source
                .read(&blob_path(d.digest().as_ref())?)
                .map_err(read_err)
        })?;
        image.ref_name = ref_name(desc).map(str::to_string);
        Ok(image)
    }

    /// Which format this image is in, judged as Istio's fetcher would.
    pub fn format(&self) -> Result<Format, ImageError> {
        let layers = self.manifest.layers();
        match layers.last() {
            None => Err(ImageError::Shape("it has no layers".into())),
            Some(l) if *l.media_type() == MediaType::ImageLayerGzip => Ok(Format::Compat),
            Some(_)
                if layers.len() == 2
                    && layers
                        .iter()
                        .any(|l| l.media_type().as_ref() == WASM_CONTENT_MEDIA_TYPE) =>
            {
                Ok(Format::Artifact)
            }
            Some(l) => Err(ImageError::Shape(format!(
                "its last layer is {} and it has {} layers: expected one {} layer (compat) or two layers with {} (artifact)",
                l.media_type(),
                layers.len(),
                MediaType::ImageLayerGzip,
                WASM_CONTENT_MEDIA_TYPE
            ))),
        }
    }

    fn blob(&self, desc: &Descriptor) -> Result<&[u8], ImageError> {
        self.blobs
            .get(desc.digest().as_ref())
            .map(Vec::as_slice)
            .ok_or_else(|| ImageError::MissingBlob(desc.digest().to_string()))
    }

    /// The files of the compat layer (hardened read), if this is compat.
    pub fn layer_files(&self) -> Result<Option<TarFiles>, ImageError> {
        if self.format()? != Format::Compat {
            return Ok(None);
        }
        let last = self
            .manifest
            .layers()
            .last()
            .expect("format checked layers");
        extract::read_tar_gz(self.blob(last)?, Limits::default())
            .map(Some)
            .map_err(|reason| ImageError::Layer {
                digest: last.digest().to_string(),
                reason,
            })
    }

    /// The module, found as Istio's fetcher finds it: the last layer's first
    /// entry named `plugin.wasm`, in any folder (compat), or the layer of
    /// the Wasm content media type (artifact).
    pub fn module(&self) -> Result<Vec<u8>, ImageError> {
        self.module_entry().map(|(_, module)| module)
    }

    /// The module and where it was found (`plugin.wasm`, or the path of the
    /// layer entry Istio would take).
    fn module_entry(&self) -> Result<(String, Vec<u8>), ImageError> {
        match self.format()? {
            Format::Compat => {
                let files = self.layer_files()?.expect("compat has layer files");
                let entry = files
                    .first_named(MODULE_FILE)
                    .ok_or_else(|| ImageError::Shape(format!("its layer has no {MODULE_FILE}")))?;
                match &entry.data {
                    Some(data) => Ok((entry.path.clone(), data.clone())),
                    None => Err(ImageError::Shape(format!(
                        "the first {MODULE_FILE} in its layer is the folder {}/, which Istio \
                         would load as an empty module",
                        entry.path
                    ))),
                }
            }
            Format::Artifact => {
                let layer = self
                    .manifest
                    .layers()
                    .iter()
                    .find(|l| l.media_type().as_ref() == WASM_CONTENT_MEDIA_TYPE)
                    .expect("format checked the content layer");
                Ok((MODULE_FILE.to_string(), self.blob(layer)?.to_vec()))
            }
        }
    }

    /// The root context ids of the runtime config (`--root-id`), empty
    /// when the image has none or no runtime config.
    pub fn runtime_root_ids(&self) -> Result<Vec<String>, ImageError> {
        Ok(self
            .inspect()?
            .runtime_config
            .map(|rc| rc.config.root_ids)
            .unwrap_or_default())
    }

    /// A summary for `inspect`.
    pub fn inspect(&self) -> Result<Inspection, ImageError> {
        let format = self.format()?;
        let (module_path, module) = self.module_entry()?;
        let (manifest_yaml, files, runtime_config) = match self.layer_files()? {
            Some(files) => (
                files
                    .get("manifest.yaml")
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
                files
                    .files()
                    .map(|(p, b)| FileSummary {
                        path: p.to_string(),
                        size: b.len() as u64,
                    })
                    .collect(),
                files.get(RUNTIME_CONFIG_FILE).map(<[u8]>::to_vec),
            ),
            None => (None, Vec::new(), {
                let l = self
                    .manifest
                    .layers()
                    .iter()
                    .find(|l| l.media_type().as_ref() == WASM_CONFIG_MEDIA_TYPE);
                l.map(|l| self.blob(l)).transpose()?.map(<[u8]>::to_vec)
            }),
        };
        Ok(Inspection {
            format,
            ref_name: self.ref_name.clone(),
            manifest_digest: self.manifest_digest.clone(),
            config: BlobSummary::of(self.manifest.config()),
            layers: self.manifest.layers().iter().map(BlobSummary::of).collect(),
            annotations: self
                .manifest
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            manifest_yaml: manifest_yaml
                .as_deref()
                .and_then(|y| serde_yaml::from_str(y).ok()),
            manifest_yaml_text: manifest_yaml,
            runtime_config: runtime_config.and_then(|b| serde_json::from_slice(&b).ok()),
            module: BlobSummary {
                media_type: "application/wasm".into(),
                digest: layer::sha256_digest(&module),
                size: module.len() as u64,
                title: Some(module_path),
            },
            files,
        })
    }
}

/// What `inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub format: Format,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_name: Option<String>,
    pub manifest_digest: String,
    pub config: BlobSummary,
    pub layers: Vec<BlobSummary>,
    pub annotations: BTreeMap<String, String>,
    /// `manifest.yaml` of a compat image.
    pub manifest_yaml: Option<serde_json::Value>,
    /// The same, as written in the layer.
    #[serde(skip)]
    pub manifest_yaml_text: Option<String>,
    pub runtime_config: Option<RuntimeConfig>,
    pub module: BlobSummary,
    /// The files in a compat layer.
    pub files: Vec<FileSummary>,
}

/// One descriptor, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct BlobSummary {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl BlobSummary {
    fn of(d: &Descriptor) -> BlobSummary {
        BlobSummary {
            media_type: d.media_type().to_string(),
            digest: d.digest().to_string(),
            size: d.size(),
            title: d.annotations().as_ref().and_then(|a| a.get(TITLE).cloned()),
        }
    }
}

/// One file in a layer.
#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    pub path: String,
    pub size: u64,
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// Checks a blob against its descriptor's size and digest.
pub fn verify(desc: &Descriptor, bytes: &[u8]) -> Result<(), ImageError> {
    let digest = desc.digest().to_string();
    if *desc.digest().algorithm() != DigestAlgorithm::Sha256 {
        return Err(ImageError::Digest(digest));
    }
    if desc.size() != bytes.len() as u64 {
        return Err(ImageError::SizeMismatch {
            digest,
            expected: desc.size(),
            actual: bytes.len() as u64,
        });
    }
    let actual = layer::sha256_digest(bytes);
    if actual != digest {
        return Err(ImageError::DigestMismatch { digest, actual });
    }
    Ok(())
}

/// Refuses descriptors whose digest is not a well-formed sha256 digest.
pub fn verify_digest_form(desc: &Descriptor) -> Result<(), ImageError> {
    blob_path(desc.digest().as_ref()).map(|_| ())
}

/// `blobs/sha256/<hex>` for a digest, refusing anything but a well-formed
/// sha256 digest (so a hostile index cannot point outside `blobs/`).
fn blob_path(digest: &str) -> Result<String, ImageError> {
    let parsed = Digest::from_str(digest).map_err(|_| ImageError::Digest(digest.to_string()))?;
    if *parsed.algorithm() != DigestAlgorithm::Sha256 {
        return Err(ImageError::Digest(digest.to_string()));
    }
    Ok(format!("blobs/sha256/{}", parsed.digest()))
}

/// Where a layout's files come from.
enum Source {
    Dir(PathBuf),
    Files(TarFiles),
}

impl Source {
    fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        match self {
            Source::Dir(dir) => {
                let path = dir.join(rel);
                let meta = fs::symlink_metadata(&path).map_err(|e| format!("{rel}: {e}"))?;
                if !meta.is_file() {
                    return Err(format!("{rel} is not a regular file"));
                }
                if meta.len() > Limits::default().entry {
                    return Err(format!("{rel} is larger than the size limit"));
                }
                fs::read(&path).map_err(|e| format!("{rel}: {e}"))
            }
            Source::Files(files) => files
                .get(rel)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| format!("{rel} is missing")),
        }
    }
}

/// A small valid package for unit tests (here and in other modules).
#[cfg(test)]
pub(crate) fn test_package(format: Format) -> Package {
    tests::package(format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ManifestInput, ScalarText};

    pub(super) fn package(format: Format) -> Package {
        let module = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                 (func $f) (func $g (param i32) (result i32) i32.const 0)
                 (export "proxy_abi_version_0_2_1" (func $f))
                 (export "proxy_on_memory_allocate" (func $g)))"#,
        )
        .unwrap();
        let module_info = crate::wasm::validate(&module).unwrap();
        let manifest = ManifestInput {
            name: Some("header-filter".into()),
            phase: Some("PostAuthZ".into()),
            priority: Some(ScalarText("10".into())),
            version: Some(ScalarText("1.0.0".into())),
            ..ManifestInput::default()
        }
        .resolve()
        .unwrap();
        Package {
            manifest,
            module,
            module_info,
            docs: vec![("docs/README.md".into(), b"# docs".to_vec())],
            root_ids: vec![],
            format,
            epoch: 0,
        }
    }

    #[test]
    fn compat_image_has_one_gzip_layer_label_and_variant() {
        let image = Image::build(&package(Format::Compat)).unwrap();
        let m = &image.manifest;
        assert_eq!(m.media_type(), &Some(MediaType::ImageManifest));
        assert_eq!(m.layers().len(), 1);
        assert_eq!(m.layers()[0].media_type(), &MediaType::ImageLayerGzip);
        assert_eq!(
            m.annotations().as_ref().unwrap()[VARIANT_ANNOTATION],
            "compat"
        );
        let config =
            oci_spec::image::ImageConfiguration::from_reader(image.blob(m.config()).unwrap())
                .unwrap();
        assert_eq!(config.os(), &Os::Linux);
        assert_eq!(config.architecture(), &Arch::Amd64);
        assert_eq!(
            config.config().as_ref().unwrap().labels().as_ref().unwrap()["type"],
            "maistra-extension"
        );
        let files = image.layer_files().unwrap().unwrap();
        let names: Vec<_> = files.files().map(|(p, _)| p).collect();
        assert_eq!(
            names,
            [
                "plugin.wasm",
                "docs/README.md",
                "manifest.yaml",
                "runtime-config.json"
            ]
        );
        let manifest = files.get("manifest.yaml").unwrap();
        assert!(String::from_utf8_lossy(manifest).contains("module: plugin.wasm"));
        assert_eq!(image.format().unwrap(), Format::Compat);
        assert_eq!(image.module().unwrap(), package(Format::Compat).module);
    }

    #[test]
    fn artifact_image_has_config_and_content_layers_with_titles() {
        let image = Image::build(&package(Format::Artifact)).unwrap();
        let layers = image.manifest.layers();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].media_type().as_ref(), WASM_CONFIG_MEDIA_TYPE);
        assert_eq!(layers[1].media_type().as_ref(), WASM_CONTENT_MEDIA_TYPE);
        let cfg: RuntimeConfig = serde_json::from_slice(image.blob(&layers[0]).unwrap()).unwrap();
        assert_eq!(cfg.typ, "envoy_proxy");
        assert_eq!(cfg.abi_versions, ["v0-0.2.1"]);
        assert_eq!(
            BlobSummary::of(&layers[1]).title.as_deref(),
            Some("plugin.wasm")
        );
        assert_eq!(image.format().unwrap(), Format::Artifact);
        assert_eq!(image.module().unwrap(), package(Format::Artifact).module);
    }

    #[test]
    fn same_package_gives_the_same_digest_and_archive() {
        for format in [Format::Compat, Format::Artifact] {
            let a = Image::build(&package(format)).unwrap();
            let b = Image::build(&package(format)).unwrap();
            assert_eq!(a.manifest_digest, b.manifest_digest);
            assert_eq!(a.archive_bytes(0).unwrap(), b.archive_bytes(0).unwrap());
        }
        let mut later = package(Format::Compat);
        later.epoch = 1;
        assert_ne!(
            Image::build(&later).unwrap().manifest_digest,
            Image::build(&package(Format::Compat))
                .unwrap()
                .manifest_digest
        );
    }

    #[test]
    fn layout_and_archive_read_back_to_the_same_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = Image::build(&package(Format::Compat)).unwrap();
        image
            .write_layout(&dir.path().join("layout"), false)
            .unwrap();
        image
            .write_archive(&dir.path().join("image.tar"), 0, false)
            .unwrap();
        for p in ["layout", "image.tar"] {
            let back = Image::read_path(&dir.path().join(p), None).unwrap();
            assert_eq!(back.manifest_digest, image.manifest_digest);
            assert_eq!(back.ref_name.as_deref(), Some("1.0.0"));
            assert_eq!(back.module().unwrap(), image.module().unwrap());
        }
    }

    #[test]
    fn tampered_blob_is_refused_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let image = Image::build(&package(Format::Artifact)).unwrap();
        let layout = dir.path().join("layout");
        image.write_layout(&layout, false).unwrap();
        let module_digest = image.manifest.layers()[1].digest().digest().to_string();
        let blob = layout.join("blobs/sha256").join(module_digest);
        let mut bytes = fs::read(&blob).unwrap();
        bytes[10] ^= 1;
        fs::write(&blob, bytes).unwrap();
        let err = Image::read_path(&layout, None).unwrap_err().to_string();
        assert!(err.contains("does not match its digest"), "{err}");
    }

    #[test]
    fn hostile_digest_cannot_name_a_path_outside_blobs() {
        assert!(blob_path("sha256:../../etc/passwd").is_err());
        assert!(blob_path("sha512:abc").is_err());
        assert!(blob_path(&layer::sha256_digest(b"x")).is_ok());
    }
}
