//! The TCP stream vnc-rs is given, watched: the server's bytes go through our [`Framer`] and,
//! after each FramebufferUpdate, a marker message is slipped into what vnc-rs reads, so the
//! adapter sees the update's end in order with its decoded pixels (vnc-rs reports none).
//!
//! The framer starts at the message boundary right after ServerInit, which it recognises as our
//! own SetEncodings going out (vnc-rs reads the handshake exactly, so nothing further was read).
//! If the framer loses sync, the stream passes through untouched from then on (unless it had
//! taken ZRLE over: then the stream ends with an error, see below).
//!
//! The framer also takes ZRLE from vnc-rs (`Framer::rewriting`): what vnc-rs reads is the
//! framer's output, in which each ZRLE rectangle is a copy of the rectangle onto itself, and the
//! rectangles' compressed data waits in [`Framing`] for the adapter, which decodes it when vnc-rs
//! reports those copies.
//!
//! It is also where a fast or hostile server is slowed down: vnc-rs reads the socket ahead of
//! its decoder into a channel of 4096 reads (256 MiB at its 64 KiB reads). Each read here gives
//! at most [`READ_CHUNK`] bytes (so that channel holds at most 32 MiB, whatever the server
//! sends, even one endless update), and once [`MAX_UNSEEN`] markers were handed to vnc-rs that
//! the adapter has not seen yet (updates decoded by nobody so far), the stream gives nothing
//! more until the adapter catches up: what waits is in the kernel's socket buffers and the
//! server's.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::warn;

use std::collections::VecDeque;

use crate::framer::{Framer, Gathered};

/// Whether update ends are reported, shared between the stream and the adapter.
#[derive(Debug)]
pub(crate) struct Framing {
    state: AtomicU8,
    /// The ServerCutText text that marks an update's end (random per connection).
    marker: String,
    /// Markers handed to vnc-rs that the adapter has not seen yet.
    unseen: AtomicU32,
    /// The stream's reader, while it waits for the adapter to catch up.
    paused: Mutex<Option<Waker>>,
    /// What the framer took from vnc-rs, for the copies onto themselves vnc-rs will report, and
    /// what it weighs ([`weight`]).
    gathered: Mutex<(VecDeque<Gathered>, usize)>,
    /// Why the stream ended, when the framer ended it (vnc-rs reports only a closed connection).
    failure: Mutex<Option<String>>,
}

/// What may wait for the adapter ([`weight`], and the rectangle being gathered) beyond which the
/// socket is not read (one update may hold many rectangles; [`MAX_UNSEEN`] counts updates). One
/// rectangle larger than this is still let through alone (at most 3840 × 2160 pixels' worth,
/// ~34 MB): a connection holds at most this plus one such rectangle.
pub(crate) const MAX_GATHERED_BYTES: usize = 16 << 20;

/// What an entry of [`Framing::gathered`] costs: its data and its own size (a server may send
/// thousands of tiny rectangles).
fn weight(g: &Gathered) -> usize {
    64 + match g {
        Gathered::Zrle { zlib, .. } => zlib.len(),
        Gathered::NoOp { .. } => 0,
    }
}

/// Complete updates read from the server but not yet through vnc-rs to the adapter, beyond
/// which the socket is not read. With one request outstanding a server sends one update per
/// request; a second comes only from the safety timer's request or one nobody asked for.
pub(crate) const MAX_UNSEEN: u32 = 2;

/// Most bytes one read hands to vnc-rs, which keeps up to 4096 reads queued for its decoder.
pub(crate) const READ_CHUNK: usize = 8 * 1024;

const UNARMED: u8 = 0;
const IN_SYNC: u8 = 1;
const LOST: u8 = 2;

impl Framing {
    pub(crate) fn new() -> Arc<Self> {
        // 128 bits from a CSPRNG seeded by the OS: neither the server nor a user who can put
        // text on the target's clipboard can guess it (a guess would only end an update early).
        let secret: u128 = rand::random();
        Arc::new(Self {
            state: AtomicU8::new(UNARMED),
            marker: format!("portcullis-update-end-{secret:032x}"),
            unseen: AtomicU32::new(0),
            paused: Mutex::new(None),
            gathered: Mutex::new((VecDeque::new(), 0)),
            failure: Mutex::new(None),
        })
    }

