//! Field specifications as data: content class, length kind and encoding, content
//! encoding, maximum length and what the length counts.
//!
//! A [`FieldSpec`] is plain data (serde-friendly), so a host's dialect can be described in
//! JSON or TOML. The methods here are the per-field codec used by the message view and
//! the builder: length prefixes, wire sizes, charset validation and value conversion.

use crate::ebcdic;
use crate::error::{CodecError, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Content class of a data element (ISO 8583 notation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContentClass {
    /// `n`: numeric digits.
    #[serde(rename = "n")]
    N,
    /// `a`: alphabetic (letters and space).
    #[serde(rename = "a")]
    A,
    /// `an`: alphanumeric (letters, digits and space).
    #[serde(rename = "an")]
    An,
    /// `ans`: alphanumeric and special (printable ASCII 0x20–0x7E).
    #[serde(rename = "ans")]
    Ans,
    /// `ns`: numeric and special (digits, space and punctuation; no letters).
    #[serde(rename = "ns")]
    Ns,
    /// `b`: binary data.
    #[serde(rename = "b")]
    B,
    /// `z`: track 2/3 data (digits and the `=` / `D` separator).
    #[serde(rename = "z")]
    Z,
    /// `x+n`: a signed amount, `C` (credit) or `D` (debit) followed by digits.
    #[serde(rename = "x+n")]
    XN,
}

impl ContentClass {
    /// The ISO notation for the class (`n`, `an`, `x+n`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ContentClass::N => "n",
            ContentClass::A => "a",
            ContentClass::An => "an",
            ContentClass::Ans => "ans",
            ContentClass::Ns => "ns",
            ContentClass::B => "b",
            ContentClass::Z => "z",
            ContentClass::XN => "x+n",
        }
    }

    /// Whether an ASCII character may appear at position `index` of a value of this class.
    #[inline]
    pub fn allows(self, index: usize, c: u8) -> bool {
        match self {
            ContentClass::N => c.is_ascii_digit(),
            ContentClass::A => c.is_ascii_alphabetic() || c == b' ',
            ContentClass::An => c.is_ascii_alphanumeric() || c == b' ',
            ContentClass::Ans => (0x20..=0x7E).contains(&c),
            ContentClass::Ns => (0x20..=0x7E).contains(&c) && !c.is_ascii_alphabetic(),
            ContentClass::B => true,
            ContentClass::Z => c.is_ascii_digit() || c == b'=' || c == b'D',
            ContentClass::XN => {
                if index == 0 {
                    c == b'C' || c == b'D'
                } else {
                    c.is_ascii_digit()
                }
            }
        }
    }
}

/// How many length digits precede a variable field (`LL` = two digits, …); `Fixed` has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LengthKind {
    /// Fixed length: no prefix, the length is the spec's `max`.
    #[serde(rename = "fixed")]
    Fixed,
    /// One length digit.
    L,
    /// Two length digits (LLVAR).
    LL,
    /// Three length digits (LLLVAR).
    LLL,
    /// Four length digits (LLLLVAR).
    LLLL,
    /// Five length digits.
    LLLLL,
    /// Six length digits (Postilion DE 127).
    LLLLLL,
}

impl LengthKind {
    /// Number of decimal length digits (0 for fixed).
    pub fn digits(self) -> u8 {
        match self {
            LengthKind::Fixed => 0,
            LengthKind::L => 1,
            LengthKind::LL => 2,
            LengthKind::LLL => 3,
            LengthKind::LLLL => 4,
            LengthKind::LLLLL => 5,
            LengthKind::LLLLLL => 6,
        }
    }
}

/// How a length prefix is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthEncoding {
    /// ASCII decimal digits, one byte per digit (`LL` = 2 bytes).
    #[default]
    Ascii,
    /// EBCDIC decimal digits (`0xF0`–`0xF9`), one byte per digit.
    Ebcdic,
    /// Packed BCD, two digits per byte (`LL` = 1 byte, `LLL`/`LLLL` = 2 bytes).
    Bcd,
    /// Unsigned big-endian binary: 1 byte for `L`/`LL`, 2 bytes for `LLL`/`LLLL`.
    Binary,
}

