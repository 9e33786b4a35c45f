//! Settlement: batch totals, the terminal's [`Settlement`] state machine and the host's
//! [`HostSettlement`] (`cup-pos`, domain §3), and [`Iso87Totals`] for ISO 1987
//! reconciliation (DE 74–77, 86–89, 97; domain §8).
//!
//! ```text
//! terminal                                        host
//! 0500 (48 = totals, 60.3 201) ─────────────────▶ compare with its own totals
//!      ◀─ 0510 (48 pos 31: 1 balanced / 2 not, with the host's totals)
//! not balanced: 0320 × ⌈n/8⌉ (48 = n2 + entries, 60.3 201) ─▶ 0330
//!               0320 end (60.3 202, 48 = count n4) ─▶ 0330
//!               0500 again ─▶ 0510
//! 0820 sign-off (60.3 002) ─▶ 0830;  then the engine closes the batch
//! ```
//!
//! `cup-pos` amounts are in fen (currency 156, 2 decimals): amounts go on the wire as
//! minor units. Counts wrap at 1000 (n3), as terminals do.

use crate::error::{Result, ReversalError};
use crate::profile::{TxnInfo, TxnKind};
use bytes::Bytes;
use isoswitch_codec::{Dialect, Message, Mti};
use rust_decimal::Decimal;
use std::time::{Duration, Instant};

/// Debit and credit totals of one card class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SideTotals {
    /// Sum of debits.
    pub debit_amount: Decimal,
    /// Number of debits.
    pub debit_count: u32,
    /// Sum of credits.
    pub credit_amount: Decimal,
    /// Number of credits.
    pub credit_count: u32,
}

impl SideTotals {
    fn digits(&self, out: &mut String, flag: u8) {
        out.push_str(&format!(
            "{:012}{:03}{:012}{:03}{}",
            minor(self.debit_amount),
            self.debit_count % 1000,
            minor(self.credit_amount),
            self.credit_count % 1000,
            flag
        ));
    }

    fn parse(s: &str) -> Result<(SideTotals, u8)> {
        let n = |a: usize, b: usize| -> Result<u64> {
            s.get(a..b)
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or(ReversalError::BadField {
                    field: 48,
                    what: "settlement totals",
                })
        };
        Ok((
            SideTotals {
                debit_amount: Decimal::new(n(0, 12)? as i64, 2),
                debit_count: n(12, 15)? as u32,
                credit_amount: Decimal::new(n(15, 27)? as i64, 2),
                credit_count: n(27, 30)? as u32,
            },
            n(30, 31)? as u8,
        ))
    }
}

/// Minor units (2 decimals) of a non-negative amount, wrapped to n12.
fn minor(d: Decimal) -> u64 {
    let v = d
        .checked_mul(Decimal::ONE_HUNDRED)
        .unwrap_or(Decimal::ZERO)
        .round();
    u64::try_from(v.mantissa().max(0)).unwrap_or(0) % 1_000_000_000_000
}

/// A terminal batch's totals: domestic and foreign cards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchTotals {
    /// Domestic cards.
    pub domestic: SideTotals,
    /// Foreign cards.
    pub foreign: SideTotals,
}

impl BatchTotals {
    fn side(&mut self, foreign: bool) -> &mut SideTotals {
        if foreign {
            &mut self.foreign
        } else {
            &mut self.domestic
        }
    }

    /// Adds an approved transaction (saturating: never panics; amounts from one message
    /// cannot reach the limits, see [`BatchTotals::checked_add`] for disk input).
    pub fn add(&mut self, info: &TxnInfo) {
        self.add_parts(info.kind, info.foreign, info.amount);
    }

    /// Adds a transaction given by parts (saturating, as [`BatchTotals::add`]).
    pub fn add_parts(&mut self, kind: TxnKind, foreign: bool, amount: Decimal) {
        let s = self.side(foreign);
        match kind {
            TxnKind::Debit => {
                s.debit_amount = s.debit_amount.saturating_add(amount);
                s.debit_count = s.debit_count.saturating_add(1);
            }
            TxnKind::Credit => {
                s.credit_amount = s.credit_amount.saturating_add(amount);
                s.credit_count = s.credit_count.saturating_add(1);
            }
            TxnKind::None => {}
        }
    }

