//! Typed access, subfields, responses, tertiary bitmaps and masking.

use bytes::Bytes;
use chrono::NaiveDate;
use isoswitch_codec::{
    json, tlv, ContentClass, Dialect, DialectDef, ErrorKind, FieldSpec, LengthKind, Message,
    MessageView,
};
use rust_decimal::Decimal;
use std::str::FromStr;

fn d(name: &str) -> Dialect {
    Dialect::builtin(name).unwrap()
}

fn purchase(dialect: &Dialect) -> Message {
    let text = include_str!("../../../tests/vectors/samples/purchase-0200.json");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let mut m = Message::new(dialect, "0200".parse().unwrap());
    for (k, val) in v["fields"].as_object().unwrap() {
        let _ = m.set(k.parse().unwrap(), val.as_str().unwrap());
    }
    m
}

#[test]
fn amounts_dates_and_times() {
    let dd = d("iso87-binary");
    let mut m = purchase(&dd);
    let bytes = m.to_bytes().unwrap();
    let v = MessageView::decode(&dd, &bytes).unwrap();
    assert_eq!(v.amount(4).unwrap(), Decimal::from_str("10.00").unwrap());
    let dt = v.field(7).unwrap().datetime_mmddhhmmss(2026).unwrap();
    assert_eq!(dt.to_string(), "2026-11-25 10:30:00");
    let near = v
        .field(13)
        .unwrap()
        .date_mmdd_near(NaiveDate::from_ymd_opt(2027, 1, 2).unwrap())
        .unwrap();
    assert_eq!(near, NaiveDate::from_ymd_opt(2026, 11, 25).unwrap());
    assert_eq!(
        v.field(12).unwrap().time_hhmmss().unwrap().to_string(),
        "10:30:00"
    );
    assert_eq!(
        v.field(14).unwrap().expiry_yymm().unwrap(),
        NaiveDate::from_ymd_opt(2028, 12, 31).unwrap()
    );
    assert_eq!(v.field(11).unwrap().as_u64().unwrap(), 123);
    // JPY has no minor units, BHD three
    m.set(49, "392").unwrap();
    m.set_amount(4, Decimal::from(1500), 392).unwrap();
    assert_eq!(m.get(4).as_deref(), Some("000000001500"));
    assert_eq!(m.amount(4).unwrap(), Decimal::from(1500));
    m.set(49, "048").unwrap();
    m.set_amount(4, Decimal::from_str("1.234").unwrap(), 48)
        .unwrap();
    assert_eq!(m.get(4).as_deref(), Some("000000001234"));
    assert!(m
        .set_amount(4, Decimal::from_str("1.2345").unwrap(), 48)
        .is_err());
    assert!(m
        .set_amount(4, Decimal::from_str("-1").unwrap(), 840)
        .is_err());
    // signed x+n amounts
    m.set(28, "D00000150").unwrap();
    assert_eq!(
        m.field(28).unwrap().amount(2).unwrap(),
        Decimal::from_str("-1.50").unwrap()
    );
}

#[test]
fn typed_setters_write_iso_formats() {
    let dd = d("iso87-ascii");
    let mut m = Message::new(&dd, "0800".parse().unwrap());
    let t = NaiveDate::from_ymd_opt(2026, 3, 4)
        .unwrap()
        .and_hms_opt(5, 6, 7)
        .unwrap();
    m.set_datetime_mmddhhmmss(7, t).unwrap();
    m.set_time_hhmmss(12, t.time()).unwrap();
    m.set_date_mmdd(13, t.date()).unwrap();
    m.set_expiry_yymm(14, t.date()).unwrap();
    m.set_number(11, 42).unwrap();
    assert_eq!(m.get(7).as_deref(), Some("0304050607"));
    assert_eq!(m.get(12).as_deref(), Some("050607"));
    assert_eq!(m.get(13).as_deref(), Some("0304"));
    assert_eq!(m.get(14).as_deref(), Some("2603"));
    assert_eq!(m.get(11).as_deref(), Some("000042"));
}

#[test]
fn cup_pos_field_60_subfields_and_bcd_layouts() {
    let dd = d("cup-pos");
    let mut m = Message::new(&dd, "0800".parse().unwrap());
    m.set(11, "000001").unwrap();
    m.set(22, "021").unwrap();
    m.set(60, "00000123003").unwrap();
    m.set(35, "4761739001010119=28122011758928889").unwrap();
    let b = m.to_bytes().unwrap();
    // MTI 08 00, bitmap, then 11 = 00 00 01, 22 = 02 10 (left-justified)
    assert_eq!(&b[..2], &[0x08, 0x00]);
    assert_eq!(&b[10..13], &[0x00, 0x00, 0x01]);
    assert_eq!(&b[13..15], &[0x02, 0x10]);
    let v = MessageView::decode(&dd, &b).unwrap();
    let f60 = v.field(60).unwrap();
    assert_eq!(f60.units(), 11);
    assert_eq!(f60.raw(), &[0x00, 0x00, 0x01, 0x23, 0x00, 0x30]);
    assert_eq!(f60.subfield(0).unwrap(), "00");
    assert_eq!(f60.subfield(1).unwrap(), "000123");
    assert_eq!(f60.subfield(2).unwrap(), "003");
    assert!(f60.subfield(3).is_none());
    // track 2: '=' is nibble D
    assert_eq!(
        v.field(35).unwrap().text(),
        "4761739001010119D28122011758928889"
    );
    assert_eq!(v.field(35).unwrap().raw()[8], 0xD2);
}

