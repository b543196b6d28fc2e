//! A conversation on the drive redirection channel between a hostile target and a hostile native
//! client: never a panic, bounded state, nothing of the client's echoed back to it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_rdp::server::oracles::drive_bytes(data));
