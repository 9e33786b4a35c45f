//! The Thales server path on arbitrary messages: header, command parse, execution on
//! a SoftHsm, response encoding. Never panics; a parsed command must encode again.
#![no_main]

use std::sync::OnceLock;

use bytes::BytesMut;
use isoswitch_hsm::thales::codec::Command;
use isoswitch_hsm::thales::server::{handle_message, ServerConfig};
use isoswitch_hsm::SoftHsm;
use libfuzzer_sys::fuzz_target;

fn hsm() -> &'static SoftHsm {
    static HSM: OnceLock<SoftHsm> = OnceLock::new();
    HSM.get_or_init(|| {
        SoftHsm::from_master_key_hex("deafbeedeafbeedeafbeedeafbeedeaf").expect("fixed LMK")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::parse(data) {
        let mut out = BytesMut::new();
        let _ = cmd.encode(b"0000", &mut out);
    }
    let mut out = BytesMut::new();
    let _ = handle_message(hsm(), &ServerConfig::default(), data, &mut out);
});
