//! Deterministic tests of the sans-IO engine against the in-process host: made-up
//! instants, no sleeps.

mod common;
use common::*;
use isoswitch_reversal::*;
use rust_decimal::Decimal;
use std::time::Duration;

const SECS31: Duration = Duration::from_secs(31);

#[test]
fn approved_sale_is_journaled_before_it_is_sent() {
    let mut s = Sim::new(EngineConfig::default());
    let id = s.engine.submit(s.now, sale(&s.profile, 1000)).unwrap();
    // Not durable yet: nothing to send.
    let rec = s.engine.poll_journal().unwrap();
    assert!(matches!(rec, JournalRecord::Started { .. }));
    assert!(s.engine.poll_transmit().is_none());
    s.journal.append(&[rec]).unwrap();
    s.engine.handle_journaled(s.now, s.engine.journal_seq());
    let t = s.engine.poll_transmit().unwrap();
    s.deliver(&t);
    assert!(s.outcome_of(id).unwrap().is_approved());
    assert_eq!(s.ledger(), Decimal::new(1000, 2));
    assert_eq!(s.engine.lifetime_net(), Decimal::new(1000, 2));
    assert_eq!(s.engine.pending_reversals(), 0);
}

#[test]
fn response_lost_is_reversed_with_98() {
    let mut s = Sim::new(EngineConfig::default());
    let id = s.submit(2500);
    let t = s.transmit().unwrap();
    let _lost = s.host_answer(&t);
    assert_eq!(s.ledger(), Decimal::new(2500, 2));
    s.advance(SECS31);
    assert!(matches!(
        s.outcome_of(id),
        Some(Outcome::Reversed {
            reason: ReversalReason::NoResponse
        })
    ));
    let r = s.transmit().unwrap();
    assert_eq!(r.kind, TransmitKind::Reversal { attempt: 1 });
    let m = decode(&s.profile, &r.bytes);
    assert_eq!(m.mti().as_str(), "0400");
    assert_eq!(m.get(39).as_deref(), Some("98"));
    assert_eq!(m.get(11), decode(&s.profile, &t.bytes).get(11));
    assert!(m.has(64), "reversal is MACed");
    s.deliver(&r);
    assert_eq!(s.ledger(), Decimal::ZERO);
    assert_eq!(s.engine.pending_reversals(), 0);
    assert_eq!(s.engine.lifetime_net(), Decimal::ZERO);
    assert!(s
        .events
        .iter()
        .any(|e| matches!(e, EngineEvent::ReversalAcknowledged { code, .. } if code == b"00")));
}

#[test]
fn response_late_does_not_cancel_the_reversal() {
    let mut s = Sim::new(EngineConfig::default());
    let id = s.submit(700);
    let t = s.transmit().unwrap();
    let answer = s.host_answer(&t);
    s.advance(SECS31);
    // The approval arrives after the in-doubt decision.
    s.engine.handle_response(s.now, t.id, answer.clone());
    s.engine.handle_late(s.now, answer);
    s.flush();
    assert_eq!(s.engine.stats().late_responses, 2);
    assert!(matches!(s.outcome_of(id), Some(Outcome::Reversed { .. })));
    assert!(s
        .events
        .iter()
        .any(|e| matches!(e, EngineEvent::LateResponse { txn: Some(t), .. } if *t == id)));
    let r = s.transmit().unwrap();
    s.deliver(&r);
    assert_eq!(s.ledger(), Decimal::ZERO);
}

#[test]
fn connection_lost_before_sending_is_not_reversed() {
    let mut s = Sim::new(EngineConfig::default());
    let id = s.submit(700);
    let t = s.transmit().unwrap();
    s.engine
        .handle_send_failed(s.now, t.id, SendFailure::NotSent);
    s.flush();
    assert!(matches!(
        s.outcome_of(id),
        Some(Outcome::NotSent {
            reason: NotSentReason::Rejected
        })
    ));
    assert_eq!(s.engine.pending_reversals(), 0);
    assert!(s.transmit().is_none());
    // And a restart does not reverse it either (its outcome is journaled).
    let e = ReversalEngine::recover(
        s.now,
        EngineConfig::default(),
        s.profile.clone(),
        security(),
        1,
        s.journal.records(),
    )
    .unwrap();
    assert_eq!(e.pending_reversals(), 0);
}

