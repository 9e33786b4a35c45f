//! [`ReversalHandler`]: the host side of reversals, idempotent and crash-safe.
//!
//! Transactions are matched by DE 42 + DE 41 + batch + DE 11 ([`TxnKey`]), plus the
//! original transaction type (DE 3 positions 1–2). Rules (domain §5, with the choices
//! this crate makes):
//!
//! | request | known state | answer | ledger |
//! |---|---|---|---|
//! | original | key unknown | the authorizer's decision | + amount if approved |
//! | original | key has an original (reused STAN) | `94` duplicate | — |
//! | original | key has a reversal but no original (reversal came first) | [`HostConfig::late_original_code`], `12` by default | — |
//! | reversal (`0400`/`0401`/`0420`…) | already answered | **the same stored answer** (identical `0410`; we do not answer `25` "already reversed", so a repeat after a lost `0410` cannot look like a failure) | — |
//! | reversal | approved original, same amount and type | `00` | − amount |
//! | reversal | declined original | `00` | — |
//! | reversal | amount differs | `64` (not remembered) | — |
//! | reversal | type differs | `25` (not remembered) | — |
//! | reversal | key unknown | `00`, remembered (so a late original is declined) | — |
//!
//! Every decision is one [`StoreRecord`] committed durably *before* the answer is
//! returned. The handler works on decoded, MAC-checked messages; sealing the answer is
//! the caller's (`HostSession::seal_response`). Keys come from
//! [`ReversalProfile::key_of`]: in ISO 1987 a reversal is matched by the original data
//! elements of its DE 90.
//!
//! ## Two phases: a switch that forwards
//! A switch is a host to its terminals and forwards their originals upstream.
//! [`ReversalHandler::admit`] decides what the handler can decide alone and records a new
//! original as admitted (durably, before it is forwarded): [`Admit::Answer`] or
//! [`Admit::Forward`] with a [`Ticket`]. [`ReversalHandler::complete`] records the upstream
//! decision (durably, ledger effect applied) and gives the answer for the terminal. The
//! rules an acquirer applies to a terminal reversal of an original it forwards:
//!
//! | request | known state | answer | upstream |
//! |---|---|---|---|
//! | original | key unknown | [`Admit::Forward`] (admitted record) | forward it |
//! | original | admitted or answered | `94` duplicate | — |
//! | original | reversal came first | `12` | — |
//! | reversal | original still being forwarded | `00` once durable (the terminal must not retry forever) | [`UpstreamAction::ReversedWhileForwarding`]; its `complete`, if approved, reports [`UpstreamAction::ReverseUpstream`] and moves no money |
//! | reversal | original approved | `00`, ledger − amount | [`UpstreamAction::ReverseUpstream`] |
//! | reversal | original declined, key unknown, repeat, mismatch | as in the table above | — |
//!
//! Admitted originals not yet completed (a restart in between) are listed by
//! [`ReversalHandler::admitted`], so the switch finishes them from its engine's journal.

use crate::error::{Result, ReversalError};
use crate::profile::{ReversalProfile, TxnInfo, TxnKey};
use crate::settlement::BatchTotals;
use crate::store::{
    Admission, IdempotencyStore, Ledger, OriginalState, ReversalState, StoreRecord,
};
use isoswitch_codec::{Message, MessageClass, Mti};
use rust_decimal::Decimal;

/// The authorizer's decision on a new original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approve (optional DE 38 authorization code).
    Approve {
        /// DE 38.
        auth_code: Option<String>,
    },
    /// Decline with this DE 39.
    Decline([u8; 2]),
}

/// An original admitted for forwarding: hand it back to [`ReversalHandler::complete`].
#[derive(Debug, Clone)]
pub struct Ticket {
    key: TxnKey,
    mti: Mti,
    info: TxnInfo,
    request: Option<Box<Message>>,
}

impl Ticket {
    /// The transaction's key.
    pub fn key(&self) -> &TxnKey {
        &self.key
    }

    /// What the transaction does to the cardholder.
    pub fn info(&self) -> &TxnInfo {
        &self.info
    }

    /// The request's MTI.
    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// The request as admitted; `None` for a ticket listed after a restart
    /// ([`ReversalHandler::admitted`]: its answer is then built from the key).
    pub fn request(&self) -> Option<&Message> {
        self.request.as_deref()
    }
}

