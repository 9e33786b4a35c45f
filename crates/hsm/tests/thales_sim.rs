//! The Thales client against the crate's own server on a SoftHsm (what `hsm_sim`
//! serves), over loopback TCP: every command of the subset, M6/M8 against session's
//! MAC functions, typed refusals, and pipelining (many requests in flight on one
//! connection, each answer matched to its request by the header id).

mod common;

use std::sync::Arc;

use common::*;
use futures::future::join_all;
use isoswitch_hsm::thales::codec::CommandCode;
use isoswitch_hsm::thales::{serve, ClientConfig, ServerConfig, ThalesClient};
use isoswitch_hsm::{
    HsmError, KeyBlob, KeyUsage, PinReference, PinSource, PinTranslation, SecurityModule, SoftHsm,
};
use isoswitch_session::crypto::keys::{decrypt_key_under, Key, KeyKind};
use isoswitch_session::crypto::mac::{compute, MacAlgorithm, Padding};
use isoswitch_session::crypto::pin::{Fill, Pan, Pin, PinBlock, PinBlockFormat};
use isoswitch_session::crypto::pvv::{visa_pvv, Pvki};
use tokio::net::TcpListener;

async fn start() -> ThalesClient {
    let hsm = Arc::new(SoftHsm::from_master_key_hex(LMK_HEX).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, hsm, ServerConfig::default()));
    ThalesClient::connect(addr, ClientConfig::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn diagnostics_reports_the_lmk_check_value() {
    let c = start().await;
    let d = c.diagnostics().await.unwrap();
    assert_eq!(d.lmk_kcv.as_bytes(), lmk().kcv().full());
    assert_eq!(d.firmware, "isoswitch-hsm");
}

#[tokio::test]
async fn a0_generates_under_a_zmk_and_bu_checks_it() {
    let c = start().await;
    let zmk_clear = tdes(ZMK);
    let zmk = c.register_key(under(&lmk(), &zmk_clear), KeyUsage::ZoneMaster);
    let g = c
        .generate_working_key(zmk, KeyUsage::ZonePin, KeyKind::Tdes2)
        .await
        .unwrap();
    // The key under the ZMK decrypts (with the clear ZMK) to a key with that KCV…
    let clear = decrypt_key_under(&zmk_clear, g.under_master.as_bytes()).unwrap();
    assert_eq!(g.kcv.as_bytes(), &clear.kcv().full()[..3]);
    // …and the copy under the LMK is the same key (BU on it).
    assert!(c.check_kcv(g.handle, g.kcv.as_bytes()).await.unwrap());
    assert!(!c.check_kcv(g.handle, &[0, 0, 0]).await.unwrap());
    let under_lmk = c.key_under_lmk(g.handle).unwrap();
    let via_lmk = decrypt_key_under(&lmk(), under_lmk.as_bytes()).unwrap();
    assert_eq!(via_lmk.kcv().full(), clear.kcv().full());
}

#[tokio::test]
async fn a_forgotten_key_is_no_longer_held() {
    let c = start().await;
    let zmk = c.register_key(under(&lmk(), &tdes(ZMK)), KeyUsage::ZoneMaster);
    let other = c.register_key(under(&lmk(), &tdes(ZMK)), KeyUsage::ZoneMaster);
    c.forget_key(zmk).await.unwrap();
    assert!(matches!(c.key_under_lmk(zmk), Err(HsmError::UnknownKey(k)) if k == zmk));
    assert!(matches!(
        c.key_check_value(zmk).await,
        Err(HsmError::UnknownKey(_))
    ));
    assert!(matches!(
        c.forget_key(zmk).await,
        Err(HsmError::UnknownKey(_))
    ));
    c.key_under_lmk(other).expect("the other key stays");
}

#[tokio::test]
async fn hc_changes_the_terminal_master_key() {
    let c = start().await;
    let tmk_clear = tdes(TMK);
    let tmk = c.register_key(under(&lmk(), &tmk_clear), KeyUsage::TerminalMaster);
    let g = c
        .generate_working_key(tmk, KeyUsage::TerminalMaster, KeyKind::Tdes2)
        .await
        .unwrap();
    let new = decrypt_key_under(&tmk_clear, g.under_master.as_bytes()).unwrap();
    assert_eq!(g.kcv.as_bytes(), new.kcv().full());
}

#[tokio::test]
async fn fa_imports_a_zpk_from_its_zmk() {
    let c = start().await;
    let zmk_clear = tdes(ZMK);
    let zpk_clear = tdes(ZPK);
    let zmk = c.register_key(under(&lmk(), &zmk_clear), KeyUsage::ZoneMaster);
    let kcv = &zpk_clear.kcv().full()[..3];
    let zpk = c
        .import_key(
            zmk,
            &KeyBlob::Ecb(under(&zmk_clear, &zpk_clear)),
            KeyUsage::ZonePin,
            Some(kcv),
        )
        .await
        .unwrap();
    assert_eq!(c.key_under_lmk(zpk).unwrap(), under(&lmk(), &zpk_clear));
    let e = c
        .import_key(
            zmk,
            &KeyBlob::Ecb(under(&zmk_clear, &zpk_clear)),
            KeyUsage::ZonePin,
            Some(&[1, 2, 3]),
        )
        .await;
    assert!(matches!(e, Err(HsmError::Crypto(_))), "{e:?}");
}

#[tokio::test]
async fn ca_translates_tpk_to_zpk_in_formats_0_1_3() {
    let c = start().await;
    let tpk = c.register_key(under(&lmk(), &tdes(TPK)), KeyUsage::TerminalPin);
    let zpk = c.register_key(under(&lmk(), &tdes(ZPK)), KeyUsage::ZonePin);
    let pan = Pan::new("4000001234562000").unwrap();
    let pin = Pin::new("8137").unwrap();
    for from in [
        PinBlockFormat::Iso0,
        PinBlockFormat::Iso1,
        PinBlockFormat::Iso3,
    ] {
        for to in [
            PinBlockFormat::Iso0,
            PinBlockFormat::Iso3,
            PinBlockFormat::Iso1,
        ] {
            let block =
                PinBlock::encipher(from, &pin, Some(&pan), &tdes(TPK), Fill::Random).unwrap();
            let out = c
                .translate_pin(translation(tpk, &block, &pan, zpk, to))
                .await
                .unwrap();
            assert_eq!(out.decipher(Some(&pan), &tdes(ZPK)).unwrap(), pin);
        }
    }
    // A block that does not decipher: error 20 from the HSM.
    let garbage = PinBlock::from_bytes(PinBlockFormat::Iso0, &[0x55; 8]).unwrap();
    let e = c
        .translate_pin(translation(tpk, &garbage, &pan, zpk, PinBlockFormat::Iso0))
        .await;
    assert!(
        matches!(e, Err(HsmError::Refused { command: "CA", ref code }) if code == "20"),
        "{e:?}"
    );
}

#[tokio::test]
async fn dc_and_ec_verify_against_a_visa_pvv() {
    let c = start().await;
    let tpk = c.register_key(under(&lmk(), &tdes(TPK)), KeyUsage::TerminalPin);
    let zpk = c.register_key(under(&lmk(), &tdes(ZPK)), KeyUsage::ZonePin);
    let pvk = c.register_key(under(&lmk(), &tdes(PVK)), KeyUsage::PinVerification);
    let pan = Pan::new("4000001234562000").unwrap();
    let pvki = Pvki::new(1).unwrap();
    let pvv = visa_pvv(&tdes(PVK), &pan, pvki, &Pin::new("2468").unwrap()).unwrap();
    assert_pvv_verification(
        &c,
        &[(tpk, tdes(TPK)), (zpk, tdes(ZPK))],
        &pan,
        PinReference::VisaPvv { pvk, pvki, pvv },
        "2468",
        "2469",
    )
    .await;
}

#[tokio::test]
async fn m6_m8_match_the_session_mac_functions() {
    let c = start().await;
    let tak_clear = tdes(TAK);
    let tak = c.register_key(under(&lmk(), &tak_clear), KeyUsage::TerminalMac);
    let data: Vec<u8> = (0..=200u8).collect();
    for alg in [
        MacAlgorithm::X919(Padding::Method1),
        MacAlgorithm::X919(Padding::Method2),
        MacAlgorithm::CbcTdes(Padding::Method1),
        MacAlgorithm::CbcTdes(Padding::Method2),
    ] {
        let expected = compute(alg, &tak_clear, &data).unwrap();
        let mac = c.generate_mac(tak, alg, &data).await.unwrap();
        assert_eq!(mac, expected, "{alg:?}");
        assert!(c.verify_mac(tak, alg, &data, mac.as_bytes()).await.unwrap());
        assert!(c
            .verify_mac(tak, alg, &data, &mac.as_bytes()[..4])
            .await
            .unwrap());
        assert!(!c
            .verify_mac(tak, alg, &data[1..], mac.as_bytes())
            .await
            .unwrap());
    }
    assert!(matches!(
        c.generate_mac(tak, MacAlgorithm::AesCmac, &data).await,
        Err(HsmError::Unsupported(_))
    ));
}

#[tokio::test]
async fn usage_and_unsupported_paths_are_typed() {
    let c = start().await;
    let tak = c.register_key(under(&lmk(), &tdes(TAK)), KeyUsage::TerminalMac);
    let zpk = c.register_key(under(&lmk(), &tdes(ZPK)), KeyUsage::ZonePin);
    let pan = Pan::new("4000001234562000").unwrap();
    let block = PinBlock::from_bytes(PinBlockFormat::Iso0, &[0; 8]).unwrap();
    let r = c
        .translate_pin(translation(tak, &block, &pan, zpk, PinBlockFormat::Iso0))
        .await;
    assert!(matches!(r, Err(HsmError::WrongUsage { .. })));
    let r = c
        .translate_pin(PinTranslation {
            source: PinSource::Dukpt {
                bdk: tak,
                ksn: isoswitch_hsm::Ksn::new(&[0; 10]).unwrap(),
            },
            block: &block,
            pan: Some(&pan),
            destination: zpk,
            to_format: PinBlockFormat::Iso0,
        })
        .await;
    // A TAK named as the BDK: refused by usage before anything is sent.
    assert!(matches!(r, Err(HsmError::WrongUsage { .. })));
    let _ = CommandCode::ALL;
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `G0` with the ANSI X9.24-1:2009 A.4 test data (../shared/vectors/key-management.md
/// 1.2): the DUKPT device's PIN blocks for PIN 1234 at counters 1 and 2, translated to a
/// ZPK by the server; AES DUKPT (a 12-byte KSN) is not in the command subset.
#[tokio::test]
async fn g0_translates_a_tdes_dukpt_pin_block_to_a_zpk() {
    let c = start().await;
    let bdk_clear = Key::tdes(&unhex("0123456789ABCDEFFEDCBA9876543210")).unwrap();
    let bdk = c.register_key(under(&lmk(), &bdk_clear), KeyUsage::BaseDerivation);
    let zpk = c.register_key(under(&lmk(), &tdes(ZPK)), KeyUsage::ZonePin);
    let pan = Pan::new("4012345678909").unwrap();
    for (ksn, block) in [
        ("FFFF9876543210E00001", "1B9C1845EB993A7A"),
        ("FFFF9876543210E00002", "10A01C8D02C69107"),
    ] {
        let block = PinBlock::from_bytes(PinBlockFormat::Iso0, &unhex(block)).unwrap();
        let out = c
            .translate_pin(PinTranslation {
                source: PinSource::Dukpt {
                    bdk,
                    ksn: isoswitch_hsm::Ksn::new(&unhex(ksn)).unwrap(),
                },
                block: &block,
                pan: Some(&pan),
                destination: zpk,
                to_format: PinBlockFormat::Iso0,
            })
            .await
            .unwrap();
        let pin = out.decipher(Some(&pan), &tdes(ZPK)).unwrap();
        assert_eq!(pin, Pin::new("1234").unwrap(), "{ksn}");
    }
    let block = PinBlock::from_bytes(PinBlockFormat::Iso0, &[0; 8]).unwrap();
    let r = c
        .translate_pin(PinTranslation {
            source: PinSource::Dukpt {
                bdk,
                ksn: isoswitch_hsm::Ksn::new(&[0; 12]).unwrap(),
            },
            block: &block,
            pan: Some(&pan),
            destination: zpk,
            to_format: PinBlockFormat::Iso0,
        })
        .await;
    assert!(matches!(r, Err(HsmError::Unsupported(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_translations_all_come_back_right() {
    let c = start().await;
    let tpk = c.register_key(under(&lmk(), &tdes(TPK)), KeyUsage::TerminalPin);
    let zpk = c.register_key(under(&lmk(), &tdes(ZPK)), KeyUsage::ZonePin);
    let pan = Pan::new("5555555551234567").unwrap();
    // 300 distinct PINs in flight at once on one connection; each answer must be the
    // translation of its own request (ids, not arrival order, match them).
    let cases: Vec<(Pin, PinBlock)> = (0..300u32)
        .map(|i| {
            let pin = Pin::new(&format!("{:06}", i * 3301 % 1_000_000)).unwrap();
            let block = PinBlock::encipher(
                PinBlockFormat::Iso0,
                &pin,
                Some(&pan),
                &tdes(TPK),
                Fill::Random,
            )
            .unwrap();
            (pin, block)
        })
        .collect();
    let results = join_all(cases.iter().map(|(_, block)| {
        c.translate_pin(translation(tpk, block, &pan, zpk, PinBlockFormat::Iso3))
    }))
    .await;
    let zpk_clear: Key = tdes(ZPK);
    for ((pin, _), out) in cases.iter().zip(results) {
        assert_eq!(&out.unwrap().decipher(Some(&pan), &zpk_clear).unwrap(), pin);
    }
}

/// A peer that answers every request with `reply` (framed, header echoed) or, for
/// `None`, reads and never answers.
async fn fake_hsm(reply: Option<&'static [u8]>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 512];
        loop {
            let mut len = [0u8; 2];
            if s.read_exact(&mut len).await.is_err() {
                return;
            }
            let n = usize::from(u16::from_be_bytes(len));
            if s.read_exact(&mut buf[..n]).await.is_err() {
                return;
            }
            if let Some(body) = reply {
                let mut out = Vec::new();
                out.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
                out.extend_from_slice(&buf[..4]);
                out.extend_from_slice(body);
                let _ = s.write_all(&out).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn bad_responses_timeouts_and_closed_connections_are_typed_errors() {
    let zpk = under(&lmk(), &tdes(ZPK));
    // A response of the wrong command, a truncated one, a non-hex check value.
    for body in [&b"CB00"[..], b"BV", b"BV00XYZXYZ", b"BV00U0123"] {
        let c = ThalesClient::connect(fake_hsm(Some(body)).await, ClientConfig::default())
            .await
            .unwrap();
        let k = c.register_key(zpk, KeyUsage::ZonePin);
        let e = c.key_check_value(k).await;
        assert!(matches!(e, Err(HsmError::Protocol(_))), "{body:?}: {e:?}");
    }
    // An error code is a refusal naming the command.
    let c = ThalesClient::connect(fake_hsm(Some(b"BV10")).await, ClientConfig::default())
        .await
        .unwrap();
    let k = c.register_key(zpk, KeyUsage::ZonePin);
    let e = c.key_check_value(k).await;
    assert!(
        matches!(e, Err(HsmError::Refused { command: "BU", ref code }) if code == "10"),
        "{e:?}"
    );
    // No answer: the configured timeout.
    let config = ClientConfig {
        timeout: std::time::Duration::from_millis(200),
        ..ClientConfig::default()
    };
    let c = ThalesClient::connect(fake_hsm(None).await, config)
        .await
        .unwrap();
    let k = c.register_key(zpk, KeyUsage::ZonePin);
    assert!(matches!(c.key_check_value(k).await, Err(HsmError::Timeout)));
    // The peer goes away: every waiting request ends with ConnectionClosed.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(s);
    });
    let c = ThalesClient::connect(addr, ClientConfig::default())
        .await
        .unwrap();
    let k = c.register_key(zpk, KeyUsage::ZonePin);
    assert!(matches!(
        c.key_check_value(k).await,
        Err(HsmError::ConnectionClosed)
    ));
    assert!(matches!(
        c.key_check_value(k).await,
        Err(HsmError::ConnectionClosed)
    ));
}
