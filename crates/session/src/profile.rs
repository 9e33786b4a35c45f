//! [`SessionProfile`]: everything about a session that depends on the dialect — which
//! MAC algorithm, which messages carry a MAC, how working keys travel in the sign-on
//! response, and how network-management messages are built.
//!
//! The MACed span itself is never hard-coded here: it is the codec's
//! [`MacLayout`](isoswitch_codec::MacLayout) and
//! [`MessageView::mac_span`] — every byte from the MTI up to the MAC field, which is
//! DE 64 in a message with only a primary bitmap and DE 128 when a secondary bitmap is
//! present. [`SessionProfile::seal`] encodes a message once with a placeholder MAC,
//! MACs the bytes before the MAC field and overwrites the placeholder.
//!
//! # Built-in profiles
//!
//! | | `cup-pos` ([`SessionProfile::cup_pos`]) | ISO 8583:1987 ([`SessionProfile::iso87`]) |
//! |---|---|---|
//! | MAC | `cup-pos` MAC, 8 ASCII characters in DE 64 | X9.19 retail MAC (padding 1), 8 bytes in DE 64 / DE 128 |
//! | MAK | DES (a 16-byte slot with a zero second half) | two-key TDES (K1 ‖ K2) |
//! | network code | 60.3 in DE 60 = type `00` + batch n6 + code n3 | DE 70 (n3), with DE 7 |
//! | sign-on | 0800 11, 41, 42, 60 (`001`/`003`/`004`), 63 operator | 0800 7, 11, 41, 42, 70 = `001` |
//! | 0810 keys | DE 62, binary key block | DE 48, the key block as uppercase hex |
//! | echo | 0820 41, 42, 60 (`301`) | 0800 7, 11, 41, 42, 70 = `301` |
//! | sign-off | 0820 11, 41, 42, 60 (`002`) | 0820 7, 11, 41, 42, 70 = `002` |
//! | host key change | 0800 11, 41, 42, 60 (`101`), 64 | 0800 7, 11, 41, 42, 70 = `101`, 128 |
//! | no MAC | network management (except key change); 0500/0510, 0320/0330 | network management (except key change) |
//!
//! ## Working keys in ISO 8583:1987 (`iso87-*` dialects)
//!
//! ISO 8583:1987 has no field for key material (DE 96 is an 8-byte message security
//! code; the 1993 "key management data" DE 96 does not exist in 1987), so the 0810
//! answering a sign-on (DE 70 = `001`) carries the working keys in **DE 48** (additional
//! data, private, `ans..999`) as **uppercase hexadecimal text**, as Mastercard's
//! network-management key exchange carries its key block in DE 48 of the 0800/0810.
//! The block has exactly the `cup-pos` double-length layout (see
//! [`crate::working_keys`]): PIK 16 + KCV 4, MAK 16 + KCV 4 — 40 bytes, 80 hex
//! characters — each key encrypted under the terminal master key (TDES-ECB) and
//! followed by the first 4 bytes of its check value. The MAK is a genuine two-key TDES
//! key, since the X9.19 MAC needs K1 ‖ K2. Change [`SessionProfile::keys`] to use
//! another field (e.g. a private DE 120–127) with the same block.
//!
//! The 0810 has no batch field in 1987; the terminal keeps the batch of its counters.

use bytes::{Bytes, BytesMut};
use chrono::NaiveDateTime;
use isoswitch_codec::{ContentEncoding, Dialect, Message, MessageClass, MessageView, Mti};

use crate::counters::{BatchNumber, Stan};
use crate::crypto::keys::{Key, KeyKind};
use crate::crypto::mac::{compute, MacAlgorithm, Padding};
use crate::error::{Result, SessionError};
use crate::terminal_id::TerminalId;
use crate::working_keys::KeyScheme;

/// Length of the MAC carried in DE 64/128 (bytes on the wire for binary fields).
pub const MAC_FIELD_LEN: usize = 8;

/// How network-management messages say what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManagementStyle {
    /// `cup-pos`: DE 60 = transaction type `00` (n2) + batch (n6) + network management
    /// code (n3); sign-on also carries the operator in DE 63.
    Field60,
    /// ISO 8583:1987: DE 70 network management information code, DE 7 transmission
    /// date and time.
    De70,
}

/// How the key block travels in the 0810.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFieldEncoding {
    /// The block's bytes as they are (a binary field: `cup-pos` DE 62).
    Binary,
    /// The block as uppercase hexadecimal text (a text field: DE 48 in 1987).
    Hex,
}

