//! A terminal session and a host session wired back to back, for `cup-pos` (UnionPay
//! MAC, keys in DE 62) and `iso87-binary` (X9.19 MAC in DE 64/128, keys in DE 48):
//! sign-on, MACed 0200/0210, forced key changes, tampering with every byte, replays,
//! timeouts, sign-off.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime};
use isoswitch_codec::{Message, MessageView, Mti};
use isoswitch_session::counters::{BatchNumber, CounterState, MemoryCounters, Stan};
use isoswitch_session::crypto::{Fill, Key, Pan, Pin, PinBlock, PinBlockFormat};
use isoswitch_session::{
    HostAction, HostConfig, HostOutcome, HostSession, Inbound, KeyRole, MacFailureReason,
    MemoryKeyStore, RejectReason, ResponseCode, SessionError, SessionProfile, SignOnFailure,
    SignOnReason, TerminalConfig, TerminalEvent, TerminalId, TerminalSession, TerminalState,
};

const DIALECTS: [&str; 2] = ["cup-pos", "iso87-binary"];
const PAN: &str = "6225881234567890";

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

fn mti(s: &str) -> Mti {
    s.parse().expect("mti")
}

struct Pair {
    name: &'static str,
    term: TerminalSession,
    host: HostSession,
    now: Instant,
}

impl Pair {
    fn new(name: &'static str) -> Pair {
        let profile = SessionProfile::builtin(name).expect("profile");
        let mut store = MemoryKeyStore::new();
        store.insert(id(), tmk()).expect("register");
        let host = HostSession::new(profile.clone(), HostConfig::default(), store).expect("host");
        let counters = MemoryCounters::with_state(CounterState {
            next_stan: Stan::new(100).expect("stan"),
            batch: BatchNumber::new(7).expect("batch"),
            next_rrn: 1,
        })
        .expect("counters");
        let term = TerminalSession::new(profile, TerminalConfig::new(id()), tmk(), counters)
            .expect("terminal");
        Pair {
            name,
            term,
            host,
            now: Instant::now(),
        }
    }

    fn events(&mut self) -> Vec<TerminalEvent> {
        std::iter::from_fn(|| self.term.poll_event()).collect()
    }

    fn host_handle(&mut self, bytes: Bytes) -> HostOutcome {
        self.host
            .handle_request(local(), bytes)
            .expect("host handles")
    }

    fn sign_on(&mut self) -> BatchNumber {
        let req = self.term.sign_on(self.now, local()).expect("sign-on");
        assert_eq!(self.term.state(), TerminalState::SignOnPending);
        assert!(self.term.poll_timeout().is_some());
        let HostOutcome::Replied { reply, action } = self.host_handle(req) else {
            panic!("{}: sign-on not answered", self.name)
        };
        assert!(matches!(action, HostAction::SignedOn { .. }));
        let Inbound::SignedOn { batch } = self.term.handle_message(self.now, reply).expect("0810")
        else {
            panic!("{}: not signed on", self.name)
        };
        assert_eq!(self.term.state(), TerminalState::Ready);
        assert!(self.host.is_signed_on(&id()));
        if self.term.in_flight() == 0 {
            assert_eq!(self.term.poll_timeout(), None);
        }
        // Both sides hold the same keys.
        let t = self.term.working_keys().expect("terminal keys");
        let h = self.host.working_keys(&id()).expect("host keys");
        assert_eq!(t.mak().kcv(), h.mak().kcv());
        assert_eq!(t.pik().kcv(), h.pik().kcv());
        assert!(self.events().contains(&TerminalEvent::SignedOn { batch }));
        batch
    }

