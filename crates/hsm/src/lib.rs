//! # isoswitch-hsm
//!
//! Security modules for isoswitch: one [`SecurityModule`] trait for every key and PIN
//! operation a switch or a host needs, with keys named by opaque [`KeyHandle`]s (or
//! carried encrypted), never in clear in the application.
//!
//! ## Module map
//! - [`module`] — the [`SecurityModule`] trait (async, `Send` futures; why, in its
//!   docs), [`PinTranslation`] and [`PinVerification`] requests.
//! - [`types`] — [`KeyHandle`], [`KeyUsage`], [`EncryptedKey`], [`CheckValue`],
//!   [`GeneratedKey`], [`PinSource`] (terminal key or DUKPT), [`PinReference`] (Visa
//!   PVV or an enrolled PIN), [`KeyBlob`] (ECB or TR-31), [`Ksn`].
//! - [`soft`] — [`SoftHsm`], the software module over `isoswitch-session`'s crypto,
//!   keys under a local master key loaded from a hex file.
//! - [`thales`] — the payShield host command subset (A0, BU, CA, G0, DC, EC, FA, HC,
//!   NC, M6, M8): [`thales::codec`] (sans-IO), [`thales::ThalesClient`] (pipelining tokio
//!   client, a `SecurityModule`), [`thales::server`] (the commands on a `SoftHsm`).
//! - [`any`] — [`AnyModule`], the module chosen at run time (SoftHsm or Thales client).
//! - [`error`] — [`HsmError`].
//!
//! DUKPT terminals ([`PinSource::Dukpt`]: TDES and AES DUKPT in [`SoftHsm`], TDES
//! through `G0` on the Thales client) and TR-31 key blocks ([`KeyBlob::Tr31`], the
//! header enforced on import and kept as a restriction) use `isoswitch-session`'s
//! `crypto::dukpt` and `crypto::tr31`.

#![warn(missing_docs)]

pub mod any;
pub mod error;
pub(crate) mod hex;
pub mod module;
pub mod soft;
pub mod thales;
pub mod types;

pub use any::AnyModule;
pub use error::{HsmError, Result};
pub use hex::encode_upper as hex_upper;
pub use module::{PinTranslation, PinVerification, SecurityModule};
pub use soft::SoftHsm;
pub use types::{
    CheckValue, EncryptedKey, ExportFormat, GeneratedKey, KeyBlob, KeyHandle, KeyUsage, Ksn,
    PinRefHandle, PinReference, PinSource,
};
