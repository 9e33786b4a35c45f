//! `isoswitch-net`: moving ISO 8583 messages over TCP links.
//!
//! Messages are opaque [`bytes::Bytes`] to the client and the server; only the
//! [`DialectCorrelator`] looks inside them, through the codec. Module map, in
//! the order data flows:
//!
//! - [`framing`]: the wire framings (`len2`, `len4`, `ascii4`, `cup-pos` with TPDU and
//!   application header) as a `tokio_util` codec turning a read buffer into zero-copy
//!   [`Frame`]s, with a maximum frame size checked before any allocation.
//! - [`correlate`]: the [`Correlator`] trait that extracts the [`CorrelationKey`] pairing a
//!   response with its request; [`DialectCorrelator`] does it for ISO 8583 (response MTI +
//!   DE 41 + DE 11) through `isoswitch_codec::MessageView`.
//! - [`client`]: [`Client`], many requests in flight on one reconnecting connection,
//!   matched by key; unmatched messages go to an [`UnmatchedHandler`]; idle echo tests.
//! - [`server`]: [`Server`], per-connection read/write tasks calling an async [`Handler`]
//!   concurrently, with connection cap, idle timeout, per-terminal [`RateLimit`], optional
//!   TLS, handlers that run to completion when the peer goes away, one shared decode per
//!   message ([`Request::message`]) and a graceful drain ([`ServerControl::drain`]).
//! - [`tls`]: rustls on both sides: [`ServerTls`] (certificate, optional mutual TLS),
//!   [`ClientTls`] and the [`TlsConnector`], PEM loading with errors naming the file.
//! - [`metrics`]: counters of the client and the server, as snapshots and through the
//!   `metrics` facade (the table of every `isoswitch_*` metric is there).
//! - [`admin`]: the HTTP/1.1 admin endpoint mechanism (`/livez`, `/readyz`, `/metrics`,
//!   `POST /reload`) with caller-provided checks, render function and reload hook.
//! - [`error`]: [`NetError`], and [`RequestError`] whose variants tell "definitely not sent"
//!   ([`RequestError::Rejected`]) from "maybe delivered" (`Timeout`, `ConnectionLost`).
//!
//! ```text
//! caller ─request─▶ Client ─Frame─▶ FrameCodec ─bytes─▶ TCP ─▶ FrameCodec ─Frame─▶ Server ─▶ Handler
//!        ◀─response─ (Correlator key match)                                      ◀─reply──┘
//! ```

//!
//! ```no_run
//! use std::time::Duration;
//! use isoswitch_codec::Dialect;
//! use isoswitch_net::{
//!     Client, ClientConfig, DialectCorrelator, Frame, Framing, Request, Server, ServerConfig,
//!     TcpConnector,
//! };
//!
//! # async fn demo(msg: bytes::Bytes) -> Result<(), Box<dyn std::error::Error>> {
//! // A server answering every message (the reply's TPDU is swapped automatically).
//! let handler = |req: Request| async move { Some(Frame::new(req.frame.payload)) };
//! let server = Server::bind("127.0.0.1:0", Framing::CupPos, ServerConfig::default(), handler)
//!     .await?;
//! let addr = server.local_addr();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! tokio::spawn(server.serve(async move { let _ = stopped.await; }));
//!
//! // A client pairing responses by response MTI + DE 41 + DE 11.
//! let dialect = Dialect::builtin("cup-pos").ok_or("no such dialect")?;
//! let client = Client::builder(ClientConfig::new(Framing::CupPos), DialectCorrelator::new(dialect))
//!     .connect(TcpConnector::new(addr.to_string()))
//!     .await?;
//! match client.request(msg, Duration::from_secs(30)).await {
//!     Ok(_response) => {}
//!     Err(e) if e.maybe_delivered() => { /* Timeout or ConnectionLost: reverse */ }
//!     Err(_not_sent) => { /* Rejected: nothing reached the host */ }
//! }
//! client.close(Duration::from_secs(5)).await;
//! let _ = stop.send(());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod admin;
pub mod client;
pub mod correlate;
pub mod error;
pub mod framing;
pub mod metrics;
pub mod server;
pub mod tls;

pub use client::{
    Client, ClientBuilder, ClientConfig, ConnState, Connector, EchoConfig, ReconnectPolicy,
    Response, TcpConnector, Unmatched, UnmatchedHandler, UnmatchedKind,
};
pub use correlate::{CorrelationKey, Correlator, DialectCorrelator, Inspected, TerminalKey};
pub use error::{NetError, RejectReason, RequestError};
pub use framing::{AppHeader, CupHeader, Frame, FrameCodec, Framing, Tpdu};
pub use metrics::{ClientMetrics, ClientMetricsSnapshot, ServerMetrics, ServerMetricsSnapshot};
pub use server::{
    CloseReason, ConnectionInfo, DisconnectPolicy, DrainReport, Handler, RateLimit, Request,
    Server, ServerConfig, ServerControl,
};
pub use tls::{ClientTls, ServerTls, TlsConnector, TlsError, TlsInfo};
