//! What a hostile RDP target sends on the adapter's static channels: chunk reassembly stays bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_rdp::reassembly::oracles::client_channel_chunks(data));
