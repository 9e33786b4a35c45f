//! The PostgreSQL store against a real server (a throwaway cluster per test, or
//! `ISOSWITCH_PG_URL`): two `PgStore`s on one database play two nodes; and no clear
//! PAN at rest in any table (the scan tests at the end).

use bytes::Bytes;
use isoswitch_pg::testing::{self, pan_needles, scan_database, TestCluster};
use isoswitch_pg::{PgConfig, PgStore};
use isoswitch_reversal::durable::Store;
use isoswitch_reversal::seal::DataKeys;
use isoswitch_reversal::store::{OriginalState, ReversalState};
use isoswitch_reversal::{
    Decimal, Finish, GroupCommit, IdempotencyStore, Journal, JournalRecord, ReversalError,
    ReversalReason, SessionStore, StoreRecord, TxnInfo, TxnKey, TxnKind, UpstreamSave,
};
use isoswitch_session::counters::{BatchNumber, Counters};
use isoswitch_session::{SealedSnapshot, TerminalId};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The data keys every node of these tests seals under.
fn keys() -> Arc<DataKeys> {
    Arc::new(DataKeys::new(&[0x5A; 32]).expect("data key"))
}

fn node(url: &str, name: &str) -> PgStore {
    node_keyed(url, name, keys())
}

fn node_keyed(url: &str, name: &str, keys: Arc<DataKeys>) -> PgStore {
    let mut c = PgConfig::new(url);
    c.node = name.into();
    c.lease = Duration::from_secs(30);
    c.block = 50;
    PgStore::open(c, keys).expect("open the store")
}

fn info(amount: i64) -> TxnInfo {
    TxnInfo {
        kind: TxnKind::Debit,
        foreign: false,
        txn_type: 22,
        amount: Decimal::new(amount, 2),
        pan: PAN.into(),
    }
}

fn started(id: u64) -> JournalRecord {
    JournalRecord::Started {
        id,
        tag: 1000 + id,
        batch: 1,
        stan: id as u32,
        info: info(100),
        message: Bytes::from(format!("original {id}").into_bytes()),
    }
}

fn reverse(id: u64) -> JournalRecord {
    JournalRecord::Finished {
        id,
        finish: Finish::Reverse {
            reason: ReversalReason::NoResponse,
        },
    }
}

fn key(stan: u32) -> TxnKey {
    TxnKey {
        terminal: "TERM0001".into(),
        merchant: "MERCHANT0000001".into(),
        batch: 1,
        stan,
    }
}

fn approved(stan: u32, amount: i64) -> StoreRecord {
    StoreRecord::Original {
        key: key(stan),
        state: OriginalState::decided(&info(amount), *b"00", true),
    }
}

fn reversal(stan: u32, amount: i64) -> StoreRecord {
    StoreRecord::Reversal {
        key: key(stan),
        pan: PAN.into(),
        state: ReversalState {
            code: *b"00",
            amount: Decimal::new(amount, 2),
            txn_type: 22,
            effect: -Decimal::new(amount, 2),
        },
    }
}

#[test]
fn migrations_are_versioned_and_concurrent_starters_are_safe() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("migrate").expect("db");
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || node(&url, &format!("n{i}")))
        })
        .collect();
    let stores: Vec<PgStore> = handles
        .into_iter()
        .map(|h| h.join().expect("start"))
        .collect();
    // Every starter saw the schema; each version is recorded once.
    let n = stores[0].ledger_total("nothing").expect("query");
    assert_eq!(n, Decimal::ZERO);
    drop(stores);
    let again = node(&url, "n9");
    assert!(again.describe().contains("node n9"));
}

#[test]
fn parts_survive_a_restart_and_are_seen_by_another_node() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("restart").expect("db");
    {
        let a = node(&url, "a");
        let mut j = a.journal("switch").expect("journal");
        assert!(j.load().expect("load").is_empty());
        j.append(&[started(1), reverse(1)]).expect("append");
        j.append(&[JournalRecord::ReversalAcked {
            id: 1,
            code: *b"00",
        }])
        .expect("append");
        // The same part twice in one process is refused, as the data directory does.
        assert!(matches!(
            a.journal("switch"),
            Err(ReversalError::PartInUse { .. })
        ));
        let mut s = a.idempotency("host").expect("idem");
        s.commit(approved(5, 500)).expect("commit");
        let mut c = a.counters("link").expect("counters");
        c.next_stan().expect("stan");
        c.set_batch(BatchNumber::new(3).expect("b")).expect("batch");
    }
    // "Restart" node a: a new store under the same node name takes its journal back.
    let a = node(&url, "a");
    let mut j = a.journal("switch").expect("journal");
    let recs = j.load().expect("load");
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0], started(1));
    let s = a.idempotency("host").expect("idem");
    assert!(s.get(&key(5)).is_some_and(|t| t.standing()));
    assert_eq!(s.ledger().total(), Decimal::new(500, 2));
    let c = a.counters("link").expect("counters");
    assert_eq!(c.state().batch.get(), 3);
    // Another node, while a holds its lease, cannot open a's journal under a's name,
    // but shares the idempotency store, counters and sessions.
    let b = node(&url, "b");
    assert!(b
        .journal("switch")
        .expect("b's own journal")
        .load()
        .expect("load")
        .is_empty());
    let sb = b.idempotency("host").expect("idem");
    assert_eq!(sb.ledger().total(), Decimal::new(500, 2));
    assert_eq!(b.counters("link").expect("c").state().batch.get(), 3);
}

