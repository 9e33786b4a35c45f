//! Data at rest under a data key: [`DataKeys`] seals every record payload of a file
//! store (AES-256-GCM, a fresh random nonce per record, the key's id in front), so no
//! PAN, track data or amount-with-card pairing is ever on disk in clear (PCI DSS 3.5).
//! [`DataKeys::pan_hash`] is the keyed hash (AES-CMAC) a store that must look a card
//! up without decrypting (a database index) uses instead of the PAN.
//!
//! Keys rotate: a [`DataKeys`] has one current key, which seals, and any number of
//! previous ones, which still open what they sealed; a compaction rewrites everything
//! under the current key. A sealed record on disk is
//!
//! ```text
//! key id: 4 bytes (the key's check value) | nonce: 12 | ciphertext | tag: 16
//! ```
//!
//! with the record's position in the file (its offset) as associated data is *not*
//! used: compaction moves records, and the CRC framing around the sealed payload
//! already detects torn writes. Authenticity comes from the tag.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use cmac::{Cmac, Mac};
use rand::RngCore;

use isoswitch_session::crypto::Key;
use zeroize::Zeroizing;

use crate::error::{Result, ReversalError};

/// Bytes a sealed payload adds: key id, nonce and tag.
pub const SEAL_OVERHEAD: usize = 4 + 12 + 16;

struct DataKey {
    id: [u8; 4],
    cipher: Aes256Gcm,
    mac: Cmac<aes::Aes256>,
}

