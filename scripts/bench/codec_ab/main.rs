//! Old and new codec in one process (see `scripts/bench/codec_ab.sh`): the 0200 purchase
//! decoded by `MessageView::decode`, decoded into an owned `Message` (`Message::decode` of
//! a clone of a shared `Bytes`, as `benches/codec.rs` does it) and built from text +
//! encoded, by each version in
//! turn, many short rounds, so that whatever else the machine does falls on both alike.
//! Prints per dialect and operation the median ns of each version and the median and
//! quartiles of the per-round ratio new / old.

const SAMPLE: &str = include_str!("purchase-0200.json");

macro_rules! version {
    ($m:ident, $krate:ident) => {
        mod $m {
            use bytes::{Bytes, BytesMut};
            use std::hint::black_box;
            pub use $krate::{Dialect, Message, MessageView};

            /// The sample's fields the dialect defines (cup-pos: plus 26, 53, 60), in order.
            pub fn values(d: &Dialect) -> Vec<(u8, String)> {
                let v: serde_json::Value = serde_json::from_str(super::SAMPLE).expect("sample");
                let mut out: Vec<(u8, String)> = v["fields"]
                    .as_object()
                    .expect("fields")
                    .iter()
                    .map(|(k, val)| (k.parse().expect("number"), val.as_str().expect("text").to_string()))
                    .filter(|(n, _)| d.field(*n).is_some())
                    .collect();
                if d.name() == "cup-pos" {
                    out.push((26, "12".into()));
                    out.push((53, "2600000000000000".into()));
                    out.push((60, "22000001000".into()));
                }
                out.sort_by_key(|(n, _)| *n);
                out
            }

            pub fn bytes(d: &Dialect) -> Vec<u8> {
                let mut m = Message::new(d, "0200".parse().expect("mti"));
                for (n, t) in values(d) {
                    m.set(n, &t).expect("field");
                }
                m.to_bytes().expect("encode").to_vec()
            }

            /// `n` decodes as `benches/codec.rs` does them; the time in ns.
            #[inline(never)]
            pub fn decode(d: &Dialect, bytes: &[u8], n: u32) -> u128 {
                let t = std::time::Instant::now();
                for _ in 0..n {
                    let v = MessageView::decode(d, black_box(bytes)).expect("decode");
                    black_box(v.raw(11));
                }
                t.elapsed().as_nanos()
            }

            /// `n` owned decodes as `benches/codec.rs` does them; the time in ns.
            #[inline(never)]
            pub fn message_decode(d: &Dialect, bytes: &Bytes, n: u32) -> u128 {
                let t = std::time::Instant::now();
                for _ in 0..n {
                    let m = Message::decode(d, black_box(bytes.clone())).expect("decode");
                    black_box(m.has(11));
                }
                t.elapsed().as_nanos()
            }

            /// `n` builds + encodes as `benches/codec.rs` does them; the time in ns.
            #[inline(never)]
            pub fn build_encode(d: &Dialect, values: &[(u8, String)], n: u32) -> u128 {
                let mut out = BytesMut::with_capacity(1024);
                let t = std::time::Instant::now();
                for _ in 0..n {
                    let mut m = Message::new(d, "0200".parse().expect("mti"));
                    for (f, v) in black_box(values) {
                        m.set(*f, v).expect("valid field");
                    }
                    out.clear();
                    m.encode(&mut out).expect("encode");
                    black_box(out.len());
                }
                t.elapsed().as_nanos()
            }
        }
    };
}
version!(old, isoswitch_codec_old);
version!(new, isoswitch_codec);

fn quart(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (q(0.25), q(0.5), q(0.75))
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let n = 20_000u32;
    println!("{rounds} rounds of {n} operations per version, alternating (order swapped each round)");
    for name in ["iso87-ascii", "iso87-binary", "cup-pos"] {
        let (od, nd) = (
            old::Dialect::builtin(name).expect("old dialect"),
            new::Dialect::builtin(name).expect("new dialect"),
        );
        let bytes = new::bytes(&nd);
        assert_eq!(old::bytes(&od), bytes, "{name}: both versions encode the sample alike");
        let (ov, nv) = (old::values(&od), new::values(&nd));
        let shared = bytes::Bytes::from(bytes.clone());
        for op in ["decode", "message_decode", "build_encode"] {
            let run = |which: bool| -> f64 {
                let ns = match (op, which) {
                    ("decode", false) => old::decode(&od, &bytes, n),
                    ("decode", true) => new::decode(&nd, &bytes, n),
                    ("message_decode", false) => old::message_decode(&od, &shared, n),
                    ("message_decode", true) => new::message_decode(&nd, &shared, n),
                    (_, false) => old::build_encode(&od, &ov, n),
                    (_, true) => new::build_encode(&nd, &nv, n),
                };
                ns as f64 / n as f64
            };
            // Warm-up.
            run(false);
            run(true);
            let (mut o, mut w, mut r) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..rounds {
                let (a, b) = if i % 2 == 0 {
                    let a = run(false);
                    (a, run(true))
                } else {
                    let b = run(true);
                    (run(false), b)
                };
                o.push(a);
                w.push(b);
                r.push(b / a);
            }
            let (_, om, _) = quart(&mut o);
            let (_, wm, _) = quart(&mut w);
            let (r1, rm, r3) = quart(&mut r);
            println!(
                "{name:13} {op:13} old {om:6.1} ns  new {wm:6.1} ns  new/old {rm:.3} (quartiles {r1:.3}..{r3:.3})"
            );
        }
    }
}
