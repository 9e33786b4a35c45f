//! The message type indicator: four digits for version, class, function and origin.

use crate::error::{CodecError, ErrorKind, Location, Result};
use std::fmt;

/// How the MTI is written on the wire.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MtiEncoding {
    /// Four ASCII digits.
    #[default]
    Ascii,
    /// Two bytes of packed BCD.
    Bcd,
    /// Four EBCDIC digits.
    Ebcdic,
}

impl MtiEncoding {
    /// Bytes the MTI takes on the wire.
    pub fn len(self) -> usize {
        match self {
            MtiEncoding::Bcd => 2,
            _ => 4,
        }
    }

    /// Always false: an MTI is never empty (for clippy's `len_without_is_empty`).
    pub fn is_empty(self) -> bool {
        false
    }
}

/// Message class (second MTI digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageClass {
    /// 1: authorization.
    Authorization,
    /// 2: financial.
    Financial,
    /// 3: file actions.
    FileAction,
    /// 4: reversal and chargeback.
    Reversal,
    /// 5: reconciliation.
    Reconciliation,
    /// 6: administrative.
    Administrative,
    /// 7: fee collection.
    FeeCollection,
    /// 8: network management.
    NetworkManagement,
    /// 0 or 9: reserved by ISO.
    Reserved(u8),
}

/// Message function (third MTI digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageFunction {
    /// 0: request.
    Request,
    /// 1: request response.
    RequestResponse,
    /// 2: advice.
    Advice,
    /// 3: advice response.
    AdviceResponse,
    /// 4: notification.
    Notification,
    /// 5: notification acknowledgement.
    NotificationAck,
    /// 6: instruction (1993+).
    Instruction,
    /// 7: instruction acknowledgement.
    InstructionAck,
    /// 8 and 9: reserved.
    Reserved(u8),
}

/// A message type indicator such as `0200`: four decimal digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mti([u8; 4]);

impl Mti {
    /// `0000`, a placeholder.
    pub const ZERO: Mti = Mti(*b"0000");

    /// Builds an MTI from four ASCII digits.
    pub fn new(digits: [u8; 4]) -> Result<Self> {
        if digits.iter().all(u8::is_ascii_digit) {
            Ok(Mti(digits))
        } else {
            Err(CodecError::new(Location::Mti, 0, ErrorKind::BadMti))
        }
    }

    /// Builds an MTI from a number, e.g. `Mti::from_u16(200)` is `0200`.
    pub fn from_u16(n: u16) -> Result<Self> {
        if n > 9999 {
            return Err(CodecError::new(Location::Mti, 0, ErrorKind::BadMti));
        }
        Ok(Mti([
            b'0' + (n / 1000) as u8,
            b'0' + (n / 100 % 10) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ]))
    }

    /// The MTI as a number (`0200` → 200).
    pub fn as_u16(self) -> u16 {
        self.0.iter().fold(0u16, |v, &d| v * 10 + (d - b'0') as u16)
    }

    /// The four ASCII digits.
    pub fn digits(&self) -> &[u8; 4] {
        &self.0
    }