/// Where and how working keys are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDelivery {
    /// The field of the 0810 that carries the key block.
    pub field: u8,
    /// How the block is written into it.
    pub encoding: KeyFieldEncoding,
    /// The MAK a host generates for the double-length schemes: DES for the `cup-pos`
    /// MAC, two-key TDES for X9.19.
    pub double_mak: KeyKind,
}

/// A network-management function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkCode {
    /// Sign-on asking for working keys in a scheme (`001`, or `cup-pos` `001`/`003`/`004`).
    SignOn(KeyScheme),
    /// Sign-off (`002`).
    SignOff,
    /// Echo test (`301`).
    Echo,
    /// Host-initiated key change (`101`): the terminal must sign on again.
    KeyChange,
}

/// Why a message's MAC was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacFailureReason {
    /// The message carries no MAC field where one is required (or DE 64 where the
    /// secondary bitmap demands DE 128).
    Missing,
    /// The MAC does not match the message.
    Mismatch,
    /// No MAC key is installed to check it (not signed on).
    NoKey,
}

/// The dialect-dependent rules of a session; see the module docs.
///
/// Fields are public so that a host with its own dialect can describe it; check a hand-
/// made profile with [`SessionProfile::validate`] (the session constructors do).
#[derive(Debug, Clone)]
pub struct SessionProfile {
    /// The message dialect.
    pub dialect: Dialect,
    /// The MAC algorithm for DE 64/128.
    pub mac: MacAlgorithm,
    /// How working keys travel in the 0810.
    pub keys: KeyDelivery,
    /// How network-management messages are built and recognized.
    pub management: ManagementStyle,
    /// The key scheme when the sign-on cannot ask for one (DE 70 = `001`).
    pub default_scheme: KeyScheme,
    /// MTI of sign-on requests (0800).
    pub sign_on_mti: Mti,
    /// MTI of sign-off requests (0820).
    pub sign_off_mti: Mti,
    /// MTI of echo tests (`cup-pos` 0820, 1987 0800).
    pub echo_mti: Mti,
    /// MTI of host-initiated key changes (0800).
    pub key_change_mti: Mti,
    /// Messages outside network management that carry no MAC (`cup-pos` settlement
    /// and batch upload, and their responses).
    pub unmaced: Vec<Mti>,
}

fn mti(n: u16) -> Mti {
    // Callers pass constants below 10000.
    Mti::from_u16(n).unwrap_or(Mti::ZERO)
}

impl SessionProfile {
    /// The `cup-pos` profile (China UnionPay POS).
    pub fn cup_pos() -> Result<SessionProfile> {
        let dialect = builtin("cup-pos")?;
        let p = SessionProfile {
            dialect,
            mac: MacAlgorithm::CupPos,
            keys: KeyDelivery {
                field: 62,
                encoding: KeyFieldEncoding::Binary,
                double_mak: KeyKind::Des,
            },
            management: ManagementStyle::Field60,
            default_scheme: KeyScheme::Double,
            sign_on_mti: mti(800),
            sign_off_mti: mti(820),
            echo_mti: mti(820),
            key_change_mti: mti(800),
            unmaced: vec![mti(500), mti(510), mti(320), mti(330)],
        };
        p.validate()?;
        Ok(p)
    }

    /// The ISO 8583:1987 profile over `dialect` (`iso87-binary`, `iso87-ascii`,
    /// `iso87-ebcdic`): X9.19 MAC, keys in DE 48 as hex, DE 70 codes.
    pub fn iso87(dialect: Dialect) -> Result<SessionProfile> {
        let p = SessionProfile {
            dialect,
            mac: MacAlgorithm::X919(Padding::Method1),
            keys: KeyDelivery {
                field: 48,
                encoding: KeyFieldEncoding::Hex,
                double_mak: KeyKind::Tdes2,
            },
            management: ManagementStyle::De70,
            default_scheme: KeyScheme::Double,
            sign_on_mti: mti(800),
            sign_off_mti: mti(820),
            echo_mti: mti(800),
            key_change_mti: mti(800),
            unmaced: Vec::new(),
        };
        p.validate()?;
        Ok(p)
    }

    /// The `iso87-binary` profile.
    pub fn iso87_binary() -> Result<SessionProfile> {
        SessionProfile::iso87(builtin("iso87-binary")?)
    }

