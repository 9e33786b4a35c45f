//! Runs one codec operation N times, for instruction counts under valgrind's callgrind
//! (`valgrind --tool=callgrind target/release/examples/codec_count OP DIALECT N`; the
//! count for N = 11,000 minus the count for N = 1,000, over 10,000, is one operation).
//!
//! OP: `decode` (MessageView), `message_decode` (owned Message), `build_encode` (the
//! 21-field purchase set from text and encoded into a reused buffer), `path` (read
//! `48.42.1` of the decoded `iso87-composite` sample 04, through the string path),
//! `compiled_path` (the same through a [`isoswitch::codec::Path`] parsed once),
//! `composite_decode` (decode sample 04; run these three with DIALECT `iso87-composite`).

use bytes::{Bytes, BytesMut};
use isoswitch::codec::{Dialect, Message, MessageView, Path};
use std::hint::black_box;

const SAMPLE: &str = include_str!("../tests/vectors/samples/purchase-0200.json");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (op, name, n) = match args.as_slice() {
        [_, op, name, n] => (
            op.as_str(),
            name.as_str(),
            n.parse::<usize>().unwrap_or(1000),
        ),
        _ => {
            eprintln!("usage: codec_count OP DIALECT N");
            std::process::exit(2);
        }
    };
    let Some(d) = Dialect::builtin(name) else {
        eprintln!("unknown dialect {name}");
        std::process::exit(2);
    };
    let v: serde_json::Value = serde_json::from_str(SAMPLE).unwrap_or_default();
    let mut values: Vec<(u8, String)> = Vec::new();
    if let Some(fields) = v["fields"].as_object() {
        for (k, val) in fields {
            if let (Ok(f), Some(t)) = (k.parse::<u8>(), val.as_str()) {
                if d.field(f).is_some() {
                    values.push((f, t.to_string()));
                }
            }
        }
    }
    // In field order, as benches/codec.rs sets them.
    values.sort_by_key(|(f, _)| *f);
    let mut m = Message::new(&d, "0200".parse().unwrap_or(isoswitch::codec::Mti::ZERO));
    for (f, t) in &values {
        let _ = m.set(*f, t);
    }
    let bytes: Bytes = if matches!(op, "path" | "compiled_path" | "composite_decode") {
        let h = include_str!("../tests/vectors/composite/04.hex").trim();
        (0..h.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
            .collect::<Vec<u8>>()
            .into()
    } else {
        m.to_bytes().unwrap_or_default()
    };
    let view = MessageView::decode(&d, &bytes).ok();
    let compiled = Path::parse("48.42.1").ok();
    let mut out = BytesMut::with_capacity(4096);
    let mut acc = 0usize;
    for _ in 0..n {
        match op {
            "decode" => acc += decode_once(&d, &bytes),
            "message_decode" => {
                if let Ok(m) = Message::decode(&d, black_box(bytes.clone())) {
                    acc += m.has(11) as usize;
                }
            }
            "build_encode" => {
                let mut m = Message::new(&d, "0200".parse().unwrap_or(isoswitch::codec::Mti::ZERO));
                for (f, t) in black_box(&values) {
                    let _ = m.set(*f, t);
                }
                out.clear();
                let _ = m.encode(&mut out);
                acc += out.len();
            }
            "path" => {
                if let Some(v) = &view {
                    acc += black_box(v)
                        .get_path(black_box("48.42.1"))
                        .map_or(0, |f| f.raw().len());
                }
            }
            "compiled_path" => {
                if let (Some(v), Some(p)) = (&view, &compiled) {
                    acc += black_box(v).at(black_box(p)).map_or(0, |f| f.raw().len());
                }
            }
            "composite_decode" => {
                if let Ok(v) = MessageView::decode(&d, black_box(&bytes)) {
                    acc += v.raw(11).map_or(0, |r| r.len());
                }
            }
            _ => {
                eprintln!("unknown op {op}");
                std::process::exit(2);
            }
        }
    }
    println!("{acc}");
}

/// One decode as the bench's loop does it, in a function of its own so that its code is
/// what a caller's small loop gets (not the code of `main`'s large match).
#[inline(never)]
fn decode_once(d: &Dialect, bytes: &[u8]) -> usize {
    match MessageView::decode(d, black_box(bytes)) {
        Ok(v) => v.raw(11).map_or(0, |r| r.len()),
        Err(_) => 0,
    }
}
