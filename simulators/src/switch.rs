//! `switchd`'s wiring: configuration in, an `isoswitch_switch::SwitchService` over a
//! locked data directory out. Every mechanism (admission, idempotency, field mapping, PIN
//! translation, the upstream link and its sign-ons, reversals and advices, sessions that
//! survive a restart) is the library's; see `isoswitch_switch`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::config::{TerminalEntry, ACQUIRER_ID, SWITCH_MID, SWITCH_TID};
use super::{local_now, Result, Running};
use crate::net::ServerConfig;
use crate::reversal::{DataDir, Store};
use crate::session::crypto::Key;
use crate::session::{Kek, TerminalId};
use isoswitch::hsm::thales::{ClientConfig, ThalesClient};
use isoswitch::hsm::{AnyModule, SoftHsm};
use isoswitch::switch::{DukptPins, ServiceConfig, SwitchConfig as LibSwitchConfig, SwitchService};

/// `switchd` settings.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    pub terminals: Vec<TerminalEntry>,
    pub zone_key: Key,
    pub kek: Kek,
    /// The host (`host:port`).
    pub host_addr: String,
    pub data_dir: PathBuf,
    /// How long to wait for the host.
    pub upstream_timeout: Duration,
    /// Upstream requests in flight at most.
    pub upstream_in_flight: usize,
    /// The security module that translates DUKPT terminals' PIN blocks (`None`: none;
    /// terminals with session keys only).
    pub hsm: Option<HsmConfig>,
}

/// More hosts for `switchd --host A --host B …` (a link pool, `isoswitch_switch::pool`).
#[derive(Debug, Clone, Default)]
pub struct HostPool {
    /// The hosts after the first (`SwitchConfig::host_addr`).
    pub more_hosts: Vec<String>,
    /// `--host-strategy`.
    pub strategy: isoswitch::switch::Strategy,
}

/// The security module of `switchd` and the keys it holds for DUKPT terminals.
#[derive(Debug, Clone)]
pub struct HsmConfig {
    /// A Thales payShield-compatible HSM (`host:port`, e.g. `hsm_sim`); `None`: the
    /// in-process `SoftHsm` with the LMK in `lmk`.
    pub remote: Option<String>,
    /// The SoftHsm's local master key file (hex).
    pub lmk: PathBuf,
    /// The BDK under the module's LMK (hex file).
    pub bdk: PathBuf,
    /// The zone master key under the module's LMK (hex file).
    pub zmk: PathBuf,
}

impl HsmConfig {
    /// Opens the module (connects to a remote one) and loads the keys.
    async fn open(&self) -> Result<Arc<DukptPins>> {
        let module = match &self.remote {
            Some(addr) => AnyModule::Thales(
                ThalesClient::connect(addr.as_str(), ClientConfig::default())
                    .await
                    .map_err(|e| super::SimError::Config(format!("--hsm {addr}: {e}")))?,
            ),
            None => AnyModule::Soft(Arc::new(
                SoftHsm::from_master_key_file(&self.lmk)
                    .map_err(|e| super::SimError::Config(e.to_string()))?,
            )),
        };
        tracing::info!(
            module = module.kind(),
            "security module for DUKPT terminals"
        );
        let bdk = super::config::load_key_under_lmk(&self.bdk, "BDK under LMK")?;
        let zmk = super::config::load_key_under_lmk(&self.zmk, "ZMK under LMK")?;
        let pins = DukptPins::new(module, &bdk, &zmk, super::terminal::DUKPT_KSN_FIELD)
            .map_err(|e| super::SimError::Config(e.to_string()))?;
        Ok(Arc::new(pins))
    }
}

fn terminal_server_config() -> ServerConfig {
    ServerConfig {
        max_in_flight_per_connection: 64,
        write_queue: 256,
        idle_timeout: Duration::from_secs(600),
        shutdown_timeout: Duration::from_secs(5),
        max_connections: 4096,
        ..ServerConfig::default()
    }
}

/// A running switch over a store: the data directory by default, or a shared
/// PostgreSQL store ([`Switch::start_on`]).
pub struct Switch<St: Store + Clone = DataDir> {
    service: std::sync::Arc<SwitchService<St>>,
    // Keeps the store (a data directory's lock) for as long as the switch runs.
    _store: St,
}

impl<St: Store + Clone> std::fmt::Debug for Switch<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch").finish_non_exhaustive()
    }
}

fn utc_now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

