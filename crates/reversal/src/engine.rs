//! [`ReversalEngine`]: the terminal/acquirer side, sans-IO.
//!
//! ```text
//! submit(now, 0200) ─▶ Queued ─(no reversal pending, room in flight)─▶ Started record
//!   ─poll_journal─▶ (driver makes it durable) ─handle_journaled─▶ Ready ─poll_transmit─▶ sent
//!   ─handle_response: valid MAC, 00 ─▶ Finished(Approved) ─durable─▶ Completed(Approved)
//!   ─handle_response: valid MAC, other ─▶ Finished(Declined) ─durable─▶ Completed(Declined)
//!   ─timeout / connection lost / bad MAC / undecodable ─▶ Finished(Reverse) ─▶ reversal
//!        0400, 0401, 0401… with exponential backoff until any 0410 ─▶ ReversalAcked record
//!   ─handle_response: 77 / A0 (Verify::SignOnAgain) ─▶ Finished(NotActed) ─▶
//!        Completed(NotActed) + SignOnRequired (nothing to reverse; prepare it again)
//!
//! submit(now, 0220 advice) ─▶ Started record ─durable─▶ AdviceStored ─▶ sent
//!   ─answer (DE 39 not in advice_retry_codes) ─▶ Finished ─▶ Completed(Approved/Declined)
//!   ─timeout / connection lost / bad MAC / retry code (91, 96) ─▶ 0221 repeats with
//!        backoff until answered, across restarts; never reversed
//! ```
//!
//! Every transaction carries the caller's [`CallerTag`], journaled in its `Started`
//! record and reported in its events; after a restart [`ReversalEngine::recovered`] lists
//! what the journal held (tag and state), so a switch needs no journal of its own to know
//! which terminal transaction an upstream one serves.
//!
//! The engine reads no clock and does no I/O: the caller passes `now`, persists the
//! records from [`ReversalEngine::poll_journal`] (group commit: as many as it likes per
//! fsync) and reports them with [`ReversalEngine::handle_journaled`], sends what
//! [`ReversalEngine::poll_transmit`] returns and reports the result with
//! [`ReversalEngine::handle_response`] or [`ReversalEngine::handle_send_failed`], and calls
//! [`ReversalEngine::handle_timeout`] at [`ReversalEngine::poll_timeout`].
//!
//! Rules (domain §5): nothing is sent before its `Started` record is durable; a response
//! that comes after its request was declared in doubt is logged and counted
//! ([`EngineEvent::LateResponse`]) and never cancels the reversal; after
//! [`EngineConfig::max_reversal_tries`] unanswered attempts on one connection a reversal
//! stays pending ([`EngineEvent::ReversalDeferred`]) and is tried again on the next
//! connection ([`ReversalEngine::handle_connected`]), before the next financial request, or
//! after [`EngineConfig::deferred_retry`]; while a reversal is pending no new financial
//! request goes out unless [`EngineConfig::block_while_reversal_pending`] is off
//! (switches send reversals in parallel). After a restart
//! ([`ReversalEngine::recover`]) every transaction that was started but not finished is a
//! pending reversal before anything else is sent.

use crate::error::{Result, ReversalError};
use crate::journal::{Finish, JournalRecord};
use crate::profile::{is_advice, mask_pan, ReversalProfile, ReversalReason, TxnInfo};
use crate::security::{Security, Verify};
use crate::settlement::{BatchTotals, UploadEntry};
use bytes::Bytes;
use isoswitch_codec::{Message, Mti};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The engine's id of a transaction (also its journal id).
pub type TxnId = u64;

/// The caller's opaque id of a transaction, a `u64` of its choosing (a switch: the id of
/// the terminal transaction an upstream one serves). Journaled in the `Started` record,
/// reported in [`EngineEvent`]s and by [`ReversalEngine::recovered`], so a restarted
/// caller knows what each journaled transaction was for without a journal of its own.
/// `0` means untagged ([`ReversalEngine::submit`]); records written before tags existed
/// read as `0`.
pub type CallerTag = u64;

/// Identifies one transmission (an original or one reversal attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransmitId(pub u64);

/// Configuration of a [`ReversalEngine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long to wait for the response to an original (terminals: 30–60 s).
    pub response_timeout: Duration,
    /// How long to wait for a `0410`.
    pub reversal_timeout: Duration,
    /// Reversal attempts per connection before it is deferred (POS terminals: 3).
    pub max_reversal_tries: u32,
    /// Wait before the first repeat; doubled for each further one.
    pub backoff_base: Duration,
    /// The longest wait between repeats.
    pub backoff_max: Duration,
    /// Hold new financial requests while a reversal is pending (POS: true; switches
    /// send reversals in parallel: false).
    pub block_while_reversal_pending: bool,
    /// Originals in flight at once (journaling, ready or awaiting a response).
    pub max_in_flight: usize,
    /// Reversal messages awaiting an answer at once; the rest wait their turn (a switch
    /// with hundreds of reversals pending after an outage must not flood the link that
    /// just came back).
    pub max_reversals_in_flight: usize,
    /// Retry a deferred reversal after this long even without a new connection.
    pub deferred_retry: Option<Duration>,
    /// Keep approved transactions of the open batch (for settlement and batch upload).
    pub keep_approved: bool,
    /// DE 39 values that do not count as an answer to an advice: it is repeated (jPOS
    /// SAF's `retry-response-codes`). Default `91` (issuer unavailable), `96` (system
    /// malfunction).
    pub advice_retry_codes: Vec<[u8; 2]>,
}

impl Default for EngineConfig {
    /// A POS terminal: 30 s timeouts, 3 tries, one transaction at a time, blocking.
    fn default() -> Self {
        EngineConfig {
            response_timeout: Duration::from_secs(30),
            reversal_timeout: Duration::from_secs(30),
            max_reversal_tries: 3,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            block_while_reversal_pending: true,
            max_in_flight: 1,
            max_reversals_in_flight: usize::MAX,
            deferred_retry: Some(Duration::from_secs(60)),
            keep_approved: true,
            advice_retry_codes: vec![*b"91", *b"96"],
        }
    }
}

impl EngineConfig {
    /// A switch: 10 s timeouts, reversals in parallel with new traffic, 4096 originals
    /// and 16 reversals in flight, no batch detail kept.
    pub fn switch() -> Self {
        EngineConfig {
            response_timeout: Duration::from_secs(10),
            reversal_timeout: Duration::from_secs(10),
            block_while_reversal_pending: false,
            max_in_flight: 4096,
            max_reversals_in_flight: 16,
            keep_approved: false,
            ..EngineConfig::default()
        }
    }
}

/// What one transmission is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransmitKind {
    /// The original financial request.
    Original,
    /// A reversal: attempt 1 is the `0400`, later ones the `0401` repeats.
    Reversal {
        /// 1-based attempt number over the reversal's life.
        attempt: u32,
    },
    /// A repeat of an advice (`0221`, `0121`) that was not answered.
    AdviceRepeat {
        /// 2-based attempt number over the advice's life (the original was attempt 1).
        attempt: u32,
    },
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Report the result under this id.
    pub id: TransmitId,
    /// The transaction.
    pub txn: TxnId,
    /// Original or reversal.
    pub kind: TransmitKind,
    /// The sealed bytes (no length header).
    pub bytes: Bytes,
    /// How long the engine waits for the response.
    pub timeout: Duration,
}

/// How sending failed, in the terms of `isoswitch_net::RequestError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// Definitely not sent (`Rejected`).
    NotSent,
    /// Sent, no response in time (`Timeout`).
    Timeout,
    /// Sent, then the connection dropped (`ConnectionLost`).
    ConnectionLost,
}

/// Why an original was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSentReason {
    /// A reversal is pending and could not be delivered.
    ReversalPending,
    /// The transport refused it (not connected, queue full…).
    Rejected,
    /// It could not be sealed (no MAC key, encoding error).
    Seal,
}

/// The result of a submitted transaction, for the caller to show.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Approved (authentic response, approval code).
    Approved {
        /// The response.
        response: Box<Message>,
    },
    /// Declined (authentic response, other code): nothing to reverse.
    Declined {
        /// DE 39.
        code: [u8; 2],
        /// The response.
        response: Box<Message>,
    },
    /// In doubt: a reversal is pending and will be sent until acknowledged.
    /// Show "transaction failed, reversed".
    Reversed {
        /// Why.
        reason: ReversalReason,
    },
    /// In doubt, but the transaction type is not reversible (inquiry, refund).
    InDoubt {
        /// Why.
        reason: ReversalReason,
    },
    /// Not sent: nothing happened at the host.
    NotSent {
        /// Why.
        reason: NotSentReason,
    },
    /// Refused without being acted on: the host answered `77` (sign on again) or `A0`
    /// (MAC failure at the host), as reported by the [`Security`] hook
    /// ([`Verify::SignOnAgain`]). Nothing to reverse; the caller may prepare the request
    /// again under new keys (after [`EngineEvent::SignOnRequired`]) and submit it anew.
    NotActed {
        /// DE 39.
        code: [u8; 2],
    },
}

impl Outcome {
    /// A short text for a terminal display.
    pub fn display_text(&self) -> &'static str {
        match self {
            Outcome::Approved { .. } => "approved",
            Outcome::Declined { .. } => "declined",
            Outcome::Reversed { .. } => "transaction failed, reversed",
            Outcome::InDoubt { .. } => "transaction status unknown",
            Outcome::NotSent { .. } => "transaction not sent",
            Outcome::NotActed { .. } => "transaction refused, sign on again",
        }
    }

    /// Whether the cardholder was charged.
    pub fn is_approved(&self) -> bool {
        matches!(self, Outcome::Approved { .. })
    }
}

/// A response code as text (`00`, `91`; `none` when absent).
fn rc_text(code: Option<&[u8; 2]>) -> std::borrow::Cow<'_, str> {
    match code {
        Some(c) => String::from_utf8_lossy(c),
        None => "none".into(),
    }
}

impl std::fmt::Display for NotSentReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotSentReason::ReversalPending => "a reversal is pending",
            NotSentReason::Rejected => "refused by the link",
            NotSentReason::Seal => "could not be sealed",
        })
    }
}

/// For logs: what a person reads (`approved 00`, `declined 51`, `reversed (no response)`);
/// the response message itself is not shown.
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Approved { response } => write!(
                f,
                "approved {}",
                response.get(39).unwrap_or_else(|| "00".into())
            ),
            Outcome::Declined { code, .. } => write!(f, "declined {}", rc_text(Some(code))),
            Outcome::Reversed { reason } => write!(f, "reversed ({reason})"),
            Outcome::InDoubt { reason } => write!(f, "in doubt, not reversible ({reason})"),
            Outcome::NotSent { reason } => write!(f, "not sent ({reason})"),
            Outcome::NotActed { code } => {
                write!(f, "refused {} without being acted on", rc_text(Some(code)))
            }
        }
    }
}

/// For logs: one line a person reads, response codes as text.
impl std::fmt::Display for EngineEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineEvent::Completed { txn, tag, outcome } => {
                write!(f, "txn {txn} (tag {tag}) completed: {outcome}")
            }
            EngineEvent::ReversalAcknowledged { txn, tag, code, .. } => write!(
                f,
                "txn {txn} (tag {tag}) reversal acknowledged, code {}",
                rc_text(Some(code))
            ),
            EngineEvent::ReversalDeferred { txn, tag, attempts } => write!(
                f,
                "txn {txn} (tag {tag}) reversal deferred after {attempts} attempts"
            ),
            EngineEvent::Recovered { txn, tag, reason } => {
                write!(f, "txn {txn} (tag {tag}) recovered: reversing ({reason})")
            }
            EngineEvent::AdviceStored { txn, tag } => {
                write!(f, "txn {txn} (tag {tag}) advice stored for forwarding")
            }
            EngineEvent::SignOnRequired { txn, code } => write!(
                f,
                "txn {txn}: sign on again (code {})",
                rc_text(code.as_ref())
            ),
            EngineEvent::LateResponse { txn, mti, code } => match txn {
                Some(t) => write!(f, "late {mti} for txn {t}, code {}", rc_text(code.as_ref())),
                None => write!(f, "late {mti}, code {}", rc_text(code.as_ref())),
            },
        }
    }
}

