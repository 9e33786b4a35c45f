//! The concurrent server: one task per connection reading frames and dispatching each to the
//! user's async [`Handler`] on its own task (so responses may leave out of order), one
//! bounded writer per connection, a connection cap, an idle timeout, a per-terminal
//! [`RateLimit`], optional TLS ([`Server::with_tls`]), and graceful shutdown driven by a
//! future the caller passes or by a [`ServerControl`] ([`ServerControl::drain`]).
//!
//! **A handler runs to completion.** When the peer goes away (closes, resets, stops
//! reading) while its messages are being handled, the handlers finish and only their
//! replies are dropped: a payment's journal and outcome are not cut short by a terminal
//! hanging up ([`ServerConfig::on_disconnect`], [`DisconnectPolicy::Finish`], the
//! default). Only the drain deadline aborts a handler ([`DrainReport::aborted_handlers`]).
//!
//! **One decode per message.** With [`Server::with_dialect`], [`Request::message`] decodes
//! the message once (lazily, zero-copy) and caches it: the server's span and the handler
//! share that decode.
//!
//! Data flow per connection: socket → `FramedRead` → (rate limit) → handler task → bounded
//! write channel → `FramedWrite` → socket. Every stage is bounded: at most
//! `max_in_flight_per_connection` handler tasks (reading pauses at the cap), a
//! `write_queue`-frame channel, a `write_timeout` per batch, and an `idle_timeout` within
//! which a *complete* frame must arrive (which also bounds a peer trickling one byte at a
//! time).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use isoswitch_codec::{CodecError, Dialect, Message, MessageView, Mti};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::correlate::TerminalKey;
use crate::error::NetError;
use crate::framing::{CupHeader, Frame, FrameCodec, Framing};
use crate::metrics::{inc, Direction, LinkMetrics, Role, ServerMetrics};
use crate::tls::{ServerTls, TlsInfo};

/// Most frames written between two flushes.
const WRITE_BATCH: usize = 64;

/// Server settings. Every queue and wait is bounded by one of these.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest frame accepted or sent (after the length prefix).
    pub max_frame_len: usize,
    /// Connections served at once; more are accepted and closed immediately.
    pub max_connections: usize,
    /// Messages of one connection handled concurrently; reading pauses at the cap.
    pub max_in_flight_per_connection: usize,
    /// Capacity of a connection's write channel in frames.
    pub write_queue: usize,
    /// A complete frame must arrive within this (measured from the previous frame), or
    /// the connection is closed.
    pub idle_timeout: Duration,
    /// A batch of writes must complete within this, or the connection is closed.
    pub write_timeout: Duration,
    /// After the shutdown signal, connections get this long to finish in-flight messages
    /// before they are aborted (the deadline of a drain started by the `serve` future;
    /// [`ServerControl::drain`] takes its own).
    pub shutdown_timeout: Duration,
    /// What happens to the handlers of a connection that goes away (peer closed or reset,
    /// write failed or timed out, idle timeout, framing error). Default
    /// [`DisconnectPolicy::Finish`]: the handlers run to completion and their replies are
    /// dropped.
    pub on_disconnect: DisconnectPolicy,
    /// The link's name: the `link` label of every metric this server records through the
    /// `metrics` facade (see [`crate::metrics`]). Default `"server"`.
    pub link: String,
}

/// What happens to running handlers when their connection goes away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DisconnectPolicy {
    /// Let every handler finish; its reply is dropped. The default: a handler doing a
    /// payment (journal, upstream request, outcome) must not be cut short by the terminal
    /// hanging up.
    #[default]
    Finish,
    /// Abort the handlers when a write fails (the old behaviour, for handlers whose work
    /// is worthless without the reply). A peer that merely closes still gets its handlers
    /// finished, since their replies may still be written.
    Abort,
}

impl Default for ServerConfig {
    /// 8 KiB frames, 1024 connections, 64 in flight per connection, 60 s idle, 10 s write,
    /// 30 s shutdown grace, handlers finish when the peer goes away, link `"server"`.
    fn default() -> Self {
        Self {
            max_frame_len: 8192,
            max_connections: 1024,
            max_in_flight_per_connection: 64,
            write_queue: 64,
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            on_disconnect: DisconnectPolicy::Finish,
            link: "server".to_owned(),
        }
    }
}

impl ServerConfig {
    fn validate(&self, framing: Framing) -> Result<(), NetError> {
        if self.max_connections == 0
            || self.max_in_flight_per_connection == 0
            || self.write_queue == 0
        {
            return Err(NetError::InvalidConfig {
                reason: "max_connections, max_in_flight_per_connection and write_queue must be at least 1",
            });
        }
        if self.max_frame_len <= framing.header_len() {
            return Err(NetError::InvalidConfig {
                reason: "max_frame_len leaves no room for a message",
            });
        }
        Ok(())
    }
}

