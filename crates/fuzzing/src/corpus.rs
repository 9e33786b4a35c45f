//! The seed corpora: for each target, inputs that reach its main property (valid
//! messages of every dialect from the committed vectors and from
//! [`isoswitch_codec::random`], sign-ons and requests MACed under the fixture keys,
//! framed journal and store records with valid CRCs...), plus a few that do not.
//!
//! `cargo run -p isoswitch-fuzzing --example make_corpus` writes them to
//! `fuzz/corpus/<target>/seed-NNNN` (replacing earlier seeds, keeping what fuzzing
//! added). PIN blocks and host-generated working keys are random: the bytes differ
//! between runs, what they reach does not.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use isoswitch_codec::random::{self, Entropy};
use isoswitch_codec::tlv::{Tag, TlvBuilder};
use isoswitch_codec::{json, Dialect, Message, MessageView, Mti};
use isoswitch_hsm::thales::codec::{Command, CommandCode};
use isoswitch_hsm::thales::server::{handle_message, ServerConfig};
use isoswitch_net::{FrameCodec, Framing};
use isoswitch_reversal::counters::LeaseRecord;
use isoswitch_reversal::journal::{Finish, JournalRecord};
use isoswitch_reversal::record::{frame, MAGIC};
use isoswitch_reversal::settlement::upload_field48;
use isoswitch_reversal::{
    BatchTotals, Decimal, Decision, EngineConfig, HostConfig, Iso87Totals, MemoryStore, NoMac,
    ReversalEngine, ReversalHandler, ReversalReason, SideTotals, UploadEntry,
};
use isoswitch_session::counters::{BatchNumber, Stan};
use isoswitch_session::crypto::keys::Key;
use isoswitch_session::crypto::pin::{Fill, Pan, Pin, PinBlock, PinBlockFormat};
use isoswitch_session::crypto::tr31::{self, Header};
use isoswitch_session::{HostOutcome, TerminalSnapshot};
use tokio_util::codec::Encoder;

use crate::session::{self, local, terminal_id};

/// A tiny deterministic generator (xorshift) for seed bytes.
struct Rng(u64);

impl Rng {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 24) as u8
            })
            .collect()
    }
}

fn with(ctl: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![ctl];
    v.extend_from_slice(rest);
    v
}

fn framed(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        frame(p, &mut out).expect("record fits");
    }
    out
}

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .filter_map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn repo_file(rel: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_default()
}

/// Hex of the first `n` vectors of a pyiso8583 JSONL file (tests/vectors/pyiso8583).
fn vectors(file: &str, n: usize) -> Vec<Vec<u8>> {
    repo_file(&format!("tests/vectors/pyiso8583/{file}"))
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("hex").and_then(|h| h.as_str()).map(unhex))
        .take(n)
        .collect()
}

/// Random valid messages of a built-in dialect.
fn messages(dialect: &str, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let d = Dialect::builtin(dialect).expect("built-in dialect");
    let mut rng = Rng(seed);
    (0..n)
        .filter_map(|i| {
            let src = rng.bytes(64 + 16 * (i % 24));
            let m = random::message(&d, &mut Entropy::new(&src));
            m.to_bytes().ok().map(|b| b.to_vec())
        })
        .collect()
}

fn decode_seeds(dialect: &str, vector_file: Option<&str>) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    if let Some(f) = vector_file {
        v.extend(vectors(&format!("{f}.jsonl"), 40));
        v.extend(vectors(&format!("{f}.invalid.jsonl"), 5));
    }
    v.extend(messages(dialect, 40, 0x5EED ^ dialect.len() as u64));
    v
}

fn sale_bytes(p: &isoswitch_session::SessionProfile, stan: u32) -> Vec<u8> {
    let mut m = session::sale(p, Some(stan));
    m.set(41, terminal_id().terminal()).expect("41");
    m.set(42, terminal_id().merchant()).expect("42");
    m.to_bytes().expect("sale").to_vec()
}

