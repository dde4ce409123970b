//! The command line: argument parsing (clap), turning arguments into library
//! calls, and printing. No packaging logic lives here.
//!
//! Errors come back as `anyhow` chains; `main` prints them as one
//! `error: ...` line and exits non-zero.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::HELP as EXIT_HELP;
use crate::image::{Format, Image, Inspection};
use crate::layer;
use crate::manifest::{ManifestInput, ScalarText};
use crate::mesh::{self, FilterConfig, Manifests, MeshInputs, Selector};
use crate::output;
use crate::package::{self, BuildInputs};
use crate::registry::{self, Credentials, Options};

/// Package proxy-wasm modules as extension images for Istio, Envoy Gateway and
/// OpenShift Service Mesh.
#[derive(Debug, Parser)]
#[command(name = "extpack", version, after_help = EXIT_HELP)]
#[command(
    long_about = "Package proxy-wasm modules as extension images for Istio, Envoy Gateway \
and OpenShift Service Mesh.

The image holds plugin.wasm (first) and manifest.yaml (Maistra schemaVersion 1)
in one tar+gzip layer (the \"compat\" format, default), or the runtime config and
the raw module as two layers (the \"artifact\" format). Both load in Istio's
WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy. OpenShift Service Mesh
2.1 and 2.2 also load compat through ServiceMeshExtension (maistra.io/v1,
deprecated in 2.2, removed in 2.3); 2.3 and later, and 3.x, load the same
compat image through WasmPlugin.

Typical use:
  extpack validate filter.wasm --config config.json
  extpack render --config config.json --request 'GET /api/v1' -H 'x-user: alice' --status 503
  extpack build filter.wasm --name header-filter --phase PostAuthZ --priority 10 \\
      --version 1.0.0 --output image/
  extpack push image/ --tag registry.example.com/filters/header-filter:1.0.0
  extpack publish filter.wasm --manifest manifest.yaml --tag REGISTRY/REPO:TAG"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image as an OCI layout folder or OCI archive
    #[command(after_help = EXIT_HELP)]
    #[command(
        long_about = "Build an image as an OCI image layout folder (--output) or an OCI \
archive (--archive). The module is validated first (WebAssembly, proxy-wasm ABI exports), and \
nothing is written when anything is wrong. The same inputs and SOURCE_DATE_EPOCH give the same \
digest.

Example:
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) \\
  extpack build filter.wasm --name header-filter --phase PostAuthZ --priority 10 \\
      --version 1.0.0 --docs docs/ --config config.json --output image/
  skopeo copy oci:image:1.0.0 docker://registry.example.com/filters/header-filter:1.0.0"
    )]
    Build {
        #[command(flatten)]
        inputs: BuildArgs,
        #[command(flatten)]
        dest: Destination,
    },
    /// Push a built layout folder or archive to a registry
    #[command(after_help = EXIT_HELP)]
    #[command(
        long_about = "Push an OCI layout folder or OCI archive made by `extpack build` to \
an OCI registry. The manifest is pushed byte for byte, so the registry digest is the local one.

