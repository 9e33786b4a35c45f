//! [`FileCounters`]: durable STAN, RRN and batch number behind the session crate's
//! [`Counters`] trait, in the one record format ([`crate::record`]).
//!
//! STANs and RRNs are *leased* in blocks of [`FileCounters::lease`] values: one record
//! `Lease { stan_resume, batch, rrn_resume }` is written (and fsynced) before the first
//! value of a block is handed out, and says where to resume after a crash. Within a
//! block no write is needed; a restart skips what was left of the block, so a value is
//! never handed out twice (a STAN may be skipped, never reused). The batch is written
//! on every change (a settlement or sign-on, rare). A lease of 1 writes every value.
//!
//! File behaviour: an absent file starts fresh (STAN 1, batch 1, RRN 1). A torn tail
//! (the last record incomplete after a crash) is cut and reported
//! ([`FileCounters::torn_tail`]): its lease was never used, since a value is handed
//! out only after its lease is durable. A damaged file — a CRC-valid record whose
//! values are out of range, or damage followed by valid records — is
//! [`ReversalError::Corrupt`] naming the file and the record's offset, and is left
//! untouched; [`FileCounters::create`] overwrites it deliberately. The file is
//! compacted to one record when opened and whenever it passes [`COMPACT_AT`] bytes.

use crate::error::{Result, ReversalError};
use crate::record::{self, Reader, RecordFile, Torn, Writer};
use isoswitch_session::counters::{
    BatchNumber, CounterState, Counters, Rrn, Stan, MAX_RRN_SEQUENCE, MAX_SIX_DIGIT,
};
use isoswitch_session::SessionError;
use std::path::Path;

/// Values per lease by default.
pub const DEFAULT_LEASE: u32 = 1000;
/// The largest lease (a tenth of the STAN range: a restart must not skip most of it).
pub const MAX_LEASE: u32 = 100_000;
/// File length past which the file is rewritten to one record.
pub const COMPACT_AT: u64 = 64 * 1024;

const T_LEASE: u8 = 1;

/// One counters record: where to resume after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The first STAN not leased yet.
    pub stan_resume: Stan,
    /// The current batch.
    pub batch: BatchNumber,
    /// The first RRN sequence value not leased yet.
    pub rrn_resume: u64,
}

impl LeaseRecord {
    /// Appends the payload encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u8(T_LEASE)
            .u32(self.stan_resume.get())
            .u32(self.batch.get())
            .u64(self.rrn_resume);
    }

    /// Parses a payload written by [`LeaseRecord::encode`], checking every value's range.
    ///
    /// # Errors
    /// [`ReversalError::BadRecord`] (never panics).
    pub fn decode(payload: &[u8]) -> Result<LeaseRecord> {
        let mut r = Reader::new(payload);
        if r.u8()? != T_LEASE {
            return Err(ReversalError::bad("unknown counters record type"));
        }
        let stan = Stan::new(r.u32()?).map_err(|_| ReversalError::bad("STAN out of range"))?;
        let batch =
            BatchNumber::new(r.u32()?).map_err(|_| ReversalError::bad("batch out of range"))?;
        let rrn = r.u64()?;
        if rrn == 0 || rrn > MAX_RRN_SEQUENCE {
            return Err(ReversalError::bad("RRN out of range"));
        }
        r.finish()?;
        Ok(LeaseRecord {
            stan_resume: stan,
            batch,
            rrn_resume: rrn,
        })
    }
}

/// `s` advanced by `n` in 1..=999999 (wrapping past 999999 to 1).
fn advance_stan(s: Stan, n: u32) -> Stan {
    let m = u64::from(MAX_SIX_DIGIT);
    let v = (u64::from(s.get()) - 1 + u64::from(n)) % m + 1;
    // v is in 1..=999999 by construction.
    u32::try_from(v)
        .ok()
        .and_then(|v| Stan::new(v).ok())
        .unwrap_or(Stan::FIRST)
}

/// `r` advanced by `n` in 1..=999999999999.
fn advance_rrn(r: u64, n: u32) -> u64 {
    (r.saturating_sub(1) % MAX_RRN_SEQUENCE + u64::from(n)) % MAX_RRN_SEQUENCE + 1
}

/// Durable counters; see the module docs.
#[derive(Debug)]
pub struct FileCounters {
    file: RecordFile,
    state: CounterState,
    stan_limit: Stan,
    rrn_limit: u64,
    lease: u32,
    torn: Option<Torn>,
}

impl FileCounters {
    /// Opens (or creates) the counters at `path` with the [`DEFAULT_LEASE`].
    ///
    /// # Errors
    /// I/O errors, [`ReversalError::BadMagic`], [`ReversalError::Corrupt`].
    pub fn open(path: impl AsRef<Path>) -> Result<FileCounters> {
        FileCounters::open_with(path, DEFAULT_LEASE)
    }