fn host_request() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for pick in 0..2u8 {
        let p = session::profile(pick);
        let mak = session::working_keys(&p);
        for stan in 1..=20u32 {
            let plain = sale_bytes(&p, stan);
            // Seal mode: the harness MACs it.
            out.push(with(2 | pick, &plain));
            // Raw mode: MACed here under the fixture key.
            let mut m = Message::decode(&p.dialect, Bytes::from(plain)).expect("sale decodes");
            let sealed = p.seal(mak.mak(), &mut m).expect("seal");
            out.push(with(pick, &sealed));
        }
        // A reversal and an advice, sealed.
        for mti in ["0400", "0220", "0100"] {
            let mut m = session::sale(&p, Some(77));
            m.set_mti(mti.parse::<Mti>().expect("mti"));
            m.set(41, terminal_id().terminal()).expect("41");
            m.set(42, terminal_id().merchant()).expect("42");
            out.push(with(2 | pick, &m.to_bytes().expect("encode")));
        }
        // Before sign-on: the sign-on and an echo of a fresh terminal, and a sale.
        let now = Instant::now();
        let mut t = session::terminal(&p, false);
        out.push(with(4 | pick, &t.sign_on(now, local()).expect("sign-on")));
        out.push(with(4 | 2 | pick, &sale_bytes(&p, 5)));
        let mut t2 = session::terminal(&p, true);
        if let Ok(e) = t2.echo(now, local()) {
            out.push(with(pick, &e));
        }
    }
    out
}

fn terminal_answer() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for pick in 0..2u8 {
        let p = session::profile(pick);
        let now = Instant::now();
        // Mode 0: the 0810 a host sends for the fixture terminal's sign-on.
        for _ in 0..6 {
            let mut t = session::terminal(&p, false);
            let req = t.sign_on(now, local()).expect("sign-on");
            let mut h = session::host(&p, false);
            if let Ok(HostOutcome::Replied { reply, .. }) = h.handle_request(local(), req) {
                out.push(with(pick, &reply));
            }
        }
        // Modes 1 and 2: responses to the in-flight sale.
        for code in ["00", "05", "51", "55", "A0"] {
            let mut t = session::terminal(&p, true);
            let sealed = t.seal_request(now, session::sale(&p, None)).expect("seal");
            let mut h = session::host(&p, true);
            let Ok(HostOutcome::Accepted(acc)) = h.handle_request(local(), sealed.bytes) else {
                continue;
            };
            let mut resp = Message::response_to(&acc.message).expect("response");
            resp.set(37, "000000000042").expect("37");
            resp.set(39, code).expect("39");
            if code == "00" {
                resp.set(38, "123456").expect("38");
            }
            if p.dialect.name() == "cup-pos" {
                resp.set(12, "100001").expect("12");
                resp.set(13, "1125").expect("13");
            }
            out.push(with(4 | pick, &resp.to_bytes().expect("plain")));
            let sealed = h.seal_response(&mut resp).expect("seal response");
            out.push(with(2 | pick, &sealed));
        }
        // Mode 3: a key change ordered by the host, and an echo answer.
        let mut h = session::host(&p, true);
        if let Ok(kc) = h.request_key_change(&terminal_id(), local()) {
            out.push(with(6 | pick, &kc));
        }
    }
    out
}

fn pin_blocks() -> Vec<Vec<u8>> {
    let pan = Pan::new("4111111111111111").expect("pan");
    let mut out = Vec::new();
    for pin in ["1234", "0000", "987654", "123456789012"] {
        let pin = Pin::new(pin).expect("pin");
        for (f, key) in [
            (PinBlockFormat::Iso0, session::pin_tdes()),
            (PinBlockFormat::Iso1, session::pin_tdes()),
            (PinBlockFormat::Iso3, session::pin_tdes()),
            (PinBlockFormat::Iso4, session::pin_aes()),
        ] {
            let b = PinBlock::encipher(f, &pin, Some(&pan), &key, Fill::Random).expect("block");
            out.push(with(0, b.as_bytes()));
        }
    }
    for (i, digits) in ["1234", "00000", "987654", "123456789012"]
        .iter()
        .enumerate()
    {
        let mut v = vec![1, i as u8];
        v.extend_from_slice(digits.as_bytes());
        out.push(v);
    }
    out
}

