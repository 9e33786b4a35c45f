//! Pairing responses with requests: the [`Correlator`] trait and the small inline
//! [`CorrelationKey`] it produces.
//!
//! The client never looks inside a message; it asks the correlator for a key when a request
//! goes out and again for every message that comes in. A dialect-aware correlator (terminal
//! ID + STAN + MTI class) is provided by the layer that knows the message format.

use std::fmt;
use std::hash::{Hash, Hasher};

use crate::error::NetError;

/// A short owned key, stored inline (no allocation), at most [`CorrelationKey::MAX_LEN`]
/// bytes. Used to pair responses with requests, and as the terminal key of the server's
/// rate limiter ([`TerminalKey`]).
#[derive(Clone, Copy)]
pub struct CorrelationKey {
    len: u8,
    bytes: [u8; CorrelationKey::MAX_LEN],
}

/// The key the server's rate limiter counts by (e.g. DE 41, the terminal ID).
pub type TerminalKey = CorrelationKey;

impl CorrelationKey {
    /// Maximum key length in bytes.
    pub const MAX_LEN: usize = 32;

    /// A key holding a copy of `bytes`.
    ///
    /// # Errors
    /// [`NetError::KeyTooLong`] when `bytes` is longer than [`Self::MAX_LEN`].
    pub fn new(bytes: &[u8]) -> Result<Self, NetError> {
        Self::from_parts(&[bytes])
    }

    /// A key made of the concatenation of `parts` (e.g. terminal ID, STAN, MTI class).
    /// Callers that need unambiguous keys should use fixed-width parts.
    ///
    /// # Errors
    /// [`NetError::KeyTooLong`] when the parts add up to more than [`Self::MAX_LEN`].
    pub fn from_parts(parts: &[&[u8]]) -> Result<Self, NetError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > Self::MAX_LEN {
            return Err(NetError::KeyTooLong {
                len,
                max: Self::MAX_LEN,
            });
        }
        let mut bytes = [0u8; Self::MAX_LEN];
        let mut at = 0;
        for part in parts {
            bytes[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok(Self {
            len: len as u8,
            bytes,
        })
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Length of the key in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// `true` for the empty key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl PartialEq for CorrelationKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for CorrelationKey {}

impl Hash for CorrelationKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for CorrelationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CorrelationKey(\"")?;
        for &b in self.as_bytes() {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "\\x{b:02X}")?;
            }
        }
        write!(f, "\")")
    }
}

/// Extracts the key that pairs a response with its request.
///
/// `request_key` of a request and `response_key` of its response must return equal keys;
/// two requests in flight at the same time must have different keys.
pub trait Correlator: Send + Sync + 'static {
    /// The key of an outgoing request.
    ///
    /// # Errors
    /// When the message carries no usable key; the request is then rejected unsent.
    fn request_key(&self, msg: &[u8]) -> Result<CorrelationKey, NetError>;

    /// The key of an incoming message, or `None` when it is not a response (a
    /// host-initiated request, for instance), which then goes to the unmatched handler.
    fn response_key(&self, msg: &[u8]) -> Option<CorrelationKey>;
}

impl<C: Correlator + ?Sized> Correlator for std::sync::Arc<C> {
    fn request_key(&self, msg: &[u8]) -> Result<CorrelationKey, NetError> {
        (**self).request_key(msg)
    }

    fn response_key(&self, msg: &[u8]) -> Option<CorrelationKey> {
        (**self).response_key(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_compare_by_content_only() {
        let a = CorrelationKey::from_parts(&[b"TERM0001", b"000123"]).unwrap();
        let b = CorrelationKey::new(b"TERM0001000123").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 14);
        let set: HashSet<_> = [a, b].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert_ne!(a, CorrelationKey::new(b"TERM0001000124").unwrap());
    }

    #[test]
    fn too_long_key_is_an_error() {
        let long = [b'x'; 33];
        assert!(matches!(
            CorrelationKey::new(&long),
            Err(NetError::KeyTooLong { len: 33, max: 32 })
        ));
        assert!(CorrelationKey::new(&long[..32]).is_ok());
    }

    #[test]
    fn debug_escapes_binary() {
        let k = CorrelationKey::new(b"T1\x00").unwrap();
        assert_eq!(format!("{k:?}"), "CorrelationKey(\"T1\\x00\")");
    }
}
