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

    /// The field number, if the error is about a data element.
    pub fn field_number(&self) -> Option<u8> {
        match self.location {
            Location::Field(n) => Some(n),
            _ => None,
        }
    }
}

/// Result alias for the codec.
pub type Result<T, E = CodecError> = std::result::Result<T, E>;
