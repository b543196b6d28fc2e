//! An activated native connection attached to its session: the session's opening, then the
//! active loop (damage out as bitmaps, input, clipboard and drive messages in) until either
//! side ends, and the Deactivation-Reactivation sequence when the desktop changes size.

use std::net::SocketAddr;

use ironrdp_acceptor::Acceptor;
use ironrdp_cliprdr::CliprdrServer;
use ironrdp_connector::DesktopSize;
use ironrdp_core::{decode, WriteBuf};
use ironrdp_pdu::gcc::ClientEarlyCapabilityFlags;
use ironrdp_pdu::input::fast_path::FastPathInput;
use ironrdp_pdu::mcs::McsMessage;
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
use ironrdp_pdu::x224::X224;
use ironrdp_pdu::Action;
use ironrdp_svc::{server_encode_svc_messages, StaticChannelSet, SvcMessage};
use ironrdp_tokio::FramedWrite as _;
use portcullis_core::desktop::InputEvent;
use tokio::net::TcpStream;
use tokio::time::{timeout, Duration};
use tracing::debug;

use super::handshake::{self, desktop_size, goodbye, protocol, step, Activated, Budget, Framed};
use super::input::{fast_path_input_sane, InputMapper};
use super::output;
use super::{Admission, BoxFuture, Display, DisplayEvent, Gate, ServeError, ServerConfig};
use crate::clip::{self, ClipState};
use crate::drive::{self, RdpdrChannel};
use crate::reassembly::{Reassembly, Verdict};

/// A connection that passed the login and is attached to a session.
pub(crate) struct Active {
    pub(crate) admission: Admission,
    framed: Framed,
    acceptor: Option<Acceptor>,
    display: Box<dyn Display>,
    mapper: InputMapper,
    user_channel: u16,
    io_channel: u16,
    error_info: bool,
    size: (u32, u32),
    bitmaps: output::BitmapWriter,
    early_input: Vec<Vec<u8>>,
    /// The static channels the client joined (the clipboard's, if it offered one); kept across
    /// reactivations, whose channel ids do not change.
    channels: StaticChannelSet,
    cliprdr: Option<u16>,
    clip: ClipState,
    /// The drive redirection channel, when the client joined it: relayed to the target.
    rdpdr: Option<u16>,
    /// Channel PDUs to send once the current client PDU is handled.
    outbox: Vec<u8>,
    /// Bounds what the client can make IronRDP gather on those channels.
    bounds: Reassembly,
}

/// X.224, TLS, login, activation ([`handshake::run`]) and the session's opening. Bounded by the
/// handshake deadline and byte budget (the session's opening is bounded by the gate's own target
/// timeouts).
pub(crate) async fn open(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &ServerConfig,
    gate: &dyn Gate,
) -> Result<Active, ServeError> {
    let limits = config.limits;
    let activated = handshake::run(tcp, peer, config, gate).await?;
    let Activated {
        mut framed,
        acceptor,
        mut result,
        admission,
    } = activated;
    let mut channels = std::mem::take(&mut result.static_channels);
    let cliprdr = channels.get_channel_id_by_type::<CliprdrServer>();
    let rdpdr = channels.get_channel_id_by_type::<RdpdrChannel>();
    let size = desktop_size(&result.capabilities);
    let error_info = result
        .client_early_capability_flags
        .contains(ClientEarlyCapabilityFlags::SUPPORT_ERR_INFO_PDU);
    let (user_channel, io_channel) = (result.user_channel_id, result.io_channel_id);
    let display = match gate.open(admission.clone(), peer, size).await {
        Ok(d) => d,
        Err(denial) => {
            let mut bye = Vec::new();
            if error_info {
                bye.extend(output::error_info(
                    denial.refusal.error_info(),
                    user_channel,
                    io_channel,
                ));
            }
            bye.extend(output::ultimatum());
            goodbye(&mut framed, &bye).await;
            return Err(ServeError::Refused(denial));
        }
    };
    let (w, h) = (u32::from(size.0), u32::from(size.1));
    let mut bounds = Reassembly::new();
    if let Some(id) = cliprdr {
        bounds.add_channel(id, "clipboard", clip::MAX_CLIPRDR_PDU);
    }
    if let Some(id) = rdpdr {
        bounds.add_channel(id, "drive", drive::MAX_RDPDR_PDU);
    }
    let mut active = Active {
        admission,
        framed,
        acceptor: Some(acceptor),
        display,
        mapper: InputMapper::new(w, h),
        user_channel,
        io_channel,
        error_info,
        size: (w, h),
        bitmaps: output::BitmapWriter::new(output::BitmapCaps::from_client(&result.capabilities)),
        early_input: result.input_events,
        channels: StaticChannelSet::new(),
        cliprdr,
        clip: ClipState::default(),
        rdpdr,
        outbox: Vec::new(),
        bounds,
    };
    let mut hello = Vec::new();
    output::hidden_pointer(&mut hello);
    // The clipboard channel opens with our capabilities and Monitor Ready.
    for (_, channel, id) in channels.iter_mut() {
        if let Some(id) = id {
            let start = channel.start().map_err(|e| protocol(e.report()))?;
            hello.extend(
                server_encode_svc_messages(start, id, user_channel)
                    .map_err(|e| protocol(e.report()))?,
            );
        }
    }
    active.channels = channels;
    let ended = active.display.ended();
    until_end(
        async {
            timeout(limits.write_stall, active.framed.write_all(&hello))
                .await
                .map_err(|_| ServeError::Timeout(limits.write_stall))??;
            let wanted = active.display.size();
            if wanted != active.size {
                active.reactivate(wanted, config).await?;
            }
            Ok(())
        },
        ended,
    )
    .await?;
    Ok(active)
}

