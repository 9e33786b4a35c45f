//! [`PgStore`]: the [`Store`] on PostgreSQL — several switch nodes on one database.
//!
//! | part | shared by nodes? | tables |
//! |---|---|---|
//! | journal `name` | no: part `name@node`, leased to the node | `journal_part`, `journal_record`, `pending_reversal` |
//! | idempotency `name` | yes | `host_decision`, `host_ledger` |
//! | counters `name` | yes: STAN/RRN blocks leased from the row | `counters` |
//! | sessions `name` | yes | `terminal_session`, `upstream_session` |
//!
//! A node renews its leases ([`Store::renew_leases`], and every journal append renews
//! its journal's); when a node stops renewing, its lease runs out after
//! [`PgConfig::lease`] and another node claims the reversals its journal left pending
//! ([`Store::claim_orphans`], `FOR UPDATE SKIP LOCKED`), journals them as its own and
//! records the hand-over ([`Store::hand_over`]), which also writes the reversal's
//! acknowledgement into the dead node's journal: whichever node restarts under that
//! name finds nothing left to send.

use crate::counters::PgCounters;
use crate::db::Db;
use crate::error::PgError;
use crate::idempotency::PgIdempotency;
use crate::journal::PgJournal;
use crate::sessions::PgSessions;
use isoswitch_reversal::durable::{check_part_name, Orphan, Store};
use isoswitch_reversal::seal::DataKeys;
use isoswitch_reversal::{JournalRecord, ReversalError, ReversalReason};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Default lease of a node's journal and claimed work.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);
/// Dead journal parts whose work in doubt one look lists at most
/// ([`Store::claim_orphans`]).
const PARTS_LISTED_PER_LOOK: i64 = 4;
/// Default STAN/RRN block leased per database round trip.
pub const DEFAULT_BLOCK: u32 = 100;

/// Options of a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://USER@HOST:PORT/DB`.
    pub url: String,
    /// This node's name (lease owner); default: host name + pid ([`default_node`]).
    pub node: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// STANs/RRNs leased per block.
    pub block: u32,
    /// Connections at most.
    pub pool_size: usize,
    /// How long a call waits for the database before it fails (the caller answers
    /// `96`/`91` instead of hanging).
    pub timeout: Duration,
}

impl PgConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            node: default_node(),
            lease: DEFAULT_LEASE,
            block: DEFAULT_BLOCK,
            pool_size: 16,
            timeout: Duration::from_secs(5),
        }
    }
}

/// `<host name>-<pid>`.
pub fn default_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{}", std::process::id())
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) db: Db,
    /// What journal records, pending originals and decisions are sealed under, and
    /// what hashes the PAN of a ledger row.
    pub(crate) keys: Arc<DataKeys>,
    pub(crate) node: String,
    pub(crate) lease: Duration,
    pub(crate) block: u32,
    open: Mutex<HashSet<(&'static str, String)>>,
}

impl Inner {
    pub(crate) fn err(&self, op: &'static str) -> impl FnOnce(PgError) -> ReversalError + '_ {
        move |e| e.into_reversal(&self.db.describe, op)
    }

    pub(crate) fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// `clear` sealed under the current data key.
    pub(crate) fn seal(&self, clear: &[u8]) -> Result<Vec<u8>, PgError> {
        crate::db::seal(&self.keys, clear)
    }

    /// A sealed column of `table` opened (`what` names the row in the error).
    pub(crate) fn unseal(
        &self,
        table: &'static str,
        what: impl std::fmt::Display,
        sealed: &[u8],
    ) -> Result<Vec<u8>, PgError> {
        crate::db::unseal(&self.keys, table, what, sealed)
    }
}

/// The PostgreSQL store; see the module docs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

/// Releases a part's name in this process when the part is dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    inner: Arc<Inner>,
    key: (&'static str, String),
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut open) = self.inner.open.lock() {
            open.remove(&self.key);
        }
    }
}

