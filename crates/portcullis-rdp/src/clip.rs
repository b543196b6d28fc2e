//! The clipboard over RDP's CLIPRDR static channel (ironrdp-cliprdr), for both of the gateway's
//! roles: client of an RDP target, and server of a native RDP client.
//!
//! Unicode text crosses (`CF_UNICODETEXT`), and file lists (`FileGroupDescriptorW` with file
//! streams): no locks, no images. What may cross, and which way, is the broker's decision (the
//! policy); this module only speaks the channel. Files are **stored and forwarded**: when the
//! peer copies files and the session's [`ClipFileTerms`] let them cross from its side, the
//! gateway fetches the list and then each file whole (size-bounded range requests), hashes it and
//! hands the files over; the other side is offered them as the gateway's own file list and its
//! requests are served from memory. Files the terms refuse are only named (their content is never
//! asked for), so the refusal can be recorded. The channel's callbacks cannot send, so
//! [`ClipQueue`] notes what happened and [`drain`] acts on it from the session loop.

use std::sync::Arc;

use ironrdp_cliprdr::backend::CliprdrBackend;
use ironrdp_cliprdr::chunked_fetch::{ChunkedFetch, ChunkedFetchProgress};
use ironrdp_cliprdr::pdu::{
    ClipboardFileAttributes, ClipboardFormat, ClipboardFormatId, ClipboardFormatName,
    ClipboardGeneralCapabilityFlags, FileContentsFlags, FileContentsRequest, FileContentsResponse,
    FileDescriptor, FormatDataRequest, FormatDataResponse, LockDataId, OwnedFormatDataResponse,
};
use ironrdp_cliprdr::{Cliprdr, Role};
use ironrdp_core::IntoOwned as _;
use ironrdp_svc::SvcMessage;
use portcullis_core::desktop::{
    ClipFile, MAX_CLIPBOARD_BYTES, MAX_CLIPBOARD_FILES, MAX_CLIPBOARD_FILES_BYTES,
};
use sha2::{Digest, Sha256};
use tracing::debug;

/// Largest clipboard PDU (reassembled) we accept from a peer: the text limit in UTF-16 plus room
/// for headers (also above a file-contents chunk and a list of [`MAX_CLIPBOARD_FILES`] files).
/// Larger ones are dropped unread.
pub(crate) const MAX_CLIPRDR_PDU: usize = 2 * MAX_CLIPBOARD_BYTES + 4096;

/// What we ask a peer for at once when fetching a file (well within [`MAX_CLIPRDR_PDU`]).
const FETCH_CHUNK: u32 = 64 * 1024;

/// What the channel reported, in order.
#[derive(Debug)]
enum ClipEvent {
    /// The server is ready (client role): send our format list now.
    WantFormatList,
    /// The other side copied something: whether it includes text, and its file list format.
    RemoteCopied {
        text: bool,
        files: Option<ClipboardFormatId>,
    },
    /// The other side pastes: it wants our data in this format.
    DataRequested(ClipboardFormatId),
    /// The data we asked for (`None`: an error or not text).
    Data(Option<String>),
    /// The file list we asked for.
    FileList(Vec<FileDescriptor>),
    /// The other side pastes our files: it wants (part of) one.
    ContentsRequested(FileContentsRequest),
    /// (Part of) a file we asked for.
    Contents(FileContentsResponse<'static>),
}

/// The channel backend: a queue of events for [`drain`].
#[derive(Debug, Default)]
pub(crate) struct ClipQueue {
    events: Vec<ClipEvent>,
}

ironrdp_core::impl_as_any!(ClipQueue);

/// How many events the queue holds between two drains (a peer flooding the channel loses the
/// excess, never memory).
const MAX_QUEUED: usize = 256;

impl ClipQueue {
    fn push(&mut self, event: ClipEvent) {
        if self.events.len() < MAX_QUEUED {
            self.events.push(event);
        }
    }
}

impl CliprdrBackend for ClipQueue {
    fn temporary_directory(&self) -> &str {
        ""
    }

