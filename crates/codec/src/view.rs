//! Zero-copy decoding: a [`MessageView`] is an index of (offset, length) per present field
//! into the caller's bytes, built without any heap allocation.

use crate::bitmap::Bitmap;
use crate::dialect::Dialect;
use crate::error::{CodecError, ErrorKind, Location, Result};
use crate::field::FieldRef;
use crate::hot::Hot;
use crate::mti::Mti;

/// Where one field's content starts in the decoded buffer (after its length prefix); the
/// length in units is read back from the (already validated) prefix on access, so the
/// index is 2 bytes a field (messages are at most [`MessageView::MAX_LEN`] bytes).
pub(crate) type Slot = u16;

/// A decoded message borrowing the caller's buffer.
///
/// `MessageView::decode` validates the whole message (MTI, bitmaps, every length prefix,
/// every field's charset) and records where each field is; field access returns slices
/// of the original bytes, and typed values are computed only when asked for.
#[derive(Clone)]
pub struct MessageView<'a> {
    dialect: &'a Dialect,
    buf: &'a [u8],
    ix: Index,
}

/// The decoded index of a message: MTI, bitmap as decoded, where each field's content
/// starts. Shared by [`MessageView`] and [`crate::Message`] (which decodes straight into
/// its own, so that a decoded message can give its view without decoding again).
#[derive(Clone)]
pub(crate) struct Index {
    pub(crate) mti: Mti,
    pub(crate) bitmap: Bitmap,
    pub(crate) slots: [Slot; 256],
}

impl Index {
    /// An empty index for `mti`, written where the caller puts it. Not inlined: inlined
    /// into a caller's loop, the zeroed slots become a constant copied (`memcpy`) on each
    /// iteration instead of zeroed in place (`memset`, half the instructions).
    #[inline(never)]
    pub(crate) fn empty(mti: Mti) -> Index {
        Index {
            mti,
            bitmap: Bitmap::EMPTY,
            slots: [0; 256],
        }
    }
}

impl<'a> MessageView<'a> {
    /// The longest message [`MessageView::decode`] (and [`crate::Message::decode`]) accepts:
    /// 65,535 bytes, what a two-byte length header can frame. Every built-in dialect's
    /// largest possible message is well under it (about 36 KB).
    pub const MAX_LEN: usize = u16::MAX as usize;

