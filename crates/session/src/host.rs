//! [`HostSession`]: the acquiring host's side of terminal sessions, as a sans-IO state
//! machine over many terminals.
//!
//! The host answers network management itself and checks every online request before
//! the application sees it:
//!
//! | check, in order | failure | answer |
//! |---|---|---|
//! | DE 41 and DE 42 present and well formed | [`RejectReason::Malformed`] | `30`, no MAC |
//! | the terminal is in the [`KeyStore`] | [`RejectReason::UnknownTerminal`] | `97`, no MAC |
//! | the terminal is signed on (has working keys) | [`RejectReason::NotSignedOn`] | `77`, no MAC |
//! | the MAC verifies (when the profile requires one) | [`RejectReason::MacFailure`] | `A0`, MACed; then the keys are invalidated |
//! | DE 11 is a valid STAN | [`RejectReason::Malformed`] | `30`, MACed |
//! | the STAN is not replayed in this session ([`ReplayWindow`]) | [`RejectReason::Duplicate`] | `94`, MACed |
//!
//! `97` versus `77`: a terminal the host has no master key for cannot ever sign on
//! ("terminal not registered"); a registered terminal without working keys — never
//! signed on, signed off, or invalidated by a MAC failure or key change — only needs
//! to sign on again ("sign on again"). Answers without working keys carry no MAC (there
//! is no key to compute one); the terminal treats them as a MAC failure and signs on.
//!
//! Sign-on generates fresh working keys from the OS RNG and returns them encrypted
//! under the terminal master key with their check values ([`crate::working_keys`]);
//! a new sign-on starts a new replay window. Sign-off invalidates the keys and moves
//! the terminal to its next batch. A host-initiated key change is either active
//! ([`HostSession::request_key_change`]: a MACed 0800 with code `101`, after which the
//! keys are invalid) or passive ([`HostSession::invalidate`]: the next request is
//! answered `77`).
//!
//! # Surviving a restart
//!
//! Every change of a terminal's session (sign-on, sign-off, invalidation, key change)
//! queues the terminal for [`HostSession::poll_snapshot`]; the caller seals the
//! [`TerminalSnapshot`] under its key-encryption key and stores it. After a restart,
//! [`HostSession::restore`] puts each stored snapshot back and the terminal's next MACed
//! request is accepted without a new sign-on. The replay window is not part of a
//! snapshot (see [`crate::snapshot`] for how duplicates after a restart are caught).
//!
//! Memory is bounded: the host keeps state only for registered terminals that signed
//! on, at most [`HostConfig::max_terminals`], each with a fixed-size replay window.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDateTime;
use isoswitch_codec::{Message, MessageClass};

use crate::counters::{BatchNumber, Rrn, Stan, MAX_RRN_SEQUENCE};
use crate::crypto::keys::Key;
use crate::error::{Result, SessionError};
use crate::profile::{MacFailureReason, ManagementStyle, NetworkCode, SessionProfile};
use crate::replay::ReplayWindow;
use crate::response_code::ResponseCode;
use crate::snapshot::TerminalSnapshot;
use crate::terminal_id::TerminalId;
use crate::working_keys::{KeyScheme, WorkingKeys};

/// Where the host finds each terminal's master key.
///
/// A terminal absent from the store is "not registered" (`97`). The switch loads its
/// store from configuration; [`MemoryKeyStore`] is the in-memory one.
pub trait KeyStore {
    /// The terminal master key (DES or TDES) of terminal `id`, if registered.
    fn master_key(&self, id: &TerminalId) -> Option<Key>;

    /// Whether terminal `id` is registered.
    fn contains(&self, id: &TerminalId) -> bool {
        self.master_key(id).is_some()
    }
}

impl<K: KeyStore + ?Sized> KeyStore for &K {
    fn master_key(&self, id: &TerminalId) -> Option<Key> {
        (**self).master_key(id)
    }
    fn contains(&self, id: &TerminalId) -> bool {
        (**self).contains(id)
    }
}

