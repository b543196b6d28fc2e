#![allow(clippy::unwrap_used)]
//! The recorder against FFmpeg's own tools: what it writes must probe, play and show the right
//! picture at the right time.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use portcullis_core::session::SessionEvent;
use portcullis_core::Rect;
use portcullis_recorder::encoder::{EncoderSettings, H264Encoder, Pixels};
use portcullis_recorder::recorder::Screen;
use portcullis_recorder::{Recorder, RecorderConfig};
use portcullis_recording::catalog::{detail, read_piece, Piece};
use portcullis_recording::{generate_key, verify, LocalDisk, RecordingWriter, SessionMeta};

fn picture(w: u32, h: u32, red_box: bool) -> Vec<u8> {
    let mut px = vec![0u8; (w * h * 4) as usize];
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * 4) as usize;
            let inside = red_box && (100..200).contains(&x) && (100..200).contains(&y);
            let c = if inside { [230, 20, 20] } else { [40, 90, 160] };
            px[i..i + 3].copy_from_slice(&c);
        }
    }
    px
}

/// Ticks `r` every 100 ms from `t` up to `until` (the gateway's loop ticks at least that often).
fn tick_until(r: &mut Recorder, t: &mut u64, until: u64) {
    while *t < until {
        *t += 100;
        r.tick(*t).unwrap();
    }
}

/// What `ffprobe -v error ARGS FILE` prints.
fn ffprobe(file: &Path, args: &[&str]) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ffprobe_duration(file: &Path) -> f64 {
    ffprobe(
        file,
        &["-show_entries", "format=duration", "-of", "csv=p=0"],
    )
    .trim()
    .parse()
    .unwrap()
}

/// RGB of pixel (x, y) of the frame on screen at `t` seconds: the fps filter resamples the
/// variable frame rate to what is displayed every 20 ms, then trim starts at `t` (a plain `-ss`
/// picks the first frame at or after `t`, and drops earlier frames before the filter sees them).
fn pixel_at(file: &Path, t: f64, w: u32, x: u32, y: u32) -> [u8; 3] {
    let frame = frame_at(file, t);
    let i = ((y * w + x) * 3) as usize;
    [frame[i], frame[i + 1], frame[i + 2]]
}

