//! The session WebSocket: authorises, opens a session through the broker and pumps frames and
//! input between the browser and the session's viewer.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use futures_util::{FutureExt, SinkExt, StreamExt};
use portcullis_broker::{OpenRequest, SessionHandle, Viewer, ViewerOutput};
use portcullis_core::session::{EntryPath, SessionEnd, TargetFault};
use portcullis_core::wire::{self, ErrorCode, ServerMessage, WireError};
use portcullis_policy::Entry;
use tracing::{info, warn};

use crate::auth::AuthUser;
use crate::ops;
use crate::policy::session as session_policy;
use crate::session_end::browser_message;
use crate::{AppState, WebError};

/// How often the gateway pings the browser; browsers answer pings on their own.
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A browser from which nothing (not even a pong) arrived for this long is gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// How long the goodbye may take in all (the closing message, our Close, the browser's
/// answer) before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Longest wait for the browser to take a frame or a ping, or for the target to take input.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Once the session ended, how much longer a send in progress may take before the viewer lets
/// go (the gateway's shutdown waits for every viewer, within its grace).
const ENDED_GRACE: Duration = Duration::from_secs(2);

/// What became of a send to the browser (or of input to the target).
#[derive(Debug, PartialEq)]
enum Sent<T> {
    Done(T),
    /// Not done within its time limit: the other side stopped taking.
    Stalled,
    /// The session ended, and the send was still not done a moment later.
    Ended(SessionEnd),
}

/// Waits for `work` at most `limit`, and at most [`ENDED_GRACE`] once `ended` (the session's
/// end) resolved: a client that stopped reading never holds its viewer past its session.
async fn bounded<T>(
    limit: Duration,
    ended: std::pin::Pin<&mut impl std::future::Future<Output = SessionEnd>>,
    work: impl std::future::Future<Output = T>,
) -> Sent<T> {
    let work = tokio::time::timeout(limit, work);
    tokio::pin!(work);
    tokio::select! {
        biased;
        r = &mut work => r.map_or(Sent::Stalled, Sent::Done),
        m = ended => match tokio::time::timeout(ENDED_GRACE, work).await {
            Ok(Ok(v)) => Sent::Done(v),
            Ok(Err(_)) => Sent::Stalled,
            Err(_) => Sent::Ended(m),
        },
    }
}

/// The request must come from a page of this gateway: browsers send Origin on WebSocket
/// upgrades, and a cross-site page must not ride the user's cookie.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host),
        _ => false,
    }
}

/// What the browser may ask for when it opens a session.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ConnectQuery {
    /// Desktop size wished for (RDP targets; bounded by the adapter).
    width: Option<u16>,
    height: Option<u16>,
    /// `1`: the page reads a frame's messages in batches ([`wire::batched`]). Asked for by the
    /// page, so a page loaded before an upgrade (or served by an older gateway of a cluster
    /// during a rolling upgrade) still gets the messages it knows. Any other value: no batches
    /// (a string, so that no value makes the upgrade fail).
    batch: Option<String>,
}

/// What a watching page may ask for.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct WatchQuery {
    /// As [`ConnectQuery`]'s.
    batch: Option<String>,
}

impl WatchQuery {
    pub(crate) fn batch(&self) -> bool {
        self.batch.as_deref() == Some("1")
    }
}

