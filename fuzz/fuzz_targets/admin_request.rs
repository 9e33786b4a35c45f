#![no_main]
//! `admin_request`: see `isoswitch_fuzzing::TARGETS` (the harness's rustdoc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoswitch_fuzzing::target("admin_request").map(|t| (t.run)(data));
});