    /// The built-in profile for a built-in dialect name: `cup-pos`, or one of the
    /// `iso87-*` dialects. `None` for other names.
    pub fn builtin(name: &str) -> Option<SessionProfile> {
        match name {
            "cup-pos" => SessionProfile::cup_pos().ok(),
            "iso87-binary" | "iso87-ascii" | "iso87-ebcdic" => {
                SessionProfile::iso87(Dialect::builtin(name)?).ok()
            }
            _ => None,
        }
    }

    fn bad(&self, what: &'static str) -> SessionError {
        SessionError::BadProfile {
            dialect: self.dialect.name().to_string(),
            what,
        }
    }

    /// Checks that the dialect has what the profile needs: DE 11, 41, 42, the key
    /// field, DE 60 (with DE 63) or DE 70 (with DE 7), a MAC field of 8 bytes, a MAK
    /// kind the MAC algorithm accepts, and MTIs of network management.
    pub fn validate(&self) -> Result<()> {
        let d = &self.dialect;
        for n in [11, 39, 41, 42, self.keys.field] {
            if d.field(n).is_none() {
                return Err(self.bad(
                    "a field the session needs (11, 39, 41, 42 or the key field) is not defined",
                ));
            }
        }
        match self.management {
            ManagementStyle::Field60 if d.field(60).is_none() || d.field(63).is_none() => {
                return Err(self.bad("DE 60 and DE 63 are needed for field-60 network management"))
            }
            ManagementStyle::De70 if d.field(70).is_none() || d.field(7).is_none() => {
                return Err(self.bad("DE 7 and DE 70 are needed for DE 70 network management"))
            }
            _ => {}
        }
        let layout = d.mac_layout();
        for n in std::iter::once(layout.primary).chain(layout.secondary) {
            let ok = d.field(n).is_some_and(|s| {
                s.is_fixed() && matches!(s.encoding, ContentEncoding::Binary | ContentEncoding::Hex)
            });
            if !ok {
                return Err(self.bad("the MAC field must be a fixed binary field of 8 bytes"));
            }
        }
        let mak_ok = match self.mac {
            MacAlgorithm::CupPos => matches!(self.keys.double_mak, KeyKind::Des | KeyKind::Tdes2),
            MacAlgorithm::X919(_) | MacAlgorithm::CbcTdes(_) => {
                self.keys.double_mak == KeyKind::Tdes2
            }
            MacAlgorithm::CbcDes(_) => self.keys.double_mak == KeyKind::Des,
            MacAlgorithm::AesCmac => false,
        };
        if !mak_ok {
            return Err(self.bad("the MAK kind does not fit the MAC algorithm"));
        }
        if self.management == ManagementStyle::De70
            && self.default_scheme == KeyScheme::Single
            && !matches!(self.mac, MacAlgorithm::CupPos | MacAlgorithm::CbcDes(_))
        {
            return Err(self.bad("a single-length MAK cannot be used with this MAC algorithm"));
        }
        for m in [
            self.sign_on_mti,
            self.sign_off_mti,
            self.echo_mti,
            self.key_change_mti,
        ] {
            if m.class() != MessageClass::NetworkManagement || m.is_response() {
                return Err(self.bad("network-management MTIs must be 08x0 requests"));
            }
        }
        Ok(())
    }

    /// Whether messages of type `mti` carry a MAC: everything but network management
    /// and [`SessionProfile::unmaced`]; the host's key change (and its MTI's code `101`)
    /// is checked separately by the sessions.
    pub fn requires_mac(&self, mti: Mti) -> bool {
        mti.class() != MessageClass::NetworkManagement && !self.unmaced.contains(&mti)
    }

    /// The MTI of a network-management request.
    pub fn mti_for(&self, code: NetworkCode) -> Mti {
        match code {
            NetworkCode::SignOn(_) => self.sign_on_mti,
            NetworkCode::SignOff => self.sign_off_mti,
            NetworkCode::Echo => self.echo_mti,
            NetworkCode::KeyChange => self.key_change_mti,
        }
    }

