//! A private podman engine for the compose test: its own image storage,
//! runtime state and network definitions under `target/compose-podman/`, so
//! another podman user on the machine neither sees nor disturbs it, and its
//! Docker-compatible API on a unix socket of its own for `docker-compose`.
//!
//! Its configuration (`CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`) holds
//! what sandboxes like this one need and the compose file must not: vfs
//! storage and cgroupfs (no overlay mounts or systemd here), runc (crun 1.8
//! refuses hybrid cgroup hierarchies), netavark with aardvark-dns (service
//! names as host names), and container ulimits that fit under the limits of
//! a process without CAP_SYS_RESOURCE.
//!
//! [`Podman::open`] reports what is missing instead of failing, so the test
//! can say why it cannot run containers.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha512};
use tempfile::TempDir;

use crate::paths;

/// Container limits: at most what this process may set without
/// CAP_SYS_RESOURCE (podman's own defaults ask for more and fail).
const ULIMITS: &[&str] = &["nofile=20000:20000", "nproc=32768:32768"];

/// Helpers podman runs for networks, where Debian installs them.
const HELPER_DIRS: &[&str] = &["/usr/lib/podman", "/usr/libexec/podman"];

/// The private engine (configuration files written, nothing running).
pub struct Podman {
    root: PathBuf,
}

impl Podman {
    /// Writes the private configuration; `Err` names each missing program
    /// and the Debian package that provides it.
    pub fn open() -> Result<Podman, String> {
        let missing: Vec<String> = [
            ("podman", "podman", Location::Path),
            ("docker-compose", "docker-compose", Location::Path),
            ("runc", "runc", Location::Path),
            ("netavark", "netavark", Location::Helper),
            ("aardvark-dns", "aardvark-dns", Location::Helper),
            ("iptables", "iptables", Location::Path),
        ]
        .into_iter()
        .filter(|(program, _, location)| !location.has(program))
        .map(|(program, package, _)| format!("{program} (apt-get install {package})"))
        .collect();
        if !missing.is_empty() {
            return Err(format!("missing {}", missing.join(", ")));
        }
        let root = paths::target_dir().join("compose-podman");
        let podman = Podman { root };
        podman
            .write_config()
            .map_err(|err| format!("cannot write podman configuration: {err}"))?;
        Ok(podman)
    }

