//! TDES DUKPT against pydukpt 0.1.0 (PyPI), an independent X9.24-1:2009
//! implementation: vectors made by `scripts/pydukpt/gen_vectors.py`, committed under
//! `tests/vectors/pydukpt/`. No Python is needed to run these tests.
//!
//! AES DUKPT has no implementation on PyPI (psec has none; pydukpt and `dukpt` are TDES
//! only), so AES DUKPT is tested against the X9.24-3 supplement's published vectors
//! only (tests/dukpt_vectors.rs).

mod keys_common;
use keys_common::{hex, to_hex, vector_file};

use isoswitch_session::crypto::dukpt::tdes::{self, TdesDevice, TdesKsn, Variant};
use isoswitch_session::crypto::keys::Key;
use isoswitch_session::crypto::pin::{Fill, Pan, Pin, PinBlock, PinBlockFormat};
use serde::Deserialize;

const MIN_CASES: usize = 200;

#[derive(Deserialize)]
struct File {
    generator: String,
    oracle: String,
    keys: Vec<KeyCase>,
    next: Vec<NextCase>,
}

#[derive(Deserialize)]
struct KeyCase {
    bdk: String,
    ksn: String,
    ipek: String,
    current: String,
    pin: String,
    mac_request: String,
    mac_response: String,
    data_request: String,
    data_response: String,
    pin_digits: String,
    pan: String,
    pin_block: String,
}

#[derive(Deserialize)]
struct NextCase {
    bdk: String,
    ksn: String,
    next: String,
}

fn load() -> File {
    let text = vector_file("pydukpt/tdes_dukpt.json");
    let f: File =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("pydukpt/tdes_dukpt.json: {e}"));
    assert_eq!(f.generator, "scripts/pydukpt/gen_vectors.py");
    assert!(f.oracle.starts_with("pydukpt"));
    f
}

#[test]
fn host_keys_match_pydukpt() {
    let f = load();
    assert!(f.keys.len() >= MIN_CASES);
    let mut many_ones = 0;
    for c in &f.keys {
        let bdk = Key::tdes(&hex(&c.bdk)).expect("bdk");
        let ksn = TdesKsn::from_bytes(&hex(&c.ksn)).expect("ksn");
        if ksn.counter().count_ones() > 10 {
            many_ones += 1;
        }
        let ipek = tdes::derive_ipek(&bdk, &ksn).expect("ipek");
        assert_eq!(to_hex(&ipek.expose_secret()), c.ipek, "{}", c.ksn);
        let tk = tdes::derive_transaction_key(&bdk, &ksn).expect("derive");
        assert_eq!(
            to_hex(&tk.current().expect("k").expose_secret()),
            c.current,
            "{}",
            c.ksn
        );
        for (v, want) in [
            (Variant::Pin, &c.pin),
            (Variant::MacRequest, &c.mac_request),
            (Variant::MacResponse, &c.mac_response),
            (Variant::DataRequest, &c.data_request),
            (Variant::DataResponse, &c.data_response),
        ] {
            assert_eq!(
                &to_hex(&tk.variant(v).expect("k").expose_secret()),
                want,
                "{} {v:?}",
                c.ksn
            );
        }
        // The oracle's PIN block: ours is the same (format 0 has no random fill) and
        // deciphers to the PIN.
        let pik = tk.variant(Variant::Pin).expect("pik");
        let pan = Pan::new(&c.pan).expect("pan");
        let pin = Pin::new(&c.pin_digits).expect("pin");
        let ours = PinBlock::encipher(PinBlockFormat::Iso0, &pin, Some(&pan), &pik, Fill::Random)
            .expect("encipher");
        assert_eq!(to_hex(ours.as_bytes()), c.pin_block);
        let theirs = PinBlock::from_bytes(PinBlockFormat::Iso0, &hex(&c.pin_block)).expect("block");
        assert_eq!(theirs.decipher(Some(&pan), &pik).expect("pin"), pin);
    }
    assert!(
        many_ones >= 5,
        "counters a device never uses are covered too: {many_ones}"
    );
}

#[test]
fn device_next_counter_matches_pydukpt() {
    let f = load();
    assert!(f.next.len() >= MIN_CASES);
    let mut exhausted = 0;
    for c in &f.next {
        let bdk = Key::tdes(&hex(&c.bdk)).expect("bdk");
        let ksn = TdesKsn::from_bytes(&hex(&c.ksn)).expect("ksn");
        let ipek = tdes::derive_ipek(&bdk, &ksn).expect("ipek");
        let mut dev = TdesDevice::resume(&ipek, &ksn).expect("resume");
        let t = dev.next_transaction().expect("transaction");
        assert_eq!(t.ksn(), &ksn);
        // The device's key for this counter is the host's.
        let host = tdes::derive_transaction_key(&bdk, &ksn).expect("host");
        assert_eq!(
            t.current().expect("k").expose_secret(),
            host.current().expect("k").expose_secret()
        );
        match dev.next_ksn() {
            Some(next) => {
                assert_eq!(next.to_string(), c.next, "after {}", c.ksn);
                let t2 = dev.next_transaction().expect("next transaction");
                let host = tdes::derive_transaction_key(&bdk, &next).expect("host");
                assert_eq!(
                    t2.current().expect("k").expose_secret(),
                    host.current().expect("k").expose_secret()
                );
            }
            None => {
                assert_eq!(c.next, "exhausted", "after {}", c.ksn);
                exhausted += 1;
            }
        }
    }
    assert!(exhausted >= 1);
}