fn tr31_blocks() -> Vec<Vec<u8>> {
    let [tdes, aes] = session::tr31_kbpks();
    let mut out = Vec::new();
    for (kbpk, header, key) in [
        (
            &tdes,
            "B0000P0TE00N0000",
            Key::tdes(&[0x44; 16]).expect("key"),
        ),
        (
            &tdes,
            "B0000M3TC00E0000",
            Key::tdes(&[0x45; 16]).expect("key"),
        ),
        (
            &tdes,
            "A0000P0TE00N0000",
            Key::tdes(&[0x46; 16]).expect("key"),
        ),
        (
            &aes,
            "D0000P0AE00E0000",
            Key::aes(&[0x47; 16]).expect("key"),
        ),
        (
            &aes,
            "D0000D0AB00E0000",
            Key::aes(&[0x48; 32]).expect("key"),
        ),
    ] {
        let Ok(h) = Header::parse_template(header) else {
            continue;
        };
        if let Ok(b) = tr31::wrap(kbpk, &h, &key) {
            out.push(with(0, b.as_bytes()));
        }
        out.push(with(0, header.as_bytes()));
    }
    for (i, (_, k)) in session::TR31_HEADERS.iter().enumerate() {
        let mut v = vec![1, i as u8];
        v.extend_from_slice(&[0x40 + i as u8; 16]);
        if *k == 1 && i % 2 == 0 {
            v.extend_from_slice(&[0x50; 16]);
        }
        out.push(v);
    }
    out
}

fn journal(p: &isoswitch_reversal::ReversalProfile) -> Vec<JournalRecord> {
    let mut records = vec![JournalRecord::Counters {
        next_id: 1,
        next_stan: 1,
        batch: 1,
        closed_net: Decimal::ZERO,
        unkept: BatchTotals::default(),
    }];
    let mut e = ReversalEngine::new(
        EngineConfig::default(),
        p.clone(),
        NoMac::new(p.dialect.clone()),
        1,
    );
    let now = Instant::now();
    let sp = session::profile(u8::from(p.dialect.name() != "cup-pos"));
    for stan in 1..=4u32 {
        let mut m = session::sale(&sp, Some(stan));
        m.set(41, "TERM0001").expect("41");
        m.set(42, "MERCHANT0000001").expect("42");
        if e.submit(now, m).is_ok() {
            while let Some(r) = e.poll_journal() {
                records.push(r);
            }
        }
    }
    let finishes = [
        Finish::Approved { code: *b"00" },
        Finish::Declined { code: *b"05" },
        Finish::Reverse {
            reason: ReversalReason::NoResponse,
        },
        Finish::Unknown,
    ];
    for (i, f) in finishes.into_iter().enumerate() {
        records.push(JournalRecord::Finished {
            id: i as u64 + 1,
            finish: f,
        });
    }
    records.push(JournalRecord::ReversalAcked {
        id: 3,
        code: *b"00",
    });
    records.push(JournalRecord::BatchClosed {
        batch: 1,
        next_batch: 2,
        net: Decimal::new(1000, 2),
    });
    records
}

fn encoded<T>(items: &[T], enc: impl Fn(&T, &mut Vec<u8>)) -> Vec<Vec<u8>> {
    items
        .iter()
        .map(|r| {
            let mut p = Vec::new();
            enc(r, &mut p);
            p
        })
        .collect()
}

fn journal_streams() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for pick in 0..2u8 {
        let p = crate::reversal::profile(pick);
        let recs = encoded(&journal(&p), |r, o| r.encode(o));
        out.push(with(pick, &framed(&recs)));
        for i in 1..recs.len() {
            out.push(with(
                0x80 | pick,
                &crate::reversal::payload_list(&recs[..i]),
            ));
            out.push(with(
                0x80 | pick,
                &crate::reversal::payload_list(&recs[i..]),
            ));
        }
    }
    out
}

/// Shared journals: the engines' journals of both profiles as members, record by record
/// and as snapshots, framed as on disk and as payload lists.
fn shared_streams() -> Vec<Vec<u8>> {
    use isoswitch_reversal::shared_journal::{member_payload, snapshot_payload};
    let mut out = Vec::new();
    for pick in 0..2u8 {
        let recs = journal(&crate::reversal::profile(pick));
        let members = ["T0000001", "T0000002"];
        let mut payloads = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            let mut p = Vec::new();
            member_payload(members[i % 2], r, &mut p);
            payloads.push(p);
        }
        for cut in [1, recs.len() / 2, recs.len()] {
            let mut p = Vec::new();
            snapshot_payload(members[0], &recs[..cut.min(recs.len())], &mut p);
            let mut with_snapshot = payloads.clone();
            with_snapshot.push(p);
            out.push(with(0, &framed(&with_snapshot)));
            out.push(with(0x80, &crate::reversal::payload_list(&with_snapshot)));
        }
        out.push(with(0, &framed(&payloads)));
        out.push(with(0x80, &crate::reversal::payload_list(&payloads)));
    }
    out
}

