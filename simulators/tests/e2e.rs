//! End-to-end: terminals ─cup-pos─▶ switchd ─iso87-binary─▶ host_sim over real sockets,
//! with `host_sim` and `switchd` as separate processes (this test binary re-executes
//! itself in a child role: see `e2e_child`), chaos proxies on both hops, and the kill
//! tests (SIGKILL, restart on the same data directory and port).
//!
//! Each test checks what a payments operator cares about: every terminal's batch
//! settles balanced, the host ledger equals the terminals' approved-minus-reversed total
//! to the cent, and the switch reconciles with the host (its exit status).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isoswitch_sim::chaos::{ChaosConfig, ChaosProxy};
use isoswitch_sim::config::{self, parse_terminals, SAMPLE_KEK, SAMPLE_TERMINALS, SAMPLE_ZONE_KEY};
use isoswitch_sim::terminal::{self, TerminalSimConfig};
use isoswitch_sim::{host, money::cents, switch, wal};

const ROLE: &str = "ISOSWITCH_E2E_ROLE";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

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
            .stderr(Stdio::inherit())
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

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(addr: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listening on {addr}");
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
                    host_addr: upstream,
                    data_dir: data,
                    sync: wal::Sync::Data,
                    upstream_timeout: Duration::from_millis(500),
                    upstream_in_flight: 4096,
                })
                .await
                .expect("switch");
                match sw
                    .serve(&listen, isoswitch_sim::shutdown_signal())
                    .await
                    .expect("serve")
                {
                    Some(r) => {
                        println!(
                            "RECONCILIATION balanced={} switch={} host={}",
                            r.balanced,
                            cents(r.ours.net()),
                            cents(r.theirs.net())
                        );
                        if r.balanced {
                            0
                        } else {
                            2
                        }
                    }
                    None => 3,
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
    let dir = tempfile::tempdir().expect("tempdir");
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
        progress: false,
        batch_max: 900,
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
    let ledger = host::read_ledger(&host_dir).expect("ledger");
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
        switch_ok && switch_out.contains("RECONCILIATION balanced=true"),
        "switch/host reconciliation: {switch_out}"
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

/// Terminals driven by the `isoswitch-reversal` crate (its driver, journal and
/// settlement) against the same switch and host, in-process, chaos on both hops.
#[test]
fn e2e_reversal_crate_terminals_settle_and_match_the_ledger() {
    isoswitch_sim::init_tracing("error");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let chaos = ChaosConfig {
            drop: 0.05,
            delay: Duration::ZERO,
            reset: 0.01,
        };
        let zone_key = config::zone_key_from_hex(SAMPLE_ZONE_KEY).expect("zone key");
        let terminals = parse_terminals(SAMPLE_TERMINALS).expect("terminals");
        let h = host::HostSim::open(&host::HostSimConfig {
            zone_key: zone_key.clone(),
            kek: config::kek_from_hex(SAMPLE_KEK).expect("kek"),
            data_dir: dir.path().join("host"),
            fsync: true,
        })
        .expect("host");
        let hr = h.spawn("127.0.0.1:0").await.expect("host up");
        let hop = ChaosProxy::start("127.0.0.1:0", hr.addr.to_string(), chaos)
            .await
            .expect("proxy");
        let sw = switch::Switch::start(switch::SwitchConfig {
            terminals: terminals.clone(),
            zone_key,
            host_addr: hop.local_addr().to_string(),
            data_dir: dir.path().join("switch"),
            sync: wal::Sync::Data,
            upstream_timeout: Duration::from_millis(500),
            upstream_in_flight: 4096,
        })
        .await
        .expect("switch");
        let sr = sw.spawn("127.0.0.1:0").await.expect("switch up");
        let report = isoswitch_sim::crate_terminal::run(TerminalSimConfig {
            switch_addr: sr.addr.to_string(),
            terminals: terminals[..10].to_vec(),
            count: 10 * 100,
            duration: None,
            rate: 0.0,
            window: 1,
            timeout: Duration::from_millis(1500),
            chaos,
            data_dir: dir.path().join("terminals"),
            progress: false,
            batch_max: 900,
        })
        .await
        .expect("terminals");
        println!("{}", report.render());
        assert!(
            sw.drain(Duration::from_secs(30)).await,
            "upstream reversals drained"
        );
        let recon = sw.reconcile().await.expect("reconcile");
        let ledger = h.summary().expect("ledger");
        sr.stop().await;
        hr.stop().await;
        assert!(
            report.transactions >= 900,
            "too few: {}",
            report.transactions
        );
        assert!(
            report.all_balanced(),
            "not every batch balanced:\n{}",
            report.render()
        );
        assert_eq!(ledger.total, report.net(), "host ledger ≠ terminals' total");
        assert!(
            recon.is_some_and(|r| r.balanced),
            "switch/host reconciliation"
        );
    });
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
    use std::sync::atomic::Ordering;
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
            host_addr: host_addr.clone(),
            data_dir: dir.path().join("switch"),
            sync: wal::Sync::Os,
            upstream_timeout: Duration::from_secs(2),
            upstream_in_flight: 256,
        }))
        .expect("switch");
    let sr = rt.block_on(sw.spawn("127.0.0.1:0")).expect("switch up");
    let sign_ons = || sw.stats().sign_ons.load(Ordering::Relaxed);
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
            progress: false,
            batch_max: 900,
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
    let recon = rt.block_on(sw.reconcile()).expect("reconcile");
    rt.block_on(sr.stop());
    let (host_ok, _) = host_proc.take().expect("host").terminate();
    assert!(host_ok, "host_sim exited badly");
    let ledger = host::read_ledger(&host_dir).expect("ledger");
    assert_eq!(
        ledger.total,
        first.net() + second.net(),
        "host ledger ≠ terminals' total"
    );
    assert!(
        recon.is_some_and(|r| r.balanced),
        "switch/host reconciliation"
    );
}
