//! Reversal harnesses: the record format, the journal, the idempotency store and its
//! replay, engine recovery, counters files, the host-side reversal handler and the
//! settlement parsers.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use isoswitch_codec::Message;
use isoswitch_reversal::counters::LeaseRecord;
use isoswitch_reversal::journal::{parse_image, JournalRecord};
use isoswitch_reversal::record::{first_valid_record, RecordIter, MAGIC};
use isoswitch_reversal::sessions::SessionRecord;
use isoswitch_reversal::settlement::{parse_upload_field48, upload_field48};
use isoswitch_reversal::{
    BatchTotals, Decision, EngineConfig, FileCounters, FileStore, HostConfig, HostSettlement,
    IdempotencyStore, Iso87Totals, MemoryStore, NoMac, ReversalEngine, ReversalHandler,
    ReversalProfile, ReversalReason, SideTotals, StoreRecord, TxnKind, UploadEntry,
};
use isoswitch_session::counters::Counters;
use isoswitch_session::crypto::Key;
use isoswitch_session::{Kek, SealedSnapshot, TerminalId};

/// The reversal profiles the harnesses pick from (bit 0 of the first byte).
pub const PROFILES: [&str; 2] = ["cup-pos", "iso87-binary"];

/// The reversal profile `pick` selects.
pub fn profile(pick: u8) -> ReversalProfile {
    ReversalProfile::builtin(PROFILES[usize::from(pick & 1)]).expect("built-in profile")
}

/// A scratch file for harnesses that go through the file system (one per process and
/// thread, reused).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "isoswitch-fuzz-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::create_dir_all(&dir);
    dir.join(name)
}

/// The record stream of a record-format input. First byte bit 7 set: the rest is a list
/// of payloads, each behind a `u16` little-endian length, which the harness frames with
/// valid CRCs (so mutations reach the record decoders instead of failing the CRC); clear:
/// the rest is a framed stream as it is on disk.
pub fn record_stream(ctl: u8, rest: &[u8]) -> Vec<u8> {
    if ctl & 0x80 == 0 {
        return rest.to_vec();
    }
    let mut out = Vec::with_capacity(rest.len() + rest.len() / 4);
    let mut r = rest;
    while r.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([r[0], r[1]]));
        let take = n.min(r.len() - 2);
        let _ = isoswitch_reversal::record::frame(&r[2..2 + take], &mut out);
        r = &r[2 + take..];
    }
    out
}