#[test]
fn group_commit_writes_each_batch_in_one_transaction_in_order() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("group").expect("db");
    let a = node(&url, "a");
    let j = a.journal("switch").expect("journal");
    let gc = GroupCommit::spawn(j);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..64u64 {
            let gc = gc.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10u64 {
                    let id = w * 100 + i + 1;
                    gc.append(vec![started(id)]).await.expect("append");
                    gc.append(vec![JournalRecord::Finished {
                        id,
                        finish: Finish::Approved { code: *b"00" },
                    }])
                    .await
                    .expect("append");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
    assert_eq!(gc.records(), 64 * 10 * 2);
    assert!(
        gc.fsyncs() < gc.records(),
        "appends that arrive together share a transaction ({} for {} records)",
        gc.fsyncs(),
        gc.records()
    );
    drop(gc);
    // Reopened: every record, each Started before its Finished.
    std::thread::sleep(Duration::from_millis(200));
    let mut j = node(&url, "a").journal("switch").expect("journal");
    let recs = j.load().expect("load");
    assert_eq!(recs.len(), 64 * 10 * 2);
    let mut seen = HashSet::new();
    for r in &recs {
        match r {
            JournalRecord::Started { id, .. } => assert!(seen.insert(*id)),
            JournalRecord::Finished { id, .. } => {
                assert!(seen.contains(id), "{id} finished before it started")
            }
            other => panic!("{other:?}"),
        }
    }
}

/// An append is written only while its node holds the journal: once another node has
/// retired a dead node's journal, that node's late append is refused (`LeaseLost`) and
/// writes nothing, neither records nor pending work; a live node's appends go in
/// whole, pending rows made and taken out by the append that journals the change (a
/// reversal to send has one; an original in flight has none while its node lives).
#[test]
fn an_append_without_the_lease_writes_nothing() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("lease").expect("db");
    let a = node(&url, "a");
    let b = node(&url, "b");
    let mut ja = a.journal("switch").expect("a");
    // One append: 6 and 7 started, 6 approved, 8 started and reversed.
    ja.append(&[
        started(6),
        started(7),
        JournalRecord::Finished {
            id: 6,
            finish: Finish::Approved { code: *b"00" },
        },
        started(8),
        reverse(8),
    ])
    .expect("append");
    let pending = |url: &str| count(url, "SELECT count(*) FROM pending_reversal");
    assert_eq!(pending(&url), 1, "8 to reverse (7 is in flight: no row)");
    ja.append(&[
        JournalRecord::Finished {
            id: 7,
            finish: Finish::Approved { code: *b"00" },
        },
        JournalRecord::ReversalAcked {
            id: 8,
            code: *b"00",
        },
    ])
    .expect("append");
    assert_eq!(pending(&url), 0);
    let records = count(&url, "SELECT count(*) FROM journal_record");
    assert_eq!(records, 7);
    // a dies; b retires its journal (nothing pending).
    a.expire_leases().expect("expire");
    let dead = b.dead_journals("switch", 10).expect("dead");
    assert_eq!(dead.len(), 1);
    assert!(b.retire_journal(&dead[0].0).expect("retire"));
    // a's late append is refused and leaves nothing behind.
    let e = ja.append(&[started(9)]).expect_err("no lease");
    assert!(e.to_string().contains("lease"), "{e}");
    assert_eq!(count(&url, "SELECT count(*) FROM journal_record"), 0);
    assert_eq!(pending(&url), 0);
}

/// A live node's original in flight has no pending row; once the node's lease has run
/// out, the first node that looks lists it (in doubt: reversed as `Recovered`) and claims
/// it, and the dead journal is not retired before. An advice is pending from its start.
/// A node that was only slow and goes on appending clears the listing: what it starts
/// after is listed when its lease runs out again.
#[test]
fn a_dead_nodes_originals_in_flight_are_listed_once_its_lease_runs_out() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("listing").expect("db");
    let a = node(&url, "a");
    let b = node(&url, "b");
    let mut ja = a.journal("switch").expect("a");
    let _jb = b.journal("switch").expect("b");
    let advice = JournalRecord::Started {
        id: 2,
        tag: 1002,
        batch: 1,
        stan: 2,
        info: info(100),
        message: Bytes::from_static(b"0220 an advice"),
    };
    ja.append(&[started(1), advice]).expect("append");
    let pending = |url: &str| count(url, "SELECT count(*) FROM pending_reversal");
    assert_eq!(pending(&url), 1, "the advice only");
    assert_eq!(b.pending_tag("switch", 1002).expect("tag"), Some(true));
    assert_eq!(b.pending_tag("switch", 1001).expect("tag"), Some(false));
    // While a's lease holds, nothing is listed or claimed.
    assert!(b.claim_orphans("switch", 10).expect("claim").is_empty());
    assert_eq!(pending(&url), 1);
    a.expire_leases().expect("expire");
    // Retiring lists first: 1 is in doubt, so the journal stays.
    assert!(!b.retire_journal("switch@a").expect("retire"));
    assert_eq!(pending(&url), 2);
    let got = b.claim_orphans("switch", 10).expect("claim");
    let ids: Vec<(u64, ReversalReason)> = got.iter().map(|o| (o.id, o.reason)).collect();
    assert_eq!(
        ids,
        [
            (1, ReversalReason::Recovered),
            (2, ReversalReason::Recovered)
        ]
    );
    assert_eq!(&got[0].message[..], b"original 1");
    assert_eq!(got[0].tag, 1001);
    // Listed once: another look adds nothing.
    assert!(b.claim_orphans("switch", 10).expect("claim").is_empty());
    assert_eq!(pending(&url), 2);
    // a was only slow: its append renews its lease (the advice answered, 3 started).
    ja.append(&[
        JournalRecord::Finished {
            id: 2,
            finish: Finish::Approved { code: *b"00" },
        },
        started(3),
    ])
    .expect("append");
    assert_eq!(pending(&url), 1, "1, claimed by b");
    b.hand_over(&got[0]).expect("hand over");
    assert_eq!(pending(&url), 0);
    // a's lease runs out again: 3 is listed now, and nothing else.
    a.expire_leases().expect("expire");
    let got = b.claim_orphans("switch", 10).expect("claim");
    assert_eq!(got.iter().map(|o| o.id).collect::<Vec<_>>(), [3]);
    b.hand_over(&got[0]).expect("hand over");
    assert!(b.retire_journal("switch@a").expect("retire"));
    assert_eq!(count(&url, "SELECT count(*) FROM journal_record"), 0);
}