impl<K: KeyStore + ?Sized> KeyStore for Arc<K> {
    fn master_key(&self, id: &TerminalId) -> Option<Key> {
        (**self).master_key(id)
    }
    fn contains(&self, id: &TerminalId) -> bool {
        (**self).contains(id)
    }
}

/// Terminal master keys held in memory. `Debug` shows identities and check values.
#[derive(Clone, Default, Debug)]
pub struct MemoryKeyStore {
    keys: HashMap<TerminalId, Key>,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> MemoryKeyStore {
        MemoryKeyStore::default()
    }

    /// Registers (or replaces) terminal `id` with master key `tmk`; returns the old key.
    /// The key must be DES or TDES.
    pub fn insert(&mut self, id: TerminalId, tmk: Key) -> Result<Option<Key>> {
        if !tmk.kind().is_des_family() {
            return Err(SessionError::WrongKeyAlgorithm {
                expected: "DES or TDES terminal master key",
                found: tmk.kind(),
            });
        }
        Ok(self.keys.insert(id, tmk))
    }

    /// Unregisters terminal `id`.
    pub fn remove(&mut self, id: &TerminalId) -> Option<Key> {
        self.keys.remove(id)
    }

    /// Number of registered terminals.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The registered terminals (in no particular order).
    pub fn ids(&self) -> impl Iterator<Item = &TerminalId> + '_ {
        self.keys.keys()
    }

    /// Whether no terminal is registered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl KeyStore for MemoryKeyStore {
    fn master_key(&self, id: &TerminalId) -> Option<Key> {
        self.keys.get(id).cloned()
    }
    fn contains(&self, id: &TerminalId) -> bool {
        self.keys.contains_key(id)
    }
}

/// Host configuration.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// DE 32 in `cup-pos` sign-on responses (acquiring institution, `n..11`); empty to
    /// leave it out.
    pub acquirer_id: String,
    /// Requests remembered per terminal for replay detection.
    pub replay_window: usize,
    /// Terminals with session state at most.
    pub max_terminals: usize,
}

impl Default for HostConfig {
    /// Acquirer `00000000001`, a 128-request replay window, 100 000 terminals.
    fn default() -> HostConfig {
        HostConfig {
            acquirer_id: "00000000001".to_string(),
            replay_window: 128,
            max_terminals: 100_000,
        }
    }
}

/// Why the host refused an online request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// DE 41, 42 or 11 missing or malformed (`30`).
    Malformed,
    /// The terminal is not in the key store (`97`).
    UnknownTerminal,
    /// The terminal has no working keys (`77`).
    NotSignedOn,
    /// The MAC was missing or wrong (`A0`); the keys are now invalid.
    MacFailure(MacFailureReason),
    /// The STAN was already used in this session (`94`).
    Duplicate,
    /// The session table is full (`96`).
    Capacity,
}

/// A network-management request the host carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAction {
    /// New working keys issued.
    SignedOn {
        /// The terminal.
        terminal: TerminalId,
        /// Its batch (sent in 60.2 in `cup-pos`).
        batch: BatchNumber,
        /// The key scheme.
        scheme: KeyScheme,
    },
    /// Keys invalidated, batch advanced.
    SignedOff {
        /// The terminal.
        terminal: TerminalId,
        /// Its new batch.
        batch: BatchNumber,
    },
    /// Echo test answered.
    Echo {
        /// The terminal.
        terminal: TerminalId,
    },
}

/// An online request that passed every check: process it, then build the response
/// (e.g. `Message::response_to(&accepted.message)`) and seal it with
/// [`HostSession::seal_response`].
#[derive(Debug, Clone)]
pub struct AcceptedRequest {
    /// The terminal.
    pub terminal: TerminalId,
    /// DE 11.
    pub stan: Stan,
    /// The request (sharing the received bytes).
    pub message: Message,
}

