//! The host's idempotency store: what it knows about each transaction key (original
//! approved or declined, reversal answered) and the ledger, behind the
//! [`IdempotencyStore`] trait; [`MemoryStore`] and the durable [`FileStore`].
//!
//! Every decision is ONE [`StoreRecord`] that carries both the idempotency record and the
//! ledger effect, written with one CRC-framed append and fsync (the technique of
//! [`crate::record`]): a host killed at any point either has the record (and its effect)
//! or has neither, and the ledger is rebuilt by replaying the records.

use crate::error::{Result, ReversalError};
use crate::profile::{TxnInfo, TxnKey, TxnKind};
use crate::record::{self, Reader, RecordFile, Writer};
use crate::settlement::BatchTotals;
use isoswitch_codec::Mti;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::path::Path;

/// What the host decided about an original.
#[derive(Clone, PartialEq, Eq)]
pub struct OriginalState {
    /// Transaction type (DE 3 positions 1–2).
    pub txn_type: u8,
    /// Debit, credit or none.
    pub kind: TxnKind,
    /// Foreign card.
    pub foreign: bool,
    /// PAN.
    pub pan: String,
    /// Amount.
    pub amount: Decimal,
    /// DE 39 answered.
    pub code: [u8; 2],
    /// Whether it was approved (and so moved the ledger).
    pub approved: bool,
    /// The original this one cancels (a void names its sale), recorded with an
    /// approved original only: the named original counts as cancelled while this one
    /// stands — approved and not reversed ([`IdempotencyStore::is_cancelled`]).
    pub cancels: Option<TxnKey>,
    /// For a switch: the upstream original that carried this approval (its encoded
    /// message without PIN block, track data or MAC), so that a later terminal reversal
    /// can be reversed upstream after a restart too.
    pub upstream: Option<Vec<u8>>,
}

impl OriginalState {
    /// The decision `code` (`approved` or not) on a transaction described by `info`.
    pub fn decided(info: &TxnInfo, code: [u8; 2], approved: bool) -> Self {
        OriginalState {
            txn_type: info.txn_type,
            kind: info.kind,
            foreign: info.foreign,
            pan: info.pan.clone(),
            amount: info.amount,
            code,
            approved,
            cancels: None,
            upstream: None,
        }
    }
}

impl std::fmt::Debug for OriginalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginalState")
            .field("txn_type", &self.txn_type)
            .field("kind", &self.kind)
            .field("pan", &crate::profile::mask_pan(&self.pan))
            .field("amount", &self.amount)
            .field("code", &String::from_utf8_lossy(&self.code))
            .field("approved", &self.approved)
            .field("cancels", &self.cancels)
            .field("upstream", &self.upstream.as_ref().map(Vec::len))
            .finish()
    }
}

/// What the host answered to the reversal of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalState {
    /// DE 39 answered (repeats get the same).
    pub code: [u8; 2],
    /// The amount the reversal carried.
    pub amount: Decimal,
    /// Transaction type of the reversal.
    pub txn_type: u8,
    /// The ledger change it made (zero for a declined or unknown original).
    pub effect: Decimal,
}

/// An original admitted for forwarding ([`crate::ReversalHandler::admit`]) whose
/// decision is not known yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The request's MTI (its answer's is derived from it).
    pub mti: Mti,
    /// What it does to the cardholder.
    pub info: TxnInfo,
}

/// Everything known about one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredTxn {
    /// The original, if it was answered.
    pub original: Option<OriginalState>,
    /// The reversal, if one was answered.
    pub reversal: Option<ReversalState>,
    /// The original, while it is admitted and forwarded but not yet decided.
    pub admitted: Option<Admission>,
}

impl StoredTxn {
    /// The original was approved and is not reversed.
    pub fn standing(&self) -> bool {
        self.reversal.is_none() && self.original.as_ref().is_some_and(|o| o.approved)
    }

    /// Counts it into its batch's settlement `totals` if it stands (approved, not
    /// reversed): the one rule every store's [`IdempotencyStore::batch_totals`] applies.
    pub(crate) fn add_to(&self, totals: &mut BatchTotals) {
        if let (Some(o), None) = (&self.original, &self.reversal) {
            if o.approved {
                totals.add_parts(o.kind, o.foreign, o.amount);
            }
        }
    }
}