impl PgStore {
    /// Connects to `config.url` and applies the migrations; journal records, pending
    /// originals and decisions are sealed under `keys` (the programs derive them from
    /// their key-encryption key: [`DataKeys::from_kek`]), the ledger is keyed by
    /// [`DataKeys::pan_hash`]. A database written in clear by schema version 1 is
    /// sealed under `keys` by the migration to version 2 (one transaction).
    ///
    /// # Errors
    /// A bad URL, an unreachable server, a failed migration.
    pub fn open(config: PgConfig, keys: Arc<DataKeys>) -> Result<PgStore, PgError> {
        let (db, version) = Db::open(&config.url, config.pool_size, config.timeout, keys.clone())?;
        tracing::info!(store = %db.describe, node = %config.node, schema = version, data_key = ?keys, "PostgreSQL store opened");
        Ok(PgStore {
            inner: Arc::new(Inner {
                db,
                keys,
                node: config.node,
                lease: config.lease,
                block: config.block.clamp(1, 100_000),
                open: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The lease time.
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    fn claim(&self, kind: &'static str, name: &str) -> Result<Claim, ReversalError> {
        check_part_name(name)?;
        let key = (kind, name.to_string());
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !open.insert(key.clone()) {
            return Err(ReversalError::PartInUse {
                kind,
                name: name.to_string(),
            });
        }
        Ok(Claim {
            inner: self.inner.clone(),
            key,
        })
    }

    /// Lets this node's leases run out now (for tests that simulate a dead node
    /// without waiting, and for an operator who knows the node is gone).
    ///
    /// # Errors
    /// Database errors.
    pub fn expire_leases(&self) -> Result<(), ReversalError> {
        let node = self.inner.node.clone();
        self.inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                c.execute(
                    "UPDATE journal_part SET lease_until = now() - interval '1 second' WHERE owner = $1",
                    &[&node],
                )
                .await?;
                c.execute(
                    "UPDATE pending_reversal SET claim_until = now() - interval '1 second' WHERE claimed_by = $1",
                    &[&node],
                )
                .await?;
                Ok(())
            })
            .map_err(self.inner.err("expire leases"))
    }

    /// The parts of journals named `journal` whose lease ran out (other nodes'), at most
    /// `max`, in random order (so that parts which cannot be handled, e.g. sealed under
    /// a data key this node lacks, do not keep the same others from their turn at every
    /// look); with `unlisted`, only those whose work in doubt was not listed yet.
    fn dead_parts(
        &self,
        journal: &str,
        unlisted: bool,
        max: i64,
    ) -> Result<Vec<String>, ReversalError> {
        let (journal, node) = (journal.to_string(), self.inner.node.clone());
        self.inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let rows = c
                    .query(
                        "SELECT part FROM journal_part
                          WHERE journal = $1 AND owner <> $2 AND lease_until < now()
                            AND NOT ($3 AND in_doubt_listed)
                          ORDER BY random() LIMIT $4",
                        &[&journal, &node, &unlisted, &max],
                    )
                    .await?;
                Ok(rows.iter().map(|r| r.get(0)).collect())
            })
            .map_err(self.inner.err("list dead journals"))
    }

    /// Lists as pending rows what the journals of nodes whose lease ran out leave in
    /// doubt ([`crate::journal::in_doubt_rows`]; migration 7), each part in a call of its
    /// own ([`PgStore::list_part`]): a part that cannot be listed (a database error, a
    /// journal too long to read within the call's timeout, a record this node cannot
    /// open) is logged and passed over, and the parts after it are still listed; it is
    /// tried again at the next look and is not retired before it is listed. Returns the
    /// rows added.
    ///
    /// A look lists at most [`PARTS_LISTED_PER_LOOK`] parts and, after the first, starts
    /// none once a third of the lease has gone: it runs between this node's own lease renewals, which
    /// must not wait for a backlog of dead parts (the rest are listed at the next looks).
    fn list_in_doubt(&self, journal: &str) -> Result<u64, ReversalError> {
        let begun = std::time::Instant::now();
        let budget = self.inner.lease / 3;
        let parts = self.dead_parts(journal, true, PARTS_LISTED_PER_LOOK)?;
        let mut added = 0;
        for (i, part) in parts.into_iter().enumerate() {
            if i > 0 && begun.elapsed() >= budget {
                break;
            }
            match self.list_part(&part) {
                Ok(n) => added += n,
                Err(e) => self.passed_over(
                    &part,
                    &e,
                    "its work in doubt is not listed (its originals in flight are not reversed) until it can be",
                ),
            }
        }
        Ok(added)
    }

    /// Logs a dead part passed over at this look (read again at the next): `what` it
    /// means meanwhile.
    fn passed_over(&self, part: &str, e: &ReversalError, what: &str) {
        tracing::warn!(
            node = %self.inner.node,
            part = %part,
            error = %e,
            consequence = what,
            "a dead node's journal could not be handled at this look: passed over, tried again at the next"
        );
    }

    /// Lists what one part whose lease ran out leaves in doubt, once: in one
    /// transaction with its `journal_part` row locked (an owner that was only slow renews
    /// its lease through that row, so it waits, and its later appends clear the flag; a
    /// hand-over into the part waits too, so a row handed over meanwhile is not listed
    /// again); rows already there (claimed or not) are left as they are. Returns the rows
    /// added (0 when the part is not due or is being listed by another node).
    fn list_part(&self, part: &str) -> Result<u64, ReversalError> {
        let node = self.inner.node.clone();
        let inner = self.inner.clone();
        let owned = part.to_string();
        let added = self
            .inner
            .db
            .call(|pool| async move {
                let mut c = pool.get().await?;
                let tx = c.transaction().await?;
                let locked = tx
                    .query(
                        "SELECT journal FROM journal_part
                          WHERE part = $1 AND owner <> $2 AND lease_until < now()
                            AND NOT in_doubt_listed
                          FOR UPDATE SKIP LOCKED",
                        &[&owned, &node],
                    )
                    .await?;
                let Some(row) = locked.first() else {
                    return Ok(0);
                };
                let journal: String = row.get(0);
                let sealed: Vec<Vec<u8>> = tx
                    .query(
                        "SELECT payload FROM journal_record WHERE part = $1 ORDER BY seq",
                        &[&owned],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let rows = crate::journal::in_doubt_rows(&inner, &owned, &sealed)?;
                let mut added = 0;
                if !rows.is_empty() {
                    let txn: Vec<i64> = rows.iter().map(|r| r.0).collect();
                    let tag: Vec<i64> = rows.iter().map(|r| r.1).collect();
                    let reason: Vec<i16> = rows.iter().map(|r| r.2).collect();
                    let message: Vec<&[u8]> = rows.iter().map(|r| r.3.as_slice()).collect();
                    added = tx
                        .execute(
                            "INSERT INTO pending_reversal (part, txn, journal, tag, reason, message)
                             SELECT $1, t, $2, g, r, m
                               FROM unnest($3::int8[], $4::int8[], $5::int2[], $6::bytea[]) AS u(t, g, r, m)
                             ON CONFLICT (txn, part) DO NOTHING",
                            &[&owned, &journal, &txn, &tag, &reason, &message],
                        )
                        .await?;
                }
                tx.execute(
                    "UPDATE journal_part SET in_doubt_listed = true WHERE part = $1",
                    &[&owned],
                )
                .await?;
                tx.commit().await?;
                Ok(added)
            })
            .map_err(self.inner.err("list a dead node's work in doubt"))?;
        if added > 0 {
            tracing::info!(node = %self.inner.node, part = %part, added, "listed the work a node whose lease ran out left in doubt");
        }
        Ok(added)
    }

    /// Reversals and advices still pending in journals named `journal`, of every node,
    /// and the originals that nodes whose lease ran out left in doubt, once listed (a
    /// live node's originals in flight are not counted): 0 once every one was
    /// acknowledged.
    ///
    /// # Errors
    /// Database errors.
    pub fn pending(&self, journal: &str) -> Result<u64, ReversalError> {
        let journal = journal.to_string();
        self.inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let row = c
                    .query_one(
                        "SELECT count(*) FROM pending_reversal WHERE journal = $1",
                        &[&journal],
                    )
                    .await?;
                Ok(row.get::<_, i64>(0).max(0) as u64)
            })
            .map_err(self.inner.err("count pending reversals"))
    }

