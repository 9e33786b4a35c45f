//! The data directory: every part survives a reopen (restart) and a compaction, the
//! lock keeps a second process out, and every file kind handles damage the same way —
//! truncation, garbage appended, flipped bytes, huge values: either the valid prefix
//! (torn tail cut and reported) or `ReversalError::Corrupt` naming the file and offset.

use bytes::Bytes;
use isoswitch_reversal::datadir::{DataDir, DataDirConfig};
use isoswitch_reversal::durable::{SessionStore, Store, UpstreamSave};
use isoswitch_reversal::record::{self, RecordIter, Writer, MAGIC};
use isoswitch_reversal::store::OriginalState;
use isoswitch_reversal::{
    IdempotencyStore, Journal, JournalRecord, ReversalError, StoreRecord, TxnInfo, TxnKey, TxnKind,
};
use isoswitch_session::counters::Counters;
use isoswitch_session::crypto::Key;
use isoswitch_session::{Kek, SealedSnapshot, TerminalId, TerminalSnapshot};
use rust_decimal::Decimal;
use std::path::{Path, PathBuf};

fn key(stan: u32) -> TxnKey {
    TxnKey {
        terminal: "TERM0001".into(),
        merchant: "MERCHANT0000001".into(),
        batch: 1,
        stan,
    }
}

fn original(stan: u32, cents: i64) -> StoreRecord {
    StoreRecord::Original {
        key: key(stan),
        state: OriginalState {
            txn_type: 0,
            kind: TxnKind::Debit,
            foreign: false,
            pan: "6222020000000001".into(),
            amount: Decimal::new(cents, 2),
            code: *b"00",
            approved: true,
            cancels: None,
            upstream: None,
        },
    }
}

fn started(id: u64) -> JournalRecord {
    JournalRecord::Started {
        id,
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
        tag: id,
    }
}

fn kek(b: u8) -> Kek {
    Kek::new(&Key::aes(&[b; 32]).expect("aes")).expect("kek")
}

fn tid(n: u32) -> TerminalId {
    TerminalId::new(&format!("TERM{n:04}"), "MERCHANT0000001").expect("id")
}

fn sealed(n: u32) -> SealedSnapshot {
    TerminalSnapshot {
        terminal: tid(n),
        batch: isoswitch_session::counters::BatchNumber::new(n.max(1)).expect("batch"),
        generation: u64::from(n),
        keys: None,
    }
    .seal(&kek(1))
    .expect("seal")
}

