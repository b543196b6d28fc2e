//! A recording folder whose files are attacker-controlled (a tampered export): listing, reading
//! and verifying it returns results or errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_recording::oracles::recording_folder(data));