/// What the server knows about one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Server-unique connection number (from 1).
    pub id: u64,
    /// The peer's address.
    pub peer_addr: SocketAddr,
    /// The local address the connection arrived on.
    pub local_addr: SocketAddr,
    /// The framing of the link.
    pub framing: Framing,
    /// The TLS session, for a connection accepted over TLS (with the client's certificate
    /// chain under mutual TLS).
    pub tls: Option<Arc<TlsInfo>>,
}

/// One inbound message with its connection's metadata.
#[derive(Clone, Debug)]
pub struct Request {
    /// The connection it arrived on.
    pub conn: Arc<ConnectionInfo>,
    /// The message and, for `cup-pos`, its header.
    pub frame: Frame,
    decoded: Decoded,
}

/// The request decoded at most once, on first use.
#[derive(Clone, Debug, Default)]
struct Decoded {
    dialect: Option<Dialect>,
    cell: OnceLock<Result<Message, CodecError>>,
}

impl Request {
    /// A request as the server makes it (for calling a handler directly in tests); without
    /// a dialect, [`Request::message`] is `None`.
    pub fn new(conn: Arc<ConnectionInfo>, frame: Frame, dialect: Option<Dialect>) -> Self {
        Self {
            conn,
            frame,
            decoded: Decoded {
                dialect,
                cell: OnceLock::new(),
            },
        }
    }

    /// The message decoded with the server's dialect ([`Server::with_dialect`]): a
    /// zero-copy [`Message::decode`] done at most once per request and shared by the
    /// server's span, the metrics and every caller of this method. `None` without a
    /// dialect.
    pub fn message(&self) -> Option<Result<&Message, &CodecError>> {
        let dialect = self.decoded.dialect.as_ref()?;
        Some(
            self.decoded
                .cell
                .get_or_init(|| Message::decode(dialect, self.frame.payload.clone()))
                .as_ref(),
        )
    }

    /// Takes the decoded message out of the request (decoding it now if nobody has yet).
    /// `None` without a dialect.
    pub fn into_message(self) -> Option<Result<Message, CodecError>> {
        let Decoded { dialect, cell } = self.decoded;
        let dialect = dialect?;
        Some(match cell.into_inner() {
            Some(decoded) => decoded,
            None => Message::decode(&dialect, self.frame.payload),
        })
    }

    /// The dialect the server decodes with, if any.
    pub fn dialect(&self) -> Option<&Dialect> {
        self.decoded.dialect.as_ref()
    }

    /// The message bytes (from the MTI on).
    pub fn payload(&self) -> &Bytes {
        &self.frame.payload
    }

    /// The inbound `cup-pos` header, if any.
    pub fn header(&self) -> Option<CupHeader> {
        self.frame.header
    }

    /// The header a reply should carry: the inbound one with TPDU source and destination
    /// swapped (`None` for framings without header).
    pub fn reply_header(&self) -> Option<CupHeader> {
        self.frame.header.map(CupHeader::reply)
    }

    /// A reply frame carrying [`Request::reply_header`]. A handler may also return a frame
    /// without header: the server then fills in the same swapped header.
    pub fn reply(&self, payload: impl Into<Bytes>) -> Frame {
        Frame {
            header: self.reply_header(),
            payload: payload.into(),
        }
    }
}

/// Handles one inbound message; `Some(frame)` is written back on the same connection.
/// Calls for one connection run concurrently.
pub trait Handler: Send + Sync + 'static {
    /// Produces the response to `request`, if any.
    fn handle(&self, request: Request) -> impl Future<Output = Option<Frame>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Frame>> + Send,
{
    fn handle(&self, request: Request) -> impl Future<Output = Option<Frame>> + Send {
        self(request)
    }
}

/// Why a connection was closed.
#[derive(Debug)]
pub enum CloseReason {
    /// The peer closed the connection between frames.
    PeerClosed,
    /// The server shut down.
    Shutdown,
    /// An error: a framing error ([`NetError::is_framing`]), [`NetError::IdleTimeout`],
    /// [`NetError::WriteTimeout`], or I/O.
    Error(NetError),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::Shutdown => f.write_str("server shutdown"),
            CloseReason::Error(e) => write!(f, "{e}"),
        }
    }
}

