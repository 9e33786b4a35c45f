//! Session snapshots: what a [`HostSession`](crate::HostSession) knows about a signed-on
//! terminal, or what a [`TerminalSession`](crate::TerminalSession) knows about its own
//! session, as a value that can be stored and restored, so that a restarted switch
//! serves its terminals without a sign-on storm.
//!
//! A [`TerminalSnapshot`] holds the terminal's identity, its batch, the sign-on
//! *generation* (how many sign-ons the session has seen: the upstream zone-key
//! generation of a switch's link) and its working keys. It is never stored as such:
//! [`TerminalSnapshot::seal`] turns it into a [`SealedSnapshot`], whose keys are
//! encrypted under a key-encryption key ([`Kek`]); a store keeps only sealed snapshots
//! and never sees a key in clear.
//!
//! # Why AES-256-GCM under the KEK
//!
//! The sealed form is AES-256-GCM (RustCrypto `aes-gcm`) with a 96-bit random nonce:
//! the whole snapshot (batch, key kinds, key material) is encrypted **and** authenticated,
//! and the terminal identity and generation, which a store keeps in clear to index by,
//! are bound to it as associated data. A snapshot that was altered, moved to another
//! terminal's slot or replayed under another generation does not open
//! ([`SessionError::SnapshotAuth`]), and neither does one under another KEK. The
//! alternative the payments world also uses — each key wrapped under a TDES KEK in ECB
//! and followed by its check value, as the sign-on key block does — checks each key on
//! its own but leaves the batch and the identity unprotected, lets two snapshots'
//! wrapped keys be swapped, and would put a 112-bit KEK in front of every stored key.
//! Random nonces are safe for up to 2^32 snapshots under one KEK (NIST SP 800-38D);
//! rotate the KEK well before that (a snapshot per sign-on and terminal).
//!
//! # What is not in a snapshot
//!
//! The STAN replay window ([`crate::ReplayWindow`], the `94` check) is not stored: it
//! changes with every request, and writing it would cost a durable write per
//! transaction. A restored session starts with an empty window. A request repeated
//! after a restart therefore passes the session's `94` check once more, and is caught
//! one layer up: the host's idempotency store (`isoswitch_reversal::IdempotencyStore`)
//! keys every transaction by terminal, merchant, batch and STAN and answers a repeated
//! key with the decision already taken (a repeated original is not approved twice, a
//! repeated reversal gets the same answer) — durably, across the restart.

use std::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::counters::BatchNumber;
use crate::crypto::kcv::Kcv;
use crate::crypto::keys::{Key, KeyKind};
use crate::error::{Result, SessionError};
use crate::terminal_id::TerminalId;
use crate::working_keys::{KeyScheme, WorkingKeys};

/// Version byte at the start of a sealed snapshot.
pub const SEALED_VERSION: u8 = 1;
/// Nonce length (AES-GCM, 96 bits).
pub const NONCE_LEN: usize = 12;
/// Authentication tag length.
pub const TAG_LEN: usize = 16;
/// The largest sealed snapshot accepted (a snapshot is under 100 bytes).
pub const MAX_SEALED_LEN: usize = 1024;

const AAD_LABEL: &[u8] = b"isoswitch-session-snapshot/1";

/// A key-encryption key: AES-256, used with AES-GCM to seal snapshots. `Debug` shows
/// its check value only; the key schedule is wiped on drop.
#[derive(Clone)]
pub struct Kek {
    cipher: Aes256Gcm,
    kcv: Kcv,
    /// The master of the data-at-rest keys ([`Kek::data_key_material`]), derived, never
    /// the KEK itself.
    data: zeroize::Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek").field("kcv", &self.kcv).finish()
    }
}

impl Kek {
    /// A KEK from an AES-256 key (e.g. `Key::aes(&bytes)` from the operator's key
    /// file).
    ///
    /// # Errors
    /// [`SessionError::WrongKeyAlgorithm`] for any other kind of key.
    pub fn new(key: &Key) -> Result<Kek> {
        if key.kind() != KeyKind::Aes256 {
            return Err(SessionError::WrongKeyAlgorithm {
                expected: "AES-256 key-encryption key",
                found: key.kind(),
            });
        }
        let cipher = Aes256Gcm::new_from_slice(key.material()).map_err(|_| {
            SessionError::WrongKeyLength {
                algorithm: "AES-256",
                expected: &[32],
                found: key.material().len(),
            }
        })?;
        // NIST SP 800-108 counter mode, AES-256-CMAC as the PRF, label
        // "isoswitch data at rest v1", L = 256.
        let mut data = zeroize::Zeroizing::new([0u8; 32]);
        let mut input = [0u8; 29];
        input[1..26].copy_from_slice(b"isoswitch data at rest v1");
        input[27..].copy_from_slice(&[0x01, 0x00]);
        for (i, half) in data.chunks_mut(16).enumerate() {
            input[0] = i as u8 + 1;
            let block =
                crate::crypto::mac::compute(crate::crypto::MacAlgorithm::AesCmac, key, &input)?;
            half.copy_from_slice(block.as_bytes());
        }
        Ok(Kek {
            cipher,
            kcv: *key.kcv(),
            data,
        })
    }

