//! # isoswitch-pg
//!
//! The isoswitch store abstraction ([`isoswitch_reversal::durable::Store`]) on
//! PostgreSQL, so that several switch instances share one truth: a reversal sent until
//! acknowledged, exactly once, whichever node sends it; the same answer to a repeated
//! decision; no STAN reused on a shared link; terminal sessions and the upstream zone
//! keys. Built on `tokio-postgres` and `deadpool-postgres`, no ORM; the schema is
//! plain SQL files under `migrations/`, applied at start.
//!
//! ## Module map
//! - [`store`] — [`PgStore`] (the [`Store`](isoswitch_reversal::durable::Store)),
//!   [`PgConfig`] (URL, node name, lease, STAN block): which part lives in which table,
//!   leases, claiming a dead node's pending reversals
//!   ([`Store::claim_orphans`](isoswitch_reversal::durable::Store::claim_orphans),
//!   `FOR UPDATE SKIP LOCKED`) and handing them over.
//! - [`journal`] — [`PgJournal`]: one node's engine journal; group commit = one
//!   transaction (multi-row insert) per batch, acknowledged after the commit; keeps
//!   `pending_reversal` in step.
//! - [`idempotency`] — [`PgIdempotency`]: host decisions (`INSERT … ON CONFLICT`) with
//!   the ledger effect in the same statement; other nodes' decisions read on refresh.
//! - [`counters`] — [`PgCounters`]: STAN/RRN blocks leased from the database, batch.
//! - [`sessions`] — [`PgSessions`]: sealed terminal and upstream snapshots, the
//!   upstream generation compare-and-set.
//! - [`db`] — the store's runtime and pool, the synchronous bridge with its timeout,
//!   the versioned migrations ([`db::MIGRATIONS`], [`db::migrate`]: one transaction,
//!   `schema_version`, an advisory lock for concurrent starters).
//! - [`error`] — [`PgError`].
//! - `testing` (feature `testing`) — `TestCluster`: a throwaway PostgreSQL cluster
//!   for tests (`initdb` + `pg_ctl`, as `postgres` when root), or `ISOSWITCH_PG_URL`.
//!
//! ```no_run
//! use isoswitch_pg::{PgConfig, PgStore};
//! use isoswitch_reversal::durable::Store;
//! use isoswitch_session::counters::Counters;
//! let mut config = PgConfig::new("postgres://isoswitch@127.0.0.1:5432/isoswitch");
//! config.node = "switch-a".into();
//! let store = PgStore::open(config).unwrap();
//! let mut stans = store.counters("upstream").unwrap();
//! let stan = stans.next_stan().unwrap(); // from a block no other node holds
//! # let _ = stan;
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod counters;
pub mod db;
pub mod error;
pub mod idempotency;
pub mod journal;
pub mod sessions;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use counters::PgCounters;
pub use error::PgError;
pub use idempotency::PgIdempotency;
pub use isoswitch_reversal::ReversalError;
pub use journal::PgJournal;
pub use sessions::PgSessions;
pub use store::{default_node, PgConfig, PgStore, DEFAULT_BLOCK, DEFAULT_LEASE};
