//! Which moments of a recorded video to read after the fact (catch-up): the pictures that
//! stayed on screen (still for the settle time, like the live reader's settled changes), the
//! rows that changed since the last such picture, and whether the live reader read the screen
//! while that picture was up. Sans-I/O: pictures (luma planes) in, moments out; the decoding
//! and the reading are the caller's.

/// One decoded picture: its luma plane (`width` bytes a row, 0 = black).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// When it was shown, ms on the recording's clock.
    pub time_ms: u64,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// `width × height` bytes.
    pub luma: Vec<u8>,
}

/// A picture that stayed on screen, and what of it is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    /// When it became still.
    pub from_ms: u64,
    /// When the first different picture came after it (or the video ended).
    pub to_ms: u64,
    /// The first changed row (full width is read).
    pub y: u32,
    /// How many rows.
    pub h: u32,
    /// The picture (its last refinement).
    pub frame: Frame,
}

/// The side of the blocks pictures are compared in.
const BLOCK: usize = 8;
/// A block whose mean luma moved more than this changed (a character drawn or erased moves
/// its blocks' mean by 30 or more); a draft against its refinement (the recorder's CRF 38
/// against 24) moves it by 8 at most, even on random strokes (tests/recorder.rs).
const MEAN_CHANGE: i32 = 12;
/// A block whose mean absolute difference is above this changed even if its mean did not
/// (one glyph replaced by another as dark); a draft's noise stays under 25 (CRF 42 against 18).
const DETAIL_CHANGE: u32 = 40;
/// Rows read around a change (as the live reader: a word is read with its line).
const CONTEXT_ROWS: u32 = 16;

/// How two pictures compare: not comparable (`b` is not a whole picture), of different sizes
/// (they differ everywhere), or of one size.
enum Pair<'a> {
    Broken,
    Resized,
    Same {
        a: &'a [u8],
        b: &'a [u8],
        w: usize,
        h: usize,
    },
}

fn pair<'a>(a: &'a Frame, b: &'a Frame) -> Pair<'a> {
    let (w, h) = (b.width as usize, b.height as usize);
    if b.luma.len() != w * h {
        Pair::Broken
    } else if (a.width, a.height) != (b.width, b.height) || a.luma.len() != b.luma.len() {
        Pair::Resized
    } else {
        Pair::Same {
            a: &a.luma,
            b: &b.luma,
            w,
            h,
        }
    }
}

/// Whether any block of the band of rows `by..by + rows` changed beyond the encoder's noise.
fn band_changed(a: &[u8], b: &[u8], w: usize, by: usize, rows: usize) -> bool {
    (0..w).step_by(BLOCK).any(|bx| {
        let cols = BLOCK.min(w - bx);
        let (mut abs, mut signed) = (0u32, 0i32);
        for y in by..by + rows {
            let at = y * w + bx;
            for (p, q) in a[at..at + cols].iter().zip(&b[at..at + cols]) {
                abs += u32::from(p.abs_diff(*q));
                signed += i32::from(*p) - i32::from(*q);
            }
        }
        let n = (rows * cols) as u32;
        signed.unsigned_abs() > MEAN_CHANGE.unsigned_abs() * n || abs > DETAIL_CHANGE * n
    })
}

/// The bands (first row, rows) of a picture `h` rows tall, in order.
fn bands(h: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..h).step_by(BLOCK).map(move |by| (by, BLOCK.min(h - by)))
}

/// The rows (first, count) where `b` differs from `a` beyond the encoder's noise, with
/// [`CONTEXT_ROWS`] around; `None` when nothing changed. Pictures of different sizes differ
/// everywhere.
pub fn changed_rows(a: &Frame, b: &Frame) -> Option<(u32, u32)> {
    let (a, b, w, h) = match pair(a, b) {
        Pair::Broken => return None,
        Pair::Resized => return (b.height > 0).then_some((0, b.height)),
        Pair::Same { a, b, w, h } => (a, b, w, h),
    };
    let mut changed = bands(h).filter(|&(by, rows)| band_changed(a, b, w, by, rows));
    let (top, _) = changed.next()?;
    let (last, rows) = changed.last().unwrap_or((top, BLOCK.min(h - top)));
    let first = (top as u32).saturating_sub(CONTEXT_ROWS);
    let end = ((last + rows) as u32 + CONTEXT_ROWS).min(h as u32);
    Some((first, end - first))
}

