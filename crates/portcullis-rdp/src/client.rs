//! Towards targets: an RDP client on IronRDP (connector 0.12 / session 0.13) that decodes the
//! target's graphics into the desktop model and relays viewer input as RDP input.

use std::time::Duration;

use ironrdp_cliprdr::CliprdrClient;
use ironrdp_connector::{
    ClientConnector, ConnectorError, ConnectorErrorKind, Credentials, DesktopSize, ServerName,
};
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::geometry::InclusiveRectangle;
use ironrdp_pdu::input::fast_path::{FastPathInputEvent, KeyboardFlags};
use ironrdp_pdu::input::mouse::PointerFlags;
use ironrdp_pdu::input::MousePdu;
use ironrdp_session::image::DecodedImage;
use ironrdp_session::{ActiveStage, ActiveStageBuilder, ActiveStageOutput, SessionError};
use ironrdp_svc::{SvcMessage, SvcProcessorMessages};
use ironrdp_tokio::{FramedWrite as _, NetworkClient, TokioFramed};
use portcullis_core::desktop::{
    buttons, check_size, ClipFileTerms, InputEvent, PixelLayout, Rect, TargetCommand, TargetUpdate,
    Timeouts,
};
use portcullis_core::scancode::{keysym_to_rdp, needs_shift, RdpKey, LEFT_SHIFT, RIGHT_SHIFT};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::{debug, info, warn};

use crate::clip::{self, ClipQueue, ClipState};
use crate::drive::{DriveOutput, DriveRelay, DriveTerms, RdpdrChannel};
use crate::identity::{IdentityCheck, Presented, Refusal};
use crate::reassembly::{BoundsError, Reassembly, Verdict};
use crate::tls;

/// Smallest and largest desktop a viewer may ask an RDP target for. RDP servers refuse sizes
/// outside roughly this range (and widths must be even for some).
pub const MIN_SIZE: (u16, u16) = (640, 480);
/// See [`MIN_SIZE`].
pub const MAX_SIZE: (u16, u16) = (4096, 2160);

/// Wheel units per notch (Windows' WHEEL_DELTA).
const WHEEL_NOTCH: i16 = 120;

/// The account the gateway logs in with (never shown to users).
#[derive(Clone)]
pub struct RdpCredentials {
    /// User name on the target.
    pub username: String,
    /// Windows domain, if any.
    pub domain: Option<String>,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for RdpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdpCredentials")
            .field("username", &self.username)
            .field("domain", &self.domain)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// How to talk to an RDP target.
#[derive(Debug, Clone, Copy)]
pub struct RdpOptions {
    /// Desktop width asked for (clamped to [`MIN_SIZE`]..[`MAX_SIZE`], made even).
    pub width: u16,
    /// Desktop height asked for.
    pub height: u16,
    /// Offer RemoteFX (lossy, much less bandwidth). Off: lossless bitmaps only.
    pub remotefx: bool,
    /// Offer the target drive redirection (`rdpdr`), relaying the native client's drives under
    /// these terms. `None`: the target is not offered the channel at all.
    pub drive: Option<DriveTerms>,
}

impl Default for RdpOptions {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 800,
            remotefx: false,
            drive: None,
        }
    }
}

impl RdpOptions {
    /// The size actually requested: within bounds, width even.
    pub fn clamped_size(&self) -> (u16, u16) {
        let w = self.width.clamp(MIN_SIZE.0, MAX_SIZE.0) & !1;
        let h = self.height.clamp(MIN_SIZE.1, MAX_SIZE.1);
        (w, h)
    }
}