    /// Opens (or creates) the counters at `path`, leasing `lease` values at a time
    /// (clamped to 1..=[`MAX_LEASE`]).
    ///
    /// # Errors
    /// As [`FileCounters::open`].
    pub fn open_with(path: impl AsRef<Path>, lease: u32) -> Result<FileCounters> {
        let mut last = None;
        let mut count = 0usize;
        let (file, torn) = RecordFile::open(path, |_, p| {
            last = Some(LeaseRecord::decode(p)?);
            count += 1;
            Ok(())
        })?;
        if let Some(t) = torn {
            tracing::warn!(path = %file.path().display(), offset = t.offset, reason = ?t.reason, "counters: torn tail cut");
        }
        let state = match last {
            Some(l) => CounterState {
                next_stan: l.stan_resume,
                batch: l.batch,
                next_rrn: l.rrn_resume,
            },
            None => CounterState::default(),
        };
        let mut c = FileCounters::assemble(file, state, lease, torn);
        if count > 1 {
            c.compact()?;
        }
        Ok(c)
    }

    /// Counters at `state` on `file`, nothing leased yet.
    fn assemble(file: RecordFile, state: CounterState, lease: u32, torn: Option<Torn>) -> Self {
        FileCounters {
            file,
            state,
            stan_limit: state.next_stan,
            rrn_limit: state.next_rrn,
            lease: lease.clamp(1, MAX_LEASE),
            torn,
        }
    }

