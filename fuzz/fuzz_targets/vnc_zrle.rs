//! ZRLE rectangles from a hostile VNC server, decoded by the VNC adapter: a picture of the
//! rectangle's size or an error, never a panic, a hang or memory beyond the rectangle's bound.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_vnc::oracles::zrle_rect(data));
