//! A chaos proxy for links framed with a 2-byte length prefix (`len2`, and `cup-pos`,
//! whose prefix counts the TPDU and header too).
//!
//! Each accepted connection gets its own upstream connection. Requests (client → server)
//! pass through; responses (server → client) are dropped with probability `drop`, held
//! back by `delay`; and any frame, either way, resets the pair with probability `reset`
//! (both sockets closed at once: whatever was in flight is lost).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Result, SimError};

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChaosConfig {
    /// Probability that a response is dropped.
    pub drop: f64,
    /// Delay added to each response (uniform in `0..=delay`).
    pub delay: Duration,
    /// Probability, per frame, that the connection pair is reset.
    pub reset: f64,
}

impl ChaosConfig {
    /// Whether the proxy changes anything.
    pub fn is_noop(&self) -> bool {
        self.drop <= 0.0 && self.reset <= 0.0 && self.delay.is_zero()
    }
}

/// Counters of a proxy.
#[derive(Debug, Default)]
pub struct ChaosStats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub responses: AtomicU64,
    pub dropped: AtomicU64,
    pub resets: AtomicU64,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct ChaosProxy {
    addr: SocketAddr,
    stats: Arc<ChaosStats>,
    task: JoinHandle<()>,
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ChaosProxy {
    /// Listens on `listen` (port 0: any) and forwards to `upstream`.
    pub async fn start(listen: &str, upstream: String, config: ChaosConfig) -> Result<ChaosProxy> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| SimError::io(format!("chaos proxy bind {listen}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| SimError::io("chaos proxy address", e))?;
        let stats = Arc::new(ChaosStats::default());
        let st = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let upstream = upstream.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        tracing::debug!(%upstream, "chaos proxy: upstream refused");
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    st.connections.fetch_add(1, Ordering::Relaxed);
                    pair(client, server, config, st).await;
                });
            }
        });
        tracing::info!(%addr, ?config, "chaos proxy listening");
        Ok(ChaosProxy { addr, stats, task })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters.
    pub fn stats(&self) -> &ChaosStats {
        &self.stats
    }

    /// One line of counters.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        format!(
            "{} connections, {} requests, {} responses, {} dropped, {} resets",
            s.connections.load(Ordering::Relaxed),
            s.requests.load(Ordering::Relaxed),
            s.responses.load(Ordering::Relaxed),
            s.dropped.load(Ordering::Relaxed),
            s.resets.load(Ordering::Relaxed)
        )
    }
}

async fn read_frame(r: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len).await.ok()?;
    let n = usize::from(u16::from_be_bytes(len));
    let mut buf = vec![0u8; n + 2];
    buf[..2].copy_from_slice(&len);
    r.read_exact(&mut buf[2..]).await.ok()?;
    Some(buf)
}

fn roll(p: f64) -> bool {
    p > 0.0 && rand::thread_rng().gen_bool(p.min(1.0))
}

async fn pair(client: TcpStream, server: TcpStream, config: ChaosConfig, st: Arc<ChaosStats>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        while let Some(f) = read_frame(&mut cr).await {
            st.requests.fetch_add(1, Ordering::Relaxed);
            if roll(config.reset) {
                st.resets.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if sw.write_all(&f).await.is_err() {
                return;
            }
        }
    };
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let down = async {
        while let Some(f) = read_frame(&mut sr).await {
            st.responses.fetch_add(1, Ordering::Relaxed);
            if roll(config.reset) {
                st.resets.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if roll(config.drop) {
                st.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let delay = if config.delay.is_zero() {
                Duration::ZERO
            } else {
                config
                    .delay
                    .mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
            };
            if tx.send((Instant::now() + delay, f)).await.is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((at, f)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if write_to(&mut cw, &f).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
        () = writer => {}
    }
}

async fn write_to(w: &mut OwnedWriteHalf, f: &[u8]) -> std::io::Result<()> {
    w.write_all(f).await
}
