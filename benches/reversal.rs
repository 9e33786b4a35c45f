//! `cargo bench --bench reversal`: originals through the [`ReversalDriver`] in switch mode
//! over an in-memory host (`-- driver`), and journaled transactions per second with fsync (group
//! commit over the write-ahead file journal, N concurrent submitters), and the latency
//! the journal adds to each transaction (p50/p99, hdrhistogram, printed at the end).
//!
//! One transaction = its `Started` record made durable (before sending) + its
//! `Finished` record made durable (before answering the caller): two durable appends,
//! each shared with every other submitter's records that arrived during the same fsync.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hdrhistogram::Histogram;
use isoswitch_codec::Message;
use isoswitch_net::RequestError;
use isoswitch_reversal::journal::{FileJournal, Finish, GroupCommit, Journal, JournalRecord};
use isoswitch_reversal::{
    Decimal, DriverConfig, EngineConfig, EngineEvent, NoMac, ReversalDriver, ReversalEngine,
    ReversalProfile, Transport, TxnInfo, TxnKind,
};
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

/// Discards what it is given (the driver bench measures the driver, not a disk).
struct NullJournal;

impl Journal for NullJournal {
    fn load(&mut self) -> isoswitch_reversal::Result<Vec<JournalRecord>> {
        Ok(Vec::new())
    }
    fn append(&mut self, _records: &[JournalRecord]) -> isoswitch_reversal::Result<()> {
        Ok(())
    }
    fn compact(&mut self, _live: &[JournalRecord]) -> isoswitch_reversal::Result<()> {
        Ok(())
    }
}

/// An in-memory host: answers every request `00` at once (decode, build the response,
/// encode: about what a real peer's answer costs the driver to receive).
struct EchoHost {
    dialect: isoswitch_codec::Dialect,
}