/// One durable decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRecord {
    /// An original was answered (approved → its effect is applied to the ledger).
    Original {
        /// The key.
        key: TxnKey,
        /// The decision.
        state: OriginalState,
    },
    /// A reversal was answered; `state.effect` is applied to the card of `pan`.
    Reversal {
        /// The key.
        key: TxnKey,
        /// PAN the effect applies to.
        pan: String,
        /// The answer.
        state: ReversalState,
    },
    /// An original was admitted for forwarding (durable before it is forwarded); its
    /// [`StoreRecord::Original`] follows with the decision. No ledger effect.
    Admitted {
        /// The key.
        key: TxnKey,
        /// The request.
        admission: Admission,
    },
}

/// Ledger totals: per card and overall (debits +, credits −, reversals undo).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    per_card: HashMap<String, Decimal>,
    total: Decimal,
}

impl Ledger {
    /// The overall total.
    pub fn total(&self) -> Decimal {
        self.total
    }

    /// One card's total (zero when unknown).
    pub fn card(&self, pan: &str) -> Decimal {
        self.per_card.get(pan).copied().unwrap_or(Decimal::ZERO)
    }

    /// Every card's total.
    pub fn cards(&self) -> impl Iterator<Item = (&str, Decimal)> {
        self.per_card.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The card's and the overall totals after `effect`, or an error when either
    /// overflows (amounts read from disk or a peer may be as large as the decoder allows).
    fn after(&self, pan: &str, effect: Decimal) -> Result<(Decimal, Decimal)> {
        let over = || ReversalError::bad("ledger total overflows");
        let card = exact_add(self.card(pan), effect).ok_or_else(over)?;
        let total = exact_add(self.total, effect).ok_or_else(over)?;
        Ok((card, total))
    }

    fn apply(&mut self, pan: &str, effect: Decimal) -> Result<()> {
        if effect.is_zero() {
            return Ok(());
        }
        let (card, total) = self.after(pan, effect)?;
        self.per_card.insert(pan.to_string(), card);
        self.total = total;
        Ok(())
    }
}

/// The host's durable memory of transactions; see the module docs.
pub trait IdempotencyStore {
    /// What is known about `key`.
    fn get(&self, key: &TxnKey) -> Option<&StoredTxn>;
    /// Makes `record` durable and applies it (state and ledger) — atomically.
    ///
    /// # Errors
    /// I/O errors: then nothing was applied.
    fn commit(&mut self, record: StoreRecord) -> Result<()>;
    /// The ledger.
    fn ledger(&self) -> &Ledger;
    /// Every key.
    fn entries(&self) -> Box<dyn Iterator<Item = (&TxnKey, &StoredTxn)> + '_>;

    /// Brings what is known about `key` up to date before the handler decides on it:
    /// a store shared by several nodes (a database) reads what another node decided
    /// since. The default (a store its process owns alone) has nothing to read.
    ///
    /// # Errors
    /// I/O or database errors: the handler then decides nothing.
    fn refresh(&mut self, key: &TxnKey) -> Result<()> {
        let _ = key;
        Ok(())
    }

    /// Reads the admissions still open that another node made (a shared store), so
    /// that [`crate::ReversalHandler::admitted`] lists them: a node that took over a dead
    /// node's upstream work completes that node's admissions with its outcomes. The
    /// default (a store its process owns alone) has nothing to read.
    ///
    /// # Errors
    /// I/O or database errors.
    fn refresh_open(&mut self) -> Result<()> {
        Ok(())
    }

    /// Group commit: stops syncing on every commit and returns a handle that makes the
    /// commits durable from outside the store's lock, with [`IdempotencyStore::written`]
    /// telling how far ([`crate::GroupSync`]). The caller must then wait for durability
    /// before it acts on a commit (answers or forwards). `None` (the default): every
    /// commit is durable when it returns, nothing to wait for.
    fn defer_sync(&mut self) -> Option<std::sync::Arc<dyn crate::Durability>> {
        None
    }

    /// After the deferred commits made between the write positions `since` and `upto`
    /// ([`IdempotencyStore::written`] before and after a decision) were made durable
    /// ([`IdempotencyStore::defer_sync`]): whether the store kept them. A store shared by
    /// several nodes writes a group of decisions in one transaction and refuses the group
    /// when one was made on a stale view (another node decided on its key meanwhile):
    /// [`ReversalError::DecidedElsewhere`], the caller decides again (on what is stored
    /// now) before it acts. [`ReversalError::Database`]: the group's write failed, the
    /// decision is not known to be stored. The default (a store that never refuses a
    /// commit it accepted) keeps everything. `since == upto`: the decision committed
    /// nothing, nothing to report.
    ///
    /// # Errors
    /// As above.
    fn kept(&mut self, since: u64, upto: u64) -> Result<()> {
        let _ = (since, upto);
        Ok(())
    }

