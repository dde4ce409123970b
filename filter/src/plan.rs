//! STUB - being written.
use crate::config::ConfigError;

#[derive(Debug, Default)]
pub struct Plan {}

impl Plan {
    /// Parses and validates a plugin configuration (empty input = empty plan).
    pub fn from_json(bytes: &[u8]) -> Result<Plan, ConfigError> {
        let _ = bytes;
        Ok(Plan {})
    }
}