    /// Key material for data at rest (the stores' data keys, `isoswitch-reversal`'s
    /// `seal::DataKeys::from_kek`): derived from the KEK by a KDF, so the KEK itself
    /// seals sessions only and the two uses never share a key.
    pub fn data_key_material(&self) -> &[u8; 32] {
        &self.data
    }

    /// The KEK's check value (AES-CMAC of zeros), to tell KEKs apart in logs.
    pub fn kcv(&self) -> &Kcv {
        &self.kcv
    }
}

/// A session's durable state; see the module docs. `Debug` shows the keys' kinds and
/// check values only.
#[derive(Clone, Debug)]
pub struct TerminalSnapshot {
    /// The terminal (DE 41 + 42).
    pub terminal: TerminalId,
    /// Its current batch.
    pub batch: BatchNumber,
    /// Sign-ons seen by the session that exported it (the key generation).
    pub generation: u64,
    /// The working keys; `None` when the terminal is not signed on (signed off, or its
    /// keys were invalidated).
    pub keys: Option<WorkingKeys>,
}

/// A [`TerminalSnapshot`] sealed under a [`Kek`]: what a session store keeps. The
/// terminal and generation are in clear (to index by, and for a store shared by
/// several nodes to compare generations); both are authenticated with the content.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSnapshot {
    /// The terminal.
    pub terminal: TerminalId,
    /// The generation.
    pub generation: u64,
    /// `version | nonce | AES-GCM ciphertext and tag`.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for SealedSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSnapshot")
            .field("terminal", &self.terminal)
            .field("generation", &self.generation)
            .field("len", &self.bytes.len())
            .finish()
    }
}

fn aad(terminal: &TerminalId, generation: u64) -> Vec<u8> {
    let mut a = Vec::with_capacity(AAD_LABEL.len() + 40);
    a.extend_from_slice(AAD_LABEL);
    for part in [terminal.terminal(), terminal.merchant()] {
        a.push(part.len() as u8);
        a.extend_from_slice(part.as_bytes());
    }
    a.extend_from_slice(&generation.to_le_bytes());
    a
}

fn kind_code(kind: KeyKind) -> u8 {
    match kind {
        KeyKind::Des => 1,
        KeyKind::Tdes2 => 2,
        KeyKind::Tdes3 => 3,
        KeyKind::Aes128 => 4,
        KeyKind::Aes192 => 5,
        KeyKind::Aes256 => 6,
    }
}

fn kind_of(code: u8) -> Option<KeyKind> {
    Some(match code {
        1 => KeyKind::Des,
        2 => KeyKind::Tdes2,
        3 => KeyKind::Tdes3,
        4 => KeyKind::Aes128,
        5 => KeyKind::Aes192,
        6 => KeyKind::Aes256,
        _ => return None,
    })
}

fn scheme_code(scheme: Option<KeyScheme>) -> u8 {
    match scheme {
        None => 0,
        Some(KeyScheme::Single) => 1,
        Some(KeyScheme::Double) => 2,
        Some(KeyScheme::DoubleWithTdk) => 3,
    }
}

/// Bounds-checked reading of the decrypted content.
struct Plain<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Plain<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(SessionError::SnapshotFormat {
                offset: self.pos,
                what,
            }),
        }
    }
    fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn bad(&self, what: &'static str) -> SessionError {
        SessionError::SnapshotFormat {
            offset: self.pos,
            what,
        }
    }
    fn key(&mut self) -> Result<Key> {
        let kind = kind_of(self.u8("key kind")?).ok_or_else(|| self.bad("unknown key kind"))?;
        let len = usize::from(self.u8("key length")?);
        if len != kind.key_len() {
            return Err(self.bad("key length does not match its kind"));
        }
        Key::new(kind, self.take(len, "key material")?)
    }
}

impl TerminalSnapshot {
    /// Seals the snapshot under `kek` with a nonce from the OS RNG.
    ///
    /// # Errors
    /// [`SessionError::SnapshotFormat`] if the encryption fails (it cannot for
    /// snapshots of this size).
    pub fn seal(&self, kek: &Kek) -> Result<SealedSnapshot> {
        self.seal_with_rng(kek, &mut OsRng)
    }

