//! Hostile bytes for `portcullis_policy::oracles::policy_document`: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_policy::oracles::policy_document(data));
