//! Transaction kinds and the totals that both sides of a settlement compute.
//!
//! - Terminal settlement (`cup-pos` 0500, field 48): debits are the approved sales of the
//!   batch that were neither reversed nor voided; credits are the approved refunds that
//!   were not reversed (voids cancel their sale and are not counted themselves).
//! - Reconciliation with the host (ISO 1987 0500/0510): DE 76/88 approved sales, DE 77/89
//!   those of them later reversed or voided, DE 74/86 approved refunds, DE 75/87 those of
//!   them reversed, DE 97 the net `(88 − 89) − (86 − 87)` with sign `D` (cardholders
//!   debited) or `C`.

use serde::{Deserialize, Serialize};

/// What a financial transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Debit the card (60.1 `22`).
    Sale,
    /// Cancel an approved sale of the same batch (60.1 `23`, DE 61).
    Void,
    /// Credit the card (60.1 `25`); sent as an advice (0220, repeated as 0221).
    Refund,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Sale => "sale",
            Kind::Void => "void",
            Kind::Refund => "refund",
        })
    }
}

impl Kind {
    /// `cup-pos` 60.1.
    pub fn cup_type(self) -> &'static str {
        match self {
            Kind::Sale => "22",
            Kind::Void => "23",
            Kind::Refund => "25",
        }
    }

    /// From `cup-pos` 60.1.
    pub fn from_cup_type(t: &str) -> Option<Kind> {
        match t {
            "22" => Some(Kind::Sale),
            "23" => Some(Kind::Void),
            "25" => Some(Kind::Refund),
            _ => None,
        }
    }

    /// DE 3 (both dialects).
    pub fn processing_code(self) -> &'static str {
        match self {
            Kind::Sale => "000000",
            Kind::Void => "020000",
            Kind::Refund => "200000",
        }
    }

    /// From DE 3.
    pub fn from_processing_code(p: &str) -> Option<Kind> {
        match p {
            "000000" => Some(Kind::Sale),
            "020000" => Some(Kind::Void),
            "200000" => Some(Kind::Refund),
            _ => None,
        }
    }

    /// The request MTI: 0200, or 0220 for refunds.
    pub fn request_mti(self) -> u16 {
        match self {
            Kind::Refund => 220,
            _ => 200,
        }
    }
}

/// Batch totals of a terminal settlement (domestic cards only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchTotals {
    pub debit_amount: u64,
    pub debit_count: u32,
    pub credit_amount: u64,
    pub credit_count: u32,
}

impl BatchTotals {
    /// Adds an approved, standing sale.
    pub fn add_debit(&mut self, amount: u64) {
        self.debit_amount += amount;
        self.debit_count += 1;
    }

    /// Adds an approved, standing refund.
    pub fn add_credit(&mut self, amount: u64) {
        self.credit_amount += amount;
        self.credit_count += 1;
    }

    /// Debits minus credits, in minor units.
    pub fn net(&self) -> i128 {
        i128::from(self.debit_amount) - i128::from(self.credit_amount)
    }

    /// Field 48 (n62) with settlement flag `flag` (`0` in a request, `1`/`2` in a reply);
    /// the foreign half is zeros. Counts are n3 (the simulators close a batch before 999).
    pub fn field48(&self, flag: char) -> String {
        format!(
            "{:012}{:03}{:012}{:03}{}{:012}{:03}{:012}{:03}0",
            self.debit_amount % 1_000_000_000_000,
            self.debit_count % 1000,
            self.credit_amount % 1_000_000_000_000,
            self.credit_count % 1000,
            flag,
            0,
            0,
            0,
            0
        )
    }

    /// Parses field 48: the domestic totals and the flag.
    pub fn parse_field48(s: &str) -> Option<(BatchTotals, char)> {
        if s.len() < 31 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n = |a: usize, b: usize| s.get(a..b)?.parse::<u64>().ok();
        Some((
            BatchTotals {
                debit_amount: n(0, 12)?,
                debit_count: u32::try_from(n(12, 15)?).ok()?,
                credit_amount: n(15, 27)?,
                credit_count: u32::try_from(n(27, 30)?).ok()?,
            },
            char::from(*s.as_bytes().get(30)?),
        ))
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        format!(
            "debits {} × {}, credits {} × {}",
            self.debit_count,
            cents(i128::from(self.debit_amount)),
            self.credit_count,
            cents(i128::from(self.credit_amount))
        )
    }
}

/// Reconciliation totals (ISO 8583:1987 DE 74–77, 86–89, 97).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconTotals {
    pub credits: u64,
    pub credit_reversals: u64,
    pub debits: u64,
    pub debit_reversals: u64,
    pub credits_amount: u64,
    pub credit_reversals_amount: u64,
    pub debits_amount: u64,
    pub debit_reversals_amount: u64,
}

/// `debits 12 (1234.50), debit reversals 1 (10.00), credits …, net 1224.50`: amounts as
/// a person reads them.
impl std::fmt::Display for ReconTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = |v: u64| cents(i128::from(v));
        write!(
            f,
            "debits {} ({}), debit reversals {} ({}), credits {} ({}), credit reversals {} ({}), net {}",
            self.debits,
            c(self.debits_amount),
            self.debit_reversals,
            c(self.debit_reversals_amount),
            self.credits,
            c(self.credits_amount),
            self.credit_reversals,
            c(self.credit_reversals_amount),
            cents(self.net())
        )
    }
}

