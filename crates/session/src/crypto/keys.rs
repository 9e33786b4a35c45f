//! Symmetric keys: DES, two- and three-key TDES, AES.
//!
//! A [`Key`] owns its material in a fixed buffer and its cipher key schedule, built
//! once when the key is constructed; both are wiped on drop
//! ([`zeroize::ZeroizeOnDrop`]). Its `Debug` shows the algorithm and the key check
//! value, never the bytes, and there is no `Display`. The material never leaves the
//! crate in clear: to store or send a key, encrypt it under a master key with
//! [`encrypt_key_under`].
//!
//! Working keys (PIK, MAK, TDK) arrive in a `cup-pos` 0810 field 62 encrypted under the
//! terminal master key (ECB, DES or TDES); [`decrypt_key_under`] recovers them and the
//! caller compares the 4-byte check value that follows each key with [`Key::check_kcv`].

use std::fmt;
use std::sync::Arc;

use aes::{Aes128, Aes192, Aes256};
use cipher::consts::U16;
use cipher::generic_array::GenericArray;
use cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::crypto::des_fast::{Des, Tdes2, Tdes3};
use crate::crypto::kcv::{Kcv, KcvMethod};
use crate::error::{Result, SessionError};

/// Largest key this crate handles (AES-256).
const MAX_KEY_LEN: usize = 32;

/// The algorithm and length of a [`Key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Single DES, 8 bytes.
    Des,
    /// Two-key triple DES (K1 K2 K1), 16 bytes.
    Tdes2,
    /// Three-key triple DES, 24 bytes.
    Tdes3,
    /// AES-128, 16 bytes.
    Aes128,
    /// AES-192, 24 bytes.
    Aes192,
    /// AES-256, 32 bytes.
    Aes256,
}

impl KeyKind {
    /// Key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            KeyKind::Des => 8,
            KeyKind::Tdes2 | KeyKind::Aes128 => 16,
            KeyKind::Tdes3 | KeyKind::Aes192 => 24,
            KeyKind::Aes256 => 32,
        }
    }

    /// Cipher block length in bytes: 8 for DES and TDES, 16 for AES.
    pub const fn block_len(self) -> usize {
        if self.is_aes() {
            16
        } else {
            8
        }
    }

    /// True for DES and TDES keys.
    pub const fn is_des_family(self) -> bool {
        matches!(self, KeyKind::Des | KeyKind::Tdes2 | KeyKind::Tdes3)
    }

    /// True for AES keys.
    pub const fn is_aes(self) -> bool {
        matches!(self, KeyKind::Aes128 | KeyKind::Aes192 | KeyKind::Aes256)
    }

    /// The key check value method used by [`Key::kcv`] for this kind:
    /// [`KcvMethod::DesZeros`] for DES/TDES, [`KcvMethod::AesCmac`] for AES.
    pub const fn default_kcv_method(self) -> KcvMethod {
        if self.is_aes() {
            KcvMethod::AesCmac
        } else {
            KcvMethod::DesZeros
        }
    }

    /// The accepted key length as a one-element slice (for error values).
    const fn len_slice(self) -> &'static [usize] {
        match self {
            KeyKind::Des => &[8],
            KeyKind::Tdes2 | KeyKind::Aes128 => &[16],
            KeyKind::Tdes3 | KeyKind::Aes192 => &[24],
            KeyKind::Aes256 => &[32],
        }
    }

    /// A short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            KeyKind::Des => "DES",
            KeyKind::Tdes2 => "TDES-2",
            KeyKind::Tdes3 => "TDES-3",
            KeyKind::Aes128 => "AES-128",
            KeyKind::Aes192 => "AES-192",
            KeyKind::Aes256 => "AES-256",
        }
    }

    /// The DES-family kind for a key length (8, 16 or 24 bytes), if any.
    pub const fn des_family_for_len(len: usize) -> Option<KeyKind> {
        match len {
            8 => Some(KeyKind::Des),
            16 => Some(KeyKind::Tdes2),
            24 => Some(KeyKind::Tdes3),
            _ => None,
        }
    }

    /// The AES kind for a key length (16, 24 or 32 bytes), if any.
    pub const fn aes_for_len(len: usize) -> Option<KeyKind> {
        match len {
            16 => Some(KeyKind::Aes128),
            24 => Some(KeyKind::Aes192),
            32 => Some(KeyKind::Aes256),
            _ => None,
        }
    }
}