fn handler_messages(pick: u8) -> Vec<Vec<u8>> {
    let sp = session::profile(pick);
    let rp = crate::reversal::profile(pick);
    let mut out = Vec::new();
    for stan in 1..=6u32 {
        let m = Message::decode(&sp.dialect, Bytes::from(sale_bytes(&sp, stan))).expect("sale");
        out.push(m.to_bytes().expect("sale").to_vec());
        if let Ok(r) = rp.build_reversal(&m, ReversalReason::NoResponse) {
            if let Ok(b) = r.to_bytes() {
                out.push(b.to_vec());
            }
        }
    }
    out
}

fn store_streams() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for pick in 0..2u8 {
        let rp = crate::reversal::profile(pick);
        let sp = session::profile(pick);
        let mut h = ReversalHandler::new(rp, MemoryStore::new(), HostConfig::default());
        for (i, b) in handler_messages(pick).iter().enumerate() {
            let Ok(m) = Message::decode(&sp.dialect, Bytes::from(b.clone())) else {
                continue;
            };
            let _ = h.handle(&m, |_, _| {
                if i % 4 == 2 {
                    Decision::Decline(*b"05")
                } else {
                    Decision::Approve { auth_code: None }
                }
            });
        }
        let recs = encoded(&h.store().records(), |r, o| r.encode(o));
        out.push(with(0, &framed(&recs)));
        for i in 1..recs.len() {
            out.push(with(0x80, &crate::reversal::payload_list(&recs[..i])));
        }
    }
    out
}

fn lease(stan: u32, batch: u32, rrn: u64) -> Vec<u8> {
    let mut p = Vec::new();
    LeaseRecord {
        stan_resume: Stan::new(stan).expect("stan"),
        batch: BatchNumber::new(batch).expect("batch"),
        rrn_resume: rrn,
    }
    .encode(&mut p);
    p
}

fn counters_files() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (s, b, r) in [
        (1, 1, 1),
        (1000, 7, 1000),
        (999_999, 999_999, 999_999_999_999),
        (500_000, 12, 42),
    ] {
        let one = framed(&[lease(s, b, r)]);
        out.push(with(1, &one));
        let two = [lease(1, 1, 1), lease(s, b, r)];
        out.push(with(0x81, &crate::reversal::payload_list(&two)));
        let mut m = MAGIC.to_vec();
        m.extend_from_slice(&one);
        out.push(with(0, &m));
    }
    out
}

fn store_record_streams() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (s, b, r) in [
        (1, 1, 1),
        (1000, 7, 1000),
        (999_999, 999_999, 999_999_999_999),
    ] {
        out.push(with(0, &framed(&[lease(s, b, r)])));
        out.push(with(
            0x80,
            &crate::reversal::payload_list(&[lease(s, b, r)]),
        ));
    }
    let kek = isoswitch_session::Kek::new(&Key::aes(&[0x42; 32]).expect("key")).expect("kek");
    let p = session::profile(0);
    let snap = TerminalSnapshot {
        terminal: terminal_id(),
        batch: BatchNumber::new(7).expect("batch"),
        generation: 3,
        keys: Some(session::working_keys(&p)),
    };
    if let Ok(sealed) = snap.seal(&kek) {
        let recs = [
            isoswitch_reversal::sessions::SessionRecord::Terminal(sealed.clone()),
            isoswitch_reversal::sessions::SessionRecord::Upstream {
                link: "upstream".into(),
                snapshot: sealed.clone(),
            },
        ];
        let payloads = encoded(&recs, |r, o| r.encode(o));
        out.push(with(0, &framed(&payloads)));
        out.push(with(0x80, &crate::reversal::payload_list(&payloads)));
    }
    out
}

