//! The `isoswitch` command-line tool.
//!
//! - `isoswitch decode (--dialect NAME | --dialect-file PATH) [--hex] [--framing F]
//!   [--json] [--reveal] [FILE]`
//! - `isoswitch encode (--dialect NAME | --dialect-file PATH) [--hex]`
//! - `isoswitch dialects [--export NAME]`
//! - `isoswitch mac --algorithm ALG --key HEX [--padding 1|2] --data HEX`
//! - `isoswitch kcv --key HEX [--aes]`
//! - `isoswitch pinblock --format 0|1|3|4 --pin PIN --pan PAN [--key HEX] [--no-luhn]`
//! - `isoswitch pinblock --decipher --format N --key HEX --block HEX [--pan PAN]`
//! - `isoswitch pinblock --translate --from-key HEX --to-key HEX --block HEX --pan PAN
//!   [--from-format N] [--to-format N]`
//! - `isoswitch dukpt --bdk HEX --ksn HEX [--variant pin|mac|mac-response|data|data-response]`
//! - `isoswitch dukpt --aes --bdk HEX --ksn HEX --key-type T --usage U`
//! - `isoswitch tr31 wrap --kbpk HEX --header TEXT --key HEX`
//! - `isoswitch tr31 unwrap --kbpk HEX --block TEXT`
//!
//! The crypto commands print their result alone on the first line (upper-case hex
//! where it is hex; `tr31 unwrap` adds the header's fields on later lines). Bad input
//! (hex, key length, PIN, PAN and its Luhn check digit, option combination, a usage
//! error) exits with status 1 and one line on stderr. The key-management commands live
//! in `cli/`.

use isoswitch_cli::cli::args::{hex_arg, key_arg, upper_hex};
use isoswitch_cli::{cli, cli_codec};

use clap::{Parser, Subcommand};
use isoswitch::session::crypto::{compute, Key, MacAlgorithm, Padding};
use std::io::{Read, Write};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "isoswitch", version, about = "ISO 8583 codec and switch tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode one message from FILE or stdin: a table for people (MTI meaning, bitmap,
    /// amounts, DE 55 tags, composite subfields indented), or its JSON form.
    Decode {
        /// Dialect name (see `isoswitch dialects`).
        #[arg(
            long,
            required_unless_present = "dialect_file",
            conflicts_with = "dialect_file"
        )]
        dialect: Option<String>,
        /// A dialect file (JSON or TOML; the format of `isoswitch dialects --export`).
        #[arg(long)]
        dialect_file: Option<std::path::PathBuf>,
        /// The input is hexadecimal text (whitespace ignored).
        #[arg(long)]
        hex: bool,
        /// Strip a frame header first: len2, len4 (binary length), ascii4 (4 digits) or
        /// cup-pos (2-byte length, TPDU and application header).
        #[arg(long)]
        framing: Option<String>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Show sensitive fields (PAN, tracks, PIN block, EMV data) unmasked.
        #[arg(long)]
        reveal: bool,
        /// Input file (default: stdin).
        file: Option<std::path::PathBuf>,
    },
    /// Encode the JSON form read from stdin (e.g. from `decode --json --reveal`); writes
    /// the message bytes to stdout.
    Encode {
        /// Dialect name (see `isoswitch dialects`).
        #[arg(
            long,
            required_unless_present = "dialect_file",
            conflicts_with = "dialect_file"
        )]
        dialect: Option<String>,
        /// A dialect file (JSON or TOML).
        #[arg(long)]
        dialect_file: Option<std::path::PathBuf>,
        /// Write uppercase hex and a newline instead of raw bytes.
        #[arg(long)]
        hex: bool,
    },
    /// List the built-in dialects, or print one as a dialect file.
    Dialects {
        /// Print the built-in dialect NAME as a JSON dialect file.
        #[arg(long)]
        export: Option<String>,
    },
    /// Compute a MAC over hex data; prints it as one line of uppercase hex.
    #[command(
        long_about = "Compute a MAC over hex data; prints it as one line of uppercase hex.\n\n\
Algorithms and keys:\n  \
cbc-des   ISO 9797-1 algorithm 1 (CBC-MAC, zero IV), DES, 8-byte key; 8-byte MAC\n  \
cbc-tdes  ISO 9797-1 algorithm 1 with TDES, 16- or 24-byte key; 8-byte MAC\n  \
x9.19     ISO 9797-1 algorithm 3 (ANSI X9.19 retail MAC), 16-byte key K1||K2; 8-byte MAC\n  \
aes-cmac  AES-CMAC (RFC 4493 / SP 800-38B), 16/24/32-byte key, no --padding; 16-byte MAC\n  \
cup-pos   China UnionPay POS MAC, 8- or 16-byte MAK; prints the 8 characters field 64 carries\n\n\
Padding (8-byte-block algorithms): 1 = zeros to a multiple of 8 (default), 2 = 0x80 then zeros."
    )]
    Mac {
        /// cbc-des, cbc-tdes, x9.19, aes-cmac or cup-pos.
        #[arg(long)]
        algorithm: String,
        /// The key in hex.
        #[arg(long)]
        key: String,
        /// ISO 9797-1 padding method, 1 (default) or 2; not for aes-cmac.
        #[arg(long)]
        padding: Option<String>,
        /// The data in hex.
        #[arg(long, allow_hyphen_values = true)]
        data: String,
    },
    /// Print a key check value: 3 bytes (6 uppercase hex digits).
    #[command(
        long_about = "Print a key check value: 3 bytes (6 uppercase hex digits).\n\n\
DES/TDES (8-, 16- or 24-byte key): the first 3 bytes of the key's encryption of eight \
zero bytes.\n\
AES (--aes; 16-, 24- or 32-byte key): the first 3 bytes of the AES-CMAC of sixteen zero \
bytes (the ANSI X9.24-1 CMAC method), not the older AES-ECB encryption of zeros."
    )]
    Kcv {
        /// The key in hex.
        #[arg(long)]
        key: String,
        /// The key is AES (X9.24 CMAC check value).
        #[arg(long)]
        aes: bool,
    },
    /// Build, decipher or translate an ISO 9564 PIN block.
    #[command(long_about = "Build, decipher or translate an ISO 9564 PIN block.\n\n\
