//! Session support for the isoswitch ISO 8583 switch: secured terminal and host
//! sessions as sans-IO state machines, the cryptography a POS terminal or acquiring
//! host needs around a message, and the counters a terminal keeps.
//!
//! # Module map
//!
//! | module | concept |
//! |---|---|
//! | [`terminal`] | [`TerminalSession`]: not signed on → sign-on pending → ready → signing off; seals requests, verifies responses ([`Inbound`]), timeouts |
//! | [`host`] | [`HostSession`]: sign-on with fresh working keys, 97/77/A0/94 checks on every request, sign-off, key change; [`KeyStore`] of terminal master keys |
//! | [`profile`] | [`SessionProfile`]: per dialect, the MAC algorithm, which messages carry a MAC, how keys travel in the 0810, how network management looks; [`SessionProfile::seal`] / [`SessionProfile::verify_mac`] over the codec's MAC span |
//! | [`working_keys`] | [`WorkingKeys`] (PIK, MAK, TDK) and the key block (`cup-pos` DE 62 layout) encrypted under the master key with check values |
//! | [`replay`] | [`ReplayWindow`]: bounded per-terminal memory of accepted STANs (`94`) |
//! | [`terminal_id`] | [`TerminalId`]: DE 41 + DE 42 |
//! | [`response_code`] | [`ResponseCode`]: the DE 39 values the sessions use |
//! | [`crypto::keys`] | [`Key`](crypto::Key): DES/TDES/AES keys, zeroized, wrapped under a master key |
//! | [`crypto::kcv`] | key check values, compared in constant time |
//! | [`crypto::mac`] | MACs over a byte span: ISO 9797-1 alg. 1 and 3 (X9.19), AES-CMAC, `cup-pos` |
//! | [`crypto::pin`] | ISO 9564 PIN blocks 0, 1, 3, 4; encipher, decipher, translate; [`Pan`](crypto::Pan) with the Luhn check ([`Pan::new_checked`](crypto::Pan::new_checked)) |
//! | [`crypto::dukpt`] | DUKPT: TDES (ANSI X9.24-1:2009, PIN/MAC/data variants) and AES (X9.24-3-2017, AES and TDES working keys for every usage); host derivation and the device's future-key registers |
//! | [`crypto::tr31`] | TR-31 / ANSI X9.143 key blocks A, B, C, D: header parse/build, wrap/unwrap under a KBPK, [`KeyOperation`](crypto::tr31::KeyOperation) enforcement |
//! | [`counters`] | STAN, batch number, RRN behind the [`Counters`](counters::Counters) trait; [`MemoryCounters`](counters::MemoryCounters) here, the durable file implementation in `isoswitch-reversal` (`counters::FileCounters`) |
//! | [`snapshot`] | [`TerminalSnapshot`] of a session (keys, batch, generation) for restarts; [`SealedSnapshot`]: AES-256-GCM under a key-encryption key [`Kek`] |
//! | [`error`] | [`SessionError`], the crate's one error type |
//!
//! # Data flow
//!
//! ```text
//! terminal                                              host
//! sign_on() ── 0800 ───────────────────────────────▶ handle_request()
//!           ◀── 0810: keys under TMK + KCVs ──────── Replied (WorkingKeys::generate)
//! handle_message() → WorkingKeys::decrypt_block → Ready
//! seal_request(0200) ── 0200 + MAC ────────────────▶ handle_request() → 97/77/A0/94 or
//!                                                    Accepted → application → seal_response()
//! handle_message() ◀── 0210 + MAC ───────────────── → Inbound::Verified | MacFailure
//! ```
//!
//! Working keys arrive encrypted under the terminal master key:
//! [`crypto::decrypt_key_under`] recovers each one and [`crypto::Key::check_kcv`] checks
//! the value that came with it. The PIN is enciphered with [`crypto::PinBlock::encipher`]
//! under the PIK; a host translates PIN blocks between zones with [`crypto::translate`]
//! without ever holding the clear PIN itself. The MACed span is the codec's
//! ([`isoswitch_codec::MessageView::mac_span`]); the MAC is [`crypto::compute`].
//!
//! Everything is sans-IO (no sockets, no files, no clock reads: time is passed in)
//! except key and nonce generation, which read the OS random number generator (each
//! has a `_with_rng` variant taking the generator as an input).
//!
//! # Restarts
//!
//! [`HostSession::poll_snapshot`] and [`TerminalSession::poll_snapshot`] hand out the
//! state that changed; the caller seals it ([`TerminalSnapshot::seal`]) and stores it
//! (`isoswitch_reversal::SessionStore`); after a restart `restore` puts it back and the
//! terminal carries on without a new sign-on.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod counters;
pub mod crypto;
pub mod error;
pub mod host;
pub mod profile;
pub mod replay;
pub mod response_code;
pub mod snapshot;
pub mod terminal;
pub mod terminal_id;
pub mod working_keys;

pub use error::{Result, SessionError};
pub use host::{
    AcceptedRequest, HostAction, HostConfig, HostOutcome, HostSession, KeyStore, MemoryKeyStore,
    RejectReason,
};
pub use profile::{
    KeyDelivery, KeyFieldEncoding, MacFailureReason, ManagementStyle, NetworkCode, SessionProfile,
};
pub use replay::ReplayWindow;
pub use response_code::ResponseCode;
pub use snapshot::{Kek, SealedSnapshot, TerminalSnapshot};
pub use terminal::{
    Inbound, MacFailure, Sealed, SignOnFailure, SignOnReason, TerminalConfig, TerminalEvent,
    TerminalSession, TerminalState,
};
pub use terminal_id::TerminalId;
pub use working_keys::{KeyRole, KeyScheme, WorkingKeys, WrappedKey};
