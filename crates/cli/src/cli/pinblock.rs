//! `isoswitch pinblock`: build (`--pin`), decipher (`--decipher`) and translate
//! (`--translate`) ISO 9564 PIN blocks.

use clap::Args;
use isoswitch::session::crypto::{translate, Fill, Key, Pan, Pin, PinBlock, PinBlockFormat};
use isoswitch::session::SessionError;

use super::args::{hex_arg, key_arg, key_opt, pan_arg, upper_hex};

/// The options of `isoswitch pinblock`.
#[derive(Args)]
pub struct PinblockArgs {
    /// Decipher --block under --key and print the PIN.
    #[arg(long, conflicts_with_all = ["translate", "pin"])]
    pub decipher: bool,
    /// Translate --block from --from-key to --to-key and print the new block.
    #[arg(long, conflicts_with = "pin")]
    pub translate: bool,
    /// 0, 1, 3 or 4 (building and deciphering).
    #[arg(long)]
    pub format: Option<String>,
    /// The PIN: 4 to 12 digits (building).
    #[arg(long)]
    pub pin: Option<String>,
    /// The primary account number: 12 to 19 digits with a valid Luhn check digit.
    #[arg(long)]
    pub pan: Option<String>,
    /// Accept a PAN whose Luhn check digit is wrong.
    #[arg(long)]
    pub no_luhn: bool,
    /// TDES key (formats 0, 1, 3) or AES key (format 4), in hex.
    #[arg(long)]
    pub key: Option<String>,
    /// The enciphered PIN block in hex (deciphering, translating).
    #[arg(long)]
    pub block: Option<String>,
    /// Translating: the key the block is enciphered under.
    #[arg(long)]
    pub from_key: Option<String>,
    /// Translating: the key to re-encipher under.
    #[arg(long)]
    pub to_key: Option<String>,
    /// Translating: the block's format (default 0).
    #[arg(long)]
    pub from_format: Option<String>,
    /// Translating: the new block's format (default: the same as --from-format).
    #[arg(long)]
    pub to_format: Option<String>,
}

/// Runs `isoswitch pinblock`; returns the output line.
pub fn run(a: &PinblockArgs) -> Result<String, String> {
    if a.decipher {
        decipher(a)
    } else if a.translate {
        translate_block(a)
    } else {
        build(a)
    }
}

fn format_arg(opt: &str, text: &str) -> Result<PinBlockFormat, String> {
    match text {
        "0" => Ok(PinBlockFormat::Iso0),
        "1" => Ok(PinBlockFormat::Iso1),
        "3" => Ok(PinBlockFormat::Iso3),
        "4" => Ok(PinBlockFormat::Iso4),
        other => Err(format!("{opt} must be 0, 1, 3 or 4, not {other:?}")),
    }
}

fn required<'a>(v: &'a Option<String>, opt: &str, why: &str) -> Result<&'a str, String> {
    v.as_deref()
        .ok_or_else(|| format!("{opt} is required {why}"))
}

/// The PAN, when given; required when `format` binds it.
fn pan_for(a: &PinblockArgs, formats: &[PinBlockFormat]) -> Result<Option<Pan>, String> {
    let pan = a
        .pan
        .as_deref()
        .map(|p| pan_arg(p, a.no_luhn))
        .transpose()?;
    if pan.is_none() {
        if let Some(f) = formats.iter().find(|f| f.needs_pan()) {
            return Err(format!(
                "--pan is required for PIN block format {}",
                f.control()
            ));
        }
    }
    Ok(pan)
}

/// The key for a format, from option `opt`: AES for format 4, TDES otherwise.
fn format_key(opt: &str, format: PinBlockFormat, hex: &str) -> Result<Key, String> {
    match format {
        PinBlockFormat::Iso4 => key_opt(opt, "format 4 (AES)", hex, &[16, 24, 32], Key::aes),
        _ => key_opt(opt, "TDES", hex, &[16, 24], Key::tdes),
    }
}

