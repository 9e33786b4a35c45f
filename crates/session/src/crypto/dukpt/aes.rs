//! AES DUKPT, ANSI X9.24-3-2017.
//!
//! The BDK is AES-128, AES-192 or AES-256. The initial key comes from the BDK and the
//! 8-byte initial key ID (the KSN's first 8 bytes); the derivation key of a counter
//! comes from the initial key by one AES derivation per 1 bit of the 32-bit counter
//! (most significant first); a working key (AES-128/192/256, two- or three-key TDES)
//! comes from the derivation key of its counter for one [`KeyUsage`]. Every
//! derivation is AES-ECB under the deriving key of 16-byte derivation data
//! `01 | block counter | usage | algorithm | length in bits | 8 bytes`, one block per
//! 128 bits of output.
//!
//! Host side: [`derive_initial_key`], [`derive_derivation_key`],
//! [`derive_working_key`]. Device side: [`AesDevice`] (32 intermediate derivation
//! key registers, counters with at most 16 one bits).

use std::fmt;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256};
use zeroize::{Zeroize, Zeroizing};

use super::registers::FutureKeys;
use crate::crypto::keys::{Key, KeyKind};
use crate::error::{DukptError, Result};

/// Length of an AES DUKPT key serial number: 8-byte initial key ID, 4-byte counter.
pub const KSN_LEN: usize = 12;
/// Width of the transaction counter.
pub const COUNTER_BITS: u32 = 32;
/// Most 1 bits a device's counter may have.
pub const MAX_ONE_BITS: u32 = 16;

/// A 12-byte AES DUKPT key serial number. Not secret: shown in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AesKsn([u8; KSN_LEN]);

impl AesKsn {
    /// A KSN from exactly 12 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<AesKsn> {
        let b: [u8; KSN_LEN] = bytes.try_into().map_err(|_| DukptError::KsnLength {
            expected: KSN_LEN,
            found: bytes.len(),
        })?;
        Ok(AesKsn(b))
    }

    /// A KSN from an initial key ID and a counter.
    pub fn new(initial_key_id: [u8; 8], counter: u32) -> AesKsn {
        let mut b = [0u8; KSN_LEN];
        b[..8].copy_from_slice(&initial_key_id);
        b[8..].copy_from_slice(&counter.to_be_bytes());
        AesKsn(b)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; KSN_LEN] {
        &self.0
    }

    /// The initial key ID: BDK ID (4 bytes) and derivation ID (4 bytes).
    pub fn initial_key_id(&self) -> [u8; 8] {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.0[..8]);
        id
    }

    /// The 32-bit transaction counter.
    pub fn counter(&self) -> u32 {
        u32::from_be_bytes([self.0[8], self.0[9], self.0[10], self.0[11]])
    }

    /// The same KSN with another counter.
    pub fn with_counter(&self, counter: u32) -> AesKsn {
        AesKsn::new(self.initial_key_id(), counter)
    }

    /// The last 8 bytes of derivation data below the initial key: derivation ID and
    /// counter.
    fn tail(&self, counter: u32) -> [u8; 8] {
        let mut t = [0u8; 8];
        t[..4].copy_from_slice(&self.0[4..8]);
        t[4..].copy_from_slice(&counter.to_be_bytes());
        t
    }
}

impl fmt::Display for AesKsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02X}"))
    }
}

impl fmt::Debug for AesKsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AesKsn({self})")
    }
}

/// What a working key is for (the derivation data's key usage indicator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    /// Key encryption key (0002), e.g. the update key.
    KeyEncryption,
    /// PIN encryption (1000).
    PinEncryption,
    /// MAC generation (2000).
    MacGeneration,
    /// MAC verification (2001).
    MacVerification,
    /// MAC generation and verification (2002).
    MacBoth,
    /// Data encryption (3000).
    DataEncryption,
    /// Data decryption (3001).
    DataDecryption,
    /// Data encryption and decryption (3002).
    DataBoth,
}

