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
use isoswitch_session::crypto::keys::{Key, KeyKind};
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
            if isoswitch_session::ReplayWindow::refuses_second_copy(acc.message.mti()) {
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
/// is an unsolicited message (a key change). Bit 7: the rest is [`arbitrary`] input
/// from which the harness builds that answer ([`built_answer`]): the fixture host's
/// 0810 carrying fuzz-chosen working keys under the TMK (and batch, response code);
/// a response to the sale with fuzz-chosen DE 37/38/39 sealed under a fuzz-chosen
/// (wrong) MAK or none (mode 1) or by the host (mode 2); the host's key change
/// (mode 3) — one in eight with a byte changed, the STAN changed or a refusal code.
///
/// Properties: a sign-on that succeeds leaves the terminal ready with keys (the keys
/// the 0810 carried); a response the host sealed never fails its MAC; a verified
/// response settles the sale; an intact built answer has its expected outcome (signed
/// on, verified, key change). Reached: signed on (0), MAC checked (1, 2), a key change
/// or another answer handled (3).
pub fn terminal_answer(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let p = profile(ctl);
    let mode = (ctl >> 1) & 3;
    if ctl & 0x80 != 0 {
        return built_answer(&p, mode, &mut arbitrary::Unstructured::new(rest)).unwrap_or(false);
    }
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

fn key_of(u: &mut arbitrary::Unstructured<'_>, kind: KeyKind) -> arbitrary::Result<Key> {
    let mut b = [0u8; 32];
    u.fill_buffer(&mut b[..kind.key_len()])?;
    Ok(Key::new(kind, &b[..kind.key_len()]).expect("a key of its kind's length"))
}

/// Working keys for `profile`'s default scheme from `u`.
fn arbitrary_keys(
    profile: &SessionProfile,
    u: &mut arbitrary::Unstructured<'_>,
) -> arbitrary::Result<WorkingKeys> {
    let scheme = profile.default_scheme;
    let pik_kind = if scheme == KeyScheme::Single {
        KeyKind::Des
    } else {
        KeyKind::Tdes2
    };
    let pik = key_of(u, pik_kind)?;
    let mak = key_of(u, profile.mak_kind(scheme))?;
    let tdk = if scheme.has_tdk() {
        Some(key_of(u, KeyKind::Tdes2)?)
    } else {
        None
    };
    Ok(WorkingKeys::new(scheme, pik, mak, tdk).expect("keys of the scheme's kinds"))
}

/// One in eight: a byte of `bytes` from `from` on replaced; whether it was changed.
fn tamper(
    u: &mut arbitrary::Unstructured<'_>,
    bytes: &mut [u8],
    from: usize,
) -> arbitrary::Result<bool> {
    if bytes.len() <= from || !crate::one_in(u, 8)? {
        return Ok(false);
    }
    let at = from + u.choose_index(bytes.len() - from)?;
    let x: u8 = u.int_in_range(1..=255)?;
    bytes[at] ^= x;
    Ok(true)
}

/// A response code: approved seven times in eight, else a refusal or anything.
fn response_code(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(if !crate::one_in(u, 8)? {
        "00".into()
    } else if u.arbitrary()? {
        (*u.choose(&["05", "51", "55", "A0", "96", "99", "12"])?).into()
    } else {
        let set = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        [*u.choose(set)?, *u.choose(set)?]
            .iter()
            .map(|&c| char::from(c))
            .collect()
    })
}

/// The structured mode of [`terminal_answer`]: builds the answer of `mode` from `u` and
/// gives it to the terminal. `Err` when `u` ran out before the answer was built.
pub fn built_answer(
    p: &SessionProfile,
    mode: u8,
    u: &mut arbitrary::Unstructured<'_>,
) -> arbitrary::Result<bool> {
    let now = Instant::now();
    let mut t = terminal(p, mode != 0);
    match mode {
        0 => {
            let req = t
                .sign_on(now, local())
                .expect("the fixture terminal signs on");
            let mut h = host(p, false);
            let Ok(HostOutcome::Replied { reply, .. }) = h.handle_request(local(), req) else {
                panic!("the fixture host does not answer the fixture terminal's sign-on");
            };
            let mut m = Message::decode(&p.dialect, reply).expect("the host's 0810 decodes");
            let keys = arbitrary_keys(p, u)?;
            let mut block = keys
                .encrypt_block(&tmk())
                .expect("keys encrypt under the TMK");
            let damaged = tamper(u, &mut block, 0)?;
            p.set_key_block(&mut m, &block).expect("the key block fits");
            let code = response_code(u)?;
            m.set(39, code.as_str()).expect("39");
            if let Some(f60) = m
                .get(60)
                .filter(|f| f.len() >= 8 && crate::one_in(u, 2).unwrap_or(false))
            {
                let batch = u.int_in_range(0u32..=999_999)?;
                let f60 = format!("{}{batch:06}{}", &f60[..2], &f60[8..]);
                m.set(60, f60.as_str()).expect("60");
            }
            let r = t.handle_message(now, m.to_bytes().expect("0810"));
            let signed_on = matches!(r, Ok(Inbound::SignedOn { .. }));
            if signed_on {
                assert_eq!(t.state(), TerminalState::Ready);
                let got = t.working_keys().expect("keys after a sign-on");
                assert_eq!(got.mak().kcv(), keys.mak().kcv(), "another MAK adopted");
                assert_eq!(got.pik().kcv(), keys.pik().kcv(), "another PIK adopted");
            } else {
                assert!(
                    damaged
                        || code != "00"
                        || m.get(60).is_some_and(|f| f.get(2..8) == Some("000000")),
                    "an intact approved 0810 did not sign on: {r:?}"
                );
            }
            Ok(signed_on)
        }
        3 => {
            let mut h = host(p, true);
            let mut kc = h
                .request_key_change(&terminal_id(), local())
                .expect("the fixture host orders a key change")
                .to_vec();
            let damaged = tamper(u, &mut kc, 0)?;
            let r = t.handle_message(now, Bytes::from(kc));
            match &r {
                Ok(Inbound::KeyChangeRequested { .. }) => {
                    assert!(t.working_keys().is_none(), "keys kept after a key change");
                }
                _ => assert!(damaged, "an intact key change was not obeyed: {r:?}"),
            }
            Ok(r.is_ok())
        }
        _ => {
            let sealed = t.seal_request(now, sale(p, None)).expect("the sale seals");
            let req = Message::decode(&p.dialect, sealed.bytes).expect("the sale decodes");
            let mut resp = Message::response_to(&req).expect("response");
            resp.remove(52);
            resp.remove(53);
            let rrn: String = (0..12)
                .map(|_| u.int_in_range(b'0'..=b'9').map(char::from))
                .collect::<arbitrary::Result<_>>()?;
            resp.set(37, rrn.as_str()).expect("37");
            let code = response_code(u)?;
            resp.set(39, code.as_str()).expect("39");
            if code == "00" && u.arbitrary()? {
                resp.set(38, "123456").expect("38");
            }
            if p.dialect.name() == "cup-pos" {
                resp.set(12, "100001").expect("12");
                resp.set(13, "1125").expect("13");
            }
            let other_stan = crate::one_in(u, 8)?;
            if other_stan {
                let s = 1 + (sealed.stan.get() + u.int_in_range(1u32..=1000)?) % 999_999;
                resp.set(11, format!("{s:06}").as_str()).expect("11");
            }
            let (bytes, host_sealed) = if mode == 2 {
                let mut h = host(p, true);
                (h.seal_response(&mut resp).expect("the host seals"), true)
            } else if crate::one_in(u, 4)? {
                (resp.to_bytes().expect("response"), false)
            } else {
                let wrong = arbitrary_keys(p, u)?;
                (p.seal(wrong.mak(), &mut resp).expect("seal"), false)
            };
            let mut bytes = bytes.to_vec();
            let damaged = tamper(u, &mut bytes, 0)?;
            let r = t.handle_message(now, Bytes::from(bytes));
            let intact = host_sealed && !damaged;
            match r {
                Ok(Inbound::Verified(m)) => {
                    assert_eq!(
                        t.in_flight(),
                        0,
                        "a verified response left the sale in flight"
                    );
                    assert_eq!(m.get(11), Some(sealed.stan.to_string()));
                    Ok(true)
                }
                Ok(Inbound::MacFailure(f)) => {
                    assert!(
                        !intact,
                        "a response sealed by the host failed its MAC: {f:?}"
                    );
                    Ok(true)
                }
                Ok(Inbound::Unmatched { .. }) => {
                    assert!(!intact || other_stan, "an intact response matched nothing");
                    Ok(host_sealed)
                }
                other => {
                    assert!(
                        !intact,
                        "an intact host-sealed response was refused: {other:?}"
                    );
                    Ok(false)
                }
            }
        }
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
/// (encodes back to text that parses to the same header); bit 0 set, bit 7 clear: the
/// rest picks one of [`TR31_HEADERS`] and key bytes, the harness wraps them and the
/// block goes the same way (and must unwrap to that key); bits 0 and 7 set: the rest
/// is [`arbitrary`] input for a whole header (version, usage, algorithm, mode of use,
/// key version, exportability, optional blocks), a key and its padding
/// ([`arbitrary_key_block`]), wrapped under the version's fixture KBPK, which must
/// unwrap to that header and key; one in eight of those blocks then has one character
/// changed. Reached: a block unwrapped under a fixture KBPK (its MAC verified).
pub fn tr31_block(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    if ctl & 1 == 0 {
        return tr31_text(&String::from_utf8_lossy(rest));
    }
    if ctl & 0x80 != 0 {
        let mut u = arbitrary::Unstructured::new(rest);
        return match arbitrary_key_block(&mut u) {
            Ok(text) => tr31_text(&text),
            Err(_) => false,
        };
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

const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn alnum2(u: &mut arbitrary::Unstructured<'_>, upper: bool) -> arbitrary::Result<[u8; 2]> {
    let set = if upper { &ALNUM[..36] } else { ALNUM };
    Ok([*u.choose(set)?, *u.choose(set)?])
}

fn arbitrary_header(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Header> {
    use tr31::{Algorithm, Exportability, KeyUsage, ModeOfUse, OptionalBlock, Version};
    let version = *u.choose(&[Version::A, Version::B, Version::C, Version::D])?;
    let key_usage = if !crate::one_in(u, 8)? {
        *u.choose(&[
            KeyUsage::BDK,
            KeyUsage::DUKPT_INITIAL_KEY,
            KeyUsage::BASE_KEY_VARIANT,
            KeyUsage::CVK,
            KeyUsage::DATA_ENCRYPTION,
            KeyUsage::KEK,
            KeyUsage::KBPK,
            KeyUsage::MAC_ISO16609,
            KeyUsage::MAC_ALG1,
            KeyUsage::MAC_ALG3,
            KeyUsage::MAC_CMAC,
            KeyUsage::PIN_ENCRYPTION,
            KeyUsage::PIN_VERIFICATION,
            KeyUsage::PIN_VERIFICATION_IBM3624,
            KeyUsage::PIN_VERIFICATION_VISA_PVV,
        ])?
    } else {
        KeyUsage::new(alnum2(u, true)?).expect("upper-case letters and digits")
    };
    let algorithm = *u.choose(&[Algorithm::Tdes, Algorithm::Des, Algorithm::Aes])?;
    let mode_of_use = ModeOfUse::from_byte(*u.choose(b"BCDEGNSTVXY")?).expect("a mode of use");
    let key_version = if u.arbitrary()? {
        *b"00"
    } else {
        alnum2(u, false)?
    };
    let exportability = Exportability::from_byte(*u.choose(b"ENS")?).expect("an exportability");
    let reserved = if !crate::one_in(u, 8)? {
        *b"00"
    } else {
        alnum2(u, false)?
    };
    let mut optional_blocks = Vec::new();
    for _ in 0..u.int_in_range(0u8..=3)? {
        let id = if !crate::one_in(u, 4)? {
            *u.choose(&[
                *b"KS", *b"KC", *b"KP", *b"TS", *b"IK", *b"HM", *b"DA", *b"CT",
            ])?
        } else {
            alnum2(u, false)?
        };
        if &id == b"PB" {
            continue;
        }
        let len = if crate::one_in(u, 16)? {
            u.int_in_range(250usize..=300)?
        } else {
            u.int_in_range(0usize..=40)?
        };
        let mut data = String::with_capacity(len);
        for _ in 0..len {
            data.push(char::from(u.int_in_range(0x20u8..=0x7E)?));
        }
        let id = std::str::from_utf8(&id).expect("ASCII");
        optional_blocks
            .push(OptionalBlock::new(id, &data).expect("alphanumeric ID, printable data"));
    }
    Ok(Header {
        version,
        key_usage,
        algorithm,
        mode_of_use,
        key_version,
        exportability,
        reserved,
        optional_blocks,
    })
}

/// A key block built from `u` ([`tr31_block`]'s structured mode): an arbitrary header,
/// a key of its algorithm and padding, wrapped under the version's fixture KBPK
/// ([`tr31_kbpks`]: TDES for A, B, C; AES for D) with `wrap_with_padding`; asserts that
/// it unwraps to that header and key. One in eight then has one character replaced.
pub fn arbitrary_key_block(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<String> {
    use tr31::{Algorithm, Version};
    let header = arbitrary_header(u)?;
    let len = match header.algorithm {
        Algorithm::Des => 8,
        Algorithm::Tdes => *u.choose(&[16usize, 24])?,
        _ => *u.choose(&[16usize, 24, 32])?,
    };
    let mut material = [0u8; 32];
    u.fill_buffer(&mut material[..len])?;
    let key = match header.algorithm {
        Algorithm::Aes => Key::aes(&material[..len]),
        _ => Key::des_or_tdes(&material[..len]),
    }
    .expect("a key of a valid length");
    let block = header.version.block_len();
    let longest: usize = if header.algorithm == Algorithm::Aes {
        32
    } else {
        24
    };
    let pad_len = (2 + longest).div_ceil(block) * block - 2 - len;
    let mut padding = vec![0u8; pad_len];
    u.fill_buffer(&mut padding)?;
    let kbpks = tr31_kbpks();
    let kbpk = &kbpks[usize::from(header.version == Version::D)];
    let text =
        tr31::wrap_with_padding(kbpk, &header, &key, &padding).expect("a valid header wraps");
    let unwrapped = tr31::unwrap(kbpk, &text).expect("a block wrapped here unwraps");
    // The same header, plus the padding block wrap adds when it is not aligned.
    let mut got = unwrapped.header().clone();
    got.optional_blocks.truncate(header.optional_blocks.len());
    assert_eq!(got, header, "a wrapped header unwrapped to another");
    assert_eq!(
        *unwrapped.into_key_unchecked().expose_secret(),
        material[..len].to_vec(),
        "a wrapped key unwrapped to another"
    );
    if !crate::one_in(u, 8)? {
        return Ok(text);
    }
    let mut bytes = text.into_bytes();
    let at = u.choose_index(bytes.len())?;
    let c = *u.choose(b"0123456789ABCDEFXZ ")?;
    bytes[at] = if bytes[at] == c { b'!' } else { c };
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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
