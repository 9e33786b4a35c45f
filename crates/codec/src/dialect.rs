//! Dialects: a table of field specs plus the MTI and bitmap encodings, as data.
//!
//! A [`Dialect`] is a cheap-to-clone handle (an `Arc`). Built-in dialects are created once;
//! users describe their own host's dialect in JSON or TOML ([`DialectDef`]) without writing
//! Rust, or build one in code.

use crate::bitmap::{Bitmap, BitmapEncoding};
use crate::composite::Node;
use crate::error::FieldPath;
use crate::error::{CodecError, ErrorKind, Location, Result};
use crate::hot::Hot;
use crate::mti::MtiEncoding;
use crate::plan::SetPlan;
use crate::spec::FieldSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Where the message authentication code goes and what it covers.
///
/// The MAC field is the last field of a message: `primary` (DE 64) when the message has
/// only a primary bitmap, `secondary` (DE 128) when it has a secondary bitmap. The MACed
/// span is every byte from the start of the MTI up to the start of the MAC field (the
/// length header, TPDU and application header are never part of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacLayout {
    /// The MAC field in messages with a primary bitmap only (usually 64).
    pub primary: u8,
    /// The MAC field in messages with a secondary bitmap (usually 128), if any.
    #[serde(default)]
    pub secondary: Option<u8>,
}

impl Default for MacLayout {
    fn default() -> Self {
        MacLayout {
            primary: 64,
            secondary: Some(128),
        }
    }
}

/// The serializable description of a dialect (the JSON/TOML form).
///
/// Field keys are field numbers as strings (`"2"`, `"128"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialectDef {
    /// Short name, e.g. `iso87-ascii`.
    pub name: String,
    /// What the dialect is for.
    #[serde(default)]
    pub description: String,
    /// MTI encoding.
    #[serde(default)]
    pub mti: MtiEncoding,
    /// Bitmap encoding.
    #[serde(default)]
    pub bitmap: BitmapEncoding,
    /// Whether a secondary bitmap (fields 65–128) may be used.
    #[serde(default = "yes")]
    pub secondary_bitmap: bool,
    /// Whether bit 65 announces a tertiary bitmap (fields 129–192).
    #[serde(default)]
    pub tertiary_bitmap: bool,
    /// Fields a response copies from its request ([`crate::Message::response_to`]).
    #[serde(default)]
    pub echo_fields: Vec<u8>,
    /// Where the MAC goes.
    #[serde(default)]
    pub mac: MacLayout,
    /// The MTI version digits (first digit: 0 = 1987, 1 = 1993, 2 = 2003) the dialect
    /// allows when building messages from their JSON form; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mti_versions: Vec<u8>,
    /// The field table.
    pub fields: BTreeMap<String, FieldSpec>,
}

fn yes() -> bool {
    true
}

#[derive(Debug)]
pub(crate) struct DialectInner {
    pub(crate) def: DialectDef,
    pub(crate) fields: Vec<Option<FieldSpec>>,
    /// Indexed by field number; 256 entries so a `u8` index needs no bounds check.
    pub(crate) hot: Box<[Hot; 256]>,
    /// How `Message::set` writes each field from text, indexed by field number.
    pub(crate) plans: Box<[SetPlan; 256]>,
    /// Compiled composites, by field number.
    pub(crate) nodes: Vec<Option<Box<Node>>>,
    /// The fields that are composite.
    pub(crate) composite_bits: Bitmap,
    /// Whether any field is composite.
    pub(crate) has_composites: bool,
    /// Bit `v` set when MTI version digit `v` is allowed (every bit when the dialect
    /// names none): one test per decode instead of a search.
    pub(crate) mti_mask: u16,
}

/// An ISO 8583 dialect: field specs, MTI and bitmap encodings, echo fields and MAC layout.
///
/// Cloning is cheap: reference counted, or, for the built-in dialects and those made
/// [`Dialect::into_static`], a plain reference (cloning and dropping one touches no
/// shared counter, which an owned [`crate::Message`] does on every decode).
#[derive(Clone)]
pub struct Dialect(pub(crate) Tables);