    /// The three-digit code of `code` in this profile's style.
    pub fn code_text(&self, code: NetworkCode) -> &'static str {
        match (code, self.management) {
            (NetworkCode::SignOn(s), ManagementStyle::Field60) => s.cup_pos_code(),
            (NetworkCode::SignOn(_), ManagementStyle::De70) => "001",
            (NetworkCode::SignOff, _) => "002",
            (NetworkCode::Echo, _) => "301",
            (NetworkCode::KeyChange, _) => "101",
        }
    }

    /// The network-management function of a message (request or response), from
    /// 60.3 or DE 70; `None` if absent or unknown.
    pub fn network_code(&self, msg: &Message) -> Option<NetworkCode> {
        let text = match self.management {
            ManagementStyle::Field60 => msg.field(60)?.subfield(2)?.into_owned(),
            ManagementStyle::De70 => msg.get(70)?,
        };
        match (text.as_str(), self.management) {
            ("001", ManagementStyle::De70) => Some(NetworkCode::SignOn(self.default_scheme)),
            ("002", _) => Some(NetworkCode::SignOff),
            ("301", _) => Some(NetworkCode::Echo),
            ("101", _) => Some(NetworkCode::KeyChange),
            (code, ManagementStyle::Field60) => {
                KeyScheme::from_cup_pos_code(code).map(NetworkCode::SignOn)
            }
            _ => None,
        }
    }

    /// The batch number in 60.2 (`cup-pos`); `Ok(None)` in the DE 70 style.
    pub fn batch_of(&self, msg: &Message) -> Result<Option<BatchNumber>> {
        if self.management != ManagementStyle::Field60 {
            return Ok(None);
        }
        let bad = SessionError::BadFieldValue {
            field: 60,
            what: "batch number (60.2)",
        };
        let f = msg.field(60).ok_or(SessionError::MissingField {
            mti: msg.mti(),
            field: 60,
        })?;
        let text = f.subfield(1).ok_or(SessionError::BadFieldValue {
            field: 60,
            what: "batch number (60.2)",
        })?;
        if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad);
        }
        let value: u32 = text.parse().map_err(|_| SessionError::BadFieldValue {
            field: 60,
            what: "batch number (60.2)",
        })?;
        BatchNumber::new(value).map(Some).map_err(|_| bad)
    }

    /// A network-management request for terminal `id`: the MTI of `code`, DE 11 when
    /// `stan` is given, DE 41/42, and DE 60 (`00` + `batch` + code) or DE 7 (`local`)
    /// and DE 70.
    pub fn management_message(
        &self,
        code: NetworkCode,
        id: &TerminalId,
        stan: Option<Stan>,
        batch: BatchNumber,
        local: NaiveDateTime,
    ) -> Result<Message> {
        let mut m = Message::new(&self.dialect, self.mti_for(code));
        if self.management == ManagementStyle::De70 {
            m.set_datetime_mmddhhmmss(7, local)?;
        }
        if let Some(s) = stan {
            m.set(11, s.to_string())?;
        }
        id.write_to(&mut m)?;
        match self.management {
            ManagementStyle::Field60 => {
                m.set(60, format!("00{batch}{}", self.code_text(code)))?;
            }
            ManagementStyle::De70 => {
                m.set(70, self.code_text(code))?;
            }
        }
        Ok(m)
    }

    /// The key block carried in `msg` (see [`KeyDelivery`]).
    pub fn key_block_of(&self, msg: &Message) -> Result<Vec<u8>> {
        let n = self.keys.field;
        let f = msg.field(n).ok_or(SessionError::MissingField {
            mti: msg.mti(),
            field: n,
        })?;
        match self.keys.encoding {
            KeyFieldEncoding::Binary => Ok(f.bytes().into_owned()),
            KeyFieldEncoding::Hex => {
                decode_hex(f.text().as_bytes()).ok_or(SessionError::BadFieldValue {
                    field: n,
                    what: "hexadecimal key block",
                })
            }
        }
    }

    /// Writes a key block into `msg` (see [`KeyDelivery`]).
    pub fn set_key_block(&self, msg: &mut Message, block: &[u8]) -> Result<()> {
        let n = self.keys.field;
        match self.keys.encoding {
            KeyFieldEncoding::Binary => msg.set_bytes(n, block)?,
            KeyFieldEncoding::Hex => msg.set(n, encode_hex(block))?,
        };
        Ok(())
    }

    /// Encodes `msg` with its MAC under `mak` and returns the bytes (no length header).
    ///
    /// Any DE 64/128 already present is replaced. The MAC field is DE 128 when the
    /// message has a field above 64 (a secondary bitmap), DE 64 otherwise; it must be
    /// the last field. The message is encoded once with a placeholder, the bytes from
    /// the MTI up to the MAC field are MACed, and the placeholder is overwritten; `msg`
    /// is left holding the MAC that was sent.
    pub fn seal(&self, mak: &Key, msg: &mut Message) -> Result<Bytes> {
        let layout = self.dialect.mac_layout();
        msg.remove(layout.primary);
        if let Some(s) = layout.secondary {
            msg.remove(s);
        }
        let secondary = msg.present().iter().any(|n| n > 64);
        let n = if secondary {
            layout
                .secondary
                .ok_or_else(|| self.bad("a message with a secondary bitmap needs a MAC field"))?
        } else {
            layout.primary
        };
        if let Some(after) = msg.present().iter().find(|&f| f > n) {
            return Err(SessionError::MacFieldNotLast {
                mac_field: n,
                after,
            });
        }
        let prefix = self.dialect.field(n).map_or(0, |s| s.prefix_len());
        msg.set_bytes(n, &[0u8; MAC_FIELD_LEN])?;
        let mut out = BytesMut::new();
        msg.encode(&mut out)?;
        let wire_len = msg.field(n).map_or(0, |f| f.raw().len());
        let Some(span_end) = out.len().checked_sub(wire_len + prefix) else {
            return Err(self.bad("MAC field longer than the message"));
        };
        let mac = compute(self.mac, mak, &out[..span_end])?;
        let mac = mac
            .as_bytes()
            .get(..MAC_FIELD_LEN)
            .ok_or(SessionError::BadMacLength {
                min: MAC_FIELD_LEN,
                max: MAC_FIELD_LEN,
                found: mac.len(),
            })?;
        msg.set_bytes(n, mac)?;
        let wire = msg.field(n).map(|f| f.raw()).unwrap_or_default();
        if wire.len() != wire_len {
            return Err(self.bad("MAC field changed length"));
        }
        let tail = out.len() - wire_len;
        out[tail..].copy_from_slice(wire);
        Ok(out.freeze())
    }

    /// Checks the MAC of a decoded message under `mak`: the MAC field the codec's
    /// layout selects (DE 64, or DE 128 with a secondary bitmap) against the MAC of
    /// [`MessageView::mac_span`], compared in constant time.
    pub fn verify_mac(
        &self,
        mak: &Key,
        view: &MessageView<'_>,
    ) -> std::result::Result<(), MacFailureReason> {
        let (Some((span, _)), Some(n)) = (view.mac_span(), view.mac_field()) else {
            return Err(MacFailureReason::Missing);
        };
        let received = view
            .field(n)
            .map(|f| f.bytes())
            .ok_or(MacFailureReason::Missing)?;
        if received.len() != MAC_FIELD_LEN {
            return Err(MacFailureReason::Mismatch);
        }
        let mac = compute(self.mac, mak, span).map_err(|_| MacFailureReason::Mismatch)?;
        mac.verify(&received)
            .map_err(|_| MacFailureReason::Mismatch)
    }

    /// The MAK kind a host generates for `scheme`.
    pub fn mak_kind(&self, scheme: KeyScheme) -> KeyKind {
        match scheme {
            KeyScheme::Single => KeyKind::Des,
            _ => self.keys.double_mak,
        }
    }
}