    /// Reads what is stored about `key` now, whatever the store's mode: unlike
    /// [`IdempotencyStore::refresh`], which a store with deferred commits may skip
    /// (its group write refuses a decision made on a stale view), this always reads.
    /// The default is [`IdempotencyStore::refresh`].
    ///
    /// # Errors
    /// I/O or database errors.
    fn reload(&mut self, key: &TxnKey) -> Result<()> {
        self.refresh(key)
    }

    /// Bytes written so far (grows with every commit), for [`crate::GroupSync`]; 0 for a
    /// store without deferred syncs.
    fn written(&self) -> u64 {
        0
    }

    /// Whether `key`'s original is cancelled: an original that names it in
    /// [`OriginalState::cancels`] stands (approved and not reversed). The default scans
    /// every entry; [`MemoryStore`] and [`FileStore`] keep an index.
    fn is_cancelled(&self, key: &TxnKey) -> bool {
        self.entries().any(|(_, v)| {
            v.standing() && v.original.as_ref().and_then(|o| o.cancels.as_ref()) == Some(key)
        })
    }

    /// The host's totals of one terminal batch: approved originals not reversed.
    fn batch_totals(&self, terminal: &str, merchant: &str, batch: u32) -> BatchTotals {
        let mut t = BatchTotals::default();
        for (k, v) in self.entries() {
            if k.terminal != terminal || k.merchant != merchant || k.batch != batch {
                continue;
            }
            v.add_to(&mut t);
        }
        t
    }
}

impl<S: IdempotencyStore + ?Sized> IdempotencyStore for Box<S> {
    fn get(&self, key: &TxnKey) -> Option<&StoredTxn> {
        (**self).get(key)
    }
    fn commit(&mut self, record: StoreRecord) -> Result<()> {
        (**self).commit(record)
    }
    fn ledger(&self) -> &Ledger {
        (**self).ledger()
    }
    fn entries(&self) -> Box<dyn Iterator<Item = (&TxnKey, &StoredTxn)> + '_> {
        (**self).entries()
    }
    fn refresh(&mut self, key: &TxnKey) -> Result<()> {
        (**self).refresh(key)
    }
    fn refresh_open(&mut self) -> Result<()> {
        (**self).refresh_open()
    }
    fn defer_sync(&mut self) -> Option<std::sync::Arc<dyn crate::Durability>> {
        (**self).defer_sync()
    }
    fn kept(&mut self, since: u64, upto: u64) -> Result<()> {
        (**self).kept(since, upto)
    }
    fn reload(&mut self, key: &TxnKey) -> Result<()> {
        (**self).reload(key)
    }
    fn written(&self) -> u64 {
        (**self).written()
    }
    fn is_cancelled(&self, key: &TxnKey) -> bool {
        (**self).is_cancelled(key)
    }
    fn batch_totals(&self, terminal: &str, merchant: &str, batch: u32) -> BatchTotals {
        (**self).batch_totals(terminal, merchant, batch)
    }
}