    /// A sale request as a POS builds it (PIN block under the session PIK); with
    /// `secondary`, a field above 64 so the MAC goes in DE 128.
    fn sale(&mut self, secondary: bool) -> Message {
        let p = self.term.profile().clone();
        let mut m = Message::new(&p.dialect, mti("0200"));
        let pik = self.term.working_keys().expect("keys").pik().clone();
        let block = PinBlock::encipher(
            PinBlockFormat::Iso0,
            &Pin::new("1234").expect("pin"),
            Some(&Pan::new(PAN).expect("pan")),
            &pik,
            Fill::Random,
        )
        .expect("pin block");
        m.set(2, PAN).expect("2");
        m.set(3, "000000").expect("3");
        m.set(4, "000000001000").expect("4");
        m.set(22, "021").expect("22");
        m.set(25, "00").expect("25");
        m.set(49, "156").expect("49");
        m.set_bytes(52, block.as_bytes()).expect("52");
        m.set(53, "2600000000000000").expect("53");
        if self.name == "cup-pos" {
            m.set(14, "2512").expect("14");
            m.set(60, format!("22{}000", self.term.batch()))
                .expect("60");
        } else {
            m.set(7, "0305093000").expect("7");
            if secondary {
                m.set(102, "ACCT-0001").expect("102");
            }
        }
        m
    }

    /// Host side: accept, check the PIN, approve, seal.
    fn approve(&mut self, outcome: HostOutcome) -> Bytes {
        let HostOutcome::Accepted(acc) = outcome else {
            panic!("{}: request not accepted: {outcome:?}", self.name)
        };
        let pik = self.host.working_keys(&acc.terminal).expect("keys").pik();
        let block = PinBlock::from_bytes(
            PinBlockFormat::Iso0,
            &acc.message.field(52).expect("52").bytes(),
        )
        .expect("block");
        assert_eq!(
            block
                .decipher(Some(&Pan::new(PAN).expect("pan")), pik)
                .expect("decipher"),
            Pin::new("1234").expect("pin")
        );
        let mut resp = Message::response_to(&acc.message).expect("response");
        resp.set(37, "000000000042").expect("37");
        resp.set(38, "123456").expect("38");
        resp.set(39, "00").expect("39");
        if self.name == "cup-pos" {
            resp.set(12, "093001").expect("12");
            resp.set(13, "0305").expect("13");
        } else if acc.message.has(102) {
            resp.set(102, "ACCT-0001").expect("102");
        }
        self.host.seal_response(&mut resp).expect("seal response")
    }

    /// A full online exchange; returns the request and response bytes.
    fn exchange(&mut self, secondary: bool) -> (Bytes, Bytes) {
        let m = self.sale(secondary);
        let sealed = self.term.seal_request(self.now, m).expect("seal");
        let outcome = self.host_handle(sealed.bytes.clone());
        let reply = self.approve(outcome);
        match self
            .term
            .handle_message(self.now, reply.clone())
            .expect("0210")
        {
            Inbound::Verified(msg) => {
                assert_eq!(msg.mti(), mti("0210"));
                assert_eq!(msg.get(39).as_deref(), Some("00"));
                assert_eq!(msg.get(11), Some(sealed.stan.to_string()));
            }
            other => panic!("{}: {other:?}", self.name),
        }
        assert_eq!(self.term.in_flight(), 0);
        (sealed.bytes, reply)
    }
}

fn mac_field_of(name: &str, bytes: &[u8]) -> Option<u8> {
    let p = SessionProfile::builtin(name).expect("profile");
    MessageView::decode(&p.dialect, bytes)
        .expect("decode")
        .mac_field()
}

