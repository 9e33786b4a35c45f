//! Session harnesses: the host session (before and after sign-on), the terminal
//! session handling host answers, PIN blocks and TR-31 key blocks.
//!
//! Both sessions run under fixed keys ([`tmk`], [`working_keys`]): a host restored from
//! a snapshot holding them is signed on without a sign-on exchange, so committed inputs
//! MACed under them get past the MAC check, and a harness can MAC what the fuzzer
//! mutated ("seal" modes) to reach the logic behind the check.

use std::time::Instant;

use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime};
use isoswitch_codec::{Message, MessageView, Mti};
use isoswitch_session::counters::{BatchNumber, CounterState, MemoryCounters, Stan};
use isoswitch_session::crypto::keys::Key;
use isoswitch_session::crypto::pin::{Fill, Pan, Pin, PinBlock, PinBlockFormat};
use isoswitch_session::crypto::tr31::{self, Header, KeyBlock, KeyOperation};
use isoswitch_session::{
    HostConfig, HostOutcome, HostSession, Inbound, KeyScheme, MemoryKeyStore, RejectReason,
    SessionProfile, TerminalConfig, TerminalId, TerminalSession, TerminalSnapshot, TerminalState,
    WorkingKeys,
};

/// The profiles the session harnesses pick from (bit 0 of the first byte).
pub const PROFILES: [&str; 2] = ["cup-pos", "iso87-binary"];
/// The PAN of the fixture sale.
pub const PAN: &str = "6225881234567890";

/// The profile `pick` selects.
pub fn profile(pick: u8) -> SessionProfile {
    SessionProfile::builtin(PROFILES[usize::from(pick & 1)]).expect("built-in profile")
}

/// The fixture terminal.
pub fn terminal_id() -> TerminalId {
    TerminalId::new("TERM0001", "MERCHANT0000001").expect("terminal id")
}

/// The fixture terminal master key.
pub fn tmk() -> Key {
    Key::tdes(&[
        0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32,
        0x10,
    ])
    .expect("tmk")
}

/// The fixture working keys for `profile`'s default scheme.
pub fn working_keys(profile: &SessionProfile) -> WorkingKeys {
    let scheme = profile.default_scheme;
    let key = |b: u8| match scheme {
        KeyScheme::Single => Key::des(&[b; 8]),
        _ => Key::tdes(&[
            b,
            b ^ 0x0F,
            b,
            b ^ 0x0F,
            b,
            b ^ 0x0F,
            b,
            b ^ 0x0F,
            b ^ 0xF0,
            b,
            b,
            b,
            b,
            b,
            b,
            b ^ 0x33,
        ]),
    };
    let tdk = (scheme == KeyScheme::DoubleWithTdk).then(|| key(0x3E).expect("tdk"));
    WorkingKeys::new(
        scheme,
        key(0x1C).expect("pik"),
        key(0x2A).expect("mak"),
        tdk,
    )
    .expect("working keys")
}

/// The fixed local time of the harnesses.
pub fn local() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 25)
        .and_then(|d| d.and_hms_opt(10, 0, 0))
        .expect("date")
}

fn snapshot(profile: &SessionProfile, keys: bool) -> TerminalSnapshot {
    TerminalSnapshot {
        terminal: terminal_id(),
        batch: BatchNumber::new(7).expect("batch"),
        generation: 1,
        keys: keys.then(|| working_keys(profile)),
    }
}

/// A host that knows the fixture terminal; `signed_on`: restored with the fixture
/// working keys.
pub fn host(profile: &SessionProfile, signed_on: bool) -> HostSession {
    let mut store = MemoryKeyStore::new();
    store.insert(terminal_id(), tmk()).expect("register");
    let mut h = HostSession::new(profile.clone(), HostConfig::default(), store).expect("host");
    if signed_on {
        h.restore(snapshot(profile, true)).expect("restore");
    }
    h
}

