//! `host_sim`: the issuer/host behind the switch (`iso87-binary`, `len2` framing).
//!
//! - Network sign-on (0800, DE 70 = `001`) through a [`HostSession`] whose key store holds
//!   the switch's zone master key: fresh zone working keys (PIK, TDES MAK) go back in
//!   DE 48 under the zone master key.
//! - Every other message must carry a valid X9.19 MAC under the zone MAK (`A0` if not,
//!   `77` when the switch has not signed on since the host started).
//! - 0200 sale / void, 0220/0221 refund advice: the PIN block (DE 52, format 0 under the
//!   zone PIK) must decipher; approval rule: amount ending in 51 → `51`, in 55 → `55`,
//!   otherwise `00`. A void (DE 3 `020000`) cancels the sale named by its DE 90.
//! - 0400/0401/0420/0421 reversals, matched by DE 90 (original STAN + DE 7), idempotent:
//!   already reversed → `25`, original declined → `00` without effect, amount differs →
//!   `64`, original unknown → `00` and remembered, so that a late original is declined.
//! - 0500 reconciliation: DE 74–77, 86–89, 97 compared with the host's own; 0510 DE 66
//!   `1` (in balance) or `2` (out of balance, the host's totals returned).
//!
//! Every decision is written to the ledger log (`<data-dir>/host-ledger.log`, group
//! committed) **before** the response leaves, so a restarted host answers repeats and
//! reversals exactly as before.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::config::{SWITCH_MID, SWITCH_TID};
use super::money::{Kind, ReconTotals};
use super::wal::{Sync, Wal};
use super::{local_now, masked_pan, Result, Running, SimError};
use crate::codec::{Message, MessageClass, MessageView};
use crate::net::{Frame, Framing, Request, Server, ServerConfig};
use crate::session::crypto::{Key, Pan, Pin, PinBlock, PinBlockFormat};
use crate::session::{
    HostConfig, HostOutcome, HostSession, MemoryKeyStore, SessionProfile, TerminalId,
};

/// The PIN every simulated card has.
pub const CARD_PIN: &str = "1234";

/// `host_sim` settings.
#[derive(Debug, Clone)]
pub struct HostSimConfig {
    /// The zone master key shared with the switch.
    pub zone_key: Key,
    /// Where the ledger log lives.
    pub data_dir: PathBuf,
    /// Durability of the ledger log.
    pub sync: Sync,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t")]
enum Rec {
    Tx {
        key: String,
        kind: Kind,
        pan: String,
        amount: u64,
        code: String,
        auth: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        void_of: Option<String>,
    },
    Rev {
        key: String,
    },
    Tomb {
        key: String,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    pan: String,
    amount: u64,
    code: String,
    auth: String,
    void_of: Option<String>,
    reversed: bool,
    voided_by: Option<String>,
}

impl Entry {
    fn approved(&self) -> bool {
        self.code == "00"
    }
}

#[derive(Debug, Default)]
struct Book {
    txns: HashMap<String, Entry>,
    tombstones: HashSet<String>,
    ledger: HashMap<String, i128>,
    next_auth: u64,
}

impl Book {
    fn effect(&mut self, pan: &str, delta: i128) {
        *self.ledger.entry(pan.to_string()).or_insert(0) += delta;
    }

    fn apply(&mut self, rec: &Rec) {
        match rec {
            Rec::Tx {
                key,
                kind,
                pan,
                amount,
                code,
                auth,
                void_of,
            } => {
                let e = Entry {
                    kind: *kind,
                    pan: pan.clone(),
                    amount: *amount,
                    code: code.clone(),
                    auth: auth.clone(),
                    void_of: void_of.clone(),
                    reversed: false,
                    voided_by: None,
                };
                if e.approved() {
                    let a = i128::from(*amount);
                    match kind {
                        Kind::Sale => self.effect(pan, a),
                        Kind::Refund => self.effect(pan, -a),
                        Kind::Void => {
                            self.effect(pan, -a);
                            if let Some(o) = void_of.as_ref().and_then(|o| self.txns.get_mut(o)) {
                                o.voided_by = Some(key.clone());
                            }
                        }
                    }
                }
                self.next_auth += 1;
                self.txns.insert(key.clone(), e);
            }
            Rec::Rev { key } => {
                let Some(e) = self.txns.get_mut(key) else {
                    return;
                };
                if !e.approved() || e.reversed {
                    return;
                }
                e.reversed = true;
                let (kind, pan, a, void_of) = (
                    e.kind,
                    e.pan.clone(),
                    i128::from(e.amount),
                    e.void_of.clone(),
                );
                match kind {
                    Kind::Sale => self.effect(&pan, -a),
                    Kind::Refund => self.effect(&pan, a),
                    Kind::Void => {
                        self.effect(&pan, a);
                        if let Some(o) = void_of.as_ref().and_then(|o| self.txns.get_mut(o)) {
                            o.voided_by = None;
                        }
                    }
                }
            }
            Rec::Tomb { key } => {
                self.tombstones.insert(key.clone());
            }
        }
    }

