//! One docker-compose project, run for real with Debian's `docker-compose`
//! (1.29) against a podman [`Service`]: `up`, the state and logs of its
//! containers, `down`. A project still up is taken down (with its volumes)
//! on drop, so a failing test leaves nothing running.
//!
//! The compose file publishes fixed host ports, so projects are serialized
//! machine-wide by a lock file: a second checkout running the same test
//! waits instead of failing on a taken port.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::podman::Service;

/// The machine-wide lock, in the temporary directory.
const LOCK_FILE: &str = "header-filter-compose.lock";

/// A compose project (the file's directory is its working directory).
pub struct Project {
    file: PathBuf,
    name: String,
    docker_host: String,
    up: bool,
    _lock: File,
}

impl Project {
    /// The project `name` of compose file `file`, talking to `service`;
    /// waits for any other run of a compose project on this machine.
    pub fn new(file: &Path, name: &str, service: &Service) -> Project {
        let lock_path = std::env::temp_dir().join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap_or_else(|err| panic!("{}: {err}", lock_path.display()));
        // SAFETY: flock on a descriptor this function owns.
        let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            locked,
            0,
            "locking {}: {}",
            lock_path.display(),
            std::io::Error::last_os_error()
        );
        Project {
            file: file.to_path_buf(),
            name: name.to_string(),
            docker_host: service.docker_host(),
            up: false,
            _lock: lock,
        }
    }

    /// `docker-compose -f FILE -p NAME ARGS`, output captured.
    pub fn compose(&self, args: &[&str]) -> Output {
        let dir = self.file.parent().unwrap_or(Path::new("."));
        Command::new("docker-compose")
            .arg("-f")
            .arg(&self.file)
            .args(["-p", &self.name, "--ansi", "never"])
            .args(args)
            .current_dir(dir)
            .env("DOCKER_HOST", &self.docker_host)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("docker-compose {}: {err}", args.join(" ")))
    }

    /// `docker-compose up -d`: `Err` with what docker-compose said.
    pub fn up(&mut self) -> Result<(), String> {
        self.up = true;
        checked(self.compose(&["up", "-d"]), "up -d")
    }

    /// `docker-compose down --volumes`.
    pub fn down(&mut self) -> Result<(), String> {
        let result = checked(self.compose(&["down", "--volumes"]), "down --volumes");
        self.up = false;
        result
    }

    /// The id of the container of `service`.
    pub fn container(&self, service: &str) -> Result<String, String> {
        let output = self.compose(&["ps", "-q", service]);
        let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if output.status.success() && !id.is_empty() {
            Ok(id)
        } else {
            Err(format!(
                "no container for service {service}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// What `service` printed so far (stdout and stderr).
    pub fn logs(&self, service: &str) -> String {
        let output = self.compose(&["logs", "--no-color", service]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if self.up {
            let _ = self.down();
        }
    }
}

fn checked(output: Output, what: &str) -> Result<(), String> {
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "docker-compose {what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
