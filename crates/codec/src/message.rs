//! The owned message: build, edit, validate and encode.
//!
//! A [`Message`] keeps every field in its *wire form* (encoded content plus its length in
//! units). Fields of a decoded message point into the shared input [`Bytes`] (no copy):
//! the message decodes straight into the same index a [`MessageView`] has, so while it is
//! unchanged it gives that view ([`Message::view`]), its MAC span ([`Message::mac_span`])
//! and its bytes ([`Message::to_bytes`]) without decoding or encoding again. Fields set by
//! hand are encoded once, when set, into a small arena, prefix and content as they go on
//! the wire. Encoding is therefore a single pass of copies into a `BytesMut` (one copy
//! of the arena for a message built in field order), and editing a decoded message
//! re-encodes only the fields that were changed (for composites: the enclosing
//! composites, see [`Message::set_path`]).

use crate::bitmap::Bitmap;
use crate::composite::segments;
use crate::currency;
use crate::dialect::Dialect;
use crate::error::{CodecError, ErrorKind, FieldPath, Location, Result};
use crate::field::FieldRef;
use crate::mti::Mti;
use crate::view::{parse_field_number, units_at, Index, MessageView};
use bytes::{BufMut, Bytes, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use rust_decimal::Decimal;
use std::fmt;

/// First arena capacity: the fields a switch or host sets on one message (a 0200 built
/// from scratch is about 300 bytes of content with DE 55, a response a few dozen).
const ARENA_FIRST: usize = 512;
/// Arena entries are addressed by 16-bit offsets.
const ARENA_MAX: usize = u16::MAX as usize;

/// An owned ISO 8583 message in a dialect.
#[derive(Clone)]
pub struct Message {
    dialect: Dialect,
    /// MTI, the bitmap as decoded (while `pristine`), and per field where its content
    /// starts: in `shared`, or (fields in `in_arena`) in `arena`. Either way the content
    /// follows its length prefix, as on the wire, and its length is read back from it.
    ix: Index,
    present: Bitmap,
    in_arena: Bitmap,
    /// Decoded from `shared` and not changed since.
    pristine: bool,
    /// Sum over present fields of prefix + content bytes (keeps `encoded_len` O(1)).
    wire_total: usize,
    shared: Bytes,
    /// Fields set by hand, each in its wire form (prefix and content).
    arena: Vec<u8>,
    /// The arena holds exactly the present fields, in ascending order, with nothing
    /// between them (a message built field by field in order): encoding is then one copy.
    in_order: bool,
    /// The highest field appended while `in_order`.
    last: u8,
}

impl Message {
    /// An empty message of type `mti`.
    pub fn new(dialect: &Dialect, mti: Mti) -> Message {
        Message::from_parts(dialect, Index::empty(mti), Bytes::new())
    }

    /// A message of `ix` over `shared`, nothing set by hand yet. Always inlined, so that
    /// the caller builds the message where it keeps it.
    #[inline(always)]
    fn from_parts(dialect: &Dialect, ix: Index, shared: Bytes) -> Message {
        Message {
            dialect: dialect.clone(),
            ix,
            present: Bitmap::EMPTY,
            in_arena: Bitmap::EMPTY,
            pristine: false,
            wire_total: 0,
            shared,
            arena: Vec::new(),
            in_order: true,
            last: 0,
        }
    }

    /// Decodes `bytes` into a message that shares the buffer (no copy of any field).
    ///
    /// Errors as [`MessageView::decode`] (including messages over
    /// [`MessageView::MAX_LEN`] bytes). The message decodes into the same index as a
    /// view: it costs little more than [`MessageView::decode`].
    #[inline(always)]
    pub fn decode(dialect: &Dialect, bytes: Bytes) -> Result<Message> {
        // The index written out (not `Index::empty`, which is not inlined), and the whole
        // function inlined into the caller: the message is zeroed and parsed in the
        // caller's frame, not built in this one and copied out (about 560 bytes; with
        // plain `#[inline]` LLVM kept it out of line and the copy).
        let ix = Index {
            mti: Mti::ZERO,
            bitmap: Bitmap::EMPTY,
            slots: [0; 256],
        };
        let mut m = Message::from_parts(dialect, ix, bytes);
        m.ix.parse_outlined(dialect, &m.shared)?;
        m.after_parse(m.shared.len());
        Ok(m)
    }

    #[inline]
    fn after_parse(&mut self, len: usize) {
        let b = self.ix.bitmap;
        let mut present = b;
        present.clear(1);
        if self.dialect.has_tertiary() {
            present.clear(65);
        }
        self.present = present;
        self.wire_total = len - self.header_len(&b);
        self.pristine = true;
        self.in_order = false;
    }

    /// Copies a view into an owned message (one copy of the message bytes).
    pub fn from_view(view: &MessageView<'_>) -> Message {
        let mut m = Message::new(view.dialect(), view.mti());
        m.ix = view.index().clone();
        m.after_parse(view.as_bytes().len());
        m.shared = Bytes::copy_from_slice(view.as_bytes());
        m
    }

    /// The view of this message, when it was decoded and has not been changed since
    /// (`None` otherwise: encode it and decode the bytes). Nothing is decoded again: the
    /// message keeps the view's index.
    pub fn view(&self) -> Option<MessageView<'_>> {
        self.pristine
            .then(|| MessageView::from_index(&self.dialect, &self.shared, &self.ix))
    }

    /// The bytes this message was decoded from, while it is unchanged.
    pub fn decoded_bytes(&self) -> Option<&Bytes> {
        self.pristine.then_some(&self.shared)
    }

    /// The MACed span and the MAC field's content (as [`MessageView::mac_span`]) of a
    /// message decoded and not changed since, read from its index without decoding
    /// again. `None` if it carries no MAC, or if it was built or changed (then encode it:
    /// the span is the encoding up to the MAC field).
    pub fn mac_span(&self) -> Option<(&[u8], &[u8])> {
        if !self.pristine {
            return None;
        }
        let layout = self.dialect.mac_layout();
        let n = if self.ix.bitmap.get(1) {
            layout.secondary?
        } else {
            layout.primary
        };
        if !self.present.get(n) {
            return None;
        }
        let start = self.ix.slots[n as usize] as usize;
        let h = self.dialect.hot(n);
        let len = h.wire_len(units_at(&self.dialect, &self.shared, n, start));
        let field_start = start.checked_sub(h.prefix_len as usize)?;
        Some((
            self.shared.get(..field_start)?,
            self.shared.get(start..start + len)?,
        ))
    }

    /// A response to `request`: the response MTI and the dialect's echo fields copied
    /// (without re-encoding them).
    pub fn response_to(request: &Message) -> Result<Message> {
        let mti = request
            .ix
            .mti
            .response_mti()
            .ok_or_else(|| CodecError::new(Location::Mti, 0, ErrorKind::BadMti))?;
        let mut m = Message::new(&request.dialect, mti);
        m.shared = request.shared.clone();
        m.in_order = false;
        for &n in request.dialect.echo_fields() {
            if request.present.get(n) {
                if request.in_arena.get(n) {
                    let (units, content) = request.wire(n);
                    m.store(n, content, units)?;
                } else {
                    m.ix.slots[n as usize] = request.ix.slots[n as usize];
                    m.present.set(n);
                    m.wire_total += request.field_wire_len(n);
                }
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
        self.ix.mti
    }

    /// Changes the MTI (e.g. `0400` → `0401` for a repeat).
    pub fn set_mti(&mut self, mti: Mti) {
        if mti != self.ix.mti {
            self.pristine = false;
        }
        self.ix.mti = mti;
    }

    /// Data fields present (bitmap bits are computed when encoding).
    pub fn present(&self) -> Bitmap {
        self.present
    }

    /// Whether field `n` is present.
    pub fn has(&self, n: u8) -> bool {
        self.present.get(n)
    }

    /// Units and content of present field `n`.
    #[inline]
    fn wire(&self, n: u8) -> (usize, &[u8]) {
        let off = self.ix.slots[n as usize] as usize;
        let buf: &[u8] = if self.in_arena.get(n) {
            &self.arena
        } else {
            &self.shared
        };
        let units = units_at(&self.dialect, buf, n, off);
        let len = self.dialect.hot(n).wire_len(units);
        (units, buf.get(off..off + len).unwrap_or(&[]))
    }

    /// Prefix + content bytes of present field `n`.
    #[inline]
    fn field_wire_len(&self, n: u8) -> usize {
        self.dialect.hot(n).prefix_len as usize + self.wire(n).1.len()
    }

    /// Field `n`, if present.
    pub fn field(&self, n: u8) -> Option<FieldRef<'_>> {
        if !self.present.get(n) {
            return None;
        }
        let spec = self.dialect.field(n)?;
        let (units, raw) = self.wire(n);
        Some(FieldRef {
            number: n,
            spec,
            raw,
            units,
            offset: if self.in_arena.get(n) {
                0
            } else {
                self.ix.slots[n as usize] as usize
            },
            node: self.dialect.node(n),
            path: FieldPath::top(n),
        })
    }

    /// The field or subfield at `path` (`"4"`, `"48.42.1"`), if present.
    pub fn get_path(&self, path: &str) -> Option<FieldRef<'_>> {
        crate::view::resolve_path(path, |n| self.field(n))
    }

    /// The field or subfield at `path`, a [`crate::Path`] parsed once (as
    /// [`Message::get_path`] with its text).
    pub fn at(&self, path: &crate::Path) -> Option<FieldRef<'_>> {
        crate::composite::descend(self.field(path.field())?, path.keys())
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

    /// Makes room in the arena for `len` more bytes (a field's prefix and content),
    /// compacting it first when it has grown.
    #[inline]
    fn reserve_entry(&mut self, n: u8, len: usize) -> Result<()> {
        if self.arena.capacity() == 0 {
            self.arena = Vec::with_capacity(len.max(ARENA_FIRST));
        } else if self.arena.len() >= 4096 || self.arena.len() + len > ARENA_MAX {
            self.compact();
            if self.arena.len() + len > ARENA_MAX {
                return Err(CodecError::field(
                    n,
                    0,
                    ErrorKind::TooLong {
                        max: ARENA_MAX,
                        found: self.arena.len() + len,
                    },
                ));
            }
        }
        Ok(())
    }

    /// Appends the length prefix for `units` of field `n` (nothing for a fixed field).
    #[inline(always)]
    fn put_prefix(&mut self, n: u8, units: usize) {
        let (p, l) = self.dialect.hot(n).prefix_bytes(units);
        let at = self.arena.len();
        // A constant-size copy, then the unused bytes dropped: no call for `l` bytes.
        self.arena.extend_from_slice(&p);
        self.arena.truncate(at + l);
    }

    /// Completes field `n`, written to the arena from `start` (prefix, then content).
    #[inline]
    fn finish_entry(&mut self, n: u8, start: usize) {
        let plen = self.dialect.hot(n).prefix_len as usize;
        if self.present.get(n) {
            self.wire_total -= self.field_wire_len(n);
            self.in_order = false;
        } else if n <= self.last {
            self.in_order = false;
        }
        self.last = n;
        self.wire_total += self.arena.len() - start;
        self.ix.slots[n as usize] = (start + plen) as u16;
        self.present.set(n);
        self.in_arena.set(n);
        self.pristine = false;
    }

    /// Stores already-encoded content of `units` units for field `n`.
    fn store(&mut self, n: u8, content: &[u8], units: usize) -> Result<()> {
        let plen = self.dialect.hot(n).prefix_len as usize;
        // `put_prefix` writes 8 bytes before dropping the unused ones.
        self.reserve_entry(n, plen.max(8) + content.len())?;
        let start = self.arena.len();
        self.put_prefix(n, units);
        self.arena.extend_from_slice(content);
        self.finish_entry(n, start);
        Ok(())
    }

    /// Sets field `n` from its text form: characters for text fields, digits for numeric
    /// (BCD or not), uppercase or lowercase hex for binary fields. Validated against the
    /// dialect (charset, fixed length, maximum) and encoded once, now.
    ///
    /// For a composite field the value is its content, which must be valid; to set a
    /// subfield use [`Message::set_path`].
    #[inline]
    pub fn set(&mut self, n: u8, value: impl AsRef<[u8]>) -> Result<&mut Self> {
        let value = value.as_ref();
        if self.set_text(n, value) {
            Ok(self)
        } else {
            self.set_general(n, value)
        }
    }

    /// [`Message::set`] by the field's plan (see `crate::plan`): `false` when the plan does
    /// not take the value (then nothing changed and the general path decides). Text of up
    /// to 16 bytes appended in field order is one 24-byte store; the rest goes through
    /// [`Message::set_planned`].
    #[inline(never)]
    fn set_text(&mut self, n: u8, value: &[u8]) -> bool {
        let p = self.dialect.plan(n);
        let len = value.len();
        if !p.takes(len) {
            return false;
        }
        let start = self.arena.len();
        // In order and above the last field: not present (`in_order` means the arena
        // holds exactly the present fields, all up to `last`).
        if self.in_order && n > self.last && start < 4096 && self.arena.capacity() - start >= 24 {
            if let Some(b) = p.short(value) {
                let plen = p.plen as usize;
                let (w, bit) = (p.word, p.bit);
                let wire = plen + p.sizes(len).0;
                self.arena.extend_from_slice(&b);
                self.arena.truncate(start + wire);
                self.last = n;
                self.wire_total += wire;
                self.ix.slots[n as usize] = (start + plen) as u16;
                self.present.0[w] |= bit;
                self.in_arena.0[w] |= bit;
                self.pristine = false;
                return true;
            }
        }
        self.set_planned(n, value)
    }

    /// The plan's general path: any length, every conversion, any order.
    #[inline(never)]
    fn set_planned(&mut self, n: u8, value: &[u8]) -> bool {
        let p = self.dialect.plan(n);
        let len = value.len();
        let plen = p.plen as usize;
        // The prefix and the last chunk are written whole before being cut to size.
        let need = plen + p.sizes(len).0 + 16;
        if (self.arena.capacity() - self.arena.len() < need || self.arena.len() >= 4096)
            && !self.reserve_cold(n, need)
        {
            return false;
        }
        let start = self.arena.len();
        let p = self.dialect.plan(n);
        if !p.write(value, &mut self.arena) {
            return false;
        }
        if !self.in_order || n <= self.last {
            // Replacing a field, or out of order: the general bookkeeping.
            self.finish_entry(n, start);
            return true;
        }
        let (w, bit) = (p.word, p.bit);
        self.last = n;
        self.wire_total += self.arena.len() - start;
        self.ix.slots[n as usize] = (start + plen) as u16;
        self.present.0[w] |= bit;
        self.in_arena.0[w] |= bit;
        self.pristine = false;
        true
    }

    /// The first allocation of the arena, or its compaction (cold: once per message).
    #[cold]
    #[inline(never)]
    fn reserve_cold(&mut self, n: u8, need: usize) -> bool {
        // An arena at its limit is an error the general path reports.
        self.reserve_entry(n, need).is_ok()
    }

    /// [`Message::set`] for every spec, with the exact error.
    #[inline(never)]
    fn set_general(&mut self, n: u8, value: &[u8]) -> Result<&mut Self> {
        let d = self.dialect.clone();
        let spec = self.spec_for(n)?;
        if let Some(node) = d.node(n) {
            spec.check_units(n, value.len())?;
            node.validate(value, 0, value.len(), FieldPath::top(n), d.name())?;
            self.store(n, value, value.len())?;
            return Ok(self);
        }
        let h = *d.hot(n);
        let plen = h.prefix_len as usize;
        self.reserve_entry(n, plen + value.len())?;
        let start = self.arena.len();
        // The prefix's room first; it is written once the units are known.
        self.arena.resize(start + plen, 0);
        let spec = d.field(n).expect("checked by spec_for");
        match spec.text_to_wire(n, value, &mut self.arena) {
            Ok(units) => {
                let (p, l) = h.prefix_bytes(units);
                self.arena[start..start + l].copy_from_slice(&p[..l]);
                self.finish_entry(n, start);
                Ok(self)
            }
            Err(e) => {
                self.arena.truncate(start);
                Err(e)
            }
        }
    }

    /// Sets the subfield at `path` (`"48.42.1"`, `"127.25.3"`) from its text form. The
    /// enclosing composites are created when absent and written again with their
    /// lengths and bitmaps recomputed; their other subfields (unknown tags included) are
    /// copied byte for byte, and the other fields are untouched. A one-element path is
    /// [`Message::set`].
    ///
    /// Errors name the path: a key the dialect does not define, a value that does not fit
    /// its subfield, a positional composite with a gap (`62.3` without `62.2`).
    pub fn set_path(&mut self, path: &str, value: impl AsRef<[u8]>) -> Result<&mut Self> {
        self.edit_path(path, Some(value.as_ref()))
    }

    /// Removes the subfield at `path`, re-encoding the enclosing composites (which stay
    /// present, possibly with no subfields). A one-element path is [`Message::remove`].
    pub fn remove_path(&mut self, path: &str) -> Result<&mut Self> {
        self.edit_path(path, None)
    }

    fn edit_path(&mut self, path: &str, value: Option<&[u8]>) -> Result<&mut Self> {
        let bad = |what: String| CodecError::new(Location::Message, 0, ErrorKind::BadPath { what });
        let segs: Vec<&[u8]> = segments(path).collect();
        let n = segs
            .first()
            .and_then(|s| parse_field_number(s))
            .ok_or_else(|| bad(format!("{path:?} does not start with a field number")))?;
        if segs.len() == 1 {
            return match value {
                Some(v) => self.set(n, v),
                None => Ok(self.remove(n)),
            };
        }
        let d = self.dialect.clone();
        let spec = self.spec_for(n)?;
        let node = d
            .node(n)
            .ok_or_else(|| bad(format!("field {n} is not a composite")))?;
        let built = {
            let current: &[u8] = if self.present.get(n) {
                self.wire(n).1
            } else if value.is_none() {
                return Ok(self);
            } else {
                &[]
            };
            node.edit(current, &segs[1..], value, FieldPath::top(n), d.name())?
        };
        spec.check_units(n, built.len())?;
        self.store(n, &built, built.len())?;
        Ok(self)
    }

    /// Sets a composite field from already-encoded, valid content (used by the JSON form).
    pub(crate) fn set_content(&mut self, n: u8, content: &[u8]) -> Result<&mut Self> {
        self.spec_for(n)?.check_units(n, content.len())?;
        self.store(n, content, content.len())?;
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
                let d = self.dialect.clone();
                if let Some(node) = d.node(n) {
                    node.validate(value, 0, value.len(), FieldPath::top(n), d.name())?;
                }
                self.store(n, value, value.len())?;
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
            self.wire_total -= self.field_wire_len(n);
            self.present.clear(n);
            self.in_arena.clear(n);
            self.pristine = false;
            self.in_order = false;
        }
        self
    }

    /// The arena only grows when fields are replaced; compact it when most of it is dead
    /// (or when it reaches the limit of its 16-bit offsets).
    fn compact(&mut self) {
        let d = &self.dialect;
        let whole = |n: u8, arena: &[u8], slot: u16| {
            let h = d.hot(n);
            let off = slot as usize;
            let units = units_at(d, arena, n, off);
            (off - h.prefix_len as usize, off + h.wire_len(units))
        };
        let live: usize = self
            .in_arena
            .iter()
            .map(|n| {
                let (a, b) = whole(n, &self.arena, self.ix.slots[n as usize]);
                b - a
            })
            .sum();
        if live * 2 > self.arena.len() && self.arena.len() < ARENA_MAX / 2 {
            return;
        }
        let mut fresh = Vec::with_capacity(live + ARENA_FIRST);
        for n in self.in_arena.iter() {
            let (a, b) = whole(n, &self.arena, self.ix.slots[n as usize]);
            let new_start = fresh.len();
            fresh.extend_from_slice(&self.arena[a..b]);
            self.ix.slots[n as usize] =
                (new_start + (self.ix.slots[n as usize] as usize - a)) as u16;
        }
        self.arena = fresh;
        // Compacted in ascending order: in order again if no field is in `shared`.
        self.in_order = self.in_arena == self.present;
        self.last = self.present.iter().last().unwrap_or(0);
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

    #[inline]
    fn header_len(&self, b: &Bitmap) -> usize {
        let d = &self.dialect;
        let words = 1 + b.get(1) as usize + (d.has_tertiary() && b.get(65)) as usize;
        d.mti_encoding().len() + words * d.bitmap_encoding().len()
    }

    /// The exact encoded length in bytes.
    pub fn encoded_len(&self) -> Result<usize> {
        if self.pristine {
            return Ok(self.shared.len());
        }
        let b = self.wire_bitmap()?;
        Ok(self.header_len(&b) + self.wire_total)
    }

    /// Encodes the message (no length header) at the end of `out`: one reservation, then
    /// straight copies of each field's wire form (a decoded, unchanged message: its bytes).
    pub fn encode(&self, out: &mut BytesMut) -> Result<()> {
        if self.pristine {
            out.extend_from_slice(&self.shared);
            return Ok(());
        }
        let d = &self.dialect;
        let b = self.wire_bitmap()?;
        out.reserve(self.header_len(&b) + self.wire_total);
        // The MTI and the bitmaps into one buffer, copied once.
        let mut head = [0u8; 52];
        let (mti, mut at) = self.ix.mti.to_wire(d.mti_encoding());
        head[..4].copy_from_slice(&mti);
        let benc = d.bitmap_encoding();
        let words = 1 + b.get(1) as usize + (d.has_tertiary() && b.get(65)) as usize;
        for &word in &b.0[..words] {
            let (w, l) = Bitmap::word_bytes(benc, word);
            head[at..at + 16].copy_from_slice(&w);
            at += l;
        }
        out.put_slice(&head[..at]);
        if self.in_order {
            // Every field, in order, prefix and content: the arena as it is.
            out.put_slice(&self.arena);
            return Ok(());
        }
        for n in self.present.iter() {
            let h = d.hot(n);
            let off = self.ix.slots[n as usize] as usize;
            let buf: &[u8] = if self.in_arena.get(n) {
                &self.arena
            } else {
                &self.shared
            };
            // Prefix and content as stored (as received, for a decoded field).
            let len = h.wire_len(units_at(d, buf, n, off));
            let from = off - h.prefix_len as usize;
            out.put_slice(buf.get(from..off + len).unwrap_or(&[]));
        }
        Ok(())
    }

    /// Encodes into a new buffer (a decoded, unchanged message: its bytes, shared).
    pub fn to_bytes(&self) -> Result<Bytes> {
        if self.pristine {
            return Ok(self.shared.clone());
        }
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::mask::debug_fields(f, "Message", self.ix.mti, self.fields())
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::mask::display_fields(f, self.ix.mti, self.fields())
    }
}

impl PartialEq for Message {
    /// Two messages are equal when they have the same dialect name, MTI and field
    /// contents (wire form).
    fn eq(&self, other: &Self) -> bool {
        self.dialect.name() == other.dialect.name()
            && self.ix.mti == other.ix.mti
            && self.present == other.present
            && self
                .fields()
                .zip(other.fields())
                .all(|(a, b)| a.raw() == b.raw() && a.units() == b.units())
    }
}
