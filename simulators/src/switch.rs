//! `switchd`: the acquirer switch.
//!
//! ```text
//! terminals ──cup-pos──▶ [terminal side]  journal  [upstream side] ──iso87-binary, len2──▶ host
//! ```
//!
//! Terminal side (`cup-pos` dialect and framing): sign-on, sign-off and echo through a
//! [`HostSession`] over the terminal master keys of `terminals.toml` (fresh working keys in
//! DE 62, 60.3 = `001`/`003`/`004`); every other message is checked in this order: DE 41/42
//! well formed (`30`), terminal registered (`97`), signed on (`77`, processing requirement
//! `3` in the header), MAC (`A0`). Then:
//! - 0200 sale / void and 0220/0221 refund advice: the PIN block is translated from the
//!   terminal's PIK to the zone PIK, the message is mapped to `iso87-binary` with the
//!   switch's own STAN, DE 7 and RRN (DE 37), MACed (X9.19) and sent on the one
//!   multiplexed upstream connection. A `Begin` record is made durable **before** it
//!   leaves; the outcome (`Done`) is made durable **before** the terminal is answered. No
//!   answer in time → the terminal gets `98` and the switch reverses upstream itself.
//! - 0400/0401 terminal reversals, idempotent, by DE 41 + 60.2 + DE 11: already reversed
//!   → `25`, unknown original → `00` and remembered (a late original gets `12`); an approved
//!   original is reversed upstream.
//! - 0500 settlement: field 48 against what the switch itself recorded for the batch;
//!   0510 field 48 flag `1` (balanced) or `2` (the switch's totals returned). 0320 batch
//!   upload and end of upload are acknowledged (and logged).
//!
//! Upstream reversals go through `isoswitch-reversal`: a [`ReversalEngine`] in switch
//! mode ([`EngineConfig::switch`]: reversals in parallel with new traffic) behind a
//! [`ReversalDriver`], with its own write-ahead journal (`switch-reversals.journal`) and
//! the zone MAK as its MAC hook ([`ZoneMac`], which follows every upstream re-sign-on).
//! The switch hands it the upstream original of every transaction that needs reversing
//! (no answer in time, a bad MAC on the answer, a terminal reversal of an approved
//! sale, an outcome lost in a crash) with [`ReversalDriver::reverse_message`]; the engine
//! journals it, sends the 0400 (repeated as 0401, DE 90 = the original's data elements)
//! until the host acknowledges it, across restarts too, and reports the acknowledgement,
//! which the switch records in its own journal. On start the switch replays its journal
//! and hands over every reversal its books need that the engine's journal does not hold.
//!
//! Reconciliation with the host (0500 with DE 74–89 and 97) runs at shutdown, after the
//! reversal queue drained, and on demand ([`Switch::reconcile`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Weak;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::config::{TerminalEntry, ACQUIRER_ID, SWITCH_MID, SWITCH_TID};
use super::money::{BatchTotals, Kind, ReconTotals};
use super::wal::{Sync, Wal};
use super::{local_now, masked_pan, Result, Running, SimError};
use crate::codec::{Message, MessageClass, MessageView, Mti};
use crate::net::{
    Client, ClientConfig, DialectCorrelator, Frame, Framing, RejectReason, Request, RequestError,
    Server, ServerConfig, TcpConnector,
};
use crate::reversal::{
    EngineConfig, EngineEvent, FileJournal, Journal, LateResponses, ReversalDriver, ReversalEngine,
    ReversalError, ReversalProfile, ReversalReason, Security, Transport, TxnId, Verify,
};
use crate::session::counters::MemoryCounters;
use crate::session::crypto::{translate, Key, Pan, PinBlock, PinBlockFormat};
use crate::session::{
    HostConfig, HostOutcome, HostSession, Inbound, MemoryKeyStore, SessionProfile, TerminalConfig,
    TerminalId, TerminalSession,
};

/// `switchd` settings.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    pub terminals: Vec<TerminalEntry>,
    pub zone_key: Key,
    /// The host (`host:port`).
    pub host_addr: String,
    pub data_dir: PathBuf,
    pub sync: Sync,
    /// How long the switch waits for the host.
    pub upstream_timeout: Duration,
    /// Upstream requests in flight at most.
    pub upstream_in_flight: usize,
}

/// Upstream identifiers of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UpRef {
    stan: String,
    de7: String,
    rrn: String,
}

/// A terminal transaction: `TID:batch:STAN`.
type Tk = String;

fn tk(tid: &str, batch: &str, stan: &str) -> Tk {
    format!("{tid}:{batch}:{stan}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t")]
enum Rec {
    Lease {
        upto: u64,
    },
    Begin {
        tk: Tk,
        kind: Kind,
        amount: u64,
        pan: String,
        currency: String,
        up: UpRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        void_of: Option<Tk>,
    },
    Done {
        tk: Tk,
        code: String,
        auth: String,
        reverse: bool,
    },
    TermRev {
        tk: Tk,
    },
    Tomb {
        tk: Tk,
    },
    UpRev {
        tk: Tk,
        had: bool,
    },
}

#[derive(Debug, Clone)]
struct Tx {
    kind: Kind,
    amount: u64,
    pan: String,
    currency: String,
    up: UpRef,
    void_of: Option<Tk>,
    done: Option<(String, String)>,
    term_reversed: bool,
    needs_reversal: bool,
    up_reversed: bool,
    host_had: bool,
    voided_by: Option<Tk>,
}

impl Tx {
    fn approved(&self) -> bool {
        self.done.as_ref().is_some_and(|(c, _)| c == "00")
    }

    /// Counts in the terminal's batch (approved and standing).
    fn standing(&self) -> bool {
        self.approved() && !self.term_reversed && !self.needs_reversal && self.voided_by.is_none()
    }
}

#[derive(Debug, Default)]
struct Book {
    txns: HashMap<Tk, Tx>,
    tombs: HashSet<Tk>,
    batches: HashMap<(String, String), Vec<Tk>>,
    lease: u64,
}

