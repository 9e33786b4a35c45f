//! Checks the crate against vectors from independent implementations (psec 1.3.0 and
//! `cryptography` from PyPI), made by `scripts/psec/gen_vectors.py` and committed under
//! `tests/vectors/psec/`. No Python is needed to run these tests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use isoswitch_session::crypto::kcv::{Kcv, KcvMethod};
use isoswitch_session::crypto::keys::{decrypt_key_under, encrypt_key_under, Key, KeyKind};
use isoswitch_session::crypto::mac::{compute, verify, MacAlgorithm, Padding};
use isoswitch_session::crypto::pin::{translate, Fill, Pan, Pin, PinBlock, PinBlockFormat};
use isoswitch_session::SessionError;
use serde::Deserialize;

const MIN_CASES: usize = 200;

#[derive(Deserialize)]
struct File<C> {
    generator: String,
    oracle: String,
    cases: Vec<C>,
}

fn load<C: for<'de> Deserialize<'de>>(name: &str) -> File<C> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/psec")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: File<C> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(file.generator, "scripts/psec/gen_vectors.py");
    assert!(!file.oracle.is_empty());
    file
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct MacCase {
    algorithm: String,
    key: String,
    data: String,
    mac: String,
}

/// A key constructor.
type MakeKey = fn(&[u8]) -> Result<Key, SessionError>;

fn mac_algorithm(name: &str) -> (MacAlgorithm, MakeKey) {
    use MacAlgorithm::*;
    use Padding::*;
    match name {
        "cbc_des_p1" => (CbcDes(Method1), Key::des),
        "cbc_des_p2" => (CbcDes(Method2), Key::des),
        "cbc_tdes2_p1" | "cbc_tdes3_p1" => (CbcTdes(Method1), Key::tdes),
        "cbc_tdes2_p2" | "cbc_tdes3_p2" => (CbcTdes(Method2), Key::tdes),
        "x919_p1" => (X919(Method1), Key::tdes),
        "x919_p2" => (X919(Method2), Key::tdes),
        "aes_cmac_128" | "aes_cmac_192" | "aes_cmac_256" => (AesCmac, Key::aes),
        "cup_pos_des" | "cup_pos_tdes2" => (CupPos, Key::des_or_tdes),
        other => panic!("unknown algorithm {other}"),
    }
}

#[test]
fn mac_vectors_match_oracle() {
    let file: File<MacCase> = load("mac.json");
    let mut counts = BTreeMap::new();
    for c in &file.cases {
        let (alg, make_key) = mac_algorithm(&c.algorithm);
        let key = make_key(&hex(&c.key)).expect("key");
        let data = hex(&c.data);
        let got = compute(alg, &key, &data).expect("mac");
        assert_eq!(
            got.to_hex(),
            c.mac,
            "{} key {} data {}",
            c.algorithm,
            c.key,
            c.data
        );
        verify(alg, &key, &data, &hex(&c.mac)).expect("verify");
        *counts.entry(c.algorithm.as_str()).or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), 13, "{counts:?}");
    for (alg, n) in counts {
        assert!(n >= MIN_CASES, "{alg}: {n}");
    }
}

#[test]
fn mac_vectors_reject_any_altered_mac() {
    let file: File<MacCase> = load("mac.json");
    for c in file.cases.iter().step_by(7) {
        let (alg, make_key) = mac_algorithm(&c.algorithm);
        let key = make_key(&hex(&c.key)).expect("key");
        let mut mac = hex(&c.mac);
        let last = mac.len() - 1;
        mac[last] ^= 0x01;
        assert!(matches!(
            verify(alg, &key, &hex(&c.data), &mac),
            Err(SessionError::MacMismatch)
        ));
    }
}

// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct KcvCase {
    method: String,
    kind: String,
    key: String,
    kcv: String,
}

