//! Composite fields: fields made of subfields (positional, tagged, BER-TLV, bitmapped),
//! nested up to [`MAX_DEPTH`] levels, compiled from the dialect's [`Composite`] specs.
//!
//! - Decoding validates every level (`Node::validate`, no allocation) and reading walks
//!   offsets ([`SubfieldIter`], [`FieldRef::get_path`]), also without allocating.
//! - Editing (`Node::edit`) splits a composite's content into its elements, replaces one
//!   and writes the content again with lengths and bitmaps recomputed; the other elements
//!   are copied byte for byte (unknown tags included).
//! - The JSON form (`Node::content_from_json`) builds a composite's canonical content from a
//!   nested object.

use crate::bitmap::BitmapEncoding;
use crate::ebcdic;
use crate::error::{CodecError, ErrorKind, FieldPath, KeyStyle, Result, MAX_DEPTH};
use crate::field::FieldRef;
use crate::hot::{hex16, Hot};
use crate::spec::{
    BitmapFormat, Composite, ContentClass, ContentEncoding, FieldSpec, LengthUnit, Sensitivity,
    TagEncoding, TagFormat, UnknownTags,
};
use crate::tlv;
use std::borrow::Cow;

/// A compiled composite: its kind and its subfields, sorted by key.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) children: Vec<Child>,
    pub(crate) keep_unknown: bool,
    /// What a subelement with a tag the table does not define is read as.
    pub(crate) unknown: Child,
    /// Tagged: every element's length prefix counts its content bytes (no subfield is
    /// hex or BCD counting otherwise), so an element is skipped by its prefix alone,
    /// without looking its tag up.
    pub(crate) skip_by_prefix: bool,
    /// Tagged, skipped by prefix, with decimal tags and ASCII length digits (DE 48
    /// style): the tag width and the prefix width, for [`Node::find`]'s short loop.
    pub(crate) ascii_tagged: Option<(u8, u8)>,
    /// How the subfields' keys are written (from `kind`).
    pub(crate) style: KeyStyle,
    /// Tagged and bitmapped composites whose keys are all under [`DIRECT_KEYS`]: the
    /// index in `children` of each key (`u8::MAX`: none), for [`Node::child`].
    pub(crate) direct: Vec<u8>,
}

/// Keys below this are looked up through [`Node::direct`].
const DIRECT_KEYS: u32 = 1024;

#[derive(Debug, Clone, Copy)]
pub(crate) enum NodeKind {
    Positional,
    Tagged(TagFormat),
    Tlv,
    Bitmapped(BitmapFormat),
}

/// One subfield: its key, spec, decoder entry and inner structure.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) key: u32,
    pub(crate) spec: FieldSpec,
    pub(crate) hot: Hot,
    pub(crate) node: Option<Box<Node>>,
}

fn bad(path: FieldPath, what: String) -> CodecError {
    CodecError::path(path, 0, ErrorKind::BadDialect { what })
}

/// The key of a tag on the wire.
#[inline]
fn tag_key(enc: TagEncoding, t: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    match enc {
        TagEncoding::Digits => {
            for &c in t {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    return None;
                }
                v = v * 10 + d as u32;
            }
        }
        TagEncoding::Ebcdic => {
            for &c in t {
                let d = c.wrapping_sub(0xF0);
                if d > 9 {
                    return None;
                }
                v = v * 10 + d as u32;
            }
        }
        TagEncoding::Bcd => {
            for &c in t {
                let (h, l) = (c >> 4, c & 15);
                if h > 9 || l > 9 {
                    return None;
                }
                v = v * 100 + (h * 10 + l) as u32;
            }
        }
        TagEncoding::Text => {
            for &c in t {
                if c == 0 {
                    return None;
                }
                v = (v << 8) | c as u32;
            }
        }
        TagEncoding::Binary => {
            for &c in t {
                v = (v << 8) | c as u32;
            }
        }
    }
    Some(v)
}

/// Writes `key` as a tag of `fmt`; `false` if it does not fit.
fn put_tag(fmt: TagFormat, key: u32, out: &mut Vec<u8>) -> bool {
    let w = fmt.width as usize;
    let start = out.len();
    let mut v = key as u64;
    out.resize(start + w, 0);
    let t = &mut out[start..];
    match fmt.encoding {
        TagEncoding::Digits | TagEncoding::Ebcdic => {
            let base = if fmt.encoding == TagEncoding::Digits {
                b'0'
            } else {
                0xF0
            };
            for b in t.iter_mut().rev() {
                *b = base + (v % 10) as u8;
                v /= 10;
            }
        }
        TagEncoding::Bcd => {
            for b in t.iter_mut().rev() {
                let lo = (v % 10) as u8;
                v /= 10;
                let hi = (v % 10) as u8;
                v /= 10;
                *b = hi << 4 | lo;
            }
        }
        TagEncoding::Text | TagEncoding::Binary => {
            for b in t.iter_mut().rev() {
                *b = v as u8;
                v >>= 8;
            }
        }
    }
    let ok = v == 0 && tag_key(fmt.encoding, &out[start..]) == Some(key);
    if !ok {
        out.truncate(start);
    }
    ok
}

