//! The decoder's compact per-field table: what the hot loop needs about each field, in a
//! few bytes, precomputed from the [`FieldSpec`]s when a dialect is built.
//!
//! Charset checks are table lookups AND-ed over the content (no branch per byte); on a
//! failure the full [`FieldSpec`] check runs again to name the exact byte.

use crate::ebcdic;
use crate::spec::{ContentClass, ContentEncoding, FieldSpec, Justify, LengthEncoding, LengthUnit};

/// Character class bits.
const N: u8 = 1;
const A: u8 = 2;
const AN: u8 = 4;
const ANS: u8 = 8;
const NS: u8 = 16;
const Z: u8 = 32;
const HEX: u8 = 64;

const fn ascii_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut bits = 0u8;
        let digit = c.is_ascii_digit();
        let alpha = c.is_ascii_alphabetic();
        let printable = c >= 0x20 && c <= 0x7E;
        if digit {
            bits |= N | Z | AN | NS;
        }
        if alpha || c == b' ' {
            bits |= A;
        }
        if alpha || digit || c == b' ' {
            bits |= AN;
        }
        if printable {
            bits |= ANS;
        }
        if printable && !alpha {
            bits |= NS;
        }
        if c == b'=' || c == b'D' {
            bits |= Z;
        }
        if digit || (c >= b'A' && c <= b'F') || (c >= b'a' && c <= b'f') {
            bits |= HEX;
        }
        t[i] = bits;
        i += 1;
    }
    t
}

const fn ebcdic_classes(ascii: &[u8; 256]) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ascii[ebcdic::EBCDIC_TO_LATIN1[i] as usize];
        i += 1;
    }
    t
}

static ASCII: [u8; 256] = ascii_classes();
static EBCDIC: [u8; 256] = ebcdic_classes(&ascii_classes());

/// Per byte of packed BCD: bit 0 both nibbles 0–9; bit 1 both nibbles 0–9 or D.
static BCD: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let (h, l) = ((i >> 4) as u8, (i & 15) as u8);
        if h <= 9 && l <= 9 {
            t[i] |= 1;
        }
        if (h <= 9 || h == 0x0D) && (l <= 9 || l == 0x0D) {
            t[i] |= 2;
        }
        i += 1;
    }
    t
};

/// Whether every byte is within `lo..=hi` (`hi` < 0x80), eight bytes at a time (SWAR).
#[inline(always)]
fn in_range(bytes: &[u8], lo: u8, hi: u8) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = ONES * lo as u64;
    let above = ONES * (hi as u64 + 1);
    let chunk_ok = |x: u64| {
        // With the high bit forced on, a per-byte subtraction never borrows across bytes:
        // the high bit of ((b | 0x80) - k) is set exactly when b >= k.
        let y = x | HIGH;
        let ge_lo = y.wrapping_sub(below) & HIGH;
        let gt_hi = y.wrapping_sub(above) & HIGH;
        x & HIGH == 0 && ge_lo & !gt_hi == HIGH
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut ok = true;
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        ok &= chunk_ok(u64::from_le_bytes(a));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut a = [lo; 8];
        a[..rest.len()].copy_from_slice(rest);
        ok &= chunk_ok(u64::from_le_bytes(a));
    }
    ok
}

/// How content bytes relate to length units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Wire {
    /// One byte per unit.
    #[default]
    Same,
    /// Two units per byte (nibbles), rounded up.
    Half,
    /// Two bytes per unit (hex text counting bytes).
    Double,
}

/// The content check of a field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Check {
    /// Anything goes (binary).
    #[default]
    Any,
    /// Every byte in a class (ASCII or EBCDIC table).
    Table { bit: u8, ebcdic: bool },
    /// `C`/`D` then digits.
    Signed { ebcdic: bool },
    /// Hex digits; `even`: the number of characters must be even.
    Hex { even: bool },
    /// Packed BCD digits (`z`: also nibble D); odd digit counts have a pad nibble.
    Bcd { z: bool, left: bool, digits: bool },
}

/// What the decoder needs to know about one field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hot {
    /// Fast check: every content byte's table entry has `bit` (bit 0: no check).
    table: &'static [u8; 256],
    bit: u8,
    /// Fast check: an odd number of units is an error (hex text counting characters).
    even: bool,
    /// The check needs the slow path (BCD pad nibbles, signed amounts).
    special: bool,
    /// Classes that are one byte range (`n`: 0x30–0x39, `ans`: 0x20–0x7E): checked eight
    /// bytes at a time instead of one lookup per byte.
    range: Option<(u8, u8)>,
    pub(crate) defined: bool,
    pub(crate) fixed: bool,
    pub(crate) prefix_len: u8,
    pub(crate) prefix: LengthEncoding,
    pub(crate) max: u16,
    pub(crate) fixed_wire: u16,
    pub(crate) wire: Wire,
    pub(crate) check: Check,
}

