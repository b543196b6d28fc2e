//! Reads text off live sessions' screens: for the risk rules that watch the screen (`on =
//! ["screen", …]`) and, with `[ocr] recordings` (the default), for searching recordings. A
//! thread of its own takes each session's settled change (an area that changed and then stayed
//! still for `[ocr] settle_ms`, never every frame), reads it with tesseract at the lowest CPU
//! priority, hands the text to the session (`SessionHandle::screen_text`), which checks it and
//! alerts, freezes or ends the session, and puts the words with their boxes into the
//! recording's event track (`SessionHandle::screen_words`). Each round reads every session a
//! screen rule watches, then one other recorded session, taken in turn. The thread keeps the whole gateway's reading within `[ocr]
//! cpu_share` of one core: after each read it rests for what the share asks (at most
//! [`MAX_REST`]). The changed rows are read whole (a completed word is read with its line); a
//! screen that never settles is read [`AT_MOST`] after its first change. The thread stops when
//! the gateway's shutdown begins. With `[ocr] catch_up`, a second thread (`catch_up`) reads
//! closed recordings' moments this one missed, within the same share once this one rested.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_broker::{Broker, SessionHandle};
use portcullis_core::session::ScreenWord;
use portcullis_core::Rect;
use portcullis_ocr::{Pacer, Tesseract, Word};
use portcullis_policy::TextSource;
use tracing::{info, warn};

use crate::config::Ocr;

/// How often the thread looks for settled changes when it read nothing.
const LOOK_EVERY: Duration = Duration::from_millis(150);
/// Areas smaller than this (either way, in pixels) hold no readable text.
const MIN_SIDE: u32 = 8;
/// A screen that keeps changing is read this long after its first unread change.
pub(super) const AT_MOST: Duration = Duration::from_secs(2);
/// The longest rest after one read (a slow read must not silence every session for minutes).
const MAX_REST: Duration = Duration::from_secs(5);
/// The most rest owed at once: reads are timed by the clock, and on a loaded machine a read
/// takes far longer than the CPU it uses; what is owed beyond this is forgiven (else the
/// catch-up would wait for hours after a busy spell).
const MAX_OWED: Duration = Duration::from_secs(15);
/// Words read with less confidence (tesseract's, 0–100) are not kept for search: mostly
/// noise read off icons and pictures.
const MIN_CONFIDENCE: f32 = 30.0;
/// How long the risk rules may take over a read's text (the audit trail may be slow).
const CHECK_WITHIN: Duration = Duration::from_secs(10);

/// The CPU share reading takes, for the whole gateway: each read (and the catch-up's
/// decoding) is counted; the catch-up waits until what was spent has been rested.
#[derive(Debug)]
pub(super) struct Budget {
    pacer: Pacer,
    /// When the share allows more work, in µs after `base` (an atomic, not a lock: the live
    /// reader never waits for the idle-priority catch-up thread to let go of one).
    free_at_us: AtomicU64,
    base: Instant,
}

impl Budget {
    fn new(pacer: Pacer) -> Self {
        Self {
            pacer,
            free_at_us: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// `busy` was spent reading (the whole rest it asks for, even past what the live reader
    /// itself rests, up to [`MAX_OWED`] in all: the catch-up waits for it).
    pub(super) fn spent(&self, busy: Duration) {
        let now = self.now_us();
        let rest = u64::try_from(self.pacer.rest_after(busy).as_micros()).unwrap_or(u64::MAX);
        let most = now.saturating_add(u64::try_from(MAX_OWED.as_micros()).unwrap_or(u64::MAX));
        let _ = self
            .free_at_us
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |free_at| {
                Some(free_at.max(now).saturating_add(rest).min(most))
            });
    }

    /// How long until the share allows more work.
    pub(super) fn free_in(&self) -> Duration {
        let free_at = self.free_at_us.load(Ordering::SeqCst);
        Duration::from_micros(free_at.saturating_sub(self.now_us()))
    }
}

/// Starts the reader unless `[ocr] enabled = false`; without tesseract it says so once and does
/// not start (screen rules then never fire). With `catch_up` (the search index and the
/// recordings, when `[ocr] recordings` and `[ocr] catch_up` are on) the catch-up reader too.
pub(super) fn start(
    broker: Broker,
    config: Ocr,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    catch_up: Option<(portcullis_web::Search, portcullis_web::Recordings)>,
) {
    if !config.enabled {
        info!("screen text reading is off ([ocr] enabled = false): risk rules on the screen never fire, recordings hold no screen text to search");
        return;
    }
    let tesseract = Tesseract::new();
    if let Err(e) = tesseract.available() {
        warn!(error = %e, "screen text reading is off (install tesseract-ocr and tesseract-ocr-eng): risk rules on the screen never fire");
        return;
    }
    info!(
        cpu_share = config.cpu_share,
        settle_ms = config.settle.as_millis() as u64,
        recordings = config.recordings,
        "reading text off live sessions' screens (risk rules, recordings' search)"
    );
    let budget = Arc::new(Budget::new(Pacer::new(config.cpu_share)));
    if let Some((search, recordings)) = catch_up.filter(|_| config.recordings && config.catch_up) {
        super::catch_up::start(
            search,
            recordings,
            tesseract.clone(),
            config.settle,
            Arc::clone(&budget),
            Arc::clone(&stop),
        );
    }
    let spawned = std::thread::Builder::new()
        .name("screen-reader".into())
        .spawn(move || run(&broker, &tesseract, config, &runtime, &stop, &budget));
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the screen reader: risk rules on the screen never fire");
    }
}

