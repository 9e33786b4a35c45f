//! The fuzz harnesses of isoswitch as plain functions on stable Rust.
//!
//! Every cargo-fuzz target in `fuzz/fuzz_targets/` is a one-line wrapper around one
//! function here (listed in [`TARGETS`]); the same functions replay every committed
//! corpus input and every past crash in `cargo test --workspace`
//! (`tests/replay.rs`), and [`run_dir`] measures how much of a corpus reaches each
//! target's main property (`fuzz_reach`, printed by `fuzz/run_all.sh`). The seed
//! corpora are made by [`corpus::seeds`] (`cargo run -p isoswitch-fuzzing --example
//! make_corpus`).
//!
//! Each harness panics when a property fails and returns whether the input reached
//! the target's main property (decoded and round-tripped, got past the MAC check,
//! replayed records...), as its rustdoc says.
//!
//! Module map:
//! - [`codec`]: dialect decoders, JSON round trips, nested dialects, TLV, dialect files;
//! - [`net`]: framing, the admin request parser;
//! - [`session`]: host and terminal sessions, PIN blocks, TR-31;
//! - [`reversal`]: journal and store records, shared journals, store replay, engine recovery, counters
//!   files, the reversal handler, settlement;
//! - [`hsm`]: Thales commands and responses;
//! - [`apps`]: the CLI's input, the simulators' configuration files;
//! - [`corpus`]: the seed corpora.

#![warn(missing_docs)]

pub mod apps;
pub mod codec;
pub mod corpus;
pub mod hsm;
pub mod net;
pub mod reversal;
pub mod session;

use std::path::Path;

/// A harness: panics on a broken property, returns whether its main property was
/// reached.
pub type Harness = fn(&[u8]) -> bool;

/// A fuzz target: its name (the file in `fuzz/fuzz_targets/`, the corpus directory
/// `fuzz/corpus/<name>/`) and its harness.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// Its harness.
    pub run: Harness,
}

fn decode_cup_pos(d: &[u8]) -> bool {
    codec::decode_any("cup-pos", d)
}
fn decode_iso87_ascii(d: &[u8]) -> bool {
    codec::decode_any("iso87-ascii", d)
}
fn decode_iso87_binary(d: &[u8]) -> bool {
    codec::decode_any("iso87-binary", d)
}
fn decode_iso87_ebcdic(d: &[u8]) -> bool {
    codec::decode_any("iso87-ebcdic", d)
}
fn decode_iso93_ascii(d: &[u8]) -> bool {
    codec::decode_any("iso93-ascii", d)
}

macro_rules! targets {
    ($($name:ident => $f:path),* $(,)?) => {
        /// Every fuzz target, by name.
        pub const TARGETS: &[Target] = &[$(Target { name: stringify!($name), run: $f }),*];
    };
}

targets! {
    admin_request => net::admin_request,
    cli_input => apps::cli_input,
    config_files => apps::config_files,
    counters_file => reversal::counters_file,
    decode_cup_pos => decode_cup_pos,
    decode_iso87_ascii => decode_iso87_ascii,
    decode_iso87_binary => decode_iso87_binary,
    decode_iso87_composite => codec::composite,
    decode_iso87_ebcdic => decode_iso87_ebcdic,
    decode_iso93_ascii => decode_iso93_ascii,
    dialect_json => codec::dialect_file,
    engine_recovery => reversal::engine_recovery,
    framing => net::framing,
    host_request => session::host_request,
    journal_records => reversal::journal_records,
    pin_block => session::pin_block,
    reversal_handler => reversal::reversal_handler,
    roundtrip => codec::roundtrip_any,
    roundtrip_nested => codec::nested,
    settlement => reversal::settlement,
    shared_journal => reversal::shared_journal,
    store_records => reversal::store_records,
    store_replay => reversal::store_replay,
    terminal_answer => session::terminal_answer,
    thales_command => hsm::thales_command,
    thales_response => hsm::thales_response,
    tlv => codec::tlv_objects,
    tr31_block => session::tr31_block,
}

/// For the structured modes: `true` one time in `n` (the rarer branch), `false` when
/// the input is used up, so that a short or truncated input takes the common path
/// (`Unstructured::ratio` is `true` then).
///
/// # Errors
/// None in practice (`Unstructured::int_in_range` does not fail on a short input).
pub fn one_in(u: &mut arbitrary::Unstructured<'_>, n: u8) -> arbitrary::Result<bool> {
    Ok(u.int_in_range(1..=n)? == n)
}

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// How many inputs of a directory were run and how many reached the main property.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    /// Inputs run.
    pub inputs: usize,
    /// Inputs that reached the target's main property.
    pub reached: usize,
}

impl Reach {
    /// The reached share in percent (0 for no inputs).
    pub fn percent(&self) -> f64 {
        if self.inputs == 0 {
            0.0
        } else {
            100.0 * self.reached as f64 / self.inputs as f64
        }
    }
}

/// The files of `dir` in name order (none when it does not exist).
///
/// # Errors
/// I/O errors other than a missing directory.
pub fn inputs(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in rd {
        let p = e?.path();
        if p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Runs every file of `dir` through `target` (panicking as the harness does).
///
/// # Errors
/// I/O errors reading the directory or a file.
pub fn run_dir(target: &Target, dir: &Path) -> std::io::Result<Reach> {
    let mut r = Reach::default();
    for p in inputs(dir)? {
        let data = std::fs::read(&p)?;
        r.inputs += 1;
        if (target.run)(&data) {
            r.reached += 1;
        }
    }
    Ok(r)
}
