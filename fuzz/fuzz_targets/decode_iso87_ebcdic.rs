#![no_main]
//! `decode_iso87_ebcdic`: see `isoswitch_fuzzing::TARGETS` (the harness's rustdoc says what it checks).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoswitch_fuzzing::target("decode_iso87_ebcdic").map(|t| (t.run)(data));
});
