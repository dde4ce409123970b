//! A real OCI registry for the tests: Debian's `docker-registry`
//! (distribution v2) on 127.0.0.1, on a free port, storing into a temporary
//! folder, optionally behind htpasswd basic auth. Stopped on `Drop`.
//!
//! Missing `docker-registry` or `htpasswd` fails loudly with the package that
//! provides them; nothing is skipped.

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

impl Registry {
    /// An open registry (no auth).
    pub fn start() -> Registry {
        Registry::launch(false)
    }

    /// A registry that requires `USER`/`PASSWORD` (htpasswd, bcrypt).
    pub fn start_with_auth() -> Registry {
        Registry::launch(true)
    }

    /// `127.0.0.1:PORT`, as used in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn launch(auth: bool) -> Registry {
        let mut last_error = String::new();
        // A port picked by binding port 0 can be taken before the registry
        // binds it; try a few times.
        for _ in 0..3 {
            match Registry::try_launch(auth) {
                Ok(r) => return r,
                Err(e) => last_error = e,
            }
        }
        panic!("docker-registry did not start: {last_error}");
    }

    fn try_launch(auth: bool) -> Result<Registry, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let auth_block = if auth {
            let htpasswd = dir.path().join("htpasswd");
            write_htpasswd(&htpasswd);
            format!(
                "auth:\n  htpasswd:\n    realm: extpack-test\n    path: {}\n",
                htpasswd.display()
            )
        } else {
            String::new()
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n{auth_block}",
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
                if status == 200 || status == 401 {
                    return Ok(registry);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("{addr}/v2/ did not answer within 15 s"))
    }
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
