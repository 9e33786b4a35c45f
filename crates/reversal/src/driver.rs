//! [`ReversalDriver`]: the tokio driver of a [`ReversalEngine`].
//!
//! One task owns the engine and shuttles between it and the world: records go to a
//! [`GroupCommit`] journal thread (everything produced while one fsync runs shares the
//! next one), transmissions go to a [`Transport`] (an `isoswitch_net::Client`), results
//! and the timer come back as `handle_*` calls. Each turn of the loop takes up to
//! [`DriverConfig::max_batch`] commands (and as many results) at once, so their records
//! go to the journal as one group. Late responses from the client's unmatched handler
//! reach the engine through a [`LateResponses`] handler.
//!
//! ```no_run
//! # async fn demo(sale: isoswitch_codec::Message) -> Result<(), Box<dyn std::error::Error>> {
//! use isoswitch_net::{Client, ClientConfig, DialectCorrelator, Framing, TcpConnector};
//! use isoswitch_reversal::{
//!     EngineConfig, FileJournal, Journal, LateResponses, NoMac, ReversalDriver,
//!     ReversalEngine, ReversalProfile,
//! };
//! let profile = ReversalProfile::cup_pos()?;
//! let late = LateResponses::new();
//! let client = Client::builder(ClientConfig::new(Framing::Len2), DialectCorrelator::new(profile.dialect.clone()))
//!     .unmatched(late.clone())
//!     .spawn(TcpConnector::new("127.0.0.1:5000"))?;
//! let mut journal = FileJournal::open("/var/lib/pos/reversal.journal")?;
//! let security = NoMac::new(profile.dialect.clone());
//! let now = std::time::Instant::now();
//! let engine = ReversalEngine::recover(now, EngineConfig::default(), profile, security, 1, journal.load()?)?;
//! let driver = ReversalDriver::builder(engine, journal, client)
//!     .late(late)
//!     .on_sign_on(|ev| tracing::warn!(?ev, "sign on again"))
//!     .spawn();
//! let outcome = driver.submit(sale).await?;
//! println!("{}", outcome.display_text());
//! # Ok(()) }
//! ```