fn settlement() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let side = |dc: u32, da: i64, cc: u32, ca: i64| SideTotals {
        debit_count: dc,
        debit_amount: Decimal::new(da, 2),
        credit_count: cc,
        credit_amount: Decimal::new(ca, 2),
    };
    let totals = [
        BatchTotals::default(),
        BatchTotals {
            domestic: side(3, 12_345, 1, 500),
            foreign: side(0, 0, 0, 0),
        },
        BatchTotals {
            domestic: side(120, 99_999_999, 7, 1_000),
            foreign: side(2, 4_200, 1, 100),
        },
    ];
    for t in &totals {
        out.push(with(0, t.to_field48(0, 0).as_bytes()));
    }
    let entries: Vec<UploadEntry> = (1..=8u32)
        .map(|i| UploadEntry {
            foreign: i % 3 == 0,
            stan: i * 11,
            pan: format!("62258812345678{i:02}"),
            amount: Decimal::new(i64::from(i) * 1_000, 2),
            kind: isoswitch_reversal::TxnKind::Debit,
        })
        .collect();
    for n in [1, 3, 8] {
        if let Ok(s) = upload_field48(&entries[..n]) {
            out.push(with(1, s.as_bytes()));
        }
    }
    let iso = Dialect::builtin("iso87-binary").expect("dialect");
    for k in 0..4u64 {
        let t = Iso87Totals {
            debits_count: 10 * k,
            credits_count: k,
            debits_amount: Decimal::new(12_345 * k as i64, 2),
            credit_reversals_amount: Decimal::new(100 * k as i64, 2),
            ..Default::default()
        };
        let mut m = Message::new(&iso, "0500".parse::<Mti>().expect("mti"));
        m.set(11, "000123").expect("11");
        if t.apply(&mut m, 2).is_ok() {
            out.push(with(2, &m.to_bytes().expect("0500")));
        }
    }
    let cup = Dialect::builtin("cup-pos").expect("dialect");
    for t in &totals {
        let mut m = Message::new(&cup, "0500".parse::<Mti>().expect("mti"));
        for (n, v) in [(11, "000009"), (41, "TERM0001"), (42, "MERCHANT0000001")] {
            m.set(n, v).expect("field");
        }
        m.set(48, t.to_field48(0, 0)).expect("48");
        m.set(60, "00000007201").ok();
        out.push(with(3, &m.to_bytes().expect("0500")));
        let mut u = Message::new(&cup, "0320".parse::<Mti>().expect("mti"));
        for (n, v) in [(11, "000010"), (41, "TERM0001"), (42, "MERCHANT0000001")] {
            u.set(n, v).expect("field");
        }
        if let Ok(s) = upload_field48(&entries[..3]) {
            u.set(48, s).expect("48");
        }
        u.set(60, "00000007201").ok();
        out.push(with(3, &u.to_bytes().expect("0320")));
    }
    out
}

fn thales_commands() -> Vec<Vec<u8>> {
    use isoswitch_hsm::EncryptedKey;
    use isoswitch_session::crypto::keys::KeyKind;
    let k = |b: u8| EncryptedKey::new(KeyKind::Tdes2, &[b; 16]).expect("key");
    let account = *b"123456789012";
    let cmds = [
        Command::Diagnostics,
        Command::GenerateKey {
            key_type: *b"002",
            under: None,
        },
        Command::GenerateKey {
            key_type: *b"001",
            under: Some(k(1)),
        },
        Command::KeyCheckValue {
            key_type: *b"02",
            key: k(2),
        },
        Command::TranslatePin {
            tpk: k(3),
            zpk: k(4),
            max_pin_len: 12,
            block: [0x12; 8],
            from_format: *b"01",
            to_format: *b"01",
            account,
        },
        Command::ImportZpk {
            zmk: k(5),
            zpk_under_zmk: k(6),
        },
        Command::GenerateTmk { current: k(7) },
    ];
    let mut out = Vec::new();
    for c in &cmds {
        let mut b = BytesMut::new();
        if c.encode(b"0000", &mut b).is_ok() {
            out.push(with(0, &b[6..]));
        }
    }
    out
}

fn thales_responses() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // Replies of the fixture soft HSM to the seed commands (and to fresh keys it made).
    for seed in thales_commands() {
        let body = &seed[1..];
        let mut msg = b"0000".to_vec();
        msg.extend_from_slice(body);
        let mut reply = BytesMut::new();
        if handle_message(
            crate::hsm::hsm(),
            &ServerConfig::default(),
            &msg,
            &mut reply,
        )
        .is_err()
        {
            continue;
        }
        let Some(i) = CommandCode::ALL.iter().position(|c| c.code() == body[..2]) else {
            continue;
        };
        out.push(with(i as u8, &reply[6..]));
    }
    out
}

