//! The data directory's parts: counters (a durable write per lease, not per STAN),
//! session snapshots (seal/open under the KEK; saved one by one or in a group with one
//! fsync). Run: `cargo bench --bench store`; figures in the README.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use isoswitch_reversal::datadir::{DataDir, DataDirConfig};
use isoswitch_reversal::durable::{SessionStore, Store};
use isoswitch_session::counters::{BatchNumber, Counters};
use isoswitch_session::crypto::{Key, KeyKind};
use isoswitch_session::{Kek, KeyScheme, TerminalId, TerminalSnapshot, WorkingKeys};

fn snapshot(n: u32) -> TerminalSnapshot {
    TerminalSnapshot {
        terminal: TerminalId::new(&format!("T{n:07}"), "MERCHANT0000001").expect("id"),
        batch: BatchNumber::new(1).expect("batch"),
        generation: 1,
        keys: Some(WorkingKeys::generate(KeyScheme::Double, KeyKind::Des).expect("keys")),
    }
}

fn bench(c: &mut Criterion) {
    let kek = Kek::new(&Key::aes(&[7; 32]).expect("aes")).expect("kek");
    let mut g = c.benchmark_group("counters");
    g.throughput(Throughput::Elements(1));
    for lease in [1u32, 1000] {
        let dir = tempfile::tempdir().expect("dir");
        let data = DataDir::open_with(
            dir.path(),
            DataDirConfig {
                counter_lease: lease,
                ..DataDirConfig::default()
            },
        )
        .expect("open");
        let mut counters = data.counters("upstream").expect("counters");
        g.bench_function(format!("next_stan lease {lease}"), |b| {
            b.iter(|| counters.next_stan().expect("stan"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("session snapshot");
    g.throughput(Throughput::Elements(1));
    let snap = snapshot(1);
    g.bench_function("seal", |b| b.iter(|| snap.seal(&kek).expect("seal")));
    let sealed = snap.seal(&kek).expect("seal");
    g.bench_function("open", |b| b.iter(|| sealed.open(&kek).expect("open")));
    g.finish();

    // Data at rest: the AES-256-GCM seal every journal and store record gets in a
    // program's data directory (a 256-byte payload, about an original's record).
    let mut g = c.benchmark_group("record seal");
    g.throughput(Throughput::Elements(1));
    let keys = isoswitch::reversal::seal::DataKeys::from_kek(&kek).expect("keys");
    let payload = vec![0x5Au8; 256];
    let mut out = Vec::with_capacity(512);
    g.bench_function("seal 256 B", |b| {
        b.iter(|| {
            out.clear();
            keys.seal_into(&payload, &mut out).expect("seal")
        })
    });
    let mut sealed = Vec::new();
    keys.seal_into(&payload, &mut sealed).expect("seal");
    let mut clear = Vec::with_capacity(512);
    g.bench_function("open 256 B", |b| {
        b.iter(|| keys.open_into(&sealed, &mut clear).expect("open"))
    });
    g.finish();

    let mut g = c.benchmark_group("session store");
    let dir = tempfile::tempdir().expect("dir");
    let data = DataDir::open(dir.path()).expect("open");
    let mut store = data.sessions("host").expect("sessions");
    let group: Vec<_> = (0..64)
        .map(|n| snapshot(n).seal(&kek).expect("seal"))
        .collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("save 64 one by one", |b| {
        b.iter_batched(
            || group.clone(),
            |v| {
                for s in v.chunks(1) {
                    store.save(s).expect("save");
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("save 64 as one group", |b| {
        b.iter(|| store.save(&group).expect("save"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
