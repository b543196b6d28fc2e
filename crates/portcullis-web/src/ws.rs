//! The session WebSocket: authorises, opens a session through the broker and pumps frames and
//! input between the browser and the session's viewer.

use std::net::SocketAddr;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use portcullis_broker::{OpenRequest, TargetSpec, ViewerOutput};
use portcullis_core::session::EntryPath;
use portcullis_core::wire::{self, ErrorCode, ServerMessage, WireError};
use tracing::{info, warn};

use crate::auth::AuthUser;
use crate::ops;
use crate::{AppState, WebError};

/// A browser that sends nothing for this long (not even an ack) while frames wait is gone.
const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The request must come from a page of this gateway: browsers send Origin on WebSocket
/// upgrades, and a cross-site page must not ride the user's cookie.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host),
        _ => false,
    }
}

pub(crate) async fn connect(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, WebError> {
    if !same_origin(&headers) {
        return Err(WebError::Forbidden(
            "cross-origin session requests are refused".into(),
        ));
    }
    if !state.store.has_grant(&user.name, &name)? {
        warn!(user = %user.name, target = %name, "session refused: no grant");
        return Err(WebError::Forbidden(format!(
            "you have no grant for target {name:?}"
        )));
    }
    let target = state
        .store
        .get_target(&name)?
        .ok_or_else(|| WebError::NotFound(format!("no target named {name:?}")))?;
    let password = ops::open_target_secret(&state.key, &target)?;
    let req = OpenRequest {
        user: user.name,
        target: target.name,
        spec: TargetSpec::Vnc {
            address: target.address,
            password,
        },
        client_addr: peer.to_string(),
        entry: EntryPath::Browser,
    };
    Ok(upgrade
        .max_message_size(wire::MAX_CLIENT_MESSAGE)
        .max_frame_size(wire::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| run(socket, state, req)))
}

async fn send_json(socket: &mut WebSocket, m: &ServerMessage) -> bool {
    socket.send(Message::Text(m.to_json().into())).await.is_ok()
}

async fn close_with(socket: &mut WebSocket, m: &ServerMessage) {
    let _ = send_json(socket, m).await;
    let reason = match m {
        ServerMessage::Error { code, .. } => serde_json::to_string(code).unwrap_or_default(),
        _ => "closed".into(),
    };
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: if matches!(m, ServerMessage::Error { .. }) {
                4000
            } else {
                1000
            },
            reason: reason.trim_matches('"').to_owned().into(),
        })))
        .await;
}

async fn run(mut socket: WebSocket, state: AppState, req: OpenRequest) {
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
    let id = session.id();
    let (width, height) = session.size();
    let mut viewer = session.attach_viewer();
    if !send_json(
        &mut socket,
        &ServerMessage::Init {
            session: id.clone(),
            target: target.clone(),
            width,
            height,
        },
    )
    .await
    {
        session.close(ServerMessage::Closed {
            reason: "viewer disconnected".into(),
        });
        return;
    }
    let (mut tx, mut rx) = socket.split();
    let end: Option<ServerMessage> = loop {
        tokio::select! {
            out = viewer.next() => match out {
                ViewerOutput::Message(m) => {
                    if tx.send(Message::Text(m.to_json().into())).await.is_err() { break None; }
                }
                ViewerOutput::Frame(msgs) => {
                    let mut ok = true;
                    for m in msgs {
                        if tx.feed(Message::Binary(m.into())).await.is_err() { ok = false; break; }
                    }
                    if !ok || tx.flush().await.is_err() { break None; }
                }
                ViewerOutput::End(m) => break Some(m),
            },
            incoming = tokio::time::timeout(ACK_TIMEOUT, rx.next()) => match incoming {
                Err(_) => break Some(ServerMessage::Error {
                    code: ErrorCode::BadMessage,
                    message: "the browser stopped answering".into(),
                }),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => break None,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let parsed = wire::parse_client_message(text.as_str());
                    let handled = match parsed {
                        Ok(msg) => viewer.handle(msg).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = handled {
                        warn!(session = %id, error = %e, "bad message from browser");
                        break Some(ServerMessage::Error { code: ErrorCode::BadMessage, message: e });
                    }
                }
                Ok(Some(Ok(Message::Binary(_)))) => {
                    let e = WireError::UnexpectedBinary.to_string();
                    warn!(session = %id, error = %e, "bad message from browser");
                    break Some(ServerMessage::Error { code: ErrorCode::BadMessage, message: e });
                }
                Ok(Some(Ok(_))) => {}
            },
        }
    };
    match end {
        Some(m) => {
            session.close(m.clone());
            if let Ok(mut socket) = tx.reunite(rx) {
                close_with(&mut socket, &m).await;
            }
        }
        None => session.close(ServerMessage::Closed {
            reason: "the viewer disconnected".into(),
        }),
    }
    info!(session = %id, %user, %target, "viewer left");
}