#[test]
fn connection_lost_after_sending_is_reversed() {
    let mut s = Sim::new(EngineConfig::default());
    let id = s.submit(700);
    let t = s.transmit().unwrap();
    let _ = s.host_answer(&t);
    s.engine
        .handle_send_failed(s.now, t.id, SendFailure::ConnectionLost);
    s.flush();
    assert!(matches!(
        s.outcome_of(id),
        Some(Outcome::Reversed {
            reason: ReversalReason::NoResponse
        })
    ));
    let r = s.transmit().unwrap();
    s.deliver(&r);
    assert_eq!(s.ledger(), Decimal::ZERO);
}

#[test]
fn bad_mac_on_the_response_is_reversed_with_a0() {
    let mut s = Sim::new(EngineConfig::default());
    s.host_mac = ProfileMac::new(
        isoswitch_session::SessionProfile::cup_pos().unwrap(),
        wrong_mak(),
    );
    let id = s.submit(990);
    let t = s.transmit().unwrap();
    s.deliver(&t);
    assert!(matches!(
        s.outcome_of(id),
        Some(Outcome::Reversed {
            reason: ReversalReason::MacFailure
        })
    ));
    let r = s.transmit().unwrap();
    assert_eq!(decode(&s.profile, &r.bytes).get(39).as_deref(), Some("A0"));
    // A 0410 with a bad MAC does not acknowledge: the reversal is repeated.
    s.deliver(&r);
    assert_eq!(s.engine.pending_reversals(), 1);
    s.host_mac = security();
    s.advance(Duration::from_secs(1));
    let r2 = s.transmit().unwrap();
    assert_eq!(decode(&s.profile, &r2.bytes).mti().as_str(), "0401");
    s.deliver(&r2);
    assert_eq!(s.engine.pending_reversals(), 0);
    assert_eq!(s.ledger(), Decimal::ZERO);
}

#[test]
fn undecodable_response_is_reversed_with_06() {
    let mut s = Sim::new(EngineConfig::default());
    let id = s.submit(990);
    let t = s.transmit().unwrap();
    s.engine
        .handle_response(s.now, t.id, bytes::Bytes::from_static(b"\x02\x10garbage"));
    s.flush();
    assert!(matches!(
        s.outcome_of(id),
        Some(Outcome::Reversed {
            reason: ReversalReason::Undecodable
        })
    ));
    let r = s.transmit().unwrap();
    assert_eq!(decode(&s.profile, &r.bytes).get(39).as_deref(), Some("06"));
}

fn lose_reversal_n_times(n: u32) -> Sim {
    let mut s = Sim::new(EngineConfig::default());
    s.submit(1234);
    let t = s.transmit().unwrap();
    let _ = s.host_answer(&t);
    s.advance(SECS31);
    for i in 0..n {
        let r = s.transmit().unwrap();
        let expect = if i == 0 { "0400" } else { "0401" };
        assert_eq!(decode(&s.profile, &r.bytes).mti().as_str(), expect);
        assert_eq!(r.kind, TransmitKind::Reversal { attempt: i + 1 });
        if i % 2 == 0 {
            // Lost on the way to the host.
        } else {
            // Reached the host; the 0410 was lost.
            let _ = s.host_answer(&r);
        }
        s.advance(SECS31);
        if i + 1 < 3 {
            // Exponential backoff: 1 s, then 2 s.
            assert!(s.transmit().is_none());
            s.advance(Duration::from_secs(1u64 << i));
        }
    }
    s
}

#[test]
fn reversal_lost_once_then_repeated() {
    let mut s = lose_reversal_n_times(1);
    let r = s.transmit().unwrap();
    assert_eq!(r.kind, TransmitKind::Reversal { attempt: 2 });
    s.deliver(&r);
    assert_eq!(s.engine.pending_reversals(), 0);
    assert_eq!(s.ledger(), Decimal::ZERO);
}

