//! The crate's error type.
//!
//! One enum for the whole crate. Variants say what was wrong and, where it helps,
//! what was expected. No variant ever carries key material, a clear PIN or a clear
//! PIN block: errors are logged, and logs must stay free of secrets.

use std::path::PathBuf;

use isoswitch_codec::{CodecError, Mti};

use crate::crypto::keys::KeyKind;
use crate::crypto::pin::PinBlockFormat;
use crate::crypto::tr31::{KeyOperation, KeyUsage, ModeOfUse};
use crate::response_code::ResponseCode;
use crate::terminal::TerminalState;
use crate::working_keys::{KeyRole, KeyScheme};

/// Result alias used throughout the crate.
pub type Result<T, E = SessionError> = std::result::Result<T, E>;

/// Everything that can go wrong in `isoswitch-session`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Key material of a length the requested algorithm does not accept.
    #[error("wrong key length for {algorithm}: expected one of {expected:?} bytes, found {found}")]
    WrongKeyLength {
        /// The algorithm family asked for ("DES", "TDES", "AES", …).
        algorithm: &'static str,
        /// The accepted lengths in bytes.
        expected: &'static [usize],
        /// The length supplied.
        found: usize,
    },

    /// A key of the wrong algorithm for the operation (e.g. an AES key for X9.19).
    #[error("wrong key algorithm: expected {expected}, found {found:?}")]
    WrongKeyAlgorithm {
        /// What the operation needs.
        expected: &'static str,
        /// What was supplied.
        found: KeyKind,
    },

    /// An encrypted key of a length that cannot hold the expected kind of key.
    #[error("encrypted key of {found} bytes: expected one of {expected:?}")]
    BadEncryptedKeyLength {
        /// The accepted lengths in bytes.
        expected: &'static [usize],
        /// The length supplied.
        found: usize,
    },

    /// Data for a block-cipher operation that is not a whole number of blocks.
    #[error("{found} bytes is not a whole number of {block}-byte blocks")]
    BadDataLength {
        /// The cipher's block length.
        block: usize,
        /// The length supplied.
        found: usize,
    },

    /// A received key check value did not match the key.
    #[error("key check value mismatch")]
    KcvMismatch,

    /// A received key check value of an unusable length.
    #[error("key check value length {found} outside {min}..={max}")]
    BadKcvLength {
        /// Shortest accepted length.
        min: usize,
        /// Longest accepted length (the full check block).
        max: usize,
        /// The length supplied.
        found: usize,
    },

    /// A KCV method that does not apply to the key (e.g. an AES method on a DES key).
    #[error("KCV method {method} does not apply to a {found:?} key")]
    KcvMethodMismatch {
        /// The method's name.
        method: &'static str,
        /// The key kind supplied.
        found: KeyKind,
    },

    /// A received MAC did not match the computed one.
    #[error("MAC verification failed")]
    MacMismatch,

    /// A MAC (received, or a requested truncation) of an unusable length.
    #[error("MAC length {found} outside {min}..={max}")]
    BadMacLength {
        /// Shortest accepted length.
        min: usize,
        /// Longest accepted length (the full MAC).
        max: usize,
        /// The length supplied.
        found: usize,
    },

    /// A PIN that is not 4 to 12 characters long.
    #[error("PIN length {found} outside 4..=12")]
    BadPinLength {
        /// The length supplied.
        found: usize,
    },

    /// A PIN containing something other than the digits 0–9.
    #[error("PIN is not all decimal digits")]
    PinNotNumeric,

    /// A primary account number that is not 12 to 19 digits.
    #[error("bad PAN: {defect}")]
    BadPan {
        /// What is wrong with it.
        defect: PanDefect,
    },

    /// A PIN block format that needs the PAN was used without one.
    #[error("PIN block format {format} needs the PAN")]
    PanRequired {
        /// The format.
        format: PinBlockFormat,
    },

    /// Encrypted PIN block bytes of the wrong length for the format.
    #[error("PIN block for {format} must be {expected} bytes, found {found}")]
    BadPinBlockLength {
        /// The format.
        format: PinBlockFormat,
        /// 8 for formats 0, 1, 3; 16 for format 4.
        expected: usize,
        /// The length supplied.
        found: usize,
    },

    /// A deciphered PIN block that is not well formed (wrong key, wrong PAN or wrong
    /// format are the usual causes). Answered with response code 99 by hosts.
    #[error("malformed {format} PIN block: {defect}")]
    BadPinBlock {
        /// The format the block was deciphered as.
        format: PinBlockFormat,
        /// What was wrong (never the PIN digits themselves).
        defect: PinBlockDefect,
    },

    /// Too few fill nibbles supplied for a PIN block.
    #[error("{format} PIN block needs {needed} fill nibbles, {found} supplied")]
    FillTooShort {
        /// The format.
        format: PinBlockFormat,
        /// Nibbles needed.
        needed: usize,
        /// Nibbles supplied.
        found: usize,
    },

    /// A fill nibble outside the range the format allows (A–F for format 3, 0–F
    /// otherwise).
    #[error("fill nibble {position} out of range for {format}")]
    BadFillNibble {
        /// The format.
        format: PinBlockFormat,
        /// Index of the offending nibble in the supplied fill.
        position: usize,
    },

    /// A PIN translation between two formats that this crate refuses.
    #[error("PIN translation from {from} to {to} is not allowed")]
    TranslationNotAllowed {
        /// Source format.
        from: PinBlockFormat,
        /// Target format.
        to: PinBlockFormat,
    },

    /// The operating system's random number generator failed.
    #[error("OS random number generator failed")]
    Rng(#[source] rand::Error),

    /// A counter value outside its range (STAN and batch number: 1..=999999).
    #[error("{counter} value {value} outside 1..={max}")]
    CounterOutOfRange {
        /// Which counter ("STAN", "batch number", "RRN").
        counter: &'static str,
        /// The value supplied.
        value: u64,
        /// The largest allowed value.
        max: u64,
    },

    /// A retrieval reference number that is not 12 printable ASCII characters.
    #[error("RRN must be 12 ASCII alphanumeric or space characters")]
    BadRrn,

    /// An I/O failure on a durable counters file (the file implementation lives in
    /// `isoswitch-reversal`; the [`crate::counters::Counters`] trait returns this).
    #[error("counters file {path}: {source}")]
    CounterIo {
        /// The file being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A sealed session snapshot did not authenticate under the key-encryption key:
    /// the wrong KEK, or the snapshot was altered (or belongs to another terminal).
    #[error("session snapshot of {terminal} does not authenticate (wrong key-encryption key or altered)")]
    SnapshotAuth {
        /// The terminal the snapshot claims to be for.
        terminal: String,
    },

    /// A sealed session snapshot (or its decrypted content) is malformed.
    #[error("session snapshot malformed at byte {offset}: {what}")]
    SnapshotFormat {
        /// Byte offset in the sealed snapshot (or its plaintext) where reading stopped.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },

    /// A snapshot was offered to the session of another terminal.
    #[error("snapshot of {found} cannot be restored into the session of {expected}")]
    SnapshotMismatch {
        /// The session's terminal.
        expected: String,
        /// The snapshot's terminal.
        found: String,
    },

    /// A clear PIN block was asked for a format whose output is only ever enciphered
    /// (format 4).
    #[error("no clear PIN block for {format}: it is only produced enciphered")]
    ClearBlockUnavailable {
        /// The format.
        format: PinBlockFormat,
    },

    /// A message could not be decoded or encoded in the session's dialect.
    #[error("message codec: {0}")]
    Codec(#[from] CodecError),

    /// A session profile that cannot work with its dialect (a field it needs is not
    /// defined, the MAC field is not binary, the MAC algorithm does not fit the keys…).
    #[error("session profile for dialect {dialect}: {what}")]
    BadProfile {
        /// The dialect's name.
        dialect: String,
        /// What is wrong.
        what: &'static str,
    },

    /// An operation the terminal session's current state does not allow (e.g. an
    /// online message before sign-on, a sign-off while a sign-on is pending).
    #[error("{operation} not allowed while the terminal is {state:?}")]
    WrongState {
        /// What was attempted.
        operation: &'static str,
        /// The state the session was in.
        state: TerminalState,
    },

    /// A network-management exchange (sign-on, echo, sign-off) is already waiting for
    /// its response.
    #[error("a network-management exchange is already pending")]
    ExchangePending,

    /// The terminal or host has no working keys for this terminal (never signed on,
    /// signed off, or keys invalidated after a MAC failure or key change).
    #[error("terminal {terminal} is not signed on")]
    NotSignedOn {
        /// `TID/MID` of the terminal.
        terminal: String,
    },

    /// The host does not know the terminal (it is not in the key store).
    #[error("terminal {terminal} is not registered")]
    UnknownTerminal {
        /// `TID/MID` of the terminal.
        terminal: String,
    },

    /// A message the session did not expect in this direction or state (a request
    /// where a response was due, a response nobody asked for, a management code the
    /// profile does not know, a sign-on response for another terminal or STAN).
    #[error("unexpected message {mti}: {why}")]
    UnexpectedMessage {
        /// The message type.
        mti: Mti,
        /// Why it was not expected.
        why: &'static str,
    },

    /// A field the session needs is missing from a message.
    #[error("message {mti} lacks field {field}")]
    MissingField {
        /// The message type.
        mti: Mti,
        /// The field number.
        field: u8,
    },

    /// A field holds a value the session cannot use (never the value itself: it may be
    /// sensitive).
    #[error("field {field} is not a valid {what}")]
    BadFieldValue {
        /// The field number.
        field: u8,
        /// What it should have been, e.g. `STAN` or `batch number`.
        what: &'static str,
    },

    /// The host declined the sign-on (DE 39 other than `00`).
    #[error("sign-on declined with response code {code}")]
    SignOnDeclined {
        /// The response code from the 0810.
        code: ResponseCode,
    },

    /// A working-key block (cup-pos DE 62, iso87 DE 48) of the wrong length for the
    /// key scheme that was asked for.
    #[error("working-key block for {scheme:?} must be {expected} bytes, found {found}")]
    KeyBlockLength {
        /// The scheme asked for in the sign-on.
        scheme: KeyScheme,
        /// Its block length.
        expected: usize,
        /// The length received.
        found: usize,
    },

    /// A working key decrypted from a sign-on response does not match the check value
    /// sent with it (wrong terminal master key, or a corrupted message).
    #[error("{role} check value mismatch")]
    WorkingKeyCheck {
        /// Which working key.
        role: KeyRole,
    },

    /// A working key of a kind the MAC algorithm or key scheme cannot use.
    #[error("{role} of kind {found:?} does not fit: {expected}")]
    WorkingKeyKind {
        /// Which working key.
        role: KeyRole,
        /// What was needed.
        expected: &'static str,
        /// What was supplied.
        found: KeyKind,
    },

    /// A working key the scheme requires was not supplied (the TDK of
    /// [`KeyScheme::DoubleWithTdk`]).
    #[error("the key scheme requires a {role}")]
    MissingWorkingKey {
        /// Which working key.
        role: KeyRole,
    },

    /// A field follows the MAC field, which must be the last field of a message.
    #[error("field {after} follows the MAC field {mac_field}")]
    MacFieldNotLast {
        /// The MAC field (64 or 128).
        mac_field: u8,
        /// The first field after it.
        after: u8,
    },

    /// More online requests awaiting a response than the session allows.
    #[error("{max} online requests already await a response")]
    TooManyInFlight {
        /// The configured limit.
        max: usize,
    },

    /// The host holds as many terminal sessions as it is configured for.
    #[error("host session table full ({max} terminals)")]
    SessionTableFull {
        /// The configured limit.
        max: usize,
    },

    /// A DUKPT input or state that cannot work (see [`DukptError`]).
    #[error("DUKPT: {0}")]
    Dukpt(#[from] DukptError),

    /// A TR-31 / ANSI X9.143 key block that cannot be parsed, built, unwrapped or used
    /// as asked (see [`KeyBlockError`]).
    #[error("TR-31 key block: {0}")]
    KeyBlock(#[from] KeyBlockError),

    /// A terminal or merchant identifier of the wrong length or character set.
    #[error("bad {what}: must be {len} printable ASCII characters")]
    BadTerminalId {
        /// `terminal ID (DE 41)` or `merchant ID (DE 42)`.
        what: &'static str,
        /// The required length.
        len: usize,
    },
}

/// What is wrong with a primary account number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanDefect {
    /// Not 12 to 19 digits long.
    Length {
        /// The length supplied.
        found: usize,
    },
    /// A character other than 0–9 at this index.
    NotDigit {
        /// Index of the first offending character.
        position: usize,
    },
    /// The last digit is not the Luhn (mod 10) check digit of the others.
    CheckDigit,
}

impl std::fmt::Display for PanDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PanDefect::Length { found } => write!(f, "length {found} outside 12..=19"),
            PanDefect::NotDigit { position } => write!(f, "non-digit at index {position}"),
            PanDefect::CheckDigit => f.write_str("the Luhn check digit is wrong"),
        }
    }
}

/// What is wrong with a deciphered PIN block. Deliberately coarse: it never says which
/// digit was bad or what it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinBlockDefect {
    /// The control nibble is not the format's number.
    ControlField {
        /// The nibble found.
        found: u8,
    },
    /// The PIN length nibble is outside 4..=12.
    PinLength {
        /// The nibble found.
        found: u8,
    },
    /// A PIN position holds a nibble above 9.
    PinDigit,
    /// The fill nibbles are not what the format requires.
    Fill,
}

