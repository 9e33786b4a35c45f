//! [`Message::set`](crate::Message::set)'s per-field plan: what writing a field from its
//! text takes, precomputed from the [`FieldSpec`] when a dialect is built, so that setting a
//! field is one table entry, a length compare, and one fused pass that checks the text
//! eight bytes at a time (SWAR), writes it in its wire form (as it is, hex uppercased, hex
//! to bytes, or digits to packed BCD) and writes its length prefix into the message's
//! arena.
//!
//! A value the plan does not take (wrong length, a byte outside the class, a field kind the
//! plan does not cover: EBCDIC, signed amounts, composites, long prefixes) goes to the
//! general encoder ([`FieldSpec::text_to_wire`]), which either writes it or names the
//! error. The plan only ever accepts what that encoder accepts, and writes the same bytes
//! (`tests::plans_agree_with_the_encoder`).

use crate::hot::{le, unhex8};
use crate::spec::{ContentClass, ContentEncoding, FieldSpec, Justify, LengthEncoding, LengthUnit};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Longest text the plan writes itself (longer values take the general encoder, which
/// also keeps the arena within its 16-bit offsets).
const MAX_TEXT: usize = 4096;

/// A character class as up to three byte ranges (each optionally compared with bit 5
/// forced on, which folds `A`–`Z` onto `a`–`z`), checked eight bytes at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Class {
    lo: [u64; 3],
    hi1: [u64; 3],
    fold: [u64; 3],
}

impl Class {
    /// A class of ranges `(lo, hi, fold)`, `lo <= hi < 0x80`.
    const fn of(r: &[(u8, u8, bool)]) -> Class {
        // An empty range: nothing is >= 0x7F and < 0x7F.
        let mut c = Class {
            lo: [ONES * 0x7F; 3],
            hi1: [ONES * 0x7F; 3],
            fold: [0; 3],
        };
        let mut i = 0;
        while i < r.len() {
            c.lo[i] = ONES * r[i].0 as u64;
            c.hi1[i] = ONES * (r[i].1 as u64 + 1);
            c.fold[i] = if r[i].2 { ONES * 0x20 } else { 0 };
            i += 1;
        }
        c
    }

    /// The high bit of each lane of `x` whose byte is not in the class's first `K` ranges.
    #[inline(always)]
    fn bad<const K: usize>(&self, x: u64) -> u64 {
        let mut good = 0;
        for i in 0..K {
            // With the high bit forced on, a lane's subtraction never borrows from the
            // next: its high bit stays set exactly when the byte (below 0x80) is >= k.
            let y = x | self.fold[i] | HIGH;
            good |= y.wrapping_sub(self.lo[i]) & !y.wrapping_sub(self.hi1[i]);
        }
        (x | !good) & HIGH
    }
}

static N: Class = Class::of(&[(b'0', b'9', false)]);
static A: Class = Class::of(&[(b'a', b'z', true), (b' ', b' ', false)]);
static AN: Class = Class::of(&[(b'0', b'9', false), (b'a', b'z', true), (b' ', b' ', false)]);
static ANS: Class = Class::of(&[(0x20, 0x7E, false)]);
static NS: Class = Class::of(&[
    (0x20, 0x40, false),
    (0x5B, 0x60, false),
    (0x7B, 0x7E, false),
]);
static Z: Class = Class::of(&[
    (b'0', b'9', false),
    (b'=', b'=', false),
    (b'D', b'D', false),
]);
static HEX: Class = Class::of(&[(b'0', b'9', false), (b'a', b'f', true)]);
/// Packed BCD of class `z`: digits, `=`, `D` and `d` (all nibble D).
static BCD_Z: Class = Class::of(&[(b'0', b'9', false), (b'=', b'=', false), (b'd', b'd', true)]);