/// What the host made of a received message.
#[derive(Debug, Clone)]
pub enum HostOutcome {
    /// An authentic, fresh online request for the application.
    Accepted(Box<AcceptedRequest>),
    /// A network-management request answered by the session: send `reply`.
    Replied {
        /// The response to send.
        reply: Bytes,
        /// What was done.
        action: HostAction,
    },
    /// A request refused with `code`: send `reply`.
    Rejected {
        /// DE 39 of the reply.
        code: ResponseCode,
        /// Why.
        reason: RejectReason,
        /// The response to send.
        reply: Bytes,
    },
    /// A terminal's acknowledgement (0810) of a host key change; nothing to send.
    Acknowledged {
        /// The terminal.
        terminal: TerminalId,
        /// Its DE 39, if any.
        code: Option<ResponseCode>,
    },
}

#[derive(Clone)]
struct Record {
    keys: Option<WorkingKeys>,
    batch: BatchNumber,
    window: ReplayWindow,
    generation: u64,
}

/// The host side of terminal sessions; see the module docs.
#[derive(Clone)]
pub struct HostSession<K: KeyStore = MemoryKeyStore> {
    profile: SessionProfile,
    config: HostConfig,
    store: K,
    terminals: HashMap<TerminalId, Record>,
    stan: Stan,
    rrn: u64,
    changed: HashSet<TerminalId>,
    evicted: Vec<TerminalSnapshot>,
}

impl<K: KeyStore> fmt::Debug for HostSession<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostSession")
            .field("dialect", &self.profile.dialect.name())
            .field("terminals", &self.terminals.len())
            .field(
                "signed_on",
                &self.terminals.values().filter(|r| r.keys.is_some()).count(),
            )
            .finish_non_exhaustive()
    }
}

fn stan_of(msg: &Message) -> Option<Stan> {
    let v = msg.field(11)?.as_u64().ok()?;
    Stan::new(u32::try_from(v).ok()?).ok()
}

impl<K: KeyStore> HostSession<K> {
    /// A host for `profile` with terminal master keys from `store`.
    pub fn new(profile: SessionProfile, config: HostConfig, store: K) -> Result<HostSession<K>> {
        profile.validate()?;
        Ok(HostSession {
            profile,
            config,
            store,
            terminals: HashMap::new(),
            stan: Stan::FIRST,
            rrn: 1,
            changed: HashSet::new(),
            evicted: Vec::new(),
        })
    }

    /// The profile.
    pub fn profile(&self) -> &SessionProfile {
        &self.profile
    }

    /// The key store.
    pub fn key_store(&self) -> &K {
        &self.store
    }

    /// The key store, to register or remove terminals.
    pub fn key_store_mut(&mut self) -> &mut K {
        &mut self.store
    }

    /// Whether terminal `id` has working keys.
    pub fn is_signed_on(&self, id: &TerminalId) -> bool {
        self.terminals.get(id).is_some_and(|r| r.keys.is_some())
    }

    /// The batch the host holds for terminal `id`.
    pub fn batch(&self, id: &TerminalId) -> Option<BatchNumber> {
        self.terminals.get(id).map(|r| r.batch)
    }

    /// Terminal `id`'s working keys, e.g. its PIK to translate PIN blocks.
    pub fn working_keys(&self, id: &TerminalId) -> Option<&WorkingKeys> {
        self.terminals.get(id).and_then(|r| r.keys.as_ref())
    }

    /// Terminals with session state.
    pub fn terminal_count(&self) -> usize {
        self.terminals.len()
    }

    /// Invalidates terminal `id`'s working keys: its next request is answered `77` and
    /// it must sign on again. Returns whether it had keys.
    pub fn invalidate(&mut self, id: &TerminalId) -> bool {
        let had = self
            .terminals
            .get_mut(id)
            .and_then(|r| r.keys.take())
            .is_some();
        if had {
            self.changed.insert(*id);
            tracing::info!(terminal = %id, "working keys invalidated");
        }
        had
    }

