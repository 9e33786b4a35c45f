//! A decoded message as a table for people (the `isoswitch decode` output): the MTI and
//! what it means, the bitmaps, every field with its name, DE 4-6 as amounts in the
//! currency of DE 49-51, BER-TLV data one tag per row, composite subfields indented with
//! their names. Sensitive values are masked unless `reveal` is set.

use crate::composite::masked_text;
use crate::field::FieldRef;
use crate::mask::emv_tag_sensitivity;
use crate::mti::{MessageClass, MessageFunction, Mti};
use crate::spec::{Sensitivity, Subfields};
use crate::view::MessageView;
use std::borrow::Cow;
use std::fmt::Write;

/// What an MTI means, e.g. `financial request from the acquirer (ISO 8583:1987)`.
pub fn mti_meaning(mti: Mti) -> String {
    let class = match mti.class() {
        MessageClass::Authorization => "authorization",
        MessageClass::Financial => "financial",
        MessageClass::FileAction => "file action",
        MessageClass::Reversal => "reversal / chargeback",
        MessageClass::Reconciliation => "reconciliation",
        MessageClass::Administrative => "administrative",
        MessageClass::FeeCollection => "fee collection",
        MessageClass::NetworkManagement => "network management",
        MessageClass::Reserved(_) => "reserved class",
    };
    let function = match mti.function() {
        MessageFunction::Request => "request",
        MessageFunction::RequestResponse => "request response",
        MessageFunction::Advice => "advice",
        MessageFunction::AdviceResponse => "advice response",
        MessageFunction::Notification => "notification",
        MessageFunction::NotificationAck => "notification acknowledgement",
        MessageFunction::Instruction => "instruction",
        MessageFunction::InstructionAck => "instruction acknowledgement",
        MessageFunction::Reserved(_) => "reserved function",
    };
    let origin = match mti.origin() {
        0 => "from the acquirer",
        1 => "from the acquirer, repeat",
        2 => "from the issuer",
        3 => "from the issuer, repeat",
        4 => "from another party",
        5 => "from another party, repeat",
        _ => "reserved origin",
    };
    let version = match mti.version() {
        0 => "ISO 8583:1987",
        1 => "ISO 8583:1993",
        2 => "ISO 8583:2003",
        8 => "national use",
        9 => "private use",
        _ => "reserved version",
    };
    format!("{class} {function} {origin} ({version})")
}

fn row(out: &mut String, depth: usize, key: &str, name: &str, value: &str) {
    let label = if depth == 0 {
        format!("{key:>4}")
    } else {
        format!("{}{key}", "  ".repeat(depth + 2))
    };
    let line = format!("{label:<16} {name:<45} {value}");
    out.push_str(line.trim_end());
    out.push('\n');
}

fn value<'a>(f: &FieldRef<'a>, reveal: bool, inherited: Sensitivity) -> Cow<'a, str> {
    if reveal {
        f.text()
    } else {
        masked_text(f, inherited)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// BER-TLV objects one per row (constructed ones with their children indented).
fn tlv_rows(out: &mut String, data: &[u8], depth: usize, reveal: bool, sens: Sensitivity) {
    for t in crate::tlv::parse(data) {
        let Ok(t) = t else {
            row(out, depth, "", "(not BER-TLV from here on)", "");
            return;
        };
        let tag = t.tag.to_string();
        if t.tag.is_constructed() && depth < 8 {
            row(
                out,
                depth,
                &tag,
                &format!("({} bytes, constructed)", t.value.len()),
                "",
            );
            tlv_rows(out, t.value, depth + 1, reveal, sens);
            continue;
        }
        let v = hex(t.value);
        let shown = if reveal {
            v
        } else {
            let s = match (sens, emv_tag_sensitivity(t.tag.0)) {
                (Sensitivity::Emv, s) => s,
                (s, _) => s,
            };
            crate::mask::mask(s, Cow::Owned(v)).into_owned()
        };
        row(
            out,
            depth,
            &tag,
            &format!("({} bytes)", t.value.len()),
            &shown,
        );
    }
}

fn field_rows(
    out: &mut String,
    f: &FieldRef<'_>,
    depth: usize,
    reveal: bool,
    inherited: Sensitivity,
    view: &MessageView<'_>,
) {
    let key = if depth == 0 {
        f.number().to_string()
    } else {
        f.path().to_string()
    };
    let sens = if f.spec().sensitive == Sensitivity::None {
        inherited
    } else {
        f.spec().sensitive
    };
    if f.is_composite() {
        let what = format!("{} ({} bytes)", f.spec().name, f.raw().len());
        row(out, depth, &key, &what, "");
        for s in f.subfields() {
            field_rows(out, &s, depth + 1, reveal, sens, view);
        }
        return;
    }
    let mut text = value(f, reveal, inherited).into_owned();
    if depth == 0 && (4..=6).contains(&f.number()) {
        // Amounts in the currency of DE 49, 50, 51.
        let cur = view.field(f.number() + 45);
        let code = cur.as_ref().map(|c| c.text().into_owned());
        let exp = code
            .as_deref()
            .and_then(|c| crate::currency::minor_units_of(c.as_bytes()))
            .unwrap_or(2);
        if let Ok(a) = f.amount(exp) {
            let cur = match code {
                Some(c) => match crate::currency::alpha(&c) {
                    Some(a) => format!(" {a} ({c})"),
                    None => format!(" (currency {c})"),
                },
                None => " (no currency field)".to_string(),
            };
            let _ = write!(text, "  = {a}{cur}");
        }
    }
    row(out, depth, &key, &f.spec().name, &text);
    if matches!(f.spec().subfields, Some(Subfields::Tlv)) {
        tlv_rows(out, &f.bytes(), depth + 1, reveal, sens);
    }
}

/// The table of a decoded message (see the module documentation).
pub fn describe(view: &MessageView<'_>, reveal: bool) -> String {
    let mut out = String::new();
    let mti = view.mti();
    let _ = writeln!(out, "MTI   {mti}  {}", mti_meaning(mti));
    let b = view.bitmap();
    let mut bits = format!("{:016X}", b.0[0]);
    let mut label = "primary".to_string();
    if b.get(1) {
        let _ = write!(bits, " {:016X}", b.0[1]);
        label.push_str(" + secondary");
    }
    if b.0[2] != 0 {
        let _ = write!(bits, " {:016X}", b.0[2]);
        label.push_str(" + tertiary");
    }
    let present: Vec<String> = view.fields().map(|f| f.number().to_string()).collect();
    let _ = writeln!(
        out,
        "Bitmap {bits} ({label}): fields {}",
        present.join(", ")
    );
    for f in view.fields() {
        field_rows(&mut out, &f, 0, reveal, Sensitivity::None, view);
    }
    out
}