/// How the text becomes the content (each with its check specialised).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum SetOp {
    /// Not by the plan: the general encoder.
    #[default]
    No,
    /// The text is the content, its class one range (`n`, `ans`).
    Same1,
    /// The text is the content, its class up to three ranges (`a`, `an`, `ns`, `z`).
    Same3,
    /// The text is the content, any bytes (class `b` in ASCII).
    Copy,
    /// Hex text, written uppercase (an even count).
    Hex,
    /// Hex text to bytes (binary fields counting bytes).
    Unhex,
    /// Digits to packed BCD (counting digits), an odd count padded.
    Bcd1,
    /// The same for class `z` (`=`, `D`, `d` are nibble D).
    Bcd3,
}

/// How the length prefix is written (its value is the length in units).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Prefix {
    /// Fixed field: none.
    #[default]
    None,
    /// One to three decimal digits (ASCII or EBCDIC).
    Decimal,
    /// Packed BCD, one or two bytes.
    Bcd,
    /// Binary, one byte.
    Bin1,
    /// Binary, two bytes big-endian.
    Bin2,
}

/// Three decimal digits of each number below 1000, one per byte (hundreds lowest).
static DEC3: [u32; 1000] = {
    let mut t = [0u32; 1000];
    let mut i = 0;
    while i < 1000 {
        t[i] = (i / 100) as u32 | ((i / 10 % 10) as u32) << 8 | ((i % 10) as u32) << 16;
        i += 1;
    }
    t
};

/// The digits of `u` (below 1000: the plans' prefixes are at most three digits).
#[inline(always)]
fn dec3(u: usize) -> u32 {
    DEC3.get(u).copied().unwrap_or(0)
}

/// What [`crate::Message::set`] needs to write one field from its text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SetPlan {
    pub(crate) op: SetOp,
    /// Length prefix bytes.
    pub(crate) plen: u8,
    prefix: Prefix,
    /// `Decimal`: bits to shift the three-digit form right by (fewer digits).
    pshift: u8,
    /// `Bcd*`: an odd digit count is padded at the start (right-justified) or the end.
    pad_first: bool,
    /// `Bcd*`: the pad nibble.
    pad: u8,
    /// Accepted text lengths: `min..=min + span`.
    min: u32,
    span: u32,
    /// `Decimal`: the digit zero (`0` or EBCDIC 0xF0) in each of three bytes.
    pbase: u32,
    class: &'static Class,
    /// The field's word and bit in a [`crate::Bitmap`].
    pub(crate) word: usize,
    pub(crate) bit: u64,
}

impl Default for SetPlan {
    fn default() -> Self {
        SetPlan {
            op: SetOp::No,
            plen: 0,
            prefix: Prefix::None,
            pshift: 0,
            pad_first: false,
            pad: 0,
            min: 0,
            span: 0,
            pbase: 0,
            class: &N,
            word: 0,
            bit: 0,
        }
    }
}

