//! `host_sim`: the issuer/host behind `switchd` (`iso87-binary`, len2 framing).
//!
//! ```sh
//! cargo run --release --example host_sim -- --zone-key examples/zmk.hex --kek examples/kek.hex --data-dir /tmp/isoswitch/host
//! ```
//! See `isoswitch_sim::host` for what it does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use isoswitch_sim::{self as sim, config, host};

#[derive(Parser, Debug)]
#[command(
    name = "host_sim",
    about = "Issuer/host simulator: network sign-on, X9.19 MACs, approval rule (…51 → 51, …55 → 55), ledger per card, idempotent reversals, reconciliation"
)]
struct Args {
    /// Address to listen on (the switch connects here).
    #[arg(long, default_value = "127.0.0.1:9583")]
    listen: String,
    /// Zone master key file (hex), shared with switchd.
    #[arg(long, default_value = "examples/zmk.hex")]
    zone_key: PathBuf,
    /// Key-encryption key file (hex, AES-256): the stored zone session is sealed under it.
    #[arg(long, default_value = "examples/kek.hex")]
    kek: PathBuf,
    /// Data directory: ledger, idempotency store and sealed zone session (created if
    /// absent; locked while host_sim runs).
    #[arg(long, default_value = "data/host")]
    data_dir: PathBuf,
    /// Skip fdatasync (the log still survives a killed process, not a power loss).
    #[arg(long)]
    no_fsync: bool,
    /// Decisions, ledger and sessions on PostgreSQL (postgres://USER@HOST:PORT/DB)
    /// instead of --data-dir.
    #[arg(long)]
    store: Option<String>,
    /// Each answer (but network management's) waits this long: a slow issuer, e.g. 200ms.
    #[arg(long, default_value = "0ms", value_parser = sim::parse_duration)]
    answer_delay: std::time::Duration,

    // ---- Operations (issue 13): --admin, --log-format, --drain-timeout, --tls-* ----
    #[command(flatten)]
    ops: sim::ops::ServerOps,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    sim::ops::init_logging("info", args.ops.log_format);
    let run = async {
        let metrics = match &args.ops.admin {
            Some(_) => Some(sim::ops::install_metrics()?),
            None => None,
        };
        let cfg = host::HostSimConfig {
            zone_key: config::load_zone_key(&args.zone_key)?,
            kek: config::load_kek(&args.kek)?,
            data_dir: args.data_dir.clone(),
            fsync: !args.no_fsync,
        };
        let h = match &args.store {
            Some(url) => host::HostSim::open_on(
                &cfg,
                config::pg_store(url, None, std::time::Duration::from_secs(5), &cfg.kek)?,
            )?,
            None => host::HostSim::open(&cfg)?,
        };
        h.set_answer_delay(args.answer_delay);
        h.serve_ops(&args.listen, &args.ops, metrics, &args.data_dir)
            .await?;
        let s = h.summary()?;
        println!(
            "host_sim: {} transactions ({} approved, {} reversed), {} cards, ledger total {}",
            s.transactions,
            s.approved,
            s.reversed,
            s.cards,
            sim::money::cents(s.total)
        );
        Ok::<(), sim::SimError>(())
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("host_sim: {e}");
            ExitCode::FAILURE
        }
    }
}
