//! Response codes (DE 39) the session layer produces or acts on.
//!
//! | code | constant | who sends it, when |
//! |---|---|---|
//! | `00` | [`ResponseCode::APPROVED`] | host: sign-on, echo, sign-off done |
//! | `30` | [`ResponseCode::FORMAT_ERROR`] | host: a request without a usable DE 11, 41 or 42 |
//! | `77` | [`ResponseCode::SIGN_ON_AGAIN`] | host: a registered terminal that is not signed on |
//! | `94` | [`ResponseCode::DUPLICATE`] | host: a STAN replayed within the session |
//! | `96` | [`ResponseCode::SYSTEM_MALFUNCTION`] | host: session table full, key generation failed |
//! | `97` | [`ResponseCode::NOT_REGISTERED`] | host: a terminal absent from the key store |
//! | `A0` | [`ResponseCode::MAC_FAILED`] | host: the request's MAC did not verify |
//!
//! A terminal that receives `A0` or `77` in an authentic response goes back to sign-on.

use std::fmt;

use isoswitch_codec::Message;

/// A two-character response code (DE 39, `an2`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseCode([u8; 2]);

impl ResponseCode {
    /// `00` approved / done.
    pub const APPROVED: ResponseCode = ResponseCode(*b"00");
    /// `30` format error.
    pub const FORMAT_ERROR: ResponseCode = ResponseCode(*b"30");
    /// `77` sign on again (batch or session mismatch).
    pub const SIGN_ON_AGAIN: ResponseCode = ResponseCode(*b"77");
    /// `94` duplicate transmission.
    pub const DUPLICATE: ResponseCode = ResponseCode(*b"94");
    /// `96` system malfunction.
    pub const SYSTEM_MALFUNCTION: ResponseCode = ResponseCode(*b"96");
    /// `97` terminal not registered.
    pub const NOT_REGISTERED: ResponseCode = ResponseCode(*b"97");
    /// `A0` MAC verification failed.
    pub const MAC_FAILED: ResponseCode = ResponseCode(*b"A0");

    /// A code from its two characters (ASCII letters or digits).
    pub fn new(code: [u8; 2]) -> Option<ResponseCode> {
        code.iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(ResponseCode(code))
    }

    /// The code in DE 39 of `msg`, if present and well formed.
    pub fn of(msg: &Message) -> Option<ResponseCode> {
        let f = msg.field(39)?;
        let text = f.text();
        let b = text.as_bytes();
        if b.len() != 2 {
            return None;
        }
        ResponseCode::new([b[0], b[1]])
    }

    /// The two characters.
    pub fn as_str(&self) -> &str {
        // Invariant: two ASCII alphanumerics.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// Whether this is `00`.
    pub fn is_approved(&self) -> bool {
        *self == ResponseCode::APPROVED
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseCode({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_validated_and_shown() {
        assert_eq!(ResponseCode::new(*b"A0"), Some(ResponseCode::MAC_FAILED));
        assert_eq!(ResponseCode::new(*b" 0"), None);
        assert_eq!(ResponseCode::DUPLICATE.to_string(), "94");
        assert!(ResponseCode::APPROVED.is_approved());
        assert!(!ResponseCode::SIGN_ON_AGAIN.is_approved());
    }
}
