//! A "foreign" `cup-pos` terminal, written only from the shared domain notes — framing
//! (len2 + TPDU + application header), the field formats, the DE 62 key layout and the
//! `cup-pos` MAC — with the codec and the crypto primitives, *not* `TerminalSession`.
//! It signs on and makes a sale against `switchd` (in-process, with `host_sim` behind it).
//! Also: an unregistered terminal gets `97`, a wrong MAC gets `A0`.

use std::time::Duration;

use isoswitch::codec::{Dialect, Message, MessageView};
use isoswitch::session::crypto::{
    compute, decrypt_key_under, Fill, Key, MacAlgorithm, Pan, Pin, PinBlock, PinBlockFormat,
};
use isoswitch_sim::config::{
    kek_from_hex, parse_terminals, zone_key_from_hex, SAMPLE_KEK, SAMPLE_TERMINALS, SAMPLE_ZONE_KEY,
};
use isoswitch_sim::{host, switch, unhex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TPDU: [u8; 5] = [0x60, 0x00, 0x03, 0x00, 0x00];
const APP: [u8; 6] = [0x60, 0x31, 0x00, 0x00, 0x00, 0x01];

async fn send(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    let len = u16::try_from(msg.len() + 11).expect("short message");
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&TPDU);
    frame.extend_from_slice(&APP);
    frame.extend_from_slice(msg);
    s.write_all(&frame).await.expect("write");
    let mut lb = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut lb))
        .await
        .expect("answer in time")
        .expect("read length");
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(lb))];
    s.read_exact(&mut body).await.expect("read body");
    // The reply's TPDU swaps source and destination.
    assert_eq!(&body[..5], &[0x60, 0x00, 0x00, 0x00, 0x03]);
    body[11..].to_vec()
}

/// Encodes with a MAC (domain notes 4.3) over everything before DE 64.
fn with_mac(m: &mut Message, mak: &Key) -> Vec<u8> {
    m.set_bytes(64, &[0u8; 8]).expect("64");
    let mut bytes = m.to_bytes().expect("encode").to_vec();
    let n = bytes.len();
    let mac = compute(MacAlgorithm::CupPos, mak, &bytes[..n - 8]).expect("mac");
    bytes[n - 8..].copy_from_slice(&mac.as_bytes()[..8]);
    bytes
}

