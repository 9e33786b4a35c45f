//! The key-management commands: `isoswitch pinblock --decipher / --translate`,
//! `isoswitch dukpt` (TDES and `--aes`), `isoswitch tr31 wrap / unwrap`, and the Luhn
//! check on every `--pan`. Expected values are the published ones collected in
//! `../shared/vectors/key-management.md` (X9.24-1 A.4, the X9.24-3 supplement, TR-31
//! examples); the error contract is status 1, one line on stderr, nothing on stdout.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isoswitch"))
        .args(args)
        .output()
        .expect("run isoswitch")
}

/// The output lines of a command that must succeed.
fn ok_lines(args: &[&str]) -> Vec<String> {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(stdout.ends_with('\n'), "{args:?}: {stdout:?}");
    stdout.lines().map(str::to_string).collect()
}

/// The single output line of a command that must succeed.
fn ok(args: &[&str]) -> String {
    let lines = ok_lines(args);
    assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
    lines[0].clone()
}

/// A command that must fail: status 1, nothing on stdout, one line on stderr.
fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
    let err = String::from_utf8(out.stderr).expect("utf-8");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    err
}

fn is_upper_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
}

const TDES_BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
const TDES_KSN1: &str = "FFFF9876543210E00001";
const AES128_BDK: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
const AES256_BDK: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210F1F1F1F1F1F1F1F1";
const AES_KSN1: &str = "123456789012345600000001";

#[test]
fn dukpt_tdes_variants() {
    let d = |extra: &[&str]| {
        let mut a = vec!["dukpt", "--bdk", TDES_BDK, "--ksn", TDES_KSN1];
        a.extend_from_slice(extra);
        ok(&a)
    };
    // X9.24-1:2009 A.4.2 row 1 (current key published; the variants confirmed by the
    // published PIN block, MACs and ciphertext).
    assert_eq!(d(&[]), "042666B49184CFA368DE9628D0397BC9");
    assert_eq!(d(&["--variant", "pin"]), "042666B49184CF5C68DE9628D0397B36");
    assert_eq!(d(&["--variant", "mac"]), "042666B4918430A368DE9628D03984C9");
    assert_eq!(
        d(&["--variant", "mac-response"]),
        "042666B46E84CFA368DE96282F397BC9"
    );
    assert_eq!(
        d(&["--variant", "data"]),
        "448D3F076D8304036A55A3D7E0055A78"
    );
    assert_eq!(
        d(&["--variant", "data-response"]),
        "AD7BFC8B06AD3A08A560B4105CF8D9E5"
    );
    // Lower-case hex input is fine; row 34 (rollover sequence).
    assert_eq!(
        ok(&[
            "dukpt",
            "--bdk",
            &TDES_BDK.to_lowercase(),
            "--ksn",
            "ffff9876543210f00000"
        ]),
        "AA4D58DB653EC74A48C75F2F047DD2B5"
    );
}

#[test]
fn dukpt_aes_key_types_and_usages() {
    let d = |bdk: &str, ty: &str, usage: &str| {
        ok(&[
            "dukpt",
            "--aes",
            "--bdk",
            bdk,
            "--ksn",
            AES_KSN1,
            "--key-type",
            ty,
            "--usage",
            usage,
        ])
    };
    // X9.24-3 supplement (published).
    assert_eq!(
        d(AES128_BDK, "aes128", "pin"),
        "AF8CB133A78F8DC2D1359F18527593FB"
    );
    assert_eq!(
        d(AES128_BDK, "aes128", "mac-gen"),
        "A2DC23DE6FDE0824A2BC321E08E4B8B7"
    );
    assert_eq!(
        d(AES128_BDK, "aes128", "data-enc"),
        "A35C412EFD41FDB98B69797C02DCD08F"
    );
    assert_eq!(
        d(AES256_BDK, "aes256", "pin"),
        "8C1AB7BEE973829E30242E0BBBDD4946D540C98FC1B5BDCF94790001A23FD502"
    );
    assert_eq!(
        d(AES256_BDK, "aes128", "mac-gen"),
        "F04A1FABD4176E15490CEC82E217A96D"
    );
    // The other usages and the TDES key types (the file's computed table 2.6).
    assert_eq!(
        d(AES128_BDK, "aes128", "mac-verify"),
        "DBB463945B286C07CD3AD82EE96FD9C9"
    );
    assert_eq!(
        d(AES128_BDK, "aes128", "mac"),
        "85675439D18D7F1158BD8E3EAA3D502B"
    );
    assert_eq!(
        d(AES128_BDK, "aes128", "data-dec"),
        "16292C6EA8F64C5420A0584BFBC577BE"
    );
    assert_eq!(
        d(AES128_BDK, "aes128", "data"),
        "A308E080DD15A1B741F1721BF67DE11C"
    );
    assert_eq!(
        d(AES128_BDK, "tdes2", "pin"),
        "630C706D9546E47D4449313F61C4D4AB"
    );
    assert_eq!(
        d(AES128_BDK, "tdes3", "data"),
        "A11DB51890FCA90791D7E737AA37DB20F9E2B35263013CD2"
    );
}

