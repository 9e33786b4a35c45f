//! The connection side: a small tokio runtime of the store's own, a
//! `deadpool-postgres` pool on it, the synchronous bridge the store traits need
//! (`Db::call`), the versioned migrations ([`MIGRATIONS`], [`migrate`]), and the
//! sealing of rows under the data keys ([`seal_clear_rows`], [`reseal_rotated`]).
//!
//! The store traits are synchronous (the engine's group-commit thread, the host
//! handler); a call sends its statement to the store's runtime and waits on a plain
//! channel for at most the configured timeout, so it works from inside or outside any
//! other runtime and never hangs on a database that went away.

use crate::error::PgError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use isoswitch_reversal::seal::DataKeys;
use std::future::Future;
use std::time::Duration;

/// The migrations, in order: `(version, file, SQL)`. Each is applied once, in one
/// transaction with its `schema_version` row. A migration whose SQL holds the line
/// [`SEAL_MARKER`] runs [`seal_clear_rows`] there, in the same transaction (version
/// 2: the rows version 1 wrote in clear are sealed before the clear column goes).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_initial.sql",
        include_str!("../migrations/0001_initial.sql"),
    ),
    (
        2,
        "0002_sealed.sql",
        include_str!("../migrations/0002_sealed.sql"),
    ),
    (
        3,
        "0003_decision_groups.sql",
        include_str!("../migrations/0003_decision_groups.sql"),
    ),
    (
        4,
        "0004_pending_by_txn.sql",
        include_str!("../migrations/0004_pending_by_txn.sql"),
    ),
    (
        5,
        "0005_sign_on_claims.sql",
        include_str!("../migrations/0005_sign_on_claims.sql"),
    ),
    (
        6,
        "0006_lighter_writes.sql",
        include_str!("../migrations/0006_lighter_writes.sql"),
    ),
    (
        7,
        "0007_in_doubt_listed.sql",
        include_str!("../migrations/0007_in_doubt_listed.sql"),
    ),
    (
        8,
        "0008_retire_once_listed.sql",
        include_str!("../migrations/0008_retire_once_listed.sql"),
    ),
];

/// The line of a migration where the store's sealing step runs ([`seal_clear_rows`]).
pub const SEAL_MARKER: &str = "\n-- @seal-clear-rows\n";

/// The columns that hold sealed payloads from schema version 2 on: `(table, column)`.
pub const SEALED_COLUMNS: &[(&str, &str)] = &[
    ("journal_record", "payload"),
    ("pending_reversal", "message"),
    ("host_decision", "payload"),
];

/// The advisory lock key migrating nodes serialize on.
pub const MIGRATION_LOCK: i64 = 0x1505_0511_0000_0001;

/// Rows rewritten per statement by the sealing steps.
const RESEAL_CHUNK: usize = 1000;

/// Applies the migrations the database does not have yet; returns the version it is
/// at. Concurrent starters are serialized by a transaction-scoped advisory lock: the
/// second sees what the first applied. `keys` seal what an older version left in
/// clear ([`seal_clear_rows`]).
///
/// # Errors
/// [`PgError::Migration`], [`PgError::SchemaTooNew`], connection errors.
pub async fn migrate(client: &mut tokio_postgres::Client, keys: &DataKeys) -> Result<i32, PgError> {
    migrate_to(client, keys, i32::MAX).await
}

/// As [`migrate`], up to version `upto` at most (tests build older databases with it).
///
/// # Errors
/// As [`migrate`].
pub async fn migrate_to(
    client: &mut tokio_postgres::Client,
    keys: &DataKeys,
    upto: i32,
) -> Result<i32, PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version    integer PRIMARY KEY,
            file       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await?;
    let mut at: i32 = row.get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if at > known {
        return Err(PgError::SchemaTooNew { found: at, known });
    }
    for &(version, file, sql) in MIGRATIONS {
        if version <= at || version > upto {
            continue;
        }
        let failed = |source| PgError::Migration {
            version,
            file,
            source,
        };
        match sql.split_once(SEAL_MARKER) {
            Some((before, after)) => {
                tx.batch_execute(before).await.map_err(failed)?;
                let n = seal_clear_rows(&tx, keys).await?;
                tracing::info!(version, rows = n, key = %hex(&keys.current_id()), "rows written in clear sealed under the data key");
                tx.batch_execute(after).await.map_err(failed)?;
            }
            None => tx.batch_execute(sql).await.map_err(failed)?,
        }
        tx.execute(
            "INSERT INTO schema_version (version, file) VALUES ($1, $2)",
            &[&version, &file],
        )
        .await?;
        tracing::info!(version, file, "database migrated");
        at = version;
    }
    tx.commit().await?;
    Ok(at)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Rewrites `column` of every row of `table` that `pick` selects (`None`: leave it)
