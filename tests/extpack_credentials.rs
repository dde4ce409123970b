//! Registry credentials as Docker, podman and CI leave them, through the real
//! `extpack` binary against Debian's `docker-registry` with token auth.
//!
//! The registry trusts only JWTs from a small token server in this file (on
//! 127.0.0.1, port 0). It issues them for HTTP basic credentials (GET, as
//! Docker's clients ask) and for the OAuth2 `refresh_token` grant (POST, how
//! Docker, crane and oras exchange an identity token), and it records every
//! request, so each test can tell which credentials extpack used. Credential
//! helpers are shell scripts on a PATH given to extpack alone. Nothing of the
//! machine's own logins is read: every run gets its own HOME, DOCKER_CONFIG,
//! XDG_RUNTIME_DIR and XDG_CONFIG_HOME.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::extpack::{extpack_with, proxy_module, Run, FIELDS};
use e2e::registry::{base64_std, Registry, TokenAuth, TokenSigner};
use serde_json::{json, Value};
use tempfile::TempDir;

const SERVICE: &str = "extpack-test-registry";
const ISSUER: &str = "extpack-test-token-server";
/// What `az acr login` writes as the user of an identity token.
const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";

// ---------------------------------------------------------------------------
// The token server

/// One request the token server was sent.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Query parameters (GET) or form fields (POST), in order.
    params: Vec<(String, String)>,
    /// The user of a `Basic` Authorization header.
    basic_user: Option<String>,
}

impl Seen {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Accounts {
    /// user → password, for basic auth.
    users: BTreeMap<String, String>,
    /// Refresh (identity) tokens the server accepts.
    refresh_tokens: Vec<String>,
}

/// A token server in the manner of Docker Hub's or ACR's: GET with basic
/// auth, POST with `grant_type=refresh_token`; both answer a JWT granting
/// the scope asked for. Wrong credentials get 401.
struct TokenServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    issued: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    fn start(signer: Arc<TokenSigner>, users: &[(&str, &str)], refresh_tokens: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accounts = Arc::new(Accounts {
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            refresh_tokens: refresh_tokens.iter().map(|t| t.to_string()).collect(),
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let issued = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, issued, stop) = (seen.clone(), issued.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (signer, accounts) = (signer.clone(), accounts.clone());
                    let (seen, issued) = (seen.clone(), issued.clone());
                    std::thread::spawn(move || {
                        serve_token(stream, &signer, &accounts, &seen, &issued)
                    });
                }
            })
        };
        TokenServer {
            addr,
            seen,
            issued,
            stop,
            thread: Some(thread),
        }
    }

    fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The requests seen since the last call, which forgets them.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request read off the wire: method, path, query or form, headers.
struct Request {
    method: String,
    path: String,
    params: Vec<(String, String)>,
    authorization: Option<String>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut length = 0usize;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let encoded = if method == "POST" {
        String::from_utf8_lossy(&body).into_owned()
    } else {
        query.to_string()
    };
    Some(Request {
        method,
        path: path.to_string(),
        params: form_decode(&encoded),
        authorization,
    })
}

