//! What the binary's integration tests share: running the CLI as a user would.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `portcullis --data-dir DATA ARGS…` without a configuration or a key in the environment;
/// `$PW` holds a password long enough for `--password-env PW`.
pub(crate) fn portcullis(data: &Path, args: &[&str]) -> Output {
    portcullis_with(data, args, &[])
}

/// [`portcullis`] with these environment variables set too (e.g. `PORTCULLIS_STORE_URL`).
#[allow(dead_code)] // not every test binary uses it
pub(crate) fn portcullis_with(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_SECRET_KEY")
        .env_remove("PORTCULLIS_STORE_URL")
        .env("PW", "a long enough password")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}
