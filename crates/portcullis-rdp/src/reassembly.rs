//! Bounds on what a peer can make IronRDP gather before it hands a whole message over.
//!
//! IronRDP joins static channel chunks (`ironrdp-svc`'s chunk processor) and fast-path update
//! fragments (`ironrdp-session`'s fast-path processor) in buffers it never limits: a chunk
//! sequence is checked against the total its first chunk declares only when the chunks are not
//! flagged `PACKET_COMPRESSED`, the declared total itself may be 4 GiB, and fast-path fragments
//! are appended until the peer sends the last one. A hostile peer could so grow a session's
//! memory without end and hurt every other session of the gateway.
//!
//! [`Reassembly`] sees every frame before IronRDP does, on both sides of the gateway (the
//! target adapter and the native listener), follows the same sequences IronRDP follows and
//! counts what IronRDP holds. Per frame it answers:
//! - [`Verdict::Pass`]: hand the frame to IronRDP;
//! - [`Verdict::Skip`]: a chunk of a channel message larger than the relays accept (a big
//!   clipboard, say): drop it unread, IronRDP never starts gathering it;
//! - [`BoundsError`]: the peer broke a bound that no well-behaved peer comes near (a channel
//!   message larger than [`MAX_CHANNEL_DECLARED`], more bytes than the message declared, a
//!   fast-path update larger than the [`MAX_FAST_PATH_UPDATE`] we advertise, or more than
//!   [`MAX_SESSION_REASSEMBLY`] held at once): the session ends with that error.
//!
//! Sans-I/O: bytes in, verdicts out.

use ironrdp_core::{decode_cursor, ReadCursor};
use ironrdp_pdu::fast_path::{FastPathHeader, FastPathUpdatePdu, Fragmentation};
use ironrdp_pdu::mcs::McsMessage;
use ironrdp_pdu::x224::X224;
use thiserror::Error;

/// The largest fast-path update, once its fragments are joined. IronRDP's connector tells every
/// target this in the Multifragment Update capability (`MaxRequestSize`, 8 MiB), and
/// MS-RDPBCGR 2.2.7.2.6 forbids a server to send more; nothing legitimate goes beyond it.
pub const MAX_FAST_PATH_UPDATE: usize = 8 * 1024 * 1024;

/// The largest total a static channel message may declare before the session ends. Messages
/// above a channel's own limit (see [`Reassembly::add_channel`]) but below this one are dropped
/// unread, as the relays cannot use them anyway; a legitimate peer comes near this only with a
/// huge clipboard (a 4K screenshot copied as a bitmap is ~35 MB), while 4 GiB is an attack.
pub const MAX_CHANNEL_DECLARED: u64 = 64 * 1024 * 1024;

/// The most one session may hold in partial messages at once, all channels and the fast-path
/// update together: a fast-path update and a drive message and a clipboard message at their
/// limits fit, with room to spare.
pub const MAX_SESSION_REASSEMBLY: usize = 12 * 1024 * 1024;

// CHANNEL_PDU_HEADER flags (MS-RDPBCGR 2.2.6.1.1).
const CHANNEL_FLAG_FIRST: u32 = 0x0000_0001;
const CHANNEL_FLAG_LAST: u32 = 0x0000_0002;

/// A peer broke a reassembly bound: the session ends with this as its reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BoundsError {
    /// A channel message declared a total beyond [`MAX_CHANNEL_DECLARED`].
    #[error("the {channel} channel announced a {declared}-byte message, more than the {limit}-byte limit")]
    ChannelDeclared {
        /// The channel's name.
        channel: &'static str,
        /// What its chunk declared.
        declared: u64,
        /// The limit.
        limit: u64,
    },
    /// A channel's chunks carried more bytes than their message declared.
    #[error("the {channel} channel sent more than the {declared} bytes its message announced")]
    ChannelOverrun {
        /// The channel's name.
        channel: &'static str,
        /// What its chunks declared.
        declared: u64,
    },
    /// A fragmented fast-path update grew beyond [`MAX_FAST_PATH_UPDATE`].
    #[error("a fragmented fast-path update grew beyond the {limit}-byte limit")]
    FastPathUpdate {
        /// The limit.
        limit: usize,
    },
    /// The session's partial messages together grew beyond [`MAX_SESSION_REASSEMBLY`].
    #[error("the session's partial messages grew beyond the {limit}-byte limit")]
    Session {
        /// The limit.
        limit: usize,
    },
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to IronRDP.
    Pass,
    /// Drop it unread (a chunk of a channel message above the channel's limit).
    Skip,
}

/// Where a channel's chunk sequence stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sequence {
    /// No sequence open (IronRDP holds nothing for the channel).
    Idle,
    /// IronRDP gathers a message of `declared` bytes and holds `held` of it.
    Open { declared: u32, held: usize },
    /// A message above the channel's limit: its chunks are dropped; `seen` counts them.
    Skipping { declared: u32, seen: u64 },
}