/// A secret symmetric key with its key check value.
///
/// Built with a typed constructor that validates the length ([`Key::des`],
/// [`Key::tdes`], [`Key::aes`], [`Key::des_or_tdes`], [`Key::new`]), generated with
/// [`Key::generate`], or recovered with [`decrypt_key_under`]. DES parity bits are not
/// checked on construction (many published test keys lack odd parity and DES ignores
/// those bits); see [`Key::has_odd_parity`].
///
/// ```
/// use isoswitch_session::crypto::keys::Key;
/// let key = Key::tdes(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
///                       0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10])?;
/// assert_eq!(key.kcv().leading(3)?, &[0x08, 0xD7, 0xB4]);
/// assert_eq!(format!("{key:?}"), "Key { kind: Tdes2, kcv: 08D7B4 }");
/// # Ok::<(), isoswitch_session::SessionError>(())
/// ```
#[derive(Clone)]
pub struct Key {
    kind: KeyKind,
    material: [u8; MAX_KEY_LEN],
    kcv: Kcv,
    /// The keyed cipher (key schedule, and for AES the CMAC subkeys), built once by
    /// [`Key::new`] so that MACs, check values and PIN blocks never redo the schedule.
    /// Shared, immutable, behind an `Arc`: the schedules are up to about 1 KiB
    /// (software AES-256), and a switch clones its working keys out of their lock for
    /// every message, so a clone must not allocate and copy them. The schedule is
    /// wiped in place when the last clone of the key drops it (the DES schedules of
    /// [`crate::crypto::des_fast`], the `zeroize` feature of `aes`, and
    /// [`CmacSubkeys`]); until then each clone also holds the material itself, so
    /// sharing the schedule keeps no secret alive longer than the clones do.
    cipher: Arc<BlockCipher>,
}

impl Zeroize for Key {
    /// Wipes the material and replaces the key schedule with that of the (now zero)
    /// material, the old schedule being wiped as it is dropped (or, if clones of this
    /// key still share it, when the last of them is): the key then behaves as an
    /// all-zero key of the same kind, as it did when only the material was kept.
    fn zeroize(&mut self) {
        self.material.zeroize();
        if let Ok(cipher) = BlockCipher::new(self.kind, self.material()) {
            match Arc::get_mut(&mut self.cipher) {
                Some(own) => *own = cipher,
                None => self.cipher = Arc::new(cipher),
            }
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // The shared cipher wipes its own schedule and subkeys when the last clone
        // drops it, next.
        self.material.zeroize();
    }
}

impl ZeroizeOnDrop for Key {}

const DES_LENS: &[usize] = &[8];
const TDES_LENS: &[usize] = &[16, 24];
const DES_FAMILY_LENS: &[usize] = &[8, 16, 24];
const AES_LENS: &[usize] = &[16, 24, 32];

impl Key {
    /// A key of exactly `kind`'s length.
    pub fn new(kind: KeyKind, bytes: &[u8]) -> Result<Key> {
        if bytes.len() != kind.key_len() {
            return Err(SessionError::WrongKeyLength {
                algorithm: kind.name(),
                expected: kind.len_slice(),
                found: bytes.len(),
            });
        }
        let cipher = Arc::new(BlockCipher::new(kind, bytes)?);
        let mut material = [0u8; MAX_KEY_LEN];
        material[..bytes.len()].copy_from_slice(bytes);
        let mut key = Key {
            kind,
            material,
            kcv: Kcv::placeholder(),
            cipher,
        };
        key.kcv = Kcv::compute(&key, kind.default_kcv_method())?;
        Ok(key)
    }

