//! Security module benchmarks: PIN translations (ISO 0 under a TDES TPK → ISO 3 under
//! a TDES ZPK) per second through `SoftHsm` directly, and through `ThalesClient` to
//! the crate's payShield-compatible server on a `SoftHsm` in the same process over
//! loopback TCP, one at a time and pipelined (64 and 256 in flight on one
//! connection).
//!
//! `cargo bench --bench hsm -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::future::join_all;
use futures::FutureExt;
use isoswitch::hsm::thales::{serve, ClientConfig, ServerConfig, ThalesClient};
use isoswitch::hsm::{
    EncryptedKey, KeyHandle, KeyUsage, PinSource, PinTranslation, SecurityModule, SoftHsm,
};
use isoswitch::session::crypto::keys::{encrypt_key_under, Key};
use isoswitch::session::crypto::pin::{Fill, Pan, Pin, PinBlock, PinBlockFormat};

const LMK: [u8; 16] = [
    0xDE, 0xAF, 0xBE, 0xED, 0xEA, 0xFB, 0xEE, 0xDE, 0xAF, 0xBE, 0xED, 0xEA, 0xFB, 0xEE, 0xDE, 0xAF,
];

fn under_lmk(clear: &Key) -> EncryptedKey {
    let lmk = Key::tdes(&LMK).unwrap();
    EncryptedKey::new(clear.kind(), &encrypt_key_under(&lmk, clear).unwrap()).unwrap()
}

struct Fixture {
    tpk: Key,
    zpk: Key,
    pan: Pan,
    block: PinBlock,
}

fn fixture() -> Fixture {
    let tpk = Key::tdes(&[0x13; 16]).unwrap();
    let zpk = Key::tdes(&[0x2A; 16]).unwrap();
    let pan = Pan::new("4000001234562000").unwrap();
    let block = PinBlock::encipher(
        PinBlockFormat::Iso0,
        &Pin::new("1234").unwrap(),
        Some(&pan),
        &tpk,
        Fill::Random,
    )
    .unwrap();
    Fixture {
        tpk,
        zpk,
        pan,
        block,
    }
}

fn request<'a>(f: &'a Fixture, tpk: KeyHandle, zpk: KeyHandle) -> PinTranslation<'a> {
    PinTranslation {
        source: PinSource::Key(tpk),
        block: &f.block,
        pan: Some(&f.pan),
        destination: zpk,
        to_format: PinBlockFormat::Iso3,
    }
}

fn soft_hsm(c: &mut Criterion) {
    let f = fixture();
    let hsm = SoftHsm::new(Key::tdes(&LMK).unwrap()).unwrap();
    let tpk = hsm
        .load_key(&under_lmk(&f.tpk), KeyUsage::TerminalPin)
        .unwrap();
    let zpk = hsm.load_key(&under_lmk(&f.zpk), KeyUsage::ZonePin).unwrap();
    let mut g = c.benchmark_group("pin_translate");
    g.throughput(Throughput::Elements(1));
    g.bench_function("soft_hsm", |b| {
        b.iter(|| {
            hsm.translate_pin(request(&f, tpk, zpk))
                .now_or_never()
                .expect("SoftHsm futures are ready")
                .unwrap()
        })
    });
    g.finish();
}

fn thales_client(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let f = fixture();
    let client = rt.block_on(async {
        let hsm = Arc::new(SoftHsm::new(Key::tdes(&LMK).unwrap()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, hsm, ServerConfig::default()));
        ThalesClient::connect(addr, ClientConfig::default())
            .await
            .unwrap()
    });
    let tpk = client.register_key(under_lmk(&f.tpk), KeyUsage::TerminalPin);
    let zpk = client.register_key(under_lmk(&f.zpk), KeyUsage::ZonePin);
    let mut g = c.benchmark_group("pin_translate_thales_client");
    for depth in [1usize, 64, 256] {
        g.throughput(Throughput::Elements(depth as u64));
        g.bench_with_input(BenchmarkId::new("in_flight", depth), &depth, |b, &depth| {
            b.iter(|| {
                rt.block_on(async {
                    let all =
                        join_all((0..depth).map(|_| client.translate_pin(request(&f, tpk, zpk))))
                            .await;
                    for r in all {
                        r.unwrap();
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, soft_hsm, thales_client);
criterion_main!(benches);