impl NetError {
    /// `true` for errors in the peer's byte stream: oversized, zero or short length, bad
    /// ASCII prefix, truncated frame.
    pub fn is_framing(&self) -> bool {
        matches!(
            self,
            NetError::FrameTooLarge { .. }
                | NetError::ZeroLength
                | NetError::FrameTooShort { .. }
                | NetError::InvalidLengthPrefix { .. }
                | NetError::Truncated { .. }
        )
    }
}

type KeyFn = Arc<dyn Fn(&Frame) -> Option<TerminalKey> + Send + Sync>;
type ExceededFn = Arc<dyn Fn(&Request) -> Option<Frame> + Send + Sync>;
type CloseHook = Arc<dyn Fn(&ConnectionInfo, CloseReason) + Send + Sync>;
type DrainFn = Arc<dyn Fn(&Request) -> Option<Frame> + Send + Sync>;

/// Per-terminal token-bucket rate limit, shared by all connections.
///
/// The terminal comes from a user-supplied key extractor (later DE 41); messages without a
/// key are not limited. Over the limit, the handler is not called: the `on_exceeded` hook
/// produces the response instead (the ISO response code is the hook's business).
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    max_terminals: usize,
    key: KeyFn,
    on_exceeded: ExceededFn,
    buckets: Mutex<HashMap<TerminalKey, Bucket>>,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("per_second", &self.per_second)
            .field("burst", &self.burst)
            .field("max_terminals", &self.max_terminals)
            .finish()
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, per_second: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.last = now;
    }
}

impl RateLimit {
    /// At most `burst` messages at once per terminal, refilled at `per_second`.
    /// `key` extracts the terminal from a message; `on_exceeded` builds the response sent
    /// instead of calling the handler (`None` = send nothing).
    pub fn new(
        per_second: f64,
        burst: u32,
        key: impl Fn(&Frame) -> Option<TerminalKey> + Send + Sync + 'static,
        on_exceeded: impl Fn(&Request) -> Option<Frame> + Send + Sync + 'static,
    ) -> Self {
        Self {
            per_second: per_second.max(0.0),
            burst: f64::from(burst.max(1)),
            max_terminals: 100_000,
            key: Arc::new(key),
            on_exceeded: Arc::new(on_exceeded),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Bounds the number of terminals tracked (default 100 000). When full, terminals
    /// whose bucket has refilled are forgotten; if none has, a new terminal is limited.
    pub fn max_terminals(mut self, max: usize) -> Self {
        self.max_terminals = max.max(1);
        self
    }

    /// Takes one token for `terminal` at `now`; `false` when over the limit.
    pub fn check(&self, terminal: TerminalKey, now: Instant) -> bool {
        let mut map = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(&terminal) && map.len() >= self.max_terminals {
            let (rate, burst) = (self.per_second, self.burst);
            map.retain(|_, b| {
                b.refill(now, rate, burst);
                b.tokens < burst
            });
            if map.len() >= self.max_terminals {
                return false;
            }
        }
        let bucket = map.entry(terminal).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        bucket.refill(now, self.per_second, self.burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Ctx<H> {
    handler: Arc<H>,
    codec: FrameCodec,
    config: ServerConfig,
    rate_limit: Option<RateLimit>,
    on_close: Option<CloseHook>,
    metrics: Arc<ServerMetrics>,
    /// When set, each message's span carries its MTI, STAN (DE 11), TID (DE 41) and the
    /// masked PAN (DE 2), read zero-copy with the codec.
    dialect: Option<Dialect>,
    tls: Option<(ServerTls, tokio_rustls::TlsAcceptor)>,
    on_drain: Option<DrainFn>,
    link: LinkMetrics,
    control: Arc<ControlInner>,
}

/// A bound TCP server; [`Server::serve`] runs it.
pub struct Server<H> {
    listener: TcpListener,
    local_addr: SocketAddr,
    framing: Framing,
    ctx: Ctx<H>,
}

/// Drives a server's graceful drain from outside [`Server::serve`], and tells how it is
/// doing. Cheap to clone; get it with [`Server::control`] before serving.
#[derive(Clone, Debug)]
pub struct ServerControl {
    inner: Arc<ControlInner>,
}

#[derive(Debug)]
struct ControlInner {
    drain: CancellationToken,
    deadline: Mutex<Option<Duration>>,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    /// Woken when `in_flight` drops to zero (an aborted handler is dropped by the runtime
    /// after `abort` returns; the drain report waits for it).
    idle: tokio::sync::Notify,
    connections: AtomicUsize,
    report: watch::Sender<Option<DrainReport>>,
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainReport {
    /// Every connection finished its in-flight handlers before the deadline.
    pub completed: bool,
    /// Handlers still running at the deadline, aborted.
    pub aborted_handlers: usize,
    /// Connections still open at the deadline, closed.
    pub aborted_connections: usize,
}

impl ServerControl {
    /// Starts draining (if not already) and waits until the server has stopped.
    ///
    /// Draining: the listener is closed at once (new connections are refused); messages
    /// already being handled run to completion; messages arriving on open connections
    /// are answered by the [`Server::answer_while_draining`] hook (e.g. with a "retry"
    /// response code) or, without a hook, not read; each connection closes once its
    /// handlers are done. Whatever still runs after `timeout` is aborted and counted in the
    /// report. A drain started by the `serve` future uses
    /// [`ServerConfig::shutdown_timeout`]; the first deadline given wins.
    pub async fn drain(&self, timeout: Duration) -> DrainReport {
        self.begin_drain(timeout);
        self.stopped().await
    }

    /// Starts draining with `timeout` and returns at once (see [`ServerControl::drain`]).
    pub fn begin_drain(&self, timeout: Duration) {
        {
            let mut deadline = self
                .inner
                .deadline
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            deadline.get_or_insert(timeout);
        }
        self.inner.drain.cancel();
    }

    /// Waits until the server has stopped and returns how its drain ended (waits forever
    /// for a server that is never served).
    pub async fn stopped(&self) -> DrainReport {
        let mut rx = self.inner.report.subscribe();
        let report = rx.wait_for(Option::is_some).await.ok().and_then(|r| *r);
        // `None`: the server was dropped without serving, so nothing ran.
        report.unwrap_or(DrainReport {
            completed: true,
            aborted_handlers: 0,
            aborted_connections: 0,
        })
    }

    /// `true` from the start of the drain on (e.g. for a readiness check).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Handlers running now, across every connection.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Acquire)
    }
}

impl<H> fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("framing", &self.framing)
            .field("config", &self.ctx.config)
            .field("rate_limit", &self.ctx.rate_limit)
            .finish()
    }
}

impl<H: Handler> Server<H> {
    /// Binds `addr` (port 0 picks a free port: see [`Server::local_addr`]).
    ///
    /// # Errors
    /// [`NetError::InvalidConfig`] or the bind error.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        framing: Framing,
        config: ServerConfig,
        handler: H,
    ) -> Result<Self, NetError> {
        config.validate(framing)?;
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            framing,
            ctx: Ctx {
                handler: Arc::new(handler),
                codec: FrameCodec::new(framing, config.max_frame_len),
                link: LinkMetrics::new(&config.link, Role::Server),
                config,
                rate_limit: None,
                on_close: None,
                metrics: Arc::new(ServerMetrics::default()),
                dialect: None,
                tls: None,
                on_drain: None,
                control: Arc::new(ControlInner {
                    drain: CancellationToken::new(),
                    deadline: Mutex::new(None),
                    draining: AtomicBool::new(false),
                    in_flight: AtomicUsize::new(0),
                    idle: tokio::sync::Notify::new(),
                    connections: AtomicUsize::new(0),
                    report: watch::channel(None).0,
                }),
            },
        })
    }

