//! [`PgIdempotency`]: the host's decisions and ledger in `host_decision` and
//! `host_ledger`, shared by every node that opens the same part.
//!
//! No PAN at rest in clear: a decision's payload ([`StoreRecord::encode`]) is sealed
//! under the store's data keys, and a card's ledger row is keyed by its keyed hash
//! ([`isoswitch_reversal::seal::DataKeys::pan_hash`]).
//!
//! A decision is one statement in one transaction (its requests pipelined: one round
//! trip), after a per-key advisory lock: `INSERT … ON CONFLICT DO NOTHING`
//! of the record under its key and kind, and — only when that row went in — the
//! ledger effect on the card's `host_ledger` row. A second decision of the same kind
//! on the same key, from this node or another, changes nothing and is reported as
//! [`ReversalError::DecidedElsewhere`] after the stored decision has been read back:
//! the repeat of the request then gets the first answer. The handler's view is a
//! local cache (replayed at open, like the file store's) that
//! [`IdempotencyStore::refresh`] brings up to date with other nodes' decisions on a
//! key before each decision.

use crate::error::PgError;
use crate::store::{Claim, Inner};
use deadpool_postgres::Pool;
use isoswitch_reversal::store::{Ledger, MemoryStore, StoredTxn};
use isoswitch_reversal::{
    BatchTotals, Durability, IdempotencyStore, ReversalError, StoreRecord, TxnKey,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const KIND_ORIGINAL: i16 = 1;
const KIND_REVERSAL: i16 = 2;
const KIND_ADMITTED: i16 = 3;

fn key_and_kind(rec: &StoreRecord) -> (&TxnKey, i16) {
    match rec {
        StoreRecord::Original { key, .. } => (key, KIND_ORIGINAL),
        StoreRecord::Reversal { key, .. } => (key, KIND_REVERSAL),
        StoreRecord::Admitted { key, .. } => (key, KIND_ADMITTED),
    }
}

/// Whether the cache already holds a record of `kind` for its key.
fn known(state: &MemoryStore, key: &TxnKey, kind: i16) -> bool {
    let Some(t) = state.get(key) else {
        return false;
    };
    match kind {
        KIND_ORIGINAL => t.original.is_some(),
        KIND_REVERSAL => t.reversal.is_some(),
        // An admission is cleared by its decision.
        _ => t.admitted.is_some() || t.original.is_some(),
    }
}

/// The shared idempotency store; see the module docs.
#[derive(Debug)]
pub struct PgIdempotency {
    inner: Arc<Inner>,
    part: String,
    state: MemoryStore,
    scratch: Vec<u8>,
    /// `Some` once [`IdempotencyStore::defer_sync`] was called: commits queue their rows
    /// here and a group writes them.
    deferred: Option<Arc<Deferred>>,
    _claim: Claim,
}

/// A decision row opened and decoded.
fn decode(inner: &Inner, table_row: usize, sealed: &[u8]) -> Result<StoreRecord, PgError> {
    let payload = inner.unseal("host_decision", format_args!("row {table_row}"), sealed)?;
    StoreRecord::decode(&payload).map_err(|e| PgError::BadRow {
        table: "host_decision",
        what: format!("row {table_row}: {e}"),
    })
}

/// Every decision of `part`, replayed in the order they were made.
fn read_state(inner: &Inner, part: &str) -> Result<MemoryStore, ReversalError> {
    let p = part.to_string();
    let rows = inner
        .db
        .call(|pool| {
            crate::db::payloads_by_seq(
                pool,
                "SELECT seq, payload FROM host_decision WHERE part = $1",
                p,
            )
        })
        .map_err(inner.err("read the decisions"))?;
    let mut state = MemoryStore::new();
    for (i, payload) in rows.iter().enumerate() {
        let rec = decode(inner, i, payload).map_err(inner.err("read the decisions"))?;
        state.apply(rec)?;
    }
    Ok(state)
}

/// One decision as it is written: its sealed row, its ledger effect, the per-key lock,
/// and what it was made on (whether an original, a reversal was known).
#[derive(Debug)]
struct Row {
    key: TxnKey,
    kind: i16,
    lock: i64,
    payload: Vec<u8>,
    pan_hash: Vec<u8>,
    effect: String,
    moves: bool,
    known_original: bool,
    known_reversal: bool,
}

/// The SQLSTATE `isoswitch_refuse_group` raises (migration 3).
const GROUP_REFUSED: &str = "IS001";

/// A group of decisions in one statement: each row goes in unless a decision of its key
/// and kind is stored already (`ON CONFLICT`), or one of the other kind was stored that
/// it was not made on (the original approved elsewhere while this node recorded the
/// terminal's reversal); the ledger rows move by the sum of the written rows' effects per
/// card. If any row stays out, `isoswitch_refuse_group` aborts the statement: all or
/// nothing. What is stored on each row's key is read by a lateral aggregate, one
/// primary-key range per row: written as `NOT EXISTS` the planner made it an anti-join
/// or a hashed subplan over every decision of the part, per group.
const GROUP_SQL: &str = "WITH i AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::int4[], $5::int4[], $6::int2[],
                         $7::bytea[], $8::bytea[], $9::text[], $10::bool[], $11::bool[],
                         $12::bool[])
      WITH ORDINALITY AS t(terminal, merchant, batch, stan, kind, payload, pan_hash,
                           effect, moves, known_original, known_reversal, ord)),
 d AS (
    INSERT INTO host_decision (part, terminal, merchant, batch, stan, kind, payload)
    SELECT $1, i.terminal, i.merchant, i.batch, i.stan, i.kind, i.payload
      FROM i CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE o.kind = 1) AS originals,
               count(*) FILTER (WHERE o.kind = 2) AS reversals
          FROM host_decision o
         WHERE o.part = $1 AND o.terminal = i.terminal AND o.merchant = i.merchant
           AND o.batch = i.batch AND o.stan = i.stan) s
     WHERE (i.kind = 1 OR i.known_original OR s.originals = 0)
       AND (i.kind = 2 OR i.known_reversal OR s.reversals = 0)
     ORDER BY i.ord
    ON CONFLICT DO NOTHING
    RETURNING terminal, merchant, batch, stan, kind),
 l AS (
    INSERT INTO host_ledger (part, pan_hash, total)
    SELECT $1, i.pan_hash, sum(i.effect::numeric)
      FROM i JOIN d USING (terminal, merchant, batch, stan, kind)
     WHERE i.moves
     GROUP BY i.pan_hash
    ON CONFLICT (part, pan_hash) DO UPDATE SET total = host_ledger.total + EXCLUDED.total
    RETURNING 1)
 SELECT CASE WHEN c.n = cardinality($2::text[]) THEN c.n
             ELSE isoswitch_refuse_group(c.n, cardinality($2::text[])) END
   FROM (SELECT count(*) AS n FROM d) c";