fn run(
    broker: &Broker,
    tesseract: &Tesseract,
    config: Ocr,
    runtime: &tokio::runtime::Handle,
    stop: &AtomicBool,
    budget: &Budget,
) {
    let mut failures_told = 0u32;
    // Where the last round's one read for search left off (sessions in id order).
    let mut search_cursor = String::new();
    while !stop.load(Ordering::SeqCst) {
        let mut read_any = false;
        // Each round: every session a screen rule watches, then one other recorded session
        // (for search, taken in turn): a watched session never waits behind a whole round of
        // the others.
        let mut sessions: Vec<(bool, SessionHandle)> = broker
            .list()
            .iter()
            .filter_map(|listed| broker.get(&listed.id))
            .filter(|s| !s.is_closed())
            .map(|s| (s.grant().risk().watches(TextSource::Screen), s))
            .filter(|(watched, s)| *watched || (config.recordings && s.is_recorded()))
            .collect();
        sessions.sort_by_key(|(watched, s)| (!watched, s.id()));
        let first_other = sessions
            .iter()
            .position(|(w, _)| !w)
            .unwrap_or(sessions.len());
        let (watched_ones, others) = sessions.split_at(first_other);
        let turn = others
            .iter()
            .position(|(_, s)| s.id() > search_cursor)
            .unwrap_or(0);
        let in_turn = others[turn..].iter().chain(others[..turn].iter());
        let mut read_other = false;
        for (watched, session) in watched_ones.iter().chain(in_turn) {
            let watched = *watched;
            if !watched && read_other {
                break;
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Some(area) =
                session.settled_change(config.settle, AT_MOST, portcullis_ocr::MAX_PIXELS)
            else {
                continue;
            };
            if area.rect.w < MIN_SIDE || area.rect.h < MIN_SIDE {
                continue;
            }
            read_any = true;
            if !watched {
                read_other = true;
                search_cursor = session.id();
            }
            let started = Instant::now();
            let read = tesseract.read(area.rect.w, area.rect.h, &area.pixels);
            let busy = started.elapsed();
            budget.spent(busy);
            match read {
                Ok(words) => {
                    let text = portcullis_ocr::lines(&words);
                    if config.recordings && session.is_recorded() {
                        session.screen_words(on_desktop(&words, area.rect), started.elapsed());
                    }
                    if watched && !text.is_empty() && !stop.load(Ordering::SeqCst) {
                        let checked = runtime.block_on(async {
                            tokio::time::timeout(CHECK_WITHIN, session.screen_text(&text)).await
                        });
                        if checked.is_err() {
                            warn!(session = %session.id(), "the risk rules took too long over the screen's text");
                        }
                    }
                }
                // Said a few times, not for every picture.
                Err(e) if failures_told < 5 => {
                    failures_told += 1;
                    warn!(session = %session.id(), error = %e, "cannot read the screen's text");
                }
                Err(_) => {}
            }
            std::thread::sleep(budget.pacer.rest_after(busy).min(MAX_REST));
        }
        if !read_any {
            std::thread::sleep(LOOK_EVERY);
        }
    }
}

/// Words tesseract found in `area` (low-confidence ones left out), placed on the desktop.
pub(super) fn on_desktop(words: &[Word], area: Rect) -> Vec<ScreenWord> {
    words
        .iter()
        .filter(|w| w.conf >= MIN_CONFIDENCE)
        .map(|w| {
            ScreenWord(
                w.text.clone(),
                area.x.saturating_add(w.x),
                area.y.saturating_add(w.y),
                w.w,
                w.h,
            )
        })
        .collect()
}
