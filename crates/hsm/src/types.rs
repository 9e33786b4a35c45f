//! The values that cross the [`crate::SecurityModule`] boundary: key handles and
//! usages, keys encrypted under another key, check values, PIN sources and references.
//! None of them holds a clear key.

use std::fmt;

use isoswitch_session::crypto::keys::KeyKind;
use isoswitch_session::crypto::pvv::Pvki;
use subtle::ConstantTimeEq;

use crate::error::{HsmError, Result};

/// An opaque reference to a key held inside a security module. Meaningful only to
/// the module that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHandle(pub(crate) u64);

impl KeyHandle {
    /// The handle's number (for logs and configuration; not a key).
    pub fn id(self) -> u64 {
        self.0
    }
}

impl fmt::Display for KeyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a key may be used for. Enforced by every operation: a MAC key cannot encrypt
/// a PIN, a PIN key cannot wrap keys. The names follow the Thales key types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    /// Zone master key (ZMK): wraps keys exchanged with another zone.
    ZoneMaster,
    /// Terminal master key (TMK): wraps keys sent to a terminal.
    TerminalMaster,
    /// Zone PIN key (ZPK): PIN blocks between zones (switch → host).
    ZonePin,
    /// Terminal PIN key (TPK): PIN blocks from a terminal.
    TerminalPin,
    /// Terminal authentication (MAC) key (TAK).
    TerminalMac,
    /// Zone authentication (MAC) key (ZAK).
    ZoneMac,
    /// PIN verification key (PVK): computes PIN verification values.
    PinVerification,
    /// DUKPT base derivation key (BDK): derives terminals' transaction keys; used
    /// for nothing else.
    BaseDerivation,
}

impl KeyUsage {
    /// True for the key-encrypting usages (ZMK, TMK).
    pub const fn is_key_encrypting(self) -> bool {
        matches!(self, KeyUsage::ZoneMaster | KeyUsage::TerminalMaster)
    }

    /// True for PIN encryption keys (TPK, ZPK).
    pub const fn is_pin_encrypting(self) -> bool {
        matches!(self, KeyUsage::ZonePin | KeyUsage::TerminalPin)
    }

    /// True for MAC keys (TAK, ZAK).
    pub const fn is_mac(self) -> bool {
        matches!(self, KeyUsage::TerminalMac | KeyUsage::ZoneMac)
    }

    /// The Thales three-digit key type code (`000` ZMK, `001` ZPK, `002` TMK/TPK/PVK,
    /// `003` TAK, `008` ZAK, `009` BDK).
    pub const fn thales_key_type(self) -> &'static [u8; 3] {
        match self {
            KeyUsage::ZoneMaster => b"000",
            KeyUsage::ZonePin => b"001",
            KeyUsage::TerminalMaster | KeyUsage::TerminalPin | KeyUsage::PinVerification => b"002",
            KeyUsage::TerminalMac => b"003",
            KeyUsage::ZoneMac => b"008",
            KeyUsage::BaseDerivation => b"009",
        }
    }

    /// Fails with [`HsmError::WrongUsage`] unless `ok`.
    pub(crate) fn require(self, key: KeyHandle, ok: bool, expected: &'static str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(HsmError::WrongUsage {
                key,
                expected,
                found: self,
            })
        }
    }
}

/// Largest encrypted key held (AES-256).
const MAX_ENCRYPTED: usize = 32;

/// A key encrypted under another key (a master key, a KEK, or a module's local master
/// key): what the application stores and sends instead of the key. Not secret on its
/// own, but `Debug` shows only the kind and length.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EncryptedKey {
    kind: KeyKind,
    bytes: [u8; MAX_ENCRYPTED],
}

impl EncryptedKey {
    /// An encrypted key of `kind`; `bytes` must be exactly the kind's key length.
    pub fn new(kind: KeyKind, bytes: &[u8]) -> Result<EncryptedKey> {
        if bytes.len() != kind.key_len() {
            return Err(HsmError::Crypto(
                isoswitch_session::SessionError::BadEncryptedKeyLength {
                    expected: match kind.key_len() {
                        8 => &[8],
                        16 => &[16],
                        24 => &[24],
                        _ => &[32],
                    },
                    found: bytes.len(),
                },
            ));
        }
        let mut b = [0u8; MAX_ENCRYPTED];
        b[..bytes.len()].copy_from_slice(bytes);
        Ok(EncryptedKey { kind, bytes: b })
    }

    /// The kind of the key inside.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The encrypted bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.kind.key_len()]
    }

    /// Upper-case hex of the encrypted bytes.
    pub fn to_hex(&self) -> String {
        crate::hex::encode_upper(self.as_bytes())
    }
}

impl fmt::Debug for EncryptedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EncryptedKey({}, {} bytes)",
            self.kind.name(),
            self.kind.key_len()
        )
    }
}

/// A key check value as a module reports it: the leading 2 to 16 bytes of the check
/// block (Thales reports 3 or 8). Not secret; `Display` is upper-case hex.
#[derive(Clone, Copy)]
pub struct CheckValue {
    bytes: [u8; 16],
    len: u8,
}