    /// Adds an approved transaction read from disk or a peer.
    ///
    /// # Errors
    /// [`ReversalError::BadRecord`] when an amount or count overflows (nothing changed).
    pub fn checked_add(&mut self, info: &TxnInfo) -> Result<()> {
        let mut one = BatchTotals::default();
        let s = one.side(info.foreign);
        match info.kind {
            TxnKind::Debit => {
                s.debit_amount = info.amount;
                s.debit_count = 1;
            }
            TxnKind::Credit => {
                s.credit_amount = info.amount;
                s.credit_count = 1;
            }
            TxnKind::None => return Ok(()),
        }
        self.checked_merge(&one)
    }

    /// Removes a transaction (it was reversed; saturating, never panics).
    pub fn sub(&mut self, info: &TxnInfo) {
        let s = self.side(info.foreign);
        match info.kind {
            TxnKind::Debit => {
                s.debit_amount = s.debit_amount.saturating_sub(info.amount);
                s.debit_count = s.debit_count.saturating_sub(1);
            }
            TxnKind::Credit => {
                s.credit_amount = s.credit_amount.saturating_sub(info.amount);
                s.credit_count = s.credit_count.saturating_sub(1);
            }
            TxnKind::None => {}
        }
    }

    /// Adds every total of `other` (saturating, never panics).
    pub fn merge(&mut self, other: &BatchTotals) {
        for (a, b) in [
            (&mut self.domestic, &other.domestic),
            (&mut self.foreign, &other.foreign),
        ] {
            a.debit_amount = a.debit_amount.saturating_add(b.debit_amount);
            a.debit_count = a.debit_count.saturating_add(b.debit_count);
            a.credit_amount = a.credit_amount.saturating_add(b.credit_amount);
            a.credit_count = a.credit_count.saturating_add(b.credit_count);
        }
    }

    /// Adds every total of `other` read from disk.
    ///
    /// # Errors
    /// [`ReversalError::BadRecord`] when an amount or count overflows (nothing changed).
    pub fn checked_merge(&mut self, other: &BatchTotals) -> Result<()> {
        let over = || ReversalError::bad("batch totals overflow");
        let mut out = *self;
        for (a, b) in [
            (&mut out.domestic, &other.domestic),
            (&mut out.foreign, &other.foreign),
        ] {
            a.debit_amount = a
                .debit_amount
                .checked_add(b.debit_amount)
                .ok_or_else(over)?;
            a.debit_count = a.debit_count.checked_add(b.debit_count).ok_or_else(over)?;
            a.credit_amount = a
                .credit_amount
                .checked_add(b.credit_amount)
                .ok_or_else(over)?;
            a.credit_count = a
                .credit_count
                .checked_add(b.credit_count)
                .ok_or_else(over)?;
        }
        out.checked_net().ok_or_else(over)?;
        *self = out;
        Ok(())
    }

    /// Debits − credits, `None` when it overflows.
    pub fn checked_net(&self) -> Option<Decimal> {
        self.domestic
            .debit_amount
            .checked_sub(self.domestic.credit_amount)?
            .checked_add(self.foreign.debit_amount)?
            .checked_sub(self.foreign.credit_amount)
    }

    /// Debits − credits over both classes.
    ///
    /// Saturating (never panics); [`BatchTotals::checked_net`] says whether it overflows.
    pub fn net(&self) -> Decimal {
        self.domestic
            .debit_amount
            .saturating_sub(self.domestic.credit_amount)
            .saturating_add(self.foreign.debit_amount)
            .saturating_sub(self.foreign.credit_amount)
    }

    /// The `cup-pos` field 48 (n62) with the given flags (position 31 and 62).
    pub fn to_field48(&self, domestic_flag: u8, foreign_flag: u8) -> String {
        let mut s = String::with_capacity(62);
        self.domestic.digits(&mut s, domestic_flag);
        self.foreign.digits(&mut s, foreign_flag);
        s
    }

