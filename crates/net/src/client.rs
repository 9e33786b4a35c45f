//! The multiplexing client: many requests in flight on one connection, responses paired with
//! requests by a [`Correlator`] key (not by order), reconnect with backoff, idle echo tests.
//!
//! Data flow: [`Client::request_frame`] takes an in-flight slot (a semaphore: backpressure),
//! registers the request's key in the pending map, and queues the frame on the current
//! connection's bounded write channel. A connection runs three loops on one task: the
//! writer (batches frames into the socket under a write timeout, marking each request
//! *written* first), the reader (looks up each incoming message's key and completes the
//! matching request, or hands the message to the [`UnmatchedHandler`]), and the idle echo.
//! When a connection ends, every request still pending on it fails: `ConnectionLost` when it
//! was written (maybe delivered), `Rejected(NotConnected)` when it was not. A supervisor task
//! then reconnects with exponential backoff and jitter.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::correlate::{CorrelationKey, Correlator};
use crate::error::{NetError, RejectReason, RequestError};
use crate::framing::{CupHeader, Frame, FrameCodec, Framing};
use crate::metrics::{inc, ClientMetrics, ClientMetricsSnapshot, Direction, LinkMetrics, Role};
use isoswitch_codec::{Message, Mti};

/// Most frames written between two flushes.
const WRITE_BATCH: usize = 64;

/// Exponential backoff with jitter between reconnect attempts.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectPolicy {
    /// Delay before the first attempt after a loss.
    pub initial_delay: Duration,
    /// Upper bound of the delay.
    pub max_delay: Duration,
    /// Growth factor per consecutive failure (≥ 1).
    pub multiplier: f64,
    /// Fraction (0..=1) of the delay that is randomised away: the delay is
    /// `base * (1 - jitter * r)` with `r` uniform in `[0, 1)`.
    pub jitter: f64,
    /// Consecutive failed attempts after which the client gives up and closes;
    /// `None` = retry forever.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The delay before attempt number `attempt` (0-based) given a uniform random value
    /// `unit` in `[0, 1)`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exp = i32::try_from(attempt).unwrap_or(i32::MAX);
        let base = self.initial_delay.as_secs_f64() * self.multiplier.max(1.0).powi(exp);
        let base = base.min(self.max_delay.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        Duration::from_secs_f64((base * (1.0 - jitter)).max(0.0))
    }
}

/// Idle echo test settings (the message itself is built by a closure given to
/// [`ClientBuilder::echo`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoConfig {
    /// Send an echo after this long without any frame read or written.
    pub idle: Duration,
    /// How long to wait for the echo response before declaring the link dead.
    pub timeout: Duration,
}

/// Client settings. Every queue and wait is bounded by one of these.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Framing of the link.
    pub framing: Framing,
    /// Largest frame accepted or sent (after the length prefix).
    pub max_frame_len: usize,
    /// Header for outgoing `cup-pos` frames that carry none.
    pub cup_header: CupHeader,
    /// Requests in flight at once (waiting for a slot is bounded by the request timeout).
    pub max_in_flight: usize,
    /// Capacity of the write channel in frames.
    pub write_queue: usize,
    /// A batch of writes (and the flush) must complete within this, or the connection is
    /// dropped: a slow or dead peer cannot make memory grow.
    pub write_timeout: Duration,
    /// Bound of one connect attempt.
    pub connect_timeout: Duration,
    /// Reconnect policy; `None` closes the client when its connection is lost.
    pub reconnect: Option<ReconnectPolicy>,
    /// The link's name: the `link` label of every metric this client records through the
    /// `metrics` facade (see [`crate::metrics`]). Default `"client"`.
    pub link: String,
}

impl ClientConfig {
    /// Defaults for `framing`: 8 KiB frames, 1024 in flight, 10 s write and connect
    /// timeouts, default reconnect policy.
    pub fn new(framing: Framing) -> Self {
        Self {
            framing,
            max_frame_len: 8192,
            cup_header: CupHeader::default(),
            max_in_flight: 1024,
            write_queue: 256,
            write_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            reconnect: Some(ReconnectPolicy::default()),
            link: "client".to_owned(),
        }
    }

