#![no_main]
//! `store_records`: see `isoswitch_fuzzing::TARGETS` (the harness's rustdoc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoswitch_fuzzing::target("store_records").map(|t| (t.run)(data));
});
