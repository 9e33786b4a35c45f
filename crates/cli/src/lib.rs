//! The `isoswitch` command-line tool's command code, as a library so that the fuzz
//! harnesses (`isoswitch-fuzzing`) reach the same input parsing as the binary.
//!
//! Module map:
//! - [`cli`]: argument helpers ([`cli::args`]: hex, keys, PANs) and the key-management
//!   commands ([`cli::pinblock`], [`cli::dukpt`], [`cli::tr31`]);
//! - [`cli_codec`]: the codec commands (`decode`, `encode`, `dialects`) over hex, raw
//!   and JSON input.
//!
//! `src/main.rs` is the binary: argument parsing and printing.

pub mod cli;
pub mod cli_codec;