    /// [`Server::bind`], then [`Server::with_tls`]: every connection is TLS.
    ///
    /// # Errors
    /// As [`Server::bind`].
    pub async fn bind_tls(
        addr: impl ToSocketAddrs,
        framing: Framing,
        config: ServerConfig,
        tls: ServerTls,
        handler: H,
    ) -> Result<Self, NetError> {
        Ok(Self::bind(addr, framing, config, handler)
            .await?
            .with_tls(tls))
    }

    /// Serves every connection over TLS: the handshake runs on the connection's task,
    /// bounded by [`ServerTls::handshake_timeout`]; a failed handshake (an untrusted
    /// client certificate under mutual TLS, a client that does not speak TLS) closes the
    /// connection before any message is read.
    pub fn with_tls(mut self, tls: ServerTls) -> Self {
        let acceptor = tls.acceptor();
        self.ctx.tls = Some((tls, acceptor));
        self
    }

    /// While draining, messages arriving on open connections are answered by `hook`
    /// instead of the handler (`None` = no answer), e.g. with a "retry later" response
    /// code. Without a hook, a draining connection stops reading.
    pub fn answer_while_draining(
        mut self,
        hook: impl Fn(&Request) -> Option<Frame> + Send + Sync + 'static,
    ) -> Self {
        self.ctx.on_drain = Some(Arc::new(hook));
        self
    }