/// How a [`Dialect`] holds its tables.
#[derive(Clone)]
pub(crate) enum Tables {
    /// Shared by reference count (a dialect built at run time).
    Counted(Arc<DialectInner>),
    /// For the life of the process (built-in, or [`Dialect::into_static`]).
    Static(&'static DialectInner),
}

impl std::ops::Deref for Tables {
    type Target = DialectInner;

    #[inline(always)]
    fn deref(&self) -> &DialectInner {
        match self {
            Tables::Counted(a) => a,
            Tables::Static(r) => r,
        }
    }
}

impl fmt::Debug for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dialect({})", self.name())
    }
}

impl PartialEq for Dialect {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq::<DialectInner>(&*self.0, &*other.0) || self.0.def == other.0.def
    }
}

impl Dialect {
    /// Builds a dialect from its description, checking every field spec.
    pub fn from_def(def: DialectDef) -> Result<Dialect> {
        let bad =
            |what: String| CodecError::new(Location::Message, 0, ErrorKind::BadDialect { what });
        let mut fields: Vec<Option<FieldSpec>> = vec![None; 193];
        for (k, spec) in &def.fields {
            let n: u8 = k
                .trim()
                .parse()
                .map_err(|_| bad(format!("field key {k:?} is not a number")))?;
            if !(2..=192).contains(&n) {
                return Err(bad(format!("field {n} is not a data field (2..=192)")));
            }
            if n > 128 && !def.tertiary_bitmap {
                return Err(bad(format!("field {n} needs a tertiary bitmap")));
            }
            if n > 64 && !def.secondary_bitmap {
                return Err(bad(format!("field {n} needs a secondary bitmap")));
            }
            if n == 65 && def.tertiary_bitmap {
                return Err(bad("field 65 is the tertiary bitmap in this dialect".into()));
            }
            spec.validate(n)?;
            fields[n as usize] = Some(spec.clone());
        }
        let mut nodes: Vec<Option<Box<Node>>> = (0..193).map(|_| None).collect();
        let mut composite_bits = Bitmap::EMPTY;
        for (n, spec) in fields.iter().enumerate() {
            if let Some(c) = spec
                .as_ref()
                .and_then(|s| s.composite.as_ref().map(|c| (s, c)))
            {
                nodes[n] = Some(Box::new(Node::build(c.0, c.1, FieldPath::top(n as u8))?));
                composite_bits.set(n as u8);
            }
        }
        if def.mti_versions.iter().any(|&v| v > 9) {
            return Err(bad("mti_versions are digits 0..=9".into()));
        }
        for &e in &def.echo_fields {
            if fields.get(e as usize).is_none_or(|f| f.is_none()) {
                return Err(bad(format!("echo field {e} is not defined")));
            }
        }
        let hot = Box::new(std::array::from_fn(|i| {
            fields
                .get(i)
                .and_then(Option::as_ref)
                .map(Hot::of)
                .unwrap_or_default()
        }));
        let bitmap_field = |i: usize| i == 1 || (i == 65 && def.tertiary_bitmap);
        let plans = Box::new(std::array::from_fn(|i| {
            fields
                .get(i)
                .and_then(Option::as_ref)
                .filter(|_| (2..=192).contains(&i) && !bitmap_field(i))
                .map(|f| SetPlan::of(i as u8, f))
                .unwrap_or_default()
        }));
        let mti_mask = if def.mti_versions.is_empty() {
            u16::MAX
        } else {
            def.mti_versions.iter().fold(0u16, |m, &v| m | (1 << v))
        };
        Ok(Dialect(Tables::Counted(Arc::new(DialectInner {
            def,
            fields,
            hot,
            plans,
            nodes,
            has_composites: !composite_bits.is_empty(),
            composite_bits,
            mti_mask,
        }))))
    }

