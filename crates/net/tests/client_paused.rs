//! Client behaviour under paused time over in-memory duplex streams: per-request timeouts,
//! late and unsolicited messages, backpressure, write timeouts, echo, reconnect, close.

mod common;

use std::io;
use std::time::Duration;

use bytes::Bytes;
use common::{init_tracing, key_of, request, response_to, ToyCorrelator};
use futures::{SinkExt, StreamExt};
use isoswitch_net::{
    Client, ClientConfig, ConnState, Connector, EchoConfig, Frame, FrameCodec, Framing, NetError,
    ReconnectPolicy, RejectReason, RequestError, Unmatched, UnmatchedKind,
};
use tokio::io::DuplexStream;
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;
use tokio_util::codec::Framed;

/// Hands out pre-loaded connect results, in order; refuses when none is left.
struct DuplexConnector {
    results: Mutex<mpsc::UnboundedReceiver<io::Result<DuplexStream>>>,
}

impl Connector for DuplexConnector {
    type Stream = DuplexStream;

    async fn connect(&self) -> io::Result<DuplexStream> {
        let mut rx = self.results.lock().await;
        match rx.try_recv() {
            Ok(r) => r,
            Err(_) => Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
        }
    }
}

type Peer = Framed<DuplexStream, FrameCodec>;

/// A connector plus a way to add more connect results to it.
fn connector() -> (
    DuplexConnector,
    mpsc::UnboundedSender<io::Result<DuplexStream>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        DuplexConnector {
            results: Mutex::new(rx),
        },
        tx,
    )
}

/// Queues one connection on `tx` and returns the peer's end.
fn offer(tx: &mpsc::UnboundedSender<io::Result<DuplexStream>>, buffer: usize) -> Peer {
    let (client_end, peer_end) = tokio::io::duplex(buffer);
    tx.send(Ok(client_end)).unwrap();
    Framed::new(peer_end, Framing::Len2.codec(4096))
}

fn config() -> ClientConfig {
    let mut c = ClientConfig::new(Framing::Len2);
    c.max_frame_len = 4096;
    c.reconnect = None;
    c
}

/// The next message the client wrote. The long guard turns a would-be hang into a failure
/// (paused time jumps straight to it when nothing else can happen).
async fn next_payload(peer: &mut Peer) -> Bytes {
    tokio::time::timeout(Duration::from_secs(24 * 3600), peer.next())
        .await
        .expect("the client never wrote")
        .expect("peer stream ended")
        .expect("peer decode")
        .payload
}

async fn reply(peer: &mut Peer, payload: Bytes) {
    peer.send(Frame::new(payload)).await.expect("peer send");
}

