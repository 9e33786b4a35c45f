//! The terminal's write-ahead journal: [`JournalRecord`]s behind the [`Journal`] trait,
//! the durable [`FileJournal`], the [`MemoryJournal`] for tests, and [`GroupCommit`],
//! which lets concurrent writers share one fsync.
//!
//! The engine never touches a journal itself: it hands out records
//! ([`crate::engine::ReversalEngine::poll_journal`]) and is told when they are durable
//! ([`crate::engine::ReversalEngine::handle_journaled`]); nothing is sent before the
//! `Started` record of its transaction is durable.

use crate::error::{Result, ReversalError};
use crate::profile::{ReversalReason, TxnInfo};
use crate::record::{self, Reader, RecordFile, Torn, Writer};
use crate::settlement::{BatchTotals, SideTotals};
use bytes::Bytes;
use rust_decimal::Decimal;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

/// How a transaction ended, as journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Approved by the host (DE 39 `00`, or another approval code).
    Approved {
        /// DE 39.
        code: [u8; 2],
    },
    /// Declined by the host: nothing to reverse.
    Declined {
        /// DE 39.
        code: [u8; 2],
    },
    /// Definitely not sent (the client rejected it, or it could not be sealed).
    NotSent,
    /// In doubt but not reversible (inquiry, refund): nothing more to do.
    Unknown,
    /// In doubt, or an approved transaction the terminal could not complete: a
    /// reversal is pending until acknowledged.
    Reverse {
        /// Why.
        reason: ReversalReason,
    },
    /// Refused without being acted on (DE 39 `77` sign on again, `A0` MAC failure at
    /// the host): nothing to reverse; the caller may prepare it again under new keys.
    NotActed {
        /// DE 39.
        code: [u8; 2],
    },
}

/// One journal record.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalRecord {
    /// Counter snapshot (first record after a compaction).
    Counters {
        /// Next transaction id.
        next_id: u64,
        /// Next STAN.
        next_stan: u32,
        /// Current batch.
        batch: u32,
        /// Net amount of every batch closed so far (debits − credits).
        closed_net: Decimal,
        /// Totals of the open batch's approved transactions that are not kept as
        /// entries ([`crate::engine::EngineConfig::keep_approved`] off).
        unkept: BatchTotals,
    },
    /// Written durably before the original is sent.
    Started {
        /// Transaction id.
        id: u64,
        /// The caller's opaque tag ([`crate::engine::CallerTag`]; `0` when untagged and
        /// in records written before tags existed).
        tag: u64,
        /// Batch (cup-pos DE 60.2; the engine's batch otherwise).
        batch: u32,
        /// DE 11.
        stan: u32,
        /// What the transaction does to the cardholder.
        info: TxnInfo,
        /// The original, encoded without MAC.
        message: Bytes,
    },
    /// The transaction's outcome (a later one for the same id replaces an earlier one).
    Finished {
        /// Transaction id.
        id: u64,
        /// The outcome.
        finish: Finish,
    },
    /// Its reversal was acknowledged by a `0410` (any DE 39).
    ReversalAcked {
        /// Transaction id.
        id: u64,
        /// DE 39 of the `0410`.
        code: [u8; 2],
    },
    /// A batch was settled and closed (after sign-off).
    BatchClosed {
        /// The closed batch.
        batch: u32,
        /// The new batch.
        next_batch: u32,
        /// Its net amount (debits − credits).
        net: Decimal,
    },
}

const T_COUNTERS: u8 = 1;
const T_STARTED: u8 = 2;
const T_FINISHED: u8 = 3;
const T_ACKED: u8 = 4;
const T_CLOSED: u8 = 5;
/// `Started` with a caller tag (type 2 is the untagged form older journals hold; it is
/// still read, as tag 0).
const T_STARTED_TAGGED: u8 = 6;