/// through `rewrite`; returns how many rows changed. Rows are addressed by `ctid`
/// (stable within the transaction: they are locked `FOR UPDATE`).
async fn rewrite_column(
    tx: &tokio_postgres::Transaction<'_>,
    table: &'static str,
    column: &'static str,
    filter: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    mut rewrite: impl FnMut(&[u8]) -> Result<Vec<u8>, PgError>,
) -> Result<u64, PgError> {
    let rows = tx
        .query(
            &format!("SELECT ctid::text, {column} FROM {table} {filter} FOR UPDATE"),
            params,
        )
        .await?;
    let update = format!(
        "UPDATE {table} SET {column} = u.v FROM unnest($1::text[], $2::bytea[]) AS u(c, v)
          WHERE {table}.ctid = u.c::tid"
    );
    let mut n = 0u64;
    for chunk in rows.chunks(RESEAL_CHUNK) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut values = Vec::with_capacity(chunk.len());
        for r in chunk {
            ids.push(r.get::<_, String>(0));
            values.push(rewrite(r.get::<_, &[u8]>(1))?);
        }
        n += tx.execute(&update, &[&ids, &values]).await?;
    }
    Ok(n)
}

/// The sealing step of migration 2: seals every payload of [`SEALED_COLUMNS`] (all
/// of them in clear at version 1) under the current data key, and fills
/// `host_ledger.pan_hash` from the clear `pan`. Returns the rows rewritten.
///
/// # Errors
/// Database errors; [`PgError::Seal`].
pub async fn seal_clear_rows(
    tx: &tokio_postgres::Transaction<'_>,
    keys: &DataKeys,
) -> Result<u64, PgError> {
    let mut n = 0;
    for &(table, column) in SEALED_COLUMNS {
        n += rewrite_column(tx, table, column, "", &[], |clear| seal(keys, clear)).await?;
    }
    let rows = tx
        .query("SELECT ctid::text, pan FROM host_ledger FOR UPDATE", &[])
        .await?;
    for chunk in rows.chunks(RESEAL_CHUNK) {
        let ids: Vec<String> = chunk.iter().map(|r| r.get(0)).collect();
        let hashes: Vec<Vec<u8>> = chunk
            .iter()
            .map(|r| keys.pan_hash(r.get::<_, &str>(1)).to_vec())
            .collect();
        n += tx
            .execute(
                "UPDATE host_ledger SET pan_hash = u.h FROM unnest($1::text[], $2::bytea[]) AS u(c, h)
                  WHERE host_ledger.ctid = u.c::tid",
                &[&ids, &hashes],
            )
            .await?;
    }
    Ok(n)
}

/// Rotation: re-seals under the current data key every payload of [`SEALED_COLUMNS`]
/// sealed under another (a previous key, which must be loaded); returns the rows
/// rewritten. After it, the previous key is no longer needed to open the rows.
/// `host_ledger` rows keyed by an older key's PAN hash stay as they are (the PAN
/// cannot be had from its hash): totals are unchanged, a card's later moves go to its
/// row under the current key's hash.
///
/// # Errors
/// Database errors; [`PgError::Unseal`] for a row no loaded key opens.
pub async fn reseal_rotated(
    tx: &tokio_postgres::Transaction<'_>,
    keys: &DataKeys,
) -> Result<u64, PgError> {
    let current = keys.current_id().to_vec();
    let mut n = 0;
    for &(table, column) in SEALED_COLUMNS {
        let filter = format!("WHERE substr({column}, 1, 4) <> $1");
        n += rewrite_column(tx, table, column, &filter, &[&current], |sealed| {
            let clear = unseal(keys, table, "a row", sealed)?;
            seal(keys, &clear)
        })
        .await?;
    }
    Ok(n)
}

