//! HSM harnesses: the Thales command and response parsers and the server path.
//!
//! Both targets have a structured mode (bit 7 of the first byte): the rest is
//! [`arbitrary`] input from which the harness builds a valid command or reply
//! (fuzz-chosen code, keys, PIN block, formats, MAC data...), encodes it and sends the
//! body through the same parser, so mutations keep reaching the round trip and the
//! soft HSM's command logic instead of failing at the first field.

use std::sync::OnceLock;

use arbitrary::{Result as ArbResult, Unstructured};
use bytes::BytesMut;
use isoswitch_hsm::thales::codec::{
    Command, CommandCode, MacRequest, PvvRequest, Reply, Response, ThalesMacAlgorithm,
};
use isoswitch_hsm::thales::server::{handle_message, ServerConfig};
use isoswitch_hsm::{CheckValue, EncryptedKey, SoftHsm};
use isoswitch_session::crypto::keys::{encrypt_key_under, Key, KeyKind};

/// The LMK of the fixture soft HSM (hex).
pub const LMK_HEX: &str = "deafbeedeafbeedeafbeedeafbeedeaf";

/// The fixture soft HSM.
pub fn hsm() -> &'static SoftHsm {
    static HSM: OnceLock<SoftHsm> = OnceLock::new();
    HSM.get_or_init(|| SoftHsm::from_master_key_hex(LMK_HEX).expect("fixed LMK"))
}

/// Keys under the fixture LMK (ECB, as the soft HSM stores them): a two-key TDES key,
/// a single DES key and a three-key TDES key of odd parity, so structured commands
/// also get past the soft HSM's key checks.
fn lmk_keys() -> &'static [EncryptedKey; 3] {
    static KEYS: OnceLock<[EncryptedKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let lmk: Vec<u8> = (0..LMK_HEX.len() / 2)
            .map(|i| u8::from_str_radix(&LMK_HEX[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        let lmk = Key::tdes(&lmk).expect("LMK");
        let under = |kind: KeyKind, clear: Key| {
            EncryptedKey::new(kind, &encrypt_key_under(&lmk, &clear).expect("encrypt"))
                .expect("encrypted key")
        };
        [
            under(
                KeyKind::Tdes2,
                Key::tdes(&[
                    0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76,
                    0x54, 0x32, 0x10,
                ])
                .expect("key"),
            ),
            under(KeyKind::Des, Key::des(&[0x13; 8]).expect("key")),
            under(KeyKind::Tdes3, Key::tdes(&[0x1C; 24]).expect("key")),
        ]
    })
}

fn key(u: &mut Unstructured<'_>) -> ArbResult<EncryptedKey> {
    let pick = u.int_in_range(0u8..=7)?;
    if pick < 4 {
        return Ok(lmk_keys()[usize::from(pick % 3)]);
    }
    let kind =
        [KeyKind::Tdes2, KeyKind::Des, KeyKind::Tdes3, KeyKind::Tdes2][usize::from(pick - 4)];
    let mut b = [0u8; 24];
    u.fill_buffer(&mut b[..kind.key_len()])?;
    Ok(EncryptedKey::new(kind, &b[..kind.key_len()]).expect("a key of its kind's length"))
}

fn digits<const N: usize>(u: &mut Unstructured<'_>) -> ArbResult<[u8; N]> {
    let mut a = [b'0'; N];
    for d in &mut a {
        *d = b'0' + u.int_in_range(0u8..=9)?;
    }
    Ok(a)
}

fn one_of<const N: usize>(u: &mut Unstructured<'_>, known: &[[u8; N]]) -> ArbResult<[u8; N]> {
    if !crate::one_in(u, 8)? {
        Ok(*u.choose(known)?)
    } else {
        digits(u)
    }
}

const PIN_FORMATS: [[u8; 2]; 5] = [*b"01", *b"05", *b"47", *b"48", *b"03"];

fn mac_request<'a>(u: &mut Unstructured<'a>) -> ArbResult<MacRequest<'a>> {
    let len = u.int_in_range(0usize..=300)?;
    Ok(MacRequest {
        full_size: u.arbitrary()?,
        algorithm: *u.choose(&[
            ThalesMacAlgorithm::Iso9797Alg1,
            ThalesMacAlgorithm::Iso9797Alg3,
        ])?,
        padding: u.int_in_range(0u8..=2)?,
        key_type: one_of(u, &[*b"003", *b"008"])?,
        key: key(u)?,
        data: u.bytes(len.min(u.len()))?,
    })
}