#[test]
fn a_business_day_with_a_forced_key_change() {
    for name in DIALECTS {
        let mut pair = Pair::new(name);
        let batch = pair.sign_on();
        if name == "cup-pos" {
            // The terminal adopted the host's batch (the host took the terminal's own,
            // 000007, as it had none for it).
            assert_eq!(batch, BatchNumber::new(7).expect("7"));
            assert_eq!(pair.host.batch(&id()), Some(batch));
        }
        for _ in 0..3 {
            let (req, resp) = pair.exchange(false);
            assert_eq!(mac_field_of(name, &req), Some(64), "{name}");
            assert_eq!(mac_field_of(name, &resp), Some(64), "{name}");
        }
        if name == "iso87-binary" {
            let (req, resp) = pair.exchange(true);
            assert_eq!(mac_field_of(name, &req), Some(128));
            assert_eq!(mac_field_of(name, &resp), Some(128));
        }

        // Echo test.
        let echo = pair.term.echo(pair.now, local()).expect("echo");
        let HostOutcome::Replied { reply, action } = pair.host_handle(echo) else {
            panic!("echo")
        };
        assert!(matches!(action, HostAction::Echo { .. }));
        assert!(matches!(
            pair.term
                .handle_message(pair.now, reply)
                .expect("0830/0810"),
            Inbound::EchoAnswered(ResponseCode::APPROVED)
        ));

        // Host-initiated key change: MACed 0800 code 101.
        let old_mak = pair
            .term
            .working_keys()
            .expect("keys")
            .mak()
            .kcv()
            .to_owned();
        let kc = pair
            .host
            .request_key_change(&id(), local())
            .expect("key change");
        if name == "iso87-binary" {
            assert_eq!(
                mac_field_of(name, &kc),
                Some(128),
                "DE 70 puts the MAC in DE 128"
            );
        }
        assert!(!pair.host.is_signed_on(&id()));
        let Inbound::KeyChangeRequested { reply } =
            pair.term.handle_message(pair.now, kc).expect("key change")
        else {
            panic!("{name}: key change not recognized")
        };
        assert_eq!(pair.term.state(), TerminalState::NotSignedOn);
        assert!(pair
            .events()
            .contains(&TerminalEvent::SignOnRequired(SignOnReason::HostKeyChange)));
        assert!(matches!(
            pair.host_handle(reply),
            HostOutcome::Acknowledged {
                code: Some(ResponseCode::APPROVED),
                ..
            }
        ));
        // No online message before signing on again.
        let m = pair.sale_without_keys();
        assert!(matches!(
            pair.term.seal_request(pair.now, m),
            Err(SessionError::WrongState {
                state: TerminalState::NotSignedOn,
                ..
            })
        ));
        pair.sign_on();
        assert_ne!(
            pair.term.working_keys().expect("keys").mak().kcv(),
            &old_mak,
            "{name}: fresh keys"
        );
        pair.exchange(false);

        // Sign-off: keys gone on both sides, both at the next batch.
        let before = pair.term.batch();
        let off = pair.term.sign_off(pair.now, local()).expect("sign-off");
        assert_eq!(pair.term.state(), TerminalState::SigningOff);
        assert!(pair.term.working_keys().is_none());
        let HostOutcome::Replied {
            reply,
            action: HostAction::SignedOff {
                batch: host_batch, ..
            },
        } = pair.host_handle(off)
        else {
            panic!("{name}: sign-off")
        };
        let Inbound::SignedOff { batch } = pair.term.handle_message(pair.now, reply).expect("0830")
        else {
            panic!("{name}: not signed off")
        };
        assert_eq!(batch, before.next());
        assert!(!pair.host.is_signed_on(&id()));
        if name == "cup-pos" {
            assert_eq!(host_batch, batch);
        }
        assert_eq!(pair.term.state(), TerminalState::NotSignedOn);
        let mut m = pair.sale_without_keys();
        m.set_mti(mti("0210"));
        let sealed = pair.host.seal_response(&mut m);
        assert!(matches!(sealed, Err(SessionError::NotSignedOn { .. })));
    }
}

impl Pair {
    fn sale_without_keys(&self) -> Message {
        let p = self.term.profile();
        let mut m = Message::new(&p.dialect, mti("0200"));
        id().write_to(&mut m).expect("id");
        m.set(3, "000000").expect("3");
        m.set(11, "000001").expect("11");
        m
    }
}

