//! Driving `ironrdp-acceptor` for one connection up to its activation: X.224, TLS, NLA when a
//! ticket allows it, the login (checked by the gate) and the capabilities.
//!
//! We step the acceptor ourselves rather than through `accept_begin`/`accept_finalize`: that
//! keeps the future `Send`, lets us count every byte the client sends before it is activated,
//! send the negotiation-failure PDU the helpers would drop, and read the Client Info PDU
//! (the login) before the acceptor goes on to licensing and capabilities.

use std::net::SocketAddr;

use bytes::Bytes;
use ironrdp_acceptor::{Acceptor, AcceptorResult};
use ironrdp_cliprdr::CliprdrServer;
use ironrdp_connector::{DesktopSize, Sequence as _};
use ironrdp_core::{decode, WriteBuf};
use ironrdp_pdu::nego::{self, SecurityProtocol};
use ironrdp_pdu::rdp::capability_sets::CapabilitySet;
use ironrdp_pdu::x224::X224;
use ironrdp_tokio::{FramedWrite as _, TokioFramed};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Duration, Instant};
use tokio_rustls::server::TlsStream;

use super::output;
use super::{Admission, Denial, Gate, Login, NlaIdentity, Refusal, ServeError, ServerConfig};
use crate::clip::ClipQueue;
use crate::drive::RdpdrChannel;

pub(super) type Framed = TokioFramed<TlsStream<TcpStream>>;

/// Largest desktop a client may ask for.
const MAX_DESKTOP: DesktopSize = DesktopSize {
    width: 4096,
    height: 2160,
};
/// The size announced before the client's wish is known (the acceptor adopts the wish).
const PROVISIONAL: DesktopSize = DesktopSize {
    width: 1280,
    height: 800,
};

/// Bytes the client may still send before activation.
pub(super) struct Budget {
    pub(super) left: usize,
    pub(super) limit: usize,
}

impl Budget {
    pub(super) fn spend(&mut self, n: usize) -> Result<(), ServeError> {
        self.left = self
            .left
            .checked_sub(n)
            .ok_or(ServeError::TooMuch(self.limit))?;
        Ok(())
    }
}

pub(super) fn protocol(e: impl std::fmt::Display) -> ServeError {
    ServeError::Protocol(e.to_string())
}

/// One acceptor step: reads the PDU it expects (within the budget), or none, and writes what it
/// produced, even when it failed (a negotiation failure is a PDU for the client, then an error).
pub(super) async fn step<S>(
    framed: &mut TokioFramed<S>,
    acceptor: &mut Acceptor,
    buf: &mut WriteBuf,
    budget: &mut Budget,
    input: Option<Bytes>,
) -> Result<(), ServeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync,
{
    buf.clear();
    let result = match (acceptor.next_pdu_hint(), input) {
        (Some(_), Some(pdu)) => acceptor.step(&pdu, None, buf),
        (Some(hint), None) => {
            let pdu = framed.read_by_hint(hint).await?;
            budget.spend(pdu.len())?;
            acceptor.step(&pdu, None, buf)
        }
        (None, _) => acceptor.step_no_input(buf),
    };
    if !buf.filled().is_empty() {
        framed.write_all(buf.filled()).await?;
    }
    result.map(|_| ()).map_err(|e| protocol(e.report()))
}

/// X.224, TLS, login and activation, bounded by the handshake deadline and byte budget.
pub(super) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &ServerConfig,
    gate: &dyn Gate,
) -> Result<Activated, ServeError> {
    let limits = config.limits;
    let deadline = Instant::now() + limits.handshake;
    let mut budget = Budget {
        left: limits.handshake_bytes,
        limit: limits.handshake_bytes,
    };
    timeout_at(deadline, activate(tcp, peer, config, gate, &mut budget))
        .await
        .map_err(|_| ServeError::Timeout(limits.handshake))?
}

/// How long a departing client gets to read our last words (and hang up) before we drop the line.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);
/// What we read from a departing client at most.
const GOODBYE_DRAIN: usize = 1 << 20;