fn pvv_request(u: &mut Unstructured<'_>) -> ArbResult<PvvRequest> {
    let pin_key = key(u)?;
    // A PVK pair travels untagged (32 hex digits): two-key TDES only.
    let pvk = if u.arbitrary()? {
        lmk_keys()[0]
    } else {
        let mut b = [0u8; 16];
        u.fill_buffer(&mut b)?;
        EncryptedKey::new(KeyKind::Tdes2, &b).expect("16 bytes")
    };
    Ok(PvvRequest {
        pin_key,
        pvk,
        block: u.arbitrary()?,
        format: one_of(u, &PIN_FORMATS)?,
        account: digits(u)?,
        pvki: u.int_in_range(0u8..=9)?,
        pvv: digits(u)?,
    })
}

/// A valid command built from `u` (every field within what the encoder writes and the
/// parser reads back).
pub fn arbitrary_command<'a>(u: &mut Unstructured<'a>) -> ArbResult<Command<'a>> {
    Ok(match u.choose(&CommandCode::ALL)? {
        CommandCode::A0 => Command::GenerateKey {
            key_type: one_of(u, &[*b"000", *b"001", *b"002", *b"003", *b"008", *b"009"])?,
            under: if u.arbitrary()? { Some(key(u)?) } else { None },
        },
        CommandCode::Bu => Command::KeyCheckValue {
            key_type: one_of(u, &[*b"00", *b"01", *b"02", *b"03", *b"08"])?,
            key: key(u)?,
        },
        CommandCode::Ca => Command::TranslatePin {
            tpk: key(u)?,
            zpk: key(u)?,
            max_pin_len: u.int_in_range(0u8..=99)?,
            block: u.arbitrary()?,
            from_format: one_of(u, &PIN_FORMATS)?,
            to_format: one_of(u, &PIN_FORMATS)?,
            account: digits(u)?,
        },
        CommandCode::G0 => Command::TranslateDukptPin {
            bdk: key(u)?,
            zpk: key(u)?,
            ksn_descriptor: {
                let mut d = [0u8; 3];
                for c in &mut d {
                    *c = *u.choose(b"0123456789ABCDEFabcdef")?;
                }
                d
            },
            ksn: u.arbitrary()?,
            block: u.arbitrary()?,
            from_format: one_of(u, &PIN_FORMATS)?,
            to_format: one_of(u, &PIN_FORMATS)?,
            account: digits(u)?,
        },
        CommandCode::Dc => Command::VerifyTerminalPin(pvv_request(u)?),
        CommandCode::Ec => Command::VerifyInterchangePin(pvv_request(u)?),
        CommandCode::Fa => Command::ImportZpk {
            zmk: key(u)?,
            zpk_under_zmk: key(u)?,
        },
        CommandCode::Hc => Command::GenerateTmk { current: key(u)? },
        CommandCode::Nc => Command::Diagnostics,
        CommandCode::M6 => Command::GenerateMac(mac_request(u)?),
        CommandCode::M8 => {
            let m = mac_request(u)?;
            let mut mac: [u8; 8] = u.arbitrary()?;
            if !m.full_size {
                mac[4..].fill(0);
            }
            Command::VerifyMac(m, mac)
        }
    })
}

/// `thales_command` target. First byte bit 7 clear: the rest is a command body (code
/// and fields) and, behind a header, a whole message answered by the fixture soft HSM;
/// set: the rest is [`arbitrary`] input for a valid command ([`arbitrary_command`]),
/// which is encoded, must parse back to itself, and goes the same way. A parsed
/// command encodes to a body that parses to the same command. Reached: the body
/// parsed (and that round trip ran).
pub fn thales_command(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    if ctl & 0x80 == 0 {
        return thales_body(rest);
    }
    let mut u = Unstructured::new(rest);
    let Ok(cmd) = arbitrary_command(&mut u) else {
        return false;
    };
    let mut out = BytesMut::new();
    if cmd.encode(b"0000", &mut out).is_err() {
        return false;
    }
    assert_eq!(
        Command::parse(&out[6..]).expect("a built command parses"),
        cmd,
        "a built command parses to another"
    );
    thales_body(&out[6..])
}

