//! Sessions survive a restart: a host's terminal sessions and a switch's upstream link
//! are sealed into the data directory's session store, the process "dies" (everything
//! dropped), and after reopening the directory the next MACed request of a terminal is
//! accepted and answered without a new sign-on. Built with `TerminalSession` and
//! `HostSession` back to back, as `crates/session/tests/back_to_back.rs` does.

use std::time::Instant;

use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime};
use isoswitch_codec::Message;
use isoswitch_reversal::datadir::DataDir;
use isoswitch_reversal::durable::{SessionStore, Store, UpstreamSave};
use isoswitch_reversal::{
    restore_host, restore_link, save_host_changes, save_link_changes, Decision,
    HostConfig as ReversalHostConfig, IdempotencyStore, ReversalError, ReversalHandler,
    ReversalProfile,
};
use isoswitch_session::counters::Counters;
use isoswitch_session::crypto::Key;
use isoswitch_session::{
    HostConfig, HostOutcome, HostSession, Inbound, Kek, MemoryKeyStore, RejectReason, SessionError,
    SessionProfile, TerminalConfig, TerminalId, TerminalSession, TerminalState,
};

const DIALECTS: [&str; 2] = ["cup-pos", "iso87-binary"];

fn local() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2024, 3, 5)
        .and_then(|d| d.and_hms_opt(9, 30, 0))
        .expect("date")
}

fn id() -> TerminalId {
    TerminalId::new("TERM0001", "MERCHANT0000001").expect("id")
}

fn tmk() -> Key {
    Key::tdes(&[
        0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32,
        0x10,
    ])
    .expect("tmk")
}

fn kek(b: u8) -> Kek {
    Kek::new(&Key::aes(&[b; 32]).expect("aes")).expect("kek")
}

fn host(profile: &SessionProfile) -> HostSession {
    let mut keys = MemoryKeyStore::new();
    keys.insert(id(), tmk()).expect("register");
    HostSession::new(profile.clone(), HostConfig::default(), keys).expect("host")
}

/// A terminal whose counters live in the data directory (`name.counters`).
fn terminal<C: Counters>(profile: &SessionProfile, counters: C) -> TerminalSession<C> {
    TerminalSession::new(profile.clone(), TerminalConfig::new(id()), tmk(), counters)
        .expect("terminal")
}

fn sale(profile: &SessionProfile, batch: String) -> Message {
    let mut m = Message::new(&profile.dialect, "0200".parse().expect("mti"));
    m.set(2, "6225881234567890").expect("2");
    m.set(3, "000000").expect("3");
    m.set(4, "000000001000").expect("4");
    m.set(22, "021").expect("22");
    m.set(25, "00").expect("25");
    m.set(49, "156").expect("49");
    if profile.dialect.name() == "cup-pos" {
        m.set(14, "2512").expect("14");
        m.set(60, format!("22{batch}000")).expect("60");
    } else {
        m.set(7, "0305093000").expect("7");
    }
    m
}

/// Signs the terminal on at the host; stores both sides' snapshots as a switch would.
fn sign_on<C: Counters>(
    term: &mut TerminalSession<C>,
    host: &mut HostSession,
    now: Instant,
) -> Bytes {
    let req = term.sign_on(now, local()).expect("sign-on");
    let HostOutcome::Replied { reply, .. } = host.handle_request(local(), req).expect("host")
    else {
        panic!("sign-on not answered")
    };
    assert!(matches!(
        term.handle_message(now, reply.clone()).expect("0810"),
        Inbound::SignedOn { .. }
    ));
    reply
}

