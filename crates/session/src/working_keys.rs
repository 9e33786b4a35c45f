//! Working keys — PIN key (PIK), MAC key (MAK), optional track data key (TDK) — and the
//! key block that delivers them, encrypted under the terminal master key (TMK), in a
//! sign-on response.
//!
//! # Key block layout (domain notes §3)
//!
//! Every key is encrypted under the TMK in ECB mode and followed by a 4-byte check
//! value: the first 4 bytes of the *clear* key's encryption of eight zero bytes.
//!
//! | [`KeyScheme`] | cup-pos 60.3 | block | bytes |
//! |---|---|---|---|
//! | `Single` | `001` | PIK 8 + KCV 4, MAK 8 + KCV 4 | 24 |
//! | `Double` | `003` | PIK 16 + KCV 4, MAK 16 + KCV 4 | 40 |
//! | `DoubleWithTdk` | `004` | as `Double`, then TDK 16 + KCV 4 | 60 |
//!
//! In the double-length schemes the MAK slot is 16 bytes. A single-length DES MAK (the
//! usual `cup-pos` case) is written as its 8 encrypted bytes followed by eight `00`
//! bytes; on receipt, a MAK slot whose second half is all zeros is a single-DES key.
//! A genuine two-key TDES MAK (needed by the X9.19 retail MAC) fills all 16 bytes.

use std::fmt;

use crate::crypto::keys::{decrypt_key_under_as, encrypt_key_under, Key, KeyKind};
use crate::error::{Result, SessionError};

/// Length of the check value that follows each key in the block.
pub const BLOCK_KCV_LEN: usize = 4;

/// Which working keys a sign-on asks for, and how long they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyScheme {
    /// Single-length (DES) PIK and MAK: `cup-pos` 60.3 = `001`.
    Single,
    /// Double-length PIK, MAK in a 16-byte slot: `cup-pos` 60.3 = `003`.
    Double,
    /// As [`KeyScheme::Double`] plus a double-length track data key: 60.3 = `004`.
    DoubleWithTdk,
}

impl KeyScheme {
    /// The `cup-pos` network-management code (60.3) that asks for this scheme.
    pub const fn cup_pos_code(self) -> &'static str {
        match self {
            KeyScheme::Single => "001",
            KeyScheme::Double => "003",
            KeyScheme::DoubleWithTdk => "004",
        }
    }

    /// The scheme for a `cup-pos` 60.3 sign-on code.
    pub fn from_cup_pos_code(code: &str) -> Option<KeyScheme> {
        match code {
            "001" => Some(KeyScheme::Single),
            "003" => Some(KeyScheme::Double),
            "004" => Some(KeyScheme::DoubleWithTdk),
            _ => None,
        }
    }

    /// Length of the key block in bytes: 24, 40 or 60.
    pub const fn block_len(self) -> usize {
        match self {
            KeyScheme::Single => 24,
            KeyScheme::Double => 40,
            KeyScheme::DoubleWithTdk => 60,
        }
    }

    /// Length of each key slot: 8 for single, 16 for double-length schemes.
    pub const fn slot_len(self) -> usize {
        match self {
            KeyScheme::Single => 8,
            _ => 16,
        }
    }

    /// Whether the block carries a track data key.
    pub const fn has_tdk(self) -> bool {
        matches!(self, KeyScheme::DoubleWithTdk)
    }
}

/// Which working key (for errors and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// PIN key: enciphers PIN blocks (DE 52).
    Pik,
    /// MAC key: computes DE 64/128.
    Mak,
    /// Track data key: enciphers track data.
    Tdk,
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyRole::Pik => "PIK",
            KeyRole::Mak => "MAK",
            KeyRole::Tdk => "TDK",
        })
    }
}

