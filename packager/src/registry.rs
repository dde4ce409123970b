//! Registry transport: pushing an [`Image`] to, and pulling one from, any OCI
//! distribution registry through `oci-client`, with the credentials
//! [`crate::credentials`] finds (Docker's, then podman's) or explicit ones.
//!
//! Pushes send the manifest bytes exactly as built, so the digest in the
//! registry is the digest of the local layout. Pulls check the manifest and
//! every blob against their digests (via [`Image::from_parts`]) and refuse
//! blobs larger than the extraction limits before downloading them.

use std::io::Write;
use std::path::{Path, PathBuf};

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::{OciDescriptor, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::credentials::{self, Challenge, ExchangeError, Found, Login, Source};
use crate::extract::Limits;
use crate::image::{Image, ImageError};

/// A parsed image reference (`registry/repo:tag` or `@sha256:...`).
pub use oci_client::Reference as ImageRef;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0:?} is not a valid image reference: use REGISTRY/REPOSITORY:TAG, e.g. 127.0.0.1:5000/filters/header-filter:1.0.0 ({1})")]
    BadReference(String, String),
    #[error("cannot push to {0}: it names a digest, give a tag instead (REGISTRY/REPOSITORY:TAG)")]
    PushToDigest(String),
    #[error("cannot reach registry {registry}: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("TLS with registry {registry} failed: {problem}: {hint}")]
    Tls {
        registry: String,
        /// The certificate problem, in words.
        problem: String,
        /// `--ca-file` and `--plain-http`, or only the latter once a CA
        /// file was given.
        hint: &'static str,
    },
    #[error("--ca-file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("registry {registry} sent data that does not match its digest: {reason}")]
    Integrity { registry: String, reason: String },
    #[error("registry {registry} refused access to {reference} ({what}): {hint}")]
    Unauthorized {
        registry: String,
        reference: String,
        what: &'static str,
        /// What to do: log in, or fix the credentials that were sent.
        hint: String,
    },
    #[error("{reference} was not found in registry {registry}")]
    NotFound { registry: String, reference: String },
    #[error("registry {registry}: {reason}")]
    Other { registry: String, reason: String },
    #[error("reading credentials for {registry} from {origin}: {reason}")]
    Credentials {
        registry: String,
        /// The file, variable or helper they come from, in words.
        origin: String,
        reason: String,
    },
    #[error("blob {digest} is {size} bytes, over the {limit}-byte limit: refusing to download it")]
    TooLarge {
        digest: String,
        size: i64,
        limit: u64,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// Parses a reference, with an error that says what is accepted.
pub fn parse_reference(text: &str) -> Result<Reference, RegistryError> {
    text.parse::<Reference>()
        .map_err(|e| RegistryError::BadReference(text.to_string(), e.to_string()))
}

/// Whose credentials to use.
#[derive(Debug, Clone, Default)]
pub enum Credentials {
    /// The machine's: Docker's (`DOCKER_AUTH_CONFIG`, `config.json` and its
    /// credential helpers), else podman's auth files; anonymous when neither
    /// has anything for the registry (see [`crate::credentials`]).
    #[default]
    DockerConfig,
    /// `--username` and `--password-stdin`.
    Basic { username: String, password: String },
}

/// How to talk to the registry.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Plain HTTP instead of HTTPS (local registries).
    pub plain_http: bool,
    /// PEM certificates trusted besides the built-in roots (`--ca-file`),
    /// for registries whose certificate a private CA signed.
    pub ca_pem: Option<Vec<u8>>,
    pub credentials: Credentials,
    /// Print a line per blob on stderr.
    pub progress: bool,
}

/// Reads a `--ca-file`: PEM text holding at least one certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<u8>, RegistryError> {
    let bad = |reason: String| RegistryError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certificates = String::from_utf8_lossy(&pem)
        .matches("-----BEGIN CERTIFICATE-----")
        .count();
    if certificates == 0 {
        return Err(bad(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA certificate in PEM form"
                .into(),
        ));
    }
    // Parsed now so that a damaged file is named as such, not as a TLS failure.
    reqwest_check(&pem).map_err(bad)?;
    Ok(pem)
}

/// Lets the HTTP client parse the PEM as it will when connecting.
fn reqwest_check(pem: &[u8]) -> Result<(), String> {
    let cert = Certificate {
        encoding: CertificateEncoding::Pem,
        data: pem.to_vec(),
    };
    Client::try_from(ClientConfig {
        extra_root_certificates: vec![cert],
        ..ClientConfig::default()
    })
    .map(|_| ())
    .map_err(|e| format!("is not a usable PEM certificate: {e}"))
}

