//! Key-management benchmarks: DUKPT derivations per second, host side (BDK + KSN →
//! working key, what a switch does for every DUKPT PIN block) and device side (one
//! transaction of a terminal's future-key registers), TDES (ANSI X9.24-1) and AES
//! (X9.24-3); TR-31 unwraps per second.
//!
//! Host-side cost grows with the counter's 1 bits (one derivation step each), so each
//! is measured at a typical counter (5 one bits) and at the worst a device uses
//! (10 for TDES, 16 for AES).
//!
//! `cargo bench --bench keys -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use isoswitch::session::crypto::dukpt::aes::{
    self as aes_dukpt, AesDevice, AesKsn, KeyUsage, WorkingKeyType,
};
use isoswitch::session::crypto::dukpt::tdes::{self, TdesDevice, TdesKsn, Variant};
use isoswitch::session::crypto::tr31;
use isoswitch::session::crypto::Key;

const TDES_BDK: [u8; 16] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
];
const AES_BDK: [u8; 16] = [
    0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10, 0xF1, 0xF1, 0xF1, 0xF1, 0xF1, 0xF1, 0xF1, 0xF1,
];

fn tdes_ksn(counter: u32) -> TdesKsn {
    TdesKsn::from_bytes(&[0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x00])
        .expect("ksn")
        .with_counter(counter)
}

fn dukpt(c: &mut Criterion) {
    let mut g = c.benchmark_group("dukpt");
    g.throughput(Throughput::Elements(1));
    let bdk = Key::tdes(&TDES_BDK).expect("bdk");
    for (name, counter) in [("5_bits", 0x0_1111u32 | 0x10_0000), ("10_bits", 0x1F_F800)] {
        let ksn = tdes_ksn(counter);
        g.bench_function(format!("tdes_host_pin_key/{name}"), |b| {
            b.iter(|| {
                tdes::derive_working_key(black_box(&bdk), black_box(&ksn), Variant::Pin)
                    .expect("key")
            })
        });
    }
    let ipek = tdes::derive_ipek(&bdk, &tdes_ksn(0)).expect("ipek");
    g.bench_function("tdes_device_transaction", |b| {
        let mut dev = TdesDevice::load_initial_key(&ipek, &tdes_ksn(0)).expect("load");
        b.iter(|| match dev.next_transaction() {
            Ok(t) => t.variant(Variant::Pin).expect("key"),
            Err(_) => {
                dev = TdesDevice::load_initial_key(&ipek, &tdes_ksn(0)).expect("load");
                dev.next_transaction()
                    .expect("t")
                    .variant(Variant::Pin)
                    .expect("key")
            }
        })
    });

    let bdk = Key::aes(&AES_BDK).expect("bdk");
    let id = [0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56];
    for (name, counter) in [
        ("5_bits", 0x0101_0101u32 | 0x1000_0000),
        ("16_bits", 0xFFFF_0000),
    ] {
        let ksn = AesKsn::new(id, counter);
        g.bench_function(format!("aes128_host_pin_key/{name}"), |b| {
            b.iter(|| {
                aes_dukpt::derive_working_key(
                    black_box(&bdk),
                    black_box(&ksn),
                    KeyUsage::PinEncryption,
                    WorkingKeyType::Aes128,
                )
                .expect("key")
            })
        });
    }
    let ik = aes_dukpt::derive_initial_key(&bdk, &id).expect("ik");
    g.bench_function("aes128_device_transaction", |b| {
        let mut dev = AesDevice::load_initial_key(&ik, id).expect("load");
        b.iter(|| {
            dev.next_transaction()
                .expect("t")
                .working_key(KeyUsage::PinEncryption, WorkingKeyType::Aes128)
                .expect("key")
        })
    });
    g.finish();
}

fn key_blocks(c: &mut Criterion) {
    let mut g = c.benchmark_group("tr31_unwrap");
    g.throughput(Throughput::Elements(1));
    let tdes_kbpk = Key::tdes(&TDES_BDK).expect("kbpk");
    let aes_kbpk = Key::aes(&[0x41; 32]).expect("kbpk");
    let key = Key::tdes(&[0x22; 16]).expect("key");
    for (name, kbpk, header) in [
        ("version_b", &tdes_kbpk, "B0000P0TE00E0000"),
        ("version_d", &aes_kbpk, "D0000P0TE00E0000"),
    ] {
        let h = tr31::Header::parse_template(header).expect("header");
        let block = tr31::wrap(kbpk, &h, &key).expect("wrap");
        g.bench_function(name, |b| {
            b.iter(|| tr31::unwrap(black_box(kbpk), black_box(&block)).expect("unwrap"))
        });
    }
    g.finish();
}

criterion_group!(benches, dukpt, key_blocks);
criterion_main!(benches);
