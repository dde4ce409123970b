//! Exit codes by kind of failure, so that CI scripts can tell "retry later"
//! (unreachable) from "fix the credentials" or "the image is corrupt".
//!
//! The kind is read from the typed errors in the chain; anything not
//! classified is invalid input (1). Command-line usage errors are clap's and
//! exit 2 before any of this runs.

use crate::image::ImageError;
use crate::mesh::MeshError;
use crate::registry::RegistryError;

/// What kind of failure ended a run; the discriminant is the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// A module, configuration, manifest, image or file is not acceptable.
    Invalid = 1,
    /// The command line is wrong (clap's code).
    Usage = 2,
    /// The registry has no such repository, tag or digest.
    NotFound = 3,
    /// The registry refused the credentials, or gave no access.
    Auth = 4,
    /// A digest or size does not match what it should.
    Integrity = 5,
    /// The registry cannot be reached, or TLS with it failed.
    Unreachable = 6,
}

/// The table printed in `--help` and kept in the README.
pub const HELP: &str = "Exit codes:
  0  success
  1  invalid input (module, configuration, manifest, image, file)
  2  usage (unknown flag, missing argument)
  3  not found in the registry (repository, tag or digest)
  4  authentication or authorization refused by the registry
  5  integrity: a digest or size does not match
  6  registry unreachable, or a TLS failure";

impl ExitKind {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind of the first classified error in the chain.
    pub fn of(e: &anyhow::Error) -> ExitKind {
        e.chain()
            .find_map(|cause| {
                if let Some(r) = cause.downcast_ref::<RegistryError>() {
                    return Some(registry(r));
                }
                if let Some(m) = cause.downcast_ref::<MeshError>() {
                    return Some(mesh(m));
                }
                cause.downcast_ref::<ImageError>().map(image)
            })
            .unwrap_or(ExitKind::Invalid)
    }
}

fn registry(e: &RegistryError) -> ExitKind {
    match e {
        RegistryError::NotFound { .. } => ExitKind::NotFound,
        RegistryError::Unauthorized { .. } | RegistryError::Credentials { .. } => ExitKind::Auth,
        RegistryError::Integrity { .. } => ExitKind::Integrity,
        RegistryError::Unreachable { .. } | RegistryError::Tls { .. } => ExitKind::Unreachable,
        RegistryError::Image(i) => image(i),
        RegistryError::BadReference(..)
        | RegistryError::PushToDigest(_)
        | RegistryError::CaFile { .. }
        | RegistryError::Other { .. }
        | RegistryError::TooLarge { .. } => ExitKind::Invalid,
    }
}

fn mesh(e: &MeshError) -> ExitKind {
    match e {
        MeshError::DigestMismatch { .. } => ExitKind::Integrity,
        MeshError::EnvoyFilterNeedsModuleUrl(_) => ExitKind::Usage,
        MeshError::Image(i) => image(i),
        _ => ExitKind::Invalid,
    }
}

fn image(e: &ImageError) -> ExitKind {
    match e {
        ImageError::DigestMismatch { .. } | ImageError::SizeMismatch { .. } => ExitKind::Integrity,
        _ => ExitKind::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_through_wrapping_and_context() {
        let not_found = anyhow::Error::new(RegistryError::NotFound {
            registry: "r".into(),
            reference: "r/x:1".into(),
        })
        .context("pulling");
        assert_eq!(ExitKind::of(&not_found), ExitKind::NotFound);
        let corrupt = anyhow::Error::new(RegistryError::Image(ImageError::DigestMismatch {
            digest: "sha256:a".into(),
            actual: "sha256:b".into(),
        }));
        assert_eq!(ExitKind::of(&corrupt).code(), 5);
        let local = anyhow::Error::new(ImageError::SizeMismatch {
            digest: "sha256:a".into(),
            expected: 1,
            actual: 2,
        });
        assert_eq!(ExitKind::of(&local), ExitKind::Integrity);
        assert_eq!(ExitKind::of(&anyhow::anyhow!("plain")), ExitKind::Invalid);
    }

    #[test]
    fn every_code_is_in_the_help_table() {
        for kind in [
            ExitKind::Invalid,
            ExitKind::Usage,
            ExitKind::NotFound,
            ExitKind::Auth,
            ExitKind::Integrity,
            ExitKind::Unreachable,
        ] {
            assert!(HELP.contains(&format!("\n  {}  ", kind.code())), "{kind:?}");
        }
    }
}
