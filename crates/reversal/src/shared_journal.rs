//! [`SharedJournal`]: the journals of many engines in one record file, written by one
//! [`GroupCommit`](crate::GroupCommit) thread with one `fdatasync` per group for all of
//! them ([`GroupCommit::spawn_shared`](crate::GroupCommit::spawn_shared), then a
//! [`GroupCommit::member`](crate::GroupCommit::member) handle per engine).
//!
//! For a process that runs many terminals (a simulator, a multi-lane device): a journal
//! file per terminal costs a journal thread and an `fdatasync` per transaction per
//! terminal; sharing one file makes every group of appends — from whichever terminals —
//! durable with one. Each member's records are exactly what its own
//! [`FileJournal`](crate::FileJournal) would hold; the engines cannot tell.
//!
//! The file is the crate's one record format ([`crate::record`]: CRC-framed, sealed
//! under the data keys when given). Two payload kinds:
//!
//! ```text
//! 0x40  member record    str member, then a JournalRecord payload
//! 0x41  member snapshot  str member, u32 n, n × bytes (JournalRecord payloads)
//! ```
//!
//! A member's compaction is one snapshot record (atomic: a torn snapshot is cut and the
//! member's earlier records stand); reading folds the file in order, a snapshot
//! replacing what its member had. When a snapshot does not fit in one record, or the
//! file has grown past [`REWRITE_MIN`] and holds more superseded bytes than live ones,
//! the whole file is rewritten with every member's live records (atomic rename).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, ReversalError};
use crate::journal::JournalRecord;
use crate::record::{self, Reader, RecordFile, Torn, Writer, HEADER_LEN, MAX_RECORD_LEN};
use crate::seal::DataKeys;

const T_MEMBER: u8 = 0x40;
const T_SNAPSHOT: u8 = 0x41;

/// A file is rewritten as a whole only past this size (and when more than half of it is
/// superseded).
pub const REWRITE_MIN: u64 = 8 << 20;

/// One payload of a shared journal, parsed (borrowing the payload).
#[derive(Debug, PartialEq)]
pub enum SharedPayload<'a> {
    /// One record of `member`.
    Record {
        /// The member (engine) it belongs to.
        member: &'a str,
        /// A [`JournalRecord`] payload.
        record: &'a [u8],
    },
    /// `member`'s whole content from here on.
    Snapshot {
        /// The member.
        member: &'a str,
        /// [`JournalRecord`] payloads.
        records: Vec<&'a [u8]>,
    },
}

/// Parses one payload of a shared journal (the [`JournalRecord`]s inside are not
/// decoded). Never panics; allocates at most one pointer per record actually present.
///
/// # Errors
/// [`ReversalError::BadRecord`] for anything that is not one of the two kinds.
pub fn parse_payload(payload: &[u8]) -> Result<SharedPayload<'_>> {
    let mut r = Reader::new(payload);
    let p = match r.u8()? {
        T_MEMBER => {
            let member = r.str()?;
            let record = r.rest();
            return Ok(SharedPayload::Record { member, record });
        }
        T_SNAPSHOT => {
            let member = r.str()?;
            let n = r.u32()? as usize;
            // Each record takes at least its 4-byte length: a count the payload cannot
            // hold is refused before anything is reserved for it.
            if n > r.remaining() / 4 {
                return Err(ReversalError::bad("snapshot count larger than its payload"));
            }
            let mut records = Vec::with_capacity(n);
            for _ in 0..n {
                records.push(r.bytes()?);
            }
            SharedPayload::Snapshot { member, records }
        }
        _ => return Err(ReversalError::bad("unknown shared journal record type")),
    };
    r.finish()?;
    Ok(p)
}

/// Appends the payload of one record of `member` (what [`parse_payload`] reads as
/// [`SharedPayload::Record`]).
pub fn member_payload(member: &str, rec: &JournalRecord, out: &mut Vec<u8>) {
    Writer::new(out).u8(T_MEMBER).str(member);
    rec.encode(out);
}

/// Appends the payload of a snapshot of `member` holding `live` (what [`parse_payload`]
/// reads as [`SharedPayload::Snapshot`]).
pub fn snapshot_payload(member: &str, live: &[JournalRecord], out: &mut Vec<u8>) {
    let mut one = Vec::with_capacity(256);
    Writer::new(out)
        .u8(T_SNAPSHOT)
        .str(member)
        .u32(live.len() as u32);
    for rec in live {
        one.clear();
        rec.encode(&mut one);
        Writer::new(out).bytes(&one);
    }
}