/// Writes `rows` in one transaction: `true` when every row went in, `false` when the
/// group was refused (nothing of it written).
async fn write_group(pool: Pool, part: String, rows: Vec<Row>) -> Result<bool, PgError> {
    let c = pool.get().await?;
    // Every node takes the locks of a group in the same (ascending) order: two groups
    // that share keys wait for each other instead of deadlocking.
    let mut locks: Vec<i64> = rows.iter().map(|r| r.lock).collect();
    locks.sort_unstable();
    locks.dedup();
    let lock_stmt = c
        .prepare_cached("SELECT pg_advisory_xact_lock(l) FROM unnest($1::int8[]) AS l")
        .await?;
    let stmt = c.prepare_cached(GROUP_SQL).await?;
    let terminal: Vec<&str> = rows.iter().map(|r| r.key.terminal.as_str()).collect();
    let merchant: Vec<&str> = rows.iter().map(|r| r.key.merchant.as_str()).collect();
    let batch: Vec<i32> = rows.iter().map(|r| r.key.batch as i32).collect();
    let stan: Vec<i32> = rows.iter().map(|r| r.key.stan as i32).collect();
    let kind: Vec<i16> = rows.iter().map(|r| r.kind).collect();
    let payload: Vec<&[u8]> = rows.iter().map(|r| r.payload.as_slice()).collect();
    let pan_hash: Vec<&[u8]> = rows.iter().map(|r| r.pan_hash.as_slice()).collect();
    let effect: Vec<&str> = rows.iter().map(|r| r.effect.as_str()).collect();
    let moves: Vec<bool> = rows.iter().map(|r| r.moves).collect();
    let known_original: Vec<bool> = rows.iter().map(|r| r.known_original).collect();
    let known_reversal: Vec<bool> = rows.iter().map(|r| r.known_reversal).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 12] = [
        &part,
        &terminal,
        &merchant,
        &batch,
        &stan,
        &kind,
        &payload,
        &pan_hash,
        &effect,
        &moves,
        &known_original,
        &known_reversal,
    ];
    // One round trip: the four requests pipelined on the connection, sent in the order
    // written (`biased`: first poll in order), so the server runs them in that order.
    // Decisions on one key are made one at a time across nodes (the locks, held to the
    // commit); the statement reads its snapshot after the locks. A failure (a refused
    // group included) aborts the transaction, and the COMMIT that follows it on the
    // wire rolls it back.
    let written = tokio::try_join!(
        biased;
        c.batch_execute("BEGIN"),
        async { c.execute(&lock_stmt, &[&locks]).await },
        async { c.query_one(&stmt, &params).await },
        c.batch_execute("COMMIT"),
    );
    match written {
        Ok(_) => Ok(true),
        Err(e) if e.code().is_some_and(|c| c.code() == GROUP_REFUSED) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The write queue of a store with deferred commits, shared with its [`Durability`].
#[derive(Debug)]
struct Deferred {
    inner: Arc<Inner>,
    part: String,
    queue: Mutex<Queue>,
    /// Held while a group is written: a reload of the cache waits for it.
    writing: Mutex<()>,
}

#[derive(Debug, Default)]
struct Queue {
    /// Committed and applied to the cache, not written yet, by position.
    rows: Vec<(u64, Row)>,
    /// Decisions committed so far (the position of the last).
    written: u64,
    /// Positions whose decision was not kept, until [`IdempotencyStore::kept`] reports it.
    failed: BTreeMap<u64, Failure>,
    /// The cache holds decisions the database does not (a group refused or failed):
    /// it is read again before the next decision.
    stale: bool,
}

/// Why a deferred decision was not kept.
#[derive(Debug, Clone)]
enum Failure {
    /// Its group was refused, or it was never written (its key named).
    Refused(String),
    /// Its group's write failed: it may or may not be stored.
    Failed { error: String, transient: bool },
}

/// Failures kept for callers that never ask ([`IdempotencyStore::kept`]) at most.
const FAILURES_KEPT: usize = 10_000;

fn key_text(key: &TxnKey) -> String {
    format!(
        "{}/{}/{:06}/{:06}",
        key.terminal, key.merchant, key.batch, key.stan
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Queue {
    /// Every decision still queued is not kept; the cache must be read again.
    fn refuse_queued(&mut self) {
        for (seq, row) in std::mem::take(&mut self.rows) {
            self.failed
                .insert(seq, Failure::Refused(key_text(&row.key)));
        }
        self.stale = true;
    }

    fn fail(&mut self, seqs: impl IntoIterator<Item = (u64, Failure)>) {
        self.failed.extend(seqs);
        while self.failed.len() > FAILURES_KEPT {
            self.failed.pop_first();
        }
    }
}

impl Durability for Deferred {
    /// Writes every decision queued so far as one group (one transaction). A refused
    /// group is no error here: its decisions are reported by
    /// [`IdempotencyStore::kept`], and every decision queued after it too (they were made
    /// on a view that held the refused ones).
    fn make_durable(&self) -> Result<(), ReversalError> {
        let _writing = lock(&self.writing);
        let rows = std::mem::take(&mut lock(&self.queue).rows);
        if rows.is_empty() {
            return Ok(());
        }
        let (seqs, rows): (Vec<u64>, Vec<Row>) = rows.into_iter().unzip();
        let keys: Vec<String> = rows.iter().map(|r| key_text(&r.key)).collect();
        let part = self.part.clone();
        let written = self.inner.db.call(|pool| write_group(pool, part, rows));
        let mut q = lock(&self.queue);
        match written {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::info!(
                    decisions = seqs.len(),
                    "decision group refused (decided elsewhere meanwhile): decided again"
                );
                let refused = seqs
                    .into_iter()
                    .zip(keys)
                    .map(|(s, k)| (s, Failure::Refused(k)));
                q.fail(refused);
                q.refuse_queued();
                Ok(())
            }
            Err(e) => {
                let (error, transient) = (e.to_string(), e.is_transient());
                let failed = seqs.into_iter().map(|s| {
                    (
                        s,
                        Failure::Failed {
                            error: error.clone(),
                            transient,
                        },
                    )
                });
                q.fail(failed);
                q.refuse_queued();
                Err(e.into_reversal(&self.inner.db.describe, "write a decision group"))
            }
        }
    }
}

impl PgIdempotency {
    pub(crate) fn open(
        inner: Arc<Inner>,
        name: &str,
        claim: Claim,
    ) -> Result<PgIdempotency, ReversalError> {
        let part = name.to_string();
        let state = read_state(&inner, &part)?;
        Ok(PgIdempotency {
            inner,
            part,
            state,
            scratch: Vec::new(),
            deferred: None,
            _claim: claim,
        })
    }

    /// Reads every decision on `key` and applies those the cache lacks, in the order
    /// they were made.
    fn load_key(&mut self, key: &TxnKey) -> Result<(), ReversalError> {
        let (part, k) = (self.part.clone(), key.clone());
        let rows = self
            .inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let stmt = c
                    .prepare_cached(
                        "SELECT kind, payload FROM host_decision
                          WHERE part = $1 AND terminal = $2 AND merchant = $3 AND batch = $4 AND stan = $5
                          ORDER BY seq",
                    )
                    .await?;
                let rows = c
                    .query(
                        &stmt,
                        &[
                            &part,
                            &k.terminal,
                            &k.merchant,
                            &(k.batch as i32),
                            &(k.stan as i32),
                        ],
                    )
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| (r.get::<_, i16>(0), r.get::<_, Vec<u8>>(1)))
                    .collect::<Vec<_>>())
            })
            .map_err(self.inner.err("read a decision"))?;
        for (i, (kind, payload)) in rows.iter().enumerate() {
            if known(&self.state, key, *kind) {
                continue;
            }
            let rec = decode(&self.inner, i, payload).map_err(self.inner.err("read a decision"))?;
            self.state.apply(rec)?;
        }
        Ok(())
    }

    /// With deferred commits: when a group was refused or failed, the cache holds
    /// decisions the database may not; it is read again (after the group being written,
    /// if any) before anything is decided on it.
    fn up_to_date(&mut self) -> Result<(), ReversalError> {
        let Some(d) = self.deferred.clone() else {
            return Ok(());
        };
        if !lock(&d.queue).stale {
            return Ok(());
        }
        let _writing = lock(&d.writing);
        let state = read_state(&self.inner, &self.part)?;
        self.state = state;
        let mut q = lock(&d.queue);
        q.refuse_queued();
        q.stale = false;
        tracing::info!(part = %self.part, "decisions read again after a group was not kept");
        Ok(())
    }

    /// The row `record` is written as, checked against the cache (what it was made on).
    fn row_of(&mut self, record: &StoreRecord) -> Result<Row, ReversalError> {
        // Refused before it is written: a stored record must always replay.
        self.state.check(record)?;
        let (pan_hash, effect) = {
            let (pan, effect) = self.state.effect_of(record);
            (self.inner.keys.pan_hash(pan).to_vec(), effect)
        };
        self.scratch.clear();
        record.encode(&mut self.scratch);
        let payload = self
            .inner
            .seal(&self.scratch)
            .map_err(self.inner.err("commit a decision"))?;
        let (key, kind) = key_and_kind(record);
        // What this decision was made on: a decision of the other kind that another node
        // recorded meanwhile (an original approved while the terminal's reversal was
        // being recorded elsewhere) makes it stale, and it is not written.
        let (known_original, known_reversal) = self.state.get(key).map_or((false, false), |t| {
            (t.original.is_some(), t.reversal.is_some())
        });
        // FNV-1a of the key: the same lock on every node, whatever its build.
        let lock = isoswitch_reversal::profile::fnv1a_fields(&[
            self.part.as_bytes(),
            key.terminal.as_bytes(),
            key.merchant.as_bytes(),
            &key.batch.to_be_bytes(),
            &key.stan.to_be_bytes(),
        ]) as i64;
        Ok(Row {
            key: key.clone(),
            kind,
            lock,
            payload,
            pan_hash,
            effect: effect.to_string(),
            moves: !effect.is_zero(),
            known_original,
            known_reversal,
        })
    }
}