    /// Why the framer ended the stream, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What the framer took for the next copy onto itself that vnc-rs reported; `None` when
    /// there is none (the stream is not being rewritten: a real no-op).
    pub(crate) fn take_gathered(&self) -> Option<Gathered> {
        let next = {
            let mut g = self.gathered.lock().unwrap_or_else(PoisonError::into_inner);
            let next = g.0.pop_front();
            if let Some(item) = &next {
                g.1 = g.1.saturating_sub(weight(item));
            }
            next
        };
        self.wake_reader();
        next
    }

    fn push_gathered(&self, items: Vec<Gathered>) {
        let mut g = self.gathered.lock().unwrap_or_else(PoisonError::into_inner);
        for item in items {
            g.1 += weight(&item);
            g.0.push_back(item);
        }
    }

    /// What waits for the adapter, with `gathering` (the rectangle the framer is gathering
    /// now) counted while anything else waits: with nothing waiting it must be let through,
    /// since its copy is what the adapter waits for.
    fn gathered_bytes(&self, gathering: usize) -> usize {
        let g = self.gathered.lock().unwrap_or_else(PoisonError::into_inner);
        if g.0.is_empty() {
            0
        } else {
            g.1 + gathering
        }
    }

    fn wake_reader(&self) {
        let waker = self
            .paused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The adapter saw a marker: the stream may read on.
    pub(crate) fn marker_seen(&self) {
        let _ = self
            .unseen
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.wake_reader();
    }

    /// Too much waits for the adapter (updates not seen, rectangles not taken).
    fn behind(&self, gathering: usize) -> bool {
        self.unseen.load(Ordering::Acquire) >= MAX_UNSEEN
            || self.gathered_bytes(gathering) >= MAX_GATHERED_BYTES
    }

    /// Whether the stream must wait (too many updates not seen by the adapter); if so, `cx`
    /// is woken once it may read again.
    fn must_wait(&self, cx: &Context<'_>, gathering: usize) -> bool {
        if !self.behind(gathering) {
            return false;
        }
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        *paused = Some(cx.waker().clone());
        // Caught up meanwhile (before the waker was in place): no wake-up would come, read on.
        let wait = self.behind(gathering);
        if !wait {
            *paused = None;
        }
        wait
    }

    /// Update ends are being reported (the adapter may rely on them).
    pub(crate) fn in_sync(&self) -> bool {
        self.state.load(Ordering::Acquire) == IN_SYNC
    }

    /// Whether `text` (a decoded ServerCutText) is our marker.
    pub(crate) fn is_marker(&self, text: &str) -> bool {
        text == self.marker
    }

    /// The marker as a ServerCutText message.
    fn marker_message(&self) -> Vec<u8> {
        let text = self.marker.as_bytes();
        let mut m = vec![3, 0, 0, 0];
        m.extend_from_slice(&u32::try_from(text.len()).unwrap_or(0).to_be_bytes());
        m.extend_from_slice(text);
        m
    }
}

/// A stream whose server→client bytes are framed; see the module doc.
pub(crate) struct Watched<S> {
    inner: S,
    framing: Arc<Framing>,
    /// Our SetEncodings message: seeing it go out arms the framer.
    arm_on: Vec<u8>,
    framer: Option<Framer>,
    /// What vnc-rs reads next: the framer's output for the bytes it took.
    out: Vec<u8>,
    out_at: usize,
    /// A marker to hand to vnc-rs once `out` is given (not the server's: never framed).
    marker: Vec<u8>,
    marker_at: usize,
    /// Server bytes read past an update's end, framed after the marker: at most one read's
    /// worth.
    held: Vec<u8>,
    held_at: usize,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, framing: Arc<Framing>, set_encodings: Vec<u8>) -> Self {
        Self {
            inner,
            framing,
            arm_on: set_encodings,
            framer: None,
            out: Vec::new(),
            out_at: 0,
            marker: Vec::new(),
            marker_at: 0,
            held: Vec::new(),
            held_at: 0,
        }
    }
}

