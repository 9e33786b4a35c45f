//! [`FieldMap`]: field mapping between two dialects, as data.
//!
//! A switch receives a message in its terminals' dialect and sends another in its host's;
//! the answer travels back the same way. A map is a list of [`Rule`]s, one per target
//! field, each saying where the value comes from ([`Source`]): the same field of the
//! source message, another field, a constant, or a named function of the source message
//! and the [`MapContext`] (the switch's own STAN, RRN, transmission time, acquirer ID).
//! Functions are looked up by name in a [`Functions`] table when the map is built, so a
//! map read from a configuration file that names an unknown function is refused at start,
//! not at the first transaction.
//!
//! One map defines the request sent upstream; the original handed to the reversal engine
//! is that very message (the engine journals what it sends), so the two cannot disagree.
//! A second map defines the response sent back to the terminal.
//!
//! Values are copied in their text form, so a field may change its encoding between
//! dialects (BCD in `cup-pos`, ASCII in `iso87-ascii`); binary fields (class `b`) are
//! copied as bytes.
//!
//! ```
//! use isoswitch_codec::{Dialect, Message};
//! use isoswitch_switch::field_map::{FieldMap, Functions, MapContext, Rule, Source};
//! let cup = Dialect::builtin("cup-pos").unwrap();
//! let iso = Dialect::builtin("iso87-binary").unwrap();
//! let map = FieldMap::new(
//!     "to-host",
//!     &iso,
//!     vec![
//!         Rule::copy(2),
//!         Rule::copy(4),
//!         Rule::computed(11, "stan"),
//!         Rule::constant(32, "12345678"),
//!     ],
//!     &Functions::builtin(),
//! )
//! .unwrap();
//! let mut sale = Message::new(&cup, "0200".parse().unwrap());
//! sale.set(2, "6222021234567890").unwrap().set(4, "000000001000").unwrap();
//! let ctx = MapContext { stan: Some("000042"), ..MapContext::default() };
//! let up = map.apply(&sale, &ctx).unwrap();
//! assert_eq!(up.mti().as_str(), "0200");
//! assert_eq!(up.get(11).as_deref(), Some("000042"));
//! assert_eq!(up.get(32).as_deref(), Some("12345678"));
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDateTime;
use isoswitch_codec::{ContentClass, Dialect, Message, Mti};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SwitchError};

/// Where a target field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The field of the same number in the source message.
    Copy,
    /// Another field of the source message.
    From(u8),
    /// A constant text value.
    Const(String),
    /// A named function (see [`Functions`]).
    Computed(String),
}

/// One target field and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The target field.
    pub field: u8,
    /// Where the value comes from.
    pub source: Source,
    /// A missing value is an error ([`SwitchError::MissingField`]) instead of an absent
    /// target field.
    #[serde(default)]
    pub required: bool,
}

impl Rule {
    /// Copy field `n` as it is (absent stays absent).
    pub fn copy(n: u8) -> Rule {
        Rule {
            field: n,
            source: Source::Copy,
            required: false,
        }
    }

    /// Copy source field `from` into target field `to`.
    pub fn copy_to(from: u8, to: u8) -> Rule {
        Rule {
            field: to,
            source: Source::From(from),
            required: false,
        }
    }

    /// A constant.
    pub fn constant(n: u8, value: &str) -> Rule {
        Rule {
            field: n,
            source: Source::Const(value.to_string()),
            required: true,
        }
    }

    /// A named function.
    pub fn computed(n: u8, function: &str) -> Rule {
        Rule {
            field: n,
            source: Source::Computed(function.to_string()),
            required: false,
        }
    }

    /// The same rule, failing when its value is missing.
    pub fn required(mut self) -> Rule {
        self.required = true;
        self
    }
}

/// What a computed rule may use besides the source message.
#[derive(Debug, Clone, Copy, Default)]
pub struct MapContext<'a> {
    /// The switch's STAN for the upstream message (DE 11).
    pub stan: Option<&'a str>,
    /// The switch's retrieval reference number (DE 37).
    pub rrn: Option<&'a str>,
    /// Transmission date and time (DE 7, UTC).
    pub transmission: Option<NaiveDateTime>,
    /// Local date and time (DE 12/13).
    pub local: Option<NaiveDateTime>,
    /// The acquirer institution ID (DE 32).
    pub acquirer: Option<&'a str>,
    /// The message the target answers, when mapping a response: the request the switch
    /// received (e.g. a terminal's 0200 when mapping the host's 0210 back).
    pub request: Option<&'a Message>,
}