use crate::engine::TransmitKind;
use crate::engine::{
    CallerTag, EngineEvent, EngineStats, Outcome, ReversalEngine, SendFailure, TransmitId, TxnId,
};
use crate::error::{Result, ReversalError};
use crate::journal::{Finish, GroupCommit, Journal, JournalRecord};
use crate::metrics::{Attempt, DriverMetrics};
use crate::profile::ReversalReason;
use crate::security::Security;
use crate::settlement::{
    BatchTotals, Settlement, SettlementConfig, SettlementOutcome, SettlementState, UploadEntry,
};
use bytes::Bytes;
use isoswitch_codec::Message;
use isoswitch_net::{Client, RequestError, Unmatched, UnmatchedHandler, UnmatchedKind};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Where transmissions go: `isoswitch_net::Client`, or a test double.
pub trait Transport: Send + Sync + 'static {
    /// Sends `msg` and waits at most `timeout` for its response.
    fn request(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl Future<Output = std::result::Result<Bytes, RequestError>> + Send;

    /// As [`Transport::request`], also handing over the response decoded when the
    /// transport decoded it anyway (a net `Client`'s correlator does), so that the
    /// engine verifies it without decoding it again ([`Security::verify_decoded`]).
    /// The message must be the one decoded from the returned bytes (unchanged), in the
    /// engine's dialect; otherwise it is decoded again from its own bytes. The default
    /// decodes nothing.
    fn request_decoded(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl Future<Output = std::result::Result<(Bytes, Option<Message>), RequestError>> + Send
    {
        let sent = self.request(msg, timeout);
        async move { sent.await.map(|b| (b, None)) }
    }

    /// Connections established so far: when it grows, the driver tells the engine a new
    /// connection is up (deferred reversals get fresh tries). `0` when unknown.
    fn connections(&self) -> u64 {
        0
    }
}

impl Transport for Client {
    fn request(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl Future<Output = std::result::Result<Bytes, RequestError>> + Send {
        Client::request(self, msg, timeout)
    }

    fn request_decoded(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl Future<Output = std::result::Result<(Bytes, Option<Message>), RequestError>> + Send
    {
        let sent = Client::request_decoded(self, isoswitch_net::Frame::new(msg), timeout);
        async move { sent.await.map(|r| (r.frame.payload, r.message)) }
    }

    fn connections(&self) -> u64 {
        self.metrics().connects
    }
}

impl<T: Transport> Transport for Arc<T> {
    fn request(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl Future<Output = std::result::Result<Bytes, RequestError>> + Send {
        (**self).request(msg, timeout)
    }

    fn request_decoded(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl Future<Output = std::result::Result<(Bytes, Option<Message>), RequestError>> + Send
    {
        (**self).request_decoded(msg, timeout)
    }

    fn connections(&self) -> u64 {
        (**self).connections()
    }
}

/// Configuration of a [`ReversalDriver`] (see [`DriverBuilder`]).
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Compact the journal after this many records.
    pub compact_every: u64,
    /// Commands queued before `submit` waits.
    pub queue: usize,
    /// Commands (and, separately, results) handled per turn of the driver loop: their
    /// records share one journal group (one fsync), their transmissions go out together.
    /// `1` handles one command per turn (the driver before batching).
    pub max_batch: usize,
    /// Keep every transaction's journal records through compactions until its caller
    /// calls [`ReversalDriver::release`] with its tag (see `Held`). For a caller that
    /// records the outcome in a store of its own after the engine finished (a switch
    /// completing its terminal's admission): until that record is durable, the engine's
    /// journal must still say what reached the host, or a crash in between would leave
    /// an approval upstream that nobody reverses.
    pub hold_until_released: bool,
}

/// The journal records of transactions held for their caller
/// ([`DriverConfig::hold_until_released`]): appended to every compaction's snapshot when
/// the engine itself no longer keeps them (an approved original it removed once
/// finished).
#[derive(Debug, Default)]
struct Held {
    records: HashMap<TxnId, (JournalRecord, Option<JournalRecord>)>,
    by_tag: HashMap<CallerTag, Vec<TxnId>>,
}

impl Held {
    /// Notes what a journal group holds.
    fn note(&mut self, records: &[JournalRecord]) {
        for r in records {
            match r {
                JournalRecord::Started { id, tag, .. } => {
                    self.records.insert(*id, (r.clone(), None));
                    self.by_tag.entry(*tag).or_default().push(*id);
                }
                JournalRecord::Finished { id, .. } => {
                    if let Some(h) = self.records.get_mut(id) {
                        h.1 = Some(r.clone());
                    }
                }
                _ => {}
            }
        }
    }

    fn release(&mut self, tag: CallerTag) {
        for id in self.by_tag.remove(&tag).unwrap_or_default() {
            self.records.remove(&id);
        }
    }

    /// `live` (an engine snapshot) with the held transactions it lacks.
    fn complete(&self, mut live: Vec<JournalRecord>) -> Vec<JournalRecord> {
        let present: std::collections::HashSet<u64> = live
            .iter()
            .filter_map(|r| match r {
                JournalRecord::Started { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        for (id, (started, finished)) in &self.records {
            if !present.contains(id) {
                // An approved transaction the engine no longer keeps is in the snapshot's
                // `unkept` totals already; replaying its records adds it again, so it is
                // taken out of them here.
                if let (
                    JournalRecord::Started { info, .. },
                    Some(JournalRecord::Finished {
                        finish: Finish::Approved { .. },
                        ..
                    }),
                ) = (started, finished)
                {
                    if let Some(JournalRecord::Counters { unkept, .. }) = live.first_mut() {
                        unkept.sub(info);
                    }
                }
                live.push(started.clone());
                if let Some(f) = finished {
                    live.push(f.clone());
                }
            }
        }
        live
    }
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            compact_every: 100_000,
            queue: 4096,
            max_batch: 512,
            hold_until_released: false,
        }
    }
}

/// The client's unmatched handler that forwards late responses to the driver: install a
/// clone with `ClientBuilder::unmatched` and give one to [`DriverBuilder::late`], which
/// creates the channel behind it. Until a driver is attached, late responses are given back
/// to the client (logged and counted there).
#[derive(Debug, Clone, Default)]
pub struct LateResponses(Arc<OnceLock<mpsc::Sender<Bytes>>>);

impl LateResponses {
    /// A handler not yet attached to a driver.
    pub fn new() -> Self {
        Self::default()
    }
}

impl UnmatchedHandler for LateResponses {
    fn on_unmatched(&self, msg: Unmatched) -> std::result::Result<(), Unmatched> {
        if msg.kind != UnmatchedKind::Late {
            return Err(msg);
        }
        let Some(tx) = self.0.get() else {
            return Err(msg);
        };
        match tx.try_send(msg.frame.payload.clone()) {
            Ok(()) => Ok(()),
            Err(_) => Err(msg),
        }
    }
}

/// A snapshot of the engine behind a driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriverStatus {
    /// Engine counters.
    pub stats: EngineStats,
    /// Open batch totals.
    pub totals: BatchTotals,
    /// Reversals not yet acknowledged.
    pub pending_reversals: usize,
    /// Advices not yet answered.
    pub pending_advices: usize,
    /// Transactions sent and not yet decided (approved, declined or in doubt).
    pub in_flight: usize,
    /// Current batch.
    pub batch: u32,
    /// Fsyncs done by the journal thread.
    pub fsyncs: u64,
}

type Waiter = oneshot::Sender<Result<Outcome>>;

enum Command {
    Submit(Box<Message>, CallerTag, Option<Waiter>),
    Reverse(TxnId, ReversalReason, oneshot::Sender<Result<()>>),
    ReverseMessage(
        Box<Message>,
        ReversalReason,
        CallerTag,
        oneshot::Sender<Result<TxnId>>,
    ),
    Connected,
    SignedOn,
    Status(oneshot::Sender<DriverStatus>),
    SettlementData(oneshot::Sender<Result<SettlementData>>),
    CloseBatch(u32, oneshot::Sender<Result<()>>),
    Release(CallerTag),
}

type SettlementData = (BatchTotals, Vec<UploadEntry>, u32, u32);

// A response's decoded message travels in the channel by value: boxing it would cost an
// allocation per response to save a copy.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Journaled(u64, std::result::Result<(), Arc<ReversalError>>),
    Response(
        TransmitId,
        bool,
        std::result::Result<(Bytes, Option<Message>), RequestError>,
    ),
}

/// Where a driver's journal groups go.
enum JournalSource<J> {
    /// Its own journal, behind a [`GroupCommit`] thread of its own.
    Own(J),
    /// A group commit thread shared with other drivers (a member of a
    /// [`SharedJournal`](crate::SharedJournal)).
    Group(GroupCommit),
}

/// The hook [`DriverBuilder::on_sign_on`] installs.
type SignOnHook = Arc<dyn Fn(&EngineEvent) + Send + Sync>;

/// Builds a [`ReversalDriver`]: `ReversalDriver::builder(engine, journal, transport)`,
/// then optional [`late`](DriverBuilder::late), [`events`](DriverBuilder::events),
/// [`on_sign_on`](DriverBuilder::on_sign_on), [`config`](DriverBuilder::config), and
/// [`spawn`](DriverBuilder::spawn).
pub struct DriverBuilder<S: Security, J: Journal, T: Transport> {
    engine: ReversalEngine<S>,
    journal: JournalSource<J>,
    transport: T,
    late: Option<LateResponses>,
    events: Option<mpsc::UnboundedSender<EngineEvent>>,
    sign_on: Option<SignOnHook>,
    config: DriverConfig,
    link: String,
}

impl<S: Security, J: Journal, T: Transport> std::fmt::Debug for DriverBuilder<S, J, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverBuilder")
            .field("engine", &self.engine)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: Security, J: Journal, T: Transport> DriverBuilder<S, J, T> {
    fn over(engine: ReversalEngine<S>, journal: JournalSource<J>, transport: T) -> Self {
        DriverBuilder {
            engine,
            journal,
            transport,
            late: None,
            events: None,
            sign_on: None,
            config: DriverConfig::default(),
            link: "upstream".to_owned(),
        }
    }

    /// Late responses from the client's unmatched handler reach the engine (a late `0410`
    /// still acknowledges a reversal). The driver creates the channel behind `late`.
    pub fn late(mut self, late: LateResponses) -> Self {
        self.late = Some(late);
        self
    }

    /// Every [`EngineEvent`] except [`EngineEvent::Completed`] of a transaction submitted
    /// with a waiting call (whose outcome goes to that call) also goes here: acknowledged
    /// reversals, stored advices, sign-on requests, and the outcomes of transactions
    /// submitted with [`ReversalDriver::enqueue`].
    pub fn events(mut self, events: mpsc::UnboundedSender<EngineEvent>) -> Self {
        self.events = Some(events);
        self
    }

    /// Called (on the driver task: do not block; hand over to a task) with the
    /// [`EngineEvent::SignOnRequired`] event when the security hook asks to sign on again.
    /// After signing on, call [`ReversalDriver::signed_on`].
    pub fn on_sign_on(mut self, hook: impl Fn(&EngineEvent) + Send + Sync + 'static) -> Self {
        self.sign_on = Some(Arc::new(hook));
        self
    }

    /// The `link` label of the driver's metrics and the `journal` label of its journal's
    /// (see [`crate::metrics`]); default `"upstream"`.
    pub fn link(mut self, name: impl Into<String>) -> Self {
        self.link = name.into();
        self
    }

    /// Queue size, batch size and compaction threshold.
    pub fn config(mut self, config: DriverConfig) -> Self {
        self.config = config;
        self
    }

    /// Starts the journal thread ([`GroupCommit`]) and the driver task on the current
    /// tokio runtime.
    pub fn spawn(self) -> ReversalDriver {
        let (tx, rx) = mpsc::channel(self.config.queue.max(1));
        let group = match self.journal {
            JournalSource::Own(journal) => GroupCommit::spawn_named(journal, &self.link),
            JournalSource::Group(group) => group,
        };
        let late = self.late.map(|l| {
            let (ltx, lrx) = mpsc::channel(1024);
            if l.0.set(ltx).is_err() {
                tracing::warn!("late-response handler already attached to another driver");
            }
            lrx
        });
        let shell = Shell {
            group,
            transport: Arc::new(self.transport),
            events: self.events,
            sign_on: self.sign_on,
            config: self.config,
            metrics: DriverMetrics::new(&self.link),
        };
        tokio::spawn(run(self.engine, shell, rx, late));
        ReversalDriver { tx }
    }
}

/// Handle to a running driver; clones share it. The task ends when every handle is
/// dropped (after the work in flight is abandoned: the journal has it).
#[derive(Debug, Clone)]
pub struct ReversalDriver {
    tx: mpsc::Sender<Command>,
}

impl ReversalDriver {
    /// A builder over an engine (new, or recovered from `journal`'s records with
    /// [`ReversalEngine::recover`]), its journal and the transport.
    pub fn builder<S: Security, J: Journal, T: Transport>(
        engine: ReversalEngine<S>,
        journal: J,
        transport: T,
    ) -> DriverBuilder<S, J, T> {
        DriverBuilder::over(engine, JournalSource::Own(journal), transport)
    }

    /// As [`ReversalDriver::builder`], journaling through `group`, a [`GroupCommit`]
    /// thread shared with other drivers: a member handle of a
    /// [`SharedJournal`](crate::SharedJournal) ([`GroupCommit::member`]), the engine
    /// recovered from that member's records
    /// ([`SharedJournal::take`](crate::SharedJournal::take)).
    pub fn builder_on<S: Security, T: Transport>(
        engine: ReversalEngine<S>,
        group: GroupCommit,
        transport: T,
    ) -> DriverBuilder<S, Box<dyn Journal>, T> {
        DriverBuilder::over(engine, JournalSource::Group(group), transport)
    }

    async fn send(&self, cmd: Command) -> Result<()> {
        self.tx
            .send(cmd)
            .await
            .map_err(|_| ReversalError::DriverStopped)
    }

    /// Submits a financial request and waits for its outcome (approved, declined,
    /// reversed, not sent, not acted); untagged.
    ///
    /// # Errors
    /// Submission errors of the engine, journal failures, [`ReversalError::DriverStopped`].
    pub async fn submit(&self, request: Message) -> Result<Outcome> {
        self.submit_tagged(request, 0).await
    }

    /// Submits a request or advice with the caller's tag (see
    /// [`ReversalEngine::submit_tagged`]) and waits for its outcome (for an advice: once
    /// answered, however many repeats that takes).
    ///
    /// # Errors
    /// As [`ReversalDriver::submit`].
    pub async fn submit_tagged(&self, request: Message, tag: CallerTag) -> Result<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Submit(Box::new(request), tag, Some(tx)))
            .await?;
        rx.await.map_err(|_| ReversalError::DriverStopped)?
    }

    /// Submits a request or advice with the caller's tag without waiting: its
    /// [`EngineEvent::Completed`] (with the tag) goes to [`DriverBuilder::events`]; a
    /// submission the engine refuses is logged. No per-call channel: the path for a
    /// switch forwarding at load.
    ///
    /// # Errors
    /// [`ReversalError::DriverStopped`].
    pub async fn enqueue(&self, request: Message, tag: CallerTag) -> Result<()> {
        self.send(Command::Submit(Box::new(request), tag, None))
            .await
    }

    /// The caller has made its own record of the transactions tagged `tag` durable: their
    /// journal records need no longer outlive the engine's interest in them (see
    /// [`DriverConfig::hold_until_released`]; a no-op without it).
    ///
    /// # Errors
    /// [`ReversalError::DriverStopped`].
    pub async fn release(&self, tag: CallerTag) -> Result<()> {
        self.send(Command::Release(tag)).await
    }

    /// Reverses an approved transaction the terminal could not complete.
    ///
    /// # Errors
    /// As [`ReversalEngine::reverse`].
    pub async fn reverse(&self, txn: TxnId, reason: ReversalReason) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Reverse(txn, reason, tx)).await?;
        rx.await.map_err(|_| ReversalError::DriverStopped)?
    }

    /// Reverses a transaction the engine does not hold (see
    /// [`ReversalEngine::reverse_message`]); returns once it is queued.
    ///
    /// # Errors
    /// As [`ReversalEngine::reverse_message`], [`ReversalError::DriverStopped`].
    pub async fn reverse_message(
        &self,
        original: Message,
        reason: ReversalReason,
    ) -> Result<TxnId> {
        self.reverse_message_tagged(original, reason, 0).await
    }

    /// [`ReversalDriver::reverse_message`] with the caller's tag. Returns once the
    /// reversal is durable in the journal: a caller may then record (and answer) that it
    /// is under way, and a crash cannot lose it.
    ///
    /// # Errors
    /// As [`ReversalDriver::reverse_message`]; a journal failure.
    pub async fn reverse_message_tagged(
        &self,
        original: Message,
        reason: ReversalReason,
        tag: CallerTag,
    ) -> Result<TxnId> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::ReverseMessage(Box::new(original), reason, tag, tx))
            .await?;
        rx.await.map_err(|_| ReversalError::DriverStopped)?
    }

    /// Tells the engine a new connection is up (deferred reversals are retried).
    ///
    /// # Errors
    /// [`ReversalError::DriverStopped`].
    pub async fn connected(&self) -> Result<()> {
        self.send(Command::Connected).await
    }

    /// Tells the engine its owner signed on again after
    /// [`EngineEvent::SignOnRequired`] (see [`ReversalEngine::handle_signed_on`]).
    ///
    /// # Errors
    /// [`ReversalError::DriverStopped`].
    pub async fn signed_on(&self) -> Result<()> {
        self.send(Command::SignedOn).await
    }

    /// Counters, totals and pending reversals.
    ///
    /// # Errors
    /// [`ReversalError::DriverStopped`].
    pub async fn status(&self) -> Result<DriverStatus> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Status(tx)).await?;
        rx.await.map_err(|_| ReversalError::DriverStopped)
    }
}

