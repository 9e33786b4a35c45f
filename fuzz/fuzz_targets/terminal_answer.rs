#![no_main]
//! `terminal_answer`: see `isoswitch_fuzzing::TARGETS` (the harness's rustdoc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoswitch_fuzzing::target("terminal_answer").map(|t| (t.run)(data));
});