    /// The handle that drains this server and reports on it.
    pub fn control(&self) -> ServerControl {
        ServerControl {
            inner: self.ctx.control.clone(),
        }
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counters (the handle stays valid after [`Server::serve`] consumed it).
    pub fn metrics(&self) -> Arc<ServerMetrics> {
        self.ctx.metrics.clone()
    }

    /// Names the dialect of the messages on this server, so that each message's tracing
    /// span records its MTI, STAN (DE 11), terminal ID (DE 41) and masked PAN (DE 2).
    /// Without it, spans carry the connection and the length only.
    ///
    /// The dialect also makes [`Request::message`] available to the handler (one shared
    /// decode) and gives the metrics their `mti` and `rc` labels.
    pub fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.ctx.dialect = Some(dialect);
        self
    }

    /// Enables the per-terminal rate limit.
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.ctx.rate_limit = Some(limit);
        self
    }

    /// Calls `hook` each time a connection closes, with the reason (also logged and
    /// counted in the metrics).
    pub fn on_connection_closed(
        mut self,
        hook: impl Fn(&ConnectionInfo, CloseReason) + Send + Sync + 'static,
    ) -> Self {
        self.ctx.on_close = Some(Arc::new(hook));
        self
    }

    /// Accepts and serves connections until `shutdown` completes or a drain is started by
    /// [`ServerControl`]; then drains (see [`ServerControl::drain`]: stops accepting, lets
    /// every connection finish its in-flight messages for at most `shutdown_timeout`),
    /// closes the connections and returns.
    ///
    /// Dropping the future returned by `serve` aborts every connection and handler.
    ///
    /// # Errors
    /// None at present: accept errors (e.g. out of file descriptors) are logged and retried.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NetError> {
        let Server {
            listener,
            local_addr,
            framing,
            ctx,
        } = self;
        let ctx = Arc::new(ctx);
        let control = ctx.control.clone();
        let token = CancellationToken::new();
        let slots = Arc::new(Semaphore::new(ctx.config.max_connections));
        let mut conns = JoinSet::new();
        let mut next_id = 0u64;
        info!(%local_addr, ?framing, tls = ctx.tls.is_some(), link = %ctx.config.link, "server listening");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = control.drain.cancelled() => break,
                Some(done) = conns.join_next(), if !conns.is_empty() => {
                    if let Err(e) = done {
                        error!(error = %e, "connection task failed");
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer_addr)) => {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            inc(&ctx.metrics.refused);
                            ctx.link.refused.increment(1);
                            warn!(%peer_addr, "connection refused: maximum reached");
                            drop(stream);
                            continue;
                        };
                        next_id += 1;
                        inc(&ctx.metrics.accepted);
                        ctx.link.accepted.increment(1);
                        let info = ConnectionInfo {
                            id: next_id,
                            peer_addr,
                            local_addr,
                            framing,
                            tls: None,
                        };
                        let span = tracing::info_span!("conn", id = next_id, peer = %peer_addr);
                        conns.spawn(
                            serve_connection(ctx.clone(), stream, info, token.clone(), slot)
                                .instrument(span),
                        );
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        control.draining.store(true, Ordering::Release);
        let deadline = *control
            .deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(ctx.config.shutdown_timeout);
        info!(
            connections = conns.len(),
            handlers = control.in_flight.load(Ordering::Acquire),
            ?deadline,
            "draining: no new connections, finishing in-flight messages"
        );
        token.cancel();
        let drain = async { while conns.join_next().await.is_some() {} };
        let mut report = DrainReport {
            completed: true,
            aborted_handlers: 0,
            aborted_connections: 0,
        };
        if timeout(deadline, drain).await.is_err() {
            report = DrainReport {
                completed: false,
                aborted_handlers: control.in_flight.load(Ordering::Acquire),
                aborted_connections: conns.len(),
            };
            warn!(
                connections = report.aborted_connections,
                handlers = report.aborted_handlers,
                "drain deadline passed: aborting connections and their handlers"
            );
            conns.abort_all();
            while conns.join_next().await.is_some() {}
            // Aborting is asynchronous: the handlers' futures are dropped by the runtime
            // shortly after. Report once they are gone, so `in_flight()` reads 0 after a
            // drain (bounded, in case a handler blocks its thread).
            let settle = Instant::now() + Duration::from_secs(5);
            loop {
                let idle = control.idle.notified();
                if control.in_flight.load(Ordering::Acquire) == 0 {
                    break;
                }
                if timeout_at(settle, idle).await.is_err() {
                    warn!(
                        handlers = control.in_flight.load(Ordering::Acquire),
                        "aborted handlers still not dropped"
                    );
                    break;
                }
            }
        }
        info!(?report, "server stopped");
        control.report.send_replace(Some(report));
        Ok(())
    }
}

