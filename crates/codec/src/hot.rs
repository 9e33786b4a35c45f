//! The decoder's compact per-field table: what the hot loop needs about each field, in a
//! few bytes, precomputed from the [`FieldSpec`]s when a dialect is built.
//!
//! Digits, `ans`, hex text and packed BCD are checked eight bytes at a time (SWAR on `u64`
//! loads; a fixed field of up to 16 bytes in one or two loads, see [`Op`]); other classes
//! by table lookups AND-ed over the content. On a failure the full [`FieldSpec`] check runs
//! again to name the exact byte.

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

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// One 8-byte chunk, little-endian (the first byte in the low lane).
#[inline(always)]
pub(crate) fn le(c: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(c);
    u64::from_le_bytes(a)
}

/// SWAR: the high bit of each lane of `x` whose byte is outside `lo..=hi` (`hi` < 0x80).
#[inline(always)]
fn range_bad(x: u64, lo: u8, hi: u8) -> u64 {
    // With the high bit forced on, a per-byte subtraction never borrows across bytes:
    // the high bit of ((b | 0x80) - k) is set exactly when (b & 0x7F) >= k.
    let y = x | HIGH;
    let ge_lo = y.wrapping_sub(ONES * lo as u64);
    let gt_hi = y.wrapping_sub(ONES * (hi as u64 + 1));
    (x | !ge_lo | gt_hi) & HIGH
}

/// SWAR: the high bit of each lane that is not an ASCII hex digit (`0-9`, `A-F`, `a-f`).
#[inline(always)]
fn hex_bad(x: u64) -> u64 {
    let y = x | HIGH;
    let digit = y.wrapping_sub(ONES * 0x30) & !y.wrapping_sub(ONES * 0x3A);
    // `| 0x20` folds `A-F` onto `a-f` and maps nothing else into `a-f`.
    let l = y | (ONES * 0x20);
    let letter = l.wrapping_sub(ONES * 0x61) & !l.wrapping_sub(ONES * 0x67);
    (x | !(digit | letter)) & HIGH
}

/// SWAR: a nonzero bit in each lane holding a nibble over 9 (packed BCD digits).
#[inline(always)]
fn bcd_bad(x: u64) -> u64 {
    const LOW: u64 = ONES * 0x0F;
    let lo = x & LOW;
    let hi = (x >> 4) & LOW;
    (lo.wrapping_add(ONES * 6) | hi.wrapping_add(ONES * 6)) & (ONES * 0x10)
}

/// Whether `bad` finds nothing in `buf[start..end]`, eight bytes at a time. `bad` maps a
/// chunk to per-lane flags (nonzero lanes are bad). The last 1–8 bytes are always read as
/// the eight bytes ending at `end` (bytes before them are shifted out), so a short field
/// is one load and no partial copy is needed unless the whole buffer is under eight bytes.
#[inline(always)]
fn scan(buf: &[u8], start: usize, end: usize, bad: impl Fn(u64) -> u64) -> bool {
    let Some(content) = buf.get(start..end) else {
        return false;
    };
    let len = content.len();
    if len == 0 {
        return true;
    }
    // 1..=8 bytes for the last chunk; whole chunks before it.
    let last = (len - 1) % 8 + 1;
    let mut acc = 0u64;
    for c in content[..len - last].chunks_exact(8) {
        acc |= bad(le(c));
    }
    let x = match end.checked_sub(8).and_then(|s| buf.get(s..end)) {
        Some(w) => le(w),
        None => tail(&content[len - last..]),
    };
    acc |= bad(x) >> ((8 - last) * 8);
    acc == 0
}

/// The last 1..=8 bytes placed in the top lanes of a chunk (cold: only for buffers under
/// eight bytes).
#[cold]
#[inline(never)]
fn tail(rem: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a[8 - rem.len()..].copy_from_slice(rem);
    u64::from_le_bytes(a)
}