    fn validate(&self) -> Result<(), NetError> {
        if self.max_in_flight == 0 || self.max_in_flight > u32::MAX as usize {
            return Err(NetError::InvalidConfig {
                reason: "max_in_flight must be in 1..=u32::MAX",
            });
        }
        if self.write_queue == 0 {
            return Err(NetError::InvalidConfig {
                reason: "write_queue must be at least 1",
            });
        }
        if self.max_frame_len <= self.framing.header_len() {
            return Err(NetError::InvalidConfig {
                reason: "max_frame_len leaves no room for a message",
            });
        }
        Ok(())
    }
}

/// How a connection is opened; the client calls it again to reconnect.
pub trait Connector: Send + Sync + 'static {
    /// The byte stream (a `TcpStream`, or an in-memory duplex in tests).
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;

    /// Opens one connection.
    fn connect(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Connects over TCP to a fixed address, with `TCP_NODELAY`.
#[derive(Clone, Debug)]
pub struct TcpConnector {
    addr: String,
}

impl TcpConnector {
    /// A connector for `addr` (`host:port`).
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into() }
    }
}

impl Connector for TcpConnector {
    type Stream = TcpStream;

    async fn connect(&self) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(self.addr.as_str()).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Why an incoming message matched no pending request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmatchedKind {
    /// A response whose request is no longer pending (it timed out, or was never sent).
    Late,
    /// Not a response: a host-initiated message.
    Unsolicited,
}

/// An incoming message that matched no pending request.
#[derive(Clone, Debug)]
pub struct Unmatched {
    /// Late response or unsolicited message.
    pub kind: UnmatchedKind,
    /// The response key, for [`UnmatchedKind::Late`].
    pub key: Option<CorrelationKey>,
    /// The message as received.
    pub frame: Frame,
}

/// Receives the messages that matched no pending request. It is called on the connection's
/// reader, so it must not block. A handler that holds a [`Client`] clone (to answer
/// host-initiated messages) keeps the client alive: end it with [`Client::close`].
pub trait UnmatchedHandler: Send + Sync + 'static {
    /// Takes the message, or gives it back when it cannot (the client then logs it and
    /// counts it in `unmatched_dropped`).
    fn on_unmatched(&self, msg: Unmatched) -> Result<(), Unmatched>;
}

impl<F> UnmatchedHandler for F
where
    F: Fn(Unmatched) + Send + Sync + 'static,
{
    fn on_unmatched(&self, msg: Unmatched) -> Result<(), Unmatched> {
        self(msg);
        Ok(())
    }
}

/// A bounded channel: when it is full the message is given back (logged and counted).
impl UnmatchedHandler for mpsc::Sender<Unmatched> {
    fn on_unmatched(&self, msg: Unmatched) -> Result<(), Unmatched> {
        self.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
        })
    }
}

/// Connection state of a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// A connect attempt is running.
    Connecting,
    /// A connection is up: requests are accepted.
    Connected,
    /// No connection: the last one was lost (or an attempt failed); a reconnect follows
    /// after the backoff delay unless the client is closing.
    Disconnected,
    /// Closed for good (by [`Client::close`], drop, or giving up).
    Closed,
}

type EchoBuilder = Arc<dyn Fn() -> Bytes + Send + Sync>;

/// Builds a [`Client`]: correlator, unmatched handler, echo test, then a connector.
pub struct ClientBuilder {
    config: ClientConfig,
    correlator: Arc<dyn Correlator>,
    unmatched: Option<Arc<dyn UnmatchedHandler>>,
    echo: Option<(EchoConfig, EchoBuilder)>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("unmatched", &self.unmatched.is_some())
            .field("echo", &self.echo.as_ref().map(|e| e.0))
            .finish()
    }
}

impl ClientBuilder {
    /// Where unmatched messages (late responses, host-initiated messages) go. Without
    /// one they are logged at `warn` and counted in `unmatched_dropped`.
    pub fn unmatched(mut self, handler: impl UnmatchedHandler) -> Self {
        self.unmatched = Some(Arc::new(handler));
        self
    }

    /// Sends `make_echo()` as a request after `config.idle` without traffic; a failed echo
    /// (timeout or loss) drops the connection, which is then re-established. The echo's
    /// response must correlate like any other response.
    pub fn echo(
        mut self,
        config: EchoConfig,
        make_echo: impl Fn() -> Bytes + Send + Sync + 'static,
    ) -> Self {
        self.echo = Some((config, Arc::new(make_echo)));
        self
    }

    /// Starts the client and connects in the background; see [`Client::wait_connected`].
    ///
    /// # Errors
    /// [`NetError::InvalidConfig`]. Must be called within a tokio runtime.
    pub fn spawn<C: Connector>(self, connector: C) -> Result<Client, NetError> {
        self.start(connector, None)
    }

