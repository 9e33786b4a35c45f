//! The concurrent server: one task per connection reading frames and dispatching each to the
//! user's async [`Handler`] on its own task (so responses may leave out of order), one
//! bounded writer per connection, a connection cap, an idle timeout, a per-terminal
//! [`RateLimit`], and graceful shutdown driven by a future the caller passes.
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
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::correlate::TerminalKey;
use crate::error::NetError;
use crate::framing::{CupHeader, Frame, FrameCodec, Framing};
use crate::metrics::{inc, ServerMetrics};

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
    /// before they are aborted.
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    /// 8 KiB frames, 1024 connections, 64 in flight per connection, 60 s idle, 10 s write,
    /// 30 s shutdown grace.
    fn default() -> Self {
        Self {
            max_frame_len: 8192,
            max_connections: 1024,
            max_in_flight_per_connection: 64,
            write_queue: 64,
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
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
}

/// One inbound message with its connection's metadata.
#[derive(Clone, Debug)]
pub struct Request {
    /// The connection it arrived on.
    pub conn: Arc<ConnectionInfo>,
    /// The message and, for `cup-pos`, its header.
    pub frame: Frame,
}

impl Request {
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
    dialect: Option<isoswitch_codec::Dialect>,
}

/// A bound TCP server; [`Server::serve`] runs it.
pub struct Server<H> {
    listener: TcpListener,
    local_addr: SocketAddr,
    framing: Framing,
    ctx: Ctx<H>,
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
                config,
                rate_limit: None,
                on_close: None,
                metrics: Arc::new(ServerMetrics::default()),
                dialect: None,
            },
        })
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
    pub fn with_dialect(mut self, dialect: isoswitch_codec::Dialect) -> Self {
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

    /// Accepts and serves connections until `shutdown` completes; then stops accepting,
    /// lets every connection finish its in-flight messages (for at most
    /// `shutdown_timeout`), closes them and returns.
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
        let token = CancellationToken::new();
        let slots = Arc::new(Semaphore::new(ctx.config.max_connections));
        let mut conns = JoinSet::new();
        let mut next_id = 0u64;
        info!(%local_addr, ?framing, "server listening");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = conns.join_next(), if !conns.is_empty() => {
                    if let Err(e) = done {
                        error!(error = %e, "connection task failed");
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer_addr)) => {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            inc(&ctx.metrics.refused);
                            warn!(%peer_addr, "connection refused: maximum reached");
                            drop(stream);
                            continue;
                        };
                        next_id += 1;
                        inc(&ctx.metrics.accepted);
                        let info = Arc::new(ConnectionInfo {
                            id: next_id,
                            peer_addr,
                            local_addr,
                            framing,
                        });
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
        info!(
            connections = conns.len(),
            "shutting down: finishing in-flight messages"
        );
        token.cancel();
        let drain = async { while conns.join_next().await.is_some() {} };
        if timeout(ctx.config.shutdown_timeout, drain).await.is_err() {
            warn!(
                remaining = conns.len(),
                "shutdown timeout: aborting connections"
            );
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        }
        info!("server stopped");
        Ok(())
    }
}