/// One kind of part: how to fill it with three records (one record each), and what a
/// reopen shows (a number that grows with the records read).
struct Kind {
    ext: &'static str,
    fill: fn(&DataDir),
    state: fn(&DataDir) -> Result<u64, ReversalError>,
    /// The state after reading the first `k` records.
    after: fn(u64) -> u64,
    /// A CRC-valid payload with a value out of range.
    huge: fn() -> Vec<u8>,
}

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            ext: "journal",
            fill: |d| {
                let mut j = d.journal("p").expect("journal");
                for i in 1..=3 {
                    j.append(&[started(i)]).expect("append");
                }
            },
            state: |d| Ok(d.journal("p")?.load()?.len() as u64),
            after: |k| k,
            huge: || {
                // A Started record whose message claims 4 GiB.
                let mut p = Vec::new();
                Writer::new(&mut p)
                    .u8(2)
                    .u64(9)
                    .u32(1)
                    .u32(9)
                    .u8(1)
                    .u8(0)
                    .u8(0)
                    .decimal(Decimal::ONE)
                    .str("6222020000000001")
                    .u32(u32::MAX);
                p
            },
        },
        Kind {
            ext: "store",
            fill: |d| {
                let mut s = d.idempotency("p").expect("store");
                for i in 1..=3 {
                    s.commit(original(i, 100)).expect("commit");
                }
            },
            state: |d| {
                let s = d.idempotency("p")?;
                assert_eq!(
                    s.ledger().total(),
                    Decimal::new(100 * s.entries().count() as i64, 2)
                );
                Ok(s.entries().count() as u64)
            },
            after: |k| k,
            huge: || {
                // An original whose amount has scale 255 and the largest mantissa.
                let mut r = Vec::new();
                let mut w = Writer::new(&mut r);
                w.u8(1)
                    .str("TERM0001")
                    .str("MERCHANT0000001")
                    .u32(1)
                    .u32(78)
                    .u8(0)
                    .u8(1)
                    .u8(0)
                    .str("6222020000000001");
                r.extend_from_slice(&i128::MAX.to_le_bytes());
                r.push(255);
                r.extend_from_slice(b"001");
                r
            },
        },
        Kind {
            ext: "counters",
            fill: |d| {
                // Lease 1: every STAN is one record.
                let mut c = d.counters("p").expect("counters");
                for _ in 0..3 {
                    c.next_stan().expect("stan");
                }
            },
            state: |d| Ok(u64::from(d.counters("p")?.state().next_stan.get())),
            // Record i leases STAN i+1..; resuming after k records starts at k+1.
            after: |k| k + 1,
            huge: || {
                let mut p = Vec::new();
                Writer::new(&mut p).u8(1).u32(4_000_000_000).u32(1).u64(1);
                p
            },
        },
        Kind {
            ext: "sessions",
            fill: |d| {
                let mut s = d.sessions("p").expect("sessions");
                for i in 1..=3 {
                    s.save(&[sealed(i)]).expect("save");
                }
            },
            state: |d| Ok(d.sessions("p")?.terminals()?.len() as u64),
            after: |k| k,
            huge: || {
                let mut p = Vec::new();
                Writer::new(&mut p)
                    .u8(1)
                    .str("TERM0009")
                    .str("MERCHANT0000001")
                    .u64(1)
                    .u32(u32::MAX);
                p
            },
        },
    ]
}

fn open(dir: &Path) -> DataDir {
    DataDir::open_with(
        dir,
        DataDirConfig {
            counter_lease: 1,
            ..DataDirConfig::default()
        },
    )
    .expect("open")
}

/// The file, its bytes, and the offsets where its records start and end.
fn image(dir: &Path, kind: &Kind) -> (PathBuf, Vec<u8>, Vec<usize>) {
    let path = dir.join(format!("p.{}", kind.ext));
    let full = std::fs::read(&path).expect("read");
    let mut it = RecordIter::new(&full[MAGIC.len()..]);
    let mut bounds = vec![MAGIC.len()];
    while let Some(Ok(_)) = it.next() {
        bounds.push(MAGIC.len() + it.valid_len());
    }
    assert_eq!(bounds.len(), 4, "{}: three records", kind.ext);
    (path, full, bounds)
}

/// Writes `data`, reopens, and returns the state and the torn tails reported.
fn reopen_with(
    dir: &Path,
    kind: &Kind,
    path: &Path,
    data: &[u8],
) -> (Result<u64, ReversalError>, usize) {
    std::fs::write(path, data).expect("write");
    let d = open(dir);
    let r = (kind.state)(&d);
    (r, d.torn_tails().len())
}

