//! Bitmaps: which of fields 1–192 are present, and their binary or hex-text forms.
//!
//! Bit 1 of the primary bitmap announces the secondary bitmap (fields 65–128); in dialects
//! with a tertiary bitmap, bit 65 announces it (fields 129–192). Bitmaps are written one
//! after the other, before the first data field (the tertiary right after the secondary, as
//! pyiso8583 does).

use crate::error::{CodecError, ErrorKind, Location, Result};
use serde::{Deserialize, Serialize};

/// How bitmaps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BitmapEncoding {
    /// 8 raw bytes per bitmap.
    #[default]
    Binary,
    /// 16 hexadecimal ASCII characters per bitmap.
    Hex,
    /// 16 hexadecimal characters in EBCDIC.
    #[serde(rename = "ebcdic-hex")]
    EbcdicHex,
}

impl BitmapEncoding {
    /// Bytes one 64-bit bitmap takes on the wire.
    pub fn len(self) -> usize {
        match self {
            BitmapEncoding::Binary => 8,
            _ => 16,
        }
    }

    /// Always false (for clippy's `len_without_is_empty`).
    pub fn is_empty(self) -> bool {
        false
    }
}

/// A set of field numbers 1..=192.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Bitmap(pub [u64; 3]);

impl Bitmap {
    /// An empty bitmap.
    pub const EMPTY: Bitmap = Bitmap([0; 3]);

    #[inline]
    fn pos(n: u8) -> (usize, u32) {
        let i = (n as usize).wrapping_sub(1);
        (i / 64, 63 - (i % 64) as u32)
    }

    /// Whether field `n` (1..=192) is present.
    #[inline]
    pub fn get(&self, n: u8) -> bool {
        if !(1..=192).contains(&n) {
            return false;
        }
        let (w, b) = Self::pos(n);
        self.0[w] >> b & 1 == 1
    }

    /// Marks field `n` (1..=192) present; other numbers are ignored.
    #[inline]
    pub fn set(&mut self, n: u8) {
        if (1..=192).contains(&n) {
            let (w, b) = Self::pos(n);
            self.0[w] |= 1 << b;
        }
    }

    /// Marks field `n` absent.
    #[inline]
    pub fn clear(&mut self, n: u8) {
        if (1..=192).contains(&n) {
            let (w, b) = Self::pos(n);
            self.0[w] &= !(1 << b);
        }
    }

    /// Whether no field is present.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 3]
    }

    /// Number of fields present.
    pub fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// The present field numbers in ascending order.
    #[inline]
    pub fn iter(&self) -> BitmapIter {
        BitmapIter {
            words: self.0,
            word: 0,
        }
    }

    /// Decodes one 64-bit bitmap from the start of `buf`.
    #[inline(always)]
    pub(crate) fn decode_word(
        enc: BitmapEncoding,
        buf: &[u8],
        which: u8,
        offset: usize,
    ) -> Result<u64> {
        match enc {
            BitmapEncoding::Binary => {
                if let Some(b) = buf.first_chunk::<8>() {
                    return Ok(u64::from_be_bytes(*b));
                }
            }
            BitmapEncoding::Hex => {
                if let Some(v) = buf.first_chunk::<16>().and_then(crate::hot::hex16) {
                    return Ok(v);
                }
            }
            BitmapEncoding::EbcdicHex => {}
        }
        Self::decode_word_general(enc, buf, which, offset)
    }

    /// [`Bitmap::decode_word`] for EBCDIC and errors.
    #[inline(never)]
    fn decode_word_general(
        enc: BitmapEncoding,
        buf: &[u8],
        which: u8,
        offset: usize,
    ) -> Result<u64> {
        let need = enc.len();
        let loc = Location::Bitmap(which);
        let Some(b) = buf.get(..need) else {
            return Err(CodecError::new(
                loc,
                offset,
                ErrorKind::Truncated {
                    needed: need - buf.len(),
                },
            ));
        };
        match enc {
            BitmapEncoding::Binary => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Ok(u64::from_be_bytes(a))
            }
            BitmapEncoding::Hex | BitmapEncoding::EbcdicHex => {
                // EBCDIC, or a bad character to name.
                let mut v = 0u64;
                for (i, &c0) in b.iter().enumerate() {
                    let c = if enc == BitmapEncoding::EbcdicHex {
                        crate::ebcdic::to_ascii(c0)
                    } else {
                        c0
                    };
                    let d = match c {
                        b'0'..=b'9' => c - b'0',
                        b'A'..=b'F' => c - b'A' + 10,
                        b'a'..=b'f' => c - b'a' + 10,
                        _ => {
                            return Err(CodecError::new(
                                loc,
                                offset + i,
                                ErrorKind::Charset {
                                    byte: c0,
                                    class: "hex",
                                },
                            ))
                        }
                    };
                    v = (v << 4) | d as u64;
                }
                Ok(v)
            }
        }
    }

    /// One 64-bit bitmap word in wire form: bytes and count.
    #[inline]
    pub(crate) fn word_bytes(enc: BitmapEncoding, word: u64) -> ([u8; 16], usize) {
        let mut s = [0u8; 16];
        match enc {
            BitmapEncoding::Binary => {
                s[..8].copy_from_slice(&word.to_be_bytes());
                (s, 8)
            }
            BitmapEncoding::Hex => {
                s[..8].copy_from_slice(&hex8((word >> 32) as u32).to_le_bytes());
                s[8..].copy_from_slice(&hex8(word as u32).to_le_bytes());
                (s, 16)
            }
            BitmapEncoding::EbcdicHex => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                for (i, o) in s.iter_mut().enumerate() {
                    let c = HEX[(word >> (60 - 4 * i) & 0xF) as usize];
                    *o = if enc == BitmapEncoding::EbcdicHex {
                        crate::ebcdic::from_ascii(c)
                    } else {
                        c
                    };
                }
                (s, 16)
            }
        }
    }
}