/// Many engines' journals in one file; see the module docs. Written by a
/// [`GroupCommit`](crate::GroupCommit) thread
/// ([`GroupCommit::spawn_shared`](crate::GroupCommit::spawn_shared)).
#[derive(Debug)]
pub struct SharedJournal {
    file: RecordFile,
    seal: Option<Arc<DataKeys>>,
    recovered: HashMap<String, Vec<JournalRecord>>,
    /// Bytes of each member's live records in the file (its last snapshot and what
    /// followed it).
    live: HashMap<String, u64>,
    torn: Option<Torn>,
    rewrites: u64,
}

impl SharedJournal {
    /// Opens or creates the shared journal at `path` and reads every member's records
    /// (recovery), sealed under `seal` when given (a clear file is migrated, as
    /// [`RecordFile::open_with`] does).
    ///
    /// # Errors
    /// I/O errors, a bad magic, a sealed file without keys, and
    /// [`ReversalError::Corrupt`] naming the offset of a CRC-valid record that does not
    /// parse.
    pub fn open_sealed(path: impl AsRef<Path>, seal: Option<Arc<DataKeys>>) -> Result<Self> {
        let mut recovered: HashMap<String, Vec<JournalRecord>> = HashMap::new();
        let mut live: HashMap<String, u64> = HashMap::new();
        let (file, torn) = RecordFile::open_with(path, seal.clone(), |_, p| {
            let framed = (HEADER_LEN + p.len()) as u64;
            match parse_payload(p)? {
                SharedPayload::Record { member, record } => {
                    let rec = JournalRecord::decode(record)?;
                    match recovered.get_mut(member) {
                        Some(v) => v.push(rec),
                        None => {
                            recovered.insert(member.to_owned(), vec![rec]);
                        }
                    }
                    *live.entry(member.to_owned()).or_default() += framed;
                }
                SharedPayload::Snapshot { member, records } => {
                    let recs = records
                        .into_iter()
                        .map(JournalRecord::decode)
                        .collect::<Result<Vec<_>>>()?;
                    recovered.insert(member.to_owned(), recs);
                    live.insert(member.to_owned(), framed);
                }
            }
            Ok(())
        })?;
        let mut file = file;
        file.set_sync_on_append(true);
        Ok(SharedJournal {
            file,
            seal,
            recovered,
            live,
            torn,
            rewrites: 0,
        })
    }

    /// `member`'s recovered records (taken once; `None` when the file has never held
    /// anything of it).
    pub fn take(&mut self, member: &str) -> Option<Vec<JournalRecord>> {
        self.recovered.remove(member)
    }

    /// The members the file holds records of and that were not taken yet.
    pub fn untaken(&self) -> impl Iterator<Item = &str> {
        self.recovered.keys().map(String::as_str)
    }

    /// The torn tail that was truncated on open, if any.
    pub fn torn_tail(&self) -> Option<Torn> {
        self.torn
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.file.len()
    }

    /// Whole-file rewrites done since open.
    pub fn rewrites(&self) -> u64 {
        self.rewrites
    }

    /// Appends one group: `records`, cut into runs (member, end index), with one write
    /// and one `fdatasync`.
    pub(crate) fn append_runs(
        &mut self,
        records: &[JournalRecord],
        runs: &[(Option<Arc<str>>, usize)],
    ) -> Result<()> {
        let mut added: Vec<(&str, u64)> = Vec::with_capacity(runs.len());
        let mut start = 0usize;
        let mut payload = Vec::with_capacity(512);
        self.file.append_with(|out| {
            for (member, end) in runs {
                let member = member.as_deref().ok_or(ReversalError::bad(
                    "a shared journal is written through its members (GroupCommit::member)",
                ))?;
                let run = records.get(start..*end).unwrap_or_default();
                start = *end;
                let before = out.len();
                for rec in run {
                    payload.clear();
                    member_payload(member, rec, &mut payload);
                    record::frame(&payload, out)?;
                }
                added.push((member, (out.len() - before) as u64));
            }
            Ok(())
        })?;
        for (member, bytes) in added {
            match self.live.get_mut(member) {
                Some(b) => *b += bytes,
                None => {
                    self.live.insert(member.to_owned(), bytes);
                }
            }
        }
        Ok(())
    }

