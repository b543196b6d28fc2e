//! Connects to an RDP target and reports what arrives: `probe HOST:PORT USER PASSWORD [SECONDS]`.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use portcullis_core::desktop::{TargetUpdate, Timeouts};
use portcullis_rdp::{RdpCredentials, RdpOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(4).map_or(5, |s| s.parse().unwrap());
    let creds = RdpCredentials {
        username: args[2].clone(),
        domain: None,
        password: args[3].clone(),
    };
    let started = Instant::now();
    let target = match portcullis_rdp::connect(
        &args[1],
        creds,
        RdpOptions::default(),
        portcullis_rdp::IdentityCheck::default(),
        Timeouts::default(),
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            println!("connect failed after {:?}: {e}", started.elapsed());
            return;
        }
    };
    println!(
        "connected in {:?}, size {:?}",
        started.elapsed(),
        target.size()
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let (_cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(16);
    let size = target.size();
    let run = tokio::spawn(target.run(tx, cmd_rx));
    let deadline = tokio::time::sleep(Duration::from_secs(secs));
    tokio::pin!(deadline);
    let (w, h) = size;
    let mut fb = portcullis_core::desktop::Framebuffer::new(w, h).unwrap();
    let (mut n, mut px, mut first) = (0u64, 0u64, None);
    loop {
        tokio::select! {
            u = rx.recv() => match u {
                Some(u @ TargetUpdate::Pixels { .. }) => {
                    let TargetUpdate::Pixels { rect, .. } = &u else { unreachable!() };
                    let rect = *rect;
                    fb.apply(&u).unwrap();
                    n += 1;
                    px += rect.area();
                    first.get_or_insert(started.elapsed());
                }
                Some(other) => println!("update {other:?}"),
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    if let Ok(path) = std::env::var("PROBE_PPM") {
        let mut out = format!("P6 {} {} 255\n", fb.width(), fb.height()).into_bytes();
        for px in fb.data().chunks_exact(4) {
            out.extend_from_slice(&px[..3]);
        }
        std::fs::write(path, out).unwrap();
    }
    println!("{n} pixel updates, {px} pixels, first at {first:?}");
    drop(rx);
    println!(
        "run ended: {:?}",
        tokio::time::timeout(Duration::from_secs(2), run).await
    );
}
