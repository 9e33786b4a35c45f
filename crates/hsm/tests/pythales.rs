//! The Thales client against an independent implementation: `pythales` 0.74 (PyPI),
//! started as a child process on a loopback port. Every command pythales implements
//! (A0, BU, CA, DC, EC, FA, HC, NC) is sent through `ThalesClient` and the answer
//! checked against what pythales' own model says it must be.
//!
//! Install: `pip install --no-deps pythales pynblock tracetools` and
//! `pip install pycryptodome`. Without python3 and pythales the test says so and
//! passes, unless `ISOSWITCH_REQUIRE_PYTHALES` is set (CI sets it), when it fails.
//!
//! pythales' LMK model, read from its `hsm.py`, and how the expectations follow it:
//! - The LMK is one two-key TDES key (default `deafbeed…`); every key is encrypted
//!   under it in ECB and sent as `U` + 32 hex. The tests encrypt their clear keys
//!   the same way (`common::under`).
//! - Its parity check wants every byte of a decrypted key to have an *even* number
//!   of one bits, so the test keys are made even-parity (DES ignores the bit); a
//!   key with DES's usual odd parity is refused with error `10`, which the test uses
//!   to check the client's refusal path.
//! - `CA` uses the destination ZPK field as the clear key (it does not decrypt it
//!   under the LMK), accepts only format `01` on both sides, and re-enciphers the
//!   clear block; `BU` and `FA` return the check value of the LMK-encrypted bytes
//!   taken as a key; `DC`/`EC` compute the PVV with the ASCII text of the PVK halves
//!   as TDES keys (pynblock's `get_visa_pvv`), so the reference PVVs are computed by
//!   calling that function.
//! - Its hex-dump tracing is switched off (pythales 0.74 calls tracetools' `trace`
//!   with its arguments swapped and would stop at the first message).
//! - It reads one message per `recv` and serves one connection at a time, so the
//!   requests here go one after another, with pythales' fixed header `SSSS`.

