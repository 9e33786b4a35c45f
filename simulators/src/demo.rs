//! The demo: `host_sim`, `switchd` and the terminals in one process on loopback, with
//! temporary data directories and chaos proxies on both hops.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::chaos::{ChaosConfig, ChaosProxy};
use super::config::{
    kek_from_hex, parse_terminals, zone_key_from_hex, SAMPLE_KEK, SAMPLE_TERMINALS, SAMPLE_ZONE_KEY,
};
use super::host::{HostSim, HostSimConfig, LedgerSummary};
use super::money::cents;
use super::switch::{Reconciliation, Switch, SwitchConfig};
use super::terminal::{self, Report, TerminalSimConfig};
use super::wal::Sync;
use super::{Result, SimError};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub terminals: usize,
    pub transactions: u64,
    /// Chaos between the terminals and the switch.
    pub terminal_hop: ChaosConfig,
    /// Chaos between the switch and the host.
    pub host_hop: ChaosConfig,
    pub window: usize,
    pub terminal_timeout: Duration,
    pub upstream_timeout: Duration,
    pub progress: bool,
    /// Keep the data here instead of a temporary directory.
    pub data_dir: Option<PathBuf>,
    pub sync: Sync,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            terminals: 20,
            transactions: 10_000,
            terminal_hop: ChaosConfig {
                drop: 0.05,
                ..ChaosConfig::default()
            },
            host_hop: ChaosConfig {
                drop: 0.05,
                ..ChaosConfig::default()
            },
            window: 8,
            terminal_timeout: Duration::from_millis(1500),
            upstream_timeout: Duration::from_millis(500),
            progress: true,
            data_dir: None,
            sync: Sync::Data,
        }
    }
}

/// What the demo found.
#[derive(Debug)]
pub struct DemoOutcome {
    pub report: Report,
    pub host: LedgerSummary,
    pub reconciliation: Option<Reconciliation>,
    pub upstream_reversals: u64,
}

impl DemoOutcome {
    /// Every batch balanced, the host ledger equals the terminals' total to the cent, and
    /// the switch and host reconcile.
    pub fn ok(&self) -> bool {
        self.report.all_balanced()
            && self.host.total == self.report.net()
            && self.reconciliation.is_some_and(|r| r.balanced)
    }

    /// The last line.
    pub fn verdict(&self) -> String {
        let balanced = self
            .report
            .terminals
            .iter()
            .filter(|t| t.balanced())
            .count();
        format!(
            "{}: {balanced}/{} terminal batches balanced; host ledger {} {} terminals' approved − reversed {}; switch/host reconciliation {}",
            if self.ok() { "OK" } else { "FAILED" },
            self.report.terminals.len(),
            cents(self.host.total),
            if self.host.total == self.report.net() { "=" } else { "≠" },
            cents(self.report.net()),
            match self.reconciliation {
                Some(r) if r.balanced => "in balance",
                Some(_) => "out of balance",
                None => "not answered",
            }
        )
    }
}

/// Runs the demo.
pub async fn run(config: DemoConfig) -> Result<DemoOutcome> {
    let tmp = tempfile::tempdir().map_err(|e| SimError::io("temporary directory", e))?;
    let base = config
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let terminals = parse_terminals(SAMPLE_TERMINALS)?;
    if config.terminals > terminals.len() {
        return Err(SimError::Config(format!(
            "at most {} terminals",
            terminals.len()
        )));
    }
    let zone_key = zone_key_from_hex(SAMPLE_ZONE_KEY)?;
    let host = HostSim::open(&HostSimConfig {
        zone_key: zone_key.clone(),
        kek: kek_from_hex(SAMPLE_KEK)?,
        data_dir: base.join("host"),
        fsync: config.sync == Sync::Data,
    })?;
    let host_run = host.spawn("127.0.0.1:0").await?;
    let hop = ChaosProxy::start("127.0.0.1:0", host_run.addr.to_string(), config.host_hop).await?;
    println!(
        "host_sim   listening on {} (iso87-binary, len2); chaos proxy {} → host: {:?}",
        host_run.addr,
        hop.local_addr(),
        config.host_hop
    );
    let switch = Switch::start(SwitchConfig {
        terminals: terminals.clone(),
        zone_key,
        host_addr: hop.local_addr().to_string(),
        data_dir: base.join("switch"),
        sync: config.sync,
        upstream_timeout: config.upstream_timeout,
        upstream_in_flight: 4096,
    })
    .await?;
    let switch_run = switch.spawn("127.0.0.1:0").await?;
    for _ in 0..100 {
        if switch.stats().sign_ons.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "switchd    listening on {} (cup-pos); network sign-on with the host: {}",
        switch_run.addr,
        if switch.stats().sign_ons.load(Ordering::Relaxed) > 0 {
            "done, zone keys installed"
        } else {
            "pending"
        }
    );
    println!(
        "terminals  {} × sign-on (fresh PIK/MAK under each TMK), {} transactions, chaos {:?}",
        config.terminals, config.transactions, config.terminal_hop
    );
    let report = terminal::run(TerminalSimConfig {
        switch_addr: switch_run.addr.to_string(),
        terminals: terminals[..config.terminals].to_vec(),
        count: config.transactions,
        duration: None,
        rate: 0.0,
        window: config.window,
        timeout: config.terminal_timeout,
        chaos: config.terminal_hop,
        data_dir: base.join("terminals"),
        progress: config.progress,
        batch_max: 900,
    })
    .await?;
    print!("{}", report.render());
    let drained = switch.drain(Duration::from_secs(60)).await;
    let st = switch.stats();
    let upstream_reversals = st.upstream_reversals.load(Ordering::Relaxed);
    println!(
        "switchd    {} upstream timeouts, {} terminal reversals, {} upstream reversals acknowledged{}; {} settlements ({} balanced); chaos proxy to host: {}",
        st.upstream_timeouts.load(Ordering::Relaxed),
        st.terminal_reversals.load(Ordering::Relaxed),
        upstream_reversals,
        if drained { "" } else { " (some still pending)" },
        st.settlements.load(Ordering::Relaxed),
        st.settlements_balanced.load(Ordering::Relaxed),
        hop.summary()
    );
    let reconciliation = switch.reconcile().await?;
    let hs = host.summary()?;
    println!(
        "host_sim   {} transactions, {} approved, {} reversed, {} reversals of unknown originals, {} cards, ledger {}",
        hs.transactions, hs.approved, hs.reversed, hs.unknown_reversals, hs.cards, cents(hs.total)
    );
    switch_run.stop().await;
    host_run.stop().await;
    Ok(DemoOutcome {
        report,
        host: hs,
        reconciliation,
        upstream_reversals,
    })
}