Example:
  extpack push image/ --tag 127.0.0.1:5000/filters/header-filter:1.0.0 --plain-http
  echo \"$TOKEN\" | extpack push image.tar --tag quay.io/me/header-filter:1.0.0 \\
      --username me --password-stdin"
    )]
    Push {
        /// The layout folder or archive (PATH or PATH:TAG)
        source: String,
        /// Where to push: REGISTRY/REPOSITORY:TAG
        #[arg(long, value_name = "REF")]
        tag: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Build and push in one step (nothing is written locally)
    #[command(after_help = EXIT_HELP)]
    #[command(
        long_about = "Build an image and push it in one step; takes every `build` flag \
except the destination.

Example (CI):
  extpack publish target/wasm32-wasip1/release/filter.wasm --manifest manifest.yaml \\
      --version \"$GIT_TAG\" --tag ghcr.io/acme/header-filter:\"$GIT_TAG\""
    )]
    Publish {
        #[command(flatten)]
        inputs: BuildArgs,
        /// Where to push: REGISTRY/REPOSITORY:TAG
        #[arg(long, value_name = "REF")]
        tag: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Show an image's format, digests and manifest.yaml
    #[command(after_help = EXIT_HELP)]
    #[command(
        long_about = "Show an image's format, manifest digest, layers, manifest.yaml and \
module, from a layout folder, an archive or a registry. Every digest is verified.

Example:
  extpack inspect image/
  extpack inspect 127.0.0.1:5000/filters/header-filter:1.0.0 --plain-http --json | jq .module"
    )]
    Inspect {
        /// A layout folder, archive (PATH or PATH:TAG) or REGISTRY/REPOSITORY:TAG
        source: String,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Write the module back out of an image
    #[command(after_help = EXIT_HELP)]
    #[command(
        long_about = "Write the module out of an image, found the way Istio's fetcher \
finds it (last layer's plugin.wasm, or the Wasm content layer). Digests are verified and the \
layer is read with hardened extraction (no absolute paths, '..', links or oversized entries).

Example:
  extpack extract 127.0.0.1:5000/filters/header-filter:1.0.0 --plain-http --output filter.wasm"
    )]
    Extract {
        /// A layout folder, archive (PATH or PATH:TAG) or REGISTRY/REPOSITORY:TAG
        source: String,
        /// The module file to write
        #[arg(long, short, value_name = "FILE.wasm")]
        output: PathBuf,
        /// Replace an existing output
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Print the WasmPlugin, EnvoyExtensionPolicy, EnvoyFilter or ServiceMeshExtension that deploy an image
    #[command(after_help = EXIT_HELP)]
    #[command(
        long_about = "Generate the resources that deploy an image, pinned to its digest:

  wasmplugin.yaml            WasmPlugin (extensions.istio.io/v1alpha1): Istio 1.12+, and
                             OpenShift Service Mesh 2.3 and later, and 3.x
  envoyextensionpolicy.yaml  EnvoyExtensionPolicy (gateway.envoyproxy.io/v1alpha1): Envoy
                             Gateway, attached to --target-ref
  envoyfilter.yaml           EnvoyFilter (networking.istio.io/v1alpha3) whose Wasm filter
                             fetches the module over HTTP, checked by sha256
  servicemeshextension.yaml  ServiceMeshExtension (maistra.io/v1): OpenShift Service Mesh /
                             Maistra 2.1 and 2.2 only (deprecated in 2.2, removed in 2.3,
                             whose operator refuses to upgrade while any exist; from 2.3 the
                             WasmPlugin loads the same compat image)

--kind chooses them (e.g. --kind wasmplugin,envoyextensionpolicy). By default every kind \
the image and the flags allow is written, and each one left out is named on stderr with the \
reason: the EnvoyFilter needs --module-url for a compat image (Envoy fetches the raw module \
itself and accepts only a 200 answer, following no redirect), and an artifact image gets no \
ServiceMeshExtension (Maistra cannot load it). Asked for with --kind, either is an error.

The image is read from the registry at REF, or from a local layout/archive with --image \
(what `push` sends, byte for byte). --config is validated with the filter's own code and \
embedded in each. A mesh hands the filter its configuration with the keys sorted (Istio \
marshals pluginConfig that way): for a flat configuration written in another order, stderr \
says so.

Examples:
  extpack manifests ghcr.io/acme/header-filter:1.0.0 --config filter-config.json \\
      --namespace bookinfo --selector app=productpage --kind wasmplugin > wasmplugin.yaml
  extpack manifests ghcr.io/acme/header-filter:1.0.0 --config filter-config.json \\
      --namespace bookinfo --selector app=productpage --target-ref Gateway/eg \\
      --image-pull-secret registry-creds \\
      --module-url http://header-filter-module.bookinfo.svc.cluster.local/header_filter.wasm \\
      --output-dir manifests/"
    )]
    Manifests {
        /// Where the image is: REGISTRY/REPOSITORY:TAG (or @sha256:...)
        reference: String,
        /// The filter configuration (JSON) to embed
        #[arg(long, value_name = "FILE.json")]
        config: PathBuf,
        /// Namespace of the resources (default: none, i.e. kubectl's)
        #[arg(long)]
        namespace: Option<String>,
        /// Pod label the resources select (repeatable; default: every workload)
        #[arg(long = "selector", value_name = "KEY=VALUE")]
        selectors: Vec<String>,
        /// Resource name (default: the image's manifest.yaml name or title)
        #[arg(long)]
        name: Option<String>,
        /// Maistra phase (default: the image's manifest.yaml)
        #[arg(long)]
        phase: Option<String>,
        /// Priority, higher runs first (default: the image's manifest.yaml)
        #[arg(long, allow_hyphen_values = true)]
        priority: Option<String>,
        /// Read name, phase and priority from a Maistra manifest.yaml; flags win
        #[arg(long, value_name = "FILE.yaml")]
        manifest: Option<PathBuf>,
        /// Read the image from this layout folder or archive instead of REF
        #[arg(long, value_name = "DIR|FILE.tar")]
        image: Option<String>,
        /// URL the EnvoyFilter's Envoy fetches the raw module from (needed for
        /// compat images). Envoy's remote fetch accepts only an HTTP 200 answer
        /// and follows no redirect; GitHub release URLs and most registries'
        /// blob URLs redirect, so serve the module from an in-cluster server
        /// (the cluster becomes outbound|PORT||HOST)
        #[arg(long, value_name = "URL")]
        module_url: Option<String>,
        /// What the EnvoyExtensionPolicy attaches to: Gateway/NAME or
        /// HTTPRoute/NAME (group gateway.networking.k8s.io)
        #[arg(long, value_name = "KIND/NAME", default_value = "Gateway/eg")]
        target_ref: String,
        /// The resources to write, comma-separated or repeated (default:
        /// every kind the image and the flags allow)
        #[arg(
            long = "kind",
            value_name = "KIND",
            value_delimiter = ',',
            ignore_case = true,
            value_parser = clap::builder::PossibleValuesParser::new(mesh::Kind::ALL.map(mesh::Kind::name))
        )]
        kinds: Vec<String>,
        /// A Secret in the resources' namespace holding the registry's
        /// credentials (type kubernetes.io/dockerconfigjson): the WasmPlugin's
        /// imagePullSecret and the EnvoyExtensionPolicy's
        /// code.image.pullSecretRef (a ServiceMeshExtension has no such field)
        #[arg(long, value_name = "NAME")]
        image_pull_secret: Option<String>,
        /// Write the files here
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// Replace existing files in --output-dir
        #[arg(long, requires = "output_dir")]
        force: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Check a module (and optionally a filter config) without building
    #[command(after_help = EXIT_HELP)]
    #[command(
        long_about = "Check that a module is WebAssembly and exports the proxy-wasm ABI \
(proxy_abi_version_*, proxy_on_memory_allocate or malloc, memory); with --config, validate a \
filter configuration with the filter's own code and print what Envoy would log.

