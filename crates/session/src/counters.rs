//! Terminal counters: STAN, batch number and RRN.
//!
//! - [`Stan`] (field 11): 000001–999999; after 999999 comes 000001, never 000000.
//! - [`BatchNumber`] (`cup-pos` field 60.2): 000001–999999, same wrap rule. The terminal
//!   adopts the host's batch from a sign-on response ([`Counters::set_batch`]) and moves
//!   to the next one after settlement or sign-off ([`Counters::next_batch`]).
//! - [`Rrn`] (field 37): 12 characters. Terminals generate a 12-digit sequence
//!   (000000000001–999999999999, wrapping to 1); received RRNs may be any 12 ASCII
//!   alphanumeric or space characters.
//!
//! The [`Counters`] trait lets a terminal keep them where it likes. [`MemoryCounters`]
//! keeps them in memory (tests, hosts that assign nothing). The durable implementation,
//! `isoswitch_reversal::counters::FileCounters`, lives with the rest of the data directory
//! in `isoswitch-reversal` (records in the one CRC-framed file format, values leased in
//! blocks); an implementation hands out no value that it has not made durable first, so
//! no value is handed out twice, even across a crash.

use std::fmt;

use crate::error::{Result, SessionError};

/// Largest STAN and batch number.
pub const MAX_SIX_DIGIT: u32 = 999_999;
/// Largest generated RRN sequence value.
pub const MAX_RRN_SEQUENCE: u64 = 999_999_999_999;

/// A system trace audit number (field 11): 1..=999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stan(u32);

impl Stan {
    /// The first STAN, 000001.
    pub const FIRST: Stan = Stan(1);

    /// A STAN from its value; 0 and values above 999999 are refused.
    pub fn new(value: u32) -> Result<Stan> {
        six_digit("STAN", value).map(Stan)
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The following STAN: 999999 is followed by 000001.
    pub fn next(self) -> Stan {
        Stan(next_six_digit(self.0))
    }
}

impl fmt::Display for Stan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

/// A batch number (`cup-pos` field 60.2): 1..=999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchNumber(u32);

impl BatchNumber {
    /// The first batch, 000001.
    pub const FIRST: BatchNumber = BatchNumber(1);

    /// A batch number from its value; 0 and values above 999999 are refused.
    pub fn new(value: u32) -> Result<BatchNumber> {
        six_digit("batch number", value).map(BatchNumber)
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The following batch number: 999999 is followed by 000001.
    pub fn next(self) -> BatchNumber {
        BatchNumber(next_six_digit(self.0))
    }
}

impl Default for BatchNumber {
    /// Batch 000001.
    fn default() -> BatchNumber {
        BatchNumber::FIRST
    }
}

impl fmt::Display for BatchNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

/// A retrieval reference number (field 37, an12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rrn([u8; 12]);

impl Rrn {
    /// An RRN as received: exactly 12 ASCII letters, digits or spaces.
    pub fn new(text: &str) -> Result<Rrn> {
        let bytes = text.as_bytes();
        if bytes.len() != 12
            || !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b' ')
        {
            return Err(SessionError::BadRrn);
        }
        let mut out = [0u8; 12];
        out.copy_from_slice(bytes);
        Ok(Rrn(out))
    }

    /// The 12-digit, zero-padded RRN for a sequence value 1..=999999999999.
    pub fn from_sequence(value: u64) -> Result<Rrn> {
        if value == 0 || value > MAX_RRN_SEQUENCE {
            return Err(SessionError::CounterOutOfRange {
                counter: "RRN",
                value,
                max: MAX_RRN_SEQUENCE,
            });
        }
        Rrn::new(&format!("{value:012}"))
    }

    /// The 12 ASCII characters.
    pub fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }

    /// The RRN as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Rrn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of all counters: the values the next calls will hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterState {
    /// The STAN [`Counters::next_stan`] returns next.
    pub next_stan: Stan,
    /// The current batch.
    pub batch: BatchNumber,
    /// The sequence value [`Counters::next_rrn`] uses next (1..=999999999999).
    pub next_rrn: u64,
}

impl Default for CounterState {
    fn default() -> CounterState {
        CounterState {
            next_stan: Stan::FIRST,
            batch: BatchNumber::FIRST,
            next_rrn: 1,
        }
    }
}

impl CounterState {
    /// Checks the RRN sequence value (the STAN and batch types are valid by
    /// construction).
    pub fn validate(&self) -> Result<()> {
        check_rrn(self.next_rrn)
    }

    fn after_stan(self) -> CounterState {
        CounterState {
            next_stan: self.next_stan.next(),
            ..self
        }
    }

    fn after_rrn(self) -> CounterState {
        let next = if self.next_rrn >= MAX_RRN_SEQUENCE {
            1
        } else {
            self.next_rrn + 1
        };
        CounterState {
            next_rrn: next,
            ..self
        }
    }
}

