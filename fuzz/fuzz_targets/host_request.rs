#![no_main]
//! The host session fed arbitrary bytes as an inbound request (cup-pos and iso87-binary):
//! never panics, and never accepts unauthenticated bytes as a MACed online request.
use bytes::Bytes;
use chrono::NaiveDate;
use isoswitch_session::{
    crypto::keys::Key, HostConfig, HostOutcome, HostSession, MemoryKeyStore, SessionProfile,
    TerminalId,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let profile = if pick % 2 == 0 {
        SessionProfile::cup_pos()
    } else {
        SessionProfile::iso87_binary()
    };
    let Ok(profile) = profile else { return };
    let mut store = MemoryKeyStore::new();
    let (Ok(id), Ok(tmk)) = (
        TerminalId::new("TERM0001", "MERCHANT0000001"),
        Key::tdes(&[0x11; 16]),
    ) else {
        return;
    };
    let _ = store.insert(id, tmk);
    let Ok(mut host) = HostSession::new(profile, HostConfig::default(), store) else { return };
    let Some(now) = NaiveDate::from_ymd_opt(2026, 11, 25).and_then(|d| d.and_hms_opt(10, 0, 0))
    else {
        return;
    };
    // No sign-on happened: nothing but a sign-on, echo or a rejection may come out.
    if let Ok(HostOutcome::Accepted(_)) = host.handle_request(now, Bytes::copy_from_slice(rest)) {
        panic!("an online request was accepted without keys");
    }
});
