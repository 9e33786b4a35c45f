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
    /// The security module refused an operation.
    #[error("security module: {0}")]
    Security(String),
    /// The upstream link has no usable keys (not signed on).
    #[error("upstream link {link} is not signed on")]
    NotSignedOn {
        /// The link's name.
        link: String,
    },
}

/// Result of the switch crate.
pub type Result<T, E = SwitchError> = std::result::Result<T, E>;
