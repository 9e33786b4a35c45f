//! A throwaway PostgreSQL cluster for tests (feature `testing`, always on in this
//! crate's own tests).
//!
//! [`TestCluster::start`] finds the installed server binaries (`initdb`, `pg_ctl`: on
//! `PATH`, or in Debian's `/usr/lib/postgresql/<version>/bin`, the newest version; or
//! in `ISOSWITCH_PG_BIN`), makes a cluster in a temporary directory, and starts it on
//! loopback on a free port with its socket in that directory. When the tests run as
//! root (CI does) every server command runs as the `postgres` user (`runuser`), and the
//! directory belongs to that user. The cluster is stopped (`pg_ctl stop -m immediate`)
//! and its directory removed when the [`TestCluster`] is dropped.
//!
//! `ISOSWITCH_PG_URL=postgres://USER@HOST:PORT/DB` points the tests at an existing
//! server instead (nothing is started or stopped; [`TestCluster::restart`] is then an
//! error).
//!
//! A test that needs PostgreSQL and cannot get it fails with
//! [`HarnessError`]'s message, which says what to install: it never passes silently.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// What to tell someone whose machine has no PostgreSQL server.
pub const INSTALL_HINT: &str = "install the PostgreSQL server package (Debian/Ubuntu: `apt-get install -y postgresql`; \
its binaries go to /usr/lib/postgresql/<version>/bin), or set ISOSWITCH_PG_URL=postgres://USER@HOST:PORT/DB to use a running server";

/// Why a test cluster could not be had.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No `initdb`/`pg_ctl` found.
    #[error("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, in ISOSWITCH_PG_BIN or under /usr/lib/postgresql/*/bin: {INSTALL_HINT}")]
    NoServer,
    /// A server command failed.
    #[error("{command} failed ({status}): {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its output (stderr, stdout, and the server log's tail).
        output: String,
    },
    /// Running as root, but there is no `postgres` user to run the server as.
    #[error(
        "running as root and there is no `postgres` user to run the server as: {INSTALL_HINT}"
    )]
    NoPostgresUser,
    /// An I/O error preparing the cluster directory.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `ISOSWITCH_PG_URL` is set: there is no cluster of ours to restart.
    #[error("ISOSWITCH_PG_URL is set: the external server cannot be restarted by the tests")]
    External,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The directory holding `initdb` and `pg_ctl`.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ISOSWITCH_PG_BIN") {
        let dir = PathBuf::from(dir);
        if dir.join("initdb").is_file() {
            return Some(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() && dir.join("pg_ctl").is_file() {
                // Debian's /usr/bin wrappers are links into the versioned directory.
                let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
                return real.parent().map(Path::to_path_buf);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn postgres_ids() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, "postgres"]).output().ok()?;
        if !o.status.success() {
            return None;
        }
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn free_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("bind a free port"))?;
    Ok(l.local_addr().map_err(io("bind a free port"))?.port())
}

/// A PostgreSQL server for tests; see the module docs.
#[derive(Debug)]
pub struct TestCluster {
    url: String,
    local: Option<Local>,
}

#[derive(Debug)]
struct Local {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

impl Local {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), HarnessError> {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(self.dir.path());
        let line = format!("{} {}", exe.display(), args.join(" "));
        let out = cmd.output().map_err(io(format!("run {line}")))?;
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let tail: String = log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        Err(HarnessError::Command {
            command: line,
            status: out.status.to_string(),
            output: format!(
                "{}{}\n{tail}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ),
        })
    }