mod common;

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use isoswitch_hsm::thales::{ClientConfig, HeaderMode, ThalesClient};
use isoswitch_hsm::{HsmError, KeyBlob, KeyUsage, PinReference, SecurityModule};
use isoswitch_session::crypto::keys::{decrypt_key_under, Key, KeyKind};
use isoswitch_session::crypto::pin::{Fill, Pan, Pin, PinBlock, PinBlockFormat};
use isoswitch_session::crypto::pvv::Pvki;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_has_pythales() -> bool {
    Command::new("python3")
        .args(["-c", "import pythales.hsm, pynblock.tools"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Every byte with an even number of one bits (pythales' parity rule).
fn even(pattern: &str) -> Key {
    let mut b = unhex(pattern);
    for x in &mut b {
        if x.count_ones() % 2 == 1 {
            *x ^= 1;
        }
    }
    Key::tdes(&b).unwrap()
}

/// pynblock's PVV for the account field, PVKI, PIN and PVK text the client sends.
fn pythales_pvv(account: &str, pvki: &str, pin: &str, pvk_hex: &str) -> [u8; 4] {
    let script = format!(
        "from pynblock.tools import get_visa_pvv\nprint(get_visa_pvv(b'{account}', b'{pvki}', b'{pin}', b'{pvk_hex}').decode())"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim().as_bytes().try_into().unwrap()
}

#[tokio::test]
async fn every_pythales_command_through_the_client() {
    if !python_has_pythales() {
        assert!(
            std::env::var_os("ISOSWITCH_REQUIRE_PYTHALES").is_none(),
            "ISOSWITCH_REQUIRE_PYTHALES is set but python3 cannot import pythales"
        );
        eprintln!("skipped: python3 with pythales not found (pip install --no-deps pythales pynblock tracetools; pip install pycryptodome)");
        return;
    }
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Server(
        Command::new("python3")
            .args([
                "-c",
                // pythales 0.74 calls `trace(title, data)`, the reverse of the
                // current tracetools' `trace(data, title)`, and dies on the
                // first message: its tracing (hex dumps to stdout) is turned off.
                &format!(
                    "import pythales.hsm as h\nh.trace = lambda *a, **k: None\nh.HSM(header='SSSS', port={port}).run()"
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let config = ClientConfig {
        header: HeaderMode::Fixed(b"SSSS".to_vec()),
        timeout: Duration::from_secs(10),
    };
    let mut client = None;
    for _ in 0..100 {
        match ThalesClient::connect(("127.0.0.1", port), config.clone()).await {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let c = client.expect("pythales did not start listening within 10 s");
    let lmk = lmk();

    // NC: the LMK's check value (16 hex) and pythales' firmware version.
    let d = c.diagnostics().await.unwrap();
    assert_eq!(d.lmk_kcv.as_bytes(), lmk.kcv().full());
    assert_eq!(d.firmware, "0007-E000");

    // A0 mode 1: a new ZPK under the LMK and under the ZMK, with the clear key's KCV.
    let zmk_clear = even(ZMK);
    let zmk = c.register_key(under(&lmk, &zmk_clear), KeyUsage::ZoneMaster);
    let g = c
        .generate_working_key(zmk, KeyUsage::ZonePin, KeyKind::Tdes2)
        .await
        .unwrap();
    let new_key = decrypt_key_under(&zmk_clear, g.under_master.as_bytes()).unwrap();
    assert_eq!(g.kcv.as_bytes(), &new_key.kcv().full()[..3]);
    let via_lmk = decrypt_key_under(&lmk, c.key_under_lmk(g.handle).unwrap().as_bytes()).unwrap();
    assert_eq!(via_lmk.kcv().full(), new_key.kcv().full());

    // BU: pythales' check value is that of the LMK-encrypted bytes taken as a key.
    let bu = c.key_check_value(g.handle).await.unwrap();
    let encrypted_as_key = Key::tdes(c.key_under_lmk(g.handle).unwrap().as_bytes()).unwrap();
    assert_eq!(bu.as_bytes(), encrypted_as_key.kcv().full());
    assert!(c.check_kcv(g.handle, &bu.as_bytes()[..3]).await.unwrap());
    assert!(!c.check_kcv(g.handle, &[0, 0, 0]).await.unwrap());

    // FA: a ZPK under the ZMK comes back under the LMK.
    let zpk_clear = even(ZPK);
    let zpk = c
        .import_key(
            zmk,
            &KeyBlob::Ecb(under(&zmk_clear, &zpk_clear)),
            KeyUsage::ZonePin,
            None,
        )
        .await
        .unwrap();
    assert_eq!(c.key_under_lmk(zpk).unwrap(), under(&lmk, &zpk_clear));

    // HC: a new TMK under the current TMK and under the LMK (the same key).
    let tmk_clear = even(TMK);
    let tmk = c.register_key(under(&lmk, &tmk_clear), KeyUsage::TerminalMaster);
    let h = c
        .generate_working_key(tmk, KeyUsage::TerminalMaster, KeyKind::Tdes2)
        .await
        .unwrap();
    let new_tmk = decrypt_key_under(&tmk_clear, h.under_master.as_bytes()).unwrap();
    let new_tmk_lmk =
        decrypt_key_under(&lmk, c.key_under_lmk(h.handle).unwrap().as_bytes()).unwrap();
    assert_eq!(new_tmk.kcv().full(), new_tmk_lmk.kcv().full());

    // CA: format 01 to 01; pythales enciphers under the ZPK field's bytes as given.
    let tpk_clear = even(TPK);
    let tpk = c.register_key(under(&lmk, &tpk_clear), KeyUsage::TerminalPin);
    let pan = Pan::new("4000001234562000").unwrap();
    let zpk_field_as_key = Key::tdes(c.key_under_lmk(zpk).unwrap().as_bytes()).unwrap();
    for pin in ["1234", "8137", "00000000"] {
        let pin = Pin::new(pin).unwrap();
        let block = PinBlock::encipher(
            PinBlockFormat::Iso0,
            &pin,
            Some(&pan),
            &tpk_clear,
            Fill::Random,
        )
        .unwrap();
        let out = c
            .translate_pin(translation(tpk, &block, &pan, zpk, PinBlockFormat::Iso0))
            .await
            .unwrap();
        assert_eq!(out.decipher(Some(&pan), &zpk_field_as_key).unwrap(), pin);
    }

    // DC (TPK) and EC (ZPK): PVV references computed by pynblock.
    let pvk = c.register_key(under(&lmk, &even(PVK)), KeyUsage::PinVerification);
    let pvk_hex = c.key_under_lmk(pvk).unwrap().to_hex();
    let pvv = pythales_pvv("000123456200", "1", "2468", &pvk_hex);
    let pvki = Pvki::new(1).unwrap();
    assert_pvv_verification(
        &c,
        &[(tpk, tpk_clear.clone()), (zpk, zpk_clear.clone())],
        &pan,
        PinReference::VisaPvv { pvk, pvki, pvv },
        "2468",
        "2469",
    )
    .await;

    // A key with DES's odd parity fails pythales' parity rule: error 10, typed.
    let odd_tpk = c.register_key(under(&lmk, &tdes(TPK)), KeyUsage::TerminalPin);
    let block = PinBlock::encipher(
        PinBlockFormat::Iso0,
        &Pin::new("1234").unwrap(),
        Some(&pan),
        &tdes(TPK),
        Fill::Random,
    )
    .unwrap();
    let e = c
        .translate_pin(translation(
            odd_tpk,
            &block,
            &pan,
            zpk,
            PinBlockFormat::Iso0,
        ))
        .await;
    assert!(
        matches!(e, Err(HsmError::Refused { command: "CA", ref code }) if code == "10"),
        "{e:?}"
    );
}
