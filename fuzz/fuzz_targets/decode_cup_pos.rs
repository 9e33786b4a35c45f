#![no_main]
//! `decode_cup_pos`: see `isoswitch_fuzzing::TARGETS` (the harness's rustdoc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoswitch_fuzzing::target("decode_cup_pos").map(|t| (t.run)(data));
});