    /// Seals the snapshot with a nonce drawn from `rng` (randomness as an input, for
    /// tests).
    ///
    /// # Errors
    /// As [`TerminalSnapshot::seal`].
    pub fn seal_with_rng<R: RngCore + CryptoRng>(
        &self,
        kek: &Kek,
        rng: &mut R,
    ) -> Result<SealedSnapshot> {
        let mut plain = Zeroizing::new(Vec::with_capacity(128));
        plain.extend_from_slice(&self.batch.get().to_le_bytes());
        plain.push(scheme_code(self.keys.as_ref().map(|k| k.scheme())));
        if let Some(keys) = &self.keys {
            for key in [Some(keys.pik()), Some(keys.mak()), keys.tdk()]
                .into_iter()
                .flatten()
            {
                plain.push(kind_code(key.kind()));
                plain.push(key.material().len() as u8);
                plain.extend_from_slice(key.material());
            }
        }
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let tag = kek
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &aad(&self.terminal, self.generation),
                &mut plain,
            )
            .map_err(|_| SessionError::SnapshotFormat {
                offset: 0,
                what: "encryption failed",
            })?;
        let mut bytes = Vec::with_capacity(1 + NONCE_LEN + plain.len() + TAG_LEN);
        bytes.push(SEALED_VERSION);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&plain);
        bytes.extend_from_slice(&tag);
        Ok(SealedSnapshot {
            terminal: self.terminal,
            generation: self.generation,
            bytes,
        })
    }
}

