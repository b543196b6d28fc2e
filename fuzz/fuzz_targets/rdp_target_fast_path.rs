//! What a hostile RDP target sends as fast-path fragments: reassembly stays bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_rdp::reassembly::oracles::fast_path_fragments(data));
