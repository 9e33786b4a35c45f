//! Program input harnesses: the command-line tool's hex and JSON input and the
//! simulators' configuration files (terminals TOML, key files).

use isoswitch_cli::cli::args::parse_hex;
use isoswitch_cli::cli_codec::{decode_command, encode_command, strip_frame};
use isoswitch_codec::random::{self, Entropy};
use isoswitch_codec::{json, Dialect, MessageView};
use isoswitch_sim::config::{kek_from_hex, key_store, parse_terminals, zone_key_from_hex};
use isoswitch_sim::unhex;

/// The dialects the `cli_input` target picks from (first byte).
pub const CLI_DIALECTS: [&str; 3] = ["iso87-ascii", "iso87-binary", "cup-pos"];

/// `cli_input` target: first byte — bits 0-1 the dialect, bit 2 hex (`--hex`), bit 3
/// JSON (`encode`, else `decode`), bits 4-5 the framing, bit 6 structured (the rest is
/// entropy for a random valid message of the dialect, [`isoswitch_codec::random`], whose
/// JSON form goes through `encode`). `encode` output decodes to the same JSON; `decode
/// --json` output encodes back. Reached: the command succeeded.
pub fn cli_input(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let d = Dialect::builtin(CLI_DIALECTS[usize::from(ctl & 3) % CLI_DIALECTS.len()])
        .expect("built-in dialect");
    let made;
    let rest = if ctl & 0x40 != 0 {
        let m = random::message(&d, &mut Entropy::new(rest));
        let Ok(b) = m.to_bytes() else { return false };
        let v = MessageView::decode(&d, &b).expect("a built message decodes");
        made = json::to_json(v.mti(), v.fields(), true).into_bytes();
        &made[..]
    } else {
        rest
    };
    let hex = ctl & 4 != 0;
    let framing = [None, Some("len2"), Some("len4"), Some("ascii4")][usize::from(ctl >> 4) & 3];
    let _ = parse_hex(rest);
    if let Some(f) = framing {
        let _ = strip_frame(f, rest);
    }
    if ctl & 8 != 0 || ctl & 0x40 != 0 {
        let Ok(out) = encode_command(&d, rest, hex) else {
            assert!(
                ctl & 0x40 == 0,
                "the JSON of a valid message does not encode"
            );
            return false;
        };
        let json =
            decode_command(&d, &out, hex, None, true, true).expect("what encode wrote decodes");
        let again = encode_command(&d, json.as_bytes(), hex).expect("its JSON encodes");
        assert_eq!(again, out, "encode → decode → encode changed the bytes");
        true
    } else {
        let _ = decode_command(&d, rest, hex, framing, false, false);
        let Ok(json) = decode_command(&d, rest, hex, framing, true, true) else {
            return false;
        };
        encode_command(&d, json.as_bytes(), false).expect("decoded JSON encodes");
        true
    }
}

/// A terminals file made from `rest`: lines are entries, `,` separates `tid`, `mid` and
/// `tmk`, each written as a TOML string (so the loader's checks, not the TOML syntax,
/// see what the fuzzer made).
fn terminals_toml(rest: &[u8]) -> String {
    let quote = |b: &[u8]| toml::Value::String(String::from_utf8_lossy(b).into_owned()).to_string();
    let mut out = String::new();
    for line in rest.split(|&b| b == b'\n').take(8) {
        let mut f = line.splitn(3, |&b| b == b',');
        let (tid, mid, tmk) = (
            f.next().unwrap_or_default(),
            f.next().unwrap_or_default(),
            f.next().unwrap_or_default(),
        );
        out.push_str(&format!(
            "[[terminal]]\ntid = {}\nmid = {}\ntmk = {}\n",
            quote(tid),
            quote(mid),
            quote(tmk)
        ));
    }
    out
}

/// `config_files` target: first byte — 0: a terminals file (TOML), 1: a zone key file,
/// 2: a key-encryption key file, 3: a terminals file whose entries the harness writes
/// from the rest (see `terminals_toml`); else the rest is the text. An accepted
/// terminals file builds the key store. Reached: the text got past the syntax (valid
/// TOML, valid hex) into the loader's checks.
pub fn config_files(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let made;
    let text = if ctl % 4 == 3 {
        made = terminals_toml(rest);
        &made[..]
    } else {
        match std::str::from_utf8(rest) {
            Ok(t) => t,
            Err(_) => return false,
        }
    };
    match (ctl % 4) % 3 {
        0 => {
            let syntax = toml::from_str::<toml::Table>(text).is_ok();
            match parse_terminals(text) {
                Ok(t) => {
                    assert!(syntax && !t.is_empty());
                    let _ = key_store(&t);
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
            assert!(
                syntax || ctl % 4 != 3,
                "the harness wrote bad TOML:\n{text}"
            );
            syntax
        }
        1 => {
            let ok = zone_key_from_hex(text).is_ok();
            assert!(!ok || unhex(text).is_some());
            unhex(text).is_some()
        }
        _ => {
            let ok = kek_from_hex(text).is_ok();
            assert!(!ok || unhex(text).is_some());
            unhex(text).is_some()
        }
    }
}
