//! A switch between an in-memory host and terminals driven by `TerminalSession`, with
//! tokio's paused clock: no sockets, no sleeps that take real time.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use isoswitch_codec::{Message, MessageView, Mti};
use isoswitch_net::RequestError;
use isoswitch_reversal::{
    EngineConfig, EngineEvent, MemoryDurable, MemoryJournal, ReversalDriver, ReversalEngine,
    ReversalHandler, ReversalProfile, Store, Transport,
};
use isoswitch_session::counters::MemoryCounters;
use isoswitch_session::crypto::{Fill, Key, Pan, Pin, PinBlock, PinBlockFormat};
use isoswitch_session::{
    HostConfig, HostOutcome, HostSession, Inbound, Kek, MemoryKeyStore, SessionProfile,
    TerminalConfig, TerminalId, TerminalSession,
};
use isoswitch_switch::{
    cup_to_iso87, iso87_to_cup, Functions, LinkPersistence, SharedSessions, SoftSecurity, Switch,
    SwitchConfig, SwitchParts, UpstreamConfig, UpstreamLink,
};

pub const TMK: &str = "ECC25208B6FD2023E9767A5489BC9415";
pub const ZMK: &str = "07EA231AB3C1209829B601BC6B897F6D";
pub const PIN: &str = "1234";
pub const PAN: &str = "6222021234567890";

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn local() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
}

/// What the in-memory host does with the next requests.
#[derive(Default)]
pub struct Faults {
    /// Answers lost (the host acts, the answer never arrives) for this many requests.
    pub drop_answers: AtomicU32,
    /// Advices answered with no answer at all for this many advices (0221 repeats).
    pub drop_advices: AtomicU32,
    /// The host acts on this many requests and then dies before answering: the request
    /// fails with a lost connection and the host is down from then on.
    pub die_after_acting: AtomicU32,
}

/// The host: network sign-on of the switch (zone keys under the ZMK), MAC checks, the
/// PIN check, approval, and reversals through the library's handler.
pub struct FakeHost {
    session: Mutex<HostSession>,
    book: Mutex<ReversalHandler<isoswitch_reversal::MemoryStore>>,
    pub faults: Faults,
    pub seen: Mutex<Vec<Message>>,
    pub connections: AtomicU64,
    pub timeout_answers: AtomicU32,
    /// Down: nothing is connected (requests are not sent).
    pub down: std::sync::atomic::AtomicBool,
    /// Network management goes unanswered: the switch's link never signs on.
    pub refuse_sign_on: std::sync::atomic::AtomicBool,
    profile: SessionProfile,
}

impl FakeHost {
    pub fn new() -> Arc<FakeHost> {
        let profile = SessionProfile::iso87_binary().unwrap();
        let mut keys = MemoryKeyStore::new();
        keys.insert(switch_id(), Key::tdes(&hex(ZMK)).unwrap())
            .unwrap();
        Arc::new(FakeHost {
            session: Mutex::new(
                HostSession::new(profile.clone(), HostConfig::default(), keys).unwrap(),
            ),
            book: Mutex::new(ReversalHandler::new(
                ReversalProfile::iso87_binary().unwrap(),
                isoswitch_reversal::MemoryStore::new(),
                isoswitch_reversal::HostConfig::default(),
            )),
            faults: Faults::default(),
            seen: Mutex::new(Vec::new()),
            connections: AtomicU64::new(1),
            timeout_answers: AtomicU32::new(0),
            down: std::sync::atomic::AtomicBool::new(false),
            refuse_sign_on: std::sync::atomic::AtomicBool::new(false),
            profile,
        })
    }

    /// Whether the link to this host is connected.
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    /// The host comes back (a new connection).
    pub fn revive(&self) {
        self.down.store(false, Ordering::Release);
        self.connections.fetch_add(1, Ordering::AcqRel);
    }

