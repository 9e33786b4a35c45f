//! Client and server over real loopback sockets (127.0.0.1): multiplexing under shuffled
//! responses, connection loss mid-flight, reconnect, `cup-pos` headers, rate limiting,
//! connection cap and graceful shutdown. Timeouts are generous; nothing asserts timing.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{init_tracing, key_of, request, response_to, ToyCorrelator};
use futures::{SinkExt, StreamExt};
use isoswitch_net::{
    Client, ClientConfig, CloseReason, ConnState, ConnectionInfo, CorrelationKey, CupHeader, Frame,
    Framing, Handler, NetError, RateLimit, ReconnectPolicy, RequestError, Server, ServerConfig,
    ServerMetrics, TcpConnector, Tpdu,
};
use rand::seq::SliceRandom;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::Framed;

const LONG: Duration = Duration::from_secs(60);

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), NetError>>,
    metrics: Arc<ServerMetrics>,
}

impl Running {
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(LONG, self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

async fn start<H: Handler>(server: Server<H>) -> Running {
    let addr = server.local_addr();
    let metrics = server.metrics();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
        metrics,
    }
}

fn client_config(framing: Framing) -> ClientConfig {
    let mut c = ClientConfig::new(framing);
    c.reconnect = None;
    c.connect_timeout = LONG;
    c.write_timeout = LONG;
    c
}

/// The next frame from the client, bounded so that a failure cannot hang the test.
async fn recv(peer: &mut Framed<TcpStream, isoswitch_net::FrameCodec>) -> Frame {
    tokio::time::timeout(LONG, peer.next())
        .await
        .expect("the client never wrote")
        .expect("client closed")
        .expect("decode")
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let ok = tokio::time::timeout(LONG, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for {what}");
}

/// Answers requests in batches of `BATCH`, each released in a shuffled order.
fn shuffling_handler(
    permuted: Arc<AtomicU64>,
) -> impl Fn(isoswitch_net::Request) -> futures::future::BoxFuture<'static, Option<Frame>>
       + Send
       + Sync
       + 'static {
    const BATCH: usize = 50;
    let (tx, mut rx) = mpsc::channel::<(Bytes, oneshot::Sender<Bytes>)>(1024);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(item) = rx.recv().await {
            batch.push(item);
            if batch.len() < BATCH {
                continue;
            }
            let mut order: Vec<usize> = (0..BATCH).collect();
            order.shuffle(&mut rand::thread_rng());
            if order.windows(2).all(|w| w[0] < w[1]) {
                order.reverse();
            }
            permuted.fetch_add(1, Ordering::Relaxed);
            let mut slots: Vec<Option<(Bytes, oneshot::Sender<Bytes>)>> =
                batch.drain(..).map(Some).collect();
            for i in order {
                if let Some((req, reply)) = slots[i].take() {
                    let _ = reply.send(response_to(&req));
                }
            }
        }
    });
    move |req: isoswitch_net::Request| {
        let tx = tx.clone();
        Box::pin(async move {
            let (otx, orx) = oneshot::channel();
            tx.send((req.frame.payload, otx)).await.ok()?;
            orx.await.ok().map(Frame::new)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_requests_matched_under_shuffled_responses() {
    init_tracing();
    const N: u64 = 10_000;
    let permuted = Arc::new(AtomicU64::new(0));
    let cfg = ServerConfig {
        max_in_flight_per_connection: N as usize,
        write_queue: 1024,
        idle_timeout: LONG,
        ..ServerConfig::default()
    };
    let server = Server::bind(
        "127.0.0.1:0",
        Framing::Len2,
        cfg,
        shuffling_handler(permuted.clone()),
    )
    .await
    .unwrap();
    let srv = start(server).await;

    let mut ccfg = client_config(Framing::Len2);
    ccfg.max_in_flight = N as usize;
    ccfg.write_queue = 1024;
    let client = Client::builder(ccfg, ToyCorrelator)
        .connect(TcpConnector::new(srv.addr.to_string()))
        .await
        .unwrap();

    let mut set = JoinSet::new();
    for n in 0..N {
        let c = client.clone();
        set.spawn(async move {
            let body = format!("body-{n}-{}", n.wrapping_mul(7919));
            let req = request(n, body.as_bytes());
            let resp = c.request(req.clone(), LONG).await;
            (req, resp)
        });
    }
    let mut ok = 0u64;
    while let Some(joined) = set.join_next().await {
        let (req, resp) = joined.unwrap();
        let resp = resp.unwrap_or_else(|e| panic!("request {} failed: {e}", key_of(&req)));
        assert_eq!(
            resp,
            response_to(&req),
            "response matched to the wrong request"
        );
        ok += 1;
    }
    assert_eq!(ok, N);
    assert_eq!(permuted.load(Ordering::Relaxed), N / 50);
    let m = client.metrics();
    assert_eq!((m.sent, m.matched, m.late, m.timeouts), (N, N, 0, 0));
    assert_eq!(client.in_flight(), 0);
    assert_eq!(srv.metrics.snapshot().frames_in, N);
    client.close(LONG).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn server_closing_mid_flight_loses_exactly_the_unanswered_requests() {
    init_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = Client::builder(client_config(Framing::Len2), ToyCorrelator)
        .connect(TcpConnector::new(addr.to_string()))
        .await
        .unwrap();
    let (sock, _) = listener.accept().await.unwrap();
    let mut peer = Framed::new(sock, Framing::Len2.codec(4096));

    let mut set = JoinSet::new();
    for n in 0..20u64 {
        let c = client.clone();
        set.spawn(async move { (n, c.request(request(n, b"x"), LONG).await) });
    }
    for _ in 0..20 {
        let f = recv(&mut peer).await;
        if key_of(&f.payload) % 2 == 0 {
            peer.send(Frame::new(response_to(&f.payload)))
                .await
                .unwrap();
        }
    }
    eventually("the answered half", || client.metrics().matched == 10).await;
    drop(peer);

    while let Some(joined) = set.join_next().await {
        let (n, outcome) = joined.unwrap();
        if n % 2 == 0 {
            assert_eq!(outcome.unwrap(), response_to(&request(n, b"x")));
        } else {
            let err = outcome.unwrap_err();
            assert!(matches!(err, RequestError::ConnectionLost), "{n}: {err:?}");
            assert!(err.maybe_delivered());
        }
    }
    assert_eq!(client.metrics().connection_lost, 10);
}

#[tokio::test]
async fn client_reconnects_after_the_server_drops_the_link() {
    init_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = client_config(Framing::Len2);
    cfg.reconnect = Some(ReconnectPolicy {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..ReconnectPolicy::default()
    });
    let client = Client::builder(cfg, ToyCorrelator)
        .connect(TcpConnector::new(addr.to_string()))
        .await
        .unwrap();

    for round in 0..3u64 {
        let (sock, _) = tokio::time::timeout(LONG, listener.accept())
            .await
            .expect("client did not (re)connect")
            .unwrap();
        let mut peer = Framed::new(sock, Framing::Len2.codec(4096));
        eventually("connection", || client.metrics().connects == round + 1).await;
        let c = client.clone();
        let r = tokio::spawn(async move { c.request(request(round, b"r"), LONG).await });
        let f = recv(&mut peer).await;
        peer.send(Frame::new(response_to(&f.payload)))
            .await
            .unwrap();
        assert_eq!(
            r.await.unwrap().unwrap(),
            response_to(&request(round, b"r"))
        );
        drop(peer);
    }
    assert_eq!(client.metrics().matched, 3);
}

#[tokio::test]
async fn cup_pos_reply_swaps_tpdu_and_carries_sign_on_flag() {
    init_tracing();
    let seen: Arc<Mutex<Vec<ConnectionInfo>>> = Arc::default();
    let seen2 = seen.clone();
    let handler = move |req: isoswitch_net::Request| {
        seen2.lock().unwrap().push((*req.conn).clone());
        async move {
            let resp = response_to(req.payload());
            if req.payload().ends_with(b"SIGNON?") {
                let header = req.header().map(CupHeader::reply_sign_on_again)?;
                Some(Frame::with_header(header, resp))
            } else {
                // No header: the server fills in the swapped one.
                Some(Frame::new(resp))
            }
        }
    };
    let server = Server::bind(
        "127.0.0.1:0",
        Framing::CupPos,
        ServerConfig::default(),
        handler,
    )
    .await
    .unwrap();
    let srv = start(server).await;

    let mut cfg = client_config(Framing::CupPos);
    cfg.cup_header.tpdu = Tpdu {
        id: 0x60,
        destination: [0x00, 0x03],
        source: [0x01, 0x02],
    };
    let client = Client::builder(cfg, ToyCorrelator)
        .connect(TcpConnector::new(srv.addr.to_string()))
        .await
        .unwrap();

    let plain = client
        .request_frame(Frame::new(request(1, b"sale")), LONG)
        .await
        .unwrap();
    let h = plain.header.expect("cup-pos header");
    assert_eq!(h.tpdu.to_bytes(), [0x60, 0x01, 0x02, 0x00, 0x03]);
    assert!(!h.app.requires_sign_on());
    assert_eq!(plain.payload, response_to(&request(1, b"sale")));

    let signon = client
        .request_frame(Frame::new(request(2, b"SIGNON?")), LONG)
        .await
        .unwrap();
    let h = signon.header.expect("cup-pos header");
    assert_eq!(h.tpdu.to_bytes(), [0x60, 0x01, 0x02, 0x00, 0x03]);
    assert!(h.app.requires_sign_on());

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].id, 1);
    assert_eq!(seen[0].local_addr, srv.addr);
    assert_eq!(seen[0].framing, Framing::CupPos);
    client.close(LONG).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn rate_limit_is_per_terminal_and_answered_by_the_hook() {
    init_tracing();
    // Terminal id: the 4 bytes after the key. Two messages per terminal, practically no
    // refill during the test.
    let limit = RateLimit::new(
        0.0001,
        2,
        |f: &Frame| {
            f.payload
                .get(9..13)
                .and_then(|t| CorrelationKey::new(t).ok())
        },
        |req: &isoswitch_net::Request| {
            let mut b = BytesMut::new();
            b.put_u8(b'R');
            b.put_slice(&req.payload()[1..9]);
            b.put_slice(b"LIMITED");
            Some(Frame::new(b.freeze()))
        },
    );
    let handler =
        |req: isoswitch_net::Request| async move { Some(Frame::new(response_to(req.payload()))) };
    let server = Server::bind(
        "127.0.0.1:0",
        Framing::Len2,
        ServerConfig::default(),
        handler,
    )
    .await
    .unwrap()
    .with_rate_limit(limit);
    let srv = start(server).await;
    let client = Client::builder(client_config(Framing::Len2), ToyCorrelator)
        .connect(TcpConnector::new(srv.addr.to_string()))
        .await
        .unwrap();

    let mut answers = Vec::new();
    for n in 0..4u64 {
        answers.push(client.request(request(n, b"T001"), LONG).await.unwrap());
    }
    let other = client.request(request(10, b"T002"), LONG).await.unwrap();
    assert_eq!(answers[0], response_to(&request(0, b"T001")));
    assert_eq!(answers[1], response_to(&request(1, b"T001")));
    assert_eq!(&answers[2][9..], b"LIMITED");
    assert_eq!(&answers[3][9..], b"LIMITED");
    assert_eq!(other, response_to(&request(10, b"T002")));
    assert_eq!(srv.metrics.snapshot().rate_limited, 2);
    client.close(LONG).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_maximum_are_refused() {
    init_tracing();
    let handler =
        |req: isoswitch_net::Request| async move { Some(Frame::new(response_to(req.payload()))) };
    let cfg = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let server = Server::bind("127.0.0.1:0", Framing::Len2, cfg, handler)
        .await
        .unwrap();
    let srv = start(server).await;
    let client = Client::builder(client_config(Framing::Len2), ToyCorrelator)
        .connect(TcpConnector::new(srv.addr.to_string()))
        .await
        .unwrap();
    client.request(request(1, b""), LONG).await.unwrap();

    let mut extra = TcpStream::connect(srv.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(LONG, extra.read(&mut buf))
        .await
        .expect("extra connection left open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(srv.metrics.snapshot().refused, 1);
    // The first connection is unaffected.
    client.request(request(2, b""), LONG).await.unwrap();
    client.close(LONG).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_then_closes() {
    init_tracing();
    let (started_tx, mut started) = mpsc::channel::<()>(1);
    let handler = move |req: isoswitch_net::Request| {
        let started_tx = started_tx.clone();
        async move {
            let _ = started_tx.send(()).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            Some(Frame::new(response_to(req.payload())))
        }
    };
    let (closed_tx, mut closed) = mpsc::unbounded_channel::<CloseReason>();
    let server = Server::bind(
        "127.0.0.1:0",
        Framing::Len2,
        ServerConfig::default(),
        handler,
    )
    .await
    .unwrap()
    .on_connection_closed(move |_, reason| {
        let _ = closed_tx.send(reason);
    });
    let srv = start(server).await;
    let addr = srv.addr;
    let client = Client::builder(client_config(Framing::Len2), ToyCorrelator)
        .connect(TcpConnector::new(addr.to_string()))
        .await
        .unwrap();
    let c = client.clone();
    let r = tokio::spawn(async move { c.request(request(1, b"slow"), LONG).await });
    tokio::time::timeout(LONG, started.recv())
        .await
        .unwrap()
        .unwrap();
    srv.shutdown().await;

    // The request that was being handled got its answer.
    assert_eq!(r.await.unwrap().unwrap(), response_to(&request(1, b"slow")));
    assert!(matches!(closed.recv().await, Some(CloseReason::Shutdown)));
    // No longer accepting.
    assert!(TcpStream::connect(addr).await.is_err());
    // The client saw the link close (no reconnect configured).
    eventually("client closed", || client.state() == ConnState::Closed).await;
    let after = client.request(request(2, b""), LONG).await;
    assert!(matches!(after, Err(RequestError::Rejected(_))), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iso8583_cup_pos_requests_pair_by_dialect_correlator() {
    use isoswitch_codec::{Dialect, Message, MessageView};
    use isoswitch_net::DialectCorrelator;
    init_tracing();
    let dialect = Dialect::builtin("cup-pos").unwrap();
    let d = dialect.clone();
    // Answers every request with its 0210 after a random delay: out of order.
    let handler = move |req: isoswitch_net::Request| {
        let d = d.clone();
        async move {
            let delay = rand::random::<u64>() % 20;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let request = Message::decode(&d, req.frame.payload.clone()).ok()?;
            let mut response = Message::response_to(&request).ok()?;
            response.set(11, request.get(11)?).ok()?;
            response.set(41, request.get(41)?).ok()?;
            response.set(39, "00").ok()?;
            response.to_bytes().ok().map(Frame::new)
        }
    };
    let server = Server::bind(
        "127.0.0.1:0",
        Framing::CupPos,
        ServerConfig::default(),
        handler,
    )
    .await
    .unwrap();
    let srv = start(server).await;
    let client = Client::builder(
        client_config(Framing::CupPos),
        DialectCorrelator::new(dialect.clone()),
    )
    .connect(TcpConnector::new(srv.addr.to_string()))
    .await
    .unwrap();

    let mut set = JoinSet::new();
    for stan in 1..=200u32 {
        let (c, d) = (client.clone(), dialect.clone());
        set.spawn(async move {
            let mut m = Message::new(&d, "0200".parse().unwrap());
            let terminal = format!("TERM{:04}", stan % 3);
            m.set(3, "000000").unwrap();
            m.set(4, "000000001000").unwrap();
            m.set(11, format!("{stan:06}")).unwrap();
            m.set(41, &terminal).unwrap();
            let resp = c.request(m.to_bytes().unwrap(), LONG).await.unwrap();
            (stan, terminal, resp)
        });
    }
    while let Some(joined) = set.join_next().await {
        let (stan, terminal, resp) = joined.unwrap();
        let view = MessageView::decode(&dialect, &resp).unwrap();
        assert_eq!(view.mti().as_str(), "0210");
        assert_eq!(view.field(11).unwrap().text(), format!("{stan:06}"));
        assert_eq!(view.field(41).unwrap().text(), terminal);
        assert_eq!(view.field(39).unwrap().text(), "00");
    }
    assert_eq!(client.metrics().matched, 200);
    client.close(LONG).await;
    srv.shutdown().await;
}
