#![allow(clippy::print_stdout)]
//! Re-encodes a captured session through a [`Recorder`] at chosen encoder settings: the harness
//! that maps the size × legibility × CPU × memory frontier of the recorder's settings.
//!
//! ```text
//! benches/recording-capture.sh /tmp/cap            # source.mkv: a lossless 5 fps capture
//! cargo run --release -p portcullis-recorder --example reencode -- /tmp/cap/source.mkv OUT_DIR \
//!     [--preset veryfast] [--tune stillimage] [--crf 28] [--lookahead 0] [--key-secs 300] \
//!     [--x264 'key=value:…'] [--draft-crf 38 (0: off)] [--refine-ms 1000] [--idle-from SECONDS] \
//!     [--width 1920] [--height 1080]
//! ```
//!
//! The capture is decoded with the ffmpeg CLI (RGBA); frame `i` is shown at `i × 200 ms`. A frame
//! that differs from the one before goes to `Recorder::frame_changed` with the rows that changed
//! (the gateway's loop would pass the damage); `tick` runs every 50 ms of virtual time. Prints one
//! JSON object: bytes per hour before and after `--idle-from` (segments by start time), the
//! recorder's CPU (its calls only, thread `schedstat`) and the resident memory it added.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use portcullis_core::Rect;
use portcullis_recorder::encoder::{EncoderSettings, H264Encoder};
use portcullis_recorder::{Recorder, RecorderConfig};
use portcullis_recording::{generate_key, LocalDisk, RecordingWriter, SessionMeta};

type Error = Box<dyn std::error::Error>;

const FRAME_MS: u64 = 200;
const TICK_MS: u64 = 50;

