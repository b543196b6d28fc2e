//! What a native RDP client sends the gateway's RDP listener: never a panic, pointers stay inside.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_rdp::server::oracles::client_bytes(data));