/// A computed value: `Ok(None)` leaves the target field absent.
pub type MapFn = fn(&Message, &MapContext<'_>) -> Result<Option<String>>;

/// Named functions for [`Source::Computed`].
#[derive(Clone)]
pub struct Functions {
    table: HashMap<String, MapFn>,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.table.keys().collect();
        names.sort();
        f.debug_struct("Functions").field("names", &names).finish()
    }
}

fn fmt_opt(t: Option<NaiveDateTime>, f: &str) -> Option<String> {
    t.map(|t| t.format(f).to_string())
}

impl Functions {
    /// No functions.
    pub fn empty() -> Functions {
        Functions {
            table: HashMap::new(),
        }
    }

    /// The built-in functions:
    ///
    /// | name | value |
    /// |---|---|
    /// | `stan` | [`MapContext::stan`] |
    /// | `rrn` | [`MapContext::rrn`] |
    /// | `transmission_datetime` | [`MapContext::transmission`] as `MMDDhhmmss` |
    /// | `local_time` / `local_date` | [`MapContext::local`] as `hhmmss` / `MMDD` |
    /// | `acquirer_id` | [`MapContext::acquirer`] |
    /// | `cup_processing_code` | DE 3 from `cup-pos` 60.1 (`22` sale `000000`, `23` void `020000`, `25` refund `200000`) |
    /// | `request_field_11` / `request_field_41` / `request_field_42` / `request_field_60` | that field of [`MapContext::request`] |
    pub fn builtin() -> Functions {
        let mut f = Functions::empty();
        f.insert("stan", |_, c| Ok(c.stan.map(str::to_string)));
        f.insert("rrn", |_, c| Ok(c.rrn.map(str::to_string)));
        f.insert("transmission_datetime", |_, c| {
            Ok(fmt_opt(c.transmission, "%m%d%H%M%S"))
        });
        f.insert("local_time", |_, c| Ok(fmt_opt(c.local, "%H%M%S")));
        f.insert("local_date", |_, c| Ok(fmt_opt(c.local, "%m%d")));
        f.insert("acquirer_id", |_, c| Ok(c.acquirer.map(str::to_string)));
        f.insert("cup_processing_code", |m, _| {
            Ok(m.field(60)
                .and_then(|f| f.subfield(0))
                .and_then(|t| cup_processing_code(&t))
                .map(str::to_string))
        });
        f.insert("request_field_11", |_, c| {
            Ok(c.request.and_then(|r| r.get(11)))
        });
        f.insert("request_field_41", |_, c| {
            Ok(c.request.and_then(|r| r.get(41)))
        });
        f.insert("request_field_42", |_, c| {
            Ok(c.request.and_then(|r| r.get(42)))
        });
        f.insert("request_field_60", |_, c| {
            Ok(c.request.and_then(|r| r.get(60)))
        });
        f
    }

    /// Adds (or replaces) a function.
    pub fn insert(&mut self, name: &str, f: MapFn) -> &mut Self {
        self.table.insert(name.to_string(), f);
        self
    }

    /// The function of that name.
    pub fn get(&self, name: &str) -> Option<MapFn> {
        self.table.get(name).copied()
    }
}

/// DE 3 for a `cup-pos` transaction type (60.1).
pub fn cup_processing_code(cup_type: &str) -> Option<&'static str> {
    match cup_type {
        "22" => Some("000000"),
        "23" => Some("020000"),
        "25" => Some("200000"),
        _ => None,
    }
}

#[derive(Clone)]
enum Resolved {
    Copy(u8),
    Const(String),
    Computed(MapFn),
}

#[derive(Clone)]
struct Step {
    field: u8,
    binary_target: bool,
    source: Resolved,
    required: bool,
}

/// A field map into one target dialect; see the module docs.
#[derive(Clone)]
pub struct FieldMap {
    name: String,
    target: Dialect,
    rules: Arc<Vec<Rule>>,
    steps: Arc<Vec<Step>>,
}

