//! The connection side: a small tokio runtime of the store's own, a
//! `deadpool-postgres` pool on it, the synchronous bridge the store traits need
//! ([`Db::call`]), and the versioned migrations ([`MIGRATIONS`], [`migrate`]).
//!
//! The store traits are synchronous (the engine's group-commit thread, the host
//! handler); a call sends its statement to the store's runtime and waits on a plain
//! channel for at most the configured timeout, so it works from inside or outside any
//! other runtime and never hangs on a database that went away.

use crate::error::PgError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::time::Duration;

/// The migrations, in order: `(version, file, SQL)`. Each is applied once, in one
/// transaction with its `schema_version` row.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "0001_initial.sql",
    include_str!("../migrations/0001_initial.sql"),
)];

/// The advisory lock key migrating nodes serialize on.
pub const MIGRATION_LOCK: i64 = 0x1505_0511_0000_0001;

/// Applies the migrations the database does not have yet; returns the version it is
/// at. Concurrent starters are serialized by a transaction-scoped advisory lock: the
/// second sees what the first applied.
///
/// # Errors
/// [`PgError::Migration`], [`PgError::SchemaTooNew`], connection errors.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<i32, PgError> {
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
        if version <= at {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|source| PgError::Migration {
                version,
                file,
                source,
            })?;
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
            migrate(&mut client).await
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

/// The `bytea` first column of `sql` (one parameter: the part), in order.
pub(crate) async fn payloads(
    pool: Pool,
    sql: &'static str,
    part: String,
) -> Result<Vec<Vec<u8>>, PgError> {
    let c = pool.get().await?;
    let rows = c.query(sql, &[&part]).await?;
    Ok(rows.into_iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
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