    /// Parses field 48 (n62): the totals and the two flags.
    ///
    /// # Errors
    /// [`ReversalError::BadField`] unless 62 digits.
    pub fn parse_field48(s: &str) -> Result<(BatchTotals, u8, u8)> {
        if s.len() != 62 || !s.is_ascii() {
            return Err(ReversalError::BadField {
                field: 48,
                what: "settlement totals (n62)",
            });
        }
        let (domestic, f1) = SideTotals::parse(&s[..31])?;
        let (foreign, f2) = SideTotals::parse(&s[31..])?;
        Ok((BatchTotals { domestic, foreign }, f1, f2))
    }
}

/// One transaction in a batch upload.
#[derive(Clone, PartialEq, Eq)]
pub struct UploadEntry {
    /// Foreign card (card organisation `01`), else domestic (`00`).
    pub foreign: bool,
    /// DE 11.
    pub stan: u32,
    /// The PAN (at most 20 digits).
    pub pan: String,
    /// The amount.
    pub amount: Decimal,
    /// Debit or credit (not on the wire: the host knows it from its records; the upload
    /// of `cup-pos` counts it as a debit).
    pub kind: TxnKind,
}

impl std::fmt::Debug for UploadEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadEntry")
            .field("foreign", &self.foreign)
            .field("stan", &self.stan)
            .field("pan", &crate::profile::mask_pan(&self.pan))
            .field("amount", &self.amount)
            .finish()
    }
}

/// Field 48 of an upload `0320`: count n2 + entries (org n2, STAN n6, PAN n20 right-
/// justified zero-filled, amount n12).
///
/// # Errors
/// More than 8 entries, or a PAN that is not at most 20 digits.
pub fn upload_field48(entries: &[UploadEntry]) -> Result<String> {
    if entries.len() > 8 {
        return Err(ReversalError::Settlement {
            why: "at most 8 entries per upload message",
        });
    }
    let mut s = format!("{:02}", entries.len());
    for e in entries {
        if e.pan.len() > 20 || !e.pan.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ReversalError::BadField {
                field: 48,
                what: "PAN in upload",
            });
        }
        s.push_str(&format!(
            "{}{:06}{:0>20}{:012}",
            if e.foreign { "01" } else { "00" },
            e.stan % 1_000_000,
            e.pan,
            minor(e.amount)
        ));
    }
    Ok(s)
}

/// Parses the field 48 of an upload `0320` (never panics).
///
/// # Errors
/// [`ReversalError::BadField`].
pub fn parse_upload_field48(s: &str) -> Result<Vec<UploadEntry>> {
    let bad = ReversalError::BadField {
        field: 48,
        what: "batch upload entries",
    };
    let count: usize = s
        .get(..2)
        .and_then(|c| c.parse().ok())
        .ok_or(ReversalError::BadField {
            field: 48,
            what: "batch upload count",
        })?;
    if count > 8 || s.len() != 2 + count * 40 || !s.is_ascii() {
        return Err(bad);
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let e = &s[2 + i * 40..2 + (i + 1) * 40];
        let num = |a: usize, b: usize| e.get(a..b).and_then(|t| t.parse::<u64>().ok());
        let (Some(org), Some(stan), Some(amount)) =
            (num(0, 2), num(8, 28).and(num(2, 8)), num(28, 40))
        else {
            return Err(ReversalError::BadField {
                field: 48,
                what: "batch upload entry",
            });
        };
        let pan = e[8..28].trim_start_matches('0').to_string();
        out.push(UploadEntry {
            foreign: org == 1,
            stan: stan as u32,
            pan,
            amount: Decimal::new(amount as i64, 2),
            kind: TxnKind::Debit,
        });
    }
    Ok(out)
}

/// Where a terminal settlement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementState {
    /// First `0500` sent.
    Settling,
    /// Upload `0320`s being sent.
    Uploading,
    /// End-of-upload `0320` sent.
    EndingUpload,
    /// Second `0500` sent.
    Resettling,
    /// Sign-off `0820` sent.
    SigningOff,
    /// Finished: close the batch ([`crate::engine::ReversalEngine::close_batch`]).
    Done,
    /// Gave up (no answer after the retries, or an answer that refused the message:
    /// [`Settlement::refused`]).
    Failed,
}

/// The result of a finished settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettlementOutcome {
    /// Whether the first comparison balanced.
    pub balanced: bool,
    /// Transactions uploaded.
    pub uploaded: usize,
    /// Whether the comparison after the upload balanced.
    pub balanced_after_upload: Option<bool>,
    /// The next batch number.
    pub next_batch: u32,
}

