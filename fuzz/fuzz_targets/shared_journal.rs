#![no_main]
//! `shared_journal`: see `isoswitch_fuzzing::TARGETS` (the harness's rustdoc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoswitch_fuzzing::target("shared_journal").map(|t| (t.run)(data));
});