#[test]
fn a_node_built_for_an_older_schema_cannot_retire_a_journal_that_was_not_listed() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("oldretire").expect("db");
    let a = node(&url, "a");
    let b = node(&url, "b");
    let mut ja = a.journal("switch").expect("a");
    ja.append(&[started(1)]).expect("append");
    a.expire_leases().expect("expire");
    // Version 6's retirement, as a node built for it still running after a newer node
    // applied the schema: no pending row, lease run out, so it deletes the journal.
    let old_retire = "BEGIN;
        SELECT 1 FROM journal_part j
         WHERE j.part = 'switch@a' AND j.lease_until < now()
           AND NOT EXISTS (SELECT 1 FROM pending_reversal p WHERE p.part = 'switch@a')
         FOR UPDATE;
        DELETE FROM journal_record WHERE part = 'switch@a';
        DELETE FROM journal_part WHERE part = 'switch@a';
        COMMIT;";
    let refused = testing::execute(&url, old_retire).expect_err("refused by the schema");
    assert!(refused.contains("never listed"), "{refused}");
    assert_eq!(count(&url, "SELECT count(*) FROM journal_record"), 1);
    // The original it left in doubt is still reversed by a node that lists it.
    let got = b.claim_orphans("switch", 10).expect("claim");
    assert_eq!(got.iter().map(|o| o.id).collect::<Vec<_>>(), [1]);
    b.hand_over(&got[0]).expect("hand over");
    assert!(b.retire_journal("switch@a").expect("retire"));
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM journal_part WHERE part = 'switch@a'"
        ),
        0
    );
}

#[test]
fn a_part_that_cannot_be_read_does_not_keep_the_others_from_being_listed_or_finished() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("listskip").expect("db");
    // a seals under a data key b does not hold: b cannot read a's journal.
    let a = node_keyed(&url, "a", key_a());
    let c = node(&url, "c");
    let b = node(&url, "b");
    let mut ja = a.journal("switch").expect("a");
    let mut jc = c.journal("switch").expect("c");
    ja.append(&[started(1)]).expect("append");
    jc.append(&[started(5)]).expect("append");
    a.expire_leases().expect("expire");
    c.expire_leases().expect("expire");
    let got = b.claim_orphans("switch", 10).expect("claim");
    assert_eq!(
        got.iter().map(|o| o.id).collect::<Vec<_>>(),
        [5],
        "c's, after a's"
    );
    // Nor does a's keep c's journal from being read to be finished.
    let dead = b.dead_journals("switch", 10).expect("dead journals");
    let names: Vec<&str> = dead.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["switch@c"]);
    b.hand_over(&got[0]).expect("hand over");
    // a's stays unlisted, so it is neither claimed nor retired.
    assert!(b.claim_orphans("switch", 10).expect("claim").is_empty());
    assert!(b.retire_journal("switch@a").is_err());
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM journal_part WHERE in_doubt_listed"
        ),
        1
    );
    assert!(b.retire_journal("switch@c").expect("retire"));
}

#[test]
fn a_hand_over_waits_for_a_listing_in_progress_so_the_row_is_not_put_back() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("listrace").expect("db");
    let a = node(&url, "a");
    let b = node(&url, "b");
    let mut ja = a.journal("switch").expect("a");
    ja.append(&[started(1), reverse(1)]).expect("append");
    a.expire_leases().expect("expire");
    let got = b.claim_orphans("switch", 10).expect("claim");
    assert_eq!(got.iter().map(|o| o.id).collect::<Vec<_>>(), [1]);
    // Another node's listing of a's part, under way: the part's row locked, the records
    // read (no hand-over of 1 among them, so 1 is to be listed: here a copy of its row).
    let (locked_tx, locked) = std::sync::mpsc::channel::<()>();
    let (go_tx, go) = std::sync::mpsc::channel::<()>();
    let lister = {
        let url = url.clone();
        std::thread::spawn(move || {
            testing::with_client(&url, move |c| async move {
                let e = |e: tokio_postgres::Error| e.to_string();
                c.batch_execute(
                    "BEGIN;
                     SELECT 1 FROM journal_part WHERE part = 'switch@a' FOR UPDATE;
                     CREATE TEMP TABLE seen AS SELECT * FROM pending_reversal;",
                )
                .await
                .map_err(e)?;
                locked_tx.send(()).map_err(|e| e.to_string())?;
                go.recv().map_err(|e| e.to_string())?;
                c.batch_execute(
                    "INSERT INTO pending_reversal (part, txn, journal, tag, reason, message)
                     SELECT part, txn, journal, tag, reason, message FROM seen
                     ON CONFLICT (txn, part) DO NOTHING;
                     COMMIT;",
                )
                .await
                .map_err(e)
            })
        })
    };
    locked.recv().expect("locked");
    let handing = {
        let b = b.clone();
        let orphan = got[0].clone();
        std::thread::spawn(move || b.hand_over(&orphan))
    };
    // The hand-over waits for the listing (without the wait it would delete the row now
    // and the listing would put it back).
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !handing.is_finished(),
        "the hand-over waits for the listing"
    );
    go_tx.send(()).expect("go");
    lister.join().expect("lister").expect("listing");
    handing.join().expect("hand over").expect("handed over");
    assert_eq!(count(&url, "SELECT count(*) FROM pending_reversal"), 0);
    assert!(b.claim_orphans("switch", 10).expect("claim").is_empty());
}