    fn pg_ctl(&self, action: &str) -> Result<(), HarnessError> {
        let data = self.data();
        let log = self.log();
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let mut args = vec![
            "-D",
            data.to_str().unwrap_or_default(),
            "-l",
            log.to_str().unwrap_or_default(),
            "-w",
            "-t",
            "60",
            "-o",
            &opts,
        ];
        if action != "start" {
            args.extend(["-m", "fast"]);
        }
        args.insert(0, action);
        self.run("pg_ctl", &args)
    }
}

impl TestCluster {
    /// Starts a throwaway cluster, or uses `ISOSWITCH_PG_URL`; see the module docs.
    ///
    /// # Errors
    /// [`HarnessError`]: its message says what to install.
    pub fn start() -> Result<TestCluster, HarnessError> {
        if let Ok(url) = std::env::var("ISOSWITCH_PG_URL") {
            if !url.is_empty() {
                return Ok(TestCluster { url, local: None });
            }
        }
        let bin = find_bin_dir().ok_or(HarnessError::NoServer)?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("isoswitch-pg-")
            .tempdir()
            .map_err(io("make the cluster directory"))?;
        if as_postgres {
            let (uid, gid) = postgres_ids().ok_or(HarnessError::NoPostgresUser)?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(io(format!("chown {} to postgres", dir.path().display())))?;
        }
        let mut local = Local {
            bin,
            dir,
            port: 0,
            as_postgres,
        };
        let data = local.data();
        local.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )?;
        // A port found free may be taken before the server binds it: try a few.
        let mut last = None;
        for _ in 0..5 {
            local.port = free_port()?;
            match local.pg_ctl("start") {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", local.port);
        Ok(TestCluster {
            url,
            local: Some(local),
        })
    }

    /// As [`TestCluster::start`], panicking with the harness's message (for tests).
    pub fn require() -> TestCluster {
        TestCluster::start().unwrap_or_else(|e| panic!("this test needs PostgreSQL: {e}"))
    }

    /// The server's URL (its `postgres` database).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the server was started by this harness (not `ISOSWITCH_PG_URL`).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Creates a fresh, empty database and returns its URL (`prefix`, the process id and
    /// a counter make its name: tests in parallel do not share one).
    ///
    /// # Errors
    /// Connection or SQL errors, as text.
    pub fn fresh_database(&self, prefix: &str) -> Result<String, String> {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let name: String = format!("isw_{prefix}_{}_{n}", std::process::id())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let sql_name = name.clone();
        with_client(&self.url, move |client| async move {
            for sql in [
                format!("DROP DATABASE IF EXISTS {name}"),
                format!("CREATE DATABASE {name}"),
            ] {
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| format!("{sql}: {}", crate::error::db_text(&e)))?;
            }
            Ok(())
        })?;
        let base = self
            .url
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or_else(|| self.url.clone());
        Ok(format!("{base}/{sql_name}"))
    }

    /// Stops the server (fast shutdown: sessions are disconnected).
    ///
    /// # Errors
    /// [`HarnessError::External`] for `ISOSWITCH_PG_URL`, or `pg_ctl`'s failure.
    pub fn stop(&self) -> Result<(), HarnessError> {
        self.local
            .as_ref()
            .ok_or(HarnessError::External)?
            .pg_ctl("stop")
    }

    /// Starts the server again after [`TestCluster::stop`], on the same port.
    ///
    /// # Errors
    /// As [`TestCluster::stop`].
    pub fn start_again(&self) -> Result<(), HarnessError> {
        self.local
            .as_ref()
            .ok_or(HarnessError::External)?
            .pg_ctl("start")
    }

    /// `pg_ctl restart` (fast): every connection is dropped, the server comes back on
    /// the same port.
    ///
    /// # Errors
    /// As [`TestCluster::stop`].
    pub fn restart(&self) -> Result<(), HarnessError> {
        self.local
            .as_ref()
            .ok_or(HarnessError::External)?
            .pg_ctl("restart")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(local) = &self.local {
            let data = local.data();
            let _ = local.run(
                "pg_ctl",
                &[
                    "stop",
                    "-D",
                    data.to_str().unwrap_or_default(),
                    "-m",
                    "immediate",
                    "-w",
                ],
            );
        }
    }
}

/// Runs `f` on a connection to `url`, on a runtime of its own in a thread of its own
/// (callable from inside another runtime); the connection is closed afterwards.
///
/// # Errors
/// Connection errors and `f`'s, as text.
pub fn with_client<T, F, Fut>(url: &str, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(tokio_postgres::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("connect {url}: {}", crate::error::db_text(&e)))?;
            let task = tokio::spawn(conn);
            let r = f(client).await;
            let _ = task.await;
            r
        })
    })
    .join()
    .map_err(|_| "database client thread panicked".to_string())?
}

/// Runs `sql` (one or more statements) on `url`.
///
/// # Errors
/// The server's error, as text.
pub fn execute(url: &str, sql: &str) -> Result<(), String> {
    let sql = sql.to_string();
    with_client(url, move |c| async move {
        c.batch_execute(&sql)
            .await
            .map_err(|e| format!("{sql}: {}", crate::error::db_text(&e)))
    })
}

