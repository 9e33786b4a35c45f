//! Dialect files as a documented format: `dialect.schema.json` (JSON Schema 2020-12)
//! accepts every built-in dialect as exported (`serde_json::to_string(dialect.def())`,
//! what `isoswitch dialects --export NAME` prints) and random nested dialects; the
//! exported text re-imports (JSON and TOML) to the same dialect, and the re-imported
//! dialect encodes every test vector to the same bytes.

use isoswitch_codec::random::{self, Entropy};
use isoswitch_codec::{json, Dialect, MessageView};
use serde_json::Value;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("dialect.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn check(v: &jsonschema::Validator, what: &str, doc: &Value) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}");
}

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// (JSON form, hex) test vectors for a dialect.
fn vectors(name: &str) -> Vec<(String, String)> {
    let vdir = root().join("../../tests/vectors");
    let mut out = Vec::new();
    if name == "iso87-composite" {
        for n in 1..=5 {
            let j = std::fs::read_to_string(vdir.join(format!("composite/{n:02}.json"))).unwrap();
            let h = std::fs::read_to_string(vdir.join(format!("composite/{n:02}.hex"))).unwrap();
            out.push((j, h.trim().to_uppercase()));
        }
    }
    let p = vdir.join(format!("pyiso8583/{name}.jsonl"));
    if let Ok(text) = std::fs::read_to_string(p) {
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(l).unwrap();
            let j = serde_json::json!({"mti": v["mti"], "fields": v["fields"]}).to_string();
            out.push((j, v["hex"].as_str().unwrap().to_uppercase()));
        }
    }
    let p = vdir.join(format!("samples/purchase-0200.{name}.hex"));
    if let Ok(h) = std::fs::read_to_string(p) {
        let j = std::fs::read_to_string(vdir.join("samples/purchase-0200.json")).unwrap();
        out.push((j, h.trim().to_uppercase()));
    }
    out
}

#[test]
fn every_builtin_validates_reimports_and_encodes_the_vectors_alike() {
    let v = validator();
    let mut checked = 0;
    for name in Dialect::builtin_names() {
        let d = Dialect::builtin(name).unwrap();
        let text = serde_json::to_string_pretty(d.def()).unwrap();
        check(&v, name, &serde_json::from_str(&text).unwrap());
        let again = Dialect::from_json(&text).unwrap();
        assert_eq!(again.def(), d.def(), "{name}: JSON");
        let toml = toml::to_string(d.def()).unwrap();
        assert_eq!(
            Dialect::from_toml(&toml).unwrap().def(),
            d.def(),
            "{name}: TOML"
        );
        for (i, (j, hex)) in vectors(name).iter().enumerate() {
            let a = json::from_json(&d, j).unwrap().to_bytes().unwrap();
            let b = json::from_json(&again, j).unwrap().to_bytes().unwrap();
            let ours: String = b.iter().map(|x| format!("{x:02X}")).collect();
            assert_eq!(a, b, "{name} vector {i}");
            assert_eq!(&ours, hex, "{name} vector {i}");
            assert!(MessageView::decode(&again, &unhex(hex)).is_ok());
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked} vectors");
}

#[test]
fn random_nested_dialects_validate() {
    let v = validator();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..200 {
        let seed: Vec<u8> = (0..400)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let d = random::dialect(&mut Entropy::new(&seed));
        check(
            &v,
            &format!("random {i}"),
            &serde_json::to_value(d.def()).unwrap(),
        );
    }
}

#[test]
fn the_schema_rejects_what_the_loader_rejects() {
    let v = validator();
    let d = Dialect::builtin("iso87-composite").unwrap();
    let mut doc = serde_json::to_value(d.def()).unwrap();
    doc["fields"]["48"]["composite"]["kind"] = "nested".into();
    assert!(!v.is_valid(&doc));
    assert!(Dialect::from_json(&doc.to_string()).is_err());
    let mut doc = serde_json::to_value(d.def()).unwrap();
    doc["fields"]["62"]["composite"]["subfields"]["1"]["class"] = "q".into();
    assert!(!v.is_valid(&doc));
    assert!(Dialect::from_json(&doc.to_string()).is_err());
    let mut doc = serde_json::to_value(d.def()).unwrap();
    doc["fields"]["127"]["composite"]["bitmap"]["bytes"] = 12.into();
    assert!(!v.is_valid(&doc));
    assert!(Dialect::from_json(&doc.to_string()).is_err());
}
