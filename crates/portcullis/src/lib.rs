//! The gateway binary's code: the command line (`cli`), what each command does (`commands`),
//! `serve`'s wiring of every crate into a running gateway, and the configuration (`config`,
//! fuzzed on its own by `fuzz/fuzz_targets/config_file.rs`). `main.rs` only sets up logging.
// The commands' output on standard output is their interface.
#![allow(clippy::print_stdout)]
// The crate denies unsafe code (main.rs exports jemalloc's options); the library has none.
#![forbid(unsafe_code)]

pub mod cli;
mod cli_audit;
pub mod commands;
pub mod config;
mod data;
mod recording;
mod rotate;
mod serve;
mod shutdown;