fn client(opts: &Options) -> Result<Client, RegistryError> {
    let extra_root_certificates = opts
        .ca_pem
        .iter()
        .map(|pem| Certificate {
            encoding: CertificateEncoding::Pem,
            data: pem.clone(),
        })
        .collect();
    Client::try_from(ClientConfig {
        protocol: if opts.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        extra_root_certificates,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(120)),
        ..ClientConfig::default()
    })
    .map_err(|e| RegistryError::Other {
        registry: String::new(),
        reason: format!("cannot set up the HTTP client: {e}"),
    })
}

/// The credentials a run used, for what to tell the user when they are
/// refused.
#[derive(Debug, Clone)]
enum Used {
    Anonymous,
    Basic {
        username: String,
        source: Source,
    },
    /// An access token got for an identity token.
    IdentityToken {
        source: Source,
    },
}

/// Finds the credentials for `reference` and turns them into what
/// `oci-client` sends: user and password as they are (oci-client gives
/// them to the token endpoint, or to the registry for basic auth); an
/// identity token exchanged for an access token for `operation`'s scope.
async fn authenticate(
    reference: &Reference,
    operation: RegistryOperation,
    what: &'static str,
    opts: &Options,
) -> Result<(RegistryAuth, Used), RegistryError> {
    let registry = reference.registry();
    let found = match &opts.credentials {
        Credentials::Basic { username, password } => Found {
            login: Login {
                username: username.clone(),
                password: password.clone(),
                identity_token: None,
            },
            source: Source::Flags,
        },
        Credentials::DockerConfig => {
            let env = credentials::Env::from_process();
            match credentials::lookup(registry, reference.repository(), &env) {
                Ok(Some(found)) => found,
                Ok(None) => return Ok((RegistryAuth::Anonymous, Used::Anonymous)),
                Err(e) => {
                    return Err(RegistryError::Credentials {
                        registry: registry.to_string(),
                        origin: e.origin,
                        reason: e.reason,
                    })
                }
            }
        }
    };
    let Found { login, source } = found;
    let Some(identity_token) = login.identity_token else {
        return Ok((
            RegistryAuth::Basic(login.username.clone(), login.password),
            Used::Basic {
                username: login.username,
                source,
            },
        ));
    };
    let credentials_error = |reason: String| RegistryError::Credentials {
        registry: registry.to_string(),
        origin: source.to_string(),
        reason,
    };
    // What the registry asks for: its 401 to an anonymous GET /v2/, at the
    // host oci-client talks to (`index.docker.io` for `docker.io`).
    let http = http_client(opts)?;
    let scheme = if opts.plain_http { "http" } else { "https" };
    let anonymous = Used::Anonymous;
    let answer = http
        .get(format!("{scheme}://{}/v2/", reference.resolve_registry()))
        .send()
        .await
        .map_err(|e| explain(e.into(), reference, what, &anonymous, opts))?;
    let challenge = answer
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(credentials::parse_challenge);
    match challenge {
        // An open registry.
        None => Ok((RegistryAuth::Anonymous, Used::Anonymous)),
        Some(Challenge::Bearer { realm, service }) => {
            let scope = match operation {
                RegistryOperation::Pull => format!("repository:{}:pull", reference.repository()),
                RegistryOperation::Push => {
                    format!("repository:{}:pull,push", reference.repository())
                }
            };
            let access = credentials::exchange_identity_token(
                &http,
                &realm,
                service.as_deref(),
                &scope,
                &identity_token,
            )
            .await
            .map_err(|e| match e {
                ExchangeError::Refused {
                    realm,
                    status,
                    detail,
                } => RegistryError::Unauthorized {
                    registry: registry.to_string(),
                    reference: reference.whole(),
                    what,
                    hint: format!(
                        "the token endpoint {realm} refused the identity token from {source} ({status}{detail}): \
                         log in again (`docker login {registry}`, or your cloud's login such as `az acr login`)"
                    ),
                },
                // Classified as the registry's own failures are, naming
                // the endpoint.
                ExchangeError::Http {
                    realm,
                    source: cause,
                } => match explain(cause.into(), reference, what, &Used::Anonymous, opts) {
                    RegistryError::Unreachable { registry, reason } => RegistryError::Unreachable {
                        registry,
                        reason: format!("its token endpoint {realm}: {reason}"),
                    },
                    RegistryError::Tls {
                        registry,
                        problem,
                        hint,
                    } => RegistryError::Tls {
                        registry,
                        problem: format!("its token endpoint {realm}: {problem}"),
                        hint,
                    },
                    other => other,
                },
                other => credentials_error(other.to_string()),
            })?;
            Ok((RegistryAuth::Bearer(access), Used::IdentityToken { source }))
        }
        // Basic auth: Docker sends the user and password beside the token.
        Some(Challenge::Other(_)) if !login.username.is_empty() => Ok((
            RegistryAuth::Basic(login.username.clone(), login.password),
            Used::Basic {
                username: login.username,
                source,
            },
        )),
        Some(Challenge::Other(scheme)) => Err(credentials_error(format!(
            "they hold only an identity token, and the registry asks for {scheme} auth, not for a Bearer token"
        ))),
    }
}