/// Every byte of a MACed request flipped (three ways): the host never accepts it.
#[test]
fn host_detects_a_tampered_byte_anywhere_in_a_request() {
    for (name, secondary) in [
        ("cup-pos", false),
        ("iso87-binary", false),
        ("iso87-binary", true),
    ] {
        let mut pair = Pair::new(name);
        pair.sign_on();
        let m = pair.sale(secondary);
        let sealed = pair.term.seal_request(pair.now, m).expect("seal");
        let bytes = sealed.bytes.to_vec();
        let (mut a0, mut undecodable, mut other) = (0, 0, 0);
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut t = bytes.clone();
                t[i] ^= mask;
                let mut host = pair.host.clone();
                match host.handle_request(local(), Bytes::from(t)) {
                    Err(SessionError::Codec(_)) | Err(SessionError::UnexpectedMessage { .. }) => {
                        undecodable += 1
                    }
                    Err(e) => panic!("{name}: byte {i}: unexpected error {e}"),
                    Ok(HostOutcome::Rejected {
                        code: ResponseCode::MAC_FAILED,
                        reason: RejectReason::MacFailure(_),
                        ..
                    }) => {
                        a0 += 1;
                        // A MAC failure forces a new sign-on.
                        assert!(!host.is_signed_on(&id()));
                    }
                    Ok(HostOutcome::Rejected { code, .. }) => {
                        // Only a changed identity (DE 41/42) or a malformed request is
                        // answered otherwise: 97 (unregistered), 30.
                        assert!(
                            code == ResponseCode::NOT_REGISTERED
                                || code == ResponseCode::FORMAT_ERROR,
                            "{name}: byte {i}: {code}"
                        );
                        other += 1;
                    }
                    Ok(outcome) => panic!("{name}: byte {i} mask {mask:02X} accepted: {outcome:?}"),
                }
            }
        }
        // Most flips that still decode change only the MAC check's input.
        assert!(
            a0 * 3 > bytes.len(),
            "{name}: {a0} A0 of {}",
            bytes.len() * 3
        );
        assert_eq!(a0 + undecodable + other, bytes.len() * 3);
        // The untouched request is still accepted.
        let outcome = pair.host_handle(sealed.bytes);
        assert!(matches!(outcome, HostOutcome::Accepted(_)), "{name}");
    }
}

/// Every byte of a MACed response flipped: the terminal reports a MAC failure (or
/// cannot decode it), never a verified response.
#[test]
fn terminal_detects_a_tampered_byte_anywhere_in_a_response() {
    for (name, secondary) in [
        ("cup-pos", false),
        ("iso87-binary", false),
        ("iso87-binary", true),
    ] {
        let mut pair = Pair::new(name);
        pair.sign_on();
        let m = pair.sale(secondary);
        let sealed = pair.term.seal_request(pair.now, m).expect("seal");
        let outcome = pair.host_handle(sealed.bytes);
        let reply = pair.approve(outcome).to_vec();
        let (mut mac_failures, mut undecodable) = (0, 0);
        for i in 0..reply.len() {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut t = reply.clone();
                t[i] ^= mask;
                let mut term = pair.term.clone();
                match term.handle_message(pair.now, Bytes::from(t)) {
                    Ok(Inbound::MacFailure(f)) => {
                        assert_eq!(f.reason, MacFailureReason::Mismatch, "{name}: byte {i}");
                        if f.matched {
                            assert_eq!(term.state(), TerminalState::NotSignedOn);
                            assert!(term
                                .poll_event()
                                .is_some_and(|e| e
                                    == TerminalEvent::SignOnRequired(SignOnReason::MacFailure)));
                        }
                        mac_failures += 1;
                    }
                    Err(SessionError::Codec(_)) | Err(SessionError::UnexpectedMessage { .. }) => {
                        undecodable += 1
                    }
                    other => panic!("{name}: byte {i} mask {mask:02X}: {other:?}"),
                }
            }
        }
        assert_eq!(mac_failures + undecodable, reply.len() * 3);
        assert!(mac_failures * 3 > reply.len(), "{name}: {mac_failures}");
        // The untouched response verifies.
        assert!(matches!(
            pair.term.handle_message(pair.now, Bytes::from(reply)),
            Ok(Inbound::Verified(_))
        ));
    }
}