/// One MACed sale: terminal seals, host admits (no 77/A0/94) and answers, terminal
/// verifies the response's MAC.
fn exchange<C: Counters>(term: &mut TerminalSession<C>, host: &mut HostSession, now: Instant) {
    let m = sale(term.profile(), term.batch().to_string());
    let sealed = term.seal_request(now, m).expect("seal");
    let outcome = host
        .handle_request(local(), sealed.bytes.clone())
        .expect("host");
    let HostOutcome::Accepted(acc) = outcome else {
        panic!("not accepted after restart: {outcome:?}")
    };
    let mut resp = Message::response_to(&acc.message).expect("response");
    resp.set(39, "00").expect("39");
    if term.profile().dialect.name() == "cup-pos" {
        resp.set(12, "093001").expect("12");
        resp.set(13, "0305").expect("13");
    }
    let reply = host.seal_response(&mut resp).expect("seal response");
    match term.handle_message(now, reply).expect("0210") {
        Inbound::Verified(msg) => assert_eq!(msg.get(39).as_deref(), Some("00")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_restored_host_accepts_the_next_maced_request_without_a_sign_on() {
    for name in DIALECTS {
        let profile = SessionProfile::builtin(name).expect("profile");
        let dir = tempfile::tempdir().expect("dir");
        let now = Instant::now();
        let mac_kcv;
        let stan_before;
        {
            // The host process: sessions in `host.sessions`.
            let data = DataDir::open(dir.path()).expect("open");
            let mut sessions = data.sessions("host").expect("sessions");
            let mut h = host(&profile);
            // The terminal (same directory for the test; its counters are durable).
            let mut t = terminal(&profile, data.counters("terminal").expect("counters"));
            sign_on(&mut t, &mut h, now);
            exchange(&mut t, &mut h, now);
            // The host stores what changed, sealed under its KEK.
            let saved = save_host_changes(&mut h, &mut sessions, &kek(7)).expect("save");
            assert_eq!(saved, 1, "{name}: one sign-on, one snapshot");
            assert!(h.poll_snapshot().is_none());
            mac_kcv = *h.working_keys(&id()).expect("keys").mak().kcv();
            stan_before = t.counters().state().next_stan;
            // (No key reaches the file in clear: `snapshot::tests` checks the sealed
            // bytes; the store only ever sees sealed snapshots.)
            drop(sessions);
            // Process killed: everything dropped, nothing closed — except that the
            // terminal keeps its session (it did not restart).
            let snapshot = t.export();
            drop(t);
            drop(h);
            drop(data);

            // The host restarts on the same data.
            let data = DataDir::open(dir.path()).expect("reopen");
            let sessions = data.sessions("host").expect("sessions");
            let mut h = host(&profile);
            assert!(!h.is_signed_on(&id()));
            let report = restore_host(&mut h, &sessions, &kek(7)).expect("restore");
            assert_eq!((report.restored, report.signed_on), (1, 1), "{name}");
            assert!(h.is_signed_on(&id()), "{name}");
            assert_eq!(
                h.working_keys(&id()).expect("keys").mak().kcv(),
                &mac_kcv,
                "{name}"
            );
            // The terminal, still running, sends its next MACed request: answered 00.
            let mut t = terminal(&profile, data.counters("terminal").expect("counters"));
            t.restore(snapshot).expect("terminal keeps its session");
            assert!(t.counters().state().next_stan >= stan_before);
            assert_eq!(t.state(), TerminalState::Ready);
            exchange(&mut t, &mut h, now);
            exchange(&mut t, &mut h, now);
            // A restored session is not "changed": nothing new to store.
            assert!(h.poll_snapshot().is_none());
        }
    }
}

#[test]
fn without_a_restore_the_same_request_is_refused_77() {
    // The control: the behaviour the store removes (issue 10 item 1).
    let profile = SessionProfile::builtin("cup-pos").expect("profile");
    let now = Instant::now();
    let mut h = host(&profile);
    let mut t = terminal(&profile, isoswitch_session::counters::MemoryCounters::new());
    sign_on(&mut t, &mut h, now);
    let mut fresh = host(&profile);
    let m = sale(&profile, t.batch().to_string());
    let sealed = t.seal_request(now, m).expect("seal");
    match fresh.handle_request(local(), sealed.bytes).expect("host") {
        HostOutcome::Rejected { reason, .. } => assert_eq!(reason, RejectReason::NotSignedOn),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_wrong_kek_is_a_typed_error_and_restores_nothing() {
    let profile = SessionProfile::builtin("cup-pos").expect("profile");
    let dir = tempfile::tempdir().expect("dir");
    let now = Instant::now();
    {
        let data = DataDir::open(dir.path()).expect("open");
        let mut sessions = data.sessions("host").expect("sessions");
        let mut h = host(&profile);
        let mut t = terminal(&profile, isoswitch_session::counters::MemoryCounters::new());
        sign_on(&mut t, &mut h, now);
        let snap = h.poll_snapshot().expect("changed");
        sessions
            .save(&[snap.seal(&kek(7)).expect("seal")])
            .expect("save");
    }
    let data = DataDir::open(dir.path()).expect("reopen");
    let sessions = data.sessions("host").expect("sessions");
    let stored = sessions.terminals().expect("terminals");
    assert_eq!(stored.len(), 1);
    match stored[0].open(&kek(8)) {
        Err(SessionError::SnapshotAuth { terminal }) => assert!(terminal.contains("TERM0001")),
        other => panic!("{other:?}"),
    }
    let mut h = host(&profile);
    assert!(matches!(
        restore_host(&mut h, &sessions, &kek(8)),
        Err(ReversalError::Session(SessionError::SnapshotAuth { .. }))
    ));
    assert!(
        !h.is_signed_on(&id()),
        "nothing restored under the wrong KEK"
    );
    // A terminal removed from the key store meanwhile is skipped and reported.
    let mut empty =
        HostSession::new(profile, HostConfig::default(), MemoryKeyStore::new()).expect("host");
    let report = restore_host(&mut empty, &sessions, &kek(7)).expect("restore");
    assert_eq!(report.restored, 0);
    assert_eq!(report.unregistered, vec![id()]);
}

#[test]
fn sign_off_and_invalidation_are_stored_too() {
    let profile = SessionProfile::builtin("cup-pos").expect("profile");
    let now = Instant::now();
    let mut h = host(&profile);
    let mut t = terminal(&profile, isoswitch_session::counters::MemoryCounters::new());
    sign_on(&mut t, &mut h, now);
    assert!(h.poll_snapshot().expect("sign-on").keys.is_some());
    assert!(h.invalidate(&id()));
    let s = h.poll_snapshot().expect("invalidated");
    assert!(
        s.keys.is_none(),
        "an invalidated session is stored without keys"
    );
    // Restoring it means 77 until a new sign-on, as before the restart.
    let mut fresh = host(&profile);
    fresh.restore(s).expect("restore");
    assert!(!fresh.is_signed_on(&id()));
    // Terminal side: a sign-on queues a snapshot, dropped keys queue one.
    assert!(t.poll_snapshot().expect("signed on").keys.is_some());
    assert!(t.poll_snapshot().is_none());
    t.require_sign_on();
    assert!(t.poll_snapshot().expect("dropped").keys.is_none());
}

#[test]
fn the_upstream_link_keeps_its_zone_keys_where_the_host_kept_them() {
    // Switch = terminal session towards the host; both sides persist and restart.
    for name in DIALECTS {
        let profile = SessionProfile::builtin(name).expect("profile");
        let switch_dir = tempfile::tempdir().expect("dir");
        let host_dir = tempfile::tempdir().expect("dir");
        let now = Instant::now();
        let generation;
        {
            let sd = DataDir::open(switch_dir.path()).expect("switch dir");
            let hd = DataDir::open(host_dir.path()).expect("host dir");
            let mut link = terminal(&profile, sd.counters("upstream").expect("c"));
            let mut h = host(&profile);
            sign_on(&mut link, &mut h, now);
            exchange(&mut link, &mut h, now);
            generation = link.generation();
            assert_eq!(generation, 1);
            let mut ss = sd.sessions("switch").expect("s");
            assert_eq!(
                save_link_changes(&mut link, &mut ss, "host", &kek(1), None).expect("save"),
                Some(UpstreamSave::Saved)
            );
            assert_eq!(
                save_link_changes(&mut link, &mut ss, "host", &kek(1), Some(1)).expect("save"),
                None,
                "nothing changed"
            );
            let mut hs = hd.sessions("host").expect("s");
            save_host_changes(&mut h, &mut hs, &kek(2)).expect("save");
        }
        // Both restart.
        let sd = DataDir::open(switch_dir.path()).expect("switch dir");
        let hd = DataDir::open(host_dir.path()).expect("host dir");
        let mut h = host(&profile);
        restore_host(&mut h, &hd.sessions("host").expect("s"), &kek(2)).expect("restore");
        let mut link = terminal(&profile, sd.counters("upstream").expect("c"));
        let ss = sd.sessions("switch").expect("s");
        assert_eq!(
            restore_link(&mut link, &ss, "host", &kek(1)).expect("restore"),
            Some(generation)
        );
        assert_eq!(
            restore_link(&mut link, &ss, "nothing-here", &kek(1)).expect("none"),
            None
        );
        assert_eq!(link.generation(), generation);
        assert_eq!(link.state(), TerminalState::Ready);
        // Next request on the link: sealed and answered under the same zone keys.
        exchange(&mut link, &mut h, now);
        // STANs after the restart do not repeat those before it (leased counters).
        assert!(link.counters().state().next_stan.get() > 1000, "{name}");
    }
}

#[test]
fn a_request_repeated_after_a_restart_is_caught_by_the_idempotency_store() {
    // The replay window is not stored; the host's idempotency store, which is, keys
    // the transaction and does not approve (or book) it twice.
    let profile = ReversalProfile::cup_pos().expect("profile");
    let dialect = profile.dialect.clone();
    let dir = tempfile::tempdir().expect("dir");
    let mut sale = Message::new(&dialect, "0200".parse().expect("mti"));
    sale.set(2, "6222021234567890").expect("2");
    sale.set(3, "000000").expect("3");
    sale.set(4, "000000001000").expect("4");
    sale.set(41, "TERM0001").expect("41");
    sale.set(42, "MERCHANT0000001").expect("42");
    sale.set(49, "156").expect("49");
    profile.stamp(&mut sale, 4242, 7).expect("stamp");
    let mut calls = 0;
    {
        let data = DataDir::open(dir.path()).expect("open");
        let store = data.idempotency("host").expect("store");
        let mut h = ReversalHandler::new(profile.clone(), store, ReversalHostConfig::default());
        let r = h
            .handle(&sale, |_, _| {
                calls += 1;
                Decision::Approve { auth_code: None }
            })
            .expect("first");
        assert_eq!(r.get(39).as_deref(), Some("00"));
    }
    let data = DataDir::open(dir.path()).expect("reopen");
    let store = data.idempotency("host").expect("store");
    let total = store.ledger().total();
    let mut h = ReversalHandler::new(profile, store, ReversalHostConfig::default());
    let again = h
        .handle(&sale, |_, _| {
            calls += 1;
            Decision::Approve { auth_code: None }
        })
        .expect("repeat");
    assert_eq!(calls, 1, "the application is not asked twice");
    assert_eq!(h.ledger().total(), total, "booked once");
    let dup = ReversalHostConfig::default().duplicate_code;
    assert_eq!(
        again.get(39).as_deref(),
        Some(std::str::from_utf8(&dup).expect("code"))
    );
}

#[test]
fn an_invalidated_session_evicted_before_it_was_polled_is_still_stored() {
    let profile = SessionProfile::builtin("cup-pos").expect("profile");
    let now = Instant::now();
    let other = TerminalId::new("TERM0002", "MERCHANT0000001").expect("id");
    let mut keys = MemoryKeyStore::new();
    keys.insert(id(), tmk()).expect("register");
    keys.insert(other, tmk()).expect("register");
    let config = HostConfig {
        max_terminals: 1,
        ..HostConfig::default()
    };
    let mut h = HostSession::new(profile.clone(), config, keys).expect("host");
    let mut t1 = terminal(&profile, isoswitch_session::counters::MemoryCounters::new());
    sign_on(&mut t1, &mut h, now);
    assert!(h.poll_snapshot().expect("t1").keys.is_some());
    assert!(h.invalidate(&id()));
    // The table is full: signing on the other terminal evicts the idle first one.
    let mut t2 = TerminalSession::new(
        profile.clone(),
        TerminalConfig::new(other),
        tmk(),
        isoswitch_session::counters::MemoryCounters::new(),
    )
    .expect("t2");
    sign_on(&mut t2, &mut h, now);
    let polled: Vec<_> = std::iter::from_fn(|| h.poll_snapshot()).collect();
    let first = polled
        .iter()
        .find(|s| s.terminal == id())
        .expect("t1 stored");
    assert!(first.keys.is_none(), "its invalidation is stored");
    let second = polled.iter().find(|s| s.terminal == other).expect("t2");
    assert!(second.keys.is_some());
}
