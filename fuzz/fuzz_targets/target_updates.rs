//! Whatever a target's adapter reports: applying it to the framebuffer keeps every invariant.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_core::oracles::target_updates(data));
