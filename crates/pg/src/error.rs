//! [`PgError`], the crate's error type, and its conversion to the store traits' error
//! ([`isoswitch_reversal::ReversalError::Database`]).

use isoswitch_reversal::ReversalError;

/// What can go wrong between a node and its database.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse.
    #[error("bad PostgreSQL URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    /// No connection could be had from the pool (server down, pool exhausted).
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The server refused a statement or the connection broke.
    #[error("{}", db_text(.0))]
    Db(#[from] tokio_postgres::Error),
    /// A migration failed (its transaction was rolled back).
    #[error("migration {version} ({file}): {}", db_text(.source))]
    Migration {
        /// Its version.
        version: i32,
        /// Its file under `migrations/`.
        file: &'static str,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database was migrated by a newer isoswitch-pg.
    #[error("the database schema is at version {found}; this build knows up to {known}")]
    SchemaTooNew {
        /// The version found.
        found: i32,
        /// The newest this build has.
        known: i32,
    },
    /// The statement did not finish in time (the node answers instead of hanging).
    #[error("no answer from the database within {0:?}")]
    Timeout(std::time::Duration),
    /// A row holds a value outside its range (a damaged or foreign table).
    #[error("table {table}: {what}")]
    BadRow {
        /// The table.
        table: &'static str,
        /// What is wrong.
        what: String,
    },
    /// A payload could not be sealed under the data key.
    #[error("cannot seal a row under the data key: {0}")]
    Seal(#[source] ReversalError),
    /// A sealed row does not open under the data keys loaded: sealed under a key that
    /// is not loaded (another key-encryption key, or a previous one after a rotation),
    /// or damaged.
    #[error("table {table}: {what} (sealed under data key {key}; loaded: {loaded}): start with the key-encryption key the database was written under (and the previous one after a rotation)")]
    Unseal {
        /// The table.
        table: &'static str,
        /// Which row, and why it does not open.
        what: String,
        /// The row's key id (hex).
        key: String,
        /// The key ids loaded.
        loaded: String,
    },
    /// Another node holds the lease on this journal.
    #[error("journal {part} is leased to node {owner}")]
    Leased {
        /// The part.
        part: String,
        /// The node holding it.
        owner: String,
    },
    /// This node's lease on the journal ran out and another node took it over.
    #[error("journal {part}: this node's lease was lost")]
    LeaseLost {
        /// The part.
        part: String,
    },
    /// The store's runtime is gone.
    #[error("the database runtime has stopped")]
    Stopped,
    /// The store's runtime could not be started.
    #[error("cannot start the database runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The server's own message (severity, SQLSTATE, text) where there is one; the
/// client's otherwise (`db error` alone says nothing).
pub fn db_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {}: {}", d.severity(), d.code().code(), d.message()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

impl PgError {
    /// As the store traits' error: `store` names the database, `op` what was done.
    pub fn into_reversal(self, store: &str, op: &'static str) -> ReversalError {
        let transient = self.is_transient();
        ReversalError::Database {
            store: store.to_string(),
            op,
            source: Box::new(self),
            transient,
        }
    }

    /// The database could not be reached (no connection from the pool, a connection
    /// closed or terminated by a restarting server, no answer in time): nothing was
    /// done and the same operation may succeed later. A refused statement, a lost
    /// lease, a row that does not open are not.
    pub fn is_transient(&self) -> bool {
        match self {
            PgError::Pool(_) | PgError::Timeout(_) => true,
            PgError::Db(e) => {
                e.is_closed()
                    || match e.code() {
                        // I/O or protocol: the connection went away.
                        None => true,
                        Some(c) => {
                            let c = c.code();
                            c.starts_with("08") || c.starts_with("57P") || c == "53300"
                        }
                    }
            }
            _ => false,
        }
    }
}
