//! A recording's event track as the search indexer reads it: never a panic, always bounded,
//! the same entries read whole or in two pieces.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_search::oracles::search_track(data));