/// The in-memory state both stores share.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    map: HashMap<TxnKey, StoredTxn>,
    ledger: Ledger,
    /// Cancelled key → the originals that name it in [`OriginalState::cancels`].
    cancellers: HashMap<TxnKey, Vec<TxnKey>>,
    /// The PAN each reversal record named (its ledger effect went to that card), so
    /// that [`MemoryStore::records`] writes it back as it was, even with no original or
    /// an original naming another card (a damaged or crafted store: found by the
    /// `store_replay` fuzz target, where compaction moved amounts between cards).
    reversal_pans: HashMap<TxnKey, String>,
    /// Keys whose original was applied after their reversal (its effect then counts the
    /// reversal): [`MemoryStore::records`] keeps that order.
    reversed_first: std::collections::HashSet<TxnKey>,
    /// Terminal batch (DE 41, DE 42, batch number) → the STANs of its keys, in the order
    /// they were first stored: a settlement reads its batch, not every entry of the day
    /// (a thousand terminals settling against a store of a day's transactions each
    /// walked all of them, under the lock every request takes).
    batches: HashMap<(String, String, u32), Vec<u32>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ledger effect of `rec` on the card it names, given this state (a database
    /// store writes it beside the record, in the same transaction).
    pub fn effect_of<'r>(&self, rec: &'r StoreRecord) -> (&'r str, Decimal) {
        match rec {
            StoreRecord::Original { key, state } => {
                // An original approved after its reversal was answered (admitted, then
                // reversed by the terminal while forwarded) is reversed in effect.
                let reversed = self.map.get(key).is_some_and(|k| k.reversal.is_some());
                let effect = if state.approved && !reversed {
                    state.kind.effect(state.amount)
                } else {
                    Decimal::ZERO
                };
                (&state.pan, effect)
            }
            StoreRecord::Reversal { pan, state, .. } => (pan, state.effect),
            StoreRecord::Admitted { admission, .. } => (&admission.info.pan, Decimal::ZERO),
        }
    }

    /// Whether `rec` can be applied (its ledger effect does not overflow).
    ///
    /// # Errors
    /// [`ReversalError::BadRecord`] when it would overflow.
    pub fn check(&self, rec: &StoreRecord) -> Result<()> {
        let (pan, effect) = self.effect_of(rec);
        self.ledger.after(pan, effect).map(|_| ())
    }

    /// Applies `rec` (state and ledger), or nothing when its effect overflows (what a
    /// store replays at open; [`IdempotencyStore::commit`] makes it durable first).
    ///
    /// # Errors
    /// [`ReversalError::BadRecord`] when its effect overflows.
    pub fn apply(&mut self, rec: StoreRecord) -> Result<()> {
        let (pan, effect) = self.effect_of(&rec);
        self.ledger.apply(pan, effect)?;
        match rec {
            StoreRecord::Original { key, state } => {
                if let Some(c) = &state.cancels {
                    self.cancellers
                        .entry(c.clone())
                        .or_default()
                        .push(key.clone());
                }
                let k = slot(&mut self.map, &mut self.batches, key.clone());
                if k.reversal.is_some() {
                    self.reversed_first.insert(key);
                }
                k.admitted = None;
                k.original = Some(state);
            }
            StoreRecord::Reversal { key, state, pan } => {
                self.reversal_pans.insert(key.clone(), pan);
                slot(&mut self.map, &mut self.batches, key).reversal = Some(state);
            }
            StoreRecord::Admitted { key, admission } => {
                slot(&mut self.map, &mut self.batches, key).admitted = Some(admission);
            }
        }
        Ok(())
    }

    /// The records that rebuild this state (for compaction).
    pub fn records(&self) -> Vec<StoreRecord> {
        let mut out = Vec::with_capacity(self.map.len());
        for (k, v) in &self.map {
            if let Some(a) = &v.admitted {
                out.push(StoreRecord::Admitted {
                    key: k.clone(),
                    admission: a.clone(),
                });
            }
            let original = v.original.as_ref().map(|o| StoreRecord::Original {
                key: k.clone(),
                state: o.clone(),
            });
            let reversal = v.reversal.as_ref().map(|r| StoreRecord::Reversal {
                key: k.clone(),
                pan: self
                    .reversal_pans
                    .get(k)
                    .cloned()
                    .or_else(|| v.original.as_ref().map(|o| o.pan.clone()))
                    .unwrap_or_default(),
                state: r.clone(),
            });
            // In the order they were applied: an original's effect depends on whether
            // its reversal came first.
            if self.reversed_first.contains(k) {
                out.extend(reversal);
                out.extend(original);
            } else {
                out.extend(original);
                out.extend(reversal);
            }
        }
        out
    }
}

/// `key`'s entry in `map`, made (and noted in its batch) if it is new.
fn slot<'m>(
    map: &'m mut HashMap<TxnKey, StoredTxn>,
    batches: &mut HashMap<(String, String, u32), Vec<u32>>,
    key: TxnKey,
) -> &'m mut StoredTxn {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            let k = v.key();
            batches
                .entry((k.terminal.clone(), k.merchant.clone(), k.batch))
                .or_default()
                .push(k.stan);
            v.insert(StoredTxn::default())
        }
    }
}

impl IdempotencyStore for MemoryStore {
    fn get(&self, key: &TxnKey) -> Option<&StoredTxn> {
        self.map.get(key)
    }
    fn commit(&mut self, record: StoreRecord) -> Result<()> {
        self.apply(record)
    }
    fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    fn entries(&self) -> Box<dyn Iterator<Item = (&TxnKey, &StoredTxn)> + '_> {
        Box::new(self.map.iter())
    }
    fn is_cancelled(&self, key: &TxnKey) -> bool {
        self.cancellers.get(key).is_some_and(|cs| {
            cs.iter()
                .any(|c| self.map.get(c).is_some_and(StoredTxn::standing))
        })
    }
    /// From the batch's own keys (an index), not a walk of every entry.
    fn batch_totals(&self, terminal: &str, merchant: &str, batch: u32) -> BatchTotals {
        let mut t = BatchTotals::default();
        let id = (terminal.to_string(), merchant.to_string(), batch);
        let Some(stans) = self.batches.get(&id) else {
            return t;
        };
        let (terminal, merchant, batch) = id;
        let mut key = TxnKey {
            terminal,
            merchant,
            batch,
            stan: 0,
        };
        for &stan in stans {
            key.stan = stan;
            if let Some(v) = self.map.get(&key) {
                v.add_to(&mut t);
            }
        }
        t
    }
}

