//! Replays every input kept in `fuzz/regressions/<target>/` through the oracle its cargo-fuzz
//! target calls: inputs that once crashed something (copied there by `cargo xtask fuzz`), and a
//! few seeds. An ordinary test, so a fixed bug stays fixed without a fuzzing toolchain.

use std::path::Path;

type Oracle = fn(&[u8]);

const TARGETS: &[(&str, Oracle)] = &[
    ("client_message", portcullis_core::oracles::client_message),
    ("tesseract_tsv", portcullis_ocr::oracles::tesseract_tsv),
    ("search_track", portcullis_search::oracles::search_track),
    ("mp4_fragment", portcullis_recorder::oracles::mp4_fragment),
    ("target_updates", portcullis_core::oracles::target_updates),
    (
        "recording_manifest",
        portcullis_recording::oracles::recording_folder,
    ),
    (
        "rdp_client_bytes",
        portcullis_rdp::server::oracles::client_bytes,
    ),
    (
        "rdp_clipboard_bytes",
        portcullis_rdp::server::oracles::clipboard_bytes,
    ),
    (
        "rdp_drive_bytes",
        portcullis_rdp::server::oracles::drive_bytes,
    ),
    (
        "rdp_target_chunks",
        portcullis_rdp::reassembly::oracles::client_channel_chunks,
    ),
    (
        "rdp_target_fast_path",
        portcullis_rdp::reassembly::oracles::fast_path_fragments,
    ),
    (
        "rdp_client_chunks",
        portcullis_rdp::reassembly::oracles::server_channel_chunks,
    ),
    ("audit_segment", portcullis_audit::oracles::segment_bytes),
    ("vnc_server_stream", portcullis_vnc::oracles::server_stream),
    ("vnc_zrle", portcullis_vnc::oracles::zrle_rect),
    (
        "policy_document",
        portcullis_policy::oracles::policy_document,
    ),
];

/// Targets whose kept inputs another test replays.
const REPLAYED_ELSEWHERE: &[&str] = &["config_file"];

#[test]
fn every_kept_fuzz_input_is_harmless() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    for (target, oracle) in TARGETS {
        assert!(
            root.join("fuzz_targets")
                .join(format!("{target}.rs"))
                .exists(),
            "no fuzz target {target}"
        );
        let dir = root.join("regressions").join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| oracle(&data));
            assert!(outcome.is_ok(), "{} panics {target}", input.display());
        }
    }
    // Every fuzz target is replayed here, or by the crate it fuzzes (config_file: the binary's
    // config module, whose unit tests replay its inputs).
    for entry in std::fs::read_dir(root.join("fuzz_targets")).unwrap() {
        let name = entry.unwrap().path();
        let stem = name.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(
            TARGETS.iter().any(|(t, _)| *t == stem) || REPLAYED_ELSEWHERE.contains(&stem.as_str()),
            "fuzz target {stem} is not replayed"
        );
    }
}
