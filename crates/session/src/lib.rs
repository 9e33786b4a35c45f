//! Session support for the isoswitch ISO 8583 switch: the cryptography a POS terminal
//! or acquiring host needs around a message, and the counters a terminal keeps.
//!
//! # Module map
//!
//! | module | concept |
//! |---|---|
//! | [`crypto::keys`] | [`Key`](crypto::Key): DES/TDES/AES keys, zeroized, wrapped under a master key |
//! | [`crypto::kcv`] | key check values, compared in constant time |
//! | [`crypto::mac`] | MACs over a byte span: ISO 9797-1 alg. 1 and 3 (X9.19), AES-CMAC, `cup-pos` |
//! | [`crypto::pin`] | ISO 9564 PIN blocks 0, 1, 3, 4; encipher, decipher, translate |
//! | [`counters`] | STAN, batch number, RRN behind the [`Counters`](counters::Counters) trait; in memory or in a crash-safe file |
//! | [`error`] | [`SessionError`], the crate's one error type |
//!
//! # Data flow
//!
//! A sign-on response (0810) delivers working keys encrypted under the terminal master
//! key: [`crypto::decrypt_key_under`] recovers each one and [`crypto::Key::check_kcv`]
//! checks the value that came with it. For each outgoing request the terminal takes a
//! STAN from its [`counters::Counters`], enciphers the PIN with
//! [`crypto::PinBlock::encipher`] under the PIN key, and MACs the span its dialect
//! selects with [`crypto::compute`] under the MAC key; a response is checked with
//! [`crypto::verify`]. A host translates PIN blocks between zones with
//! [`crypto::translate`] without ever holding the clear PIN itself.
//!
//! Everything is sans-IO except [`counters::FileCounters`], which persists to a file.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod counters;
pub mod crypto;
pub mod error;

pub use error::{Result, SessionError};
