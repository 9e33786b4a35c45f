//! The field-by-field documentation of the built-in dialects (`crates/codec/docs/*.md`,
//! included in rustdoc by `isoswitch_codec::dialects`) is generated from the tables
//! themselves; this test fails when a table changes and the docs were not regenerated.
//! Regenerate with `UPDATE_DIALECT_DOCS=1 cargo test -p isoswitch-codec --test dialect_docs`.

use isoswitch_codec::{
    ContentEncoding, Dialect, FieldSpec, Justify, LengthEncoding, LengthKind, LengthUnit,
};
use std::path::PathBuf;

fn length(spec: &FieldSpec) -> String {
    match spec.length {
        LengthKind::Fixed => format!("{}", spec.max),
        k => format!("..{} {:?}", spec.max, k),
    }
}

fn prefix(spec: &FieldSpec) -> String {
    if spec.is_fixed() {
        return "—".into();
    }
    let enc = match spec.length_encoding {
        LengthEncoding::Ascii => "ASCII",
        LengthEncoding::Ebcdic => "EBCDIC",
        LengthEncoding::Bcd => "BCD",
        LengthEncoding::Binary => "binary",
    };
    format!("{enc}, {} byte(s)", spec.prefix_len())
}

fn content(spec: &FieldSpec) -> String {
    match spec.encoding {
        ContentEncoding::Ascii => "ASCII".into(),
        ContentEncoding::Ebcdic => "EBCDIC cp037".into(),
        ContentEncoding::Hex => "hex text".into(),
        ContentEncoding::Binary => "binary".into(),
        ContentEncoding::Bcd => format!(
            "BCD, {}-justified",
            if spec.justify == Justify::Left {
                "left"
            } else {
                "right"
            }
        ),
    }
}

fn unit(spec: &FieldSpec) -> &'static str {
    match spec.length_unit() {
        LengthUnit::Digits => "digits",
        LengthUnit::Characters => "characters",
        LengthUnit::Bytes => "bytes",
    }
}

/// One table row, then (for a composite) its subfields, indented by path.
fn row(s: &mut String, path: &str, f: &FieldSpec, depth: usize) {
    let kind = f
        .composite
        .as_ref()
        .map(|c| format!(" ({} composite)", c.kind()))
        .unwrap_or_default();
    s.push_str(&format!(
        "| {}{path} | {}{kind} | {} | {} | {} | {} | {} | {:?} |\n",
        "&nbsp;&nbsp;".repeat(depth),
        f.name,
        f.class.as_str(),
        length(f),
        unit(f),
        prefix(f),
        content(f),
        f.sensitive
    ));
    if let Some(c) = &f.composite {
        let mut subs: Vec<_> = c.subfields().iter().collect();
        subs.sort_by_key(|(k, _)| (k.len(), k.to_string()));
        for (k, sub) in subs {
            row(s, &format!("{path}.{k}"), sub, depth + 1);
        }
    }
}

fn render(d: &Dialect) -> String {
    let def = d.def();
    let mut s = format!("# Dialect `{}`\n\n{}\n\n", def.name, def.description);
    s.push_str(&format!(
        "MTI: {:?}. Bitmaps: {:?}; secondary bitmap: {}; bit 65 = tertiary bitmap: {}. \
         MAC field: DE {}{}. Echo fields: {:?}.\n\n",
        def.mti,
        def.bitmap,
        if def.secondary_bitmap { "yes" } else { "no" },
        if def.tertiary_bitmap { "yes" } else { "no" },
        def.mac.primary,
        def.mac
            .secondary
            .map(|n| format!(" (DE {n} with a secondary bitmap)"))
            .unwrap_or_default(),
        def.echo_fields
    ));
    s.push_str("| DE | name | class | length | counts | prefix | content | masked |\n");
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for n in 2..=192u8 {
        if let Some(f) = d.field(n) {
            row(&mut s, &n.to_string(), f, 0);
        }
    }
    s
}

#[test]
fn dialect_docs_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
    let update = std::env::var_os("UPDATE_DIALECT_DOCS").is_some();
    for name in Dialect::builtin_names() {
        let text = render(&Dialect::builtin(name).unwrap());
        let path = dir.join(format!("{name}.md"));
        if update {
            std::fs::write(&path, &text).unwrap();
        } else {
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == text,
                "{} is stale: run UPDATE_DIALECT_DOCS=1 cargo test -p isoswitch-codec --test dialect_docs",
                path.display()
            );
        }
    }
}
