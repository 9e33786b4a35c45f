//! The owned message: build, edit, validate and encode.
//!
//! A [`Message`] keeps every field in its *wire form* (encoded content plus its length in
//! units). Fields of a decoded message point into the shared input [`Bytes`] (no copy);
//! fields set by hand are encoded once, when set, into a small arena. Encoding is
//! therefore a single pass of copies into a `BytesMut` — and editing a decoded message
//! re-encodes only the fields that were changed.

use crate::bitmap::Bitmap;
use crate::currency;
use crate::dialect::Dialect;
use crate::error::{CodecError, ErrorKind, Location, Result};
use crate::field::FieldRef;
use crate::mti::Mti;
use crate::view::{MessageView, SLOTS};
use bytes::{BufMut, Bytes, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use rust_decimal::Decimal;
use std::fmt;

/// Where one field's wire content sits: in the shared input buffer or in the arena.
#[derive(Debug, Clone, Copy, Default)]
struct OwnedSlot {
    /// Offset; the top bit set means "in the arena".
    start: u32,
    len: u16,
    units: u16,
}

const ARENA: u32 = 1 << 31;
/// First arena capacity: the fields a switch or host sets on one message (a 0200 built
/// from scratch is about 150 bytes of content, a response a few dozen).
const ARENA_FIRST: usize = 256;

impl OwnedSlot {
    #[inline]
    fn in_arena(self) -> bool {
        self.start & ARENA != 0
    }
}

/// An owned ISO 8583 message in a dialect.
#[derive(Clone)]
pub struct Message {
    dialect: Dialect,
    mti: Mti,
    present: Bitmap,
    slots: [OwnedSlot; SLOTS],
    /// Sum over present fields of prefix + content bytes (keeps `encoded_len` O(1)).
    wire_total: usize,
    shared: Bytes,
    arena: Vec<u8>,
}

impl Message {
    /// An empty message of type `mti`.
    pub fn new(dialect: &Dialect, mti: Mti) -> Message {
        Message {
            dialect: dialect.clone(),
            mti,
            present: Bitmap::EMPTY,
            slots: [OwnedSlot::default(); SLOTS],
            wire_total: 0,
            shared: Bytes::new(),
            arena: Vec::new(),
        }
    }

    /// Decodes `bytes` into a message that shares the buffer (no copy of any field).
    ///
    /// Errors as [`MessageView::decode`] (including messages over
    /// [`MessageView::MAX_LEN`] bytes).
    pub fn decode(dialect: &Dialect, bytes: Bytes) -> Result<Message> {
        let mut m = {
            let view = MessageView::decode(dialect, &bytes)?;
            Message::from_view_slots(&view)
        };
        m.shared = bytes;
        Ok(m)
    }

    fn from_view_slots(view: &MessageView<'_>) -> Message {
        let mut m = Message::new(view.dialect(), view.mti());
        let slots = view.slots();
        for n in view.bitmap().iter() {
            if view.has(n) {
                let start = slots[n as usize];
                let units = view.units_at(n, start as usize);
                let h = m.dialect.hot(n);
                let len = h.wire_len(units);
                m.wire_total += h.prefix_len as usize + len;
                m.slots[n as usize] = OwnedSlot {
                    start: start as u32,
                    len: len as u16,
                    units: units as u16,
                };
                m.present.set(n);
            }
        }
        m
    }

    /// Copies a view into an owned message (one copy of the message bytes).
    pub fn from_view(view: &MessageView<'_>) -> Message {
        let mut m = Message::from_view_slots(view);
        m.shared = Bytes::copy_from_slice(view.as_bytes());
        m
    }

    /// A response to `request`: the response MTI and the dialect's echo fields copied
    /// (without re-encoding them).
    pub fn response_to(request: &Message) -> Result<Message> {
        let mti = request
            .mti
            .response_mti()
            .ok_or_else(|| CodecError::new(Location::Mti, 0, ErrorKind::BadMti))?;
        let mut m = Message::new(&request.dialect, mti);
        m.shared = request.shared.clone();
        for &n in request.dialect.echo_fields() {
            if request.present.get(n) {
                let s = request.slots[n as usize];
                if s.in_arena() {
                    let start = m.arena.len();
                    m.arena.extend_from_slice(request.content(s));
                    m.slots[n as usize] = OwnedSlot {
                        start: start as u32 | ARENA,
                        ..s
                    };
                } else {
                    m.slots[n as usize] = s;
                }
                m.present.set(n);
                m.wire_total += m.dialect.hot(n).prefix_len as usize + s.len as usize;
            }
        }
        Ok(m)
    }

    /// The dialect.
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    /// The message type indicator.
    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// Changes the MTI (e.g. `0400` → `0401` for a repeat).
    pub fn set_mti(&mut self, mti: Mti) {
        self.mti = mti;
    }

    /// Data fields present (bitmap bits are computed when encoding).
    pub fn present(&self) -> Bitmap {
        self.present
    }

    /// Whether field `n` is present.
    pub fn has(&self, n: u8) -> bool {
        self.present.get(n)
    }

    #[inline]
    fn content(&self, s: OwnedSlot) -> &[u8] {
        let buf: &[u8] = if s.in_arena() {
            &self.arena
        } else {
            &self.shared
        };
        let start = (s.start & !ARENA) as usize;
        buf.get(start..start + s.len as usize).unwrap_or(&[])
    }

    /// Records field `n`'s new slot, keeping `wire_total` in step.
    #[inline]
    fn put_slot(&mut self, n: u8, slot: OwnedSlot) {
        let plen = self.dialect.hot(n).prefix_len as usize;
        if self.present.get(n) {
            self.wire_total -= plen + self.slots[n as usize].len as usize;
        }
        self.wire_total += plen + slot.len as usize;
        self.slots[n as usize] = slot;
        self.present.set(n);
    }

    /// Field `n`, if present.
    pub fn field(&self, n: u8) -> Option<FieldRef<'_>> {
        if !self.present.get(n) {
            return None;
        }
        let spec = self.dialect.field(n)?;
        let s = self.slots[n as usize];
        Some(FieldRef {
            number: n,
            spec,
            raw: self.content(s),
            units: s.units as usize,
            offset: 0,
        })
    }

    /// Present fields in ascending order.
    pub fn fields(&self) -> impl Iterator<Item = FieldRef<'_>> + '_ {
        self.present.iter().filter_map(move |n| self.field(n))
    }

    /// The text form of field `n` (see [`FieldRef::text`]), owned.
    pub fn get(&self, n: u8) -> Option<String> {
        self.field(n).map(|f| f.text().into_owned())
    }

    fn spec_for(&self, n: u8) -> Result<&crate::spec::FieldSpec> {
        if self.dialect.is_bitmap_field(n) || !(2..=192).contains(&n) {
            return Err(CodecError::field(n, 0, ErrorKind::BadFieldNumber));
        }
        self.dialect.field(n).ok_or_else(|| {
            CodecError::field(
                n,
                0,
                ErrorKind::NotInDialect {
                    dialect: self.dialect.name().to_string(),
                },
            )
        })
    }

    /// Sets field `n` from its text form: characters for text fields, digits for numeric
    /// (BCD or not), uppercase or lowercase hex for binary fields. Validated against the
    /// dialect (charset, fixed length, maximum) and encoded once, now.
    pub fn set(&mut self, n: u8, value: impl AsRef<[u8]>) -> Result<&mut Self> {
        let value = value.as_ref();
        if !(2..=192).contains(&n) || self.dialect.is_bitmap_field(n) {
            return Err(CodecError::field(n, 0, ErrorKind::BadFieldNumber));
        }
        self.maybe_compact();
        self.arena_room(value.len());
        let Some(spec) = self.dialect.0.fields[n as usize].as_ref() else {
            return Err(CodecError::field(
                n,
                0,
                ErrorKind::NotInDialect {
                    dialect: self.dialect.name().to_string(),
                },
            ));
        };
        let start = self.arena.len();
        let units = spec.text_to_wire(n, value, &mut self.arena)?;
        let slot = OwnedSlot {
            start: start as u32 | ARENA,
            len: (self.arena.len() - start) as u16,
            units: units as u16,
        };
        self.put_slot(n, slot);
        Ok(self)
    }

    /// Sets a binary field from raw bytes (hex-encoded for hex-text dialects).
    pub fn set_bytes(&mut self, n: u8, value: &[u8]) -> Result<&mut Self> {
        let spec = self.spec_for(n)?;
        match spec.encoding {
            crate::spec::ContentEncoding::Binary
                if spec.length_unit() == crate::spec::LengthUnit::Bytes =>
            {
                spec.check_units(n, value.len())?;
                self.maybe_compact();
                self.arena_room(value.len());
                let start = self.arena.len();
                self.arena.extend_from_slice(value);
                let slot = OwnedSlot {
                    start: start as u32 | ARENA,
                    len: value.len() as u16,
                    units: value.len() as u16,
                };
                self.put_slot(n, slot);
                Ok(self)
            }
            _ => {
                let mut hex = Vec::with_capacity(value.len() * 2);
                for b in value {
                    hex.push(b"0123456789ABCDEF"[(b >> 4) as usize]);
                    hex.push(b"0123456789ABCDEF"[(b & 15) as usize]);
                }
                self.set(n, hex)
            }
        }
    }

    /// Sets a numeric field from an integer, zero-padded to the fixed length.
    pub fn set_number(&mut self, n: u8, value: u64) -> Result<&mut Self> {
        let spec = self.spec_for(n)?;
        let width = if spec.is_fixed() {
            spec.max as usize
        } else {
            0
        };
        let s = format!("{value:0width$}");
        self.set(n, s)
    }

    /// Sets an amount field (DE 4, 5, 6…) from a decimal in the currency with ISO 4217
    /// numeric code `currency_code` (its minor units decide the scale).
    pub fn set_amount(&mut self, n: u8, amount: Decimal, currency_code: u16) -> Result<&mut Self> {
        let exp = currency::minor_units(currency_code);
        let bad = || CodecError::field(n, 0, ErrorKind::BadValue { what: "amount" });
        let mut scaled = amount;
        scaled.rescale(exp);
        if scaled != amount || scaled.is_sign_negative() {
            return Err(bad());
        }
        let minor: u64 = scaled.mantissa().try_into().map_err(|_| bad())?;
        self.set_number(n, minor)
    }

    /// Reads an amount field with the exponent of the currency in DE 49 (2 if absent).
    pub fn amount(&self, n: u8) -> Result<Decimal> {
        let exp = self
            .field(49)
            .and_then(|c| currency::minor_units_of(c.text().as_bytes()))
            .unwrap_or(2);
        let f = self
            .field(n)
            .ok_or_else(|| CodecError::field(n, 0, ErrorKind::BadValue { what: "amount" }))?;
        f.amount(exp)
    }

    /// Sets `MMDDhhmmss` (DE 7).
    pub fn set_datetime_mmddhhmmss(&mut self, n: u8, t: NaiveDateTime) -> Result<&mut Self> {
        let s = format!(
            "{:02}{:02}{:02}{:02}{:02}",
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        self.set(n, s)
    }

    /// Sets `hhmmss` (DE 12 in 1987).
    pub fn set_time_hhmmss(&mut self, n: u8, t: NaiveTime) -> Result<&mut Self> {
        let s = format!("{:02}{:02}{:02}", t.hour(), t.minute(), t.second());
        self.set(n, s)
    }

    /// Sets `MMDD` (DE 13, 15).
    pub fn set_date_mmdd(&mut self, n: u8, d: NaiveDate) -> Result<&mut Self> {
        self.set(n, format!("{:02}{:02}", d.month(), d.day()))
    }

    /// Sets `YYMM` (DE 14).
    pub fn set_expiry_yymm(&mut self, n: u8, d: NaiveDate) -> Result<&mut Self> {
        self.set(
            n,
            format!("{:02}{:02}", d.year().rem_euclid(100), d.month()),
        )
    }

    /// Removes field `n`.
    pub fn remove(&mut self, n: u8) -> &mut Self {
        if self.present.get(n) {
            self.wire_total -=
                self.dialect.hot(n).prefix_len as usize + self.slots[n as usize].len as usize;
            self.present.clear(n);
        }
        self
    }

    /// Room for `len` more arena bytes; the first field set gets room for a typical
    /// message's worth ([`ARENA_FIRST`]), so that building a message field by field
    /// allocates once instead of growing (and copying) the arena from 8 bytes up.
    #[inline]
    fn arena_room(&mut self, len: usize) {
        if self.arena.capacity() == 0 {
            self.arena.reserve(len.max(ARENA_FIRST));
        } else {
            self.arena.reserve(len);
        }
    }

    /// The arena only grows when fields are replaced; compact it when most of it is dead.
    fn maybe_compact(&mut self) {
        if self.arena.len() < 4096 {
            return;
        }
        let live: usize = self
            .present
            .iter()
            .filter(|&n| self.slots[n as usize].in_arena())
            .map(|n| self.slots[n as usize].len as usize)
            .sum();
        if live * 2 > self.arena.len() {
            return;
        }
        let mut fresh = Vec::with_capacity(live + 256);
        for n in self.present.iter() {
            let s = &mut self.slots[n as usize];
            if s.in_arena() {
                let st = (s.start & !ARENA) as usize;
                let new_start = fresh.len();
                fresh.extend_from_slice(&self.arena[st..st + s.len as usize]);
                s.start = new_start as u32 | ARENA;
            }
        }
        self.arena = fresh;
    }

    /// The bitmap as it will be encoded (bit 1 / bit 65 included as needed).
    pub fn wire_bitmap(&self) -> Result<Bitmap> {
        let mut b = self.present;
        let d = &self.dialect;
        if b.0[2] != 0 {
            if !d.has_tertiary() {
                return Err(CodecError::new(
                    Location::Bitmap(3),
                    0,
                    ErrorKind::BadFieldNumber,
                ));
            }
            b.set(65);
        }
        if b.0[1] != 0 {
            if !d.has_secondary() {
                return Err(CodecError::new(
                    Location::Bitmap(2),
                    0,
                    ErrorKind::BadFieldNumber,
                ));
            }
            b.set(1);
        }
        Ok(b)
    }

    fn header_len(&self, b: &Bitmap) -> usize {
        let d = &self.dialect;
        let words = 1 + b.get(1) as usize + (d.has_tertiary() && b.get(65)) as usize;
        d.mti_encoding().len() + words * d.bitmap_encoding().len()
    }

    /// The exact encoded length in bytes.
    pub fn encoded_len(&self) -> Result<usize> {
        let b = self.wire_bitmap()?;
        Ok(self.header_len(&b) + self.wire_total)
    }

    /// Encodes the message (no length header) at the end of `out`: one reservation, then
    /// straight copies of each field's wire form.
    pub fn encode(&self, out: &mut BytesMut) -> Result<()> {
        let d = &self.dialect;
        let b = self.wire_bitmap()?;
        out.reserve(self.header_len(&b) + self.wire_total);
        let (mti, l) = self.mti.to_wire(d.mti_encoding());
        out.put_slice(&mti[..l]);
        let benc = d.bitmap_encoding();
        let (w, l) = Bitmap::word_bytes(benc, b.0[0]);
        out.put_slice(&w[..l]);
        if b.get(1) {
            let (w, l) = Bitmap::word_bytes(benc, b.0[1]);
            out.put_slice(&w[..l]);
        }
        if d.has_tertiary() && b.get(65) {
            let (w, l) = Bitmap::word_bytes(benc, b.0[2]);
            out.put_slice(&w[..l]);
        }
        for n in self.present.iter() {
            let s = self.slots[n as usize];
            let h = d.hot(n);
            if !h.fixed {
                let (p, l) = h.prefix_bytes(s.units as usize);
                out.put_slice(&p[..l]);
            }
            out.put_slice(self.content(s));
        }
        Ok(())
    }

    /// Encodes into a new buffer.
    pub fn to_bytes(&self) -> Result<Bytes> {
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::mask::debug_fields(f, "Message", self.mti, self.fields())
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::mask::display_fields(f, self.mti, self.fields())
    }
}

impl PartialEq for Message {
    /// Two messages are equal when they have the same dialect name, MTI and field
    /// contents (wire form).
    fn eq(&self, other: &Self) -> bool {
        self.dialect.name() == other.dialect.name()
            && self.mti == other.mti
            && self.present == other.present
            && self
                .fields()
                .zip(other.fields())
                .all(|(a, b)| a.raw() == b.raw() && a.units() == b.units())
    }
}