impl KeyUsage {
    /// The 16-bit key usage indicator.
    pub const fn code(self) -> u16 {
        match self {
            KeyUsage::KeyEncryption => 0x0002,
            KeyUsage::PinEncryption => 0x1000,
            KeyUsage::MacGeneration => 0x2000,
            KeyUsage::MacVerification => 0x2001,
            KeyUsage::MacBoth => 0x2002,
            KeyUsage::DataEncryption => 0x3000,
            KeyUsage::DataDecryption => 0x3001,
            KeyUsage::DataBoth => 0x3002,
        }
    }

    /// Every working-key usage.
    pub const ALL: [KeyUsage; 8] = [
        KeyUsage::KeyEncryption,
        KeyUsage::PinEncryption,
        KeyUsage::MacGeneration,
        KeyUsage::MacVerification,
        KeyUsage::MacBoth,
        KeyUsage::DataEncryption,
        KeyUsage::DataDecryption,
        KeyUsage::DataBoth,
    ];
}

/// Key derivation (8000) and initial key (8001) usage indicators.
const USAGE_KEY_DERIVATION: u16 = 0x8000;
const USAGE_INITIAL_KEY: u16 = 0x8001;

/// The algorithm and length of a working key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkingKeyType {
    /// Two-key TDES (0000, 128 bits).
    Tdes2,
    /// Three-key TDES (0001, 192 bits).
    Tdes3,
    /// AES-128 (0002).
    Aes128,
    /// AES-192 (0003).
    Aes192,
    /// AES-256 (0004).
    Aes256,
}

impl WorkingKeyType {
    /// The derivation data's algorithm indicator.
    pub const fn algorithm_code(self) -> u16 {
        match self {
            WorkingKeyType::Tdes2 => 0,
            WorkingKeyType::Tdes3 => 1,
            WorkingKeyType::Aes128 => 2,
            WorkingKeyType::Aes192 => 3,
            WorkingKeyType::Aes256 => 4,
        }
    }

    /// The [`KeyKind`] of such a key.
    pub const fn kind(self) -> KeyKind {
        match self {
            WorkingKeyType::Tdes2 => KeyKind::Tdes2,
            WorkingKeyType::Tdes3 => KeyKind::Tdes3,
            WorkingKeyType::Aes128 => KeyKind::Aes128,
            WorkingKeyType::Aes192 => KeyKind::Aes192,
            WorkingKeyType::Aes256 => KeyKind::Aes256,
        }
    }

    const fn for_aes_kind(kind: KeyKind) -> Option<WorkingKeyType> {
        match kind {
            KeyKind::Aes128 => Some(WorkingKeyType::Aes128),
            KeyKind::Aes192 => Some(WorkingKeyType::Aes192),
            KeyKind::Aes256 => Some(WorkingKeyType::Aes256),
            _ => None,
        }
    }

    /// Length in bytes.
    pub const fn key_len(self) -> usize {
        self.kind().key_len()
    }
}

/// Raw key bytes (up to AES-256) and their length; wiped by its `Zeroizing` owner.
#[derive(Clone, Zeroize)]
struct Raw {
    bytes: [u8; 32],
    len: usize,
}

type RawKey = Zeroizing<Raw>;

/// An AES cipher keyed by a derivation key of any AES length.
enum Aes {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

impl Aes {
    fn new(key: &Raw) -> Aes {
        let k = &key.bytes[..key.len];
        // Lengths come only from `WorkingKeyType::len` of an AES type: 16, 24, 32.
        match key.len {
            16 => Aes::A128(Aes128::new(GenericArray::from_slice(k))),
            24 => Aes::A192(Aes192::new(GenericArray::from_slice(k))),
            _ => Aes::A256(Aes256::new(GenericArray::from_slice(&key.bytes))),
        }
    }

    fn encrypt(&self, block: &mut [u8; 16]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Aes::A128(c) => c.encrypt_block(b),
            Aes::A192(c) => c.encrypt_block(b),
            Aes::A256(c) => c.encrypt_block(b),
        }
    }
}