impl SetPlan {
    /// The plan of field `n` (2..=192) of spec `spec` (`SetOp::No` when the general
    /// encoder has to write it).
    pub(crate) fn of(n: u8, spec: &FieldSpec) -> SetPlan {
        let no = SetPlan::default();
        if spec.composite.is_some() || !(2..=192).contains(&n) {
            return no;
        }
        let unit = spec.length_unit();
        let (op, class): (SetOp, &'static Class) = match (spec.encoding, unit) {
            (ContentEncoding::Ascii, _) => match spec.class {
                ContentClass::N => (SetOp::Same1, &N),
                ContentClass::Ans => (SetOp::Same1, &ANS),
                ContentClass::A => (SetOp::Same3, &A),
                ContentClass::An => (SetOp::Same3, &AN),
                ContentClass::Ns => (SetOp::Same3, &NS),
                ContentClass::Z => (SetOp::Same3, &Z),
                ContentClass::B => (SetOp::Copy, &N),
                ContentClass::XN => return no,
            },
            // Odd counts (an error for class b, allowed otherwise) take the general path.
            (ContentEncoding::Hex, LengthUnit::Characters | LengthUnit::Digits) => {
                (SetOp::Hex, &HEX)
            }
            (ContentEncoding::Binary, LengthUnit::Bytes) => (SetOp::Unhex, &HEX),
            (ContentEncoding::Bcd, LengthUnit::Digits) => {
                if spec.class == ContentClass::Z {
                    (SetOp::Bcd3, &BCD_Z)
                } else {
                    (SetOp::Bcd1, &N)
                }
            }
            _ => return no,
        };
        let digits = spec.length.digits() as u32;
        let max = spec.max;
        let (prefix, plen, pshift, pbase) = if spec.is_fixed() {
            (Prefix::None, 0, 0, 0)
        } else {
            match spec.length_encoding {
                LengthEncoding::Ascii | LengthEncoding::Ebcdic
                    if (1..=3).contains(&digits) && max < 10u32.pow(digits) =>
                {
                    let zero = if spec.length_encoding == LengthEncoding::Ascii {
                        0x30
                    } else {
                        0xF0
                    };
                    (
                        Prefix::Decimal,
                        digits as u8,
                        (8 * (3 - digits)) as u8,
                        zero * 0x01_01_01,
                    )
                }
                LengthEncoding::Bcd if (1..=3).contains(&digits) && max < 10u32.pow(digits) => {
                    let plen = digits.div_ceil(2);
                    (Prefix::Bcd, plen as u8, (8 * (2 - plen)) as u8, 0)
                }
                LengthEncoding::Binary if digits <= 2 && max <= 0xFF => (Prefix::Bin1, 1, 0, 0),
                LengthEncoding::Binary if digits > 2 && max <= 0xFFFF => (Prefix::Bin2, 2, 0, 0),
                _ => return no,
            }
        };
        debug_assert_eq!(plen as usize, spec.prefix_len());
        let per_unit = if op == SetOp::Unhex { 2 } else { 1 };
        let longest = max as usize * per_unit;
        let (min, span) = if spec.is_fixed() {
            (longest, 0)
        } else {
            // Empty values take the general encoder.
            (1, longest.saturating_sub(1))
        };
        if min > MAX_TEXT || longest == 0 && !spec.is_fixed() {
            return no;
        }
        let i = n as usize - 1;
        SetPlan {
            op,
            plen,
            prefix,
            pshift,
            pad_first: spec.justify == Justify::Right,
            pad: spec.pad & 0x0F,
            min: min as u32,
            span: span.min(MAX_TEXT - min) as u32,
            pbase,
            class,
            word: i / 64,
            bit: 1 << (63 - i % 64),
        }
    }

    /// Whether a text of `len` bytes has a length this plan writes.
    #[inline(always)]
    pub(crate) fn takes(&self, len: usize) -> bool {
        self.op != SetOp::No && (len as u64).wrapping_sub(self.min as u64) <= self.span as u64
    }

    /// Content bytes and length units of a text of `len` bytes.
    #[inline(always)]
    pub(crate) fn sizes(&self, len: usize) -> (usize, usize) {
        match self.op {
            SetOp::Unhex => (len / 2, len / 2),
            SetOp::Bcd1 | SetOp::Bcd3 => (len.div_ceil(2), len),
            _ => (len, len),
        }
    }

    /// The length prefix for `units`, in the low `plen` bytes (first byte lowest).
    #[inline(always)]
    fn prefix_word(&self, units: usize) -> u32 {
        let u = units as u32;
        match self.prefix {
            Prefix::None => 0,
            Prefix::Decimal => (self.pbase + dec3(units)) >> self.pshift,
            Prefix::Bcd => {
                let d = dec3(units);
                ((d & 0x0F) | (d >> 4 & 0xF0 | d >> 16) << 8) >> self.pshift
            }
            Prefix::Bin1 => u,
            Prefix::Bin2 => (u >> 8) | (u & 0xFF) << 8,
        }
    }

