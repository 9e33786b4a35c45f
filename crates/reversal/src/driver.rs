//! [`ReversalDriver`]: the tokio driver of a [`ReversalEngine`].
//!
//! One task owns the engine and shuttles between it and the world: records go to a
//! [`GroupCommit`] journal thread (everything produced while one fsync runs shares the
//! next one), transmissions go to a [`Transport`] (an `isoswitch_net::Client`), results
//! and the timer come back as `handle_*` calls. Late responses from the client's
//! unmatched handler reach the engine through [`late_responses`].
//!
//! ```no_run
//! # async fn demo(client: isoswitch_net::Client, sale: isoswitch_codec::Message) -> Result<(), Box<dyn std::error::Error>> {
//! use isoswitch_reversal::{driver, DriverConfig, EngineConfig, FileJournal, NoMac, ReversalDriver, ReversalProfile};
//! let profile = ReversalProfile::cup_pos()?;
//! let security = NoMac::new(profile.dialect.clone());
//! let journal = FileJournal::open("/var/lib/pos/reversal.journal")?;
//! // Build the client with `.unmatched(late_tx)` from `driver::late_responses()`.
//! let driver = ReversalDriver::open(EngineConfig::default(), profile, security, 1, journal, client, None, DriverConfig::default())?;
//! let outcome = driver.submit(sale).await?;
//! println!("{}", outcome.display_text());
//! # Ok(()) }
//! ```

use crate::engine::{
    EngineConfig, EngineEvent, EngineStats, Outcome, ReversalEngine, SendFailure, TransmitId, TxnId,
};
use crate::error::{Result, ReversalError};
use crate::journal::{GroupCommit, Journal, JournalRecord};
use crate::profile::{ReversalProfile, ReversalReason};
use crate::security::Security;
use crate::settlement::{
    BatchTotals, Settlement, SettlementConfig, SettlementOutcome, SettlementState, UploadEntry,
};
use bytes::Bytes;
use isoswitch_codec::Message;
use isoswitch_net::{Client, RequestError, Unmatched, UnmatchedHandler, UnmatchedKind};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
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

/// Configuration of a [`ReversalDriver`].
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Compact the journal after this many records.
    pub compact_every: u64,
    /// Commands queued before `submit` waits.
    pub queue: usize,
    /// Where every [`EngineEvent`] also goes (besides the log), e.g. a switch that
    /// records acknowledged reversals in its own books.
    pub events: Option<mpsc::UnboundedSender<EngineEvent>>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            compact_every: 100_000,
            queue: 4096,
            events: None,
        }
    }
}

/// The client's unmatched handler that forwards late responses to the driver; create with
/// [`late_responses`].
#[derive(Debug, Clone)]
pub struct LateResponses(mpsc::Sender<Bytes>);

/// The receiving end for [`ReversalDriver::open`] / [`ReversalDriver::spawn`].
#[derive(Debug)]
pub struct LateInbox(mpsc::Receiver<Bytes>);

/// A pair: install the first with `ClientBuilder::unmatched`, give the second to the driver.
pub fn late_responses() -> (LateResponses, LateInbox) {
    let (tx, rx) = mpsc::channel(1024);
    (LateResponses(tx), LateInbox(rx))
}

