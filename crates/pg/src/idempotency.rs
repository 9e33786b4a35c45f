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
use isoswitch_reversal::store::{Ledger, MemoryStore, StoredTxn};
use isoswitch_reversal::{BatchTotals, IdempotencyStore, ReversalError, StoreRecord, TxnKey};
use std::sync::Arc;

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

impl PgIdempotency {
    pub(crate) fn open(
        inner: Arc<Inner>,
        name: &str,
        claim: Claim,
    ) -> Result<PgIdempotency, ReversalError> {
        let part = name.to_string();
        let p = part.clone();
        let rows = inner
            .db
            .call(|pool| {
                crate::db::payloads(
                    pool,
                    "SELECT payload FROM host_decision WHERE part = $1 ORDER BY seq",
                    p,
                )
            })
            .map_err(inner.err("open idempotency store"))?;
        let mut state = MemoryStore::new();
        for (i, payload) in rows.iter().enumerate() {
            let rec = decode(&inner, i, payload).map_err(inner.err("open idempotency store"))?;
            state.apply(rec)?;
        }
        Ok(PgIdempotency {
            inner,
            part,
            state,
            scratch: Vec::new(),
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
}

impl IdempotencyStore for PgIdempotency {
    fn get(&self, key: &TxnKey) -> Option<&StoredTxn> {
        self.state.get(key)
    }

    fn refresh(&mut self, key: &TxnKey) -> Result<(), ReversalError> {
        self.load_key(key)
    }

    /// The decisions on keys with no original decided yet (admissions still open,
    /// reversals that came first), those the cache lacks applied in the order they were
    /// made. A scan of the part: called when a node completes a dead node's admissions.
    fn refresh_open(&mut self) -> Result<(), ReversalError> {
        let part = self.part.clone();
        let rows = self
            .inner
            .db
            .call(|pool| {
                crate::db::payloads(
                    pool,
                    "SELECT d.payload FROM host_decision d
                      WHERE d.part = $1 AND d.kind <> 1 AND NOT EXISTS (
                        SELECT 1 FROM host_decision o
                         WHERE o.part = d.part AND o.terminal = d.terminal
                           AND o.merchant = d.merchant AND o.batch = d.batch
                           AND o.stan = d.stan AND o.kind = 1)
                      ORDER BY d.seq",
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

    fn commit(&mut self, record: StoreRecord) -> Result<(), ReversalError> {
        // Refused before it is written: a stored record must always replay.
        self.state.check(&record)?;
        let (pan_hash, effect) = {
            let (pan, effect) = self.state.effect_of(&record);
            (self.inner.keys.pan_hash(pan).to_vec(), effect)
        };
        self.scratch.clear();
        record.encode(&mut self.scratch);
        let payload = self
            .inner
            .seal(&self.scratch)
            .map_err(self.inner.err("commit a decision"))?;
        let (key, kind) = key_and_kind(&record);
        let key = key.clone();
        let (part, k) = (self.part.clone(), key.clone());
        let effect_text = effect.to_string();
        let moves = !effect.is_zero();
        // What this decision was made on: a decision of the other kind that another node
        // recorded meanwhile (an original approved while the terminal's reversal was
        // being recorded elsewhere) makes it stale, and it is not written.
        let (known_original, known_reversal) = self.state.get(&key).map_or((false, false), |t| {
            (t.original.is_some(), t.reversal.is_some())
        });
        // FNV-1a of the key: the same lock on every node, whatever its build.
        let lock = isoswitch_reversal::profile::fnv1a_fields(&[
            part.as_bytes(),
            k.terminal.as_bytes(),
            k.merchant.as_bytes(),
            &k.batch.to_be_bytes(),
            &k.stan.to_be_bytes(),
        ]) as i64;
        let inserted = self
            .inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let lock_stmt = c.prepare_cached("SELECT pg_advisory_xact_lock($1)").await?;
                let stmt = c
                    .prepare_cached(
                        "WITH d AS (
                            INSERT INTO host_decision (part, terminal, merchant, batch, stan, kind, payload)
                            SELECT $1, $2, $3, $4, $5, $6, $7
                             WHERE NOT EXISTS (
                                SELECT 1 FROM host_decision o
                                 WHERE o.part = $1 AND o.terminal = $2 AND o.merchant = $3
                                   AND o.batch = $4 AND o.stan = $5 AND o.kind <> $6
                                   AND ((o.kind = 1 AND NOT $11) OR (o.kind = 2 AND NOT $12)))
                            ON CONFLICT DO NOTHING
                            RETURNING 1),
                         l AS (
                            INSERT INTO host_ledger (part, pan_hash, total)
                            SELECT $1, $8, $9::text::numeric FROM d WHERE $10
                            ON CONFLICT (part, pan_hash) DO UPDATE SET total = host_ledger.total + EXCLUDED.total
                            RETURNING 1)
                         SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM l)",
                    )
                    .await?;
                // One round trip: the four requests pipelined on the connection, sent in
                // the order written (`biased`: first poll in order), so the server runs
                // them in that order. Decisions on one key are made one at a time across
                // nodes (the lock, held to the commit); the decision reads its snapshot
                // after the lock. A failure aborts the transaction, and the COMMIT that
                // follows it on the wire rolls it back.
                let (_, _, row, _) = tokio::try_join!(
                    biased;
                    c.batch_execute("BEGIN"),
                    async { c.execute(&lock_stmt, &[&lock]).await },
                    async {
                        let (batch, stan) = (k.batch as i32, k.stan as i32);
                        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 12] = [
                            &part,
                            &k.terminal,
                            &k.merchant,
                            &batch,
                            &stan,
                            &kind,
                            &payload,
                            &pan_hash,
                            &effect_text,
                            &moves,
                            &known_original,
                            &known_reversal,
                        ];
                        c.query_one(&stmt, &params).await
                    },
                    c.batch_execute("COMMIT"),
                )?;
                Ok(row.get::<_, i64>(0) == 1)
            })
            .map_err(self.inner.err("commit a decision"))?;
        if inserted {
            self.state.apply(record)
        } else {
            // Another node (or an earlier attempt whose answer was lost) decided first,
            // or decided the other kind meanwhile: read back, decide again.
            self.load_key(&key)?;
            Err(ReversalError::DecidedElsewhere {
                key: format!(
                    "{}/{}/{:06}/{:06}",
                    key.terminal, key.merchant, key.batch, key.stan
                ),
            })
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
