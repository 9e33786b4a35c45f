//! `host_sim`: the issuer/host behind the switch (`iso87-binary`, `len2` framing).
//!
//! - Network sign-on (0800, DE 70 = `001`) through a [`HostSession`] whose key store holds
//!   the switch's zone master key: fresh zone working keys (PIK, TDES MAK) go back in
//!   DE 48 under the zone master key.
//! - Every other message must carry a valid X9.19 MAC under the zone MAK (`A0` if not,
//!   `77` when the switch has never signed on, or signed off).
//! - 0200 sale / void, 0220/0221 refund advice: the PIN block (DE 52, format 0 under the
//!   zone PIK) must decipher; approval rule: amount ending in 51 → `51`, in 55 → `55`,
//!   otherwise `00`. A void (DE 3 `020000`) cancels the sale named by its DE 90. A reused
//!   STAN gets `94`; a repeated advice gets its first answer again.
//! - 0400/0401/0420/0421 reversals, matched by DE 90 (original STAN + DE 7), idempotent:
//!   already reversed → `25`, original declined → `00` without effect, amount differs →
//!   `64`, original unknown → `00` and remembered, so that a late original is declined
//!   (`12`). The 0410 carries DE 38 of the original when the host had approved it.
//! - 0500 reconciliation: DE 74–77, 86–89, 97 compared with the host's own; 0510 DE 66
//!   `1` (in balance) or `2` (out of balance, the host's totals returned).
//!
//! # Durable state: one data directory
//!
//! `--data-dir` is an `isoswitch-reversal` [`DataDir`] (locked: a second host on the same
//! directory fails with [`ReversalError::Locked`](crate::reversal::ReversalError)); every
//! file in it is in the one CRC-framed record format:
//!
//! | file | part | what |
//! |---|---|---|
//! | `host.store` | idempotency | one record per decision: the idempotency entry, its ledger effect, and for an approved void the sale it cancels |
//! | `host.sessions` | sessions | the switch's zone session (working keys, generation), sealed under the KEK |
//!
//! Originals, reversals, the idempotency records and the ledger per card are
//! `isoswitch-reversal`'s: a [`ReversalHandler`] over the idempotency part. The crate
//! keys a transaction by DE 41 + DE 42 + DE 11; the switch gives every upstream message
//! (0400/0401 included) its own STAN and names the original in DE 90, so the host hands
//! the crate a *canonical* view of each request: DE 11 = the original's STAN and DE 42 =
//! the original's DE 7 (both from DE 90 in a reversal), DE 41 as sent, no DE 49 (amounts
//! are counted in DE 4 minor units, as the switch's reconciliation counts them). Answers
//! are built from the request as received.
//!
//! Which sale a void cancels is part of the void's own record
//! ([`ReversalHandler::handle_original_cancelling`]): written with the approval, in the
//! same append, so the link and the decision are durable together, and a sale counts as
//! voided only while its void stands (approved and not reversed:
//! [`IdempotencyStore::is_cancelled`]).
//!
//! What the crate does not know stays here: the PIN check and the approval rule (its
//! authorizer), the authorization code (derived from the key, so repeats and restarts
//! give the same one), and the wire codes host_sim always answered where the crate
//! answers differently (`25` to a repeated reversal of an approved original, where the
//! crate repeats its stored `00`; `00` to any reversal of a declined original).
//!
//! Every decision is written to the store **before** the response leaves: with
//! [`HostSimConfig::fsync`], answers wait for an `fdatasync` shared by concurrent
//! decisions (group commit), so a restarted host answers repeats and reversals exactly
//! as before.
//!
//! # The zone session survives a restart
//!
//! After every network management message that changed the switch's session (sign-on,
//! sign-off), its [`TerminalSnapshot`](crate::session::TerminalSnapshot) is sealed under
//! the key-encryption key ([`HostSimConfig::kek`], AES-256-GCM) and saved (fsynced)
//! before the answer leaves; at start every stored snapshot is opened and restored. A
//! host killed and restarted on the same directory therefore accepts the switch's next
//! MACed message under the zone keys it had issued, without a new sign-on. A snapshot
//! that does not open under the KEK stops the start with an error naming the file.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;

use super::config::{SWITCH_MID, SWITCH_TID};
use super::money::{Kind, ReconTotals};
use super::{local_now, masked_pan, Result, Running, SimError};
use crate::codec::{Message, MessageClass, MessageView};
use crate::net::{Frame, Framing, Request, Server, ServerConfig};
use crate::reversal::{
    DataDir, Decimal, Decision, FileStore, HostConfig as ReversalConfig, IdempotencyStore, Part,
    ReversalHandler, ReversalProfile, SessionStore, Store, TornReport, TxnKey,
};
use crate::reversal::{Durability, GroupSync};
use crate::session::crypto::{Key, Pan, Pin, PinBlock, PinBlockFormat};
use crate::session::{
    HostConfig, HostOutcome, HostSession, Kek, MemoryKeyStore, SealedSnapshot, SessionProfile,
    TerminalId,
};

/// The PIN every simulated card has.
pub const CARD_PIN: &str = "1234";

/// The PIN a simulated cardholder enters when they get it wrong (answered 55).
pub const WRONG_PIN: &str = "9999";

/// `host_sim` settings.
#[derive(Debug, Clone)]
pub struct HostSimConfig {
    /// The zone master key shared with the switch.
    pub zone_key: Key,
    /// The key-encryption key the zone session snapshots are sealed under.
    pub kek: Kek,
    /// The data directory (idempotency records and ledger, sealed sessions).
    pub data_dir: std::path::PathBuf,
    /// `true`: answers wait for an `fdatasync` (shared by concurrent decisions);
    /// `false`: for the `write` only (survives a killed process, not a power loss).
    pub fsync: bool,
}