#[test]
fn dukpt_bad_inputs() {
    let e = fails(&["dukpt", "--bdk", TDES_BDK, "--ksn", AES_KSN1]);
    assert!(e.contains("--ksn") && e.contains("10 bytes"), "{e}");
    let e = fails(&[
        "dukpt",
        "--aes",
        "--bdk",
        AES128_BDK,
        "--ksn",
        TDES_KSN1,
        "--key-type",
        "aes128",
        "--usage",
        "pin",
    ]);
    assert!(e.contains("--ksn") && e.contains("12 bytes"), "{e}");
    let e = fails(&["dukpt", "--bdk", AES256_BDK, "--ksn", TDES_KSN1]);
    assert!(e.contains("--bdk"), "{e}");
    let e = fails(&[
        "dukpt",
        "--bdk",
        TDES_BDK,
        "--ksn",
        TDES_KSN1,
        "--variant",
        "cvv",
    ]);
    assert!(e.contains("--variant"), "{e}");
    let e = fails(&[
        "dukpt",
        "--aes",
        "--bdk",
        AES128_BDK,
        "--ksn",
        AES_KSN1,
        "--key-type",
        "aes256",
        "--usage",
        "pin",
    ]);
    assert!(
        e.contains("--key-type") && e.contains("cannot be derived"),
        "{e}"
    );
    let e = fails(&[
        "dukpt", "--aes", "--bdk", AES128_BDK, "--ksn", AES_KSN1, "--usage", "pin",
    ]);
    assert!(e.contains("--key-type"), "{e}");
    let e = fails(&[
        "dukpt",
        "--aes",
        "--bdk",
        AES128_BDK,
        "--ksn",
        AES_KSN1,
        "--key-type",
        "aes128",
        "--usage",
        "cvv",
    ]);
    assert!(e.contains("--usage"), "{e}");
    let e = fails(&["dukpt", "--bdk", "XYZ", "--ksn", TDES_KSN1]);
    assert!(e.contains("--bdk"), "{e}");
    // Usage errors from the argument parser keep the contract too.
    fails(&["dukpt", "--ksn", TDES_KSN1]);
    fails(&["dukpt", "--bdk", TDES_BDK, "--ksn", TDES_KSN1, "--bogus"]);
}

#[test]
fn tr31_unwrap_published_blocks() {
    // TR-31:2018 A.7.2.1 (version A) and A.7.4 (version D, AES-256 KBPK).
    let lines = ok_lines(&[
        "tr31",
        "unwrap",
        "--kbpk",
        "89E88CF7931444F334BD7547FC3F380C",
        "--block",
        "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701",
    ]);
    assert_eq!(lines[0], "F039121BEC83D26B169BDCD5B22AAF8F");
    for want in [
        "version: A",
        "key usage: P0",
        "algorithm: T",
        "mode of use: E",
        "exportability: E",
        "key check value: CB9DEA",
    ] {
        assert!(lines.iter().any(|l| l == want), "{want}: {lines:?}");
    }
    let lines = ok_lines(&[
        "tr31",
        "unwrap",
        "--kbpk",
        "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
        "--block",
        "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34",
    ]);
    assert_eq!(lines[0], "3F419E1CB7079442AA37474C2EFBF8B8");
    // Optional blocks are listed (TR-31:2018 A.7.3.1, KS block).
    let lines = ok_lines(&[
        "tr31",
        "unwrap",
        "--kbpk",
        "B8ED59E0A279A295E9F5ED7944FD06B9",
        "--block",
        "C0096B0TX12S0100KS1800604B120F9292800000BFB9B689CB567E66FC3FEE5AD5F52161FC6545B9D60989015D02155C",
    ]);
    assert_eq!(lines[0], "EDB380DD340BC2620247D445F5B8D678");
    assert!(
        lines
            .iter()
            .any(|l| l == "optional block KS: 00604B120F9292800000"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "key version: 12"), "{lines:?}");
}

