//! Shared test helpers: a toy message layout and its correlator.
//!
//! Layout: byte 0 is the kind (`Q` request, `R` response, `U` unsolicited), bytes 1..9 the
//! 8-byte key, the rest a body. A response carries the key of its request.
#![allow(dead_code)]

use bytes::{BufMut, Bytes, BytesMut};
use isoswitch_net::{CorrelationKey, Correlator, NetError};

/// Correlates the toy layout by the 8 bytes after the kind byte.
pub struct ToyCorrelator;

impl Correlator for ToyCorrelator {
    fn request_key(&self, msg: &[u8]) -> Result<CorrelationKey, NetError> {
        match msg {
            [b'Q', key @ ..] if key.len() >= 8 => CorrelationKey::new(&key[..8]),
            _ => Err(NetError::NoCorrelationKey {
                reason: "not a toy request",
            }),
        }
    }

    fn response_key(&self, msg: &[u8]) -> Option<CorrelationKey> {
        match msg {
            [b'R', key @ ..] if key.len() >= 8 => CorrelationKey::new(&key[..8]).ok(),
            _ => None,
        }
    }
}

/// A request with key `n` (8 decimal digits) and `body`.
pub fn request(n: u64, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(9 + body.len());
    b.put_u8(b'Q');
    b.put_slice(format!("{n:08}").as_bytes());
    b.put_slice(body);
    b.freeze()
}

/// The response to `req`: same key and body, kind `R`.
pub fn response_to(req: &[u8]) -> Bytes {
    let mut b = BytesMut::from(req);
    b[0] = b'R';
    b.freeze()
}

/// The key number of a toy message.
pub fn key_of(msg: &[u8]) -> u64 {
    std::str::from_utf8(&msg[1..9])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub mod pki;
