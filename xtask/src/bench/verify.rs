//! Before anything is measured: every listener answers 200, every adding
//! listener adds exactly the three headers, and `none` adds none. A bench
//! of a filter that does nothing would be worthless.

use super::client;
use super::config::HEADERS;
use super::envoy::Envoy;
use anyhow::{bail, Result};

pub fn headers(envoy: &Envoy, listeners: &[String]) -> Result<()> {
    for name in listeners {
        let response = client::get(envoy.listener(name)?, "/")?;
        if response.status != 200 {
            bail!("listener {name} answered {}, not 200", response.status);
        }
        for (key, value) in HEADERS {
            let values = response.values(key);
            let expected: &[&str] = if name == "none" { &[] } else { &[value] };
            if values != expected {
                bail!(
                    "listener {name}: response header {key} is {values:?}, expected {expected:?}; \
                     headers: {:?}",
                    response.headers
                );
            }
        }
    }
    Ok(())
}
