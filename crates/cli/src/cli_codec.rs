//! The codec commands of the `isoswitch` tool: `decode`, `encode` and `dialects`.
//!
//! Kept apart from `main.rs` (argument parsing and the crypto commands) so the tool can
//! move to a crate of its own; every mechanism is the codec's (decoding, the JSON form,
//! the table of [`isoswitch::codec::describe`]), this is wiring and error wording.

use isoswitch::codec::{describe, json, Dialect, MessageView};
use std::path::Path;

/// The dialect named `name`, or the dialect file at `file` (JSON, or TOML for a `.toml`
/// file or text that does not start with `{`).
pub fn load_dialect(name: Option<&str>, file: Option<&Path>) -> Result<Dialect, String> {
    match (name, file) {
        (Some(n), None) => Dialect::builtin(n).ok_or_else(|| {
            format!(
                "unknown dialect {n:?} (built-in: {}; or give --dialect-file PATH)",
                Dialect::builtin_names().join(", ")
            )
        }),
        (None, Some(p)) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let toml = p
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
                || !text.trim_start().starts_with('{');
            let d = if toml {
                Dialect::from_toml(&text)
            } else {
                Dialect::from_json(&text)
            };
            d.map_err(|e| format!("{}: {}", p.display(), e.kind))
        }
        (Some(_), Some(_)) => Err("give --dialect or --dialect-file, not both".into()),
        (None, None) => Err("give --dialect NAME or --dialect-file PATH".into()),
    }
}

/// `isoswitch dialects [--export NAME]`: the built-in dialects, or one as a dialect file.
pub fn dialects_command(export: Option<&str>) -> Result<String, String> {
    if let Some(name) = export {
        let d = load_dialect(Some(name), None)?;
        let mut s = serde_json::to_string_pretty(d.def()).map_err(|e| e.to_string())?;
        s.push('\n');
        return Ok(s);
    }
    let mut out = String::new();
    for name in Dialect::builtin_names() {
        let d = load_dialect(Some(name), None)?;
        out.push_str(&format!("{name:<16} {}\n", d.def().description));
    }
    Ok(out)
}

/// Strips a frame header (`len2`, `len4`, `ascii4`, `cup-pos`) off `bytes`, checking
/// that the length it holds is the length of what follows.
pub fn strip_frame<'a>(framing: &str, bytes: &'a [u8]) -> Result<&'a [u8], String> {
    let (plen, header) = match framing {
        "len2" => (2, 0),
        "len4" => (4, 0),
        "ascii4" => (4, 0),
        "cup-pos" => (2, 11),
        other => {
            return Err(format!(
                "unknown --framing {other:?} (len2, len4, ascii4, cup-pos)"
            ))
        }
    };
    let Some(p) = bytes.get(..plen) else {
        return Err(format!(
            "--framing {framing}: the input is shorter than the {plen}-byte length header"
        ));
    };
    let len = if framing == "ascii4" {
        let t = std::str::from_utf8(p)
            .ok()
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| format!("--framing ascii4: the header {p:02X?} is not 4 digits"))?;
        t.parse::<usize>().unwrap_or(0)
    } else {
        p.iter().fold(0usize, |v, &b| (v << 8) | b as usize)
    };
    let rest = &bytes[plen..];
    if len != rest.len() {
        return Err(format!(
            "--framing {framing}: the header says {len} bytes follow, but {} do",
            rest.len()
        ));
    }
    rest.get(header..).ok_or_else(|| {
        format!("--framing {framing}: the frame is shorter than its {header}-byte header")
    })
}

/// Whether `raw` looks like hexadecimal text (digits, `A-F`, whitespace; even count).
fn looks_like_hex(raw: &[u8]) -> bool {
    let digits = raw.iter().filter(|c| !c.is_ascii_whitespace()).count();
    digits >= 8
        && digits % 2 == 0
        && raw
            .iter()
            .all(|c| c.is_ascii_hexdigit() || c.is_ascii_whitespace())
}

/// `isoswitch decode`: the table (or JSON) of one message.
pub fn decode_command(
    d: &Dialect,
    raw: &[u8],
    hex: bool,
    framing: Option<&str>,
    as_json: bool,
    reveal: bool,
) -> Result<String, String> {
    let owned;
    let mut bytes: &[u8] = if hex {
        owned = crate::cli::args::parse_hex(raw)?;
        &owned
    } else {
        raw
    };
    if let Some(f) = framing {
        bytes = strip_frame(f, bytes)?;
    }
    let (view, err) = MessageView::decode_partial(d, bytes);
    if let Some(e) = err {
        if !hex && looks_like_hex(raw) {
            if let Ok(b) = crate::cli::args::parse_hex(raw) {
                let b = match framing {
                    Some(f) => strip_frame(f, &b).map(|s| s.to_vec()).unwrap_or(b),
                    None => b,
                };
                if MessageView::decode(d, &b).is_ok() {
                    return Err(format!(
                        "the input is hexadecimal text, not message bytes: add --hex \
                         (as bytes it fails: {e})"
                    ));
                }
            }
        }
        let mut msg = e.to_string();
        if view.fields().next().is_some() {
            msg.push_str("\nfields decoded before the error:\n");
            msg.push_str(&describe::describe(&view, reveal));
        }
        return Err(msg.trim_end().to_string());
    }
    Ok(if as_json {
        let mut s = json::to_json(view.mti(), view.fields(), reveal);
        s.push('\n');
        s
    } else {
        describe::describe(&view, reveal)
    })
}

/// `isoswitch encode`: the bytes (or uppercase hex) of the JSON form in `text`.
pub fn encode_command(d: &Dialect, text: &[u8], hex: bool) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "the input is not UTF-8 JSON".to_string())?;
    // Errors name what is wrong (ErrorKind::Masked says to decode with --reveal).
    let msg = json::from_json(d, text).map_err(|e| e.to_string())?;
    let bytes = msg.to_bytes().map_err(|e| e.to_string())?;
    Ok(if hex {
        let mut s: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        s.push('\n');
        s.into_bytes()
    } else {
        bytes.to_vec()
    })
}
