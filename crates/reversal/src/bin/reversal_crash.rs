//! Crash-test subject: a terminal (sans-IO engine + file journal) and a host
//! (handler + file store) in one process, talking over a lossy in-process "network".
//! The integration test `tests/crash.rs` kills it with SIGKILL at chosen phases and
//! restarts it on the same directory until it finishes, then checks the ledger.
//!
//! Usage: `reversal_crash DIR SEED TXNS [PHASE:N]` — with `PHASE:N`, the N-th time
//! `PHASE` is reached it prints `PAUSED` and waits to be killed. Prints `PHASE name`
//! at each phase and `RESULT host=… terminal=… pending=… started=…` at the end.

use bytes::Bytes;
use isoswitch_codec::Message;
use isoswitch_reversal::*;
use isoswitch_session::crypto::Key;
use isoswitch_session::SessionProfile;
use rust_decimal::Decimal;
use std::io::Write;
use std::time::{Duration, Instant};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

struct Phases {
    target: Option<(String, u32)>,
    seen: std::collections::HashMap<&'static str, u32>,
}

impl Phases {
    fn at(&mut self, name: &'static str) {
        let n = self.seen.entry(name).or_insert(0);
        *n += 1;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "PHASE {name}");
        if let Some((t, k)) = &self.target {
            if t == name && *k == *n {
                let _ = writeln!(out, "PAUSED");
                let _ = out.flush();
                drop(out);
                std::thread::sleep(Duration::from_secs(60));
                std::process::exit(3);
            }
        }
        let _ = out.flush();
    }
}

fn mac() -> ProfileMac {
    let key = Key::des(&[0x22; 8]).expect("key");
    ProfileMac::new(SessionProfile::cup_pos().expect("profile"), key)
}

