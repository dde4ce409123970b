//! Mesh resources that deploy an extension image: Maistra's
//! `ServiceMeshExtension` (OpenShift Service Mesh 2.1 and 2.2 only), Istio's
//! `WasmPlugin` (Istio, and OpenShift Service Mesh 2.3+ and 3.x), a
//! plain-Istio `EnvoyFilter` whose Wasm filter fetches the module itself, and
//! Envoy Gateway's `EnvoyExtensionPolicy`.
//!
//! Everything is generated from one checked [`Image`] (so every digest is the
//! one that was read and verified) and one filter configuration that passed
//! the filter's own validation. The user chooses the kinds ([`Kind`]); a
//! kind the image or the flags cannot serve is left out with a note when it
//! was only a default, and refused when it was asked for. What a reader must
//! know about the resources written (a field one of them cannot carry, what
//! a mesh does to the configuration) comes back as notes, one line each. The
//! resources are typed structs serialized with `serde_yaml`; YAML is never
//! assembled from strings. This module does no I/O: the CLI reads the image
//! and the files, and prints the notes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::image::{Format, Image, ImageError, WASM_CONTENT_MEDIA_TYPE};
use crate::layer;
use crate::manifest::{ExtensionName, ManifestError, ManifestInput, Phase, Priority};
use crate::registry::ImageRef;

/// The files `--output-dir` writes, in the order they are printed.
pub const FILE_NAMES: [&str; 4] = [
    "servicemeshextension.yaml",
    "wasmplugin.yaml",
    "envoyfilter.yaml",
    "envoyextensionpolicy.yaml",
];

/// What each file's header says besides the image it pins: where the
/// resource applies, and what a reader must know before applying it.
const NOTES: [&str; 4] = [
    "# ServiceMeshExtension (maistra.io/v1) exists only in OpenShift Service Mesh / Maistra 2.1 and\n\
     # 2.2. It is deprecated in 2.2 and removed in 2.3, whose operator refuses to upgrade while any\n\
     # exist. From 2.3, and in 3.x, apply wasmplugin.yaml instead: it loads the same image.\n",
    "# Istio 1.12+, and OpenShift Service Mesh 2.3+ and 3.x. Istio compares sha256 with the digest\n\
     # of the image manifest it pulls.\n",
    "# Envoy fetches http_uri itself and accepts only an HTTP 200 answer, following no redirect.\n\
     # GitHub release URLs and most registries' blob URLs redirect: serve the module from a server\n\
     # that answers 200, e.g. in-cluster (its cluster is outbound|PORT||HOST).\n",
    "# Envoy Gateway (gateway.envoyproxy.io/v1alpha1). Envoy Gateway compares code.image.sha256\n\
     # with the digest of the image manifest it pulls.\n",
];

/// A resource `extpack manifests` can write (`--kind`), in [`FILE_NAMES`]
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    ServiceMeshExtension,
    WasmPlugin,
    EnvoyFilter,
    EnvoyExtensionPolicy,
}

impl Kind {
    /// Every kind, in the order files are printed.
    pub const ALL: [Kind; 4] = [
        Kind::ServiceMeshExtension,
        Kind::WasmPlugin,
        Kind::EnvoyFilter,
        Kind::EnvoyExtensionPolicy,
    ];

    /// The `--kind` value: the resource's kind, lower-cased.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ServiceMeshExtension => "servicemeshextension",
            Kind::WasmPlugin => "wasmplugin",
            Kind::EnvoyFilter => "envoyfilter",
            Kind::EnvoyExtensionPolicy => "envoyextensionpolicy",
        }
    }
}

impl FromStr for Kind {
    type Err = String;
    /// The `--kind` value, case-insensitive; the error lists the accepted
    /// ones.
    fn from_str(s: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Kind::ALL.map(Kind::name).to_vec();
                format!("unknown kind {s:?}: accepted {}", names.join(", "))
            })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long Envoy waits for one fetch of a remote module, and how often it
/// retries.
const FETCH_TIMEOUT: &str = "10s";
const FETCH_RETRIES: u32 = 3;

const TITLE: &str = "org.opencontainers.image.title";