/// A working key encrypted under the master key, as a key block carries it: for a
/// security module that imports it under the master key it holds, so that nobody
/// wraps the clear key again. Not secret (it is ciphertext); `Debug` shows the check
/// value only.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The key's kind (DES for the single scheme, two-key TDES otherwise).
    pub kind: KeyKind,
    /// The key under the master key (ECB).
    pub encrypted: Vec<u8>,
    /// The leading bytes of its check value, as the block carries them.
    pub check: [u8; BLOCK_KCV_LEN],
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("kind", &self.kind)
            .field(
                "check",
                &self
                    .check
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<String>(),
            )
            .finish_non_exhaustive()
    }
}

/// [`SessionError::KeyBlockLength`] unless `block` is as long as `scheme`'s blocks.
fn check_block_len(scheme: KeyScheme, block: &[u8]) -> Result<()> {
    if block.len() != scheme.block_len() {
        return Err(SessionError::KeyBlockLength {
            scheme,
            expected: scheme.block_len(),
            found: block.len(),
        });
    }
    Ok(())
}

/// The working keys of one signed-on session. `Debug` shows kinds and check values
/// only (see [`Key`]); the keys are wiped when dropped.
#[derive(Clone, Debug)]
pub struct WorkingKeys {
    scheme: KeyScheme,
    pik: Key,
    mak: Key,
    tdk: Option<Key>,
}

impl WorkingKeys {
    /// Keys for `scheme`, checked against it: `Single` needs DES keys; the double
    /// schemes need a two-key TDES PIK (and TDK) and a DES or two-key TDES MAK;
    /// `DoubleWithTdk` needs a TDK, the others none.
    pub fn new(scheme: KeyScheme, pik: Key, mak: Key, tdk: Option<Key>) -> Result<WorkingKeys> {
        let kind_err = |role, expected, found| SessionError::WorkingKeyKind {
            role,
            expected,
            found,
        };
        let (pik_ok, mak_ok, pik_need, mak_need) = match scheme {
            KeyScheme::Single => (
                pik.kind() == KeyKind::Des,
                mak.kind() == KeyKind::Des,
                "a DES key for the single-length scheme",
                "a DES key for the single-length scheme",
            ),
            _ => (
                pik.kind() == KeyKind::Tdes2,
                matches!(mak.kind(), KeyKind::Des | KeyKind::Tdes2),
                "a two-key TDES key for the double-length schemes",
                "a DES or two-key TDES key for the double-length schemes",
            ),
        };
        if !pik_ok {
            return Err(kind_err(KeyRole::Pik, pik_need, pik.kind()));
        }
        if !mak_ok {
            return Err(kind_err(KeyRole::Mak, mak_need, mak.kind()));
        }
        match (&tdk, scheme.has_tdk()) {
            (Some(t), true) if t.kind() != KeyKind::Tdes2 => {
                return Err(kind_err(KeyRole::Tdk, "a two-key TDES key", t.kind()))
            }
            (Some(t), false) => {
                return Err(kind_err(KeyRole::Tdk, "no TDK in this scheme", t.kind()))
            }
            (None, true) => return Err(SessionError::MissingWorkingKey { role: KeyRole::Tdk }),
            _ => {}
        }
        Ok(WorkingKeys {
            scheme,
            pik,
            mak,
            tdk,
        })
    }

    /// Fresh random keys from the OS RNG for `scheme`, with a MAK of `mak_kind` for the
    /// double-length schemes (DES for `cup-pos`, two-key TDES for the X9.19 MAC; the
    /// single scheme always uses DES).
    pub fn generate(scheme: KeyScheme, mak_kind: KeyKind) -> Result<WorkingKeys> {
        let (pik, mak) = match scheme {
            KeyScheme::Single => (Key::generate(KeyKind::Des)?, Key::generate(KeyKind::Des)?),
            _ => (Key::generate(KeyKind::Tdes2)?, Key::generate(mak_kind)?),
        };
        let tdk = if scheme.has_tdk() {
            Some(Key::generate(KeyKind::Tdes2)?)
        } else {
            None
        };
        WorkingKeys::new(scheme, pik, mak, tdk)
    }

    /// The scheme the keys were delivered in.
    pub fn scheme(&self) -> KeyScheme {
        self.scheme
    }

