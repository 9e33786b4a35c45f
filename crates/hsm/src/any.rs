//! [`AnyModule`]: a security module chosen at run time (the software module or a
//! remote Thales-compatible HSM), for programs whose configuration decides which.
//!
//! [`SecurityModule`] is not object-safe (its methods return `impl Future`), so this
//! enum is the run-time choice: each call goes to the chosen module, and a
//! [`KeyHandle`] is meaningful only to the module that issued it. Loading a key that
//! is stored under the module's LMK is the one operation outside the trait, and both
//! modules have it ([`AnyModule::load_key`]).

use std::sync::Arc;

use isoswitch_session::crypto::keys::KeyKind;
use isoswitch_session::crypto::mac::{MacAlgorithm, MacValue};
use isoswitch_session::crypto::pin::PinBlock;

use crate::error::Result;
use crate::module::{PinTranslation, PinVerification, SecurityModule};
use crate::soft::SoftHsm;
use crate::thales::ThalesClient;
use crate::types::{
    CheckValue, EncryptedKey, ExportFormat, GeneratedKey, KeyBlob, KeyHandle, KeyUsage,
};

/// The software module or a Thales client; cheap to clone.
#[derive(Debug, Clone)]
pub enum AnyModule {
    /// In-process [`SoftHsm`].
    Soft(Arc<SoftHsm>),
    /// A payShield-compatible HSM over TCP (e.g. `hsm_sim`).
    Thales(ThalesClient),
}

impl AnyModule {
    /// Takes a key stored encrypted under the module's local master key, for `usage`.
    ///
    /// # Errors
    /// A key of a kind the module does not hold (SoftHsm: one that does not decrypt).
    pub fn load_key(&self, under_lmk: &EncryptedKey, usage: KeyUsage) -> Result<KeyHandle> {
        match self {
            AnyModule::Soft(m) => m.load_key(under_lmk, usage),
            AnyModule::Thales(c) => Ok(c.register_key(*under_lmk, usage)),
        }
    }

    /// `"soft"` or `"thales"`, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyModule::Soft(_) => "soft",
            AnyModule::Thales(_) => "thales",
        }
    }
}

macro_rules! each {
    ($self:ident, $m:ident => $e:expr) => {
        match $self {
            AnyModule::Soft($m) => $e.await,
            AnyModule::Thales($m) => $e.await,
        }
    };
}

impl SecurityModule for AnyModule {
    async fn generate_working_key(
        &self,
        master: KeyHandle,
        usage: KeyUsage,
        kind: KeyKind,
    ) -> Result<GeneratedKey> {
        each!(self, m => m.generate_working_key(master, usage, kind))
    }

    async fn key_check_value(&self, key: KeyHandle) -> Result<CheckValue> {
        each!(self, m => m.key_check_value(key))
    }

    async fn check_kcv(&self, key: KeyHandle, received: &[u8]) -> Result<bool> {
        each!(self, m => m.check_kcv(key, received))
    }

    async fn translate_pin(&self, request: PinTranslation<'_>) -> Result<PinBlock> {
        each!(self, m => m.translate_pin(request))
    }

    async fn generate_mac(
        &self,
        key: KeyHandle,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<MacValue> {
        each!(self, m => m.generate_mac(key, algorithm, data))
    }

    async fn verify_mac(
        &self,
        key: KeyHandle,
        algorithm: MacAlgorithm,
        data: &[u8],
        mac: &[u8],
    ) -> Result<bool> {
        each!(self, m => m.verify_mac(key, algorithm, data, mac))
    }

    async fn verify_pin(&self, request: PinVerification<'_>) -> Result<bool> {
        each!(self, m => m.verify_pin(request))
    }

    async fn import_key(
        &self,
        kek: KeyHandle,
        blob: &KeyBlob,
        usage: KeyUsage,
        kcv: Option<&[u8]>,
    ) -> Result<KeyHandle> {
        each!(self, m => m.import_key(kek, blob, usage, kcv))
    }

    async fn export_key(
        &self,
        key: KeyHandle,
        kek: KeyHandle,
        format: ExportFormat,
    ) -> Result<KeyBlob> {
        each!(self, m => m.export_key(key, kek, format))
    }

    async fn forget_key(&self, key: KeyHandle) -> Result<()> {
        each!(self, m => m.forget_key(key))
    }
}
