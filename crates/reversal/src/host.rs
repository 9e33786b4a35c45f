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
//! the caller's (`HostSession::seal_response`).

use crate::error::{Result, ReversalError};
use crate::profile::{ReversalProfile, TxnInfo, TxnKey};
use crate::settlement::BatchTotals;
use crate::store::{IdempotencyStore, Ledger, OriginalState, ReversalState, StoreRecord};
use isoswitch_codec::{Message, MessageClass};
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
        if let Some(known) = self.store.get(&key) {
            if known.original.is_some() {
                self.stats.duplicates += 1;
                tracing::warn!(?key, "original with a reused STAN: duplicate");
                return self.answer(request, self.config.duplicate_code);
            }
        }
        let info = self.profile.classify(request);
        let reversed_first = self.store.get(&key).is_some_and(|k| k.reversal.is_some());
        let (code, approved, auth) = if reversed_first {
            self.stats.late_originals += 1;
            tracing::warn!(?key, "original after its own reversal: declined");
            (self.config.late_original_code, false, None)
        } else {
            match authorize(request, &info) {
                Decision::Approve { auth_code } => (*b"00", true, auth_code),
                Decision::Decline(c) => (c, false, None),
            }
        };
        let state = OriginalState {
            txn_type: info.txn_type,
            kind: info.kind,
            foreign: info.foreign,
            pan: info.pan.clone(),
            amount: info.amount,
            code,
            approved,
            cancels: cancels.filter(|_| approved),
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
        tracing::debug!(?key, pan = %crate::profile::mask_pan(&info.pan), amount = %info.amount, code = %String::from_utf8_lossy(&code), "original answered");
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
        let key: TxnKey = self.profile.key_of(request)?;
        let info = self.profile.classify(request);
        let known = self.store.get(&key).cloned().unwrap_or_default();
        if let Some(r) = &known.reversal {
            self.stats.repeats += 1;
            tracing::info!(?key, "reversal repeat: same answer");
            return self.answer(request, r.code);
        }
        let (effect, pan) = match &known.original {
            Some(o) => {
                if o.txn_type != info.txn_type {
                    self.stats.refused += 1;
                    return self.answer(request, self.config.type_mismatch_code);
                }
                if o.amount != info.amount {
                    self.stats.refused += 1;
                    tracing::warn!(?key, original = %o.amount, reversal = %info.amount, "reversal amount differs");
                    return self.answer(request, self.config.amount_mismatch_code);
                }
                let effect = if o.approved {
                    -o.kind.effect(o.amount)
                } else {
                    Decimal::ZERO
                };
                (effect, o.pan.clone())
            }
            None => {
                self.stats.unknown_reversals += 1;
                tracing::info!(
                    ?key,
                    "reversal of an unknown original: acknowledged and remembered"
                );
                (Decimal::ZERO, info.pan.clone())
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
        if known.original.is_some() {
            self.stats.reversals += 1;
        }
        self.answer(request, code)
    }
}
