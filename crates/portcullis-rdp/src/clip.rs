//! Clipboard text over RDP's CLIPRDR static channel (ironrdp-cliprdr), for both of the gateway's
//! roles: client of an RDP target, and server of a native RDP client.
//!
//! Only Unicode text crosses (`CF_UNICODETEXT`): no file lists, no locks, no images. What may
//! cross, and which way, is the broker's decision (the policy); this module only speaks the
//! channel. The channel's callbacks cannot send, so [`ClipQueue`] notes what happened and
//! [`drain`] acts on it from the session loop.

use ironrdp_cliprdr::backend::CliprdrBackend;
use ironrdp_cliprdr::pdu::{
    ClipboardFormat, ClipboardFormatId, ClipboardGeneralCapabilityFlags, FileContentsRequest,
    FileContentsResponse, FormatDataRequest, FormatDataResponse, LockDataId,
    OwnedFormatDataResponse,
};
use ironrdp_cliprdr::{Cliprdr, Role};
use ironrdp_svc::SvcMessage;
use portcullis_core::desktop::MAX_CLIPBOARD_BYTES;
use tracing::debug;

/// Largest clipboard PDU (reassembled) we accept from a peer: the text limit in UTF-16 plus room
/// for headers. Larger ones are dropped unread.
pub(crate) const MAX_CLIPRDR_PDU: usize = 2 * MAX_CLIPBOARD_BYTES + 4096;

/// What the channel reported, in order.
#[derive(Debug)]
enum ClipEvent {
    /// The server is ready (client role): send our format list now.
    WantFormatList,
    /// The other side copied something; `true` when it includes text.
    RemoteCopied(bool),
    /// The other side pastes: it wants our data in this format.
    DataRequested(ClipboardFormatId),
    /// The data we asked for (`None`: an error or not text).
    Data(Option<String>),
}

/// The channel backend: a queue of events for [`drain`].
#[derive(Debug, Default)]
pub(crate) struct ClipQueue {
    events: Vec<ClipEvent>,
}

ironrdp_core::impl_as_any!(ClipQueue);

impl CliprdrBackend for ClipQueue {
    fn temporary_directory(&self) -> &str {
        ""
    }

    fn client_capabilities(&self) -> ClipboardGeneralCapabilityFlags {
        // No locks, no file transfer: text only.
        ClipboardGeneralCapabilityFlags::empty()
    }

    fn on_ready(&mut self) {}

    fn on_request_format_list(&mut self) {
        self.events.push(ClipEvent::WantFormatList);
    }

    fn on_process_negotiated_capabilities(&mut self, _: ClipboardGeneralCapabilityFlags) {}

    fn on_remote_copy(&mut self, formats: &[ClipboardFormat]) {
        let text = formats
            .iter()
            .any(|f| f.id == ClipboardFormatId::CF_UNICODETEXT);
        self.events.push(ClipEvent::RemoteCopied(text));
    }

    fn on_format_data_request(&mut self, request: FormatDataRequest) {
        self.events.push(ClipEvent::DataRequested(request.format));
    }

    fn on_format_data_response(&mut self, response: FormatDataResponse<'_>) {
        let text = if response.is_error() {
            None
        } else {
            response.to_unicode_string().ok()
        };
        self.events.push(ClipEvent::Data(text));
    }

    fn on_file_contents_request(&mut self, _: FileContentsRequest) {}