#[test]
fn reversal_lost_twice_then_repeated() {
    let mut s = lose_reversal_n_times(2);
    let r = s.transmit().unwrap();
    assert_eq!(r.kind, TransmitKind::Reversal { attempt: 3 });
    s.deliver(&r);
    assert_eq!(s.engine.pending_reversals(), 0);
    assert_eq!(s.ledger(), Decimal::ZERO);
    assert_eq!(
        s.host.stats().reversals,
        1,
        "the copy that reached the host was applied once"
    );
    assert_eq!(s.host.stats().repeats, 1);
}

#[test]
fn reversal_lost_always_stays_pending_and_blocks_new_sales() {
    let mut s = lose_reversal_n_times(3);
    assert!(s
        .events
        .iter()
        .any(|e| matches!(e, EngineEvent::ReversalDeferred { attempts: 3, .. })));
    assert_eq!(s.engine.pending_reversals(), 1);
    assert!(s.transmit().is_none());
    // A new sale first retries the reversal (POS rule) and does not go out meanwhile.
    let sale2 = s.submit(500);
    let r = s.transmit().unwrap();
    assert!(matches!(r.kind, TransmitKind::Reversal { .. }));
    assert!(
        s.transmit().is_none(),
        "no financial request while a reversal is pending"
    );
    // This round fails too: the sale is refused, not sent.
    s.advance(SECS31);
    for i in 0..2u64 {
        s.advance(Duration::from_secs(60));
        let _ = i;
        if let Some(_r) = s.transmit() {
            s.advance(SECS31);
        }
    }
    assert!(matches!(
        s.outcome_of(sale2),
        Some(Outcome::NotSent {
            reason: NotSentReason::ReversalPending
        })
    ));
    // Next connection: the reversal goes through, then business resumes.
    s.engine.handle_connected(s.now);
    let r = s.transmit().unwrap();
    s.deliver(&r);
    assert_eq!(s.engine.pending_reversals(), 0);
    assert_eq!(s.ledger(), Decimal::ZERO);
    let sale3 = s.submit(800);
    let t = s.transmit().unwrap();
    s.deliver(&t);
    assert!(s.outcome_of(sale3).unwrap().is_approved());
    assert_eq!(s.ledger(), Decimal::new(800, 2));
    assert_eq!(s.engine.lifetime_net(), s.ledger());
}

#[test]
fn switch_mode_sends_reversals_in_parallel() {
    let mut s = Sim::new(EngineConfig::switch());
    s.submit(100);
    let t = s.transmit().unwrap();
    s.advance(Duration::from_secs(11));
    let _ = t;
    let b = s.submit(200);
    let r = s.transmit().unwrap();
    assert!(matches!(r.kind, TransmitKind::Reversal { .. }));
    let t2 = s.transmit().unwrap();
    assert_eq!(t2.kind, TransmitKind::Original);
    s.deliver(&t2);
    s.deliver(&r);
    assert!(s.outcome_of(b).unwrap().is_approved());
    assert_eq!(s.ledger(), Decimal::new(200, 2));
}

#[test]
fn crash_after_send_recovers_a_reversal_before_anything_else() {
    let mut s = Sim::new(EngineConfig::default());
    s.submit(4200);
    let t = s.transmit().unwrap();
    let _ = s.host_answer(&t); // approved at the host; the terminal dies before the answer
    assert_eq!(s.ledger(), Decimal::new(4200, 2));
    let records = s.journal.records();
    s.engine = ReversalEngine::recover(
        s.now,
        EngineConfig::default(),
        s.profile.clone(),
        security(),
        1,
        records,
    )
    .unwrap();
    let evs = s.take_events();
    assert!(matches!(
        evs[0],
        EngineEvent::Recovered {
            reason: ReversalReason::Recovered,
            ..
        }
    ));
    // A new sale is submitted right away, but the reversal goes first.
    let next = s.submit(100);
    let r = s.transmit().unwrap();
    assert!(matches!(r.kind, TransmitKind::Reversal { .. }));
    assert!(s.transmit().is_none());
    s.deliver(&r);
    let t2 = s.transmit().unwrap();
    assert_eq!(t2.kind, TransmitKind::Original);
    let m = decode(&s.profile, &t2.bytes);
    assert_ne!(
        m.get(11),
        decode(&s.profile, &t.bytes).get(11),
        "STAN not reused after a crash"
    );
    s.deliver(&t2);
    assert!(s.outcome_of(next).unwrap().is_approved());
    assert_eq!(s.ledger(), Decimal::new(100, 2));
    assert_eq!(s.engine.lifetime_net(), s.ledger());
}

