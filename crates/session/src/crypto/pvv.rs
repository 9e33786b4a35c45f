//! The Visa PIN verification value (PVV), the reference a host keeps for each card
//! instead of the PIN.
//!
//! The transformed security parameter (TSP) is 16 digits: the 11 rightmost PAN digits
//! excluding the check digit, the PIN verification key index (PVKI, one digit), and
//! the 4 leftmost PIN digits. It is enciphered under the PIN verification key (PVK,
//! usually a two-key TDES pair) and decimalised: the decimal digits of the ciphertext's
//! hex, left to right, then, if fewer than four, its non-decimal digits minus 10.
//! The first four form the PVV.

use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::keys::Key;
use crate::crypto::pin::{Pan, Pin};
use crate::error::Result;

/// A PIN verification key index: one decimal digit (0–9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pvki(u8);

impl Pvki {
    /// The index for digit value `d` (0–9), `None` otherwise.
    pub const fn new(d: u8) -> Option<Pvki> {
        if d <= 9 {
            Some(Pvki(d))
        } else {
            None
        }
    }

    /// The index for an ASCII digit (`b'0'..=b'9'`), `None` otherwise.
    pub const fn from_ascii(c: u8) -> Option<Pvki> {
        if c.is_ascii_digit() {
            Some(Pvki(c - b'0'))
        } else {
            None
        }
    }

    /// The digit value, 0–9.
    pub const fn value(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Pvki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The 4-digit Visa PVV (ASCII digits) of `pin` for `pan` under `pvk` and `pvki`.
/// The PVK must be DES or TDES ([`crate::SessionError::WrongKeyAlgorithm`] otherwise).
/// The TSP, which holds PIN digits, is wiped before the function returns.
///
/// ```
/// use isoswitch_session::crypto::keys::Key;
/// use isoswitch_session::crypto::pin::{Pan, Pin};
/// use isoswitch_session::crypto::pvv::{visa_pvv, Pvki};
/// // psec 1.3.0's docstring example for `psec.pin.generate_visa_pvv`.
/// let pvk = Key::tdes(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
///                       0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10])?;
/// let pvv = visa_pvv(&pvk, &Pan::new("1122334455667788")?, Pvki::new(3).unwrap(), &Pin::new("4524")?)?;
/// assert_eq!(&pvv, b"4021");
/// # Ok::<(), isoswitch_session::SessionError>(())
/// ```
pub fn visa_pvv(pvk: &Key, pan: &Pan, pvki: Pvki, pin: &Pin) -> Result<[u8; 4]> {
    pvk.require_des_family("DES or TDES PIN verification key")?;
    let digits = pan.as_ascii();
    let body = &digits[..digits.len() - 1];
    let mut nibbles = Zeroizing::new([0u8; 16]);
    for (n, c) in nibbles[..11].iter_mut().zip(&body[body.len() - 11..]) {
        *n = c - b'0';
    }
    nibbles[11] = pvki.value();
    nibbles[12..16].copy_from_slice(&pin.values()[..4]);
    let mut tsp = Zeroizing::new([0u8; 8]);
    for (i, b) in tsp.iter_mut().enumerate() {
        *b = (nibbles[2 * i] << 4) | nibbles[2 * i + 1];
    }
    pvk.cipher().encrypt_ecb(&mut tsp[..])?;
    let mut hex = Zeroizing::new([0u8; 16]);
    for (i, b) in tsp.iter().enumerate() {
        hex[2 * i] = b >> 4;
        hex[2 * i + 1] = b & 0x0F;
    }
    let mut pvv = [0u8; 4];
    let mut n = 0;
    for &h in hex.iter().filter(|h| **h <= 9) {
        if n == 4 {
            break;
        }
        pvv[n] = b'0' + h;
        n += 1;
    }
    for &h in hex.iter().filter(|h| **h > 9) {
        if n == 4 {
            break;
        }
        pvv[n] = b'0' + (h - 10);
        n += 1;
    }
    Ok(pvv)
}
