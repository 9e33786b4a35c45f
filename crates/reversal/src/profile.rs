//! [`ReversalProfile`]: per dialect, how a reversal is built from its original, which
//! DE 39 reason each failure gets, and how a transaction is identified and classified.
//!
//! | dialect | reversal | original data elements | reasons (no response / MAC / undecodable / terminal) |
//! |---|---|---|---|
//! | `cup-pos` | `0400` (repeat `0401`) | DE 60 copied (type, batch), DE 61 copied for void reversals | DE 39 `98` / `A0` / `06` / `96` |
//! | `iso87-*` | `0400` (repeat `0401`) | DE 90 n42: MTI + STAN + DE 7 + DE 32 + DE 33 | DE 39 `98` / `A0` / `06` / `96` |
//! | `iso93-ascii` | `1420` + DE 24 = `400` (repeat `1421`) | DE 56: MTI + STAN + DE 12 + LL DE 32 | DE 25 `4021` / `4020` / `4020` / `4007` |
//!
//! DE 11 of a reversal is the original's STAN in every dialect (so the `0410` pairs with
//! the reversal by DE 41 + DE 11 and the host can match by STAN directly).

use crate::error::{Result, ReversalError};
use isoswitch_codec::{Dialect, Message, Mti};
use rust_decimal::Decimal;
use std::fmt;

/// What a transaction does to the cardholder's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnKind {
    /// Takes money (sale, completion, cash).
    Debit,
    /// Gives money back (void of a sale, refund).
    Credit,
    /// No money moves (inquiry, pre-authorization hold).
    None,
}

impl TxnKind {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            TxnKind::Debit => 1,
            TxnKind::Credit => 2,
            TxnKind::None => 0,
        }
    }
    pub(crate) fn from_u8(v: u8) -> Result<TxnKind> {
        Ok(match v {
            1 => TxnKind::Debit,
            2 => TxnKind::Credit,
            0 => TxnKind::None,
            _ => return Err(ReversalError::bad("unknown transaction kind")),
        })
    }

    /// The signed effect of `amount` on the cardholder's ledger (debit +, credit −).
    pub fn effect(self, amount: Decimal) -> Decimal {
        match self {
            TxnKind::Debit => amount,
            TxnKind::Credit => -amount,
            TxnKind::None => Decimal::ZERO,
        }
    }
}

/// 64-bit FNV-1a over `fields`, each followed by a `0xff` separator byte: a stable hash
/// of a key's fields (the same on every node and build; persisted as caller tags, used as
/// database lock keys).
pub fn fnv1a_fields(fields: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in fields {
        for &x in *f {
            h ^= u64::from(x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What the journal and settlement need to know about a transaction.
#[derive(Clone, PartialEq, Eq)]
pub struct TxnInfo {
    /// Debit, credit or none.
    pub kind: TxnKind,
    /// A foreign card (DE 49 differs from the profile's domestic currency).
    pub foreign: bool,
    /// The original transaction type: DE 3 positions 1–2.
    pub txn_type: u8,
    /// DE 4 in currency units.
    pub amount: Decimal,
    /// DE 2 (or the PAN of DE 35); never logged unmasked.
    pub pan: String,
}

impl fmt::Debug for TxnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxnInfo")
            .field("kind", &self.kind)
            .field("foreign", &self.foreign)
            .field("txn_type", &self.txn_type)
            .field("amount", &self.amount)
            .field("pan", &mask_pan(&self.pan))
            .finish()
    }
}

/// A PAN safe to log: first 6 and last 4 digits.
pub fn mask_pan(pan: &str) -> String {
    isoswitch_codec::mask::mask_pan(pan)
}

/// Why a transaction is reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReversalReason {
    /// No response in time, or the connection was lost after sending.
    NoResponse,
    /// The response failed MAC verification.
    MacFailure,
    /// The response did not decode (or did not answer the request).
    Undecodable,
    /// Approved, but the terminal could not complete (card removed, printer…).
    TerminalFailure,
    /// Found started but unfinished in the journal after a restart.
    Recovered,
}

impl std::fmt::Display for ReversalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReversalReason::NoResponse => "no response",
            ReversalReason::MacFailure => "MAC failure",
            ReversalReason::Undecodable => "undecodable response",
            ReversalReason::TerminalFailure => "terminal failure",
            ReversalReason::Recovered => "recovered after a restart",
        })
    }
}

