//! [`TerminalSession`]: the terminal side of a secured POS session, as a sans-IO state
//! machine.
//!
//! ```text
//!              sign_on()                 0810 00, keys check
//! NotSignedOn ───────────▶ SignOnPending ───────────────────▶ Ready ──┐ seal_request()
//!     ▲  ▲                   │ timeout / declined / bad keys    │  ▲  │ handle_message()
//!     │  └───────────────────┘                                  │  └──┘
//!     │      MAC failure, A0 / 77, host key change, require_sign_on()
//!     ├─────────────────────────────────────────────────────────┤
//!     │            0830 / timeout              sign_off()       │
//!     └─────────────────────────── SigningOff ◀─────────────────┘
//! ```
//!
//! Nothing here does I/O or reads a clock. The driver passes `now` (an [`Instant`]) to
//! every call and the local date and time (`local`) to calls that build a message
//! (DE 7 in ISO 8583:1987); it sends the returned bytes, feeds received messages to
//! [`TerminalSession::handle_message`], calls [`TerminalSession::handle_timeout`] when
//! [`TerminalSession::poll_timeout`] says, and drains [`TerminalSession::poll_event`].
//!
//! # What it guarantees
//!
//! - Online requests can only be sealed in `Ready`; each gets its MAC
//!   ([`SessionProfile::seal`]) and is remembered (bounded by
//!   [`TerminalConfig::max_in_flight`]) with a response deadline.
//! - Every incoming response that must carry a MAC is verified *before* anything else
//!   is looked at. A failure is [`Inbound::MacFailure`] — for the reversal engine,
//!   "no valid response" (reversal reason `A0`) — and, when it answers an outstanding
//!   request, puts the terminal back to `NotSignedOn`: a MAC failure forces a new
//!   sign-on. (A bad MAC on a response that answers nothing outstanding, e.g. a stale
//!   response under the previous keys, is reported but does not end the session.)
//! - An authentic response with DE 39 `A0` or `77`, an authentic host key change
//!   (0800 code `101`), or [`TerminalSession::require_sign_on`] (e.g. the `cup-pos`
//!   application header's processing-requirement nibble `3`) drop the working keys
//!   and emit [`TerminalEvent::SignOnRequired`]; the driver signs on again.
//! - Working keys never leave the session except as [`Key`] references (whose `Debug`
//!   shows only the check value); logs carry MTIs, STANs, response codes and KCVs.
//!
//! # Surviving a restart
//!
//! A switch's upstream link is a terminal session towards its host. Its keys and sign-on
//! generation are exported with [`TerminalSession::export`] (queued after every sign-on
//! and every loss of the keys: [`TerminalSession::poll_snapshot`]), sealed under a
//! key-encryption key ([`crate::snapshot`]) and stored; after a restart
//! [`TerminalSession::restore`] puts them back, and if the host restored its side too,
//! the next request is sealed and answered under the same keys without a sign-on.
//!
//! Network-management messages carry no MAC (as on `cup-pos` and most 1987 hosts),
//! except the host's key change, which is MACed under the current MAK so that nobody
//! else can force a terminal off. A sign-on response is authenticated by the check
//! values of the keys it delivers.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::NaiveDateTime;
use isoswitch_codec::{Message, MessageClass, MessageView, Mti};

use crate::counters::{BatchNumber, Counters, MemoryCounters, Stan};
use crate::crypto::keys::Key;
use crate::error::{Result, SessionError};
use crate::profile::{MacFailureReason, ManagementStyle, NetworkCode, SessionProfile};
use crate::response_code::ResponseCode;
use crate::snapshot::TerminalSnapshot;
use crate::terminal_id::TerminalId;
use crate::working_keys::{KeyRole, KeyScheme, WorkingKeys};

/// Events kept for [`TerminalSession::poll_event`]; older ones are dropped beyond this.
pub const MAX_QUEUED_EVENTS: usize = 64;