impl Switch {
    /// Opens the data directory (refused while another process holds it), restores the
    /// sessions, recovers the reversal journal and connects to the host.
    pub async fn start(config: SwitchConfig) -> Result<Switch> {
        Self::start_with_tls(config, None).await
    }

    /// [`Switch::start`], connecting to the host over TLS when `host_tls` is given.
    pub async fn start_with_tls(
        config: SwitchConfig,
        host_tls: Option<crate::net::ClientTls>,
    ) -> Result<Switch> {
        Self::start_with(config, host_tls, HostPool::default()).await
    }

    /// [`Switch::start_with_tls`] with a pool of hosts (`pool.more_hosts` beside
    /// `config.host_addr`).
    pub async fn start_with(
        config: SwitchConfig,
        host_tls: Option<crate::net::ClientTls>,
        pool: HostPool,
    ) -> Result<Switch> {
        let store = super::open_data_dir(&config.data_dir, &config.kek)?;
        Switch::start_on_with(store, config, host_tls, pool).await
    }
}

impl<St: Store + Clone> Switch<St> {
    /// As [`Switch::start`] over `store` (`config.data_dir` is then not used): with a
    /// shared PostgreSQL store, several switches serve the same terminals and finish
    /// each other's reversals.
    pub async fn start_on(store: St, config: SwitchConfig) -> Result<Switch<St>> {
        Switch::start_on_with_tls(store, config, None).await
    }

    /// [`Switch::start_on`], connecting to the host over TLS when `host_tls` is given.
    pub async fn start_on_with_tls(
        store: St,
        config: SwitchConfig,
        host_tls: Option<crate::net::ClientTls>,
    ) -> Result<Switch<St>> {
        Switch::start_on_with(store, config, host_tls, HostPool::default()).await
    }

    /// [`Switch::start_on_with_tls`] with a pool of hosts.
    pub async fn start_on_with(
        store: St,
        config: SwitchConfig,
        host_tls: Option<crate::net::ClientTls>,
        pool: HostPool,
    ) -> Result<Switch<St>> {
        let keys = super::config::key_store(&config.terminals)?;
        let dukpt = match &config.hsm {
            Some(h) => Some(h.open().await?),
            None => None,
        };
        let service = SwitchService::start(
            &store,
            config.kek.clone(),
            keys,
            ServiceConfig {
                host_addr: config.host_addr.clone(),
                switch_id: TerminalId::new(SWITCH_TID, SWITCH_MID)?,
                zone_key: config.zone_key.clone(),
                upstream_timeout: config.upstream_timeout,
                upstream_in_flight: config.upstream_in_flight,
                max_reversals_in_flight: 8,
                host_tls,
                more_hosts: pool.more_hosts,
                host_strategy: pool.strategy,
                switch: LibSwitchConfig {
                    acquirer_id: ACQUIRER_ID.into(),
                    ..LibSwitchConfig::default()
                },
                dukpt,
            },
            local_now,
            utc_now,
        )
        .await
        .map_err(|e| super::SimError::Config(e.to_string()))?;
        Ok(Switch {
            service: std::sync::Arc::new(service),
            _store: store,
        })
    }

    /// The service (the switch, its client, its driver).
    pub fn service(&self) -> &SwitchService<St> {
        &self.service
    }

    /// Binds the terminal side on `listen` and serves in the background.
    pub async fn spawn(&self, listen: &str) -> Result<Running> {
        let config = terminal_server_config();
        let server = self
            .service
            .bind(listen, config)
            .await
            .map_err(|e| super::SimError::Config(e.to_string()))?;
        let running = Running::serve(server);
        tracing::info!(addr = %running.addr, "switch listening for terminals (cup-pos)");
        Ok(running)
    }

    /// Upstream reversals not yet acknowledged.
    pub async fn pending_reversals(&self) -> usize {
        self.service.pending_reversals().await.unwrap_or(usize::MAX)
    }