fn thales_body(data: &[u8]) -> bool {
    let mut reached = false;
    if let Ok(cmd) = Command::parse(data) {
        let mut out = BytesMut::new();
        if cmd.encode(b"0000", &mut out).is_ok() {
            let again = Command::parse(&out[6..]).expect("an encoded command parses");
            assert_eq!(again, cmd);
        }
        reached = true;
    }
    let mut out = BytesMut::new();
    let mut message = b"0000".to_vec();
    message.extend_from_slice(data);
    let _ = handle_message(hsm(), &ServerConfig::default(), &message, &mut out);
    let _ = handle_message(hsm(), &ServerConfig::default(), data, &mut out);
    reached
}

fn check_value(u: &mut Unstructured<'_>, lens: &[usize]) -> ArbResult<CheckValue> {
    let n = *u.choose(lens)?;
    let mut b = [0u8; 8];
    u.fill_buffer(&mut b[..n])?;
    Ok(CheckValue::new(&b[..n]).expect("3, 4 or 8 bytes"))
}

/// A valid reply to `code` built from `u`; `firmware` holds the `NC` firmware text.
pub fn arbitrary_reply<'a>(
    u: &mut Unstructured<'_>,
    code: CommandCode,
    firmware: &'a mut Vec<u8>,
) -> ArbResult<Reply<'a>> {
    if crate::one_in(u, 8)? {
        let mut e = digits::<2>(u)?;
        if &e == b"00" {
            e = *b"01";
        }
        return Ok(Reply::error(code, e));
    }
    const KCV: [usize; 3] = [3, 4, 8];
    let response = match code {
        CommandCode::A0 => Response::GenerateKey {
            under_lmk: key(u)?,
            under_zmk: if u.arbitrary()? {
                Some((key(u)?, check_value(u, &KCV)?))
            } else {
                None
            },
        },
        CommandCode::Bu => Response::KeyCheckValue(check_value(u, &KCV)?),
        CommandCode::Ca | CommandCode::G0 => Response::TranslatePin {
            pin_len: u.int_in_range(0u8..=99)?,
            block: u.arbitrary()?,
            format: one_of(u, &PIN_FORMATS)?,
        },
        CommandCode::Dc | CommandCode::Ec => Response::PinVerified,
        CommandCode::Fa => Response::ImportZpk {
            under_lmk: key(u)?,
            kcv: check_value(u, &KCV)?,
        },
        CommandCode::Hc => Response::GenerateTmk {
            under_current: key(u)?,
            under_lmk: key(u)?,
        },
        CommandCode::Nc => {
            let lmk_kcv = check_value(u, &[8])?;
            let n = u.int_in_range(0usize..=32)?;
            for _ in 0..n {
                firmware.push(u.int_in_range(0x21u8..=0x7E)?);
            }
            Response::Diagnostics {
                lmk_kcv,
                firmware: &firmware[..],
            }
        }
        CommandCode::M6 => Response::Mac(check_value(u, &[4, 8])?),
        CommandCode::M8 => Response::MacVerified,
    };
    Ok(Reply::ok(code, response))
}

/// `thales_response` target: the first byte picks the command whose response is
/// expected (its value modulo the number of commands); bit 7 clear: the rest is the
/// response body; set: the rest is [`arbitrary`] input for a valid reply
/// ([`arbitrary_reply`]), which is encoded, must parse back to itself, and goes the
/// same way. A parsed reply encodes to a body that parses to the same reply. Reached:
/// the body parsed (and that round trip ran).
pub fn thales_response(data: &[u8]) -> bool {
    let Some((&pick, body)) = data.split_first() else {
        return false;
    };
    let code = CommandCode::ALL[usize::from(pick) % CommandCode::ALL.len()];
    if pick & 0x80 == 0 {
        return reply_body(code, body);
    }
    let mut u = Unstructured::new(body);
    let mut firmware = Vec::new();
    let Ok(reply) = arbitrary_reply(&mut u, code, &mut firmware) else {
        return false;
    };
    let mut out = BytesMut::new();
    if reply.encode(b"0000", &mut out).is_err() {
        return false;
    }
    assert_eq!(
        Reply::parse(code, &out[6..]).expect("a built reply parses"),
        reply,
        "a built reply parses to another"
    );
    reply_body(code, &out[6..])
}

fn reply_body(code: CommandCode, body: &[u8]) -> bool {
    let Ok(reply) = Reply::parse(code, body) else {
        return false;
    };
    let mut out = BytesMut::new();
    if reply.encode(b"0000", &mut out).is_ok() {
        let again = Reply::parse(code, &out[6..]).expect("an encoded reply parses");
        assert_eq!(again, reply);
    }
    true
}
