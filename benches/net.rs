//! Network benchmarks: ISO 8583 request/response round trips over loopback (127.0.0.1)
//! through `isoswitch::net` — the multiplexing [`Client`] against a [`Server`], `len2`
//! framing, on a multi-threaded tokio runtime with 2 workers (client and server share it).
//!
//! Scenarios: one connection with 1, 64 and 1,024 requests in flight, and 100 connections
//! with 10 in flight each; each over plain TCP and over TLS (`_tls`: rustls with the `ring`
//! provider, TLS 1.3, a server certificate made at run time by rcgen and verified by the
//! client), in the same sitting. Every in-flight slot is a task with its own terminal ID
//! (DE 41) sending the `iso87-binary` 0200 purchase of
//! `tests/vectors/samples/purchase-0200.json` (21 fields) with its own incrementing STAN
//! (DE 11), so every request in flight has a unique correlation key. The server's handler
//! decodes the request (zero-copy `MessageView` index), builds the 0210 with
//! `Message::response_to` plus DE 39 `00`, and encodes it.
//!
//! Per scenario: a criterion measurement (one iteration = one round trip, so its
//! throughput is round trips/s), then a fixed-count run recording every request's latency
//! in an `hdrhistogram::Histogram`; the table of round trips/s and p50/p99/p99.9 latency is
//! printed at the end. Everything is bounded: fixed request counts, 30 s request timeout.
//!
//! Run: `cargo bench --bench net` (about a minute; `-- 1024inflight` runs one scenario).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use hdrhistogram::Histogram;
use isoswitch::codec::{json::from_json, Dialect, Message, MessageView};
use isoswitch::net::tls::{CertificateDer, PrivateKeyDer, RootCertStore};
use isoswitch::net::{
    Client, ClientConfig, ClientTls, DialectCorrelator, Frame, Framing, NetError, Request, Server,
    ServerConfig, ServerTls, TcpConnector, TlsConnector,
};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

const SAMPLE: &str = include_str!("../tests/vectors/samples/purchase-0200.json");
const DIALECT: &str = "iso87-binary";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const TARGET_PIPELINED: f64 = 150_000.0;

struct Scenario {
    id: &'static str,
    connections: usize,
    /// Requests in flight per connection.
    in_flight: usize,
    /// Requests of the fixed-count latency run.
    count: u64,
    /// Over TLS.
    tls: bool,
}

const SCENARIOS: [Scenario; 8] = [
    Scenario {
        id: "1conn_1inflight",
        connections: 1,
        in_flight: 1,
        count: 30_000,
        tls: false,
    },
    Scenario {
        id: "1conn_64inflight",
        connections: 1,
        in_flight: 64,
        count: 300_000,
        tls: false,
    },
    Scenario {
        id: "1conn_1024inflight",
        connections: 1,
        in_flight: 1024,
        count: 400_000,
        tls: false,
    },
    Scenario {
        id: "100conn_10inflight",
        connections: 100,
        in_flight: 10,
        count: 300_000,
        tls: false,
    },
    Scenario {
        id: "1conn_1inflight_tls",
        connections: 1,
        in_flight: 1,
        count: 30_000,
        tls: true,
    },
    Scenario {
        id: "1conn_64inflight_tls",
        connections: 1,
        in_flight: 64,
        count: 300_000,
        tls: true,
    },
    Scenario {
        id: "1conn_1024inflight_tls",
        connections: 1,
        in_flight: 1024,
        count: 400_000,
        tls: true,
    },
    Scenario {
        id: "100conn_10inflight_tls",
        connections: 100,
        in_flight: 10,
        count: 300_000,
        tls: true,
    },
];

/// The 0200 purchase sample, encoded in `dialect`.
fn purchase(d: &Dialect) -> Message {
    from_json(d, SAMPLE).expect("purchase-0200.json in iso87-binary")
}

/// The server side: decode, 0210 with the echo fields, DE 39 `00`, encode.
fn respond(d: &Dialect, payload: Bytes) -> Option<Frame> {
    let request = Message::decode(d, payload).ok()?;
    let mut response = Message::response_to(&request).ok()?;
    response.set(39, "00").ok()?;
    Some(Frame::new(response.to_bytes().ok()?))
}

/// A CA and a server certificate for 127.0.0.1 it signs, made now: the server's TLS and
/// the client's trusting that CA.
fn tls_pair() -> (ServerTls, ClientTls) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let server = ServerTls::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::try_from(key.serialize_der()).expect("PKCS#8 key"),
        None,
    )
    .expect("server TLS");
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der().to_vec()))
        .expect("CA root");
    let client = ClientTls::new(roots, None).expect("client TLS");
    (server, client)
}