/// Content start, end and units of the element written at `pos` (its prefix first), if it
/// fits in `buf` and its prefix is well formed. The content is not checked.
#[inline(always)]
pub(crate) fn span(h: &Hot, buf: &[u8], pos: usize) -> Option<(usize, usize, usize)> {
    let (units, start, len) = if h.fixed {
        (h.max as usize, pos, h.fixed_wire as usize)
    } else {
        let plen = h.prefix_len as usize;
        let units = h.prefix(buf.get(pos..pos + plen)?)?;
        (units, pos + plen, h.wire_len(units))
    };
    let end = start + len;
    (end <= buf.len()).then_some((start, end, units))
}

/// Names the error of the element of `spec` at `pos` (the fast checks failed).
#[cold]
#[inline(never)]
fn element_error(spec: &FieldSpec, buf: &[u8], pos: usize, path: FieldPath) -> CodecError {
    let rest = &buf[pos.min(buf.len())..];
    let (units, plen) = if spec.is_fixed() {
        (spec.max as usize, 0)
    } else {
        match spec.read_prefix(path.field(), rest, pos) {
            Ok(u) => (u, spec.prefix_len()),
            Err(e) => return e.at_path(path),
        }
    };
    let start = pos + plen;
    let wire = spec.wire_len(units);
    match buf.get(start..start + wire) {
        Some(content) => match spec.validate_wire(path.field(), content, units, start) {
            Err(e) => e.at_path(path),
            Ok(()) => CodecError::path(path, start, ErrorKind::BadValue { what: "content" }),
        },
        None => CodecError::path(
            path,
            start,
            ErrorKind::Truncated {
                needed: start + wire - buf.len(),
            },
        ),
    }
}

/// A composite's own bitmap at `pos`: the words and its length on the wire.
fn read_bitmap(fmt: BitmapFormat, buf: &[u8], pos: usize) -> Option<([u64; 2], usize)> {
    let words = fmt.bytes as usize / 8;
    let wlen = fmt.encoding.len();
    let mut w = [0u64; 2];
    for (i, slot) in w.iter_mut().enumerate().take(words) {
        let at = pos + i * wlen;
        let b = buf.get(at..at + wlen)?;
        *slot = match fmt.encoding {
            BitmapEncoding::Binary => u64::from_be_bytes(b.try_into().ok()?),
            BitmapEncoding::Hex => hex16(b.try_into().ok()?)?,
            BitmapEncoding::EbcdicHex => {
                let mut a = [0u8; 16];
                for (o, &c) in a.iter_mut().zip(b) {
                    *o = ebcdic::to_ascii(c);
                }
                hex16(&a)?
            }
        };
    }
    Some((w, words * wlen))
}

/// The set bits of a composite bitmap, lowest first (subfield numbers 1..=128).
#[derive(Clone, Copy)]
struct Bits([u64; 2]);

impl Iterator for Bits {
    type Item = u32;
    #[inline]
    fn next(&mut self) -> Option<u32> {
        for (i, w) in self.0.iter_mut().enumerate() {
            if *w != 0 {
                let lz = w.leading_zeros();
                *w &= !(1u64 << (63 - lz));
                return Some(i as u32 * 64 + lz + 1);
            }
        }
        None
    }
}

/// Units of a BER-TLV value of `len` bytes for a subfield with entry `h`.
#[inline]
fn tlv_units(spec: &FieldSpec, len: usize) -> usize {
    match (spec.encoding, spec.length_unit()) {
        (ContentEncoding::Bcd, LengthUnit::Digits)
        | (ContentEncoding::Binary, LengthUnit::Digits) => len * 2,
        (ContentEncoding::Hex, LengthUnit::Bytes) => len / 2,
        _ => len,
    }
}