Example:
  extpack validate filter.wasm --config config.json"
    )]
    Validate {
        /// The module
        module: PathBuf,
        /// A filter configuration (JSON) to validate offline
        #[arg(long, value_name = "FILE.json")]
        config: Option<PathBuf>,
    },
    /// Try a filter configuration on a described request, offline
    #[command(long_about = RENDER_HELP)]
    Render(RenderArgs),
}

const RENDER_HELP: &str = "Run the header filter's own core on a request (and optionally a \
response) described on the command line, or on every request of a file, and print which route \
matched and every header as it leaves the filter: `+` added by the filter, `-` removed by it, \
and a note where Envoy acts on the header around the filter. No Envoy is needed, so configs can \
be tested in CI; the request is what the filter sees in Envoy (pseudo-headers :method, :path, \
:authority, :scheme, then the headers given, then the x-forwarded-proto and x-request-id that \
Envoy adds unless given).

Values render cannot compute offline print as <not computed offline: OPERATOR>: the \
connection's addresses unless given (--remote-address, --local-address, --upstream-address), \
the route name unless given (--route-name), and always CONNECTION_ID, TLS fields, \
UPSTREAM_CLUSTER, metadata, filter state, RESPONSE_FLAGS, RESPONSE_CODE_DETAILS. START_TIME is \
now unless --start-time is given. The configuration's warnings (what Envoy undoes) come last.

