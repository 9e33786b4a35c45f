//! `terminal_sim --engine reversal-crate`: terminals whose transactions go through the
//! `isoswitch-reversal` crate — [`ReversalDriver`] over a per-terminal [`FileJournal`]
//! (write-ahead, group commit), the `cup-pos` [`ReversalProfile`], the
//! [`TerminalSession`] as the MAC hook, and the crate's terminal [`Settlement`]
//! (0500 / 0320 upload / 0820) at the end.
//!
//! Sales only (voids and refund advices are the built-in engine's, see
//! [`super::terminal`]). The session is signed on before it is handed to the driver; a
//! terminal that loses its keys (e.g. a restarted switch answering `77`) cannot sign on
//! again in this mode, so the kill tests use the built-in engine.
//!
//! [`Settlement`]: crate::reversal::Settlement

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::Rng;

use super::chaos::ChaosProxy;
use super::host::CARD_PIN;
use super::money::BatchTotals;
use super::terminal::{BatchResult, Report, TerminalResult, TerminalSimConfig};
use super::{local_now, Result, SimError};
use crate::codec::{Message, Mti};
use crate::net::{Client, ClientConfig, DialectCorrelator, Framing, ReconnectPolicy, TcpConnector};
use crate::reversal::{
    EngineConfig, FileJournal, Journal, LateResponses, Outcome, ReversalDriver, ReversalEngine,
    ReversalProfile, SettlementConfig,
};
use crate::session::counters::MemoryCounters;
use crate::session::crypto::{Fill, Pan, Pin, PinBlock, PinBlockFormat};
use crate::session::{Inbound, SessionProfile, TerminalConfig, TerminalSession};

fn rev(e: crate::reversal::ReversalError) -> SimError {
    SimError::Protocol(format!("reversal engine: {e}"))
}

fn minor(d: crate::reversal::Decimal) -> u64 {
    let mut x = d;
    x.rescale(2);
    u64::try_from(x.mantissa()).unwrap_or(0)
}

