//! The `metrics` facade: with a recorder installed (metrics-util's `DebuggingRecorder`),
//! a client and a server over loopback record messages by link, direction and MTI,
//! responses by code, latency, in-flight, timeouts, late responses, link up, connects,
//! reconnects and link losses, under the documented names and labels.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::init_tracing;
use isoswitch_codec::{Dialect, Message};
use isoswitch_net::metrics::names;
use isoswitch_net::{
    Client, ClientConfig, DialectCorrelator, Frame, Framing, ReconnectPolicy, Request,
    RequestError, Server, ServerConfig, TcpConnector,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::net::TcpListener;
use tokio::sync::Notify;

const LONG: Duration = Duration::from_secs(30);

/// The tests share the recorder and a snapshot drains its histograms: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One recorder per test binary, installed before any link is built.
fn snapshotter() -> &'static Snapshotter {
    static SNAP: OnceLock<Snapshotter> = OnceLock::new();
    SNAP.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    })
}

type Labels = Vec<(String, String)>;

/// Every metric as (name, sorted labels) → value.
fn snapshot() -> HashMap<(String, Labels), DebugValue> {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.key().name().to_owned(), labels), value)
        })
        .collect()
}

fn find<'a>(
    snap: &'a HashMap<(String, Labels), DebugValue>,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    let mut labels: Labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    snap.get(&(name.to_owned(), labels))
}

fn counter(
    snap: &HashMap<(String, Labels), DebugValue>,
    name: &str,
    labels: &[(&str, &str)],
) -> u64 {
    match find(snap, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

fn gauge(snap: &HashMap<(String, Labels), DebugValue>, name: &str, link: &str) -> f64 {
    match find(snap, name, &[("link", link)]) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name}{{link={link}}} is not a gauge: {other:?}"),
    }
}

