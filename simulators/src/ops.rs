//! What `switchd` and `host_sim` share to be run in production: the flags (admin
//! endpoint, log format, drain timeout, TLS), the log set-up, the Prometheus recorder,
//! the admin endpoint and the signals. Every mechanism is the library's
//! (`isoswitch_net::admin`, `isoswitch_net::tls`, the `metrics` facade); this is wiring.
//!
//! - Logs go to stderr without colour unless stderr is a terminal and `NO_COLOR` is unset;
//!   `--log-format json` writes one JSON object a line.
//! - `--admin 127.0.0.1:PORT` installs a Prometheus recorder (before the program builds
//!   its links, which register their metrics then) and serves `/livez`, `/readyz`,
//!   `/metrics` and, where the program has something to reload, `POST /reload`.
//! - SIGHUP reloads; SIGTERM or SIGINT drains.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::{Result, SimError};
use crate::net::admin::{AdminConfig, AdminServer, ReloadError};
use crate::net::{ClientTls, ServerTls};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text for people (colour only on a terminal, never with `NO_COLOR`).
    #[default]
    Text,
    /// One JSON object a line, the event's fields as keys.
    Json,
}

/// Flags of a server program (`switchd`, `host_sim`).
#[derive(clap::Args, Debug, Clone)]
pub struct ServerOps {
    /// Admin endpoint (HTTP): GET /livez, /readyz, /metrics (Prometheus), POST /reload.
    /// Metrics are recorded only with it.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// On SIGTERM/SIGINT: how long requests being handled get to finish.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub drain_timeout: Duration,
    /// TLS certificate chain (PEM) presented to clients; with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates chaining to these CAs (PEM): mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServerOps {
    /// The server TLS configuration, if asked for.
    ///
    /// # Errors
    /// A file that cannot be read or holds no usable certificate or key (named).
    pub fn server_tls(&self) -> Result<Option<ServerTls>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(
                ServerTls::from_pem_files(cert, key, self.tls_client_ca.as_deref())
                    .map_err(|e| SimError::Config(format!("TLS: {e}")))?,
            )),
            _ => Ok(None),
        }
    }
}

/// Client-side TLS flags under a prefix (`--host-tls-*` on `switchd`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HostTls {
    /// Connect to the host over TLS, trusting these CAs (PEM); the host's certificate
    /// must name the host part of --host.
    #[arg(long, value_name = "FILE")]
    pub host_tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS with the host; with --host-tls-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "host_tls_key",
        requires = "host_tls_ca"
    )]
    pub host_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --host-tls-cert.
    #[arg(long, value_name = "FILE", requires = "host_tls_cert")]
    pub host_tls_key: Option<PathBuf>,
}

impl HostTls {
    /// The client TLS configuration, if asked for.
    ///
    /// # Errors
    /// As [`client_tls`].
    pub fn client_tls(&self) -> Result<Option<ClientTls>> {
        client_tls(
            self.host_tls_ca.as_deref(),
            self.host_tls_cert.as_deref(),
            self.host_tls_key.as_deref(),
        )
    }
}

/// A client TLS configuration from PEM files (`None` without a CA file).
///
/// # Errors
/// A file that cannot be read or holds nothing usable (named).
pub fn client_tls(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<ClientTls>> {
    let Some(ca) = ca else { return Ok(None) };
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(SimError::Config(
                "TLS: a client certificate needs its key, and a key its certificate".into(),
            ))
        }
    };
    ClientTls::from_pem_files(ca, identity)
        .map(Some)
        .map_err(|e| SimError::Config(format!("TLS: {e}")))
}

/// Whether log lines get colour: only on a terminal, never with `NO_COLOR` set (to
/// anything but the empty string, as no-color.org says).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the `tracing` subscriber on stderr: `RUST_LOG` (default `default`), in
/// `format`.
pub fn init_logging(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(use_colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .try_init(),
    };
}

/// Request and handler latencies, sync latencies (seconds).
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Journal group sizes (records).
const GROUP: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 8192.0,
];

/// Installs the Prometheus recorder as the global `metrics` recorder (names already carry
/// `isoswitch_`), with histogram buckets, and starts its upkeep. Call it before building
/// clients and servers.
///
/// # Errors
/// A recorder is installed already.
pub fn install_metrics() -> Result<PrometheusHandle> {
    let cfg = |e: metrics_exporter_prometheus::BuildError| SimError::Config(e.to_string());
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .map_err(cfg)?
        .set_buckets_for_metric(
            Matcher::Full("isoswitch_journal_group_records".into()),
            GROUP,
        )
        .map_err(cfg)?
        .install_recorder()
        .map_err(cfg)?;
    let h = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            h.run_upkeep();
        }
    });
    Ok(handle)
}

/// What the admin endpoint calls.
pub struct AdminHooks {
    /// `/readyz`: `Err(reason)` answers 503.
    pub ready: Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>,
    /// `/metrics`.
    pub metrics: PrometheusHandle,
    /// `POST /reload`, if the program has something to reload.
    pub reload: Option<Arc<dyn Fn() -> std::result::Result<String, ReloadError> + Send + Sync>>,
}

/// A running admin endpoint; [`Admin::stop`] ends it.
pub struct Admin {
    /// The address bound.
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").field("addr", &self.addr).finish()
    }
}

impl Admin {
    /// Binds `addr` and serves in the background.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(addr: &str, hooks: AdminHooks) -> Result<Admin> {
        let AdminHooks {
            ready,
            metrics,
            reload,
        } = hooks;
        let mut server = AdminServer::bind(addr, AdminConfig::default())
            .await
            .map_err(|e| SimError::Config(format!("admin endpoint {addr}: {e}")))?
            .readiness(move || ready())
            .metrics(move || metrics.render());
        if let Some(reload) = reload {
            server = server.reload(move || {
                let r = reload.clone();
                async move { r() }
            });
        }
        let bound = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .serve(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        tracing::info!(addr = %bound, "admin endpoint up");
        Ok(Admin {
            addr: bound,
            stop,
            task,
        })
    }

    /// Stops serving and waits (bounded).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Whether the data directory can still be written: its lock file opens for writing
/// (a read-only or vanished directory fails).
///
/// # Errors
/// Why not, as text.
pub fn store_writable(dir: &Path) -> std::result::Result<(), String> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(crate::reversal::datadir::LOCK_FILE))
        .map(drop)
        .map_err(|e| format!("store {} not writable: {e}", dir.display()))
}

/// A signal the programs act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: reload.
    Reload,
    /// SIGTERM or SIGINT: drain and stop.
    Stop,
}

/// The signals, as a stream.
pub struct Signals {
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals").finish_non_exhaustive()
    }
}

impl Signals {
    /// Listens for SIGHUP, SIGTERM and SIGINT from now on.
    pub fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                hup: signal(SignalKind::hangup()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            let hup = async {
                match self.hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let term = async {
                match self.term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = hup => Signal::Reload,
                () = term => Signal::Stop,
                _ = tokio::signal::ctrl_c() => Signal::Stop,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}

impl Default for Signals {
    fn default() -> Self {
        Signals::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new("1"))));
    }
}