/// Why the resources could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error(
        "selector {0:?} is not KEY=VALUE: use a Kubernetes label, e.g. --selector app=productpage"
    )]
    SelectorForm(String),
    #[error("selector key {0:?} is not a Kubernetes label key: use [PREFIX/]NAME, NAME 1-63 letters, digits, '-', '_', '.', starting and ending with a letter or digit")]
    SelectorKey(String),
    #[error("selector value {0:?} is not a Kubernetes label value: use at most 63 letters, digits, '-', '_', '.', starting and ending with a letter or digit")]
    SelectorValue(String),
    #[error("selector key {0:?} is given twice: give each label once")]
    SelectorDuplicate(String),
    #[error("namespace {0:?} is not a Kubernetes namespace name: use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit")]
    Namespace(String),
    #[error("filter configuration is not valid: {0}")]
    Config(String),
    #[error(
        "filter configuration must be a JSON object (it becomes spec.config and spec.pluginConfig)"
    )]
    ConfigNotObject,
    #[error("--kind envoyfilter needs --module-url for {0}, a compat image: Envoy fetches the raw module itself over HTTP and accepts only a 200 answer (no redirects), and a compat layer is a tar+gzip; serve plugin.wasm from a server that answers 200 (e.g. in-cluster) and pass its URL, or publish with --format artifact")]
    EnvoyFilterNeedsModuleUrl(String),
    #[error("--kind servicemeshextension needs a compat image: {0} is an artifact image, which has no manifest.yaml, and Maistra's ServiceMeshExtension cannot load it; publish with --format compat (OpenShift Service Mesh 2.3 and later load either format through the WasmPlugin)")]
    SmeNeedsCompat(String),
    #[error("--image-pull-secret {0:?} is not a Kubernetes Secret name: use at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit")]
    PullSecret(String),
    #[error("--target-ref {0:?} is not KIND/NAME with KIND Gateway or HTTPRoute: e.g. --target-ref Gateway/eg")]
    TargetRef(String),
    #[error("--module-url {0:?} is not an http:// or https:// URL with a host")]
    ModuleUrl(String),
    #[error("{reference} names digest {named}, but the image read has digest {actual}")]
    DigestMismatch {
        reference: String,
        named: String,
        actual: String,
    },
    #[error("{field} is missing: give --{field}, or --manifest with `{field}:`{hint}")]
    Missing {
        field: &'static str,
        hint: &'static str,
    },
    #[error(transparent)]
    Field(#[from] ManifestError),
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// Pod labels that select the workloads (`--selector key=value`, repeatable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Selector(pub BTreeMap<String, String>);

impl Selector {
    /// Parses `key=value` arguments, refusing malformed or repeated labels.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Selector, MeshError> {
        let mut labels = BTreeMap::new();
        for arg in args {
            let arg = arg.as_ref();
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| MeshError::SelectorForm(arg.to_string()))?;
            if !is_label_key(key) {
                return Err(MeshError::SelectorKey(key.to_string()));
            }
            if !(value.is_empty() || is_label_name(value)) {
                return Err(MeshError::SelectorValue(value.to_string()));
            }
            if labels.insert(key.to_string(), value.to_string()).is_some() {
                return Err(MeshError::SelectorDuplicate(key.to_string()));
            }
        }
        Ok(Selector(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A label name or value: 1-63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// `[prefix/]name`, the prefix a DNS subdomain of at most 253 characters.
fn is_label_key(key: &str) -> bool {
    match key.rsplit_once('/') {
        None => is_label_name(key),
        Some((prefix, name)) => {
            is_label_name(name)
                && prefix.len() <= 253
                && prefix.split('.').all(|part| {
                    let p = part.as_bytes();
                    !p.is_empty()
                        && p.iter()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                        && p[0] != b'-'
                        && p[p.len() - 1] != b'-'
                })
        }
    }
}

/// A Kubernetes namespace name (a DNS-1123 label).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Namespace(String);

impl FromStr for Namespace {
    type Err = MeshError;
    fn from_str(s: &str) -> Result<Namespace, MeshError> {
        // Same grammar as an extension name.
        s.parse::<ExtensionName>()
            .map(|_| Namespace(s.to_string()))
            .map_err(|_| MeshError::Namespace(s.to_string()))
    }
}

/// A filter configuration that passed the filter's own validation, kept as
/// the JSON object it is (for `config` / `pluginConfig`) and as the compact
/// JSON text Envoy receives (for the `EnvoyFilter`).
#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfig {
    value: serde_json::Value,
    text: String,
    /// For Maistra's flat form (`{"name": "value", ...}`): the header names
    /// in the order written, which is the order the filter appends them in.
    flat_keys: Option<Vec<String>>,
}

impl FilterConfig {
    /// Validates with `header_filter::Plan::from_json` (the message is the
    /// one Envoy would log), then checks that the embedded text passes too.
    pub fn from_json(bytes: &[u8]) -> Result<FilterConfig, MeshError> {
        header_filter::Plan::from_json(bytes).map_err(|e| MeshError::Config(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| MeshError::Config(e.to_string()))?;
        if !value.is_object() {
            return Err(MeshError::ConfigNotObject);
        }
        let text = serde_json::to_string(&value).expect("a JSON value serializes");
        header_filter::Plan::from_json(text.as_bytes())
            .map_err(|e| MeshError::Config(e.to_string()))?;
        Ok(FilterConfig {
            value,
            text,
            flat_keys: flat_keys(bytes),
        })
    }

    /// For a flat-form configuration whose key order is not the sorted
    /// order: the names as written and as a mesh delivers them (sorted).
    /// `None` for every other configuration.
    pub fn flat_order_changed(&self) -> Option<(&[String], Vec<&str>)> {
        let written = self.flat_keys.as_deref()?;
        let mut sorted: Vec<&str> = written.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let same = written
            .iter()
            .map(String::as_str)
            .eq(sorted.iter().copied());
        (!same).then_some((written, sorted))
    }

    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }

    /// The compact JSON given to Envoy as the plugin configuration.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The keys of a configuration in the flat form, in document order. Called
/// on a configuration the filter accepted, so a non-empty object whose
/// values are all strings is the flat form (no field of Envoy's form, nor
/// `mutations`, takes a string).
fn flat_keys(bytes: &[u8]) -> Option<Vec<String>> {
    use header_filter::json::Json;
    let Ok(Json::Object(members)) = header_filter::json::parse(bytes) else {
        return None;
    };
    let flat = !members.is_empty() && members.iter().all(|(_, v)| matches!(v, Json::String(_)));
    flat.then(|| members.into_iter().map(|(k, _)| k).collect())
}

/// A Kubernetes Secret name (`--image-pull-secret`): a DNS-1123 subdomain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SecretName(String);

impl FromStr for SecretName {
    type Err = MeshError;
    fn from_str(s: &str) -> Result<SecretName, MeshError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 253
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric();
        if ok {
            Ok(SecretName(s.to_string()))
        } else {
            Err(MeshError::PullSecret(s.to_string()))
        }
    }
}

/// Istio's `WasmPlugin` phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum IstioPhase {
    AUTHN,
    AUTHZ,
    STATS,
    #[serde(rename = "UNSPECIFIED_PHASE")]
    Unspecified,
}

impl IstioPhase {
    /// Istio's phases are insertion points. Istio (release-1.14 on,
    /// `buildHTTPConnectionManager`) builds the chain as: AUTHN plugins,
    /// authn filter, AUTHZ plugins, authz filter, STATS plugins,
    /// UNSPECIFIED plugins, then grpc-stats, fault, cors, the stats
    /// filters and the router. So UNSPECIFIED is right after STATS and
    /// before the stats filter; Istio has no slot after it.
    ///
    /// Maistra 2.2 puts PreStats before `istio.stats` and PostStats after
    /// it. Each Maistra phase maps to the Istio phase with the same Istio
    /// filter before it: PostStats to UNSPECIFIED keeps it after every
    /// PreStats extension, but it runs before the stats filter, not after.
    pub fn from_maistra(phase: Phase) -> IstioPhase {
        match phase {
            Phase::PreAuthN => IstioPhase::AUTHN,
            Phase::PostAuthN | Phase::PreAuthZ => IstioPhase::AUTHZ,
            Phase::PostAuthZ | Phase::PreStats => IstioPhase::STATS,
            Phase::PostStats => IstioPhase::Unspecified,
        }
    }
}

/// What the user asked for besides the image.
#[derive(Debug, Clone)]
pub struct MeshInputs {
    /// Where the image is (or will be) in a registry; names the resources'
    /// image and URLs.
    pub reference: ImageRef,
    /// The registry speaks plain HTTP (blob URL scheme, cluster port).
    pub plain_http: bool,
    pub config: FilterConfig,
    pub namespace: Option<Namespace>,
    pub selector: Selector,
    /// `--name/--phase/--priority` merged over `--manifest` (flags win);
    /// the image's own `manifest.yaml` fills what is left.
    pub fields: ManifestInput,
    /// Where Envoy fetches the module for the `EnvoyFilter`, instead of the
    /// registry's blob URL.
    pub module_url: Option<String>,
    /// What the `EnvoyExtensionPolicy` attaches to.
    pub target: TargetRef,
    /// The kinds asked for with `--kind`; `None` is every kind the image
    /// and the flags can serve.
    pub kinds: Option<Vec<Kind>>,
    /// A `kubernetes.io/dockerconfigjson` Secret, in the resources'
    /// namespace, with the registry's credentials.
    pub image_pull_secret: Option<SecretName>,
}

/// A Gateway API object an `EnvoyExtensionPolicy` attaches to
/// (`--target-ref KIND/NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRef {
    /// Always `gateway.networking.k8s.io`.
    pub group: String,
    /// `Gateway` or `HTTPRoute`.
    pub kind: String,
    pub name: String,
}

