//! [`SoftHsm`]: the software security module over `isoswitch-session`'s crypto.
//!
//! Keys live in a table inside the module, each with its [`KeyUsage`]; the
//! application holds only [`KeyHandle`]s, or keys encrypted under the module's local
//! master key (LMK, a two- or three-key TDES key loaded from a hex file) or under a
//! KEK. Every key, the LMK included, is a session [`Key`]: wiped on drop, masked in
//! `Debug`. Operations run synchronously inside the trait call under one read lock;
//! the futures returned are [`std::future::Ready`] (no allocation per call).
//!
//! Randomness (key generation, PIN block fill) comes from the operating system's RNG
//! through `isoswitch-session`.

use std::collections::HashMap;
use std::future::{ready, Future};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use isoswitch_session::crypto::dukpt::{aes as aes_dukpt, tdes as tdes_dukpt};
use isoswitch_session::crypto::keys::{decrypt_key_under_as, encrypt_key_under, Key, KeyKind};
use isoswitch_session::crypto::mac::{self, MacAlgorithm, MacValue};
use isoswitch_session::crypto::pin::{translate, Pin, PinBlock, PinBlockFormat};
use isoswitch_session::crypto::pvv::visa_pvv;
use isoswitch_session::crypto::tr31::{self, Algorithm, Exportability, KeyOperation, ModeOfUse};
use isoswitch_session::SessionError;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{HsmError, Result};
use crate::module::{PinTranslation, PinVerification, SecurityModule};
use crate::types::{
    CheckValue, EncryptedKey, ExportFormat, GeneratedKey, KeyBlob, KeyHandle, KeyUsage, Ksn,
    PinRefHandle, PinReference, PinSource,
};

struct Entry {
    key: Key,
    usage: KeyUsage,
    /// The TR-31 header the key was imported with: its mode of use and exportability
    /// restrict what the key may do on top of its usage.
    header: Option<tr31::Header>,
}

impl Entry {
    /// Fails unless the key's TR-31 header (if it came in one) allows `op`.
    fn permits(&self, op: KeyOperation) -> Result<()> {
        match &self.header {
            Some(h) => Ok(h.permits(op)?),
            None => Ok(()),
        }
    }
}

/// The software security module. `Send + Sync`; share it behind an `Arc`.
pub struct SoftHsm {
    lmk: Key,
    keys: RwLock<HashMap<KeyHandle, Entry>>,
    pins: RwLock<HashMap<PinRefHandle, Pin>>,
    next: AtomicU64,
}

impl std::fmt::Debug for SoftHsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftHsm")
            .field("lmk", &self.lmk)
            .field("keys", &self.read_keys().len())
            .finish()
    }
}