#[test]
fn tr31_wrap_then_unwrap() {
    for (kbpk, header, key) in [
        (
            "89E88CF7931444F334BD7547FC3F380C",
            "A0000P0TE00E0000",
            "F039121BEC83D26B169BDCD5B22AAF8F",
        ),
        (
            "DD7515F2BFC17F85CE48F3CA25CB21F6",
            "B0000M3TC00N0000",
            "3F419E1CB7079442AA37474C2EFBF8B8",
        ),
        (
            "B8ED59E0A279A295E9F5ED7944FD06B9",
            "C0000K0TB00E0100KS0A123456",
            "EDB380DD340BC2620247D445F5B8D678",
        ),
        (
            "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
            "D0000D0AB00S0000",
            "BE19E6A07A760F10EF8E83A226B63AAD141F463FDDD4F47DB244B4023EC3CACC",
        ),
    ] {
        let block = ok(&[
            "tr31", "wrap", "--kbpk", kbpk, "--header", header, "--key", key,
        ]);
        assert_eq!(&block[..1], &header[..1]);
        assert_eq!(block[1..5].parse::<usize>().expect("length"), block.len());
        let lines = ok_lines(&["tr31", "unwrap", "--kbpk", kbpk, "--block", &block]);
        assert_eq!(lines[0], key, "{header}");
        assert!(lines
            .iter()
            .any(|l| l == &format!("key usage: {}", &header[5..7])));
    }
}

#[test]
fn tr31_bad_inputs() {
    let kbpk = "EFE0853B256B583D868F251CE99EA1D9";
    let good = "B0080K0TN00N00001C414014375212C24995E405B5EE052CB92B67F455EA2680F6751088F9F1C228";
    // A flipped MAC character, another KBPK, a truncated block.
    let bad = format!("{}0", &good[..good.len() - 1]);
    let e = fails(&["tr31", "unwrap", "--kbpk", kbpk, "--block", &bad]);
    assert!(e.contains("MAC"), "{e}");
    let e = fails(&[
        "tr31",
        "unwrap",
        "--kbpk",
        "11111111111111112222222222222222",
        "--block",
        good,
    ]);
    assert!(e.contains("MAC"), "{e}");
    let e = fails(&["tr31", "unwrap", "--kbpk", kbpk, "--block", &good[..60]]);
    assert!(e.contains("--block") && e.contains("length"), "{e}");
    // An AES KBPK for a TDES version, a TDES key under an AES header.
    let e = fails(&[
        "tr31",
        "unwrap",
        "--kbpk",
        &"11".repeat(32),
        "--block",
        good,
    ]);
    assert!(e.contains("--kbpk"), "{e}");
    let e = fails(&[
        "tr31",
        "wrap",
        "--kbpk",
        &"11".repeat(32),
        "--header",
        "D0000P0AE00E0000",
        "--key",
        "0123456789ABCDEF",
    ]);
    assert!(e.contains("--key"), "{e}");
    // Headers that do not parse.
    let e = fails(&[
        "tr31",
        "wrap",
        "--kbpk",
        kbpk,
        "--header",
        "B0000P0QE00E0000",
        "--key",
        kbpk,
    ]);
    assert!(e.contains("--header") && e.contains("algorithm"), "{e}");
    let e = fails(&[
        "tr31",
        "wrap",
        "--kbpk",
        kbpk,
        "--header",
        "E0000P0AE00E0000",
        "--key",
        kbpk,
    ]);
    assert!(e.contains("version"), "{e}");
    let e = fails(&[
        "tr31",
        "wrap",
        "--kbpk",
        kbpk,
        "--header",
        "B0000P0TE00E01",
        "--key",
        kbpk,
    ]);
    assert!(e.contains("--header"), "{e}");
}

// PIN blocks: X9.24-1 A.4.2 row 1 (TDES DUKPT PIN key, format 0) and the X9.24-3
// supplement page 31 (AES DUKPT PIN key, format 4).
const PIK0: &str = "042666B49184CF5C68DE9628D0397B36";
const BLOCK0: &str = "1B9C1845EB993A7A";
const PAN0: &str = "4012345678909";
const PIK4: &str = "AF8CB133A78F8DC2D1359F18527593FB";
const BLOCK4: &str = "A912150391AB65A67E52883D81CE2D15";
const PAN4: &str = "4111111111111111";
const ZPK: &str = "0123456789ABCDEFFEDCBA9876543210";