impl ReconTotals {
    /// Counts one upstream transaction in its final state.
    pub fn count(&mut self, kind: Kind, approved: bool, undone: bool, amount: u64) {
        if !approved {
            return;
        }
        match kind {
            Kind::Sale => {
                self.debits += 1;
                self.debits_amount += amount;
                if undone {
                    self.debit_reversals += 1;
                    self.debit_reversals_amount += amount;
                }
            }
            Kind::Refund => {
                self.credits += 1;
                self.credits_amount += amount;
                if undone {
                    self.credit_reversals += 1;
                    self.credit_reversals_amount += amount;
                }
            }
            Kind::Void => {}
        }
    }

    /// As [`ReconTotals::count`], checked (for amounts read back from disk): `None`,
    /// changing nothing, when a total would overflow.
    pub fn checked_count(
        &mut self,
        kind: Kind,
        approved: bool,
        undone: bool,
        amount: u64,
    ) -> Option<()> {
        if !approved {
            return Some(());
        }
        let mut t = *self;
        let (count, total, rev_count, rev_total) = match kind {
            Kind::Sale => (
                &mut t.debits,
                &mut t.debits_amount,
                &mut t.debit_reversals,
                &mut t.debit_reversals_amount,
            ),
            Kind::Refund => (
                &mut t.credits,
                &mut t.credits_amount,
                &mut t.credit_reversals,
                &mut t.credit_reversals_amount,
            ),
            Kind::Void => return Some(()),
        };
        *count = count.checked_add(1)?;
        *total = total.checked_add(amount)?;
        if undone {
            *rev_count = rev_count.checked_add(1)?;
            *rev_total = rev_total.checked_add(amount)?;
        }
        *self = t;
        Some(())
    }

    /// `(88 − 89) − (86 − 87)`.
    pub fn net(&self) -> i128 {
        (i128::from(self.debits_amount) - i128::from(self.debit_reversals_amount))
            - (i128::from(self.credits_amount) - i128::from(self.credit_reversals_amount))
    }

    /// As the `isoswitch-reversal` crate's totals (amounts in currency units, 2 decimals).
    pub fn to_iso87(&self) -> crate::reversal::Iso87Totals {
        let d = |v: u64| crate::reversal::Decimal::new(i64::try_from(v).unwrap_or(i64::MAX), 2);
        crate::reversal::Iso87Totals {
            credits_count: self.credits,
            credit_reversals_count: self.credit_reversals,
            debits_count: self.debits,
            debit_reversals_count: self.debit_reversals,
            credits_amount: d(self.credits_amount),
            credit_reversals_amount: d(self.credit_reversals_amount),
            debits_amount: d(self.debits_amount),
            debit_reversals_amount: d(self.debit_reversals_amount),
        }
    }

    /// From the crate's totals (amounts rounded to minor units).
    pub fn from_iso87(t: &crate::reversal::Iso87Totals) -> ReconTotals {
        let m = |v: crate::reversal::Decimal| {
            let mut x = v;
            x.rescale(2);
            u64::try_from(x.mantissa()).unwrap_or(0)
        };
        ReconTotals {
            credits: t.credits_count,
            credit_reversals: t.credit_reversals_count,
            debits: t.debits_count,
            debit_reversals: t.debit_reversals_count,
            credits_amount: m(t.credits_amount),
            credit_reversals_amount: m(t.credit_reversals_amount),
            debits_amount: m(t.debits_amount),
            debit_reversals_amount: m(t.debit_reversals_amount),
        }
    }

    /// Writes DE 74–77, 86–89 and 97 (through the crate's [`Iso87Totals::apply`]).
    ///
    /// [`Iso87Totals::apply`]: crate::reversal::Iso87Totals::apply
    pub fn write(&self, m: &mut crate::codec::Message) -> super::Result<()> {
        self.to_iso87().apply(m, 2)?;
        Ok(())
    }

    /// Reads DE 74–77, 86–89 (absent fields count as zero).
    pub fn read(m: &crate::codec::Message) -> super::Result<ReconTotals> {
        Ok(ReconTotals::from_iso87(
            &crate::reversal::Iso87Totals::from_message(m, 2)?,
        ))
    }

    /// DE 66: `1` in balance with `other`, `2` out of balance.
    pub fn settlement_code(&self, other: &ReconTotals) -> &'static str {
        self.to_iso87().settlement_code(&other.to_iso87())
    }
}

/// Minor units as `1234.56` (two decimals).
pub fn cents(v: i128) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field48_round_trips_and_has_the_flag_at_position_31() {
        let t = BatchTotals {
            debit_amount: 123_456,
            debit_count: 12,
            credit_amount: 999,
            credit_count: 1,
        };
        let s = t.field48('1');
        assert_eq!(s.len(), 62);
        assert_eq!(&s[30..31], "1");
        assert_eq!(BatchTotals::parse_field48(&s), Some((t, '1')));
        assert_eq!(cents(-12345), "-123.45");
    }
}