impl Node {
    /// Compiles the composite of `parent` (at `path`) and its subfields, checking them.
    pub(crate) fn build(parent: &FieldSpec, c: &Composite, path: FieldPath) -> Result<Node> {
        if path.depth() >= MAX_DEPTH {
            return Err(bad(
                path,
                format!("field {path}: composites nest at most {MAX_DEPTH} levels deep"),
            ));
        }
        let text_like = matches!(
            (parent.encoding, parent.length_unit()),
            (
                ContentEncoding::Ascii | ContentEncoding::Ebcdic,
                LengthUnit::Characters
            ) | (
                ContentEncoding::Ascii | ContentEncoding::Ebcdic | ContentEncoding::Binary,
                LengthUnit::Bytes
            )
        );
        if !text_like {
            return Err(bad(
                path,
                format!(
                    "field {path}: a composite's length must count its bytes (ASCII, EBCDIC \
                     or binary content)"
                ),
            ));
        }
        let (kind, keep_unknown) = match c {
            Composite::Positional { .. } => (NodeKind::Positional, false),
            Composite::Tagged { tag, unknown, .. } => {
                let max_w = match tag.encoding {
                    TagEncoding::Digits | TagEncoding::Ebcdic => 9,
                    _ => 4,
                };
                if tag.width == 0 || tag.width > max_w {
                    return Err(bad(
                        path,
                        format!("field {path}: tag width must be 1..={max_w}"),
                    ));
                }
                (NodeKind::Tagged(*tag), *unknown == UnknownTags::Keep)
            }
            Composite::Tlv { unknown, .. } => {
                if parent.encoding != ContentEncoding::Binary {
                    return Err(bad(
                        path,
                        format!("field {path}: BER-TLV content must be binary"),
                    ));
                }
                (NodeKind::Tlv, *unknown == UnknownTags::Keep)
            }
            Composite::Bitmapped { bitmap, .. } => {
                if bitmap.bytes != 8 && bitmap.bytes != 16 {
                    return Err(bad(
                        path,
                        format!("field {path}: a composite bitmap has 8 or 16 bytes"),
                    ));
                }
                (NodeKind::Bitmapped(*bitmap), false)
            }
        };
        let style = kind_style(kind);
        // What an unknown tag's value is read as.
        let mut unknown = FieldSpec::new(
            "unknown tag",
            ContentClass::B,
            crate::spec::LengthKind::LLLL,
            65535,
        )
        .encoding(if parent.encoding == ContentEncoding::Binary {
            ContentEncoding::Binary
        } else {
            parent.encoding
        });
        unknown.unit = Some(LengthUnit::Bytes);
        if let Composite::Tagged { length, .. } = c {
            unknown.length = length.length;
            unknown.length_encoding = length.encoding;
            unknown.max = unknown.prefix_capacity().min(65535) as u32;
            if unknown.is_fixed() {
                return Err(bad(
                    path,
                    format!("field {path}: a tagged composite needs a length prefix"),
                ));
            }
        }
        unknown.sensitive = parent.sensitive;
        let mut children = Vec::with_capacity(c.subfields().len());
        for (k, spec) in c.subfields() {
            let key = style.parse(k.trim().as_bytes()).ok_or_else(|| {
                bad(
                    path,
                    format!("field {path}: subfield key {k:?} is not a {style:?} key"),
                )
            })?;
            let cpath = path.child(key, style);
            spec.validate(path.field()).map_err(|e| match e.kind {
                ErrorKind::BadDialect { what } => bad(
                    cpath,
                    what.replacen(
                        &format!("field {}", path.field()),
                        &format!("field {cpath}"),
                        1,
                    ),
                ),
                _ => e.at_path(cpath),
            })?;
            match kind {
                NodeKind::Tagged(fmt) => {
                    let mut t = Vec::new();
                    if !put_tag(fmt, key, &mut t) {
                        return Err(bad(
                            cpath,
                            format!("field {cpath}: the tag does not fit the tag format"),
                        ));
                    }
                    if let Composite::Tagged { length, .. } = c {
                        if spec.length != length.length || spec.length_encoding != length.encoding {
                            return Err(bad(
                                cpath,
                                format!(
                                    "field {cpath}: a tagged subfield has the composite's \
                                     length prefix ({:?}, {:?})",
                                    length.length, length.encoding
                                ),
                            ));
                        }
                    }
                }
                NodeKind::Bitmapped(b) => {
                    if key == 0 || key > b.bytes as u32 * 8 {
                        return Err(bad(
                            cpath,
                            format!("field {cpath}: not a bit of the composite's bitmap"),
                        ));
                    }
                }
                NodeKind::Tlv => {
                    if key == 0 || tlv::header(&crate::tlv::Tag(key).bytes().0).is_none() {
                        return Err(bad(cpath, format!("field {cpath}: not a BER-TLV tag")));
                    }
                }
                NodeKind::Positional => {}
            }
            let node = match &spec.composite {
                Some(inner) => Some(Box::new(Node::build(spec, inner, cpath)?)),
                None => None,
            };
            children.push(Child {
                key,
                spec: spec.clone(),
                hot: Hot::of(spec),
                node,
            });
        }
        children.sort_by_key(|c| c.key);
        if children.windows(2).any(|w| w[0].key == w[1].key) {
            return Err(bad(
                path,
                format!("field {path}: a subfield key is repeated"),
            ));
        }
        if children.len() > 256 {
            return Err(bad(path, format!("field {path}: over 256 subfields")));
        }
        if let NodeKind::Positional = kind {
            for (i, ch) in children.iter().enumerate() {
                if ch.key != i as u32 + 1 {
                    return Err(bad(
                        path,
                        format!(
                            "field {path}: positional subfields are numbered 1, 2, … without gaps"
                        ),
                    ));
                }
            }
        }
        let skip_by_prefix = matches!(kind, NodeKind::Tagged(_))
            && children
                .iter()
                .all(|c| c.hot.wire == crate::hot::Wire::Same);
        let unknown_hot = Hot::of(&unknown);
        let direct = match kind {
            NodeKind::Tagged(_) | NodeKind::Bitmapped(_)
                if children.len() < u8::MAX as usize
                    && children.iter().all(|c| c.key < DIRECT_KEYS) =>
            {
                let top = children
                    .iter()
                    .map(|c| c.key as usize + 1)
                    .max()
                    .unwrap_or(0);
                let mut d = vec![u8::MAX; top];
                for (i, c) in children.iter().enumerate() {
                    d[c.key as usize] = i as u8;
                }
                d
            }
            _ => Vec::new(),
        };
        let ascii_tagged = match kind {
            NodeKind::Tagged(t)
                if skip_by_prefix
                    && t.encoding == TagEncoding::Digits
                    && unknown_hot.prefix == crate::spec::LengthEncoding::Ascii
                    && !unknown_hot.fixed =>
            {
                Some((t.width, unknown_hot.prefix_len))
            }
            _ => None,
        };
        Ok(Node {
            kind,
            children,
            keep_unknown,
            skip_by_prefix,
            ascii_tagged,
            style: kind_style(kind),
            direct,
            unknown: Child {
                key: 0,
                hot: unknown_hot,
                spec: unknown,
                node: None,
            },
        })
    }

