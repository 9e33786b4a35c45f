//! [`Switch`]: the acquirer switch assembled from the library's roles.
//!
//! Every terminal message takes one path:
//!
//! 1. **Admission** — [`HostSession::handle_request`], the only admission path: network
//!    management (sign-on with fresh working keys, echo, sign-off) is answered there, and
//!    every other request passes 30 → 97 → 77 → A0 → 94 before the switch sees it. A
//!    sign-on's session is written to the [`SessionStore`](isoswitch_reversal::SessionStore) before it is answered, so a
//!    restarted switch serves the terminal without a new sign-on.
//! 2. **Idempotency** — [`ReversalHandler::admit`]: a repeat, a reversal, a late original
//!    is answered with the library's rules from the durable store; a new original is
//!    admitted (durably) and forwarded.
//! 3. **Preparation** — the [`FieldMap`] builds the upstream message, the PIN block is
//!    translated from the terminal's PIK to the zone PIK ([`SecurityOps`]) and the message
//!    is MACed under the same zone-key generation ([`ZoneKeys`]).
//! 4. **Forwarding** — [`ReversalDriver::submit_tagged`] (tag = the admission ticket): the
//!    engine journals the original before it is sent, reverses it upstream if the answer
//!    goes missing, and repeats an advice until it is answered. A `77`/`A0` after a key
//!    change comes back as [`Outcome::NotActed`]: the message is prepared again under the
//!    new keys and sent once more, never answered `99`.
//! 5. **Completion** — [`ReversalHandler::complete`] with the upstream decision, durably,
//!    then the answer is mapped back ([`FieldMap`]) and MACed under the terminal's MAK.
//!
//! Terminal settlement (0500) and batch upload (0320) are answered by
//! [`HostSettlement`] against the handler's own totals of the batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use chrono::NaiveDateTime;
use isoswitch_codec::{Message, MessageClass};
use isoswitch_reversal::{
    Admit, CallerTag, Completion, Decision, GroupSync, HostSettlement, IdempotencyStore,
    NotSentReason, Outcome, ReversalDriver, ReversalHandler, ReversalReason, Transport, TxnKey,
    UpstreamAction,
};
use isoswitch_session::counters::Counters;
use isoswitch_session::crypto::{Pan, PinBlock, PinBlockFormat};
use isoswitch_session::{
    HostAction, HostOutcome, HostSession, Kek, KeyStore, MemoryKeyStore, RejectReason,
    SessionProfile, TerminalId,
};

use crate::dukpt::DukptPins;
use crate::error::{Result, SwitchError};
use crate::field_map::{FieldMap, MapContext};
use crate::pool::LinkPool;
use crate::security::SecurityOps;
use crate::upstream::{SharedSessions, UpstreamLink, ZoneKeys};

/// Settings of a [`Switch`].
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    /// DE 32 of upstream messages.
    pub acquirer_id: String,
    /// PIN block format of the terminals and of the zone.
    pub pin_format: PinBlockFormat,
    /// How often a request refused with `77`/`A0` is prepared again under new keys.
    pub max_reprepare: u32,
    /// How long to wait for the new keys after a `77`/`A0`.
    pub sign_on_wait: Duration,
    /// How long a terminal's advice waits for the host's answer before the switch leaves
    /// it unanswered (the terminal repeats it as 0221; the engine keeps forwarding it).
    pub advice_wait: Duration,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            acquirer_id: "00000000001".into(),
            pin_format: PinBlockFormat::Iso0,
            max_reprepare: 2,
            sign_on_wait: Duration::from_secs(2),
            advice_wait: Duration::from_secs(2),
        }
    }
}

/// DE 4 (minor units, two decimals) as a person reads it: `000000001050` → `10.50`.
fn amount_text(de4: Option<&str>) -> String {
    match de4.and_then(|v| v.parse::<u64>().ok()) {
        Some(v) => format!("{}.{:02}", v / 100, v % 100),
        None => "none".into(),
    }
}

/// The `link` label of the terminal side's metrics.
pub const TERMINAL_LINK: &str = "terminals";

/// What [`Switch::reload_terminals`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TerminalReload {
    /// Terminals now in the table.
    pub total: usize,
    /// Terminals that were not in the old table.
    pub added: usize,
    /// Terminals of the old table that are gone (refused `97` from now on).
    pub removed: usize,
    /// Terminals whose master key changed (it applies at their next sign-on).
    pub changed: usize,
}

impl std::fmt::Display for TerminalReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} terminals: {} added, {} removed, {} with a new master key",
            self.total, self.added, self.removed, self.changed
        )
    }
}

impl TerminalReload {
    /// The difference between two tables.
    pub fn between(old: &MemoryKeyStore, new: &MemoryKeyStore) -> TerminalReload {
        let kcv = |k: &MemoryKeyStore, id: &TerminalId| k.master_key(id).map(|k| *k.kcv());
        let mut r = TerminalReload {
            total: new.len(),
            ..TerminalReload::default()
        };
        for id in new.ids() {
            match kcv(old, id) {
                None => r.added += 1,
                Some(before) if Some(before) != kcv(new, id) => r.changed += 1,
                Some(_) => {}
            }
        }
        r.removed = old.ids().filter(|id| !new.contains(id)).count();
        r
    }
}

/// An answer for a terminal.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The message bytes.
    pub bytes: Bytes,
    /// The terminal must sign on again (`cup-pos`: processing requirement `3` in the
    /// reply's header).
    pub sign_on_again: bool,
}

struct Inner<K: KeyStore, S: IdempotencyStore, T: Transport, C: Counters + Send + 'static> {
    config: SwitchConfig,
    terminals: Mutex<HostSession<K>>,
    book: Mutex<ReversalHandler<S>>,
    settlements: Mutex<HashMap<(TerminalId, u32), HostSettlement>>,
    counters: Mutex<C>,
    upstream: Arc<UpstreamLink<T, C>>,
    driver: ReversalDriver,
    security: Arc<dyn SecurityOps>,
    dukpt: Option<Arc<DukptPins>>,
    to_host: FieldMap,
    to_terminal: FieldMap,
    local: fn() -> NaiveDateTime,
    utc: fn() -> NaiveDateTime,
    sessions: SharedSessions,
    kek: Kek,
    /// Group commit of the terminal-side store (`None`: it syncs every commit itself).
    book_sync: Option<GroupSync>,
    /// Several upstream links ([`Switch::with_pool`]); `None`: the one `upstream` link.
    pool: Option<Arc<LinkPool<T, C>>>,
    /// Tags of upstream work taken over from a dead node ([`Switch::note_taken_over`]).
    taken_over: Mutex<std::collections::HashSet<CallerTag>>,
    /// A store shared by several nodes ([`Switch::with_shared_work`]).
    shared_work: std::sync::OnceLock<SharedWork>,
}

/// Whether some node's journal holds upstream work under a tag (see
/// [`isoswitch_reversal::Store::pending_tag`]): `None` when the store cannot tell.
pub type PendingCheck =
    Arc<dyn Fn(CallerTag) -> isoswitch_reversal::Result<Option<bool>> + Send + Sync>;

/// Advices admitted by a node that died before it journaled them upstream: found by
/// their terminals' repeats ([`Switch::with_shared_work`]).
struct SharedWork {
    pending: PendingCheck,
    after: Duration,
    /// Per tag: when a repeat first found it open here, and since when no journal
    /// holds it.
    seen: Mutex<HashMap<CallerTag, (tokio::time::Instant, Option<tokio::time::Instant>)>>,
}