impl JournalRecord {
    /// Appends the payload encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        match self {
            JournalRecord::Counters {
                next_id,
                next_stan,
                batch,
                closed_net,
                unkept,
            } => {
                w.u8(T_COUNTERS)
                    .u64(*next_id)
                    .u32(*next_stan)
                    .u32(*batch)
                    .decimal(*closed_net);
                for side in [&unkept.domestic, &unkept.foreign] {
                    w.decimal(side.debit_amount)
                        .u32(side.debit_count)
                        .decimal(side.credit_amount)
                        .u32(side.credit_count);
                }
            }
            JournalRecord::Started {
                id,
                tag,
                batch,
                stan,
                info,
                message,
            } => {
                if *tag == 0 {
                    w.u8(T_STARTED).u64(*id);
                } else {
                    w.u8(T_STARTED_TAGGED).u64(*id).u64(*tag);
                }
                w.u32(*batch).u32(*stan);
                info.write(&mut w);
                w.bytes(message);
            }
            JournalRecord::Finished { id, finish } => {
                w.u8(T_FINISHED).u64(*id);
                match finish {
                    Finish::Approved { code } => w.u8(1).u8(code[0]).u8(code[1]),
                    Finish::Declined { code } => w.u8(2).u8(code[0]).u8(code[1]),
                    Finish::NotSent => w.u8(3).u8(0).u8(0),
                    Finish::Unknown => w.u8(5).u8(0).u8(0),
                    Finish::Reverse { reason } => w.u8(4).u8(reason.to_u8()).u8(0),
                    Finish::NotActed { code } => w.u8(6).u8(code[0]).u8(code[1]),
                };
            }
            JournalRecord::ReversalAcked { id, code } => {
                w.u8(T_ACKED).u64(*id).u8(code[0]).u8(code[1]);
            }
            JournalRecord::BatchClosed {
                batch,
                next_batch,
                net,
            } => {
                w.u8(T_CLOSED).u32(*batch).u32(*next_batch).decimal(*net);
            }
        }
    }

    /// Parses a payload written by [`JournalRecord::encode`].
    ///
    /// # Errors
    /// [`ReversalError::BadRecord`] for anything else (never panics).
    pub fn decode(payload: &[u8]) -> Result<JournalRecord> {
        let mut r = Reader::new(payload);
        let rec = match r.u8()? {
            T_COUNTERS => JournalRecord::Counters {
                next_id: r.u64()?,
                next_stan: r.u32()?,
                batch: r.u32()?,
                closed_net: r.decimal()?,
                unkept: {
                    let mut side = || -> Result<SideTotals> {
                        Ok(SideTotals {
                            debit_amount: r.decimal()?,
                            debit_count: r.u32()?,
                            credit_amount: r.decimal()?,
                            credit_count: r.u32()?,
                        })
                    };
                    let domestic = side()?;
                    let foreign = side()?;
                    BatchTotals { domestic, foreign }
                },
            },
            t @ (T_STARTED | T_STARTED_TAGGED) => {
                let id = r.u64()?;
                let tag = if t == T_STARTED_TAGGED { r.u64()? } else { 0 };
                let batch = r.u32()?;
                let stan = r.u32()?;
                let info = TxnInfo::read(&mut r)?;
                let message = Bytes::copy_from_slice(r.bytes()?);
                JournalRecord::Started {
                    id,
                    tag,
                    batch,
                    stan,
                    info,
                    message,
                }
            }
            T_FINISHED => {
                let id = r.u64()?;
                let tag = r.u8()?;
                let a = r.u8()?;
                let b = r.u8()?;
                let finish = match tag {
                    1 => Finish::Approved { code: [a, b] },
                    2 => Finish::Declined { code: [a, b] },
                    3 => Finish::NotSent,
                    5 => Finish::Unknown,
                    6 => Finish::NotActed { code: [a, b] },
                    4 => Finish::Reverse {
                        reason: ReversalReason::from_u8(a)?,
                    },
                    _ => return Err(ReversalError::bad("unknown outcome")),
                };
                JournalRecord::Finished { id, finish }
            }
            T_ACKED => JournalRecord::ReversalAcked {
                id: r.u64()?,
                code: [r.u8()?, r.u8()?],
            },
            T_CLOSED => JournalRecord::BatchClosed {
                batch: r.u32()?,
                next_batch: r.u32()?,
                net: r.decimal()?,
            },
            _ => return Err(ReversalError::bad("unknown record type")),
        };
        r.finish()?;
        Ok(rec)
    }
}

