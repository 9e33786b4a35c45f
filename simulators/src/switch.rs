//! `switchd`'s wiring: configuration in, an `isoswitch_switch::SwitchService` over a
//! locked data directory out. Every mechanism (admission, idempotency, field mapping, PIN
//! translation, the upstream link and its sign-ons, reversals and advices, sessions that
//! survive a restart) is the library's; see `isoswitch_switch`.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use super::config::{TerminalEntry, ACQUIRER_ID, SWITCH_MID, SWITCH_TID};
use super::{local_now, Result, Running};
use crate::net::ServerConfig;
use crate::reversal::{DataDir, Store};
use crate::session::crypto::Key;
use crate::session::{Kek, TerminalId};
use isoswitch::switch::{ServiceConfig, SwitchConfig as LibSwitchConfig, SwitchService};

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
}

/// A running switch over a store: the data directory by default, or a shared
/// PostgreSQL store ([`Switch::start_on`]).
pub struct Switch<St: Store + Clone = DataDir> {
    service: SwitchService<St>,
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
        let store = DataDir::open(&config.data_dir)?;
        Switch::start_on(store, config).await
    }
}

impl<St: Store + Clone> Switch<St> {
    /// As [`Switch::start`] over `store` (`config.data_dir` is then not used): with a
    /// shared PostgreSQL store, several switches serve the same terminals and finish
    /// each other's reversals.
    pub async fn start_on(store: St, config: SwitchConfig) -> Result<Switch<St>> {
        let keys = super::config::key_store(&config.terminals)?;
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
                switch: LibSwitchConfig {
                    acquirer_id: ACQUIRER_ID.into(),
                    ..LibSwitchConfig::default()
                },
            },
            local_now,
            utc_now,
        )
        .await
        .map_err(|e| super::SimError::Config(e.to_string()))?;
        Ok(Switch {
            service,
            _store: store,
        })
    }

    /// The service (the switch, its client, its driver).
    pub fn service(&self) -> &SwitchService<St> {
        &self.service
    }

    /// Binds the terminal side on `listen` and serves in the background.
    pub async fn spawn(&self, listen: &str) -> Result<Running> {
        let config = ServerConfig {
            max_in_flight_per_connection: 64,
            write_queue: 256,
            idle_timeout: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(5),
            max_connections: 4096,
            ..ServerConfig::default()
        };
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