/// The terminal session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TerminalState {
    /// No working keys: only sign-on and echo are possible.
    NotSignedOn,
    /// A sign-on 0800 was sent; waiting for the 0810.
    SignOnPending,
    /// Working keys installed and batch known: online messages can be sent.
    Ready,
    /// A sign-off was sent; waiting for its response.
    SigningOff,
}

/// Static configuration of a terminal session.
#[derive(Debug, Clone)]
pub struct TerminalConfig {
    /// DE 41 + DE 42.
    pub id: TerminalId,
    /// The operator code for `cup-pos` sign-on (DE 63), e.g. `"01 "`.
    pub operator: String,
    /// The working keys to ask for (`cup-pos` 60.3 `001`/`003`/`004`); the DE 70 style
    /// cannot ask and always uses the profile's [`SessionProfile::default_scheme`].
    pub key_scheme: KeyScheme,
    /// How long to wait for any response (sign-on, echo, sign-off, online).
    pub response_timeout: Duration,
    /// How many online requests may await a response at once.
    pub max_in_flight: usize,
}

impl TerminalConfig {
    /// Defaults: operator `"01 "`, double-length keys, 60 s response timeout, 4
    /// requests in flight.
    pub fn new(id: TerminalId) -> TerminalConfig {
        TerminalConfig {
            id,
            operator: "01 ".to_string(),
            key_scheme: KeyScheme::Double,
            response_timeout: Duration::from_secs(60),
            max_in_flight: 4,
        }
    }
}

/// Why the terminal must sign on again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignOnReason {
    /// A response to an outstanding request failed MAC verification.
    MacFailure,
    /// An authentic response said `A0`: the host could not verify our MAC.
    HostMacError,
    /// An authentic response said `77` (sign on again).
    HostSignOnAgain,
    /// The host sent an authentic key change (code `101`).
    HostKeyChange,
    /// The driver asked ([`TerminalSession::require_sign_on`]), e.g. because a
    /// `cup-pos` response header's processing-requirement nibble was `3`.
    Requested,
}

/// Why a sign-on failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignOnFailure {
    /// The host answered with this response code.
    Declined(ResponseCode),
    /// A delivered key did not match its check value.
    KeyCheck(KeyRole),
    /// The 0810 lacked a field or held a value that could not be used.
    Malformed,
}

/// Something that happened, for the driver and the reversal engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalEvent {
    /// Working keys installed; the host's batch adopted.
    SignedOn {
        /// The batch now current.
        batch: BatchNumber,
    },
    /// The sign-on failed; the terminal is `NotSignedOn`.
    SignOnFailed(SignOnFailure),
    /// No 0810 in time; the terminal is `NotSignedOn`.
    SignOnTimedOut,
    /// The working keys were dropped; sign on again.
    SignOnRequired(SignOnReason),
    /// The echo test was answered.
    EchoAnswered(ResponseCode),
    /// No echo response in time (the state is unchanged).
    EchoTimedOut,
    /// The host confirmed the sign-off; the terminal moved to the next batch.
    SignedOff {
        /// The new current batch.
        batch: BatchNumber,
    },
    /// No sign-off response in time; the terminal is `NotSignedOn` anyway.
    SignOffTimedOut,
    /// An online request got no response in time: for the reversal engine, reason `98`.
    RequestTimedOut {
        /// The request's MTI.
        mti: Mti,
        /// Its STAN.
        stan: Stan,
    },
}

/// A response whose MAC was not accepted: "no valid response" (reversal reason `A0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacFailure {
    /// The message type received.
    pub mti: Mti,
    /// DE 11, if it could be read.
    pub stan: Option<Stan>,
    /// What was wrong.
    pub reason: MacFailureReason,
    /// Whether it answered an outstanding request (which is now settled as failed).
    pub matched: bool,
}