/// Parses a whole journal image (magic + framed records) the way recovery does: the
/// valid records, where they end and why reading stopped. Never panics; used by the
/// fuzz target.
///
/// # Errors
/// [`ReversalError::BadMagic`], or [`ReversalError::BadRecord`] for a CRC-valid record
/// that does not parse.
pub fn parse_image(image: &[u8]) -> Result<(Vec<JournalRecord>, Option<Torn>)> {
    let body = match image.strip_prefix(&record::MAGIC[..]) {
        Some(b) => b,
        None if image.is_empty() => return Ok((Vec::new(), None)),
        None => {
            return Err(ReversalError::BadMagic {
                path: std::path::PathBuf::from("<image>"),
            })
        }
    };
    let mut out = Vec::new();
    let mut it = record::RecordIter::new(body);
    let mut torn = None;
    for item in it.by_ref() {
        match item {
            Ok(p) => out.push(JournalRecord::decode(p)?),
            Err(t) => torn = Some(t),
        }
    }
    Ok((out, torn))
}

/// Storage for journal records. Implementations must make `append`ed records durable
/// before returning `Ok`, and keep them in order.
pub trait Journal: Send + 'static {
    /// The records found when the journal was opened (recovery input), taken once.
    ///
    /// # Errors
    /// Implementation-specific.
    fn load(&mut self) -> Result<Vec<JournalRecord>>;
    /// Appends `records` durably (one fsync for all of them).
    ///
    /// # Errors
    /// I/O errors: the records are then not durable.
    fn append(&mut self, records: &[JournalRecord]) -> Result<()>;
    /// Replaces the content with `live` (the engine's
    /// [`snapshot`](crate::engine::ReversalEngine::snapshot)), atomically.
    ///
    /// # Errors
    /// I/O errors: the old content is then still in place.
    fn compact(&mut self, live: &[JournalRecord]) -> Result<()>;
    /// Bytes written since the last compaction (drivers compact past a threshold).
    fn size(&self) -> u64 {
        0
    }
    /// `e` with the place it names in this journal's storage: a
    /// [`ReversalError::BadJournalRecord`] of the records [`Journal::load`] returned
    /// becomes [`ReversalError::Corrupt`] naming the file and the record's offset (for
    /// a storage that has them); anything else is returned as it is.
    fn locate(&self, e: ReversalError) -> ReversalError {
        e
    }
}

impl<J: Journal + ?Sized> Journal for Box<J> {
    fn load(&mut self) -> Result<Vec<JournalRecord>> {
        (**self).load()
    }
    fn append(&mut self, records: &[JournalRecord]) -> Result<()> {
        (**self).append(records)
    }
    fn compact(&mut self, live: &[JournalRecord]) -> Result<()> {
        (**self).compact(live)
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn locate(&self, e: ReversalError) -> ReversalError {
        (**self).locate(e)
    }
}

/// The durable journal: one append-only file of CRC-framed records (see
/// [`crate::record`]), `fdatasync` after each append, torn-tail truncation on open,
/// compaction by atomic rewrite.
#[derive(Debug)]
pub struct FileJournal {
    file: RecordFile,
    loaded: Option<Vec<JournalRecord>>,
    /// Byte offsets of the loaded records (for [`Journal::locate`]).
    offsets: Vec<u64>,
    torn: Option<Torn>,
}

impl FileJournal {
    /// Opens or creates the journal at `path` and reads it (recovery).
    ///
    /// # Errors
    /// I/O errors, a bad magic, a CRC-valid record that does not parse.
    pub fn open(path: impl AsRef<Path>) -> Result<FileJournal> {
        FileJournal::open_sealed(path, None)
    }

