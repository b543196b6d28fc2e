//! What a native RDP client sends on the listener's static channels: chunk reassembly stays bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_rdp::reassembly::oracles::server_channel_chunks(data));
