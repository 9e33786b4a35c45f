//! `terminal_sim`: N POS terminals against a `cup-pos` switch.
//!
//! Each terminal has its own connection, TID, master key ([`TerminalSession`]) and journal
//! (`<data-dir>/<TID>.journal`). It signs on, then sends sales (0200, 60.1 `22`), voids of
//! its own approved sales (0200, 60.1 `23`, DE 61) and refunds (0220 advices, repeated as
//! 0221 until answered) at a target rate, with up to `window` transactions in flight.
//!
//! Terminal reversal rules (domain notes §5): the reversal record is written **before**
//! the original is sent; a definite (MAC-verified) response deletes it; on timeout or a bad
//! MAC the terminal sends a 0400 (reason `98` / `A0`) before its next new transaction and
//! retries it (3 tries, then again later) until any 0410 arrives. Refunds are not
//! reversible: they are repeated instead.
//!
//! At the end of each batch (every `batch_max` transactions and at the end of the run) the
//! terminal settles (0500, field 48), uploads its batch when the switch says it is not
//! balanced (0320 ×n, then end of upload), signs off and (if it goes on) signs on again.
//!
//! The [`Report`]: transactions, approvals, declines, reversals sent and acknowledged,
//! late responses, throughput, latency percentiles and each terminal's settlement.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::Rng;
use serde::Serialize;

use super::chaos::{ChaosConfig, ChaosProxy};
use super::config::TerminalEntry;
use super::host::CARD_PIN;
use super::money::{cents, BatchTotals, Kind};
use super::wal::{Sync, Wal};
use super::{local_now, Result, SimError};
use crate::codec::{Message, Mti};
use crate::net::{Client, ClientConfig, DialectCorrelator, Framing, ReconnectPolicy, TcpConnector};
use crate::session::counters::MemoryCounters;
use crate::session::crypto::{Fill, Pan, Pin, PinBlock, PinBlockFormat};
use crate::session::{Inbound, SessionProfile, TerminalConfig, TerminalSession, TerminalState};

/// `terminal_sim` settings.
#[derive(Debug, Clone)]
pub struct TerminalSimConfig {
    /// The switch (`host:port`).
    pub switch_addr: String,
    /// Terminals to run (their TID, MID and master key).
    pub terminals: Vec<TerminalEntry>,
    /// Total transactions over all terminals (split evenly), unless `duration` is set.
    pub count: u64,
    /// Run for this long instead of a count.
    pub duration: Option<Duration>,
    /// Target transactions per second over all terminals (0: as fast as possible).
    pub rate: f64,
    /// Transactions in flight per terminal.
    pub window: usize,
    /// How long a terminal waits for a response.
    pub timeout: Duration,
    /// Fault injection between the terminals and the switch (in-process proxy).
    pub chaos: ChaosConfig,
    /// Where the terminals' journals go.
    pub data_dir: PathBuf,
    /// A progress bar on stderr.
    pub progress: bool,
    /// A batch is settled after this many transactions (n3 counts in field 48).
    pub batch_max: u64,
}

/// One batch settlement of a terminal.
#[derive(Debug, Clone, Serialize)]
pub struct BatchResult {
    pub batch: String,
    pub balanced: bool,
    pub ours: BatchTotals,
    pub theirs: Option<BatchTotals>,
}

/// A terminal's settlements.
#[derive(Debug, Clone, Serialize)]
pub struct TerminalResult {
    pub tid: String,
    pub batches: Vec<BatchResult>,
    /// Approved minus reversed (sales − voids − refunds), minor units.
    pub net: i128,
    /// Reversals still unacknowledged at the end.
    pub unacknowledged: usize,
}

impl TerminalResult {
    pub fn balanced(&self) -> bool {
        self.unacknowledged == 0
            && !self.batches.is_empty()
            && self.batches.iter().all(|b| b.balanced)
    }
}