/// How a field's content is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentEncoding {
    /// ASCII characters.
    #[default]
    Ascii,
    /// EBCDIC (cp037) characters.
    Ebcdic,
    /// Packed BCD digits, padded to whole bytes per the spec's `justify` and `pad`.
    Bcd,
    /// Raw bytes.
    Binary,
    /// Bytes written as hexadecimal ASCII text (two characters per byte).
    Hex,
}

/// Where the digits sit in a packed BCD field of odd length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Justify {
    /// Digits first, pad nibble last (`021` → `02 10`).
    Left,
    /// Pad nibble first, digits last (`021` → `00 21`).
    #[default]
    Right,
}

/// What the length (prefix value, fixed length, maximum) counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthUnit {
    /// Digits / nibbles (BCD fields; nibble-counted binary).
    Digits,
    /// Characters on the wire (text, hex text).
    Characters,
    /// Bytes of the value (binary; for hex text, the bytes the text stands for).
    Bytes,
}

/// How a field is masked in `Debug`, `Display`, logs and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    /// Shown as is.
    #[default]
    None,
    /// A PAN: first 6 and last 4 digits shown, the rest `*`.
    Pan,
    /// Track data: the PAN part masked as a PAN, everything after the separator `*`.
    Track,
    /// Secret (PIN block, keys): every character `*` (the value is wiped).
    Secret,
    /// A PAN with an 8-digit BIN: first 8 and last 4 digits shown (16 digits or more;
    /// shorter ones as [`Sensitivity::Pan`]).
    Pan8,
    /// BER-TLV EMV data (DE 55) as hex: tag 5A (PAN) masked PAN style, tags 57 and 9F6B
    /// (track 2 equivalent) track style, 56, 5F20, 9F1F, 9F20 and 99 (track 1, name,
    /// discretionary data, PIN data) wiped; other tags shown. Data that is not BER-TLV
    /// is wiped.
    Emv,
}

/// A positional subfield of a private field (for example `cup-pos` 60.1, 60.2, 60.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionalSubfield {
    /// Name, e.g. `transaction type`.
    pub name: String,
    /// Length in characters / digits of the field's text form.
    pub len: u16,
}

/// How a field divides into subfields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subfields {
    /// Consecutive fixed-length parts of the text form; the last may be cut short.
    Positional(Vec<PositionalSubfield>),
    /// BER-TLV objects (EMV data in DE 55); see [`crate::tlv`].
    Tlv,
}

/// How the tag of a tagged composite's subelement is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagEncoding {
    /// ASCII decimal digits (`42`); the key is the number.
    Digits,
    /// EBCDIC decimal digits; the key is the number.
    Ebcdic,
    /// Packed BCD digits; the key is the number.
    Bcd,
    /// ASCII characters (`AB`, at most 4); the key is the characters.
    Text,
    /// Big-endian binary (at most 4 bytes); the key is uppercase hex.
    Binary,
}

/// The tag of a tagged composite's subelements: its width in bytes and its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TagFormat {
    /// Bytes on the wire (1..=4; up to 9 for decimal digits).
    pub width: u8,
    /// How it is written.
    pub encoding: TagEncoding,
}

/// The length prefix of a tagged composite's subelements (after each tag).
///
/// Every subfield of the composite has this prefix (its own `length` and
/// `length_encoding` must be these); the prefix counts the value in the subfield's
/// length unit. For a tag the dialect does not define, it counts bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrefixFormat {
    /// How many length digits (`LL` …).
    pub length: LengthKind,
    /// How the digits are written.
    #[serde(default)]
    pub encoding: LengthEncoding,
}

/// The bitmap of a bitmapped composite (DE 127 style): bit *k* set when subfield *k* is
/// present, numbered as in the message bitmap. There is no continuation bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BitmapFormat {
    /// Binary bytes or hex text.
    pub encoding: crate::bitmap::BitmapEncoding,
    /// 8 (64 subfields) or 16 (128 subfields) bytes of bitmap.
    pub bytes: u8,
}

/// What a tagged or BER-TLV composite does with a tag its table does not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownTags {
    /// Keep it byte-exact (decoded, re-encoded and shown as is).
    #[default]
    Keep,
    /// Reject the message.
    Reject,
}

