//! One decoded field: its raw bytes and typed values computed on demand.

use crate::composite::{Node, SubfieldIter};
use crate::currency;
use crate::error::{CodecError, ErrorKind, FieldPath, KeyStyle, Result};
use crate::spec::{ContentClass, FieldSpec, Subfields};
use crate::tlv::TlvIter;
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use rust_decimal::Decimal;
use std::borrow::Cow;

/// A present field (or subfield) of a decoded message, borrowing the message bytes.
#[derive(Clone, Copy)]
pub struct FieldRef<'a> {
    pub(crate) number: u8,
    pub(crate) spec: &'a FieldSpec,
    pub(crate) raw: &'a [u8],
    pub(crate) units: usize,
    pub(crate) offset: usize,
    pub(crate) node: Option<&'a Node>,
    pub(crate) path: FieldPath,
}

impl<'a> FieldRef<'a> {
    /// The data element's number (for a subfield, the number of the field it is in).
    pub fn number(&self) -> u8 {
        self.number
    }

    /// The full path: `48` for a data element, `48.42.1` for a subfield.
    pub fn path(&self) -> FieldPath {
        self.path
    }

    /// The key of this field within its composite (its number, bit or tag); the field
    /// number for a data element.
    pub fn key(&self) -> u32 {
        self.path.last()
    }

    /// The key as text, as in paths and the JSON form (`42`, `9F26`).
    pub fn key_text(&self) -> String {
        let mut s = String::new();
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{}", self.path));
        match s.rfind('.') {
            Some(i) => s[i + 1..].to_string(),
            None => s,
        }
    }

    /// Whether the field is composite (made of subfields, see [`crate::spec::Composite`]).
    pub fn is_composite(&self) -> bool {
        self.node.is_some()
    }