/// Configuration of a [`Settlement`].
#[derive(Debug, Clone)]
pub struct SettlementConfig {
    /// DE 41.
    pub terminal: String,
    /// DE 42.
    pub merchant: String,
    /// DE 63 operator code.
    pub operator: String,
    /// How long to wait for each answer.
    pub timeout: Duration,
    /// Sends of one message before giving up.
    pub max_tries: u32,
    /// Upload even when balanced (end-of-upload 60.3 = `207`).
    pub upload_when_balanced: bool,
}

impl SettlementConfig {
    /// For terminal `terminal` / merchant `merchant`, 30 s, 3 tries.
    pub fn new(terminal: impl Into<String>, merchant: impl Into<String>) -> Self {
        SettlementConfig {
            terminal: terminal.into(),
            merchant: merchant.into(),
            operator: "01".into(),
            timeout: Duration::from_secs(30),
            max_tries: 3,
            upload_when_balanced: false,
        }
    }
}

/// The terminal side of `cup-pos` settlement, sans-IO: `poll_transmit` → send →
/// `handle_response` / `handle_timeout`, until [`SettlementState::Done`].
#[derive(Debug)]
pub struct Settlement {
    config: SettlementConfig,
    dialect: Dialect,
    batch: u32,
    totals: BatchTotals,
    entries: Vec<UploadEntry>,
    next_stan: u32,
    state: SettlementState,
    current: Option<Message>,
    sent: bool,
    tries: u32,
    deadline: Option<Instant>,
    upload_pos: usize,
    balanced: Option<bool>,
    balanced_after: Option<bool>,
    refused: Option<[u8; 2]>,
}

fn mti(n: u16) -> Mti {
    Mti::from_u16(n).unwrap_or(Mti::ZERO)
}

impl Settlement {
    /// Starts settling `batch` with the terminal's `totals` and upload `entries`
    /// (from [`crate::engine::ReversalEngine::settlement_data`]); STANs from `first_stan`.
    ///
    /// # Errors
    /// Codec errors building the first `0500`.
    pub fn new(
        config: SettlementConfig,
        dialect: Dialect,
        batch: u32,
        totals: BatchTotals,
        entries: Vec<UploadEntry>,
        first_stan: u32,
    ) -> Result<Settlement> {
        let mut s = Settlement {
            config,
            dialect,
            batch,
            totals,
            entries,
            next_stan: first_stan.max(1),
            state: SettlementState::Settling,
            current: None,
            sent: false,
            tries: 0,
            deadline: None,
            upload_pos: 0,
            balanced: None,
            balanced_after: None,
            refused: None,
        };
        let m = s.settle_message()?;
        s.set_current(m);
        Ok(s)
    }

    /// Where it is.
    pub fn state(&self) -> SettlementState {
        self.state
    }

    /// The DE 39 of the answer that refused a message (not `00`), which made the
    /// settlement [`SettlementState::Failed`]: the same message would be refused again,
    /// so it is not repeated. `77` asks the terminal to sign on first.
    pub fn refused(&self) -> Option<[u8; 2]> {
        self.refused
    }

    /// STANs used so far end before this one.
    pub fn next_stan(&self) -> u32 {
        self.next_stan
    }

    /// The result, once [`SettlementState::Done`].
    pub fn outcome(&self) -> Option<SettlementOutcome> {
        (self.state == SettlementState::Done).then(|| SettlementOutcome {
            balanced: self.balanced.unwrap_or(false),
            uploaded: self.upload_pos,
            balanced_after_upload: self.balanced_after,
            next_batch: if self.batch >= 999_999 {
                1
            } else {
                self.batch + 1
            },
        })
    }

    fn stan(&mut self) -> String {
        let s = format!("{:06}", self.next_stan % 1_000_000);
        self.next_stan = if self.next_stan >= 999_999 {
            1
        } else {
            self.next_stan + 1
        };
        s
    }

    fn base(&mut self, mti_n: u16, code: &str) -> Result<Message> {
        let mut m = Message::new(&self.dialect, mti(mti_n));
        let stan = self.stan();
        m.set(11, stan)?;
        m.set(41, &self.config.terminal)?;
        m.set(42, &self.config.merchant)?;
        m.set(60, format!("00{:06}{}", self.batch % 1_000_000, code))?;
        Ok(m)
    }