fn block_arg(format: PinBlockFormat, hex: &str) -> Result<PinBlock, String> {
    let bytes = hex_arg("--block", hex)?;
    PinBlock::from_bytes(format, &bytes).map_err(|e| match e {
        SessionError::BadPinBlockLength {
            expected, found, ..
        } => format!(
            "--block: a format {} PIN block is {expected} bytes ({} hex digits), got {found} bytes",
            format.control(),
            expected * 2
        ),
        other => format!("--block: {other}"),
    })
}

fn decipher_error(e: SessionError) -> String {
    match e {
        SessionError::BadPinBlock { format, defect } => format!(
            "--block does not decipher to an {format} PIN block ({defect}): wrong key, PAN or format"
        ),
        other => other.to_string(),
    }
}

fn build(a: &PinblockArgs) -> Result<String, String> {
    let format = format_arg(
        "--format",
        required(&a.format, "--format", "to build a PIN block")?,
    )?;
    let pin = Pin::new(required(
        &a.pin,
        "--pin",
        "to build a PIN block (or use --decipher / --translate)",
    )?)
    .map_err(|e| match e {
        SessionError::BadPinLength { found } => {
            format!("--pin: a PIN has 4 to 12 digits, this one has {found} characters")
        }
        SessionError::PinNotNumeric => "--pin: a PIN is digits 0-9 only".to_string(),
        other => format!("--pin: {other}"),
    })?;
    let pan = pan_for(a, &[format])?;
    let block = match (format, a.key.as_deref()) {
        (PinBlockFormat::Iso4, None) => {
            return Err("format 4 needs an AES --key (16, 24 or 32 bytes)".into())
        }
        (PinBlockFormat::Iso4, Some(k)) => {
            let key = key_arg("format 4 (AES)", k, &[16, 24, 32], Key::aes)?;
            let b = PinBlock::encipher(format, &pin, pan.as_ref(), &key, Fill::Random)
                .map_err(|e| e.to_string())?;
            upper_hex(b.as_bytes())
        }
        (_, Some(k)) => {
            let key = key_arg("TDES", k, &[16, 24], Key::tdes)?;
            let b = PinBlock::encipher(format, &pin, pan.as_ref(), &key, Fill::Random)
                .map_err(|e| e.to_string())?;
            upper_hex(b.as_bytes())
        }
        (_, None) => {
            let clear = PinBlock::clear_block(format, &pin, pan.as_ref(), Fill::Random)
                .map_err(|e| e.to_string())?;
            upper_hex(&clear[..])
        }
    };
    Ok(block)
}

fn decipher(a: &PinblockArgs) -> Result<String, String> {
    let format = format_arg(
        "--format",
        required(&a.format, "--format", "to decipher a PIN block")?,
    )?;
    let key = format_key(
        "--key",
        format,
        required(&a.key, "--key", "to decipher a PIN block")?,
    )?;
    let block = block_arg(format, required(&a.block, "--block", "to decipher")?)?;
    let pan = pan_for(a, &[format])?;
    let pin = block.decipher(pan.as_ref(), &key).map_err(decipher_error)?;
    Ok(pin.expose_digits().to_string())
}

fn translate_block(a: &PinblockArgs) -> Result<String, String> {
    if a.format.is_some() {
        return Err("--translate takes --from-format and --to-format, not --format".into());
    }
    let from = format_arg("--from-format", a.from_format.as_deref().unwrap_or("0"))?;
    let to = match a.to_format.as_deref() {
        Some(t) => format_arg("--to-format", t)?,
        None => from,
    };
    let from_key = format_key(
        "--from-key",
        from,
        required(&a.from_key, "--from-key", "to translate")?,
    )?;
    let to_key = format_key(
        "--to-key",
        to,
        required(&a.to_key, "--to-key", "to translate")?,
    )?;
    let block = block_arg(from, required(&a.block, "--block", "to translate")?)?;
    required(&a.pan, "--pan", "to translate")?;
    let pan = pan_for(a, &[from, to])?;
    let out = translate(&block, pan.as_ref(), &from_key, to, &to_key).map_err(|e| match e {
        SessionError::TranslationNotAllowed { from, to } => format!(
            "translation from format {} to format {} is not allowed (format 1 has no PAN binding)",
            from.control(),
            to.control()
        ),
        other => decipher_error(other),
    })?;
    Ok(upper_hex(out.as_bytes()))
}
