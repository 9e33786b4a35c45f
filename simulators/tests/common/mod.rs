//! Helpers the child-process tests share.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits (at most 30 s) until something accepts connections on `addr`.
pub fn wait_listening(addr: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listening on {addr}");
}

/// A child process's stderr: with `E2E_LOGS=<dir>` set, appended to
/// `<dir>/<role>-<port of listen>.log` (for a failure's diagnosis); else inherited.
pub fn child_log(role: &str, listen: &str) -> std::process::Stdio {
    let Some(dir) = std::env::var_os("E2E_LOGS") else {
        return std::process::Stdio::inherit();
    };
    let port = listen.rsplit(':').next().unwrap_or("0");
    let path = Path::new(&dir).join(format!("{role}-{port}.log"));
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        Ok(f) => std::process::Stdio::from(f),
        Err(_) => std::process::Stdio::inherit(),
    }
}

/// Kills a child process and reaps it (for `Drop`).
pub fn reap(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The repository's top directory (the programs run there: their default key files
/// are `examples/*.hex`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The example binary `name` (built by `cargo test`; built here when missing, e.g. under
/// `cargo test --test corruption`).
pub fn program(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let debug = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let p = debug.join("examples").join(name);
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-q", "-p", "isoswitch-sim", "--example", name])
            .current_dir(repo())
            .status()
            .expect("cargo build")
            .success();
        assert!(ok, "building {name}");
    }
    p
}

/// Every file under `dir` (recursively).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}

/// The files of `files` that hold one of `pans` in clear: as ASCII digits (iso87),
/// its last ten digits, or packed BCD (cup-pos DE 2) — one line per hit, naming the
/// file and the PAN's first six digits only.
pub fn pans_in_files(files: &[PathBuf], pans: &[String]) -> Vec<String> {
    let needles: Vec<(&str, Vec<Vec<u8>>)> = pans
        .iter()
        .map(|p| (&p[..6], isoswitch_pg::testing::pan_needles(p)))
        .collect();
    let mut hits = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).expect("read");
        for (bin, ns) in &needles {
            if ns
                .iter()
                .any(|n| bytes.windows(n.len()).any(|w| w == &n[..]))
            {
                hits.push(format!("{} holds PAN {bin}… in clear", f.display()));
            }
        }
    }
    hits
}
