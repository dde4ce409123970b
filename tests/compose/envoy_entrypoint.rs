//! Entrypoint of the stand-in `envoyproxy/envoy` image in the compose test,
//! doing what the official image's `docker-entrypoint.sh` does with the
//! container's command (envoyproxy/envoy `ci/docker-entrypoint.sh`):
//!
//! - a first argument starting with `-` means `envoy <args>`;
//! - for `envoy`, a non-empty `$loglevel` appends `--log-level $loglevel`;
//! - unless `ENVOY_UID` is `0`, the command runs as the `envoy` user (uid and
//!   gid 101, or `ENVOY_UID`/`ENVOY_GID`), after handing it `/dev/stdout` and
//!   `/dev/stderr`; with `ENVOY_UID=0` it runs as root.
//!
//! The official script does this with `usermod`, `chown` and `su-exec`; the
//! stand-in image has no shell, so this binary makes the same system calls.
//! Any failure is one `error:` line and exit 1, as `set -e` would stop there.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The `envoy` user and group of the official image (`adduser --system`).
const ENVOY_ID: libc::uid_t = 101;

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args
        .first()
        .is_some_and(|first| first.as_bytes().starts_with(b"-"))
    {
        args.insert(0, "envoy".into());
    }
    if args.first().is_some_and(|first| first == "envoy") {
        if let Some(level) = std::env::var_os("loglevel").filter(|level| !level.is_empty()) {
            args.push("--log-level".into());
            args.push(level);
        }
    }
    let Some((program, rest)) = args.split_first() else {
        fail("no command to run".to_string());
    };

    if std::env::var("ENVOY_UID").as_deref() != Ok("0") {
        let uid = id_from_env("ENVOY_UID");
        let gid = id_from_env("ENVOY_GID");
        for stream in ["/dev/stdout", "/dev/stderr"] {
            let path = CString::new(stream).expect("no NUL in a constant");
            // SAFETY: a valid C string; chown follows the link to the stream.
            if unsafe { libc::chown(path.as_ptr(), uid, gid) } != 0 {
                fail(format!(
                    "chown {uid}:{gid} {stream}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        // SAFETY: plain system calls on integers, before exec.
        let dropped = unsafe {
            libc::setgroups(1, &gid) == 0 && libc::setgid(gid) == 0 && libc::setuid(uid) == 0
        };
        if !dropped {
            fail(format!(
                "cannot switch to uid {uid}, gid {gid}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let err = Command::new(program).args(rest).exec();
    fail(format!("cannot run {}: {err}", program.to_string_lossy()));
}

/// `ENVOY_UID`/`ENVOY_GID` as a number; unset or empty means the envoy user.
fn id_from_env(name: &str) -> libc::uid_t {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value
            .parse()
            .unwrap_or_else(|_| fail(format!("{name}={value:?} is not a numeric id"))),
        _ => ENVOY_ID,
    }
}

fn fail(message: String) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