pub(crate) async fn connect(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    Query(query): Query<ConnectQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, WebError> {
    if !same_origin(&headers) {
        return Err(WebError::Forbidden(
            "cross-origin session requests are refused".into(),
        ));
    }
    if !crate::requests::has_access(&state, &user.name, &name)? {
        warn!(user = %user.name, target = %name, "session refused: no grant");
        return Err(WebError::Forbidden(format!(
            "you have no grant for target {name:?}"
        )));
    }
    let target = state
        .store
        .get_target(&name)?
        .ok_or_else(|| WebError::NotFound(format!("no target named {name:?}")))?;
    let upgrade = upgrade
        .max_message_size(wire::MAX_CLIENT_MESSAGE)
        .max_frame_size(wire::MAX_CLIENT_MESSAGE);
    // A policy refusal is told over the socket, so the page can show the reason.
    let grant = match session_policy::decide_open(&state, &user.name, &target, Entry::Browser) {
        Ok(grant) => grant,
        Err(why) => {
            // Refused before any target contact; the refusal is on record (and refused even
            // if the record cannot be written).
            let _ = state
                .audit
                .record(
                    portcullis_audit::Record::new(portcullis_audit::Kind::POLICY, &user.name)
                        .target(&target.name)
                        .detail("action", "open")
                        .detail("decision", "deny")
                        .detail("entry", "browser")
                        .detail("reason", why.as_str()),
                )
                .await;
            let m = ServerMessage::Error {
                code: ErrorCode::PolicyDenied,
                message: why,
            };
            return Ok(upgrade.on_upgrade(move |mut socket| async move {
                close_with(&mut socket, &m).await;
            }));
        }
    };
    let size = query.width.zip(query.height);
    let batch = query.batch.as_deref() == Some("1");
    let keeper = crate::rdp::identity::keeper(&state, &target.name, &user.name);
    let spec = ops::target_spec(&state.key, &target, size, state.rdp_remotefx, Some(keeper))?;
    let req = OpenRequest {
        user_id: user.id,
        user: user.name,
        target: target.name,
        spec,
        client_addr: peer.to_string(),
        entry: EntryPath::Browser,
        grant,
    };
    Ok(upgrade.on_upgrade(move |socket| run(socket, state, req, batch)))
}

async fn send_json(socket: &mut WebSocket, m: &ServerMessage) -> bool {
    socket.send(Message::Text(m.to_json().into())).await.is_ok()
}

async fn close_with(socket: &mut WebSocket, m: &ServerMessage) {
    // One deadline for the whole goodbye: a browser that stopped reading must not hold up the
    // end (nor the gateway's shutdown, which waits for every viewer to be let go, within its
    // grace). One that does not take the message gets nothing more.
    let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
    if !matches!(
        tokio::time::timeout_at(deadline, send_json(socket, m)).await,
        Ok(true)
    ) {
        warn!("the browser did not take the closing message");
        return;
    }
    let reason = match m {
        ServerMessage::Error { code, .. } => serde_json::to_string(code).unwrap_or_default(),
        _ => "closed".into(),
    };
    let close = socket.send(Message::Close(Some(CloseFrame {
        code: if matches!(m, ServerMessage::Error { .. }) {
            4000
        } else {
            1000
        },
        reason: reason.trim_matches('"').to_owned().into(),
    })));
    let _ = tokio::time::timeout_at(deadline, close).await;
    // Finish the closing handshake: read until the browser's Close. Dropping the connection
    // while the browser's acks sit unread makes the kernel reset it, and a reset can discard
    // the message above before the page has read it.
    let drain = async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, drain).await;
}

async fn run(mut socket: WebSocket, state: AppState, req: OpenRequest, batch: bool) {
    let target = req.target.clone();
    let user = req.user.clone();
    let session = match state.broker.open(req).await {
        Ok(s) => s,
        Err(e) => {
            close_with(
                &mut socket,
                &ServerMessage::Error {
                    code: e.code,
                    message: e.message,
                },
            )
            .await;
            return;
        }
    };
    crate::behaviour::watch(&state, session.clone());
    let id = session.id();
    // The grant may have been revoked while we connected (revocation closes only listed
    // sessions, and this one was not listed when the grant was checked).
    let still_allowed = crate::requests::has_access(&state, &user, &target).unwrap_or(false)
        && matches!(state.store.get_user(&user), Ok(Some(u)) if !u.locked);
    if !still_allowed {
        let end = SessionEnd::ClosedByAdmin {
            message: "your access to this target was revoked".into(),
        };
        session.close(end.clone());
        close_with(&mut socket, &browser_message(&end)).await;
        return;
    }
    let (mut viewer, (width, height)) = session.attach_viewer(&user);
    let init = ServerMessage::Init {
        session: id.clone(),
        target: target.clone(),
        width,
        height,
    };
    // This viewer's leaving ends the session: `leave_and_end` puts the leave in the event track
    // before the end (the recorder's last word). The viewer itself is dropped only once the
    // browser was told why: the gateway's shutdown waits for that.
    match pump(socket, &mut viewer, &id, &init, batch).await {
        (Some(end), socket) => {
            viewer.leave_and_end(end.clone());
            let m = browser_message(&end);
            match socket {
                Some(mut socket) => close_with(&mut socket, &m).await,
                None => warn!(session = %id, "cannot tell the browser why the session ended"),
            }
            info!(session = %id, %user, %target, reason = %m.to_json(), "viewer left");
        }
        (None, _) => {
            viewer.leave_and_end(SessionEnd::ViewerDisconnected);
            info!(session = %id, %user, %target, "viewer disconnected");
        }
    }
}