/// The derivation (X9.24-3 6.3.2): `ty`'s length of output from AES-ECB under
/// `key` of the derivation data for `usage`, `ty` and `tail`.
fn derive(key: &Raw, usage: u16, ty: WorkingKeyType, tail: &[u8; 8]) -> RawKey {
    let cipher = Aes::new(key);
    let len = ty.key_len();
    let bits = (len * 8) as u16;
    let mut out = Zeroizing::new(Raw {
        bytes: [0; 32],
        len,
    });
    let mut block = Zeroizing::new([0u8; 16]);
    for (i, chunk) in out.bytes[..len].chunks_mut(16).enumerate() {
        block[0] = 1;
        block[1] = i as u8 + 1;
        block[2..4].copy_from_slice(&usage.to_be_bytes());
        block[4..6].copy_from_slice(&ty.algorithm_code().to_be_bytes());
        block[6..8].copy_from_slice(&bits.to_be_bytes());
        block[8..].copy_from_slice(tail);
        cipher.encrypt(&mut block);
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    out
}

fn bdk_type(bdk: &Key) -> Result<WorkingKeyType> {
    WorkingKeyType::for_aes_kind(bdk.kind()).ok_or_else(|| {
        DukptError::BaseKeyKind {
            scheme: "AES DUKPT",
            expected: "an AES-128, AES-192 or AES-256 key",
            found: bdk.kind(),
        }
        .into()
    })
}

fn raw(key: &Key) -> RawKey {
    let m = key.material();
    let mut r = Zeroizing::new(Raw {
        bytes: [0; 32],
        len: m.len(),
    });
    r.bytes[..m.len()].copy_from_slice(m);
    r
}

fn to_key(r: &Raw, kind: KeyKind) -> Result<Key> {
    Key::new(kind, &r.bytes[..r.len])
}

/// The walk from the initial key to the derivation key of `counter`.
fn derivation_raw(initial: &Raw, ty: WorkingKeyType, ksn: &AesKsn, counter: u32) -> RawKey {
    let mut key = Zeroizing::new(initial.clone());
    let mut so_far = 0u32;
    for b in (0..COUNTER_BITS).rev() {
        let bit = 1u32 << b;
        if counter & bit != 0 {
            so_far |= bit;
            key = derive(&key, USAGE_KEY_DERIVATION, ty, &ksn.tail(so_far));
        }
    }
    key
}

/// The initial key of the device with `initial_key_id` (X9.24-3 6.3.3), of the BDK's
/// own type.
pub fn derive_initial_key(bdk: &Key, initial_key_id: &[u8; 8]) -> Result<Key> {
    let ty = bdk_type(bdk)?;
    to_key(
        &derive(&raw(bdk), USAGE_INITIAL_KEY, ty, initial_key_id),
        bdk.kind(),
    )
}

/// The intermediate derivation key of `ksn`'s counter, from the device's initial key
/// (host side). Counters a device never uses (more than 16 one bits) are derived all
/// the same.
pub fn derive_derivation_key(initial_key: &Key, ksn: &AesKsn) -> Result<Key> {
    let ty = bdk_type(initial_key)?;
    to_key(
        &derivation_raw(&raw(initial_key), ty, ksn, ksn.counter()),
        initial_key.kind(),
    )
}

/// A working key from a derivation key (of the KSN's counter) for `usage` and
/// `working` type. Refuses a working key longer than an AES derivation key.
pub fn working_key_from(
    derivation_key: &Key,
    ksn: &AesKsn,
    usage: KeyUsage,
    working: WorkingKeyType,
) -> Result<Key> {
    let base = bdk_type(derivation_key)?;
    check_strength(base, working)?;
    let k = derive(
        &raw(derivation_key),
        usage.code(),
        working,
        &ksn.tail(ksn.counter()),
    );
    to_key(&k, working.kind())
}

fn check_strength(base: WorkingKeyType, working: WorkingKeyType) -> Result<()> {
    let aes_too_long = matches!(
        working,
        WorkingKeyType::Aes128 | WorkingKeyType::Aes192 | WorkingKeyType::Aes256
    ) && working.key_len() > base.key_len();
    if aes_too_long {
        return Err(DukptError::WorkingKeyTooStrong {
            base: base.kind(),
            working: working.kind(),
        }
        .into());
    }
    Ok(())
}

/// The working key for `ksn`, `usage` and `working` type straight from the BDK (what
/// a host does): initial key, derivation key of the counter, working key.
pub fn derive_working_key(
    bdk: &Key,
    ksn: &AesKsn,
    usage: KeyUsage,
    working: WorkingKeyType,
) -> Result<Key> {
    let ty = bdk_type(bdk)?;
    check_strength(ty, working)?;
    let initial = derive(&raw(bdk), USAGE_INITIAL_KEY, ty, &ksn.initial_key_id());
    let dk = derivation_raw(&initial, ty, ksn, ksn.counter());
    let k = derive(&dk, usage.code(), working, &ksn.tail(ksn.counter()));
    to_key(&k, working.kind())
}

/// One transaction on an [`AesDevice`]: the KSN and the counter's derivation key,
/// from which every working key comes. Wiped on drop; `Debug` shows only the KSN.
pub struct AesTransaction {
    ksn: AesKsn,
    ty: WorkingKeyType,
    derivation: RawKey,
}

impl AesTransaction {
    /// The KSN the terminal sends with the transaction.
    pub fn ksn(&self) -> &AesKsn {
        &self.ksn
    }

    /// The working key for `usage` of `working` type.
    pub fn working_key(&self, usage: KeyUsage, working: WorkingKeyType) -> Result<Key> {
        check_strength(self.ty, working)?;
        let k = derive(
            &self.derivation,
            usage.code(),
            working,
            &self.ksn.tail(self.ksn.counter()),
        );
        to_key(&k, working.kind())
    }

    /// The intermediate derivation key itself.
    pub fn derivation_key(&self) -> Result<Key> {
        to_key(&self.derivation, self.ty.kind())
    }
}

impl fmt::Debug for AesTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AesTransaction {{ ksn: {}, key: **** }}", self.ksn)
    }
}