Build (--format, --pin): prints the block as one line of uppercase hex. Formats 0, 1, 3: \
the clear 8-byte block, or with --key the block enciphered under that TDES key (16 or 24 \
bytes, ECB). Format 4 needs an AES --key (16, 24 or 32 bytes) and prints the enciphered \
16-byte block. Formats 1, 3 and 4 have random fill, so their output differs from run to \
run. The PAN is needed by formats 0, 3 and 4.\n\n\
--decipher --format N --key HEX --block HEX [--pan PAN]: prints the PIN.\n\n\
--translate --from-key HEX --to-key HEX --block HEX --pan PAN [--from-format N] \
[--to-format N]: prints the block re-enciphered under --to-key (formats default to 0; \
formats 1 and 4 do not translate into each other).\n\n\
A PAN whose Luhn check digit is wrong is refused unless --no-luhn.")]
    Pinblock(cli::pinblock::PinblockArgs),
    /// Derive a DUKPT working key from a BDK and a KSN; prints it in uppercase hex.
    #[command(
        long_about = "Derive a DUKPT working key from a BDK and a KSN; prints it in uppercase hex.\n\n\
TDES (ANSI X9.24-1:2009): --bdk of 16 bytes, --ksn of 10 bytes; --variant pin, mac (request), \
mac-response, data (request) or data-response; without --variant, the transaction key itself.\n\n\
AES (--aes, ANSI X9.24-3-2017): --bdk of 16, 24 or 32 bytes, --ksn of 12 bytes (initial key \
ID and counter), --key-type aes128|aes192|aes256|tdes2|tdes3 and --usage \
pin|mac-gen|mac-verify|mac|data-enc|data-dec|data|kek."
    )]
    Dukpt(cli::dukpt::DukptArgs),
    /// Wrap or unwrap a TR-31 / ANSI X9.143 key block (versions A, B, C, D).
    Tr31 {
        #[command(subcommand)]
        command: cli::tr31::Tr31Command,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                e.exit();
            }
            // One line on stderr, status 1, like every other bad input.
            let text = e.to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad command line");
            eprintln!("error: {}", first.trim_start_matches("error: "));
            return ExitCode::from(1);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn read_input(file: Option<&std::path::Path>) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    match file {
        Some(p) => {
            buf = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
        }
    }
    Ok(buf)
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Mac {
            algorithm,
            key,
            padding,
            data,
        } => {
            let line = mac_command(&algorithm, &key, padding.as_deref(), &data)?;
            print_line(&line)
        }
        Command::Kcv { key, aes } => print_line(&kcv_command(&key, aes)?),
        Command::Pinblock(args) => print_line(&cli::pinblock::run(&args)?),
        Command::Dukpt(args) => print_line(&cli::dukpt::run(&args)?),
        Command::Tr31 { command } => print_line(&cli::tr31::run(&command)?),
        Command::Dialects { export } => {
            print_out(cli_codec::dialects_command(export.as_deref())?.as_bytes())
        }
        Command::Decode {
            dialect,
            dialect_file,
            hex,
            framing,
            json,
            reveal,
            file,
        } => {
            let d = cli_codec::load_dialect(dialect.as_deref(), dialect_file.as_deref())?;
            let raw = read_input(file.as_deref())?;
            let out = cli_codec::decode_command(&d, &raw, hex, framing.as_deref(), json, reveal)?;
            print_out(out.as_bytes())
        }
        Command::Encode {
            dialect,
            dialect_file,
            hex,
        } => {
            let d = cli_codec::load_dialect(dialect.as_deref(), dialect_file.as_deref())?;
            let text = read_input(None)?;
            print_out(&cli_codec::encode_command(&d, &text, hex)?)
        }
    }
}

