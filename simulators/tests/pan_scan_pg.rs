//! No clear PAN at rest on the database store, as an operator runs it: the real
//! programs (`host_sim --store postgres://…` and `switchd --store postgres://…`, the
//! examples, with their default key files) on a throwaway PostgreSQL cluster (or
//! `ISOSWITCH_PG_URL`), DUKPT terminals through them, some responses to the terminals
//! dropped (so reversals are journaled and decided too). Then every column of every
//! table of the database (as text, and `bytea` as raw bytes) and every file under the
//! programs' data directories (and their logs) are scanned for every PAN the terminals used (ASCII, last
//! ten digits, packed BCD): none. The scans are first shown to find a PAN planted in a
//! store table and in a data file, so the test fails if a PAN were stored in clear.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isoswitch_pg::testing::{self, pan_needles, scan_database, TestCluster};
use isoswitch_sim::chaos::ChaosConfig;
use isoswitch_sim::config::{self, parse_terminals, SAMPLE_KEK, SAMPLE_TERMINALS};
use isoswitch_sim::terminal::{self, TerminalSimConfig};

mod common;
use common::{free_port, program, repo, wait_listening};

/// A program started by the test; killed if the test fails before it stops it.
struct Program {
    name: &'static str,
    child: Child,
}

impl Drop for Program {
    fn drop(&mut self) {
        common::reap(&mut self.child);
    }
}

impl Program {
    fn start(name: &'static str, listen: &str, args: &[String], stderr: &Path) -> Program {
        let child = Command::new(program(name))
            .arg("--listen")
            .arg(listen)
            .args(args)
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).expect("stderr file"))
            .spawn()
            .expect("spawn");
        let p = Program { name, child };
        wait_listening(listen);
        p
    }

    /// SIGTERM, and its exit status (at most 60 s).
    fn stop(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within 60 s", self.name);
        false
    }
}

#[test]
fn switchd_and_host_sim_on_postgres_keep_no_pan_in_clear() {
    isoswitch_sim::init_tracing("error");
    let pg = TestCluster::require();
    let url = pg.fresh_database("panscan").expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    let host_listen = format!("127.0.0.1:{}", free_port());
    let switch_listen = format!("127.0.0.1:{}", free_port());
    let host = Program::start(
        "host_sim",
        &host_listen,
        &[
            "--store".into(),
            url.clone(),
            "--data-dir".into(),
            dir.path().join("host").display().to_string(),
        ],
        &dir.path().join("host.stderr"),
    );
    let switch = Program::start(
        "switchd",
        &switch_listen,
        &[
            "--store".into(),
            url.clone(),
            "--node".into(),
            "switch-a".into(),
            "--host".into(),
            host_listen.clone(),
            "--data-dir".into(),
            dir.path().join("switch").display().to_string(),
        ],
        &dir.path().join("switch.stderr"),
    );
    let terminals = parse_terminals(SAMPLE_TERMINALS).expect("terminals");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let report = rt
        .block_on(terminal::run(TerminalSimConfig {
            switch_addr: switch_listen.clone(),
            terminals: terminals[..4].to_vec(),
            count: 4 * 30,
            duration: None,
            rate: 0.0,
            window: 1,
            timeout: Duration::from_millis(1500),
            chaos: ChaosConfig {
                drop: 0.05,
                ..ChaosConfig::default()
            },
            data_dir: dir.path().join("terminals"),
            kek: config::kek_from_hex(SAMPLE_KEK).expect("kek"),
            progress: false,
            batch_max: 900,
            dukpt: Some(
                config::load_tdes_key(&repo().join("examples/bdk.hex"), "BDK").expect("bdk"),
            ),
            wrong_pin_every: 7,
            sales_only: false,
        }))
        .expect("terminal run");
    println!("{}", report.render());
    assert!(report.approvals > 0, "right PINs approved");
    assert_eq!(report.right_pin_55, 0, "a right PIN was answered 55");
    assert!(report.all_balanced(), "{}", report.render());
    let switch_ok = switch.stop();
    let host_ok = host.stop();
    let log = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap_or_default();
    assert!(switch_ok, "switchd exited badly: {}", log("switch.stderr"));
    assert!(host_ok, "host_sim exited badly: {}", log("host.stderr"));

    let pans: Vec<String> = terminals[..4]
        .iter()
        .flat_map(|t| terminal::pans_for(&t.tid))
        .collect();
    let needles: Vec<Vec<u8>> = pans.iter().flat_map(|p| pan_needles(p)).collect();
    // The programs wrote to the database: journal records, decisions, a ledger.
    for table in ["journal_record", "host_decision", "host_ledger"] {
        let sql = format!("SELECT count(*) FROM {table}");
        let n = testing::with_client(&url, move |c| async move {
            let r = c.query_one(&sql, &[]).await.map_err(|e| e.to_string())?;
            Ok(r.get::<_, i64>(0))
        })
        .expect("count");
        assert!(n > 0, "nothing in {table}");
    }
    // The database scan finds a PAN planted in a store table (as the ASCII bytes a
    // clear ledger key would be)…
    testing::execute(
        &url,
        &format!(
            "INSERT INTO host_ledger (part, pan_hash, total) VALUES ('planted', '{}'::bytea, 0)",
            pans[0]
        ),
    )
    .expect("plant");
    let planted = scan_database(&url, &needles).expect("scan");
    assert!(
        planted
            .iter()
            .any(|h| h.starts_with("public.host_ledger.pan_hash")),
        "the scan misses a planted PAN: {planted:?}"
    );
    testing::execute(&url, "DELETE FROM host_ledger WHERE part = 'planted'").expect("unplant");
    // …and finds none the programs wrote, in any table.
    let hits = scan_database(&url, &needles).expect("scan");
    assert!(hits.is_empty(), "PAN in clear in the database: {hits:?}");

    // The data directories: the file scan finds a planted PAN (packed BCD)…
    let stray = dir.path().join("planted.bin");
    let bcd = pan_needles(&pans[1]).pop().expect("bcd");
    std::fs::write(&stray, [&b"x"[..], &bcd, b"y"].concat()).expect("plant file");
    assert_eq!(
        common::pans_in_files(std::slice::from_ref(&stray), &pans).len(),
        1,
        "the file scan misses a planted PAN"
    );
    std::fs::remove_file(&stray).expect("unplant");
    // …and none in what the programs and terminals wrote (their logs included).
    let files = common::files_under(dir.path());
    assert!(files.len() > 2, "{files:?}");
    let hits = common::pans_in_files(&files, &pans);
    assert!(hits.is_empty(), "{hits:?}");
}
