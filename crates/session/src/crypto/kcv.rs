//! Key check values.
//!
//! A key check value (KCV) lets two parties confirm they hold the same key without
//! revealing it. Three methods, named for what they compute:
//!
//! | method | computation | used for |
//! |---|---|---|
//! | [`KcvMethod::DesZeros`] | DES/TDES encryption of 8 zero bytes | DES and TDES keys (`cup-pos` 0810 field 62 carries the first 4 bytes) |
//! | [`KcvMethod::AesCmac`] | AES-CMAC of 16 zero bytes (ANSI X9.24-1) | AES keys, the default, usually 3 bytes shown |
//! | [`KcvMethod::AesEcbZeros`] | AES-ECB encryption of 16 zero bytes | the older AES method still seen in legacy systems |
//!
//! A [`Kcv`] keeps the whole check block (8 or 16 bytes); callers take the leading 3
//! or 4 bytes with [`Kcv::leading`]. Received values are compared in constant time.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::crypto::keys::Key;
use crate::crypto::mac;
use crate::error::{Result, SessionError};

/// Shortest received check value that [`Kcv::check`] accepts.
pub const MIN_CHECK_LEN: usize = 2;

/// Number of bytes shown by `Display`/`Debug` and by convention for AES (X9.24): 3.
pub const DISPLAY_LEN: usize = 3;

/// How a key check value is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KcvMethod {
    /// Encrypt eight zero bytes with the DES or TDES key.
    DesZeros,
    /// AES-CMAC of sixteen zero bytes (ANSI X9.24-1 for AES keys).
    AesCmac,
    /// AES-ECB encryption of sixteen zero bytes (the older, pre-X9.24 AES method).
    AesEcbZeros,
}

impl KcvMethod {
    /// A short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            KcvMethod::DesZeros => "DES-zeros",
            KcvMethod::AesCmac => "AES-CMAC",
            KcvMethod::AesEcbZeros => "AES-ECB-zeros",
        }
    }
}

/// A key check value: the full check block and the method that produced it.
///
/// Check values are not secret; `Debug` and `Display` show the first
/// [`DISPLAY_LEN`] bytes in uppercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kcv {
    method: KcvMethod,
    value: [u8; 16],
    len: u8,
}

impl Kcv {
    /// A stand-in used while a key is being built, replaced before the key is returned.
    pub(crate) const fn placeholder() -> Kcv {
        Kcv {
            method: KcvMethod::DesZeros,
            value: [0; 16],
            len: 8,
        }
    }

    /// Computes `key`'s check value with `method`. DES/TDES keys take
    /// [`KcvMethod::DesZeros`]; AES keys take [`KcvMethod::AesCmac`] or
    /// [`KcvMethod::AesEcbZeros`]; any other pairing is
    /// [`SessionError::KcvMethodMismatch`].
    pub fn compute(key: &Key, method: KcvMethod) -> Result<Kcv> {
        let kind = key.kind();
        let fits = match method {
            KcvMethod::DesZeros => kind.is_des_family(),
            KcvMethod::AesCmac | KcvMethod::AesEcbZeros => kind.is_aes(),
        };
        if !fits {
            return Err(SessionError::KcvMethodMismatch {
                method: method.name(),
                found: kind,
            });
        }
        let mut value = [0u8; 16];
        let len = match method {
            KcvMethod::DesZeros => {
                key.cipher().encrypt_ecb(&mut value[..8])?;
                8
            }
            KcvMethod::AesEcbZeros => {
                key.cipher().encrypt_ecb(&mut value)?;
                16
            }
            KcvMethod::AesCmac => {
                value = mac::aes_cmac(key, &[0u8; 16])?;
                16
            }
        };
        Ok(Kcv { method, value, len })
    }

    /// The method that produced this value.
    pub fn method(&self) -> KcvMethod {
        self.method
    }

    /// The whole check block: 8 bytes for DES/TDES, 16 for AES.
    pub fn full(&self) -> &[u8] {
        &self.value[..usize::from(self.len)]
    }

    /// The leading `n` bytes (conventionally 3, or 4 in `cup-pos` field 62).
    /// Errors with [`SessionError::BadKcvLength`] unless `1 <= n <=` full length.
    pub fn leading(&self, n: usize) -> Result<&[u8]> {
        let max = usize::from(self.len);
        if n == 0 || n > max {
            return Err(SessionError::BadKcvLength {
                min: 1,
                max,
                found: n,
            });
        }
        Ok(&self.value[..n])
    }

