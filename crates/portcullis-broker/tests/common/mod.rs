//! What the broker's integration tests share: scripted RFB targets (the server side of the
//! handshake, then whatever a test has the desktop do) and the requests that open sessions to
//! them.
#![allow(clippy::unwrap_used, dead_code)] // each test binary uses its own part

use std::future::Future;

use portcullis_broker::OpenRequest;
use portcullis_policy::{Entry, Policy, PolicyDoc, Recording, SessionGrant, Subject, TargetRef};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Listens on a free local port and hands every connection to `each` on its own task; returns
/// the address. `each` is called as the connection is accepted (count connections there).
pub(crate) async fn serve<F, Fut>(each: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(each(s));
        }
    });
    addr
}

/// The server side of an RFB 3.8 handshake without authentication: a `width`x`height`
/// desktop called `name`, 32 bits per pixel.
pub(crate) async fn handshake(
    s: &mut TcpStream,
    width: u16,
    height: u16,
    name: &[u8],
) -> std::io::Result<()> {
    s.write_all(b"RFB 003.008\n").await?;
    let mut version = [0u8; 12];
    s.read_exact(&mut version).await?;
    s.write_all(&[1, 1]).await?;
    let mut choice = [0u8; 1];
    s.read_exact(&mut choice).await?;
    s.write_all(&0u32.to_be_bytes()).await?;
    let mut shared = [0u8; 1];
    s.read_exact(&mut shared).await?;
    let mut init = Vec::new();
    init.extend_from_slice(&width.to_be_bytes());
    init.extend_from_slice(&height.to_be_bytes());
    init.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0]);
    init.extend_from_slice(&u32::try_from(name.len()).unwrap().to_be_bytes());
    init.extend_from_slice(name);
    s.write_all(&init).await
}

/// Discards what the client sends until it goes away.
pub(crate) async fn drain(s: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    while s.read(&mut buf).await? > 0 {}
    Ok(())
}

/// A minimal RFB server without authentication: a `width`x`height` desktop called `name` that
/// never changes.
pub(crate) async fn still_server(width: u16, height: u16, name: &'static [u8]) -> String {
    serve(move |mut s| async move {
        handshake(&mut s, width, height, name).await?;
        drain(&mut s).await
    })
    .await
}

/// What the shipped default policy grants on target `t` (text clipboard both ways), with
/// recording `recording`.
pub(crate) fn grant(recording: Recording) -> SessionGrant {
    let mut doc = PolicyDoc::default_policy();
    doc.rules[0].recording = recording;
    let who = Subject {
        user: "alice",
        role: "user",
        groups: &[],
    };
    Policy::compile(&doc)
        .unwrap()
        .session(&who, &TargetRef::new("t", &[]), Entry::Browser, 0)
        .into_result()
        .unwrap()
}

/// Alice opens target `t` at `address` (VNC, no password) from a browser.
pub(crate) fn request(address: String, recording: Recording) -> OpenRequest {
    portcullis_broker::testing::browser_request_with(address, grant(recording))
}