/// The frame on screen at `t` seconds, RGB (see [`pixel_at`]).
fn frame_at(file: &Path, t: f64) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args([
            "-vf",
            &format!("tpad=stop_mode=clone:stop_duration=10,fps=50,trim=start={t}"),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn recording_probes_plays_and_shows_changes_at_their_time() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    let meta = SessionMeta {
        session: "rec1".into(),
        user: "alice".into(),
        user_id: "u_alice".into(),
        target: "t".into(),
        client_addr: "127.0.0.1".into(),
        started_at_ms: 0,
        screen_search: None,
    };
    let writer = RecordingWriter::create(&disk, Arc::clone(&key), meta).unwrap();
    let cfg = RecorderConfig::default();
    let mut r = Recorder::new(writer, cfg);
    let (w, h) = (640, 480);
    let plain = picture(w, h, false);
    let red = picture(w, h, true);
    r.frame(0, &plain, w, h).unwrap();
    r.event(
        50,
        &SessionEvent::Keys {
            text: "ls<Enter>".into(),
        },
    );
    let mut t = 0;
    tick_until(&mut r, &mut t, 2000);
    // Only the box changed: only it is converted again.
    r.frame_changed(2000, &red, w, h, &[Rect::new(100, 100, 100, 100)])
        .unwrap();
    tick_until(&mut r, &mut t, 3000);
    // A resize: the next part is 800x600.
    r.resize(3000).unwrap();
    let big = picture(800, 600, true);
    r.frame(3000, &big, 800, 600).unwrap();
    tick_until(&mut r, &mut t, 4500);
    r.finish(4500, "the target closed the session", 1).unwrap();

    let v = verify(&disk, "rec1", &key.verifying_key()).unwrap();
    assert!(v.is_intact(), "{:?}", v.problem);
    assert_eq!(v.duration_ms, 4500);
    let part1 = dir.path().join("rec1/video-1.mp4");
    let part2 = dir.path().join("rec1/video-2.mp4");
    let d1 = ffprobe_duration(&part1);
    assert!((d1 - 3.0).abs() < 0.05, "part 1 lasts {d1}");
    // Every part keeps the recording clock: part 2 runs from 3.0 s to 4.5 s.
    let d2 = ffprobe_duration(&part2);
    assert!((d2 - 4.5).abs() < 0.05, "part 2 ends at {d2}");
    let red_late = pixel_at(&part2, 0.5, 800, 150, 150);
    assert!(red_late[0] > 180, "part 2: {red_late:?}");
    // The red box appears at 2.0 s, not before.
    let before = pixel_at(&part1, 1.9, w, 150, 150);
    let after = pixel_at(&part1, 2.1, w, 150, 150);
    let beside = pixel_at(&part1, 2.1, w, 250, 150);
    assert!(
        beside[2] > 120 && beside[0] < 90,
        "beside the box: {beside:?}"
    );
    assert!(before[2] > 120 && before[0] < 90, "before: {before:?}");
    assert!(after[0] > 180 && after[2] < 90, "after: {after:?}");
    let events = std::fs::read_to_string(dir.path().join("rec1/events.jsonl")).unwrap();
    assert!(
        events.contains(r#""type":"keys","text":"ls<Enter>""#),
        "{events}"
    );
    assert!(events.contains(r#""type":"session_end""#), "{events}");
}

/// The mean RGB of a JPEG (decoded by FFmpeg's own tools).
fn jpeg_mean(jpeg: &[u8]) -> [f64; 3] {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.jpg");
    std::fs::write(&file, jpeg).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sum = [0f64; 3];
    for px in out.stdout.chunks_exact(3) {
        for (s, v) in sum.iter_mut().zip(px) {
            *s += f64::from(*v);
        }
    }
    let n = (out.stdout.len() / 3) as f64;
    sum.map(|s| s / n)
}

/// A session's first picture is often still black (the server has not drawn yet); the desktop
/// comes half a second later and then stays. The thumbnail a reviewer sees when hovering at 13 s
/// must show that desktop, not the black first picture (issue 15, item 8), and every thumbnail
/// goes with the segment that holds its picture.
#[test]
fn an_unchanged_screen_gets_its_thumbnail_after_a_black_start() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let key = Arc::new(generate_key());
    let meta = SessionMeta {
        session: "thumbs".into(),
        user: "alice".into(),
        user_id: "u_alice".into(),
        target: "t".into(),
        client_addr: "127.0.0.1".into(),
        started_at_ms: 0,
        screen_search: None,
    };
    let writer = RecordingWriter::create(&disk, Arc::clone(&key), meta).unwrap();
    let mut r = Recorder::new(writer, RecorderConfig::default());
    let (w, h) = (320, 240);
    let black = vec![0u8; (w * h * 4) as usize];
    let desktop = picture(w, h, false);
    r.frame(0, &black, w, h).unwrap();
    let mut t = 0;
    while t < 22_000 {
        t += 100;
        if t == 500 {
            r.frame(t, &desktop, w, h).unwrap();
        }
        // What the gateway's loop does on every round.
        r.settled_now(t);
        r.tick(t).unwrap();
    }
    r.finish(22_000, "closed", 1).unwrap();

    let d = detail(&disk, "thumbs").unwrap();
    let at13 = d
        .thumbnails
        .iter()
        .rev()
        .find(|th| th.t_ms <= 13_000)
        .unwrap();
    let jpeg = read_piece(&disk, "thumbs", &d, Piece::Thumbnail(at13.seq)).unwrap();
    let mean = jpeg_mean(&jpeg);
    // The desktop is (40, 90, 160).
    assert!(
        mean[2] > 120.0 && mean[1] > 60.0,
        "the thumbnail at 13 s (t_ms {}) is not the desktop: {mean:?}; thumbnails {:?}",
        at13.t_ms,
        d.thumbnails
    );
    // Each thumbnail lies in its segment's time: none shows a picture from before its time.
    for th in &d.thumbnails {
        let seg = d.segments.iter().find(|s| s.seq == th.seq).unwrap();
        assert_eq!(th.t_ms, seg.start_ms);
    }
    // Still a few, not one per fragment.
    assert!(d.thumbnails.len() <= 3, "{:?}", d.thumbnails);
}

fn writer(disk: &LocalDisk, id: &str) -> RecordingWriter {
    let meta = SessionMeta {
        session: id.into(),
        user: "alice".into(),
        user_id: "u_alice".into(),
        target: "t".into(),
        client_addr: "127.0.0.1".into(),
        started_at_ms: 0,
        screen_search: None,
    };
    RecordingWriter::create(disk, Arc::new(generate_key()), meta).unwrap()
}

/// (start_ms, end_ms, key) of every segment in the manifest so far.
fn segments(dir: &Path, id: &str) -> Vec<(u64, u64, bool)> {
    let manifest = std::fs::read_to_string(dir.join(id).join("manifest.jsonl")).unwrap();
    manifest
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let e = &v["body"]["entry"];
            (e["type"] == "segment").then(|| {
                (
                    e["start_ms"].as_u64().unwrap(),
                    e["end_ms"].as_u64().unwrap(),
                    e["key"] == true,
                )
            })
        })
        .collect()
}

/// A picture with a moving box: every frame differs.
fn moving(w: u32, h: u32, n: u32) -> Vec<u8> {
    let mut px = picture(w, h, false);
    let x0 = (n * 8) % (w - 16);
    for y in 0..16 {
        for x in x0..x0 + 16 {
            let i = ((y * w + x) * 4) as usize;
            px[i..i + 3].copy_from_slice(&[250, 250, 250]);
        }
    }
    px
}

#[test]
fn keyframes_come_by_time_only_and_never_while_the_screen_is_still() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let cfg = RecorderConfig {
        keyframe_max_ms: 5000,
        ..RecorderConfig::default()
    };
    let mut r = Recorder::new(writer(&disk, "keys"), cfg);
    let (w, h) = (320, 240);
    // 12 s of a picture changing 5 times a second (60 new pictures: no count bounds keys)...
    let mut t = 0;
    for n in 0..60 {
        r.frame(t, &moving(w, h, n), w, h).unwrap();
        for _ in 0..4 {
            t += 50;
            r.tick(t).unwrap();
        }
    }
    // ...then a minute with nothing new.
    tick_until(&mut r, &mut t, 72_000);
    r.finish(t, "done", 1).unwrap();
    let segs = segments(dir.path(), "keys");
    let keys: Vec<u64> = segs.iter().filter(|s| s.2).map(|s| s.0).collect();
    // (At 10 s the tick cuts a fragment before the change of the same millisecond comes: the
    // change is 1 ms later.)
    assert_eq!(keys, [0, 5000, 10_001], "{segs:?}");
    // The still minute is on the timeline (to its end, or 1 ms past it when a repeat falls on
    // the last instant), without a keyframe.
    let end = segs.last().unwrap().1;
    assert!((t..=t + 1).contains(&end), "ends at {end}, not {t}");
}