    /// Connects once (bounded by `connect_timeout`), then starts the client and returns
    /// when it is ready for requests; later losses reconnect per the policy.
    ///
    /// # Errors
    /// [`NetError::InvalidConfig`], [`NetError::ConnectTimeout`] or the connect error.
    pub async fn connect<C: Connector>(self, connector: C) -> Result<Client, NetError> {
        self.config.validate()?;
        let after = self.config.connect_timeout;
        let stream = timeout(after, connector.connect())
            .await
            .map_err(|_| NetError::ConnectTimeout { after })??;
        let client = self.start(connector, Some(stream))?;
        // Returns once the connection task has taken over the stream, so that requests
        // made right away find the link.
        client.wait_connected(after).await?;
        Ok(client)
    }

    fn start<C: Connector>(
        self,
        connector: C,
        initial: Option<C::Stream>,
    ) -> Result<Client, NetError> {
        self.config.validate()?;
        let codec = FrameCodec::new(self.config.framing, self.config.max_frame_len)
            .with_default_header(self.config.cup_header);
        let shutdown = CancellationToken::new();
        let (state, _) = watch::channel(ConnState::Connecting);
        let link_metrics = LinkMetrics::new(&self.config.link, Role::Client);
        let shared = Arc::new(Shared {
            link_metrics,
            permits: Semaphore::new(self.config.max_in_flight),
            config: self.config,
            codec,
            correlator: self.correlator,
            unmatched: self.unmatched,
            echo: self.echo,
            pending: Mutex::new(HashMap::new()),
            link: Mutex::new(None),
            closing: AtomicBool::new(false),
            state,
            metrics: ClientMetrics::default(),
            shutdown: shutdown.clone(),
            next_id: AtomicU64::new(1),
        });
        let task = tokio::spawn(supervise(shared.clone(), connector, initial).instrument(
            tracing::info_span!(
                "client",
                link = %shared.config.link,
                framing = ?shared.config.framing
            ),
        ));
        Ok(Client {
            shared,
            handle: Arc::new(Handle {
                shutdown,
                task: Mutex::new(Some(task)),
            }),
        })
    }
}

/// A multiplexing client over one (re)connecting link. Cheap to clone; the link closes when
/// the last clone is dropped or [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    handle: Arc<Handle>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

struct Handle {
    shutdown: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Client {
    /// Starts building a client for `config` whose requests and responses are paired by
    /// `correlator`.
    pub fn builder(config: ClientConfig, correlator: impl Correlator) -> ClientBuilder {
        ClientBuilder {
            config,
            correlator: Arc::new(correlator),
            unmatched: None,
            echo: None,
        }
    }

    /// Sends `msg` and waits for the response with the same correlation key, for at most
    /// `timeout` in total (waiting for an in-flight slot included).
    ///
    /// # Errors
    /// [`RequestError::Rejected`] (not sent), [`RequestError::Timeout`] or
    /// [`RequestError::ConnectionLost`] (sent, maybe delivered).
    pub async fn request(&self, msg: Bytes, timeout: Duration) -> Result<Bytes, RequestError> {
        self.request_frame(Frame::new(msg), timeout)
            .await
            .map(|f| f.payload)
    }

    /// Like [`Client::request`] with the frame header: for `cup-pos`, the request's header
    /// (or the configured default) goes out and the response's header (TPDU, processing
    /// requirement) comes back.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn request_frame(
        &self,
        frame: Frame,
        timeout: Duration,
    ) -> Result<Frame, RequestError> {
        self.shared
            .request(frame, timeout, true)
            .await
            .map(|(frame, _)| frame)
    }