    /// How keys of this composite's subfields are written.
    #[inline(always)]
    pub(crate) fn style(&self) -> KeyStyle {
        self.style
    }

    /// The subfield with `key`.
    #[inline]
    pub(crate) fn child(&self, key: u32) -> Option<&Child> {
        match self.kind {
            NodeKind::Positional => self
                .children
                .get((key as usize).wrapping_sub(1))
                .filter(|c| c.key == key),
            _ if !self.direct.is_empty() => {
                let i = *self.direct.get(key as usize)?;
                self.children.get(i as usize)
            }
            _ => self
                .children
                .binary_search_by_key(&key, |c| c.key)
                .ok()
                .map(|i| &self.children[i]),
        }
    }

    /// The subfield with `key`, or the unknown-tag spec when the composite keeps unknown
    /// tags; `None` when the key is not allowed.
    #[inline]
    fn child_or_unknown(&self, key: u32) -> Option<&Child> {
        self.child(key).or(if self.keep_unknown {
            Some(&self.unknown)
        } else {
            None
        })
    }

    /// The first element with `key` of (validated) content `buf`: its subfield, content
    /// start and end in `buf`, and units. The elements before it are skipped by their
    /// lengths (for a tagged composite whose prefixes all count bytes, without looking
    /// their tags up); nothing is allocated.
    #[inline(always)]
    pub(crate) fn find(&self, buf: &[u8], key: u32) -> Option<(&Child, usize, usize, usize)> {
        if let Some((w, l)) = self.ascii_tagged {
            return self.find_ascii_tagged(buf, key, w as usize, l as usize);
        }
        match self.kind {
            NodeKind::Positional => self.find_positional(buf, key),
            _ => self.find_other(buf, key),
        }
    }

    /// [`Node::find`] in a positional composite.
    #[inline]
    fn find_positional(&self, buf: &[u8], key: u32) -> Option<(&Child, usize, usize, usize)> {
        let i = (key as usize).checked_sub(1)?;
        let target = self.children.get(i)?;
        let mut pos = 0;
        for c in &self.children[..i] {
            if pos >= buf.len() {
                return None;
            }
            pos = span(&c.hot, buf, pos)?.1;
        }
        if pos >= buf.len() {
            return None;
        }
        let (s, e, u) = span(&target.hot, buf, pos)?;
        Some((target, s, e, u))
    }

    /// [`Node::find`] in a tagged (other than DE 48 style), bitmapped or BER-TLV composite.
    #[inline(never)]
    fn find_other(&self, buf: &[u8], key: u32) -> Option<(&Child, usize, usize, usize)> {
        match self.kind {
            NodeKind::Positional => self.find_positional(buf, key),
            NodeKind::Tagged(fmt) => {
                let w = fmt.width as usize;
                let mut at = 0;
                while at < buf.len() {
                    let k = tag_key(fmt.encoding, buf.get(at..at + w)?)?;
                    if k == key {
                        let c = self.child_or_unknown(key)?;
                        let (s, e, u) = span(&c.hot, buf, at + w)?;
                        return Some((c, s, e, u));
                    }
                    let h = if self.skip_by_prefix {
                        &self.unknown.hot
                    } else {
                        &self.child_or_unknown(k)?.hot
                    };
                    at = span(h, buf, at + w)?.1;
                }
                None
            }
            NodeKind::Bitmapped(fmt) => {
                let i = (key as usize).checked_sub(1)?;
                if i >= fmt.bytes as usize * 8 {
                    return None;
                }
                let (words, blen) = read_bitmap(fmt, buf, 0)?;
                if words[i / 64] & (1u64 << (63 - i % 64)) == 0 {
                    return None;
                }
                let mut pos = blen;
                for k in Bits(words) {
                    let c = self.child(k)?;
                    let (s, e, u) = span(&c.hot, buf, pos)?;
                    if k == key {
                        return Some((c, s, e, u));
                    }
                    pos = e;
                }
                None
            }
            NodeKind::Tlv => {
                let mut at = 0;
                loop {
                    while matches!(buf.get(at), Some(0x00 | 0xFF)) {
                        at += 1;
                    }
                    if at >= buf.len() {
                        return None;
                    }
                    let (tag, hl, vl) = tlv::header(&buf[at..])?;
                    let (s, e) = (at + hl, at + hl + vl);
                    if e > buf.len() {
                        return None;
                    }
                    if tag == key {
                        let c = self.child_or_unknown(tag)?;
                        return Some((c, s, e, tlv_units(&c.spec, vl)));
                    }
                    at = e;
                }
            }
        }
    }

