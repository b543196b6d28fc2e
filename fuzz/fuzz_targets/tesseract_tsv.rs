//! What tesseract prints about a picture of a target's screen: never a panic, always bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis_ocr::oracles::tesseract_tsv(data));
