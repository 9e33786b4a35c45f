#![no_main]
//! `roundtrip_nested`: see `isoswitch_fuzzing::TARGETS` (the harness's rustdoc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoswitch_fuzzing::target("roundtrip_nested").map(|t| (t.run)(data));
});
