//! Handlers that outlive their connection, and the graceful drain: a peer that goes away
//! while its message is being handled does not cut the handler short (the default
//! policy; the `Abort` opt-out does), a drain stops accepting, answers new messages through
//! the drain hook, lets in-flight handlers finish and reports; a handler still running at
//! the drain deadline is aborted and counted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{init_tracing, request, response_to, ToyCorrelator};
use futures::SinkExt;
use isoswitch_net::{
    Client, ClientConfig, CloseReason, DisconnectPolicy, Frame, Framing, NetError, Request, Server,
    ServerConfig, TcpConnector,
};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_util::codec::Framed;

const LONG: Duration = Duration::from_secs(60);

/// What became of the slow handler.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Finished,
    Dropped,
}

/// Sends `Dropped` unless disarmed: tells a handler cut short from one that finished.
struct Witness(Option<mpsc::UnboundedSender<Fate>>);

impl Drop for Witness {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Fate::Dropped);
        }
    }
}

/// A peer that sends one slow request and 200 fast ones whose 60 KB replies it never
/// reads: the server's writes stall and time out while the slow handler is still waiting
/// for its gate. Returns what became of the slow handler.
async fn peer_stops_reading(policy: DisconnectPolicy) -> Fate {
    let gate = Arc::new(Notify::new());
    let (fate_tx, mut fate) = mpsc::unbounded_channel();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let g = gate.clone();
    let handler = move |req: Request| {
        let (gate, fate_tx, started_tx) = (g.clone(), fate_tx.clone(), started_tx.clone());
        async move {
            if req.payload().ends_with(b"slow") {
                let mut witness = Witness(Some(fate_tx));
                let _ = started_tx.send(());
                gate.notified().await;
                if let Some(tx) = witness.0.take() {
                    let _ = tx.send(Fate::Finished);
                }
                return Some(Frame::new(response_to(req.payload())));
            }
            let mut big = response_to(req.payload()).to_vec();
            big.resize(60_000, b'x');
            Some(Frame::new(big))
        }
    };
    let config = ServerConfig {
        max_frame_len: 65_535,
        write_timeout: Duration::from_millis(300),
        on_disconnect: policy,
        ..ServerConfig::default()
    };
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let server = Server::bind("127.0.0.1:0", Framing::Len2, config, handler)
        .await
        .unwrap()
        .on_connection_closed(move |_, reason| {
            let _ = closed_tx.send(reason);
        });
    let addr = server.local_addr();
    tokio::spawn(server.serve(std::future::pending()));

    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut peer = Framed::new(stream, Framing::Len2.codec(65_535));
    peer.send(Frame::new(request(0, b"slow"))).await.unwrap();
    tokio::time::timeout(LONG, started.recv())
        .await
        .unwrap()
        .unwrap();
    for n in 1..=200 {
        peer.send(Frame::new(request(n, b"fast"))).await.unwrap();
    }
    // The peer is connected but reads nothing: the server's write times out.
    let reason = tokio::time::timeout(LONG, closed.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(reason, CloseReason::Error(NetError::WriteTimeout { .. })),
        "{reason}"
    );
    gate.notify_one();
    let outcome = tokio::time::timeout(LONG, fate.recv())
        .await
        .unwrap()
        .unwrap();
    drop(peer);
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_runs_to_completion_when_the_peer_goes_away() {
    init_tracing();
    assert_eq!(
        ServerConfig::default().on_disconnect,
        DisconnectPolicy::Finish
    );
    assert_eq!(
        peer_stops_reading(DisconnectPolicy::Finish).await,
        Fate::Finished
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_policy_cuts_the_handler_short() {
    init_tracing();
    assert_eq!(
        peer_stops_reading(DisconnectPolicy::Abort).await,
        Fate::Dropped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_finishes_after_the_peer_resets_the_connection() {
    init_tracing();
    let gate = Arc::new(Notify::new());
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let g = gate.clone();
    let handler = move |req: Request| {
        let (gate, done_tx, started_tx) = (g.clone(), done_tx.clone(), started_tx.clone());
        async move {
            let _ = started_tx.send(());
            gate.notified().await;
            let _ = done_tx.send(req.payload().clone());
            Some(Frame::new(response_to(req.payload())))
        }
    };
    let server = Server::bind(
        "127.0.0.1:0",
        Framing::Len2,
        ServerConfig::default(),
        handler,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let control = server.control();
    tokio::spawn(server.serve(std::future::pending()));
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut peer = Framed::new(stream, Framing::Len2.codec(8192));
    peer.send(Frame::new(request(1, b"pay"))).await.unwrap();
    tokio::time::timeout(LONG, started.recv())
        .await
        .unwrap()
        .unwrap();
    // Reset: the terminal is gone before the handler finishes.
    let stream = peer.into_inner();
    // A zero linger sends a reset on close and does not block.
    #[allow(deprecated)]
    stream.set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
    gate.notify_one();
    let finished = tokio::time::timeout(LONG, done.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished, request(1, b"pay"));
    tokio::time::timeout(LONG, async {
        while control.connections() > 0 || control.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the connection closes once its handler is done");
}

fn client_config() -> ClientConfig {
    let mut c = ClientConfig::new(Framing::Len2);
    c.reconnect = None;
    c
}

/// The drain hook's answer: the request's key with body `retry`.
fn retry(req: &Request) -> Option<Frame> {
    let mut b = response_to(req.payload()).to_vec();
    b.truncate(9);
    b.extend_from_slice(b"retry");
    Some(Frame::new(Bytes::from(b)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_in_flight_answers_new_messages_and_refuses_connections() {
    init_tracing();
    let gate = Arc::new(Notify::new());
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let g = gate.clone();
    let handler = move |req: Request| {
        let (gate, started_tx) = (g.clone(), started_tx.clone());
        async move {
            let _ = started_tx.send(());
            gate.notified().await;
            Some(Frame::new(response_to(req.payload())))
        }
    };
    let server = Server::bind(
        "127.0.0.1:0",
        Framing::Len2,
        ServerConfig::default(),
        handler,
    )
    .await
    .unwrap()
    .answer_while_draining(retry);
    let addr = server.local_addr();
    let control = server.control();
    let serving = tokio::spawn(server.serve(std::future::pending()));
    let client = Client::builder(client_config(), ToyCorrelator)
        .connect(TcpConnector::new(addr.to_string()))
        .await
        .unwrap();
    let c = client.clone();
    let in_flight = tokio::spawn(async move { c.request(request(1, b"pay"), LONG).await });
    tokio::time::timeout(LONG, started.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(!control.is_draining());
    assert_eq!(control.in_flight(), 1);

    control.begin_drain(LONG);
    tokio::time::timeout(LONG, async {
        while !control.is_draining() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    // No new connections.
    assert!(TcpStream::connect(addr).await.is_err());
    // A new message on the open connection is answered by the drain hook, not the handler.
    let answered = client.request(request(2, b"pay"), LONG).await.unwrap();
    assert_eq!(&answered[9..], b"retry");
    assert_eq!(control.in_flight(), 1, "the hook did not call the handler");
    // The in-flight one finishes normally.
    gate.notify_one();
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        response_to(&request(1, b"pay"))
    );
    let report = tokio::time::timeout(LONG, control.stopped()).await.unwrap();
    assert!(report.completed, "{report:?}");
    assert_eq!(
        (report.aborted_handlers, report.aborted_connections),
        (0, 0)
    );
    serving.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_aborts_what_is_still_running_and_says_so() {
    init_tracing();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let handler = move |_req: Request| {
        let started_tx = started_tx.clone();
        async move {
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
            None
        }
    };
    let server = Server::bind(
        "127.0.0.1:0",
        Framing::Len2,
        ServerConfig::default(),
        handler,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let control = server.control();
    tokio::spawn(server.serve(std::future::pending()));
    let client = Client::builder(client_config(), ToyCorrelator)
        .connect(TcpConnector::new(addr.to_string()))
        .await
        .unwrap();
    let c = client.clone();
    let stuck = tokio::spawn(async move { c.request(request(1, b"stuck"), LONG).await });
    tokio::time::timeout(LONG, started.recv())
        .await
        .unwrap()
        .unwrap();
    let report = tokio::time::timeout(LONG, control.drain(Duration::from_millis(200)))
        .await
        .unwrap();
    assert!(!report.completed);
    assert_eq!(
        (report.aborted_handlers, report.aborted_connections),
        (1, 1)
    );
    assert_eq!(control.in_flight(), 0);
    // The request was sent and never answered: maybe delivered.
    let outcome = stuck.await.unwrap();
    assert!(
        outcome.as_ref().is_err_and(|e| e.maybe_delivered()),
        "{outcome:?}"
    );
}
