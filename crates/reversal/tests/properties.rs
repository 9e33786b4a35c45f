//! Property tests: parsers of disk and peer data never panic; any schedule of lost,
//! late, corrupted messages and crashes ends with the host ledger equal to the
//! terminal's approved-minus-reversed total.

mod common;
use common::*;
use isoswitch_codec::Message;
use isoswitch_reversal::journal::parse_image;
use isoswitch_reversal::record::{self, MAGIC};
use isoswitch_reversal::settlement::parse_upload_field48;
use isoswitch_reversal::*;
use proptest::prelude::*;
use std::time::Duration;

proptest! {
    #[test]
    fn journal_parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = JournalRecord::decode(&data);
        let _ = StoreRecord::decode(&data);
        let mut image = MAGIC.to_vec();
        image.extend_from_slice(&data);
        let _ = parse_image(&image);
    }

    #[test]
    fn truncated_or_flipped_journal_keeps_a_prefix(cut in 0usize..2000, flip in 0usize..2000) {
        let mut image = MAGIC.to_vec();
        let mut all = Vec::new();
        for i in 0..10u64 {
            let r = JournalRecord::ReversalAcked { id: i, code: *b"00" };
            let mut p = Vec::new();
            r.encode(&mut p);
            record::frame(&p, &mut image).unwrap();
            all.push(r);
        }
        let mut bad = image.clone();
        if flip < bad.len() && flip >= MAGIC.len() {
            bad[flip] ^= 0x40;
        }
        bad.truncate(cut.max(MAGIC.len()));
        let (got, _) = parse_image(&bad).unwrap();
        prop_assert!(got.len() <= all.len());
        prop_assert_eq!(&got[..], &all[..got.len()]);
    }

    #[test]
    fn settlement_parsers_never_panic(s in "\\PC{0,400}") {
        let _ = BatchTotals::parse_field48(&s);
        let _ = parse_upload_field48(&s);
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Deliver,
    LoseRequest,
    LoseResponse,
    Late,
    BadMac,
    Crash,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        6 => Just(Fault::Deliver),
        1 => Just(Fault::LoseRequest),
        1 => Just(Fault::LoseResponse),
        1 => Just(Fault::Late),
        1 => Just(Fault::BadMac),
        1 => Just(Fault::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_fault_schedule_keeps_the_ledgers_equal(
        faults in proptest::collection::vec(fault(), 1..80),
        switch in any::<bool>(),
    ) {
        let config = if switch { EngineConfig::switch() } else { EngineConfig::default() };
        let mut s = Sim::new(config.clone());
        let mut late = Vec::new();
        let mut submitted = 0;
        for f in faults {
            if s.engine.in_flight() == 0 && submitted < 20 {
                submitted += 1;
                s.submit(100 + submitted);
            }
            s.flush();
            let Some(t) = s.engine.poll_transmit() else {
                s.advance(Duration::from_secs(61));
                s.engine.handle_connected(s.now);
                for b in late.drain(..) {
                    s.engine.handle_late(s.now, b);
                }
                continue;
            };
            match f {
                Fault::Deliver => s.deliver(&t),
                Fault::LoseRequest => {}
                Fault::LoseResponse => { let _ = s.host_answer(&t); }
                Fault::Late => late.push(s.host_answer(&t)),
                Fault::BadMac => {
                    let mut v = s.host_answer(&t).to_vec();
                    if let Some(b) = v.last_mut() { *b ^= 1; }
                    s.engine.handle_response(s.now, t.id, v.into());
                }
                Fault::Crash => {
                    let _ = s.host_answer(&t);
                    // Unflushed records are lost with the process.
                    s.engine = ReversalEngine::recover(s.now, config.clone(), s.profile.clone(), security(), 1, s.journal.records()).unwrap();
                }
            }
        }
        // Calm network until everything is settled.
        for _ in 0..200 {
            s.flush();
            while let Some(t) = s.engine.poll_transmit() {
                s.deliver(&t);
            }
            if s.engine.pending_reversals() == 0 && s.engine.in_flight() == 0 {
                break;
            }
            s.advance(Duration::from_secs(61));
            s.engine.handle_connected(s.now);
        }
        prop_assert_eq!(s.engine.pending_reversals(), 0);
        prop_assert_eq!(s.ledger(), s.engine.lifetime_net());
        let _ = Message::new(&s.profile.dialect, "0200".parse().unwrap());
    }
}