impl SealedSnapshot {
    /// Authenticates and decrypts the snapshot under `kek`.
    ///
    /// # Errors
    /// [`SessionError::SnapshotFormat`] for a malformed sealed snapshot or content
    /// (with the byte offset), [`SessionError::SnapshotAuth`] for the wrong KEK or an
    /// altered snapshot. Never panics.
    pub fn open(&self, kek: &Kek) -> Result<TerminalSnapshot> {
        let b = &self.bytes;
        if b.len() > MAX_SEALED_LEN {
            return Err(SessionError::SnapshotFormat {
                offset: MAX_SEALED_LEN,
                what: "sealed snapshot too long",
            });
        }
        if b.len() < 1 + NONCE_LEN + TAG_LEN {
            return Err(SessionError::SnapshotFormat {
                offset: b.len(),
                what: "sealed snapshot too short",
            });
        }
        if b[0] != SEALED_VERSION {
            return Err(SessionError::SnapshotFormat {
                offset: 0,
                what: "unknown sealed snapshot version",
            });
        }
        let nonce = &b[1..1 + NONCE_LEN];
        let (ct, tag) = b[1 + NONCE_LEN..].split_at(b.len() - 1 - NONCE_LEN - TAG_LEN);
        let mut plain = Zeroizing::new(ct.to_vec());
        kek.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &aad(&self.terminal, self.generation),
                &mut plain,
                aes_gcm::Tag::from_slice(tag),
            )
            .map_err(|_| SessionError::SnapshotAuth {
                terminal: self.terminal.to_string(),
            })?;
        let mut r = Plain {
            buf: &plain,
            pos: 0,
        };
        let batch_bytes = r.take(4, "batch")?;
        let batch = u32::from_le_bytes([
            batch_bytes[0],
            batch_bytes[1],
            batch_bytes[2],
            batch_bytes[3],
        ]);
        let batch = BatchNumber::new(batch).map_err(|_| r.bad("batch out of range"))?;
        let keys = match r.u8("key scheme")? {
            0 => None,
            code => {
                let scheme = match code {
                    1 => KeyScheme::Single,
                    2 => KeyScheme::Double,
                    3 => KeyScheme::DoubleWithTdk,
                    _ => return Err(r.bad("unknown key scheme")),
                };
                let pik = r.key()?;
                let mak = r.key()?;
                let tdk = if scheme.has_tdk() {
                    Some(r.key()?)
                } else {
                    None
                };
                Some(WorkingKeys::new(scheme, pik, mak, tdk)?)
            }
        };
        if r.pos != plain.len() {
            return Err(r.bad("trailing bytes in snapshot"));
        }
        Ok(TerminalSnapshot {
            terminal: self.terminal,
            batch,
            generation: self.generation,
            keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(b: u8) -> Kek {
        Kek::new(&Key::aes(&[b; 32]).expect("key")).expect("kek")
    }

    fn snap(keys: bool) -> TerminalSnapshot {
        TerminalSnapshot {
            terminal: TerminalId::new("TERM0001", "MERCHANT0000001").expect("id"),
            batch: BatchNumber::new(42).expect("batch"),
            generation: 3,
            keys: keys.then(|| {
                WorkingKeys::generate(KeyScheme::DoubleWithTdk, KeyKind::Des).expect("keys")
            }),
        }
    }

    #[test]
    fn seal_open_round_trip_and_no_clear_key() {
        for with_keys in [true, false] {
            let s = snap(with_keys);
            let sealed = s.seal(&kek(1)).expect("seal");
            if let Some(k) = &s.keys {
                for key in [k.pik(), k.mak()] {
                    let m = key.material();
                    assert!(
                        !sealed.bytes.windows(m.len()).any(|w| w == m),
                        "clear key in sealed snapshot"
                    );
                }
            }
            let back = sealed.open(&kek(1)).expect("open");
            assert_eq!(back.terminal, s.terminal);
            assert_eq!(back.batch, s.batch);
            assert_eq!(back.generation, 3);
            assert_eq!(
                back.keys.as_ref().map(|k| *k.mak().kcv()),
                s.keys.as_ref().map(|k| *k.mak().kcv())
            );
            assert_eq!(
                back.keys.as_ref().and_then(|k| k.tdk().map(|t| *t.kcv())),
                s.keys.as_ref().and_then(|k| k.tdk().map(|t| *t.kcv()))
            );
        }
    }

    #[test]
    fn wrong_kek_altered_bytes_or_moved_snapshot_do_not_open() {
        let sealed = snap(true).seal(&kek(1)).expect("seal");
        assert!(matches!(
            sealed.open(&kek(2)),
            Err(SessionError::SnapshotAuth { .. })
        ));
        for i in 1..sealed.bytes.len() {
            let mut bad = sealed.clone();
            bad.bytes[i] ^= 0x40;
            assert!(
                matches!(bad.open(&kek(1)), Err(SessionError::SnapshotAuth { .. })),
                "byte {i}"
            );
        }
        let mut moved = sealed.clone();
        moved.terminal = TerminalId::new("TERM0002", "MERCHANT0000001").expect("id");
        assert!(matches!(
            moved.open(&kek(1)),
            Err(SessionError::SnapshotAuth { .. })
        ));
        let mut other_gen = sealed.clone();
        other_gen.generation = 4;
        assert!(matches!(
            other_gen.open(&kek(1)),
            Err(SessionError::SnapshotAuth { .. })
        ));
        // Malformed: every truncation, a wrong version, an oversized blob.
        for cut in 0..sealed.bytes.len() {
            let mut t = sealed.clone();
            t.bytes.truncate(cut);
            assert!(t.open(&kek(1)).is_err(), "cut {cut}");
        }
        let mut v = sealed.clone();
        v.bytes[0] = 9;
        assert!(matches!(
            v.open(&kek(1)),
            Err(SessionError::SnapshotFormat { offset: 0, .. })
        ));
        let mut huge = sealed;
        huge.bytes.resize(MAX_SEALED_LEN + 1, 0);
        assert!(matches!(
            huge.open(&kek(1)),
            Err(SessionError::SnapshotFormat { .. })
        ));
    }

    #[test]
    fn kek_must_be_aes256_and_debug_masks() {
        assert!(matches!(
            Kek::new(&Key::tdes(&[7; 16]).expect("tdes")),
            Err(SessionError::WrongKeyAlgorithm { .. })
        ));
        let k = kek(0x5A);
        let shown = format!("{k:?} {:?}", snap(true));
        assert!(shown.contains("kcv"));
        assert!(!shown.contains("5A5A5A"), "{shown}");
        let sealed = snap(true).seal(&k).expect("seal");
        let shown = format!("{sealed:?}");
        assert!(shown.contains("len"), "{shown}");
    }

    #[test]
    fn content_that_authenticates_but_is_malformed_is_a_typed_error() {
        // Seal hand-made content with the crate's own cipher to reach the parser.
        let k = kek(1);
        let id = TerminalId::new("TERM0001", "MERCHANT0000001").expect("id");
        for (plain, what) in [
            (vec![0u8, 0, 0, 0, 0], "batch out of range"),
            (vec![1u8, 0, 0, 0, 9], "unknown key scheme"),
            (vec![1u8, 0, 0, 0, 1, 7, 8], "unknown key kind"),
            (
                vec![1u8, 0, 0, 0, 1, 1, 200],
                "key length does not match its kind",
            ),
            (vec![1u8, 0, 0, 0, 0, 0], "trailing bytes in snapshot"),
        ] {
            let mut buf = plain.clone();
            let nonce = [3u8; NONCE_LEN];
            let tag = k
                .cipher
                .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad(&id, 0), &mut buf)
                .expect("enc");
            let mut bytes = vec![SEALED_VERSION];
            bytes.extend_from_slice(&nonce);
            bytes.extend_from_slice(&buf);
            bytes.extend_from_slice(&tag);
            let sealed = SealedSnapshot {
                terminal: id,
                generation: 0,
                bytes,
            };
            match sealed.open(&k) {
                Err(SessionError::SnapshotFormat { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}
