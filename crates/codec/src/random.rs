//! Random composite dialects and messages from a byte source, for property tests and
//! fuzzing: every input gives a valid dialect (nested up to four levels, every composite
//! kind) and a message of it, so that decode → JSON → encode can be checked on shapes no
//! hand-written test has.

use crate::bitmap::BitmapEncoding;
use crate::dialect::{Dialect, DialectDef, MacLayout};
use crate::message::Message;
use crate::mti::MtiEncoding;
use crate::spec::{
    BitmapFormat, Composite, ContentClass, ContentEncoding, FieldSpec, LengthEncoding, LengthKind,
    PrefixFormat, Sensitivity, TagEncoding, TagFormat, UnknownTags,
};
use std::collections::BTreeMap;

/// A source of choices: the bytes of a fuzz input or a property test's random vector.
/// Once exhausted it answers 0.
#[derive(Debug, Clone)]
pub struct Entropy<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Entropy<'a> {
    /// Choices from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Entropy { data, pos: 0 }
    }

    /// The next byte (0 once exhausted).
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        let v = (self.byte() as usize) << 8 | self.byte() as usize;
        v % n.max(1)
    }

    /// The bytes not used yet.
    pub fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }
}

const TLV_TAGS: &[u32] = &[
    0x57, 0x5A, 0x82, 0x84, 0x95, 0x9A, 0x9C, 0x5F2A, 0x9F02, 0x9F10, 0x9F26, 0x9F37, 0xDF8101,
];

fn leaf(
    e: &mut Entropy<'_>,
    length: Option<(LengthKind, LengthEncoding)>,
    binary: bool,
) -> FieldSpec {
    let (class, encoding) = match (binary, e.below(6)) {
        (true, 0 | 1) => (ContentClass::N, ContentEncoding::Bcd),
        (true, _) => (ContentClass::B, ContentEncoding::Binary),
        (false, 0) => (ContentClass::N, ContentEncoding::Ascii),
        (false, 1) => (ContentClass::A, ContentEncoding::Ascii),
        (false, 2) => (ContentClass::An, ContentEncoding::Ascii),
        (false, 3) => (ContentClass::N, ContentEncoding::Bcd),
        (false, 4) => (ContentClass::B, ContentEncoding::Hex),
        _ => (ContentClass::Ans, ContentEncoding::Ascii),
    };
    let (kind, lenc) = length.unwrap_or_else(|| match e.below(4) {
        0 | 1 => (LengthKind::Fixed, LengthEncoding::Ascii),
        2 => (LengthKind::LL, LengthEncoding::Ascii),
        _ => (LengthKind::LLL, LengthEncoding::Ascii),
    });
    let mut s = FieldSpec::new("leaf", class, kind, 1 + e.below(12) as u32)
        .encoding(encoding)
        .length_encoding(lenc);
    if encoding == ContentEncoding::Hex && s.max % 2 == 1 {
        s.max += 1;
    }
    if e.below(8) == 0 {
        s.sensitive = Sensitivity::Secret;
    }
    s
}

/// A composite spec (prefixed by `length`, or LLL ASCII) nested at most `depth` more levels.
fn composite(
    e: &mut Entropy<'_>,
    depth: u8,
    length: Option<(LengthKind, LengthEncoding)>,
    binary: bool,
) -> FieldSpec {
    let (kind, lenc) = length.unwrap_or((LengthKind::LLL, LengthEncoding::Ascii));
    let encoding = if binary {
        ContentEncoding::Binary
    } else {
        ContentEncoding::Ascii
    };
    let class = if binary {
        ContentClass::B
    } else {
        ContentClass::Ans
    };
    let mut spec = FieldSpec::new("composite", class, kind, 0).length_encoding(lenc);
    spec.encoding = encoding;
    spec.max = spec.prefix_capacity().min(9999) as u32;
    let count = 1 + e.below(5);
    let child = |e: &mut Entropy<'_>, len: Option<(LengthKind, LengthEncoding)>, bin: bool| {
        if depth > 0 && e.below(3) == 0 {
            composite(
                e,
                depth - 1,
                Some(len.unwrap_or((LengthKind::LLL, LengthEncoding::Ascii))),
                bin,
            )
        } else {
            leaf(e, len, bin)
        }
    };
    let mut subs = BTreeMap::new();
    let c = match e.below(if binary { 5 } else { 3 }) {
        0 => {
            for k in 1..=count {
                subs.insert(k.to_string(), child(e, None, binary));
            }
            Composite::Positional { subfields: subs }
        }
        1 => {
            let length = PrefixFormat {
                length: if e.below(2) == 0 {
                    LengthKind::LL
                } else {
                    LengthKind::LLL
                },
                encoding: LengthEncoding::Ascii,
            };
            for _ in 0..count {
                let k = e.below(100);
                subs.insert(
                    k.to_string(),
                    child(e, Some((length.length, length.encoding)), binary),
                );
            }
            Composite::Tagged {
                tag: TagFormat {
                    width: 2,
                    encoding: TagEncoding::Digits,
                },
                length,
                unknown: if e.below(2) == 0 {
                    UnknownTags::Keep
                } else {
                    UnknownTags::Reject
                },
                subfields: subs,
            }
        }
        2 => {
            let bytes = if e.below(2) == 0 { 8 } else { 16 };
            for _ in 0..count {
                let k = 1 + e.below(bytes * 8);
                subs.insert(k.to_string(), child(e, None, binary));
            }
            Composite::Bitmapped {
                bitmap: BitmapFormat {
                    encoding: if e.below(2) == 0 {
                        BitmapEncoding::Hex
                    } else {
                        BitmapEncoding::Binary
                    },
                    bytes: bytes as u8,
                },
                subfields: subs,
            }
        }
        _ => {
            for _ in 0..count {
                let t = TLV_TAGS[e.below(TLV_TAGS.len())];
                let mut s = leaf(e, Some((LengthKind::LLL, LengthEncoding::Binary)), true);
                // BER lengths count bytes: binary values only.
                s.class = ContentClass::B;
                s.encoding = ContentEncoding::Binary;
                subs.insert(format!("{t:X}"), s);
            }
            Composite::Tlv {
                unknown: UnknownTags::Keep,
                subfields: subs,
            }
        }
    };
    spec.composite = Some(c);
    spec
}