async fn serve_connection<H: Handler>(
    ctx: Arc<Ctx<H>>,
    stream: TcpStream,
    mut info: ConnectionInfo,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "set_nodelay failed");
    }
    let _open = ConnectionGuard::new(&ctx);
    match &ctx.tls {
        None => {
            info!("connection accepted");
            let (rd, wr) = stream.into_split();
            run_connection(&ctx, rd, wr, Arc::new(info), &shutdown).await;
        }
        Some((tls, acceptor)) => {
            let handshake = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = timeout(tls.timeout(), acceptor.accept(stream)) => r,
            };
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => e,
                        _ => std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "TLS handshake timed out",
                        ),
                    };
                    inc(&ctx.metrics.closed);
                    ctx.link.tls_failures.increment(1);
                    warn!(%error, "TLS handshake failed: connection closed");
                    if let Some(hook) = &ctx.on_close {
                        hook(&info, CloseReason::Error(NetError::TlsHandshake(error)));
                    }
                    return;
                }
            };
            let tls_info = TlsInfo::of(stream.get_ref().1);
            info!(
                protocol = %tls_info.protocol,
                suite = %tls_info.cipher_suite,
                client_certificate = !tls_info.peer_certificates.is_empty(),
                "TLS connection accepted"
            );
            info.tls = Some(Arc::new(tls_info));
            let (rd, wr) = tokio::io::split(stream);
            run_connection(&ctx, rd, wr, Arc::new(info), &shutdown).await;
        }
    }
}

/// Keeps the open-connection gauges in step (also when the task is aborted).
struct ConnectionGuard<'a> {
    control: &'a ControlInner,
    link: &'a LinkMetrics,
}

impl<'a> ConnectionGuard<'a> {
    fn new<H>(ctx: &'a Ctx<H>) -> Self {
        ctx.control.connections.fetch_add(1, Ordering::AcqRel);
        ctx.link.connections.increment(1.0);
        Self {
            control: &ctx.control,
            link: &ctx.link,
        }
    }
}

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.control.connections.fetch_sub(1, Ordering::AcqRel);
        self.link.connections.decrement(1.0);
    }
}

/// Keeps the in-flight handler counts in step (also when the handler is aborted).
struct HandlerGuard {
    control: Arc<ControlInner>,
    in_flight: ::metrics::Gauge,
    started: Instant,
}

async fn run_connection<H, R, W>(
    ctx: &Arc<Ctx<H>>,
    rd: R,
    wr: W,
    info: Arc<ConnectionInfo>,
    shutdown: &CancellationToken,
) where
    H: Handler,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let reader = FramedRead::new(rd, ctx.codec.clone());
    let writer = FramedWrite::new(wr, ctx.codec.clone());
    let (tx, rx) = mpsc::channel(ctx.config.write_queue);
    let write_failed = CancellationToken::new();

    let ((read_reason, mut orphans), write_result) = tokio::join!(
        read_side(ctx, &info, reader, tx, shutdown, &write_failed),
        write_side(ctx, writer, rx, &write_failed),
    );
    let reason = match write_result {
        Err(e) => CloseReason::Error(e),
        Ok(()) => read_reason,
    };

    inc(&ctx.metrics.closed);
    match &reason {
        CloseReason::Error(e) if e.is_framing() => {
            inc(&ctx.metrics.protocol_errors);
            ctx.link.protocol_errors.increment(1);
            warn!(error = %e, "connection closed: framing error");
        }
        CloseReason::Error(e @ NetError::IdleTimeout { .. }) => {
            inc(&ctx.metrics.idle_timeouts);
            info!(error = %e, "connection closed: idle");
        }
        CloseReason::Error(e @ NetError::WriteTimeout { .. }) => {
            inc(&ctx.metrics.write_errors);
            warn!(error = %e, "connection closed: write timeout");
        }
        CloseReason::Error(e) => warn!(error = %e, "connection closed on error"),
        other => info!(reason = %other, "connection closed"),
    }
    if let Some(hook) = &ctx.on_close {
        hook(&info, reason);
    }
    // Handlers that outlive their connection (the writer failed): they finish here, their
    // replies are dropped (bounded by the drain deadline on shutdown).
    if !orphans.is_empty() {
        debug!(
            handlers = orphans.len(),
            "finishing handlers of a closed connection"
        );
    }
    while let Some(done) = orphans.join_next().await {
        log_task(done);
    }
}