/// Why an RDP target session could not be opened or ended abnormally.
#[derive(Debug, Error)]
pub enum RdpTargetError {
    /// TCP connection failed.
    #[error("cannot reach RDP target {address}: {source}")]
    Unreachable {
        /// Target address.
        address: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Connecting or the handshake took too long.
    #[error("RDP target {address} did not answer within {seconds} s")]
    Timeout {
        /// Target address.
        address: String,
        /// The limit.
        seconds: u64,
    },
    /// The target refused the stored credentials.
    #[error("RDP target refused the stored credentials: {0}")]
    AuthFailed(String),
    /// The target spoke something unusable.
    #[error("RDP protocol error: {0}")]
    Protocol(String),
    /// The target ended the session (logoff, disconnect, shutdown).
    #[error("RDP target ended the session: {0}")]
    Ended(String),
    /// The target closed the connection.
    #[error("RDP target closed the connection")]
    Closed,
    /// The target broke a reassembly bound (a huge channel message, endless fragments).
    #[error("RDP target sent too much: {0}")]
    Bounds(#[from] BoundsError),
    /// The target is not the one the gateway knows (another certificate, or no NLA where NLA
    /// is due): refused before any credential was sent.
    #[error("RDP target refused: {0}")]
    Untrusted(Refusal),
}

impl RdpTargetError {
    /// True when the target simply went away or ended the session normally.
    pub fn is_closed(&self) -> bool {
        matches!(self, RdpTargetError::Closed | RdpTargetError::Ended(_))
    }

    fn connector(e: ConnectorError) -> Self {
        let text = e.report().to_string();
        match e.kind() {
            ConnectorErrorKind::Credssp(_) | ConnectorErrorKind::AccessDenied => {
                RdpTargetError::AuthFailed(text)
            }
            _ if is_eof(&text) => RdpTargetError::Closed,
            _ => RdpTargetError::Protocol(text),
        }
    }

    fn session(e: SessionError) -> Self {
        RdpTargetError::Protocol(e.report().to_string())
    }

    fn io(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => RdpTargetError::Closed,
            _ => RdpTargetError::Protocol(e.to_string()),
        }
    }
}

fn is_eof(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("eof") || t.contains("connection reset")
}

/// Kerberos would need the gateway to reach a KDC; we log in with NTLM (or TLS logon) only.
struct NoKerberos;

impl NetworkClient for NoKerberos {
    async fn send(
        &mut self,
        _request: &ironrdp_connector::sspi::generator::NetworkRequest,
    ) -> ironrdp_connector::ConnectorResult<Vec<u8>> {
        Err(ironrdp_connector::general_err!(
            "Kerberos is not supported; the target must accept NTLM"
        ))
    }
}

type Stream = tokio_rustls::client::TlsStream<TcpStream>;

/// An open, logged-in RDP connection.
pub struct RdpTarget {
    framed: TokioFramed<Stream>,
    stage: ActiveStage,
    image: DecodedImage,
    activation: ironrdp_connector::connection_activation::ConnectionActivationFactory,
    /// Clipboard text over CLIPRDR.
    clip: ClipState,
    /// Drive redirection, when the session's terms let files cross.
    drive: Option<DriveRelay>,
    /// Bounds what the target can make IronRDP gather (sees every frame first).
    bounds: Reassembly,
    /// The SHA-256 of the target's certificate, for the log.
    pub certificate_sha256: String,
}

impl std::fmt::Debug for RdpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdpTarget")
            .field("width", &self.image.width())
            .field("height", &self.image.height())
            .finish_non_exhaustive()
    }
}

fn config(
    creds: RdpCredentials,
    options: &RdpOptions,
) -> Result<ironrdp_connector::Config, RdpTargetError> {
    use ironrdp_pdu::gcc::{ConnectionType, KeyboardType};
    use ironrdp_pdu::rdp::capability_sets::{
        client_codecs_capabilities, MajorPlatformType, RailSupportLevel,
    };
    let (width, height) = options.clamped_size();
    let codecs: &[&str] = if options.remotefx {
        &["remotefx"]
    } else {
        &["remotefx:off"]
    };
    let codecs = client_codecs_capabilities(codecs).map_err(RdpTargetError::Protocol)?;
    Ok(ironrdp_connector::Config {
        desktop_size: DesktopSize { width, height },
        monitor_layout: None,
        desktop_scale_factor: 0,
        desktop_physical_size: None,
        desktop_orientation: None,
        device_scale_factor: None,
        monitor_extended_layout: None,
        relative_mouse_input: false,
        enable_tls: true,
        enable_credssp: true,
        enable_standard_rdp_security: false,
        credentials: Credentials::UsernamePassword {
            username: creds.username,
            password: creds.password,
        },
        domain: creds.domain,
        client_build: 0,
        client_name: "portcullis".to_owned(),
        keyboard_type: KeyboardType::IBM_ENHANCED,
        keyboard_subtype: 0,
        keyboard_functional_keys_count: 12,
        // US: see portcullis_core::scancode.
        keyboard_layout: 0x409,
        connection_type: ConnectionType::Lan,
        ime_file_name: String::new(),
        bitmap: Some(ironrdp_connector::BitmapConfig {
            lossy_compression: options.remotefx,
            color_depth: 32,
            codecs,
        }),
        dig_product_id: String::new(),
        client_dir: "C:\\Windows\\System32\\mstscax.dll".to_owned(),
        alternate_shell: String::new(),
        work_dir: String::new(),
        remote_application_mode: false,
        rail_support_level: RailSupportLevel::empty(),
        platform: MajorPlatformType::UNIX,
        hardware_id: None,
        request_data: None,
        // Log in with the credentials above, never show the target's own logon screen.
        autologon: true,
        enable_audio_playback: false,
        enable_audio_capture: false,
        performance_flags: Default::default(),
        license_cache: None,
        timezone_info: Default::default(),
        compression_type: None,
        // Draw the target's pointer into the picture: viewers and recordings see it.
        enable_server_pointer: true,
        pointer_software_rendering: true,
        multitransport_flags: None,
        support_dyn_vc_gfx_protocol: false,
    })
}

