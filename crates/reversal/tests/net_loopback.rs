//! The driver over a real `isoswitch_net::Client` and `Server` on loopback (cup-pos
//! framing): a lost response is reversed, a late one is only counted, the ledgers agree.

mod common;
use common::*;
use isoswitch_codec::Message;
use isoswitch_net::{
    Client, ClientConfig, DialectCorrelator, Framing, Request, Server, ServerConfig, TcpConnector,
};
use isoswitch_reversal::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_over_net_client_reverses_lost_and_late_responses() {
    let profile = ReversalProfile::cup_pos().unwrap();
    let host = Arc::new(Mutex::new(ReversalHandler::new(
        profile.clone(),
        MemoryStore::new(),
        HostConfig::default(),
    )));
    let seen = Arc::new(AtomicU32::new(0));
    let settlement: Arc<Mutex<Option<HostSettlement>>> = Arc::new(Mutex::new(None));
    // Signed off (by the 0820 that ends a settlement) until the next 0800: a host
    // answers the terminal's requests meanwhile with 77.
    let signed_off = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (h, p, n, hs, off) = (
        host.clone(),
        profile.clone(),
        seen.clone(),
        settlement.clone(),
        signed_off.clone(),
    );
    let handler = move |req: Request| {
        let (h, p, n, hs, off) = (h.clone(), p.clone(), n.clone(), hs.clone(), off.clone());
        async move {
            let msg = Message::decode(&p.dialect, req.frame.payload.clone()).ok()?;
            let answer = |code: &str| {
                let mut resp = Message::response_to(&msg).ok()?;
                resp.set(39, code).ok()?;
                resp.to_bytes().ok()
            };
            match msg.mti().as_u16() {
                800 => {
                    off.store(false, Ordering::SeqCst);
                    return Some(req.reply(answer("00")?));
                }
                500 | 320 if off.load(Ordering::SeqCst) => {
                    return Some(req.reply(answer("77")?));
                }
                500 | 320 => {
                    let mut g = hs.lock().unwrap();
                    if msg.mti().as_u16() == 500 {
                        // DE 60.2: the batch settled.
                        let batch: u32 = msg.get(60)?.get(2..8)?.parse().ok()?;
                        *g = Some(HostSettlement::new(h.lock().unwrap().batch_totals(
                            "TERM0001",
                            "MERCHANT0000001",
                            batch,
                        )));
                    }
                    let resp = g.as_mut()?.handle(&msg).ok()?;
                    return Some(req.reply(resp.to_bytes().ok()?));
                }
                820 => {
                    off.store(true, Ordering::SeqCst);
                    return Some(req.reply(answer("00")?));
                }
                _ => {}
            }
            let mut resp = h
                .lock()
                .unwrap()
                .handle(&msg, |_, _| Decision::Approve { auth_code: None })
                .ok()?;
            let bytes = security().seal(&mut resp).ok()?;
            match (msg.mti().as_u16(), n.fetch_add(1, Ordering::SeqCst)) {
                // First sale: the response is lost.
                (200, 0) => None,
                // Second sale: the response comes after the terminal's timeout.
                (200, _) if n.load(Ordering::SeqCst) <= 3 => {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Some(req.reply(bytes))
                }
                _ => Some(req.reply(bytes)),
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
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));

    let late = LateResponses::new();
    let client = Client::builder(
        ClientConfig::new(Framing::CupPos),
        DialectCorrelator::new(profile.dialect.clone()),
    )
    .unmatched(late.clone())
    .connect(TcpConnector::new(addr.to_string()))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut journal = FileJournal::open(dir.path().join("t.journal")).unwrap();
    let config = EngineConfig {
        response_timeout: Duration::from_millis(200),
        reversal_timeout: Duration::from_millis(500),
        backoff_base: Duration::from_millis(10),
        ..EngineConfig::default()
    };
    let engine = ReversalEngine::recover(
        std::time::Instant::now(),
        config,
        profile.clone(),
        security(),
        1,
        journal.load().unwrap(),
    )
    .unwrap();
    let driver = ReversalDriver::builder(engine, journal, client.clone())
        .late(late)
        .spawn();

    let lost = driver.submit(sale(&profile, 1000)).await.unwrap();
    assert!(
        matches!(
            lost,
            Outcome::Reversed {
                reason: ReversalReason::NoResponse
            }
        ),
        "{lost:?}"
    );
    let late = driver.submit(sale(&profile, 2000)).await.unwrap();
    assert!(matches!(late, Outcome::Reversed { .. }), "{late:?}");
    let ok = driver.submit(sale(&profile, 3000)).await.unwrap();
    assert!(ok.is_approved(), "{ok:?}");
    // Let the late approval arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = driver.status().await.unwrap();
    assert_eq!(status.pending_reversals, 0);
    assert_eq!(status.stats.reversals_acked, 2);
    assert_eq!(status.stats.late_responses, 1);
    let ledger = host.lock().unwrap().ledger().total();
    assert_eq!(ledger, Decimal::new(3000, 2));
    assert_eq!(status.totals.net(), ledger);
    let settle = || {
        driver.settle(
            &client,
            profile.dialect.clone(),
            SettlementConfig::new("TERM0001", "MERCHANT0000001"),
        )
    };
    // Settle the batch over the same client: balanced, then the batch is closed.
    let outcome = settle().await.unwrap();
    assert!(outcome.balanced);
    assert_eq!(outcome.next_batch, 2);
    let status = driver.status().await.unwrap();
    assert_eq!(status.batch, 2);
    assert_eq!(status.totals, BatchTotals::default());
    // The next batch settled at once, with no sale between to sign on again: the host
    // answers 77 (the settlement's 0820 signed the terminal off). The settlement ends
    // with that code, at once and with one 0500 sent (not repeated until its tries run
    // out and reported as no answer), and the batch stays open.
    let sent_before = client.metrics().sent;
    let refused = settle().await;
    assert!(
        matches!(refused, Err(ReversalError::SettlementRefused { code }) if code == *b"77"),
        "{refused:?}"
    );
    assert_eq!(client.metrics().sent - sent_before, 1);
    assert_eq!(driver.status().await.unwrap().batch, 2);
    // Signed on again, the empty batch settles balanced.
    let mut sign_on = Message::new(&profile.dialect, "0800".parse().unwrap());
    sign_on.set(11, "000900").unwrap();
    sign_on.set(41, "TERM0001").unwrap();
    sign_on.set(42, "MERCHANT0000001").unwrap();
    sign_on.set(60, "00000002001").unwrap();
    client
        .request(sign_on.to_bytes().unwrap(), Duration::from_secs(2))
        .await
        .unwrap();
    let outcome = settle().await.unwrap();
    assert!(outcome.balanced);
    assert_eq!(outcome.next_batch, 3);
    client.close(Duration::from_secs(1)).await;
    let _ = stop.send(());
}
