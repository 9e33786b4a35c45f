//! Whatever a peer sends, the sessions answer with a value or a typed error — never a
//! panic — and a message whose bytes were changed is never accepted as authentic.

use std::time::Instant;

use bytes::Bytes;
use chrono::NaiveDateTime;
use isoswitch_codec::Message;
use isoswitch_session::counters::MemoryCounters;
use isoswitch_session::crypto::Key;
use isoswitch_session::{
    HostConfig, HostOutcome, HostSession, Inbound, MemoryKeyStore, SessionProfile, TerminalConfig,
    TerminalId, TerminalSession,
};
use proptest::prelude::*;

fn id() -> TerminalId {
    TerminalId::new("TERM0001", "MERCHANT0000001").expect("id")
}

struct Fixture {
    term: TerminalSession,
    host: HostSession,
    request: Vec<u8>,
    response: Vec<u8>,
    sign_on_reply: Vec<u8>,
    sign_on_term: TerminalSession,
}

fn fixture(name: &str) -> Fixture {
    let p = SessionProfile::builtin(name).expect("profile");
    let tmk = Key::tdes(&[0x3C; 16]).expect("tmk");
    let mut store = MemoryKeyStore::new();
    store.insert(id(), tmk.clone()).expect("insert");
    let mut host = HostSession::new(p.clone(), HostConfig::default(), store).expect("host");
    let mut term = TerminalSession::new(
        p.clone(),
        TerminalConfig::new(id()),
        tmk,
        MemoryCounters::new(),
    )
    .expect("terminal");
    let now = Instant::now();
    let req = term
        .sign_on(now, NaiveDateTime::default())
        .expect("sign-on");
    let sign_on_term = term.clone();
    let HostOutcome::Replied { reply, .. } = host
        .handle_request(NaiveDateTime::default(), req)
        .expect("sign-on")
    else {
        panic!("sign-on")
    };
    let sign_on_reply = reply.to_vec();
    term.handle_message(now, reply).expect("signed on");
    let mut m = Message::new(&p.dialect, "0200".parse().expect("mti"));
    m.set(3, "000000").expect("3");
    m.set(4, "000000000100").expect("4");
    let sealed = term.seal_request(now, m).expect("seal");
    let request = sealed.bytes.to_vec();
    let mut h = host.clone();
    let HostOutcome::Accepted(acc) = h
        .handle_request(NaiveDateTime::default(), sealed.bytes)
        .expect("accept")
    else {
        panic!("accept")
    };
    let mut resp = Message::response_to(&acc.message).expect("response");
    resp.set(39, "00").expect("39");
    let response = h.seal_response(&mut resp).expect("seal").to_vec();
    Fixture {
        term,
        host,
        request,
        response,
        sign_on_reply,
        sign_on_term,
    }
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((any::<usize>(), 1..=255u8), 1..6)
}

fn apply(bytes: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for &(at, x) in edits {
        let i = at % b.len();
        b[i] ^= x;
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for name in ["cup-pos", "iso87-binary"] {
            let f = fixture(name);
            let mut host = f.host.clone();
            let _ = host.handle_request(NaiveDateTime::default(), Bytes::from(bytes.clone()));
            let mut term = f.term.clone();
            let _ = term.handle_message(Instant::now(), Bytes::from(bytes.clone()));
            let mut pending = f.sign_on_term.clone();
            let _ = pending.handle_message(Instant::now(), Bytes::from(bytes.clone()));
        }
    }

    #[test]
    fn changed_messages_are_never_authentic(e in edits(), name in prop_oneof![Just("cup-pos"), Just("iso87-binary")]) {
        let f = fixture(name);
        let req = apply(&f.request, &e);
        let resp = apply(&f.response, &e);
        // XOR edits at the same position may cancel out: only changed bytes count.
        if req != f.request {
            let mut host = f.host.clone();
            let out = host.handle_request(NaiveDateTime::default(), Bytes::from(req));
            prop_assert!(!matches!(out, Ok(HostOutcome::Accepted(_))), "{name}: {out:?}");
        }
        if resp != f.response {
            let mut term = f.term.clone();
            let out = term.handle_message(Instant::now(), Bytes::from(resp));
            prop_assert!(
                !matches!(out, Ok(Inbound::Verified(_)) | Ok(Inbound::Unmatched { .. })),
                "{name}: {out:?}"
            );
        }
        // A changed sign-on response either still installs the host's keys (the change
        // hit a field the terminal does not use) or fails with a typed error.
        let reply = apply(&f.sign_on_reply, &e);
        let mut pending = f.sign_on_term.clone();
        if let Ok(Inbound::SignedOn { .. }) = pending.handle_message(Instant::now(), Bytes::from(reply)) {
            let host_mak = f.host.working_keys(&id()).expect("keys").mak().kcv();
            prop_assert_eq!(pending.working_keys().expect("keys").mak().kcv(), host_mak);
        }
    }
}