#[test]
fn a_still_screen_lets_go_of_its_encoder_and_the_next_change_plays_on() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let cfg = RecorderConfig {
        release_after_ms: 3000,
        idle_fragment_ms: 1000,
        ..RecorderConfig::default()
    };
    let mut r = Recorder::new(writer(&disk, "still"), cfg);
    let (w, h) = (320, 240);
    let mut t = 0;
    r.frame(0, &picture(w, h, false), w, h).unwrap();
    assert!(r.holds_encoder());
    tick_until(&mut r, &mut t, 2000);
    assert!(r.holds_encoder(), "let go before release_after_ms");
    tick_until(&mut r, &mut t, 5000);
    assert!(!r.holds_encoder(), "a still screen keeps its encoder");
    // Still for longer than the repeats encoded ahead last (60 idle fragments of 1 s): events
    // are still committed within a second...
    tick_until(&mut r, &mut t, 66_000);
    r.event(66_000, &SessionEvent::EventsLost { count: 1 });
    tick_until(&mut r, &mut t, 67_100);
    let manifest = std::fs::read_to_string(dir.path().join("still/manifest.jsonl")).unwrap();
    let committed = manifest.lines().any(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        v["body"]["entry"]["type"] == "events"
    });
    assert!(
        committed,
        "an event after the still hour is not committed:\n{manifest}"
    );
    // ...then a change: a new encoder, in the same file.
    tick_until(&mut r, &mut t, 70_000);
    let boxed = picture(w, h, true);
    r.frame_changed(70_000, &boxed, w, h, &[Rect::new(100, 100, 100, 100)])
        .unwrap();
    assert!(r.holds_encoder());
    tick_until(&mut r, &mut t, 72_000);
    r.finish(t, "done", 1).unwrap();

    assert!(!dir.path().join("still/video-2.mp4").exists(), "a new part");
    let segs = segments(dir.path(), "still");
    // The idle fragments kept coming while the repeats lasted (one a second)...
    let idle = segs.iter().filter(|s| s.0 >= 5000 && s.1 <= 60_000).count();
    assert!(idle >= 50, "{idle} fragments in the still minute: {segs:?}");
    // ...the timeline has no hole, and the change is a keyframe.
    assert_eq!(segs.first().unwrap().0, 0);
    for pair in segs.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "a hole: {segs:?}");
    }
    assert!(segs.iter().any(|s| s.0 == 70_000 && s.2), "{segs:?}");
    let end = segs.last().unwrap().1;
    assert!((t..=t + 1).contains(&end), "ends at {end}, not {t}");

    let part = dir.path().join("still/video-1.mp4");
    assert!((ffprobe_duration(&part) - 72.0).abs() < 0.1);
    // FFmpeg decodes it all without a complaint.
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&part)
        .args([
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "-1",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && complaints.is_empty(),
        "{complaints}"
    );
    let blue = [40, 90, 160];
    let red = [230, 20, 20];
    let near = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(x, y)| x.abs_diff(y) < 24);
    for (at, x, want) in [
        (4.0, 150, blue),
        (65.0, 150, blue),
        (71.0, 150, red),
        (71.0, 20, blue),
    ] {
        let got = pixel_at(&part, at, w, x, 150);
        assert!(near(got, want), "at {at} s, x {x}: {got:?}, want {want:?}");
    }
}

