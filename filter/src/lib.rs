//! Header filter: a pure core (config -> plan -> apply) plus thin proxy-wasm glue.
pub mod config;
pub mod plan;

pub use config::ConfigError;
pub use plan::Plan;
