//! Operations (issue 13), with the real `switchd` and `host_sim` programs as child
//! processes (the examples' binaries, which `cargo test` builds beside this test): the
//! admin endpoint (`/livez`, `/readyz` before the upstream sign-on, between and while
//! draining, `/metrics` counters moving), the graceful drain (an in-doubt transaction
//! left as a pending reversal, sent by the next start), TLS on both hops with mutual TLS
//! and an untrusted terminal certificate refused, the terminals file reloaded (SIGHUP and
//! `POST /reload`), one process per data directory, and the logs (JSON lines with the
//! transaction's fields; no escape character in a log file).
//!
//! The terminals run in this process (`isoswitch_sim::terminal`), and every run ends with
//! the checks of the e2e tests: each batch balanced, the host ledger equal to the
//! terminals' approved − reversed total.

mod common;

#[path = "../../crates/net/tests/common/pki.rs"]
mod pki;

use common::{free_port, wait_listening};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isoswitch::codec::Message;
use isoswitch::session::counters::MemoryCounters;
use isoswitch::session::{Inbound, SessionProfile, TerminalConfig, TerminalSession};
use isoswitch_sim::chaos::ChaosConfig;
use isoswitch_sim::config::{self, parse_terminals, TerminalEntry, SAMPLE_KEK, SAMPLE_TERMINALS};
use isoswitch_sim::terminal::{self, Report, TerminalSimConfig};
use isoswitch_sim::{host, local_now};