#[test]
fn every_file_kind_cuts_torn_tails_and_reports_damage_with_file_and_offset() {
    for kind in kinds() {
        let dir = tempfile::tempdir().expect("dir");
        let (path, full, bounds) = {
            let d = open(dir.path());
            (kind.fill)(&d);
            drop(d);
            image(dir.path(), &kind)
        };
        let ext = kind.ext;
        assert_eq!(
            (kind.state)(&open(dir.path())).expect("state"),
            (kind.after)(3)
        );
        // Reading compacts the counters file: restore the three-record image each time.

        // Truncation anywhere: the valid prefix, a torn tail reported unless the cut
        // is on a record boundary.
        for cut in MAGIC.len()..full.len() {
            let (r, torn) = reopen_with(dir.path(), &kind, &path, &full[..cut]);
            let k = bounds.iter().filter(|&&b| b <= cut).count() as u64 - 1;
            assert_eq!(r.expect("prefix"), (kind.after)(k), "{ext} cut {cut}");
            assert_eq!(torn > 0, !bounds.contains(&cut), "{ext} cut {cut}");
        }

        // Garbage appended: all records, the garbage cut and reported.
        let mut g = full.clone();
        g.extend_from_slice(b"\xde\xad\xbe\xef not a record");
        let (r, torn) = reopen_with(dir.path(), &kind, &path, &g);
        assert_eq!(r.expect("garbage"), (kind.after)(3), "{ext}");
        assert_eq!(torn, 1, "{ext}");

        // A huge announced length at the end: torn, nothing allocated.
        let mut h = full.clone();
        h.extend_from_slice(&u32::MAX.to_le_bytes());
        h.extend_from_slice(&[0; 4]);
        h.extend_from_slice(&[0xAB; 32]);
        let (r, torn) = reopen_with(dir.path(), &kind, &path, &h);
        assert_eq!(r.expect("huge len"), (kind.after)(3), "{ext}");
        assert_eq!(torn, 1, "{ext}");

        // A flipped byte in the last record: torn tail, the first two kept.
        let mut f = full.clone();
        let last = f.len() - 1;
        f[last] ^= 0x01;
        let (r, torn) = reopen_with(dir.path(), &kind, &path, &f);
        assert_eq!(r.expect("last flipped"), (kind.after)(2), "{ext}");
        assert_eq!(torn, 1, "{ext}");

        // A flipped byte in a middle record (header or payload): damage before valid
        // records is Corrupt at that record's offset, and the file is left alone.
        for at in [bounds[1], bounds[1] + 4, bounds[1] + 9, bounds[2] - 1] {
            let mut m = full.clone();
            m[at] ^= 0x10;
            let (r, _) = reopen_with(dir.path(), &kind, &path, &m);
            match r {
                Err(ReversalError::Corrupt {
                    path: p, offset, ..
                }) => {
                    assert_eq!(p, path, "{ext}");
                    assert_eq!(offset, bounds[1] as u64, "{ext} flip at {at}");
                }
                other => panic!("{ext} flip at {at}: {other:?}"),
            }
            assert_eq!(std::fs::read(&path).expect("read"), m, "{ext}: untouched");
        }

        // A CRC-valid record with a value out of range, between valid ones: Corrupt
        // at its offset (never a panic, never a huge allocation).
        let mut v = full[..bounds[2]].to_vec();
        record::frame(&(kind.huge)(), &mut v).expect("frame");
        v.extend_from_slice(&full[bounds[2]..]);
        let (r, _) = reopen_with(dir.path(), &kind, &path, &v);
        match r {
            Err(ReversalError::Corrupt {
                path: p, offset, ..
            }) => {
                assert_eq!(p, path, "{ext}");
                assert_eq!(offset, bounds[2] as u64, "{ext}");
            }
            other => panic!("{ext} out-of-range value: {other:?}"),
        }

        // Not our format at all.
        let (r, _) = reopen_with(dir.path(), &kind, &path, b"something else entirely");
        assert!(
            matches!(r, Err(ReversalError::BadMagic { .. })),
            "{ext}: {r:?}"
        );
    }
}

