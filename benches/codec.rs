//! Codec benchmarks: decode, encode and decode-edit-encode of the typical 0200 purchase
//! (`tests/vectors/samples/purchase-0200.json`, 21 fields with DE 55) in `iso87-ascii`,
//! `iso87-binary` and `cup-pos` (for cup-pos: the sample's fields that dialect defines plus
//! its usual 26, 53 and 60 — 21 fields).
//!
//! Also: `message_decode` (the owned `Message::decode`, to compare with the view's
//! `decode`), `build_encode` (`Message::new`, the 21 fields set from text, encoded into a
//! reused buffer) and, in `codec/iso87-composite`, decoding the composite sample 04 and
//! reading `48.42.1` of the decoded view: by text (`get_path`) and by a
//! [`isoswitch::codec::Path`] parsed once (`at`).
//!
//! Run: `cargo bench --bench codec`.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use isoswitch::codec::{Dialect, Message, MessageView, Path};

const SAMPLE: &str = include_str!("../tests/vectors/samples/purchase-0200.json");

fn purchase(d: &Dialect) -> Message {
    let v: serde_json::Value = serde_json::from_str(SAMPLE).expect("sample JSON");
    let mut m = Message::new(d, "0200".parse().expect("mti"));
    for (k, val) in v["fields"].as_object().expect("fields") {
        let n: u8 = k.parse().expect("field number");
        if d.field(n).is_some() {
            m.set(n, val.as_str().expect("string"))
                .expect("valid sample field");
        }
    }
    if d.name() == "cup-pos" {
        m.set(26, "12").expect("26");
        m.set(53, "2600000000000000").expect("53");
        m.set(60, "22000001000").expect("60");
    }
    m
}

fn bench(c: &mut Criterion) {
    for name in ["iso87-ascii", "iso87-binary", "cup-pos"] {
        let d = Dialect::builtin(name).expect("dialect");
        let msg = purchase(&d);
        let bytes: Bytes = msg.to_bytes().expect("encode");
        let mut g = c.benchmark_group(format!("codec/{name}"));
        g.throughput(Throughput::Elements(1));

        g.bench_function("decode", |b| {
            b.iter(|| {
                let v = MessageView::decode(&d, black_box(&bytes)).expect("decode");
                black_box(v.raw(11));
            })
        });

        let mut out = BytesMut::with_capacity(1024);
        g.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                black_box(&msg).encode(&mut out).expect("encode");
                black_box(out.len());
            })
        });

        g.bench_function("message_decode", |b| {
            b.iter(|| {
                let m = Message::decode(&d, black_box(bytes.clone())).expect("decode");
                black_box(m.has(11));
            })
        });

        let values: Vec<(u8, String)> = msg
            .fields()
            .map(|f| (f.number(), f.text().into_owned()))
            .collect();
        g.bench_function("build_encode", |b| {
            b.iter(|| {
                let mut m = Message::new(&d, "0200".parse().expect("mti"));
                for (n, v) in black_box(&values) {
                    m.set(*n, v).expect("valid field");
                }
                out.clear();
                m.encode(&mut out).expect("encode");
                black_box(out.len());
            })
        });

        g.bench_function("decode_edit_encode", |b| {
            b.iter(|| {
                let mut m = Message::decode(&d, black_box(bytes.clone())).expect("decode");
                m.set(11, "000124").expect("stan");
                m.set(4, "000000002000").expect("amount");
                out.clear();
                m.encode(&mut out).expect("encode");
                black_box(out.len());
            })
        });
        g.finish();
    }
}

/// The composite sample 04 of `iso87-composite` (DE 48, 62, 127 with 127.22 of 1.4 KB).
fn composite(c: &mut Criterion) {
    let d = Dialect::builtin("iso87-composite").expect("dialect");
    let h = include_str!("../tests/vectors/composite/04.hex").trim();
    let bytes: Vec<u8> = (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
        .collect();
    let mut g = c.benchmark_group("codec/iso87-composite");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let v = MessageView::decode(&d, black_box(&bytes)).expect("decode");
            black_box(v.raw(11));
        })
    });
    let view = MessageView::decode(&d, &bytes).expect("decode");
    g.bench_function("read_48.42.1", |b| {
        b.iter(|| {
            black_box(
                black_box(&view)
                    .get_path(black_box("48.42.1"))
                    .map(|f| f.raw()),
            )
        })
    });
    let path = Path::parse("48.42.1").expect("path");
    g.bench_function("at_48.42.1", |b| {
        b.iter(|| black_box(black_box(&view).at(black_box(&path)).map(|f| f.raw())))
    });
    g.finish();
}

criterion_group!(benches, bench, composite);
criterion_main!(benches);
