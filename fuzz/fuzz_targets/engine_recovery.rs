#![no_main]
//! `engine_recovery`: see `isoswitch_fuzzing::TARGETS` (the harness's rustdoc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoswitch_fuzzing::target("engine_recovery").map(|t| (t.run)(data));
});
