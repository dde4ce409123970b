//! Registry credentials where Docker and podman keep them, and the identity
//! token exchange Docker does with them.
//!
//! Lookup, for a registry host, stops at the first that has something:
//!
//! 1. Docker, as docker/cli does (`cli/config/configfile/file.go`,
//!    `cli/config/credentials/`): the `DOCKER_AUTH_CONFIG` variable's
//!    `auths[key]`; then `$DOCKER_CONFIG/config.json` (else
//!    `~/.docker/config.json`): the helper `credHelpers[key]`, else the
//!    helper `credsStore`, else `auths[key]` (exactly, else the first entry
//!    whose URL-form key names the host). A configured helper decides: when
//!    it has nothing for the host, Docker does not read `auths`. The key is
//!    the host (`127.0.0.1:5000`), or `https://index.docker.io/v1/` for
//!    Docker Hub.
//! 2. podman, as containers/image does (`pkg/docker/config/config.go`):
//!    `$REGISTRY_AUTH_FILE` alone when set, else
//!    `$XDG_RUNTIME_DIR/containers/auth.json` (or
//!    `/run/containers/UID/auth.json`) then
//!    `$XDG_CONFIG_HOME/containers/auth.json` (or
//!    `~/.config/containers/auth.json`); in each, `credHelpers[host]`, then
//!    `auths` keyed by `host/repository`, each shorter namespace, `host`,
//!    then URL-form keys.
//!
//! An identity token (a helper's `<token>` user, or `identitytoken` in a
//! file) is an OAuth2 refresh token: [`exchange_identity_token`] trades it at
//! the token endpoint the registry names for an access token, as Docker's
//! `registry/client/auth/session.go` does; the identity token itself is never
//! sent to the registry.
//!
//! This module reads files, runs helpers and talks to token endpoints; it
//! never talks to the registry itself and never writes a credential.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

/// Docker Hub's key in Docker's config (`registry.IndexServer`).
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The user a credential helper answers when its secret is an identity token.
const TOKEN_USERNAME: &str = "<token>";

/// What a helper prints (on stdout) when it has nothing for the server.
const NOT_FOUND: &str = "credentials not found in native keychain";

/// The `client_id` sent with the refresh-token grant.
pub const CLIENT_ID: &str = "extpack";

/// A user name and password, an identity token, or both: Docker's
/// `AuthConfig` as far as a registry client uses it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Login {
    pub username: String,
    pub password: String,
    /// An OAuth2 refresh token, exchanged for access tokens at the
    /// registry's token endpoint.
    pub identity_token: Option<String>,
}

