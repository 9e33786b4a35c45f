//! PIN blocks from DUKPT terminals: [`DukptPins`] translates them from the terminal's
//! transaction key (BDK + KSN, inside the security module) to the zone PIN key of the
//! generation the upstream message is sealed under.
//!
//! The zone PIN key reaches the module once per zone-key generation: wrapped under the
//! zone master key and imported ([`SecurityModule::import_key`], `FA` on a Thales
//! HSM), so the module translates without the switch ever handing it a clear PIN key
//! of the zone. The BDK never leaves the module: it is loaded under the module's LMK.

use std::sync::Mutex;

use isoswitch_codec::Message;
use isoswitch_hsm::{
    AnyModule, EncryptedKey, KeyBlob, KeyHandle, KeyUsage, Ksn, PinSource, PinTranslation,
    SecurityModule,
};
use isoswitch_session::crypto::keys::encrypt_key_under;
use isoswitch_session::crypto::{Key, Pan, PinBlock, PinBlockFormat};
use zeroize::Zeroizing;

use crate::error::{Result, SwitchError};
use crate::upstream::ZoneKeys;

/// Where a DUKPT terminal's request carries its KSN, and the module that translates.
pub struct DukptPins {
    module: AnyModule,
    bdk: KeyHandle,
    zmk: KeyHandle,
    /// The zone master key, to wrap each generation's zone PIN key for import.
    zmk_clear: Key,
    ksn_field: u8,
    /// The zone PIN keys imported, newest last: (the key's full check value, handle). A
    /// pool's links each have zone keys of their own (their generations count
    /// separately), so a key is known by its check value, not its generation.
    zpk: Mutex<Vec<(isoswitch_session::crypto::Kcv, KeyHandle)>>,
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
    /// LMK, the clear zone master key the switch already holds for its sign-ons, and
    /// the field that carries the KSN (10 bytes TDES DUKPT, 12 bytes AES DUKPT).
    ///
    /// # Errors
    /// A key the module refuses to load.
    pub fn new(
        module: AnyModule,
        bdk_under_lmk: &EncryptedKey,
        zmk_under_lmk: &EncryptedKey,
        zmk_clear: Key,
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
            zmk_clear,
            ksn_field,
            zpk: Mutex::new(Vec::new()),
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

    /// Translates a DUKPT PIN block to `keys`' zone PIN key in `to_format`.
    ///
    /// # Errors
    /// [`SwitchError::Security`]: a block that does not decipher under the
    /// transaction's key (answer `99`), a module that cannot be reached.
    pub async fn translate(
        &self,
        block: &PinBlock,
        ksn: Ksn,
        pan: &Pan,
        keys: &ZoneKeys,
        to_format: PinBlockFormat,
    ) -> Result<PinBlock> {
        let zpk = self.zone_pin_key(keys).await?;
        self.module
            .translate_pin(PinTranslation {
                source: PinSource::Dukpt { bdk: self.bdk, ksn },
                block,
                pan: Some(pan),
                destination: zpk,
                to_format,
            })
            .await
            .map_err(security)
    }

    /// The module's handle of `keys`' zone PIN key, imported on first use of its
    /// generation.
    async fn zone_pin_key(&self, keys: &ZoneKeys) -> Result<KeyHandle> {
        let kcv = *keys.pik.kcv();
        let held = self
            .zpk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(k, _)| *k == kcv)
            .map(|(_, h)| *h);
        if let Some(h) = held {
            return Ok(h);
        }
        let wrapped = Zeroizing::new(encrypt_key_under(&self.zmk_clear, &keys.pik)?);
        let blob = KeyBlob::Ecb(EncryptedKey::new(keys.pik.kind(), &wrapped).map_err(security)?);
        let h = self
            .module
            .import_key(self.zmk, &blob, KeyUsage::ZonePin, None)
            .await
            .map_err(security)?;
        let mut held = self.zpk.lock().unwrap_or_else(|e| e.into_inner());
        if !held.iter().any(|(k, _)| *k == kcv) {
            held.push((kcv, h));
            // A few links, each with its current and previous key.
            if held.len() > MAX_ZONE_PIN_KEYS {
                held.remove(0);
            }
        }
        Ok(h)
    }
}

/// The most zone PIN key handles kept (older ones are imported again when used).
const MAX_ZONE_PIN_KEYS: usize = 16;

fn security(e: isoswitch_hsm::HsmError) -> SwitchError {
    SwitchError::Security(e.to_string())
}