impl IdempotencyStore for PgIdempotency {
    fn get(&self, key: &TxnKey) -> Option<&StoredTxn> {
        self.state.get(key)
    }

    /// Without deferred commits: reads `key`'s decisions. With them: nothing to read
    /// (the group's statement refuses a decision made on a stale view, which is then
    /// made again), unless the cache must be read again (a group was not kept).
    fn refresh(&mut self, key: &TxnKey) -> Result<(), ReversalError> {
        if self.deferred.is_some() {
            return self.up_to_date();
        }
        self.load_key(key)
    }

    fn reload(&mut self, key: &TxnKey) -> Result<(), ReversalError> {
        self.up_to_date()?;
        self.load_key(key)
    }

    /// The decisions on keys with no original decided yet (admissions still open,
    /// reversals that came first), those the cache lacks applied in the order they were
    /// made. A scan of the part: called when a node completes a dead node's admissions.
    fn refresh_open(&mut self) -> Result<(), ReversalError> {
        self.up_to_date()?;
        let part = self.part.clone();
        let rows = self
            .inner
            .db
            .call(|pool| {
                crate::db::payloads_by_seq(
                    pool,
                    "SELECT d.seq, d.payload FROM host_decision d
                      WHERE d.part = $1 AND d.kind <> 1 AND NOT EXISTS (
                        SELECT 1 FROM host_decision o
                         WHERE o.part = d.part AND o.terminal = d.terminal
                           AND o.merchant = d.merchant AND o.batch = d.batch
                           AND o.stan = d.stan AND o.kind = 1)",
                    part,
                )
            })
            .map_err(self.inner.err("read open admissions"))?;
        for (i, payload) in rows.iter().enumerate() {
            let rec =
                decode(&self.inner, i, payload).map_err(self.inner.err("read open admissions"))?;
            let (key, kind) = key_and_kind(&rec);
            if known(&self.state, key, kind) {
                continue;
            }
            self.state.apply(rec)?;
        }
        Ok(())
    }