fn sale(profile: &ReversalProfile, id: u64) -> Message {
    let mut m = Message::new(&profile.dialect, "0200".parse().expect("mti"));
    let cents = 100 + (id * 7919) % 90_000;
    let pan = format!("62220200000000{:02}", id % 5);
    m.set(2, pan).expect("2");
    m.set(3, "000000").expect("3");
    m.set_amount(4, Decimal::new(cents as i64, 2), 156)
        .expect("4");
    m.set(41, "TERM0001").expect("41");
    m.set(42, "MERCHANT0000001").expect("42");
    m.set(49, "156").expect("49");
    m
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: reversal_crash DIR SEED TXNS [PHASE:N]");
        std::process::exit(2);
    }
    let dir = std::path::PathBuf::from(&args[1]);
    let seed: u64 = args[2].parse().expect("seed");
    let txns: u64 = args[3].parse().expect("txns");
    let target = args.get(4).and_then(|s| {
        let (p, n) = s.split_once(':')?;
        Some((p.to_string(), n.parse().ok()?))
    });
    let mut phases = Phases {
        target,
        seen: Default::default(),
    };
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);

    let profile = ReversalProfile::cup_pos().expect("profile");
    let mut journal = FileJournal::open(dir.join("terminal.journal")).expect("journal");
    let records = journal.load().expect("load");
    let mut started = 0u64;
    for r in &records {
        match r {
            JournalRecord::Started { id, .. } => started = started.max(*id),
            JournalRecord::Counters { next_id, .. } => started = started.max(next_id - 1),
            _ => {}
        }
    }
    let mut now = Instant::now();
    let config = EngineConfig {
        response_timeout: Duration::from_secs(30),
        reversal_timeout: Duration::from_secs(30),
        ..EngineConfig::default()
    };
    let mut engine =
        ReversalEngine::recover(now, config, profile.clone(), mac(), 1, records).expect("recover");
    let mut host = ReversalHandler::new(
        profile.clone(),
        FileStore::open(dir.join("host.store")).expect("store"),
        HostConfig::default(),
    );
    let mut host_mac = mac();
    let mut late: Vec<Bytes> = Vec::new();
    let mut appends = 0u32;

    loop {
        if started < txns && engine.in_flight() == 0 && engine.pending_reversals() == 0 {
            started += 1;
            engine.submit(now, sale(&profile, started)).expect("submit");
        }
        let recs: Vec<_> = std::iter::from_fn(|| engine.poll_journal()).collect();
        let mut progressed = false;
        if !recs.is_empty() {
            let has_start = recs
                .iter()
                .any(|r| matches!(r, JournalRecord::Started { .. }));
            if has_start {
                phases.at("before_journal");
            }
            journal.append(&recs).expect("append");
            if has_start {
                phases.at("after_journal");
            }
            engine.handle_journaled(now, engine.journal_seq());
            appends += 1;
            if appends.is_multiple_of(7) {
                phases.at("compaction");
                journal.compact(&engine.snapshot()).expect("compact");
            }
            progressed = true;
        }
        while let Some(t) = engine.poll_transmit() {
            progressed = true;
            let original = t.kind == TransmitKind::Original;
            if rng.chance(if original { 15 } else { 25 }) {
                continue; // request lost
            }
            let req = Message::decode(&profile.dialect, t.bytes.clone()).expect("decode");
            let mut resp = host
                .handle(&req, |_, _| Decision::Approve { auth_code: None })
                .expect("host");
            let mut bytes = host_mac.seal(&mut resp).expect("seal");
            phases.at(if original {
                "after_send"
            } else {
                "during_reversal"
            });
            let roll = rng.next() % 100;
            if roll < 20 {
                continue; // response lost
            } else if original && roll < 30 {
                late.push(bytes); // arrives after the timeout
            } else if original && roll < 35 {
                let mut v = bytes.to_vec();
                if let Some(last) = v.last_mut() {
                    *last ^= 0x01;
                }
                bytes = Bytes::from(v);
                engine.handle_response(now, t.id, bytes);
            } else {
                engine.handle_response(now, t.id, bytes);
            }
        }
        while engine.poll_event().is_some() {}
        if progressed {
            continue;
        }
        if started >= txns && engine.in_flight() == 0 && engine.pending_reversals() == 0 {
            break;
        }
        if let Some(t) = engine.poll_timeout() {
            now = now.max(t);
            engine.handle_timeout(now);
            for b in late.drain(..) {
                engine.handle_late(now, b);
            }
        } else {
            engine.handle_connected(now);
        }
    }

    // Settlement of the open batch, if it has anything.
    let (totals, entries) = engine.settlement_data().expect("settlement data");
    if !entries.is_empty() {
        let batch = engine.batch();
        let host_totals = host.batch_totals("TERM0001", "MERCHANT0000001", batch);
        let mut hs = HostSettlement::new(host_totals);
        let stan = engine.next_stan();
        let mut st = Settlement::new(
            SettlementConfig::new("TERM0001", "MERCHANT0000001"),
            profile.dialect.clone(),
            batch,
            totals,
            entries,
            stan,
        )
        .expect("settlement");
        while st.state() != SettlementState::Done {
            if let Some(b) = st.poll_transmit(now) {
                let req = Message::decode(&profile.dialect, b).expect("decode");
                let resp = if req.mti().as_u16() == 820 {
                    let mut r = Message::response_to(&req).expect("0830");
                    r.set(39, "00").expect("39");
                    r
                } else {
                    hs.handle(&req).expect("host settlement")
                };
                phases.at("during_settlement");
                if rng.chance(10) {
                    continue;
                }
                st.handle_response(now, resp.to_bytes().expect("enc"))
                    .expect("answer");
            } else if let Some(t) = st.poll_timeout() {
                now = now.max(t);
                st.handle_timeout(now);
                assert_ne!(st.state(), SettlementState::Failed);
            }
        }
        let next = st.outcome().map(|o| o.next_batch).unwrap_or(batch + 1);
        engine.close_batch(next).expect("close");
        phases.at("before_close_journal");
        let recs: Vec<_> = std::iter::from_fn(|| engine.poll_journal()).collect();
        journal.append(&recs).expect("append");
        engine.handle_journaled(now, engine.journal_seq());
    }
    let _ = &mut host_mac;
    println!(
        "RESULT host={} terminal={} pending={} started={} late={}",
        host.ledger().total(),
        engine.lifetime_net(),
        engine.pending_reversals(),
        started,
        engine.stats().late_responses
    );
}
