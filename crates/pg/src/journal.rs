//! [`PgJournal`]: the engine journal of one node, `<name>@<node>`, in
//! `journal_record` (payload = [`JournalRecord::encode`] sealed under the store's data
//! keys, as the file journal seals its records: no PAN at rest in clear; the original
//! carries no MAC, PIN block or track data). `pending_reversal.message` holds the
//! original sealed the same way.
//!
//! Group commit: [`Journal::append`] writes all its records with one multi-row insert
//! in one transaction (behind [`isoswitch_reversal::GroupCommit`], every append that
//! arrived meanwhile shares it) and returns only after the commit; the same
//! transaction renews the node's lease on the journal (an append after another node
//! took the journal over is [`PgError::LeaseLost`]) and keeps `pending_reversal` in
//! step: a `Finished { Reverse }` puts the original there with its reason, a `Started`
//! advice puts it there at once (its delivery is pending until answered), and the
//! outcome or `ReversalAcked` takes it out. An original in flight gets no row: if its
//! node dies before its outcome, the node that takes over lists it from the dead
//! journal's records (reversed as `Recovered`; `in_doubt_rows`, migration 7) before
//! claiming.

use crate::error::PgError;
use crate::store::{Claim, Inner};
use bytes::Bytes;
use isoswitch_reversal::{Finish, Journal, JournalRecord, ReversalError, ReversalReason};
use std::collections::HashMap;
use std::sync::Arc;

/// The DE 39 written into a dead node's journal when another node took its reversal
/// over (`HO`: not a host's answer, never sent).
pub const HANDED_OVER: &[u8; 2] = b"HO";

/// The records of journal `part` from its rows (sealed payloads in order).
pub(crate) fn decode_rows(
    inner: &Inner,
    part: &str,
    rows: &[Vec<u8>],
    op: &'static str,
) -> Result<Vec<JournalRecord>, ReversalError> {
    records_of(inner, part, rows).map_err(inner.err(op))
}

/// [`decode_rows`] with the store's own error.
fn records_of(inner: &Inner, part: &str, rows: &[Vec<u8>]) -> Result<Vec<JournalRecord>, PgError> {
    let mut out = Vec::with_capacity(rows.len());
    for (i, sealed) in rows.iter().enumerate() {
        let payload = inner.unseal("journal_record", format_args!("{part} record {i}"), sealed)?;
        let rec = JournalRecord::decode(&payload).map_err(|e| PgError::BadRow {
            table: "journal_record",
            what: format!("{part} record {i}: {e}"),
        })?;
        out.push(rec);
    }
    Ok(out)
}

/// What `rec` does to its transaction's `pending_reversal` row, with `started` (the
/// originals started and not finished: `id → (tag, message)`) kept up to date. A
/// reversal to send (`Finished { Reverse }`) is pending until acknowledged, and so is an
/// advice from its start (its delivery is: [`isoswitch_reversal::may_be_advice`], since
/// the store does not know the dialect); an outcome or an acknowledgement takes the row
/// out. An original in flight is pending only in a `listing` (a dead node's journal,
/// [`in_doubt_rows`]): a live node's outcome follows within its timeout, so its append
/// writes no row for it (migration 7).
fn pending_change(
    started: &mut HashMap<u64, (u64, Bytes)>,
    rec: &JournalRecord,
    listing: bool,
) -> Option<(i64, PendingChange)> {
    match rec {
        JournalRecord::Started {
            id, tag, message, ..
        } => {
            started.insert(*id, (*tag, message.clone()));
            (listing || isoswitch_reversal::may_be_advice(message)).then(|| {
                let reason = i16::from(ReversalReason::Recovered.to_u8());
                (*id as i64, Some((*tag as i64, reason, message.to_vec())))
            })
        }
        JournalRecord::Finished {
            id,
            finish: Finish::Reverse { reason },
        } => {
            let (tag, message) = started.get(id)?.clone();
            Some((
                *id as i64,
                Some((tag as i64, i16::from(reason.to_u8()), message.to_vec())),
            ))
        }
        JournalRecord::Finished { id, .. } | JournalRecord::ReversalAcked { id, .. } => {
            started.remove(id);
            Some((*id as i64, None))
        }
        JournalRecord::Counters { .. } | JournalRecord::BatchClosed { .. } => None,
    }
}

/// A pending row to list: transaction, tag, reason, sealed original.
pub(crate) type ListedRow = (i64, i64, i16, Vec<u8>);

