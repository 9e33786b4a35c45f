//! Fuzz `PinBlock::from_bytes` and deciphering: any bytes as an enciphered PIN block
//! of each format, deciphered under fixed keys with and without a PAN. Must never
//! panic; a block that deciphers must re-encipher (same format, same key) to one that
//! deciphers to the same PIN.
#![no_main]

use isoswitch_session::crypto::keys::Key;
use isoswitch_session::crypto::pin::{Fill, Pan, PinBlock, PinBlockFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tdes = Key::tdes(&[0x5A; 16]).expect("key");
    let aes = Key::aes(&[0xA5; 16]).expect("key");
    let pan = Pan::new("4111111111111111").expect("pan");
    for format in [
        PinBlockFormat::Iso0,
        PinBlockFormat::Iso1,
        PinBlockFormat::Iso3,
        PinBlockFormat::Iso4,
    ] {
        let Ok(block) = PinBlock::from_bytes(format, data) else {
            continue;
        };
        let key = if format == PinBlockFormat::Iso4 { &aes } else { &tdes };
        let _ = block.decipher(None, key);
        let _ = block.decipher(Some(&pan), &tdes);
        if let Ok(pin) = block.decipher(Some(&pan), key) {
            let again = PinBlock::encipher(format, &pin, Some(&pan), key, Fill::Random).expect("encipher");
            assert!(again.decipher(Some(&pan), key).expect("decipher") == pin);
        }
    }
});