impl ReversalReason {
    /// The reason's code in journal records (1–5).
    pub fn to_u8(self) -> u8 {
        match self {
            ReversalReason::NoResponse => 1,
            ReversalReason::MacFailure => 2,
            ReversalReason::Undecodable => 3,
            ReversalReason::TerminalFailure => 4,
            ReversalReason::Recovered => 5,
        }
    }
    /// The reason of journal code `v` ([`ReversalReason::to_u8`]).
    ///
    /// # Errors
    /// [`ReversalError::BadRecord`] for an unknown code.
    pub fn from_u8(v: u8) -> Result<ReversalReason> {
        Ok(match v {
            1 => ReversalReason::NoResponse,
            2 => ReversalReason::MacFailure,
            3 => ReversalReason::Undecodable,
            4 => ReversalReason::TerminalFailure,
            5 => ReversalReason::Recovered,
            _ => return Err(ReversalError::bad("unknown reversal reason")),
        })
    }
}

/// The reason a reversal carries for each [`ReversalReason`], and in which field
/// (DE 39 in `cup-pos` and 1987; DE 25 message reason code n4 in 1993, where DE 39 is
/// an action code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonCodes {
    /// The field the reason goes in (39, or 25 in 1993).
    pub field: u8,
    /// No response in time (and [`ReversalReason::Recovered`]): `98` (1993: `4021`).
    pub no_response: String,
    /// Response failed MAC verification: `A0` (1993: `4020`).
    pub mac_failure: String,
    /// Response undecodable: `06` (1993: `4020`).
    pub undecodable: String,
    /// Approved but not completed by the terminal: `96` (1993: `4007`).
    pub terminal_failure: String,
}

impl Default for ReasonCodes {
    fn default() -> Self {
        ReasonCodes {
            field: 39,
            no_response: "98".into(),
            mac_failure: "A0".into(),
            undecodable: "06".into(),
            terminal_failure: "96".into(),
        }
    }
}

impl ReasonCodes {
    /// ISO 8583:1993 message reason codes in DE 25.
    pub fn iso93() -> Self {
        ReasonCodes {
            field: 25,
            no_response: "4021".into(),
            mac_failure: "4020".into(),
            undecodable: "4020".into(),
            terminal_failure: "4007".into(),
        }
    }

    /// The code for `reason`.
    pub fn code(&self, reason: ReversalReason) -> &str {
        match reason {
            ReversalReason::NoResponse | ReversalReason::Recovered => &self.no_response,
            ReversalReason::MacFailure => &self.mac_failure,
            ReversalReason::Undecodable => &self.undecodable,
            ReversalReason::TerminalFailure => &self.terminal_failure,
        }
    }
}

/// Where a reversal carries its original's identification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginalData {
    /// `cup-pos`: DE 60 (type + batch) copied, DE 61 copied when the original has it.
    Cup,
    /// ISO 1987 DE 90 (n42): original MTI, STAN, DE 7, acquirer and forwarding IDs (n11,
    /// zero-filled). The IDs come from the original's DE 32/33, else from here.
    De90 {
        /// Acquirer institution ID when the original has no DE 32.
        acquirer: String,
        /// Forwarding institution ID when the original has no DE 33.
        forwarding: String,
    },
    /// ISO 1993 DE 56: original MTI n4, STAN n6, DE 12 n12, LL acquirer ID.
    De56 {
        /// Acquirer institution ID when the original has no DE 32.
        acquirer: String,
    },
}

/// Identifies a transaction at the host: DE 41 + DE 42 + batch + STAN.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnKey {
    /// DE 41.
    pub terminal: String,
    /// DE 42.
    pub merchant: String,
    /// `cup-pos` DE 60.2; 0 in dialects without a batch field.
    pub batch: u32,
    /// DE 11.
    pub stan: u32,
}

/// `T0000001/M00000000000001 batch 1 STAN 000042`.
impl std::fmt::Display for TxnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} batch {} STAN {:06}",
            self.terminal, self.merchant, self.batch, self.stan
        )
    }
}

