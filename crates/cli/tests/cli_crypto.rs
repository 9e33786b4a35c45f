//! The `isoswitch mac`, `kcv` and `pinblock` commands: domain.md §4 vectors and the
//! error contract (exit status 1, a message on stderr, nothing on stdout).
//!
//! The domain.md PANs 5555555551234567 and 432198765432109870 have no valid Luhn check
//! digit, which `pinblock` now refuses; their vectors run with `--no-luhn` (the refusal
//! itself is tested in tests/cli_keys.rs).

use std::process::{Command, Output};

use isoswitch::session::crypto::{Key, Pan, Pin, PinBlock, PinBlockFormat};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isoswitch"))
        .args(args)
        .output()
        .expect("run isoswitch")
}

/// Runs a command that must succeed and returns its one output line.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.ends_with('\n'), "{args:?}: {stdout:?}");
    let line = stdout.trim_end_matches('\n');
    assert!(!line.contains('\n'), "{args:?}: more than one line");
    line.to_string()
}

/// Runs a command that must fail with status 1 and a message; returns the message.
fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
    let err = String::from_utf8(out.stderr).expect("utf-8");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    err
}

fn hex(s: &[u8]) -> String {
    s.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn is_upper_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
}

const X919_KEY: &str = "0123456789ABCDEFFEDCBA9876543210";

#[test]
fn mac_x919_vectors() {
    let data = hex(b"Now is the time for all ");
    assert_eq!(
        ok(&[
            "mac",
            "--algorithm",
            "x9.19",
            "--key",
            X919_KEY,
            "--data",
            &data
        ]),
        "A1C72E74EA3FA9B6"
    );
    let data = hex(b"Now is the time for it");
    assert_eq!(
        ok(&[
            "mac",
            "--algorithm",
            "x9.19",
            "--key",
            X919_KEY,
            "--padding",
            "1",
            "--data",
            &data
        ]),
        "2E2B1428CC78254F"
    );
    let key = "41414141414141414242424242424242";
    let data = hex(b"hello world");
    assert_eq!(
        ok(&["mac", "--algorithm", "x9.19", "--key", key, "--data", &data]),
        "3DDE5C5511661CBF"
    );
    assert_eq!(
        ok(&[
            "mac",
            "--algorithm",
            "x9.19",
            "--key",
            key,
            "--padding",
            "2",
            "--data",
            &data
        ]),
        "E16941032C3BC7D4"
    );
}

#[test]
fn mac_cbc_vectors() {
    let data = hex(b"Now is the time for all ");
    assert_eq!(
        ok(&[
            "mac",
            "--algorithm",
            "cbc-des",
            "--key",
            "0123456789ABCDEF",
            "--data",
            &data
        ]),
        "70A30640CC76DD8B"
    );
    let key = "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB";
    let data = hex(b"hello world");
    assert_eq!(
        ok(&[
            "mac",
            "--algorithm",
            "cbc-tdes",
            "--key",
            key,
            "--data",
            &data
        ]),
        "68D9038F23360DF3"
    );
    assert_eq!(
        ok(&[
            "mac",
            "--algorithm",
            "cbc-tdes",
            "--key",
            key,
            "--padding",
            "2",
            "--data",
            &data
        ]),
        "32DC341271ACCD00"
    );
}

#[test]
fn mac_aes_cmac_rfc4493_vectors() {
    let key = "2b7e151628aed2a6abf7158809cf4f3c";
    assert_eq!(
        ok(&["mac", "--algorithm", "aes-cmac", "--key", key, "--data", ""]),
        "BB1D6929E95937287FA37D129B756746"
    );
    assert_eq!(
        ok(&[
            "mac",
            "--algorithm",
            "aes-cmac",
            "--key",
            key,
            "--data",
            "6bc1bee22e409f96e93d7e117393172a"
        ]),
        "070A16B46B4D4144F79BDD9DD04A287C"
    );
}

