//! The simulators behind the examples: `switchd` (acquirer switch), `host_sim`
//! (issuer/host), `terminal_sim` (POS terminals) and `demo` (all three in one process).
//!
//! Not a stable API: the examples are thin `main`s over these modules, and the end-to-end
//! tests drive the same code (in-process or as child processes).
//!
//! ## Module map
//! - [`config`] — terminal master keys (`terminals.toml`), the zone master key file, the
//!   key-encryption key file (`host_sim --kek`).
//! - [`chaos`] — a frame-aware TCP proxy that drops responses, delays them and resets
//!   connections.
//! - [`host`] — `host_sim`: network sign-on, MAC checks, approval rule, ledger per card and
//!   idempotent reversals through `isoswitch-reversal` (`ReversalHandler` over the
//!   idempotency part of a locked `DataDir`; the zone session sealed under a KEK in its
//!   sessions part, restored at start), reconciliation (0500/0510, DE 74–89, 97).
//! - [`switch`] — `switchd`'s wiring over `isoswitch_switch::SwitchService` (a locked data
//!   directory, the terminals file, the keys); every mechanism is the library's.
//! - [`terminal`] — `terminal_sim`: N terminals on the library (`UpstreamLink` +
//!   `ReversalDriver` + settlement, state durable under the data directory), load at a
//!   target rate, and the report (latency percentiles, throughput).
//! - [`demo`] — all three in one process with temporary data directories.
//! - [`ops`] — running the programs in production: admin endpoint, Prometheus
//!   recorder, log format and colour, TLS flags, signals (reload, drain).
//! - [`money`] — the transaction kinds and the totals both sides of a settlement compute.
//!
//! Data flows: terminal ─`cup-pos`─▶ switch ─`iso87-binary`─▶ host, and back; every hop
//! may go through a [`chaos`] proxy.

#![allow(missing_docs)]

// The library crates, under the names the modules use (`crate::codec::…`).
pub(crate) use isoswitch::{codec, net, reversal, session};

pub mod chaos;
pub mod config;
pub mod demo;
pub mod host;
pub mod money;
pub mod ops;
pub mod switch;
pub mod terminal;

use std::fmt;

/// Errors of the simulators.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("I/O error on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error(transparent)]
    Reversal(#[from] crate::reversal::ReversalError),
    #[error("journal {path}: {what}")]
    Journal { path: String, what: String },
    #[error("protocol: {0}")]
    Protocol(String),
}

impl SimError {
    pub fn io(what: impl fmt::Display, source: std::io::Error) -> SimError {
        SimError::Io {
            what: what.to_string(),
            source,
        }
    }
}

/// Result of the simulators.
pub type Result<T, E = SimError> = std::result::Result<T, E>;

/// Installs a `tracing` subscriber reading `RUST_LOG` (default `default`), on stderr, as
/// text (colour only on a terminal and without `NO_COLOR`; see [`ops::init_logging`]).
pub fn init_tracing(default: &str) {
    ops::init_logging(default, ops::LogFormat::Text);
}

/// Uppercase hex.
pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(D[usize::from(x >> 4)]));
        s.push(char::from(D[usize::from(x & 15)]));
    }
    s
}

/// Decodes hex (whitespace ignored); `None` on a bad digit or odd length.
pub fn unhex(t: &str) -> Option<Vec<u8>> {
    let clean: Vec<u8> = t.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if clean.len() % 2 == 1 {
        return None;
    }
    clean
        .chunks_exact(2)
        .map(|p| {
            let h = char::from(p[0]).to_digit(16)?;
            let l = char::from(p[1]).to_digit(16)?;
            u8::try_from(h * 16 + l).ok()
        })
        .collect()
}

/// The local date and time now.
/// (The UTC offset is read once: looking up the local zone on every message costs more
/// than the rest of the date handling.)
pub fn local_now() -> chrono::NaiveDateTime {
    static OFFSET: std::sync::OnceLock<chrono::FixedOffset> = std::sync::OnceLock::new();
    let off = *OFFSET.get_or_init(|| *chrono::Local::now().offset());
    chrono::Utc::now().with_timezone(&off).naive_local()
}

/// A PAN masked for logs (first 6, last 4).
pub fn masked_pan(pan: &str) -> String {
    crate::codec::mask::mask_pan(pan)
}

/// Parses `5%` or `0.05` into a probability in 0..=1.
pub fn parse_ratio(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = if let Some(p) = t.strip_suffix('%') {
        p.trim().parse::<f64>().map_err(|e| e.to_string())? / 100.0
    } else {
        t.parse::<f64>().map_err(|e| e.to_string())?
    };
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s}: not between 0 and 100%"))
    }
}

/// Parses `250ms`, `2s`, `1m` or a plain number of milliseconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, mult) = if let Some(v) = t.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1000.0)
    } else if let Some(v) = t.strip_suffix('m') {
        (v, 60_000.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|e| format!("{s}: {e}"))?;
    if !(0.0..=86_400_000.0).contains(&(v * mult)) {
        return Err(format!("{s}: out of range"));
    }
    Ok(std::time::Duration::from_secs_f64(v * mult / 1000.0))
}

/// A server started in the background; [`Running::stop`] ends it gracefully, dropping it
/// aborts it.
#[derive(Debug)]
pub struct Running {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub(crate) fn new(
        addr: std::net::SocketAddr,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    ) -> Running {
        Running {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Runs a bound server in a task until [`Running::stop`].
    pub(crate) fn serve<H: crate::net::Handler>(server: crate::net::Server<H>) -> Running {
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .serve(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Running::new(addr, stop, task)
    }

    /// Stops accepting, lets in-flight messages finish (bounded), and waits.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Opens (and locks) a program's data directory with its journals and stores sealed
/// under the data key derived from `kek` (no PAN or track data in clear at rest; a
/// directory written in clear by an earlier version is migrated on open).
///
/// # Errors
/// Locked by another process, I/O errors.
pub fn open_data_dir(
    path: &std::path::Path,
    kek: &crate::session::Kek,
) -> std::result::Result<crate::reversal::DataDir, crate::reversal::ReversalError> {
    let keys = crate::reversal::seal::DataKeys::from_kek(kek)?;
    crate::reversal::DataDir::open_with(
        path,
        crate::reversal::DataDirConfig {
            data_keys: Some(std::sync::Arc::new(keys)),
            ..crate::reversal::DataDirConfig::default()
        },
    )
}