/// Per-dialect reversal rules; see the module docs.
#[derive(Debug, Clone)]
pub struct ReversalProfile {
    /// The dialect.
    pub dialect: Dialect,
    /// MTI of a reversal (`0400`, `0420` for advices, `1420`).
    pub reversal_mti: Mti,
    /// Fields copied from the original when present.
    pub copy_fields: Vec<u8>,
    /// Where the original data elements go.
    pub original_data: OriginalData,
    /// DE 39 reasons.
    pub reasons: ReasonCodes,
    /// ISO 4217 numeric code of domestic cards' currency (`156` for `cup-pos`).
    pub domestic_currency: String,
    /// DE 39 values that mean approved.
    pub approval_codes: Vec<[u8; 2]>,
    /// Whether the batch travels in DE 60.2 (`cup-pos`).
    pub batch_in_de60: bool,
    /// How two-character response codes are written in DE 39 when the dialect uses
    /// other codes (ISO 1993 three-digit action codes); empty: written as they are.
    /// Pairs of (two-character code, wire code); unmapped wire codes read as `05`.
    pub code_map: Vec<(String, String)>,
}

fn mti(n: u16) -> Mti {
    Mti::from_u16(n).unwrap_or(Mti::ZERO)
}

impl ReversalProfile {
    fn builtin_dialect(name: &str) -> Result<Dialect> {
        Dialect::builtin(name).ok_or_else(|| ReversalError::UnknownDialect {
            name: name.to_string(),
        })
    }

    /// `cup-pos`.
    ///
    /// # Errors
    /// Never in practice (the built-in dialect exists).
    pub fn cup_pos() -> Result<ReversalProfile> {
        Ok(ReversalProfile {
            dialect: Self::builtin_dialect("cup-pos")?,
            reversal_mti: mti(400),
            copy_fields: vec![2, 3, 4, 11, 14, 22, 23, 25, 41, 42, 49, 55, 60, 61],
            original_data: OriginalData::Cup,
            reasons: ReasonCodes::default(),
            domestic_currency: "156".into(),
            approval_codes: vec![*b"00", *b"10", *b"11"],
            batch_in_de60: true,
            code_map: Vec::new(),
        })
    }

    /// ISO 1987 over a built-in `iso87-*` dialect (`iso87-binary`, `iso87-ascii`,
    /// `iso87-ebcdic`).
    ///
    /// # Errors
    /// [`ReversalError::UnknownDialect`].
    pub fn iso87(name: &str) -> Result<ReversalProfile> {
        if !name.starts_with("iso87-") {
            return Err(ReversalError::UnknownDialect { name: name.into() });
        }
        Ok(ReversalProfile {
            dialect: Self::builtin_dialect(name)?,
            reversal_mti: mti(400),
            copy_fields: vec![
                2, 3, 4, 7, 11, 12, 13, 14, 18, 19, 22, 23, 25, 32, 33, 37, 41, 42, 43, 49,
            ],
            original_data: OriginalData::De90 {
                acquirer: "0".into(),
                forwarding: "0".into(),
            },
            reasons: ReasonCodes::default(),
            domestic_currency: "840".into(),
            approval_codes: vec![*b"00", *b"10", *b"11"],
            batch_in_de60: false,
            code_map: Vec::new(),
        })
    }

    /// `iso87-binary`.
    ///
    /// # Errors
    /// Never in practice.
    pub fn iso87_binary() -> Result<ReversalProfile> {
        Self::iso87("iso87-binary")
    }