    /// The subfields of a composite field, in wire order (none for a plain field); no
    /// allocation.
    pub fn subfields(&self) -> SubfieldIter<'a> {
        match self.node {
            Some(n) => SubfieldIter::new(n, self.raw, self.offset, self.path, self.number),
            None => SubfieldIter::empty(),
        }
    }

    /// The subfield with key `key` (written as in paths: `42`, `9F26`), if present.
    #[inline]
    pub fn sub(&self, key: &str) -> Option<FieldRef<'a>> {
        self.node?;
        crate::composite::descend(*self, crate::path::OneKey(Some(key.as_bytes())))
    }

    /// The subfield at `path` below this field (`"42.1"` below DE 48), if present.
    #[inline]
    pub fn get_path(&self, path: &str) -> Option<FieldRef<'a>> {
        crate::composite::descend(
            *self,
            crate::path::TextKeys {
                rest: Some(path.as_bytes()),
            },
        )
    }

    /// The subfield at `path` (a [`crate::Path`] parsed once) if this field is the path's
    /// data element and the subfield is present.
    #[inline]
    pub fn at(&self, path: &crate::Path) -> Option<FieldRef<'a>> {
        if self.path.depth() != 1 || self.number != path.field() {
            return None;
        }
        crate::composite::descend(*self, path.keys())
    }

    /// The style keys of this field's subfields are written in (`None` if not composite).
    pub fn key_style(&self) -> Option<KeyStyle> {
        self.node.map(|n| n.style())
    }

    /// The field's spec.
    pub fn spec(&self) -> &'a FieldSpec {
        self.spec
    }

    /// The encoded content (after the length prefix), borrowed from the message.
    #[inline]
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The length in the spec's units (the value of the length prefix).
    pub fn units(&self) -> usize {
        self.units
    }

    /// Byte offset of the content in the message.
    pub fn offset(&self) -> usize {
        self.offset
    }

    fn bad(&self, what: &'static str) -> CodecError {
        CodecError::path(self.path, self.offset, ErrorKind::BadValue { what })
    }

    /// The text form: the characters of a text field (borrowed when the wire is ASCII),
    /// the digits of a BCD field, uppercase hex of a binary field.
    #[inline]
    pub fn text(&self) -> Cow<'a, str> {
        self.spec.wire_to_text(self.raw, self.units)
    }

    /// The text form, masked per the field's sensitivity (safe to log).
    pub fn masked(&self) -> Cow<'a, str> {
        crate::mask::mask(self.spec.sensitive, self.text())
    }

    /// The value as bytes: raw content for binary fields, decoded bytes for hex text.
    pub fn bytes(&self) -> Cow<'a, [u8]> {
        self.spec.wire_to_bytes(self.raw)
    }

    /// The value as an unsigned integer (numeric fields of up to 19 digits).
    pub fn as_u64(&self) -> Result<u64> {
        let t = self.text();
        parse_u64(t.as_bytes()).ok_or_else(|| self.bad("number"))
    }

    /// The value as an amount with `exponent` decimal places (`000000001000`, 2 →
    /// `10.00`). `x+n` amounts are signed: `C` positive, `D` negative.
    pub fn amount(&self, exponent: u32) -> Result<Decimal> {
        let t = self.text();
        let b = t.as_bytes();
        let (neg, digits) = match (self.spec.class, b.first()) {
            (ContentClass::XN, Some(b'D')) => (true, &b[1..]),
            (ContentClass::XN, Some(b'C')) => (false, &b[1..]),
            (ContentClass::N, _) => (false, b),
            _ => return Err(self.bad("amount")),
        };
        let v = parse_u64(digits).ok_or_else(|| self.bad("amount"))?;
        let mut d = Decimal::try_from_i128_with_scale(v as i128, exponent)
            .map_err(|_| self.bad("amount"))?;
        d.set_sign_negative(neg);
        Ok(d)
    }

    /// The amount with the exponent of the ISO 4217 numeric currency `code`.
    pub fn amount_in(&self, currency_code: u16) -> Result<Decimal> {
        self.amount(currency::minor_units(currency_code))
    }

    /// `hhmmss` (DE 12 in 1987) as a time.
    pub fn time_hhmmss(&self) -> Result<NaiveTime> {
        let d = self.fixed_digits::<6>()?;
        NaiveTime::from_hms_opt(num(&d[0..2]), num(&d[2..4]), num(&d[4..6]))
            .ok_or_else(|| self.bad("time"))
    }

    /// `MMDD` (DE 13, 15, 16, 17) as a date in `year`.
    pub fn date_mmdd(&self, year: i32) -> Result<NaiveDate> {
        let d = self.fixed_digits::<4>()?;
        NaiveDate::from_ymd_opt(year, num(&d[0..2]), num(&d[2..4])).ok_or_else(|| self.bad("date"))
    }

    /// `MMDD` as the date nearest to `reference` (the year is inferred: a December date
    /// seen in January is last year's).
    pub fn date_mmdd_near(&self, reference: NaiveDate) -> Result<NaiveDate> {
        let d = self.fixed_digits::<4>()?;
        nearest(
            reference,
            num(&d[0..2]),
            num(&d[2..4]),
            NaiveDate::from_ymd_opt,
        )
        .ok_or_else(|| self.bad("date"))
    }

    /// `MMDDhhmmss` (DE 7) as a date-time in `year`.
    pub fn datetime_mmddhhmmss(&self, year: i32) -> Result<NaiveDateTime> {
        let d = self.fixed_digits::<10>()?;
        NaiveDate::from_ymd_opt(year, num(&d[0..2]), num(&d[2..4]))
            .and_then(|date| date.and_hms_opt(num(&d[4..6]), num(&d[6..8]), num(&d[8..10])))
            .ok_or_else(|| self.bad("date-time"))
    }

    /// `MMDDhhmmss` (DE 7) as the date-time nearest to `reference`.
    pub fn datetime_mmddhhmmss_near(&self, reference: NaiveDateTime) -> Result<NaiveDateTime> {
        let d = self.fixed_digits::<10>()?;
        let date = nearest(
            reference.date(),
            num(&d[0..2]),
            num(&d[2..4]),
            NaiveDate::from_ymd_opt,
        )
        .ok_or_else(|| self.bad("date-time"))?;
        date.and_hms_opt(num(&d[4..6]), num(&d[6..8]), num(&d[8..10]))
            .ok_or_else(|| self.bad("date-time"))
    }

    /// `YYMMDDhhmmss` (DE 12 in 1993) as a date-time (years 2000–2099).
    pub fn datetime_yymmddhhmmss(&self) -> Result<NaiveDateTime> {
        let d = self.fixed_digits::<12>()?;
        NaiveDate::from_ymd_opt(2000 + num(&d[0..2]) as i32, num(&d[2..4]), num(&d[4..6]))
            .and_then(|date| date.and_hms_opt(num(&d[6..8]), num(&d[8..10]), num(&d[10..12])))
            .ok_or_else(|| self.bad("date-time"))
    }

    /// `YYMM` (DE 14 expiry) as the last day of that month (years 2000–2099): a card is
    /// valid through the end of its expiry month.
    pub fn expiry_yymm(&self) -> Result<NaiveDate> {
        let d = self.fixed_digits::<4>()?;
        let (y, m) = (2000 + num(&d[0..2]) as i32, num(&d[2..4]));
        let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(|| self.bad("expiry"))?;
        let next = if m == 12 {
            NaiveDate::from_ymd_opt(y + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(y, m + 1, 1)
        };
        next.and_then(|n| n.pred_opt())
            .filter(|l| l.month() == first.month())
            .ok_or_else(|| self.bad("expiry"))
    }

    /// Positional subfield `index` (0-based; `cup-pos` 60.2 is index 1) of the text form,
    /// if the spec has a positional layout and the value reaches it.
    pub fn subfield(&self, index: usize) -> Option<Cow<'a, str>> {
        let Some(Subfields::Positional(parts)) = &self.spec.subfields else {
            return None;
        };
        let start: usize = parts.iter().take(index).map(|p| p.len as usize).sum();
        let len = parts.get(index)?.len as usize;
        let text = self.text();
        if start >= text.len() {
            return None;
        }
        let end = (start + len).min(text.len());
        Some(match text {
            Cow::Borrowed(s) => Cow::Borrowed(s.get(start..end)?),
            Cow::Owned(s) => Cow::Owned(s.get(start..end)?.to_string()),
        })
    }

    /// The BER-TLV objects of a binary field (DE 55), borrowing the message bytes.
    /// For hex-text encodings, decode [`FieldRef::bytes`] with [`crate::tlv::parse`].
    pub fn tlv(&self) -> TlvIter<'a> {
        TlvIter::new(self.raw)
    }

    fn fixed_digits<const L: usize>(&self) -> Result<[u8; L]> {
        let t = self.text();
        let b = t.as_bytes();
        if b.len() != L || !b.iter().all(u8::is_ascii_digit) {
            return Err(self.bad("fixed-length digits"));
        }
        let mut out = [0u8; L];
        out.copy_from_slice(b);
        Ok(out)
    }
}

/// Parses up to 19 ASCII digits.
pub(crate) fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u64, |v, &d| v * 10 + (d - b'0') as u64))
}

fn num(d: &[u8]) -> u32 {
    d.iter().fold(0u32, |v, &c| v * 10 + (c - b'0') as u32)
}

fn nearest<T>(
    reference: NaiveDate,
    month: u32,
    day: u32,
    make: impl Fn(i32, u32, u32) -> Option<T>,
) -> Option<T>
where
    T: Copy,
    NaiveDate: From<T>,
{
    let y = reference.year();
    [y, y - 1, y + 1]
        .into_iter()
        .filter_map(|yy| make(yy, month, day))
        .min_by_key(|c| (NaiveDate::from(*c) - reference).num_days().abs())
}

impl std::fmt::Debug for FieldRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Field({}: {:?})", self.path, self.masked())
    }
}
