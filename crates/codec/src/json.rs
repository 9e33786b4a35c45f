//! The JSON form of a message: `{"mti":"0200","fields":{"2":"...","3":"..."}}`.
//!
//! Keys are field numbers as decimal strings, in ascending order; a text field's value is
//! exactly its characters, a BCD field's its digits, a binary field's uppercase hex.
//! Sensitive fields are masked unless `reveal` is set. Bitmaps are never written: they are
//! computed when encoding.

use crate::dialect::Dialect;
use crate::error::{CodecError, ErrorKind, Location, Result};
use crate::field::FieldRef;
use crate::message::Message;
use crate::mti::Mti;

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
        let text = if reveal { f.text() } else { f.masked() };
        // serde_json escapes control characters and quotes exactly.
        s.push_str(&serde_json::to_string(text.as_ref()).unwrap_or_else(|_| "\"\"".into()));
    }
    s.push_str("}}");
    s
}

/// Builds a message from its JSON form; keys `"1"` (and `"65"` where it is the tertiary
/// bitmap) are ignored, since bitmaps are computed.
pub fn from_json(dialect: &Dialect, text: &str) -> Result<Message> {
    let bad = |what: String| CodecError::new(Location::Message, 0, ErrorKind::BadDialect { what });
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("expected a JSON object".into()))?;
    let mti: Mti = obj
        .get("mti")
        .and_then(|m| m.as_str())
        .ok_or_else(|| CodecError::new(Location::Mti, 0, ErrorKind::BadMti))?
        .parse()?;
    let mut msg = Message::new(dialect, mti);
    if let Some(fields) = obj.get("fields") {
        let fields = fields
            .as_object()
            .ok_or_else(|| bad("\"fields\" must be an object".into()))?;
        for (k, val) in fields {
            let n: u8 = k
                .parse()
                .map_err(|_| bad(format!("field key {k:?} is not a field number")))?;
            if dialect.is_bitmap_field(n) {
                continue;
            }
            let value = val
                .as_str()
                .ok_or_else(|| bad(format!("field {n}: value must be a string")))?;
            msg.set(n, value)?;
        }
    }
    Ok(msg)
}