    /// As [`FileJournal::open`], its records sealed under `seal` when given (originals
    /// carry the PAN and track data: see [`crate::seal`]; a clear journal is migrated).
    ///
    /// # Errors
    /// As [`FileJournal::open`], and [`ReversalError::SealedFile`] for a sealed journal
    /// opened without keys.
    pub fn open_sealed(
        path: impl AsRef<Path>,
        seal: Option<std::sync::Arc<crate::seal::DataKeys>>,
    ) -> Result<FileJournal> {
        let mut records = Vec::new();
        let mut offsets = Vec::new();
        let (file, torn) = RecordFile::open_with(path, seal, |offset, p| {
            records.push(JournalRecord::decode(p)?);
            offsets.push(offset);
            Ok(())
        })?;
        Ok(FileJournal {
            file,
            loaded: Some(records),
            offsets,
            torn,
        })
    }

    /// The torn tail that was truncated on open, if any.
    pub fn torn_tail(&self) -> Option<Torn> {
        self.torn
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

fn frame_all(records: &[JournalRecord], out: &mut Vec<u8>) -> Result<()> {
    let mut payload = Vec::with_capacity(256);
    for r in records {
        payload.clear();
        r.encode(&mut payload);
        record::frame(&payload, out)?;
    }
    Ok(())
}

impl Journal for FileJournal {
    fn load(&mut self) -> Result<Vec<JournalRecord>> {
        Ok(self.loaded.take().unwrap_or_default())
    }

    fn append(&mut self, records: &[JournalRecord]) -> Result<()> {
        self.file.append_with(|out| frame_all(records, out))
    }

    fn compact(&mut self, live: &[JournalRecord]) -> Result<()> {
        let mut framed = Vec::new();
        frame_all(live, &mut framed)?;
        self.offsets.clear();
        self.file.rewrite(&framed)
    }

    fn size(&self) -> u64 {
        self.file.len()
    }

    fn locate(&self, e: ReversalError) -> ReversalError {
        match e {
            ReversalError::BadJournalRecord { index, what } => match self.offsets.get(index) {
                Some(&offset) => ReversalError::Corrupt {
                    path: self.file.path().to_path_buf(),
                    offset,
                    what,
                },
                None => e,
            },
            e => e,
        }
    }
}

/// An in-memory journal for tests: clones share the same records, so a test can drop an
/// engine ("crash") and recover a new one from what was appended.
#[derive(Debug, Clone, Default)]
pub struct MemoryJournal {
    records: Arc<Mutex<Vec<JournalRecord>>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the records appended so far.
    pub fn records(&self) -> Vec<JournalRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Journal for MemoryJournal {
    fn load(&mut self) -> Result<Vec<JournalRecord>> {
        Ok(self.records())
    }
    fn append(&mut self, records: &[JournalRecord]) -> Result<()> {
        if let Ok(mut r) = self.records.lock() {
            r.extend_from_slice(records);
        }
        Ok(())
    }
    fn compact(&mut self, live: &[JournalRecord]) -> Result<()> {
        if let Ok(mut r) = self.records.lock() {
            *r = live.to_vec();
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.records
            .lock()
            .map(|r| r.len() as u64 * 64)
            .unwrap_or(0)
    }
}

type Reply = tokio::sync::oneshot::Sender<std::result::Result<(), Arc<ReversalError>>>;

/// The member of a [`SharedJournal`](crate::shared_journal::SharedJournal) a command is
/// for (`None`: the thread's only journal).
type Member = Option<Arc<str>>;

enum Command {
    Append(Member, Vec<JournalRecord>, Reply),
    Compact(Member, Vec<JournalRecord>, Reply),
}

/// What a [`GroupCommit`] thread writes to: one [`Journal`], or every member of a
/// [`SharedJournal`](crate::shared_journal::SharedJournal).
trait Sink: Send + 'static {
    /// Appends one group (`records`, cut into per-member runs by `runs`: the member and
    /// the end index of its run) durably.
    fn append(&mut self, records: &[JournalRecord], runs: &[(Member, usize)]) -> Result<()>;
    /// Replaces `member`'s records with `live`.
    fn compact(&mut self, member: Option<&str>, live: &[JournalRecord]) -> Result<()>;
}

/// A single journal as a [`Sink`] (members are ignored: there is only one).
struct One<J>(J);

impl<J: Journal> Sink for One<J> {
    fn append(&mut self, records: &[JournalRecord], _: &[(Member, usize)]) -> Result<()> {
        self.0.append(records)
    }
    fn compact(&mut self, _: Option<&str>, live: &[JournalRecord]) -> Result<()> {
        self.0.compact(live)
    }
}

/// The members of a shared journal as a [`Sink`].
struct Shared<T>(T);

impl<T> Sink for Shared<T>
where
    T: std::ops::DerefMut<Target = crate::shared_journal::SharedJournal> + Send + 'static,
{
    fn append(&mut self, records: &[JournalRecord], runs: &[(Member, usize)]) -> Result<()> {
        self.0.append_runs(records, runs)
    }
    fn compact(&mut self, member: Option<&str>, live: &[JournalRecord]) -> Result<()> {
        let member = member.ok_or(ReversalError::bad(
            "a shared journal is written through its members (GroupCommit::member)",
        ))?;
        self.0.compact_member(member, live)
    }
}

/// Group commit: a dedicated thread owns the journal; every batch of records that
/// arrives while an fsync is running is written with the next single fsync. Clones share
/// the thread; it ends when the last clone is dropped.
///
/// Over a [`SharedJournal`](crate::shared_journal::SharedJournal)
/// ([`GroupCommit::spawn_shared`]) one thread and one fsync serve the journals of many
/// engines (the terminals of one device, a simulator's terminals): each engine's driver
/// writes through its own [`GroupCommit::member`] handle.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Command>,
    stats: Arc<GroupStats>,
    member: Member,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("member", &self.member)
            .field("fsyncs", &self.fsyncs())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct GroupStats {
    fsyncs: std::sync::atomic::AtomicU64,
    records: std::sync::atomic::AtomicU64,
}

/// The largest number of records written with one fsync.
pub const MAX_GROUP: usize = 8192;

impl GroupCommit {
    /// Starts the writer thread over `journal` (its metrics labelled `journal="journal"`).
    pub fn spawn<J: Journal>(journal: J) -> GroupCommit {
        Self::spawn_named(journal, "journal")
    }

    /// As [`GroupCommit::spawn`], with `name` as the `journal` label of its metrics
    /// (sync latency and group size: see [`crate::metrics`]).
    pub fn spawn_named<J: Journal>(journal: J, name: &str) -> GroupCommit {
        Self::start(One(journal), name)
    }

    /// Starts the writer thread over a shared journal (a
    /// [`SharedJournal`](crate::shared_journal::SharedJournal), or a data directory's
    /// part holding one): take each member's recovered records
    /// ([`SharedJournal::take`](crate::shared_journal::SharedJournal::take)) first, then
    /// write through [`GroupCommit::member`] handles. `name` labels the metrics.
    pub fn spawn_shared<T>(shared: T, name: &str) -> GroupCommit
    where
        T: std::ops::DerefMut<Target = crate::shared_journal::SharedJournal> + Send + 'static,
    {
        Self::start(Shared(shared), name)
    }

    /// A handle on the same thread whose appends and compactions are `member`'s (of a
    /// shared journal; on a single journal the member is ignored).
    pub fn member(&self, member: &str) -> GroupCommit {
        GroupCommit {
            tx: self.tx.clone(),
            stats: self.stats.clone(),
            member: Some(Arc::from(member)),
        }
    }

    fn start(mut sink: impl Sink, name: &str) -> GroupCommit {
        let metrics = crate::metrics::JournalMetrics::new(name);
        let (tx, rx) = mpsc::channel::<Command>();
        let stats = Arc::new(GroupStats::default());
        let st = stats.clone();
        std::thread::Builder::new()
            .name("reversal-journal".into())
            .spawn(move || {
                let mut pending: Vec<Reply> = Vec::new();
                let mut batch: Vec<JournalRecord> = Vec::new();
                let mut runs: Vec<(Member, usize)> = Vec::new();
                let mut next: Option<Command> = None;
                let add = |batch: &mut Vec<JournalRecord>,
                           runs: &mut Vec<(Member, usize)>,
                           member: Member,
                           recs: Vec<JournalRecord>| {
                    batch.extend(recs);
                    match runs.last_mut() {
                        Some((m, end)) if *m == member => *end = batch.len(),
                        _ => runs.push((member, batch.len())),
                    }
                };
                loop {
                    let first = match next.take() {
                        Some(c) => c,
                        None => match rx.recv() {
                            Ok(c) => c,
                            Err(_) => return,
                        },
                    };
                    match first {
                        Command::Compact(member, live, reply) => {
                            let r = sink.compact(member.as_deref(), &live).map_err(Arc::new);
                            let _ = reply.send(r);
                            continue;
                        }
                        Command::Append(member, recs, reply) => {
                            add(&mut batch, &mut runs, member, recs);
                            pending.push(reply);
                        }
                    }
                    while batch.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(Command::Append(member, recs, reply)) => {
                                add(&mut batch, &mut runs, member, recs);
                                pending.push(reply);
                            }
                            Ok(c @ Command::Compact(..)) => {
                                next = Some(c);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let started = std::time::Instant::now();
                    // A database that cannot be reached now (restarting): the group waits
                    // and is written once it is back, in order; nothing after it is
                    // written first. Any other failure goes to the callers.
                    let mut r = sink.append(&batch, &runs);
                    let mut wait = std::time::Duration::from_millis(50);
                    while let Err(e) = &r {
                        if !e.is_transient() {
                            break;
                        }
                        if wait == std::time::Duration::from_millis(50) {
                            tracing::warn!(error = %e, records = batch.len(), "journal store unreachable: the group waits and is written when it is back");
                        }
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(std::time::Duration::from_secs(2));
                        r = sink.append(&batch, &runs);
                    }
                    if wait > std::time::Duration::from_millis(50) && r.is_ok() {
                        tracing::info!(waited = ?started.elapsed(), "journal store back: the group is written");
                    }
                    let r = r.map_err(Arc::new);
                    metrics.sync.record(started.elapsed().as_secs_f64());
                    metrics.group.record(batch.len() as f64);
                    st.fsyncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    st.records
                        .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    batch.clear();
                    runs.clear();
                    for reply in pending.drain(..) {
                        let _ = reply.send(r.clone());
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the journal thread"));
        GroupCommit {
            tx,
            stats,
            member: None,
        }
    }

    /// Appends `records`; the returned future resolves when they are durable (sharing
    /// the fsync with every other append that arrived meanwhile). The records are queued
    /// when this is *called*, not when the future is first polled: appends made one after
    /// the other reach the journal in that order even when their futures run on
    /// different tasks.
    ///
    /// # Errors
    /// The journal's error, or [`ReversalError::DriverStopped`] if the thread is gone.
    pub fn append(
        &self,
        records: Vec<JournalRecord>,
    ) -> impl std::future::Future<Output = std::result::Result<(), Arc<ReversalError>>> + Send + 'static
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .tx
            .send(Command::Append(self.member.clone(), records, tx));
        async move {
            sent.map_err(|_| Arc::new(ReversalError::DriverStopped))?;
            rx.await
                .map_err(|_| Arc::new(ReversalError::DriverStopped))?
        }
    }

    /// Replaces the journal's content with `live`, in order with the appends (queued
    /// when called, as [`GroupCommit::append`]).
    ///
    /// # Errors
    /// As [`GroupCommit::append`].
    pub fn compact(
        &self,
        live: Vec<JournalRecord>,
    ) -> impl std::future::Future<Output = std::result::Result<(), Arc<ReversalError>>> + Send + 'static
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .tx
            .send(Command::Compact(self.member.clone(), live, tx));
        async move {
            sent.map_err(|_| Arc::new(ReversalError::DriverStopped))?;
            rx.await
                .map_err(|_| Arc::new(ReversalError::DriverStopped))?
        }
    }

    /// Fsyncs done so far.
    pub fn fsyncs(&self) -> u64 {
        self.stats.fsyncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.stats
            .records
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::TxnKind;

    #[test]
    fn a_record_recovery_refuses_is_located_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journal");
        let counters = |next_id| JournalRecord::Counters {
            next_id,
            next_stan: 1,
            batch: 1,
            closed_net: Decimal::ZERO,
            unkept: BatchTotals::default(),
        };
        {
            let mut j = FileJournal::open(&path).unwrap();
            j.append(&[counters(1), counters(u64::MAX)]).unwrap();
        }
        let mut j = FileJournal::open(&path).unwrap();
        let records = j.load().unwrap();
        let p = crate::ReversalProfile::cup_pos().unwrap();
        let Err(e) = crate::ReversalEngine::recover(
            std::time::Instant::now(),
            crate::EngineConfig::default(),
            p.clone(),
            crate::NoMac::new(p.dialect.clone()),
            1,
            records,
        ) else {
            panic!("next id u64::MAX is refused")
        };
        assert!(
            matches!(e, ReversalError::BadJournalRecord { index: 1, .. }),
            "{e}"
        );
        let first_len = {
            let mut v = Vec::new();
            counters(1).encode(&mut v);
            (record::HEADER_LEN + v.len()) as u64
        };
        match j.locate(e) {
            ReversalError::Corrupt {
                path: p,
                offset,
                what,
            } => {
                assert_eq!(p, path);
                assert_eq!(offset, record::MAGIC.len() as u64 + first_len);
                assert!(what.contains("overflow"), "{what}");
            }
            other => panic!("{other}"),
        }
    }

    fn started(id: u64) -> JournalRecord {
        JournalRecord::Started {
            id,
            tag: 0,
            batch: 1,
            stan: id as u32,
            info: TxnInfo {
                kind: TxnKind::Debit,
                foreign: false,
                txn_type: 0,
                amount: Decimal::new(1234, 2),
                pan: "6222020000000001".into(),
            },
            message: Bytes::from_static(b"\x02\x00abc"),
        }
    }

    #[test]
    fn records_round_trip() {
        let all = [
            JournalRecord::Counters {
                next_id: 9,
                next_stan: 12,
                batch: 3,
                closed_net: Decimal::new(-500, 2),
                unkept: BatchTotals {
                    foreign: SideTotals {
                        debit_amount: Decimal::new(77, 1),
                        debit_count: 2,
                        ..SideTotals::default()
                    },
                    ..BatchTotals::default()
                },
            },
            started(7),
            JournalRecord::Finished {
                id: 7,
                finish: Finish::Reverse {
                    reason: ReversalReason::MacFailure,
                },
            },
            JournalRecord::Finished {
                id: 7,
                finish: Finish::Approved { code: *b"00" },
            },
            JournalRecord::ReversalAcked {
                id: 7,
                code: *b"25",
            },
            JournalRecord::BatchClosed {
                batch: 3,
                next_batch: 4,
                net: Decimal::new(1, 2),
            },
        ];
        all.iter().for_each(assert_round_trip);
    }

    /// Encodes, decodes back, and checks that every truncation fails.
    fn assert_round_trip(r: &JournalRecord) {
        let mut p = Vec::new();
        r.encode(&mut p);
        assert_eq!(&JournalRecord::decode(&p).unwrap(), r);
        for cut in 0..p.len() {
            assert!(JournalRecord::decode(&p[..cut]).is_err());
        }
    }

    #[test]
    fn tagged_started_and_not_acted_round_trip() {
        let mut tagged = started(8);
        if let JournalRecord::Started { tag, .. } = &mut tagged {
            *tag = 0xDEAD_BEEF_0000_0001;
        }
        let not_acted = JournalRecord::Finished {
            id: 8,
            finish: Finish::NotActed { code: *b"77" },
        };
        assert_round_trip(&tagged);
        assert_round_trip(&not_acted);
    }

    /// A `Started` record exactly as the code before caller tags wrote it (type 2, no
    /// tag), spelled out byte by byte: it still decodes, as tag 0.
    #[test]
    fn untagged_started_from_older_journals_decodes_as_tag_0() {
        let mut p = vec![2u8];
        p.extend_from_slice(&7u64.to_le_bytes()); // id
        p.extend_from_slice(&1u32.to_le_bytes()); // batch
        p.extend_from_slice(&7u32.to_le_bytes()); // stan
        p.extend_from_slice(&[1, 0, 0]); // kind debit, domestic, type 00
        p.extend_from_slice(&1234i128.to_le_bytes()); // amount mantissa
        p.push(2); // scale
        let pan = b"6222020000000001";
        p.extend_from_slice(&(pan.len() as u32).to_le_bytes());
        p.extend_from_slice(pan);
        let msg = b"\x02\x00abc";
        p.extend_from_slice(&(msg.len() as u32).to_le_bytes());
        p.extend_from_slice(msg);
        assert_eq!(JournalRecord::decode(&p).unwrap(), started(7));
        // And the new code writes an untagged record the same way.
        let mut again = Vec::new();
        started(7).encode(&mut again);
        assert_eq!(again, p);
    }

    #[test]
    fn file_journal_recovers_appends_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journal");
        let mut j = FileJournal::open(&path).unwrap();
        assert!(j.load().unwrap().is_empty());
        j.append(&[started(1), started(2)]).unwrap();
        drop(j);
        let mut j = FileJournal::open(&path).unwrap();
        assert_eq!(j.load().unwrap(), vec![started(1), started(2)]);
        j.compact(&[started(2)]).unwrap();
        j.append(&[started(3)]).unwrap();
        drop(j);
        let mut j = FileJournal::open(&path).unwrap();
        assert_eq!(j.load().unwrap(), vec![started(2), started(3)]);
    }

    /// A journal whose store is unreachable for its first `down` appends (a database
    /// restarting), and refuses for good once `refuse` is set.
    struct Flaky {
        inner: MemoryJournal,
        down: std::sync::Arc<std::sync::atomic::AtomicU32>,
        refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl Journal for Flaky {
        fn load(&mut self) -> Result<Vec<JournalRecord>> {
            self.inner.load()
        }
        fn append(&mut self, records: &[JournalRecord]) -> Result<()> {
            use std::sync::atomic::Ordering;
            let db = |transient| ReversalError::Database {
                store: "flaky".into(),
                op: "journal append",
                source: "down".into(),
                transient,
            };
            if self.refuse.load(Ordering::SeqCst) {
                return Err(db(false));
            }
            if self.down.load(Ordering::SeqCst) > 0 {
                self.down.fetch_sub(1, Ordering::SeqCst);
                return Err(db(true));
            }
            self.inner.append(records)
        }
        fn compact(&mut self, live: &[JournalRecord]) -> Result<()> {
            self.inner.compact(live)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_waits_while_its_store_is_unreachable_and_is_written_after() {
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        let inner = MemoryJournal::new();
        let down = std::sync::Arc::new(AtomicU32::new(3));
        let refuse = std::sync::Arc::new(AtomicBool::new(false));
        let g = GroupCommit::spawn(Flaky {
            inner: inner.clone(),
            down: down.clone(),
            refuse: refuse.clone(),
        });
        // Written once the store is back, in order, nothing lost.
        g.append(vec![started(1)]).await.unwrap();
        g.append(vec![started(2)]).await.unwrap();
        assert_eq!(down.load(Ordering::SeqCst), 0);
        assert_eq!(inner.records(), vec![started(1), started(2)]);
        // A refusal that is not about reaching the store goes to the caller.
        refuse.store(true, Ordering::SeqCst);
        assert!(g.append(vec![started(3)]).await.is_err());
        assert_eq!(inner.records().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_shares_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let j = FileJournal::open(dir.path().join("g.journal")).unwrap();
        let g = GroupCommit::spawn(j);
        let mut tasks = Vec::new();
        for i in 0..64 {
            let g = g.clone();
            tasks.push(tokio::spawn(
                async move { g.append(vec![started(i)]).await },
            ));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(g.records(), 64);
        assert!(g.fsyncs() < 64, "fsyncs {}", g.fsyncs());
        drop(g);
        let mut j = FileJournal::open(dir.path().join("g.journal")).unwrap();
        assert_eq!(j.load().unwrap().len(), 64);
    }
}
