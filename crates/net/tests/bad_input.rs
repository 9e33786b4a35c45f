//! Hostile or broken peers against a real server on 127.0.0.1: each case must close the
//! connection with a typed reason, without a panic or an allocation of the claimed size,
//! and leave the server serving others.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use common::{init_tracing, request, response_to, ToyCorrelator};
use isoswitch_net::{
    Client, ClientConfig, CloseReason, Frame, FrameCodec, Framing, NetError, Server, ServerConfig,
    ServerMetrics, TcpConnector,
};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Decoder, Encoder};

const LONG: Duration = Duration::from_secs(60);

struct Harness {
    addr: SocketAddr,
    framing: Framing,
    closed: mpsc::UnboundedReceiver<CloseReason>,
    metrics: Arc<ServerMetrics>,
    _stop: oneshot::Sender<()>,
}

async fn harness(framing: Framing, config: ServerConfig) -> Harness {
    init_tracing();
    let handler =
        |req: isoswitch_net::Request| async move { Some(Frame::new(response_to(req.payload()))) };
    let (tx, closed) = mpsc::unbounded_channel();
    let server = Server::bind("127.0.0.1:0", framing, config, handler)
        .await
        .unwrap()
        .on_connection_closed(move |_, reason| {
            let _ = tx.send(reason);
        });
    let addr = server.local_addr();
    let metrics = server.metrics();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    Harness {
        addr,
        framing,
        closed,
        metrics,
        _stop: stop,
    }
}

fn small() -> ServerConfig {
    ServerConfig {
        max_frame_len: 1024,
        ..ServerConfig::default()
    }
}

impl Harness {
    /// Waits for the next connection close and returns its reason.
    async fn next_close(&mut self) -> CloseReason {
        tokio::time::timeout(LONG, self.closed.recv())
            .await
            .expect("connection not closed")
            .expect("server gone")
    }

    /// A normal client round trip still works.
    async fn still_serving(&self) {
        let mut cfg = ClientConfig::new(self.framing);
        cfg.reconnect = None;
        let client = Client::builder(cfg, ToyCorrelator)
            .connect(TcpConnector::new(self.addr.to_string()))
            .await
            .unwrap();
        let req = request(42, b"ok");
        assert_eq!(
            client.request(req.clone(), LONG).await.unwrap(),
            response_to(&req)
        );
        client.close(LONG).await;
    }
}

/// Reads until the server closes the connection; returns everything read.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(LONG, stream.read(&mut buf))
            .await
            .expect("server left the connection open")
        {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

async fn send_raw(addr: SocketAddr, bytes: &[u8], half_close: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    if half_close {
        s.shutdown().await.unwrap();
    }
    read_to_close(&mut s).await
}

#[tokio::test]
async fn oversized_length_closes_without_allocating() {
    let mut h = harness(Framing::Len2, small()).await;
    let got = send_raw(h.addr, &[0xFF, 0xFF, b'x', b'y'], false).await;
    assert!(got.is_empty());
    match h.next_close().await {
        CloseReason::Error(NetError::FrameTooLarge { len, max }) => {
            assert_eq!((len, max), (65535, 1024));
        }
        other => panic!("unexpected {other:?}"),
    }
    h.still_serving().await;

    // 4-byte prefix claiming 2 GiB: refused from the prefix alone.
    let mut h = harness(Framing::Len4, small()).await;
    send_raw(h.addr, &[0x7F, 0xFF, 0xFF, 0xFF, 0], false).await;
    assert!(matches!(
        h.next_close().await,
        CloseReason::Error(NetError::FrameTooLarge {
            len: 0x7FFF_FFFF,
            max: 1024
        })
    ));
    assert_eq!(h.metrics.snapshot().protocol_errors, 1);
    h.still_serving().await;
}

#[tokio::test]
async fn zero_length_closes() {
    let mut h = harness(Framing::Len2, small()).await;
    send_raw(h.addr, &[0x00, 0x00], false).await;
    assert!(matches!(
        h.next_close().await,
        CloseReason::Error(NetError::ZeroLength)
    ));

    let mut h = harness(Framing::Ascii4, small()).await;
    send_raw(h.addr, b"0000", false).await;
    assert!(matches!(
        h.next_close().await,
        CloseReason::Error(NetError::ZeroLength)
    ));
    h.still_serving().await;
}

#[tokio::test]
async fn truncated_frame_at_eof_closes() {
    let mut h = harness(Framing::Len2, small()).await;
    send_raw(h.addr, &[0x00, 0x0A, 1, 2, 3], true).await;
    assert!(matches!(
        h.next_close().await,
        CloseReason::Error(NetError::Truncated {
            buffered: 5,
            expected: Some(12)
        })
    ));
    h.still_serving().await;
}

#[tokio::test]
async fn garbage_after_a_valid_frame_answers_the_frame_then_closes() {
    for framing in [Framing::Len2, Framing::Ascii4] {
        let mut h = harness(framing, small()).await;
        let mut codec = FrameCodec::new(framing, 1024);
        let req = request(7, b"valid");
        let mut wire = BytesMut::new();
        codec.encode(Frame::new(req.clone()), &mut wire).unwrap();
        let garbage: &[u8] = match framing {
            Framing::Ascii4 => b"zz!!junk",
            _ => &[0xFF, 0xFF, 0x00],
        };
        wire.extend_from_slice(garbage);

        let got = send_raw(h.addr, &wire, false).await;
        // The valid frame was answered before the connection closed.
        let mut buf = BytesMut::from(&got[..]);
        let answer = codec.decode(&mut buf).unwrap().expect("response frame");
        assert_eq!(answer.payload, response_to(&req));
        assert!(buf.is_empty());
        match (framing, h.next_close().await) {
            (Framing::Ascii4, CloseReason::Error(NetError::InvalidLengthPrefix { prefix })) => {
                assert_eq!(&prefix, b"zz!!");
            }
            (Framing::Len2, CloseReason::Error(NetError::FrameTooLarge { len: 65535, .. })) => {}
            (f, other) => panic!("{f:?}: unexpected {other:?}"),
        }
        h.still_serving().await;
    }
}

#[tokio::test]
async fn slowloris_is_cut_by_the_idle_timeout() {
    let cfg = ServerConfig {
        max_frame_len: 4096,
        idle_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let mut h = harness(Framing::Len2, cfg).await;
    let stream = TcpStream::connect(h.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    // Announce 1000 bytes, then trickle them (bounded: at most 200 bytes, ~20 s).
    wr.write_all(&[0x03, 0xE8]).await.unwrap();
    let trickle = async {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(b"x").await.is_err() {
                break;
            }
        }
    };
    let mut buf = [0u8; 16];
    let closed = tokio::select! {
        r = rd.read(&mut buf) => matches!(r, Ok(0) | Err(_)),
        () = trickle => false,
    };
    assert!(closed, "server kept a trickling peer open");
    match h.next_close().await {
        CloseReason::Error(NetError::IdleTimeout { after }) => {
            assert_eq!(after, Duration::from_secs(1));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(h.metrics.snapshot().idle_timeouts, 1);
    h.still_serving().await;
}
