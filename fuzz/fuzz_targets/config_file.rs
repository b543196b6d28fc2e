//! The gateway's TOML configuration and TOML policy files: parsed and checked, or refused with a
//! message; never a panic. The binary's own `config` module, through its library.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis::config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = config::Config::parse(text, None);
        let _ = config::parse_policy(text);
    }
});
