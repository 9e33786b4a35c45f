//! The built-in dialects.
//!
//! | name | for | MTI | bitmap | text | binary fields | lengths |
//! |---|---|---|---|---|---|---|
//! | `iso87-ascii` | ISO 8583:1987, all ASCII (pyiso8583 `default_ascii`) | ASCII | hex text | ASCII | hex text | ASCII digits |
//! | `iso87-binary` | ISO 8583:1987 (pyiso8583 `default`) | ASCII | binary | ASCII | raw | ASCII digits |
//! | `iso87-ebcdic` | ISO 8583:1987 on mainframe hosts | EBCDIC | binary | EBCDIC cp037 | raw | EBCDIC digits |
//! | `iso93-ascii` | ISO 8583:1993 | ASCII | hex text | ASCII | hex text | ASCII digits |
//! | `cup-pos` | China UnionPay POS terminals | BCD | binary, primary only | ASCII | raw | BCD |
//! | `iso87-composite` | test dialect with composite DE 48 (tagged), 62 (positional), 127 (bitmapped) | ASCII | hex text | ASCII | — | ASCII digits |
//!
//! In the 1987 and 1993 dialects bit 65 announces a tertiary bitmap (as in pyiso8583 and
//! ISO 8583:1993); no fields 129–192 are defined, so a message using them is rejected with
//! a typed error. Each table below lists every field: number, name, class, length kind and length.
//! In `iso87-ascii` and `iso93-ascii` a binary field of N bytes is 2N hex characters and its
//! length counts characters (DE 55: LLL up to 510 characters), exactly as pyiso8583 does.

/// `iso87-ascii`, field by field (generated from the table; see `tests/dialect_docs.rs`).
pub mod iso87_ascii {
    #![doc = include_str!("../../docs/iso87-ascii.md")]
}
/// `iso87-binary`, field by field.
pub mod iso87_binary {
    #![doc = include_str!("../../docs/iso87-binary.md")]
}
/// `iso87-ebcdic`, field by field.
pub mod iso87_ebcdic {
    #![doc = include_str!("../../docs/iso87-ebcdic.md")]
}
/// `iso93-ascii`, field by field.
pub mod iso93_ascii {
    #![doc = include_str!("../../docs/iso93-ascii.md")]
}
/// `cup-pos`, field by field.
pub mod cup_pos {
    #![doc = include_str!("../../docs/cup-pos.md")]
}
/// `iso87-composite`, field by field (subfields indented).
pub mod iso87_composite {
    #![doc = include_str!("../../docs/iso87-composite.md")]
}

use crate::bitmap::BitmapEncoding;
use crate::dialect::{Dialect, DialectDef, MacLayout};
use crate::mti::MtiEncoding;
use crate::spec::{
    BitmapFormat, Composite,
    ContentClass::{self, *},
    ContentEncoding, FieldSpec, Justify, LengthEncoding,
    LengthKind::{self, *},
    LengthUnit, PositionalSubfield, PrefixFormat, Sensitivity, Subfields, TagEncoding, TagFormat,
    UnknownTags,
};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Names of the built-in dialects.
pub const NAMES: &[&str] = &[
    "iso87-ascii",
    "iso87-binary",
    "iso87-ebcdic",
    "iso93-ascii",
    "cup-pos",
    "iso87-composite",
];