const T_ORIGINAL: u8 = 1;
const T_REVERSAL: u8 = 2;
const T_ADMITTED: u8 = 3;
/// An original that cancels another: [`T_ORIGINAL`]'s fields, then the cancelled key.
const T_ORIGINAL_CANCELLING: u8 = 4;
/// An original forwarded upstream: [`T_ORIGINAL`]'s fields, then the upstream message.
const T_ORIGINAL_FORWARDED: u8 = 5;

fn write_key(w: &mut Writer<'_>, k: &TxnKey) {
    w.str(&k.terminal).str(&k.merchant).u32(k.batch).u32(k.stan);
}

fn read_key(r: &mut Reader<'_>) -> Result<TxnKey> {
    Ok(TxnKey {
        terminal: r.str()?.to_string(),
        merchant: r.str()?.to_string(),
        batch: r.u32()?,
        stan: r.u32()?,
    })
}

impl StoreRecord {
    /// Appends the payload encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        match self {
            StoreRecord::Original { key, state } => {
                w.u8(match (&state.cancels, &state.upstream) {
                    (Some(_), _) => T_ORIGINAL_CANCELLING,
                    (None, Some(_)) => T_ORIGINAL_FORWARDED,
                    (None, None) => T_ORIGINAL,
                });
                write_key(&mut w, key);
                w.u8(state.txn_type)
                    .u8(state.kind.to_u8())
                    .u8(u8::from(state.foreign))
                    .str(&state.pan)
                    .decimal(state.amount)
                    .u8(state.code[0])
                    .u8(state.code[1])
                    .u8(u8::from(state.approved));
                match (&state.cancels, &state.upstream) {
                    (Some(c), _) => {
                        write_key(&mut w, c);
                    }
                    (None, Some(u)) => {
                        w.bytes(u);
                    }
                    (None, None) => {}
                }
            }
            StoreRecord::Reversal { key, pan, state } => {
                w.u8(T_REVERSAL);
                write_key(&mut w, key);
                w.str(pan)
                    .u8(state.code[0])
                    .u8(state.code[1])
                    .decimal(state.amount)
                    .u8(state.txn_type)
                    .decimal(state.effect);
            }
            StoreRecord::Admitted { key, admission } => {
                w.u8(T_ADMITTED);
                write_key(&mut w, key);
                let [a, b, c, d] = *admission.mti.digits();
                w.u8(a).u8(b).u8(c).u8(d);
                admission.info.write(&mut w);
            }
        }
    }

    /// Parses a payload written by [`StoreRecord::encode`] (never panics).
    ///
    /// # Errors
    /// [`ReversalError::BadRecord`].
    pub fn decode(payload: &[u8]) -> Result<StoreRecord> {
        let mut r = Reader::new(payload);
        let rec = match r.u8()? {
            t @ (T_ORIGINAL | T_ORIGINAL_CANCELLING | T_ORIGINAL_FORWARDED) => {
                let key = read_key(&mut r)?;
                let txn_type = r.u8()?;
                let kind = TxnKind::from_u8(r.u8()?)?;
                let foreign = r.u8()? != 0;
                let pan = r.str()?.to_string();
                let amount = r.decimal()?;
                let code = [r.u8()?, r.u8()?];
                let approved = r.u8()? != 0;
                let cancels = if t == T_ORIGINAL_CANCELLING {
                    Some(read_key(&mut r)?)
                } else {
                    None
                };
                let upstream = if t == T_ORIGINAL_FORWARDED {
                    Some(r.bytes()?.to_vec())
                } else {
                    None
                };
                StoreRecord::Original {
                    key,
                    state: OriginalState {
                        txn_type,
                        kind,
                        foreign,
                        pan,
                        amount,
                        code,
                        approved,
                        cancels,
                        upstream,
                    },
                }
            }
            T_REVERSAL => {
                let key = read_key(&mut r)?;
                let pan = r.str()?.to_string();
                let code = [r.u8()?, r.u8()?];
                let amount = r.decimal()?;
                let txn_type = r.u8()?;
                let effect = r.decimal()?;
                StoreRecord::Reversal {
                    key,
                    pan,
                    state: ReversalState {
                        code,
                        amount,
                        txn_type,
                        effect,
                    },
                }
            }
            T_ADMITTED => {
                let key = read_key(&mut r)?;
                let mti = Mti::new([r.u8()?, r.u8()?, r.u8()?, r.u8()?])
                    .map_err(|_| ReversalError::bad("admitted MTI is not four digits"))?;
                let info = TxnInfo::read(&mut r)?;
                StoreRecord::Admitted {
                    key,
                    admission: Admission { mti, info },
                }
            }
            _ => return Err(ReversalError::bad("unknown store record type")),
        };
        r.finish()?;
        Ok(rec)
    }
}

