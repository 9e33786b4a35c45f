//! The admin endpoint over loopback: liveness, readiness turning 503 with its reason and
//! back, the metrics body and content type, the reload hook's three outcomes, and bad
//! requests answered (404, 405, 400, 431, 408) without taking the endpoint down.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isoswitch_net::admin::{AdminConfig, AdminServer, ReloadError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LONG: Duration = Duration::from_secs(30);

struct Reply {
    status: u16,
    head: String,
    body: String,
}

async fn http(addr: std::net::SocketAddr, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LONG, s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let status = head[9..12].parse().unwrap();
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> Reply {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test]
async fn endpoints_answer_with_the_callers_checks_render_and_hook() {
    let ready = Arc::new(AtomicBool::new(false));
    let reloads = Arc::new(AtomicU32::new(0));
    let next_reload: Arc<Mutex<Result<String, ReloadError>>> =
        Arc::new(Mutex::new(Ok("reloaded 3 terminals".into())));
    let (r, n, next) = (ready.clone(), reloads.clone(), next_reload.clone());
    let admin = AdminServer::bind("127.0.0.1:0", AdminConfig::default())
        .await
        .unwrap()
        .readiness(move || {
            if r.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("upstream link not signed on".into())
            }
        })
        .metrics(|| "# TYPE isoswitch_messages_total counter\nisoswitch_messages_total 1\n".into())
        .reload(move || {
            n.fetch_add(1, Ordering::SeqCst);
            let outcome = next.lock().unwrap().clone();
            async move { outcome }
        });
    let addr = admin.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(admin.serve(async {
        let _ = stopped.await;
    }));

    let live = get(addr, "/livez").await;
    assert_eq!((live.status, live.body.as_str()), (200, "ok\n"));
    assert!(live.head.contains("Connection: close"));

    let not_ready = get(addr, "/readyz").await;
    assert_eq!(not_ready.status, 503);
    assert!(
        not_ready.body.contains("upstream link not signed on"),
        "{}",
        not_ready.body
    );
    ready.store(true, Ordering::SeqCst);
    assert_eq!(get(addr, "/readyz?verbose").await.status, 200);

    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .head
            .contains("Content-Type: text/plain; version=0.0.4"),
        "{}",
        metrics.head
    );
    assert!(metrics.body.contains("isoswitch_messages_total 1"));
    let head_only = http(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!((head_only.status, head_only.body.as_str()), (200, ""));

    let post = b"POST /reload HTTP/1.1\r\nContent-Length: 4\r\n\r\nnow!";
    let ok = http(addr, post).await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (200, "reloaded 3 terminals\n")
    );
    *next_reload.lock().unwrap() = Err(ReloadError::Rejected(
        "terminals.toml: line 3: bad key".into(),
    ));
    let refused = http(addr, post).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("line 3"));
    *next_reload.lock().unwrap() = Err(ReloadError::Failed("store not writable".into()));
    assert_eq!(http(addr, post).await.status, 500);
    assert_eq!(reloads.load(Ordering::SeqCst), 3);

    // Wrong method, unknown path: the hook is not called.
    let wrong = get(addr, "/reload").await;
    assert_eq!(wrong.status, 405);
    assert!(wrong.head.contains("Allow: POST"));
    assert_eq!(
        http(addr, b"POST /livez HTTP/1.1\r\n\r\n").await.status,
        405
    );
    assert_eq!(get(addr, "/nope").await.status, 404);
    assert_eq!(reloads.load(Ordering::SeqCst), 3);

    let _ = stop.send(());
    tokio::time::timeout(LONG, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "stopped listening");
}

#[tokio::test]
async fn bad_requests_are_answered_and_the_endpoint_stays_up() {
    let config = AdminConfig {
        max_request_bytes: 256,
        max_body_bytes: 16,
        read_timeout: Duration::from_millis(300),
        ..AdminConfig::default()
    };
    let admin = AdminServer::bind("127.0.0.1:0", config).await.unwrap();
    let addr = admin.local_addr();
    tokio::spawn(admin.serve(std::future::pending()));

    assert_eq!(
        http(addr, b"\x16\x03\x01\x00\xa5garbage\r\n\r\n")
            .await
            .status,
        400
    );
    assert_eq!(http(addr, b"GET /livez HTTP/3.0\r\n\r\n").await.status, 400);
    let big = format!("GET /livez HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(400));
    assert_eq!(http(addr, big.as_bytes()).await.status, 431);
    let chunked = b"POST /reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(http(addr, chunked).await.status, 400);
    let huge_body = b"POST /reload HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n";
    assert_eq!(http(addr, huge_body).await.status, 413);
    // Without a reload hook there is no /reload.
    assert_eq!(
        http(addr, b"POST /reload HTTP/1.1\r\n\r\n").await.status,
        404
    );
    // A request that never completes is answered 408 once the read timeout passes.
    assert_eq!(http(addr, b"GET /livez HTTP/1.1\r\n").await.status, 408);
    // Still serving.
    assert_eq!(get(addr, "/livez").await.status, 200);
    // No readiness check: ready.
    assert_eq!(get(addr, "/readyz").await.status, 200);
}