/// A desktop of odd size as the gateway's recorder reads it: unpadded rows, under a lock.
struct OddDesktop {
    rgba: Vec<u8>,
    width: u32,
    height: u32,
    /// How often it was read (each read holds the lock).
    reads: std::cell::Cell<u32>,
}

impl Screen for OddDesktop {
    fn read(&self, width: u32, height: u32, f: &mut dyn FnMut(&Pixels<'_>)) -> bool {
        self.reads.set(self.reads.get() + 1);
        if (width, height) != (self.width, self.height) {
            return false;
        }
        f(&Pixels {
            rgba: &self.rgba,
            stride: self.width,
            width: self.width,
            height: self.height,
        });
        true
    }
}

#[test]
fn a_desktop_is_read_in_place_whatever_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let mut r = Recorder::new(writer(&disk, "odd"), RecorderConfig::default());
    let (w, h) = (321, 241);
    let mut desk = OddDesktop {
        rgba: picture(w, h, false),
        width: w,
        height: h,
        reads: Default::default(),
    };
    assert!(r.frame_changed_on(0, &desk, w, h, &[]).unwrap());
    // The whole desktop (a new encoder), read in bands of 64 rows: the lock is never held for
    // a whole large change.
    assert_eq!(desk.reads.get(), 4);
    // The desktop was resized, the recorder not told yet: nothing read, the caller keeps the
    // damage.
    let resized = OddDesktop {
        rgba: picture(w + 2, h, true),
        width: w + 2,
        height: h,
        reads: Default::default(),
    };
    assert!(!r.frame_changed_on(500, &resized, w, h, &[]).unwrap());
    desk.rgba = picture(w, h, true);
    let boxed = [Rect::new(100, 100, 100, 100)];
    assert!(r.frame_changed_on(1000, &desk, w, h, &boxed).unwrap());
    let mut t = 1000;
    tick_until(&mut r, &mut t, 3000);
    r.finish(t, "done", 1).unwrap();
    let part = dir.path().join("odd/video-1.mp4");
    let size = ffprobe(
        &part,
        &["-show_entries", "stream=width,height", "-of", "csv=p=0"],
    );
    assert_eq!(size.trim(), "322,242");
    let near = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(x, y)| x.abs_diff(y) < 24);
    for (at, x, y, want) in [
        (0.5, 150, 150, [40, 90, 160]),
        (2.0, 150, 150, [230, 20, 20]),
        (2.0, 310, 230, [40, 90, 160]),
    ] {
        let got = pixel_at(&part, at, 322, x, y);
        assert!(
            near(got, want),
            "at {at} s, ({x}, {y}): {got:?}, want {want:?}"
        );
    }
}

