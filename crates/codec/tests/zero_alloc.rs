//! Proof that decoding makes no heap allocation: a counting global allocator wraps the
//! system one, and decoding the typical 0200 purchase in every dialect (and reading its
//! raw fields) must leave the count of this thread unchanged; so must decoding a composite
//! sample and reading its subfields by path. Building the 21-field purchase and encoding it
//! into a reused buffer makes exactly one allocation (the message's arena).

use bytes::BytesMut;
use isoswitch_codec::{Dialect, Message, MessageView};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCS.with(|c| c.get())
}

const SAMPLE: &str = include_str!("../../../tests/vectors/samples/purchase-0200.json");

#[test]
fn decode_allocates_nothing() {
    for name in Dialect::builtin_names() {
        if *name == "iso87-composite" {
            continue; // its own test below: it lacks most of the purchase's fields
        }
        let d = Dialect::builtin(name).unwrap();
        // cup-pos has no fields 7, 18, 37, 43 and iso93 sizes 12 and 22 differently:
        // keep the fields the dialect accepts as they are.
        let v: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        let mut m = Message::new(&d, "0200".parse().unwrap());
        for (k, val) in v["fields"].as_object().unwrap() {
            let _ = m.set(k.parse().unwrap(), val.as_str().unwrap());
        }
        assert!(m.fields().count() >= 15, "{name}");
        let bytes = m.to_bytes().unwrap();

        let before = allocations();
        let view = MessageView::decode(&d, &bytes).unwrap();
        let mut total = 0usize;
        for f in view.fields() {
            total += f.raw().len();
        }
        let pan = view.raw(2).map(|r| r.len());
        let after = allocations();
        assert_eq!(after - before, 0, "{name}: decode allocated");
        assert!(total > 50 && pan.is_some(), "{name}");

        // malformed input: the error path allocates only for the dialect name in
        // NotInDialect; truncation errors allocate nothing
        let before = allocations();
        let r = MessageView::decode(&d, &bytes[..bytes.len() - 3]);
        let after = allocations();
        assert!(r.is_err());
        assert_eq!(after - before, 0, "{name}: truncated decode allocated");
    }
}

const COMPOSITE: &str = include_str!("../../../tests/vectors/composite/04.hex");

#[test]
fn composite_decode_and_paths_allocate_nothing() {
    let d = Dialect::builtin("iso87-composite").unwrap();
    let h = COMPOSITE.trim();
    let bytes: Vec<u8> = (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect();
    let path = isoswitch_codec::Path::parse("48.42.1").unwrap();
    let before = allocations();
    let view = MessageView::decode(&d, &bytes).unwrap();
    let a = view.get_path("48.42.1").map(|f| f.raw().len());
    assert_eq!(view.at(&path).map(|f| f.raw().len()), a);
    let b = view.get_path("127.25.2").map(|f| f.raw().len());
    let subs = view.field(127).unwrap().subfields().count();
    let after = allocations();
    assert_eq!(after - before, 0, "composite decode or path read allocated");
    assert_eq!((a, b, subs), (Some(1), Some(12), 4));
}

#[test]
fn build_and_encode_allocate_once() {
    let v: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
    let fields: Vec<(u8, String)> = v["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(fields.len(), 21);
    // cup-pos as benches/codec.rs builds it: the sample's fields it defines and its usual
    // 26, 53 and 60 (21, BCD ones among them).
    let cup_extra = [(26, "12"), (53, "2600000000000000"), (60, "22000001000")];
    for name in ["iso87-ascii", "iso87-binary", "cup-pos"] {
        let d = Dialect::builtin(name).unwrap();
        let mut set: Vec<(u8, &str)> = fields
            .iter()
            .filter(|(n, _)| d.field(*n).is_some())
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        if name == "cup-pos" {
            set.extend(cup_extra);
        }
        // In field order, as the bench sets them.
        set.sort_by_key(|(n, _)| *n);
        assert_eq!(set.len(), 21, "{name}");
        let mut out = BytesMut::with_capacity(1024);
        let before = allocations();
        let mut m = Message::new(&d, "0200".parse().unwrap());
        for (n, val) in &set {
            m.set(*n, val).unwrap();
        }
        m.encode(&mut out).unwrap();
        let after = allocations();
        assert_eq!(after - before, 1, "{name}: build + encode");
        assert!(out.len() > 150, "{name}");
    }
}