    /// Replaces whatever is at `path` with counters at `state` (the deliberate recovery
    /// from a damaged file, or a migration).
    ///
    /// # Errors
    /// I/O errors, [`ReversalError::Corrupt`] never (the old content is not read),
    /// an out-of-range RRN in `state` as [`ReversalError::Session`].
    pub fn create(path: impl AsRef<Path>, state: CounterState, lease: u32) -> Result<FileCounters> {
        state.validate()?;
        let path = path.as_ref();
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ReversalError::io("remove", path, e)),
        }
        let (file, _) = RecordFile::open(path, |_, _| Ok(()))?;
        let mut c = FileCounters::assemble(file, state, lease, None);
        c.compact()?;
        Ok(c)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Values per lease.
    pub fn lease(&self) -> u32 {
        self.lease
    }

    /// The torn tail cut on open, if any.
    pub fn torn_tail(&self) -> Option<Torn> {
        self.torn
    }

    fn record(&self) -> LeaseRecord {
        LeaseRecord {
            stan_resume: self.stan_limit,
            batch: self.state.batch,
            rrn_resume: self.rrn_limit,
        }
    }

    /// Rewrites the file to one record (atomic).
    ///
    /// # Errors
    /// I/O errors.
    pub fn compact(&mut self) -> Result<()> {
        let mut p = Vec::with_capacity(32);
        self.record().encode(&mut p);
        let mut framed = Vec::with_capacity(48);
        record::frame(&p, &mut framed)?;
        self.file.rewrite(&framed)
    }

    /// Makes `rec` durable; only then does the caller adopt it.
    fn write(&mut self, rec: LeaseRecord) -> std::result::Result<(), SessionError> {
        let mut p = Vec::with_capacity(32);
        rec.encode(&mut p);
        let r = self
            .file
            .append_with(|out| record::frame(&p, out))
            .and_then(|()| {
                if self.file.len() > COMPACT_AT {
                    let mut framed = Vec::with_capacity(48);
                    record::frame(&p, &mut framed)?;
                    self.file.rewrite(&framed)
                } else {
                    Ok(())
                }
            });
        r.map_err(|e| self.session_error(e))
    }

    /// Writes `rec` and, once it is durable, adopts its leases and batch.
    fn adopt(&mut self, rec: LeaseRecord) -> std::result::Result<(), SessionError> {
        self.write(rec)?;
        self.stan_limit = rec.stan_resume;
        self.rrn_limit = rec.rrn_resume;
        self.state.batch = rec.batch;
        Ok(())
    }

    fn session_error(&self, e: ReversalError) -> SessionError {
        match e {
            ReversalError::Io { path, source, .. } => SessionError::CounterIo { path, source },
            other => SessionError::CounterIo {
                path: self.path().to_path_buf(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

impl Counters for FileCounters {
    fn state(&self) -> CounterState {
        self.state
    }

    fn next_stan(&mut self) -> std::result::Result<Stan, SessionError> {
        let stan = self.state.next_stan;
        if stan == self.stan_limit {
            let rec = LeaseRecord {
                stan_resume: advance_stan(stan, self.lease),
                ..self.record()
            };
            self.adopt(rec)?;
        }
        self.state.next_stan = stan.next();
        Ok(stan)
    }

    fn set_batch(&mut self, batch: BatchNumber) -> std::result::Result<(), SessionError> {
        let rec = LeaseRecord {
            batch,
            ..self.record()
        };
        self.adopt(rec)
    }

    fn next_rrn(&mut self) -> std::result::Result<Rrn, SessionError> {
        let value = self.state.next_rrn;
        let rrn = Rrn::from_sequence(value)?;
        if value == self.rrn_limit {
            let rec = LeaseRecord {
                rrn_resume: advance_rrn(value, self.lease),
                ..self.record()
            };
            self.adopt(rec)?;
        }
        self.state.next_rrn = advance_rrn(value, 1);
        Ok(rrn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stan(v: u32) -> Stan {
        Stan::new(v).expect("stan")
    }

    #[test]
    fn arithmetic_wraps_without_zero() {
        assert_eq!(advance_stan(stan(999_999), 1), Stan::FIRST);
        assert_eq!(advance_stan(stan(999_000), 1000), Stan::FIRST);
        assert_eq!(advance_stan(stan(999_500), 1000), stan(501));
        assert_eq!(advance_rrn(MAX_RRN_SEQUENCE, 1), 1);
        assert_eq!(advance_rrn(MAX_RRN_SEQUENCE - 1, 3), 2);
        assert_eq!(advance_rrn(5, 10), 15);
    }

    #[test]
    fn start_fresh_lease_and_resume_after_the_lease() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.counters");
        {
            let mut c = FileCounters::open_with(&path, 10).expect("open");
            assert_eq!(c.state(), CounterState::default());
            let got: Vec<u32> = (0..12).map(|_| c.next_stan().expect("s").get()).collect();
            assert_eq!(got, (1..=12).collect::<Vec<_>>());
            c.set_batch(BatchNumber::new(17).expect("b"))
                .expect("batch");
            assert_eq!(c.next_rrn().expect("rrn").as_str(), "000000000001");
            // Dropped: no "close" needed.
        }
        let mut c = FileCounters::open_with(&path, 10).expect("reopen");
        // Leases [1,11) and [11,21) were taken: resume at 21, never reuse 13..=20.
        assert_eq!(c.next_stan().expect("s").get(), 21);
        assert_eq!(c.batch().get(), 17);
        assert_eq!(c.next_rrn().expect("rrn").as_str(), "000000000011");
    }

    #[test]
    fn a_lease_is_one_write_per_block() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.counters");
        let mut c = FileCounters::open_with(&path, 100).expect("open");
        let before = c.file.len();
        for _ in 0..100 {
            c.next_stan().expect("s");
        }
        let one_record = (record::HEADER_LEN + 1 + 4 + 4 + 8) as u64;
        assert_eq!(c.file.len(), before + one_record);
        c.next_stan().expect("s");
        assert_eq!(c.file.len(), before + 2 * one_record);
    }

    #[test]
    fn wrap_is_persisted_and_compaction_keeps_state() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.counters");
        let start = CounterState {
            next_stan: stan(999_999),
            batch: BatchNumber::new(999_999).expect("b"),
            next_rrn: MAX_RRN_SEQUENCE,
        };
        let mut c = FileCounters::create(&path, start, 1).expect("create");
        assert_eq!(c.next_stan().expect("s").get(), 999_999);
        assert_eq!(c.next_stan().expect("s").get(), 1);
        assert_eq!(c.next_batch().expect("b").get(), 1);
        assert_eq!(c.next_rrn().expect("r").as_str(), "999999999999");
        assert_eq!(c.next_rrn().expect("r").as_str(), "000000000001");
        // Force many records, then reopen (compaction on open).
        for _ in 0..5000 {
            c.next_stan().expect("s");
        }
        assert!(c.file.len() <= COMPACT_AT + 64);
        let next = c.state().next_stan;
        drop(c);
        let mut c = FileCounters::open_with(&path, 1).expect("reopen");
        assert_eq!(c.state().next_stan, next);
        assert_eq!(c.state().batch.get(), 1);
        assert!(c.file.len() < 64, "compacted to one record");
        assert_eq!(c.next_stan().expect("s"), next);
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(matches!(
            FileCounters::open(dir.path().join("absent").join("c.counters")),
            Err(ReversalError::Io { .. })
        ));
    }

    #[test]
    fn out_of_range_values_are_typed_errors() {
        for (stan, batch, rrn, what) in [
            (0u32, 1u32, 1u64, "STAN out of range"),
            (1_000_000, 1, 1, "STAN out of range"),
            (1, 0, 1, "batch out of range"),
            (1, u32::MAX, 1, "batch out of range"),
            (1, 1, 0, "RRN out of range"),
            (1, 1, u64::MAX, "RRN out of range"),
        ] {
            let mut p = Vec::new();
            Writer::new(&mut p)
                .u8(T_LEASE)
                .u32(stan)
                .u32(batch)
                .u64(rrn);
            match LeaseRecord::decode(&p) {
                Err(ReversalError::BadRecord { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}