/// What happened, for the caller and for logs.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// A submitted transaction has its final outcome (reported once it is durable).
    Completed {
        /// The transaction.
        txn: TxnId,
        /// The caller's tag.
        tag: CallerTag,
        /// The outcome.
        outcome: Outcome,
    },
    /// A reversal was acknowledged by a `0410` (any DE 39); reported once the
    /// acknowledgement is durable.
    ReversalAcknowledged {
        /// The transaction.
        txn: TxnId,
        /// The caller's tag.
        tag: CallerTag,
        /// DE 39 of the `0410`.
        code: [u8; 2],
        /// The `0410` itself (a switch reads what its host puts there, e.g. DE 37/38).
        response: Box<Message>,
    },
    /// A reversal got no answer after the configured tries on this connection: it stays
    /// pending.
    ReversalDeferred {
        /// The transaction.
        txn: TxnId,
        /// The caller's tag.
        tag: CallerTag,
        /// Attempts so far.
        attempts: u32,
    },
    /// After a restart: a started transaction without outcome (or in doubt) is reversed.
    Recovered {
        /// The transaction.
        txn: TxnId,
        /// The caller's tag.
        tag: CallerTag,
        /// Why.
        reason: ReversalReason,
    },
    /// An advice's `Started` record is durable: it is stored and will be forwarded
    /// (repeated) until answered; its [`EngineEvent::Completed`] comes with the answer.
    AdviceStored {
        /// The transaction.
        txn: TxnId,
        /// The caller's tag.
        tag: CallerTag,
    },
    /// The security hook asked to sign on again ([`Verify::SignOnAgain`], or
    /// [`Verify::BadMac`]: a MAC that verifies under neither the current nor the previous
    /// key). Reported once until [`ReversalEngine::handle_signed_on`].
    SignOnRequired {
        /// The transaction whose response asked for it.
        txn: TxnId,
        /// DE 39 when the host said so (`77`, `A0`); `None` for a MAC that does not verify.
        code: Option<[u8; 2]>,
    },
    /// A response that came after its request was declared in doubt (or a repeat): logged
    /// and counted only; the reversal stands.
    LateResponse {
        /// The transaction it answers, if known.
        txn: Option<TxnId>,
        /// Its MTI.
        mti: Mti,
        /// Its DE 39.
        code: Option<[u8; 2]>,
    },
}

/// Counters of the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Transactions submitted.
    pub submitted: u64,
    /// Approved.
    pub approved: u64,
    /// Declined.
    pub declined: u64,
    /// Declared in doubt.
    pub in_doubt: u64,
    /// Reversal messages sent (first and repeats).
    pub reversals_sent: u64,
    /// Reversals acknowledged.
    pub reversals_acked: u64,
    /// Late responses (after the in-doubt decision).
    pub late_responses: u64,
    /// Responses that matched nothing at all.
    pub unmatched: u64,
    /// Advice repeats sent (`xx21`).
    pub advice_repeats: u64,
    /// Refused without being acted on (`77`, `A0`).
    pub not_acted: u64,
}

#[derive(Debug, Clone)]
struct Rev {
    reason: ReversalReason,
    attempts: u32,
    tries_conn: u32,
    ready: bool,
    deferred: bool,
    next_at: Option<Instant>,
    awaiting: Option<(TransmitId, Instant)>,
}

/// An advice waiting to be answered (store-and-forward).
#[derive(Debug, Clone)]
struct Repeat {
    /// Sends so far (the original counts).
    attempts: u32,
    ready: bool,
    next_at: Option<Instant>,
    awaiting: Option<(TransmitId, Instant)>,
}

#[derive(Debug, Clone)]
enum Phase {
    Queued,
    Journaling,
    Ready,
    Awaiting {
        transmit: TransmitId,
        deadline: Instant,
    },
    Finishing {
        outcome: Outcome,
        approved: bool,
    },
    Reversing(Rev),
    /// An advice sent without answer: repeated with backoff until answered.
    Repeating(Repeat),
    Acking {
        code: [u8; 2],
        response: Box<Message>,
    },
    Done,
}

#[derive(Debug, Clone, Copy)]
enum Wait {
    Started,
    Finished,
    Reported(ReversalReason, bool),
    Acked,
    /// A handed-over reversal ([`ReversalEngine::reverse_message`]) is durable.
    ReversalJournaled,
}

#[derive(Debug)]
struct Entry {
    tag: CallerTag,
    batch: u32,
    stan: u32,
    info: TxnInfo,
    message: Box<Message>,
    reversible: bool,
    advice: bool,
    phase: Phase,
}

/// A `Started` record during recovery, with the last outcome journaled for it.
struct Journaled {
    tag: CallerTag,
    batch: u32,
    stan: u32,
    info: TxnInfo,
    message: Bytes,
    finish: Option<Finish>,
}

/// The sans-IO reversal engine; see the module docs.
pub struct ReversalEngine<S: Security> {
    config: EngineConfig,
    profile: ReversalProfile,
    security: S,
    now: Option<Instant>,
    next_id: u64,
    next_stan: u32,
    batch: u32,
    closed_net: Decimal,
    unkept: BatchTotals,
    entries: BTreeMap<TxnId, Entry>,
    /// Reversals deferred to the next connection (`Reversing` with `deferred`; an id
    /// whose entry moved on since is passed over): what `retry_deferred` wakes, without
    /// a scan of `entries`, which holds the whole batch's approved transactions on a
    /// terminal (`keep_approved`).
    deferred_ids: BTreeSet<TxnId>,
    queue: VecDeque<TxnId>,
    ready_originals: VecDeque<TxnId>,
    ready_reversals: VecDeque<TxnId>,
    ready_repeats: VecDeque<TxnId>,
    transmits: HashMap<TransmitId, (TxnId, TransmitKind)>,
    /// Reversal transmissions in `transmits`.
    reversal_transmits: usize,
    next_transmit: u64,
    timers: BTreeSet<(Instant, TxnId)>,
    journal_out: VecDeque<JournalRecord>,
    seq_pushed: u64,
    seq_durable: u64,
    waits: BTreeMap<u64, (TxnId, Wait)>,
    events: VecDeque<EngineEvent>,
    in_flight: usize,
    pending_reversals: usize,
    pending_advices: usize,
    sign_on_reported: bool,
    totals: BatchTotals,
    stats: EngineStats,
    recovered: Vec<RecoveredTxn>,
}

/// What [`ReversalEngine::recover`] found about one journaled transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredTxn {
    /// The transaction.
    pub txn: TxnId,
    /// The caller's tag.
    pub tag: CallerTag,
    /// Its state as the journal left it (and what the engine does about it now).
    pub state: RecoveredState,
}

/// The latest recovered transaction of each caller tag.
///
/// A caller that sends one request again under the same tag (a switch preparing a
/// terminal's original again under new zone keys after a `77`/`A0` or a stale seal) has
/// several journaled transactions per tag: the earlier ones ended not sent or not acted
/// on, and only the latest (the highest [`TxnId`], ids only grow) says what reached the
/// host. Looking a tag up in [`ReversalEngine::recovered`] directly can find an earlier
/// attempt (its order is not the journal's) and take an approval upstream for a refusal.
pub fn latest_by_tag(
    recovered: &[RecoveredTxn],
) -> std::collections::HashMap<CallerTag, RecoveredTxn> {
    let mut out: std::collections::HashMap<CallerTag, RecoveredTxn> =
        std::collections::HashMap::with_capacity(recovered.len());
    for r in recovered {
        out.entry(r.tag)
            .and_modify(|seen| {
                if r.txn > seen.txn {
                    *seen = *r;
                }
            })
            .or_insert(*r);
    }
    out
}

/// Whether a transaction that ended this way is done with once its batch is closed (a
/// reversal still pending, or one not ended, is not).
fn closed_with_batch(finish: Option<Finish>) -> bool {
    matches!(
        finish,
        Some(
            Finish::Approved { .. }
                | Finish::Declined { .. }
                | Finish::NotSent
                | Finish::Unknown
                | Finish::NotActed { .. }
        )
    )
}

/// What `records` (a whole journal, as [`crate::Journal::load`] gives it) say of each
/// journaled transaction, read without an engine, and each transaction's journaled
/// message: for a node finishing the journal of a node that died (a shared store), whose
/// engine nobody recovers. The states are those [`ReversalEngine::recover`] reports: a
/// started original with no outcome is in doubt ([`Finish::Reverse`], `Recovered`); a
/// started advice with no answer is [`RecoveredState::Repeating`], and so is an advice
/// whose delivery another node took over (acknowledged in its journal: see
/// `isoswitch-pg`'s hand-over). Transactions of closed batches are left out, as
/// recovery leaves them out. Messages that do not decode in `dialect` count as
/// originals.
pub fn journal_states(
    records: &[crate::journal::JournalRecord],
    dialect: &isoswitch_codec::Dialect,
) -> (
    Vec<RecoveredTxn>,
    std::collections::HashMap<TxnId, bytes::Bytes>,
) {
    use crate::journal::JournalRecord;
    struct Seen {
        tag: CallerTag,
        batch: u32,
        finish: Option<Finish>,
        acked: Option<[u8; 2]>,
    }
    let mut txns: std::collections::BTreeMap<TxnId, Seen> = std::collections::BTreeMap::new();
    let mut messages = std::collections::HashMap::new();
    for r in records {
        match r {
            JournalRecord::Started {
                id,
                tag,
                batch,
                message,
                ..
            } => {
                txns.insert(
                    *id,
                    Seen {
                        tag: *tag,
                        batch: *batch,
                        finish: None,
                        acked: None,
                    },
                );
                messages.insert(*id, message.clone());
            }
            JournalRecord::Finished { id, finish } => {
                if let Some(t) = txns.get_mut(id) {
                    t.finish = Some(*finish);
                }
            }
            JournalRecord::ReversalAcked { id, code } => {
                if let Some(t) = txns.get_mut(id) {
                    t.acked = Some(*code);
                }
            }
            JournalRecord::BatchClosed { batch, .. } => {
                txns.retain(|_, t| {
                    !(t.batch == *batch && t.acked.is_none() && closed_with_batch(t.finish))
                });
            }
            JournalRecord::Counters { .. } => {}
        }
    }
    let out = txns
        .into_iter()
        .map(|(txn, t)| {
            let advice = messages
                .get(&txn)
                .and_then(|m| isoswitch_codec::Mti::decode(dialect.mti_encoding(), m).ok())
                .is_some_and(is_advice);
            let state = match (t.acked, t.finish) {
                (Some(_), _) if advice => RecoveredState::Repeating,
                (Some(code), _) => RecoveredState::ReversalAcked { code },
                (None, None) if advice => RecoveredState::Repeating,
                (None, None) => RecoveredState::Finished(Finish::Reverse {
                    reason: ReversalReason::Recovered,
                }),
                (None, Some(f)) => RecoveredState::Finished(f),
            };
            RecoveredTxn {
                txn,
                tag: t.tag,
                state,
            }
        })
        .collect();
    (out, messages)
}

/// The state of a journaled transaction after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveredState {
    /// The last outcome journaled. [`Finish::Reverse`]: a reversal is pending and the
    /// engine sends it before anything else (a transaction started without an outcome
    /// reads as `Reverse { reason: Recovered }`, or `Unknown` when not reversible).
    Finished(Finish),
    /// An advice not yet answered: the engine repeats it (`xx21`) until answered.
    Repeating,
    /// Its reversal was acknowledged (DE 39 of the `0410`).
    ReversalAcked {
        /// DE 39.
        code: [u8; 2],
    },
}

