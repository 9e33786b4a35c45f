//! Composite fields against the `iso87-composite` samples: five messages and their values
//! produced by an independent implementation (moov-io/iso8583, see
//! `tests/vectors/composite/README.md`) from the dialect text
//! `tests/vectors/composite/iso87-composite.md`.

use bytes::Bytes;
use isoswitch_codec::{json, Dialect, ErrorKind, Location, Message, MessageView};
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/composite")
}

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sample(n: u32) -> (Vec<u8>, Value, String) {
    let h = std::fs::read_to_string(dir().join(format!("{n:02}.hex"))).unwrap();
    let j = std::fs::read_to_string(dir().join(format!("{n:02}.json"))).unwrap();
    (unhex(&h), serde_json::from_str(&j).unwrap(), j)
}

fn d() -> Dialect {
    Dialect::builtin("iso87-composite").unwrap()
}

#[test]
fn samples_decode_to_their_values() {
    let d = d();
    for n in 1..=5 {
        let (bytes, want, _) = sample(n);
        let v = MessageView::decode(&d, &bytes).unwrap_or_else(|e| panic!("{n:02}: {e}"));
        let got: Value = serde_json::from_str(&json::to_json(v.mti(), v.fields(), true)).unwrap();
        assert_eq!(got, want, "sample {n:02}");
        // The owned message decodes the same.
        let m = Message::decode(&d, Bytes::from(bytes.clone())).unwrap();
        let got: Value = serde_json::from_str(&json::to_json(m.mti(), m.fields(), true)).unwrap();
        assert_eq!(got, want, "sample {n:02} (Message)");
    }
}

#[test]
fn samples_encode_to_their_bytes() {
    let d = d();
    for n in 1..=5 {
        let (bytes, _, text) = sample(n);
        let m = json::from_json(&d, &text).unwrap_or_else(|e| panic!("{n:02}: {e}"));
        let ours = m.to_bytes().unwrap();
        assert_eq!(hex(&ours), hex(&bytes), "sample {n:02}");
        assert_eq!(m.encoded_len().unwrap(), bytes.len());
    }
}

#[test]
fn paths_read_nested_subfields() {
    let d = d();
    let (bytes, _, _) = sample(4);
    let v = MessageView::decode(&d, &bytes).unwrap();
    assert_eq!(v.get_path("48.42.1").unwrap().text(), "6");
    assert_eq!(v.get_path("48.42.3").unwrap().text(), "6");
    assert_eq!(v.get_path("48.61").unwrap().text(), "29758");
    assert_eq!(v.get_path("127.25.2").unwrap().text(), "ruqy9r9BnKNI");
    assert!(v.get_path("127.25.3").is_none());
    assert!(v.get_path("48.10").is_none());
    assert!(v.get_path("48.99").is_none());
    assert!(v.get_path("4.1").is_none());
    assert_eq!(v.get_path("4").unwrap().text(), "213882939113");
    let p = v.get_path("127.25.1").unwrap();
    assert_eq!(p.path().to_string(), "127.25.1");
    assert_eq!(p.spec().name, "Version");
    // Offsets are offsets in the message.
    assert_eq!(&bytes[p.offset()..p.offset() + 2], b"53");
    let keys: Vec<String> = v
        .field(127)
        .unwrap()
        .subfields()
        .map(|f| f.key_text())
        .collect();
    assert_eq!(keys, ["2", "3", "22", "25"]);
}

#[test]
fn set_path_reencodes_the_enclosing_composites() {
    let d = d();
    // §9's worked example, built by path.
    let mut m = Message::new(&d, "0200".parse().unwrap());
    m.set(2, "4761739001010119").unwrap();
    m.set(3, "000000").unwrap();
    m.set(4, "000000001000").unwrap();
    m.set(11, "000123").unwrap();
    for (p, v) in [
        ("48.10", "K001"),
        ("48.20", "Y"),
        ("48.42.1", "1"),
        ("48.42.2", "0"),
        ("48.42.3", "1"),
        ("48.61", "10251"),
        ("62.1", "AB"),
        ("62.2", "123456"),
        ("62.3", "INV 42"),
        ("127.2", "SWK0001"),
        ("127.22", "<a>1</a>"),
        ("127.25.1", "07"),
        ("127.25.2", "REF000000001"),
        ("127.25.3", "nested text"),
    ] {
        m.set_path(p, v).unwrap_or_else(|e| panic!("{p}: {e}"));
    }
    let want = [
        "0200",
        "F020000000010004",
        "0000000000000002",
        "16",
        "4761739001010119",
        "000000",
        "000000001000",
        "000123",
        "029",
        "1004K001",
        "2001Y",
        "4203101",
        "610510251",
        "016",
        "AB123456",
        "06INV 42",
        "000068",
        "4000048000000000",
        "07SWK0001",
        "00008<a>1</a>",
        "027",
        "07",
        "REF000000001",
        "11nested text",
    ]
    .concat();
    let got = m.to_bytes().unwrap();
    assert_eq!(got.len(), 203);
    assert_eq!(std::str::from_utf8(&got).unwrap(), want);

    // Editing a decoded message: the other fields and subfields stay byte for byte.
    let (bytes, _, _) = sample(4);
    let mut m = Message::decode(&d, Bytes::from(bytes.clone())).unwrap();
    m.set_path("127.25.3", "hello").unwrap();
    let out = m.to_bytes().unwrap();
    let v = MessageView::decode(&d, &out).unwrap();
    assert_eq!(v.get_path("127.25.3").unwrap().text(), "hello");
    assert_eq!(
        v.get_path("127.22").unwrap().raw(),
        MessageView::decode(&d, &bytes)
            .unwrap()
            .get_path("127.22")
            .unwrap()
            .raw()
    );
    assert_eq!(out.len(), bytes.len() + 7);
    m.remove_path("127.25.3").unwrap();
    assert_eq!(m.to_bytes().unwrap(), Bytes::from(bytes.clone()));
    // A gap is refused, naming the path.
    let e = m.remove_path("62.2").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Gap { missing: 2 });
    assert_eq!(e.to_string().split(" at ").next().unwrap(), "field 62");
    let e = m.set_path("48.99", "x").unwrap_err();
    assert_eq!(e.to_string().split(" at ").next().unwrap(), "field 48.99");
    let e = m.set_path("127.25.1", "x").unwrap_err();
    assert!(matches!(e.location, Location::Path(_)), "{e}");
    assert!(
        e.to_string().starts_with("field 127.25.1 at byte offset"),
        "{e}"
    );
}