    /// The MTIs this host acted on, with their DE 11.
    pub fn seen_stans(&self, mti: u16) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.mti().as_u16() == mti)
            .map(|m| m.get(11).unwrap_or_default())
            .collect()
    }

    /// Forces new zone keys at the next sign-on (as a restarted host would have none).
    pub fn forget_keys(&self) {
        self.session.lock().unwrap().invalidate(&switch_id());
    }

    pub fn seen_mtis(&self) -> Vec<u16> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.mti().as_u16())
            .collect()
    }

    pub fn ledger_total(&self) -> isoswitch_reversal::Decimal {
        self.book.lock().unwrap().ledger().total()
    }

    /// As host_sim does: network management through the host session (the switch is its
    /// one terminal); every other message MACed under the switch's zone MAK, whatever
    /// terminal DE 41/42 names.
    fn answer(&self, bytes: Bytes) -> Option<Bytes> {
        let view = MessageView::decode(&self.profile.dialect, &bytes).ok()?;
        if view.mti().class() == isoswitch_codec::MessageClass::NetworkManagement {
            if self.refuse_sign_on.load(Ordering::Acquire) {
                return None;
            }
            return match self
                .session
                .lock()
                .unwrap()
                .handle_request(local(), bytes)
                .ok()?
            {
                HostOutcome::Replied { reply, .. } | HostOutcome::Rejected { reply, .. } => {
                    Some(reply)
                }
                _ => None,
            };
        }
        let keys = self
            .session
            .lock()
            .unwrap()
            .working_keys(&switch_id())
            .map(|k| (k.mak().clone(), k.pik().clone()));
        let msg = Message::decode(&self.profile.dialect, bytes.clone()).ok()?;
        let Some((mak, pik)) = keys else {
            let mut r = Message::response_to(&msg).ok()?;
            r.set(39, "77").ok()?;
            return r.to_bytes().ok();
        };
        if self.profile.verify_mac(&mak, &view).is_err() {
            let mut r = Message::response_to(&msg).ok()?;
            r.set(39, "A0").ok()?;
            return self.profile.seal(&mak, &mut r).ok();
        }
        self.seen.lock().unwrap().push(msg.clone());
        let pin_ok = match msg.field(52) {
            None => true,
            Some(f) => {
                let pan = Pan::new(&msg.get(2).unwrap_or_default()).ok()?;
                PinBlock::from_bytes(PinBlockFormat::Iso0, &f.bytes())
                    .and_then(|b| b.decipher(Some(&pan), &pik))
                    .is_ok_and(|p| p == Pin::new(PIN).unwrap())
            }
        };
        let mut reply = self
            .book
            .lock()
            .unwrap()
            .handle(&msg, |_, _| {
                if pin_ok {
                    isoswitch_reversal::Decision::Approve {
                        auth_code: Some("A12345".into()),
                    }
                } else {
                    isoswitch_reversal::Decision::Decline(*b"55")
                }
            })
            .ok()?;
        if let Some(rrn) = msg.get(37) {
            reply.set(37, rrn).ok()?;
        }
        self.profile.seal(&mak, &mut reply).ok()
    }
}

pub fn switch_id() -> TerminalId {
    TerminalId::new("ISWITCH1", "ISOSWITCHACQ001").unwrap()
}

pub fn terminal_id() -> TerminalId {
    TerminalId::new("T0000001", "M00000000000001").unwrap()
}

/// The transport the switch's client would be: the host answers in the same call; a
/// dropped answer is a timeout after the whole timeout has passed (paused clock).
pub struct HostLink(pub Arc<FakeHost>);

