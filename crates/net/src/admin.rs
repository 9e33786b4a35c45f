//! The admin endpoint mechanism: a small HTTP/1.1 server for operations.
//!
//! | request | answer |
//! |---|---|
//! | `GET /livez` | `200 ok` while the endpoint runs |
//! | `GET /readyz` | `200 ready` when the [`AdminServer::readiness`] check passes, else `503` with its reason as the body |
//! | `GET /metrics` | `200` with what the [`AdminServer::metrics`] render function returns, as `text/plain; version=0.0.4` (the Prometheus text format) |
//! | `POST /reload` | calls the [`AdminServer::reload`] hook: `200` with its message, or `400` / `500` with its [`ReloadError`] |
//!
//! Anything else is `404` (unknown path) or `405` (known path, other method). The program
//! provides the checks, the render function (e.g. `PrometheusHandle::render` of
//! `metrics-exporter-prometheus`) and the hook; the library owns the HTTP.
//!
//! One request per connection (`Connection: close`). Bad input is answered, never
//! trusted: the request head is parsed by [`parse_request`] (sans-IO, fuzzed) within
//! [`AdminConfig::max_request_bytes`], a body is read only up to
//! [`AdminConfig::max_body_bytes`] (and ignored), the whole request must arrive within
//! [`AdminConfig::read_timeout`], the answer leave within [`AdminConfig::write_timeout`], and
//! at most [`AdminConfig::max_connections`] connections are served at once.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};
use tracing::{debug, info, warn, Instrument};

use crate::error::NetError;

/// Most headers a request may carry.
pub const MAX_HEADERS: usize = 32;

/// Limits of the admin endpoint.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Largest request head (request line and headers) accepted; larger is `431`.
    pub max_request_bytes: usize,
    /// Largest request body accepted (it is read and ignored); larger is `413`.
    pub max_body_bytes: usize,
    /// The whole request must arrive within this, or the connection is closed.
    pub read_timeout: Duration,
    /// The answer must be written within this.
    pub write_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for AdminConfig {
    /// 8 KiB head, 64 KiB body, 5 s to read, 10 s to write, 16 connections.
    fn default() -> Self {
        Self {
            max_request_bytes: 8 * 1024,
            max_body_bytes: 64 * 1024,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_connections: 16,
        }
    }
}

/// The method of a request, as far as the endpoint cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD` (answered like `GET`, without the body).
    Head,
    /// `POST`.
    Post,
    /// Any other method.
    Other,
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The path, without the query string.
    pub path: String,
    /// Bytes of the head (request line, headers and the blank line).
    pub head_len: usize,
    /// The body length announced by `Content-Length` (0 without it).
    pub content_length: usize,
}

/// Why a request head is refused; each maps to an HTTP status ([`ParseError::status`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not HTTP/1.x, or a malformed request line or header.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The head is larger than allowed (or has more than [`MAX_HEADERS`] headers).
    #[error("request head too large")]
    TooLarge,
    /// `Content-Length` is not a number, appears twice with different values, or a
    /// `Transfer-Encoding` is used (not supported).
    #[error("unsupported or invalid body framing: {0}")]
    BadBody(&'static str),
}

impl ParseError {
    /// The HTTP status code answering this error.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Malformed(_) => 400,
            ParseError::TooLarge => 431,
            ParseError::BadBody(_) => 400,
        }
    }
}

/// Parses a request head from the bytes received so far: `Ok(None)` when more bytes are
/// needed. Sans-IO; never panics; `buf` is only read up to `max_head` bytes.
///
/// # Errors
/// [`ParseError`] for a request that must be refused.
pub fn parse_request(buf: &[u8], max_head: usize) -> Result<Option<RequestHead>, ParseError> {
    let window = &buf[..buf.len().min(max_head)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_head {
                Err(ParseError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooLarge),
        Err(httparse::Error::Version) => return Err(ParseError::Malformed("not HTTP/1.x")),
        Err(_) => return Err(ParseError::Malformed("bad request line or header")),
    };
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("POST") => Method::Post,
        _ => Method::Other,
    };
    let target = req.path.ok_or(ParseError::Malformed("no request target"))?;
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut content_length: Option<usize> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ParseError::BadBody("Transfer-Encoding is not supported"));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(ParseError::BadBody("Content-Length is not a number"))?;
            if content_length.is_some_and(|m| m != n) {
                return Err(ParseError::BadBody("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        }
    }
    Ok(Some(RequestHead {
        method,
        path,
        head_len,
        content_length: content_length.unwrap_or(0),
    }))
}

/// Why a reload failed, and so which status answers it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration was refused (e.g. it does not validate; the old one stays):
    /// `400`.
    #[error("{0}")]
    Rejected(String),
    /// The reload could not be carried out: `500`.
    #[error("{0}")]
    Failed(String),
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type ReadyFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;
type RenderFn = Arc<dyn Fn() -> String + Send + Sync>;
type ReloadFn = Arc<dyn Fn() -> BoxFuture<Result<String, ReloadError>> + Send + Sync>;

#[derive(Clone)]
struct Hooks {
    ready: Option<ReadyFn>,
    render: Option<RenderFn>,
    reload: Option<ReloadFn>,
}

/// A bound admin endpoint; [`AdminServer::serve`] runs it.
pub struct AdminServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: AdminConfig,
    hooks: Hooks,
}