    /// Replaces `member`'s records with `live`: one snapshot record, or a rewrite of the
    /// whole file when the snapshot does not fit in a record or the file is mostly
    /// superseded records.
    pub(crate) fn compact_member(&mut self, member: &str, live: &[JournalRecord]) -> Result<()> {
        let mut payload = Vec::with_capacity(64 + live.len() * 128);
        snapshot_payload(member, live, &mut payload);
        if payload.len() > MAX_RECORD_LEN {
            return self.rewrite(Some((member, live)));
        }
        let framed = (HEADER_LEN + payload.len()) as u64;
        self.file.append_with(|out| record::frame(&payload, out))?;
        self.live.insert(member.to_owned(), framed);
        let live_total: u64 = self.live.values().sum();
        let size = self.file.len();
        if size > REWRITE_MIN && size - live_total.min(size) > live_total {
            self.rewrite(None)?;
        }
        Ok(())
    }

    /// Rewrites the file with every member's live records (as read back from the file),
    /// `replace`'s member's replaced by its records.
    fn rewrite(&mut self, replace: Option<(&str, &[JournalRecord])>) -> Result<()> {
        let path: PathBuf = self.file.path().to_path_buf();
        // Read back what the file holds (appends are durable and in the page cache).
        let mut members: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let (reader, _) = RecordFile::open_with(&path, self.seal.clone(), |_, p| {
            let (member, recs, reset) = match parse_payload(p)? {
                SharedPayload::Record { member, record } => (member, vec![record], false),
                SharedPayload::Snapshot { member, records } => (member, records, true),
            };
            let i = match index.get(member) {
                Some(&i) => i,
                None => {
                    index.insert(member.to_owned(), members.len());
                    members.push((member.to_owned(), Vec::new()));
                    members.len() - 1
                }
            };
            let list = &mut members[i].1;
            if reset {
                list.clear();
            }
            list.extend(recs.into_iter().map(<[u8]>::to_vec));
            Ok(())
        })?;
        drop(reader);
        if let Some((member, live)) = replace {
            let encoded = live
                .iter()
                .map(|r| {
                    let mut v = Vec::new();
                    r.encode(&mut v);
                    v
                })
                .collect();
            match index.get(member) {
                Some(&i) => members[i].1 = encoded,
                None => members.push((member.to_owned(), encoded)),
            }
        }
        let mut framed = Vec::new();
        let mut payload = Vec::new();
        self.live.clear();
        for (member, recs) in &members {
            let before = framed.len();
            for rec in recs {
                payload.clear();
                Writer::new(&mut payload).u8(T_MEMBER).str(member);
                payload.extend_from_slice(rec);
                record::frame(&payload, &mut framed)?;
            }
            self.live
                .insert(member.clone(), (framed.len() - before) as u64);
        }
        self.file.rewrite(&framed)?;
        self.rewrites += 1;
        tracing::debug!(path = %path.display(), members = members.len(), bytes = framed.len(), "shared journal rewritten");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Finish;
    use crate::GroupCommit;
    use bytes::Bytes;

    fn finished(id: u64) -> JournalRecord {
        JournalRecord::Finished {
            id,
            finish: Finish::Approved { code: *b"00" },
        }
    }

    fn started(id: u64, len: usize) -> JournalRecord {
        JournalRecord::Started {
            id,
            tag: 7,
            batch: 1,
            stan: id as u32,
            info: crate::profile::TxnInfo {
                kind: crate::profile::TxnKind::Debit,
                foreign: false,
                txn_type: 0,
                amount: rust_decimal::Decimal::new(1234, 2),
                pan: "6222020000000001".into(),
            },
            message: Bytes::from(vec![b'x'; len]),
        }
    }

    /// Runs `f` with a group commit thread over the shared journal at `path`.
    fn with_group<F: std::future::Future<Output = ()>>(
        path: &Path,
        keys: Option<Arc<DataKeys>>,
        f: impl FnOnce(GroupCommit) -> F,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let j = SharedJournal::open_sealed(path, keys).unwrap();
        rt.block_on(f(GroupCommit::spawn_shared(Box::new(j), "t")));
    }

    #[test]
    fn members_read_back_what_each_wrote_through_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journals");
        with_group(&path, None, |g| async move {
            let (a, b) = (g.member("A"), g.member("B"));
            let fa = a.append(vec![started(1, 10), finished(1)]);
            let fb = b.append(vec![started(1, 20)]);
            let fa2 = a.append(vec![started(2, 30)]);
            fa.await.unwrap();
            fb.await.unwrap();
            fa2.await.unwrap();
            assert!(g.fsyncs() >= 1 && g.fsyncs() <= 3);
        });
        let mut j = SharedJournal::open_sealed(&path, None).unwrap();
        assert_eq!(
            j.take("A").unwrap(),
            vec![started(1, 10), finished(1), started(2, 30)]
        );
        assert_eq!(j.take("B").unwrap(), vec![started(1, 20)]);
        assert_eq!(j.take("C"), None);
        assert_eq!(j.take("A"), None, "taken once");
    }

