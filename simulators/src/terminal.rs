//! `terminal_sim`: N POS terminals against a `cup-pos` switch, each running the library:
//! an [`UpstreamLink`] (a net client and the terminal's `TerminalSession`: sign-on at
//! start, on every reconnection and whenever the switch answers `77`/`A0`) and a
//! [`ReversalDriver`] over the terminal's write-ahead journal (the `cup-pos`
//! [`ReversalProfile`]: a sale or void whose answer goes missing is reversed — 0400, then
//! 0401 repeats — before the next transaction; a refund is an advice, repeated as 0221
//! until answered, never reversed), and the crate's terminal [`Settlement`] (0500, batch
//! upload 0320 when the switch's totals differ, end of upload).
//!
//! A simulated terminal behaves like a POS: one transaction at a time by default
//! (`window` > 1 for load tests). Its state is durable under the data directory (one
//! [`DataDir`], locked): one shared journal for all its terminals (a member each:
//! [`SharedJournal`], one journal thread and one fsync per group), the counters per
//! terminal, and the sessions (working keys sealed under the KEK), so a second run continues the first: same STAN
//! sequence, same batch, no new sign-on while the switch kept the session too.
//!
//! The [`Report`]: transactions, approvals, declines, reversals sent and acknowledged,
//! throughput, latency percentiles and each terminal's settlement.
//!
//! [`Settlement`]: crate::reversal::Settlement
//! [`DataDir`]: crate::reversal::DataDir
//! [`SharedJournal`]: crate::reversal::SharedJournal

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
use super::host::{CARD_PIN, WRONG_PIN};
use super::money::{cents, BatchTotals};
use super::{local_now, Result, SimError};
use crate::codec::{Message, Mti};
use crate::net::{Client, ClientConfig, DialectCorrelator, Framing, ReconnectPolicy, TcpConnector};
use crate::reversal::{
    DataDir, Decimal, EngineConfig, EngineEvent, GroupCommit, JournalRecord, LateResponses,
    Outcome, ReversalDriver, ReversalEngine, ReversalProfile, SessionStore, SettlementConfig,
    Store,
};
use crate::session::counters::Counters as _;
use crate::session::crypto::dukpt::tdes::{self as tdes_dukpt, TdesKsn, Variant};
use crate::session::crypto::{Fill, Key, Pan, Pin, PinBlock, PinBlockFormat};
use crate::session::{Kek, SessionProfile, TerminalConfig, TerminalSession};
use isoswitch::switch::{LinkPersistence, SharedSessions, UpstreamConfig, UpstreamLink};

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
    /// Where the terminals' state goes (journals, counters, sessions).
    pub data_dir: PathBuf,
    /// The key-encryption key of the stored sessions.
    pub kek: Kek,
    /// A progress bar on stderr.
    pub progress: bool,
    /// A batch is settled after this many transactions (n3 counts in field 48).
    pub batch_max: u64,
    /// DUKPT terminals: the BDK of the key injection facility (each terminal's initial
    /// key is derived from it and the terminal's KSN). `None`: session PIN keys.
    pub dukpt: Option<Key>,
    /// Every n-th PIN entered is wrong (the host answers 55); 0: never.
    pub wrong_pin_every: u64,
    /// Sales only: no voids and no refund advices (the default mix is 10% voids and 10%
    /// refund advices).
    pub sales_only: bool,
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
    not_sent: AtomicU64,
    pins: AtomicU64,
    wrong_pins: AtomicU64,
    wrong_pin_55: AtomicU64,
    right_pin_55: AtomicU64,
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
    /// Requests sent with a wrong PIN, those answered 55, and right PINs answered 55
    /// (a PIN translation fault: must be 0; amounts ending in 55, which host_sim
    /// declines 55 on purpose, are not counted).
    pub wrong_pins: u64,
    pub wrong_pin_55: u64,
    pub right_pin_55: u64,
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
        if self.wrong_pins > 0 || self.right_pin_55 > 0 {
            s.push_str(&format!(
                "wrong PINs {}  answered 55 {}  right PINs answered 55 {}\n",
                self.wrong_pins, self.wrong_pin_55, self.right_pin_55
            ));
        }
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