    /// Like [`Client::request_frame`], also handing over the response as the correlator
    /// decoded it ([`Response::message`]; with a
    /// [`DialectCorrelator`](crate::correlate::DialectCorrelator) a zero-copy
    /// [`Message`]), so the caller does not decode it a second time.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn request_decoded(
        &self,
        frame: Frame,
        timeout: Duration,
    ) -> Result<Response, RequestError> {
        self.shared
            .request(frame, timeout, true)
            .await
            .map(|(frame, message)| Response { frame, message })
    }

    /// Queues a message that expects no response (e.g. an answer to a host-initiated
    /// message). Waits at most `write_timeout` for room in the write channel; `Ok` means
    /// queued on the current connection.
    ///
    /// # Errors
    /// [`RequestError::Rejected`] when it could not be queued.
    pub async fn send(&self, frame: impl Into<Frame>) -> Result<(), RequestError> {
        let frame = frame.into();
        let shared = &self.shared;
        let result = async {
            if shared.closing.load(Ordering::Acquire) {
                return Err(RejectReason::Closed);
            }
            shared.codec.check(&frame).map_err(RejectReason::Invalid)?;
            let tx = shared.current_link().ok_or(RejectReason::NotConnected)?.1;
            let out = Outgoing {
                mti: shared.correlator.mti(&frame.payload),
                frame,
                ticket: None,
            };
            match timeout(shared.config.write_timeout, tx.send(out)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(RejectReason::NotConnected),
                Err(_) => Err(RejectReason::QueueTimeout),
            }
        }
        .await;
        result.map_err(|r| {
            inc(&shared.metrics.rejected);
            shared.link_metrics.rejected.increment(1);
            RequestError::Rejected(r)
        })
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> ClientMetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// The connection state now.
    pub fn state(&self) -> ConnState {
        *self.shared.state.borrow()
    }

    /// Requests waiting for a response.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.pending).len()
    }

    /// Waits until a connection is up.
    ///
    /// # Errors
    /// [`NetError::ConnectTimeout`] after `within`, [`NetError::Closed`] if the client closed.
    pub async fn wait_connected(&self, within: Duration) -> Result<(), NetError> {
        let mut rx = self.shared.state.subscribe();
        let wait = async {
            rx.wait_for(|s| matches!(s, ConnState::Connected | ConnState::Closed))
                .await
                .map(|s| *s)
        };
        match timeout(within, wait).await {
            Ok(Ok(ConnState::Connected)) => Ok(()),
            Ok(_) => Err(NetError::Closed),
            Err(_) => Err(NetError::ConnectTimeout { after: within }),
        }
    }

    /// Graceful close: new requests are rejected at once; requests in flight get up to
    /// `drain` to complete; then the connection is closed and every request still pending
    /// fails (`ConnectionLost` if written, `Rejected(NotConnected)` if not). Returns when
    /// the client is closed.
    pub async fn close(&self, drain: Duration) {
        let shared = &self.shared;
        shared.closing.store(true, Ordering::Release);
        // All slots free = nothing in flight.
        let all = shared.config.max_in_flight as u32;
        match timeout(drain, shared.permits.acquire_many(all)).await {
            Ok(_) => debug!("client drained"),
            Err(_) => warn!(
                in_flight = self.in_flight(),
                "drain timed out, failing pending requests"
            ),
        }
        self.handle.shutdown.cancel();
        let task = lock(&self.handle.task).take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                warn!(error = %e, "client supervisor ended abnormally");
            }
        } else {
            // Another clone is closing: wait for it to finish.
            let mut rx = self.shared.state.subscribe();
            let _ = rx.wait_for(|s| *s == ConnState::Closed).await;
        }
    }
}

/// A response with the form the correlator decoded it into
/// ([`Client::request_decoded`]).
#[derive(Clone, Debug)]
pub struct Response {
    /// The response as received.
    pub frame: Frame,
    /// The response decoded by the correlator
    /// ([`Inspected::message`](crate::correlate::Inspected::message)), if it decodes.
    pub message: Option<Message>,
}

struct Shared {
    link_metrics: LinkMetrics,
    config: ClientConfig,
    codec: FrameCodec,
    correlator: Arc<dyn Correlator>,
    unmatched: Option<Arc<dyn UnmatchedHandler>>,
    echo: Option<(EchoConfig, EchoBuilder)>,
    pending: Mutex<HashMap<CorrelationKey, Pending>>,
    link: Mutex<Option<(u64, mpsc::Sender<Outgoing>)>>,
    permits: Semaphore,
    closing: AtomicBool,
    state: watch::Sender<ConnState>,
    metrics: ClientMetrics,
    shutdown: CancellationToken,
    next_id: AtomicU64,
}

type Outcome = Result<(Frame, Option<Message>), RequestError>;

struct Pending {
    id: u64,
    generation: u64,
    written: bool,
    tx: oneshot::Sender<Outcome>,
}

impl Pending {
    /// The outcome for a request whose connection ended before a response.
    fn lost(&self) -> RequestError {
        if self.written {
            RequestError::ConnectionLost
        } else {
            RequestError::Rejected(RejectReason::NotConnected)
        }
    }
}