impl FromStr for TargetRef {
    type Err = MeshError;
    fn from_str(s: &str) -> Result<TargetRef, MeshError> {
        let bad = || MeshError::TargetRef(s.to_string());
        let (kind, name) = s.split_once('/').ok_or_else(bad)?;
        if !matches!(kind, "Gateway" | "HTTPRoute") || name.parse::<ExtensionName>().is_err() {
            return Err(bad());
        }
        Ok(TargetRef {
            group: "gateway.networking.k8s.io".into(),
            kind: kind.into(),
            name: name.into(),
        })
    }
}

/// The generated resources: those chosen and possible, the others `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    pub service_mesh_extension: Option<Resource<SmeSpec>>,
    pub wasm_plugin: Option<Resource<WasmPluginSpec>>,
    pub envoy_filter: Option<Resource<EnvoyFilterSpec>>,
    pub extension_policy: Option<Resource<ExtensionPolicySpec>>,
    /// The image manifest digest every resource pins (`sha256:...`).
    pub manifest_digest: String,
    /// One line each, for the user: resources left out and why, what a
    /// resource cannot carry, what a mesh does to the configuration.
    pub notes: Vec<String>,
}

/// `gateway.envoyproxy.io/v1alpha1` `EnvoyExtensionPolicySpec` (Envoy
/// Gateway `api/v1alpha1/envoyextensionypolicy_types.go`), Wasm only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionPolicySpec {
    pub target_refs: Vec<TargetRef>,
    pub wasm: Vec<GatewayWasm>,
}

/// Envoy Gateway's `Wasm` (`api/v1alpha1/wasm_types.go`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayWasm {
    pub name: String,
    #[serde(rename = "rootID")]
    pub root_id: String,
    pub code: GatewayWasmCode,
    /// Passed to the filter as JSON text.
    pub config: serde_json::Value,
    pub fail_open: bool,
}

/// `WasmCodeSource` with `type: Image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayWasmCode {
    #[serde(rename = "type")]
    pub type_: String,
    pub image: GatewayWasmImage,
}

/// `ImageWasmCodeSource`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayWasmImage {
    /// `oci://REPOSITORY:TAG`.
    pub url: String,
    /// The image manifest digest (hex): Envoy Gateway's `cache.go` compares
    /// it with the digest of the manifest it pulls.
    pub sha256: String,
    /// The Secret with the registry's credentials (Envoy Gateway reads its
    /// `.dockerconfigjson`).
    #[serde(
        rename = "pullSecretRef",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pull_secret_ref: Option<SecretObjectReference>,
}

/// Gateway API's `SecretObjectReference`, as `pullSecretRef` takes it:
/// Envoy Gateway's CRD accepts only `kind: Secret` (its group defaults to
/// the core group, its namespace to the policy's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretObjectReference {
    pub kind: String,
    pub name: String,
}

/// A Kubernetes object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resource<S> {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: S,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `maistra.io/v1` `ServiceMeshExtensionSpec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmeSpec {
    /// `REPOSITORY@sha256:...`: pinned to the image that was read.
    pub image: String,
    pub image_pull_policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<SmeWorkloadSelector>,
    pub phase: Phase,
    pub priority: i32,
    /// A structured field (`PreserveUnknownFields`); Maistra hands it to the
    /// filter as JSON.
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmeWorkloadSelector {
    pub labels: Selector,
}

/// `extensions.istio.io/v1alpha1` `WasmPlugin` spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmPluginSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<IstioWorkloadSelector>,
    /// `oci://REPOSITORY:TAG`.
    pub url: String,
    /// The image manifest digest (hex): Istio compares it with the digest of
    /// the image it pulls.
    pub sha256: String,
    pub image_pull_policy: String,
    /// A Secret in the WasmPlugin's namespace holding a Docker pull secret
    /// (`.dockerconfigjson`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    pub plugin_name: String,
    pub phase: IstioPhase,
    pub priority: i64,
    pub plugin_config: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioWorkloadSelector {
    pub match_labels: Selector,
}

/// `networking.istio.io/v1alpha3` `EnvoyFilter` spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<SmeWorkloadSelector>,
    pub config_patches: Vec<ConfigPatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigPatch {
    pub apply_to: String,
    #[serde(rename = "match")]
    pub match_: PatchMatch,
    pub patch: Patch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchMatch {
    pub context: String,
    pub listener: ListenerMatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerMatch {
    pub filter_chain: FilterChainMatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterChainMatch {
    pub filter: FilterMatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterMatch {
    pub name: String,
    pub sub_filter: SubFilterMatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubFilterMatch {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    pub operation: String,
    pub value: HttpFilter,
}

/// An Envoy `HttpFilter` (Envoy's own snake_case field names from here on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFilter {
    pub name: String,
    pub typed_config: WasmFilter,
}

/// `envoy.extensions.filters.http.wasm.v3.Wasm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmFilter {
    #[serde(rename = "@type")]
    pub type_url: String,
    pub config: PluginConfig,
}

/// `envoy.extensions.wasm.v3.PluginConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    pub name: String,
    pub root_id: String,
    pub vm_config: VmConfig,
    pub configuration: StringValue,
    pub failure_policy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    pub vm_id: String,
    pub runtime: String,
    pub code: AsyncDataSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncDataSource {
    pub remote: RemoteDataSource,
}

/// `envoy.config.core.v3.RemoteDataSource`: Envoy fetches `http_uri`,
/// checks `sha256`, and fails the filter on a mismatch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteDataSource {
    pub http_uri: HttpUri,
    pub sha256: String,
    pub retry_policy: RetryPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpUri {
    pub uri: String,
    pub cluster: String,
    pub timeout: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    pub num_retries: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringValue {
    #[serde(rename = "@type")]
    pub type_url: String,
    pub value: String,
}

/// Where Envoy fetches the module from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FetchTarget {
    uri: String,
    /// Istio's name for the outbound cluster of the host:
    /// `outbound|PORT||HOST`.
    cluster: String,
}

impl fmt::Display for FetchTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.uri, self.cluster)
    }
}

