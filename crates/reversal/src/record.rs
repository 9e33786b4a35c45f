//! The on-disk record format shared by the journal and the host store.
//!
//! A file starts with 8 magic bytes (`ISWREV` + format version `0x00 0x01`, then for
//! each record:
//!
//! ```text
//! +----------------+----------------+---------------------------+
//! | len: u32 LE    | crc32: u32 LE  | payload: len bytes        |
//! +----------------+----------------+---------------------------+
//! ```
//!
//! `crc32` is CRC-32 (IEEE, `crc32fast`) of the payload. `len` is at most
//! [`MAX_RECORD_LEN`]; a larger announced length is treated as a torn record *before*
//! anything is allocated. Recovery reads records in order and stops at the first one that
//! is incomplete, too long or fails its CRC: that is the torn tail of a write that a
//! crash interrupted, and [`RecordFile::open`] truncates the file there (and fsyncs)
//! before anything new is appended, and reports it ([`Torn`]). Two kinds of damage are
//! *not* a torn write and are reported as [`ReversalError::Corrupt`] naming the file and
//! the record's offset, leaving the file untouched: a record that passes its CRC but
//! whose payload does not parse, and a damaged record that is followed by a CRC-valid
//! one (a flipped byte in the middle of the file; a crash only tears the end of the
//! last write).
//!
//! Payloads are a small binary encoding written with [`Writer`] and read with [`Reader`]
//! (integers little-endian, byte strings with a `u32` length checked against what is
//! left of the payload, so nothing is allocated beyond the record itself).

use crate::error::{Result, ReversalError};
use crate::seal::{DataKeys, SEAL_OVERHEAD};
use rust_decimal::Decimal;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The magic bytes at the start of every journal and store file.
pub const MAGIC: &[u8; 8] = b"ISWREV\x00\x01";
/// The magic of a file whose payloads are sealed under a data key
/// ([`crate::seal::DataKeys`]; each payload on disk is the sealed form, framed and
/// CRC'd like any other).
pub const SEALED_MAGIC: &[u8; 8] = b"ISWREV\x00\x02";
/// Bytes before a payload: length and CRC.
pub const HEADER_LEN: usize = 8;
/// The largest payload accepted (64 KiB: an ISO 8583 message is at most a few KiB).
pub const MAX_RECORD_LEN: usize = 64 * 1024;

/// Appends one framed record (header + payload) to `out`.
///
/// # Errors
/// [`ReversalError::RecordTooLarge`] for a payload over [`MAX_RECORD_LEN`].
pub fn frame(payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if payload.len() > MAX_RECORD_LEN {
        return Err(ReversalError::RecordTooLarge {
            len: payload.len(),
            max: MAX_RECORD_LEN,
        });
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Why reading stopped before the end of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornReason {
    /// Fewer than [`HEADER_LEN`] bytes left.
    ShortHeader,
    /// The length announces more than [`MAX_RECORD_LEN`].
    TooLong,
    /// The payload is shorter than announced.
    ShortPayload,
    /// The CRC does not match.
    BadCrc,
}

/// A torn (or corrupt) tail: where the valid records end and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Torn {
    /// Offset of the first invalid byte (the valid length).
    pub offset: u64,
    /// Why.
    pub reason: TornReason,
}

/// Iterates over the framed records of an in-memory buffer (after the magic), yielding
/// each payload; stops at the end or at the first torn record, which it yields as
/// `Err` once. Never panics, never allocates.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> RecordIter<'a> {
    /// Records of `buf` (which holds framed records, without the magic).
    pub fn new(buf: &'a [u8]) -> Self {
        RecordIter {
            buf,
            pos: 0,
            done: false,
        }
    }

    /// Bytes consumed by the valid records so far.
    pub fn valid_len(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = std::result::Result<&'a [u8], Torn>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos == self.buf.len() {
            return None;
        }
        let torn = |reason| Torn {
            offset: self.pos as u64,
            reason,
        };
        let rest = &self.buf[self.pos..];
        let result = (|| {
            let header = rest
                .get(..HEADER_LEN)
                .ok_or(torn(TornReason::ShortHeader))?;
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if len > MAX_RECORD_LEN {
                return Err(torn(TornReason::TooLong));
            }
            let payload = rest
                .get(HEADER_LEN..HEADER_LEN + len)
                .ok_or(torn(TornReason::ShortPayload))?;
            if crc32fast::hash(payload) != crc {
                return Err(torn(TornReason::BadCrc));
            }
            Ok(payload)
        })();
        match result {
            Ok(p) => {
                self.pos += HEADER_LEN + p.len();
                Some(Ok(p))
            }
            Err(t) => {
                self.done = true;
                Some(Err(t))
            }
        }
    }
}

