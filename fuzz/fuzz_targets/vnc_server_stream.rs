//! What a hostile VNC server sends, framed by the VNC adapter: bounded, never stuck, and the
//! update ends do not depend on how the bytes arrive.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_vnc::oracles::server_stream(data));
