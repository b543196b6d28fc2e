//! Opening a target connection: TCP, X.224, TLS, the target's identity checked before any
//! credential is sent, then the login (TLS logon, or NLA with NTLM) and the active stage built.

use std::time::Duration;

use ironrdp_cliprdr::CliprdrClient;
use ironrdp_connector::{ClientConnector, Credentials, DesktopSize, ServerName};
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_session::image::DecodedImage;
use ironrdp_session::ActiveStageBuilder;
use ironrdp_tokio::{NetworkClient, TokioFramed};
use portcullis_core::desktop::{check_size, Timeouts};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::{info, warn};

use super::{tls, RdpCredentials, RdpOptions, RdpTarget, RdpTargetError};
use crate::clip::{ClipQueue, ClipState};
use crate::drive::{DriveRelay, DriveTerms, RdpdrChannel};
use crate::identity::{IdentityCheck, Presented};

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
