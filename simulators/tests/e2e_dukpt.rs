//! End-to-end with DUKPT terminals: `terminal_sim --dukpt` terminals (PIN blocks under
//! each terminal's TDES DUKPT key, KSN in DE 62) through the switch, which translates
//! them to the zone PIN key inside its security module, to `host_sim`, which verifies
//! the PIN. Once with the in-process `SoftHsm`, once with the Thales client against
//! `hsm_sim`'s server (command `G0`). The example key files are the ones the programs
//! use by default (`scripts/keys/make_example_keys.py` made them).
//!
//! Checked: right PINs approved and never answered 55, every wrong PIN answered 55, every
//! batch balanced, the host ledger equal to the terminals' approved − reversed; and then
//! no PAN the terminals used in any file under the three data directories (the PAN scan
//! of "no clear PAN at rest").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use isoswitch::hsm::thales::{serve, ServerConfig};
use isoswitch::hsm::SoftHsm;
use isoswitch_sim::chaos::ChaosConfig;
use isoswitch_sim::config::{self, parse_terminals, SAMPLE_KEK, SAMPLE_TERMINALS, SAMPLE_ZONE_KEY};
use isoswitch_sim::terminal::{self, TerminalSimConfig};
use isoswitch_sim::{host, switch};

mod common;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// `pooled`: two hosts behind the switch, round-robin (each its own zone keys: the
/// module must translate every PIN block to the PIK of the link it goes on).
async fn run(remote_hsm: bool, pooled: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let zone_key = config::zone_key_from_hex(SAMPLE_ZONE_KEY).expect("zone key");
    let kek = config::kek_from_hex(SAMPLE_KEK).expect("kek");
    let open_host = |name: &str| {
        host::HostSim::open(&host::HostSimConfig {
            zone_key: zone_key.clone(),
            kek: kek.clone(),
            data_dir: dir.path().join(name),
            fsync: true,
        })
        .expect("host")
    };
    let host = open_host("host");
    let host_running = host.spawn("127.0.0.1:0").await.expect("host up");
    let second = match pooled {
        true => {
            let h = open_host("host-2");
            let r = h.spawn("127.0.0.1:0").await.expect("host up");
            Some((h, r))
        }
        false => None,
    };
    let pool = switch::HostPool {
        more_hosts: second.iter().map(|(_, r)| r.addr.to_string()).collect(),
        strategy: isoswitch::switch::Strategy::RoundRobin,
    };
    let remote = if remote_hsm {
        let lmk = SoftHsm::from_master_key_file(&example("lmk.hex")).expect("lmk");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind hsm");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(serve(listener, Arc::new(lmk), ServerConfig::default()));
        Some(addr)
    } else {
        None
    };
    let sw = switch::Switch::start_with(
        switch::SwitchConfig {
            terminals: parse_terminals(SAMPLE_TERMINALS).expect("terminals"),
            zone_key,
            kek: kek.clone(),
            host_addr: host_running.addr.to_string(),
            data_dir: dir.path().join("switch"),
            upstream_timeout: Duration::from_secs(2),
            upstream_in_flight: 256,
            hsm: Some(switch::HsmConfig {
                remote,
                lmk: example("lmk.hex"),
                bdk: example("bdk.lmk.hex"),
                zmk: example("zmk.lmk.hex"),
            }),
        },
        None,
        pool,
    )
    .await
    .expect("switch");
    let sr = sw.spawn("127.0.0.1:0").await.expect("switch up");
    let terminals = parse_terminals(SAMPLE_TERMINALS).expect("terminals");
    let report = terminal::run(TerminalSimConfig {
        switch_addr: sr.addr.to_string(),
        terminals: terminals[..4].to_vec(),
        count: 4 * 40,
        duration: None,
        rate: 0.0,
        window: 1,
        timeout: Duration::from_secs(3),
        chaos: ChaosConfig::default(),
        data_dir: dir.path().join("terminals"),
        kek,
        progress: false,
        batch_max: 900,
        dukpt: Some(config::load_tdes_key(&example("bdk.hex"), "BDK").expect("bdk")),
        wrong_pin_every: 7,
        sales_only: false,
    })
    .await
    .expect("terminal run");
    println!("{}", report.render());
    assert!(report.approvals > 0, "right PINs approved");
    assert_eq!(report.right_pin_55, 0, "a right PIN was answered 55");
    assert!(report.wrong_pins > 0, "wrong PINs were entered");
    assert_eq!(
        report.wrong_pin_55, report.wrong_pins,
        "every wrong PIN answered 55"
    );
    assert_eq!(report.no_response, 0, "every request answered");
    assert!(report.all_balanced(), "{}", report.render());
    sr.stop().await;
    sw.service().shutdown();
    let mut total = host.summary().expect("ledger").total;
    if let Some((h, r)) = second {
        let t = h.summary().expect("ledger").total;
        assert!(t != 0 && total != 0, "both hosts took traffic");
        total += t;
        r.stop().await;
    }
    assert_eq!(
        total,
        report.net(),
        "host ledgers ≠ terminals' approved − reversed"
    );
    host_running.stop().await;
    drop(sw);
    drop(host);
    // No clear PAN at rest: no card number the terminals used appears in any file of
    // the host's, the switch's or the terminals' data directories, neither as ASCII
    // digits (iso87) nor packed BCD (cup-pos DE 2).
    let files = common::files_under(dir.path());
    assert!(files.len() >= 8, "{files:?}");
    let pans: Vec<String> = terminals[..4]
        .iter()
        .flat_map(|t| terminal::pans_for(&t.tid))
        .collect();
    let hits = common::pans_in_files(&files, &pans);
    assert!(hits.is_empty(), "{hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dukpt_terminals_through_the_soft_hsm() {
    isoswitch_sim::init_tracing("error");
    run(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dukpt_terminals_through_a_round_robin_pool_of_two_hosts() {
    isoswitch_sim::init_tracing("error");
    run(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dukpt_terminals_through_hsm_sim() {
    isoswitch_sim::init_tracing("error");
    run(true, false).await;
}
