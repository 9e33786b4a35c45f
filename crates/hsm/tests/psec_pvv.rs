//! Visa PVVs against psec 1.3.0 (`tests/vectors/psec/pvv.json`, made by
//! `scripts/psec/gen_pvv_vectors.py`): session's `visa_pvv` gives psec's value for
//! every case, and SoftHsm verifies a PIN block of the case's PIN against that PVV
//! (and refuses the same block against a different PVV).

use futures::executor::block_on;
use isoswitch_hsm::{KeyUsage, PinReference, PinVerification, SecurityModule, SoftHsm};
use isoswitch_session::crypto::keys::{encrypt_key_under, Key, KeyKind};
use isoswitch_session::crypto::pin::{Fill, Pan, Pin, PinBlock, PinBlockFormat};
use isoswitch_session::crypto::pvv::{visa_pvv, Pvki};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    pvk: String,
    pvki: String,
    pin: String,
    pan: String,
    pvv: String,
}

#[derive(Deserialize)]
struct Doc {
    cases: Vec<Case>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn pvv_matches_psec_and_softhsm_verifies() {
    let doc: Doc = serde_json::from_str(include_str!("vectors/psec/pvv.json")).unwrap();
    assert!(doc.cases.len() >= 200);
    let lmk_clear = unhex("0123456789ABCDEFFEDCBA9876543210");
    let hsm = SoftHsm::from_master_key_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
    let lmk = Key::tdes(&lmk_clear).unwrap();
    // The PIN blocks are made under a known ZPK, loaded from its LMK encryption.
    let zpk_clear = Key::tdes(&[0x5B; 16]).unwrap();
    let zpk_known = hsm
        .load_key(
            &isoswitch_hsm::EncryptedKey::new(
                KeyKind::Tdes2,
                &encrypt_key_under(&lmk, &zpk_clear).unwrap(),
            )
            .unwrap(),
            KeyUsage::ZonePin,
        )
        .unwrap();
    for (i, c) in doc.cases.iter().enumerate() {
        let pvk_clear = Key::tdes(&unhex(&c.pvk)).unwrap();
        let pan = Pan::new(&c.pan).unwrap();
        let pin = Pin::new(&c.pin).unwrap();
        let pvki = Pvki::from_ascii(c.pvki.as_bytes()[0]).unwrap();
        let pvv: [u8; 4] = c.pvv.as_bytes().try_into().unwrap();
        assert_eq!(
            visa_pvv(&pvk_clear, &pan, pvki, &pin).unwrap(),
            pvv,
            "case {i}"
        );

        let pvk = hsm
            .load_key(
                &isoswitch_hsm::EncryptedKey::new(
                    pvk_clear.kind(),
                    &encrypt_key_under(&lmk, &pvk_clear).unwrap(),
                )
                .unwrap(),
                KeyUsage::PinVerification,
            )
            .unwrap();
        let block = PinBlock::encipher(
            PinBlockFormat::Iso0,
            &pin,
            Some(&pan),
            &zpk_clear,
            Fill::Random,
        )
        .unwrap();
        let verify = |pvv| {
            block_on(hsm.verify_pin(PinVerification {
                key: zpk_known,
                block: &block,
                pan: &pan,
                reference: PinReference::VisaPvv { pvk, pvki, pvv },
            }))
            .unwrap()
        };
        assert!(verify(pvv), "case {i}");
        let mut other = pvv;
        other[3] = b'0' + (other[3] - b'0' + 1) % 10;
        assert!(!verify(other), "case {i}");
        hsm.delete_key(pvk);
    }
}