    fn client_capabilities(&self) -> ClipboardGeneralCapabilityFlags {
        // File streams without paths; no locks (we fetch a copy whole as soon as it is made).
        ClipboardGeneralCapabilityFlags::STREAM_FILECLIP_ENABLED
            | ClipboardGeneralCapabilityFlags::FILECLIP_NO_FILE_PATHS
    }

    fn on_ready(&mut self) {}

    fn on_request_format_list(&mut self) {
        self.push(ClipEvent::WantFormatList);
    }

    fn on_process_negotiated_capabilities(&mut self, _: ClipboardGeneralCapabilityFlags) {}

    fn on_remote_copy(&mut self, formats: &[ClipboardFormat]) {
        let text = formats
            .iter()
            .any(|f| f.id == ClipboardFormatId::CF_UNICODETEXT);
        let files = formats
            .iter()
            .find(|f| {
                f.name
                    .as_ref()
                    .is_some_and(|n| n.value() == ClipboardFormatName::FILE_LIST.value())
            })
            .map(|f| f.id);
        self.push(ClipEvent::RemoteCopied { text, files });
    }

    fn on_format_data_request(&mut self, request: FormatDataRequest) {
        self.push(ClipEvent::DataRequested(request.format));
    }

    fn on_format_data_response(&mut self, response: FormatDataResponse<'_>) {
        let text = if response.is_error() {
            None
        } else {
            response.to_unicode_string().ok()
        };
        self.push(ClipEvent::Data(text));
    }

    fn on_remote_file_list(&mut self, files: &[FileDescriptor], _: Option<u32>) {
        self.push(ClipEvent::FileList(
            files
                .iter()
                .take(MAX_CLIPBOARD_FILES + 1)
                .cloned()
                .collect(),
        ));
    }

    fn on_file_contents_request(&mut self, request: FileContentsRequest) {
        self.push(ClipEvent::ContentsRequested(request));
    }

    fn on_file_contents_response(&mut self, response: FileContentsResponse<'_>) {
        self.push(ClipEvent::Contents(response.into_owned()));
    }

    fn on_lock(&mut self, _: LockDataId) {}

