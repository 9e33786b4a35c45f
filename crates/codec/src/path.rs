//! Paths parsed once: [`Path`] is `"48.42.1"` read into numbers, for code that reads the
//! same subfield of many messages ([`MessageView::at`](crate::MessageView::at),
//! [`Message::at`](crate::Message::at)) without parsing the text each time.
//!
//! A path does not belong to a dialect: each element below the data element is kept as
//! the key it is in each [`KeyStyle`] (decimal, hex, text), and the composite being walked
//! decides which one applies, as it does for a path given as text.

use crate::error::{CodecError, ErrorKind, KeyStyle, Location, Result, MAX_DEPTH};
use std::fmt;

/// One path element below the data element, as a key in each style (`None`: the text is
/// not a key in that style).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
struct Segment {
    decimal: Option<u32>,
    hex: Option<u32>,
    text: Option<u32>,
}

impl Segment {
    #[inline(always)]
    fn key(&self, style: KeyStyle) -> Option<u32> {
        match style {
            KeyStyle::Decimal => self.decimal,
            KeyStyle::Hex => self.hex,
            KeyStyle::Text => self.text,
        }
    }
}

/// A field or subfield path (`4`, `48.42.1`, `55.9F26`) parsed once.
///
/// [`MessageView::at`](crate::MessageView::at) and [`Message::at`](crate::Message::at)
/// read by it as [`MessageView::get_path`](crate::MessageView::get_path) reads by text,
/// with the same result, without parsing the text again:
///
/// ```
/// use isoswitch_codec::{Dialect, Message, MessageView, Path};
/// let d = Dialect::builtin("iso87-composite").unwrap();
/// let mut m = Message::new(&d, "0100".parse().unwrap());
/// m.set_path("48.42.1", "6").unwrap();
/// let bytes = m.to_bytes().unwrap();
/// let v = MessageView::decode(&d, &bytes).unwrap();
/// let eci = Path::parse("48.42.1").unwrap();
/// assert_eq!(v.at(&eci).unwrap().text(), "6");
/// assert_eq!(v.at(&eci).unwrap().path(), v.get_path("48.42.1").unwrap().path());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    field: u8,
    /// Elements below the data element.
    len: u8,
    segments: [Segment; MAX_DEPTH - 1],
}

impl Path {
    /// Parses `text`: a data element number (1–192), then up to five keys below it,
    /// separated by dots. A key that is a key in no style (`48.x!`) or a path that is too
    /// deep is an error ([`ErrorKind::BadPath`]); whether the keys exist is only known
    /// against a dialect (reading by a path the dialect does not have gives `None`).
    pub fn parse(text: &str) -> Result<Path> {
        let bad = |what: String| CodecError::new(Location::Message, 0, ErrorKind::BadPath { what });
        let mut parts = text.as_bytes().split(|&c| c == b'.');
        let field = parts
            .next()
            .and_then(crate::view::parse_field_number)
            .filter(|&n| n >= 1)
            .ok_or_else(|| bad(format!("{text:?} does not start with a field number")))?;
        let mut p = Path {
            field,
            len: 0,
            segments: [Segment::default(); MAX_DEPTH - 1],
        };
        for part in parts {
            if p.len as usize == MAX_DEPTH - 1 {
                return Err(bad(format!("{text:?} is deeper than {MAX_DEPTH} elements")));
            }
            let s = Segment {
                decimal: KeyStyle::Decimal.parse(part),
                hex: KeyStyle::Hex.parse(part),
                text: KeyStyle::Text.parse(part),
            };
            if s == Segment::default() {
                return Err(bad(format!(
                    "{:?} in {text:?} is not a subfield key",
                    String::from_utf8_lossy(part)
                )));
            }
            p.segments[p.len as usize] = s;
            p.len += 1;
        }
        Ok(p)
    }

    /// The data element the path starts at.
    pub fn field(&self) -> u8 {
        self.field
    }

    /// The number of elements (1 for a data element).
    pub fn depth(&self) -> usize {
        1 + self.len as usize
    }

    /// The keys below the data element, in the order of a walk.
    pub(crate) fn keys(&self) -> PathKeys<'_> {
        PathKeys {
            segments: &self.segments[..self.len as usize],
        }
    }
}

impl std::str::FromStr for Path {
    type Err = CodecError;
    fn from_str(s: &str) -> Result<Path> {
        Path::parse(s)
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({}", self.field)?;
        for s in &self.segments[..self.len as usize] {
            match (s.decimal, s.hex, s.text) {
                (Some(d), _, _) => write!(f, ".{d}")?,
                (None, Some(h), _) => write!(f, ".{h:X}")?,
                (None, None, Some(t)) => {
                    f.write_str(".")?;
                    KeyStyle::Text.render(t, f)?;
                }
                (None, None, None) => {}
            }
        }
        f.write_str(")")
    }
}

/// The keys of a walk down composites: for each level, the key in the style of the
/// composite being walked (`Some(None)`: the element is not a key in that style; `None`:
/// the path ends).
pub(crate) trait Keys {
    fn next_key(&mut self, style: KeyStyle) -> Option<Option<u32>>;
}

/// The keys of a [`Path`].
pub(crate) struct PathKeys<'p> {
    segments: &'p [Segment],
}

impl Keys for PathKeys<'_> {
    #[inline(always)]
    fn next_key(&mut self, style: KeyStyle) -> Option<Option<u32>> {
        let (first, rest) = self.segments.split_first()?;
        self.segments = rest;
        Some(first.key(style))
    }
}

/// The value of the decimal digits `b` starts with, read up to `max` of them, and how
/// many were read (the value wraps past `u32`: callers refuse that many digits).
#[inline(always)]
pub(crate) fn leading_digits(b: &[u8], max: usize) -> (u32, usize) {
    let mut v = 0u32;
    let mut i = 0;
    while i < b.len() && i < max {
        let d = b[i].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        v = v.wrapping_mul(10).wrapping_add(d as u32);
        i += 1;
    }
    (v, i)
}

/// The keys of a path given as text (the elements after the data element).
pub(crate) struct TextKeys<'t> {
    pub(crate) rest: Option<&'t [u8]>,
}

impl Keys for TextKeys<'_> {
    #[inline(always)]
    fn next_key(&mut self, style: KeyStyle) -> Option<Option<u32>> {
        let r = self.rest?;
        if style == KeyStyle::Decimal {
            // Digits read as they are scanned for the dot (at most nine, as
            // `KeyStyle::parse` takes); anything else takes the general split below.
            let (v, i) = leading_digits(r, 10);
            if i < 10 {
                let key = (i > 0).then_some(v);
                match r.get(i) {
                    None => {
                        self.rest = None;
                        return Some(key);
                    }
                    Some(b'.') => {
                        self.rest = Some(&r[i + 1..]);
                        return Some(key);
                    }
                    Some(_) => {}
                }
            }
        }
        let seg = match r.iter().position(|&c| c == b'.') {
            Some(i) => {
                self.rest = Some(&r[i + 1..]);
                &r[..i]
            }
            None => {
                self.rest = None;
                r
            }
        };
        Some(style.parse(seg))
    }
}

/// One element given as text (a key, never split at dots).
pub(crate) struct OneKey<'t>(pub(crate) Option<&'t [u8]>);

impl Keys for OneKey<'_> {
    #[inline(always)]
    fn next_key(&mut self, style: KeyStyle) -> Option<Option<u32>> {
        self.0.take().map(|k| style.parse(k))
    }
}
