//! The host handler: idempotency, ordering, ledger, durability of the store.

mod common;
use common::*;
use isoswitch_codec::Message;
use isoswitch_reversal::*;
use rust_decimal::Decimal;

fn host() -> (ReversalProfile, ReversalHandler<MemoryStore>) {
    let p = ReversalProfile::cup_pos().unwrap();
    (
        p.clone(),
        ReversalHandler::new(p, MemoryStore::new(), HostConfig::default()),
    )
}

fn stamped(p: &ReversalProfile, cents: i64, stan: u32) -> Message {
    let mut m = sale(p, cents);
    p.stamp(&mut m, stan, 7).unwrap();
    m
}

fn approve(_: &Message, _: &TxnInfo) -> Decision {
    Decision::Approve { auth_code: None }
}

#[test]
fn duplicate_reversals_get_the_same_answer_and_one_ledger_effect() {
    let (p, mut h) = host();
    let o = stamped(&p, 5000, 10);
    assert_eq!(
        h.handle(&o, approve).unwrap().get(39).as_deref(),
        Some("00")
    );
    assert_eq!(h.ledger().card(PAN), Decimal::new(5000, 2));
    let rev = p.build_reversal(&o, ReversalReason::NoResponse).unwrap();
    let first = h.handle(&rev, approve).unwrap().to_bytes().unwrap();
    let mut rep = rev.clone();
    rep.set_mti(rev.mti().repeat_mti());
    for _ in 0..3 {
        let again = h.handle(&rep, approve).unwrap().to_bytes().unwrap();
        assert_eq!(again, first, "identical 0410");
        assert_eq!(h.handle(&rev, approve).unwrap().to_bytes().unwrap(), first);
    }
    assert_eq!(h.ledger().total(), Decimal::ZERO);
    assert_eq!(h.ledger().card(PAN), Decimal::ZERO);
    assert_eq!(h.stats().reversals, 1);
    assert_eq!(h.stats().repeats, 6);
}

#[test]
fn reversal_before_original_is_remembered_and_the_late_original_declined() {
    let (p, mut h) = host();
    let o = stamped(&p, 5000, 11);
    let rev = p.build_reversal(&o, ReversalReason::NoResponse).unwrap();
    assert_eq!(
        h.handle(&rev, approve).unwrap().get(39).as_deref(),
        Some("00")
    );
    let late = h.handle(&o, approve).unwrap();
    assert_eq!(late.get(39).as_deref(), Some("12"));
    assert_eq!(h.ledger().total(), Decimal::ZERO);
    // A repeat of the reversal still gets its first answer.
    assert_eq!(
        h.handle(&rev, approve).unwrap().get(39).as_deref(),
        Some("00")
    );
    assert_eq!(h.stats().late_originals, 1);
}

#[test]
fn declined_original_reversal_changes_nothing_amount_mismatch_is_64_reused_stan_is_94() {
    let (p, mut h) = host();
    let o = stamped(&p, 100, 12);
    let r = h.handle(&o, |_, _| Decision::Decline(*b"51")).unwrap();
    assert_eq!(r.get(39).as_deref(), Some("51"));
    let rev = p.build_reversal(&o, ReversalReason::NoResponse).unwrap();
    assert_eq!(
        h.handle(&rev, approve).unwrap().get(39).as_deref(),
        Some("00")
    );
    assert_eq!(h.ledger().total(), Decimal::ZERO);

    let o2 = stamped(&p, 100, 13);
    h.handle(&o2, approve).unwrap();
    let mut wrong = p.build_reversal(&o2, ReversalReason::NoResponse).unwrap();
    wrong.set(4, "000000000099").unwrap();
    assert_eq!(
        h.handle(&wrong, approve).unwrap().get(39).as_deref(),
        Some("64")
    );
    assert_eq!(h.ledger().total(), Decimal::new(100, 2));
    let again = stamped(&p, 999, 13);
    assert_eq!(
        h.handle(&again, approve).unwrap().get(39).as_deref(),
        Some("94")
    );
    // The right reversal still works after the refused one.
    let rev2 = p.build_reversal(&o2, ReversalReason::NoResponse).unwrap();
    assert_eq!(
        h.handle(&rev2, approve).unwrap().get(39).as_deref(),
        Some("00")
    );
    assert_eq!(h.ledger().total(), Decimal::ZERO);
}

#[test]
fn file_store_survives_reopen_and_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.store");
    let p = ReversalProfile::cup_pos().unwrap();
    {
        let mut h = ReversalHandler::new(
            p.clone(),
            FileStore::open(&path).unwrap(),
            HostConfig::default(),
        );
        h.handle(&stamped(&p, 100, 1), approve).unwrap();
        h.handle(&stamped(&p, 250, 2), approve).unwrap();
        let rev = p
            .build_reversal(&stamped(&p, 100, 1), ReversalReason::NoResponse)
            .unwrap();
        h.handle(&rev, approve).unwrap();
        assert_eq!(h.ledger().total(), Decimal::new(250, 2));
    }
    // A torn record at the end (a crash during a write) is dropped on open.
    let mut data = std::fs::read(&path).unwrap();
    data.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&path, &data).unwrap();
    let mut h = ReversalHandler::new(
        p.clone(),
        FileStore::open(&path).unwrap(),
        HostConfig::default(),
    );
    assert_eq!(h.ledger().total(), Decimal::new(250, 2));
    let rev = p
        .build_reversal(&stamped(&p, 100, 1), ReversalReason::NoResponse)
        .unwrap();
    h.handle(&rev, approve).unwrap();
    assert_eq!(
        h.ledger().total(),
        Decimal::new(250, 2),
        "repeat after restart: no second effect"
    );
    let mut fs = FileStore::open(&path).unwrap();
    fs.compact().unwrap();
    drop(fs);
    let fs = FileStore::open(&path).unwrap();
    assert_eq!(fs.ledger().total(), Decimal::new(250, 2));
    assert_eq!(
        fs.batch_totals("TERM0001", "MERCHANT0000001", 7)
            .domestic
            .debit_count,
        1
    );
}