    /// Decodes one message (exactly its bytes: no length header) in `dialect`.
    ///
    /// Makes no heap allocation. Any malformed input is an error naming the field and
    /// byte offset; bytes left over after the last field are an error too. A buffer longer
    /// than [`MessageView::MAX_LEN`] is rejected before anything else with
    /// [`ErrorKind::TooLong`] (location [`Location::Message`], offset 0, `max` 65,535).
    ///
    /// Composite fields are validated to the last level (see [`crate::spec::Composite`]);
    /// an error in a subfield names its full path (`field 127.25.3 at byte offset 212: …`).
    #[inline]
    pub fn decode(dialect: &'a Dialect, buf: &'a [u8]) -> Result<MessageView<'a>> {
        // Written out (not `Index::empty`): so the view is zeroed where the caller keeps
        // it and parsed there, not parsed aside and then copied into place.
        let mut view = MessageView {
            dialect,
            buf,
            ix: Index {
                mti: Mti::ZERO,
                bitmap: Bitmap::EMPTY,
                slots: [0; 256],
            },
        };
        view.ix.parse(dialect, buf)?;
        Ok(view)
    }

    /// Decodes as [`MessageView::decode`], and on an error also gives the fields decoded
    /// before it: the view then holds the MTI, and the fields ahead of the one in error
    /// (none for an MTI or bitmap error; every field for trailing bytes).
    pub fn decode_partial(
        dialect: &'a Dialect,
        buf: &'a [u8],
    ) -> (MessageView<'a>, Option<CodecError>) {
        let mut view = MessageView {
            dialect,
            buf,
            ix: Index::empty(Mti::ZERO),
        };
        match view.ix.parse_outlined(dialect, buf) {
            Ok(()) => (view, None),
            Err(e) => {
                let keep_below = match e.location {
                    Location::Field(n) => n as usize,
                    Location::Path(p) => p.field() as usize,
                    Location::Message => 256,
                    Location::Mti | Location::Bitmap(_) => 0,
                };
                let mut b = view.ix.bitmap;
                for n in keep_below.max(1)..=192 {
                    b.clear(n as u8);
                }
                if keep_below == 0 {
                    b = Bitmap::EMPTY;
                }
                view.ix.bitmap = b;
                (view, Some(e))
            }
        }
    }

    /// A view of a message this crate decoded (and did not change) without decoding it.
    pub(crate) fn from_index(dialect: &'a Dialect, buf: &'a [u8], ix: &Index) -> Self {
        MessageView {
            dialect,
            buf,
            ix: ix.clone(),
        }
    }

    /// Field with entry `h` at `pos`: where its content starts and ends, or `None` on any
    /// error (the slow path then names it).
    #[inline(always)]
    fn field_at(h: &Hot, buf: &[u8], pos: usize) -> Option<(usize, usize)> {
        let (start, end, units) = crate::composite::span(h, buf, pos)?;
        h.content_ok(buf, start, end, units).then_some((start, end))
    }

    /// The dialect the message was decoded with.
    pub fn dialect(&self) -> &'a Dialect {
        self.dialect
    }

    /// The bytes the view was decoded from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The message type indicator.
    #[inline]
    pub fn mti(&self) -> Mti {
        self.ix.mti
    }

    /// The bitmap as decoded (bit 1 and, with a tertiary bitmap, bit 65 included).
    pub fn bitmap(&self) -> Bitmap {
        self.ix.bitmap
    }

    /// Whether data field `n` is present.
    #[inline(always)]
    pub fn has(&self, n: u8) -> bool {
        self.ix.bitmap.get(n) && !self.dialect.is_bitmap_field(n)
    }

    /// Data field `n`, if present.
    #[inline(always)]
    pub fn field(&self, n: u8) -> Option<FieldRef<'a>> {
        if !self.has(n) {
            return None;
        }
        let spec = self.dialect.field(n)?;
        let start = self.ix.slots[n as usize] as usize;
        let units = units_at(self.dialect, self.buf, n, start);
        let len = self.dialect.hot(n).wire_len(units);
        Some(FieldRef {
            number: n,
            spec,
            raw: self.buf.get(start..start + len)?,
            units,
            offset: start,
            node: self.dialect.node(n),
            path: crate::error::FieldPath::top(n),
        })
    }

    /// The field or subfield at `path` (`"4"`, `"48.42.1"`, `"127.25.3"`), if present.
    /// Walks the composites' offsets: no allocation.
    #[inline]
    pub fn get_path(&self, path: &str) -> Option<FieldRef<'a>> {
        resolve_path(path, |n| self.field(n))
    }

    /// The field or subfield at `path`, a [`crate::Path`] parsed once: the same as
    /// [`MessageView::get_path`] with the path's text, without parsing it again.
    #[inline]
    pub fn at(&self, path: &crate::Path) -> Option<FieldRef<'a>> {
        crate::composite::descend(self.field(path.field())?, path.keys())
    }

    /// The encoded content of field `n` (no length prefix), if present. Always inlined:
    /// out of line, a caller that reads one field of a view it just decoded copies the
    /// whole view (568 bytes) to pass it by reference.
    #[inline(always)]
    pub fn raw(&self, n: u8) -> Option<&'a [u8]> {
        if !self.has(n) {
            return None;
        }
        let start = self.ix.slots[n as usize] as usize;
        let len = self
            .dialect
            .hot(n)
            .wire_len(units_at(self.dialect, self.buf, n, start));
        self.buf.get(start..start + len)
    }

    /// Amount field `n` (DE 4, 5, 6…) as a decimal with the ISO 4217 exponent of the
    /// currency in DE 49 (2 when DE 49 is absent or not numeric).
    pub fn amount(&self, n: u8) -> Result<rust_decimal::Decimal> {
        let exp = self
            .field(49)
            .and_then(|c| crate::currency::minor_units_of(c.text().as_bytes()))
            .unwrap_or(2);
        self.field(n)
            .ok_or_else(|| CodecError::field(n, 0, ErrorKind::BadValue { what: "amount" }))?
            .amount(exp)
    }

    /// Present data fields in ascending order.
    pub fn fields(&self) -> impl Iterator<Item = FieldRef<'a>> + '_ {
        self.ix.bitmap.iter().filter_map(move |n| self.field(n))
    }

    /// Offset where field `n` starts (its length prefix), if present.
    pub fn field_start(&self, n: u8) -> Option<usize> {
        let f = self.field(n)?;
        Some(f.offset - f.spec.prefix_len())
    }

    /// The MAC field this message carries, if the dialect has one and it is present
    /// (DE 64, or DE 128 when the message has a secondary bitmap).
    pub fn mac_field(&self) -> Option<u8> {
        let layout = self.dialect.mac_layout();
        let n = if self.ix.bitmap.get(1) {
            layout.secondary?
        } else {
            layout.primary
        };
        self.has(n).then_some(n)
    }

    /// The MACed span: from the start of the MTI up to the start of the MAC field,
    /// and the MAC field's content. `None` if the message carries no MAC.
    pub fn mac_span(&self) -> Option<(&'a [u8], &'a [u8])> {
        let n = self.mac_field()?;
        let start = self.field_start(n)?;
        Some((self.buf.get(..start)?, self.raw(n)?))
    }

    pub(crate) fn index(&self) -> &Index {
        &self.ix
    }
}

