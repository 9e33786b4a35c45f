//! [`ReversalError`], the crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the journal, the stores, the engine, the host
/// handler and settlement.
#[derive(Debug, thiserror::Error)]
pub enum ReversalError {
    /// An operating-system I/O error on a journal or store file.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`open`, `append`, `fsync`, `rename`…).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the expected magic bytes: not a journal of this
    /// version (never truncated or overwritten).
    #[error("{path} is not a journal of this format (bad magic)")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// A record to write is larger than [`crate::record::MAX_RECORD_LEN`].
    #[error("record of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge {
        /// The payload length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A file sealed under a data key, opened without one.
    #[error(
        "{path} is sealed under a data key: start with the data key it was written under (--kek)"
    )]
    SealedFile {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A data key that cannot seal records (see [`crate::seal::DataKeys`]), or a file
    /// whose sealing does not match the keys given.
    #[error("data key: {0}")]
    DataKey(&'static str),
    /// A record whose length and CRC are valid but whose content does not parse
    /// (another version, or a bug): reported, never truncated away.
    #[error("bad record at byte {offset}: {what}")]
    BadRecord {
        /// Byte offset of the record in its file (0 when not read from a file).
        offset: u64,
        /// What was wrong.
        what: &'static str,
    },
    /// A journal record that decodes but cannot be recovered (an id or amount that
    /// overflows, a message that does not decode): record `index` (0-based, in journal
    /// order) of the records given to [`crate::engine::ReversalEngine::recover`].
    /// [`crate::Journal::locate`] turns it into [`ReversalError::Corrupt`] naming the
    /// file and the record's byte offset.
    #[error("journal record {index}: {what}")]
    BadJournalRecord {
        /// The record's position among the recovered records.
        index: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// A file of the data directory is damaged before its end (a record that fails its
    /// CRC is followed by valid records, or a CRC-valid record does not parse or holds
    /// a value out of range): not a torn write, so nothing is truncated; the file is
    /// left as it is for inspection.
    #[error("{path} is damaged at byte {offset}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the damaged record in the file.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// Another process (or another [`crate::datadir::DataDir`] in this one) holds the
    /// data directory's lock.
    #[error("data directory {path} is in use by another process (lock held on {lock})")]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// A store part name that is not 1–64 of `A–Z a–z 0–9 _ - .` (not starting with `.`).
    #[error("bad store part name {name:?}: 1-64 of A-Z a-z 0-9 _ - . expected")]
    BadPartName {
        /// The name asked for.
        name: String,
    },
    /// A store part is already open (each journal, store, counters or session store is
    /// owned by one handle at a time).
    #[error("{kind} {name:?} is already open")]
    PartInUse {
        /// `journal`, `idempotency store`, `counters` or `session store`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A message could not be built, encoded or decoded.
    #[error("codec: {0}")]
    Codec(#[from] isoswitch_codec::CodecError),
    /// Sealing (MAC) or a session-layer check failed.
    #[error("session: {0}")]
    Session(#[from] isoswitch_session::SessionError),
    /// A field the operation needs is absent.
    #[error("field {field} ({what}) is missing")]
    MissingField {
        /// The field number.
        field: u8,
        /// What it should hold.
        what: &'static str,
    },
    /// A field holds a value the operation cannot use.
    #[error("field {field} ({what}) has a bad value")]
    BadField {
        /// The field number.
        field: u8,
        /// What it should hold.
        what: &'static str,
    },
    /// No reversal profile exists for this dialect name.
    #[error("no reversal profile for dialect {name}")]
    UnknownDialect {
        /// The name asked for.
        name: String,
    },
    /// The operation does not apply to this transaction in its current state.
    #[error("transaction {txn}: {why}")]
    WrongState {
        /// The engine's transaction id.
        txn: u64,
        /// Why not.
        why: &'static str,
    },
    /// The message is of a type this operation does not handle.
    #[error("message {mti}: {why}")]
    UnexpectedMessage {
        /// Its MTI.
        mti: isoswitch_codec::Mti,
        /// Why it is unexpected.
        why: &'static str,
    },
    /// Settlement cannot start or go on.
    #[error("settlement: {why}")]
    Settlement {
        /// Why.
        why: &'static str,
    },
    /// The host refused a settlement message: its answer carried `code` in DE 39
    /// instead of `00` (`77`: the terminal is not signed on, for instance after the
    /// sign-off that ends the previous batch's settlement — sign on, then settle again).
    #[error("settlement refused: answered {}", String::from_utf8_lossy(code))]
    SettlementRefused {
        /// DE 39 of the answer.
        code: [u8; 2],
    },
    /// The driver task is gone (shut down or failed).
    #[error("the reversal driver has stopped")]
    DriverStopped,
    /// A database store's error (the store names what it was doing).
    #[error("{store}: {op}: {source}")]
    Database {
        /// The store (`postgres 127.0.0.1:5432/isoswitch`).
        store: String,
        /// What was being done (`journal append`, `claim pending reversals`…).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        /// The database could not be reached (no connection, restarting, no answer in
        /// time): nothing was done, and the same operation may succeed later.
        transient: bool,
    },
    /// Another node recorded a decision on this key first: nothing of this one was
    /// applied; the stored one now answers (the caller answers `96`, the repeat gets
    /// the stored answer).
    #[error("transaction {key}: another node decided it first")]
    DecidedElsewhere {
        /// The key (terminal, merchant, batch, STAN).
        key: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ReversalError> = std::result::Result<T, E>;

impl ReversalError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        ReversalError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// A database that could not be reached ([`ReversalError::Database`] with
    /// `transient`): the operation may be tried again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ReversalError::Database {
                transient: true,
                ..
            }
        )
    }

    pub(crate) fn bad(what: &'static str) -> Self {
        ReversalError::BadRecord { offset: 0, what }
    }
}
