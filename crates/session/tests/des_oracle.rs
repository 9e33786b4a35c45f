//! The crate's table-driven DES (`crypto::des_fast`) against RustCrypto's `des` 0.8 as
//! the oracle: single DES, two-key and three-key TDES (EDE), encryption and decryption,
//! on random keys and blocks (a seeded loop of many thousands, plus proptest cases with
//! shrinking), and the single-DES weak/semi-weak and all-zero/all-one edge keys.

use cipher::generic_array::GenericArray;
use cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use isoswitch_session::crypto::des_fast::{Des, Tdes2, Tdes3};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

fn oracle<C: BlockEncrypt + BlockDecrypt + KeyInit>(
    key: &[u8],
    block: [u8; 8],
) -> ([u8; 8], [u8; 8]) {
    let c = C::new_from_slice(key).expect("oracle key");
    let mut e = block;
    c.encrypt_block(GenericArray::from_mut_slice(&mut e));
    let mut d = block;
    c.decrypt_block(GenericArray::from_mut_slice(&mut d));
    (e, d)
}

fn check_des(key: [u8; 8], block: [u8; 8]) {
    let ours = Des::new(&key);
    let (e, d) = oracle::<des::Des>(&key, block);
    let mut b = block;
    ours.encrypt_block(&mut b);
    assert_eq!(b, e, "DES E key {key:02X?} block {block:02X?}");
    ours.decrypt_block(&mut b);
    assert_eq!(b, block, "DES round trip key {key:02X?}");
    let mut b = block;
    ours.decrypt_block(&mut b);
    assert_eq!(b, d, "DES D key {key:02X?} block {block:02X?}");
    assert_eq!(
        ours.encrypt_u64(u64::from_be_bytes(block)),
        u64::from_be_bytes(e)
    );
    assert_eq!(
        ours.decrypt_u64(u64::from_be_bytes(block)),
        u64::from_be_bytes(d)
    );
}

fn check_tdes2(key: [u8; 16], block: [u8; 8]) {
    let ours = Tdes2::new(&key);
    let (e, d) = oracle::<des::TdesEde2>(&key, block);
    let mut b = block;
    ours.encrypt_block(&mut b);
    assert_eq!(b, e, "TDES-2 E key {key:02X?} block {block:02X?}");
    let mut b = block;
    ours.decrypt_block(&mut b);
    assert_eq!(b, d, "TDES-2 D key {key:02X?} block {block:02X?}");
    // The halves are single DES under K1 and K2.
    let mut k1 = [0u8; 8];
    k1.copy_from_slice(&key[..8]);
    let mut k2 = [0u8; 8];
    k2.copy_from_slice(&key[8..]);
    let (e1, _) = oracle::<des::Des>(&k1, block);
    let (_, d2) = oracle::<des::Des>(&k2, block);
    let mut b = block;
    ours.k1().encrypt_block(&mut b);
    assert_eq!(b, e1);
    let mut b = block;
    ours.k2().decrypt_block(&mut b);
    assert_eq!(b, d2);
}

fn check_tdes3(key: [u8; 24], block: [u8; 8]) {
    let ours = Tdes3::new(&key);
    let (e, d) = oracle::<des::TdesEde3>(&key, block);
    let mut b = block;
    ours.encrypt_block(&mut b);
    assert_eq!(b, e, "TDES-3 E key {key:02X?} block {block:02X?}");
    let mut b = block;
    ours.decrypt_block(&mut b);
    assert_eq!(b, d, "TDES-3 D key {key:02X?} block {block:02X?}");
}

#[test]
fn random_keys_and_blocks_match_the_des_crate() {
    // Seeded, so a failure reproduces; 5,000 keys of each size, 4 blocks each.
    let mut rng = StdRng::seed_from_u64(0x1503_8583_DE5F_0A57);
    for _ in 0..5_000 {
        let mut k8 = [0u8; 8];
        let mut k16 = [0u8; 16];
        let mut k24 = [0u8; 24];
        rng.fill_bytes(&mut k8);
        rng.fill_bytes(&mut k16);
        rng.fill_bytes(&mut k24);
        for _ in 0..4 {
            let mut block = [0u8; 8];
            rng.fill_bytes(&mut block);
            check_des(k8, block);
            check_tdes2(k16, block);
            check_tdes3(k24, block);
        }
    }
}

#[test]
fn edge_keys_and_blocks_match_the_des_crate() {
    let keys: [[u8; 8]; 8] = [
        [0x00; 8],
        [0xFF; 8],
        // Weak keys.
        [0x01; 8],
        [0xFE; 8],
        [0x1F, 0x1F, 0x1F, 0x1F, 0x0E, 0x0E, 0x0E, 0x0E],
        [0xE0, 0xE0, 0xE0, 0xE0, 0xF1, 0xF1, 0xF1, 0xF1],
        // A semi-weak pair.
        [0x01, 0xFE, 0x01, 0xFE, 0x01, 0xFE, 0x01, 0xFE],
        [0xFE, 0x01, 0xFE, 0x01, 0xFE, 0x01, 0xFE, 0x01],
    ];
    let blocks: [[u8; 8]; 4] = [
        [0x00; 8],
        [0xFF; 8],
        [0x80, 0, 0, 0, 0, 0, 0, 1],
        *b"12345678",
    ];
    for key in keys {
        for block in blocks {
            check_des(key, block);
            for other in keys {
                let mut k16 = [0u8; 16];
                k16[..8].copy_from_slice(&key);
                k16[8..].copy_from_slice(&other);
                check_tdes2(k16, block);
                let mut k24 = [0u8; 24];
                k24[..8].copy_from_slice(&key);
                k24[8..16].copy_from_slice(&other);
                k24[16..].copy_from_slice(&key.map(|b| !b));
                check_tdes3(k24, block);
            }
        }
    }
}

#[test]
fn every_single_bit_key_and_block_matches_the_des_crate() {
    for key_bit in 0..64 {
        let key = (1u64 << key_bit).to_be_bytes();
        for block_bit in 0..64 {
            check_des(key, (1u64 << block_bit).to_be_bytes());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn des_matches_oracle(key in any::<[u8; 8]>(), block in any::<[u8; 8]>()) {
        check_des(key, block);
    }

    #[test]
    fn tdes2_matches_oracle(key in any::<[u8; 16]>(), block in any::<[u8; 8]>()) {
        check_tdes2(key, block);
    }

    #[test]
    fn tdes3_matches_oracle(key in any::<[u8; 24]>(), block in any::<[u8; 8]>()) {
        check_tdes3(key, block);
    }
}
