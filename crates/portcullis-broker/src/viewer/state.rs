//! What the session shares with one viewer: pending damage and copies, resizes, control and
//! drive messages, and its wake-up. Names nothing of the session, so the session can hold it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use portcullis_core::damage::DamageRegion;
use portcullis_core::desktop::ClipFile;
use portcullis_core::wire::ServerMessage;
use portcullis_core::Rect;
use tokio::sync::Notify;
use tracing::warn;

use crate::locks::lock;

/// Control messages (clipboard, bell) a viewer may have pending. Beyond this the oldest bell
/// goes; clipboard text replaces older clipboard text, so nothing grows without bound.
const MAX_PENDING_EVENTS: usize = 16;

/// Drive redirection messages a native client may have pending. Beyond this the client is not
/// reading (the target's requests then go unanswered, which is the client's own loss).
const MAX_PENDING_DEVICE_BYTES: usize = 16 * 1024 * 1024;

/// Copies a browser viewer may have pending for its next frame. Each costs the browser one
/// canvas-to-canvas draw; beyond this a copy's destination becomes damage (repainted).
const MAX_PENDING_COPIES: usize = 64;

/// The area a browser viewer may have pending as copies for its next frame, in desktops: a
/// canvas-to-canvas draw costs the browser about what painting its area costs, so a target
/// that sends many desktop-sized copies gets repaints instead (bounded by the damage region).
const MAX_PENDING_COPY_DESKTOPS: u64 = 4;

pub(super) struct ViewerState {
    pub(super) damage: DamageRegion,
    /// Copies (destination with the source's size, source) to send before the damage, in the
    /// order they happened.
    // INVARIANT: every pixel outside `damage` is, once the browser has painted what was sent
    // and applied these copies, what the framebuffer holds now. The session keeps it by adding
    // a copy only when its source is outside `damage`, under the framebuffer's write lock; the
    // viewer takes copies and damage and reads the damage's pixels under its read lock.
    pub(super) copies: Vec<(Rect, Rect)>,
    /// The area of `copies`, and how much of it is allowed (the desktop's area times
    /// [`MAX_PENDING_COPY_DESKTOPS`]).
    copy_area: u64,
    copy_budget: u64,
    pub(super) resize: Option<(u32, u32)>,
    pub(super) events: VecDeque<ServerMessage>,
    /// Drive redirection messages for a native client that owns the drive.
    pub(super) device: VecDeque<Vec<u8>>,
    pub(super) device_bytes: usize,
    /// Files the target copied (allowed by the policy), for a native client's clipboard: the
    /// latest copy only.
    pub(super) clip_files: Option<Vec<ClipFile>>,
}

impl ViewerState {
    /// The copy rule: a copy may be sent only if its source holds no pending damage (what the
    /// browser will show there is then what the framebuffer held before the copy), and only
    /// [`MAX_PENDING_COPIES`] per frame; otherwise its destination becomes damage.
    pub(super) fn add_copy(&mut self, dst: Rect, src: Rect) {
        if dst.is_empty() {
            return;
        }
        let area = self.copy_area.saturating_add(dst.area());
        if self.copies.len() >= MAX_PENDING_COPIES
            || area > self.copy_budget
            || self.damage.intersects(&src)
        {
            self.damage.add(dst);
            return;
        }
        // Damage wholly inside the destination is brought up to date by the copy.
        self.damage.forget_inside(&dst);
        self.copies.push((dst, src));
        self.copy_area = area;
    }

    /// Something is pending for the next frame (a resize comes before any frame).
    pub(super) fn has_frame(&self) -> bool {
        !self.damage.is_empty() || !self.copies.is_empty()
    }

    /// Takes what the next frame sends: the copies, then the damaged rectangles.
    pub(super) fn take_frame(&mut self) -> (Vec<(Rect, Rect)>, Vec<Rect>) {
        self.copy_area = 0;
        (std::mem::take(&mut self.copies), self.damage.take())
    }

    /// Hands a native client the destinations of pending copies as damage (it has no copy
    /// operation). Copies only queue for browser viewers; this covers one queued before the
    /// viewer was known to be native.
    pub(super) fn copies_to_damage(&mut self) {
        self.copy_area = 0;
        for (dst, _) in std::mem::take(&mut self.copies) {
            self.damage.add(dst);
        }
    }
}

fn copy_budget(width: u32, height: u32) -> u64 {
    u64::from(width) * u64::from(height) * MAX_PENDING_COPY_DESKTOPS
}