    /// [`Node::find`] in a tagged composite of decimal tags `w` digits wide and ASCII
    /// length prefixes `l` digits wide counting bytes: one short loop per element.
    #[inline]
    fn find_ascii_tagged(
        &self,
        buf: &[u8],
        key: u32,
        w: usize,
        l: usize,
    ) -> Option<(&Child, usize, usize, usize)> {
        #[inline(always)]
        fn digits(b: &[u8]) -> Option<usize> {
            let d = |c: u8| c.wrapping_sub(b'0') as usize;
            match *b {
                [x, y] => {
                    let (x, y) = (d(x), d(y));
                    (x <= 9 && y <= 9).then_some(x * 10 + y)
                }
                [x, y, z] => {
                    let (x, y, z) = (d(x), d(y), d(z));
                    (x <= 9 && y <= 9 && z <= 9).then_some(x * 100 + y * 10 + z)
                }
                _ => {
                    let mut v = 0usize;
                    for &c in b {
                        if d(c) > 9 {
                            return None;
                        }
                        v = v * 10 + d(c);
                    }
                    Some(v)
                }
            }
        }
        let key = key as usize;
        let mut at = 0;
        while at < buf.len() {
            let head = buf.get(at..at + w + l)?;
            let (tag, len) = head.split_at(w);
            let (tag, len) = (digits(tag)?, digits(len)?);
            let s = at + w + l;
            let e = s + len;
            if e > buf.len() {
                return None;
            }
            if tag == key {
                let c = self.child_or_unknown(key as u32)?;
                // Every subfield counts bytes here (`skip_by_prefix`): units = bytes.
                return Some((c, s, e, len));
            }
            at = e;
        }
        None
    }

    /// Checks the content `buf[start..end]` (and every level below it). No allocation
    /// unless there is an error.
    pub(crate) fn validate(
        &self,
        buf: &[u8],
        start: usize,
        end: usize,
        path: FieldPath,
        dialect: &str,
    ) -> Result<()> {
        let Some(buf) = buf.get(..end) else {
            return Err(CodecError::path(
                path,
                start,
                ErrorKind::Truncated {
                    needed: end - buf.len(),
                },
            ));
        };
        let style = self.style();
        let not_defined = |p: FieldPath, at: usize| {
            CodecError::path(
                p,
                at,
                ErrorKind::NotInDialect {
                    dialect: dialect.to_string(),
                },
            )
        };
        let element = |c: &Child, pos: usize, p: FieldPath| -> Result<usize> {
            match span(&c.hot, buf, pos) {
                Some((s, e, u)) => {
                    match &c.node {
                        Some(n) => n.validate(buf, s, e, p, dialect)?,
                        None => {
                            if !c.hot.content_ok(buf, s, e, u) {
                                return Err(element_error(&c.spec, buf, pos, p));
                            }
                        }
                    }
                    Ok(e)
                }
                None => Err(element_error(&c.spec, buf, pos, p)),
            }
        };
        let leftover =
            |pos: usize| CodecError::path(path, pos, ErrorKind::Leftover { count: end - pos });
        match self.kind {
            NodeKind::Positional => {
                let mut pos = start;
                for c in &self.children {
                    if pos == end {
                        return Ok(());
                    }
                    pos = element(c, pos, path.child(c.key, style))?;
                }
                if pos != end {
                    return Err(leftover(pos));
                }
            }
            NodeKind::Tagged(fmt) => {
                let w = fmt.width as usize;
                let mut seen = [0u64; 4];
                let mut pos = start;
                while pos < end {
                    let Some(t) = buf.get(pos..pos + w) else {
                        return Err(CodecError::path(
                            path,
                            pos,
                            ErrorKind::Truncated {
                                needed: pos + w - end,
                            },
                        ));
                    };
                    let Some(key) = tag_key(fmt.encoding, t) else {
                        return Err(CodecError::path(path, pos, ErrorKind::BadTag));
                    };
                    let p = path.child(key, style);
                    let c = match self.children.binary_search_by_key(&key, |c| c.key) {
                        Ok(i) => {
                            let c = &self.children[i];
                            let (wd, bit) = (i / 64, 1u64 << (i % 64));
                            if seen[wd] & bit != 0 {
                                return Err(CodecError::path(p, pos, ErrorKind::DuplicateTag));
                            }
                            seen[wd] |= bit;
                            c
                        }
                        Err(_) if self.keep_unknown => &self.unknown,
                        Err(_) => return Err(not_defined(p, pos)),
                    };
                    pos = element(c, pos + w, p)?;
                }
            }
            NodeKind::Bitmapped(fmt) => {
                let Some((words, blen)) = read_bitmap(fmt, buf, start) else {
                    let need = fmt.bytes as usize / 8 * fmt.encoding.len();
                    return Err(if start + need > end {
                        CodecError::path(
                            path,
                            start,
                            ErrorKind::Truncated {
                                needed: start + need - end,
                            },
                        )
                    } else {
                        CodecError::path(path, start, ErrorKind::BadHex)
                    });
                };
                let mut pos = start + blen;
                for k in Bits(words) {
                    let p = path.child(k, style);
                    let Some(c) = self.child(k) else {
                        return Err(not_defined(p, start));
                    };
                    pos = element(c, pos, p)?;
                }
                if pos != end {
                    return Err(leftover(pos));
                }
            }
            NodeKind::Tlv => {
                let mut pos = start;
                while pos < end {
                    if buf[pos] == 0x00 || buf[pos] == 0xFF {
                        pos += 1;
                        continue;
                    }
                    let tlv_err = |what, at| CodecError::path(path, at, ErrorKind::Tlv { what });
                    let Some((tag, hl, vl)) = tlv::header(&buf[pos..]) else {
                        return Err(tlv_err("bad tag or length", pos));
                    };
                    let (vs, ve) = (pos + hl, pos + hl + vl);
                    if ve > end {
                        return Err(tlv_err("value runs past the end", vs));
                    }
                    let p = path.child(tag, KeyStyle::Hex);
                    match self.child(tag) {
                        Some(c) => {
                            let units = tlv_units(&c.spec, vl);
                            c.spec
                                .check_units(path.field(), units)
                                .map_err(|e| CodecError::path(p, vs, e.kind))?;
                            match &c.node {
                                Some(n) => n.validate(buf, vs, ve, p, dialect)?,
                                None => {
                                    if !c.hot.content_ok(buf, vs, ve, units) {
                                        let e = c
                                            .spec
                                            .validate_wire(path.field(), &buf[vs..ve], units, vs)
                                            .err()
                                            .unwrap_or_else(|| {
                                                CodecError::field(
                                                    0,
                                                    vs,
                                                    ErrorKind::BadValue { what: "content" },
                                                )
                                            });
                                        return Err(e.at_path(p));
                                    }
                                }
                            }
                        }
                        None if self.keep_unknown => {}
                        None => return Err(not_defined(p, pos)),
                    }
                    pos = ve;
                }
            }
        }
        Ok(())
    }

