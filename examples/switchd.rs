//! `switchd`: the acquirer switch between `cup-pos` terminals and an `iso87-binary` host.
//!
//! ```sh
//! cargo run --release --example switchd -- --terminals examples/terminals.toml \
//!     --zone-key examples/zmk.hex --host 127.0.0.1:9583 --data-dir /tmp/isoswitch/switch
//! ```
//! Ctrl-C / SIGTERM: stop taking terminals, drain upstream reversals, reconcile with the
//! host (0500/0510), exit 0 if in balance. See `isoswitch_sim::switch`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use isoswitch_sim::{self as sim, config, switch, wal};

#[derive(Parser, Debug)]
#[command(
    name = "switchd",
    about = "Acquirer switch: cup-pos terminals in, one multiplexed iso87-binary upstream out, with MACs, PIN translation, reversals and settlement"
)]
struct Args {
    /// Address terminals connect to (cup-pos framing).
    #[arg(long, default_value = "127.0.0.1:8583")]
    listen: String,
    /// The host (host_sim) address.
    #[arg(long, default_value = "127.0.0.1:9583")]
    host: String,
    /// Terminal master keys (TOML: [[terminal]] tid, mid, tmk).
    #[arg(long, default_value = "examples/terminals.toml")]
    terminals: PathBuf,
    /// Zone master key file (hex), shared with the host.
    #[arg(long, default_value = "examples/zmk.hex")]
    zone_key: PathBuf,
    /// Directory of the journal (created if absent).
    #[arg(long, default_value = "data/switch")]
    data_dir: PathBuf,
    /// How long to wait for the host, e.g. 2s, 500ms.
    #[arg(long, default_value = "2s", value_parser = sim::parse_duration)]
    upstream_timeout: std::time::Duration,
    /// Upstream requests in flight at most.
    #[arg(long, default_value_t = 4096)]
    upstream_in_flight: usize,
    /// Skip fdatasync (the journal still survives a killed process, not a power loss).
    #[arg(long)]
    no_fsync: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    sim::init_tracing("info");
    let args = Args::parse();
    let run = async {
        let cfg = switch::SwitchConfig {
            terminals: config::load_terminals(&args.terminals)?,
            zone_key: config::load_zone_key(&args.zone_key)?,
            host_addr: args.host.clone(),
            data_dir: args.data_dir.clone(),
            sync: if args.no_fsync {
                wal::Sync::Os
            } else {
                wal::Sync::Data
            },
            upstream_timeout: args.upstream_timeout,
            upstream_in_flight: args.upstream_in_flight,
        };
        let sw = switch::Switch::start(cfg).await?;
        let recon = sw.serve(&args.listen, sim::shutdown_signal()).await?;
        Ok::<_, sim::SimError>(recon)
    };
    match run.await {
        Ok(Some(r)) => {
            println!(
                "reconciliation with the host: {} (switch net {}, host net {})",
                if r.balanced {
                    "in balance"
                } else {
                    "OUT OF BALANCE"
                },
                sim::money::cents(r.ours.net()),
                sim::money::cents(r.theirs.net())
            );
            if r.balanced {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(None) => {
            println!("reconciliation with the host: no answer");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("switchd: {e}");
            ExitCode::FAILURE
        }
    }
}
