//! Shared checks for the codec fuzz targets.

use bytes::Bytes;
use isoswitch_codec::random::{self, Entropy};
use isoswitch_codec::{json, Dialect, ErrorKind, FieldRef, Message, MessageView};

/// Reads every subfield of a composite field (recursively) and finds each by its path.
fn walk(f: FieldRef<'_>, view: &MessageView<'_>) {
    for s in f.subfields() {
        let _ = s.text();
        let _ = s.masked();
        let p = s.path().to_string();
        let found = view.get_path(&p).expect("a subfield is found by its path");
        // The first subfield with that key (a repeated unknown tag is found once).
        assert_eq!(found.path(), s.path());
        walk(s, view);
    }
}

/// Decodes arbitrary bytes in `dialect`: must never panic; a success must re-encode to
/// the same bytes (owned, zero-copy path), and every field's text form must be accepted
/// by the builder's full validation (so the decoder's fast checks are never laxer).
pub fn decode(dialect_name: &str, data: &[u8]) {
    let d = Dialect::builtin(dialect_name).expect("built-in dialect");
    match MessageView::decode(&d, data) {
        Ok(view) => {
            let owned = Message::decode(&d, Bytes::copy_from_slice(data)).expect("decodes twice");
            let re = owned.to_bytes().expect("re-encode");
            // Same fields byte for byte (bitmaps are computed, fields are copied: a
            // lowercase hex bitmap comes back uppercase, an all-zero secondary one is dropped).
            assert!(re.len() <= data.len());
            let again = MessageView::decode(&d, &re).expect("re-encoded message decodes");
            assert_eq!(again.mti(), view.mti());
            for (a, b) in view.fields().zip(again.fields()) {
                assert_eq!((a.number(), a.raw()), (b.number(), b.raw()));
            }
            assert_eq!(view.fields().count(), again.fields().count());
            for f in view.fields() {
                walk(f, &view);
                let _ = f.text();
                let _ = f.masked();
                let _ = f.bytes();
                let _ = f.as_u64();
                let _ = f.amount(2);
                let _ = f.time_hhmmss();
                let _ = f.date_mmdd(2024);
                let _ = f.expiry_yymm();
                let _ = f.datetime_mmddhhmmss(2024);
                let _ = f.datetime_yymmddhhmmss();
                for i in 0..6 {
                    let _ = f.subfield(i);
                }
                for t in f.tlv() {
                    if t.is_err() {
                        break;
                    }
                }
            }
            let _ = format!("{view:?} {view}");
        }
        Err(e) => {
            // The fast path and the full check must agree on what is wrong.
            assert!(
                !matches!(e.kind, ErrorKind::BadValue { what: "content" }),
                "fast and full checks disagree: {e}"
            );
            assert!(e.offset <= data.len());
        }
    }
}

/// decode → JSON text form → build → encode → decode gives the same message.
pub fn roundtrip(dialect_name: &str, data: &[u8]) {
    let d = Dialect::builtin(dialect_name).expect("built-in dialect");
    let Ok(view) = MessageView::decode(&d, data) else {
        return;
    };
    // The decoder reads any MTI; the JSON form refuses one of a version the dialect does
    // not allow (`ErrorKind::MtiNotAllowed`, by design): nothing to round-trip then.
    if !d.allows_mti(view.mti()) {
        return;
    }
    let text = json::to_json(view.mti(), view.fields(), true);
    let rebuilt = json::from_json(&d, &text)
        .unwrap_or_else(|e| panic!("decoded message does not rebuild: {e}\n{text}"));
    let bytes = rebuilt.to_bytes().expect("encode");
    let again = MessageView::decode(&d, &bytes).expect("re-decode");
    assert_eq!(again.mti(), view.mti());
    // The same values (as JSON values: composites written in canonical order may list
    // out-of-order tags differently).
    let a: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let b: serde_json::Value =
        serde_json::from_str(&json::to_json(again.mti(), again.fields(), true)).expect("JSON");
    assert_eq!(a, b);
    // BCD pad nibbles and hex case may be normalised and empty bitmaps dropped.
    assert!(bytes.len() <= data.len());
}

/// A random nested dialect and message from `data`: the dialect survives its JSON form,
/// the message's bytes decode and encode back to the same bytes through the JSON form,
/// and the rest of the input decoded in the same dialect never panics (and round-trips
/// its values when it decodes).
pub fn nested(data: &[u8]) {
    let mut e = Entropy::new(data);
    let d = random::dialect(&mut e);
    let text = serde_json::to_string(d.def()).expect("dialect JSON");
    assert_eq!(Dialect::from_json(&text).expect("re-import").def(), d.def());
    let m = random::message(&d, &mut e);
    let bytes = m.to_bytes().expect("encode");
    let view = MessageView::decode(&d, &bytes).expect("a built message decodes");
    let j = json::to_json(view.mti(), view.fields(), true);
    let again = json::from_json(&d, &j).expect("its JSON rebuilds");
    assert_eq!(again.to_bytes().expect("encode"), bytes, "{j}");
    let rest = e.rest();
    if let Ok(v) = MessageView::decode(&d, rest) {
        for f in v.fields() {
            walk(f, &v);
        }
        let j = json::to_json(v.mti(), v.fields(), true);
        let m = json::from_json(&d, &j).expect("decoded values rebuild");
        let b = m.to_bytes().expect("encode");
        let v2 = MessageView::decode(&d, &b).expect("re-decode");
        let a: serde_json::Value = serde_json::from_str(&j).expect("JSON");
        let c: serde_json::Value =
            serde_json::from_str(&json::to_json(v2.mti(), v2.fields(), true)).expect("JSON");
        assert_eq!(a, c);
    }
}
