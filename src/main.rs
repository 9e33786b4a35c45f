//! The `isoswitch` command-line tool.
//!
//! - `isoswitch decode --dialect NAME [--hex] [--json] [--reveal] [FILE]`
//! - `isoswitch encode --dialect NAME [--hex]`
//! - `isoswitch dialects`

use clap::{Parser, Subcommand};
use isoswitch::codec::{json, Dialect, MessageView};
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
    /// Decode one message (its exact bytes, no length header) from FILE or stdin.
    Decode {
        /// Dialect name (see `isoswitch dialects`).
        #[arg(long)]
        dialect: String,
        /// The input is hexadecimal text (whitespace ignored).
        #[arg(long)]
        hex: bool,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Show sensitive fields (PAN, tracks, PIN block, EMV data) unmasked.
        #[arg(long)]
        reveal: bool,
        /// Input file (default: stdin).
        file: Option<std::path::PathBuf>,
    },
    /// Encode the JSON form read from stdin; writes the message bytes to stdout.
    Encode {
        /// Dialect name (see `isoswitch dialects`).
        #[arg(long)]
        dialect: String,
        /// Write uppercase hex and a newline instead of raw bytes.
        #[arg(long)]
        hex: bool,
    },
    /// List the built-in dialects.
    Dialects,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn dialect(name: &str) -> Result<Dialect, String> {
    Dialect::builtin(name).ok_or_else(|| {
        format!(
            "unknown dialect {name:?} (built-in: {})",
            Dialect::builtin_names().join(", ")
        )
    })
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

fn parse_hex(text: &[u8]) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if digits.len() % 2 == 1 {
        return Err("hex input has an odd number of digits".into());
    }
    digits
        .chunks(2)
        .enumerate()
        .map(|(i, p)| {
            let s = std::str::from_utf8(p).map_err(|_| format!("bad hex at digit {}", i * 2))?;
            u8::from_str_radix(s, 16).map_err(|_| format!("bad hex at digit {}", i * 2))
        })
        .collect()
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Dialects => {
            let mut out = String::new();
            for name in Dialect::builtin_names() {
                let d = dialect(name)?;
                out.push_str(&format!("{name:<14} {}\n", d.def().description));
            }
            print_out(out.as_bytes())
        }
        Command::Decode {
            dialect: name,
            hex,
            json: as_json,
            reveal,
            file,
        } => {
            let d = dialect(&name)?;
            let raw = read_input(file.as_deref())?;
            let bytes = if hex { parse_hex(&raw)? } else { raw };
            let view = MessageView::decode(&d, &bytes).map_err(|e| e.to_string())?;
            let out = if as_json {
                let mut s = json::to_json(view.mti(), view.fields(), reveal);
                s.push('\n');
                s
            } else if reveal {
                let mut s = format!("MTI  {}\n", view.mti());
                for f in view.fields() {
                    s.push_str(&format!(
                        "{:>4} {:<45} {}\n",
                        f.number(),
                        f.spec().name,
                        f.text()
                    ));
                }
                s
            } else {
                view.to_string()
            };
            print_out(out.as_bytes())
        }
        Command::Encode { dialect: name, hex } => {
            let d = dialect(&name)?;
            let text = read_input(None)?;
            let text =
                String::from_utf8(text).map_err(|_| "input is not UTF-8 JSON".to_string())?;
            let msg = json::from_json(&d, &text).map_err(|e| e.to_string())?;
            let bytes = msg.to_bytes().map_err(|e| e.to_string())?;
            if hex {
                let mut s: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
                s.push('\n');
                print_out(s.as_bytes())
            } else {
                print_out(&bytes)
            }
        }
    }
}

fn print_out(b: &[u8]) -> Result<(), String> {
    let mut o = std::io::stdout().lock();
    o.write_all(b)
        .and_then(|_| o.flush())
        .map_err(|e| format!("cannot write output: {e}"))
}
