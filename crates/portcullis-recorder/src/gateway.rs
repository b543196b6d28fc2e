//! Recording the broker's sessions: one thread per session reads the session's [`Tap`] and
//! drives a [`Recorder`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_broker::{SessionRecorder, Tap, TapEvent};
use portcullis_core::keytext::KeyTranscriber;
use portcullis_core::session::SessionEvent;
use portcullis_recording::{
    unix_ms, LiveRecordings, RecordingStorage, RecordingWriter, SessionMeta, SigningKey,
};
use tracing::{info, warn};

use crate::encoder::Pixels;
use crate::recorder::{KeystrokeLog, RecordError, Recorder, RecorderConfig, Screen};

/// Typed text is cut into an event after this long without a key (or at Enter).
const KEYS_QUIET: Duration = Duration::from_millis(1500);

/// How long a change is left to the live view before the recorder reads and encodes it. Both
/// learn of a change at once; on a small machine x264's few milliseconds on the same change
/// (3.7 ms for a 24-pixel change at 1080p) then compete with the viewer's encoding and the
/// browser's painting for the cores. A change is on the viewer's screen within about 10 ms
/// of the gateway seeing it; the recording takes it this much later (frames are stamped when
/// read), and a picture replaced within that time is merged into the next one, as within a
/// frame slot (1 / `max_fps`, at least 33 ms).
const LIVE_FIRST: Duration = Duration::from_millis(20);

/// When changes first seen at `damage_since` are encoded: not before the frame slot after the
/// last frame, nor before the live view's head start.
fn frame_due_at(
    last_frame: Option<Instant>,
    damage_since: Instant,
    min_interval: Duration,
) -> Instant {
    let head_start = damage_since + LIVE_FIRST;
    last_frame.map_or(head_start, |t| (t + min_interval).max(head_start))
}

/// Records every session of a broker into a storage.
pub struct GatewayRecorder {
    storage: Arc<dyn RecordingStorage>,
    key: Arc<SigningKey>,
    config: RecorderConfig,
    live: LiveRecordings,
    on_closed: Option<OnClosed>,
}

/// Told a recording's id once its signed end line is on disk (the gateway records the close in
/// its audit trail, so that an end line removed later is found out).
pub type OnClosed = Arc<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for GatewayRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayRecorder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GatewayRecorder {
    /// A recorder writing to `storage`, signing with `key`.
    pub fn new(
        storage: Arc<dyn RecordingStorage>,
        key: Arc<SigningKey>,
        config: RecorderConfig,
    ) -> Self {
        Self {
            storage,
            key,
            config,
            live: LiveRecordings::default(),
            on_closed: None,
        }
    }

    /// Calls `f` with a recording's id once the recording is closed (on the recording's thread,
    /// before the session's tap goes, so a shutdown waits for it).
    pub fn with_on_closed(mut self, f: OnClosed) -> Self {
        self.on_closed = Some(f);
        self
    }

    /// The set of recordings in progress (shared).
    pub fn live(&self) -> LiveRecordings {
        self.live.clone()
    }
}

