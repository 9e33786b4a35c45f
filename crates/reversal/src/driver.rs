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

use crate::engine::{
    CallerTag, EngineEvent, EngineStats, Outcome, ReversalEngine, SendFailure, TransmitId, TxnId,
};
use crate::error::{Result, ReversalError};
use crate::journal::{GroupCommit, Journal, JournalRecord};
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
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            compact_every: 100_000,
            queue: 4096,
            max_batch: 512,
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
#[derive(Debug, Clone, Copy)]
pub struct DriverStatus {
    /// Engine counters.
    pub stats: EngineStats,
    /// Open batch totals.
    pub totals: BatchTotals,
    /// Reversals not yet acknowledged.
    pub pending_reversals: usize,
    /// Advices not yet answered.
    pub pending_advices: usize,
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
}

type SettlementData = (BatchTotals, Vec<UploadEntry>, u32, u32);

enum Inner {
    Journaled(u64, std::result::Result<(), Arc<ReversalError>>),
    Response(TransmitId, std::result::Result<Bytes, RequestError>),
}

/// The hook [`DriverBuilder::on_sign_on`] installs.
type SignOnHook = Arc<dyn Fn(&EngineEvent) + Send + Sync>;

/// Builds a [`ReversalDriver`]: `ReversalDriver::builder(engine, journal, transport)`,
/// then optional [`late`](DriverBuilder::late), [`events`](DriverBuilder::events),
/// [`on_sign_on`](DriverBuilder::on_sign_on), [`config`](DriverBuilder::config), and
/// [`spawn`](DriverBuilder::spawn).
pub struct DriverBuilder<S: Security, J: Journal, T: Transport> {
    engine: ReversalEngine<S>,
    journal: J,
    transport: T,
    late: Option<LateResponses>,
    events: Option<mpsc::UnboundedSender<EngineEvent>>,
    sign_on: Option<SignOnHook>,
    config: DriverConfig,
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

    /// Queue size, batch size and compaction threshold.
    pub fn config(mut self, config: DriverConfig) -> Self {
        self.config = config;
        self
    }

    /// Starts the journal thread ([`GroupCommit`]) and the driver task on the current
    /// tokio runtime.
    pub fn spawn(self) -> ReversalDriver {
        let (tx, rx) = mpsc::channel(self.config.queue.max(1));
        let group = GroupCommit::spawn(self.journal);
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
        DriverBuilder {
            engine,
            journal,
            transport,
            late: None,
            events: None,
            sign_on: None,
            config: DriverConfig::default(),
        }
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

    /// [`ReversalDriver::reverse_message`] with the caller's tag.
    ///
    /// # Errors
    /// As [`ReversalDriver::reverse_message`].
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
    /// codec errors, [`ReversalError::DriverStopped`].
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
                    return Err(ReversalError::Settlement {
                        why: "no answer from the host",
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
    } = shell;
    let max_batch = config.max_batch.max(1);
    let (itx, mut irx) = mpsc::unbounded_channel::<Inner>();
    let mut waiters: HashMap<TxnId, Waiter> = HashMap::new();
    let mut since_compaction = 0u64;
    let mut commands_open = true;
    let mut connections = transport.connections();
    let mut cmds: Vec<Command> = Vec::with_capacity(max_batch);
    let mut inner: Vec<Inner> = Vec::with_capacity(max_batch);
    let mut records: Vec<JournalRecord> = Vec::new();
    loop {
        // Journal: everything produced since the last turn goes in one group.
        records.extend(std::iter::from_fn(|| engine.poll_journal()));
        if !records.is_empty() {
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
            tokio::spawn(async move {
                let r = tr.request(t.bytes, t.timeout).await;
                let _ = itx.send(Inner::Response(t.id, r));
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
            match &ev {
                EngineEvent::Completed { .. } => tracing::debug!(event = ?ev, "reversal engine"),
                EngineEvent::SignOnRequired { .. } => {
                    tracing::warn!(event = ?ev, "reversal engine");
                    if let Some(h) = &sign_on {
                        h(&ev);
                    }
                }
                _ => tracing::info!(event = ?ev, "reversal engine"),
            }
            if let Some(tx) = &events {
                let _ = tx.send(ev);
            }
        }
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
                    command(&mut engine, &group, &mut waiters, t, cmd);
                }
            }
            _ = irx.recv_many(&mut inner, max_batch) => {
                let t = now();
                for i in inner.drain(..) {
                    match i {
                        Inner::Journaled(seq, Ok(())) => engine.handle_journaled(t, seq),
                        Inner::Journaled(_, Err(e)) => {
                            // Not durable: nothing more may be sent. Fail every caller.
                            tracing::error!(error = %e, "journal append failed: the driver stops sending");
                            for (_, w) in waiters.drain() {
                                let _ = w.send(Err(ReversalError::Io {
                                    op: "journal",
                                    path: std::path::PathBuf::new(),
                                    source: std::io::Error::other(e.to_string()),
                                }));
                            }
                            return;
                        }
                        Inner::Response(id, Ok(bytes)) => engine.handle_response(t, id, bytes),
                        Inner::Response(id, Err(e)) => {
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
        Command::Status(reply) => {
            let _ = reply.send(DriverStatus {
                stats: engine.stats(),
                totals: engine.totals(),
                pending_reversals: engine.pending_reversals(),
                pending_advices: engine.pending_advices(),
                batch: engine.batch(),
                fsyncs: group.fsyncs(),
            });
        }
    }
}