fn print_line(line: &str) -> Result<(), String> {
    let mut s = String::with_capacity(line.len() + 1);
    s.push_str(line);
    s.push('\n');
    print_out(s.as_bytes())
}

fn mac_command(
    algorithm: &str,
    key: &str,
    padding: Option<&str>,
    data: &str,
) -> Result<String, String> {
    let pad = match padding {
        None | Some("1") => Padding::Method1,
        Some("2") => Padding::Method2,
        Some(other) => return Err(format!("--padding must be 1 or 2, not {other:?}")),
    };
    let data = hex_arg("--data", data)?;
    let (alg, key) = match algorithm.to_ascii_lowercase().as_str() {
        "cbc-des" => (
            MacAlgorithm::CbcDes(pad),
            key_arg("cbc-des", key, &[8], Key::des)?,
        ),
        "cbc-tdes" => (
            MacAlgorithm::CbcTdes(pad),
            key_arg("cbc-tdes", key, &[16, 24], Key::tdes)?,
        ),
        "x9.19" | "x919" => (
            MacAlgorithm::X919(pad),
            key_arg("x9.19", key, &[16], Key::tdes)?,
        ),
        "aes-cmac" => {
            if padding.is_some() {
                return Err("--padding does not apply to aes-cmac (CMAC pads itself)".into());
            }
            (
                MacAlgorithm::AesCmac,
                key_arg("aes-cmac", key, &[16, 24, 32], Key::aes)?,
            )
        }
        "cup-pos" => {
            if pad == Padding::Method2 {
                return Err("--padding 2 does not apply to cup-pos (it pads with zeros)".into());
            }
            (
                MacAlgorithm::CupPos,
                key_arg("cup-pos", key, &[8, 16], Key::des_or_tdes)?,
            )
        }
        other => {
            return Err(format!(
                "unknown --algorithm {other:?} (cbc-des, cbc-tdes, x9.19, aes-cmac, cup-pos)"
            ))
        }
    };
    let mac = compute(alg, &key, &data).map_err(|e| e.to_string())?;
    Ok(match alg {
        // The 8 characters field 64 carries (uppercase hex digits already).
        MacAlgorithm::CupPos => String::from_utf8_lossy(mac.as_bytes()).into_owned(),
        _ => mac.to_hex(),
    })
}

fn kcv_command(key: &str, aes: bool) -> Result<String, String> {
    let key = if aes {
        key_arg("AES", key, &[16, 24, 32], Key::aes)?
    } else {
        key_arg("DES/TDES", key, &[8, 16, 24], Key::des_or_tdes)?
    };
    let kcv = key.kcv().leading(3).map_err(|e| e.to_string())?;
    Ok(upper_hex(kcv))
}

fn print_out(b: &[u8]) -> Result<(), String> {
    let mut o = std::io::stdout().lock();
    o.write_all(b)
        .and_then(|_| o.flush())
        .map_err(|e| format!("cannot write output: {e}"))
}