/// The name of host_sim's parts in its data directory (`host.store`, `host.sessions`).
pub const PART: &str = "host";

/// Files of host_sim versions before the data directory (a ledger log, a store of the
/// same records under another name, and a JSON log of void links).
const LEGACY_FILES: [&str; 3] = ["host-ledger.log", "host-store.rev", "host-voids.log"];

/// DE 41 of the canonical view when a request has none.
const NO_TERMINAL: &str = "00000000";

/// Minor units of an amount the crate holds (the canonical view has no DE 49: two
/// decimals).
fn minor(d: Decimal) -> i128 {
    let mut x = d;
    x.rescale(2);
    x.mantissa()
}

fn kind_of(txn_type: u8) -> Option<Kind> {
    Kind::from_processing_code(&format!("{txn_type:02}0000"))
}

/// The authorization code (DE 38) of an approved original: derived from its key, so a
/// repeated advice, a reversal and a restarted host all give the same one.
fn auth_code(k: &TxnKey) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in k
        .terminal
        .bytes()
        .chain(k.merchant.bytes())
        .chain(k.stan.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:06}", h % 1_000_000)
}

fn overflow(what: &str) -> SimError {
    SimError::Config(format!(
        "host store: {what} overflows the reconciliation totals (damaged store?)"
    ))
}

/// The reconciliation totals of the store (amounts read from disk: checked).
fn recon(store: &impl IdempotencyStore) -> Result<ReconTotals> {
    let mut t = ReconTotals::default();
    for (k, v) in store.entries() {
        let Some(o) = &v.original else { continue };
        let Some(kind) = kind_of(o.txn_type) else {
            continue;
        };
        let undone = (o.approved && v.reversal.is_some()) || store.is_cancelled(k);
        let amount = u64::try_from(minor(o.amount)).map_err(|_| overflow("an amount"))?;
        t.checked_count(kind, o.approved, undone, amount)
            .ok_or_else(|| overflow("a total"))?;
    }
    Ok(t)
}

