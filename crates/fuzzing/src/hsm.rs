//! HSM harnesses: the Thales command and response parsers and the server path.

use std::sync::OnceLock;

use bytes::BytesMut;
use isoswitch_hsm::thales::codec::{Command, CommandCode, Reply};
use isoswitch_hsm::thales::server::{handle_message, ServerConfig};
use isoswitch_hsm::SoftHsm;

/// The LMK of the fixture soft HSM (hex).
pub const LMK_HEX: &str = "deafbeedeafbeedeafbeedeafbeedeaf";

/// The fixture soft HSM.
pub fn hsm() -> &'static SoftHsm {
    static HSM: OnceLock<SoftHsm> = OnceLock::new();
    HSM.get_or_init(|| SoftHsm::from_master_key_hex(LMK_HEX).expect("fixed LMK"))
}

/// `thales_command` target: bytes as a command body (code and fields) and as a whole
/// message (4-byte header and body) answered by the fixture soft HSM. A parsed command
/// encodes to a body that parses to the same command. Reached: the body parsed.
pub fn thales_command(data: &[u8]) -> bool {
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

/// `thales_response` target: the first byte picks the command whose response is
/// expected, the rest is the response body. A parsed reply encodes to a body that
/// parses to the same reply. Reached: the body parsed.
pub fn thales_response(data: &[u8]) -> bool {
    let Some((&pick, body)) = data.split_first() else {
        return false;
    };
    let code = CommandCode::ALL[usize::from(pick) % CommandCode::ALL.len()];
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