async fn read_side<H: Handler, R: AsyncRead + Unpin>(
    ctx: &Ctx<H>,
    info: &Arc<ConnectionInfo>,
    mut reader: FramedRead<R, FrameCodec>,
    tx: mpsc::Sender<Frame>,
    shutdown: &CancellationToken,
    write_failed: &CancellationToken,
) -> (CloseReason, JoinSet<()>) {
    let idle = ctx.config.idle_timeout;
    let max_in_flight = ctx.config.max_in_flight_per_connection;
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut deadline = Instant::now() + idle;
    // Draining with a drain hook: keep reading (answering through the hook) until this
    // connection's handlers are done.
    let mut draining = false;
    let reason = loop {
        if draining && tasks.is_empty() {
            break CloseReason::Shutdown;
        }
        if tasks.len() >= max_in_flight {
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !draining => {
                    if ctx.on_drain.is_none() {
                        break CloseReason::Shutdown;
                    }
                    draining = true;
                }
                _ = write_failed.cancelled() => break CloseReason::Shutdown,
                Some(done) = tasks.join_next() => log_task(done),
            }
            // Time spent at the cap is ours, not the peer's.
            deadline = deadline.max(Instant::now() + idle);
            continue;
        }
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled(), if !draining => {
                if ctx.on_drain.is_none() {
                    break CloseReason::Shutdown;
                }
                draining = true;
                continue;
            }
            _ = write_failed.cancelled() => break CloseReason::Shutdown,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                log_task(done);
                continue;
            }
            next = timeout_at(deadline, reader.next()) => next,
        };
        let frame = match next {
            Err(_) => break CloseReason::Error(NetError::IdleTimeout { after: idle }),
            Ok(None) => break CloseReason::PeerClosed,
            Ok(Some(Err(e))) => break CloseReason::Error(e),
            Ok(Some(Ok(frame))) => frame,
        };
        inc(&ctx.metrics.frames_in);
        deadline = Instant::now() + idle;
        dispatch(ctx, info, frame, &mut tasks, tx.clone(), draining);
    };
    drop(tx);
    if write_failed.is_cancelled() {
        if ctx.config.on_disconnect == DisconnectPolicy::Abort {
            // Nothing more can be written and the handlers' work is worthless without it.
            tasks.abort_all();
        }
        // Nothing more can be written: the connection closes now and its handlers finish
        // after it (their replies dropped).
        return (reason, tasks);
    }
    // Finish in-flight messages while the writer can still send their replies (bounded by
    // the drain deadline on shutdown).
    while let Some(done) = tasks.join_next().await {
        log_task(done);
    }
    (reason, tasks)
}

fn log_task(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            error!(error = %e, "handler panicked");
        }
    }
}

/// The span of one inbound message: connection and length, and with a dialect the MTI,
/// STAN, terminal ID and masked PAN (never the clear PAN). The message is only decoded
/// when the span is enabled, through [`Request::message`], so the handler reuses that
/// decode.
fn message_span(request: &Request) -> tracing::Span {
    let span = tracing::debug_span!(
        "message",
        conn = request.conn.id,
        len = request.frame.payload.len(),
        mti = tracing::field::Empty,
        stan = tracing::field::Empty,
        tid = tracing::field::Empty,
        pan = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(Ok(message)) = request.message() {
        span.record("mti", tracing::field::display(message.mti()));
        if let Some(f) = message.field(11) {
            span.record("stan", tracing::field::display(f.text()));
        }
        if let Some(f) = message.field(41) {
            span.record("tid", tracing::field::display(f.text()));
        }
        if let Some(f) = message.field(2) {
            span.record("pan", tracing::field::display(f.masked()));
        }
    }
    span
}

/// Queues a reply produced by a hook (rate limit, drain) on its own small task.
fn spawn_reply(
    tasks: &mut JoinSet<()>,
    tx: mpsc::Sender<Frame>,
    mut out: Frame,
    reply_header: Option<CupHeader>,
    span: tracing::Span,
) {
    if out.header.is_none() {
        out.header = reply_header;
    }
    tasks.spawn(
        async move {
            if tx.send(out).await.is_err() {
                debug!("connection writer gone; reply dropped");
            }
        }
        .instrument(span),
    );
}

fn dispatch<H: Handler>(
    ctx: &Ctx<H>,
    info: &Arc<ConnectionInfo>,
    frame: Frame,
    tasks: &mut JoinSet<()>,
    tx: mpsc::Sender<Frame>,
    draining: bool,
) {
    let mti = ctx
        .dialect
        .as_ref()
        .and_then(|d| Mti::decode(d.mti_encoding(), &frame.payload).ok());
    ctx.link.message(Direction::In, mti);
    let request = Request::new(info.clone(), frame, ctx.dialect.clone());
    let span = message_span(&request);
    let reply_header = request.reply_header();
    if draining {
        if let Some(hook) = &ctx.on_drain {
            ctx.link.drain_answered.increment(1);
            span.in_scope(|| debug!("draining: answered by the drain hook"));
            if let Some(out) = hook(&request) {
                spawn_reply(tasks, tx, out, reply_header, span);
            }
        }
        return;
    }
    if let Some(limit) = &ctx.rate_limit {
        if let Some(terminal) = (limit.key)(&request.frame) {
            if !limit.check(terminal, Instant::now()) {
                inc(&ctx.metrics.rate_limited);
                ctx.link.rate_limited.increment(1);
                span.in_scope(|| warn!(?terminal, "rate limit exceeded"));
                if let Some(out) = (limit.on_exceeded)(&request) {
                    spawn_reply(tasks, tx, out, reply_header, span);
                }
                return;
            }
        }
    }
    let handler = ctx.handler.clone();
    ctx.control.in_flight.fetch_add(1, Ordering::AcqRel);
    ctx.link.in_flight.increment(1.0);
    let guard = HandlerGuard {
        control: ctx.control.clone(),
        in_flight: ctx.link.in_flight.clone(),
        started: Instant::now(),
    };
    let duration = ctx.link.handler_duration.clone();
    tasks.spawn(
        async move {
            let reply = handler.handle(request).await;
            duration.record(guard.started.elapsed().as_secs_f64());
            // Done: no longer in flight, whatever happens to the reply.
            drop(guard);
            match reply {
                Some(mut out) => {
                    if out.header.is_none() {
                        out.header = reply_header;
                    }
                    if tx.send(out).await.is_err() {
                        debug!("connection writer gone; reply dropped");
                    }
                }
                None => debug!("no reply"),
            }
        }
        .instrument(span),
    );
}

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        if self.control.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.control.idle.notify_waiters();
        }
        self.in_flight.decrement(1.0);
    }
}