#[tokio::test(start_paused = true)]
async fn timeouts_fire_per_request_and_late_responses_are_reported() {
    init_tracing();
    let (conn, tx) = connector();
    let mut peer = offer(&tx, 64 * 1024);
    let (utx, mut urx) = mpsc::channel::<Unmatched>(16);
    let client = Client::builder(config(), ToyCorrelator)
        .unmatched(utx)
        .connect(conn)
        .await
        .unwrap();
    let start = Instant::now();

    let spawn = |n: u64, secs: u64| {
        let c = client.clone();
        tokio::spawn(async move {
            let r = c
                .request(request(n, b"body"), Duration::from_secs(secs))
                .await;
            (r, start.elapsed())
        })
    };
    let r1 = spawn(1, 1);
    let r2 = spawn(2, 5);
    let r3 = spawn(3, 10);

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_payload(&mut peer).await);
    }
    seen.sort_by_key(|m| key_of(m));
    tokio::time::sleep(Duration::from_secs(3)).await;
    reply(&mut peer, response_to(&seen[1])).await;

    let (out1, t1) = r1.await.unwrap();
    assert!(matches!(out1, Err(RequestError::Timeout)), "{out1:?}");
    assert!(
        t1 >= Duration::from_secs(1) && t1 < Duration::from_secs(2),
        "{t1:?}"
    );
    let (out2, _) = r2.await.unwrap();
    assert_eq!(out2.unwrap(), response_to(&seen[1]));
    let (out3, t3) = r3.await.unwrap();
    assert!(matches!(out3, Err(RequestError::Timeout)));
    assert!(
        t3 >= Duration::from_secs(10) && t3 < Duration::from_secs(11),
        "{t3:?}"
    );
    assert!(out3.unwrap_err().maybe_delivered());

    // The response to #3 arrives late, then a host-initiated message.
    reply(&mut peer, response_to(&seen[2])).await;
    reply(&mut peer, Bytes::from_static(b"U00000000hello")).await;
    let late = urx.recv().await.unwrap();
    assert_eq!(late.kind, UnmatchedKind::Late);
    assert_eq!(key_of(&late.frame.payload), 3);
    let unsolicited = urx.recv().await.unwrap();
    assert_eq!(unsolicited.kind, UnmatchedKind::Unsolicited);
    assert_eq!(&unsolicited.frame.payload[..], b"U00000000hello");

    let m = client.metrics();
    assert_eq!(
        (
            m.sent,
            m.received,
            m.matched,
            m.timeouts,
            m.late,
            m.unsolicited
        ),
        (3, 3, 1, 2, 1, 1)
    );
    assert_eq!(client.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn rejections_are_explicit_and_not_sent() {
    let (conn, tx) = connector();
    let mut peer = offer(&tx, 64 * 1024);
    let client = Client::builder(config(), ToyCorrelator)
        .connect(conn)
        .await
        .unwrap();

    // Duplicate key while the first is in flight.
    let c = client.clone();
    let first =
        tokio::spawn(async move { c.request(request(7, b"a"), Duration::from_secs(30)).await });
    let got = next_payload(&mut peer).await;
    let dup = client
        .request(request(7, b"b"), Duration::from_secs(30))
        .await;
    assert!(matches!(
        dup,
        Err(RequestError::Rejected(RejectReason::DuplicateKey(_)))
    ));
    reply(&mut peer, response_to(&got)).await;
    assert_eq!(first.await.unwrap().unwrap(), response_to(&got));

    // No key, too large, empty: rejected before anything is written.
    let no_key = client
        .request(Bytes::from_static(b"Xnope"), Duration::from_secs(1))
        .await;
    assert!(matches!(
        no_key,
        Err(RequestError::Rejected(RejectReason::Invalid(
            NetError::NoCorrelationKey { .. }
        )))
    ));
    let big = client
        .request(request(8, &[0u8; 5000]), Duration::from_secs(1))
        .await;
    assert!(matches!(
        big,
        Err(RequestError::Rejected(RejectReason::Invalid(
            NetError::FrameTooLarge { .. }
        )))
    ));
    let err = big.unwrap_err();
    assert!(!err.maybe_delivered());

    // A caller that gives up (drops its future) frees the key; the answer counts as late.
    let c = client.clone();
    let abandoned =
        tokio::spawn(async move { c.request(request(9, b"x"), Duration::from_secs(30)).await });
    let got = next_payload(&mut peer).await;
    abandoned.abort();
    let _ = abandoned.await;
    assert_eq!(client.in_flight(), 0);
    reply(&mut peer, response_to(&got)).await;
    while client.metrics().late == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The key can be reused once the late answer is out of the way.
    let c = client.clone();
    let again =
        tokio::spawn(async move { c.request(request(9, b"y"), Duration::from_secs(30)).await });
    let got2 = next_payload(&mut peer).await;
    assert_eq!(key_of(&got2), 9);
    reply(&mut peer, response_to(&got2)).await;
    assert_eq!(again.await.unwrap().unwrap(), response_to(&got2));
    let m = client.metrics();
    assert_eq!(m.late, 1);
    assert_eq!(m.rejected, 3);
    assert_eq!(m.sent, 3);
}

#[tokio::test(start_paused = true)]
async fn in_flight_cap_applies_backpressure() {
    let (conn, tx) = connector();
    let mut peer = offer(&tx, 64 * 1024);
    let mut cfg = config();
    cfg.max_in_flight = 2;
    let client = Client::builder(cfg, ToyCorrelator)
        .connect(conn)
        .await
        .unwrap();

    let mut handles = Vec::new();
    for n in 1..=3 {
        let c = client.clone();
        handles.push(tokio::spawn(async move {
            c.request(request(n, b""), Duration::from_secs(60)).await
        }));
    }
    let a = next_payload(&mut peer).await;
    let b = next_payload(&mut peer).await;
    // The third waits for a slot: nothing more is written.
    let third = tokio::time::timeout(Duration::from_secs(5), peer.next()).await;
    assert!(third.is_err(), "third request written beyond the cap");
    assert_eq!(client.in_flight(), 2);
    // Waiting for a slot is bounded by the request's own deadline.
    let busy = client
        .request(request(4, b""), Duration::from_secs(1))
        .await;
    assert!(matches!(
        busy,
        Err(RequestError::Rejected(RejectReason::Busy))
    ));

    reply(&mut peer, response_to(&a)).await;
    let c = next_payload(&mut peer).await;
    reply(&mut peer, response_to(&b)).await;
    reply(&mut peer, response_to(&c)).await;
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(client.metrics().matched, 3);
}

#[tokio::test(start_paused = true)]
async fn dead_peer_write_timeout_separates_maybe_sent_from_not_sent() {
    init_tracing();
    let (conn, tx) = connector();
    // A tiny pipe that the peer never reads: the first write blocks.
    let peer = offer(&tx, 16);
    let mut cfg = config();
    cfg.write_timeout = Duration::from_secs(5);
    let client = Client::builder(cfg, ToyCorrelator)
        .connect(conn)
        .await
        .unwrap();

    let c = client.clone();
    let first = tokio::spawn(async move {
        c.request(request(1, &[b'x'; 100]), Duration::from_secs(60))
            .await
    });
    while client.metrics().sent == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Queued behind the blocked write: never handed to the socket.
    let c = client.clone();
    let second =
        tokio::spawn(async move { c.request(request(2, b"y"), Duration::from_secs(60)).await });

    let first = first.await.unwrap();
    assert!(
        matches!(first, Err(RequestError::ConnectionLost)),
        "{first:?}"
    );
    assert!(first.unwrap_err().maybe_delivered());
    let second = second.await.unwrap();
    assert!(
        matches!(
            second,
            Err(RequestError::Rejected(RejectReason::NotConnected))
        ),
        "{second:?}"
    );
    // Without a reconnect policy the client is now closed.
    client
        .wait_connected(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(client.state(), ConnState::Closed);
    let after = client
        .request(request(3, b"z"), Duration::from_secs(1))
        .await;
    assert!(matches!(
        after,
        Err(RequestError::Rejected(RejectReason::Closed))
    ));
    drop(peer);
}

#[tokio::test(start_paused = true)]
async fn idle_echo_keeps_link_and_failed_echo_reconnects() {
    init_tracing();
    let (conn, tx) = connector();
    let mut peer1 = offer(&tx, 64 * 1024);
    let mut peer2 = offer(&tx, 64 * 1024);
    let mut cfg = config();
    cfg.reconnect = Some(ReconnectPolicy {
        initial_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(1),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts: Some(3),
    });
    let echo = EchoConfig {
        idle: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
    };
    let client = Client::builder(cfg, ToyCorrelator)
        .echo(echo, || request(99_999_999, b"ECHO"))
        .connect(conn)
        .await
        .unwrap();
    let start = Instant::now();

    // First echo after 30 s idle: answered.
    let e1 = next_payload(&mut peer1).await;
    assert_eq!(&e1[9..], b"ECHO");
    let t = start.elapsed();
    assert!(
        t >= Duration::from_secs(30) && t < Duration::from_secs(31),
        "{t:?}"
    );
    reply(&mut peer1, response_to(&e1)).await;
    // Second echo: not answered, so the link is dropped after 5 s and re-established.
    let e2 = next_payload(&mut peer1).await;
    assert_eq!(key_of(&e2), 99_999_999);
    assert!(peer1.next().await.is_none(), "client closes the dead link");
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    let m = client.metrics();
    assert_eq!((m.connects, m.echoes, m.timeouts), (2, 2, 1));

    // The new link works.
    let c = client.clone();
    let r = tokio::spawn(async move {
        c.request(request(5, b"after"), Duration::from_secs(10))
            .await
    });
    let got = next_payload(&mut peer2).await;
    reply(&mut peer2, response_to(&got)).await;
    assert_eq!(r.await.unwrap().unwrap(), response_to(&got));
}

#[tokio::test(start_paused = true)]
async fn reconnect_backs_off_exponentially_then_gives_up() {
    let (conn, tx) = connector();
    for _ in 0..3 {
        tx.send(Err(io::Error::from(io::ErrorKind::ConnectionRefused)))
            .unwrap();
    }
    let mut peer = offer(&tx, 64 * 1024);
    let mut cfg = config();
    cfg.reconnect = Some(ReconnectPolicy {
        initial_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
        multiplier: 2.0,
        jitter: 0.0,
        max_attempts: Some(4),
    });
    let start = Instant::now();
    let client = Client::builder(cfg, ToyCorrelator).spawn(conn).unwrap();
    client
        .wait_connected(Duration::from_secs(60))
        .await
        .unwrap();
    // Three failures: waits of 1 + 2 + 4 seconds.
    let t = start.elapsed();
    assert!(
        t >= Duration::from_secs(7) && t < Duration::from_secs(8),
        "{t:?}"
    );
    assert_eq!(client.metrics().connect_failures, 3);

    let c = client.clone();
    let r = tokio::spawn(async move { c.request(request(1, b""), Duration::from_secs(10)).await });
    let got = next_payload(&mut peer).await;
    reply(&mut peer, response_to(&got)).await;
    r.await.unwrap().unwrap();

    // Lose the link; no more connections are offered: after 4 failed attempts it gives up.
    drop(peer);
    let closed = tokio::time::timeout(Duration::from_secs(120), async {
        while client.state() != ConnState::Closed {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "client never gave up");
    assert_eq!(client.metrics().connect_failures, 3 + 4);
    let r = client
        .request(request(2, b""), Duration::from_secs(1))
        .await;
    assert!(matches!(
        r,
        Err(RequestError::Rejected(RejectReason::Closed))
    ));
}

#[tokio::test(start_paused = true)]
async fn graceful_close_drains_then_fails_the_rest() {
    let (conn, tx) = connector();
    let mut peer = offer(&tx, 64 * 1024);
    let client = Client::builder(config(), ToyCorrelator)
        .connect(conn)
        .await
        .unwrap();
    let mut reqs = Vec::new();
    for n in 1..=2 {
        let c = client.clone();
        reqs.push(tokio::spawn(async move {
            c.request(request(n, b""), Duration::from_secs(60)).await
        }));
    }
    let mut got = [next_payload(&mut peer).await, next_payload(&mut peer).await];
    got.sort_by_key(|m| key_of(m));

    let c = client.clone();
    let closing = tokio::spawn(async move { c.close(Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // New requests are refused while draining.
    let late = client
        .request(request(3, b""), Duration::from_secs(1))
        .await;
    assert!(matches!(
        late,
        Err(RequestError::Rejected(RejectReason::Closed))
    ));
    // One request completes within the drain period, the other does not.
    reply(&mut peer, response_to(&got[0])).await;
    closing.await.unwrap();
    assert_eq!(client.state(), ConnState::Closed);
    let r2 = reqs.pop().unwrap().await.unwrap();
    let r1 = reqs.pop().unwrap().await.unwrap();
    assert_eq!(r1.unwrap(), response_to(&got[0]));
    assert!(matches!(r2, Err(RequestError::ConnectionLost)));
    assert!(peer.next().await.is_none(), "socket closed");
}

#[tokio::test(start_paused = true)]
async fn full_unmatched_channel_is_counted_not_silent() {
    let (conn, tx) = connector();
    let mut peer = offer(&tx, 64 * 1024);
    let (utx, mut urx) = mpsc::channel::<Unmatched>(1);
    let client = Client::builder(config(), ToyCorrelator)
        .unmatched(utx)
        .connect(conn)
        .await
        .unwrap();
    for _ in 0..3 {
        reply(&mut peer, Bytes::from_static(b"U00000001host")).await;
    }
    // A request round trip proves the three were processed.
    let c = client.clone();
    let r = tokio::spawn(async move { c.request(request(1, b""), Duration::from_secs(10)).await });
    let got = next_payload(&mut peer).await;
    reply(&mut peer, response_to(&got)).await;
    r.await.unwrap().unwrap();
    let m = client.metrics();
    assert_eq!((m.unsolicited, m.unmatched_dropped), (3, 2));
    assert_eq!(urx.recv().await.unwrap().kind, UnmatchedKind::Unsolicited);
}

#[tokio::test(start_paused = true)]
async fn hostile_peer_frame_drops_the_link_not_the_client() {
    use tokio::io::AsyncWriteExt;
    init_tracing();
    let (conn, tx) = connector();
    let peer = offer(&tx, 64 * 1024);
    let mut peer2 = offer(&tx, 64 * 1024);
    let mut cfg = config();
    cfg.reconnect = Some(ReconnectPolicy {
        initial_delay: Duration::from_secs(1),
        jitter: 0.0,
        ..ReconnectPolicy::default()
    });
    let client = Client::builder(cfg, ToyCorrelator)
        .connect(conn)
        .await
        .unwrap();
    let c = client.clone();
    let pending =
        tokio::spawn(async move { c.request(request(1, b""), Duration::from_secs(60)).await });
    let mut peer = peer;
    next_payload(&mut peer).await;
    // A length prefix far over the client's 4 KiB maximum.
    let mut raw = peer.into_inner();
    raw.write_all(&[0xFF, 0xFF, 0x00]).await.unwrap();
    let outcome = pending.await.unwrap();
    assert!(
        matches!(outcome, Err(RequestError::ConnectionLost)),
        "{outcome:?}"
    );
    // The client reconnects and carries on.
    client
        .wait_connected(Duration::from_secs(60))
        .await
        .unwrap();
    let c = client.clone();
    let r = tokio::spawn(async move { c.request(request(2, b""), Duration::from_secs(60)).await });
    let got = next_payload(&mut peer2).await;
    reply(&mut peer2, response_to(&got)).await;
    r.await.unwrap().unwrap();
    assert_eq!(client.metrics().connects, 2);
}

#[tokio::test(start_paused = true)]
async fn idle_echo_does_not_cut_a_drain_short() {
    let (conn, tx) = connector();
    let mut peer = offer(&tx, 64 * 1024);
    let echo = EchoConfig {
        idle: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
    };
    let client = Client::builder(config(), ToyCorrelator)
        .echo(echo, || request(99_999_999, b"ECHO"))
        .connect(conn)
        .await
        .unwrap();
    let c = client.clone();
    let r = tokio::spawn(async move { c.request(request(1, b""), Duration::from_secs(120)).await });
    let got = next_payload(&mut peer).await;
    let c = client.clone();
    let closing = tokio::spawn(async move { c.close(Duration::from_secs(60)).await });
    // Idle well past the echo period while draining; then the answer arrives.
    tokio::time::sleep(Duration::from_secs(30)).await;
    reply(&mut peer, response_to(&got)).await;
    assert_eq!(r.await.unwrap().unwrap(), response_to(&got));
    closing.await.unwrap();
    assert_eq!(client.state(), ConnState::Closed);
    let m = client.metrics();
    assert_eq!((m.echoes, m.connection_lost, m.matched), (1, 0, 1));
}