    /// A single-DES key (8 bytes).
    pub fn des(bytes: &[u8]) -> Result<Key> {
        match bytes.len() {
            8 => Key::new(KeyKind::Des, bytes),
            found => Err(SessionError::WrongKeyLength {
                algorithm: "DES",
                expected: DES_LENS,
                found,
            }),
        }
    }

    /// A triple-DES key: 16 bytes (two-key) or 24 bytes (three-key).
    pub fn tdes(bytes: &[u8]) -> Result<Key> {
        match bytes.len() {
            16 => Key::new(KeyKind::Tdes2, bytes),
            24 => Key::new(KeyKind::Tdes3, bytes),
            found => Err(SessionError::WrongKeyLength {
                algorithm: "TDES",
                expected: TDES_LENS,
                found,
            }),
        }
    }

    /// A DES or TDES key chosen by length: 8 → DES, 16 → two-key, 24 → three-key.
    ///
    /// Note for `cup-pos`: a 16-byte MAK whose second half is zero is a single-DES key;
    /// pass only its first 8 bytes.
    pub fn des_or_tdes(bytes: &[u8]) -> Result<Key> {
        match KeyKind::des_family_for_len(bytes.len()) {
            Some(kind) => Key::new(kind, bytes),
            None => Err(SessionError::WrongKeyLength {
                algorithm: "DES/TDES",
                expected: DES_FAMILY_LENS,
                found: bytes.len(),
            }),
        }
    }

    /// An AES key: 16, 24 or 32 bytes.
    pub fn aes(bytes: &[u8]) -> Result<Key> {
        match KeyKind::aes_for_len(bytes.len()) {
            Some(kind) => Key::new(kind, bytes),
            None => Err(SessionError::WrongKeyLength {
                algorithm: "AES",
                expected: AES_LENS,
                found: bytes.len(),
            }),
        }
    }

    /// A fresh random key from the operating system's RNG
    /// ([`rand::rngs::OsRng`]); DES and TDES keys get odd parity.
    pub fn generate(kind: KeyKind) -> Result<Key> {
        Key::generate_with_rng(kind, &mut OsRng)
    }

    /// Like [`Key::generate`] with a caller-supplied cryptographic RNG.
    pub fn generate_with_rng<R: RngCore + CryptoRng>(kind: KeyKind, rng: &mut R) -> Result<Key> {
        let mut buf = Zeroizing::new([0u8; MAX_KEY_LEN]);
        let len = kind.key_len();
        let material = &mut buf[..len];
        rng.try_fill_bytes(material).map_err(SessionError::Rng)?;
        if kind.is_des_family() {
            set_odd_parity(material);
        }
        Key::new(kind, material)
    }

    /// The key's algorithm and length.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key's check value, computed with the kind's default method
    /// ([`KeyKind::default_kcv_method`]). Use [`Kcv::compute`] for another method.
    pub fn kcv(&self) -> &Kcv {
        &self.kcv
    }

    /// Compares a received check value (2 bytes up to the full block, usually 3 or 4)
    /// with this key's, in constant time. Errors with [`SessionError::KcvMismatch`].
    pub fn check_kcv(&self, received: &[u8]) -> Result<()> {
        self.kcv.check(received)
    }

    /// For DES and TDES keys, whether every byte has odd parity; `None` for AES keys,
    /// which have no parity bits.
    pub fn has_odd_parity(&self) -> Option<bool> {
        if self.kind.is_des_family() {
            Some(self.material().iter().all(|b| b.count_ones() % 2 == 1))
        } else {
            None
        }
    }

    /// The clear key bytes (wiped when the returned buffer drops). For key-management
    /// tools that must show a key to a person (the `isoswitch dukpt` and `tr31 unwrap`
    /// commands) and for tests against published vectors; a switch or host never
    /// needs it, and nothing in this crate calls it.
    pub fn expose_secret(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.material().to_vec())
    }

    /// The secret bytes, for the crate's own cipher operations only.
    pub(crate) fn material(&self) -> &[u8] {
        &self.material[..self.kind.key_len()]
    }