fn addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The examples' binaries: `target/<profile>/examples/<name>`, beside `deps/` where this
/// test runs from.
fn program(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let p = dir.join("examples").join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo test -p isoswitch-sim` (it builds the examples) or `cargo build -p isoswitch-sim --examples`",
        p.display()
    );
    p
}

/// The repository root (the programs' default paths are relative to it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root")
        .to_path_buf()
}

/// A program running as a child process, its stderr going to a log file.
struct Prog {
    child: Child,
    log: PathBuf,
}

impl Prog {
    fn start(name: &str, args: &[&str], log: PathBuf, env: &[(&str, &str)]) -> Prog {
        let err = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(program(name));
        cmd.args(args)
            .current_dir(root())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn program");
        Prog { child, log }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status();
    }

    /// Waits (at most 60 s) for the exit; its success and stdout.
    fn wait(mut self) -> (bool, String) {
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
                let _ = self.child.kill();
                return (false, "timed out".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then [`Prog::wait`].
    fn stop(self) -> (bool, String) {
        self.signal("TERM");
        self.wait()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prog {
    fn drop(&mut self) {
        common::reap(&mut self.child);
    }
}

/// One HTTP/1.1 request; the status and the body.
fn http(method: &str, addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn get(addr: &str, path: &str) -> (u16, String) {
    http("GET", addr, path).unwrap_or_else(|| panic!("GET {path} on {addr}"))
}

/// Polls `/readyz` until it answers `want` (at most 30 s); the last answer.
fn wait_ready(admin: &str, want: u16) -> (u16, String) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http("GET", admin, "/readyz").unwrap_or((0, String::new()));
        if r.0 == want || Instant::now() > end {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sum of the samples of `name` whose labels include every `labels` pair.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (n, rest) = key.split_once('{').unwrap_or((key, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn terminals() -> Vec<TerminalEntry> {
    parse_terminals(SAMPLE_TERMINALS).expect("terminals")
}

fn load(switch: &str, ts: &[TerminalEntry], count: u64, data: PathBuf) -> TerminalSimConfig {
    TerminalSimConfig {
        switch_addr: switch.to_owned(),
        terminals: ts.to_vec(),
        count,
        duration: None,
        rate: 0.0,
        window: 1,
        timeout: Duration::from_secs(3),
        chaos: ChaosConfig::default(),
        data_dir: data,
        kek: config::kek_from_hex(SAMPLE_KEK).expect("kek"),
        progress: false,
        batch_max: 900,
        dukpt: None,
        wrong_pin_every: 0,
        sales_only: false,
    }
}

fn kek() -> isoswitch::session::Kek {
    config::kek_from_hex(SAMPLE_KEK).expect("kek")
}

fn assert_balances(report: &Report, host_dir: &Path, what: &str) {
    println!("{what}:\n{}", report.render());
    assert!(
        report.all_balanced(),
        "{what}: not every batch balanced:\n{}",
        report.render()
    );
    let ledger = host::read_ledger(host_dir, &kek()).expect("ledger");
    assert_eq!(
        ledger.total,
        report.net(),
        "{what}: host ledger ≠ the terminals' approved − reversed total"
    );
}

fn no_escape(p: &Prog) {
    let log = p.log_text();
    assert!(!log.is_empty(), "{} is empty", p.log.display());
    assert!(
        !log.contains('\u{1b}'),
        "{} holds an escape character",
        p.log.display()
    );
}

/// `/livez`, `/readyz` 503 before the upstream sign-on, 200 once signed on, the metrics
/// moving with the traffic (messages, response codes, an upstream reversal after dropped
/// responses), JSON logs with the transaction's fields, no escape character in either
/// program's log file; then the drain: a transaction in flight to a host that stopped
/// answering, `/readyz` 503 while draining, exit 0 with the in-doubt transaction left a
/// pending reversal, which the next start sends; everything balances.
#[test]
fn ops_admin_endpoint_metrics_and_graceful_drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host_dir, switch_dir) = (dir.path().join("host"), dir.path().join("switch"));
    let (host_addr, switch_addr) = (addr(), addr());
    let (host_admin, switch_admin) = (addr(), addr());
    let d = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let switch_args = |admin: &str| {
        vec![
            "--listen".to_owned(),
            switch_addr.clone(),
            "--host".into(),
            host_addr.clone(),
            "--data-dir".into(),
            d(&switch_dir),
            "--admin".into(),
            admin.to_owned(),
            "--upstream-timeout".into(),
            "1s".into(),
            "--drain-timeout".into(),
            "1s".into(),
            "--log-format".into(),
            "json".into(),
        ]
    };
    let json_env = [("RUST_LOG", "info,isoswitch_switch=debug")];
    let args = switch_args(&switch_admin);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let switchd = Prog::start(
        "switchd",
        &args,
        dir.path().join("switchd-1.log"),
        &json_env,
    );
    wait_listening(&switch_admin);
    assert_eq!(get(&switch_admin, "/livez").0, 200);
    let (code, body) = get(&switch_admin, "/readyz");
    assert_eq!(code, 503, "ready with no host: {body}");
    assert!(body.contains("upstream"), "the reason: {body}");

    let host = Prog::start(
        "host_sim",
        &[
            "--listen",
            &host_addr,
            "--data-dir",
            &d(&host_dir),
            "--admin",
            &host_admin,
        ],
        dir.path().join("host_sim.log"),
        &[],
    );
    wait_listening(&host_addr);
    let (code, body) = wait_ready(&switch_admin, 200);
    assert_eq!(code, 200, "not ready once the host is up: {body}");
    assert_eq!(wait_ready(&host_admin, 200).0, 200);

    // Traffic with responses dropped on the terminal hop: terminals reverse, and the
    // switch reverses upstream what the host had approved.
    let rt = runtime();
    let ts = terminals();
    let mut cfg = load(&switch_addr, &ts[..4], 4 * 60, dir.path().join("terminals"));
    cfg.chaos.drop = 0.06;
    cfg.timeout = Duration::from_millis(1200);
    let first = rt.block_on(terminal::run(cfg)).expect("terminal run");
    assert!(first.transactions >= 200, "{}", first.render());
    let m = get(&switch_admin, "/metrics").1;
    let count = |name: &str, labels: &[(&str, &str)]| metric(&m, name, labels);
    assert!(
        count(
            "isoswitch_messages_total",
            &[("link", "terminals"), ("direction", "in"), ("mti", "0200")]
        ) >= 100.0
    );
    assert!(
        count(
            "isoswitch_messages_total",
            &[("link", "host"), ("direction", "out"), ("mti", "0200")]
        ) >= 100.0
    );
    assert!(
        count(
            "isoswitch_responses_total",
            &[("link", "terminals"), ("rc", "00")]
        ) >= 100.0
    );
    assert_eq!(count("isoswitch_sign_ons_total", &[("link", "host")]), 1.0);
    // (A dropped 0810 makes its terminal sign on again.)
    assert!(count("isoswitch_sign_ons_total", &[("link", "terminals")]) >= 4.0);
    assert!(
        count(
            "isoswitch_reversal_attempts_total",
            &[("link", "host"), ("outcome", "answered")]
        ) >= 1.0,
        "no upstream reversal after dropped responses:\n{m}"
    );
    assert!(m.contains("isoswitch_request_duration_seconds_bucket{link=\"host\""));
    assert!(m
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .all(|l| l.starts_with("isoswitch_")));
    let hm = get(&host_admin, "/metrics").1;
    assert!(
        metric(
            &hm,
            "isoswitch_messages_total",
            &[("link", "switches"), ("direction", "in"), ("mti", "0200")]
        ) >= 100.0
    );

    // The drain: the host stops answering, one sale is in flight upstream.
    host.signal("STOP");
    let mut one = load(&switch_addr, &ts[4..5], 1, dir.path().join("terminals-2"));
    one.timeout = Duration::from_secs(6);
    let second = rt.spawn(terminal::run(one));
    let end = Instant::now() + Duration::from_secs(20);
    while metric(
        &get(&switch_admin, "/metrics").1,
        "isoswitch_in_flight",
        &[("link", "host")],
    ) < 1.0
    {
        assert!(Instant::now() < end, "the sale never went upstream");
        std::thread::sleep(Duration::from_millis(20));
    }
    switchd.signal("TERM");
    let (code, body) = wait_ready(&switch_admin, 503);
    assert_eq!(code, 503);
    assert!(body.contains("draining"), "the reason: {body}");
    let log = switchd.log_text();
    let (ok, out) = switchd.wait();
    assert!(ok, "switchd did not exit 0 after the drain: {out}");
    // The transaction (a sale, void or refund advice) is a pending reversal or a
    // pending advice in the journal.
    assert!(
        out.contains("kept in the journal for the next start"),
        "the in-doubt transaction is not pending in the journal: {out}"
    );
    // JSON lines, the transaction's fields in them, the PAN masked.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let txn = lines
        .iter()
        .find(|v| v["message"] == "terminal transaction")
        .expect("a transaction logged");
    for f in ["mti", "stan", "terminal", "pan", "amount", "rc"] {
        assert!(txn.get(f).is_some(), "no {f} in {txn}");
    }
    let pan = txn["pan"].as_str().unwrap_or_default();
    assert!(pan.contains('*'), "PAN not masked: {pan}");
    assert!(
        txn["amount"].as_str().unwrap_or_default().contains('.'),
        "{txn}"
    );

    // The host answers again; the next start sends the pending reversal.
    host.signal("CONT");
    let admin2 = addr();
    let args = switch_args(&admin2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let switchd = Prog::start("switchd", &args, dir.path().join("switchd-2.log"), &[]);
    wait_listening(&admin2);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let m = get(&admin2, "/metrics").1;
        let sent: f64 = ["0400", "0401", "0220", "0221"]
            .iter()
            .map(|mti| {
                metric(
                    &m,
                    "isoswitch_messages_total",
                    &[("link", "host"), ("direction", "out"), ("mti", mti)],
                )
            })
            .sum();
        let pending = metric(&m, "isoswitch_reversals_pending", &[("link", "host")])
            + metric(&m, "isoswitch_advices_pending", &[("link", "host")]);
        if sent >= 1.0 && pending == 0.0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "the pending reversal or advice was not sent:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = rt
        .block_on(second)
        .expect("terminal task")
        .expect("terminal run");
    let (ok, out) = switchd.stop();
    assert!(ok, "{out}");
    no_escape(&host);
    let (host_ok, _) = host.stop();
    assert!(host_ok, "host_sim exited badly");
    println!(
        "traffic:\n{}\ndrained:\n{}",
        first.render(),
        second.render()
    );
    assert!(
        first.all_balanced(),
        "not every batch balanced:\n{}",
        first.render()
    );
    // The drained transaction (a sale reversed, or a refund advice forwarded after the
    // restart) is in the ledger as the terminal saw it.
    let ledger = host::read_ledger(&host_dir, &kek()).expect("ledger");
    assert_eq!(
        ledger.total,
        first.net() + second.net(),
        "the drained transaction is not settled at the host:\n{}",
        second.render()
    );
}

/// Sign-on of terminal `t` under master key `tmk` through one connection: DE 39 of the
/// answer and whether the terminal could open the working keys.
fn sign_on(
    switch: &str,
    t: &TerminalEntry,
    tmk: &str,
    rt: &tokio::runtime::Runtime,
) -> (String, bool) {
    let profile = SessionProfile::cup_pos().expect("profile");
    let key = TerminalEntry {
        tmk: tmk.to_owned(),
        ..t.clone()
    }
    .key()
    .expect("key");
    let mut s = TerminalSession::new(
        profile.clone(),
        TerminalConfig::new(t.id().expect("id")),
        key,
        MemoryCounters::new(),
    )
    .expect("session");
    let req = s.sign_on(Instant::now(), local_now()).expect("0800");
    let reply = rt
        .block_on(terminal::one_shot(switch, req, Duration::from_secs(5)))
        .expect("an answer");
    let code = Message::decode(&profile.dialect, reply.clone())
        .expect("0810")
        .get(39)
        .unwrap_or_default();
    let opened = matches!(
        s.handle_message(Instant::now(), reply),
        Ok(Inbound::SignedOn { .. })
    );
    (code, opened)
}

fn terminals_file(path: &Path, ts: &[TerminalEntry]) {
    let text: String = ts
        .iter()
        .map(|t| {
            format!(
                "[[terminal]]\ntid = \"{}\"\nmid = \"{}\"\ntmk = \"{}\"\n\n",
                t.tid, t.mid, t.tmk
            )
        })
        .collect();
    std::fs::write(path, text).expect("terminals file");
}

/// SIGHUP and `POST /reload` read the terminals file again: a new terminal signs on, a
/// removed one is refused 97, a changed master key applies at the next sign-on, a file
/// that does not validate keeps the old table (400, and the log says why). A second
/// `switchd` or `host_sim` on a data directory in use exits with a one-line error.
#[test]
fn ops_reload_the_terminals_file_and_one_process_per_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("terminals.toml");
    let ts = terminals();
    terminals_file(&file, &ts[..2]);
    let (switch_addr, admin) = (addr(), addr());
    let switch_dir = dir.path().join("switch");
    let d = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let no_host = addr();
    let switchd = Prog::start(
        "switchd",
        &[
            "--listen",
            &switch_addr,
            "--host",
            &no_host,
            "--terminals",
            &d(&file),
            "--data-dir",
            &d(&switch_dir),
            "--admin",
            &admin,
        ],
        dir.path().join("switchd.log"),
        &[],
    );
    wait_listening(&switch_addr);
    let rt = runtime();
    assert_eq!(
        sign_on(&switch_addr, &ts[0], &ts[0].tmk, &rt),
        ("00".into(), true)
    );
    assert_eq!(sign_on(&switch_addr, &ts[2], &ts[2].tmk, &rt).0, "97");

    // SIGHUP: terminal 2 in, terminal 0 out.
    terminals_file(&file, &ts[1..3]);
    switchd.signal("HUP");
    let end = Instant::now() + Duration::from_secs(20);
    while sign_on(&switch_addr, &ts[2], &ts[2].tmk, &rt).0 != "00" {
        assert!(
            Instant::now() < end,
            "SIGHUP did not reload the terminals file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sign_on(&switch_addr, &ts[0], &ts[0].tmk, &rt).0, "97");

    // POST /reload: terminal 1 gets a new master key.
    let new_tmk = "0123456789ABCDEFFEDCBA9876543210";
    let mut changed = ts[1..3].to_vec();
    changed[0].tmk = new_tmk.into();
    terminals_file(&file, &changed);
    let (code, body) = http("POST", &admin, "/reload").expect("reload");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("1 with a new master key"), "{body}");
    assert!(
        !sign_on(&switch_addr, &ts[1], &ts[1].tmk, &rt).1,
        "old key still in force"
    );
    assert_eq!(
        sign_on(&switch_addr, &ts[1], new_tmk, &rt),
        ("00".into(), true)
    );

    // A file that does not validate: 400, the old table stays, the log says why.
    std::fs::write(
        &file,
        "[[terminal]]\ntid = \"SHORT\"\nmid = \"X\"\ntmk = \"zz\"\n",
    )
    .expect("bad file");
    let (code, body) = http("POST", &admin, "/reload").expect("reload");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("old table stays"), "{body}");
    assert_eq!(sign_on(&switch_addr, &ts[2], &ts[2].tmk, &rt).0, "00");
    assert!(switchd.log_text().contains("terminals file not reloaded"));

    // One process per data directory, for both programs.
    let second = Prog::start(
        "switchd",
        &[
            "--listen",
            &addr(),
            "--host",
            &no_host,
            "--terminals",
            &d(&file.with_file_name("unused.toml")),
            "--data-dir",
            &d(&switch_dir),
        ],
        dir.path().join("switchd-2.log"),
        &[],
    );
    terminals_file(&file.with_file_name("unused.toml"), &ts[..1]);
    let (ok, _) = second.wait();
    assert!(!ok, "a second switchd ran on the same data directory");
    let host_dir = dir.path().join("host");
    let host_addr = addr();
    let host = Prog::start(
        "host_sim",
        &["--listen", &host_addr, "--data-dir", &d(&host_dir)],
        dir.path().join("host.log"),
        &[],
    );
    wait_listening(&host_addr);
    let other = Prog::start(
        "host_sim",
        &["--listen", &addr(), "--data-dir", &d(&host_dir)],
        dir.path().join("host-2.log"),
        &[],
    );
    let other_log = other.log.clone();
    let (ok, _) = other.wait();
    assert!(!ok, "a second host_sim ran on the same data directory");
    let says = std::fs::read_to_string(other_log).unwrap_or_default();
    assert_eq!(says.lines().count(), 1, "not one line: {says}");
    assert!(says.contains("in use by another process"), "{says}");
    let says = std::fs::read_to_string(dir.path().join("switchd-2.log")).unwrap_or_default();
    assert!(
        says.lines()
            .last()
            .unwrap_or_default()
            .contains("in use by another process"),
        "{says}"
    );
    no_escape(&switchd);
    assert!(switchd.stop().0);
    assert!(host.stop().0);
}

/// Terminals → switch and switch → host over TLS, both with mutual TLS, certificates made
/// at run time: the run balances against the host ledger; a terminal whose certificate
/// comes from a CA the switch does not trust is refused at the handshake.
#[test]
fn ops_tls_on_both_hops_with_mutual_tls_balances_and_refuses_an_untrusted_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let ca = pki::Ca::new("isoswitch test CA");
    let ca_file = ca.write(p, "ca");
    let host_cert = ca.server(p, "host");
    let switch_cert = ca.server(p, "switch");
    let switch_client = ca.client(p, "switch-client");
    let terminal_cert = ca.client(p, "terminal");
    let rogue_ca = pki::Ca::new("not trusted");
    let rogue = rogue_ca.client(p, "rogue");
    let d = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let (host_dir, switch_dir) = (p.join("host"), p.join("switch"));
    let (host_addr, switch_addr, admin) = (addr(), addr(), addr());
    let host = Prog::start(
        "host_sim",
        &[
            "--listen",
            &host_addr,
            "--data-dir",
            &d(&host_dir),
            "--tls-cert",
            &d(&host_cert.cert),
            "--tls-key",
            &d(&host_cert.key),
            "--tls-client-ca",
            &d(&ca_file),
        ],
        p.join("host.log"),
        &[],
    );
    wait_listening(&host_addr);
    let switchd = Prog::start(
        "switchd",
        &[
            "--listen",
            &switch_addr,
            "--host",
            &host_addr,
            "--data-dir",
            &d(&switch_dir),
            "--admin",
            &admin,
            "--tls-cert",
            &d(&switch_cert.cert),
            "--tls-key",
            &d(&switch_cert.key),
            "--tls-client-ca",
            &d(&ca_file),
            "--host-tls-ca",
            &d(&ca_file),
            "--host-tls-cert",
            &d(&switch_client.cert),
            "--host-tls-key",
            &d(&switch_client.key),
        ],
        p.join("switchd.log"),
        &[],
    );
    wait_listening(&admin);
    let (code, body) = wait_ready(&admin, 200);
    assert_eq!(code, 200, "the switch did not sign on over TLS: {body}");

    let rt = runtime();
    let ts = terminals();
    let tls = isoswitch_sim::ops::client_tls(
        Some(&ca_file),
        Some(&terminal_cert.cert),
        Some(&terminal_cert.key),
    )
    .expect("client TLS");
    let report = rt
        .block_on(terminal::run_with_tls(
            load(&switch_addr, &ts[..4], 4 * 50, p.join("terminals")),
            tls,
        ))
        .expect("terminal run over TLS");
    assert!(report.approvals > 0, "{}", report.render());
    assert_eq!(report.no_response, 0, "{}", report.render());

    // A certificate from another CA: the handshake fails, nothing is answered.
    let rogue_tls =
        isoswitch_sim::ops::client_tls(Some(&ca_file), Some(&rogue.cert), Some(&rogue.key))
            .expect("client TLS")
            .expect("configured");
    let refused = rt.block_on(async {
        use isoswitch::net::{Client, ClientConfig, DialectCorrelator, Framing, TlsConnector};
        let mut cc = ClientConfig::new(Framing::CupPos);
        cc.reconnect = None;
        let dialect = SessionProfile::cup_pos().expect("profile").dialect;
        let connector =
            TlsConnector::new(switch_addr.clone(), "127.0.0.1", &rogue_tls).expect("connector");
        let client = match Client::builder(cc, DialectCorrelator::new(dialect))
            .connect(connector)
            .await
        {
            Ok(c) => c,
            Err(_) => return true,
        };
        let mut s = TerminalSession::new(
            SessionProfile::cup_pos().expect("profile"),
            TerminalConfig::new(ts[5].id().expect("id")),
            ts[5].key().expect("key"),
            MemoryCounters::new(),
        )
        .expect("session");
        let req = s.sign_on(Instant::now(), local_now()).expect("0800");
        client.request(req, Duration::from_secs(3)).await.is_err()
    });
    assert!(
        refused,
        "a terminal with an untrusted certificate was served"
    );
    let m = get(&admin, "/metrics").1;
    assert!(
        metric(
            &m,
            "isoswitch_tls_handshake_failures_total",
            &[("link", "terminals")]
        ) >= 1.0,
        "no handshake failure counted:\n{m}"
    );
    let (ok, out) = switchd.stop();
    assert!(ok, "{out}");
    assert!(host.stop().0, "host_sim exited badly");
    assert_balances(&report, &host_dir, "TLS run");
}

/// `host_sim`'s drain: a sale in flight at a slow host (`--answer-delay`) when SIGTERM
/// arrives finishes (approved); a sale that arrives while the host drains is answered
/// with the retry code by the library's refusal rule (the one `switchd` uses), which
/// reaches its terminal as a decline; `/readyz` is 503 meanwhile; exit 0; the host's
/// ledger holds the approved sale only.
#[test]
fn ops_host_sim_drain_answers_new_requests_with_the_retry_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host_dir, switch_dir) = (dir.path().join("host"), dir.path().join("switch"));
    let (host_addr, switch_addr) = (addr(), addr());
    let (host_admin, switch_admin) = (addr(), addr());
    let d = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let host = Prog::start(
        "host_sim",
        &[
            "--listen",
            &host_addr,
            "--data-dir",
            &d(&host_dir),
            "--admin",
            &host_admin,
            "--answer-delay",
            "3s",
            "--drain-timeout",
            "10s",
        ],
        dir.path().join("host_sim.log"),
        &[],
    );
    let switchd = Prog::start(
        "switchd",
        &[
            "--listen",
            &switch_addr,
            "--host",
            &host_addr,
            "--data-dir",
            &d(&switch_dir),
            "--admin",
            &switch_admin,
            "--upstream-timeout",
            "8s",
        ],
        dir.path().join("switchd.log"),
        &[],
    );
    wait_listening(&switch_admin);
    assert_eq!(wait_ready(&switch_admin, 200).0, 200);
    assert_eq!(wait_ready(&host_admin, 200).0, 200);
    let rt = runtime();
    let ts = terminals();
    // Sales: a refund advice is never refused while the host drains (it is repeated
    // until a host takes it), so it would wait for a host that does not come back here.
    let mut slow = load(&switch_addr, &ts[..1], 1, dir.path().join("terminal-a"));
    slow.timeout = Duration::from_secs(12);
    slow.sales_only = true;
    let slow = rt.spawn(terminal::run(slow));
    let end = Instant::now() + Duration::from_secs(20);
    while metric(
        &get(&host_admin, "/metrics").1,
        "isoswitch_in_flight",
        &[("link", "switches")],
    ) < 1.0
    {
        assert!(Instant::now() < end, "the sale never reached the host");
        std::thread::sleep(Duration::from_millis(20));
    }
    host.signal("TERM");
    let (code, body) = wait_ready(&host_admin, 503);
    assert_eq!(code, 503);
    assert!(body.contains("draining"), "the reason: {body}");
    // A new sale while the host drains: answered with the retry code.
    let mut late = load(&switch_addr, &ts[1..2], 1, dir.path().join("terminal-b"));
    late.timeout = Duration::from_secs(12);
    late.sales_only = true;
    let late = rt.block_on(terminal::run(late)).expect("terminal run");
    let slow = rt.block_on(slow).expect("task").expect("terminal run");
    let m = get(&switch_admin, "/metrics").1;
    assert!(
        metric(
            &m,
            "isoswitch_responses_total",
            &[("link", "host"), ("direction", "in"), ("rc", "91")]
        ) >= 1.0,
        "the host did not answer 91 while draining:\n{m}"
    );
    assert_eq!(slow.approvals, 1, "{}", slow.render());
    assert_eq!(late.approvals, 0, "{}", late.render());
    assert_eq!(late.declines, 1, "{}", late.render());
    let (ok, _) = host.wait();
    assert!(ok, "host_sim did not exit 0 after the drain");
    let (ok, out) = switchd.stop();
    assert!(ok, "{out}");
    let ledger = host::read_ledger(&host_dir, &kek()).expect("ledger");
    assert_eq!(ledger.total, slow.net() + late.net());
    assert!(slow.all_balanced() && late.all_balanced());
}

/// Starts `host_sim` on `listen` over `data` with an admin endpoint.
fn start_host(listen: &str, data: &Path, admin: &str, log: PathBuf) -> Prog {
    let data = data.to_str().expect("utf-8 path");
    Prog::start(
        "host_sim",
        &["--listen", listen, "--data-dir", data, "--admin", admin],
        log,
        &[],
    )
}

/// A link pool: `switchd --host A --host B` (failover) under terminal load; host A is
/// killed (SIGSTOP until requests are in flight there, then SIGKILL) mid-run: traffic moves to B, A's in-doubt transactions are reversed
/// through B (B never saw their originals: acknowledged without a ledger effect) and,
/// once A is back on its data directory, at A too (A holds the approvals it had made
/// durable before it died); advices A got first wait for A. Afterwards every batch balances with the switch, and the two
/// hosts' ledgers together equal the terminals' approved − reversed total to the cent:
/// nothing lost or doubled.
#[test]
fn ops_pool_of_two_hosts_survives_one_killed_mid_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dir_a, dir_b) = (dir.path().join("host-a"), dir.path().join("host-b"));
    let (addr_a, addr_b, switch_addr) = (addr(), addr(), addr());
    let (admin_a, admin_b, switch_admin) = (addr(), addr(), addr());
    let host_a = start_host(&addr_a, &dir_a, &admin_a, dir.path().join("host-a.log"));
    let host_b = start_host(&addr_b, &dir_b, &admin_b, dir.path().join("host-b.log"));
    let switch_dir = dir.path().join("switch");
    let switchd = Prog::start(
        "switchd",
        &[
            "--listen",
            &switch_addr,
            "--host",
            &addr_a,
            "--host",
            &addr_b,
            "--host-strategy",
            "failover",
            "--data-dir",
            switch_dir.to_str().expect("utf-8 path"),
            "--admin",
            &switch_admin,
            "--upstream-timeout",
            "1s",
        ],
        dir.path().join("switchd.log"),
        &[],
    );
    wait_listening(&switch_admin);
    assert_eq!(wait_ready(&switch_admin, 200).0, 200);
    // Each link signs on by itself (ready already once one has).
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let m = get(&switch_admin, "/metrics").1;
        let signed = |link: &str| metric(&m, "isoswitch_sign_ons_total", &[("link", link)]);
        if signed("host") == 1.0 && signed("host-2") == 1.0 {
            break;
        }
        assert!(Instant::now() < end, "the links did not sign on:\n{m}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let rt = runtime();
    let ts = terminals();
    let mut cfg = load(
        &switch_addr,
        &ts[..16],
        16 * 80,
        dir.path().join("terminals"),
    );
    cfg.timeout = Duration::from_secs(4);
    let run = rt.spawn(terminal::run(cfg));
    let out = |m: &str, link: &str, mti: &str| {
        metric(
            m,
            "isoswitch_messages_total",
            &[("link", link), ("direction", "out"), ("mti", mti)],
        )
    };
    // Failover: the first host takes the traffic; kill it mid-run.
    let end = Instant::now() + Duration::from_secs(60);
    while out(&get(&switch_admin, "/metrics").1, "host", "0200") < 200.0 {
        assert!(Instant::now() < end, "no traffic to the first host");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Frozen first, so that requests are in flight there when it dies (the terminals
    // move in step with the group commits: at a random instant the host may hold none).
    host_a.signal("STOP");
    let end = Instant::now() + Duration::from_secs(30);
    while metric(
        &get(&switch_admin, "/metrics").1,
        "isoswitch_in_flight",
        &[("link", "host")],
    ) < 1.0
    {
        assert!(Instant::now() < end, "nothing in flight to the first host");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut host_a = host_a;
    host_a.signal("KILL");
    let _ = host_a.child.wait();
    // Traffic moves to the survivor.
    let end = Instant::now() + Duration::from_secs(60);
    while out(&get(&switch_admin, "/metrics").1, "host-2", "0200") < 100.0 {
        assert!(Instant::now() < end, "traffic did not move to the survivor");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The dead host's in-doubt transactions: reversed through the survivor.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let m = get(&switch_admin, "/metrics").1;
        if out(&m, "host-2", "0400") + out(&m, "host-2", "0401") >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "no reversal through the survivor:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The dead host comes back on its data directory (advices it got first wait for it:
    // their terminals repeat them until then): what is owed to it arrives, and nothing
    // stays pending.
    let host_a = start_host(&addr_a, &dir_a, &admin_a, dir.path().join("host-a-2.log"));
    let report = rt.block_on(run).expect("task").expect("terminal run");
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let m = get(&switch_admin, "/metrics").1;
        let pending = metric(&m, "isoswitch_reversals_pending", &[("link", "host")])
            + metric(&m, "isoswitch_advices_pending", &[("link", "host")]);
        // (Its admin endpoint may not be up yet.)
        let ma = http("GET", &admin_a, "/metrics").unwrap_or_default().1;
        let at_a: f64 = ["0400", "0401"]
            .iter()
            .map(|mti| {
                metric(
                    &ma,
                    "isoswitch_messages_total",
                    &[("link", "switches"), ("direction", "in"), ("mti", mti)],
                )
            })
            .sum();
        if pending == 0.0 && at_a >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "owed reversals not delivered to the host that came back:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, out_text) = switchd.stop();
    assert!(ok, "{out_text}");
    assert!(out_text.contains("nothing pending upstream"), "{out_text}");
    let (ok_a, _) = host_a.stop();
    let (ok_b, _) = host_b.stop();
    assert!(ok_a && ok_b, "a host exited badly");
    println!("{}", report.render());
    assert!(
        report.all_balanced(),
        "not every batch balanced:\n{}",
        report.render()
    );
    let a = host::read_ledger(&dir_a, &kek()).expect("ledger A");
    let b = host::read_ledger(&dir_b, &kek()).expect("ledger B");
    assert!(a.total != 0 && b.total != 0, "both hosts took traffic");
    assert_eq!(
        a.total + b.total,
        report.net(),
        "the hosts' ledgers ≠ the terminals' approved − reversed total"
    );
}