#[test]
fn a_replayed_request_is_answered_94_and_a_reversal_of_the_same_stan_is_not() {
    for name in DIALECTS {
        let mut pair = Pair::new(name);
        pair.sign_on();
        let (req, _) = pair.exchange(false);
        let HostOutcome::Rejected {
            code,
            reason,
            reply,
        } = pair.host_handle(req.clone())
        else {
            panic!("{name}: replay accepted")
        };
        assert_eq!(code, ResponseCode::DUPLICATE);
        assert_eq!(reason, RejectReason::Duplicate);
        // The 94 is MACed: authentic, but it answers nothing outstanding.
        assert!(matches!(
            pair.term.handle_message(pair.now, reply).expect("94"),
            Inbound::Unmatched { .. }
        ));
        assert_eq!(pair.term.state(), TerminalState::Ready);
        // A reversal carries the original STAN: a different request, accepted.
        let orig = Message::decode(&pair.term.profile().dialect, req).expect("decode");
        let mut rev = Message::new(&pair.term.profile().dialect, mti("0400"));
        for n in [2, 3, 4, 11, 22, 25, 49] {
            rev.set(n, orig.get(n).expect("field")).expect("set");
        }
        rev.set(39, "98").expect("39");
        let sealed = pair.term.seal_request(pair.now, rev.clone()).expect("0400");
        assert!(matches!(
            pair.host_handle(sealed.bytes),
            HostOutcome::Accepted(_)
        ));
        // Its repeat (0401) too, and a second copy of the 0400: a reversal is delivered
        // at least once and answered idempotently by the reversal rules, never 94 (that
        // 0410 would end at the sender a reversal that may not have been carried out).
        rev.set_mti(mti("0401"));
        let sealed = pair.term.seal_request(pair.now, rev.clone()).expect("0401");
        assert!(matches!(
            pair.host_handle(sealed.bytes),
            HostOutcome::Accepted(_)
        ));
        rev.set_mti(mti("0400"));
        let sealed = pair.term.seal_request(pair.now, rev).expect("0400");
        assert!(matches!(
            pair.host_handle(sealed.bytes),
            HostOutcome::Accepted(_)
        ));
        // A new sign-on is a new session: the window starts empty.
        let (req, _) = {
            pair.sign_on();
            let m = pair.sale(false);
            let mut m2 = m.clone();
            m2.set(11, "000103").expect("11");
            let s = pair.term.seal_request(pair.now, m2).expect("seal");
            (s.bytes, ())
        };
        assert!(matches!(pair.host_handle(req), HostOutcome::Accepted(_)));
    }
}