/// Splits `host[:port]` (or `[v6]:port`), defaulting the port.
fn host_port(authority: &str, default_port: u16) -> (String, u16) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            let port = tail
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(default_port);
            return (host.to_string(), port);
        }
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => {
            (host.to_string(), port.parse().expect("checked"))
        }
        _ => (authority.to_string(), default_port),
    }
}

fn cluster_name(host: &str, port: u16) -> String {
    format!("outbound|{port}||{host}")
}

fn module_url_target(text: &str) -> Result<FetchTarget, MeshError> {
    let bad = || MeshError::ModuleUrl(text.to_string());
    let url = url::Url::parse(text).map_err(|_| bad())?;
    let default_port = match url.scheme() {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad()),
    };
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port().unwrap_or(default_port);
    Ok(FetchTarget {
        uri: text.to_string(),
        cluster: cluster_name(host, port),
    })
}

/// `REGISTRY/REPOSITORY` of a reference, without tag or digest.
fn repository(reference: &ImageRef) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

impl Manifests {
    /// Generates the chosen resources for `image`, to be found at
    /// `inputs.reference`.
    pub fn generate(image: &Image, inputs: &MeshInputs) -> Result<Manifests, MeshError> {
        let reference = &inputs.reference;
        if let Some(named) = reference.digest() {
            if named != image.manifest_digest {
                return Err(MeshError::DigestMismatch {
                    reference: reference.whole(),
                    named: named.to_string(),
                    actual: image.manifest_digest.clone(),
                });
            }
        }
        let format = image.format()?;
        let mut notes = Vec::new();
        let want = choose(format, inputs, &mut notes)?;
        let (name, phase, priority) = resolve_fields(image, format, inputs)?;
        let manifest_sha256 = hex_of(&image.manifest_digest);

        let name = name.as_str().to_string();
        let metadata = Metadata {
            name: name.clone(),
            namespace: inputs.namespace.as_ref().map(|n| n.0.clone()),
        };
        let labels = (!inputs.selector.is_empty()).then(|| SmeWorkloadSelector {
            labels: inputs.selector.clone(),
        });
        let oci_url = match reference.tag() {
            Some(tag) => format!("oci://{}:{tag}", repository(reference)),
            None => format!("oci://{}@{}", repository(reference), image.manifest_digest),
        };
        let secret = inputs.image_pull_secret.as_ref().map(|s| s.0.clone());

        let service_mesh_extension = want(Kind::ServiceMeshExtension).then(|| {
            if inputs.image_pull_secret.is_some() {
                notes.push(SME_NO_PULL_SECRET.to_string());
            }
            Resource {
                api_version: "maistra.io/v1".into(),
                kind: "ServiceMeshExtension".into(),
                metadata: metadata.clone(),
                spec: SmeSpec {
                    image: format!("{}@{}", repository(reference), image.manifest_digest),
                    image_pull_policy: "IfNotPresent".into(),
                    workload_selector: labels.clone(),
                    phase,
                    priority: priority.0,
                    config: inputs.config.value().clone(),
                },
            }
        });
        let wasm_plugin = want(Kind::WasmPlugin).then(|| Resource {
            api_version: "extensions.istio.io/v1alpha1".into(),
            kind: "WasmPlugin".into(),
            metadata: metadata.clone(),
            spec: WasmPluginSpec {
                selector: (!inputs.selector.is_empty()).then(|| IstioWorkloadSelector {
                    match_labels: inputs.selector.clone(),
                }),
                url: oci_url.clone(),
                sha256: manifest_sha256.clone(),
                image_pull_policy: "IfNotPresent".into(),
                image_pull_secret: secret.clone(),
                plugin_name: name.clone(),
                phase: IstioPhase::from_maistra(phase),
                priority: i64::from(priority.0),
                plugin_config: inputs.config.value().clone(),
            },
        });
        let envoy_filter = if want(Kind::EnvoyFilter) {
            let fetch = fetch_target(image, format, inputs)?;
            if inputs.module_url.is_none() {
                notes.push(format!(
                    "envoyfilter.yaml: Envoy fetches the module from the registry's blob URL {} \
                     itself; that loads only where the registry answers it with 200, without a \
                     redirect or a token (docker-registry with filesystem storage does; ghcr.io, \
                     Docker Hub and registries on object storage redirect): otherwise serve the \
                     module elsewhere and pass --module-url",
                    fetch.uri
                ));
            }
            if inputs.image_pull_secret.is_some() {
                notes.push(ENVOYFILTER_NO_PULL_SECRET.to_string());
            }
            Some(envoy_filter(
                &name,
                metadata.clone(),
                labels,
                fetch,
                hex_of(&layer::sha256_digest(&image.module()?)),
                inputs.config.text(),
            ))
        } else {
            None
        };
        let extension_policy = if want(Kind::EnvoyExtensionPolicy) {
            let root_id = image
                .runtime_root_ids()?
                .into_iter()
                .next()
                .unwrap_or_else(|| name.clone());
            Some(Resource {
                api_version: "gateway.envoyproxy.io/v1alpha1".into(),
                kind: "EnvoyExtensionPolicy".into(),
                metadata,
                spec: ExtensionPolicySpec {
                    target_refs: vec![inputs.target.clone()],
                    wasm: vec![GatewayWasm {
                        name,
                        root_id,
                        code: GatewayWasmCode {
                            type_: "Image".into(),
                            image: GatewayWasmImage {
                                url: oci_url,
                                sha256: manifest_sha256,
                                pull_secret_ref: secret.map(|name| SecretObjectReference {
                                    kind: "Secret".into(),
                                    name,
                                }),
                            },
                        },
                        config: inputs.config.value().clone(),
                        fail_open: false,
                    }],
                },
            })
        } else {
            None
        };
        if let Some((written, sorted)) = inputs.config.flat_order_changed() {
            notes.push(flat_order_note(written, &sorted));
        }
        Ok(Manifests {
            service_mesh_extension,
            wasm_plugin,
            envoy_filter,
            extension_policy,
            manifest_digest: image.manifest_digest.clone(),
            notes,
        })
    }

    /// The kinds generated, in [`FILE_NAMES`] order.
    pub fn kinds(&self) -> Vec<Kind> {
        let present = [
            self.service_mesh_extension.is_some(),
            self.wasm_plugin.is_some(),
            self.envoy_filter.is_some(),
            self.extension_policy.is_some(),
        ];
        Kind::ALL
            .into_iter()
            .zip(present)
            .filter_map(|(kind, here)| here.then_some(kind))
            .collect()
    }