impl Transport for HostLink {
    fn request(
        &self,
        msg: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Bytes, RequestError>> + Send {
        let host = self.0.clone();
        async move {
            if !host.is_up() {
                return Err(RequestError::Rejected(
                    isoswitch_net::RejectReason::NotConnected,
                ));
            }
            let view_mti = MessageView::decode(&host.profile.dialect, &msg)
                .map(|v| v.mti())
                .unwrap_or(Mti::ZERO);
            let advice = view_mti.function() == isoswitch_codec::MessageFunction::Advice;
            let answer = host.answer(msg);
            if answer.is_some() && take(&host.faults.die_after_acting) {
                host.down.store(true, Ordering::Release);
                return Err(RequestError::ConnectionLost);
            }
            let drop = if advice {
                take(&host.faults.drop_advices)
            } else {
                false
            } || take(&host.faults.drop_answers);
            match answer {
                Some(a) if !drop => Ok(a),
                _ => {
                    host.timeout_answers.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(timeout).await;
                    Err(RequestError::Timeout)
                }
            }
        }
    }

    fn connections(&self) -> u64 {
        self.0.connections.load(Ordering::Relaxed)
    }
}

fn take(c: &AtomicU32) -> bool {
    c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

pub type TestSwitch = Switch<
    MemoryKeyStore,
    <MemoryDurable as Store>::Idempotency,
    Arc<HostLink>,
    <MemoryDurable as Store>::Counters,
>;

pub struct Rig {
    pub host: Arc<FakeHost>,
    /// Every host (a pool's; just `host` otherwise).
    pub hosts: Vec<Arc<FakeHost>>,
    /// The switch's link pool, with several hosts.
    pub pool: Option<Arc<TestPool>>,
    pub switch: TestSwitch,
    pub terminal: TerminalSession,
    pub store: MemoryDurable,
    pub events: tokio::sync::mpsc::UnboundedReceiver<EngineEvent>,
    /// The last sale as the terminal sent it (for its reversal).
    pub last_sale: Option<Message>,
}

pub fn kek() -> Kek {
    Kek::new(&Key::aes(&[7u8; 32]).unwrap()).unwrap()
}

pub async fn rig() -> Rig {
    rig_with(FakeHost::new(), MemoryDurable::new()).await
}

pub type TestPool = isoswitch_switch::LinkPool<Arc<HostLink>, <MemoryDurable as Store>::Counters>;

pub type TestLink = UpstreamLink<Arc<HostLink>, <MemoryDurable as Store>::Counters>;

/// The switch's link to `host`, named `name` (its session's counters `counters`),
/// signed on.
pub async fn signed_on_link(
    host: &Arc<FakeHost>,
    name: &str,
    counters: &str,
    store: &MemoryDurable,
    sessions: &SharedSessions,
) -> Arc<TestLink> {
    let up_session = TerminalSession::new(
        SessionProfile::iso87_binary().unwrap(),
        TerminalConfig::new(switch_id()),
        Key::tdes(&hex(ZMK)).unwrap(),
        store.counters(counters).unwrap(),
    )
    .unwrap();
    let link = UpstreamLink::with_persistence(
        UpstreamConfig {
            name: name.into(),
            ..UpstreamConfig::default()
        },
        Arc::new(HostLink(host.clone())),
        up_session,
        Some(LinkPersistence {
            sessions: sessions.clone(),
            kek: kek(),
        }),
        None,
    );
    if !host.refuse_sign_on.load(Ordering::Acquire) {
        link.sign_on(0, local()).await.expect("upstream sign-on");
    }
    link
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        response_timeout: Duration::from_secs(2),
        reversal_timeout: Duration::from_secs(2),
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        ..EngineConfig::switch()
    }
}

/// A switch over a pool of `hosts` (links `host-1`, `host-2`…) with `strategy`: one
/// engine over the pool's transport and security hook.
pub async fn rig_pool(hosts: Vec<Arc<FakeHost>>, strategy: isoswitch_switch::Strategy) -> Rig {
    let store = MemoryDurable::new();
    let (terminals, sessions) = terminal_side(&store);
    let mut members = Vec::new();
    let mut links = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let name = format!("host-{}", i + 1);
        let counters = format!("upstream-session-{name}");
        let link = signed_on_link(h, &name, &counters, &store, &sessions).await;
        let host = h.clone();
        members.push(isoswitch_switch::PoolMember {
            link: link.clone(),
            connected: Box::new(move || host.is_up()),
        });
        links.push(link);
    }
    let pool =
        isoswitch_switch::LinkPool::new(members, strategy, SessionProfile::iso87_binary().unwrap());
    let engine = ReversalEngine::new(
        engine_config(),
        ReversalProfile::iso87_binary().unwrap(),
        isoswitch_switch::PoolMac(pool.clone()),
        0,
    );
    let (tx, events_in) = tokio::sync::mpsc::unbounded_channel();
    let driver = ReversalDriver::builder(
        engine,
        MemoryJournal::new(),
        isoswitch_switch::PoolTransport(pool.clone()),
    )
    .config(isoswitch_reversal::DriverConfig {
        hold_until_released: true,
        ..isoswitch_reversal::DriverConfig::default()
    })
    .events(tx)
    .spawn();
    pool.attach_driver(driver.clone());
    for l in &links {
        tokio::spawn(l.clone().keep_signed_on(local));
        tokio::spawn(isoswitch_switch::resume_after_sign_on(
            l.ring().clone(),
            driver.clone(),
        ));
    }
    let parts = switch_parts(&store, terminals, sessions, links[0].clone(), driver);
    let switch = Switch::with_pool(parts, pool.clone());
    let mut rig = finish(switch, events_in, hosts[0].clone(), store);
    rig.hosts = hosts;
    rig.pool = Some(pool);
    rig
}

