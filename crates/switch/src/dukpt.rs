//! PIN blocks from DUKPT terminals: [`DukptPins`] translates them from the terminal's
//! transaction key (BDK + KSN, inside the security module) to the zone PIN key of the
//! generation the upstream message is sealed under.
//!
//! The zone PIN key reaches the module once per zone-key generation, as the host sent
//! it: encrypted under the zone master key in the 0810's key field
//! ([`ZoneKeys::pik_under_zmk`]), imported under the ZMK the module holds
//! ([`SecurityModule::import_key`] with its check value, `FA` on a Thales HSM). The
//! switch never hands the module a clear zone key and needs no clear ZMK for it; the
//! BDK and the ZMK never leave the module: they are loaded under its LMK. The module
//! holds the zone PIN keys of the current and the previous generation (a message
//! prepared just before a key change still translates); older ones are deleted
//! ([`SecurityModule::forget_key`]).
//!
//! A translation that fails because the module could not be reached or did not answer
//! is [`SwitchError::SecurityModuleFault`] (answered `96`), not a PIN block the module
//! refused ([`SwitchError::Security`], `99`): see [`SwitchError::pin_failure_code`].

use std::sync::Mutex;

use isoswitch_codec::Message;
use isoswitch_hsm::{
    AnyModule, EncryptedKey, HsmError, KeyBlob, KeyHandle, KeyUsage, Ksn, PinSource,
    PinTranslation, SecurityModule,
};
use isoswitch_session::crypto::{Pan, PinBlock, PinBlockFormat};

use crate::error::{Result, SwitchError};
use crate::upstream::ZoneKeys;

/// Zone PIN key generations the module holds at once: the current and the previous.
pub const ZONE_PIN_KEYS_HELD: usize = 2;

/// Where a DUKPT terminal's request carries its KSN, and the module that translates.
pub struct DukptPins {
    module: AnyModule,
    bdk: KeyHandle,
    zmk: KeyHandle,
    ksn_field: u8,
    /// The zone PIN keys imported, newest generation first: (generation, the key's full
    /// check value, handle), at most [`ZONE_PIN_KEYS_HELD`]. A key is known by its check
    /// value: the links of a pool each have zone keys of their own, their generations
    /// counted separately.
    zpks: Mutex<Vec<(u64, isoswitch_session::crypto::Kcv, KeyHandle)>>,
}

impl std::fmt::Debug for DukptPins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DukptPins")
            .field("module", &self.module.kind())
            .field("bdk", &self.bdk)
            .field("ksn_field", &self.ksn_field)
            .finish_non_exhaustive()
    }
}

impl DukptPins {
    /// A translator on `module`: the BDK and the zone master key as stored under its
    /// LMK, and the field that carries the KSN (10 bytes TDES DUKPT, 12 bytes AES
    /// DUKPT).
    ///
    /// # Errors
    /// A key the module refuses to load.
    pub fn new(
        module: AnyModule,
        bdk_under_lmk: &EncryptedKey,
        zmk_under_lmk: &EncryptedKey,
        ksn_field: u8,
    ) -> Result<DukptPins> {
        let bdk = module
            .load_key(bdk_under_lmk, KeyUsage::BaseDerivation)
            .map_err(security)?;
        let zmk = module
            .load_key(zmk_under_lmk, KeyUsage::ZoneMaster)
            .map_err(security)?;
        Ok(DukptPins {
            module,
            bdk,
            zmk,
            ksn_field,
            zpks: Mutex::new(Vec::new()),
        })
    }

    /// The KSN of a DUKPT terminal's request, if it carries one with a PIN block.
    ///
    /// # Errors
    /// A KSN field of another length than 10 or 12 bytes.
    pub fn ksn_of(&self, msg: &Message) -> Result<Option<Ksn>> {
        if !msg.has(52) {
            return Ok(None);
        }
        let Some(f) = msg.field(self.ksn_field) else {
            return Ok(None);
        };
        Ksn::new(&f.bytes())
            .map(Some)
            .map_err(|e| SwitchError::Security(format!("field {}: {e}", self.ksn_field)))
    }

    /// The field that carries the KSN (removed from the upstream message).
    pub fn ksn_field(&self) -> u8 {
        self.ksn_field
    }