/// What the session shares with one viewer.
pub(crate) struct ViewerShared {
    pub(super) state: Mutex<ViewerState>,
    pub(super) notify: Notify,
    /// Who watches.
    pub(super) user: String,
    /// A native RDP client (the only kind that takes clipboard files).
    pub(super) native: AtomicBool,
    /// A four-eyes observer: its leaving may hold the user's input again.
    pub(crate) observer: AtomicBool,
    /// Its leaving is recorded (by whichever comes first: the viewer going away or the session
    /// ending with it still attached). A lock, not a flag: the session's end waits for a leave
    /// in progress on another thread, so the leave is in the tap before the end.
    pub(super) left: Mutex<bool>,
}

impl ViewerShared {
    pub(crate) fn new(width: u32, height: u32, user: &str) -> Self {
        let mut damage = DamageRegion::new(width, height);
        damage.reset_full(width, height);
        Self {
            state: Mutex::new(ViewerState {
                damage,
                copies: Vec::new(),
                copy_area: 0,
                copy_budget: copy_budget(width, height),
                resize: None,
                events: VecDeque::new(),
                device: VecDeque::new(),
                device_bytes: 0,
                clip_files: None,
            }),
            notify: Notify::new(),
            user: user.to_owned(),
            native: AtomicBool::new(false),
            observer: AtomicBool::new(false),
            left: Mutex::new(false),
        }
    }

    pub(crate) fn add_damage(&self, rect: Rect) {
        lock(&self.state).damage.add(rect);
    }

    /// Pixels moved from `src` to `dst` (same size) in the framebuffer, which the caller holds
    /// locked for writing. A browser viewer copies them itself when it shows `src` as the
    /// framebuffer had it (see [`ViewerState::add_copy`]); a native client repaints `dst`.
    pub(crate) fn add_copy(&self, dst: Rect, src: Rect) {
        let mut s = lock(&self.state);
        if self.native.load(Ordering::Relaxed) {
            s.damage.add(dst);
        } else {
            s.add_copy(dst, src);
        }
    }

    pub(crate) fn resized(&self, width: u32, height: u32) {
        let mut s = lock(&self.state);
        s.resize = Some((width, height));
        s.damage.reset_full(width, height);
        // In the old size's coordinates, and the repaint covers them.
        s.copies.clear();
        s.copy_area = 0;
        s.copy_budget = copy_budget(width, height);
    }

    pub(crate) fn push_event(&self, event: ServerMessage) {
        let mut s = lock(&self.state);
        if matches!(event, ServerMessage::Clipboard { .. }) {
            s.events
                .retain(|e| !matches!(e, ServerMessage::Clipboard { .. }));
            // Newer than any files the target copied before.
            s.clip_files = None;
        }
        if s.events.len() >= MAX_PENDING_EVENTS {
            if let Some(i) = s
                .events
                .iter()
                .position(|e| matches!(e, ServerMessage::Bell))
            {
                s.events.remove(i);
            } else {
                return;
            }
        }
        s.events.push_back(event);
    }

    /// Files the target copied, for a native client (others have no way to take them): they
    /// replace any clipboard content still pending for it.
    pub(crate) fn push_clip_files(&self, files: &[ClipFile]) {
        if !self.native.load(Ordering::Relaxed) {
            return;
        }
        let mut s = lock(&self.state);
        s.events
            .retain(|e| !matches!(e, ServerMessage::Clipboard { .. }));
        s.clip_files = Some(files.to_vec());
    }

    pub(crate) fn push_device(&self, pdu: Vec<u8>) {
        let mut s = lock(&self.state);
        if s.device_bytes + pdu.len() > MAX_PENDING_DEVICE_BYTES {
            warn!(user = %self.user, "native client not reading its drive messages: one dropped");
            return;
        }
        s.device_bytes += pdu.len();
        s.device.push_back(pdu);
    }

    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    //! The copy rule against a model: a framebuffer the session changes, and a browser canvas
    //! that applies each frame's copies and then paints its damage read from the framebuffer.
    //! After every frame the canvas must equal the framebuffer.

    use portcullis_core::desktop::{Framebuffer, PixelLayout, TargetUpdate};
    use portcullis_core::Applied;

    use super::*;

    struct Model {
        fb: Framebuffer,
        canvas: Framebuffer,
        viewer: ViewerShared,
        /// Copies and rectangles sent, over all frames.
        sent_copies: usize,
        sent_rects: usize,
    }

