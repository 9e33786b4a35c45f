//! BER-TLV (EMV data in DE 55): a zero-copy parser and a builder.
//!
//! Tags of one or more bytes (low five bits `11111` of the first byte announce more; bit 8
//! of each following byte announces another), short and long-form lengths (`81`–`84`),
//! constructed objects (bit 6 of the first tag byte) whose value is itself TLV. Padding
//! bytes `00` and `FF` between objects are skipped, as EMV allows. Values borrow the input.

use crate::error::{CodecError, ErrorKind, Location, Result};
use nom::bytes::complete::take;
use nom::number::complete::be_u8;
use nom::{IResult, Parser};
use std::fmt;

/// A BER-TLV tag: up to 4 bytes, kept as a big-endian number (`9F26` → `0x9F26`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub u32);

impl Tag {
    /// The tag's bytes (1 to 4).
    pub fn bytes(self) -> ([u8; 4], usize) {
        let b = self.0.to_be_bytes();
        let skip = b.iter().take_while(|&&x| x == 0).count().min(3);
        let mut out = [0u8; 4];
        out[..4 - skip].copy_from_slice(&b[skip..]);
        (out, 4 - skip)
    }

    fn first_byte(self) -> u8 {
        let (b, _) = self.bytes();
        b[0]
    }

    /// Whether the object is constructed (its value is a sequence of TLV objects).
    pub fn is_constructed(self) -> bool {
        self.first_byte() & 0x20 != 0
    }

    /// Tag class: 0 universal, 1 application, 2 context-specific, 3 private.
    pub fn class(self) -> u8 {
        self.first_byte() >> 6
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (b, n) = self.bytes();
        for x in &b[..n] {
            write!(f, "{x:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One TLV object borrowing its value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag.
    pub tag: Tag,
    /// The value bytes.
    pub value: &'a [u8],
    /// Offset of the tag within the parsed buffer.
    pub offset: usize,
    value_offset: usize,
}

impl<'a> Tlv<'a> {
    /// The nested objects of a constructed object (empty iterator for primitive ones).
    pub fn children(&self) -> TlvIter<'a> {
        if self.tag.is_constructed() {
            TlvIter {
                buf: self.value,
                pos: 0,
                base: self.value_offset,
                done: false,
            }
        } else {
            TlvIter {
                buf: &[],
                pos: 0,
                base: self.value_offset,
                done: true,
            }
        }
    }
}

impl fmt::Debug for Tlv<'_> {
    /// Values are not shown (EMV data may hold track-equivalent data); only tag and length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tlv({:?}, {} bytes)", self.tag, self.value.len())
    }
}

/// Iterator over the TLV objects of a buffer; yields an error once and then stops.
#[derive(Clone)]
pub struct TlvIter<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    done: bool,
}

impl<'a> TlvIter<'a> {
    /// Objects of `buf` (offsets in errors are relative to `buf`).
    pub fn new(buf: &'a [u8]) -> Self {
        TlvIter {
            buf,
            pos: 0,
            base: 0,
            done: false,
        }
    }
}

/// Objects of `buf`; see [`TlvIter`].
pub fn parse(buf: &[u8]) -> TlvIter<'_> {
    TlvIter::new(buf)
}

/// Finds the first object with `tag`, searching constructed objects depth-first.
pub fn find(buf: &[u8], tag: Tag) -> Result<Option<Tlv<'_>>> {
    fn walk<'a>(it: TlvIter<'a>, tag: Tag, depth: u8) -> Result<Option<Tlv<'a>>> {
        for t in it {
            let t = t?;
            if t.tag == tag {
                return Ok(Some(t));
            }
            if t.tag.is_constructed() && depth < 16 {
                if let Some(found) = walk(t.children(), tag, depth + 1)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }
    walk(TlvIter::new(buf), tag, 0)
}

fn tag(input: &[u8]) -> IResult<&[u8], (u32, usize)> {
    let (mut rest, first) = be_u8(input)?;
    let mut value = first as u32;
    let mut n = 1;
    if first & 0x1F == 0x1F {
        loop {
            let (r, b) = be_u8(rest)?;
            rest = r;
            value = (value << 8) | b as u32;
            n += 1;
            if b & 0x80 == 0 {
                break;
            }
            if n == 4 {
                return Err(nom::Err::Failure(nom::error::Error::new(
                    input,
                    nom::error::ErrorKind::TooLarge,
                )));
            }
        }
    }
    Ok((rest, (value, n)))
}

fn length(input: &[u8]) -> IResult<&[u8], usize> {
    let (rest, first) = be_u8(input)?;
    if first < 0x80 {
        return Ok((rest, first as usize));
    }
    let count = (first & 0x7F) as usize;
    if count == 0 || count > 4 {
        return Err(nom::Err::Failure(nom::error::Error::new(
            input,
            nom::error::ErrorKind::LengthValue,
        )));
    }
    let (rest, bytes) = take(count).parse(rest)?;
    Ok((
        rest,
        bytes.iter().fold(0usize, |v, &b| (v << 8) | b as usize),
    ))
}

/// The header of the BER-TLV object at the start of `input`: its tag, the header's
/// length (tag and length bytes) and the value's length; `None` if the header is malformed
/// (a tag over 4 bytes, a length form other than `00`–`7F`, `81`–`84`, or cut short). The
/// value may run past the end of `input`: the caller checks it.
pub(crate) fn header(input: &[u8]) -> Option<(u32, usize, usize)> {
    let (rest, (t, _)) = tag(input).ok()?;
    let (rest, len) = length(rest).ok()?;
    Some((t, input.len() - rest.len(), len))
}

