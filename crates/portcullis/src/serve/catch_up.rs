//! Reads, after the fact, the screens of closed recordings at the moments the live reader did
//! not read (the machine was busy, reading was off, the gateway stopped): its video is decoded
//! again (portcullis-recorder `decoder`, each piece checked against the manifest's hash), the
//! pictures that stayed on screen are found as the live reader finds settled changes
//! (portcullis-ocr `catchup`), and those the live reader did not read while they were up are
//! read with tesseract; their words, with their boxes, go to the search index only (a signed
//! recording does not grow). Only what the gateway signed is decoded: the manifest's lines
//! are checked against the recordings' key first, each piece against its line's hash. The
//! index keeps how far each recording was caught up, so a restart goes on from there; a
//! rebuilt index catches up again (the words come from the video). One thread (and its
//! tesseract) at idle priority (`SCHED_IDLE`: it gets a core only when nothing else, the live
//! reader's tesseract included, wants it), within the same CPU share ([`Budget`]). A
//! recording whose header says its screen was not to be read (`[ocr]` off, or without
//! `recordings`, when it was made) is not read afterwards either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_core::session::ScreenWord;
use portcullis_ocr::catchup::{read_live, Frame, Moment, Settler};
use portcullis_ocr::Tesseract;
use portcullis_recorder::decoder::{DecodeError, RecordingVideo, Step};
use portcullis_recording::scan::{scan, Depth};
use portcullis_web::{CatchUpJob, CaughtUp, Recordings, Search};
use tracing::{info, warn};

use super::screen_reader::{on_desktop, Budget, AT_MOST};

/// How often the reader looks for a recording to catch up when none waits.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// The shortest wait for the share.
const MIN_WAIT: Duration = Duration::from_millis(150);
/// Decoding is paced in slices of about this much work.
const SLICE: Duration = Duration::from_millis(100);
/// A live read this long after a moment's picture was replaced still counts as a read of it
/// (the event track's and the video's clocks differ by the recorder's tick).
const SLACK_MS: u64 = 250;
/// The same for tracks whose reads do not say how old their picture was (written before they
/// did): stamped when reading ended, seconds later.
const UNAGED_SLACK_MS: u64 = 10_000;

/// Starts the catch-up reader thread.
pub(super) fn start(
    search: Search,
    recordings: Recordings,
    tesseract: Tesseract,
    settle: Duration,
    budget: Arc<Budget>,
    stop: Arc<AtomicBool>,
) {
    let reader = Reader {
        search,
        recordings,
        tesseract,
        settle_ms: u64::try_from(settle.as_millis()).unwrap_or(500),
        budget,
    };
    let spawned = std::thread::Builder::new()
        .name("screen-catch-up".into())
        .spawn(move || {
            idle_priority();
            reader.run(&stop)
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the catch-up screen reader: moments the live reading missed stay unread");
    }
}

struct Reader {
    search: Search,
    recordings: Recordings,
    tesseract: Tesseract,
    settle_ms: u64,
    budget: Arc<Budget>,
}

/// Why a recording's catch-up stopped before its end.
enum Stopped {
    /// The gateway is stopping.
    Stopping,
    /// Its storage failed, or the machine stayed too busy to read: tried again later.
    Later(String),
    /// This FFmpeg cannot decode H.264: nothing can be caught up.
    NoDecoder(String),
}

/// Sleeps `d` in short steps; false when the gateway began stopping meanwhile.
fn rest(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
    }
    !stop.load(Ordering::SeqCst)
}

