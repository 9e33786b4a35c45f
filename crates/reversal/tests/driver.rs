//! The tokio driver with paused time and an in-process transport (no sockets): the
//! outcome a caller sees, and the host ledger.

mod common;
use bytes::Bytes;
use common::*;
use isoswitch_codec::Message;
use isoswitch_net::RequestError;
use isoswitch_reversal::driver::Transport;
use isoswitch_reversal::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Answers through a host; drops the response of the originals listed in `lose`.
struct HostTransport {
    profile: ReversalProfile,
    host: Mutex<ReversalHandler<MemoryStore>>,
    mac: Mutex<ProfileMac>,
    lose_originals: AtomicU32,
}

impl Transport for HostTransport {
    fn request(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Bytes, RequestError>> + Send {
        let req = Message::decode(&self.profile.dialect, msg).unwrap();
        let mut resp = self
            .host
            .lock()
            .unwrap()
            .handle(&req, |_, _| Decision::Approve { auth_code: None })
            .unwrap();
        let bytes = self.mac.lock().unwrap().seal(&mut resp).unwrap();
        let lose = req.mti().as_u16() == 200
            && self
                .lose_originals
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        async move {
            if lose {
                tokio::time::sleep(timeout).await;
                Err(RequestError::Timeout)
            } else {
                Ok(bytes)
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn driver_reverses_a_lost_response_and_reports_it() {
    let profile = ReversalProfile::cup_pos().unwrap();
    let transport = Arc::new(HostTransport {
        profile: profile.clone(),
        host: Mutex::new(ReversalHandler::new(
            profile.clone(),
            MemoryStore::new(),
            HostConfig::default(),
        )),
        mac: Mutex::new(security()),
        lose_originals: AtomicU32::new(1),
    });
    let journal = MemoryJournal::new();
    let engine = ReversalEngine::new(EngineConfig::default(), profile.clone(), security(), 1);
    let driver = ReversalDriver::builder(engine, journal.clone(), transport.clone()).spawn();
    let started = tokio::time::Instant::now();
    let first = driver.submit(sale(&profile, 1500)).await.unwrap();
    assert!(matches!(
        first,
        Outcome::Reversed {
            reason: ReversalReason::NoResponse
        }
    ));
    assert_eq!(first.display_text(), "transaction failed, reversed");
    assert!(started.elapsed() >= Duration::from_secs(30));
    // The next sale waits for the reversal, then is approved.
    let second = driver.submit(sale(&profile, 2000)).await.unwrap();
    assert!(second.is_approved());
    let status = driver.status().await.unwrap();
    assert_eq!(status.pending_reversals, 0);
    assert_eq!(status.stats.reversals_acked, 1);
    let ledger = transport.host.lock().unwrap().ledger().total();
    assert_eq!(ledger, Decimal::new(2000, 2));
    assert_eq!(status.totals.net(), ledger);
    assert!(journal
        .records()
        .iter()
        .any(|r| matches!(r, JournalRecord::ReversalAcked { .. })));
}
