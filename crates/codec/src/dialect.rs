//! Dialects: a table of field specs plus the MTI and bitmap encodings, as data.
//!
//! A [`Dialect`] is a cheap-to-clone handle (an `Arc`). Built-in dialects are created once;
//! users describe their own host's dialect in JSON or TOML ([`DialectDef`]) without writing
//! Rust, or build one in code.

use crate::bitmap::BitmapEncoding;
use crate::error::{CodecError, ErrorKind, Location, Result};
use crate::hot::Hot;
use crate::mti::MtiEncoding;
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
}

/// An ISO 8583 dialect: field specs, MTI and bitmap encodings, echo fields and MAC layout.
///
/// Cloning is cheap (reference counted).
#[derive(Clone)]
pub struct Dialect(pub(crate) Arc<DialectInner>);

impl fmt::Debug for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dialect({})", self.name())
    }
}

impl PartialEq for Dialect {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.def == other.0.def
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
        Ok(Dialect(Arc::new(DialectInner { def, fields, hot })))
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

    /// The decoder's compact table, indexed by field number.
    #[inline(always)]
    pub(crate) fn hot_table(&self) -> &[Hot; 256] {
        &self.0.hot
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