/// The durable store: an append-only file of CRC-framed [`StoreRecord`]s, fsynced per
/// commit, replayed on open (torn tail truncated).
#[derive(Debug)]
pub struct FileStore {
    state: MemoryStore,
    file: RecordFile,
    scratch: Vec<u8>,
    torn: Option<record::Torn>,
}

impl FileStore {
    /// Opens or creates the store at `path` and replays it.
    ///
    /// # Errors
    /// I/O errors, bad magic, a CRC-valid record that does not parse or whose ledger
    /// effect overflows ([`ReversalError::BadRecord`] with its offset; never a panic).
    pub fn open(path: impl AsRef<Path>) -> Result<FileStore> {
        FileStore::open_sealed(path, None)
    }

    /// As [`FileStore::open`], its records sealed under `seal` when given (they carry
    /// the PAN: see [`crate::seal`]; a clear store is migrated).
    ///
    /// # Errors
    /// As [`FileStore::open`], and [`ReversalError::SealedFile`] for a sealed store
    /// opened without keys.
    pub fn open_sealed(
        path: impl AsRef<Path>,
        seal: Option<std::sync::Arc<crate::seal::DataKeys>>,
    ) -> Result<FileStore> {
        let mut state = MemoryStore::new();
        let (file, torn) =
            RecordFile::open_with(path, seal, |_, p| state.apply(StoreRecord::decode(p)?))?;
        Ok(FileStore {
            state,
            file,
            scratch: Vec::new(),
            torn,
        })
    }

    /// The torn tail that was truncated on open, if any.
    pub fn torn_tail(&self) -> Option<record::Torn> {
        self.torn
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Whether [`IdempotencyStore::commit`] fsyncs before it returns (the default).
    ///
    /// Off, a commit is one `write` — it survives the death of the process but not a
    /// power loss — and the caller must make it durable with [`FileStore::sync`] or a
    /// [`FileStore::sync_handle`] **before** it sends the answer: that lets many
    /// concurrent decisions share one fsync (group commit) outside the store's lock.
    pub fn set_sync_on_commit(&mut self, on: bool) {
        self.file.set_sync_on_append(on);
    }

    /// Bytes written to the file so far (grows with every commit): a caller that syncs
    /// through a [`FileStore::sync_handle`] can tell whether a commit is covered by a
    /// sync that started after it.
    pub fn written(&self) -> u64 {
        self.file.len()
    }

    /// `fdatasync` of every commit so far.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&self) -> Result<()> {
        self.file.sync()
    }

    /// A handle that syncs the store's file from another thread (see
    /// [`record::SyncHandle`]); take it after [`FileStore::compact`].
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync_handle(&self) -> Result<record::SyncHandle> {
        self.file.sync_handle()
    }

    /// Rewrites the file with one record per decision (atomic).
    ///
    /// # Errors
    /// I/O errors.
    pub fn compact(&mut self) -> Result<()> {
        let mut framed = Vec::new();
        let mut p = Vec::new();
        for r in self.state.records() {
            p.clear();
            r.encode(&mut p);
            record::frame(&p, &mut framed)?;
        }
        self.file.rewrite(&framed)
    }
}

impl IdempotencyStore for FileStore {
    fn get(&self, key: &TxnKey) -> Option<&StoredTxn> {
        self.state.get(key)
    }
    fn commit(&mut self, rec: StoreRecord) -> Result<()> {
        // Refused before it is written: a record on disk must always replay.
        self.state.check(&rec)?;
        self.scratch.clear();
        rec.encode(&mut self.scratch);
        let payload = std::mem::take(&mut self.scratch);
        let r = self.file.append_with(|out| record::frame(&payload, out));
        self.scratch = payload;
        r?;
        self.state.apply(rec)
    }
    fn ledger(&self) -> &Ledger {
        self.state.ledger()
    }
    fn entries(&self) -> Box<dyn Iterator<Item = (&TxnKey, &StoredTxn)> + '_> {
        self.state.entries()
    }
    fn is_cancelled(&self, key: &TxnKey) -> bool {
        self.state.is_cancelled(key)
    }
    fn batch_totals(&self, terminal: &str, merchant: &str, batch: u32) -> BatchTotals {
        self.state.batch_totals(terminal, merchant, batch)
    }
    fn defer_sync(&mut self) -> Option<std::sync::Arc<dyn crate::Durability>> {
        self.set_sync_on_commit(false);
        let h = self.sync_handle().ok()?;
        Some(std::sync::Arc::new(h))
    }
    fn written(&self) -> u64 {
        FileStore::written(self)
    }
}

