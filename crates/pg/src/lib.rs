//! # isoswitch-pg
//!
//! The isoswitch store abstraction ([`isoswitch_reversal::durable::Store`]) on
//! PostgreSQL, so that several switch instances share one truth: a reversal sent until
//! acknowledged, exactly once, whichever node sends it; the same answer to a repeated
//! decision; no STAN reused on a shared link; terminal sessions and the upstream zone
//! keys. Built on `tokio-postgres` and `deadpool-postgres`, no ORM; the schema is
//! plain SQL files under `migrations/`, applied at start.
//!
//! No clear PAN at rest: every column that holds a PAN or an original message
//! (journal records, pending reversals, decisions) is sealed under the store's
//! [`DataKeys`](isoswitch_reversal::seal::DataKeys) — the same AES-256-GCM sealing,
//! key id in front, as the file store's records — and the ledger is keyed by the
//! PAN's keyed hash. Keys rotate ([`PgStore::reseal`]); a database written in clear
//! by schema version 1 is sealed by the migration to version 2 at start.
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
//!   `schema_version`, an advisory lock for concurrent starters), sealing rows
//!   ([`db::seal_clear_rows`], [`db::reseal_rotated`]).
//! - [`error`] — [`PgError`].
//! - `testing` (feature `testing`) — `TestCluster`: a throwaway PostgreSQL cluster
//!   for tests (`initdb` + `pg_ctl`, as `postgres` when root), or `ISOSWITCH_PG_URL`;
//!   `scan_database`, the PAN scan of every table.
//!
//! ```no_run
//! use isoswitch_pg::{PgConfig, PgStore};
//! use isoswitch_reversal::durable::Store;
//! use isoswitch_reversal::seal::DataKeys;
//! use isoswitch_session::counters::Counters;
//! let mut config = PgConfig::new("postgres://isoswitch@127.0.0.1:5432/isoswitch");
//! config.node = "switch-a".into();
//! let keys = std::sync::Arc::new(DataKeys::new(&[7; 32]).unwrap()); // from the KEK in programs
//! let store = PgStore::open(config, keys).unwrap();
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
