//! Fuzz the journal record parser: any bytes as a journal image (magic + framed
//! records), as one framed record stream, and as one record payload. Must never panic
//! and never allocate beyond the maximum record size.
#![no_main]

use isoswitch_reversal::journal::{parse_image, JournalRecord};
use isoswitch_reversal::record::{RecordIter, MAGIC};
use isoswitch_reversal::StoreRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = JournalRecord::decode(data);
    let _ = StoreRecord::decode(data);
    for item in RecordIter::new(data) {
        if let Ok(p) = item {
            if let Ok(r) = JournalRecord::decode(p) {
                // What decodes survives a round trip.
                let mut again = Vec::new();
                r.encode(&mut again);
                assert_eq!(JournalRecord::decode(&again).ok(), Some(r));
            }
        }
    }
    let mut image = MAGIC.to_vec();
    image.extend_from_slice(data);
    let _ = parse_image(&image);
});
