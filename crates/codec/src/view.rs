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

/// Number of fields an owned [`crate::Message`] indexes: 0..=192 (0 and bitmap numbers
/// unused). The view keeps 256 slots so a field index needs no bounds check.
pub(crate) const SLOTS: usize = 193;

/// A decoded message borrowing the caller's buffer.
///
/// `MessageView::decode` validates the whole message (MTI, bitmaps, every length prefix,
/// every field's charset) and records where each field is; field access returns slices
/// of the original bytes, and typed values are computed only when asked for.
#[derive(Clone)]
pub struct MessageView<'a> {
    dialect: &'a Dialect,
    buf: &'a [u8],
    mti: Mti,
    bitmap: Bitmap,
    slots: [Slot; 256],
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
    #[inline]
    pub fn decode(dialect: &'a Dialect, buf: &'a [u8]) -> Result<MessageView<'a>> {
        let mut view = MessageView {
            dialect,
            buf,
            mti: Mti::ZERO,
            bitmap: Bitmap::EMPTY,
            slots: [0; 256],
        };
        view.parse()?;
        Ok(view)
    }

    #[inline(never)]
    fn parse(&mut self) -> Result<()> {
        let d = self.dialect;
        let buf = self.buf;
        if buf.len() > Self::MAX_LEN {
            return Err(CodecError::new(
                Location::Message,
                0,
                ErrorKind::TooLong {
                    max: Self::MAX_LEN,
                    found: buf.len(),
                },
            ));
        }
        self.mti = Mti::decode(d.mti_encoding(), buf)?;
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
                    None => match Self::field_at(h, buf, pos) {
                        Some(se) => se,
                        None => return Err(self.slow_error(i as u8, pos)),
                    },
                };
                // `start` <= `buf.len()` <= `MAX_LEN` fits.
                self.slots[i & 255] = start as Slot;
                pos = end;
            }
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

    /// Field with entry `h` at `pos`: where its content starts and ends, or `None` on any
    /// error (the slow path then names it).
    #[inline(always)]
    fn field_at(h: &Hot, buf: &[u8], pos: usize) -> Option<(usize, usize)> {
        let (units, start, len) = if h.fixed {
            (h.max as usize, pos, h.fixed_wire as usize)
        } else {
            let plen = h.prefix_len as usize;
            let units = h.prefix(buf.get(pos..pos + plen)?)?;
            (units, pos + plen, h.wire_len(units))
        };
        let end = start + len;
        if end > buf.len() || !h.content_ok(buf, start, end, units) {
            return None;
        }
        Some((start, end))
    }

    /// Re-checks field `n` at `pos` with the full spec to name the exact error.
    #[cold]
    #[inline(never)]
    fn slow_error(&self, n: u8, pos: usize) -> CodecError {
        let d = self.dialect;
        let Some(spec) = d.field(n) else {
            return CodecError::field(
                n,
                pos,
                ErrorKind::NotInDialect {
                    dialect: d.name().to_string(),
                },
            );
        };
        let rest = &self.buf[pos.min(self.buf.len())..];
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
        match self.buf.get(start..start + wire) {
            Some(content) => match spec.validate_wire(n, content, units, start) {
                Err(e) => e,
                // The fast and the full checks disagree: report the field all the same.
                Ok(()) => CodecError::field(n, start, ErrorKind::BadValue { what: "content" }),
            },
            None => CodecError::field(
                n,
                start,
                ErrorKind::Truncated {
                    needed: start + wire - self.buf.len(),
                },
            ),
        }
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
        self.mti
    }

    /// The bitmap as decoded (bit 1 and, with a tertiary bitmap, bit 65 included).
    pub fn bitmap(&self) -> Bitmap {
        self.bitmap
    }

    /// Whether data field `n` is present.
    #[inline]
    pub fn has(&self, n: u8) -> bool {
        self.bitmap.get(n) && !self.dialect.is_bitmap_field(n)
    }

    /// Data field `n`, if present.
    #[inline]
    pub fn field(&self, n: u8) -> Option<FieldRef<'a>> {
        if !self.has(n) {
            return None;
        }
        let spec = self.dialect.field(n)?;
        let start = self.slots[n as usize] as usize;
        let units = self.units_at(n, start);
        let len = self.dialect.hot(n).wire_len(units);
        Some(FieldRef {
            number: n,
            spec,
            raw: self.buf.get(start..start + len)?,
            units,
            offset: start,
        })
    }

    /// The length in units of field `n` whose content starts at `start` (validated).
    #[inline]
    pub(crate) fn units_at(&self, n: u8, start: usize) -> usize {
        let h = self.dialect.hot(n);
        if h.fixed {
            return h.max as usize;
        }
        let plen = h.prefix_len as usize;
        start
            .checked_sub(plen)
            .and_then(|p| self.buf.get(p..start))
            .and_then(|p| h.prefix(p))
            .unwrap_or(0)
    }

    /// The encoded content of field `n` (no length prefix), if present.
    #[inline]
    pub fn raw(&self, n: u8) -> Option<&'a [u8]> {
        if !self.has(n) {
            return None;
        }
        let start = self.slots[n as usize] as usize;
        let len = self.dialect.hot(n).wire_len(self.units_at(n, start));
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
        self.bitmap.iter().filter_map(move |n| self.field(n))
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
        let n = if self.bitmap.get(1) {
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

    pub(crate) fn slots(&self) -> &[Slot; 256] {
        &self.slots
    }
}

impl std::fmt::Debug for MessageView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::mask::debug_fields(f, "MessageView", self.mti, self.fields())
    }
}

impl std::fmt::Display for MessageView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::mask::display_fields(f, self.mti, self.fields())
    }
}