/// What an incoming message turned out to be.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// An authentic response to an outstanding online request.
    Verified(Box<Message>),
    /// A response whose MAC is missing or wrong; see [`MacFailure`].
    MacFailure(MacFailure),
    /// An authentic response that answers nothing outstanding (late after its timeout,
    /// or a duplicate): log it only.
    Unmatched {
        /// The message type.
        mti: Mti,
        /// DE 11, if any.
        stan: Option<Stan>,
    },
    /// The sign-on succeeded (also reported as [`TerminalEvent::SignedOn`]).
    SignedOn {
        /// The batch adopted.
        batch: BatchNumber,
    },
    /// The echo test was answered.
    EchoAnswered(ResponseCode),
    /// The sign-off was confirmed.
    SignedOff {
        /// The new current batch.
        batch: BatchNumber,
    },
    /// The host ordered a key change: the keys are dropped; send `reply` (the 0810
    /// acknowledgement) and sign on again.
    KeyChangeRequested {
        /// The acknowledgement to send.
        reply: Bytes,
    },
}

/// A sealed online request.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Its STAN (DE 11).
    pub stan: Stan,
    /// The bytes to send (no length header).
    pub bytes: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    SignOn(KeyScheme),
    Echo,
    SignOff,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    exchange: Exchange,
    stan: Option<Stan>,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    request: Mti,
    response: Mti,
    stan: Stan,
    deadline: Instant,
}

/// The terminal side of a session; see the module docs.
#[derive(Clone)]
pub struct TerminalSession<C: Counters = MemoryCounters> {
    profile: SessionProfile,
    config: TerminalConfig,
    tmk: Key,
    counters: C,
    state: TerminalState,
    keys: Option<WorkingKeys>,
    /// The key field of the sign-on answer the keys came in (`None` for keys restored
    /// from a snapshot).
    key_block: Option<Vec<u8>>,
    pending: Option<Pending>,
    outstanding: Vec<Outstanding>,
    events: VecDeque<TerminalEvent>,
    generation: u64,
    changed: bool,
}

impl<C: Counters> fmt::Debug for TerminalSession<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TerminalSession")
            .field("dialect", &self.profile.dialect.name())
            .field("id", &self.config.id)
            .field("state", &self.state)
            .field("keys", &self.keys)
            .field("in_flight", &self.outstanding.len())
            .finish_non_exhaustive()
    }
}

fn stan_of(msg: &Message) -> Option<Stan> {
    let v = msg.field(11)?.as_u64().ok()?;
    Stan::new(u32::try_from(v).ok()?).ok()
}

impl<C: Counters> TerminalSession<C> {
    /// A session for `config.id` with terminal master key `tmk` (DES or TDES) and the
    /// terminal's `counters` (STAN, batch).
    pub fn new(
        profile: SessionProfile,
        mut config: TerminalConfig,
        tmk: Key,
        counters: C,
    ) -> Result<TerminalSession<C>> {
        profile.validate()?;
        if !tmk.kind().is_des_family() {
            return Err(SessionError::WrongKeyAlgorithm {
                expected: "DES or TDES terminal master key",
                found: tmk.kind(),
            });
        }
        if profile.management == ManagementStyle::De70 {
            config.key_scheme = profile.default_scheme;
        }
        config.max_in_flight = config.max_in_flight.max(1);
        Ok(TerminalSession {
            profile,
            config,
            tmk,
            counters,
            state: TerminalState::NotSignedOn,
            keys: None,
            key_block: None,
            pending: None,
            outstanding: Vec::new(),
            events: VecDeque::new(),
            generation: 0,
            changed: false,
        })
    }

    /// The current state.
    pub fn state(&self) -> TerminalState {
        self.state
    }

    /// The profile.
    pub fn profile(&self) -> &SessionProfile {
        &self.profile
    }

    /// The configuration.
    pub fn config(&self) -> &TerminalConfig {
        &self.config
    }

    /// The current batch number (adopted from the host at sign-on in `cup-pos`).
    pub fn batch(&self) -> BatchNumber {
        self.counters.batch()
    }

    /// The counters.
    pub fn counters(&self) -> &C {
        &self.counters
    }

    /// Takes the next STAN, e.g. for a request built by the caller.
    pub fn next_stan(&mut self) -> Result<Stan> {
        self.counters.next_stan()
    }