impl Default for Hot {
    fn default() -> Self {
        Hot {
            table: &ASCII,
            bit: 0,
            even: false,
            special: false,
            range: None,
            defined: false,
            fixed: false,
            prefix_len: 0,
            prefix: LengthEncoding::Ascii,
            max: 0,
            fixed_wire: 0,
            wire: Wire::Same,
            check: Check::Any,
        }
    }
}

impl Hot {
    /// Precomputes the table entry of a spec.
    pub(crate) fn of(spec: &FieldSpec) -> Hot {
        let unit = spec.length_unit();
        let wire = match (spec.encoding, unit) {
            (ContentEncoding::Bcd, LengthUnit::Bytes) => Wire::Same,
            (ContentEncoding::Bcd, _) => Wire::Half,
            (ContentEncoding::Binary, LengthUnit::Digits) => Wire::Half,
            (ContentEncoding::Hex, LengthUnit::Bytes) => Wire::Double,
            _ => Wire::Same,
        };
        let ebcdic = spec.encoding == ContentEncoding::Ebcdic;
        let bit = match spec.class {
            ContentClass::N => N,
            ContentClass::A => A,
            ContentClass::An => AN,
            ContentClass::Ans => ANS,
            ContentClass::Ns => NS,
            ContentClass::Z => Z,
            ContentClass::B | ContentClass::XN => 0,
        };
        let check = match spec.encoding {
            ContentEncoding::Ascii | ContentEncoding::Ebcdic => match spec.class {
                ContentClass::B => Check::Any,
                ContentClass::XN => Check::Signed { ebcdic },
                _ => Check::Table { bit, ebcdic },
            },
            ContentEncoding::Hex => Check::Hex {
                even: unit != LengthUnit::Bytes,
            },
            ContentEncoding::Bcd => Check::Bcd {
                z: spec.class == ContentClass::Z,
                left: spec.justify == Justify::Left,
                digits: unit != LengthUnit::Bytes,
            },
            ContentEncoding::Binary => Check::Any,
        };
        let (table, fast_bit, even, special): (&'static [u8; 256], u8, bool, bool) = match check {
            Check::Any => (&ASCII, 0, false, false),
            Check::Table { bit, ebcdic } => {
                (if ebcdic { &EBCDIC } else { &ASCII }, bit, false, false)
            }
            Check::Hex { even } => (&ASCII, HEX, even, false),
            Check::Signed { .. } | Check::Bcd { .. } => (&ASCII, 0, false, true),
        };
        // Single-range classes are cheaper as SWAR; multi-range ones as table lookups.
        let range = match check {
            Check::Table {
                bit: N,
                ebcdic: false,
            } => Some((b'0', b'9')),
            Check::Table {
                bit: ANS,
                ebcdic: false,
            } => Some((0x20, 0x7E)),
            _ => None,
        };
        Hot {
            table,
            bit: fast_bit,
            even,
            special,
            range,
            defined: true,
            fixed: spec.is_fixed(),
            prefix_len: spec.prefix_len() as u8,
            prefix: spec.length_encoding,
            max: spec.max,
            fixed_wire: spec.wire_len(spec.max as usize) as u16,
            wire,
            check,
        }
    }

    /// Content bytes for `units`.
    #[inline(always)]
    pub(crate) fn wire_len(&self, units: usize) -> usize {
        match self.wire {
            Wire::Same => units,
            Wire::Half => units.div_ceil(2),
            Wire::Double => units * 2,
        }
    }

    /// The prefix value, or `None` if the prefix is not well formed or over the maximum
    /// (the caller then asks the full spec for the precise error).
    #[inline(always)]
    pub(crate) fn prefix(&self, p: &[u8]) -> Option<usize> {
        let v = match self.prefix {
            LengthEncoding::Ascii => {
                let mut v = 0usize;
                let mut ok = true;
                for &c in p {
                    let d = c.wrapping_sub(b'0');
                    ok &= d <= 9;
                    v = v * 10 + d as usize;
                }
                if !ok {
                    return None;
                }
                v
            }
            LengthEncoding::Bcd => {
                let mut v = 0usize;
                for &c in p {
                    if BCD[c as usize] & 1 == 0 {
                        return None;
                    }
                    v = v * 100 + ((c >> 4) * 10 + (c & 15)) as usize;
                }
                v
            }
            LengthEncoding::Binary => p.iter().fold(0usize, |v, &c| (v << 8) | c as usize),
            LengthEncoding::Ebcdic => {
                let mut v = 0usize;
                for &c in p {
                    let d = c.wrapping_sub(0xF0);
                    if d > 9 {
                        return None;
                    }
                    v = v * 10 + d as usize;
                }
                v
            }
        };
        (v <= self.max as usize).then_some(v)
    }