    /// The elements of (validated) content: key, the whole element (tag, prefix and
    /// content) and its content, as ranges of `content`, and the units.
    fn split(&self, content: &[u8]) -> Vec<Elem> {
        let mut out = Vec::new();
        let mut it = SubfieldIter::new(self, content, 0, FieldPath::top(0), 0);
        while let Some((key, whole, s, e, units, _)) = it.step() {
            out.push(Elem {
                key,
                whole,
                content: (s, e),
                units,
            });
        }
        out
    }

    /// Writes `items` (in order; sorted first for positional and bitmapped composites)
    /// as this composite's content.
    fn assemble(
        &self,
        content: &[u8],
        items: &mut [(u32, Item)],
        path: FieldPath,
    ) -> Result<Vec<u8>> {
        let style = self.style();
        if matches!(self.kind, NodeKind::Positional | NodeKind::Bitmapped(_)) {
            items.sort_by_key(|(k, _)| *k);
        }
        let mut out = Vec::with_capacity(content.len() + 32);
        if let NodeKind::Positional = self.kind {
            for (i, (k, _)) in items.iter().enumerate() {
                if *k != i as u32 + 1 {
                    return Err(CodecError::path(
                        path,
                        0,
                        ErrorKind::Gap {
                            missing: i as u32 + 1,
                        },
                    ));
                }
            }
        }
        if let NodeKind::Bitmapped(fmt) = self.kind {
            let mut w = [0u64; 2];
            for (k, _) in items.iter() {
                let i = (*k - 1) as usize;
                w[i / 64] |= 1u64 << (63 - i % 64);
            }
            for word in w.iter().take(fmt.bytes as usize / 8) {
                let (b, l) = crate::bitmap::Bitmap::word_bytes(fmt.encoding, *word);
                out.extend_from_slice(&b[..l]);
            }
        }
        for (k, item) in items.iter() {
            match item {
                Item::Whole(r) => out.extend_from_slice(&content[r.0..r.1]),
                Item::Built(bytes, units) => {
                    let c = self.child_or_unknown(*k).ok_or_else(|| {
                        CodecError::path(path.child(*k, style), 0, ErrorKind::BadFieldNumber)
                    })?;
                    match self.kind {
                        NodeKind::Tagged(fmt) => {
                            put_tag(fmt, *k, &mut out);
                        }
                        NodeKind::Tlv => {
                            let (b, l) = tlv::Tag(*k).bytes();
                            out.extend_from_slice(&b[..l]);
                            tlv::put_length(bytes.len(), &mut out);
                        }
                        _ => {}
                    }
                    if !matches!(self.kind, NodeKind::Tlv) {
                        let (p, l) = c.hot.prefix_bytes(*units);
                        out.extend_from_slice(&p[..l]);
                    }
                    out.extend_from_slice(bytes);
                }
            }
        }
        Ok(out)
    }

    /// Encodes `value` for subfield `c` (text form; raw content for a composite).
    fn encode_value(c: &Child, value: &[u8], p: FieldPath, dialect: &str) -> Result<Item> {
        let mut out = Vec::with_capacity(value.len());
        let units = if let Some(n) = &c.node {
            n.validate(value, 0, value.len(), p, dialect)?;
            out.extend_from_slice(value);
            value.len()
        } else {
            c.spec
                .text_to_wire(p.field(), value, &mut out)
                .map_err(|e| e.at_path(p))?
        };
        c.spec
            .check_units(p.field(), units)
            .map_err(|e| e.at_path(p))?;
        Ok(Item::Built(out, units))
    }

