//! Sensitive authentication data (tracks, PIN block) never reaches the journal, while
//! everything a reversal needs does.

use isoswitch_codec::Message;
use isoswitch_reversal::{EngineConfig, JournalRecord, NoMac, ReversalEngine, ReversalProfile};
use std::time::Instant;

#[test]
fn started_records_carry_no_track_or_pin_block() {
    let profile = ReversalProfile::cup_pos().unwrap();
    let dialect = profile.dialect.clone();
    let mut engine = ReversalEngine::new(
        EngineConfig::default(),
        profile,
        NoMac::new(dialect.clone()),
        1,
    );
    let mut sale = Message::new(&dialect, "0200".parse().unwrap());
    sale.set(2, "6222021234567890")
        .unwrap()
        .set(3, "000000")
        .unwrap()
        .set(4, "000000001000")
        .unwrap()
        .set(22, "021")
        .unwrap()
        .set(35, "6222021234567890=28122011758928889")
        .unwrap()
        .set(41, "TERM0001")
        .unwrap()
        .set(42, "MERCHANT0000001")
        .unwrap()
        .set(49, "156")
        .unwrap();
    sale.set_bytes(52, &[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF])
        .unwrap();
    let t0 = Instant::now();
    engine.submit(t0, sale).unwrap();
    let recs: Vec<_> = std::iter::from_fn(|| engine.poll_journal()).collect();
    let started: Vec<_> = recs
        .iter()
        .filter_map(|r| match r {
            JournalRecord::Started { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 1);
    let stored = Message::decode(&dialect, started[0].clone()).unwrap();
    assert!(!stored.has(35) && !stored.has(52), "{stored:?}");
    assert_eq!(stored.get(2).as_deref(), Some("6222021234567890"));
    assert_eq!(stored.get(4).as_deref(), Some("000000001000"));
    // the original still goes out whole
    engine.handle_journaled(t0, engine.journal_seq());
    let tx = engine.poll_transmit().unwrap();
    let sent = Message::decode(&dialect, tx.bytes.clone()).unwrap();
    assert!(sent.has(35) && sent.has(52));
}