/// `a + b` when it is exact: `None` when it overflows, and when the sum would only fit
/// rounded (near `Decimal::MAX` a sum loses its last digits — cents a ledger cannot
/// lose, and the same records summed in another order would disagree). A sum with a
/// zero, or a zero sum, is exact.
fn exact_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    if a.is_zero() || b.is_zero() {
        return a.checked_add(b);
    }
    let r = a.checked_add(b)?;
    (r.is_zero() || r.scale() >= a.scale().max(b.scale())).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::exact_add;

    #[test]
    fn ledger_sums_are_exact_or_refused() {
        let d = |t: &str| Decimal::from_str_exact(t).unwrap();
        let big = d("-792281625142643375935177339.36");
        assert_eq!(
            exact_add(big, d("-0.04")),
            Some(d("-792281625142643375935177339.40"))
        );
        // A thousandth more would be rounded away: refused.
        assert_eq!(exact_add(big, d("-0.001")), None);
        assert_eq!(exact_add(Decimal::MAX, Decimal::ONE), None);
        assert_eq!(exact_add(d("10.50"), d("-2.5")), Some(d("8.00")));
        assert_eq!(exact_add(d("0.00"), d("0")), Some(Decimal::ZERO));
        assert_eq!(exact_add(d("0"), d("12.34")), Some(d("12.34")));
        assert_eq!(exact_add(d("10.50"), d("-10.50")), Some(Decimal::ZERO));
    }

    use super::*;

    fn key(stan: u32) -> TxnKey {
        TxnKey {
            terminal: "TERM0001".into(),
            merchant: "MERCHANT0000001".into(),
            batch: 1,
            stan,
        }
    }

    fn huge(stan: u32) -> StoreRecord {
        StoreRecord::Original {
            key: key(stan),
            state: OriginalState {
                txn_type: 0,
                kind: TxnKind::Debit,
                foreign: false,
                pan: "6222021234567890".into(),
                // The largest amount the record decoder accepts.
                amount: Decimal::MAX,
                code: *b"00",
                approved: true,
                cancels: None,
                upstream: None,
            },
        }
    }

    #[test]
    fn two_records_with_the_largest_effect_make_open_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.store");
        {
            let (mut f, _) = RecordFile::open(&path, |_, _| Ok(())).unwrap();
            for stan in [1, 2] {
                let mut p = Vec::new();
                huge(stan).encode(&mut p);
                assert_eq!(StoreRecord::decode(&p).unwrap(), huge(stan));
                f.append_with(|out| record::frame(&p, out)).unwrap();
            }
        }
        match FileStore::open(&path) {
            Err(ReversalError::Corrupt { offset, what, path }) => {
                assert!(offset > 0, "the second record's offset");
                assert!(what.contains("overflow"), "{what}");
                assert!(path.ends_with("host.store"), "{path:?}");
            }
            other => panic!("{other:?}"),
        }
        // A live commit that would overflow is refused before it is written.
        let path2 = dir.path().join("live.store");
        let mut s = FileStore::open(&path2).unwrap();
        s.commit(huge(1)).unwrap();
        let written = s.written();
        assert!(s.commit(huge(2)).is_err());
        assert_eq!(s.written(), written);
        drop(s);
        assert_eq!(
            FileStore::open(&path2).unwrap().ledger().total(),
            Decimal::MAX
        );
    }

    #[test]
    fn admitted_records_round_trip_and_are_cleared_by_the_decision() {
        let admitted = StoreRecord::Admitted {
            key: key(5),
            admission: Admission {
                mti: Mti::from_u16(200).unwrap(),
                info: TxnInfo {
                    kind: TxnKind::Debit,
                    foreign: false,
                    txn_type: 0,
                    amount: Decimal::new(1000, 2),
                    pan: "6222021234567890".into(),
                },
            },
        };
        let mut p = Vec::new();
        admitted.encode(&mut p);
        assert_eq!(StoreRecord::decode(&p).unwrap(), admitted);
        for cut in 0..p.len() {
            assert!(StoreRecord::decode(&p[..cut]).is_err());
        }
        let mut m = MemoryStore::new();
        m.commit(admitted.clone()).unwrap();
        assert!(m.get(&key(5)).unwrap().admitted.is_some());
        assert_eq!(m.records(), vec![admitted]);
        let mut decided = huge(5);
        if let StoreRecord::Original { state, .. } = &mut decided {
            state.amount = Decimal::new(1000, 2);
        }
        m.commit(decided).unwrap();
        assert!(m.get(&key(5)).unwrap().admitted.is_none());
        assert_eq!(m.ledger().total(), Decimal::new(1000, 2));
    }
}