impl CheckValue {
    /// A check value of 2 to 16 bytes.
    pub fn new(bytes: &[u8]) -> Result<CheckValue> {
        if !(2..=16).contains(&bytes.len()) {
            return Err(HsmError::Crypto(
                isoswitch_session::SessionError::BadKcvLength {
                    min: 2,
                    max: 16,
                    found: bytes.len(),
                },
            ));
        }
        let mut b = [0u8; 16];
        b[..bytes.len()].copy_from_slice(bytes);
        Ok(CheckValue {
            bytes: b,
            len: bytes.len() as u8,
        })
    }

    /// The leading 16 bytes at most of a check block known to be at least 2 long
    /// (a key's own check value).
    pub(crate) fn truncating(bytes: &[u8]) -> CheckValue {
        let len = bytes.len().min(16);
        let mut b = [0u8; 16];
        b[..len].copy_from_slice(&bytes[..len]);
        CheckValue {
            bytes: b,
            len: len as u8,
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether `received` (2 bytes or more) equals the leading bytes of this value,
    /// compared in constant time. A received value longer than this one is `false`.
    pub fn matches(&self, received: &[u8]) -> bool {
        received.len() >= 2
            && received.len() <= self.as_bytes().len()
            && bool::from(self.bytes[..received.len()].ct_eq(received))
    }
}

impl PartialEq for CheckValue {
    fn eq(&self, other: &CheckValue) -> bool {
        self.len == other.len && bool::from(self.as_bytes().ct_eq(other.as_bytes()))
    }
}

impl Eq for CheckValue {}

impl fmt::Display for CheckValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CheckValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckValue({self})")
    }
}

/// A freshly generated working key: the module's handle for it, the key encrypted
/// under the master key that was named (to send to the terminal or the other zone),
/// and its check value.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// The module's handle for the new key.
    pub handle: KeyHandle,
    /// The key encrypted under the master key (ECB, as a TMK/ZMK delivers it).
    pub under_master: EncryptedKey,
    /// The key's check value (DES/TDES: encryption of zeros; 3 bytes or more).
    pub kcv: CheckValue,
}

/// A DUKPT key serial number: 10 bytes (TDES DUKPT, ANSI X9.24-1) or 12 bytes (AES
/// DUKPT, X9.24-3). Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ksn {
    bytes: [u8; 12],
    len: u8,
}

impl Ksn {
    /// A KSN of 10 or 12 bytes.
    pub fn new(bytes: &[u8]) -> Result<Ksn> {
        if bytes.len() != 10 && bytes.len() != 12 {
            return Err(HsmError::Unsupported(
                "a KSN of 10 (TDES) or 12 (AES) bytes",
            ));
        }
        let mut b = [0u8; 12];
        b[..bytes.len()].copy_from_slice(bytes);
        Ok(Ksn {
            bytes: b,
            len: bytes.len() as u8,
        })
    }

    /// The bytes (10 or 12).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for Ksn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ksn({})", crate::hex::encode_upper(self.as_bytes()))
    }
}

/// The key a PIN block arrived under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinSource {
    /// A PIN encryption key (TPK or ZPK) held by the module.
    Key(KeyHandle),
    /// A DUKPT terminal: the module derives the transaction's PIN key from the base
    /// derivation key `bdk` and the terminal's `ksn` — TDES DUKPT (ANSI X9.24-1:2009)
    /// for a 10-byte KSN, AES DUKPT (X9.24-3-2017) for a 12-byte one — and the clear
    /// PIN never leaves the module.
    Dukpt {
        /// The base derivation key (usage [`KeyUsage::BaseDerivation`]).
        bdk: KeyHandle,
        /// The terminal's key serial number.
        ksn: Ksn,
    },
}

/// What a PIN is verified against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinReference {
    /// A Visa PIN verification value (4 digits) under a PIN verification key.
    VisaPvv {
        /// The PVK (usage [`KeyUsage::PinVerification`]).
        pvk: KeyHandle,
        /// The key index used when the PVV was made.
        pvki: Pvki,
        /// The reference PVV, 4 ASCII digits.
        pvv: [u8; 4],
    },
    /// A clear reference PIN enrolled inside the module ([`crate::SoftHsm::enroll_pin`]);
    /// for host simulators. Remote modules answer [`HsmError::Unsupported`].
    Enrolled(PinRefHandle),
}

/// An opaque reference to a clear PIN held inside a [`crate::SoftHsm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PinRefHandle(pub(crate) u64);

/// How a key travels when imported or exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBlob {
    /// The key encrypted in ECB under the key-encrypting key (as a ZMK delivers a ZPK,
    /// or a `cup-pos` TMK its working keys). The check value, if given, is compared
    /// on import.
    Ecb(EncryptedKey),
    /// A TR-31 (ANSI X9.143) key block, versions A–D. On import the header's key usage
    /// and mode of use must allow the requested [`KeyUsage`] (a MAC key block never
    /// becomes a PIN key), and the mode of use restricts the key afterwards.
    Tr31(String),
}

/// Which form [`crate::SecurityModule::export_key`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// [`KeyBlob::Ecb`].
    Ecb,
    /// [`KeyBlob::Tr31`]: version D under an AES key-encrypting key, B under a TDES one.
    Tr31,
}