fn minor(d: Decimal) -> u64 {
    let mut x = d;
    x.rescale(2);
    u64::try_from(x.mantissa()).unwrap_or(0)
}

fn sim_totals(t: &crate::reversal::BatchTotals) -> BatchTotals {
    BatchTotals {
        debit_amount: minor(t.domestic.debit_amount),
        debit_count: t.domestic.debit_count,
        credit_amount: minor(t.domestic.credit_amount),
        credit_count: t.domestic.credit_count,
    }
}

/// What a transaction to make is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sale,
    Void,
    Refund,
}

/// An approved sale of the open batch (a void may cancel it).
#[derive(Debug, Clone)]
struct Sale {
    stan: String,
    amount: u64,
    pan: String,
}

type Link = UpstreamLink<Client, <DataDir as Store>::Counters>;

struct Term {
    entry: TerminalEntry,
    link: Arc<Link>,
    driver: ReversalDriver,
    client: Client,
    dialect: crate::codec::Dialect,
    counts: Arc<Counts>,
    hist: Arc<Mutex<Histogram<u64>>>,
    pans: Vec<String>,
    sales: Mutex<Vec<Sale>>,
    timeout: Duration,
    /// The link's and the driver's helper tasks (ended with the run).
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// A DUKPT terminal's key state.
    dukpt: Option<Mutex<Dukpt>>,
    wrong_pin_every: u64,
}

/// A simulated DUKPT PIN pad: its initial key and KSN, and a durable transaction
/// counter (the store's counters, so a KSN is never used twice across runs).
struct Dukpt {
    ipek: Key,
    initial: TdesKsn,
    counter: <DataDir as Store>::Counters,
}

impl Dukpt {
    /// The PIN key and KSN of the next transaction. Counters with more than ten 1 bits
    /// are skipped, as a device's future-key registers skip them (X9.24-1 A.2).
    fn next(&mut self) -> Result<(Key, TdesKsn)> {
        loop {
            let n = self.counter.next_stan()?.get();
            if n.count_ones() > 10 {
                continue;
            }
            let ksn = self.initial.with_counter(n);
            let key = tdes_dukpt::derive_current_key(&self.ipek, &ksn)?.variant(Variant::Pin)?;
            return Ok((key, ksn));
        }
    }
}

/// The field a DUKPT terminal's KSN travels in (`cup-pos` DE 62, binary: DE 53 is
/// n16 and holds the security control flags).
pub const DUKPT_KSN_FIELD: u8 = 62;

/// A terminal's initial KSN: key set `FFFF987654`, a 19-bit device id from its TID.
fn initial_ksn(tid: &str) -> Result<TdesKsn> {
    let id = tid.bytes().fold(0x811C_9DC5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    }) & 0x7FFFF;
    let low = u64::from(id) << 21;
    let mut b = [0xFF, 0xFF, 0x98, 0x76, 0x54, 0, 0, 0, 0, 0];
    b[5..].copy_from_slice(&low.to_be_bytes()[3..]);
    Ok(TdesKsn::from_bytes(&b)?)
}