/// The inner structure of a composite field or subfield. Subfields are keyed by their
/// number, bit or tag as text: `"1"`, `"25"`; DE 48 style tags as they are written
/// (`"42"`); BER-TLV tags in hex (`"9F26"`). A subfield is a [`FieldSpec`] like any
/// field and may itself be composite.
///
/// A composite's content (what its length prefix counts) is its subfields, each written
/// with its own length prefix:
/// - `positional`: subfields 1, 2, … in order; trailing ones may be absent (never one in
///   the middle); the content must end exactly at the end of a subfield.
/// - `tagged`: tag, length, value, in any order (written in ascending tag order).
/// - `tlv`: BER-TLV objects (the field's content must be binary).
/// - `bitmapped`: a bitmap of its own, then the present subfields in ascending order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Composite {
    /// Ordered subfields.
    Positional {
        /// Subfields by position (`"1"`, `"2"`…, no gaps).
        subfields: BTreeMap<String, FieldSpec>,
    },
    /// Tag + length + value subelements.
    Tagged {
        /// How tags are written.
        tag: TagFormat,
        /// The length prefix after each tag.
        length: PrefixFormat,
        /// What to do with tags the table does not define.
        #[serde(default)]
        unknown: UnknownTags,
        /// Subfields by tag.
        subfields: BTreeMap<String, FieldSpec>,
    },
    /// BER-TLV objects.
    Tlv {
        /// What to do with tags the table does not define.
        #[serde(default)]
        unknown: UnknownTags,
        /// Subfields by hex tag (`"5A"`); their `max` bounds the value's bytes and their
        /// `length` is not used (BER lengths).
        #[serde(default)]
        subfields: BTreeMap<String, FieldSpec>,
    },
    /// A bitmap of its own, then numbered subfields.
    Bitmapped {
        /// The bitmap.
        bitmap: BitmapFormat,
        /// Subfields by bit number (`"2"`…).
        subfields: BTreeMap<String, FieldSpec>,
    },
}

impl Composite {
    /// The subfield table.
    pub fn subfields(&self) -> &BTreeMap<String, FieldSpec> {
        match self {
            Composite::Positional { subfields }
            | Composite::Tagged { subfields, .. }
            | Composite::Tlv { subfields, .. }
            | Composite::Bitmapped { subfields, .. } => subfields,
        }
    }

    /// The kind as written in dialect files (`positional`, `tagged`, `tlv`, `bitmapped`).
    pub fn kind(&self) -> &'static str {
        match self {
            Composite::Positional { .. } => "positional",
            Composite::Tagged { .. } => "tagged",
            Composite::Tlv { .. } => "tlv",
            Composite::Bitmapped { .. } => "bitmapped",
        }
    }
}

/// The specification of one data element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// Human name, e.g. `Primary account number`.
    #[serde(default)]
    pub name: String,
    /// Content class.
    pub class: ContentClass,
    /// Fixed or how many length digits.
    pub length: LengthKind,
    /// The fixed length, or the maximum length of a variable field, in `unit`s.
    pub max: u32,
    /// How the length prefix is written (ignored for fixed fields).
    #[serde(default)]
    pub length_encoding: LengthEncoding,
    /// How the content is written.
    #[serde(default)]
    pub encoding: ContentEncoding,
    /// For BCD content of odd length: where the pad nibble goes.
    #[serde(default)]
    pub justify: Justify,
    /// The pad nibble for odd-length BCD (0 or 15 = `F`); decoding accepts either.
    #[serde(default)]
    pub pad: u8,
    /// What the length counts; `None` picks the natural unit of the encoding
    /// (digits for BCD, bytes for binary, characters for text and hex).
    #[serde(default)]
    pub unit: Option<LengthUnit>,
    /// Masking in logs and output.
    #[serde(default)]
    pub sensitive: Sensitivity,
    /// Optional subfield layout of the text form (read on demand, not validated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subfields: Option<Subfields>,
    /// Inner structure: the field is made of subfields, validated when decoding and
    /// addressed by path (`48.42.1`). See [`Composite`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composite: Option<Composite>,
}

/// Digits of a packed-BCD or hex value: `0`–`9`, `A`–`F`.
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