#[derive(Debug)]
struct Channel {
    id: u16,
    name: &'static str,
    /// The largest message handed to IronRDP.
    limit: usize,
    sequence: Sequence,
}

/// The reassembly bounds of one session, one side (see the module's documentation).
#[derive(Debug)]
pub struct Reassembly {
    channels: Vec<Channel>,
    /// Bytes IronRDP holds of a fragmented fast-path update, when one is open.
    fast_path: Option<usize>,
    /// The largest fast-path update ([`MAX_FAST_PATH_UPDATE`] but in tests).
    fast_path_limit: usize,
    /// The per-session limit ([`MAX_SESSION_REASSEMBLY`] but in tests).
    session_limit: usize,
}

impl Default for Reassembly {
    fn default() -> Self {
        Self::new()
    }
}

impl Reassembly {
    /// No channels yet, the default limits.
    pub fn new() -> Self {
        Self {
            channels: Vec::new(),
            fast_path: None,
            fast_path_limit: MAX_FAST_PATH_UPDATE,
            session_limit: MAX_SESSION_REASSEMBLY,
        }
    }

    /// The same with other limits for the fast-path update and the session (small ones let
    /// tests and the fuzzer reach them).
    pub fn with_limits(fast_path_limit: usize, session_limit: usize) -> Self {
        Self {
            fast_path_limit,
            session_limit,
            ..Self::new()
        }
    }

    /// Follows the static channel `id` (named `name` in errors), whose messages up to `limit`
    /// bytes go to IronRDP. Channels not added pass unchecked: IronRDP has no processor for
    /// them and keeps nothing.
    pub fn add_channel(&mut self, id: u16, name: &'static str, limit: usize) {
        self.channels.retain(|c| c.id != id);
        self.channels.push(Channel {
            id,
            name,
            limit,
            sequence: Sequence::Idle,
        });
    }

    /// The bytes IronRDP holds in partial messages, by this count.
    pub fn held(&self) -> usize {
        let channels: usize = self
            .channels
            .iter()
            .map(|c| match c.sequence {
                Sequence::Open { held, .. } => held,
                _ => 0,
            })
            .sum();
        channels + self.fast_path.unwrap_or(0)
    }