/// An append-only file of framed records with fsync, torn-tail truncation and atomic
/// rewrite (compaction). Used by [`crate::journal::FileJournal`] and
/// [`crate::store::FileStore`].
#[derive(Debug)]
pub struct RecordFile {
    path: PathBuf,
    file: File,
    len: u64,
    buf: Vec<u8>,
    sync: bool,
    /// Payloads are sealed on the way out and opened on the way in.
    seal: Option<Arc<DataKeys>>,
}

/// Frames `payload` without the clear-payload size check (sealed payloads are up to
/// [`SEAL_OVERHEAD`] bytes longer than the payload they carry).
fn frame_sealed(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// `framed` (clear framed records) with every payload sealed under `keys`, appended to
/// `out`.
fn reseal(keys: &DataKeys, framed: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut sealed = Vec::new();
    for rec in RecordIter::new(framed) {
        let payload = rec.map_err(|_| ReversalError::BadRecord {
            offset: 0,
            what: "a record to seal is not framed",
        })?;
        sealed.clear();
        keys.seal_into(payload, &mut sealed)?;
        frame_sealed(&sealed, out);
    }
    Ok(())
}

/// Makes what was appended to a [`RecordFile`] durable (`fdatasync`) from any thread,
/// without access to the file itself: for callers that append with
/// [`RecordFile::set_sync_on_append`] off and share one sync among many appends (group
/// commit). Cheap to clone. A handle taken before [`RecordFile::rewrite`] syncs the
/// replaced file: take handles after compacting.
#[derive(Debug, Clone)]
pub struct SyncHandle {
    file: std::sync::Arc<File>,
    path: PathBuf,
}

impl SyncHandle {
    /// `fdatasync`: every append made before this call is durable when it returns.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| ReversalError::io("fsync", &self.path, e))
    }
}