/// The terminal side: the host session over the store's sessions (restored).
fn terminal_side(store: &MemoryDurable) -> (HostSession, SharedSessions) {
    let cup = SessionProfile::cup_pos().unwrap();
    let mut keys = MemoryKeyStore::new();
    keys.insert(terminal_id(), Key::tdes(&hex(TMK)).unwrap())
        .unwrap();
    let mut terminals = HostSession::new(cup.clone(), HostConfig::default(), keys).unwrap();
    let sessions = store.sessions("sessions").unwrap();
    for s in isoswitch_reversal::SessionStore::terminals(&sessions).unwrap() {
        terminals.restore(s.open(&kek()).unwrap()).unwrap();
    }
    let sessions: SharedSessions = Arc::new(Mutex::new(Box::new(sessions)));
    (terminals, sessions)
}

fn switch_parts(
    store: &MemoryDurable,
    terminals: HostSession,
    sessions: SharedSessions,
    upstream: Arc<TestLink>,
    driver: ReversalDriver,
) -> SwitchParts<
    MemoryKeyStore,
    <MemoryDurable as Store>::Idempotency,
    Arc<HostLink>,
    <MemoryDurable as Store>::Counters,
> {
    let f = Functions::builtin();
    SwitchParts {
        config: SwitchConfig::default(),
        terminals,
        book: ReversalHandler::new(
            ReversalProfile::cup_pos().unwrap(),
            store.idempotency("terminals").unwrap(),
            isoswitch_reversal::HostConfig::default(),
        ),
        counters: store.counters("upstream").unwrap(),
        upstream,
        driver,
        security: Arc::new(SoftSecurity),
        dukpt: None,
        to_host: cup_to_iso87(&f).unwrap(),
        to_terminal: iso87_to_cup(&f).unwrap(),
        local,
        utc: local,
        sessions,
        kek: kek(),
    }
}

pub async fn rig_with(host: Arc<FakeHost>, store: MemoryDurable) -> Rig {
    rig_with_journal(host, store, MemoryJournal::new()).await
}

/// As [`rig_with`], the engine over `journal`.
pub async fn rig_with_journal(
    host: Arc<FakeHost>,
    store: MemoryDurable,
    journal: impl isoswitch_reversal::Journal,
) -> Rig {
    let (terminals, sessions) = terminal_side(&store);
    let link = signed_on_link(&host, "host", "upstream-session", &store, &sessions).await;
    let transport = link.transport().clone();
    let engine = ReversalEngine::new(
        engine_config(),
        ReversalProfile::iso87_binary().unwrap(),
        link.zone_mac(),
        0,
    );
    let (tx, events_in) = tokio::sync::mpsc::unbounded_channel();
    let ring = link.ring().clone();
    let driver = ReversalDriver::builder(engine, journal, transport.clone())
        .config(isoswitch_reversal::DriverConfig {
            hold_until_released: true,
            ..isoswitch_reversal::DriverConfig::default()
        })
        .events(tx)
        .on_sign_on(move |_| ring.request_sign_on(ring.generation()))
        .spawn();
    tokio::spawn(link.clone().keep_signed_on(local));
    tokio::spawn(isoswitch_switch::resume_after_sign_on(
        link.ring().clone(),
        driver.clone(),
    ));
    let switch = Switch::new(switch_parts(&store, terminals, sessions, link, driver));
    finish(switch, events_in, host, store)
}