fn form_decode(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn basic_user_password(authorization: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let encoded = authorization.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn serve_token(
    mut stream: TcpStream,
    signer: &TokenSigner,
    accounts: &Accounts,
    seen: &Mutex<Vec<Seen>>,
    issued: &Mutex<Vec<String>>,
) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    let basic = request
        .authorization
        .as_deref()
        .and_then(basic_user_password);
    seen.lock().unwrap().push(Seen {
        method: request.method.clone(),
        params: request.params.clone(),
        basic_user: basic.as_ref().map(|(u, _)| u.clone()),
    });
    let scopes: Vec<&str> = request
        .params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|s| !s.is_empty())
        .collect();
    let grant = request
        .params
        .iter()
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.as_str());
    let subject = match (request.method.as_str(), request.path.as_str(), grant) {
        ("GET", "/token", _) => basic
            .filter(|(u, p)| accounts.users.get(u) == Some(p))
            .map(|(u, _)| u),
        ("POST", "/token", Some("refresh_token")) => request
            .params
            .iter()
            .find(|(k, _)| k == "refresh_token")
            .filter(|(_, t)| accounts.refresh_tokens.contains(t))
            .map(|_| "identity".to_string()),
        _ => None,
    };
    let (status, body) = match subject {
        Some(subject) => {
            let token = signer.sign(&claims(&subject, &scopes));
            issued.lock().unwrap().push(token.clone());
            let body = if request.method == "POST" {
                // An OAuth2 token response: no `token` field.
                json!({"access_token": token, "expires_in": 300, "scope": scopes.join(" ")})
            } else {
                json!({"token": token, "access_token": token, "expires_in": 300})
            };
            ("200 OK", body)
        }
        None => (
            "401 Unauthorized",
            json!({"error": "invalid_grant", "error_description": "the credentials are not valid"}),
        ),
    };
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

static JTI: AtomicU64 = AtomicU64::new(0);

/// Distribution's token claims, granting every scope asked for
/// (`repository:NAME:pull,push`).
fn claims(subject: &str, scopes: &[&str]) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let access: Vec<Value> = scopes
        .iter()
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("jti-{}", JTI.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    })
}

// ---------------------------------------------------------------------------
// A relay that keeps what clients send the registry

/// The bytes clients sent on one connection, appended as they pass.
type Sent = Arc<Mutex<Vec<u8>>>;