    /// Without deferred commits: the decision is written (one transaction) before it
    /// is applied. With them ([`IdempotencyStore::defer_sync`]): applied to the cache
    /// and queued; the next group writes it, and [`IdempotencyStore::kept`] says whether
    /// it was kept.
    fn commit(&mut self, record: StoreRecord) -> Result<(), ReversalError> {
        self.up_to_date()?;
        let row = self.row_of(&record)?;
        if let Some(d) = &self.deferred {
            let mut q = lock(&d.queue);
            if q.stale {
                // A group was refused since this decision was made: made on a view that
                // held it, so made again.
                return Err(ReversalError::DecidedElsewhere {
                    key: key_text(&row.key),
                });
            }
            q.written += 1;
            let seq = q.written;
            q.rows.push((seq, row));
            drop(q);
            return self.state.apply(record);
        }
        let key = row.key.clone();
        let part = self.part.clone();
        let inserted = self
            .inner
            .db
            .call(|pool| write_group(pool, part, vec![row]))
            .map_err(self.inner.err("commit a decision"))?;
        if inserted {
            self.state.apply(record)
        } else {
            // Another node (or an earlier attempt whose answer was lost) decided first,
            // or decided the other kind meanwhile: read back, decide again.
            self.load_key(&key)?;
            Err(ReversalError::DecidedElsewhere {
                key: key_text(&key),
            })
        }
    }

