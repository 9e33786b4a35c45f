//! ISO 4217 minor units (the exponent of an amount) by numeric currency code.

/// Currencies whose minor unit is not 2 (ISO 4217 numeric code, exponent).
const EXCEPTIONS: &[(u16, u32)] = &[
    (48, 3),  // BHD
    (108, 0), // BIF
    (152, 0), // CLP
    (174, 0), // KMF
    (262, 0), // DJF
    (324, 0), // GNF
    (352, 0), // ISK
    (368, 3), // IQD
    (392, 0), // JPY
    (400, 3), // JOD
    (410, 0), // KRW
    (414, 3), // KWD
    (434, 3), // LYD
    (512, 3), // OMR
    (548, 0), // VUV
    (600, 0), // PYG
    (646, 0), // RWF
    (704, 0), // VND
    (788, 3), // TND
    (800, 0), // UGX
    (927, 4), // UYW
    (940, 0), // UYI
    (950, 0), // XAF
    (952, 0), // XOF
    (953, 0), // XPF
    (990, 4), // CLF
];

/// The number of decimal places of amounts in the currency with ISO 4217 numeric code
/// `code` (2 unless listed otherwise, e.g. 392 JPY → 0, 48 BHD → 3).
pub fn minor_units(code: u16) -> u32 {
    EXCEPTIONS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, e)| *e)
        .unwrap_or(2)
}

/// [`minor_units`] from the three digits of a currency field (DE 49/50/51).
pub fn minor_units_of(digits: &[u8]) -> Option<u32> {
    if digits.len() != 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits.iter().fold(0u16, |v, &d| v * 10 + (d - b'0') as u16);
    Some(minor_units(code))
}

/// The ISO 4217 alphabetic code of common numeric currency codes (`"156"` → `CNY`), for
/// display; `None` for others.
pub fn alpha(numeric: &str) -> Option<&'static str> {
    const ALPHA: &[(&str, &str)] = &[
        ("036", "AUD"),
        ("124", "CAD"),
        ("156", "CNY"),
        ("344", "HKD"),
        ("356", "INR"),
        ("392", "JPY"),
        ("410", "KRW"),
        ("446", "MOP"),
        ("458", "MYR"),
        ("484", "MXN"),
        ("643", "RUB"),
        ("702", "SGD"),
        ("756", "CHF"),
        ("764", "THB"),
        ("826", "GBP"),
        ("840", "USD"),
        ("901", "TWD"),
        ("949", "TRY"),
        ("978", "EUR"),
        ("986", "BRL"),
    ];
    ALPHA.iter().find(|(n, _)| *n == numeric).map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn exponents() {
        assert_eq!(minor_units(156), 2);
        assert_eq!(minor_units(840), 2);
        assert_eq!(minor_units(392), 0);
        assert_eq!(minor_units(48), 3);
        assert_eq!(minor_units_of(b"392"), Some(0));
        assert_eq!(minor_units_of(b"39"), None);
    }
}
