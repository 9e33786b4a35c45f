//! The switch's rules, each against an in-memory host with the clock paused.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{rig, FakeHost, Rig, PIN};
use isoswitch_codec::Message;
use isoswitch_reversal::{ReversalProfile, ReversalReason};

fn decode(r: &Rig, b: &bytes::Bytes) -> Message {
    Message::decode(&r.terminal.profile().dialect, b.clone()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn admission_codes_97_77_a0_94_30() {
    let mut r = rig().await;
    // Not signed on: 77, and the reply asks the terminal to sign on again.
    let d = r.terminal.profile().dialect.clone();
    let mut m = Message::new(&d, "0200".parse().unwrap());
    m.set(2, common::PAN).unwrap();
    m.set(3, "000000").unwrap();
    m.set(4, "000000001000").unwrap();
    m.set(11, "000001").unwrap();
    m.set(41, "T0000001").unwrap();
    m.set(42, "M00000000000001").unwrap();
    m.set(60, "22000001000").unwrap();
    let reply = r
        .switch
        .handle(m.to_bytes().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decode(&r, &reply.bytes).get(39).as_deref(), Some("77"));
    assert!(reply.sign_on_again);
    // An unknown terminal: 97.
    let mut u = m.clone();
    u.set(41, "T9999999").unwrap();
    let reply = r
        .switch
        .handle(u.to_bytes().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decode(&r, &reply.bytes).get(39).as_deref(), Some("97"));
    // Malformed DE 41: 30.
    let mut bad = m.clone();
    bad.remove(41);
    let reply = r
        .switch
        .handle(bad.to_bytes().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decode(&r, &reply.bytes).get(39).as_deref(), Some("30"));

    r.sign_on().await;
    // A wrong MAC: A0 (and the keys are gone: the next request is 77).
    let (bytes, _) = r.sale(1000);
    let mut tampered = bytes.to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let reply = r.switch.handle(tampered.into()).await.unwrap().unwrap();
    assert_eq!(decode(&r, &reply.bytes).get(39).as_deref(), Some("A0"));
    assert!(
        r.host.seen.lock().unwrap().is_empty(),
        "nothing went upstream"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sale_is_mapped_up_and_its_answer_mapped_back() {
    let mut r = rig().await;
    r.sign_on().await;
    let (bytes, stan) = r.sale(1234);
    let reply = r.send(bytes).await.expect("0210");
    assert_eq!(reply.mti().as_str(), "0210");
    assert_eq!(Rig::code(&reply), "00");
    assert_eq!(reply.get(38).as_deref(), Some("A12345"));
    assert_eq!(reply.get(11), Some(stan.clone()));
    let up = r.host.seen.lock().unwrap()[0].clone();
    assert_eq!(up.dialect().name(), "iso87-binary");
    assert_eq!(up.get(32).as_deref(), Some("00000000001"));
    assert_eq!(up.get(41).as_deref(), Some("T0000001"));
    assert_eq!(up.get(4).as_deref(), Some("000000001234"));
    assert!(up.has(7) && up.has(37) && up.has(52));
    // The host's RRN comes back to the terminal.
    assert_eq!(reply.get(37), up.get(37));
    // The PIN block was translated: the host deciphered the right PIN (it approved).
    assert_eq!(r.host.ledger_total(), rust_decimal::Decimal::new(1234, 2));
}

#[tokio::test(start_paused = true)]
async fn a_pin_block_that_does_not_translate_is_answered_99() {
    let mut r = rig().await;
    r.sign_on().await;
    let (bytes, _) = r.sale(1000);
    // Replace the PIN block by garbage before sealing: build a message by hand.
    let mut m = decode(&r, &bytes);
    m.set_bytes(52, &[0xFF; 8]).unwrap();
    m.remove(64);
    let sealed = r.terminal.seal_request(Instant::now(), m).unwrap();
    let reply = r.send(sealed.bytes).await.expect("answer");
    assert_eq!(Rig::code(&reply), "99");
    assert!(
        r.host.seen.lock().unwrap().is_empty(),
        "nothing went upstream"
    );
}

#[tokio::test(start_paused = true)]
async fn host_timeout_is_98_to_the_terminal_and_exactly_one_upstream_reversal() {
    let mut r = rig().await;
    r.sign_on().await;
    r.host
        .faults
        .drop_answers
        .store(1, std::sync::atomic::Ordering::Relaxed);
    let (bytes, _) = r.sale(5000);
    r.last_sale = Some(decode(&r, &bytes));
    let reply = r.send(bytes).await.expect("answer");
    assert_eq!(Rig::code(&reply), "98");
    // The engine reverses upstream until acknowledged: exactly one 0400 reaches the host.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let c = r.counts();
    assert_eq!(c.get(&200), Some(&1));
    assert_eq!(
        c.get(&400).copied().unwrap_or(0) + c.get(&401).copied().unwrap_or(0),
        1
    );
    assert_eq!(r.host.ledger_total(), rust_decimal::Decimal::ZERO);
    // The terminal's own reversal of it is answered 00 and does not go upstream again.
    let original = bytes_of_last_sale(&r);
    let rev = terminal_reversal(&mut r, &original);
    let reply = r.send(rev).await.expect("0410");
    assert_eq!(Rig::code(&reply), "00");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let c = r.counts();
    assert_eq!(
        c.get(&400).copied().unwrap_or(0) + c.get(&401).copied().unwrap_or(0),
        1
    );
}

fn bytes_of_last_sale(r: &Rig) -> Message {
    // The terminal's original as it sent it: rebuild from what the host saw is not the
    // terminal's dialect; keep the terminal's view instead.
    r.last_sale.clone().expect("a sale was sent")
}

fn terminal_reversal(r: &mut Rig, original: &Message) -> bytes::Bytes {
    let profile = ReversalProfile::cup_pos().unwrap();
    let mut rev = profile
        .build_reversal(original, ReversalReason::NoResponse)
        .unwrap();
    rev.remove(64);
    r.terminal.seal_request(Instant::now(), rev).unwrap().bytes
}

#[tokio::test(start_paused = true)]
async fn a_refund_advice_that_times_out_is_repeated_until_answered_never_reversed() {
    let mut r = rig().await;
    r.sign_on().await;
    r.host
        .faults
        .drop_advices
        .store(3, std::sync::atomic::Ordering::Relaxed);
    let (bytes, _) = r.financial(220, "200000", "25", 700, None);
    // The advice is stored and forwarded: the terminal may get no answer yet.
    let _ = r.switch.handle(bytes.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let c = r.counts();
    assert!(c.get(&220).copied().unwrap_or(0) == 1, "{c:?}");
    assert!(
        c.get(&221).copied().unwrap_or(0) >= 3,
        "repeated as 0221: {c:?}"
    );
    assert_eq!(c.get(&400), None, "an advice is never reversed: {c:?}");
    assert_eq!(c.get(&401), None);
    // The terminal's repeat (0221, same STAN) now gets the stored answer.
    let mut repeat = decode(&r, &bytes);
    repeat.set_mti("0221".parse().unwrap());
    repeat.remove(64);
    let repeat = r
        .terminal
        .seal_request(Instant::now(), repeat)
        .unwrap()
        .bytes;
    let reply = r.switch.handle(repeat).await.unwrap().expect("0230");
    let m = decode(&r, &reply.bytes);
    assert_eq!(m.mti().as_str(), "0230");
    assert_eq!(m.get(39).as_deref(), Some("00"));
    assert_eq!(r.host.ledger_total(), rust_decimal::Decimal::new(-700, 2));
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_sale_gets_94_and_one_upstream_message() {
    let mut r = rig().await;
    r.sign_on().await;
    let (bytes, _) = r.sale(1000);
    let first = r.send(bytes.clone()).await.expect("0210");
    assert_eq!(Rig::code(&first), "00");
    // The very same bytes again (a replay): the session's window answers 94.
    let again = r.switch.handle(bytes).await.unwrap().expect("answer");
    assert_eq!(decode(&r, &again.bytes).get(39).as_deref(), Some("94"));
    assert_eq!(r.counts().get(&200), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_terminal_reversal_after_an_approval_reverses_upstream_once() {
    let mut r = rig().await;
    r.sign_on().await;
    let (bytes, _) = r.sale(2500);
    let sale = decode(&r, &bytes);
    r.last_sale = Some(sale.clone());
    let reply = r.send(bytes).await.expect("0210");
    assert_eq!(Rig::code(&reply), "00");
    let rev = terminal_reversal(&mut r, &sale);
    let ack = r.send(rev.clone()).await.expect("0410");
    assert_eq!(Rig::code(&ack), "00");
    // A repeat of the reversal gets the same answer and does nothing more upstream.
    let rev2 = {
        let mut m = decode(&r, &rev);
        m.set_mti("0401".parse().unwrap());
        m.remove(64);
        r.terminal.seal_request(Instant::now(), m).unwrap().bytes
    };
    let ack2 = r.switch.handle(rev2).await.unwrap().expect("0410");
    assert_eq!(decode(&r, &ack2.bytes).get(39).as_deref(), Some("00"));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let c = r.counts();
    assert_eq!(
        c.get(&400).copied().unwrap_or(0) + c.get(&401).copied().unwrap_or(0),
        1,
        "{c:?}"
    );
    assert_eq!(r.host.ledger_total(), rust_decimal::Decimal::ZERO);
}

/// The engine's journal, checking at every append that the book holds no terminal
/// reversal of an original whose upstream reversal is only now journaled.
struct OrderedJournal {
    inner: isoswitch_reversal::MemoryJournal,
    store: isoswitch_reversal::MemoryDurable,
    upstream_reversals: Arc<std::sync::atomic::AtomicU32>,
    recorded_first: Arc<std::sync::atomic::AtomicU32>,
}

impl isoswitch_reversal::Journal for OrderedJournal {
    fn load(&mut self) -> isoswitch_reversal::Result<Vec<isoswitch_reversal::JournalRecord>> {
        self.inner.load()
    }
    fn append(
        &mut self,
        records: &[isoswitch_reversal::JournalRecord],
    ) -> isoswitch_reversal::Result<()> {
        use isoswitch_reversal::{Finish, IdempotencyStore, JournalRecord, ReversalReason, Store};
        use std::sync::atomic::Ordering;
        for r in records {
            let JournalRecord::Finished {
                id,
                finish:
                    Finish::Reverse {
                        reason: ReversalReason::TerminalFailure,
                    },
            } = r
            else {
                continue;
            };
            let tag = records.iter().find_map(|s| match s {
                JournalRecord::Started { id: i, tag, .. } if i == id => Some(*tag),
                _ => None,
            });
            self.upstream_reversals.fetch_add(1, Ordering::SeqCst);
            // What a crash now would leave of the book.
            let book = self.store.idempotency("terminals").unwrap();
            let reversed = book
                .entries()
                .any(|(k, t)| Some(isoswitch_switch::tag_of(k)) == tag && t.reversal.is_some());
            if reversed {
                self.recorded_first.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.inner.append(records)
    }
    fn compact(
        &mut self,
        live: &[isoswitch_reversal::JournalRecord],
    ) -> isoswitch_reversal::Result<()> {
        self.inner.compact(live)
    }
}

#[tokio::test(start_paused = true)]
async fn a_terminal_reversal_is_journaled_upstream_before_the_book_records_it() {
    use std::sync::atomic::Ordering;
    let store = isoswitch_reversal::MemoryDurable::new();
    let upstream_reversals = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let recorded_first = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let journal = OrderedJournal {
        inner: isoswitch_reversal::MemoryJournal::new(),
        store: store.clone(),
        upstream_reversals: upstream_reversals.clone(),
        recorded_first: recorded_first.clone(),
    };
    let mut r = common::rig_with_journal(FakeHost::new(), store, journal).await;
    r.sign_on().await;
    let (bytes, _) = r.sale(2500);
    let sale = decode(&r, &bytes);
    r.last_sale = Some(sale.clone());
    assert_eq!(Rig::code(&r.send(bytes).await.expect("0210")), "00");
    let rev = terminal_reversal(&mut r, &sale);
    assert_eq!(Rig::code(&r.send(rev).await.expect("0410")), "00");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(upstream_reversals.load(Ordering::SeqCst), 1);
    // Recorded first, a crash between the two would leave the host's approval standing
    // and the terminal's repeat answered 00 from the book with nothing sent upstream.
    assert_eq!(recorded_first.load(Ordering::SeqCst), 0);
    assert_eq!(r.host.ledger_total(), rust_decimal::Decimal::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_terminal_reversal_before_its_original_declines_the_late_original() {
    let mut r = rig().await;
    r.sign_on().await;
    let (bytes, _) = r.sale(2500);
    let sale = decode(&r, &bytes);
    // The reversal arrives first (the original was lost on the terminal hop).
    let rev = terminal_reversal(&mut r, &sale);
    let ack = r.send(rev).await.expect("0410");
    assert_eq!(Rig::code(&ack), "00");
    // Then the original: declined (12), never sent upstream.
    let late = r.switch.handle(bytes).await.unwrap().expect("answer");
    assert_eq!(decode(&r, &late.bytes).get(39).as_deref(), Some("12"));
    assert_eq!(r.counts().get(&200), None);
}

#[tokio::test(start_paused = true)]
async fn a_key_change_while_messages_are_in_flight_gives_no_false_99_or_a0() {
    let mut r = rig().await;
    r.sign_on().await;
    // The host forgets the zone keys (a restarted host): the next request is refused
    // with 77; the switch signs on again and prepares the message under the new keys.
    r.host.forget_keys();
    let (bytes, _) = r.sale(4200);
    let reply = r.send(bytes).await.expect("0210");
    assert_eq!(Rig::code(&reply), "00", "approved after the new sign-on");
    assert!(r.switch.upstream().sign_ons() >= 2);
    assert_eq!(r.host.ledger_total(), rust_decimal::Decimal::new(4200, 2));
    let _ = PIN;
}

/// Runs the library's terminal settlement against the switch.
async fn settle(
    r: &mut Rig,
    totals: isoswitch_reversal::BatchTotals,
    entries: Vec<isoswitch_reversal::UploadEntry>,
) -> isoswitch_reversal::SettlementOutcome {
    let d = r.terminal.profile().dialect.clone();
    let batch = r.terminal.batch().get();
    let stan = r.terminal.next_stan().unwrap().get() + 100;
    let config = isoswitch_reversal::SettlementConfig::new("T0000001", "M00000000000001");
    let mut st =
        isoswitch_reversal::Settlement::new(config, d, batch, totals, entries, stan).unwrap();
    for _ in 0..50 {
        if let Some(o) = st.outcome() {
            return o;
        }
        let now = Instant::now();
        let Some(bytes) = st.poll_transmit(now) else {
            panic!("settlement stalled in {:?}", st.state());
        };
        let reply = r.switch.handle(bytes).await.unwrap().expect("answer");
        st.handle_response(now, reply.bytes).unwrap();
    }
    panic!("settlement did not finish");
}

#[tokio::test(start_paused = true)]
async fn settlement_balanced_and_unbalanced_with_upload() {
    let mut r = rig().await;
    r.sign_on().await;
    let mut totals = isoswitch_reversal::BatchTotals::default();
    let mut entries = Vec::new();
    for a in [1000u64, 2000] {
        let (bytes, stan) = r.sale(a);
        assert_eq!(Rig::code(&r.send(bytes).await.unwrap()), "00");
        let amount = rust_decimal::Decimal::new(a as i64, 2);
        totals.domestic.debit_amount += amount;
        totals.domestic.debit_count += 1;
        entries.push(isoswitch_reversal::UploadEntry {
            foreign: false,
            stan: stan.parse().unwrap(),
            pan: common::PAN.into(),
            amount,
            kind: isoswitch_reversal::TxnKind::Debit,
        });
    }
    let o = settle(&mut r, totals, entries.clone()).await;
    assert!(o.balanced, "{o:?}");
    // The settlement ended with a sign-off (0820/0830): sign on for the next one.
    r.sign_on().await;
    // The terminal's totals disagree (it lost one sale's answer): not balanced; the batch
    // upload follows and the switch compares the uploaded detail.
    let mut wrong = totals;
    wrong.domestic.debit_amount += rust_decimal::Decimal::new(999, 2);
    wrong.domestic.debit_count += 1;
    let o = settle(&mut r, wrong, entries).await;
    assert!(!o.balanced, "{o:?}");
    assert!(o.uploaded > 0, "{o:?}");
}

/// A store shared by two nodes (two handles on one `MemoryDurable` log): the other node
/// admitted a refund advice and died before it journaled it upstream. The terminal's
/// repeats find it open here; while some journal holds its tag nothing is answered; once
/// none does, for two checks a second apart after the wait, it is answered 06 (never
/// reached the host), and the host never sees it.
#[tokio::test(start_paused = true)]
async fn an_advice_a_dead_node_admitted_but_never_sent_is_answered_06_on_a_shared_store() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut r = rig().await;
    r.sign_on().await;
    let (bytes, _) = r.financial(220, "200000", "25", 700, None);
    let advice = decode(&r, &bytes);
    // The dead node's admission, in the shared store.
    let mut other = isoswitch_reversal::ReversalHandler::new(
        ReversalProfile::cup_pos().unwrap(),
        isoswitch_reversal::Store::idempotency(&r.store, "terminals").unwrap(),
        isoswitch_reversal::HostConfig::default(),
    );
    assert!(matches!(
        other.admit(&advice).unwrap(),
        isoswitch_reversal::Admit::Forward(_)
    ));
    let held = Arc::new(AtomicBool::new(true));
    let h = held.clone();
    let _ = r.switch.clone().with_shared_work(
        Arc::new(move |_| Ok(Some(h.load(Ordering::SeqCst)))),
        Duration::from_secs(7),
    );
    let repeat = |r: &mut Rig| {
        let mut m = advice.clone();
        m.set_mti("0221".parse().unwrap());
        m.remove(64);
        r.terminal.seal_request(Instant::now(), m).unwrap().bytes
    };
    // Some journal holds it (a node is forwarding it): no answer, however long.
    for _ in 0..8 {
        let b = repeat(&mut r);
        assert!(r.switch.handle(b).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // No journal holds it any more: the first check only notes it, the next one a
    // second later answers.
    held.store(false, Ordering::SeqCst);
    let b = repeat(&mut r);
    assert!(r.switch.handle(b).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = repeat(&mut r);
    let reply = r.switch.handle(b).await.unwrap().expect("0230");
    let m = decode(&r, &reply.bytes);
    assert_eq!(m.mti().as_str(), "0230");
    assert_eq!(m.get(39).as_deref(), Some("06"));
    // Decided once: the next repeat gets the stored answer; the host never saw it.
    let b = repeat(&mut r);
    let again = r.switch.handle(b).await.unwrap().expect("0230");
    assert_eq!(decode(&r, &again.bytes).get(39).as_deref(), Some("06"));
    let c = r.counts();
    assert_eq!(
        c.get(&220).copied().unwrap_or(0) + c.get(&221).copied().unwrap_or(0),
        0,
        "{c:?}"
    );
}

/// A terminal signs on twice at one node (the first answer lost), then — that node
/// down — at another that never served it. The second node's session must outrank the
/// first node's stored one: a store keeps the newer generation, and a second node
/// counting from 1 would leave the first node's older keys stored, so the terminal's
/// next request at the first node (restarted, or taking the terminal back) would fail
/// its MAC (A0) and force a new sign-on.
#[tokio::test(start_paused = true)]
async fn a_sign_on_at_another_node_outranks_the_session_stored_before_it() {
    use isoswitch_reversal::{SessionStore, Store};
    let store = isoswitch_reversal::MemoryDurable::new();
    let host = FakeHost::new();
    // Both nodes up before the terminal signs on: neither holds a session for it.
    let mut a = common::rig_with(host.clone(), store.clone()).await;
    let mut b = common::rig_with(host.clone(), store.clone()).await;
    a.sign_on().await;
    a.sign_on().await;
    let id = common::terminal_id();
    let stored = |s: &isoswitch_reversal::MemoryDurable| {
        s.sessions("sessions")
            .unwrap()
            .terminal(&id)
            .unwrap()
            .expect("stored")
            .generation
    };
    assert_eq!(stored(&store), 2);
    b.sign_on().await;
    assert_eq!(
        stored(&store),
        3,
        "the second node's sign-on is the stored one"
    );
    // The terminal (under the keys node b gave it) back at node a.
    let (sale, _) = b.sale(1000);
    let reply = a.switch.handle(sale).await.unwrap().expect("0210");
    let m = decode(&b, &reply.bytes);
    assert_eq!(m.get(39).as_deref(), Some("00"), "{m:?}");
    assert!(!reply.sign_on_again);
}

/// Two nodes share one upstream identity (one store). Node a's sign-on gets no answer
/// (the host acted: it now holds keys a never received); node b signs on. Node a's next
/// try adopts b's keys: a sign-on left pending in a's session must not refuse the
/// restore, or a would neither adopt nor sign on while b's keys are stored.
#[tokio::test(start_paused = true)]
async fn a_sign_on_without_an_answer_does_not_stop_the_link_adopting_another_nodes_keys() {
    use std::sync::atomic::Ordering;
    let store = isoswitch_reversal::MemoryDurable::new();
    let sessions: isoswitch_switch::SharedSessions = Arc::new(std::sync::Mutex::new(Box::new(
        isoswitch_reversal::Store::sessions(&store, "sessions").unwrap(),
    )));
    let host = FakeHost::new();
    let a = common::signed_on_link(&host, "host", "a-session", &store, &sessions).await;
    let b = common::signed_on_link(&host, "host", "b-session", &store, &sessions).await;
    host.faults.drop_answers.store(1, Ordering::SeqCst);
    let seen = a.ring().generation();
    assert!(
        a.sign_on(seen, common::local()).await.is_err(),
        "the answer was lost"
    );
    let g = b
        .sign_on(b.ring().generation(), common::local())
        .await
        .unwrap();
    assert!(g > 0);
    let adopted = a.adoptions();
    a.sign_on(a.ring().generation(), common::local())
        .await
        .expect("adopts the keys node b signed on with");
    assert_eq!(a.adoptions(), adopted + 1, "adopted, not signed on again");
    assert_eq!(
        a.ring().current().unwrap().mak.kcv(),
        b.ring().current().unwrap().mak.kcv()
    );
}

/// A session store of one node that shares its snapshots and its sign-on claims with
/// the other nodes (the claim rule of `SessionStore::claim_sign_on`, without a lease);
/// with `refuse_upstream`, its writes of the upstream snapshot fail (a database that
/// refuses them).
struct Claiming {
    inner: isoswitch_reversal::MemorySessions,
    node: &'static str,
    claims: Arc<std::sync::Mutex<Option<&'static str>>>,
    refuse_upstream: bool,
}

impl isoswitch_reversal::SessionStore for Claiming {
    fn terminals(&self) -> isoswitch_reversal::Result<Vec<isoswitch_session::SealedSnapshot>> {
        self.inner.terminals()
    }
    fn terminal(
        &self,
        id: &isoswitch_session::TerminalId,
    ) -> isoswitch_reversal::Result<Option<isoswitch_session::SealedSnapshot>> {
        self.inner.terminal(id)
    }
    fn save(&mut self, s: &[isoswitch_session::SealedSnapshot]) -> isoswitch_reversal::Result<()> {
        self.inner.save(s)
    }
    fn upstream(
        &self,
        link: &str,
    ) -> isoswitch_reversal::Result<Option<isoswitch_session::SealedSnapshot>> {
        self.inner.upstream(link)
    }
    fn save_upstream(
        &mut self,
        link: &str,
        s: &isoswitch_session::SealedSnapshot,
        expected: Option<u64>,
    ) -> isoswitch_reversal::Result<isoswitch_reversal::UpstreamSave> {
        if self.refuse_upstream {
            return Err(isoswitch_reversal::ReversalError::DriverStopped);
        }
        self.inner.save_upstream(link, s, expected)
    }
    fn claim_sign_on(&mut self, _link: &str, _lease: Duration) -> isoswitch_reversal::Result<bool> {
        let mut c = self.claims.lock().unwrap();
        match *c {
            Some(holder) if holder != self.node => Ok(false),
            _ => {
                *c = Some(self.node);
                Ok(true)
            }
        }
    }
    fn release_sign_on(&mut self, _link: &str) -> isoswitch_reversal::Result<()> {
        let mut c = self.claims.lock().unwrap();
        if *c == Some(self.node) {
            *c = None;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_node_does_not_sign_on_while_another_holds_the_claim_and_adopts_its_keys_after() {
    let store = isoswitch_reversal::MemoryDurable::new();
    let shared = isoswitch_reversal::Store::sessions(&store, "sessions").unwrap();
    let claims = Arc::new(std::sync::Mutex::new(None));
    let node = |name: &'static str| -> isoswitch_switch::SharedSessions {
        Arc::new(std::sync::Mutex::new(Box::new(Claiming {
            inner: shared.clone(),
            node: name,
            claims: claims.clone(),
            refuse_upstream: false,
        })))
    };
    let (a_sessions, b_sessions) = (node("a"), node("b"));
    let host = FakeHost::new();
    let a = common::signed_on_link(&host, "host", "a-session", &store, &a_sessions).await;
    assert_eq!(a.sign_ons(), 1);
    assert_eq!(*claims.lock().unwrap(), None, "released after the sign-on");
    // Node b starts after a stored its keys: it adopts them.
    let b = common::signed_on_link(&host, "host", "b-session", &store, &b_sessions).await;
    assert_eq!((b.sign_ons(), b.adoptions()), (0, 1));
    // Node b is signing on (holds the claim) when a's keys are refused: a does not sign
    // on against it.
    assert!(b_sessions
        .lock()
        .unwrap()
        .claim_sign_on("host", Duration::from_secs(3))
        .unwrap());
    let refused = a.ring().generation();
    let e = a.sign_on(refused, common::local()).await.unwrap_err();
    assert!(
        matches!(e, isoswitch_switch::SwitchError::SignOnElsewhere { .. }),
        "{e}"
    );
    assert_eq!(a.sign_ons(), 1, "no second sign-on while b holds the claim");
    // b signs on under its claim, then a adopts b's keys instead of signing on.
    b.sign_on(b.ring().generation(), common::local())
        .await
        .expect("b signs on under its claim");
    assert_eq!(b.sign_ons(), 1);
    assert_eq!(*claims.lock().unwrap(), None);
    a.sign_on(refused, common::local())
        .await
        .expect("a adopts b's keys");
    assert_eq!((a.sign_ons(), a.adoptions()), (1, 1));
    assert_eq!(
        a.ring().current().unwrap().mak.kcv(),
        b.ring().current().unwrap().mak.kcv()
    );
}

#[tokio::test(start_paused = true)]
async fn a_sign_on_whose_keys_cannot_be_stored_is_not_repeated_against_the_host() {
    let store = isoswitch_reversal::MemoryDurable::new();
    let sessions: isoswitch_switch::SharedSessions =
        Arc::new(std::sync::Mutex::new(Box::new(Claiming {
            inner: isoswitch_reversal::Store::sessions(&store, "sessions").unwrap(),
            node: "a",
            claims: Arc::new(std::sync::Mutex::new(None)),
            refuse_upstream: true,
        })));
    let host = FakeHost::new();
    host.refuse_sign_on
        .store(true, std::sync::atomic::Ordering::Release);
    let link = common::signed_on_link(&host, "host", "a-session", &store, &sessions).await;
    host.refuse_sign_on
        .store(false, std::sync::atomic::Ordering::Release);
    let task = tokio::spawn(link.clone().keep_signed_on(common::local));
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Signed on (the keys are in use), the store's write failed: no second 0800 (it
    // would change the host's keys under the traffic).
    assert!(link.ring().current().is_some(), "signed on");
    assert_eq!(link.sign_ons(), 1);
    task.abort();
}
