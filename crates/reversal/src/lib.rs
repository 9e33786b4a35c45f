//! # isoswitch-reversal
//!
//! Automatic, durable reversals for ISO 8583: a purchase whose response goes missing
//! may have debited the cardholder, so it is reversed — exactly once in effect, across
//! crashes, dropped connections and late responses.
//!
//! ## Module map
//! - [`record`] — the one on-disk format of every file (journal, store, counters,
//!   sessions): magic, then `len u32 | crc32 u32 | payload` records; torn-tail
//!   truncation, damage before the end reported as [`ReversalError::Corrupt`]; atomic
//!   rewrite ([`record::RecordFile`]).
//! - [`journal`] — the terminal's write-ahead journal: [`JournalRecord`]s, the
//!   [`Journal`] trait, [`FileJournal`] (fsync, recovery, compaction),
//!   [`MemoryJournal`], and [`GroupCommit`] (concurrent writers share one fsync).
//! - [`shared_journal`] — [`SharedJournal`]: many engines' journals in one file behind
//!   one [`GroupCommit`] thread (one fsync per group for all of them).
//! - [`profile`] — [`ReversalProfile`] per dialect (`cup-pos`, `iso87-*`, `iso93-ascii`):
//!   building the `0400`/`1420` from the original, DE 39 reasons, DE 90/56/60/61,
//!   the matching key [`TxnKey`].
//! - [`original`] — [`OriginalDataElements`]: DE 90 as a value type (reversals, voids,
//!   advices name their original with it).
//! - [`security`] — the MAC hook [`Security`]: [`NoMac`], [`ProfileMac`], and
//!   `isoswitch_session::TerminalSession`; [`Verify`] says bad MAC, undecodable, or
//!   "sign on again" (DE 39 `77`/`A0`, [`SIGN_ON_CODES`]).
//! - [`engine`] — [`ReversalEngine`], the sans-IO terminal/acquirer core: originals
//!   (reversed when in doubt and the profile says the kind is reversible), advices
//!   (stored and forwarded: repeated `xx21` until answered, never reversed), the caller's
//!   [`CallerTag`] on every transaction (journaled, in events, in
//!   [`ReversalEngine::recovered`]), "sign on again" ([`EngineEvent::SignOnRequired`],
//!   [`Outcome::NotActed`]); a switch that sends an original itself can hand over only its
//!   reversal ([`ReversalEngine::reverse_message`]).
//! - [`driver`] — [`ReversalDriver`], the tokio driver over `isoswitch_net::Client`
//!   and [`GroupCommit`], built with [`ReversalDriver::builder`] ([`DriverBuilder`]:
//!   late responses through [`LateResponses`], engine events, a sign-on hook); commands
//!   are handled in batches, one journal group per batch.
//! - [`group_sync`] — [`GroupSync`]: writers of one store share one flush ([`Durability`]: an `fdatasync`, a database transaction).
//! - [`host`] — [`ReversalHandler`], the idempotent host side: one-shot
//!   ([`ReversalHandler::handle`]) or, for a switch forwarding upstream, two-phase
//!   ([`ReversalHandler::admit`] → [`Admit`], [`ReversalHandler::complete`] →
//!   [`Completion`], with [`UpstreamAction`]s; [`ReversalHandler::admitted`] after a
//!   restart).
//! - [`store`] — the host's [`IdempotencyStore`] ([`MemoryStore`], durable
//!   [`FileStore`]; admitted originals as [`Admission`]s) and [`Ledger`] (checked
//!   arithmetic: an overflowing record is an error, never a panic).
//! - [`settlement`] — [`BatchTotals`], terminal [`Settlement`], [`HostSettlement`],
//!   [`Iso87Totals`].
//! - [`durable`] — the one store abstraction: [`Store`] hands out a switch's or host's
//!   durable parts by name (journal, idempotency store + ledger, counters, session
//!   store); [`SessionStore`] keeps sealed terminal and upstream-link snapshots.
//! - [`datadir`] — [`DataDir`], the embedded [`Store`]: one locked directory, one
//!   record file per part.
//! - [`memstore`] — [`MemoryDurable`], the same [`Store`] in memory for tests (clones
//!   share state: drop and reopen = a restart).
//! - [`metrics`] — what the driver and the journal record through the `metrics` facade
//!   (pending reversals and advices and their age, reversal attempts by outcome, journal
//!   sync latency and group size); the table of names is there.
//! - [`counters`] — [`FileCounters`]: STAN/RRN leased in blocks, batch, behind
//!   `isoswitch_session::counters::Counters`.
//! - [`sessions`] — [`FileSessionStore`]: the data directory's [`SessionStore`]; the
//!   glue to any session store: [`restore_host`], [`save_host_changes`],
//!   [`restore_link`], [`save_link_changes`].
//! - [`error`] — [`ReversalError`].
//!
//! ## Data flow
//! ```text
//! submit ─▶ ReversalEngine ─poll_journal─▶ Journal (fsync) ─handle_journaled─▶
//!        ─poll_transmit─▶ net Client ─▶ host: ReversalHandler ─commit─▶ IdempotencyStore
//!        ◀─handle_response / handle_send_failed / handle_timeout ─ in doubt ─▶ 0400/0401…
//! ```
//!
//! ## Example (sans-IO, no MAC, in-memory journal)
//! ```
//! use std::time::{Duration, Instant};
//! use isoswitch_codec::Message;
//! use isoswitch_reversal::{
//!     EngineConfig, EngineEvent, Journal, MemoryJournal, MemoryStore, NoMac, Outcome,
//!     ReversalEngine, ReversalHandler, ReversalProfile, HostConfig, Decision,
//! };
//! let profile = ReversalProfile::cup_pos().unwrap();
//! let dialect = profile.dialect.clone();
//! let mut journal = MemoryJournal::new();
//! let mut engine = ReversalEngine::new(EngineConfig::default(), profile.clone(), NoMac::new(dialect.clone()), 1);
//! let mut host = ReversalHandler::new(profile, MemoryStore::new(), HostConfig::default());
//!
//! let mut sale = Message::new(&dialect, "0200".parse().unwrap());
//! sale.set(2, "6222021234567890").unwrap().set(3, "000000").unwrap()
//!     .set(4, "000000001000").unwrap().set(41, "TERM0001").unwrap()
//!     .set(42, "MERCHANT0000001").unwrap().set(49, "156").unwrap();
//! let t0 = Instant::now();
//! engine.submit(t0, sale).unwrap();
//! // Write-ahead: the Started record is durable before anything is sent.
//! let recs: Vec<_> = std::iter::from_fn(|| engine.poll_journal()).collect();
//! journal.append(&recs).unwrap();
//! engine.handle_journaled(t0, engine.journal_seq());
//! let tx = engine.poll_transmit().unwrap();
//! // The host approves, but the response is lost: after the timeout the sale is in doubt.
//! let req = Message::decode(&dialect, tx.bytes.clone()).unwrap();
//! let _lost = host.handle(&req, |_, _| Decision::Approve { auth_code: None }).unwrap();
//! let t1 = t0 + Duration::from_secs(31);
//! engine.handle_timeout(t1);
//! let rev = engine.poll_transmit().unwrap(); // the 0400, reason 98
//! let rev_msg = Message::decode(&dialect, rev.bytes.clone()).unwrap();
//! assert_eq!(rev_msg.mti().as_str(), "0400");
//! let ack = host.handle(&rev_msg, |_, _| unreachable!()).unwrap();
//! engine.handle_response(t1, rev.id, ack.to_bytes().unwrap());
//! let recs: Vec<_> = std::iter::from_fn(|| engine.poll_journal()).collect();
//! journal.append(&recs).unwrap();
//! engine.handle_journaled(t1, engine.journal_seq());
//! assert!(matches!(engine.poll_event(), Some(EngineEvent::Completed { outcome: Outcome::Reversed { .. }, .. })));
//! assert!(matches!(engine.poll_event(), Some(EngineEvent::ReversalAcknowledged { .. })));
//! assert_eq!(host.ledger().total(), rust_decimal::Decimal::ZERO);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod counters;
pub mod datadir;
pub mod driver;
pub mod durable;
pub mod engine;
pub mod error;
pub mod group_sync;
pub mod host;
pub mod journal;
pub mod memstore;
pub mod metrics;
pub mod original;
pub mod profile;
pub mod record;
pub mod seal;
pub mod security;
pub mod sessions;
pub mod settlement;
pub mod shared_journal;
pub mod store;