async fn write_side<H, W: AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    mut writer: FramedWrite<W, FrameCodec>,
    mut rx: mpsc::Receiver<Frame>,
    write_failed: &CancellationToken,
) -> Result<(), NetError> {
    let after = ctx.config.write_timeout;
    let result = loop {
        let Some(first) = rx.recv().await else {
            break Ok(());
        };
        let batch = async {
            write_reply(ctx, &mut writer, first).await?;
            let mut written = 1;
            let mut yielded = false;
            while written < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(next) => {
                        write_reply(ctx, &mut writer, next).await?;
                        written += 1;
                    }
                    // Handlers finishing together each wake this task right after their
                    // send; while some are still running (each holds a sender, the reader
                    // one more), yield once so that their replies queue first and share
                    // one write syscall, instead of one each.
                    Err(_) if !yielded && rx.sender_strong_count() > 1 => {
                        yielded = true;
                        crate::client::yield_to_ready_tasks().await;
                    }
                    Err(_) => break,
                }
            }
            writer.flush().await
        };
        match timeout(after, batch).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break Err(e),
            Err(_) => break Err(NetError::WriteTimeout { after }),
        }
    };
    match &result {
        Err(_) => {
            // Unblock the handlers and the reader.
            drop(rx);
            write_failed.cancel();
        }
        Ok(()) => {
            if timeout(after, writer.get_mut().shutdown()).await.is_err() {
                debug!("socket shutdown timed out");
            }
        }
    }
    result
}

/// Counts a reply in the facade metrics: its MTI, and for a response its DE 39 (which
/// takes a zero-copy view decode of the reply; only with a dialect).
fn record_out<H>(ctx: &Ctx<H>, payload: &[u8]) {
    let Some(dialect) = &ctx.dialect else {
        ctx.link.message(Direction::Out, None);
        return;
    };
    let mti = Mti::decode(dialect.mti_encoding(), payload).ok();
    ctx.link.message(Direction::Out, mti);
    if mti.is_some_and(Mti::is_response) {
        let view = MessageView::decode(dialect, payload).ok();
        let rc = view.as_ref().and_then(|v| v.field(39)).map(|f| f.text());
        ctx.link
            .response(Direction::Out, rc.as_ref().map(|t| t.as_bytes()));
    }
}

async fn write_reply<H, W: AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    writer: &mut FramedWrite<W, FrameCodec>,
    frame: Frame,
) -> Result<(), NetError> {
    let payload = frame.payload.clone();
    match writer.feed(frame).await {
        Ok(()) => {
            inc(&ctx.metrics.frames_out);
            record_out(ctx, &payload);
            Ok(())
        }
        Err(NetError::Io(e)) => Err(NetError::Io(e)),
        // Encoding failed before anything was written: a handler bug, not the peer's.
        Err(e) => {
            error!(error = %e, "handler reply cannot be framed; not sent");
            Ok(())
        }
    }
}
