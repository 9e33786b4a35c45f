//! The PostgreSQL store's journal under load: journaled transactions per second through
//! `GroupCommit` over a `PgJournal` (one database transaction per group of appends,
//! `synchronous_commit` and fsync on, the server a throwaway cluster on this machine,
//! or `ISOSWITCH_PG_URL`), with 64 and 512 concurrent submitters, each waiting for its
//! record to be committed before the next. After criterion's figures, a fixed-length
//! run per level prints the added latency (p50 / p99 of one append). Run:
//! `cargo bench --bench pg`; figures in the README.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use isoswitch_pg::testing::TestCluster;
use isoswitch_pg::{PgConfig, PgStore};
use isoswitch_reversal::durable::Store;
use isoswitch_reversal::{Decimal, GroupCommit, JournalRecord, TxnInfo, TxnKind};

fn started(id: u64) -> JournalRecord {
    JournalRecord::Started {
        id,
        tag: id,
        batch: 1,
        stan: (id % 999_999) as u32 + 1,
        info: TxnInfo {
            kind: TxnKind::Debit,
            foreign: false,
            txn_type: 0,
            amount: Decimal::new(1000, 2),
            pan: "6222020000000001".into(),
        },
        // About the size of a journaled iso87 original.
        message: Bytes::from(vec![0x30u8; 120]),
    }
}

/// `n` submitters share `total` appends; returns the elapsed time and each append's
/// latency in microseconds.
fn run(
    rt: &tokio::runtime::Runtime,
    gc: &GroupCommit,
    n: u64,
    total: u64,
    first_id: u64,
) -> (Duration, Vec<u64>) {
    rt.block_on(async {
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..n {
            let gc = gc.clone();
            let mine = total / n + u64::from(w < total % n);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(mine as usize);
                for i in 0..mine {
                    let t = Instant::now();
                    gc.append(vec![started(first_id + w * 1_000_000 + i)])
                        .await
                        .expect("append");
                    lat.push(t.elapsed().as_micros() as u64);
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.expect("task"));
        }
        (t0.elapsed(), lat)
    })
}

fn bench(c: &mut Criterion) {
    let pg = TestCluster::require();
    let url = pg.fresh_database("bench").expect("database");
    let mut cfg = PgConfig::new(&url);
    cfg.node = "bench".into();
    let keys = isoswitch_reversal::seal::DataKeys::new(&[0x5A; 32]).expect("data key");
    let store = PgStore::open(cfg, std::sync::Arc::new(keys)).expect("store");
    let gc = GroupCommit::spawn(store.journal("bench").expect("journal"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut next_id = 1u64 << 40;
    let mut g = c.benchmark_group("pg journal group commit");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    for n in [64u64, 512] {
        g.bench_function(format!("{n} submitters"), |b| {
            b.iter_custom(|iters| {
                next_id += 1 << 32;
                // At least one append per submitter; the time is scaled to `iters`.
                let total = iters.max(n);
                let (elapsed, _) = run(&rt, &gc, n, total, next_id);
                elapsed.mul_f64(iters as f64 / total as f64)
            })
        });
    }
    g.finish();
    for n in [64u64, 512] {
        next_id += 1 << 32;
        let total = 40_000;
        let (elapsed, mut lat) = run(&rt, &gc, n, total, next_id);
        lat.sort_unstable();
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        println!(
            "pg journal, {n} submitters: {:.0} journaled tx/s over {total}, added latency p50 {} µs, p99 {} µs, {} transactions for {} records",
            total as f64 / elapsed.as_secs_f64(),
            p(0.50),
            p(0.99),
            gc.fsyncs(),
            gc.records()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
