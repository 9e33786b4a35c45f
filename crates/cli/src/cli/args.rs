//! Parsing of hex, keys and PANs from command-line options, with errors that name the
//! option.

use isoswitch::session::crypto::{Key, Pan};
use isoswitch::session::SessionError;

/// Hex text to bytes (whitespace ignored).
pub fn parse_hex(text: &[u8]) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if digits.len() % 2 == 1 {
        return Err("hex input has an odd number of digits".into());
    }
    digits
        .chunks(2)
        .enumerate()
        .map(|(i, p)| {
            let s = std::str::from_utf8(p).map_err(|_| format!("bad hex at digit {}", i * 2))?;
            u8::from_str_radix(s, 16).map_err(|_| format!("bad hex at digit {}", i * 2))
        })
        .collect()
}

/// Upper-case hex.
pub fn upper_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Hex from a command-line option, named in errors.
pub fn hex_arg(what: &str, text: &str) -> Result<Vec<u8>, String> {
    parse_hex(text.as_bytes()).map_err(|e| format!("{what}: {e}"))
}

/// A key of one of `lens` bytes from option `opt`, built by `make`; `alg` names what
/// it is for in the error.
pub fn key_opt(
    opt: &str,
    alg: &str,
    hex: &str,
    lens: &[usize],
    make: impl Fn(&[u8]) -> Result<Key, SessionError>,
) -> Result<Key, String> {
    let bytes = zeroize::Zeroizing::new(hex_arg(opt, hex)?);
    if !lens.contains(&bytes.len()) {
        let want: Vec<String> = lens.iter().map(|n| n.to_string()).collect();
        return Err(format!(
            "{opt}: {alg} needs a key of {} bytes ({} hex digits), got {} bytes",
            want.join(" or "),
            lens.iter()
                .map(|n| (n * 2).to_string())
                .collect::<Vec<_>>()
                .join(" or "),
            bytes.len()
        ));
    }
    make(&bytes).map_err(|e| format!("{opt}: {e}"))
}

/// [`key_opt`] for the `--key` option.
pub fn key_arg(
    alg: &str,
    hex: &str,
    lens: &[usize],
    make: impl Fn(&[u8]) -> Result<Key, SessionError>,
) -> Result<Key, String> {
    key_opt("--key", alg, hex, lens, make)
}

/// A PAN from `--pan`, Luhn-checked unless `no_luhn`.
pub fn pan_arg(pan: &str, no_luhn: bool) -> Result<Pan, String> {
    let p = if no_luhn {
        Pan::new(pan)
    } else {
        Pan::new_checked(pan)
    };
    p.map_err(|e| match e {
        SessionError::BadPan {
            defect: isoswitch::session::error::PanDefect::CheckDigit,
        } => "--pan: bad PAN: the Luhn check digit is wrong (--no-luhn accepts it)".to_string(),
        other => format!("--pan: {other}"),
    })
}
