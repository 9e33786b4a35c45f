//! `switchd`: the acquirer switch between `cup-pos` terminals and an `iso87-binary` host.
//!
//! ```sh
//! cargo run --release --example switchd -- --terminals examples/terminals.toml \
//!     --zone-key examples/zmk.hex --host 127.0.0.1:9583 --data-dir /tmp/isoswitch/switch
//! ```
//! Several nodes on one PostgreSQL database instead of the data directory:
//! `--store postgres://USER@HOST:PORT/DB --node switch-a --lease 5s` (README: "Shared
//! state on PostgreSQL").
//! Ctrl-C / SIGTERM: stop taking terminals, let upstream reversals drain, exit 0 if none
//! is left pending. The switch itself is `isoswitch::switch::SwitchService`.

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
    /// The host (host_sim) address.
    #[arg(long, default_value = "127.0.0.1:9583")]
    host: String,
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
}

#[tokio::main]
async fn main() -> ExitCode {
    sim::init_tracing("info");
    let args = Args::parse();
    let run = async {
        let cfg = switch::SwitchConfig {
            terminals: config::load_terminals(&args.terminals)?,
            zone_key: config::load_zone_key(&args.zone_key)?,
            kek: config::load_kek(&args.kek)?,
            host_addr: args.host.clone(),
            data_dir: args.data_dir.clone(),
            upstream_timeout: args.upstream_timeout,
            upstream_in_flight: args.upstream_in_flight,
        };
        match &args.store {
            Some(url) => {
                let store = config::pg_store(url, args.node.as_deref(), args.lease)?;
                let sw = switch::Switch::start_on(store, cfg).await?;
                sw.serve(&args.listen, sim::shutdown_signal()).await
            }
            None => {
                let sw = switch::Switch::start(cfg).await?;
                sw.serve(&args.listen, sim::shutdown_signal()).await
            }
        }
    };
    match run.await {
        Ok(true) => {
            println!("switchd: stopped, no upstream reversal pending");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("switchd: stopped with upstream reversals pending (kept in the journal)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("switchd: {e}");
            ExitCode::FAILURE
        }
    }
}