impl RecordFile {
    /// Opens (or creates) `path`, calls `each(offset, payload)` for every valid record in
    /// order, truncates a torn tail and returns the file ready for appending, with the
    /// torn tail found (if any).
    ///
    /// # Errors
    /// I/O errors, [`ReversalError::BadMagic`], or the first error `each` returns.
    pub fn open(
        path: impl AsRef<Path>,
        each: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<(RecordFile, Option<Torn>)> {
        RecordFile::open_with(path, None, each)
    }

    /// As [`RecordFile::open`], with payloads sealed under `seal` when given: a new
    /// file is created sealed; a clear file (written before sealing was on) is read
    /// and then rewritten sealed, atomically (migration); a sealed file opened without
    /// keys is refused ([`ReversalError::SealedFile`]). `each` sees clear payloads.
    ///
    /// # Errors
    /// As [`RecordFile::open`]; a sealed record that does not open under the keys is
    /// [`ReversalError::Corrupt`].
    pub fn open_with(
        path: impl AsRef<Path>,
        seal: Option<Arc<DataKeys>>,
        mut each: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<(RecordFile, Option<Torn>)> {
        let path = path.as_ref().to_path_buf();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| ReversalError::io("open", &path, e))?;
        let size = file
            .metadata()
            .map_err(|e| ReversalError::io("stat", &path, e))?
            .len();
        if size < MAGIC.len() as u64 {
            // New file, or a crash while writing the magic: start over.
            file.set_len(0)
                .map_err(|e| ReversalError::io("truncate", &path, e))?;
            file.write_all(if seal.is_some() { SEALED_MAGIC } else { MAGIC })
                .map_err(|e| ReversalError::io("write", &path, e))?;
            file.sync_all()
                .map_err(|e| ReversalError::io("fsync", &path, e))?;
            sync_dir(&path)?;
            return Ok((
                RecordFile {
                    path,
                    file,
                    len: MAGIC.len() as u64,
                    buf: Vec::new(),
                    sync: true,
                    seal,
                },
                None,
            ));
        }
        let mut reader = BufReader::with_capacity(1 << 16, &mut file);
        let mut magic = [0u8; 8];
        reader
            .read_exact(&mut magic)
            .map_err(|e| ReversalError::io("read", &path, e))?;
        let sealed = match &magic {
            m if m == MAGIC => false,
            m if m == SEALED_MAGIC => true,
            _ => return Err(ReversalError::BadMagic { path }),
        };
        let keys = match (sealed, &seal) {
            (true, None) => return Err(ReversalError::SealedFile { path }),
            (true, Some(k)) => Some(k.clone()),
            (false, _) => None,
        };
        // A clear file opened with keys: its records are kept to be rewritten sealed.
        let mut migrate: Option<Vec<u8>> = (!sealed && seal.is_some()).then(Vec::new);
        let max_len = if sealed {
            MAX_RECORD_LEN + SEAL_OVERHEAD
        } else {
            MAX_RECORD_LEN
        };
        let mut clear = Vec::new();
        let mut pos = MAGIC.len() as u64;
        let mut payload = Vec::new();
        let mut torn = None;
        loop {
            let mut header = [0u8; HEADER_LEN];
            match read_full(&mut reader, &mut header)
                .map_err(|e| ReversalError::io("read", &path, e))?
            {
                0 => break,
                n if n < HEADER_LEN => {
                    torn = Some(Torn {
                        offset: pos,
                        reason: TornReason::ShortHeader,
                    });
                    break;
                }
                _ => {}
            }
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if len > max_len {
                torn = Some(Torn {
                    offset: pos,
                    reason: TornReason::TooLong,
                });
                break;
            }
            payload.resize(len, 0);
            let got = read_full(&mut reader, &mut payload)
                .map_err(|e| ReversalError::io("read", &path, e))?;
            if got < len {
                torn = Some(Torn {
                    offset: pos,
                    reason: TornReason::ShortPayload,
                });
                break;
            }
            if crc32fast::hash(&payload) != crc {
                torn = Some(Torn {
                    offset: pos,
                    reason: TornReason::BadCrc,
                });
                break;
            }
            let record: &[u8] = match &keys {
                Some(k) => {
                    k.open_into(&payload, &mut clear).map_err(|_| ReversalError::Corrupt {
                        path: path.clone(),
                        offset: pos,
                        what: "sealed record does not open under the data keys (damaged, or sealed under a key that is not loaded)",
                    })?;
                    &clear
                }
                None => &payload,
            };
            if let Some(m) = &mut migrate {
                frame_sealed(record, m);
            }
            each(pos, record).map_err(|e| match e {
                ReversalError::BadRecord { what, .. } => ReversalError::Corrupt {
                    path: path.clone(),
                    offset: pos,
                    what,
                },
                other => other,
            })?;
            pos += (HEADER_LEN + len) as u64;
        }
        drop(reader);
        if let Some(t) = torn {
            if t.reason != TornReason::ShortHeader {
                if let Some(next) = valid_record_after(&mut file, &path, pos, size)? {
                    tracing::error!(path = %path.display(), offset = pos, next, reason = ?t.reason, "damaged record before valid ones");
                    return Err(ReversalError::Corrupt {
                        path,
                        offset: pos,
                        what: "damaged record followed by valid records (not a torn tail)",
                    });
                }
            }
        }
        if pos != size {
            tracing::warn!(path = %path.display(), valid = pos, size, ?torn, "truncating torn journal tail");
            file.set_len(pos)
                .map_err(|e| ReversalError::io("truncate", &path, e))?;
            file.sync_all()
                .map_err(|e| ReversalError::io("fsync", &path, e))?;
        }
        file.seek(SeekFrom::Start(pos))
            .map_err(|e| ReversalError::io("seek", &path, e))?;
        let mut rf = RecordFile {
            path,
            file,
            len: pos,
            buf: Vec::new(),
            sync: true,
            seal,
        };
        if let Some(clear_framed) = migrate {
            // `frame_sealed` above framed the clear payloads; `rewrite` seals them.
            tracing::info!(path = %rf.path.display(), "sealing a clear file under the data key (migration)");
            rf.rewrite(&clear_framed)?;
        }
        Ok((rf, torn))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether appends `fdatasync` before they return (the default). Off: an append is
    /// one `write` (it survives the death of the process, not a power loss) and becomes
    /// durable at the next [`RecordFile::sync`] or [`SyncHandle::sync`].
    pub fn set_sync_on_append(&mut self, on: bool) {
        self.sync = on;
    }

    /// `fdatasync` of everything appended so far.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| ReversalError::io("fsync", &self.path, e))
    }

    /// A handle that syncs this file from another thread; see [`SyncHandle`].
    ///
    /// # Errors
    /// I/O errors (duplicating the file descriptor).
    pub fn sync_handle(&self) -> Result<SyncHandle> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| ReversalError::io("dup", &self.path, e))?;
        Ok(SyncHandle {
            file: std::sync::Arc::new(file),
            path: self.path.clone(),
        })
    }

    /// Whether the file holds no record.
    pub fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64
    }

    /// Appends the payloads written by `fill` (one call per record, into a reused
    /// buffer) with one `write` and one `fdatasync`: durable when this returns (unless
    /// [`RecordFile::set_sync_on_append`] turned the `fdatasync` off).
    ///
    /// # Errors
    /// I/O errors (the file is then truncated back to its previous length when
    /// possible), [`ReversalError::RecordTooLarge`].
    pub fn append_with(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
        self.buf.clear();
        fill(&mut self.buf)?;
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Some(keys) = &self.seal {
            let mut sealed = Vec::with_capacity(self.buf.len() + 64);
            reseal(keys, &self.buf, &mut sealed)?;
            self.buf = sealed;
        }
        let before = self.len;
        let written = self.file.write_all(&self.buf).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // Leave no half-written record behind an error we report.
            let _ = self.file.set_len(before);
            let _ = self.file.seek(SeekFrom::Start(before));
            return Err(ReversalError::io("append", &self.path, e));
        }
        self.len += self.buf.len() as u64;
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Appends framed payloads (each already framed with [`frame`]) and fsyncs.
    ///
    /// # Errors
    /// As [`RecordFile::append_with`].
    pub fn append_framed(&mut self, framed: &[u8]) -> Result<()> {
        self.append_with(|b| {
            b.extend_from_slice(framed);
            Ok(())
        })
    }

    /// Atomically replaces the file's content with the framed records `framed`: writes
    /// `<path>.compact`, fsyncs it, renames it over the file and fsyncs the directory.
    /// A crash at any point leaves either the old or the new file.
    ///
    /// # Errors
    /// I/O errors.
    pub fn rewrite(&mut self, framed: &[u8]) -> Result<()> {
        let resealed;
        let (magic, framed) = match &self.seal {
            Some(keys) => {
                let mut out = Vec::with_capacity(framed.len() + framed.len() / 2);
                reseal(keys, framed, &mut out)?;
                resealed = out;
                (SEALED_MAGIC, &resealed[..])
            }
            None => (MAGIC, framed),
        };
        let tmp = self.path.with_extension("compact");
        let mut f = File::create(&tmp).map_err(|e| ReversalError::io("create", &tmp, e))?;
        f.write_all(magic)
            .and_then(|()| f.write_all(framed))
            .and_then(|()| f.sync_all())
            .map_err(|e| ReversalError::io("write", &tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(|e| ReversalError::io("rename", &tmp, e))?;
        sync_dir(&self.path)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| ReversalError::io("open", &self.path, e))?;
        let len = (MAGIC.len() + framed.len()) as u64;
        file.seek(SeekFrom::Start(len))
            .map_err(|e| ReversalError::io("seek", &self.path, e))?;
        self.file = file;
        self.len = len;
        Ok(())
    }
}