struct Outgoing {
    /// For the metrics' `mti` label.
    mti: Option<Mti>,
    frame: Frame,
    ticket: Option<(CorrelationKey, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes the pending entry if the request future is dropped (cancelled by its caller).
struct PendingGuard<'a> {
    shared: &'a Shared,
    key: CorrelationKey,
    id: u64,
    armed: bool,
}

impl PendingGuard<'_> {
    /// Removes and returns our entry, if it is still pending.
    fn take(&mut self) -> Option<Pending> {
        self.armed = false;
        let mut map = lock(&self.shared.pending);
        match map.get(&self.key) {
            Some(p) if p.id == self.id => map.remove(&self.key),
            _ => None,
        }
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.take();
        }
    }
}

impl Shared {
    fn current_link(&self) -> Option<(u64, mpsc::Sender<Outgoing>)> {
        lock(&self.link).clone()
    }

    async fn request(&self, frame: Frame, timeout: Duration, use_permit: bool) -> Outcome {
        let span = tracing::debug_span!(
            "request",
            len = frame.payload.len(),
            key = tracing::field::Empty
        );
        let started = Instant::now();
        let m = &self.link_metrics;
        m.in_flight.increment(1.0);
        let outcome = self
            .request_inner(frame, timeout, use_permit, &span)
            .instrument(span.clone())
            .await;
        m.in_flight.decrement(1.0);
        match &outcome {
            Ok(_) => m.request_duration.record(started.elapsed().as_secs_f64()),
            Err(RequestError::Rejected(reason)) => {
                inc(&self.metrics.rejected);
                m.rejected.increment(1);
                span.in_scope(|| debug!(%reason, "request rejected"));
            }
            Err(RequestError::Timeout) => {
                inc(&self.metrics.timeouts);
                m.timeouts.increment(1);
                span.in_scope(|| debug!("request timed out"));
            }
            Err(RequestError::ConnectionLost) => {
                inc(&self.metrics.connection_lost);
                m.connection_lost.increment(1);
                span.in_scope(|| debug!("connection lost with request in flight"));
            }
        }
        outcome
    }

    async fn request_inner(
        &self,
        frame: Frame,
        timeout: Duration,
        use_permit: bool,
        span: &tracing::Span,
    ) -> Outcome {
        let deadline = Instant::now() + timeout;
        if self.closing.load(Ordering::Acquire) {
            return Err(RejectReason::Closed.into());
        }
        self.codec.check(&frame).map_err(RejectReason::Invalid)?;
        let (key, mti) = self
            .correlator
            .inspect_request(&frame.payload)
            .map_err(RejectReason::Invalid)?;
        span.record("key", tracing::field::debug(&key));
        let _permit = if use_permit {
            match timeout_at(deadline, self.permits.acquire()).await {
                Ok(Ok(p)) => Some(p),
                Ok(Err(_)) => return Err(RejectReason::Closed.into()),
                Err(_) => return Err(RejectReason::Busy.into()),
            }
        } else {
            None
        };
        if self.closing.load(Ordering::Acquire) {
            return Err(RejectReason::Closed.into());
        }
        let (generation, tx) = self.current_link().ok_or(RejectReason::NotConnected)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (otx, mut orx) = oneshot::channel();
        {
            let mut map = lock(&self.pending);
            if map.contains_key(&key) {
                return Err(RejectReason::DuplicateKey(key).into());
            }
            map.insert(
                key,
                Pending {
                    id,
                    generation,
                    written: false,
                    tx: otx,
                },
            );
        }
        let mut guard = PendingGuard {
            shared: self,
            key,
            id,
            armed: true,
        };
        let out = Outgoing {
            mti,
            frame,
            ticket: Some((key, id)),
        };
        let queued = match timeout_at(deadline, tx.send(out)).await {
            Ok(Ok(())) => None,
            // The connection went away: never queued, so never written.
            Ok(Err(_)) => Some(RejectReason::NotConnected),
            Err(_) => Some(RejectReason::QueueTimeout),
        };
        if let Some(reason) = queued {
            return match guard.take() {
                Some(_) => Err(reason.into()),
                // Already resolved (by the connection teardown).
                None => orx.try_recv().unwrap_or(Err(reason.into())),
            };
        }
        match timeout_at(deadline, &mut orx).await {
            Ok(Ok(outcome)) => {
                guard.armed = false;
                outcome
            }
            // Unreachable in practice: every entry is resolved before it is dropped.
            Ok(Err(_)) => {
                guard.armed = false;
                Err(RequestError::ConnectionLost)
            }
            Err(_) => match guard.take() {
                Some(p) if p.written => Err(RequestError::Timeout),
                Some(_) => Err(RejectReason::QueueTimeout.into()),
                // Resolved concurrently with the deadline: take the result.
                None => orx.try_recv().unwrap_or(Err(RequestError::ConnectionLost)),
            },
        }
    }