fn summarize(store: &impl IdempotencyStore) -> Result<LedgerSummary> {
    let mut s = LedgerSummary {
        total: minor(store.ledger().total()),
        cards: store.ledger().cards().count(),
        transactions: 0,
        approved: 0,
        reversed: 0,
        unknown_reversals: 0,
        recon: recon(store)?,
    };
    for (_, v) in store.entries() {
        match (&v.original, &v.reversal) {
            (Some(o), r) => {
                s.transactions += 1;
                if o.approved {
                    s.approved += 1;
                    s.reversed += usize::from(r.is_some());
                } else if r.is_some() && o.code == ReversalConfig::default().late_original_code {
                    // The reversal came first; the late original was declined.
                    s.unknown_reversals += 1;
                }
            }
            (None, Some(_)) => s.unknown_reversals += 1,
            (None, None) => {}
        }
    }
    Ok(s)
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

/// Refuses a directory written by a host_sim before the data directory.
fn check_legacy(data_dir: &Path) -> Result<()> {
    if let Some(f) = LEGACY_FILES
        .iter()
        .map(|f| data_dir.join(f))
        .find(|p| p.exists())
    {
        return Err(SimError::Config(format!(
            "{} was written by an older host_sim (its state is now {}/{PART}.store and {PART}.sessions); start with an empty --data-dir",
            f.display(),
            data_dir.display()
        )));
    }
    Ok(())
}

/// Opens `data_dir` (taking its lock) and host_sim's idempotency part.
fn open_store(data_dir: &Path, kek: &Kek) -> Result<(DataDir, Part<FileStore>)> {
    check_legacy(data_dir)?;
    let data = super::open_data_dir(data_dir, kek)?;
    let store = data.idempotency(PART)?;
    Ok((data, store))
}

/// Reads the ledger a host left in `data_dir`, sealed under `kek`'s data key (the host
/// must not be running: the data directory is locked while it is).
pub fn read_ledger(data_dir: &Path, kek: &Kek) -> Result<LedgerSummary> {
    let (_data, store) = open_store(data_dir, kek)?;
    summarize(&*store)
}

/// Opens every stored session snapshot under `kek` and restores it into `session`.
fn restore_sessions(
    session: &mut HostSession<MemoryKeyStore>,
    sessions: &dyn SessionStore,
    where_: &str,
    kek: &Kek,
) -> Result<usize> {
    let mut restored = 0;
    for sealed in sessions.terminals()? {
        let snapshot = sealed.open(kek).map_err(|e| {
            SimError::Config(format!(
                "{where_}: the session of {} does not open under the KEK ({kek:?}): {e}; start with the KEK it was sealed under, or delete the file (the switch then signs on again)",
                sealed.terminal
            ))
        })?;
        match session.restore(snapshot) {
            Ok(()) => restored += 1,
            // Not a zone identity of this host (any longer): it signs on again.
            Err(e) => {
                tracing::warn!(terminal = %sealed.terminal, error = %e, "stored session not restored")
            }
        }
    }
    Ok(restored)
}

/// What [`HostSim::open`] and [`HostSim::open_on`] hand to the common start.
struct Parts {
    store: Box<dyn IdempotencyStore + Send>,
    sessions: Box<dyn SessionStore>,
    where_: String,
    syncer: Option<Arc<dyn Durability>>,
    written: u64,
    describe: String,
    torn: Vec<TornReport>,
    data: Box<dyn std::any::Any + Send + Sync>,
}

struct Inner {
    profile: SessionProfile,
    /// The crate's profile (`iso87-binary`): the key of a canonical view.
    matching: ReversalProfile,
    session: Mutex<HostSession<MemoryKeyStore>>,
    switch: TerminalId,
    book: Mutex<ReversalHandler<Box<dyn IdempotencyStore + Send>>>,
    /// Held while a network management message is answered and its snapshots saved, so
    /// snapshots reach the store in the order the session made them.
    sessions: Arc<tokio::sync::Mutex<Box<dyn SessionStore>>>,
    kek: Kek,
    /// `Some` with [`HostSimConfig::fsync`] or a shared database: answers wait until the
    /// store is durable past them (group commit).
    syncer: Option<Arc<dyn Durability>>,
    /// The answers' shared flush over `syncer`.
    group: Option<GroupSync>,
    /// The store (a data directory's lock is held while the host lives).
    _data: Box<dyn std::any::Any + Send + Sync>,
    /// The store, for logs.
    describe: String,
    /// Torn tails cut when the data directory's parts were opened.
    torn: Vec<TornReport>,
    /// Each answer waits this long, in milliseconds (a slow issuer; 0: none).
    answer_delay_ms: AtomicU64,
    /// Sign-ons of the switch answered since this host started.
    sign_ons: AtomicU64,
}

/// The host; cheap to clone.
#[derive(Clone)]
pub struct HostSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HostSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSim")
            .field("data", &self.inner.describe)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The original's STAN and DE 7 named by DE 90 (n42: MTI, STAN, DE 7, …).
fn de90_original(msg: &Message) -> Option<(String, String)> {
    let d = msg.get(90)?;
    Some((d.get(4..10)?.to_string(), d.get(10..20)?.to_string()))
}

/// The canonical view of a request for the crate (see the module docs) and its key;
/// `None` when the original's STAN is not a number.
fn canonical(
    profile: &ReversalProfile,
    msg: &Message,
    stan: &str,
    de7: &str,
) -> Option<(Message, TxnKey)> {
    if stan.is_empty() || !stan.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut c = msg.clone();
    c.set(11, stan).ok()?;
    c.set(42, format!("{de7:0>15}")).ok()?;
    if !c.has(41) {
        c.set(41, NO_TERMINAL).ok()?;
    }
    c.remove(49);
    let key = profile.key_of(&c).ok()?;
    Some((c, key))
}

impl HostSim {
    /// Opens the data directory `config.data_dir` (locking it), replays the store and
    /// restores the stored zone sessions.
    ///
    /// # Errors
    /// The directory is locked by another host ([`crate::reversal::ReversalError::Locked`]),
    /// was written by an older host_sim, a part is damaged (`Corrupt`, naming the file and
    /// offset), a session snapshot does not open under the KEK, I/O errors.
    pub fn open(config: &HostSimConfig) -> Result<HostSim> {
        let (data, mut store) = open_store(&config.data_dir, &config.kek)?;
        // Commits are one `write`; with fsync the answers wait for a shared fdatasync.
        store.set_sync_on_commit(false);
        let syncer = if config.fsync {
            // What a killed host wrote but never synced is answered from: sync it.
            store.sync()?;
            Some(Arc::new(store.sync_handle()?) as Arc<dyn Durability>)
        } else {
            None
        };
        let written = store.written();
        let sessions = data.sessions(PART)?;
        let where_ = sessions.path().display().to_string();
        let torn = data.torn_tails();
        for t in &torn {
            tracing::warn!(path = %t.path.display(), offset = t.torn.offset, reason = ?t.torn.reason, "host: torn tail cut");
        }
        HostSim::assemble(
            config,
            Parts {
                store: Box::new(store),
                sessions: Box::new(sessions),
                where_,
                syncer,
                written,
                describe: data.describe(),
                torn,
                data: Box::new(data),
            },
        )
    }

    /// As [`HostSim::open`], on a shared PostgreSQL store instead of `config.data_dir`
    /// (decisions, ledger and the sealed zone session in its tables; every answer
    /// waits for its decision's commit).
    ///
    /// # Errors
    /// Database errors, a session snapshot that does not open under the KEK.
    pub fn open_on(config: &HostSimConfig, store: isoswitch_pg::PgStore) -> Result<HostSim> {
        let mut book = store.idempotency(PART)?;
        // Group commit: the decisions made while one group is written go in the next.
        let syncer = book.defer_sync();
        let sessions = store.sessions(PART)?;
        HostSim::assemble(
            config,
            Parts {
                store: Box::new(book),
                sessions: Box::new(sessions),
                where_: store.describe(),
                syncer,
                written: 0,
                describe: store.describe(),
                torn: Vec::new(),
                data: Box::new(store),
            },
        )
    }

    fn assemble(config: &HostSimConfig, parts: Parts) -> Result<HostSim> {
        let Parts {
            store,
            sessions,
            where_,
            syncer,
            written,
            describe,
            torn,
            data,
        } = parts;
        let s = summarize(&store)?;
        let matching = ReversalProfile::iso87("iso87-binary")?;
        let handler = ReversalHandler::new(matching.clone(), store, ReversalConfig::default());
        let profile = SessionProfile::iso87_binary()?;
        let switch = TerminalId::new(SWITCH_TID, SWITCH_MID)?;
        let mut keys = MemoryKeyStore::new();
        keys.insert(switch, config.zone_key.clone())?;
        let mut session = HostSession::new(profile.clone(), HostConfig::default(), keys)?;
        let restored = restore_sessions(&mut session, &*sessions, &where_, &config.kek)?;
        tracing::info!(
            data = %describe,
            transactions = s.transactions,
            cards = s.cards,
            sessions = restored,
            torn_tails = torn.len(),
            "host store replayed"
        );
        Ok(HostSim {
            inner: Arc::new(Inner {
                profile,
                matching,
                session: Mutex::new(session),
                switch,
                book: Mutex::new(handler),
                sessions: Arc::new(tokio::sync::Mutex::new(sessions)),
                kek: config.kek.clone(),
                group: syncer.clone().map(|h| GroupSync::new(h, written)),
                syncer,
                _data: data,
                describe,
                torn,
                answer_delay_ms: AtomicU64::new(0),
                sign_ons: AtomicU64::new(0),
            }),
        })
    }

    /// The ledger now.
    ///
    /// # Errors
    /// The totals overflow (a damaged store).
    pub fn summary(&self) -> Result<LedgerSummary> {
        summarize(lock(&self.inner.book).store())
    }

    /// Sign-ons of the switch this host answered since it started.
    pub fn sign_ons(&self) -> u64 {
        self.inner.sign_ons.load(Ordering::Relaxed)
    }

    /// What the host's book decided since it started (duplicates: originals that came
    /// with a key, and so a STAN, already used).
    pub fn book_stats(&self) -> crate::reversal::HostStats {
        lock(&self.inner.book).stats()
    }

    /// Torn tails cut when the data directory's parts were opened (none on PostgreSQL).
    pub fn torn_tails(&self) -> &[TornReport] {
        &self.inner.torn
    }

    /// Whether the switch is signed on (has zone working keys) — also right after a
    /// restart that restored its session.
    pub fn switch_signed_on(&self) -> bool {
        lock(&self.inner.session).is_signed_on(&self.inner.switch)
    }

    /// Binds `listen` and serves in the background.
    pub async fn spawn(&self, listen: &str) -> Result<Running> {
        let server = self.bind(listen, None).await?;
        let running = Running::serve(server);
        tracing::info!(addr = %running.addr, "host listening (iso87-binary, len2)");
        Ok(running)
    }

    /// Binds `listen` (over TLS when `tls` is given).
    pub async fn bind(
        &self,
        listen: &str,
        tls: Option<crate::net::ServerTls>,
    ) -> Result<Server<impl crate::net::Handler>> {
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
            link: "switches".into(),
            ..ServerConfig::default()
        };
        let host = self.clone();
        let server = Server::bind(listen, Framing::Len2, config, handler)
            .await?
            .with_dialect(self.inner.profile.dialect.clone())
            // Draining: new requests get the retry code (the switch's own rule).
            .answer_while_draining(move |req| host.refusal(req.message()?.ok()?).map(Frame::new));
        Ok(match tls {
            Some(tls) => server.with_tls(tls),
            None => server,
        })
    }

    /// Serves on `listen` until `shutdown` completes.
    pub async fn serve(&self, listen: &str, shutdown: impl Future<Output = ()>) -> Result<()> {
        let running = self.spawn(listen).await?;
        println!("host_sim listening on {}", running.addr);
        shutdown.await;
        running.stop().await;
        if let Some(h) = &self.inner.syncer {
            h.make_durable()?;
        }
        Ok(())
    }

    /// Waits until the store is durable past the decision written between `w.0` and
    /// `w.1` (one flush covers every decision written before it started: group commit),
    /// and that the store kept it (a decision a database group refused or failed to write
    /// is not answered: the switch repeats the request).
    async fn durable(&self, (since, upto): (u64, u64)) -> Result<()> {
        let inner = &self.inner;
        isoswitch::reversal::settle(inner.group.as_ref(), &inner.book, since, upto).await?;
        Ok(())
    }

    async fn handle(&self, req: Request) -> Option<Frame> {
        let delay = self.inner.answer_delay_ms.load(Ordering::Relaxed);
        let network = req
            .message()
            .and_then(|m| m.ok())
            .is_some_and(|m| m.mti().class() == MessageClass::NetworkManagement);
        let bytes = req.frame.payload;
        if delay > 0 && !network {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        // Run to the end even if the connection (and so this future) goes away.
        let h = self.clone();
        // Boxed: `answer`'s future is about 5 KiB (decoded messages live in it), which
        // tokio would otherwise copy into the task cell and again over it when it ends.
        let answered = match tokio::spawn(async move { Box::pin(h.answer(bytes)).await }).await {
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

    /// Each answer but network management's waits `delay` first (a slow issuer, e.g. to
    /// test a drain with a request in flight).
    pub fn set_answer_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.inner.answer_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// The answer to a request that arrives while the host drains: the library's
    /// refusal rule ([`isoswitch::switch::refusal_message`]) with the retry code, MACed
    /// under the zone MAK when the host holds one.
    fn refusal(&self, msg: &Message) -> Option<Bytes> {
        let mut r = isoswitch::switch::refusal_message(msg, isoswitch::switch::RETRY_CODE)?;
        let mak = lock(&self.inner.session)
            .working_keys(&self.inner.switch)
            .map(|k| k.mak().clone());
        match mak {
            Some(k) => self.inner.profile.seal(&k, &mut r).ok(),
            None => r.to_bytes().ok(),
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

    /// The answer with DE 39 `code` and DE 38 `auth`, sealed.
    fn sealed(&self, msg: &Message, code: &str, auth: Option<&str>, mak: &Key) -> Result<Bytes> {
        let mut r = Message::response_to(msg)?;
        r.set(39, code)?;
        if let Some(a) = auth.filter(|a| !a.is_empty()) {
            r.set(38, a)?;
        }
        Ok(self.inner.profile.seal(mak, &mut r)?)
    }

    /// Network management through the [`HostSession`]; what it changed is sealed and
    /// saved before the answer leaves.
    async fn network(&self, bytes: Bytes) -> Result<Option<Bytes>> {
        let inner = &self.inner;
        let mut sessions = inner.sessions.clone().lock_owned().await;
        let (out, changed) = {
            let mut session = lock(&inner.session);
            let out = session.handle_request(local_now(), bytes)?;
            let changed = std::iter::from_fn(|| session.poll_snapshot())
                .map(|s| s.seal(&inner.kek))
                .collect::<std::result::Result<Vec<SealedSnapshot>, _>>()?;
            (out, changed)
        };
        if !changed.is_empty() {
            // One write and one fsync (rare: sign-ons), off the async threads.
            let n = changed.len();
            tokio::task::spawn_blocking(move || sessions.save(&changed))
                .await
                .map_err(|e| SimError::Protocol(format!("session save task: {e}")))??;
            tracing::info!(snapshots = n, "host: zone session saved");
        }
        Ok(match out {
            HostOutcome::Replied { reply, action } => {
                if matches!(action, crate::session::HostAction::SignedOn { .. }) {
                    inner.sign_ons.fetch_add(1, Ordering::Relaxed);
                }
                tracing::info!(?action, "host: network management");
                Some(reply)
            }
            HostOutcome::Rejected { reply, .. } => Some(reply),
            HostOutcome::Accepted(_) | HostOutcome::Acknowledged { .. } => None,
        })
    }

    async fn answer(&self, bytes: Bytes) -> Result<Option<Bytes>> {
        let inner = &self.inner;
        let dialect = inner.profile.dialect.clone();
        let msg = Message::decode(&dialect, bytes.clone())?;
        let mti = msg.mti();
        if mti.class() == MessageClass::NetworkManagement {
            return self.network(bytes).await;
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
        let Some((canon, key)) = canonical(&inner.matching, msg, &stan, &de7) else {
            return self.reply(msg, "30", Some(mak));
        };
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
                    Ok(false) => Some(*b"55"),
                    Err(_) => Some(*b"99"),
                }
            }
        };
        // A void names its sale in DE 90; an approved void's record carries the link.
        let sale = if kind == Kind::Void {
            de90_original(msg)
                .and_then(|(s, d)| canonical(&inner.matching, msg, &s, &d))
                .map(|(_, k)| k)
        } else {
            None
        };
        let (code, auth, upto) = {
            let mut handler = lock(&inner.book);
            handler.store_mut().refresh(&key)?;
            let since = handler.store().written();
            let known = handler.store().get(&key).and_then(|t| t.original.clone());
            match known {
                // A repeated advice gets its first answer again.
                Some(o) if advice => {
                    let code = String::from_utf8_lossy(&o.code).into_owned();
                    let auth = o.approved.then(|| auth_code(&key));
                    (code, auth, (since, handler.store().written()))
                }
                _ => {
                    let decision = match (pin_code, kind) {
                        (Some(c), _) => Decision::Decline(c),
                        (None, Kind::Sale | Kind::Refund) => match amount % 100 {
                            51 => Decision::Decline(*b"51"),
                            55 => Decision::Decline(*b"55"),
                            _ => Decision::Approve { auth_code: None },
                        },
                        (None, Kind::Void) => {
                            let store = handler.store();
                            let target = sale.as_ref().and_then(|s| {
                                let t = store.get(s)?;
                                Some((s, t, t.original.as_ref()?))
                            });
                            match target {
                                Some((s, t, o))
                                    if kind_of(o.txn_type) == Some(Kind::Sale)
                                        && t.standing()
                                        && !store.is_cancelled(s) =>
                                {
                                    if minor(o.amount) == i128::from(amount) {
                                        Decision::Approve { auth_code: None }
                                    } else {
                                        Decision::Decline(*b"64")
                                    }
                                }
                                _ => Decision::Decline(*b"25"),
                            }
                        }
                    };
                    let r =
                        handler.handle_original_cancelling(&canon, sale, move |_, _| decision)?;
                    let code = r.get(39).unwrap_or_else(|| "96".into());
                    let auth = (code == "00").then(|| auth_code(&key));
                    (code, auth, (since, handler.store().written()))
                }
            }
        };
        self.durable(upto).await?;
        tracing::debug!(mti = %msg.mti(), %stan, terminal = %msg.get(41).unwrap_or_default(), pan = %masked_pan(&pan), %kind, amount = %super::money::cents(i128::from(amount)), rc = %code, "host: financial");
        self.sealed(msg, &code, auth.as_deref(), mak)
    }

    async fn reversal(&self, msg: &Message, mak: &Key) -> Result<Bytes> {
        let inner = &self.inner;
        let Some((canon, key)) =
            de90_original(msg).and_then(|(stan, de7)| canonical(&inner.matching, msg, &stan, &de7))
        else {
            return self.reply(msg, "30", Some(mak));
        };
        let (code, auth, upto) = {
            let mut handler = lock(&inner.book);
            handler.store_mut().refresh(&key)?;
            let since = handler.store().written();
            let prior = handler.store().get(&key).cloned().unwrap_or_default();
            // DE 38 of the answer: the original's approval code, when the host had
            // approved it (tells the switch what its reconciliation must count).
            let auth = prior
                .original
                .as_ref()
                .filter(|o| o.approved)
                .map(|_| auth_code(&key));
            let r = handler.handle(&canon, |_, _| Decision::Decline(*b"12"))?;
            let decided = r.get(39).unwrap_or_else(|| "96".into());
            // The crate repeats its stored answer (`00`) to a repeated reversal and refuses
            // (`64`, `25`) a mismatched reversal of a declined original; host_sim has
            // always answered those `25` and `00`.
            let code = match &prior.original {
                Some(o) if o.approved && prior.reversal.is_some() => "25".to_string(),
                Some(o) if !o.approved => "00".to_string(),
                _ => decided,
            };
            tracing::debug!(mti = %msg.mti(), original = %key, rc = %code, "host: reversal");
            (code, auth, (since, handler.store().written()))
        };
        self.durable(upto).await?;
        self.sealed(msg, &code, auth.as_deref(), mak)
    }

    fn reconcile(&self, msg: &Message, mak: &Key) -> Result<Bytes> {
        let ours = recon(lock(&self.inner.book).store())?;
        let theirs = ReconTotals::read(msg)?;
        let code = ours.settlement_code(&theirs);
        let balanced = code == "1";
        if balanced {
            tracing::info!(net = %super::money::cents(ours.net()), "host: reconciliation in balance");
        } else {
            tracing::warn!(%ours, %theirs, "host: reconciliation out of balance");
        }
        let mut r = Message::response_to(msg)?;
        r.set(39, "00")?;
        r.set(66, code)?;
        ours.write(&mut r)?;
        Ok(self.inner.profile.seal(mak, &mut r)?)
    }
}

#[cfg(test)]
/// The answers host_sim gave before it used `isoswitch-reversal` (this sequence passed
/// against that version too), and its ledger, across a restart.
mod wire_tests {
    use super::*;
    use crate::codec::Mti;

    fn key() -> Key {
        Key::des_or_tdes(&[
            0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54,
            0x32, 0x10,
        ])
        .unwrap()
    }

    fn kek() -> Kek {
        crate::config::kek_from_hex(crate::config::SAMPLE_KEK).unwrap()
    }

    fn fin(
        h: &HostSim,
        mti: u16,
        stan: &str,
        pc: &str,
        amount: u64,
        de90: Option<&str>,
    ) -> Message {
        let d = h.inner.profile.dialect.clone();
        let mut m = Message::new(&d, Mti::from_u16(mti).unwrap());
        m.set(2, "6222020000001234").unwrap();
        m.set(3, pc).unwrap();
        m.set_number(4, amount).unwrap();
        m.set(7, "1125093000").unwrap();
        m.set(11, stan).unwrap();
        m.set(32, "12345678").unwrap();
        m.set(41, "TERM0001").unwrap();
        m.set(42, "MERCHANT0000001").unwrap();
        m.set(49, "156").unwrap();
        if let Some(v) = de90 {
            m.set(90, v).unwrap();
        }
        m
    }

    fn rev(h: &HostSim, mti: u16, stan: &str, of: &str, pc: &str, amount: u64) -> Message {
        let de90 = format!("0200{of}1125093000{:0>11}{:0>11}", "12345678", "12345678");
        let mut m = fin(h, mti, stan, pc, amount, Some(&de90));
        m.set(7, "1125093100").unwrap();
        m.set(42, "SWITCH000000001").unwrap();
        m
    }

    async fn go(h: &HostSim, m: Message) -> (String, bool) {
        let k = key();
        let b = match m.mti().as_u16() {
            200 | 220 | 221 => h.financial(&m, &k, &k).await.unwrap(),
            _ => h.reversal(&m, &k).await.unwrap(),
        };
        let r = Message::decode(&h.inner.profile.dialect, b).unwrap();
        (r.get(39).unwrap(), r.has(38))
    }

    /// One request: MTI, STAN, DE 3, amount, and the STAN its DE 90 names.
    type Step = (u16, &'static str, &'static str, u64, Option<&'static str>);

    async fn run(h: &HostSim, steps: &[(Step, &str)]) {
        for &((mti, stan, pc, amount, of), want) in steps {
            let m = match (mti, of) {
                (400 | 401, Some(of)) => rev(h, mti, stan, of, pc, amount),
                (_, of) => {
                    let de90 =
                        of.map(|o| format!("0200{o}1125093000{:0>11}{:0>11}", 12345678, 12345678));
                    fin(h, mti, stan, pc, amount, de90.as_deref())
                }
            };
            let (code, auth) = go(h, m).await;
            let got = format!("{code}{}", if auth { "+38" } else { "" });
            assert_eq!(got, want, "{mti} STAN {stan} (of {of:?})");
        }
    }

    #[tokio::test]
    async fn answers_and_ledger_are_those_of_the_pre_crate_host() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = HostSimConfig {
            zone_key: key(),
            kek: kek(),
            data_dir: dir.path().to_path_buf(),
            fsync: true,
        };
        let (sale, void, refund) = ("000000", "020000", "200000");
        let h = HostSim::open(&cfg).unwrap();
        run(
            &h,
            &[
                ((200, "000001", sale, 1000, None), "00+38"),
                ((200, "000001", sale, 1000, None), "94"),
                ((400, "000002", sale, 999, Some("000001")), "64+38"),
                ((400, "000003", sale, 1000, Some("000001")), "00+38"),
                ((401, "000004", sale, 1000, Some("000001")), "25+38"),
                ((400, "000005", sale, 500, Some("000009")), "00"),
                ((200, "000009", sale, 500, None), "12"),
                ((401, "000006", sale, 500, Some("000009")), "00"),
                ((200, "000010", sale, 151, None), "51"),
                ((400, "000011", sale, 999, Some("000010")), "00"),
                ((200, "000020", sale, 2000, None), "00+38"),
                ((200, "000021", void, 1999, Some("000020")), "64"),
                ((200, "000022", void, 2000, Some("000020")), "00+38"),
                ((200, "000023", void, 2000, Some("000020")), "25"),
                ((220, "000030", refund, 700, None), "00+38"),
                ((221, "000030", refund, 700, None), "00+38"),
                ((220, "000031", refund, 755, None), "55"),
            ],
        )
        .await;
        let s = h.summary().unwrap();
        assert_eq!(
            (
                s.total,
                s.transactions,
                s.approved,
                s.reversed,
                s.unknown_reversals
            ),
            (-700, 9, 4, 1, 1)
        );
        assert_eq!((s.recon.debits, s.recon.debit_reversals), (2, 2));
        assert_eq!((s.recon.credits, s.recon.credits_amount), (1, 700));
        drop(h);
        // After a restart: the void reversed (its sale stands again), voided again.
        let h = HostSim::open(&cfg).unwrap();
        run(
            &h,
            &[
                ((400, "000040", void, 2000, Some("000022")), "00+38"),
                ((200, "000041", void, 2000, Some("000020")), "00+38"),
                ((401, "000042", sale, 1000, Some("000001")), "25+38"),
                ((221, "000030", refund, 700, None), "00+38"),
            ],
        )
        .await;
        let s2 = h.summary().unwrap();
        assert_eq!(s2.total, -700);
        assert_eq!((s2.transactions, s2.reversed), (10, 2));
        assert_eq!((s2.recon.debits, s2.recon.debit_reversals), (2, 2));
        drop(h);
        assert_eq!(read_ledger(dir.path(), &cfg.kek).unwrap(), s2);
    }
}

#[cfg(test)]
/// The zone session survives a restart: the switch's upstream link (a `TerminalSession`
/// over the switch's identity, as `switchd` runs it) signs on, both sides store their
/// sealed snapshots in their data directories, both are dropped (the process killed),
/// and after reopening the directories the link's next MACed request is answered `00`
/// with a MAC the link verifies — without a new sign-on.
mod restart_tests {
    use super::*;
    use crate::codec::Mti;
    use crate::reversal::{ReversalError, UpstreamSave};
    use crate::session::counters::MemoryCounters;
    use crate::session::{Inbound, TerminalConfig, TerminalSession, TerminalState};
    use std::time::Instant;

    fn kek(b: u8) -> Kek {
        Kek::new(&Key::aes(&[b; 32]).unwrap()).unwrap()
    }

    fn cfg(dir: &Path, kek: Kek) -> HostSimConfig {
        HostSimConfig {
            zone_key: crate::config::zone_key_from_hex(crate::config::SAMPLE_ZONE_KEY).unwrap(),
            kek,
            data_dir: dir.to_path_buf(),
            fsync: true,
        }
    }

    /// The switch's end of the upstream link.
    fn link() -> TerminalSession<MemoryCounters> {
        let id = TerminalId::new(SWITCH_TID, SWITCH_MID).unwrap();
        TerminalSession::new(
            SessionProfile::iso87_binary().unwrap(),
            TerminalConfig::new(id),
            crate::config::zone_key_from_hex(crate::config::SAMPLE_ZONE_KEY).unwrap(),
            MemoryCounters::new(),
        )
        .unwrap()
    }

    fn sale(link: &TerminalSession<MemoryCounters>, stan: u32, amount: u64) -> Message {
        let mut m = Message::new(&link.profile().dialect, Mti::from_u16(200).unwrap());
        m.set(2, "6222020000001234").unwrap();
        m.set(3, "000000").unwrap();
        m.set_number(4, amount).unwrap();
        m.set(7, "1125093000").unwrap();
        m.set(11, format!("{stan:06}")).unwrap();
        m.set(32, "12345678").unwrap();
        m.set(49, "156").unwrap();
        m
    }

    /// One MACed sale through the host: DE 39 of the answer and whether the link
    /// verified its MAC.
    async fn send(
        h: &HostSim,
        link: &mut TerminalSession<MemoryCounters>,
        stan: u32,
        amount: u64,
    ) -> (String, bool) {
        let now = Instant::now();
        let sealed = link.seal_request(now, sale(link, stan, amount)).unwrap();
        let reply = h.answer(sealed.bytes.clone()).await.unwrap().unwrap();
        let code = Message::decode(&link.profile().dialect, reply.clone())
            .unwrap()
            .get(39)
            .unwrap();
        let verified = matches!(link.handle_message(now, reply), Ok(Inbound::Verified(_)));
        (code, verified)
    }

    #[tokio::test]
    async fn a_killed_host_restarts_with_the_zone_keys_and_accepts_the_next_maced_request() {
        let host_dir = tempfile::tempdir().unwrap();
        let switch_dir = tempfile::tempdir().unwrap();
        let h = HostSim::open(&cfg(host_dir.path(), kek(7))).unwrap();
        assert!(!h.switch_signed_on());
        let mut up = link();
        let now = Instant::now();
        let req = up.sign_on(now, local_now()).unwrap();
        let reply = h.answer(req).await.unwrap().expect("0810");
        assert!(matches!(
            up.handle_message(now, reply).unwrap(),
            Inbound::SignedOn { .. }
        ));
        assert!(h.switch_signed_on());
        // The switch keeps its end sealed in its own data directory.
        {
            let data = DataDir::open(switch_dir.path()).unwrap();
            let mut s = data.sessions("switch").unwrap();
            let sealed = up.export().seal(&kek(9)).unwrap();
            assert_eq!(
                s.save_upstream("upstream", &sealed, None).unwrap(),
                UpstreamSave::Saved
            );
        }
        assert_eq!(send(&h, &mut up, 1, 1000).await, ("00".into(), true));
        // A second host on the same directory is refused while this one runs.
        match HostSim::open(&cfg(host_dir.path(), kek(7))) {
            Err(SimError::Reversal(ReversalError::Locked { .. })) => {}
            other => panic!("second host on a locked directory: {other:?}"),
        }
        // The stored session is sealed: the zone MAK's bytes are not in the file.
        let mak = h
            .inner
            .session
            .lock()
            .unwrap()
            .working_keys(&h.inner.switch)
            .unwrap()
            .mak()
            .expose_secret();
        let file = std::fs::read(host_dir.path().join("host.sessions")).unwrap();
        assert!(!file.windows(mak.len()).any(|w| w == &mak[..]));

        // Killed: everything dropped, nothing shut down; the switch restarts too.
        drop(h);
        drop(up);
        let h = HostSim::open(&cfg(host_dir.path(), kek(7))).unwrap();
        assert!(h.switch_signed_on(), "zone session restored");
        let mut up = link();
        {
            let data = DataDir::open(switch_dir.path()).unwrap();
            let s = data.sessions("switch").unwrap();
            let snap = s
                .upstream("upstream")
                .unwrap()
                .unwrap()
                .open(&kek(9))
                .unwrap();
            up.restore(snap).unwrap();
        }
        assert_eq!(up.state(), TerminalState::Ready, "no sign-on");
        assert_eq!(send(&h, &mut up, 2, 2000).await, ("00".into(), true));
        // A repeat of the sale before the restart is caught by the store.
        assert_eq!(send(&h, &mut up, 1, 1000).await, ("94".into(), true));
        assert_eq!(h.summary().unwrap().total, 3000);
        drop(h);

        // The control: a host without the stored session answers the same link 77.
        let fresh = tempfile::tempdir().unwrap();
        let f = HostSim::open(&cfg(fresh.path(), kek(7))).unwrap();
        assert_eq!(send(&f, &mut up, 3, 3000).await.0, "77");
        drop(f);

        // Under another KEK neither the sealed store nor the stored session opens: a
        // clear error naming the file (the store is opened first).
        match HostSim::open(&cfg(host_dir.path(), kek(8))) {
            Err(e) => {
                let e = e.to_string();
                assert!(
                    (e.contains("host.store") || e.contains("host.sessions"))
                        && e.contains("does not open"),
                    "{e}"
                )
            }
            other => panic!("wrong KEK: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_damaged_store_is_an_error_naming_the_file_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let h = HostSim::open(&cfg(dir.path(), kek(7))).unwrap();
            let mut up = link();
            let now = Instant::now();
            let req = up.sign_on(now, local_now()).unwrap();
            let reply = h.answer(req).await.unwrap().unwrap();
            up.handle_message(now, reply).unwrap();
            for stan in 1..=3 {
                assert_eq!(send(&h, &mut up, stan, 1000).await.0, "00");
            }
        }
        let path = dir.path().join("host.store");
        let good = std::fs::read(&path).unwrap();
        // A torn tail (a crash mid-append): cut, the three sales kept.
        let mut torn = good.clone();
        torn.extend_from_slice(&[200, 0, 0, 0, 1, 2]);
        std::fs::write(&path, &torn).unwrap();
        let h = HostSim::open(&cfg(dir.path(), kek(7))).unwrap();
        assert_eq!(h.summary().unwrap().total, 3000);
        assert_eq!(h.inner.torn.len(), 1);
        drop(h);
        assert_eq!(std::fs::read(&path).unwrap(), good);
        // A flipped byte in the first record, valid ones after it: not a torn tail.
        let mut bad = good.clone();
        bad[20] ^= 0xFF;
        std::fs::write(&path, &bad).unwrap();
        match HostSim::open(&cfg(dir.path(), kek(7))) {
            Err(SimError::Reversal(ReversalError::Corrupt {
                path: p, offset, ..
            })) => {
                assert_eq!(p, path);
                assert_eq!(offset, 8, "the first record, after the magic");
            }
            other => panic!("damaged store: {other:?}"),
        }
        assert!(read_ledger(dir.path(), &kek(7)).is_err());
        // A host_sim data directory of the old layout is refused, naming the file.
        let old = tempfile::tempdir().unwrap();
        std::fs::write(old.path().join("host-voids.log"), b"").unwrap();
        match HostSim::open(&cfg(old.path(), kek(7))) {
            Err(SimError::Config(e)) => assert!(e.contains("host-voids.log"), "{e}"),
            other => panic!("old layout: {other:?}"),
        }
    }
}

// ---- Operations (issue 13): admin endpoint, TLS, graceful drain ----

impl HostSim {
    /// Serves on `listen` (over TLS with `--tls-cert`) with the admin endpoint
    /// (`--admin`; ready while the store is writable and the host is not draining) until
    /// SIGTERM/SIGINT, then drains: no new connections, requests being handled get
    /// `--drain-timeout` to finish, the store is synced.
    pub async fn serve_ops(
        &self,
        listen: &str,
        ops: &super::ops::ServerOps,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
        data_dir: &Path,
    ) -> Result<crate::net::DrainReport> {
        use std::sync::atomic::AtomicBool;
        let mut signals = super::ops::Signals::new();
        let tls = ops.server_tls()?;
        let secure = tls.is_some();
        let server = self.bind(listen, tls).await?;
        let control = server.control();
        let addr = server.local_addr();
        let serving = tokio::spawn(server.serve(std::future::pending::<()>()));
        tracing::info!(%addr, tls = secure, "host listening (iso87-binary, len2)");
        println!("host_sim listening on {addr}");
        let draining = Arc::new(AtomicBool::new(false));
        let admin = match (&ops.admin, metrics) {
            (Some(at), Some(metrics)) => {
                let (d, dir) = (draining.clone(), data_dir.to_path_buf());
                let admin = super::ops::Admin::start(
                    at,
                    super::ops::AdminHooks {
                        ready: Arc::new(move || {
                            if d.load(Ordering::Acquire) {
                                return Err("draining".into());
                            }
                            super::ops::store_writable(&dir)
                        }),
                        metrics,
                        reload: None,
                    },
                )
                .await?;
                println!("host_sim admin endpoint on {}", admin.addr);
                Some(admin)
            }
            _ => None,
        };
        while signals.next().await == super::ops::Signal::Reload {
            tracing::info!("SIGHUP: host_sim has nothing to reload");
        }
        draining.store(true, Ordering::Release);
        tracing::info!(timeout = ?ops.drain_timeout, "draining");
        let report = control.drain(ops.drain_timeout).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
        if let Some(h) = &self.inner.syncer {
            h.make_durable()?;
        }
        tracing::info!(
            completed = report.completed,
            aborted = report.aborted_handlers,
            "drained"
        );
        if let Some(a) = admin {
            a.stop().await;
        }
        Ok(report)
    }
}