fn stan_digits(n: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    let mut v = n;
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out
}

/// A server and the scenario's clients and per-slot message templates.
struct Env {
    clients: Vec<Client>,
    /// One per in-flight slot: the purchase with the slot's own terminal ID.
    templates: Vec<Message>,
    in_flight: usize,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), NetError>>,
}

async fn setup(s: &Scenario) -> Env {
    let dialect = Dialect::builtin(DIALECT).expect("dialect");
    let config = ServerConfig {
        max_in_flight_per_connection: 1024,
        write_queue: 1024,
        ..ServerConfig::default()
    };
    let d = dialect.clone();
    let handler = move |req: Request| std::future::ready(respond(&d, req.frame.payload));
    let mut server = Server::bind("127.0.0.1:0", Framing::Len2, config, handler)
        .await
        .expect("bind 127.0.0.1");
    let tls = s.tls.then(tls_pair);
    if let Some((server_tls, _)) = &tls {
        server = server.with_tls(server_tls.clone());
    }
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));

    let mut clients = Vec::with_capacity(s.connections);
    for _ in 0..s.connections {
        let mut config = ClientConfig::new(Framing::Len2);
        config.max_in_flight = s.in_flight.max(1);
        config.write_queue = 1024;
        config.reconnect = None;
        let builder = Client::builder(config, DialectCorrelator::new(dialect.clone()));
        let client = match &tls {
            Some((_, client_tls)) => builder
                .connect(
                    TlsConnector::new(addr.to_string(), "127.0.0.1", client_tls)
                        .expect("server name"),
                )
                .await
                .expect("connect over TLS"),
            None => builder
                .connect(TcpConnector::new(addr.to_string()))
                .await
                .expect("connect"),
        };
        clients.push(client);
    }

    let base = purchase(&dialect);
    let templates = (0..s.connections * s.in_flight)
        .map(|slot| {
            let mut m = base.clone();
            m.set(41, format!("T{slot:07}")).expect("DE 41");
            m
        })
        .collect::<Vec<_>>();

    // Sanity check: one round trip gives a 0210 approved with our STAN and terminal.
    let req = templates[0].to_bytes().expect("encode");
    let resp = clients[0]
        .request(req, REQUEST_TIMEOUT)
        .await
        .expect("first round trip");
    let view = MessageView::decode(&dialect, &resp).expect("decode 0210");
    assert_eq!(view.mti().as_str(), "0210");
    assert_eq!(view.raw(39), Some(&b"00"[..]));
    assert_eq!(view.raw(41), Some(&b"T0000000"[..]));

    Env {
        clients,
        templates,
        in_flight: s.in_flight,
        stop,
        server,
    }
}

async fn teardown(env: Env) {
    for c in &env.clients {
        c.close(Duration::from_secs(5)).await;
    }
    let _ = env.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), env.server).await;
}

struct RunResult {
    elapsed: Duration,
    /// Per-request latencies in nanoseconds (empty unless recorded).
    latencies: Vec<Vec<u64>>,
    errors: u64,
}