/// How far past a damaged record [`RecordFile::open`] looks for a valid one.
pub const DAMAGE_SCAN_LIMIT: u64 = 4 << 20;

/// Whether a CRC-valid, non-empty record starts anywhere in `(pos, size)` (looking at
/// most [`DAMAGE_SCAN_LIMIT`] bytes): then the damage at `pos` is corruption in the
/// middle of the file, not the torn tail of an interrupted append (a crash only ever
/// leaves the *end* of the last write incomplete). Returns the first such offset.
fn valid_record_after(file: &mut File, path: &Path, pos: u64, size: u64) -> Result<Option<u64>> {
    let span = size.saturating_sub(pos).min(DAMAGE_SCAN_LIMIT);
    let span = usize::try_from(span).unwrap_or(0);
    if span <= HEADER_LEN {
        return Ok(None);
    }
    let mut tail = vec![0u8; span];
    file.seek(SeekFrom::Start(pos))
        .map_err(|e| ReversalError::io("seek", path, e))?;
    let got = read_full(file, &mut tail).map_err(|e| ReversalError::io("read", path, e))?;
    tail.truncate(got);
    Ok(first_valid_record(&tail, 1).map(|o| pos + o as u64))
}

/// The first offset `>= from` in `buf` where a CRC-valid record with a non-empty
/// payload starts (every record this crate writes has at least a tag byte, and an
/// all-zero region would otherwise read as empty records with CRC 0).
pub fn first_valid_record(buf: &[u8], from: usize) -> Option<usize> {
    let last = buf.len().checked_sub(HEADER_LEN)?;
    (from..=last).find(|&o| {
        let h = &buf[o..o + HEADER_LEN];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        len != 0
            && len <= MAX_RECORD_LEN
            && buf
                .get(o + HEADER_LEN..o + HEADER_LEN + len)
                .is_some_and(|p| crc32fast::hash(p) == crc)
    })
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ReversalError::io("fsync dir", dir, e))
}