    /// Compares a received check value with the leading bytes of this one, in constant
    /// time. The received value may be [`MIN_CHECK_LEN`] bytes up to the full block.
    pub fn check(&self, received: &[u8]) -> Result<()> {
        let max = usize::from(self.len);
        if received.len() < MIN_CHECK_LEN || received.len() > max {
            return Err(SessionError::BadKcvLength {
                min: MIN_CHECK_LEN,
                max,
                found: received.len(),
            });
        }
        if bool::from(self.value[..received.len()].ct_eq(received)) {
            Ok(())
        } else {
            Err(SessionError::KcvMismatch)
        }
    }
}

/// Computes `key`'s check value with `method` and compares `received` with it in
/// constant time (see [`Kcv::check`]).
pub fn check_kcv(key: &Key, method: KcvMethod, received: &[u8]) -> Result<()> {
    Kcv::compute(key, method)?.check(received)
}

impl fmt::Display for Kcv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.value[..DISPLAY_LEN] {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Kcv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kcv({:?}, {self})", self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::KeyKind;

    fn hex(s: &str) -> Vec<u8> {
        crate::crypto::test_hex(s)
    }

    #[test]
    fn domain_tdes_kcv_full_block() {
        // domain.md 4.2.
        let key = Key::tdes(&hex("0123456789ABCDEFFEDCBA9876543210")).expect("key");
        assert_eq!(key.kcv().full(), hex("08D7B4FB629D0885").as_slice());
        assert_eq!(key.kcv().leading(3).expect("3"), &hex("08D7B4")[..]);
        assert_eq!(key.kcv().leading(4).expect("4"), &hex("08D7B4FB")[..]);
        assert_eq!(key.kcv().method(), KcvMethod::DesZeros);
        assert_eq!(key.kcv().to_string(), "08D7B4");
    }

    #[test]
    fn aes_kcv_methods_differ_and_are_named() {
        // RFC 4493 section 4, subkey generation: AES-128(K, 0^128) = L
        // = 7df76b0c1ab899b33e42f047b91b546f, which is exactly the AES-ECB-of-zeros KCV.
        let key = Key::aes(&hex("2b7e151628aed2a6abf7158809cf4f3c")).expect("key");
        let ecb = Kcv::compute(&key, KcvMethod::AesEcbZeros).expect("ecb");
        assert_eq!(
            ecb.full(),
            hex("7df76b0c1ab899b33e42f047b91b546f").as_slice()
        );
        let cmac = key.kcv();
        assert_eq!(cmac.method(), KcvMethod::AesCmac);
        assert_ne!(cmac.full(), ecb.full());
        assert_eq!(cmac.full().len(), 16);
    }

    #[test]
    fn check_is_exact_and_length_checked() {
        let key = Key::tdes(&hex("0123456789ABCDEFFEDCBA9876543210")).expect("key");
        key.check_kcv(&hex("08D7B4")).expect("3 bytes");
        key.check_kcv(&hex("08D7B4FB")).expect("4 bytes");
        key.check_kcv(&hex("08D7B4FB629D0885")).expect("8 bytes");
        assert!(matches!(
            key.check_kcv(&hex("08D7B5")),
            Err(SessionError::KcvMismatch)
        ));
        assert!(matches!(
            key.check_kcv(&hex("08")),
            Err(SessionError::BadKcvLength { found: 1, .. })
        ));
        assert!(matches!(
            key.check_kcv(&[0u8; 9]),
            Err(SessionError::BadKcvLength {
                found: 9,
                max: 8,
                ..
            })
        ));
        assert!(matches!(
            key.kcv().leading(0),
            Err(SessionError::BadKcvLength { found: 0, .. })
        ));
    }

    #[test]
    fn method_must_fit_key() {
        let des = Key::des(&[0x01; 8]).expect("des");
        assert!(matches!(
            Kcv::compute(&des, KcvMethod::AesCmac),
            Err(SessionError::KcvMethodMismatch {
                found: KeyKind::Des,
                ..
            })
        ));
        let aes = Key::aes(&[0x01; 16]).expect("aes");
        assert!(matches!(
            check_kcv(&aes, KcvMethod::DesZeros, &[0, 0, 0]),
            Err(SessionError::KcvMethodMismatch { .. })
        ));
    }
}
