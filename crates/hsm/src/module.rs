//! The [`SecurityModule`] trait: every operation a switch or host needs on keys and
//! PINs, with keys named by [`KeyHandle`] and never seen in clear.
//!
//! ## Why methods return `impl Future + Send`
//! The switch calls the module once or twice per transaction from tokio tasks. Each
//! method is a plain `fn` returning `impl Future<Output = …> + Send` (return-position
//! `impl Trait` in traits, stable since Rust 1.75) rather than an `async_trait` box:
//! - [`crate::SoftHsm`] does its work synchronously inside the call and returns
//!   [`std::future::Ready`]: no boxing, no allocation, nothing to schedule.
//! - A remote module ([`crate::thales::ThalesClient`]) returns a future that sends its
//!   command when first polled and resolves when the response with its correlation id
//!   arrives, so a caller that polls several of them concurrently (several tasks, or
//!   `join_all`) has them in flight on one connection at once: pipelining.
//! - The `Send` bound is part of the signature, so callers may `tokio::spawn` code
//!   generic over `M: SecurityModule`.
//!
//! The price is that the trait is not object-safe (`dyn SecurityModule` is not
//! possible); code that must choose at run time uses an enum of the implementations
//! or a generic parameter.

use std::future::Future;

use isoswitch_session::crypto::keys::KeyKind;
use isoswitch_session::crypto::mac::{MacAlgorithm, MacValue};
use isoswitch_session::crypto::pin::{Pan, PinBlock, PinBlockFormat};

use crate::error::Result;
use crate::types::{
    CheckValue, ExportFormat, GeneratedKey, KeyBlob, KeyHandle, KeyUsage, PinReference, PinSource,
};

/// A request to translate a PIN block from the key it arrived under to another.
#[derive(Debug, Clone, Copy)]
pub struct PinTranslation<'a> {
    /// The key (or DUKPT source) the block is encrypted under.
    pub source: PinSource,
    /// The block as received (its format is the block's own).
    pub block: &'a PinBlock,
    /// The card's PAN; needed when either format binds it (0, 3, 4).
    pub pan: Option<&'a Pan>,
    /// The PIN encryption key to translate to.
    pub destination: KeyHandle,
    /// The format of the new block.
    pub to_format: PinBlockFormat,
}

/// A request to verify the PIN inside a PIN block against a reference.
#[derive(Debug, Clone, Copy)]
pub struct PinVerification<'a> {
    /// The PIN encryption key (TPK or ZPK) the block is under.
    pub key: KeyHandle,
    /// The block.
    pub block: &'a PinBlock,
    /// The card's PAN.
    pub pan: &'a Pan,
    /// What the PIN must match.
    pub reference: PinReference,
}

/// Security operations behind one interface (the scope of jPOS's `SMAdapter`): key
/// generation, check values, PIN translation and verification, MACs, key import and
/// export. Implemented by [`crate::SoftHsm`] and [`crate::thales::ThalesClient`].
///
/// Outcomes that are normal answers (a KCV, MAC or PIN that does not match) are
/// `Ok(false)`; `Err` is for requests that cannot be carried out.
pub trait SecurityModule: Send + Sync {
    /// Generates a random working key of `kind` for `usage`, holds it, and returns it
    /// encrypted under the key-encrypting key `master` (a TMK or ZMK) with its check
    /// value. With `usage` [`KeyUsage::TerminalMaster`] and a TMK as `master`, this is
    /// a terminal master key change.
    fn generate_working_key(
        &self,
        master: KeyHandle,
        usage: KeyUsage,
        kind: KeyKind,
    ) -> impl Future<Output = Result<GeneratedKey>> + Send;

    /// The check value of a held key.
    fn key_check_value(&self, key: KeyHandle) -> impl Future<Output = Result<CheckValue>> + Send;

    /// Whether `received` (2 bytes or more, usually 3 or 4) is the leading part of the
    /// key's check value; compared in constant time.
    fn check_kcv(
        &self,
        key: KeyHandle,
        received: &[u8],
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Translates a PIN block to the destination key and format; the clear PIN never
    /// leaves the module.
    fn translate_pin(
        &self,
        request: PinTranslation<'_>,
    ) -> impl Future<Output = Result<PinBlock>> + Send;

    /// The MAC of `data` under a MAC key.
    fn generate_mac(
        &self,
        key: KeyHandle,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> impl Future<Output = Result<MacValue>> + Send;

    /// Whether `mac` (the full MAC or a truncation of at least 4 bytes) is the MAC of
    /// `data`; compared in constant time.
    fn verify_mac(
        &self,
        key: KeyHandle,
        algorithm: MacAlgorithm,
        data: &[u8],
        mac: &[u8],
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Whether the PIN in the block matches the reference.
    fn verify_pin(&self, request: PinVerification<'_>)
        -> impl Future<Output = Result<bool>> + Send;

    /// Imports a key that arrived under the key-encrypting key `kek`, to be used for
    /// `usage`; a given `kcv` is compared first (a mismatch is an error: the key is
    /// not taken).
    fn import_key(
        &self,
        kek: KeyHandle,
        blob: &KeyBlob,
        usage: KeyUsage,
        kcv: Option<&[u8]>,
    ) -> impl Future<Output = Result<KeyHandle>> + Send;

    /// Exports a held key under the key-encrypting key `kek`.
    fn export_key(
        &self,
        key: KeyHandle,
        kek: KeyHandle,
        format: ExportFormat,
    ) -> impl Future<Output = Result<KeyBlob>> + Send;

    /// Forgets a held key: its handle is no longer valid (a zone key of a generation
    /// no longer in use, so that handles do not pile up); the software module zeroizes
    /// it.
    ///
    /// # Errors
    /// [`crate::HsmError::UnknownKey`] for a handle not held.
    fn forget_key(&self, key: KeyHandle) -> impl Future<Output = Result<()>> + Send;
}