async fn serve_connection<H: Handler>(
    ctx: Arc<Ctx<H>>,
    stream: TcpStream,
    info: Arc<ConnectionInfo>,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "set_nodelay failed");
    }
    info!("connection accepted");
    let (rd, wr) = stream.into_split();
    let reader = FramedRead::new(rd, ctx.codec.clone());
    let writer = FramedWrite::new(wr, ctx.codec.clone());
    let (tx, rx) = mpsc::channel(ctx.config.write_queue);
    let write_failed = CancellationToken::new();

    let (read_reason, write_result) = tokio::join!(
        read_side(&ctx, &info, reader, tx, &shutdown, &write_failed),
        write_side(&ctx, writer, rx, &write_failed),
    );
    let reason = match write_result {
        Err(e) => CloseReason::Error(e),
        Ok(()) => read_reason,
    };

    inc(&ctx.metrics.closed);
    match &reason {
        CloseReason::Error(e) if e.is_framing() => {
            inc(&ctx.metrics.protocol_errors);
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
}

async fn read_side<H: Handler>(
    ctx: &Ctx<H>,
    info: &Arc<ConnectionInfo>,
    mut reader: FramedRead<tokio::net::tcp::OwnedReadHalf, FrameCodec>,
    tx: mpsc::Sender<Frame>,
    shutdown: &CancellationToken,
    write_failed: &CancellationToken,
) -> CloseReason {
    let idle = ctx.config.idle_timeout;
    let max_in_flight = ctx.config.max_in_flight_per_connection;
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut deadline = Instant::now() + idle;
    let reason = loop {
        if tasks.len() >= max_in_flight {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break CloseReason::Shutdown,
                _ = write_failed.cancelled() => break CloseReason::Shutdown,
                Some(done) = tasks.join_next() => log_task(done),
            }
            // Time spent at the cap is ours, not the peer's.
            deadline = deadline.max(Instant::now() + idle);
            continue;
        }
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break CloseReason::Shutdown,
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
        dispatch(ctx, info, frame, &mut tasks, tx.clone());
    };
    drop(tx);
    if write_failed.is_cancelled() {
        // Nothing more can be written: stop the handlers.
        tasks.abort_all();
    }
    // Finish in-flight messages (bounded by the server's shutdown timeout on shutdown).
    while let Some(done) = tasks.join_next().await {
        log_task(done);
    }
    reason
}

fn log_task(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            error!(error = %e, "handler panicked");
        }
    }
}

/// The span of one inbound message: connection and length, and with a dialect the MTI,
/// STAN, terminal ID and masked PAN (never the clear PAN). Fields are only decoded when the
/// span is enabled.
fn message_span(
    dialect: Option<&isoswitch_codec::Dialect>,
    conn: u64,
    payload: &[u8],
) -> tracing::Span {
    let span = tracing::debug_span!(
        "message",
        conn,
        len = payload.len(),
        mti = tracing::field::Empty,
        stan = tracing::field::Empty,
        tid = tracing::field::Empty,
        pan = tracing::field::Empty,
    );
    if let (false, Some(d)) = (span.is_disabled(), dialect) {
        if let Ok(view) = isoswitch_codec::MessageView::decode(d, payload) {
            span.record("mti", tracing::field::display(view.mti()));
            if let Some(f) = view.field(11) {
                span.record("stan", tracing::field::display(f.text()));
            }
            if let Some(f) = view.field(41) {
                span.record("tid", tracing::field::display(f.text()));
            }
            if let Some(f) = view.field(2) {
                span.record("pan", tracing::field::display(f.masked()));
            }
        }
    }
    span
}

fn dispatch<H: Handler>(
    ctx: &Ctx<H>,
    info: &Arc<ConnectionInfo>,
    frame: Frame,
    tasks: &mut JoinSet<()>,
    tx: mpsc::Sender<Frame>,
) {
    let request = Request {
        conn: info.clone(),
        frame,
    };
    let span = message_span(ctx.dialect.as_ref(), info.id, &request.frame.payload);
    let reply_header = request.reply_header();
    if let Some(limit) = &ctx.rate_limit {
        if let Some(terminal) = (limit.key)(&request.frame) {
            if !limit.check(terminal, Instant::now()) {
                inc(&ctx.metrics.rate_limited);
                span.in_scope(|| warn!(?terminal, "rate limit exceeded"));
                if let Some(mut out) = (limit.on_exceeded)(&request) {
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
                return;
            }
        }
    }
    let handler = ctx.handler.clone();
    tasks.spawn(
        async move {
            match handler.handle(request).await {
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

async fn write_side<H>(
    ctx: &Ctx<H>,
    mut writer: FramedWrite<tokio::net::tcp::OwnedWriteHalf, FrameCodec>,
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

async fn write_reply<H>(
    ctx: &Ctx<H>,
    writer: &mut FramedWrite<tokio::net::tcp::OwnedWriteHalf, FrameCodec>,
    frame: Frame,
) -> Result<(), NetError> {
    match writer.feed(frame).await {
        Ok(()) => {
            inc(&ctx.metrics.frames_out);
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