#[test]
fn a_dead_nodes_pending_reversals_are_claimed_once_by_another_node() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("claim").expect("db");
    let a = node(&url, "a");
    let b = node(&url, "b");
    let c = node(&url, "c");
    let mut ja = a.journal("switch").expect("a");
    let _jb = b.journal("switch").expect("b");
    let _jc = c.journal("switch").expect("c");
    // Three reversals pending at a, one of them acknowledged before a dies.
    ja.append(&[started(1), started(2), started(3)])
        .expect("append");
    ja.append(&[reverse(1), reverse(2), reverse(3)])
        .expect("append");
    ja.append(&[JournalRecord::ReversalAcked {
        id: 2,
        code: *b"00",
    }])
    .expect("append");
    // One in doubt (started, no outcome) is reversed by whoever takes it over.
    ja.append(&[started(5)]).expect("append");
    // An approved one is no work for anyone.
    ja.append(&[
        started(4),
        JournalRecord::Finished {
            id: 4,
            finish: Finish::Approved { code: *b"00" },
        },
    ])
    .expect("append");
    // While a's lease holds, nothing is claimable.
    assert!(b.claim_orphans("switch", 10).expect("claim").is_empty());
    // a dies: its lease runs out.
    a.expire_leases().expect("expire");
    drop(ja);
    let got = b.claim_orphans("switch", 10).expect("claim");
    let ids: Vec<u64> = got.iter().map(|o| o.id).collect();
    assert_eq!(ids, vec![1, 3, 5]);
    assert_eq!(got[2].reason, ReversalReason::Recovered);
    assert_eq!(got[0].part, "switch@a");
    assert_eq!(got[0].tag, 1001);
    assert_eq!(got[0].reason, ReversalReason::NoResponse);
    assert_eq!(&got[0].message[..], b"original 1");
    // Claimed by b: c gets nothing, nor does b a second time.
    assert!(c.claim_orphans("switch", 10).expect("claim").is_empty());
    assert!(b.claim_orphans("switch", 10).expect("claim").is_empty());
    // b hands 1 over, then dies holding 3 and 5: c claims them once b's claim runs out.
    b.hand_over(&got[0]).expect("hand over");
    b.expire_leases().expect("expire b");
    let got_c = c.claim_orphans("switch", 10).expect("claim");
    assert_eq!(got_c.iter().map(|o| o.id).collect::<Vec<_>>(), vec![3, 5]);
    // b's late hand-over of 3 is refused: c owns it now; c's succeeds.
    assert!(matches!(
        b.hand_over(&got[1]),
        Err(ReversalError::WrongState { .. })
    ));
    for o in &got_c {
        c.hand_over(o).expect("hand over");
    }
    assert!(c.claim_orphans("switch", 10).expect("claim").is_empty());
    // Node a restarted under its name finds its reversals acknowledged (handed over).
    let a2 = node(&url, "a");
    let recs = a2.journal("switch").expect("a again").load().expect("load");
    let acked: Vec<(u64, [u8; 2])> = recs
        .iter()
        .filter_map(|r| match r {
            JournalRecord::ReversalAcked { id, code } => Some((*id, *code)),
            _ => None,
        })
        .collect();
    assert_eq!(
        acked,
        vec![(2, *b"00"), (1, *b"HO"), (3, *b"HO"), (5, *b"HO")]
    );
}

#[test]
fn compaction_keeps_pending_work_claimable() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("compact").expect("db");
    let a = node(&url, "a");
    let b = node(&url, "b");
    let mut ja = a.journal("switch").expect("a");
    ja.append(&[started(1), reverse(1), started(2), reverse(2)])
        .expect("append");
    ja.append(&[JournalRecord::ReversalAcked {
        id: 2,
        code: *b"00",
    }])
    .expect("append");
    ja.compact(&[started(1), reverse(1)]).expect("compact");
    a.expire_leases().expect("expire");
    let got = b.claim_orphans("switch", 10).expect("claim");
    assert_eq!(got.iter().map(|o| o.id).collect::<Vec<_>>(), vec![1]);
    // The lease is renewed by every append: an append after the journal was taken
    // over by a node of the same name elsewhere is refused.
    let a_again = node(&url, "a");
    drop(ja);
    let mut j2 = a_again.journal("switch").expect("a again");
    assert_eq!(j2.load().expect("load").len(), 2);
}

#[test]
fn the_same_decision_is_made_once_with_its_ledger_effect_once() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("idem").expect("db");
    let a = node(&url, "a");
    let b = node(&url, "b");
    let mut sa = a.idempotency("host").expect("a");
    let mut sb = b.idempotency("host").expect("b");
    sa.commit(approved(7, 1250)).expect("approve at a");
    // b has not seen it until it refreshes the key.
    assert!(sb.get(&key(7)).is_none());
    sb.refresh(&key(7)).expect("refresh");
    assert!(sb.get(&key(7)).is_some_and(|t| t.standing()));
    // Both nodes answer the reversal: one decision, one effect.
    sb.commit(reversal(7, 1250)).expect("reverse at b");
    match sa.commit(reversal(7, 1250)) {
        Err(ReversalError::DecidedElsewhere { key }) => assert!(key.contains("TERM0001")),
        other => panic!("{other:?}"),
    }
    // a now knows b's answer.
    assert!(sa.get(&key(7)).is_some_and(|t| t.reversal.is_some()));
    assert_eq!(a.ledger_total("host").expect("ledger"), Decimal::ZERO);
    // The same original twice is refused too.
    assert!(matches!(
        sb.commit(approved(7, 1250)),
        Err(ReversalError::DecidedElsewhere { .. })
    ));
    sa.commit(approved(8, 300)).expect("approve 8");
    assert_eq!(
        a.ledger_total("host").expect("ledger"),
        Decimal::new(300, 2)
    );
    // A node opened afterwards replays the same ledger the database holds.
    drop((sa, sb));
    let c = node(&url, "c");
    let sc = c.idempotency("host").expect("c");
    assert_eq!(sc.ledger().total(), Decimal::new(300, 2));
    assert!(sc.get(&key(7)).is_some_and(|t| !t.standing()));
}