    fn on_unlock(&mut self, _: LockDataId) {}
}

/// A copy of the peer's files being fetched, one file after the other.
#[derive(Debug)]
struct Fetch {
    /// The files so far (content filled in as each completes), with their index in the peer's
    /// list.
    files: Vec<(i32, ClipFile)>,
    /// The file being fetched now (an index into `files`) and its transfer.
    current: Option<(usize, ChunkedFetch)>,
    /// Bytes still allowed for the rest.
    budget: u64,
}

/// What one side of the gateway keeps about the clipboard.
#[derive(Debug, Default)]
pub(crate) struct ClipState {
    /// The text we offer the peer (from the other side of the session), if any.
    local: Option<String>,
    /// The peer copied text before the channel was ready: ask for it once it is.
    remote_pending: bool,
    /// The peer copied files: their list format, to ask for once the channel is ready.
    files_pending: Option<ClipboardFormatId>,
    /// Files the peer copies may be fetched, up to this many bytes in all (`None`: they are only
    /// named).
    fetch_limit: Option<u64>,
    /// The peer's files being fetched.
    fetch: Option<Fetch>,
    /// The files we offer the peer (from the other side of the session), served from memory.
    offered: Vec<ClipFile>,
    /// The next file stream id.
    next_stream: u32,
}

impl ClipState {
    /// Lets the gateway fetch the files the peer copies, up to `max_bytes` in all (and never more
    /// than [`MAX_CLIPBOARD_FILES_BYTES`]); `None`: files the peer copies are only named.
    pub(crate) fn fetch_files(&mut self, max_bytes: Option<u64>) {
        self.fetch_limit = max_bytes.map(|m| m.min(MAX_CLIPBOARD_FILES_BYTES));
    }
}

/// What [`drain`] found.
#[derive(Debug, Default)]
pub(crate) struct Drained {
    /// To send to the peer.
    pub(crate) messages: Vec<SvcMessage>,
    /// Texts the peer copied (for the broker, which decides whether they cross).
    pub(crate) texts: Vec<String>,
    /// Files the peer copied, each copy whole: fetched when the terms allowed it, else named
    /// only (for the broker, which decides and records).
    pub(crate) files: Vec<Vec<ClipFile>>,
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
    state.offered.clear();
    if !cliprdr.is_ready() {
        // The format list goes out when the channel is ready (client role: on the server's
        // request; server role: the client's first format list makes it ready).
        return Vec::new();
    }
    sent(cliprdr.initiate_copy(&TEXT))
}

/// Offers `files` (those with content) to the peer as our own file list; its requests for their
/// contents are then served from memory. Replaces any text we offered. Returns what to send.
pub(crate) fn offer_files<R: Role>(
    cliprdr: &mut Cliprdr<R>,
    state: &mut ClipState,
    files: Vec<ClipFile>,
) -> Vec<SvcMessage> {
    let files: Vec<ClipFile> = files
        .into_iter()
        .filter(|f| f.content.is_some())
        .take(MAX_CLIPBOARD_FILES)
        .collect();
    if files.is_empty() {
        return Vec::new();
    }
    let descriptors = files
        .iter()
        .map(|f| {
            FileDescriptor::new(f.name.clone())
                .with_attributes(ClipboardFileAttributes::NORMAL)
                .with_file_size(f.size)
        })
        .collect();
    state.local = None;
    state.offered = files;
    if !cliprdr.is_ready() {
        debug!("clipboard files offered before the channel was ready: dropped");
        state.offered.clear();
        return Vec::new();
    }
    let messages = sent(cliprdr.initiate_file_copy(descriptors));
    if messages.is_empty() {
        // The peer does not take file streams.
        state.offered.clear();
    }
    messages
}

/// Acts on what the channel reported since the last call: what to send to the peer, and the
/// texts and files that arrived from it (for the broker, which decides whether they cross).
pub(crate) fn drain<R: Role>(cliprdr: &mut Cliprdr<R>, state: &mut ClipState) -> Drained {
    let events = cliprdr
        .downcast_backend_mut::<ClipQueue>()
        .map(|q| std::mem::take(&mut q.events))
        .unwrap_or_default();
    let mut out = Drained::default();
    for event in events {
        match event {
            ClipEvent::WantFormatList => {
                let formats: &[ClipboardFormat] = if state.local.is_some() { &TEXT } else { &[] };
                out.messages.extend(sent(cliprdr.initiate_copy(formats)));
            }
            ClipEvent::RemoteCopied { text, files } => {
                state.remote_pending = text;
                state.files_pending = files;
                // A new copy: the files of the last one are no longer wanted.
                state.fetch = None;
            }
            ClipEvent::DataRequested(format) => {
                let response = match &state.local {
                    Some(text) if format == ClipboardFormatId::CF_UNICODETEXT => {
                        OwnedFormatDataResponse::new_unicode_string(&to_wire(text))
                    }
                    // Every request gets an answer, or the peer's paste hangs.
                    _ => OwnedFormatDataResponse::new_error(),
                };
                out.messages
                    .extend(sent(cliprdr.submit_format_data(response)));
            }
            ClipEvent::Data(Some(text)) => out.texts.push(from_wire(&text)),
            ClipEvent::Data(None) => debug!("the peer's clipboard data was not text"),
            ClipEvent::FileList(list) => {
                if let Some(named) = start_fetch(state, &list) {
                    out.files.push(named);
                }
            }
            ClipEvent::ContentsRequested(request) => {
                let response = serve(&state.offered, &request);
                out.messages
                    .extend(sent(cliprdr.submit_file_contents(response)));
            }
            ClipEvent::Contents(response) => {
                if let Some(done) = fetched(state, &response) {
                    out.files.push(done);
                }
            }
        }
    }
    if state.remote_pending && cliprdr.is_ready() {
        state.remote_pending = false;
        out.messages.extend(sent(
            cliprdr.initiate_paste(ClipboardFormatId::CF_UNICODETEXT),
        ));
    }
    if cliprdr.is_ready() {
        if let Some(format) = state.files_pending.take() {
            out.messages.extend(sent(cliprdr.initiate_paste(format)));
        }
    }
    // The next range of the file being fetched.
    if let Some((_, current)) = state.fetch.as_mut().and_then(|f| f.current.as_mut()) {
        if let Some(request) = current.next_request() {
            let messages = sent(cliprdr.request_file_contents(request));
            if messages.is_empty() {
                debug!("the peer's clipboard files cannot be fetched");
                state.fetch = None;
            }
            out.messages.extend(messages);
        }
    }
    out
}

/// The peer's file list arrived. Returns the files named only, when they are not to be fetched;
/// otherwise starts fetching them.
fn start_fetch(state: &mut ClipState, list: &[FileDescriptor]) -> Option<Vec<ClipFile>> {
    state.fetch = None;
    // Plain files at the top of the copy; folders (and what is in them) do not cross.
    let files: Vec<(i32, ClipFile)> = list
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            d.relative_path.as_deref().unwrap_or("").is_empty()
                && !d
                    .attributes
                    .is_some_and(|a| a.contains(ClipboardFileAttributes::DIRECTORY))
        })
        .filter_map(|(i, d)| {
            let index = i32::try_from(i).ok()?;
            let file = ClipFile {
                name: d.name.clone(),
                size: d.file_size.unwrap_or(0),
                content: None,
            };
            Some((index, file))
        })
        .collect();
    if files.is_empty() {
        debug!("the peer copied no plain files");
        return None;
    }
    let declared = files
        .iter()
        .fold(0u64, |sum, (_, f)| sum.saturating_add(f.size));
    let named = || files.iter().map(|(_, f)| f.clone()).collect();
    let Some(limit) = state.fetch_limit else {
        return Some(named());
    };
    if declared > limit || list.len() > MAX_CLIPBOARD_FILES {
        return Some(named());
    }
    let mut fetch = Fetch {
        files,
        current: None,
        budget: limit,
    };
    next_file(state.next_stream_id(), &mut fetch, 0);
    state.fetch = Some(fetch);
    None
}