#[derive(Debug, Default)]
struct Counts {
    transactions: AtomicU64,
    approvals: AtomicU64,
    declines: AtomicU64,
    no_response: AtomicU64,
    reversals_sent: AtomicU64,
    reversals_acked: AtomicU64,
    repeats: AtomicU64,
    late: AtomicU64,
    sign_ons: AtomicU64,
    mac_failures: AtomicU64,
    not_sent: AtomicU64,
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub terminals: Vec<TerminalResult>,
    pub transactions: u64,
    pub approvals: u64,
    pub declines: u64,
    pub no_response: u64,
    pub reversals_sent: u64,
    pub reversals_acked: u64,
    pub advice_repeats: u64,
    pub late: u64,
    pub sign_ons: u64,
    pub mac_failures: u64,
    pub not_sent: u64,
    pub elapsed: Duration,
    /// Response latency in microseconds (answered transactions).
    pub latency: Histogram<u64>,
    pub chaos: Option<String>,
}

impl Report {
    /// Every terminal's every batch balanced, no reversal left.
    pub fn all_balanced(&self) -> bool {
        !self.terminals.is_empty() && self.terminals.iter().all(TerminalResult::balanced)
    }

    /// Sum over terminals of approved minus reversed, minor units.
    pub fn net(&self) -> i128 {
        self.terminals.iter().map(|t| t.net).sum()
    }