#[test]
fn with_lookahead_a_change_is_in_a_fragment_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let mut cfg = RecorderConfig::default();
    cfg.encoder.lookahead = 4;
    // x264 turns its macroblock tree (what the lookahead is for) off at the default qcomp 1.
    cfg.encoder.x264_params = "qcomp=0.6".into();
    let mut r = Recorder::new(writer(&disk, "la"), cfg);
    let (w, h) = (320, 240);
    let plain = picture(w, h, false);
    let red = picture(w, h, true);
    r.frame(0, &plain, w, h).unwrap();
    let mut t = 0;
    tick_until(&mut r, &mut t, 2000);
    r.frame_changed(2000, &red, w, h, &[Rect::new(100, 100, 100, 100)])
        .unwrap();
    // The gateway ticks at least once a second while nothing changes.
    for _ in 0..2 {
        t += 1000;
        r.tick(t).unwrap();
    }
    let segs = segments(dir.path(), "la");
    assert!(
        segs.iter().any(|s| s.0 <= 2000 && s.1 > 2000),
        "the change at 2.0 s is not on disk at {t} ms: {segs:?}"
    );
    r.finish(4500, "done", 1).unwrap();
    let part = dir.path().join("la/video-1.mp4");
    assert!((ffprobe_duration(&part) - 4.5).abs() < 0.05);
    let before = pixel_at(&part, 1.9, w, 150, 150);
    let after = pixel_at(&part, 2.1, w, 150, 150);
    assert!(before[2] > 120 && before[0] < 90, "before: {before:?}");
    assert!(after[0] > 180 && after[2] < 90, "after: {after:?}");
}

/// Text-like detail: 8×16 cells of pseudo-random dark strokes on white, different per `seed`.
fn glyphs(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut px = vec![255u8; (w * h * 4) as usize];
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    for cy in 0..h / 16 {
        for cx in 0..w / 8 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            for y in 3..13 {
                for x in 1..7 {
                    if (state >> ((y * 3 + x) % 32)) & 1 == 1 {
                        let i = (((cy * 16 + y) * w + cx * 8 + x) * 4) as usize;
                        px[i..i + 3].copy_from_slice(&[20, 20, 20]);
                    }
                }
            }
        }
    }
    px
}

/// Mean absolute difference between a decoded RGB frame and the RGBA source.
fn error(rgb: &[u8], rgba: &[u8]) -> f64 {
    let sum: u64 = rgb
        .chunks_exact(3)
        .zip(rgba.chunks_exact(4))
        .map(|(a, b)| (0..3).map(|c| u64::from(a[c].abs_diff(b[c]))).sum::<u64>())
        .sum();
    sum as f64 / rgb.len() as f64
}

/// The tick helper's, and the gateway's at most (it also wakes for a due refinement).
fn drafts(id: &str, disk: &LocalDisk) -> Recorder {
    let mut cfg = RecorderConfig {
        refine_after_ms: 1000,
        ..RecorderConfig::default()
    };
    cfg.encoder.crf = 18;
    cfg.encoder.draft_crf = Some(42);
    Recorder::new(writer(disk, id), cfg)
}

/// Asserts that every `fine` error is under a third of every `coarse` one (a draft at crf 42
/// loses several times what crf 18 loses of such detail, whatever the x264 build).
fn assert_refined(fine: &[(&str, f64)], coarse: &[(&str, f64)]) {
    for (f, ef) in fine {
        for (c, ec) in coarse {
            assert!(
                ef * 3.0 < *ec,
                "{f} (error {ef:.1}) is not finer than {c} (error {ec:.1}): {fine:?} {coarse:?}"
            );
        }
    }
}

