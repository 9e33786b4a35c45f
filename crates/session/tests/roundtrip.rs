//! Property tests: round trips and "any input gives a value or a typed error".

use isoswitch_session::counters::{BatchNumber, CounterState, Counters, MemoryCounters, Stan};
use isoswitch_session::crypto::keys::{decrypt_key_under_as, encrypt_key_under, Key, KeyKind};
use isoswitch_session::crypto::mac::{compute, verify, MacAlgorithm, Padding};
use isoswitch_session::crypto::pin::{translate, Fill, Pan, Pin, PinBlock, PinBlockFormat};
use isoswitch_session::SessionError;
use proptest::prelude::*;

fn des_family_key() -> impl Strategy<Value = Key> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 8),
        proptest::collection::vec(any::<u8>(), 16),
        proptest::collection::vec(any::<u8>(), 24),
    ]
    .prop_map(|b| Key::des_or_tdes(&b).expect("valid length"))
}

fn aes_key() -> impl Strategy<Value = Key> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 16),
        proptest::collection::vec(any::<u8>(), 24),
        proptest::collection::vec(any::<u8>(), 32),
    ]
    .prop_map(|b| Key::aes(&b).expect("valid length"))
}

fn format() -> impl Strategy<Value = PinBlockFormat> {
    prop_oneof![
        Just(PinBlockFormat::Iso0),
        Just(PinBlockFormat::Iso1),
        Just(PinBlockFormat::Iso3),
        Just(PinBlockFormat::Iso4),
    ]
}

fn mac_case() -> impl Strategy<Value = (MacAlgorithm, Key)> {
    use MacAlgorithm::*;
    let padding = prop_oneof![Just(Padding::Method1), Just(Padding::Method2)];
    let b8 = proptest::collection::vec(any::<u8>(), 8);
    let b16 = proptest::collection::vec(any::<u8>(), 16);
    let b24 = proptest::collection::vec(any::<u8>(), 24);
    prop_oneof![
        (padding.clone(), b8.clone()).prop_map(|(p, k)| (CbcDes(p), Key::des(&k).expect("des"))),
        (padding.clone(), prop_oneof![b16.clone(), b24])
            .prop_map(|(p, k)| (CbcTdes(p), Key::tdes(&k).expect("tdes"))),
        (padding, b16.clone()).prop_map(|(p, k)| (X919(p), Key::tdes(&k).expect("tdes"))),
        aes_key().prop_map(|k| (AesCmac, k)),
        prop_oneof![b8, b16].prop_map(|k| (CupPos, Key::des_or_tdes(&k).expect("key"))),
    ]
}

