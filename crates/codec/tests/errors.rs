//! Every decode (and build) error kind, each provoked by a malformed message, with the
//! field and byte offset it must name.

use isoswitch_codec::{
    json, tlv, CodecError, Dialect, ErrorKind, Location, Message, MessageView, Mti,
};

fn d(name: &str) -> Dialect {
    Dialect::builtin(name).unwrap()
}

fn err(dialect: &str, bytes: &[u8]) -> CodecError {
    MessageView::decode(&d(dialect), bytes).unwrap_err()
}

/// `0200`, ASCII bitmap with fields 2, 3, 4 (`7000000000000000`), then the fields.
fn ascii_0200(fields: &str) -> Vec<u8> {
    format!("02007000000000000000{fields}").into_bytes()
}

#[test]
fn truncated_inside_a_field() {
    let m = ascii_0200("164761739001010119000000000000001");
    let e = err("iso87-ascii", &m);
    assert_eq!(e.location, Location::Field(4));
    assert_eq!(e.offset, 44);
    assert_eq!(e.kind, ErrorKind::Truncated { needed: 3 });
}

#[test]
fn truncated_in_mti_bitmap_and_prefix() {
    assert_eq!(err("iso87-ascii", b"02").location, Location::Mti);
    let e = err("iso87-ascii", b"02007000");
    assert_eq!((e.location, e.offset), (Location::Bitmap(1), 4));
    let e = err("iso87-ascii", b"020070000000000000001");
    assert_eq!((e.location, e.offset), (Location::Field(2), 20));
    assert!(matches!(e.kind, ErrorKind::Truncated { needed: 1 }));
    // secondary bitmap announced but missing
    let e = err(
        "iso87-binary",
        b"0200\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    );
    assert_eq!((e.location, e.offset), (Location::Bitmap(2), 12));
}

#[test]
fn bad_length_digits() {
    let e = err(
        "iso87-ascii",
        &ascii_0200("1A4761739001010119000000000000001000"),
    );
    assert_eq!(
        (e.location, e.offset, e.kind),
        (Location::Field(2), 20, ErrorKind::BadLength)
    );
    // BCD length prefix with a non-decimal nibble (cup-pos field 2)
    let e = err(
        "cup-pos",
        &[0x02, 0x00, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x1A, 0x47],
    );
    assert_eq!(
        (e.location, e.offset, e.kind),
        (Location::Field(2), 10, ErrorKind::BadLength)
    );
}

#[test]
fn length_over_max() {
    let e = err(
        "iso87-ascii",
        &ascii_0200("2047617390010101190000000000000000001000"),
    );
    assert_eq!(e.location, Location::Field(2));
    assert_eq!(e.offset, 20);
    assert_eq!(e.kind, ErrorKind::TooLong { max: 19, found: 20 });
    // building: a value over the maximum
    let mut m = Message::new(&d("iso87-ascii"), "0200".parse().unwrap());
    let e = m.set(2, "47617390010101190000").unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLong { max: 19, found: 20 });
}

#[test]
fn wrong_fixed_length_when_building() {
    let mut m = Message::new(&d("iso87-binary"), "0200".parse().unwrap());
    let e = m.set(3, "00000").unwrap_err();
    assert_eq!(e.location, Location::Field(3));
    assert_eq!(
        e.kind,
        ErrorKind::WrongLength {
            expected: 6,
            found: 5
        }
    );
}