impl std::fmt::Debug for FieldMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldMap")
            .field("name", &self.name)
            .field("target", &self.target.name())
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl FieldMap {
    /// Builds a map; every target field must exist in `target` and every function in
    /// `functions`.
    ///
    /// # Errors
    /// [`SwitchError::FieldMap`] naming the rule.
    pub fn new(
        name: &str,
        target: &Dialect,
        rules: Vec<Rule>,
        functions: &Functions,
    ) -> Result<FieldMap> {
        let bad = |what: String| SwitchError::FieldMap {
            map: name.to_string(),
            what,
        };
        let mut steps = Vec::with_capacity(rules.len());
        let mut seen = [false; 256];
        for r in &rules {
            if r.field < 2 {
                return Err(bad(format!("field {} is the bitmap", r.field)));
            }
            let Some(spec) = target.field(r.field) else {
                return Err(bad(format!(
                    "field {} is not defined in dialect {}",
                    r.field,
                    target.name()
                )));
            };
            if std::mem::replace(&mut seen[r.field as usize], true) {
                return Err(bad(format!("field {} has two rules", r.field)));
            }
            let source = match &r.source {
                Source::Copy => Resolved::Copy(r.field),
                Source::From(n) => Resolved::Copy(*n),
                Source::Const(v) => Resolved::Const(v.clone()),
                Source::Computed(f) => {
                    Resolved::Computed(functions.get(f).ok_or_else(|| {
                        bad(format!("field {}: no function named {f:?}", r.field))
                    })?)
                }
            };
            steps.push(Step {
                field: r.field,
                binary_target: spec.class == ContentClass::B,
                source,
                required: r.required,
            });
        }
        Ok(FieldMap {
            name: name.to_string(),
            target: target.clone(),
            rules: Arc::new(rules),
            steps: Arc::new(steps),
        })
    }

    /// The map's name (used in errors).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The target dialect.
    pub fn target(&self) -> &Dialect {
        &self.target
    }

    /// The rules, as given.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Maps `source` into a new message of the target dialect with the source's MTI.
    ///
    /// # Errors
    /// [`SwitchError::MissingField`] for a required value that is absent; codec errors
    /// for a value the target field does not accept.
    pub fn apply(&self, source: &Message, ctx: &MapContext<'_>) -> Result<Message> {
        self.apply_as(source, source.mti(), ctx)
    }

    /// As [`FieldMap::apply`], with the target MTI given.
    ///
    /// # Errors
    /// As [`FieldMap::apply`].
    pub fn apply_as(&self, source: &Message, mti: Mti, ctx: &MapContext<'_>) -> Result<Message> {
        let mut out = Message::new(&self.target, mti);
        for step in self.steps.iter() {
            let present = match &step.source {
                Resolved::Copy(n) => match source.field(*n) {
                    None => false,
                    Some(f) => {
                        let binary_source = f.spec().class == ContentClass::B;
                        if step.binary_target || binary_source {
                            out.set_bytes(step.field, &f.bytes())?;
                        } else {
                            out.set(step.field, f.text().as_bytes())?;
                        }
                        true
                    }
                },
                Resolved::Const(v) => {
                    out.set(step.field, v.as_bytes())?;
                    true
                }
                Resolved::Computed(f) => match f(source, ctx)? {
                    Some(v) => {
                        out.set(step.field, v.as_bytes())?;
                        true
                    }
                    None => false,
                },
            };
            if !present && step.required {
                let field = match &step.source {
                    Resolved::Copy(n) => *n,
                    _ => step.field,
                };
                return Err(SwitchError::MissingField {
                    map: self.name.clone(),
                    field,
                });
            }
        }
        Ok(out)
    }
}

