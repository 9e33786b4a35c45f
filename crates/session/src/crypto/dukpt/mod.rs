//! DUKPT: derived unique key per transaction.
//!
//! A terminal holds an initial key derived from a base derivation key (BDK) and its
//! key serial number (KSN); every transaction uses a fresh key reached from the
//! initial key by a one-way walk over the 1 bits of the KSN's transaction counter.
//! The host, which knows the BDK, derives the same key from the KSN the terminal sends.
//!
//! - [`tdes`]: ANSI X9.24-1:2009 TDES DUKPT (10-byte KSN, 21-bit counter, PIN / MAC /
//!   data key variants).
//! - [`aes`]: ANSI X9.24-3-2017 AES DUKPT (12-byte KSN, 32-bit counter, AES-128/192/256
//!   and TDES working keys for each key usage).
//!
//! Each has a host side (free functions from the BDK and a KSN) and a device side
//! ([`tdes::TdesDevice`], [`aes::AesDevice`]: the future-key registers of a terminal,
//! for simulators), built on one shared register walk.

pub mod aes;
mod registers;
pub mod tdes;

pub use self::aes::{AesDevice, AesKsn, KeyUsage, WorkingKeyType};
pub use self::tdes::{TdesDevice, TdesKsn, TransactionKey, Variant};
