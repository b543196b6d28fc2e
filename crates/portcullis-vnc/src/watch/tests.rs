use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Framing, Watched};

const ARM: [u8; 8] = [2, 0, 0, 1, 0, 0, 0, 16];

/// Reads everything `server` sends through a watched stream, in reads of at most `piece`.
async fn through(server: &[u8], arm: bool, piece: usize) -> (Vec<u8>, Arc<Framing>) {
    let (client_end, mut server_end) = tokio::io::duplex(1 << 16);
    let framing = Framing::new();
    let mut watched = Watched::new(client_end, Arc::clone(&framing), ARM.to_vec());
    if arm {
        watched.write_all(&ARM).await.unwrap();
    }
    server_end.write_all(server).await.unwrap();
    drop(server_end);
    let mut out = Vec::new();
    let mut buf = vec![0; piece];
    loop {
        let n = watched.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        // The adapter keeps up (it sees each marker as soon as it is read).
        framing.marker_seen();
    }
    (out, framing)
}

fn marker(framing: &Framing) -> Vec<u8> {
    framing.marker_message()
}

#[tokio::test]
async fn a_marker_follows_each_update_and_nothing_else() {
    let empty = [0_u8, 0, 0, 0];
    let bell = [2_u8];
    let mut copy = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 4];
    copy.extend_from_slice(&1_i32.to_be_bytes());
    copy.extend_from_slice(&[0, 8, 0, 8]);
    let server: Vec<u8> = [&copy[..], &bell, &empty, &bell].concat();
    for piece in [1, 2, 3, 7, 64, 4096] {
        let (out, framing) = through(&server, true, piece).await;
        let m = marker(&framing);
        let want: Vec<u8> = [&copy[..], &m, &bell, &empty, &m, &bell].concat();
        assert_eq!(out, want, "reads of {piece}");
        assert!(framing.in_sync());
    }
}

#[tokio::test]
async fn nothing_is_added_before_our_set_encodings_went_out() {
    let server = [0_u8, 0, 0, 0, 2];
    let (out, framing) = through(&server, false, 64).await;
    assert_eq!(out, server);
    assert!(!framing.in_sync());
}

#[tokio::test]
async fn after_losing_sync_the_bytes_pass_untouched() {
    // An update in an encoding the framer cannot measure (TRLE), then an empty update.
    let mut server = vec![0_u8, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 4];
    server.extend_from_slice(&15_i32.to_be_bytes());
    server.extend_from_slice(&[9; 20]);
    server.extend_from_slice(&[0, 0, 0, 0]);
    let (out, framing) = through(&server, true, 5).await;
    assert_eq!(out, server);
    assert!(!framing.in_sync());
}

#[test]
fn the_marker_is_a_server_cut_text_that_decodes_to_itself() {
    let framing = Framing::new();
    let m = framing.marker_message();
    assert_eq!(&m[..4], &[3, 0, 0, 0]);
    let len = usize::try_from(u32::from_be_bytes([m[4], m[5], m[6], m[7]])).unwrap();
    let text = String::from_utf8_lossy(&m[8..8 + len]);
    assert!(framing.is_marker(&text));
    assert!(
        !Framing::new().is_marker(&text),
        "each connection has its own"
    );
}

#[tokio::test]
async fn the_socket_is_not_read_while_updates_wait_for_the_adapter() {
    use std::time::Duration;
    let (client_end, mut server_end) = tokio::io::duplex(1 << 20);
    let framing = Framing::new();
    let mut watched = Watched::new(client_end, Arc::clone(&framing), ARM.to_vec());
    watched.write_all(&ARM).await.unwrap();
    // A flood of empty updates nobody asked for.
    let flood = [0_u8, 0, 0, 0].repeat(100_000);
    server_end.write_all(&flood).await.unwrap();
    let mut read = Vec::new();
    // vnc-rs's own read size.
    let mut buf = vec![0; 65_535];
    // It gets updates and markers until MAX_UNSEEN markers are unseen, then nothing.
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(200), watched.read(&mut buf)).await
    {
        assert!(n <= super::READ_CHUNK, "one read gave {n} bytes");
        read.extend_from_slice(&buf[..n]);
    }
    let m = marker(&framing);
    let markers = read.windows(m.len()).filter(|w| *w == &m[..]).count();
    assert_eq!(markers as u32, super::MAX_UNSEEN);
    let from_server = read.len() - markers * m.len();
    assert_eq!(
        from_server,
        4 * markers,
        "only the updates before the markers"
    );
    // The adapter catches up: the stream reads on.
    framing.marker_seen();
    let n = tokio::time::timeout(Duration::from_secs(5), watched.read(&mut buf))
        .await
        .expect("woken once a marker was seen")
        .unwrap();
    assert!(n > 0);
}

#[tokio::test]
async fn one_endless_update_is_handed_over_in_small_reads() {
    use std::time::Duration;
    let (client_end, mut server_end) = tokio::io::duplex(1 << 20);
    let framing = Framing::new();
    let mut watched = Watched::new(client_end, Arc::clone(&framing), ARM.to_vec());
    watched.write_all(&ARM).await.unwrap();
    // One Raw rectangle of 4000x4000 pixels (64 MB): no marker for a long time, so nothing
    // pauses the stream; vnc-rs queues reads, each at most READ_CHUNK (4096 of them: 32 MiB).
    let mut update = vec![0_u8, 0, 0, 1, 0, 0, 0, 0];
    update.extend_from_slice(&[0x0f, 0xa0, 0x0f, 0xa0]);
    update.extend_from_slice(&0_i32.to_be_bytes());
    let writer = tokio::spawn(async move {
        server_end.write_all(&update).await.unwrap();
        let block = vec![7_u8; 1 << 16];
        for _ in 0..32 {
            server_end.write_all(&block).await.unwrap();
        }
        server_end
    });
    let mut buf = vec![0; 65_535];
    let mut total = 0;
    while total < 32 << 16 {
        let n = tokio::time::timeout(Duration::from_secs(5), watched.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0 && n <= super::READ_CHUNK, "one read gave {n} bytes");
        total += n;
    }
    drop(writer.await.unwrap());
}