    /// The pending work of journals named `journal`, one line per entry (part, id,
    /// reason, claim, whether its node's lease still holds), for operators and test
    /// failures.
    ///
    /// # Errors
    /// Database errors.
    pub fn pending_report(&self, journal: &str) -> Result<Vec<String>, ReversalError> {
        let journal = journal.to_string();
        self.inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let rows = c
                    .query(
                        "SELECT p.part, p.txn, p.reason, coalesce(p.claimed_by, '-'),
                                j.lease_until > now(), j.owner, p.message
                           FROM pending_reversal p JOIN journal_part j ON j.part = p.part
                          WHERE p.journal = $1 ORDER BY p.part, p.txn",
                        &[&journal],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (
                            format!(
                                "{} txn {} reason {} claimed by {} lease held {} owner {}",
                                r.get::<_, String>(0),
                                r.get::<_, i64>(1),
                                r.get::<_, i16>(2),
                                r.get::<_, String>(3),
                                r.get::<_, bool>(4),
                                r.get::<_, String>(5),
                            ),
                            r.get::<_, Vec<u8>>(6),
                        )
                    })
                    .collect::<Vec<_>>())
            })
            .map_err(self.inner.err("list pending reversals"))
            .map(|rows| {
                rows.into_iter()
                    .map(|(line, sealed)| {
                        match self.inner.unseal("pending_reversal", &line, &sealed) {
                            Ok(m) => format!(
                                "{line} message {} bytes mti {:02x?}",
                                m.len(),
                                m.get(..2).unwrap_or_default()
                            ),
                            Err(e) => format!("{line} message does not open: {e}"),
                        }
                    })
                    .collect()
            })
    }

    /// Key rotation: re-seals under the current data key every row sealed under a
    /// previous one (loaded with [`DataKeys::with_previous`]), in one transaction;
    /// returns how many rows it rewrote. Afterwards the previous key can be dropped
    /// (see [`crate::db::reseal_rotated`] for the ledger's hashes).
    ///
    /// # Errors
    /// Database errors; a row no loaded key opens (nothing is changed then).
    pub fn reseal(&self) -> Result<u64, ReversalError> {
        let keys = self.inner.keys.clone();
        self.inner
            .db
            .call(|pool| async move {
                let mut c = pool.get().await?;
                let tx = c.transaction().await?;
                let n = crate::db::reseal_rotated(&tx, &keys).await?;
                tx.commit().await?;
                Ok(n)
            })
            .map_err(self.inner.err("re-seal under the current data key"))
    }

    /// The ledger total of idempotency part `name` as the database holds it (every
    /// node's decisions), `None` when it has none.
    ///
    /// # Errors
    /// Database errors.
    pub fn ledger_total(&self, name: &str) -> Result<rust_decimal::Decimal, ReversalError> {
        let part = name.to_string();
        let text = self
            .inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let row = c
                    .query_one(
                        "SELECT coalesce(sum(total), 0)::text FROM host_ledger WHERE part = $1",
                        &[&part],
                    )
                    .await?;
                Ok(row.get::<_, String>(0))
            })
            .map_err(self.inner.err("ledger total"))?;
        text.parse().map_err(|_| {
            PgError::BadRow {
                table: "host_ledger",
                what: format!("total {text:?} is not a decimal"),
            }
            .into_reversal(&self.inner.db.describe, "ledger total")
        })
    }
}

