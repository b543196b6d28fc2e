//! The gateway's TOML configuration and TOML policy files: parsed and checked, or refused with a
//! message; never a panic. The binary's own `config` module, compiled in here as it is.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/portcullis/src/config.rs"]
#[allow(dead_code)]
mod config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = config::Config::parse(text, None);
        let _ = config::parse_policy(text);
    }
});