impl SessionRecorder for GatewayRecorder {
    fn start(&self, tap: Tap) -> Result<(), String> {
        let info = tap.info();
        check_space(self.storage.as_ref(), self.config.min_free_bytes)?;
        let meta = SessionMeta {
            session: info.id.clone(),
            user: info.user.clone(),
            user_id: info.user_id.clone(),
            target: info.target.clone(),
            client_addr: info.client_addr.clone(),
            started_at_ms: unix_ms(),
            screen_search: Some(self.config.screen_search),
        };
        let writer = RecordingWriter::create(self.storage.as_ref(), Arc::clone(&self.key), meta)
            .map_err(|e| {
                warn!(session = %info.id, error = %e, "cannot create the recording");
                if e.is_full() {
                    "the recordings disk is full".to_owned()
                } else {
                    "the recordings storage cannot be written".to_owned()
                }
            })?;
        let config = self.config.clone();
        let storage = Arc::clone(&self.storage);
        let live = self.live.clone();
        let on_closed = self.on_closed.clone();
        live.insert(&info.id);
        let id = info.id.clone();
        std::thread::Builder::new()
            .name(format!("record-{}", id.get(..8).unwrap_or(&id)))
            .spawn(move || {
                // Built on its own thread: FFmpeg's contexts must not change threads.
                let outcome = run(
                    tap,
                    Recorder::new(writer, config),
                    storage.as_ref(),
                    on_closed.as_deref(),
                );
                live.remove(&id);
                match outcome {
                    Ok(frames) => info!(session = %id, frames, "recording closed"),
                    Err(error) => warn!(session = %id, %error, "recording failed"),
                }
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start the recording thread: {e}"))
    }
}

/// The session's desktop, read by the recorder under its read lock.
struct Desktop<'a>(&'a Tap);

impl Screen for Desktop<'_> {
    fn read(&self, width: u32, height: u32, f: &mut dyn FnMut(&Pixels<'_>)) -> bool {
        self.0.read_desktop(|rgba, w, h| {
            if (w, h) != (width, height) {
                return false;
            }
            f(&Pixels {
                rgba,
                stride: w,
                width: w,
                height: h,
            });
            true
        })
    }
}

/// How often a running recording looks at the free space: a disk that fills up (another
/// session, another program) ends even an idle session, which writes nothing for up to 10 s,
/// within about this long. A `statvfs` costs microseconds.
const SPACE_CHECK: Duration = Duration::from_secs(1);

/// What the session's user is told when its recording fails. The full error (with the
/// server's paths) goes to the gateway's log only.
fn session_message(e: &RecordError) -> String {
    match e {
        RecordError::Storage(s) if s.is_full() => {
            "the recordings disk is full, so the session can no longer be recorded; it was ended"
                .into()
        }
        RecordError::Storage(_) => {
            "writing the recording failed, so the session can no longer be recorded; it was ended"
                .into()
        }
        RecordError::Encoder(e) => format!("the recording failed ({e}); the session was ended"),
    }
}

/// Refuses when the storage has less than `min_free` bytes free.
fn check_space(storage: &dyn RecordingStorage, min_free: u64) -> Result<(), String> {
    match storage.available_bytes() {
        Ok(Some(free)) if free < min_free => Err(format!(
            "only {} MB free for recordings, {} MB needed",
            free / 1_000_000,
            min_free / 1_000_000
        )),
        Ok(_) => Ok(()),
        Err(e) => {
            warn!(error = %e, "cannot check the recordings' free space");
            Err("the recordings storage cannot be checked".to_owned())
        }
    }
}

/// The recording loop of one session. Returns the number of frames encoded. The tap goes when
/// this returns, after the last fragment and the signed end line are on disk: the broker's
/// shutdown waits for that.
fn run(
    tap: Tap,
    mut recorder: Recorder,
    storage: &dyn RecordingStorage,
    on_closed: Option<&(dyn Fn(&str) + Send + Sync)>,
) -> Result<u64, String> {
    let t0 = Instant::now();
    let ms = |at: Instant| u64::try_from(at.saturating_duration_since(t0).as_millis()).unwrap_or(0);
    let cfg = recorder.config().clone();
    let min_interval = Duration::from_millis(1000 / u64::from(cfg.max_fps.max(1)));
    let fragment = Duration::from_millis(cfg.fragment_ms.max(100));
    let (mut width, mut height) = tap.size();
    let screen = Desktop(&tap);
    let mut last_frame: Option<Instant> = None;
    let mut keys = KeyTranscriber::new();
    let mut keys_at: Option<Instant> = None;
    let mut last_key: Option<Instant> = None;
    // Damage waits for its frame until this instant; first seen (since the last frame) then.
    let mut damage_waiting: Option<Instant> = None;
    let mut damage_since: Option<Instant> = None;
    // Screen updates since the last encoded frame.
    let mut updates_merged = 0u64;
    let mut behind = false;
    let mut space_checked = Instant::now();
    let fail = |tap: &Tap, e: &RecordError| {
        tap.fail(&session_message(e));
        e.to_string()
    };
    loop {
        if let Some(due) = damage_waiting {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        // Nothing waiting: sleep until the next fragment is due, or a draft's refinement.
        let idle_wait = recorder.next_deadline().map_or(fragment, |due| {
            let left = due.saturating_sub(ms(Instant::now()));
            fragment.min(Duration::from_millis(left))
        });
        let batch = tap.wait(if damage_waiting.is_some() {
            Duration::ZERO
        } else {
            idle_wait
        });
        let now = Instant::now();
        damage_waiting = None;

        let flush_keys =
            |keys: &mut KeyTranscriber, keys_at: &mut Option<Instant>, recorder: &mut Recorder| {
                if let Some(text) = keys.take() {
                    let at = keys_at.take().unwrap_or(now);
                    recorder.event(ms(at), &SessionEvent::Keys { text });
                }
            };
        for (at, event) in batch.events {
            match event {
                TapEvent::Key { keysym, down } => {
                    if cfg.keystrokes == KeystrokeLog::Off {
                        continue;
                    }
                    if down && keys.is_empty() {
                        keys_at = Some(at);
                    }
                    keys.key(keysym, down);
                    last_key = Some(at);
                    if keys.ends_line() {
                        flush_keys(&mut keys, &mut keys_at, &mut recorder);
                    }
                }
                TapEvent::Session(mut e) => {
                    // Clipboard text is kept with the key log, or not at all.
                    if cfg.keystrokes == KeystrokeLog::Off
                        && matches!(e, SessionEvent::ClipboardText { .. })
                    {
                        continue;
                    }
                    flush_keys(&mut keys, &mut keys_at, &mut recorder);
                    // Without a key log, a risk hit does not say what was typed or pasted.
                    if let SessionEvent::Risk {
                        source, excerpt, ..
                    } = &mut e
                    {
                        if cfg.keystrokes == KeystrokeLog::Off && source != "screen" {
                            excerpt.clear();
                        }
                    }
                    recorder.event(ms(at), &e);
                }
            }
        }
        if batch.events_lost > 0 {
            recorder.event(
                ms(now),
                &SessionEvent::EventsLost {
                    count: batch.events_lost,
                },
            );
        }
        updates_merged += batch.updates;
        if last_key.is_some_and(|t| now.duration_since(t) >= KEYS_QUIET) || batch.ended.is_some() {
            flush_keys(&mut keys, &mut keys_at, &mut recorder);
            last_key = None;
        }

        if let Some((w, h)) = batch.resized {
            recorder.resize(ms(now)).map_err(|e| fail(&tap, &e))?;
            (width, height) = (w, h);
        }
        if !batch.damage.is_empty() {
            let due_at = frame_due_at(last_frame, *damage_since.get_or_insert(now), min_interval);
            // The session's last picture is taken at once: nothing shown goes unrecorded.
            let due = now >= due_at || batch.ended.is_some();
            // Read from the desktop itself (the recorder keeps no copy of it): what changed is
            // converted under its read lock, then encoded. Not read: a resize is on its way.
            if due
                && recorder
                    .frame_changed_on(ms(now), &screen, width, height, &batch.damage)
                    .map_err(|e| fail(&tap, &e))?
            {
                // The last frame took longer than a frame slot to encode: the updates merged
                // meanwhile are frames the recording skipped.
                if behind && updates_merged > 1 {
                    portcullis_broker::stats::FRAMES_DROPPED
                        .fetch_add(updates_merged - 1, std::sync::atomic::Ordering::Relaxed);
                    recorder.event(
                        ms(now),
                        &SessionEvent::FramesDropped {
                            count: updates_merged - 1,
                        },
                    );
                }
                updates_merged = 0;
                behind = now.elapsed() > min_interval;
                last_frame = Some(now);
                damage_since = None;
            } else {
                tap.return_damage(&batch.damage);
                // Not due yet: it waits for its frame slot and the live view's head start. Due
                // but not copied: a resize is on its way and comes with the next batch.
                damage_waiting = (!due).then_some(due_at);
            }
        }
        // While a change waits to be read, the screen is not still: no thumbnail of the old
        // picture, no refinement of it, no letting go of the encoder (the change would then
        // reopen it on a keyframe); fragments are cut once it is read.
        if damage_waiting.is_none() {
            // An unchanged screen gets its thumbnail.
            recorder.settled_now(ms(now));
            let had_encoder = recorder.holds_encoder();
            recorder.tick(ms(now)).map_err(|e| fail(&tap, &e))?;
            if had_encoder && !recorder.holds_encoder() {
                info!(session = %tap.info().id, t_ms = ms(now), "the screen is still: the recording's encoder is let go until it changes");
            }
        }
        if now.duration_since(space_checked) >= SPACE_CHECK {
            space_checked = now;
            // Half the start-up margin: end the session while its recording can still be closed.
            check_space(storage, cfg.min_free_bytes / 2).map_err(|e| {
                tap.fail(&format!(
                    "the recordings disk is full ({e}), so the session can no longer be \
                     recorded; it was ended"
                ));
                e
            })?;
        }
        if let Some(reason) = batch.ended {
            let frames = recorder.frames();
            recorder
                .finish(ms(Instant::now()), &reason, unix_ms())
                .map_err(|e| e.to_string())?;
            if let Some(f) = on_closed {
                f(&tap.info().id);
            }
            return Ok(frames);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use portcullis_recording::StorageError;

    fn io(errno: i32) -> RecordError {
        RecordError::Storage(StorageError::Io {
            op: "write",
            path: "/srv/recordings/0f6c/video-1.mp4".into(),
            source: std::io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn the_user_is_told_the_disk_is_full_without_the_servers_paths() {
        let full = session_message(&io(28)); // ENOSPC
        assert!(full.contains("disk is full"), "{full}");
        assert!(full.contains("ended"), "{full}");
        let failed = session_message(&io(5)); // EIO
        assert!(failed.contains("writing the recording failed"), "{failed}");
        for m in [full, failed] {
            assert!(!m.contains("/srv"), "{m}");
        }
        // The log keeps the details.
        assert!(io(28).to_string().contains("/srv/recordings"));
    }

    #[test]
    fn a_change_is_left_to_the_live_view_first_then_waits_for_its_slot() {
        let t0 = Instant::now();
        let slot = Duration::from_millis(200);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // First change of the session: after the head start only.
        assert_eq!(frame_due_at(None, at(0), slot), at(20));
        // Long after the last frame: the same.
        assert_eq!(frame_due_at(Some(at(0)), at(1000), slot), at(1020));
        // Within the slot of the last frame: the slot rules.
        assert_eq!(frame_due_at(Some(at(0)), at(50), slot), at(200));
        // Seen just before the slot ends: the head start still holds.
        assert_eq!(frame_due_at(Some(at(0)), at(190), slot), at(210));
    }

    #[test]
    fn too_little_space_is_refused() {
        struct Free(u64);
        impl RecordingStorage for Free {
            fn create(
                &self,
                id: &str,
            ) -> Result<Box<dyn portcullis_recording::RecordingSink>, StorageError> {
                Err(StorageError::NotFound(id.into()))
            }
            fn reopen(
                &self,
                id: &str,
            ) -> Result<Box<dyn portcullis_recording::RecordingSink>, StorageError> {
                Err(StorageError::NotFound(id.into()))
            }
            fn list(&self) -> Result<Vec<String>, StorageError> {
                Ok(Vec::new())
            }
            fn files(&self, _: &str) -> Result<Vec<(String, u64)>, StorageError> {
                Ok(Vec::new())
            }
            fn len(&self, _: &str, _: &str) -> Result<Option<u64>, StorageError> {
                Ok(None)
            }
            fn read(&self, id: &str, _: &str, _: u64, _: u64) -> Result<Vec<u8>, StorageError> {
                Err(StorageError::NotFound(id.into()))
            }
            fn truncate(&self, _: &str, _: &str, _: u64) -> Result<(), StorageError> {
                Ok(())
            }
            fn delete(&self, _: &str) -> Result<(), StorageError> {
                Ok(())
            }
            fn available_bytes(&self) -> Result<Option<u64>, StorageError> {
                Ok(Some(self.0))
            }
        }
        let e = check_space(&Free(1_000_000), 4_000_000).unwrap_err();
        assert!(e.contains("only 1 MB free"), "{e}");
        check_space(&Free(5_000_000), 4_000_000).unwrap();
    }
}