impl Store for PgStore {
    type Journal = PgJournal;
    type Idempotency = PgIdempotency;
    type Counters = PgCounters;
    type Sessions = PgSessions;

    fn journal(&self, name: &str) -> Result<PgJournal, ReversalError> {
        let claim = self.claim("journal", name)?;
        PgJournal::open(self.inner.clone(), name, claim)
    }

    fn idempotency(&self, name: &str) -> Result<PgIdempotency, ReversalError> {
        let claim = self.claim("idempotency store", name)?;
        PgIdempotency::open(self.inner.clone(), name, claim)
    }

    fn counters(&self, name: &str) -> Result<PgCounters, ReversalError> {
        let claim = self.claim("counters", name)?;
        PgCounters::open(self.inner.clone(), name, claim)
    }

    fn sessions(&self, name: &str) -> Result<PgSessions, ReversalError> {
        let claim = self.claim("session store", name)?;
        Ok(PgSessions::new(self.inner.clone(), name, claim))
    }

    fn describe(&self) -> String {
        format!("{} (node {})", self.inner.db.describe, self.inner.node)
    }

    fn lease_renewal(&self) -> Option<Duration> {
        Some(self.inner.lease / 3)
    }

    fn renew_leases(&self) -> Result<(), ReversalError> {
        let node = self.inner.node.clone();
        let secs = self.inner.lease_secs();
        self.inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                c.execute(
                    "UPDATE journal_part SET lease_until = now() + make_interval(secs => $2), in_doubt_listed = false
                      WHERE owner = $1",
                    &[&node, &secs],
                )
                .await?;
                c.execute(
                    "UPDATE pending_reversal SET claim_until = now() + make_interval(secs => $2) WHERE claimed_by = $1",
                    &[&node, &secs],
                )
                .await?;
                Ok(())
            })
            .map_err(self.inner.err("renew leases"))
    }

    fn pending_tag(&self, journal: &str, tag: u64) -> Result<Option<bool>, ReversalError> {
        let journal = journal.to_string();
        // Tags are stored as the bits of an i64.
        let tag = tag as i64;
        self.inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let row = c
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pending_reversal WHERE journal = $1 AND tag = $2)",
                        &[&journal, &tag],
                    )
                    .await?;
                Ok(Some(row.get::<_, bool>(0)))
            })
            .map_err(self.inner.err("look up pending work"))
    }

    fn dead_journals(
        &self,
        journal: &str,
        max: usize,
    ) -> Result<Vec<(String, Vec<JournalRecord>)>, ReversalError> {
        let parts = self.dead_parts(journal, false, i64::try_from(max).unwrap_or(i64::MAX))?;
        let mut out = Vec::with_capacity(parts.len());
        for part in parts {
            let p = part.clone();
            let rows = self
                .inner
                .db
                .call(|pool| {
                    crate::db::payloads(
                        pool,
                        "SELECT payload FROM journal_record WHERE part = $1 ORDER BY seq",
                        p,
                    )
                })
                .map_err(self.inner.err("read a dead journal"));
            // A part that cannot be read (a record under a data key this node lacks) is
            // passed over, so that it does not hold up the others' finishing and retiring.
            match rows.and_then(|rows| {
                crate::journal::decode_rows(&self.inner, &part, &rows, "read a dead journal")
            }) {
                Ok(records) => out.push((part, records)),
                Err(e) => {
                    self.passed_over(&part, &e, "it is not finished or retired until it can be")
                }
            }
        }
        Ok(out)
    }

    fn retire_journal(&self, part: &str) -> Result<bool, ReversalError> {
        // What it leaves in doubt first becomes pending (and keeps it from retiring).
        self.list_part(part)?;
        let part = part.to_string();
        self.inner
            .db
            .call(|pool| async move {
                let mut c = pool.get().await?;
                let tx = c.transaction().await?;
                // Locked first: a node that comes back under this part renews its lease
                // through this row, and its records reference it.
                let dead = tx
                    .query(
                        "SELECT 1 FROM journal_part j
                          WHERE j.part = $1 AND j.lease_until < now() AND j.in_doubt_listed
                            AND NOT EXISTS (SELECT 1 FROM pending_reversal p WHERE p.part = $1)
                          FOR UPDATE",
                        &[&part],
                    )
                    .await?;
                if dead.is_empty() {
                    return Ok(false);
                }
                tx.execute("DELETE FROM journal_record WHERE part = $1", &[&part])
                    .await?;
                tx.execute("DELETE FROM journal_part WHERE part = $1", &[&part])
                    .await?;
                tx.commit().await?;
                Ok(true)
            })
            .map_err(self.inner.err("retire a dead journal"))
    }

    fn claim_orphans(&self, journal: &str, max: usize) -> Result<Vec<Orphan>, ReversalError> {
        // A listing that fails (the database away, or one part that cannot be listed:
        // logged per part) does not hold up the claim of the rows already there; it is
        // tried again at the next look, and a part is not retired before it is listed.
        if let Err(e) = self.list_in_doubt(journal) {
            tracing::warn!(node = %self.inner.node, error = %e, "looking for dead journals to list failed (tried again)");
        }
        let node = self.inner.node.clone();
        let secs = self.inner.lease_secs();
        let journal = journal.to_string();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self
            .inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let rows = c
                    .query(
                        "WITH due AS (
                            SELECT p.part, p.txn FROM pending_reversal p
                            JOIN journal_part j ON j.part = p.part
                            WHERE p.journal = $1 AND j.lease_until < now() AND j.owner <> $2
                              AND (p.claimed_by IS NULL OR p.claim_until < now())
                            ORDER BY p.txn, p.part
                            LIMIT $4
                            FOR UPDATE OF p SKIP LOCKED)
                         UPDATE pending_reversal p
                            SET claimed_by = $2, claim_until = now() + make_interval(secs => $3)
                           FROM due WHERE p.part = due.part AND p.txn = due.txn
                         RETURNING p.part, p.txn, p.tag, p.reason, p.message",
                        &[&journal, &node, &secs, &max],
                    )
                    .await?;
                Ok(rows)
            })
            .map_err(self.inner.err("claim pending reversals"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let reason: i16 = r.get(3);
            let bad = |what: String| {
                PgError::BadRow {
                    table: "pending_reversal",
                    what,
                }
                .into_reversal(&self.inner.db.describe, "claim pending reversals")
            };
            let reason = u8::try_from(reason)
                .ok()
                .and_then(|v| ReversalReason::from_u8(v).ok())
                .ok_or_else(|| bad(format!("reason {reason}")))?;
            let txn: i64 = r.get(1);
            let tag: i64 = r.get(2);
            let part: String = r.get(0);
            let message = self
                .inner
                .unseal(
                    "pending_reversal",
                    format_args!("{part} txn {txn}"),
                    r.get::<_, &[u8]>(4),
                )
                .map_err(self.inner.err("claim pending reversals"))?;
            out.push(Orphan {
                part,
                id: txn as u64,
                tag: tag as u64,
                reason,
                message: bytes::Bytes::from(message),
            });
        }
        if !out.is_empty() {
            tracing::info!(node = %self.inner.node, claimed = out.len(), "claimed reversals of a node whose lease ran out");
        }
        Ok(out)
    }

    fn hand_over(&self, orphan: &Orphan) -> Result<(), ReversalError> {
        let node = self.inner.node.clone();
        let part = orphan.part.clone();
        let txn = orphan.id as i64;
        let mut ack = Vec::new();
        JournalRecord::ReversalAcked {
            id: orphan.id,
            code: *crate::journal::HANDED_OVER,
        }
        .encode(&mut ack);
        let ack = self
            .inner
            .seal(&ack)
            .map_err(self.inner.err("hand over a reversal"))?;
        let taken = self
            .inner
            .db
            .call(|pool| async move {
                let mut c = pool.get().await?;
                let tx = c.transaction().await?;
                // The part's row shared first: a listing of the part in progress (which
                // holds it FOR UPDATE, having read its records without this hand-over)
                // finishes before the row is deleted here, so it cannot put the row back
                // after; the owner's appends (FOR NO KEY UPDATE) do not wait for it.
                tx.execute(
                    "SELECT 1 FROM journal_part WHERE part = $1 FOR KEY SHARE",
                    &[&part],
                )
                .await?;
                let n = tx
                    .execute(
                        "DELETE FROM pending_reversal WHERE part = $1 AND txn = $2 AND claimed_by = $3",
                        &[&part, &txn, &node],
                    )
                    .await?;
                if n == 1 {
                    tx.execute(
                        "INSERT INTO journal_record (part, payload) VALUES ($1, $2)",
                        &[&part, &ack],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(n == 1)
            })
            .map_err(self.inner.err("hand over a reversal"))?;
        if taken {
            Ok(())
        } else {
            Err(ReversalError::WrongState {
                txn: orphan.id,
                why: "its claim ran out and another node took it",
            })
        }
    }
}