#[test]
fn crash_before_send_reverses_an_original_the_host_never_saw() {
    let mut s = Sim::new(EngineConfig::default());
    s.submit(4200);
    let _t = s.transmit().unwrap(); // journaled; the process dies before sending
    let records = s.journal.records();
    s.engine = ReversalEngine::recover(
        s.now,
        EngineConfig::default(),
        s.profile.clone(),
        security(),
        1,
        records,
    )
    .unwrap();
    let r = s.transmit().unwrap();
    s.deliver(&r);
    assert_eq!(s.host.stats().unknown_reversals, 1);
    assert_eq!(s.engine.pending_reversals(), 0);
    assert_eq!(s.ledger(), Decimal::ZERO);
}

#[test]
fn approved_then_terminal_failure_is_reversed_with_96() {
    let mut s = Sim::new(EngineConfig::default());
    let id = s.submit(300);
    let t = s.transmit().unwrap();
    s.deliver(&t);
    assert_eq!(s.engine.totals().domestic.debit_count, 1);
    s.engine
        .reverse(s.now, id, ReversalReason::TerminalFailure)
        .unwrap();
    assert_eq!(s.engine.totals().domestic.debit_count, 0);
    let r = s.transmit().unwrap();
    assert_eq!(decode(&s.profile, &r.bytes).get(39).as_deref(), Some("96"));
    s.deliver(&r);
    assert_eq!(s.ledger(), Decimal::ZERO);
}

#[test]
fn compaction_keeps_what_recovery_needs() {
    let mut s = Sim::new(EngineConfig::default());
    for cents in [100, 200] {
        let _ = s.submit(cents);
        let t = s.transmit().unwrap();
        s.deliver(&t);
    }
    s.submit(300);
    let t = s.transmit().unwrap();
    let _ = s.host_answer(&t);
    s.advance(SECS31);
    s.flush();
    let snap = s.engine.snapshot();
    s.journal.compact(&snap).unwrap();
    let e = ReversalEngine::recover(
        s.now,
        EngineConfig::default(),
        s.profile.clone(),
        security(),
        1,
        s.journal.records(),
    )
    .unwrap();
    assert_eq!(e.pending_reversals(), 1);
    assert_eq!(e.totals(), s.engine.totals());
    assert_eq!(e.next_stan(), s.engine.next_stan());
}

/// A switch hands over an original it sent itself (the engine never held it): the
/// reversal is journaled, sent with the original's STAN, and its acknowledgement is
/// reported with the host's `0410`.
#[test]
fn reverse_message_reverses_an_original_the_engine_never_held() {
    let mut s = Sim::new(EngineConfig::switch());
    let mut original = sale(&s.profile, 3300);
    original.set(11, "000777").unwrap();
    // The original reached the host (approved there); its answer never came back.
    let req = original.clone();
    let _ = s
        .host
        .handle(&req, |_, _| Decision::Approve {
            auth_code: Some("654321".into()),
        })
        .unwrap();
    assert_eq!(s.ledger(), Decimal::new(3300, 2));
    let id = s
        .engine
        .reverse_message(s.now, original, ReversalReason::NoResponse)
        .unwrap();
    assert_eq!(s.engine.pending_reversals(), 1);
    assert_eq!(
        s.engine.reversing().map(|(t, _)| t).collect::<Vec<_>>(),
        [id]
    );
    // Nothing leaves before the journal has it.
    assert!(s.engine.poll_transmit().is_none());
    let r = s.transmit().unwrap();
    assert_eq!(r.kind, TransmitKind::Reversal { attempt: 1 });
    let m = decode(&s.profile, &r.bytes);
    assert_eq!(m.mti().as_str(), "0400");
    assert_eq!(m.get(11).as_deref(), Some("000777"));
    s.deliver(&r);
    assert_eq!(s.ledger(), Decimal::ZERO);
    assert_eq!(s.engine.pending_reversals(), 0);
    let ack = s.events.iter().find_map(|e| match e {
        EngineEvent::ReversalAcknowledged {
            txn,
            code,
            response,
            ..
        } if *txn == id => Some((*code, response.mti())),
        _ => None,
    });
    assert_eq!(ack, Some((*b"00", "0410".parse().unwrap())));
    // Totals are the switch's business: untouched.
    assert_eq!(s.engine.lifetime_net(), Decimal::ZERO);
}