/// A valid dialect: ASCII MTI, hex or binary bitmaps, a few plain fields and one to three
/// composite fields (DE 48, 62, 127 style numbers) nested up to four levels.
pub fn dialect(e: &mut Entropy<'_>) -> Dialect {
    let mut fields = BTreeMap::new();
    fields.insert(
        "3".to_string(),
        FieldSpec::new("plain", ContentClass::N, LengthKind::Fixed, 6),
    );
    fields.insert("11".to_string(), leaf(e, None, false));
    for n in [48u8, 62, 127] {
        if n == 48 || e.below(2) == 0 {
            let binary = e.below(3) == 0;
            let len = match e.below(3) {
                0 => (LengthKind::LLL, LengthEncoding::Ascii),
                1 => (LengthKind::LLLL, LengthEncoding::Ascii),
                _ => (LengthKind::LLLLLL, LengthEncoding::Ascii),
            };
            fields.insert(n.to_string(), composite(e, 3, Some(len), binary));
        }
    }
    let def = DialectDef {
        name: "random".into(),
        description: "random composite dialect".into(),
        mti: MtiEncoding::Ascii,
        bitmap: if e.below(2) == 0 {
            BitmapEncoding::Hex
        } else {
            BitmapEncoding::Binary
        },
        secondary_bitmap: true,
        tertiary_bitmap: false,
        echo_fields: vec![],
        mac: MacLayout::default(),
        mti_versions: vec![],
        fields,
    };
    match Dialect::from_def(def) {
        Ok(d) => d,
        // Never for the shapes above (a test asserts it): the simplest dialect otherwise.
        Err(_) => Dialect::builtin("iso87-composite").unwrap_or_else(|| unreachable!()),
    }
}

/// Text of `len` units that the leaf `spec` accepts (or close to it).
fn text(e: &mut Entropy<'_>, spec: &FieldSpec) -> String {
    let len = if spec.is_fixed() {
        spec.max as usize
    } else {
        e.below(spec.max as usize + 1)
    };
    let len = match spec.encoding {
        // Binary values are written as hex text, two characters a byte.
        ContentEncoding::Binary => len * 2,
        ContentEncoding::Hex => len / 2 * 2,
        _ => len,
    };
    (0..len)
        .map(|_| {
            let pick = |set: &[u8], e: &mut Entropy<'_>| set[e.below(set.len())] as char;
            match spec.class {
                ContentClass::N => pick(b"0123456789", e),
                ContentClass::A => pick(b"abcXYZ", e),
                ContentClass::An => pick(b"abcXYZ059", e),
                ContentClass::B => pick(b"0123456789ABCDEF", e),
                _ => (0x20 + e.below(0x5F) as u8) as char,
            }
        })
        .collect()
}

fn fill(e: &mut Entropy<'_>, m: &mut Message, path: &str, spec: &FieldSpec, depth: u8) {
    match &spec.composite {
        None => {
            let t = text(e, spec);
            let _ = m.set_path(path, t);
        }
        Some(c) => {
            let positional = matches!(c, Composite::Positional { .. });
            for (k, sub) in c.subfields() {
                // Positional: a prefix of the subfields; others: any subset.
                if e.below(4) == 0 {
                    if positional {
                        break;
                    }
                    continue;
                }
                let p = format!("{path}.{k}");
                if sub.composite.is_some() && depth > 0 {
                    fill(e, m, &p, sub, depth - 1);
                } else if sub.composite.is_none() {
                    let t = text(e, sub);
                    if m.set_path(&p, t).is_err() && positional {
                        break;
                    }
                }
            }
            if m.get_path(path).is_none() {
                // An empty composite (present, no subfields).
                let _ = m.set_path(path, "");
            }
        }
    }
}

/// A message of `d` with a random subset of its fields and subfields set.
pub fn message(d: &Dialect, e: &mut Entropy<'_>) -> Message {
    let mti = format!("0{}{}0", 1 + e.below(8), e.below(10));
    let mut m = Message::new(d, mti.parse().unwrap_or(crate::mti::Mti::ZERO));
    for n in 2..=192u8 {
        if let Some(spec) = d.field(n) {
            if e.below(4) != 0 {
                let spec = spec.clone();
                fill(e, &mut m, &n.to_string(), &spec, 4);
            }
        }
    }
    m
}