/// A TCP relay in front of the registry that keeps every byte clients send
/// through it, to show what the registry was (and was not) sent.
struct Recorder {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<Sent>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    fn start(upstream: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections: Arc<Mutex<Vec<Sent>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connections, stop) = (connections.clone(), stop.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(upstream) else {
                        continue;
                    };
                    let sent = Arc::new(Mutex::new(Vec::new()));
                    connections.lock().unwrap().push(sent.clone());
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    std::thread::spawn(move || relay(client, server, Some(sent)));
                    std::thread::spawn(move || relay(s2, c2, None));
                }
            })
        };
        Recorder {
            addr,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Everything clients sent, one connection after another.
    fn sent(&self) -> String {
        let connections = self.connections.lock().unwrap();
        connections
            .iter()
            .map(|c| String::from_utf8_lossy(&c.lock().unwrap()).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, keep: Option<Sent>) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(keep) = &keep {
                    keep.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// The registry, the token server and a machine's credential files

/// A token-auth registry and its token server.
struct Setup {
    tokens: TokenServer,
    registry: Registry,
}

impl Setup {
    fn new(users: &[(&str, &str)], refresh_tokens: &[&str]) -> Setup {
        let signer = Arc::new(TokenSigner::generate());
        let tokens = TokenServer::start(signer.clone(), users, refresh_tokens);
        let registry = Registry::start_with_token_auth(&TokenAuth {
            realm: tokens.realm(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            signer: &signer,
        });
        Setup { tokens, registry }
    }

    /// The users the token server issued tokens to by basic auth since the
    /// last call, without repeats; forgets them.
    fn basic_users(&self) -> Vec<String> {
        let mut users: Vec<String> = self
            .tokens
            .take()
            .into_iter()
            .filter_map(|s| s.basic_user)
            .collect();
        users.dedup();
        users
    }
}

/// A home folder, Docker config folder, runtime folder and a folder of
/// credential helpers: the only places extpack's runs may read credentials
/// from.
struct Machine {
    dir: TempDir,
    layout: PathBuf,
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["home/.config", "docker", "bin", "run", "out"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let module = dir.path().join("filter.wasm");
        fs::write(&module, proxy_module()).unwrap();
        let layout = dir.path().join("image");
        let m = Machine { dir, layout };
        let args = [
            "build",
            module.to_str().unwrap(),
            "--version",
            "1.0.0",
            "--output",
            m.layout.to_str().unwrap(),
        ];
        m.run(&[&args[..], &FIELDS].concat(), &[]).ok();
        m
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn bin(&self) -> PathBuf {
        self.path("bin")
    }

    /// `$DOCKER_CONFIG/config.json`.
    fn docker_config(&self) -> PathBuf {
        self.path("docker/config.json")
    }

    fn write_docker_config(&self, config: &Value) {
        fs::write(self.docker_config(), config.to_string()).unwrap();
    }

    fn write(&self, rel: &str, config: &Value) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, config.to_string()).unwrap();
        path
    }

    /// `extpack ARGS` with this machine's HOME, DOCKER_CONFIG,
    /// XDG_RUNTIME_DIR, XDG_CONFIG_HOME, no REGISTRY_AUTH_FILE or
    /// DOCKER_AUTH_CONFIG, and the helpers first on PATH; `env` overrides.
    fn run(&self, args: &[&str], env: &[(&str, &Path)]) -> Run {
        let path = format!(
            "{}:{}",
            self.bin().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let (home, docker, run, config) = (
            self.path("home"),
            self.path("docker"),
            self.path("run"),
            self.path("home/.config"),
        );
        let mut all: Vec<(&str, &Path)> = vec![
            ("HOME", &home),
            ("DOCKER_CONFIG", &docker),
            ("XDG_RUNTIME_DIR", &run),
            ("XDG_CONFIG_HOME", &config),
            ("REGISTRY_AUTH_FILE", Path::new("")),
            ("DOCKER_AUTH_CONFIG", Path::new("")),
            ("PATH", Path::new(&path)),
        ];
        all.extend_from_slice(env);
        extpack_with(args, None, &all)
    }

    fn push(&self, reference: &str, env: &[(&str, &Path)]) -> Run {
        let layout = self.layout.to_str().unwrap();
        self.run(&["push", layout, "--tag", reference, "--plain-http"], env)
    }

    /// `extract` into a new file; returns the run and the file.
    fn pull(&self, reference: &str, env: &[(&str, &Path)]) -> (Run, PathBuf) {
        static N: AtomicU64 = AtomicU64::new(0);
        let out = self.path(&format!("out/{}.wasm", N.fetch_add(1, Ordering::SeqCst)));
        let run = self.run(
            &[
                "extract",
                reference,
                "--plain-http",
                "-o",
                out.to_str().unwrap(),
            ],
            env,
        );
        (run, out)
    }

    /// Pushes and pulls back `reference`, both of which must work.
    fn round_trip(&self, reference: &str, env: &[(&str, &Path)]) {
        self.push(reference, env).ok();
        let (run, out) = self.pull(reference, env);
        run.ok();
        assert_eq!(fs::read(out).unwrap(), proxy_module(), "{reference}");
    }

    /// Writes `docker-credential-NAME` into the helpers' folder. `get`
    /// appends the server URL it is given on stdin to `bin/NAME.log` and
    /// prints `answer` when that URL is `server`; for any other it says
    /// "credentials not found in native keychain" and exits 1, as helpers
    /// do.
    fn helper(&self, name: &str, server: &str, answer: &Value) {
        self.helper_script(
            name,
            &format!(
                "if [ \"$server\" = '{server}' ]; then\n  printf '%s\\n' '{answer}'\n  exit 0\nfi\n\
                 echo 'credentials not found in native keychain'\nexit 1\n"
            ),
        );
    }

    fn helper_script(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let log = self.bin().join(format!("{name}.log"));
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = get ] || {{ echo \"unexpected action $1\"; exit 1; }}\n\
             server=$(cat)\nprintf '%s\\n' \"$server\" >> '{}'\n{body}",
            log.display()
        );
        let path = self.bin().join(format!("docker-credential-{name}"));
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The server URLs helper NAME was asked about.
    fn helper_log(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.bin().join(format!("{name}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn auth(user: &str, password: &str) -> Value {
    json!({"auth": base64_std(format!("{user}:{password}").as_bytes())})
}

fn helper_answer(server: &str, user: &str, secret: &str) -> Value {
    json!({"ServerURL": server, "Username": user, "Secret": secret})
}

// ---------------------------------------------------------------------------
// The tests

/// Docker's order: `credHelpers[host]`, else `credsStore`, else `auths`;
/// a helper that has nothing for the host means anonymous (Docker does not
/// go on to `auths` then).
#[test]
fn cred_helpers_beat_creds_store_beat_auths() {
    let users = [
        ("helper-user", "helper-pass"),
        ("store-user", "store-pass"),
        ("auths-user", "auths-pass"),
        ("variable-user", "variable-pass"),
    ];
    let s = Setup::new(&users, &[]);
    let m = Machine::new();
    let host = s.registry.host();
    m.helper(
        "perhost",
        &host,
        &helper_answer(&host, "helper-user", "helper-pass"),
    );
    m.helper(
        "store",
        &host,
        &helper_answer(&host, "store-user", "store-pass"),
    );
    let auths = json!({ &host: auth("auths-user", "auths-pass") });
    let cases = [
        (
            "credHelpers, credsStore and auths",
            json!({"credHelpers": {&host: "perhost"}, "credsStore": "store", "auths": auths}),
            "helper-user",
        ),
        (
            "credHelpers for another registry, credsStore and auths",
            json!({"credHelpers": {"registry.example.com": "perhost"}, "credsStore": "store", "auths": auths}),
            "store-user",
        ),
        ("auths alone", json!({"auths": auths}), "auths-user"),
        (
            "auths keyed by URL (older docker login)",
            json!({"auths": {format!("https://{host}/v1/"): auth("auths-user", "auths-pass")}}),
            "auths-user",
        ),
    ];
    for (i, (case, config, user)) in cases.iter().enumerate() {
        m.write_docker_config(config);
        s.tokens.take();
        m.round_trip(&format!("{host}/filters/order-{i}:1.0.0"), &[]);
        assert_eq!(s.basic_users(), [*user], "{case}");
    }
    // DOCKER_AUTH_CONFIG comes before the file and its helpers.
    let variable = json!({"auths": {&host: auth("variable-user", "variable-pass")}}).to_string();
    m.write_docker_config(&cases[0].1);
    m.round_trip(
        &format!("{host}/filters/order-variable:1.0.0"),
        &[("DOCKER_AUTH_CONFIG", Path::new(&variable))],
    );
    assert_eq!(s.basic_users(), ["variable-user"], "DOCKER_AUTH_CONFIG");

    // A helper is given the registry's host on stdin, as Docker gives it.
    assert_eq!(
        m.helper_log("perhost"),
        [host.as_str(); 2],
        "perhost asked for"
    );
    assert!(
        m.helper_log("store").iter().all(|h| h == &host),
        "store asked for {:?}",
        m.helper_log("store")
    );

    // credsStore answers "not found": anonymous, auths are not read.
    m.helper(
        "empty",
        "registry.example.com",
        &helper_answer("registry.example.com", "x", "y"),
    );
    m.write_docker_config(&json!({"credsStore": "empty", "auths": auths}));
    s.tokens.take();
    m.push(&format!("{host}/filters/anonymous:1.0.0"), &[])
        .exits(
            4,
            "helper without credentials",
            &[&format!("registry {host} refused access"), "docker login"],
        );
    assert_eq!(m.helper_log("empty"), [host.as_str()]);
    assert!(s.basic_users().is_empty(), "no credentials were sent");
}

/// An identity token (what `az acr login` and `docker login` to an OAuth2
/// registry leave) is exchanged at the token endpoint with the
/// `refresh_token` grant; the registry only ever sees the access token.
#[test]
fn identity_tokens_are_exchanged_through_the_refresh_token_grant() {
    const IDENTITY: &str = "identity-token-3f9a1c7e5b2d";
    let s = Setup::new(&[], &[IDENTITY]);
    let recorder = Recorder::start(s.registry.addr());
    let host = recorder.host();
    let m = Machine::new();
    m.helper("acr", &host, &helper_answer(&host, "<token>", IDENTITY));
    let cases = [
        (
            "auths with identitytoken (az acr login without a helper)",
            json!({"auths": {&host: {"auth": base64_std(format!("{ACR_USER}:").as_bytes()), "identitytoken": IDENTITY}}}),
        ),
        (
            "a credsStore helper answering Username <token>",
            json!({"credsStore": "acr", "auths": {&host: {}}}),
        ),
    ];
    for (i, (case, config)) in cases.iter().enumerate() {
        m.write_docker_config(config);
        s.tokens.take();
        let repository = format!("filters/identity-{i}");
        m.round_trip(&format!("{host}/{repository}:1.0.0"), &[]);
        let seen = s.tokens.take();
        assert!(
            seen.iter().all(|r| r.basic_user.is_none()),
            "{case}: basic auth was sent: {seen:?}"
        );
        let grants: Vec<&Seen> = seen.iter().filter(|r| r.method == "POST").collect();
        for (scope, what) in [
            (format!("repository:{repository}:pull,push"), "push"),
            (format!("repository:{repository}:pull"), "pull"),
        ] {
            let grant = grants
                .iter()
                .find(|g| g.param("scope") == Some(scope.as_str()))
                .unwrap_or_else(|| {
                    panic!("{case}: no grant for the {what} scope {scope}: {seen:?}")
                });
            assert_eq!(grant.param("grant_type"), Some("refresh_token"), "{case}");
            assert_eq!(grant.param("refresh_token"), Some(IDENTITY), "{case}");
            assert_eq!(grant.param("service"), Some(SERVICE), "{case}");
            assert_eq!(grant.param("client_id"), Some("extpack"), "{case}");
        }
    }
    let sent = recorder.sent();
    assert!(
        !sent.contains(IDENTITY),
        "the registry was sent the identity token"
    );
    let bearers = s
        .tokens
        .issued()
        .iter()
        .filter(|t| sent.contains(&format!("Bearer {t}")))
        .count();
    assert!(bearers >= 2, "the registry saw {bearers} issued tokens");

    // A stale identity token: the token endpoint refuses it.
    m.write_docker_config(&json!({"auths": {&host: {"identitytoken": "revoked-token"}}}));
    let config = m.docker_config().display().to_string();
    let source = format!("auths[\"{host}\"] in {config}");
    let wants = [
        format!("registry {host}"),
        "identity token".to_string(),
        source,
        "401".to_string(),
    ];
    let wants: Vec<&str> = wants.iter().map(String::as_str).collect();
    m.push(&format!("{host}/filters/identity-0:2.0.0"), &[])
        .exits(4, "push with a revoked identity token", &wants);
    m.pull(&format!("{host}/filters/identity-0:1.0.0"), &[])
        .0
        .exits(4, "pull with a revoked identity token", &wants);
    assert!(!recorder.sent().contains("revoked-token"));

    // A token endpoint that does not answer: unreachable (6), named.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let realm = format!("http://{}/token", closed.local_addr().unwrap());
    drop(closed);
    let signer = TokenSigner::generate();
    let registry = Registry::start_with_token_auth(&TokenAuth {
        realm: realm.clone(),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        signer: &signer,
    });
    let host = registry.host();
    m.write_docker_config(&json!({"auths": {&host: {"identitytoken": IDENTITY}}}));
    m.push(&format!("{host}/filters/identity:1.0.0"), &[])
        .exits(
            6,
            "token endpoint down",
            &[
                &format!("cannot reach registry {host}: its token endpoint {realm}"),
                "connection refused",
            ],
        );
}

/// podman's auth files are read only when Docker's lookup has nothing:
/// `$REGISTRY_AUTH_FILE` alone when set, else
/// `$XDG_RUNTIME_DIR/containers/auth.json` then
/// `$XDG_CONFIG_HOME/containers/auth.json`; keys may name a namespace
/// (`host/filters`), matched from the longest.
#[test]
fn podman_auth_files_are_read_when_docker_has_nothing() {
    let users = [
        ("file-user", "file-pass"),
        ("namespace-user", "namespace-pass"),
        ("runtime-user", "runtime-pass"),
        ("config-user", "config-pass"),
        ("docker-user", "docker-pass"),
        ("readme-user", "readme-token"),
    ];
    let s = Setup::new(&users, &[]);
    let m = Machine::new();
    let host = s.registry.host();
    let auth_file = m.write(
        "auth.json",
        &json!({"auths": {
            &host: auth("file-user", "file-pass"),
            format!("{host}/filters"): auth("namespace-user", "namespace-pass"),
        }}),
    );
    let env = [("REGISTRY_AUTH_FILE", auth_file.as_path())];
    m.round_trip(&format!("{host}/filters/podman:1.0.0"), &env);
    assert_eq!(s.basic_users(), ["namespace-user"], "the namespace key");
    m.round_trip(&format!("{host}/other/podman:1.0.0"), &env);
    assert_eq!(s.basic_users(), ["file-user"], "the registry key");

    m.write_docker_config(&json!({"auths": {&host: auth("docker-user", "docker-pass")}}));
    m.round_trip(&format!("{host}/filters/podman:1.0.1"), &env);
    assert_eq!(s.basic_users(), ["docker-user"], "Docker's config first");
    fs::remove_file(m.docker_config()).unwrap();

    m.write(
        "run/containers/auth.json",
        &json!({"auths": {&host: auth("runtime-user", "runtime-pass")}}),
    );
    m.write(
        "home/.config/containers/auth.json",
        &json!({"auths": {&host: auth("config-user", "config-pass")}}),
    );
    m.round_trip(&format!("{host}/filters/podman:1.0.2"), &[]);
    assert_eq!(s.basic_users(), ["runtime-user"], "XDG_RUNTIME_DIR first");
    fs::remove_file(m.path("run/containers/auth.json")).unwrap();
    m.round_trip(&format!("{host}/filters/podman:1.0.3"), &[]);
    assert_eq!(s.basic_users(), ["config-user"], "then XDG_CONFIG_HOME");

    // REGISTRY_AUTH_FILE replaces the other files: with nothing for this
    // registry there, the push is anonymous.
    let elsewhere = m.write(
        "elsewhere.json",
        &json!({"auths": {format!("{host}/other"): auth("file-user", "file-pass")}}),
    );
    m.push(
        &format!("{host}/filters/podman:1.0.4"),
        &[("REGISTRY_AUTH_FILE", elsewhere.as_path())],
    )
    .exits(
        4,
        "REGISTRY_AUTH_FILE without this registry",
        &["docker login"],
    );
    assert!(s.basic_users().is_empty());

    // The README's recipe for a token from CI secrets, run by bash up to its
    // extpack line, then that push.
    let readme = fs::read_to_string(e2e::paths::repo_root().join("README.md")).unwrap();
    let section = &readme[readme
        .find("### Registry credentials")
        .expect("README section Registry credentials")..];
    let recipe = section
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("REGISTRY_AUTH_FILE"))
        .expect("a REGISTRY_AUTH_FILE recipe in the README");
    let (script, push) = recipe
        .split_once("\nextpack push ")
        .expect("the recipe ends with an extpack push");
    assert_eq!(
        push.trim(),
        "image/ --tag \"$REGISTRY/filters/header-filter:1.0.0\""
    );
    fs::create_dir(m.path("runner")).unwrap();
    let status = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("REGISTRY", &host)
        .env("REGISTRY_USER", "readme-user")
        .env("REGISTRY_TOKEN", "readme-token")
        .env("RUNNER_TEMP", m.path("runner"))
        .status()
        .unwrap();
    assert!(status.success(), "the README recipe: {status}");
    m.round_trip(
        &format!("{host}/filters/header-filter:1.0.0"),
        &[("REGISTRY_AUTH_FILE", &m.path("runner/auth.json"))],
    );
    assert_eq!(s.basic_users(), ["readme-user"], "the README recipe");
}

/// Wrong or unusable credentials: exit 4 and one line naming the registry,
/// where the credentials came from and what went wrong.
#[test]
fn wrong_credentials_exit_4_naming_registry_and_source() {
    let s = Setup::new(&[("ci-user", "right-pass")], &[]);
    let m = Machine::new();
    let host = s.registry.host();
    let reference = format!("{host}/filters/wrong:1.0.0");
    let config = m.docker_config().display().to_string();
    m.helper(
        "wrong",
        &host,
        &helper_answer(&host, "ci-user", "wrong-pass"),
    );
    m.helper_script("broken", "echo 'the keychain is locked'\nexit 1\n");
    let podman = m.write(
        "auth.json",
        &json!({"auths": {&host: auth("ci-user", "wrong-pass")}}),
    );
    let refused = format!("registry {host} refused access to {reference}");
    let auths_source = format!("auths[\"{host}\"] in {config}");
    let podman_source = format!("auths[\"{host}\"] in {}", podman.display());
    /// What is wrong, the Docker config (none: no file), REGISTRY_AUTH_FILE,
    /// and what the error line must hold.
    type Case<'a> = (&'a str, Option<Value>, Option<&'a Path>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "wrong password in auths",
            Some(json!({"auths": {&host: auth("ci-user", "wrong-pass")}})),
            None,
            vec![
                &refused,
                "authentication failed for user \"ci-user\"",
                &auths_source,
            ],
        ),
        (
            "wrong password from a credHelpers helper",
            Some(json!({"credHelpers": {&host: "wrong"}})),
            None,
            vec![
                &refused,
                "authentication failed for user \"ci-user\"",
                "docker-credential-wrong",
                &config,
            ],
        ),
        (
            "wrong password in REGISTRY_AUTH_FILE",
            None,
            Some(&podman),
            vec![
                &refused,
                "authentication failed for user \"ci-user\"",
                &podman_source,
            ],
        ),
        (
            "credsStore helper not on PATH",
            Some(json!({"credsStore": "absent"})),
            None,
            vec![
                &host,
                "docker-credential-absent",
                "not found on PATH",
                &config,
            ],
        ),
        (
            "credHelpers helper that fails",
            Some(json!({"credHelpers": {&host: "broken"}})),
            None,
            vec![&host, "docker-credential-broken", "the keychain is locked"],
        ),
        (
            "config.json that is not JSON",
            None,
            None,
            vec![&host, &config, "not valid JSON"],
        ),
    ];
    for (case, docker, podman, wants) in cases {
        match docker {
            Some(config) => m.write_docker_config(&config),
            None if case.contains("not JSON") => {
                fs::write(m.docker_config(), "{\"auths\": {").unwrap()
            }
            None => {
                let _ = fs::remove_file(m.docker_config());
            }
        }
        let env: Vec<(&str, &Path)> = podman
            .map(|p| vec![("REGISTRY_AUTH_FILE", p)])
            .unwrap_or_default();
        m.push(&reference, &env)
            .exits(4, &format!("push, {case}"), &wants);
        m.pull(&reference, &env)
            .0
            .exits(4, &format!("pull, {case}"), &wants);
    }
    assert!(m.helper_log("broken").contains(&host));
}