    /// The zone PIN keys the module holds for this translator: (generation, handle),
    /// newest first, at most [`ZONE_PIN_KEYS_HELD`].
    pub fn zone_pin_keys(&self) -> Vec<(u64, KeyHandle)> {
        self.lock().iter().map(|&(g, _, h)| (g, h)).collect()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Vec<(u64, isoswitch_session::crypto::Kcv, KeyHandle)>> {
        self.zpks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Translates a DUKPT PIN block to `keys`' zone PIN key in `to_format`.
    ///
    /// # Errors
    /// [`SwitchError::Security`]: a block that does not decipher under the
    /// transaction's key (answer `99`); [`SwitchError::SecurityModuleFault`]: a module
    /// that cannot be reached or does not answer, or a zone PIN key it cannot take
    /// (answer `96`).
    pub async fn translate(
        &self,
        block: &PinBlock,
        ksn: Ksn,
        pan: &Pan,
        keys: &ZoneKeys,
        to_format: PinBlockFormat,
    ) -> Result<PinBlock> {
        let (zpk, kept) = self.zone_pin_key(keys).await?;
        let r = self
            .module
            .translate_pin(PinTranslation {
                source: PinSource::Dukpt { bdk: self.bdk, ksn },
                block,
                pan: Some(pan),
                destination: zpk,
                to_format,
            })
            .await
            .map_err(security);
        if !kept {
            self.forget(zpk).await;
        }
        r
    }

    async fn forget(&self, key: KeyHandle) {
        if let Err(e) = self.module.forget_key(key).await {
            tracing::warn!(error = %e, "an old zone PIN key could not be deleted from the security module");
        }
    }

    /// The module's handle of `keys`' zone PIN key, imported on first use of its
    /// generation, and whether it is kept: the two newest generations are, an older
    /// one's key is deleted from the module when the newer ones come (or, for a late
    /// message of a generation older than both, after its one translation).
    async fn zone_pin_key(&self, keys: &ZoneKeys) -> Result<(KeyHandle, bool)> {
        let kcv = *keys.pik.kcv();
        if let Some((_, _, h)) = self.lock().iter().find(|(_, k, _)| *k == kcv) {
            return Ok((*h, true));
        }
        let wrapped = keys.pik_under_zmk.as_ref().ok_or_else(|| {
            SwitchError::SecurityModuleFault(format!(
                "zone key generation {}: no PIN key under the zone master key to import",
                keys.generation
            ))
        })?;
        let blob =
            KeyBlob::Ecb(EncryptedKey::new(wrapped.kind, &wrapped.encrypted).map_err(fault)?);
        let h = self
            .module
            .import_key(self.zmk, &blob, KeyUsage::ZonePin, Some(&wrapped.check))
            .await
            .map_err(fault)?;
        // Another task may have imported the same generation meanwhile: one handle per
        // generation, the newest generations kept.
        let (used, kept, dropped) = {
            let mut held = self.lock();
            match held.iter().find(|(_, k, _)| *k == kcv) {
                Some((_, _, existing)) => (*existing, true, vec![h]),
                None => {
                    held.push((keys.generation, kcv, h));
                    held.sort_by_key(|&(g, _, _)| std::cmp::Reverse(g));
                    let keep = held.len().min(ZONE_PIN_KEYS_HELD);
                    let old: Vec<KeyHandle> = held
                        .split_off(keep)
                        .into_iter()
                        .map(|(_, _, h)| h)
                        .filter(|&o| o != h)
                        .collect();
                    let kept = held.iter().any(|&(_, _, k)| k == h);
                    (h, kept, old)
                }
            }
        };
        for old in dropped {
            self.forget(old).await;
        }
        Ok((used, kept))
    }
}

/// A refusal of the module (the request's fault), or its failure to answer.
fn security(e: HsmError) -> SwitchError {
    if e.is_transport() {
        SwitchError::SecurityModuleFault(e.to_string())
    } else {
        SwitchError::Security(e.to_string())
    }
}

/// Whatever went wrong with a zone key: the switch's fault, never the request's.
fn fault(e: HsmError) -> SwitchError {
    SwitchError::SecurityModuleFault(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use isoswitch_hsm::thales::{ClientConfig, ThalesClient};
    use isoswitch_hsm::SoftHsm;
    use isoswitch_session::crypto::keys::{encrypt_key_under, KeyKind};
    use isoswitch_session::crypto::Key;
    use isoswitch_session::WrappedKey;
    use std::sync::Arc;
    use std::time::Duration;

    const LMK: &str = "0123456789ABCDEFFEDCBA9876543210";
    const LMK_BYTES: [u8; 16] = [
        0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32,
        0x10,
    ];

    fn key(b: u8) -> Key {
        Key::tdes(&[b; 16]).expect("key")
    }

    fn under(master: &Key, k: &Key) -> EncryptedKey {
        EncryptedKey::new(k.kind(), &encrypt_key_under(master, k).expect("wrap")).expect("key")
    }

    fn lmk() -> Key {
        Key::tdes(&LMK_BYTES).expect("lmk")
    }

    /// Generation `g`'s zone keys, the PIK under `zmk` as a host sends it.
    fn zone_keys(g: u64, zmk: &Key) -> ZoneKeys {
        let pik = key(0x20 + 2 * g as u8); // apart by more than the parity bit
        let kcv = pik.kcv();
        let mut check = [0u8; 4];
        check.copy_from_slice(&kcv.full()[..4]);
        ZoneKeys {
            generation: g,
            mak: key(0x40),
            pik: pik.clone(),
            previous_mak: None,
            pik_under_zmk: Some(WrappedKey {
                kind: KeyKind::Tdes2,
                encrypted: encrypt_key_under(zmk, &pik).expect("wrap"),
                check,
            }),
        }
    }

    /// A translator on `module` with a test BDK and `zmk`, both under the test LMK.
    fn pins(module: AnyModule, zmk: &Key) -> DukptPins {
        DukptPins::new(module, &under(&lmk(), &key(0x31)), &under(&lmk(), zmk), 62).expect("pins")
    }

    /// A translation of a garbage PIN block (it never deciphers): its error.
    async fn attempt(pins: &DukptPins, keys: &ZoneKeys) -> SwitchError {
        pins.translate(&block(), ksn(), &pan(), keys, PinBlockFormat::Iso0)
            .await
            .expect_err("a garbage PIN block")
    }

    fn block() -> PinBlock {
        PinBlock::from_bytes(PinBlockFormat::Iso0, &[0x5A; 8]).expect("block")
    }

    fn ksn() -> Ksn {
        Ksn::new(&[0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0x00, 0x01]).expect("ksn")
    }

    fn pan() -> Pan {
        Pan::new("4012345678909").expect("pan")
    }

    #[tokio::test]
    async fn the_zpk_is_imported_as_sent_and_only_two_generations_are_held() {
        let soft = Arc::new(SoftHsm::from_master_key_hex(LMK).expect("lmk"));
        let zmk = key(0x13);
        let pins = pins(AnyModule::Soft(soft.clone()), &zmk);
        let mut handles = Vec::new();
        for g in 1..=3 {
            let keys = zone_keys(g, &zmk);
            // The module takes the PIK under the ZMK (its check value verified) and
            // then refuses the garbage block: the request's failure, 99.
            let e = attempt(&pins, &keys).await;
            assert!(matches!(e, SwitchError::Security(_)), "{e}");
            assert_eq!(e.pin_failure_code(), *b"99");
            let (held_g, h) = pins.zone_pin_keys()[0];
            assert_eq!(held_g, g);
            // It is the PIK the host sent.
            assert_eq!(
                soft.key_check_value(h).await.expect("kcv").as_bytes()[..3],
                keys.pik.kcv().full()[..3]
            );
            handles.push(h);
        }
        let held: Vec<u64> = pins.zone_pin_keys().iter().map(|(g, _)| *g).collect();
        assert_eq!(held, vec![3, 2], "current and previous only");
        assert!(
            matches!(
                soft.key_check_value(handles[0]).await,
                Err(HsmError::UnknownKey(_))
            ),
            "generation 1's key is deleted from the module"
        );
        soft.key_check_value(handles[1])
            .await
            .expect("generation 2 kept");
        // The same generation again: no new import.
        attempt(&pins, &zone_keys(3, &zmk)).await;
        assert_eq!(pins.zone_pin_keys()[0].1, handles[2]);
        // A late message of generation 1: translated under a key imported for it and
        // deleted again after.
        attempt(&pins, &zone_keys(1, &zmk)).await;
        let held: Vec<u64> = pins.zone_pin_keys().iter().map(|(g, _)| *g).collect();
        assert_eq!(held, vec![3, 2]);
        // A PIK under another ZMK does not match its check value: refused, 96 (the
        // switch's zone key, not the request).
        let mut wrong = zone_keys(4, &zmk);
        wrong.pik_under_zmk = zone_keys(4, &key(0x77)).pik_under_zmk;
        let e = attempt(&pins, &wrong).await;
        assert_eq!(e.pin_failure_code(), *b"96", "{e}");
    }

    #[tokio::test]
    async fn an_hsm_that_does_not_answer_is_a_module_fault_answered_96() {
        // A server that accepts and never answers, and one that hangs up.
        for hang_up in [false, true] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((s, _)) = listener.accept().await {
                    if !hang_up {
                        held.push(s);
                    }
                }
            });
            let client = ThalesClient::connect(
                addr,
                ClientConfig {
                    timeout: Duration::from_millis(200),
                    ..ClientConfig::default()
                },
            )
            .await
            .expect("connect");
            let zmk = key(0x13);
            let pins = pins(AnyModule::Thales(client), &zmk);
            let e = attempt(&pins, &zone_keys(1, &zmk)).await;
            assert!(matches!(e, SwitchError::SecurityModuleFault(_)), "{e}");
            assert_eq!(e.pin_failure_code(), *b"96");
            server.abort();
        }
    }

    #[test]
    fn transport_errors_are_faults_and_refusals_are_not() {
        assert!(matches!(
            security(HsmError::Timeout),
            SwitchError::SecurityModuleFault(_)
        ));
        assert!(matches!(
            security(HsmError::ConnectionClosed),
            SwitchError::SecurityModuleFault(_)
        ));
        assert!(matches!(
            security(HsmError::Refused {
                command: "G0",
                code: "20".into()
            }),
            SwitchError::Security(_)
        ));
    }
}