#[test]
fn stan_blocks_never_overlap_between_nodes() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("stan").expect("db");
    let threads: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|n| {
            let url = url.clone();
            std::thread::spawn(move || {
                let s = node(&url, n);
                let mut c = s.counters("upstream").expect("counters");
                let stans: Vec<u32> = (0..2000)
                    .map(|_| c.next_stan().expect("stan").get())
                    .collect();
                let rrns: Vec<String> = (0..300)
                    .map(|_| c.next_rrn().expect("rrn").as_str().to_string())
                    .collect();
                (stans, rrns)
            })
        })
        .collect();
    let mut stans = HashSet::new();
    let mut rrns = HashSet::new();
    for t in threads {
        let (s, r) = t.join().expect("thread");
        for v in s {
            assert!(stans.insert(v), "STAN {v} handed out twice");
        }
        for v in r {
            assert!(rrns.insert(v.clone()), "RRN {v} handed out twice");
        }
    }
    assert_eq!(stans.len(), 6000);
    // The batch is shared.
    let a = node(&url, "a");
    let mut c = a.counters("upstream").expect("c");
    c.set_batch(BatchNumber::new(42).expect("b")).expect("set");
    drop(c);
    let mut d = node(&url, "d").counters("upstream").expect("c");
    assert_eq!(d.batch().get(), 42);
    // A wrap at 999999 ends the block there and goes on at 1.
    assert!(d.next_stan().expect("stan").get() > 6000);
}

fn sealed(tid: &str, generation: u64, fill: u8) -> SealedSnapshot {
    SealedSnapshot {
        terminal: TerminalId::new(tid, "MERCHANT0000001").expect("id"),
        generation,
        bytes: vec![fill; 80],
    }
}

#[test]
fn one_node_at_a_time_holds_the_upstream_sign_on_claim_and_a_dead_holders_claim_lapses() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("signon_claim").expect("db");
    let (a, b) = (node(&url, "a"), node(&url, "b"));
    let mut sa = a.sessions("switch").expect("a");
    let mut sb = b.sessions("switch").expect("b");
    let lease = Duration::from_millis(600);
    assert!(
        sa.claim_sign_on("host", lease).expect("claim"),
        "free: a takes it"
    );
    assert!(
        sa.claim_sign_on("host", lease).expect("claim"),
        "a holds it already"
    );
    assert!(
        !sb.claim_sign_on("host", lease).expect("claim"),
        "held by a"
    );
    // Another link of the same identity store is another claim.
    assert!(sb.claim_sign_on("host-2", lease).expect("claim"));
    // A release by a node that does not hold the claim changes nothing.
    sb.release_sign_on("host").expect("release");
    assert!(
        !sb.claim_sign_on("host", lease).expect("claim"),
        "still a's"
    );
    sa.release_sign_on("host").expect("release");
    assert!(
        sb.claim_sign_on("host", lease).expect("claim"),
        "released: b takes it"
    );
    // b dies holding it: the claim lapses with its lease.
    assert!(!sa.claim_sign_on("host", lease).expect("claim"));
    std::thread::sleep(lease + Duration::from_millis(300));
    assert!(
        sa.claim_sign_on("host", lease).expect("claim"),
        "lapsed: a takes it"
    );
    assert!(matches!(
        sa.claim_sign_on("../x", lease),
        Err(isoswitch_reversal::ReversalError::BadPartName { .. })
    ));
}

#[test]
fn sessions_are_shared_and_the_upstream_generation_is_compare_and_set() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("sessions").expect("db");
    let a = node(&url, "a");
    let b = node(&url, "b");
    let mut sa = a.sessions("switch").expect("a");
    let mut sb = b.sessions("switch").expect("b");
    sa.save(&[
        sealed("TERM0001", 1, 1),
        sealed("TERM0002", 1, 2),
        sealed("TERM0001", 2, 3),
    ])
    .expect("save");
    // Signed on at a, served at b.
    let t1 = sb
        .terminal(&TerminalId::new("TERM0001", "MERCHANT0000001").expect("id"))
        .expect("read")
        .expect("present");
    assert_eq!((t1.generation, t1.bytes[0]), (2, 3));
    assert_eq!(sb.terminals().expect("all").len(), 2);
    // An older snapshot does not replace a newer one.
    sb.save(&[sealed("TERM0001", 1, 9)]).expect("save");
    assert_eq!(
        sa.terminal(&TerminalId::new("TERM0001", "MERCHANT0000001").expect("id"))
            .expect("read")
            .expect("present")
            .generation,
        2
    );
    // Upstream: a signs on first, b's first save is stale and names a's generation.
    assert_eq!(
        sa.save_upstream("host", &sealed("SWITCH01", 1, 1), None)
            .expect("save"),
        UpstreamSave::Saved
    );
    assert_eq!(
        sb.save_upstream("host", &sealed("SWITCH01", 1, 2), None)
            .expect("save"),
        UpstreamSave::Stale { current: Some(1) }
    );
    assert_eq!(
        sb.upstream("host").expect("read").expect("present").bytes[0],
        1
    );
    assert_eq!(
        sb.save_upstream("host", &sealed("SWITCH01", 2, 2), Some(1))
            .expect("save"),
        UpstreamSave::Saved
    );
    assert_eq!(
        sa.save_upstream("host", &sealed("SWITCH01", 2, 1), Some(1))
            .expect("save"),
        UpstreamSave::Stale { current: Some(2) }
    );
    // Nothing in clear: the table holds what the caller sealed, nothing more.
    assert!(matches!(
        sa.save_upstream("../x", &sealed("SWITCH01", 3, 1), Some(2)),
        Err(ReversalError::BadPartName { .. })
    ));
}

