//! Frame flow control between the gateway and one viewer.
//!
//! The gateway numbers each frame it sends; the viewer acknowledges a frame once painted.
//! At most [`WINDOW`] frames may be unacknowledged. While the window is full the gateway keeps
//! merging changes into the viewer's damage region instead of queueing frames, which bounds both
//! memory and latency for a slow browser.

use thiserror::Error;

/// Frames that may be in flight: one being painted, one on the wire.
pub const WINDOW: u32 = 2;

/// The viewer acknowledged a frame that was never sent.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("acknowledgement of frame {seq} which was not sent (last sent {last_sent})")]
pub struct BadAck {
    /// The acknowledged sequence number.
    pub seq: u32,
    /// The last frame sent.
    pub last_sent: u32,
}

/// Sequence numbers and acknowledgements of one viewer.
#[derive(Debug, Clone, Default)]
pub struct FrameWindow {
    last_sent: u32,
    last_acked: u32,
}

impl FrameWindow {
    /// A fresh window: nothing sent.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when another frame may be sent now.
    pub fn can_send(&self) -> bool {
        self.in_flight() < WINDOW
    }

    /// Frames sent and not yet acknowledged.
    pub fn in_flight(&self) -> u32 {
        self.last_sent.wrapping_sub(self.last_acked)
    }

    /// Records that a frame goes out and returns its sequence number.
    pub fn next_seq(&mut self) -> u32 {
        self.last_sent = self.last_sent.wrapping_add(1);
        self.last_sent
    }

    /// Records an acknowledgement. Acks are cumulative; an old one is harmless.
    pub fn ack(&mut self, seq: u32) -> Result<(), BadAck> {
        let ahead = seq.wrapping_sub(self.last_acked);
        if ahead > self.in_flight() {
            // Either an ack from the future or a stale one from before last_acked.
            if self.last_acked.wrapping_sub(seq) < 1 << 31 {
                return Ok(());
            }
            return Err(BadAck {
                seq,
                last_sent: self.last_sent,
            });
        }
        self.last_acked = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_limits_frames_in_flight() {
        let mut w = FrameWindow::new();
        assert!(w.can_send());
        let a = w.next_seq();
        let b = w.next_seq();
        assert!(!w.can_send());
        w.ack(a).unwrap();
        assert!(w.can_send());
        w.ack(b).unwrap();
        assert_eq!(w.in_flight(), 0);
        // A stale ack is ignored, an ack from the future is an error.
        w.ack(a).unwrap();
        assert_eq!(w.in_flight(), 0);
        assert!(w.ack(b + 5).is_err());
    }

    #[test]
    fn cumulative_ack() {
        let mut w = FrameWindow::new();
        w.next_seq();
        let b = w.next_seq();
        w.ack(b).unwrap();
        assert_eq!(w.in_flight(), 0);
    }
}