impl fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminServer")
            .field("local_addr", &self.local_addr)
            .field("config", &self.config)
            .field("readiness", &self.hooks.ready.is_some())
            .field("metrics", &self.hooks.render.is_some())
            .field("reload", &self.hooks.reload.is_some())
            .finish()
    }
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port: see [`AdminServer::local_addr`]). Without
    /// hooks, `/readyz` answers 200, `/metrics` an empty body and `/reload` 404.
    ///
    /// # Errors
    /// [`NetError::InvalidConfig`] or the bind error.
    pub async fn bind(addr: impl ToSocketAddrs, config: AdminConfig) -> Result<Self, NetError> {
        if config.max_connections == 0 || config.max_request_bytes < 16 {
            return Err(NetError::InvalidConfig {
                reason:
                    "admin: max_connections must be at least 1 and max_request_bytes at least 16",
            });
        }
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            config,
            hooks: Hooks {
                ready: None,
                render: None,
                reload: None,
            },
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The readiness check of `/readyz`: `Err(reason)` answers 503 with the reason.
    pub fn readiness(
        mut self,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.ready = Some(Arc::new(check));
        self
    }

    /// The body of `/metrics` (Prometheus text format).
    pub fn metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.hooks.render = Some(Arc::new(render));
        self
    }

    /// The hook of `POST /reload`.
    pub fn reload<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, ReloadError>> + Send + 'static,
    {
        self.hooks.reload = Some(Arc::new(move || Box::pin(hook())));
        self
    }

    /// Serves until `shutdown` completes, then lets the requests being answered finish
    /// (for at most the write timeout) and returns.
    ///
    /// # Errors
    /// None at present: accept errors are logged and retried.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NetError> {
        let AdminServer {
            listener,
            local_addr,
            config,
            hooks,
        } = self;
        let config = Arc::new(config);
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let mut conns = JoinSet::new();
        info!(%local_addr, "admin endpoint listening");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            warn!(%peer, "admin connection refused: maximum reached");
                            continue;
                        };
                        let (config, hooks) = (config.clone(), hooks.clone());
                        conns.spawn(
                            async move {
                                answer(stream, &config, &hooks).await;
                                drop(slot);
                            }
                            .instrument(tracing::debug_span!("admin", %peer)),
                        );
                    }
                    Err(e) => {
                        warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        let finish = async { while conns.join_next().await.is_some() {} };
        if timeout(config.write_timeout, finish).await.is_err() {
            conns.abort_all();
        }
        info!("admin endpoint stopped");
        Ok(())
    }
}

/// One answer: status, content type and body.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    allow: Option<&'static str>,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: None,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