/// The pending rows the records of a dead node's journal `part` (sealed payloads in
/// order) call for: every reversal not yet acknowledged, every advice not yet answered,
/// and every original started without an outcome (in doubt: reversed as `Recovered`),
/// originals sealed again for `pending_reversal.message`.
pub(crate) fn in_doubt_rows(
    inner: &Inner,
    part: &str,
    sealed: &[Vec<u8>],
) -> Result<Vec<ListedRow>, PgError> {
    let mut started = HashMap::new();
    let mut changes: HashMap<i64, PendingChange> = HashMap::new();
    for rec in records_of(inner, part, sealed)? {
        if let Some((txn, c)) = pending_change(&mut started, &rec, true) {
            changes.insert(txn, c);
        }
    }
    let mut rows = Vec::new();
    for (txn, c) in changes {
        if let Some((tag, reason, message)) = c {
            rows.push((txn, tag, reason, inner.seal(&message)?));
        }
    }
    rows.sort_unstable_by_key(|r| r.0);
    Ok(rows)
}

/// A node's journal; see the module docs.
#[derive(Debug)]
pub struct PgJournal {
    inner: Arc<Inner>,
    part: String,
    journal: String,
    loaded: Option<Vec<JournalRecord>>,
    /// Originals started and not finished yet: `id → (tag, message)`.
    started: HashMap<u64, (u64, Bytes)>,
    written: u64,
    _claim: Claim,
}

/// What an append does to one transaction's `pending_reversal` row: put it there
/// (or change its reason), or take it out.
type PendingChange = Option<(i64, i16, Vec<u8>)>;