fn cli_inputs() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, name) in crate::apps::CLI_DIALECTS.iter().enumerate() {
        let d = Dialect::builtin(name).expect("dialect");
        for b in messages(name, 8, 0xC11 + i as u64) {
            let ctl = i as u8;
            let v = MessageView::decode(&d, &b).expect("decodes");
            let j = json::to_json(v.mti(), v.fields(), true);
            out.push(with(ctl | 8, j.as_bytes()));
            out.push(with(ctl | 8 | 4, j.as_bytes()));
            out.push(with(ctl, &b));
            let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
            out.push(with(ctl | 4, hex.as_bytes()));
            let mut len2 = (b.len() as u16).to_be_bytes().to_vec();
            len2.extend_from_slice(&b);
            out.push(with(ctl | 0x10, &len2));
        }
        let mut rng = Rng(0xC12 + i as u64);
        for n in [64, 128, 256, 512] {
            out.push(with(0x40 | i as u8, &rng.bytes(n)));
            out.push(with(0x40 | 4 | i as u8, &rng.bytes(n)));
        }
    }
    out
}

fn config_files() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let terminals = repo_file("examples/terminals.toml");
    let short: String = terminals.lines().take(24).collect::<Vec<_>>().join("\n");
    out.push(with(0, short.as_bytes()));
    out.push(with(
        0,
        b"[[terminal]]\ntid = \"TERM0001\"\nmid = \"MERCHANT0000001\"\ntmk = \"0123456789ABCDEFFEDCBA9876543210\"\n",
    ));
    out.push(with(
        0,
        b"[[terminal]]\ntid = \"T1\"\nmid = \"M1\"\ntmk = \"0123456789ABCDEF\"\n",
    ));
    out.push(with(
        3,
        b"TERM0001,MERCHANT0000001,0123456789ABCDEFFEDCBA9876543210\nT2,M2,0123456789ABCDEF",
    ));
    out.push(with(
        3,
        b"T0000001,M00000000000001,ECC25208B6FD2023E9767A5489BC9415",
    ));
    out.push(with(1, repo_file("examples/zmk.hex").as_bytes()));
    out.push(with(1, b"0123456789ABCDEF"));
    out.push(with(2, repo_file("examples/kek.hex").as_bytes()));
    out.push(with(2, &[b'A'; 64]));
    out
}

fn framing() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let msgs = messages("iso87-binary", 6, 0xF4A);
    for ctl in [0u8, 1, 2, 3, 4 * 3, 4 * 7 + 1, 4 * 15 + 2, 4 * 63 + 3] {
        let framing = [
            Framing::Len2,
            Framing::Len4,
            Framing::Ascii4,
            Framing::CupPos,
        ][usize::from(ctl % 4)];
        let mut codec = FrameCodec::new(framing, 4096);
        let mut buf = BytesMut::new();
        for m in &msgs {
            let _ = codec.encode(
                isoswitch_net::framing::Frame {
                    header: None,
                    payload: Bytes::from(m.clone()),
                },
                &mut buf,
            );
        }
        out.push(with(ctl, &buf));
    }
    out
}

fn tlv() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = TlvBuilder::new();
    b.add(Tag(0x9F26), &[0x11; 8]);
    b.add(Tag(0x9F27), &[0x80]);
    b.add(Tag(0x95), &[0; 5]);
    b.add(Tag(0x5F2A), &[0x01, 0x56]);
    out.push(b.finish().to_vec());
    let mut inner = TlvBuilder::new();
    inner.add(Tag(0x9F02), &[0, 0, 0, 0, 0x10, 0]);
    let mut outer = TlvBuilder::new();
    outer.add(Tag(0x70), &inner.finish());
    outer.add(Tag(0x9F10), &[1, 2, 3, 4, 5, 6, 7]);
    out.push(outer.finish().to_vec());
    let mut rng = Rng(0x71F);
    for _ in 0..6 {
        let mut b = TlvBuilder::new();
        for v in rng.bytes(24).chunks(6) {
            b.add(Tag(0x9F00 | u32::from(v[0] & 0x1F)), &v[1..]);
        }
        out.push(b.finish().to_vec());
    }
    out
}

fn dialect_files() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for name in ["iso87-ascii", "iso87-binary", "cup-pos", "iso93-ascii"] {
        let d = Dialect::builtin(name).expect("dialect");
        let mut text = serde_json::to_string(d.def()).expect("JSON").into_bytes();
        text.push(0);
        if let Some(m) = messages(name, 1, 0xD1A).pop() {
            text.extend_from_slice(&m);
        }
        out.push(text);
    }
    let mut rng = Rng(0xD1B);
    for _ in 0..6 {
        let src = rng.bytes(256);
        let d = random::dialect(&mut Entropy::new(&src));
        out.push(serde_json::to_string(d.def()).expect("JSON").into_bytes());
    }
    out
}