/// `clear` sealed under the current data key.
pub(crate) fn seal(keys: &DataKeys, clear: &[u8]) -> Result<Vec<u8>, PgError> {
    let mut out = Vec::with_capacity(clear.len() + isoswitch_reversal::seal::SEAL_OVERHEAD);
    keys.seal_into(clear, &mut out).map_err(PgError::Seal)?;
    Ok(out)
}

/// A sealed column opened; `what` names the row in the error.
pub(crate) fn unseal(
    keys: &DataKeys,
    table: &'static str,
    what: impl std::fmt::Display,
    sealed: &[u8],
) -> Result<Vec<u8>, PgError> {
    let mut out = Vec::with_capacity(sealed.len());
    keys.open_into(sealed, &mut out)
        .map_err(|e| PgError::Unseal {
            table,
            what: format!("{what}: {e}"),
            key: sealed.get(..4).map(hex).unwrap_or_default(),
            loaded: format!("{keys:?}"),
        })?;
    Ok(out)
}

/// The runtime, the pool and the bridge; shared by every part of a store.
pub(crate) struct Db {
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pub(crate) pool: Pool,
    pub(crate) describe: String,
    timeout: Duration,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("describe", &self.describe)
            .finish_non_exhaustive()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // May be dropped inside another runtime: never block here.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Db {
    /// Connects (lazily: the pool opens connections on demand) and migrates.
    pub(crate) fn open(
        url: &str,
        pool_size: usize,
        timeout: Duration,
        keys: std::sync::Arc<DataKeys>,
    ) -> Result<(Db, i32), PgError> {
        let mut pg: tokio_postgres::Config = url.parse().map_err(PgError::Url)?;
        pg.connect_timeout(timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("isoswitch");
        }
        let describe = describe(&pg);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("isoswitch-pg")
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        let handle = rt.handle().clone();
        let mgr = Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _enter = rt.enter();
            Pool::builder(mgr)
                .max_size(pool_size.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(timeout))
                .create_timeout(Some(timeout))
                .recycle_timeout(Some(timeout))
                .build()
                .map_err(|e| PgError::BadRow {
                    table: "-",
                    what: format!("pool: {e}"),
                })?
        };
        let db = Db {
            rt: Some(rt),
            handle,
            pool,
            describe,
            timeout,
        };
        let version = db.call(|pool| async move {
            let mut client = pool.get().await?;
            migrate(&mut client, &keys).await
        })?;
        Ok((db, version))
    }

    /// Runs `f` on the store's runtime and waits for it, at most the timeout.
    pub(crate) fn call<T, F, Fut>(&self, f: F) -> Result<T, PgError>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T, PgError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.pool.clone());
        let timeout = self.timeout;
        self.handle.spawn(async move {
            let r = match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(PgError::Timeout(timeout)),
            };
            let _ = tx.send(r);
        });
        // The task answers within the timeout; the margin covers a busy runtime.
        match rx.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(PgError::Timeout(timeout)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(PgError::Stopped),
        }
    }
}

/// The rows of `sql`, whose one parameter is the part.
async fn rows_of_part(
    pool: Pool,
    sql: &'static str,
    part: String,
) -> Result<Vec<tokio_postgres::Row>, PgError> {
    let c = pool.get().await?;
    Ok(c.query(sql, &[&part]).await?)
}

/// The `bytea` first column of `sql` (one parameter: the part), in order.
pub(crate) async fn payloads(
    pool: Pool,
    sql: &'static str,
    part: String,
) -> Result<Vec<Vec<u8>>, PgError> {
    let rows = rows_of_part(pool, sql, part).await?;
    Ok(rows.into_iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
}

/// Like [`payloads`] for a query that selects `seq, payload` in no particular order:
/// the payloads in `seq` order, sorted here (`host_decision` has no index on its `seq`:
/// the server would sort the whole part, on disk beyond `work_mem`).
pub(crate) async fn payloads_by_seq(
    pool: Pool,
    sql: &'static str,
    part: String,
) -> Result<Vec<Vec<u8>>, PgError> {
    let mut rows: Vec<(i64, Vec<u8>)> = rows_of_part(pool, sql, part)
        .await?
        .into_iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1)))
        .collect();
    rows.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(rows.into_iter().map(|(_, p)| p).collect())
}

/// `postgres user@host:port/db` (no password).
fn describe(pg: &tokio_postgres::Config) -> String {
    let host = pg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres {}@{host}:{port}/{}",
        pg.get_user().unwrap_or("?"),
        pg.get_dbname().unwrap_or("?")
    )
}