    /// This dialect for the life of the process: its tables are kept (never freed) and
    /// clones of the result are plain references, with no reference count to move on
    /// every clone and drop (every owned [`crate::Message`] holds its dialect). For
    /// dialects loaded once at start; the built-in ones are so already.
    pub fn into_static(self) -> Dialect {
        match self.0 {
            Tables::Static(_) => self,
            Tables::Counted(a) => {
                let kept: &'static Arc<DialectInner> = Box::leak(Box::new(a));
                Dialect(Tables::Static(kept))
            }
        }
    }

    /// The same dialect as a plain reference to `self`'s tables (`self` kept for the
    /// life of the process: the built-in dialects' cells).
    pub(crate) fn borrowed(d: &'static Dialect) -> Dialect {
        Dialect(Tables::Static(&d.0))
    }

    /// Parses a dialect from JSON.
    pub fn from_json(text: &str) -> Result<Dialect> {
        let def: DialectDef = serde_json::from_str(text).map_err(|e| {
            CodecError::new(
                Location::Message,
                0,
                ErrorKind::BadDialect {
                    what: e.to_string(),
                },
            )
        })?;
        Self::from_def(def)
    }

    /// Parses a dialect from TOML.
    pub fn from_toml(text: &str) -> Result<Dialect> {
        let def: DialectDef = toml::from_str(text).map_err(|e| {
            CodecError::new(
                Location::Message,
                0,
                ErrorKind::BadDialect {
                    what: e.to_string(),
                },
            )
        })?;
        Self::from_def(def)
    }

    /// The description this dialect was built from (serialize it to get JSON/TOML).
    pub fn def(&self) -> &DialectDef {
        &self.0.def
    }

    /// The dialect's name.
    pub fn name(&self) -> &str {
        &self.0.def.name
    }

    /// The spec of field `n`, if the dialect defines it.
    #[inline]
    pub fn field(&self, n: u8) -> Option<&FieldSpec> {
        self.0.fields.get(n as usize).and_then(Option::as_ref)
    }

    /// The decoder's compact entry for field `n` (index 0..=192).
    #[inline(always)]
    pub(crate) fn hot(&self, n: u8) -> &Hot {
        &self.0.hot[n as usize]
    }

    /// How [`crate::Message::set`] writes field `n` from text.
    #[inline(always)]
    pub(crate) fn plan(&self, n: u8) -> &SetPlan {
        &self.0.plans[n as usize]
    }

    /// The decoder's compact table, indexed by field number.
    #[inline(always)]
    pub(crate) fn hot_table(&self) -> &[Hot; 256] {
        &self.0.hot
    }

    /// The compiled composite of field `n`, if it is composite.
    #[inline]
    pub(crate) fn node(&self, n: u8) -> Option<&Node> {
        self.0.nodes.get(n as usize).and_then(|x| x.as_deref())
    }

    /// The fields that are composite.
    #[inline]
    pub fn composite_fields(&self) -> Bitmap {
        self.0.composite_bits
    }

    /// Whether the dialect allows `mti` (its version digit; see
    /// [`DialectDef::mti_versions`]).
    #[inline]
    pub fn allows_mti(&self, mti: crate::mti::Mti) -> bool {
        // The version is a digit (`Mti` holds four ASCII digits).
        self.0.mti_mask & (1u16 << (mti.version() & 15)) != 0
    }

    /// [`ErrorKind::MtiNotAllowed`] at `offset` unless [`Dialect::allows_mti`]: the
    /// decoder and the JSON builder refuse the same MTIs.
    #[inline]
    pub(crate) fn check_mti(&self, mti: crate::mti::Mti, offset: usize) -> Result<()> {
        if self.allows_mti(mti) {
            return Ok(());
        }
        self.mti_not_allowed(mti, offset)
    }