    fn write_config(&self) -> std::io::Result<()> {
        let root = &self.root;
        std::fs::create_dir_all(root.join("tmp"))?;
        let ulimits: Vec<String> = ULIMITS.iter().map(|u| format!("{u:?}")).collect();
        std::fs::write(
            root.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [{ulimits}]\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 runtime = \"runc\"\n\
                 tmp_dir = \"{tmp}\"\n\
                 [network]\n\
                 network_backend = \"netavark\"\n\
                 network_config_dir = \"{networks}\"\n",
                ulimits = ulimits.join(", "),
                tmp = root.join("tmp").display(),
                networks = root.join("networks").display(),
            ),
        )?;
        std::fs::write(
            root.join("storage.conf"),
            format!(
                "[storage]\n\
                 driver = \"vfs\"\n\
                 graphroot = \"{}\"\n\
                 runroot = \"{}\"\n",
                root.join("storage").display(),
                root.join("run").display(),
            ),
        )
    }

    /// `podman` bound to this engine's configuration.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.root.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.root.join("storage.conf"))
            .env_remove("CONTAINER_HOST")
            .stdin(Stdio::null());
        cmd
    }

    /// `podman ARGS`: its standard output, or `Err` with the command line and
    /// what podman said.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let output = self
            .cli()
            .args(args)
            .output()
            .map_err(|err| format!("podman {}: {err}", args.join(" ")))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "podman {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// Removes every container, network and volume of this engine (what a
    /// run that was killed midway left behind). Images stay: they are the
    /// cache.
    pub fn remove_leftovers(&self) -> Result<(), String> {
        self.run(&["rm", "--all", "--force", "--time", "0"])?;
        self.run(&["network", "prune", "--force"])?;
        self.run(&["volume", "prune", "--force"])?;
        Ok(())
    }

    /// Names of this engine's containers, networks other than podman's
    /// default, and volumes: empty after a clean `docker-compose down -v`.
    pub fn leftovers(&self) -> Result<Vec<String>, String> {
        let containers = self.run(&["ps", "--all", "--format", "container {{.Names}}"])?;
        let networks = self.run(&["network", "ls", "--format", "network {{.Name}}"])?;
        let volumes = self.run(&["volume", "ls", "--format", "volume {{.Name}}"])?;
        Ok([containers, networks, volumes]
            .iter()
            .flat_map(|list| list.lines())
            .filter(|line| !line.is_empty() && *line != "network podman")
            .map(str::to_string)
            .collect())
    }

    /// `iptables` NAT rules still naming `network` (netavark tags its port
    /// forwards with the network name, in a chain named after a hash of it):
    /// empty once every container of the network is gone. netavark 1.4 keeps
    /// that chain itself, empty, after the network is removed, so a network
    /// name reused from run to run leaves at most one.
    pub fn firewall_leftovers(&self, network: &str) -> Result<Vec<String>, String> {
        let hash: String = Sha512::digest(network.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect();
        let chain = format!("NETAVARK-DN-{}", &hash[..13]);
        let output = Command::new("iptables")
            .args(["-t", "nat", "-S"])
            .output()
            .map_err(|err| format!("iptables -t nat -S: {err}"))?;
        if !output.status.success() {
            return Err(format!(
                "iptables -t nat -S: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|rule| rule.contains(network) || rule.contains(&format!("-A {chain} ")))
            .map(str::to_string)
            .collect())
    }

    /// Starts `podman system service` on a unix socket in a new temporary
    /// folder, and waits until its API answers.
    pub fn serve(&self) -> Result<Service, String> {
        let dir = tempfile::Builder::new()
            .prefix("compose-podman-")
            .tempdir()
            .map_err(|err| format!("temporary folder for the podman socket: {err}"))?;
        let socket = dir.path().join("podman.sock");
        let log = std::fs::File::create(self.root.join("service.log"))
            .map_err(|err| format!("podman service log: {err}"))?;
        let child = self
            .cli()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|err| format!("podman system service: {err}"))?;
        let mut service = Service {
            child,
            socket,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if service.ping() {
                return Ok(service);
            }
            if let Ok(Some(status)) = service.child.try_wait() {
                let log = std::fs::read_to_string(self.root.join("service.log"));
                return Err(format!(
                    "podman system service exited ({status}): {}",
                    log.unwrap_or_default().trim()
                ));
            }
            if Instant::now() > deadline {
                return Err("podman system service did not answer within 30 s".to_string());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A running `podman system service`; stopped (and its socket folder
/// removed) on drop.
pub struct Service {
    child: Child,
    socket: PathBuf,
    _dir: TempDir,
}

impl Service {
    /// The value of `DOCKER_HOST` for Docker clients.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The socket file.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether the Docker API answers `GET /_ping` with `OK`.
    fn ping(&self) -> bool {
        let Ok(mut stream) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reply = String::new();
        stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            .and_then(|()| stream.read_to_string(&mut reply))
            .is_ok()
            && reply.starts_with("HTTP/1.")
            && reply.ends_with("OK")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // SIGTERM lets podman remove its socket; SIGKILL only if it hangs.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: signalling our own child, which has not been reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a program is looked for.
enum Location {
    Path,
    Helper,
}

impl Location {
    fn has(&self, program: &str) -> bool {
        match self {
            Location::Path => {
                let path = std::env::var_os("PATH").unwrap_or_default();
                std::env::split_paths(&path)
                    // runc lives in /usr/sbin, which a user's PATH may lack.
                    .chain([PathBuf::from("/usr/sbin")])
                    .any(|dir| dir.join(program).is_file())
            }
            Location::Helper => HELPER_DIRS
                .iter()
                .any(|dir| Path::new(dir).join(program).is_file()),
        }
    }
}
