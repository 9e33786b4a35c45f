//! The `isoswitch decode`, `encode` and `dialects` commands: the `iso87-composite` samples
//! (made by an independent implementation, see `tests/vectors/composite/README.md`),
//! dialect files, framing, the table for people and the error contract (status 1, one
//! message on stderr naming what is wrong).

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_isoswitch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run isoswitch");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = run(args, stdin);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn fails(args: &[&str], stdin: &[u8]) -> String {
    let out = run(args, stdin);
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    err
}

/// `decode ARGS --hex --json --reveal`.
fn revealed(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut a = vec!["decode"];
    a.extend_from_slice(args);
    a.extend(["--hex", "--json", "--reveal"]);
    ok(&a, stdin)
}

fn vector(name: &str) -> String {
    format!("{}/../../tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

#[test]
fn composite_samples_decode_and_encode_as_the_reference_did() {
    for n in 1..=5 {
        let hex = vector(&format!("composite/{n:02}.hex"));
        let want = std::fs::read(vector(&format!("composite/{n:02}.json"))).unwrap();
        let got = revealed(&["--dialect", "iso87-composite", &hex], b"");
        assert_eq!(json(&got), json(&want), "sample {n:02}");
        let enc = ok(&["encode", "--dialect", "iso87-composite", "--hex"], &want);
        let want_hex = std::fs::read_to_string(&hex).unwrap();
        assert_eq!(
            String::from_utf8(enc).unwrap().trim().to_lowercase(),
            want_hex.trim().to_lowercase(),
            "sample {n:02}"
        );
    }
}

#[test]
fn dialect_files_in_json_and_toml_work_like_the_builtin() {
    let exported = ok(&["dialects", "--export", "iso87-composite"], b"");
    let dir = tempfile::tempdir().unwrap();
    let jpath = dir.path().join("d.json");
    std::fs::write(&jpath, &exported).unwrap();
    let def: isoswitch::codec::DialectDef = serde_json::from_slice(&exported).unwrap();
    let tpath = dir.path().join("d.toml");
    std::fs::write(&tpath, toml::to_string(&def).unwrap()).unwrap();
    let hex = vector("composite/04.hex");
    let want = revealed(&["--dialect", "iso87-composite", &hex], b"");
    for p in [&jpath, &tpath] {
        let p = p.to_str().unwrap();
        let got = revealed(&["--dialect-file", p, &hex], b"");
        assert_eq!(json(&got), json(&want), "{p}");
        let enc = ok(&["encode", "--dialect-file", p, "--hex"], &got);
        let h = std::fs::read_to_string(&hex).unwrap();
        assert_eq!(
            String::from_utf8(enc).unwrap().trim(),
            h.trim().to_uppercase()
        );
    }
    let listed = String::from_utf8(ok(&["dialects"], b"")).unwrap();
    assert!(listed.contains("iso87-composite") && listed.contains("cup-pos"));
    let e = fails(&["dialects", "--export", "nope"], b"");
    assert!(e.contains("unknown dialect"), "{e}");
    std::fs::write(&jpath, b"{\"name\": 5}").unwrap();
    let e = fails(
        &["decode", "--dialect-file", jpath.to_str().unwrap(), &hex],
        b"",
    );
    assert!(e.contains("d.json"), "{e}");
}

#[test]
fn the_table_is_for_people() {
    let hex = vector("samples/purchase-0200.iso87-ascii.hex");
    let t = String::from_utf8(ok(
        &["decode", "--dialect", "iso87-ascii", "--hex", &hex],
        b"",
    ))
    .unwrap();
    assert!(
        t.starts_with("MTI   0200  financial request from the acquirer (ISO 8583:1987)"),
        "{t}"
    );
    assert!(
        t.contains("\nBitmap 723C468028E09201 (primary): fields 2, 3, 4, 7,"),
        "{t}"
    );
    assert!(t.contains("000000001000  = 10.00 CNY (156)"), "{t}");
    assert!(t.contains("476173******0119"), "PAN masked: {t}");
    assert!(!t.contains("4761739001010119"), "{t}");
    for (tag, len, value) in [
        ("9F26", "(8 bytes)", "AABBCCDDEEFF0011"),
        ("9F27", "(1 bytes)", "80"),
        ("9F10", "(18 bytes)", "0110A00003220000000000000000000000FF"),
        ("9F37", "(4 bytes)", "5A1B2C3D"),
    ] {
        assert!(
            t.lines().any(|l| l.starts_with(&format!("      {tag} "))
                && l.contains(len)
                && l.ends_with(value)),
            "DE 55 tag row {tag}: {t}"
        );
    }
    let hex = vector("composite/04.hex");
    let t = String::from_utf8(ok(
        &["decode", "--dialect", "iso87-composite", "--hex", &hex],
        b"",
    ))
    .unwrap();
    let line = t.lines().find(|l| l.contains("48.42.1")).unwrap();
    assert!(
        line.starts_with("        48.42.1")
            && line.contains("Security protocol")
            && line.ends_with(" 6"),
        "{line:?}"
    );
    assert!(
        t.lines()
            .any(|l| l.starts_with("      127.25 ") && l.contains("Nested subfields")),
        "{t}"
    );
}

#[test]
fn framing_is_stripped_and_checked() {
    let h = std::fs::read_to_string(vector("composite/02.hex")).unwrap();
    let h = h.trim();
    let len = h.len() / 2;
    let want = revealed(&["--dialect", "iso87-composite"], h.as_bytes());
    for (framing, header) in [
        ("len2", format!("{len:04X}")),
        ("len4", format!("{len:08X}")),
        (
            "ascii4",
            format!("{len:04}")
                .bytes()
                .map(|b| format!("{b:02X}"))
                .collect(),
        ),
        ("cup-pos", format!("{:04X}6000010000603100000000", len + 11)),
    ] {
        let framed = format!("{header}{h}");
        let got = revealed(
            &["--dialect", "iso87-composite", "--framing", framing],
            framed.as_bytes(),
        );
        assert_eq!(json(&got), json(&want), "{framing}");
    }
    let e = fails(
        &[
            "decode",
            "--dialect",
            "iso87-composite",
            "--hex",
            "--framing",
            "len2",
        ],
        format!("0005{h}").as_bytes(),
    );
    assert!(e.contains("header says 5 bytes follow"), "{e}");
    let e = fails(
        &[
            "decode",
            "--dialect",
            "iso87-composite",
            "--hex",
            "--framing",
            "len3",
        ],
        h.as_bytes(),
    );
    assert!(e.contains("unknown --framing"), "{e}");
}

#[test]
fn decode_errors_say_what_to_do() {
    let hex = vector("composite/01.hex");
    let e = fails(&["decode", "--dialect", "iso87-composite", &hex], b"");
    assert!(e.contains("add --hex"), "{e}");
    // A bad subfield: named by path, with the fields decoded before it.
    let h = std::fs::read_to_string(vector("composite/03.hex")).unwrap();
    let mut b: Vec<u8> = (0..h.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect();
    let n = b.len();
    b[n - 2] = b'X';
    let e = fails(&["decode", "--dialect", "iso87-composite"], &b);
    assert!(
        e.starts_with(&format!(
            "error: field 127.25.3 at byte offset {}: bad length prefix",
            n - 2
        )),
        "{e}"
    );
    assert!(
        e.contains("fields decoded before the error") && e.contains("Processing code"),
        "{e}"
    );
}

#[test]
fn encode_errors_say_what_is_wrong() {
    let enc = |input: &str| {
        fails(
            &["encode", "--dialect", "iso87-composite"],
            input.as_bytes(),
        )
    };
    let e = enc("{\"mti\": \"0200\",\n \"fields\": {\"3\": \"000000\",}}");
    assert!(
        e.contains("invalid JSON") && e.contains("line 2 column"),
        "{e}"
    );
    let e = enc(r#"{"fields": {}}"#);
    assert!(e.contains("missing \"mti\""), "{e}");
    let e = enc(r#"{"mti": "0200", "fields": {"1": "F000000000000000"}}"#);
    assert!(e.contains("field 1 is a bitmap"), "{e}");
    let e = enc(r#"{"mti": "0200", "fields": {"5": "000000000100"}}"#);
    assert!(
        e.contains("field 5 is not defined by dialect iso87-composite"),
        "{e}"
    );
    let e = enc(r#"{"mti": "1200", "fields": {}}"#);
    assert!(
        e.contains("MTI 1200 is not allowed by dialect iso87-composite"),
        "{e}"
    );
    let e = enc(r#"{"mti": "0200", "fields": {"48": {"42": {"1": "12"}}}}"#);
    assert!(e.starts_with("error: field 48.42.1 "), "{e}");
}

#[test]
fn decode_json_pipes_into_encode() {
    let hex = vector("samples/purchase-0200.iso87-ascii.hex");
    let masked = ok(
        &[
            "decode",
            "--dialect",
            "iso87-ascii",
            "--hex",
            "--json",
            &hex,
        ],
        b"",
    );
    let e = fails(&["encode", "--dialect", "iso87-ascii", "--hex"], &masked);
    assert!(e.contains("masked") && e.contains("--reveal"), "{e}");
    let revealed = revealed(&["--dialect", "iso87-ascii", &hex], b"");
    let enc = ok(&["encode", "--dialect", "iso87-ascii", "--hex"], &revealed);
    let want = std::fs::read_to_string(&hex).unwrap();
    assert_eq!(
        String::from_utf8(enc).unwrap().trim(),
        want.trim().to_uppercase()
    );
}
