//! [`TerminalId`]: who a terminal is — card acceptor terminal ID (DE 41) plus card
//! acceptor ID, the merchant (DE 42).

use std::fmt;

use isoswitch_codec::Message;

use crate::error::{Result, SessionError};

/// Length of DE 41 (`ans8`).
pub const TID_LEN: usize = 8;
/// Length of DE 42 (`ans15`).
pub const MID_LEN: usize = 15;

/// A terminal's identity: DE 41 (8 characters) and DE 42 (15 characters).
///
/// Identifiers are not secret; `Display` shows `TID/MID`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TerminalId {
    terminal: [u8; TID_LEN],
    merchant: [u8; MID_LEN],
}

impl TerminalId {
    /// An identity from the terminal ID (exactly 8 printable ASCII characters) and the
    /// merchant ID (exactly 15).
    pub fn new(terminal: &str, merchant: &str) -> Result<TerminalId> {
        Ok(TerminalId {
            terminal: fixed::<TID_LEN>(terminal.as_bytes(), "terminal ID (DE 41)")?,
            merchant: fixed::<MID_LEN>(merchant.as_bytes(), "merchant ID (DE 42)")?,
        })
    }

    /// The identity carried in DE 41 and DE 42 of `msg`.
    pub fn from_message(msg: &Message) -> Result<TerminalId> {
        let get = |n: u8| {
            msg.field(n)
                .map(|f| f.text())
                .ok_or(SessionError::MissingField {
                    mti: msg.mti(),
                    field: n,
                })
        };
        let t = get(41)?;
        let m = get(42)?;
        let bad = |field| SessionError::BadFieldValue {
            field,
            what: "card acceptor identifier",
        };
        Ok(TerminalId {
            terminal: fixed::<TID_LEN>(t.as_bytes(), "").map_err(|_| bad(41))?,
            merchant: fixed::<MID_LEN>(m.as_bytes(), "").map_err(|_| bad(42))?,
        })
    }

    /// DE 41 text.
    pub fn terminal(&self) -> &str {
        // Invariant: printable ASCII.
        std::str::from_utf8(&self.terminal).unwrap_or("")
    }

    /// DE 42 text.
    pub fn merchant(&self) -> &str {
        std::str::from_utf8(&self.merchant).unwrap_or("")
    }

    /// Sets DE 41 and DE 42 of `msg` to this identity.
    pub fn write_to(&self, msg: &mut Message) -> Result<()> {
        msg.set(41, self.terminal)?;
        msg.set(42, self.merchant)?;
        Ok(())
    }

    /// Whether `msg` carries exactly this identity in DE 41 and DE 42.
    pub fn matches(&self, msg: &Message) -> bool {
        TerminalId::from_message(msg).is_ok_and(|id| id == *self)
    }
}

fn fixed<const N: usize>(b: &[u8], what: &'static str) -> Result<[u8; N]> {
    if b.len() != N || !b.iter().all(|c| (0x20..0x7F).contains(c)) {
        return Err(SessionError::BadTerminalId { what, len: N });
    }
    let mut out = [0u8; N];
    out.copy_from_slice(b);
    Ok(out)
}

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.terminal(), self.merchant())
    }
}

impl fmt::Debug for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TerminalId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_charset_are_checked() {
        let id = TerminalId::new("TERM0001", "MERCHANT0000001").expect("id");
        assert_eq!(id.to_string(), "TERM0001/MERCHANT0000001");
        assert!(matches!(
            TerminalId::new("TERM001", "MERCHANT0000001"),
            Err(SessionError::BadTerminalId { len: 8, .. })
        ));
        assert!(matches!(
            TerminalId::new("TERM0001", "MERCHANT\u{7f}000001"),
            Err(SessionError::BadTerminalId { len: 15, .. })
        ));
    }
}
