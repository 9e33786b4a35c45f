//! The demo: `host_sim`, `switchd` and the terminals in one process on loopback, with
//! temporary data directories and chaos proxies on both hops.

use std::path::PathBuf;
use std::time::Duration;

use super::chaos::{ChaosConfig, ChaosProxy};
use super::config::{
    kek_from_hex, parse_terminals, zone_key_from_hex, SAMPLE_KEK, SAMPLE_TERMINALS, SAMPLE_ZONE_KEY,
};
use super::host::{HostSim, HostSimConfig, LedgerSummary};
use super::money::cents;
use super::switch::{Switch, SwitchConfig};
use super::terminal::{self, Report, TerminalSimConfig};
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
    /// fsync every durable write (off: survives a killed process, not a power loss).
    pub fsync: bool,
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
            fsync: true,
        }
    }
}

/// What the demo found.
#[derive(Debug)]
pub struct DemoOutcome {
    pub report: Report,
    pub host: LedgerSummary,
    /// Upstream reversals acknowledged by the host.
    pub upstream_reversals: u64,
    /// Upstream reversals still pending at the end (0 when the switch drained).
    pub pending_reversals: usize,
}

impl DemoOutcome {
    /// Every batch balanced, the host ledger equals the terminals' total to the cent, and
    /// no upstream reversal is left pending.
    pub fn ok(&self) -> bool {
        self.report.all_balanced()
            && self.host.total == self.report.net()
            && self.pending_reversals == 0
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
            "{}: {balanced}/{} terminal batches balanced; host ledger {} {} terminals' approved − reversed {}; upstream reversals {} acknowledged, {} pending",
            if self.ok() { "OK" } else { "FAILED" },
            self.report.terminals.len(),
            cents(self.host.total),
            if self.host.total == self.report.net() { "=" } else { "≠" },
            cents(self.report.net()),
            self.upstream_reversals,
            self.pending_reversals
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
        fsync: config.fsync,
    })?;
    let host_run = host.spawn("127.0.0.1:0").await?;
    let hop = ChaosProxy::start("127.0.0.1:0", host_run.addr.to_string(), config.host_hop).await?;
    println!(
        "host_sim   listening on {} (iso87-binary, len2); chaos proxy {} → host: {:?}",
        host_run.addr,
        hop.local_addr(),
        config.host_hop
    );
    let kek = kek_from_hex(SAMPLE_KEK)?;
    let switch = Switch::start(SwitchConfig {
        terminals: terminals.clone(),
        zone_key,
        kek: kek.clone(),
        host_addr: hop.local_addr().to_string(),
        data_dir: base.join("switch"),
        upstream_timeout: config.upstream_timeout,
        upstream_in_flight: 4096,
        hsm: None,
    })
    .await?;
    let switch_run = switch.spawn("127.0.0.1:0").await?;
    let link = switch.service().switch().upstream().clone();
    for _ in 0..100 {
        if link.ring().current().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "switchd    listening on {} (cup-pos); network sign-on with the host: {}",
        switch_run.addr,
        if link.ring().current().is_some() {
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
        kek,
        progress: config.progress,
        batch_max: 900,
        dukpt: None,
        wrong_pin_every: 0,
        sales_only: false,
    })
    .await?;
    print!("{}", report.render());
    let drained = switch.drain(Duration::from_secs(60)).await;
    let status = switch.service().switch().driver().status().await.ok();
    let upstream_reversals = status.map(|s| s.stats.reversals_acked).unwrap_or(0);
    let pending_reversals = status.map(|s| s.pending_reversals).unwrap_or(usize::MAX);
    println!(
        "switchd    {} upstream originals, {} in doubt, {} upstream reversals acknowledged{}; {} upstream sign-ons; chaos proxy to host: {}",
        status.map(|s| s.stats.submitted).unwrap_or(0),
        status.map(|s| s.stats.in_doubt).unwrap_or(0),
        upstream_reversals,
        if drained { "" } else { " (some still pending)" },
        link.sign_ons(),
        hop.summary()
    );
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
        upstream_reversals,
        pending_reversals,
    })
}