    /// The block cipher keyed with this key (its schedule was built with the key).
    pub(crate) fn cipher(&self) -> &BlockCipher {
        &self.cipher
    }

    /// Fails with [`SessionError::WrongKeyAlgorithm`] unless the key is DES or TDES.
    pub(crate) fn require_des_family(&self, expected: &'static str) -> Result<()> {
        if self.kind.is_des_family() {
            Ok(())
        } else {
            Err(SessionError::WrongKeyAlgorithm {
                expected,
                found: self.kind,
            })
        }
    }

    /// Fails with [`SessionError::WrongKeyAlgorithm`] unless the key is AES.
    pub(crate) fn require_aes(&self, expected: &'static str) -> Result<()> {
        if self.kind.is_aes() {
            Ok(())
        } else {
            Err(SessionError::WrongKeyAlgorithm {
                expected,
                found: self.kind,
            })
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kind", &self.kind)
            .field("kcv", &format_args!("{}", self.kcv))
            .finish()
    }
}

/// Sets the low bit of each byte so that every byte has an odd number of one bits
/// (the DES parity convention).
pub fn set_odd_parity(bytes: &mut [u8]) {
    for b in bytes {
        if b.count_ones() % 2 == 0 {
            *b ^= 1;
        }
    }
}

/// Encrypts `key`'s material under a DES or TDES `master` key in ECB mode (as working
/// keys are delivered under the terminal master key in a `cup-pos` 0810 field 62).
///
/// The result has the key's length (8, 16, 24 or 32 bytes). An AES key may be wrapped
/// this way too, its length being a multiple of 8; no check value is appended.
pub fn encrypt_key_under(master: &Key, key: &Key) -> Result<Vec<u8>> {
    master.require_des_family("DES or TDES master key")?;
    let mut out = key.material().to_vec();
    master.cipher().encrypt_ecb(&mut out)?;
    Ok(out)
}

/// Decrypts a DES or TDES key encrypted under `master` (ECB). The kind is taken from
/// the length: 8 → DES, 16 → two-key TDES, 24 → three-key TDES. Compare the check
/// value that came with it using [`Key::check_kcv`].
pub fn decrypt_key_under(master: &Key, encrypted: &[u8]) -> Result<Key> {
    match KeyKind::des_family_for_len(encrypted.len()) {
        Some(kind) => decrypt_key_under_as(master, encrypted, kind),
        None => Err(SessionError::BadEncryptedKeyLength {
            expected: DES_FAMILY_LENS,
            found: encrypted.len(),
        }),
    }
}

/// Decrypts a key of a stated kind encrypted under `master` (ECB). Use this for AES keys
/// or whenever the length alone is ambiguous.
pub fn decrypt_key_under_as(master: &Key, encrypted: &[u8], kind: KeyKind) -> Result<Key> {
    master.require_des_family("DES or TDES master key")?;
    if encrypted.len() != kind.key_len() {
        return Err(SessionError::BadEncryptedKeyLength {
            expected: kind.len_slice(),
            found: encrypted.len(),
        });
    }
    let mut clear = Zeroizing::new([0u8; MAX_KEY_LEN]);
    let clear = &mut clear[..encrypted.len()];
    clear.copy_from_slice(encrypted);
    master.cipher().decrypt_ecb(clear)?;
    Key::new(kind, clear)
}

/// A keyed block cipher: the one place where the crate holds key schedules. DES and
/// TDES are the crate's own table-driven implementation ([`crate::crypto::des_fast`],
/// about 8× faster than RustCrypto's `des`, which stays as its test oracle); AES is the
/// `aes` crate. Key schedules are wiped on drop (`des_fast`'s `ZeroizeOnDrop`, the
/// `aes` crate's `zeroize` feature), the CMAC subkeys by [`CmacSubkeys`]' own
/// `ZeroizeOnDrop`.
///
/// A two-key TDES schedule also exposes its single-DES halves ([`Tdes2::k1`],
/// [`Tdes2::k2`]), which ANSI X9.19 needs, so one pair of schedules serves both uses.
// Large variants (AES) are fine: the enum lives behind an `Arc` inside `Key`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum BlockCipher {
    Des(Des),
    Tdes2(Tdes2),
    Tdes3(Tdes3),
    Aes128(Aes128, CmacSubkeys),
    Aes192(Aes192, CmacSubkeys),
    Aes256(Aes256, CmacSubkeys),
}

