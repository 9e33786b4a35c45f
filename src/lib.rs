//! # isoswitch
//!
//! An ISO 8583 switch library with a reversal engine. This facade re-exports the member
//! crates; the `isoswitch` binary is the command-line tool.
//!
//! ## Module map
//! - [`codec`] — `isoswitch-codec`: zero-copy ISO 8583 (MTI, bitmaps, field specs,
//!   dialects, typed values, BER-TLV).
//! - [`session`] — `isoswitch-session`: sans-IO terminal and host sessions (sign-on,
//!   working keys, MACed messages, key change, sign-off), payment cryptography, counters.

pub use isoswitch_codec as codec;
pub use isoswitch_session as session;