    /// Transactions per second.
    pub fn throughput(&self) -> f64 {
        self.transactions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let q = |p: f64| Duration::from_micros(self.latency.value_at_quantile(p));
        let mut s = String::new();
        s.push_str(&format!(
            "transactions {}  approvals {}  declines {}  no response {}\n",
            self.transactions, self.approvals, self.declines, self.no_response
        ));
        s.push_str(&format!(
            "reversals sent {}  acknowledged {}  advice repeats {}  late responses {}\n",
            self.reversals_sent, self.reversals_acked, self.advice_repeats, self.late
        ));
        s.push_str(&format!(
            "sign-ons {}  response MAC failures {}  requests not sent (link down) {}\n",
            self.sign_ons, self.mac_failures, self.not_sent
        ));
        s.push_str(&format!(
            "elapsed {:.2} s  throughput {:.0} tx/s  latency p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}\n",
            self.elapsed.as_secs_f64(),
            self.throughput(),
            q(0.5),
            q(0.99),
            q(0.999),
            Duration::from_micros(self.latency.max())
        ));
        if let Some(c) = &self.chaos {
            s.push_str(&format!("chaos proxy: {c}\n"));
        }
        let balanced = self.terminals.iter().filter(|t| t.balanced()).count();
        s.push_str(&format!(
            "settlement: {balanced}/{} terminals balanced; approved − reversed total {}\n",
            self.terminals.len(),
            cents(self.net())
        ));
        for t in &self.terminals {
            if t.balanced() {
                continue;
            }
            for b in t.batches.iter().filter(|b| !b.balanced) {
                s.push_str(&format!(
                    "  {} batch {}: terminal {} / switch {}\n",
                    t.tid,
                    b.batch,
                    b.ours.describe(),
                    b.theirs
                        .map(|x| x.describe())
                        .unwrap_or_else(|| "no answer".into())
                ));
            }
            if t.unacknowledged > 0 {
                s.push_str(&format!(
                    "  {}: {} reversals unacknowledged\n",
                    t.tid, t.unacknowledged
                ));
            }
            if t.batches.is_empty() {
                s.push_str(&format!("  {}: no settlement\n", t.tid));
            }
        }
        s
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Spaces new transactions to a target rate (shared by all terminals).
struct Pacer {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pacer {
    async fn wait(&self) {
        let Some(iv) = self.interval else { return };
        let at = {
            let mut n = lock(&self.next);
            let now = Instant::now();
            if *n < now {
                *n = now;
            }
            let at = *n;
            *n += iv;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "t")]
enum JRec<'a> {
    Reversal {
        stan: &'a str,
        batch: &'a str,
        kind: Kind,
        amount: u64,
    },
    Advice {
        stan: &'a str,
        batch: &'a str,
        amount: u64,
    },
    Answered {
        stan: &'a str,
        code: &'a str,
    },
    ReversalAcknowledged {
        stan: &'a str,
    },
}

/// A transaction the terminal must reverse.
#[derive(Debug, Clone)]
struct PendingReversal {
    original: Message,
    reason: &'static str,
}

#[derive(Debug, Default)]
struct BatchBook {
    /// Approved, standing sales: STAN → (amount, PAN, MMDD).
    sales: HashMap<String, (u64, String)>,
    /// Sales chosen for a void in flight.
    voiding: HashMap<String, (u64, String)>,
    refunds: HashMap<String, u64>,
    /// Uploadable entries (STAN, PAN, amount).
    count: u64,
}

impl BatchBook {
    fn totals(&self) -> BatchTotals {
        let mut t = BatchTotals::default();
        for (a, _) in self.sales.values().chain(self.voiding.values()) {
            t.add_debit(*a);
        }
        for a in self.refunds.values() {
            t.add_credit(*a);
        }
        t
    }
}

struct Term {
    entry: TerminalEntry,
    session: Mutex<TerminalSession<MemoryCounters>>,
    client: Client,
    journal: Wal,
    reversals: Mutex<VecDeque<PendingReversal>>,
    book: Mutex<BatchBook>,
    counts: Arc<Counts>,
    hist: Arc<Mutex<Histogram<u64>>>,
    timeout: Duration,
    pans: Vec<String>,
    sign_on_lock: tokio::sync::Mutex<()>,
}

enum Outcome {
    Answered(Box<Message>),
    Failed(&'static str),
}

impl Term {
    async fn ensure_signed_on(&self) -> bool {
        let _g = self.sign_on_lock.lock().await;
        for attempt in 0..50u32 {
            if lock(&self.session).state() == TerminalState::Ready {
                return true;
            }
            // New keys only once nothing sealed under the old ones is in flight: their
            // answers would fail the new MAC and force yet another sign-on.
            let drain_end = Instant::now() + self.timeout * 2;
            while Instant::now() < drain_end {
                lock(&self.session).handle_timeout(Instant::now());
                if lock(&self.session).in_flight() == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let bytes = match lock(&self.session).sign_on(Instant::now(), local_now()) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(tid = %self.entry.tid, error = %e, "cannot build sign-on");
                    return false;
                }
            };
            match self.client.request(bytes, self.timeout).await {
                Ok(resp) => {
                    let r = lock(&self.session).handle_message(Instant::now(), resp);
                    if let Ok(Inbound::SignedOn { .. }) = r {
                        self.counts.sign_ons.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                    tracing::warn!(tid = %self.entry.tid, result = ?r.map(|_| ()), "sign-on not accepted");
                }
                Err(e) => {
                    lock(&self.session).handle_timeout(Instant::now());
                    tracing::debug!(tid = %self.entry.tid, error = %e, "sign-on: no answer");
                }
            }
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(10) + 1))).await;
        }
        false
    }

    /// Seals and sends a request; verifies the answer.
    async fn exchange(&self, msg: Message) -> Outcome {
        if !self.ensure_signed_on().await {
            return Outcome::Failed("98");
        }
        let sealed = {
            let mut session = lock(&self.session);
            session.handle_timeout(Instant::now());
            session.seal_request(Instant::now(), msg)
        };
        let sealed = match sealed {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(tid = %self.entry.tid, error = %e, "cannot seal");
                return Outcome::Failed("06");
            }
        };
        let start = Instant::now();
        let mut result = self
            .client
            .request(sealed.bytes.clone(), self.timeout)
            .await;
        // Definitely not sent (the link is down): wait for it and send the same bytes.
        while matches!(result, Err(crate::net::RequestError::Rejected(_)))
            && start.elapsed() < self.timeout
        {
            let left = self.timeout.saturating_sub(start.elapsed());
            if self.client.wait_connected(left).await.is_err() {
                break;
            }
            let left = self.timeout.saturating_sub(start.elapsed());
            result = self.client.request(sealed.bytes.clone(), left).await;
        }
        match result {
            Ok(resp) => {
                let _ = lock(&self.hist).record(start.elapsed().as_micros() as u64);
                let r = lock(&self.session).handle_message(Instant::now(), resp);
                match r {
                    Ok(Inbound::Verified(m)) => Outcome::Answered(m),
                    Ok(Inbound::MacFailure(_)) => {
                        self.counts.mac_failures.fetch_add(1, Ordering::Relaxed);
                        Outcome::Failed("A0")
                    }
                    Ok(_) | Err(_) => Outcome::Failed("98"),
                }
            }
            Err(e) => {
                if !e.maybe_delivered() {
                    self.counts.not_sent.fetch_add(1, Ordering::Relaxed);
                }
                lock(&self.session).handle_timeout(Instant::now());
                Outcome::Failed("98")
            }
        }
    }

