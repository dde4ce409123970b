//! The configuration parser on arbitrary bytes: it must never panic (a
//! panic in `on_configure` kills the VM), and whatever it accepts must
//! re-serialize to JSON that parses back to the same configuration.

#![no_main]

use header_filter::{Config, Plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Config::parse(data) {
        Ok(config) => {
            let canonical = config.to_json();
            let again = Config::parse(canonical.as_bytes())
                .unwrap_or_else(|e| panic!("canonical JSON refused: {e}\n{canonical}"));
            assert_eq!(again, config, "{canonical}");
            assert_eq!(again.to_json(), canonical);
            let _ = Plan::compile(&config);
        }
        Err(error) => {
            let line = error.to_string();
            assert!(!line.chars().any(|c| c.is_ascii_control()), "{line:?}");
        }
    }
});