    fn settle_message(&mut self) -> Result<Message> {
        let mut m = self.base(500, "201")?;
        m.set(48, self.totals.to_field48(0, 0))?;
        m.set(49, "156")?;
        m.set(63, self.config.operator.clone())?;
        Ok(m)
    }

    fn set_current(&mut self, m: Message) {
        self.current = Some(m);
        self.sent = false;
        self.tries = 0;
        self.deadline = None;
    }

    /// The next message to send (unsealed bytes: `cup-pos` does not MAC these).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.sent || matches!(self.state, SettlementState::Done | SettlementState::Failed) {
            return None;
        }
        let m = self.current.as_ref()?;
        let bytes = m.to_bytes().ok()?;
        self.sent = true;
        self.tries += 1;
        self.deadline = Some(now + self.config.timeout);
        Some(bytes)
    }

    /// When to call [`Settlement::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// No answer in time: send the same message again, or fail after `max_tries`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(d) = self.deadline {
            if d <= now {
                self.deadline = None;
                if self.tries >= self.config.max_tries {
                    tracing::warn!(state = ?self.state, "settlement: no answer, giving up");
                    self.state = SettlementState::Failed;
                } else {
                    self.sent = false;
                }
            }
        }
    }

    /// Handles the answer to the last message sent.
    ///
    /// # Errors
    /// An answer that does not decode or does not answer the message sent (ignored: the
    /// state does not change).
    pub fn handle_response(&mut self, now: Instant, bytes: Bytes) -> Result<()> {
        // An answer that is not accepted changes nothing: the message sent stays awaited
        // (and is repeated or given up at its deadline).
        let deadline = self.deadline;
        let r = self.apply_response(now, bytes);
        if r.is_err() {
            self.deadline = deadline;
        }
        r
    }

    fn apply_response(&mut self, _now: Instant, bytes: Bytes) -> Result<()> {
        let msg = Message::decode(&self.dialect, bytes)?;
        let Some(cur) = &self.current else {
            return Err(ReversalError::Settlement {
                why: "nothing sent",
            });
        };
        if cur.mti().response_mti() != Some(msg.mti()) || cur.get(11) != msg.get(11) {
            return Err(ReversalError::UnexpectedMessage {
                mti: msg.mti(),
                why: "does not answer the settlement message sent",
            });
        }
        self.deadline = None;
        // Refused (not signed on, unknown terminal, malformed, ...): repeating the same
        // message gets the same answer, and an upload refused is not an upload. A 0510
        // that carries its comparison in DE 48 is a result whatever DE 39 says (hosts
        // answer an out-of-balance batch `95` with the flag in DE 48): it is acted on.
        let compared = matches!(
            self.state,
            SettlementState::Settling | SettlementState::Resettling
        ) && msg
            .get(48)
            .is_some_and(|f| BatchTotals::parse_field48(&f).is_ok());
        if let Some(code) = msg.get(39).filter(|_| !compared) {
            if code != "00" {
                let mut c = [b' '; 2];
                for (d, b) in c.iter_mut().zip(code.bytes()) {
                    *d = b;
                }
                tracing::warn!(state = ?self.state, code = %code, "settlement message refused");
                self.refused = Some(c);
                self.state = SettlementState::Failed;
                self.current = None;
                return Ok(());
            }
        }
        match self.state {
            SettlementState::Settling | SettlementState::Resettling => {
                let f48 = msg.get(48).ok_or(ReversalError::MissingField {
                    field: 48,
                    what: "settlement result",
                })?;
                let (_, flag, _) = BatchTotals::parse_field48(&f48)?;
                let balanced = flag == 1;
                if self.state == SettlementState::Settling {
                    self.balanced = Some(balanced);
                    tracing::info!(batch = self.batch, balanced, "settlement compared");
                    if !balanced || self.config.upload_when_balanced {
                        self.state = SettlementState::Uploading;
                        return self.next_upload();
                    }
                } else {
                    self.balanced_after = Some(balanced);
                }
                self.state = SettlementState::SigningOff;
                let m = self.base(820, "002")?;
                self.set_current(m);
            }
            SettlementState::Uploading => self.next_upload()?,
            SettlementState::EndingUpload => {
                if self.balanced == Some(true) {
                    self.state = SettlementState::SigningOff;
                    let m = self.base(820, "002")?;
                    self.set_current(m);
                } else {
                    self.state = SettlementState::Resettling;
                    let m = self.settle_message()?;
                    self.set_current(m);
                }
            }
            SettlementState::SigningOff => {
                self.state = SettlementState::Done;
                self.current = None;
            }
            SettlementState::Done | SettlementState::Failed => {}
        }
        Ok(())
    }

    fn next_upload(&mut self) -> Result<()> {
        if self.upload_pos < self.entries.len() {
            let end = (self.upload_pos + 8).min(self.entries.len());
            let f48 = upload_field48(&self.entries[self.upload_pos..end])?;
            self.upload_pos = end;
            let mut m = self.base(320, "201")?;
            m.set(48, f48)?;
            self.set_current(m);
        } else {
            self.state = SettlementState::EndingUpload;
            let code = if self.balanced == Some(true) {
                "207"
            } else {
                "202"
            };
            let mut m = self.base(320, code)?;
            m.set(48, format!("{:04}", self.entries.len() % 10_000))?;
            self.set_current(m);
        }
        Ok(())
    }
}