/// Commits `rec`, retrying a few times while the pool replaces connections the server
/// dropped (a retry that finds its first attempt committed counts as done).
fn commit_soon(s: &mut impl IdempotencyStore, rec: StoreRecord) -> bool {
    for _ in 0..5 {
        if let Ok(()) | Err(ReversalError::DecidedElsewhere { .. }) = s.commit(rec.clone()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn a_database_that_goes_away_gives_an_error_in_bounded_time_then_recovers() {
    let pg = TestCluster::require();
    if !pg.is_local() {
        eprintln!("ISOSWITCH_PG_URL is set: the restart part needs a cluster of the harness's");
    }
    let url = pg.fresh_database("outage").expect("db");
    let mut cfg = PgConfig::new(&url);
    cfg.node = "a".into();
    cfg.timeout = Duration::from_secs(2);
    let a = PgStore::open(cfg, keys()).expect("open");
    let mut s = a.idempotency("host").expect("idem");
    s.commit(approved(1, 100)).expect("commit");
    if !pg.is_local() {
        return;
    }
    pg.stop().expect("stop");
    let t0 = Instant::now();
    match s.commit(approved(2, 100)) {
        Err(ReversalError::Database { op, .. }) => assert_eq!(op, "commit a decision"),
        other => panic!("{other:?}"),
    }
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "no hang: {:?}",
        t0.elapsed()
    );
    assert!(s.get(&key(2)).is_none(), "nothing applied on failure");
    pg.start_again().expect("start");
    // The pool reconnects: the next calls work (the first may meet a dead connection).
    assert!(
        commit_soon(&mut s, approved(2, 100)),
        "the store works again after the server came back"
    );
    assert_eq!(
        a.ledger_total("host").expect("ledger"),
        Decimal::new(200, 2)
    );
    pg.restart().expect("restart");
    assert!(
        commit_soon(&mut s, approved(3, 100)),
        "the store works again after pg_ctl restart"
    );
}

// ---- No clear PAN at rest: what the store writes is scanned, table by table and
// column by column, for the PAN's digits (ASCII, the last ten digits, packed BCD); a
// database written in clear by schema version 1 is sealed at start and still reads
// back; keys rotate.

/// The card of [`info`].
const PAN: &str = "6222020000000001";

fn key_a() -> Arc<DataKeys> {
    Arc::new(DataKeys::new(&[0xA1; 32]).expect("key"))
}

/// A started original carrying the PAN in its message.
fn started_pan(id: u64) -> JournalRecord {
    JournalRecord::Started {
        id,
        tag: 1000 + id,
        batch: 1,
        stan: id as u32,
        info: info(500),
        message: original(id),
    }
}

fn bcd(pan: &str) -> Vec<u8> {
    pan.as_bytes()
        .chunks(2)
        .map(|c| ((c[0] - b'0') << 4) | (c[1] - b'0'))
        .collect()
}

/// An "original" holding the PAN both ways a message carries it (iso87 ASCII, cup-pos
/// packed BCD).
fn original(id: u64) -> Bytes {
    let mut m = format!("0200 {id} {PAN} ").into_bytes();
    m.extend_from_slice(&bcd(PAN));
    Bytes::from(m)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn scan(url: &str) -> Vec<String> {
    scan_database(url, &pan_needles(PAN)).expect("scan")
}

fn count(url: &str, sql: &'static str) -> i64 {
    testing::with_client(url, move |c| async move {
        let r = c.query_one(sql, &[]).await.map_err(|e| e.to_string())?;
        Ok(r.get::<_, i64>(0))
    })
    .expect("count")
}

#[test]
fn the_scan_finds_a_planted_pan_in_text_bytea_and_bcd() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("plant").expect("db");
    assert!(scan(&url).is_empty(), "an empty database holds no PAN");
    testing::execute(
        &url,
        &format!(
            "CREATE TABLE planted (t text, b bytea);
             INSERT INTO planted VALUES ('card {PAN}', NULL), (NULL, '\\x{}'::bytea), (NULL, '\\x00{}ff'::bytea);",
            hex(PAN.as_bytes()),
            hex(&bcd(PAN)),
        ),
    )
    .expect("plant");
    let hits = scan(&url);
    let has = |s: &str| hits.iter().any(|h| h.contains(s));
    assert!(has("public.planted.t row 0: needle 0 as text"), "{hits:?}");
    assert!(has("public.planted.b row 1: needle 0 as bytes"), "{hits:?}");
    assert!(has("public.planted.b row 2: needle 2 as bytes"), "{hits:?}");
    // The hex text of packed BCD is the PAN's digits: found as text too.
    assert!(has("public.planted.b row 2: needle 0 as text"), "{hits:?}");
}

#[test]
fn the_store_keeps_no_pan_in_clear_in_any_table() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("nopan").expect("db");
    {
        let a = node_keyed(&url, "a", key_a());
        let mut j = a.journal("switch").expect("journal");
        j.append(&[started_pan(1), reverse(1), started_pan(2)])
            .expect("append");
        j.append(&[started_pan(3)]).expect("append");
        j.compact(&[started_pan(2), started_pan(3), reverse(3)])
            .expect("compact");
        let mut s = a.idempotency("host").expect("idem");
        s.commit(approved(1, 500)).expect("commit");
        s.commit(approved(2, 500)).expect("commit");
        // 3 to reverse; 2 is in flight (a row only once another node lists it).
        assert_eq!(a.pending("switch").expect("pending"), 1);
        a.expire_leases().expect("expire");
    }
    // Another node takes the dead node's reversals over (reads the sealed originals,
    // writes a sealed acknowledgement into its journal).
    let b = node_keyed(&url, "b", key_a());
    let got = b.claim_orphans("switch", 10).expect("claim");
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|o| o.message == original(o.id)));
    b.hand_over(&got[0]).expect("hand over");
    assert!(b.pending_report("switch").expect("report")[0].contains("mti"));
    // Every table, every column: not a digit of the PAN in clear.
    let hits = scan(&url);
    assert!(hits.is_empty(), "PAN in clear: {hits:?}");
    assert!(count(&url, "SELECT count(*) FROM journal_record") >= 3);
    assert_eq!(count(&url, "SELECT count(*) FROM host_ledger"), 1);
    // And it all reads back.
    let a = node_keyed(&url, "a", key_a());
    let recs = a.journal("switch").expect("journal").load().expect("load");
    assert_eq!(recs[..3], [started_pan(2), started_pan(3), reverse(3)]);
    assert_eq!(recs.len(), 4, "plus the hand-over's acknowledgement");
    let s = a.idempotency("host").expect("idem");
    assert!(s.get(&key(2)).is_some_and(|t| t.standing()));
    assert_eq!(
        a.ledger_total("host").expect("ledger"),
        Decimal::new(1000, 2)
    );
}

