//! [`DataDir`]: the embedded [`Store`] — one directory, one file per part, every file
//! in the one CRC-framed record format ([`crate::record`]).
//!
//! ```text
//! <dir>/LOCK               advisory lock (flock): one process per data directory
//! <dir>/<name>.journal     engine journal          FileJournal        (GroupCommit)
//! <dir>/<name>.journals    many engines' journals  SharedJournal      (one GroupCommit)
//! <dir>/<name>.store       idempotency + ledger    FileStore          (sync handle)
//! <dir>/<name>.counters    STAN/RRN leases, batch  FileCounters
//! <dir>/<name>.sessions    sealed snapshots        FileSessionStore
//! ```
//!
//! Opening a part recovers it: a torn tail (the end of an append that a crash
//! interrupted) is cut, logged and listed by [`DataDir::torn_tails`]; damage before the
//! end is [`ReversalError::Corrupt`] naming the file and offset, and the file is left
//! alone. Group commit: the journal through [`crate::GroupCommit`] (one fsync per
//! batch of appends), the idempotency store through
//! [`FileStore::set_sync_on_commit`] and a sync handle, session snapshots by saving
//! them in groups ([`SessionStore::save`]); compaction: [`Journal::compact`],
//! [`FileStore::compact`], and automatically for counters and sessions.
//!
//! The lock is an advisory `flock` on `LOCK` ([`std::fs::File::try_lock`]), held as long
//! as the [`DataDir`] or any part opened from it is alive; a second process (or a
//! second `DataDir::open` of the same directory) gets [`ReversalError::Locked`]. The
//! lock goes with the process, so a SIGKILLed switch leaves no stale lock behind.
//!
//! ```
//! use isoswitch_reversal::datadir::DataDir;
//! use isoswitch_reversal::durable::Store;
//! use isoswitch_session::counters::Counters;
//! let dir = tempfile::tempdir().unwrap();
//! let data = DataDir::open(dir.path()).unwrap();
//! let mut c = data.counters("upstream").unwrap();
//! assert_eq!(c.next_stan().unwrap().get(), 1);
//! assert!(DataDir::open(dir.path()).is_err()); // locked
//! ```

use crate::counters::{FileCounters, DEFAULT_LEASE};
use crate::durable::{check_part_name, SessionStore, Store, UpstreamSave};
use crate::error::{Result, ReversalError};
use crate::journal::{FileJournal, Journal, JournalRecord};
use crate::profile::TxnKey;
use crate::record::Torn;
use crate::seal::DataKeys;
use crate::sessions::FileSessionStore;
use crate::shared_journal::SharedJournal;
use crate::store::{FileStore, IdempotencyStore, Ledger, StoreRecord, StoredTxn};
use isoswitch_session::counters::{BatchNumber, CounterState, Counters, Rrn, Stan};
use isoswitch_session::{SealedSnapshot, SessionError, TerminalId};
use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";

/// Options of a [`DataDir`].
#[derive(Debug, Clone)]
pub struct DataDirConfig {
    /// STANs/RRNs leased per counters write ([`FileCounters::lease`]).
    pub counter_lease: u32,
    /// The data keys journals and stores are sealed under (they hold PANs and track
    /// data; [`crate::seal`]). `None`: written in clear (tests, tools); programs set it.
    pub data_keys: Option<Arc<DataKeys>>,
}

impl Default for DataDirConfig {
    /// Leases of [`DEFAULT_LEASE`] values.
    fn default() -> Self {
        DataDirConfig {
            counter_lease: DEFAULT_LEASE,
            data_keys: None,
        }
    }
}

/// A torn tail cut when a part was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornReport {
    /// The file.
    pub path: PathBuf,
    /// Where the valid records ended and why.
    pub torn: Torn,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    config: DataDirConfig,
    // Held for its lock; released when the last part and the DataDir are gone.
    _lock: File,
    open: Mutex<HashSet<(&'static str, String)>>,
    torn: Mutex<Vec<TornReport>>,
}

/// The data directory; see the module docs. Cheap to clone (clones share the lock).
#[derive(Debug, Clone)]
pub struct DataDir {
    inner: Arc<Inner>,
}

/// Releases a part's name when the part is dropped, and keeps the directory locked
/// while it lives.
#[derive(Debug)]
struct Guard {
    dir: Arc<Inner>,
    key: (&'static str, String),
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut open) = self.dir.open.lock() {
            open.remove(&self.key);
        }
    }
}

/// A part opened from a [`DataDir`]: the file implementation (reach its own methods
/// through `Deref`) plus the claim on its name and the directory lock.
#[derive(Debug)]
pub struct Part<T> {
    inner: T,
    _guard: Guard,
}

impl<T> Deref for Part<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for Part<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl DataDir {
    /// Opens (creating it if needed) the data directory at `path` and takes its lock.
    ///
    /// # Errors
    /// [`ReversalError::Locked`] when another process holds it, I/O errors.
    pub fn open(path: impl AsRef<Path>) -> Result<DataDir> {
        DataDir::open_with(path, DataDirConfig::default())
    }

