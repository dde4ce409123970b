//! The Maistra extension manifest (`manifest.yaml`, `schemaVersion: 1`) and
//! the typed values it holds.
//!
//! Inputs are parsed into types that cannot hold a bad value ([`Phase`],
//! [`Priority`], [`ExtensionName`], [`Version`]); once a [`Manifest`] exists
//! nothing re-checks it. This module knows nothing of OCI or files on disk
//! beyond reading a `--manifest` file's text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The file name of the module inside the compat layer, as Maistra's
/// `module:` field and Istio's fetcher expect it.
pub const MODULE_FILE: &str = "plugin.wasm";

/// The only Maistra manifest schema version there is.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a manifest value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("phase {0:?} is not a Maistra phase: use one of PreAuthN, PostAuthN, PreAuthZ, PostAuthZ, PreStats, PostStats")]
    Phase(String),
    #[error("priority {0:?} is not an integer: use a whole number between -2147483648 and 2147483647 (higher runs first)")]
    Priority(String),
    #[error("name {0:?} is not a valid extension name: use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit")]
    Name(String),
    #[error("version {0:?} is not a valid image tag: use 1-128 letters, digits, '_', '.' and '-', not starting with '.' or '-'")]
    Version(String),
    #[error("description is too long ({0} bytes): at most 4096 bytes are accepted")]
    Description(usize),
    #[error("{field} is missing: give --{field} or set `{field}:` in the manifest file")]
    Missing { field: &'static str },
    #[error("manifest file is not valid: {0}")]
    File(String),
    #[error("manifest file has schemaVersion {0}: only 1 is accepted")]
    Schema(u32),
}

/// Where an extension runs in the filter chain, by Maistra's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    PreAuthN,
    PostAuthN,
    PreAuthZ,
    PostAuthZ,
    PreStats,
    PostStats,
}

impl Phase {
    /// Every phase, in filter-chain order.
    pub const ALL: [Phase; 6] = [
        Phase::PreAuthN,
        Phase::PostAuthN,
        Phase::PreAuthZ,
        Phase::PostAuthZ,
        Phase::PreStats,
        Phase::PostStats,
    ];

    /// The Maistra spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PreAuthN => "PreAuthN",
            Phase::PostAuthN => "PostAuthN",
            Phase::PreAuthZ => "PreAuthZ",
            Phase::PostAuthZ => "PostAuthZ",
            Phase::PreStats => "PreStats",
            Phase::PostStats => "PostStats",
        }
    }
}

impl FromStr for Phase {
    type Err = ManifestError;
    fn from_str(s: &str) -> Result<Phase, ManifestError> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ManifestError::Phase(s.to_string()))
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Order within a phase: higher runs first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(pub i32);

impl FromStr for Priority {
    type Err = ManifestError;
    fn from_str(s: &str) -> Result<Priority, ManifestError> {
        s.trim()
            .parse::<i32>()
            .map(Priority)
            .map_err(|_| ManifestError::Priority(s.to_string()))
    }
}

/// An extension name that is valid both as a Kubernetes object name
/// (DNS-1123 label) and as an image repository path component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ExtensionName(String);

impl ExtensionName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ExtensionName {
    type Err = ManifestError;
    fn from_str(s: &str) -> Result<ExtensionName, ManifestError> {
        let bytes = s.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let ok = !bytes.is_empty()
            && bytes.len() <= 63
            && bytes.iter().all(|b| alnum(b) || *b == b'-')
            && alnum(&bytes[0])
            && alnum(&bytes[bytes.len() - 1]);
        if ok {
            Ok(ExtensionName(s.to_string()))
        } else {
            Err(ManifestError::Name(s.to_string()))
        }
    }
}

/// The extension's version; also the image tag the layout names it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Version(String);

impl Version {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Version {
    type Err = ManifestError;
    /// The OCI distribution tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
    fn from_str(s: &str) -> Result<Version, ManifestError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if ok {
            Ok(Version(s.to_string()))
        } else {
            Err(ManifestError::Version(s.to_string()))
        }
    }
}

/// The Maistra `manifest.yaml` that sits next to the module in the layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub name: ExtensionName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    pub phase: Phase,
    pub priority: Priority,
    pub module: String,
}

impl Manifest {
    /// The YAML text written as `manifest.yaml`.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a manifest always serializes")
    }

    /// The tag this image is named by in a layout: the version, or `latest`.
    pub fn tag(&self) -> &str {
        self.version.as_ref().map_or("latest", Version::as_str)
    }
}

/// Manifest fields as given by flags or a manifest file: every one optional,
/// nothing checked yet. [`ManifestInput::or`] merges (flags win), and
/// [`ManifestInput::resolve`] checks and produces a [`Manifest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestInput {
    pub schema_version: Option<u32>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub version: Option<ScalarText>,
    pub phase: Option<String>,
    pub priority: Option<ScalarText>,
    /// The module path, relative to the manifest file; the packaged copy is
    /// always named [`MODULE_FILE`].
    pub module: Option<String>,
}

/// A YAML scalar kept as its text, so `priority: 10` and `priority: "10"`
/// (or `version: 1.0`) are read the same way the user wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalarText(pub String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ScalarText, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) => Ok(ScalarText(s)),
            serde_yaml::Value::Number(n) => Ok(ScalarText(n.to_string())),
            serde_yaml::Value::Bool(b) => Ok(ScalarText(b.to_string())),
            _ => Err(serde::de::Error::custom("expected a scalar")),
        }
    }
}