    /// Waits (at most `within`) until no upstream reversal is pending.
    pub async fn drain(&self, within: Duration) -> bool {
        let end = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < end {
            if self.pending_reversals().await == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.pending_reversals().await == 0
    }

    /// Serves on `listen` until `shutdown`, then lets upstream reversals drain. Returns
    /// whether none is left pending (they stay in the journal otherwise).
    pub async fn serve(&self, listen: &str, shutdown: impl Future<Output = ()>) -> Result<bool> {
        let running = self.spawn(listen).await?;
        println!("switchd listening on {}", running.addr);
        shutdown.await;
        running.stop().await;
        let drained = self.drain(Duration::from_secs(20)).await;
        if !drained {
            tracing::warn!("reversals still pending at shutdown (kept in the journal)");
        }
        self.service.shutdown();
        Ok(drained)
    }
}

// ---- Operations (issue 13): admin endpoint, TLS, reload, graceful drain ----

/// What [`Switch::serve_ops`] needs besides the listen address.
#[derive(Debug)]
pub struct OpsSettings {
    /// The flags.
    pub ops: super::ops::ServerOps,
    /// The terminals file, read again on SIGHUP and `POST /reload`.
    pub terminals_file: PathBuf,
    /// The data directory (for the readiness check).
    pub data_dir: PathBuf,
    /// The Prometheus recorder, installed before the switch started (with `--admin`).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// Reads the terminals file again and swaps the switch's table; a file that does not
/// validate leaves the old table in force.
fn reload_terminals<St: Store + Clone>(
    service: &SwitchService<St>,
    path: &std::path::Path,
) -> std::result::Result<String, crate::net::admin::ReloadError> {
    let keys = super::config::load_terminals(path)
        .and_then(|t| super::config::key_store(&t))
        .map_err(|e| {
            tracing::warn!(file = %path.display(), error = %e, "terminals file not reloaded: the old table stays");
            crate::net::admin::ReloadError::Rejected(format!(
                "{}: {e} (the old table stays)",
                path.display()
            ))
        })?;
    let summary = service.switch().reload_terminals(keys).map_err(|e| {
        tracing::error!(error = %e, "terminals reloaded, but dropped sessions not stored");
        crate::net::admin::ReloadError::Failed(e.to_string())
    })?;
    tracing::info!(file = %path.display(), %summary, "terminals file reloaded");
    Ok(format!("reloaded {}: {summary}", path.display()))
}

impl<St: Store + Clone> Switch<St> {
    /// Serves terminals on `listen` (over TLS with `--tls-cert`) with the admin endpoint
    /// (`--admin`), reloads the terminals file on SIGHUP and `POST /reload`, and on
    /// SIGTERM/SIGINT drains ([`SwitchService::drain`]) and returns how.
    pub async fn serve_ops(
        &self,
        listen: &str,
        settings: OpsSettings,
    ) -> Result<isoswitch::switch::DrainSummary> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let mut signals = super::ops::Signals::new();
        let tls = settings.ops.server_tls()?;
        let secure = tls.is_some();
        let server = self
            .service
            .bind_tls(listen, terminal_server_config(), tls)
            .await
            .map_err(|e| super::SimError::Config(e.to_string()))?;
        let control = server.control();
        let addr = server.local_addr();
        let serving = tokio::spawn(server.serve(std::future::pending::<()>()));
        tracing::info!(%addr, tls = secure, "switch listening for terminals (cup-pos)");
        println!("switchd listening on {addr}");
        let draining = Arc::new(AtomicBool::new(false));
        let admin = match (&settings.ops.admin, &settings.metrics) {
            (Some(at), Some(metrics)) => {
                let (svc, d, dir) = (
                    self.service.clone(),
                    draining.clone(),
                    settings.data_dir.clone(),
                );
                let (rsvc, file) = (self.service.clone(), settings.terminals_file.clone());
                let admin = super::ops::Admin::start(
                    at,
                    super::ops::AdminHooks {
                        ready: Arc::new(move || {
                            if d.load(Ordering::Acquire) {
                                return Err("draining".into());
                            }
                            super::ops::store_writable(&dir)?;
                            svc.upstream_ready()
                        }),
                        metrics: metrics.clone(),
                        reload: Some(Arc::new(move || reload_terminals(&rsvc, &file))),
                    },
                )
                .await?;
                println!("switchd admin endpoint on {}", admin.addr);
                Some(admin)
            }
            _ => None,
        };
        while signals.next().await == super::ops::Signal::Reload {
            let _ = reload_terminals(&self.service, &settings.terminals_file);
        }
        draining.store(true, Ordering::Release);
        tracing::info!(timeout = ?settings.ops.drain_timeout, "draining");
        let summary = self
            .service
            .drain(&control, settings.ops.drain_timeout)
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
        tracing::info!(%summary, "drained");
        if let Some(a) = admin {
            a.stop().await;
        }
        Ok(summary)
    }
}