/// The field or subfield at `path`, with `field` giving the data elements.
#[inline]
pub(crate) fn resolve_path<'a>(
    path: &str,
    field: impl FnOnce(u8) -> Option<FieldRef<'a>>,
) -> Option<FieldRef<'a>> {
    let b = path.as_bytes();
    // The data element's digits read as they are scanned for the first dot (as
    // `parse_field_number` of the text before it: one to three digits, at most 192).
    let (v, i) = crate::path::leading_digits(b, 4);
    if !(1..=3).contains(&i) || v > 192 {
        return None;
    }
    let rest = match b.get(i) {
        None => None,
        Some(b'.') => Some(&b[i + 1..]),
        Some(_) => return None,
    };
    let f = field(v as u8)?;
    crate::composite::descend(f, crate::path::TextKeys { rest })
}

/// A data element number (1..=192 digits), for paths.
#[inline]
pub(crate) fn parse_field_number(t: &[u8]) -> Option<u8> {
    match *t {
        [a] if a.is_ascii_digit() => Some(a - b'0'),
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => Some((a - b'0') * 10 + b - b'0'),
        [a, b, c] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            let v = (a - b'0') as u16 * 100 + ((b - b'0') * 10 + c - b'0') as u16;
            (v <= 192).then_some(v as u8)
        }
        _ => None,
    }
}
impl Index {
    /// [`Index::parse`] out of line, for callers that keep the index inside a larger
    /// value ([`crate::Message::decode`], [`MessageView::decode_partial`]): one copy of
    /// the parser between them, and their own code stays small.
    #[inline(never)]
    pub(crate) fn parse_outlined(&mut self, d: &Dialect, buf: &[u8]) -> Result<()> {
        self.parse(d, buf)
    }

    /// Decodes `buf` into this index (see [`MessageView::decode`]). Always inlined: out
    /// of line, the view it writes into is a separate stack object that the caller then
    /// copies (568 bytes) into the `Result` it returns; inlined, the caller's loop zeroes
    /// and fills the view where it keeps it (perf: no `memmove` left in the bench's loop).
    #[inline(always)]
    pub(crate) fn parse(&mut self, d: &Dialect, buf: &[u8]) -> Result<()> {
        if buf.len() > MessageView::MAX_LEN {
            return Err(CodecError::new(
                Location::Message,
                0,
                ErrorKind::TooLong {
                    max: MessageView::MAX_LEN,
                    found: buf.len(),
                },
            ));
        }
        self.mti = Mti::decode(d.mti_encoding(), buf)?;
        d.check_mti(self.mti, 0)?;
        let mut pos = d.mti_encoding().len();
        let benc = d.bitmap_encoding();
        let w0 = Bitmap::decode_word(benc, &buf[pos..], 1, pos)?;
        pos += benc.len();
        let mut bitmap = Bitmap([w0, 0, 0]);
        if bitmap.get(1) {
            if !d.has_secondary() {
                return Err(CodecError::new(
                    Location::Field(1),
                    pos - benc.len(),
                    ErrorKind::NotInDialect {
                        dialect: d.name().to_string(),
                    },
                ));
            }
            bitmap.0[1] = Bitmap::decode_word(benc, &buf[pos..], 2, pos)?;
            pos += benc.len();
        }
        if d.has_tertiary() && bitmap.get(65) {
            // The tertiary bitmap follows the secondary one directly (as pyiso8583 does).
            bitmap.0[2] = Bitmap::decode_word(benc, &buf[pos..], 3, pos)?;
            pos += benc.len();
        }
        self.bitmap = bitmap;
        let mut data = bitmap;
        data.clear(1);
        if d.has_tertiary() {
            data.clear(65);
        }
        let hot = d.hot_table();
        for (wi, &word) in data.0.iter().enumerate() {
            // Bit-reversed, so the next field is the lowest set bit: clearing it (`w & (w - 1)`)
            // is a short loop-carried dependency.
            let mut w = word.reverse_bits();
            while w != 0 {
                let tz = w.trailing_zeros();
                w &= w - 1;
                // 1..=192: `wi` < 3 and `tz` < 64.
                let i = wi * 64 + tz as usize + 1;
                let h = &hot[i & 255];
                let short = h.short(buf, pos);
                let (start, end) = match short {
                    Some(end) => (pos, end),
                    // Not a short fixed field, or not a valid one: the general path (which
                    // also accepts what the short paths cannot see, e.g. the first bytes).
                    None => match MessageView::field_at(h, buf, pos) {
                        Some(se) => se,
                        None => return Err(slow_error(d, buf, i as u8, pos)),
                    },
                };
                // `start` <= `buf.len()` <= `MAX_LEN` fits.
                self.slots[i & 255] = start as Slot;
                pos = end;
            }
        }
        if d.0.has_composites {
            // Kept out of the loop above: dialects without composites pay one branch.
            self.check_composites(d, buf, data)?;
        }
        if pos != buf.len() {
            return Err(CodecError::new(
                Location::Message,
                pos,
                ErrorKind::TrailingBytes {
                    count: buf.len() - pos,
                },
            ));
        }
        Ok(())
    }