    /// `(file name, YAML text)` for each resource generated, in
    /// [`FILE_NAMES`] order. Each text starts with a comment naming the image
    /// it pins.
    pub fn documents(&self, reference: &ImageRef) -> Vec<(&'static str, String)> {
        let yaml = [
            self.service_mesh_extension.as_ref().map(to_yaml),
            self.wasm_plugin.as_ref().map(to_yaml),
            self.envoy_filter.as_ref().map(to_yaml),
            self.extension_policy.as_ref().map(to_yaml),
        ];
        let header = format!(
            "# Generated by `extpack manifests` for {} ({}); regenerate, do not edit.\n",
            reference.whole(),
            self.manifest_digest
        );
        FILE_NAMES
            .into_iter()
            .zip(NOTES)
            .zip(yaml)
            .filter_map(|((file, note), text)| Some((file, format!("{header}{note}{}", text?))))
            .collect()
    }

    /// The resources as one multi-document YAML stream.
    pub fn to_yaml_stream(&self, reference: &ImageRef) -> String {
        self.documents(reference)
            .into_iter()
            .map(|(_, text)| text)
            .collect::<Vec<_>>()
            .join("---\n")
    }
}

/// Said when `--image-pull-secret` meets a ServiceMeshExtension.
const SME_NO_PULL_SECRET: &str = "servicemeshextension.yaml has no pull-secret field: Maistra's \
controller imports the image through an OpenShift ImageStreamImport in the control plane's \
namespace, which uses the registry secrets of that namespace: create the secret there";

/// Said when `--image-pull-secret` meets an EnvoyFilter.
const ENVOYFILTER_NO_PULL_SECRET: &str = "envoyfilter.yaml carries no credentials: Envoy's remote \
fetch sends none, so the module URL must answer without authentication";

/// Which kinds to write: what `--kind` asked for (refusing one the image or
/// the flags cannot serve), or every kind that can be written, with a note
/// for each one left out.
fn choose(
    format: Format,
    inputs: &MeshInputs,
    notes: &mut Vec<String>,
) -> Result<impl Fn(Kind) -> bool, MeshError> {
    let reference = inputs.reference.whole();
    let asked = |kind| inputs.kinds.as_ref().is_none_or(|k| k.contains(&kind));
    let explicit = inputs.kinds.is_some();
    let sme = format == Format::Compat;
    let envoy_filter = inputs.module_url.is_some() || format == Format::Artifact;
    if asked(Kind::ServiceMeshExtension) && !sme {
        if explicit {
            return Err(MeshError::SmeNeedsCompat(reference));
        }
        notes.push(format!(
            "skipped servicemeshextension.yaml: {reference} is an artifact image, which Maistra's \
             ServiceMeshExtension cannot load (it reads manifest.yaml from a compat image); \
             OpenShift Service Mesh 2.3 and later load it through wasmplugin.yaml"
        ));
    }
    if asked(Kind::EnvoyFilter) && !envoy_filter {
        if explicit {
            return Err(MeshError::EnvoyFilterNeedsModuleUrl(reference));
        }
        notes.push(
            "skipped envoyfilter.yaml: the EnvoyFilter needs --module-url, an HTTP URL of the raw \
             module that answers 200 (Envoy's remote fetch follows no redirect; a compat image's \
             layer is a tar+gzip Envoy cannot load); the other resources pull the image themselves"
                .to_string(),
        );
    }
    if inputs.module_url.is_some() && !asked(Kind::EnvoyFilter) {
        notes.push(
            "--module-url is used only by envoyfilter.yaml, which --kind leaves out".to_string(),
        );
    }
    let kinds = inputs.kinds.clone();
    Ok(move |kind: Kind| {
        let possible = match kind {
            Kind::ServiceMeshExtension => sme,
            Kind::EnvoyFilter => envoy_filter,
            Kind::WasmPlugin | Kind::EnvoyExtensionPolicy => true,
        };
        possible && kinds.as_ref().is_none_or(|k| k.contains(&kind))
    })
}

/// What a mesh does to a flat configuration's order, in one line.
fn flat_order_note(written: &[String], sorted: &[&str]) -> String {
    format!(
        "the flat configuration appends its headers in key order, and a mesh hands the filter \
         its keys sorted: {} (written: {}). Istio marshals pluginConfig with its keys sorted, \
         and Kubernetes stores every resource's config that way; these files embed it sorted \
         too, so all of them behave alike. Write the keys sorted, or use \
         response_headers_to_add, a list, which keeps its order",
        sorted.join(", "),
        written.join(", ")
    )
}

/// Where the EnvoyFilter's Envoy fetches the module: `--module-url`, or an
/// artifact image's module blob in the registry.
fn fetch_target(
    image: &Image,
    format: Format,
    inputs: &MeshInputs,
) -> Result<FetchTarget, MeshError> {
    let reference = &inputs.reference;
    match (&inputs.module_url, format) {
        (Some(url), _) => module_url_target(url),
        (None, Format::Compat) => Err(MeshError::EnvoyFilterNeedsModuleUrl(reference.whole())),
        (None, Format::Artifact) => {
            let layer = image
                .manifest
                .layers()
                .iter()
                .find(|l| l.media_type().as_ref() == WASM_CONTENT_MEDIA_TYPE)
                .expect("an artifact image has a content layer");
            let (scheme, default_port) = if inputs.plain_http {
                ("http", 80)
            } else {
                ("https", 443)
            };
            let (host, port) = host_port(reference.registry(), default_port);
            Ok(FetchTarget {
                uri: format!(
                    "{scheme}://{}/v2/{}/blobs/{}",
                    reference.registry(),
                    reference.repository(),
                    layer.digest()
                ),
                cluster: cluster_name(&host, port),
            })
        }
    }
}

/// The `EnvoyFilter`: Envoy's Wasm filter before the router of the inbound
/// sidecar listeners, fetching the module from `fetch`.
fn envoy_filter(
    name: &str,
    metadata: Metadata,
    labels: Option<SmeWorkloadSelector>,
    fetch: FetchTarget,
    module_sha256: String,
    config_text: &str,
) -> Resource<EnvoyFilterSpec> {
    Resource {
        api_version: "networking.istio.io/v1alpha3".into(),
        kind: "EnvoyFilter".into(),
        metadata,
        spec: EnvoyFilterSpec {
            workload_selector: labels,
            config_patches: vec![ConfigPatch {
                apply_to: "HTTP_FILTER".into(),
                match_: PatchMatch {
                    context: "SIDECAR_INBOUND".into(),
                    listener: ListenerMatch {
                        filter_chain: FilterChainMatch {
                            filter: FilterMatch {
                                name: "envoy.filters.network.http_connection_manager".into(),
                                sub_filter: SubFilterMatch {
                                    name: "envoy.filters.http.router".into(),
                                },
                            },
                        },
                    },
                },
                patch: Patch {
                    operation: "INSERT_BEFORE".into(),
                    value: HttpFilter {
                        name: name.to_string(),
                        typed_config: WasmFilter {
                            type_url:
                                "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
                                    .into(),
                            config: PluginConfig {
                                name: name.to_string(),
                                root_id: name.to_string(),
                                vm_config: VmConfig {
                                    vm_id: name.to_string(),
                                    runtime: "envoy.wasm.runtime.v8".into(),
                                    code: AsyncDataSource {
                                        remote: RemoteDataSource {
                                            http_uri: HttpUri {
                                                uri: fetch.uri,
                                                cluster: fetch.cluster,
                                                timeout: FETCH_TIMEOUT.into(),
                                            },
                                            sha256: module_sha256,
                                            retry_policy: RetryPolicy {
                                                num_retries: FETCH_RETRIES,
                                            },
                                        },
                                    },
                                },
                                configuration: StringValue {
                                    type_url: "type.googleapis.com/google.protobuf.StringValue"
                                        .into(),
                                    value: config_text.to_string(),
                                },
                                failure_policy: "FAIL_CLOSED".into(),
                            },
                        },
                    },
                },
            }],
        },
    }
}