impl Book {
    /// Applies a record; returns whether the transaction newly needs an upstream reversal.
    fn apply(&mut self, rec: &Rec) -> bool {
        match rec {
            Rec::Lease { upto } => {
                self.lease = self.lease.max(*upto);
                false
            }
            Rec::Begin {
                tk,
                kind,
                amount,
                pan,
                currency,
                up,
                void_of,
            } => {
                let mut parts = tk.splitn(3, ':');
                let tid = parts.next().unwrap_or_default().to_string();
                let batch = parts.next().unwrap_or_default().to_string();
                self.batches
                    .entry((tid, batch))
                    .or_default()
                    .push(tk.clone());
                self.txns.insert(
                    tk.clone(),
                    Tx {
                        kind: *kind,
                        amount: *amount,
                        pan: pan.clone(),
                        currency: currency.clone(),
                        up: up.clone(),
                        void_of: void_of.clone(),
                        done: None,
                        term_reversed: false,
                        needs_reversal: false,
                        up_reversed: false,
                        host_had: false,
                        voided_by: None,
                    },
                );
                false
            }
            Rec::Done {
                tk,
                code,
                auth,
                reverse,
            } => {
                let Some(tx) = self.txns.get_mut(tk) else {
                    return false;
                };
                tx.done = Some((code.clone(), auth.clone()));
                let before = tx.needs_reversal;
                tx.needs_reversal |= *reverse || (tx.term_reversed && code == "00");
                let newly = !before && tx.needs_reversal;
                let void_target = (tx.kind == Kind::Void && code == "00" && !tx.term_reversed)
                    .then(|| tx.void_of.clone())
                    .flatten();
                if let Some(o) = void_target.and_then(|o| self.txns.get_mut(&o)) {
                    o.voided_by = Some(tk.clone());
                }
                newly
            }
            Rec::TermRev { tk } => {
                let Some(tx) = self.txns.get_mut(tk) else {
                    return false;
                };
                tx.term_reversed = true;
                let before = tx.needs_reversal;
                if tx.approved() {
                    tx.needs_reversal = true;
                }
                let newly = !before && tx.needs_reversal;
                let target = (tx.kind == Kind::Void)
                    .then(|| tx.void_of.clone())
                    .flatten();
                if let Some(o) = target.and_then(|o| self.txns.get_mut(&o)) {
                    if o.voided_by.as_ref() == Some(tk) {
                        o.voided_by = None;
                    }
                }
                newly
            }
            Rec::Tomb { tk } => {
                self.tombs.insert(tk.clone());
                false
            }
            Rec::UpRev { tk, had } => {
                if let Some(tx) = self.txns.get_mut(tk) {
                    tx.up_reversed = true;
                    tx.host_had = *had;
                }
                false
            }
        }
    }

    fn batch_totals(&self, tid: &str, batch: &str) -> BatchTotals {
        let mut t = BatchTotals::default();
        let Some(keys) = self.batches.get(&(tid.to_string(), batch.to_string())) else {
            return t;
        };
        for k in keys {
            let Some(tx) = self.txns.get(k) else { continue };
            if !tx.standing() {
                continue;
            }
            match tx.kind {
                Kind::Sale => t.add_debit(tx.amount),
                Kind::Refund => t.add_credit(tx.amount),
                Kind::Void => {}
            }
        }
        t
    }

    fn recon(&self) -> ReconTotals {
        let mut t = ReconTotals::default();
        for tx in self.txns.values() {
            let approved = tx.approved() || (tx.needs_reversal && tx.up_reversed && tx.host_had);
            let undone = tx.needs_reversal || tx.voided_by.is_some();
            t.count(tx.kind, approved, undone, tx.amount);
        }
        t
    }

    /// Sum of approved, standing transactions (what the host ledger should hold).
    fn standing_net(&self) -> i128 {
        self.recon().net()
    }
}

/// Counters of the switch.
#[derive(Debug, Default)]
pub struct SwitchStats {
    pub requests: AtomicU64,
    pub upstream_timeouts: AtomicU64,
    pub terminal_reversals: AtomicU64,
    pub upstream_reversals: AtomicU64,
    pub settlements: AtomicU64,
    pub settlements_balanced: AtomicU64,
    pub sign_ons: AtomicU64,
}

struct Upstream {
    client: Client,
    session: tokio::sync::Mutex<TerminalSession<MemoryCounters>>,
    zone: Arc<Zone>,
}

/// (MAK, PIK) of the last sign-on, and the MAK before it.
type ZoneKeys = (Option<(Key, Key)>, Option<Key>);

/// The zone working keys of the last upstream sign-on, shared by the switch and the
/// reversal engine's MAC hook ([`ZoneMac`]).
struct Zone {
    /// (MAK, PIK) of the last sign-on, and the MAK before it (an answer in flight across
    /// a re-sign-on may carry it).
    keys: RwLock<ZoneKeys>,
    /// Bumped by every sign-on.
    generation: AtomicU64,
    /// Asks the switch to sign on again unless it did since the generation given.
    resign: mpsc::UnboundedSender<u64>,
}

impl Zone {
    fn current(&self) -> (u64, Option<(Key, Key)>) {
        let g = self.generation.load(Ordering::Acquire);
        let k = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone();
        (g, k)
    }

    fn install(&self, mak: Key, pik: Key) {
        let mut k = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let previous = k.0.take().map(|(m, _)| m);
        *k = (Some((mak, pik)), previous);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// The reversal engine's MAC hook on the host link: X9.19 (`iso87-binary`) under the
/// switch's current zone MAK. Sealing without zone keys, or an answer that asks for a
/// new sign-on (`77`, `A0`) or whose MAC does not verify, asks the switch to sign on
/// again; such an answer does not acknowledge a reversal (it is repeated).
pub struct ZoneMac {
    iso: SessionProfile,
    zone: Arc<Zone>,
}

impl std::fmt::Debug for ZoneMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneMac").finish_non_exhaustive()
    }
}