    /// The installed working keys (in `Ready`), e.g. the PIK for PIN blocks.
    pub fn working_keys(&self) -> Option<&WorkingKeys> {
        self.keys.as_ref()
    }

    /// The PIN key under the master key, as the host sent it in the sign-on answer's
    /// key field, with its check value: what a security module holding the master key
    /// imports ([`WorkingKeys::pik_of_block`]), so the clear PIN key need not be
    /// wrapped again. For keys restored from a snapshot, the same bytes made again
    /// under the master key this session holds for its sign-ons (key wrapping is ECB:
    /// they are the host's bytes). `None` before a sign-on.
    pub fn pik_under_master(&self) -> Option<crate::working_keys::WrappedKey> {
        let keys = self.keys.as_ref()?;
        let block = match &self.key_block {
            Some(b) => b.clone(),
            None => keys.encrypt_block(&self.tmk).ok()?,
        };
        WorkingKeys::pik_of_block(keys.scheme(), &block).ok()
    }

    /// Sign-ons completed by this session (restored ones included): the key
    /// generation. A link that sees `77`/`A0` under generation `g` signs on again only
    /// if `g` is still the current one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The session's durable state: identity, batch, generation and (in `Ready`) the
    /// working keys, to be sealed before it is stored.
    pub fn export(&self) -> TerminalSnapshot {
        TerminalSnapshot {
            terminal: self.config.id,
            batch: self.counters.batch(),
            generation: self.generation,
            keys: self.keys.clone(),
        }
    }

    /// The snapshot, if the keys changed since the last call (a sign-on, or the keys
    /// were dropped), for the caller to store.
    pub fn poll_snapshot(&mut self) -> Option<TerminalSnapshot> {
        std::mem::take(&mut self.changed).then(|| self.export())
    }

    /// Puts a stored session back after a restart: with keys, the session is `Ready`
    /// at once (no sign-on); without, `NotSignedOn`. The generation is adopted; the
    /// batch is the counters' (they are durable on their own). Only while no exchange
    /// is pending and nothing is in flight.
    ///
    /// # Errors
    /// [`SessionError::SnapshotMismatch`] for another terminal's snapshot,
    /// [`SessionError::WrongState`] while an exchange is pending or a request is in
    /// flight.
    pub fn restore(&mut self, snapshot: TerminalSnapshot) -> Result<()> {
        if snapshot.terminal != self.config.id {
            return Err(SessionError::SnapshotMismatch {
                expected: self.config.id.to_string(),
                found: snapshot.terminal.to_string(),
            });
        }
        if self.pending.is_some() || !self.outstanding.is_empty() {
            return Err(SessionError::WrongState {
                operation: "restore",
                state: self.state,
            });
        }
        self.generation = snapshot.generation;
        self.state = if snapshot.keys.is_some() {
            TerminalState::Ready
        } else {
            TerminalState::NotSignedOn
        };
        self.keys = snapshot.keys;
        self.key_block = None;
        tracing::info!(terminal = %self.config.id, generation = self.generation, state = ?self.state, "session restored");
        Ok(())
    }

    /// How many online requests await a response.
    pub fn in_flight(&self) -> usize {
        self.outstanding.len()
    }

    fn push_event(&mut self, e: TerminalEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            tracing::warn!(dropped = ?self.events.front(), "terminal event queue full");
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<TerminalEvent> {
        self.events.pop_front()
    }

    /// When [`TerminalSession::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .map(|p| p.deadline)
            .into_iter()
            .chain(self.outstanding.iter().map(|o| o.deadline))
            .min()
    }

