//! `host_sim`: the issuer/host behind `switchd` (`iso87-binary`, len2 framing).
//!
//! ```sh
//! cargo run --release --example host_sim -- --zone-key examples/zmk.hex --data-dir /tmp/isoswitch/host
//! ```
//! See `isoswitch_sim::host` for what it does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use isoswitch_sim::{self as sim, config, host, wal};

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
    /// Directory of the ledger and idempotency store (created if absent).
    #[arg(long, default_value = "data/host")]
    data_dir: PathBuf,
    /// Skip fdatasync (the log still survives a killed process, not a power loss).
    #[arg(long)]
    no_fsync: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    sim::init_tracing("info");
    let args = Args::parse();
    let run = async {
        let cfg = host::HostSimConfig {
            zone_key: config::load_zone_key(&args.zone_key)?,
            data_dir: args.data_dir.clone(),
            sync: if args.no_fsync {
                wal::Sync::Os
            } else {
                wal::Sync::Data
            },
        };
        let h = host::HostSim::open(&cfg)?;
        h.serve(&args.listen, sim::shutdown_signal()).await?;
        let s = h.summary();
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
