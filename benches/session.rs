//! Session benchmarks: one DES / TDES block with the crate's table-driven DES and with
//! RustCrypto's `des` (the oracle it replaced), X9.19 over a 100-byte message, MACs per
//! second over a 200-byte message for every algorithm, sealing and verifying a whole
//! message, and host sign-ons per second (fresh random working keys, encrypted under the
//! master key, with check values).
//!
//! `cargo bench --bench session -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Instant;

use cipher::generic_array::GenericArray;
use cipher::{BlockEncrypt, KeyInit};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use isoswitch::codec::{Message, MessageView};
use isoswitch::session::counters::MemoryCounters;
use isoswitch::session::crypto::des_fast;
use isoswitch::session::crypto::{compute, Key, MacAlgorithm, Padding};
use isoswitch::session::{
    HostConfig, HostOutcome, HostSession, MemoryKeyStore, SessionProfile, TerminalConfig,
    TerminalId, TerminalSession,
};

const DES: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF];
const TDES: [u8; 16] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
];

fn des_blocks(c: &mut Criterion) {
    let mut g = c.benchmark_group("des_block");
    g.throughput(Throughput::Elements(1));
    let ours = des_fast::Des::new(&DES);
    g.bench_function("des/isoswitch", |b| {
        let mut block = [0u8; 8];
        b.iter(|| ours.encrypt_block(black_box(&mut block)))
    });
    let theirs = des::Des::new_from_slice(&DES).expect("des");
    g.bench_function("des/rustcrypto", |b| {
        let mut block = [0u8; 8];
        b.iter(|| theirs.encrypt_block(GenericArray::from_mut_slice(black_box(&mut block))))
    });
    let ours = des_fast::Tdes2::new(&TDES);
    g.bench_function("tdes2/isoswitch", |b| {
        let mut block = [0u8; 8];
        b.iter(|| ours.encrypt_block(black_box(&mut block)))
    });
    let theirs = des::TdesEde2::new_from_slice(&TDES).expect("tdes");
    g.bench_function("tdes2/rustcrypto", |b| {
        let mut block = [0u8; 8];
        b.iter(|| theirs.encrypt_block(GenericArray::from_mut_slice(black_box(&mut block))))
    });
    g.finish();

    let data: Vec<u8> = (0..100u8).collect();
    let tdes = Key::tdes(&TDES).expect("tdes");
    let mut g = c.benchmark_group("mac_100_bytes");
    g.throughput(Throughput::Elements(1));
    g.bench_function("x9.19", |b| {
        b.iter(|| {
            compute(
                MacAlgorithm::X919(Padding::Method1),
                black_box(&tdes),
                black_box(&data),
            )
            .expect("mac")
        })
    });
    g.finish();
}

fn macs(c: &mut Criterion) {
    let data: Vec<u8> = (0..200u8).collect();
    let des = Key::des(&DES).expect("des");
    let tdes = Key::tdes(&TDES).expect("tdes");
    let aes = Key::aes(&TDES).expect("aes");
    let mut g = c.benchmark_group("mac_200_bytes");
    g.throughput(Throughput::Elements(1));
    for (name, alg, key) in [
        ("cbc-des", MacAlgorithm::CbcDes(Padding::Method1), &des),
        ("cbc-tdes", MacAlgorithm::CbcTdes(Padding::Method1), &tdes),
        ("x9.19", MacAlgorithm::X919(Padding::Method1), &tdes),
        ("aes-cmac", MacAlgorithm::AesCmac, &aes),
        ("cup-pos", MacAlgorithm::CupPos, &des),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| compute(alg, black_box(key), black_box(&data)).expect("mac"))
        });
    }
    g.finish();
}

fn id() -> TerminalId {
    TerminalId::new("TERM0001", "MERCHANT0000001").expect("id")
}

fn sale(p: &SessionProfile) -> Message {
    let mut m = Message::new(&p.dialect, "0200".parse().expect("mti"));
    m.set(2, "6225881234567890").expect("2");
    m.set(3, "000000").expect("3");
    m.set(4, "000000001000").expect("4");
    m.set(11, "000001").expect("11");
    m.set(22, "021").expect("22");
    m.set(25, "00").expect("25");
    id().write_to(&mut m).expect("id");
    m.set(49, "156").expect("49");
    m.set_bytes(52, &[0x11; 8]).expect("52");
    m
}

fn seal_verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("message_mac");
    g.throughput(Throughput::Elements(1));
    for name in ["cup-pos", "iso87-binary"] {
        let p = SessionProfile::builtin(name).expect("profile");
        let mak = Key::generate(p.keys.double_mak).expect("mak");
        let msg = sale(&p);
        g.bench_function(format!("seal_0200/{name}"), |b| {
            b.iter(|| {
                let mut m = msg.clone();
                p.seal(&mak, &mut m).expect("seal")
            })
        });
        let bytes = p.seal(&mak, &mut msg.clone()).expect("seal");
        g.bench_function(format!("verify_0200/{name}"), |b| {
            b.iter(|| {
                let v = MessageView::decode(&p.dialect, black_box(&bytes)).expect("decode");
                p.verify_mac(&mak, &v).expect("verify")
            })
        });
    }
    g.finish();
}

fn sign_ons(c: &mut Criterion) {
    let mut g = c.benchmark_group("host_sign_on");
    g.throughput(Throughput::Elements(1));
    for name in ["cup-pos", "iso87-binary"] {
        let p = SessionProfile::builtin(name).expect("profile");
        let tmk = Key::tdes(&TDES).expect("tmk");
        let mut store = MemoryKeyStore::new();
        store.insert(id(), tmk.clone()).expect("insert");
        let mut host = HostSession::new(p.clone(), HostConfig::default(), store).expect("host");
        let mut term =
            TerminalSession::new(p, TerminalConfig::new(id()), tmk, MemoryCounters::new())
                .expect("terminal");
        let req = term
            .sign_on(Instant::now(), Default::default())
            .expect("sign-on");
        g.bench_function(name, |b| {
            b.iter(|| {
                match host
                    .handle_request(Default::default(), req.clone())
                    .expect("handled")
                {
                    HostOutcome::Replied { reply, .. } => reply,
                    other => panic!("{other:?}"),
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, des_blocks, macs, seal_verify, sign_ons);
criterion_main!(benches);