/// Writes a record payload.
#[derive(Debug)]
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }
    /// A `u32`, little-endian.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A `u64`, little-endian.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A decimal: 16-byte mantissa (i128 LE) + scale byte.
    pub fn decimal(&mut self, v: Decimal) -> &mut Self {
        self.out.extend_from_slice(&v.mantissa().to_le_bytes());
        self.out.push(v.scale() as u8);
        self
    }
    /// A byte string with a `u32` length.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.out.extend_from_slice(v);
        self
    }
    /// A string (as bytes).
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
}

/// Reads a record payload; every read is bounds-checked and fails with
/// [`ReversalError::BadRecord`], never panics.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(ReversalError::bad("record shorter than its fields"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    /// Everything not read yet (the reader is then at the end).
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A decimal written by [`Writer::decimal`] (scale checked).
    pub fn decimal(&mut self) -> Result<Decimal> {
        let b = self.take(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        let scale = self.u8()? as u32;
        Decimal::try_from_i128_with_scale(i128::from_le_bytes(a), scale)
            .map_err(|_| ReversalError::bad("decimal out of range"))
    }
    /// A byte string (borrowed; its length is checked against the record).
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| ReversalError::bad("string not UTF-8"))
    }
    /// Fails unless the whole payload was read.
    pub fn finish(&self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ReversalError::bad("trailing bytes in record"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tails_are_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        {
            let (mut f, torn) = RecordFile::open(&path, |_, _| Ok(())).unwrap();
            assert!(torn.is_none());
            let mut framed = Vec::new();
            frame(b"one", &mut framed).unwrap();
            frame(b"two", &mut framed).unwrap();
            f.append_framed(&framed).unwrap();
        }
        let full = std::fs::read(&path).unwrap();
        // Every possible torn length of a third record, and a flipped bit.
        let mut third = Vec::new();
        frame(b"three", &mut third).unwrap();
        for cut in 1..third.len() {
            let mut data = full.clone();
            data.extend_from_slice(&third[..cut]);
            std::fs::write(&path, &data).unwrap();
            let mut seen = Vec::new();
            let (_, torn) = RecordFile::open(&path, |_, p| {
                seen.push(p.to_vec());
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, vec![b"one".to_vec(), b"two".to_vec()]);
            assert!(torn.is_some());
            assert_eq!(std::fs::read(&path).unwrap(), full, "cut {cut}");
        }
        let mut data = full.clone();
        let n = data.len();
        data[n - 1] ^= 1;
        std::fs::write(&path, &data).unwrap();
        let mut count = 0;
        let (_, torn) = RecordFile::open(&path, |_, _| {
            count += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(count, 1);
        assert_eq!(torn.map(|t| t.reason), Some(TornReason::BadCrc));
    }

    #[test]
    fn huge_announced_length_is_torn_not_allocated() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        let mut it = RecordIter::new(&buf);
        assert_eq!(
            it.next().map(|r| r.map_err(|t| t.reason)),
            Some(Err(TornReason::TooLong))
        );
        assert!(it.next().is_none());
    }

    #[test]
    fn bad_magic_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        std::fs::write(&path, b"NOTAJOURNAL").unwrap();
        assert!(matches!(
            RecordFile::open(&path, |_, _| Ok(())),
            Err(ReversalError::BadMagic { .. })
        ));
    }
}
