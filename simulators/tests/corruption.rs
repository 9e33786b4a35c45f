//! Damaged data directories: every file kind that `switchd` and `host_sim` keep
//! (`.store`, `.journal`, `.counters`, `.sessions`) is corrupted — a flipped byte in the
//! middle, a truncated tail, garbage appended, CRC-valid records with the largest
//! amounts or ids the decoder accepts — and the real programs (the `switchd` and
//! `host_sim` examples, as an operator starts them) are started on it. Each must either
//! start (a torn tail is cut and reported) or exit non-zero with one line (`PROGRAM: ...`,
//! the rest of stderr is its log) naming
//! the file, the offset and what is wrong; never panic.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isoswitch::codec::{Dialect, Message, Mti};
use isoswitch::reversal::journal::{FileJournal, Finish, Journal, JournalRecord};
use isoswitch::reversal::profile::{TxnKey, TxnKind};
use isoswitch::reversal::record::{frame, MAGIC, SEALED_MAGIC};
use isoswitch::reversal::seal::DataKeys;
use isoswitch::reversal::store::{FileStore, IdempotencyStore, OriginalState, StoreRecord};
use isoswitch::reversal::{BatchTotals, Decimal};

mod common;
use common::{free_port, program, repo};

/// What a start came to.
#[derive(Debug)]
enum Start {
    /// Listening; stopped again with SIGTERM. Its stderr.
    Started(String),
    /// Exited before listening: success and stderr.
    Exited(bool, String),
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn finish(mut child: Child, err: &Path) -> (bool, String) {
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s.success();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        strip_ansi(&std::fs::read_to_string(err).unwrap_or_default()),
    )
}

/// Starts `name` with `args` (plus `--listen` on a free port) and waits until it
/// listens or exits.
fn start(name: &str, args: &[String], scratch: &Path) -> Start {
    let listen = format!("127.0.0.1:{}", free_port());
    let err = scratch.join(format!("{name}-{}.stderr", listen.replace(':', "_")));
    let child = Command::new(program(name))
        .arg("--listen")
        .arg(&listen)
        .args(args)
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn");
    let mut child = child;
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            let (ok, e) = finish(child, &err);
            return Start::Exited(ok, e);
        }
        if TcpStream::connect(&listen).is_ok() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let (_, e) = finish(child, &err);
            return Start::Started(e);
        }
        assert!(Instant::now() < end, "{name} neither listened nor exited");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn key_files() -> Vec<String> {
    let ex = repo().join("examples");
    vec![
        "--zone-key".into(),
        ex.join("zmk.hex").display().to_string(),
        "--kek".into(),
        ex.join("kek.hex").display().to_string(),
    ]
}

fn host_args(dir: &Path) -> Vec<String> {
    let mut a = key_files();
    a.extend(["--data-dir".into(), dir.display().to_string()]);
    a
}

fn switch_args(dir: &Path, host: &str) -> Vec<String> {
    let mut a = key_files();
    a.extend([
        "--terminals".into(),
        repo().join("examples/terminals.toml").display().to_string(),
        "--host".into(),
        host.into(),
        "--data-dir".into(),
        dir.display().to_string(),
    ]);
    a
}

fn original(stan: u32, amount: Decimal) -> StoreRecord {
    StoreRecord::Original {
        key: TxnKey {
            terminal: "T0000001".into(),
            merchant: "M00000000000001".into(),
            batch: 1,
            stan,
        },
        state: OriginalState {
            txn_type: 0,
            kind: TxnKind::Debit,
            foreign: false,
            pan: "6222021234567890".into(),
            amount,
            code: *b"00",
            approved: true,
            cancels: None,
            upstream: None,
        },
    }
}

/// The data keys the programs seal their journals and stores under (from the sample
/// KEK they are started with).
fn data_keys() -> std::sync::Arc<DataKeys> {
    let kek = isoswitch_sim::config::kek_from_hex(isoswitch_sim::config::SAMPLE_KEK).expect("kek");
    std::sync::Arc::new(DataKeys::from_kek(&kek).expect("data keys"))
}