impl Reader {
    fn run(self, stop: &AtomicBool) {
        info!("catching up on recordings' screens the live reading missed (search)");
        while !stop.load(Ordering::SeqCst) {
            let Some(job) = self.search.next_catch_up() else {
                rest(LOOK_EVERY, stop);
                continue;
            };
            let mut read = CaughtUp {
                recording: job.recording.clone(),
                through_ms: job.from_ms,
                ..CaughtUp::default()
            };
            let started = Instant::now();
            let outcome = self.read_one(&job, &mut read, stop);
            let moments = read.moments.len();
            match outcome {
                Ok(()) => {
                    read.finished = true;
                    self.search.caught_up(read);
                    info!(recording = %job.recording, moments, took_s = started.elapsed().as_secs(), "recording's screen caught up");
                }
                Err(Stopped::Stopping) => {
                    self.search.caught_up(read);
                    return;
                }
                Err(Stopped::Later(e)) => {
                    read.failed = true;
                    self.search.caught_up(read);
                    warn!(recording = %job.recording, error = %e, "cannot read a recording to catch up its screen; tried again later, after the others");
                }
                Err(Stopped::NoDecoder(e)) => {
                    self.search.caught_up(read);
                    warn!(error = %e, "recordings' screens cannot be caught up (no H.264 decoder)");
                    return;
                }
            }
        }
    }