/// Once the session ended, how much longer the connection may take to finish what it was doing
/// and say goodbye (`GOODBYE_GRACE`) before it is dropped (and the session's viewer with it:
/// the gateway's shutdown waits for every viewer, within its grace).
const ENDED_GRACE: Duration = Duration::from_millis(2500);

/// Runs `work` (writes to the client, waits on the target), but once `ended` resolved gives it
/// only [`ENDED_GRACE`] more: a write stall or reactivation deadline is not awaited past the
/// session's end.
async fn until_end<T>(
    work: impl std::future::Future<Output = Result<T, ServeError>>,
    ended: BoxFuture<'static, ()>,
) -> Result<T, ServeError> {
    tokio::pin!(work);
    tokio::select! {
        biased;
        r = &mut work => r,
        () = ended => timeout(ENDED_GRACE, work)
            .await
            .unwrap_or(Err(ServeError::Stalled(ENDED_GRACE))),
    }
}

/// The clipboard channel's processor, when the client joined it.
fn cliprdr_of(channels: &mut StaticChannelSet) -> Option<&mut CliprdrServer> {
    channels
        .get_by_type_mut::<CliprdrServer>()
        .and_then(|c| c.channel_processor_downcast_mut::<CliprdrServer>())
}

/// How an active connection ends.
enum Step {
    Go,
    Stop(String),
}