    /// The PIN key, for [`crate::crypto::PinBlock::encipher`].
    pub fn pik(&self) -> &Key {
        &self.pik
    }

    /// The MAC key.
    pub fn mak(&self) -> &Key {
        &self.mak
    }

    /// The track data key, in [`KeyScheme::DoubleWithTdk`].
    pub fn tdk(&self) -> Option<&Key> {
        self.tdk.as_ref()
    }

    /// The key block: each key encrypted under `tmk` (a DES or TDES key), followed by
    /// the first 4 bytes of its check value (see the module docs).
    pub fn encrypt_block(&self, tmk: &Key) -> Result<Vec<u8>> {
        let slot = self.scheme.slot_len();
        let mut out = Vec::with_capacity(self.scheme.block_len());
        let keys = [Some(&self.pik), Some(&self.mak), self.tdk.as_ref()];
        for key in keys.into_iter().flatten() {
            let enc = encrypt_key_under(tmk, key)?;
            out.extend_from_slice(&enc);
            // A single-DES key in a 16-byte slot: eight zero bytes after it.
            out.resize(out.len() + slot.saturating_sub(enc.len()), 0);
            out.extend_from_slice(key.kcv().leading(BLOCK_KCV_LEN)?);
        }
        Ok(out)
    }

    /// The PIN key's slot of a key block for `scheme` (its first): the PIK under the
    /// master key and its check value, as they came.
    ///
    /// # Errors
    /// [`SessionError::KeyBlockLength`] for a block of the wrong length.
    pub fn pik_of_block(scheme: KeyScheme, block: &[u8]) -> Result<WrappedKey> {
        check_block_len(scheme, block)?;
        let slot = scheme.slot_len();
        let mut check = [0u8; BLOCK_KCV_LEN];
        check.copy_from_slice(&block[slot..slot + BLOCK_KCV_LEN]);
        Ok(WrappedKey {
            kind: match scheme {
                KeyScheme::Single => KeyKind::Des,
                _ => KeyKind::Tdes2,
            },
            encrypted: block[..slot].to_vec(),
            check,
        })
    }