#[test]
fn iso87_and_iso93_reversals_match_their_originals() {
    for p in [
        ReversalProfile::iso87_binary().unwrap(),
        ReversalProfile::iso93_ascii().unwrap(),
    ] {
        let mut h = ReversalHandler::new(p.clone(), MemoryStore::new(), HostConfig::default());
        let mti = if p.reversal_mti.as_u16() == 1420 {
            "1200"
        } else {
            "0200"
        };
        let mut o = Message::new(&p.dialect, mti.parse().unwrap());
        o.set(2, PAN).unwrap();
        o.set(3, "000000").unwrap();
        o.set(4, "000000004200").unwrap();
        o.set(11, "000321").unwrap();
        o.set(41, "TERM0001").unwrap();
        o.set(42, "MERCHANT0000001").unwrap();
        o.set(49, "840").unwrap();
        let resp = h.handle(&o, approve).unwrap();
        assert_eq!(p.response_code(&resp), Some(*b"00"), "{}", p.dialect.name());
        assert_eq!(h.ledger().total(), Decimal::new(4200, 2));
        let rev = p.build_reversal(&o, ReversalReason::NoResponse).unwrap();
        assert!(rev.has(90) || rev.has(56));
        let resp = h.handle(&rev, approve).unwrap();
        assert_eq!(Some(resp.mti()), rev.mti().response_mti());
        assert_eq!(p.response_code(&resp), Some(*b"00"));
        // A reused STAN is a duplicate in every dialect (94, or 913 in 1993).
        let dup = h.handle(&o, approve).unwrap();
        assert_eq!(p.response_code(&dup), Some(*b"94"));
        assert_eq!(h.ledger().total(), Decimal::ZERO, "{}", p.dialect.name());
    }
}

#[test]
fn file_store_with_deferred_sync_commits_on_write_and_syncs_through_a_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.store");
    let p = ReversalProfile::cup_pos().unwrap();
    let mut store = FileStore::open(&path).unwrap();
    store.set_sync_on_commit(false);
    let before = store.written();
    let handle = store.sync_handle().unwrap();
    let mut h = ReversalHandler::new(p.clone(), store, HostConfig::default());
    h.handle(&stamped(&p, 300, 1), approve).unwrap();
    assert!(h.store().written() > before, "the commit was written");
    std::thread::spawn(move || handle.sync())
        .join()
        .unwrap()
        .unwrap();
    h.store().sync().unwrap();
    drop(h);
    // Written without fsync is still in the file (what a killed process leaves).
    let fs = FileStore::open(&path).unwrap();
    assert_eq!(fs.ledger().total(), Decimal::new(300, 2));
}

#[test]
fn a_cancelling_original_is_one_record_and_counts_only_while_it_stands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.store");
    let p = ReversalProfile::cup_pos().unwrap();
    let sale_msg = stamped(&p, 100, 1);
    let sale_key = p.key_of(&sale_msg).unwrap();
    let void_msg = stamped(&p, 100, 2);
    let void_key = p.key_of(&void_msg).unwrap();
    let declined_msg = stamped(&p, 100, 3);
    {
        let mut h = ReversalHandler::new(
            p.clone(),
            FileStore::open(&path).unwrap(),
            HostConfig::default(),
        );
        h.handle(&sale_msg, approve).unwrap();
        // A declined canceller records no link.
        h.handle_original_cancelling(&declined_msg, Some(sale_key.clone()), |_, _| {
            Decision::Decline(*b"05")
        })
        .unwrap();
        assert!(!h.store().is_cancelled(&sale_key));
        assert_eq!(
            h.store()
                .get(&p.key_of(&declined_msg).unwrap())
                .and_then(|t| t.original.as_ref())
                .map(|o| o.cancels.is_some()),
            Some(false)
        );
        h.handle_original_cancelling(&void_msg, Some(sale_key.clone()), approve)
            .unwrap();
        assert!(h.store().is_cancelled(&sale_key));
        assert!(!h.store().is_cancelled(&void_key));
    }
    // Replayed from the file, and after compaction: the link is in the void's record.
    let mut fs = FileStore::open(&path).unwrap();
    assert!(fs.is_cancelled(&sale_key));
    fs.compact().unwrap();
    drop(fs);
    let mut h = ReversalHandler::new(
        p.clone(),
        FileStore::open(&path).unwrap(),
        HostConfig::default(),
    );
    assert!(h.store().is_cancelled(&sale_key));
    assert_eq!(
        h.store()
            .get(&void_key)
            .and_then(|t| t.original.as_ref())
            .and_then(|o| o.cancels.clone()),
        Some(sale_key.clone())
    );
    // The void reversed: the sale stands again.
    let rev = p
        .build_reversal(&void_msg, ReversalReason::NoResponse)
        .unwrap();
    h.handle(&rev, approve).unwrap();
    assert!(!h.store().is_cancelled(&sale_key));
    let mut mem = MemoryStore::new();
    for (k, v) in h.store().entries() {
        if let Some(o) = &v.original {
            mem.commit(StoreRecord::Original {
                key: k.clone(),
                state: o.clone(),
            })
            .unwrap();
        }
    }
    assert!(
        mem.is_cancelled(&sale_key),
        "without the reversal it stands"
    );
}