/// The switch; clones share it. See the module docs.
pub struct Switch<K: KeyStore, S: IdempotencyStore, T: Transport, C: Counters + Send + 'static> {
    inner: Arc<Inner<K, S, T, C>>,
}

impl<K: KeyStore, S: IdempotencyStore, T: Transport, C: Counters + Send + 'static> Clone
    for Switch<K, S, T, C>
{
    fn clone(&self) -> Self {
        Switch {
            inner: self.inner.clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The parts a [`Switch`] is built from.
pub struct SwitchParts<K: KeyStore, S: IdempotencyStore, T: Transport, C: Counters + Send + 'static>
{
    /// Settings.
    pub config: SwitchConfig,
    /// The terminal side: admission, sign-on, working keys.
    pub terminals: HostSession<K>,
    /// The terminal side's idempotency and ledger.
    pub book: ReversalHandler<S>,
    /// Upstream STAN/RRN.
    pub counters: C,
    /// The upstream link (its session and zone keys).
    pub upstream: Arc<UpstreamLink<T, C>>,
    /// The reversal engine's driver over the upstream link.
    pub driver: ReversalDriver,
    /// PIN translation.
    pub security: Arc<dyn SecurityOps>,
    /// PIN translation for DUKPT terminals (a request with a PIN block and a KSN),
    /// through a security module; `None`: every terminal has session keys.
    pub dukpt: Option<Arc<DukptPins>>,
    /// Terminal request → upstream request.
    pub to_host: FieldMap,
    /// Upstream response → terminal response.
    pub to_terminal: FieldMap,
    /// The local clock (DE 12/13).
    pub local: fn() -> NaiveDateTime,
    /// The UTC clock (DE 7).
    pub utc: fn() -> NaiveDateTime,
    /// Where terminal sessions are kept (sealed under `kek`).
    pub sessions: SharedSessions,
    /// The key-encryption key of stored sessions.
    pub kek: Kek,
}

impl<S, T, C> Switch<MemoryKeyStore, S, T, C>
where
    S: IdempotencyStore + Send + 'static,
    T: Transport,
    C: Counters + Send + 'static,
{
    /// [`Switch::replace_terminals`] with an in-memory table, telling what changed.
    ///
    /// # Errors
    /// As [`Switch::replace_terminals`].
    pub fn reload_terminals(&self, keys: MemoryKeyStore) -> Result<TerminalReload> {
        let new = keys.clone();
        let old = self.replace_terminals(keys)?;
        Ok(TerminalReload::between(&old, &new))
    }
}

enum Forwarded {
    /// The decision, the host's response, and the upstream message sent (without PIN).
    Decision(Decision, Option<Box<Message>>, Option<Box<Message>>),
    /// An advice stored and still being forwarded: no answer yet.
    Pending,
}

impl<K, S, T, C> Switch<K, S, T, C>
where
    K: KeyStore + Send + 'static,
    S: IdempotencyStore + Send + 'static,
    T: Transport,
    C: Counters + Send + 'static,
{
    /// Assembles a switch.
    pub fn new(parts: SwitchParts<K, S, T, C>) -> Self {
        Self::build(parts, None)
    }

    /// Assembles a switch over a pool of upstream links: each request is prepared (PIN
    /// translated) for the link the pool's strategy picks, and `parts.driver` must run
    /// over the pool's [`crate::pool::PoolTransport`] and [`crate::pool::PoolMac`];
    /// `parts.upstream` is the pool's first link. See [`crate::pool`].
    pub fn with_pool(parts: SwitchParts<K, S, T, C>, pool: Arc<LinkPool<T, C>>) -> Self {
        Self::build(parts, Some(pool))
    }

    fn build(mut parts: SwitchParts<K, S, T, C>, pool: Option<Arc<LinkPool<T, C>>>) -> Self {
        let book_sync = parts.book.store_mut().defer_sync().map(|h| {
            let written = parts.book.store().written();
            GroupSync::new(h, written)
        });
        Switch {
            inner: Arc::new(Inner {
                config: parts.config,
                terminals: Mutex::new(parts.terminals),
                book: Mutex::new(parts.book),
                settlements: Mutex::new(HashMap::new()),
                counters: Mutex::new(parts.counters),
                upstream: parts.upstream,
                driver: parts.driver,
                security: parts.security,
                dukpt: parts.dukpt,
                to_host: parts.to_host,
                to_terminal: parts.to_terminal,
                local: parts.local,
                utc: parts.utc,
                sessions: parts.sessions,
                kek: parts.kek,
                book_sync,
                pool,
                taken_over: Mutex::new(std::collections::HashSet::new()),
                shared_work: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The upstream link.
    pub fn upstream(&self) -> &Arc<UpstreamLink<T, C>> {
        &self.inner.upstream
    }

    /// The pool of upstream links, when there are several.
    pub fn pool(&self) -> Option<&Arc<LinkPool<T, C>>> {
        self.inner.pool.as_ref()
    }

    /// The reversal driver.
    pub fn driver(&self) -> &ReversalDriver {
        &self.inner.driver
    }

    /// Reads the terminal-side ledger and store.
    pub fn with_book<R>(&self, f: impl FnOnce(&ReversalHandler<S>) -> R) -> R {
        f(&lock(&self.inner.book))
    }

    /// Reads the terminal sessions.
    pub fn with_terminals<R>(&self, f: impl FnOnce(&HostSession<K>) -> R) -> R {
        f(&lock(&self.inner.terminals))
    }

    /// Replaces the terminal table (the master keys terminals sign on under) without a
    /// restart; see [`TerminalReload`]. Terminals no longer in `keys` are refused (`97`)
    /// from their next message on and their sessions are dropped; a new terminal can sign
    /// on at once; a changed master key applies at the terminal's next sign-on (its
    /// working keys stay valid until then). Returns the old table.
    ///
    /// # Errors
    /// Writing the dropped sessions to the store failed (the new table is in force).
    pub fn replace_terminals(&self, keys: K) -> Result<K> {
        let old = {
            let mut t = lock(&self.inner.terminals);
            let old = std::mem::replace(t.key_store_mut(), keys);
            let gone: Vec<TerminalId> = t
                .snapshots()
                .map(|s| s.terminal)
                .filter(|id| !t.key_store().contains(id))
                .collect();
            for id in &gone {
                t.invalidate(id);
                tracing::info!(terminal = %id, "terminal removed from the table: its session is dropped");
            }
            old
        };
        self.save_sessions()?;
        Ok(old)
    }

    /// The answer to a terminal request that is not carried out (e.g. while the switch
    /// drains): `code` in DE 39, MACed under the terminal's keys when it has any. Only
    /// authorization and financial requests and network management are answered so;
    /// `None` for the rest, which the terminal repeats until the switch takes them:
    /// advices, reversals (any `0410` acknowledges a reversal at the terminal, so a
    /// refusal would lose it), settlement and batch upload, responses.
    pub fn refusal(&self, request: &Message, code: &str) -> Option<Bytes> {
        let mut reply = refusal_message(request, code)?;
        let mut t = lock(&self.inner.terminals);
        match t.seal_response(&mut reply) {
            Ok(b) => Some(b),
            Err(_) => reply.to_bytes().ok(),
        }
    }

    /// Makes everything the terminal side has written durable (drain, shutdown).
    ///
    /// # Errors
    /// The store's sync failed.
    pub async fn sync_store(&self) -> Result<()> {
        let upto = lock(&self.inner.book).store().written();
        Ok(self.book_durable(Wrote::at(upto)).await?)
    }

    /// Answers one terminal message (its bytes as received, no frame header); `None`:
    /// nothing to send (a response, or an advice still being forwarded).
    ///
    /// # Errors
    /// Store and codec failures; the terminal gets no answer and will repeat or reverse.
    pub async fn handle(&self, bytes: Bytes) -> Result<Option<Reply>> {
        let dialect = lock(&self.inner.terminals).profile().dialect.clone();
        let msg = Message::decode(&dialect, bytes)?;
        self.handle_decoded(msg).await
    }

    /// [`Switch::handle`] for a terminal message a server decoded already (see
    /// [`isoswitch_net::Request::into_message`]): the one decode of the hop, unchanged
    /// since (see [`HostSession::handle_decoded`]).
    ///
    /// # Errors
    /// As [`Switch::handle`].
    pub async fn handle_decoded(&self, msg: Message) -> Result<Option<Reply>> {
        let inner = &self.inner;
        let local = (inner.local)();
        // The bytes received, for the rare second look (a session to adopt).
        let bytes = match msg.decoded_bytes() {
            Some(b) => b.clone(),
            None => msg.to_bytes()?,
        };
        let mut outcome = lock(&inner.terminals).handle_decoded(local, msg)?;
        if let HostOutcome::Rejected {
            reason: reason @ (RejectReason::NotSignedOn | RejectReason::MacFailure(_)),
            ..
        } = &outcome
        {
            // Signed on at another node sharing the store (or under keys newer than
            // this node's copy): take the stored session and try once more.
            let not_signed_on = matches!(reason, RejectReason::NotSignedOn);
            if self.adopt_stored_session(&bytes, not_signed_on)? {
                outcome = lock(&inner.terminals).handle_request(local, bytes)?;
            }
        }
        if let HostOutcome::Replied {
            action: HostAction::SignedOn { terminal, .. },
            ..
        } = &outcome
        {
            self.outrank_stored_session(terminal)?;
        }
        self.save_sessions()?;
        let accepted = match outcome {
            HostOutcome::Replied { reply, action } => {
                if let HostAction::SignedOn { terminal, .. } = &action {
                    ::metrics::counter!(crate::metrics::SIGN_ONS, "link" => TERMINAL_LINK)
                        .increment(1);
                    tracing::info!(%terminal, "terminal signed on");
                }
                tracing::debug!(?action, "terminal network management");
                return Ok(Some(Reply {
                    bytes: reply,
                    sign_on_again: false,
                }));
            }
            HostOutcome::Rejected {
                reply,
                code,
                reason,
            } => {
                if let RejectReason::MacFailure(_) = reason {
                    ::metrics::counter!(crate::metrics::MAC_FAILURES, "link" => TERMINAL_LINK)
                        .increment(1);
                }
                tracing::info!(?reason, code = %code.as_str(), "terminal request refused");
                return Ok(Some(Reply {
                    bytes: reply,
                    sign_on_again: code.as_str() == "77",
                }));
            }
            HostOutcome::Acknowledged { .. } => return Ok(None),
            HostOutcome::Accepted(a) => a,
        };
        let msg = accepted.message;
        let reply = match msg.mti().class() {
            MessageClass::Reconciliation => self.settlement(&accepted.terminal, &msg)?,
            MessageClass::FileAction => self.settlement(&accepted.terminal, &msg)?,
            _ => match self.financial(&msg).await? {
                Some(r) => r,
                None => return Ok(None),
            },
        };
        Ok(Some(Reply {
            bytes: reply,
            sign_on_again: false,
        }))
    }

    /// Restores the stored session of the terminal that sent `bytes` when the store
    /// holds a newer generation than this node (another node of a shared store signed
    /// it on); `true` when it did, or — for a request refused as not signed on
    /// (`not_signed_on`) — when a concurrent request of the same terminal restored it
    /// meanwhile (its retry is then served, not refused 77 into a needless sign-on).
    fn adopt_stored_session(&self, bytes: &Bytes, not_signed_on: bool) -> Result<bool> {
        let inner = &self.inner;
        let dialect = lock(&inner.terminals).profile().dialect.clone();
        let Ok(msg) = Message::decode(&dialect, bytes.clone()) else {
            return Ok(false);
        };
        let (Some(tid), Some(mid)) = (msg.get(41), msg.get(42)) else {
            return Ok(false);
        };
        let Ok(id) = TerminalId::new(tid.trim_end(), mid.trim_end()) else {
            return Ok(false);
        };
        let Some(sealed) = lock(&inner.sessions).terminal(&id)? else {
            return Ok(false);
        };
        let held = lock(&inner.terminals).export(&id).map(|s| s.generation);
        if held.is_some_and(|g| g >= sealed.generation) {
            return Ok(not_signed_on);
        }
        let snapshot = sealed.open(&inner.kek)?;
        lock(&inner.terminals).restore(snapshot)?;
        tracing::info!(terminal = %id, generation = sealed.generation, "terminal session taken from the shared store");
        Ok(true)
    }

    /// After a sign-on here: the new session's generation above the one the store holds
    /// (another node's sign-on of the same terminal, e.g. one whose answer the terminal
    /// never received), so that saving it replaces the stored keys.
    fn outrank_stored_session(&self, id: &TerminalId) -> Result<()> {
        let inner = &self.inner;
        if let Some(sealed) = lock(&inner.sessions).terminal(id)? {
            lock(&inner.terminals).outrank(id, sealed.generation);
        }
        Ok(())
    }

    fn seal_for_terminal(&self, mut reply: Message) -> Result<Bytes> {
        Ok(lock(&self.inner.terminals).seal_response(&mut reply)?)
    }

    /// Writes the sessions that changed (sign-on, sign-off, invalidation) to the store,
    /// sealed under the KEK, before the terminal is answered.
    fn save_sessions(&self) -> Result<()> {
        let inner = &self.inner;
        let sealed = {
            let mut t = lock(&inner.terminals);
            let mut out = Vec::new();
            while let Some(snap) = t.poll_snapshot() {
                out.push(snap.seal(&inner.kek)?);
            }
            out
        };
        if !sealed.is_empty() {
            lock(&inner.sessions).save(&sealed)?;
        }
        Ok(())
    }

    /// Waits until the terminal-side store is durable past the decision written
    /// between `w.since` and `w.upto` (group commit: one flush for every decision written
    /// meanwhile), then asks the store whether it kept it
    /// ([`IdempotencyStore::kept`]: a shared store refuses a decision made on a stale
    /// view, [`isoswitch_reversal::ReversalError::DecidedElsewhere`], and the caller
    /// decides again).
    async fn book_durable(
        &self,
        w: Wrote,
    ) -> std::result::Result<(), isoswitch_reversal::ReversalError> {
        isoswitch_reversal::settle(
            self.inner.book_sync.as_ref(),
            &self.inner.book,
            w.since,
            w.upto,
        )
        .await
    }

    /// One decision of the book under its lock, with the store's write positions before
    /// and after it (what [`Switch::book_durable`] waits for and asks the store about).
    fn decide<R>(
        &self,
        f: impl FnOnce(&mut ReversalHandler<S>) -> isoswitch_reversal::Result<R>,
    ) -> isoswitch_reversal::Result<(R, Wrote)> {
        let mut book = lock(&self.inner.book);
        let since = book.store().written();
        let r = f(&mut book)?;
        let upto = book.store().written();
        Ok((r, Wrote { since, upto }))
    }

    /// The store is unreachable (a shared database restarting): nothing was forwarded,
    /// so the terminal gets a fair `96` now rather than a timeout (a reversal of it is
    /// then answered once the store is back).
    fn store_unavailable(
        &self,
        msg: &Message,
        e: &isoswitch_reversal::ReversalError,
    ) -> Result<Option<Bytes>> {
        tracing::warn!(error = %e, "store unavailable: answered 96");
        let mut r = Message::response_to(msg)?;
        r.set(39, "96")?;
        Ok(Some(self.seal_for_terminal(r)?))
    }

    async fn financial(&self, msg: &Message) -> Result<Option<Bytes>> {
        // A terminal's reversal of an approved original: the upstream reversal is in the
        // engine's journal before the terminal's reversal is recorded. Recorded first,
        // another request's sync could make it durable before the upstream one is
        // journaled, and a crash in between would leave the host's approval standing
        // while the terminal's repeat gets the stored `00`. (A crash after this journal
        // write and before the record: the repeat reverses upstream once more, which the
        // host answers idempotently.)
        // A decision another node of a shared store made on the same key meanwhile makes
        // this one stale (not written): decided again on what is stored now.
        let mut attempts = 0;
        let mut reversed_first: Option<TxnKey> = None;
        // A decision the store refuses when it is made durable (decided on a stale view
        // of a shared store) is made again, as one refused when it is made.
        let ticket = loop {
            attempts += 1;
            if reversed_first.is_none() {
                let pre = lock(&self.inner.book).upstream_action_of(msg);
                // Anything else is decided (and any error met again) by `admit`.
                if let Ok(Some(UpstreamAction::ReverseUpstream { key })) = pre {
                    self.reverse_upstream(&key).await;
                    reversed_first = Some(key);
                }
            }
            let (admitted, wrote) = match self.decide(|book| book.admit(msg)) {
                Ok(a) => a,
                Err(isoswitch_reversal::ReversalError::DecidedElsewhere { .. }) if attempts < 4 => {
                    continue;
                }
                // The store is unreachable (a shared database restarting): nothing was
                // decided, admitted or forwarded, so the terminal gets a fair `96` now
                // rather than a timeout (a reversal of it is then answered once the
                // store is back).
                // Never a reversal or an advice: any answer would end it at the terminal.
                Err(e @ isoswitch_reversal::ReversalError::Database { .. })
                    if answered_96_when_unreachable(msg) =>
                {
                    return self.store_unavailable(msg, &e);
                }
                Err(e) => return Err(e.into()),
            };
            let durable = match admitted {
                Admit::Answer { answer, action } => {
                    // Journaled above, unless the state changed in between (the original's
                    // completion came meanwhile): then now, before the answer is durable.
                    match (action, &reversed_first) {
                        (Some(UpstreamAction::ReverseUpstream { key }), Some(done))
                            if key == *done => {}
                        (Some(a), _) => self.upstream_action(a).await,
                        (None, _) => {}
                    }
                    match self.book_durable(wrote).await {
                        Ok(()) => return Ok(Some(self.seal_for_terminal(*answer)?)),
                        Err(e) => e,
                    }
                }
                // Durable before it is forwarded.
                Admit::Forward(t) => match self.book_durable(wrote).await {
                    Ok(()) => break t,
                    Err(e) => e,
                },
                Admit::InProgress => return self.advice_in_progress(msg).await,
            };
            match durable {
                isoswitch_reversal::ReversalError::DecidedElsewhere { .. } if attempts < 4 => {}
                e @ isoswitch_reversal::ReversalError::Database { .. }
                    if answered_96_when_unreachable(msg) =>
                {
                    return self.store_unavailable(msg, &e);
                }
                e => return Err(e.into()),
            }
        };
        let tag = tag_of(ticket.key());
        let (decision, response, sent) = match self.forward(msg, tag).await? {
            Forwarded::Decision(d, response, sent) => (d, response, sent),
            Forwarded::Pending => return Ok(None),
        };
        let decision = final_for(msg.mti(), decision);
        let approved = matches!(decision, Decision::Approve { .. });
        // The upstream original goes into the store with the approval: a later terminal
        // reversal is reversed upstream from it, after a restart too.
        let upstream = sent
            .as_ref()
            .and_then(|m| m.to_bytes().ok())
            .map(|b| b.to_vec());
        let mut reversed = false;
        let mut attempts = 0;
        let Completion { answer, .. } = loop {
            attempts += 1;
            // An approval the terminal reversed meanwhile: reversed upstream (journaled)
            // before the approval is recorded, for the reason given at the top.
            let reversed_meanwhile = approved
                && lock(&self.inner.book)
                    .store()
                    .get(ticket.key())
                    .is_some_and(|t| t.reversal.is_some());
            if reversed_meanwhile && !reversed {
                if let Some(up) = &sent {
                    self.reverse_original((**up).clone(), ticket.key()).await;
                    reversed = true;
                }
            }
            let done = self.decide(|book| {
                book.complete_forwarded(ticket.clone(), decision.clone(), upstream.clone())
            });
            // Durable (and kept) before anything is acted on.
            let done = match done {
                Ok((c, w)) => {
                    // A reversal the terminal sent between the check above and the
                    // record: journaled upstream now, before the completion is durable
                    // (and if a crash comes first, the restart reverses it:
                    // `reverse_reversed_approvals`).
                    match &c.action {
                        Some(UpstreamAction::ReverseUpstream { .. }) if reversed => {}
                        Some(a) => {
                            self.upstream_action(a.clone()).await;
                            if matches!(a, UpstreamAction::ReverseUpstream { .. }) {
                                reversed = true;
                            }
                        }
                        None => {}
                    }
                    self.book_durable(w).await.map(|()| c)
                }
                Err(e) => Err(e),
            };
            match done {
                Ok(c) => break c,
                Err(e) => match record_again_after(&e, attempts) {
                    Some(wait) => {
                        if !wait.is_zero() {
                            tracing::warn!(error = %e, key = %ticket.key(), "store unreachable: the upstream outcome waits to be recorded");
                        }
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(e.into()),
                },
            }
        };
        // The completion is durable: the engine's journal need no longer keep this
        // transaction for a restart (DriverConfig::hold_until_released).
        self.inner.driver.release(tag).await?;
        let reply = self.map_back(msg, &answer, response.as_deref())?;
        tracing::debug!(
            mti = %msg.mti(),
            stan = %msg.get(11).unwrap_or_default(),
            terminal = %msg.get(41).unwrap_or_default(),
            pan = %isoswitch_codec::mask::mask_pan(&msg.get(2).unwrap_or_default()),
            amount = %amount_text(msg.get(4).as_deref()),
            rc = %answer.get(39).unwrap_or_default(),
            "terminal transaction"
        );
        Ok(Some(self.seal_for_terminal(reply)?))
    }

    /// Carries out what a terminal's reversal asks upstream.
    async fn upstream_action(&self, action: UpstreamAction) {
        match action {
            UpstreamAction::ReverseUpstream { key } => self.reverse_upstream(&key).await,
            other => tracing::debug!(?other, "upstream action: nothing to do now"),
        }
    }

    /// Hands `original` (the upstream message of `key`'s approval) to the reversal
    /// engine, which sends the 0400 until the host acknowledges it; returns once the
    /// reversal is in the journal.
    async fn reverse_original(&self, original: Message, key: &TxnKey) {
        if let Err(e) = self
            .inner
            .driver
            .reverse_message_tagged(original, ReversalReason::TerminalFailure, tag_of(key))
            .await
        {
            tracing::error!(%key, error = %e, "upstream reversal not handed to the engine");
        }
    }

    /// Hands the upstream original of an approved transaction the terminal reversed to
    /// the reversal engine, which sends the 0400 until the host acknowledges it.
    async fn reverse_upstream(&self, key: &TxnKey) {
        let bytes = lock(&self.inner.book)
            .upstream_original(key)
            .map(bytes::Bytes::copy_from_slice);
        let original =
            bytes.and_then(|b| Message::decode(&self.inner.upstream.profile().dialect, b).ok());
        let Some(original) = original else {
            tracing::error!(
                %key,
                "terminal reversed an approved transaction whose upstream original is unknown"
            );
            return;
        };
        self.reverse_original(original, key).await;
    }

    /// The terminal's answer: the handler's decision (DE 39, 38) with the host's fields
    /// mapped back.
    fn map_back(
        &self,
        request: &Message,
        answer: &Message,
        upstream: Option<&Message>,
    ) -> Result<Message> {
        let local = (self.inner.local)();
        let ctx = MapContext {
            request: Some(request),
            local: Some(local),
            ..MapContext::default()
        };
        let mut reply = match upstream {
            Some(up) => self.inner.to_terminal.apply_as(up, answer.mti(), &ctx)?,
            None => Message::new(self.inner.to_terminal.target(), answer.mti()),
        };
        for f in answer.fields() {
            let n = f.number();
            if !reply.has(n) {
                if f.spec().class == isoswitch_codec::ContentClass::B {
                    reply.set_bytes(n, &f.bytes())?;
                } else {
                    reply.set(n, f.text().as_bytes())?;
                }
            }
        }
        for n in [38u8, 39] {
            match answer.field(n) {
                Some(f) => {
                    reply.set(n, f.text().as_bytes())?;
                }
                None => {
                    reply.remove(n);
                }
            }
        }
        Ok(reply)
    }

    /// Prepares the upstream message under one zone-key generation and sends it through
    /// the engine; a `77`/`A0` (keys changed) prepares it again under the new keys.
    async fn forward(&self, msg: &Message, tag: CallerTag) -> Result<Forwarded> {
        let inner = &self.inner;
        let advice = msg.mti().function() == isoswitch_codec::MessageFunction::Advice;
        let mut attempts = 0;
        loop {
            let Some((link, keys)) = self.choose_link() else {
                if attempts < inner.config.max_reprepare && self.wait_for_keys(None, 0).await {
                    attempts += 1;
                    continue;
                }
                return Ok(Forwarded::Decision(Decision::Decline(*b"91"), None, None));
            };
            let dukpt_block = match self.dukpt_block(msg, &keys).await {
                Ok(b) => b,
                Err(e) => {
                    // 99 for a block the module refused, 96 when the module failed.
                    let code = e.pin_failure_code();
                    tracing::warn!(error = %e, code = %String::from_utf8_lossy(&code), "DUKPT PIN translation failed");
                    return Ok(Forwarded::Decision(Decision::Decline(code), None, None));
                }
            };
            let up = match self.prepare(msg, &keys, link, dukpt_block) {
                Ok(up) => up,
                Err(Prepared::PinTranslation(e)) => {
                    tracing::warn!(error = %e, "PIN translation failed");
                    return Ok(Forwarded::Decision(Decision::Decline(*b"99"), None, None));
                }
                Err(Prepared::Other(e)) => return Err(e),
            };
            let mut sent = up.clone();
            for n in [35u8, 36, 45, 52, 64, 128] {
                sent.remove(n);
            }
            let outcome = if advice {
                // Store and forward: the engine repeats the advice until it is answered;
                // the terminal gets the answer if it comes in time, else a later repeat
                // of its own gets the stored one.
                let (tx, rx) = tokio::sync::oneshot::channel();
                let sw = self.clone();
                tokio::spawn(async move {
                    match sw.inner.driver.submit_tagged(up, tag).await {
                        Ok(outcome) => {
                            if let Err(outcome) = tx.send(outcome) {
                                if let Err(e) = sw.completed(tag, &outcome).await {
                                    tracing::error!(error = %e, "completing an advice");
                                }
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "advice not handed to the engine"),
                    }
                });
                match tokio::time::timeout(inner.config.advice_wait, rx).await {
                    Ok(Ok(outcome)) => outcome,
                    _ => return Ok(Forwarded::Pending),
                }
            } else {
                inner.driver.submit_tagged(up, tag).await?
            };
            match outcome {
                Outcome::Approved { response } => {
                    let auth_code = response.get(38);
                    return Ok(Forwarded::Decision(
                        Decision::Approve { auth_code },
                        Some(response),
                        Some(Box::new(sent)),
                    ));
                }
                Outcome::Declined { code, response } => {
                    return Ok(Forwarded::Decision(
                        Decision::Decline(code),
                        Some(response),
                        None,
                    ));
                }
                Outcome::Reversed { .. } | Outcome::InDoubt { .. } => {
                    return Ok(Forwarded::Decision(Decision::Decline(*b"98"), None, None));
                }
                Outcome::NotSent { reason } => {
                    let stale = reason == NotSentReason::Seal;
                    if stale
                        && attempts < inner.config.max_reprepare
                        && self.wait_for_keys(Some(link), keys.generation).await
                    {
                        attempts += 1;
                        continue;
                    }
                    return Ok(Forwarded::Decision(Decision::Decline(*b"91"), None, None));
                }
                Outcome::NotActed { code } => {
                    tracing::info!(code = %String::from_utf8_lossy(&code), generation = keys.generation, "host refused under old keys: preparing again");
                    self.link_ring(link).request_sign_on(keys.generation);
                    if attempts < inner.config.max_reprepare
                        && self.wait_for_keys(Some(link), keys.generation).await
                    {
                        attempts += 1;
                        continue;
                    }
                    return Ok(Forwarded::Decision(Decision::Decline(*b"91"), None, None));
                }
            }
        }
    }

    /// The upstream link for the next request and its current keys: the one link, or
    /// the pool's pick (`None`: no link is signed on, or none of the pool's is live).
    fn choose_link(&self) -> Option<(usize, Arc<ZoneKeys>)> {
        match &self.inner.pool {
            Some(pool) => pool.pick(),
            None => Some((0, self.inner.upstream.ring().current()?)),
        }
    }

    /// The zone keys of link `link` (the one link without a pool).
    fn link_ring(&self, link: usize) -> &Arc<crate::upstream::ZoneKeyRing> {
        match self.inner.pool.as_ref().and_then(|p| p.link(link)) {
            Some(l) => l.ring(),
            None => self.inner.upstream.ring(),
        }
    }

    /// Waits until link `link` (any link: `None`) has a generation newer than `seen`
    /// installed, or — in a pool — another link is live.
    async fn wait_for_keys(&self, link: Option<usize>, seen: u64) -> bool {
        let ring = self.link_ring(link.unwrap_or(0));
        let end = tokio::time::Instant::now() + self.inner.config.sign_on_wait;
        while tokio::time::Instant::now() < end {
            if let Some(pool) = &self.inner.pool {
                let other = (0..pool.len()).any(|i| Some(i) != link && pool.is_live(i));
                let renewed = link.is_some_and(|i| {
                    pool.is_live(i) && pool.link(i).is_some_and(|l| l.ring().generation() > seen)
                });
                if other || renewed || (link.is_none() && pool.pick().is_some()) {
                    return true;
                }
            } else if ring.generation() > seen && ring.current().is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// A DUKPT terminal's PIN block translated to `keys`' PIK by the security module
    /// (`None`: no KSN in the request, or no DUKPT configured).
    async fn dukpt_block(&self, msg: &Message, keys: &ZoneKeys) -> Result<Option<PinBlock>> {
        let Some(dukpt) = &self.inner.dukpt else {
            return Ok(None);
        };
        let Some(ksn) = dukpt.ksn_of(msg)? else {
            return Ok(None);
        };
        let format = self.inner.config.pin_format;
        let block = PinBlock::from_bytes(
            format,
            &msg.field(52).map(|f| f.bytes()).unwrap_or_default(),
        )?;
        let pan = Pan::new(&msg.get(2).unwrap_or_default())?;
        dukpt
            .translate(&block, ksn, &pan, keys, format)
            .await
            .map(Some)
    }

    /// The upstream message: mapped, PIN translated to `keys`' PIK (or `dukpt_block`,
    /// already translated), MACed under `keys`' MAK; `keys` are link `link`'s.
    fn prepare(
        &self,
        msg: &Message,
        keys: &ZoneKeys,
        link: usize,
        dukpt_block: Option<PinBlock>,
    ) -> std::result::Result<Message, Prepared> {
        let inner = &self.inner;
        let (stan, rrn) = {
            let mut c = lock(&inner.counters);
            let stan = c.next_stan().map_err(|e| Prepared::Other(e.into()))?;
            let rrn = c.next_rrn().map_err(|e| Prepared::Other(e.into()))?;
            (stan, rrn)
        };
        let stan = stan.to_string();
        let rrn = rrn.to_string();
        let ctx = MapContext {
            stan: Some(&stan),
            rrn: Some(&rrn),
            transmission: Some((inner.utc)()),
            local: Some((inner.local)()),
            acquirer: Some(&inner.config.acquirer_id),
            request: Some(msg),
        };
        // The host sees the switch's first transmission: a terminal's repeat (0221) of an
        // advice the switch never received goes up as 0220 (the engine repeats it itself).
        let mti = msg.mti();
        let mti = if mti.is_repeat() {
            isoswitch_codec::Mti::from_u16(mti.as_u16() - 1)
                .map_err(|e| Prepared::Other(e.into()))?
        } else {
            mti
        };
        let mut up = inner
            .to_host
            .apply_as(msg, mti, &ctx)
            .map_err(Prepared::Other)?;
        let block = match (dukpt_block, msg.field(52)) {
            (Some(block), _) => Some(block),
            (None, Some(f)) => {
                let pan = msg.get(2).unwrap_or_default();
                let id = TerminalId::from_message(msg).map_err(|e| Prepared::Other(e.into()))?;
                let pik = lock(&inner.terminals)
                    .working_keys(&id)
                    .map(|k| k.pik().clone())
                    .ok_or_else(|| {
                        Prepared::Other(SwitchError::NotSignedOn {
                            link: id.to_string(),
                        })
                    })?;
                Some(
                    inner
                        .security
                        .translate_pin(
                            &f.bytes(),
                            inner.config.pin_format,
                            &pan,
                            &pik,
                            inner.config.pin_format,
                            &keys.pik,
                        )
                        .map_err(Prepared::PinTranslation)?,
                )
            }
            (None, None) => None,
        };
        if let Some(block) = block {
            match &inner.pool {
                Some(pool) => pool.note_pin_block(block.as_bytes(), link, keys.generation),
                None => inner
                    .upstream
                    .ring()
                    .note_pin_block(block.as_bytes(), keys.generation),
            }
            up.set_bytes(52, block.as_bytes())
                .map_err(|e| Prepared::Other(e.into()))?;
        }
        Ok(up)
    }

    /// Completes the admissions left open by a journal's node (this node's previous run,
    /// or a node of a shared store that died) from what that journal says of their
    /// latest upstream attempt (`latest`, [`isoswitch_reversal::latest_by_tag`]; the
    /// journaled messages by transaction in `started`):
    ///
    /// | latest attempt | the admission |
    /// |---|---|
    /// | approved upstream (the terminal never heard it) | reversed upstream from the journaled original, declined `98`; an advice: approved (advices are never reversed) |
    /// | declined | declined with the host's code |
    /// | reversed and acknowledged, or ended otherwise | declined `98` |
    /// | in doubt or a reversal pending, an advice being repeated | left to the engine that holds it (its outcome completes it) |
    /// | not in the journal | never sent: `91` (`06` for an advice) — unless `unknown_is_foreign` (a shared store: another node's, in flight there) |
    ///
    /// Returns how many were completed.
    ///
    /// # Errors
    /// Store failures; a journal whose approved original is missing or does not decode.
    pub async fn finish_admissions(
        &self,
        latest: &HashMap<CallerTag, isoswitch_reversal::RecoveredTxn>,
        started: &HashMap<u64, Bytes>,
        unknown_is_foreign: bool,
    ) -> Result<usize> {
        use isoswitch_reversal::{Finish, RecoveredState};
        let open: Vec<(TxnKey, bool)> = {
            let mut book = lock(&self.inner.book);
            if unknown_is_foreign {
                book.refresh_admitted()?;
            }
            book.admitted()
                .iter()
                .map(|t| (t.key().clone(), isoswitch_reversal::is_advice(t.mti())))
                .collect()
        };
        let dialect = self.inner.upstream.profile().dialect.clone();
        let mut finished = 0usize;
        for (key, advice) in open {
            let tag = tag_of(&key);
            let attempt = latest.get(&tag);
            let state = attempt.map(|r| r.state);
            if unknown_is_foreign && state.is_none() {
                continue;
            }
            // Read afresh before acting on it: on a shared store another node may have
            // completed it meanwhile (an approval it answered must not be reversed).
            if unknown_is_foreign && !lock(&self.inner.book).still_admitted(&key)? {
                continue;
            }
            tracing::info!(%key, ?state, "finishing an admission its journal left open");
            let outcome = match state {
                Some(RecoveredState::Repeating)
                | Some(RecoveredState::Finished(Finish::Reverse { .. })) => continue,
                // An advice the host accepted: never reversed, it stands (the terminal's
                // next repeat gets the approval).
                Some(RecoveredState::Finished(Finish::Approved { .. })) if advice => {
                    Outcome::Approved {
                        response: Box::new(Message::new(&dialect, isoswitch_codec::Mti::ZERO)),
                    }
                }
                Some(RecoveredState::Finished(Finish::Approved { .. })) => {
                    let original = attempt
                        .and_then(|a| started.get(&a.txn))
                        .and_then(|b| Message::decode(&dialect, b.clone()).ok());
                    let Some(m) = original else {
                        tracing::error!(tag, "upstream journal: an approved original of an open admission is missing");
                        return Err(SwitchError::Reversal(
                            isoswitch_reversal::ReversalError::BadRecord {
                                offset: 0,
                                what: "upstream journal: the approved original of an open admission is missing or does not decode",
                            },
                        ));
                    };
                    self.inner
                        .driver
                        .reverse_message_tagged(m, ReversalReason::Recovered, tag)
                        .await?;
                    Outcome::Reversed {
                        reason: ReversalReason::Recovered,
                    }
                }
                Some(RecoveredState::Finished(Finish::Declined { code })) => Outcome::Declined {
                    code,
                    response: Box::new(Message::new(&dialect, isoswitch_codec::Mti::ZERO)),
                },
                Some(RecoveredState::Finished(_)) | Some(RecoveredState::ReversalAcked { .. }) => {
                    Outcome::Reversed {
                        reason: ReversalReason::Recovered,
                    }
                }
                None => Outcome::NotSent {
                    reason: NotSentReason::Rejected,
                },
            };
            self.completed(tag, &outcome).await?;
            finished += 1;
        }
        Ok(finished)
    }

    /// Finishes what the journal `records` of a node that died (a shared store) left:
    /// its open admissions ([`Switch::finish_admissions`]) and the approvals it had
    /// recorded that the terminal reversed but it had not yet reversed upstream
    /// ([`Switch::reverse_reversed_approvals`]). Its work still pending (in doubt,
    /// reversals, advices) is taken over separately, through the store's claims.
    ///
    /// # Errors
    /// As [`Switch::finish_admissions`].
    pub async fn finish_dead_journal(
        &self,
        records: &[isoswitch_reversal::JournalRecord],
    ) -> Result<usize> {
        let dialect = self.inner.upstream.profile().dialect.clone();
        let (states, started) = isoswitch_reversal::journal_states(records, &dialect);
        let latest = isoswitch_reversal::latest_by_tag(&states);
        let n = self.finish_admissions(&latest, &started, true).await?;
        let m = self.reverse_reversed_approvals(&latest, false).await?;
        Ok(n + m)
    }

    /// After a restart, from the engine's recovered transactions
    /// ([`isoswitch_reversal::latest_by_tag`]): approvals the engine still holds for an
    /// admission the book completed (the completion was durable, the release was not) that
    /// the terminal had reversed. The completion's record can be durable (another
    /// request's sync) before its upstream reversal is journaled; a crash in between would
    /// leave the host's approval standing while the terminal was told it is reversed. Each
    /// is reversed upstream again (the host answers a repeat idempotently), and with
    /// `release` (this node's own journal) every held approval of a completed admission
    /// is released. Returns how many were reversed.
    ///
    /// # Errors
    /// The engine refused a reversal; an upstream original that does not decode.
    pub async fn reverse_reversed_approvals(
        &self,
        latest: &HashMap<CallerTag, isoswitch_reversal::RecoveredTxn>,
        release: bool,
    ) -> Result<usize> {
        let held: std::collections::HashSet<CallerTag> = latest
            .values()
            .filter(|r| {
                matches!(
                    r.state,
                    isoswitch_reversal::RecoveredState::Finished(
                        isoswitch_reversal::Finish::Approved { .. }
                    )
                )
            })
            .map(|r| r.tag)
            .collect();
        if held.is_empty() {
            return Ok(0);
        }
        let (to_reverse, completed) = {
            let book = lock(&self.inner.book);
            let mut rev: Vec<(CallerTag, TxnKey, Vec<u8>)> = Vec::new();
            let mut done = Vec::new();
            for (key, txn) in book.store().entries() {
                let tag = tag_of(key);
                if !held.contains(&tag) {
                    continue;
                }
                let Some(o) = &txn.original else { continue };
                done.push(tag);
                if let (true, Some(up), Some(_)) = (o.approved, &o.upstream, &txn.reversal) {
                    rev.push((tag, key.clone(), up.clone()));
                }
            }
            (rev, done)
        };
        let n = to_reverse.len();
        for (tag, key, up) in to_reverse {
            let m = Message::decode(&self.inner.upstream.profile().dialect, Bytes::from(up))?;
            tracing::warn!(%key, "restart: an approval the terminal reversed is reversed upstream again");
            self.inner
                .driver
                .reverse_message_tagged(m, ReversalReason::Recovered, tag)
                .await?;
        }
        if release {
            for tag in completed {
                self.inner.driver.release(tag).await?;
            }
        }
        Ok(n)
    }

    /// On a store shared by several nodes: `pending` tells whether any node's journal
    /// holds upstream work under a tag ([`isoswitch_reversal::Store::pending_tag`]). An
    /// advice a terminal keeps repeating whose admission stays open for `after` (longer
    /// than a node's lease) while no journal holds it, checked twice a second or more
    /// apart, was admitted by a node that died before it sent it upstream: it is answered
    /// `06` (never reached the host; the terminal stops repeating it and does not count
    /// it), as a restarted node answers its own (`final_for`). Set once; later calls
    /// are ignored.
    pub fn with_shared_work(self, pending: PendingCheck, after: Duration) -> Self {
        let _ = self.inner.shared_work.set(SharedWork {
            pending,
            after,
            seen: Mutex::new(HashMap::new()),
        });
        self
    }

    /// An advice repeat whose admission is still open: no answer yet, unless it was
    /// abandoned by a dead node (see [`Switch::with_shared_work`]).
    async fn advice_in_progress(&self, msg: &Message) -> Result<Option<Bytes>> {
        const RECHECK: Duration = Duration::from_secs(1);
        let Some(w) = self.inner.shared_work.get() else {
            return Ok(None);
        };
        let key = lock(&self.inner.book).key_of(msg)?;
        let tag = tag_of(&key);
        let now = tokio::time::Instant::now();
        let (first, negative) = {
            let mut seen = lock(&w.seen);
            if seen.len() > 100_000 {
                seen.clear();
            }
            *seen.entry(tag).or_insert((now, None))
        };
        if now.duration_since(first) < w.after {
            return Ok(None);
        }
        // A blocking store call, as the book's own.
        let pending = (w.pending)(tag)?;
        if pending != Some(false) {
            lock(&w.seen).insert(tag, (first, None));
            return Ok(None);
        }
        match negative {
            Some(since) if now.duration_since(since) >= RECHECK => {}
            Some(_) => return Ok(None),
            None => {
                lock(&w.seen).insert(tag, (first, Some(now)));
                return Ok(None);
            }
        }
        lock(&w.seen).remove(&tag);
        let ticket = {
            let mut book = lock(&self.inner.book);
            book.refresh_admitted()?;
            book.admitted().into_iter().find(|t| t.key() == &key)
        };
        let Some(ticket) = ticket else {
            return Ok(None);
        };
        tracing::warn!(%key, "advice admitted by a node that died before it was sent upstream: answered 06");
        let decision = final_for(msg.mti(), Decision::Decline(*b"91"));
        let (Completion { answer, .. }, wrote) =
            self.decide(|book| book.complete(ticket, decision))?;
        self.book_durable(wrote).await?;
        let reply = self.map_back(msg, &answer, None)?;
        Ok(Some(self.seal_for_terminal(reply)?))
    }

    /// Notes that the upstream work tagged `tag` was taken over from a node whose lease
    /// ran out (a shared store): its outcome completes that node's admission, which this
    /// node's view of the store does not hold yet ([`Switch::completed`] reads it then).
    pub fn note_taken_over(&self, tag: CallerTag) {
        if tag != 0 {
            lock(&self.inner.taken_over).insert(tag);
        }
    }

    /// A transaction the engine finished on its own (an advice answered after the
    /// terminal stopped waiting, an original recovered after a restart): its admission is
    /// completed so the terminal's repeat gets the stored answer.
    ///
    /// # Errors
    /// Store failures.
    pub async fn completed(&self, tag: u64, outcome: &Outcome) -> Result<()> {
        let decision = match outcome {
            Outcome::Approved { response } => Decision::Approve {
                auth_code: response.get(38),
            },
            Outcome::Declined { code, .. } => Decision::Decline(*code),
            Outcome::Reversed { .. } | Outcome::InDoubt { .. } => Decision::Decline(*b"98"),
            Outcome::NotSent { .. } | Outcome::NotActed { .. } => Decision::Decline(*b"91"),
        };
        let taken_over = lock(&self.inner.taken_over).remove(&tag);
        let ticket = {
            let mut book = lock(&self.inner.book);
            let find =
                |b: &ReversalHandler<S>| b.admitted().into_iter().find(|t| tag_of(t.key()) == tag);
            match find(&book) {
                Some(t) => Some(t),
                // Not in this node's view: the admission of a node that died, whose
                // upstream work this node took over (a shared store).
                None if taken_over => {
                    book.refresh_admitted()?;
                    let t = find(&book);
                    if let Some(t) = &t {
                        tracing::info!(key = %t.key(), %outcome, "completing a dead node's admission from work taken over");
                    }
                    t
                }
                None => None,
            }
        };
        if let Some(ticket) = ticket {
            let decision = final_for(ticket.mti(), decision);
            let mut attempts = 0;
            loop {
                attempts += 1;
                let done = self.decide(|book| book.complete(ticket.clone(), decision.clone()));
                let done = match done {
                    Ok((Completion { action, .. }, w)) => {
                        if let Some(a) = action {
                            self.upstream_action(a).await;
                        }
                        self.book_durable(w).await
                    }
                    Err(e) => Err(e),
                };
                match done {
                    Ok(()) => break,
                    Err(e) => match record_again_after(&e, attempts) {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => return Err(e.into()),
                    },
                }
            }
        }
        self.inner.driver.release(tag).await?;
        Ok(())
    }

    /// Completes admissions from the engine's events: outcomes of transactions nobody
    /// waits for any more, and originals recovered (reversed) after a restart. Run it as a
    /// task over the driver's event channel.
    pub async fn run_events(
        self,
        mut events: tokio::sync::mpsc::UnboundedReceiver<isoswitch_reversal::EngineEvent>,
    ) {
        use isoswitch_reversal::EngineEvent;
        while let Some(ev) = events.recv().await {
            let done = match ev {
                EngineEvent::Completed { tag, outcome, .. } => self.completed(tag, &outcome).await,
                EngineEvent::Recovered { tag, reason, .. } => {
                    self.completed(tag, &Outcome::Reversed { reason }).await
                }
                EngineEvent::ReversalAcknowledged { tag, code, .. } => {
                    tracing::debug!(tag, code = %String::from_utf8_lossy(&code), "upstream reversal acknowledged");
                    Ok(())
                }
                _ => Ok(()),
            };
            if let Err(e) = done {
                tracing::error!(error = %e, "completing an admission from an engine event");
            }
        }
    }

    fn settlement(&self, terminal: &TerminalId, msg: &Message) -> Result<Bytes> {
        let batch = lock(&self.inner.terminals)
            .profile()
            .batch_of(msg)?
            .map(|b| b.get())
            .unwrap_or(0);
        let totals =
            lock(&self.inner.book).batch_totals(terminal.terminal(), terminal.merchant(), batch);
        let reply = {
            let mut s = lock(&self.inner.settlements);
            let entry = s
                .entry((*terminal, batch))
                .or_insert_with(|| HostSettlement::new(totals));
            if msg.mti().as_u16() == 500 {
                *entry = HostSettlement::new(totals);
            }
            entry.handle(msg)?
        };
        self.seal_for_terminal(reply)
    }
}

enum Prepared {
    PinTranslation(SwitchError),
    Other(SwitchError),
}

/// The one admission rule for a request that is not carried out (a draining switch or
/// host): the unsealed answer with `code` in DE 39 for authorization and financial
/// requests and network management; `None` for the rest, which their sender repeats
/// until they are taken: advices, reversals (any `0410` acknowledges a reversal, so a
/// refusal would lose it), settlement and batch upload, responses. The caller seals it
/// under its peer's MAK ([`Switch::refusal`] for a terminal).
pub fn refusal_message(request: &Message, code: &str) -> Option<Message> {
    use isoswitch_codec::MessageFunction;
    let mti = request.mti();
    let answerable = matches!(
        mti.class(),
        MessageClass::Authorization | MessageClass::Financial | MessageClass::NetworkManagement
    );
    if !answerable || mti.function() != MessageFunction::Request {
        return None;
    }
    let mut reply = Message::response_to(request).ok()?;
    for n in [41u8, 42] {
        if let Some(v) = request.get(n) {
            reply.set(n, v.as_bytes()).ok()?;
        }
    }
    reply.set(39, code).ok()?;
    Some(reply)
}

/// The session profile a switch's terminals use, and the one of its host, by name.
pub fn profiles(terminals: &str, host: &str) -> Option<(SessionProfile, SessionProfile)> {
    Some((
        SessionProfile::builtin(terminals)?,
        SessionProfile::builtin(host)?,
    ))
}

/// Positions of the book's store before and after one decision ([`Switch::book_durable`]).
#[derive(Debug, Clone, Copy)]
struct Wrote {
    since: u64,
    upto: u64,
}

impl Wrote {
    /// Everything written up to `upto` (no decision of the caller's own to ask about).
    fn at(upto: u64) -> Wrote {
        Wrote { since: upto, upto }
    }
}

/// Requests answered `96` when the store cannot be reached: authorization and financial
/// requests, never a reversal or an advice (any answer would end it at the terminal).
fn answered_96_when_unreachable(msg: &Message) -> bool {
    matches!(
        msg.mti().class(),
        MessageClass::Authorization | MessageClass::Financial
    ) && !isoswitch_reversal::is_advice(msg.mti())
}

/// Whether a completion the book refused is recorded again, and after how long: a
/// decision another node made on the key meanwhile (decided again at once on what is
/// stored now, a few times), or a store that cannot be reached now (a database
/// restarting: waited for — the upstream host has decided, and that must reach the book,
/// or an approval would stand upstream with nobody to reverse it; the terminal's
/// reversal meanwhile is recorded once the store is back, and the completion then
/// reverses the approval upstream). `None`: any other failure.
fn record_again_after(e: &isoswitch_reversal::ReversalError, attempts: u32) -> Option<Duration> {
    match e {
        isoswitch_reversal::ReversalError::DecidedElsewhere { .. } if attempts < 4 => {
            Some(Duration::ZERO)
        }
        e if e.is_transient() => Some(Duration::from_millis(200)),
        _ => None,
    }
}

/// An advice is repeated by its terminal until it gets an answer outside its retry codes
/// (91, 96): one the switch could not forward at all is answered `06` (error), so the
/// terminal stops repeating it and does not count it (the host never saw it), instead of
/// repeating forever against a stored `91`.
fn final_for(mti: isoswitch_codec::Mti, decision: Decision) -> Decision {
    match decision {
        Decision::Decline(c)
            if isoswitch_reversal::is_advice(mti) && matches!(&c, b"91" | b"96" | b"98") =>
        {
            Decision::Decline(*b"06")
        }
        d => d,
    }
}

/// The engine's caller tag of a terminal transaction: a 64-bit FNV-1a hash of its key
/// (DE 42, DE 41, batch, STAN, type), so the tag needs no record of its own and a restarted
/// switch finds the admission an upstream transaction serves. Two keys that collide would
/// share a tag; at 2^64 values that is not a practical concern for the keys one switch sees
/// within the engine's window.
pub fn tag_of(key: &TxnKey) -> CallerTag {
    isoswitch_reversal::profile::fnv1a_fields(&[
        key.merchant.as_bytes(),
        key.terminal.as_bytes(),
        &key.batch.to_be_bytes(),
        &key.stan.to_be_bytes(),
    ])
}
