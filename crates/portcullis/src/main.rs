//! `portcullis`: the gateway binary. Everything but the allocator and the log set-up is in the
//! crate's library (`lib.rs`).

use clap::Parser as _;

/// jemalloc instead of glibc's malloc: sessions allocate and free frame-sized buffers on several
/// threads, and glibc keeps such memory in per-thread arenas long after it is freed. Measured with
/// `cargo xtask bench rdp` (1080p native session, recording off): +42 MiB with glibc, +25 with
/// jemalloc, and back to 36 MiB instead of 123 once the sessions are over. Background threads
/// purge freed pages while the gateway is idle. (mimalloc kept them resident: 109 MiB at idle.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `PORTCULLIS_LOG_FORMAT=json`: one JSON object per log line (for a log collector); anything
/// else, or unset: lines for people.
const LOG_FORMAT_ENV: &str = "PORTCULLIS_LOG_FORMAT";

fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var(LOG_FORMAT_ENV).is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        // The module path is left out: events name a `target` (a host) of their own.
        logs.json()
            .flatten_event(true)
            .with_current_span(false)
            .with_target(false)
            .init();
    } else {
        logs.init();
    }
    portcullis::commands::run(portcullis::cli::Cli::parse())
}