async fn route(head: &RequestHead, hooks: &Hooks) -> Answer {
    let (allowed, wanted): (&'static str, Method) = match head.path.as_str() {
        "/livez" | "/readyz" | "/metrics" => ("GET, HEAD", Method::Get),
        "/reload" if hooks.reload.is_some() => ("POST", Method::Post),
        _ => return Answer::text(404, "not found\n"),
    };
    let method = if head.method == Method::Head {
        Method::Get
    } else {
        head.method
    };
    if method != wanted {
        let mut a = Answer::text(405, "method not allowed\n");
        a.allow = Some(allowed);
        return a;
    }
    match head.path.as_str() {
        "/livez" => Answer::text(200, "ok\n"),
        "/readyz" => match hooks.ready.as_ref().map(|f| f()) {
            None | Some(Ok(())) => Answer::text(200, "ready\n"),
            Some(Err(why)) => Answer::text(503, format!("not ready: {why}\n")),
        },
        "/metrics" => Answer {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: hooks.render.as_ref().map(|f| f()).unwrap_or_default(),
            allow: None,
        },
        _ => match &hooks.reload {
            Some(hook) => match hook().await {
                Ok(msg) => Answer::text(200, format!("{msg}\n")),
                Err(e @ ReloadError::Rejected(_)) => Answer::text(400, format!("{e}\n")),
                Err(e @ ReloadError::Failed(_)) => Answer::text(500, format!("{e}\n")),
            },
            None => Answer::text(404, "not found\n"),
        },
    }
}

/// Reads one request (bounded in size and time) and answers it.
async fn answer(mut stream: TcpStream, config: &AdminConfig, hooks: &Hooks) {
    let deadline = Instant::now() + config.read_timeout;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let parsed = loop {
        match parse_request(&buf, config.max_request_bytes) {
            Ok(Some(head)) => break Ok(head),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => {
                debug!("admin peer closed before a complete request");
                return;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => {
                debug!(error = %e, "admin read failed");
                return;
            }
            Err(_) => {
                write_answer(
                    &mut stream,
                    config,
                    Answer::text(408, "request timeout\n"),
                    false,
                )
                .await;
                return;
            }
        }
    };
    let head = match parsed {
        Ok(head) => head,
        Err(e) => {
            let status = e.status();
            write_answer(
                &mut stream,
                config,
                Answer::text(status, format!("{e}\n")),
                false,
            )
            .await;
            return;
        }
    };
    if head.content_length > config.max_body_bytes {
        write_answer(
            &mut stream,
            config,
            Answer::text(413, "body too large\n"),
            false,
        )
        .await;
        return;
    }
    // Read (and ignore) the body, so that closing does not reset the connection.
    let mut have = buf.len().saturating_sub(head.head_len);
    while have < head.content_length {
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => have += n,
            Err(_) => {
                write_answer(
                    &mut stream,
                    config,
                    Answer::text(408, "request timeout\n"),
                    false,
                )
                .await;
                return;
            }
        }
    }
    let answer = route(&head, hooks).await;
    debug!(path = %head.path, status = answer.status, "admin request");
    write_answer(&mut stream, config, answer, head.method == Method::Head).await;
}

async fn write_answer(stream: &mut TcpStream, config: &AdminConfig, a: Answer, head_only: bool) {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        a.status,
        reason(a.status),
        a.content_type,
        a.body.len()
    );
    if let Some(allow) = a.allow {
        out.push_str("Allow: ");
        out.push_str(allow);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&a.body);
    }
    let write = async {
        stream.write_all(out.as_bytes()).await?;
        stream.shutdown().await
    };
    match timeout(config.write_timeout, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "admin write failed"),
        Err(_) => debug!("admin write timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_method_path_and_length() {
        let r = parse_request(b"GET /readyz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", 8192)
            .unwrap()
            .unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/readyz");
        assert_eq!(r.content_length, 0);
        assert_eq!(r.head_len, 37);
        let r = parse_request(
            b"POST /reload HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc",
            8192,
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.method, r.content_length), (Method::Post, 3));
    }

    #[test]
    fn partial_and_refused_heads() {
        assert_eq!(parse_request(b"GET /livez HTTP/1.1\r\n", 8192), Ok(None));
        assert_eq!(parse_request(b"", 8192), Ok(None));
        assert_eq!(
            parse_request(b"GET /livez HTTP/1.1\r\nX: aaaaaaaaaaaaaaaa", 16),
            Err(ParseError::TooLarge)
        );
        assert!(matches!(
            parse_request(b"GET /livez HTTP/2.0\r\n\r\n", 8192),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"\x00\x01\x02 garbage\r\n\r\n", 8192),
            Err(ParseError::Malformed(_))
        ));
        for bad in [
            &b"POST /reload HTTP/1.1\r\nContent-Length: -1\r\n\r\n"[..],
            b"POST /reload HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST /reload HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST /reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(bad, 8192), Err(ParseError::BadBody(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many: String = (0..40).map(|i| format!("H{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse_request(req.as_bytes(), 8192),
            Err(ParseError::TooLarge)
        );
    }
}