impl ClipState {
    fn next_stream_id(&mut self) -> u32 {
        self.next_stream = self.next_stream.wrapping_add(1);
        self.next_stream
    }
}

/// Starts fetching file `at` of `fetch`.
fn next_file(stream_id: u32, fetch: &mut Fetch, at: usize) {
    fetch.current = fetch.files.get(at).map(|(index, _)| {
        // The size is asked for: the list's may be missing or wrong. The fetch fails if it is
        // more than what is left of the budget.
        let transfer =
            ChunkedFetch::new_with_size_query(stream_id, *index, FETCH_CHUNK, None, fetch.budget);
        (at, transfer)
    });
}

/// A part of a file we are fetching arrived. Returns the whole copy once its last file is in.
fn fetched(state: &mut ClipState, response: &FileContentsResponse<'_>) -> Option<Vec<ClipFile>> {
    let stream_id = state.next_stream;
    let fetch = state.fetch.as_mut()?;
    let (at, transfer) = fetch.current.as_mut()?;
    if transfer.stream_id() != response.stream_id() {
        return None;
    }
    let at = *at;
    match transfer.on_response(response) {
        ChunkedFetchProgress::InProgress => None,
        ChunkedFetchProgress::Failed => {
            debug!("fetching the peer's clipboard file failed (or it is too large)");
            state.fetch = None;
            None
        }
        ChunkedFetchProgress::Complete => {
            let (_, transfer) = fetch.current.take()?;
            let data = transfer.into_data();
            let size = u64::try_from(data.len()).unwrap_or(u64::MAX);
            fetch.budget = fetch.budget.saturating_sub(size);
            let sha256 = hex::encode(Sha256::digest(&data));
            if let Some((_, file)) = fetch.files.get_mut(at) {
                file.size = size;
                file.content = Some((Arc::from(data), sha256));
            }
            if at + 1 < fetch.files.len() {
                let id = stream_id.wrapping_add(1);
                next_file(id, fetch, at + 1);
                state.next_stream = id;
                None
            } else {
                state
                    .fetch
                    .take()
                    .map(|f| f.files.into_iter().map(|(_, f)| f).collect())
            }
        }
    }
}