type Row = (u8, &'static str, ContentClass, LengthKind, u16);

/// ISO 8583:1987 field table (lengths as pyiso8583 4.0.1 `default`).
pub const ISO87: &[Row] = &[
    (2, "Primary account number", N, LL, 19),
    (3, "Processing code", N, Fixed, 6),
    (4, "Amount, transaction", N, Fixed, 12),
    (5, "Amount, settlement", N, Fixed, 12),
    (6, "Amount, cardholder billing", N, Fixed, 12),
    (7, "Transmission date and time", N, Fixed, 10),
    (8, "Amount, cardholder billing fee", N, Fixed, 8),
    (9, "Conversion rate, settlement", N, Fixed, 8),
    (10, "Conversion rate, cardholder billing", N, Fixed, 8),
    (11, "System trace audit number", N, Fixed, 6),
    (12, "Time, local transaction", N, Fixed, 6),
    (13, "Date, local transaction", N, Fixed, 4),
    (14, "Date, expiration", N, Fixed, 4),
    (15, "Date, settlement", N, Fixed, 4),
    (16, "Date, conversion", N, Fixed, 4),
    (17, "Date, capture", N, Fixed, 4),
    (18, "Merchant type", N, Fixed, 4),
    (19, "Acquiring institution country code", N, Fixed, 3),
    (20, "PAN extended, country code", N, Fixed, 3),
    (21, "Forwarding institution country code", N, Fixed, 3),
    (22, "Point of service entry mode", N, Fixed, 3),
    (23, "Card sequence number", N, Fixed, 3),
    (24, "Network international identifier", N, Fixed, 3),
    (25, "Point of service condition code", N, Fixed, 2),
    (26, "Point of service PIN capture code", N, Fixed, 2),
    (
        27,
        "Authorizing identification response length",
        N,
        Fixed,
        1,
    ),
    (28, "Amount, transaction fee", XN, Fixed, 9),
    (29, "Amount, settlement fee", XN, Fixed, 9),
    (30, "Amount, transaction processing fee", XN, Fixed, 9),
    (31, "Amount, settlement processing fee", XN, Fixed, 9),
    (32, "Acquiring institution identification code", N, LL, 11),
    (33, "Forwarding institution identification code", N, LL, 11),
    (34, "Primary account number, extended", Ns, LL, 28),
    (35, "Track 2 data", Z, LL, 37),
    (36, "Track 3 data", Z, LLL, 104),
    (37, "Retrieval reference number", An, Fixed, 12),
    (38, "Authorization identification response", An, Fixed, 6),
    (39, "Response code", An, Fixed, 2),
    (40, "Service restriction code", An, Fixed, 3),
    (41, "Card acceptor terminal identification", Ans, Fixed, 8),
    (42, "Card acceptor identification code", Ans, Fixed, 15),
    (43, "Card acceptor name/location", Ans, Fixed, 40),
    (44, "Additional response data", Ans, LL, 25),
    (45, "Track 1 data", Ans, LL, 76),
    (46, "Additional data, ISO", Ans, LLL, 999),
    (47, "Additional data, national", Ans, LLL, 999),
    (48, "Additional data, private", Ans, LLL, 999),
    (49, "Currency code, transaction", An, Fixed, 3),
    (50, "Currency code, settlement", An, Fixed, 3),
    (51, "Currency code, cardholder billing", An, Fixed, 3),
    (52, "Personal identification number data", B, Fixed, 8),
    (53, "Security related control information", N, Fixed, 16),
    (54, "Additional amounts", Ans, LLL, 240),
    (55, "ICC data (EMV)", B, LLL, 255),
    (56, "Reserved ISO", Ans, LLL, 999),
    (57, "Reserved national", Ans, LLL, 999),
    (58, "Reserved national", Ans, LLL, 999),
    (59, "Reserved national", Ans, LLL, 999),
    (60, "Reserved national", Ans, LLL, 999),
    (61, "Reserved private", Ans, LLL, 999),
    (62, "Reserved private", Ans, LLL, 999),
    (63, "Reserved private", Ans, LLL, 999),
    (64, "Message authentication code", B, Fixed, 8),
    (66, "Settlement code", N, Fixed, 1),
    (67, "Extended payment code", N, Fixed, 2),
    (68, "Receiving institution country code", N, Fixed, 3),
    (69, "Settlement institution country code", N, Fixed, 3),
    (70, "Network management information code", N, Fixed, 3),
    (71, "Message number", N, Fixed, 4),
    (72, "Message number, last", N, Fixed, 4),
    (73, "Date, action", N, Fixed, 6),
    (74, "Credits, number", N, Fixed, 10),
    (75, "Credits, reversal number", N, Fixed, 10),
    (76, "Debits, number", N, Fixed, 10),
    (77, "Debits, reversal number", N, Fixed, 10),
    (78, "Transfers, number", N, Fixed, 10),
    (79, "Transfers, reversal number", N, Fixed, 10),
    (80, "Inquiries, number", N, Fixed, 10),
    (81, "Authorizations, number", N, Fixed, 10),
    (82, "Credits, processing fee amount", N, Fixed, 12),
    (83, "Credits, transaction fee amount", N, Fixed, 12),
    (84, "Debits, processing fee amount", N, Fixed, 12),
    (85, "Debits, transaction fee amount", N, Fixed, 12),
    (86, "Credits, amount", N, Fixed, 16),
    (87, "Credits, reversal amount", N, Fixed, 16),
    (88, "Debits, amount", N, Fixed, 16),
    (89, "Debits, reversal amount", N, Fixed, 16),
    (90, "Original data elements", N, Fixed, 42),
    (91, "File update code", An, Fixed, 1),
    (92, "File security code", An, Fixed, 2),
    (93, "Response indicator", An, Fixed, 5),
    (94, "Service indicator", An, Fixed, 7),
    (95, "Replacement amounts", An, Fixed, 42),
    (96, "Message security code", B, Fixed, 8),
    (97, "Amount, net settlement", XN, Fixed, 17),
    (98, "Payee", Ans, Fixed, 25),
    (99, "Settlement institution identification code", N, LL, 11),
    (100, "Receiving institution identification code", N, LL, 11),
    (101, "File name", Ans, LL, 17),
    (102, "Account identification 1", Ans, LL, 28),
    (103, "Account identification 2", Ans, LL, 28),
    (104, "Transaction description", Ans, LLL, 100),
    (105, "Reserved ISO", Ans, LLL, 999),
    (106, "Reserved ISO", Ans, LLL, 999),
    (107, "Reserved ISO", Ans, LLL, 999),
    (108, "Reserved ISO", Ans, LLL, 999),
    (109, "Reserved ISO", Ans, LLL, 999),
    (110, "Reserved ISO", Ans, LLL, 999),
    (111, "Reserved ISO", Ans, LLL, 999),
    (112, "Reserved national", Ans, LLL, 999),
    (113, "Reserved national", Ans, LLL, 999),
    (114, "Reserved national", Ans, LLL, 999),
    (115, "Reserved national", Ans, LLL, 999),
    (116, "Reserved national", Ans, LLL, 999),
    (117, "Reserved national", Ans, LLL, 999),
    (118, "Reserved national", Ans, LLL, 999),
    (119, "Reserved national", Ans, LLL, 999),
    (120, "Reserved private", Ans, LLL, 999),
    (121, "Reserved private", Ans, LLL, 999),
    (122, "Reserved private", Ans, LLL, 999),
    (123, "Reserved private", Ans, LLL, 999),
    (124, "Reserved private", Ans, LLL, 999),
    (125, "Reserved private", Ans, LLL, 999),
    (126, "Reserved private", Ans, LLL, 999),
    (127, "Reserved private", Ans, LLL, 999),
    (128, "Message authentication code", B, Fixed, 8),
];

/// ISO 8583:1993 field table.
pub const ISO93: &[Row] = &[
    (2, "Primary account number", N, LL, 19),
    (3, "Processing code", N, Fixed, 6),
    (4, "Amount, transaction", N, Fixed, 12),
    (5, "Amount, reconciliation", N, Fixed, 12),
    (6, "Amount, cardholder billing", N, Fixed, 12),
    (7, "Date and time, transmission", N, Fixed, 10),
    (8, "Amount, cardholder billing fee", N, Fixed, 8),
    (9, "Conversion rate, reconciliation", N, Fixed, 8),
    (10, "Conversion rate, cardholder billing", N, Fixed, 8),
    (11, "Systems trace audit number", N, Fixed, 6),
    (
        12,
        "Date and time, local transaction (YYMMDDhhmmss)",
        N,
        Fixed,
        12,
    ),
    (13, "Date, effective (YYMM)", N, Fixed, 4),
    (14, "Date, expiration (YYMM)", N, Fixed, 4),
    (15, "Date, settlement (YYMMDD)", N, Fixed, 6),
    (16, "Date, conversion (MMDD)", N, Fixed, 4),
    (17, "Date, capture (MMDD)", N, Fixed, 4),
    (18, "Merchant type", N, Fixed, 4),
    (19, "Country code, acquiring institution", N, Fixed, 3),
    (20, "Country code, primary account number", N, Fixed, 3),
    (21, "Country code, forwarding institution", N, Fixed, 3),
    (22, "Point of service data code", An, Fixed, 12),
    (23, "Card sequence number", N, Fixed, 3),
    (24, "Function code", N, Fixed, 3),
    (25, "Message reason code", N, Fixed, 4),
    (26, "Card acceptor business code", N, Fixed, 4),
    (27, "Approval code length", N, Fixed, 1),
    (28, "Date, reconciliation (YYMMDD)", N, Fixed, 6),
    (29, "Reconciliation indicator", N, Fixed, 3),
    (30, "Amounts, original", N, Fixed, 24),
    (31, "Acquirer reference data", Ans, LL, 99),
    (32, "Acquiring institution identification code", N, LL, 11),
    (33, "Forwarding institution identification code", N, LL, 11),
    (34, "Primary account number, extended", Ns, LL, 28),
    (35, "Track 2 data", Z, LL, 37),
    (36, "Track 3 data", Z, LLL, 104),
    (37, "Retrieval reference number", An, Fixed, 12),
    (38, "Approval code", An, Fixed, 6),
    (39, "Action code", N, Fixed, 3),
    (40, "Service code", N, Fixed, 3),
    (41, "Card acceptor terminal identification", Ans, Fixed, 8),
    (42, "Card acceptor identification code", Ans, Fixed, 15),
    (43, "Card acceptor name/location", Ans, LL, 99),
    (44, "Additional response data", Ans, LL, 99),
    (45, "Track 1 data", Ans, LL, 76),
    (46, "Amounts, fees", Ans, LLL, 204),
    (47, "Additional data, national", Ans, LLL, 999),
    (48, "Additional data, private", Ans, LLL, 999),
    (49, "Currency code, transaction", An, Fixed, 3),
    (50, "Currency code, reconciliation", An, Fixed, 3),
    (51, "Currency code, cardholder billing", An, Fixed, 3),
    (52, "Personal identification number data", B, Fixed, 8),
    (53, "Security related control information", B, LL, 48),
    (54, "Amounts, additional", Ans, LLL, 120),
    (
        55,
        "Integrated circuit card system related data",
        B,
        LLL,
        255,
    ),
    (56, "Original data elements", N, LL, 35),
    (57, "Authorization life cycle code", N, Fixed, 3),
    (
        58,
        "Authorizing agent institution identification code",
        N,
        LL,
        11,
    ),
    (59, "Transport data", Ans, LLL, 999),
    (60, "Reserved national", Ans, LLL, 999),
    (61, "Reserved national", Ans, LLL, 999),
    (62, "Reserved private", Ans, LLL, 999),
    (63, "Reserved private", Ans, LLL, 999),
    (64, "Message authentication code", B, Fixed, 8),
    (66, "Amounts, original fees", Ans, LLL, 204),
    (67, "Extended payment data", N, Fixed, 2),
    (68, "Country code, receiving institution", N, Fixed, 3),
    (69, "Country code, settlement institution", N, Fixed, 3),
    (
        70,
        "Country code, authorizing agent institution",
        N,
        Fixed,
        3,
    ),
    (71, "Message number", N, Fixed, 8),
    (72, "Data record", Ans, LLL, 999),
    (73, "Date, action (YYMMDD)", N, Fixed, 6),
    (74, "Credits, number", N, Fixed, 10),
    (75, "Credits, reversal number", N, Fixed, 10),
    (76, "Debits, number", N, Fixed, 10),
    (77, "Debits, reversal number", N, Fixed, 10),
    (78, "Transfer, number", N, Fixed, 10),
    (79, "Transfer, reversal number", N, Fixed, 10),
    (80, "Inquiries, number", N, Fixed, 10),
    (81, "Authorizations, number", N, Fixed, 10),
    (82, "Inquiries, reversal number", N, Fixed, 10),
    (83, "Payments, number", N, Fixed, 10),
    (84, "Payments, reversal number", N, Fixed, 10),
    (85, "Fee collections, number", N, Fixed, 10),
    (86, "Credits, amount", N, Fixed, 16),
    (87, "Credits, reversal amount", N, Fixed, 16),
    (88, "Debits, amount", N, Fixed, 16),
    (89, "Debits, reversal amount", N, Fixed, 16),
    (90, "Authorizations, reversal number", N, Fixed, 10),
    (
        91,
        "Country code, transaction destination institution",
        N,
        Fixed,
        3,
    ),
    (
        92,
        "Country code, transaction originator institution",
        N,
        Fixed,
        3,
    ),
    (
        93,
        "Transaction destination institution identification code",
        N,
        LL,
        11,
    ),
    (
        94,
        "Transaction originator institution identification code",
        N,
        LL,
        11,
    ),
    (95, "Card issuer reference data", Ans, LL, 99),
    (96, "Key management data", B, LLL, 999),
    (97, "Amount, net reconciliation", XN, Fixed, 17),
    (98, "Payee", Ans, Fixed, 25),
    (99, "Settlement institution identification code", An, LL, 11),
    (100, "Receiving institution identification code", N, LL, 11),
    (101, "File name", Ans, LL, 17),
    (102, "Account identification 1", Ans, LL, 28),
    (103, "Account identification 2", Ans, LL, 28),
    (104, "Transaction description", Ans, LLL, 100),
    (105, "Credits, chargeback amount", N, Fixed, 16),
    (106, "Debits, chargeback amount", N, Fixed, 16),
    (107, "Credits, chargeback number", N, Fixed, 10),
    (108, "Debits, chargeback number", N, Fixed, 10),
    (109, "Credits, fee amounts", Ans, LL, 84),
    (110, "Debits, fee amounts", Ans, LL, 84),
    (111, "Reserved ISO", Ans, LLL, 999),
    (112, "Reserved ISO", Ans, LLL, 999),
    (113, "Reserved ISO", Ans, LLL, 999),
    (114, "Reserved ISO", Ans, LLL, 999),
    (115, "Reserved ISO", Ans, LLL, 999),
    (116, "Reserved national", Ans, LLL, 999),
    (117, "Reserved national", Ans, LLL, 999),
    (118, "Reserved national", Ans, LLL, 999),
    (119, "Reserved national", Ans, LLL, 999),
    (120, "Reserved national", Ans, LLL, 999),
    (121, "Reserved national", Ans, LLL, 999),
    (122, "Reserved national", Ans, LLL, 999),
    (123, "Reserved private", Ans, LLL, 999),
    (124, "Reserved private", Ans, LLL, 999),
    (125, "Reserved private", Ans, LLL, 999),
    (126, "Reserved private", Ans, LLL, 999),
    (127, "Reserved private", Ans, LLL, 999),
    (128, "Message authentication code", B, Fixed, 8),
];

/// `cup-pos` field table (China UnionPay POS; see the module docs for encodings).
pub const CUP_POS: &[Row] = &[
    (2, "Primary account number", N, LL, 19),
    (3, "Processing code", N, Fixed, 6),
    (4, "Amount, transaction", N, Fixed, 12),
    (11, "System trace audit number", N, Fixed, 6),
    (12, "Time, local transaction (hhmmss)", N, Fixed, 6),
    (13, "Date, local transaction (MMDD)", N, Fixed, 4),
    (14, "Date, expiration (YYMM)", N, Fixed, 4),
    (15, "Date, settlement (MMDD)", N, Fixed, 4),
    (22, "Point of service entry mode", N, Fixed, 3),
    (23, "Card sequence number", N, Fixed, 3),
    (25, "Point of service condition code", N, Fixed, 2),
    (26, "Point of service PIN capture code", N, Fixed, 2),
    (32, "Acquiring institution identification code", N, LL, 11),
    (35, "Track 2 data", Z, LL, 37),
    (36, "Track 3 data", Z, LLL, 104),
    (37, "Retrieval reference number", An, Fixed, 12),
    (38, "Authorization identification response", An, Fixed, 6),
    (39, "Response code", An, Fixed, 2),
    (41, "Card acceptor terminal identification", Ans, Fixed, 8),
    (42, "Card acceptor identification code", Ans, Fixed, 15),
    (44, "Additional response data", An, LL, 25),
    (
        48,
        "Additional data, private (settlement totals, batch upload)",
        N,
        LLL,
        322,
    ),
    (49, "Currency code, transaction", An, Fixed, 3),
    (52, "PIN data", B, Fixed, 8),
    (53, "Security related control information", N, Fixed, 16),
    (55, "ICC data (EMV)", B, LLL, 255),
    (
        60,
        "Reserved private (type, batch, network management code)",
        N,
        LLL,
        17,
    ),
    (61, "Original message (batch, STAN, date)", N, LLL, 29),
    (62, "Reserved private (working keys)", B, LLL, 512),
    (63, "Reserved private (operator)", Ans, LLL, 163),
    (64, "Message authentication code", B, Fixed, 8),
];

/// How a dialect writes things.
struct Style {
    text: ContentEncoding,
    binary: ContentEncoding,
    lengths: LengthEncoding,
    numeric: ContentEncoding,
}

fn spec_for(row: &Row, style: &Style) -> FieldSpec {
    let (n, name, class, len, max) = *row;
    let mut s = FieldSpec::new(name, class, len, max as u32).length_encoding(style.lengths);
    s.encoding = match class {
        B => style.binary,
        N | Z if style.numeric == ContentEncoding::Bcd => ContentEncoding::Bcd,
        _ => style.text,
    };
    if class == B && style.binary == ContentEncoding::Hex {
        // N bytes as 2N hex characters; the length counts characters, unless twice the
        // maximum does not fit the prefix (1993 DE 96, b..999): then it counts bytes.
        let doubled = FieldSpec {
            max: max as u32 * 2,
            unit: Some(LengthUnit::Characters),
            ..s.clone()
        };
        s = if doubled.is_fixed() || (doubled.max as usize) <= doubled.prefix_capacity() {
            doubled
        } else {
            FieldSpec {
                unit: Some(LengthUnit::Bytes),
                ..s
            }
        };
    }
    s.sensitive = match n {
        2 => Sensitivity::Pan,
        35 | 36 | 45 => Sensitivity::Track,
        52 => Sensitivity::Secret,
        // EMV data: tags 5A and 57 (PAN, track 2 equivalent) masked inside the TLV.
        55 => Sensitivity::Emv,
        _ => Sensitivity::None,
    };
    if n == 55 {
        s.subfields = Some(Subfields::Tlv);
    }
    s
}

fn table(rows: &[Row], style: &Style) -> BTreeMap<String, FieldSpec> {
    rows.iter()
        .map(|r| (r.0.to_string(), spec_for(r, style)))
        .collect()
}

const ISO87_ECHO: &[u8] = &[
    2, 3, 4, 7, 11, 12, 13, 18, 19, 22, 23, 25, 32, 33, 37, 41, 42, 49, 70, 90, 95, 100, 102, 103,
];
const ISO93_ECHO: &[u8] = &[2, 3, 4, 7, 11, 12, 22, 24, 32, 33, 37, 41, 42, 49, 56, 100];
const CUP_ECHO: &[u8] = &[2, 3, 4, 11, 14, 22, 23, 25, 41, 42, 49, 60];

/// The `iso87-ascii` description.
pub fn iso87_ascii_def() -> DialectDef {
    DialectDef {
        name: "iso87-ascii".into(),
        description: "ISO 8583:1987, all ASCII: hex-text bitmaps and binary fields \
                      (byte-identical to pyiso8583 default_ascii)"
            .into(),
        mti: MtiEncoding::Ascii,
        bitmap: BitmapEncoding::Hex,
        secondary_bitmap: true,
        tertiary_bitmap: true,
        echo_fields: ISO87_ECHO.to_vec(),
        mac: MacLayout::default(),
        // pyiso8583 takes any four digits; so do these dialects.
        mti_versions: Vec::new(),
        fields: table(
            ISO87,
            &Style {
                text: ContentEncoding::Ascii,
                binary: ContentEncoding::Hex,
                lengths: LengthEncoding::Ascii,
                numeric: ContentEncoding::Ascii,
            },
        ),
    }
}

/// The `iso87-binary` description.
pub fn iso87_binary_def() -> DialectDef {
    DialectDef {
        name: "iso87-binary".into(),
        description: "ISO 8583:1987 with binary bitmaps and binary fields, ASCII numerics \
                      and lengths (byte-identical to pyiso8583 default)"
            .into(),
        bitmap: BitmapEncoding::Binary,
        fields: table(
            ISO87,
            &Style {
                text: ContentEncoding::Ascii,
                binary: ContentEncoding::Binary,
                lengths: LengthEncoding::Ascii,
                numeric: ContentEncoding::Ascii,
            },
        ),
        ..iso87_ascii_def()
    }
}

/// The `iso87-ebcdic` description.
pub fn iso87_ebcdic_def() -> DialectDef {
    DialectDef {
        name: "iso87-ebcdic".into(),
        description: "ISO 8583:1987 for mainframe hosts: EBCDIC (cp037) MTI, text and length \
                      digits, binary bitmaps and binary fields"
            .into(),
        mti: MtiEncoding::Ebcdic,
        bitmap: BitmapEncoding::Binary,
        fields: table(
            ISO87,
            &Style {
                text: ContentEncoding::Ebcdic,
                binary: ContentEncoding::Binary,
                lengths: LengthEncoding::Ebcdic,
                numeric: ContentEncoding::Ebcdic,
            },
        ),
        ..iso87_ascii_def()
    }
}

/// The `iso93-ascii` description.
pub fn iso93_ascii_def() -> DialectDef {
    DialectDef {
        name: "iso93-ascii".into(),
        description: "ISO 8583:1993, all ASCII (hex-text bitmaps and binary fields)".into(),
        mti: MtiEncoding::Ascii,
        bitmap: BitmapEncoding::Hex,
        secondary_bitmap: true,
        tertiary_bitmap: true,
        echo_fields: ISO93_ECHO.to_vec(),
        mac: MacLayout::default(),
        mti_versions: Vec::new(),
        fields: table(
            ISO93,
            &Style {
                text: ContentEncoding::Ascii,
                binary: ContentEncoding::Hex,
                lengths: LengthEncoding::Ascii,
                numeric: ContentEncoding::Ascii,
            },
        ),
    }
}

/// The `cup-pos` description.
pub fn cup_pos_def() -> DialectDef {
    let mut fields = table(
        CUP_POS,
        &Style {
            text: ContentEncoding::Ascii,
            binary: ContentEncoding::Binary,
            lengths: LengthEncoding::Bcd,
            numeric: ContentEncoding::Bcd,
        },
    );
    for (k, spec) in fields.iter_mut() {
        let n: u8 = k.parse().unwrap_or(0);
        // Variable numeric fields and field 22 are left-justified; fixed ones right.
        if spec.encoding == ContentEncoding::Bcd && (!spec.is_fixed() || n == 22) {
            spec.justify = Justify::Left;
        }
        match n {
            // Binary fields 55 and 62 count bytes (the default for binary).
            60 => {
                spec.subfields = Some(Subfields::Positional(vec![
                    PositionalSubfield {
                        name: "transaction type".into(),
                        len: 2,
                    },
                    PositionalSubfield {
                        name: "batch number".into(),
                        len: 6,
                    },
                    PositionalSubfield {
                        name: "network management code".into(),
                        len: 3,
                    },
                    PositionalSubfield {
                        name: "terminal capability".into(),
                        len: 6,
                    },
                ]))
            }
            61 => {
                spec.subfields = Some(Subfields::Positional(vec![
                    PositionalSubfield {
                        name: "original batch number".into(),
                        len: 6,
                    },
                    PositionalSubfield {
                        name: "original STAN".into(),
                        len: 6,
                    },
                    PositionalSubfield {
                        name: "original date (MMDD)".into(),
                        len: 4,
                    },
                    PositionalSubfield {
                        name: "other".into(),
                        len: 13,
                    },
                ]))
            }
            62 => spec.sensitive = Sensitivity::Secret,
            _ => {}
        }
    }
    DialectDef {
        name: "cup-pos".into(),
        description: "China UnionPay POS terminals: BCD MTI, binary primary bitmap, BCD \
                      numerics and LL/LLL lengths, private fields 60-63"
            .into(),
        mti: MtiEncoding::Bcd,
        bitmap: BitmapEncoding::Binary,
        secondary_bitmap: false,
        tertiary_bitmap: false,
        echo_fields: CUP_ECHO.to_vec(),
        mac: MacLayout {
            primary: 64,
            secondary: None,
        },
        mti_versions: vec![0],
        fields,
    }
}

/// A subfield table from `(key, name, class, length, max)` rows.
fn subs(rows: &[(u32, &str, ContentClass, LengthKind, u32)]) -> BTreeMap<String, FieldSpec> {
    rows.iter()
        .map(|&(k, name, class, len, max)| (k.to_string(), FieldSpec::new(name, class, len, max)))
        .collect()
}

/// The `iso87-composite` description: `../shared/samples/composite/iso87-composite.md`
/// (ISO 8583:1987 in ASCII, hex bitmaps, 18 data fields of which DE 48 is tagged, DE 62
/// positional and DE 127 bitmapped, with 48.42 and 127.25 positional below them).
pub fn iso87_composite_def() -> DialectDef {
    let plain: &[(u8, &str, ContentClass, LengthKind, u32)] = &[
        (2, "Primary account number", N, LL, 19),
        (3, "Processing code", N, Fixed, 6),
        (4, "Amount, transaction", N, Fixed, 12),
        (7, "Transmission date and time (MMDDhhmmss)", N, Fixed, 10),
        (11, "Systems trace audit number", N, Fixed, 6),
        (12, "Time, local transaction (hhmmss)", N, Fixed, 6),
        (13, "Date, local transaction (MMDD)", N, Fixed, 4),
        (14, "Date, expiration (YYMM)", N, Fixed, 4),
        (22, "Point of service entry mode", N, Fixed, 3),
        (25, "Point of service condition code", N, Fixed, 2),
        (37, "Retrieval reference number", An, Fixed, 12),
        (39, "Response code", An, Fixed, 2),
        (41, "Card acceptor terminal identification", Ans, Fixed, 8),
        (42, "Card acceptor identification code", Ans, Fixed, 15),
        (49, "Currency code, transaction", N, Fixed, 3),
    ];
    let mut fields: BTreeMap<String, FieldSpec> = plain
        .iter()
        .map(|&(n, name, class, len, max)| (n.to_string(), FieldSpec::new(name, class, len, max)))
        .collect();
    if let Some(pan) = fields.get_mut("2") {
        pan.sensitive = Sensitivity::Pan;
    }
    let de48_42 = FieldSpec::new("Electronic commerce indicators", Ans, LL, 3).composite(
        Composite::Positional {
            subfields: subs(&[
                (1, "Security protocol", N, Fixed, 1),
                (2, "Cardholder authentication", N, Fixed, 1),
                (3, "UCAF collection indicator", N, Fixed, 1),
            ]),
        },
    );
    let mut de48_subs = subs(&[
        (10, "Key reference", An, LL, 8),
        (14, "Account type indicator", Ans, LL, 12),
        (20, "Cardholder verification method", A, LL, 1),
        (33, "PAN mapping information", Ans, LL, 99),
        (61, "POS data, extended condition codes", N, LL, 5),
    ]);
    de48_subs.insert("42".into(), de48_42);
    fields.insert(
        "48".into(),
        FieldSpec::new("Additional data, private", Ans, LLL, 999).composite(Composite::Tagged {
            tag: TagFormat {
                width: 2,
                encoding: TagEncoding::Digits,
            },
            length: PrefixFormat {
                length: LL,
                encoding: LengthEncoding::Ascii,
            },
            unknown: UnknownTags::Reject,
            subfields: de48_subs,
        }),
    );
    fields.insert(
        "62".into(),
        FieldSpec::new("Private use", Ans, LLL, 999).composite(Composite::Positional {
            subfields: subs(&[
                (1, "Service indicator", An, Fixed, 2),
                (2, "Invoice number", N, Fixed, 6),
                (3, "Reference text", Ans, LL, 20),
                (4, "Channel code", An, Fixed, 3),
            ]),
        }),
    );
    let de127_25 =
        FieldSpec::new("Nested subfields", Ans, LLL, 999).composite(Composite::Positional {
            subfields: subs(&[
                (1, "Version", N, Fixed, 2),
                (2, "Reference", An, Fixed, 12),
                (3, "Free text", Ans, LL, 20),
            ]),
        });
    let mut de127_subs = subs(&[
        (2, "Switch key", Ans, LL, 32),
        (3, "Routing information", An, Fixed, 48),
        (12, "Terminal owner", Ans, LL, 25),
        (22, "Structured data (free text)", Ans, LLLLL, 99999),
    ]);
    de127_subs.insert("25".into(), de127_25);
    fields.insert(
        "127".into(),
        FieldSpec::new("Private use", Ans, LLLLLL, 999_999).composite(Composite::Bitmapped {
            bitmap: BitmapFormat {
                encoding: BitmapEncoding::Hex,
                bytes: 8,
            },
            subfields: de127_subs,
        }),
    );
    DialectDef {
        name: "iso87-composite".into(),
        description: "Test dialect for composite fields: ISO 8583:1987 in ASCII with hex \
                      bitmaps, DE 48 tagged (48.42 positional), DE 62 positional, DE 127 \
                      bitmapped (127.25 positional)"
            .into(),
        mti: MtiEncoding::Ascii,
        bitmap: BitmapEncoding::Hex,
        secondary_bitmap: true,
        tertiary_bitmap: false,
        echo_fields: vec![2, 3, 4, 7, 11, 12, 13, 22, 25, 37, 41, 42, 49],
        mac: MacLayout::default(),
        mti_versions: vec![0],
        fields,
    }
}

macro_rules! cached {
    ($f:ident, $def:ident) => {
        fn $f() -> Dialect {
            static CELL: OnceLock<Dialect> = OnceLock::new();
            Dialect::borrowed(CELL.get_or_init(|| {
                Dialect::from_def($def()).expect("built-in dialect tables are valid")
            }))
        }
    };
}

cached!(iso87_ascii_dialect, iso87_ascii_def);
cached!(iso87_binary_dialect, iso87_binary_def);
cached!(iso87_ebcdic_dialect, iso87_ebcdic_def);
cached!(iso93_ascii_dialect, iso93_ascii_def);
cached!(cup_pos_dialect, cup_pos_def);
cached!(iso87_composite_dialect, iso87_composite_def);

/// The built-in dialect called `name`.
pub fn builtin(name: &str) -> Option<Dialect> {
    Some(match name {
        "iso87-ascii" => iso87_ascii_dialect(),
        "iso87-binary" => iso87_binary_dialect(),
        "iso87-ebcdic" => iso87_ebcdic_dialect(),
        "iso93-ascii" => iso93_ascii_dialect(),
        "cup-pos" => cup_pos_dialect(),
        "iso87-composite" => iso87_composite_dialect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_builtins_build_and_roundtrip_through_json_and_toml() {
        for name in NAMES {
            let d = builtin(name).unwrap();
            assert_eq!(d.name(), *name);
            let json = serde_json::to_string(d.def()).unwrap();
            let d2 = Dialect::from_json(&json).unwrap();
            assert_eq!(d2.def(), d.def());
            let toml = toml::to_string(d.def()).unwrap();
            let d3 = Dialect::from_toml(&toml).unwrap();
            assert_eq!(d3.def(), d.def());
        }
        assert!(builtin("nope").is_none());
    }
}