/// Where a terminal keeps its counters. Every method that changes a counter makes the
/// change durable (for a persistent implementation) before returning the value.
pub trait Counters {
    /// The current state.
    fn state(&self) -> CounterState;

    /// Takes the next STAN.
    fn next_stan(&mut self) -> Result<Stan>;

    /// The current batch number.
    fn batch(&self) -> BatchNumber {
        self.state().batch
    }

    /// Adopts a batch number (e.g. the host's, from a sign-on response).
    fn set_batch(&mut self, batch: BatchNumber) -> Result<()>;

    /// Moves to the next batch (after settlement or sign-off) and returns it.
    fn next_batch(&mut self) -> Result<BatchNumber> {
        let next = self.batch().next();
        self.set_batch(next)?;
        Ok(next)
    }

    /// Takes the next generated RRN.
    fn next_rrn(&mut self) -> Result<Rrn>;
}

/// Counters held in memory only.
#[derive(Debug, Clone, Default)]
pub struct MemoryCounters {
    state: CounterState,
}

impl MemoryCounters {
    /// Fresh counters: STAN 1, batch 1, RRN 1.
    pub fn new() -> MemoryCounters {
        MemoryCounters::default()
    }

    /// Counters starting from a given state.
    pub fn with_state(state: CounterState) -> Result<MemoryCounters> {
        check_rrn(state.next_rrn)?;
        Ok(MemoryCounters { state })
    }
}

impl Counters for MemoryCounters {
    fn state(&self) -> CounterState {
        self.state
    }

    fn next_stan(&mut self) -> Result<Stan> {
        let stan = self.state.next_stan;
        self.state = self.state.after_stan();
        Ok(stan)
    }

    fn set_batch(&mut self, batch: BatchNumber) -> Result<()> {
        self.state.batch = batch;
        Ok(())
    }

    fn next_rrn(&mut self) -> Result<Rrn> {
        let rrn = Rrn::from_sequence(self.state.next_rrn)?;
        self.state = self.state.after_rrn();
        Ok(rrn)
    }
}

fn six_digit(counter: &'static str, value: u32) -> Result<u32> {
    if value == 0 || value > MAX_SIX_DIGIT {
        Err(SessionError::CounterOutOfRange {
            counter,
            value: u64::from(value),
            max: u64::from(MAX_SIX_DIGIT),
        })
    } else {
        Ok(value)
    }
}

fn next_six_digit(value: u32) -> u32 {
    if value >= MAX_SIX_DIGIT {
        1
    } else {
        value + 1
    }
}

fn check_rrn(value: u64) -> Result<()> {
    if value == 0 || value > MAX_RRN_SEQUENCE {
        Err(SessionError::CounterOutOfRange {
            counter: "RRN",
            value,
            max: MAX_RRN_SEQUENCE,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stan_range_and_wrap() {
        assert!(matches!(
            Stan::new(0),
            Err(SessionError::CounterOutOfRange { value: 0, .. })
        ));
        assert!(matches!(
            Stan::new(1_000_000),
            Err(SessionError::CounterOutOfRange {
                value: 1_000_000,
                ..
            })
        ));
        let last = Stan::new(999_999).expect("stan");
        assert_eq!(last.to_string(), "999999");
        assert_eq!(last.next(), Stan::FIRST);
        assert_eq!(Stan::FIRST.to_string(), "000001");
        assert_eq!(
            BatchNumber::new(999_999).expect("b").next(),
            BatchNumber::FIRST
        );
        assert!(BatchNumber::new(0).is_err());
    }

    #[test]
    fn memory_counters_wrap_without_zero() {
        let mut c = MemoryCounters::with_state(CounterState {
            next_stan: Stan::new(999_998).expect("stan"),
            batch: BatchNumber::new(999_999).expect("batch"),
            next_rrn: MAX_RRN_SEQUENCE,
        })
        .expect("state");
        let got: Vec<String> = (0..4)
            .map(|_| c.next_stan().expect("stan").to_string())
            .collect();
        assert_eq!(got, ["999998", "999999", "000001", "000002"]);
        assert_eq!(c.next_batch().expect("batch").to_string(), "000001");
        assert_eq!(c.next_rrn().expect("rrn").as_str(), "999999999999");
        assert_eq!(c.next_rrn().expect("rrn").as_str(), "000000000001");
    }

    #[test]
    fn rrn_validation() {
        assert_eq!(
            Rrn::new("ABC 12345678").expect("rrn").to_string(),
            "ABC 12345678"
        );
        assert!(matches!(Rrn::new("12345"), Err(SessionError::BadRrn)));
        assert!(matches!(
            Rrn::new("12345678901-"),
            Err(SessionError::BadRrn)
        ));
        assert!(Rrn::from_sequence(0).is_err());
        assert_eq!(
            Rrn::from_sequence(42).expect("rrn").as_str(),
            "000000000042"
        );
    }
}
