#![no_main]
//! Arbitrary text as a dialect description (JSON and TOML) must never panic; a dialect
//! that loads must decode arbitrary bytes without panicking either.
use isoswitch_codec::{Dialect, MessageView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (def, msg) = text.split_once('\u{0}').unwrap_or((text, ""));
    for d in [Dialect::from_json(def), Dialect::from_toml(def)].into_iter().flatten() {
        let _ = MessageView::decode(&d, msg.as_bytes());
    }
});