impl Active {
    /// The Deactivation-Reactivation sequence: the client's desktop takes the session's size.
    async fn reactivate(
        &mut self,
        size: (u32, u32),
        config: &ServerConfig,
    ) -> Result<(), ServeError> {
        let acceptor = self
            .acceptor
            .take()
            .ok_or_else(|| protocol("no acceptor to reactivate"))?;
        let to16 = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        let desktop = DesktopSize {
            width: to16(size.0),
            height: to16(size.1),
        };
        let deactivate = output::deactivate_all(self.user_channel, self.io_channel);
        self.write(&deactivate, config).await?;
        let mut acceptor =
            Acceptor::new_deactivation_reactivation(acceptor, StaticChannelSet::new(), desktop)
                .map_err(|e| protocol(e.report()))?;
        let mut buf = WriteBuf::new();
        let mut budget = Budget {
            left: config.limits.handshake_bytes,
            limit: config.limits.handshake_bytes,
        };
        let result = timeout(config.limits.handshake, async {
            loop {
                if let Some(result) = acceptor.get_result() {
                    return Ok::<_, ServeError>(result);
                }
                step(&mut self.framed, &mut acceptor, &mut buf, &mut budget, None).await?;
            }
        })
        .await
        .map_err(|_| ServeError::Timeout(config.limits.handshake))??;
        let (w, h) = desktop_size(&result.capabilities);
        self.size = (u32::from(w), u32::from(h));
        self.mapper.width = self.size.0;
        self.mapper.height = self.size.1;
        self.bitmaps =
            output::BitmapWriter::new(output::BitmapCaps::from_client(&result.capabilities));
        self.early_input.extend(result.input_events);
        self.acceptor = Some(acceptor);
        self.display.refresh();
        debug!(width = w, height = h, "native client reactivated");
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8], config: &ServerConfig) -> Result<(), ServeError> {
        timeout(config.limits.write_stall, self.framed.write_all(bytes))
            .await
            .map_err(|_| ServeError::Timeout(config.limits.write_stall))??;
        Ok(())
    }

    /// The active loop, until the client leaves or the session ends. Returns why it ended.
    pub(crate) async fn run(mut self, config: &ServerConfig) -> Result<String, ServeError> {
        let ended = self.display.ended();
        until_end(self.run_loop(config), ended).await
    }

    async fn run_loop(&mut self, config: &ServerConfig) -> Result<String, ServeError> {
        for pdu in std::mem::take(&mut self.early_input) {
            // Kept by the acceptor as they came: slow-path (TPKT, version 3) or fast-path.
            let action = if pdu.first() == Some(&3) {
                Action::X224
            } else {
                Action::FastPath
            };
            if let Step::Stop(why) = self.client_pdu(action, &pdu).await? {
                return Ok(why);
            }
            self.flush_outbox(config).await?;
        }
        let mut out = Vec::new();
        loop {
            tokio::select! {
                pdu = self.framed.read_pdu() => {
                    let (action, pdu) = match pdu {
                        Ok(p) => p,
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                            return Ok("the client disconnected".into())
                        }
                        Err(e) => return Err(e.into()),
                    };
                    if let Step::Stop(why) = self.client_pdu(action, &pdu).await? {
                        return Ok(why);
                    }
                    self.flush_outbox(config).await?;
                }
                event = self.display.next() => match event {
                    DisplayEvent::Damage(rects) => {
                        out.clear();
                        self.bitmaps.frame(&rects, self.size.0, self.size.1, &mut out);
                        self.write(&out, config).await?;
                    }
                    DisplayEvent::Resize(w, h) => self.reactivate((w, h), config).await?,
                    DisplayEvent::Clipboard(text) => {
                        if let Some(c) = cliprdr_of(&mut self.channels) {
                            let messages = clip::offer(c, &mut self.clip, text);
                            self.queue_clip(messages)?;
                        }
                        self.flush_outbox(config).await?;
                    }
                    // Files the client copies are fetched only when the policy lets them cross.
                    DisplayEvent::ClipboardTerms(terms) => {
                        self.clip.fetch_files(terms.to_target.then_some(terms.max_bytes));
                    }
                    DisplayEvent::ClipboardFiles(files) => {
                        if let Some(c) = cliprdr_of(&mut self.channels) {
                            let messages = clip::offer_files(c, &mut self.clip, files);
                            self.queue_clip(messages)?;
                        }
                        self.flush_outbox(config).await?;
                    }
                    DisplayEvent::Device(pdu) => {
                        if let Some(id) = self.rdpdr {
                            let bytes = server_encode_svc_messages(vec![SvcMessage::from(pdu)], id, self.user_channel)
                                .map_err(|e| protocol(e.report()))?;
                            self.write(&bytes, config).await?;
                        }
                    }
                    DisplayEvent::End(denial) => {
                        let mut bye = Vec::new();
                        if self.error_info {
                            bye.extend(output::error_info(denial.refusal.error_info(), self.user_channel, self.io_channel));
                        }
                        bye.extend(output::ultimatum());
                        goodbye(&mut self.framed, &bye).await;
                        return Ok(denial.message);
                    }
                },
            }
        }
    }

    /// Encodes clipboard channel messages into the outbox.
    fn queue_clip(&mut self, messages: Vec<SvcMessage>) -> Result<(), ServeError> {
        if let (Some(id), false) = (self.cliprdr, messages.is_empty()) {
            let bytes = server_encode_svc_messages(messages, id, self.user_channel)
                .map_err(|e| protocol(e.report()))?;
            self.outbox.extend(bytes);
        }
        Ok(())
    }

    async fn flush_outbox(&mut self, config: &ServerConfig) -> Result<(), ServeError> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.outbox);
        self.write(&bytes, config).await
    }

    /// A PDU on the clipboard channel: the channel answers, and text and files the client copied
    /// go to the session (whose policy decides whether they reach the target; files are fetched
    /// first, and only when the session's terms let them cross).
    async fn clipboard_pdu(&mut self, channel_id: u16, user_data: &[u8]) -> Result<(), ServeError> {
        let replies = match self.channels.get_by_channel_id_mut(channel_id) {
            Some(channel) => match channel.process(user_data) {
                Ok(replies) => replies,
                Err(e) => {
                    debug!(error = %e.report(), "clipboard PDU dropped");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        self.queue_clip(replies)?;
        let drained = match cliprdr_of(&mut self.channels) {
            Some(c) => clip::drain(c, &mut self.clip),
            None => clip::Drained::default(),
        };
        self.queue_clip(drained.messages)?;
        for text in drained.texts {
            self.display.input(InputEvent::Clipboard(text)).await;
        }
        for files in drained.files {
            self.display.input(InputEvent::ClipboardFiles(files)).await;
        }
        Ok(())
    }

    /// A PDU on the drive channel: reassembled, then relayed to the session's target (whose
    /// adapter filters it under the session's terms).
    async fn drive_pdu(&mut self, channel_id: u16, user_data: &[u8]) {
        let Some(channel) = self.channels.get_by_channel_id_mut(channel_id) else {
            return;
        };
        if let Err(e) = channel.process(user_data) {
            debug!(error = %e.report(), "drive redirection PDU dropped");
            return;
        }
        let pdus = channel
            .channel_processor_downcast_mut::<RdpdrChannel>()
            .map(RdpdrChannel::take)
            .unwrap_or_default();
        for pdu in pdus {
            self.display.device(pdu).await;
        }
    }

    /// Acts on one PDU from the client.
    async fn client_pdu(&mut self, action: Action, pdu: &[u8]) -> Result<Step, ServeError> {
        match action {
            Action::FastPath => {
                if !fast_path_input_sane(pdu) {
                    return Err(protocol("fast-path input shorter than its header"));
                }
                let input: FastPathInput = decode(pdu).map_err(protocol)?;
                for event in self.mapper.fast_path(input.input_events()) {
                    self.display.input(event).await;
                }
            }
            Action::X224 => {
                let X224(message) = decode::<X224<McsMessage<'_>>>(pdu).map_err(protocol)?;
                match message {
                    McsMessage::DisconnectProviderUltimatum(_) => {
                        return Ok(Step::Stop("the client disconnected".into()))
                    }
                    McsMessage::SendDataRequest(data) if data.channel_id == self.io_channel => {
                        let header: ShareControlHeader =
                            decode(data.user_data.as_ref()).map_err(protocol)?;
                        if let ShareControlPdu::Data(data) = header.share_control_pdu {
                            match data.share_data_pdu {
                                ShareDataPdu::Input(input) => {
                                    for event in self.mapper.slow_path(&input.0) {
                                        self.display.input(event).await;
                                    }
                                }
                                ShareDataPdu::RefreshRectangle(_) => self.display.refresh(),
                                ShareDataPdu::ShutdownRequest => {
                                    return Ok(Step::Stop("the client logged off".into()))
                                }
                                other => debug!(pdu = other.as_short_name(), "client PDU ignored"),
                            }
                        }
                    }
                    McsMessage::SendDataRequest(data)
                        if Some(data.channel_id) == self.cliprdr
                            || Some(data.channel_id) == self.rdpdr =>
                    {
                        // Checked before IronRDP gathers anything of it.
                        match self.bounds.channel_chunk(data.channel_id, &data.user_data) {
                            Ok(Verdict::Pass) if Some(data.channel_id) == self.cliprdr => {
                                self.clipboard_pdu(data.channel_id, &data.user_data).await?;
                            }
                            Ok(Verdict::Pass) => {
                                self.drive_pdu(data.channel_id, &data.user_data).await
                            }
                            Ok(Verdict::Skip) => debug!("oversized channel message dropped"),
                            Err(e) => {
                                // The session ends with this as its reason, then the connection.
                                self.display
                                    .cut_off(format!("the native client sent too much: {e}"));
                                return Err(ServeError::Bounds(e));
                            }
                        }
                    }
                    // Other channels (sound, printers) are not offered.
                    _ => {}
                }
            }
        }
        Ok(Step::Go)
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_stalled_write_lets_go_soon_after_the_session_ended() {
        let ended: BoxFuture<'static, ()> =
            Box::pin(tokio::time::sleep(Duration::from_millis(100)));
        let started = Instant::now();
        // A client that stopped reading: the write never returns, its own stall limit is far.
        let r = until_end(std::future::pending::<Result<(), ServeError>>(), ended).await;
        assert!(matches!(r, Err(ServeError::Stalled(_))), "{r:?}");
        let took = started.elapsed();
        assert!(
            took < ENDED_GRACE + Duration::from_millis(800),
            "let go after {took:?}"
        );
    }

    #[tokio::test]
    async fn the_goodbye_in_progress_when_the_session_ends_finishes() {
        let ended: BoxFuture<'static, ()> = Box::pin(std::future::ready(()));
        let work = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, ServeError>("told")
        };
        assert_eq!(until_end(work, ended).await.unwrap(), "told");
    }
}