impl<S: Security> std::fmt::Debug for ReversalEngine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReversalEngine")
            .field("dialect", &self.profile.dialect.name())
            .field("batch", &self.batch)
            .field("entries", &self.entries.len())
            .field("pending_reversals", &self.pending_reversals)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<S: Security> ReversalEngine<S> {
    /// A fresh engine (empty journal): STAN 1, batch `batch`.
    pub fn new(config: EngineConfig, profile: ReversalProfile, security: S, batch: u32) -> Self {
        ReversalEngine {
            config,
            profile,
            security,
            now: None,
            next_id: 1,
            next_stan: 1,
            batch,
            closed_net: Decimal::ZERO,
            unkept: BatchTotals::default(),
            entries: BTreeMap::new(),
            deferred_ids: BTreeSet::new(),
            queue: VecDeque::new(),
            ready_originals: VecDeque::new(),
            ready_reversals: VecDeque::new(),
            ready_repeats: VecDeque::new(),
            transmits: HashMap::new(),
            reversal_transmits: 0,
            next_transmit: 1,
            timers: BTreeSet::new(),
            journal_out: VecDeque::new(),
            seq_pushed: 0,
            seq_durable: 0,
            waits: BTreeMap::new(),
            events: VecDeque::new(),
            in_flight: 0,
            pending_reversals: 0,
            pending_advices: 0,
            sign_on_reported: false,
            totals: BatchTotals::default(),
            stats: EngineStats::default(),
            recovered: Vec::new(),
        }
    }

    /// Rebuilds the engine from the journal's records (in order). Every transaction that
    /// was started but not finished, or finished in doubt, becomes a pending reversal
    /// (reported as [`EngineEvent::Recovered`]) and goes out before any new request.
    /// `batch` is used only when the journal holds no batch; `now` is the time of the restart.
    ///
    /// # Errors
    /// A `Started` record whose message does not decode in the profile's dialect.
    pub fn recover(
        now: Instant,
        config: EngineConfig,
        profile: ReversalProfile,
        security: S,
        batch: u32,
        records: impl IntoIterator<Item = JournalRecord>,
    ) -> Result<Self> {
        let mut e = ReversalEngine::new(config, profile, security, batch);
        e.now = Some(now);
        // Errors name the record (its index; the journal turns it into a file offset:
        // `Journal::locate`).
        let at = |index: usize, what| ReversalError::BadJournalRecord { index, what };
        let mut started: BTreeMap<TxnId, (usize, Journaled)> = BTreeMap::new();
        // The record that set the highest next id (refused when it is u64::MAX).
        let mut next_id_at = 0usize;
        let mut last = 0usize;
        let mut acked: Vec<RecoveredTxn> = Vec::new();
        let mut seen_batch = false;
        let mut max_stan = 0u32;
        for (index, rec) in records.into_iter().enumerate() {
            last = index;
            match rec {
                JournalRecord::Counters {
                    next_id,
                    next_stan,
                    batch,
                    closed_net,
                    unkept,
                } => {
                    if next_id >= e.next_id {
                        next_id_at = index;
                    }
                    e.next_id = e.next_id.max(next_id);
                    e.next_stan = next_stan;
                    e.batch = batch;
                    e.closed_net = closed_net;
                    e.unkept = unkept;
                    seen_batch = true;
                }
                JournalRecord::Started {
                    id,
                    tag,
                    batch,
                    stan,
                    info,
                    message,
                } => {
                    let next = id
                        .checked_add(1)
                        .ok_or_else(|| at(index, "transaction id overflows"))?;
                    if next >= e.next_id {
                        next_id_at = index;
                    }
                    e.next_id = e.next_id.max(next);
                    max_stan = max_stan.max(stan);
                    if !seen_batch {
                        e.batch = batch;
                        seen_batch = true;
                    }
                    started.insert(
                        id,
                        (
                            index,
                            Journaled {
                                tag,
                                batch,
                                stan,
                                info,
                                message,
                                finish: None,
                            },
                        ),
                    );
                }
                JournalRecord::Finished { id, finish } => {
                    if let Some((_, s)) = started.get_mut(&id) {
                        s.finish = Some(finish);
                    }
                }
                JournalRecord::ReversalAcked { id, code } => {
                    if let Some((_, s)) = started.remove(&id) {
                        acked.push(RecoveredTxn {
                            txn: id,
                            tag: s.tag,
                            state: RecoveredState::ReversalAcked { code },
                        });
                    }
                }
                JournalRecord::BatchClosed {
                    batch,
                    next_batch,
                    net,
                } => {
                    started.retain(|_, (_, s)| !(s.batch == batch && closed_with_batch(s.finish)));
                    e.batch = next_batch;
                    e.closed_net = e
                        .closed_net
                        .checked_add(net)
                        .ok_or_else(|| at(index, "closed batches' net amount overflows"))?;
                    e.unkept = BatchTotals::default();
                    seen_batch = true;
                }
            }
        }
        if e.next_id == u64::MAX {
            // `submit` takes `next_id` and adds one: refuse the journal instead.
            return Err(at(next_id_at, "transaction id overflows"));
        }
        if max_stan >= e.next_stan {
            e.next_stan = next_stan_after(max_stan);
        }
        let mut recovered = acked;
        for (id, (index, j)) in started {
            let Journaled {
                tag,
                batch,
                stan,
                info,
                message: bytes,
                finish,
            } = j;
            let message = Message::decode(&e.profile.dialect, bytes).map_err(|err| {
                tracing::error!(txn = id, index, error = %err, "journal: a started transaction's message does not decode");
                at(index, "the transaction's message does not decode in the profile's dialect")
            })?;
            let reversible = e.profile.is_reversible(&message);
            let advice = is_advice(message.mti());
            let finish = match finish {
                None if advice => None,
                None if !reversible => Some(Finish::Unknown),
                None => Some(Finish::Reverse {
                    reason: ReversalReason::Recovered,
                }),
                f => f,
            };
            let (phase, state) = match finish {
                Some(Finish::Approved { code }) => (
                    Phase::Done,
                    RecoveredState::Finished(Finish::Approved { code }),
                ),
                Some(Finish::Reverse { reason }) => (
                    Phase::Reversing(new_rev(reason)),
                    RecoveredState::Finished(Finish::Reverse { reason }),
                ),
                Some(f) => {
                    recovered.push(RecoveredTxn {
                        txn: id,
                        tag,
                        state: RecoveredState::Finished(f),
                    });
                    continue;
                }
                None => (Phase::Repeating(new_repeat(1)), RecoveredState::Repeating),
            };
            recovered.push(RecoveredTxn {
                txn: id,
                tag,
                state,
            });
            match &phase {
                Phase::Done => {
                    let over = |_| at(index, "batch totals overflow");
                    if !e.config.keep_approved {
                        e.unkept.checked_add(&info).map_err(over)?;
                        continue;
                    }
                    e.totals.checked_add(&info).map_err(over)?;
                }
                Phase::Reversing(r) => {
                    tracing::warn!(txn = id, tag, stan, pan = %mask_pan(&info.pan), amount = %info.amount, reason = %r.reason, "recovered: reversal pending");
                    e.events.push_back(EngineEvent::Recovered {
                        txn: id,
                        tag,
                        reason: r.reason,
                    });
                    e.pending_reversals += 1;
                    e.ready_reversals.push_back(id);
                }
                Phase::Repeating(_) => {
                    tracing::warn!(
                        txn = id,
                        tag,
                        stan,
                        "recovered: advice not answered, repeated"
                    );
                    e.pending_advices += 1;
                    e.ready_repeats.push_back(id);
                }
                _ => {}
            }
            e.entries.insert(
                id,
                Entry {
                    tag,
                    batch,
                    stan,
                    info,
                    message: Box::new(message),
                    reversible,
                    advice,
                    phase,
                },
            );
        }
        let unkept = e.unkept;
        e.totals
            .checked_merge(&unkept)
            .map_err(|_| at(last, "batch totals overflow"))?;
        e.recovered = recovered;
        Ok(e)
    }

    /// What recovery found in the journal: every transaction still in it with its tag and
    /// state (pending reversals and unanswered advices, which the engine now sends, and the
    /// outcomes of finished ones), in id order except acknowledged reversals, which come
    /// first. Empty for an engine made with [`ReversalEngine::new`].
    pub fn recovered(&self) -> &[RecoveredTxn] {
        &self.recovered
    }

    /// The caller's tag of a transaction the engine still holds.
    pub fn tag_of(&self, txn: TxnId) -> Option<CallerTag> {
        self.entries.get(&txn).map(|e| e.tag)
    }

    /// The profile.
    pub fn profile(&self) -> &ReversalProfile {
        &self.profile
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The security hook.
    pub fn security_mut(&mut self) -> &mut S {
        &mut self.security
    }

    /// The current batch.
    pub fn batch(&self) -> u32 {
        self.batch
    }

    /// The STAN the next transaction gets.
    pub fn next_stan(&self) -> u32 {
        self.next_stan
    }

    /// Takes `n` consecutive STANs for messages outside the journal (settlement, batch
    /// upload, sign-off) and returns the first.
    pub fn reserve_stans(&mut self, n: u32) -> u32 {
        let first = self.next_stan;
        for _ in 0..n {
            self.next_stan = next_stan_after(self.next_stan);
        }
        first
    }

    /// Reversals not yet acknowledged.
    pub fn pending_reversals(&self) -> usize {
        self.pending_reversals
    }

    /// Advices sent but not yet answered (being repeated).
    pub fn pending_advices(&self) -> usize {
        self.pending_advices
    }

    /// The transactions pending upstream: `(txn, true)` for an advice being repeated,
    /// `(txn, false)` for a reversal not yet acknowledged (a driver ages them for its
    /// metrics).
    pub fn pending_ids(&self) -> impl Iterator<Item = (TxnId, bool)> + '_ {
        self.entries.iter().filter_map(|(id, e)| match e.phase {
            Phase::Reversing(_) => Some((*id, false)),
            Phase::Repeating(_) => Some((*id, true)),
            _ => None,
        })
    }

    /// The transactions whose reversal is not yet acknowledged, with their originals as
    /// journaled (without DE 35/36/45/52). A switch recovering its own records asks this
    /// to know which reversals the engine already holds.
    pub fn reversing(&self) -> impl Iterator<Item = (TxnId, &Message)> + '_ {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e.phase, Phase::Reversing(_)))
            .map(|(&id, e)| (id, &*e.message))
    }

    /// Transactions queued or in flight (not yet finished).
    pub fn in_flight(&self) -> usize {
        self.in_flight + self.queue.len()
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Totals of the open batch: approved transactions, net of reversals.
    pub fn totals(&self) -> BatchTotals {
        self.totals
    }

    /// Net amount (debits − credits) of every closed batch plus the open one.
    pub fn lifetime_net(&self) -> Decimal {
        self.closed_net + self.totals.net()
    }

    /// Submits a financial request, untagged (tag `0`); see
    /// [`ReversalEngine::submit_tagged`].
    ///
    /// # Errors
    /// As [`ReversalEngine::submit_tagged`].
    pub fn submit(&mut self, now: Instant, request: Message) -> Result<TxnId> {
        self.submit_tagged(now, request, 0)
    }

    /// Submits a financial or authorization request or advice (DE 11 and, in `cup-pos`,
    /// DE 60 are filled when absent) with the caller's `tag`. Its outcome comes as
    /// [`EngineEvent::Completed`].
    ///
    /// A request (`0100`, `0200`) in doubt is reversed when the profile says its kind is
    /// reversible ([`ReversalProfile::is_reversible`]). An advice (`0120`, `0220`: a
    /// refund in `cup-pos`) is stored and forwarded: journaled, sent, repeated as `xx21`
    /// with backoff until answered (any answer whose DE 39 is not in
    /// [`EngineConfig::advice_retry_codes`]), across restarts, and never reversed.
    ///
    /// # Errors
    /// Codec errors; [`ReversalError::UnexpectedMessage`] for a message that is not a
    /// financial/authorization request or advice.
    pub fn submit_tagged(
        &mut self,
        now: Instant,
        request: Message,
        tag: CallerTag,
    ) -> Result<TxnId> {
        self.submit_boxed(now, Box::new(request), tag)
    }

    /// [`ReversalEngine::submit_tagged`] of a boxed message (the driver's commands carry
    /// boxes: the message is never copied on its way into the engine).
    ///
    /// # Errors
    /// As [`ReversalEngine::submit_tagged`].
    pub fn submit_boxed(
        &mut self,
        now: Instant,
        mut request: Box<Message>,
        tag: CallerTag,
    ) -> Result<TxnId> {
        self.now = Some(now);
        let mti = request.mti();
        if mti.response_mti().is_none()
            || mti.is_repeat()
            || !matches!(
                mti.class(),
                isoswitch_codec::MessageClass::Authorization
                    | isoswitch_codec::MessageClass::Financial
            )
        {
            return Err(ReversalError::UnexpectedMessage {
                mti,
                why: "only authorization and financial requests and advices are submitted",
            });
        }
        let advice = is_advice(mti);
        request.remove(64);
        request.remove(128);
        self.profile
            .stamp(&mut request, self.next_stan, self.batch)?;
        let stan = self.profile.stan_of(&request)?;
        if stan >= self.next_stan {
            self.next_stan = next_stan_after(stan);
        }
        let batch = self.profile.batch_of(&request).unwrap_or(self.batch);
        let info = self.profile.classify(&request);
        let reversible = self.profile.is_reversible(&request);
        let id = self.next_id;
        self.next_id += 1;
        self.stats.submitted += 1;
        tracing::debug!(txn = id, tag, stan, pan = %mask_pan(&info.pan), amount = %info.amount, advice, "submitted");
        self.entries.insert(
            id,
            Entry {
                tag,
                batch,
                stan,
                info,
                message: request,
                reversible,
                advice,
                phase: Phase::Queued,
            },
        );
        self.queue.push_back(id);
        if self.config.block_while_reversal_pending {
            // POS rule: a pending reversal is tried again before the next transaction.
            self.retry_deferred(now, false);
        }
        self.pump();
        Ok(id)
    }

    /// Asks to reverse an approved transaction the terminal could not complete (DE 39
    /// `96`, or the given reason).
    ///
    /// # Errors
    /// [`ReversalError::WrongState`] unless the transaction is approved and kept.
    pub fn reverse(&mut self, now: Instant, txn: TxnId, reason: ReversalReason) -> Result<()> {
        self.now = Some(now);
        let Some(e) = self.entries.get_mut(&txn) else {
            return Err(ReversalError::WrongState {
                txn,
                why: "unknown or no longer kept",
            });
        };
        if !matches!(e.phase, Phase::Done) {
            return Err(ReversalError::WrongState {
                txn,
                why: "only an approved transaction can be reversed",
            });
        }
        if !e.reversible {
            return Err(ReversalError::WrongState {
                txn,
                why: "the profile says this kind is not reversible",
            });
        }
        self.totals.sub(&e.info);
        e.phase = Phase::Reversing(new_rev(reason));
        self.pending_reversals += 1;
        self.push_record(
            JournalRecord::Finished {
                id: txn,
                finish: Finish::Reverse { reason },
            },
            None,
        );
        self.ready_reversals.push_back(txn);
        Ok(())
    }

    /// Reverses a transaction the engine does not hold (an acquirer switch keeps its
    /// approved transactions itself: [`EngineConfig::switch`] does not): `original` is the
    /// request as it was sent (its DE 11 is the reversal's). The reversal is journaled
    /// (`Started` + `Finished` reverse, so it survives a restart), sent once durable and until
    /// acknowledged, like any other; the batch totals are not touched.
    ///
    /// The caller decides: an advice or a kind the profile says is not reversible is
    /// reversed as asked (logged). Submit advices with [`ReversalEngine::submit_tagged`]
    /// instead: they are stored and forwarded and never reversed.
    ///
    /// # Errors
    /// Codec errors, a missing DE 11.
    pub fn reverse_message(
        &mut self,
        now: Instant,
        original: Message,
        reason: ReversalReason,
    ) -> Result<TxnId> {
        self.reverse_message_tagged(now, original, reason, 0)
    }

    /// [`ReversalEngine::reverse_message`] with the caller's `tag`.
    ///
    /// # Errors
    /// As [`ReversalEngine::reverse_message`].
    pub fn reverse_message_tagged(
        &mut self,
        now: Instant,
        mut original: Message,
        reason: ReversalReason,
        tag: CallerTag,
    ) -> Result<TxnId> {
        self.now = Some(now);
        if is_advice(original.mti()) || !self.profile.is_reversible(&original) {
            // The caller asks explicitly (it sent the message itself): honoured, but an
            // advice should be submitted instead (stored and forwarded, never reversed).
            tracing::warn!(mti = %original.mti(), "reversal of a kind the profile says is not reversible, as asked");
        }
        original.remove(64);
        original.remove(128);
        let stan = self.profile.stan_of(&original)?;
        let bytes = original.to_bytes()?;
        let batch = self.profile.batch_of(&original).unwrap_or(self.batch);
        let info = self.profile.classify(&original);
        let id = self.next_id;
        self.next_id += 1;
        tracing::info!(txn = id, tag, stan, pan = %mask_pan(&info.pan), amount = %info.amount, %reason, "reversal requested");
        self.push_record(
            JournalRecord::Started {
                id,
                tag,
                batch,
                stan,
                info: info.clone(),
                message: bytes,
            },
            None,
        );
        self.push_record(
            JournalRecord::Finished {
                id,
                finish: Finish::Reverse { reason },
            },
            Some((id, Wait::ReversalJournaled)),
        );
        // Sent once both records are durable (see `on_durable`).
        let rev = Rev {
            ready: false,
            ..new_rev(reason)
        };
        self.entries.insert(
            id,
            Entry {
                tag,
                batch,
                stan,
                info,
                message: Box::new(original),
                reversible: true,
                advice: false,
                phase: Phase::Reversing(rev),
            },
        );
        self.pending_reversals += 1;
        Ok(id)
    }

    /// The next record to make durable (in order). Report with
    /// [`ReversalEngine::handle_journaled`] once it and all before it are durable.
    pub fn poll_journal(&mut self) -> Option<JournalRecord> {
        self.journal_out.pop_front()
    }

    /// Synchronous journaling for callers without a journal thread (tests, tools): drains
    /// [`ReversalEngine::poll_journal`] into one `journal.append` and reports it durable.
    /// Returns the number of records written.
    ///
    /// # Errors
    /// The journal's error (the records are then not reported durable).
    pub fn journal_to(
        &mut self,
        now: Instant,
        journal: &mut impl crate::journal::Journal,
    ) -> Result<usize> {
        let recs: Vec<_> = std::iter::from_fn(|| self.poll_journal()).collect();
        if recs.is_empty() {
            return Ok(0);
        }
        journal.append(&recs)?;
        let seq = self.journal_seq();
        self.handle_journaled(now, seq);
        Ok(recs.len())
    }

    /// Sequence number of the last record handed out by `poll_journal` + those still
    /// queued: pass the value returned here *after* draining `poll_journal` to
    /// `handle_journaled` once that batch is durable.
    pub fn journal_seq(&self) -> u64 {
        self.seq_pushed - self.journal_out.len() as u64
    }

    /// All records up to sequence `upto` (see [`ReversalEngine::journal_seq`]) are durable.
    pub fn handle_journaled(&mut self, now: Instant, upto: u64) {
        self.now = Some(now);
        if upto <= self.seq_durable {
            return;
        }
        self.seq_durable = upto;
        while let Some((&seq, _)) = self.waits.first_key_value() {
            if seq > upto {
                break;
            }
            let Some((_, (txn, wait))) = self.waits.pop_first() else {
                break;
            };
            self.on_durable(txn, wait);
        }
        self.pump();
    }

    fn on_durable(&mut self, txn: TxnId, wait: Wait) {
        match wait {
            Wait::Started => {
                if let Some(e) = self.entries.get_mut(&txn) {
                    if matches!(e.phase, Phase::Journaling) {
                        e.phase = Phase::Ready;
                        self.ready_originals.push_back(txn);
                        if e.advice {
                            self.events
                                .push_back(EngineEvent::AdviceStored { txn, tag: e.tag });
                        }
                    }
                }
            }
            Wait::Finished => {
                let Some(e) = self.entries.get_mut(&txn) else {
                    return;
                };
                let Phase::Finishing { outcome, approved } = &e.phase else {
                    return;
                };
                let outcome = outcome.clone();
                let tag = e.tag;
                if *approved && self.config.keep_approved {
                    self.totals.add(&e.info);
                    e.phase = Phase::Done;
                } else {
                    if *approved {
                        self.totals.add(&e.info);
                        self.unkept.add(&e.info);
                    }
                    self.entries.remove(&txn);
                }
                self.events
                    .push_back(EngineEvent::Completed { txn, tag, outcome });
            }
            Wait::Reported(reason, reversible) => {
                let tag = self.entries.get(&txn).map_or(0, |e| e.tag);
                let outcome = if reversible {
                    Outcome::Reversed { reason }
                } else {
                    Outcome::InDoubt { reason }
                };
                self.events
                    .push_back(EngineEvent::Completed { txn, tag, outcome });
            }
            Wait::ReversalJournaled => {
                if let Some(Phase::Reversing(rev)) =
                    self.entries.get_mut(&txn).map(|e| &mut e.phase)
                {
                    if rev.attempts == 0 && !rev.ready && rev.awaiting.is_none() {
                        rev.ready = true;
                        self.ready_reversals.push_back(txn);
                    }
                }
            }
            Wait::Acked => {
                if let Some(e) = self.entries.remove(&txn) {
                    if let Phase::Acking { code, response } = e.phase {
                        self.stats.reversals_acked += 1;
                        self.events.push_back(EngineEvent::ReversalAcknowledged {
                            txn,
                            tag: e.tag,
                            code,
                            response,
                        });
                    }
                }
            }
        }
    }

    /// The next message to send: pending reversals first, then originals (unless a
    /// reversal blocks them).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let now = self.now?;
        while self.reversal_transmits < self.config.max_reversals_in_flight.max(1) {
            let Some(txn) = self.ready_reversals.pop_front() else {
                break;
            };
            if let Some(t) = self.send_reversal(now, txn) {
                return Some(t);
            }
        }
        while self.reversal_transmits < self.config.max_reversals_in_flight.max(1) {
            let Some(txn) = self.ready_repeats.pop_front() else {
                break;
            };
            if let Some(t) = self.send_repeat(now, txn) {
                return Some(t);
            }
        }
        if self.blocked() {
            return None;
        }
        while let Some(txn) = self.ready_originals.pop_front() {
            if let Some(t) = self.send_original(now, txn) {
                return Some(t);
            }
        }
        None
    }

    fn take_transmit(&mut self, id: TransmitId) -> Option<(TxnId, TransmitKind)> {
        let t = self.transmits.remove(&id)?;
        if matches!(
            t.1,
            TransmitKind::Reversal { .. } | TransmitKind::AdviceRepeat { .. }
        ) {
            self.reversal_transmits = self.reversal_transmits.saturating_sub(1);
        }
        Some(t)
    }

    fn blocked(&self) -> bool {
        self.config.block_while_reversal_pending && self.pending_reversals > 0
    }

    fn new_transmit(&mut self, txn: TxnId, kind: TransmitKind) -> TransmitId {
        let id = TransmitId(self.next_transmit);
        self.next_transmit += 1;
        self.transmits.insert(id, (txn, kind));
        if matches!(
            kind,
            TransmitKind::Reversal { .. } | TransmitKind::AdviceRepeat { .. }
        ) {
            self.reversal_transmits += 1;
        }
        id
    }

    fn send_original(&mut self, now: Instant, txn: TxnId) -> Option<Transmit> {
        let e = self.entries.get_mut(&txn)?;
        if !matches!(e.phase, Phase::Ready) {
            return None;
        }
        // Sealed in place (no copy): the entry keeps the MAC sent, which reversals (built
        // from `copy_fields`) and the journal (see `journal_copy`) leave out.
        match self.security.seal(&mut e.message) {
            Ok(bytes) => {
                let id = TransmitId(self.next_transmit);
                self.next_transmit += 1;
                self.transmits.insert(id, (txn, TransmitKind::Original));
                let deadline = now + self.config.response_timeout;
                e.phase = Phase::Awaiting {
                    transmit: id,
                    deadline,
                };
                self.timers.insert((deadline, txn));
                Some(Transmit {
                    id,
                    txn,
                    kind: TransmitKind::Original,
                    bytes,
                    timeout: self.config.response_timeout,
                })
            }
            Err(err) => {
                tracing::warn!(txn, error = %err, "original cannot be sealed: not sent");
                self.finish(
                    txn,
                    Finish::NotSent,
                    Outcome::NotSent {
                        reason: NotSentReason::Seal,
                    },
                    false,
                );
                None
            }
        }
    }

    fn send_reversal(&mut self, now: Instant, txn: TxnId) -> Option<Transmit> {
        let e = self.entries.get(&txn)?;
        let Phase::Reversing(rev) = &e.phase else {
            return None;
        };
        if !rev.ready || rev.deferred || rev.awaiting.is_some() {
            return None;
        }
        let (reason, attempt) = (rev.reason, rev.attempts + 1);
        let built = self
            .profile
            .build_reversal(&e.message, reason)
            .and_then(|mut m| {
                if attempt > 1 {
                    let repeat = m.mti().repeat_mti();
                    m.set_mti(repeat);
                }
                self.security.seal(&mut m)
            });
        let id = self.new_transmit(txn, TransmitKind::Reversal { attempt });
        let deadline = now + self.config.reversal_timeout;
        let e = self.entries.get_mut(&txn)?;
        let Phase::Reversing(rev) = &mut e.phase else {
            return None;
        };
        rev.ready = false;
        rev.attempts = attempt;
        rev.tries_conn += 1;
        match built {
            Ok(bytes) => {
                rev.awaiting = Some((id, deadline));
                self.timers.insert((deadline, txn));
                self.stats.reversals_sent += 1;
                tracing::info!(txn, stan = e.stan, attempt, %reason, "reversal sent");
                Some(Transmit {
                    id,
                    txn,
                    kind: TransmitKind::Reversal { attempt },
                    bytes,
                    timeout: self.config.reversal_timeout,
                })
            }
            Err(err) => {
                tracing::warn!(txn, error = %err, "reversal cannot be built or sealed");
                self.take_transmit(id);
                self.reversal_attempt_failed(now, txn);
                None
            }
        }
    }

    /// Handles the response to transmission `transmit` (its exact bytes).
    pub fn handle_response(&mut self, now: Instant, transmit: TransmitId, bytes: Bytes) {
        self.handle_response_decoded(now, transmit, bytes, None);
    }

    /// As [`ReversalEngine::handle_response`], with the response as the transport
    /// already decoded it (`decoded`, when it did): it is verified without decoding it
    /// again ([`Security::verify_decoded`]).
    pub fn handle_response_decoded(
        &mut self,
        now: Instant,
        transmit: TransmitId,
        bytes: Bytes,
        decoded: Option<Message>,
    ) {
        self.now = Some(now);
        let Some((txn, kind)) = self.take_transmit(transmit) else {
            self.handle_late(now, bytes);
            return;
        };
        let answer = Received { bytes, decoded };
        match kind {
            TransmitKind::Original => self.original_response(now, txn, transmit, answer),
            TransmitKind::Reversal { .. } => self.reversal_response(now, txn, transmit, answer),
            TransmitKind::AdviceRepeat { .. } => self.repeat_response(now, txn, transmit, answer),
        }
        self.pump();
    }

    /// Verifies an answer, decoding it only if the transport did not.
    fn verify_received(&mut self, answer: Received) -> std::result::Result<Message, Verify> {
        match answer.decoded {
            Some(m) => self.security.verify_decoded(m),
            None => self.security.verify(&answer.bytes),
        }
    }

    fn awaiting_original(&self, txn: TxnId, transmit: TransmitId) -> bool {
        matches!(self.entries.get(&txn).map(|e| &e.phase), Some(Phase::Awaiting { transmit: t, .. }) if *t == transmit)
    }

    fn original_response(
        &mut self,
        now: Instant,
        txn: TxnId,
        transmit: TransmitId,
        answer: Received,
    ) {
        if !self.awaiting_original(txn, transmit) {
            self.handle_late(now, answer.bytes);
            return;
        }
        let checked = self.verify_received(answer);
        self.answer_of(now, txn, checked);
    }

    /// The verified answer to an original or an advice repeat.
    fn answer_of(
        &mut self,
        now: Instant,
        txn: TxnId,
        checked: std::result::Result<Message, Verify>,
    ) {
        let Some(e) = self.entries.get(&txn) else {
            return;
        };
        let (advice, stan) = (e.advice, e.stan);
        let expected = e.message.mti().response_mti();
        match checked {
            Ok(msg)
                if Some(msg.mti()) == expected && self.profile.stan_of(&msg).ok() == Some(stan) =>
            {
                let code = self.profile.response_code(&msg).unwrap_or(*b"  ");
                self.clear_timer(txn);
                if advice && self.config.advice_retry_codes.contains(&code) {
                    tracing::info!(txn, stan, code = %String::from_utf8_lossy(&code), "advice answered with a retry code: repeated");
                    self.repeat_later(now, txn);
                } else if self.profile.is_approval(code) {
                    self.stats.approved += 1;
                    self.finish(
                        txn,
                        Finish::Approved { code },
                        Outcome::Approved {
                            response: Box::new(msg),
                        },
                        true,
                    );
                } else {
                    self.stats.declined += 1;
                    self.finish(
                        txn,
                        Finish::Declined { code },
                        Outcome::Declined {
                            code,
                            response: Box::new(msg),
                        },
                        false,
                    );
                }
            }
            Ok(msg) => {
                tracing::warn!(txn, mti = %msg.mti(), "response does not answer the request: in doubt");
                self.clear_timer(txn);
                self.in_doubt(now, txn, ReversalReason::Undecodable);
            }
            Err(Verify::SignOnAgain { code }) => {
                self.clear_timer(txn);
                self.sign_on_required(txn, Some(code));
                if advice {
                    self.repeat_later(now, txn);
                } else {
                    tracing::warn!(txn, stan, code = %String::from_utf8_lossy(&code), "refused without being acted on: sign on again");
                    self.stats.not_acted += 1;
                    self.finish(
                        txn,
                        Finish::NotActed { code },
                        Outcome::NotActed { code },
                        false,
                    );
                }
            }
            Err(Verify::BadMac) => {
                self.clear_timer(txn);
                self.sign_on_required(txn, None);
                self.in_doubt(now, txn, ReversalReason::MacFailure);
            }
            Err(Verify::Undecodable) => {
                self.clear_timer(txn);
                self.in_doubt(now, txn, ReversalReason::Undecodable);
            }
        }
    }

    fn sign_on_required(&mut self, txn: TxnId, code: Option<[u8; 2]>) {
        if !self.sign_on_reported {
            self.sign_on_reported = true;
            tracing::warn!(txn, code = %rc_text(code.as_ref()), "sign on again");
            self.events
                .push_back(EngineEvent::SignOnRequired { txn, code });
        }
    }

    /// The owner signed on again (new keys): the next "sign on again" is reported anew,
    /// and deferred reversals and waiting advice repeats get a fresh set of tries now.
    pub fn handle_signed_on(&mut self, now: Instant) {
        self.sign_on_reported = false;
        self.handle_connected(now);
    }

    fn repeat_response(
        &mut self,
        now: Instant,
        txn: TxnId,
        transmit: TransmitId,
        answer: Received,
    ) {
        let awaiting = matches!(
            self.entries.get(&txn).map(|e| &e.phase),
            Some(Phase::Repeating(Repeat { awaiting: Some((t, _)), .. })) if *t == transmit
        );
        if !awaiting {
            self.handle_late(now, answer.bytes);
            return;
        }
        let checked = self.verify_received(answer);
        self.answer_of(now, txn, checked);
    }

    /// An advice got no acceptable answer (or could not be sent): it waits
    /// `backoff_base · 2^(attempts−1)` (at most `backoff_max`) and is repeated as `xx21`.
    fn repeat_later(&mut self, now: Instant, txn: TxnId) {
        let (base, cap) = (self.config.backoff_base, self.config.backoff_max);
        let Some(e) = self.entries.get_mut(&txn) else {
            return;
        };
        match &e.phase {
            Phase::Journaling | Phase::Ready | Phase::Awaiting { .. } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.pending_advices += 1;
                e.phase = Phase::Repeating(new_repeat(1));
            }
            Phase::Repeating(_) => {}
            _ => return,
        }
        let Phase::Repeating(rep) = &mut e.phase else {
            return;
        };
        rep.awaiting = None;
        rep.ready = false;
        let exp = rep.attempts.saturating_sub(1).min(20);
        let at = now + base.saturating_mul(1u32 << exp).min(cap);
        rep.next_at = Some(at);
        self.timers.insert((at, txn));
        tracing::debug!(
            txn,
            stan = e.stan,
            attempts = rep.attempts,
            "advice not answered: repeat scheduled"
        );
    }

    fn send_repeat(&mut self, now: Instant, txn: TxnId) -> Option<Transmit> {
        let e = self.entries.get(&txn)?;
        let Phase::Repeating(rep) = &e.phase else {
            return None;
        };
        if !rep.ready || rep.awaiting.is_some() {
            return None;
        }
        let attempt = rep.attempts + 1;
        let mut m = e.message.clone();
        let repeat = m.mti().repeat_mti();
        m.set_mti(repeat);
        for n in MAC_FIELDS {
            m.remove(n);
        }
        let built = self.security.seal(&mut m);
        let kind = TransmitKind::AdviceRepeat { attempt };
        let id = self.new_transmit(txn, kind);
        let timeout = self.config.response_timeout;
        let e = self.entries.get_mut(&txn)?;
        let Phase::Repeating(rep) = &mut e.phase else {
            return None;
        };
        rep.ready = false;
        rep.attempts = attempt;
        match built {
            Ok(bytes) => {
                rep.awaiting = Some((id, now + timeout));
                self.timers.insert((now + timeout, txn));
                self.stats.advice_repeats += 1;
                tracing::info!(txn, stan = e.stan, attempt, "advice repeated");
                Some(Transmit {
                    id,
                    txn,
                    kind,
                    bytes,
                    timeout,
                })
            }
            Err(err) => {
                tracing::warn!(txn, error = %err, "advice repeat cannot be sealed");
                self.take_transmit(id);
                self.repeat_later(now, txn);
                None
            }
        }
    }

    fn reversal_response(
        &mut self,
        now: Instant,
        txn: TxnId,
        transmit: TransmitId,
        answer: Received,
    ) {
        let awaiting = matches!(
            self.entries.get(&txn).map(|e| &e.phase),
            Some(Phase::Reversing(Rev { awaiting: Some((t, _)), .. })) if *t == transmit
        );
        if !awaiting {
            self.handle_late(now, answer.bytes);
            return;
        }
        match self.verify_received(answer) {
            Ok(msg) if self.is_reversal_answer(txn, &msg) => self.acknowledge(txn, &msg),
            other => {
                match &other {
                    Err(Verify::SignOnAgain { code }) => self.sign_on_required(txn, Some(*code)),
                    Err(Verify::BadMac) => self.sign_on_required(txn, None),
                    _ => {}
                }
                tracing::warn!(txn, answer = ?other.as_ref().map(|m| m.mti()).err(), "reversal answer not accepted: will repeat");
                self.clear_timer(txn);
                self.reversal_attempt_failed(now, txn);
            }
        }
    }

    fn is_reversal_answer(&self, txn: TxnId, msg: &Message) -> bool {
        let Some(e) = self.entries.get(&txn) else {
            return false;
        };
        let expect = self.profile.reversal_mti.response_mti();
        Some(msg.mti()) == expect && self.profile.stan_of(msg).ok() == Some(e.stan)
    }

    fn acknowledge(&mut self, txn: TxnId, msg: &Message) {
        let code = self.profile.response_code(msg).unwrap_or(*b"  ");
        self.clear_timer(txn);
        let Some(e) = self.entries.get_mut(&txn) else {
            return;
        };
        if !matches!(e.phase, Phase::Reversing(_)) {
            return;
        }
        tracing::info!(txn, stan = e.stan, code = %String::from_utf8_lossy(&code), "reversal acknowledged");
        e.phase = Phase::Acking {
            code,
            response: Box::new(msg.clone()),
        };
        self.pending_reversals = self.pending_reversals.saturating_sub(1);
        self.push_record(
            JournalRecord::ReversalAcked { id: txn, code },
            Some((txn, Wait::Acked)),
        );
    }

    /// Reports that transmission `transmit` failed.
    pub fn handle_send_failed(&mut self, now: Instant, transmit: TransmitId, failure: SendFailure) {
        self.now = Some(now);
        let Some((txn, kind)) = self.take_transmit(transmit) else {
            return;
        };
        match kind {
            TransmitKind::Original => {
                if !self.awaiting_original(txn, transmit) {
                    return;
                }
                self.clear_timer(txn);
                let advice = self.entries.get(&txn).is_some_and(|e| e.advice);
                match failure {
                    // An advice is stored: it is forwarded until answered.
                    SendFailure::NotSent if advice => self.repeat_later(now, txn),
                    SendFailure::NotSent => self.finish(
                        txn,
                        Finish::NotSent,
                        Outcome::NotSent {
                            reason: NotSentReason::Rejected,
                        },
                        false,
                    ),
                    SendFailure::Timeout | SendFailure::ConnectionLost => {
                        self.in_doubt(now, txn, ReversalReason::NoResponse)
                    }
                }
            }
            TransmitKind::Reversal { attempt } => {
                tracing::debug!(txn, attempt, ?failure, "reversal not answered");
                let awaiting = matches!(
                    self.entries.get(&txn).map(|e| &e.phase),
                    Some(Phase::Reversing(Rev { awaiting: Some((t, _)), .. })) if *t == transmit
                );
                if awaiting {
                    self.clear_timer(txn);
                    self.reversal_attempt_failed(now, txn);
                }
            }
            TransmitKind::AdviceRepeat { attempt } => {
                tracing::debug!(txn, attempt, ?failure, "advice repeat not answered");
                let awaiting = matches!(
                    self.entries.get(&txn).map(|e| &e.phase),
                    Some(Phase::Repeating(Repeat { awaiting: Some((t, _)), .. })) if *t == transmit
                );
                if awaiting {
                    self.clear_timer(txn);
                    self.repeat_later(now, txn);
                }
            }
        }
        self.pump();
    }

    /// A response that came outside any pending exchange (for example from the client's
    /// unmatched handler): a late answer is logged and counted; a `0410` still acknowledges
    /// a pending reversal.
    pub fn handle_late(&mut self, now: Instant, bytes: Bytes) {
        self.now = Some(now);
        let Ok(msg) = self.security.verify(&bytes) else {
            self.stats.unmatched += 1;
            tracing::info!("unmatched response that does not verify: dropped");
            return;
        };
        let stan = self.profile.stan_of(&msg).ok();
        let terminal = msg.get(41);
        let txn = self
            .entries
            .iter()
            .find(|(_, e)| Some(e.stan) == stan && e.message.get(41) == terminal)
            .map(|(&id, _)| id);
        let code = self.profile.response_code(&msg);
        if let Some(t) = txn {
            if self.is_reversal_answer(t, &msg)
                && matches!(
                    self.entries.get(&t).map(|e| &e.phase),
                    Some(Phase::Reversing(_))
                )
            {
                self.acknowledge(t, &msg);
                self.pump();
                return;
            }
            let answers_advice = self.entries.get(&t).is_some_and(|e| {
                matches!(e.phase, Phase::Repeating(_))
                    && e.message.mti().response_mti() == Some(msg.mti())
            });
            if answers_advice {
                self.answer_of(now, t, Ok(msg));
                self.pump();
                return;
            }
        }
        self.stats.late_responses += 1;
        tracing::warn!(txn = ?txn, mti = %msg.mti(), stan = ?stan, code = %rc_text(code.as_ref()), "late response: logged only, the reversal stands");
        self.events.push_back(EngineEvent::LateResponse {
            txn,
            mti: msg.mti(),
            code,
        });
    }

    /// A new connection is up: deferred reversals get a fresh set of tries.
    pub fn handle_connected(&mut self, now: Instant) {
        self.now = Some(now);
        self.retry_deferred(now, true);
        self.pump();
    }

    /// Gives deferred reversals (every reversal when `new_connection`) a fresh set of
    /// tries.
    fn retry_deferred(&mut self, _now: Instant, new_connection: bool) {
        if new_connection {
            for e in self.entries.values_mut() {
                if let Phase::Reversing(rev) = &mut e.phase {
                    rev.tries_conn = 0;
                }
            }
        }
        // In id order, as `entries` is.
        for id in std::mem::take(&mut self.deferred_ids) {
            let Some(Phase::Reversing(rev)) = self.entries.get_mut(&id).map(|e| &mut e.phase)
            else {
                continue;
            };
            if !rev.deferred {
                continue;
            }
            rev.tries_conn = 0;
            rev.deferred = false;
            rev.ready = true;
            if let Some(at) = rev.next_at.take() {
                self.timers.remove(&(at, id));
            }
            self.ready_reversals.push_back(id);
        }
        if new_connection {
            // Advices waiting for their next repeat go now.
            let mut woken = Vec::new();
            for (&id, e) in self.entries.iter_mut() {
                if let Phase::Repeating(rep) = &mut e.phase {
                    if rep.awaiting.is_none() {
                        if let Some(at) = rep.next_at.take() {
                            woken.push((id, at));
                            rep.ready = true;
                        }
                    }
                }
            }
            for (id, at) in woken {
                self.timers.remove(&(at, id));
                self.ready_repeats.push_back(id);
            }
        }
    }

    /// When to call [`ReversalEngine::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(t, _)| t)
    }

    /// Advances time: response deadlines, reversal deadlines, backoffs.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        while let Some(&(t, txn)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            let Some(e) = self.entries.get_mut(&txn) else {
                continue;
            };
            match &mut e.phase {
                Phase::Awaiting { deadline, transmit } if *deadline == t => {
                    let transmit = *transmit;
                    self.transmits.remove(&transmit);
                    tracing::warn!(txn, stan = e.stan, "no response in time: in doubt");
                    self.in_doubt(now, txn, ReversalReason::NoResponse);
                }
                Phase::Reversing(rev) => {
                    if let Some((tid, deadline)) = rev.awaiting {
                        if deadline == t {
                            self.take_transmit(tid);
                            self.reversal_attempt_failed(now, txn);
                            continue;
                        }
                    }
                    if rev.next_at == Some(t) {
                        rev.next_at = None;
                        if rev.deferred {
                            rev.deferred = false;
                            rev.tries_conn = 0;
                            self.deferred_ids.remove(&txn);
                        }
                        rev.ready = true;
                        self.ready_reversals.push_back(txn);
                    }
                }
                Phase::Repeating(rep) => {
                    if let Some((tid, deadline)) = rep.awaiting {
                        if deadline == t {
                            self.take_transmit(tid);
                            self.repeat_later(now, txn);
                            continue;
                        }
                    }
                    if rep.next_at == Some(t) {
                        rep.next_at = None;
                        rep.ready = true;
                        self.ready_repeats.push_back(txn);
                    }
                }
                _ => {}
            }
        }
        self.pump();
    }

    /// Pops the next event.
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// The live state as records, for [`crate::journal::Journal::compact`]; take it
    /// right after draining [`ReversalEngine::poll_journal`].
    pub fn snapshot(&self) -> Vec<JournalRecord> {
        let mut out = vec![JournalRecord::Counters {
            next_id: self.next_id,
            next_stan: self.next_stan,
            batch: self.batch,
            closed_net: self.closed_net,
            unkept: self.unkept,
        }];
        for (&id, e) in &self.entries {
            let finish = match &e.phase {
                Phase::Queued => continue,
                Phase::Journaling | Phase::Ready | Phase::Awaiting { .. } | Phase::Repeating(_) => {
                    None
                }
                Phase::Finishing {
                    approved: true,
                    outcome,
                } => Some(Finish::Approved {
                    code: match outcome {
                        Outcome::Approved { response } => {
                            self.profile.response_code(response).unwrap_or(*b"00")
                        }
                        _ => *b"00",
                    },
                }),
                Phase::Finishing { .. } | Phase::Acking { .. } => continue,
                Phase::Done => Some(Finish::Approved { code: *b"00" }),
                Phase::Reversing(rev) => Some(Finish::Reverse { reason: rev.reason }),
            };
            let bytes = match journal_copy(&e.message) {
                Ok(b) => b,
                Err(err) => {
                    tracing::error!(txn = id, error = %err, "cannot re-encode for compaction");
                    continue;
                }
            };
            out.push(JournalRecord::Started {
                id,
                tag: e.tag,
                batch: e.batch,
                stan: e.stan,
                info: e.info.clone(),
                message: bytes,
            });
            if let Some(finish) = finish {
                out.push(JournalRecord::Finished { id, finish });
            }
        }
        out
    }

    /// What settlement needs: the open batch's totals and one upload entry per approved
    /// transaction.
    ///
    /// # Errors
    /// [`ReversalError::Settlement`] while reversals are pending or requests in flight.
    pub fn settlement_data(&self) -> Result<(BatchTotals, Vec<UploadEntry>)> {
        if self.pending_reversals > 0 {
            return Err(ReversalError::Settlement {
                why: "reversals are pending",
            });
        }
        if self.in_flight > 0 || !self.queue.is_empty() {
            return Err(ReversalError::Settlement {
                why: "transactions are in flight",
            });
        }
        if self.pending_advices > 0 {
            return Err(ReversalError::Settlement {
                why: "advices are not yet answered",
            });
        }
        let entries = self
            .entries
            .values()
            .filter(|e| {
                matches!(e.phase, Phase::Done) && e.info.kind != crate::profile::TxnKind::None
            })
            .map(|e| UploadEntry {
                foreign: e.info.foreign,
                stan: e.stan,
                pan: e.info.pan.clone(),
                amount: e.info.amount,
                kind: e.info.kind,
            })
            .collect();
        Ok((self.totals, entries))
    }

    /// Closes the open batch after a successful settlement and sign-off: journals
    /// `BatchClosed`, drops its approved transactions and moves to `next_batch`.
    ///
    /// # Errors
    /// As [`ReversalEngine::settlement_data`].
    pub fn close_batch(&mut self, next_batch: u32) -> Result<()> {
        self.settlement_data()?;
        let net = self.totals.net();
        let closed_net = self
            .closed_net
            .checked_add(net)
            .ok_or(ReversalError::Settlement {
                why: "lifetime net amount overflows",
            })?;
        let batch = self.batch;
        self.entries
            .retain(|_, e| !(matches!(e.phase, Phase::Done) && e.batch == batch));
        self.push_record(
            JournalRecord::BatchClosed {
                batch,
                next_batch,
                net,
            },
            None,
        );
        tracing::info!(batch, next_batch, %net, "batch closed");
        self.closed_net = closed_net;
        self.totals = BatchTotals::default();
        self.unkept = BatchTotals::default();
        self.batch = next_batch;
        Ok(())
    }

    fn push_record(&mut self, rec: JournalRecord, wait: Option<(TxnId, Wait)>) {
        self.seq_pushed += 1;
        self.journal_out.push_back(rec);
        if let Some(w) = wait {
            self.waits.insert(self.seq_pushed, w);
        }
    }

    fn clear_timer(&mut self, txn: TxnId) {
        let Some(e) = self.entries.get(&txn) else {
            return;
        };
        match &e.phase {
            Phase::Awaiting { deadline, .. } => {
                self.timers.remove(&(*deadline, txn));
            }
            Phase::Reversing(rev) => {
                if let Some((_, d)) = rev.awaiting {
                    self.timers.remove(&(d, txn));
                }
                if let Some(d) = rev.next_at {
                    self.timers.remove(&(d, txn));
                }
            }
            Phase::Repeating(rep) => {
                if let Some((_, d)) = rep.awaiting {
                    self.timers.remove(&(d, txn));
                }
                if let Some(d) = rep.next_at {
                    self.timers.remove(&(d, txn));
                }
            }
            _ => {}
        }
        match self.entries.get_mut(&txn).map(|e| &mut e.phase) {
            Some(Phase::Reversing(rev)) => {
                rev.awaiting = None;
                rev.next_at = None;
            }
            Some(Phase::Repeating(rep)) => {
                rep.awaiting = None;
                rep.next_at = None;
            }
            _ => {}
        }
    }

    fn finish(&mut self, txn: TxnId, finish: Finish, outcome: Outcome, approved: bool) {
        let Some(e) = self.entries.get_mut(&txn) else {
            return;
        };
        match e.phase {
            Phase::Journaling | Phase::Ready | Phase::Awaiting { .. } => {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            Phase::Repeating(_) => self.pending_advices = self.pending_advices.saturating_sub(1),
            _ => {}
        }
        e.phase = Phase::Finishing { outcome, approved };
        self.push_record(
            JournalRecord::Finished { id: txn, finish },
            Some((txn, Wait::Finished)),
        );
    }

    fn in_doubt(&mut self, now: Instant, txn: TxnId, reason: ReversalReason) {
        if self.entries.get(&txn).is_some_and(|e| e.advice) {
            // Store-and-forward: an advice is repeated, never reversed.
            self.repeat_later(now, txn);
            return;
        }
        let Some(e) = self.entries.get_mut(&txn) else {
            return;
        };
        if matches!(
            e.phase,
            Phase::Journaling | Phase::Ready | Phase::Awaiting { .. }
        ) {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        self.stats.in_doubt += 1;
        let reversible = e.reversible;
        tracing::warn!(txn, stan = e.stan, pan = %mask_pan(&e.info.pan), amount = %e.info.amount, %reason, reversible, "in doubt");
        if !reversible {
            e.phase = Phase::Finishing {
                outcome: Outcome::InDoubt { reason },
                approved: false,
            };
            self.push_record(
                JournalRecord::Finished {
                    id: txn,
                    finish: Finish::Unknown,
                },
                Some((txn, Wait::Finished)),
            );
            return;
        }
        e.phase = Phase::Reversing(new_rev(reason));
        self.pending_reversals += 1;
        self.push_record(
            JournalRecord::Finished {
                id: txn,
                finish: Finish::Reverse { reason },
            },
            Some((txn, Wait::Reported(reason, true))),
        );
        self.ready_reversals.push_back(txn);
    }

    fn reversal_attempt_failed(&mut self, now: Instant, txn: TxnId) {
        let max = self.config.max_reversal_tries.max(1);
        let (base, cap, deferred_retry) = (
            self.config.backoff_base,
            self.config.backoff_max,
            self.config.deferred_retry,
        );
        let Some(e) = self.entries.get_mut(&txn) else {
            return;
        };
        let Phase::Reversing(rev) = &mut e.phase else {
            return;
        };
        rev.awaiting = None;
        rev.ready = false;
        if rev.tries_conn >= max {
            rev.deferred = true;
            self.deferred_ids.insert(txn);
            let attempts = rev.attempts;
            rev.next_at = deferred_retry.map(|d| now + d);
            if let Some(at) = rev.next_at {
                self.timers.insert((at, txn));
            }
            tracing::warn!(
                txn,
                stan = e.stan,
                attempts,
                "reversal deferred to the next connection"
            );
            let tag = e.tag;
            self.events
                .push_back(EngineEvent::ReversalDeferred { txn, tag, attempts });
        } else {
            let exp = rev.attempts.saturating_sub(1).min(20);
            let wait = base.saturating_mul(1u32 << exp).min(cap);
            let at = now + wait;
            rev.next_at = Some(at);
            self.timers.insert((at, txn));
        }
    }

    /// Admits queued transactions (journals their `Started` record) when allowed, and
    /// fails them when every pending reversal is deferred.
    fn pump(&mut self) {
        while let Some(&txn) = self.queue.front() {
            if self.blocked() {
                let all_deferred = self.entries.values().all(|e| match &e.phase {
                    Phase::Reversing(r) => r.deferred,
                    _ => true,
                });
                if all_deferred {
                    self.queue.pop_front();
                    tracing::warn!(txn, "not sent: a reversal is pending and undeliverable");
                    let tag = self.entries.remove(&txn).map_or(0, |e| e.tag);
                    self.events.push_back(EngineEvent::Completed {
                        txn,
                        tag,
                        outcome: Outcome::NotSent {
                            reason: NotSentReason::ReversalPending,
                        },
                    });
                    continue;
                }
                break;
            }
            if self.in_flight >= self.config.max_in_flight.max(1) {
                break;
            }
            self.queue.pop_front();
            let Some(e) = self.entries.get_mut(&txn) else {
                continue;
            };
            let message = match journal_copy(&e.message) {
                Ok(b) => b,
                Err(err) => {
                    tracing::warn!(txn, error = %err, "cannot encode: not sent");
                    let tag = self.entries.remove(&txn).map_or(0, |e| e.tag);
                    self.events.push_back(EngineEvent::Completed {
                        txn,
                        tag,
                        outcome: Outcome::NotSent {
                            reason: NotSentReason::Seal,
                        },
                    });
                    continue;
                }
            };
            e.phase = Phase::Journaling;
            self.in_flight += 1;
            let rec = JournalRecord::Started {
                id: txn,
                tag: e.tag,
                batch: e.batch,
                stan: e.stan,
                info: e.info.clone(),
                message,
            };
            self.push_record(rec, Some((txn, Wait::Started)));
        }
    }
}

/// Sensitive authentication data that is never written to disk: track 2, track 3,
/// track 1 and the PIN block. A reversal does not carry them (domain notes §3), and the
/// journal only ever rebuilds reversals and settlement entries from what it stored.
const NOT_JOURNALED: [u8; 4] = [35, 36, 45, 52];

/// The MAC fields: an original is journaled without them (it is sealed in place when
/// sent, after its `Started` record is durable).
const MAC_FIELDS: [u8; 2] = [64, 128];

/// The original as the journal stores it: encoded without the fields of
/// [`NOT_JOURNALED`] and [`MAC_FIELDS`].
fn journal_copy(message: &Message) -> std::result::Result<Bytes, isoswitch_codec::CodecError> {
    let left_out = || NOT_JOURNALED.iter().chain(&MAC_FIELDS);
    if left_out().all(|&n| !message.has(n)) {
        return message.to_bytes();
    }
    let mut copy = message.clone();
    for &n in left_out() {
        copy.remove(n);
    }
    copy.to_bytes()
}

fn new_rev(reason: ReversalReason) -> Rev {
    Rev {
        reason,
        attempts: 0,
        tries_conn: 0,
        ready: true,
        deferred: false,
        next_at: None,
        awaiting: None,
    }
}

fn new_repeat(attempts: u32) -> Repeat {
    Repeat {
        attempts,
        ready: true,
        next_at: None,
        awaiting: None,
    }
}

fn next_stan_after(stan: u32) -> u32 {
    if stan >= 999_999 {
        1
    } else {
        stan + 1
    }
}

/// An answer as it came back: its bytes and, when the transport decoded it, the message.
struct Received {
    bytes: Bytes,
    decoded: Option<Message>,
}

#[cfg(test)]
mod latest_tests {
    use super::*;

    fn t(txn: TxnId, tag: CallerTag, state: RecoveredState) -> RecoveredTxn {
        RecoveredTxn { txn, tag, state }
    }

    #[test]
    fn the_latest_attempt_of_a_tag_decides_in_any_order() {
        // Tag 7: refused under old keys (77), then prepared again and approved.
        let refused = t(
            3,
            7,
            RecoveredState::Finished(Finish::NotActed { code: *b"77" }),
        );
        let approved = t(
            9,
            7,
            RecoveredState::Finished(Finish::Approved { code: *b"00" }),
        );
        let other = t(5, 8, RecoveredState::Repeating);
        for list in [
            vec![refused, approved, other],
            vec![approved, refused, other],
            vec![other, approved, refused],
        ] {
            let latest = latest_by_tag(&list);
            assert_eq!(latest.len(), 2);
            assert_eq!(latest[&7], approved);
            assert_eq!(latest[&8], other);
        }
        assert!(latest_by_tag(&[]).is_empty());
    }

    #[test]
    fn a_dead_nodes_journal_reads_as_recovery_would_find_it() {
        use crate::journal::JournalRecord;
        let d = isoswitch_codec::Dialect::builtin("iso87-ascii").unwrap();
        let msg = |mti: &str| {
            isoswitch_codec::Message::new(&d, mti.parse().unwrap())
                .to_bytes()
                .unwrap()
        };
        let info = crate::profile::TxnInfo {
            kind: crate::profile::TxnKind::Debit,
            foreign: false,
            txn_type: 0,
            amount: rust_decimal::Decimal::ONE,
            pan: String::new(),
        };
        let started = |id: TxnId, tag: CallerTag, mti: &str| JournalRecord::Started {
            id,
            tag,
            batch: 1,
            stan: id as u32,
            info: info.clone(),
            message: msg(mti),
        };
        let records = vec![
            started(1, 10, "0200"),
            JournalRecord::Finished {
                id: 1,
                finish: Finish::Approved { code: *b"00" },
            },
            started(2, 20, "0200"),
            started(3, 30, "0220"),
            // Taken over by another node: acknowledged here, still being repeated there.
            JournalRecord::ReversalAcked {
                id: 3,
                code: *b"HO",
            },
            started(4, 40, "0200"),
            JournalRecord::Finished {
                id: 4,
                finish: Finish::Reverse {
                    reason: ReversalReason::NoResponse,
                },
            },
            JournalRecord::ReversalAcked {
                id: 4,
                code: *b"00",
            },
            started(5, 50, "0220"),
        ];
        let (states, messages) = journal_states(&records, &d);
        let of = |tag| states.iter().find(|t| t.tag == tag).map(|t| t.state);
        assert_eq!(
            of(10),
            Some(RecoveredState::Finished(Finish::Approved { code: *b"00" }))
        );
        assert_eq!(
            of(20),
            Some(RecoveredState::Finished(Finish::Reverse {
                reason: ReversalReason::Recovered
            }))
        );
        assert_eq!(of(30), Some(RecoveredState::Repeating));
        assert_eq!(of(40), Some(RecoveredState::ReversalAcked { code: *b"00" }));
        assert_eq!(of(50), Some(RecoveredState::Repeating));
        assert_eq!(messages.len(), 5);
        assert_eq!(messages[&1], msg("0200"));
        // A closed batch takes its finished transactions out, as recovery does.
        let mut closed = records.clone();
        closed.push(JournalRecord::BatchClosed {
            batch: 1,
            next_batch: 2,
            net: rust_decimal::Decimal::ZERO,
        });
        let (states, _) = journal_states(&closed, &d);
        assert!(states.iter().all(|t| t.tag != 10));
        assert_eq!(states.len(), 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::MemoryJournal;
    use crate::security::NoMac;

    const T0_SECS: u64 = 0;

    struct Rig {
        profile: ReversalProfile,
        engine: ReversalEngine<NoMac>,
        journal: MemoryJournal,
        now: Instant,
        events: Vec<EngineEvent>,
    }

    impl Rig {
        fn new(config: EngineConfig) -> Rig {
            let profile = ReversalProfile::cup_pos().unwrap();
            let engine = ReversalEngine::new(
                config,
                profile.clone(),
                NoMac::new(profile.dialect.clone()),
                1,
            );
            Rig {
                profile,
                engine,
                journal: MemoryJournal::new(),
                now: Instant::now() + Duration::from_secs(T0_SECS),
                events: Vec::new(),
            }
        }

        /// Makes every record durable, collects events.
        fn flush(&mut self) {
            self.engine.journal_to(self.now, &mut self.journal).unwrap();
            self.events
                .extend(std::iter::from_fn(|| self.engine.poll_event()));
        }

        fn transmit(&mut self) -> Option<Transmit> {
            self.flush();
            self.engine.poll_transmit()
        }

        fn advance(&mut self, d: Duration) {
            self.now += d;
            self.engine.handle_timeout(self.now);
            self.flush();
        }

        /// Answers `t` with DE 39 `code`.
        fn answer(&mut self, t: &Transmit, code: &str) {
            let req = Message::decode(&self.profile.dialect, t.bytes.clone()).unwrap();
            let mut r = Message::response_to(&req).unwrap();
            for n in [11, 41, 42] {
                if let (Some(v), false) = (req.get(n), r.has(n)) {
                    r.set(n, v).unwrap();
                }
            }
            r.set(39, code).unwrap();
            self.engine
                .handle_response(self.now, t.id, r.to_bytes().unwrap());
            self.flush();
        }

        fn recover(&self, config: EngineConfig) -> Result<ReversalEngine<NoMac>> {
            ReversalEngine::recover(
                self.now,
                config,
                self.profile.clone(),
                NoMac::new(self.profile.dialect.clone()),
                1,
                self.journal.records(),
            )
        }
    }

    fn sale(p: &ReversalProfile, mti: &str, cup_type: &str) -> Message {
        let mut m = Message::new(&p.dialect, mti.parse().unwrap());
        m.set(2, "6222021234567890").unwrap();
        m.set(3, "000000").unwrap();
        m.set(4, "000000001000").unwrap();
        m.set(41, "TERM0001").unwrap();
        m.set(42, "MERCHANT0000001").unwrap();
        m.set(49, "156").unwrap();
        m.set(60, format!("{cup_type}000001000")).unwrap();
        m
    }

    fn mti_of(r: &Rig, t: &Transmit) -> String {
        Message::decode(&r.profile.dialect, t.bytes.clone())
            .unwrap()
            .mti()
            .as_str()
            .to_string()
    }

    #[test]
    fn caller_tag_is_journaled_reported_and_recovered() {
        let mut r = Rig::new(EngineConfig::switch());
        let p = r.profile.clone();
        let approved = r
            .engine
            .submit_tagged(r.now, sale(&p, "0200", "22"), 1001)
            .unwrap();
        let lost = r
            .engine
            .submit_tagged(r.now, sale(&p, "0200", "22"), 1002)
            .unwrap();
        let declined = r
            .engine
            .submit_tagged(r.now, sale(&p, "0200", "22"), 1003)
            .unwrap();
        let t1 = r.transmit().unwrap();
        let t2 = r.engine.poll_transmit().unwrap();
        let t3 = r.engine.poll_transmit().unwrap();
        assert_eq!((t1.txn, t2.txn, t3.txn), (approved, lost, declined));
        r.answer(&t1, "00");
        r.answer(&t3, "51");
        // One still in flight when the process dies.
        let in_flight = r
            .engine
            .submit_tagged(r.now, sale(&p, "0200", "22"), 1004)
            .unwrap();
        r.flush();
        let tags: Vec<_> = r
            .events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Completed { txn, tag, .. } => Some((*txn, *tag)),
                _ => None,
            })
            .collect();
        assert_eq!(tags, vec![(approved, 1001), (declined, 1003)]);
        assert_eq!(r.engine.tag_of(lost), Some(1002));
        // The lost one times out and is reversed; the 0410 event carries the tag.
        r.advance(Duration::from_secs(11));
        assert!(r.events.iter().any(|e| matches!(
            e,
            EngineEvent::Completed { txn, tag: 1002, outcome: Outcome::Reversed { .. } } if *txn == lost
        )));
        // Crash before the reversal is answered; recover.
        let mut rec = r.recover(EngineConfig::switch()).unwrap();
        let mut found: Vec<_> = rec.recovered().to_vec();
        found.sort_by_key(|t| t.txn);
        assert_eq!(
            found,
            vec![
                RecoveredTxn {
                    txn: approved,
                    tag: 1001,
                    state: RecoveredState::Finished(Finish::Approved { code: *b"00" })
                },
                RecoveredTxn {
                    txn: lost,
                    tag: 1002,
                    state: RecoveredState::Finished(Finish::Reverse {
                        reason: ReversalReason::NoResponse
                    })
                },
                RecoveredTxn {
                    txn: declined,
                    tag: 1003,
                    state: RecoveredState::Finished(Finish::Declined { code: *b"51" })
                },
                RecoveredTxn {
                    txn: in_flight,
                    tag: 1004,
                    state: RecoveredState::Finished(Finish::Reverse {
                        reason: ReversalReason::Recovered
                    })
                },
            ]
        );
        let evs: Vec<_> = std::iter::from_fn(|| rec.poll_event()).collect();
        assert!(evs.iter().any(
            |e| matches!(e, EngineEvent::Recovered { txn, tag: 1004, .. } if *txn == in_flight)
        ));
        // After the reversal is acknowledged, the acknowledgement carries the tag, and a
        // second recovery reports it as acknowledged.
        r.engine = rec;
        r.events.clear();
        let rev = r.transmit().unwrap();
        assert_eq!(mti_of(&r, &rev), "0400");
        r.answer(&rev, "00");
        let acked_tag = r.events.iter().find_map(|e| match e {
            EngineEvent::ReversalAcknowledged { txn, tag, .. } if *txn == rev.txn => Some(*tag),
            _ => None,
        });
        assert!(matches!(acked_tag, Some(1002 | 1004)));
        let again = r.recover(EngineConfig::switch()).unwrap();
        assert!(again.recovered().iter().any(|t| t.txn == rev.txn
            && Some(t.tag) == acked_tag
            && t.state == RecoveredState::ReversalAcked { code: *b"00" }));
        assert_eq!(
            again.tag_of(in_flight).or(again.tag_of(lost)),
            Some(1002 + 1004 - acked_tag.unwrap())
        );
    }

    #[test]
    fn advice_is_repeated_until_answered_and_never_reversed() {
        let config = EngineConfig {
            backoff_base: Duration::from_secs(1),
            ..EngineConfig::default()
        };
        let mut r = Rig::new(config.clone());
        let p = r.profile.clone();
        // A refund is an advice in cup-pos: 0220, DE 60.1 = 25.
        let refund = r
            .engine
            .submit_tagged(r.now, sale(&p, "0220", "25"), 7)
            .unwrap();
        r.flush();
        assert!(matches!(
            r.events.as_slice(),
            [EngineEvent::AdviceStored { txn, tag: 7 }] if *txn == refund
        ));
        let first = r.transmit().unwrap();
        assert_eq!(mti_of(&r, &first), "0220");
        // Timeout: no reversal, a repeat after the backoff.
        r.advance(Duration::from_secs(30));
        assert!(
            r.engine.poll_transmit().is_none(),
            "nothing before the backoff"
        );
        assert_eq!(r.engine.pending_reversals(), 0);
        assert_eq!(r.engine.pending_advices(), 1);
        r.advance(Duration::from_secs(1));
        let second = r.engine.poll_transmit().unwrap();
        assert_eq!(mti_of(&r, &second), "0221");
        assert_eq!(second.kind, TransmitKind::AdviceRepeat { attempt: 2 });
        // The connection drops: repeated again.
        r.engine
            .handle_send_failed(r.now, second.id, SendFailure::ConnectionLost);
        r.advance(Duration::from_secs(2));
        let third = r.engine.poll_transmit().unwrap();
        assert_eq!(mti_of(&r, &third), "0221");
        // 96 is in the retry set: not an answer.
        r.answer(&third, "96");
        r.advance(Duration::from_secs(4));
        let fourth = r.engine.poll_transmit().unwrap();
        // A crash now: the journal says "unanswered advice", recovery repeats it.
        let mut rec = r.recover(config.clone()).unwrap();
        assert_eq!(
            rec.recovered(),
            &[RecoveredTxn {
                txn: refund,
                tag: 7,
                state: RecoveredState::Repeating
            }]
        );
        rec.handle_timeout(r.now);
        let after = rec.poll_transmit().unwrap();
        assert_eq!(mti_of(&r, &after), "0221");
        // Back on the first engine: answered 00.
        r.answer(&fourth, "00");
        let outcome = r.events.iter().find_map(|e| match e {
            EngineEvent::Completed {
                txn,
                tag: 7,
                outcome,
            } if *txn == refund => Some(outcome),
            _ => None,
        });
        match outcome {
            Some(Outcome::Approved { response }) => assert_eq!(response.mti().as_str(), "0230"),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.engine.pending_advices(), 0);
        assert!(!r.journal.records().iter().any(|rec| matches!(
            rec,
            JournalRecord::Finished {
                finish: Finish::Reverse { .. },
                ..
            }
        )));
        assert!(r.engine.stats().reversals_sent == 0 && r.engine.stats().advice_repeats == 3);
    }

    #[test]
    fn the_engine_never_reverses_an_approved_refund_it_holds() {
        let mut r = Rig::new(EngineConfig::default());
        let p = r.profile.clone();
        // A refund request (DE 60.1 25): not reversible per the profile.
        let id = r.engine.submit(r.now, sale(&p, "0200", "25")).unwrap();
        let t = r.transmit().unwrap();
        r.answer(&t, "00");
        assert!(matches!(
            r.engine.reverse(r.now, id, ReversalReason::TerminalFailure),
            Err(ReversalError::WrongState { .. })
        ));
        // In doubt: not reversed either (InDoubt).
        let id2 = r.engine.submit(r.now, sale(&p, "0200", "25")).unwrap();
        r.transmit().unwrap();
        r.advance(Duration::from_secs(31));
        assert!(r.events.iter().any(|e| matches!(
            e,
            EngineEvent::Completed { txn, outcome: Outcome::InDoubt { .. }, .. } if *txn == id2
        )));
        assert_eq!(r.engine.pending_reversals(), 0);
    }

    #[test]
    fn sign_on_again_is_reported_once_and_the_request_not_acted() {
        let mut r = Rig::new(EngineConfig::switch());
        let p = r.profile.clone();
        let a = r
            .engine
            .submit_tagged(r.now, sale(&p, "0200", "22"), 1)
            .unwrap();
        let b = r
            .engine
            .submit_tagged(r.now, sale(&p, "0200", "22"), 2)
            .unwrap();
        let ta = r.transmit().unwrap();
        let tb = r.engine.poll_transmit().unwrap();
        r.answer(&ta, "77");
        r.answer(&tb, "A0");
        let sign_ons: Vec<_> = r
            .events
            .iter()
            .filter(|e| matches!(e, EngineEvent::SignOnRequired { .. }))
            .collect();
        assert_eq!(sign_ons.len(), 1, "{:?}", r.events);
        assert!(matches!(
            sign_ons[0],
            EngineEvent::SignOnRequired { txn, code: Some(c) } if *txn == a && c == b"77"
        ));
        for (txn, code) in [(a, *b"77"), (b, *b"A0")] {
            assert!(r.events.iter().any(|e| matches!(
                e,
                EngineEvent::Completed { txn: t, outcome: Outcome::NotActed { code: c }, .. }
                    if *t == txn && *c == code
            )));
        }
        assert!(r.engine.poll_transmit().is_none(), "nothing reversed");
        assert_eq!(r.engine.pending_reversals(), 0);
        assert_eq!(r.engine.stats().not_acted, 2);
        // After the owner signed on, the next refusal is reported again.
        r.engine.handle_signed_on(r.now);
        let c = r
            .engine
            .submit_tagged(r.now, sale(&p, "0200", "22"), 3)
            .unwrap();
        let tc = r.transmit().unwrap();
        assert_eq!(tc.txn, c);
        r.answer(&tc, "77");
        assert_eq!(
            r.events
                .iter()
                .filter(|e| matches!(e, EngineEvent::SignOnRequired { .. }))
                .count(),
            2
        );
        let rec = r.recover(EngineConfig::switch()).unwrap();
        assert!(rec
            .recovered()
            .iter()
            .all(|t| matches!(t.state, RecoveredState::Finished(Finish::NotActed { .. }))));
        assert_eq!(rec.pending_reversals(), 0);
    }

    #[test]
    fn a_reversal_answered_77_is_repeated_after_sign_on() {
        let mut r = Rig::new(EngineConfig::switch());
        let p = r.profile.clone();
        let id = r.engine.submit(r.now, sale(&p, "0200", "22")).unwrap();
        let t = r.transmit().unwrap();
        r.engine
            .handle_send_failed(r.now, t.id, SendFailure::Timeout);
        let rev = r.transmit().unwrap();
        assert_eq!(rev.txn, id);
        r.answer(&rev, "77");
        assert!(r
            .events
            .iter()
            .any(|e| matches!(e, EngineEvent::SignOnRequired { .. })));
        assert_eq!(r.engine.pending_reversals(), 1);
        r.engine.handle_signed_on(r.now);
        r.advance(Duration::from_secs(60));
        let again = r.engine.poll_transmit().unwrap();
        assert_eq!(mti_of(&r, &again), "0401");
        r.answer(&again, "00");
        assert_eq!(r.engine.pending_reversals(), 0);
    }

    #[test]
    fn recovery_of_overflowing_records_is_an_error_not_a_panic() {
        let p = ReversalProfile::cup_pos().unwrap();
        let mk = |records: Vec<JournalRecord>| {
            ReversalEngine::recover(
                Instant::now(),
                EngineConfig::default(),
                p.clone(),
                NoMac::new(p.dialect.clone()),
                1,
                records,
            )
        };
        let mut msg = sale(&p, "0200", "22");
        msg.set(11, "000001").unwrap();
        let started = JournalRecord::Started {
            id: u64::MAX,
            tag: 0,
            batch: 1,
            stan: 1,
            info: p.classify(&msg),
            message: msg.to_bytes().unwrap(),
        };
        assert!(matches!(
            mk(vec![started]),
            Err(ReversalError::BadJournalRecord { .. })
        ));
        let closed = JournalRecord::BatchClosed {
            batch: 1,
            next_batch: 2,
            net: Decimal::MAX,
        };
        assert!(matches!(
            mk(vec![closed.clone(), closed]),
            Err(ReversalError::BadJournalRecord { .. })
        ));
        let counters = |next_id| JournalRecord::Counters {
            next_id,
            next_stan: 1,
            batch: 1,
            closed_net: Decimal::ZERO,
            unkept: BatchTotals::default(),
        };
        assert!(matches!(
            mk(vec![counters(u64::MAX)]),
            Err(ReversalError::BadJournalRecord { .. })
        ));
        assert!(mk(vec![counters(u64::MAX - 1)]).is_ok());
        let big = BatchTotals {
            domestic: crate::settlement::SideTotals {
                debit_amount: Decimal::MAX,
                debit_count: u32::MAX,
                ..Default::default()
            },
            ..BatchTotals::default()
        };
        let counters = JournalRecord::Counters {
            next_id: 1,
            next_stan: 1,
            batch: 1,
            closed_net: Decimal::ZERO,
            unkept: big,
        };
        let mut approved = msg.clone();
        approved.set(11, "000002").unwrap();
        let recs = vec![
            counters,
            JournalRecord::Started {
                id: 5,
                tag: 0,
                batch: 1,
                stan: 2,
                info: p.classify(&approved),
                message: approved.to_bytes().unwrap(),
            },
            JournalRecord::Finished {
                id: 5,
                finish: Finish::Approved { code: *b"00" },
            },
        ];
        let config = EngineConfig {
            keep_approved: false,
            ..EngineConfig::default()
        };
        let r = ReversalEngine::recover(
            Instant::now(),
            config,
            p.clone(),
            NoMac::new(p.dialect.clone()),
            1,
            recs,
        );
        assert!(
            matches!(r, Err(ReversalError::BadJournalRecord { .. })),
            "{r:?}"
        );
    }
}