/// Sixteen hex characters as a 64-bit number (first character most significant), or
/// `None` if one is not a hex digit.
#[inline]
pub(crate) fn hex16(b: &[u8; 16]) -> Option<u64> {
    let (a, c) = (le(&b[..8]), le(&b[8..]));
    if hex_bad(a) | hex_bad(c) != 0 {
        return None;
    }
    // Nibble values: low four bits, plus 9 for letters (bit 6 set).
    let nib = |x: u64| (x & (ONES * 0x0F)) + 9 * ((x >> 6) & ONES);
    let pack = |x: u64| {
        let v = nib(x).swap_bytes();
        let v = (v | v >> 4) & 0x00FF_00FF_00FF_00FF;
        let v = (v | v >> 8) & 0x0000_FFFF_0000_FFFF;
        (v | v >> 16) & 0xFFFF_FFFF
    };
    Some(pack(a) << 32 | pack(c))
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

/// How the hot loop checks a field's content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Not in the dialect: always fails (the slow path names the error).
    #[default]
    Undefined,
    /// Anything goes (binary).
    Any,
    /// ASCII digits, eight at a time (SWAR).
    Digits,
    /// ASCII `ans` (0x20–0x7E), eight at a time.
    Ans,
    /// ASCII hex digits, eight at a time; `even` on the [`Hot`] applies.
    Hex,
    /// Packed BCD digits, eight bytes at a time, with an optional pad nibble.
    Bcd,
    /// One table lookup per byte (other classes, EBCDIC).
    Table,
    /// Signed amounts and BCD with nibble D: the general (slower) check.
    Special,
}

/// The hot loop's first dispatch: fixed fields of up to 16 content bytes in a SWAR class
/// are checked with one or two whole-chunk loads and precomputed shifts; everything else
/// takes the general path ([`Hot::content_ok`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Op {
    #[default]
    General,
    /// Fixed, no check: only the length.
    Any,
    /// Fixed, 1–8 bytes: one chunk ending at the field's end; a one-range class (`n`,
    /// `ans`) with the range in the entry.
    Range8,
    Hex8,
    /// Packed BCD; `pad` masks the pad nibble (0 or F) of an odd digit count.
    Bcd8,
    /// Fixed, 9–16 bytes: the chunk at the start and the chunk ending at the end.
    Range16,
    Hex16,
    /// Packed BCD, an even digit count.
    Bcd16,
}

/// Eight hex digits (checked), first digit in the lowest byte, as four bytes (the first
/// in the lowest byte). A digit's value is its low nibble, plus 9 for a letter (bit 6 set:
/// `A`–`F`, `a`–`f`).
#[inline(always)]
pub(crate) fn unhex8(x: u64) -> u32 {
    const LOW: u64 = 0x0F0F_0F0F_0F0F_0F0F;
    const BIT: u64 = 0x0101_0101_0101_0101;
    let n = (x & LOW) + ((x >> 6) & BIT) * 9;
    // Pairs (high digit, low digit) into bytes, in 16-bit lanes; then lanes packed.
    let t = ((n & 0x00FF_00FF_00FF_00FF) << 4) | ((n >> 8) & 0x00FF_00FF_00FF_00FF);
    let t = (t | (t >> 8)) & 0x0000_FFFF_0000_FFFF;
    (t | (t >> 16)) as u32
}

/// What the decoder needs to know about one field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hot {
    pub(crate) op: Op,
    /// Short fixed fields: bits to shift the last chunk's flags right by (dropping the
    /// bytes before the field).
    shift: u8,
    /// `Op::Bcd8`: the pad nibble in the last chunk (0 if none).
    pad: u64,
    /// `Op::Range*`: the class range `lo..=hi` as lanes of `lo` and of `hi + 1`.
    lo: u64,
    hi1: u64,
    pub(crate) kind: Kind,
    pub(crate) fixed: bool,
    pub(crate) prefix_len: u8,
    pub(crate) prefix: LengthEncoding,
    pub(crate) wire: Wire,
    /// Table check: every content byte's table entry has `bit`.
    bit: u8,
    /// Hex: an odd number of units is an error (hex text counting characters).
    even: bool,
    /// BCD: the length counts digits (an odd count has a pad nibble).
    bcd_digits: bool,
    /// BCD: left-justified (the pad nibble is the last one).
    bcd_left: bool,
    pub(crate) max: u32,
    pub(crate) fixed_wire: u16,
    table: &'static [u8; 256],
    pub(crate) check: Check,
}

