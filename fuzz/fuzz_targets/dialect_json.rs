#![no_main]
//! `dialect_json`: see `isoswitch_fuzzing::TARGETS` (the harness's rustdoc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoswitch_fuzzing::target("dialect_json").map(|t| (t.run)(data));
});
