#![no_main]
//! `config_files`: see `isoswitch_fuzzing::TARGETS` (the harness's rustdoc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoswitch_fuzzing::target("config_files").map(|t| (t.run)(data));
});
