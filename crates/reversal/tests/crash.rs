//! Crash test: the `reversal_crash` binary is killed with SIGKILL at every phase
//! (before/after the journal write, after the original reached the host, during a
//! reversal, during compaction, during settlement, before the batch-closed record) and
//! restarted on the same directory; at the end the host ledger equals the terminal's
//! approved-minus-reversed total to the cent.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PHASES: &[&str] = &[
    "before_journal",
    "after_journal",
    "after_send",
    "during_reversal",
    "compaction",
    "during_settlement",
    "before_close_journal",
];

enum Run {
    Killed(Option<String>),
    Finished(String),
}

fn run(
    dir: &std::path::Path,
    seed: u64,
    txns: u64,
    pause: Option<(&str, u32)>,
    kill_after: Option<Duration>,
) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reversal_crash"));
    cmd.arg(dir).arg(seed.to_string()).arg(txns.to_string());
    if let Some((p, n)) = pause {
        cmd.arg(format!("{p}:{n}"));
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    if let Some(after) = kill_after {
        std::thread::sleep(after);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let out: String = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("RESULT"))
            .collect();
        if status.success() && !out.is_empty() {
            return Run::Finished(out);
        }
        return Run::Killed(None);
    }
    let mut last_phase = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(p) = line.strip_prefix("PHASE ") {
            last_phase = Some(p.to_string());
        } else if line == "PAUSED" {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return Run::Killed(last_phase);
        } else if line.starts_with("RESULT") {
            let status = child.wait().unwrap();
            assert!(status.success());
            return Run::Finished(line);
        }
    }
    let status = child.wait().unwrap();
    panic!("child ended without a result: {status:?}");
}

fn parse(result: &str) -> HashMap<String, String> {
    result
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn sigkill_at_every_phase_keeps_host_and_terminal_equal() {
    let started = Instant::now();
    let mut killed_at: HashMap<String, u32> = HashMap::new();
    let mut runs = 0;
    let mut kills = 0;
    for scenario in 0..12u64 {
        let dir = tempfile::tempdir().unwrap();
        for k in 0..8u64 {
            runs += 1;
            // Every restart has new work: 3 more transactions.
            let txns = 3 * (k + 1);
            let i = (scenario * 8 + k) as usize;
            let r = if k == 7 {
                // A kill at a random moment.
                run(
                    dir.path(),
                    scenario * 100 + k,
                    txns,
                    None,
                    Some(Duration::from_millis(1 + (i as u64 * 37) % 15)),
                )
            } else {
                let phase = PHASES[i % PHASES.len()];
                run(
                    dir.path(),
                    scenario * 100 + k,
                    txns,
                    Some((phase, 1 + (i as u32 % 3))),
                    None,
                )
            };
            match r {
                Run::Killed(p) => {
                    kills += 1;
                    if let Some(p) = p {
                        *killed_at.entry(p).or_default() += 1;
                    }
                }
                Run::Finished(line) => {
                    let m = parse(&line);
                    assert_eq!(m["host"], m["terminal"], "scenario {scenario}: {line}");
                }
            }
        }
        // Restart without faults injected by kills until done.
        runs += 1;
        let txns = 3 * 9;
        let Run::Finished(line) = run(dir.path(), scenario * 100 + 99, txns, None, None) else {
            unreachable!()
        };
        let m = parse(&line);
        assert_eq!(m["host"], m["terminal"], "scenario {scenario}: {line}");
        assert_eq!(m["pending"], "0");
        assert_eq!(m["started"], txns.to_string());
    }
    eprintln!(
        "{runs} runs, {kills} SIGKILLs, by phase {killed_at:?}, {:?}",
        started.elapsed()
    );
    assert!(kills >= 50, "{kills} kills");
    for p in PHASES {
        assert!(
            killed_at.get(*p).copied().unwrap_or(0) > 0,
            "phase {p} never killed: {killed_at:?}"
        );
    }
}