impl PgJournal {
    pub(crate) fn open(
        inner: Arc<Inner>,
        name: &str,
        claim: Claim,
    ) -> Result<PgJournal, ReversalError> {
        let part = format!("{name}@{}", inner.node);
        let (p, j, node, secs) = (
            part.clone(),
            name.to_string(),
            inner.node.clone(),
            inner.lease_secs(),
        );
        let rows = inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let owner = c
                    .query(
                        "INSERT INTO journal_part (part, journal, owner, lease_until)
                         VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                         ON CONFLICT (part) DO UPDATE
                            SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until,
                                in_doubt_listed = false
                          WHERE journal_part.owner = EXCLUDED.owner
                             OR journal_part.lease_until < now()
                         RETURNING owner",
                        &[&p, &j, &node, &secs],
                    )
                    .await?;
                if owner.is_empty() {
                    let row = c
                        .query_one("SELECT owner FROM journal_part WHERE part = $1", &[&p])
                        .await?;
                    return Err(PgError::Leased {
                        part: p,
                        owner: row.get(0),
                    });
                }
                drop(c);
                crate::db::payloads(
                    pool,
                    "SELECT payload FROM journal_record WHERE part = $1 ORDER BY seq",
                    p,
                )
                .await
            })
            .map_err(inner.err("open journal"))?;
        let written = rows.iter().map(|r| r.len() as u64).sum();
        let loaded = decode_rows(&inner, &part, &rows, "open journal")?;
        let mut j = PgJournal {
            inner,
            part,
            journal: name.to_string(),
            loaded: None,
            started: HashMap::new(),
            written,
            _claim: claim,
        };
        for rec in &loaded {
            j.track(rec);
        }
        j.loaded = Some(loaded);
        Ok(j)
    }

    /// The part (`<name>@<node>`).
    pub fn part(&self) -> &str {
        &self.part
    }

    /// Follows `rec` in the in-flight map; returns the pending change it makes to its
    /// transaction ([`pending_change`], outside a listing).
    fn track(&mut self, rec: &JournalRecord) -> Option<(i64, PendingChange)> {
        pending_change(&mut self.started, rec, false)
    }

    /// Writes `records` (and, with `replace`, deletes everything before) in one
    /// transaction that also renews the lease and updates `pending_reversal`.
    fn write(&mut self, records: &[JournalRecord], replace: bool) -> Result<(), ReversalError> {
        let op = if replace {
            "journal compact"
        } else {
            "journal append"
        };
        let saved = replace.then(|| self.started.clone());
        match self.prepare(records, replace) {
            Ok((payloads, changes, bytes)) => self.commit(payloads, changes, bytes, replace, saved),
            Err(e) => {
                self.restore(saved);
                Err(e.into_reversal(&self.inner.db.describe, op))
            }
        }
    }

    /// Puts the in-flight map back as it was before a write that failed (a compaction
    /// rebuilt it from its records).
    fn restore(&mut self, saved: Option<HashMap<u64, (u64, Bytes)>>) {
        if let Some(s) = saved {
            self.started = s;
        }
    }

    /// The sealed payloads of `records` and the pending changes they make; with
    /// `replace`, the in-flight map is rebuilt from `records` alone.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &mut self,
        records: &[JournalRecord],
        replace: bool,
    ) -> Result<(Vec<Vec<u8>>, HashMap<i64, PendingChange>, u64), PgError> {
        if replace {
            self.started.clear();
        }
        let mut payloads = Vec::with_capacity(records.len());
        // The last change per transaction wins (one row per key per statement).
        let mut changes: HashMap<i64, PendingChange> = HashMap::new();
        let mut bytes = 0u64;
        let mut clear = Vec::new();
        for rec in records {
            clear.clear();
            rec.encode(&mut clear);
            let p = self.inner.seal(&clear)?;
            bytes += p.len() as u64;
            payloads.push(p);
            if let Some((txn, c)) = self.track(rec) {
                let c = match c {
                    Some((tag, reason, message)) => Some((tag, reason, self.inner.seal(&message)?)),
                    None => None,
                };
                changes.insert(txn, c);
            }
        }
        Ok((payloads, changes, bytes))
    }

    fn commit(
        &mut self,
        payloads: Vec<Vec<u8>>,
        changes: HashMap<i64, PendingChange>,
        bytes: u64,
        replace: bool,
        saved: Option<HashMap<u64, (u64, Bytes)>>,
    ) -> Result<(), ReversalError> {
        let (part, journal, node, secs) = (
            self.part.clone(),
            self.journal.clone(),
            self.inner.node.clone(),
            self.inner.lease_secs(),
        );
        let r = self.inner.db.call(|pool| async move {
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            let mut add = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut done = Vec::new();
            for (txn, ch) in changes {
                match ch {
                    Some((tag, reason, message)) => {
                        add.0.push(txn);
                        add.1.push(tag);
                        add.2.push(reason);
                        add.3.push(message);
                    }
                    None => done.push(txn),
                }
            }
            // Every statement prepared (once per connection), so that the writes below
            // go out together, in this order, and cost one round trip, not one each.
            let lease = tx
                .prepare_cached(
                    "UPDATE journal_part
                        SET lease_until = now() + make_interval(secs => $3),
                            in_doubt_listed = false
                      WHERE part = $1 AND owner = $2",
                )
                .await?;
            let clear_records = tx
                .prepare_cached("DELETE FROM journal_record WHERE part = $1")
                .await?;
            let clear_pending = tx
                .prepare_cached(
                    "DELETE FROM pending_reversal WHERE part = $1 AND claimed_by IS NULL",
                )
                .await?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO journal_record (part, payload)
                     SELECT $1, p FROM unnest($2::bytea[]) WITH ORDINALITY AS t(p, n) ORDER BY n",
                )
                .await?;
            let pend = tx
                .prepare_cached(
                    "INSERT INTO pending_reversal (part, txn, journal, tag, reason, message)
                     SELECT $1, t, $2, g, r, m
                       FROM unnest($3::int8[], $4::int8[], $5::int2[], $6::bytea[]) AS u(t, g, r, m)
                     ON CONFLICT (part, txn) DO UPDATE SET reason = EXCLUDED.reason",
                )
                .await?;
            let unpend = tx
                .prepare_cached(
                    "DELETE FROM pending_reversal WHERE part = $1 AND txn = ANY($2::int8[])",
                )
                .await?;
            // Pipelined: each request is sent when its future is first polled, and a
            // `biased` `try_join!` polls them in the order written, so the server runs
            // them in that order within the transaction (a compaction's deletes before
            // its inserts). The lease is checked before the commit: without it the
            // transaction is dropped (rolled back) and nothing is written.
            let skip = || async { Ok::<u64, tokio_postgres::Error>(0) };
            let (held, _, _, _, _, _) = tokio::try_join!(
                biased;
                async { tx.execute(&lease, &[&part, &node, &secs]).await },
                async {
                    if replace {
                        tx.execute(&clear_records, &[&part]).await
                    } else {
                        skip().await
                    }
                },
                async {
                    if replace {
                        tx.execute(&clear_pending, &[&part]).await
                    } else {
                        skip().await
                    }
                },
                async {
                    if payloads.is_empty() {
                        skip().await
                    } else {
                        tx.execute(&insert, &[&part, &payloads]).await
                    }
                },
                async {
                    if add.0.is_empty() {
                        skip().await
                    } else {
                        tx.execute(&pend, &[&part, &journal, &add.0, &add.1, &add.2, &add.3])
                            .await
                    }
                },
                async {
                    if done.is_empty() {
                        skip().await
                    } else {
                        tx.execute(&unpend, &[&part, &done]).await
                    }
                },
            )?;
            if held != 1 {
                return Err(PgError::LeaseLost { part });
            }
            tx.commit().await?;
            Ok(())
        });
        match r {
            Ok(()) => {
                if replace {
                    self.written = bytes;
                } else {
                    self.written += bytes;
                }
                Ok(())
            }
            Err(e) => {
                self.restore(saved);
                Err(e.into_reversal(
                    &self.inner.db.describe,
                    if replace {
                        "journal compact"
                    } else {
                        "journal append"
                    },
                ))
            }
        }
    }
}

impl Journal for PgJournal {
    fn load(&mut self) -> Result<Vec<JournalRecord>, ReversalError> {
        Ok(self.loaded.take().unwrap_or_default())
    }

    fn append(&mut self, records: &[JournalRecord]) -> Result<(), ReversalError> {
        self.write(records, false)
    }

    fn compact(&mut self, live: &[JournalRecord]) -> Result<(), ReversalError> {
        self.write(live, true)
    }

    fn size(&self) -> u64 {
        self.written
    }
}