fn purchase(d: &Dialect, stan: u32, amount: u64) -> bytes::Bytes {
    let mut m = Message::new(d, "0200".parse().unwrap());
    m.set(3, "000000").unwrap();
    m.set(4, format!("{amount:012}")).unwrap();
    m.set(11, format!("{stan:06}")).unwrap();
    m.set(41, "TERM0001").unwrap();
    m.to_bytes().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_server_record_messages_codes_latency_and_failures() {
    init_tracing();
    let _serial = SERIAL.lock().await;
    snapshotter();
    let dialect = Dialect::builtin("iso87-ascii").unwrap();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    // Approves up to 10.00, declines (51) above; STAN 999 waits for the gate.
    let handler = move |req: Request| {
        let gate = g.clone();
        async move {
            let request = req.message()?.ok()?.clone();
            if request.get(11).as_deref() == Some("000999") {
                gate.notified().await;
            }
            let amount: u64 = request.get(4)?.parse().ok()?;
            let mut response = Message::response_to(&request).ok()?;
            response
                .set(39, if amount > 1000 { "51" } else { "00" })
                .ok()?;
            Some(Frame::new(response.to_bytes().ok()?))
        }
    };
    let server_config = ServerConfig {
        link: "terminals".into(),
        ..ServerConfig::default()
    };
    let server = Server::bind("127.0.0.1:0", Framing::Len2, server_config, handler)
        .await
        .unwrap()
        .with_dialect(dialect.clone());
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));

    let mut config = ClientConfig::new(Framing::Len2);
    config.link = "host-a".into();
    let client = Client::builder(config, DialectCorrelator::new(dialect.clone()))
        .connect(TcpConnector::new(addr.to_string()))
        .await
        .unwrap();
    for stan in 1..=5 {
        client
            .request(purchase(&dialect, stan, 500), LONG)
            .await
            .unwrap();
    }
    for stan in 6..=7 {
        let response = client
            .request_decoded(Frame::new(purchase(&dialect, stan, 5000)), LONG)
            .await
            .unwrap();
        // The correlator's decode is handed over: no second decode needed.
        let message = response.message.expect("decoded by the correlator");
        assert_eq!(message.get(39).as_deref(), Some("51"));
    }
    let timed_out = client
        .request(purchase(&dialect, 999, 100), Duration::from_millis(200))
        .await;
    assert!(
        matches!(timed_out, Err(RequestError::Timeout)),
        "{timed_out:?}"
    );
    gate.notify_one();
    tokio::time::timeout(LONG, async {
        while client.metrics().late == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the late response arrives");

    let snap = snapshot();
    let out = [("link", "host-a"), ("direction", "out"), ("mti", "0200")];
    let inn = [("link", "host-a"), ("direction", "in"), ("mti", "0210")];
    assert_eq!(counter(&snap, names::MESSAGES, &out), 8);
    assert_eq!(counter(&snap, names::MESSAGES, &inn), 8);
    let rc = |link, direction, rc| {
        counter(
            &snap,
            names::RESPONSES,
            &[("link", link), ("direction", direction), ("rc", rc)],
        )
    };
    assert_eq!(rc("host-a", "in", "00"), 6, "5 approved + the late one");
    assert_eq!(rc("host-a", "in", "51"), 2);
    assert_eq!(counter(&snap, names::TIMEOUTS, &[("link", "host-a")]), 1);
    assert_eq!(counter(&snap, names::LATE, &[("link", "host-a")]), 1);
    assert_eq!(counter(&snap, names::UNMATCHED, &[("link", "host-a")]), 1);
    assert_eq!(counter(&snap, names::CONNECTS, &[("link", "host-a")]), 1);
    assert_eq!(gauge(&snap, names::LINK_UP, "host-a"), 1.0);
    assert_eq!(gauge(&snap, names::IN_FLIGHT, "host-a"), 0.0);
    match find(&snap, names::REQUEST_DURATION, &[("link", "host-a")]) {
        Some(DebugValue::Histogram(values)) => assert_eq!(values.len(), 7, "successful requests"),
        other => panic!("no latency histogram: {other:?}"),
    }

    // The server side of the same traffic.
    let s_in = [("link", "terminals"), ("direction", "in"), ("mti", "0200")];
    let s_out = [("link", "terminals"), ("direction", "out"), ("mti", "0210")];
    assert_eq!(counter(&snap, names::MESSAGES, &s_in), 8);
    assert_eq!(counter(&snap, names::MESSAGES, &s_out), 8);
    assert_eq!(rc("terminals", "out", "00"), 6);
    assert_eq!(rc("terminals", "out", "51"), 2);
    assert_eq!(counter(&snap, names::ACCEPTED, &[("link", "terminals")]), 1);
    assert_eq!(gauge(&snap, names::CONNECTIONS, "terminals"), 1.0);
    assert_eq!(gauge(&snap, names::IN_FLIGHT, "terminals"), 0.0);
    match find(&snap, names::HANDLER_DURATION, &[("link", "terminals")]) {
        Some(DebugValue::Histogram(values)) => assert_eq!(values.len(), 8),
        other => panic!("no handler histogram: {other:?}"),
    }
    for ((name, _), _) in snap.iter() {
        assert!(name.starts_with("isoswitch_"), "{name}");
    }
    client.close(LONG).await;
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_down_and_reconnects_are_counted() {
    init_tracing();
    let _serial = SERIAL.lock().await;
    snapshotter();
    // A peer that accepts and drops the first connection, then keeps the second.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (first, _) = listener.accept().await.unwrap();
        drop(first);
        let (second, _) = listener.accept().await.unwrap();
        second
    });
    let mut config = ClientConfig::new(Framing::Len2);
    config.link = "flaky".into();
    config.reconnect = Some(ReconnectPolicy {
        initial_delay: Duration::from_millis(10),
        ..ReconnectPolicy::default()
    });
    let dialect = Dialect::builtin("iso87-ascii").unwrap();
    let client = Client::builder(config, DialectCorrelator::new(dialect))
        .connect(TcpConnector::new(addr.to_string()))
        .await
        .unwrap();
    let _second = tokio::time::timeout(LONG, peer).await.unwrap().unwrap();
    tokio::time::timeout(LONG, async {
        while client.metrics().connects < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("reconnected");
    let snap = snapshot();
    assert_eq!(counter(&snap, names::CONNECTS, &[("link", "flaky")]), 2);
    assert_eq!(counter(&snap, names::RECONNECTS, &[("link", "flaky")]), 1);
    assert_eq!(counter(&snap, names::LINK_DOWN, &[("link", "flaky")]), 1);
    assert_eq!(gauge(&snap, names::LINK_UP, "flaky"), 1.0);
    client.close(LONG).await;
    let snap = snapshot();
    assert_eq!(gauge(&snap, names::LINK_UP, "flaky"), 0.0);
}
