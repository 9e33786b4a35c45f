//! The JSON form of a message: `{"mti":"0200","fields":{"2":"...","3":"..."}}`.
//!
//! Keys are field numbers as decimal strings, in ascending order; a text field's value is
//! exactly its characters, a BCD field's its digits, a binary field's uppercase hex.
//! A composite field (see [`crate::spec::Composite`]) is a nested object keyed by
//! subfield number or tag as text (`{"48":{"10":"K001","42":{"1":"1"}}}`; BER-TLV tags in
//! hex); a composite present with no subfields is `{}`. Sensitive fields and subfields
//! are masked unless `reveal` is set. Bitmaps are never written: they are computed when
//! encoding.

use crate::composite::masked_text;
use crate::dialect::Dialect;
use crate::error::{CodecError, ErrorKind, FieldPath, Location, Result};
use crate::field::FieldRef;
use crate::message::Message;
use crate::mti::Mti;
use crate::spec::Sensitivity;

fn push_str(s: &mut String, text: &str) {
    // serde_json escapes control characters and quotes exactly.
    s.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into()));
}

fn push_value(s: &mut String, f: &FieldRef<'_>, reveal: bool, inherited: Sensitivity) {
    let sens = if f.spec().sensitive == Sensitivity::None {
        inherited
    } else {
        f.spec().sensitive
    };
    if f.is_composite() {
        s.push('{');
        for (i, sub) in f.subfields().enumerate() {
            if i > 0 {
                s.push(',');
            }
            push_str(s, &sub.key_text());
            s.push(':');
            push_value(s, &sub, reveal, sens);
        }
        s.push('}');
    } else if reveal {
        push_str(s, &f.text());
    } else {
        push_str(s, &masked_text(f, inherited));
    }
}

/// Writes the JSON form of a message given its MTI and fields.
pub fn to_json<'a>(mti: Mti, fields: impl Iterator<Item = FieldRef<'a>>, reveal: bool) -> String {
    let mut s = String::with_capacity(256);
    s.push_str("{\"mti\":\"");
    s.push_str(mti.as_str());
    s.push_str("\",\"fields\":{");
    let mut first = true;
    for f in fields {
        if !first {
            s.push(',');
        }
        first = false;
        s.push('"');
        s.push_str(&f.number().to_string());
        s.push_str("\":");
        push_value(&mut s, &f, reveal, Sensitivity::None);
    }
    s.push_str("}}");
    s
}

/// Builds a message from its JSON form.
///
/// Errors say what is wrong: JSON that does not parse (with its line and column), a
/// missing or malformed `"mti"`, an MTI the dialect does not allow
/// ([`Dialect::allows_mti`]), a key that is not a data field of the dialect (`"1"`, the
/// bitmap, included), a value that does not fit its field or subfield (named by path), a
/// composite given as a string or a plain field given as an object, and the masked value
/// of a sensitive field ([`ErrorKind::Masked`]: decode with `reveal` to get the real one).
pub fn from_json(dialect: &Dialect, text: &str) -> Result<Message> {
    let bad = |loc: Location, what: String| CodecError::new(loc, 0, ErrorKind::BadJson { what });
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad(Location::Message, format!("invalid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| {
        bad(
            Location::Message,
            "expected a JSON object {\"mti\": ..., \"fields\": {...}}".into(),
        )
    })?;
    let mti: Mti = match obj.get("mti") {
        None => {
            return Err(bad(
                Location::Mti,
                "missing \"mti\" (e.g. \"mti\": \"0200\")".into(),
            ))
        }
        Some(serde_json::Value::String(m)) => m.parse()?,
        Some(_) => return Err(bad(Location::Mti, "\"mti\" must be a string".into())),
    };
    dialect.check_mti(mti, 0)?;
    let mut msg = Message::new(dialect, mti);
    if let Some(fields) = obj.get("fields") {
        let fields = fields
            .as_object()
            .ok_or_else(|| bad(Location::Message, "\"fields\" must be an object".into()))?;
        for (k, val) in fields {
            let n: u8 = k.parse().map_err(|_| {
                bad(
                    Location::Message,
                    format!("field key {k:?} is not a field number"),
                )
            })?;
            if dialect.is_bitmap_field(n) {
                return Err(bad(
                    Location::Field(n),
                    format!(
                        "field {n} is a bitmap, not a data field: bitmaps are computed when \
                         encoding, remove it"
                    ),
                ));
            }
            let Some(spec) = dialect.field(n) else {
                return Err(bad(
                    Location::Field(n),
                    format!("field {n} is not defined by dialect {}", dialect.name()),
                ));
            };
            match (val, dialect.node(n)) {
                (serde_json::Value::String(value), None) => {
                    msg.set(n, value)
                        .map_err(|e| crate::mask::masked_error(spec.sensitive, value, e))?;
                }
                (serde_json::Value::Object(o), Some(node)) => {
                    let content = node.content_from_json(
                        o,
                        FieldPath::top(n),
                        spec.sensitive,
                        dialect.name(),
                    )?;
                    msg.set_content(n, &content)?;
                }
                (serde_json::Value::String(_), Some(_)) => {
                    return Err(CodecError::field(
                        n,
                        0,
                        ErrorKind::WrongShape {
                            what: "a composite needs an object of subfields, not a string",
                        },
                    ))
                }
                _ => {
                    return Err(CodecError::field(
                        n,
                        0,
                        ErrorKind::WrongShape {
                            what: "the value must be a string",
                        },
                    ))
                }
            }
        }
    }
    Ok(msg)
}
