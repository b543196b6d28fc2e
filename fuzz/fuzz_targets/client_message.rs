//! Whatever a browser sends as a text message: parsing returns a value or an error, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = portcullis_core::wire::parse_client_message(&text);
    let _ = portcullis_core::wire::decode_server_binary(data);
});