/// Whether `b` differs from `a` beyond the encoder's noise (as [`changed_rows`] is `Some`,
/// stopping at the first changed block: asked of every decoded picture).
pub fn differs(a: &Frame, b: &Frame) -> bool {
    match pair(a, b) {
        Pair::Broken => false,
        Pair::Resized => b.height > 0,
        Pair::Same { a, b, w, h } => bands(h).any(|(by, rows)| band_changed(a, b, w, by, rows)),
    }
}

/// Finds the moments of a video: feed its pictures in order ([`Settler::push`]), then
/// [`Settler::finish`].
#[derive(Debug)]
pub struct Settler {
    settle_ms: u64,
    at_most_ms: u64,
    /// The newest picture, not yet known to stay.
    last: Option<Frame>,
    /// The picture that stayed, held while its refinements come (from when).
    held: Option<(u64, Frame)>,
    /// When the first picture different from the held one came (its time on screen ended).
    held_until: Option<u64>,
    /// The last moment's picture: what the next one's change is measured against.
    base: Option<Frame>,
    /// When the first picture since the last still one came (a screen that never settles is
    /// taken `at_most_ms` after that).
    changing_since: Option<u64>,
}

impl Settler {
    /// A picture is still when the next comes `settle_ms` later or more; a screen that keeps
    /// changing is taken every `at_most_ms`.
    pub fn new(settle_ms: u64, at_most_ms: u64) -> Self {
        Self {
            settle_ms,
            at_most_ms,
            last: None,
            held: None,
            held_until: None,
            base: None,
            changing_since: None,
        }
    }

    /// The next picture; a moment when one ended.
    pub fn push(&mut self, frame: Frame) -> Option<Moment> {
        let mut moment = None;
        if let Some(prev) = self.last.take() {
            let gap = frame.time_ms.saturating_sub(prev.time_ms);
            let since = self.changing_since.unwrap_or(prev.time_ms);
            let overdue = frame.time_ms.saturating_sub(since) >= self.at_most_ms;
            if gap >= self.settle_ms || overdue {
                moment = self.consider(prev);
            } else {
                self.changing_since = Some(since);
            }
        }
        // The held picture's time on screen ends at the first different picture; one that
        // comes back (a flash, a highlight that went) shows it again.
        if let Some((_, held)) = &self.held {
            if differs(held, &frame) {
                self.held_until.get_or_insert(frame.time_ms);
            } else {
                self.held_until = None;
            }
        }
        self.last = Some(frame);
        moment
    }

    /// The video ended at `end_ms`: the last moments (the one held and the last picture's).
    pub fn finish(&mut self, end_ms: u64) -> Vec<Moment> {
        let mut out = Vec::new();
        if let Some(prev) = self.last.take() {
            out.extend(self.consider(prev));
        }
        if let Some((from, frame)) = self.held.take() {
            let to = self.held_until.take().unwrap_or(end_ms).max(from);
            out.extend(self.end_held(from, frame, to));
        }
        out
    }

    /// `frame` stayed: a refinement of the held picture replaces it; a different picture ends
    /// the held one's moment.
    fn consider(&mut self, frame: Frame) -> Option<Moment> {
        self.changing_since = None;
        match self.held.take() {
            Some((from, held)) if !differs(&held, &frame) => {
                self.held = Some((from, frame));
                None
            }
            Some((from, held)) => {
                let now = frame.time_ms;
                let to = self.held_until.take().unwrap_or(now).clamp(from, now);
                self.held = Some((now, frame));
                self.end_held(from, held, to)
            }
            None => {
                self.held_until = None;
                self.held = Some((frame.time_ms, frame));
                None
            }
        }
    }

    fn end_held(&mut self, from_ms: u64, frame: Frame, to_ms: u64) -> Option<Moment> {
        let rows = match &self.base {
            Some(base) => changed_rows(base, &frame),
            None => (frame.height > 0).then_some((0, frame.height)),
        };
        let (y, h) = rows?;
        self.base = Some(frame.clone());
        Some(Moment {
            from_ms,
            to_ms,
            y,
            h,
            frame,
        })
    }
}