#[test]
fn restart_reopens_every_part_with_the_same_state_and_compaction_keeps_it() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let d = DataDir::open(dir.path()).expect("open");
        let mut j = d.journal("switch").expect("j");
        j.append(&[started(1), started(2)]).expect("append");
        let mut s = d.idempotency("host").expect("s");
        s.commit(original(1, 250)).expect("commit");
        s.commit(original(2, 750)).expect("commit");
        let mut c = d.counters("upstream").expect("c");
        for _ in 0..5 {
            c.next_stan().expect("stan");
        }
        c.set_batch(isoswitch_session::counters::BatchNumber::new(9).expect("b"))
            .expect("batch");
        let mut ss = d.sessions("host").expect("ss");
        ss.save(&[sealed(1), sealed(2)]).expect("save");
        ss.save(&[sealed(1)]).expect("save again");
        assert_eq!(
            ss.save_upstream("up", &sealed(5), None).expect("up"),
            UpstreamSave::Saved
        );
        // Dropped without any close: a SIGKILL leaves the same.
    }
    let check = |d: &DataDir, stan_after: u32| {
        let mut j = d.journal("switch").expect("j");
        assert_eq!(j.load().expect("load"), vec![started(1), started(2)]);
        let s = d.idempotency("host").expect("s");
        assert_eq!(s.ledger().total(), Decimal::new(1000, 2));
        assert!(s.get(&key(2)).is_some());
        let c = d.counters("upstream").expect("c");
        assert_eq!(c.state().batch.get(), 9);
        // Lease of 1000: the restart resumes after the leased block.
        assert_eq!(c.state().next_stan.get(), stan_after);
        let ss = d.sessions("host").expect("ss");
        let mut ids: Vec<_> = ss
            .terminals()
            .expect("t")
            .into_iter()
            .map(|s| s.terminal)
            .collect();
        ids.sort();
        assert_eq!(ids, vec![tid(1), tid(2)]);
        let up = ss.upstream("up").expect("up").expect("some");
        assert_eq!(up.generation, 5);
        assert_eq!(
            ss.terminal(&tid(2))
                .expect("t")
                .expect("some")
                .open(&kek(1))
                .expect("open")
                .batch
                .get(),
            2
        );
    };
    let d = DataDir::open(dir.path()).expect("reopen");
    check(&d, 1001);
    assert!(d.torn_tails().is_empty());
    // Compaction of every part keeps the state.
    {
        let mut j = d.journal("switch").expect("j");
        let live = j.load().expect("load");
        j.compact(&live).expect("compact");
        d.idempotency("host")
            .expect("s")
            .compact()
            .expect("compact");
        d.sessions("host").expect("ss").compact().expect("compact");
        d.counters("upstream")
            .expect("c")
            .compact()
            .expect("compact");
    }
    drop(d);
    let d = DataDir::open(dir.path()).expect("reopen");
    check(&d, 1001);
}

#[test]
fn the_lock_keeps_a_second_opener_out_until_every_part_is_gone() {
    let dir = tempfile::tempdir().expect("dir");
    let d = DataDir::open(dir.path()).expect("open");
    let j = d.journal("switch").expect("journal");
    match DataDir::open(dir.path()) {
        Err(ReversalError::Locked { path, lock }) => {
            assert_eq!(path, dir.path());
            assert_eq!(lock, dir.path().join("LOCK"));
        }
        other => panic!("{other:?}"),
    }
    let msg = DataDir::open(dir.path()).expect_err("locked").to_string();
    assert!(msg.contains("in use by another process"), "{msg}");
    drop(d);
    // The part still holds the directory.
    assert!(matches!(
        DataDir::open(dir.path()),
        Err(ReversalError::Locked { .. })
    ));
    drop(j);
    let d = DataDir::open(dir.path()).expect("free again");
    drop(d);
}

#[test]
fn a_part_has_one_owner_and_names_are_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let d = DataDir::open(dir.path()).expect("open");
    let c = d.counters("upstream").expect("counters");
    assert!(matches!(
        d.counters("upstream"),
        Err(ReversalError::PartInUse {
            kind: "counters",
            ..
        })
    ));
    // The same name of another kind is another part.
    let _j = d.journal("upstream").expect("journal");
    drop(c);
    d.counters("upstream").expect("released on drop");
    for bad in ["", "../etc", "a/b", ".x"] {
        assert!(matches!(
            d.journal(bad),
            Err(ReversalError::BadPartName { .. })
        ));
    }
    assert!(d.describe().contains(&dir.path().display().to_string()));
}

