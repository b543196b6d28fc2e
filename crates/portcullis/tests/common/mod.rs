//! What the binary's integration tests share: running the CLI as a user would.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `portcullis --data-dir DATA ARGS…` without a configuration or a key in the environment;
/// `$PW` holds a password long enough for `--password-env PW`.
pub(crate) fn portcullis(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_SECRET_KEY")
        .env_remove("PORTCULLIS_STORE_URL")
        .env("PW", "a long enough password")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}
