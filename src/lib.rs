//! # isoswitch
//!
//! An ISO 8583 switch library with a reversal engine. This facade re-exports the member
//! crates; the `isoswitch` binary is the command-line tool.
//!
//! ## Module map
//! - [`codec`] — `isoswitch-codec`: zero-copy ISO 8583 (MTI, bitmaps, field specs,
//!   dialects, typed values, BER-TLV).

pub use isoswitch_codec as codec;
