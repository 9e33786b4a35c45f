#![no_main]
//! decode → encode → decode gives the same message, in every built-in dialect (the first
//! byte picks the dialect).
use libfuzzer_sys::fuzz_target;

const DIALECTS: [&str; 5] = ["iso87-ascii", "iso87-binary", "iso87-ebcdic", "iso93-ascii", "cup-pos"];

fuzz_target!(|data: &[u8]| {
    if let Some((&pick, rest)) = data.split_first() {
        isoswitch_fuzz::roundtrip(DIALECTS[pick as usize % DIALECTS.len()], rest);
    }
});