#[test]
fn mac_cup_pos_vector() {
    let data = "1234567890ABCDEFABCDEF1234567890";
    assert_eq!(
        ok(&[
            "mac",
            "--algorithm",
            "cup-pos",
            "--key",
            "2222222222222222",
            "--data",
            data
        ]),
        "E267B6E2"
    );
    // A 16-byte MAK with equal halves is the same DES key.
    assert_eq!(
        ok(&[
            "mac",
            "--algorithm",
            "cup-pos",
            "--key",
            "22222222222222222222222222222222",
            "--data",
            data
        ]),
        "E267B6E2"
    );
}

#[test]
fn kcv_vectors() {
    assert_eq!(ok(&["kcv", "--key", X919_KEY]), "08D7B4");
    // RFC 4493 key: CMAC of 16 zero bytes, first 3 bytes.
    let aes = ok(&["kcv", "--aes", "--key", "2b7e151628aed2a6abf7158809cf4f3c"]);
    let key = Key::aes(&unhex("2b7e151628aed2a6abf7158809cf4f3c")).expect("key");
    assert_eq!(aes, hex(key.kcv().leading(3).expect("kcv")));
    assert_eq!(
        ok(&["kcv", "--key", "0123456789ABCDEF"]).len(),
        6,
        "single DES"
    );
    let help = String::from_utf8(run(&["kcv", "--help"]).stdout).expect("utf-8");
    assert!(help.contains("X9.24") && help.contains("zero"), "{help}");
}

#[test]
fn pinblock_vectors() {
    let pan = "5555555551234567";
    assert_eq!(
        ok(&[
            "pinblock",
            "--no-luhn",
            "--format",
            "0",
            "--pin",
            "1234",
            "--pan",
            pan
        ]),
        "041261AAAAEDCBA9"
    );
    assert_eq!(
        ok(&[
            "pinblock",
            "--no-luhn",
            "--format",
            "0",
            "--pin",
            "123456789012",
            "--pan",
            pan
        ]),
        "0C1261032D8226A9"
    );
    // Format 3: random fill A-F, XORed with the PAN block; deciphers to the PIN.
    let f3 = ok(&[
        "pinblock",
        "--no-luhn",
        "--format",
        "3",
        "--pin",
        "1234",
        "--pan",
        pan,
    ]);
    assert!(is_upper_hex(&f3, 16));
    assert!(f3.starts_with("341261"), "{f3}");
    // Format 1: control 1, length 4, PIN, random fill; no PAN involved.
    let f1 = ok(&[
        "pinblock",
        "--no-luhn",
        "--format",
        "1",
        "--pin",
        "1234",
        "--pan",
        pan,
    ]);
    assert!(f1.starts_with("141234"), "{f1}");
    assert!(is_upper_hex(&f1, 16));

    // Enciphered under a TDES key: format 0 is deterministic and deciphers.
    let e0 = ok(&[
        "pinblock",
        "--no-luhn",
        "--format",
        "0",
        "--pin",
        "1234",
        "--pan",
        pan,
        "--key",
        X919_KEY,
    ]);
    let key = Key::tdes(&unhex(X919_KEY)).expect("key");
    let block = PinBlock::from_bytes(PinBlockFormat::Iso0, &unhex(&e0)).expect("block");
    assert_eq!(
        block
            .decipher(Some(&Pan::new(pan).expect("pan")), &key)
            .expect("pin"),
        Pin::new("1234").expect("pin")
    );
    let e3 = ok(&[
        "pinblock",
        "--no-luhn",
        "--format",
        "3",
        "--pin",
        "4321",
        "--pan",
        pan,
        "--key",
        X919_KEY,
    ]);
    let block = PinBlock::from_bytes(PinBlockFormat::Iso3, &unhex(&e3)).expect("block");
    assert_eq!(
        block
            .decipher(Some(&Pan::new(pan).expect("pan")), &key)
            .expect("pin"),
        Pin::new("4321").expect("pin")
    );

    // Format 4 (AES): random fill, so test by decipher.
    let aes = "C1D0F8FB4958670DBA40AB1F3752EF0D";
    let pan4 = "432198765432109870";
    let e4 = ok(&[
        "pinblock",
        "--no-luhn",
        "--format",
        "4",
        "--pin",
        "1234",
        "--pan",
        pan4,
        "--key",
        aes,
    ]);
    assert!(is_upper_hex(&e4, 32));
    let block = PinBlock::from_bytes(PinBlockFormat::Iso4, &unhex(&e4)).expect("block");
    let key = Key::aes(&unhex(aes)).expect("key");
    assert_eq!(
        block
            .decipher(Some(&Pan::new(pan4).expect("pan")), &key)
            .expect("pin"),
        Pin::new("1234").expect("pin")
    );
    let again = ok(&[
        "pinblock",
        "--no-luhn",
        "--format",
        "4",
        "--pin",
        "1234",
        "--pan",
        pan4,
        "--key",
        aes,
    ]);
    assert_ne!(e4, again, "random fill");
}