impl Security for ZoneMac {
    fn seal(&mut self, msg: &mut Message) -> crate::reversal::Result<Bytes> {
        let (generation, keys) = self.zone.current();
        let Some((mak, _)) = keys else {
            let _ = self.zone.resign.send(generation);
            return Err(ReversalError::Session(
                crate::session::SessionError::NotSignedOn {
                    terminal: SWITCH_TID.to_string(),
                },
            ));
        };
        Ok(self.iso.seal(&mak, msg)?)
    }

    fn verify(&mut self, bytes: &Bytes) -> std::result::Result<Message, Verify> {
        let generation = self.zone.generation.load(Ordering::Acquire);
        let view =
            MessageView::decode(&self.iso.dialect, bytes).map_err(|_| Verify::Undecodable)?;
        let mac_ok = !self.iso.requires_mac(view.mti()) || {
            let k = self
                .zone
                .keys
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let current = k.0.as_ref().map(|(m, _)| m);
            current
                .into_iter()
                .chain(k.1.as_ref())
                .any(|mak| self.iso.verify_mac(mak, &view).is_ok())
        };
        let code = view.raw(39).unwrap_or_default();
        if code == b"77" || code == b"A0" || !mac_ok {
            tracing::warn!(code = %String::from_utf8_lossy(code), mac_ok, "reversal answer calls for a new sign-on");
            let _ = self.zone.resign.send(generation);
            return Err(Verify::BadMac);
        }
        Message::decode(&self.iso.dialect, bytes.clone()).map_err(|_| Verify::Undecodable)
    }
}

/// The upstream link (also the reversal engine's transport): a request refused because
/// the link is down waits for the link within its own time budget.
#[derive(Clone)]
struct UpLink(Client);

impl UpLink {
    async fn send(
        &self,
        bytes: Bytes,
        limit: Duration,
    ) -> std::result::Result<Bytes, RequestError> {
        let start = Instant::now();
        let mut result = self.0.request(bytes.clone(), limit).await;
        while matches!(
            result,
            Err(RequestError::Rejected(RejectReason::NotConnected))
        ) && start.elapsed() < limit
        {
            let left = limit.saturating_sub(start.elapsed());
            if self.0.wait_connected(left).await.is_err() {
                break;
            }
            let left = limit.saturating_sub(start.elapsed());
            result = self.0.request(bytes.clone(), left).await;
        }
        result
    }
}