/// Whether the live reader read the screen while a moment's picture was up: a read at
/// `from_ms ..= to_ms + slack` (`reads` sorted; the slack: how late a read's time may be
/// against the video's clock). A read before the picture came is not one of it.
pub fn read_live(reads: &[u64], from_ms: u64, to_ms: u64, slack_ms: u64) -> bool {
    let start = reads.partition_point(|&t| t < from_ms);
    reads
        .get(start)
        .is_some_and(|&t| t <= to_ms.saturating_add(slack_ms))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A 64×64 grey picture with a dark bar on rows `bar` (none when empty).
    fn frame(time_ms: u64, bar: std::ops::Range<usize>, noise: u8) -> Frame {
        bars(time_ms, &[bar], noise)
    }

    /// The same with several bars.
    fn bars(time_ms: u64, bars: &[std::ops::Range<usize>], noise: u8) -> Frame {
        let (w, h) = (64usize, 64usize);
        let mut luma = vec![200u8; w * h];
        for bar in bars {
            for y in bar.clone() {
                for x in 8..56 {
                    luma[y * w + x] = 20;
                }
            }
        }
        for (i, v) in luma.iter_mut().enumerate() {
            if i % 3 == 0 {
                *v = v.saturating_sub(noise);
            }
        }
        Frame {
            time_ms,
            width: w as u32,
            height: h as u32,
            luma,
        }
    }

    #[test]
    fn only_real_changes_count_and_rows_come_with_context() {
        let a = frame(0, 0..0, 0);
        assert_eq!(changed_rows(&a, &frame(0, 0..0, 6)), None);
        assert_eq!(changed_rows(&a, &frame(0, 40..44, 0)), Some((24, 40)));
        let mut other = frame(0, 0..0, 0);
        other.width = 32;
        other.height = 128;
        assert_eq!(changed_rows(&a, &other), Some((0, 128)));
        let mut broken = frame(0, 0..0, 0);
        broken.luma.truncate(10);
        assert_eq!(changed_rows(&a, &broken), None);
        // `differs` says the same, sooner.
        for b in [frame(0, 0..0, 6), frame(0, 40..44, 0), other, broken] {
            assert_eq!(differs(&a, &b), changed_rows(&a, &b).is_some());
        }
    }

    #[test]
    fn pictures_that_stay_are_moments_and_refinements_are_not_new_ones() {
        let mut s = Settler::new(500, 2000);
        let mut moments = Vec::new();
        let frames = [
            frame(0, 0..0, 0),               // blank, stays
            frame(1000, 0..0, 5),            // its refinement
            frame(3000, 4..8, 0),            // typing: a line comes…
            frame(3040, 4..10, 0),           // …and grows
            frame(3080, 4..12, 0),           // stays (draft)
            frame(4080, 4..12, 4),           // refinement
            bars(9000, &[4..12, 40..44], 0), // a new line, stays to the end
        ];
        for f in frames {
            moments.extend(s.push(f));
        }
        moments.extend(s.finish(12_000));
        assert!(s.finish(13_000).is_empty());
        let got: Vec<(u64, u64, u32, u32)> = moments
            .iter()
            .map(|m| (m.from_ms, m.to_ms, m.y, m.h))
            .collect();
        assert_eq!(
            got,
            [
                (0, 3000, 0, 64),
                (3080, 9000, 0, 32),
                (9000, 12_000, 24, 40)
            ]
        );
        // The refinement, not the draft, is what is read.
        assert_eq!(moments[1].frame.time_ms, 4080);
    }

    #[test]
    fn a_flash_that_goes_does_not_end_the_picture() {
        let mut s = Settler::new(500, 2000);
        let mut moments = Vec::new();
        for f in [
            frame(0, 4..8, 0),
            frame(1000, 4..8, 3),   // its refinement: held
            frame(1200, 40..44, 0), // a flash…
            frame(1300, 4..8, 3),   // …gone: the same picture again, stays
            frame(6000, 20..24, 0), // the next
        ] {
            moments.extend(s.push(f));
        }
        moments.extend(s.finish(9000));
        let got: Vec<(u64, u64)> = moments.iter().map(|m| (m.from_ms, m.to_ms)).collect();
        assert_eq!(got[0], (0, 6000), "{got:?}");
    }

    #[test]
    fn a_screen_that_never_settles_is_taken_now_and_then() {
        let mut s = Settler::new(500, 2000);
        let mut n = 0;
        for i in 0..100u64 {
            // A bar moving every 100 ms for 10 s.
            let y = (i as usize * 4) % 56;
            n += usize::from(s.push(frame(i * 100, y..y + 4, 0)).is_some());
        }
        n += s.finish(10_000).len();
        assert!((3..=6).contains(&n), "{n}");
    }

    #[test]
    fn live_reads_cover_their_moment_only() {
        let reads = [1200, 5000];
        assert!(read_live(&reads, 1000, 3000, 250));
        assert!(!read_live(&reads, 3000, 4700, 250));
        assert!(read_live(&reads, 3000, 4800, 250));
        // A read just before a picture came was of the one before.
        assert!(!read_live(&reads, 1300, 4000, 250));
        assert!(!read_live(&[], 0, 10, 250));
    }
}
