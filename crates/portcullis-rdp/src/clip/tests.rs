use ironrdp_cliprdr::{CliprdrClient, CliprdrServer};
use ironrdp_svc::SvcProcessor;

use super::*;

/// Hands `messages` to `to` as the channel would (encoded, then processed).
fn deliver(messages: Vec<SvcMessage>, to: &mut dyn SvcProcessor) -> Vec<SvcMessage> {
    let mut replies = Vec::new();
    for m in messages {
        let bytes = m.encode_unframed_pdu().unwrap();
        replies.extend(to.process(&bytes).unwrap());
    }
    replies
}

/// Runs both ends until nothing moves; returns what each received (client, server).
fn settle(
    client: &mut CliprdrClient,
    cs: &mut ClipState,
    server: &mut CliprdrServer,
    ss: &mut ClipState,
    mut to_client: Vec<SvcMessage>,
    mut to_server: Vec<SvcMessage>,
) -> (Drained, Drained) {
    let (mut got_client, mut got_server) = (Drained::default(), Drained::default());
    for _ in 0..200 {
        let mut next_server = deliver(std::mem::take(&mut to_client), client);
        let d = drain(client, cs);
        next_server.extend(d.messages);
        got_client.texts.extend(d.texts);
        got_client.files.extend(d.files);
        let mut next_client = deliver(std::mem::take(&mut to_server), server);
        let d = drain(server, ss);
        next_client.extend(d.messages);
        got_server.texts.extend(d.texts);
        got_server.files.extend(d.files);
        if next_client.is_empty() && next_server.is_empty() {
            break;
        }
        to_client = next_client;
        to_server = next_server;
    }
    (got_client, got_server)
}

/// A client and a server whose channel is ready.
fn ready_pair() -> (CliprdrClient, ClipState, CliprdrServer, ClipState) {
    let mut client = CliprdrClient::new(Box::new(ClipQueue::default()));
    let mut server = CliprdrServer::new(Box::new(ClipQueue::default()));
    let (mut cs, mut ss) = (ClipState::default(), ClipState::default());
    let start = server.start().unwrap();
    settle(
        &mut client,
        &mut cs,
        &mut server,
        &mut ss,
        start,
        Vec::new(),
    );
    assert!(client.is_ready() && server.is_ready());
    (client, cs, server, ss)
}

fn file(name: &str, data: Vec<u8>) -> ClipFile {
    let sha = hex::encode(Sha256::digest(&data));
    ClipFile {
        name: name.into(),
        size: u64::try_from(data.len()).unwrap(),
        content: Some((Arc::from(data), sha)),
    }
}

fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn files_are_fetched_whole_hashed_and_offered_on() {
    let (mut client, mut cs, mut server, mut ss) = ready_pair();
    ss.fetch_files(Some(1 << 20));
    cs.fetch_files(Some(1 << 20));
    // Several chunks, an empty file, and a small one.
    let big = noise(200 * 1024 + 7, 1);
    let files = vec![
        file("big.bin", big.clone()),
        file("empty", Vec::new()),
        file("a.txt", b"hello".to_vec()),
    ];
    let offered = offer_files(&mut client, &mut cs, files.clone());
    let (_, at_server) = settle(
        &mut client,
        &mut cs,
        &mut server,
        &mut ss,
        Vec::new(),
        offered,
    );
    assert_eq!(at_server.files, std::slice::from_ref(&files));
    assert_eq!(
        at_server.files[0][0].content.as_ref().unwrap().1,
        hex::encode(Sha256::digest(&big))
    );

    // Offered on from the server's side: the client fetches the same bytes back.
    let offered = offer_files(&mut server, &mut ss, at_server.files[0].clone());
    let (at_client, _) = settle(
        &mut client,
        &mut cs,
        &mut server,
        &mut ss,
        offered,
        Vec::new(),
    );
    assert_eq!(at_client.files, [files]);
}