/// What the switch must do upstream because of a terminal's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAction {
    /// Reverse this original upstream: the upstream host approved it and the terminal
    /// reversed it (its reversal came after the approval, or while it was forwarded).
    ReverseUpstream {
        /// The original's key.
        key: TxnKey,
    },
    /// The terminal reversed an original still being forwarded: nothing to do now (an
    /// upstream outcome in doubt is reversed by the engine anyway); when it is completed
    /// approved, [`ReversalHandler::complete`] reports [`UpstreamAction::ReverseUpstream`].
    ReversedWhileForwarding {
        /// The original's key.
        key: TxnKey,
    },
}

/// The first phase's result: [`ReversalHandler::admit`].
#[derive(Debug)]
pub enum Admit {
    /// Answer the terminal with this (durable when returned); maybe act upstream.
    Answer {
        /// The answer (boxed: a `Message` is large).
        answer: Box<Message>,
        /// What to do upstream, if anything.
        action: Option<UpstreamAction>,
    },
    /// A new original, durably admitted: forward it, then [`ReversalHandler::complete`].
    Forward(Ticket),
    /// A repeat (`0221`) of an advice that is admitted and still being forwarded: no
    /// answer yet (the terminal repeats it; once completed, a repeat gets the answer).
    InProgress,
}

/// The second phase's result: [`ReversalHandler::complete`].
#[derive(Debug)]
pub struct Completion {
    /// The answer for the terminal (durable when returned).
    pub answer: Message,
    /// What to do upstream, if anything.
    pub action: Option<UpstreamAction>,
}

/// Response codes the handler uses.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// An original whose key already has an original (reused STAN): `94`.
    pub duplicate_code: [u8; 2],
    /// An original that arrives after its own reversal: `12` (invalid transaction).
    pub late_original_code: [u8; 2],
    /// A reversal whose amount differs from the original's: `64`.
    pub amount_mismatch_code: [u8; 2],
    /// A reversal whose transaction type differs from the original's: `25`.
    pub type_mismatch_code: [u8; 2],
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            duplicate_code: *b"94",
            late_original_code: *b"12",
            amount_mismatch_code: *b"64",
            type_mismatch_code: *b"25",
        }
    }
}

/// Counters of the handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Originals approved.
    pub approved: u64,
    /// Originals declined by the authorizer.
    pub declined: u64,
    /// Duplicate originals (`94`).
    pub duplicates: u64,
    /// Originals declined because their reversal came first.
    pub late_originals: u64,
    /// Reversals applied for the first time.
    pub reversals: u64,
    /// Reversal repeats answered from the store.
    pub repeats: u64,
    /// Reversals of unknown originals (remembered).
    pub unknown_reversals: u64,
    /// Reversals refused (`64`, `25`).
    pub refused: u64,
    /// Originals admitted for forwarding.
    pub admitted: u64,
}

/// The host side; see the module docs.
#[derive(Debug)]
pub struct ReversalHandler<S: IdempotencyStore> {
    profile: ReversalProfile,
    store: S,
    config: HostConfig,
    stats: HostStats,
}

