//! `cargo bench --bench reversal`: journaled transactions per second with fsync (group
//! commit over the write-ahead file journal, N concurrent submitters), and the latency
//! the journal adds to each transaction (p50/p99, hdrhistogram, printed at the end).
//!
//! One transaction = its `Started` record made durable (before sending) + its
//! `Finished` record made durable (before answering the caller): two durable appends,
//! each shared with every other submitter's records that arrived during the same fsync.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hdrhistogram::Histogram;
use isoswitch_reversal::journal::{FileJournal, Finish, GroupCommit, JournalRecord};
use isoswitch_reversal::{Decimal, TxnInfo, TxnKind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
            amount: Decimal::new(12345, 2),
            pan: "6222021234567890".into(),
        },
        // A typical cup-pos 0200 is ~200 bytes.
        message: Bytes::from(vec![0x5Au8; 200]),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("isoswitch-reversal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut group = c.benchmark_group("journal");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    let mut report = Vec::new();
    for submitters in [64usize, 512] {
        let journal = FileJournal::open(dir.join(format!("bench-{submitters}.journal"))).unwrap();
        let gc = GroupCommit::spawn(journal);
        let hist = Arc::new(Mutex::new(
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
        ));
        let next_id = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let fsyncs_before = gc.fsyncs();
        let mut total_txns = 0u64;
        let mut total_time = Duration::ZERO;
        group.bench_function(
            format!("fsync group commit, {submitters} submitters"),
            |b| {
                b.iter_custom(|iters| {
                    let gc = gc.clone();
                    let hist = hist.clone();
                    let next_id = next_id.clone();
                    let elapsed = rt.block_on(async move {
                        let per = iters.div_ceil(submitters as u64);
                        let start = Instant::now();
                        let mut tasks = Vec::with_capacity(submitters);
                        for _ in 0..submitters {
                            let gc = gc.clone();
                            let hist = hist.clone();
                            let next_id = next_id.clone();
                            tasks.push(tokio::spawn(async move {
                                let mut local = Vec::with_capacity(per as usize);
                                for _ in 0..per {
                                    let id =
                                        next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    let t0 = Instant::now();
                                    gc.append(vec![started(id)]).await.unwrap();
                                    gc.append(vec![JournalRecord::Finished {
                                        id,
                                        finish: Finish::Approved { code: *b"00" },
                                    }])
                                    .await
                                    .unwrap();
                                    local.push(t0.elapsed().as_micros() as u64);
                                }
                                let mut h = hist.lock().unwrap();
                                for v in local {
                                    let _ = h.record(v.max(1));
                                }
                            }));
                        }
                        for t in tasks {
                            t.await.unwrap();
                        }
                        start.elapsed()
                    });
                    // Scale to exactly `iters` transactions.
                    let done = iters.div_ceil(submitters as u64) * submitters as u64;
                    total_txns += done;
                    total_time += elapsed;
                    elapsed.mul_f64(iters as f64 / done as f64)
                })
            },
        );
        let h = hist.lock().unwrap();
        report.push(format!(
            "{submitters:>4} submitters: {:>8.0} journaled tx/s (2 durable appends each), {:.1} records/fsync; journal latency per transaction p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            total_txns as f64 / total_time.as_secs_f64(),
            gc.records() as f64 / (gc.fsyncs() - fsyncs_before).max(1) as f64,
            h.value_at_quantile(0.50) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
        ));
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
    println!("\n== reversal journal (fsync = fdatasync on this disk) ==");
    for line in report {
        println!("{line}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