/// Answers the peer's request for (part of) a file we offered.
fn serve(offered: &[ClipFile], request: &FileContentsRequest) -> FileContentsResponse<'static> {
    let id = request.stream_id;
    let data = usize::try_from(request.index)
        .ok()
        .and_then(|i| offered.get(i))
        .and_then(|f| f.content.as_ref())
        .map(|(data, _)| data);
    let Some(data) = data else {
        return FileContentsResponse::new_error(id);
    };
    if request.flags.contains(FileContentsFlags::SIZE) {
        let size = u64::try_from(data.len()).unwrap_or(u64::MAX);
        return FileContentsResponse::new_size_response(id, size);
    }
    let start = usize::try_from(request.position).unwrap_or(usize::MAX);
    let want = usize::try_from(request.requested_size).unwrap_or(usize::MAX);
    match data.get(start..) {
        Some(rest) if !rest.is_empty() && want > 0 => {
            let end = want.min(rest.len());
            FileContentsResponse::new_data_response(id, rest[..end].to_vec())
        }
        _ => FileContentsResponse::new_error(id),
    }
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
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fuzz_channel_bytes(data: &[u8]) {
    use ironrdp_cliprdr::{CliprdrClient, CliprdrServer};
    use ironrdp_svc::{StaticVirtualChannel, SvcProcessor};

    // Our own client and server shake hands first, so the fuzzed bytes meet ready channels.
    let mut client = CliprdrClient::new(Box::new(ClipQueue::default()));
    let mut server = StaticVirtualChannel::new(CliprdrServer::new(Box::new(ClipQueue::default())));
    let (mut cs, mut ss) = (ClipState::default(), ClipState::default());
    // Both fetch files, so hostile lists and contents meet the fetching code too.
    cs.fetch_files(Some(1 << 20));
    ss.fetch_files(Some(1 << 20));
    let mut to_client = server.start().unwrap_or_default();
    for _ in 0..8 {
        let mut to_server = Vec::new();
        for m in std::mem::take(&mut to_client) {
            if let Ok(bytes) = m.encode_unframed_pdu() {
                to_server.extend(client.process(&bytes).unwrap_or_default());
            }
        }
        to_server.extend(drain(&mut client, &mut cs).messages);
        for m in to_server {
            if let Ok(bytes) = m.encode_unframed_pdu() {
                if let Some(p) = server.channel_processor_downcast_mut::<CliprdrServer>() {
                    to_client.extend(p.process(&bytes).unwrap_or_default());
                }
            }
        }
        if let Some(p) = server.channel_processor_downcast_mut::<CliprdrServer>() {
            to_client.extend(drain(p, &mut ss).messages);
        }
        if to_client.is_empty() {
            break;
        }
    }
    let _ = offer(&mut client, &mut cs, "text".into());
    // Files on offer both ways, so hostile content requests meet the serving code.
    let file = ClipFile {
        name: "f.bin".into(),
        size: 3,
        content: Some((Arc::from(&b"abc"[..]), String::new())),
    };
    let _ = offer_files(&mut client, &mut cs, vec![file.clone()]);
    if let Some(p) = server.channel_processor_downcast_mut::<CliprdrServer>() {
        let _ = offer_files(p, &mut ss, vec![file]);
    }
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
mod tests;