/// The fixture terminal (STAN 100, batch 7); `signed_on`: restored with the fixture
/// working keys.
pub fn terminal(profile: &SessionProfile, signed_on: bool) -> TerminalSession {
    let counters = MemoryCounters::with_state(CounterState {
        next_stan: Stan::new(100).expect("stan"),
        batch: BatchNumber::new(7).expect("batch"),
        next_rrn: 1,
    })
    .expect("counters");
    let mut t = TerminalSession::new(
        profile.clone(),
        TerminalConfig::new(terminal_id()),
        tmk(),
        counters,
    )
    .expect("terminal");
    if signed_on {
        t.restore(snapshot(profile, true)).expect("restore");
    }
    t
}

/// A sale as a POS builds it (PIN block under the fixture PIK), unsealed.
pub fn sale(profile: &SessionProfile, stan: Option<u32>) -> Message {
    let keys = working_keys(profile);
    let mut m = Message::new(&profile.dialect, "0200".parse::<Mti>().expect("mti"));
    let block = PinBlock::encipher(
        PinBlockFormat::Iso0,
        &Pin::new("1234").expect("pin"),
        Some(&Pan::new(PAN).expect("pan")),
        keys.pik(),
        Fill::Random,
    )
    .expect("pin block");
    let set = |m: &mut Message, n: u8, v: &str| {
        m.set(n, v).expect("field");
    };
    set(&mut m, 2, PAN);
    set(&mut m, 3, "000000");
    set(&mut m, 4, "000000001000");
    if let Some(s) = stan {
        set(&mut m, 11, &format!("{s:06}"));
    }
    set(&mut m, 22, "021");
    set(&mut m, 25, "00");
    set(&mut m, 49, "156");
    m.set_bytes(52, block.as_bytes()).expect("52");
    set(&mut m, 53, "2600000000000000");
    if profile.dialect.name() == "cup-pos" {
        set(&mut m, 14, "2512");
        set(&mut m, 60, "22000007000");
    } else {
        set(&mut m, 7, "1125100000");
    }
    m
}

/// `host_request` target. First byte: bit 0 the profile, bit 1 "seal" (the rest is a
/// message the harness MACs under the session key before the host sees it; else the
/// rest is the request's bytes), bit 2 "fresh" (a host before any sign-on).
///
/// Properties: before sign-on nothing is accepted; after it, what is accepted carries
/// a MAC that verifies under the session key, a request the harness MACed never fails
/// the MAC check, and accepted bytes sent again are not accepted twice (the replay
/// window). Reached: a signed-on host got to the MAC check (accepted, or refused for
/// its MAC or as a replay), or a fresh host answered a sign-on.
pub fn host_request(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let p = profile(ctl);
    let seal = ctl & 2 != 0;
    let fresh = ctl & 4 != 0;
    let mut h = host(&p, !fresh);
    let bytes = if seal {
        let Ok(mut m) = Message::decode(&p.dialect, Bytes::copy_from_slice(rest)) else {
            return false;
        };
        match p.seal(working_keys(&p).mak(), &mut m) {
            Ok(b) => b,
            Err(_) => return false,
        }
    } else {
        Bytes::copy_from_slice(rest)
    };
    let outcome = h.handle_request(local(), bytes.clone());
    if fresh {
        assert!(
            !matches!(outcome, Ok(HostOutcome::Accepted(_))),
            "an online request was accepted before sign-on"
        );
        return matches!(
            outcome,
            Ok(HostOutcome::Replied { .. })
                | Ok(HostOutcome::Rejected {
                    reason: RejectReason::NotSignedOn,
                    ..
                })
        );
    }
    match outcome {
        Ok(HostOutcome::Accepted(acc)) => {
            let view = MessageView::decode(&p.dialect, &bytes).expect("accepted bytes decode");
            assert!(
                p.verify_mac(working_keys(&p).mak(), &view).is_ok(),
                "accepted without a valid MAC"
            );
            if acc.message.mti().to_string().ends_with('0') {
                let again = h.handle_request(local(), bytes);
                assert!(
                    !matches!(again, Ok(HostOutcome::Accepted(_))),
                    "the same request was accepted twice"
                );
            }
            true
        }
        Ok(HostOutcome::Rejected {
            reason: RejectReason::MacFailure(why),
            ..
        }) => {
            assert!(
                !seal,
                "a request MACed under the session key failed: {why:?}"
            );
            true
        }
        Ok(HostOutcome::Rejected {
            reason: RejectReason::Duplicate,
            ..
        }) => true,
        _ => false,
    }
}

