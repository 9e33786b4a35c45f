//! Random valid messages for property tests (a small deterministic generator).
#![allow(dead_code)]

use isoswitch_codec::{
    ContentClass, ContentEncoding, Dialect, FieldSpec, LengthUnit, Message, Mti,
};

/// xorshift64*: deterministic, dependency-free.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick(&mut self, set: &[u8]) -> u8 {
        set[self.below(set.len())]
    }
}

const DIGITS: &[u8] = b"0123456789";
const HEX: &[u8] = b"0123456789ABCDEF";
const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ";
const NS: &[u8] = b"0123456789 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// A random valid text form for `spec` (random length for variable fields).
pub fn random_value(spec: &FieldSpec, rng: &mut Rng) -> String {
    let units = if spec.is_fixed() {
        spec.max as usize
    } else {
        match rng.below(10) {
            0 => spec.max as usize,
            1 => 1,
            _ => rng.below(spec.max as usize + 1),
        }
    };
    let unit = spec.length_unit();
    let (chars, even) = match (spec.encoding, unit) {
        (ContentEncoding::Bcd, LengthUnit::Bytes) => (units * 2, false),
        (ContentEncoding::Binary, LengthUnit::Bytes) => (units * 2, false),
        (ContentEncoding::Hex, LengthUnit::Bytes) => (units * 2, false),
        (ContentEncoding::Hex, _) => (units, true),
        _ => (units, false),
    };
    let chars = if even { chars & !1 } else { chars };
    let bcd = spec.encoding == ContentEncoding::Bcd;
    let mut s = String::with_capacity(chars);
    for i in 0..chars {
        let c = match spec.class {
            ContentClass::N => rng.pick(DIGITS),
            ContentClass::A => rng.pick(LETTERS),
            ContentClass::An => rng.pick(ALNUM),
            ContentClass::Ans => 0x20 + rng.below(0x5F) as u8,
            ContentClass::Ns => rng.pick(NS),
            ContentClass::B => rng.pick(HEX),
            ContentClass::Z => {
                if i == chars / 2 && chars > 4 {
                    if bcd {
                        b'D'
                    } else {
                        b'='
                    }
                } else {
                    rng.pick(DIGITS)
                }
            }
            ContentClass::XN => {
                if i == 0 {
                    rng.pick(b"CD")
                } else {
                    rng.pick(DIGITS)
                }
            }
        };
        s.push(c as char);
    }
    s
}

/// A random valid message in `dialect`.
pub fn random_message(dialect: &Dialect, seed: u64) -> Message {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
    let mtis = [
        100u16, 110, 200, 210, 400, 401, 410, 420, 500, 800, 810, 820,
    ];
    let mti = Mti::from_u16(mtis[rng.below(mtis.len())]).unwrap();
    let mut m = Message::new(dialect, mti);
    let defined: Vec<u8> = (2..=192u8)
        .filter(|&n| dialect.field(n).is_some() && !dialect.is_bitmap_field(n))
        .collect();
    let cap = if rng.below(20) == 0 {
        defined.len()
    } else {
        30
    };
    let count = 1 + rng.below(cap);
    for _ in 0..count {
        let n = defined[rng.below(defined.len())];
        let spec = dialect.field(n).unwrap();
        let v = random_value(spec, &mut rng);
        m.set(n, &v)
            .unwrap_or_else(|e| panic!("{}: field {n} value {v:?}: {e}", dialect.name()));
    }
    m
}