    /// Reads one recording's missed moments into `read`.
    fn read_one(
        &self,
        job: &CatchUpJob,
        read: &mut CaughtUp,
        stop: &AtomicBool,
    ) -> Result<(), Stopped> {
        let storage = self.recordings.storage.as_ref();
        // The manifest's lines as the gateway signed them (signatures checked; the data is
        // checked piece by piece as it is read).
        let walk = match scan(
            storage,
            &job.recording,
            Depth::Signed(&self.recordings.public_key),
        ) {
            Ok(walk) => walk,
            // Gone meanwhile: nothing to read.
            Err(portcullis_recording::StorageError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(Stopped::Later(e.to_string())),
        };
        if let Some(problem) = &walk.problem {
            warn!(recording = %job.recording, problem = %problem.what, "a recording's manifest does not check out: only what comes before the problem is caught up");
        }
        // The header (signed): this recording's, and its screen was meant to be read.
        let header = walk.bodies.first().and_then(|b| match &b.entry {
            portcullis_recording::manifest::Entry::Header { meta, .. } => Some(meta),
            _ => None,
        });
        match header {
            Some(meta) if meta.session != job.recording => {
                warn!(recording = %job.recording, names = %meta.session, "a recording's header names another session: its screen is not caught up");
                return Ok(());
            }
            Some(meta) if meta.screen_search == Some(false) => return Ok(()),
            Some(_) => {}
            None => return Ok(()),
        }
        let mut video = RecordingVideo::new(storage, &job.recording, &walk);
        let end_ms = video.end_ms();
        let mut settler = Settler::new(self.settle_ms, AT_MOST.as_millis() as u64);
        loop {
            // A slice of decoding, within the share (at idle priority: after everything else).
            self.wait_for_budget(stop)?;
            let started = Instant::now();
            let cpu_before = thread_cpu();
            let mut moments = Vec::new();
            let mut ended = false;
            while started.elapsed() < SLICE {
                match video.step() {
                    Ok(Step::Picture(p)) => moments.extend(settler.push(Frame {
                        time_ms: p.time_ms,
                        width: p.width,
                        height: p.height,
                        luma: p.luma,
                    })),
                    Ok(Step::Working) => {}
                    Ok(Step::End) => {
                        moments.extend(settler.finish(end_ms));
                        ended = true;
                        break;
                    }
                    Err(DecodeError::Storage(e)) => return Err(Stopped::Later(e.to_string())),
                    Err(e @ DecodeError::Ffmpeg { .. }) => {
                        return Err(Stopped::NoDecoder(e.to_string()))
                    }
                }
            }
            // The CPU the slice took (at idle priority on a busy machine, far less than its time).
            let used = match (cpu_before, thread_cpu()) {
                (Some(a), Some(b)) => b.saturating_sub(a),
                _ => started.elapsed(),
            };
            self.budget.spent(used);
            for moment in moments {
                self.read_moment(job, moment, read, stop)?;
            }
            if ended {
                if video.passed_over() > 0 {
                    warn!(recording = %job.recording, pieces = video.passed_over(), "parts of a recording's video could not be read to catch up its screen (damaged or not as listed)");
                }
                read.through_ms = read.through_ms.max(end_ms);
                return Ok(());
            }
        }
    }

    /// Reads one moment unless it was caught up before or the live reader read it.
    fn read_moment(
        &self,
        job: &CatchUpJob,
        moment: Moment,
        read: &mut CaughtUp,
        stop: &AtomicBool,
    ) -> Result<(), Stopped> {
        let slack = if job.reads_aged {
            SLACK_MS
        } else {
            UNAGED_SLACK_MS
        };
        if moment.from_ms < job.from_ms
            || read_live(&job.live_reads, moment.from_ms, moment.to_ms, slack)
        {
            return Ok(());
        }
        let (width, rows) = (moment.frame.width, moment.h);
        if width < 8 || rows < 8 || u64::from(width) * u64::from(rows) > portcullis_ocr::MAX_PIXELS
        {
            return Ok(());
        }
        self.wait_for_budget(stop)?;
        let started = Instant::now();
        let pixels = grey_rows(&moment.frame, moment.y, rows);
        let words = self.tesseract.read(width, rows, &pixels);
        self.budget.spent(started.elapsed());
        let area = portcullis_core::Rect::new(0, moment.y, width, rows);
        let words: Vec<ScreenWord> = match words {
            Ok(words) => on_desktop(&words, area),
            // At idle priority on a machine that stays busy, tesseract runs out of time: the
            // recording is left here, to be taken up again from this moment later.
            Err(e @ portcullis_ocr::OcrError::Timeout(_)) => {
                return Err(Stopped::Later(format!("the machine is busy: {e}")));
            }
            // One picture tesseract failed on: passed over (said at the end of the recording
            // would hide which); the next moment is tried.
            Err(e) => {
                warn!(recording = %job.recording, t_ms = moment.from_ms, error = %e, "cannot read a recording's screen at a moment");
                Vec::new()
            }
        };
        read.moments.push((moment.from_ms, words));
        read.through_ms = read.through_ms.max(moment.from_ms.saturating_add(1));
        Ok(())
    }

    fn wait_for_budget(&self, stop: &AtomicBool) -> Result<(), Stopped> {
        loop {
            if stop.load(Ordering::SeqCst) {
                return Err(Stopped::Stopping);
            }
            let wait = self.budget.free_in();
            if wait.is_zero() {
                return Ok(());
            }
            if !rest(wait.clamp(MIN_WAIT, Duration::from_millis(500)), stop) {
                return Err(Stopped::Stopping);
            }
        }
    }
}

/// The CPU time the calling thread used so far (Linux's `/proc/thread-self/schedstat`).
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Puts the calling thread at idle priority (Linux `SCHED_IDLE`, through util-linux's `chrt`
/// on the thread's id; else nice 19 through `renice`): its decoding, and the tesseract it
/// starts (a child keeps its parent thread's policy), run only on a core nothing else wants.
fn idle_priority() {
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let Some(tid) = tid else { return };
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !run("chrt", &["-i", "-p", "0", &tid]) && !run("renice", &["-n", "19", "-p", &tid]) {
        warn!("cannot lower the catch-up screen reader's CPU priority (chrt, renice)");
    }
}

/// Rows `y..y + h` of a picture as grey RGBX (what tesseract is given).
fn grey_rows(frame: &Frame, y: u32, h: u32) -> Vec<u8> {
    let w = frame.width as usize;
    let from = (y as usize * w).min(frame.luma.len());
    let to = ((y as usize + h as usize) * w).min(frame.luma.len());
    frame.luma[from..to]
        .iter()
        .flat_map(|&v| [v, v, v, 255])
        .collect()
}