/// Events to the switch's completion loop and to the test; the terminal.
fn finish(
    switch: TestSwitch,
    events_in: tokio::sync::mpsc::UnboundedReceiver<EngineEvent>,
    host: Arc<FakeHost>,
    store: MemoryDurable,
) -> Rig {
    let cup = SessionProfile::cup_pos().unwrap();
    let (fwd, events) = tokio::sync::mpsc::unbounded_channel();
    let (mut rx, sw) = (events_in, switch.clone());
    let (to_switch, switch_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Every event to the switch's completion loop and to the test.
        while let Some(ev) = rx.recv().await {
            let _ = fwd.send(ev.clone());
            let _ = to_switch.send(ev);
        }
    });
    tokio::spawn(sw.run_events(switch_rx));
    let terminal = TerminalSession::new(
        cup,
        TerminalConfig::new(terminal_id()),
        Key::tdes(&hex(TMK)).unwrap(),
        MemoryCounters::new(),
    )
    .unwrap();
    Rig {
        hosts: vec![host.clone()],
        pool: None,
        host,
        switch,
        terminal,
        store,
        events,
        last_sale: None,
    }
}

impl Rig {
    /// The terminal signs on through the switch.
    pub async fn sign_on(&mut self) {
        let req = self.terminal.sign_on(Instant::now(), local()).unwrap();
        let reply = self.switch.handle(req).await.unwrap().expect("0810");
        match self
            .terminal
            .handle_message(Instant::now(), reply.bytes)
            .unwrap()
        {
            Inbound::SignedOn { .. } => {}
            other => panic!("sign-on: {other:?}"),
        }
    }

    /// A sale (0200, 60.1 `22`) of `amount` minor units with the right PIN, as sealed
    /// bytes, and its STAN.
    pub fn sale(&mut self, amount: u64) -> (Bytes, String) {
        self.financial(200, "000000", "22", amount, Some(PIN))
    }

    pub fn financial(
        &mut self,
        mti: u16,
        pc: &str,
        cup_type: &str,
        amount: u64,
        pin: Option<&str>,
    ) -> (Bytes, String) {
        let d = self.terminal.profile().dialect.clone();
        let batch = self.terminal.batch().get();
        let stan = self.terminal.next_stan().unwrap().to_string();
        let mut m = Message::new(&d, Mti::from_u16(mti).unwrap());
        m.set(2, PAN).unwrap();
        m.set(3, pc).unwrap();
        m.set_number(4, amount).unwrap();
        m.set(11, stan.as_str()).unwrap();
        m.set(22, "021").unwrap();
        m.set(25, "00").unwrap();
        m.set(41, terminal_id().terminal()).unwrap();
        m.set(42, terminal_id().merchant()).unwrap();
        m.set(49, "156").unwrap();
        m.set(60, format!("{cup_type}{batch:06}000")).unwrap();
        if let Some(pin) = pin {
            let pik = self.terminal.working_keys().unwrap().pik().clone();
            let b = PinBlock::encipher(
                PinBlockFormat::Iso0,
                &Pin::new(pin).unwrap(),
                Some(&Pan::new(PAN).unwrap()),
                &pik,
                Fill::Random,
            )
            .unwrap();
            m.set_bytes(52, b.as_bytes()).unwrap();
        }
        let sealed = self.terminal.seal_request(Instant::now(), m).unwrap();
        (sealed.bytes, stan)
    }

    /// Sends and decodes the answer (checking its MAC through the terminal session).
    pub async fn send(&mut self, bytes: Bytes) -> Option<Message> {
        let reply = self.switch.handle(bytes).await.unwrap()?;
        match self
            .terminal
            .handle_message(Instant::now(), reply.bytes.clone())
            .unwrap()
        {
            Inbound::Verified(m) => Some(*m),
            other => {
                // An answer the session does not pair (e.g. a repeat): decode it anyway.
                let _ = other;
                Some(Message::decode(&self.terminal.profile().dialect, reply.bytes).unwrap())
            }
        }
    }

    pub fn code(m: &Message) -> String {
        m.get(39).unwrap_or_default()
    }

    pub fn counts(&self) -> HashMap<u16, usize> {
        let mut c = HashMap::new();
        for m in self.host.seen_mtis() {
            *c.entry(m).or_insert(0) += 1;
        }
        c
    }
}