    /// Fails every request pending on `generation` (or all, for `None`).
    fn fail_pending(&self, generation: Option<u64>) {
        let failed: Vec<Pending> = {
            let mut map = lock(&self.pending);
            let keys: Vec<CorrelationKey> = map
                .iter()
                .filter(|(_, p)| match generation {
                    Some(g) => p.generation == g,
                    None => true,
                })
                .map(|(k, _)| *k)
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        if !failed.is_empty() {
            debug!(count = failed.len(), "failing pending requests");
        }
        for p in failed {
            let err = p.lost();
            let _ = p.tx.send(Err(err));
        }
    }

    fn deliver_unmatched(&self, msg: Unmatched) {
        let kind = msg.kind;
        let rejected = match &self.unmatched {
            Some(h) => h.on_unmatched(msg).err(),
            None => Some(msg),
        };
        if let Some(msg) = rejected {
            inc(&self.metrics.unmatched_dropped);
            warn!(
                ?kind,
                key = ?msg.key,
                len = msg.frame.payload.len(),
                "unmatched message not taken by a handler"
            );
        }
    }

    fn set_state(&self, s: ConnState) {
        self.state.send_replace(s);
    }
}

/// Time of the last frame read or written on a connection, and responses handed to their
/// requesters since the writer last looked.
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
    answered: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            answered: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Instant::now().saturating_duration_since(last)
    }
}

async fn supervise<C: Connector>(
    shared: Arc<Shared>,
    connector: C,
    mut initial: Option<C::Stream>,
) {
    let mut generation = 0u64;
    let mut failures = 0u32;
    loop {
        if shared.shutdown.is_cancelled() {
            break;
        }
        let stream = match initial.take() {
            Some(s) => s,
            None => {
                shared.set_state(ConnState::Connecting);
                let after = shared.config.connect_timeout;
                let attempt = tokio::select! {
                    _ = shared.shutdown.cancelled() => break,
                    r = timeout(after, connector.connect()) => r,
                };
                match attempt {
                    Ok(Ok(s)) => s,
                    failed => {
                        inc(&shared.metrics.connect_failures);
                        shared.link_metrics.connect_failures.increment(1);
                        let error = match failed {
                            Ok(Err(e)) => NetError::Io(e),
                            _ => NetError::ConnectTimeout { after },
                        };
                        warn!(%error, attempt = failures + 1, "connect failed");
                        failures += 1;
                        if backoff(&shared, failures).await {
                            continue;
                        }
                        break;
                    }
                }
            }
        };
        generation += 1;
        let received_before = shared.metrics.received.load(Ordering::Relaxed);
        let span = tracing::info_span!("connection", generation);
        let reason = run_connection(&shared, stream, generation)
            .instrument(span)
            .await;
        if shared.shutdown.is_cancelled() {
            info!(%reason, "connection closed");
            break;
        }
        warn!(%reason, "connection lost");
        shared.link_metrics.link_down.increment(1);
        // A link that carried traffic resets the backoff; one that dropped at once does not.
        if shared.metrics.received.load(Ordering::Relaxed) > received_before {
            failures = 0;
        }
        failures += 1;
        if !backoff(&shared, failures).await {
            break;
        }
    }
    shared.closing.store(true, Ordering::Release);
    *lock(&shared.link) = None;
    shared.permits.close();
    shared.fail_pending(None);
    shared.set_state(ConnState::Closed);
    info!("client closed");
}