impl Login {
    fn basic(username: &str, password: &str) -> Login {
        Login {
            username: username.to_string(),
            password: password.to_string(),
            identity_token: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.username.is_empty() && self.password.is_empty() && self.identity_token.is_none()
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where credentials came from, as said in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--username` and `--password-stdin`.
    Flags,
    /// The `DOCKER_AUTH_CONFIG` variable.
    DockerAuthConfig { key: String },
    /// An `auths` entry of a Docker config or podman auth file.
    File { path: PathBuf, key: String },
    /// A credential helper, and the file entry that chose it
    /// (`credHelpers["host"]` or `credsStore`).
    Helper {
        helper: String,
        chosen_by: String,
        path: PathBuf,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flags => write!(f, "--username and --password-stdin"),
            Source::DockerAuthConfig { key } => write!(f, "DOCKER_AUTH_CONFIG auths[{key:?}]"),
            Source::File { path, key } => write!(f, "auths[{key:?}] in {}", path.display()),
            Source::Helper {
                helper,
                chosen_by,
                path,
            } => write!(
                f,
                "credential helper docker-credential-{helper} ({chosen_by} in {})",
                path.display()
            ),
        }
    }
}

/// Credentials found for a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub login: Login,
    pub source: Source,
}

/// Credentials that exist but cannot be read: a file that is not JSON, a
/// helper that is missing or fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {reason}")]
pub struct LookupError {
    /// The file, variable or helper, in words.
    pub origin: String,
    pub reason: String,
}

/// The environment the lookup reads, taken apart so tests can give their own.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `DOCKER_CONFIG`.
    pub docker_config: Option<PathBuf>,
    /// `DOCKER_AUTH_CONFIG`.
    pub docker_auth_config: Option<String>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `REGISTRY_AUTH_FILE`.
    pub registry_auth_file: Option<PathBuf>,
    /// `XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// Where helpers are looked for; `None`: this process's `PATH`.
    pub path: Option<OsString>,
    /// For `/run/containers/UID/auth.json`.
    pub uid: Option<u32>,
}

impl Env {
    /// This process's environment. Empty variables count as unset, as in
    /// Go's `os.Getenv` tests.
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Env {
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            docker_auth_config: var("DOCKER_AUTH_CONFIG").map(|v| v.to_string_lossy().into_owned()),
            home: var("HOME").map(PathBuf::from),
            registry_auth_file: var("REGISTRY_AUTH_FILE").map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            path: None,
            uid: current_uid(),
        }
    }

    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn docker_config_file(&self) -> Option<PathBuf> {
        let dir = match (&self.docker_config, &self.home) {
            (Some(dir), _) => dir.clone(),
            (None, Some(home)) => home.join(".docker"),
            (None, None) => return None,
        };
        Some(dir.join("config.json"))
    }

    /// podman's auth files, in the order containers/image reads them
    /// (without the Docker files it reads after them: Docker's lookup has
    /// been done by then).
    pub fn podman_files(&self) -> Vec<PathBuf> {
        if let Some(file) = &self.registry_auth_file {
            return vec![file.clone()];
        }
        let mut files = Vec::new();
        match (&self.xdg_runtime_dir, self.uid) {
            // containers/image warns and skips a runtime dir that does not exist.
            (Some(dir), _) if dir.exists() => files.push(dir.join("containers/auth.json")),
            (Some(_), _) => {}
            (None, Some(uid)) => {
                files.push(PathBuf::from(format!("/run/containers/{uid}/auth.json")))
            }
            (None, None) => {}
        }
        let config_home = match (&self.xdg_config_home, &self.home) {
            (Some(dir), _) => Some(dir.clone()),
            (None, Some(home)) => Some(home.join(".config")),
            (None, None) => None,
        };
        files.extend(config_home.map(|d| d.join("containers/auth.json")));
        files
    }
}

/// The user this process runs as: the owner of `/proc/self`.
fn current_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").ok().map(|m| m.uid())
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The credentials for `registry` (a host, as in an image reference) and
/// `repository`, or `None` for anonymous access.
pub fn lookup(registry: &str, repository: &str, env: &Env) -> Result<Option<Found>, LookupError> {
    if let Some(found) = docker(registry, env)? {
        return Ok(Some(found));
    }
    podman(registry, repository, env)
}

/// The key Docker files a registry's credentials under
/// (`getAuthConfigKey`): the host, or Docker Hub's historical URL.
pub fn docker_key(registry: &str) -> String {
    if registry == "docker.io" || registry == "index.docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// The host an `auths` key names, for keys written as URLs by older `docker
/// login`s (`https://host:5000/v1/` → `host:5000`); other keys up to their
/// first `/` (docker/cli `ConvertToHostname`).
pub fn convert_to_hostname(key: &str) -> String {
    let Some((_, rest)) = key.split_once("://") else {
        return key.split('/').next().unwrap_or_default().to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host.strip_suffix(':').unwrap_or(host).to_string()
}

// ---------------------------------------------------------------------------
// Docker

/// What both Docker's `config.json` and podman's `auth.json` hold that
/// matters here. Unknown fields are ignored, as Go does.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: Option<BTreeMap<String, AuthEntry>>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

fn docker(registry: &str, env: &Env) -> Result<Option<Found>, LookupError> {
    let key = docker_key(registry);
    if let Some(found) = docker_auth_config(&key, env)? {
        return Ok(Some(found));
    }
    let Some(path) = env.docker_config_file() else {
        return Ok(None);
    };
    let Some(config) = read_config(&path)? else {
        return Ok(None);
    };
    let per_host = config
        .cred_helpers
        .as_ref()
        .and_then(|h| h.get(&key))
        .map(|helper| (helper.clone(), format!("credHelpers[{key:?}]")));
    let store = config
        .creds_store
        .clone()
        .filter(|s| !s.is_empty())
        .map(|helper| (helper, "credsStore".to_string()));
    if let Some((helper, chosen_by)) = per_host.or(store) {
        let source = Source::Helper {
            helper: helper.clone(),
            chosen_by,
            path,
        };
        return helper_lookup(&helper, &key, &source, env);
    }
    let auths = config.auths.unwrap_or_default();
    let entry = auths
        .get_key_value(&key)
        .or_else(|| auths.iter().find(|(k, _)| convert_to_hostname(k) == key));
    let Some((entry_key, entry)) = entry else {
        return Ok(None);
    };
    let source = Source::File {
        path,
        key: entry_key.clone(),
    };
    let login = docker_entry(entry).map_err(|reason| LookupError {
        origin: source.to_string(),
        reason,
    })?;
    Ok((!login.is_empty()).then_some(Found { login, source }))
}

/// `DOCKER_AUTH_CONFIG`: a JSON object of `auths` holding only `auth`
/// fields, read before the config file and matched by exact key.
fn docker_auth_config(key: &str, env: &Env) -> Result<Option<Found>, LookupError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct EnvConfig {
        #[serde(default)]
        auths: BTreeMap<String, EnvEntry>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct EnvEntry {
        #[serde(default)]
        auth: String,
    }
    let Some(text) = &env.docker_auth_config else {
        return Ok(None);
    };
    let bad = |reason: String| LookupError {
        origin: "DOCKER_AUTH_CONFIG".into(),
        reason,
    };
    let config: EnvConfig = serde_json::from_str(text).map_err(|e| {
        bad(format!(
            "not valid: {e} (it takes {{\"auths\":{{\"HOST\":{{\"auth\":\"BASE64(USER:PASSWORD)\"}}}}}})"
        ))
    })?;
    let Some(entry) = config.auths.get(key) else {
        return Ok(None);
    };
    if entry.auth.is_empty() {
        return Err(bad(format!("auths[{key:?}] has no `auth`")));
    }
    let (username, password) =
        decode_auth(&entry.auth).map_err(|reason| bad(format!("auths[{key:?}]: {reason}")))?;
    Ok(Some(Found {
        login: Login::basic(&username, &password),
        source: Source::DockerAuthConfig {
            key: key.to_string(),
        },
    }))
}

/// An `auths` entry as Docker reads it: `auth` (base64 of USER:PASSWORD)
/// replaces `username` and `password`; `identitytoken` goes along.
fn docker_entry(entry: &AuthEntry) -> Result<Login, String> {
    let (username, password) = match entry.auth.as_deref().filter(|a| !a.is_empty()) {
        Some(auth) => decode_auth(auth)?,
        None => (
            entry.username.clone().unwrap_or_default(),
            entry.password.clone().unwrap_or_default(),
        ),
    };
    Ok(Login {
        username,
        password,
        identity_token: entry.identitytoken.clone().filter(|t| !t.is_empty()),
    })
}

/// Docker's `decodeAuth`: base64 of `USER:PASSWORD`, with a user.
fn decode_auth(auth: &str) -> Result<(String, String), String> {
    let text = decode_base64(auth)?;
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() => {
            Ok((user.to_string(), password.trim_matches('\0').to_string()))
        }
        _ => Err("`auth` is not base64 of USER:PASSWORD".into()),
    }
}

fn decode_base64(text: &str) -> Result<String, String> {
    use base64::engine::{general_purpose, DecodePaddingMode, Engine as _, GeneralPurpose};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        general_purpose::PAD.with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = LENIENT
        .decode(text.trim())
        .map_err(|e| format!("`auth` is not base64 ({e})"))?;
    String::from_utf8(bytes).map_err(|_| "`auth` is not UTF-8 once decoded".to_string())
}

/// Reads a Docker config or podman auth file; `None` when it does not exist.
fn read_config(path: &Path) -> Result<Option<ConfigFile>, LookupError> {
    let bad = |reason: String| LookupError {
        origin: path.display().to_string(),
        reason,
    };
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(format!("cannot read it: {e}"))),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| bad(format!("not valid JSON: {e}")))
}

