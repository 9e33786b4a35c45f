#![no_main]
//! The BER-TLV parser on arbitrary bytes: never panics, values stay inside the input, and
//! what parses rebuilds to an equivalent sequence.
use isoswitch_codec::tlv::{self, TlvBuilder};
use libfuzzer_sys::fuzz_target;

fn walk(data: &[u8], depth: u8) {
    for t in tlv::parse(data) {
        let Ok(t) = t else { break };
        assert!(t.value.len() <= data.len());
        if depth < 8 {
            walk(t.value, depth + 1);
            for c in t.children() {
                if c.is_err() {
                    break;
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    walk(data, 0);
    let parsed: Result<Vec<_>, _> = tlv::parse(data).collect();
    if let Ok(objs) = parsed {
        let mut b = TlvBuilder::new();
        for o in &objs {
            b.add(o.tag, o.value);
        }
        let bytes = b.finish();
        let again: Vec<_> = tlv::parse(&bytes).collect::<Result<_, _>>().expect("rebuilt TLV parses");
        assert_eq!(again.len(), objs.len());
        for (x, y) in again.iter().zip(&objs) {
            assert_eq!((x.tag, x.value), (y.tag, y.value));
        }
    }
    let _ = tlv::find(data, tlv::Tag(0x9F26));
});