    /// Validates the composite fields among `data` (the present data fields) to their
    /// last level.
    #[inline(never)]
    fn check_composites(&self, d: &Dialect, buf: &[u8], data: Bitmap) -> Result<()> {
        let c = d.0.composite_bits;
        let fields = Bitmap([data.0[0] & c.0[0], data.0[1] & c.0[1], data.0[2] & c.0[2]]);
        for n in fields.iter() {
            let Some(node) = d.node(n) else { continue };
            let start = self.slots[n as usize] as usize;
            let units = units_at(d, buf, n, start);
            let end = start + d.hot(n).wire_len(units);
            node.validate(buf, start, end, crate::error::FieldPath::top(n), d.name())?;
        }
        Ok(())
    }
}

/// The length in units of field `n` whose (validated) content starts at `start`.
#[inline(always)]
pub(crate) fn units_at(d: &Dialect, buf: &[u8], n: u8, start: usize) -> usize {
    let h = d.hot(n);
    if h.fixed {
        return h.max as usize;
    }
    let plen = h.prefix_len as usize;
    start
        .checked_sub(plen)
        .and_then(|p| buf.get(p..start))
        .and_then(|p| h.prefix(p))
        .unwrap_or(0)
}

/// Re-checks field `n` at `pos` with the full spec to name the exact error.
#[cold]
#[inline(never)]
fn slow_error(d: &Dialect, buf: &[u8], n: u8, pos: usize) -> CodecError {
    let Some(spec) = d.field(n) else {
        return CodecError::field(
            n,
            pos,
            ErrorKind::NotInDialect {
                dialect: d.name().to_string(),
            },
        );
    };
    let rest = &buf[pos.min(buf.len())..];
    let (units, plen) = if spec.is_fixed() {
        (spec.max as usize, 0)
    } else {
        match spec.read_prefix(n, rest, pos) {
            Ok(u) => (u, spec.prefix_len()),
            Err(e) => return e,
        }
    };
    let start = pos + plen;
    let wire = spec.wire_len(units);
    match buf.get(start..start + wire) {
        Some(content) => match spec.validate_wire(n, content, units, start) {
            Err(e) => e,
            // The fast and the full checks disagree: report the field all the same.
            Ok(()) => CodecError::field(n, start, ErrorKind::BadValue { what: "content" }),
        },
        None => CodecError::field(
            n,
            start,
            ErrorKind::Truncated {
                needed: start + wire - buf.len(),
            },
        ),
    }
}

impl std::fmt::Debug for MessageView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::mask::debug_fields(f, "MessageView", self.ix.mti, self.fields())
    }
}

impl std::fmt::Display for MessageView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::mask::display_fields(f, self.ix.mti, self.fields())
    }
}