impl<S: IdempotencyStore> ReversalHandler<S> {
    /// A handler over `store`.
    pub fn new(profile: ReversalProfile, store: S, config: HostConfig) -> Self {
        ReversalHandler {
            profile,
            store,
            config,
            stats: HostStats::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, to configure it (e.g. [`IdempotencyStore::defer_sync`]).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The ledger (per card and overall).
    pub fn ledger(&self) -> &Ledger {
        self.store.ledger()
    }

    /// Counters.
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// The host's totals of a terminal batch (for [`crate::settlement::HostSettlement`]).
    pub fn batch_totals(&self, terminal: &str, merchant: &str, batch: u32) -> BatchTotals {
        self.store.batch_totals(terminal, merchant, batch)
    }

    /// Handles a financial request or a reversal; `authorize` decides new originals.
    ///
    /// # Errors
    /// Codec errors, missing DE 11/41/42, store I/O errors (then nothing was decided),
    /// [`ReversalError::UnexpectedMessage`] for other message classes.
    pub fn handle(
        &mut self,
        request: &Message,
        authorize: impl FnOnce(&Message, &TxnInfo) -> Decision,
    ) -> Result<Message> {
        match request.mti().class() {
            MessageClass::Reversal => self.handle_reversal(request),
            MessageClass::Authorization | MessageClass::Financial => {
                self.handle_original(request, authorize)
            }
            _ => Err(ReversalError::UnexpectedMessage {
                mti: request.mti(),
                why: "not a financial request or a reversal",
            }),
        }
    }

    fn answer(&self, request: &Message, code: [u8; 2]) -> Result<Message> {
        let mut r = Message::response_to(request)?;
        for n in [11, 41, 42] {
            if let (Some(v), false) = (request.get(n), r.has(n)) {
                r.set(n, v)?;
            }
        }
        r.set(39, self.profile.wire_code(code))?;
        Ok(r)
    }

    /// Handles an original (0100/0200…).
    ///
    /// # Errors
    /// As [`ReversalHandler::handle`].
    pub fn handle_original(
        &mut self,
        request: &Message,
        authorize: impl FnOnce(&Message, &TxnInfo) -> Decision,
    ) -> Result<Message> {
        self.handle_original_cancelling(request, None, authorize)
    }

    /// Handles an original that cancels another one (a void names the sale it
    /// cancels): as [`ReversalHandler::handle_original`], and when it is approved the
    /// same store record names `cancels` ([`OriginalState::cancels`]), so the link and
    /// the decision are durable together; the cancelled original then counts as
    /// cancelled ([`IdempotencyStore::is_cancelled`]) while this one stands. A declined
    /// original records no link.
    ///
    /// # Errors
    /// As [`ReversalHandler::handle`].
    pub fn handle_original_cancelling(
        &mut self,
        request: &Message,
        cancels: Option<TxnKey>,
        authorize: impl FnOnce(&Message, &TxnInfo) -> Decision,
    ) -> Result<Message> {
        let key = self.profile.key_of(request)?;
        self.store.refresh(&key)?;
        if let Some(known) = self.store.get(&key) {
            // A repeated advice (xx21) gets the answer its first got: the sender repeats
            // until it hears one, so the repeat is no duplicate.
            if let (Some(o), true) = (&known.original, crate::profile::is_advice(request.mti())) {
                let code = o.code;
                return self.answer(request, code);
            }
            if known.original.is_some() {
                self.stats.duplicates += 1;
                tracing::warn!(%key, "original with a reused STAN: duplicate");
                return self.answer(request, self.config.duplicate_code);
            }
        }
        let info = self.profile.classify(request);
        let reversed_first = self.store.get(&key).is_some_and(|k| k.reversal.is_some());
        let (code, approved, auth) = if reversed_first {
            self.stats.late_originals += 1;
            tracing::warn!(%key, "original after its own reversal: declined");
            (self.config.late_original_code, false, None)
        } else {
            match authorize(request, &info) {
                Decision::Approve { auth_code } => (*b"00", true, auth_code),
                Decision::Decline(c) => (c, false, None),
            }
        };
        let state = OriginalState {
            cancels: cancels.filter(|_| approved),
            ..OriginalState::decided(&info, code, approved)
        };
        self.store.commit(StoreRecord::Original {
            key: key.clone(),
            state,
        })?;
        if !reversed_first {
            if approved {
                self.stats.approved += 1;
            } else {
                self.stats.declined += 1;
            }
        }
        tracing::debug!(%key, pan = %crate::profile::mask_pan(&info.pan), amount = %info.amount, code = %String::from_utf8_lossy(&code), "original answered");
        let mut r = self.answer(request, code)?;
        if let Some(a) = auth {
            r.set(38, a)?;
        }
        Ok(r)
    }

    /// Handles a reversal (0400/0401/0420/0421/1420…).
    ///
    /// # Errors
    /// As [`ReversalHandler::handle`].
    pub fn handle_reversal(&mut self, request: &Message) -> Result<Message> {
        self.reversal(request).map(|(answer, _)| answer)
    }

    /// A reversal's answer and what it asks of the upstream side.
    fn reversal(&mut self, request: &Message) -> Result<(Message, Option<UpstreamAction>)> {
        let key: TxnKey = self.profile.key_of(request)?;
        let info = self.profile.classify(request);
        self.store.refresh(&key)?;
        let known = self.store.get(&key).cloned().unwrap_or_default();
        if let Some(r) = &known.reversal {
            self.stats.repeats += 1;
            tracing::info!(%key, "reversal repeat: same answer");
            return Ok((self.answer(request, r.code)?, None));
        }
        let original = match (&known.original, &known.admitted) {
            (Some(o), _) => Some((o.txn_type, o.amount, o.approved, o.kind, o.pan.clone())),
            (None, Some(a)) => Some((
                a.info.txn_type,
                a.info.amount,
                false,
                a.info.kind,
                a.info.pan.clone(),
            )),
            (None, None) => None,
        };
        let (effect, pan, action) = match original {
            Some((txn_type, amount, approved, kind, pan)) => {
                if txn_type != info.txn_type {
                    self.stats.refused += 1;
                    return Ok((self.answer(request, self.config.type_mismatch_code)?, None));
                }
                if amount != info.amount {
                    self.stats.refused += 1;
                    tracing::warn!(%key, original = %amount, reversal = %info.amount, "reversal amount differs");
                    return Ok((
                        self.answer(request, self.config.amount_mismatch_code)?,
                        None,
                    ));
                }
                let (effect, action) = if known.original.is_none() {
                    tracing::warn!(%key, "reversal of an original still being forwarded");
                    (
                        Decimal::ZERO,
                        Some(UpstreamAction::ReversedWhileForwarding { key: key.clone() }),
                    )
                } else if approved {
                    (
                        -kind.effect(amount),
                        Some(UpstreamAction::ReverseUpstream { key: key.clone() }),
                    )
                } else {
                    (Decimal::ZERO, None)
                };
                (effect, pan, action)
            }
            None => {
                self.stats.unknown_reversals += 1;
                tracing::info!(
                    ?key,
                    "reversal of an unknown original: acknowledged and remembered"
                );
                (Decimal::ZERO, info.pan.clone(), None)
            }
        };
        let code = *b"00";
        self.store.commit(StoreRecord::Reversal {
            key,
            pan,
            state: ReversalState {
                code,
                amount: info.amount,
                txn_type: info.txn_type,
                effect,
            },
        })?;
        if known.original.is_some() || known.admitted.is_some() {
            self.stats.reversals += 1;
        }
        Ok((self.answer(request, code)?, action))
    }

    /// What [`ReversalHandler::admit`] would ask upstream for this terminal reversal
    /// (`None` for any other request), recording nothing. A switch journals the upstream
    /// reversal of an approval first and admits the terminal's reversal after: were the
    /// terminal's reversal recorded first, another request's sync could make it durable
    /// before the upstream reversal is journaled, and a crash in between would leave the
    /// host's approval standing while the terminal's repeat gets the stored `00`.
    ///
    /// # Errors
    /// As [`ReversalHandler::admit`] (the key does not parse, the store is unreachable).
    pub fn upstream_action_of(&mut self, request: &Message) -> Result<Option<UpstreamAction>> {
        if request.mti().class() != MessageClass::Reversal {
            return Ok(None);
        }
        let key: TxnKey = self.profile.key_of(request)?;
        let info = self.profile.classify(request);
        self.store.refresh(&key)?;
        let Some(known) = self.store.get(&key) else {
            return Ok(None);
        };
        Ok(match (&known.reversal, &known.original) {
            (None, Some(o))
                if o.approved && o.txn_type == info.txn_type && o.amount == info.amount =>
            {
                Some(UpstreamAction::ReverseUpstream { key })
            }
            _ => None,
        })
    }

    /// First phase for a switch: decides what needs no upstream answer (duplicates,
    /// reversals, repeats, late originals: [`Admit::Answer`]) and durably records a new
    /// original as admitted before it is forwarded ([`Admit::Forward`]). See the module
    /// docs for the rules.
    ///
    /// # Errors
    /// As [`ReversalHandler::handle`] (a store error: nothing was decided or admitted).
    pub fn admit(&mut self, request: &Message) -> Result<Admit> {
        match request.mti().class() {
            MessageClass::Reversal => {
                let (answer, action) = self.reversal(request)?;
                return Ok(Admit::Answer {
                    answer: Box::new(answer),
                    action,
                });
            }
            MessageClass::Authorization | MessageClass::Financial => {}
            _ => {
                return Err(ReversalError::UnexpectedMessage {
                    mti: request.mti(),
                    why: "not a financial request or a reversal",
                })
            }
        }
        let key = self.profile.key_of(request)?;
        self.store.refresh(&key)?;
        let known = self.store.get(&key);
        // An advice is repeated (xx21) until answered: a repeat gets the stored answer,
        // or none while its first is still being forwarded. Never a duplicate.
        if crate::profile::is_advice(request.mti()) {
            if let Some(o) = known.and_then(|k| k.original.as_ref()) {
                let code = o.code;
                let answer = Box::new(self.answer(request, code)?);
                return Ok(Admit::Answer {
                    answer,
                    action: None,
                });
            }
            if known.is_some_and(|k| k.admitted.is_some()) {
                return Ok(Admit::InProgress);
            }
        }
        if known.is_some_and(|k| k.original.is_some() || k.admitted.is_some()) {
            self.stats.duplicates += 1;
            tracing::warn!(%key, "original with a reused STAN: duplicate");
            let answer = Box::new(self.answer(request, self.config.duplicate_code)?);
            return Ok(Admit::Answer {
                answer,
                action: None,
            });
        }
        if known.is_some_and(|k| k.reversal.is_some()) {
            // Reversed first: declined here, nothing forwarded.
            let answer = Box::new(self.handle_original(request, |_, _| Decision::Decline(*b"05"))?);
            return Ok(Admit::Answer {
                answer,
                action: None,
            });
        }
        let info = self.profile.classify(request);
        self.store.commit(StoreRecord::Admitted {
            key: key.clone(),
            admission: Admission {
                mti: request.mti(),
                info: info.clone(),
            },
        })?;
        self.stats.admitted += 1;
        Ok(Admit::Forward(Ticket {
            key,
            mti: request.mti(),
            info,
            request: Some(Box::new(request.clone())),
        }))
    }

    /// Second phase: records the upstream `decision` on an admitted original (durable,
    /// ledger effect applied) and gives the terminal's answer. An original the terminal
    /// reversed meanwhile moves no money; if it was approved, the approval must be reversed
    /// upstream ([`UpstreamAction::ReverseUpstream`]). Completing a ticket twice gives the
    /// stored answer again.
    ///
    /// # Errors
    /// Codec errors, store I/O errors (then nothing was recorded: complete it again).
    pub fn complete(&mut self, ticket: Ticket, decision: Decision) -> Result<Completion> {
        self.complete_forwarded(ticket, decision, None)
    }

    /// As [`ReversalHandler::complete`], recording with an approval the upstream original
    /// that carried it (see [`OriginalState::upstream`]): a switch reverses it upstream
    /// when the terminal reverses the transaction later, after a restart too
    /// ([`ReversalHandler::upstream_original`]).
    ///
    /// # Errors
    /// As [`ReversalHandler::complete`].
    pub fn complete_forwarded(
        &mut self,
        ticket: Ticket,
        decision: Decision,
        upstream: Option<Vec<u8>>,
    ) -> Result<Completion> {
        self.store.refresh(&ticket.key)?;
        let known = self.store.get(&ticket.key).cloned().unwrap_or_default();
        if let Some(o) = &known.original {
            let answer = self.ticket_answer(&ticket, o.code)?;
            return Ok(Completion {
                answer,
                action: None,
            });
        }
        let (code, approved, auth) = match decision {
            Decision::Approve { auth_code } => (*b"00", true, auth_code),
            Decision::Decline(c) => (c, false, None),
        };
        self.store.commit(StoreRecord::Original {
            key: ticket.key.clone(),
            state: OriginalState {
                upstream: upstream.filter(|_| approved),
                ..OriginalState::decided(&ticket.info, code, approved)
            },
        })?;
        if approved {
            self.stats.approved += 1;
        } else {
            self.stats.declined += 1;
        }
        let action = (approved && known.reversal.is_some()).then(|| {
            tracing::warn!(key = %ticket.key, "approved upstream after the terminal reversed it: reverse upstream");
            UpstreamAction::ReverseUpstream {
                key: ticket.key.clone(),
            }
        });
        let mut answer = self.ticket_answer(&ticket, code)?;
        if let Some(a) = auth {
            answer.set(38, a)?;
        }
        Ok(Completion { answer, action })
    }

    /// The upstream original recorded with the approval of `key`
    /// ([`ReversalHandler::complete_forwarded`]), if any.
    pub fn upstream_original(&self, key: &TxnKey) -> Option<&[u8]> {
        self.store.get(key)?.original.as_ref()?.upstream.as_deref()
    }

    /// The key `request` is matched by (its profile's [`ReversalProfile::key_of`]).
    ///
    /// # Errors
    /// The key's fields are missing or malformed.
    pub fn key_of(&self, request: &Message) -> Result<TxnKey> {
        self.profile.key_of(request)
    }

    /// Whether `key`'s admission is still open, read afresh from the store (another node
    /// of a shared store may have completed it since this handler last looked).
    ///
    /// # Errors
    /// Store I/O or database errors.
    pub fn still_admitted(&mut self, key: &TxnKey) -> Result<bool> {
        self.store.reload(key)?;
        Ok(self
            .store
            .get(key)
            .is_some_and(|t| t.original.is_none() && t.admitted.is_some()))
    }

    /// Reads the admissions still open that other nodes of a shared store made
    /// ([`IdempotencyStore::refresh_open`]), so that [`ReversalHandler::admitted`] lists
    /// them too.
    ///
    /// # Errors
    /// Store I/O or database errors.
    pub fn refresh_admitted(&mut self) -> Result<()> {
        self.store.refresh_open()
    }

    /// Originals admitted but not completed (for example across a restart), as tickets
    /// without their request.
    pub fn admitted(&self) -> Vec<Ticket> {
        self.store
            .entries()
            .filter(|(_, v)| v.original.is_none())
            .filter_map(|(k, v)| {
                v.admitted.as_ref().map(|a| Ticket {
                    key: k.clone(),
                    mti: a.mti,
                    info: a.info.clone(),
                    request: None,
                })
            })
            .collect()
    }

    /// The answer to a ticket's request: from the request when the ticket has it, else
    /// from the key (response MTI, DE 11, 41, 42, 39).
    fn ticket_answer(&self, ticket: &Ticket, code: [u8; 2]) -> Result<Message> {
        if let Some(r) = ticket.request() {
            return self.answer(r, code);
        }
        let mti = ticket
            .mti
            .response_mti()
            .ok_or(ReversalError::UnexpectedMessage {
                mti: ticket.mti,
                why: "admitted request has no response MTI",
            })?;
        let mut m = Message::new(&self.profile.dialect, mti);
        m.set(11, format!("{:06}", ticket.key.stan % 1_000_000))?;
        m.set(41, ticket.key.terminal.as_str())?;
        m.set(42, ticket.key.merchant.as_str())?;
        m.set(39, self.profile.wire_code(code))?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ReversalReason;
    use crate::store::{FileStore, MemoryStore};

    fn sale(p: &ReversalProfile, stan: &str) -> Message {
        let mut m = Message::new(&p.dialect, "0200".parse().unwrap());
        m.set(2, "6222021234567890").unwrap();
        m.set(3, "000000").unwrap();
        m.set(4, "000000001000").unwrap();
        m.set(11, stan).unwrap();
        m.set(41, "TERM0001").unwrap();
        m.set(42, "MERCHANT0000001").unwrap();
        m.set(49, "156").unwrap();
        if p.batch_in_de60 {
            m.set(60, "22000001000").unwrap();
        }
        m
    }

    fn reversal_of(p: &ReversalProfile, o: &Message) -> Message {
        p.build_reversal(o, ReversalReason::NoResponse).unwrap()
    }

    fn code(m: &Message) -> String {
        m.get(39).unwrap()
    }

    fn forward<S: IdempotencyStore>(h: &mut ReversalHandler<S>, m: &Message) -> Ticket {
        match h.admit(m).unwrap() {
            Admit::Forward(t) => t,
            other => panic!("{other:?}"),
        }
    }

    fn answered<S: IdempotencyStore>(
        h: &mut ReversalHandler<S>,
        m: &Message,
    ) -> (String, Option<UpstreamAction>) {
        match h.admit(m).unwrap() {
            Admit::Answer { answer, action } => (code(&answer), action),
            other => panic!("{other:?}"),
        }
    }

    fn reverse_upstream(t: &Ticket) -> Option<UpstreamAction> {
        Some(UpstreamAction::ReverseUpstream {
            key: t.key().clone(),
        })
    }

    fn approve() -> Decision {
        Decision::Approve {
            auth_code: Some("123456".into()),
        }
    }

    #[test]
    fn an_admitted_original_is_durable_before_forwarding_and_completed_once() {
        let p = ReversalProfile::cup_pos().unwrap();
        let mut h = ReversalHandler::new(p.clone(), MemoryStore::new(), HostConfig::default());
        let o = sale(&p, "000001");
        let t = forward(&mut h, &o);
        assert!(h.store().get(t.key()).unwrap().admitted.is_some());
        assert_eq!(h.admitted().len(), 1);
        // The terminal repeats it while it is forwarded: a duplicate.
        assert_eq!(answered(&mut h, &o), ("94".into(), None));
        let done = h.complete(t.clone(), approve()).unwrap();
        assert_eq!(code(&done.answer), "00");
        assert_eq!(done.answer.get(38).as_deref(), Some("123456"));
        assert_eq!(done.answer.get(11).as_deref(), Some("000001"));
        assert_eq!(done.action, None);
        assert_eq!(h.ledger().total(), Decimal::new(1000, 2));
        assert!(h.admitted().is_empty());
        // Completing again gives the stored answer and moves nothing.
        let again = h.complete(t, Decision::Decline(*b"05")).unwrap();
        assert_eq!(code(&again.answer), "00");
        assert_eq!(h.ledger().total(), Decimal::new(1000, 2));
    }

    #[test]
    fn a_terminal_reversal_while_forwarding_is_answered_and_the_approval_reversed_upstream() {
        let p = ReversalProfile::cup_pos().unwrap();
        let mut h = ReversalHandler::new(p.clone(), MemoryStore::new(), HostConfig::default());
        let o = sale(&p, "000002");
        let t = forward(&mut h, &o);
        let rev = reversal_of(&p, &o);
        let (c, action) = answered(&mut h, &rev);
        assert_eq!(c, "00");
        assert_eq!(
            action,
            Some(UpstreamAction::ReversedWhileForwarding {
                key: t.key().clone()
            })
        );
        // The upstream host approves after all: reverse it there; no money moves here.
        let done = h.complete(t.clone(), approve()).unwrap();
        assert_eq!(done.action, reverse_upstream(&t));
        assert_eq!(h.ledger().total(), Decimal::ZERO);
        assert_eq!(
            h.batch_totals("TERM0001", "MERCHANT0000001", 1).net(),
            Decimal::ZERO
        );
        // A repeat of the reversal: the same stored answer, nothing more to do.
        let mut repeat = rev.clone();
        repeat.set_mti(rev.mti().repeat_mti());
        assert_eq!(answered(&mut h, &repeat), ("00".into(), None));
        // Declined upstream instead: nothing to do upstream.
        let o2 = sale(&p, "000003");
        let t2 = forward(&mut h, &o2);
        answered(&mut h, &reversal_of(&p, &o2));
        let done = h.complete(t2, Decision::Decline(*b"51")).unwrap();
        assert_eq!((code(&done.answer), done.action), ("51".into(), None));
        assert_eq!(h.ledger().total(), Decimal::ZERO);
    }

    #[test]
    fn the_upstream_action_of_a_terminal_reversal_is_known_before_anything_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switch.store");
        let p = ReversalProfile::cup_pos().unwrap();
        let upstream = b"the upstream 0200".to_vec();
        let (o, key) = {
            let mut h = ReversalHandler::new(
                p.clone(),
                FileStore::open(&path).unwrap(),
                HostConfig::default(),
            );
            let o = sale(&p, "000021");
            let t = forward(&mut h, &o);
            // Still being forwarded: nothing upstream yet (the completion reports it).
            assert_eq!(h.upstream_action_of(&reversal_of(&p, &o)).unwrap(), None);
            h.complete_forwarded(t.clone(), approve(), Some(upstream.clone()))
                .unwrap();
            (o, t.key().clone())
        };
        // After a restart too: the approval is known, the reversal not recorded by asking.
        let mut h = ReversalHandler::new(
            p.clone(),
            FileStore::open(&path).unwrap(),
            HostConfig::default(),
        );
        let rev = reversal_of(&p, &o);
        let action = Some(UpstreamAction::ReverseUpstream { key: key.clone() });
        assert_eq!(h.upstream_action_of(&rev).unwrap(), action);
        assert_eq!(h.upstream_action_of(&rev).unwrap(), action);
        assert!(h.store().get(&key).unwrap().reversal.is_none());
        assert_eq!(h.ledger().total(), Decimal::new(1000, 2));
        assert_eq!(h.upstream_original(&key), Some(&upstream[..]));
        // Admitted: the same action, once; a repeat asks nothing more.
        assert_eq!(answered(&mut h, &rev), ("00".into(), action));
        let mut repeat = rev.clone();
        repeat.set_mti(rev.mti().repeat_mti());
        assert_eq!(h.upstream_action_of(&repeat).unwrap(), None);
        assert_eq!(answered(&mut h, &repeat), ("00".into(), None));
        assert_eq!(h.ledger().total(), Decimal::ZERO);
        // Not a reversal, a mismatched amount, a declined original: nothing.
        assert_eq!(h.upstream_action_of(&o).unwrap(), None);
        let d = sale(&p, "000022");
        let t = forward(&mut h, &d);
        h.complete_forwarded(t, Decision::Decline(*b"05"), Some(upstream))
            .unwrap();
        assert_eq!(h.upstream_action_of(&reversal_of(&p, &d)).unwrap(), None);
        let x = sale(&p, "000023");
        let t = forward(&mut h, &x);
        h.complete(t, approve()).unwrap();
        let mut wrong = reversal_of(&p, &x);
        wrong.set(4, "000000009999").unwrap();
        assert_eq!(h.upstream_action_of(&wrong).unwrap(), None);
    }

    #[test]
    fn reversals_after_the_decision_and_of_unknown_originals() {
        let p = ReversalProfile::cup_pos().unwrap();
        let mut h = ReversalHandler::new(p.clone(), MemoryStore::new(), HostConfig::default());
        // Approved, then reversed by the terminal: 00 and reverse upstream.
        let o = sale(&p, "000004");
        let t = forward(&mut h, &o);
        h.complete(t.clone(), approve()).unwrap();
        let (c, action) = answered(&mut h, &reversal_of(&p, &o));
        assert_eq!(c, "00");
        assert_eq!(action, reverse_upstream(&t));
        assert_eq!(h.ledger().total(), Decimal::ZERO);
        // Declined, then reversed: 00, nothing upstream.
        let d = sale(&p, "000005");
        let t = forward(&mut h, &d);
        h.complete(t, Decision::Decline(*b"05")).unwrap();
        assert_eq!(answered(&mut h, &reversal_of(&p, &d)), ("00".into(), None));
        // Reversal first, then the late original: 12, never forwarded.
        let late = sale(&p, "000006");
        assert_eq!(
            answered(&mut h, &reversal_of(&p, &late)),
            ("00".into(), None)
        );
        assert_eq!(answered(&mut h, &late), ("12".into(), None));
        // Amount differs: 64, not remembered.
        let x = sale(&p, "000007");
        forward(&mut h, &x);
        let mut wrong = reversal_of(&p, &x);
        wrong.set(4, "000000009999").unwrap();
        assert_eq!(answered(&mut h, &wrong), ("64".into(), None));
        assert!(h
            .store()
            .get(&p.key_of(&x).unwrap())
            .unwrap()
            .reversal
            .is_none());
    }

    #[test]
    fn admitted_tickets_survive_a_restart_and_are_completed_from_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.store");
        let p = ReversalProfile::cup_pos().unwrap();
        let o = sale(&p, "000008");
        {
            let mut h = ReversalHandler::new(
                p.clone(),
                FileStore::open(&path).unwrap(),
                HostConfig::default(),
            );
            forward(&mut h, &o);
        }
        let mut h = ReversalHandler::new(
            p.clone(),
            FileStore::open(&path).unwrap(),
            HostConfig::default(),
        );
        let pending = h.admitted();
        assert_eq!(pending.len(), 1);
        let t = pending.into_iter().next().unwrap();
        assert!(t.request().is_none());
        assert_eq!(t.key(), &p.key_of(&o).unwrap());
        assert_eq!(t.info().amount, Decimal::new(1000, 2));
        let done = h.complete(t, approve()).unwrap();
        assert_eq!(done.answer.mti().as_str(), "0210");
        assert_eq!(done.answer.get(11).as_deref(), Some("000008"));
        assert_eq!(code(&done.answer), "00");
        drop(h);
        let h = ReversalHandler::new(p, FileStore::open(&path).unwrap(), HostConfig::default());
        assert!(h.admitted().is_empty());
        assert_eq!(h.ledger().total(), Decimal::new(1000, 2));
    }

    #[test]
    fn iso87_terminal_reversals_are_matched_by_de90() {
        let p = ReversalProfile::iso87_binary().unwrap();
        let mut h = ReversalHandler::new(p.clone(), MemoryStore::new(), HostConfig::default());
        let mut o = sale(&p, "000009");
        o.set(7, "1201213000").unwrap();
        let t = forward(&mut h, &o);
        h.complete(t.clone(), approve()).unwrap();
        // The acquirer's reversal has its own STAN and DE 7; DE 90 names the original.
        let mut rev = reversal_of(&p, &o);
        rev.set(11, "000555").unwrap();
        rev.set(7, "1201213107").unwrap();
        let (c, action) = answered(&mut h, &rev);
        assert_eq!(c, "00");
        assert_eq!(action, reverse_upstream(&t));
        assert_eq!(h.ledger().total(), Decimal::ZERO);
    }
}