/// Runs the terminals through the `isoswitch-reversal` driver.
pub async fn run(config: TerminalSimConfig) -> Result<Report> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| SimError::io(config.data_dir.display(), e))?;
    let proxy = if config.chaos.is_noop() {
        None
    } else {
        Some(ChaosProxy::start("127.0.0.1:0", config.switch_addr.clone(), config.chaos).await?)
    };
    let target = match &proxy {
        Some(p) => p.local_addr().to_string(),
        None => config.switch_addr.clone(),
    };
    let n = config.terminals.len().max(1) as u64;
    let per_terminal = config.count.div_ceil(n);
    let counts = Arc::new([
        AtomicU64::new(0), // transactions
        AtomicU64::new(0), // approvals
        AtomicU64::new(0), // declines
        AtomicU64::new(0), // reversed
        AtomicU64::new(0), // reversals sent
        AtomicU64::new(0), // reversals acknowledged
    ]);
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
            .map_err(|e| SimError::Config(e.to_string()))?,
    ));
    let profile = SessionProfile::cup_pos()?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for entry in config.terminals.clone() {
        let late = LateResponses::new();
        let mut cc = ClientConfig::new(Framing::CupPos);
        cc.reconnect = Some(ReconnectPolicy {
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(500),
            ..Default::default()
        });
        let client = Client::builder(cc, DialectCorrelator::new(profile.dialect.clone()))
            .unmatched(late.clone())
            .spawn(TcpConnector::new(target.clone()))?;
        let mut tc = TerminalConfig::new(entry.id()?);
        tc.response_timeout = config.timeout;
        let mut session =
            TerminalSession::new(profile.clone(), tc, entry.key()?, MemoryCounters::new())?;
        let journal = FileJournal::open(config.data_dir.join(format!("{}.reversal", entry.tid)))
            .map_err(rev)?;
        let counts = counts.clone();
        let hist = hist.clone();
        let timeout = config.timeout;
        let dialect = profile.dialect.clone();
        tasks.push(tokio::spawn(async move {
            // Sign on (the driver's MAC hook needs the working keys).
            let mut signed = false;
            for _ in 0..50 {
                let Ok(bytes) = session.sign_on(Instant::now(), local_now()) else {
                    break;
                };
                if let Ok(resp) = client.request(bytes, timeout).await {
                    if let Ok(Inbound::SignedOn { .. }) =
                        session.handle_message(Instant::now(), resp)
                    {
                        signed = true;
                        break;
                    }
                }
                session.handle_timeout(Instant::now() + timeout);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let tid = entry.tid.clone();
            let fail = |why: &str| TerminalResult {
                tid: tid.clone(),
                batches: vec![BatchResult {
                    batch: why.to_string(),
                    balanced: false,
                    ours: BatchTotals::default(),
                    theirs: None,
                }],
                net: 0,
                unacknowledged: 0,
            };
            if !signed {
                return fail("no sign-on");
            }
            let pik = session.working_keys().map(|k| k.pik().clone());
            let batch = session.batch().get();
            let ec = EngineConfig {
                response_timeout: timeout,
                reversal_timeout: timeout,
                backoff_base: Duration::from_millis(100),
                backoff_max: Duration::from_secs(1),
                deferred_retry: Some(Duration::from_millis(500)),
                ..EngineConfig::default()
            };
            let Ok(rp) = ReversalProfile::cup_pos() else {
                return fail("profile");
            };
            let mut journal = journal;
            let recovered = journal.load().and_then(|records| {
                ReversalEngine::recover(Instant::now(), ec, rp, session, batch, records)
            });
            let driver = match recovered {
                Ok(engine) => ReversalDriver::builder(engine, journal, client.clone())
                    .late(late)
                    .spawn(),
                Err(e) => {
                    tracing::error!(%tid, error = %e, "driver");
                    return fail("driver");
                }
            };
            for i in 0..per_terminal {
                tracing::trace!(%tid, i, "transaction");
                let (amount, pan) = {
                    let mut r = rand::thread_rng();
                    (
                        r.gen_range(100..100_000u64),
                        format!("6223{:012}", (i % 8) + 1000 * u64::from(r.gen::<u8>() % 4)),
                    )
                };
                let mut m = Message::new(&dialect, Mti::from_u16(200).unwrap_or(Mti::ZERO));
                let built = (|| -> Result<()> {
                    m.set(2, pan.as_str())?;
                    m.set(3, "000000")?;
                    m.set_number(4, amount)?;
                    m.set(14, "2812")?;
                    m.set(22, "021")?;
                    m.set(25, "00")?;
                    m.set(35, format!("{pan}=2812101"))?;
                    m.set(41, entry.tid.as_str())?;
                    m.set(42, entry.mid.as_str())?;
                    m.set(49, "156")?;
                    if let Some(pik) = &pik {
                        let b = PinBlock::encipher(
                            PinBlockFormat::Iso0,
                            &Pin::new(CARD_PIN)?,
                            Some(&Pan::new(&pan)?),
                            pik,
                            Fill::Random,
                        )?;
                        m.set_bytes(52, b.as_bytes())?;
                        m.set(53, "2600000000000000")?;
                    }
                    Ok(())
                })();
                if built.is_err() {
                    continue;
                }
                counts[0].fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                match driver.submit(m).await {
                    Ok(Outcome::Approved { .. }) => {
                        let _ = hist
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .record(t0.elapsed().as_micros() as u64);
                        counts[1].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Outcome::Declined { .. }) => {
                        counts[2].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        counts[3].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(%tid, error = %e, "submit"),
                }
            }
            tracing::debug!(%tid, "transactions sent; waiting for pending reversals");
            // Every reversal acknowledged before settling.
            let mut pending = usize::MAX;
            for _ in 0..300 {
                match driver.status().await {
                    Ok(s) if s.pending_reversals == 0 => {
                        pending = 0;
                        break;
                    }
                    Ok(s) => pending = s.pending_reversals,
                    Err(_) => break,
                }
                let _ = driver.connected().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let status = driver.status().await.ok();
            if let Some(s) = &status {
                counts[4].fetch_add(s.stats.reversals_sent, Ordering::Relaxed);
                counts[5].fetch_add(s.stats.reversals_acked, Ordering::Relaxed);
            }
            let ours = status
                .map(|s| BatchTotals {
                    debit_amount: minor(s.totals.domestic.debit_amount),
                    debit_count: s.totals.domestic.debit_count,
                    credit_amount: minor(s.totals.domestic.credit_amount),
                    credit_count: s.totals.domestic.credit_count,
                })
                .unwrap_or_default();
            // Settlement runs over the same chaotic link: a settlement cut short (reset,
            // dropped answers) is started again once the link is back, as a terminal
            // operator would, up to three times.
            let mut settled = Err(crate::reversal::ReversalError::DriverStopped);
            for attempt in 0..3 {
                if attempt > 0 {
                    let _ = driver.connected().await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                tracing::debug!(%tid, attempt, pending, "settling");
                let mut sc = SettlementConfig::new(entry.tid.as_str(), entry.mid.as_str());
                sc.timeout = timeout;
                sc.max_tries = 20;
                settled = driver.settle(&client, dialect.clone(), sc).await;
                if settled.is_ok() {
                    break;
                }
            }
            tracing::debug!(%tid, settled = settled.is_ok(), "closing");
            client.close(Duration::from_secs(1)).await;
            let balanced = matches!(&settled, Ok(o) if o.balanced);
            if let Err(e) = &settled {
                tracing::warn!(%tid, error = %e, "settlement");
            }
            TerminalResult {
                tid,
                batches: vec![BatchResult {
                    batch: format!("{batch:06}"),
                    balanced,
                    ours,
                    theirs: balanced.then_some(ours),
                }],
                net: ours.net(),
                unacknowledged: if pending == usize::MAX { 0 } else { pending },
            }
        }));
    }
    let mut terminals = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => terminals.push(r),
            Err(e) => tracing::error!(error = %e, "terminal task failed"),
        }
    }
    let latency = hist.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let c = |i: usize| counts[i].load(Ordering::Relaxed);
    Ok(Report {
        terminals,
        transactions: c(0),
        approvals: c(1),
        declines: c(2),
        no_response: c(3),
        reversals_sent: c(4),
        reversals_acked: c(5),
        advice_repeats: 0,
        late: 0,
        sign_ons: n,
        mac_failures: 0,
        not_sent: 0,
        elapsed: start.elapsed(),
        latency,
        chaos: proxy.as_ref().map(|p| p.summary()),
    })
}