/// The AES-CMAC subkeys K1 and K2 (RFC 4493 section 2.3), derived once per key.
/// Secret: wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct CmacSubkeys {
    /// For a complete last block.
    pub(crate) k1: [u8; 16],
    /// For a padded last block.
    pub(crate) k2: [u8; 16],
}

impl CmacSubkeys {
    /// K1 = dbl(L), K2 = dbl(K1), with L = E(K, 0^128).
    fn derive<C: BlockEncrypt<BlockSize = U16>>(cipher: &C) -> CmacSubkeys {
        let mut l = Zeroizing::new([0u8; 16]);
        cipher.encrypt_block((&mut *l).into());
        let k1 = dbl(&l);
        let k2 = dbl(&k1);
        CmacSubkeys { k1, k2 }
    }
}

/// Doubling in GF(2^128) (RFC 4493 / NIST SP 800-38B): shift left one bit and, if the
/// bit shifted out was set, XOR 0x87 into the last byte. Constant time.
fn dbl(block: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for i in 0..16 {
        let next = if i + 1 < 16 { block[i + 1] >> 7 } else { 0 };
        out[i] = (block[i] << 1) | next;
    }
    out[15] ^= 0x87 & (block[0] >> 7).wrapping_neg();
    out
}

impl BlockCipher {
    fn new(kind: KeyKind, m: &[u8]) -> Result<BlockCipher> {
        let bad = |_| SessionError::WrongKeyLength {
            algorithm: kind.name(),
            expected: kind.len_slice(),
            found: m.len(),
        };
        Ok(match kind {
            KeyKind::Des => BlockCipher::Des(Des::new(
                m.try_into().map_err(|_| bad(cipher::InvalidLength))?,
            )),
            KeyKind::Tdes2 => BlockCipher::Tdes2(Tdes2::new(
                m.try_into().map_err(|_| bad(cipher::InvalidLength))?,
            )),
            KeyKind::Tdes3 => BlockCipher::Tdes3(Tdes3::new(
                m.try_into().map_err(|_| bad(cipher::InvalidLength))?,
            )),
            KeyKind::Aes128 => {
                let c = Aes128::new_from_slice(m).map_err(bad)?;
                let sk = CmacSubkeys::derive(&c);
                BlockCipher::Aes128(c, sk)
            }
            KeyKind::Aes192 => {
                let c = Aes192::new_from_slice(m).map_err(bad)?;
                let sk = CmacSubkeys::derive(&c);
                BlockCipher::Aes192(c, sk)
            }
            KeyKind::Aes256 => {
                let c = Aes256::new_from_slice(m).map_err(bad)?;
                let sk = CmacSubkeys::derive(&c);
                BlockCipher::Aes256(c, sk)
            }
        })
    }

    /// 8 for DES/TDES, 16 for AES.
    pub(crate) fn block_len(&self) -> usize {
        match self {
            BlockCipher::Des(_) | BlockCipher::Tdes2(_) | BlockCipher::Tdes3(_) => 8,
            _ => 16,
        }
    }

    /// Encrypts each whole block of `data` in place (ECB). `data` must be a whole number
    /// of blocks.
    pub(crate) fn encrypt_ecb(&self, data: &mut [u8]) -> Result<()> {
        self.check_len(data.len())?;
        for block in data.chunks_exact_mut(self.block_len()) {
            self.encrypt_block(block);
        }
        Ok(())
    }

    /// Decrypts each whole block of `data` in place (ECB).
    pub(crate) fn decrypt_ecb(&self, data: &mut [u8]) -> Result<()> {
        self.check_len(data.len())?;
        for block in data.chunks_exact_mut(self.block_len()) {
            self.decrypt_block(block);
        }
        Ok(())
    }

