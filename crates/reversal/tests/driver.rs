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

/// A host transport that loses the responses of the first `lose` originals.
fn host_transport(profile: &ReversalProfile, lose: u32) -> Arc<HostTransport> {
    Arc::new(HostTransport {
        profile: profile.clone(),
        host: Mutex::new(ReversalHandler::new(
            profile.clone(),
            MemoryStore::new(),
            HostConfig::default(),
        )),
        mac: Mutex::new(security()),
        lose_originals: AtomicU32::new(lose),
    })
}

#[tokio::test(start_paused = true)]
async fn driver_reverses_a_lost_response_and_reports_it() {
    let profile = ReversalProfile::cup_pos().unwrap();
    let transport = host_transport(&profile, 1);
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

/// Answers from a script: each request takes the next step (then `00` forever).
struct Scripted {
    profile: ReversalProfile,
    script: Mutex<std::collections::VecDeque<Option<&'static str>>>,
    seen: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(steps: &[Option<&'static str>]) -> Arc<Scripted> {
        Arc::new(Scripted {
            profile: ReversalProfile::cup_pos().unwrap(),
            script: Mutex::new(steps.iter().copied().collect()),
            seen: Mutex::new(Vec::new()),
        })
    }
}

impl Transport for Scripted {
    fn request(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Bytes, RequestError>> + Send {
        let req = Message::decode(&self.profile.dialect, msg).unwrap();
        self.seen
            .lock()
            .unwrap()
            .push(req.mti().as_str().to_string());
        let step = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Some("00"));
        let answer = step.map(|code| {
            let mut r = Message::response_to(&req).unwrap();
            for n in [11, 41, 42] {
                if let (Some(v), false) = (req.get(n), r.has(n)) {
                    r.set(n, v).unwrap();
                }
            }
            // "mac!": approved, but MACed under another key.
            let bad_mac = code == "mac!";
            r.set(39, if bad_mac { "00" } else { code }).unwrap();
            // MACed like the host would, except a refusal (no keys for the sender).
            match code {
                "77" => r.to_bytes().unwrap(),
                "mac!" => ProfileMac::new(
                    isoswitch_session::SessionProfile::cup_pos().unwrap(),
                    wrong_mak(),
                )
                .seal(&mut r)
                .unwrap(),
                _ => security().seal(&mut r).unwrap(),
            }
        });
        async move {
            match answer {
                Some(b) => Ok(b),
                None => {
                    tokio::time::sleep(timeout).await;
                    Err(RequestError::Timeout)
                }
            }
        }
    }
}

fn fast_backoff() -> EngineConfig {
    EngineConfig {
        backoff_base: Duration::from_millis(100),
        ..EngineConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn builder_reports_sign_on_once_and_not_acted_outcomes() {
    let profile = ReversalProfile::cup_pos().unwrap();
    let transport = Scripted::new(&[Some("77")]);
    let asked = Arc::new(AtomicU32::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = ReversalEngine::new(fast_backoff(), profile.clone(), security(), 1);
    let a2 = asked.clone();
    let driver = ReversalDriver::builder(engine, MemoryJournal::new(), transport.clone())
        .events(tx)
        .on_sign_on(move |ev| {
            assert!(matches!(ev, EngineEvent::SignOnRequired { code: Some(c), .. } if c == b"77"));
            a2.fetch_add(1, Ordering::SeqCst);
        })
        .spawn();
    let refused = driver.submit_tagged(sale(&profile, 500), 41).await.unwrap();
    assert!(matches!(refused, Outcome::NotActed { code } if &code == b"77"));
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert!(matches!(
        rx.recv().await,
        Some(EngineEvent::SignOnRequired { .. })
    ));
    // Prepared again after the sign-on: approved; nothing was reversed.
    driver.signed_on().await.unwrap();
    let again = driver.submit_tagged(sale(&profile, 500), 41).await.unwrap();
    assert!(again.is_approved());
    let status = driver.status().await.unwrap();
    assert_eq!(status.stats.reversals_sent, 0);
    assert_eq!(status.stats.not_acted, 1);
    assert_eq!(*transport.seen.lock().unwrap(), vec!["0200", "0200"]);
}

#[tokio::test(start_paused = true)]
async fn an_advice_through_the_driver_is_repeated_until_answered() {
    let profile = ReversalProfile::cup_pos().unwrap();
    // Lost, then 91 (retry code), then answered 00.
    let transport = Scripted::new(&[None, Some("91")]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = ReversalEngine::new(fast_backoff(), profile.clone(), security(), 1);
    let driver = ReversalDriver::builder(engine, MemoryJournal::new(), transport.clone())
        .events(tx)
        .spawn();
    let mut refund = sale(&profile, 700);
    refund.set_mti("0220".parse().unwrap());
    refund.set(60, "25000001000").unwrap();
    driver.enqueue(refund, 99).await.unwrap();
    let mut stored = false;
    let outcome = loop {
        match rx.recv().await.unwrap() {
            EngineEvent::AdviceStored { tag: 99, .. } => stored = true,
            EngineEvent::Completed {
                tag: 99, outcome, ..
            } => break outcome,
            _ => {}
        }
    };
    assert!(stored);
    assert!(outcome.is_approved(), "{outcome:?}");
    assert_eq!(
        *transport.seen.lock().unwrap(),
        vec!["0220", "0221", "0221"]
    );
    let status = driver.status().await.unwrap();
    assert_eq!(
        (status.pending_advices, status.stats.reversals_sent),
        (0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_mac_that_does_not_verify_asks_for_a_sign_on_and_is_reversed() {
    let profile = ReversalProfile::cup_pos().unwrap();
    let transport = Scripted::new(&[Some("mac!")]);
    let asked = Arc::new(AtomicU32::new(0));
    let engine = ReversalEngine::new(fast_backoff(), profile.clone(), security(), 1);
    let a2 = asked.clone();
    let driver = ReversalDriver::builder(engine, MemoryJournal::new(), transport.clone())
        .on_sign_on(move |ev| {
            assert!(matches!(ev, EngineEvent::SignOnRequired { code: None, .. }));
            a2.fetch_add(1, Ordering::SeqCst);
        })
        .spawn();
    let outcome = driver.submit(sale(&profile, 800)).await.unwrap();
    assert!(matches!(
        outcome,
        Outcome::Reversed {
            reason: ReversalReason::MacFailure
        }
    ));
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    // The reversal goes out (and is acknowledged) before the next sale.
    assert!(driver
        .submit(sale(&profile, 900))
        .await
        .unwrap()
        .is_approved());
    assert_eq!(
        *transport.seen.lock().unwrap(),
        vec!["0200", "0400", "0200"]
    );
}

/// `reverse_message_tagged` returns only once the reversal is in the journal: a switch
/// may then make its terminal's "reversed" answer durable without a window in which a
/// crash loses the upstream reversal.
#[tokio::test(start_paused = true)]
async fn reverse_message_returns_once_the_reversal_is_journaled() {
    let profile = ReversalProfile::cup_pos().unwrap();
    let transport = host_transport(&profile, 0);
    let journal = MemoryJournal::new();
    let engine = ReversalEngine::new(EngineConfig::default(), profile.clone(), security(), 1);
    let driver = ReversalDriver::builder(engine, journal.clone(), transport).spawn();
    for tag in [7u64, 8, 9] {
        let mut original = sale(&profile, 1500 + tag as i64);
        original.set(11, format!("{:06}", 100 + tag)).unwrap();
        driver
            .reverse_message_tagged(original, ReversalReason::TerminalFailure, tag)
            .await
            .unwrap();
        let journaled = journal
            .records()
            .iter()
            .any(|r| matches!(r, JournalRecord::Started { tag: t, .. } if *t == tag));
        assert!(
            journaled,
            "reversal {tag} not in the journal when the call returned"
        );
    }
}

/// A transport that decodes what it receives (as a net `Client`'s correlator does) and
/// hands the message over with the bytes.
struct Decoding(Arc<HostTransport>);

impl Transport for Decoding {
    fn request(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Bytes, RequestError>> + Send {
        self.0.request(msg, timeout)
    }

    fn request_decoded(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(Bytes, Option<Message>), RequestError>> + Send
    {
        let sent = self.0.request(msg, timeout);
        let dialect = self.0.profile.dialect.clone();
        async move {
            let b = sent.await?;
            let m = Message::decode(&dialect, b.clone()).ok();
            Ok((b, m))
        }
    }
}

/// Counts how answers reach the MAC check.
struct Counting {
    inner: ProfileMac,
    bytes: Arc<AtomicU32>,
    decoded: Arc<AtomicU32>,
}

impl Security for Counting {
    fn seal(&mut self, msg: &mut Message) -> Result<Bytes> {
        self.inner.seal(msg)
    }
    fn verify(&mut self, bytes: &Bytes) -> std::result::Result<Message, Verify> {
        self.bytes.fetch_add(1, Ordering::SeqCst);
        self.inner.verify(bytes)
    }
    fn verify_decoded(&mut self, msg: Message) -> std::result::Result<Message, Verify> {
        self.decoded.fetch_add(1, Ordering::SeqCst);
        self.inner.verify_decoded(msg)
    }
}

#[tokio::test(start_paused = true)]
async fn answers_the_transport_decoded_are_verified_without_a_second_decode() {
    let profile = ReversalProfile::cup_pos().unwrap();
    let host = host_transport(&profile, 1);
    let (bytes, decoded) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let security = Counting {
        inner: security(),
        bytes: bytes.clone(),
        decoded: decoded.clone(),
    };
    let engine = ReversalEngine::new(EngineConfig::default(), profile.clone(), security, 1);
    let driver = ReversalDriver::builder(
        engine,
        MemoryJournal::new(),
        Arc::new(Decoding(host.clone())),
    )
    .spawn();
    // The first sale's answer is lost (reversed: the 0410 comes back decoded), the
    // second is approved.
    assert!(matches!(
        driver.submit(sale(&profile, 1500)).await.unwrap(),
        Outcome::Reversed { .. }
    ));
    assert!(driver
        .submit(sale(&profile, 2000))
        .await
        .unwrap()
        .is_approved());
    assert_eq!(
        host.host.lock().unwrap().ledger().total(),
        Decimal::new(2000, 2)
    );
    assert!(decoded.load(Ordering::SeqCst) >= 2, "the 0410 and the 0210");
    assert_eq!(bytes.load(Ordering::SeqCst), 0, "nothing decoded twice");
}