    #[cold]
    #[inline(never)]
    fn mti_not_allowed(&self, mti: crate::mti::Mti, offset: usize) -> Result<()> {
        Err(CodecError::new(
            Location::Mti,
            offset,
            ErrorKind::MtiNotAllowed {
                mti: mti.as_str().to_string(),
                dialect: self.name().to_string(),
                allowed: self
                    .0
                    .def
                    .mti_versions
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            },
        ))
    }

    /// The spec of the field or subfield at `path` (`48.42.1`), if the dialect defines it.
    pub fn spec_at(&self, path: &str) -> Option<&FieldSpec> {
        let mut segs = crate::composite::segments(path);
        let n: u8 = std::str::from_utf8(segs.next()?).ok()?.parse().ok()?;
        let mut spec = self.field(n)?;
        let mut node = self.node(n);
        for seg in segs {
            let nd = node?;
            let c = nd.child(nd.style().parse(seg)?)?;
            spec = &c.spec;
            node = c.node.as_deref();
        }
        Some(spec)
    }

    /// MTI encoding.
    #[inline]
    pub fn mti_encoding(&self) -> MtiEncoding {
        self.0.def.mti
    }

    /// Bitmap encoding.
    #[inline]
    pub fn bitmap_encoding(&self) -> BitmapEncoding {
        self.0.def.bitmap
    }

    /// Whether fields 65–128 (secondary bitmap) are allowed.
    #[inline]
    pub fn has_secondary(&self) -> bool {
        self.0.def.secondary_bitmap
    }

    /// Whether bit 65 announces a tertiary bitmap.
    #[inline]
    pub fn has_tertiary(&self) -> bool {
        self.0.def.tertiary_bitmap
    }

    /// Fields a response copies from its request.
    pub fn echo_fields(&self) -> &[u8] {
        &self.0.def.echo_fields
    }

    /// Where the MAC goes.
    pub fn mac_layout(&self) -> MacLayout {
        self.0.def.mac
    }

    /// A field number is a bitmap in this dialect (1 always, 65 with a tertiary bitmap).
    #[inline]
    pub fn is_bitmap_field(&self, n: u8) -> bool {
        n == 1 || (n == 65 && self.has_tertiary())
    }

    /// The built-in dialect called `name`, if there is one (see [`Dialect::builtin_names`]).
    pub fn builtin(name: &str) -> Option<Dialect> {
        crate::dialects::builtin(name)
    }

    /// Names of the built-in dialects.
    pub fn builtin_names() -> &'static [&'static str] {
        crate::dialects::NAMES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, Mti};

    #[test]
    fn a_dialect_made_static_is_the_same_dialect_and_builtins_are_static() {
        let built = Dialect::from_json(
            &serde_json::to_string(Dialect::builtin("iso87-ascii").expect("builtin").def())
                .expect("json"),
        )
        .expect("dialect");
        assert!(matches!(built.0, Tables::Counted(_)));
        let kept = built.clone().into_static();
        assert!(matches!(kept.0, Tables::Static(_)));
        assert!(matches!(kept.clone().into_static().0, Tables::Static(_)));
        assert_eq!(kept, built);
        let a = Dialect::builtin("cup-pos").expect("builtin");
        let b = Dialect::builtin("cup-pos").expect("builtin");
        assert!(matches!(a.0, Tables::Static(_)));
        assert!(
            std::ptr::eq::<DialectInner>(&*a.0, &*b.0),
            "one table per builtin"
        );
        // The same messages either way.
        let mut m = Message::new(&built, Mti::new(*b"0800").expect("mti"));
        m.set(11, "000123")
            .expect("set")
            .set(70, "001")
            .expect("set");
        let wire = m.to_bytes().expect("encode");
        let back = Message::decode(&kept, wire.clone()).expect("decode");
        assert_eq!(back.to_bytes().expect("encode"), wire);
        assert_eq!(back.dialect(), &built);
    }
}