/// The host side of `cup-pos` settlement for one terminal batch: compares totals,
/// accepts upload entries, answers. After an upload, the second `0510` says whether the
/// uploaded detail adds up to the terminal's totals (the host keeps the detail for
/// offline reconciliation).
#[derive(Debug, Clone)]
pub struct HostSettlement {
    host: BatchTotals,
    uploaded: Vec<UploadEntry>,
    upload_ended: bool,
    balanced: Option<bool>,
}

impl HostSettlement {
    /// With the host's own totals of the batch.
    pub fn new(host_totals: BatchTotals) -> Self {
        HostSettlement {
            host: host_totals,
            uploaded: Vec::new(),
            upload_ended: false,
            balanced: None,
        }
    }

    /// The entries uploaded so far.
    pub fn uploaded(&self) -> &[UploadEntry] {
        &self.uploaded
    }

    /// The last comparison.
    pub fn balanced(&self) -> Option<bool> {
        self.balanced
    }

    /// Answers a `0500` or `0320` (other messages: an error).
    ///
    /// # Errors
    /// Codec errors, bad field 48, [`ReversalError::UnexpectedMessage`].
    pub fn handle(&mut self, request: &Message) -> Result<Message> {
        let mut resp = Message::response_to(request)?;
        match request.mti().as_u16() {
            500 => {
                let f48 = request.get(48).ok_or(ReversalError::MissingField {
                    field: 48,
                    what: "settlement totals",
                })?;
                let (terminal, _, _) = BatchTotals::parse_field48(&f48)?;
                let balanced = if self.upload_ended {
                    // The detail must add up to what the terminal claims (debits and
                    // credits are both uploaded with positive amounts).
                    let mut t = BatchTotals::default();
                    for e in &self.uploaded {
                        t.add_parts(TxnKind::Debit, e.foreign, e.amount);
                    }
                    let claims = |s: &SideTotals| {
                        (
                            s.debit_amount + s.credit_amount,
                            s.debit_count + s.credit_count,
                        )
                    };
                    claims(&t.domestic) == claims(&terminal.domestic)
                        && claims(&t.foreign) == claims(&terminal.foreign)
                } else {
                    terminal == self.host
                };
                self.balanced = Some(balanced);
                let flag = if balanced { 1 } else { 2 };
                resp.set(48, self.host.to_field48(flag, flag))?;
                for n in [11, 41, 42, 49, 60] {
                    if let (Some(v), false) = (request.get(n), resp.has(n)) {
                        resp.set(n, v)?;
                    }
                }
                resp.set(39, "00")?;
            }
            320 => {
                let code = request
                    .field(60)
                    .and_then(|f| f.subfield(2).map(|s| s.into_owned()))
                    .unwrap_or_default();
                let f48 = request.get(48).unwrap_or_default();
                if code == "201" {
                    self.uploaded.extend(parse_upload_field48(&f48)?);
                } else {
                    self.upload_ended = true;
                }
                for n in [11, 41, 42, 60] {
                    if let (Some(v), false) = (request.get(n), resp.has(n)) {
                        resp.set(n, v)?;
                    }
                }
                resp.set(39, "00")?;
            }
            _ => {
                return Err(ReversalError::UnexpectedMessage {
                    mti: request.mti(),
                    why: "not a settlement or batch upload message",
                })
            }
        }
        Ok(resp)
    }
}