/// `terminal_answer` target: the terminal handling what the host sends. First byte:
/// bit 0 the profile; bits 1-2 the mode — 0: a sign-on is pending and the rest is the
/// 0810 (working keys in DE 48/62 under the TMK); 1: a sale is in flight and the rest
/// is the response's bytes; 2: a sale is in flight and the rest is a response the
/// fixture host seals under the session key; 3: signed on, nothing in flight, the rest
/// is an unsolicited message (a key change).
///
/// Properties: a sign-on that succeeds leaves the terminal ready with keys; a response
/// the host sealed never fails its MAC; a verified response settles the sale. Reached:
/// signed on (0), MAC checked (1, 2), a key change or another answer handled (3).
pub fn terminal_answer(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let p = profile(ctl);
    let mode = (ctl >> 1) & 3;
    let now = Instant::now();
    let mut t = terminal(&p, mode != 0);
    if mode == 0 {
        if t.sign_on(now, local()).is_err() {
            return false;
        }
        let r = t.handle_message(now, Bytes::copy_from_slice(rest));
        let signed_on = matches!(r, Ok(Inbound::SignedOn { .. }));
        if signed_on {
            assert_eq!(t.state(), TerminalState::Ready);
            assert!(t.working_keys().is_some());
        } else {
            assert!(t.state() != TerminalState::Ready || t.working_keys().is_some());
        }
        return signed_on;
    }
    if mode == 3 {
        let r = t.handle_message(now, Bytes::copy_from_slice(rest));
        if let Ok(Inbound::KeyChangeRequested { .. }) = r {
            assert!(t.working_keys().is_none(), "keys kept after a key change");
        }
        return r.is_ok();
    }
    let Ok(sealed) = t.seal_request(now, sale(&p, None)) else {
        return false;
    };
    let answer = if mode == 2 {
        let Ok(mut m) = Message::decode(&p.dialect, Bytes::copy_from_slice(rest)) else {
            return false;
        };
        let mut h = host(&p, true);
        match h.seal_response(&mut m) {
            Ok(b) => b,
            Err(_) => return false,
        }
    } else {
        Bytes::copy_from_slice(rest)
    };
    match t.handle_message(now, answer) {
        Ok(Inbound::Verified(m)) => {
            assert_eq!(
                t.in_flight(),
                0,
                "a verified response left the sale in flight"
            );
            assert_eq!(m.get(11), Some(sealed.stan.to_string()));
            true
        }
        Ok(Inbound::MacFailure(f)) => {
            assert!(
                mode != 2,
                "a response sealed by the host failed its MAC: {f:?}"
            );
            true
        }
        Ok(Inbound::Unmatched { .. }) => mode == 2,
        _ => false,
    }
}

/// The PIN block formats of the `pin_block` target.
pub const PIN_FORMATS: [PinBlockFormat; 4] = [
    PinBlockFormat::Iso0,
    PinBlockFormat::Iso1,
    PinBlockFormat::Iso3,
    PinBlockFormat::Iso4,
];

/// `pin_block` target. First byte bit 0 clear: the rest is an enciphered PIN block,
/// read in each format and deciphered under fixed keys with and without a PAN; set: the
/// rest picks a format and PIN digits, the harness enciphers them and the block goes
/// the same way (and must decipher to that PIN). A block that deciphers re-enciphers to
/// one that deciphers to the same PIN. Reached: some format deciphered to a PIN.
pub fn pin_block(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    if ctl & 1 == 0 {
        return pin_block_bytes(rest);
    }
    let Some((&pick, digits)) = rest.split_first() else {
        return false;
    };
    let format = PIN_FORMATS[usize::from(pick) % 4];
    let text: String = digits
        .iter()
        .take(12)
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    let Ok(pin) = Pin::new(&text) else {
        return false;
    };
    let key = if format == PinBlockFormat::Iso4 {
        pin_aes()
    } else {
        pin_tdes()
    };
    let pan = Pan::new("4111111111111111").expect("pan");
    let block = PinBlock::encipher(format, &pin, Some(&pan), &key, Fill::Random).expect("encipher");
    assert!(block.decipher(Some(&pan), &key).expect("decipher") == pin);
    pin_block_bytes(block.as_bytes())
}

