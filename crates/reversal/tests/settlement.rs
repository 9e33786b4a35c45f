//! Settlement: terminal `Settlement` against `HostSettlement`, balanced and not (batch
//! upload), then batch close in the journal.

mod common;
use bytes::Bytes;
use common::*;
use isoswitch_codec::Message;
use isoswitch_reversal::*;
use std::time::Duration;

fn sim_with_sales(n: i64) -> Sim {
    let mut s = Sim::new(EngineConfig::default());
    for i in 0..n {
        s.submit(1000 + i);
        let t = s.transmit().unwrap();
        s.deliver(&t);
    }
    s
}

/// Runs a settlement to its end; returns the messages the terminal sent.
fn settle(s: &mut Sim, host: &mut HostSettlement) -> (SettlementOutcome, Vec<Message>) {
    let (totals, entries) = s.engine.settlement_data().unwrap();
    let mut st = Settlement::new(
        SettlementConfig::new("TERM0001", "MERCHANT0000001"),
        s.profile.dialect.clone(),
        s.engine.batch(),
        totals,
        entries,
        s.engine.next_stan(),
    )
    .unwrap();
    let mut sent = Vec::new();
    let mut lost_once = false;
    while st.state() != SettlementState::Done {
        assert_ne!(st.state(), SettlementState::Failed);
        let Some(b) = st.poll_transmit(s.now) else {
            s.now += Duration::from_secs(31);
            st.handle_timeout(s.now);
            continue;
        };
        let req = decode(&s.profile, &b);
        sent.push(req.clone());
        let resp = if req.mti().as_u16() == 820 {
            let mut r = Message::response_to(&req).unwrap();
            r.set(39, "00").unwrap();
            r
        } else {
            host.handle(&req).unwrap()
        };
        if !lost_once {
            // The first answer is lost: the same message is sent again.
            lost_once = true;
            continue;
        }
        st.handle_response(s.now, resp.to_bytes().unwrap()).unwrap();
    }
    (st.outcome().unwrap(), sent)
}

#[test]
fn balanced_settlement_signs_off_and_closes_the_batch() {
    let mut s = sim_with_sales(3);
    let host_totals = s.host.batch_totals("TERM0001", "MERCHANT0000001", 1);
    assert_eq!(host_totals, s.engine.totals());
    let mut hs = HostSettlement::new(host_totals);
    let (outcome, sent) = settle(&mut s, &mut hs);
    assert!(outcome.balanced);
    assert_eq!(outcome.uploaded, 0);
    let mtis: Vec<_> = sent.iter().map(|m| m.mti().as_u16()).collect();
    assert_eq!(mtis, vec![500, 500, 820]);
    assert_eq!(sent[0].get(60).as_deref(), Some("00000001201"));
    assert_eq!(sent[0].get(48).unwrap().len(), 62);
    assert_eq!(&sent[0].get(48).unwrap()[..15], "000000003003003");
    s.engine.close_batch(outcome.next_batch).unwrap();
    s.flush();
    assert_eq!(s.engine.batch(), 2);
    assert_eq!(s.engine.totals(), BatchTotals::default());
    assert_eq!(s.engine.lifetime_net(), s.ledger());
    let e = ReversalEngine::recover(
        s.now,
        EngineConfig::default(),
        s.profile.clone(),
        security(),
        1,
        s.journal.records(),
    )
    .unwrap();
    assert_eq!(e.batch(), 2);
    assert_eq!(e.lifetime_net(), s.ledger());
    assert!(e.settlement_data().unwrap().1.is_empty());
}

#[test]
fn unbalanced_settlement_uploads_every_transaction() {
    let mut s = sim_with_sales(10);
    let mut host_totals = s.host.batch_totals("TERM0001", "MERCHANT0000001", 1);
    host_totals.domestic.debit_count -= 1; // the host disagrees
    let mut hs = HostSettlement::new(host_totals);
    let (outcome, sent) = settle(&mut s, &mut hs);
    assert!(!outcome.balanced);
    assert_eq!(outcome.uploaded, 10);
    assert_eq!(outcome.balanced_after_upload, Some(true));
    let mtis: Vec<_> = sent.iter().map(|m| m.mti().as_u16()).collect();
    assert_eq!(mtis, vec![500, 500, 320, 320, 320, 500, 820]);
    let up = &sent[2];
    assert_eq!(up.get(60).as_deref(), Some("00000001201"));
    assert_eq!(&up.get(48).unwrap()[..2], "08");
    assert_eq!(up.get(48).unwrap().len(), 2 + 8 * 40);
    assert_eq!(&sent[3].get(48).unwrap()[..2], "02");
    assert_eq!(sent[4].get(60).as_deref(), Some("00000001202"));
    assert_eq!(sent[4].get(48).as_deref(), Some("0010"));
    assert_eq!(hs.uploaded().len(), 10);
    assert_eq!(hs.uploaded()[0].pan, PAN);
}