    fn base(&self, mti: u16, kind: Kind, pan: &str, amount: u64, batch: &str) -> Result<Message> {
        let profile = lock(&self.session).profile().dialect.clone();
        let mut m = Message::new(&profile, Mti::from_u16(mti)?);
        m.set(2, pan)?;
        m.set(3, kind.processing_code())?;
        m.set_number(4, amount)?;
        m.set(14, "2812")?;
        m.set(22, "021")?;
        m.set(25, "00")?;
        m.set(41, self.entry.tid.as_str())?;
        m.set(42, self.entry.mid.as_str())?;
        m.set(49, "156")?;
        m.set(60, format!("{}{batch}000", kind.cup_type()))?;
        Ok(m)
    }

    /// One new transaction.
    async fn transact(&self, rng_kind: f64, amount: u64, pan_ix: usize) -> Result<()> {
        if !self.ensure_signed_on().await {
            return Err(SimError::Protocol(format!(
                "{}: cannot sign on",
                self.entry.tid
            )));
        }
        let batch = lock(&self.session).batch().to_string();
        let stan = lock(&self.session).next_stan()?.to_string();
        // Choose: void an approved sale (10%), refund (10%), sale.
        let void = if rng_kind < 0.10 {
            let mut b = lock(&self.book);
            let pick = b.sales.keys().next().cloned();
            pick.and_then(|s| b.sales.remove(&s).map(|v| (s, v)))
                .inspect(|(s, v)| {
                    b.voiding.insert(s.clone(), v.clone());
                })
        } else {
            None
        };
        let kind = if void.is_some() {
            Kind::Void
        } else if rng_kind < 0.20 {
            Kind::Refund
        } else {
            Kind::Sale
        };
        let (pan, amount) = match &void {
            Some((_, (a, p))) => (p.clone(), *a),
            None => (self.pans[pan_ix % self.pans.len()].clone(), amount),
        };
        let mut m = self.base(kind.request_mti(), kind, &pan, amount, &batch)?;
        m.set(11, stan.as_str())?;
        m.set(35, format!("{pan}=2812101"))?;
        if let Some((ostan, _)) = &void {
            let mmdd = local_now().format("%m%d").to_string();
            m.set(61, format!("{batch}{ostan}{mmdd}"))?;
        }
        if kind != Kind::Refund {
            let pik = lock(&self.session).working_keys().map(|k| k.pik().clone());
            if let Some(pik) = pik {
                let block = PinBlock::encipher(
                    PinBlockFormat::Iso0,
                    &Pin::new(CARD_PIN)?,
                    Some(&Pan::new(&pan)?),
                    &pik,
                    Fill::Random,
                )?;
                m.set_bytes(52, block.as_bytes())?;
                m.set(53, "2600000000000000")?;
            }
            self.journal
                .append(&JRec::Reversal {
                    stan: &stan,
                    batch: &batch,
                    kind,
                    amount,
                })
                .await?;
        } else {
            self.journal
                .append(&JRec::Advice {
                    stan: &stan,
                    batch: &batch,
                    amount,
                })
                .await?;
        }
        self.counts.transactions.fetch_add(1, Ordering::Relaxed);
        lock(&self.book).count += 1;
        let mut attempt = 0u32;
        let outcome = loop {
            let o = self.exchange(m.clone()).await;
            match o {
                Outcome::Failed(_) if kind == Kind::Refund && attempt < 200 => {
                    attempt += 1;
                    self.counts.repeats.fetch_add(1, Ordering::Relaxed);
                    m.set_mti(Mti::from_u16(221)?);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => break other,
            }
        };
        match outcome {
            Outcome::Answered(resp) => {
                let code = resp.get(39).unwrap_or_default();
                self.journal.append_nowait(&JRec::Answered {
                    stan: &stan,
                    code: &code,
                })?;
                let mut b = lock(&self.book);
                if code == "00" {
                    self.counts.approvals.fetch_add(1, Ordering::Relaxed);
                    match (&kind, &void) {
                        (Kind::Sale, _) => {
                            b.sales.insert(stan.clone(), (amount, pan));
                        }
                        (Kind::Refund, _) => {
                            b.refunds.insert(stan.clone(), amount);
                        }
                        (Kind::Void, Some((ostan, _))) => {
                            b.voiding.remove(ostan);
                        }
                        (Kind::Void, None) => {}
                    }
                } else {
                    self.counts.declines.fetch_add(1, Ordering::Relaxed);
                    if let Some((ostan, v)) = &void {
                        if let Some(v2) = b.voiding.remove(ostan) {
                            b.sales.insert(ostan.clone(), v2);
                        } else {
                            b.sales.insert(ostan.clone(), v.clone());
                        }
                    }
                }
            }
            Outcome::Failed(reason) => {
                self.counts.no_response.fetch_add(1, Ordering::Relaxed);
                if let Some((ostan, _)) = &void {
                    // The void will be reversed: the sale stands.
                    let mut b = lock(&self.book);
                    if let Some(v) = b.voiding.remove(ostan) {
                        b.sales.insert(ostan.clone(), v);
                    }
                }
                if kind != Kind::Refund {
                    m.remove(35).remove(52).remove(53);
                    lock(&self.reversals).push_back(PendingReversal {
                        original: m,
                        reason,
                    });
                }
            }
        }
        Ok(())
    }

    /// Sends pending reversals (3 tries each round); returns how many remain.
    async fn send_reversals(&self) -> usize {
        loop {
            let Some(p) = lock(&self.reversals).pop_front() else {
                return 0;
            };
            let mut done = false;
            for attempt in 0..3 {
                let mut r = p.original.clone();
                r.set_mti(Mti::from_u16(if attempt == 0 { 400 } else { 401 }).unwrap_or(Mti::ZERO));
                let _ = r.set(39, p.reason);
                self.counts.reversals_sent.fetch_add(1, Ordering::Relaxed);
                if let Outcome::Answered(resp) = self.exchange(r).await {
                    if resp.mti().as_u16() == 410 {
                        self.counts.reversals_acked.fetch_add(1, Ordering::Relaxed);
                        let stan = p.original.get(11).unwrap_or_default();
                        let _ = self
                            .journal
                            .append_nowait(&JRec::ReversalAcknowledged { stan: &stan });
                        done = true;
                        break;
                    }
                }
            }
            if !done {
                lock(&self.reversals).push_back(p);
                return lock(&self.reversals).len();
            }
        }
    }

    async fn settle(&self) -> Result<BatchResult> {
        // All reversals first.
        for _ in 0..100 {
            if self.send_reversals().await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let batch = lock(&self.session).batch().to_string();
        let ours = lock(&self.book).totals();
        let mut theirs = None;
        let mut balanced = false;
        for _ in 0..20 {
            let stan = lock(&self.session).next_stan()?.to_string();
            let dialect = lock(&self.session).profile().dialect.clone();
            let mut m = Message::new(&dialect, Mti::from_u16(500)?);
            m.set(11, stan.as_str())?;
            m.set(41, self.entry.tid.as_str())?;
            m.set(42, self.entry.mid.as_str())?;
            m.set(48, ours.field48('0'))?;
            m.set(49, "156")?;
            m.set(60, format!("00{batch}201"))?;
            m.set(63, "01 ")?;
            if let Outcome::Answered(resp) = self.exchange(m).await {
                if let Some((t, flag)) = resp.get(48).and_then(|s| BatchTotals::parse_field48(&s)) {
                    balanced = flag == '1';
                    theirs = Some(if balanced { ours } else { t });
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if theirs.is_some() && !balanced {
            self.upload(&batch).await;
        }
        Ok(BatchResult {
            batch,
            balanced,
            ours,
            theirs,
        })
    }

    async fn upload(&self, batch: &str) {
        let entries: Vec<(String, String, u64)> = {
            let b = lock(&self.book);
            b.sales
                .iter()
                .map(|(s, (a, p))| (s.clone(), p.clone(), *a))
                .collect()
        };
        let dialect = lock(&self.session).profile().dialect.clone();
        for chunk in entries.chunks(8) {
            let mut f48 = format!("{:02}", chunk.len());
            for (s, p, a) in chunk {
                f48.push_str(&format!("00{s}{p:0>20}{a:012}"));
            }
            let Ok(stan) = lock(&self.session).next_stan() else {
                return;
            };
            let mut m = Message::new(&dialect, Mti::from_u16(320).unwrap_or(Mti::ZERO));
            let ok = m.set(11, stan.to_string()).is_ok()
                && m.set(41, self.entry.tid.as_str()).is_ok()
                && m.set(42, self.entry.mid.as_str()).is_ok()
                && m.set(48, f48).is_ok()
                && m.set(60, format!("00{batch}201")).is_ok();
            if ok {
                let _ = self.exchange(m).await;
            }
        }
        let Ok(stan) = lock(&self.session).next_stan() else {
            return;
        };
        let mut m = Message::new(&dialect, Mti::from_u16(320).unwrap_or(Mti::ZERO));
        let ok = m.set(11, stan.to_string()).is_ok()
            && m.set(41, self.entry.tid.as_str()).is_ok()
            && m.set(42, self.entry.mid.as_str()).is_ok()
            && m.set(48, format!("{:04}", entries.len() % 10_000)).is_ok()
            && m.set(60, format!("00{batch}202")).is_ok();
        if ok {
            let _ = self.exchange(m).await;
        }
    }

    async fn sign_off(&self) {
        let bytes = lock(&self.session).sign_off(Instant::now(), local_now());
        let Ok(bytes) = bytes else { return };
        match self.client.request(bytes, self.timeout).await {
            Ok(resp) => {
                let _ = lock(&self.session).handle_message(Instant::now(), resp);
            }
            Err(_) => lock(&self.session).handle_timeout(Instant::now()),
        }
        // A new batch either way (the terminal clears its journal).
        if lock(&self.session).state() != TerminalState::NotSignedOn {
            lock(&self.session).require_sign_on();
        }
        *lock(&self.book) = BatchBook::default();
    }
}

fn pans_for(tid: &str) -> Vec<String> {
    let seed: u64 = tid
        .bytes()
        .fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
    (0..8u64)
        .map(|i| {
            format!(
                "6222{:012}",
                (seed.wrapping_mul(1000) + i) % 1_000_000_000_000
            )
        })
        .collect()
}

/// Runs the terminals and returns the report.
pub async fn run(config: TerminalSimConfig) -> Result<Report> {
    if config.terminals.is_empty() {
        return Err(SimError::Config("no terminals".into()));
    }
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
    let n = config.terminals.len() as u64;
    let per_terminal = config.count.div_ceil(n);
    let counts = Arc::new(Counts::default());
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
            .map_err(|e| SimError::Config(e.to_string()))?,
    ));
    let pacer = Arc::new(Pacer {
        interval: (config.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / config.rate)),
        next: Mutex::new(Instant::now()),
    });
    let bar = if config.progress {
        let pb = match config.duration {
            Some(d) => indicatif::ProgressBar::new(d.as_secs().max(1)),
            None => indicatif::ProgressBar::new(per_terminal * n),
        };
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(pb)
    } else {
        None
    };
    let start = Instant::now();
    let deadline = config.duration.map(|d| start + d);
    let profile = SessionProfile::cup_pos()?;
    let mut tasks = Vec::new();
    for entry in config.terminals.clone() {
        let mut cc = ClientConfig::new(Framing::CupPos);
        cc.max_in_flight = config.window * 4 + 8;
        cc.reconnect = Some(ReconnectPolicy {
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(500),
            ..Default::default()
        });
        let client = Client::builder(cc, DialectCorrelator::new(profile.dialect.clone()))
            .unmatched({
                let counts = counts.clone();
                move |_u: crate::net::Unmatched| {
                    counts.late.fetch_add(1, Ordering::Relaxed);
                }
            })
            .spawn(TcpConnector::new(target.clone()))?;
        let mut tc = TerminalConfig::new(entry.id()?);
        tc.response_timeout = config.timeout;
        tc.max_in_flight = config.window * 4 + 8;
        let session =
            TerminalSession::new(profile.clone(), tc, entry.key()?, MemoryCounters::new())?;
        let (journal, _) = Wal::open::<serde_json::Value>(
            &config.data_dir.join(format!("{}.journal", entry.tid)),
            Sync::Os,
        )?;
        let term = Arc::new(Term {
            pans: pans_for(&entry.tid),
            entry,
            session: Mutex::new(session),
            client,
            journal,
            reversals: Mutex::new(VecDeque::new()),
            book: Mutex::new(BatchBook::default()),
            counts: counts.clone(),
            hist: hist.clone(),
            timeout: config.timeout,
            sign_on_lock: tokio::sync::Mutex::new(()),
        });
        let pacer = pacer.clone();
        let bar = bar.clone();
        let window = config.window.max(1);
        let batch_max = config.batch_max.max(1);
        tasks.push(tokio::spawn(async move {
            let mut batches = Vec::new();
            let mut net: i128 = 0;
            let mut left = per_terminal;
            let mut first = true;
            loop {
                let more = match deadline {
                    Some(d) => Instant::now() < d,
                    None => left > 0,
                };
                if !more && !first {
                    break;
                }
                first = false;
                let this_batch = match deadline {
                    Some(_) => batch_max,
                    None => left.min(batch_max),
                };
                left -= this_batch.min(left);
                let issued = Arc::new(AtomicU64::new(0));
                let mut workers = Vec::new();
                for _ in 0..window {
                    let t = term.clone();
                    let pacer = pacer.clone();
                    let issued = issued.clone();
                    let bar = bar.clone();
                    workers.push(tokio::spawn(async move {
                        loop {
                            t.send_reversals().await;
                            if deadline.is_some_and(|d| Instant::now() >= d) {
                                return;
                            }
                            if issued.fetch_add(1, Ordering::AcqRel) >= this_batch {
                                return;
                            }
                            pacer.wait().await;
                            let (k, amount, pan) = {
                                let mut r = rand::thread_rng();
                                (r.gen::<f64>(), r.gen_range(100..100_000u64), r.gen_range(0..8usize))
                            };
                            if let Err(e) = t.transact(k, amount, pan).await {
                                tracing::warn!(tid = %t.entry.tid, error = %e, "transaction not made");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            if let Some(b) = &bar {
                                if deadline.is_none() {
                                    b.inc(1);
                                }
                            }
                        }
                    }));
                }
                for w in workers {
                    let _ = w.await;
                }
                match term.settle().await {
                    Ok(b) => {
                        net += b.ours.net();
                        batches.push(b);
                    }
                    Err(e) => tracing::warn!(tid = %term.entry.tid, error = %e, "settlement failed"),
                }
                term.sign_off().await;
            }
            let unacknowledged = lock(&term.reversals).len();
            term.client.close(Duration::from_secs(1)).await;
            TerminalResult {
                tid: term.entry.tid.clone(),
                batches,
                net,
                unacknowledged,
            }
        }));
    }
    let ticker = match (&bar, deadline) {
        (Some(b), Some(_)) => {
            let b = b.clone();
            Some(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    b.inc(1);
                }
            }))
        }
        _ => None,
    };
    let mut terminals = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => terminals.push(r),
            Err(e) => tracing::error!(error = %e, "terminal task failed"),
        }
    }
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let elapsed = start.elapsed();
    let latency = lock(&hist).clone();
    let c = &counts;
    Ok(Report {
        terminals,
        transactions: c.transactions.load(Ordering::Relaxed),
        approvals: c.approvals.load(Ordering::Relaxed),
        declines: c.declines.load(Ordering::Relaxed),
        no_response: c.no_response.load(Ordering::Relaxed),
        reversals_sent: c.reversals_sent.load(Ordering::Relaxed),
        reversals_acked: c.reversals_acked.load(Ordering::Relaxed),
        advice_repeats: c.repeats.load(Ordering::Relaxed),
        late: c.late.load(Ordering::Relaxed),
        sign_ons: c.sign_ons.load(Ordering::Relaxed),
        mac_failures: c.mac_failures.load(Ordering::Relaxed),
        not_sent: c.not_sent.load(Ordering::Relaxed),
        elapsed,
        latency,
        chaos: proxy.as_ref().map(|p| p.summary()),
    })
}

/// Sends one message over a fresh `cup-pos` connection (tests and tools).
pub async fn one_shot(addr: &str, payload: Bytes, timeout: Duration) -> Result<Bytes> {
    let dialect = SessionProfile::cup_pos()?.dialect;
    let client = Client::builder(
        ClientConfig::new(Framing::CupPos),
        DialectCorrelator::new(dialect),
    )
    .connect(TcpConnector::new(addr.to_string()))
    .await?;
    let r = client
        .request(payload, timeout)
        .await
        .map_err(|e| SimError::Protocol(e.to_string()));
    client.close(Duration::from_millis(100)).await;
    r
}