    /// The MTI as text, e.g. `"0200"`.
    pub fn as_str(&self) -> &str {
        // Invariant: four ASCII digits.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    /// Version digit (0 = 1987, 1 = 1993, 2 = 2003, 8 = national, 9 = private).
    pub fn version(self) -> u8 {
        self.0[0] - b'0'
    }

    /// Class digit as a number (2 for financial).
    pub fn class_digit(self) -> u8 {
        self.0[1] - b'0'
    }

    /// Message class.
    pub fn class(self) -> MessageClass {
        match self.class_digit() {
            1 => MessageClass::Authorization,
            2 => MessageClass::Financial,
            3 => MessageClass::FileAction,
            4 => MessageClass::Reversal,
            5 => MessageClass::Reconciliation,
            6 => MessageClass::Administrative,
            7 => MessageClass::FeeCollection,
            8 => MessageClass::NetworkManagement,
            d => MessageClass::Reserved(d),
        }
    }

    /// Function digit as a number.
    pub fn function_digit(self) -> u8 {
        self.0[2] - b'0'
    }

    /// Message function.
    pub fn function(self) -> MessageFunction {
        match self.function_digit() {
            0 => MessageFunction::Request,
            1 => MessageFunction::RequestResponse,
            2 => MessageFunction::Advice,
            3 => MessageFunction::AdviceResponse,
            4 => MessageFunction::Notification,
            5 => MessageFunction::NotificationAck,
            6 => MessageFunction::Instruction,
            7 => MessageFunction::InstructionAck,
            d => MessageFunction::Reserved(d),
        }
    }

    /// Origin digit (0 acquirer, 1 acquirer repeat, 2 issuer, 3 issuer repeat, 4 other,
    /// 5 other repeat).
    pub fn origin(self) -> u8 {
        self.0[3] - b'0'
    }

    /// Whether this is a repeat (odd origin digit below 6: `0201`, `0401`, `0421`).
    pub fn is_repeat(self) -> bool {
        let o = self.origin();
        o < 6 && o % 2 == 1
    }

    /// Whether the message answers another (function digit odd: 1, 3, 5, 7).
    pub fn is_response(self) -> bool {
        self.function_digit() % 2 == 1 && self.function_digit() < 8
    }

    /// The MTI of the response: `0200` → `0210`, `0401` → `0410`, `0420` → `0430`.
    /// `None` for messages that are themselves responses or have no response.
    pub fn response_mti(self) -> Option<Mti> {
        let f = self.function_digit();
        if f % 2 == 1 || f >= 8 {
            return None;
        }
        let mut d = self.0;
        d[2] += 1;
        if self.is_repeat() {
            d[3] -= 1;
        }
        Some(Mti(d))
    }

    /// The repeat of this request: `0400` → `0401`, `0420` → `0421`.
    pub fn repeat_mti(self) -> Mti {
        let mut d = self.0;
        let o = self.origin();
        if o < 6 && o % 2 == 0 {
            d[3] += 1;
        }
        Mti(d)
    }

    /// Decodes an MTI from the start of `buf`.
    #[inline]
    pub fn decode(enc: MtiEncoding, buf: &[u8]) -> Result<Mti> {
        // Four ASCII digits: checked at once (SWAR); anything else takes the general path.
        if enc == MtiEncoding::Ascii {
            if let Some(b) = buf.first_chunk::<4>() {
                const HIGH: u32 = 0x8080_8080;
                let x = u32::from_le_bytes(*b);
                let y = x | HIGH;
                let bad = (x | !y.wrapping_sub(0x3030_3030) | y.wrapping_sub(0x3A3A_3A3A)) & HIGH;
                if bad == 0 {
                    return Ok(Mti(*b));
                }
            }
        }
        Self::decode_general(enc, buf)
    }

    #[inline(never)]
    fn decode_general(enc: MtiEncoding, buf: &[u8]) -> Result<Mti> {
        let need = enc.len();
        let Some(b) = buf.get(..need) else {
            return Err(CodecError::new(
                Location::Mti,
                0,
                ErrorKind::Truncated {
                    needed: need - buf.len(),
                },
            ));
        };
        let digits = match enc {
            MtiEncoding::Ascii => [b[0], b[1], b[2], b[3]],
            MtiEncoding::Ebcdic => {
                let mut d = [0u8; 4];
                for (o, &c) in d.iter_mut().zip(b) {
                    *o = c.wrapping_sub(0xF0).wrapping_add(b'0');
                    if !(0xF0..=0xF9).contains(&c) {
                        *o = b'x';
                    }
                }
                d
            }
            MtiEncoding::Bcd => [
                b'0'.wrapping_add(b[0] >> 4),
                b'0'.wrapping_add(b[0] & 0x0F),
                b'0'.wrapping_add(b[1] >> 4),
                b'0'.wrapping_add(b[1] & 0x0F),
            ],
        };
        Mti::new(digits)
    }

    /// The MTI in wire form: bytes and count.
    #[inline]
    pub fn to_wire(self, enc: MtiEncoding) -> ([u8; 4], usize) {
        let d = self.0;
        match enc {
            MtiEncoding::Ascii => (d, 4),
            MtiEncoding::Ebcdic => (d.map(|c| c - b'0' + 0xF0), 4),
            MtiEncoding::Bcd => (
                [
                    ((d[0] - b'0') << 4) | (d[1] - b'0'),
                    ((d[2] - b'0') << 4) | (d[3] - b'0'),
                    0,
                    0,
                ],
                2,
            ),
        }
    }

    /// Appends the MTI in the given encoding.
    pub fn encode(self, enc: MtiEncoding, out: &mut impl Extend<u8>) {
        let (b, n) = self.to_wire(enc);
        out.extend(b[..n].iter().copied());
    }
}

impl std::str::FromStr for Mti {
    type Err = CodecError;
    fn from_str(s: &str) -> Result<Mti> {
        let b = s.as_bytes();
        if b.len() != 4 {
            return Err(CodecError::new(Location::Mti, 0, ErrorKind::BadMti));
        }
        Mti::new([b[0], b[1], b[2], b[3]])
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mti({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Mti {
        s.parse().unwrap()
    }

    #[test]
    fn accessors() {
        let x = m("0200");
        assert_eq!(x.version(), 0);
        assert_eq!(x.class(), MessageClass::Financial);
        assert_eq!(x.function(), MessageFunction::Request);
        assert_eq!(x.origin(), 0);
        assert!(!x.is_response());
        assert_eq!(m("1420").class(), MessageClass::Reversal);
        assert_eq!(m("0810").function(), MessageFunction::RequestResponse);
    }

    #[test]
    fn responses_and_repeats() {
        assert_eq!(m("0200").response_mti(), Some(m("0210")));
        assert_eq!(m("0401").response_mti(), Some(m("0410")));
        assert_eq!(m("0420").response_mti(), Some(m("0430")));
        assert_eq!(m("0421").response_mti(), Some(m("0430")));
        assert_eq!(m("0800").response_mti(), Some(m("0810")));
        assert_eq!(m("0210").response_mti(), None);
        assert_eq!(m("0400").repeat_mti(), m("0401"));
        assert_eq!(m("0401").repeat_mti(), m("0401"));
        assert!(m("0401").is_repeat());
    }

    #[test]
    fn wire_forms() {
        for enc in [MtiEncoding::Ascii, MtiEncoding::Bcd, MtiEncoding::Ebcdic] {
            let mut v = Vec::new();
            m("0810").encode(enc, &mut v);
            assert_eq!(v.len(), enc.len());
            assert_eq!(Mti::decode(enc, &v).unwrap(), m("0810"));
        }
        let mut v = Vec::new();
        m("0200").encode(MtiEncoding::Bcd, &mut v);
        assert_eq!(v, [0x02, 0x00]);
        assert!(Mti::decode(MtiEncoding::Bcd, &[0x0A, 0x00]).is_err());
        assert!(Mti::decode(MtiEncoding::Ascii, b"02x0").is_err());
        assert!(Mti::decode(MtiEncoding::Ebcdic, &[0xF0, 0xF2, 0xC1, 0xF0]).is_err());
        assert!(matches!(
            Mti::decode(MtiEncoding::Ascii, b"02").unwrap_err().kind,
            ErrorKind::Truncated { needed: 2 }
        ));
    }
}