#[test]
fn pinblock_decipher_published_blocks() {
    assert_eq!(
        ok(&[
            "pinblock",
            "--decipher",
            "--format",
            "0",
            "--key",
            PIK0,
            "--block",
            BLOCK0,
            "--pan",
            PAN0
        ]),
        "1234"
    );
    assert_eq!(
        ok(&[
            "pinblock",
            "--decipher",
            "--format",
            "4",
            "--key",
            PIK4,
            "--block",
            BLOCK4,
            "--pan",
            PAN4
        ]),
        "1234"
    );
    // Format 1 binds no PAN.
    let b1 = ok(&["pinblock", "--format", "1", "--pin", "987654", "--key", ZPK]);
    assert_eq!(
        ok(&[
            "pinblock",
            "--decipher",
            "--format",
            "1",
            "--key",
            ZPK,
            "--block",
            &b1
        ]),
        "987654"
    );
}

#[test]
fn pinblock_translate_between_keys_and_formats() {
    // DUKPT PIN key to a zone key, format 0 to 0: the new block deciphers under the ZPK.
    let z0 = ok(&[
        "pinblock",
        "--translate",
        "--from-key",
        PIK0,
        "--to-key",
        ZPK,
        "--block",
        BLOCK0,
        "--pan",
        PAN0,
    ]);
    assert!(is_upper_hex(&z0, 16), "{z0}");
    assert_ne!(z0, BLOCK0);
    assert_eq!(
        ok(&[
            "pinblock",
            "--decipher",
            "--format",
            "0",
            "--key",
            ZPK,
            "--block",
            &z0,
            "--pan",
            PAN0
        ]),
        "1234"
    );
    // Format 4 (AES) to format 3 (TDES) and back to format 4 under another AES key.
    let z3 = ok(&[
        "pinblock",
        "--translate",
        "--from-format",
        "4",
        "--to-format",
        "3",
        "--from-key",
        PIK4,
        "--to-key",
        ZPK,
        "--block",
        BLOCK4,
        "--pan",
        PAN4,
    ]);
    assert!(z3.starts_with(|c: char| c.is_ascii_hexdigit()) && z3.len() == 16);
    assert_eq!(
        ok(&[
            "pinblock",
            "--decipher",
            "--format",
            "3",
            "--key",
            ZPK,
            "--block",
            &z3,
            "--pan",
            PAN4
        ]),
        "1234"
    );
    let aes2 = "00112233445566778899AABBCCDDEEFF";
    let z4 = ok(&[
        "pinblock",
        "--translate",
        "--from-format",
        "3",
        "--to-format",
        "4",
        "--from-key",
        ZPK,
        "--to-key",
        aes2,
        "--block",
        &z3,
        "--pan",
        PAN4,
    ]);
    assert!(is_upper_hex(&z4, 32), "{z4}");
    assert_eq!(
        ok(&[
            "pinblock",
            "--decipher",
            "--format",
            "4",
            "--key",
            aes2,
            "--block",
            &z4,
            "--pan",
            PAN4
        ]),
        "1234"
    );
    // Format 4 to 1 is refused; a wrong from-key gives a clear error.
    let e = fails(&[
        "pinblock",
        "--translate",
        "--from-format",
        "4",
        "--to-format",
        "1",
        "--from-key",
        PIK4,
        "--to-key",
        ZPK,
        "--block",
        BLOCK4,
        "--pan",
        PAN4,
    ]);
    assert!(e.contains("not allowed"), "{e}");
    let e = fails(&[
        "pinblock",
        "--translate",
        "--from-key",
        ZPK,
        "--to-key",
        PIK0,
        "--block",
        BLOCK0,
        "--pan",
        PAN0,
    ]);
    assert!(e.contains("--block") && e.contains("wrong key"), "{e}");
}