impl UnmatchedHandler for LateResponses {
    fn on_unmatched(&self, msg: Unmatched) -> std::result::Result<(), Unmatched> {
        if msg.kind != UnmatchedKind::Late {
            return Err(msg);
        }
        match self.0.try_send(msg.frame.payload.clone()) {
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
    /// Current batch.
    pub batch: u32,
    /// Fsyncs done by the journal thread.
    pub fsyncs: u64,
}

enum Command {
    Submit(Box<Message>, oneshot::Sender<Result<Outcome>>),
    Reverse(TxnId, ReversalReason, oneshot::Sender<Result<()>>),
    ReverseMessage(Box<Message>, ReversalReason, oneshot::Sender<Result<TxnId>>),
    Connected,
    Status(oneshot::Sender<DriverStatus>),
    SettlementData(oneshot::Sender<Result<SettlementData>>),
    CloseBatch(u32, oneshot::Sender<Result<()>>),
}

type SettlementData = (BatchTotals, Vec<UploadEntry>, u32, u32);

enum Inner {
    Journaled(u64, std::result::Result<(), Arc<ReversalError>>),
    Response(TransmitId, std::result::Result<Bytes, RequestError>),
}

/// Handle to a running driver; clones share it. The task ends when every handle is
/// dropped (after the work in flight is abandoned: the journal has it).
#[derive(Debug, Clone)]
pub struct ReversalDriver {
    tx: mpsc::Sender<Command>,
}

impl ReversalDriver {
    /// Loads `journal`, recovers the engine from it (pending reversals first) and spawns
    /// the driver on the current tokio runtime.
    ///
    /// # Errors
    /// Journal load errors, recovery errors.
    #[allow(clippy::too_many_arguments)]
    pub fn open<S: Security, J: Journal, T: Transport>(
        engine_config: EngineConfig,
        profile: ReversalProfile,
        security: S,
        batch: u32,
        mut journal: J,
        transport: T,
        late: Option<LateInbox>,
        config: DriverConfig,
    ) -> Result<ReversalDriver> {
        let records = journal.load()?;
        let engine =
            ReversalEngine::recover(now(), engine_config, profile, security, batch, records)?;
        Ok(Self::spawn(engine, journal, transport, late, config))
    }

    /// Spawns the driver over an engine (already recovered) and its journal.
    pub fn spawn<S: Security, J: Journal, T: Transport>(
        engine: ReversalEngine<S>,
        journal: J,
        transport: T,
        late: Option<LateInbox>,
        config: DriverConfig,
    ) -> ReversalDriver {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let group = GroupCommit::spawn(journal);
        tokio::spawn(run(engine, group, Arc::new(transport), rx, late, config));
        ReversalDriver { tx }
    }

    /// Submits a financial request and waits for its outcome (approved, declined,
    /// reversed, not sent).
    ///
    /// # Errors
    /// Submission errors of the engine, journal failures, [`ReversalError::DriverStopped`].
    pub async fn submit(&self, request: Message) -> Result<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Submit(Box::new(request), tx))
            .await
            .map_err(|_| ReversalError::DriverStopped)?;
        rx.await.map_err(|_| ReversalError::DriverStopped)?
    }

    /// Reverses an approved transaction the terminal could not complete.
    ///
    /// # Errors
    /// As [`ReversalEngine::reverse`].
    pub async fn reverse(&self, txn: TxnId, reason: ReversalReason) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Reverse(txn, reason, tx))
            .await
            .map_err(|_| ReversalError::DriverStopped)?;
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
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::ReverseMessage(Box::new(original), reason, tx))
            .await
            .map_err(|_| ReversalError::DriverStopped)?;
        rx.await.map_err(|_| ReversalError::DriverStopped)?
    }

    /// Tells the engine a new connection is up (deferred reversals are retried).
    ///
    /// # Errors
    /// [`ReversalError::DriverStopped`].
    pub async fn connected(&self) -> Result<()> {
        self.tx
            .send(Command::Connected)
            .await
            .map_err(|_| ReversalError::DriverStopped)
    }

    /// Counters, totals and pending reversals.
    ///
    /// # Errors
    /// [`ReversalError::DriverStopped`].
    pub async fn status(&self) -> Result<DriverStatus> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Status(tx))
            .await
            .map_err(|_| ReversalError::DriverStopped)?;
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