#[test]
fn errors_exit_1_with_a_message() {
    let data = hex(b"x");
    // Bad hex.
    let e = fails(&[
        "mac",
        "--algorithm",
        "x9.19",
        "--key",
        "0123456789ABCDEZ",
        "--data",
        &data,
    ]);
    assert!(e.contains("--key"), "{e}");
    let e = fails(&[
        "mac",
        "--algorithm",
        "cbc-des",
        "--key",
        "0123456789ABCDEF",
        "--data",
        "ABC",
    ]);
    assert!(e.contains("--data"), "{e}");
    fails(&["kcv", "--key", "XYZ0"]);
    // Wrong key lengths.
    for (alg, key) in [
        ("cbc-des", X919_KEY),
        ("cbc-tdes", "0123456789ABCDEF"),
        ("x9.19", "0123456789ABCDEF"),
        ("x9.19", "0123456789ABCDEFFEDCBA98765432100123456789ABCDEF"),
        ("aes-cmac", "0123456789ABCDEF"),
        (
            "cup-pos",
            "0123456789ABCDEFFEDCBA98765432100123456789ABCDEF",
        ),
    ] {
        let e = fails(&["mac", "--algorithm", alg, "--key", key, "--data", &data]);
        assert!(e.contains("key"), "{alg}: {e}");
    }
    fails(&["kcv", "--key", "0123456789ABCD"]);
    fails(&["kcv", "--aes", "--key", "0123456789ABCDEF"]);
    // Options that do not fit.
    let e = fails(&[
        "mac",
        "--algorithm",
        "aes-cmac",
        "--key",
        "2b7e151628aed2a6abf7158809cf4f3c",
        "--padding",
        "1",
        "--data",
        &data,
    ]);
    assert!(e.contains("padding"), "{e}");
    fails(&[
        "mac",
        "--algorithm",
        "x9.19",
        "--key",
        X919_KEY,
        "--padding",
        "3",
        "--data",
        &data,
    ]);
    fails(&[
        "mac",
        "--algorithm",
        "sha1",
        "--key",
        X919_KEY,
        "--data",
        &data,
    ]);
    // PINs outside 4-12 digits, bad PANs.
    let pan = "5555555551234567";
    for pin in ["123", "1234567890123", "12a4", ""] {
        let e = fails(&["pinblock", "--format", "0", "--pin", pin, "--pan", pan]);
        assert!(e.contains("PIN"), "{pin}: {e}");
    }
    for bad in ["55555555512", "55555555512345678901", "555555555123456X"] {
        let e = fails(&["pinblock", "--format", "0", "--pin", "1234", "--pan", bad]);
        assert!(e.contains("PAN"), "{bad}: {e}");
    }
    fails(&["pinblock", "--format", "0", "--pin", "1234"]);
    fails(&["pinblock", "--format", "2", "--pin", "1234", "--pan", pan]);
    // Format 4 needs an AES key; formats 0/1/3 take a TDES key.
    fails(&[
        "pinblock",
        "--no-luhn",
        "--format",
        "4",
        "--pin",
        "1234",
        "--pan",
        pan,
    ]);
    fails(&[
        "pinblock",
        "--no-luhn",
        "--format",
        "4",
        "--pin",
        "1234",
        "--pan",
        pan,
        "--key",
        "0123456789ABCDEF",
    ]);
    fails(&[
        "pinblock",
        "--no-luhn",
        "--format",
        "0",
        "--pin",
        "1234",
        "--pan",
        pan,
        "--key",
        "0123456789ABCDEF",
    ]);
}