#[inline]
fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl FieldSpec {
    /// A new spec with ASCII content and ASCII length digits.
    pub fn new(name: &str, class: ContentClass, length: LengthKind, max: u32) -> Self {
        FieldSpec {
            name: name.to_string(),
            class,
            length,
            max,
            length_encoding: LengthEncoding::Ascii,
            encoding: if class == ContentClass::B {
                ContentEncoding::Binary
            } else {
                ContentEncoding::Ascii
            },
            justify: Justify::Right,
            pad: 0,
            unit: None,
            sensitive: Sensitivity::None,
            subfields: None,
            composite: None,
        }
    }

    /// Makes the field composite.
    pub fn composite(mut self, c: Composite) -> Self {
        self.composite = Some(c);
        self
    }

    /// Sets the content encoding.
    pub fn encoding(mut self, e: ContentEncoding) -> Self {
        self.encoding = e;
        self
    }

    /// Sets the length prefix encoding.
    pub fn length_encoding(mut self, e: LengthEncoding) -> Self {
        self.length_encoding = e;
        self
    }

    /// Sets BCD justification.
    pub fn justify(mut self, j: Justify) -> Self {
        self.justify = j;
        self
    }

    /// Sets what the length counts.
    pub fn unit(mut self, u: LengthUnit) -> Self {
        self.unit = Some(u);
        self
    }

    /// Sets masking.
    pub fn sensitive(mut self, s: Sensitivity) -> Self {
        self.sensitive = s;
        self
    }

    /// Sets the subfield layout.
    pub fn subfields(mut self, s: Subfields) -> Self {
        self.subfields = Some(s);
        self
    }

    /// The unit the length counts, resolving the default.
    #[inline]
    pub fn length_unit(&self) -> LengthUnit {
        match self.unit {
            Some(u) => u,
            None => match self.encoding {
                ContentEncoding::Bcd => LengthUnit::Digits,
                ContentEncoding::Binary => LengthUnit::Bytes,
                _ => LengthUnit::Characters,
            },
        }
    }

    /// Whether the field has a fixed length.
    #[inline]
    pub fn is_fixed(&self) -> bool {
        self.length == LengthKind::Fixed
    }

    /// Number of bytes in the length prefix (0 for fixed fields).
    #[inline]
    pub fn prefix_len(&self) -> usize {
        let d = self.length.digits() as usize;
        if d == 0 {
            return 0;
        }
        match self.length_encoding {
            LengthEncoding::Ascii | LengthEncoding::Ebcdic => d,
            LengthEncoding::Bcd => d.div_ceil(2),
            LengthEncoding::Binary => {
                if d <= 2 {
                    1
                } else {
                    2
                }
            }
        }
    }

    /// Largest length the prefix can express.
    pub fn prefix_capacity(&self) -> usize {
        match (self.length_encoding, self.length.digits()) {
            (_, 0) => self.max as usize,
            (LengthEncoding::Binary, d) if d <= 2 => 255,
            (LengthEncoding::Binary, _) => 65535,
            (_, d) => 10usize.pow(d as u32) - 1,
        }
    }

    /// Number of content bytes on the wire for a value of `units` length units.
    #[inline]
    pub fn wire_len(&self, units: usize) -> usize {
        match (self.encoding, self.length_unit()) {
            (ContentEncoding::Bcd, LengthUnit::Bytes) => units,
            (ContentEncoding::Bcd, _) => units.div_ceil(2),
            (ContentEncoding::Binary, LengthUnit::Digits) => units.div_ceil(2),
            (ContentEncoding::Binary, _) => units,
            (ContentEncoding::Hex, LengthUnit::Bytes) => units * 2,
            (ContentEncoding::Hex, _) => units,
            (ContentEncoding::Ascii | ContentEncoding::Ebcdic, _) => units,
        }
    }

    /// Number of nibbles (BCD digits or hex digits) a value of `units` holds, for packed
    /// content; for text it is the number of characters.
    #[inline]
    fn nibbles(&self, units: usize) -> usize {
        match (self.encoding, self.length_unit()) {
            (ContentEncoding::Bcd | ContentEncoding::Binary, LengthUnit::Digits) => units,
            (ContentEncoding::Bcd | ContentEncoding::Binary, _) => units * 2,
            _ => units,
        }
    }

    /// Reads the length prefix at `buf[0..]`; `offset` is its position in the message.
    #[inline]
    pub(crate) fn read_prefix(&self, field: u8, buf: &[u8], offset: usize) -> Result<usize> {
        let plen = self.prefix_len();
        let Some(p) = buf.get(..plen) else {
            return Err(CodecError::field(
                field,
                offset,
                ErrorKind::Truncated {
                    needed: plen - buf.len(),
                },
            ));
        };
        let bad = || CodecError::field(field, offset, ErrorKind::BadLength);
        let value = match self.length_encoding {
            LengthEncoding::Ascii => {
                let mut v = 0usize;
                for &c in p {
                    if !c.is_ascii_digit() {
                        return Err(bad());
                    }
                    v = v * 10 + (c - b'0') as usize;
                }
                v
            }
            LengthEncoding::Ebcdic => {
                let mut v = 0usize;
                for &c in p {
                    if !(0xF0..=0xF9).contains(&c) {
                        return Err(bad());
                    }
                    v = v * 10 + (c - 0xF0) as usize;
                }
                v
            }
            LengthEncoding::Bcd => {
                let mut v = 0usize;
                for &c in p {
                    let (hi, lo) = (c >> 4, c & 0x0F);
                    if hi > 9 || lo > 9 {
                        return Err(bad());
                    }
                    v = v * 100 + (hi * 10 + lo) as usize;
                }
                v
            }
            LengthEncoding::Binary => p.iter().fold(0usize, |v, &c| (v << 8) | c as usize),
        };
        if value > self.max as usize {
            return Err(CodecError::field(
                field,
                offset,
                ErrorKind::TooLong {
                    max: self.max as usize,
                    found: value,
                },
            ));
        }
        Ok(value)
    }

    /// Checks the encoded content of a field; `offset` is where the content starts.
    #[inline]
    pub(crate) fn validate_wire(
        &self,
        field: u8,
        content: &[u8],
        units: usize,
        offset: usize,
    ) -> Result<()> {
        let class = self.class;
        let charset = |i: usize, byte: u8| {
            CodecError::field(
                field,
                offset + i,
                ErrorKind::Charset {
                    byte,
                    class: class.as_str(),
                },
            )
        };
        match self.encoding {
            ContentEncoding::Ascii => {
                if class != ContentClass::B {
                    for (i, &c) in content.iter().enumerate() {
                        if !class.allows(i, c) {
                            return Err(charset(i, c));
                        }
                    }
                }
            }
            ContentEncoding::Ebcdic => {
                if class != ContentClass::B {
                    for (i, &c) in content.iter().enumerate() {
                        if !class.allows(i, ebcdic::to_ascii(c)) {
                            return Err(charset(i, c));
                        }
                    }
                }
            }
            ContentEncoding::Hex => {
                if self.length_unit() != LengthUnit::Bytes && units % 2 == 1 {
                    return Err(CodecError::field(field, offset, ErrorKind::BadHex));
                }
                for (i, &c) in content.iter().enumerate() {
                    if hex_val(c).is_none() {
                        return Err(charset(i, c));
                    }
                }
            }
            ContentEncoding::Bcd => {
                let nibbles = self.nibbles(units);
                let odd = nibbles % 2 == 1;
                let z = class == ContentClass::Z;
                for (i, &c) in content.iter().enumerate() {
                    for (k, nib) in [(0usize, c >> 4), (1, c & 0x0F)] {
                        let is_pad = odd
                            && match self.justify {
                                Justify::Left => i == content.len() - 1 && k == 1,
                                Justify::Right => i == 0 && k == 0,
                            };
                        let ok = if is_pad {
                            nib == 0 || nib == 0x0F
                        } else {
                            nib <= 9 || (z && nib == 0x0D)
                        };
                        if !ok {
                            return Err(CodecError::field(
                                field,
                                offset + i,
                                ErrorKind::BadNibble { nibble: nib },
                            ));
                        }
                    }
                }
            }
            ContentEncoding::Binary => {
                // Nibble-counted binary of odd length: the pad nibble is not checked.
            }
        }
        Ok(())
    }

    /// The text form of encoded content: characters for text, digits for BCD,
    /// uppercase hex for binary.
    pub fn wire_to_text<'a>(&self, content: &'a [u8], units: usize) -> Cow<'a, str> {
        match self.encoding {
            ContentEncoding::Ascii => match std::str::from_utf8(content) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => Cow::Owned(content.iter().map(|&b| b as char).collect()),
            },
            ContentEncoding::Ebcdic => Cow::Owned(
                content
                    .iter()
                    .map(|&b| ebcdic::to_ascii(b) as char)
                    .collect(),
            ),
            ContentEncoding::Hex => {
                if content.iter().any(|c| c.is_ascii_lowercase()) {
                    Cow::Owned(
                        content
                            .iter()
                            .map(|c| c.to_ascii_uppercase() as char)
                            .collect(),
                    )
                } else {
                    match std::str::from_utf8(content) {
                        Ok(s) => Cow::Borrowed(s),
                        Err(_) => Cow::Owned(String::new()),
                    }
                }
            }
            ContentEncoding::Bcd | ContentEncoding::Binary => {
                let nibbles = self.nibbles(units);
                let skip_first = nibbles % 2 == 1 && self.justify == Justify::Right;
                let mut s = String::with_capacity(nibbles);
                let mut idx = 0usize;
                'outer: for &b in content {
                    for nib in [b >> 4, b & 0x0F] {
                        if idx == 0 && skip_first {
                            idx += 1;
                            continue;
                        }
                        if s.len() == nibbles {
                            break 'outer;
                        }
                        s.push(HEX_UPPER[nib as usize] as char);
                        idx += 1;
                    }
                }
                Cow::Owned(s)
            }
        }
    }

    /// Encodes a value given in text form (as [`FieldSpec::wire_to_text`] gives it) into
    /// wire content appended to `out`; returns the length in units for the prefix.
    ///
    /// Checks the class charset, fixed length and maximum. `field` is for errors.
    pub fn text_to_wire(&self, field: u8, text: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let err = |kind| CodecError::field(field, 0, kind);
        let unit = self.length_unit();
        // Units of the value, from the text length.
        let units = match (self.encoding, unit) {
            (ContentEncoding::Bcd | ContentEncoding::Binary, LengthUnit::Digits) => text.len(),
            (ContentEncoding::Binary, _) => {
                if text.len() % 2 == 1 {
                    return Err(err(ErrorKind::BadHex));
                }
                text.len() / 2
            }
            (ContentEncoding::Bcd, _) => text.len().div_ceil(2),
            (ContentEncoding::Hex, LengthUnit::Bytes) => {
                if text.len() % 2 == 1 {
                    return Err(err(ErrorKind::BadHex));
                }
                text.len() / 2
            }
            (ContentEncoding::Hex, _) => {
                if text.len() % 2 == 1 && self.class == ContentClass::B {
                    return Err(err(ErrorKind::BadHex));
                }
                text.len()
            }
            _ => text.len(),
        };
        self.check_units(field, units)?;
        let start = out.len();
        match self.encoding {
            ContentEncoding::Ascii | ContentEncoding::Ebcdic => {
                let ebc = self.encoding == ContentEncoding::Ebcdic;
                for (i, &c) in text.iter().enumerate() {
                    if self.class != ContentClass::B && !self.class.allows(i, c) {
                        out.truncate(start);
                        return Err(CodecError::field(
                            field,
                            i,
                            ErrorKind::Charset {
                                byte: c,
                                class: self.class.as_str(),
                            },
                        ));
                    }
                    out.push(if ebc { ebcdic::from_ascii(c) } else { c });
                }
            }
            ContentEncoding::Hex => {
                for (i, &c) in text.iter().enumerate() {
                    if hex_val(c).is_none() {
                        out.truncate(start);
                        return Err(CodecError::field(field, i, ErrorKind::BadHex));
                    }
                    out.push(c.to_ascii_uppercase());
                }
            }
            ContentEncoding::Bcd | ContentEncoding::Binary => {
                let bcd = self.encoding == ContentEncoding::Bcd;
                let z = self.class == ContentClass::Z;
                let nib_of = |i: usize, c: u8| -> Result<u8> {
                    let v = if bcd {
                        match c {
                            b'0'..=b'9' => Some(c - b'0'),
                            b'=' | b'D' | b'd' if z => Some(0x0D),
                            _ => None,
                        }
                    } else {
                        hex_val(c)
                    };
                    v.ok_or_else(|| {
                        CodecError::field(
                            field,
                            i,
                            if bcd {
                                ErrorKind::Charset {
                                    byte: c,
                                    class: self.class.as_str(),
                                }
                            } else {
                                ErrorKind::BadHex
                            },
                        )
                    })
                };
                let odd = text.len() % 2 == 1;
                let pad = self.pad & 0x0F;
                let mut hi: Option<u8> = None;
                let mut push = |n: u8, out: &mut Vec<u8>| match hi.take() {
                    Some(h) => out.push((h << 4) | n),
                    None => hi = Some(n),
                };
                if odd && self.justify == Justify::Right {
                    push(pad, out);
                }
                for (i, &c) in text.iter().enumerate() {
                    match nib_of(i, c) {
                        Ok(n) => push(n, out),
                        Err(e) => {
                            out.truncate(start);
                            return Err(e);
                        }
                    }
                }
                if odd && self.justify == Justify::Left {
                    push(pad, out);
                }
            }
        }
        Ok(units)
    }

    /// Checks a value length (in units) against the fixed length or maximum.
    pub(crate) fn check_units(&self, field: u8, units: usize) -> Result<()> {
        let err = |kind| CodecError::field(field, 0, kind);
        if self.is_fixed() {
            if units != self.max as usize {
                return Err(err(ErrorKind::WrongLength {
                    expected: self.max as usize,
                    found: units,
                }));
            }
        } else if units > self.max as usize {
            return Err(err(ErrorKind::TooLong {
                max: self.max as usize,
                found: units,
            }));
        }
        Ok(())
    }

    /// Raw bytes of a binary value: the content itself for `Binary`, the decoded bytes for
    /// `Hex`; for other encodings the content as is.
    pub fn wire_to_bytes<'a>(&self, content: &'a [u8]) -> Cow<'a, [u8]> {
        match self.encoding {
            ContentEncoding::Hex => Cow::Owned(
                content
                    .chunks(2)
                    .map(|p| {
                        let h = p.first().copied().and_then(hex_val).unwrap_or(0);
                        let l = p.get(1).copied().and_then(hex_val).unwrap_or(0);
                        (h << 4) | l
                    })
                    .collect(),
            ),
            _ => Cow::Borrowed(content),
        }
    }

    /// Checks that the spec is coherent (prefix can hold `max`, class fits encoding…).
    pub fn validate(&self, field: u8) -> Result<()> {
        let bad = |what: String| CodecError::field(field, 0, ErrorKind::BadDialect { what });
        if self.max == 0 {
            return Err(bad(format!("field {field}: max length 0")));
        }
        if !self.is_fixed() && (self.max as usize) > self.prefix_capacity() {
            return Err(bad(format!(
                "field {field}: max {} does not fit a {:?} prefix in {:?}",
                self.max, self.length, self.length_encoding
            )));
        }
        if self.is_fixed() && self.wire_len(self.max as usize) > u16::MAX as usize {
            return Err(bad(format!("field {field}: max too large")));
        }
        if self.pad > 0x0F {
            return Err(bad(format!("field {field}: pad must be a nibble (0..=15)")));
        }
        match (self.class, self.encoding) {
            (
                ContentClass::XN,
                ContentEncoding::Bcd | ContentEncoding::Binary | ContentEncoding::Hex,
            ) => Err(bad(format!("field {field}: x+n needs a text encoding"))),
            (ContentClass::B, ContentEncoding::Bcd) => Err(bad(format!(
                "field {field}: class b cannot be BCD (use binary)"
            ))),
            (
                ContentClass::A | ContentClass::An | ContentClass::Ans | ContentClass::Ns,
                ContentEncoding::Bcd | ContentEncoding::Binary | ContentEncoding::Hex,
            ) => Err(bad(format!(
                "field {field}: class {} needs a text encoding",
                self.class.as_str()
            ))),
            _ => Ok(()),
        }
    }
}