fn thread_cpu_ns(f: &mut File) -> u64 {
    let mut s = String::new();
    if f.seek(SeekFrom::Start(0)).is_err() || f.read_to_string(&mut s).is_err() {
        return 0;
    }
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The rows (full width) where `a` and `b` differ, or `None`.
fn changed_rows(a: &[u8], b: &[u8], w: usize, h: usize) -> Option<Rect> {
    let row = w * 4;
    let differs = |y: usize| a[y * row..(y + 1) * row] != b[y * row..(y + 1) * row];
    let top = (0..h).find(|&y| differs(y))?;
    let bottom = (top..h).rev().find(|&y| differs(y))?;
    let (mut left, mut right) = (w, 0);
    for y in top..=bottom {
        let (ra, rb) = (&a[y * row..(y + 1) * row], &b[y * row..(y + 1) * row]);
        if let Some(x) = (0..w).find(|&x| ra[x * 4..x * 4 + 4] != rb[x * 4..x * 4 + 4]) {
            left = left.min(x);
            let x2 = (x..w)
                .rev()
                .find(|&x| ra[x * 4..x * 4 + 4] != rb[x * 4..x * 4 + 4])
                .unwrap_or(x);
            right = right.max(x2);
        }
    }
    let c = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    Some(Rect::new(
        c(left),
        c(top),
        c(right + 1 - left),
        c(bottom + 1 - top),
    ))
}

fn main() -> Result<(), Error> {
    let mut it = std::env::args().skip(1);
    let mut pos = Vec::new();
    let mut enc = EncoderSettings::default();
    let mut cfg = RecorderConfig::default();
    let (mut w, mut h) = (1920usize, 1080usize);
    let mut idle_from_s = f64::INFINITY;
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--preset" => enc.preset = val()?,
            "--tune" => enc.tune = val()?,
            "--crf" => enc.crf = val()?.parse()?,
            "--draft-crf" => enc.draft_crf = Some(val()?.parse()?).filter(|&d| d > 0),
            "--refine-ms" => cfg.refine_after_ms = val()?.parse()?,
            "--lookahead" => enc.lookahead = val()?.parse()?,
            "--x264" => enc.x264_params = val()?,
            "--key-secs" => cfg.keyframe_max_ms = val()?.parse::<u64>()? * 1000,
            "--idle-from" => idle_from_s = val()?.parse()?,
            "--width" => w = val()?.parse()?,
            "--height" => h = val()?.parse()?,
            s if s.starts_with("--") => return Err(format!("unknown option {s}").into()),
            s => pos.push(s.to_owned()),
        }
    }
    let [source, dir] = pos.as_slice() else {
        return Err("usage: reencode SOURCE OUT_DIR [options]".into());
    };
    cfg.encoder = enc.clone();
    let idle_from_ms = (idle_from_s * 1000.0) as u64;

    let mut ff = Command::new("ffmpeg")
        .args([
            "-v", "error", "-i", source, "-f", "rawvideo", "-pix_fmt", "rgba", "-",
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut input = BufReader::with_capacity(1 << 20, ff.stdout.take().ok_or("no stdout")?);
    let mut prev = vec![0u8; w * h * 4];
    let mut cur = vec![0u8; w * h * 4];

    // Load FFmpeg's and x264's code before measuring: what is left is what a session pays.
    drop(H264Encoder::new(
        u32::try_from(w)?,
        u32::try_from(h)?,
        &enc,
    )?);
    std::fs::create_dir_all(dir)?;
    let storage = LocalDisk::open(PathBuf::from(dir))?;
    let id = format!("{:08x}-0000-4000-8000-000000000000", std::process::id());
    let meta = SessionMeta {
        session: id.clone(),
        user: "bench".into(),
        user_id: String::new(),
        target: "capture".into(),
        client_addr: "127.0.0.1".into(),
        started_at_ms: 0,
        screen_search: None,
    };
    let writer = RecordingWriter::create(&storage, Arc::new(generate_key()), meta)?;
    let rss0 = rss_kib();
    let mut rss_max = rss0;
    let key_secs = cfg.keyframe_max_ms / 1000;
    let refine_ms = cfg.refine_after_ms;
    let mut rec = Recorder::new(writer, cfg);
    let mut cpu = File::open("/proc/thread-self/schedstat")?;
    let mut cpu_ns = [0u64; 2]; // [active, idle]
    let mut frames = [0u64; 2];
    let (wu, hu) = (u32::try_from(w)?, u32::try_from(h)?);
    let mut i = 0u64;
    let mut first = true;
    while input.read_exact(&mut cur).is_ok() {
        let t = i * FRAME_MS;
        let phase = usize::from(t >= idle_from_ms);
        let change = if first {
            Some(Rect::new(0, 0, wu, hu))
        } else {
            changed_rows(&prev, &cur, w, h)
        };
        let c0 = thread_cpu_ns(&mut cpu);
        if let Some(r) = change {
            rec.frame_changed(t, &cur, wu, hu, &[r])?;
            frames[phase] += 1;
        }
        for k in 0..FRAME_MS / TICK_MS {
            rec.tick(t + k * TICK_MS)?;
        }
        cpu_ns[phase] += thread_cpu_ns(&mut cpu) - c0;
        rss_max = rss_max.max(rss_kib());
        first = false;
        std::mem::swap(&mut prev, &mut cur);
        i += 1;
    }
    let end = i * FRAME_MS;
    let c0 = thread_cpu_ns(&mut cpu);
    rec.finish(end, "reencode finished", 0)?;
    cpu_ns[usize::from(end >= idle_from_ms)] += thread_cpu_ns(&mut cpu) - c0;
    let _ = ff.wait();

    // Bytes per phase from the manifest (segments by start time).
    let manifest = std::fs::read_to_string(PathBuf::from(dir).join(&id).join("manifest.jsonl"))?;
    let mut bytes = [0u64; 2];
    let mut keys = [0u64; 2];
    for line in manifest.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let e = &v["body"]["entry"];
        if e["type"] != "segment" {
            continue;
        }
        let start = e["start_ms"].as_u64().unwrap_or(0);
        let p = usize::from(start >= idle_from_ms);
        bytes[p] += e["video"]["len"].as_u64().unwrap_or(0)
            + e["thumb"]["len"].as_u64().unwrap_or(0)
            + e["events"]["len"].as_u64().unwrap_or(0)
            + line.len() as u64
            + 1;
        keys[p] += u64::from(e["key"] == true);
    }
    let secs = [
        (end.min(idle_from_ms)) as f64 / 1000.0,
        end.saturating_sub(idle_from_ms) as f64 / 1000.0,
    ];
    let per_hour = |b: u64, s: f64| {
        if s > 0.0 {
            b as f64 * 3600.0 / s / 1e6
        } else {
            0.0
        }
    };
    let pct = |ns: u64, s: f64| {
        if s > 0.0 {
            ns as f64 / 1e9 / s * 100.0
        } else {
            0.0
        }
    };
    let out = serde_json::json!({
        "settings": format!("{enc:?}"),
        "refine_after_ms": refine_ms,
        "key_secs": key_secs,
        "id": id,
        "seconds": end as f64 / 1000.0,
        "active": {"seconds": secs[0], "frames": frames[0], "keys": keys[0], "bytes": bytes[0], "mb_per_hour": per_hour(bytes[0], secs[0]), "cpu_pct": pct(cpu_ns[0], secs[0])},
        "idle": {"seconds": secs[1], "frames": frames[1], "keys": keys[1], "bytes": bytes[1], "mb_per_hour": per_hour(bytes[1], secs[1]), "cpu_pct": pct(cpu_ns[1], secs[1])},
        "rss_added_mib": (rss_max.saturating_sub(rss0)) as f64 / 1024.0,
    });
    println!("{out}");
    Ok(())
}