/// The eight uppercase hex digits of `v`, most significant first (in the lowest byte):
/// nibbles spread into bytes, then `0`–`9` / `A`–`F` added eight at a time.
#[inline(always)]
fn hex8(v: u32) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = v as u64;
    let x = (x | x << 16) & 0x0000_FFFF_0000_FFFF;
    let x = (x | x << 8) & 0x00FF_00FF_00FF_00FF;
    let x = (x | x << 4) & 0x0F0F_0F0F_0F0F_0F0F;
    // Lane i holds nibble i from the least significant: the first digit goes last.
    let x = x.swap_bytes();
    // Nibbles 10..=15 carry into bit 4 when 6 is added: those get 7 more (`A` - `9` - 1).
    let letters = ((x + ONES * 6) >> 4) & ONES;
    x + ONES * b'0' as u64 + letters * 7
}

/// Iterator over the present field numbers of a [`Bitmap`].
#[derive(Debug, Clone)]
pub struct BitmapIter {
    words: [u64; 3],
    word: usize,
}

impl Iterator for BitmapIter {
    type Item = u8;
    #[inline]
    fn next(&mut self) -> Option<u8> {
        while self.word < 3 {
            let w = self.words[self.word];
            if w != 0 {
                let lz = w.leading_zeros();
                self.words[self.word] &= !(1u64 << (63 - lz));
                return Some((self.word * 64 + lz as usize + 1) as u8);
            }
            self.word += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_iter() {
        let mut b = Bitmap::EMPTY;
        for n in [2, 3, 64, 65, 128, 129, 192] {
            b.set(n);
        }
        b.set(0);
        b.set(193);
        assert!(b.get(2) && b.get(192) && !b.get(1) && !b.get(0));
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            vec![2, 3, 64, 65, 128, 129, 192]
        );
        assert_eq!(b.count(), 7);
        b.clear(64);
        assert!(!b.get(64));
    }

    #[test]
    fn words() {
        let mut b = Bitmap::EMPTY;
        b.set(1);
        b.set(2);
        b.set(64);
        assert_eq!(b.0[0], 0xC000_0000_0000_0001);
        let (v, l) = Bitmap::word_bytes(BitmapEncoding::Hex, b.0[0]);
        assert_eq!(&v[..l], b"C000000000000001");
        assert_eq!(
            Bitmap::decode_word(BitmapEncoding::Hex, b"c000000000000001", 1, 0).unwrap(),
            b.0[0]
        );
        let (e, l) = Bitmap::word_bytes(BitmapEncoding::EbcdicHex, b.0[0]);
        assert_eq!(
            Bitmap::decode_word(BitmapEncoding::EbcdicHex, &e[..l], 1, 0).unwrap(),
            b.0[0]
        );
        assert!(Bitmap::decode_word(BitmapEncoding::Hex, b"C00000000000000G", 1, 0).is_err());
        assert!(Bitmap::decode_word(BitmapEncoding::Binary, &[0; 7], 1, 0).is_err());
    }

    #[test]
    fn hex_words_match_format() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let w = match i % 4 {
                0 => x,
                1 => x & 0x0F0F_0F0F_0F0F_0F0F,
                2 => x | 0xF0F0_F0F0_F0F0_F0F0,
                _ => x >> (i % 64),
            };
            let (v, l) = Bitmap::word_bytes(BitmapEncoding::Hex, w);
            assert_eq!(&v[..l], format!("{w:016X}").as_bytes());
        }
    }
}