--requests FILE takes one request per line, in the syntax of this command line without \
`--request` (GET /api?x=1 -H 'x-debug: 1' --status 503 --response-header 'server: envoy' \
--route-name r1 --authority a --scheme https), or as one JSON object ({\"request\": \"GET /api\", \
\"headers\": [\"x-debug: 1\"], \"status\": 503, \"response_headers\": [...], \"route_name\": ..., \
\"authority\": ..., \"scheme\": ...}); blank lines and # comments are skipped. --expect FILE \
compares the output with FILE: on a difference it prints the diff and exits 1.

Examples:
  extpack render --config config.json --request 'GET /api/v1?debug=1' -H 'x-user: alice'
  extpack render --config config.json --request 'POST /login' --status 503 \\
      --response-header 'content-type: text/html'
  extpack render --config config.json --route-name reviews-v2 --json | jq .route
  extpack render --config config.json --requests cases.txt --start-time 0 > cases.expected
  extpack render --config config.json --requests cases.txt --start-time 0 --expect cases.expected";

/// `extpack render` arguments.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The filter configuration (JSON), or - for standard input
    #[arg(long, value_name = "FILE.json")]
    config: PathBuf,
    /// The request line: METHOD PATH (the path with its query string)
    #[arg(
        long,
        value_name = "METHOD PATH",
        default_value = "GET /",
        conflicts_with = "requests"
    )]
    request: String,
    /// A request header, NAME: VALUE (repeat for more; a name given twice is sent twice)
    #[arg(
        short = 'H',
        long = "header",
        value_name = "NAME: VALUE",
        conflicts_with = "requests"
    )]
    headers: Vec<String>,
    /// The request's :authority (Host) [default: example.com]
    #[arg(long, value_name = "HOST", conflicts_with = "requests")]
    authority: Option<String>,
    /// The request's :scheme, and the x-forwarded-proto Envoy adds [default: http]
    #[arg(long, conflicts_with = "requests")]
    scheme: Option<String>,
    /// The name of the Envoy route the request took (xds.route_name: route_name
    /// matchers, %ROUTE_NAME%); Istio names its routes
    #[arg(long, value_name = "NAME", conflicts_with = "requests")]
    route_name: Option<String>,
    /// Also run the response side, with this status
    #[arg(long, value_name = "CODE", conflicts_with = "requests")]
    status: Option<u16>,
    /// A response header, NAME: VALUE (repeat for more; needs --status)
    #[arg(
        long = "response-header",
        value_name = "NAME: VALUE",
        requires = "status",
        conflicts_with = "requests"
    )]
    response_headers: Vec<String>,
    /// Run every request of this file (one per line; see above), or - for
    /// standard input
    #[arg(long, value_name = "FILE")]
    requests: Option<PathBuf>,
    /// The client's address (source.address, %DOWNSTREAM_REMOTE_ADDRESS%...);
    /// not computed unless given
    #[arg(long, value_name = "IP:PORT")]
    remote_address: Option<String>,
    /// The address the request arrived on (destination.address,
    /// %DOWNSTREAM_LOCAL_ADDRESS%...); not computed unless given
    #[arg(long, value_name = "IP:PORT")]
    local_address: Option<String>,
    /// The upstream host's address (upstream.address, %UPSTREAM_HOST%...,
    /// response side); not computed unless given
    #[arg(long, value_name = "IP:PORT")]
    upstream_address: Option<String>,
    /// The request's protocol (request.protocol, %PROTOCOL%)
    #[arg(long, default_value = "HTTP/1.1")]
    protocol: String,
    /// When the request started (%START_TIME%): RFC 3339
    /// (2024-02-29T13:04:05.123Z) or epoch seconds (1709211845.123)
    /// [default: now]
    #[arg(long, value_name = "TIME")]
    start_time: Option<String>,
    /// Print the report as JSON (an array of reports with --requests)
    #[arg(long)]
    json: bool,
    /// Compare the output with this file; print the diff and exit 1 when
    /// they differ
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,
}

