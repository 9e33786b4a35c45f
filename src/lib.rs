//! isoswitch facade
pub use isoswitch_codec as codec;
