//! The codec's one error type: what went wrong, in which field, at which byte.

use std::fmt;

/// Which part of a message an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// The message type indicator.
    Mti,
    /// A bitmap (1 = primary, 2 = secondary, 3 = tertiary).
    Bitmap(u8),
    /// A data element, by number (2..=192).
    Field(u8),
    /// The message as a whole (for example trailing bytes).
    Message,
    /// A subfield of a composite field, by its full path (`127.25.3`); its first element
    /// is the data element's number.
    Path(FieldPath),
}

/// The deepest a path goes: the data element and five levels of subfields below it.
pub const MAX_DEPTH: usize = 6;

/// How one element of a [`FieldPath`] is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyStyle {
    /// A decimal number: a data element, a position, a bit, a numeric tag (`48.42.1`).
    #[default]
    Decimal,
    /// Uppercase hexadecimal bytes: BER-TLV tags and binary tags (`55.9F26`).
    Hex,
    /// The characters of a text tag, packed big-endian in the key (`63.AB`).
    Text,
}

impl KeyStyle {
    /// The text of `key` in this style.
    pub fn render(self, key: u32, out: &mut impl fmt::Write) -> fmt::Result {
        match self {
            KeyStyle::Decimal => write!(out, "{key}"),
            KeyStyle::Hex => {
                let b = key.to_be_bytes();
                let skip = b.iter().take_while(|&&x| x == 0).count().min(3);
                for x in &b[skip..] {
                    write!(out, "{x:02X}")?;
                }
                Ok(())
            }
            KeyStyle::Text => {
                for &x in key.to_be_bytes().iter().skip_while(|&&x| x == 0) {
                    out.write_char(x as char)?;
                }
                Ok(())
            }
        }
    }

    /// Parses one path element written in this style (`None` if it is not).
    pub fn parse(self, text: &[u8]) -> Option<u32> {
        match self {
            KeyStyle::Decimal => {
                if text.is_empty() || text.len() > 9 {
                    return None;
                }
                let mut v = 0u32;
                for &c in text {
                    if !c.is_ascii_digit() {
                        return None;
                    }
                    v = v * 10 + (c - b'0') as u32;
                }
                Some(v)
            }
            KeyStyle::Hex => {
                if text.is_empty() || text.len() > 8 {
                    return None;
                }
                let mut v = 0u32;
                for &c in text {
                    v = (v << 4) | (c as char).to_digit(16)?;
                }
                Some(v)
            }
            KeyStyle::Text => {
                if text.is_empty() || text.len() > 4 || text.contains(&0) {
                    return None;
                }
                Some(text.iter().fold(0u32, |v, &c| (v << 8) | c as u32))
            }
        }
    }
}

/// The path of a field or subfield: the data element's number, then the key of each
/// subfield below it (a position, a bit, a tag), at most [`MAX_DEPTH`] elements.
/// Written with dots: `48.42.1`, `127.25.3`, `55.9F26`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FieldPath {
    keys: [u32; MAX_DEPTH],
    styles: [KeyStyle; MAX_DEPTH],
    len: u8,
}

impl FieldPath {
    /// The path of data element `n`.
    #[inline]
    pub fn top(n: u8) -> FieldPath {
        let mut p = FieldPath::default();
        p.keys[0] = n as u32;
        p.len = 1;
        p
    }

    /// This path with `key` (written in `style`) appended; the same path when it is
    /// already [`MAX_DEPTH`] deep (dialects are never deeper).
    #[inline]
    pub fn child(mut self, key: u32, style: KeyStyle) -> FieldPath {
        if (self.len as usize) < MAX_DEPTH {
            self.keys[self.len as usize] = key;
            self.styles[self.len as usize] = style;
            self.len += 1;
        }
        self
    }

    /// Appends `key` (written in `style`) in place; nothing when the path is already
    /// [`MAX_DEPTH`] deep.
    #[inline(always)]
    pub(crate) fn push(&mut self, key: u32, style: KeyStyle) {
        if let (Some(k), Some(s)) = (
            self.keys.get_mut(self.len as usize),
            self.styles.get_mut(self.len as usize),
        ) {
            *k = key;
            *s = style;
            self.len += 1;
        }
    }

    /// The keys, from the data element's number down.
    pub fn keys(&self) -> &[u32] {
        &self.keys[..self.len as usize]
    }

    /// The number of elements (1 for a data element).
    pub fn depth(&self) -> usize {
        self.len as usize
    }

    /// The data element's number.
    pub fn field(&self) -> u8 {
        self.keys[0] as u8
    }