    /// The content with subfield `rest` (path elements below this composite) set to
    /// `value`, or removed when `value` is `None`; the other elements are copied as they
    /// are. `content` is this composite's current (valid) content.
    pub(crate) fn edit(
        &self,
        content: &[u8],
        rest: &[&[u8]],
        value: Option<&[u8]>,
        path: FieldPath,
        dialect: &str,
    ) -> Result<Vec<u8>> {
        let style = self.style();
        let Some((&seg, deeper)) = rest.split_first() else {
            return Err(CodecError::path(
                path,
                0,
                ErrorKind::BadPath {
                    what: "empty path".into(),
                },
            ));
        };
        let key = style.parse(seg).ok_or_else(|| {
            CodecError::path(
                path,
                0,
                ErrorKind::BadPath {
                    what: format!(
                        "{:?} is not a subfield key of {path}",
                        String::from_utf8_lossy(seg)
                    ),
                },
            )
        })?;
        let p = path.child(key, style);
        let Some(c) = self.child_or_unknown(key) else {
            return Err(CodecError::path(
                p,
                0,
                ErrorKind::NotInDialect {
                    dialect: dialect.to_string(),
                },
            ));
        };
        let elems = self.split(content);
        let existing = elems.iter().position(|e| e.key == key);
        let new_item = if deeper.is_empty() {
            match value {
                None => None,
                Some(v) => Some(Node::encode_value(c, v, p, dialect)?),
            }
        } else {
            let Some(node) = &c.node else {
                return Err(CodecError::path(
                    p,
                    0,
                    ErrorKind::BadPath {
                        what: format!("{p} is not a composite"),
                    },
                ));
            };
            let sub: &[u8] = match existing {
                Some(i) => &content[elems[i].content.0..elems[i].content.1],
                None if value.is_none() => return Ok(content.to_vec()),
                None => &[],
            };
            let built = node.edit(sub, deeper, value, p, dialect)?;
            c.spec
                .check_units(p.field(), built.len())
                .map_err(|e| e.at_path(p))?;
            let n = built.len();
            Some(Item::Built(built, n))
        };
        let mut items: Vec<(u32, Item)> = elems
            .iter()
            .map(|e| (e.key, Item::Whole(e.whole)))
            .collect();
        match (existing, new_item) {
            (Some(i), Some(it)) => items[i] = (key, it),
            (Some(i), None) => {
                items.remove(i);
            }
            (None, Some(it)) => {
                let at = items
                    .iter()
                    .position(|(k, _)| *k > key)
                    .unwrap_or(items.len());
                items.insert(at, (key, it));
            }
            (None, None) => {}
        }
        self.assemble(content, &mut items, path)
    }

    /// The canonical content of this composite from the JSON object of its subfields.
    /// `inherited` is the enclosing field's sensitivity (for the masked-value check).
    pub(crate) fn content_from_json(
        &self,
        obj: &serde_json::Map<String, serde_json::Value>,
        path: FieldPath,
        inherited: Sensitivity,
        dialect: &str,
    ) -> Result<Vec<u8>> {
        let style = self.style();
        let mut items = Vec::with_capacity(obj.len());
        for (k, v) in obj {
            let key = style.parse(k.as_bytes()).ok_or_else(|| {
                CodecError::path(
                    path,
                    0,
                    ErrorKind::BadJson {
                        what: format!("{k:?} is not a subfield key of field {path}"),
                    },
                )
            })?;
            let p = path.child(key, style);
            let c = self.child_or_unknown(key).ok_or_else(|| {
                CodecError::path(
                    p,
                    0,
                    ErrorKind::NotInDialect {
                        dialect: dialect.to_string(),
                    },
                )
            })?;
            let sens = if c.spec.sensitive == Sensitivity::None {
                inherited
            } else {
                c.spec.sensitive
            };
            let item = match (v, &c.node) {
                (serde_json::Value::String(s), None) => {
                    Node::encode_value(c, s.as_bytes(), p, dialect)
                        .map_err(|e| crate::mask::masked_error(sens, s, e))?
                }
                (serde_json::Value::Object(o), Some(n)) => {
                    let built = n.content_from_json(o, p, sens, dialect)?;
                    c.spec
                        .check_units(p.field(), built.len())
                        .map_err(|e| e.at_path(p))?;
                    let len = built.len();
                    Item::Built(built, len)
                }
                (serde_json::Value::String(_), Some(_)) => {
                    return Err(CodecError::path(
                        p,
                        0,
                        ErrorKind::WrongShape {
                            what: "a composite needs an object of subfields, not a string",
                        },
                    ))
                }
                (serde_json::Value::Object(_), None) => {
                    return Err(CodecError::path(
                        p,
                        0,
                        ErrorKind::WrongShape {
                            what: "not a composite: its value must be a string",
                        },
                    ))
                }
                _ => {
                    return Err(CodecError::path(
                        p,
                        0,
                        ErrorKind::WrongShape {
                            what: "a value must be a string or an object",
                        },
                    ))
                }
            };
            items.push((key, item));
        }
        items.sort_by_key(|(k, _)| *k);
        self.assemble(&[], &mut items, path)
    }
}

fn kind_style(kind: NodeKind) -> KeyStyle {
    match kind {
        NodeKind::Positional | NodeKind::Bitmapped(_) => KeyStyle::Decimal,
        NodeKind::Tagged(t) => match t.encoding {
            TagEncoding::Digits | TagEncoding::Ebcdic | TagEncoding::Bcd => KeyStyle::Decimal,
            TagEncoding::Text => KeyStyle::Text,
            TagEncoding::Binary => KeyStyle::Hex,
        },
        NodeKind::Tlv => KeyStyle::Hex,
    }
}

/// One element of a composite's content (ranges relative to the content).
struct Elem {
    key: u32,
    whole: (usize, usize),
    content: (usize, usize),
    #[allow(dead_code)]
    units: usize,
}

/// A subfield's new value, or an element kept as it is.
enum Item {
    Whole((usize, usize)),
    Built(Vec<u8>, usize),
}

/// One element: key, whole range, content start and end, units, subfield.
type Step<'a> = (u32, (usize, usize), usize, usize, usize, &'a Child);

