//! [`SwitchError`], the crate's one error type.

use isoswitch_codec::CodecError;
use isoswitch_reversal::ReversalError;
use isoswitch_session::SessionError;

/// What went wrong in a switch building block.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// A message could not be read or built.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A session or cryptographic operation failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The reversal engine, journal or store failed.
    #[error(transparent)]
    Reversal(#[from] ReversalError),
    /// A field map names a field the target dialect does not define, or a function that
    /// does not exist.
    #[error("field map {map}: {what}")]
    FieldMap {
        /// The map's name.
        map: String,
        /// What is wrong.
        what: String,
    },
    /// A field a rule requires is missing from the source message.
    #[error("field map {map}: field {field} is required and missing")]
    MissingField {
        /// The map's name.
        map: String,
        /// The source field.
        field: u8,
    },
    /// A network operation failed.
    #[error(transparent)]
    Net(#[from] isoswitch_net::NetError),
    /// The security module refused an operation (a PIN block that does not decipher,
    /// a key of the wrong usage): the request's own failure.
    #[error("security module: {0}")]
    Security(String),
    /// The security module could not carry an operation out: unreachable, no answer in
    /// time, an answer that does not parse, or a zone key it cannot take. Not the
    /// request's fault: a system malfunction.
    #[error("security module fault: {0}")]
    SecurityModuleFault(String),
    /// The upstream link has no usable keys (not signed on).
    #[error("upstream link {link} is not signed on")]
    NotSignedOn {
        /// The link's name.
        link: String,
    },
    /// Another node sharing the link's upstream identity is signing it on now
    /// ([`isoswitch_reversal::SessionStore::claim_sign_on`]): adopt its keys once stored.
    #[error("upstream link {link}: another node is signing on")]
    SignOnElsewhere {
        /// The link's name.
        link: String,
    },
}

impl SwitchError {
    /// The response code for a request whose PIN could not be translated because of
    /// this error: `96` (system malfunction) when the security module failed
    /// ([`SwitchError::SecurityModuleFault`]), `99` (PIN translation failure)
    /// otherwise (see `domain.md`: a PIN translation failure is answered 99, a
    /// security-module fault 96).
    pub fn pin_failure_code(&self) -> [u8; 2] {
        match self {
            SwitchError::SecurityModuleFault(_) => *b"96",
            _ => *b"99",
        }
    }
}

/// Result of the switch crate.
pub type Result<T, E = SwitchError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_fault_is_96_and_a_refused_pin_block_99() {
        assert_eq!(
            SwitchError::SecurityModuleFault("HSM response timed out".into()).pin_failure_code(),
            *b"96"
        );
        assert_eq!(
            SwitchError::Security("crypto: bad PIN block".into()).pin_failure_code(),
            *b"99"
        );
    }
}