impl RenderArgs {
    fn surroundings(&self) -> Result<crate::render::Surroundings> {
        let start_time = match &self.start_time {
            Some(text) => crate::render::parse_start_time(text)?,
            None => crate::render::now(),
        };
        Ok(crate::render::Surroundings {
            remote_address: self.remote_address.clone(),
            local_address: self.local_address.clone(),
            upstream_address: self.upstream_address.clone(),
            protocol: self.protocol.clone(),
            start_time,
        })
    }

    /// The request described on the command line.
    fn described(&self) -> crate::render::Described {
        crate::render::Described {
            request: self.request.split_whitespace().map(String::from).collect(),
            headers: self.headers.clone(),
            authority: self.authority.clone(),
            scheme: self.scheme.clone(),
            route_name: self.route_name.clone(),
            status: self.status,
            response_headers: self.response_headers.clone(),
        }
    }

    /// Runs every request and returns the whole output.
    fn output(&self) -> Result<String> {
        use crate::render::{parse_requests, warnings_text, Renderer};
        if self.requests.as_deref() == Some(Path::new("-")) && self.config == Path::new("-") {
            bail!("--config - and --requests - cannot both read standard input");
        }
        let surroundings = self.surroundings()?;
        let config = read_input(&self.config)?;
        let renderer = Renderer::new(&config).with_context(|| self.config.display().to_string())?;
        let mut out = String::new();
        match &self.requests {
            None => {
                let exchange = self.described().exchange(&surroundings)?;
                let report = renderer.run(&exchange);
                if self.json {
                    out = serde_json::to_string_pretty(&report).expect("report serializes");
                    out.push('\n');
                } else {
                    out.push_str(&report.to_text());
                    out.push_str(&warnings_text(renderer.warnings()));
                }
            }
            Some(file) => {
                let name = file.display().to_string();
                let text = String::from_utf8(read_input(file)?)
                    .map_err(|_| anyhow::anyhow!("{name}: not UTF-8 text"))?;
                let cases = parse_requests(&text).with_context(|| name.clone())?;
                let mut reports = Vec::new();
                for case in &cases {
                    let exchange = case
                        .described
                        .exchange(&surroundings)
                        .with_context(|| format!("{name}: line {}", case.line))?;
                    let mut report = renderer.run(&exchange);
                    if !self.json {
                        out.push_str(&format!("== {name}:{}: {}\n", case.line, case.text));
                        out.push_str(&report.to_text());
                        out.push('\n');
                    }
                    report.line = Some(case.line);
                    report.case = Some(case.text.clone());
                    reports.push(report);
                }
                if self.json {
                    out = serde_json::to_string_pretty(&reports).expect("reports serialize");
                    out.push('\n');
                } else {
                    out.push_str(&warnings_text(renderer.warnings()));
                }
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// One tar+gzip layer with manifest.yaml and plugin.wasm (Maistra and Istio)
    Compat,
    /// Two layers: runtime config and raw module (Wasm image spec "oci" variant)
    Artifact,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Compat => Format::Compat,
            FormatArg::Artifact => Format::Artifact,
        }
    }
}

/// What goes into the image.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The proxy-wasm module (or `module:` in --manifest)
    pub module: Option<PathBuf>,
    /// Read name, description, version, phase, priority and module from a
    /// Maistra manifest.yaml; flags win
    #[arg(long, value_name = "FILE.yaml")]
    pub manifest: Option<PathBuf>,
    /// Extension name: a DNS-1123 label (lower-case letters, digits, '-')
    #[arg(long)]
    pub name: Option<String>,
    /// PreAuthN, PostAuthN, PreAuthZ, PostAuthZ, PreStats or PostStats
    #[arg(long)]
    pub phase: Option<String>,
    /// Integer; higher runs first within a phase
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<String>,
    /// Version, also the tag in the layout (default: latest)
    #[arg(long = "version", value_name = "VERSION", id = "ext_version")]
    pub version: Option<String>,
    /// One-line description
    #[arg(long)]
    pub description: Option<String>,
    /// A folder added to the image as docs/
    #[arg(long, value_name = "DIR")]
    pub docs: Option<PathBuf>,
    /// Validate this filter configuration (JSON) before building
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
    /// Root context id for the runtime config (repeatable)
    #[arg(long = "root-id", value_name = "ID")]
    pub root_ids: Vec<String>,
    /// Image format
    #[arg(long, value_enum, default_value = "compat")]
    pub format: FormatArg,
}