    /// Recovers the keys of a block received for `scheme`: decrypts each key under
    /// `tmk` and compares its check value in constant time.
    ///
    /// Errors: [`SessionError::KeyBlockLength`] for a block of the wrong length,
    /// [`SessionError::WorkingKeyCheck`] naming the key whose check value differs.
    pub fn decrypt_block(tmk: &Key, scheme: KeyScheme, block: &[u8]) -> Result<WorkingKeys> {
        check_block_len(scheme, block)?;
        let slot = scheme.slot_len();
        let step = slot + BLOCK_KCV_LEN;
        let part = |i: usize| {
            let s = &block[i * step..(i + 1) * step];
            (&s[..slot], &s[slot..])
        };
        let recover = |role: KeyRole, enc: &[u8], kcv: &[u8]| -> Result<Key> {
            let (enc, kind) = match (scheme, role) {
                (KeyScheme::Single, _) => (enc, KeyKind::Des),
                (_, KeyRole::Mak) if enc[8..].iter().all(|&b| b == 0) => (&enc[..8], KeyKind::Des),
                _ => (enc, KeyKind::Tdes2),
            };
            let key = decrypt_key_under_as(tmk, enc, kind)?;
            key.check_kcv(kcv)
                .map_err(|_| SessionError::WorkingKeyCheck { role })?;
            Ok(key)
        };
        let (p, pk) = part(0);
        let pik = recover(KeyRole::Pik, p, pk)?;
        let (m, mk) = part(1);
        let mak = recover(KeyRole::Mak, m, mk)?;
        let tdk = if scheme.has_tdk() {
            let (t, tk) = part(2);
            Some(recover(KeyRole::Tdk, t, tk)?)
        } else {
            None
        };
        WorkingKeys::new(scheme, pik, mak, tdk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmk() -> Key {
        Key::tdes(&[
            0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54,
            0x32, 0x10,
        ])
        .expect("tmk")
    }

    #[test]
    fn blocks_round_trip_for_every_scheme() {
        for (scheme, mak_kind) in [
            (KeyScheme::Single, KeyKind::Des),
            (KeyScheme::Double, KeyKind::Des),
            (KeyScheme::Double, KeyKind::Tdes2),
            (KeyScheme::DoubleWithTdk, KeyKind::Des),
        ] {
            let keys = WorkingKeys::generate(scheme, mak_kind).expect("generate");
            let block = keys.encrypt_block(&tmk()).expect("encrypt");
            assert_eq!(block.len(), scheme.block_len());
            let back = WorkingKeys::decrypt_block(&tmk(), scheme, &block).expect("decrypt");
            assert_eq!(back.pik().kcv(), keys.pik().kcv());
            assert_eq!(back.mak().kcv(), keys.mak().kcv());
            assert_eq!(back.mak().kind(), mak_kind);
            assert_eq!(back.tdk().map(|k| *k.kcv()), keys.tdk().map(|k| *k.kcv()));
        }
    }

    #[test]
    fn single_des_mak_in_a_double_slot_is_followed_by_zeros() {
        let keys = WorkingKeys::generate(KeyScheme::Double, KeyKind::Des).expect("generate");
        let block = keys.encrypt_block(&tmk()).expect("encrypt");
        // PIK 16 + KCV 4, then MAK 8 + eight 00 + KCV 4.
        assert_eq!(&block[28..36], &[0u8; 8]);
        assert_eq!(&block[36..40], keys.mak().kcv().leading(4).expect("kcv"));
    }

    #[test]
    fn a_wrong_check_value_names_the_key() {
        let keys = WorkingKeys::generate(KeyScheme::DoubleWithTdk, KeyKind::Des).expect("gen");
        let block = keys.encrypt_block(&tmk()).expect("encrypt");
        for (at, role) in [(17, KeyRole::Pik), (37, KeyRole::Mak), (57, KeyRole::Tdk)] {
            let mut bad = block.clone();
            bad[at] ^= 0x01;
            assert!(matches!(
                WorkingKeys::decrypt_block(&tmk(), KeyScheme::DoubleWithTdk, &bad),
                Err(SessionError::WorkingKeyCheck { role: r }) if r == role
            ));
        }
        // A different master key fails on the first key.
        let other = Key::tdes(&[0x11; 16]).expect("other");
        assert!(matches!(
            WorkingKeys::decrypt_block(&other, KeyScheme::DoubleWithTdk, &block),
            Err(SessionError::WorkingKeyCheck { role: KeyRole::Pik })
        ));
        assert!(matches!(
            WorkingKeys::decrypt_block(&tmk(), KeyScheme::Double, &block),
            Err(SessionError::KeyBlockLength {
                expected: 40,
                found: 60,
                ..
            })
        ));
    }

    #[test]
    fn known_block_decrypts() {
        // A single-length block built by hand: PIK and MAK encrypted under the TMK with
        // TDES-ECB (the domain §4.2 key), each followed by its 4-byte check value.
        let pik = Key::des(&[0x11; 8]).expect("pik");
        let mak = Key::des(&[0x22; 8]).expect("mak");
        let mut block = encrypt_key_under(&tmk(), &pik).expect("enc");
        block.extend_from_slice(pik.kcv().leading(4).expect("kcv"));
        block.extend_from_slice(&encrypt_key_under(&tmk(), &mak).expect("enc"));
        block.extend_from_slice(mak.kcv().leading(4).expect("kcv"));
        let keys = WorkingKeys::decrypt_block(&tmk(), KeyScheme::Single, &block).expect("keys");
        assert_eq!(keys.mak().kcv(), mak.kcv());
        assert_eq!(keys.pik().kcv(), pik.kcv());
        assert_eq!(
            format!("{:?}", keys.mak()),
            format!("Key {{ kind: Des, kcv: {} }}", mak.kcv())
        );
    }
}
