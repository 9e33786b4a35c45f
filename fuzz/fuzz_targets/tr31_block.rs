//! Fuzz the TR-31 / X9.143 key block parser: any bytes as a key block (parse, then
//! unwrap under a fixed TDES and a fixed AES KBPK) and as a header template. Must
//! never panic; a header that parses must encode back to text that parses to the
//! same header.
#![no_main]

use isoswitch_session::crypto::keys::Key;
use isoswitch_session::crypto::tr31::{self, Header, KeyBlock, KeyOperation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(block) = KeyBlock::parse(&text) {
        for kbpk in [Key::tdes(&[0x11; 16]), Key::aes(&[0x22; 32])].into_iter().flatten() {
            if let Ok(u) = block.unwrap(&kbpk) {
                let _ = u.key_for(KeyOperation::EncryptPin);
            }
        }
    }
    let _ = tr31::unwrap(&Key::des(&[0x33; 8]).expect("key"), &text);
    let _ = Header::parse_prefix(&text);
    if let Ok(h) = Header::parse_template(&text) {
        for op in [KeyOperation::GenerateMac, KeyOperation::Export, KeyOperation::DeriveKeys] {
            let _ = h.permits(op);
        }
        if let Ok(again) = h.encode(h.encoded_len()) {
            assert_eq!(Header::parse_template(&again).ok(), Some(h));
        }
    }
});