#[test]
fn a_picture_that_stays_is_refined_and_one_replaced_sooner_stays_a_draft() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let mut r = drafts("draft", &disk);
    let (w, h) = (320, 240);
    let pics: Vec<Vec<u8>> = (0..4).map(|n| glyphs(w, h, n)).collect();
    let mut t = 0;
    // A stays 2 s: a draft, refined 1 s after it came.
    r.frame(0, &pics[0], w, h).unwrap();
    tick_until(&mut r, &mut t, 2000);
    // B is replaced by C after 200 ms: B stays a draft; C stays and is refined.
    r.frame(2000, &pics[1], w, h).unwrap();
    tick_until(&mut r, &mut t, 2200);
    r.frame(2200, &pics[2], w, h).unwrap();
    tick_until(&mut r, &mut t, 4000);
    // D comes 100 ms before the end: a draft (and a repeat of it when the fragment is cut at
    // 4.1 s), refined after the last frame, as the picture a recording ends on is a reviewer's
    // to read (the player shows it from the end on: read past the end).
    r.frame(4000, &pics[3], w, h).unwrap();
    tick_until(&mut r, &mut t, 4100);
    r.finish(4100, "done", 1).unwrap();

    let part = dir.path().join("draft/video-1.mp4");
    let at = |s: f64, pic: usize| error(&frame_at(&part, s), &pics[pic]);
    assert_refined(
        &[
            ("A after 1 s", at(1.5, 0)),
            ("C after 1 s", at(3.5, 2)),
            ("D at the end", at(4.2, 3)),
        ],
        &[
            ("A before 1 s", at(0.5, 0)),
            ("B", at(2.1, 1)),
            ("C before 1 s", at(2.5, 2)),
            ("D before its refinement", at(4.05, 3)),
        ],
    );
    // The refinements are frames of their own (D's 1 ms after the last frame), and the
    // timeline ends at the end.
    let times = packet_times(&part);
    assert_eq!(times.last().copied(), Some(4.101), "{times:?}");
    assert!(times.contains(&1.0) && times.contains(&3.2), "{times:?}");
    let duration = ffprobe_duration(&part);
    assert!((4.1..=4.103).contains(&duration), "{duration}");
}

#[test]
fn a_blinking_cursor_does_not_keep_the_screen_a_draft() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let mut r = drafts("blink", &disk);
    let (w, h) = (320, 240);
    let text = glyphs(w, h, 7);
    // A cursor in the last text row blinks every 500 ms (as GNOME Terminal's, Windows'):
    // every change comes sooner than the refinement's second.
    let mut on = text.clone();
    for y in 224..240 {
        for x in 0..8 {
            let i = ((y * w + x) * 4) as usize;
            on[i..i + 3].copy_from_slice(&[0, 0, 0]);
        }
    }
    let mut t = 0;
    r.frame(0, &text, w, h).unwrap();
    for n in 1..=12u64 {
        tick_until(&mut r, &mut t, n * 500);
        let pic = if n % 2 == 1 { &on } else { &text };
        r.frame_changed(n * 500, pic, w, h, &[Rect::new(0, 224, 8, 16)])
            .unwrap();
    }
    tick_until(&mut r, &mut t, 6500);
    r.finish(6500, "done", 1).unwrap();
    let part = dir.path().join("blink/video-1.mp4");
    // The text above the cursor's row: a draft at first, refined within 3 s.
    let rows = (w * 224 * 4) as usize;
    let above = |s: f64| {
        let f = frame_at(&part, s);
        error(&f[..rows / 4 * 3], &text[..rows])
    };
    assert_refined(
        &[("after 3 s", above(3.2)), ("after 6 s", above(6.2))],
        &[("at first", above(0.3))],
    );
}

/// The presentation times of a video's packets, in seconds.
fn packet_times(file: &Path) -> Vec<f64> {
    let args = [
        "-select_streams",
        "v",
        "-show_entries",
        "packet=pts_time",
        "-of",
        "csv=p=0",
    ];
    ffprobe(file, &args)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').parse().unwrap())
        .collect()
}