#[test]
fn upstream_snapshots_are_compare_and_set_on_the_generation() {
    let dir = tempfile::tempdir().expect("dir");
    let d = DataDir::open(dir.path()).expect("open");
    let mut s = d.sessions("switch").expect("s");
    assert_eq!(s.upstream("up").expect("up"), None);
    assert_eq!(
        s.save_upstream("up", &sealed(1), None).expect("save"),
        UpstreamSave::Saved
    );
    // A node that signed on under generation 0 (nothing stored) is stale now.
    assert_eq!(
        s.save_upstream("up", &sealed(2), None).expect("save"),
        UpstreamSave::Stale { current: Some(1) }
    );
    assert_eq!(
        s.save_upstream("up", &sealed(2), Some(1)).expect("save"),
        UpstreamSave::Saved
    );
    assert!(matches!(
        s.save_upstream("../x", &sealed(3), Some(2)),
        Err(ReversalError::BadPartName { .. })
    ));
    // Wrong KEK: the store hands back what it has; opening it is a typed error.
    let got = s.upstream("up").expect("up").expect("some");
    assert!(matches!(
        got.open(&kek(2)),
        Err(isoswitch_session::SessionError::SnapshotAuth { .. })
    ));
}

#[test]
fn counters_leases_are_one_write_per_block_across_restarts() {
    let dir = tempfile::tempdir().expect("dir");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        let d = DataDir::open_with(
            dir.path(),
            DataDirConfig {
                counter_lease: 50,
                ..DataDirConfig::default()
            },
        )
        .expect("o");
        let mut c = d.counters("upstream").expect("c");
        for _ in 0..70 {
            let s = c.next_stan().expect("stan").get();
            assert!(seen.insert(s), "STAN {s} handed out twice");
            assert!(c.next_rrn().is_ok());
        }
    }
    assert_eq!(seen.len(), 350);
    // Each run took two leases of 50: the next one starts at 5 × 100 + 1.
    let d = DataDir::open_with(
        dir.path(),
        DataDirConfig {
            counter_lease: 50,
            ..DataDirConfig::default()
        },
    )
    .expect("o");
    assert_eq!(
        d.counters("upstream").expect("c").state().next_stan.get(),
        501
    );
}

#[test]
fn a_ledger_overflow_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("dir");
    let huge = |stan| match original(stan, 0) {
        StoreRecord::Original { key, mut state } => {
            state.amount = Decimal::MAX;
            StoreRecord::Original { key, state }
        }
        other => other,
    };
    {
        let d = DataDir::open(dir.path()).expect("open");
        let mut s = d.idempotency("host").expect("s");
        s.commit(huge(1)).expect("the largest amount once");
        let len = s.written();
        assert!(matches!(
            s.commit(huge(2)),
            Err(ReversalError::BadRecord { .. })
        ));
        assert_eq!(s.written(), len, "nothing written");
        assert_eq!(s.ledger().total(), Decimal::MAX);
        assert!(s.get(&key(2)).is_none());
    }
    let d = DataDir::open(dir.path()).expect("reopen");
    let s = d.idempotency("host").expect("replays");
    assert_eq!(s.ledger().total(), Decimal::MAX);
}

/// The data directory at `path`, once the journal thread of a part opened before has
/// ended (it releases the directory after its last handle is dropped, on its own time).
async fn open_when_released(path: &Path) -> DataDir {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match DataDir::open(path) {
            Err(ReversalError::Locked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            r => return r.unwrap(),
        }
    }
}

