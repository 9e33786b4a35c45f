#![no_main]
//! `store_replay`: see `isoswitch_fuzzing::TARGETS` (the harness's rustdoc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoswitch_fuzzing::target("store_replay").map(|t| (t.run)(data));
});