/// Sends the last PDUs (error info, disconnect), closes our side (TLS close_notify and FIN) and
/// reads what the client still sends until it hangs up, for a short while. Dropping the socket
/// with the client's PDUs unread would make the kernel reset the connection, and the reset can
/// discard our last words before the client reads them (the client would show "connection reset"
/// instead of the reason).
pub(super) async fn goodbye(framed: &mut Framed, bytes: &[u8]) {
    let (stream, _) = framed.get_inner_mut();
    let _ = timeout(GOODBYE_GRACE, async {
        stream.write_all(bytes).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < GOODBYE_DRAIN {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

pub(super) struct Activated {
    pub(super) framed: Framed,
    pub(super) acceptor: Acceptor,
    pub(super) result: AcceptorResult,
    pub(super) admission: Admission,
}

async fn activate(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &ServerConfig,
    gate: &dyn Gate,
    budget: &mut Budget,
) -> Result<Activated, ServeError> {
    let mut buf = WriteBuf::new();
    let mut framed = TokioFramed::new(tcp);

    // The Connection Request: its routing token (a ticket id from an `.rdp` file) decides whether
    // NLA is possible, before the acceptor sees it.
    let request = framed.read_by_hint(&ironrdp_pdu::X224_HINT).await?;
    budget.spend(request.len())?;
    let (routing_token, requested) = match decode::<X224<nego::ConnectionRequest>>(&request) {
        Ok(X224(req)) => match req.nego_data {
            Some(nego::NegoRequestData::RoutingToken(t)) => (Some(t.0), req.protocol),
            _ => (None, req.protocol),
        },
        Err(e) => return Err(protocol(format!("bad connection request: {e}"))),
    };
    let nla_identity = routing_token
        .as_deref()
        .and_then(|t| gate.nla_identity(t))
        .filter(|_| requested.intersects(SecurityProtocol::HYBRID | SecurityProtocol::HYBRID_EX));
    // A client that can prove a ticket's password without sending it must: NLA only then.
    let security = if nla_identity.is_some() {
        SecurityProtocol::HYBRID | SecurityProtocol::HYBRID_EX
    } else {
        SecurityProtocol::SSL
    };
    let mut acceptor = Acceptor::new(
        security,
        PROVISIONAL,
        output::capabilities(PROVISIONAL.width, PROVISIONAL.height),
        None,
    );
    acceptor.set_honor_client_desktop_size(Some(MAX_DESKTOP));
    acceptor.attach_static_channel(CliprdrServer::new(Box::new(ClipQueue::default())));
    // Drives: joined always (before the login, the grant is not known), but silent unless the
    // session relays them to a target that may see them.
    acceptor.attach_static_channel(RdpdrChannel::default());
    step(&mut framed, &mut acceptor, &mut buf, budget, Some(request)).await?;
    while acceptor.reached_security_upgrade().is_none() {
        step(&mut framed, &mut acceptor, &mut buf, budget, None).await?;
    }
    let (tcp, leftover) = framed.into_inner();
    if !leftover.is_empty() {
        return Err(protocol("the client sent data before the TLS handshake"));
    }
    let tls =
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::<rustls::ServerConfig>::clone(&config.tls))
            .accept(tcp)
            .await?;
    acceptor.mark_security_upgrade_as_done();
    let mut framed = TokioFramed::new(tls);
    let nla = match (&nla_identity, acceptor.should_perform_credssp()) {
        (Some(identity), true) => {
            let outcome = credssp(
                &mut framed,
                &mut acceptor,
                identity,
                config.public_key.clone(),
                budget,
            )
            .await;
            if outcome.is_err() {
                // A failed proof uses the ticket up like a wrong password would.
                let burn = Login {
                    username: String::new(),
                    domain: String::new(),
                    password: String::new(),
                    routing_token: routing_token.clone(),
                    nla: false,
                    client_addr: peer,
                };
                let _ = gate.admit(burn).await;
            }
            outcome?;
            true
        }
        (None, true) => return Err(protocol("NLA negotiated without an identity")),
        (_, false) => false,
    };

    let mut admission = None;
    loop {
        if let Some(result) = acceptor.get_result() {
            let admission = admission.ok_or_else(|| protocol("the client sent no login"))?;
            return Ok(Activated {
                framed,
                acceptor,
                result,
                admission,
            });
        }
        if acceptor.state().name() == "SecureSettingsExchange" {
            let hint = acceptor
                .next_pdu_hint()
                .ok_or_else(|| protocol("acceptor expects no Client Info"))?;
            let pdu = framed.read_by_hint(hint).await?;
            budget.spend(pdu.len())?;
            let mut login = client_info(&pdu, routing_token.clone(), peer)?;
            login.nla = nla;
            match gate.admit(login).await {
                Ok(a) => admission = Some(a),
                Err(denial) => {
                    // ServerInsufficientPrivileges, then the disconnect.
                    buf.clear();
                    let _ = acceptor.encode_access_denied(&mut buf);
                    let mut bye = buf.filled().to_vec();
                    bye.extend(output::ultimatum());
                    goodbye(&mut framed, &bye).await;
                    return Err(ServeError::Refused(denial));
                }
            }
            step(&mut framed, &mut acceptor, &mut buf, budget, Some(pdu)).await?;
        } else {
            step(&mut framed, &mut acceptor, &mut buf, budget, None).await?;
        }
    }
}

/// CredSSP (NLA) with NTLM against `identity`, on our own loop (the acceptor's helper is not
/// `Send`). A wrong password is refused here, inside TLS, before the connection goes on.
async fn credssp(
    framed: &mut Framed,
    acceptor: &mut Acceptor,
    identity: &NlaIdentity,
    public_key: Vec<u8>,
    budget: &mut Budget,
) -> Result<(), ServeError> {
    use ironrdp_acceptor::credssp::CredsspSequence;
    use ironrdp_acceptor::AcceptorState;
    use ironrdp_connector::sspi::credssp::EarlyUserAuthResult;
    use ironrdp_connector::sspi::generator::GeneratorState;
    use ironrdp_connector::sspi::{AuthIdentity, Username};

    let negotiated = match acceptor.state().as_any().downcast_ref::<AcceptorState>() {
        Some(AcceptorState::Credssp { protocol, .. }) => *protocol,
        _ => return Err(protocol("CredSSP outside its state")),
    };
    let username = Username::parse(&identity.username).map_err(protocol)?;
    let auth = AuthIdentity {
        username,
        password: identity.password.clone().into(),
    };
    let mut sequence = CredsspSequence::init(
        &auth,
        ironrdp_connector::ServerName::new("portcullis-client"),
        public_key,
        None,
    )
    .map_err(|e| protocol(e.report()))?;
    let mut buf = WriteBuf::new();
    let outcome: Result<(), ServeError> = async {
        loop {
            let hint = match sequence.next_pdu_hint() {
                Ok(Some(hint)) => hint,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(ServeError::Refused(Denial {
                        refusal: Refusal::BadCredentials,
                        message: format!(
                            "NLA login as {:?} failed: {}",
                            identity.username,
                            e.report()
                        ),
                    }))
                }
            };
            let pdu = framed.read_by_hint(hint).await?;
            budget.spend(pdu.len())?;
            let Some(request) = sequence
                .decode_client_message(&pdu)
                .map_err(|e| protocol(e.report()))?
            else {
                return Ok(());
            };
            let result = match sequence.process_ts_request(request).start() {
                GeneratorState::Completed(r) => r,
                GeneratorState::Suspended(_) => {
                    return Err(protocol(
                        "the client asked for Kerberos, which is not offered",
                    ))
                }
            };
            buf.clear();
            let (written, _delegated) = sequence
                .handle_process_result(result, &mut buf)
                .map_err(|e| protocol(e.report()))?;
            if let Some(n) = written.size() {
                framed.write_all(&buf.filled()[..n]).await?;
            }
        }
    }
    .await;
    if negotiated.intersects(SecurityProtocol::HYBRID_EX) {
        let verdict = if outcome.is_ok() {
            EarlyUserAuthResult::Success
        } else {
            EarlyUserAuthResult::AccessDenied
        };
        let mut bytes = Vec::with_capacity(verdict.buffer_len());
        verdict.to_buffer(&mut bytes)?;
        framed.write_all(&bytes).await?;
    }
    outcome?;
    acceptor.mark_credssp_as_done();
    Ok(())
}

/// The login in a Client Info PDU.
pub(crate) fn client_info(
    pdu: &[u8],
    routing_token: Option<String>,
    peer: SocketAddr,
) -> Result<Login, ServeError> {
    let X224(data) =
        decode::<X224<ironrdp_pdu::mcs::SendDataRequest<'_>>>(pdu).map_err(protocol)?;
    let info: ironrdp_pdu::rdp::ClientInfoPdu =
        decode(data.user_data.as_ref()).map_err(protocol)?;
    let creds = info.client_info.credentials;
    Ok(Login {
        username: creds.username,
        domain: creds.domain.unwrap_or_default(),
        password: creds.password,
        routing_token,
        nla: false,
        client_addr: peer,
    })
}

/// The desktop size the client was activated with (its own wish, bounded).
pub(super) fn desktop_size(caps: &[CapabilitySet]) -> (u16, u16) {
    caps.iter()
        .find_map(|c| match c {
            CapabilitySet::Bitmap(b) => Some((b.desktop_width, b.desktop_height)),
            _ => None,
        })
        .unwrap_or((PROVISIONAL.width, PROVISIONAL.height))
}