    fn on_file_contents_response(&mut self, _: FileContentsResponse<'_>) {}

    fn on_lock(&mut self, _: LockDataId) {}

    fn on_unlock(&mut self, _: LockDataId) {}
}

/// What one side of the gateway keeps about the clipboard.
#[derive(Debug, Default)]
pub(crate) struct ClipState {
    /// The text we offer the peer (from the other side of the session), if any.
    local: Option<String>,
    /// The peer copied text before the channel was ready: ask for it once it is.
    remote_pending: bool,
}

const TEXT: [ClipboardFormat; 1] = [ClipboardFormat::new(ClipboardFormatId::CF_UNICODETEXT)];

/// Line ends as Windows clipboards have them.
fn to_wire(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// Line ends as the rest of the gateway has them.
fn from_wire(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// Offers `text` to the peer (it will ask for the data when it pastes). Returns what to send.
pub(crate) fn offer<R: Role>(
    cliprdr: &mut Cliprdr<R>,
    state: &mut ClipState,
    text: String,
) -> Vec<SvcMessage> {
    state.local = Some(text);
    if !cliprdr.is_ready() {
        // The format list goes out when the channel is ready (client role: on the server's
        // request; server role: the client's first format list makes it ready).
        return Vec::new();
    }
    sent(cliprdr.initiate_copy(&TEXT))
}

/// Acts on what the channel reported since the last call. Returns what to send to the peer and
/// the texts that arrived from it (for the broker, which decides whether they cross).
pub(crate) fn drain<R: Role>(
    cliprdr: &mut Cliprdr<R>,
    state: &mut ClipState,
) -> (Vec<SvcMessage>, Vec<String>) {
    let events = cliprdr
        .downcast_backend_mut::<ClipQueue>()
        .map(|q| std::mem::take(&mut q.events))
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut texts = Vec::new();
    for event in events {
        match event {
            ClipEvent::WantFormatList => {
                let formats: &[ClipboardFormat] = if state.local.is_some() { &TEXT } else { &[] };
                out.extend(sent(cliprdr.initiate_copy(formats)));
            }
            ClipEvent::RemoteCopied(text) => state.remote_pending = text,
            ClipEvent::DataRequested(format) => {
                let response = match &state.local {
                    Some(text) if format == ClipboardFormatId::CF_UNICODETEXT => {
                        OwnedFormatDataResponse::new_unicode_string(&to_wire(text))
                    }
                    // Every request gets an answer, or the peer's paste hangs.
                    _ => OwnedFormatDataResponse::new_error(),
                };
                out.extend(sent(cliprdr.submit_format_data(response)));
            }
            ClipEvent::Data(Some(text)) => texts.push(from_wire(&text)),
            ClipEvent::Data(None) => debug!("the peer's clipboard data was not text"),
        }
    }
    if state.remote_pending && cliprdr.is_ready() {
        state.remote_pending = false;
        out.extend(sent(
            cliprdr.initiate_paste(ClipboardFormatId::CF_UNICODETEXT),
        ));
    }
    (out, texts)
}

/// The messages of a channel call; a refusal (wrong state) is logged and sends nothing, it never
/// ends the session.
fn sent<R: Role>(
    result: ironrdp_pdu::PduResult<ironrdp_cliprdr::CliprdrSvcMessages<R>>,
) -> Vec<SvcMessage> {
    match result {
        Ok(messages) => messages.into(),
        Err(error) => {
            debug!(%error, "clipboard step refused");
            Vec::new()
        }
    }
}

/// The fuzzing oracle of the clipboard channel (see `server::oracles::clipboard_bytes`): `data`
/// as one channel PDU (header and chunk) from a native client, and as the payload of a hostile
/// target, to both roles once they are ready. Must never panic nor gather more than the limit.
pub(crate) fn fuzz_channel_bytes(data: &[u8]) {
    use ironrdp_cliprdr::{CliprdrClient, CliprdrServer};
    use ironrdp_svc::{StaticVirtualChannel, SvcProcessor};

    // Our own client and server shake hands first, so the fuzzed bytes meet ready channels.
    let mut client = CliprdrClient::new(Box::new(ClipQueue::default()));
    let mut server = StaticVirtualChannel::new(CliprdrServer::new(Box::new(ClipQueue::default())));
    let (mut cs, mut ss) = (ClipState::default(), ClipState::default());
    let mut to_client = server.start().unwrap_or_default();
    for _ in 0..8 {
        let mut to_server = Vec::new();
        for m in std::mem::take(&mut to_client) {
            if let Ok(bytes) = m.encode_unframed_pdu() {
                to_server.extend(client.process(&bytes).unwrap_or_default());
            }
        }
        to_server.extend(drain(&mut client, &mut cs).0);
        for m in to_server {
            if let Ok(bytes) = m.encode_unframed_pdu() {
                if let Some(p) = server.channel_processor_downcast_mut::<CliprdrServer>() {
                    to_client.extend(p.process(&bytes).unwrap_or_default());
                }
            }
        }
        if let Some(p) = server.channel_processor_downcast_mut::<CliprdrServer>() {
            to_client.extend(drain(p, &mut ss).0);
        }
        if to_client.is_empty() {
            break;
        }
    }
    let _ = offer(&mut client, &mut cs, "text".into());
    // From a native client: a whole channel PDU, bounded as the server bounds it.
    let declared = data
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes);
    if usize::try_from(declared).is_ok_and(|n| n <= MAX_CLIPRDR_PDU) {
        let _ = server.process(data);
        if let Some(p) = server.channel_processor_downcast_mut::<CliprdrServer>() {
            let _ = drain(p, &mut ss);
        }
    }
    // From a hostile target: a reassembled payload.
    let _ = client.process(data);
    let _ = drain(&mut client, &mut cs);
}

#[cfg(test)]
mod tests {
    use ironrdp_cliprdr::{CliprdrClient, CliprdrServer};
    use ironrdp_svc::SvcProcessor;

    use super::*;

    /// Hands `messages` to `to` as the channel would (encoded, then processed).
    fn deliver(messages: Vec<SvcMessage>, to: &mut dyn SvcProcessor) -> Vec<SvcMessage> {
        let mut replies = Vec::new();
        for m in messages {
            let bytes = m.encode_unframed_pdu().unwrap();
            replies.extend(to.process(&bytes).unwrap());
        }
        replies
    }

    /// Runs both ends until nothing moves; returns the texts each received (client, server).
    fn settle(
        client: &mut CliprdrClient,
        cs: &mut ClipState,
        server: &mut CliprdrServer,
        ss: &mut ClipState,
        mut to_client: Vec<SvcMessage>,
        mut to_server: Vec<SvcMessage>,
    ) -> (Vec<String>, Vec<String>) {
        let (mut got_client, mut got_server) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            let mut next_server = deliver(std::mem::take(&mut to_client), client);
            let (m, t) = drain(client, cs);
            next_server.extend(m);
            got_client.extend(t);
            let mut next_client = deliver(std::mem::take(&mut to_server), server);
            let (m, t) = drain(server, ss);
            next_client.extend(m);
            got_server.extend(t);
            if next_client.is_empty() && next_server.is_empty() {
                break;
            }
            to_client = next_client;
            to_server = next_server;
        }
        (got_client, got_server)
    }

    #[test]
    fn text_crosses_both_ways_between_our_client_and_our_server() {
        let mut client = CliprdrClient::new(Box::new(ClipQueue::default()));
        let mut server = CliprdrServer::new(Box::new(ClipQueue::default()));
        let (mut cs, mut ss) = (ClipState::default(), ClipState::default());
        let start = server.start().unwrap();
        settle(
            &mut client,
            &mut cs,
            &mut server,
            &mut ss,
            start,
            Vec::new(),
        );
        assert!(client.is_ready() && server.is_ready());

        // The client copies: the server asks for it and gets it, line ends as they were.
        let offer_c = offer(&mut client, &mut cs, "one\ntwo".into());
        let (_, at_server) = settle(
            &mut client,
            &mut cs,
            &mut server,
            &mut ss,
            Vec::new(),
            offer_c,
        );
        assert_eq!(at_server, ["one\ntwo"]);

        // The server side offers text: the client fetches it.
        let offer_s = offer(&mut server, &mut ss, "from the target".into());
        let (at_client, _) = settle(
            &mut client,
            &mut cs,
            &mut server,
            &mut ss,
            offer_s,
            Vec::new(),
        );
        assert_eq!(at_client, ["from the target"]);
    }

    #[test]
    fn hostile_channel_bytes_are_harmless() {
        let mut x: u32 = 0x9e37_79b9;
        for len in 0..600 {
            let mut data: Vec<u8> = (0..len % 200)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x.to_le_bytes()[0]
                })
                .collect();
            // Now and then a plausible channel header (length, first and last chunk).
            if len % 3 == 0 && data.len() >= 8 {
                let n = u32::try_from(data.len() - 8).unwrap();
                data[..4].copy_from_slice(&n.to_le_bytes());
                data[4..8].copy_from_slice(&3u32.to_le_bytes());
            }
            fuzz_channel_bytes(&data);
        }
    }

    #[test]
    fn line_ends_cross_both_ways() {
        assert_eq!(to_wire("a\nb\r\nc"), "a\r\nb\r\nc");
        assert_eq!(from_wire("a\r\nb\nc"), "a\nb\nc");
        assert_eq!(from_wire(&to_wire("x\ny\n")), "x\ny\n");
    }
}
