//! The README's main command: host_sim, switchd and 20 terminals in one process on
//! loopback, ~10,000 transactions with 5% of responses dropped (on both hops), then
//! settlement and reconciliation. Exit code 0 only if every terminal's batch balanced and
//! the host ledger equals the terminals' approved-minus-reversed total to the cent.
//!
//! ```sh
//! cargo run --release --example demo
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use isoswitch_sim::{self as sim, chaos::ChaosConfig, demo};

#[derive(Parser, Debug)]
#[command(
    name = "demo",
    about = "host_sim + switchd + terminals in one process, with dropped responses; checks settlement and the host ledger"
)]
struct Args {
    /// Terminals (at most 200, from examples/terminals.toml).
    #[arg(long, default_value_t = 20)]
    terminals: usize,
    /// Transactions over all terminals.
    #[arg(long, default_value_t = 10_000)]
    transactions: u64,
    /// Share of responses dropped on each hop.
    #[arg(long, default_value = "5%", value_parser = sim::parse_ratio)]
    drop_responses: f64,
    /// Share of messages that reset their connection, on each hop.
    #[arg(long, default_value = "0", value_parser = sim::parse_ratio)]
    reset_connections: f64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Keep the data (journals, ledger) in this directory instead of a temporary one.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    sim::init_tracing("error");
    let args = Args::parse();
    let hop = ChaosConfig {
        drop: args.drop_responses,
        delay: Duration::ZERO,
        reset: args.reset_connections,
    };
    let cfg = demo::DemoConfig {
        terminals: args.terminals,
        transactions: args.transactions,
        terminal_hop: hop,
        host_hop: hop,
        progress: !args.quiet,
        data_dir: args.data_dir.clone(),
        ..demo::DemoConfig::default()
    };
    match demo::run(cfg).await {
        Ok(out) => {
            println!("{}", out.verdict());
            if out.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}
