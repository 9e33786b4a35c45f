//! Conformance against pyiso8583 4.0.1 (an implementation we did not write).
//!
//! The vectors in `tests/vectors/pyiso8583/` were produced by
//! `scripts/pyiso8583/gen_vectors.py`: random messages (random field subsets including
//! secondary-bitmap fields, random valid contents at every length) encoded by pyiso8583.
//! For every vector we assert byte-identical encoding and identical decoding.

use isoswitch_codec::{json, Dialect, MessageView};
use serde_json::Value;
use std::path::PathBuf;

fn vectors(name: &str) -> Vec<Value> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/pyiso8583")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn conform(dialect_name: &str, min: usize) {
    let d = Dialect::builtin(dialect_name).unwrap();
    let vs = vectors(&format!("{dialect_name}.jsonl"));
    assert!(vs.len() >= min, "only {} vectors", vs.len());
    for (i, v) in vs.iter().enumerate() {
        let expected_hex = v["hex"].as_str().unwrap();
        // encode: our bytes == pyiso8583's bytes
        let input = serde_json::json!({"mti": v["mti"], "fields": v["fields"]}).to_string();
        let msg = json::from_json(&d, &input)
            .unwrap_or_else(|e| panic!("{dialect_name} vector {i}: {e}"));
        let ours = msg.to_bytes().unwrap();
        assert_eq!(
            hex(&ours),
            expected_hex,
            "{dialect_name} vector {i}: encoding differs"
        );
        // decode: pyiso8583's bytes → the same MTI and fields
        let bytes = unhex(expected_hex);
        let view = MessageView::decode(&d, &bytes)
            .unwrap_or_else(|e| panic!("{dialect_name} vector {i}: {e}"));
        let decoded: Value =
            serde_json::from_str(&json::to_json(view.mti(), view.fields(), true)).unwrap();
        assert_eq!(decoded["mti"], v["mti"], "{dialect_name} vector {i}");
        assert_eq!(
            decoded["fields"], v["fields"],
            "{dialect_name} vector {i}: decoding differs"
        );
    }
}

#[test]
fn iso87_ascii_matches_pyiso8583_default_ascii() {
    conform("iso87-ascii", 2000);
}

#[test]
fn iso87_binary_matches_pyiso8583_default() {
    conform("iso87-binary", 2000);
}

#[test]
fn iso87_ebcdic_matches_pyiso8583_with_cp037() {
    conform("iso87-ebcdic", 2000);
}

/// Messages that pyiso8583 rejects are rejected by us too, with a typed error.
#[test]
fn invalid_vectors_are_rejected() {
    for name in ["iso87-ascii", "iso87-binary", "iso87-ebcdic"] {
        let d = Dialect::builtin(name).unwrap();
        let vs = vectors(&format!("{name}.invalid.jsonl"));
        assert!(vs.len() >= 20, "{name}: {} invalid vectors", vs.len());
        for (i, v) in vs.iter().enumerate() {
            let bytes = unhex(v["hex"].as_str().unwrap());
            let r = MessageView::decode(&d, &bytes);
            assert!(
                r.is_err(),
                "{name} invalid vector {i} ({}) was accepted",
                v["why"]
            );
        }
    }
}

/// The shared 0200 purchase sample decodes to its JSON form in both dialects.
#[test]
fn shared_samples() {
    for v in vectors("samples.jsonl") {
        let d = Dialect::builtin(v["dialect"].as_str().unwrap()).unwrap();
        let bytes = unhex(v["hex"].as_str().unwrap());
        let view = MessageView::decode(&d, &bytes).unwrap();
        let decoded: Value =
            serde_json::from_str(&json::to_json(view.mti(), view.fields(), true)).unwrap();
        assert_eq!(decoded["fields"], v["fields"]);
        let input = serde_json::json!({"mti": v["mti"], "fields": v["fields"]}).to_string();
        let ours = json::from_json(&d, &input).unwrap().to_bytes().unwrap();
        assert_eq!(hex(&ours), v["hex"].as_str().unwrap());
    }
}
