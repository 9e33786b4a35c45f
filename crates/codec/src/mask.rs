//! Masking of sensitive fields in `Debug`, `Display`, logs and JSON.
//!
//! PAN: first 6 and last 4 digits kept. Track data: the PAN before the separator masked the
//! same way, everything after it `*`. Secrets (PIN blocks, EMV data, keys): all `*`.

use crate::field::FieldRef;
use crate::mti::Mti;
use crate::spec::Sensitivity;
use std::borrow::Cow;
use std::fmt;

/// Masks `text` per `sensitivity`; returns it unchanged for non-sensitive fields.
pub fn mask(sensitivity: Sensitivity, text: Cow<'_, str>) -> Cow<'_, str> {
    match sensitivity {
        Sensitivity::None => text,
        Sensitivity::Pan => Cow::Owned(mask_pan(&text)),
        Sensitivity::Track => {
            let sep = text.find(['=', 'D', '^']);
            let (pan, rest) = match sep {
                Some(i) => text.split_at(i),
                None => (text.as_ref(), ""),
            };
            let pan = pan.trim_start_matches(['%', ';', 'B']);
            let lead = text.len() - rest.len() - pan.len();
            let mut s = "*".repeat(lead);
            s.push_str(&mask_pan(pan));
            s.extend(std::iter::repeat_n('*', rest.chars().count()));
            Cow::Owned(s)
        }
        Sensitivity::Secret => Cow::Owned("*".repeat(text.chars().count())),
        Sensitivity::Pan8 => Cow::Owned(mask_pan_bin(&text, 8)),
        Sensitivity::Emv => Cow::Owned(mask_emv(&text)),
    }
}

/// The error for a value that did not encode: [`ErrorKind::Masked`] when the field is
/// sensitive and the value holds a `*` that its class refuses (the masked form printed by
/// a decode without `reveal`), the error itself otherwise.
pub(crate) fn masked_error(
    sensitivity: Sensitivity,
    value: &str,
    e: crate::error::CodecError,
) -> crate::error::CodecError {
    use crate::error::ErrorKind;
    let star = matches!(
        e.kind,
        ErrorKind::Charset { byte: b'*', .. } | ErrorKind::BadHex
    );
    if sensitivity != Sensitivity::None && star && value.contains('*') {
        crate::error::CodecError {
            kind: ErrorKind::Masked,
            ..e
        }
    } else {
        e
    }
}

/// Masks a PAN keeping the first `bin` digits (6 or 8) and the last 4 when it is long
/// enough (`bin` + 7 digits or more; otherwise as [`mask_pan`]).
pub fn mask_pan_bin(pan: &str, bin: usize) -> String {
    let n = pan.chars().count();
    if n < bin + 7 {
        return mask_pan(pan);
    }
    pan.chars()
        .enumerate()
        .map(|(i, c)| if i < bin || i >= n - 4 { c } else { '*' })
        .collect()
}

/// How an EMV tag's value is masked inside DE 55 ([`Sensitivity::Emv`]).
pub fn emv_tag_sensitivity(tag: u32) -> Sensitivity {
    match tag {
        0x5A => Sensitivity::Pan,
        0x57 | 0x9F6B => Sensitivity::Track,
        0x56 | 0x5F20 | 0x9F1F | 0x9F20 | 0x99 => Sensitivity::Secret,
        _ => Sensitivity::None,
    }
}

/// Hex text of BER-TLV data with the values of sensitive tags masked (see
/// [`Sensitivity::Emv`]); anything that is not hex BER-TLV is wiped.
fn mask_emv(hex: &str) -> String {
    let wipe = || "*".repeat(hex.chars().count());
    let h = hex.as_bytes();
    if h.len() % 2 == 1 {
        return wipe();
    }
    let mut bytes = Vec::with_capacity(h.len() / 2);
    for p in h.chunks(2) {
        let (Some(a), Some(b)) = ((p[0] as char).to_digit(16), (p[1] as char).to_digit(16)) else {
            return wipe();
        };
        bytes.push((a * 16 + b) as u8);
    }
    let mut out: Vec<u8> = h.to_vec();
    fn walk(it: crate::tlv::TlvIter<'_>, base: usize, out: &mut [u8], depth: u8) -> Option<()> {
        for t in it {
            let t = t.ok()?;
            let at = (t.value.as_ptr() as usize).checked_sub(base)? * 2;
            let range = at..at + t.value.len() * 2;
            match emv_tag_sensitivity(t.tag.0) {
                Sensitivity::None => {
                    if t.tag.is_constructed() && depth < 8 {
                        walk(t.children(), base, out, depth + 1)?;
                    }
                }
                s => {
                    let text = std::str::from_utf8(out.get(range.clone())?)
                        .ok()?
                        .to_string();
                    let masked = mask(s, Cow::Owned(text));
                    out.get_mut(range)?.copy_from_slice(masked.as_bytes());
                }
            }
        }
        Some(())
    }
    match walk(
        crate::tlv::parse(&bytes),
        bytes.as_ptr() as usize,
        &mut out,
        0,
    ) {
        Some(()) => String::from_utf8(out).unwrap_or_else(|_| wipe()),
        None => wipe(),
    }
}

/// Masks a PAN: first 6 and last 4 kept when it is long enough (13+), otherwise only
/// the last 4 (or nothing, for 4 or fewer characters).
pub fn mask_pan(pan: &str) -> String {
    let n = pan.chars().count();
    let (head, tail) = if n >= 13 {
        (6, 4)
    } else if n > 4 {
        (0, 4)
    } else {
        (0, 0)
    };
    pan.chars()
        .enumerate()
        .map(|(i, c)| if i < head || i >= n - tail { c } else { '*' })
        .collect()
}

pub(crate) fn debug_fields<'a>(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    mti: Mti,
    fields: impl Iterator<Item = FieldRef<'a>>,
) -> fmt::Result {
    let mut m = f.debug_map();
    m.entry(&"mti", &mti.as_str());
    for fr in fields {
        m.entry(&fr.number(), &fr.masked());
    }
    let _ = what;
    m.finish()
}

pub(crate) fn display_fields<'a>(
    f: &mut fmt::Formatter<'_>,
    mti: Mti,
    fields: impl Iterator<Item = FieldRef<'a>>,
) -> fmt::Result {
    writeln!(f, "MTI  {mti}")?;
    for fr in fields {
        writeln!(
            f,
            "{:>4} {:<45} {}",
            fr.number(),
            fr.spec().name,
            fr.masked()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_pan("4761739001010119"), "476173******0119");
        assert_eq!(mask_pan("12345"), "*2345");
        assert_eq!(
            mask(
                Sensitivity::Track,
                Cow::Borrowed("4761739001010119D2812201")
            ),
            "476173******0119********"
        );
        assert_eq!(
            mask(Sensitivity::Track, Cow::Borrowed("4761739001010119=2812")),
            "476173******0119*****"
        );
        assert_eq!(
            mask(Sensitivity::Secret, Cow::Borrowed("0123ABCD")),
            "********"
        );
        assert_eq!(mask(Sensitivity::None, Cow::Borrowed("00")), "00");
        assert_eq!(mask_pan_bin("4761739001010119", 8), "47617390****0119");
        // 5A (PAN) and 57 (track 2) masked inside the TLV, 9F26 shown.
        assert_eq!(
            mask(
                Sensitivity::Emv,
                Cow::Borrowed("9F2602AABB5A0847617390010101195703476173")
            ),
            "9F2602AABB5A08476173******01195703**6173"
        );
        assert_eq!(mask(Sensitivity::Emv, Cow::Borrowed("9F26")), "****");
    }
}
