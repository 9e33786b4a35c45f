//! Pairing responses with requests: the [`Correlator`] trait and the small inline
//! [`CorrelationKey`] it produces.
//!
//! The client never looks inside a message; it asks the correlator for a key when a request
//! goes out and again for every message that comes in. [`DialectCorrelator`] is the ISO 8583
//! one (response MTI + DE 41 terminal ID + DE 11 STAN), reading messages through
//! `isoswitch_codec::MessageView`; any other layout can implement [`Correlator`].

use std::fmt;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use isoswitch_codec::{Dialect, Message, MessageView, Mti};

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

    /// The key of an outgoing request and its MTI (for the metrics' `mti` label), read in
    /// one pass. The default calls [`Correlator::request_key`] and reports no MTI.
    ///
    /// # Errors
    /// As [`Correlator::request_key`].
    fn inspect_request(&self, msg: &[u8]) -> Result<(CorrelationKey, Option<Mti>), NetError> {
        Ok((self.request_key(msg)?, None))
    }

    /// Everything the client reads from one incoming message, in one pass: its key and,
    /// for the metrics and the caller, its MTI, response code and decoded form. The
    /// default calls [`Correlator::response_key`] and reports nothing else.
    fn inspect_response(&self, msg: &Bytes) -> Inspected {
        Inspected {
            key: self.response_key(msg),
            ..Inspected::default()
        }
    }

    /// The MTI of a message, if it can be read cheaply (for the metrics' `mti` label of
    /// messages that are not requests, such as [`Client::send`](crate::client::Client::send)).
    /// The default reports none.
    fn mti(&self, msg: &[u8]) -> Option<Mti> {
        let _ = msg;
        None
    }
}

/// What [`Correlator::inspect_response`] read from an incoming message.
#[derive(Clone, Debug, Default)]
pub struct Inspected {
    /// The response key; `None` when the message is not a response.
    pub key: Option<CorrelationKey>,
    /// The MTI, when known.
    pub mti: Option<Mti>,
    /// The response code (DE 39 content as text bytes), when the message has one.
    pub rc: Option<[u8; 2]>,
    /// The message decoded, when the correlator decodes into a [`Message`]: handed to the
    /// requester by [`Client::request_decoded`](crate::client::Client::request_decoded) so
    /// that it need not decode the response again.
    pub message: Option<Message>,
}

impl<C: Correlator + ?Sized> Correlator for std::sync::Arc<C> {
    fn request_key(&self, msg: &[u8]) -> Result<CorrelationKey, NetError> {
        (**self).request_key(msg)
    }

    fn response_key(&self, msg: &[u8]) -> Option<CorrelationKey> {
        (**self).response_key(msg)
    }

    fn inspect_request(&self, msg: &[u8]) -> Result<(CorrelationKey, Option<Mti>), NetError> {
        (**self).inspect_request(msg)
    }

    fn inspect_response(&self, msg: &Bytes) -> Inspected {
        (**self).inspect_response(msg)
    }

    fn mti(&self, msg: &[u8]) -> Option<Mti> {
        (**self).mti(msg)
    }
}

/// Pairs ISO 8583 responses with requests by **response MTI + DE 41 (terminal ID) + DE 11
/// (STAN)**, decoding with a [`Dialect`] (zero-copy [`MessageView`]).
///
/// A request's key uses the MTI of its expected response (`0200` → `0210`, `0401` →
/// `0410`, `0820` → `0830`), so it equals the key of the response; the MTI class is part of
/// it, so a `0200` and a `0400` with the same terminal and STAN do not collide. Incoming
/// messages whose MTI is not a response (host-initiated requests) or that do not decode are
/// not responses (`None`): they go to the client's unmatched handler.
#[derive(Clone, Debug)]
pub struct DialectCorrelator {
    dialect: Dialect,
}

