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
    }
}
