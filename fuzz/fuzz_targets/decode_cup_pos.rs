#![no_main]
//! Arbitrary bytes decoded in `cup-pos` must never panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    isoswitch_fuzz::decode("cup-pos", data);
});
