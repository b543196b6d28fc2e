//! Finds where each server→client RFB message ends, so the adapter knows when a
//! FramebufferUpdate is complete (vnc-rs says nothing at its end, and nothing at all for an empty
//! one). Sans-I/O: bytes in; out, the bytes vnc-rs is to read and "update ended here".
//!
//! Counting ([`Framer::new`]), it decodes nothing and keeps nothing: a lying length costs a
//! counter, never memory. Rewriting ([`Framer::rewriting`], what the adapter uses), it also takes
//! ZRLE away from vnc-rs (whose decoder builds every tile pixel by pixel): a ZRLE rectangle's
//! compressed data is gathered (at most what the rectangle can take) and vnc-rs reads a CopyRect
//! of the rectangle onto itself instead. The adapter decodes the data ([`crate::zrle`]) when
//! vnc-rs reports that copy, i.e. in stream order (the zlib stream is shared) and only once
//! vnc-rs has checked the rectangle against the screen; a server's own copy of a rectangle onto
//! itself (a no-op) is announced too ([`Gathered`]), so the two stay in step whatever the server
//! sends.

use portcullis_core::desktop::Rect;

use crate::zrle::max_tile_bytes;

/// Rectangle encodings whose length is known from their header (and what we offer the server).
/// Anything else loses sync: TRLE, Tight and Hextile can only be measured by decoding them.
mod encoding {
    pub(super) const RAW: i32 = 0;
    pub(super) const COPY_RECT: i32 = 1;
    pub(super) const ZRLE: i32 = 16;
    pub(super) const DESKTOP_SIZE: i32 = -223;
}

/// The encodings the framer can follow, in the order we offer them (the adapter's list is
/// checked against it).
#[cfg(test)]
pub(crate) const FOLLOWED_ENCODINGS: [i32; 4] = [
    encoding::ZRLE,
    encoding::COPY_RECT,
    encoding::RAW,
    encoding::DESKTOP_SIZE,
];

/// What the rewriting framer hands the adapter, one per CopyRect of a rectangle onto itself that
/// vnc-rs will report, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gathered {
    /// A ZRLE rectangle's compressed data, for the adapter to decode.
    Zrle { rect: Rect, zlib: Vec<u8> },
    /// The server's own copy of `rect` onto itself: nothing to do.
    NoOp { rect: Rect },
}

/// Why the rewriting framer stopped (the connection cannot go on: the zlib stream of ZRLE is
/// shared by every rectangle, and vnc-rs cannot take it over midway).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FramerError {
    /// A ZRLE rectangle larger than any the gateway takes.
    #[error("the VNC server sent a ZRLE rectangle of {0}x{1} pixels")]
    ZrleSize(u32, u32),
    /// More ZRLE data than its rectangle can take.
    #[error("the VNC server announced {0} bytes of ZRLE data for at most {1}")]
    ZrleLength(u64, u64),
    /// A message or encoding the framer does not follow, after ZRLE was taken over.
    #[error("the VNC server sent a message the gateway does not follow")]
    Lost,
}

/// The largest ZRLE rectangle decoded: vnc-rs's own bounds (8192 a side, 3840 × 2160 pixels).
const MAX_ZRLE_SIDE: u32 = 8192;
const MAX_ZRLE_PIXELS: u64 = 3840 * 2160;

/// What the framer does with the next bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a message boundary: the next byte is a message type.
    Message,
    /// Gathering a fixed-size header into `Framer::header`.
    Header { part: Part, need: usize },
    /// Skipping a payload, then going on with `then`.
    Skip { left: u64, then: Then },
    /// Gathering `left` more bytes of a ZRLE rectangle's data (rewriting), then `then`.
    Zrle { left: u64, then: Then },
    /// Out of sync (an unknown message or encoding): everything passes uncounted.
    Lost,
}

/// Which fixed-size header is being gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// FramebufferUpdate: padding, rectangle count.
    Update,
    /// A rectangle header: x, y, width, height, encoding; `left` rectangles follow it.
    Rect { left: u16 },
    /// CopyRect's source position.
    CopySource { left: u16 },
    /// ZRLE's data length.
    ZrleLength { left: u16 },
    /// SetColourMapEntries: padding, first colour, colour count.
    Colours,
    /// ServerCutText: padding, text length.
    CutText,
}

/// Where to go once a payload has been skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// The message is over.
    Message,
    /// A rectangle is over; `left` more in this update.
    Rects { left: u16 },
}

/// What one [`Framer::feed`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Bytes of the input the framer read (all of them unless an update ended earlier).
    pub(crate) consumed: usize,
    /// A FramebufferUpdate ended exactly after the consumed bytes.
    pub(crate) update_end: bool,
}