#[test]
fn reverse_message_survives_a_restart() {
    let mut s = Sim::new(EngineConfig::switch());
    let mut original = sale(&s.profile, 1200);
    original.set(11, "000888").unwrap();
    let id = s
        .engine
        .reverse_message(s.now, original, ReversalReason::NoResponse)
        .unwrap();
    let r = s.transmit().unwrap();
    let _lost = s.host_answer(&r);
    // Crash: the engine comes back from its journal and still holds the reversal.
    let records = s.journal.records();
    s.engine = ReversalEngine::recover(
        s.now,
        EngineConfig::switch(),
        s.profile.clone(),
        security(),
        1,
        records,
    )
    .unwrap();
    let held: Vec<_> = s.engine.reversing().map(|(t, m)| (t, m.get(11))).collect();
    assert_eq!(held, [(id, Some("000888".to_string()))]);
    let r = s.transmit().unwrap();
    s.deliver(&r);
    assert_eq!(s.engine.pending_reversals(), 0);
    // Acknowledged before the next restart: nothing left to reverse.
    let records = s.journal.records();
    let e = ReversalEngine::recover(
        s.now,
        EngineConfig::switch(),
        s.profile.clone(),
        security(),
        1,
        records,
    )
    .unwrap();
    assert_eq!(e.reversing().count(), 0);
    assert_eq!(e.pending_reversals(), 0);
}

#[test]
fn reversals_in_flight_are_capped() {
    let config = EngineConfig {
        max_reversals_in_flight: 2,
        ..EngineConfig::switch()
    };
    let mut s = Sim::new(config);
    for stan in 1..=5 {
        let mut m = sale(&s.profile, 100 * stan);
        m.set(11, format!("{stan:06}")).unwrap();
        s.engine
            .reverse_message(s.now, m, ReversalReason::NoResponse)
            .unwrap();
    }
    s.flush();
    let first: Vec<Transmit> = std::iter::from_fn(|| s.engine.poll_transmit()).collect();
    assert_eq!(first.len(), 2, "only two reversals at once");
    // One answered: one more may go; one failed: it waits for its backoff, another goes.
    s.deliver(&first[0]);
    let next: Vec<Transmit> = std::iter::from_fn(|| s.engine.poll_transmit()).collect();
    assert_eq!(next.len(), 1);
    s.engine
        .handle_send_failed(s.now, first[1].id, SendFailure::ConnectionLost);
    let more: Vec<Transmit> = std::iter::from_fn(|| s.engine.poll_transmit()).collect();
    assert_eq!(more.len(), 1);
    let mut sent = 0;
    for t in next.iter().chain(&more) {
        s.deliver(t);
        sent += 1;
    }
    // The rest (including the failed one after its backoff) go out two at a time.
    for _ in 0..10 {
        s.advance(Duration::from_millis(1500));
        let batch: Vec<Transmit> = std::iter::from_fn(|| s.engine.poll_transmit()).collect();
        assert!(batch.len() <= 2);
        for t in &batch {
            s.deliver(t);
            sent += 1;
        }
    }
    assert_eq!(sent, 4);
    assert_eq!(s.engine.pending_reversals(), 0);
    assert_eq!(s.engine.stats().reversals_acked, 5);
}
