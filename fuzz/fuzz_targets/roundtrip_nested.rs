#![no_main]
//! Arbitrary nested dialects and messages (see `isoswitch_codec::random`): decode → JSON →
//! encode gives the same bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    isoswitch_fuzz::nested(data);
});
