//! Payment cryptography for terminal and host sessions.
//!
//! - [`keys`]: [`Key`] (DES, TDES, AES; wiped on drop, masked `Debug`), random
//!   generation, key wrapping under a master key.
//! - [`kcv`]: key check values ([`Kcv`], [`KcvMethod`]).
//! - [`mac`]: [`compute`] and [`verify`] for every [`MacAlgorithm`] (ISO 9797-1
//!   algorithms 1 and 3, AES-CMAC, the `cup-pos` MAC) over a caller-chosen byte span.
//! - [`pin`]: ISO 9564 PIN blocks, formats 0, 1, 3, 4, and [`translate`].
//! - [`dukpt`]: TDES DUKPT (ANSI X9.24-1:2009) and AES DUKPT (ANSI X9.24-3-2017),
//!   host side (working keys from the BDK and the KSN) and device side (future-key
//!   registers).
//! - [`tr31`]: TR-31 / ANSI X9.143 key blocks, versions A, B, C, D: header parse and
//!   build, wrap and unwrap under a KBPK, usage enforcement ([`tr31::KeyOperation`]).
//! - [`pvv`]: the Visa PIN verification value ([`pvv::visa_pvv`]).
//!
//! Nothing here does I/O, reads a clock or logs; the only outside input is the OS
//! random number generator (key generation and PIN block fill).

pub mod des_fast;
pub mod dukpt;
pub mod kcv;
pub mod keys;
pub mod mac;
pub mod pin;
pub mod pvv;
pub mod tr31;

pub use kcv::{check_kcv, Kcv, KcvMethod};
pub use keys::{decrypt_key_under, decrypt_key_under_as, encrypt_key_under, Key, KeyKind};
pub use mac::{compute, verify, MacAlgorithm, MacValue, Padding};
pub use pin::{translate, Fill, Pan, Pin, PinBlock, PinBlockFormat};

/// Hex decoding for the crate's unit tests (spaces ignored; panics on bad input, which
/// only a typo in a test can produce).
#[cfg(test)]
pub(crate) fn test_hex(s: &str) -> Vec<u8> {
    let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    clean
        .chunks(2)
        .map(|p| {
            let text = std::str::from_utf8(p).expect("ascii");
            u8::from_str_radix(text, 16).expect("hex digit")
        })
        .collect()
}
