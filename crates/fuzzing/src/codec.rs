//! Codec harnesses: every built-in dialect's decoder, the JSON round trip, random nested
//! dialects, BER-TLV and dialect files.

use bytes::Bytes;
use isoswitch_codec::random::{self, Entropy};
use isoswitch_codec::tlv::{self, TlvBuilder};
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
pub fn decode(dialect_name: &str, data: &[u8]) -> bool {
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
            true
        }
        Err(e) => {
            // The fast path and the full check must agree on what is wrong.
            assert!(
                !matches!(e.kind, ErrorKind::BadValue { what: "content" }),
                "fast and full checks disagree: {e}"
            );
            assert!(e.offset <= data.len());
            false
        }
    }
}

/// Returns whether `data` decoded (the round trip ran).
/// decode → JSON text form → build → encode → decode gives the same message.
pub fn roundtrip(dialect_name: &str, data: &[u8]) -> bool {
    let d = Dialect::builtin(dialect_name).expect("built-in dialect");
    let Ok(view) = MessageView::decode(&d, data) else {
        return false;
    };
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
    true
}

/// A random nested dialect and message from `data`: the dialect survives its JSON form,
/// the message's bytes decode and encode back to the same bytes through the JSON form,
/// and the rest of the input decoded in the same dialect never panics (and round-trips
/// its values when it decodes).
pub fn nested(data: &[u8]) -> bool {
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
    true
}

/// The bytes a `0xFF`-led input stands for: a random valid message of `dialect` made
/// from the rest ([`random::message`]); other inputs are message bytes as they are. No
/// message of a built-in dialect starts with `0xFF` (it is no MTI digit in ASCII, BCD or
/// EBCDIC), so the structured inputs take nothing away from the raw ones.
pub fn structured(dialect: &Dialect, data: &[u8]) -> Option<Vec<u8>> {
    let rest = data.strip_prefix(&[0xFF])?;
    let m = random::message(dialect, &mut Entropy::new(rest));
    m.to_bytes().ok().map(|b| b.to_vec())
}

/// `decode_<dialect>` targets: [`decode`] of the input, or of the message a `0xFF`-led
/// input stands for ([`structured`]; it must decode).
pub fn decode_any(dialect_name: &str, data: &[u8]) -> bool {
    let d = Dialect::builtin(dialect_name).expect("built-in dialect");
    match structured(&d, data) {
        Some(b) => {
            assert!(decode(dialect_name, &b), "a built message does not decode");
            true
        }
        None => decode(dialect_name, data),
    }
}

/// The built-in dialects the `roundtrip` target picks from (first byte).
pub const ROUNDTRIP_DIALECTS: [&str; 5] = [
    "iso87-ascii",
    "iso87-binary",
    "iso87-ebcdic",
    "iso93-ascii",
    "cup-pos",
];

/// `roundtrip` target: the first byte picks the dialect, the rest is the message (or,
/// `0xFF`-led, stands for one: [`structured`]).
pub fn roundtrip_any(data: &[u8]) -> bool {
    let Some((&pick, rest)) = data.split_first() else {
        return false;
    };
    let name = ROUNDTRIP_DIALECTS[usize::from(pick) % ROUNDTRIP_DIALECTS.len()];
    let d = Dialect::builtin(name).expect("built-in dialect");
    match structured(&d, rest) {
        Some(b) => {
            assert!(roundtrip(name, &b), "a built message does not decode");
            true
        }
        None => roundtrip(name, rest),
    }
}

/// `decode_iso87_composite` target: nested DE 48, 62, 127 decoded, walked by path and
/// round-tripped through the JSON form.
pub fn composite(data: &[u8]) -> bool {
    let d = Dialect::builtin("iso87-composite").expect("built-in dialect");
    let made = structured(&d, data);
    let data = made.as_deref().unwrap_or(data);
    let a = decode("iso87-composite", data);
    let b = roundtrip("iso87-composite", data);
    assert_eq!(
        a, b,
        "decode and round trip disagree on whether the input decodes"
    );
    a
}

fn tlv_walk(data: &[u8], depth: u8) {
    for t in tlv::parse(data) {
        let Ok(t) = t else { break };
        assert!(t.value.len() <= data.len());
        if depth < 8 {
            tlv_walk(t.value, depth + 1);
            for c in t.children() {
                if c.is_err() {
                    break;
                }
            }
        }
    }
}

/// `tlv` target: BER-TLV never panics, values stay inside the input, and what parses
/// rebuilds to an equivalent sequence. Reached: the whole input parsed (and rebuilt).
pub fn tlv_objects(data: &[u8]) -> bool {
    tlv_walk(data, 0);
    let _ = tlv::find(data, tlv::Tag(0x9F26));
    let parsed: Result<Vec<_>, _> = tlv::parse(data).collect();
    let Ok(objs) = parsed else { return false };
    let mut b = TlvBuilder::new();
    for o in &objs {
        b.add(o.tag, o.value);
    }
    let bytes = b.finish();
    let again: Vec<_> = tlv::parse(&bytes)
        .collect::<Result<_, _>>()
        .expect("rebuilt TLV parses");
    assert_eq!(again.len(), objs.len());
    for (x, y) in again.iter().zip(&objs) {
        assert_eq!((x.tag, x.value), (y.tag, y.value));
    }
    !objs.is_empty()
}

/// `dialect_json` target: text as a dialect description (JSON and TOML), `NUL`, then a
/// message decoded in whatever loaded; a dialect that loads exports to JSON that loads
/// back to the same definition. Reached: the text got past the syntax (valid JSON or
/// TOML) into the dialect checks.
pub fn dialect_file(data: &[u8]) -> bool {
    let made;
    let data = match data.strip_prefix(&[0xFF]) {
        // Structured: a random dialect's JSON form, then a message from the rest.
        Some(rest) => {
            let mut e = Entropy::new(rest);
            let d = random::dialect(&mut e);
            let m = random::message(&d, &mut e).to_bytes().unwrap_or_default();
            let mut t = serde_json::to_string(d.def())
                .expect("dialect JSON")
                .into_bytes();
            if std::str::from_utf8(&m).is_ok() {
                t.push(0);
                t.extend_from_slice(&m);
            }
            made = t;
            &made[..]
        }
        None => data,
    };
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let (def, msg) = text.split_once('\u{0}').unwrap_or((text, ""));
    let reached = serde_json::from_str::<serde_json::Value>(def).is_ok()
        || toml::from_str::<toml::Table>(def).is_ok();
    for d in [Dialect::from_json(def), Dialect::from_toml(def)]
        .into_iter()
        .flatten()
    {
        assert!(
            reached,
            "a dialect loaded from text that is neither JSON nor TOML"
        );
        let json = serde_json::to_string(d.def()).expect("dialect JSON");
        let again = Dialect::from_json(&json).expect("an exported dialect loads");
        assert_eq!(again.def(), d.def());
        if let Ok(v) = MessageView::decode(&d, msg.as_bytes()) {
            for f in v.fields() {
                walk(f, &v);
            }
        }
    }
    reached
}
