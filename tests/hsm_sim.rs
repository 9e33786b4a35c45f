//! `hsm_sim`'s server (`isoswitch::hsm::thales::server::run`, what the example's
//! `main` calls with its flags) on a free port with `examples/lmk.hex`, and the MAC
//! commands M6/M8 through `ThalesClient` checked against session's MAC functions
//! computed with the clear test key.

use std::time::Duration;

use isoswitch::hsm::thales::server::{self, ServerConfig};
use isoswitch::hsm::thales::{ClientConfig, ThalesClient};
use isoswitch::hsm::{EncryptedKey, KeyUsage, SecurityModule};
use isoswitch::session::crypto::keys::{encrypt_key_under, Key};
use isoswitch::session::crypto::mac::{compute, MacAlgorithm, Padding};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn m6_m8_against_hsm_sim() {
    let lmk_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lmk.hex");
    let lmk_text = std::fs::read_to_string(&lmk_path).unwrap();
    let lmk = Key::tdes(&unhex(lmk_text.trim())).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        server::run(
            "127.0.0.1:0",
            &lmk_path,
            ServerConfig::default(),
            |addr| {
                let _ = tx.send(addr);
            },
            async {
                let _ = stop_rx.await;
            },
        )
        .await
    });
    let addr = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    let c = ThalesClient::connect(addr, ClientConfig::default())
        .await
        .unwrap();

    for (usage, hex) in [
        (KeyUsage::TerminalMac, "E6F1EC07E0B7E57CDF6D1EF25E70D3AB"),
        (KeyUsage::ZoneMac, "0123456789ABCDEFFEDCBA9876543210"),
    ] {
        let clear = Key::tdes(&unhex(hex)).unwrap();
        let under =
            EncryptedKey::new(clear.kind(), &encrypt_key_under(&lmk, &clear).unwrap()).unwrap();
        let key = c.register_key(under, usage);
        for data in [&b""[..], b"0200", &[0xA5u8; 1000][..]] {
            for alg in [
                MacAlgorithm::X919(Padding::Method1),
                MacAlgorithm::X919(Padding::Method2),
                MacAlgorithm::CbcTdes(Padding::Method2),
            ] {
                let want = compute(alg, &clear, data).unwrap();
                let got = c.generate_mac(key, alg, data).await.unwrap();
                assert_eq!(got, want, "{alg:?} over {} bytes", data.len());
                assert!(c.verify_mac(key, alg, data, want.as_bytes()).await.unwrap());
                let mut wrong = [0u8; 8];
                wrong.copy_from_slice(want.as_bytes());
                wrong[7] ^= 1;
                assert!(!c.verify_mac(key, alg, data, &wrong).await.unwrap());
            }
        }
    }
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