    #[test]
    fn a_snapshot_replaces_only_its_member_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journals");
        with_group(&path, None, |g| async move {
            let (a, b) = (g.member("A"), g.member("B"));
            a.append(vec![started(1, 10), finished(1)]).await.unwrap();
            b.append(vec![started(5, 10)]).await.unwrap();
            a.compact(vec![started(9, 3)]).await.unwrap();
            a.append(vec![finished(9)]).await.unwrap();
            b.compact(vec![]).await.unwrap();
        });
        let mut j = SharedJournal::open_sealed(&path, None).unwrap();
        assert_eq!(j.take("A").unwrap(), vec![started(9, 3), finished(9)]);
        assert_eq!(j.take("B").unwrap(), Vec::<JournalRecord>::new());
    }

    #[test]
    fn an_unsealed_handle_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journals");
        with_group(&path, None, |g| async move {
            assert!(g.append(vec![finished(1)]).await.is_err());
            assert!(g.compact(vec![]).await.is_err());
        });
        let j = SharedJournal::open_sealed(&path, None).unwrap();
        assert_eq!(j.untaken().count(), 0);
    }

    #[test]
    fn a_large_snapshot_rewrites_the_file_keeping_every_member() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journals");
        let keys = Some(Arc::new(DataKeys::new(&[7u8; 32]).unwrap()));
        let big: Vec<JournalRecord> = (0..40).map(|i| started(i, 2000)).collect();
        let live = big.clone();
        with_group(&path, keys.clone(), |g| async move {
            g.member("B").append(vec![started(1, 5)]).await.unwrap();
            g.member("A").append(vec![finished(3)]).await.unwrap();
            // 40 × 2 KB do not fit in one 64 KiB record: the file is rewritten.
            g.member("A").compact(live).await.unwrap();
            g.member("B").append(vec![finished(1)]).await.unwrap();
        });
        let mut j = SharedJournal::open_sealed(&path, keys).unwrap();
        assert_eq!(j.take("A").unwrap(), big);
        assert_eq!(j.take("B").unwrap(), vec![started(1, 5), finished(1)]);
    }

    #[test]
    fn a_torn_snapshot_leaves_the_members_earlier_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journals");
        with_group(&path, None, |g| async move {
            g.member("A").append(vec![started(1, 10)]).await.unwrap();
            g.member("A").compact(vec![]).await.unwrap();
        });
        // Cut the snapshot in half (a crash during its write).
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let mut j = SharedJournal::open_sealed(&path, None).unwrap();
        assert!(j.torn_tail().is_some());
        assert_eq!(j.take("A").unwrap(), vec![started(1, 10)]);
    }

    #[test]
    fn payload_parser_refuses_what_it_cannot_hold() {
        assert!(parse_payload(&[]).is_err());
        assert!(parse_payload(&[0x99]).is_err());
        // A snapshot claiming 2^32-1 records in a few bytes: refused, nothing reserved.
        let mut p = Vec::new();
        Writer::new(&mut p).u8(T_SNAPSHOT).str("A").u32(u32::MAX);
        assert!(parse_payload(&p).is_err());
        let mut p = Vec::new();
        Writer::new(&mut p)
            .u8(T_SNAPSHOT)
            .str("A")
            .u32(1)
            .bytes(b"zz");
        assert_eq!(
            parse_payload(&p).unwrap(),
            SharedPayload::Snapshot {
                member: "A",
                records: vec![&b"zz"[..]]
            }
        );
        let mut p = Vec::new();
        Writer::new(&mut p)
            .u8(T_SNAPSHOT)
            .str("A")
            .u32(1)
            .bytes(b"zz")
            .u8(0);
        assert!(parse_payload(&p).is_err(), "trailing bytes");
    }
}
