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
    /// The MAC is missing or verifies under neither the current nor (where the hook keeps
    /// one) the previous key: in doubt (reversal reason `A0`), and the engine asks its
    /// owner to sign on again ([`crate::EngineEvent::SignOnRequired`]).
    BadMac,
    /// The bytes do not decode in the dialect.
    Undecodable,
    /// The host refused the request without acting on it and asks for a new sign-on: DE 39
    /// `77` (sign on again) or `A0` (MAC failure at the host), see [`SIGN_ON_CODES`].
    /// Such an answer usually carries no MAC (the host has no keys for the sender), so
    /// hooks check DE 39 before the MAC. The engine reports the original as
    /// [`crate::Outcome::NotActed`] (not reversed), repeats reversals and advices, and
    /// asks its owner to sign on again.
    SignOnAgain {
        /// DE 39.
        code: [u8; 2],
    },
}

/// DE 39 values with which a host refuses a request without acting on it and asks the
/// sender to sign on again: `77` and `A0`.
pub const SIGN_ON_CODES: [[u8; 2]; 2] = [*b"77", *b"A0"];

/// [`Verify::SignOnAgain`] when the response's DE 39 is one of [`SIGN_ON_CODES`].
pub fn sign_on_code(view: &MessageView<'_>) -> Option<Verify> {
    if !view.mti().is_response() {
        return None;
    }
    let t = view.field(39)?.text();
    let [a, b] = *t.as_bytes() else {
        return None;
    };
    SIGN_ON_CODES
        .contains(&[a, b])
        .then_some(Verify::SignOnAgain { code: [a, b] })
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
    /// As [`Security::verify`], for an answer the transport already decoded (a net
    /// `Client`'s correlator does: [`Transport::request_decoded`](crate::Transport::request_decoded)),
    /// so that it is not decoded a second time. The default verifies the bytes `msg`
    /// was decoded from.
    ///
    /// # Errors
    /// As [`Security::verify`]; [`Verify::Undecodable`] for a message that was built
    /// or changed rather than decoded.
    fn verify_decoded(&mut self, msg: Message) -> std::result::Result<Message, Verify> {
        let bytes = msg.decoded_bytes().cloned().ok_or(Verify::Undecodable)?;
        self.verify(&bytes)
    }
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
        self.check(Answer::Bytes(bytes))
    }
    fn verify_decoded(&mut self, msg: Message) -> std::result::Result<Message, Verify> {
        self.check(Answer::Decoded(msg))
    }
}

impl NoMac {
    fn check(&self, answer: Answer<'_>) -> std::result::Result<Message, Verify> {
        let m = answer.into_message(&self.dialect)?;
        let code = m.get(39);
        if let (true, Some(c)) = (m.mti().is_response(), code.as_deref()) {
            if let [a, b] = *c.as_bytes() {
                if SIGN_ON_CODES.contains(&[a, b]) {
                    return Err(Verify::SignOnAgain { code: [a, b] });
                }
            }
        }
        Ok(m)
    }
}

/// MACs with a session profile's algorithm under a MAK; responses also verify under the
/// previous MAK after [`ProfileMac::rotate`] (answers to requests sealed before a key
/// change).
#[derive(Clone)]
pub struct ProfileMac {
    profile: SessionProfile,
    mak: Key,
    previous: Option<Key>,
}

impl std::fmt::Debug for ProfileMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileMac")
            .field("dialect", &self.profile.dialect.name())
            .field("mak", &self.mak)
            .field("previous", &self.previous)
            .finish()
    }
}

impl ProfileMac {
    /// Over `profile` with MAC key `mak`.
    pub fn new(profile: SessionProfile, mak: Key) -> Self {
        ProfileMac {
            profile,
            mak,
            previous: None,
        }
    }

