#![no_main]
//! `tr31_block`: see `isoswitch_fuzzing::TARGETS` (the harness's rustdoc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoswitch_fuzzing::target("tr31_block").map(|t| (t.run)(data));
});