/// `payloads` framed as records of a file whose content is `file`: sealed under the
/// programs' data keys when the file is sealed, so the records get past the seal and
/// reach the decoders.
fn framed(file: &[u8], payloads: &[Vec<u8>]) -> Vec<u8> {
    let keys = file.starts_with(SEALED_MAGIC).then(data_keys);
    let mut out = Vec::new();
    for p in payloads {
        match &keys {
            Some(k) => {
                let mut sealed = Vec::new();
                k.seal_into(p, &mut sealed).expect("seal");
                frame(&sealed, &mut out).expect("frame");
            }
            None => frame(p, &mut out).expect("frame"),
        }
    }
    out
}

fn store_payload(r: &StoreRecord) -> Vec<u8> {
    let mut p = Vec::new();
    r.encode(&mut p);
    p
}

fn journal_payload(r: &JournalRecord) -> Vec<u8> {
    let mut p = Vec::new();
    r.encode(&mut p);
    p
}

fn sale() -> Message {
    let d = Dialect::builtin("iso87-binary").expect("dialect");
    let mut m = Message::new(&d, "0200".parse::<Mti>().expect("mti"));
    for (n, v) in [
        (2, "6222021234567890"),
        (3, "000000"),
        (4, "000000001000"),
        (7, "1202000000"),
        (11, "000001"),
        (41, "SWITCH01"),
        (42, "ISOSWITCH000001"),
        (49, "156"),
    ] {
        m.set(n, v).expect("field");
    }
    m
}

