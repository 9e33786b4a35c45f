//! Shared test harness: a sans-IO terminal engine and an in-process host.
#![allow(dead_code)]

use bytes::Bytes;
use isoswitch_codec::Message;
use isoswitch_reversal::*;
use isoswitch_session::crypto::Key;
use isoswitch_session::SessionProfile;
use rust_decimal::Decimal;
use std::time::{Duration, Instant};

pub const PAN: &str = "6222021234567890";

pub fn mak() -> Key {
    Key::des(&[0x22; 8]).unwrap()
}

pub fn wrong_mak() -> Key {
    Key::des(&[0x44; 8]).unwrap()
}

pub fn security() -> ProfileMac {
    ProfileMac::new(SessionProfile::cup_pos().unwrap(), mak())
}

pub fn sale(profile: &ReversalProfile, cents: i64) -> Message {
    let mut m = Message::new(&profile.dialect, "0200".parse().unwrap());
    m.set(2, PAN).unwrap();
    m.set(3, "000000").unwrap();
    m.set_amount(4, Decimal::new(cents, 2), 156).unwrap();
    m.set(22, "051").unwrap();
    m.set(25, "00").unwrap();
    m.set(41, "TERM0001").unwrap();
    m.set(42, "MERCHANT0000001").unwrap();
    m.set(49, "156").unwrap();
    m
}

/// A terminal engine wired to a host through a test "network".
pub struct Sim {
    pub profile: ReversalProfile,
    pub engine: ReversalEngine<ProfileMac>,
    pub journal: MemoryJournal,
    pub host: ReversalHandler<MemoryStore>,
    pub host_mac: ProfileMac,
    pub now: Instant,
    pub events: Vec<EngineEvent>,
}

impl Sim {
    pub fn new(config: EngineConfig) -> Sim {
        let profile = ReversalProfile::cup_pos().unwrap();
        let engine = ReversalEngine::new(config, profile.clone(), security(), 1);
        let host = ReversalHandler::new(profile.clone(), MemoryStore::new(), HostConfig::default());
        Sim {
            profile,
            engine,
            journal: MemoryJournal::new(),
            host,
            host_mac: security(),
            now: Instant::now(),
            events: Vec::new(),
        }
    }

    /// Makes every pending record durable and collects events.
    pub fn flush(&mut self) {
        self.engine.journal_to(self.now, &mut self.journal).unwrap();
        self.events
            .extend(std::iter::from_fn(|| self.engine.poll_event()));
    }

    pub fn submit(&mut self, cents: i64) -> TxnId {
        let m = sale(&self.profile, cents);
        let id = self.engine.submit(self.now, m).unwrap();
        self.flush();
        id
    }

    pub fn transmit(&mut self) -> Option<Transmit> {
        self.flush();
        self.engine.poll_transmit()
    }

    /// The host handles the transmission; returns its sealed answer.
    pub fn host_answer(&mut self, t: &Transmit) -> Bytes {
        let req = Message::decode(&self.profile.dialect, t.bytes.clone()).unwrap();
        let mut resp = self
            .host
            .handle(&req, |_, _| Decision::Approve {
                auth_code: Some("123456".into()),
            })
            .unwrap();
        self.host_mac.seal(&mut resp).unwrap()
    }

    pub fn deliver(&mut self, t: &Transmit) {
        let answer = self.host_answer(t);
        self.engine.handle_response(self.now, t.id, answer);
        self.flush();
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.engine.handle_timeout(self.now);
        self.flush();
    }

    pub fn ledger(&self) -> Decimal {
        self.host.ledger().total()
    }

    pub fn take_events(&mut self) -> Vec<EngineEvent> {
        self.flush();
        std::mem::take(&mut self.events)
    }

    pub fn outcome_of(&self, txn: TxnId) -> Option<&Outcome> {
        self.events.iter().find_map(|e| match e {
            EngineEvent::Completed {
                txn: t, outcome, ..
            } if *t == txn => Some(outcome),
            _ => None,
        })
    }
}

pub fn decode(profile: &ReversalProfile, b: &Bytes) -> Message {
    Message::decode(&profile.dialect, b.clone()).unwrap()
}