    impl Model {
        fn new(w: u32, h: u32) -> Self {
            let mut m = Self {
                fb: Framebuffer::new(w, h).unwrap(),
                canvas: Framebuffer::new(w, h).unwrap(),
                viewer: ViewerShared::new(w, h, "alice"),
                sent_copies: 0,
                sent_rects: 0,
            };
            m.frame();
            m.sent_rects = 0;
            m
        }

        /// What the session task does with a target's update.
        fn update(&mut self, update: TargetUpdate) {
            match self.fb.apply(&update).unwrap() {
                Applied::Damaged(r) => match update {
                    TargetUpdate::Copy { src, .. } => self.viewer.add_copy(r, src),
                    _ => self.viewer.add_damage(r),
                },
                Applied::Resized => self.viewer.resized(self.fb.width(), self.fb.height()),
                Applied::Nothing => {}
            }
        }

        fn paint(&mut self, rect: Rect, shade: u8) {
            let data = (0..rect.area() * 4)
                .map(|i| shade.wrapping_add((i / 4 % 251) as u8))
                .collect();
            self.update(TargetUpdate::Pixels {
                rect,
                data,
                layout: PixelLayout::Rgbx,
            });
        }

        fn copy(&mut self, dst: (u32, u32), src: Rect) {
            self.update(TargetUpdate::Copy {
                dst: Rect::new(dst.0, dst.1, 0, 0),
                src,
            });
        }

        /// What the viewer sends and the browser paints; returns the copies sent.
        fn frame(&mut self) -> Vec<(Rect, Rect)> {
            let (copies, rects) = {
                let mut s = lock(&self.viewer.state);
                if let Some((w, h)) = s.resize.take() {
                    self.canvas.resize(w, h).unwrap();
                }
                s.take_frame()
            };
            for (dst, src) in &copies {
                self.canvas.copy_rect(*dst, *src).unwrap();
            }
            for r in &rects {
                let px = self.fb.read_rect(*r).unwrap();
                self.canvas.put_rect(*r, &px, PixelLayout::Rgbx).unwrap();
            }
            self.sent_copies += copies.len();
            self.sent_rects += rects.len();
            assert!(
                self.canvas.data() == self.fb.data(),
                "the canvas differs from the framebuffer"
            );
            copies
        }
    }

    #[test]
    fn a_copy_from_clean_pixels_is_sent_as_a_copy() {
        let mut m = Model::new(200, 100);
        m.paint(Rect::new(0, 0, 50, 50), 7);
        m.frame();
        m.copy((100, 20), Rect::new(0, 0, 50, 50));
        let copies = m.frame();
        assert_eq!(
            copies,
            vec![(Rect::new(100, 20, 50, 50), Rect::new(0, 0, 50, 50))]
        );
        assert_eq!(m.sent_rects, 1, "only the first paint was a rectangle");
    }

    #[test]
    fn copy_then_damage_on_its_source_sends_both_in_that_order() {
        let mut m = Model::new(200, 100);
        m.paint(Rect::new(0, 0, 50, 50), 7);
        m.frame();
        m.copy((100, 0), Rect::new(0, 0, 50, 50));
        m.paint(Rect::new(10, 10, 20, 20), 99);
        assert_eq!(m.frame().len(), 1);
    }

    #[test]
    fn damage_then_copy_from_it_repaints_the_destination() {
        let mut m = Model::new(200, 100);
        m.paint(Rect::new(0, 0, 50, 50), 7);
        m.copy((100, 0), Rect::new(40, 40, 20, 20));
        assert!(m.frame().is_empty());
        let s = lock(&m.viewer.state);
        assert!(s.copies.is_empty());
    }

    #[test]
    fn chained_and_overlapping_copies_replay_in_order() {
        let mut m = Model::new(300, 200);
        m.paint(Rect::new(0, 0, 300, 200), 1);
        m.frame();
        // A window dragged in steps while the frame window is closed: each copy's source is
        // the previous destination.
        for step in 1..=20 {
            m.copy(
                (step * 5, step * 3),
                Rect::new((step - 1) * 5, (step - 1) * 3, 80, 60),
            );
        }
        // A scroll: the source overlaps the destination.
        m.copy((0, 0), Rect::new(0, 10, 300, 190));
        m.paint(Rect::new(0, 190, 300, 10), 42);
        assert_eq!(m.frame().len(), 21);
    }