/// Frames `bytes` from the server, appending to `out` what vnc-rs reads for them: how many
/// were taken, and whether an update ended right after those (then the rest waits behind a
/// marker).
fn frame(
    framer: &mut Option<Framer>,
    framing: &Framing,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<(usize, bool)> {
    let fail = |message: String| {
        warn!(error = %message, "ending the VNC connection");
        *framing
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(message.clone());
        io::Error::new(io::ErrorKind::InvalidData, message)
    };
    let Some(framer) = framer.as_mut() else {
        out.extend_from_slice(bytes);
        return Ok((bytes.len(), false));
    };
    if framer.is_lost() {
        // vnc-rs cannot decode ZRLE from the middle of its zlib stream.
        if framer.took_zrle() {
            return Err(fail(crate::framer::FramerError::Lost.to_string()));
        }
        out.extend_from_slice(bytes);
        return Ok((bytes.len(), false));
    }
    let mut gathered = Vec::new();
    let fed = framer
        .feed_into(bytes, out, &mut gathered)
        .map_err(|e| fail(e.to_string()))?;
    framing.push_gathered(gathered);
    if framer.is_lost() && framer.took_zrle() {
        return Err(fail(crate::framer::FramerError::Lost.to_string()));
    }
    if framer.is_lost() {
        framing.state.store(LOST, Ordering::Release);
        warn!("lost track of the VNC server's messages: asking for updates on a timer from now on");
        return Ok((bytes.len(), false));
    }
    Ok((fed.consumed, fed.update_end))
}

/// Gives `buf` as much of `from[*at..]` as fits.
fn give(from: &[u8], at: &mut usize, buf: &mut ReadBuf<'_>) {
    let n = (from.len() - *at).min(buf.remaining());
    buf.put_slice(&from[*at..*at + n]);
    *at += n;
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_at < this.out.len() {
                give(&this.out, &mut this.out_at, buf);
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.marker_at < this.marker.len() {
                give(&this.marker, &mut this.marker_at, buf);
                return Poll::Ready(Ok(()));
            }
            // Only after a marker went out in full: every marker vnc-rs has follows a complete
            // update, so the adapter reaches it without more bytes (held ones included); and
            // every copy standing for a decoded picture went out with it.
            let gathering = this.framer.as_ref().map_or(0, Framer::gathering);
            if this.framing.must_wait(cx, gathering) {
                return Poll::Pending;
            }
            let update_end = if this.held_at < this.held.len() {
                let chunk = &this.held[this.held_at..];
                let (taken, end) = frame(&mut this.framer, &this.framing, chunk, &mut this.out)?;
                this.held_at += taken;
                if this.held_at == this.held.len() {
                    this.held = Vec::new();
                    this.held_at = 0;
                }
                end
            } else {
                let mut scratch = [0; READ_CHUNK];
                let room = READ_CHUNK.min(buf.remaining());
                let mut limited = ReadBuf::new(&mut scratch[..room]);
                match Pin::new(&mut this.inner).poll_read(cx, &mut limited) {
                    Poll::Ready(Ok(())) => {}
                    other => return other,
                }
                let read = limited.filled();
                if read.is_empty() {
                    // The server closed the connection.
                    return Poll::Ready(Ok(()));
                }
                let (taken, end) = frame(&mut this.framer, &this.framing, read, &mut this.out)?;
                if taken < read.len() {
                    this.held = read[taken..].to_vec();
                    this.held_at = 0;
                }
                end
            };
            if update_end {
                this.marker = this.framing.marker_message();
                this.marker_at = 0;
                this.framing.unseen.fetch_add(1, Ordering::AcqRel);
            }
            // Nothing for vnc-rs yet (a header or ZRLE data gathered): read on.
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.framer.is_none()
            && this.framing.state.load(Ordering::Acquire) == UNARMED
            && data.starts_with(&this.arm_on)
        {
            this.framer = Some(Framer::rewriting());
            this.framing.state.store(IN_SYNC, Ordering::Release);
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