    /// As [`DataDir::open`], with options.
    ///
    /// # Errors
    /// As [`DataDir::open`].
    pub fn open_with(path: impl AsRef<Path>, config: DataDirConfig) -> Result<DataDir> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|e| ReversalError::io("mkdir", &path, e))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| ReversalError::io("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(ReversalError::Locked {
                    path,
                    lock: lock_path,
                })
            }
            Err(TryLockError::Error(e)) => return Err(ReversalError::io("lock", &lock_path, e)),
        }
        tracing::info!(path = %path.display(), "data directory opened");
        Ok(DataDir {
            inner: Arc::new(Inner {
                path,
                config,
                _lock: lock,
                open: Mutex::new(HashSet::new()),
                torn: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The file of part `name` of `kind` (`journal`, `store`, `counters`, `sessions`).
    pub fn part_path(&self, kind: &str, name: &str) -> PathBuf {
        self.inner.path.join(format!("{name}.{kind}"))
    }

    /// Torn tails cut while opening parts so far.
    pub fn torn_tails(&self) -> Vec<TornReport> {
        self.inner
            .torn
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    fn claim(&self, kind: &'static str, name: &str) -> Result<Guard> {
        check_part_name(name)?;
        let key = (kind, name.to_string());
        let mut open = self
            .inner
            .open
            .lock()
            .map_err(|_| ReversalError::PartInUse {
                kind,
                name: name.to_string(),
            })?;
        if !open.insert(key.clone()) {
            return Err(ReversalError::PartInUse {
                kind,
                name: name.to_string(),
            });
        }
        Ok(Guard {
            dir: self.inner.clone(),
            key,
        })
    }

    /// The shared journal `name` (`<dir>/<name>.journals`): the journals of many engines
    /// in one file, written by one [`crate::GroupCommit`] thread
    /// ([`crate::GroupCommit::spawn_shared`]); see [`crate::shared_journal`]. Sealed under
    /// the directory's data keys like every other part.
    ///
    /// # Errors
    /// As [`Store::journal`].
    pub fn shared_journal(&self, name: &str) -> Result<Part<SharedJournal>> {
        self.part(
            "shared journal",
            "journals",
            name,
            |p| SharedJournal::open_sealed(p, self.inner.config.data_keys.clone()),
            |j| j.torn_tail(),
        )
    }

    /// `member`'s records for recovery from a shared journal whose writer is `group`:
    /// `recovered` (what [`SharedJournal::take`] returned before the thread started), or,
    /// when the shared journal never held the member, the records of a journal file of
    /// its own (`<dir>/<member>.journal`, written before it joined the shared journal),
    /// which are moved in — compacted into the member as one snapshot, then the old file
    /// is removed. A left-over old file of a member the shared journal already holds
    /// (a crash between those two steps) is removed.
    ///
    /// # Errors
    /// As [`Store::journal`]; I/O errors removing the old file.
    pub async fn adopt_journal(
        &self,
        member: &str,
        recovered: Option<Vec<JournalRecord>>,
        group: &crate::GroupCommit,
    ) -> Result<Vec<JournalRecord>> {
        let old = self.part_path("journal", member);
        let exists = old
            .try_exists()
            .map_err(|e| ReversalError::io("stat", &old, e))?;
        let records = match recovered {
            Some(records) => records,
            None if exists => {
                let records = self.journal(member)?.load()?;
                group.compact(records.clone()).await.map_err(|e| {
                    ReversalError::io(
                        "move into the shared journal",
                        &old,
                        std::io::Error::other(e.to_string()),
                    )
                })?;
                tracing::info!(path = %old.display(), records = records.len(), "journal moved into the shared journal");
                records
            }
            None => Vec::new(),
        };
        if exists {
            std::fs::remove_file(&old).map_err(|e| ReversalError::io("remove", &old, e))?;
            crate::record::sync_dir(&old)?;
        }
        Ok(records)
    }

    fn report(&self, path: &Path, torn: Option<Torn>) {
        if let Some(torn) = torn {
            tracing::warn!(path = %path.display(), offset = torn.offset, reason = ?torn.reason, "torn tail cut");
            if let Ok(mut t) = self.inner.torn.lock() {
                t.push(TornReport {
                    path: path.to_path_buf(),
                    torn,
                });
            }
        }
    }

    fn part<T>(
        &self,
        kind: &'static str,
        ext: &str,
        name: &str,
        open: impl FnOnce(&Path) -> Result<T>,
        torn: impl FnOnce(&T) -> Option<Torn>,
    ) -> Result<Part<T>> {
        let guard = self.claim(kind, name)?;
        let path = self.part_path(ext, name);
        let inner = open(&path)?;
        self.report(&path, torn(&inner));
        Ok(Part {
            inner,
            _guard: guard,
        })
    }
}

impl Store for DataDir {
    type Journal = Part<FileJournal>;
    type Idempotency = Part<FileStore>;
    type Counters = Part<FileCounters>;
    type Sessions = Part<FileSessionStore>;

    fn journal(&self, name: &str) -> Result<Part<FileJournal>> {
        self.part(
            "journal",
            "journal",
            name,
            |p| FileJournal::open_sealed(p, self.inner.config.data_keys.clone()),
            |j| j.torn_tail(),
        )
    }

    fn idempotency(&self, name: &str) -> Result<Part<FileStore>> {
        self.part(
            "idempotency store",
            "store",
            name,
            |p| FileStore::open_sealed(p, self.inner.config.data_keys.clone()),
            |s| s.torn_tail(),
        )
    }

    fn counters(&self, name: &str) -> Result<Part<FileCounters>> {
        let lease = self.inner.config.counter_lease;
        self.part(
            "counters",
            "counters",
            name,
            |p| FileCounters::open_with(p, lease),
            |c| c.torn_tail(),
        )
    }

    fn sessions(&self, name: &str) -> Result<Part<FileSessionStore>> {
        self.part(
            "session store",
            "sessions",
            name,
            |p| FileSessionStore::open(p),
            |s| s.torn_tail(),
        )
    }

    fn describe(&self) -> String {
        format!("data directory {}", self.inner.path.display())
    }
}

impl<T: Journal> Journal for Part<T> {
    fn load(&mut self) -> Result<Vec<JournalRecord>> {
        self.inner.load()
    }
    fn append(&mut self, records: &[JournalRecord]) -> Result<()> {
        self.inner.append(records)
    }
    fn compact(&mut self, live: &[JournalRecord]) -> Result<()> {
        self.inner.compact(live)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn locate(&self, e: ReversalError) -> ReversalError {
        self.inner.locate(e)
    }
}

impl<T: IdempotencyStore> IdempotencyStore for Part<T> {
    fn get(&self, key: &TxnKey) -> Option<&StoredTxn> {
        self.inner.get(key)
    }
    fn commit(&mut self, record: StoreRecord) -> Result<()> {
        self.inner.commit(record)
    }
    fn ledger(&self) -> &Ledger {
        self.inner.ledger()
    }
    fn entries(&self) -> Box<dyn Iterator<Item = (&TxnKey, &StoredTxn)> + '_> {
        self.inner.entries()
    }
    fn batch_totals(&self, terminal: &str, merchant: &str, batch: u32) -> crate::BatchTotals {
        self.inner.batch_totals(terminal, merchant, batch)
    }
    fn is_cancelled(&self, key: &TxnKey) -> bool {
        self.inner.is_cancelled(key)
    }
    fn refresh(&mut self, key: &TxnKey) -> Result<()> {
        self.inner.refresh(key)
    }
    fn refresh_open(&mut self) -> Result<()> {
        self.inner.refresh_open()
    }
    fn defer_sync(&mut self) -> Option<std::sync::Arc<dyn crate::Durability>> {
        self.inner.defer_sync()
    }
    fn kept(&mut self, since: u64, upto: u64) -> Result<()> {
        self.inner.kept(since, upto)
    }
    fn reload(&mut self, key: &TxnKey) -> Result<()> {
        self.inner.reload(key)
    }
    fn written(&self) -> u64 {
        self.inner.written()
    }
}

impl<T: Counters> Counters for Part<T> {
    fn state(&self) -> CounterState {
        self.inner.state()
    }
    fn next_stan(&mut self) -> std::result::Result<Stan, SessionError> {
        self.inner.next_stan()
    }
    fn batch(&self) -> BatchNumber {
        self.inner.batch()
    }
    fn set_batch(&mut self, batch: BatchNumber) -> std::result::Result<(), SessionError> {
        self.inner.set_batch(batch)
    }
    fn next_batch(&mut self) -> std::result::Result<BatchNumber, SessionError> {
        self.inner.next_batch()
    }
    fn next_rrn(&mut self) -> std::result::Result<Rrn, SessionError> {
        self.inner.next_rrn()
    }
}

impl<T: SessionStore> SessionStore for Part<T> {
    fn terminals(&self) -> Result<Vec<SealedSnapshot>> {
        self.inner.terminals()
    }
    fn terminal(&self, id: &TerminalId) -> Result<Option<SealedSnapshot>> {
        self.inner.terminal(id)
    }
    fn save(&mut self, snapshots: &[SealedSnapshot]) -> Result<()> {
        self.inner.save(snapshots)
    }
    fn upstream(&self, link: &str) -> Result<Option<SealedSnapshot>> {
        self.inner.upstream(link)
    }
    fn save_upstream(
        &mut self,
        link: &str,
        snapshot: &SealedSnapshot,
        expected: Option<u64>,
    ) -> Result<UpstreamSave> {
        self.inner.save_upstream(link, snapshot, expected)
    }
    fn claim_sign_on(&mut self, link: &str, lease: std::time::Duration) -> Result<bool> {
        self.inner.claim_sign_on(link, lease)
    }
    fn release_sign_on(&mut self, link: &str) -> Result<()> {
        self.inner.release_sign_on(link)
    }
}