impl ManifestInput {
    /// Reads a Maistra `manifest.yaml` (every field optional).
    pub fn from_yaml(text: &str) -> Result<ManifestInput, ManifestError> {
        let input: ManifestInput =
            serde_yaml::from_str(text).map_err(|e| ManifestError::File(e.to_string()))?;
        match input.schema_version {
            Some(v) if v != SCHEMA_VERSION => Err(ManifestError::Schema(v)),
            _ => Ok(input),
        }
    }

    /// Fields set in `self` win over those in `fallback`.
    pub fn or(self, fallback: ManifestInput) -> ManifestInput {
        ManifestInput {
            schema_version: self.schema_version.or(fallback.schema_version),
            name: self.name.or(fallback.name),
            description: self.description.or(fallback.description),
            version: self.version.or(fallback.version),
            phase: self.phase.or(fallback.phase),
            priority: self.priority.or(fallback.priority),
            module: self.module.or(fallback.module),
        }
    }

    /// Checks every field and builds the manifest that gets packaged.
    pub fn resolve(self) -> Result<Manifest, ManifestError> {
        let name = self
            .name
            .ok_or(ManifestError::Missing { field: "name" })?
            .parse()?;
        let phase = self
            .phase
            .ok_or(ManifestError::Missing { field: "phase" })?
            .parse()?;
        let priority = self
            .priority
            .ok_or(ManifestError::Missing { field: "priority" })?
            .0
            .parse()?;
        let version = self.version.map(|v| v.0.parse()).transpose()?;
        if let Some(d) = &self.description {
            if d.len() > 4096 {
                return Err(ManifestError::Description(d.len()));
            }
        }
        Ok(Manifest {
            schema_version: SCHEMA_VERSION,
            name,
            description: self.description,
            version,
            phase,
            priority,
            module: MODULE_FILE.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ManifestInput {
        ManifestInput {
            name: Some("header-filter".into()),
            phase: Some("PostAuthZ".into()),
            priority: Some(ScalarText("10".into())),
            ..ManifestInput::default()
        }
    }

    #[test]
    fn manifest_yaml_has_the_maistra_fields_in_order() {
        let mut i = input();
        i.description = Some("adds headers".into());
        i.version = Some(ScalarText("1.2.0".into()));
        let yaml = i.resolve().unwrap().to_yaml();
        assert_eq!(
            yaml,
            "schemaVersion: 1\nname: header-filter\ndescription: adds headers\nversion: 1.2.0\n\
             phase: PostAuthZ\npriority: 10\nmodule: plugin.wasm\n"
        );
    }

    #[test]
    fn optional_fields_are_left_out_and_tag_defaults_to_latest() {
        let m = input().resolve().unwrap();
        assert!(!m.to_yaml().contains("version"));
        assert!(!m.to_yaml().contains("description"));
        assert_eq!(m.tag(), "latest");
    }

    #[test]
    fn every_maistra_phase_round_trips() {
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>().unwrap(), p);
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_accepted_ones() {
        let cases: &[(&str, &str, &str)] = &[
            ("phase", "AUTHN", "phase \"AUTHN\" is not a Maistra phase: use one of PreAuthN, PostAuthN, PreAuthZ, PostAuthZ, PreStats, PostStats"),
            ("phase", "preauthn", "use one of PreAuthN"),
            ("priority", "high", "priority \"high\" is not an integer"),
            ("priority", "1.5", "is not an integer"),
            ("priority", "99999999999", "is not an integer"),
            ("name", "Header_Filter", "name \"Header_Filter\" is not a valid extension name: use 1-63 lower-case letters"),
            ("name", "-x", "not a valid extension name"),
            ("name", "x-", "not a valid extension name"),
            ("name", "", "not a valid extension name"),
            ("version", "1.0 beta", "version \"1.0 beta\" is not a valid image tag"),
            ("version", ".hidden", "not a valid image tag"),
        ];
        for (field, value, want) in cases {
            let mut i = input();
            match *field {
                "phase" => i.phase = Some(value.to_string()),
                "priority" => i.priority = Some(ScalarText(value.to_string())),
                "name" => i.name = Some(value.to_string()),
                "version" => i.version = Some(ScalarText(value.to_string())),
                _ => unreachable!(),
            }
            let err = i.resolve().unwrap_err().to_string();
            assert!(err.contains(want), "{field}={value:?}: {err}");
        }
        let name = "a".repeat(64);
        assert!(name.parse::<ExtensionName>().is_err());
        assert!("a".repeat(63).parse::<ExtensionName>().is_ok());
    }

    #[test]
    fn missing_required_fields_name_the_flag() {
        let err = ManifestInput::default().resolve().unwrap_err();
        assert_eq!(
            err.to_string(),
            "name is missing: give --name or set `name:` in the manifest file"
        );
    }

    #[test]
    fn manifest_file_fields_lose_to_flags() {
        let file = ManifestInput::from_yaml(
            "schemaVersion: 1\nname: from-file\nphase: PreAuthN\npriority: 5\nversion: 1.0\nmodule: x.wasm\n",
        )
        .unwrap();
        let flags = ManifestInput {
            name: Some("from-flags".into()),
            ..ManifestInput::default()
        };
        let m = flags.or(file).resolve().unwrap();
        assert_eq!(m.name.as_str(), "from-flags");
        assert_eq!(m.phase, Phase::PreAuthN);
        assert_eq!(m.priority, Priority(5));
        assert_eq!(m.tag(), "1.0");
        assert_eq!(m.module, "plugin.wasm");
    }

    #[test]
    fn manifest_file_with_unknown_field_or_schema_is_refused() {
        let err = ManifestInput::from_yaml("nmae: x\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("manifest file is not valid: unknown field `nmae`"),
            "{err}"
        );
        let err = ManifestInput::from_yaml("schemaVersion: 2\n").unwrap_err();
        assert_eq!(err, ManifestError::Schema(2));
    }
}