pub use counters::FileCounters;
pub use datadir::{DataDir, DataDirConfig, Part, TornReport};
pub use driver::{
    DriverBuilder, DriverConfig, DriverStatus, LateResponses, ReversalDriver, Transport,
};
pub use durable::{Orphan, SessionStore, Store, UpstreamSave};
pub use engine::{
    journal_states, latest_by_tag, CallerTag, EngineConfig, EngineEvent, EngineStats,
    NotSentReason, Outcome, RecoveredState, RecoveredTxn, ReversalEngine, SendFailure, Transmit,
    TransmitId, TransmitKind, TxnId,
};
pub use error::{Result, ReversalError};
pub use group_sync::{settle, Durability, GroupSync};
pub use host::{
    Admit, Completion, Decision, HostConfig, HostStats, ReversalHandler, Ticket, UpstreamAction,
};
pub use journal::{FileJournal, Finish, GroupCommit, Journal, JournalRecord, MemoryJournal};
pub use memstore::{MemoryDurable, MemorySessions};
pub use original::OriginalDataElements;
pub use profile::{
    is_advice, may_be_advice, OriginalData, ReasonCodes, ReversalProfile, ReversalReason, TxnInfo,
    TxnKey, TxnKind,
};
/// The decimal type of amounts and totals (re-exported `rust_decimal`).
pub use rust_decimal::Decimal;
pub use security::{
    sign_on_code, verify_answer, Answer, NoMac, ProfileMac, Security, Verify, SIGN_ON_CODES,
};
pub use sessions::{
    restore_host, restore_link, save_host_changes, save_link_changes, FileSessionStore,
    RestoreReport, SessionRecord,
};
pub use settlement::{
    BatchTotals, HostSettlement, Iso87Totals, Settlement, SettlementConfig, SettlementOutcome,
    SettlementState, SideTotals, UploadEntry,
};
pub use shared_journal::SharedJournal;
pub use store::{
    Admission, FileStore, IdempotencyStore, Ledger, MemoryStore, StoreRecord, StoredTxn,
};