impl DialectCorrelator {
    /// A correlator for messages of `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        Self { dialect }
    }

    /// The dialect messages are decoded with.
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    fn key(view: &MessageView<'_>, mti: Mti) -> Result<CorrelationKey, NetError> {
        Self::key_of(view.raw(41), view.raw(11), mti)
    }

    fn key_of(
        terminal: Option<&[u8]>,
        stan: Option<&[u8]>,
        mti: Mti,
    ) -> Result<CorrelationKey, NetError> {
        let terminal = terminal.ok_or(NetError::NoCorrelationKey {
            reason: "DE 41 (terminal ID) absent",
        })?;
        let stan = stan.ok_or(NetError::NoCorrelationKey {
            reason: "DE 11 (STAN) absent",
        })?;
        let terminal_len = u8::try_from(terminal.len()).map_err(|_| NetError::KeyTooLong {
            len: terminal.len(),
            max: CorrelationKey::MAX_LEN,
        })?;
        // The terminal length keeps (terminal, STAN) pairs unambiguous.
        CorrelationKey::from_parts(&[mti.digits(), &[terminal_len], terminal, stan])
    }
}

impl Correlator for DialectCorrelator {
    fn request_key(&self, msg: &[u8]) -> Result<CorrelationKey, NetError> {
        let view = MessageView::decode(&self.dialect, msg)?;
        let response = view
            .mti()
            .response_mti()
            .ok_or(NetError::NoCorrelationKey {
                reason: "the MTI expects no response",
            })?;
        Self::key(&view, response)
    }

    fn response_key(&self, msg: &[u8]) -> Option<CorrelationKey> {
        let view = MessageView::decode(&self.dialect, msg).ok()?;
        let mti = view.mti();
        if !mti.is_response() {
            return None;
        }
        Self::key(&view, mti).ok()
    }

    fn inspect_request(&self, msg: &[u8]) -> Result<(CorrelationKey, Option<Mti>), NetError> {
        let view = MessageView::decode(&self.dialect, msg)?;
        let mti = view.mti();
        let response = mti.response_mti().ok_or(NetError::NoCorrelationKey {
            reason: "the MTI expects no response",
        })?;
        Ok((Self::key(&view, response)?, Some(mti)))
    }

    /// One zero-copy [`Message::decode`] gives the key, the MTI, DE 39 and the message
    /// itself. A message that does not decode is not a response (its MTI is still read).
    fn inspect_response(&self, msg: &Bytes) -> Inspected {
        let Ok(message) = Message::decode(&self.dialect, msg.clone()) else {
            return Inspected {
                mti: self.mti(msg),
                ..Inspected::default()
            };
        };
        let mti = message.mti();
        let raw = |n| message.field(n).map(|f| f.raw());
        let key = if mti.is_response() {
            Self::key_of(raw(41), raw(11), mti).ok()
        } else {
            None
        };
        let rc = message
            .field(39)
            .and_then(|f| <[u8; 2]>::try_from(f.text().as_bytes()).ok());
        Inspected {
            key,
            mti: Some(mti),
            rc,
            message: Some(message),
        }
    }