// ---------------------------------------------------------------------------
// Credential helpers

/// The answer of `docker-credential-NAME get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", alias = "username", default)]
    username: String,
    #[serde(rename = "Secret", alias = "secret", default)]
    secret: String,
}

fn helper_lookup(
    helper: &str,
    server: &str,
    source: &Source,
    env: &Env,
) -> Result<Option<Found>, LookupError> {
    let login = run_helper(helper, server, env).map_err(|reason| LookupError {
        origin: source.to_string(),
        reason,
    })?;
    Ok(login.filter(|l| !l.is_empty()).map(|login| Found {
        login,
        source: source.clone(),
    }))
}

/// Runs `docker-credential-HELPER get` with `server` on stdin, as Docker's
/// helper client does. "credentials not found" is `None`; a `<token>` user
/// means the secret is an identity token.
fn run_helper(helper: &str, server: &str, env: &Env) -> Result<Option<Login>, String> {
    let program = format!("docker-credential-{helper}");
    let mut command = Command::new(&program);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = &env.path {
        command.env("PATH", path);
    }
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{program} is not found on PATH"),
        _ => format!("cannot run {program}: {e}"),
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit before reading; its answer says what happened.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program} get: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.trim() == NOT_FOUND {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = first_line(&stdout)
            .or_else(|| first_line(&stderr))
            .unwrap_or("it printed nothing");
        return Err(format!("{program} get failed ({}): {said}", out.status));
    }
    let answer: HelperAnswer = serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "{program} get printed no credentials (a JSON object with Username and Secret): {e}"
        )
    })?;
    Ok(Some(if answer.username == TOKEN_USERNAME {
        Login {
            identity_token: Some(answer.secret).filter(|s| !s.is_empty()),
            ..Login::default()
        }
    } else {
        Login::basic(&answer.username, &answer.secret)
    }))
}

fn first_line(text: &str) -> Option<&str> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(match line.char_indices().nth(200) {
        Some((at, _)) => &line[..at],
        None => line,
    })
}

// ---------------------------------------------------------------------------
// podman