impl Default for Hot {
    fn default() -> Self {
        Hot {
            op: Op::General,
            shift: 0,
            pad: 0,
            lo: 0,
            hi1: 0,
            kind: Kind::Undefined,
            fixed: false,
            prefix_len: 0,
            prefix: LengthEncoding::Ascii,
            wire: Wire::Same,
            bit: 0,
            even: false,
            bcd_digits: false,
            bcd_left: false,
            max: 0,
            fixed_wire: 0,
            table: &ASCII,
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
            // A composite's content is checked by its structure (crate::composite).
            _ if spec.composite.is_some() => Check::Any,
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
        let mut hot = Hot {
            op: Op::General,
            shift: 0,
            pad: 0,
            lo: 0,
            hi1: 0,
            kind: Kind::Special,
            fixed: spec.is_fixed(),
            prefix_len: spec.prefix_len() as u8,
            prefix: spec.length_encoding,
            wire,
            bit: 0,
            even: false,
            bcd_digits: false,
            bcd_left: false,
            max: spec.max,
            fixed_wire: spec.wire_len(spec.max as usize).min(u16::MAX as usize) as u16,
            table: &ASCII,
            check,
        };
        match check {
            Check::Any => hot.kind = Kind::Any,
            // Single-range classes (and hex) are cheaper as SWAR; the others as lookups.
            Check::Table {
                bit: N,
                ebcdic: false,
            } => hot.kind = Kind::Digits,
            Check::Table {
                bit: ANS,
                ebcdic: false,
            } => hot.kind = Kind::Ans,
            Check::Table { bit, ebcdic } => {
                hot.kind = Kind::Table;
                hot.bit = bit;
                hot.table = if ebcdic { &EBCDIC } else { &ASCII };
            }
            Check::Hex { even } => {
                hot.kind = Kind::Hex;
                hot.even = even;
            }
            Check::Bcd {
                z: false,
                left,
                digits,
            } => {
                hot.kind = Kind::Bcd;
                hot.bcd_left = left;
                hot.bcd_digits = digits;
            }
            Check::Signed { .. } | Check::Bcd { z: true, .. } => hot.kind = Kind::Special,
        }
        let len = hot.fixed_wire as usize;
        if hot.fixed && (1..=16).contains(&len) {
            let short = len <= 8;
            hot.shift = ((if short { 8 } else { 16 } - len) * 8) as u8;
            let odd = hot.bcd_digits && hot.max % 2 == 1;
            hot.op = match (hot.kind, short) {
                (Kind::Any, _) => Op::Any,
                (Kind::Digits | Kind::Ans, _) => {
                    let (lo, hi) = if hot.kind == Kind::Digits {
                        (b'0', b'9')
                    } else {
                        (0x20, 0x7E)
                    };
                    hot.lo = ONES * lo as u64;
                    hot.hi1 = ONES * (hi as u64 + 1);
                    if short {
                        Op::Range8
                    } else {
                        Op::Range16
                    }
                }
                (Kind::Hex, _) if hot.even && hot.max % 2 == 1 => Op::General,
                (Kind::Hex, true) => Op::Hex8,
                (Kind::Hex, false) => Op::Hex16,
                (Kind::Bcd, true) => {
                    if odd {
                        // The chunk ends at the field's end: the last byte is lane 7, the
                        // first lane 8 - len.
                        hot.pad = if hot.bcd_left {
                            0x0F << 56
                        } else {
                            0xF0 << ((8 - len) * 8)
                        };
                    }
                    Op::Bcd8
                }
                (Kind::Bcd, false) if !odd => Op::Bcd16,
                _ => Op::General,
            };
        }
        hot
    }

    /// A short fixed field (see [`Op`]) at `pos`: its end if it is valid; `None` if it is
    /// not valid or not a short field (then the general path decides).
    #[inline(always)]
    pub(crate) fn short(&self, buf: &[u8], pos: usize) -> Option<usize> {
        let range = |x: u64| {
            let y = x | HIGH;
            (x | !y.wrapping_sub(self.lo) | y.wrapping_sub(self.hi1)) & HIGH
        };
        match self.op {
            Op::General => None,
            Op::Any => Some(pos + self.fixed_wire as usize).filter(|&e| e <= buf.len()),
            Op::Range8 => self.short8(buf, pos, range),
            Op::Hex8 => self.short8(buf, pos, hex_bad),
            Op::Bcd8 => self.bcd8(buf, pos),
            Op::Range16 => self.short16(buf, pos, range),
            Op::Hex16 => self.short16(buf, pos, hex_bad),
            Op::Bcd16 => self.short16(buf, pos, bcd_bad),
        }
    }

    /// `Op::*8`: a fixed field of 1–8 bytes at `pos`: its end, or `None` if it is not
    /// valid (or, never for a field after the MTI and bitmap, starts in the first 8 bytes).
    #[inline(always)]
    fn short8(&self, buf: &[u8], pos: usize, bad: impl Fn(u64) -> u64) -> Option<usize> {
        let end = pos + self.fixed_wire as usize;
        let x = le(buf.get(end.wrapping_sub(8)..end)?);
        (bad(x) >> self.shift == 0).then_some(end)
    }

    /// `Op::Bcd8`: as [`Hot::short8`], with the pad nibble (if any) 0 or F.
    #[inline(always)]
    fn bcd8(&self, buf: &[u8], pos: usize) -> Option<usize> {
        let end = pos + self.fixed_wire as usize;
        let x = le(buf.get(end.wrapping_sub(8)..end)?);
        let p = x & self.pad;
        ((bcd_bad(x & !self.pad) >> self.shift) == 0 && (p == 0 || p == self.pad)).then_some(end)
    }

    /// `Op::*16`: a fixed field of 9–16 bytes at `pos`: its end, or `None`.
    #[inline(always)]
    fn short16(&self, buf: &[u8], pos: usize, bad: impl Fn(u64) -> u64) -> Option<usize> {
        let end = pos + self.fixed_wire as usize;
        let w = buf.get(pos..end)?;
        let (a, b) = (w.first_chunk::<8>()?, w.last_chunk::<8>()?);
        let (a, b) = (u64::from_le_bytes(*a), u64::from_le_bytes(*b));
        (bad(a) | bad(b) >> self.shift == 0).then_some(end)
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
                // LL and LLL straight-line; other lengths by the loop.
                let d = |c: u8| c.wrapping_sub(b'0') as usize;
                match *p {
                    [a, b] => {
                        let (a, b) = (d(a), d(b));
                        if a > 9 || b > 9 {
                            return None;
                        }
                        a * 10 + b
                    }
                    [a, b, c] => {
                        let (a, b, c) = (d(a), d(b), d(c));
                        if a > 9 || b > 9 || c > 9 {
                            return None;
                        }
                        a * 100 + b * 10 + c
                    }
                    _ => Self::ascii_prefix(p)?,
                }
            }
            LengthEncoding::Bcd => {
                let ok = |c: u8| BCD[c as usize] & 1 != 0;
                let v = |c: u8| ((c >> 4) * 10 + (c & 15)) as usize;
                match *p {
                    [a] if ok(a) => v(a),
                    [a, b] if ok(a) && ok(b) => v(a) * 100 + v(b),
                    _ => {
                        let mut n = 0usize;
                        for &c in p {
                            if !ok(c) {
                                return None;
                            }
                            n = n * 100 + v(c);
                        }
                        n
                    }
                }
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

    /// An ASCII length prefix of any length (not LL or LLL).
    #[inline(never)]
    fn ascii_prefix(p: &[u8]) -> Option<usize> {
        let mut v = 0usize;
        let mut ok = true;
        for &c in p {
            let d = c.wrapping_sub(b'0');
            ok &= d <= 9;
            v = v * 10 + d as usize;
        }
        ok.then_some(v)
    }

    /// The length prefix for `units` (nothing for fixed fields): bytes and count.
    #[inline(always)]
    pub(crate) fn prefix_bytes(&self, units: usize) -> ([u8; 8], usize) {
        let mut b = [0u8; 8];
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

    /// Whether the content `buf[start..end]` (in bounds) passes the field's check (fast
    /// path; no error detail).
    #[inline(always)]
    pub(crate) fn content_ok(&self, buf: &[u8], start: usize, end: usize, units: usize) -> bool {
        match self.kind {
            Kind::Any => true,
            Kind::Digits => scan(buf, start, end, |x| range_bad(x, b'0', b'9')),
            Kind::Ans => scan(buf, start, end, |x| range_bad(x, 0x20, 0x7E)),
            Kind::Hex => !(self.even && units % 2 == 1) && scan(buf, start, end, hex_bad),
            Kind::Bcd => self.bcd_ok(buf, start, end, units),
            Kind::Table => {
                let mut acc = 0xFFu8;
                for &c in buf.get(start..end).unwrap_or(&[]) {
                    acc &= self.table[c as usize];
                }
                acc & self.bit != 0
            }
            Kind::Special => match buf.get(start..end) {
                Some(content) => self.special_ok(content, units),
                None => false,
            },
            Kind::Undefined => false,
        }
    }

    /// Packed BCD digits; with an odd digit count, the pad nibble is 0 or F and its
    /// partner a digit.
    #[inline(always)]
    fn bcd_ok(&self, buf: &[u8], start: usize, end: usize, units: usize) -> bool {
        if !(self.bcd_digits && units % 2 == 1) {
            return scan(buf, start, end, bcd_bad);
        }
        if end <= start {
            return false;
        }
        let (pad_at, body) = if self.bcd_left {
            (end - 1, (start, end - 1))
        } else {
            (start, (start + 1, end))
        };
        let Some(&b) = buf.get(pad_at) else {
            return false;
        };
        let (digit, pad) = if self.bcd_left {
            (b >> 4, b & 15)
        } else {
            (b & 15, b >> 4)
        };
        digit <= 9 && (pad == 0 || pad == 0x0F) && scan(buf, body.0, body.1, bcd_bad)
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
                assert_eq!(
                    scan(&[b], 0, 1, |x| range_bad(x, lo, hi)),
                    ASCII[b as usize] & bit != 0
                );
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
                    assert_eq!(
                        scan(&bytes, 0, len, |x| range_bad(x, lo, hi)),
                        plain,
                        "{bytes:02X?}"
                    );
                    if len > 0 {
                        assert_eq!(
                            scan(&bytes, 1, len, |x| range_bad(x, lo, hi)),
                            bytes[1..].iter().all(|&b| ASCII[b as usize] & bit != 0),
                            "{bytes:02X?}"
                        );
                    }
                }
            }
        }
    }