/// Sleeps before attempt number `failures`; `false` when the client must give up.
async fn backoff(shared: &Shared, failures: u32) -> bool {
    let Some(policy) = &shared.config.reconnect else {
        return false;
    };
    if policy.max_attempts.is_some_and(|max| failures > max) {
        warn!(failures, "giving up reconnecting");
        return false;
    }
    shared.set_state(ConnState::Disconnected);
    let delay = policy.delay(failures.saturating_sub(1), rand::thread_rng().gen::<f64>());
    debug!(?delay, "reconnecting after backoff");
    tokio::select! {
        _ = shared.shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

async fn run_connection<S>(shared: &Shared, stream: S, generation: u64) -> NetError
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let mut reader = FramedRead::new(rd, shared.codec.clone());
    let mut writer = FramedWrite::new(wr, shared.codec.clone());
    let (tx, mut rx) = mpsc::channel(shared.config.write_queue);
    let activity = Activity::new();
    *lock(&shared.link) = Some((generation, tx));
    inc(&shared.metrics.connects);
    shared.link_metrics.connects.increment(1);
    if generation > 1 {
        shared.link_metrics.reconnects.increment(1);
    }
    shared.link_metrics.link_up.set(1.0);
    shared.set_state(ConnState::Connected);
    info!("connected");

    let reason = tokio::select! {
        _ = shared.shutdown.cancelled() => NetError::Closed,
        r = read_loop(shared, &mut reader, &activity) => r,
        r = write_loop(shared, &mut writer, &mut rx, &activity) => r,
        r = echo_loop(shared, &activity) => r,
    };

    // Teardown order matters: no new sends, then drop the queued ones, then fail every
    // request of this connection (queued ones as not sent, written ones as maybe sent).
    *lock(&shared.link) = None;
    shared.link_metrics.link_up.set(0.0);
    shared.set_state(ConnState::Disconnected);
    rx.close();
    while rx.try_recv().is_ok() {}
    shared.fail_pending(Some(generation));
    if timeout(shared.config.write_timeout, writer.get_mut().shutdown())
        .await
        .is_err()
    {
        debug!("socket shutdown timed out");
    }
    reason
}

async fn read_loop<R>(
    shared: &Shared,
    reader: &mut FramedRead<R, FrameCodec>,
    activity: &Activity,
) -> NetError
where
    R: AsyncRead + Unpin,
{
    loop {
        let frame = match reader.next().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                warn!(error = %e, "framing error, closing connection");
                return e;
            }
            None => return NetError::PeerClosed,
        };
        activity.touch();
        inc(&shared.metrics.received);
        let seen = shared.correlator.inspect_response(&frame.payload);
        let m = &shared.link_metrics;
        m.message(Direction::In, seen.mti);
        if seen.mti.is_some_and(Mti::is_response) {
            m.response(Direction::In, seen.rc.as_ref().map(|rc| &rc[..]));
        }
        match seen.key {
            Some(key) => {
                let pending = lock(&shared.pending).remove(&key);
                match pending {
                    Some(p) => {
                        inc(&shared.metrics.matched);
                        activity.answered.fetch_add(1, Ordering::Relaxed);
                        // The requester may have just given up; then the response is late.
                        if let Err(Ok((frame, _))) = p.tx.send(Ok((frame, seen.message))) {
                            inc(&shared.metrics.late);
                            m.late.increment(1);
                            m.unmatched.increment(1);
                            shared.deliver_unmatched(Unmatched {
                                kind: UnmatchedKind::Late,
                                key: Some(key),
                                frame,
                            });
                        }
                    }
                    None => {
                        inc(&shared.metrics.late);
                        m.late.increment(1);
                        m.unmatched.increment(1);
                        debug!(?key, "late response");
                        shared.deliver_unmatched(Unmatched {
                            kind: UnmatchedKind::Late,
                            key: Some(key),
                            frame,
                        });
                    }
                }
            }
            None => {
                inc(&shared.metrics.unsolicited);
                m.unmatched.increment(1);
                shared.deliver_unmatched(Unmatched {
                    kind: UnmatchedKind::Unsolicited,
                    key: None,
                    frame,
                });
            }
        }
    }
}

async fn write_loop<W>(
    shared: &Shared,
    writer: &mut FramedWrite<W, FrameCodec>,
    rx: &mut mpsc::Receiver<Outgoing>,
    activity: &Activity,
) -> NetError
where
    W: AsyncWrite + Unpin,
{
    let after = shared.config.write_timeout;
    loop {
        let Some(first) = rx.recv().await else {
            return NetError::Closed;
        };
        // Requesters woken by these responses are likely about to send again.
        let answered = activity.answered.swap(0, Ordering::Relaxed);
        let batch = async {
            write_one(shared, writer, first).await?;
            let mut written = 1;
            let mut yielded = false;
            while written < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(next) => {
                        write_one(shared, writer, next).await?;
                        written += 1;
                    }
                    // Requesters woken together (by one read of many responses) each wake
                    // this task right after their send: yield once so that they all queue
                    // first and share one write syscall, instead of one each. Not when
                    // fewer were answered than written (one in flight): that would only
                    // add latency.
                    Err(_) if !yielded && written < answered => {
                        yielded = true;
                        yield_to_ready_tasks().await;
                    }
                    Err(_) => break,
                }
            }
            writer.flush().await
        };
        match timeout(after, batch).await {
            Ok(Ok(())) => activity.touch(),
            Ok(Err(e)) => {
                warn!(error = %e, "write failed, closing connection");
                return e;
            }
            Err(_) => {
                warn!(?after, "write timed out, closing connection");
                return NetError::WriteTimeout { after };
            }
        }
    }
}