/// ISO 8583:1987 reconciliation totals (`0500`/`0510`, domain §8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Iso87Totals {
    /// DE 74.
    pub credits_count: u64,
    /// DE 75.
    pub credit_reversals_count: u64,
    /// DE 76.
    pub debits_count: u64,
    /// DE 77.
    pub debit_reversals_count: u64,
    /// DE 86.
    pub credits_amount: Decimal,
    /// DE 87.
    pub credit_reversals_amount: Decimal,
    /// DE 88.
    pub debits_amount: Decimal,
    /// DE 89.
    pub debit_reversals_amount: Decimal,
}

impl Iso87Totals {
    /// Counts a transaction (`reversal`: it was reversed afterwards).
    ///
    /// # Errors
    /// [`ReversalError::BadRecord`] when a count or an amount overflows (the totals are
    /// then unchanged): amounts may come from disk or a peer.
    pub fn add(&mut self, kind: TxnKind, amount: Decimal, reversal: bool) -> Result<()> {
        let (count, total) = match (kind, reversal) {
            (TxnKind::Debit, false) => (&mut self.debits_count, &mut self.debits_amount),
            (TxnKind::Debit, true) => (
                &mut self.debit_reversals_count,
                &mut self.debit_reversals_amount,
            ),
            (TxnKind::Credit, false) => (&mut self.credits_count, &mut self.credits_amount),
            (TxnKind::Credit, true) => (
                &mut self.credit_reversals_count,
                &mut self.credit_reversals_amount,
            ),
            (TxnKind::None, _) => return Ok(()),
        };
        let over = || ReversalError::bad("reconciliation total overflows");
        let c = count.checked_add(1).ok_or_else(over)?;
        let t = total.checked_add(amount).ok_or_else(over)?;
        *count = c;
        *total = t;
        Ok(())
    }

    /// Net: (debits − debit reversals) − (credits − credit reversals).
    ///
    /// Saturating at the decimal range (amounts read from a peer never panic).
    pub fn net(&self) -> Decimal {
        self.debits_amount
            .saturating_sub(self.debit_reversals_amount)
            .saturating_sub(
                self.credits_amount
                    .saturating_sub(self.credit_reversals_amount),
            )
    }

    /// Writes DE 74–77, 86–89 and 97 (`D` + n16 when the net is a debit, `C` otherwise),
    /// amounts in minor units of `exponent` decimals.
    ///
    /// # Errors
    /// Codec errors (e.g. a dialect without these fields).
    pub fn apply(&self, msg: &mut Message, exponent: u32) -> Result<()> {
        let scale = Decimal::from(10u64.pow(exponent.min(18)));
        let m = |d: Decimal| -> u64 {
            let v = d.checked_mul(scale).unwrap_or(Decimal::ZERO).round();
            u64::try_from(v.mantissa().abs()).unwrap_or(0) % 10_000_000_000_000_000
        };
        msg.set(74, format!("{:010}", self.credits_count % 10_000_000_000))?;
        msg.set(
            75,
            format!("{:010}", self.credit_reversals_count % 10_000_000_000),
        )?;
        msg.set(76, format!("{:010}", self.debits_count % 10_000_000_000))?;
        msg.set(
            77,
            format!("{:010}", self.debit_reversals_count % 10_000_000_000),
        )?;
        msg.set(86, format!("{:016}", m(self.credits_amount)))?;
        msg.set(87, format!("{:016}", m(self.credit_reversals_amount)))?;
        msg.set(88, format!("{:016}", m(self.debits_amount)))?;
        msg.set(89, format!("{:016}", m(self.debit_reversals_amount)))?;
        let net = self.net();
        let sign = if net.is_sign_negative() { 'C' } else { 'D' };
        msg.set(97, format!("{sign}{:016}", m(net)))?;
        Ok(())
    }