    /// The length prefix for `units` (nothing for fixed fields): bytes and count.
    #[inline(always)]
    pub(crate) fn prefix_bytes(&self, units: usize) -> ([u8; 4], usize) {
        let mut b = [0u8; 4];
        let n = self.prefix_len as usize;
        if self.fixed || n == 0 {
            return (b, 0);
        }
        match self.prefix {
            LengthEncoding::Ascii | LengthEncoding::Ebcdic => {
                let base = if self.prefix == LengthEncoding::Ascii {
                    b'0'
                } else {
                    0xF0
                };
                let mut v = units;
                for i in (0..n).rev() {
                    b[i] = base + (v % 10) as u8;
                    v /= 10;
                }
            }
            LengthEncoding::Bcd => {
                let mut v = units;
                for i in (0..n).rev() {
                    let lo = (v % 10) as u8;
                    v /= 10;
                    let hi = (v % 10) as u8;
                    v /= 10;
                    b[i] = (hi << 4) | lo;
                }
            }
            LengthEncoding::Binary => {
                if n == 1 {
                    b[0] = units as u8;
                } else {
                    b[..2].copy_from_slice(&(units as u16).to_be_bytes());
                }
            }
        }
        (b, n)
    }

    /// Whether the content passes the field's check (fast path; no error detail).
    #[inline(always)]
    pub(crate) fn content_ok(&self, content: &[u8], units: usize) -> bool {
        if self.special {
            return self.special_ok(content, units);
        }
        if let Some((lo, hi)) = self.range {
            return in_range(content, lo, hi);
        }
        // One uniform, branch-free loop for the other text, hex and binary fields.
        let n = if self.bit == 0 { 0 } else { content.len() };
        let mut acc = 0xFFu8;
        for &c in &content[..n] {
            acc &= self.table[c as usize];
        }
        acc & self.bit == self.bit && !(self.even && units % 2 == 1)
    }

    #[inline(never)]
    fn special_ok(&self, content: &[u8], units: usize) -> bool {
        match self.check {
            Check::Any | Check::Table { .. } | Check::Hex { .. } => true,
            Check::Signed { ebcdic } => {
                let table = if ebcdic { &EBCDIC } else { &ASCII };
                let Some((&first, rest)) = content.split_first() else {
                    return true;
                };
                let first = if ebcdic {
                    ebcdic::to_ascii(first)
                } else {
                    first
                };
                let mut acc = 0xFFu8;
                for &c in rest {
                    acc &= table[c as usize];
                }
                (first == b'C' || first == b'D') && (acc & N != 0 || rest.is_empty())
            }
            Check::Bcd { z, left, digits } => {
                let bit = if z { 2 } else { 1 };
                let odd = digits && units % 2 == 1;
                let (body, pad_byte) = match (odd, left) {
                    (false, _) => (content, None),
                    (true, true) => match content.split_last() {
                        Some((&last, body)) => (body, Some((last >> 4, last & 15))),
                        None => return false,
                    },
                    (true, false) => match content.split_first() {
                        Some((&first, body)) => (body, Some((first & 15, first >> 4))),
                        None => return false,
                    },
                };
                let mut acc = 0xFFu8;
                for &c in body {
                    acc &= BCD[c as usize];
                }
                let body_ok = acc & bit != 0 || body.is_empty();
                let pad_ok = match pad_byte {
                    None => true,
                    Some((digit, pad)) => {
                        (digit <= 9 || (z && digit == 0x0D)) && (pad == 0 || pad == 0x0F)
                    }
                };
                body_ok && pad_ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swar_range_matches_the_tables() {
        let mut x = 0x1234_5678_9ABC_DEF1u64;
        for (bit, lo, hi) in [(N, b'0', b'9'), (ANS, 0x20u8, 0x7Eu8)] {
            for b in 0..=255u8 {
                assert_eq!(in_range(&[b], lo, hi), ASCII[b as usize] & bit != 0);
            }
            for len in 0..40usize {
                for _ in 0..1000 {
                    let bytes: Vec<u8> = (0..len)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            match x % 8 {
                                0 => (x >> 8) as u8,
                                1 => [0x1F, 0x2F, 0x3A, 0x7F, 0x80, 0xFF, 0x00]
                                    [(x >> 8) as usize % 7],
                                _ => 0x30 + (x >> 8) as u8 % 10,
                            }
                        })
                        .collect();
                    let plain = bytes.iter().all(|&b| ASCII[b as usize] & bit != 0);
                    assert_eq!(in_range(&bytes, lo, hi), plain, "{bytes:02X?}");
                }
            }
        }
    }

    #[test]
    fn tables() {
        assert_eq!(ASCII[b'5' as usize] & N, N);
        assert_eq!(ASCII[b'A' as usize] & N, 0);
        assert_eq!(ASCII[b'D' as usize] & Z, Z);
        assert_eq!(ASCII[b'f' as usize] & HEX, HEX);
        assert_eq!(EBCDIC[0xF5] & N, N);
        assert_eq!(EBCDIC[0x40] & ANS, ANS);
        assert_eq!(BCD[0x9D] & 1, 0);
        assert_eq!(BCD[0x9D] & 2, 2);
    }
}
