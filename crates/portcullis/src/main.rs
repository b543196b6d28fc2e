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

/// jemalloc's options, read once when it starts (before `main`; `_RJEM_MALLOC_CONF` in the
/// environment still adds to them): freed pages go back to the system within about 1 s instead
/// of 10 (`dirty_decay_ms`; jemalloc 5.3 has no "muzzy" stage by default). A live view frees
/// frame-sized buffers all the time; measured with `benches/recording.mjs` (1080p, gateway RSS
/// added each second of the active phase): p50 45.4 → 38.8 MiB, max 60.4 → 54.1, the gateway's
/// CPU unchanged. Checked: `_RJEM_MALLOC_CONF=confirm_conf:true portcullis --help` lists it.
///
/// The only `unsafe` in this crate: an exported symbol that jemalloc reads as a C string. It is
/// a constant, NUL-terminated, and lives as long as the process.
#[allow(unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 20] = b"dirty_decay_ms:1000\0";

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