impl Transport for EchoHost {
    fn request(
        &self,
        msg: Bytes,
        _timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Bytes, RequestError>> + Send {
        let answer = (|| {
            let req = Message::decode(&self.dialect, msg).ok()?;
            let mut r = Message::response_to(&req).ok()?;
            for n in [11, 41] {
                if let (Some(v), false) = (req.get(n), r.has(n)) {
                    r.set(n, v).ok()?;
                }
            }
            r.set(39, "00").ok()?;
            r.to_bytes().ok()
        })()
        .ok_or(RequestError::Timeout);
        async move { answer }
    }
}

/// An upstream 0200 as a switch forwards it (iso87-binary, no DE 11: the engine stamps it).
fn upstream_sale(dialect: &isoswitch_codec::Dialect) -> Message {
    let mut m = Message::new(dialect, "0200".parse().unwrap());
    for (n, v) in [
        (2, "4761739001010010"),
        (3, "000000"),
        (4, "000000012345"),
        (7, "1201213000"),
        (12, "213000"),
        (13, "1201"),
        (32, "123456"),
        (37, "000000000001"),
        (41, "TERM0001"),
        (42, "MERCHANT0000001"),
        (49, "840"),
    ] {
        m.set(n, v).unwrap();
    }
    m
}

fn spawn_driver<J: Journal>(
    journal: J,
    max_batch: usize,
    events: Option<tokio::sync::mpsc::UnboundedSender<EngineEvent>>,
) -> ReversalDriver {
    let profile = ReversalProfile::iso87_binary().unwrap();
    let dialect = profile.dialect.clone();
    let engine = ReversalEngine::new(
        EngineConfig::switch(),
        profile,
        NoMac::new(dialect.clone()),
        1,
    );
    let b = ReversalDriver::builder(engine, journal, EchoHost { dialect }).config(DriverConfig {
        max_batch,
        ..DriverConfig::default()
    });
    match events {
        Some(tx) => b.events(tx).spawn(),
        None => b.spawn(),
    }
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`, clock ticks
/// of 10 ms); `None` elsewhere.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Transactions and CPU time spent on them, per bench case.
#[derive(Default)]
struct CpuTally {
    txns: u64,
    cpu: Duration,
}

impl CpuTally {
    fn run(&mut self, iters: u64, f: impl FnOnce() -> Duration) -> Duration {
        let before = cpu_time();
        let d = f();
        if let (Some(a), Some(b)) = (before, cpu_time()) {
            self.cpu += b.saturating_sub(a);
            self.txns += iters;
        }
        d
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name}: {:.1} µs CPU per transaction (whole process: driver, journal thread, callers, in-memory host) over {} transactions",
            self.cpu.as_secs_f64() * 1e6 / self.txns.max(1) as f64,
            self.txns
        )
    }
}

/// `iters` originals from 256 callers, each awaiting its outcome; the time scaled to
/// exactly `iters`.
async fn submit_load(driver: ReversalDriver, sale: Message, iters: u64) -> Duration {
    let callers = 256u64;
    let per = iters.div_ceil(callers);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let driver = driver.clone();
        let sale = sale.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let o = driver.submit_tagged(sale.clone(), c << 32 | i).await;
                assert!(o.unwrap().is_approved());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start
        .elapsed()
        .mul_f64(iters as f64 / (per * callers) as f64)
}

/// Originals through the driver (switch mode) at load: submit + journal group + transmit
/// + response + outcome, per transaction.
fn bench_driver(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dialect = ReversalProfile::iso87_binary().unwrap().dialect;
    let sale = upstream_sale(&dialect);
    let mut group = c.benchmark_group("driver");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    let mut cpu_report = Vec::new();
    for max_batch in [1usize, 512] {
        // 256 callers, each awaiting its outcome (submit_tagged).
        let driver = rt.block_on(async { spawn_driver(NullJournal, max_batch, None) });
        let name = format!("submit, 256 callers, batch {max_batch}");
        let mut tally = CpuTally::default();
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                tally.run(iters, || {
                    rt.block_on(submit_load(driver.clone(), sale.clone(), iters))
                })
            })
        });
        cpu_report.push(tally.line(&name));
        // One producer, outcomes on the events channel (enqueue).
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let driver = rt.block_on(async { spawn_driver(NullJournal, max_batch, Some(tx)) });
        let name = format!("enqueue + events, batch {max_batch}");
        let mut tally = CpuTally::default();
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let driver = driver.clone();
                let sale = sale.clone();
                let rx = rx.clone();
                tally.run(iters, || {
                    rt.block_on(async move {
                        let start = Instant::now();
                        let producer = tokio::spawn(async move {
                            for i in 0..iters {
                                driver.enqueue(sale.clone(), i + 1).await.unwrap();
                            }
                        });
                        let mut rx = rx.lock().await;
                        let mut done = 0;
                        while done < iters {
                            match rx.recv().await {
                                Some(EngineEvent::Completed { outcome, .. }) => {
                                    assert!(outcome.is_approved());
                                    done += 1;
                                }
                                Some(_) => {}
                                None => panic!("driver stopped"),
                            }
                        }
                        producer.await.unwrap();
                        start.elapsed()
                    })
                })
            })
        });
        cpu_report.push(tally.line(&name));
    }
    // With a real journal (fdatasync per group).
    let dir = std::env::temp_dir().join(format!("isoswitch-driver-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = FileJournal::open(dir.join("driver.journal")).unwrap();
    let driver = rt.block_on(async { spawn_driver(journal, 512, None) });
    let name = "submit, 256 callers, batch 512, file journal (fsync)";
    let mut tally = CpuTally::default();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            tally.run(iters, || {
                rt.block_on(submit_load(driver.clone(), sale.clone(), iters))
            })
        })
    });
    cpu_report.push(tally.line(name));
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
    println!("\n== reversal driver, switch mode, iso87-binary 0200 ==");
    for line in cpu_report {
        println!("{line}");
    }
}

criterion_group!(benches, bench, bench_driver);
criterion_main!(benches);
