//! Hostile bytes for `portcullis_audit::oracles::segment_bytes`: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_audit::oracles::segment_bytes(data));