/// Where `build` writes.
#[derive(Debug, Args)]
pub struct Destination {
    /// Write an OCI image layout folder
    #[arg(
        long,
        short,
        value_name = "DIR",
        required_unless_present = "archive",
        conflicts_with = "archive"
    )]
    pub output: Option<PathBuf>,
    /// Write an OCI archive (a tar of the layout, as skopeo's oci-archive: reads)
    #[arg(long, value_name = "FILE.tar")]
    pub archive: Option<PathBuf>,
    /// Replace an existing output
    #[arg(long)]
    pub force: bool,
}

/// How to reach a registry.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Use plain HTTP (local registries without TLS)
    #[arg(long, conflicts_with = "ca_file")]
    pub plain_http: bool,
    /// Trust the CA certificates in this PEM file too (a registry whose
    /// certificate a private CA signed)
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Registry user name (default: the credentials Docker would use, else podman's auth.json)
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the registry password or token from standard input
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

impl RegistryArgs {
    fn options(&self) -> Result<Options> {
        let credentials = match &self.username {
            Some(username) => {
                let mut password = String::new();
                std::io::stdin()
                    .read_to_string(&mut password)
                    .context("reading the password from standard input")?;
                let password = password.trim_end_matches(['\r', '\n']).to_string();
                if password.is_empty() {
                    bail!("--password-stdin: standard input was empty: pipe the password in");
                }
                Credentials::Basic {
                    username: username.clone(),
                    password,
                }
            }
            None => Credentials::DockerConfig,
        };
        let ca_pem = self
            .ca_file
            .as_deref()
            .map(registry::read_ca_file)
            .transpose()?;
        Ok(Options {
            plain_http: self.plain_http,
            ca_pem,
            credentials,
            progress: std::io::stderr().is_terminal(),
        })
    }
}

impl BuildArgs {
    fn inputs(&self) -> Result<BuildInputs> {
        Ok(BuildInputs {
            module: self.module.clone(),
            flags: ManifestInput {
                schema_version: None,
                name: self.name.clone(),
                description: self.description.clone(),
                version: self.version.clone().map(ScalarText),
                phase: self.phase.clone(),
                priority: self.priority.clone().map(ScalarText),
                module: None,
            },
            manifest_file: self.manifest.clone(),
            docs: self.docs.clone(),
            config: self.config.clone(),
            root_ids: self.root_ids.clone(),
            format: Some(self.format.into()),
            epoch: layer::source_date_epoch()?,
        })
    }

    fn image(&self) -> Result<Image> {
        let inputs = self.inputs()?;
        let pkg = package::prepare(&inputs)?;
        Ok(Image::build(&pkg)?)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A local layout/archive (`PATH` or `PATH:TAG`), or a registry reference.
enum Source {
    Local(PathBuf, Option<String>),
    Remote(registry::ImageRef),
}

fn source(text: &str) -> Result<Source> {
    let path = Path::new(text);
    if path.exists() {
        return Ok(Source::Local(path.to_path_buf(), None));
    }
    if let Some((p, tag)) = text.rsplit_once(':') {
        if !p.is_empty() && Path::new(p).exists() {
            return Ok(Source::Local(PathBuf::from(p), Some(tag.to_string())));
        }
    }
    if !text.contains('/') || text.starts_with('.') || text.starts_with('/') {
        bail!(
            "{text:?} is neither an existing layout folder or archive nor a registry reference \
             (REGISTRY/REPOSITORY:TAG)"
        );
    }
    Ok(Source::Remote(registry::parse_reference(text)?))
}

fn load(text: &str, args: &RegistryArgs) -> Result<Image> {
    match source(text)? {
        Source::Local(path, tag) => Ok(Image::read_path(&path, tag.as_deref())?),
        Source::Remote(reference) => {
            let opts = args.options()?;
            Ok(runtime()?.block_on(registry::pull(&reference, &opts))?)
        }
    }
}

fn push(image: &Image, tag: &str, args: &RegistryArgs) -> Result<()> {
    let reference = registry::parse_reference(tag)?;
    let opts = args.options()?;
    let digest = runtime()?.block_on(registry::push(image, &reference, &opts))?;
    println!("pushed {}@{digest}", reference.whole());
    Ok(())
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build { inputs, dest } => {
            let image = inputs.image()?;
            let format = image.format()?;
            let tag = image.ref_name.clone().unwrap_or_default();
            let path = if let Some(dir) = &dest.output {
                image.write_layout(dir, dest.force)?;
                dir
            } else {
                let file = dest.archive.as_ref().expect("clap requires a destination");
                image.write_archive(file, layer::source_date_epoch()?, dest.force)?;
                file
            };
            println!(
                "built {format} image {} (tag {tag}) in {}",
                image.manifest_digest,
                path.display()
            );
        }
        Command::Push {
            source: src,
            tag,
            registry,
        } => {
            let image = match source(&src)? {
                Source::Local(path, t) => Image::read_path(&path, t.as_deref())?,
                Source::Remote(_) => bail!(
                    "{src:?} is not an existing layout folder or archive: build one with `extpack build`"
                ),
            };
            push(&image, &tag, &registry)?;
        }
        Command::Publish {
            inputs,
            tag,
            registry,
        } => {
            registry::parse_reference(&tag)?;
            let image = inputs.image()?;
            push(&image, &tag, &registry)?;
        }
        Command::Inspect {
            source,
            json,
            registry,
        } => {
            let image = load(&source, &registry)?;
            let inspection = image.inspect()?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&inspection).expect("inspection serializes")
                );
            } else {
                print_inspection(&inspection);
            }
        }
        Command::Extract {
            source,
            output: out,
            force,
            registry,
        } => {
            let image = load(&source, &registry)?;
            let module = image.module()?;
            output::write_file(&out, &module, force)?;
            println!(
                "wrote {} ({} bytes, {})",
                out.display(),
                module.len(),
                layer::sha256_digest(&module)
            );
        }
        Command::Manifests {
            reference,
            config,
            namespace,
            selectors,
            name,
            phase,
            priority,
            manifest,
            image,
            module_url,
            target_ref,
            kinds,
            image_pull_secret,
            output_dir,
            force,
            registry,
        } => {
            let reference = registry::parse_reference(&reference)?;
            let config_bytes = std::fs::read(&config)
                .with_context(|| format!("cannot read {}", config.display()))?;
            let config = FilterConfig::from_json(&config_bytes)
                .with_context(|| config.display().to_string())?;
            let flags = ManifestInput {
                name,
                phase,
                priority: priority.map(ScalarText),
                ..ManifestInput::default()
            };
            let fields = match &manifest {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let file = ManifestInput::from_yaml(&text)
                        .with_context(|| path.display().to_string())?;
                    flags.or(file)
                }
                None => flags,
            };
            let inputs = MeshInputs {
                reference: reference.clone(),
                plain_http: registry.plain_http,
                config,
                namespace: namespace.map(|n| n.parse()).transpose()?,
                selector: Selector::parse(&selectors)?,
                fields,
                module_url,
                target: target_ref.parse()?,
                kinds: (!kinds.is_empty())
                    .then(|| kinds.iter().map(|k| k.parse()).collect::<Result<_, _>>())
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                image_pull_secret: image_pull_secret.map(|s| s.parse()).transpose()?,
            };
            let image = match &image {
                Some(text) => match source(text)? {
                    Source::Local(path, tag) => Image::read_path(&path, tag.as_deref())?,
                    Source::Remote(_) => {
                        bail!("--image {text:?} is not an existing layout folder or archive")
                    }
                },
                None => {
                    let opts = registry.options()?;
                    runtime()?.block_on(registry::pull(&reference, &opts))?
                }
            };
            let manifests = Manifests::generate(&image, &inputs)?;
            let documents = manifests.documents(&reference);
            match output_dir {
                None => print!("{}", manifests.to_yaml_stream(&reference)),
                Some(dir) => {
                    if !force {
                        for (file, _) in &documents {
                            let path = dir.join(file);
                            if path.symlink_metadata().is_ok() {
                                bail!(
                                    "{} already exists: pass --force to replace it",
                                    path.display()
                                );
                            }
                        }
                    }
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    for (file, text) in &documents {
                        output::write_file(&dir.join(file), text.as_bytes(), force)?;
                    }
                    // `kubectl apply -f DIR` would apply a file this run did
                    // not write as if it were current.
                    for file in mesh::FILE_NAMES {
                        let path = dir.join(file);
                        if !documents.iter().any(|(f, _)| *f == file)
                            && path.symlink_metadata().is_ok()
                        {
                            eprintln!(
                                "note: {} is from an earlier run and was not rewritten: remove \
                                 it before `kubectl apply -f {}`",
                                path.display(),
                                dir.display()
                            );
                        }
                    }
                    let written: Vec<&str> = documents.iter().map(|(f, _)| *f).collect();
                    println!(
                        "wrote {} for {}@{}",
                        written.join(", "),
                        reference.whole(),
                        image.manifest_digest
                    );
                }
            }
            for note in &manifests.notes {
                eprintln!("note: {note}");
            }
        }
        Command::Render(args) => {
            let output = args.output()?;
            match &args.expect {
                None => print!("{output}"),
                Some(file) => {
                    let name = file.display().to_string();
                    let expected = String::from_utf8(read_input(file)?)
                        .map_err(|_| anyhow::anyhow!("{name}: not UTF-8 text"))?;
                    match crate::render::diff(&expected, &output, &name) {
                        None => println!("render: the output matches {name}"),
                        Some(diff) => {
                            print!("{diff}");
                            bail!("the output differs from {name}: the diff is above");
                        }
                    }
                }
            }
        }
        Command::Validate { module, config } => {
            let (_, info) = package::check_module(&module)?;
            println!(
                "{}: proxy-wasm module, ABI {}, allocator {}",
                module.display(),
                info.abi_versions.join(", "),
                info.allocator
            );
            if let Some(config) = config {
                package::check_config(&config)?;
                println!("{}: valid filter configuration", config.display());
                let bytes = read_input(&config)?;
                let (_, warnings) = header_filter::Config::parse_with_warnings(&bytes)
                    .with_context(|| config.display().to_string())?;
                print!("{}", crate::render::warnings_text(&warnings));
            }
        }
    }
    Ok(())
}