#[test]
fn settlement_waits_for_pending_reversals() {
    let mut s = sim_with_sales(1);
    s.submit(500);
    let _t = s.transmit().unwrap();
    s.advance(Duration::from_secs(31));
    assert!(matches!(
        s.engine.settlement_data(),
        Err(ReversalError::Settlement { .. })
    ));
    let r = s.transmit().unwrap();
    s.deliver(&r);
    assert!(s.engine.settlement_data().is_ok());
}

#[test]
fn settlement_answer_for_another_message_is_ignored() {
    let s = sim_with_sales(1);
    let (totals, entries) = s.engine.settlement_data().unwrap();
    let mut st = Settlement::new(
        SettlementConfig::new("TERM0001", "MERCHANT0000001"),
        s.profile.dialect.clone(),
        1,
        totals,
        entries,
        50,
    )
    .unwrap();
    let _ = st.poll_transmit(s.now).unwrap();
    assert!(st
        .handle_response(s.now, Bytes::from_static(b"\x05\x10"))
        .is_err());
    assert_eq!(st.state(), SettlementState::Settling);
}

/// A settlement of `sales` sales of batch 1 started over `s`.
fn started(sales: i64) -> (Sim, Settlement) {
    let s = sim_with_sales(sales);
    let (totals, entries) = s.engine.settlement_data().unwrap();
    let config = SettlementConfig::new("TERM0001", "MERCHANT0000001");
    let st = Settlement::new(config, s.profile.dialect.clone(), 1, totals, entries, 50).unwrap();
    (s, st)
}

/// Sends the settlement's next message and answers it with `code` in DE 39 (and `f48`);
/// returns the MTI sent.
fn answer_next(s: &Sim, st: &mut Settlement, code: &str, f48: Option<String>) -> u16 {
    let b = st.poll_transmit(s.now).unwrap();
    let req = decode(&s.profile, &b);
    let mut answer = Message::response_to(&req).unwrap();
    answer.set(39, code).unwrap();
    if let Some(f) = f48 {
        answer.set(48, f).unwrap();
    }
    st.handle_response(s.now, answer.to_bytes().unwrap())
        .unwrap();
    req.mti().as_u16()
}

/// A 0510 that refuses the 0500 (here `77`, no DE 48: the terminal is not signed on at
/// the host, as after the sign-off that ends the previous batch's settlement) ends the
/// settlement at once with the code, for the caller to sign on and settle again: the same
/// 0500 would only be refused again. Nothing more is sent and nothing is awaited (it never
/// stalls).
#[test]
fn a_refused_settlement_message_fails_at_once_with_its_code() {
    let (s, mut st) = started(1);
    assert_eq!(answer_next(&s, &mut st, "77", None), 500);
    assert_eq!(st.state(), SettlementState::Failed);
    assert_eq!(st.refused(), Some(*b"77"));
    assert!(st.poll_transmit(s.now).is_none());
    assert!(st.poll_timeout().is_none());
    assert!(st.outcome().is_none());
}

/// A 0510 answering "out of balance" with the comparison in DE 48 starts the upload,
/// whether its DE 39 is `00` or `95` (a result, not a refusal); an upload `0320` then
/// refused (`77`) is not an upload: the settlement fails with the code instead of going
/// on as if the host had taken the entries.
#[test]
fn an_out_of_balance_answer_starts_the_upload_and_a_refused_upload_is_not_counted() {
    for code in ["00", "95"] {
        let (s, mut st) = started(3);
        let unbalanced = BatchTotals::default().to_field48(2, 0);
        assert_eq!(answer_next(&s, &mut st, code, Some(unbalanced)), 500);
        assert_eq!(st.state(), SettlementState::Uploading, "answered {code}");
        assert_eq!(st.refused(), None);
        assert_eq!(answer_next(&s, &mut st, "77", None), 320);
        assert_eq!(st.state(), SettlementState::Failed);
        assert_eq!(st.refused(), Some(*b"77"));
        assert!(st.outcome().is_none());
    }
}
