//! `isoswitch dukpt`: a DUKPT working key from a BDK and a KSN (TDES, ANSI X9.24-1; or
//! AES with `--aes`, ANSI X9.24-3).

use clap::Args;
use isoswitch::session::crypto::dukpt::aes::{self as aes_dukpt, AesKsn, KeyUsage, WorkingKeyType};
use isoswitch::session::crypto::dukpt::tdes::{self, TdesKsn, Variant};
use isoswitch::session::crypto::Key;
use isoswitch::session::SessionError;

use super::args::{hex_arg, key_opt, upper_hex};

/// The options of `isoswitch dukpt`.
#[derive(Args)]
pub struct DukptArgs {
    /// AES DUKPT (ANSI X9.24-3, 12-byte KSN) instead of TDES (X9.24-1, 10-byte KSN).
    #[arg(long)]
    pub aes: bool,
    /// The base derivation key in hex: 16 bytes (TDES), or 16, 24 or 32 (AES).
    #[arg(long)]
    pub bdk: String,
    /// The key serial number in hex: 10 bytes (TDES) or 12 bytes (AES).
    #[arg(long)]
    pub ksn: String,
    /// TDES: pin, mac, mac-response, data or data-response; without it, the
    /// transaction key itself.
    #[arg(long)]
    pub variant: Option<String>,
    /// AES: aes128, aes192, aes256, tdes2 or tdes3.
    #[arg(long)]
    pub key_type: Option<String>,
    /// AES: pin, mac-gen, mac-verify, mac, data-enc, data-dec, data or kek.
    #[arg(long)]
    pub usage: Option<String>,
}

/// Runs `isoswitch dukpt`; returns the key in upper-case hex.
pub fn run(a: &DukptArgs) -> Result<String, String> {
    let key = if a.aes { aes(a)? } else { tdes_key(a)? };
    Ok(upper_hex(&key.expose_secret()))
}

fn ksn_error(e: SessionError, want: usize) -> String {
    match e {
        SessionError::Dukpt(isoswitch::session::error::DukptError::KsnLength { found, .. }) => {
            format!(
                "--ksn: a {} KSN is {want} bytes ({} hex digits), got {found} bytes",
                if want == 10 { "TDES" } else { "AES" },
                want * 2
            )
        }
        other => format!("--ksn: {other}"),
    }
}

fn tdes_key(a: &DukptArgs) -> Result<Key, String> {
    if a.key_type.is_some() || a.usage.is_some() {
        return Err(
            "--key-type and --usage are for AES DUKPT (add --aes); TDES takes --variant".into(),
        );
    }
    let bdk = key_opt("--bdk", "TDES DUKPT", &a.bdk, &[16], Key::tdes)?;
    let ksn = TdesKsn::from_bytes(&hex_arg("--ksn", &a.ksn)?).map_err(|e| ksn_error(e, 10))?;
    let tk = tdes::derive_transaction_key(&bdk, &ksn).map_err(|e| e.to_string())?;
    let variant = match a.variant.as_deref() {
        None => return tk.current().map_err(|e| e.to_string()),
        Some("pin") => Variant::Pin,
        Some("mac") => Variant::MacRequest,
        Some("mac-response") => Variant::MacResponse,
        Some("data") => Variant::DataRequest,
        Some("data-response") => Variant::DataResponse,
        Some(other) => {
            return Err(format!(
                "--variant must be pin, mac, mac-response, data or data-response, not {other:?}"
            ))
        }
    };
    tk.variant(variant).map_err(|e| e.to_string())
}

fn aes(a: &DukptArgs) -> Result<Key, String> {
    if a.variant.is_some() {
        return Err("--variant is for TDES DUKPT; AES takes --key-type and --usage".into());
    }
    let bdk = key_opt("--bdk", "AES DUKPT", &a.bdk, &[16, 24, 32], Key::aes)?;
    let ksn = AesKsn::from_bytes(&hex_arg("--ksn", &a.ksn)?).map_err(|e| ksn_error(e, 12))?;
    let ty = match a.key_type.as_deref() {
        None => {
            return Err(
                "--key-type is required with --aes (aes128, aes192, aes256, tdes2, tdes3)".into(),
            )
        }
        Some("aes128") => WorkingKeyType::Aes128,
        Some("aes192") => WorkingKeyType::Aes192,
        Some("aes256") => WorkingKeyType::Aes256,
        Some("tdes2") => WorkingKeyType::Tdes2,
        Some("tdes3") => WorkingKeyType::Tdes3,
        Some(other) => {
            return Err(format!(
                "--key-type must be aes128, aes192, aes256, tdes2 or tdes3, not {other:?}"
            ))
        }
    };
    let usage = match a.usage.as_deref() {
        None => return Err("--usage is required with --aes (pin, mac-gen, mac-verify, mac, data-enc, data-dec, data, kek)".into()),
        Some("pin") => KeyUsage::PinEncryption,
        Some("mac-gen") => KeyUsage::MacGeneration,
        Some("mac-verify") => KeyUsage::MacVerification,
        Some("mac") => KeyUsage::MacBoth,
        Some("data-enc") => KeyUsage::DataEncryption,
        Some("data-dec") => KeyUsage::DataDecryption,
        Some("data") => KeyUsage::DataBoth,
        Some("kek") => KeyUsage::KeyEncryption,
        Some(other) => {
            return Err(format!(
                "--usage must be pin, mac-gen, mac-verify, mac, data-enc, data-dec, data or kek, not {other:?}"
            ))
        }
    };
    aes_dukpt::derive_working_key(&bdk, &ksn, usage, ty).map_err(|e| match e {
        SessionError::Dukpt(d) => format!("--key-type: {d}"),
        other => other.to_string(),
    })
}