    /// A valid wire value of about `units` units for `spec` (via the encoder).
    fn valid_wire(
        spec: &FieldSpec,
        n: u8,
        units: usize,
        rnd: &mut impl FnMut() -> u64,
    ) -> Option<(Vec<u8>, usize)> {
        use crate::spec::ContentClass as C;
        for len in [units, units * 2] {
            let text: Vec<u8> = (0..len)
                .map(|i| {
                    let r = rnd();
                    let pick = |set: &[u8]| set[(r >> 8) as usize % set.len()];
                    match spec.class {
                        C::N => pick(b"0123456789"),
                        C::Z => pick(b"0123456789D"),
                        C::A => pick(b"abcXYZ "),
                        C::An => pick(b"abcXYZ 059"),
                        C::Ans => 0x20 + (r >> 8) as u8 % 0x5F,
                        C::Ns => pick(b"09 !/:@[`{~"),
                        C::B => pick(b"0123456789abcdefABCDEF"),
                        C::XN if i == 0 => pick(b"CD"),
                        C::XN => pick(b"0123456789"),
                    }
                })
                .collect();
            let mut out = Vec::new();
            if let Ok(u) = spec.text_to_wire(n, &text, &mut out) {
                return Some((out, u));
            }
        }
        None
    }

    #[test]
    fn fast_checks_agree_with_the_specs() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for name in crate::Dialect::builtin_names() {
            let d = crate::Dialect::builtin(name).unwrap();
            for n in 2..=192u8 {
                let Some(spec) = d.field(n).filter(|s| s.composite.is_none()) else {
                    // Composites are checked by their structure (crate::composite).
                    continue;
                };
                let h = d.hot(n);
                for _ in 0..1000 {
                    let units = if spec.is_fixed() || rnd() % 4 == 0 {
                        spec.max as usize
                    } else {
                        (rnd() % (spec.max as u64 + 1)) as usize
                    };
                    let wire = spec.wire_len(units);
                    let before = (rnd() % 12) as usize;
                    let after = (rnd() % 12) as usize;
                    let mode = rnd() % 4;
                    let buf: Vec<u8> = (0..before + wire + after)
                        .map(|_| {
                            let r = rnd();
                            let pick = |set: &[u8]| set[(r >> 8) as usize % set.len()];
                            match (r % 16, mode) {
                                (0, _) => (r >> 8) as u8,
                                (1, _) => pick(&[
                                    0x1F, 0x2F, 0x3A, 0x40, 0x47, 0x60, 0x67, 0x7F, 0x80, 0xFF,
                                    0x00, 0xCF, 0x9D, 0xDD, 0x0F,
                                ]),
                                (_, 0) => pick(b"0123456789"),
                                (_, 1) => pick(b"0123456789abcdefABCDEF"),
                                (_, 2) => pick(&[
                                    0x00, 0x12, 0x99, 0x90, 0x09, 0x45, 0x0F, 0xF0, 0x3D, 0xD7,
                                ]),
                                _ => 0x20 + (r >> 8) as u8 % 0x5F,
                            }
                        })
                        .collect();
                    let mut buf = buf;
                    let mut units = units;
                    let mut wire = wire;
                    if rnd() % 2 == 0 {
                        // A valid value through the encoder, sometimes with one byte changed.
                        if let Some((w, u)) = valid_wire(spec, n, units, &mut rnd) {
                            buf.splice(before..before + wire, w.iter().copied());
                            (units, wire) = (u, w.len());
                            if wire > 0 && rnd() % 2 == 0 {
                                let at = before + (rnd() % wire as u64) as usize;
                                buf[at] = match rnd() % 3 {
                                    0 => rnd() as u8,
                                    1 => buf[at] ^ (1 << (rnd() % 8)),
                                    _ => buf[at] ^ 0xF0,
                                };
                            }
                        }
                    }
                    let (start, end) = (before, before + wire);
                    let slow = spec
                        .validate_wire(n, &buf[start..end], units, start)
                        .is_ok();
                    if spec.is_fixed() {
                        // The short path accepts only valid fields (it may pass any to the
                        // general path); at offset 10+ it decides every valid one itself.
                        let short = h.short(&buf[..end], start);
                        if short.is_some() {
                            assert!(slow, "{name} field {n}: short path accepted bad content");
                            assert_eq!(short, Some(end));
                        }
                        if h.op != Op::General && start >= 8 {
                            let mut b = vec![b'0'; 10];
                            b.extend_from_slice(&buf[start..end]);
                            assert_eq!(h.short(&b, 10).is_some(), slow, "{name} field {n}");
                        }
                    }
                    assert_eq!(
                        h.content_ok(&buf, start, end, units),
                        slow,
                        "{name} field {n} units {units}: {:02X?}",
                        &buf[start..end]
                    );
                }
            }
        }
    }

    #[test]
    fn prefixes_agree_with_the_specs() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for name in crate::Dialect::builtin_names() {
            let d = crate::Dialect::builtin(name).unwrap();
            for n in 2..=192u8 {
                let Some(spec) = d.field(n).filter(|s| !s.is_fixed()) else {
                    continue;
                };
                let h = d.hot(n);
                let plen = spec.prefix_len();
                for _ in 0..2000 {
                    let p: Vec<u8> = (0..plen)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            match x % 4 {
                                0 => (x >> 8) as u8,
                                1 => [0x2F, 0x3A, 0xEF, 0xFA, 0x0A, 0xA0, 0x99, 0x09]
                                    [(x >> 8) as usize % 8],
                                2 => ((x >> 8) as u8 % 10) << 4 | ((x >> 16) as u8 % 10),
                                _ => b'0' + (x >> 8) as u8 % 10,
                            }
                        })
                        .collect();
                    assert_eq!(
                        h.prefix(&p),
                        spec.read_prefix(n, &p, 0).ok(),
                        "{name} {n} {p:02X?}"
                    );
                }
            }
        }
    }

    #[test]
    fn hex16_matches_from_str_radix() {
        let mut x = 0x1234_5678_9ABC_DEF1u64;
        for i in 0..20000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut s = *format!("{x:016x}").as_bytes().first_chunk::<16>().unwrap();
            if i % 2 == 0 {
                s.make_ascii_uppercase();
            }
            if i % 3 == 0 {
                s[(x >> 60) as usize] = [b'g', b'G', b'/', b':', b'@', 0xC1, b' '][i % 7];
            }
            let want = std::str::from_utf8(&s)
                .ok()
                .and_then(|t| u64::from_str_radix(t, 16).ok());
            assert_eq!(hex16(&s), want, "{s:?}");
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
