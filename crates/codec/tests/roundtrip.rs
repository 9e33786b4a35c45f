//! Property: for every built-in dialect, encode → decode → encode is the identity, and the
//! JSON (text) form rebuilds the same bytes.

mod common;

use bytes::Bytes;
use isoswitch_codec::{json, Dialect, Message, MessageView};
use proptest::prelude::*;

fn check(dialect: &Dialect, seed: u64) -> Result<(), TestCaseError> {
    let m = common::random_message(dialect, seed);
    let bytes = m.to_bytes().unwrap();
    prop_assert_eq!(bytes.len(), m.encoded_len().unwrap());
    // zero-copy view
    let view = MessageView::decode(dialect, &bytes)
        .map_err(|e| TestCaseError::fail(format!("{}: {e}", dialect.name())))?;
    prop_assert_eq!(view.mti(), m.mti());
    for f in m.fields() {
        let g = view.field(f.number()).unwrap();
        prop_assert_eq!(f.raw(), g.raw());
        prop_assert_eq!(f.text(), g.text());
    }
    // owned decode sharing the buffer, re-encoded untouched
    let owned = Message::decode(dialect, bytes.clone()).unwrap();
    prop_assert_eq!(owned.to_bytes().unwrap(), bytes.clone());
    prop_assert!(owned == m);
    // JSON text form
    let text = json::to_json(view.mti(), view.fields(), true);
    let rebuilt = json::from_json(dialect, &text).unwrap();
    prop_assert_eq!(rebuilt.to_bytes().unwrap(), bytes);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn iso87_ascii(seed in any::<u64>()) { check(&Dialect::builtin("iso87-ascii").unwrap(), seed)?; }
    #[test]
    fn iso87_binary(seed in any::<u64>()) { check(&Dialect::builtin("iso87-binary").unwrap(), seed)?; }
    #[test]
    fn iso87_ebcdic(seed in any::<u64>()) { check(&Dialect::builtin("iso87-ebcdic").unwrap(), seed)?; }
    #[test]
    fn iso93_ascii(seed in any::<u64>()) { check(&Dialect::builtin("iso93-ascii").unwrap(), seed)?; }
    #[test]
    fn cup_pos(seed in any::<u64>()) { check(&Dialect::builtin("cup-pos").unwrap(), seed)?; }
}

#[test]
fn editing_a_decoded_message_keeps_untouched_bytes() {
    let d = Dialect::builtin("iso87-binary").unwrap();
    let m = common::random_message(&d, 7);
    let mut m = m;
    m.set(11, "000001").unwrap();
    m.set(41, "TERM0001").unwrap();
    let original = m.to_bytes().unwrap();
    let mut edited = Message::decode(&d, original.clone()).unwrap();
    edited.set(11, "999999").unwrap();
    let out = edited.to_bytes().unwrap();
    assert_eq!(out.len(), original.len());
    let diff: Vec<usize> = (0..out.len()).filter(|&i| out[i] != original[i]).collect();
    let v = MessageView::decode(&d, &out).unwrap();
    let f = v.field(11).unwrap();
    assert!(
        diff.iter().all(|&i| i >= f.offset() && i < f.offset() + 6),
        "{diff:?}"
    );
    assert_eq!(v.raw(11).unwrap(), b"999999");
    // and the untouched fields still point into the original buffer (zero-copy)
    let shared = Bytes::clone(&original);
    let again = Message::decode(&d, shared).unwrap();
    assert_eq!(again.field(41).unwrap().raw().as_ptr(), {
        let v0 = MessageView::decode(&d, &original).unwrap();
        v0.raw(41).unwrap().as_ptr()
    });
}
