//! Bounded accumulation of changed rectangles.
//!
//! Each consumer of a desktop (a browser viewer, later the recorder) owns a [`DamageRegion`].
//! Producers add every changed rectangle; the consumer takes the region when it is ready to send.
//! A slow consumer therefore receives fewer, merged updates instead of a growing queue: the region
//! never holds more than [`MAX_RECTS`] rectangles, whatever the producer does.

use crate::desktop::Rect;

/// Most rectangles a region keeps before it merges the closest pair.
/// Enough to keep scattered small changes (a caret, a clock) apart, few enough that each take is
/// cheap to encode and send.
pub const MAX_RECTS: usize = 24;

/// Pixels a merge may add beyond the two rectangles' own area without being considered wasteful.
/// About one text line's worth: merging neighbours within that is cheaper than another header.
const MERGE_SLACK: u64 = 64 * 64;

/// A set of changed rectangles inside a desktop of known size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DamageRegion {
    bounds: Rect,
    rects: Vec<Rect>,
}

impl DamageRegion {
    /// An empty region for a desktop of `width`×`height`.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            bounds: Rect::new(0, 0, width, height),
            rects: Vec::new(),
        }
    }

    /// Forgets everything and adopts a new desktop size, marking all of it as changed.
    pub fn reset_full(&mut self, width: u32, height: u32) {
        self.bounds = Rect::new(0, 0, width, height);
        self.rects.clear();
        if !self.bounds.is_empty() {
            self.rects.push(self.bounds);
        }
    }

    /// Marks the whole desktop as changed.
    pub fn add_full(&mut self) {
        let b = self.bounds;
        self.add(b);
    }

    /// True when nothing changed since the last [`take`](Self::take).
    pub fn is_empty(&self) -> bool {
        self.rects.is_empty()
    }

    /// The rectangles currently held.
    pub fn rects(&self) -> &[Rect] {
        &self.rects
    }

    /// Adds a changed rectangle (clipped to the desktop).
    pub fn add(&mut self, rect: Rect) {
        let mut r = rect.intersection(&self.bounds);
        if r.is_empty() || self.rects.iter().any(|e| e.contains(&r)) {
            return;
        }
        // Absorb neighbours while merging does not waste much; repeat since the union grows.
        loop {
            let before = self.rects.len();
            self.rects.retain(|e| {
                if r.contains(e) {
                    return false;
                }
                let u = r.union(e);
                if u.area() <= r.area() + e.area() + MERGE_SLACK {
                    r = u;
                    false
                } else {
                    true
                }
            });
            if self.rects.len() == before {
                break;
            }
        }
        self.rects.push(r);
        while self.rects.len() > MAX_RECTS {
            self.merge_closest_pair();
        }
    }

    fn merge_closest_pair(&mut self) {
        let mut best = (0, 1, u64::MAX);
        for i in 0..self.rects.len() {
            for j in i + 1..self.rects.len() {
                let (a, b) = (self.rects[i], self.rects[j]);
                let waste = a.union(&b).area().saturating_sub(a.area() + b.area());
                if waste < best.2 {
                    best = (i, j, waste);
                }
            }
        }
        let (i, j, _) = best;
        let b = self.rects.swap_remove(j);
        self.rects[i] = self.rects[i].union(&b);
    }

    /// True when some held rectangle overlaps `rect`.
    pub fn intersects(&self, rect: &Rect) -> bool {
        self.rects.iter().any(|r| !r.intersection(rect).is_empty())
    }

    /// Forgets the rectangles that lie entirely inside `rect` (whose pixels the consumer is
    /// brought up to date with another way, e.g. a copy); others stay whole.
    pub fn forget_inside(&mut self, rect: &Rect) {
        self.rects.retain(|r| !rect.contains(r));
    }

    /// Returns the changed rectangles and leaves the region empty.
    pub fn take(&mut self) -> Vec<Rect> {
        std::mem::take(&mut self.rects)
    }

    /// Total changed pixels (overlaps counted twice).
    pub fn area(&self) -> u64 {
        self.rects.iter().map(Rect::area).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_contained_and_adjacent_rects() {
        let mut d = DamageRegion::new(100, 100);
        d.add(Rect::new(0, 0, 10, 10));
        d.add(Rect::new(2, 2, 3, 3));
        assert_eq!(d.rects(), &[Rect::new(0, 0, 10, 10)]);
        d.add(Rect::new(10, 0, 10, 10));
        assert_eq!(d.rects(), &[Rect::new(0, 0, 20, 10)]);
    }

    #[test]
    fn keeps_distant_rects_apart() {
        let mut d = DamageRegion::new(1000, 1000);
        d.add(Rect::new(0, 0, 10, 10));
        d.add(Rect::new(900, 900, 10, 10));
        assert_eq!(d.rects().len(), 2);
    }

    #[test]
    fn clips_to_the_desktop_and_ignores_empty() {
        let mut d = DamageRegion::new(100, 100);
        d.add(Rect::new(90, 90, 50, 50));
        d.add(Rect::new(200, 200, 5, 5));
        d.add(Rect::new(1, 1, 0, 5));
        assert_eq!(d.take(), vec![Rect::new(90, 90, 10, 10)]);
        assert!(d.is_empty());
    }

    #[test]
    fn never_holds_more_than_max_rects() {
        let mut d = DamageRegion::new(4000, 4000);
        for i in 0..10_000u32 {
            let x = (i * 7919) % 3900;
            let y = (i * 104_729) % 3900;
            d.add(Rect::new(x, y, 3, 3));
            assert!(d.rects().len() <= MAX_RECTS);
        }
        // Everything added is still covered.
        let covered = |x: u32, y: u32| d.rects().iter().any(|r| r.contains(&Rect::new(x, y, 1, 1)));
        for i in 0..10_000u32 {
            assert!(covered((i * 7919) % 3900, (i * 104_729) % 3900));
        }
    }

    #[test]
    fn intersects_and_forgets_only_what_lies_inside() {
        let mut d = DamageRegion::new(1000, 1000);
        d.add(Rect::new(0, 0, 10, 10));
        d.add(Rect::new(500, 500, 100, 100));
        assert!(d.intersects(&Rect::new(9, 9, 5, 5)));
        assert!(
            !d.intersects(&Rect::new(10, 10, 5, 5)),
            "edges touch, no pixel shared"
        );
        d.forget_inside(&Rect::new(0, 0, 600, 599));
        assert_eq!(d.rects(), &[Rect::new(500, 500, 100, 100)]);
        d.forget_inside(&Rect::new(500, 500, 100, 100));
        assert!(d.is_empty());
    }

    #[test]
    fn reset_full_covers_everything() {
        let mut d = DamageRegion::new(10, 10);
        d.add(Rect::new(1, 1, 1, 1));
        d.reset_full(20, 5);
        assert_eq!(d.take(), vec![Rect::new(0, 0, 20, 5)]);
    }
}