    /// Reads DE 74–77 and 86–89 (absent fields count as zero).
    ///
    /// # Errors
    /// [`ReversalError::BadField`] for non-numeric values.
    pub fn from_message(msg: &Message, exponent: u32) -> Result<Iso87Totals> {
        let num = |n: u8| -> Result<u64> {
            match msg.get(n) {
                None => Ok(0),
                Some(v) => v.parse().map_err(|_| ReversalError::BadField {
                    field: n,
                    what: "reconciliation total",
                }),
            }
        };
        let amt = |n: u8| -> Result<Decimal> {
            let v = num(n)?;
            Decimal::try_new(i64::try_from(v).unwrap_or(i64::MAX), exponent).map_err(|_| {
                ReversalError::BadField {
                    field: n,
                    what: "reconciliation amount",
                }
            })
        };
        Ok(Iso87Totals {
            credits_count: num(74)?,
            credit_reversals_count: num(75)?,
            debits_count: num(76)?,
            debit_reversals_count: num(77)?,
            credits_amount: amt(86)?,
            credit_reversals_amount: amt(87)?,
            debits_amount: amt(88)?,
            debit_reversals_amount: amt(89)?,
        })
    }

    /// DE 66 settlement code comparing with `other`: `1` in balance, `2` out of balance.
    pub fn settlement_code(&self, other: &Iso87Totals) -> &'static str {
        if self == other {
            "1"
        } else {
            "2"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso87_totals_refuse_an_overflowing_amount_and_keep_what_they_had() {
        let mut t = Iso87Totals::default();
        t.add(TxnKind::Debit, Decimal::MAX, false).unwrap();
        assert!(t.add(TxnKind::Debit, Decimal::MAX, false).is_err());
        assert_eq!((t.debits_count, t.debits_amount), (1, Decimal::MAX));
        t.add(TxnKind::Credit, Decimal::MIN, false).unwrap();
        // Net saturates instead of panicking.
        assert_eq!(t.net(), Decimal::MAX);
    }

    #[test]
    fn field48_round_trips() {
        let mut t = BatchTotals::default();
        t.add_parts(TxnKind::Debit, false, Decimal::new(12345, 2));
        t.add_parts(TxnKind::Credit, false, Decimal::new(100, 2));
        t.add_parts(TxnKind::Debit, true, Decimal::new(5, 2));
        let s = t.to_field48(1, 0);
        assert_eq!(s.len(), 62);
        assert_eq!(&s[..31], "0000000123450010000000001000011");
        assert_eq!(BatchTotals::parse_field48(&s).unwrap(), (t, 1, 0));
        assert!(BatchTotals::parse_field48("12").is_err());
    }

    #[test]
    fn upload_field48_round_trips() {
        let e = |stan, cents| UploadEntry {
            foreign: stan % 2 == 0,
            stan,
            pan: "6222021234567890123".into(),
            amount: Decimal::new(cents, 2),
            kind: TxnKind::Debit,
        };
        let v: Vec<_> = (1..=8).map(|i| e(i, 100 * i as i64)).collect();
        let s = upload_field48(&v).unwrap();
        assert_eq!(s.len(), 2 + 8 * 40);
        assert_eq!(parse_upload_field48(&s).unwrap(), v);
        assert!(upload_field48(&[v.clone(), v.clone()].concat()).is_err());
        assert!(parse_upload_field48("0x").is_err());
    }

    #[test]
    fn iso87_totals_apply_and_read() {
        let d = Dialect::builtin("iso87-binary").unwrap();
        let mut t = Iso87Totals::default();
        t.add(TxnKind::Debit, Decimal::new(1000, 2), false).unwrap();
        t.add(TxnKind::Debit, Decimal::new(300, 2), true).unwrap();
        t.add(TxnKind::Credit, Decimal::new(200, 2), false).unwrap();
        let mut m = Message::new(&d, mti(500));
        t.apply(&mut m, 2).unwrap();
        assert_eq!(m.get(97).as_deref(), Some("D0000000000000500"));
        let back = Iso87Totals::from_message(&m, 2).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.net(), Decimal::new(500, 2));
        assert_eq!(t.settlement_code(&back), "1");
    }
}
