//! `hsm_sim`: a payShield-compatible HSM simulator (host commands A0, BU, CA, DC, EC,
//! FA, HC, NC, M6, M8 over 2-byte length framing with a 4-character header) on top
//! of `isoswitch_hsm::SoftHsm`.
//!
//! ```sh
//! cargo run --release --example hsm_sim -- --listen 127.0.0.1:1500 --lmk examples/lmk.hex
//! ```
//! `examples/lmk.hex` is a test LMK (pythales' default), never a production key. See
//! `isoswitch_hsm::thales::server` for what is served and how.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use isoswitch::hsm::thales::server::{self, ServerConfig};
use isoswitch::sim;

#[derive(Parser, Debug)]
#[command(
    name = "hsm_sim",
    about = "Thales payShield-compatible HSM simulator on a software security module"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1500")]
    listen: String,
    /// Local master key file: 32 or 48 hex digits (two- or three-key TDES).
    #[arg(long, default_value = "examples/lmk.hex")]
    lmk: PathBuf,
    /// Message header length (echoed in every response).
    #[arg(long, default_value_t = 4)]
    header_len: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    sim::init_tracing("info");
    let args = Args::parse();
    let config = ServerConfig {
        header_len: args.header_len,
    };
    let listening = |addr| eprintln!("hsm_sim: listening on {addr}");
    match server::run(
        &args.listen,
        &args.lmk,
        config,
        listening,
        sim::shutdown_signal(),
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hsm_sim: {e}");
            ExitCode::FAILURE
        }
    }
}
