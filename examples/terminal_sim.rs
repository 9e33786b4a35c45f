//! `terminal_sim`: N POS terminals (`cup-pos`) against `switchd`.
//!
//! ```sh
//! cargo run --release --example terminal_sim -- --terminals examples/terminals.toml \
//!     --count 20 --transactions 10000 --drop-responses 5%
//! ```
//! See `isoswitch_sim::terminal`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use isoswitch_sim::{self as sim, chaos, config, terminal};

#[derive(Parser, Debug)]
#[command(
    name = "terminal_sim",
    about = "POS terminal simulator: sign-on, sales, voids, refunds at a target rate, reversals, settlement; fault injection through an in-process chaos proxy"
)]
struct Args {
    /// The switch address.
    #[arg(long, default_value = "127.0.0.1:8583")]
    switch: String,
    /// Terminal master keys (the first --count terminals are used).
    #[arg(long, default_value = "examples/terminals.toml")]
    terminals: PathBuf,
    /// Number of terminals (each its own connection, TID, key and journal).
    #[arg(long, default_value_t = 20)]
    count: usize,
    /// Total transactions over all terminals.
    #[arg(long, default_value_t = 10_000)]
    transactions: u64,
    /// Run for this long instead (e.g. 30s); overrides --transactions.
    #[arg(long, value_parser = sim::parse_duration)]
    duration: Option<Duration>,
    /// Target transactions per second over all terminals (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Transactions in flight per terminal (a POS has one; more for load tests).
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// How long a terminal waits for a response.
    #[arg(long, default_value = "5s", value_parser = sim::parse_duration)]
    timeout: Duration,
    /// Drop this share of responses (e.g. 5%).
    #[arg(long, default_value = "0", value_parser = sim::parse_ratio)]
    drop_responses: f64,
    /// Delay responses by up to this (e.g. 20ms).
    #[arg(long, default_value = "0ms", value_parser = sim::parse_duration)]
    delay: Duration,
    /// Reset the connection on this share of messages (e.g. 1%).
    #[arg(long, default_value = "0", value_parser = sim::parse_ratio)]
    reset_connections: f64,
    /// Directory of the terminals' state: journals, counters, sessions (one process at a
    /// time).
    #[arg(long, default_value = "data/terminals")]
    data_dir: PathBuf,
    /// Key-encryption key file (hex, AES-256): stored sessions are sealed under it.
    #[arg(long, default_value = "examples/kek.hex")]
    kek: PathBuf,
    /// Settle a batch after this many transactions per terminal.
    #[arg(long, default_value_t = 900)]
    batch_max: u64,
    /// DUKPT terminals: PIN blocks under each terminal's DUKPT key (KSN in DE 62),
    /// initial keys derived from the BDK in `--bdk`.
    #[arg(long)]
    dukpt: bool,
    /// The BDK of the key injection facility (hex), for `--dukpt`.
    #[arg(long, default_value = "examples/bdk.hex")]
    bdk: PathBuf,
    /// Every n-th PIN entered is wrong (the host answers 55); 0 = never.
    #[arg(long, default_value_t = 0)]
    wrong_pin_every: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Accepted for compatibility: every terminal runs the isoswitch-reversal driver
    /// (sales, voids, refund advices), whichever value is given.
    #[arg(long, default_value = "reversal-crate", value_parser = ["builtin", "reversal-crate"])]
    engine: String,

    // ---- TLS to the switch (issue 13) ----
    /// Connect over TLS, trusting these CAs (PEM); the switch's certificate must name the
    /// host part of --switch.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS; with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    sim::init_tracing("error");
    let args = Args::parse();
    let run = async {
        let all = config::load_terminals(&args.terminals)?;
        if args.count > all.len() {
            return Err(sim::SimError::Config(format!(
                "--count {} but {} lists {} terminals",
                args.count,
                args.terminals.display(),
                all.len()
            )));
        }
        let cfg = terminal::TerminalSimConfig {
            switch_addr: args.switch.clone(),
            terminals: all[..args.count].to_vec(),
            count: args.transactions,
            duration: args.duration,
            rate: args.rate,
            window: args.window,
            timeout: args.timeout,
            chaos: chaos::ChaosConfig {
                drop: args.drop_responses,
                delay: args.delay,
                reset: args.reset_connections,
            },
            data_dir: args.data_dir.clone(),
            kek: config::load_kek(&args.kek)?,
            progress: !args.quiet,
            batch_max: args.batch_max,
            dukpt: if args.dukpt {
                Some(config::load_tdes_key(&args.bdk, "BDK")?)
            } else {
                None
            },
            wrong_pin_every: args.wrong_pin_every,
            sales_only: false,
        };
        let _ = &args.engine;
        let tls = sim::ops::client_tls(
            args.tls_ca.as_deref(),
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
        )?;
        terminal::run_with_tls(cfg, tls).await
    };
    match run.await {
        Ok(report) => {
            print!("{}", report.render());
            let ok = report.all_balanced();
            println!(
                "{}",
                if ok {
                    "every terminal's batch balanced"
                } else {
                    "NOT every terminal's batch balanced"
                }
            );
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("terminal_sim: {e}");
            ExitCode::FAILURE
        }
    }
}
