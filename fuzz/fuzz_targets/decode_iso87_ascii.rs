#![no_main]
//! Arbitrary bytes decoded in `iso87-ascii` must never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    isoswitch_fuzz::decode("iso87-ascii", data);
});