    /// The session state of terminal `id` as a snapshot (keys included, to be sealed
    /// before it is stored), if the host holds any.
    pub fn export(&self, id: &TerminalId) -> Option<TerminalSnapshot> {
        self.terminals.get(id).map(|r| TerminalSnapshot {
            terminal: *id,
            batch: r.batch,
            generation: r.generation,
            keys: r.keys.clone(),
        })
    }

    /// Every terminal's snapshot (e.g. to write a full copy when compacting a store).
    pub fn snapshots(&self) -> impl Iterator<Item = TerminalSnapshot> + '_ {
        self.terminals.keys().filter_map(|id| self.export(id))
    }

    /// The snapshot of a terminal whose session changed since it was last polled
    /// (sign-on, sign-off, invalidation, key change), for the caller to store.
    pub fn poll_snapshot(&mut self) -> Option<TerminalSnapshot> {
        if let Some(s) = self.evicted.pop() {
            return Some(s);
        }
        loop {
            let id = *self.changed.iter().next()?;
            self.changed.remove(&id);
            if let Some(s) = self.export(&id) {
                return Some(s);
            }
        }
    }

    /// Puts a stored session back (after a restart): the terminal's working keys,
    /// batch and generation; its replay window starts empty. Replaces what the host
    /// held for it. Does not queue the terminal for [`HostSession::poll_snapshot`].
    ///
    /// # Errors
    /// [`SessionError::UnknownTerminal`] for a terminal that is not in the key store
    /// (any longer), [`SessionError::SessionTableFull`] when there is no room.
    pub fn restore(&mut self, snapshot: TerminalSnapshot) -> Result<()> {
        let id = snapshot.terminal;
        if !self.store.contains(&id) {
            return Err(SessionError::UnknownTerminal {
                terminal: id.to_string(),
            });
        }
        if !self.make_room(&id) {
            return Err(SessionError::SessionTableFull {
                max: self.config.max_terminals,
            });
        }
        let window = ReplayWindow::new(self.config.replay_window);
        self.terminals.insert(
            id,
            Record {
                keys: snapshot.keys,
                batch: snapshot.batch,
                window,
                generation: snapshot.generation,
            },
        );
        Ok(())
    }

    /// Raises terminal `id`'s session generation above `stored` (a generation a shared
    /// store already holds for it, written by another node) and queues it for
    /// [`HostSession::poll_snapshot`]: a sign-on here must outrank every session stored
    /// before it, or the store keeps the older keys (it never replaces a newer
    /// generation) and the next node to serve the terminal fails its MAC. No effect
    /// when the terminal has no session here or its generation is above `stored`.
    pub fn outrank(&mut self, id: &TerminalId, stored: u64) {
        if let Some(r) = self.terminals.get_mut(id) {
            if r.generation <= stored {
                r.generation = stored.saturating_add(1);
                self.changed.insert(*id);
            }
        }
    }

    fn next_stan(&mut self) -> Stan {
        let s = self.stan;
        self.stan = s.next();
        s
    }

    fn next_rrn(&mut self) -> Result<Rrn> {
        let r = Rrn::from_sequence(self.rrn)?;
        self.rrn = if self.rrn >= MAX_RRN_SEQUENCE {
            1
        } else {
            self.rrn + 1
        };
        Ok(r)
    }

    /// A host-initiated key change for terminal `id`: a 0800 with code `101`
    /// (`cup-pos` 60.3, 1987 DE 70), DE 11, 41, 42 (and DE 7 from `local` in 1987),
    /// MACed under the terminal's current MAK. The keys are invalid from now on; the
    /// terminal acknowledges with an 0810 and signs on again.
    pub fn request_key_change(&mut self, id: &TerminalId, local: NaiveDateTime) -> Result<Bytes> {
        let Some(record) = self.terminals.get(id).filter(|r| r.keys.is_some()) else {
            return Err(SessionError::NotSignedOn {
                terminal: id.to_string(),
            });
        };
        let batch = record.batch;
        let stan = self.next_stan();
        let mut m = self.profile.management_message(
            NetworkCode::KeyChange,
            id,
            Some(stan),
            batch,
            local,
        )?;
        let record = self
            .terminals
            .get_mut(id)
            .ok_or(SessionError::NotSignedOn {
                terminal: id.to_string(),
            })?;
        let keys = record.keys.take().ok_or(SessionError::NotSignedOn {
            terminal: id.to_string(),
        })?;
        self.changed.insert(*id);
        let bytes = self.profile.seal(keys.mak(), &mut m)?;
        tracing::info!(terminal = %id, %stan, "key change requested");
        Ok(bytes)
    }

    /// Seals a response to an accepted request: the MAC under the terminal's MAK (found
    /// by the response's DE 41/42) when the profile requires one.
    pub fn seal_response(&mut self, response: &mut Message) -> Result<Bytes> {
        if !self.profile.requires_mac(response.mti()) {
            return Ok(response.to_bytes()?);
        }
        let id = TerminalId::from_message(response)?;
        let keys = self
            .terminals
            .get(&id)
            .and_then(|r| r.keys.as_ref())
            .ok_or_else(|| SessionError::NotSignedOn {
                terminal: id.to_string(),
            })?;
        self.profile.seal(keys.mak(), response)
    }

    fn answer(
        &self,
        req: &Message,
        code: ResponseCode,
        mak: Option<&Key>,
    ) -> Result<(Message, Bytes)> {
        let mut reply = Message::response_to(req)?;
        reply.set(39, code.as_str())?;
        let bytes = match mak {
            Some(k) if self.profile.requires_mac(reply.mti()) => {
                self.profile.seal(k, &mut reply)?
            }
            _ => reply.to_bytes()?,
        };
        Ok((reply, bytes))
    }

    /// The terminal of `msg` if DE 41/42 are well formed (else 30) and it is in the key
    /// store (else 97); the rejection is the inner `Err`.
    fn registered_terminal(
        &self,
        msg: &Message,
    ) -> Result<std::result::Result<TerminalId, HostOutcome>> {
        let Ok(id) = TerminalId::from_message(msg) else {
            let rejected = self.reject(
                msg,
                ResponseCode::FORMAT_ERROR,
                RejectReason::Malformed,
                None,
            )?;
            return Ok(Err(rejected));
        };
        if !self.store.contains(&id) {
            let rejected = self.reject(
                msg,
                ResponseCode::NOT_REGISTERED,
                RejectReason::UnknownTerminal,
                None,
            )?;
            return Ok(Err(rejected));
        }
        Ok(Ok(id))
    }

    fn reject(
        &self,
        req: &Message,
        code: ResponseCode,
        reason: RejectReason,
        mak: Option<&Key>,
    ) -> Result<HostOutcome> {
        let (_, reply) = self.answer(req, code, mak)?;
        tracing::warn!(
            mti = %req.mti(),
            terminal = ?TerminalId::from_message(req).ok(),
            stan = ?req.get(11),
            %code,
            ?reason,
            "request rejected"
        );
        Ok(HostOutcome::Rejected {
            code,
            reason,
            reply,
        })
    }

    /// Handles one received message (its exact bytes, no length header); `local` is the
    /// host's local date and time for DE 12/13 of sign-on responses.
    ///
    /// Errors: [`SessionError::Codec`] for bytes that do not decode (nothing can be
    /// answered), [`SessionError::UnexpectedMessage`] for responses other than a key
    /// change acknowledgement and for unknown network-management codes.
    pub fn handle_request(&mut self, local: NaiveDateTime, bytes: Bytes) -> Result<HostOutcome> {
        let msg = Message::decode(&self.profile.dialect, bytes)?;
        self.handle_decoded(local, msg)
    }

    /// [`HostSession::handle_request`] for a message already decoded (by a server that
    /// decoded it once for its own use): it must be unchanged since it was decoded in
    /// this profile's dialect, so that its MAC is checked over the bytes received
    /// (read from the message's own index, nothing decoded again). A message built or
    /// changed since, or of another dialect, is decoded again from its encoding.
    ///
    /// # Errors
    /// As [`HostSession::handle_request`].
    pub fn handle_decoded(&mut self, local: NaiveDateTime, msg: Message) -> Result<HostOutcome> {
        let msg = if msg.view().is_some() && msg.dialect().name() == self.profile.dialect.name() {
            msg
        } else {
            Message::decode(&self.profile.dialect, msg.to_bytes()?)?
        };
        let mti = msg.mti();
        if mti.class() == MessageClass::NetworkManagement {
            return self.handle_management(local, msg);
        }
        if mti.is_response() || mti.response_mti().is_none() {
            return Err(SessionError::UnexpectedMessage {
                mti,
                why: "a host receives requests and advices only",
            });
        }
        let id = match self.registered_terminal(&msg)? {
            Ok(id) => id,
            Err(rejected) => return Ok(rejected),
        };
        let Some(keys) = self.terminals.get(&id).and_then(|r| r.keys.clone()) else {
            return self.reject(
                &msg,
                ResponseCode::SIGN_ON_AGAIN,
                RejectReason::NotSignedOn,
                None,
            );
        };
        if self.profile.requires_mac(mti) {
            // A message just decoded is unchanged: its view is always there.
            let checked = msg.view().map_or(Err(MacFailureReason::Missing), |view| {
                self.profile.verify_mac(keys.mak(), &view)
            });
            if let Err(reason) = checked {
                let out = self.reject(
                    &msg,
                    ResponseCode::MAC_FAILED,
                    RejectReason::MacFailure(reason),
                    Some(keys.mak()),
                );
                // A MAC failure forces a new sign-on.
                self.invalidate(&id);
                return out;
            }
        }
        let Some(stan) = stan_of(&msg) else {
            return self.reject(
                &msg,
                ResponseCode::FORMAT_ERROR,
                RejectReason::Malformed,
                Some(keys.mak()),
            );
        };
        let fresh = self
            .terminals
            .get_mut(&id)
            .is_some_and(|r| r.window.check_and_record(mti, stan));
        if !fresh {
            return self.reject(
                &msg,
                ResponseCode::DUPLICATE,
                RejectReason::Duplicate,
                Some(keys.mak()),
            );
        }
        tracing::debug!(terminal = %id, %mti, %stan, "request accepted");
        Ok(HostOutcome::Accepted(Box::new(AcceptedRequest {
            terminal: id,
            stan,
            message: msg,
        })))
    }

    fn handle_management(&mut self, local: NaiveDateTime, msg: Message) -> Result<HostOutcome> {
        let mti = msg.mti();
        let code = self.profile.network_code(&msg);
        if mti.is_response() {
            if code == Some(NetworkCode::KeyChange) {
                let terminal = TerminalId::from_message(&msg)?;
                let code = ResponseCode::of(&msg);
                tracing::info!(%terminal, code = %code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()), "key change acknowledged");
                return Ok(HostOutcome::Acknowledged { terminal, code });
            }
            return Err(SessionError::UnexpectedMessage {
                mti,
                why: "no such response expected by the host",
            });
        }
        let Some(code) =
            code.filter(|c| self.profile.mti_for(*c) == mti && *c != NetworkCode::KeyChange)
        else {
            return Err(SessionError::UnexpectedMessage {
                mti,
                why: "unknown network-management code for this MTI",
            });
        };
        let id = match self.registered_terminal(&msg)? {
            Ok(id) => id,
            Err(rejected) => return Ok(rejected),
        };
        match code {
            NetworkCode::SignOn(scheme) => self.sign_on(local, &msg, id, scheme),
            NetworkCode::SignOff => {
                let batch = match self.terminals.get_mut(&id) {
                    Some(r) => {
                        if r.keys.take().is_some() {
                            r.batch = r.batch.next();
                            self.changed.insert(id);
                        }
                        r.window.clear();
                        r.batch
                    }
                    None => self
                        .profile
                        .batch_of(&msg)
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                };
                let (_, reply) = self.answer(&msg, ResponseCode::APPROVED, None)?;
                tracing::info!(terminal = %id, %batch, "signed off");
                Ok(HostOutcome::Replied {
                    reply,
                    action: HostAction::SignedOff {
                        terminal: id,
                        batch,
                    },
                })
            }
            NetworkCode::Echo => {
                let (_, reply) = self.answer(&msg, ResponseCode::APPROVED, None)?;
                Ok(HostOutcome::Replied {
                    reply,
                    action: HostAction::Echo { terminal: id },
                })
            }
            NetworkCode::KeyChange => Err(SessionError::UnexpectedMessage {
                mti,
                why: "a key change comes from the host",
            }),
        }
    }

    fn make_room(&mut self, id: &TerminalId) -> bool {
        if self.terminals.contains_key(id) || self.terminals.len() < self.config.max_terminals {
            return true;
        }
        // Full: forget a terminal without keys (it only loses its batch and window).
        let idle = self
            .terminals
            .iter()
            .find(|(_, r)| r.keys.is_none())
            .map(|(k, _)| *k);
        match idle {
            Some(k) => {
                // A change not yet polled (its keys were dropped) must still be stored.
                if self.changed.remove(&k) {
                    if let Some(s) = self.export(&k) {
                        self.evicted.push(s);
                    }
                }
                self.terminals.remove(&k);
                true
            }
            None => false,
        }
    }

    fn sign_on(
        &mut self,
        local: NaiveDateTime,
        req: &Message,
        id: TerminalId,
        scheme: KeyScheme,
    ) -> Result<HostOutcome> {
        let Some(tmk) = self.store.master_key(&id) else {
            return self.reject(
                req,
                ResponseCode::NOT_REGISTERED,
                RejectReason::UnknownTerminal,
                None,
            );
        };
        if !self.make_room(&id) {
            tracing::error!(max = self.config.max_terminals, "host session table full");
            return self.reject(
                req,
                ResponseCode::SYSTEM_MALFUNCTION,
                RejectReason::Capacity,
                None,
            );
        }
        let keys = match WorkingKeys::generate(scheme, self.profile.mak_kind(scheme)) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "working key generation failed");
                return self.reject(
                    req,
                    ResponseCode::SYSTEM_MALFUNCTION,
                    RejectReason::Capacity,
                    None,
                );
            }
        };
        let block = keys.encrypt_block(&tmk)?;
        let batch = match self.terminals.get(&id) {
            Some(r) => r.batch,
            None => self
                .profile
                .batch_of(req)
                .ok()
                .flatten()
                .unwrap_or_default(),
        };
        let mut reply = Message::response_to(req)?;
        reply.set(39, ResponseCode::APPROVED.as_str())?;
        if self.profile.management == ManagementStyle::Field60 {
            let rrn = self.next_rrn()?;
            reply.set_time_hhmmss(12, local.time())?;
            reply.set_date_mmdd(13, local.date())?;
            if !self.config.acquirer_id.is_empty() {
                reply.set(32, self.config.acquirer_id.as_bytes())?;
            }
            reply.set(37, rrn.as_str())?;
            reply.set(
                60,
                format!(
                    "00{batch}{}",
                    self.profile.code_text(NetworkCode::SignOn(scheme))
                ),
            )?;
        }
        self.profile.set_key_block(&mut reply, &block)?;
        let bytes = reply.to_bytes()?;
        tracing::info!(
            terminal = %id,
            %batch,
            ?scheme,
            pik_kcv = %keys.pik().kcv(),
            mak_kcv = %keys.mak().kcv(),
            "terminal signed on"
        );
        let window = self.config.replay_window;
        let record = self.terminals.entry(id).or_insert_with(|| Record {
            keys: None,
            batch,
            window: ReplayWindow::new(window),
            generation: 0,
        });
        record.keys = Some(keys);
        record.window.clear();
        record.generation = record.generation.wrapping_add(1);
        self.changed.insert(id);
        Ok(HostOutcome::Replied {
            reply: bytes,
            action: HostAction::SignedOn {
                terminal: id,
                batch,
                scheme,
            },
        })
    }
}