/// Appends the BER length of `len` (short form under 128, long form otherwise).
pub(crate) fn put_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let lb = (len as u32).to_be_bytes();
        let skip = lb.iter().take_while(|&&x| x == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&lb[skip..]);
    }
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Result<Tlv<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        while let Some(&b) = self.buf.get(self.pos) {
            if b == 0x00 || b == 0xFF {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos >= self.buf.len() {
            self.done = true;
            return None;
        }
        let start = self.pos;
        let input = &self.buf[start..];
        let err = |what: &'static str, at: usize| {
            CodecError::new(Location::Field(55), at, ErrorKind::Tlv { what })
        };
        let parsed = (|| {
            let (rest, (t, _)) = tag(input).map_err(|_| err("bad tag", self.base + start))?;
            let after_tag = input.len() - rest.len();
            let (rest, len) =
                length(rest).map_err(|_| err("bad length", self.base + start + after_tag))?;
            let header = input.len() - rest.len();
            let value = rest
                .get(..len)
                .ok_or_else(|| err("value runs past the end", self.base + start + header))?;
            Ok((t, header, value))
        })();
        match parsed {
            Ok((t, header, value)) => {
                self.pos = start + header + value.len();
                Some(Ok(Tlv {
                    tag: Tag(t),
                    value,
                    offset: self.base + start,
                    value_offset: self.base + start + header,
                }))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Builds BER-TLV data.
#[derive(Debug, Default, Clone)]
pub struct TlvBuilder {
    out: Vec<u8>,
}

impl TlvBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn put_header(&mut self, tag: Tag, len: usize) {
        let (b, n) = tag.bytes();
        self.out.extend_from_slice(&b[..n]);
        put_length(len, &mut self.out);
    }

    /// Adds a primitive object.
    pub fn add(&mut self, tag: Tag, value: &[u8]) -> &mut Self {
        self.put_header(tag, value.len());
        self.out.extend_from_slice(value);
        self
    }

    /// Adds a constructed object whose content `f` builds.
    pub fn constructed(&mut self, tag: Tag, f: impl FnOnce(&mut TlvBuilder)) -> &mut Self {
        let mut inner = TlvBuilder::new();
        f(&mut inner);
        self.add(tag, &inner.out)
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMV: &str =
        "9F2608AABBCCDDEEFF00119F2701809F10120110A00003220000000000000000000000FF9F37045A1B2C3D";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn parses_sample_de55() {
        let data = hex(EMV);
        let objs: Vec<_> = parse(&data).collect::<Result<_>>().unwrap();
        let tags: Vec<u32> = objs.iter().map(|t| t.tag.0).collect();
        assert_eq!(tags, vec![0x9F26, 0x9F27, 0x9F10, 0x9F37]);
        assert_eq!(objs[0].value, &hex("AABBCCDDEEFF0011")[..]);
        assert_eq!(objs[1].value, &[0x80]);
        assert_eq!(objs[2].value.len(), 0x12);
        assert_eq!(objs[3].value, &hex("5A1B2C3D")[..]);
    }

    #[test]
    fn constructed_long_form_and_builder_roundtrip() {
        let big = vec![0x42u8; 300];
        let mut b = TlvBuilder::new();
        b.constructed(Tag(0x70), |c| {
            c.add(Tag(0x5A), &[0x47, 0x61]);
            c.add(Tag(0x9F1F), &big);
        });
        b.add(Tag(0xDF8101), b"x");
        let data = b.finish();
        let top: Vec<_> = parse(&data).collect::<Result<_>>().unwrap();
        assert_eq!(top.len(), 2);
        assert!(top[0].tag.is_constructed());
        let kids: Vec<_> = top[0].children().collect::<Result<_>>().unwrap();
        assert_eq!(kids[1].tag, Tag(0x9F1F));
        assert_eq!(kids[1].value.len(), 300);
        assert_eq!(top[1].tag, Tag(0xDF8101));
        assert_eq!(find(&data, Tag(0x9F1F)).unwrap().unwrap().value.len(), 300);
        assert!(find(&data, Tag(0x9F99)).unwrap().is_none());
    }

    #[test]
    fn malformed() {
        // value past the end
        let e = parse(&[0x9F, 0x26, 0x08, 1, 2])
            .next()
            .unwrap()
            .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Tlv { .. }));
        assert_eq!(e.offset, 3);
        // tag cut short
        assert!(parse(&[0x9F]).next().unwrap().is_err());
        // bad long form
        assert!(parse(&[0x5A, 0x85, 0, 0, 0, 0, 1]).next().unwrap().is_err());
        assert!(parse(&[0x5A, 0x80]).next().unwrap().is_err());
        // a tag longer than 4 bytes
        assert!(parse(&[0x9F, 0x81, 0x81, 0x81, 0x01, 0x00])
            .next()
            .unwrap()
            .is_err());
        // iterator stops after an error
        let mut it = parse(&[0x9F]);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
        // padding skipped
        let v: Vec<_> = parse(&[0x00, 0x5A, 0x01, 0x47, 0xFF])
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(v.len(), 1);
    }
}