/// Fills the data directories the programs made with records of every kind.
fn add_records(host: &Path, switch: &Path) {
    for path in [host.join("host.store"), switch.join("terminals.store")] {
        let mut s = FileStore::open_sealed(&path, Some(data_keys())).expect("store");
        for stan in 1..=3 {
            s.commit(original(stan, Decimal::new(1000 * i64::from(stan), 2)))
                .expect("commit");
        }
    }
    let mut j = FileJournal::open_sealed(switch.join("upstream.journal"), Some(data_keys()))
        .expect("journal");
    let _ = j.load().expect("load");
    let msg = sale();
    let info = isoswitch::reversal::ReversalProfile::iso87("iso87-binary")
        .expect("profile")
        .classify(&msg);
    j.append(&[
        JournalRecord::Counters {
            next_id: 1,
            next_stan: 1,
            batch: 1,
            closed_net: Decimal::ZERO,
            unkept: BatchTotals::default(),
        },
        JournalRecord::Started {
            id: 1,
            tag: 0,
            batch: 1,
            stan: 1,
            info,
            message: msg.to_bytes().expect("encode"),
        },
        JournalRecord::Finished {
            id: 1,
            finish: Finish::Approved { code: *b"00" },
        },
    ])
    .expect("append");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// The corruptions applied to a file's bytes.
fn corruptions(file: &str, bytes: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let len = bytes.len();
    if len > MAGIC.len() + 2 {
        let mut b = bytes.to_vec();
        b[MAGIC.len() + (len - MAGIC.len()) / 3] ^= 0x5A;
        out.push(("flipped byte in the middle", b));
        let mut b = bytes.to_vec();
        b[len - 1] ^= 0x01;
        out.push(("flipped last byte", b));
        out.push(("truncated", bytes[..len - 3].to_vec()));
    }
    let mut b = bytes.to_vec();
    b[2] ^= 0xFF;
    out.push(("flipped magic", b));
    let mut b = bytes.to_vec();
    b.extend_from_slice(b"\x07\x00\x00\x00garbage after the end");
    out.push(("garbage appended", b));
    let huge: Vec<Vec<u8>> = if file.ends_with(".store") {
        vec![
            store_payload(&original(900, Decimal::MAX)),
            store_payload(&original(901, Decimal::MAX)),
        ]
    } else if file.ends_with(".journal") {
        vec![
            journal_payload(&JournalRecord::BatchClosed {
                batch: 1,
                next_batch: 2,
                net: Decimal::MAX,
            }),
            journal_payload(&JournalRecord::BatchClosed {
                batch: 2,
                next_batch: 3,
                net: Decimal::MAX,
            }),
            journal_payload(&JournalRecord::Counters {
                next_id: u64::MAX,
                next_stan: 999_999,
                batch: 999_999,
                closed_net: Decimal::MAX,
                unkept: BatchTotals::default(),
            }),
        ]
    } else {
        // A CRC-valid record of the largest values of the right length.
        let mut p = vec![1u8];
        p.extend_from_slice(&[0xFF; 16]);
        vec![p, vec![0xFF; 64]]
    };
    let mut b = bytes.to_vec();
    b.extend_from_slice(&framed(bytes, &huge));
    out.push(("CRC-valid records with the largest values", b));
    out
}

fn check(program: &str, file: &str, what: &str, outcome: &Start) {
    let (stderr, started) = match outcome {
        Start::Started(e) => (e, true),
        Start::Exited(ok, e) => {
            assert!(
                !ok,
                "{program} on {file} ({what}) exited 0 without starting"
            );
            (e, false)
        }
    };
    assert!(
        !stderr.contains("panicked"),
        "{program} panicked on {file} ({what}):\n{stderr}"
    );
    if started {
        if what == "truncated" || what == "garbage appended" {
            assert!(
                stderr.contains("torn"),
                "{program} on {file} ({what}) started without reporting the cut:\n{stderr}"
            );
        }
        println!("{program:9} {file:28} {what:42} started");
    } else {
        // The program's own line (the rest of stderr is its log).
        let prefix = format!("{program}: ");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(
            errors.len(),
            1,
            "{program} on {file} ({what}): not one error line:\n{stderr}"
        );
        let last = errors[0];
        assert!(
            last.contains(file),
            "{program} on {file} ({what}): the error does not name the file: {last}"
        );
        assert!(
            last.contains("offset") || last.contains("byte") || what == "flipped magic",
            "{program} on {file} ({what}): the error does not name the offset: {last}"
        );
        println!("{program:9} {file:28} {what:42} refused: {last}");
    }
}

#[test]
fn damaged_data_files_start_or_are_refused_with_file_and_offset_never_a_panic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let (host, switch) = (base.join("host"), base.join("switch"));
    // Let the programs make their files: the host, then the switch signing on to it.
    let host_port = free_port();
    let host_addr = format!("127.0.0.1:{host_port}");
    let mut h = Command::new(program("host_sim"))
        .arg("--listen")
        .arg(&host_addr)
        .args(host_args(&host))
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("host_sim");
    let end = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&host_addr).is_err() {
        assert!(Instant::now() < end, "host_sim does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut sw = Command::new(program("switchd"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(switch_args(&switch, &host_addr))
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("switchd");
    // Until the zone sign-on is stored on both sides.
    let stored = |p: PathBuf| std::fs::metadata(p).is_ok_and(|m| m.len() > MAGIC.len() as u64);
    let end = Instant::now() + Duration::from_secs(60);
    while !(stored(host.join("host.sessions")) && stored(switch.join("sessions.sessions"))) {
        assert!(Instant::now() < end, "switchd does not sign on to host_sim");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &sw.id().to_string()])
        .status();
    let _ = sw.wait();
    let _ = Command::new("kill")
        .args(["-TERM", &h.id().to_string()])
        .status();
    let _ = h.wait();
    add_records(&host, &switch);
    // The undamaged directories start.
    let dead = format!("127.0.0.1:{}", free_port());
    for (p, dir) in [("host_sim", &host), ("switchd", &switch)] {
        let args = if p == "host_sim" {
            host_args(dir)
        } else {
            switch_args(dir, &dead)
        };
        let s = start(p, &args, base);
        assert!(
            matches!(s, Start::Started(_)),
            "{p} on its own files: {s:?}"
        );
    }
    let mut cases = 0;
    let mut full: Vec<String> = Vec::new();
    for (p, dir) in [("host_sim", &host), ("switchd", &switch)] {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n != "LOCK")
            .collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(dir.join(&file)).expect("read");
            let damaged = corruptions(&file, &bytes);
            if damaged.len() == 6 {
                full.push(file.rsplit('.').next().unwrap_or_default().to_string());
            }
            for (what, damaged) in damaged {
                cases += 1;
                let case = base.join(format!("case{cases}"));
                copy_dir(dir, &case);
                std::fs::write(case.join(&file), &damaged).expect("write");
                let args = if p == "host_sim" {
                    host_args(&case)
                } else {
                    switch_args(&case, &dead)
                };
                let outcome = start(p, &args, base);
                check(p, &file, what, &outcome);
            }
        }
    }
    // Every file kind had records and got all six corruptions.
    for kind in ["store", "journal", "counters", "sessions"] {
        assert!(
            full.iter().any(|k| k == kind),
            "no {kind} file with records ({cases} cases)"
        );
    }
}