/// A security-team member watches a live session, view-only: leaving (or failing) ends only the
/// watch, never the session.
pub(crate) async fn watch(
    socket: WebSocket,
    session: SessionHandle,
    (mut viewer, (width, height)): (Viewer, (u32, u32)),
    watcher: String,
    mut open: crate::watches::Watch,
    batch: bool,
) {
    let id = session.id();
    let info = session.info();
    info!(session = %id, %watcher, user = %info.user, target = %info.target, "watcher attached");
    let init = ServerMessage::Init {
        session: id.clone(),
        target: info.target,
        width,
        height,
    };
    tokio::select! {
        ended = pump(socket, &mut viewer, &id, &init, batch) => {
            if let (Some(end), Some(mut s)) = ended {
                close_with(&mut s, &browser_message(&end)).await;
            }
        }
        why = open.revoked() => {
            // The browser's socket goes with the pump; its login is ended already.
            info!(session = %id, %watcher, %why, "watch ended: the watcher's account was revoked");
        }
    }
    info!(session = %id, %watcher, "watcher left");
}

/// Pumps frames and control messages to the browser and its messages to `viewer`, after `init`,
/// until either side ends. Returns why (`None`: the browser went away) and the socket when it can
/// still be closed properly. Every send and every wait on the target is bounded, and raced
/// against the session's end: an ended session's viewer is let go within [`ENDED_GRACE`] even
/// when its browser stopped reading.
async fn pump(
    mut socket: WebSocket,
    viewer: &mut Viewer,
    id: &str,
    init: &ServerMessage,
    batch: bool,
) -> (Option<SessionEnd>, Option<WebSocket>) {
    // Fused: once it resolved (a send then still finished in time) it stays pending, and the
    // viewer's next output is the end.
    let ended = viewer.ended().fuse();
    tokio::pin!(ended);
    match bounded(SEND_TIMEOUT, ended.as_mut(), send_json(&mut socket, init)).await {
        Sent::Done(true) => {}
        Sent::Done(false) | Sent::Stalled => return (None, None),
        Sent::Ended(m) => return (Some(m), None),
    }
    let (mut tx, mut rx) = socket.split();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.reset();
    let mut last_heard = tokio::time::Instant::now();
    let stopped_answering = || SessionEnd::ClientFault {
        message: "the browser stopped answering".into(),
    };
    /// How the loop ends: the browser went away, or why the session ends and whether the
    /// browser can still be told.
    enum End {
        Gone,
        Tell(SessionEnd),
        Unreachable(SessionEnd),
    }
    let end = loop {
        tokio::select! {
            // The viewer first: once the session ended its next output is the end, so no ping
            // or read is started after it (those would be bounded by the send timeout only,
            // `ended` being spent).
            biased;
            out = viewer.next() => match out {
                ViewerOutput::Message(m) => {
                    let send = tx.send(Message::Text(m.to_json().into()));
                    match bounded(SEND_TIMEOUT, ended.as_mut(), send).await {
                        Sent::Done(Ok(())) => {}
                        Sent::Done(Err(_)) => break End::Gone,
                        Sent::Stalled => break End::Unreachable(stopped_answering()),
                        Sent::Ended(m) => break End::Unreachable(m),
                    }
                }
                ViewerOutput::Frame(msgs) => {
                    let send_all = async {
                        let msgs = if batch { wire::batched(msgs) } else { msgs };
                        for m in msgs {
                            tx.feed(Message::Binary(m.into())).await?;
                        }
                        tx.flush().await
                    };
                    match bounded(SEND_TIMEOUT, ended.as_mut(), send_all).await {
                        Sent::Done(Ok(())) => {}
                        Sent::Done(Err(_)) => break End::Gone,
                        Sent::Stalled => break End::Unreachable(stopped_answering()),
                        Sent::Ended(m) => break End::Unreachable(m),
                    }
                }
                ViewerOutput::End(m) => break End::Tell(m),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    break End::Tell(stopped_answering());
                }
                let send = tx.send(Message::Ping(Vec::new().into()));
                match bounded(SEND_TIMEOUT, ended.as_mut(), send).await {
                    Sent::Done(Ok(())) => {}
                    Sent::Done(Err(_)) => break End::Gone,
                    Sent::Stalled => break End::Unreachable(stopped_answering()),
                    Sent::Ended(m) => break End::Unreachable(m),
                }
            }
            incoming = rx.next() => {
                last_heard = tokio::time::Instant::now();
                match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break End::Gone,
                    Some(Ok(Message::Text(text))) => {
                        let handled = match wire::parse_client_message(text.as_str()) {
                            Ok(msg) => match bounded(SEND_TIMEOUT, ended.as_mut(), viewer.handle(msg)).await {
                                Sent::Done(r) => r.map_err(|e| e.to_string()),
                                Sent::Stalled => {
                                    break End::Tell(SessionEnd::TargetFailed {
                                        fault: TargetFault::Protocol,
                                        message: "the target stopped taking input".into(),
                                    })
                                }
                                // The browser is still there to be told.
                                Sent::Ended(m) => break End::Tell(m),
                            },
                            Err(e) => Err(e.to_string()),
                        };
                        if let Err(e) = handled {
                            warn!(session = %id, error = %e, "bad message from browser");
                            break End::Tell(SessionEnd::ClientFault { message: e });
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let e = WireError::UnexpectedBinary.to_string();
                        warn!(session = %id, error = %e, "bad message from browser");
                        break End::Tell(SessionEnd::ClientFault { message: e });
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    };
    match end {
        End::Tell(m) => (Some(m), tx.reunite(rx).ok()),
        End::Unreachable(m) => (Some(m), None),
        End::Gone => (None, None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use portcullis_broker::Broker;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};

    use super::*;

    /// An RFB server whose 256x256 desktop is fresh noise at every update request (sent raw):
    /// its frames are far larger than small socket buffers.
    async fn noisy_desktop() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    s.write_all(b"RFB 003.008\n").await?;
                    let mut skip = [0u8; 64];
                    s.read_exact(&mut skip[..12]).await?;
                    s.write_all(&[1, 1]).await?;
                    s.read_exact(&mut skip[..1]).await?;
                    s.write_all(&0u32.to_be_bytes()).await?;
                    s.read_exact(&mut skip[..1]).await?;
                    let mut init = vec![1, 0, 1, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255];
                    init.extend_from_slice(&[16, 8, 0, 0, 0, 0, 0, 0, 0, 1, b'n']);
                    s.write_all(&init).await?;
                    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
                    loop {
                        let kind = s.read_u8().await?;
                        match kind {
                            0 => s.read_exact(&mut skip[..19]).await.map(|_| ())?,
                            2 => {
                                s.read_exact(&mut skip[..1]).await?;
                                let n = s.read_u16().await?;
                                for _ in 0..n {
                                    s.read_u32().await?;
                                }
                            }
                            3 => {
                                s.read_exact(&mut skip[..9]).await?;
                                let mut update = vec![0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0];
                                update.extend_from_slice(&0i32.to_be_bytes());
                                update.reserve(256 * 256 * 4);
                                for _ in 0..256 * 256 {
                                    seed ^= seed << 13;
                                    seed ^= seed >> 7;
                                    seed ^= seed << 17;
                                    update.extend_from_slice(&(seed as u32).to_le_bytes());
                                }
                                s.write_all(&update).await?;
                            }
                            4 => s.read_exact(&mut skip[..7]).await.map(|_| ())?,
                            5 => s.read_exact(&mut skip[..5]).await.map(|_| ())?,
                            6 => {
                                s.read_exact(&mut skip[..3]).await?;
                                let n = s.read_u32().await?;
                                for _ in 0..n {
                                    s.read_u8().await?;
                                }
                            }
                            _ => return Ok::<_, std::io::Error>(()),
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_browser_that_stopped_reading_is_let_go_soon_after_a_soc_kill() {
        let broker =
            Broker::default().with_recorder(portcullis_broker::testing::HoldingRecorder::shared());
        let session = broker
            .open(portcullis_broker::testing::browser_request(
                noisy_desktop().await,
            ))
            .await
            .unwrap();
        let viewer = Arc::new(Mutex::new(Some(session.attach_viewer("alice").0)));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let done_tx = Arc::new(Mutex::new(Some(done_tx)));
        let app = axum::Router::new().route(
            "/ws",
            axum::routing::get(move |ws: WebSocketUpgrade| async move {
                let mut viewer = viewer.lock().unwrap().take().unwrap();
                let done = done_tx.lock().unwrap().take().unwrap();
                ws.on_upgrade(move |socket| async move {
                    let init = ServerMessage::Bell;
                    let (m, _) = pump(socket, &mut viewer, "s", &init, true).await;
                    drop(viewer);
                    let _ = done.send(m);
                })
            }),
        );
        // Small, fixed send buffers (no autotuning to megabytes as on loopback): a frame of
        // noise fills them.
        let server = TcpSocket::new_v4().unwrap();
        server.set_send_buffer_size(4096).unwrap();
        server.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = server.listen(4).unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        let mut browser: TcpStream = client.connect(addr).await.unwrap();
        browser
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(browser.read_u8().await.unwrap());
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
        // From now on the browser reads nothing: the gateway's frame send gets stuck.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let killed = SessionEnd::ClosedByAdmin {
            message: "closed by the SOC".into(),
        };
        session.close(killed.clone());
        let started = tokio::time::Instant::now();
        let told = tokio::time::timeout(Duration::from_secs(5), done_rx)
            .await
            .expect("the viewer was let go after the session ended")
            .unwrap();
        assert_eq!(told, Some(killed));
        assert!(started.elapsed() < ENDED_GRACE + Duration::from_secs(1));
        drop(browser);
    }

    fn closed() -> SessionEnd {
        SessionEnd::ClosedByAdmin {
            message: "closed by the SOC".into(),
        }
    }

    #[tokio::test]
    async fn a_send_that_never_returns_lets_go_soon_after_the_session_ended() {
        let ended = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            closed()
        };
        tokio::pin!(ended);
        let started = tokio::time::Instant::now();
        // A browser that never reads: the send never returns, and its own limit is far off.
        let sent = bounded(
            Duration::from_secs(3600),
            ended.as_mut(),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(sent, Sent::Ended(closed()));
        let took = started.elapsed();
        assert!(
            took < ENDED_GRACE + Duration::from_millis(800),
            "let go after {took:?}"
        );
    }

    #[tokio::test]
    async fn a_send_that_never_returns_stalls_at_its_limit() {
        let ended = std::future::pending::<SessionEnd>();
        tokio::pin!(ended);
        let sent = bounded(
            Duration::from_millis(100),
            ended.as_mut(),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(sent, Sent::Stalled);
    }

    #[tokio::test]
    async fn a_send_in_progress_when_the_session_ends_may_finish() {
        let ended = std::future::ready(closed());
        tokio::pin!(ended);
        let work = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            7
        };
        assert_eq!(
            bounded(SEND_TIMEOUT, ended.as_mut(), work).await,
            Sent::Done(7)
        );
    }
}