impl ReversalDriver {
    /// Settles the open batch over `transport` (`cup-pos` 0500 / 0320 upload / 0500 /
    /// 0820, see [`Settlement`]) and, when it completes, closes the batch in the journal.
    /// Fails while reversals are pending or transactions are in flight.
    ///
    /// # Errors
    /// [`ReversalError::Settlement`] (pending reversals, no answer after the retries),
    /// [`ReversalError::SettlementRefused`] (answered with a DE 39 other than `00`; after
    /// `77`, sign on and settle again), codec errors, [`ReversalError::DriverStopped`].
    pub async fn settle<T: Transport>(
        &self,
        transport: &T,
        dialect: isoswitch_codec::Dialect,
        config: SettlementConfig,
    ) -> Result<SettlementOutcome> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::SettlementData(tx))
            .await
            .map_err(|_| ReversalError::DriverStopped)?;
        let (totals, entries, batch, stan) =
            rx.await.map_err(|_| ReversalError::DriverStopped)??;
        let timeout = config.timeout;
        let mut st = Settlement::new(config, dialect, batch, totals, entries, stan)?;
        loop {
            match st.state() {
                SettlementState::Done => break,
                SettlementState::Failed => {
                    return Err(match st.refused() {
                        Some(code) => ReversalError::SettlementRefused { code },
                        None => ReversalError::Settlement {
                            why: "no answer from the host",
                        },
                    })
                }
                _ => {}
            }
            let t = now();
            let Some(bytes) = st.poll_transmit(t) else {
                if st.poll_timeout().is_none() {
                    // Nothing to send and nothing awaited: never spin.
                    return Err(ReversalError::Settlement {
                        why: "settlement stalled",
                    });
                }
                st.handle_timeout(t + timeout);
                continue;
            };
            match transport.request(bytes, timeout).await {
                Ok(resp) => {
                    if let Err(e) = st.handle_response(now(), resp) {
                        tracing::warn!(error = %e, "settlement answer not accepted");
                        st.handle_timeout(now() + timeout);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "settlement message failed");
                    if matches!(e, RequestError::Rejected(_)) {
                        // Not sent (link down): the try lasts its whole timeout, so a
                        // short outage does not use up every try at once.
                        tokio::time::sleep_until((t + timeout).into()).await;
                    }
                    st.handle_timeout(now() + timeout);
                }
            }
        }
        let outcome = st.outcome().ok_or(ReversalError::Settlement {
            why: "settlement did not complete",
        })?;
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::CloseBatch(outcome.next_batch, tx))
            .await
            .map_err(|_| ReversalError::DriverStopped)?;
        rx.await.map_err(|_| ReversalError::DriverStopped)??;
        Ok(outcome)
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// What the driver task owns besides the engine.
struct Shell<T: Transport> {
    group: GroupCommit,
    transport: Arc<T>,
    events: Option<mpsc::UnboundedSender<EngineEvent>>,
    sign_on: Option<SignOnHook>,
    config: DriverConfig,
    metrics: DriverMetrics,
}

