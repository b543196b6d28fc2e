//! What a native RDP client or a hostile target sends on the clipboard channel: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_rdp::server::oracles::clipboard_bytes(data));