#[test]
fn pinblock_bad_inputs() {
    let e = fails(&[
        "pinblock",
        "--decipher",
        "--format",
        "0",
        "--key",
        PIK0,
        "--block",
        "1B9C",
        "--pan",
        PAN0,
    ]);
    assert!(e.contains("--block") && e.contains("8 bytes"), "{e}");
    let e = fails(&[
        "pinblock",
        "--decipher",
        "--format",
        "0",
        "--key",
        PIK0,
        "--block",
        BLOCK0,
    ]);
    assert!(e.contains("--pan"), "{e}");
    let e = fails(&[
        "pinblock",
        "--decipher",
        "--format",
        "4",
        "--key",
        PIK0,
        "--block",
        BLOCK0,
        "--pan",
        PAN4,
    ]);
    assert!(e.contains("--block"), "{e}");
    let e = fails(&[
        "pinblock",
        "--decipher",
        "--format",
        "0",
        "--block",
        BLOCK0,
        "--pan",
        PAN0,
    ]);
    assert!(e.contains("--key"), "{e}");
    let e = fails(&[
        "pinblock",
        "--translate",
        "--from-key",
        PIK0,
        "--block",
        BLOCK0,
        "--pan",
        PAN0,
    ]);
    assert!(e.contains("--to-key"), "{e}");
    let e = fails(&[
        "pinblock",
        "--translate",
        "--from-key",
        PIK0,
        "--to-key",
        ZPK,
        "--block",
        BLOCK0,
    ]);
    assert!(e.contains("--pan"), "{e}");
    // A wrong PAN does not decipher.
    let e = fails(&[
        "pinblock",
        "--decipher",
        "--format",
        "0",
        "--key",
        PIK0,
        "--block",
        BLOCK0,
        "--pan",
        "4111111111111111",
    ]);
    assert!(e.contains("wrong key, PAN or format"), "{e}");
    // --decipher and --translate together, or with --pin.
    fails(&[
        "pinblock",
        "--decipher",
        "--translate",
        "--format",
        "0",
        "--key",
        PIK0,
        "--block",
        BLOCK0,
        "--pan",
        PAN0,
    ]);
    fails(&[
        "pinblock",
        "--decipher",
        "--pin",
        "1234",
        "--format",
        "0",
        "--key",
        PIK0,
        "--block",
        BLOCK0,
        "--pan",
        PAN0,
    ]);
    fails(&["pinblock", "--bogus"]);
}

#[test]
fn a_pan_with_a_wrong_luhn_digit_is_refused_everywhere() {
    // 4012345678909 with its check digit changed.
    let bad = "4012345678908";
    let e = fails(&["pinblock", "--format", "0", "--pin", "1234", "--pan", bad]);
    assert!(e.contains("--pan") && e.contains("Luhn"), "{e}");
    let e = fails(&[
        "pinblock",
        "--format",
        "0",
        "--pin",
        "1234",
        "--pan",
        "5555555551234567",
    ]);
    assert!(e.contains("Luhn"), "{e}");
    let e = fails(&[
        "pinblock",
        "--decipher",
        "--format",
        "0",
        "--key",
        PIK0,
        "--block",
        BLOCK0,
        "--pan",
        bad,
    ]);
    assert!(e.contains("Luhn"), "{e}");
    let e = fails(&[
        "pinblock",
        "--translate",
        "--from-key",
        PIK0,
        "--to-key",
        ZPK,
        "--block",
        BLOCK0,
        "--pan",
        bad,
    ]);
    assert!(e.contains("Luhn"), "{e}");
    // Format 1 takes no PAN, but a given one is still checked.
    let e = fails(&["pinblock", "--format", "1", "--pin", "1234", "--pan", bad]);
    assert!(e.contains("Luhn"), "{e}");
    // --no-luhn accepts it; a valid PAN needs no flag.
    let b = ok(&[
        "pinblock",
        "--no-luhn",
        "--format",
        "0",
        "--pin",
        "1234",
        "--pan",
        bad,
    ]);
    assert!(is_upper_hex(&b, 16));
    assert_eq!(
        ok(&["pinblock", "--format", "0", "--pin", "1234", "--pan", PAN0]),
        "041274EDCBA9876F",
        "X9.24-1 A.4 clear PIN block"
    );
    // The wrong digit gives a different block: the PAN really is the one given.
    let e = ok(&[
        "pinblock",
        "--no-luhn",
        "--decipher",
        "--format",
        "0",
        "--key",
        PIK0,
        "--block",
        BLOCK0,
        "--pan",
        "4012345678901",
    ]);
    assert_eq!(e, "1234", "the check digit is not part of the PAN field");
}