#[cfg(test)]
mod batch_index_tests {
    use super::*;
    use proptest::prelude::*;

    /// What the trait's default computes: a walk of every entry.
    fn scanned(
        s: &dyn IdempotencyStore,
        terminal: &str,
        merchant: &str,
        batch: u32,
    ) -> BatchTotals {
        let mut t = BatchTotals::default();
        for (k, v) in s.entries() {
            if (k.terminal.as_str(), k.merchant.as_str(), k.batch) != (terminal, merchant, batch) {
                continue;
            }
            if let (Some(o), None) = (&v.original, &v.reversal) {
                if o.approved {
                    t.add_parts(o.kind, o.foreign, o.amount);
                }
            }
        }
        t
    }

    fn key(t: u8, m: u8, b: u8, stan: u16) -> TxnKey {
        TxnKey {
            terminal: format!("T{t:07}"),
            merchant: format!("M{m:014}"),
            batch: u32::from(b),
            stan: u32::from(stan),
        }
    }

    /// ((terminal, merchant, batch, stan), what, amount in cents, foreign, credit): what
    /// is 0 an approved original, 1 a declined one, 2 a reversal, 3 an admission.
    fn record(
        ((t, m, b, stan), what, cents, foreign, credit): ((u8, u8, u8, u16), u8, u32, bool, bool),
    ) -> StoreRecord {
        let key = key(t, m, b, stan);
        let amount = Decimal::new(i64::from(cents), 2);
        let kind = if credit {
            TxnKind::Credit
        } else {
            TxnKind::Debit
        };
        match what {
            0 | 1 => StoreRecord::Original {
                key,
                state: OriginalState {
                    txn_type: 0,
                    kind,
                    foreign,
                    pan: "6222021234567890".into(),
                    amount,
                    code: if what == 0 { *b"00" } else { *b"51" },
                    approved: what == 0,
                    cancels: None,
                    upstream: None,
                },
            },
            2 => StoreRecord::Reversal {
                key,
                state: ReversalState {
                    code: *b"00",
                    amount,
                    txn_type: 0,
                    effect: Decimal::ZERO,
                },
                pan: "6222021234567890".into(),
            },
            _ => StoreRecord::Admitted {
                key,
                admission: Admission {
                    mti: "0200".parse().unwrap(),
                    info: TxnInfo {
                        txn_type: 0,
                        kind,
                        foreign,
                        pan: "6222021234567890".into(),
                        amount,
                    },
                },
            },
        }
    }

    proptest! {
        /// Settlement totals read through the batch index are the walk of every entry's,
        /// for every batch, in memory and in a file store reopened from its records.
        #[test]
        fn batch_totals_from_the_index_are_the_walk_of_every_entry(
            recs in proptest::collection::vec(
                ((0u8..4, 0u8..2, 0u8..3, 0u16..40), 0u8..4, 0u32..100_000, any::<bool>(), any::<bool>()),
                0..200,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("h.store");
            let mut mem = MemoryStore::new();
            {
                let mut file = FileStore::open(&path).unwrap();
                for r in recs {
                    let r = record(r);
                    // A record the state refuses (an effect that does not fit) is
                    // refused by both alike.
                    let a = mem.commit(r.clone()).is_ok();
                    prop_assert_eq!(a, file.commit(r).is_ok());
                }
            }
            let file = FileStore::open(&path).unwrap();
            // Every terminal with every merchant (a terminal's batch under another
            // merchant is another batch), one of each beyond those drawn.
            for t in 0..5u8 {
                for m in 0..3u8 {
                    for b in 0..4u8 {
                        let k = key(t, m, b, 0);
                        let want = scanned(&mem, &k.terminal, &k.merchant, k.batch);
                        prop_assert_eq!(mem.batch_totals(&k.terminal, &k.merchant, k.batch), want);
                        prop_assert_eq!(file.batch_totals(&k.terminal, &k.merchant, k.batch), want);
                        prop_assert_eq!(scanned(&file, &k.terminal, &k.merchant, k.batch), want);
                    }
                }
            }
        }
    }
}
