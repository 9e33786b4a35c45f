//! The crate's error type. No variant carries key material, a clear PIN or a PIN
//! block: errors are logged.

use std::path::PathBuf;

use isoswitch_session::SessionError;

use crate::types::{KeyHandle, KeyUsage};

/// Result alias for the crate.
pub type Result<T, E = HsmError> = std::result::Result<T, E>;

/// Everything a [`crate::SecurityModule`] operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// No key is held under this handle (never issued, or deleted).
    #[error("unknown key handle {0}")]
    UnknownKey(KeyHandle),

    /// A key used for something its usage does not allow (e.g. a MAC key to encrypt
    /// a PIN block).
    #[error("key {key} has usage {found:?}; the operation needs {expected}")]
    WrongUsage {
        /// The key.
        key: KeyHandle,
        /// What the operation accepts.
        expected: &'static str,
        /// The key's usage.
        found: KeyUsage,
    },

    /// The operation or one of its options is not offered by this implementation
    /// (e.g. a DUKPT source key before DUKPT lands, or a command outside the Thales
    /// subset). The text names what is missing.
    #[error("unsupported by this security module: {0}")]
    Unsupported(&'static str),

    /// A cryptographic operation failed (wrong key kind, malformed PIN block, ...).
    #[error("crypto: {0}")]
    Crypto(#[from] SessionError),

    /// The local master key file could not be read or parsed.
    #[error("master key file {path}: {reason}")]
    MasterKeyFile {
        /// The file.
        path: PathBuf,
        /// What was wrong (never the key's content).
        reason: String,
    },

    /// A remote HSM answered a command with an error code.
    #[error("HSM refused command {command}: error code {code}")]
    Refused {
        /// The command code sent (e.g. `CA`).
        command: &'static str,
        /// The two-character error code received (e.g. `10`, source key parity).
        code: String,
    },

    /// A remote HSM's response could not be understood.
    #[error("bad HSM response: {0}")]
    Protocol(#[from] crate::thales::codec::ProtocolError),

    /// Connection-level failure talking to a remote HSM.
    #[error("HSM connection: {0}")]
    Io(#[from] std::io::Error),

    /// The connection to the remote HSM closed before the response arrived.
    #[error("HSM connection closed")]
    ConnectionClosed,

    /// No response from the remote HSM within the configured timeout.
    #[error("HSM response timed out")]
    Timeout,
}

impl HsmError {
    /// Whether the module could not be talked to — connection failed or closed, no
    /// answer in time, an answer that does not parse — as opposed to a module that
    /// answered and refused (a PIN block that does not decipher, a key of the wrong
    /// usage, an error code). A caller answers the first as a system malfunction
    /// (`96`), the second as the request's own failure (`99` for a PIN translation).
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            HsmError::Io(_)
                | HsmError::ConnectionClosed
                | HsmError::Timeout
                | HsmError::Protocol(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_are_told_from_refusals() {
        for e in [
            HsmError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            HsmError::ConnectionClosed,
            HsmError::Timeout,
        ] {
            assert!(e.is_transport(), "{e}");
        }
        for e in [
            HsmError::Refused {
                command: "G0",
                code: "20".into(),
            },
            HsmError::UnknownKey(KeyHandle(7)),
            HsmError::Unsupported("x"),
            HsmError::Crypto(SessionError::BadPinBlockLength {
                format: isoswitch_session::crypto::PinBlockFormat::Iso0,
                expected: 8,
                found: 3,
            }),
        ] {
            assert!(!e.is_transport(), "{e}");
        }
    }
}