fn roundtrip() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, name) in crate::codec::ROUNDTRIP_DIALECTS.iter().enumerate() {
        for m in messages(name, 10, 0x707 + i as u64) {
            out.push(with(i as u8, &m));
        }
    }
    out
}

fn composite() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (1..=5)
        .map(|i| unhex(repo_file(&format!("tests/vectors/composite/{i:02}.hex")).trim()))
        .filter(|b| !b.is_empty())
        .collect();
    out.extend(messages("iso87-composite", 30, 0xC0A));
    out
}

fn nested() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x4E57);
    (0..30).map(|i| rng.bytes(64 + 24 * i)).collect()
}

fn admin() -> Vec<Vec<u8>> {
    [
        &b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        b"GET /health HTTP/1.0\r\n\r\n",
        b"GET /ready HTTP/1.1\r\nAccept: */*\r\nUser-Agent: curl\r\n\r\n",
        b"POST /drain HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

/// Structured inputs (the harness builds a valid input from entropy): `0xFF`-led for
/// the codec targets, bit 7 of the first byte for the reversal handler, settlement,
/// the Thales commands and responses, TR-31 blocks and the terminal's answers.
fn structured(target: &str) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x57C ^ target.len() as u64);
    let ctls: Vec<Vec<u8>> = match target {
        "decode_cup_pos"
        | "decode_iso87_ascii"
        | "decode_iso87_binary"
        | "decode_iso87_ebcdic"
        | "decode_iso93_ascii"
        | "decode_iso87_composite"
        | "dialect_json" => vec![vec![0xFF]],
        "roundtrip" => (0..5u8).map(|i| vec![i, 0xFF]).collect(),
        "reversal_handler" => vec![vec![0x80], vec![0x81]],
        "settlement" => (0..4u8).map(|i| vec![0x80 | i]).collect(),
        "thales_command" => vec![vec![0x80]; 8],
        "thales_response" => (0..11u8).map(|i| vec![0x80 | i]).collect(),
        "tr31_block" => vec![vec![0x81]; 8],
        "terminal_answer" => (0..8u8).map(|i| vec![0x80 | i]).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for c in ctls {
        for n in [48, 96, 160, 256, 400] {
            let mut v = c.clone();
            v.extend(rng.bytes(n));
            out.push(v);
        }
    }
    out
}

/// The seed inputs of `target` (empty for an unknown name).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut v = plain_seeds(target);
    v.extend(structured(target));
    v
}

fn plain_seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "admin_request" => admin(),
        "cli_input" => cli_inputs(),
        "config_files" => config_files(),
        "counters_file" => counters_files(),
        "decode_cup_pos" => decode_seeds("cup-pos", None),
        "decode_iso87_ascii" => decode_seeds("iso87-ascii", Some("iso87-ascii")),
        "decode_iso87_binary" => decode_seeds("iso87-binary", Some("iso87-binary")),
        "decode_iso87_composite" => composite(),
        "decode_iso87_ebcdic" => decode_seeds("iso87-ebcdic", Some("iso87-ebcdic")),
        "decode_iso93_ascii" => decode_seeds("iso93-ascii", None),
        "dialect_json" => dialect_files(),
        "engine_recovery" => journal_streams(),
        "framing" => framing(),
        "host_request" => host_request(),
        "journal_records" => journal_streams()
            .into_iter()
            .map(|mut v| {
                v[0] &= 0x80;
                v
            })
            .collect(),
        "pin_block" => pin_blocks(),
        "shared_journal" => shared_streams(),
        "reversal_handler" => (0..2u8)
            .flat_map(|pick| {
                handler_messages(pick)
                    .into_iter()
                    .map(move |m| with(pick, &m))
            })
            .collect(),
        "roundtrip" => roundtrip(),
        "roundtrip_nested" => nested(),
        "settlement" => settlement(),
        "store_records" => store_record_streams(),
        "store_replay" => store_streams(),
        "terminal_answer" => terminal_answer(),
        "thales_command" => thales_commands(),
        "thales_response" => thales_responses(),
        "tlv" => tlv(),
        "tr31_block" => tr31_blocks(),
        _ => Vec::new(),
    }
}