#[test]
fn charset_violation() {
    let e = err(
        "iso87-ascii",
        &ascii_0200("1647617390010101190000A0000000001000"),
    );
    assert_eq!(e.location, Location::Field(3));
    assert_eq!(e.offset, 42);
    assert_eq!(
        e.kind,
        ErrorKind::Charset {
            byte: b'A',
            class: "n"
        }
    );
    let mut m = Message::new(&d("iso87-binary"), "0200".parse().unwrap());
    assert!(matches!(
        m.set(39, "0!").unwrap_err().kind,
        ErrorKind::Charset {
            byte: b'!',
            class: "an"
        }
    ));
    assert!(matches!(
        m.set(28, "X00000100").unwrap_err().kind,
        ErrorKind::Charset {
            byte: b'X',
            class: "x+n"
        }
    ));
    // a bad character in a hex bitmap
    let e = err("iso87-ascii", b"0200700000000000000G");
    assert_eq!((e.location, e.offset), (Location::Bitmap(1), 19));
}

#[test]
fn bad_bcd_nibble() {
    // cup-pos 0200 with field 3 (n6 BCD) = 00 0A 00
    let e = err(
        "cup-pos",
        &[0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x0A, 0x00],
    );
    assert_eq!((e.location, e.offset), (Location::Field(3), 11));
    assert_eq!(e.kind, ErrorKind::BadNibble { nibble: 0x0A });
    // an odd-length left-justified field must end in a pad nibble 0 or F
    // field 22 n3 "051" = 05 1x; x = 0x5 is not a pad nibble
    let mut bm = [0u8; 8];
    bm[2] = 0x04; // bit 22
    let mut m = vec![0x02, 0x00];
    m.extend_from_slice(&bm);
    m.extend_from_slice(&[0x05, 0x15]);
    let e = err("cup-pos", &m);
    assert_eq!(e.kind, ErrorKind::BadNibble { nibble: 0x5 });
    m[11] = 0x1F;
    assert!(MessageView::decode(&d("cup-pos"), &m).is_ok());
}

#[test]
fn field_present_but_not_in_dialect() {
    // cup-pos has no field 5
    let e = err("cup-pos", &[0x02, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x00]);
    assert_eq!((e.location, e.offset), (Location::Field(5), 10));
    assert!(matches!(e.kind, ErrorKind::NotInDialect { .. }));
    // cup-pos has no secondary bitmap
    let e = err("cup-pos", &[0x02, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(e.location, Location::Field(1));
}

#[test]
fn trailing_bytes() {
    let e = err(
        "iso87-ascii",
        &ascii_0200("164761739001010119000000000000001000XY"),
    );
    assert_eq!((e.location, e.offset), (Location::Message, 56));
    assert_eq!(e.kind, ErrorKind::TrailingBytes { count: 2 });
}

#[test]
fn bad_mti() {
    let e = err("iso87-ascii", b"02X07000000000000000");
    assert_eq!((e.location, e.kind), (Location::Mti, ErrorKind::BadMti));
    let e = err("cup-pos", &[0x0A, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(e.kind, ErrorKind::BadMti);
    assert!("020".parse::<Mti>().is_err());
}

#[test]
fn bad_hex() {
    // iso87-ascii DE 55 holds an odd number of hex characters
    let mut bm = [b'0'; 16];
    bm[13] = b'2'; // bit 55: byte 6 bit 0x02 -> hex digit 13 = '2'
    let mut m = b"0200".to_vec();
    m.extend_from_slice(&bm);
    m.extend_from_slice(b"003ABC");
    let e = err("iso87-ascii", &m);
    assert_eq!(
        (e.location, e.kind),
        (Location::Field(55), ErrorKind::BadHex)
    );
    let mut msg = Message::new(&d("iso87-binary"), "0200".parse().unwrap());
    assert_eq!(
        msg.set(52, "0123456789ABCDE").unwrap_err().kind,
        ErrorKind::BadHex
    );
    assert_eq!(
        msg.set(52, "0123456789ABCDEG").unwrap_err().kind,
        ErrorKind::BadHex
    );
}

#[test]
fn bad_field_number() {
    let mut m = Message::new(&d("iso87-binary"), "0200".parse().unwrap());
    assert_eq!(m.set(1, "00").unwrap_err().kind, ErrorKind::BadFieldNumber);
    assert_eq!(m.set(0, "00").unwrap_err().kind, ErrorKind::BadFieldNumber);
    assert_eq!(
        m.set(200, "00").unwrap_err().kind,
        ErrorKind::BadFieldNumber
    );
}

#[test]
fn bad_typed_value() {
    let bytes = ascii_0200("164761739001010119000000000000001000");
    let dd = d("iso87-ascii");
    let v = MessageView::decode(&dd, &bytes).unwrap();
    assert_eq!(v.field(4).unwrap().amount(2).unwrap().to_string(), "10.00");
    let e = v.field(3).unwrap().time_hhmmss().unwrap();
    assert_eq!(e.to_string(), "00:00:00");
    let e = v.field(2).unwrap().date_mmdd(2026).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::BadValue { .. }));
    assert_eq!(e.location, Location::Field(2));
}

#[test]
fn bad_tlv() {
    let e = tlv::parse(&[0x9F, 0x26, 0x08, 0x01])
        .next()
        .unwrap()
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Tlv { .. }));
    assert_eq!(e.location, Location::Field(55));
}

