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

/// Reading by text (which parses the digits as it walks) gives what reading by a parsed
/// `Path` gives, for real paths, near misses and junk, in every sample.
#[test]
fn text_paths_read_as_parsed_paths() {
    let d = d();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let fixed = [
        "48.42.1",
        "48.42",
        "48.42.",
        "48..42",
        ".48",
        "48.042.1",
        "048.42.1",
        "48.42.1.1",
        "127.25.2",
        "127.025.2",
        "193",
        "192",
        "0",
        "00",
        "1000",
        "4",
        "4.",
        "55.9F26",
        "48.4200000000",
        "48.0000000042",
        "48.9999999999.1",
        "48.42x",
        "48.x",
        "",
    ];
    for n in 1..=5 {
        let (bytes, _, _) = sample(n);
        let v = MessageView::decode(&d, &bytes).unwrap();
        let mut paths: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
        for _ in 0..3000 {
            let len = (rnd() % 12) as usize;
            paths.push(
                (0..len)
                    .map(|_| b"0123456789..4812AF x"[(rnd() % 20) as usize] as char)
                    .collect(),
            );
        }
        for p in &paths {
            let by_text = v.get_path(p).map(|f| (f.path(), f.raw(), f.offset()));
            let parsed = isoswitch_codec::Path::parse(p).ok();
            let by_path = parsed
                .as_ref()
                .and_then(|q| v.at(q))
                .map(|f| (f.path(), f.raw(), f.offset()));
            assert_eq!(by_text, by_path, "{p:?}");
        }
    }
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

#[test]
fn a_decoded_message_gives_its_view_and_mac_span_without_decoding_again() {
    let d = Dialect::builtin("iso87-binary").unwrap();
    let mut m = Message::new(&d, "0200".parse().unwrap());
    m.set(2, "4761739001010119").unwrap();
    m.set(11, "000123").unwrap();
    m.set(64, "1122334455667788").unwrap();
    assert!(
        m.view().is_none() && m.mac_span().is_none(),
        "built, not decoded"
    );
    let bytes = m.to_bytes().unwrap();
    let m = Message::decode(&d, bytes.clone()).unwrap();
    let view = MessageView::decode(&d, &bytes).unwrap();
    let (span, mac) = m.mac_span().unwrap();
    assert_eq!((span, mac), view.mac_span().unwrap());
    assert_eq!(mac, [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
    // The view shares the message's buffer.
    let v = m.view().unwrap();
    assert_eq!(v.as_bytes().as_ptr(), bytes.as_ptr());
    assert_eq!(v.raw(11), Some(&b"000123"[..]));
    assert_eq!(
        m.to_bytes().unwrap().as_ptr(),
        bytes.as_ptr(),
        "not re-encoded"
    );
    // After a change: no stale view; encoding gives the new bytes.
    let mut m2 = m.clone();
    m2.set(11, "000124").unwrap();
    assert!(m2.view().is_none() && m2.mac_span().is_none());
    let again = m2.to_bytes().unwrap();
    assert_eq!(
        MessageView::decode(&d, &again).unwrap().raw(11),
        Some(&b"000124"[..])
    );
}

#[test]
fn errors_name_the_path_and_give_the_fields_before_them() {
    let d = d();
    let (bytes, _, _) = sample(3);
    // 127.25.3 of sample 03 is empty ("00"); make its prefix a letter.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let at = text.rfind("00").unwrap();
    let mut bad = bytes.clone();
    bad[at] = b'X';
    let e = MessageView::decode(&d, &bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("field 127.25.3 at byte offset {at}: bad length prefix")
    );
    assert_eq!(e.field_number(), Some(127));
    let (partial, err) = MessageView::decode_partial(&d, &bad);
    assert_eq!(err, Some(e));
    let got: Vec<u8> = partial.fields().map(|f| f.number()).collect();
    assert_eq!(got, [2, 3, 4, 7, 13, 22, 42, 48, 49]);
    // An undefined tag in DE 48, a bit for an undefined 127 subfield, leftover content.
    let mut m = json::from_json(&d, r#"{"mti":"0200","fields":{"48":{"10":"A"}}}"#).unwrap();
    let ok = m.to_bytes().unwrap().to_vec();
    let mut bad = ok.clone();
    let tag = ok.len() - 5;
    bad[tag] = b'9';
    let e = MessageView::decode(&d, &bad).unwrap_err();
    assert_eq!(e.to_string(), format!("field 48.90 at byte offset {tag}: field present in the bitmap but not defined by dialect iso87-composite"));
    m.set_path("127.3", "A".repeat(48)).unwrap();
    let e = m.set_path("127.1", "x").unwrap_err();
    assert!(e.to_string().starts_with("field 127.1 "), "{e}");
    let e =
        json::from_json(&d, r#"{"mti":"0200","fields":{"62":{"1":"AB","3":"x"}}}"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Gap { missing: 2 });
    let e = json::from_json(&d, r#"{"mti":"0200","fields":{"62":"AB"}}"#).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::WrongShape { .. }), "{e}");
    let e = json::from_json(&d, r#"{"mti":"0200","fields":{"62":{"1":{}}}}"#).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::WrongShape { .. }), "{e}");
    let e = json::from_json(&d, r#"{"mti":"1200","fields":{}}"#).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::MtiNotAllowed { .. }), "{e}");
    let e = json::from_json(&d, r#"{"mti":"0200","fields":{"2":"476173******0119"}}"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Masked);
}

mod random_dialects {
    use super::*;
    use isoswitch_codec::random::{self, Entropy};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Random nested dialects (every composite kind, up to four levels) and messages:
        /// the dialect survives its JSON and TOML forms, and a message's bytes decode,
        /// print as JSON and encode back to the same bytes.
        #[test]
        fn round_trip(seed in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut e = Entropy::new(&seed);
            let d = random::dialect(&mut e);
            prop_assert_eq!(d.name(), "random");
            let text = serde_json::to_string(d.def()).unwrap();
            prop_assert_eq!(Dialect::from_json(&text).unwrap().def().clone(), d.def().clone());
            let text = toml::to_string(d.def()).unwrap();
            prop_assert_eq!(Dialect::from_toml(&text).unwrap().def().clone(), d.def().clone());
            let m = random::message(&d, &mut e);
            let bytes = m.to_bytes().unwrap();
            let v = MessageView::decode(&d, &bytes)
                .map_err(|err| TestCaseError::fail(format!("{err}: {}", String::from_utf8_lossy(&bytes))))?;
            let j = json::to_json(v.mti(), v.fields(), true);
            let m2 = json::from_json(&d, &j)
                .map_err(|err| TestCaseError::fail(format!("{err}: {j}")))?;
            prop_assert_eq!(m2.to_bytes().unwrap(), bytes.clone(), "{}", j);
            let m3 = Message::decode(&d, bytes.clone()).unwrap();
            prop_assert_eq!(json::to_json(m3.mti(), m3.fields(), true), j);
        }
    }
}

/// The random dialects do reach every composite kind and three levels below the message.
#[test]
fn random_dialects_cover_every_kind_and_depth() {
    use isoswitch_codec::random::{self, Entropy};
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut kinds = std::collections::BTreeSet::new();
    let mut deepest = 0;
    for _ in 0..300 {
        let seed: Vec<u8> = (0..600)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut e = Entropy::new(&seed);
        let d = random::dialect(&mut e);
        let m = random::message(&d, &mut e);
        fn walk(
            f: isoswitch_codec::FieldRef<'_>,
            kinds: &mut std::collections::BTreeSet<&'static str>,
            deepest: &mut usize,
            d: &Dialect,
        ) {
            *deepest = (*deepest).max(f.path().depth());
            if let Some(c) = d
                .spec_at(&f.path().to_string())
                .and_then(|s| s.composite.as_ref())
            {
                kinds.insert(c.kind());
            }
            for s in f.subfields() {
                walk(s, kinds, deepest, d);
            }
        }
        for f in m.fields() {
            walk(f, &mut kinds, &mut deepest, &d);
        }
    }
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(deepest >= 4, "deepest path has {deepest} elements");
}

/// A BER-TLV composite (binary DE 55 style) with a 3-byte tag, a PAN-masked 5A and an
/// unknown tag with a non-minimal length: editing another tag keeps the unknown one byte
/// for byte; a malformed length is an error naming the field, never a loop.
#[test]
fn tlv_composites_keep_unknown_tags_and_mask_by_path() {
    use isoswitch_codec::{
        Composite, ContentClass, FieldSpec, LengthKind, Sensitivity, UnknownTags,
    };
    let mut def = Dialect::builtin("iso87-binary").unwrap().def().clone();
    let mut subs = std::collections::BTreeMap::new();
    subs.insert(
        "5A".to_string(),
        FieldSpec::new("PAN", ContentClass::B, LengthKind::LLL, 10).sensitive(Sensitivity::Pan8),
    );
    subs.insert(
        "DF8101".to_string(),
        FieldSpec::new("proprietary", ContentClass::B, LengthKind::LLL, 4),
    );
    let spec = def.fields.get_mut("55").unwrap();
    spec.sensitive = Sensitivity::None;
    spec.subfields = None;
    spec.composite = Some(Composite::Tlv {
        unknown: UnknownTags::Keep,
        subfields: subs,
    });
    let d = Dialect::from_def(def).unwrap();
    let mut m = Message::new(&d, "0200".parse().unwrap());
    // 9F37 (unknown) with the long-form length 81 04.
    let content = [
        0x9F, 0x37, 0x81, 0x04, 1, 2, 3, 4, 0x5A, 0x08, 0x47, 0x61, 0x73, 0x90, 0x01, 0x01, 0x01,
        0x19,
    ];
    m.set_bytes(55, &content).unwrap();
    m.set_path("55.DF8101", "A1B2").unwrap();
    let bytes = m.to_bytes().unwrap();
    let v = MessageView::decode(&d, &bytes).unwrap();
    let f = v.field(55).unwrap();
    assert_eq!(
        &f.raw()[..18],
        &content[..],
        "untouched objects byte for byte"
    );
    assert_eq!(&f.raw()[18..], &[0xDF, 0x81, 0x01, 0x02, 0xA1, 0xB2]);
    assert_eq!(v.get_path("55.9F37").unwrap().raw(), [1, 2, 3, 4]);
    assert_eq!(v.get_path("55.DF8101").unwrap().text(), "A1B2");
    let masked: Value = serde_json::from_str(&json::to_json(v.mti(), v.fields(), false)).unwrap();
    assert_eq!(masked["fields"]["55"]["5A"], "47617390****0119");
    let shown: Value = serde_json::from_str(&json::to_json(v.mti(), v.fields(), true)).unwrap();
    assert_eq!(shown["fields"]["55"]["5A"], "4761739001010119");
    assert_eq!(shown["fields"]["55"]["9F37"], "01020304");
    // The JSON form rebuilds the same content (objects in tag order).
    let again = json::from_json(&d, &shown.to_string()).unwrap();
    assert!(MessageView::decode(&d, &again.to_bytes().unwrap()).is_ok());
    // A length that runs past the end.
    let mut bad = bytes.to_vec();
    let at = bad.len() - 6 + 3;
    bad[at] = 0x7F;
    let e = MessageView::decode(&d, &bad).unwrap_err();
    assert!(e.to_string().starts_with("field 55 at byte offset"), "{e}");
    assert!(matches!(e.kind, ErrorKind::Tlv { .. }), "{e}");
}

/// Every field and subfield path of the samples (and paths that are not there) reads the
/// same through a parsed [`Path`](isoswitch_codec::Path) as through its text, from the
/// view, the owned message and the data element.
#[test]
fn parsed_paths_read_what_text_paths_read() {
    use isoswitch_codec::{FieldRef, Path};
    fn walk(f: FieldRef<'_>, out: &mut Vec<String>) {
        out.push(f.path().to_string());
        for s in f.subfields() {
            walk(s, out);
        }
    }
    let d = d();
    let mut checked = 0;
    for n in 1..=5 {
        let (bytes, _, _) = sample(n);
        let v = MessageView::decode(&d, &bytes).unwrap();
        let m = Message::decode(&d, Bytes::from(bytes.clone())).unwrap();
        let mut paths = Vec::new();
        for f in v.fields() {
            walk(f, &mut paths);
        }
        // Absent and malformed-for-the-dialect ones too.
        paths.extend(
            [
                "48.99", "48.42.9", "62.9", "127.99", "127.25.7", "4.1", "48.4A", "191",
            ]
            .map(String::from),
        );
        for text in &paths {
            let p = Path::parse(text).unwrap();
            let by_text = v.get_path(text);
            let by_path = v.at(&p);
            assert_eq!(
                by_text.map(|f| (f.raw(), f.offset(), f.units(), f.path())),
                by_path.map(|f| (f.raw(), f.offset(), f.units(), f.path())),
                "sample {n}: {text}"
            );
            assert_eq!(
                m.get_path(text).map(|f| (f.raw().to_vec(), f.path())),
                m.at(&p).map(|f| (f.raw().to_vec(), f.path())),
                "sample {n}: {text} (owned)"
            );
            if let Some(top) = v.field(p.field()) {
                assert_eq!(top.at(&p).map(|f| f.raw()), by_text.map(|f| f.raw()));
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked}");
    for bad in ["", "x", "0.1", "193", "48..1", "48.1.2.3.4.5.6", "48.xxxxx"] {
        assert!(
            matches!(
                Path::parse(bad).map_err(|e| e.kind),
                Err(ErrorKind::BadPath { .. })
            ),
            "{bad:?}"
        );
    }
}