    /// A whole frame as `TokioFramed::read_pdu` gives it: fast-path (`fast_path` true) or X.224
    /// (a slow-path MCS message, perhaps on a static channel). Frames that do not decode pass:
    /// IronRDP refuses them itself, holding nothing.
    pub fn frame(&mut self, fast_path: bool, frame: &[u8]) -> Result<Verdict, BoundsError> {
        if fast_path {
            self.fast_path_frame(frame)?;
            return Ok(Verdict::Pass);
        }
        let Ok(X224(message)) = ironrdp_core::decode::<X224<McsMessage<'_>>>(frame) else {
            return Ok(Verdict::Pass);
        };
        match message {
            McsMessage::SendDataIndication(d) => self.channel_chunk(d.channel_id, &d.user_data),
            McsMessage::SendDataRequest(d) => self.channel_chunk(d.channel_id, &d.user_data),
            _ => Ok(Verdict::Pass),
        }
    }

    /// One chunk (channel PDU header and data) on static channel `id`.
    pub fn channel_chunk(&mut self, id: u16, user_data: &[u8]) -> Result<Verdict, BoundsError> {
        let held_elsewhere = self.held();
        let session_limit = self.session_limit;
        let Some(channel) = self.channels.iter_mut().find(|c| c.id == id) else {
            return Ok(Verdict::Pass);
        };
        let (Some(declared), Some(flags)) = (le_u32(user_data, 0), le_u32(user_data, 4)) else {
            // Too short for a header: IronRDP refuses it.
            return Ok(Verdict::Pass);
        };
        let len = user_data.len() - 8;
        if u64::from(declared) > MAX_CHANNEL_DECLARED {
            channel.sequence = Sequence::Idle;
            return Err(BoundsError::ChannelDeclared {
                channel: channel.name,
                declared: u64::from(declared),
                limit: MAX_CHANNEL_DECLARED,
            });
        }
        let first = flags & CHANNEL_FLAG_FIRST != 0;
        let last = flags & CHANNEL_FLAG_LAST != 0;
        let overrun = |channel: &Channel| BoundsError::ChannelOverrun {
            channel: channel.name,
            declared: u64::from(declared),
        };
        // Chunks of a message being dropped, as long as they continue it.
        if let Sequence::Skipping {
            declared: d,
            mut seen,
        } = channel.sequence
        {
            if !first && d == declared {
                seen += len as u64;
                if seen > u64::from(declared) {
                    channel.sequence = Sequence::Idle;
                    return Err(overrun(channel));
                }
                channel.sequence = if last {
                    Sequence::Idle
                } else {
                    Sequence::Skipping { declared, seen }
                };
                return Ok(Verdict::Skip);
            }
            // Something else: IronRDP never saw the dropped message and holds nothing.
            channel.sequence = Sequence::Idle;
        }
        // From here on, what IronRDP's chunk processor does, step by step.
        let held = match channel.sequence {
            Sequence::Open { declared: d, held } => {
                if first {
                    // A new first chunk before the last one: IronRDP drops both with an error.
                    channel.sequence = Sequence::Idle;
                    return Ok(Verdict::Pass);
                }
                if d != declared {
                    // A chunk of another message: IronRDP drops the sequence with an error.
                    channel.sequence = Sequence::Idle;
                    return Ok(Verdict::Pass);
                }
                held
            }
            _ if first => {
                if usize::try_from(declared).map_or(true, |d| d > channel.limit) {
                    // Too big for the relays: dropped unread, its chunks counted.
                    if len as u64 > u64::from(declared) {
                        return Err(overrun(channel));
                    }
                    if !last {
                        channel.sequence = Sequence::Skipping {
                            declared,
                            seen: len as u64,
                        };
                    }
                    return Ok(Verdict::Skip);
                }
                0
            }
            // Neither first nor last and no sequence: IronRDP takes the chunk as a whole message
            // (a copy of this one frame, kept by nobody). A last chunk alone: refused.
            _ => return Ok(Verdict::Pass),
        };
        // IronRDP appends the chunk. Compressed or not, its bytes count, and may not go past
        // what the message declared (IronRDP skips that check for compressed chunks; no
        // compression is negotiated on either side, so such chunks are hostile anyway).
        let now = held + len;
        if now > usize::try_from(declared).unwrap_or(usize::MAX) {
            channel.sequence = Sequence::Idle;
            return Err(overrun(channel));
        }
        if held_elsewhere - held + now > session_limit {
            channel.sequence = Sequence::Idle;
            return Err(BoundsError::Session {
                limit: session_limit,
            });
        }
        channel.sequence = if last {
            // IronRDP hands the message over (or refuses it) and holds nothing.
            Sequence::Idle
        } else {
            Sequence::Open {
                declared,
                held: now,
            }
        };
        Ok(Verdict::Pass)
    }

    /// The updates of one fast-path frame, as IronRDP's fast-path processor joins them.
    fn fast_path_frame(&mut self, frame: &[u8]) -> Result<(), BoundsError> {
        let mut cursor = ReadCursor::new(frame);
        if decode_cursor::<FastPathHeader>(&mut cursor).is_err() {
            return Ok(());
        }
        while !cursor.is_empty() {
            let Ok(update) = decode_cursor::<FastPathUpdatePdu<'_>>(&mut cursor) else {
                // IronRDP discards the open update (a truncated visual update) or ends the
                // session: either way it holds nothing more.
                self.fast_path = None;
                return Ok(());
            };
            // Without negotiated compression (the adapter asks for none) IronRDP refuses
            // compressed data; the raw length is what it would append otherwise.
            let len = update.data.len();
            match update.fragmentation {
                // A lone update, or the start of one: whatever was open is dropped.
                Fragmentation::Single => self.fast_path = None,
                Fragmentation::First => self.fast_path = Some(len),
                Fragmentation::Next | Fragmentation::Last => {
                    let Some(held) = self.fast_path else {
                        // No sequence: IronRDP refuses the fragment.
                        continue;
                    };
                    let now = held + len;
                    if now > self.fast_path_limit {
                        self.fast_path = None;
                        return Err(BoundsError::FastPathUpdate {
                            limit: self.fast_path_limit,
                        });
                    }
                    self.fast_path = (update.fragmentation == Fragmentation::Next).then_some(now);
                }
            }
            if self.held() > self.session_limit {
                self.fast_path = None;
                return Err(BoundsError::Session {
                    limit: self.session_limit,
                });
            }
        }
        Ok(())
    }

    /// Panics when the count broke a bound (for the fuzzer).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn check_bounds(&self) {
        assert!(self.held() <= self.session_limit, "session bound broken");
        assert!(
            self.fast_path.unwrap_or(0) <= self.fast_path_limit,
            "fast-path bound broken"
        );
        for c in &self.channels {
            if let Sequence::Open { held, declared } = c.sequence {
                assert!(held <= c.limit, "channel bound broken");
                assert!(held as u64 <= u64::from(declared), "declared total broken");
            }
        }
    }
}

/// The target adapter's gate: its clipboard and drive channels, at the limits of their relays.
pub(crate) fn for_target(channels: &ironrdp_svc::StaticChannelSet) -> Reassembly {
    let mut r = Reassembly::new();
    if let Some(id) = channels.get_channel_id_by_type::<ironrdp_cliprdr::CliprdrClient>() {
        r.add_channel(id, "clipboard", crate::clip::MAX_CLIPRDR_PDU);
    }
    if let Some(id) = channels.get_channel_id_by_type::<crate::drive::RdpdrChannel>() {
        r.add_channel(id, "drive", crate::drive::MAX_RDPDR_PDU);
    }
    r
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
}

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod oracles;

#[cfg(test)]
mod tests;