/// Connects and logs in to the RDP server at `address` (host:port) with TLS, or NLA (CredSSP
/// with NTLM) when the target asks for it. The password is used for the login and dropped.
/// `identity` is checked after the TLS handshake and before any credential is sent: another
/// certificate than the pinned one, or TLS alone where NLA is due, refuses the target
/// ([`RdpTargetError::Untrusted`]).
pub async fn connect(
    address: &str,
    creds: RdpCredentials,
    options: RdpOptions,
    identity: IdentityCheck,
    limits: Timeouts,
) -> Result<RdpTarget, RdpTargetError> {
    let timed_out = |d: Duration| RdpTargetError::Timeout {
        address: address.to_owned(),
        seconds: d.as_secs(),
    };
    let tcp = timeout(limits.connect, TcpStream::connect(address))
        .await
        .map_err(|_| timed_out(limits.connect))?
        .map_err(|source| RdpTargetError::Unreachable {
            address: address.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_matches(['[', ']'])
        .to_owned();
    let config = config(creds, &options)?;
    timeout(
        limits.handshake,
        handshake(tcp, host, config, options.drive, identity),
    )
    .await
    .map_err(|_| timed_out(limits.handshake))?
}

async fn handshake(
    tcp: TcpStream,
    host: String,
    config: ironrdp_connector::Config,
    drive: Option<DriveTerms>,
    identity: IdentityCheck,
) -> Result<RdpTarget, RdpTargetError> {
    let local = tcp.local_addr().map_err(RdpTargetError::io)?;
    let mut framed = TokioFramed::new(tcp);
    // The clipboard channel: text both ways, as far as the policy lets it (decided in the broker).
    let mut connector = ClientConnector::new(config, local)
        .with_static_channel(CliprdrClient::new(Box::new(ClipQueue::default())));
    // The drive channel only when files may cross: otherwise the target is not even offered it.
    if drive.is_some() {
        connector = connector.with_static_channel(RdpdrChannel::default());
    }
    let should_upgrade = ironrdp_tokio::connect_begin(&mut framed, &mut connector)
        .await
        .map_err(RdpTargetError::connector)?;
    let nla = matches!(
        &connector.state,
        ironrdp_connector::ClientConnectorState::EnhancedSecurityUpgrade { selected_protocol }
            if selected_protocol.intersects(
                ironrdp_pdu::nego::SecurityProtocol::HYBRID | ironrdp_pdu::nego::SecurityProtocol::HYBRID_EX
            )
    );
    let tcp = framed.into_inner_no_leftover();
    let (tls, server_public_key, certificate_sha256) = tls::connect(tcp, &host).await?;
    // Nothing has crossed the TLS channel yet: the target is checked before CredSSP (NLA) or
    // the Client Info PDU (TLS) would carry any credential.
    let ca_verdict = identity
        .pin
        .ca_file
        .as_deref()
        .map(|ca| tls::verify_chain(&tls, ca, &host));
    let presented = Presented {
        sha256: certificate_sha256.clone(),
        nla,
        ca_verdict,
    };
    if let Err(refusal) = identity.check(&presented).await {
        warn!(reason = refusal.reason(), error = %refusal, "RDP target refused before login");
        return Err(RdpTargetError::Untrusted(refusal));
    }
    let upgraded = ironrdp_tokio::mark_as_upgraded(should_upgrade, &mut connector);
    let mut framed = TokioFramed::new(tls);
    let outcome = ironrdp_tokio::connect_finalize(
        upgraded,
        connector,
        &mut framed,
        &mut NoKerberos,
        ServerName::new(host),
        server_public_key,
        None,
    )
    .await
    .map_err(|e| {
        let e = RdpTargetError::connector(e);
        // Windows and FreeRDP-based servers hang up on an NLA login they refuse, without a word.
        if nla
            && (matches!(e, RdpTargetError::Closed) || e.to_string().contains("not enough bytes"))
        {
            RdpTargetError::AuthFailed(
                "the target closed the connection during NLA authentication".into(),
            )
        } else {
            e
        }
    })?;
    let result = outcome
        .into_connected()
        .map_err(RdpTargetError::connector)?;
    let (w, h) = (result.desktop_size.width, result.desktop_size.height);
    check_size(u32::from(w), u32::from(h)).map_err(|e| RdpTargetError::Protocol(e.to_string()))?;
    info!(width = w, height = h, certificate_sha256 = %certificate_sha256, "RDP target connected");
    let bounds = crate::reassembly::for_target(&result.static_channels);
    let stage = ActiveStageBuilder {
        static_channels: result.static_channels,
        user_channel_id: result.user_channel_id,
        io_channel_id: result.io_channel_id,
        message_channel_id: result.message_channel_id,
        share_id: result.share_id,
        compression_type: result.compression_type,
        enable_server_pointer: result.enable_server_pointer,
        pointer_software_rendering: result.pointer_software_rendering,
    }
    .build();
    Ok(RdpTarget {
        framed,
        stage,
        image: DecodedImage::new(PixelFormat::RgbA32, w, h),
        activation: result.activation_factory,
        clip: ClipState::default(),
        drive: drive.map(DriveRelay::new),
        bounds,
        certificate_sha256,
    })
}

impl RdpTarget {
    /// Lets the adapter fetch files the target copies on its clipboard, for the session's policy
    /// to decide on (`terms.to_client`, at most `terms.max_bytes` in all). Without this, files
    /// the target copies are only named.
    pub fn set_clipboard_files(&mut self, terms: ClipFileTerms) {
        self.clip
            .fetch_files(terms.to_client.then_some(terms.max_bytes));
    }

    /// The desktop size the server granted.
    pub fn size(&self) -> (u32, u32) {
        (
            u32::from(self.image.width()),
            u32::from(self.image.height()),
        )
    }

    /// Runs the session: forwards target updates to `updates` and `commands` to the target,
    /// until the target closes, an error occurs, or `commands` is closed (a normal close: `Ok`).
    pub async fn run(
        mut self,
        updates: mpsc::Sender<TargetUpdate>,
        mut commands: mpsc::Receiver<TargetCommand>,
    ) -> Result<(), RdpTargetError> {
        let mut input_state = InputState::default();
        let result = loop {
            // Input from the viewer, or a PDU from the target: either gives session outputs.
            let outputs = tokio::select! {
                biased;
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { break Ok(()) };
                    let events = match cmd {
                        TargetCommand::Input(InputEvent::Clipboard(text)) => {
                            let messages = match self.stage.get_svc_processor_mut::<CliprdrClient>() {
                                Some(c) => clip::offer(c, &mut self.clip, text),
                                None => Vec::new(),
                            };
                            if let Err(e) = self.send_clip(messages).await {
                                break Err(e);
                            }
                            continue;
                        }
                        TargetCommand::Input(InputEvent::ClipboardFiles(files)) => {
                            let messages = match self.stage.get_svc_processor_mut::<CliprdrClient>() {
                                Some(c) => clip::offer_files(c, &mut self.clip, files),
                                None => Vec::new(),
                            };
                            if let Err(e) = self.send_clip(messages).await {
                                break Err(e);
                            }
                            continue;
                        }
                        TargetCommand::Device(pdu) => {
                            let outputs = match &mut self.drive {
                                Some(relay) => relay.from_client(&pdu),
                                None => Vec::new(),
                            };
                            match self.drive_outputs(outputs, &updates).await {
                                Ok(true) => continue,
                                Ok(false) => break Ok(()),
                                Err(e) => break Err(e),
                            }
                        }
                        TargetCommand::Input(input) => input_state.translate(input),
                        TargetCommand::FullRefresh => {
                            // The whole picture is in our image already: hand it over again.
                            let full = InclusiveRectangle {
                                left: 0,
                                top: 0,
                                right: self.image.width().saturating_sub(1),
                                bottom: self.image.height().saturating_sub(1),
                            };
                            if updates.send(self.pixels(&full)).await.is_err() {
                                break Ok(());
                            }
                            Vec::new()
                        }
                    };
                    if events.is_empty() {
                        continue;
                    }
                    self.stage.process_fastpath_input(&mut self.image, &events)
                }
                pdu = self.framed.read_pdu() => match pdu {
                    Ok((action, payload)) => {
                        // Checked before IronRDP gathers anything of it.
                        match self.bounds.frame(action == ironrdp_pdu::Action::FastPath, &payload) {
                            Ok(Verdict::Pass) => self.stage.process(&mut self.image, action, &payload, None),
                            Ok(Verdict::Skip) => continue,
                            Err(e) => break Err(e.into()),
                        }
                    }
                    Err(e) => break Err(RdpTargetError::io(e)),
                },
            };
            let outputs = match outputs {
                Ok(o) => o,
                Err(e) => break Err(RdpTargetError::session(e)),
            };
            match self.handle(outputs, &updates).await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
            match self.pump_clip(&updates).await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
            match self.pump_drive(&updates).await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Files still open: what crossed so far is reported, if the session still listens.
        if let Some(relay) = &mut self.drive {
            for out in relay.finish() {
                if let DriveOutput::File(event) = out {
                    let _ = updates.try_send(TargetUpdate::File(event));
                }
            }
        }
        if result.is_ok() {
            // A polite goodbye; the target may already be gone.
            if let Ok(outputs) = self.stage.graceful_shutdown() {
                for out in outputs {
                    if let ActiveStageOutput::ResponseFrame(frame) = out {
                        let _ = self.framed.write_all(&frame).await;
                    }
                }
            }
        }
        result
    }

    /// Sends clipboard channel messages to the target.
    async fn send_clip(&mut self, messages: Vec<SvcMessage>) -> Result<(), RdpTargetError> {
        if messages.is_empty() {
            return Ok(());
        }
        let frame = self
            .stage
            .process_svc_processor_messages(SvcProcessorMessages::<CliprdrClient>::new(messages))
            .map_err(RdpTargetError::session)?;
        self.framed
            .write_all(&frame)
            .await
            .map_err(RdpTargetError::io)
    }

    /// Hands what the target sent on the drive channel to the relay.
    async fn pump_drive(
        &mut self,
        updates: &mpsc::Sender<TargetUpdate>,
    ) -> Result<bool, RdpTargetError> {
        let Some(relay) = &mut self.drive else {
            return Ok(true);
        };
        let Some(channel) = self.stage.get_svc_processor_mut::<RdpdrChannel>() else {
            return Ok(true);
        };
        let mut outputs = Vec::new();
        for pdu in channel.take() {
            outputs.extend(relay.from_target(&pdu));
        }
        self.drive_outputs(outputs, updates).await
    }

    /// Carries out what the drive relay decided. `Ok(false)`: the viewer side has gone.
    async fn drive_outputs(
        &mut self,
        outputs: Vec<DriveOutput>,
        updates: &mpsc::Sender<TargetUpdate>,
    ) -> Result<bool, RdpTargetError> {
        for out in outputs {
            let update = match out {
                DriveOutput::ToTarget(pdu) => {
                    let frame = self
                        .stage
                        .process_svc_processor_messages(SvcProcessorMessages::<RdpdrChannel>::new(
                            vec![SvcMessage::from(pdu)],
                        ))
                        .map_err(RdpTargetError::session)?;
                    self.framed
                        .write_all(&frame)
                        .await
                        .map_err(RdpTargetError::io)?;
                    continue;
                }
                DriveOutput::ToClient(pdu) => TargetUpdate::Device(pdu),
                DriveOutput::File(event) => TargetUpdate::File(event),
                DriveOutput::Dropped(why) => {
                    debug!(%why, "drive redirection message dropped");
                    continue;
                }
            };
            if updates.send(update).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Acts on what the clipboard channel reported: answers the target (and asks it for the
    /// files it copied, when the terms allow), and hands the text and files the target copied to
    /// the session. `Ok(false)`: the viewer side has gone.
    async fn pump_clip(
        &mut self,
        updates: &mpsc::Sender<TargetUpdate>,
    ) -> Result<bool, RdpTargetError> {
        let Some(c) = self.stage.get_svc_processor_mut::<CliprdrClient>() else {
            return Ok(true);
        };
        let drained = clip::drain(c, &mut self.clip);
        self.send_clip(drained.messages).await?;
        for text in drained.texts {
            if updates.send(TargetUpdate::Clipboard(text)).await.is_err() {
                return Ok(false);
            }
        }
        for files in drained.files {
            if updates
                .send(TargetUpdate::ClipboardFiles(files))
                .await
                .is_err()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Acts on what the session produced. `Ok(false)`: the viewer side has gone.
    async fn handle(
        &mut self,
        outputs: Vec<ActiveStageOutput>,
        updates: &mpsc::Sender<TargetUpdate>,
    ) -> Result<bool, RdpTargetError> {
        for out in outputs {
            match out {
                ActiveStageOutput::ResponseFrame(frame) => {
                    if !frame.is_empty() {
                        self.framed
                            .write_all(&frame)
                            .await
                            .map_err(RdpTargetError::io)?;
                    }
                }
                ActiveStageOutput::GraphicsUpdate(region) => {
                    if updates.send(self.pixels(&region)).await.is_err() {
                        return Ok(false);
                    }
                }
                ActiveStageOutput::Terminate(reason) => {
                    return Err(RdpTargetError::Ended(reason.description()));
                }
                ActiveStageOutput::DeactivateAll => {
                    self.reactivate(updates).await?;
                }
                ActiveStageOutput::SaveSessionInfo { logon_complete } => {
                    info!(logon_complete, "RDP target reports a logon");
                }
                ActiveStageOutput::LogonErrors(errors) => {
                    info!(?errors, "RDP target reports logon errors");
                }
                ActiveStageOutput::PointerBitmap(_) => debug!("RDP pointer shape"),
                other => debug!(output = ?other, "RDP output ignored"),
            }
        }
        Ok(true)
    }

    /// The pixels of `region` (clipped to the image) as a desktop update.
    fn pixels(&self, region: &InclusiveRectangle) -> TargetUpdate {
        let (iw, ih) = (self.image.width(), self.image.height());
        let left = region.left.min(iw.saturating_sub(1));
        let top = region.top.min(ih.saturating_sub(1));
        let right = region.right.min(iw.saturating_sub(1));
        let bottom = region.bottom.min(ih.saturating_sub(1));
        let (w, h) = (
            usize::from(right.saturating_sub(left)) + 1,
            usize::from(bottom.saturating_sub(top)) + 1,
        );
        let stride = self.image.stride();
        let src = self.image.data();
        let mut data = Vec::with_capacity(w * h * 4);
        for y in usize::from(top)..usize::from(top) + h {
            let start = y * stride + usize::from(left) * 4;
            data.extend_from_slice(&src[start..start + w * 4]);
        }
        TargetUpdate::Pixels {
            rect: Rect::new(
                u32::from(left),
                u32::from(top),
                u32::try_from(w).unwrap_or(0),
                u32::try_from(h).unwrap_or(0),
            ),
            data,
            layout: PixelLayout::Rgbx,
        }
    }

    /// The Deactivation-Reactivation sequence (the target changes size or logs a user in).
    async fn reactivate(
        &mut self,
        updates: &mpsc::Sender<TargetUpdate>,
    ) -> Result<(), RdpTargetError> {
        use ironrdp_connector::connection_activation::ConnectionActivationState;
        let mut sequence = self.activation.create();
        let mut buf = ironrdp_pdu::WriteBuf::new();
        loop {
            if let ConnectionActivationState::Finalized {
                desktop_size,
                share_id,
                static_channel_chunk_size,
                enable_server_pointer,
                pointer_software_rendering,
                ..
            } = sequence.connection_activation_state()
            {
                if !self.stage.reactivate(
                    self.activation.io_channel_id(),
                    self.activation.user_channel_id(),
                    share_id,
                    enable_server_pointer,
                    pointer_software_rendering,
                    static_channel_chunk_size,
                ) {
                    return Err(RdpTargetError::Protocol(
                        "the target reactivated with an invalid channel chunk size".into(),
                    ));
                }
                let (w, h) = (desktop_size.width, desktop_size.height);
                if (w, h) != (self.image.width(), self.image.height()) {
                    check_size(u32::from(w), u32::from(h))
                        .map_err(|e| RdpTargetError::Protocol(e.to_string()))?;
                    self.image = DecodedImage::new(PixelFormat::RgbA32, w, h);
                    let resize = TargetUpdate::Resize {
                        width: u32::from(w),
                        height: u32::from(h),
                    };
                    if updates.send(resize).await.is_err() {
                        return Ok(());
                    }
                }
                return Ok(());
            }
            ironrdp_tokio::single_sequence_step(&mut self.framed, &mut sequence, &mut buf)
                .await
                .map_err(RdpTargetError::connector)?;
        }
    }
}

/// Viewer input state the translation needs: pointer events carry a button mask (VNC style)
/// while RDP wants one event per change, and keysyms carry the character while RDP sends keys.
#[derive(Default)]
struct InputState {
    buttons: u8,
    /// Shift keys the viewer holds: bit 0 left, bit 1 right.
    shift: u8,
}

impl InputState {
    fn translate(&mut self, input: InputEvent) -> Vec<FastPathInputEvent> {
        match input {
            InputEvent::Key { keysym, down } => self.key(keysym, down),
            InputEvent::Pointer { x, y, buttons } => {
                let x = u16::try_from(x).unwrap_or(u16::MAX);
                let y = u16::try_from(y).unwrap_or(u16::MAX);
                let mouse = |flags: PointerFlags, wheel: i16| {
                    FastPathInputEvent::MouseEvent(MousePdu {
                        flags,
                        number_of_wheel_rotation_units: wheel,
                        x_position: x,
                        y_position: y,
                    })
                };
                let mut events = vec![mouse(PointerFlags::MOVE, 0)];
                let changed = self.buttons ^ buttons;
                for (bit, flag) in [
                    (buttons::LEFT, PointerFlags::LEFT_BUTTON),
                    (buttons::MIDDLE, PointerFlags::MIDDLE_BUTTON_OR_WHEEL),
                    (buttons::RIGHT, PointerFlags::RIGHT_BUTTON),
                ] {
                    if changed & bit != 0 {
                        let down = if buttons & bit != 0 {
                            PointerFlags::DOWN
                        } else {
                            PointerFlags::empty()
                        };
                        events.push(mouse(flag | down, 0));
                    }
                }
                // Wheel "buttons" are pressed once per notch.
                let pressed = changed & buttons;
                if pressed & buttons::WHEEL_UP != 0 {
                    events.push(mouse(PointerFlags::VERTICAL_WHEEL, WHEEL_NOTCH));
                }
                if pressed & buttons::WHEEL_DOWN != 0 {
                    events.push(mouse(
                        PointerFlags::VERTICAL_WHEEL | PointerFlags::WHEEL_NEGATIVE,
                        -WHEEL_NOTCH,
                    ));
                }
                if pressed & buttons::WHEEL_RIGHT != 0 {
                    events.push(mouse(PointerFlags::HORIZONTAL_WHEEL, WHEEL_NOTCH));
                }
                if pressed & buttons::WHEEL_LEFT != 0 {
                    events.push(mouse(
                        PointerFlags::HORIZONTAL_WHEEL | PointerFlags::WHEEL_NEGATIVE,
                        -WHEEL_NOTCH,
                    ));
                }
                self.buttons = buttons;
                events
            }
            // Clipboard text goes over CLIPRDR (`RdpTarget::run`), not as input events.
            InputEvent::Clipboard(_) | InputEvent::ClipboardFiles(_) => Vec::new(),
        }
    }
}

impl InputState {
    fn key(&mut self, keysym: u32, down: bool) -> Vec<FastPathInputEvent> {
        let bit = match keysym {
            0xffe1 => 1,
            0xffe2 => 2,
            _ => 0,
        };
        if bit != 0 {
            if down {
                self.shift |= bit;
            } else {
                self.shift &= !bit;
            }
        }
        let events = key_events(keysym, down);
        let held = self.shift != 0;
        match needs_shift(keysym) {
            Some(want) if down && want != held => {
                // Press or lift Shift around the key, then restore what the viewer holds.
                let shifts: Vec<u8> = if want {
                    vec![LEFT_SHIFT]
                } else {
                    [(1, LEFT_SHIFT), (2, RIGHT_SHIFT)]
                        .into_iter()
                        .filter(|(b, _)| self.shift & b != 0)
                        .map(|(_, code)| code)
                        .collect()
                };
                let shift = |release: bool| {
                    shifts.iter().map(move |&code| {
                        let flags = if release {
                            KeyboardFlags::RELEASE
                        } else {
                            KeyboardFlags::empty()
                        };
                        FastPathInputEvent::KeyboardEvent(flags, code)
                    })
                };
                // want: press Shift first and release it after; else the other way round.
                shift(!want).chain(events).chain(shift(want)).collect()
            }
            _ => events,
        }
    }
}

fn key_events(keysym: u32, down: bool) -> Vec<FastPathInputEvent> {
    let release = if down {
        KeyboardFlags::empty()
    } else {
        KeyboardFlags::RELEASE
    };
    match keysym_to_rdp(keysym) {
        Some(RdpKey::Scancode { code, extended }) => {
            let ext = if extended {
                KeyboardFlags::EXTENDED
            } else {
                KeyboardFlags::empty()
            };
            vec![FastPathInputEvent::KeyboardEvent(release | ext, code)]
        }
        Some(RdpKey::Unicode(c)) => {
            let mut units = [0u16; 2];
            c.encode_utf16(&mut units)
                .iter()
                .map(|&u| FastPathInputEvent::UnicodeKeyboardEvent(release, u))
                .collect()
        }
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_changes_become_single_rdp_events() {
        let mut m = InputState::default();
        let ev = m.translate(InputEvent::Pointer {
            x: 10,
            y: 20,
            buttons: buttons::LEFT,
        });
        assert_eq!(ev.len(), 2);
        let FastPathInputEvent::MouseEvent(p) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(p.flags, PointerFlags::LEFT_BUTTON | PointerFlags::DOWN);
        let ev = m.translate(InputEvent::Pointer {
            x: 10,
            y: 20,
            buttons: 0,
        });
        let FastPathInputEvent::MouseEvent(p) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(p.flags, PointerFlags::LEFT_BUTTON);
        let ev = m.translate(InputEvent::Pointer {
            x: 10,
            y: 20,
            buttons: buttons::WHEEL_DOWN,
        });
        let FastPathInputEvent::MouseEvent(p) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert!(p.flags.contains(PointerFlags::WHEEL_NEGATIVE));
        assert_eq!(p.number_of_wheel_rotation_units, -WHEEL_NOTCH);
    }

    #[test]
    fn shift_is_added_or_lifted_to_type_the_character_asked_for() {
        use FastPathInputEvent::KeyboardEvent as K;
        let up = KeyboardFlags::RELEASE;
        let none = KeyboardFlags::empty();
        let mut s = InputState::default();
        // 'T' without Shift held: Shift down, t, Shift up. Its release is just the key.
        assert_eq!(
            s.key(u32::from('T'), true),
            vec![K(none, LEFT_SHIFT), K(none, 0x14), K(up, LEFT_SHIFT)]
        );
        assert_eq!(s.key(u32::from('T'), false), vec![K(up, 0x14)]);
        // With Shift held, 'T' is just the key, and 't' lifts Shift around it.
        assert_eq!(s.key(0xffe2, true), vec![K(none, RIGHT_SHIFT)]);
        assert_eq!(s.key(u32::from('T'), true), vec![K(none, 0x14)]);
        assert_eq!(
            s.key(u32::from('t'), true),
            vec![K(up, RIGHT_SHIFT), K(none, 0x14), K(none, RIGHT_SHIFT)]
        );
        assert_eq!(s.key(0xffe2, false), vec![K(up, RIGHT_SHIFT)]);
        assert_eq!(s.key(u32::from('t'), true), vec![K(none, 0x14)]);
    }

    #[test]
    fn keys_are_scancodes_or_unicode() {
        assert_eq!(
            key_events(0xff52, false),
            vec![FastPathInputEvent::KeyboardEvent(
                KeyboardFlags::RELEASE | KeyboardFlags::EXTENDED,
                0x48
            )]
        );
        assert_eq!(key_events(0x0101_f600, true).len(), 2); // a surrogate pair
        assert!(key_events(0xfe50, true).is_empty());
    }

    #[test]
    fn requested_sizes_are_bounded_and_even() {
        let o = RdpOptions {
            width: 1,
            height: 60000,
            remotefx: false,
            drive: None,
        };
        assert_eq!(o.clamped_size(), (640, 2160));
        let o = RdpOptions {
            width: 1281,
            height: 801,
            remotefx: false,
            drive: None,
        };
        assert_eq!(o.clamped_size(), (1280, 801));
    }
}