#[test]
fn refused_or_oversized_files_are_named_but_never_fetched() {
    let (mut client, mut cs, mut server, mut ss) = ready_pair();
    let files = vec![file("secret.bin", noise(5000, 2))];
    // Not allowed: named only.
    ss.fetch_files(None);
    let offered = offer_files(&mut client, &mut cs, files.clone());
    let (_, at_server) = settle(
        &mut client,
        &mut cs,
        &mut server,
        &mut ss,
        Vec::new(),
        offered,
    );
    assert_eq!(at_server.files.len(), 1);
    assert_eq!(at_server.files[0][0].name, "secret.bin");
    assert_eq!(at_server.files[0][0].size, 5000);
    assert!(at_server.files[0][0].content.is_none());
    // Allowed, but larger than the limit: named only as well.
    ss.fetch_files(Some(4999));
    let offered = offer_files(&mut client, &mut cs, files);
    let (_, at_server) = settle(
        &mut client,
        &mut cs,
        &mut server,
        &mut ss,
        Vec::new(),
        offered,
    );
    assert!(at_server.files[0][0].content.is_none());
}

#[test]
fn a_peer_lying_about_the_size_gets_nothing_through() {
    // The list says 10 bytes, the SIZE answer says more than the limit: the fetch fails.
    let mut f = file("liar.bin", noise(3000, 3));
    f.size = 10;
    let (mut client, mut cs, mut server, mut ss) = ready_pair();
    ss.fetch_files(Some(100));
    let offered = offer_files(&mut client, &mut cs, vec![f]);
    let (_, at_server) = settle(
        &mut client,
        &mut cs,
        &mut server,
        &mut ss,
        Vec::new(),
        offered,
    );
    assert!(at_server.files.is_empty());
}

#[test]
fn hostile_content_requests_are_answered_with_errors() {
    let offered = vec![file("x", b"0123456789".to_vec())];
    let req = |index, flags, position, requested_size| FileContentsRequest {
        stream_id: 7,
        index,
        flags,
        position,
        requested_size,
        data_id: None,
    };
    let range = FileContentsFlags::RANGE;
    assert!(serve(&offered, &req(1, range, 0, 4)).is_error());
    assert!(serve(&offered, &req(-1, range, 0, 4)).is_error());
    assert!(serve(&offered, &req(0, range, 10, 4)).is_error());
    assert!(serve(&offered, &req(0, range, u64::MAX, u32::MAX)).is_error());
    assert!(serve(&offered, &req(0, range, 0, 0)).is_error());
    assert_eq!(serve(&offered, &req(0, range, 8, u32::MAX)).data(), b"89");
    let size = serve(&offered, &req(0, FileContentsFlags::SIZE, 0, 8));
    assert_eq!(size.data_as_size().unwrap(), 10);
    assert!(serve(&[], &req(0, FileContentsFlags::SIZE, 0, 8)).is_error());
}

#[test]
fn text_crosses_both_ways_between_our_client_and_our_server() {
    let (mut client, mut cs, mut server, mut ss) = ready_pair();

    // The client copies: the server asks for it and gets it, line ends as they were.
    let offer_c = offer(&mut client, &mut cs, "one\ntwo".into());
    let (_, at_server) = settle(
        &mut client,
        &mut cs,
        &mut server,
        &mut ss,
        Vec::new(),
        offer_c,
    );
    assert_eq!(at_server.texts, ["one\ntwo"]);

    // The server side offers text: the client fetches it.
    let offer_s = offer(&mut server, &mut ss, "from the target".into());
    let (at_client, _) = settle(
        &mut client,
        &mut cs,
        &mut server,
        &mut ss,
        offer_s,
        Vec::new(),
    );
    assert_eq!(at_client.texts, ["from the target"]);
}

#[test]
fn hostile_channel_bytes_are_harmless() {
    let mut x: u32 = 0x9e37_79b9;
    for len in 0..600 {
        let mut data: Vec<u8> = (0..len % 200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect();
        // Now and then a plausible channel header (length, first and last chunk).
        if len % 3 == 0 && data.len() >= 8 {
            let n = u32::try_from(data.len() - 8).unwrap();
            data[..4].copy_from_slice(&n.to_le_bytes());
            data[4..8].copy_from_slice(&3u32.to_le_bytes());
        }
        fuzz_channel_bytes(&data);
    }
}

#[test]
fn line_ends_cross_both_ways() {
    assert_eq!(to_wire("a\nb\r\nc"), "a\r\nb\r\nc");
    assert_eq!(from_wire("a\r\nb\nc"), "a\nb\nc");
    assert_eq!(from_wire(&to_wire("x\ny\n")), "x\ny\n");
}