async fn run<S: Security, T: Transport>(
    mut engine: ReversalEngine<S>,
    shell: Shell<T>,
    mut rx: mpsc::Receiver<Command>,
    mut late: Option<mpsc::Receiver<Bytes>>,
) {
    let Shell {
        group,
        transport,
        events,
        sign_on,
        config,
        mut metrics,
    } = shell;
    let mut ages = tokio::time::interval(Duration::from_secs(1));
    ages.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_batch = config.max_batch.max(1);
    let (itx, mut irx) = mpsc::unbounded_channel::<Inner>();
    let mut waiters: HashMap<TxnId, Waiter> = HashMap::new();
    let mut since_compaction = 0u64;
    let mut commands_open = true;
    let mut connections = transport.connections();
    let mut cmds: Vec<Command> = Vec::with_capacity(max_batch);
    let mut inner: Vec<Inner> = Vec::with_capacity(max_batch);
    let mut records: Vec<JournalRecord> = Vec::new();
    let mut held = config.hold_until_released.then(Held::default);
    // Callers waiting until what they asked for is in the journal: first until the next
    // group is cut (`after_drain`), then until that group is durable (`journal_waits`).
    type Durable = (TxnId, oneshot::Sender<Result<TxnId>>);
    let mut after_drain: Vec<Durable> = Vec::new();
    let mut journal_waits: Vec<(u64, Durable)> = Vec::new();
    let mut durable_seq = 0u64;
    loop {
        // Journal: everything produced since the last turn goes in one group.
        records.extend(std::iter::from_fn(|| engine.poll_journal()));
        if !after_drain.is_empty() {
            let seq = engine.journal_seq();
            for (id, reply) in after_drain.drain(..) {
                if seq <= durable_seq {
                    // Nothing new to write for it (already journaled).
                    let _ = reply.send(Ok(id));
                } else {
                    journal_waits.push((seq, (id, reply)));
                }
            }
        }
        if !records.is_empty() {
            if let Some(h) = &mut held {
                h.note(&records);
            }
            since_compaction += records.len() as u64;
            let seq = engine.journal_seq();
            let batch = std::mem::take(&mut records);
            // Queued now, in order: a later group never reaches the journal first.
            let appended = group.append(batch);
            let itx = itx.clone();
            tokio::spawn(async move {
                let r = appended.await;
                let _ = itx.send(Inner::Journaled(seq, r));
            });
            if since_compaction >= config.compact_every {
                since_compaction = 0;
                let live = engine.snapshot();
                let live = match &held {
                    Some(h) => h.complete(live),
                    None => live,
                };
                let compacted = group.compact(live);
                tokio::spawn(async move {
                    if let Err(e) = compacted.await {
                        tracing::error!(error = %e, "journal compaction failed (the old journal stays)");
                    }
                });
            }
        }
        while let Some(t) = engine.poll_transmit() {
            let tr = transport.clone();
            let itx = itx.clone();
            let reversal = matches!(t.kind, TransmitKind::Reversal { .. });
            tokio::spawn(async move {
                let r = tr.request_decoded(t.bytes, t.timeout).await;
                let _ = itx.send(Inner::Response(t.id, reversal, r));
            });
        }
        while let Some(ev) = engine.poll_event() {
            if let EngineEvent::Completed { txn, .. } = &ev {
                if let Some(w) = waiters.remove(txn) {
                    if let EngineEvent::Completed { outcome, .. } = ev {
                        let _ = w.send(Ok(outcome));
                    }
                    continue;
                }
            }
            if let EngineEvent::ReversalDeferred { .. } = &ev {
                metrics.deferred();
            }
            match &ev {
                EngineEvent::Completed { .. } => tracing::debug!(event = %ev, "reversal engine"),
                EngineEvent::SignOnRequired { .. } => {
                    tracing::warn!(event = %ev, "reversal engine");
                    if let Some(h) = &sign_on {
                        h(&ev);
                    }
                }
                _ => tracing::info!(event = %ev, "reversal engine"),
            }
            if let Some(tx) = &events {
                let _ = tx.send(ev);
            }
        }
        metrics.turn(
            engine.pending_reversals(),
            engine.pending_advices(),
            engine.stats(),
        );
        let c = transport.connections();
        if c != connections {
            connections = c;
            engine.handle_connected(now());
            continue;
        }
        if !commands_open
            && waiters.is_empty()
            && engine.pending_reversals() == 0
            && engine.pending_advices() == 0
            && engine.in_flight() == 0
        {
            return;
        }
        let deadline = engine.poll_timeout().map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let late_next = async {
            match late.as_mut() {
                Some(l) => l.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            n = rx.recv_many(&mut cmds, max_batch), if commands_open => {
                if n == 0 {
                    commands_open = false;
                }
                let t = now();
                for cmd in cmds.drain(..) {
                    match cmd {
                        Command::Release(tag) => {
                            if let Some(h) = &mut held {
                                h.release(tag);
                            }
                        }
                        Command::ReverseMessage(msg, reason, tag, reply) => {
                            match engine.reverse_message_tagged(t, *msg, reason, tag) {
                                Ok(id) => after_drain.push((id, reply)),
                                Err(e) => {
                                    let _ = reply.send(Err(e));
                                }
                            }
                        }
                        cmd => command(&mut engine, &group, &mut waiters, t, cmd),
                    }
                }
            }
            _ = irx.recv_many(&mut inner, max_batch) => {
                let t = now();
                for i in inner.drain(..) {
                    match i {
                        Inner::Journaled(seq, Ok(())) => {
                            engine.handle_journaled(t, seq);
                            durable_seq = durable_seq.max(seq);
                            let (done, waiting): (Vec<_>, Vec<_>) =
                                journal_waits.drain(..).partition(|(s, _)| *s <= seq);
                            journal_waits = waiting;
                            for (_, (id, reply)) in done {
                                let _ = reply.send(Ok(id));
                            }
                        }
                        Inner::Journaled(_, Err(e)) => {
                            // Not durable: nothing more may be sent. Fail every caller.
                            tracing::error!(error = %e, "journal append failed: the driver stops sending");
                            for (_, (_, reply)) in journal_waits.drain(..) {
                                let _ = reply.send(Err(ReversalError::Io {
                                    op: "journal",
                                    path: std::path::PathBuf::new(),
                                    source: std::io::Error::other(e.to_string()),
                                }));
                            }
                            for (_, w) in waiters.drain() {
                                let _ = w.send(Err(ReversalError::Io {
                                    op: "journal",
                                    path: std::path::PathBuf::new(),
                                    source: std::io::Error::other(e.to_string()),
                                }));
                            }
                            return;
                        }
                        Inner::Response(id, reversal, Ok((bytes, decoded))) => {
                            if reversal {
                                metrics.attempt(Attempt::Answered);
                            }
                            engine.handle_response_decoded(t, id, bytes, decoded)
                        }
                        Inner::Response(id, reversal, Err(e)) => {
                            if reversal {
                                metrics.attempt(match e {
                                    RequestError::Rejected(_) => Attempt::NotSent,
                                    RequestError::Timeout => Attempt::Timeout,
                                    RequestError::ConnectionLost => Attempt::ConnectionLost,
                                });
                            }
                            let f = match e {
                                RequestError::Rejected(_) => SendFailure::NotSent,
                                RequestError::Timeout => SendFailure::Timeout,
                                RequestError::ConnectionLost => SendFailure::ConnectionLost,
                            };
                            engine.handle_send_failed(t, id, f);
                        }
                    }
                }
            }
            Some(bytes) = late_next => engine.handle_late(now(), bytes),
            () = sleep => engine.handle_timeout(now()),
            _ = ages.tick() => metrics.ages(now(), engine.pending_ids()),
        }
    }
}

fn command<S: Security>(
    engine: &mut ReversalEngine<S>,
    group: &GroupCommit,
    waiters: &mut HashMap<TxnId, Waiter>,
    now: std::time::Instant,
    cmd: Command,
) {
    match cmd {
        Command::Submit(msg, tag, reply) => match (engine.submit_boxed(now, msg, tag), reply) {
            (Ok(id), Some(reply)) => {
                waiters.insert(id, reply);
            }
            (Ok(_), None) => {}
            (Err(e), Some(reply)) => {
                let _ = reply.send(Err(e));
            }
            (Err(e), None) => tracing::warn!(tag, error = %e, "submission refused"),
        },
        Command::Reverse(txn, reason, reply) => {
            let _ = reply.send(engine.reverse(now, txn, reason));
        }
        // Handled by the loop (it answers once the reversal is journaled).
        Command::ReverseMessage(msg, reason, tag, reply) => {
            let _ = reply.send(engine.reverse_message_tagged(now, *msg, reason, tag));
        }
        Command::Connected => engine.handle_connected(now),
        Command::SignedOn => engine.handle_signed_on(now),
        Command::SettlementData(reply) => {
            let r = engine.settlement_data().map(|(totals, entries)| {
                let n = entries.len().div_ceil(8) as u32 + 5;
                (totals, entries, engine.batch(), engine.reserve_stans(n))
            });
            let _ = reply.send(r);
        }
        Command::CloseBatch(next, reply) => {
            let _ = reply.send(engine.close_batch(next));
        }
        // Handled by the loop (it owns the held records).
        Command::Release(_) => {}
        Command::Status(reply) => {
            let _ = reply.send(DriverStatus {
                stats: engine.stats(),
                totals: engine.totals(),
                pending_reversals: engine.pending_reversals(),
                pending_advices: engine.pending_advices(),
                in_flight: engine.in_flight(),
                batch: engine.batch(),
                fsyncs: group.fsyncs(),
            });
        }
    }
}

#[cfg(test)]
mod held_tests {
    use super::*;
    use crate::profile::{TxnInfo, TxnKind};
    use crate::settlement::BatchTotals;
    use rust_decimal::Decimal;

    fn info() -> TxnInfo {
        TxnInfo {
            kind: TxnKind::Debit,
            foreign: false,
            txn_type: 0,
            amount: Decimal::new(817_748, 2),
            pan: "6222020000000001".into(),
        }
    }

    fn started(id: u64, tag: u64) -> JournalRecord {
        JournalRecord::Started {
            id,
            tag,
            batch: 1,
            stan: id as u32,
            info: info(),
            message: Bytes::from_static(b"\x02\x00abc"),
        }
    }

    fn snapshot(unkept: BatchTotals) -> Vec<JournalRecord> {
        vec![JournalRecord::Counters {
            next_id: 10,
            next_stan: 10,
            batch: 1,
            closed_net: Decimal::ZERO,
            unkept,
        }]
    }

    /// An approved original the engine already dropped (its totals in `unkept`) stays in
    /// every compaction until its caller releases it, without being counted twice.
    #[test]
    fn held_transactions_outlive_compaction_until_released() {
        let mut held = Held::default();
        held.note(&[
            started(7, 42),
            JournalRecord::Finished {
                id: 7,
                finish: Finish::Approved { code: *b"00" },
            },
            started(8, 43),
        ]);
        let mut unkept = BatchTotals::default();
        unkept.checked_add(&info()).unwrap();
        let live = held.complete(snapshot(unkept));
        assert_eq!(live.len(), 4, "{live:?}");
        assert!(
            matches!(&live[0], JournalRecord::Counters { unkept, .. } if *unkept == BatchTotals::default())
        );
        assert!(live.contains(&started(7, 42)));
        assert!(live.contains(&started(8, 43)));
        // What the engine still keeps is not doubled.
        let mut with_8 = snapshot(BatchTotals::default());
        with_8.push(started(8, 43));
        assert_eq!(held.complete(with_8).len(), 4);
        // Released: gone from the next compaction.
        held.release(42);
        held.release(43);
        assert_eq!(held.complete(snapshot(BatchTotals::default())).len(), 1);
        held.release(99);
    }
}