#[test]
fn bad_dialect_and_json() {
    let e =
        Dialect::from_json(r#"{"name":"x","fields":{"2":{"class":"n","length":"LL","max":120}}}"#)
            .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::BadDialect { .. }));
    assert!(Dialect::from_json("{").is_err());
    assert!(json::from_json(&d("iso87-ascii"), r#"{"mti":"0200","fields":{"2":5}}"#).is_err());
    assert!(json::from_json(&d("iso87-ascii"), r#"{"fields":{}}"#).is_err());
}

#[test]
fn dialect_from_toml_describes_a_host() {
    let toml = r#"
name = "myhost"
mti = "bcd"
bitmap = "binary"
secondary_bitmap = false
echo_fields = [11, 41]

[fields.11]
name = "STAN"
class = "n"
length = "fixed"
max = 6
encoding = "bcd"

[fields.41]
class = "ans"
length = "fixed"
max = 8

[fields.48]
class = "ans"
length = "LLL"
max = 300
length_encoding = "binary"
encoding = "ebcdic"
"#;
    let dd = Dialect::from_toml(toml).unwrap();
    let mut m = Message::new(&dd, "0800".parse().unwrap());
    m.set(11, "000042")
        .unwrap()
        .set(41, "TERM0001")
        .unwrap()
        .set(48, "HELLO")
        .unwrap();
    let b = m.to_bytes().unwrap();
    assert_eq!(&b[..2], &[0x08, 0x00]);
    assert_eq!(&b[10..13], &[0x00, 0x00, 0x42]);
    assert_eq!(&b[21..23], &[0x00, 0x05]);
    assert_eq!(&b[23..], &[0xC8, 0xC5, 0xD3, 0xD3, 0xD6]);
    let v = MessageView::decode(&dd, &b).unwrap();
    assert_eq!(v.field(48).unwrap().text(), "HELLO");
    let r = Message::response_to(&Message::decode(&dd, b).unwrap()).unwrap();
    assert_eq!(r.mti().as_str(), "0810");
    assert_eq!(r.get(11).as_deref(), Some("000042"));
    assert!(!r.has(48));
}

#[test]
fn message_over_64_kib() {
    let mut m = ascii_0200("164761739001010119000000000000001000");
    m.resize(MessageView::MAX_LEN + 1, b'0');
    let e = err("iso87-ascii", &m);
    assert_eq!(e.location, Location::Message);
    assert_eq!(e.offset, 0);
    assert_eq!(
        e.kind,
        ErrorKind::TooLong {
            max: 65_535,
            found: 65_536
        }
    );
    // At the limit, the usual error: the bytes after the last field.
    m.truncate(MessageView::MAX_LEN);
    assert!(matches!(
        err("iso87-ascii", &m).kind,
        ErrorKind::TrailingBytes { .. }
    ));
}