    /// A new MAK (after a sign-on): seals under `mak` from now on; responses verify under
    /// `mak` or the one it replaces.
    pub fn rotate(&mut self, mak: Key) {
        self.previous = Some(std::mem::replace(&mut self.mak, mak));
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

/// The check every [`Security::verify`] makes of an answer: decoded once (the MAC is
/// checked over the span read from the decoded message's own index), a 77/A0 is
/// [`Verify::SignOnAgain`], and when `profile` requires a MAC, `mac_ok` must accept the
/// view ([`Verify::BadMac`] otherwise).
///
/// # Errors
/// [`Verify::Undecodable`], [`Verify::SignOnAgain`], [`Verify::BadMac`].
pub fn verify_answer(
    profile: &SessionProfile,
    answer: Answer<'_>,
    mac_ok: impl FnOnce(&isoswitch_codec::MessageView<'_>) -> bool,
) -> std::result::Result<Message, Verify> {
    check_answer(profile, answer.into_message(&profile.dialect)?, mac_ok)
}

/// An answer to verify ([`verify_answer`]): as received, or as the transport's
/// correlator already decoded it (then it is not decoded again).
#[derive(Debug)]
// Passed by value once, straight into the check: boxing the message would cost an
// allocation per answer to save a copy.
#[allow(clippy::large_enum_variant)]
pub enum Answer<'a> {
    /// The bytes received.
    Bytes(&'a Bytes),
    /// The message decoded from them.
    Decoded(Message),
}

impl Answer<'_> {
    /// The decoded message, in `dialect`: decoded here from the bytes, or the message
    /// handed over (decoded again from its bytes if that was another dialect).
    ///
    /// # Errors
    /// [`Verify::Undecodable`]; also for a handed-over message that was built or
    /// changed rather than decoded.
    pub fn into_message(
        self,
        dialect: &isoswitch_codec::Dialect,
    ) -> std::result::Result<Message, Verify> {
        let bytes = match self {
            Answer::Decoded(m) if m.dialect() == dialect && m.view().is_some() => return Ok(m),
            Answer::Decoded(m) => m.decoded_bytes().cloned().ok_or(Verify::Undecodable)?,
            Answer::Bytes(b) => b.clone(),
        };
        Message::decode(dialect, bytes).map_err(|_| Verify::Undecodable)
    }
}

fn check_answer(
    profile: &SessionProfile,
    msg: Message,
    mac_ok: impl FnOnce(&isoswitch_codec::MessageView<'_>) -> bool,
) -> std::result::Result<Message, Verify> {
    {
        let view = msg.view().ok_or(Verify::Undecodable)?;
        if let Some(sign_on) = sign_on_code(&view) {
            return Err(sign_on);
        }
        if profile.requires_mac(view.mti()) && !mac_ok(&view) {
            return Err(Verify::BadMac);
        }
    }
    Ok(msg)
}

/// [`verify_answer`] with the MAC checked under any of `maks` (current first, then
/// previous).
fn verify_with<'k>(
    profile: &SessionProfile,
    maks: impl IntoIterator<Item = &'k Key>,
    answer: Answer<'_>,
) -> std::result::Result<Message, Verify> {
    verify_answer(profile, answer, |view| {
        maks.into_iter()
            .any(|mak| profile.verify_mac(mak, view).is_ok())
    })
}

impl Security for ProfileMac {
    fn seal(&mut self, msg: &mut Message) -> Result<Bytes> {
        seal_with(&self.profile, Some(&self.mak), msg)
    }
    fn verify(&mut self, bytes: &Bytes) -> std::result::Result<Message, Verify> {
        self.check(Answer::Bytes(bytes))
    }
    fn verify_decoded(&mut self, msg: Message) -> std::result::Result<Message, Verify> {
        self.check(Answer::Decoded(msg))
    }
}

impl ProfileMac {
    fn check(&self, answer: Answer<'_>) -> std::result::Result<Message, Verify> {
        verify_with(
            &self.profile,
            std::iter::once(&self.mak).chain(&self.previous),
            answer,
        )
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
        verify_with(self.profile(), mak.as_ref(), Answer::Bytes(bytes))
    }
    fn verify_decoded(&mut self, msg: Message) -> std::result::Result<Message, Verify> {
        let mak = self.working_keys().map(|k| k.mak().clone());
        verify_with(self.profile(), mak.as_ref(), Answer::Decoded(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: &str, mak: Option<&Key>) -> Bytes {
        let p = SessionProfile::cup_pos().unwrap();
        let mut m = Message::new(&p.dialect, "0210".parse().unwrap());
        m.set(11, "000001").unwrap();
        m.set(39, code).unwrap();
        m.set(41, "TERM0001").unwrap();
        match mak {
            Some(k) => p.seal(k, &mut m).unwrap(),
            None => m.to_bytes().unwrap(),
        }
    }

    #[test]
    fn verify_says_sign_on_again_bad_mac_or_accepts_under_current_and_previous_keys() {
        let (k1, k2, k3) = (
            Key::des(&[0x22; 8]).unwrap(),
            Key::des(&[0x44; 8]).unwrap(),
            Key::des(&[0x66; 8]).unwrap(),
        );
        let mut mac = ProfileMac::new(SessionProfile::cup_pos().unwrap(), k1.clone());
        assert!(mac.verify(&answer("00", Some(&k1))).is_ok());
        assert_eq!(
            mac.verify(&answer("00", Some(&k2))).unwrap_err(),
            Verify::BadMac
        );
        // A refusal without MAC: sign on again, not a bad MAC.
        assert_eq!(
            mac.verify(&answer("77", None)).unwrap_err(),
            Verify::SignOnAgain { code: *b"77" }
        );
        assert_eq!(
            mac.verify(&answer("A0", None)).unwrap_err(),
            Verify::SignOnAgain { code: *b"A0" }
        );
        mac.rotate(k2.clone());
        assert!(mac.verify(&answer("00", Some(&k2))).is_ok());
        assert!(mac.verify(&answer("00", Some(&k1))).is_ok(), "previous key");
        assert_eq!(
            mac.verify(&answer("00", Some(&k3))).unwrap_err(),
            Verify::BadMac
        );
        mac.rotate(k3.clone());
        assert_eq!(
            mac.verify(&answer("00", Some(&k1))).unwrap_err(),
            Verify::BadMac
        );
        // The same answers handed over decoded (as a net client's correlator does) give
        // the same verdicts without a second decode.
        let p = SessionProfile::cup_pos().unwrap();
        let decoded = |b: Bytes| Message::decode(&p.dialect, b).unwrap();
        assert!(mac.verify_decoded(decoded(answer("00", Some(&k3)))).is_ok());
        assert_eq!(
            mac.verify_decoded(decoded(answer("00", Some(&k1))))
                .unwrap_err(),
            Verify::BadMac
        );
        assert_eq!(
            mac.verify_decoded(decoded(answer("A0", None))).unwrap_err(),
            Verify::SignOnAgain { code: *b"A0" }
        );
        // Built, not decoded: no bytes to check.
        let mut built = Message::new(&p.dialect, "0210".parse().unwrap());
        built.set(39, "00").unwrap();
        assert_eq!(mac.verify_decoded(built).unwrap_err(), Verify::Undecodable);
        let mut none = NoMac::new(SessionProfile::cup_pos().unwrap().dialect);
        assert_eq!(
            none.verify(&answer("77", None)).unwrap_err(),
            Verify::SignOnAgain { code: *b"77" }
        );
    }
}
