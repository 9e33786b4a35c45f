//! End-to-end: terminals ─cup-pos─▶ switchd ─iso87-binary─▶ host_sim over real sockets,
//! with `host_sim` and `switchd` as separate processes (this test binary re-executes
//! itself in a child role: see `e2e_child`), chaos proxies on both hops, and the kill
//! tests (SIGKILL, restart on the same data directory and port).
//!
//! Each test checks what a payments operator cares about: every terminal's batch
//! settles balanced, the host ledger equals the terminals' approved-minus-reversed total
//! to the cent, and the switch reconciles with the host (its exit status).

mod common;

use common::{free_port, wait_listening};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isoswitch_sim::chaos::{ChaosConfig, ChaosProxy};
use isoswitch_sim::config::{self, parse_terminals, SAMPLE_KEK, SAMPLE_TERMINALS, SAMPLE_ZONE_KEY};
use isoswitch_sim::terminal::{self, TerminalSimConfig};
use isoswitch_sim::{host, money::cents, switch};

const ROLE: &str = "ISOSWITCH_E2E_ROLE";

/// A child process in a role (`host` or `switch`).
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(role: &str, listen: &str, data: &Path, upstream: &str) -> Proc {
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "e2e_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, role)
            .env("E2E_LISTEN", listen)
            .env("E2E_DATA", data)
            .env("E2E_UPSTREAM", upstream)
            .stdout(Stdio::piped())
            .stderr(common::child_log(role, listen))
            .spawn()
            .expect("spawn child");
        let p = Proc { child };
        wait_listening(listen);
        p
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status and stdout.
    fn terminate(mut self) -> (bool, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child_output()
    }

    fn child_output(&mut self) -> (bool, String) {
        use std::io::Read;
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut s = String::new();
                if let Some(o) = self.child.stdout.as_mut() {
                    let _ = o.read_to_string(&mut s);
                }
                return (status.success(), s);
            }
            if Instant::now() > end {
                self.kill9();
                return (false, "timed out".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A test directory, kept (and its path printed) when `E2E_KEEP` is set.
fn test_dir() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("E2E_KEEP").is_some() {
        dir.disable_cleanup(true);
        println!("test directory {}", dir.path().display());
    }
    dir
}

impl Drop for Proc {
    fn drop(&mut self) {
        common::reap(&mut self.child);
    }
}

/// The child roles. Not a test by itself: the e2e tests run this binary with
/// `e2e_child --exact --ignored` and `ISOSWITCH_E2E_ROLE` set.
#[test]
#[ignore = "child process of the e2e tests"]
fn e2e_child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let listen = std::env::var("E2E_LISTEN").expect("E2E_LISTEN");
    let data = PathBuf::from(std::env::var("E2E_DATA").expect("E2E_DATA"));
    let upstream = std::env::var("E2E_UPSTREAM").unwrap_or_default();
    isoswitch_sim::init_tracing("error");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let code = rt.block_on(async move {
        let zone_key = config::zone_key_from_hex(SAMPLE_ZONE_KEY).expect("zone key");
        match role.as_str() {
            "host" => {
                let h = host::HostSim::open(&host::HostSimConfig {
                    zone_key,
                    kek: config::kek_from_hex(SAMPLE_KEK).expect("kek"),
                    data_dir: data,
                    fsync: true,
                })
                .expect("host");
                h.serve(&listen, isoswitch_sim::shutdown_signal())
                    .await
                    .expect("serve");
                0
            }
            "switch" => {
                let sw = switch::Switch::start(switch::SwitchConfig {
                    terminals: parse_terminals(SAMPLE_TERMINALS).expect("terminals"),
                    zone_key,
                    kek: config::kek_from_hex(SAMPLE_KEK).expect("kek"),
                    host_addr: upstream,
                    data_dir: data,
                    upstream_timeout: Duration::from_millis(500),
                    upstream_in_flight: 4096,
                    hsm: None,
                })
                .await
                .expect("switch");
                let drained = sw
                    .serve(&listen, isoswitch_sim::shutdown_signal())
                    .await
                    .expect("serve");
                println!("DRAINED {drained}");
                if drained {
                    0
                } else {
                    2
                }
            }
            other => panic!("unknown role {other}"),
        }
    });
    std::process::exit(code);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kill {
    Nothing,
    Host,
    Switch,
}

fn scenario(kill: Kill) {
    let dir = test_dir();
    let host_dir = dir.path().join("host");
    let switch_dir = dir.path().join("switch");
    let host_addr = format!("127.0.0.1:{}", free_port());
    let switch_addr = format!("127.0.0.1:{}", free_port());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let chaos = ChaosConfig {
        drop: 0.05,
        delay: Duration::ZERO,
        reset: 0.01,
    };
    let mut host_proc = Some(Proc::spawn("host", &host_addr, &host_dir, ""));
    // The host hop's chaos proxy lives in this process, so it outlives host restarts.
    let proxy = rt
        .block_on(ChaosProxy::start("127.0.0.1:0", host_addr.clone(), chaos))
        .expect("proxy");
    let upstream = proxy.local_addr().to_string();
    let mut switch_proc = Some(Proc::spawn("switch", &switch_addr, &switch_dir, &upstream));
    let terminals = parse_terminals(SAMPLE_TERMINALS).expect("terminals");
    let run = rt.spawn(terminal::run(TerminalSimConfig {
        switch_addr: switch_addr.clone(),
        terminals: terminals[..20].to_vec(),
        count: 20 * 500,
        duration: None,
        rate: 0.0,
        window: 4,
        timeout: Duration::from_millis(1500),
        chaos,
        data_dir: dir.path().join("terminals"),
        kek: config::kek_from_hex(SAMPLE_KEK).expect("kek"),
        progress: false,
        batch_max: 900,
        dukpt: None,
        wrong_pin_every: 0,
        sales_only: false,
    }));
    if kill != Kill::Nothing {
        std::thread::sleep(Duration::from_secs(4));
        assert!(!run.is_finished(), "the kill must land mid-run");
        match kill {
            Kill::Host => {
                if let Some(mut p) = host_proc.take() {
                    p.kill9();
                }
                std::thread::sleep(Duration::from_millis(700));
                host_proc = Some(Proc::spawn("host", &host_addr, &host_dir, ""));
            }
            Kill::Switch => {
                if let Some(mut p) = switch_proc.take() {
                    p.kill9();
                }
                std::thread::sleep(Duration::from_millis(700));
                switch_proc = Some(Proc::spawn("switch", &switch_addr, &switch_dir, &upstream));
            }
            Kill::Nothing => {}
        }
    }
    let report = rt
        .block_on(run)
        .expect("terminal task")
        .expect("terminal run");
    println!("{}", report.render());
    println!("upstream chaos: {}", proxy.summary());
    let (switch_ok, switch_out) = switch_proc.take().expect("switch").terminate();
    println!("switchd: {switch_out}");
    let (host_ok, _) = host_proc.take().expect("host").terminate();
    assert!(host_ok, "host_sim exited badly");
    let ledger = host::read_ledger(&host_dir, &config::kek_from_hex(SAMPLE_KEK).expect("kek"))
        .expect("ledger");
    println!(
        "host ledger {} over {} cards; terminals' approved − reversed {}",
        cents(ledger.total),
        ledger.cards,
        cents(report.net())
    );
    assert!(
        report.transactions >= 9_000,
        "too few transactions: {}",
        report.transactions
    );
    assert!(
        report.all_balanced(),
        "not every batch balanced:\n{}",
        report.render()
    );
    assert_eq!(ledger.total, report.net(), "host ledger ≠ terminals' total");
    assert!(
        switch_ok && switch_out.contains("DRAINED true"),
        "switch left upstream reversals pending: {switch_out}"
    );
    // Sessions survive a restart: one sign-on per terminal, none after a switchd kill.
    assert_eq!(
        report.sign_ons,
        20,
        "terminals signed on again after the restart:\n{}",
        report.render()
    );
}

#[test]
fn e2e_20_terminals_chaos_on_both_hops_settle_and_match_the_ledger() {
    scenario(Kill::Nothing);
}

#[test]
fn e2e_host_sim_killed_and_restarted_loses_and_doubles_nothing() {
    scenario(Kill::Host);
}

#[test]
fn e2e_switchd_killed_and_restarted_loses_and_doubles_nothing() {
    scenario(Kill::Switch);
}

/// The README's separate-process flow twice in a row on the same data directories
/// (host_sim, switchd, terminal_sim; then stop switchd and host_sim; then all of it
/// again): both runs balance, and the host ledger holds both runs' approved − reversed.
#[test]
fn e2e_readme_flow_twice_on_the_same_data_balances_both_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host_dir = dir.path().join("host");
    let switch_dir = dir.path().join("switch");
    let terminal_dir = dir.path().join("terminals");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let terminals = parse_terminals(SAMPLE_TERMINALS).expect("terminals");
    let mut nets = 0i128;
    for run in 0..2 {
        let host_addr = format!("127.0.0.1:{}", free_port());
        let switch_addr = format!("127.0.0.1:{}", free_port());
        let host_proc = Proc::spawn("host", &host_addr, &host_dir, "");
        let switch_proc = Proc::spawn("switch", &switch_addr, &switch_dir, &host_addr);
        let report = rt
            .block_on(terminal::run(TerminalSimConfig {
                switch_addr: switch_addr.clone(),
                terminals: terminals[..10].to_vec(),
                count: 10 * 100,
                duration: None,
                rate: 0.0,
                window: 1,
                timeout: Duration::from_millis(1500),
                chaos: ChaosConfig {
                    drop: 0.05,
                    delay: Duration::ZERO,
                    reset: 0.0,
                },
                data_dir: terminal_dir.clone(),
                kek: config::kek_from_hex(SAMPLE_KEK).expect("kek"),
                progress: false,
                batch_max: 900,
                dukpt: None,
                wrong_pin_every: 0,
                sales_only: false,
            }))
            .expect("terminal run");
        println!("run {run}:\n{}", report.render());
        assert!(
            report.all_balanced(),
            "run {run}: not every batch balanced:\n{}",
            report.render()
        );
        assert!(
            report.transactions >= 900,
            "run {run}: too few transactions"
        );
        nets += report.net();
        let (switch_ok, out) = switch_proc.terminate();
        assert!(switch_ok, "run {run}: switchd: {out}");
        let (host_ok, _) = host_proc.terminate();
        assert!(host_ok, "run {run}: host_sim exited badly");
        let ledger = host::read_ledger(&host_dir, &config::kek_from_hex(SAMPLE_KEK).expect("kek"))
            .expect("ledger");
        assert_eq!(
            ledger.total, nets,
            "run {run}: host ledger ≠ the terminals' total"
        );
    }
}

/// `host_sim` SIGKILLed and restarted on the same data directory restores the zone
/// session it had issued (sealed under the KEK in `host.sessions`): the switch's next
/// MACed requests are accepted under the zone keys it already has — the switch signs
/// on upstream once, at its start, and never again. (Before the session store, the
/// restarted host answered `77` and the switch signed on a second time.) The switch
/// runs in this process to count its upstream sign-ons; no chaos, so every request of
/// the second run must be answered.
#[test]
fn e2e_host_sim_killed_keeps_the_zone_session_no_new_upstream_sign_on() {
    isoswitch_sim::init_tracing("error");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let host_dir = dir.path().join("host");
    let host_addr = format!("127.0.0.1:{}", free_port());
    let mut host_proc = Some(Proc::spawn("host", &host_addr, &host_dir, ""));
    let terminals = parse_terminals(SAMPLE_TERMINALS).expect("terminals");
    let zone_key = config::zone_key_from_hex(SAMPLE_ZONE_KEY).expect("zone key");
    let sw = rt
        .block_on(switch::Switch::start(switch::SwitchConfig {
            terminals: terminals.clone(),
            zone_key,
            kek: config::kek_from_hex(SAMPLE_KEK).expect("kek"),
            host_addr: host_addr.clone(),
            data_dir: dir.path().join("switch"),
            upstream_timeout: Duration::from_secs(2),
            upstream_in_flight: 256,
            hsm: None,
        }))
        .expect("switch");
    let sr = rt.block_on(sw.spawn("127.0.0.1:0")).expect("switch up");
    let link = sw.service().switch().upstream().clone();
    let sign_ons = || link.sign_ons();
    let end = Instant::now() + Duration::from_secs(30);
    while sign_ons() == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sign_ons(), 1, "the switch signed on upstream at its start");
    let run = |ts: &[config::TerminalEntry], name: &str| {
        rt.block_on(terminal::run(TerminalSimConfig {
            switch_addr: sr.addr.to_string(),
            terminals: ts.to_vec(),
            count: ts.len() as u64 * 50,
            duration: None,
            rate: 0.0,
            window: 1,
            timeout: Duration::from_secs(3),
            chaos: ChaosConfig::default(),
            data_dir: dir.path().join(name),
            kek: config::kek_from_hex(SAMPLE_KEK).expect("kek"),
            progress: false,
            batch_max: 900,
            dukpt: None,
            wrong_pin_every: 0,
            sales_only: false,
        }))
        .expect("terminal run")
    };
    let first = run(&terminals[..4], "terminals-1");
    println!("{}", first.render());
    assert!(first.approvals > 0 && first.all_balanced(), "first run");
    if let Some(mut p) = host_proc.take() {
        p.kill9();
    }
    host_proc = Some(Proc::spawn("host", &host_addr, &host_dir, ""));
    // Other terminals (their own STANs), through the same switch and upstream session.
    let second = run(&terminals[4..8], "terminals-2");
    println!("{}", second.render());
    assert_eq!(
        sign_ons(),
        1,
        "no new upstream sign-on after the host restarted"
    );
    assert_eq!(second.no_response, 0, "every request answered");
    assert!(
        second.approvals > 0 && second.all_balanced(),
        "second run:\n{}",
        second.render()
    );
    rt.block_on(sr.stop());
    let (host_ok, _) = host_proc.take().expect("host").terminate();
    assert!(host_ok, "host_sim exited badly");
    let ledger = host::read_ledger(&host_dir, &config::kek_from_hex(SAMPLE_KEK).expect("kek"))
        .expect("ledger");
    assert_eq!(
        ledger.total,
        first.net() + second.net(),
        "host ledger ≠ terminals' total"
    );
}