/// The data keys of a store: the current one and the previous ones still readable.
/// `Debug` shows the key ids only.
pub struct DataKeys {
    current: DataKey,
    previous: Vec<DataKey>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = |id: &[u8; 4]| id.iter().map(|b| format!("{b:02X}")).collect::<String>();
        f.debug_struct("DataKeys")
            .field("current", &hex(&self.current.id))
            .field(
                "previous",
                &self.previous.iter().map(|k| hex(&k.id)).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Derives a 32-byte subkey for `label` from the master key (NIST SP 800-108 counter
/// mode with AES-256-CMAC as the PRF): the sealing key and the hashing key are never
/// the key the operator loaded, which may also seal sessions.
fn derive(master: &[u8], label: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    for (i, half) in out.chunks_mut(16).enumerate() {
        let mut prf = <Cmac<aes::Aes256> as Mac>::new_from_slice(master)
            .map_err(|_| ReversalError::DataKey("a data key must be AES-256 (32 bytes)"))?;
        prf.update(&[i as u8 + 1]);
        prf.update(label);
        prf.update(&[0, 1, 0]); // separator, then L = 256 bits
        half.copy_from_slice(&prf.finalize().into_bytes());
    }
    Ok(out)
}

fn data_key(master: &[u8]) -> Result<DataKey> {
    if master.len() != 32 {
        return Err(ReversalError::DataKey(
            "a data key must be AES-256 (64 hex digits)",
        ));
    }
    let enc = derive(master, b"isoswitch record seal v1")?;
    let hash = derive(master, b"isoswitch pan hash v1")?;
    let cipher = Aes256Gcm::new_from_slice(&enc[..])
        .map_err(|_| ReversalError::DataKey("a data key must be AES-256"))?;
    let mac = <Cmac<aes::Aes256> as Mac>::new_from_slice(&hash[..])
        .map_err(|_| ReversalError::DataKey("a data key must be AES-256"))?;
    let mut id = [0u8; 4];
    id.copy_from_slice(&Key::aes(&enc[..])?.kcv().full()[..4]);
    Ok(DataKey { id, cipher, mac })
}

impl DataKeys {
    /// Data keys with `current` (the 32 bytes of an AES-256 master key) sealing.
    ///
    /// # Errors
    /// [`ReversalError::DataKey`] for a key that is not AES-256.
    pub fn new(current: &[u8]) -> Result<DataKeys> {
        Ok(DataKeys {
            current: data_key(current)?,
            previous: Vec::new(),
        })
    }

    /// Data keys from the key-encryption key the programs load (`--kek`): its derived
    /// data-at-rest material ([`isoswitch_session::Kek::data_key_material`]).
    ///
    /// # Errors
    /// Never for a valid KEK.
    pub fn from_kek(kek: &isoswitch_session::Kek) -> Result<DataKeys> {
        DataKeys::new(kek.data_key_material())
    }

    /// Adds a previous key: what it sealed still opens (rotation).
    ///
    /// # Errors
    /// As [`DataKeys::new`].
    pub fn with_previous(mut self, key: &[u8]) -> Result<DataKeys> {
        self.previous.push(data_key(key)?);
        Ok(self)
    }

    /// The current key's id (its check value's first 4 bytes), for logs.
    pub fn current_id(&self) -> [u8; 4] {
        self.current.id
    }

    /// Appends `payload` sealed under the current key to `out`.
    ///
    /// # Errors
    /// Never for payloads a record can hold (the cipher refuses only inputs of
    /// gigabytes).
    pub fn seal_into(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
        // A fresh random nonce per seal from the thread's CSPRNG (ChaCha, seeded from
        // and periodically reseeded by the OS): no system call per record, where
        // `OsRng` made one (`getrandom`) for every record sealed.
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(payload);
        let tag = self
            .current
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &[], &mut out[start..])
            .map_err(|_| ReversalError::DataKey("payload too large to seal"))?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Opens a sealed payload into `out` (replacing its content).
    ///
    /// # Errors
    /// [`ReversalError::BadRecord`]: too short, sealed under a key that is not here, or
    /// its tag does not verify (damaged, or another key with the same id).
    pub fn open_into(&self, sealed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(bad("sealed record shorter than its key id, nonce and tag"));
        }
        let (id, rest) = sealed.split_at(4);
        let (nonce, rest) = rest.split_at(12);
        let (body, tag) = rest.split_at(rest.len() - 16);
        let key = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|k| k.id[..] == id[..])
            .ok_or_else(|| bad("record sealed under a data key that is not loaded"))?;
        out.clear();
        out.extend_from_slice(body);
        key.cipher
            .decrypt_in_place_detached(Nonce::from_slice(nonce), &[], out, Tag::from_slice(tag))
            .map_err(|_| {
                out.clear();
                bad("record does not authenticate under its data key")
            })
    }

    /// The keyed hash of a PAN (AES-256-CMAC under the current key, over a domain tag
    /// and the PAN's digits): a look-up key that reveals nothing about the PAN to
    /// whoever lacks the data key.
    pub fn pan_hash(&self, pan: &str) -> [u8; 16] {
        let mut mac = self.current.mac.clone();
        mac.update(b"isoswitch pan v1\0");
        mac.update(pan.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

fn bad(what: &'static str) -> ReversalError {
    ReversalError::BadRecord { what, offset: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> [u8; 32] {
        [b; 32]
    }

    #[test]
    fn seals_opens_and_rotates() {
        let old = DataKeys::new(&key(1)).unwrap();
        let mut sealed = Vec::new();
        old.seal_into(b"6222020000000001 amount 1000", &mut sealed)
            .unwrap();
        assert_eq!(sealed.len(), 28 + SEAL_OVERHEAD);
        assert!(!sealed.windows(16).any(|w| w == b"6222020000000001"));
        let mut out = Vec::new();
        old.open_into(&sealed, &mut out).unwrap();
        assert_eq!(out, b"6222020000000001 amount 1000");
        // A new current key with the old one as previous still opens it…
        let rotated = DataKeys::new(&key(2))
            .unwrap()
            .with_previous(&key(1))
            .unwrap();
        rotated.open_into(&sealed, &mut out).unwrap();
        assert_eq!(out, b"6222020000000001 amount 1000");
        // …a store without the old key refuses it, and a flipped bit never opens.
        let new_only = DataKeys::new(&key(2)).unwrap();
        assert!(new_only.open_into(&sealed, &mut out).is_err());
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(old.open_into(&flipped, &mut out).is_err());
        assert!(old.open_into(&sealed[..10], &mut out).is_err());
        // Two seals of the same payload differ (fresh nonces).
        let mut again = Vec::new();
        old.seal_into(b"6222020000000001 amount 1000", &mut again)
            .unwrap();
        assert_ne!(sealed, again);
    }

    #[test]
    fn pan_hash_is_keyed_and_stable() {
        let a = DataKeys::new(&key(1)).unwrap();
        let b = DataKeys::new(&key(2)).unwrap();
        assert_eq!(
            a.pan_hash("6222020000000001"),
            a.pan_hash("6222020000000001")
        );
        assert_ne!(
            a.pan_hash("6222020000000001"),
            a.pan_hash("6222020000000002")
        );
        assert_ne!(
            a.pan_hash("6222020000000001"),
            b.pan_hash("6222020000000001")
        );
        assert!(!format!("{a:?}").contains("01010101"));
        assert!(DataKeys::new(&[3; 16]).is_err());
    }
}