    fn recon(&self) -> ReconTotals {
        let mut t = ReconTotals::default();
        for e in self.txns.values() {
            let undone = e.reversed || e.voided_by.is_some();
            t.count(e.kind, e.approved(), undone, e.amount);
        }
        t
    }

    fn summary(&self) -> LedgerSummary {
        LedgerSummary {
            total: self.ledger.values().sum(),
            cards: self.ledger.len(),
            transactions: self.txns.len(),
            approved: self.txns.values().filter(|e| e.approved()).count(),
            reversed: self.txns.values().filter(|e| e.reversed).count(),
            unknown_reversals: self.tombstones.len(),
            recon: self.recon(),
        }
    }
}

/// What the host's ledger holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerSummary {
    /// Sum over every card of its balance change, in minor units (debits positive).
    pub total: i128,
    /// Cards with an entry.
    pub cards: usize,
    /// Financial transactions recorded.
    pub transactions: usize,
    /// Of which approved.
    pub approved: usize,
    /// Of which reversed.
    pub reversed: usize,
    /// Reversals of originals the host never saw.
    pub unknown_reversals: usize,
    /// Reconciliation totals.
    pub recon: ReconTotals,
}

const LEDGER_FILE: &str = "host-ledger.log";

/// Reads the ledger a host left in `data_dir` (the host must not be running).
pub fn read_ledger(data_dir: &Path) -> Result<LedgerSummary> {
    let (_wal, recs) = Wal::open::<Rec>(&data_dir.join(LEDGER_FILE), Sync::Os)?;
    let mut book = Book::default();
    for r in &recs {
        book.apply(r);
    }
    Ok(book.summary())
}

struct Inner {
    profile: SessionProfile,
    session: Mutex<HostSession<MemoryKeyStore>>,
    switch: TerminalId,
    book: Mutex<Book>,
    wal: Wal,
}

/// The host; cheap to clone.
#[derive(Clone)]
pub struct HostSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HostSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSim").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The key a host files an upstream transaction under: its STAN and DE 7.
fn up_key(stan: &str, de7: &str) -> String {
    format!("{stan}{de7}")
}

impl HostSim {
    /// Opens the ledger in `config.data_dir` (replaying it).
    pub fn open(config: &HostSimConfig) -> Result<HostSim> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| SimError::io(config.data_dir.display(), e))?;
        let (wal, recs) = Wal::open::<Rec>(&config.data_dir.join(LEDGER_FILE), config.sync)?;
        let mut book = Book::default();
        for r in &recs {
            book.apply(r);
        }
        tracing::info!(
            records = recs.len(),
            transactions = book.txns.len(),
            "host ledger replayed"
        );
        let profile = SessionProfile::iso87_binary()?;
        let switch = TerminalId::new(SWITCH_TID, SWITCH_MID)?;
        let mut store = MemoryKeyStore::new();
        store.insert(switch, config.zone_key.clone())?;
        let session = HostSession::new(profile.clone(), HostConfig::default(), store)?;
        Ok(HostSim {
            inner: Arc::new(Inner {
                profile,
                session: Mutex::new(session),
                switch,
                book: Mutex::new(book),
                wal,
            }),
        })
    }

    /// The ledger now.
    pub fn summary(&self) -> LedgerSummary {
        lock(&self.inner.book).summary()
    }

    /// Binds `listen` and serves in the background.
    pub async fn spawn(&self, listen: &str) -> Result<Running> {
        let host = self.clone();
        let handler = move |req: Request| {
            let h = host.clone();
            async move { h.handle(req).await }
        };
        let config = ServerConfig {
            max_in_flight_per_connection: 4096,
            write_queue: 4096,
            idle_timeout: Duration::from_secs(3600),
            shutdown_timeout: Duration::from_secs(5),
            ..ServerConfig::default()
        };
        let server = Server::bind(listen, Framing::Len2, config, handler).await?;
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .serve(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        tracing::info!(%addr, "host listening (iso87-binary, len2)");
        Ok(Running::new(addr, stop, task))
    }

    /// Serves on `listen` until `shutdown` completes.
    pub async fn serve(&self, listen: &str, shutdown: impl Future<Output = ()>) -> Result<()> {
        let running = self.spawn(listen).await?;
        println!("host_sim listening on {}", running.addr);
        shutdown.await;
        running.stop().await;
        self.inner.wal.barrier().await?;
        Ok(())
    }

    async fn handle(&self, req: Request) -> Option<Frame> {
        let bytes = req.frame.payload;
        // Run to the end even if the connection (and so this future) goes away.
        let h = self.clone();
        let answered = match tokio::spawn(async move { h.answer(bytes).await }).await {
            Ok(r) => r,
            Err(e) => Err(SimError::Protocol(format!("handler task: {e}"))),
        };
        match answered {
            Ok(Some(reply)) => Some(Frame::new(reply)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "host: message not answered");
                None
            }
        }
    }

    fn reply(&self, msg: &Message, code: &str, mak: Option<&Key>) -> Result<Bytes> {
        let mut r = Message::response_to(msg)?;
        r.set(39, code)?;
        Ok(match mak {
            Some(k) => self.inner.profile.seal(k, &mut r)?,
            None => r.to_bytes()?,
        })
    }

    async fn answer(&self, bytes: Bytes) -> Result<Option<Bytes>> {
        let inner = &self.inner;
        let dialect = inner.profile.dialect.clone();
        let msg = Message::decode(&dialect, bytes.clone())?;
        let mti = msg.mti();
        if mti.class() == MessageClass::NetworkManagement {
            let out = lock(&inner.session).handle_request(local_now(), bytes)?;
            return Ok(match out {
                HostOutcome::Replied { reply, action } => {
                    tracing::info!(?action, "host: network management");
                    Some(reply)
                }
                HostOutcome::Rejected { reply, .. } => Some(reply),
                HostOutcome::Accepted(_) | HostOutcome::Acknowledged { .. } => None,
            });
        }
        if mti.is_response() {
            return Ok(None);
        }
        let keys = lock(&inner.session)
            .working_keys(&inner.switch)
            .map(|k| (k.mak().clone(), k.pik().clone()));
        let Some((mak, pik)) = keys else {
            return Ok(Some(self.reply(&msg, "77", None)?));
        };
        let view = MessageView::decode(&dialect, &bytes)?;
        if let Err(reason) = inner.profile.verify_mac(&mak, &view) {
            tracing::warn!(%mti, ?reason, "host: MAC not accepted");
            return Ok(Some(self.reply(&msg, "A0", Some(&mak))?));
        }
        match mti.as_u16() {
            200 | 220 | 221 => self.financial(&msg, &mak, &pik).await.map(Some),
            400 | 401 | 420 | 421 => self.reversal(&msg, &mak).await.map(Some),
            500 | 501 => self.reconcile(&msg, &mak).map(Some),
            _ => Ok(Some(self.reply(&msg, "12", Some(&mak))?)),
        }
    }

    async fn financial(&self, msg: &Message, mak: &Key, pik: &Key) -> Result<Bytes> {
        let inner = &self.inner;
        let (Some(stan), Some(de7), Some(pan), Some(amount), Some(kind)) = (
            msg.get(11),
            msg.get(7),
            msg.get(2),
            msg.field(4).and_then(|f| f.as_u64().ok()),
            msg.get(3).and_then(|p| Kind::from_processing_code(&p)),
        ) else {
            return self.reply(msg, "30", Some(mak));
        };
        let key = up_key(&stan, &de7);
        let advice = matches!(msg.mti().as_u16(), 220 | 221);
        // PIN: format 0 under the zone PIK.
        let pin_code = match msg.field(52) {
            None => None,
            Some(f) => {
                let ok = Pan::new(&pan)
                    .and_then(|p| {
                        PinBlock::from_bytes(PinBlockFormat::Iso0, &f.bytes())?
                            .decipher(Some(&p), pik)
                    })
                    .map(|pin| Pin::new(CARD_PIN).is_ok_and(|c| c == pin));
                match ok {
                    Ok(true) => None,
                    Ok(false) => Some("55"),
                    Err(_) => Some("99"),
                }
            }
        };
        let void_of = msg
            .get(90)
            .filter(|_| kind == Kind::Void)
            .and_then(|d| Some(up_key(d.get(4..10)?, d.get(10..20)?)));
        let (code, auth, wrote) = {
            let mut book = lock(&inner.book);
            if let Some(e) = book.txns.get(&key) {
                if advice {
                    (e.code.clone(), e.auth.clone(), None)
                } else {
                    ("94".to_string(), String::new(), None)
                }
            } else {
                let code = if book.tombstones.contains(&key) {
                    "12"
                } else if let Some(c) = pin_code {
                    c
                } else {
                    match kind {
                        Kind::Sale | Kind::Refund => match amount % 100 {
                            51 => "51",
                            55 => "55",
                            _ => "00",
                        },
                        Kind::Void => match void_of.as_ref().and_then(|o| book.txns.get(o)) {
                            Some(o)
                                if o.kind == Kind::Sale
                                    && o.approved()
                                    && !o.reversed
                                    && o.voided_by.is_none() =>
                            {
                                if o.amount == amount {
                                    "00"
                                } else {
                                    "64"
                                }
                            }
                            _ => "25",
                        },
                    }
                };
                let auth = if code == "00" {
                    format!("{:06}", book.next_auth % 1_000_000)
                } else {
                    String::new()
                };
                let rec = Rec::Tx {
                    key: key.clone(),
                    kind,
                    pan: pan.clone(),
                    amount,
                    code: code.to_string(),
                    auth: auth.clone(),
                    void_of: void_of.clone(),
                };
                book.apply(&rec);
                let durable = inner.wal.append_then(&rec)?;
                (code.to_string(), auth, Some(durable))
            }
        };
        if let Some(d) = wrote {
            d.wait().await?;
        }
        tracing::debug!(pan = %masked_pan(&pan), %stan, ?kind, amount, %code, "host: financial");
        let mut r = Message::response_to(msg)?;
        r.set(39, code.as_str())?;
        if !auth.is_empty() {
            r.set(38, auth.as_str())?;
        }
        Ok(inner.profile.seal(mak, &mut r)?)
    }

    async fn reversal(&self, msg: &Message, mak: &Key) -> Result<Bytes> {
        let inner = &self.inner;
        let Some(okey) = msg
            .get(90)
            .and_then(|d| Some(up_key(d.get(4..10)?, d.get(10..20)?)))
        else {
            return self.reply(msg, "30", Some(mak));
        };
        let amount = msg.field(4).and_then(|f| f.as_u64().ok());
        let (code, rec, auth) = {
            let mut book = lock(&inner.book);
            // DE 38 of the answer: the original's approval code, when the host had
            // approved it (tells the switch what its reconciliation must count).
            let auth = book
                .txns
                .get(&okey)
                .filter(|e| e.approved())
                .map(|e| e.auth.clone());
            let (code, rec) = match book.txns.get(&okey) {
                None if book.tombstones.contains(&okey) => ("00", None),
                None => ("00", Some(Rec::Tomb { key: okey.clone() })),
                Some(e) if e.reversed => ("25", None),
                Some(e) if !e.approved() => ("00", None),
                Some(e) if amount.is_some_and(|a| a != e.amount) => ("64", None),
                Some(_) => ("00", Some(Rec::Rev { key: okey.clone() })),
            };
            let mut durable = None;
            if let Some(r) = &rec {
                book.apply(r);
                durable = Some(inner.wal.append_then(r)?);
            }
            (code, durable, auth)
        };
        if let Some(d) = rec {
            d.wait().await?;
        }
        tracing::debug!(original = %okey, %code, "host: reversal");
        let mut r = Message::response_to(msg)?;
        r.set(39, code)?;
        if let Some(a) = auth.filter(|a| !a.is_empty()) {
            r.set(38, a.as_str())?;
        }
        Ok(inner.profile.seal(mak, &mut r)?)
    }

    fn reconcile(&self, msg: &Message, mak: &Key) -> Result<Bytes> {
        let ours = lock(&self.inner.book).recon();
        let theirs = ReconTotals::read(msg)?;
        let code = ours.settlement_code(&theirs);
        let balanced = code == "1";
        if balanced {
            tracing::info!(net = ours.net(), "host: reconciliation in balance");
        } else {
            tracing::warn!(?ours, ?theirs, "host: reconciliation out of balance");
        }
        let mut r = Message::response_to(msg)?;
        r.set(39, "00")?;
        r.set(66, code)?;
        ours.write(&mut r)?;
        Ok(self.inner.profile.seal(mak, &mut r)?)
    }
}