proptest! {
    #[test]
    fn pin_blocks_round_trip(
        fmt in format(),
        pin in "[0-9]{4,12}",
        pan in "[0-9]{12,19}",
        des in des_family_key(),
        aes in aes_key(),
    ) {
        let key = if fmt == PinBlockFormat::Iso4 { &aes } else { &des };
        let pin = Pin::new(&pin).expect("pin");
        let pan = Pan::new(&pan).expect("pan");
        let block = PinBlock::encipher(fmt, &pin, Some(&pan), key, Fill::Random).expect("encipher");
        prop_assert_eq!(block.as_bytes().len(), fmt.block_len());
        prop_assert_eq!(block.decipher(Some(&pan), key).expect("decipher"), pin);
    }

    #[test]
    fn translation_preserves_the_pin(
        from in format(),
        to in format(),
        pin in "[0-9]{4,12}",
        pan in "[0-9]{12,19}",
        des_a in des_family_key(),
        des_b in des_family_key(),
        aes in aes_key(),
    ) {
        let key_for = |f: PinBlockFormat, des: &Key| if f == PinBlockFormat::Iso4 { aes.clone() } else { des.clone() };
        let (from_key, to_key) = (key_for(from, &des_a), key_for(to, &des_b));
        let pin = Pin::new(&pin).expect("pin");
        let pan = Pan::new(&pan).expect("pan");
        let block = PinBlock::encipher(from, &pin, Some(&pan), &from_key, Fill::Random).expect("encipher");
        match translate(&block, Some(&pan), &from_key, to, &to_key) {
            Ok(t) => {
                prop_assert_eq!(t.format(), to);
                prop_assert_eq!(t.decipher(Some(&pan), &to_key).expect("decipher"), pin);
            }
            Err(SessionError::TranslationNotAllowed { .. }) => {
                let one_and_four = [from, to].contains(&PinBlockFormat::Iso1)
                    && [from, to].contains(&PinBlockFormat::Iso4);
                prop_assert!(one_and_four);
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn deciphering_arbitrary_bytes_is_a_pin_or_a_typed_error(
        fmt in format(),
        bytes in proptest::collection::vec(any::<u8>(), 0..20),
        pan in "[0-9]{12,19}",
        des in des_family_key(),
        aes in aes_key(),
    ) {
        let key = if fmt == PinBlockFormat::Iso4 { &aes } else { &des };
        let pan = Pan::new(&pan).expect("pan");
        match PinBlock::from_bytes(fmt, &bytes) {
            Err(e) => prop_assert!(matches!(e, SessionError::BadPinBlockLength { .. }), "{}", e),
            Ok(block) => match block.decipher(Some(&pan), key) {
                Ok(pin) => prop_assert!((4..=12).contains(&pin.len())),
                Err(e) => prop_assert!(matches!(e, SessionError::BadPinBlock { .. }), "{e}"),
            },
        }
    }

    #[test]
    fn pin_and_pan_parsing_never_panics(text in "\\PC{0,24}") {
        match Pin::new(&text) {
            Ok(p) => prop_assert!(text.bytes().all(|b| b.is_ascii_digit()) && p.len() == text.len()),
            Err(e) => prop_assert!(matches!(e, SessionError::BadPinLength { .. } | SessionError::PinNotNumeric), "{}", e),
        }
        match Pan::new(&text) {
            Ok(p) => prop_assert_eq!(p.as_ascii(), text.as_bytes()),
            Err(e) => prop_assert!(matches!(e, SessionError::BadPan { .. }), "{}", e),
        }
    }

    #[test]
    fn macs_verify_and_detect_a_changed_byte(
        (alg, key) in mac_case(),
        data in proptest::collection::vec(any::<u8>(), 1..80),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mac = compute(alg, &key, &data).expect("mac");
        verify(alg, &key, &data, mac.as_bytes()).expect("verify");
        let mut changed = data.clone();
        let i = at.index(changed.len());
        changed[i] ^= flip;
        prop_assert!(matches!(
            verify(alg, &key, &changed, mac.as_bytes()),
            Err(SessionError::MacMismatch)
        ));
    }

    #[test]
    fn key_wrapping_round_trips(master in des_family_key(), kind in prop_oneof![
        Just(KeyKind::Des), Just(KeyKind::Tdes2), Just(KeyKind::Tdes3),
        Just(KeyKind::Aes128), Just(KeyKind::Aes192), Just(KeyKind::Aes256),
    ]) {
        let key = Key::generate(kind).expect("rng");
        let wrapped = encrypt_key_under(&master, &key).expect("wrap");
        let back = decrypt_key_under_as(&master, &wrapped, kind).expect("unwrap");
        prop_assert_eq!(back.kcv(), key.kcv());
    }

    #[test]
    fn stan_sequence_stays_in_range_and_wraps(start in 1u32..=999_999, steps in 0usize..2000) {
        let mut c = MemoryCounters::with_state(CounterState {
            next_stan: Stan::new(start).expect("stan"),
            batch: BatchNumber::FIRST,
            next_rrn: 1,
        }).expect("state");
        for k in 0..steps {
            let s = c.next_stan().expect("stan").get();
            prop_assert!((1..=999_999).contains(&s));
            let expected = (u64::from(start) - 1 + k as u64) % 999_999 + 1;
            prop_assert_eq!(u64::from(s), expected);
        }
    }
}