/// The durability promise for a screen that changes a little and often (a clock, a cursor, the
/// scale benchmark's probe square): what was on screen is in a signed fragment on disk within
/// the fragment interval plus a frame, drafts and refinements included.
#[test]
fn a_small_change_twice_a_second_is_on_disk_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let mut r = Recorder::new(writer(&disk, "sq"), RecorderConfig::default());
    let (w, h) = (640, 480);
    let mut px = picture(w, h, false);
    r.frame(0, &px, w, h).unwrap();
    let mut t = 0u64;
    let mut worst = 0u64;
    let mut n = 0u32;
    let mut ages = Vec::new();
    while t < 20_000 {
        // A 24×24 square changes colour every 400 ms; the loop ticks every 100 ms.
        if t.is_multiple_of(400) && t > 0 {
            n += 1;
            let c = if n.is_multiple_of(2) {
                [240, 240, 0]
            } else {
                [0, 200, 240]
            };
            for y in 300..324u32 {
                for x in 300..324u32 {
                    let i = ((y * w + x) * 4) as usize;
                    px[i..i + 3].copy_from_slice(&c);
                }
            }
            r.frame_changed(t, &px, w, h, &[Rect::new(300, 300, 24, 24)])
                .unwrap();
        }
        r.tick(t).unwrap();
        let end = segments(dir.path(), "sq")
            .iter()
            .map(|s| s.1)
            .max()
            .unwrap_or(0);
        let age = t.saturating_sub(end);
        ages.push((t, age));
        worst = worst.max(age);
        t += 100;
    }
    assert!(
        worst <= 2000,
        "fragments up to {worst} ms old: {:?}",
        ages.iter().filter(|a| a.1 > 1500).collect::<Vec<_>>()
    );
}

#[test]
fn without_a_lookahead_each_picture_comes_out_of_the_call_that_gave_it() {
    // Constant-rate input: x264 holds no frame to learn its duration (no extra picture in
    // memory, no repeat needed to push the last change out of a still screen).
    let (w, h) = (320, 240);
    let mut enc = H264Encoder::new(w, h, &EncoderSettings::default()).unwrap();
    for (n, pts) in [0i64, 200, 1400, 1450, 9000].into_iter().enumerate() {
        let px = moving(w, h, u32::try_from(n).unwrap());
        let out = enc
            .encode(&px, &[Rect::new(0, 0, w, h)], pts, n == 0)
            .unwrap();
        assert_eq!(out.len(), 1, "picture {n} at {pts} ms");
        assert_eq!(out[0].pts_ms, pts);
        assert_eq!(out[0].key, n == 0);
        assert_eq!(enc.held(), 0);
    }
    assert!(enc.flush().unwrap().is_empty());
}

/// Luma of an RGB colour as the decoder gives it back (BT.601, full range).
fn luma(rgb: [u8; 3]) -> i32 {
    (299 * i32::from(rgb[0]) + 587 * i32::from(rgb[1]) + 114 * i32::from(rgb[2])) / 1000
}

/// Every picture of a recording's video, step by step.
fn all_pictures(
    video: &mut portcullis_recorder::decoder::RecordingVideo<'_>,
) -> Vec<portcullis_recorder::decoder::Picture> {
    use portcullis_recorder::decoder::Step;
    let mut out = Vec::new();
    loop {
        match video.step().unwrap() {
            Step::Picture(p) => out.push(p),
            Step::Working => {}
            Step::End => return out,
        }
    }
}