impl std::fmt::Display for PinBlockDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinBlockDefect::ControlField { found } => {
                write!(f, "control field {found:X}")
            }
            PinBlockDefect::PinLength { found } => write!(f, "PIN length nibble {found:X}"),
            PinBlockDefect::PinDigit => f.write_str("non-decimal PIN digit"),
            PinBlockDefect::Fill => f.write_str("bad fill"),
        }
    }
}

/// What is wrong with a DUKPT input or device (ANSI X9.24-1 TDES, X9.24-3 AES).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DukptError {
    /// A key serial number of the wrong length (10 bytes for TDES, 12 for AES).
    #[error("KSN must be {expected} bytes, found {found}")]
    KsnLength {
        /// 10 (TDES) or 12 (AES).
        expected: usize,
        /// The length supplied.
        found: usize,
    },
    /// A base derivation key (or initial key) of a kind the scheme does not use.
    #[error("{scheme} needs {expected}, found a {found:?} key")]
    BaseKeyKind {
        /// "TDES DUKPT" or "AES DUKPT".
        scheme: &'static str,
        /// What is accepted.
        expected: &'static str,
        /// What was supplied.
        found: KeyKind,
    },
    /// A working key stronger than the key it would be derived from (X9.24-3 6.1: an
    /// AES-256 working key cannot come from an AES-128 BDK).
    #[error("a {working:?} working key cannot be derived from a {base:?} BDK")]
    WorkingKeyTooStrong {
        /// The BDK's kind.
        base: KeyKind,
        /// The working key asked for.
        working: KeyKind,
    },
    /// A transaction counter a device never uses: zero, or more 1 bits than the
    /// scheme allows (10 for TDES, 16 for AES).
    #[error("transaction counter {counter:#X} has {ones} one bits (a device uses 1..={max})")]
    CounterNotUsable {
        /// The counter.
        counter: u32,
        /// Its number of 1 bits.
        ones: u32,
        /// The largest number of 1 bits allowed.
        max: u32,
    },
    /// The device has used its last transaction counter and must be reloaded.
    #[error("the device's transaction counter is exhausted; load a new initial key")]
    Exhausted,
}

