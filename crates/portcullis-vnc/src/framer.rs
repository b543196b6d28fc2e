//! Finds where each server→client RFB message ends, without decoding it, so the adapter knows
//! when a FramebufferUpdate is complete (vnc-rs says nothing at its end, and nothing at all for
//! an empty one). Sans-I/O: bytes in, "update ended here" out. It allocates nothing and only
//! counts the bytes a length announces, so a lying length costs a counter, never memory.

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

/// What the framer does with the next bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a message boundary: the next byte is a message type.
    Message,
    /// Gathering a fixed-size header into `Framer::header`.
    Header { part: Part, need: usize },
    /// Skipping a payload, then going on with `then`.
    Skip { left: u64, then: Then },
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
#[derive(Debug, Clone)]
pub(crate) struct Framer {
    state: State,
    header: [u8; 12],
    got: usize,
    bytes_per_pixel: u64,
}

impl Framer {
    /// A framer positioned at a message boundary (right after ServerInit).
    pub(crate) fn new(bytes_per_pixel: u8) -> Self {
        Self {
            state: State::Message,
            header: [0; 12],
            got: 0,
            bytes_per_pixel: u64::from(bytes_per_pixel),
        }
    }

    /// Whether the framer lost sync (then it never finds another boundary).
    pub(crate) fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    /// Reads `data` up to the end of the next FramebufferUpdate, if one ends in it.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Fed {
        let mut at = 0;
        while at < data.len() {
            match self.state {
                State::Lost => {
                    at = data.len();
                }
                State::Message => {
                    let kind = data[at];
                    at += 1;
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
                        self.state = self.header_done(part);
                    }
                }
                State::Skip { left, then } => {
                    let available = u64::try_from(data.len() - at).unwrap_or(u64::MAX);
                    let take = left.min(available);
                    // `take` is at most `data.len() - at`, so it fits.
                    at += usize::try_from(take).unwrap_or(data.len() - at);
                    let left = left - take;
                    self.state = State::Skip { left, then };
                }
            }
            if let State::Skip { left: 0, then } = self.state {
                match then {
                    Then::Message => self.state = State::Message,
                    Then::Rects { left: 0 } => {
                        self.state = State::Message;
                        return Fed {
                            consumed: at,
                            update_end: true,
                        };
                    }
                    Then::Rects { left } => {
                        self.state = self.gather(Part::Rect { left: left - 1 }, 12);
                    }
                }
            }
        }
        Fed {
            consumed: at,
            update_end: false,
        }
    }

    fn gather(&mut self, part: Part, need: usize) -> State {
        self.got = 0;
        State::Header { part, need }
    }

    /// The state after a complete header of `part`.
    fn header_done(&mut self, part: Part) -> State {
        let h = self.header;
        let u16_at = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        match part {
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
            Part::CopySource { left } => State::Skip {
                left: 0,
                then: Then::Rects { left },
            },
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
        }
    }
}

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod oracles;

#[cfg(test)]
mod tests;
