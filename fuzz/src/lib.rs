//! Shared checks for the codec fuzz targets.

use bytes::Bytes;
use isoswitch_codec::{json, Dialect, ErrorKind, Message, MessageView};

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
    let text = json::to_json(view.mti(), view.fields(), true);
    let rebuilt = json::from_json(&d, &text)
        .unwrap_or_else(|e| panic!("decoded message does not rebuild: {e}\n{text}"));
    let bytes = rebuilt.to_bytes().expect("encode");
    let again = MessageView::decode(&d, &bytes).expect("re-decode");
    assert_eq!(again.mti(), view.mti());
    let a: Vec<_> = view.fields().map(|f| (f.number(), f.text().into_owned())).collect();
    let b: Vec<_> = again.fields().map(|f| (f.number(), f.text().into_owned())).collect();
    assert_eq!(a, b);
    // BCD pad nibbles and hex case may be normalised and empty bitmaps dropped.
    assert!(bytes.len() <= data.len());
}
