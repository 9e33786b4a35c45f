//! [`OriginalDataElements`]: ISO 8583:1987 DE 90 as a value type.
//!
//! A reversal, a void or an advice names the transaction it refers to by DE 90 (n42):
//! the original's MTI (n4), STAN (n6), transmission date and time DE 7 (n10, `MMDDhhmmss`),
//! acquiring institution ID (n11, DE 32) and forwarding institution ID (n11, DE 33), the IDs
//! right-aligned and zero-filled. The switch writes it, the host reads it, and the
//! reversal profiles build it, all through this one type.

use isoswitch_codec::{Message, Mti};

use crate::error::{Result, ReversalError};

/// The original data elements (DE 90); see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginalDataElements {
    /// The original's MTI.
    pub mti: Mti,
    /// The original's STAN (DE 11), 0–999,999.
    pub stan: u32,
    /// The original's DE 7, ten digits `MMDDhhmmss` (zeros when it had none).
    pub transmission: [u8; 10],
    /// Acquiring institution ID (DE 32), up to 11 digits.
    pub acquirer: String,
    /// Forwarding institution ID (DE 33), up to 11 digits.
    pub forwarding: String,
}

const BAD: ReversalError = ReversalError::BadField {
    field: 90,
    what: "original data elements (n42)",
};

fn digits_only(s: &str, max: usize) -> bool {
    s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
}

impl OriginalDataElements {
    /// From the original message itself: its MTI, DE 11, DE 7 and DE 32/33, with
    /// `acquirer` / `forwarding` for an original without DE 32 / DE 33.
    ///
    /// # Errors
    /// [`ReversalError::MissingField`] without DE 11; [`ReversalError::BadField`] for a
    /// STAN, DE 7 or ID that is not digits of the right length.
    pub fn of(original: &Message, acquirer: &str, forwarding: &str) -> Result<Self> {
        let stan = original.get(11).ok_or(ReversalError::MissingField {
            field: 11,
            what: "STAN",
        })?;
        let stan = parse_stan(&stan).ok_or(ReversalError::BadField {
            field: 11,
            what: "STAN (n6)",
        })?;
        let mut transmission = [b'0'; 10];
        if let Some(de7) = original.get(7) {
            if de7.len() != 10 || !de7.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReversalError::BadField {
                    field: 7,
                    what: "transmission date and time (n10)",
                });
            }
            transmission.copy_from_slice(de7.as_bytes());
        }
        let acquirer = original.get(32).unwrap_or_else(|| acquirer.to_string());
        let forwarding = original.get(33).unwrap_or_else(|| forwarding.to_string());
        if !digits_only(&acquirer, 11) || !digits_only(&forwarding, 11) {
            return Err(ReversalError::BadField {
                field: 32,
                what: "institution ID (n..11)",
            });
        }
        Ok(OriginalDataElements {
            mti: original.mti(),
            stan,
            transmission,
            acquirer,
            forwarding,
        })
    }

    /// Parses the 42 digits of DE 90.
    ///
    /// # Errors
    /// [`ReversalError::BadField`] for anything but 42 digits with a valid MTI.
    pub fn parse(text: &str) -> Result<Self> {
        let b = text.as_bytes();
        if b.len() != 42 || !b.iter().all(u8::is_ascii_digit) {
            return Err(BAD);
        }
        let mti: Mti = text[0..4].parse().map_err(|_| BAD)?;
        let stan = parse_stan(&text[4..10]).ok_or(BAD)?;
        let mut transmission = [0u8; 10];
        transmission.copy_from_slice(&b[10..20]);
        let trim = |s: &str| {
            let t = s.trim_start_matches('0');
            if t.is_empty() {
                "0".to_string()
            } else {
                t.to_string()
            }
        };
        Ok(OriginalDataElements {
            mti,
            stan,
            transmission,
            acquirer: trim(&text[20..31]),
            forwarding: trim(&text[31..42]),
        })
    }

    /// The 42 digits of DE 90.
    pub fn to_field(&self) -> String {
        format!(
            "{}{:06}{}{:0>11}{:0>11}",
            self.mti.as_str(),
            self.stan,
            String::from_utf8_lossy(&self.transmission),
            self.acquirer,
            self.forwarding
        )
    }

    /// DE 90 of `msg`, if it has one.
    ///
    /// # Errors
    /// As [`OriginalDataElements::parse`].
    pub fn read(msg: &Message) -> Result<Option<Self>> {
        msg.get(90).map(|v| Self::parse(&v)).transpose()
    }

    /// Sets DE 90 of `msg`.
    ///
    /// # Errors
    /// Codec errors (the dialect has no DE 90 of that form).
    pub fn write(&self, msg: &mut Message) -> Result<()> {
        msg.set(90, self.to_field())?;
        Ok(())
    }

    /// The original's DE 7 as text.
    pub fn transmission_text(&self) -> &str {
        std::str::from_utf8(&self.transmission).unwrap_or("0000000000")
    }
}

fn parse_stan(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use isoswitch_codec::Dialect;

    fn original() -> Message {
        let d = Dialect::builtin("iso87-binary").unwrap();
        let mut m = Message::new(&d, "0200".parse().unwrap());
        m.set(7, "1201213005")
            .unwrap()
            .set(11, "000042")
            .unwrap()
            .set(32, "12345678")
            .unwrap();
        m
    }

    #[test]
    fn built_from_an_original_and_round_trips_through_a_message() {
        let o = OriginalDataElements::of(&original(), "0", "99").unwrap();
        assert_eq!(o.to_field(), "020000004212012130050001234567800000000099");
        let mut rev = Message::new(original().dialect(), "0400".parse().unwrap());
        o.write(&mut rev).unwrap();
        assert_eq!(OriginalDataElements::read(&rev).unwrap(), Some(o.clone()));
        assert_eq!(o.transmission_text(), "1201213005");
        assert_eq!(o.stan, 42);
    }

    #[test]
    fn bad_values_are_typed_errors() {
        for bad in [
            "",
            "0200",
            "02000000421201213005000123456780000000009", // 41 digits
            "0200000042120121300500012345678000000000999", // 43 digits
            "02000000421201213005000123456780000000009X",
        ] {
            assert!(
                matches!(
                    OriginalDataElements::parse(bad),
                    Err(ReversalError::BadField { field: 90, .. })
                ),
                "{bad:?}"
            );
        }
        let mut m = original();
        m.remove(11);
        assert!(matches!(
            OriginalDataElements::of(&m, "1", "1"),
            Err(ReversalError::MissingField { field: 11, .. })
        ));
    }
}
