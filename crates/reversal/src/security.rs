//! The MAC hook: [`Security`] seals outgoing messages and verifies responses.
//!
//! - [`NoMac`]: encode and decode only (tests, links without MAC).
//! - [`ProfileMac`]: a [`SessionProfile`] and a MAK (`SessionProfile::seal` /
//!   `SessionProfile::verify_mac`), MACing exactly the messages the profile requires.
//! - `TerminalSession`: the working keys of a signed-on `isoswitch-session` terminal.

use crate::error::{Result, ReversalError};
use bytes::Bytes;
use isoswitch_codec::{Dialect, Message, MessageView};
use isoswitch_session::counters::Counters;
use isoswitch_session::crypto::Key;
use isoswitch_session::{SessionProfile, TerminalSession};

/// Why a response was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The MAC is missing or wrong (reversal reason `A0`).
    BadMac,
    /// The bytes do not decode in the dialect.
    Undecodable,
}

/// Seals outgoing messages and verifies incoming ones.
pub trait Security: Send + 'static {
    /// Encodes `msg`, adding its MAC when required; `msg` keeps the MAC sent.
    ///
    /// # Errors
    /// Codec errors, no MAC key.
    fn seal(&mut self, msg: &mut Message) -> Result<Bytes>;
    /// Decodes `bytes` and checks its MAC when required.
    ///
    /// # Errors
    /// [`Verify::Undecodable`] or [`Verify::BadMac`].
    fn verify(&mut self, bytes: &Bytes) -> std::result::Result<Message, Verify>;
}

/// No MAC at all: seal = encode, verify = decode.
#[derive(Debug, Clone)]
pub struct NoMac {
    dialect: Dialect,
}

impl NoMac {
    /// For messages of `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        NoMac { dialect }
    }
}

impl Security for NoMac {
    fn seal(&mut self, msg: &mut Message) -> Result<Bytes> {
        Ok(msg.to_bytes()?)
    }
    fn verify(&mut self, bytes: &Bytes) -> std::result::Result<Message, Verify> {
        Message::decode(&self.dialect, bytes.clone()).map_err(|_| Verify::Undecodable)
    }
}

/// MACs with a session profile's algorithm under a fixed MAK.
#[derive(Clone)]
pub struct ProfileMac {
    profile: SessionProfile,
    mak: Key,
}

impl std::fmt::Debug for ProfileMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileMac")
            .field("dialect", &self.profile.dialect.name())
            .field("mak", &self.mak)
            .finish()
    }
}

impl ProfileMac {
    /// Over `profile` with MAC key `mak`.
    pub fn new(profile: SessionProfile, mak: Key) -> Self {
        ProfileMac { profile, mak }
    }
}

fn seal_with(profile: &SessionProfile, mak: Option<&Key>, msg: &mut Message) -> Result<Bytes> {
    if !profile.requires_mac(msg.mti()) {
        return Ok(msg.to_bytes()?);
    }
    let mak = mak.ok_or(ReversalError::Session(
        isoswitch_session::SessionError::NotSignedOn {
            terminal: msg.get(41).unwrap_or_default(),
        },
    ))?;
    Ok(profile.seal(mak, msg)?)
}

fn verify_with(
    profile: &SessionProfile,
    mak: Option<&Key>,
    bytes: &Bytes,
) -> std::result::Result<Message, Verify> {
    let view = MessageView::decode(&profile.dialect, bytes).map_err(|_| Verify::Undecodable)?;
    if profile.requires_mac(view.mti()) {
        let mak = mak.ok_or(Verify::BadMac)?;
        profile.verify_mac(mak, &view).map_err(|_| Verify::BadMac)?;
    }
    Message::decode(&profile.dialect, bytes.clone()).map_err(|_| Verify::Undecodable)
}

impl Security for ProfileMac {
    fn seal(&mut self, msg: &mut Message) -> Result<Bytes> {
        seal_with(&self.profile, Some(&self.mak), msg)
    }
    fn verify(&mut self, bytes: &Bytes) -> std::result::Result<Message, Verify> {
        verify_with(&self.profile, Some(&self.mak), bytes)
    }
}

/// Uses the terminal session's current MAK (it must be signed on to seal).
impl<C: Counters + Send + 'static> Security for TerminalSession<C> {
    fn seal(&mut self, msg: &mut Message) -> Result<Bytes> {
        let mak = self.working_keys().map(|k| k.mak().clone());
        seal_with(self.profile(), mak.as_ref(), msg)
    }
    fn verify(&mut self, bytes: &Bytes) -> std::result::Result<Message, Verify> {
        let mak = self.working_keys().map(|k| k.mak().clone());
        verify_with(self.profile(), mak.as_ref(), bytes)
    }
}
