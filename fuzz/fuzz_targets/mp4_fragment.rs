//! A recording's video bytes read back for catch-up OCR: never a panic, always within the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_recorder::oracles::mp4_fragment(data));