    /// Group commit: from now on a commit is applied to the cache and queued, and the
    /// handle writes every decision queued so far in one transaction.
    fn defer_sync(&mut self) -> Option<Arc<dyn Durability>> {
        let d = self.deferred.get_or_insert_with(|| {
            Arc::new(Deferred {
                inner: self.inner.clone(),
                part: self.part.clone(),
                queue: Mutex::new(Queue::default()),
                writing: Mutex::new(()),
            })
        });
        Some(d.clone())
    }

    fn written(&self) -> u64 {
        self.deferred.as_ref().map_or(0, |d| lock(&d.queue).written)
    }

    fn kept(&mut self, since: u64, upto: u64) -> Result<(), ReversalError> {
        let Some(d) = &self.deferred else {
            return Ok(());
        };
        if upto <= since {
            return Ok(());
        }
        let mut q = lock(&d.queue);
        let seqs: Vec<u64> = q.failed.range(since + 1..=upto).map(|(s, _)| *s).collect();
        let mut first: Option<Failure> = None;
        for s in seqs {
            let f = q.failed.remove(&s);
            // A failed write outranks a refusal: the caller must not act on it.
            match (&first, f) {
                (_, Some(f @ Failure::Failed { .. })) => first = Some(f),
                (None, Some(f)) => first = Some(f),
                _ => {}
            }
        }
        match first {
            None => Ok(()),
            Some(Failure::Refused(key)) => Err(ReversalError::DecidedElsewhere { key }),
            Some(Failure::Failed { error, transient }) => Err(ReversalError::Database {
                store: self.inner.db.describe.clone(),
                op: "write a decision group",
                source: error.into(),
                transient,
            }),
        }
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

    /// The batch's totals from every node's decisions (a terminal that moved between
    /// nodes settles against all of them); this node's view if the database is away.
    fn batch_totals(&self, terminal: &str, merchant: &str, batch: u32) -> BatchTotals {
        let (part, t, m) = (
            self.part.clone(),
            terminal.to_string(),
            merchant.to_string(),
        );
        let rows = self.inner.db.call(|pool| async move {
            let c = pool.get().await?;
            let rows = c
                .query(
                    "SELECT payload FROM host_decision
                      WHERE part = $1 AND terminal = $2 AND merchant = $3 AND batch = $4
                      ORDER BY seq",
                    &[&part, &t, &m, &(batch as i32)],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| r.get::<_, Vec<u8>>(0))
                .collect::<Vec<_>>())
        });
        let replayed = rows.map_err(|e| e.to_string()).and_then(|rows| {
            let mut all = MemoryStore::new();
            for (i, p) in rows.iter().enumerate() {
                let rec = decode(&self.inner, i, p).map_err(|e| e.to_string())?;
                all.apply(rec).map_err(|e| e.to_string())?;
            }
            Ok(all)
        });
        match replayed {
            Ok(all) => all.batch_totals(terminal, merchant, batch),
            Err(e) => {
                tracing::warn!(error = %e, terminal, batch, "batch totals from this node's view only");
                self.state.batch_totals(terminal, merchant, batch)
            }
        }
    }
}