/// An AES DUKPT terminal (X9.24-3 6.5): 32 intermediate derivation key registers.
/// Each [`AesDevice::next_transaction`] takes the next counter with at most 16 one
/// bits; after counter `FFFF0000` the device is exhausted. Keys are wiped on drop.
pub struct AesDevice {
    ksn: AesKsn,
    ty: WorkingKeyType,
    keys: FutureKeys<RawKey>,
}

impl AesDevice {
    /// A device loaded with its initial key and initial key ID; the first
    /// transaction uses counter 1.
    pub fn load_initial_key(initial_key: &Key, initial_key_id: [u8; 8]) -> Result<AesDevice> {
        let ty = bdk_type(initial_key)?;
        let ksn = AesKsn::new(initial_key_id, 0);
        let ik = raw(initial_key);
        let keys = FutureKeys::load(COUNTER_BITS, MAX_ONE_BITS, |c| {
            derive(&ik, USAGE_KEY_DERIVATION, ty, &ksn.tail(c as u32))
        });
        Ok(AesDevice { ksn, ty, keys })
    }

    /// A device whose next transaction uses `ksn`'s counter, with the registers it
    /// would hold after all earlier counters. Errors if the counter is 0 or has more
    /// than 16 one bits.
    pub fn resume(initial_key: &Key, ksn: &AesKsn) -> Result<AesDevice> {
        let ty = bdk_type(initial_key)?;
        let base = ksn.with_counter(0);
        let ik = raw(initial_key);
        let keys = FutureKeys::resume(COUNTER_BITS, MAX_ONE_BITS, u64::from(ksn.counter()), |c| {
            derivation_raw(&ik, ty, &base, c as u32)
        })?;
        Ok(AesDevice {
            ksn: base,
            ty,
            keys,
        })
    }

    /// The KSN of the next transaction, or `None` once exhausted.
    pub fn next_ksn(&self) -> Option<AesKsn> {
        self.keys
            .next_counter()
            .map(|c| self.ksn.with_counter(c as u32))
    }

    /// The next transaction's derivation key; the device moves to the next usable
    /// counter. Fails with [`DukptError::Exhausted`] after the last one.
    pub fn next_transaction(&mut self) -> Result<AesTransaction> {
        let (ty, base) = (self.ty, self.ksn);
        let (counter, key) = self
            .keys
            .advance(|key, c| derive(key, USAGE_KEY_DERIVATION, ty, &base.tail(c as u32)))?;
        Ok(AesTransaction {
            ksn: base.with_counter(counter as u32),
            ty,
            derivation: key,
        })
    }
}

impl fmt::Debug for AesDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AesDevice")
            .field("next_ksn", &self.next_ksn())
            .finish_non_exhaustive()
    }
}