/// The server→client message framer, for a pixel format of `bytes_per_pixel`.
#[derive(Debug)]
pub(crate) struct Framer {
    state: State,
    header: [u8; 12],
    got: usize,
    bytes_per_pixel: u64,
    /// The current rectangle's position and size, as sent (x, y, width, height).
    rect: [u8; 8],
    /// Rewriting: ZRLE is taken from vnc-rs.
    rewriting: bool,
    /// The current ZRLE rectangle's data.
    zlib: Vec<u8>,
    /// A ZRLE rectangle was taken from vnc-rs: from then on, losing sync ends the connection.
    took_zrle: bool,
}

impl Framer {
    /// A framer positioned at a message boundary (right after ServerInit).
    pub(crate) fn new(bytes_per_pixel: u8) -> Self {
        Self {
            state: State::Message,
            header: [0; 12],
            got: 0,
            bytes_per_pixel: u64::from(bytes_per_pixel),
            rect: [0; 8],
            rewriting: false,
            zlib: Vec::new(),
            took_zrle: false,
        }
    }

    /// A framer that also decodes ZRLE itself (the adapter's pixel format: 4 bytes a pixel,
    /// 3-byte compressed pixels), positioned right after ServerInit.
    pub(crate) fn rewriting() -> Self {
        Self {
            rewriting: true,
            ..Self::new(4)
        }
    }

    /// Bytes of the ZRLE rectangle being gathered (memory held for it).
    pub(crate) fn gathering(&self) -> usize {
        self.zlib.capacity()
    }

    /// A ZRLE rectangle was taken from vnc-rs (from then on, losing sync ends the connection).
    pub(crate) fn took_zrle(&self) -> bool {
        self.took_zrle
    }