/// What is wrong with a TR-31 / ANSI X9.143 key block. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyBlockError {
    /// The block (or header) is shorter than its fixed part or than a length says.
    #[error("truncated at offset {offset}: {what} needs {needed} more characters")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Character offset where it starts.
        offset: usize,
        /// How many characters were missing.
        needed: usize,
    },
    /// A character outside what the field allows.
    #[error("{field} at offset {offset}: invalid character {found:?}")]
    BadCharacter {
        /// The header field (or "key data", "MAC").
        field: &'static str,
        /// Character offset in the block.
        offset: usize,
        /// The character found (printable) or `?` for a non-ASCII byte.
        found: char,
    },
    /// A key block version this crate does not handle (A, B, C, D are handled).
    #[error("unsupported key block version {0:?}")]
    UnsupportedVersion(char),
    /// The length field does not match the block's length.
    #[error("length field says {declared}, block has {actual} characters")]
    LengthMismatch {
        /// What the header says.
        declared: usize,
        /// What was received.
        actual: usize,
    },
    /// An optional block whose length is impossible (shorter than its own ID and
    /// length, or running past the header).
    #[error("optional block {id} at offset {offset}: bad length {length}")]
    OptionalBlockLength {
        /// The block's two-character ID.
        id: String,
        /// Character offset of the block.
        offset: usize,
        /// The length it declared.
        length: usize,
    },
    /// A header whose length (with its optional blocks) is not a whole number of
    /// cipher blocks, or an optional block that is not allowed where it is.
    #[error("header: {0}")]
    BadHeader(&'static str),
    /// The encrypted key data is not a whole number of cipher blocks, or too short to
    /// hold a key length.
    #[error("encrypted key data of {found} bytes does not fit the version")]
    KeyDataLength {
        /// The length in bytes.
        found: usize,
    },
    /// The key block MAC does not verify (wrong KBPK, or the block was altered).
    #[error("key block MAC does not verify")]
    MacMismatch,
    /// The decrypted key length field is impossible (longer than the key data, not a
    /// whole number of bytes, or not a length the algorithm has).
    #[error("decrypted key length {bits} bits does not fit")]
    KeyLength {
        /// The length field, in bits.
        bits: usize,
    },
    /// A KBPK of the wrong kind for the block's version (A/C: DES/TDES, B: TDES, D: AES).
    #[error("version {version} needs {expected} KBPK, found {found:?}")]
    KbpkKind {
        /// The version character.
        version: char,
        /// What is accepted.
        expected: &'static str,
        /// What was supplied.
        found: KeyKind,
    },
    /// The wrapped key's kind does not match the header's algorithm.
    #[error("header algorithm {algorithm:?} does not match a {found:?} key")]
    AlgorithmMismatch {
        /// The header's algorithm character.
        algorithm: char,
        /// The key's kind.
        found: KeyKind,
    },
    /// The key block's usage and mode of use do not permit the operation asked for.
    #[error("a key with usage {usage} and mode of use {mode} may not be used to {operation}")]
    NotPermitted {
        /// The header's key usage.
        usage: KeyUsage,
        /// The header's mode of use.
        mode: ModeOfUse,
        /// What was asked.
        operation: KeyOperation,
    },
    /// The header marks the key non-exportable.
    #[error("the key is marked non-exportable")]
    NotExportable,
    /// Padding supplied for a wrap that does not bring the key data to a whole number of
    /// cipher blocks.
    #[error("{found} padding bytes do not complete a {block}-byte block")]
    BadPadding {
        /// The cipher block length.
        block: usize,
        /// The padding length supplied.
        found: usize,
    },
    /// A wrapped key of an algorithm this crate has no key type for (RSA, EC, DSA,
    /// HMAC).
    #[error("algorithm {0:?} keys are not supported")]
    UnsupportedAlgorithm(char),
    /// The block would be longer than the 4-digit length field can say.
    #[error("key block of {0} characters is too long")]
    TooLong(usize),
}