fn pin_block_bytes(data: &[u8]) -> bool {
    let tdes = pin_tdes();
    let aes = pin_aes();
    let pan = Pan::new("4111111111111111").expect("pan");
    let mut reached = false;
    for format in PIN_FORMATS {
        let Ok(block) = PinBlock::from_bytes(format, data) else {
            continue;
        };
        let key = if format == PinBlockFormat::Iso4 {
            &aes
        } else {
            &tdes
        };
        let _ = block.decipher(None, key);
        let _ = block.decipher(Some(&pan), &tdes);
        if let Ok(pin) = block.decipher(Some(&pan), key) {
            let again =
                PinBlock::encipher(format, &pin, Some(&pan), key, Fill::Random).expect("encipher");
            assert!(again.decipher(Some(&pan), key).expect("decipher") == pin);
            reached = true;
        }
    }
    reached
}

/// The TDES key of the `pin_block` target (ISO 0, 1, 3).
pub fn pin_tdes() -> Key {
    Key::tdes(&[0x5A; 16]).expect("key")
}

/// The AES key of the `pin_block` target (ISO 4).
pub fn pin_aes() -> Key {
    Key::aes(&[0xA5; 16]).expect("key")
}

/// The key block protection keys of the `tr31_block` target (TDES, AES).
pub fn tr31_kbpks() -> [Key; 2] {
    [
        Key::tdes(&[0x11; 16]).expect("key"),
        Key::aes(&[0x22; 32]).expect("key"),
    ]
}

/// The header templates of the `tr31_block` target's structured mode (with the index of
/// their KBPK in [`tr31_kbpks`]).
pub const TR31_HEADERS: [(&str, usize); 5] = [
    ("B0000P0TE00N0000", 0),
    ("B0000M3TC00E0000", 0),
    ("A0000P0TE00N0000", 0),
    ("D0000P0AE00E0000", 1),
    ("D0000D0AB00E0000", 1),
];

/// `tr31_block` target. First byte bit 0 clear: the rest is text, as a TR-31 / X9.143
/// key block (parsed, then unwrapped under fixed KBPKs) and as a header template
/// (encodes back to text that parses to the same header); set: the rest picks a header
/// and key bytes, the harness wraps them and the block goes the same way (and must
/// unwrap to that key). Reached: a block unwrapped under a fixture KBPK.
pub fn tr31_block(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    if ctl & 1 == 0 {
        return tr31_text(&String::from_utf8_lossy(rest));
    }
    let Some((&pick, key)) = rest.split_first() else {
        return false;
    };
    let (template, k) = TR31_HEADERS[usize::from(pick) % TR31_HEADERS.len()];
    let Ok(header) = Header::parse_template(template) else {
        return false;
    };
    let kbpk = &tr31_kbpks()[k];
    let Ok(key) = (if k == 1 {
        Key::aes(key)
    } else {
        Key::tdes(key)
    }) else {
        return false;
    };
    let Ok(block) = tr31::wrap(kbpk, &header, &key) else {
        return false;
    };
    let unwrapped = KeyBlock::parse(&block)
        .and_then(|b| b.unwrap(kbpk))
        .expect("a block wrapped here unwraps");
    let _ = unwrapped;
    tr31_text(&block)
}

fn tr31_text(text: &str) -> bool {
    let mut reached = false;
    if let Ok(block) = KeyBlock::parse(text) {
        for kbpk in tr31_kbpks() {
            if let Ok(u) = block.unwrap(&kbpk) {
                let _ = u.key_for(KeyOperation::EncryptPin);
                reached = true;
            }
        }
    }
    let _ = tr31::unwrap(&Key::des(&[0x33; 8]).expect("key"), text);
    let _ = Header::parse_prefix(text);
    if let Ok(h) = Header::parse_template(text) {
        for op in [
            KeyOperation::GenerateMac,
            KeyOperation::Export,
            KeyOperation::DeriveKeys,
        ] {
            let _ = h.permits(op);
        }
        if let Ok(again) = h.encode(h.encoded_len()) {
            assert_eq!(Header::parse_template(&again).ok(), Some(h));
        }
    }
    reached
}
