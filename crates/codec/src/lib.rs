//! # isoswitch-codec
//!
//! Zero-copy ISO 8583: MTI, bitmaps, every field type, length prefix and encoding
//! (ASCII, BCD, binary, EBCDIC), dialects as data, typed values, BER-TLV for DE 55.
//!
//! ## Module map
//! - [`spec`] — one field's specification ([`FieldSpec`]): class, length kind and encoding,
//!   content encoding, unit; the per-field wire codec.
//! - [`dialect`] — [`Dialect`]: a table of field specs plus MTI/bitmap encodings, echo
//!   fields and MAC layout; JSON/TOML loading. [`dialects`] holds the built-in ones.
//! - [`mti`], [`bitmap`] — the message type indicator and the bitmaps.
//! - [`view`] — [`MessageView`]: decoding into offsets into the caller's buffer, with no
//!   heap allocation; [`field`] — [`FieldRef`], one field with typed accessors
//!   (amounts as `rust_decimal`, dates with `chrono`).
//! - [`message`] — [`Message`]: the owned message for building, editing and encoding into
//!   `BytesMut`; decoded from `Bytes` it shares the buffer.
//! - [`composite`] — composite fields (positional, tagged, BER-TLV, bitmapped subfields,
//!   nested): validation, walking by path ([`MessageView::get_path`]), editing
//!   ([`Message::set_path`]).
//! - [`path`] — [`Path`]: a field or subfield path (`48.42.1`) parsed once, for reading
//!   many messages by it ([`MessageView::at`], [`Message::at`]).
//! - `plan` (private) — `Message::set`'s per-field plan: the text checked and written in
//!   wire form eight bytes at a time.
//! - [`tlv`] — BER-TLV parser and builder (EMV data in DE 55).
//! - [`random`] — random composite dialects and messages from a byte source (property
//!   tests, fuzzing).
//! - [`describe`] — a decoded message as a table for people (MTI meaning, bitmaps,
//!   amounts, TLV tags, indented subfields).
//! - [`json`] — the JSON form used by the CLI; [`mask`] — masking of PAN, tracks, secrets.
//! - [`ebcdic`], [`currency`], [`error`] — cp037 tables, ISO 4217 exponents, [`CodecError`].
//!
//! Data flows: bytes → [`MessageView::decode`] (validate + index) → [`FieldRef`] (typed on
//! demand); or `Bytes` → [`Message::decode`] → edit → [`Message::encode`] → `BytesMut`.
//!
//! ```
//! use isoswitch_codec::{Dialect, Message, MessageView, Mti};
//! let d = Dialect::builtin("iso87-binary").unwrap();
//! let mut m = Message::new(&d, "0200".parse().unwrap());
//! m.set(3, "000000").unwrap().set(4, "000000001000").unwrap().set(11, "000123").unwrap();
//! let bytes = m.to_bytes().unwrap();
//! let v = MessageView::decode(&d, &bytes).unwrap();
//! assert_eq!(v.mti(), "0200".parse::<Mti>().unwrap());
//! assert_eq!(v.raw(11), Some(&b"000123"[..]));
//! assert_eq!(v.field(4).unwrap().amount(2).unwrap().to_string(), "10.00");
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bitmap;
pub mod composite;
pub mod currency;
pub mod describe;
pub mod dialect;
pub mod dialects;
pub mod ebcdic;
pub mod error;
pub mod field;
mod hot;
pub mod json;
pub mod mask;
pub mod message;
pub mod mti;
pub mod path;
mod plan;
pub mod random;
pub mod spec;
pub mod tlv;
pub mod view;

pub use bitmap::{Bitmap, BitmapEncoding};
pub use composite::SubfieldIter;
pub use dialect::{Dialect, DialectDef, MacLayout};
pub use error::{CodecError, ErrorKind, Location, Result};
pub use error::{FieldPath, KeyStyle};
pub use field::FieldRef;
pub use message::Message;
pub use mti::{MessageClass, MessageFunction, Mti, MtiEncoding};
pub use path::Path;
pub use spec::{
    BitmapFormat, Composite, ContentClass, ContentEncoding, FieldSpec, Justify, LengthEncoding,
    LengthKind, LengthUnit, PrefixFormat, Sensitivity, Subfields, TagEncoding, TagFormat,
    UnknownTags,
};
pub use view::MessageView;