#[test]
fn a_clear_version_1_database_is_sealed_at_start_and_reads_back() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("v1").expect("db");
    assert_eq!(testing::migrate_to(&url, key_a(), 1).expect("v1"), 1);
    // What isoswitch-pg 1 wrote: clear payloads, the ledger by PAN.
    let enc = |r: &JournalRecord| {
        let mut v = Vec::new();
        r.encode(&mut v);
        hex(&v)
    };
    let mut decision = Vec::new();
    approved(5, 500).encode(&mut decision);
    testing::execute(
        &url,
        &format!(
            "INSERT INTO journal_part VALUES ('switch@old', 'switch', 'old', now() - interval '1 hour');
             INSERT INTO journal_record (part, payload) VALUES ('switch@old', '\\x{}'), ('switch@old', '\\x{}');
             INSERT INTO pending_reversal (part, txn, journal, tag, reason, message)
                 VALUES ('switch@old', 1, 'switch', 1001, {}, '\\x{}');
             INSERT INTO host_decision (part, terminal, merchant, batch, stan, kind, payload)
                 VALUES ('host', 'TERM0001', 'MERCHANT0000001', 1, 5, 1, '\\x{}');
             INSERT INTO host_ledger (part, pan, total) VALUES ('host', '{PAN}', 5.00);",
            enc(&started_pan(1)),
            enc(&reverse(1)),
            ReversalReason::NoResponse.to_u8(),
            hex(&original(1)),
            hex(&decision),
        ),
    )
    .expect("version 1 rows");
    let before = scan(&url);
    for table in [
        "journal_record.payload",
        "pending_reversal.message",
        "host_decision.payload",
        "host_ledger.pan",
    ] {
        assert!(
            before.iter().any(|h| h.contains(table)),
            "{table}: {before:?}"
        );
    }
    // A store of this version seals every clear row while migrating to version 2 (and
    // goes on to the newest).
    let b = node_keyed(&url, "b", key_a());
    let hits = scan(&url);
    assert!(hits.is_empty(), "PAN in clear after migration: {hits:?}");
    assert_eq!(
        count(&url, "SELECT max(version)::int8 FROM schema_version"),
        i64::from(isoswitch_pg::db::MIGRATIONS.last().expect("migrations").0)
    );
    // The migrated rows read back: the pending reversal, the decision, the ledger
    // (the migrated row's hash is the one new decisions on the card move).
    let got = b.claim_orphans("switch", 10).expect("claim");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message, original(1));
    b.hand_over(&got[0]).expect("hand over");
    let mut s = b.idempotency("host").expect("idem");
    assert!(s.get(&key(5)).is_some_and(|t| t.standing()));
    s.commit(approved(6, 500)).expect("commit");
    assert_eq!(
        b.ledger_total("host").expect("ledger"),
        Decimal::new(1000, 2)
    );
    assert_eq!(count(&url, "SELECT count(*) FROM host_ledger"), 1);
    drop(s);
    let old = node_keyed(&url, "old", key_a());
    let recs = old
        .journal("switch")
        .expect("journal")
        .load()
        .expect("load");
    assert_eq!(recs[..2], [started_pan(1), reverse(1)]);
    assert!(matches!(
        recs[2],
        JournalRecord::ReversalAcked { id: 1, .. }
    ));
    assert!(scan(&url).is_empty());
}

#[test]
fn keys_rotate_and_a_foreign_key_is_refused_with_a_clear_message() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("rotate").expect("db");
    {
        let a = node_keyed(&url, "a", key_a());
        let mut j = a.journal("switch").expect("journal");
        j.append(&[started_pan(1), started_pan(2), reverse(2)])
            .expect("append");
        a.idempotency("host")
            .expect("idem")
            .commit(approved(1, 500))
            .expect("commit");
    }
    // Without the key the rows were sealed under: refused, saying what to do.
    let other = Arc::new(DataKeys::new(&[0xC3; 32]).expect("key"));
    let c = node_keyed(&url, "a", other);
    let e = c.journal("switch").expect_err("foreign key").to_string();
    assert!(
        e.contains("journal_record") && e.contains("key-encryption key"),
        "{e}"
    );
    let e = c.idempotency("host").expect_err("foreign key").to_string();
    assert!(e.contains("host_decision"), "{e}");
    drop(c);
    // A new current key with the old one as previous reads everything, re-seals it…
    let rotated = Arc::new(
        DataKeys::new(&[0xB2; 32])
            .expect("key")
            .with_previous(&[0xA1; 32])
            .expect("previous"),
    );
    {
        let b = node_keyed(&url, "a", rotated);
        let recs = b.journal("switch").expect("journal").load().expect("load");
        assert_eq!(recs, [started_pan(1), started_pan(2), reverse(2)]);
        assert!(b.idempotency("host").expect("idem").get(&key(1)).is_some());
        // 3 journal records, 1 pending reversal, 1 decision.
        assert_eq!(b.reseal().expect("reseal"), 5);
        assert_eq!(b.reseal().expect("reseal"), 0);
    }
    // …after which the old key is not needed any more.
    let new_only = Arc::new(DataKeys::new(&[0xB2; 32]).expect("key"));
    let n = node_keyed(&url, "a", new_only);
    let recs = n.journal("switch").expect("journal").load().expect("load");
    assert_eq!(recs, [started_pan(1), started_pan(2), reverse(2)]);
    assert!(n.idempotency("host").expect("idem").get(&key(1)).is_some());
    assert!(scan(&url).is_empty());
}