/// The `u16`-length-prefixed form of `payloads` that [`record_stream`] frames.
pub fn payload_list(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(&(p.len() as u16).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// `journal_records` target: first byte as in [`record_stream`]; the stream as a journal
/// image (magic + framed records), as framed records and as one payload. What decodes
/// from a CRC-valid frame survives a round trip. Reached: a CRC-valid record decoded
/// (and round-tripped).
pub fn journal_records(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let stream = record_stream(ctl, rest);
    let data = &stream[..];
    let _ = JournalRecord::decode(data);
    let _ = StoreRecord::decode(data);
    let mut reached = false;
    for p in RecordIter::new(data).flatten() {
        if let Ok(r) = JournalRecord::decode(p) {
            let mut again = Vec::new();
            r.encode(&mut again);
            assert_eq!(JournalRecord::decode(&again).ok(), Some(r));
            reached = true;
        }
    }
    let mut image = MAGIC.to_vec();
    image.extend_from_slice(data);
    if let Ok((records, _)) = parse_image(&image) {
        let mut out = MAGIC.to_vec();
        for r in &records {
            let mut p = Vec::new();
            r.encode(&mut p);
            isoswitch_reversal::record::frame(&p, &mut out).expect("a decoded record frames");
        }
        assert_eq!(parse_image(&out).expect("re-framed image").0, records);
    }
    reached
}

/// `store_records` target: first byte as in [`record_stream`]; counters leases,
/// session-store records, sealed session snapshots (under a fixed key-encryption key)
/// and the damage scan. Reached: a CRC-valid record went through the lease and session
/// decoders (and what decoded round-tripped).
pub fn store_records(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let stream = record_stream(ctl, rest);
    let data = &stream[..];
    let _ = LeaseRecord::decode(data);
    if let Ok(r) = SessionRecord::decode(data) {
        let mut again = Vec::new();
        r.encode(&mut again);
        assert_eq!(SessionRecord::decode(&again).ok(), Some(r));
    }
    let _ = first_valid_record(data, 0);
    let mut reached = false;
    for p in RecordIter::new(data).flatten() {
        reached = true;
        if let Ok(l) = LeaseRecord::decode(p) {
            let mut again = Vec::new();
            l.encode(&mut again);
            assert_eq!(LeaseRecord::decode(&again).ok(), Some(l));
        }
        if let Ok(r) = SessionRecord::decode(p) {
            let mut again = Vec::new();
            r.encode(&mut again);
            assert_eq!(SessionRecord::decode(&again).ok(), Some(r));
        }
    }
    if let (Ok(key), Ok(terminal)) = (
        Key::aes(&[0x42; 32]),
        TerminalId::new("TERM0001", "MERCHANT0000001"),
    ) {
        if let Ok(kek) = Kek::new(&key) {
            let sealed = SealedSnapshot {
                terminal,
                generation: 1,
                bytes: data.to_vec(),
            };
            let _ = sealed.open(&kek);
        }
    }
    reached
}

fn replay(records: &[StoreRecord]) -> (MemoryStore, usize) {
    let mut s = MemoryStore::new();
    let mut refused = 0;
    for r in records {
        if s.commit(r.clone()).is_err() {
            refused += 1;
        }
    }
    (s, refused)
}

fn same_state(a: &MemoryStore, b: &MemoryStore) {
    assert_eq!(a.ledger(), b.ledger());
    let mut x: Vec<_> = a.entries().collect();
    let mut y: Vec<_> = b.entries().collect();
    x.sort_by(|p, q| format!("{:?}", p.0).cmp(&format!("{:?}", q.0)));
    y.sort_by(|p, q| format!("{:?}", p.0).cmp(&format!("{:?}", q.0)));
    assert_eq!(x, y);
}

/// `store_replay` target: first byte as in [`record_stream`]; the stream as the records
/// of a host store. Replayed twice
/// into fresh stores they give the same state (ledger and entries); the compacted
/// records rebuild it; `FileStore::open` on the same file never panics and, when no
/// record overflows, holds the same ledger. Reached: at least one record replayed.
pub fn store_replay(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let stream = record_stream(ctl, rest);
    let data = &stream[..];
    let records: Vec<StoreRecord> = RecordIter::new(data)
        .flatten()
        .filter_map(|p| StoreRecord::decode(p).ok())
        .collect();
    let (a, refused) = replay(&records);
    let (b, _) = replay(&records);
    same_state(&a, &b);
    // Compaction keeps each key's last original and reversal; the ledger counted every
    // record. A stream that repeats one for a key (no handler writes that; a damaged or
    // crafted store) is therefore not compared: known limitation, see the README.
    let mut seen = std::collections::HashSet::new();
    let repeats = records.iter().any(|r| match r {
        StoreRecord::Original { key, .. } => !seen.insert((0u8, key.clone())),
        StoreRecord::Reversal { key, .. } => !seen.insert((1u8, key.clone())),
        StoreRecord::Admitted { .. } => false,
    });
    if !repeats {
        let (c, refused_c) = replay(&a.records());
        // The ledger adds exactly or refuses: near `Decimal::MAX` a sum that was exact in
        // the original order may not be in the compacted order (then it is refused, never
        // rounded). Amounts a real store holds are far from that.
        if refused_c == 0 {
            same_state(&a, &c);
        }
    }
    let path = scratch("replay.store");
    let mut image = MAGIC.to_vec();
    image.extend_from_slice(data);
    if std::fs::write(&path, &image).is_ok() {
        match FileStore::open(&path) {
            Ok(f) => {
                if refused == 0 {
                    assert_eq!(f.ledger(), a.ledger());
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    !records.is_empty()
}

/// `engine_recovery` target: the decodable records of a record stream (first byte: bit 0
/// the profile, bit 7 as in [`record_stream`]) recovered into an engine twice give the same live state; the engine's
/// snapshot recovers again. Reached: recovery succeeded over at least one record.
pub fn engine_recovery(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let p = profile(ctl);
    let stream = record_stream(ctl, rest);
    let records: Vec<JournalRecord> = RecordIter::new(&stream)
        .flatten()
        .filter_map(|p| JournalRecord::decode(p).ok())
        .collect();
    let now = Instant::now();
    let recover = |records: Vec<JournalRecord>| {
        ReversalEngine::recover(
            now,
            EngineConfig::default(),
            p.clone(),
            NoMac::new(p.dialect.clone()),
            1,
            records,
        )
    };
    let first = recover(records.clone());
    let second = recover(records.clone());
    match (first, second) {
        (Ok(a), Ok(b)) => {
            let snap = a.snapshot();
            assert_eq!(snap, b.snapshot(), "recovery is not deterministic");
            assert_eq!(a.pending_reversals(), b.pending_reversals());
            assert_eq!(a.totals(), b.totals());
            let c = recover(snap).expect("an engine's snapshot recovers");
            assert_eq!(c.pending_reversals(), a.pending_reversals());
            !records.is_empty()
        }
        (Err(x), Err(y)) => {
            assert_eq!(x.to_string(), y.to_string());
            false
        }
        (x, y) => panic!(
            "recovery succeeded once only: {:?} / {:?}",
            x.err(),
            y.err()
        ),
    }
}

/// `counters_file` target: bytes as a counters file (first byte bit 0: the magic is
/// prepended; bit 7 as in [`record_stream`]). Opening never panics; opened twice it
/// gives the same state; a STAN taken before a restart is not handed out again after
/// it. Reached: the file had a CRC-valid record (the lease decoder and the replay ran).
pub fn counters_file(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let mut image = Vec::new();
    if ctl & 1 == 1 {
        image.extend_from_slice(MAGIC);
    }
    image.extend_from_slice(&record_stream(ctl, rest));
    let path = scratch("fuzz.counters");
    if std::fs::write(&path, &image).is_err() {
        return false;
    }
    let has_record = RecordIter::new(image.get(MAGIC.len()..).unwrap_or(&[]))
        .flatten()
        .next()
        .is_some();
    let state = match FileCounters::open_with(&path, 10) {
        Ok(c) => c.state(),
        Err(e) => {
            let _ = e.to_string();
            return has_record;
        }
    };
    let mut c = FileCounters::open_with(&path, 10).expect("a file that opened opens again");
    assert_eq!(c.state(), state, "reopening changed the state");
    let Ok(s1) = c.next_stan() else {
        return has_record;
    };
    drop(c);
    let mut c = FileCounters::open_with(&path, 10).expect("counters reopen");
    let s2 = c.next_stan().expect("next STAN");
    assert_ne!(s1, s2, "a STAN was handed out twice across a restart");
    has_record
}

/// A sale, reversal, advice or authorization of the fixture terminal with the STAN,
/// amount, PAN digits and processing code taken from `e` (the structured inputs of
/// [`reversal_handler`]).
fn built_request(pick: u8, e: &mut isoswitch_codec::random::Entropy<'_>) -> Option<Vec<u8>> {
    let sp = crate::session::profile(pick);
    let rp = profile(pick);
    let stan = 1 + (u32::from(e.byte()) << 8 | u32::from(e.byte())) % 999_999;
    let mut m = crate::session::sale(&sp, Some(stan));
    let amount: u64 = (0..5).fold(0, |a, _| a * 256 + u64::from(e.byte())) % 1_000_000_000_000;
    m.set(4, format!("{amount:012}")).ok()?;
    let pan: String = (0..16).map(|_| char::from(b'0' + e.byte() % 10)).collect();
    m.set(2, pan).ok()?;
    m.set(3, ["000000", "200000", "310000", "020000"][e.below(4)])
        .ok()?;
    m.set(41, "TERM0001").ok()?;
    m.set(42, "MERCHANT0000001").ok()?;
    let m = match e.below(4) {
        0 => rp.build_reversal(&m, ReversalReason::NoResponse).ok()?,
        1 => {
            m.set_mti("0220".parse().ok()?);
            m
        }
        2 => {
            m.set_mti("0100".parse().ok()?);
            m
        }
        _ => m,
    };
    m.to_bytes().ok().map(|b| b.to_vec())
}

/// `reversal_handler` target: the host's reversal handler on an arbitrary message
/// (first byte: bit 0 the profile; bit 7 structured — the rest is entropy for a series
/// of requests of the fixture terminal, `built_request`, handled in turn — else the
/// message bytes). Handled twice, the second answer
/// has the same response code (or the configured duplicate code) and leaves the ledger as the first left it. Reached: the
/// first was handled (an answer was decided).
pub fn reversal_handler(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let p = profile(ctl);
    let mut h = ReversalHandler::new(p.clone(), MemoryStore::new(), HostConfig::default());
    if ctl & 0x80 != 0 {
        let mut e = isoswitch_codec::random::Entropy::new(rest);
        let mut reached = false;
        for _ in 0..8 {
            let Some(b) = built_request(ctl, &mut e) else {
                break;
            };
            let msg = Message::decode(&p.dialect, Bytes::from(b)).expect("a built request decodes");
            reached |= handle_twice(&mut h, &msg);
        }
        return reached;
    }
    let Ok(msg) = Message::decode(&p.dialect, Bytes::copy_from_slice(rest)) else {
        return false;
    };
    handle_twice(&mut h, &msg)
}

fn handle_twice(h: &mut ReversalHandler<MemoryStore>, msg: &Message) -> bool {
    let approve = |_: &Message, _: &_| Decision::Approve {
        auth_code: Some("123456".into()),
    };
    let Ok(first) = h.handle(msg, approve) else {
        return false;
    };
    let ledger = h.ledger().clone();
    let second = h
        .handle(msg, approve)
        .expect("a request handled once is handled again");
    let dup = HostConfig::default().duplicate_code;
    let code = second.get(39);
    assert!(
        code == first.get(39) || code.as_deref().map(str::as_bytes) == Some(&dup[..]),
        "a duplicate is answered {code:?} after {:?}",
        first.get(39)
    );
    assert_eq!(h.ledger(), &ledger, "a duplicate changed the ledger");
    true
}

fn side(e: &mut isoswitch_codec::random::Entropy<'_>) -> SideTotals {
    let mut n = |k: usize| (0..k).fold(0u64, |a, _| a * 256 + u64::from(e.byte()));
    SideTotals {
        debit_count: (n(2) % 1000) as u32,
        debit_amount: rust_decimal::Decimal::new((n(5) % 1_000_000_000_000) as i64, 2),
        credit_count: (n(2) % 1000) as u32,
        credit_amount: rust_decimal::Decimal::new((n(5) % 1_000_000_000_000) as i64, 2),
    }
}

/// What a structured `settlement` input (bit 7) stands for: totals, upload entries or
/// DE 74–89 made from the entropy and written the way the terminal or the host writes
/// them, for the parser `which` to read back.
fn settlement_input(which: u8, rest: &[u8]) -> Vec<u8> {
    let mut e = isoswitch_codec::random::Entropy::new(rest);
    let totals = |e: &mut isoswitch_codec::random::Entropy<'_>| BatchTotals {
        domestic: side(e),
        foreign: side(e),
    };
    match which {
        0 => totals(&mut e)
            .to_field48(e.byte() % 3, e.byte() % 2)
            .into_bytes(),
        1 => {
            let n = 1 + e.below(8);
            let entries: Vec<UploadEntry> = (0..n)
                .map(|_| UploadEntry {
                    foreign: e.byte() & 1 == 1,
                    stan: 1 + u32::from(e.byte()) * 997 % 999_999,
                    pan: (0..16).map(|_| char::from(b'0' + e.byte() % 10)).collect(),
                    amount: rust_decimal::Decimal::new(i64::from(e.byte()) * 1234, 2),
                    kind: TxnKind::Debit,
                })
                .collect();
            upload_field48(&entries).unwrap_or_default().into_bytes()
        }
        2 => {
            let t = totals(&mut e);
            let mut x = Iso87Totals::default();
            for (kind, amount) in [
                (TxnKind::Debit, t.domestic.debit_amount),
                (TxnKind::Credit, t.domestic.credit_amount),
            ] {
                let _ = x.add(kind, amount, e.byte() & 1 == 1);
            }
            let p = profile(1);
            let mut m = Message::new(&p.dialect, "0500".parse().expect("mti"));
            let _ = x.apply(&mut m, 2);
            m.to_bytes().map(|b| b.to_vec()).unwrap_or_default()
        }
        _ => {
            let p = profile(0);
            let upload = e.byte() & 1 == 1;
            let mut m = Message::new(
                &p.dialect,
                if upload { "0320" } else { "0500" }.parse().expect("mti"),
            );
            for (n, v) in [(11, "000009"), (41, "TERM0001"), (42, "MERCHANT0000001")] {
                let _ = m.set(n, v);
            }
            let f48 = settlement_input(u8::from(upload), e.rest());
            let _ = m.set(48, String::from_utf8_lossy(&f48).into_owned());
            let _ = m.set(60, "00000007201");
            m.to_bytes().map(|b| b.to_vec()).unwrap_or_default()
        }
    }
}

/// `settlement` target: first byte picks the parser — 0: field 48 totals (`0500`), 1:
/// batch upload entries (`0320`), 2: ISO 1987 reconciliation totals (DE 74–89) of an
/// `iso87-binary` message, 3: the host-side settlement handler on a `cup-pos` message;
/// bit 7: the rest is entropy for a valid input of that parser (`settlement_input`).
/// What parses re-encodes to text that parses to the same values. Reached: the
/// chosen parser accepted the input.
pub fn settlement(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let made;
    let rest = if ctl & 0x80 != 0 {
        made = settlement_input(ctl % 4, rest);
        &made[..]
    } else {
        rest
    };
    match ctl % 4 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return false;
            };
            let Ok((t, f1, f2)) = BatchTotals::parse_field48(text) else {
                return false;
            };
            let again = t.to_field48(f1, f2);
            assert_eq!(
                BatchTotals::parse_field48(&again).expect("re-encoded totals parse"),
                (t, f1, f2)
            );
            true
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return false;
            };
            let Ok(entries) = parse_upload_field48(text) else {
                return false;
            };
            if let Ok(again) = upload_field48(&entries) {
                assert_eq!(
                    parse_upload_field48(&again).expect("re-encoded entries parse"),
                    entries
                );
            }
            true
        }
        2 => {
            let p = profile(1);
            let Ok(msg) = Message::decode(&p.dialect, Bytes::copy_from_slice(rest)) else {
                return false;
            };
            let Ok(t) = Iso87Totals::from_message(&msg, 2) else {
                return false;
            };
            let _ = t.net();
            let mut out = Message::new(&p.dialect, msg.mti());
            if t.apply(&mut out, 2).is_ok() {
                let back = Iso87Totals::from_message(&out, 2).expect("written totals read");
                assert_eq!(back, t);
            }
            true
        }
        _ => {
            let p = profile(0);
            let Ok(msg) = Message::decode(&p.dialect, Bytes::copy_from_slice(rest)) else {
                return false;
            };
            let mut h = HostSettlement::new(BatchTotals::default());
            h.handle(&msg).is_ok()
        }
    }
}

/// `shared_journal` target: first byte as in [`record_stream`]; the stream as a shared
/// journal's payloads (member records and snapshots) and as a file opened by
/// [`SharedJournal::open_sealed`](isoswitch_reversal::SharedJournal::open_sealed). A parsed payload whose records decode re-encodes to
/// the same bytes; a file that opens gives the same members and records when opened again
/// (replay is idempotent; the torn tail was cut the first time). Reached: a CRC-valid
/// payload parsed with every record in it decoded.
pub fn shared_journal(data: &[u8]) -> bool {
    use isoswitch_reversal::shared_journal::{
        member_payload, parse_payload, snapshot_payload, SharedPayload,
    };
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let stream = record_stream(ctl, rest);
    let mut reached = false;
    // A payload as (member, snapshot?, decoded records).
    let decoded = |p: &[u8]| -> Option<(String, bool, Vec<JournalRecord>)> {
        let (member, snapshot, raw) = match parse_payload(p).ok()? {
            SharedPayload::Record { member, record } => (member, false, vec![record]),
            SharedPayload::Snapshot { member, records } => (member, true, records),
        };
        let recs = raw
            .into_iter()
            .map(JournalRecord::decode)
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        Some((member.to_owned(), snapshot, recs))
    };
    for p in RecordIter::new(&stream).flatten() {
        let Some((member, snapshot, recs)) = decoded(p) else {
            continue;
        };
        let mut again = Vec::new();
        if snapshot {
            snapshot_payload(&member, &recs, &mut again);
        } else {
            // A member record holds exactly one record.
            for r in &recs {
                member_payload(&member, r, &mut again);
            }
        }
        assert_eq!(
            decoded(&again),
            Some((member, snapshot, recs)),
            "a shared journal payload round-trips"
        );
        reached = true;
    }
    let mut image = MAGIC.to_vec();
    image.extend_from_slice(&stream);
    let path = scratch("fuzz.journals");
    if std::fs::write(&path, &image).is_err() {
        return reached;
    }
    let read = |path: &std::path::Path| {
        isoswitch_reversal::SharedJournal::open_sealed(path, None).map(|mut j| {
            let mut names: Vec<String> = j.untaken().map(str::to_owned).collect();
            names.sort();
            names
                .into_iter()
                .map(|n| {
                    let recs = j.take(&n).unwrap_or_default();
                    (n, recs)
                })
                .collect::<Vec<_>>()
        })
    };
    match read(&path) {
        Ok(first) => {
            let second = read(&path).expect("a shared journal that opened opens again");
            assert_eq!(first, second, "replay of a shared journal is idempotent");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    reached
}