    /// The short path, for text of up to 16 bytes written as it is (`Same1`, `Same3`,
    /// `Hex`), packed to BCD (`Bcd1`, `Bcd3`) or hex to bytes (`Unhex`): the field's wire
    /// form (prefix, then content; `plen + sizes(len).0` bytes) in the low bytes of 24, or
    /// `None` if the text is not valid or not for this path (then [`SetPlan::write`]
    /// decides). The caller checked [`SetPlan::takes`].
    #[inline(always)]
    pub(crate) fn short(&self, v: &[u8]) -> Option<[u8; 24]> {
        let len = v.len();
        if len > 16 || len == 0 {
            return None;
        }
        let (x, y, bad) = match self.op {
            SetOp::Same1 => load16::<1, false>(self.class, v),
            SetOp::Same3 => load16::<3, false>(self.class, v),
            SetOp::Hex if len % 2 == 0 => load16::<2, true>(self.class, v),
            SetOp::Bcd1 => self.load_bcd::<1>(v),
            SetOp::Bcd3 => self.load_bcd::<3>(v),
            SetOp::Unhex if len % 2 == 0 => {
                // Hex digit pairs to bytes: the same pairing as packed BCD.
                let (x, y, bad) = load16::<2, false>(self.class, v);
                (unhex8(x) as u64 | (unhex8(y) as u64) << 32, 0, bad)
            }
            _ => return None,
        };
        if bad != 0 {
            return None;
        }
        let (w0, w1, w2) = if self.plen == 0 {
            (x, y, 0)
        } else {
            // The prefix, then the content: shifted up by the prefix's bytes (1..=3).
            let pw = self.prefix_word(self.sizes(len).1) as u64;
            let s = 8 * self.plen as u32;
            (pw | x << s, x >> (64 - s) | y << s, y >> (64 - s))
        };
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&w0.to_le_bytes());
        b[8..16].copy_from_slice(&w1.to_le_bytes());
        b[16..].copy_from_slice(&w2.to_le_bytes());
        Some(b)
    }

    /// Digits (1..=16) packed to BCD for [`SetPlan::short`]: the packed bytes in the low
    /// lanes of the first word (the second zero), and the lanes not in the class. An odd
    /// count gets the pad character first or last, so one pairing packs every count.
    #[inline(always)]
    fn load_bcd<const K: usize>(&self, v: &[u8]) -> (u64, u64, u64) {
        let len = v.len();
        let (x, y, bad) = load16::<K, false>(self.class, v);
        let (x, y) = if len % 2 == 0 {
            (x, y)
        } else {
            // A character whose nibble is the pad (digits, or `A`..`F` for 10..15).
            let c = if self.pad < 10 {
                0x30 | self.pad
            } else {
                0x40 | (self.pad - 9)
            } as u64;
            if self.pad_first {
                (x << 8 | c, y << 8 | x >> 56)
            } else if len < 8 {
                (x | c << (8 * len), y)
            } else {
                (x, y | c << (8 * (len - 8)))
            }
        };
        (unhex8(x) as u64 | (unhex8(y) as u64) << 32, 0, bad)
    }

    /// Appends the field (prefix and content) for `text` to `out`: `false` (and `out` as it
    /// was) if the text is not valid for the field. The caller checked
    /// [`SetPlan::takes`] and that `out` has room for the prefix, the content and 16 bytes.
    #[inline(always)]
    pub(crate) fn write(&self, text: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        if self.plen != 0 {
            let units = self.sizes(text.len()).1;
            put8(out, self.prefix_word(units) as u64, self.plen as usize);
        }
        let ok = match self.op {
            SetOp::Same1 => same::<1, false>(self.class, text, out),
            SetOp::Same3 => same::<3, false>(self.class, text, out),
            SetOp::Copy => {
                out.extend_from_slice(text);
                true
            }
            SetOp::Hex => text.len() % 2 == 0 && same::<2, true>(self.class, text, out),
            SetOp::Unhex => text.len() % 2 == 0 && pack::<2>(self.class, text, out),
            SetOp::Bcd1 => self.bcd::<1>(text, out),
            SetOp::Bcd3 => self.bcd::<3>(text, out),
            SetOp::No => false,
        };
        if !ok {
            out.truncate(start);
        }
        ok
    }

    /// Digits to packed BCD: an odd count has the pad nibble first (right-justified) or
    /// last.
    #[inline(always)]
    fn bcd<const K: usize>(&self, v: &[u8], out: &mut Vec<u8>) -> bool {
        let len = v.len();
        if len % 2 == 0 {
            return pack::<K>(self.class, v, out);
        }
        let (one, body) = if self.pad_first {
            (v[0], &v[1..])
        } else {
            (v[len - 1], &v[..len - 1])
        };
        if self.class.bad::<K>(one as u64) & 0x80 != 0 {
            return false;
        }
        let d = nibble(one);
        if self.pad_first {
            out.push(self.pad << 4 | d);
            pack::<K>(self.class, body, out)
        } else {
            let ok = pack::<K>(self.class, body, out);
            out.push(d << 4 | self.pad);
            ok
        }
    }
}