/// A file's bytes, or standard input for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn print_inspection(i: &Inspection) {
    println!("format:   {}", i.format);
    if let Some(tag) = &i.ref_name {
        println!("tag:      {tag}");
    }
    println!("manifest: {}", i.manifest_digest);
    println!(
        "config:   {} {} ({} bytes)",
        i.config.media_type, i.config.digest, i.config.size
    );
    for l in &i.layers {
        let title = l
            .title
            .as_deref()
            .map(|t| format!(" {t}"))
            .unwrap_or_default();
        println!(
            "layer:    {} {} ({} bytes){title}",
            l.media_type, l.digest, l.size
        );
    }
    println!("module:   {} ({} bytes)", i.module.digest, i.module.size);
    for (k, v) in &i.annotations {
        println!("annotation: {k}={v}");
    }
    for f in &i.files {
        println!("file:     {} ({} bytes)", f.path, f.size);
    }
    if let Some(text) = &i.manifest_yaml_text {
        println!("manifest.yaml:");
        for line in text.lines() {
            println!("  {line}");
        }
    }
    if let Some(rc) = &i.runtime_config {
        println!(
            "runtime config: type {}, ABI {}, root ids [{}]",
            rc.typ,
            rc.abi_versions.join(", "),
            rc.config.root_ids.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn build_needs_exactly_one_destination() {
        let base = ["extpack", "build", "m.wasm", "--name", "x"];
        assert!(Cli::try_parse_from(base).is_err());
        let both = [&base[..], &["--output", "d", "--archive", "a.tar"]].concat();
        assert!(Cli::try_parse_from(both).is_err());
        let one = [&base[..], &["--output", "d", "--priority", "-5", "--force"]].concat();
        assert!(Cli::try_parse_from(one).is_ok());
        let archive = [&base[..], &["--archive", "a.tar", "--force"]].concat();
        assert!(Cli::try_parse_from(archive).is_ok());
    }
}
