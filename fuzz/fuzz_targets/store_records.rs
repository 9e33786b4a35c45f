//! Fuzz the data directory's other record parsers: counters leases, session-store
//! records and sealed session snapshots (under a fixed key-encryption key), and the
//! damage scan of the record format. Must never panic and never allocate beyond the
//! input.
#![no_main]

use isoswitch_reversal::counters::LeaseRecord;
use isoswitch_reversal::record::{first_valid_record, RecordIter};
use isoswitch_reversal::sessions::SessionRecord;
use isoswitch_session::crypto::Key;
use isoswitch_session::{Kek, SealedSnapshot, TerminalId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = LeaseRecord::decode(data);
    if let Ok(r) = SessionRecord::decode(data) {
        let mut again = Vec::new();
        r.encode(&mut again);
        assert_eq!(SessionRecord::decode(&again).ok(), Some(r));
    }
    let _ = first_valid_record(data, 0);
    for p in RecordIter::new(data).flatten() {
        let _ = LeaseRecord::decode(p);
        let _ = SessionRecord::decode(p);
    }
    if let (Ok(key), Ok(terminal)) = (
        Key::aes(&[0x42; 32]),
        TerminalId::new("TERM0001", "MERCHANT0000001"),
    ) {
        if let Ok(kek) = Kek::new(&key) {
            let sealed = SealedSnapshot {
                terminal,
                generation: 1,
                bytes: data.to_vec(),
            };
            let _ = sealed.open(&kek);
        }
    }
});