/// An HTTP client with the registry client's TLS settings, for the token
/// endpoint and the registry's challenge.
fn http_client(opts: &Options) -> Result<reqwest::Client, RegistryError> {
    let setup = |reason: String| RegistryError::Other {
        registry: String::new(),
        reason: format!("cannot set up the HTTP client: {reason}"),
    };
    let mut roots = Vec::new();
    if let Some(pem) = &opts.ca_pem {
        roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| setup(e.to_string()))?;
    }
    reqwest::Client::builder()
        .tls_certs_merge(roots)
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .user_agent(concat!("extpack/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| setup(e.to_string()))
}

/// What to tell a user the registry refused: anonymous users are told to
/// log in, users who sent credentials that those (and where they came from)
/// were rejected.
fn auth_hint(registry: &str, used: &Used) -> String {
    match used {
        Used::Anonymous => format!(
            "log in with `docker login {registry}` or pass --username and --password-stdin"
        ),
        Used::Basic { username, source } => format!(
            "authentication failed for user {username:?} from {source}: check the user name and password (or token) and its rights on the repository"
        ),
        Used::IdentityToken { source } => format!(
            "the access token got for the identity token from {source} was refused: check its rights on the repository, or log in again with `docker login {registry}`"
        ),
    }
}

/// The certificate problem in a TLS failure's error chain, in words, or
/// `None` when the chain is not a TLS failure.
fn tls_problem(chain: &str) -> Option<String> {
    let lower = chain.to_lowercase();
    let problems = [
        (
            "unknownissuer",
            "its certificate is signed by a CA this machine does not trust (UnknownIssuer)",
        ),
        (
            "notvalidforname",
            "its certificate is not valid for this host name (NotValidForName)",
        ),
        ("expired", "its certificate has expired (Expired)"),
        (
            "notvalidyet",
            "its certificate is not valid yet (NotValidYet)",
        ),
        (
            "badsignature",
            "its certificate has a bad signature (BadSignature)",
        ),
        ("unknownca", "it does not trust the CA (UnknownCA)"),
        ("self-signed", "its certificate is self-signed"),
        ("invalid peer certificate", "its certificate was refused"),
        (
            "corrupt message",
            "it did not answer TLS (is it a plain-HTTP registry?)",
        ),
        (
            "invalidcontenttype",
            "it did not answer TLS (is it a plain-HTTP registry?)",
        ),
        (
            "received corrupt message",
            "it did not answer TLS (is it a plain-HTTP registry?)",
        ),
    ];
    if let Some((_, words)) = problems.iter().find(|(key, _)| lower.contains(key)) {
        // The rustls detail (e.g. `invalid peer certificate: UnknownIssuer`)
        // is kept so the exact cause is searchable.
        let detail = lower
            .find("invalid peer certificate")
            .map(|at| chain[at..].trim_end_matches(')').to_string());
        return Some(match detail {
            Some(detail) => format!("{words}; {detail}"),
            None => words.to_string(),
        });
    }
    (lower.contains("tls") || lower.contains("certificate") || lower.contains("handshake"))
        .then(|| "the TLS handshake failed".to_string())
}

/// Turns an `oci-client` error into one line that says what to do.
fn explain(
    e: OciDistributionError,
    reference: &Reference,
    what: &'static str,
    used: &Used,
    opts: &Options,
) -> RegistryError {
    let registry = reference.registry().to_string();
    let chain = {
        let mut parts = vec![e.to_string()];
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
            source = s.source();
        }
        parts.join(": ")
    };
    let unauthorized = || RegistryError::Unauthorized {
        registry: registry.clone(),
        reference: reference.whole(),
        what,
        hint: auth_hint(&registry, used),
    };
    match &e {
        OciDistributionError::DigestError(DigestError::VerificationError { .. }) => {
            return RegistryError::Integrity {
                registry,
                reason: chain,
            }
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => return unauthorized(),
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => return unauthorized(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope
                .errors
                .iter()
                .map(|err| format!("{:?}", err.code))
                .collect();
            let text = codes.join(",").to_lowercase();
            if text.contains("unauthorized") || text.contains("denied") {
                return unauthorized();
            }
            if text.contains("unknown") {
                return RegistryError::NotFound {
                    registry,
                    reference: reference.whole(),
                };
            }
            let messages: Vec<String> = envelope
                .errors
                .iter()
                .map(|err| err.message.to_lowercase())
                .collect();
            return RegistryError::Other {
                registry,
                reason: format!(
                    "{what} refused: {} ({})",
                    messages.join("; "),
                    codes.join(", ")
                ),
            };
        }
        OciDistributionError::ImageManifestNotFoundError(_)
        | OciDistributionError::ServerError { code: 404, .. } => {
            return RegistryError::NotFound {
                registry,
                reference: reference.whole(),
            }
        }
        _ => {}
    }
    let lower = chain.to_lowercase();
    // Status errors from plain requests (e.g. a HEAD on a blob) carry no body.
    if lower.contains("401 unauthorized") || lower.contains("403 forbidden") {
        return unauthorized();
    }
    if opts.plain_http && lower.contains("http request to an https server") {
        return RegistryError::Tls {
            registry,
            problem: "it speaks only HTTPS, and --plain-http was given".into(),
            hint: "drop --plain-http (and pass --ca-file CA.pem if a private CA signed its certificate)",
        };
    }
    if !opts.plain_http {
        if let Some(problem) = tls_problem(&chain) {
            return RegistryError::Tls {
                registry,
                problem,
                hint: if opts.ca_pem.is_some() {
                    "the --ca-file given does not vouch for it: give the CA that signed the \
                     registry's certificate (or --plain-http for a registry without TLS)"
                } else {
                    "if a private CA signed its certificate, pass --ca-file CA.pem; \
                     for a registry without TLS pass --plain-http"
                },
            };
        }
    }
    if lower.contains("error sending request")
        || lower.contains("connection refused")
        || lower.contains("dns error")
        || lower.contains("timed out")
        || lower.contains("connection reset")
        || lower.contains("broken pipe")
        || lower.contains("connection closed")
    {
        let reason = if lower.contains("connection refused") {
            "connection refused (is it running, and is the address right?)".to_string()
        } else if lower.contains("connection reset")
            || lower.contains("broken pipe")
            || lower.contains("connection closed")
        {
            // The URL in the chain carries upload state: not worth a line.
            format!(
                "the connection was cut during the {what} (the registry stopped or dropped it): retry; a push tags nothing until its manifest is sent"
            )
        } else if lower.contains("dns error") {
            "the host name does not resolve".to_string()
        } else if lower.contains("timed out") {
            "the connection timed out".to_string()
        } else {
            chain
        };
        return RegistryError::Unreachable { registry, reason };
    }
    RegistryError::Other {
        registry,
        reason: format!("{what} failed: {chain}"),
    }
}

fn progress(opts: &Options, line: std::fmt::Arguments<'_>) {
    if opts.progress {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

fn oci_descriptor(d: &oci_spec::image::Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type().to_string(),
        digest: d.digest().to_string(),
        size: d.size() as i64,
        urls: None,
        annotations: None,
        artifact_type: None,
    }
}

/// Pushes every blob (skipping those the registry has) and then the manifest
/// bytes as built. Returns the manifest digest.
pub async fn push(
    image: &Image,
    reference: &Reference,
    opts: &Options,
) -> Result<String, RegistryError> {
    if reference.digest().is_some() {
        return Err(RegistryError::PushToDigest(reference.whole()));
    }
    let client = client(opts)?;
    let (auth, used) = authenticate(reference, RegistryOperation::Push, "push", opts).await?;
    client
        .auth(reference, &auth, RegistryOperation::Push)
        .await
        .map_err(|e| explain(e, reference, "push", &used, opts))?;
    let descriptors = std::iter::once(image.manifest.config()).chain(image.manifest.layers());
    let mut done = std::collections::BTreeSet::new();
    for desc in descriptors {
        let digest = desc.digest().to_string();
        if !done.insert(digest.clone()) {
            continue;
        }
        let bytes = image
            .blobs
            .get(&digest)
            .ok_or_else(|| ImageError::MissingBlob(digest.clone()))?;
        let exists = client
            .blob_exists(reference, &digest)
            .await
            .map_err(|e| explain(e, reference, "push", &used, opts))?;
        if exists {
            progress(opts, format_args!("{digest}: already in the registry"));
            continue;
        }
        progress(
            opts,
            format_args!("{digest}: pushing {} bytes", bytes.len()),
        );
        client
            .push_blob(reference, bytes.clone(), &digest)
            .await
            .map_err(|e| explain(e, reference, "push", &used, opts))?;
    }
    progress(
        opts,
        format_args!("{}: pushing manifest", image.manifest_digest),
    );
    client
        .push_manifest_raw(
            reference,
            image.manifest_bytes.clone(),
            OCI_IMAGE_MEDIA_TYPE.parse().expect("a valid header value"),
        )
        .await
        .map_err(|e| explain(e, reference, "push", &used, opts))?;
    Ok(image.manifest_digest.clone())
}

/// Pulls an image, verifying the manifest digest (against the reference's
/// digest when it has one) and every blob.
pub async fn pull(reference: &Reference, opts: &Options) -> Result<Image, RegistryError> {
    let client = client(opts)?;
    let (auth, used) = authenticate(reference, RegistryOperation::Pull, "pull", opts).await?;
    client
        .auth(reference, &auth, RegistryOperation::Pull)
        .await
        .map_err(|e| explain(e, reference, "pull", &used, opts))?;
    let (bytes, _digest) = client
        .pull_manifest_raw(reference, &auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .map_err(|e| explain(e, reference, "pull", &used, opts))?;
    // Check the sizes first, then download, then verify every digest.
    let manifest = oci_spec::image::ImageManifest::from_reader(&bytes[..]).map_err(|e| {
        ImageError::Shape(format!("its manifest is not an OCI image manifest: {e}"))
    })?;
    let limit = Limits::default().entry;
    let mut blobs = std::collections::BTreeMap::new();
    for desc in std::iter::once(manifest.config()).chain(manifest.layers()) {
        crate::image::verify_digest_form(desc)?;
        if desc.size() > limit {
            return Err(RegistryError::TooLarge {
                digest: desc.digest().to_string(),
                size: desc.size() as i64,
                limit,
            });
        }
        let digest = desc.digest().to_string();
        if blobs.contains_key(&digest) {
            continue;
        }
        let mut out = Vec::with_capacity(desc.size() as usize);
        client
            .pull_blob(reference, &oci_descriptor(desc), &mut out)
            .await
            .map_err(|e| explain(e, reference, "pull", &used, opts))?;
        blobs.insert(digest, out);
    }
    let image = Image::from_parts(bytes.to_vec(), reference.digest(), |d| {
        blobs
            .remove(d.digest().as_ref())
            .ok_or_else(|| ImageError::MissingBlob(d.digest().to_string()))
    })?;
    Ok(Image {
        ref_name: reference.tag().map(str::to_string),
        ..image
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_references_say_what_is_accepted() {
        for bad in ["Upper/Case:tag", "registry:5000/repo:bad tag", "", "repo:"] {
            let err = parse_reference(bad).unwrap_err().to_string();
            assert!(
                err.contains("is not a valid image reference: use REGISTRY/REPOSITORY:TAG"),
                "{err}"
            );
        }
        let r = parse_reference("127.0.0.1:5000/filters/header-filter:1.0.0").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "filters/header-filter");
        assert_eq!(r.tag(), Some("1.0.0"));
    }

    #[test]
    fn refusals_say_which_credentials_were_sent_and_from_where() {
        let config = Source::File {
            path: "/ci/.docker/config.json".into(),
            key: "r:5000".into(),
        };
        assert_eq!(
            auth_hint("r:5000", &Used::Anonymous),
            "log in with `docker login r:5000` or pass --username and --password-stdin"
        );
        assert_eq!(
            auth_hint(
                "r:5000",
                &Used::Basic {
                    username: "ci".into(),
                    source: config.clone()
                }
            ),
            "authentication failed for user \"ci\" from auths[\"r:5000\"] in /ci/.docker/config.json: \
             check the user name and password (or token) and its rights on the repository"
        );
        assert!(auth_hint("r:5000", &Used::IdentityToken { source: config })
            .starts_with("the access token got for the identity token from auths[\"r:5000\"] in /ci/.docker/config.json was refused"));
    }
}
