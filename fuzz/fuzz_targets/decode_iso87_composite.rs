#![no_main]
//! Arbitrary bytes decoded in `iso87-composite` (nested DE 48, 62, 127) must never panic;
//! every subfield is found by its path, and a decoded message round-trips its values
//! through the JSON form.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    isoswitch_fuzz::decode("iso87-composite", data);
    isoswitch_fuzz::roundtrip("iso87-composite", data);
});