/// The subfields of a composite's (validated) content, in wire order; borrows the
/// message bytes and allocates nothing.
#[derive(Clone)]
pub struct SubfieldIter<'a> {
    node: &'a Node,
    buf: &'a [u8],
    pos: usize,
    index: usize,
    bits: Option<Bits>,
    base: usize,
    path: FieldPath,
    number: u8,
}

impl<'a> SubfieldIter<'a> {
    /// No subfields (a plain field).
    pub(crate) fn empty() -> Self {
        static EMPTY: std::sync::OnceLock<Node> = std::sync::OnceLock::new();
        let node = EMPTY.get_or_init(|| Node {
            kind: NodeKind::Positional,
            children: Vec::new(),
            keep_unknown: false,
            skip_by_prefix: false,
            ascii_tagged: None,
            style: KeyStyle::Decimal,
            direct: Vec::new(),
            unknown: Child {
                key: 0,
                spec: FieldSpec::new("", ContentClass::B, crate::spec::LengthKind::Fixed, 1),
                hot: Hot::default(),
                node: None,
            },
        });
        SubfieldIter::new(node, &[], 0, FieldPath::top(0), 0)
    }

    pub(crate) fn new(
        node: &'a Node,
        content: &'a [u8],
        base: usize,
        path: FieldPath,
        number: u8,
    ) -> Self {
        SubfieldIter {
            node,
            buf: content,
            pos: 0,
            index: 0,
            bits: None,
            base,
            path,
            number,
        }
    }

    /// The next element: key, whole range, content start and end, units, subfield.
    #[inline]
    fn step(&mut self) -> Option<Step<'a>> {
        let node = self.node;
        let buf = self.buf;
        let at = self.pos;
        match node.kind {
            NodeKind::Positional => {
                if at >= buf.len() {
                    return None;
                }
                let c = node.children.get(self.index)?;
                let (s, e, u) = span(&c.hot, buf, at)?;
                self.index += 1;
                self.pos = e;
                Some((c.key, (at, e), s, e, u, c))
            }
            NodeKind::Tagged(fmt) => {
                if at >= buf.len() {
                    return None;
                }
                let w = fmt.width as usize;
                let key = tag_key(fmt.encoding, buf.get(at..at + w)?)?;
                let c = node.child_or_unknown(key)?;
                let (s, e, u) = span(&c.hot, buf, at + w)?;
                self.pos = e;
                Some((key, (at, e), s, e, u, c))
            }
            NodeKind::Bitmapped(fmt) => {
                if self.bits.is_none() {
                    let (w, blen) = read_bitmap(fmt, buf, 0)?;
                    self.bits = Some(Bits(w));
                    self.pos = blen;
                }
                let at = self.pos;
                let k = self.bits.as_mut()?.next()?;
                let c = node.child(k)?;
                let (s, e, u) = span(&c.hot, buf, at)?;
                self.pos = e;
                Some((k, (at, e), s, e, u, c))
            }
            NodeKind::Tlv => {
                let mut at = at;
                while matches!(buf.get(at), Some(0x00 | 0xFF)) {
                    at += 1;
                }
                if at >= buf.len() {
                    return None;
                }
                let (tag, hl, vl) = tlv::header(&buf[at..])?;
                let (s, e) = (at + hl, at + hl + vl);
                if e > buf.len() {
                    return None;
                }
                let c = node.child_or_unknown(tag)?;
                self.pos = e;
                Some((tag, (at, e), s, e, tlv_units(&c.spec, vl), c))
            }
        }
    }
}

/// The subfield below `f` that `keys` lead to, one key per composite level (`f` itself
/// when `keys` has none): each level is a [`Node::find`] in the content of the level
/// above. No allocation.
#[inline(always)]
pub(crate) fn descend<'a>(
    mut f: FieldRef<'a>,
    mut keys: impl crate::path::Keys,
) -> Option<FieldRef<'a>> {
    loop {
        let style = match f.node {
            Some(n) => n.style,
            None => KeyStyle::Decimal,
        };
        let Some(key) = keys.next_key(style) else {
            return Some(f);
        };
        let n = f.node?;
        let key = key?;
        let (c, s, e, u) = n.find(f.raw, key)?;
        f.spec = &c.spec;
        f.raw = f.raw.get(s..e)?;
        f.units = u;
        f.offset += s;
        f.node = c.node.as_deref();
        f.path.push(key, style);
    }
}

impl<'a> Iterator for SubfieldIter<'a> {
    type Item = FieldRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<FieldRef<'a>> {
        let (key, _, s, e, units, c) = self.step()?;
        Some(FieldRef {
            number: self.number,
            spec: &c.spec,
            raw: &self.buf[s..e],
            units,
            offset: self.base + s,
            node: c.node.as_deref(),
            path: self.path.child(key, self.node.style()),
        })
    }
}

/// Splits a path (`48.42.1`) into its elements.
pub(crate) fn segments(path: &str) -> impl Iterator<Item = &[u8]> {
    path.as_bytes().split(|&c| c == b'.')
}

/// The masked text of a subfield: its own sensitivity, or the enclosing field's.
pub(crate) fn masked_text<'a>(f: &FieldRef<'a>, inherited: Sensitivity) -> Cow<'a, str> {
    let s = if f.spec.sensitive == Sensitivity::None {
        inherited
    } else {
        f.spec.sensitive
    };
    crate::mask::mask(s, f.text())
}