fn builtin(name: &str) -> Result<Dialect> {
    Dialect::builtin(name).ok_or(SessionError::BadProfile {
        dialect: name.to_string(),
        what: "no such built-in dialect",
    })
}

pub(crate) fn encode_hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(D[usize::from(x >> 4)]));
        s.push(char::from(D[usize::from(x & 15)]));
    }
    s
}

pub(crate) fn decode_hex(t: &[u8]) -> Option<Vec<u8>> {
    if t.len() % 2 == 1 {
        return None;
    }
    t.chunks_exact(2)
        .map(|p| {
            let h = char::from(p[0]).to_digit(16)?;
            let l = char::from(p[1]).to_digit(16)?;
            u8::try_from(h * 16 + l).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> TerminalId {
        TerminalId::new("TERM0001", "MERCHANT0000001").expect("id")
    }

    fn local() -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2024, 3, 5)
            .and_then(|d| d.and_hms_opt(12, 34, 56))
            .expect("date")
    }

    #[test]
    fn cup_pos_sign_on_message_has_the_domain_fields() {
        let p = SessionProfile::cup_pos().expect("profile");
        let m = p
            .management_message(
                NetworkCode::SignOn(KeyScheme::Double),
                &id(),
                Some(Stan::new(7).expect("stan")),
                BatchNumber::new(12).expect("batch"),
                local(),
            )
            .expect("message");
        assert_eq!(m.mti().as_str(), "0800");
        assert_eq!(m.get(60).as_deref(), Some("00000012003"));
        assert_eq!(m.get(11).as_deref(), Some("000007"));
        assert_eq!(
            p.network_code(&m),
            Some(NetworkCode::SignOn(KeyScheme::Double))
        );
        assert_eq!(
            p.batch_of(&m).expect("batch"),
            Some(BatchNumber::new(12).expect("b"))
        );
    }

    #[test]
    fn iso87_sign_on_uses_de70_and_de7() {
        let p = SessionProfile::iso87_binary().expect("profile");
        let m = p
            .management_message(
                NetworkCode::SignOn(KeyScheme::Double),
                &id(),
                Some(Stan::new(7).expect("stan")),
                BatchNumber::FIRST,
                local(),
            )
            .expect("message");
        assert_eq!(m.get(70).as_deref(), Some("001"));
        assert_eq!(m.get(7).as_deref(), Some("0305123456"));
        assert_eq!(p.batch_of(&m).expect("none"), None);
    }

    #[test]
    fn seal_and_verify_use_de64_or_de128() {
        for name in ["cup-pos", "iso87-binary", "iso87-ascii"] {
            let p = SessionProfile::builtin(name).expect("profile");
            let mak = Key::generate(p.keys.double_mak).expect("mak");
            let mut m = Message::new(&p.dialect, mti(200));
            m.set(3, "000000").expect("3");
            m.set(11, "000001").expect("11");
            id().write_to(&mut m).expect("id");
            let bytes = p.seal(&mak, &mut m).expect("seal");
            let v = MessageView::decode(&p.dialect, &bytes).expect("decode");
            assert_eq!(v.mac_field(), Some(64), "{name}");
            p.verify_mac(&mak, &v).expect("verify");
            let (span, mac) = v.mac_span().expect("span");
            let expected = compute(p.mac, &mak, span).expect("mac");
            assert_eq!(
                v.field(64).expect("64").bytes().as_ref(),
                &expected.as_bytes()[..8]
            );
            assert!(!mac.is_empty());
            if p.dialect.has_secondary() {
                m.set(102, "ACCOUNT1").expect("102");
                let bytes = p.seal(&mak, &mut m).expect("seal");
                let v = MessageView::decode(&p.dialect, &bytes).expect("decode");
                assert_eq!(v.mac_field(), Some(128));
                assert!(!v.has(64));
                p.verify_mac(&mak, &v).expect("verify 128");
            }
            let other = Key::generate(p.keys.double_mak).expect("other");
            assert_eq!(p.verify_mac(&other, &v), Err(MacFailureReason::Mismatch));
        }
    }

    #[test]
    fn an_unsealed_message_is_missing_its_mac() {
        let p = SessionProfile::cup_pos().expect("profile");
        let mut m = Message::new(&p.dialect, mti(200));
        m.set(11, "000001").expect("11");
        let bytes = m.to_bytes().expect("bytes");
        let v = MessageView::decode(&p.dialect, &bytes).expect("decode");
        let mak = Key::des(&[0x22; 8]).expect("mak");
        assert_eq!(p.verify_mac(&mak, &v), Err(MacFailureReason::Missing));
    }

    #[test]
    fn cup_pos_mac_of_a_sealed_message_matches_the_domain_algorithm() {
        // The MAC field holds the 8 ASCII characters of the UnionPay MAC of the span.
        let p = SessionProfile::cup_pos().expect("profile");
        let mak = Key::des(&[0x22; 8]).expect("mak");
        let mut m = Message::new(&p.dialect, mti(200));
        m.set(11, "000001").expect("11");
        let bytes = p.seal(&mak, &mut m).expect("seal");
        let mac = compute(MacAlgorithm::CupPos, &mak, &bytes[..bytes.len() - 8]).expect("mac");
        assert_eq!(&bytes[bytes.len() - 8..], mac.as_bytes());
        assert!(bytes[bytes.len() - 8..].iter().all(u8::is_ascii_hexdigit));
    }

    #[test]
    fn hex_helpers_round_trip() {
        assert_eq!(encode_hex(&[0x00, 0xAB, 0x7F]), "00AB7F");
        assert_eq!(decode_hex(b"00ab7F"), Some(vec![0x00, 0xAB, 0x7F]));
        assert_eq!(decode_hex(b"0"), None);
        assert_eq!(decode_hex(b"0G"), None);
    }
}