async fn run<S: Security, T: Transport>(
    mut engine: ReversalEngine<S>,
    group: GroupCommit,
    transport: Arc<T>,
    mut rx: mpsc::Receiver<Command>,
    late: Option<LateInbox>,
    config: DriverConfig,
) {
    let (itx, mut irx) = mpsc::unbounded_channel::<Inner>();
    let mut late = late.map(|l| l.0);
    let mut waiters: HashMap<TxnId, oneshot::Sender<Result<Outcome>>> = HashMap::new();
    let mut since_compaction = 0u64;
    let mut commands_open = true;
    let mut connections = transport.connections();
    loop {
        // Journal: everything produced since the last turn goes in one group.
        let batch: Vec<JournalRecord> = std::iter::from_fn(|| engine.poll_journal()).collect();
        if !batch.is_empty() {
            since_compaction += batch.len() as u64;
            let seq = engine.journal_seq();
            let g = group.clone();
            let itx = itx.clone();
            tokio::spawn(async move {
                let r = g.append(batch).await;
                let _ = itx.send(Inner::Journaled(seq, r));
            });
            if since_compaction >= config.compact_every {
                since_compaction = 0;
                let live = engine.snapshot();
                let g = group.clone();
                tokio::spawn(async move {
                    if let Err(e) = g.compact(live).await {
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
            match ev {
                EngineEvent::Completed { txn, outcome } => {
                    if let Some(w) = waiters.remove(&txn) {
                        let _ = w.send(Ok(outcome));
                    }
                }
                other => {
                    tracing::info!(event = ?other, "reversal engine");
                    if let Some(tx) = &config.events {
                        let _ = tx.send(other);
                    }
                }
            }
        }
        let c = transport.connections();
        if c != connections {
            connections = c;
            engine.handle_connected(now());
            continue;
        }
        if !commands_open && waiters.is_empty() && engine.pending_reversals() == 0 {
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
            cmd = rx.recv(), if commands_open => match cmd {
                None => commands_open = false,
                Some(Command::Submit(msg, reply)) => {
                    match engine.submit(now(), *msg) {
                        Ok(id) => { waiters.insert(id, reply); }
                        Err(e) => { let _ = reply.send(Err(e)); }
                    }
                }
                Some(Command::Reverse(txn, reason, reply)) => {
                    let _ = reply.send(engine.reverse(now(), txn, reason));
                }
                Some(Command::ReverseMessage(msg, reason, reply)) => {
                    let _ = reply.send(engine.reverse_message(now(), *msg, reason));
                }
                Some(Command::Connected) => engine.handle_connected(now()),
                Some(Command::SettlementData(reply)) => {
                    let r = engine.settlement_data().map(|(totals, entries)| {
                        let n = entries.len().div_ceil(8) as u32 + 5;
                        (totals, entries, engine.batch(), engine.reserve_stans(n))
                    });
                    let _ = reply.send(r);
                }
                Some(Command::CloseBatch(next, reply)) => {
                    let _ = reply.send(engine.close_batch(next));
                }
                Some(Command::Status(reply)) => {
                    let _ = reply.send(DriverStatus {
                        stats: engine.stats(),
                        totals: engine.totals(),
                        pending_reversals: engine.pending_reversals(),
                        batch: engine.batch(),
                        fsyncs: group.fsyncs(),
                    });
                }
            },
            Some(inner) = irx.recv() => match inner {
                Inner::Journaled(seq, Ok(())) => engine.handle_journaled(now(), seq),
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
                Inner::Response(id, Ok(bytes)) => engine.handle_response(now(), id, bytes),
                Inner::Response(id, Err(e)) => {
                    let f = match e {
                        RequestError::Rejected(_) => SendFailure::NotSent,
                        RequestError::Timeout => SendFailure::Timeout,
                        RequestError::ConnectionLost => SendFailure::ConnectionLost,
                    };
                    engine.handle_send_failed(now(), id, f);
                }
            },
            Some(bytes) = late_next => engine.handle_late(now(), bytes),
            () = sleep => engine.handle_timeout(now()),
        }
    }
}