    /// The key of the last element.
    pub fn last(&self) -> u32 {
        self.keys[(self.len as usize).saturating_sub(1)]
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in 0..self.len as usize {
            if i > 0 {
                f.write_str(".")?;
            }
            self.styles[i].render(self.keys[i], f)?;
        }
        Ok(())
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({self})")
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Mti => f.write_str("MTI"),
            Location::Bitmap(1) => f.write_str("primary bitmap"),
            Location::Bitmap(2) => f.write_str("secondary bitmap"),
            Location::Bitmap(_) => f.write_str("tertiary bitmap"),
            Location::Field(n) => write!(f, "field {n}"),
            Location::Message => f.write_str("message"),
            Location::Path(p) => write!(f, "field {p}"),
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The input ended before the item was complete.
    #[error("truncated input: needed {needed} more byte(s)")]
    Truncated {
        /// How many more bytes the item needed.
        needed: usize,
    },
    /// A length prefix holds something other than digits of its encoding.
    #[error("bad length prefix")]
    BadLength,
    /// A length (prefix or value) is longer than the field allows.
    #[error("length {found} over the maximum {max}")]
    TooLong {
        /// The maximum the spec allows (in the spec's length unit).
        max: usize,
        /// What was found (in the spec's length unit).
        found: usize,
    },
    /// A value is shorter than a fixed-length field requires.
    #[error("length {found} where {expected} is required")]
    WrongLength {
        /// The fixed length of the field.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// A character is not allowed by the field's content class.
    #[error("byte 0x{byte:02X} not allowed in a field of class {class}")]
    Charset {
        /// The offending byte (as encoded on the wire, or as given).
        byte: u8,
        /// The content class, e.g. `n` or `an`.
        class: &'static str,
    },
    /// A BCD nibble outside what the field allows.
    #[error("bad BCD nibble 0x{nibble:X}")]
    BadNibble {
        /// The nibble value.
        nibble: u8,
    },
    /// A bit is set for a field the dialect does not define.
    #[error("field present in the bitmap but not defined by dialect {dialect}")]
    NotInDialect {
        /// The dialect's name.
        dialect: String,
    },
    /// Bytes remain after the last field of the bitmap.
    #[error("{count} trailing byte(s) after the last field")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
    /// The MTI is not four decimal digits.
    #[error("bad message type indicator")]
    BadMti,
    /// Hexadecimal text that is not hex (odd length or a non-hex digit).
    #[error("bad hexadecimal text")]
    BadHex,
    /// A field number outside 2..=192, or a bitmap field set by hand.
    #[error("not a data field number")]
    BadFieldNumber,
    /// A typed accessor was used on a field whose class does not fit it.
    #[error("value is not a valid {what}")]
    BadValue {
        /// What the value should have been, e.g. `amount` or `date`.
        what: &'static str,
    },
    /// A malformed BER-TLV object.
    #[error("bad BER-TLV: {what}")]
    Tlv {
        /// What is wrong with it.
        what: &'static str,
    },
    /// Content left over after the last subfield of a composite.
    #[error("{count} byte(s) of content left over after the last subfield")]
    Leftover {
        /// How many bytes were left.
        count: usize,
    },
    /// A positional composite with a subfield absent before a present one.
    #[error("subfield {missing} is absent, so the subfields after it cannot be encoded")]
    Gap {
        /// The first absent subfield.
        missing: u32,
    },
    /// A tag that occurs twice in a tagged composite.
    #[error("tag occurs more than once")]
    DuplicateTag,
    /// A tag that is not a tag of its encoding (e.g. not digits).
    #[error("bad tag")]
    BadTag,
    /// A path that does not name a field or subfield of the dialect.
    #[error("bad path: {what}")]
    BadPath {
        /// What is wrong with it.
        what: String,
    },
    /// A composite given where a plain value is needed, or the other way round.
    #[error("{what}")]
    WrongShape {
        /// What was expected.
        what: &'static str,
    },
    /// A value that is the masked form of a sensitive field (it holds `*`).
    #[error("the value is masked; decode with --reveal (or `reveal`) to get the real value")]
    Masked,
    /// Text that is not valid JSON, or JSON of the wrong shape.
    #[error("{what}")]
    BadJson {
        /// What is wrong, with the line and column for syntax errors.
        what: String,
    },
    /// An MTI whose version digit the dialect does not allow.
    #[error("MTI {mti} is not allowed by dialect {dialect} (its MTIs start with {allowed})")]
    MtiNotAllowed {
        /// The MTI.
        mti: String,
        /// The dialect's name.
        dialect: String,
        /// The version digits it allows.
        allowed: String,
    },
    /// A dialect description that does not make sense.
    #[error("bad dialect: {what}")]
    BadDialect {
        /// What is wrong with it.
        what: String,
    },
}

/// An error from decoding, encoding, validating or describing ISO 8583 data.
///
/// It always says where: the [`Location`] (field number, MTI, bitmap) and the byte offset
/// in the input where the bad item starts (for values being built, the offset is 0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CodecError {
    /// Which part of the message.
    pub location: Location,
    /// Byte offset in the decoded input at which the faulty item starts.
    pub offset: usize,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte offset {}: {}",
            self.location, self.offset, self.kind
        )
    }
}

impl CodecError {
    /// Builds an error.
    pub fn new(location: Location, offset: usize, kind: ErrorKind) -> Self {
        CodecError {
            location,
            offset,
            kind,
        }
    }

    /// An error about field `field` at `offset`.
    pub fn field(field: u8, offset: usize, kind: ErrorKind) -> Self {
        Self::new(Location::Field(field), offset, kind)
    }

    /// An error about the field or subfield at `path`.
    pub fn path(path: FieldPath, offset: usize, kind: ErrorKind) -> Self {
        if path.depth() <= 1 {
            return Self::field(path.field(), offset, kind);
        }
        Self::new(Location::Path(path), offset, kind)
    }

    /// The same error about `path` instead (offset and kind kept).
    pub(crate) fn at_path(mut self, path: FieldPath) -> Self {
        self.location = if path.depth() <= 1 {
            Location::Field(path.field())
        } else {
            Location::Path(path)
        };
        self
    }

    /// The data element's number, if the error is about a data element or one of its
    /// subfields.
    pub fn field_number(&self) -> Option<u8> {
        match self.location {
            Location::Field(n) => Some(n),
            Location::Path(p) => Some(p.field()),
            _ => None,
        }
    }

    /// The full path of the field or subfield the error is about, if any.
    pub fn field_path(&self) -> Option<FieldPath> {
        match self.location {
            Location::Field(n) => Some(FieldPath::top(n)),
            Location::Path(p) => Some(p),
            _ => None,
        }
    }
}

/// Result alias for the codec.
pub type Result<T, E = CodecError> = std::result::Result<T, E>;
