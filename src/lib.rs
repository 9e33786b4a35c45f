//! # isoswitch
//!
//! An ISO 8583 switch library with a reversal engine. This facade re-exports the member
//! crates. The `isoswitch` command-line tool (`crates/cli`) and the simulators
//! (`simulators/`) are workspace members of their own, so depending on this crate compiles
//! none of their dependencies (clap, indicatif, hdrhistogram, tracing-subscriber, …).
//!
//! ## Module map
//! - [`codec`] — `isoswitch-codec`: zero-copy ISO 8583 (MTI, bitmaps, field specs,
//!   dialects, typed values, BER-TLV).
//! - [`session`] — `isoswitch-session`: sans-IO terminal and host sessions (sign-on,
//!   working keys, MACed messages, key change, sign-off), payment cryptography, counters.
//! - [`net`] — `isoswitch-net`: tokio framing codecs (len2, len4, ascii4, cup-pos TPDU),
//!   a multiplexing client with per-request timeouts, a bounded concurrent server.
//! - [`reversal`] — `isoswitch-reversal`: durable automatic reversals (write-ahead journal
//!   with group commit, sans-IO engine, tokio driver), idempotent host handler, settlement.
//! - [`hsm`] — `isoswitch-hsm`: the `SecurityModule` trait (keys as handles, never in
//!   clear), `SoftHsm` (software, local master key from a file), and a pipelining client
//!   and a server for a Thales payShield host command subset (`hsm_sim`).
//!
//! Data flows: bytes from [`net`] framing → [`codec`] view/message → [`session`] checks
//! the MAC and keys → the application; and back the same way.

pub use isoswitch_codec as codec;
pub use isoswitch_hsm as hsm;
pub use isoswitch_net as net;
pub use isoswitch_reversal as reversal;
pub use isoswitch_session as session;
pub use isoswitch_switch as switch;