/// Sends `total` requests, keeping every in-flight slot busy until the count is reached.
async fn run(env: &Env, total: u64, record: bool) -> RunResult {
    let next = Arc::new(AtomicU64::new(0));
    let slots = env.templates.len() as u64;
    let per_slot = if record {
        (total / slots + 2) as usize
    } else {
        0
    };
    let mut set = JoinSet::new();
    let start = Instant::now();
    for (slot, template) in env.templates.iter().enumerate() {
        let client = env.clients[slot / env.in_flight].clone();
        let mut msg = template.clone();
        let next = next.clone();
        set.spawn(async move {
            let mut latencies = Vec::with_capacity(per_slot);
            let mut errors = 0u64;
            let mut stan = 0u32;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                stan = stan % 999_999 + 1;
                msg.set(11, stan_digits(stan)).expect("DE 11");
                let bytes = msg.to_bytes().expect("encode");
                let t0 = Instant::now();
                let ok = client.request(bytes, REQUEST_TIMEOUT).await.is_ok();
                if record {
                    latencies.push(t0.elapsed().as_nanos() as u64);
                }
                if !ok {
                    errors += 1;
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(done) = set.join_next().await {
        let (l, e) = done.expect("worker task");
        latencies.push(l);
        errors += e;
    }
    RunResult {
        elapsed: start.elapsed(),
        latencies,
        errors,
    }
}

struct Row {
    id: &'static str,
    connections: usize,
    in_flight: usize,
    count: u64,
    per_sec: f64,
    hist: Histogram<u64>,
    errors: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; without it (cargo test --benches) run a smoke test.
    let bench_mode = args.iter().any(|a| a == "--bench");
    let list_mode = args.iter().any(|a| a == "--list");
    let filter = name_filter(&args);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();

    let mut rows = Vec::new();
    for s in SCENARIOS
        .iter()
        .filter(|s| filter.is_none_or(|f| s.id.contains(f)))
    {
        if list_mode {
            println!("net/round_trip/{}: benchmark", s.id);
            continue;
        }
        let env = rt.block_on(setup(s));
        bench_scenario(&mut c, &rt, &env, s);
        let count = if bench_mode { s.count } else { 2_000 };
        rows.push(fixed_count(&rt, &env, s, count));
        rt.block_on(teardown(env));
    }
    c.final_summary();
    if !list_mode {
        print_table(&rows);
    }
}

/// The benchmark name filter (criterion's first positional argument), applied to the
/// fixed-count runs too: `cargo bench --bench net -- 1024inflight`.
fn name_filter(args: &[String]) -> Option<&str> {
    // Criterion options that take a value.
    const WITH_VALUE: &[&str] = &[
        "--save-baseline",
        "-s",
        "--baseline",
        "-b",
        "--baseline-lenient",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
        "--color",
        "-c",
        "--profile-time",
        "--format",
    ];
    let mut prev: Option<&str> = None;
    for a in args.iter().skip(1) {
        if !a.starts_with('-') && !prev.is_some_and(|p| WITH_VALUE.contains(&p)) {
            return Some(a);
        }
        prev = Some(a);
    }
    None
}

fn bench_scenario(c: &mut Criterion, rt: &Runtime, env: &Env, s: &Scenario) {
    let mut g = c.benchmark_group("net/round_trip");
    g.throughput(Throughput::Elements(1));
    g.bench_function(s.id, |b| {
        b.iter_custom(|iters| {
            let r = rt.block_on(run(env, iters, false));
            assert_eq!(r.errors, 0, "{}: failed requests", s.id);
            r.elapsed
        })
    });
    g.finish();
}

fn fixed_count(rt: &Runtime, env: &Env, s: &Scenario, count: u64) -> Row {
    let r = rt.block_on(run(env, count, true));
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    for l in r.latencies.iter().flatten() {
        hist.saturating_record(*l);
    }
    Row {
        id: s.id,
        connections: s.connections,
        in_flight: s.in_flight,
        count,
        per_sec: count as f64 / r.elapsed.as_secs_f64(),
        hist,
        errors: r.errors,
    }
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "net round trips over 127.0.0.1 ({DIALECT} 0200/0210, len2, tokio 2 workers; \
         _tls = rustls TLS 1.3, ring); fixed-count runs, latency in µs"
    );
    println!(
        "{:<24} {:>5} {:>9} {:>9} {:>13} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "scenario",
        "conns",
        "in-flight",
        "requests",
        "round trips/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "errors"
    );
    for r in rows {
        println!(
            "{:<24} {:>5} {:>9} {:>9} {:>13.0} {:>9} {:>9} {:>9} {:>9} {:>6}",
            r.id,
            r.connections,
            r.connections * r.in_flight,
            r.count,
            r.per_sec,
            us(r.hist.value_at_quantile(0.50)),
            us(r.hist.value_at_quantile(0.99)),
            us(r.hist.value_at_quantile(0.999)),
            us(r.hist.max()),
            r.errors
        );
    }
    for r in rows.iter().filter(|r| r.id.ends_with("_tls")) {
        let plain = r.id.trim_end_matches("_tls");
        if let Some(p) = rows.iter().find(|p| p.id == plain) {
            println!(
                "{:<24} TLS / plain throughput: {:.0}%",
                plain,
                100.0 * r.per_sec / p.per_sec
            );
        }
    }
    if let Some(r) = rows
        .iter()
        .find(|r| r.connections == 1 && r.in_flight == 1024 && !r.id.ends_with("_tls"))
    {
        let verdict = if r.per_sec >= TARGET_PIPELINED {
            "met"
        } else {
            "NOT met"
        };
        println!(
            "target ≥ {TARGET_PIPELINED:.0} round trips/s pipelined on one connection: {verdict} ({:.0}/s)",
            r.per_sec
        );
    }
}