#[test]
fn a_recording_decodes_again_picture_by_picture_across_parts() {
    use portcullis_recorder::decoder::RecordingVideo;

    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let mut r = Recorder::new(writer(&disk, "dec"), RecorderConfig::default());
    let (w, h) = (320, 240);
    let plain = picture(w, h, false);
    let red = picture(w, h, true);
    let mut t = 0;
    r.frame(0, &plain, w, h).unwrap();
    tick_until(&mut r, &mut t, 2000);
    r.frame_changed(2000, &red, w, h, &[Rect::new(100, 100, 100, 100)])
        .unwrap();
    tick_until(&mut r, &mut t, 3000);
    r.resize(3000).unwrap();
    let big = picture(480, 360, false);
    r.frame(3000, &big, 480, 360).unwrap();
    tick_until(&mut r, &mut t, 4500);
    r.finish(4500, "done", 1).unwrap();

    let d = detail(&disk, "dec").unwrap();
    let mut video = RecordingVideo::new(&disk, "dec", &d.scan);
    assert_eq!(video.end_ms(), 4500);
    let pictures = all_pictures(&mut video);
    assert_eq!(video.passed_over(), 0);
    let times: Vec<u64> = pictures.iter().map(|p| p.time_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let at = |ms: u64| pictures.iter().rev().find(|p| p.time_ms <= ms).unwrap();
    let (blue, red_px) = (luma([40, 90, 160]), luma([230, 20, 20]));
    let near = |v: u8, want: i32| (i32::from(v) - want).abs() <= 12;
    let first = at(1000);
    assert_eq!((first.width, first.height), (w, h));
    assert!(near(first.luma[(150 * w + 150) as usize], blue));
    let second = at(2500);
    assert!(second.time_ms >= 2000);
    assert!(
        near(second.luma[(150 * w + 150) as usize], red_px),
        "{}",
        second.luma[(150 * w + 150) as usize]
    );
    assert!(near(second.luma[(10 * w + 10) as usize], blue));
    let third = at(4000);
    assert_eq!((third.width, third.height), (480, 360));
    assert!(near(third.luma[(150 * 480 + 150) as usize], blue));

    // A fragment whose bytes no longer match the manifest is passed over, not decoded.
    let part = dir.path().join("dec").join("video-1.mp4");
    let mut bytes = std::fs::read(&part).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    std::fs::write(&part, bytes).unwrap();
    let mut video = RecordingVideo::new(&disk, "dec", &d.scan);
    let n = all_pictures(&mut video).len();
    assert!(video.passed_over() >= 1);
    assert!(n >= 1 && n < pictures.len(), "{n} of {}", pictures.len());
}

#[test]
fn catch_up_finds_pictures_that_stayed_not_their_refinements() {
    use portcullis_ocr::catchup::{Frame, Settler};
    use portcullis_recorder::decoder::RecordingVideo;

    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path()).unwrap();
    let mut r = Recorder::new(writer(&disk, "settle"), RecorderConfig::default());
    let (w, h) = (320, 240);
    let a = glyphs(w, h, 1);
    // B: A with its lower half new.
    let mut b = a.clone();
    let half = (w * h * 2) as usize;
    b[half..].copy_from_slice(&glyphs(w, h, 2)[half..]);
    let mut t = 0;
    r.frame(0, &a, w, h).unwrap();
    tick_until(&mut r, &mut t, 3000);
    r.frame_changed(3000, &b, w, h, &[Rect::new(0, h / 2, w, h / 2)])
        .unwrap();
    tick_until(&mut r, &mut t, 6000);
    r.finish(6000, "done", 1).unwrap();

    let d = detail(&disk, "settle").unwrap();
    let mut video = RecordingVideo::new(&disk, "settle", &d.scan);
    let mut settler = Settler::new(500, 2000);
    let mut moments = Vec::new();
    let mut decoded = 0;
    for p in all_pictures(&mut video) {
        decoded += 1;
        moments.extend(settler.push(Frame {
            time_ms: p.time_ms,
            width: p.width,
            height: p.height,
            luma: p.luma,
        }));
    }
    moments.extend(settler.finish(6000));
    // Drafts and their refinements were decoded, yet two pictures stayed.
    assert!(decoded >= 4, "{decoded}");
    let got: Vec<(u64, u32, u32)> = moments.iter().map(|m| (m.from_ms, m.y, m.h)).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    // (The recorder's first picture is followed by the same one 200 ms later.)
    assert!(got[0].0 <= 200 && (got[0].1, got[0].2) == (0, h), "{got:?}");
    assert!((3000..=3100).contains(&got[1].0), "{got:?}");
    // The lower half, with a few rows of context above.
    assert!(got[1].1 >= h / 2 - 16 && got[1].1 <= h / 2, "{got:?}");
    assert_eq!(got[1].1 + got[1].2, h);
    // What is read is the refinement (the last picture of each).
    assert!(
        moments[0].frame.time_ms >= 1000,
        "{:?}",
        moments[0].frame.time_ms
    );
}