    fn mti(&self, msg: &[u8]) -> Option<Mti> {
        Mti::decode(self.dialect.mti_encoding(), msg).ok()
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

    fn build(dialect: &Dialect, mti: &str, fields: &[(u8, &str)]) -> bytes::Bytes {
        let mut m = isoswitch_codec::Message::new(dialect, mti.parse().unwrap());
        for (n, v) in fields {
            m.set(*n, v).unwrap();
        }
        m.to_bytes().unwrap()
    }

    #[test]
    fn dialect_correlator_pairs_response_with_request() {
        for name in ["iso87-ascii", "iso87-binary", "cup-pos"] {
            let d = Dialect::builtin(name).unwrap();
            let c = DialectCorrelator::new(d.clone());
            let req = build(
                &d,
                "0200",
                &[
                    (3, "000000"),
                    (4, "000000001000"),
                    (11, "000123"),
                    (41, "TERM0001"),
                ],
            );
            let resp = build(&d, "0210", &[(11, "000123"), (39, "00"), (41, "TERM0001")]);
            let key = c.request_key(&req).unwrap();
            assert_eq!(c.response_key(&resp), Some(key), "{name}");
            // A request coming in is not a response.
            assert_eq!(c.response_key(&req), None);
            // Other STAN, other terminal, other class: other keys.
            let other_stan = build(&d, "0210", &[(11, "000124"), (39, "00"), (41, "TERM0001")]);
            let other_term = build(&d, "0210", &[(11, "000123"), (39, "00"), (41, "TERM0002")]);
            let reversal = build(&d, "0410", &[(11, "000123"), (39, "00"), (41, "TERM0001")]);
            for other in [other_stan, other_term, reversal] {
                assert_ne!(c.response_key(&other), Some(key), "{name}");
            }
            // A repeat reversal pairs with the plain reversal response.
            let rev_repeat = build(&d, "0401", &[(11, "000123"), (41, "TERM0001")]);
            let rev_resp = build(&d, "0410", &[(11, "000123"), (39, "00"), (41, "TERM0001")]);
            assert_eq!(
                c.response_key(&rev_resp),
                Some(c.request_key(&rev_repeat).unwrap())
            );
        }
    }

    #[test]
    fn inspect_reads_key_mti_and_code_in_one_decode() {
        for name in ["iso87-ascii", "iso87-binary", "iso87-ebcdic", "cup-pos"] {
            let d = Dialect::builtin(name).unwrap();
            let c = DialectCorrelator::new(d.clone());
            let req = build(
                &d,
                "0200",
                &[(3, "000000"), (11, "000123"), (41, "TERM0001")],
            );
            let (key, mti) = c.inspect_request(&req).unwrap();
            assert_eq!(key, c.request_key(&req).unwrap(), "{name}");
            assert_eq!(mti.map(|m| m.as_u16()), Some(200));
            let resp = build(&d, "0210", &[(11, "000123"), (39, "A0"), (41, "TERM0001")]);
            let seen = c.inspect_response(&resp);
            assert_eq!(seen.key, Some(key), "{name}");
            assert_eq!(seen.mti.map(|m| m.as_u16()), Some(210));
            assert_eq!(seen.rc, Some(*b"A0"), "{name}");
            let message = seen.message.expect("decoded");
            assert_eq!(message.get(39).as_deref(), Some("A0"));
            // Not a response: no key, still the MTI.
            let seen = c.inspect_response(&req);
            assert_eq!((seen.key, seen.mti.map(|m| m.as_u16())), (None, Some(200)));
            assert_eq!(c.mti(&resp).map(|m| m.as_u16()), Some(210));
        }
        let c = DialectCorrelator::new(Dialect::builtin("iso87-ascii").unwrap());
        let seen = c.inspect_response(&Bytes::from_static(b"0210garbage"));
        assert!(seen.key.is_none() && seen.message.is_none());
        assert_eq!(seen.mti.map(|m| m.as_u16()), Some(210));
    }

    #[test]
    fn dialect_correlator_errors() {
        let d = Dialect::builtin("iso87-ascii").unwrap();
        let c = DialectCorrelator::new(d.clone());
        let no_tid = build(&d, "0200", &[(11, "000123")]);
        assert!(matches!(
            c.request_key(&no_tid),
            Err(NetError::NoCorrelationKey { .. })
        ));
        let response = build(&d, "0210", &[(11, "000123"), (41, "TERM0001")]);
        assert!(matches!(
            c.request_key(&response),
            Err(NetError::NoCorrelationKey { .. })
        ));
        assert!(matches!(c.request_key(b"02"), Err(NetError::Codec(_))));
        assert_eq!(c.response_key(b"garbage"), None);
    }

    #[test]
    fn debug_escapes_binary() {
        let k = CorrelationKey::new(b"T1\x00").unwrap();
        assert_eq!(format!("{k:?}"), "CorrelationKey(\"T1\\x00\")");
    }
}