/// Lets the tasks already scheduled on this worker run before the caller goes on: the task
/// wakes itself, which queues it behind them. Unlike `tokio::task::yield_now` it does not
/// wait for an I/O driver poll, so with nothing else ready it costs next to nothing.
pub(crate) async fn yield_to_ready_tasks() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

async fn write_one<W>(
    shared: &Shared,
    writer: &mut FramedWrite<W, FrameCodec>,
    out: Outgoing,
) -> Result<(), NetError>
where
    W: AsyncWrite + Unpin,
{
    if let Some((key, id)) = out.ticket {
        let mut map = lock(&shared.pending);
        match map.get_mut(&key) {
            // From here on the request counts as (maybe) delivered.
            Some(p) if p.id == id => p.written = true,
            // Timed out or cancelled while queued: never sent.
            _ => return Ok(()),
        }
    }
    match writer.feed(out.frame).await {
        Ok(()) => {
            inc(&shared.metrics.sent);
            shared.link_metrics.message(Direction::Out, out.mti);
            Ok(())
        }
        Err(NetError::Io(e)) => Err(NetError::Io(e)),
        // An encode error writes nothing: reject that request only (`check` makes this
        // unreachable in practice).
        Err(e) => {
            if let Some((key, id)) = out.ticket {
                let mut map = lock(&shared.pending);
                if map.get(&key).is_some_and(|p| p.id == id) {
                    if let Some(p) = map.remove(&key) {
                        let _ = p.tx.send(Err(RejectReason::Invalid(e).into()));
                    }
                }
            }
            Ok(())
        }
    }
}

async fn echo_loop(shared: &Shared, activity: &Activity) -> NetError {
    let Some((config, make_echo)) = &shared.echo else {
        return std::future::pending().await;
    };
    loop {
        let idle = activity.idle_for();
        if idle < config.idle {
            tokio::time::sleep(config.idle - idle).await;
            continue;
        }
        inc(&shared.metrics.echoes);
        debug!("idle: sending echo test");
        match shared
            .request(Frame::new(make_echo()), config.timeout, false)
            .await
        {
            Ok(_) => activity.touch(),
            Err(RequestError::Rejected(RejectReason::DuplicateKey(key))) => {
                warn!(
                    ?key,
                    "echo key already in flight; retrying after the idle period"
                );
                activity.touch();
            }
            // Closing (the drain must not be cut short), or an echo that cannot be built:
            // stop echoing on this connection; the other loops decide its fate.
            Err(RequestError::Rejected(reason)) => {
                if !matches!(reason, RejectReason::Closed) {
                    error!(%reason, "echo message rejected; echo tests stopped");
                }
                return std::future::pending().await;
            }
            // Sent and unanswered: the link is dead.
            Err(e) => return NetError::EchoFailed(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let p = ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
        };
        assert_eq!(p.delay(0, 0.0), Duration::from_millis(100));
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(200));
        assert_eq!(p.delay(3, 0.0), Duration::from_millis(800));
        assert_eq!(p.delay(10, 0.0), Duration::from_secs(2));
        assert_eq!(p.delay(u32::MAX, 0.0), Duration::from_secs(2));
        // Full jitter value halves the delay at most.
        let d = p.delay(10, 0.999_999);
        assert!(d >= Duration::from_secs(1) && d < Duration::from_millis(1001));
    }

    #[test]
    fn config_validation() {
        let mut c = ClientConfig::new(Framing::Len2);
        assert!(c.validate().is_ok());
        c.max_in_flight = 0;
        assert!(matches!(c.validate(), Err(NetError::InvalidConfig { .. })));
        let mut c = ClientConfig::new(Framing::CupPos);
        c.max_frame_len = 11;
        assert!(c.validate().is_err());
    }
}
