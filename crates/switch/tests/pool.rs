//! Link pools ([`isoswitch_switch::pool`]) against in-memory hosts with the clock paused:
//! each host signs the switch on with zone keys of its own, checks the PIN block under
//! its own PIK and the MAC under its own MAK, and keeps its own ledger.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{rig_pool, FakeHost, Rig};
use isoswitch_switch::Strategy;
use rust_decimal::Decimal;

/// How many requests of `mti` each host acted on.
fn per_host(r: &Rig, mti: u16) -> Vec<usize> {
    r.hosts.iter().map(|h| h.seen_stans(mti).len()).collect()
}

/// A sale through the switch; its DE 39.
async fn sale(r: &mut Rig, amount: u64) -> String {
    let (bytes, _) = r.sale(amount);
    let reply = r.send(bytes).await.expect("an answer");
    Rig::code(&reply)
}

#[tokio::test(start_paused = true)]
async fn failover_uses_the_first_live_link_then_the_next_and_goes_back() {
    let mut r = rig_pool(vec![FakeHost::new(), FakeHost::new()], Strategy::Failover).await;
    r.sign_on().await;
    let pool = r.pool.clone().unwrap();
    // Each link signed on by itself: zone keys of its own.
    let kcv = |i: usize| {
        let keys = pool.link(i).unwrap().ring().current().unwrap();
        keys.mak.kcv().to_string()
    };
    assert_ne!(kcv(0), kcv(1), "each host issued its own MAK");

    assert_eq!(sale(&mut r, 1000).await, "00");
    assert_eq!(sale(&mut r, 1000).await, "00");
    assert_eq!(per_host(&r, 200), [2, 0]);
    // The first host's link goes down: the next live one takes the traffic, with the
    // PIN block translated to its PIK (it declines 55 otherwise) and MACed under its MAK.
    r.hosts[0].down.store(true, Ordering::Release);
    assert_eq!(sale(&mut r, 2000).await, "00");
    assert_eq!(per_host(&r, 200), [2, 1]);
    // Back: failover returns to the first.
    r.hosts[0].revive();
    assert_eq!(sale(&mut r, 3000).await, "00");
    assert_eq!(per_host(&r, 200), [3, 1]);
    assert_eq!(r.hosts[0].ledger_total(), Decimal::new(5000, 2));
    assert_eq!(r.hosts[1].ledger_total(), Decimal::new(2000, 2));
    // Every link down: 91 to the terminal, nothing sent.
    r.hosts[0].down.store(true, Ordering::Release);
    r.hosts[1].down.store(true, Ordering::Release);
    assert_eq!(sale(&mut r, 4000).await, "91");
    assert_eq!(per_host(&r, 200), [3, 1]);
    assert!(pool.ready().is_err());
}

#[tokio::test(start_paused = true)]
async fn round_robin_spreads_the_traffic_over_the_live_links() {
    let hosts = vec![FakeHost::new(), FakeHost::new(), FakeHost::new()];
    let mut r = rig_pool(hosts, Strategy::RoundRobin).await;
    r.sign_on().await;
    for _ in 0..6 {
        assert_eq!(sale(&mut r, 1000).await, "00");
    }
    assert_eq!(per_host(&r, 200), [2, 2, 2]);
    r.hosts[1].down.store(true, Ordering::Release);
    for _ in 0..4 {
        assert_eq!(sale(&mut r, 1000).await, "00");
    }
    assert_eq!(per_host(&r, 200), [4, 2, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_link_that_is_not_signed_on_gets_nothing() {
    let refusing = FakeHost::new();
    refusing.refuse_sign_on.store(true, Ordering::Release);
    let mut r = rig_pool(vec![refusing, FakeHost::new()], Strategy::RoundRobin).await;
    r.sign_on().await;
    let pool = r.pool.clone().unwrap();
    assert!(!pool.is_live(0), "connected but not signed on");
    assert!(pool.ready().is_ok());
    for _ in 0..4 {
        assert_eq!(sale(&mut r, 1000).await, "00");
    }
    assert_eq!(per_host(&r, 200), [0, 4]);
    assert!(r.hosts[0].seen.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn in_doubt_on_a_dead_link_is_reversed_through_a_live_one_exactly_once() {
    let mut r = rig_pool(vec![FakeHost::new(), FakeHost::new()], Strategy::Failover).await;
    r.sign_on().await;
    let pool = r.pool.clone().unwrap();
    // The first host approves the sale, then dies before its answer leaves.
    r.hosts[0]
        .faults
        .die_after_acting
        .store(1, Ordering::Release);
    assert_eq!(sale(&mut r, 5000).await, "98");
    assert_eq!(r.hosts[0].ledger_total(), Decimal::new(5000, 2));
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Reversed through the live link, once; the survivor never saw the original: it
    // acknowledges without a ledger effect.
    let through_live = per_host(&r, 400)[1] + per_host(&r, 401)[1];
    assert_eq!(
        through_live, 1,
        "exactly one reversal through the live link"
    );
    assert_eq!(r.hosts[1].ledger_total(), Decimal::ZERO);
    // Traffic continues on the survivor.
    assert_eq!(sale(&mut r, 1000).await, "00");
    assert_eq!(r.hosts[1].ledger_total(), Decimal::new(1000, 2));
    // The dead host holds the approval: the reversal is owed to it and waits.
    assert_eq!(pool.owed_reversals(), 1);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(per_host(&r, 400)[0] + per_host(&r, 401)[0], 0);
    // It comes back: the owed reversal reaches it, and its ledger is even again.
    r.hosts[0].revive();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(per_host(&r, 400)[0] + per_host(&r, 401)[0], 1);
    assert_eq!(r.hosts[0].ledger_total(), Decimal::ZERO);
    assert_eq!(pool.owed_reversals(), 0);
    assert_eq!(
        per_host(&r, 400)[1] + per_host(&r, 401)[1],
        1,
        "still one through the live link"
    );
    let status = r.switch.driver().status().await.unwrap();
    assert_eq!(status.pending_reversals, 0);
}