/// Applies the store's migrations to `url` up to `version` only (a database as an
/// older isoswitch-pg left it, for migration tests).
///
/// # Errors
/// As [`crate::db::migrate_to`], as text.
pub fn migrate_to(
    url: &str,
    keys: std::sync::Arc<isoswitch_reversal::seal::DataKeys>,
    version: i32,
) -> Result<i32, String> {
    with_client(url, move |mut c| async move {
        crate::db::migrate_to(&mut c, &keys, version)
            .await
            .map_err(|e| e.to_string())
    })
}

/// What a PAN looks like at rest in clear: its digits as ASCII, its last ten digits
/// as ASCII (a PAN stored without its BIN), and packed BCD (cup-pos DE 2; a PAN of odd
/// length padded with `F`).
pub fn pan_needles(pan: &str) -> Vec<Vec<u8>> {
    let digits = pan.as_bytes();
    let mut padded = digits.to_vec();
    if padded.len() % 2 == 1 {
        padded.push(b'F');
    }
    let nibble = |c: u8| if c.is_ascii_digit() { c - b'0' } else { 0xF };
    let bcd: Vec<u8> = padded
        .chunks(2)
        .map(|c| (nibble(c[0]) << 4) | nibble(c[1]))
        .collect();
    vec![
        digits.to_vec(),
        digits[digits.len().saturating_sub(10)..].to_vec(),
        bcd,
    ]
}

/// Scans every column of every table of `url`'s database (all schemas but the
/// system's) for `needles`: each value as text (`::text`: a `bytea` as its hex, where
/// packed BCD digits show as the digits), and each `bytea` value's raw bytes. Returns
/// one line per hit: `schema.table.column row N: needle K as text|bytes`.
///
/// # Errors
/// Connection or SQL errors, as text.
pub fn scan_database(url: &str, needles: &[Vec<u8>]) -> Result<Vec<String>, String> {
    let needles = needles.to_vec();
    with_client(url, move |c| async move {
        let q = |e: tokio_postgres::Error| crate::error::db_text(&e);
        let columns = c
            .query(
                "SELECT c.table_schema, c.table_name, c.column_name, c.data_type
                   FROM information_schema.columns c
                   JOIN information_schema.tables t
                     ON t.table_schema = c.table_schema AND t.table_name = c.table_name
                  WHERE t.table_type = 'BASE TABLE'
                    AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
                  ORDER BY 1, 2, c.ordinal_position",
                &[],
            )
            .await
            .map_err(q)?;
        let mut hits = Vec::new();
        let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        for col in &columns {
            let (schema, table, column, ty): (String, String, String, String) =
                (col.get(0), col.get(1), col.get(2), col.get(3));
            let from = format!("{}.{}", ident(&schema), ident(&table));
            let name = format!("{schema}.{table}.{column}");
            let rows = c
                .query(&format!("SELECT {}::text FROM {from}", ident(&column)), &[])
                .await
                .map_err(q)?;
            for (i, r) in rows.iter().enumerate() {
                let Some(text) = r.get::<_, Option<String>>(0) else {
                    continue;
                };
                let text = text.to_ascii_uppercase();
                for (k, n) in needles.iter().enumerate() {
                    let n = n.to_ascii_uppercase();
                    if !n.is_empty() && text.as_bytes().windows(n.len()).any(|w| w == n) {
                        hits.push(format!("{name} row {i}: needle {k} as text"));
                    }
                }
            }
            if ty == "bytea" {
                let rows = c
                    .query(&format!("SELECT {} FROM {from}", ident(&column)), &[])
                    .await
                    .map_err(q)?;
                for (i, r) in rows.iter().enumerate() {
                    let Some(bytes) = r.get::<_, Option<Vec<u8>>>(0) else {
                        continue;
                    };
                    for (k, n) in needles.iter().enumerate() {
                        if !n.is_empty() && bytes.windows(n.len()).any(|w| w == &n[..]) {
                            hits.push(format!("{name} row {i}: needle {k} as bytes"));
                        }
                    }
                }
            }
        }
        Ok(hits)
    })
}
