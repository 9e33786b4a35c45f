//! The Thales response parser on arbitrary bytes: the first byte picks the command
//! whose response is expected; the rest is the message body. It must return a reply
//! or a typed error, never panic; a parsed reply must encode again.
#![no_main]

use bytes::BytesMut;
use isoswitch_hsm::thales::codec::{CommandCode, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let code = CommandCode::ALL[usize::from(pick) % CommandCode::ALL.len()];
    if let Ok(reply) = Reply::parse(code, body) {
        let mut out = BytesMut::new();
        let _ = reply.encode(b"0000", &mut out);
    }
});