#[test]
fn a_foreign_cup_pos_terminal_signs_on_and_buys() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let zone_key = zone_key_from_hex(SAMPLE_ZONE_KEY).expect("zmk");
        let terminals = parse_terminals(SAMPLE_TERMINALS).expect("terminals");
        let h = host::HostSim::open(&host::HostSimConfig {
            zone_key: zone_key.clone(),
            kek: kek_from_hex(SAMPLE_KEK).expect("kek"),
            data_dir: dir.path().join("host"),
            fsync: false,
        })
        .expect("host");
        let hr = h.spawn("127.0.0.1:0").await.expect("host up");
        let sw = switch::Switch::start(switch::SwitchConfig {
            terminals: terminals.clone(),
            zone_key,
            kek: isoswitch_sim::config::kek_from_hex(isoswitch_sim::config::SAMPLE_KEK)
                .expect("kek"),
            host_addr: hr.addr.to_string(),
            data_dir: dir.path().join("switch"),
            upstream_timeout: Duration::from_secs(2),
            upstream_in_flight: 64,
            hsm: None,
        })
        .await
        .expect("switch");
        let sr = sw.spawn("127.0.0.1:0").await.expect("switch up");
        tokio::time::sleep(Duration::from_millis(300)).await;

        let d = Dialect::builtin("cup-pos").expect("dialect");
        let t = &terminals[0];
        let tmk = Key::des_or_tdes(&unhex(&t.tmk).expect("hex")).expect("tmk");
        let mut s = TcpStream::connect(sr.addr).await.expect("connect");

        // Sign-on: 0800, 60 = 00 + batch + 003 (double-length keys), 63 = operator.
        let mut m = Message::new(&d, "0800".parse().expect("mti"));
        m.set(11, "000001").expect("11");
        m.set(41, t.tid.as_str()).expect("41");
        m.set(42, t.mid.as_str()).expect("42");
        m.set(60, "00000001003").expect("60");
        m.set(63, "01 ").expect("63");
        let r = send(&mut s, &m.to_bytes().expect("bytes")).await;
        let v = MessageView::decode(&d, &r).expect("0810");
        assert_eq!(v.mti().as_str(), "0810");
        assert_eq!(v.raw(39), Some(&b"00"[..]));
        let batch = v
            .field(60)
            .and_then(|f| f.subfield(1))
            .expect("60.2")
            .into_owned();
        // DE 62, 60.3 = 003: PIK 16 + KCV 4, MAK 8 + eight 00 + KCV 4.
        let block = v.field(62).expect("62").bytes().into_owned();
        assert_eq!(block.len(), 40);
        let pik = decrypt_key_under(&tmk, &block[0..16]).expect("pik");
        assert_eq!(pik.kcv().leading(4).expect("kcv"), &block[16..20]);
        assert_eq!(&block[28..36], &[0u8; 8], "single-length MAK");
        let mak = decrypt_key_under(&tmk, &block[20..28]).expect("mak");
        assert_eq!(mak.kcv().leading(4).expect("kcv"), &block[36..40]);

        // Sale: 0200 with PIN block (format 0 under the PIK) and MAC.
        let pan = "6222020000001234";
        let mut m = Message::new(&d, "0200".parse().expect("mti"));
        for (n, val) in [
            (2u8, pan),
            (3, "000000"),
            (4, "000000012300"),
            (11, "000002"),
            (14, "2812"),
            (22, "021"),
            (25, "00"),
            (26, "12"),
            (35, "6222020000001234=2812101"),
            (41, t.tid.as_str()),
            (42, t.mid.as_str()),
            (49, "156"),
            (53, "2600000000000000"),
        ] {
            m.set(n, val).expect("field");
        }
        let pb = PinBlock::encipher(
            PinBlockFormat::Iso0,
            &Pin::new("1234").expect("pin"),
            Some(&Pan::new(pan).expect("pan")),
            &pik,
            Fill::Random,
        )
        .expect("pin block");
        m.set_bytes(52, pb.as_bytes()).expect("52");
        m.set(60, format!("22{batch}000")).expect("60");
        let r = send(&mut s, &with_mac(&mut m, &mak)).await;
        let v = MessageView::decode(&d, &r).expect("0210");
        assert_eq!(v.mti().as_str(), "0210");
        assert_eq!(v.raw(39), Some(&b"00"[..]), "approved");
        assert_eq!(v.raw(37).map(|x| x.len()), Some(12), "RRN");
        let n = r.len();
        let mac = compute(MacAlgorithm::CupPos, &mak, &r[..n - 8]).expect("mac");
        assert_eq!(&r[n - 8..], &mac.as_bytes()[..8], "response MAC");

        // A wrong MAC: A0.
        m.set(11, "000003").expect("11");
        let mut bad = with_mac(&mut m, &mak);
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
        let r = send(&mut s, &bad).await;
        assert_eq!(
            MessageView::decode(&d, &r).expect("A0").raw(39),
            Some(&b"A0"[..])
        );

        // An unregistered terminal: 97.
        let mut m = Message::new(&d, "0200".parse().expect("mti"));
        m.set(3, "000000").expect("3");
        m.set(4, "000000000100").expect("4");
        m.set(11, "000001").expect("11");
        m.set(41, "NOTREG01").expect("41");
        m.set(42, "NOTREGISTERED01").expect("42");
        m.set(60, "22000001000").expect("60");
        let r = send(&mut s, &with_mac(&mut m, &mak)).await;
        assert_eq!(
            MessageView::decode(&d, &r).expect("97").raw(39),
            Some(&b"97"[..])
        );

        sr.stop().await;
        hr.stop().await;
        assert_eq!(
            h.summary().expect("ledger").total,
            12_300,
            "the host ledger holds the sale"
        );
    });
}