    fn check_len(&self, len: usize) -> Result<()> {
        if len % self.block_len() == 0 {
            Ok(())
        } else {
            Err(SessionError::BadDataLength {
                block: self.block_len(),
                found: len,
            })
        }
    }

    /// Encrypts one block in place. Callers pass exactly `block_len()` bytes (a
    /// `chunks_exact` chunk or a fixed array); other lengths are left untouched.
    pub(crate) fn encrypt_block(&self, block: &mut [u8]) {
        if block.len() != self.block_len() {
            return;
        }
        match self {
            BlockCipher::Des(c) => des_block(block, |b| c.encrypt_block(b)),
            BlockCipher::Tdes2(c) => des_block(block, |b| c.encrypt_block(b)),
            BlockCipher::Tdes3(c) => des_block(block, |b| c.encrypt_block(b)),
            BlockCipher::Aes128(c, _) => c.encrypt_block(GenericArray::from_mut_slice(block)),
            BlockCipher::Aes192(c, _) => c.encrypt_block(GenericArray::from_mut_slice(block)),
            BlockCipher::Aes256(c, _) => c.encrypt_block(GenericArray::from_mut_slice(block)),
        }
    }

    /// Decrypts one block in place; same contract as [`BlockCipher::encrypt_block`].
    pub(crate) fn decrypt_block(&self, block: &mut [u8]) {
        if block.len() != self.block_len() {
            return;
        }
        match self {
            BlockCipher::Des(c) => des_block(block, |b| c.decrypt_block(b)),
            BlockCipher::Tdes2(c) => des_block(block, |b| c.decrypt_block(b)),
            BlockCipher::Tdes3(c) => des_block(block, |b| c.decrypt_block(b)),
            BlockCipher::Aes128(c, _) => c.decrypt_block(GenericArray::from_mut_slice(block)),
            BlockCipher::Aes192(c, _) => c.decrypt_block(GenericArray::from_mut_slice(block)),
            BlockCipher::Aes256(c, _) => c.decrypt_block(GenericArray::from_mut_slice(block)),
        }
    }
}