#[test]
fn a_host_mac_error_puts_the_terminal_back_into_sign_on() {
    for name in DIALECTS {
        let mut pair = Pair::new(name);
        pair.sign_on();
        let m = pair.sale(false);
        let sealed = pair.term.seal_request(pair.now, m).expect("seal");
        // Corrupt the MAC itself (the last byte): A0, MACed with the MAK still valid.
        let mut bad = sealed.bytes.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        let HostOutcome::Rejected {
            code,
            reason,
            reply,
        } = pair.host_handle(Bytes::from(bad))
        else {
            panic!("{name}: accepted a bad MAC")
        };
        assert_eq!(code, ResponseCode::MAC_FAILED);
        assert_eq!(reason, RejectReason::MacFailure(MacFailureReason::Mismatch));
        assert!(!pair.host.is_signed_on(&id()));
        match pair.term.handle_message(pair.now, reply).expect("A0") {
            Inbound::Verified(msg) => assert_eq!(msg.get(39).as_deref(), Some("A0")),
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(pair.term.state(), TerminalState::NotSignedOn);
        assert!(pair
            .events()
            .contains(&TerminalEvent::SignOnRequired(SignOnReason::HostMacError)));
        // The host now answers the terminal's requests with 77 (no MAC: no keys).
        let HostOutcome::Rejected { code, reply, .. } = pair.host_handle(sealed.bytes) else {
            panic!("{name}: accepted without keys")
        };
        assert_eq!(code, ResponseCode::SIGN_ON_AGAIN);
        assert_eq!(mac_field_of(name, &reply), None);
        pair.sign_on();
        pair.exchange(false);
    }
}

#[test]
fn unknown_and_signed_off_terminals_are_refused() {
    for name in DIALECTS {
        // A terminal the host does not know: sign-on answered 97.
        let mut pair = Pair::new(name);
        pair.host.key_store_mut().remove(&id());
        let req = pair.term.sign_on(pair.now, local()).expect("sign-on");
        let HostOutcome::Rejected { code, reply, .. } = pair.host_handle(req) else {
            panic!("{name}: unknown terminal signed on")
        };
        assert_eq!(code, ResponseCode::NOT_REGISTERED);
        assert!(matches!(
            pair.term.handle_message(pair.now, reply),
            Err(SessionError::SignOnDeclined {
                code: ResponseCode::NOT_REGISTERED
            })
        ));
        assert_eq!(pair.term.state(), TerminalState::NotSignedOn);
        assert!(pair
            .events()
            .contains(&TerminalEvent::SignOnFailed(SignOnFailure::Declined(
                ResponseCode::NOT_REGISTERED
            ))));

        // Known but not signed on: 77. The unMACed 77 is a MAC failure for the terminal.
        let mut pair = Pair::new(name);
        pair.sign_on();
        let m = pair.sale(false);
        let sealed = pair.term.seal_request(pair.now, m).expect("seal");
        assert!(pair.host.invalidate(&id()));
        let HostOutcome::Rejected { code, reply, .. } = pair.host_handle(sealed.bytes) else {
            panic!("{name}: accepted")
        };
        assert_eq!(code, ResponseCode::SIGN_ON_AGAIN);
        match pair.term.handle_message(pair.now, reply).expect("77") {
            Inbound::MacFailure(f) => {
                assert_eq!(f.reason, MacFailureReason::Missing);
                assert!(f.matched);
                assert_eq!(f.stan, Some(sealed.stan));
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(pair.term.state(), TerminalState::NotSignedOn);
    }
}

#[test]
fn a_wrong_master_key_fails_the_sign_on_with_a_typed_error() {
    for name in DIALECTS {
        let mut pair = Pair::new(name);
        pair.host
            .key_store_mut()
            .insert(id(), Key::tdes(&[0x5A; 16]).expect("other"))
            .expect("replace");
        let req = pair.term.sign_on(pair.now, local()).expect("sign-on");
        let HostOutcome::Replied { reply, .. } = pair.host_handle(req) else {
            panic!("{name}")
        };
        assert!(matches!(
            pair.term.handle_message(pair.now, reply),
            Err(SessionError::WorkingKeyCheck { role: KeyRole::Pik })
        ));
        assert_eq!(pair.term.state(), TerminalState::NotSignedOn);
        assert!(pair
            .events()
            .contains(&TerminalEvent::SignOnFailed(SignOnFailure::KeyCheck(
                KeyRole::Pik
            ))));
    }
}

#[test]
fn timeouts_are_driven_by_the_caller() {
    for name in DIALECTS {
        let mut pair = Pair::new(name);
        let t0 = pair.now;
        // Sign-on without an answer.
        let _ = pair.term.sign_on(t0, local()).expect("sign-on");
        let deadline = pair.term.poll_timeout().expect("deadline");
        assert_eq!(deadline, t0 + Duration::from_secs(60));
        pair.term.handle_timeout(t0 + Duration::from_secs(59));
        assert_eq!(pair.term.state(), TerminalState::SignOnPending);
        pair.term.handle_timeout(deadline);
        assert_eq!(pair.term.state(), TerminalState::NotSignedOn);
        assert_eq!(pair.events(), vec![TerminalEvent::SignOnTimedOut]);
        assert_eq!(pair.term.poll_timeout(), None);

        // An online request without an answer, then its late response.
        pair.sign_on();
        let m = pair.sale(false);
        let sealed = pair.term.seal_request(t0, m).expect("seal");
        let outcome = pair.host_handle(sealed.bytes);
        let late = pair.approve(outcome);
        pair.term.handle_timeout(t0 + Duration::from_secs(61));
        assert_eq!(
            pair.events(),
            vec![TerminalEvent::RequestTimedOut {
                mti: mti("0200"),
                stan: sealed.stan
            }]
        );
        assert!(matches!(
            pair.term.handle_message(t0, late).expect("late"),
            Inbound::Unmatched { stan: Some(s), .. } if s == sealed.stan
        ));
        assert_eq!(pair.term.state(), TerminalState::Ready);
    }
}

#[test]
fn the_sign_on_messages_have_the_domain_layout() {
    let mut pair = Pair::new("cup-pos");
    let req = pair.term.sign_on(pair.now, local()).expect("sign-on");
    let d = pair.term.profile().dialect.clone();
    let m = Message::decode(&d, req).expect("0800");
    assert_eq!(m.mti(), mti("0800"));
    let present: Vec<u8> = m.present().iter().collect();
    assert_eq!(present, vec![11, 41, 42, 60, 63]);
    assert_eq!(m.get(60).as_deref(), Some("00000007003"));
    assert_eq!(m.get(63).as_deref(), Some("01 "));
    let HostOutcome::Replied { reply, .. } = pair.host_handle(m.to_bytes().expect("bytes")) else {
        panic!("sign-on")
    };
    let r = Message::decode(&d, reply).expect("0810");
    let present: Vec<u8> = r.present().iter().collect();
    assert_eq!(present, vec![11, 12, 13, 32, 37, 39, 41, 42, 60, 62]);
    assert_eq!(r.field(62).expect("62").raw().len(), 40);
    // MAK slot: 8 encrypted bytes, then eight zero bytes (single-length DES MAK).
    assert_eq!(&r.field(62).expect("62").raw()[28..36], &[0u8; 8]);

    let mut pair = Pair::new("iso87-binary");
    let req = pair.term.sign_on(pair.now, local()).expect("sign-on");
    let d = pair.term.profile().dialect.clone();
    let m = Message::decode(&d, req.clone()).expect("0800");
    let present: Vec<u8> = m.present().iter().collect();
    assert_eq!(present, vec![7, 11, 41, 42, 70]);
    assert_eq!(m.get(70).as_deref(), Some("001"));
    let HostOutcome::Replied { reply, .. } = pair.host_handle(req) else {
        panic!("sign-on")
    };
    let r = Message::decode(&d, reply).expect("0810");
    let present: Vec<u8> = r.present().iter().collect();
    assert_eq!(present, vec![7, 11, 39, 41, 42, 48, 70]);
    let keys = r.get(48).expect("48");
    assert_eq!(keys.len(), 80);
    assert!(keys
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)));
}

#[test]
fn the_pik_under_the_master_key_is_the_bytes_the_host_sent() {
    for name in DIALECTS {
        let mut pair = Pair::new(name);
        assert!(pair.term.pik_under_master().is_none(), "no keys yet");
        let req = pair.term.sign_on(pair.now, local()).expect("sign-on");
        let HostOutcome::Replied { reply, .. } = pair.host_handle(req) else {
            panic!("{name}: sign-on")
        };
        let d = pair.term.profile().dialect.clone();
        let answer = Message::decode(&d, reply.clone()).expect("0810");
        let block = pair
            .term
            .profile()
            .key_block_of(&answer)
            .expect("key field");
        pair.term.handle_message(pair.now, reply).expect("0810");
        let wrapped = pair.term.pik_under_master().expect("wrapped PIK");
        let slot = wrapped.encrypted.len();
        assert_eq!(slot, 16, "{name}");
        assert_eq!(wrapped.encrypted[..], block[..slot], "{name}");
        assert_eq!(wrapped.check[..], block[slot..slot + 4], "{name}");
        // It is the PIK, under the master key.
        let pik = isoswitch_session::crypto::keys::decrypt_key_under(&tmk(), &wrapped.encrypted)
            .expect("unwrap");
        let keys = pair.term.working_keys().expect("keys");
        assert_eq!(pik.kcv(), keys.pik().kcv());
        // A session restored from its snapshot gives the same bytes.
        let mut again = Pair::new(name);
        again.term.restore(pair.term.export()).expect("restore");
        assert_eq!(again.term.pik_under_master(), Some(wrapped), "{name}");
    }
}

#[test]
fn nothing_secret_in_debug_output() {
    let mut pair = Pair::new("cup-pos");
    pair.sign_on();
    let dbg = format!("{:?} {:?}", pair.term, pair.host);
    assert!(dbg.contains("Ready"));
    assert!(dbg.contains("kcv"));
    assert!(!dbg.contains("material"));
}