/// Hex digits (checked) uppercase: a letter (bit 6 set) loses bit 5; digits are unchanged.
#[inline(always)]
fn upper(x: u64) -> u64 {
    x & !((x >> 1) & (ONES * 0x20))
}

/// The text is the content: up to sixteen bytes loaded, checked and stored whole; longer
/// ones checked, then copied (and uppercased, `UP`).
#[inline(always)]
fn same<const K: usize, const UP: bool>(class: &Class, v: &[u8], out: &mut Vec<u8>) -> bool {
    let len = v.len();
    let tr = |x: u64| if UP { upper(x) } else { x };
    if len <= 8 {
        if len == 0 {
            return true;
        }
        let x = small(v);
        put8(out, tr(x), len);
        return class.bad::<K>(x) & lanes(len) == 0;
    }
    if len <= 16 {
        let (x, y) = (le(&v[..8]), le(&v[len - 8..]));
        // The last eight bytes overlap the first eight: those shifted out.
        put8(out, tr(x), 8);
        put8(out, tr(y) >> (8 * (16 - len)), len - 8);
        return class.bad::<K>(x) | class.bad::<K>(y) == 0;
    }
    let mut acc = 0;
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        acc |= class.bad::<K>(le(c));
    }
    acc |= class.bad::<K>(le(&v[len - 8..]));
    if acc != 0 {
        return false;
    }
    let at = out.len();
    out.extend_from_slice(v);
    if UP {
        let mut w = out[at..].chunks_exact_mut(8);
        for c in &mut w {
            let x = upper(le(c));
            c.copy_from_slice(&x.to_le_bytes());
        }
        w.into_remainder().make_ascii_uppercase();
    }
    true
}

/// Text of 1..=16 bytes as two chunks (the first eight bytes, then the rest; lanes past
/// the end zero), `UP`: hex letters uppercased; and the lanes not in the class.
#[inline(always)]
fn load16<const K: usize, const UP: bool>(class: &Class, v: &[u8]) -> (u64, u64, u64) {
    let len = v.len();
    let tr = |x: u64| if UP { upper(x) } else { x };
    if len <= 8 {
        let x = small(v);
        (tr(x), 0, class.bad::<K>(x) & lanes(len))
    } else {
        let (x, y) = (le(&v[..8]), le(&v[len - 8..]));
        // The last eight bytes overlap the first eight: those shifted out.
        let sh = 8 * (16 - len) as u32;
        (
            tr(x),
            tr(y) >> sh,
            class.bad::<K>(x) | class.bad::<K>(y) >> sh,
        )
    }
}

/// A hex digit's value, or a BCD character's nibble (`=`, `D`, `d`: 0xD), checked.
#[inline(always)]
fn nibble(c: u8) -> u8 {
    (c & 0x0F) + 9 * ((c >> 6) & 1)
}

/// Lanes `0..len` (1..=8) of a chunk.
#[inline(always)]
fn lanes(len: usize) -> u64 {
    u64::MAX >> (64 - 8 * len as u32)
}

/// Appends the low `len` (1..=8) bytes of `x` (one 8-byte store).
#[inline(always)]
fn put8(out: &mut Vec<u8>, x: u64, len: usize) {
    let at = out.len();
    out.extend_from_slice(&x.to_le_bytes());
    out.truncate(at + len);
}

/// `v` (1..=8 bytes) in the low lanes of a chunk, the others zero: two overlapping loads.
#[inline(always)]
fn small(v: &[u8]) -> u64 {
    let len = v.len();
    if len >= 4 {
        let a = u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as u64;
        let b = u32::from_le_bytes([v[len - 4], v[len - 3], v[len - 2], v[len - 1]]) as u64;
        a | b << (8 * (len - 4))
    } else {
        let (a, b, c) = (v[0] as u64, v[len / 2] as u64, v[len - 1] as u64);
        a | b << (8 * (len / 2)) | c << (8 * (len - 1))
    }
}