fn to_yaml(value: &impl Serialize) -> String {
    serde_yaml::to_string(value).expect("mesh resources serialize")
}

/// `sha256:abc...` → `abc...`.
fn hex_of(digest: &str) -> String {
    digest.strip_prefix("sha256:").unwrap_or(digest).to_string()
}

/// Name, phase and priority: flags, then `--manifest`, then the image's own
/// `manifest.yaml` (compat), then (name only) the image title annotation.
fn resolve_fields(
    image: &Image,
    format: Format,
    inputs: &MeshInputs,
) -> Result<(ExtensionName, Phase, Priority), MeshError> {
    let from_image = match image.layer_files()? {
        Some(files) => match files.get("manifest.yaml") {
            Some(bytes) => ManifestInput::from_yaml(&String::from_utf8_lossy(bytes))?,
            None => ManifestInput::default(),
        },
        None => ManifestInput::default(),
    };
    let title = image
        .manifest
        .annotations()
        .as_ref()
        .and_then(|a| a.get(TITLE).cloned());
    let merged = inputs.fields.clone().or(from_image);
    let hint = match format {
        Format::Compat => "",
        Format::Artifact => " (an artifact image carries no manifest.yaml)",
    };
    let missing = |field| MeshError::Missing { field, hint };
    let name: ExtensionName = merged.name.or(title).ok_or(missing("name"))?.parse()?;
    let phase: Phase = merged.phase.ok_or(missing("phase"))?.parse()?;
    let priority: Priority = merged.priority.ok_or(missing("priority"))?.0.parse()?;
    Ok((name, phase, priority))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ScalarText;
    use crate::registry::parse_reference;

    fn image(format: Format) -> Image {
        let mut package = crate::image::test_package(format);
        package.docs.clear();
        Image::build(&package).unwrap()
    }

    fn inputs(reference: &str) -> MeshInputs {
        MeshInputs {
            reference: parse_reference(reference).unwrap(),
            plain_http: false,
            config: FilterConfig::from_json(
                br#"{"response_headers_to_add":[{"header":{"key":"x-a","value":"1"}}]}"#,
            )
            .unwrap(),
            namespace: Some("bookinfo".parse().unwrap()),
            selector: Selector::parse(&["app=productpage"]).unwrap(),
            fields: ManifestInput::default(),
            module_url: None,
            target: "Gateway/eg".parse().unwrap(),
            kinds: None,
            image_pull_secret: None,
        }
    }

    #[test]
    fn maistra_phases_map_to_the_istio_phase_with_the_same_neighbours() {
        let cases = [
            (Phase::PreAuthN, IstioPhase::AUTHN),
            (Phase::PostAuthN, IstioPhase::AUTHZ),
            (Phase::PreAuthZ, IstioPhase::AUTHZ),
            (Phase::PostAuthZ, IstioPhase::STATS),
            (Phase::PreStats, IstioPhase::STATS),
            (Phase::PostStats, IstioPhase::Unspecified),
        ];
        for (maistra, istio) in cases {
            assert_eq!(IstioPhase::from_maistra(maistra), istio, "{maistra}");
        }
        assert_eq!(
            serde_yaml::to_string(&IstioPhase::Unspecified).unwrap(),
            "UNSPECIFIED_PHASE\n"
        );
    }

    #[test]
    fn extension_policy_pins_the_manifest_digest_and_targets_the_flag() {
        let img = image(Format::Compat);
        let mut i = inputs("registry.example:5000/filters/header-filter:1.0.0");
        i.target = "HTTPRoute/backend".parse().unwrap();
        i.module_url = Some("http://m.bookinfo.svc.cluster.local/f.wasm".into());
        let m = Manifests::generate(&img, &i).unwrap();
        let spec = &m.extension_policy.as_ref().unwrap().spec;
        assert_eq!(
            m.extension_policy.as_ref().unwrap().api_version,
            "gateway.envoyproxy.io/v1alpha1"
        );
        assert_eq!(
            m.extension_policy.as_ref().unwrap().kind,
            "EnvoyExtensionPolicy"
        );
        assert_eq!(spec.target_refs[0].group, "gateway.networking.k8s.io");
        assert_eq!(spec.target_refs[0].kind, "HTTPRoute");
        assert_eq!(spec.target_refs[0].name, "backend");
        let wasm = &spec.wasm[0];
        assert_eq!(wasm.code.type_, "Image");
        assert_eq!(
            wasm.code.image.url,
            "oci://registry.example:5000/filters/header-filter:1.0.0"
        );
        assert_eq!(
            format!("sha256:{}", wasm.code.image.sha256),
            img.manifest_digest
        );
        assert_eq!(wasm.config, *i.config.value());
        assert!(!wasm.fail_open);
        assert_eq!(wasm.root_id, "header-filter");
    }

    #[test]
    fn target_refs_are_gateway_or_httproute_with_a_name() {
        for bad in [
            "Gateway",
            "Service/x",
            "Gateway/",
            "gateway/eg",
            "HTTPRoute/Bad_Name",
        ] {
            let err = bad.parse::<TargetRef>().unwrap_err().to_string();
            assert!(
                err.contains("is not KIND/NAME with KIND Gateway or HTTPRoute"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn selectors_are_kubernetes_labels() {
        let ok =
            Selector::parse(&["app=productpage", "app.kubernetes.io/version=v1", "tier="]).unwrap();
        assert_eq!(ok.0.len(), 3);
        assert_eq!(ok.0["tier"], "");
        let cases: &[(&str, &str)] = &[
            ("app", "is not KEY=VALUE"),
            ("=x", "selector key \"\" is not a Kubernetes label key"),
            ("-app=x", "is not a Kubernetes label key"),
            ("Example.COM/app=x", "is not a Kubernetes label key"),
            (
                "app=has space",
                "selector value \"has space\" is not a Kubernetes label value",
            ),
            ("app=-x", "is not a Kubernetes label value"),
        ];
        for (arg, want) in cases {
            let err = Selector::parse(&[*arg]).unwrap_err().to_string();
            assert!(err.contains(want), "{arg}: {err}");
        }
        let long = format!("app={}", "a".repeat(64));
        assert!(Selector::parse(&[long]).is_err());
        let err = Selector::parse(&["app=a", "app=b"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "selector key \"app\" is given twice: give each label once"
        );
    }

    #[test]
    fn namespace_must_be_a_dns_label() {
        assert!("istio-system".parse::<Namespace>().is_ok());
        for bad in ["Istio", "a_b", "", "-x"] {
            assert!(bad.parse::<Namespace>().is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_filter_config_is_refused_with_the_filters_message() {
        let err = FilterConfig::from_json(
            br#"{"request_headers_to_add":[{"header":{"key":":path","value":"x"}}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("filter configuration is not valid: "),
            "{err}"
        );
        assert!(err.contains("request_headers_to_add"), "{err}");
    }

    #[test]
    fn compat_image_without_module_url_skips_the_envoy_filter_and_says_why() {
        let m = Manifests::generate(&image(Format::Compat), &inputs("ghcr.io/x/y:1")).unwrap();
        assert_eq!(
            m.kinds(),
            [
                Kind::ServiceMeshExtension,
                Kind::WasmPlugin,
                Kind::EnvoyExtensionPolicy
            ]
        );
        assert_eq!(m.notes.len(), 1, "{:?}", m.notes);
        assert!(
            m.notes[0].starts_with("skipped envoyfilter.yaml: the EnvoyFilter needs --module-url"),
            "{}",
            m.notes[0]
        );
        assert!(m.notes[0].contains("answers 200"), "{}", m.notes[0]);
        let files: Vec<&str> = m
            .documents(&parse_reference("ghcr.io/x/y:1").unwrap())
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            files,
            [
                "servicemeshextension.yaml",
                "wasmplugin.yaml",
                "envoyextensionpolicy.yaml"
            ]
        );
    }

    #[test]
    fn asking_for_the_envoy_filter_of_a_compat_image_without_module_url_is_an_error() {
        let mut i = inputs("ghcr.io/x/y:1");
        i.kinds = Some(vec![Kind::WasmPlugin, Kind::EnvoyFilter]);
        let err = Manifests::generate(&image(Format::Compat), &i).unwrap_err();
        assert!(matches!(err, MeshError::EnvoyFilterNeedsModuleUrl(_)));
        let err = err.to_string();
        assert!(
            err.starts_with(
                "--kind envoyfilter needs --module-url for ghcr.io/x/y:1, a compat image: "
            ),
            "{err}"
        );
        assert!(
            err.contains("accepts only a 200 answer (no redirects)"),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn kinds_choose_the_resources_in_file_order() {
        let mut i = inputs("ghcr.io/x/y:1");
        i.kinds = Some(vec![Kind::EnvoyExtensionPolicy, Kind::WasmPlugin]);
        let m = Manifests::generate(&image(Format::Compat), &i).unwrap();
        assert_eq!(m.kinds(), [Kind::WasmPlugin, Kind::EnvoyExtensionPolicy]);
        assert!(m.notes.is_empty(), "{:?}", m.notes);
        // --module-url with the EnvoyFilter left out is said to be unused.
        i.module_url = Some("http://m.example/f.wasm".into());
        let m = Manifests::generate(&image(Format::Compat), &i).unwrap();
        assert_eq!(
            m.notes,
            ["--module-url is used only by envoyfilter.yaml, which --kind leaves out"]
        );
        for name in ["wasmplugin", "EnvoyFilter", "servicemeshextension"] {
            assert_eq!(name.parse::<Kind>().unwrap().name(), name.to_lowercase());
        }
        assert_eq!(
            "sme".parse::<Kind>().unwrap_err(),
            "unknown kind \"sme\": accepted servicemeshextension, wasmplugin, envoyfilter, envoyextensionpolicy"
        );
    }

    #[test]
    fn artifact_image_gets_no_service_mesh_extension() {
        let mut i = inputs("ghcr.io/x/y:1");
        i.fields.phase = Some("PostAuthZ".into());
        i.fields.priority = Some(ScalarText("1".into()));
        let m = Manifests::generate(&image(Format::Artifact), &i).unwrap();
        assert!(m.service_mesh_extension.is_none());
        assert!(
            m.notes[0].starts_with(
                "skipped servicemeshextension.yaml: ghcr.io/x/y:1 is an artifact image, which \
                 Maistra's ServiceMeshExtension cannot load"
            ),
            "{:?}",
            m.notes
        );
        i.kinds = Some(vec![Kind::ServiceMeshExtension]);
        let err = Manifests::generate(&image(Format::Artifact), &i).unwrap_err();
        assert!(matches!(err, MeshError::SmeNeedsCompat(_)), "{err}");
        assert!(err.to_string().contains("publish with --format compat"));
    }

    #[test]
    fn pull_secret_goes_where_each_api_takes_it() {
        let mut i = inputs("ghcr.io/x/y:1");
        i.module_url = Some("http://m.example/f.wasm".into());
        i.image_pull_secret = Some("registry-creds".parse().unwrap());
        let m = Manifests::generate(&image(Format::Compat), &i).unwrap();
        let wp = &m.wasm_plugin.as_ref().unwrap().spec;
        assert_eq!(wp.image_pull_secret.as_deref(), Some("registry-creds"));
        let eep = &m.extension_policy.as_ref().unwrap().spec.wasm[0].code.image;
        assert_eq!(
            eep.pull_secret_ref,
            Some(SecretObjectReference {
                kind: "Secret".into(),
                name: "registry-creds".into()
            })
        );
        let yaml = to_yaml(m.extension_policy.as_ref().unwrap());
        assert!(
            yaml.contains(
                "        pullSecretRef:\n          kind: Secret\n          name: registry-creds\n"
            ),
            "{yaml}"
        );
        assert!(to_yaml(m.wasm_plugin.as_ref().unwrap())
            .contains("\n  imagePullSecret: registry-creds\n"));
        assert_eq!(m.notes, [SME_NO_PULL_SECRET, ENVOYFILTER_NO_PULL_SECRET]);
        // Without the flag, neither field is written.
        let m = Manifests::generate(&image(Format::Compat), &inputs("ghcr.io/x/y:1")).unwrap();
        assert!(!to_yaml(m.wasm_plugin.as_ref().unwrap()).contains("imagePullSecret"));
        assert!(!to_yaml(m.extension_policy.as_ref().unwrap()).contains("pullSecretRef"));
        for bad in ["", "Creds", "creds_1", "-creds", "creds.", &"a".repeat(254)] {
            let err = bad.parse::<SecretName>().unwrap_err().to_string();
            assert!(
                err.contains("is not a Kubernetes Secret name"),
                "{bad}: {err}"
            );
        }
        assert!("a.b-c".parse::<SecretName>().is_ok());
    }

    #[test]
    fn flat_config_out_of_sorted_order_gets_a_note() {
        let note = |config: &str| {
            let mut i = inputs("ghcr.io/x/y:1");
            i.config = FilterConfig::from_json(config.as_bytes()).unwrap();
            i.kinds = Some(vec![Kind::WasmPlugin]);
            Manifests::generate(&image(Format::Compat), &i)
                .unwrap()
                .notes
        };
        let notes = note(r#"{"x-c": "3", "x-a": "1", "x-b": "2"}"#);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("its keys sorted: x-a, x-b, x-c (written: x-c, x-a, x-b)"),
            "{}",
            notes[0]
        );
        assert!(
            notes[0].contains("Istio marshals pluginConfig"),
            "{}",
            notes[0]
        );
        // Already sorted, a single key, or not the flat form: nothing to say.
        for quiet in [
            r#"{"x-a": "1", "x-b": "2"}"#,
            r#"{"x-z": "1"}"#,
            r#"{"response_headers_to_add": [{"header": {"key": "x-z", "value": "1"}},
                                             {"header": {"key": "x-a", "value": "2"}}]}"#,
            "{}",
        ] {
            assert!(note(quiet).is_empty(), "{quiet}");
        }
    }

    #[test]
    fn compat_image_with_module_url_uses_it_and_the_image_manifest_fields() {
        let mut i = inputs("ghcr.io/x/y:1");
        i.module_url = Some("http://files.example:8080/header_filter.wasm".into());
        let img = image(Format::Compat);
        let m = Manifests::generate(&img, &i).unwrap();
        let remote = &m.envoy_filter.as_ref().unwrap().spec.config_patches[0]
            .patch
            .value
            .typed_config
            .config
            .vm_config
            .code
            .remote;
        assert_eq!(
            remote.http_uri.uri,
            "http://files.example:8080/header_filter.wasm"
        );
        assert_eq!(remote.http_uri.cluster, "outbound|8080||files.example");
        assert_eq!(
            m.service_mesh_extension.as_ref().unwrap().spec.phase,
            Phase::PostAuthZ
        );
        assert_eq!(m.service_mesh_extension.as_ref().unwrap().spec.priority, 10);
        assert_eq!(
            m.wasm_plugin.as_ref().unwrap().spec.phase,
            IstioPhase::STATS
        );
    }

    #[test]
    fn artifact_resources_pin_every_digest() {
        let img = image(Format::Artifact);
        let mut i = inputs("registry.example:5000/filters/header-filter:1.0.0");
        i.fields.phase = Some("PreAuthN".into());
        i.fields.priority = Some(ScalarText("-3".into()));
        let m = Manifests::generate(&img, &i).unwrap();
        let digest = &img.manifest_digest;
        assert!(
            m.service_mesh_extension.is_none(),
            "Maistra loads only compat"
        );
        assert_eq!(
            m.wasm_plugin.as_ref().unwrap().spec.url,
            "oci://registry.example:5000/filters/header-filter:1.0.0"
        );
        assert_eq!(
            format!("sha256:{}", m.wasm_plugin.as_ref().unwrap().spec.sha256),
            *digest
        );
        assert_eq!(
            m.wasm_plugin.as_ref().unwrap().spec.phase,
            IstioPhase::AUTHN
        );
        assert_eq!(m.wasm_plugin.as_ref().unwrap().spec.priority, -3);
        // The name comes from the image title when nothing else gives it.
        assert_eq!(
            m.wasm_plugin.as_ref().unwrap().metadata.name,
            "header-filter"
        );
        let remote = &m.envoy_filter.as_ref().unwrap().spec.config_patches[0]
            .patch
            .value
            .typed_config
            .config
            .vm_config
            .code
            .remote;
        let layer = img.manifest.layers()[1].digest().to_string();
        assert_eq!(
            remote.http_uri.uri,
            format!("https://registry.example:5000/v2/filters/header-filter/blobs/{layer}")
        );
        assert_eq!(remote.http_uri.cluster, "outbound|5000||registry.example");
        assert_eq!(format!("sha256:{}", remote.sha256), layer);
        let stream = m.to_yaml_stream(&i.reference);
        assert_eq!(stream.matches("\n---\n").count(), 2, "{stream}");
    }

    #[test]
    fn artifact_image_needs_phase_and_priority_from_flags_or_manifest() {
        let err = Manifests::generate(&image(Format::Artifact), &inputs("ghcr.io/x/y:1"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "phase is missing: give --phase, or --manifest with `phase:` (an artifact image carries no manifest.yaml)"
        );
    }

    #[test]
    fn a_reference_digest_must_be_the_images() {
        let other = format!("ghcr.io/x/y@sha256:{}", "0".repeat(64));
        let err = Manifests::generate(&image(Format::Compat), &inputs(&other))
            .unwrap_err()
            .to_string();
        assert!(err.contains("but the image read has digest"), "{err}");
    }

    #[test]
    fn plain_http_registry_gets_an_http_url_and_port_80_cluster() {
        let mut i = inputs("localhost/filters/h:1");
        i.plain_http = true;
        i.fields.phase = Some("PostStats".into());
        i.fields.priority = Some(ScalarText("1".into()));
        let m = Manifests::generate(&image(Format::Artifact), &i).unwrap();
        let remote = &m.envoy_filter.as_ref().unwrap().spec.config_patches[0]
            .patch
            .value
            .typed_config
            .config
            .vm_config
            .code
            .remote;
        assert!(remote
            .http_uri
            .uri
            .starts_with("http://localhost/v2/filters/h/blobs/sha256:"));
        assert_eq!(remote.http_uri.cluster, "outbound|80||localhost");
    }

    #[test]
    fn host_port_handles_ports_and_ipv6() {
        assert_eq!(host_port("ghcr.io", 443), ("ghcr.io".into(), 443));
        assert_eq!(host_port("127.0.0.1:5000", 80), ("127.0.0.1".into(), 5000));
        assert_eq!(host_port("[::1]:5000", 80), ("::1".into(), 5000));
        assert_eq!(host_port("[::1]", 80), ("::1".into(), 80));
    }
}