    /// Whether the framer lost sync (then it never finds another boundary).
    pub(crate) fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    /// Counting only: reads `data` up to the end of the next FramebufferUpdate, if one ends
    /// in it (what vnc-rs gets is `data` itself).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn feed(&mut self, data: &[u8]) -> Fed {
        let mut out = Vec::new();
        let mut gathered = Vec::new();
        // A counting framer takes nothing over, so it never fails.
        self.feed_into(data, &mut out, &mut gathered)
            .unwrap_or(Fed {
                consumed: data.len(),
                update_end: false,
            })
    }

    /// Reads `data` up to the end of the next FramebufferUpdate, if one ends in it, appending
    /// to `out` what vnc-rs is to read for the bytes consumed (the same bytes, but for ZRLE
    /// rectangles when rewriting) and to `gathered` what the adapter takes in their place.
    pub(crate) fn feed_into(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        gathered: &mut Vec<Gathered>,
    ) -> Result<Fed, FramerError> {
        let mut at = 0;
        while at < data.len() {
            match self.state {
                State::Lost => {
                    if self.took_zrle {
                        return Err(FramerError::Lost);
                    }
                    out.extend_from_slice(&data[at..]);
                    at = data.len();
                }
                State::Message => {
                    let kind = data[at];
                    at += 1;
                    out.push(kind);
                    self.state = match kind {
                        0 => self.gather(Part::Update, 3),
                        1 => self.gather(Part::Colours, 5),
                        2 => State::Message, // Bell
                        3 => self.gather(Part::CutText, 7),
                        _ => State::Lost,
                    };
                }
                State::Header { part, need } => {
                    let take = (need - self.got).min(data.len() - at);
                    self.header[self.got..self.got + take].copy_from_slice(&data[at..at + take]);
                    self.got += take;
                    at += take;
                    if self.got == need {
                        self.state = self.header_done(part, need, out, gathered)?;
                    }
                }
                State::Skip { left, then } => {
                    let take = self.take(left, data.len() - at);
                    out.extend_from_slice(&data[at..at + take]);
                    at += take;
                    self.state = State::Skip {
                        left: left - take as u64,
                        then,
                    };
                }
                State::Zrle { left, then } => {
                    let take = self.take(left, data.len() - at);
                    self.zlib.extend_from_slice(&data[at..at + take]);
                    at += take;
                    let left = left - take as u64;
                    self.state = State::Zrle { left, then };
                }
            }
            if let State::Zrle { left: 0, then } = self.state {
                self.zrle_done(out, gathered);
                self.state = State::Skip { left: 0, then };
            }
            if let State::Skip { left: 0, then } = self.state {
                match then {
                    Then::Message => self.state = State::Message,
                    Then::Rects { left: 0 } => {
                        self.state = State::Message;
                        return Ok(Fed {
                            consumed: at,
                            update_end: true,
                        });
                    }
                    Then::Rects { left } => {
                        self.state = self.gather(Part::Rect { left: left - 1 }, 12);
                    }
                }
            }
        }
        Ok(Fed {
            consumed: at,
            update_end: false,
        })
    }

    /// How many of `available` bytes a payload of `left` more takes.
    fn take(&self, left: u64, available: usize) -> usize {
        // At most `available`, so it fits.
        usize::try_from(left.min(available as u64)).unwrap_or(available)
    }

    /// A ZRLE rectangle's data is all there: hand it to the adapter, and give vnc-rs a copy of
    /// the rectangle onto itself instead.
    fn zrle_done(&mut self, out: &mut Vec<u8>, gathered: &mut Vec<Gathered>) {
        let r = self.rect;
        let mut zlib = std::mem::take(&mut self.zlib);
        // It waits for the adapter weighed by its length: no spare capacity with it.
        zlib.shrink_to_fit();
        gathered.push(Gathered::Zrle {
            rect: rect_of(&r),
            zlib,
        });
        self.took_zrle = true;
        out.extend_from_slice(&r);
        out.extend_from_slice(&encoding::COPY_RECT.to_be_bytes());
        out.extend_from_slice(&r[..4]);
    }

    fn gather(&mut self, part: Part, need: usize) -> State {
        self.got = 0;
        State::Header { part, need }
    }

    /// The state after a complete header of `part` (`need` bytes), whose bytes go to `out`
    /// unless a ZRLE rectangle is taken from vnc-rs.
    fn header_done(
        &mut self,
        part: Part,
        need: usize,
        out: &mut Vec<u8>,
        gathered: &mut Vec<Gathered>,
    ) -> Result<State, FramerError> {
        let h = self.header;
        let u16_at = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let rewriting = self.rewriting;
        let taken = match part {
            Part::Rect { .. } => {
                self.rect.copy_from_slice(&h[..8]);
                rewriting && i32::from_be_bytes([h[8], h[9], h[10], h[11]]) == encoding::ZRLE
            }
            Part::ZrleLength { .. } => rewriting,
            _ => false,
        };
        if !taken {
            out.extend_from_slice(&h[..need]);
        }
        let state = match part {
            Part::Update => match u16_at(1) {
                // An empty update: over with its header.
                0 => State::Skip {
                    left: 0,
                    then: Then::Rects { left: 0 },
                },
                count => self.gather(Part::Rect { left: count - 1 }, 12),
            },
            Part::Rect { left } => {
                let (width, height) = (u64::from(u16_at(4)), u64::from(u16_at(6)));
                let encoding = i32::from_be_bytes([h[8], h[9], h[10], h[11]]);
                match encoding {
                    encoding::RAW => State::Skip {
                        left: width * height * self.bytes_per_pixel,
                        then: Then::Rects { left },
                    },
                    encoding::COPY_RECT => self.gather(Part::CopySource { left }, 4),
                    encoding::ZRLE => self.gather(Part::ZrleLength { left }, 4),
                    encoding::DESKTOP_SIZE => State::Skip {
                        left: 0,
                        then: Then::Rects { left },
                    },
                    _ => State::Lost,
                }
            }
            Part::CopySource { left } => {
                if rewriting && h[..4] == self.rect[..4] {
                    gathered.push(Gathered::NoOp {
                        rect: rect_of(&self.rect),
                    });
                }
                State::Skip {
                    left: 0,
                    then: Then::Rects { left },
                }
            }
            Part::ZrleLength { left } if rewriting => {
                let rect = rect_of(&self.rect);
                if rect.w > MAX_ZRLE_SIDE
                    || rect.h > MAX_ZRLE_SIDE
                    || u64::from(rect.w) * u64::from(rect.h) > MAX_ZRLE_PIXELS
                {
                    return Err(FramerError::ZrleSize(rect.w, rect.h));
                }
                // zlib adds at most a few bytes per 16 KiB to what it cannot compress.
                let most = max_tile_bytes(rect.w, rect.h) + 64 * 1024;
                let announced = u64::from(u32_at(0));
                if announced > most {
                    return Err(FramerError::ZrleLength(announced, most));
                }
                // Grown as the data comes: a lying length reserves nothing.
                self.zlib = Vec::new();
                State::Zrle {
                    left: announced,
                    then: Then::Rects { left },
                }
            }
            Part::ZrleLength { left } => State::Skip {
                left: u64::from(u32_at(0)),
                then: Then::Rects { left },
            },
            Part::Colours => State::Skip {
                left: u64::from(u16_at(3)) * 6,
                then: Then::Message,
            },
            Part::CutText => State::Skip {
                left: u64::from(u32_at(3)),
                then: Then::Message,
            },
        };
        Ok(state)
    }
}

/// A rectangle from its header's first 8 bytes.
fn rect_of(r: &[u8; 8]) -> Rect {
    let at = |i: usize| u32::from(u16::from_be_bytes([r[i], r[i + 1]]));
    Rect::new(at(0), at(2), at(4), at(6))
}

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod oracles;

#[cfg(test)]
mod tests;