/// The rules as a TOML/JSON-friendly document: `{ "rule": [ {field, source, required} ] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMapDef {
    /// The rules.
    pub rule: Vec<Rule>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialects() -> (Dialect, Dialect) {
        (
            Dialect::builtin("cup-pos").unwrap(),
            Dialect::builtin("iso87-binary").unwrap(),
        )
    }

    fn sale(cup: &Dialect) -> Message {
        let mut m = Message::new(cup, "0200".parse().unwrap());
        m.set(2, "6222021234567890")
            .unwrap()
            .set(3, "000000")
            .unwrap()
            .set(4, "000000001234")
            .unwrap()
            .set(11, "000123")
            .unwrap()
            .set(41, "TERM0001")
            .unwrap()
            .set(42, "MERCHANT0000001")
            .unwrap()
            .set(49, "156")
            .unwrap()
            .set_bytes(52, &[0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0])
            .unwrap()
            .set(60, "22000001")
            .unwrap();
        m
    }

    #[test]
    fn maps_both_ways_between_dialects() {
        let (cup, iso) = dialects();
        let f = Functions::builtin();
        let up = FieldMap::new(
            "up",
            &iso,
            vec![
                Rule::copy(2).required(),
                Rule::computed(3, "cup_processing_code").required(),
                Rule::copy(4).required(),
                Rule::computed(7, "transmission_datetime"),
                Rule::computed(11, "stan").required(),
                Rule::computed(37, "rrn"),
                Rule::copy(41),
                Rule::constant(42, "SWITCH000000001"),
                Rule::copy(49),
                Rule::copy(52),
            ],
            &f,
        )
        .unwrap();
        let t = chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
            .unwrap()
            .and_hms_opt(21, 30, 5)
            .unwrap();
        let ctx = MapContext {
            stan: Some("000777"),
            rrn: Some("000000000777"),
            transmission: Some(t),
            ..MapContext::default()
        };
        let req = sale(&cup);
        let m = up.apply(&req, &ctx).unwrap();
        assert_eq!(m.dialect().name(), "iso87-binary");
        assert_eq!(m.get(3).as_deref(), Some("000000"));
        assert_eq!(m.get(7).as_deref(), Some("1201213005"));
        assert_eq!(m.get(11).as_deref(), Some("000777"));
        assert_eq!(m.get(42).as_deref(), Some("SWITCH000000001"));
        assert_eq!(
            m.field(52).unwrap().bytes().as_ref(),
            &[0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0]
        );
        // Encodes in the target dialect and decodes back to the same values.
        let bytes = m.to_bytes().unwrap();
        let back = Message::decode(&iso, bytes).unwrap();
        assert_eq!(back.get(2).as_deref(), Some("6222021234567890"));

        // The answer back: DE 38/39 from the host, the rest from the terminal's request.
        let down = FieldMap::new(
            "down",
            &cup,
            vec![
                Rule::copy(37),
                Rule::copy(38),
                Rule::copy(39).required(),
                Rule::computed(11, "request_field_11").required(),
                Rule::computed(41, "request_field_41").required(),
                Rule::computed(42, "request_field_42").required(),
                Rule::computed(60, "request_field_60"),
            ],
            &f,
        )
        .unwrap();
        let mut host_answer = Message::response_to(&back).unwrap();
        host_answer
            .set(39, "00")
            .unwrap()
            .set(38, "AB1234")
            .unwrap();
        let ctx = MapContext {
            request: Some(&req),
            ..MapContext::default()
        };
        let reply = down
            .apply_as(&host_answer, "0210".parse().unwrap(), &ctx)
            .unwrap();
        assert_eq!(reply.dialect().name(), "cup-pos");
        assert_eq!(reply.get(11).as_deref(), Some("000123"));
        assert_eq!(reply.get(42).as_deref(), Some("MERCHANT0000001"));
        assert_eq!(reply.get(38).as_deref(), Some("AB1234"));
        assert_eq!(reply.get(37).as_deref(), Some("000000000777"));
    }

    #[test]
    fn missing_required_field_is_an_error_naming_it() {
        let (cup, iso) = dialects();
        let map = FieldMap::new(
            "up",
            &iso,
            vec![Rule::copy(35).required()],
            &Functions::builtin(),
        )
        .unwrap();
        let err = map.apply(&sale(&cup), &MapContext::default()).unwrap_err();
        assert!(
            matches!(err, SwitchError::MissingField { field: 35, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("field 35"));
    }

    #[test]
    fn unknown_function_or_field_is_refused_when_built() {
        let (_, iso) = dialects();
        let f = Functions::builtin();
        let e = FieldMap::new("m", &iso, vec![Rule::computed(11, "nope")], &f).unwrap_err();
        assert!(e.to_string().contains("no function named \"nope\""), "{e}");
        let e = FieldMap::new("m", &iso, vec![Rule::copy(2), Rule::copy(2)], &f).unwrap_err();
        assert!(e.to_string().contains("two rules"), "{e}");
        let e = FieldMap::new("m", &iso, vec![Rule::copy(1)], &f).unwrap_err();
        assert!(e.to_string().contains("bitmap"), "{e}");
    }

    #[test]
    fn rules_read_from_toml() {
        let (_, iso) = dialects();
        let def: FieldMapDef = toml::from_str(
            r#"
            [[rule]]
            field = 2
            source = "copy"
            required = true
            [[rule]]
            field = 32
            source = { const = "12345678" }
            [[rule]]
            field = 11
            source = { computed = "stan" }
            [[rule]]
            field = 102
            source = { from = 2 }
            "#,
        )
        .unwrap();
        let map = FieldMap::new("toml", &iso, def.rule, &Functions::builtin()).unwrap();
        assert_eq!(map.rules().len(), 4);
        let (cup, _) = dialects();
        let m = map
            .apply(
                &sale(&cup),
                &MapContext {
                    stan: Some("000001"),
                    ..MapContext::default()
                },
            )
            .unwrap();
        assert_eq!(m.get(102).as_deref(), Some("6222021234567890"));
        assert_eq!(m.get(32).as_deref(), Some("12345678"));
    }
}