    /// Expires every deadline at or before `now`: a pending sign-on or sign-off ends
    /// in `NotSignedOn`, an echo just times out, online requests are reported as
    /// [`TerminalEvent::RequestTimedOut`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(p) = self.pending.filter(|p| p.deadline <= now) {
            self.pending = None;
            match p.exchange {
                Exchange::SignOn(_) => {
                    tracing::warn!(terminal = %self.config.id, "sign-on timed out");
                    self.state = TerminalState::NotSignedOn;
                    self.push_event(TerminalEvent::SignOnTimedOut);
                }
                Exchange::SignOff => {
                    tracing::warn!(terminal = %self.config.id, "sign-off timed out");
                    self.state = TerminalState::NotSignedOn;
                    self.push_event(TerminalEvent::SignOffTimedOut);
                }
                Exchange::Echo => {
                    tracing::info!(terminal = %self.config.id, "echo test timed out");
                    self.push_event(TerminalEvent::EchoTimedOut);
                }
            }
        }
        let mut i = 0;
        while i < self.outstanding.len() {
            if self.outstanding[i].deadline <= now {
                let o = self.outstanding.swap_remove(i);
                tracing::warn!(terminal = %self.config.id, mti = %o.request, stan = %o.stan, "no response in time");
                self.push_event(TerminalEvent::RequestTimedOut {
                    mti: o.request,
                    stan: o.stan,
                });
            } else {
                i += 1;
            }
        }
    }

    fn drop_keys(&mut self, reason: SignOnReason) {
        self.changed |= self.keys.take().is_some();
        if matches!(self.state, TerminalState::Ready | TerminalState::SigningOff) {
            self.state = TerminalState::NotSignedOn;
            if matches!(
                self.pending,
                Some(Pending {
                    exchange: Exchange::SignOff,
                    ..
                })
            ) {
                self.pending = None;
            }
            tracing::warn!(terminal = %self.config.id, ?reason, "working keys dropped: sign on again");
            self.push_event(TerminalEvent::SignOnRequired(reason));
        }
    }

    /// Drops the working keys and asks for a new sign-on (e.g. the `cup-pos` response
    /// header said so). No effect unless `Ready` or `SigningOff`.
    pub fn require_sign_on(&mut self) {
        self.drop_keys(SignOnReason::Requested);
    }

    /// Builds the sign-on request and moves to `SignOnPending` (from any state: a
    /// pending exchange is abandoned and current keys are dropped).
    ///
    /// `cup-pos`: 0800 with 11, 41, 42, 60 = `00` + batch + `001`/`003`/`004`, 63 =
    /// operator. 1987: 0800 with 7 (`local`), 11, 41, 42, 70 = `001`.
    pub fn sign_on(&mut self, now: Instant, local: NaiveDateTime) -> Result<Bytes> {
        let scheme = self.config.key_scheme;
        let stan = self.counters.next_stan()?;
        let mut m = self.profile.management_message(
            NetworkCode::SignOn(scheme),
            &self.config.id,
            Some(stan),
            self.counters.batch(),
            local,
        )?;
        if self.profile.management == ManagementStyle::Field60 {
            m.set(63, self.config.operator.as_bytes())?;
        }
        let bytes = m.to_bytes()?;
        self.changed |= self.keys.take().is_some();
        self.state = TerminalState::SignOnPending;
        self.pending = Some(Pending {
            exchange: Exchange::SignOn(scheme),
            stan: Some(stan),
            deadline: now + self.config.response_timeout,
        });
        tracing::info!(terminal = %self.config.id, %stan, ?scheme, "sign-on sent");
        Ok(bytes)
    }

    fn management_request(
        &mut self,
        now: Instant,
        local: NaiveDateTime,
        exchange: Exchange,
    ) -> Result<Bytes> {
        if self.pending.is_some() {
            return Err(SessionError::ExchangePending);
        }
        let (code, with_stan) = match exchange {
            Exchange::Echo => (
                NetworkCode::Echo,
                // cup-pos echo: 41, 42, 60 only.
                self.profile.management == ManagementStyle::De70,
            ),
            Exchange::SignOff => (NetworkCode::SignOff, true),
            Exchange::SignOn(s) => (NetworkCode::SignOn(s), true),
        };
        let stan = if with_stan {
            Some(self.counters.next_stan()?)
        } else {
            None
        };
        let m = self.profile.management_message(
            code,
            &self.config.id,
            stan,
            self.counters.batch(),
            local,
        )?;
        let bytes = m.to_bytes()?;
        self.pending = Some(Pending {
            exchange,
            stan,
            deadline: now + self.config.response_timeout,
        });
        Ok(bytes)
    }

    /// Builds an echo test (`cup-pos`: 0820 with 41, 42, 60 code `301`; 1987: 0800 with
    /// DE 70 = `301`). Allowed when no other exchange is pending and not signing off.
    pub fn echo(&mut self, now: Instant, local: NaiveDateTime) -> Result<Bytes> {
        if matches!(
            self.state,
            TerminalState::SignOnPending | TerminalState::SigningOff
        ) {
            return Err(SessionError::WrongState {
                operation: "echo test",
                state: self.state,
            });
        }
        self.management_request(now, local, Exchange::Echo)
    }

    /// Builds the sign-off (0820 with 60.3 / DE 70 = `002`) and moves to `SigningOff`;
    /// the working keys are dropped at once. Only in `Ready`.
    pub fn sign_off(&mut self, now: Instant, local: NaiveDateTime) -> Result<Bytes> {
        if self.state != TerminalState::Ready {
            return Err(SessionError::WrongState {
                operation: "sign-off",
                state: self.state,
            });
        }
        if matches!(
            self.pending,
            Some(Pending {
                exchange: Exchange::Echo,
                ..
            })
        ) {
            self.pending = None;
        }
        let bytes = self.management_request(now, local, Exchange::SignOff)?;
        self.changed |= self.keys.take().is_some();
        self.state = TerminalState::SigningOff;
        tracing::info!(terminal = %self.config.id, "sign-off sent");
        Ok(bytes)
    }

    /// Seals an online request (0200, 0400, 0220…) built by the caller: fills DE 41/42
    /// and DE 11 (next STAN) when absent, adds the MAC when the profile requires one,
    /// and remembers the request until its response or deadline. Only in `Ready`.
    pub fn seal_request(&mut self, now: Instant, mut msg: Message) -> Result<Sealed> {
        if self.state != TerminalState::Ready {
            return Err(SessionError::WrongState {
                operation: "online request",
                state: self.state,
            });
        }
        let mti = msg.mti();
        let Some(response) = mti.response_mti() else {
            return Err(SessionError::UnexpectedMessage {
                mti,
                why: "only requests and advices can be sent",
            });
        };
        if mti.class() == MessageClass::NetworkManagement {
            return Err(SessionError::UnexpectedMessage {
                mti,
                why: "network management goes through sign_on, echo and sign_off",
            });
        }
        if !msg.has(41) {
            msg.set(41, self.config.id.terminal())?;
        }
        if !msg.has(42) {
            msg.set(42, self.config.id.merchant())?;
        }
        if !msg.has(11) {
            let s = self.counters.next_stan()?;
            msg.set(11, s.to_string())?;
        }
        let stan = stan_of(&msg).ok_or(SessionError::BadFieldValue {
            field: 11,
            what: "STAN",
        })?;
        let existing = self
            .outstanding
            .iter()
            .position(|o| o.response == response && o.stan == stan);
        if existing.is_none() && self.outstanding.len() >= self.config.max_in_flight {
            return Err(SessionError::TooManyInFlight {
                max: self.config.max_in_flight,
            });
        }
        let bytes = if self.profile.requires_mac(mti) {
            let keys = self
                .keys
                .as_ref()
                .ok_or_else(|| SessionError::NotSignedOn {
                    terminal: self.config.id.to_string(),
                })?;
            self.profile.seal(keys.mak(), &mut msg)?
        } else {
            msg.to_bytes()?
        };
        let entry = Outstanding {
            request: mti,
            response,
            stan,
            deadline: now + self.config.response_timeout,
        };
        match existing {
            Some(i) => self.outstanding[i] = entry,
            None => self.outstanding.push(entry),
        }
        tracing::debug!(terminal = %self.config.id, %mti, %stan, "online request sealed");
        Ok(Sealed { stan, bytes })
    }

    /// Handles one received message (its exact bytes, no length header).
    ///
    /// Errors: [`SessionError::Codec`] for bytes that do not decode (for an awaited
    /// response, as good as no response); [`SessionError::UnexpectedMessage`] for a
    /// message that fits no exchange; sign-on failures ([`SessionError::SignOnDeclined`],
    /// [`SessionError::WorkingKeyCheck`], [`SessionError::KeyBlockLength`]…) after which
    /// the terminal is `NotSignedOn`.
    pub fn handle_message(&mut self, now: Instant, bytes: Bytes) -> Result<Inbound> {
        let _ = now;
        let dialect = self.profile.dialect.clone();
        let view = MessageView::decode(&dialect, &bytes)?;
        let mti = view.mti();
        if mti.class() == MessageClass::NetworkManagement {
            let msg = Message::decode(&dialect, bytes.clone())?;
            return self.handle_management(msg, &bytes);
        }
        if !mti.is_response() {
            return Err(SessionError::UnexpectedMessage {
                mti,
                why: "a terminal receives responses only",
            });
        }
        let stan = view
            .field(11)
            .and_then(|f| f.as_u64().ok())
            .and_then(|v| u32::try_from(v).ok())
            .and_then(|v| Stan::new(v).ok());
        let position = stan.and_then(|s| {
            self.outstanding
                .iter()
                .position(|o| o.response == mti && o.stan == s)
        });
        if self.profile.requires_mac(mti) {
            let checked = match &self.keys {
                None => Err(MacFailureReason::NoKey),
                Some(k) => self.profile.verify_mac(k.mak(), &view),
            };
            if let Err(reason) = checked {
                let matched = position.is_some();
                if let Some(i) = position {
                    self.outstanding.swap_remove(i);
                }
                tracing::warn!(terminal = %self.config.id, %mti, stan = ?stan.map(|s| s.get()), ?reason, matched, "response MAC not accepted");
                if matched {
                    self.drop_keys(SignOnReason::MacFailure);
                }
                return Ok(Inbound::MacFailure(MacFailure {
                    mti,
                    stan,
                    reason,
                    matched,
                }));
            }
        }
        let Some(i) = position else {
            tracing::info!(terminal = %self.config.id, %mti, stan = ?stan.map(|s| s.get()), "response matches no outstanding request");
            return Ok(Inbound::Unmatched { mti, stan });
        };
        self.outstanding.swap_remove(i);
        let msg = Message::decode(&dialect, bytes)?;
        match ResponseCode::of(&msg) {
            Some(ResponseCode::MAC_FAILED) => self.drop_keys(SignOnReason::HostMacError),
            Some(ResponseCode::SIGN_ON_AGAIN) => self.drop_keys(SignOnReason::HostSignOnAgain),
            _ => {}
        }
        Ok(Inbound::Verified(Box::new(msg)))
    }

    fn unexpected(mti: Mti, why: &'static str) -> SessionError {
        SessionError::UnexpectedMessage { mti, why }
    }

    fn handle_management(&mut self, msg: Message, bytes: &Bytes) -> Result<Inbound> {
        let mti = msg.mti();
        let code = self.profile.network_code(&msg);
        if !mti.is_response() {
            if code == Some(NetworkCode::KeyChange) && mti == self.profile.key_change_mti {
                return self.handle_key_change(msg, bytes);
            }
            return Err(Self::unexpected(mti, "no such host request"));
        }
        let Some(pending) = self.pending else {
            return Err(Self::unexpected(mti, "no exchange pending"));
        };
        let expected_code = match pending.exchange {
            Exchange::SignOn(s) => NetworkCode::SignOn(s),
            Exchange::Echo => NetworkCode::Echo,
            Exchange::SignOff => NetworkCode::SignOff,
        };
        let request_mti = self.profile.mti_for(expected_code);
        if request_mti.response_mti() != Some(mti) || code != Some(expected_code) {
            return Err(Self::unexpected(
                mti,
                "does not answer the pending exchange",
            ));
        }
        if pending.stan.is_some() && stan_of(&msg) != pending.stan {
            return Err(Self::unexpected(
                mti,
                "STAN differs from the pending request",
            ));
        }
        if !self.config.id.matches(&msg) {
            return Err(Self::unexpected(mti, "addressed to another terminal"));
        }
        self.pending = None;
        let code = ResponseCode::of(&msg);
        match pending.exchange {
            Exchange::SignOn(scheme) => self.finish_sign_on(&msg, scheme, code),
            Exchange::Echo => {
                let c = code.ok_or(SessionError::MissingField { mti, field: 39 })?;
                self.push_event(TerminalEvent::EchoAnswered(c));
                Ok(Inbound::EchoAnswered(c))
            }
            Exchange::SignOff => {
                self.state = TerminalState::NotSignedOn;
                let batch = self.counters.next_batch()?;
                tracing::info!(terminal = %self.config.id, %batch, code = %code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()), "signed off");
                self.push_event(TerminalEvent::SignedOff { batch });
                Ok(Inbound::SignedOff { batch })
            }
        }
    }

    fn finish_sign_on(
        &mut self,
        msg: &Message,
        scheme: KeyScheme,
        code: Option<ResponseCode>,
    ) -> Result<Inbound> {
        let result = (|| {
            let code = code.ok_or(SessionError::MissingField {
                mti: msg.mti(),
                field: 39,
            })?;
            if !code.is_approved() {
                return Err(SessionError::SignOnDeclined { code });
            }
            let batch = self.profile.batch_of(msg)?;
            let block = self.profile.key_block_of(msg)?;
            let keys = WorkingKeys::decrypt_block(&self.tmk, scheme, &block)?;
            Ok((keys, batch, block))
        })();
        match result {
            Ok((keys, batch, block)) => {
                if let Some(b) = batch {
                    self.counters.set_batch(b)?;
                }
                let batch = self.counters.batch();
                tracing::info!(
                    terminal = %self.config.id,
                    %batch,
                    pik_kcv = %keys.pik().kcv(),
                    mak_kcv = %keys.mak().kcv(),
                    "signed on"
                );
                self.keys = Some(keys);
                self.key_block = Some(block);
                self.state = TerminalState::Ready;
                self.generation = self.generation.wrapping_add(1);
                self.changed = true;
                self.push_event(TerminalEvent::SignedOn { batch });
                Ok(Inbound::SignedOn { batch })
            }
            Err(e) => {
                let failure = match &e {
                    SessionError::SignOnDeclined { code } => SignOnFailure::Declined(*code),
                    SessionError::WorkingKeyCheck { role } => SignOnFailure::KeyCheck(*role),
                    _ => SignOnFailure::Malformed,
                };
                tracing::warn!(terminal = %self.config.id, error = %e, "sign-on failed");
                self.state = TerminalState::NotSignedOn;
                self.changed |= self.keys.take().is_some();
                self.push_event(TerminalEvent::SignOnFailed(failure));
                Err(e)
            }
        }
    }

    fn handle_key_change(&mut self, msg: Message, bytes: &Bytes) -> Result<Inbound> {
        let mti = msg.mti();
        if !self.config.id.matches(&msg) {
            return Err(Self::unexpected(mti, "addressed to another terminal"));
        }
        let view = MessageView::decode(&self.profile.dialect, bytes)?;
        let checked = match &self.keys {
            None => Err(MacFailureReason::NoKey),
            Some(k) => self.profile.verify_mac(k.mak(), &view),
        };
        let stan = stan_of(&msg);
        if let Err(reason) = checked {
            tracing::warn!(terminal = %self.config.id, ?reason, "key change request MAC not accepted");
            self.drop_keys(SignOnReason::MacFailure);
            return Ok(Inbound::MacFailure(MacFailure {
                mti,
                stan,
                reason,
                matched: false,
            }));
        }
        self.drop_keys(SignOnReason::HostKeyChange);
        let mut reply = Message::response_to(&msg)?;
        reply.set(39, ResponseCode::APPROVED.as_str())?;
        Ok(Inbound::KeyChangeRequested {
            reply: reply.to_bytes()?,
        })
    }
}