#[test]
fn response_echoes_fields_without_reencoding() {
    let dd = d("iso87-binary");
    let req = purchase(&dd);
    let bytes = req.to_bytes().unwrap();
    let req = Message::decode(&dd, bytes.clone()).unwrap();
    let mut rsp = Message::response_to(&req).unwrap();
    rsp.set(39, "00").unwrap();
    assert_eq!(rsp.mti().as_str(), "0210");
    for n in [2, 3, 4, 7, 11, 12, 13, 37, 41, 42, 49] {
        assert_eq!(rsp.get(n), req.get(n), "field {n}");
    }
    assert!(!rsp.has(35) && !rsp.has(52) && !rsp.has(55) && !rsp.has(64));
    assert_eq!(
        rsp.field(41).unwrap().raw().as_ptr(),
        req.field(41).unwrap().raw().as_ptr()
    );
    assert!(Message::response_to(&rsp).is_err());
}

#[test]
fn tertiary_bitmap_in_a_custom_dialect_and_empty_in_iso87() {
    let mut def: DialectDef = d("iso87-binary").def().clone();
    def.name = "with-129".into();
    def.fields.insert(
        "130".into(),
        FieldSpec::new("private", ContentClass::Ans, LengthKind::LL, 20),
    );
    let dd = Dialect::from_def(def).unwrap();
    let mut m = Message::new(&dd, "0200".parse().unwrap());
    m.set(3, "000000").unwrap().set(130, "hello").unwrap();
    let b = m.to_bytes().unwrap();
    // MTI + three bitmaps (bit 1 and 65 set) + DE 3 + DE 130
    assert_eq!(b.len(), 4 + 24 + 6 + 7);
    assert_eq!(b[4] & 0x80, 0x80);
    assert_eq!(b[12] & 0x80, 0x80);
    let v = MessageView::decode(&dd, &b).unwrap();
    assert_eq!(v.field(130).unwrap().text(), "hello");
    assert!(!v.has(65));
    // iso87 (as pyiso8583): bit 65 announces a tertiary bitmap; fields there are unknown
    let iso = d("iso87-binary");
    let mut raw = b"0200".to_vec();
    raw.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]);
    raw.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]);
    raw.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(MessageView::decode(&iso, &raw).is_ok());
    raw[20] = 0x40; // field 130 in the tertiary bitmap
    let e = MessageView::decode(&iso, &raw).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::NotInDialect { .. }));
}

#[test]
fn masking_in_debug_display_and_json() {
    let dd = d("iso87-binary");
    let m = purchase(&dd);
    let dbg = format!("{m:?}");
    let disp = format!("{m}");
    let js = json::to_json(m.mti(), m.fields(), false);
    for out in [&dbg, &disp, &js] {
        assert!(!out.contains("4761739001010119"), "{out}");
        assert!(!out.contains("0123456789ABCDEF"), "{out}");
        // DE 55 is masked per tag (5A, 57 and the like); its cryptogram 9F26 is shown.
        assert!(out.contains("AABBCCDDEEFF0011"), "{out}");
        assert!(out.contains("476173******0119"), "{out}");
    }
    let revealed = json::to_json(m.mti(), m.fields(), true);
    assert!(revealed.contains("4761739001010119"));
}

#[test]
fn de55_tlv_through_the_field() {
    let dd = d("iso87-binary");
    let b: Bytes = purchase(&dd).to_bytes().unwrap();
    let v = MessageView::decode(&dd, &b).unwrap();
    let tags: Vec<u32> = v
        .field(55)
        .unwrap()
        .tlv()
        .map(|t| t.unwrap().tag.0)
        .collect();
    assert_eq!(tags, vec![0x9F26, 0x9F27, 0x9F10, 0x9F37]);
    // hex-text dialect: decode the bytes first
    let da = d("iso87-ascii");
    let b = purchase(&da).to_bytes().unwrap();
    let v = MessageView::decode(&da, &b).unwrap();
    let bytes = v.field(55).unwrap().bytes();
    assert_eq!(tlv::parse(&bytes).count(), 4);
}