impl SoftHsm {
    /// A module whose local master key is `lmk` (two- or three-key TDES).
    pub fn new(lmk: Key) -> Result<SoftHsm> {
        if !matches!(lmk.kind(), KeyKind::Tdes2 | KeyKind::Tdes3) {
            return Err(HsmError::Crypto(SessionError::WrongKeyAlgorithm {
                expected: "two- or three-key TDES local master key",
                found: lmk.kind(),
            }));
        }
        Ok(SoftHsm {
            lmk,
            keys: RwLock::new(HashMap::new()),
            pins: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    /// A module whose local master key is given as hex text (32 or 48 hex digits;
    /// whitespace ignored). The text's copy made here is wiped.
    pub fn from_master_key_hex(text: &str) -> Result<SoftHsm> {
        SoftHsm::new(parse_master_key(text.as_bytes()).map_err(|reason| {
            HsmError::MasterKeyFile {
                path: "<text>".into(),
                reason,
            }
        })?)
    }

    /// A module whose local master key is read from a file of hex text (32 or 48 hex
    /// digits, whitespace and a trailing newline ignored). The buffer is wiped.
    pub fn from_master_key_file(path: &Path) -> Result<SoftHsm> {
        let text = Zeroizing::new(std::fs::read(path).map_err(|e| HsmError::MasterKeyFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?);
        let lmk = parse_master_key(&text).map_err(|reason| HsmError::MasterKeyFile {
            path: path.to_path_buf(),
            reason,
        })?;
        SoftHsm::new(lmk)
    }

    /// The local master key's check value (what `NC` reports).
    pub fn lmk_check_value(&self) -> CheckValue {
        check_value(&self.lmk)
    }

    /// Loads a key stored encrypted under the local master key (ECB) and returns its
    /// handle.
    pub fn load_key(&self, under_lmk: &EncryptedKey, usage: KeyUsage) -> Result<KeyHandle> {
        let key = self.lmk_decrypt(under_lmk)?;
        Ok(self.insert(key, usage))
    }

    /// Generates a random key of `kind` for `usage`; returns its handle and the key
    /// under the local master key (to store it).
    pub fn generate_key(
        &self,
        usage: KeyUsage,
        kind: KeyKind,
    ) -> Result<(KeyHandle, EncryptedKey)> {
        let key = Key::generate(kind)?;
        let stored = self.lmk_encrypt(&key)?;
        Ok((self.insert(key, usage), stored))
    }

    /// A held key encrypted under the local master key, to store it outside the module.
    pub fn key_under_lmk(&self, key: KeyHandle) -> Result<EncryptedKey> {
        let keys = self.read_keys();
        self.lmk_encrypt(&entry(&keys, key)?.key)
    }

    /// The usage of a held key.
    pub fn usage(&self, key: KeyHandle) -> Result<KeyUsage> {
        Ok(entry(&self.read_keys(), key)?.usage)
    }

    /// Forgets a key (it is wiped). Returns whether it was held.
    pub fn delete_key(&self, key: KeyHandle) -> bool {
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key)
            .is_some()
    }

    /// Holds a clear reference PIN inside the module (for a host simulator's cards)
    /// and returns the handle that [`PinReference::Enrolled`] names.
    pub fn enroll_pin(&self, pin: Pin) -> PinRefHandle {
        let handle = PinRefHandle(self.next.fetch_add(1, Ordering::Relaxed));
        self.pins
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(handle, pin);
        handle
    }

    fn insert(&self, key: Key, usage: KeyUsage) -> KeyHandle {
        self.insert_with(key, usage, None)
    }

    fn insert_with(&self, key: Key, usage: KeyUsage, header: Option<tr31::Header>) -> KeyHandle {
        let handle = KeyHandle(self.next.fetch_add(1, Ordering::Relaxed));
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(handle, Entry { key, usage, header });
        handle
    }

    fn read_keys(&self) -> RwLockReadGuard<'_, HashMap<KeyHandle, Entry>> {
        // A panic while holding the lock cannot leave the table half-updated (each
        // write is one insert or remove), so a poisoned lock is still usable.
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Decrypts a key stored under the local master key (for the Thales server, whose
    /// commands carry keys under the LMK).
    pub(crate) fn lmk_decrypt(&self, under_lmk: &EncryptedKey) -> Result<Key> {
        Ok(decrypt_key_under_as(
            &self.lmk,
            under_lmk.as_bytes(),
            under_lmk.kind(),
        )?)
    }

    /// Encrypts a key under the local master key.
    pub(crate) fn lmk_encrypt(&self, key: &Key) -> Result<EncryptedKey> {
        let bytes = Zeroizing::new(encrypt_key_under(&self.lmk, key)?);
        EncryptedKey::new(key.kind(), &bytes)
    }

    fn generate_working_key_now(
        &self,
        master: KeyHandle,
        usage: KeyUsage,
        kind: KeyKind,
    ) -> Result<GeneratedKey> {
        let key = Key::generate(kind)?;
        let (under_master, kcv) = {
            let keys = self.read_keys();
            let m = entry(&keys, master)?;
            m.usage
                .require(master, m.usage.is_key_encrypting(), "a ZMK or TMK")?;
            (ecb_under(&m.key, &key)?, check_value(&key))
        };
        Ok(GeneratedKey {
            handle: self.insert(key, usage),
            under_master,
            kcv,
        })
    }

    fn key_check_value_now(&self, key: KeyHandle) -> Result<CheckValue> {
        Ok(check_value(&entry(&self.read_keys(), key)?.key))
    }

    fn check_kcv_now(&self, key: KeyHandle, received: &[u8]) -> Result<bool> {
        match entry(&self.read_keys(), key)?.key.check_kcv(received) {
            Ok(()) => Ok(true),
            Err(SessionError::KcvMismatch) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn translate_pin_now(&self, r: PinTranslation<'_>) -> Result<PinBlock> {
        let keys = self.read_keys();
        let to = entry(&keys, r.destination)?;
        to.usage.require(
            r.destination,
            to.usage.is_pin_encrypting(),
            "a PIN encryption key (TPK or ZPK)",
        )?;
        to.permits(KeyOperation::EncryptPin)?;
        match r.source {
            PinSource::Key(handle) => {
                let from = pin_key(&keys, handle)?;
                Ok(translate(r.block, r.pan, from, r.to_format, &to.key)?)
            }
            PinSource::Dukpt { bdk, ksn } => {
                let e = entry(&keys, bdk)?;
                e.usage.require(
                    bdk,
                    e.usage == KeyUsage::BaseDerivation,
                    "a DUKPT base derivation key (BDK)",
                )?;
                e.permits(KeyOperation::DeriveKeys)?;
                let from = dukpt_pin_key(&e.key, &ksn, r.block.format())?;
                Ok(translate(r.block, r.pan, &from, r.to_format, &to.key)?)
            }
        }
    }

    fn generate_mac_now(
        &self,
        key: KeyHandle,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<MacValue> {
        let keys = self.read_keys();
        Ok(mac::compute(
            algorithm,
            mac_key(&keys, key, KeyOperation::GenerateMac)?,
            data,
        )?)
    }

    fn verify_mac_now(
        &self,
        key: KeyHandle,
        algorithm: MacAlgorithm,
        data: &[u8],
        received: &[u8],
    ) -> Result<bool> {
        let keys = self.read_keys();
        match mac::verify(
            algorithm,
            mac_key(&keys, key, KeyOperation::VerifyMac)?,
            data,
            received,
        ) {
            Ok(()) => Ok(true),
            Err(SessionError::MacMismatch) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn verify_pin_now(&self, r: PinVerification<'_>) -> Result<bool> {
        let keys = self.read_keys();
        let pin = r.block.decipher(Some(r.pan), pin_key(&keys, r.key)?)?;
        match r.reference {
            PinReference::VisaPvv { pvk, pvki, pvv } => {
                let e = entry(&keys, pvk)?;
                e.usage.require(
                    pvk,
                    e.usage == KeyUsage::PinVerification,
                    "a PIN verification key",
                )?;
                let computed = visa_pvv(&e.key, r.pan, pvki, &pin)?;
                Ok(bool::from(computed.ct_eq(&pvv)))
            }
            PinReference::Enrolled(handle) => {
                let pins = self.pins.read().unwrap_or_else(|e| e.into_inner());
                match pins.get(&handle) {
                    Some(reference) => Ok(*reference == pin),
                    None => Err(HsmError::Unsupported("an enrolled PIN this module holds")),
                }
            }
        }
    }

    fn import_key_now(
        &self,
        kek: KeyHandle,
        blob: &KeyBlob,
        usage: KeyUsage,
        kcv: Option<&[u8]>,
    ) -> Result<KeyHandle> {
        let key = {
            let keys = self.read_keys();
            let k = kek_entry(&keys, kek, KeyOperation::UnwrapKey)?;
            match blob {
                KeyBlob::Ecb(encrypted) => (
                    decrypt_key_under_as(k, encrypted.as_bytes(), encrypted.kind())?,
                    None,
                ),
                KeyBlob::Tr31(text) => {
                    let unwrapped = tr31::unwrap(k, text)?;
                    // The header decides what the key may do: a block whose usage
                    // allows none of the operations of `usage` is refused, whatever the
                    // caller asks for; the mode of use restricts the key from then on
                    // (a PIN key marked encrypt-only is never a translation's source).
                    let ops = tr31_operations(usage);
                    let header = unwrapped.header().clone();
                    if !ops.iter().any(|op| header.permits(*op).is_ok()) {
                        header.permits(ops[0])?;
                    }
                    (unwrapped.into_key_unchecked(), Some(header))
                }
            }
        };
        let (key, header) = key;
        if let Some(received) = kcv {
            key.check_kcv(received)?;
        }
        Ok(self.insert_with(key, usage, header))
    }

    fn export_key_now(
        &self,
        key: KeyHandle,
        kek: KeyHandle,
        format: ExportFormat,
    ) -> Result<KeyBlob> {
        let keys = self.read_keys();
        let k = kek_entry(&keys, kek, KeyOperation::WrapKey)?;
        let e = entry(&keys, key)?;
        e.permits(KeyOperation::Export)?;
        match format {
            ExportFormat::Ecb => Ok(KeyBlob::Ecb(ecb_under(k, &e.key)?)),
            ExportFormat::Tr31 => {
                let header = tr31_header(k, &e.key, e.usage);
                Ok(KeyBlob::Tr31(tr31::wrap(k, &header, &e.key)?))
            }
        }
    }
}

fn parse_master_key(text: &[u8]) -> std::result::Result<Key, String> {
    let mut digits = Zeroizing::new([0u8; 48]);
    let mut n = 0;
    for (i, &c) in text.iter().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if crate::hex::nibble(c).is_none() {
            return Err(format!("character at byte {i} is not a hex digit"));
        }
        if n == digits.len() {
            return Err("more than 48 hex digits".into());
        }
        digits[n] = c;
        n += 1;
    }
    if n != 32 && n != 48 {
        return Err(format!("{n} hex digits; a TDES master key has 32 or 48"));
    }
    let mut bytes = Zeroizing::new([0u8; 24]);
    crate::hex::decode_into(&digits[..n], &mut bytes[..n / 2])
        .map_err(|i| format!("bad hex digit at index {i}"))?;
    Key::tdes(&bytes[..n / 2]).map_err(|e| e.to_string())
}

/// The PIN encryption key of one DUKPT transaction, derived from the BDK and the KSN.
///
/// A 10-byte KSN is TDES DUKPT (ANSI X9.24-1:2009, PIN variant of the transaction
/// key); a 12-byte KSN is AES DUKPT (X9.24-3-2017, usage PIN encryption), whose
/// working key is AES-128 for an ISO format 4 block (the AES format) and two-key TDES
/// for the TDES formats 0, 1 and 3.
pub(crate) fn dukpt_pin_key(bdk: &Key, ksn: &Ksn, format: PinBlockFormat) -> Result<Key> {
    let bytes = ksn.as_bytes();
    if bytes.len() == 10 {
        let ksn = tdes_dukpt::TdesKsn::from_bytes(bytes)?;
        Ok(tdes_dukpt::derive_working_key(
            bdk,
            &ksn,
            tdes_dukpt::Variant::Pin,
        )?)
    } else {
        let ksn = aes_dukpt::AesKsn::from_bytes(bytes)?;
        let working = match format {
            PinBlockFormat::Iso4 => aes_dukpt::WorkingKeyType::Aes128,
            _ => aes_dukpt::WorkingKeyType::Tdes2,
        };
        Ok(aes_dukpt::derive_working_key(
            bdk,
            &ksn,
            aes_dukpt::KeyUsage::PinEncryption,
            working,
        )?)
    }
}

/// What a key imported for `usage` must be allowed to do by its TR-31 header.
fn tr31_operations(usage: KeyUsage) -> &'static [KeyOperation] {
    match usage {
        KeyUsage::ZoneMaster | KeyUsage::TerminalMaster => {
            &[KeyOperation::WrapKey, KeyOperation::UnwrapKey]
        }
        // A switch decrypts (translates away from) TPKs and encrypts under ZPKs, and a
        // host decrypts under its ZPK: both directions.
        KeyUsage::ZonePin | KeyUsage::TerminalPin => {
            &[KeyOperation::EncryptPin, KeyOperation::DecryptPin]
        }
        KeyUsage::TerminalMac | KeyUsage::ZoneMac => {
            &[KeyOperation::GenerateMac, KeyOperation::VerifyMac]
        }
        KeyUsage::PinVerification => &[KeyOperation::VerifyPin],
        KeyUsage::BaseDerivation => &[KeyOperation::DeriveKeys],
    }
}

/// The TR-31 header a held key is exported with: version D under an AES KBPK,
/// B under a TDES one; the usage and mode of use that [`tr31_operations`] requires
/// on import, so an exported key imports back for the same usage; exportable.
fn tr31_header(kbpk: &Key, key: &Key, usage: KeyUsage) -> tr31::Header {
    let version = if kbpk.kind().is_aes() {
        tr31::Version::D
    } else {
        tr31::Version::B
    };
    let algorithm = if key.kind().is_aes() {
        Algorithm::Aes
    } else if key.kind() == KeyKind::Des {
        Algorithm::Des
    } else {
        Algorithm::Tdes
    };
    let (code, mode) = match usage {
        KeyUsage::ZoneMaster | KeyUsage::TerminalMaster => (tr31::KeyUsage::KEK, ModeOfUse::Both),
        KeyUsage::ZonePin | KeyUsage::TerminalPin => {
            (tr31::KeyUsage::PIN_ENCRYPTION, ModeOfUse::Both)
        }
        KeyUsage::TerminalMac | KeyUsage::ZoneMac => {
            if key.kind().is_aes() {
                (tr31::KeyUsage::MAC_CMAC, ModeOfUse::GenerateAndVerify)
            } else {
                (tr31::KeyUsage::MAC_ALG3, ModeOfUse::GenerateAndVerify)
            }
        }
        KeyUsage::PinVerification => (
            tr31::KeyUsage::PIN_VERIFICATION_VISA_PVV,
            ModeOfUse::VerifyOnly,
        ),
        KeyUsage::BaseDerivation => (tr31::KeyUsage::BDK, ModeOfUse::Derive),
    };
    tr31::Header::new(version, code, algorithm, mode, Exportability::Exportable)
}

fn entry(keys: &HashMap<KeyHandle, Entry>, handle: KeyHandle) -> Result<&Entry> {
    keys.get(&handle).ok_or(HsmError::UnknownKey(handle))
}

/// A PIN key that a PIN block is decrypted under (the source of a translation, the
/// key of a verification).
fn pin_key(keys: &HashMap<KeyHandle, Entry>, handle: KeyHandle) -> Result<&Key> {
    let e = entry(keys, handle)?;
    e.usage.require(
        handle,
        e.usage.is_pin_encrypting(),
        "a PIN encryption key (TPK or ZPK)",
    )?;
    e.permits(KeyOperation::DecryptPin)?;
    Ok(&e.key)
}

fn mac_key(keys: &HashMap<KeyHandle, Entry>, handle: KeyHandle, op: KeyOperation) -> Result<&Key> {
    let e = entry(keys, handle)?;
    e.usage
        .require(handle, e.usage.is_mac(), "a MAC key (TAK or ZAK)")?;
    e.permits(op)?;
    Ok(&e.key)
}

fn kek_entry(
    keys: &HashMap<KeyHandle, Entry>,
    handle: KeyHandle,
    op: KeyOperation,
) -> Result<&Key> {
    let e = entry(keys, handle)?;
    e.usage
        .require(handle, e.usage.is_key_encrypting(), "a ZMK or TMK")?;
    e.permits(op)?;
    Ok(&e.key)
}

/// `key` under `kek` in ECB.
pub(crate) fn ecb_under(kek: &Key, key: &Key) -> Result<EncryptedKey> {
    let bytes = Zeroizing::new(encrypt_key_under(kek, key)?);
    EncryptedKey::new(key.kind(), &bytes)
}

/// The full check value of `key` (8 bytes for DES/TDES, 16 for AES).
pub(crate) fn check_value(key: &Key) -> CheckValue {
    // A key's own check value is 8 or 16 bytes, within CheckValue's range.
    CheckValue::truncating(key.kcv().full())
}

impl SecurityModule for SoftHsm {
    fn generate_working_key(
        &self,
        master: KeyHandle,
        usage: KeyUsage,
        kind: KeyKind,
    ) -> impl Future<Output = Result<GeneratedKey>> + Send {
        ready(self.generate_working_key_now(master, usage, kind))
    }

    fn key_check_value(&self, key: KeyHandle) -> impl Future<Output = Result<CheckValue>> + Send {
        ready(self.key_check_value_now(key))
    }

    fn check_kcv(
        &self,
        key: KeyHandle,
        received: &[u8],
    ) -> impl Future<Output = Result<bool>> + Send {
        ready(self.check_kcv_now(key, received))
    }

    fn translate_pin(
        &self,
        request: PinTranslation<'_>,
    ) -> impl Future<Output = Result<PinBlock>> + Send {
        ready(self.translate_pin_now(request))
    }

    fn generate_mac(
        &self,
        key: KeyHandle,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> impl Future<Output = Result<MacValue>> + Send {
        ready(self.generate_mac_now(key, algorithm, data))
    }

    fn verify_mac(
        &self,
        key: KeyHandle,
        algorithm: MacAlgorithm,
        data: &[u8],
        mac: &[u8],
    ) -> impl Future<Output = Result<bool>> + Send {
        ready(self.verify_mac_now(key, algorithm, data, mac))
    }

    fn verify_pin(
        &self,
        request: PinVerification<'_>,
    ) -> impl Future<Output = Result<bool>> + Send {
        ready(self.verify_pin_now(request))
    }

    fn import_key(
        &self,
        kek: KeyHandle,
        blob: &KeyBlob,
        usage: KeyUsage,
        kcv: Option<&[u8]>,
    ) -> impl Future<Output = Result<KeyHandle>> + Send {
        ready(self.import_key_now(kek, blob, usage, kcv))
    }

    fn export_key(
        &self,
        key: KeyHandle,
        kek: KeyHandle,
        format: ExportFormat,
    ) -> impl Future<Output = Result<KeyBlob>> + Send {
        ready(self.export_key_now(key, kek, format))
    }

    fn forget_key(&self, key: KeyHandle) -> impl Future<Output = Result<()>> + Send {
        ready(if self.delete_key(key) {
            Ok(())
        } else {
            Err(HsmError::UnknownKey(key))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isoswitch_session::crypto::mac::Padding;
    use isoswitch_session::crypto::pin::{Fill, Pan, PinBlockFormat};
    use isoswitch_session::crypto::pvv::Pvki;

    use crate::types::Ksn;

    const LMK: &str = "0123456789ABCDEF FEDCBA9876543210";

    fn block_on<F: Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    fn hsm() -> SoftHsm {
        SoftHsm::from_master_key_hex(LMK).unwrap()
    }

    /// Loads a known clear test key the way an operator would: encrypted under the
    /// LMK outside the module.
    fn load(hsm: &SoftHsm, clear: &[u8], usage: KeyUsage) -> KeyHandle {
        load_clear(hsm, Key::des_or_tdes(clear).unwrap(), usage)
    }

    /// Encrypts `key` under the test LMK and loads it.
    fn load_clear(hsm: &SoftHsm, key: Key, usage: KeyUsage) -> KeyHandle {
        let lmk = Key::tdes(&[
            0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54,
            0x32, 0x10,
        ])
        .unwrap();
        let under = EncryptedKey::new(key.kind(), &encrypt_key_under(&lmk, &key).unwrap()).unwrap();
        hsm.load_key(&under, usage).unwrap()
    }

    #[test]
    fn a_deleted_key_is_gone() {
        let hsm = hsm();
        let h = load(&hsm, &[0x11; 16], KeyUsage::ZonePin);
        let other = load(&hsm, &[0x22; 16], KeyUsage::ZonePin);
        block_on(hsm.key_check_value(h)).unwrap();
        block_on(hsm.forget_key(h)).unwrap();
        assert!(matches!(
            block_on(hsm.key_check_value(h)),
            Err(HsmError::UnknownKey(k)) if k == h
        ));
        assert!(matches!(
            block_on(hsm.forget_key(h)),
            Err(HsmError::UnknownKey(_))
        ));
        block_on(hsm.key_check_value(other)).expect("the other key stays");
    }

    #[test]
    fn working_key_generated_under_a_tmk_imports_back_with_its_kcv() {
        let hsm = hsm();
        let tmk = load(&hsm, &[0x11; 16], KeyUsage::TerminalMaster);
        let g =
            block_on(hsm.generate_working_key(tmk, KeyUsage::TerminalPin, KeyKind::Tdes2)).unwrap();
        assert_eq!(g.kcv.as_bytes().len(), 8);
        let again = block_on(hsm.import_key(
            tmk,
            &KeyBlob::Ecb(g.under_master),
            KeyUsage::TerminalPin,
            Some(&g.kcv.as_bytes()[..3]),
        ))
        .unwrap();
        assert!(block_on(hsm.check_kcv(again, &g.kcv.as_bytes()[..4])).unwrap());
        assert!(!block_on(hsm.check_kcv(again, &[0, 0, 0])).unwrap());
        // A wrong check value refuses the import.
        let e = block_on(hsm.import_key(
            tmk,
            &KeyBlob::Ecb(g.under_master),
            KeyUsage::TerminalPin,
            Some(&[1, 2, 3]),
        ));
        assert!(matches!(
            e,
            Err(HsmError::Crypto(SessionError::KcvMismatch))
        ));
        // Exported under the TMK again: the same bytes the generation returned.
        match block_on(hsm.export_key(again, tmk, ExportFormat::Ecb)).unwrap() {
            KeyBlob::Ecb(k) => assert_eq!(k, g.under_master),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kcv_of_a_published_key() {
        let hsm = hsm();
        let k = load(
            &hsm,
            &[
                0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54,
                0x32, 0x10,
            ],
            KeyUsage::ZonePin,
        );
        // The well-known check value 08D7B4 of this test key.
        assert!(block_on(hsm.check_kcv(k, &[0x08, 0xD7, 0xB4])).unwrap());
        assert_eq!(
            &block_on(hsm.key_check_value(k)).unwrap().as_bytes()[..3],
            &[0x08, 0xD7, 0xB4]
        );
    }

    #[test]
    fn pin_translation_every_format_and_back() {
        let hsm = hsm();
        let tpk = load(&hsm, &[0x22; 16], KeyUsage::TerminalPin);
        let zpk = load(&hsm, &[0x33; 16], KeyUsage::ZonePin);
        let clear_tpk = Key::tdes(&[0x22; 16]).unwrap();
        let clear_zpk = Key::tdes(&[0x33; 16]).unwrap();
        let pan = Pan::new("4000001234562000").unwrap();
        let pin = Pin::new("123456").unwrap();
        for from in [
            PinBlockFormat::Iso0,
            PinBlockFormat::Iso1,
            PinBlockFormat::Iso3,
        ] {
            for to in [
                PinBlockFormat::Iso0,
                PinBlockFormat::Iso1,
                PinBlockFormat::Iso3,
            ] {
                let block =
                    PinBlock::encipher(from, &pin, Some(&pan), &clear_tpk, Fill::Random).unwrap();
                let out = block_on(hsm.translate_pin(PinTranslation {
                    source: PinSource::Key(tpk),
                    block: &block,
                    pan: Some(&pan),
                    destination: zpk,
                    to_format: to,
                }))
                .unwrap();
                assert_eq!(out.format(), to);
                assert_eq!(out.decipher(Some(&pan), &clear_zpk).unwrap(), pin);
            }
        }
        // Format 4 under AES keys.
        let aes_tpk = load_aes(&hsm, KeyUsage::TerminalPin);
        let aes_zpk = load_aes(&hsm, KeyUsage::ZonePin);
        let block = PinBlock::encipher(
            PinBlockFormat::Iso0,
            &pin,
            Some(&pan),
            &clear_tpk,
            Fill::Random,
        )
        .unwrap();
        let iso4 = block_on(hsm.translate_pin(PinTranslation {
            source: PinSource::Key(tpk),
            block: &block,
            pan: Some(&pan),
            destination: aes_zpk,
            to_format: PinBlockFormat::Iso4,
        }))
        .unwrap();
        assert_eq!(iso4.as_bytes().len(), 16);
        let back = block_on(hsm.translate_pin(PinTranslation {
            source: PinSource::Key(aes_zpk),
            block: &iso4,
            pan: Some(&pan),
            destination: zpk,
            to_format: PinBlockFormat::Iso3,
        }))
        .unwrap();
        assert_eq!(back.decipher(Some(&pan), &clear_zpk).unwrap(), pin);
        let _ = aes_tpk;
    }

    fn load_aes(hsm: &SoftHsm, usage: KeyUsage) -> KeyHandle {
        // AES keys are generated inside the module (the LMK wraps them as 16 bytes).
        let (h, under) = hsm.generate_key(usage, KeyKind::Aes128).unwrap();
        assert_eq!(under.as_bytes().len(), 16);
        h
    }

    #[test]
    fn usage_is_enforced() {
        let hsm = hsm();
        let tak = load(&hsm, &[0x44; 16], KeyUsage::TerminalMac);
        let zpk = load(&hsm, &[0x33; 16], KeyUsage::ZonePin);
        let pan = Pan::new("4000001234562000").unwrap();
        let block = PinBlock::from_bytes(PinBlockFormat::Iso0, &[0; 8]).unwrap();
        // A MAC key cannot be the source or destination of a PIN translation.
        let e = block_on(hsm.translate_pin(PinTranslation {
            source: PinSource::Key(tak),
            block: &block,
            pan: Some(&pan),
            destination: zpk,
            to_format: PinBlockFormat::Iso0,
        }));
        assert!(matches!(e, Err(HsmError::WrongUsage { key, .. }) if key == tak));
        // A PIN key cannot MAC, nor wrap keys.
        assert!(matches!(
            block_on(hsm.generate_mac(zpk, MacAlgorithm::X919(Padding::Method1), b"x")),
            Err(HsmError::WrongUsage { .. })
        ));
        assert!(matches!(
            block_on(hsm.generate_working_key(zpk, KeyUsage::TerminalPin, KeyKind::Tdes2)),
            Err(HsmError::WrongUsage { .. })
        ));
        assert!(matches!(
            block_on(hsm.key_check_value(KeyHandle(999_999))),
            Err(HsmError::UnknownKey(_))
        ));
        assert!(hsm.delete_key(zpk));
        assert!(matches!(
            block_on(hsm.key_check_value(zpk)),
            Err(HsmError::UnknownKey(_))
        ));
    }

    #[test]
    fn mac_generate_and_verify() {
        let hsm = hsm();
        // ISO 9797-1 alg. 1 with DES: the FIPS 113 / ANSI X9.9 example.
        let tak = load(
            &hsm,
            &[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF],
            KeyUsage::TerminalMac,
        );
        let alg = MacAlgorithm::CbcDes(Padding::Method1);
        let data = b"Now is the time for all ";
        let mac = block_on(hsm.generate_mac(tak, alg, data)).unwrap();
        assert_eq!(mac.to_hex(), "70A30640CC76DD8B");
        assert!(block_on(hsm.verify_mac(tak, alg, data, &mac.as_bytes()[..4])).unwrap());
        assert!(
            !block_on(hsm.verify_mac(tak, alg, b"Now is the time for all!", mac.as_bytes()))
                .unwrap()
        );
        assert!(block_on(hsm.verify_mac(tak, alg, data, &[1, 2])).is_err());
    }

    #[test]
    fn pin_verification_against_pvv_and_enrolled_pin() {
        let hsm = hsm();
        let pvk_clear = [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54,
            0x32, 0x10,
        ];
        let pvk = load(&hsm, &pvk_clear, KeyUsage::PinVerification);
        let zpk = load(&hsm, &[0x33; 16], KeyUsage::ZonePin);
        let clear_zpk = Key::tdes(&[0x33; 16]).unwrap();
        let pan = Pan::new("1122334455667788").unwrap();
        let good = PinBlock::encipher(
            PinBlockFormat::Iso0,
            &Pin::new("4524").unwrap(),
            Some(&pan),
            &clear_zpk,
            Fill::Random,
        )
        .unwrap();
        let bad = PinBlock::encipher(
            PinBlockFormat::Iso0,
            &Pin::new("4525").unwrap(),
            Some(&pan),
            &clear_zpk,
            Fill::Random,
        )
        .unwrap();
        // psec's published example: PVKI 3, PIN 4524 → PVV 4021.
        let reference = PinReference::VisaPvv {
            pvk,
            pvki: Pvki::new(3).unwrap(),
            pvv: *b"4021",
        };
        let verify = |block: &PinBlock, reference| {
            block_on(hsm.verify_pin(PinVerification {
                key: zpk,
                block,
                pan: &pan,
                reference,
            }))
        };
        assert!(verify(&good, reference).unwrap());
        assert!(!verify(&bad, reference).unwrap());
        let enrolled = PinReference::Enrolled(hsm.enroll_pin(Pin::new("4524").unwrap()));
        assert!(verify(&good, enrolled).unwrap());
        assert!(!verify(&bad, enrolled).unwrap());
        // The PVK must be a PVK.
        let wrong = PinReference::VisaPvv {
            pvk: zpk,
            pvki: Pvki::new(3).unwrap(),
            pvv: *b"4021",
        };
        assert!(matches!(
            verify(&good, wrong),
            Err(HsmError::WrongUsage { .. })
        ));
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Loads a clear AES test key through the LMK, as `load` does for DES keys.
    fn load_aes_key(hsm: &SoftHsm, clear: &[u8], usage: KeyUsage) -> KeyHandle {
        load_clear(hsm, Key::aes(clear).unwrap(), usage)
    }

    const ZPK: &str = "89ABCDEF01234567FEDCBA9876543210";

    fn translate_to_zpk(
        hsm: &SoftHsm,
        bdk: KeyHandle,
        zpk: KeyHandle,
        ksn: &str,
        block: PinBlock,
        pan: &Pan,
    ) -> Result<PinBlock> {
        block_on(hsm.translate_pin(PinTranslation {
            source: PinSource::Dukpt {
                bdk,
                ksn: Ksn::new(&unhex(ksn)).unwrap(),
            },
            block: &block,
            pan: Some(pan),
            destination: zpk,
            to_format: PinBlockFormat::Iso0,
        }))
    }

    /// ANSI X9.24-1:2009 A.4 (../shared/vectors/key-management.md 1.2, row 1): the PIN
    /// block a TDES DUKPT device sends for PIN 1234, translated to a zone PIN key.
    #[test]
    fn tdes_dukpt_pin_block_translates_to_the_zone_key() {
        let hsm = hsm();
        let bdk = load(
            &hsm,
            &unhex("0123456789ABCDEFFEDCBA9876543210"),
            KeyUsage::BaseDerivation,
        );
        let zpk = load(&hsm, &unhex(ZPK), KeyUsage::ZonePin);
        let pan = Pan::new("4012345678909").unwrap();
        let block = PinBlock::from_bytes(PinBlockFormat::Iso0, &unhex("1B9C1845EB993A7A")).unwrap();
        let out = translate_to_zpk(&hsm, bdk, zpk, "FFFF9876543210E00001", block, &pan).unwrap();
        let pin = out
            .decipher(Some(&pan), &Key::tdes(&unhex(ZPK)).unwrap())
            .unwrap();
        assert_eq!(pin, Pin::new("1234").unwrap());
        // Another counter's key does not decipher it: a PIN block error, not a PIN.
        let block = PinBlock::from_bytes(PinBlockFormat::Iso0, &unhex("1B9C1845EB993A7A")).unwrap();
        let wrong = translate_to_zpk(&hsm, bdk, zpk, "FFFF9876543210E00002", block, &pan);
        assert!(wrong.is_err());
    }

    /// ANSI X9.24-3-2017 (key-management.md 2.1, counter 1): an ISO format 4 block
    /// under the AES-128 PIN key of an AES-128 BDK, translated to a TDES zone key.
    #[test]
    fn aes_dukpt_format_4_block_translates_to_the_zone_key() {
        let hsm = hsm();
        let bdk = load_aes_key(
            &hsm,
            &unhex("FEDCBA9876543210F1F1F1F1F1F1F1F1"),
            KeyUsage::BaseDerivation,
        );
        let zpk = load(&hsm, &unhex(ZPK), KeyUsage::ZonePin);
        let pan = Pan::new("4111111111111111").unwrap();
        for (ksn, block) in [
            (
                "123456789012345600000001",
                "A912150391AB65A67E52883D81CE2D15",
            ),
            (
                "123456789012345600000008",
                "8308BB857C17F390369F761F8EB358FA",
            ),
        ] {
            let b = PinBlock::from_bytes(PinBlockFormat::Iso4, &unhex(block)).unwrap();
            let out = translate_to_zpk(&hsm, bdk, zpk, ksn, b, &pan).unwrap();
            assert_eq!(out.format(), PinBlockFormat::Iso0);
            let pin = out
                .decipher(Some(&pan), &Key::tdes(&unhex(ZPK)).unwrap())
                .unwrap();
            assert_eq!(pin, Pin::new("1234").unwrap(), "{ksn}");
        }
    }

    #[test]
    fn a_bdk_is_only_a_bdk_and_only_a_bdk_derives() {
        let hsm = hsm();
        let bdk = load(
            &hsm,
            &unhex("0123456789ABCDEFFEDCBA9876543210"),
            KeyUsage::BaseDerivation,
        );
        let zpk = load(&hsm, &unhex(ZPK), KeyUsage::ZonePin);
        let pan = Pan::new("4012345678909").unwrap();
        let block =
            || PinBlock::from_bytes(PinBlockFormat::Iso0, &unhex("1B9C1845EB993A7A")).unwrap();
        // A ZPK named as the BDK, a BDK named as the destination: refused by usage.
        assert!(matches!(
            translate_to_zpk(&hsm, zpk, zpk, "FFFF9876543210E00001", block(), &pan),
            Err(HsmError::WrongUsage { .. })
        ));
        assert!(matches!(
            translate_to_zpk(&hsm, bdk, bdk, "FFFF9876543210E00001", block(), &pan),
            Err(HsmError::WrongUsage { .. })
        ));
        assert!(matches!(
            block_on(hsm.translate_pin(PinTranslation {
                source: PinSource::Key(bdk),
                block: &block(),
                pan: Some(&pan),
                destination: zpk,
                to_format: PinBlockFormat::Iso0,
            })),
            Err(HsmError::WrongUsage { .. })
        ));
    }

    /// TR-31:2018 A.7.2.2 (key-management.md 3.2): a version B block of a PIN key
    /// (P0, mode E: encrypt only) imports with its published KCV; as a MAC key it is
    /// refused; its mode of use holds afterwards (never a translation's source).
    #[test]
    fn tr31_import_enforces_the_header() {
        let hsm = hsm();
        let kbpk = load(
            &hsm,
            &unhex("DD7515F2BFC17F85CE48F3CA25CB21F6"),
            KeyUsage::ZoneMaster,
        );
        let block = KeyBlob::Tr31(
            "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E"
                .into(),
        );
        let zpk = block_on(hsm.import_key(kbpk, &block, KeyUsage::ZonePin, Some(&unhex("57C409"))))
            .unwrap();
        assert_eq!(
            block_on(hsm.key_check_value(zpk)).unwrap().as_bytes()[..3],
            unhex("57C409")[..]
        );
        assert!(block_on(hsm.import_key(kbpk, &block, KeyUsage::ZoneMac, None)).is_err());
        assert!(block_on(hsm.import_key(kbpk, &block, KeyUsage::ZoneMaster, None)).is_err());
        // A wrong KCV: not taken.
        assert!(
            block_on(hsm.import_key(kbpk, &block, KeyUsage::ZonePin, Some(&[0, 0, 0]))).is_err()
        );
        // Encrypt-only: a destination, never a source.
        let other = load(&hsm, &unhex(ZPK), KeyUsage::ZonePin);
        let pan = Pan::new("4012345678909").unwrap();
        let pin_block = PinBlock::encipher(
            PinBlockFormat::Iso0,
            &Pin::new("1234").unwrap(),
            Some(&pan),
            &Key::tdes(&unhex(ZPK)).unwrap(),
            Fill::Random,
        )
        .unwrap();
        let to_imported = block_on(hsm.translate_pin(PinTranslation {
            source: PinSource::Key(other),
            block: &pin_block,
            pan: Some(&pan),
            destination: zpk,
            to_format: PinBlockFormat::Iso0,
        }))
        .unwrap();
        let from_imported = block_on(hsm.translate_pin(PinTranslation {
            source: PinSource::Key(zpk),
            block: &to_imported,
            pan: Some(&pan),
            destination: other,
            to_format: PinBlockFormat::Iso0,
        }));
        assert!(
            matches!(from_imported, Err(HsmError::Crypto(_))),
            "{from_imported:?}"
        );
        // A flipped character in the block: its MAC fails.
        let mut bad = match &block {
            KeyBlob::Tr31(t) => t.clone(),
            KeyBlob::Ecb(_) => unreachable!(),
        };
        bad.replace_range(20..21, if &bad[20..21] == "0" { "1" } else { "0" });
        assert!(
            block_on(hsm.import_key(kbpk, &KeyBlob::Tr31(bad), KeyUsage::ZonePin, None)).is_err()
        );
    }

    #[test]
    fn tr31_export_imports_back_for_the_same_usage() {
        let hsm = hsm();
        for kek_clear in [unhex("DD7515F2BFC17F85CE48F3CA25CB21F6"), vec![0x42; 32]] {
            let kek = if kek_clear.len() == 32 {
                load_aes_key(&hsm, &kek_clear, KeyUsage::ZoneMaster)
            } else {
                load(&hsm, &kek_clear, KeyUsage::ZoneMaster)
            };
            for usage in [
                KeyUsage::ZonePin,
                KeyUsage::ZoneMac,
                KeyUsage::BaseDerivation,
            ] {
                let (key, _) = hsm.generate_key(usage, KeyKind::Tdes2).unwrap();
                let kcv = block_on(hsm.key_check_value(key)).unwrap();
                let blob = block_on(hsm.export_key(key, kek, ExportFormat::Tr31)).unwrap();
                let KeyBlob::Tr31(text) = &blob else {
                    panic!("not a TR-31 block: {blob:?}")
                };
                let version = if kek_clear.len() == 32 { 'D' } else { 'B' };
                assert!(text.starts_with(version), "{text}");
                let back = block_on(hsm.import_key(kek, &blob, usage, None)).unwrap();
                assert_eq!(block_on(hsm.key_check_value(back)).unwrap(), kcv);
            }
        }
    }

    #[test]
    fn master_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lmk.hex");
        std::fs::write(&path, "0123456789ABCDEFFEDCBA9876543210\n").unwrap();
        let hsm = SoftHsm::from_master_key_file(&path).unwrap();
        assert_eq!(hsm.lmk_check_value().to_string(), "08D7B4FB629D0885");
        // Keys stored under the LMK load back in another instance from the same file.
        let (h, under) = hsm.generate_key(KeyUsage::ZonePin, KeyKind::Tdes2).unwrap();
        let kcv = block_on(hsm.key_check_value(h)).unwrap();
        let other = SoftHsm::from_master_key_file(&path).unwrap();
        let h2 = other.load_key(&under, KeyUsage::ZonePin).unwrap();
        assert_eq!(block_on(other.key_check_value(h2)).unwrap(), kcv);
        // Bad files name the problem, not the content.
        for (text, needle) in [
            ("0123", "4 hex digits"),
            ("0123456789ABCDEFFEDCBA987654321G", "not a hex digit"),
            ("0123456789ABCDEF", "16 hex digits"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = SoftHsm::from_master_key_file(&path)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains("0123"), "{e}");
        }
        let e = SoftHsm::from_master_key_file(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, HsmError::MasterKeyFile { .. }));
        // Debug shows no key bytes.
        let dbg = format!("{hsm:?}");
        assert!(!dbg.contains("0123456789"), "{dbg}");
    }
}