    #[test]
    fn copies_beyond_the_bound_become_damage() {
        let mut m = Model::new(100, 100);
        m.paint(Rect::new(0, 0, 100, 100), 3);
        m.frame();
        for i in 0..MAX_PENDING_COPIES as u32 + 5 {
            m.copy((i % 50, 50), Rect::new(i % 50, 0, 10, 10));
        }
        assert_eq!(m.frame().len(), MAX_PENDING_COPIES);
        assert!(m.sent_rects > 1);
    }

    #[test]
    fn copies_beyond_four_times_the_desktop_area_become_damage() {
        let mut m = Model::new(100, 100);
        m.paint(Rect::new(0, 0, 100, 100), 3);
        m.frame();
        // Scrolls of almost the whole desktop: four fit the budget, the rest are repainted.
        for _ in 0..10 {
            m.copy((0, 0), Rect::new(0, 1, 100, 99));
        }
        assert_eq!(m.frame().len(), 4);
        // The budget is per frame.
        m.copy((0, 0), Rect::new(0, 1, 100, 99));
        assert_eq!(m.frame().len(), 1);
    }

    #[test]
    fn an_empty_copy_is_ignored() {
        let v = ViewerShared::new(100, 100, "bob");
        lock(&v.state).damage.take();
        v.add_copy(Rect::new(50, 50, 0, 10), Rect::new(0, 0, 0, 10));
        assert!(!lock(&v.state).has_frame());
    }

    #[test]
    fn a_resize_drops_pending_copies_for_a_full_repaint() {
        let mut m = Model::new(100, 100);
        m.paint(Rect::new(0, 0, 100, 100), 3);
        m.frame();
        m.copy((50, 50), Rect::new(0, 0, 40, 40));
        m.update(TargetUpdate::Resize {
            width: 60,
            height: 80,
        });
        // A copy after the resize, from pixels not yet repainted: repainted too.
        m.copy((0, 0), Rect::new(10, 10, 20, 20));
        assert!(m.frame().is_empty());
        m.copy((0, 0), Rect::new(10, 10, 20, 20));
        assert_eq!(m.frame().len(), 1);
    }

    #[test]
    fn damage_inside_a_copy_destination_is_not_repainted() {
        let mut m = Model::new(200, 100);
        m.paint(Rect::new(0, 0, 50, 50), 7);
        m.frame();
        m.paint(Rect::new(110, 10, 5, 5), 8);
        m.copy((100, 0), Rect::new(0, 0, 50, 50));
        let before = m.sent_rects;
        assert_eq!(m.frame().len(), 1);
        assert_eq!(m.sent_rects, before, "the copy covered the damage");
    }

    #[test]
    fn a_native_client_gets_the_destination_as_damage() {
        let v = ViewerShared::new(100, 100, "bob");
        v.native.store(true, Ordering::Relaxed);
        lock(&v.state).damage.take();
        v.add_copy(Rect::new(50, 50, 10, 10), Rect::new(0, 0, 10, 10));
        let mut s = lock(&v.state);
        assert!(s.copies.is_empty());
        assert_eq!(s.damage.take(), vec![Rect::new(50, 50, 10, 10)]);
        // One queued before it was known native is handed over as damage.
        s.copies
            .push((Rect::new(1, 2, 3, 4), Rect::new(0, 0, 3, 4)));
        s.copies_to_damage();
        assert_eq!(s.damage.take(), vec![Rect::new(1, 2, 3, 4)]);
    }

    /// Random sequences of paints, copies, resizes and frames (a fixed seed): the canvas always
    /// ends equal to the framebuffer, and copies were used.
    #[test]
    fn random_sequences_keep_the_canvas_right() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            u32::try_from(seed % u64::from(n.max(1))).unwrap()
        };
        let mut m = Model::new(64, 48);
        for _ in 0..20_000 {
            let (w, h) = (m.fb.width(), m.fb.height());
            match next(100) {
                0..=29 => {
                    let (x, y) = (next(w), next(h));
                    let r = Rect::new(x, y, 1 + next(w - x), 1 + next(h - y));
                    let shade = u8::try_from(next(256)).unwrap();
                    m.paint(r, shade);
                }
                30..=74 => {
                    let (sw, sh) = (1 + next(w), 1 + next(h));
                    let src = Rect::new(next(w - sw + 1), next(h - sh + 1), sw, sh);
                    m.copy((next(w - sw + 1), next(h - sh + 1)), src);
                }
                75 => m.update(TargetUpdate::Resize {
                    width: 16 + next(64),
                    height: 16 + next(48),
                }),
                _ => {
                    m.frame();
                }
            }
        }
        m.frame();
        assert!(m.sent_copies > 1000, "{} copies sent", m.sent_copies);
    }
}
