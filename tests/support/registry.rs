//! A real OCI registry for the tests: Debian's `docker-registry`
//! (distribution v2) on 127.0.0.1, on a free port, storing into a temporary
//! folder, optionally behind htpasswd basic auth, optionally serving TLS
//! with a certificate from a CA that `openssl` makes at test time, or behind
//! token auth (`auth: token`) trusting a signing certificate that `openssl`
//! makes at test time ([`TokenSigner`] signs the JWTs a test's token server
//! issues). Stopped on `Drop`.
//!
//! Missing `docker-registry`, `htpasswd` or `openssl` fails loudly with the
//! package that provides them; nothing is skipped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running registry.
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

/// User and password of a registry started with [`Registry::start_with_auth`].
pub const USER: &str = "extpack";
pub const PASSWORD: &str = "s3cret-pass";

/// A private CA and a server certificate it signed for `127.0.0.1`, made
/// with `openssl` in a temporary folder.
pub struct TlsFiles {
    dir: TempDir,
}

impl TlsFiles {
    /// Makes the CA (P-256, one day) and the server certificate.
    pub fn generate() -> TlsFiles {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run openssl ({e}): install it with `apt-get install openssl`")
                });
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        std::fs::write(
            dir.path().join("ca.ext"),
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier=hash\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n\
             authorityKeyIdentifier=keyid\n",
        )
        .unwrap();
        run(&[
            &["req", "-new"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.csr",
                "-subj",
                "/CN=extpack test CA",
            ],
        ]
        .concat());
        run(&[
            "x509", "-req", "-in", "ca.csr", "-key", "ca.key", "-out", "ca.pem", "-days", "1",
            "-extfile", "ca.ext",
        ]);
        run(&[
            &["req", "-new"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ]);
        TlsFiles { dir }
    }

    /// The CA certificate (PEM), what `--ca-file` takes.
    pub fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cert(&self) -> std::path::PathBuf {
        self.dir.path().join("server.pem")
    }

    fn key(&self) -> std::path::PathBuf {
        self.dir.path().join("server.key")
    }
}

impl Registry {
    /// An open registry (no auth).
    pub fn start() -> Registry {
        Registry::launch(&Auth::None, None)
    }

    /// A registry that requires `USER`/`PASSWORD` (htpasswd, bcrypt).
    pub fn start_with_auth() -> Registry {
        Registry::launch(&Auth::Htpasswd, None)
    }

    /// An open registry serving HTTPS with `tls`'s server certificate.
    pub fn start_tls(tls: &TlsFiles) -> Registry {
        Registry::launch(&Auth::None, Some(tls))
    }

    /// A plain-HTTP registry with token auth: it answers 401 with
    /// `WWW-Authenticate: Bearer realm=...,service=...,scope=...` and accepts
    /// only JWTs that `auth.signer` signed for `auth.service` from
    /// `auth.issuer`.
    pub fn start_with_token_auth(auth: &TokenAuth<'_>) -> Registry {
        Registry::launch(&Auth::Token(auth.config_block()), None)
    }

    /// `127.0.0.1:PORT`, as used in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn launch(auth: &Auth, tls: Option<&TlsFiles>) -> Registry {
        let mut last_error = String::new();
        // A port picked by binding port 0 can be taken before the registry
        // binds it; try a few times.
        for _ in 0..3 {
            match Registry::try_launch(auth, tls) {
                Ok(r) => return r,
                Err(e) => last_error = e,
            }
        }
        panic!("docker-registry did not start: {last_error}");
    }

    fn try_launch(auth: &Auth, tls: Option<&TlsFiles>) -> Result<Registry, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let auth_block = match auth {
            Auth::Htpasswd => {
                let htpasswd = dir.path().join("htpasswd");
                write_htpasswd(&htpasswd);
                format!(
                    "auth:\n  htpasswd:\n    realm: extpack-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            Auth::Token(block) => block.clone(),
            Auth::None => String::new(),
        };
        let tls_block = match tls {
            Some(t) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.cert().display(),
                t.key().display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n{tls_block}{auth_block}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(dir.path().join("registry.log")).map_err(|e| e.to_string())?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run docker-registry ({e}): install it with `apt-get install docker-registry`")
            });
        let mut registry = Registry {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = registry.child.try_wait() {
                let log = std::fs::read_to_string(registry._dir.path().join("registry.log"))
                    .unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            if let Some(status) = v2_status(addr) {
                // A TLS listener answers plain HTTP with 400 once it is up.
                if status == 200 || status == 401 || (tls.is_some() && status == 400) {
                    return Ok(registry);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("{addr}/v2/ did not answer within 15 s"))
    }
}

/// How a started registry authenticates.
enum Auth {
    None,
    Htpasswd,
    /// The `auth:` block of the configuration.
    Token(String),
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_htpasswd(path: &Path) {
    let out = Command::new("htpasswd")
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run htpasswd ({e}): install it with `apt-get install apache2-utils`")
        });
    assert!(out.status.success(), "htpasswd failed: {out:?}");
    std::fs::write(path, out.stdout).expect("writing htpasswd");
}

/// The HTTP status of `GET /v2/`, or `None` when nothing answers.
pub fn v2_status(addr: SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The `auth: token` settings of [`Registry::start_with_token_auth`].
pub struct TokenAuth<'a> {
    /// Where clients get tokens (the test's token server), e.g.
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// The `service` the registry names in its challenge and wants as the
    /// tokens' audience.
    pub service: String,
    /// The `iss` the registry accepts.
    pub issuer: String,
    /// Whose certificate the registry trusts (`rootcertbundle`).
    pub signer: &'a TokenSigner,
}

impl TokenAuth<'_> {
    fn config_block(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            self.realm,
            self.service,
            self.issuer,
            self.signer.certificate().display()
        )
    }
}

/// An RSA key and a self-signed certificate for it (made with `openssl`),
/// which signs registry tokens: RS256 JWTs whose `x5c` header carries the
/// certificate, the form distribution's token auth verifies against its
/// `rootcertbundle`. Signing runs `openssl dgst -sha256 -sign`, whose
/// PKCS#1 v1.5 output is the RS256 signature as is.
pub struct TokenSigner {
    dir: TempDir,
    x5c: String,
}

impl TokenSigner {
    pub fn generate() -> TokenSigner {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "signer.key",
                "-out",
                "signer.pem",
                "-days",
                "1",
                "-subj",
                "/CN=extpack test token signer",
            ],
            None,
        );
        let der = openssl(
            dir.path(),
            &["x509", "-in", "signer.pem", "-outform", "DER"],
            None,
        );
        TokenSigner {
            dir,
            x5c: base64_std(&der),
        }
    }

    /// The signing certificate (PEM), what the registry's `rootcertbundle`
    /// names.
    pub fn certificate(&self) -> std::path::PathBuf {
        self.dir.path().join("signer.pem")
    }

    /// A compact RS256 JWT of `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let input = format!(
            "{}.{}",
            base64_url(header.to_string().as_bytes()),
            base64_url(claims.to_string().as_bytes())
        );
        let signature = openssl(
            self.dir.path(),
            &["dgst", "-sha256", "-sign", "signer.key"],
            Some(input.as_bytes()),
        );
        format!("{input}.{}", base64_url(&signature))
    }
}

/// Runs `openssl ARGS` in `dir`, with `stdin`; returns its standard output.
fn openssl(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): install it with `apt-get install openssl`")
        });
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    out.stdout
}

/// Standard base64 with padding (`auth` fields, `x5c`).
pub fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// URL-safe base64 without padding (JWT segments).
pub fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