/// Eight pairs of characters (two chunks) packed into eight bytes.
#[inline(always)]
fn two(a: u64, b: u64) -> u64 {
    unhex8(a) as u64 | (unhex8(b) as u64) << 32
}

/// Pairs of characters (hex digits, or BCD digits) of `v` (an even count, checked against
/// `class`) packed into bytes, sixteen characters at a time.
#[inline(always)]
fn pack<const K: usize>(class: &Class, v: &[u8], out: &mut Vec<u8>) -> bool {
    let len = v.len();
    if len < 16 {
        if len == 0 {
            return true;
        }
        let bad = if len <= 8 {
            let x = small(v);
            put8(out, unhex8(x) as u64, len / 2);
            class.bad::<K>(x) & lanes(len)
        } else {
            let (x, y) = (le(&v[..8]), small(&v[8..]));
            put8(out, two(x, y), len / 2);
            class.bad::<K>(x) | class.bad::<K>(y) & lanes(len - 8)
        };
        return bad == 0;
    }
    let mut acc = 0;
    let mut chunks = v.chunks_exact(16);
    for c in &mut chunks {
        let (x, y) = (le(&c[..8]), le(&c[8..]));
        acc |= class.bad::<K>(x) | class.bad::<K>(y);
        put8(out, two(x, y), 8);
    }
    let r = len % 16;
    if r != 0 {
        // The last sixteen characters (those already packed shifted out).
        let (x, y) = (le(&v[len - 16..len - 8]), le(&v[len - 8..]));
        acc |= class.bad::<K>(x) | class.bad::<K>(y);
        put8(out, two(x, y) >> (8 * (8 - r / 2)), r / 2);
    }
    acc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_the_spec_classes() {
        use ContentClass as C;
        for (class, cc, fill) in [
            (&N, C::N, b'0'),
            (&A, C::A, b'a'),
            (&AN, C::An, b'a'),
            (&ANS, C::Ans, b'a'),
            (&NS, C::Ns, b'0'),
            (&Z, C::Z, b'0'),
        ] {
            for b in 0..=255u8 {
                for lane in 0..8 {
                    let x =
                        (b as u64) << (8 * lane) | ((ONES * fill as u64) & !(0xFF << (8 * lane)));
                    assert_eq!(
                        class.bad::<3>(x) == 0,
                        cc.allows(1, b),
                        "{cc:?} {b:#04X} lane {lane}"
                    );
                    if matches!(cc, C::N | C::Ans) {
                        assert_eq!(class.bad::<1>(x), class.bad::<3>(x));
                    }
                }
            }
        }
        for b in 0..=255u8 {
            assert_eq!(
                HEX.bad::<2>(b as u64) & 0x80 == 0,
                b.is_ascii_hexdigit(),
                "{b}"
            );
            let z = b.is_ascii_digit() || matches!(b, b'=' | b'D' | b'd');
            assert_eq!(BCD_Z.bad::<3>(b as u64) & 0x80 == 0, z, "{b}");
            if z || b.is_ascii_hexdigit() {
                let want = match b {
                    b'=' => 0x0D,
                    _ => (b as char).to_digit(16).unwrap() as u8,
                };
                assert_eq!(nibble(b), want, "{b}");
            }
        }
    }

    /// Random text for `spec`: mostly valid characters, sometimes a bad one, of lengths
    /// around the valid ones.
    fn text(spec: &FieldSpec, rnd: &mut impl FnMut() -> u64) -> Vec<u8> {
        use crate::spec::ContentClass as C;
        let per = match (spec.encoding, spec.length_unit()) {
            (ContentEncoding::Binary, LengthUnit::Bytes) => 2,
            _ => 1,
        };
        let max = spec.max as u64 * per;
        let len = match rnd() % 6 {
            0 => rnd() % (max + 3),
            1 => max.saturating_sub(rnd() % 3),
            2 => max + 1,
            _ if spec.is_fixed() => max,
            _ => rnd() % (max.min(40) + 1),
        } as usize;
        let hex = matches!(
            spec.encoding,
            ContentEncoding::Hex | ContentEncoding::Binary
        );
        (0..len)
            .map(|i| {
                let r = rnd();
                let pick = |set: &[u8]| set[(r >> 8) as usize % set.len()];
                if r % 29 == 0 {
                    return (r >> 16) as u8;
                }
                if r % 31 == 1 {
                    return pick(b"\x00\x1F\x7F\x80\xFF/:@[`{~=Dd gG");
                }
                if hex {
                    return pick(b"0123456789abcdefABCDEF");
                }
                match spec.class {
                    C::N => pick(b"0123456789"),
                    C::Z => pick(b"0123456789=Dd"),
                    C::A => pick(b"abcXYZ "),
                    C::An => pick(b"abcXYZ 059"),
                    C::Ans => 0x20 + (r >> 8) as u8 % 0x5F,
                    C::Ns => pick(b"09 !/:@[`{~"),
                    C::B => (r >> 8) as u8,
                    C::XN if i == 0 => pick(b"CD"),
                    C::XN => pick(b"0123456789"),
                }
            })
            .collect()
    }

    #[test]
    fn plans_agree_with_the_encoder() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut taken, mut shorts) = (0, 0);
        for name in crate::Dialect::builtin_names() {
            let d = crate::Dialect::builtin(name).unwrap();
            for n in 2..=192u8 {
                let Some(spec) = d.field(n) else {
                    continue;
                };
                let plan = SetPlan::of(n, spec);
                let h = d.hot(n);
                for _ in 0..600 {
                    let t = text(spec, &mut rnd);
                    let mut want = vec![0xAA; 3];
                    want.resize(3 + spec.prefix_len(), 0);
                    let units = spec.text_to_wire(n, &t, &mut want);
                    if let Ok(u) = units {
                        let (p, l) = h.prefix_bytes(u);
                        want[3..3 + l].copy_from_slice(&p[..l]);
                    }
                    if !plan.takes(t.len()) {
                        continue;
                    }
                    let short = plan.short(&t);
                    let mut got = vec![0xAA; 3];
                    let ok = plan.write(&t, &mut got);
                    let short_op = matches!(
                        plan.op,
                        SetOp::Same1 | SetOp::Same3 | SetOp::Bcd1 | SetOp::Bcd3
                    ) || (plan.op == SetOp::Hex && t.len() % 2 == 0);
                    if ok && short_op && (1..=16).contains(&t.len()) {
                        let b = short.expect("the short path takes valid text of up to 16");
                        let wire = plan.plen as usize + plan.sizes(t.len()).0;
                        assert_eq!(
                            b[..wire],
                            got[3..],
                            "short {name} {n} {:?}",
                            String::from_utf8_lossy(&t)
                        );
                        shorts += 1;
                    } else {
                        assert!(short.is_none() || ok, "short took invalid {name} {n}");
                    }
                    assert_eq!(
                        ok,
                        units.is_ok(),
                        "{name} {n} {:?}",
                        String::from_utf8_lossy(&t)
                    );
                    if ok {
                        taken += 1;
                        assert_eq!(got, want, "{name} {n} {:?}", String::from_utf8_lossy(&t));
                        assert_eq!(plan.sizes(t.len()).1, units.unwrap());
                    } else {
                        assert_eq!(got, [0xAA; 3]);
                    }
                }
            }
        }
        assert!(taken > 50_000, "{taken}");
        assert!(shorts > 10_000, "{shorts}");
    }

    /// The short BCD path against the encoder for every count of 1..=16 digits, both
    /// justifications and pads, fixed and variable, each prefix encoding (the built-in
    /// dialects do not have every combination).
    #[test]
    fn short_bcd_agrees_with_the_encoder() {
        use crate::spec::LengthKind;
        let mut checked = 0;
        for class in [ContentClass::N, ContentClass::Z] {
            for justify in [Justify::Left, Justify::Right] {
                for pad in [0u8, 0x0D, 0x0F] {
                    for le_ in [
                        LengthEncoding::Ascii,
                        LengthEncoding::Bcd,
                        LengthEncoding::Binary,
                    ] {
                        for len in 1..=16usize {
                            for fixed in [true, false] {
                                let kind = if fixed {
                                    LengthKind::Fixed
                                } else {
                                    LengthKind::LL
                                };
                                let max = if fixed { len as u32 } else { 19 };
                                let mut spec = FieldSpec::new("t", class, kind, max);
                                spec.encoding = ContentEncoding::Bcd;
                                spec.length_encoding = le_;
                                spec.justify = justify;
                                spec.pad = pad;
                                let plan = SetPlan::of(35, &spec);
                                let h = crate::hot::Hot::of(&spec);
                                let digits: &[u8] = if class == ContentClass::Z {
                                    b"0123456789=D"
                                } else {
                                    b"0123456789"
                                };
                                for k in 0..digits.len() {
                                    let t: Vec<u8> = (0..len)
                                        .map(|i| digits[(i * 7 + k) % digits.len()])
                                        .collect();
                                    let want = by_encoder(&spec, &h, 35, &t);
                                    let b = plan.short(&t).expect("short takes valid digits");
                                    let wire = plan.plen as usize + plan.sizes(len).0;
                                    assert_eq!(
                                        b[..wire],
                                        want[..],
                                        "{class:?} {justify:?} pad {pad} {le_:?} fixed {fixed} {:?}",
                                        String::from_utf8_lossy(&t)
                                    );
                                    let mut bad = t.clone();
                                    bad[k % len] = b'x';
                                    assert!(plan.short(&bad).is_none());
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 2_000, "{checked}");
    }

    /// Field `n`'s wire form (prefix, content) for text `t`, by the general encoder.
    fn by_encoder(spec: &FieldSpec, h: &crate::hot::Hot, n: u8, t: &[u8]) -> Vec<u8> {
        let mut want = vec![0; spec.prefix_len()];
        let u = spec.text_to_wire(n, t, &mut want).expect("valid");
        let (p, l) = h.prefix_bytes(u);
        want[..l].copy_from_slice(&p[..l]);
        want
    }

    #[test]
    fn short_unhex_agrees_with_the_encoder() {
        use crate::spec::LengthKind;
        let mut checked = 0;
        for le_ in [
            LengthEncoding::Ascii,
            LengthEncoding::Bcd,
            LengthEncoding::Binary,
        ] {
            for kind in [LengthKind::Fixed, LengthKind::LL, LengthKind::LLL] {
                for bytes in 1..=8usize {
                    let max = if kind == LengthKind::Fixed {
                        bytes as u32
                    } else {
                        99
                    };
                    let mut spec = FieldSpec::new("t", ContentClass::B, kind, max);
                    spec.encoding = ContentEncoding::Binary;
                    spec.length_encoding = le_;
                    let plan = SetPlan::of(52, &spec);
                    assert_eq!(plan.op, SetOp::Unhex);
                    let h = crate::hot::Hot::of(&spec);
                    let digits = b"0123456789ABCDEFabcdef";
                    for k in 0..digits.len() {
                        let t: Vec<u8> = (0..2 * bytes)
                            .map(|i| digits[(i * 5 + k) % digits.len()])
                            .collect();
                        let want = by_encoder(&spec, &h, 52, &t);
                        let b = plan.short(&t).expect("short takes valid hex");
                        let wire = plan.plen as usize + plan.sizes(t.len()).0;
                        assert_eq!(
                            b[..wire],
                            want[..],
                            "{le_:?} {kind:?} {:?}",
                            String::from_utf8_lossy(&t)
                        );
                        let mut bad = t.clone();
                        bad[k % t.len()] = b'g';
                        assert!(plan.short(&bad).is_none());
                        if kind != LengthKind::Fixed {
                            // An odd count of hex digits is not bytes.
                            assert!(plan.short(&t[..t.len() - 1]).is_none());
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 500, "{checked}");
    }
}
