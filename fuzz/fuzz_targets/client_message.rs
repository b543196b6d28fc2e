//! What a browser sends over the session WebSocket (and what it decodes): never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_core::oracles::client_message(data));