/// Calls `f` on `block` as an 8-byte array (callers have checked the length).
#[inline]
fn des_block(block: &mut [u8], f: impl FnOnce(&mut [u8; 8])) {
    if let Ok(b) = <&mut [u8; 8]>::try_from(block) {
        f(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use des::TdesEde2;

    fn hex(s: &str) -> Vec<u8> {
        crate::crypto::test_hex(s)
    }

    #[test]
    fn constructors_validate_length() {
        assert!(Key::des(&[0u8; 8]).is_ok());
        assert!(matches!(
            Key::des(&[0u8; 16]),
            Err(SessionError::WrongKeyLength {
                expected: [8],
                found: 16,
                ..
            })
        ));
        assert_eq!(
            Key::tdes(&[1u8; 16]).map(|k| k.kind()).ok(),
            Some(KeyKind::Tdes2)
        );
        assert_eq!(
            Key::tdes(&[1u8; 24]).map(|k| k.kind()).ok(),
            Some(KeyKind::Tdes3)
        );
        assert!(matches!(
            Key::tdes(&[1u8; 8]),
            Err(SessionError::WrongKeyLength { found: 8, .. })
        ));
        for (len, kind) in [
            (16, KeyKind::Aes128),
            (24, KeyKind::Aes192),
            (32, KeyKind::Aes256),
        ] {
            assert_eq!(Key::aes(&vec![7u8; len]).map(|k| k.kind()).ok(), Some(kind));
        }
        assert!(matches!(
            Key::aes(&[0u8; 8]),
            Err(SessionError::WrongKeyLength {
                expected: [16, 24, 32],
                found: 8,
                ..
            })
        ));
        assert!(matches!(
            Key::des_or_tdes(&[]),
            Err(SessionError::WrongKeyLength { found: 0, .. })
        ));
        assert!(matches!(
            Key::new(KeyKind::Aes256, &[0u8; 16]),
            Err(SessionError::WrongKeyLength { found: 16, .. })
        ));
    }

    #[test]
    fn debug_shows_kind_and_kcv_only() {
        let key = Key::tdes(&hex("0123456789ABCDEFFEDCBA9876543210")).expect("key");
        let dbg = format!("{key:?}");
        assert_eq!(dbg, "Key { kind: Tdes2, kcv: 08D7B4 }");
        assert!(!dbg.contains("0123") && !dbg.contains("FEDC"));
    }

    #[test]
    fn generated_des_keys_have_odd_parity() {
        for kind in [KeyKind::Des, KeyKind::Tdes2, KeyKind::Tdes3] {
            let k = Key::generate(kind).expect("rng");
            assert_eq!(k.kind(), kind);
            assert_eq!(k.has_odd_parity(), Some(true));
        }
        let a = Key::generate(KeyKind::Aes256).expect("rng");
        assert_eq!(a.has_odd_parity(), None);
        let b = Key::generate(KeyKind::Aes256).expect("rng");
        assert_ne!(a.material(), b.material());
    }

    #[test]
    fn odd_parity_adjustment_matches_psec_example() {
        // psec.des.adjust_key_parity docstring example.
        let mut k = hex("1A2B3C4D5F0A1B2C4D5F6A7B8C9D0F1A");
        set_odd_parity(&mut k);
        assert_eq!(k, hex("1A2A3D4C5E0B1A2C4C5E6B7A8C9D0E1A"));
    }

    #[test]
    fn key_wrapping_round_trips_and_matches_tdes_ecb() {
        let tmk = Key::tdes(&hex("0123456789ABCDEFFEDCBA9876543210")).expect("tmk");
        // psec.des.encrypt_tdes_ecb docstring: E(TMK, "12345678") = 41D2FFBA3CDC15FE.
        let wk = Key::des(b"12345678").expect("wk");
        let wrapped = encrypt_key_under(&tmk, &wk).expect("wrap");
        assert_eq!(wrapped, hex("41D2FFBA3CDC15FE"));
        let back = decrypt_key_under(&tmk, &wrapped).expect("unwrap");
        assert_eq!(back.kind(), KeyKind::Des);
        assert_eq!(back.material(), b"12345678");
        back.check_kcv(&wk.kcv().full()[..4]).expect("kcv");

        for kind in [
            KeyKind::Tdes2,
            KeyKind::Tdes3,
            KeyKind::Aes128,
            KeyKind::Aes256,
        ] {
            let k = Key::generate(kind).expect("rng");
            let w = encrypt_key_under(&tmk, &k).expect("wrap");
            assert_eq!(w.len(), kind.key_len());
            assert_ne!(w.as_slice(), k.material());
            let u = decrypt_key_under_as(&tmk, &w, kind).expect("unwrap");
            assert_eq!(u.material(), k.material());
        }
    }

    #[test]
    fn key_wrapping_rejects_bad_inputs() {
        let tmk = Key::tdes(&[0x11; 16]).expect("tmk");
        let aes = Key::aes(&[0x22; 16]).expect("aes");
        assert!(matches!(
            encrypt_key_under(&aes, &tmk),
            Err(SessionError::WrongKeyAlgorithm {
                found: KeyKind::Aes128,
                ..
            })
        ));
        assert!(matches!(
            decrypt_key_under(&tmk, &[0u8; 12]),
            Err(SessionError::BadEncryptedKeyLength { found: 12, .. })
        ));
        assert!(matches!(
            decrypt_key_under_as(&tmk, &[0u8; 16], KeyKind::Aes256),
            Err(SessionError::BadEncryptedKeyLength { found: 16, .. })
        ));
    }

    /// Compile-time proof that every cached schedule is wiped on drop (fails to build
    /// if a `zeroize` feature of `des`/`aes` is lost).
    #[test]
    fn cached_schedules_are_zeroize_on_drop() {
        fn wiped<T: ZeroizeOnDrop>() {}
        wiped::<Des>();
        wiped::<Tdes2>();
        wiped::<Tdes3>();
        wiped::<Aes128>();
        wiped::<Aes192>();
        wiped::<Aes256>();
        wiped::<CmacSubkeys>();
        wiped::<Key>();
    }

    #[test]
    fn two_key_tdes_halves_match_tdes_ede2() {
        let mut rng = rand::thread_rng();
        for _ in 0..64 {
            let mut k = [0u8; 16];
            rng.fill_bytes(&mut k);
            let key = Key::tdes(&k).expect("key");
            let reference = TdesEde2::new_from_slice(&k).expect("tdes");
            let mut block = [0u8; 8];
            rng.fill_bytes(&mut block);
            let mut ours = block;
            key.cipher().encrypt_block(&mut ours);
            let mut theirs = block;
            reference.encrypt_block((&mut theirs).into());
            assert_eq!(ours, theirs);
            key.cipher().decrypt_block(&mut ours);
            assert_eq!(ours, block);
        }
    }

    #[test]
    fn clones_and_zeroize_keep_schedule_and_material_in_step() {
        let data = b"Now is the time for all ";
        let alg = crate::crypto::MacAlgorithm::X919(crate::crypto::Padding::Method1);
        let key = Key::tdes(&hex("0123456789ABCDEFFEDCBA9876543210")).expect("key");
        let copy = key.clone();
        drop(key);
        let mac = crate::crypto::compute(alg, &copy, data).expect("mac");
        assert_eq!(mac.to_hex(), "A1C72E74EA3FA9B6");
        assert_eq!(format!("{copy:?}"), "Key { kind: Tdes2, kcv: 08D7B4 }");

        // Zeroize wipes the material and re-keys the schedule to match it.
        for kind in [
            KeyKind::Des,
            KeyKind::Tdes2,
            KeyKind::Tdes3,
            KeyKind::Aes192,
        ] {
            let mut k = Key::generate(kind).expect("rng");
            k.zeroize();
            assert!(k.material().iter().all(|&b| b == 0));
            let zero = Key::new(kind, &[0u8; MAX_KEY_LEN][..kind.key_len()]).expect("zero");
            let mut a = [0x5Au8; 16];
            let mut b = a;
            let n = kind.block_len();
            k.cipher().encrypt_ecb(&mut a[..n]).expect("ecb");
            zero.cipher().encrypt_ecb(&mut b[..n]).expect("ecb");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn clones_share_the_schedule_and_zeroizing_one_leaves_the_other() {
        let key = Key::tdes(&hex("0123456789ABCDEFFEDCBA9876543210")).expect("key");
        let mut copy = key.clone();
        assert!(Arc::ptr_eq(&key.cipher, &copy.cipher));
        copy.zeroize();
        assert!(!Arc::ptr_eq(&key.cipher, &copy.cipher));
        let alg = crate::crypto::MacAlgorithm::X919(crate::crypto::Padding::Method1);
        let data = b"Now is the time for all ";
        let mac = crate::crypto::compute(alg, &key, data).expect("mac");
        assert_eq!(mac.to_hex(), "A1C72E74EA3FA9B6");
        let zero = Key::tdes(&[0u8; 16]).expect("zero");
        assert_eq!(
            crate::crypto::compute(alg, &copy, data).expect("mac"),
            crate::crypto::compute(alg, &zero, data).expect("mac")
        );
    }

    #[test]
    fn cmac_subkeys_match_rfc4493() {
        // RFC 4493 section 4, subkey generation.
        let key = Key::aes(&hex("2b7e151628aed2a6abf7158809cf4f3c")).expect("key");
        let BlockCipher::Aes128(_, sk) = key.cipher() else {
            panic!("AES-128 cipher expected");
        };
        assert_eq!(sk.k1.to_vec(), hex("fbeed618357133667c85e08f7236a8de"));
        assert_eq!(sk.k2.to_vec(), hex("f7ddac306ae266ccf90bc11ee46d513b"));
    }
}