/// A decision is made on what the deciding node knows of its key: one of the other kind
/// that another node recorded meanwhile makes it stale — not written, read back, to be
/// decided again (an original approved at one node while the terminal's reversal was
/// recorded at another must not leave both standing as if neither knew).
#[test]
fn a_decision_made_on_a_stale_view_of_its_key_is_refused_and_read_back() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("stale").expect("db");
    let a = node(&url, "a");
    let b = node(&url, "b");
    let mut sa = a.idempotency("host").expect("a");
    let mut sb = b.idempotency("host").expect("b");
    // b records a reversal that came first; a, not knowing it, approves the original.
    sb.commit(reversal(9, 500)).expect("reversal at b");
    match sa.commit(approved(9, 500)) {
        Err(ReversalError::DecidedElsewhere { .. }) => {}
        other => panic!("a stale approval was written: {other:?}"),
    }
    // a has read the reversal back; the refused approval moved no money (the ledger
    // holds the reversal record's own effect only).
    assert!(sa
        .get(&key(9))
        .is_some_and(|t| t.reversal.is_some() && t.original.is_none()));
    assert_eq!(
        a.ledger_total("host").expect("ledger"),
        Decimal::new(-500, 2)
    );
    // Decided again on what is stored: now written.
    sa.commit(approved(9, 500))
        .expect("approval once the reversal is known");
    assert!(sa.get(&key(9)).is_some_and(|t| t.original.is_some()));
}

/// Flushes `s`'s deferred decisions with `flush` and asks what became of the one
/// written between `since` and `upto`.
fn kept_after_flush(
    s: &mut impl IdempotencyStore,
    flush: &Arc<dyn isoswitch_reversal::Durability>,
    since: u64,
) -> Result<(), ReversalError> {
    let upto = s.written();
    flush.make_durable().expect("flush");
    s.kept(since, upto)
}

#[test]
fn deferred_decisions_are_written_as_one_group_and_a_stale_group_is_refused_whole() {
    let pg = TestCluster::require();
    let url = pg.fresh_database("groups").expect("db");
    let a = node(&url, "a");
    let b = node(&url, "b");
    let mut sa = a.idempotency("host").expect("a");
    let mut sb = b.idempotency("host").expect("b");
    let flush = sa.defer_sync().expect("a database store defers");
    // Three decisions queued: applied to a's view at once, in the database only
    // after the flush (one transaction).
    let since = sa.written();
    for stan in 1..=3 {
        sa.commit(approved(stan, 100)).expect("queued");
    }
    assert_eq!(sa.written(), since + 3);
    assert!(sa.get(&key(2)).is_some_and(|t| t.standing()));
    assert_eq!(count(&url, "SELECT count(*) FROM host_decision"), 0);
    kept_after_flush(&mut sa, &flush, since).expect("kept");
    assert_eq!(count(&url, "SELECT count(*) FROM host_decision"), 3);
    assert_eq!(
        a.ledger_total("host").expect("ledger"),
        Decimal::new(300, 2)
    );
    // Nothing queued: a flush writes nothing and every position is kept.
    flush.make_durable().expect("empty flush");
    sa.kept(0, sa.written()).expect("still kept");

    // b reverses STAN 4 first; a, not knowing it, approves STAN 4 and 5 in one group:
    // the group is refused whole (5 is not written either), both are reported.
    sb.commit(reversal(4, 100)).expect("reversal at b");
    let since = sa.written();
    sa.commit(approved(4, 100)).expect("queued 4");
    let mid = sa.written();
    sa.commit(approved(5, 100)).expect("queued 5");
    let upto = sa.written();
    flush.make_durable().expect("a refusal is no flush error");
    assert!(matches!(
        sa.kept(since, mid),
        Err(ReversalError::DecidedElsewhere { .. })
    ));
    assert!(matches!(
        sa.kept(mid, upto),
        Err(ReversalError::DecidedElsewhere { .. })
    ));
    // Reported once: a second ask finds nothing.
    sa.kept(since, upto).expect("reported already");
    assert_eq!(count(&url, "SELECT count(*) FROM host_decision"), 4);
    assert_eq!(
        a.ledger_total("host").expect("ledger"),
        Decimal::new(200, 2)
    );
    // Before the next decision a's view is read again: b's reversal is in it, the
    // refused approvals are not.
    sa.refresh(&key(4)).expect("read again");
    assert!(sa
        .get(&key(4))
        .is_some_and(|t| t.reversal.is_some() && t.original.is_none()));
    assert!(sa.get(&key(5)).is_none());
    // Decided again on what is stored: kept.
    let since = sa.written();
    sa.commit(approved(4, 100)).expect("queued 4 again");
    sa.commit(approved(5, 100)).expect("queued 5 again");
    kept_after_flush(&mut sa, &flush, since).expect("kept now");
    // 4 approved after its reversal moves nothing; 5 moves 1.00.
    assert_eq!(
        a.ledger_total("host").expect("ledger"),
        Decimal::new(300, 2)
    );
    assert_eq!(sa.ledger().total(), Decimal::new(300, 2));
    // A node opened afterwards replays the same state.
    drop((sa, sb));
    let c = node(&url, "c");
    let sc = c.idempotency("host").expect("c");
    assert_eq!(sc.ledger().total(), Decimal::new(300, 2));
    assert!(sc.get(&key(5)).is_some_and(|t| t.standing()));
}
