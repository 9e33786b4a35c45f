//! Shared helpers for the Thales tests: known clear test keys encrypted under a known
//! LMK, as an operator's key ceremony would produce them.
#![allow(dead_code)]

use isoswitch_hsm::EncryptedKey;
use isoswitch_session::crypto::keys::{encrypt_key_under, Key};

/// pythales' default LMK (`HSM()` without `key=`), used by every Thales test.
pub const LMK_HEX: &str = "deafbeedeafbeedeafbeedeafbeedeaf";

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn lmk() -> Key {
    Key::tdes(&unhex(LMK_HEX)).unwrap()
}

/// `clear` encrypted under `kek` (ECB) as an `EncryptedKey`.
pub fn under(kek: &Key, clear: &Key) -> EncryptedKey {
    EncryptedKey::new(clear.kind(), &encrypt_key_under(kek, clear).unwrap()).unwrap()
}

/// A clear TDES key with odd parity from a byte pattern.
pub fn tdes(pattern: &str) -> Key {
    Key::tdes(&unhex(pattern)).unwrap()
}

pub const TPK: &str = "0123456789ABCDEFFEDCBA9876543210";
pub const ZPK: &str = "89ABCDEF01234567FEDCBA9876543210";
pub const ZMK: &str = "C1D0F8FB4958670DBA40AB1F3752EF0D";
pub const TMK: &str = "1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A";
pub const PVK: &str = "0123456789ABCDEFFEDCBA9876543210";
pub const TAK: &str = "E6F1EC07E0B7E57CDF6D1EF25E70D3AB";

/// Checks `verify_pin` through `module` for PIN blocks under each of `keys` (handle
/// and clear key): `good` must verify against the PVV reference, `bad` must not.
pub async fn assert_pvv_verification<M: isoswitch_hsm::SecurityModule>(
    module: &M,
    keys: &[(isoswitch_hsm::KeyHandle, Key)],
    pan: &isoswitch_session::crypto::pin::Pan,
    reference: isoswitch_hsm::PinReference,
    good: &str,
    bad: &str,
) {
    use isoswitch_session::crypto::pin::{Fill, Pin, PinBlock, PinBlockFormat};
    for (key, clear) in keys {
        for (pin, expected) in [(good, true), (bad, false)] {
            let block = PinBlock::encipher(
                PinBlockFormat::Iso0,
                &Pin::new(pin).unwrap(),
                Some(pan),
                clear,
                Fill::Random,
            )
            .unwrap();
            let ok = module
                .verify_pin(isoswitch_hsm::PinVerification {
                    key: *key,
                    block: &block,
                    pan,
                    reference,
                })
                .await
                .unwrap();
            assert_eq!(ok, expected, "PIN {pin} under {key}");
        }
    }
}

/// A translation request from the key `source` with the block's PAN.
pub fn translation<'a>(
    source: isoswitch_hsm::KeyHandle,
    block: &'a isoswitch_session::crypto::pin::PinBlock,
    pan: &'a isoswitch_session::crypto::pin::Pan,
    destination: isoswitch_hsm::KeyHandle,
    to_format: isoswitch_session::crypto::pin::PinBlockFormat,
) -> isoswitch_hsm::PinTranslation<'a> {
    isoswitch_hsm::PinTranslation {
        source: isoswitch_hsm::PinSource::Key(source),
        block,
        pan: Some(pan),
        destination,
        to_format,
    }
}
