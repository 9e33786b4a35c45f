//! Errors of the crate: [`NetError`] for framing, connections and configuration, and
//! [`RequestError`] (with [`RejectReason`]) for the outcome of one client request.
//!
//! [`RequestError`] is split by what the caller must do next: a [`RequestError::Rejected`]
//! request was **definitely not sent** (safe to retry as is), while
//! [`RequestError::Timeout`] and [`RequestError::ConnectionLost`] mean the bytes were handed to
//! the socket and **may have been delivered** (a financial request then needs a reversal).

use std::time::Duration;

use crate::correlate::CorrelationKey;
use crate::framing::Framing;

/// Everything that can go wrong in framing, on a connection, or in configuration.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A length prefix announced (or an outgoing frame needs) more bytes than allowed.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// Announced or needed length in bytes (what follows the length prefix).
        len: usize,
        /// Configured (or prefix-imposed) maximum.
        max: usize,
    },
    /// A length prefix announced zero bytes, or an outgoing message is empty.
    #[error("zero-length frame")]
    ZeroLength,
    /// A `cup-pos` frame too short to hold the TPDU, the application header and a message.
    #[error("frame of {len} bytes is shorter than the minimum of {min}")]
    FrameTooShort {
        /// Announced length.
        len: usize,
        /// Minimum length for this framing.
        min: usize,
    },
    /// An `ascii4` length prefix that is not four ASCII decimal digits.
    #[error("invalid ASCII length prefix {prefix:02X?}")]
    InvalidLengthPrefix {
        /// The four bytes received where the digits were expected.
        prefix: [u8; 4],
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame: {buffered} bytes buffered, frame needs {expected:?}")]
    Truncated {
        /// Bytes received for the unfinished frame (prefix included).
        buffered: usize,
        /// Total bytes the frame needs (prefix included), when the prefix was complete.
        expected: Option<usize>,
    },
    /// A frame carries a `cup-pos` header but the framing has none.
    #[error("a frame header was given but framing {framing:?} carries none")]
    UnexpectedHeader {
        /// The framing in use.
        framing: Framing,
    },
    /// A value that must fit in one BCD nibble (0..=15) does not.
    #[error("value {value} does not fit in a nibble")]
    InvalidNibble {
        /// The rejected value.
        value: u8,
    },
    /// A correlation key longer than [`CorrelationKey::MAX_LEN`].
    #[error("correlation key of {len} bytes exceeds {max}")]
    KeyTooLong {
        /// Requested key length.
        len: usize,
        /// Maximum key length.
        max: usize,
    },
    /// The correlator could not find the key in an outgoing message.
    #[error("no correlation key in message: {reason}")]
    NoCorrelationKey {
        /// What was missing or malformed.
        reason: &'static str,
    },
    /// No complete frame arrived within the idle timeout (also bounds slow senders).
    #[error("no complete frame within {after:?}")]
    IdleTimeout {
        /// The configured idle timeout.
        after: Duration,
    },
    /// A write did not complete within the write timeout (slow or dead peer).
    #[error("write did not complete within {after:?}")]
    WriteTimeout {
        /// The configured write timeout.
        after: Duration,
    },
    /// Connecting did not complete within the connect timeout.
    #[error("connect did not complete within {after:?}")]
    ConnectTimeout {
        /// The configured connect timeout.
        after: Duration,
    },
    /// The idle echo test got no answer: the link is considered dead.
    #[error("echo test failed: {0}")]
    EchoFailed(Box<RequestError>),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    PeerClosed,
    /// The client was closed (or gave up reconnecting).
    #[error("client closed")]
    Closed,
    /// A configuration value is out of range.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// Which value and why.
        reason: &'static str,
    },
    /// A message could not be decoded by the ISO 8583 codec (see
    /// [`DialectCorrelator`](crate::correlate::DialectCorrelator)).
    #[error("message does not decode: {0}")]
    Codec(#[from] isoswitch_codec::CodecError),
    /// A server-side TLS handshake failed or timed out (an untrusted or missing client
    /// certificate under mutual TLS, a peer that does not speak TLS...).
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(#[source] std::io::Error),
    /// An operating-system I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a request was not sent. Every reason means **definitely not sent**.
#[derive(Debug, thiserror::Error)]
pub enum RejectReason {
    /// A request with the same correlation key is already in flight.
    #[error("a request with key {0:?} is already in flight")]
    DuplicateKey(CorrelationKey),
    /// The client is closing or closed.
    #[error("client closed")]
    Closed,
    /// No connection is up (connecting, backing off, or the connection dropped before the
    /// request was written).
    #[error("not connected")]
    NotConnected,
    /// The deadline passed while waiting for an in-flight slot (backpressure).
    #[error("no in-flight slot before the deadline")]
    Busy,
    /// The deadline passed while the request was still queued for writing.
    #[error("deadline passed before the request was written")]
    QueueTimeout,
    /// The message could not be framed or correlated.
    #[error("invalid request: {0}")]
    Invalid(NetError),
}

/// The outcome of a failed [`Client::request`](crate::client::Client::request).
///
/// The variants are distinct because a reversal engine acts differently on each:
/// see [`RequestError::maybe_delivered`].
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Not sent at all: the peer cannot have seen it.
    #[error("request rejected (not sent): {0}")]
    Rejected(RejectReason),
    /// Sent, but no response arrived before the deadline: it may have been delivered.
    /// A response arriving later goes to the unmatched handler as
    /// [`UnmatchedKind::Late`](crate::client::UnmatchedKind::Late).
    #[error("no response before the deadline (request was sent and may have been delivered)")]
    Timeout,
    /// Sent, then the connection was lost (or the client closed) before a response
    /// arrived: it may have been delivered.
    #[error("connection lost after the request was sent (it may have been delivered)")]
    ConnectionLost,
}

impl RequestError {
    /// `true` when the bytes were handed to the socket, so the peer may have acted on the
    /// request (`Timeout`, `ConnectionLost`); `false` when it was definitely not sent.
    pub fn maybe_delivered(&self) -> bool {
        !matches!(self, RequestError::Rejected(_))
    }
}

impl From<RejectReason> for RequestError {
    fn from(reason: RejectReason) -> Self {
        RequestError::Rejected(reason)
    }
}