impl Term {
    /// Builds, PIN-enciphers and MACs one request under one key generation.
    /// Also says whether the PIN entered is a wrong one.
    async fn build(
        &self,
        kind: Kind,
        amount: u64,
        pan_ix: usize,
    ) -> Result<Option<(Message, bool)>> {
        let Some(keys) = self.link.ring().current() else {
            return Ok(None);
        };
        let void_of = if kind == Kind::Void {
            let mut s = lock(&self.sales);
            if s.is_empty() {
                None
            } else {
                let i = rand::thread_rng().gen_range(0..s.len());
                Some(s.swap_remove(i))
            }
        } else {
            None
        };
        let kind = match (kind, &void_of) {
            (Kind::Void, None) => Kind::Sale,
            (k, _) => k,
        };
        let (pan, amount) = match &void_of {
            Some(s) => (s.pan.clone(), s.amount),
            None => (self.pans[pan_ix % self.pans.len()].clone(), amount),
        };
        let (mti, pc, cup) = match kind {
            Kind::Sale => (200, "000000", "22"),
            Kind::Void => (200, "020000", "23"),
            Kind::Refund => (220, "200000", "25"),
        };
        let batch = self.driver.status().await.map(|s| s.batch).unwrap_or(1);
        let mut m = Message::new(&self.dialect, Mti::from_u16(mti)?);
        m.set(2, pan.as_str())?;
        m.set(3, pc)?;
        m.set_number(4, amount)?;
        m.set(14, "2812")?;
        m.set(22, "021")?;
        m.set(25, "00")?;
        m.set(35, format!("{pan}=2812101"))?;
        m.set(41, self.entry.tid.as_str())?;
        m.set(42, self.entry.mid.as_str())?;
        m.set(49, "156")?;
        m.set(60, format!("{cup}{batch:06}000"))?;
        if let Some(s) = &void_of {
            let mmdd = local_now().format("%m%d").to_string();
            m.set(61, format!("{batch:06}{}{mmdd}", s.stan))?;
        }
        if kind != Kind::Refund {
            let n = self.counts.pins.fetch_add(1, Ordering::Relaxed) + 1;
            let wrong = self.wrong_pin_every > 0 && n % self.wrong_pin_every == 0;
            let pin = Pin::new(if wrong { WRONG_PIN } else { CARD_PIN })?;
            let pan = Pan::new(&pan)?;
            let b = match &self.dukpt {
                Some(d) => {
                    let (key, ksn) = lock(d).next()?;
                    m.set_bytes(DUKPT_KSN_FIELD, ksn.as_bytes())?;
                    PinBlock::encipher(PinBlockFormat::Iso0, &pin, Some(&pan), &key, Fill::Random)?
                }
                None => PinBlock::encipher(
                    PinBlockFormat::Iso0,
                    &pin,
                    Some(&pan),
                    &keys.pik,
                    Fill::Random,
                )?,
            };
            m.set_bytes(52, b.as_bytes())?;
            m.set(53, "2600000000000000")?;
            if wrong {
                self.counts.wrong_pins.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(Some((m, wrong)));
        }
        Ok(Some((m, false)))
    }

    /// One transaction through the reversal engine.
    async fn transact(&self, kind: Kind, amount: u64, pan_ix: usize) -> Result<()> {
        let mut tries = 0;
        loop {
            let Some((m, wrong_pin)) = self.build(kind, amount, pan_ix).await? else {
                // Not signed on yet: the link signs on in the background.
                if tries > 100 {
                    return Err(SimError::Protocol(format!(
                        "{}: not signed on",
                        self.entry.tid
                    )));
                }
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let stan_of = |o: &Outcome| match o {
                Outcome::Approved { response } => response.get(11),
                _ => None,
            };
            let voidable = kind == Kind::Sale;
            let (pan, amt) = (
                m.get(2).unwrap_or_default(),
                m.field(4).and_then(|f| f.as_u64().ok()).unwrap_or(0),
            );
            self.counts.transactions.fetch_add(1, Ordering::Relaxed);
            let t0 = Instant::now();
            let outcome = self.driver.submit(m).await.map_err(SimError::from)?;
            match &outcome {
                Outcome::Approved { .. } => {
                    let _ = lock(&self.hist).record(t0.elapsed().as_micros() as u64);
                    self.counts.approvals.fetch_add(1, Ordering::Relaxed);
                    if voidable {
                        if let Some(stan) = stan_of(&outcome) {
                            lock(&self.sales).push(Sale {
                                stan,
                                amount: amt,
                                pan,
                            });
                        }
                    }
                }
                Outcome::Declined { code, .. } => {
                    let _ = lock(&self.hist).record(t0.elapsed().as_micros() as u64);
                    self.counts.declines.fetch_add(1, Ordering::Relaxed);
                    // host_sim also answers 55 to amounts ending in 55 (its scripted
                    // "incorrect PIN"), whatever the PIN: those are not PIN faults.
                    if code == b"55" {
                        if wrong_pin {
                            self.counts.wrong_pin_55.fetch_add(1, Ordering::Relaxed);
                        } else if amt % 100 != 55 {
                            self.counts.right_pin_55.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Outcome::Reversed { .. } | Outcome::InDoubt { .. } => {
                    self.counts.no_response.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::NotSent { .. } => {
                    self.counts.not_sent.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::NotActed { .. } => {
                    // Refused under old keys: the link signs on again; try once more.
                    self.counts.not_sent.fetch_add(1, Ordering::Relaxed);
                    if tries < 3 {
                        tries += 1;
                        self.sign_on_again().await;
                        continue;
                    }
                }
            }
            return Ok(());
        }
    }

    /// Asks the link to sign on again and waits (up to 2 s) until it has new keys.
    async fn sign_on_again(&self) {
        let ring = self.link.ring();
        let mut installed = ring.installed();
        let seen = ring.generation();
        ring.request_sign_on(seen);
        let _ =
            tokio::time::timeout(Duration::from_secs(2), installed.wait_for(|g| *g > seen)).await;
    }

    /// Waits until no reversal is pending (they go before anything else anyway).
    async fn drain_reversals(&self) -> usize {
        let mut pending = 0;
        for _ in 0..300 {
            match self.driver.status().await {
                Ok(s) if s.pending_reversals == 0 => return 0,
                Ok(s) => pending = s.pending_reversals,
                Err(_) => return pending,
            }
            let _ = self.driver.connected().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pending
    }

    /// Settles the open batch (the engine's totals), uploading it when the switch's
    /// totals differ; a settlement cut short is started again (three times at most).
    async fn settle(&self) -> BatchResult {
        let status = self.driver.status().await.ok();
        let ours = status.map(|s| sim_totals(&s.totals)).unwrap_or_default();
        let batch = status.map(|s| s.batch).unwrap_or(0);
        let mut settled = Err(crate::reversal::ReversalError::DriverStopped);
        for attempt in 0..3 {
            if attempt > 0 {
                // Refused as not signed on (a batch settled right after the sign-off
                // that ended the one before, with no sale between to sign on again):
                // sign on first.
                if matches!(
                    &settled,
                    Err(crate::reversal::ReversalError::SettlementRefused { code })
                        if crate::reversal::SIGN_ON_CODES.contains(code)
                ) {
                    self.sign_on_again().await;
                } else {
                    let _ = self.driver.connected().await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            let mut sc = SettlementConfig::new(self.entry.tid.as_str(), self.entry.mid.as_str());
            sc.timeout = self.timeout;
            sc.max_tries = 20;
            settled = self
                .driver
                .settle(&self.client, self.dialect.clone(), sc)
                .await;
            if settled.is_ok() {
                break;
            }
        }
        let balanced =
            matches!(&settled, Ok(o) if o.balanced || o.balanced_after_upload == Some(true));
        if let Err(e) = &settled {
            tracing::warn!(tid = %self.entry.tid, error = %e, "settlement");
        }
        // A batch that did not settle stays open: its sales can still be voided.
        if settled.is_ok() {
            lock(&self.sales).clear();
        }
        BatchResult {
            batch: format!("{batch:06}"),
            balanced,
            ours,
            theirs: balanced.then_some(ours),
        }
    }
}

/// The card numbers a simulated terminal uses (deterministic per TID).
pub fn pans_for(tid: &str) -> Vec<String> {
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

/// Opens one terminal: its link (session restored from the store, or signed on), its
/// engine recovered from its journal, the driver.
async fn open_terminal(
    entry: TerminalEntry,
    store: &DataDir,
    sessions: &SharedSessions,
    config: &TerminalSimConfig,
    (target, tls): (&str, Option<&crate::net::ClientTls>),
    (counts, hist): (Arc<Counts>, Arc<Mutex<Histogram<u64>>>),
    (recovered, journal): (Option<Vec<JournalRecord>>, GroupCommit),
) -> Result<Arc<Term>> {
    let profile = SessionProfile::cup_pos()?;
    let late = LateResponses::new();
    let mut cc = ClientConfig::new(Framing::CupPos);
    cc.max_in_flight = config.window * 4 + 8;
    cc.reconnect = Some(ReconnectPolicy {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(500),
        ..Default::default()
    });
    let builder = Client::builder(cc, DialectCorrelator::new(profile.dialect.clone()))
        .unmatched(late.clone());
    let client = match tls {
        Some(tls) => builder.spawn(
            crate::net::TlsConnector::new(
                target.to_string(),
                isoswitch::switch::host_part(target),
                tls,
            )
            .map_err(|e| SimError::Config(format!("TLS: {e}")))?,
        )?,
        None => builder.spawn(TcpConnector::new(target.to_string()))?,
    };
    let id = entry.id()?;
    let mut tc = TerminalConfig::new(id);
    tc.response_timeout = config.timeout;
    tc.max_in_flight = config.window * 4 + 8;
    let mut session = TerminalSession::new(
        profile.clone(),
        tc,
        entry.key()?,
        store.counters(&entry.tid)?,
    )?;
    let stored = lock(sessions).terminal(&id)?;
    if let Some(s) = &stored {
        session.restore(s.open(&config.kek)?)?;
    }
    let link = UpstreamLink::with_persistence(
        UpstreamConfig {
            name: entry.tid.clone(),
            sign_on_timeout: config.timeout,
            sign_on_at_connect: false,
            ..UpstreamConfig::default()
        },
        client.clone(),
        session,
        Some(LinkPersistence {
            sessions: sessions.clone(),
            kek: config.kek.clone(),
        }),
        stored.as_ref().map(|s| s.generation),
    );
    let records = store.adopt_journal(&entry.tid, recovered, &journal).await?;
    let window = config.window.max(1);
    let ec = EngineConfig {
        response_timeout: config.timeout,
        reversal_timeout: config.timeout,
        max_in_flight: window,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        deferred_retry: Some(Duration::from_millis(500)),
        ..EngineConfig::default()
    };
    // A fresh journal starts batch 1; a recovered one continues its own batch.
    let batch = 1;
    let engine = ReversalEngine::recover(
        Instant::now(),
        ec,
        ReversalProfile::cup_pos()?,
        link.zone_mac(),
        batch,
        records,
    )?;
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let ring = link.ring().clone();
    let driver = ReversalDriver::builder_on(engine, journal, client.clone())
        .late(late)
        .events(events_tx)
        .on_sign_on(move |_| ring.request_sign_on(ring.generation()))
        .spawn();
    let mut tasks = vec![
        tokio::spawn(link.clone().keep_signed_on(local_now)),
        // After every new sign-on the engine may send again.
        tokio::spawn(isoswitch::switch::resume_after_sign_on(
            link.ring().clone(),
            driver.clone(),
        )),
    ];
    tasks.push(tokio::spawn(async move {
        while let Some(ev) = events_rx.recv().await {
            if let EngineEvent::ReversalAcknowledged { .. } = ev {
                tracing::trace!("reversal acknowledged");
            }
        }
    }));
    let dukpt = match &config.dukpt {
        Some(bdk) => {
            let initial = initial_ksn(&entry.tid)?;
            Some(Mutex::new(Dukpt {
                ipek: tdes_dukpt::derive_ipek(bdk, &initial)?,
                initial,
                counter: store.counters(&format!("{}.dukpt", entry.tid))?,
            }))
        }
        None => None,
    };
    Ok(Arc::new(Term {
        dukpt,
        wrong_pin_every: config.wrong_pin_every,
        pans: pans_for(&entry.tid),
        entry,
        link,
        driver,
        client,
        dialect: profile.dialect,
        counts,
        hist,
        sales: Mutex::new(Vec::new()),
        timeout: config.timeout,
        tasks,
    }))
}

/// Runs the terminals and returns the report.
///
/// # Errors
/// No terminals; the data directory cannot be opened (or another process holds it); no
/// switch listening at the address within the timeout.
pub async fn run(config: TerminalSimConfig) -> Result<Report> {
    run_with_tls(config, None).await
}

/// [`run`], every terminal connecting over TLS when `tls` is given (no chaos proxy then:
/// it reads frames, which TLS hides).
///
/// # Errors
/// As [`run`]; chaos asked for together with TLS.
pub async fn run_with_tls(
    config: TerminalSimConfig,
    tls: Option<crate::net::ClientTls>,
) -> Result<Report> {
    if tls.is_some() && !config.chaos.is_noop() {
        return Err(SimError::Config(
            "fault injection (--drop-responses, --delay, --reset-connections) cannot read TLS frames".into(),
        ));
    }
    if config.terminals.is_empty() {
        return Err(SimError::Config("no terminals".into()));
    }
    // Is anything listening? A terminal with no switch says so instead of waiting.
    let deadline = Instant::now() + config.timeout;
    loop {
        match tokio::net::TcpStream::connect(&config.switch_addr).await {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => {
                return Err(SimError::Config(format!(
                    "no switch listening at {}: {e}",
                    config.switch_addr
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    // A run that just ended may still be releasing the directory (its journal threads
    // finish after it): wait for the lock as long as a terminal waits for an answer.
    let lock_deadline = Instant::now() + config.timeout.max(Duration::from_secs(5));
    let store = loop {
        match super::open_data_dir(&config.data_dir, &config.kek) {
            Err(crate::reversal::ReversalError::Locked { .. })
                if Instant::now() < lock_deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => break r?,
        }
    };
    let sessions: SharedSessions = Arc::new(Mutex::new(Box::new(store.sessions("terminals")?)));
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
    // Every terminal's journal in one file, one journal thread and one fsync per group
    // for all of them (each terminal is one member).
    let mut shared = store.shared_journal("terminals")?;
    let mut recovered: Vec<Option<Vec<JournalRecord>>> = config
        .terminals
        .iter()
        .map(|e| shared.take(&e.tid))
        .collect();
    let journals = GroupCommit::spawn_shared(shared, "terminals");
    let mut terms = Vec::new();
    for (i, entry) in config.terminals.clone().into_iter().enumerate() {
        let member = journals.member(&entry.tid);
        let recovered = recovered.get_mut(i).and_then(Option::take);
        terms.push(
            open_terminal(
                entry,
                &store,
                &sessions,
                &config,
                (&target, tls.as_ref()),
                (counts.clone(), hist.clone()),
                (recovered, member),
            )
            .await?,
        );
    }
    drop(journals);
    let sign_ons_before: u64 = terms.iter().map(|t| t.link.sign_ons()).sum();
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
    let mut tasks = Vec::new();
    for term in terms.iter().cloned() {
        let pacer = pacer.clone();
        let bar = bar.clone();
        let window = config.window.max(1);
        let batch_max = config.batch_max.max(1);
        let sales_only = config.sales_only;
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
                            let kind = if sales_only {
                                Kind::Sale
                            } else if k < 0.10 {
                                Kind::Void
                            } else if k < 0.20 {
                                Kind::Refund
                            } else {
                                Kind::Sale
                            };
                            if let Err(e) = t.transact(kind, amount, pan).await {
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
                term.drain_reversals().await;
                let b = term.settle().await;
                net += b.ours.net();
                batches.push(b);
            }
            let unacknowledged = term.drain_reversals().await;
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
    let mut reversals_sent = 0;
    let mut reversals_acked = 0;
    for t in &terms {
        if let Ok(s) = t.driver.status().await {
            reversals_sent += s.stats.reversals_sent;
            reversals_acked += s.stats.reversals_acked;
        }
    }
    let sign_ons: u64 = terms.iter().map(|t| t.link.sign_ons()).sum::<u64>();
    // End the terminals' tasks: the drivers stop, their journals close, the directory is
    // released.
    for t in &terms {
        for task in &t.tasks {
            task.abort();
        }
    }
    drop(terms);
    let latency = lock(&hist).clone();
    let c = &counts;
    Ok(Report {
        terminals,
        transactions: c.transactions.load(Ordering::Relaxed),
        approvals: c.approvals.load(Ordering::Relaxed),
        declines: c.declines.load(Ordering::Relaxed),
        no_response: c.no_response.load(Ordering::Relaxed),
        reversals_sent,
        reversals_acked,
        advice_repeats: 0,
        late: 0,
        sign_ons: sign_ons.max(sign_ons_before),
        mac_failures: 0,
        not_sent: c.not_sent.load(Ordering::Relaxed),
        wrong_pins: c.wrong_pins.load(Ordering::Relaxed),
        wrong_pin_55: c.wrong_pin_55.load(Ordering::Relaxed),
        right_pin_55: c.right_pin_55.load(Ordering::Relaxed),
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
