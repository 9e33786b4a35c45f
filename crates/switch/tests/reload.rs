//! The swappable terminal table (`Switch::reload_terminals`) and the answer a draining
//! switch gives (`Switch::refusal`), against the in-memory host with the clock paused.

mod common;

use std::time::Instant;

use common::{hex, local, rig, terminal_id, Rig, TMK};
use isoswitch_codec::Message;
use isoswitch_session::counters::MemoryCounters;
use isoswitch_session::crypto::Key;
use isoswitch_session::{Inbound, MemoryKeyStore, TerminalConfig, TerminalId, TerminalSession};
use isoswitch_switch::TerminalReload;

const OTHER_TMK: &str = "0123456789ABCDEFFEDCBA9876543210";

fn table(entries: &[(TerminalId, &str)]) -> MemoryKeyStore {
    let mut k = MemoryKeyStore::new();
    for (id, tmk) in entries {
        k.insert(*id, Key::tdes(&hex(tmk)).unwrap()).unwrap();
    }
    k
}

fn other_id() -> TerminalId {
    TerminalId::new("T0000002", "M00000000000002").unwrap()
}

fn code_of(r: &Rig, b: &bytes::Bytes) -> String {
    Message::decode(&r.terminal.profile().dialect, b.clone())
        .unwrap()
        .get(39)
        .unwrap_or_default()
}

fn fresh_terminal(r: &Rig, tmk: &str) -> TerminalSession<MemoryCounters> {
    TerminalSession::new(
        r.terminal.profile().clone(),
        TerminalConfig::new(terminal_id()),
        Key::tdes(&hex(tmk)).unwrap(),
        MemoryCounters::new(),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_removed_terminal_is_refused_97_and_a_new_one_signs_on() {
    let mut r = rig().await;
    r.sign_on().await;
    let (sale, _) = r.sale(1000);
    let ok = r.send(sale).await.unwrap();
    assert_eq!(Rig::code(&ok), "00");

    // The terminal leaves the table: its next request (signed on or not) is 97.
    let summary = r
        .switch
        .reload_terminals(table(&[(other_id(), OTHER_TMK)]))
        .unwrap();
    assert_eq!(
        summary,
        TerminalReload {
            total: 1,
            added: 1,
            removed: 1,
            changed: 0
        }
    );
    let (sale, _) = r.sale(1000);
    let reply = r.switch.handle(sale).await.unwrap().unwrap();
    assert_eq!(code_of(&r, &reply.bytes), "97");
    let again = r.terminal.sign_on(Instant::now(), local());
    if let Ok(req) = again {
        let reply = r.switch.handle(req).await.unwrap().unwrap();
        assert_eq!(code_of(&r, &reply.bytes), "97");
    }

    // Back in the table: it signs on and is served again.
    let summary = r
        .switch
        .reload_terminals(table(&[(terminal_id(), TMK)]))
        .unwrap();
    assert_eq!((summary.added, summary.removed), (1, 1));
    let mut t = fresh_terminal(&r, TMK);
    let req = t.sign_on(Instant::now(), local()).unwrap();
    let reply = r.switch.handle(req).await.unwrap().unwrap();
    assert!(matches!(
        t.handle_message(Instant::now(), reply.bytes).unwrap(),
        Inbound::SignedOn { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_changed_master_key_applies_at_the_next_sign_on() {
    let mut r = rig().await;
    r.sign_on().await;
    let summary = r
        .switch
        .reload_terminals(table(&[(terminal_id(), OTHER_TMK)]))
        .unwrap();
    assert_eq!(summary.changed, 1);
    // The working keys issued under the old master key stay valid until then.
    let (sale, _) = r.sale(1000);
    let ok = r.send(sale).await.unwrap();
    assert_eq!(Rig::code(&ok), "00");
    // A sign-on now issues keys under the new master key: a terminal holding the new key
    // opens them, one holding the old key does not.
    let mut old = fresh_terminal(&r, TMK);
    let req = old.sign_on(Instant::now(), local()).unwrap();
    let reply = r.switch.handle(req).await.unwrap().unwrap();
    assert!(!matches!(
        old.handle_message(Instant::now(), reply.bytes),
        Ok(Inbound::SignedOn { .. })
    ));
    let mut new = fresh_terminal(&r, OTHER_TMK);
    let req = new.sign_on(Instant::now(), local()).unwrap();
    let reply = r.switch.handle(req).await.unwrap().unwrap();
    assert!(matches!(
        new.handle_message(Instant::now(), reply.bytes).unwrap(),
        Inbound::SignedOn { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_refusal_carries_the_code_under_the_terminals_mac_and_skips_advices_and_reversals() {
    let mut r = rig().await;
    r.sign_on().await;
    let (sale, _) = r.sale(1000);
    let msg = Message::decode(&r.terminal.profile().dialect, sale.clone()).unwrap();
    let refused = r.switch.refusal(&msg, "91").expect("an answer");
    match r.terminal.handle_message(Instant::now(), refused).unwrap() {
        Inbound::Verified(m) => assert_eq!(Rig::code(&m), "91"),
        other => panic!("the refusal does not verify: {other:?}"),
    }
    assert!(
        r.host.seen.lock().unwrap().is_empty(),
        "nothing went upstream"
    );
    let (advice, _) = r.financial(220, "200000", "25", 500, None);
    let advice = Message::decode(&r.terminal.profile().dialect, advice).unwrap();
    assert!(r.switch.refusal(&advice, "91").is_none());
    // A terminal reversal is never answered so: any 0410 acknowledges it at the terminal.
    let mut reversal = msg.clone();
    reversal.set_mti("0400".parse().unwrap());
    assert!(r.switch.refusal(&reversal, "91").is_none());
}