    /// `iso93-ascii`: `1420` with DE 24 = `400` and DE 56.
    ///
    /// # Errors
    /// Never in practice.
    pub fn iso93_ascii() -> Result<ReversalProfile> {
        Ok(ReversalProfile {
            dialect: Self::builtin_dialect("iso93-ascii")?,
            reversal_mti: mti(1420),
            copy_fields: vec![2, 3, 4, 7, 11, 12, 14, 22, 23, 32, 37, 41, 42, 49],
            original_data: OriginalData::De56 {
                acquirer: "0".into(),
            },
            reasons: ReasonCodes::iso93(),
            domestic_currency: "840".into(),
            approval_codes: vec![*b"00", *b"10", *b"11"],
            batch_in_de60: false,
            // ISO 8583:1993 action codes (convention; adjust per host).
            code_map: [
                ("00", "000"),
                ("05", "100"),
                ("13", "110"),
                ("51", "116"),
                ("12", "902"),
                ("96", "909"),
                ("94", "913"),
                ("A0", "916"),
                ("25", "480"),
                ("64", "481"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        })
    }

    /// The profile for a built-in dialect name.
    ///
    /// # Errors
    /// [`ReversalError::UnknownDialect`] for other names.
    pub fn builtin(name: &str) -> Result<ReversalProfile> {
        match name {
            "cup-pos" => Self::cup_pos(),
            "iso93-ascii" => Self::iso93_ascii(),
            n if n.starts_with("iso87-") => Self::iso87(n),
            _ => Err(ReversalError::UnknownDialect { name: name.into() }),
        }
    }

    /// Whether `mti` is a reversal (request or repeat, advice or not) in this profile.
    pub fn is_reversal(&self, mti: Mti) -> bool {
        mti.class() == isoswitch_codec::MessageClass::Reversal && !mti.is_response()
    }

    /// Builds the reversal of `original` for `reason` (first attempt; use
    /// [`Mti::repeat_mti`] for repeats).
    ///
    /// # Errors
    /// Codec errors, [`ReversalError::MissingField`] for an original without DE 11.
    pub fn build_reversal(&self, original: &Message, reason: ReversalReason) -> Result<Message> {
        if !original.has(11) {
            return Err(ReversalError::MissingField {
                field: 11,
                what: "STAN",
            });
        }
        let mut r = Message::new(&self.dialect, self.reversal_mti);
        for &n in &self.copy_fields {
            if let Some(v) = original.get(n) {
                r.set(n, v)?;
            }
        }
        r.set(self.reasons.field, self.reasons.code(reason))?;
        let orig_mti = original.mti();
        match &self.original_data {
            OriginalData::Cup => {}
            OriginalData::De90 {
                acquirer,
                forwarding,
            } => {
                crate::original::OriginalDataElements::of(original, acquirer, forwarding)?
                    .write(&mut r)?;
            }
            OriginalData::De56 { acquirer } => {
                let stan = digits(original, 11, 6)?;
                let de12 = original.get(12).unwrap_or_else(|| "0".repeat(12));
                let acq = original.get(32).unwrap_or_else(|| acquirer.clone());
                let v = format!(
                    "{}{}{:0>12}{:02}{}",
                    orig_mti.as_str(),
                    stan,
                    de12,
                    acq.len(),
                    acq
                );
                r.set(56, v)?;
                r.set(24, "400")?;
            }
        }
        Ok(r)
    }

    /// Fills what the engine assigns when absent: DE 11 (`stan`) and, in `cup-pos`,
    /// DE 60 = `22` + batch + `000`.
    ///
    /// # Errors
    /// Codec errors.
    pub fn stamp(&self, msg: &mut Message, stan: u32, batch: u32) -> Result<()> {
        if !msg.has(11) {
            msg.set(11, format!("{:06}", stan % 1_000_000))?;
        }
        if self.batch_in_de60 && !msg.has(60) {
            msg.set(60, format!("22{:06}000", batch % 1_000_000))?;
        }
        Ok(())
    }

    /// The batch of a message: DE 60.2 in `cup-pos`, `None` elsewhere or when absent.
    pub fn batch_of(&self, msg: &Message) -> Option<u32> {
        if !self.batch_in_de60 {
            return None;
        }
        msg.field(60)?.subfield(1)?.parse().ok()
    }

    /// DE 11 as a number.
    ///
    /// # Errors
    /// [`ReversalError::MissingField`] / [`ReversalError::BadField`].
    pub fn stan_of(&self, msg: &Message) -> Result<u32> {
        let f = msg.field(11).ok_or(ReversalError::MissingField {
            field: 11,
            what: "STAN",
        })?;
        f.text().parse().map_err(|_| ReversalError::BadField {
            field: 11,
            what: "STAN",
        })
    }

    /// The host's matching key: DE 41 + DE 42 + batch + STAN.
    ///
    /// - `cup-pos`: batch DE 60.2, STAN DE 11.
    /// - ISO 1987 ([`OriginalData::De90`]): batch 0, STAN DE 11; a reversal that carries
    ///   DE 90 is keyed by the original STAN it names (positions 5–10), not by its own
    ///   DE 11: an acquirer may give each reversal a STAN of its own.
    /// - ISO 1993 ([`OriginalData::De56`]): batch 0, STAN DE 11, or for a reversal with
    ///   DE 56 the original's STAN it names (positions 5–10).
    ///
    /// # Errors
    /// Missing or bad DE 11, 41 or 42; a DE 90/56 whose original STAN is not digits.
    pub fn key_of(&self, msg: &Message) -> Result<TxnKey> {
        let terminal = msg.get(41).ok_or(ReversalError::MissingField {
            field: 41,
            what: "terminal ID",
        })?;
        let merchant = msg.get(42).ok_or(ReversalError::MissingField {
            field: 42,
            what: "merchant ID",
        })?;
        let reversal = self.is_reversal(msg.mti());
        let (batch, stan) = match &self.original_data {
            OriginalData::Cup => (self.batch_of(msg).unwrap_or(0), self.stan_of(msg)?),
            OriginalData::De90 { .. } => match msg.get(90).filter(|_| reversal) {
                Some(d) => (0, number(&d, 4..10, 90, "original STAN in DE 90")?),
                None => (0, self.stan_of(msg)?),
            },
            OriginalData::De56 { .. } => match msg.get(56).filter(|_| reversal) {
                Some(d) => (0, number(&d, 4..10, 56, "original STAN in DE 56")?),
                None => (0, self.stan_of(msg)?),
            },
        };
        Ok(TxnKey {
            terminal,
            merchant,
            batch,
            stan,
        })
    }

    /// DE 39 of a response as a two-character code (mapped back through
    /// [`ReversalProfile::code_map`]).
    pub fn response_code(&self, msg: &Message) -> Option<[u8; 2]> {
        let f = msg.field(39)?;
        let t = f.text();
        if !self.code_map.is_empty() {
            let code = self
                .code_map
                .iter()
                .find(|(_, w)| *w == t)
                .map_or("05", |(c, _)| c.as_str());
            let b = code.as_bytes();
            return (b.len() == 2).then(|| [b[0], b[1]]);
        }
        let b = t.as_bytes();
        (b.len() == 2).then(|| [b[0], b[1]])
    }

    /// The DE 39 wire form of a two-character code (through
    /// [`ReversalProfile::code_map`]).
    pub fn wire_code(&self, code: [u8; 2]) -> String {
        let c = String::from_utf8_lossy(&code).into_owned();
        self.code_map
            .iter()
            .find(|(k, _)| *k == c)
            .map_or(c, |(_, w)| w.clone())
    }

    /// Whether DE 39 `code` means approved.
    pub fn is_approval(&self, code: [u8; 2]) -> bool {
        self.approval_codes.contains(&code)
    }

    /// The transaction type (DE 3 positions 1–2; `cup-pos` DE 60.1 when DE 3 is absent).
    pub fn txn_type(&self, msg: &Message) -> u8 {
        let from3 = msg
            .get(3)
            .and_then(|p| p.get(..2).and_then(|s| s.parse::<u8>().ok()));
        match from3 {
            Some(t) => t,
            None => self.cup_type(msg).unwrap_or(0),
        }
    }

    fn cup_type(&self, msg: &Message) -> Option<u8> {
        if !self.batch_in_de60 {
            return None;
        }
        msg.field(60)?.subfield(0)?.parse().ok()
    }

    /// Classifies a financial request: kind, foreign card, type, amount, PAN.
    pub fn classify(&self, msg: &Message) -> TxnInfo {
        let txn_type = self.txn_type(msg);
        let kind = match self.cup_type(msg) {
            // cup-pos DE 60.1: 22 sale, 20 completion → debit; 23/21 voids, 25 refund →
            // credit; inquiries and pre-authorizations move no money.
            Some(22 | 20) => TxnKind::Debit,
            Some(23 | 21 | 25) => TxnKind::Credit,
            Some(_) => TxnKind::None,
            None => match txn_type {
                0 | 1 | 9 | 10 | 11 => TxnKind::Debit,
                2 | 20 | 21 | 22 => TxnKind::Credit,
                _ => TxnKind::None,
            },
        };
        let amount = if msg.has(4) {
            msg.amount(4).unwrap_or(Decimal::ZERO)
        } else {
            Decimal::ZERO
        };
        let foreign = msg.get(49).is_some_and(|c| c != self.domestic_currency);
        let pan = msg.get(2).unwrap_or_else(|| {
            msg.get(35)
                .map(|t| t.split(['=', 'D', 'd']).next().unwrap_or("").to_string())
                .unwrap_or_default()
        });
        TxnInfo {
            kind,
            foreign,
            txn_type,
            amount,
            pan,
        }
    }

    /// Whether a transaction of this kind is reversed when in doubt (domain §5: sales,
    /// voids, pre-authorizations and completions are; inquiries and refunds are not, and
    /// no advice is: advices are repeated until answered, see [`is_advice`]).
    pub fn is_reversible(&self, msg: &Message) -> bool {
        if is_advice(msg.mti()) {
            return false;
        }
        match self.cup_type(msg) {
            Some(t) => matches!(t, 10 | 11 | 20 | 21 | 22 | 23),
            None => !matches!(self.txn_type(msg), 20 | 30 | 31),
        }
    }
}

impl TxnInfo {
    /// Writes kind, foreign flag, type, amount and PAN (the journal's and the store's
    /// layout).
    pub(crate) fn write(&self, w: &mut crate::record::Writer<'_>) {
        w.u8(self.kind.to_u8())
            .u8(u8::from(self.foreign))
            .u8(self.txn_type)
            .decimal(self.amount)
            .str(&self.pan);
    }

    /// Reads what [`TxnInfo::write`] wrote.
    pub(crate) fn read(r: &mut crate::record::Reader<'_>) -> Result<TxnInfo> {
        Ok(TxnInfo {
            kind: TxnKind::from_u8(r.u8()?)?,
            foreign: r.u8()? != 0,
            txn_type: r.u8()?,
            amount: r.decimal()?,
            pan: r.str()?.to_string(),
        })
    }
}

/// Whether `mti` is an advice that is stored and forwarded (`0120`, `0220` and their
/// repeats): authorization or financial class, function digit 2. An advice is repeated
/// until answered and never reversed.
pub fn is_advice(mti: Mti) -> bool {
    mti.function() == isoswitch_codec::MessageFunction::Advice
        && matches!(
            mti.class(),
            isoswitch_codec::MessageClass::Authorization | isoswitch_codec::MessageClass::Financial
        )
}

/// Whether `message` (an encoded original, MTI first) could be an advice in any MTI
/// encoding (ASCII, BCD, EBCDIC): for a store that keeps advices apart without knowing
/// the dialect. `false` only when no encoding reads an advice's MTI from its first bytes.
pub fn may_be_advice(message: &[u8]) -> bool {
    use isoswitch_codec::MtiEncoding;
    [MtiEncoding::Ascii, MtiEncoding::Bcd, MtiEncoding::Ebcdic]
        .into_iter()
        .any(|e| Mti::decode(e, message).is_ok_and(is_advice))
}

/// Positions `at` of `v` (field `field`) as a number.
fn number(v: &str, at: std::ops::Range<usize>, field: u8, what: &'static str) -> Result<u32> {
    let bad = || ReversalError::BadField { field, what };
    let part = v.get(at).ok_or_else(bad)?;
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    part.parse().map_err(|_| bad())
}

fn digits(msg: &Message, n: u8, width: usize) -> Result<String> {
    let v = msg.get(n).ok_or(ReversalError::MissingField {
        field: n,
        what: "original data",
    })?;
    Ok(format!("{v:0>width$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advices_are_told_from_their_first_bytes_in_every_builtin_dialect() {
        for name in Dialect::builtin_names() {
            let d = Dialect::builtin(name).unwrap();
            for (n, advice) in [
                (120, true),
                (121, true),
                (220, true),
                (221, true),
                (100, false),
                (200, false),
                (400, false),
                (401, false),
                (420, false),
                (800, false),
                (500, false),
                (320, false),
            ] {
                if !d.allows_mti(mti(n)) {
                    continue;
                }
                let mut m = Message::new(&d, mti(n));
                m.set(11, "000042").unwrap();
                let bytes = m.to_bytes().unwrap();
                assert_eq!(may_be_advice(&bytes), advice, "{name} {n:04}");
            }
        }
        assert!(!may_be_advice(b"original 1"));
        assert!(!may_be_advice(b""));
        assert!(may_be_advice(&[0x02, 0x20, 0, 0]));
        assert!(may_be_advice(&[0xF0, 0xF2, 0xF2, 0xF1]));
    }

    fn sale(p: &ReversalProfile) -> Message {
        let mut m = Message::new(&p.dialect, mti(200));
        m.set(2, "6222021234567890123").unwrap();
        m.set(3, "000000").unwrap();
        m.set(4, "000000012345").unwrap();
        m.set(11, "000042").unwrap();
        m.set(41, "TERM0001").unwrap();
        m.set(42, "MERCHANT0000001").unwrap();
        m.set(49, "156").unwrap();
        m
    }

    #[test]
    fn cup_pos_reversal_copies_identification_and_reason() {
        let p = ReversalProfile::cup_pos().unwrap();
        let mut o = sale(&p);
        o.set(22, "051").unwrap();
        o.set(25, "00").unwrap();
        o.set(35, "6222021234567890123=25121010000000000").unwrap();
        o.set(60, "22000123000").unwrap();
        let r = p.build_reversal(&o, ReversalReason::MacFailure).unwrap();
        assert_eq!(r.mti().as_str(), "0400");
        for n in [2, 3, 4, 11, 22, 25, 41, 42, 49, 60] {
            assert_eq!(r.get(n), o.get(n), "field {n}");
        }
        assert!(!r.has(35));
        assert_eq!(r.get(39).as_deref(), Some("A0"));
        assert_eq!(p.key_of(&r).unwrap(), p.key_of(&o).unwrap());
        assert_eq!(p.key_of(&r).unwrap().batch, 123);
        let info = p.classify(&o);
        assert_eq!(info.kind, TxnKind::Debit);
        assert_eq!(info.amount, Decimal::new(12345, 2));
        assert!(!info.foreign);
        assert!(!format!("{info:?}").contains("6222021234567890123"));
    }

    #[test]
    fn iso87_reversal_has_de90() {
        let p = ReversalProfile::iso87_binary().unwrap();
        let mut o = sale(&p);
        o.set(7, "1125093000").unwrap();
        o.set(32, "123456").unwrap();
        let r = p.build_reversal(&o, ReversalReason::NoResponse).unwrap();
        assert_eq!(
            r.get(90).as_deref(),
            Some("020000004211250930000000012345600000000000")
        );
        assert_eq!(r.get(39).as_deref(), Some("98"));
        assert!(p.classify(&o).foreign);
    }

    #[test]
    fn iso87_reversals_are_keyed_by_the_de90_they_carry() {
        let p = ReversalProfile::iso87_binary().unwrap();
        let mut o = sale(&p);
        o.set(7, "1125093000").unwrap();
        let r = p.build_reversal(&o, ReversalReason::NoResponse).unwrap();
        let key = p.key_of(&o).unwrap();
        assert_eq!((key.batch, key.stan), (0, 42));
        assert_eq!(p.key_of(&r).unwrap(), key);
        // Another acquirer's reversal: its own STAN and DE 7, the original's in DE 90.
        let mut theirs = r.clone();
        theirs.set(11, "000777").unwrap();
        theirs.set(7, "1125093105").unwrap();
        assert_eq!(p.key_of(&theirs).unwrap(), key);
        assert!(matches!(
            number("12AB", 0..4, 90, "x"),
            Err(ReversalError::BadField { field: 90, .. })
        ));
        assert!(number("12", 0..4, 90, "x").is_err());
    }

    #[test]
    fn iso93_reversal_is_1420_with_de56() {
        let p = ReversalProfile::iso93_ascii().unwrap();
        let mut o = sale(&p);
        o.set_mti(mti(1200));
        o.set(12, "261125093000").unwrap();
        let r = p.build_reversal(&o, ReversalReason::Undecodable).unwrap();
        assert_eq!(r.mti().as_str(), "1420");
        assert_eq!(r.get(24).as_deref(), Some("400"));
        assert_eq!(r.get(56).as_deref(), Some("1200000042261125093000010"));
        assert_eq!(r.get(25).as_deref(), Some("4020"));
    }
}