fn podman(registry: &str, repository: &str, env: &Env) -> Result<Option<Found>, LookupError> {
    let key = format!("{registry}/{repository}");
    for path in env.podman_files() {
        let Some(file) = read_config(&path)? else {
            continue;
        };
        if let Some(found) = podman_file(&file, &path, &key, registry, env)? {
            if !found.login.is_empty() {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// containers/image `findCredentialsInFile`: the file's helper for the
/// host, else the first `auths` key of [`podman_key_order`] present (even
/// if its entry is empty), else a URL-form key naming the host.
fn podman_file(
    file: &ConfigFile,
    path: &Path,
    key: &str,
    registry: &str,
    env: &Env,
) -> Result<Option<Found>, LookupError> {
    if let Some(helper) = file.cred_helpers.as_ref().and_then(|h| h.get(registry)) {
        let source = Source::Helper {
            helper: helper.clone(),
            chosen_by: format!("credHelpers[{registry:?}]"),
            path: path.to_path_buf(),
        };
        return helper_lookup(helper, registry, &source, env);
    }
    let Some(auths) = &file.auths else {
        return Ok(None);
    };
    let host = normalize_registry(registry);
    let entry = podman_key_order(key)
        .into_iter()
        .find_map(|k| auths.get_key_value(k))
        .or_else(|| {
            auths
                .iter()
                .find(|(k, _)| normalize_auth_file_key(k) == host)
        });
    let Some((entry_key, entry)) = entry else {
        return Ok(None);
    };
    let source = Source::File {
        path: path.to_path_buf(),
        key: entry_key.clone(),
    };
    let login = podman_entry(entry).map_err(|reason| LookupError {
        origin: source.to_string(),
        reason,
    })?;
    Ok(Some(Found { login, source }))
}

/// `host/a/b` → `host/a/b`, `host/a`, `host`.
pub fn podman_key_order(key: &str) -> Vec<&str> {
    let mut keys = vec![key];
    let mut rest = key;
    while let Some((shorter, _)) = rest.rsplit_once('/') {
        keys.push(shorter);
        rest = shorter;
    }
    keys
}

/// containers/image `decodeDockerAuth`: only `auth` (and `identitytoken`
/// beside it) counts; an `auth` without a `:` is an empty entry.
fn podman_entry(entry: &AuthEntry) -> Result<Login, String> {
    let text = decode_base64(entry.auth.as_deref().unwrap_or_default())?;
    let Some((user, password)) = text.split_once(':') else {
        return Ok(Login::default());
    };
    Ok(Login {
        username: user.to_string(),
        password: password.trim_matches('\0').to_string(),
        identity_token: entry.identitytoken.clone().filter(|t| !t.is_empty()),
    })
}

fn normalize_registry(registry: &str) -> &str {
    match registry {
        "registry-1.docker.io" | "docker.io" => "index.docker.io",
        other => other,
    }
}

fn normalize_auth_file_key(key: &str) -> String {
    let stripped = key
        .strip_prefix("http://")
        .or_else(|| key.strip_prefix("https://"));
    let host = match stripped {
        Some(rest) => rest.split('/').next().unwrap_or_default(),
        None => key,
    };
    normalize_registry(host).to_string()
}

// ---------------------------------------------------------------------------
// Identity tokens

/// What a registry's `401` asks for, from its `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm=...,service=...`: get a token at the realm.
    Bearer {
        realm: String,
        service: Option<String>,
    },
    /// Any other scheme (`Basic`): send the user and password.
    Other(String),
}

/// Parses a `WWW-Authenticate` header; a Bearer challenge wins over others
/// in the same header.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut other = None;
    for challenge in http_auth::ChallengeParser::new(header).flatten() {
        if challenge.scheme.eq_ignore_ascii_case("bearer") {
            let param = |name: &str| {
                challenge
                    .params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            if let Some(realm) = param("realm") {
                return Some(Challenge::Bearer {
                    realm,
                    service: param("service"),
                });
            }
        } else if other.is_none() {
            other = Some(Challenge::Other(challenge.scheme.to_string()));
        }
    }
    other
}

/// Why an identity token could not be exchanged.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("the token endpoint {realm} cannot be reached: {source}")]
    Http {
        realm: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the token endpoint {realm} refused the identity token ({status}{detail})")]
    Refused {
        realm: String,
        status: u16,
        /// `: error: description` from an OAuth2 error answer, or empty.
        detail: String,
    },
    #[error("the token endpoint {realm} answered the refresh_token grant without an access_token ({reason})")]
    NoAccessToken { realm: String, reason: String },
    #[error("the registry's token realm {0:?} is not an absolute http(s) URL")]
    BadRealm(String),
}

/// Trades an identity token for an access token at `realm`: a form-encoded
/// POST of `grant_type=refresh_token`, `refresh_token`, `service`, `scope`
/// and `client_id`, whose JSON answer holds `access_token` (docker
/// distribution's `fetchTokenWithOAuth`).
pub async fn exchange_identity_token(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    identity_token: &str,
) -> Result<String, ExchangeError> {
    let url = url::Url::parse(realm)
        .ok()
        .filter(|u| u.scheme() == "https" || u.scheme() == "http")
        .ok_or_else(|| ExchangeError::BadRealm(realm.to_string()))?;
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", identity_token)
        .append_pair("service", service.unwrap_or_default())
        .append_pair("scope", scope)
        .append_pair("client_id", CLIENT_ID);
    let http_error = |source| ExchangeError::Http {
        realm: realm.to_string(),
        source,
    };
    let answer = http
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form.finish())
        .send()
        .await
        .map_err(http_error)?;
    let status = answer.status();
    let body = answer.bytes().await.map_err(http_error)?;
    if !status.is_success() {
        return Err(ExchangeError::Refused {
            realm: realm.to_string(),
            status: status.as_u16(),
            detail: oauth_error(&body),
        });
    }
    #[derive(Deserialize)]
    struct TokenAnswer {
        #[serde(default)]
        access_token: String,
    }
    let no_token = |reason: String| ExchangeError::NoAccessToken {
        realm: realm.to_string(),
        reason,
    };
    let answer: TokenAnswer =
        serde_json::from_slice(&body).map_err(|e| no_token(format!("not JSON: {e}")))?;
    if answer.access_token.is_empty() {
        return Err(no_token("no access_token field".into()));
    }
    Ok(answer.access_token)
}

/// `: error: description` from an OAuth2 error answer (RFC 6749 5.2), so
/// that `invalid_grant` is named; empty for any other body.
fn oauth_error(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct OauthError {
        error: String,
        #[serde(default)]
        error_description: String,
    }
    match serde_json::from_slice::<OauthError>(body) {
        Ok(e) if e.error_description.is_empty() => format!(": {}", e.error),
        Ok(e) => format!(": {}: {}", e.error, e.error_description),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A scratch machine: HOME, DOCKER_CONFIG, runtime dir and a helpers
    /// folder on the helpers' PATH.
    struct Machine {
        dir: tempfile::TempDir,
    }

    impl Machine {
        fn new() -> Machine {
            let dir = tempfile::tempdir().unwrap();
            for sub in ["home/.config", "docker", "run", "bin"] {
                fs::create_dir_all(dir.path().join(sub)).unwrap();
            }
            Machine { dir }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn env(&self) -> Env {
            Env {
                docker_config: Some(self.path("docker")),
                home: Some(self.path("home")),
                xdg_runtime_dir: Some(self.path("run")),
                path: Some(
                    format!(
                        "{}:{}",
                        self.path("bin").display(),
                        std::env::var("PATH").unwrap_or_default()
                    )
                    .into(),
                ),
                uid: Some(0),
                ..Env::default()
            }
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.path(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }

        /// `docker-credential-NAME`: answers `answer` for `server`, "not
        /// found" otherwise.
        fn helper(&self, name: &str, server: &str, answer: &str) {
            use std::os::unix::fs::PermissionsExt;
            let path = self.write(
                &format!("bin/docker-credential-{name}"),
                &format!(
                    "#!/bin/sh\nserver=$(cat)\nif [ \"$server\" = '{server}' ]; then printf '%s' '{answer}'; exit 0; fi\n\
                     echo '{NOT_FOUND}'; exit 1\n"
                ),
            );
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    fn b64(text: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn user_of(found: Option<Found>) -> Option<String> {
        found.map(|f| f.login.username)
    }

    #[test]
    fn docker_keys_are_the_host_or_docker_hubs_url() {
        assert_eq!(docker_key("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(docker_key("index.docker.io"), DOCKER_HUB_KEY);
        assert_eq!(docker_key("registry-1.docker.io"), "registry-1.docker.io");
        assert_eq!(docker_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(docker_key("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn url_form_keys_convert_to_their_host() {
        for (key, host) in [
            ("https://index.docker.io/v1/", "index.docker.io"),
            ("https://127.0.0.1:5000/v1/", "127.0.0.1:5000"),
            ("http://registry.example.com", "registry.example.com"),
            (
                "https://registry.example.com:443/v2/",
                "registry.example.com:443",
            ),
            ("https://user@registry.example.com/", "registry.example.com"),
            ("https://[::1]:5000/v2/", "[::1]:5000"),
            ("registry.example.com/namespace", "registry.example.com"),
            ("registry.example.com", "registry.example.com"),
        ] {
            assert_eq!(convert_to_hostname(key), host, "{key}");
        }
        for (key, host) in [
            ("https://docker.io/v1/", "index.docker.io"),
            ("registry-1.docker.io", "index.docker.io"),
            ("http://quay.io/v1/", "quay.io"),
            // Without a scheme a key is a host as it stands.
            ("quay.io/ns", "quay.io/ns"),
        ] {
            assert_eq!(normalize_auth_file_key(key), host, "{key}");
        }
        assert_eq!(
            podman_key_order("quay.io/a/b/c"),
            ["quay.io/a/b/c", "quay.io/a/b", "quay.io/a", "quay.io"]
        );
    }

    #[test]
    fn docker_reads_cred_helpers_then_creds_store_then_auths() {
        let m = Machine::new();
        let host = "127.0.0.1:5000";
        m.helper(
            "per",
            host,
            r#"{"ServerURL":"127.0.0.1:5000","Username":"per-user","Secret":"p"}"#,
        );
        m.helper(
            "store",
            host,
            r#"{"ServerURL":"127.0.0.1:5000","Username":"store-user","Secret":"s"}"#,
        );
        let auths = format!(r#"{{"{host}":{{"auth":"{}"}}}}"#, b64("auths-user:a"));
        let env = m.env();
        let config = m.path("docker/config.json");
        for (json, user, source) in [
            (
                format!(
                    r#"{{"credHelpers":{{"{host}":"per"}},"credsStore":"store","auths":{auths}}}"#
                ),
                Some("per-user"),
                format!(
                    "credential helper docker-credential-per (credHelpers[\"{host}\"] in {})",
                    config.display()
                ),
            ),
            (
                format!(
                    r#"{{"credHelpers":{{"other:5000":"per"}},"credsStore":"store","auths":{auths}}}"#
                ),
                Some("store-user"),
                format!(
                    "credential helper docker-credential-store (credsStore in {})",
                    config.display()
                ),
            ),
            (
                format!(r#"{{"credsStore":"","auths":{auths}}}"#),
                Some("auths-user"),
                format!("auths[\"{host}\"] in {}", config.display()),
            ),
        ] {
            m.write("docker/config.json", &json);
            let found = lookup(host, "x", &env).unwrap().unwrap();
            assert_eq!(Some(found.login.username.as_str()), user, "{json}");
            assert_eq!(found.source.to_string(), source);
        }
        // A helper that has nothing: anonymous, auths unread.
        m.write(
            "docker/config.json",
            &format!(r#"{{"credHelpers":{{"{host}":"store"}},"auths":{auths}}}"#),
        );
        assert_eq!(lookup("127.0.0.1:5001", "x", &env).unwrap(), None);
        m.write(
            "docker/config.json",
            &format!(
                r#"{{"credsStore":"store","auths":{{"127.0.0.1:5001":{{"auth":"{}"}}}}}}"#,
                b64("u:p")
            ),
        );
        assert_eq!(lookup("127.0.0.1:5001", "x", &env).unwrap(), None);
    }

    #[test]
    fn docker_auths_forms() {
        let m = Machine::new();
        let env = m.env();
        let host = "127.0.0.1:5000";
        let cases = [
            // auth wins over username/password.
            (
                format!(
                    r#"{{"{host}":{{"auth":"{}","username":"other","password":"x"}}}}"#,
                    b64("alice:s3cret:with:colons")
                ),
                Login::basic("alice", "s3cret:with:colons"),
            ),
            (
                format!(r#"{{"{host}":{{"username":"bob","password":"pw"}}}}"#),
                Login::basic("bob", "pw"),
            ),
            (
                format!(
                    r#"{{"{host}":{{"auth":"{}","identitytoken":"idt"}}}}"#,
                    b64("00000000-0000-0000-0000-000000000000:")
                ),
                Login {
                    username: "00000000-0000-0000-0000-000000000000".into(),
                    password: String::new(),
                    identity_token: Some("idt".into()),
                },
            ),
            (
                format!(r#"{{"{host}":{{"identitytoken":"idt"}}}}"#),
                Login {
                    identity_token: Some("idt".into()),
                    ..Login::default()
                },
            ),
            // Padding left off still decodes.
            (
                format!(
                    r#"{{"https://{host}/v1/":{{"auth":"{}"}}}}"#,
                    b64("carol:pw").trim_end_matches('=')
                ),
                Login::basic("carol", "pw"),
            ),
        ];
        for (auths, login) in cases {
            m.write("docker/config.json", &format!(r#"{{"auths":{auths}}}"#));
            let found = lookup(host, "x", &env).unwrap();
            assert_eq!(found.map(|f| f.login), Some(login), "{auths}");
        }
        // An exact key wins over a URL form of it.
        m.write(
            "docker/config.json",
            &format!(
                r#"{{"auths":{{"http://{host}":{{"auth":"{}"}},"{host}":{{"auth":"{}"}}}}}}"#,
                b64("url:p"),
                b64("exact:p")
            ),
        );
        assert_eq!(
            user_of(lookup(host, "x", &env).unwrap()).as_deref(),
            Some("exact")
        );
        // Docker Hub is filed under its URL; "docker.io" is not that key.
        m.write(
            "docker/config.json",
            &format!(
                r#"{{"auths":{{"docker.io":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
                b64("wrong:p"),
                b64("hub:p")
            ),
        );
        assert_eq!(
            user_of(lookup("docker.io", "library/x", &env).unwrap()).as_deref(),
            Some("hub")
        );
        // Empty entries (what docker login leaves beside a helper) are nothing.
        m.write(
            "docker/config.json",
            &format!(r#"{{"auths":{{"{host}":{{}}}}}}"#),
        );
        assert_eq!(lookup(host, "x", &env).unwrap(), None);
    }

    #[test]
    fn docker_auth_config_variable_comes_first_and_is_strict() {
        let m = Machine::new();
        let host = "127.0.0.1:5000";
        m.write(
            "docker/config.json",
            &format!(r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#, b64("file:p")),
        );
        let mut env = m.env();
        env.docker_auth_config = Some(format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
            b64("variable:p")
        ));
        let found = lookup(host, "x", &env).unwrap().unwrap();
        assert_eq!(found.login.username, "variable");
        assert_eq!(
            found.source.to_string(),
            format!("DOCKER_AUTH_CONFIG auths[\"{host}\"]")
        );
        assert_eq!(user_of(lookup("127.0.0.1:5001", "x", &env).unwrap()), None);
        env.docker_auth_config = Some(format!(r#"{{"auths":{{"{host}":{{"username":"u"}}}}}}"#));
        let err = lookup(host, "x", &env).unwrap_err();
        assert_eq!(err.origin, "DOCKER_AUTH_CONFIG");
        assert!(err.reason.contains("unknown field `username`"), "{err}");
    }

    #[test]
    fn helpers_answers() {
        let m = Machine::new();
        let env = m.env();
        let host = "127.0.0.1:5000";
        m.helper(
            "tok",
            host,
            r#"{"ServerURL":"127.0.0.1:5000","Username":"<token>","Secret":"refresh-me"}"#,
        );
        m.write("docker/config.json", r#"{"credsStore":"tok"}"#);
        let found = lookup(host, "x", &env).unwrap().unwrap();
        assert_eq!(found.login.identity_token.as_deref(), Some("refresh-me"));
        assert_eq!(found.login.username, "");
        // Docker Hub's helper is asked for its URL key.
        m.helper(
            "hub",
            DOCKER_HUB_KEY,
            r#"{"ServerURL":"x","Username":"hub-user","Secret":"s"}"#,
        );
        m.write("docker/config.json", r#"{"credsStore":"hub"}"#);
        assert_eq!(
            user_of(lookup("docker.io", "library/x", &env).unwrap()).as_deref(),
            Some("hub-user")
        );

        let config = m.path("docker/config.json").display().to_string();
        m.write("docker/config.json", r#"{"credsStore":"absent"}"#);
        let err = lookup(host, "x", &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("credential helper docker-credential-absent (credsStore in {config}): docker-credential-absent is not found on PATH")
        );
        m.write(
            "bin/docker-credential-broken",
            "#!/bin/sh\necho 'error getting credentials - err: exit status 1, out: `GDBus.Error`' >&2\nexit 3\n",
        );
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(
                m.path("bin/docker-credential-broken"),
                fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        m.write("docker/config.json", r#"{"credsStore":"broken"}"#);
        let err = lookup(host, "x", &env).unwrap_err();
        assert!(err.reason.contains("exit status: 3"), "{err}");
        assert!(err.reason.contains("GDBus.Error"), "{err}");
        m.helper("garbled", host, "not json");
        m.write("docker/config.json", r#"{"credsStore":"garbled"}"#);
        let err = lookup(host, "x", &env).unwrap_err();
        assert!(err.reason.contains("printed no credentials"), "{err}");
    }

    #[test]
    fn unreadable_files_are_named() {
        let m = Machine::new();
        let env = m.env();
        let config = m.write("docker/config.json", "{\"auths\": {");
        let err = lookup("h:1", "x", &env).unwrap_err();
        assert_eq!(err.origin, config.display().to_string());
        assert!(err.reason.starts_with("not valid JSON"), "{err}");
        m.write(
            "docker/config.json",
            &format!(r#"{{"auths":{{"h:1":{{"auth":"{}"}}}}}}"#, b64("no-colon")),
        );
        let err = lookup("h:1", "x", &env).unwrap_err();
        assert!(err.origin.starts_with("auths[\"h:1\"] in "), "{err}");
        assert_eq!(err.reason, "`auth` is not base64 of USER:PASSWORD");
    }

    #[test]
    fn podman_files_follow_docker_in_containers_image_order() {
        let m = Machine::new();
        let mut env = m.env();
        env.xdg_config_home = None;
        let host = "quay.example:5000";
        let entry = |user: &str| format!(r#"{{"auth":"{}"}}"#, b64(&format!("{user}:p")));
        let runtime = m.write(
            "run/containers/auth.json",
            &format!(
                r#"{{"auths":{{"{host}/ns":{},"{host}":{}}}}}"#,
                entry("ns-user"),
                entry("runtime-user")
            ),
        );
        m.write(
            "home/.config/containers/auth.json",
            &format!(r#"{{"auths":{{"{host}":{}}}}}"#, entry("config-user")),
        );
        assert_eq!(
            user_of(lookup(host, "ns/app", &env).unwrap()).as_deref(),
            Some("ns-user")
        );
        let found = lookup(host, "other/app", &env).unwrap().unwrap();
        assert_eq!(found.login.username, "runtime-user");
        assert_eq!(
            found.source.to_string(),
            format!("auths[\"{host}\"] in {}", runtime.display())
        );
        // Docker first.
        m.write(
            "docker/config.json",
            &format!(r#"{{"auths":{{"{host}":{}}}}}"#, entry("docker-user")),
        );
        assert_eq!(
            user_of(lookup(host, "ns/app", &env).unwrap()).as_deref(),
            Some("docker-user")
        );
        fs::remove_file(m.path("docker/config.json")).unwrap();
        // An empty entry in the runtime file: the next file.
        m.write(
            "run/containers/auth.json",
            &format!(r#"{{"auths":{{"{host}":{{}}}}}}"#),
        );
        assert_eq!(
            user_of(lookup(host, "ns/app", &env).unwrap()).as_deref(),
            Some("config-user")
        );
        // XDG_CONFIG_HOME replaces ~/.config.
        env.xdg_config_home = Some(m.path("xdg"));
        assert_eq!(lookup(host, "ns/app", &env).unwrap(), None);
        m.write(
            "xdg/containers/auth.json",
            &format!(
                r#"{{"auths":{{"https://{host}/v1/":{}}}}}"#,
                entry("xdg-user")
            ),
        );
        assert_eq!(
            user_of(lookup(host, "ns/app", &env).unwrap()).as_deref(),
            Some("xdg-user")
        );
        // REGISTRY_AUTH_FILE alone.
        let file = m.write("auth.json", r#"{"auths":{}}"#);
        env.registry_auth_file = Some(file.clone());
        assert_eq!(lookup(host, "ns/app", &env).unwrap(), None);
        m.helper(
            "podhelper",
            host,
            r#"{"ServerURL":"x","Username":"helper-user","Secret":"s"}"#,
        );
        m.write(
            "auth.json",
            &format!(
                r#"{{"credHelpers":{{"{host}":"podhelper"}},"auths":{{"{host}":{}}}}}"#,
                entry("file-user")
            ),
        );
        let found = lookup(host, "ns/app", &env).unwrap().unwrap();
        assert_eq!(found.login.username, "helper-user");
        assert_eq!(
            found.source.to_string(),
            format!(
                "credential helper docker-credential-podhelper (credHelpers[\"{host}\"] in {})",
                file.display()
            )
        );
        // A runtime dir that does not exist is skipped; without one, /run/containers/UID.
        env.registry_auth_file = None;
        env.xdg_runtime_dir = Some(m.path("missing"));
        assert_eq!(env.podman_files(), [m.path("xdg/containers/auth.json")]);
        env.xdg_runtime_dir = None;
        env.uid = Some(1000);
        assert_eq!(
            env.podman_files(),
            [
                PathBuf::from("/run/containers/1000/auth.json"),
                m.path("xdg/containers/auth.json")
            ]
        );
    }

    #[test]
    fn podman_reads_only_auth_and_identitytoken() {
        let m = Machine::new();
        let env = Env {
            registry_auth_file: Some(m.path("auth.json")),
            ..Env::default()
        };
        let host = "r.example";
        m.write(
            "auth.json",
            &format!(r#"{{"auths":{{"{host}":{{"username":"u","password":"p"}}}}}}"#),
        );
        assert_eq!(lookup(host, "x", &env).unwrap(), None);
        m.write(
            "auth.json",
            &format!(
                r#"{{"auths":{{"{host}":{{"auth":"{}","identitytoken":"t"}}}}}}"#,
                b64("u:")
            ),
        );
        let login = lookup(host, "x", &env).unwrap().unwrap().login;
        assert_eq!(login.identity_token.as_deref(), Some("t"));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: Some("reg".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x", Bearer realm="https://auth.example/token""#),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: None
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="registry""#),
            Some(Challenge::Other("Basic".into()))
        );
        assert_eq!(parse_challenge(""), None);
        assert_eq!(
            oauth_error(br#"{"error":"invalid_grant"}"#),
            ": invalid_grant"
        );
        assert_eq!(oauth_error(b"<html>"), "");
    }

    #[test]
    fn logins_do_not_print_secrets() {
        let login = Login {
            username: "u".into(),
            password: "hunter2".into(),
            identity_token: Some("refresh".into()),
        };
        let text = format!("{login:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("refresh"),
            "{text}"
        );
    }
}
