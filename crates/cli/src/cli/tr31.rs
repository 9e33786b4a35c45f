//! `isoswitch tr31 wrap|unwrap`: TR-31 / ANSI X9.143 key blocks.

use clap::Subcommand;
use isoswitch::session::crypto::tr31::{self, Algorithm, Header, Version};
use isoswitch::session::crypto::Key;
use isoswitch::session::SessionError;

use super::args::{key_opt, upper_hex};

/// `isoswitch tr31` subcommands.
#[derive(Subcommand)]
pub enum Tr31Command {
    /// Wrap --key under --kbpk with --header; prints the key block.
    Wrap {
        /// The key block protection key in hex (DES/TDES for versions A, B, C; AES for D).
        #[arg(long)]
        kbpk: String,
        /// The header, e.g. B0000P0TE00E0000 (the length digits are filled in; a
        /// padding block is added when needed).
        #[arg(long)]
        header: String,
        /// The key to wrap, in hex (its algorithm must match the header's).
        #[arg(long)]
        key: String,
    },
    /// Unwrap --block under --kbpk; prints the key, then the header's fields.
    Unwrap {
        /// The key block protection key in hex.
        #[arg(long)]
        kbpk: String,
        /// The key block.
        #[arg(long)]
        block: String,
    },
}

/// Runs `isoswitch tr31 …`; returns the output (one or more lines, no final newline).
pub fn run(c: &Tr31Command) -> Result<String, String> {
    match c {
        Tr31Command::Wrap { kbpk, header, key } => wrap(kbpk, header, key),
        Tr31Command::Unwrap { kbpk, block } => unwrap(kbpk, block),
    }
}

fn kbpk_arg(version: Version, hex: &str) -> Result<Key, String> {
    match version {
        Version::D => key_opt("--kbpk", "version D (AES)", hex, &[16, 24, 32], Key::aes),
        Version::B => key_opt("--kbpk", "version B (TDES)", hex, &[16, 24], Key::tdes),
        Version::A | Version::C => key_opt(
            "--kbpk",
            "versions A and C (DES/TDES)",
            hex,
            &[8, 16, 24],
            Key::des_or_tdes,
        ),
    }
}

fn block_error(opt: &str, e: SessionError) -> String {
    match e {
        SessionError::KeyBlock(k) => format!("{opt}: {k}"),
        other => format!("{opt}: {other}"),
    }
}

fn wrap(kbpk: &str, header: &str, key: &str) -> Result<String, String> {
    let h = Header::parse_template(header).map_err(|e| block_error("--header", e))?;
    let kbpk = kbpk_arg(h.version, kbpk)?;
    let key = match h.algorithm {
        Algorithm::Aes => key_opt("--key", "an AES key block", key, &[16, 24, 32], Key::aes)?,
        Algorithm::Tdes | Algorithm::Des => key_opt(
            "--key",
            "a DES/TDES key block",
            key,
            &[8, 16, 24],
            Key::des_or_tdes,
        )?,
        other => {
            return Err(format!(
                "--header: algorithm {} keys are not supported (A, D or T)",
                other.as_char()
            ))
        }
    };
    tr31::wrap(&kbpk, &h, &key).map_err(|e| block_error("--header", e))
}

fn unwrap(kbpk: &str, block: &str) -> Result<String, String> {
    let parsed = tr31::KeyBlock::parse(block).map_err(|e| block_error("--block", e))?;
    let kbpk = kbpk_arg(parsed.header.version, kbpk)?;
    let u = parsed
        .unwrap(&kbpk)
        .map_err(|e| block_error("--block", e))?;
    let h = u.header().clone();
    let key = u.into_key_unchecked();
    let kcv = key
        .kcv()
        .leading(3)
        .map(upper_hex)
        .map_err(|e| e.to_string())?;
    let mut out = upper_hex(&key.expose_secret());
    let line = |out: &mut String, name: &str, value: &str| {
        out.push('\n');
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
    };
    line(&mut out, "version", &h.version.as_char().to_string());
    line(&mut out, "length", &block.len().to_string());
    line(&mut out, "key usage", h.key_usage.as_str());
    line(&mut out, "algorithm", &h.algorithm.as_char().to_string());
    line(
        &mut out,
        "mode of use",
        &h.mode_of_use.as_char().to_string(),
    );
    line(
        &mut out,
        "key version",
        &String::from_utf8_lossy(&h.key_version),
    );
    line(
        &mut out,
        "exportability",
        &h.exportability.as_char().to_string(),
    );
    line(
        &mut out,
        "optional blocks",
        &h.optional_blocks.len().to_string(),
    );
    for b in &h.optional_blocks {
        line(&mut out, &format!("optional block {}", b.id()), b.data());
    }
    line(&mut out, "key check value", &kcv);
    Ok(out)
}