#[test]
fn kcv_vectors_match_oracle() {
    let file: File<KcvCase> = load("kcv.json");
    let mut counts = BTreeMap::new();
    for c in &file.cases {
        let kind = match c.kind.as_str() {
            "des" => KeyKind::Des,
            "tdes2" => KeyKind::Tdes2,
            "tdes3" => KeyKind::Tdes3,
            "aes128" => KeyKind::Aes128,
            "aes192" => KeyKind::Aes192,
            "aes256" => KeyKind::Aes256,
            other => panic!("kind {other}"),
        };
        let method = match c.method.as_str() {
            "des_zeros" => KcvMethod::DesZeros,
            "aes_cmac" => KcvMethod::AesCmac,
            "aes_ecb_zeros" => KcvMethod::AesEcbZeros,
            other => panic!("method {other}"),
        };
        let key = Key::new(kind, &hex(&c.key)).expect("key");
        let kcv = Kcv::compute(&key, method).expect("kcv");
        assert_eq!(to_hex(kcv.full()), c.kcv, "{} {}", c.method, c.key);
        if method == kind.default_kcv_method() {
            assert_eq!(key.kcv(), &kcv);
            key.check_kcv(&hex(&c.kcv)[..3]).expect("3-byte check");
            key.check_kcv(&hex(&c.kcv)[..4]).expect("4-byte check");
        }
        *counts
            .entry((c.method.clone(), c.kind.clone()))
            .or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), 9, "{counts:?}");
    for (k, n) in counts {
        assert!(n >= MIN_CASES, "{k:?}: {n}");
    }
}

// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct KeyWrapCase {
    master: String,
    key: String,
    encrypted: String,
}

#[test]
fn key_wrap_vectors_match_oracle() {
    let file: File<KeyWrapCase> = load("keywrap.json");
    assert!(file.cases.len() >= MIN_CASES);
    for c in &file.cases {
        let master = Key::des_or_tdes(&hex(&c.master)).expect("master");
        let key = Key::des_or_tdes(&hex(&c.key)).expect("key");
        assert_eq!(
            to_hex(&encrypt_key_under(&master, &key).expect("wrap")),
            c.encrypted
        );
        let back = decrypt_key_under(&master, &hex(&c.encrypted)).expect("unwrap");
        assert_eq!(back.kind(), key.kind());
        back.check_kcv(&key.kcv().full()[..4]).expect("same key");
    }
}

// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct PinCase {
    format: u8,
    key: String,
    pin: String,
    pan: Option<String>,
    fill: Vec<u8>,
    block: String,
}

fn pin_format(n: u8) -> PinBlockFormat {
    PinBlockFormat::from_control(n).unwrap_or_else(|| panic!("format {n}"))
}

#[test]
fn pin_vectors_decipher_and_reencipher_identically() {
    let file: File<PinCase> = load("pin.json");
    let mut counts = BTreeMap::new();
    for c in &file.cases {
        let format = pin_format(c.format);
        let key = if format == PinBlockFormat::Iso4 {
            Key::aes(&hex(&c.key))
        } else {
            Key::des_or_tdes(&hex(&c.key))
        }
        .expect("key");
        let pan = c.pan.as_deref().map(|p| Pan::new(p).expect("pan"));
        let pin = Pin::new(&c.pin).expect("pin");

        // Our decipher recovers the PIN from the oracle's block.
        let oracle = PinBlock::from_bytes(format, &hex(&c.block)).expect("block");
        assert_eq!(
            oracle.decipher(pan.as_ref(), &key).expect("decipher"),
            pin,
            "{}",
            c.block
        );

        // Our encipher, given the oracle's fill, produces the oracle's exact bytes (so
        // the oracle deciphers ours).
        let fill = if c.fill.is_empty() {
            Fill::Random
        } else {
            Fill::Nibbles(&c.fill)
        };
        let ours = PinBlock::encipher(format, &pin, pan.as_ref(), &key, fill).expect("encipher");
        assert_eq!(to_hex(ours.as_bytes()), c.block, "format {}", c.format);
        *counts.entry(c.format).or_insert(0usize) += 1;
    }
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), [0, 1, 3, 4]);
    for (f, n) in counts {
        assert!(n >= MIN_CASES, "format {f}: {n}");
    }
}

// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct TranslateCase {
    pin: String,
    pan: String,
    tdes_a: String,
    tdes_b: String,
    aes: String,
    iso0_under_a: String,
    iso0_under_b: String,
    iso4_under_aes: String,
}

#[test]
fn translate_vectors_match_oracle() {
    use PinBlockFormat::*;
    let file: File<TranslateCase> = load("translate.json");
    assert!(file.cases.len() >= MIN_CASES);
    for c in &file.cases {
        let a = Key::tdes(&hex(&c.tdes_a)).expect("a");
        let b = Key::tdes(&hex(&c.tdes_b)).expect("b");
        let aes = Key::aes(&hex(&c.aes)).expect("aes");
        let pan = Pan::new(&c.pan).expect("pan");
        let pin = Pin::new(&c.pin).expect("pin");
        let under_a = PinBlock::from_bytes(Iso0, &hex(&c.iso0_under_a)).expect("block");
        let iso4 = PinBlock::from_bytes(Iso4, &hex(&c.iso4_under_aes)).expect("block");

        // 0 -> 0 between keys: exactly the oracle's block under B.
        let t = translate(&under_a, Some(&pan), &a, Iso0, &b).expect("0->0");
        assert_eq!(to_hex(t.as_bytes()), c.iso0_under_b);
        // 4 -> 0: exactly the oracle's format 0 block.
        let t = translate(&iso4, Some(&pan), &aes, Iso0, &a).expect("4->0");
        assert_eq!(to_hex(t.as_bytes()), c.iso0_under_a);
        // 0 -> 3, 0 -> 1, 0 -> 4 (random fill): decipher to the PIN.
        for (to, key) in [(Iso3, &b), (Iso1, &b), (Iso4, &aes)] {
            let t = translate(&under_a, Some(&pan), &a, to, key).expect("translate");
            assert_eq!(t.decipher(Some(&pan), key).expect("decipher"), pin, "{to}");
        }
    }
}

// ---------------------------------------------------------------------------

/// Writes PIN blocks made here with random fill for `gen_vectors.py --check-ours`,
/// which has psec decipher them. Does nothing unless `ISOSWITCH_PSEC_OURS` names the
/// output file.
#[test]
#[ignore = "run by scripts/psec/gen_vectors.py --check-ours"]
fn emit_blocks_for_oracle() {
    use rand::{Rng, SeedableRng};
    let Some(out) = std::env::var_os("ISOSWITCH_PSEC_OURS") else {
        eprintln!("ISOSWITCH_PSEC_OURS not set; nothing written");
        return;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(8583);
    fn digits(rng: &mut rand::rngs::StdRng, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
            .collect()
    }
    let mut cases = Vec::new();
    for format in [0u8, 1, 3, 4] {
        for _ in 0..MIN_CASES {
            let key_len = if format == 4 {
                [16, 24, 32][rng.gen_range(0..3)]
            } else {
                [8, 16, 24][rng.gen_range(0..3)]
            };
            let key_bytes: Vec<u8> = (0..key_len).map(|_| rng.gen()).collect();
            let key = if format == 4 {
                Key::aes(&key_bytes)
            } else {
                Key::des_or_tdes(&key_bytes)
            }
            .expect("key");
            let pin_len = rng.gen_range(4..=12);
            let pin_text = digits(&mut rng, pin_len);
            let pan_len = rng.gen_range(13..=19);
            let pan_text = digits(&mut rng, pan_len);
            let pan = Pan::new(&pan_text).expect("pan");
            let block = PinBlock::encipher(
                pin_format(format),
                &Pin::new(&pin_text).expect("pin"),
                Some(&pan),
                &key,
                Fill::Random,
            )
            .expect("encipher");
            cases.push(serde_json::json!({
                "format": format,
                "key": to_hex(&key_bytes),
                "pin": pin_text,
                "pan": pan_text,
                "block": to_hex(block.as_bytes()),
            }));
        }
    }
    std::fs::write(&out, serde_json::to_string(&cases).expect("json")).expect("write");
}