impl Transport for UpLink {
    fn request(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl Future<Output = std::result::Result<Bytes, RequestError>> + Send {
        let link = self.clone();
        async move { link.send(msg, timeout).await }
    }

    fn connections(&self) -> u64 {
        self.0.metrics().connects
    }
}

/// Which engine transaction reverses which switch transaction.
#[derive(Default)]
struct Handed {
    txns: HashMap<TxnId, Tk>,
    /// Acknowledgements reported before the hand-off returned its id (whether the host
    /// had approved the original).
    early: HashMap<TxnId, bool>,
}

struct Inner {
    cup: SessionProfile,
    iso: SessionProfile,
    terminals: Mutex<HostSession<MemoryKeyStore>>,
    book: Mutex<Book>,
    wal: Wal,
    seq: AtomicU64,
    lease_lock: tokio::sync::Mutex<()>,
    up: Upstream,
    config: SwitchConfig,
    /// Upstream reversals (`isoswitch-reversal`, switch mode).
    reversals: ReversalDriver,
    handed: Mutex<Handed>,
    pending_reversals: AtomicUsize,
    stats: SwitchStats,
}

/// The switch; cheap to clone.
#[derive(Clone)]
pub struct Switch {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

const JOURNAL_FILE: &str = "switch-journal.log";
/// The reversal engine's write-ahead journal (upstream reversals).
const REVERSAL_JOURNAL_FILE: &str = "switch-reversals.journal";
const LEASE_BLOCK: u64 = 1_000_000;

/// Result of a reconciliation with the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciliation {
    /// DE 66 of the 0510 was `1`.
    pub balanced: bool,
    pub ours: ReconTotals,
    pub theirs: ReconTotals,
}

impl Switch {
    /// Replays the journal, connects to the host (retrying in the background) and starts
    /// the reversal engine; reversals left over from a previous run are queued.
    pub async fn start(config: SwitchConfig) -> Result<Switch> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| SimError::io(config.data_dir.display(), e))?;
        let (wal, recs) = Wal::open::<Rec>(&config.data_dir.join(JOURNAL_FILE), config.sync)?;
        let mut book = Book::default();
        for r in &recs {
            book.apply(r);
        }
        // Outcomes never recorded: the terminal was never told anything; reverse upstream.
        let unknown: Vec<Tk> = book
            .txns
            .iter()
            .filter(|(_, t)| t.done.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for k in &unknown {
            let rec = Rec::Done {
                tk: k.clone(),
                code: "98".into(),
                auth: String::new(),
                reverse: true,
            };
            book.apply(&rec);
            wal.append_nowait(&rec)?;
        }
        let start_seq = book.lease;
        let lease = Rec::Lease {
            upto: start_seq + LEASE_BLOCK,
        };
        book.apply(&lease);
        wal.append(&lease).await?;
        let to_reverse: Vec<Tk> = book
            .txns
            .iter()
            .filter(|(_, t)| t.needs_reversal && !t.up_reversed)
            .map(|(k, _)| k.clone())
            .collect();
        tracing::info!(
            records = recs.len(),
            transactions = book.txns.len(),
            unknown = unknown.len(),
            reversals = to_reverse.len(),
            "switch journal replayed"
        );
        let cup = SessionProfile::cup_pos()?;
        let iso = SessionProfile::iso87_binary()?;
        let store = super::config::key_store(&config.terminals)?;
        let terminals = HostSession::new(cup.clone(), HostConfig::default(), store)?;
        let mut cc = ClientConfig::new(Framing::Len2);
        cc.max_in_flight = config.upstream_in_flight.max(1);
        cc.write_queue = 4096;
        cc.reconnect = Some(crate::net::ReconnectPolicy {
            initial_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(300),
            ..Default::default()
        });
        // Late answers go to the reversal engine (a late 0410 still acknowledges); the
        // client logs the rest.
        let late_handler = LateResponses::new();
        let client = Client::builder(cc, DialectCorrelator::new(iso.dialect.clone()))
            .unmatched(late_handler.clone())
            .spawn(TcpConnector::new(config.host_addr.clone()))?;
        let mut tc = TerminalConfig::new(TerminalId::new(SWITCH_TID, SWITCH_MID)?);
        tc.response_timeout = Duration::from_secs(5);
        let up_session = TerminalSession::new(
            iso.clone(),
            tc,
            config.zone_key.clone(),
            MemoryCounters::new(),
        )?;
        // The reversal engine: its journal says which reversals it still holds.
        let (resign_tx, mut resign_rx) = mpsc::unbounded_channel();
        let zone = Arc::new(Zone {
            keys: RwLock::new((None, None)),
            generation: AtomicU64::new(0),
            resign: resign_tx,
        });
        let mut journal = FileJournal::open(config.data_dir.join(REVERSAL_JOURNAL_FILE))?;
        let records = journal.load()?;
        let engine = ReversalEngine::recover(
            Instant::now(),
            reversal_engine_config(config.upstream_timeout),
            ReversalProfile::iso87(iso.dialect.name())?,
            ZoneMac {
                iso: iso.clone(),
                zone: zone.clone(),
            },
            0,
            records,
        )?;
        let held: HashMap<String, TxnId> = engine
            .reversing()
            .filter_map(|(id, m)| Some((m.get(37)?, id)))
            .collect();
        let mut handed = Handed::default();
        let mut to_hand = Vec::new();
        for k in &to_reverse {
            let rrn = &book.txns[k].up.rrn;
            match held.get(rrn) {
                Some(&id) => {
                    handed.txns.insert(id, k.clone());
                }
                None => to_hand.push(k.clone()),
            }
        }
        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        let reversals = ReversalDriver::builder(engine, journal, UpLink(client.clone()))
            .late(late_handler)
            .events(events_tx)
            .spawn();
        let sw = Switch {
            inner: Arc::new(Inner {
                cup,
                iso,
                terminals: Mutex::new(terminals),
                book: Mutex::new(book),
                wal,
                seq: AtomicU64::new(start_seq),
                lease_lock: tokio::sync::Mutex::new(()),
                up: Upstream {
                    client,
                    session: tokio::sync::Mutex::new(up_session),
                    zone,
                },
                config,
                reversals,
                handed: Mutex::new(handed),
                pending_reversals: AtomicUsize::new(to_reverse.len() - to_hand.len()),
                stats: SwitchStats::default(),
            }),
        };
        // Acknowledged reversals go into the switch's books; re-sign-ons asked for by the
        // engine's MAC hook run here. Both hold the switch weakly (the engine holds them).
        let weak = Arc::downgrade(&sw.inner);
        tokio::spawn(async move {
            while let Some(ev) = events_rx.recv().await {
                let Some(sw) = upgrade(&weak) else { return };
                if let EngineEvent::ReversalAcknowledged { txn, response, .. } = ev {
                    sw.reversal_acknowledged(txn, response.has(38)).await;
                }
            }
        });
        let weak = Arc::downgrade(&sw.inner);
        tokio::spawn(async move {
            while let Some(seen) = resign_rx.recv().await {
                let Some(sw) = upgrade(&weak) else { return };
                sw.sign_on(seen).await;
            }
        });
        for k in to_hand {
            sw.reverse_upstream(k).await;
        }
        let s2 = sw.clone();
        tokio::spawn(async move {
            // First sign-on; failures are retried by later requests.
            for _ in 0..100 {
                if s2.sign_on(0).await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(sw)
    }

    /// The switch's counters.
    pub fn stats(&self) -> &SwitchStats {
        &self.inner.stats
    }

    /// Upstream reversals not yet acknowledged by the host.
    pub fn pending_reversals(&self) -> usize {
        self.inner.pending_reversals.load(Ordering::Acquire)
    }

    /// Net of approved standing transactions as the switch recorded them.
    pub fn standing_net(&self) -> i128 {
        lock(&self.inner.book).standing_net()
    }

    /// Waits (at most `within`) until no upstream reversal is pending.
    pub async fn drain(&self, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.pending_reversals() == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.pending_reversals() == 0
    }

    /// Binds the terminal side on `listen` and serves in the background.
    pub async fn spawn(&self, listen: &str) -> Result<Running> {
        let sw = self.clone();
        let handler = move |req: Request| {
            let s = sw.clone();
            async move { s.handle(req).await }
        };
        let config = ServerConfig {
            max_in_flight_per_connection: 64,
            write_queue: 256,
            idle_timeout: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(5),
            max_connections: 4096,
            ..ServerConfig::default()
        };
        let server = Server::bind(listen, Framing::CupPos, config, handler)
            .await?
            .with_dialect(self.inner.cup.dialect.clone());
        let running = Running::serve(server);
        tracing::info!(addr = %running.addr, "switch listening for terminals (cup-pos)");
        Ok(running)
    }

    /// Serves on `listen` until `shutdown`; then drains reversals and reconciles with the
    /// host. Returns the reconciliation, if the host answered.
    pub async fn serve(
        &self,
        listen: &str,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Option<Reconciliation>> {
        let running = self.spawn(listen).await?;
        println!(
            "switchd listening on {} (host {})",
            running.addr, self.inner.config.host_addr
        );
        shutdown.await;
        running.stop().await;
        let drained = self.drain(Duration::from_secs(20)).await;
        if !drained {
            tracing::warn!(
                pending = self.pending_reversals(),
                "reversals still pending at shutdown (kept in the journal)"
            );
        }
        let r = self.reconcile().await;
        self.inner.wal.barrier().await?;
        r
    }

    // ---- upstream session ----

    /// Signs on upstream unless another sign-on happened since generation `seen`.
    async fn sign_on(&self, seen: u64) -> bool {
        let inner = &self.inner;
        let mut session = inner.up.session.lock().await;
        if inner.up.zone.generation.load(Ordering::Acquire) != seen {
            return true;
        }
        let now = Instant::now();
        let Ok(bytes) = session.sign_on(now, local_now()) else {
            return false;
        };
        let resp = match inner.up.client.request(bytes, Duration::from_secs(2)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "upstream sign-on: no answer");
                return false;
            }
        };
        match session.handle_message(Instant::now(), resp) {
            Ok(Inbound::SignedOn { .. }) => {
                if let Some(k) = session.working_keys() {
                    inner.up.zone.install(k.mak().clone(), k.pik().clone());
                    inner.stats.sign_ons.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(mak_kcv = %k.mak().kcv(), "signed on upstream (zone keys)");
                    return true;
                }
                false
            }
            Ok(other) => {
                tracing::warn!(?other, "upstream sign-on: unexpected answer");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "upstream sign-on failed");
                false
            }
        }
    }

    fn zone_keys(&self) -> (u64, Option<(Key, Key)>) {
        self.inner.up.zone.current()
    }

    /// Asks for a new upstream sign-on unless one happened since generation `seen`; the
    /// one re-sign-on task (also fed by the reversal engine's [`ZoneMac`]) runs it.
    fn resign(&self, seen: u64) {
        let _ = self.inner.up.zone.resign.send(seen);
    }

    /// The next upstream sequence number (STAN and RRN come from it), under a durable lease.
    async fn next_seq(&self) -> Result<u64> {
        let inner = &self.inner;
        let n = inner.seq.fetch_add(1, Ordering::AcqRel) + 1;
        let leased = lock(&inner.book).lease;
        if n >= leased {
            let _g = inner.lease_lock.lock().await;
            let leased = lock(&inner.book).lease;
            if n >= leased {
                let rec = Rec::Lease {
                    upto: n + LEASE_BLOCK,
                };
                lock(&inner.book).apply(&rec);
                inner.wal.append(&rec).await?;
            }
        }
        Ok(n)
    }

    async fn up_ref(&self) -> Result<UpRef> {
        let n = self.next_seq().await?;
        let now = chrono::Utc::now().naive_utc();
        Ok(UpRef {
            stan: format!("{:06}", n % 999_999 + 1),
            de7: now.format("%m%d%H%M%S").to_string(),
            rrn: format!("{:012}", n % 1_000_000_000_000),
        })
    }

    /// Sends a sealed upstream request; `Err` tells whether it may have been delivered.
    async fn upstream(&self, mut msg: Message) -> std::result::Result<Message, UpFail> {
        let inner = &self.inner;
        let (generation, keys) = self.zone_keys();
        let Some((mak, _)) = keys else {
            self.resign(generation);
            return Err(UpFail::NotSent);
        };
        let bytes = inner
            .iso
            .seal(&mak, &mut msg)
            .map_err(|_| UpFail::NotSent)?;
        let result = UpLink(inner.up.client.clone())
            .send(bytes, inner.config.upstream_timeout)
            .await;
        let resp = match result {
            Ok(r) => r,
            Err(RequestError::Rejected(_)) => return Err(UpFail::NotSent),
            Err(_) => {
                inner
                    .stats
                    .upstream_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                return Err(UpFail::Unknown);
            }
        };
        let dialect = inner.iso.dialect.clone();
        let Ok(view) = MessageView::decode(&dialect, &resp) else {
            return Err(UpFail::Unknown);
        };
        let mac_ok = inner.iso.verify_mac(&mak, &view).is_ok();
        let code = view.raw(39).unwrap_or_default();
        if code == b"77" || code == b"A0" {
            tracing::warn!(code = %String::from_utf8_lossy(code), "host asks for a new sign-on");
            self.resign(generation);
            // 77/A0: the host did not act on it.
            return Err(if mac_ok || code == b"77" {
                UpFail::Refused
            } else {
                UpFail::Unknown
            });
        }
        if !mac_ok {
            tracing::warn!("host response MAC not accepted");
            self.resign(generation);
            return Err(UpFail::Unknown);
        }
        Message::decode(&dialect, resp).map_err(|_| UpFail::Unknown)
    }

    // ---- terminal side ----

    async fn handle(&self, req: Request) -> Option<Frame> {
        let header = req.reply_header();
        // The server drops a connection's handler futures when the terminal goes away; the
        // work itself (journal, upstream, outcome) must run to its end all the same.
        let sw = self.clone();
        let r2 = req.clone();
        // Boxed: `answer`'s future is about 9 KiB (decoded messages live in it), which
        // tokio would otherwise copy into the task cell and again over it when the task
        // ends; the task itself stays small.
        let answered = match tokio::spawn(async move { Box::pin(sw.answer(&r2)).await }).await {
            Ok(r) => r,
            Err(e) => Err(SimError::Protocol(format!("handler task: {e}"))),
        };
        match answered {
            Ok(Some((bytes, sign_on_again))) => Some(match (header, sign_on_again) {
                (Some(h), true) => Frame::with_header(h.reply_sign_on_again(), bytes),
                _ => req.reply(bytes),
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "switch: terminal message not answered");
                None
            }
        }
    }

    fn plain_reply(&self, msg: &Message, code: &str) -> Result<Bytes> {
        let mut r = Message::response_to(msg)?;
        r.set(39, code)?;
        Ok(r.to_bytes()?)
    }

    fn sealed_reply(&self, msg: &Message, code: &str, mak: &Key) -> Result<Bytes> {
        let mut r = Message::response_to(msg)?;
        r.set(39, code)?;
        Ok(self.inner.cup.seal(mak, &mut r)?)
    }

    async fn answer(&self, req: &Request) -> Result<Option<(Bytes, bool)>> {
        let inner = &self.inner;
        let bytes = req.frame.payload.clone();
        let dialect = inner.cup.dialect.clone();
        let msg = Message::decode(&dialect, bytes.clone())?;
        let mti = msg.mti();
        if mti.class() == MessageClass::NetworkManagement {
            let out = lock(&inner.terminals).handle_request(local_now(), bytes)?;
            return Ok(match out {
                HostOutcome::Replied { reply, action } => {
                    tracing::info!(?action, "terminal network management");
                    Some((reply, false))
                }
                HostOutcome::Rejected { reply, .. } => Some((reply, false)),
                HostOutcome::Accepted(_) | HostOutcome::Acknowledged { .. } => None,
            });
        }
        if mti.is_response() {
            return Ok(None);
        }
        inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let Ok(id) = TerminalId::from_message(&msg) else {
            return Ok(Some((self.plain_reply(&msg, "30")?, false)));
        };
        let (registered, keys) = {
            let t = lock(&inner.terminals);
            (
                crate::session::KeyStore::contains(t.key_store(), &id),
                t.working_keys(&id)
                    .map(|k| (k.mak().clone(), k.pik().clone())),
            )
        };
        if !registered {
            tracing::warn!(terminal = %id, "unknown terminal");
            return Ok(Some((self.plain_reply(&msg, "97")?, false)));
        }
        let Some((mak, pik)) = keys else {
            return Ok(Some((self.plain_reply(&msg, "77")?, true)));
        };
        if inner.cup.requires_mac(mti) {
            let view = MessageView::decode(&dialect, &bytes)?;
            if let Err(reason) = inner.cup.verify_mac(&mak, &view) {
                tracing::warn!(terminal = %id, %mti, ?reason, "terminal MAC not accepted");
                let reply = self.sealed_reply(&msg, "A0", &mak)?;
                lock(&inner.terminals).invalidate(&id);
                return Ok(Some((reply, false)));
            }
        }
        let reply = match mti.as_u16() {
            200 | 220 | 221 => self.financial(&id, &msg, &mak, &pik).await?,
            400 | 401 => Some(self.terminal_reversal(&id, &msg, &mak).await?),
            500 => Some(self.settlement(&id, &msg)?),
            320 => Some(self.batch_upload(&id, &msg)?),
            _ => Some(self.sealed_reply(&msg, "12", &mak)?),
        };
        Ok(reply.map(|r| (r, false)))
    }

    fn terminal_reply(
        &self,
        msg: &Message,
        code: &str,
        auth: &str,
        rrn: Option<&str>,
        mak: &Key,
    ) -> Result<Bytes> {
        let mut r = Message::response_to(msg)?;
        let now = local_now();
        r.set_time_hhmmss(12, now.time())?;
        r.set_date_mmdd(13, now.date())?;
        if let Some(rrn) = rrn {
            r.set(37, rrn)?;
        }
        if !auth.is_empty() {
            r.set(38, auth)?;
        }
        r.set(39, code)?;
        Ok(self.inner.cup.seal(mak, &mut r)?)
    }

    async fn financial(
        &self,
        id: &TerminalId,
        msg: &Message,
        mak: &Key,
        pik: &Key,
    ) -> Result<Option<Bytes>> {
        let inner = &self.inner;
        let advice = matches!(msg.mti().as_u16(), 220 | 221);
        let f60 = msg.field(60);
        let kind = if advice {
            Some(Kind::Refund)
        } else {
            f60.and_then(|f| f.subfield(0))
                .and_then(|t| Kind::from_cup_type(&t))
                .filter(|k| *k != Kind::Refund)
        };
        let (Some(kind), Some(batch), Some(stan), Some(pan), Some(amount)) = (
            kind,
            f60.and_then(|f| f.subfield(1)).map(|b| b.into_owned()),
            msg.get(11),
            msg.get(2),
            msg.field(4).and_then(|f| f.as_u64().ok()),
        ) else {
            return Ok(Some(self.sealed_reply(msg, "30", mak)?));
        };
        let key = tk(id.terminal(), &batch, &stan);
        let currency = msg.get(49).unwrap_or_else(|| "156".into());
        // PIN: from the terminal's PIK to the zone PIK (format 0, with the PAN).
        let pin_block = match msg.field(52) {
            None => None,
            Some(f) => {
                let (_, zone) = self.zone_keys();
                let Some((_, zone_pik)) = zone else {
                    return Ok(Some(self.terminal_reply(msg, "91", "", None, mak)?));
                };
                let translated = Pan::new(&pan).and_then(|p| {
                    let block = PinBlock::from_bytes(PinBlockFormat::Iso0, &f.bytes())?;
                    translate(&block, Some(&p), pik, PinBlockFormat::Iso0, &zone_pik)
                });
                match translated {
                    Ok(b) => Some(b),
                    Err(e) => {
                        tracing::warn!(terminal = %id, error = %e, "PIN translation failed");
                        return Ok(Some(self.terminal_reply(msg, "99", "", None, mak)?));
                    }
                }
            }
        };
        let up = self.up_ref().await?;
        let (begin, durable) = {
            let mut book = lock(&inner.book);
            if book.tombs.contains(&key) {
                drop(book);
                tracing::info!(terminal = %id, %stan, "late original after its reversal: declined");
                return Ok(Some(self.terminal_reply(msg, "12", "", None, mak)?));
            }
            if let Some(tx) = book.txns.get(&key) {
                let done = tx.done.clone();
                let rrn = tx.up.rrn.clone();
                drop(book);
                return Ok(match (advice, done) {
                    (true, Some((code, auth))) => {
                        Some(self.terminal_reply(msg, &code, &auth, Some(&rrn), mak)?)
                    }
                    (true, None) => None,
                    (false, _) => Some(self.terminal_reply(msg, "94", "", None, mak)?),
                });
            }
            let void_of = if kind == Kind::Void {
                let orig = msg
                    .field(61)
                    .and_then(|f| Some(tk(id.terminal(), &f.subfield(0)?, &f.subfield(1)?)));
                let ok = orig
                    .as_ref()
                    .and_then(|o| book.txns.get(o))
                    .map(|o| (o.kind == Kind::Sale && o.standing(), o.amount == amount));
                match ok {
                    Some((true, true)) => orig,
                    Some((true, false)) => {
                        drop(book);
                        return Ok(Some(self.terminal_reply(msg, "64", "", None, mak)?));
                    }
                    _ => {
                        drop(book);
                        return Ok(Some(self.terminal_reply(msg, "25", "", None, mak)?));
                    }
                }
            } else {
                None
            };
            let rec = Rec::Begin {
                tk: key.clone(),
                kind,
                amount,
                pan: pan.clone(),
                currency: currency.clone(),
                up: up.clone(),
                void_of,
            };
            book.apply(&rec);
            let durable = inner.wal.append_then(&rec)?;
            (rec, durable)
        };
        durable.wait().await?;
        // Map to iso87-binary.
        let mut m = Message::new(&inner.iso.dialect, Mti::from_u16(kind.request_mti())?);
        m.set(2, pan.as_str())?;
        m.set(3, kind.processing_code())?;
        m.set_number(4, amount)?;
        m.set(7, up.de7.as_str())?;
        m.set(11, up.stan.as_str())?;
        let now = local_now();
        m.set_time_hhmmss(12, now.time())?;
        m.set_date_mmdd(13, now.date())?;
        for n in [14u8, 22, 25] {
            if let Some(v) = msg.get(n) {
                m.set(n, v)?;
            }
        }
        m.set(32, ACQUIRER_ID)?;
        if let Some(t2) = msg.get(35) {
            m.set(35, t2)?;
        }
        m.set(37, up.rrn.as_str())?;
        id.write_to(&mut m)?;
        m.set(49, currency.as_str())?;
        if let Some(b) = &pin_block {
            m.set_bytes(52, b.as_bytes())?;
            m.set(53, "2600000000000000")?;
        }
        if let Rec::Begin {
            void_of: Some(o), ..
        } = &begin
        {
            let orig = lock(&inner.book).txns.get(o).map(|t| t.up.clone());
            if let Some(ou) = orig {
                m.set(90, de90(&ou))?;
            }
        }
        tracing::debug!(terminal = %id, pan = %masked_pan(&pan), %stan, ?kind, amount, up_stan = %up.stan, "to host");
        let (code, auth, reverse) = match self.upstream(m).await {
            Ok(r) => (
                r.get(39).unwrap_or_else(|| "96".into()),
                r.get(38).unwrap_or_default(),
                false,
            ),
            Err(UpFail::NotSent) | Err(UpFail::Refused) => ("91".to_string(), String::new(), false),
            Err(UpFail::Unknown) => ("98".to_string(), String::new(), true),
        };
        let done = Rec::Done {
            tk: key.clone(),
            code: code.clone(),
            auth: auth.clone(),
            reverse,
        };
        let (newly, durable) = {
            let mut book = lock(&inner.book);
            let newly = book.apply(&done);
            (newly, inner.wal.append_then(&done)?)
        };
        durable.wait().await?;
        if newly {
            self.reverse_upstream(key).await;
        }
        Ok(Some(self.terminal_reply(
            msg,
            &code,
            &auth,
            Some(&up.rrn),
            mak,
        )?))
    }

    async fn terminal_reversal(&self, id: &TerminalId, msg: &Message, mak: &Key) -> Result<Bytes> {
        let inner = &self.inner;
        inner
            .stats
            .terminal_reversals
            .fetch_add(1, Ordering::Relaxed);
        let (Some(batch), Some(stan)) = (
            msg.field(60)
                .and_then(|f| f.subfield(1))
                .map(|b| b.into_owned()),
            msg.get(11),
        ) else {
            return self.sealed_reply(msg, "30", mak);
        };
        let key = tk(id.terminal(), &batch, &stan);
        let amount = msg.field(4).and_then(|f| f.as_u64().ok());
        let (code, rec) = {
            let book = lock(&inner.book);
            match book.txns.get(&key) {
                None if book.tombs.contains(&key) => ("00", None),
                None => ("00", Some(Rec::Tomb { tk: key.clone() })),
                Some(tx) if tx.term_reversed => ("25", None),
                Some(tx) if amount.is_some_and(|a| a != tx.amount) => ("64", None),
                Some(_) => ("00", Some(Rec::TermRev { tk: key.clone() })),
            }
        };
        let mut newly = false;
        if let Some(r) = &rec {
            let durable = {
                let mut book = lock(&inner.book);
                newly = book.apply(r);
                inner.wal.append_then(r)?
            };
            durable.wait().await?;
        }
        if newly {
            self.reverse_upstream(key.clone()).await;
        }
        tracing::debug!(terminal = %id, %stan, %code, "terminal reversal");
        let mut r = Message::response_to(msg)?;
        r.set(39, code)?;
        Ok(inner.cup.seal(mak, &mut r)?)
    }

    fn settlement(&self, id: &TerminalId, msg: &Message) -> Result<Bytes> {
        let inner = &self.inner;
        inner.stats.settlements.fetch_add(1, Ordering::Relaxed);
        let batch = msg
            .field(60)
            .and_then(|f| f.subfield(1))
            .map(|b| b.into_owned())
            .unwrap_or_default();
        let theirs = msg
            .get(48)
            .and_then(|s| BatchTotals::parse_field48(&s))
            .map(|(t, _)| t);
        let ours = lock(&inner.book).batch_totals(id.terminal(), &batch);
        let balanced = theirs == Some(ours);
        if balanced {
            inner
                .stats
                .settlements_balanced
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(terminal = %id, %batch, totals = %ours.describe(), "settlement balanced");
        } else {
            tracing::warn!(terminal = %id, %batch, ours = %ours.describe(), theirs = ?theirs, "settlement not balanced");
        }
        let mut r = Message::response_to(msg)?;
        let now = local_now();
        r.set_time_hhmmss(12, now.time())?;
        r.set_date_mmdd(13, now.date())?;
        r.set(39, "00")?;
        r.set(48, ours.field48(if balanced { '1' } else { '2' }))?;
        Ok(r.to_bytes()?)
    }

    fn batch_upload(&self, id: &TerminalId, msg: &Message) -> Result<Bytes> {
        let code = msg
            .field(60)
            .and_then(|f| f.subfield(2))
            .unwrap_or_default();
        tracing::info!(terminal = %id, %code, entries = %msg.get(48).map(|s| s.len()).unwrap_or(0), "batch upload");
        let mut r = Message::response_to(msg)?;
        r.set(39, "00")?;
        Ok(r.to_bytes()?)
    }

    // ---- upstream reversals ----

    /// Hands the upstream original of `key` to the reversal engine, which sends the
    /// reversal until the host acknowledges it.
    async fn reverse_upstream(&self, key: Tk) {
        let inner = &self.inner;
        let Some(tx) = lock(&inner.book).txns.get(&key).cloned() else {
            return;
        };
        inner.pending_reversals.fetch_add(1, Ordering::AcqRel);
        let reason = if tx.term_reversed {
            ReversalReason::TerminalFailure
        } else {
            ReversalReason::NoResponse
        };
        let handed = match self.upstream_original(&key, &tx) {
            Ok(original) => inner
                .reversals
                .reverse_message(original, reason)
                .await
                .map_err(SimError::from),
            Err(e) => Err(e),
        };
        let id = match handed {
            Ok(id) => id,
            Err(e) => {
                // The switch's journal still says it needs reversing: handed over again
                // at the next start.
                tracing::error!(%key, error = %e, "upstream reversal not handed to the reversal engine");
                inner.pending_reversals.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        };
        let early = {
            let mut h = lock(&inner.handed);
            match h.early.remove(&id) {
                Some(had) => Some(had),
                None => {
                    h.txns.insert(id, key.clone());
                    None
                }
            }
        };
        if let Some(had) = early {
            self.record_reversal(key, had).await;
        }
    }

    /// The upstream original of a transaction as it was sent (what its reversal names).
    fn upstream_original(&self, key: &Tk, tx: &Tx) -> Result<Message> {
        let mut m = Message::new(
            &self.inner.iso.dialect,
            Mti::from_u16(tx.kind.request_mti())?,
        );
        m.set(2, tx.pan.as_str())?;
        m.set(3, tx.kind.processing_code())?;
        m.set_number(4, tx.amount)?;
        m.set(7, tx.up.de7.as_str())?;
        m.set(11, tx.up.stan.as_str())?;
        m.set(32, ACQUIRER_ID)?;
        m.set(37, tx.up.rrn.as_str())?;
        m.set(41, key.split(':').next().unwrap_or_default())?;
        m.set(42, SWITCH_MID)?;
        m.set(49, tx.currency.as_str())?;
        Ok(m)
    }

    /// The engine reports an acknowledged reversal.
    async fn reversal_acknowledged(&self, txn: TxnId, had: bool) {
        let key = {
            let mut h = lock(&self.inner.handed);
            match h.txns.remove(&txn) {
                Some(k) => k,
                None => {
                    h.early.insert(txn, had);
                    return;
                }
            }
        };
        self.record_reversal(key, had).await;
    }

    async fn record_reversal(&self, key: Tk, had: bool) {
        let inner = &self.inner;
        let rec = Rec::UpRev {
            tk: key.clone(),
            had,
        };
        lock(&inner.book).apply(&rec);
        if inner.wal.append(&rec).await.is_err() {
            tracing::error!("journal write failed for an acknowledged reversal");
        }
        inner
            .stats
            .upstream_reversals
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%key, had, "upstream reversal acknowledged");
        inner.pending_reversals.fetch_sub(1, Ordering::AcqRel);
    }

    /// Reconciles with the host (0500 with DE 74–89, 97).
    pub async fn reconcile(&self) -> Result<Option<Reconciliation>> {
        let inner = &self.inner;
        let ours = lock(&inner.book).recon();
        for _ in 0..10 {
            let up = self.up_ref().await?;
            let mut m = Message::new(&inner.iso.dialect, Mti::from_u16(500)?);
            m.set(7, up.de7.as_str())?;
            m.set(11, up.stan.as_str())?;
            m.set(32, ACQUIRER_ID)?;
            m.set(41, SWITCH_TID)?;
            m.set(42, SWITCH_MID)?;
            ours.write(&mut m)?;
            match self.upstream(m).await {
                Ok(r) => {
                    let theirs = ReconTotals::read(&r)?;
                    let balanced = r.get(66).as_deref() == Some("1");
                    return Ok(Some(Reconciliation {
                        balanced,
                        ours,
                        theirs,
                    }));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
        Ok(None)
    }
}

/// Why an upstream request has no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpFail {
    /// Definitely not sent.
    NotSent,
    /// The host answered that it did not act on it (77, A0).
    Refused,
    /// Sent; the host may have acted on it (timeout, connection lost, bad MAC).
    Unknown,
}

/// The reversal engine's settings: switch mode, waiting for a 0410 as long as for any
/// upstream answer, repeating quickly (the host is on the same network), never giving up.
fn reversal_engine_config(upstream_timeout: Duration) -> EngineConfig {
    EngineConfig {
        reversal_timeout: upstream_timeout.max(Duration::from_millis(100)),
        max_reversal_tries: 5,
        max_reversals_in_flight: 8,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        deferred_retry: Some(Duration::from_secs(1)),
        ..EngineConfig::switch()
    }
}

fn upgrade(weak: &Weak<Inner>) -> Option<Switch> {
    weak.upgrade().map(|inner| Switch { inner })
}

/// DE 90 (n42) of an original: MTI 0200 + STAN + DE 7 + acquirer + forwarding institution.
fn de90(up: &UpRef) -> String {
    format!(
        "0200{}{}{:0>11}{:0>11}",
        up.stan, up.de7, ACQUIRER_ID, ACQUIRER_ID
    )
}