/// A shared journal part: members written through one group commit thread come back
/// after a reopen; a member's journal file of its own (written before it joined) is moved
/// in once and removed, and a left-over file of a member already moved is removed too.
#[tokio::test]
async fn shared_journal_part_adopts_old_per_member_journals() {
    let dir = tempfile::tempdir().unwrap();
    {
        // An older run: terminal A had a journal file of its own.
        let data = DataDir::open(dir.path()).unwrap();
        let mut old = data.journal("A").unwrap();
        old.append(&[started(1), started(2)]).unwrap();
    }
    let old_path = dir.path().join("A.journal");
    assert!(old_path.exists());
    {
        let data = DataDir::open(dir.path()).unwrap();
        let mut shared = data.shared_journal("terminals").unwrap();
        let (ra, rb) = (shared.take("A"), shared.take("B"));
        assert_eq!((ra.is_some(), rb.is_some()), (false, false));
        let group = isoswitch_reversal::GroupCommit::spawn_shared(shared, "terminals");
        let a = data
            .adopt_journal("A", ra, &group.member("A"))
            .await
            .unwrap();
        assert_eq!(a, vec![started(1), started(2)]);
        assert!(!old_path.exists(), "moved in and removed");
        let b = data
            .adopt_journal("B", rb, &group.member("B"))
            .await
            .unwrap();
        assert!(b.is_empty());
        group.member("A").append(vec![started(3)]).await.unwrap();
        group.member("B").append(vec![started(9)]).await.unwrap();
    }
    // A crash between moving A in and removing its old file: the file is left over.
    {
        let data = open_when_released(dir.path()).await;
        data.journal("A").unwrap().append(&[started(77)]).unwrap();
    }
    let data = DataDir::open(dir.path()).unwrap();
    let mut shared = data.shared_journal("terminals").unwrap();
    let (ra, rb) = (shared.take("A"), shared.take("B"));
    let group = isoswitch_reversal::GroupCommit::spawn_shared(shared, "terminals");
    let a = data
        .adopt_journal("A", ra, &group.member("A"))
        .await
        .unwrap();
    assert_eq!(
        a,
        vec![started(1), started(2), started(3)],
        "the shared journal wins"
    );
    assert!(!old_path.exists(), "left-over file removed");
    let b = data
        .adopt_journal("B", rb, &group.member("B"))
        .await
        .unwrap();
    assert_eq!(b, vec![started(9)]);
    // The part is claimed while the thread holds it.
    assert!(data.shared_journal("terminals").is_err());
}

/// A snapshot of a terminal at generation `g` (keys not needed for the store's rule).
fn sealed_at(n: u32, g: u64) -> SealedSnapshot {
    TerminalSnapshot {
        terminal: tid(n),
        batch: isoswitch_session::counters::BatchNumber::new(1).expect("batch"),
        generation: g,
        keys: None,
    }
    .seal(&kek(1))
    .expect("seal")
}

/// Every store keeps a terminal's newer generation: an older snapshot saved after it
/// (a node's stale copy) changes nothing, across a reopen too; the same generation or
/// a newer one replaces it.
#[test]
fn a_session_store_never_replaces_a_newer_generation() {
    fn check(s: &mut impl SessionStore) {
        s.save(&[sealed_at(1, 2)]).expect("save");
        s.save(&[sealed_at(1, 1), sealed_at(2, 5)]).expect("save");
        assert_eq!(
            s.terminal(&tid(1)).expect("read").map(|x| x.generation),
            Some(2),
            "an older generation replaced a newer one"
        );
        assert_eq!(
            s.terminal(&tid(2)).expect("read").map(|x| x.generation),
            Some(5)
        );
        // In one group: the later of two snapshots of one terminal is checked against
        // the earlier.
        s.save(&[sealed_at(1, 4), sealed_at(1, 3)]).expect("save");
        assert_eq!(
            s.terminal(&tid(1)).expect("read").map(|x| x.generation),
            Some(4)
        );
        s.save(&[sealed_at(1, 4)]).expect("same generation");
        assert_eq!(
            s.terminal(&tid(1)).expect("read").map(|x| x.generation),
            Some(4)
        );
    }
    let dir = tempfile::tempdir().expect("dir");
    {
        let d = DataDir::open(dir.path()).expect("open");
        check(&mut d.sessions("p").expect("sessions"));
    }
    let d = DataDir::open(dir.path()).expect("reopen");
    let s = d.sessions("p").expect("sessions");
    assert_eq!(
        s.terminal(&tid(1)).expect("read").map(|x| x.generation),
        Some(4)
    );
    assert_eq!(
        s.terminal(&tid(2)).expect("read").map(|x| x.generation),
        Some(5)
    );
    let m = isoswitch_reversal::MemoryDurable::new();
    check(&mut m.sessions("p").expect("sessions"));
}
