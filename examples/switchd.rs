//! `switchd`: the acquirer switch between `cup-pos` terminals and an `iso87-binary` host.
//!
//! ```sh
//! cargo run --release --example switchd -- --terminals examples/terminals.toml \
//!     --zone-key examples/zmk.hex --host 127.0.0.1:9583 --data-dir /tmp/isoswitch/switch
//! ```
//! SIGTERM / Ctrl-C: drain (`/readyz` 503, no new connections, new requests answered 91,
//! requests being handled get `--drain-timeout`, what is still in doubt stays a pending
//! reversal in the journal, upstream sign-off, store synced) and exit 0. SIGHUP or
//! `POST /reload` on `--admin`: read `--terminals` again. The switch itself is
//! `isoswitch::switch::SwitchService`.
//! A pool of hosts: `--host A --host B [--host-strategy failover|round-robin]`, each host
//! its own link, sign-on and zone keys (`isoswitch::switch::pool`).
//! Several nodes on one PostgreSQL database instead of the data directory:
//! `--store postgres://USER@HOST:PORT/DB --node switch-a --lease 5s` (README: "Shared
//! state on PostgreSQL").

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use isoswitch_sim::{self as sim, config, switch};

#[derive(Parser, Debug)]
#[command(
    name = "switchd",
    about = "Acquirer switch: cup-pos terminals in, one multiplexed iso87-binary upstream out, with MACs, PIN translation, reversals and settlement"
)]
struct Args {
    /// Address terminals connect to (cup-pos framing).
    #[arg(long, default_value = "127.0.0.1:8583")]
    listen: String,
    /// The host (host_sim) address; repeat for a pool of hosts (each its own link,
    /// sign-on and zone keys).
    #[arg(long, default_value = "127.0.0.1:9583")]
    host: Vec<String>,
    /// How a pool of hosts shares the traffic: failover (the first live host) or
    /// round-robin (every live host in turn).
    #[arg(long, default_value = "failover")]
    host_strategy: isoswitch::switch::Strategy,
    /// Terminal master keys (TOML: [[terminal]] tid, mid, tmk).
    #[arg(long, default_value = "examples/terminals.toml")]
    terminals: PathBuf,
    /// Zone master key file (hex), shared with the host.
    #[arg(long, default_value = "examples/zmk.hex")]
    zone_key: PathBuf,
    /// Key-encryption key file (hex, AES-256): stored sessions are sealed under it.
    #[arg(long, default_value = "examples/kek.hex")]
    kek: PathBuf,
    /// Directory of the switch's state (created if absent; one process at a time).
    #[arg(long, default_value = "data/switch")]
    data_dir: PathBuf,
    /// How long to wait for the host, e.g. 2s, 500ms.
    #[arg(long, default_value = "2s", value_parser = sim::parse_duration)]
    upstream_timeout: std::time::Duration,
    /// Upstream requests in flight at most.
    #[arg(long, default_value_t = 4096)]
    upstream_in_flight: usize,
    /// Accepted for compatibility; every write is synced (group commit).
    #[arg(long)]
    no_fsync: bool,
    /// Shared state on PostgreSQL (postgres://USER@HOST:PORT/DB) instead of --data-dir:
    /// several switchd on one database serve the same terminals.
    #[arg(long)]
    store: Option<String>,
    /// This node's name on a shared store (lease owner; default: host name + pid).
    #[arg(long)]
    node: Option<String>,
    /// Lease time on a shared store: a node silent this long has its reversals taken over.
    #[arg(long, default_value = "5s", value_parser = sim::parse_duration)]
    lease: std::time::Duration,
    /// A Thales payShield-compatible HSM (e.g. hsm_sim) for DUKPT PIN translation;
    /// without it the in-process SoftHsm with `--lmk`.
    #[arg(long)]
    hsm: Option<String>,
    /// The SoftHsm's local master key (hex).
    #[arg(long, default_value = "examples/lmk.hex")]
    lmk: PathBuf,
    /// The DUKPT BDK under the module's LMK (hex).
    #[arg(long, default_value = "examples/bdk.lmk.hex")]
    bdk: PathBuf,
    /// The zone master key under the module's LMK (hex).
    #[arg(long, default_value = "examples/zmk.lmk.hex")]
    hsm_zmk: PathBuf,
    /// No security module: terminals with session keys only (no DUKPT).
    #[arg(long, conflicts_with = "hsm")]
    no_dukpt: bool,

    // ---- Operations (issue 13): --admin, --log-format, --drain-timeout, --tls-* ----
    #[command(flatten)]
    ops: sim::ops::ServerOps,
    // Upstream TLS: --host-tls-ca, --host-tls-cert, --host-tls-key.
    #[command(flatten)]
    host_tls: sim::ops::HostTls,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    sim::ops::init_logging("info", args.ops.log_format);
    let run = async {
        // Operations: the recorder goes in before the switch builds its links.
        let metrics = match &args.ops.admin {
            Some(_) => Some(sim::ops::install_metrics()?),
            None => None,
        };
        let host_tls = args.host_tls.client_tls()?;
        let cfg = switch::SwitchConfig {
            terminals: config::load_terminals(&args.terminals)?,
            zone_key: config::load_zone_key(&args.zone_key)?,
            kek: config::load_kek(&args.kek)?,
            host_addr: args.host.first().cloned().unwrap_or_default(),
            data_dir: args.data_dir.clone(),
            upstream_timeout: args.upstream_timeout,
            upstream_in_flight: args.upstream_in_flight,
            hsm: (!args.no_dukpt).then(|| switch::HsmConfig {
                remote: args.hsm.clone(),
                lmk: args.lmk.clone(),
                bdk: args.bdk.clone(),
                zmk: args.hsm_zmk.clone(),
            }),
        };
        let settings = switch::OpsSettings {
            ops: args.ops.clone(),
            terminals_file: args.terminals.clone(),
            data_dir: args.data_dir.clone(),
            metrics,
        };
        let pool = switch::HostPool {
            more_hosts: args.host.iter().skip(1).cloned().collect(),
            strategy: args.host_strategy,
        };
        match &args.store {
            Some(url) => {
                let store = config::pg_store(url, args.node.as_deref(), args.lease, &cfg.kek)?;
                let sw = switch::Switch::start_on_with(store, cfg, host_tls, pool).await?;
                sw.serve_ops(&args.listen, settings).await
            }
            None => {
                let sw = switch::Switch::start_with(cfg, host_tls, pool).await?;
                sw.serve_ops(&args.listen, settings).await
            }
        }
    };
    match run.await {
        Ok(summary) => {
            println!("switchd: stopped: {summary}");
            if summary.pending_reversals + summary.pending_advices == 0 {
                println!("switchd: nothing pending upstream");
            } else {
                println!(
                    "switchd: {} upstream reversals and {} advices pending, kept in the journal for the next start",
                    summary.pending_reversals, summary.pending_advices
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchd: {e}");
            ExitCode::FAILURE
        }
    }
}
